"""Imports on SQLite and PostgreSQL: rejects with reasons, idempotence, updates with history,
resumption after an interruption, cross-entity links."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.snapshot import snapshot
from tournesol.consent.models import Consent
from tournesol.customers.models import Customer, Organisation, OrganisationContact
from tournesol.db import make_engine, make_session_factory
from tournesol.ingest.importer import ImportReport, import_file
from tournesol.ingest.models import Reject, SourceRecord, SourceRecordVersion
from tournesol.ingest.schemas import parse_mapping
from tournesol.interactions.models import Interaction, Transaction, TransactionLine

LOYALTY = {
    "source": {"name": "loyalty", "kind": "loyalty", "brand": "SOLEIL", "trust_rank": 2},
    "entity": "customer",
    "key": "num_carte",
    "fields": {
        "civility": {"column": "civilite", "values": {"M": "M.", "MME": "Mme"}},
        "first_name": "prenom",
        "last_name": "nom",
        "birth_date": {"column": "naissance", "type": "date", "formats": ["%d/%m/%Y"]},
        "email": "email",
        "postal_code": "cp",
        "loyalty_card": "num_carte",
    },
    "required": ["last_name"],
    "identifiers": {"loyalty_card": "loyalty_card", "email": "email"},
    "consents": [{"channel": "email", "column": "optin"}],
}
HEADER = "num_carte;civilite;prenom;nom;naissance;email;cp;optin"


def customer_line(i: int, *, first: str = "Hélène", optin: str = "O") -> str:
    return f"C{i:05d};MME;{first};Lefèvre{i};0{1 + i % 9}/0{1 + i % 9}/1970;h{i}@exemple.fr;750{i % 20:02d};{optin}"


def write_cp1252(path: Path, lines: list[str]) -> Path:
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path


@pytest.fixture
def run(factory: sessionmaker[Session]) -> Callable[..., ImportReport]:
    def _run(path: Path, mapping: dict[str, Any], **kwargs: Any) -> ImportReport:
        return import_file(factory, path, parse_mapping(mapping), **kwargs)

    return _run


def count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_one_percent_malformed_rows_are_rejected_and_the_rest_accepted(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    lines = [HEADER]
    bad: dict[int, str] = {}
    for i in range(1, 501):
        line_no = len(lines) + 1
        if i == 100:
            lines.append(customer_line(i) + ";extra")
            bad[line_no] = "COLUMN_COUNT"
        elif i == 200:
            lines.append(f"C{i:05d};MME;Anne;Martin;31/02/1980;a@exemple.fr;75001;O")
            bad[line_no] = "INVALID_DATE"
        elif i == 300:
            lines.append(HEADER)
            bad[line_no] = "REPEATED_HEADER"
        elif i == 400:
            lines.append(";MME;Anne;Sans Clé;01/01/1980;x@exemple.fr;75001;N")
            bad[line_no] = "MISSING_KEY"
        elif i == 450:
            lines.append("C00450;M;Jean;;01/01/1980;j@exemple.fr;75001;N")
            bad[line_no] = "MISSING_REQUIRED"
        else:
            lines.append(customer_line(i))
    path = write_cp1252(tmp_path / "fidelite.csv", lines)

    report = run(path, LOYALTY, chunk_rows=128)

    assert report.encoding == "cp1252" and report.delimiter == ";"
    assert report.rows_read == 500
    assert report.rejected == len(bad) == 5
    assert report.accepted == 495
    assert report.accepted + report.updated + report.unchanged + report.rejected == report.rows_read
    rejects = session.scalars(select(Reject).order_by(Reject.line_no)).all()
    assert {r.line_no: r.code for r in rejects} == bad
    for r in rejects:
        assert r.reason.strip() and r.raw_text == lines[r.line_no - 1]
    date_reject = next(r for r in rejects if r.code == "INVALID_DATE")
    assert "31/02/1980" in date_reject.reason and "not a real date" in date_reject.reason
    # every accepted row is its own customer until identity resolution, with its identifiers
    assert count(session, Customer) == 495
    # identifiers declared by the mapping are kept with the record, for identity resolution
    record = session.scalars(select(SourceRecord).where(SourceRecord.source_key == "C00001")).one()
    assert record.normalized["identifiers"] == {"loyalty_card": "C00001", "email": "h1@exemple.fr"}
    helene = session.scalars(select(Customer).where(Customer.last_name == "Lefèvre1")).one()
    assert (helene.first_name, helene.civility, helene.email) == ("Hélène", "Mme", "h1@exemple.fr")
    consent = session.scalars(select(Consent).where(Consent.customer_id == helene.id)).one()
    assert (consent.channel, consent.status, consent.proof["line"]) == ("email", "granted", 2)


def test_importing_the_same_file_twice_changes_nothing(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    path = write_cp1252(tmp_path / "f.csv", [HEADER] + [customer_line(i) for i in range(1, 51)])
    first = run(path, LOYALTY)
    before = snapshot(session.connection())
    second = run(path, LOYALTY)
    assert (first.status, first.accepted) == ("completed", 50)
    assert (second.status, second.batch_id) == ("already_imported", first.batch_id)
    assert snapshot(session.connection()) == before

    # the same records in another file (another name, another order): all unchanged
    copy = write_cp1252(tmp_path / "g.csv", [HEADER] + [customer_line(i) for i in range(50, 0, -1)])
    third = run(copy, LOYALTY)
    assert (third.accepted, third.updated, third.unchanged) == (0, 0, 50)
    after = snapshot(session.connection())
    assert {k: v for k, v in after.items() if k != "batches"} == {
        k: v for k, v in before.items() if k != "batches"
    }


def test_an_updated_extract_updates_changed_records_and_keeps_their_history(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    run(
        write_cp1252(tmp_path / "v1.csv", [HEADER] + [customer_line(i) for i in range(1, 11)]),
        LOYALTY,
    )
    v2 = [HEADER] + [customer_line(i) for i in range(1, 11)]
    v2[3] = customer_line(3, first="Héloïse", optin="N")  # C00003 changed
    v2.append(customer_line(11))  # a new card
    report = run(write_cp1252(tmp_path / "v2.csv", v2), LOYALTY)

    assert (report.accepted, report.updated, report.unchanged) == (1, 1, 9)
    record = session.scalars(select(SourceRecord).where(SourceRecord.source_key == "C00003")).one()
    assert record.normalized["first_name"] == "Héloïse"
    version = session.scalars(select(SourceRecordVersion)).one()
    assert version.source_record_id == record.id and version.normalized["first_name"] == "Hélène"
    customer = session.get_one(Customer, record.customer_id)
    assert customer.first_name == "Héloïse"
    consents = session.scalars(
        select(Consent).where(Consent.customer_id == customer.id).order_by(Consent.id)
    ).all()
    assert [c.status for c in consents] == ["granted", "denied"]  # the change is a new row
    assert record.normalized["identifiers"]["email"] == "h3@exemple.fr"


def test_an_interrupted_import_resumes_to_the_same_result_as_a_clean_run(
    tmp_path: Path,
    run: Callable[..., ImportReport],
    session: Session,
    backend: str,
    fresh_databases: Any,
) -> None:
    lines = [HEADER] + [customer_line(i) for i in range(1, 1001)]
    lines[500] = "broken;line"
    lines[700] = lines[600]  # a duplicate key, far from its first occurrence
    path = write_cp1252(tmp_path / "big.csv", lines)

    def stop_after_second_chunk(committed_line: int) -> None:
        if committed_line > 400:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(path, LOYALTY, chunk_rows=200, after_chunk=stop_after_second_chunk)
    assert count(session, SourceRecord) == 400  # two whole chunks, nothing of the third
    resumed = run(path, LOYALTY, chunk_rows=200)
    assert resumed.resumed_after_line == 401
    assert resumed.rows_read == 1000  # counts cover the whole file, across both runs

    clean_engine = make_engine(fresh_databases.url(backend))
    try:
        import_file(
            make_session_factory(clean_engine), path, parse_mapping(LOYALTY), chunk_rows=200
        )
        with clean_engine.connect() as conn:
            expected = snapshot(conn)
    finally:
        clean_engine.dispose()
    assert snapshot(session.connection()) == expected
    codes = sorted(r.code for r in session.scalars(select(Reject)))
    assert codes == ["COLUMN_COUNT", "DUPLICATE_KEY"]


def test_a_value_longer_than_its_column_is_rejected_not_truncated(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    long_name = "A" * 150
    path = write_cp1252(
        tmp_path / "f.csv",
        [HEADER, customer_line(1), f"C9;M;{long_name};Durand;01/01/1980;d@x.fr;75001;O"],
    )
    report = run(path, LOYALTY)
    assert (report.accepted, report.rejected) == (1, 1)
    reject = session.scalars(select(Reject)).one()
    assert reject.code == "VALUE_TOO_LONG" and "first_name is 150 characters" in reject.reason


TICKETS = {
    "source": {"name": "tickets", "kind": "shop", "brand": "SOLEIL"},
    "entity": "transaction",
    "key": "ticket",
    "fields": {
        "occurred_at": {"column": "date", "type": "datetime", "formats": ["%d/%m/%Y %H:%M"]},
        "store_code": "magasin",
        "channel": {"default": "store"},
    },
    "customer": {"source": "loyalty", "column": "carte"},
    "lines": {
        "key": "ligne",
        "fields": {
            "sku": "sku",
            "quantity": {"column": "qte", "type": "decimal"},
            "amount": {"column": "montant", "type": "decimal"},
        },
    },
}


def test_tickets_imported_before_their_customers_are_linked_when_the_customers_arrive(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    tickets = write_cp1252(
        tmp_path / "tickets.csv",
        [
            "ticket;ligne;date;magasin;carte;sku;qte;montant",
            "T1;1;14/01/2026 10:05;M01;C00001;SKU1;2;12,50",
            "T1;2;14/01/2026 10:05;M01;C00001;SKU2;1;3,20",
            "T2;1;15/01/2026 18:00;M02;;SKU1;1;6,25",
            "T3;1;16/01/2026 11:00;M01;C00002;SKU3;1;1 000,00",
        ],
    )
    report = run(tickets, TICKETS, chunk_rows=2)  # T1's lines fall into two chunks
    assert (report.accepted, report.rejected) == (4, 0)
    t1 = session.scalars(select(Transaction).where(Transaction.external_id == "T1")).one()
    assert t1.total_amount == Decimal("15.70") and t1.customer_id is None
    assert t1.customer_ref_key == "C00001"
    lines = session.scalars(
        select(TransactionLine).where(TransactionLine.transaction_id == t1.id)
    ).all()
    assert sorted((line.line_no, line.amount) for line in lines) == [
        (1, Decimal("12.50")),
        (2, Decimal("3.20")),
    ]

    loyalty = run(
        write_cp1252(tmp_path / "f.csv", [HEADER, customer_line(1), customer_line(2)]), LOYALTY
    )
    assert loyalty.linked == 2
    session.expire_all()
    owners = {
        ext: cid
        for ext, cid in session.execute(select(Transaction.external_id, Transaction.customer_id))
    }
    c1 = session.scalars(
        select(SourceRecord.customer_id).where(SourceRecord.source_key == "C00001")
    ).one()
    assert owners["T1"] == c1 and owners["T2"] is None and owners["T3"] is not None
    assert session.get_one(Transaction, t1.id).total_amount == Decimal("15.70")


def test_orders_with_nested_lines_and_interactions_from_json(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    run(write_cp1252(tmp_path / "f.csv", [HEADER, customer_line(1)]), LOYALTY)
    orders = tmp_path / "orders.json"
    orders.write_text(
        json.dumps(
            {
                "orders": [
                    {
                        "id": "O1",
                        "card": "C00001",
                        "at": "2026-03-01T10:00:00+01:00",
                        "lines": [
                            {"sku": "A", "qty": 1, "amount": 9.9},
                            {"sku": "B", "qty": 2, "amount": "5,05"},
                        ],
                    },
                    {
                        "id": "O2",
                        "card": "C00001",
                        "at": "2026-03-02T10:00:00+01:00",
                        "lines": "oops",
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    mapping = {
        "source": {"name": "eshop_orders", "kind": "ecommerce"},
        "entity": "transaction",
        "key": "id",
        "format": {"records_path": "orders"},
        "fields": {
            "occurred_at": {"column": "at", "type": "datetime"},
            "kind": {"default": "order"},
        },
        "customer": {"source": "loyalty", "column": "card"},
        "lines": {
            "path": "lines",
            "fields": {
                "sku": "sku",
                "quantity": {"column": "qty", "type": "decimal"},
                "amount": {"column": "amount", "type": "decimal"},
            },
        },
    }
    report = run(orders, mapping)
    assert (report.accepted, report.rejected) == (1, 1)
    order = session.scalars(select(Transaction).where(Transaction.external_id == "O1")).one()
    assert order.total_amount == Decimal("14.95") and order.kind == "order"
    assert order.customer_id is not None

    calls = tmp_path / "calls.jsonl"
    calls.write_text(
        '{"id": "K1", "card": "C00001", "at": "2026-03-03 09:00:00", "reason": "livraison"}\n'
        "{not json}\n"
        '{"id": "K2", "card": "C99999", "at": "2026-03-04 09:00:00", "reason": "retour"}\n',
        encoding="utf-8",
    )
    report = run(
        calls,
        {
            "source": {"name": "callcenter", "kind": "callcenter"},
            "entity": "interaction",
            "key": "id",
            "fields": {
                "occurred_at": {"column": "at", "type": "datetime"},
                "channel": {"default": "phone"},
                "type": {"default": "call"},
                "subject": "reason",
            },
            "customer": {"source": "loyalty", "column": "card"},
        },
    )
    assert (report.accepted, report.rejected) == (2, 1)
    assert (
        session.scalars(select(Reject.code).where(Reject.batch_id == report.batch_id)).one()
        == "INVALID_JSON"
    )
    calls_by_key = {i.customer_ref_key: i for i in session.scalars(select(Interaction))}
    assert calls_by_key["C00001"].customer_id == order.customer_id
    assert (
        calls_by_key["C00001"].subject == "livraison" and calls_by_key["C00001"].channel == "phone"
    )
    assert calls_by_key["C99999"].customer_id is None  # kept, waiting for its customer


def test_b2b_contacts_create_their_organisation(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    path = tmp_path / "b2b.csv"
    path.write_text(
        "contact_id|nom|siret|raison_sociale|naf|fonction\n"
        "B1|Durand|73282932000074|ACME SA|47.11F|Acheteuse\n"
        "B2|Petit|732 829 320 00074|ACME|47.11F|Directeur\n"
        "B3|Leroy||Sans Siret||Gérant\n",
        encoding="utf-8",
    )
    report = run(
        path,
        {
            "source": {"name": "b2b", "kind": "b2b", "brand": "TOURNESOL PRO"},
            "entity": "customer",
            "key": "contact_id",
            "fields": {
                "last_name": "nom",
                "org_siret": "siret",
                "org_name": "raison_sociale",
                "org_naf_code": "naf",
                "job_title": "fonction",
            },
        },
    )
    assert report.accepted == 3
    org = session.scalars(select(Organisation)).one()
    assert (org.siret, org.siren, org.naf_code) == ("73282932000074", "732829320", "47.11F")
    contacts = session.scalars(select(OrganisationContact)).all()
    assert sorted(c.job_title or "" for c in contacts) == ["Acheteuse", "Directeur"]


def test_an_overlong_transaction_field_is_rejected_not_truncated(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session
) -> None:
    tickets = write_cp1252(
        tmp_path / "tickets.csv",
        [
            "ticket;ligne;date;magasin;carte;sku;qte;montant",
            "T1;1;14/01/2026 10:05;M01;C00001;SKU1;2;12,50",
            f"T2;1;14/01/2026 10:06;{'M' * 41};C00001;SKU1;1;6,25",
            f"T3;1;14/01/2026 10:07;M01;C00001;{'S' * 101};1;6,25",
        ],
    )
    report = run(tickets, TICKETS)
    assert (report.accepted, report.rejected) == (1, 2)
    reasons = sorted(r.reason for r in session.scalars(select(Reject)))
    assert reasons == [
        "line 3: store_code is 41 characters, the limit is 40",
        "line 4: sku is 101 characters, the limit is 100",
    ]


def test_bulk_loaded_timestamps_are_stored_like_the_orm_stores_them(
    tmp_path: Path, run: Callable[..., ImportReport], session: Session, backend: str
) -> None:
    run(write_cp1252(tmp_path / "f.csv", [HEADER, customer_line(1)]), LOYALTY)
    record = session.scalars(select(SourceRecord)).one()
    assert record.created_at.tzinfo is not None and record.created_at.utcoffset() == timedelta(0)
    if backend == "sqlite":  # text storage: one shape for every writer, so comparisons hold
        bulk, orm = session.execute(
            text(
                "SELECT r.created_at, b.started_at FROM source_record r JOIN import_batch b ON b.id = r.first_batch_id"
            )
        ).one()
        shape = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")
        assert shape.match(bulk) and shape.match(orm), (bulk, orm)
