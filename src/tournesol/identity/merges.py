"""Merging customers and undoing it, exactly. Database work; never commits.

A merge absorbs one customer into a survivor: every row that pointed at the absorbed customer
(source records, identifiers, consents, preferences, interactions, transactions, organisation
contacts) is re-pointed at the survivor, and each re-pointed row is listed in ``merge_move``
under the ``merge_event``. The absorbed customer stays, ``status = 'merged'``,
``merged_into_id`` = the survivor; both customers' columns as they were are kept in the event.

Identifiers of a source record follow the record (they are not listed, to keep a run of a
million records fast); other identifiers are listed like any row. An unmerge re-points exactly
the listed rows (and the identifiers of the listed records) back, restores the absorbed
customer's columns, and restores the survivor's (or, when the survivor changed since,
rebuilds its golden record from the records it still holds). Merges run set-based (one
statement per table for a whole run), so that a full resolution can merge hundreds of
thousands of customers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    Date,
    String,
    Table,
    Text,
    and_,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session, aliased

from tournesol.campaigns.models import CampaignAttribution, CampaignTarget, Outbox
from tournesol.collect.models import CollectedEvent, VisitorLink
from tournesol.consent import service as consent_service
from tournesol.consent.models import Consent, Preference
from tournesol.customers import service as customer_service
from tournesol.customers.models import (
    Customer,
    CustomerAttribute,
    CustomerTag,
    Identifier,
    OrganisationContact,
)
from tournesol.db import Dialect, UtcDateTime, chunked, utcnow
from tournesol.identity import survivorship
from tournesol.identity.models import MergeEvent, MergeMove
from tournesol.ingest.models import Source, SourceRecord
from tournesol.interactions.models import Interaction, Transaction


class MergeError(Exception):
    """A merge or unmerge that cannot be done as asked; the message says why and what to do."""


# Tables whose rows belong to a customer, and the columns that must stay unique per customer.
MOVABLE: dict[str, tuple[Table, tuple[str, ...]]] = {
    "source_record": (cast(Table, SourceRecord.__table__), ()),
    "identifier": (cast(Table, Identifier.__table__), ()),
    "consent": (cast(Table, Consent.__table__), ()),
    "preference": (cast(Table, Preference.__table__), ("channel",)),
    "interaction": (cast(Table, Interaction.__table__), ()),
    "transaction": (cast(Table, Transaction.__table__), ()),
    "organisation_contact": (cast(Table, OrganisationContact.__table__), ("organisation_id",)),
    "collected_event": (cast(Table, CollectedEvent.__table__), ()),
    "visitor_link": (cast(Table, VisitorLink.__table__), ()),
    # what campaigns planned and sent them: the survivor is under both persons' pressure
    "campaign_target": (cast(Table, CampaignTarget.__table__), ("campaign_id",)),
    "outbox": (cast(Table, Outbox.__table__), ()),
    # the purchases attributed to campaigns follow the purchases (transaction moves too)
    "campaign_attribution": (cast(Table, CampaignAttribution.__table__), ()),
    # what journeys set on the person: but the tags and values the survivor has already
    "customer_tag": (cast(Table, CustomerTag.__table__), ("tag",)),
    "customer_attribute": (cast(Table, CustomerAttribute.__table__), ("name",)),
}
# Tables with a customer_id that a merge leaves alone: the audit log is history (who read
# whom, as it was), the name keys are derived from the golden record and rewritten with it;
# segment stays are history too (the absorbed customer leaves at the next snapshot); features,
# RFM and scores are derived from the history and recomputed by their refresh; the current
# consent states are rewritten from the moved consents (consent_service.refresh_state).
# Journey instances and their inbox stay with the absorbed customer: an instance is pinned
# to the person it started for (its waits, its sends' keys); the worker ends the instances of
# a customer who is no longer active, and the survivor's own events start their own.
# A customer's arm in the global holdout is drawn once per version: the survivor keeps its own.
NOT_MOVED = {
    "holdout_assignment",
    "journey_instance",
    "journey_inbox",
    "consent_state",
    "audit_log",
    "customer_name_key",
    "segment_membership",
    "customer_feature",
    "customer_rfm",
    "customer_score",
}
_CUSTOMER = cast(Table, Customer.__table__)
SNAPSHOT_COLUMNS = tuple(c.name for c in _CUSTOMER.columns if c.name != "id")


@dataclass
class MergePlan:
    """Customers to fold into ``survivor``; ``links`` say why (best first)."""

    survivor: int
    absorbed: list[int]
    rule: str
    score: float | None
    reason: str
    evidence: dict[int, dict[str, Any]] = field(default_factory=dict)  # per absorbed customer


def snapshot(row: Mapping[str, Any]) -> dict[str, Any]:
    """A customer's columns as JSON-ready values."""
    out: dict[str, Any] = {}
    for name in SNAPSHOT_COLUMNS:
        value = row[name]
        out[name] = value.isoformat() if isinstance(value, date | datetime) else value
    return out


