"""Merges and unmerges of customers (``identity.merges``) on SQLite and PostgreSQL, on a small
base built through the importer (loyalty cards, e-shop accounts, tickets with lines, calls),
profiled by identity resolution, then completed with the ORM (preferences and organisation
contacts that clash between customers, an identifier of no record, a web order, a page view).

"The prior state" is every business table, every column: customer, source_record, identifier,
consent, preference, interaction, transaction, transaction_line, organisation,
organisation_contact, match_profile. The identity log tables (merge_event, merge_move,
identity_run, match_review) keep the history of what was done and undone, so they are expected
to differ and are left out of the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, func, select, update
from sqlalchemy.orm import Session, sessionmaker

import tournesol.models  # noqa: F401 (every table in Base.metadata)
from tests.integration.test_import import HEADER, LOYALTY, TICKETS, write_cp1252
from tournesol.campaigns.models import Campaign, CampaignAttribution, CampaignTarget, Outbox
from tournesol.collect.models import CollectedEvent, VisitorLink
from tournesol.consent.models import Consent, Preference
from tournesol.customers.models import (
    Customer,
    CustomerAttribute,
    CustomerTag,
    Identifier,
    Organisation,
    OrganisationContact,
)
from tournesol.db import Base, unit_of_work
from tournesol.identity import merges
from tournesol.identity.models import IdentityRun, MergeEvent, MergeMove
from tournesol.identity.service import refresh_profiles
from tournesol.ingest.importer import import_file
from tournesol.ingest.models import Source, SourceRecord
from tournesol.ingest.schemas import parse_mapping
from tournesol.interactions.models import Interaction, Transaction, TransactionLine

BUSINESS_TABLES = (
    "customer",
    "source_record",
    "identifier",
    "consent",
    "consent_state",
    "preference",
    "interaction",
    "transaction",
    "transaction_line",
    "organisation",
    "organisation_contact",
    "match_profile",
    "collected_event",
    "visitor_link",
    "customer_name_key",
    "segment_membership",
    "customer_feature",
    "customer_rfm",
    "customer_score",
    "campaign_target",
    "outbox",
    "campaign_attribution",
    "journey_instance",
    "journey_inbox",
    "customer_tag",
    "customer_attribute",
    "holdout_assignment",
)
T = datetime(2026, 11, 1, tzinfo=UTC)
LOG_TABLES = ("merge_event", "merge_move", "identity_run", "match_review")
# the models of merges.MOVABLE: rows that belong to a customer
OWNED = (
    SourceRecord,
    Identifier,
    Consent,
    Preference,
    Interaction,
    Transaction,
    OrganisationContact,
    CollectedEvent,
    CampaignTarget,
    Outbox,
    CampaignAttribution,
    VisitorLink,
    CustomerTag,
    CustomerAttribute,
)

ESHOP = {
    "source": {"name": "eshop", "kind": "ecommerce", "brand": "SOLEIL", "trust_rank": 4},
    "entity": "customer",
    "key": "compte",
    "fields": {
        "account_id": "compte",
        "first_name": "prenom",
        "last_name": "nom",
        "email": "email",
        "postal_code": "cp",
    },
    "required": ["last_name"],
    "identifiers": {"account_id": "account_id", "email": "email"},
    "consents": [{"channel": "sms", "column": "optin_sms"}],
}
CALLS = {
    "source": {"name": "callcenter", "kind": "callcenter", "trust_rank": 5},
    "entity": "interaction",
    "key": "appel",
    "fields": {
        "occurred_at": {"column": "date", "type": "datetime", "formats": ["%d/%m/%Y %H:%M"]},
        "channel": {"default": "phone"},
        "type": {"default": "call"},
        "subject": "motif",
    },
    "customer": {"source": "loyalty", "column": "carte"},
}


@dataclass(frozen=True)
class Base3:
    """Customers a (Hélène, no e-mail of her own), b (Hélène again, other card), c (Marc), and
    d (Marc's e-shop account); their records by the same letters."""

    a: int
    b: int
    c: int
    d: int
    rec: dict[str, int]


def _import(factory: sessionmaker[Session], path: Path, mapping: dict[str, Any]) -> None:
    report = import_file(factory, path, parse_mapping(mapping))
    assert report.rejected == 0, report


@pytest.fixture
def base(tmp_path: Path, factory: sessionmaker[Session]) -> Base3:
    _import(
        factory,
        write_cp1252(
            tmp_path / "fidelite.csv",
            [
                HEADER,
                "C00001;MME;Hélène;Lefèvre;02/03/1970;;75011;O",
                "C00002;MME;Hélène;Lefèvre;02/03/1970;helene.lefevre@exemple.fr;75011;N",
                "C00003;M;Marc;Durand;14/07/1965;marc.durand@ancien.fr;69001;O",
            ],
        ),
        LOYALTY,
    )
    eshop = tmp_path / "comptes.csv"
    eshop.write_text(
        "compte;prenom;nom;email;cp;optin_sms\nW1;Marc-Antoine;Durand;marc@nouveau.fr;69002;O\n",
        encoding="utf-8",
    )
    _import(factory, eshop, ESHOP)
    _import(
        factory,
        write_cp1252(
            tmp_path / "tickets.csv",
            [
                "ticket;ligne;date;magasin;carte;sku;qte;montant",
                "T1;1;14/01/2026 10:05;M01;C00001;SKU1;2;12,50",
                "T1;2;14/01/2026 10:05;M01;C00001;SKU2;1;3,20",
                "T2;1;15/01/2026 18:00;M02;C00002;SKU1;1;6,25",
                "T3;1;16/01/2026 11:00;M01;C00003;SKU3;1;40,00",
            ],
        ),
        TICKETS,
    )
    _import(
        factory,
        write_cp1252(
            tmp_path / "appels.csv",
            [
                "appel;date;carte;motif",
                "K1;20/01/2026 09:00;C00002;livraison",
                "K2;21/01/2026 09:30;C00001;retour",
                "K3;22/01/2026 14:00;C00003;facture",
            ],
        ),
        CALLS,
    )
    refresh_profiles(factory)  # match profiles, and identifiers from the records
    with unit_of_work(factory) as session:
        found = {
            key: (rid, cid)
            for key, rid, cid in session.execute(
                select(SourceRecord.source_key, SourceRecord.id, SourceRecord.customer_id).where(
                    SourceRecord.entity == "customer"
                )
            )
        }
        keys = {"a": "C00001", "b": "C00002", "c": "C00003", "d": "W1"}
        rec = {k: found[key][0] for k, key in keys.items()}
        owners = [found[key][1] for key in keys.values()]
        assert None not in owners and len(set(owners)) == 4  # one customer per record
        a, b, c, d = (int(o or 0) for o in owners)
        org = Organisation(siret="73282932000074", siren="732829320", name="ACME")
        session.add(org)
        session.flush()
        # one e-mail preference each (unique per customer and channel), and an SMS one for b
        # and c only: with a as survivor, b's and c's compete for the one free slot
        for cid in (a, b, c):
            session.add(Preference(customer_id=cid, channel="email", preferred=cid == a))
            session.add(OrganisationContact(organisation_id=org.id, customer_id=cid))
        for cid in (b, c):
            session.add(Preference(customer_id=cid, channel="sms", max_per_week=cid % 7))
        session.add(Identifier(customer_id=b, kind="phone", value="+33612345678"))
        # tags and values set by journeys: a and b are both "vip" (b's stays with b)
        for cid, tag in ((a, "vip"), (b, "vip"), (b, "winback")):
            session.add(CustomerTag(customer_id=cid, tag=tag, source="journey:t", set_at=T))
        session.add(
            CustomerAttribute(
                customer_id=b, name="tier", value="gold", source="journey:t", set_at=T
            )
        )
        tickets = session.scalars(select(Source.id).where(Source.name == "tickets")).one()
        order = Transaction(
            source_id=tickets,
            external_id="WEB-B-1",
            customer_id=b,
            kind="order",
            channel="web",
            occurred_at=datetime(2026, 2, 1, 12, 0, tzinfo=UTC),
            total_amount=Decimal("19.90"),
        )
        session.add(order)
        session.flush()
        session.add(
            TransactionLine(transaction_id=order.id, line_no=1, sku="SKU9", amount=Decimal("19.90"))
        )
        page_view = Interaction(
            customer_id=b,
            occurred_at=datetime(2026, 2, 2, 8, 0, tzinfo=UTC),
            channel="web",
            direction="inbound",
            type="page_view",
            payload={"url": "/promo"},
        )
        session.add(page_view)
        session.flush()
        # the web event behind that page view, and the visitor it taught us is b
        event = CollectedEvent(
            source_id=tickets,
            message_id="m-1",
            type="page",
            anonymous_id="anon-b",
            occurred_at=datetime(2026, 2, 2, 8, 0, tzinfo=UTC),
            payload={"type": "page", "anonymousId": "anon-b"},
            status="resolved",
            customer_id=b,
            interaction_id=page_view.id,
        )
        session.add(event)
        session.flush()
        # a campaign planned a message to b
        when = datetime(2026, 2, 3, 9, 0, tzinfo=UTC)
        campaign = Campaign(code="spring", name="Spring", control_salt="s1", channels=["email"])
        session.add(campaign)
        session.flush()
        session.add(
            CampaignTarget(
                campaign_id=campaign.id, customer_id=b, group="target", channel="email",
                language="fr", send_at=when, planned_at=when,
            )
        )  # fmt: skip
        message = Outbox(
            key=f"spring:{b}:email", campaign_id=campaign.id, customer_id=b, channel="email",
            language="fr", address="b@exemple.fr", send_after=when, planned_at=when,
        )  # fmt: skip
        session.add(message)
        session.flush()
        # and b's order counts for it (attributed)
        session.add(
            CampaignAttribution(
                campaign_id=campaign.id, customer_id=b, outbox_id=message.id,
                transaction_id=order.id, amount=order.total_amount, purchased_at=when,
                contacted_at=when, clicked=False,
            )
        )  # fmt: skip
        session.add(
            VisitorLink(
                source_id=tickets,
                kind="anonymous",
                value="anon-b",
                customer_id=b,
                event_id=event.id,
            )
        )
    return Base3(a, b, c, d, rec)


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every business table, every column as read back, in primary key order.
    JSON columns also say whether they are SQL NULL: JSON ``null`` reads back as None too,
    but ``provenance IS NULL`` tells the importer a customer is one record's projection."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for name in BUSINESS_TABLES:
        table = Base.metadata.tables[name]
        is_null = [c.is_(None) for c in table.c if isinstance(c.type, JSON)]
        query = select(table, *is_null).order_by(*table.primary_key.columns)
        out[name] = [tuple(row) for row in session.execute(query)]
    return out


def values_only(snap: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """The snapshot without the SQL NULL flags of JSON columns."""
    width = {name: len(Base.metadata.tables[name].c) for name in snap}
    return {name: [row[: width[name]] for row in rows] for name, rows in snap.items()}


def owned_ids(session: Session, customer_id: int) -> dict[str, set[int]]:
    """The ids of the rows of each movable table that belong to this customer."""
    return {
        m.__tablename__: set(session.scalars(select(m.id).where(m.customer_id == customer_id)))
        for m in OWNED
    }


def new_run(session: Session) -> int:
    run = IdentityRun(mode="manual", stats={})
    session.add(run)
    session.flush()
    return run.id


def plan(survivor: int, *absorbed: int) -> merges.MergePlan:
    return merges.MergePlan(
        survivor=survivor, absorbed=list(absorbed), rule="manual", score=None, reason="test"
    )


def merge(factory: sessionmaker[Session], *plans: merges.MergePlan) -> dict[int, int]:
    """Merge in a unit of work of its own; returns absorbed customer -> its merge event."""
    with unit_of_work(factory) as session:
        merges.merge(session, list(plans), run_id=new_run(session), actor="tester")
        absorbed = [a for p in plans for a in p.absorbed]
        events = session.execute(
            select(MergeEvent.absorbed_id, MergeEvent.id).where(
                MergeEvent.absorbed_id.in_(absorbed), MergeEvent.unmerged_at.is_(None)
            )
        )
        return {int(a): int(e) for a, e in events}


def unmerge(factory: sessionmaker[Session], event_id: int) -> None:
    with unit_of_work(factory) as session:
        merges.unmerge(session, event_id, actor="tester", reason="test")


def customer(session: Session, customer_id: int) -> Customer:
    return session.get_one(Customer, customer_id, populate_existing=True)


def record_ids_of(session: Session, customer_id: int) -> set[int]:
    return set(
        session.scalars(select(SourceRecord.id).where(SourceRecord.customer_id == customer_id))
    )


def test_every_table_holding_customer_rows_is_moved_and_snapshotted() -> None:
    owning = {t.name for t in Base.metadata.sorted_tables if "customer_id" in t.c}
    assert owning - merges.NOT_MOVED == set(merges.MOVABLE) == {m.__tablename__ for m in OWNED}
    assert owning - {"audit_log"} <= set(BUSINESS_TABLES)  # the audit log is not business data
    assert not set(LOG_TABLES) & set(BUSINESS_TABLES)


def test_a_merge_moves_every_row_but_those_that_would_clash(
    factory: sessionmaker[Session], base: Base3
) -> None:
    a, b = base.a, base.b
    with unit_of_work(factory) as session:
        before_a, before_b = owned_ids(session, a), owned_ids(session, b)
        assert all(before_b.values()), before_b  # b has rows of every kind to move
        assert customer(session, a).provenance is None  # one record's projection so far
        b_email_pref, b_sms_pref = (
            session.scalars(
                select(Preference.id).where(Preference.customer_id == b, Preference.channel == ch)
            ).one()
            for ch in ("email", "sms")
        )
        b_contact = session.scalars(
            select(OrganisationContact.id).where(OrganisationContact.customer_id == b)
        ).one()
        b_vip = session.scalars(
            select(CustomerTag.id).where(CustomerTag.customer_id == b, CustomerTag.tag == "vip")
        ).one()
        loose_identifier = session.scalars(
            select(Identifier.id).where(
                Identifier.customer_id == b, Identifier.source_record_id.is_(None)
            )
        ).one()

    event = merge(factory, plan(a, b))[b]

    with unit_of_work(factory) as session:
        absorbed, survivor = customer(session, b), customer(session, a)
        assert (absorbed.status, absorbed.merged_into_id) == ("merged", a)
        assert (survivor.status, survivor.merged_into_id) == ("active", None)
        after_a, after_b = owned_ids(session, a), owned_ids(session, b)
        stay = {
            "preference": {b_email_pref},
            "organisation_contact": {b_contact},
            "customer_tag": {b_vip},
        }
        for name in before_b:
            assert after_b[name] == stay.get(name, set()), name
            assert after_a[name] == before_a[name] | (before_b[name] - after_b[name]), name
        assert b_sms_pref in after_a["preference"]  # a had no SMS preference: it moves
        # identifiers follow their records unlisted; the loose one is listed like any row
        moves = session.execute(
            select(MergeMove.table_name, MergeMove.row_id).where(MergeMove.event_id == event)
        ).all()
        listed: dict[str, set[int]] = {}
        for name, row_id in moves:
            listed.setdefault(name, set()).add(row_id)
        assert listed["identifier"] == {loose_identifier}
        assert listed["source_record"] == {base.rec["b"]}
        assert listed["preference"] == {b_sms_pref}
        assert "organisation_contact" not in listed
        for name in ("consent", "interaction", "transaction"):
            assert listed[name] == before_b[name], name
        # the golden record is rebuilt by survivorship from both records, and says so
        assert survivor.provenance is not None
        assert survivor.email == "helene.lefevre@exemple.fr"  # only b's record had one
        assert survivor.provenance["email"] == {
            "record": base.rec["b"],
            "source": "loyalty",
            "rule": "most_recent",
        }
        named = {p["record"] for p in survivor.provenance.values()}
        assert named <= {base.rec["a"], base.rec["b"]} and base.rec["a"] in named
        logged = session.get_one(MergeEvent, event)
        assert logged.survivor_written_at == survivor.updated_at
        assert logged.absorbed_before["status"] == "active"
        assert logged.survivor_before is not None and logged.survivor_before["provenance"] is None


def test_merge_then_unmerge_gives_back_every_value(
    factory: sessionmaker[Session], base: Base3
) -> None:
    """Every business table, every column, as read back, is what it was before the merge.
    The log tables (merge_event, merge_move, identity_run, match_review) are left out: they
    keep the merge and its undoing."""
    with unit_of_work(factory) as session:
        before = snapshot(session)
    event = merge(factory, plan(base.a, base.b))[base.b]
    with unit_of_work(factory) as session:
        assert values_only(snapshot(session)) != values_only(before)
    unmerge(factory, event)
    with unit_of_work(factory) as session:
        after = snapshot(session)
        for name in BUSINESS_TABLES:
            assert values_only(after)[name] == values_only(before)[name], name
        undone = session.get_one(MergeEvent, event)
        assert (undone.unmerged_by, undone.unmerge_reason) == ("tester", "test")
        assert undone.unmerged_at is not None


def test_merge_then_unmerge_gives_back_the_prior_state_exactly(
    factory: sessionmaker[Session], base: Base3
) -> None:
    """As above, and JSON columns that were SQL NULL are SQL NULL again."""
    with unit_of_work(factory) as session:
        before = snapshot(session)
    unmerge(factory, merge(factory, plan(base.a, base.b))[base.b])
    with unit_of_work(factory) as session:
        after = snapshot(session)
        for name in BUSINESS_TABLES:
            assert after[name] == before[name], name


def test_unmerging_one_of_two_absorbed_rebuilds_the_survivor_from_what_it_holds(
    factory: sessionmaker[Session], base: Base3
) -> None:
    a, b, c = base.a, base.b, base.c
    with unit_of_work(factory) as session:
        before_a, before_b, before_c = (owned_ids(session, x) for x in (a, b, c))
        b_sms, c_sms = (
            session.scalars(
                select(Preference.id).where(
                    Preference.customer_id == x, Preference.channel == "sms"
                )
            ).one()
            for x in (b, c)
        )
    events = merge(factory, plan(a, b, c))
    with unit_of_work(factory) as session:
        # b's and c's SMS preferences compete for a's free slot: the first row wins
        assert b_sms in owned_ids(session, a)["preference"]
        assert c_sms in owned_ids(session, c)["preference"]
        merged_at = customer(session, a).updated_at
    unmerge(factory, events[b])
    with unit_of_work(factory) as session:
        assert owned_ids(session, b) == before_b  # b's rows are back on b
        b_row, c_row = customer(session, b), customer(session, c)
        assert (b_row.status, b_row.merged_into_id) == ("active", None)
        assert (c_row.status, c_row.merged_into_id) == ("merged", a)
        # c's rows stay on a, but for its clashing preferences and organisation contact
        stay = {k: before_c[k] for k in ("preference", "organisation_contact")}
        after_a, after_c = owned_ids(session, a), owned_ids(session, c)
        for name in before_c:
            assert after_c[name] == stay.get(name, set()), name
            assert after_a[name] == before_a[name] | (before_c[name] - after_c[name]), name
        # recomputed, not restored: from a's and c's records, at the unmerge
        survivor = customer(session, a)
        assert record_ids_of(session, a) == {base.rec["a"], base.rec["c"]}
        assert survivor.provenance is not None and survivor.updated_at > merged_at
        named = {p["record"] for p in survivor.provenance.values()}
        assert named <= {base.rec["a"], base.rec["c"]}
        assert survivor.email == "marc.durand@ancien.fr"  # c's: a's record has none
        assert survivor.provenance["email"]["record"] == base.rec["c"]
        rebuilt = snapshot(session)["customer"]
        merges.refresh_golden(session, [a], now=survivor.updated_at)
        assert snapshot(session)["customer"] == rebuilt  # what survivorship gives today


def test_unmerging_twice_is_refused(factory: sessionmaker[Session], base: Base3) -> None:
    event = merge(factory, plan(base.a, base.b))[base.b]
    unmerge(factory, event)
    with unit_of_work(factory) as session, pytest.raises(merges.MergeError, match="already undone"):
        merges.unmerge(session, event, actor="tester")
    with unit_of_work(factory) as session, pytest.raises(merges.MergeError, match="no merge event"):
        merges.unmerge(session, event + 1000, actor="tester")


def test_unmerging_a_survivor_merged_since_names_the_event_to_undo_first(
    factory: sessionmaker[Session], base: Base3
) -> None:
    with unit_of_work(factory) as session:
        before = values_only(snapshot(session))
    first = merge(factory, plan(base.a, base.b))[base.b]
    later = merge(factory, plan(base.c, base.a))[base.a]
    with unit_of_work(factory) as session:
        with pytest.raises(merges.MergeError) as refused:
            merges.unmerge(session, first, actor="tester")
        message = str(refused.value)
        assert f"merge event {later}" in message and "unmerge that event first" in message
        assert f"customer {base.a} was itself merged into customer {base.c}" in message
    # in that order, both undo
    unmerge(factory, later)
    unmerge(factory, first)
    with unit_of_work(factory) as session:
        assert values_only(snapshot(session)) == before


def test_the_guard_also_holds_in_the_session_that_merged(
    factory: sessionmaker[Session], base: Base3
) -> None:
    with unit_of_work(factory) as session:
        survivor = session.get_one(Customer, base.a)  # loaded first, as a page showing it would
        merges.merge(session, [plan(base.a, base.b)], run_id=new_run(session), actor="tester")
        first = session.scalars(select(MergeEvent.id).where(MergeEvent.absorbed_id == base.b)).one()
        merges.merge(session, [plan(base.c, base.a)], run_id=new_run(session), actor="tester")
        with pytest.raises(merges.MergeError, match="unmerge that event first"):
            merges.unmerge(session, first, actor="tester")
        assert survivor.id == base.a


def test_merging_a_customer_that_is_not_active_is_refused(
    factory: sessionmaker[Session], base: Base3
) -> None:
    merge(factory, plan(base.a, base.b))
    for refused in (plan(base.c, base.b), plan(base.b, base.c)):
        with unit_of_work(factory) as session:
            before = values_only(snapshot(session))
            events = session.scalar(select(func.count()).select_from(MergeEvent))
            with pytest.raises(merges.MergeError, match=f"customer {base.b} is not an active"):
                merges.merge(session, [refused], run_id=new_run(session), actor="tester")
            assert values_only(snapshot(session)) == before
            assert session.scalar(select(func.count()).select_from(MergeEvent)) == events


def test_merging_a_customer_into_itself_is_refused(
    factory: sessionmaker[Session], base: Base3
) -> None:
    with unit_of_work(factory) as session, pytest.raises(merges.MergeError):
        merges.merge(session, [plan(base.a, base.a)], run_id=new_run(session), actor="t")


def test_absorbing_one_customer_into_two_survivors_is_refused(
    factory: sessionmaker[Session], base: Base3
) -> None:
    with unit_of_work(factory) as session, pytest.raises(merges.MergeError):
        merges.merge(
            session,
            [plan(base.a, base.b), plan(base.c, base.b)],
            run_id=new_run(session),
            actor="t",
        )


def test_unmerged_record_pairs_are_the_moved_records_against_the_survivors(
    factory: sessionmaker[Session], base: Base3
) -> None:
    rec = base.rec
    with unit_of_work(factory) as session:
        assert merges.unmerged_record_pairs(session) == set()
    events = merge(factory, plan(base.a, base.b, base.c))
    with unit_of_work(factory) as session:
        assert merges.unmerged_record_pairs(session) == set()  # merged, nothing separated
    unmerge(factory, events[base.b])
    with unit_of_work(factory) as session:
        assert merges.unmerged_record_pairs(session) == {
            tuple(sorted((rec["b"], rec["a"]))),
            tuple(sorted((rec["b"], rec["c"]))),
        }


@pytest.mark.parametrize("newest", ["loyalty", "eshop"])
def test_refresh_golden_follows_the_survivorship_rules(
    factory: sessionmaker[Session], base: Base3, newest: str
) -> None:
    loyalty, eshop = base.rec["c"], base.rec["d"]
    old, new = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    with unit_of_work(factory) as session:
        # Marc's e-shop record joins his loyalty one (as a merge would leave them)
        session.execute(
            update(SourceRecord).where(SourceRecord.id == eshop).values(customer_id=base.c)
        )
        for rid in (loyalty, eshop):
            seen = new if (rid == eshop) == (newest == "eshop") else old
            session.execute(
                update(SourceRecord).where(SourceRecord.id == rid).values(updated_at=seen)
            )
        merges.refresh_golden(session, [base.c], now=now)
    with unit_of_work(factory) as session:
        marc = customer(session, base.c)
        latest, latest_source = (eshop, "eshop") if newest == "eshop" else (loyalty, "loyalty")
        # contact points: the latest the person gave
        assert marc.email == ("marc@nouveau.fr" if newest == "eshop" else "marc.durand@ancien.fr")
        assert marc.provenance is not None
        assert marc.provenance["email"] == {
            "record": latest,
            "source": latest_source,
            "rule": "most_recent",
        }
        # names: one against one, the most trusted source (loyalty, rank 2) wins
        assert (marc.first_name, marc.last_name) == ("Marc", "Durand")
        assert marc.provenance["first_name"] == {
            "record": loyalty,
            "source": "loyalty",
            "rule": "most_frequent",
        }
        # civility and birth date: only the loyalty record has them
        assert (marc.civility, str(marc.birth_date)) == ("M.", "1965-07-14")
        assert marc.provenance["birth_date"]["record"] == loyalty
        # the postal code too (equally full addresses: the latest), so an older e-shop
        # record gives nothing
        assert marc.postal_code == ("69002" if newest == "eshop" else "69001")
        named = {p["record"] for p in marc.provenance.values()}
        assert named == ({loyalty, eshop} if newest == "eshop" else {loyalty})
        assert marc.updated_at == now
        # the e-shop customer, now without a record, is left as it was
        assert customer(session, base.d).provenance is None
