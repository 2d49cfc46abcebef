"""Merge then unmerge gives back the database as it was, on SQLite and PostgreSQL: every
business table compared row by row, every column. The identity log tables (merge_event,
merge_move, identity_run, match_review, identity_model) keep the history of what happened and
are expected to differ."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.test_identity import import_sources
from tournesol.consent.models import Consent, Preference
from tournesol.customers.models import Customer, Identifier, Organisation, OrganisationContact
from tournesol.db import Base, unit_of_work
from tournesol.demo.generator import DemoManifest, generate
from tournesol.identity import merges
from tournesol.identity.models import IdentityRun, MergeEvent
from tournesol.identity.service import refresh_profiles
from tournesol.ingest.models import SourceRecord
from tournesol.interactions.models import Interaction, Transaction

LOG_TABLES = {"merge_event", "merge_move", "identity_run", "match_review", "identity_model"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("demo"), seed=11, persons=300)


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in Base.metadata.sorted_tables:
        if table.name in LOG_TABLES:
            continue
        rows = session.execute(select(table).order_by(*table.primary_key.columns)).all()
        out[table.name] = [tuple(row) for row in rows]
    return out


def busiest_customers(session: Session, n: int) -> list[int]:
    """Customers with the most transactions (and so records, consents, identifiers)."""
    query = (
        select(Transaction.customer_id)
        .where(Transaction.customer_id.is_not(None))
        .group_by(Transaction.customer_id)
        .order_by(func.count().desc(), Transaction.customer_id)
        .limit(n)
    )
    return [int(c) for c in session.scalars(query)]


@pytest.fixture
def two_customers(factory: sessionmaker[Session], demo: DemoManifest) -> Iterator[tuple[int, ...]]:
    import_sources(factory, demo, ("loyalty", "ecommerce", "tickets", "orders", "callcenter"))
    refresh_profiles(factory)
    with unit_of_work(factory) as session:
        a, b, c = busiest_customers(session, 3)
        org = Organisation(siret="30017521300028", siren="300175213", name="Atelier")
        session.add(org)
        session.flush()
        for cid in (a, b, c):
            # the same channel and organisation on each: per-customer unique rows
            session.add(Preference(customer_id=cid, channel="email", preferred=True))
            session.add(OrganisationContact(organisation_id=org.id, customer_id=cid))
        session.add(Preference(customer_id=b, channel="sms", preferred=False))
    yield a, b, c


def run_id(session: Session) -> int:
    run = IdentityRun(mode="manual", stats={})
    session.add(run)
    session.flush()
    return run.id


def plan(survivor: int, *absorbed: int) -> merges.MergePlan:
    return merges.MergePlan(
        survivor=survivor, absorbed=list(absorbed), rule="manual", score=None, reason="test"
    )


def owned(session: Session, model: Any, customer_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(model).where(model.customer_id == customer_id)
        )
        or 0
    )


def test_merge_then_unmerge_gives_back_the_database_as_it_was(
    factory: sessionmaker[Session], two_customers: tuple[int, ...]
) -> None:
    a, b, _ = two_customers
    with unit_of_work(factory) as session:
        before = snapshot(session)
        counts = {
            m.__tablename__: owned(session, m, b)
            for m in (SourceRecord, Identifier, Consent, Transaction, Interaction)
        }
        assert all(counts.values()), counts  # b has rows of every kind to move
    with unit_of_work(factory) as session:
        merges.merge(session, [plan(a, b)], run_id=run_id(session), actor="tester")
    with unit_of_work(factory) as session:
        absorbed = session.get(Customer, b)
        survivor = session.get(Customer, a)
        assert absorbed is not None and survivor is not None
        assert (absorbed.status, absorbed.merged_into_id) == ("merged", a)
        for model in (SourceRecord, Identifier, Consent, Transaction, Interaction):
            assert owned(session, model, b) == 0, model.__tablename__
        # a's own e-mail preference and organisation link win; b's stay with b
        assert owned(session, Preference, b) == 1 and owned(session, OrganisationContact, b) == 1
        assert session.scalar(
            select(Preference.channel).where(
                Preference.customer_id == a, Preference.channel == "sms"
            )
        )
        assert survivor.provenance and "last_name" in survivor.provenance
        assert snapshot(session) != before
        event = session.scalars(select(MergeEvent.id).where(MergeEvent.absorbed_id == b)).one()
    with unit_of_work(factory) as session:
        merges.unmerge(session, event, actor="tester", reason="two persons")
    with unit_of_work(factory) as session:
        after = snapshot(session)
        for name in before:
            assert after[name] == before[name], f"table {name} differs after the unmerge"
        undone = session.get(MergeEvent, event)
        assert undone is not None and undone.unmerged_by == "tester"
        # the separated records are never joined again
        assert merges.unmerged_record_pairs(session)


def test_unmerging_one_of_two_absorbed_rebuilds_the_survivor(
    factory: sessionmaker[Session], two_customers: tuple[int, ...]
) -> None:
    a, b, c = two_customers
    with unit_of_work(factory) as session:
        b_records = owned(session, SourceRecord, b)
        merges.merge(session, [plan(a, b, c)], run_id=run_id(session), actor="tester")
    with unit_of_work(factory) as session:
        event_b = session.scalars(select(MergeEvent.id).where(MergeEvent.absorbed_id == b)).one()
        merges.unmerge(session, event_b, actor="tester")
    with unit_of_work(factory) as session:
        assert owned(session, SourceRecord, b) == b_records
        c_row = session.get(Customer, c)
        assert c_row is not None and (c_row.status, c_row.merged_into_id) == ("merged", a)
        survivor = session.get(Customer, a)
        assert survivor is not None and survivor.provenance
        # rebuilt from the records it still holds: its values come from a's and c's records
        holders = {
            r
            for (r,) in session.execute(
                select(SourceRecord.id).where(SourceRecord.customer_id == a)
            )
        }
        assert {p["record"] for p in survivor.provenance.values()} <= holders
        with pytest.raises(merges.MergeError, match="already undone"):
            merges.unmerge(session, event_b, actor="tester")


def test_refused_merges_and_unmerges(
    factory: sessionmaker[Session], two_customers: tuple[int, ...]
) -> None:
    a, b, c = two_customers
    with unit_of_work(factory) as session:
        merges.merge(session, [plan(b, c)], run_id=run_id(session), actor="tester")
        first = session.scalars(select(MergeEvent.id).where(MergeEvent.absorbed_id == c)).one()
        with pytest.raises(merges.MergeError, match="not an active customer"):
            merges.merge(session, [plan(a, c)], run_id=run_id(session), actor="tester")
        merges.merge(session, [plan(a, b)], run_id=run_id(session), actor="tester")
        with pytest.raises(merges.MergeError, match="unmerge that event first"):
            merges.unmerge(session, first, actor="tester")
        with pytest.raises(merges.MergeError, match="there is no merge event"):
            merges.unmerge(session, 10**9, actor="tester")