def restore_values(snap: Mapping[str, Any]) -> dict[str, Any]:
    """The column values a snapshot holds, typed back for the customer table."""
    out: dict[str, Any] = {}
    for name in SNAPSHOT_COLUMNS:
        value = snap.get(name)
        col_type = _CUSTOMER.c[name].type
        if isinstance(value, str) and isinstance(col_type, UtcDateTime):
            value = datetime.fromisoformat(value)
        elif isinstance(value, str) and isinstance(col_type, Date):
            value = date.fromisoformat(value)
        out[name] = value
    return out


def _customer_rows(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    size = Dialect.of(session).max_params - 10
    for part in chunked(sorted(set(ids)), size):
        rows = session.execute(
            select(_CUSTOMER).where(Dialect.of(session).one_of(_CUSTOMER.c.id, part))
        )
        for row in rows.mappings():
            out[row["id"]] = dict(row)
    return out


def merge(
    session: Session,
    plans: Sequence[MergePlan],
    *,
    run_id: int,
    actor: str,
    progress: Callable[[str], None] | None = None,
) -> list[int]:
    """Carry out the plans in one go; returns the survivors' ids (golden records rebuilt)."""
    plans = [p for p in plans if p.absorbed]
    if not plans:
        return []
    say = progress or (lambda _msg: None)
    now = utcnow()
    every = [p.survivor for p in plans] + [a for p in plans for a in p.absorbed]
    if len(set(every)) != len(every):
        raise MergeError("a customer appears twice in the merge plans (or absorbs itself)")
    rows = _customer_rows(session, every)
    for cid in every:
        state = rows.get(cid)
        if state is None or state["status"] != "active":
            raise MergeError(f"customer {cid} is not an active customer: it cannot be merged")
    events: list[dict[str, Any]] = []
    for plan in plans:
        for i, absorbed in enumerate(plan.absorbed):
            evidence = plan.evidence.get(absorbed, {})
            events.append(
                {
                    "survivor_id": plan.survivor,
                    "absorbed_id": absorbed,
                    "run_id": run_id,
                    "actor": actor,
                    "rule": evidence.get("rule", plan.rule),
                    "score": evidence.get("score", plan.score),
                    "reason": evidence.get("reason", plan.reason),
                    "evidence": evidence,
                    # the survivor as it was before this run: restorable by its first event
                    "survivor_before": snapshot(rows[plan.survivor]) if i == 0 else None,
                    "absorbed_before": snapshot(rows[absorbed]),
                    "survivor_written_at": now,
                    "merged_at": now,
                }
            )
    say(f"writing {len(events):,} merge events")
    event = cast(Table, MergeEvent.__table__)
    dialect = Dialect.of(session)
    conn = session.connection()
    ids = dialect.reserve_ids(conn, event, len(events))
    columns = ["id", *events[0]]
    dialect.copy_rows(
        conn, event, columns, [(i, *e.values()) for i, e in zip(ids, events, strict=True)]
    )
    for name, (table, unique) in MOVABLE.items():
        say(f"re-pointing {name} rows")
        moved = (
            select(event.c.id, _literal(name), table.c.id)
            .join(event, event.c.absorbed_id == table.c.customer_id)
            .where(event.c.run_id == run_id, event.c.unmerged_at.is_(None))
        )
        if unique:
            moved = moved.where(*_no_clash(table, unique, event, run_id))
        if name == "identifier":  # those of a record follow it (below), unlisted
            moved = moved.where(table.c.source_record_id.is_(None))
        session.execute(insert(MergeMove).from_select(["event_id", "table_name", "row_id"], moved))
        session.execute(
            update(table)
            .where(
                table.c.id == MergeMove.row_id,
                MergeMove.table_name == name,
                MergeMove.event_id == event.c.id,
                event.c.run_id == run_id,
                event.c.unmerged_at.is_(None),
            )
            .values(customer_id=event.c.survivor_id),
            execution_options={"synchronize_session": False},
        )
        if name == "source_record":
            _identifiers_follow(session, run_id)
    consent_service.refresh_state(session, customers=every)
    session.execute(
        update(_CUSTOMER)
        .where(
            _CUSTOMER.c.id == event.c.absorbed_id,
            event.c.run_id == run_id,
            event.c.unmerged_at.is_(None),
        )
        .values(status="merged", merged_into_id=event.c.survivor_id, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    survivors = [p.survivor for p in plans]
    say(f"rebuilding {len(survivors):,} golden records")
    refresh_golden(session, survivors, now=now)
    session.expire_all()  # customers changed under the ORM's feet: read them again
    return survivors


def _identifiers_follow(session: Session, run_id: int) -> None:
    """The identifiers of the records a run moved go with them."""
    event = cast(Table, MergeEvent.__table__)
    session.execute(
        update(Identifier)
        .where(
            Identifier.source_record_id == MergeMove.row_id,
            MergeMove.table_name == "source_record",
            MergeMove.event_id == event.c.id,
            event.c.run_id == run_id,
            event.c.unmerged_at.is_(None),
        )
        .values(customer_id=event.c.survivor_id),
        execution_options={"synchronize_session": False},
    )


def _literal(name: str) -> Any:
    return literal(name, String())


def _no_clash(table: Table, unique: tuple[str, ...], event: Table, run_id: int) -> list[Any]:
    """Rows that may move without breaking a per-customer unique constraint: the survivor has
    no such row, and among the run's absorbed customers of one survivor, the first row wins.
    The others stay with the absorbed (merged) customer, where an unmerge finds them."""
    held = table.alias("held")
    rival = table.alias("rival")
    rival_event = event.alias("rival_event")
    same = [held.c[col] == table.c[col] for col in unique]
    same_rival = [rival.c[col] == table.c[col] for col in unique]
    return [
        ~exists().where(held.c.customer_id == event.c.survivor_id, *same),
        ~exists().where(
            rival.c.customer_id == rival_event.c.absorbed_id,
            rival_event.c.run_id == run_id,
            rival_event.c.survivor_id == event.c.survivor_id,
            rival.c.id < table.c.id,
            *same_rival,
        ),
    ]


# Above this many golden records to rebuild, the survivorship rules run in a pool of processes
# (one per core): at a million records, a full resolution rebuilds about 230,000 of them.
GOLDEN_POOL_THRESHOLD = 20_000
_Job = tuple[int, list[tuple[int, str, int, datetime | None, str]]]


def refresh_golden(
    session: Session,
    customer_ids: Iterable[int],
    *,
    now: datetime | None = None,
    rules: survivorship.SurvivorshipRules | None = None,
) -> None:
    """Rebuild the golden records (and their provenance) of these customers from the source
    records they hold, by the survivorship rules."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    rules = rules or survivorship.load_rules()
    now = now or utcnow()
    dialect = Dialect.of(session)
    pool = _golden_pool(rules) if len(ids) >= GOLDEN_POOL_THRESHOLD else None
    try:
        pending: list[Any] = []
        for part in chunked(ids, dialect.max_params - 10):
            jobs = _golden_jobs(session, part)
            if pool is None:
                _write_golden(session, _build(jobs, rules), now)
            else:  # the pool builds this part while this process reads the next one
                pending.append(pool.map_async(_build_in_pool, _split(jobs, 4)))
        for result in pending:
            _write_golden(session, [g for built in result.get() for g in built], now)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _golden_jobs(session: Session, part: Sequence[int]) -> list[_Job]:
    dialect = Dialect.of(session)
    query = (
        select(
            SourceRecord.customer_id,
            SourceRecord.id,
            Source.name,
            Source.trust_rank,
            SourceRecord.updated_at,
            sql_cast(SourceRecord.normalized, Text),  # orjson reads it 5x faster
        )
        .join(Source, Source.id == SourceRecord.source_id)
        .where(dialect.one_of(SourceRecord.customer_id, part), SourceRecord.entity == "customer")
    )
    grouped: dict[int, list[tuple[int, str, int, datetime | None, str]]] = {}
    for cid, rid, source, rank, seen, text in session.execute(query):
        assert cid is not None
        grouped.setdefault(cid, []).append((rid, source, rank, seen, text))
    return list(grouped.items())


def _split(jobs: list[_Job], parts: int) -> list[list[_Job]]:
    step = max(1, -(-len(jobs) // parts))
    return [jobs[i : i + step] for i in range(0, len(jobs), step)]


_POOL_RULES: survivorship.SurvivorshipRules | None = None


def _golden_pool(rules: survivorship.SurvivorshipRules) -> Any:
    import multiprocessing
    import os

    global _POOL_RULES
    _POOL_RULES = rules  # inherited by the forked processes
    return multiprocessing.get_context("fork").Pool(min(os.cpu_count() or 1, 4))


def _build_in_pool(jobs: list[_Job]) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    assert _POOL_RULES is not None
    return _build(jobs, _POOL_RULES)


def _build(
    jobs: list[_Job], rules: survivorship.SurvivorshipRules
) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    out: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    for cid, records in jobs:
        candidates = [
            survivorship.Candidate(rid, source, rank, seen, orjson.loads(text))
            for rid, source, rank, seen, text in records
        ]
        golden = survivorship.build_golden(_personal_first(candidates), rules)
        out.append((cid, golden.values, golden.provenance_json()))
    return out


def _write_golden(
    session: Session, built: list[tuple[int, dict[str, Any], dict[str, Any]]], now: datetime
) -> None:
    if not built:
        return
    columns = [*survivorship.COLUMNS, "provenance", "updated_at"]
    rows = [
        (*(values[c] for c in survivorship.COLUMNS), prov, now, cid) for cid, values, prov in built
    ]
    Dialect.of(session).update_rows(session.connection(), _CUSTOMER, "id", columns, rows)
    customer_service.refresh_name_keys(session, customer_ids=[cid for cid, _, _ in built])


WORK_CONTACT_FIELDS = ("email", "phone_mobile", "phone_fixed")


def _personal_first(
    candidates: list[survivorship.Candidate],
) -> list[survivorship.Candidate]:
    """A B2B contact record's e-mail and phones are the person's work ones: they stay on the
    organisation contact and become the golden ones only when no record of the person's own
    exists."""

    def is_work(c: survivorship.Candidate) -> bool:
        return bool(c.values.get("org_siret") or c.values.get("org_name"))

    if all(is_work(c) for c in candidates) or not any(is_work(c) for c in candidates):
        return candidates
    out: list[survivorship.Candidate] = []
    for c in candidates:
        if is_work(c):
            values = {k: v for k, v in c.values.items() if k not in WORK_CONTACT_FIELDS}
            c = survivorship.Candidate(c.record_id, c.source, c.trust_rank, c.seen_at, values)
        out.append(c)
    return out


def unmerge(
    session: Session, event_id: int, *, actor: str, reason: str | None = None
) -> MergeEvent:
    """Undo one merge: the rows it moved go back, both customers get their columns back."""
    event = session.get(MergeEvent, event_id)
    if event is None:
        raise MergeError(f"there is no merge event {event_id}: see `tournesol identity history`")
    if event.unmerged_at is not None:
        raise MergeError(
            f"merge event {event_id} was already undone on {event.unmerged_at:%Y-%m-%d}"
        )
    survivor = session.get(Customer, event.survivor_id)
    absorbed = session.get(Customer, event.absorbed_id)
    assert survivor is not None and absorbed is not None
    if survivor.status != "active":
        later = session.scalars(
            select(MergeEvent.id).where(
                MergeEvent.absorbed_id == survivor.id, MergeEvent.unmerged_at.is_(None)
            )
        ).first()
        raise MergeError(
            f"customer {survivor.id} was itself merged into customer {survivor.merged_into_id} "
            f"since (merge event {later}): unmerge that event first"
        )
    moves = session.execute(
        select(MergeMove.table_name, MergeMove.row_id).where(MergeMove.event_id == event_id)
    ).all()
    by_table: dict[str, list[int]] = {}
    for name, row_id in moves:
        by_table.setdefault(name, []).append(row_id)
    dialect = Dialect.of(session)
    for name, row_ids in by_table.items():
        table = MOVABLE[name][0]
        for part in chunked(row_ids, dialect.max_params - 10):
            session.execute(
                update(table)
                .where(dialect.one_of(table.c.id, part), table.c.customer_id == survivor.id)
                .values(customer_id=absorbed.id)
            )
            if name == "source_record":  # their identifiers go back with them
                session.execute(
                    update(Identifier)
                    .where(
                        dialect.one_of(Identifier.source_record_id, part),
                        Identifier.customer_id == survivor.id,
                    )
                    .values(customer_id=absorbed.id)
                )
    consent_service.refresh_state(session, customers=[survivor.id, absorbed.id])
    session.execute(
        update(_CUSTOMER)
        .where(_CUSTOMER.c.id == absorbed.id)
        .values(**restore_values(event.absorbed_before))
    )
    now = utcnow()
    newer_active = session.scalar(
        select(func.count())
        .select_from(MergeEvent)
        .where(
            MergeEvent.survivor_id == survivor.id,
            MergeEvent.unmerged_at.is_(None),
            MergeEvent.id != event.id,
            MergeEvent.merged_at >= event.merged_at,
        )
    )
    untouched = survivor.updated_at == event.survivor_written_at
    if event.survivor_before is not None and not newer_active and untouched:
        session.execute(
            update(_CUSTOMER)
            .where(_CUSTOMER.c.id == survivor.id)
            .values(**restore_values(event.survivor_before))
        )
    else:
        refresh_golden(session, [survivor.id], now=now)
    customer_service.refresh_name_keys(session, customer_ids=[survivor.id, absorbed.id])
    event.unmerged_at = now
    event.unmerged_by = actor
    event.unmerge_reason = reason
    session.flush()
    session.expire_all()
    return event


def active_events_of(session: Session, customer_id: int) -> list[MergeEvent]:
    """The merges that built this customer (and those it was absorbed by), oldest first."""
    query = (
        select(MergeEvent)
        .where((MergeEvent.survivor_id == customer_id) | (MergeEvent.absorbed_id == customer_id))
        .order_by(MergeEvent.id)
    )
    return list(session.scalars(query))


def unmerged_record_pairs(session: Session) -> set[tuple[int, int]]:
    """Pairs of records an unmerge separated: the moved records of each undone merge against
    the records its survivor still holds. Resolution never joins them again."""
    moved_rec = aliased(MergeMove)
    rows = session.execute(
        select(moved_rec.row_id, SourceRecord.id)
        .join(MergeEvent, MergeEvent.id == moved_rec.event_id)
        .join(SourceRecord, SourceRecord.customer_id == MergeEvent.survivor_id)
        .where(
            MergeEvent.unmerged_at.is_not(None),
            moved_rec.table_name == "source_record",
            and_(SourceRecord.entity == "customer"),
        )
    )
    return {(min(a, b), max(a, b)) for a, b in rows if a != b}
