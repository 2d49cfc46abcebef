"""Quality during import, on SQLite and PostgreSQL: dirty customer rows come out normalized
and flagged, originals kept, the golden record clean; the report counts what was found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tournesol.customers.models import Customer
from tournesol.ingest.importer import ImportReport, import_file
from tournesol.ingest.models import Reject, SourceRecord
from tournesol.ingest.schemas import parse_mapping
from tournesol.quality.service import build_report

MAPPING: dict[str, Any] = {
    "source": {"name": "fidelite", "kind": "loyalty", "brand": "SOLEIL"},
    "entity": "customer",
    "key": "carte",
    "fields": {
        "civility": "civ",
        "first_name": "prenom",
        "last_name": "nom",
        "birth_date": {"column": "naissance", "type": "date", "formats": ["%d/%m/%Y"]},
        "email": "email",
        "phone_fixed": "tel_fixe",
        "phone_mobile": "tel_mobile",
        "address_street": "adresse",
        "postal_code": "cp",
        "city": "ville",
        "loyalty_card": "carte",
    },
    "required": ["last_name"],
    "identifiers": {"loyalty_card": "loyalty_card", "email": "email", "phone": "phone_fixed"},
}
HEADER = "carte;civ;prenom;nom;naissance;email;tel_fixe;tel_mobile;adresse;cp;ville"
ROWS = [
    # a mobile in the landline column, a domain typo, an abbreviated street, a lower-case city
    "C1;MR;jean-pierre;DUPONT;12/05/1975;Jean.Dupont@GMIAL.com;06 12 34 56 78;;"
    "12 bis av. de la République;75011;paris",
    # day and month swapped, an invalid e-mail, a Guadeloupe landline, Excel ate the zero
    "C2;MLLE;Hélène;MARTIN;05/13/1980;pas-un-email;0590 12 34 56;;3 rue des Lilas;1000;"
    "Bourg-en-Bresse",
    # an unknown postal code, an invalid mobile
    "C3;MME;Anne;Durand;01/02/1990;anne@orange.fr;;06 12;1 place du Marché;99999;Nulle Part",
    # an impossible birth date: the row is rejected with the reason, as before
    "C4;M;Paul;Petit;31/02/1980;paul@free.fr;;;;;",
    # the same mobile as C1: a shared identifier the report counts
    "C5;M;Luc;Dupont;;luc@free.fr;+33 6 12 34 56 78;;;;",
]


def write_rows(path: Path) -> Path:
    path.write_bytes(("\r\n".join([HEADER, *ROWS]) + "\r\n").encode("cp1252"))
    return path


@pytest.fixture
def imported(tmp_path: Path, factory: sessionmaker[Session]) -> Callable[[], ImportReport]:
    def run() -> ImportReport:
        return import_file(factory, write_rows(tmp_path / "fid.csv"), parse_mapping(MAPPING))

    return run


def record(session: Session, key: str) -> SourceRecord:
    return session.scalars(select(SourceRecord).where(SourceRecord.source_key == key)).one()


def customer(session: Session, key: str) -> Customer:
    return session.get_one(Customer, record(session, key).customer_id)


def test_dirty_rows_are_normalized_flagged_and_keep_their_originals(
    imported: Callable[[], ImportReport], session: Session
) -> None:
    report = imported()
    assert (report.accepted, report.rejected) == (4, 1)
    reject = session.scalars(select(Reject)).one()
    assert reject.code == "INVALID_DATE" and "31/02/1980" in reject.reason

    c1 = customer(session, "C1")
    assert (c1.civility, c1.first_name, c1.last_name) == ("M.", "Jean-Pierre", "Dupont")
    assert c1.email == "Jean.Dupont@gmail.com"
    assert (c1.phone_mobile, c1.phone_fixed) == ("+33612345678", None)
    assert c1.address_line1 == "M. Jean-Pierre DUPONT"
    assert c1.address_line4 == "12 B AVENUE DE LA REPUBLIQUE"
    assert (c1.address_line6, c1.postal_code, c1.insee_code) == ("75011 PARIS", "75011", "75111")
    assert c1.quality_score is not None and c1.quality_score > 50
    r1 = record(session, "C1")
    assert {"EMAIL_TYPO_FIXED", "PHONE_MOVED_TO_MOBILE"} <= set(r1.quality_flags)
    fields = r1.normalized["quality"]["fields"]
    assert fields["email"]["original"] == "Jean.Dupont@GMIAL.com"
    assert fields["phone_mobile"]["original"] == "06 12 34 56 78"
    assert r1.raw["tel_fixe"] == "06 12 34 56 78"  # the row as received, untouched
    # the landline column's identifier follows the number to the mobile slot
    assert r1.normalized["identifiers"]["phone"] == "+33612345678"
    assert r1.normalized["identifiers"]["email"] == "jeandupont@gmail.com"

    c2 = customer(session, "C2")
    assert c2.birth_date == date(1980, 5, 13)
    assert c2.civility == "Mme" and c2.email is None  # invalid: out of the golden record
    assert c2.phone_fixed == "+590590123456"
    assert c2.postal_code == "01000" and c2.address_line6 == "01000 BOURG EN BRESSE"
    r2 = record(session, "C2")
    assert {
        "DATE_DAY_MONTH_SWAPPED",
        "EMAIL_INVALID",
        "POSTCODE_FIXED",
        "CIVILITY_MLLE_REPLACED",
    } <= set(r2.quality_flags)
    assert r2.normalized["quality"]["fields"]["email"] == {
        "valid": False,
        "flags": ["EMAIL_INVALID"],
        "original": "pas-un-email",
    }
    assert "email" not in r2.normalized.get("identifiers", {})

    c3 = customer(session, "C3")
    assert c3.phone_mobile is None
    assert {"ADDRESS_UNKNOWN_POSTCODE", "PHONE_INVALID"} <= set(record(session, "C3").quality_flags)
    assert record(session, "C3").normalized["quality"]["fields"]["phone_mobile"]["valid"] is False


def test_the_report_counts_fill_validity_corrections_and_shared_identifiers(
    imported: Callable[[], ImportReport], session: Session
) -> None:
    imported()
    report = build_report(session, source="fidelite")
    (source,) = report.sources
    assert (source.source, source.entity, source.records) == ("fidelite", "customer", 4)
    email = source.fields["email"]
    assert (email.filled, email.valid, email.corrected) == (4, 3, 1)
    assert email.flags == {"EMAIL_TYPO_FIXED": 1, "EMAIL_INVALID": 1}
    birth = source.fields["birth_date"]
    assert (birth.filled, birth.valid, birth.corrected) == (3, 3, 1)
    assert source.fields["phone_mobile"].filled == 3  # C1 and C5 moved there, C3's invalid one
    assert source.flagged_records == 4
    shared = {d.kind: (d.shared_values, d.records) for d in source.duplicates}
    assert shared["phone"] == (1, 2) and shared["email"] == (0, 0)
    as_json = report.to_json()["sources"][0]
    assert as_json["fields"][0]["field"] == "civility"
    with pytest.raises(LookupError, match="no source named 'nope'"):
        build_report(session, source="nope")


def test_the_report_command_prints_a_table_json_and_a_page(
    backend: str, fresh_databases: FreshDatabase, tmp_path: Path
) -> None:
    env = os.environ | {"TOURNESOL_DATABASE_URL": fresh_databases.url(backend), "COLUMNS": "200"}
    mapping = tmp_path / "fid.yaml"
    mapping.write_text(json.dumps(MAPPING), encoding="utf-8")
    tournesol = [sys.executable, "-m", "tournesol"]
    data = str(write_rows(tmp_path / "fid.csv"))
    done = subprocess.run(
        [*tournesol, "import", "fidelite", data, "--mapping", str(mapping)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr

    table = subprocess.run(
        [*tournesol, "quality", "report"], env=env, capture_output=True, text=True
    )
    assert table.returncode == 0, table.stderr
    assert "fidelite (customer): 4 records" in table.stdout
    assert "EMAIL_TYPO_FIXED" in table.stdout or "EMAIL_INVALID" in table.stdout

    as_json = subprocess.run(
        [*tournesol, "quality", "report", "--format", "json", "--source", "fidelite"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert json.loads(as_json.stdout)["sources"][0]["records"] == 4

    page = tmp_path / "q.html"
    html = subprocess.run(
        [*tournesol, "quality", "report", "--format", "html", "--out", str(page)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert html.returncode == 0, html.stderr
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and "<svg" in text and "fidelite" in text

    unknown = subprocess.run(
        [*tournesol, "quality", "report", "--source", "nope"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 1
    assert "no source named 'nope'" in unknown.stderr and "What to do" in unknown.stderr
