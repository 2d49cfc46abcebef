"""Journeys in the database: publishing versions, the event inbox, and the engine loop that
runs :mod:`tournesol.triggers.rules` over stored instances. Keyword-only arguments, the session
passed in; nothing here commits (the CLI command, the worker or the request does).

Three movements, each one transaction of the caller:

1. **Intake** (:func:`collect_events`, :func:`run_date_triggers`, :func:`submit_event`):
   what happened becomes rows of ``journey_inbox``, one per event id (``INSERT ... ON
   CONFLICT DO NOTHING``: collecting twice stores once). The scans read new rows of the
   history past a cursor (``journey_cursor``). On PostgreSQL a row with a lower id can commit
   after one with a higher id, so a scan also reads again the ids that transactions still
   running at an earlier scan may hold, until they have ended (:func:`_scan_ids`). A
   cursor that does not exist yet starts at the end of the history: journeys act on what
   happens from then on (``backfill=True`` reads from the start), and rows older than
   ``max_age`` are never collected (an import of last year's tickets starts no journey).

   Event types: an interaction gives its ``type`` (a Segment ``track`` event lands as an
   interaction whose type is its normalized name: "Order Completed" -> ``order_completed``),
   except the unsubscriptions (``email_unsubscribed``, ``sms_stop``, and ``consent_changed``
   withdrawing a consent), which give ``unsubscribed`` (:data:`EVENT_ALIASES`); a
   transaction gives :data:`TRANSACTION_TYPES` of its kind (a web ``order`` is
   ``order_completed``, a shop ``ticket`` a ``purchase``, a ``return``
   ``purchase_returned``); a new customer ``customer_created``; a segment entry or exit
   ``segment_entered`` / ``segment_left`` with ``properties.segment``; a date rule that falls
   due, or a call of the API, :data:`START_EVENT` naming the journey it starts. Timeline rows
   with direction ``internal`` (decisions of campaigns and journeys) are not events.

2. **Events** (:func:`process_inbox`): each event is offered to the customer's running
   instances (exit criteria, awaited events), then starts the active journeys whose trigger
   it matches and whose re-entry policy allows. An instance that reaches an action waits at
   the gate (``awaiting_gate``, due at once) for step 3.

3. **Time** (:func:`run_due`): the due instances are claimed (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL, so two workers never take the same one; SQLite has one writer) and advanced;
   every ``Send`` goes through the dispatch gate and its answer is fed back, until the
   instance waits or ends.

Every change is written with its effects in the same transaction: the instance's state, its
step log (unique per instance, step and visit, inserted ignoring duplicates), score updates,
and the customer's timeline (``journey_entered``, ``journey_step`` for the actions' results
and updates, ``journey_goal``, ``journey_exited``; direction ``internal``, campaign code
``journey:<code>``), the tags and values ``update`` steps set (``customer_tag``,
``customer_attribute``).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, TypeAlias, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Date,
    String,
    Table,
    and_,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from tournesol.campaigns.rules import CONTACT_CHANNELS, FRENCH_DEFAULTS, ConsentFact, decide_consent
from tournesol.campaigns.service import COUNTRY_ZONES
from tournesol.consent.models import ConsentState
from tournesol.customers.models import (
    Brand,
    Customer,
    CustomerAttribute,
    CustomerTag,
    OrganisationContact,
)
from tournesol.db import Dialect, chunked
from tournesol.interactions.models import INTERNAL, Interaction, Transaction
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore
from tournesol.segments.models import Segment, SegmentMembership
from tournesol.triggers.definition import (
    ActionStep,
    DateRule,
    EventSpec,
    JourneyDefinition,
    JourneyError,
    SegmentTrigger,
    load_journey,
    parse_journey,
)
from tournesol.triggers.gate import Ask, Gate, GateCall, RecordingGate
from tournesol.triggers.models import (
    LIVE,
    Journey,
    JourneyCursor,
    JourneyInbox,
    JourneyInstance,
    JourneyStepLog,
    JourneyVersion,
)
from tournesol.triggers.rules import (
    FINAL,
    MAX_STEPS_PER_CALL,
    SEGMENT_ENTERED,
    SEGMENT_LEFT,
    Advance,
    Event,
    Exited,
    Facts,
    GoalReached,
    InstanceState,
    PastInstance,
    Send,
    StepLogged,
    Update,
    advance,
    date_rule_due,
    instance_key_of,
    may_enter,
    start,
    trigger_matches,
)

FactsLoader: TypeAlias = Callable[
    [Session, Sequence[int], datetime, frozenset[str]], dict[int, Facts]
]
# What load_facts can read (JourneyDefinition.reads names what a journey needs of it).
EVERYTHING: Final = frozenset({"attributes", "segments", "scores", "consent"})

# The event that starts one journey by name (properties.journey): what a date rule that falls
# due and the API put in the inbox. Only journeys triggered by a date rule or the API take it.
START_EVENT: Final = "journey_start"
CUSTOMER_CREATED: Final = "customer_created"
TRANSACTION_TYPES: Final[Mapping[str, str]] = {
    "order": "order_completed",
    "ticket": "purchase",
    "return": "purchase_returned",
}
UNSUBSCRIBED: Final = "unsubscribed"
EVENT_ALIASES: Final[Mapping[str, str]] = {
    "email_unsubscribed": UNSUBSCRIBED,
    "sms_stop": UNSUBSCRIBED,
}
MAX_AGE: Final = timedelta(days=7)  # older history is never collected
DEFAULT_ZONE: Final = "Europe/Paris"
CONTRACT_DAYS: Final = 365  # a purchase this recent counts as a contract (campaigns' default)
LIVE_STATUSES: Final = ("active", "waiting", "awaiting_gate")
TIMELINE_TYPES: Final = ("journey_entered", "journey_step", "journey_goal", "journey_exited")

_INBOX = cast(Table, JourneyInbox.__table__)
_TAGS = cast(Table, CustomerTag.__table__)
_ATTRIBUTES = cast(Table, CustomerAttribute.__table__)
_INSTANCES = cast(Table, JourneyInstance.__table__)
_LOGS = cast(Table, JourneyStepLog.__table__)
_CURSORS = cast(Table, JourneyCursor.__table__)
_INTERACTIONS = cast(Table, Interaction.__table__)
_SCORES = cast(Table, CustomerScore.__table__)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# Advisory lock spaces (PostgreSQL): the customers a worker is deciding for, and the
# collector (one at a time).
_CUSTOMER_LOCKS: Final = "journey-customer"
_COLLECTOR_LOCK: Final = "journey-collector"
_DEFINITIONS: dict[str, JourneyDefinition] = {}  # by digest: versions never change


class JourneyNotFound(LookupError):
    """No journey has this code."""


# --------------------------------------------------------------------------------------------
# Journeys and versions


def publish(
    session: Session, *, text: str, now: datetime, actor: str | None = None
) -> JourneyVersion:
    """Validate ``text`` (YAML) and make it the journey's current version, the journey
    ``active``: a new journey is created; a new version is written only when the canonical
    form changed (the same journey published again, whatever its layout, returns the version
    that has it, which becomes current again). Instances already running stay on their
    version. :class:`JourneyError` when the text is not a valid journey or names an unknown
    brand.

    >>> version = publish(session, text=open("welcome.yaml").read(), now=now)  # doctest: +SKIP
    >>> version.version, version.digest[:8]  # doctest: +SKIP
    (1, '3f2a9c01')
    """
    journey_def = load_journey(text)
    brand_id = None
    if journey_def.brand is not None:
        brand_id = session.scalar(select(Brand.id).where(Brand.code == journey_def.brand))
        if brand_id is None:
            raise JourneyError("brand", f"no brand has the code {journey_def.brand!r}")
    journey = get_by_code(session, code=journey_def.code)
    if journey is None:
        journey = Journey(
            code=journey_def.code,
            name=journey_def.name,
            brand_id=brand_id,
            status="draft",
            created_at=now,
            updated_at=now,
        )
        session.add(journey)
        session.flush()
    digest = journey_def.digest()
    version = session.scalar(
        select(JourneyVersion).where(
            JourneyVersion.journey_id == journey.id, JourneyVersion.digest == digest
        )
    )
    if version is None:
        last = session.scalar(
            select(func.max(JourneyVersion.version)).where(JourneyVersion.journey_id == journey.id)
        )
        version = JourneyVersion(
            journey_id=journey.id,
            version=(last or 0) + 1,
            digest=digest,
            definition=journey_def.to_dict(),
            source_yaml=text,
            published_at=now,
            published_by=actor,
        )
        session.add(version)
        session.flush()
        _DEFINITIONS.setdefault(digest, journey_def)
    journey.current_version_id = version.id
    journey.name = journey_def.name
    journey.brand_id = brand_id
    journey.status = "active"
    journey.updated_at = now
    session.flush()
    return version


def get(session: Session, *, journey_id: int) -> Journey | None:
    return session.get(Journey, journey_id)


def get_by_code(session: Session, *, code: str) -> Journey | None:
    return session.scalar(select(Journey).where(Journey.code == code))


def list_journeys(session: Session) -> list[Journey]:
    """Every journey, by code."""
    return list(session.scalars(select(Journey).order_by(Journey.code)))


def versions(session: Session, *, journey_id: int) -> list[JourneyVersion]:
    """The journey's versions, the latest first."""
    return list(
        session.scalars(
            select(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.version.desc())
        )
    )


def definition_of(version: JourneyVersion) -> JourneyDefinition:
    """The validated definition a version holds (parsed once per digest)."""
    found = _DEFINITIONS.get(version.digest)
    if found is None:
        found = parse_journey(version.definition)
        if len(_DEFINITIONS) >= 1024:
            _DEFINITIONS.clear()
        _DEFINITIONS[version.digest] = found
    return found


def _set_status(session: Session, code: str, status: str, now: datetime) -> Journey:
    journey = get_by_code(session, code=code)
    if journey is None:
        raise JourneyNotFound(f"no journey has the code {code!r}")
    journey.status = status
    journey.updated_at = now
    session.flush()
    return journey


def pause(session: Session, *, code: str, now: datetime) -> Journey:
    """Freeze the journey: no new entries, no timers, no sends, until :func:`resume`. Events
    still reach its instances (an exit criterion ends them; an awaited event moves them up
    to their next action, which waits for the resumption)."""
    return _set_status(session, code, "paused", now)


def resume(session: Session, *, code: str, now: datetime) -> Journey:
    """Run a paused (or archived) journey again; waits that fell due meanwhile run at once."""
    return _set_status(session, code, "active", now)


def archive(session: Session, *, code: str, now: datetime) -> Journey:
    """No new entries; the running instances go on to their end."""
    return _set_status(session, code, "archived", now)


# --------------------------------------------------------------------------------------------
# Event intake


def submit_event(
    session: Session,
    *,
    customer_id: int,
    type: str,
    properties: Mapping[str, Any],
    occurred_at: datetime,
    event_id: str,
    received_at: datetime | None = None,
) -> bool:
    """Put one event in the inbox (the API trigger, tests). False when an event with this id
    is already there: nothing is written."""
    row = (
        event_id,
        customer_id,
        type,
        occurred_at,
        _plain(dict(properties)),
        received_at or occurred_at,
    )
    return _insert_events(session, [row]) == 1


def enter(
    session: Session,
    *,
    code: str,
    customer_id: int,
    now: datetime,
    properties: Mapping[str, Any] | None = None,
    event_id: str | None = None,
) -> bool:
    """Ask for the customer to enter the journey ``code`` (triggered by ``api``) at the next
    :func:`process_inbox`: a :data:`START_EVENT` with id ``event_id`` (default
    ``api:<uuid>``). False when that event id was already submitted."""
    return submit_event(
        session,
        customer_id=customer_id,
        type=START_EVENT,
        properties={**(properties or {}), "journey": code},
        occurred_at=now,
        event_id=event_id or f"api:{uuid.uuid4()}",
        received_at=now,
    )


_EventRow: TypeAlias = tuple[str, int, str, datetime, dict[str, Any], datetime]
_EVENT_COLUMNS: Final = (
    "event_id", "customer_id", "type", "occurred_at", "properties", "received_at"
)  # fmt: skip


def _insert_events(session: Session, rows: Sequence[_EventRow]) -> int:
    inserted = 0
    dialect = Dialect.of(session)
    for part in chunked(rows, 2000):
        inserted += len(
            dialect.insert_rows(
                session.connection(),
                _INBOX,
                _EVENT_COLUMNS,
                part,
                conflict=("event_id",),
                returning=("id",),
            )
        )
    return inserted


def collect_events(
    session: Session,
    *,
    now: datetime,
    limit: int = 10_000,
    max_age: timedelta = MAX_AGE,
    backfill: bool = False,
) -> Counter[str]:
    """Put into the inbox what happened since the last call: new interactions and
    transactions of known customers, new customers, segment entries and exits. Reads at most
    ``limit`` new rows per source (call again while it finds some). Returns the events
    stored per source; collecting again stores nothing twice.

    On PostgreSQL one collector works at a time (an advisory lock, tried without waiting):
    while another worker collects, this call returns at once with nothing, rather than
    read the same new rows and wait on the other's inbox rows."""
    dialect = Dialect.of(session)
    if not dialect.try_lock(session, _COLLECTOR_LOCK):
        return Counter()
    dialect.claim_write(session.connection(), _CURSORS)
    recent = now - max_age
    counts: Counter[str] = Counter()
    for name, table, prefix, load in _ID_SOURCES:
        rows = _scan_ids(
            session,
            name=name,
            table=table,
            prefix=prefix,
            load=load,
            now=now,
            recent=recent,
            limit=limit,
            backfill=backfill,
        )
        counts[name] += _insert_events(session, rows)
    counts[SEGMENT_LEFT] += _scan_exits(
        session, now=now, recent=recent, limit=limit, backfill=backfill
    )
    return counts


_Loader: TypeAlias = Callable[[Session, datetime, list[Any]], list[_EventRow]]


def _scan_ids(
    session: Session,
    *,
    name: str,
    table: Table,
    prefix: Callable[[Table], ColumnElement[Any]],
    load: _Loader,
    now: datetime,
    recent: datetime,
    limit: int,
    backfill: bool,
) -> list[_EventRow]:
    """The events of ``table``'s rows past the cursor ``name`` that are not in the inbox
    yet; the cursor moves to the last id read.

    On PostgreSQL ids are drawn when a row is written, not when it commits: a row with a
    lower id can become visible after a scan has passed it. So the cursor keeps, besides
    ``position`` (the last id read), ``settled``: every row at or below it has been read or
    never will commit. A scan reads ``(settled, position]`` again, then its new rows.

    ``settled`` moves to a ``watch`` (the last id seen by an earlier scan) once every
    transaction that could still commit a row at or below it has ended. Such a transaction
    drew that row's id before the watched row was drawn and committed, hence was given its
    transaction id before the scan ended; the scan then takes a transaction id of its own,
    ``N`` (kept in ``pending``), and the watch holds until a snapshot's ``xmin`` (the oldest
    transaction still running) has passed ``N``. Done twice over, one scan apart: a
    transaction draws its first id an instant before it is given its transaction id, and
    the second round covers that instant. (A snapshot's list of running transactions is not
    enough: it leaves out those given an id after the last one that ended.) A long
    transaction holds ``settled`` back (a campaign plan): the window read again grows
    meanwhile; the rows already in the inbox are skipped by their event id.

    SQLite has one writer at a time, which commits before the next draws an id: its rows
    become visible in id order, and ``settled`` follows ``position``."""
    c = _CURSORS.c
    found = session.execute(
        select(c.position, c.floor, c.settled, c.watch, c.pending).where(c.name == name)
    ).first()
    if found is None:
        top = 0 if backfill else session.scalar(select(func.max(table.c.id))) or 0
        _init_cursor(session, name, top, top, now)
        if not backfill:
            return []
        position, floor, settled, watch, pending = 0, 0, 0, None, None
    else:
        position, floor, settled, watch, pending = found
    settled = max(position if settled is None else settled, floor)
    window = select(table.c.id).where(table.c.id > position).order_by(table.c.id).limit(limit)
    top = func.max(window.subquery().c.id)
    postgres = Dialect.of(session).name == "postgresql"
    xmin = 0
    if postgres:
        upper, xmin = session.execute(
            select(top, text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))
        ).one()
    else:
        upper = session.scalar(select(top))
    upper = position if upper is None else upper
    rows: list[_EventRow] = []
    if upper > settled:
        known = exists().where(_INBOX.c.event_id == prefix(table))
        rows = load(session, recent, [table.c.id > settled, table.c.id <= upper, ~known])
    values: dict[str, Any] = {}
    if not postgres:
        values.update(settled=upper, watch=None, pending=None)
    else:
        phase, mark = _watch_state(pending)
        if watch is None or xmin >= mark:
            mine = int(session.scalar(text("SELECT pg_current_xact_id()::text")) or 0)
            if watch is None:
                values.update(watch=upper, pending=f"1:{mine}")
            elif phase == 1:  # the first round is over: once more, for the instant
                values.update(pending=f"2:{mine}")
            else:  # every row up to the watch was read by this scan at the latest
                values.update(settled=max(settled, watch), watch=upper, pending=f"1:{mine}")
    if upper > position:
        values.update(position=upper)
    if values:
        session.execute(update(_CURSORS).where(c.name == name).values(**values, updated_at=now))
    return rows


def _watch_state(pending: str | None) -> tuple[int, int]:
    """A cursor's watch: its round (1 or 2) and the transaction id ``xmin`` must pass."""
    if not pending or ":" not in pending:
        return 1, 0
    phase, mark = pending.split(":", 1)
    return int(phase), int(mark)


def _init_cursor(session: Session, name: str, position: int, floor: int, now: datetime) -> None:
    session.execute(
        Dialect.of(session)
        .insert_ignoring(_CURSORS, ("name",))
        .values(name=name, position=position, floor=floor, settled=position, updated_at=now)
    )


def _id_text(*parts: tuple[str, str]) -> Callable[[Table], ColumnElement[Any]]:
    """The event id of a row as SQL: each part's text then its column's value, as the
    loaders below write it in Python (``_id_text(("interaction:", "id"))``)."""

    def build(table: Table) -> ColumnElement[Any]:
        expr: ColumnElement[Any] | None = None
        for prefix, column in parts:
            piece = literal(prefix, String()) + sql_cast(table.c[column], String())
            expr = piece if expr is None else expr + piece
        assert expr is not None
        return expr

    return build


# the columns an interaction's or a transaction's event carries in its properties (under the
# name given), besides its payload or attributes
_INTERACTION_META: Final = (
    ("id", "interaction_id"), ("type", "interaction_type"), ("channel", "channel"),
    ("direction", "direction"), ("subject", "subject"), ("outcome", "outcome"),
    ("campaign_code", "campaign_code"), ("brand_id", "brand_id"),
)  # fmt: skip
_TRANSACTION_META: Final = (
    ("id", "transaction_id"), ("external_id", "external_id"), ("kind", "kind"),
    ("channel", "channel"), ("store_code", "store_code"), ("brand_id", "brand_id"),
    ("total_amount", "total"), ("currency", "currency"), ("status", "status"),
)  # fmt: skip


def _interactions(session: Session, recent: datetime, where: list[Any]) -> list[_EventRow]:
    i = _INTERACTIONS
    columns = [i.c[name] for name, _ in _INTERACTION_META]
    rows = session.execute(
        select(*columns, i.c.customer_id, i.c.occurred_at, i.c.created_at, i.c.payload)
        .where(
            i.c.customer_id.is_not(None),
            i.c.direction != INTERNAL,
            func.coalesce(i.c.occurred_at, i.c.created_at) >= recent,
            *where,
        )
        .order_by(i.c.id)
    )
    out: list[_EventRow] = []
    for row in rows:
        r = row._mapping
        props = _properties(r["payload"], r, _INTERACTION_META)
        kind = r["type"]
        event_type = EVENT_ALIASES.get(kind, kind)
        if kind == "consent_changed" and props.get("status") == "withdrawn":
            event_type = UNSUBSCRIBED
        when = r["occurred_at"] or r["created_at"]
        out.append((f"interaction:{r['id']}", r["customer_id"], event_type, when, props, when))
    return out


def _transactions(session: Session, recent: datetime, where: list[Any]) -> list[_EventRow]:
    t = cast(Table, Transaction.__table__)
    columns = [t.c[name] for name, _ in _TRANSACTION_META]
    rows = session.execute(
        select(*columns, t.c.customer_id, t.c.occurred_at, t.c.created_at, t.c.attributes)
        .where(
            t.c.customer_id.is_not(None),
            func.coalesce(t.c.occurred_at, t.c.created_at) >= recent,
            *where,
        )
        .order_by(t.c.id)
    )
    out: list[_EventRow] = []
    for row in rows:
        r = row._mapping
        props = _properties(r["attributes"], r, _TRANSACTION_META)
        event_type = TRANSACTION_TYPES.get(r["kind"], r["kind"])
        when = r["occurred_at"] or r["created_at"]
        out.append((f"transaction:{r['id']}", r["customer_id"], event_type, when, props, when))
    return out


def _properties(
    extra: Any, row: Mapping[Any, Any], meta: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """The row's payload (or attributes), then the columns ``meta`` names where the payload
    has no value of that name, as JSON values."""
    props: dict[str, Any] = dict(extra) if isinstance(extra, Mapping) else {}
    for column, name in meta:
        props.setdefault(name, row[column])
    return cast(dict[str, Any], _plain(props))


def _customers(session: Session, recent: datetime, where: list[Any]) -> list[_EventRow]:
    c = cast(Table, Customer.__table__)
    rows = session.execute(
        select(c.c.id, c.c.created_at, c.c.customer_type, c.c.brand_id, c.c.country)
        .where(c.c.status == "active", c.c.created_at >= recent, *where)
        .order_by(c.c.id)
    )
    return [
        (
            f"customer:{id_}",
            id_,
            CUSTOMER_CREATED,
            created,
            {"customer_type": kind, "brand_id": brand, "country": country},
            created,
        )
        for id_, created, kind, brand, country in rows
    ]


def _entries(session: Session, recent: datetime, where: list[Any]) -> list[_EventRow]:
    m = cast(Table, SegmentMembership.__table__)
    s = cast(Table, Segment.__table__)
    rows = session.execute(
        select(m.c.id, m.c.segment_id, m.c.customer_id, m.c.entered_at, s.c.code)
        .join(s, s.c.id == m.c.segment_id)
        .where(m.c.entered_at >= recent, *where)
        .order_by(m.c.id)
    )
    return [
        (
            f"segment:{segment}:entered:{id_}",
            customer,
            SEGMENT_ENTERED,
            entered,
            {"segment": code, "segment_id": segment},
            entered,
        )
        for id_, segment, customer, entered, code in rows
    ]


def _exits(
    session: Session, recent: datetime, where: list[Any], limit: int | None = None
) -> list[_EventRow]:
    m = cast(Table, SegmentMembership.__table__)
    s = cast(Table, Segment.__table__)
    rows = session.execute(
        select(m.c.id, m.c.segment_id, m.c.customer_id, m.c.left_at, s.c.code)
        .join(s, s.c.id == m.c.segment_id)
        .where(m.c.left_at.is_not(None), m.c.left_at >= recent, *where)
        .order_by(m.c.left_at, m.c.customer_id)
        .limit(limit)
    )
    return [
        (
            f"segment:{segment}:left:{id_}",
            customer,
            SEGMENT_LEFT,
            left,
            {"segment": code, "segment_id": segment},
            left,
        )
        for id_, segment, customer, left, code in rows
    ]


_MEMBERSHIPS = cast(Table, SegmentMembership.__table__)
# (cursor name, table scanned by id, the SQL of a row's event id, the loader)
_IdSource: TypeAlias = tuple[str, Table, Callable[[Table], ColumnElement[Any]], _Loader]
_ID_SOURCES: Final[tuple[_IdSource, ...]] = (
    ("interaction", _INTERACTIONS, _id_text(("interaction:", "id")), _interactions),
    (
        "transaction",
        cast(Table, Transaction.__table__),
        _id_text(("transaction:", "id")),
        _transactions,
    ),
    ("customer", cast(Table, Customer.__table__), _id_text(("customer:", "id")), _customers),
    (
        SEGMENT_ENTERED,
        _MEMBERSHIPS,
        _id_text(("segment:", "segment_id"), (":entered:", "id")),
        _entries,
    ),
)


def _scan_exits(
    session: Session, *, now: datetime, recent: datetime, limit: int, backfill: bool
) -> int:
    """Segment exits, segment by segment, past each segment's cursor (the exit time and the
    customer of the last exit read: the order of the segment's index). A segment's refreshes
    follow one another, so its exits commit in that order: no margin."""
    m = _MEMBERSHIPS
    stored = 0
    segments = list(session.scalars(select(Segment.id).where(Segment.archived.is_(False))))
    cursors = {
        name: (position, floor)
        for name, position, floor in session.execute(
            select(JourneyCursor.name, JourneyCursor.position, JourneyCursor.floor).where(
                JourneyCursor.name.like(f"{SEGMENT_LEFT}:%")
            )
        )
    }
    for segment_id in segments:
        name = f"{SEGMENT_LEFT}:{segment_id}"
        found = cursors.get(name)
        if found is None:
            last = None
            if not backfill:
                last = session.execute(
                    select(m.c.left_at, m.c.customer_id)
                    .where(m.c.segment_id == segment_id, m.c.left_at.is_not(None))
                    .order_by(m.c.left_at.desc(), m.c.customer_id.desc())
                    .limit(1)
                ).first()
            found = (0, 0) if last is None else (_micros(last[0]), last[1])
            _init_cursor(session, name, found[0], found[1], now)
            if last is not None:
                continue
        at, customer = _instant(found[0]), found[1]
        after = or_(m.c.left_at > at, and_(m.c.left_at == at, m.c.customer_id > customer))
        rows = _exits(session, recent, [m.c.segment_id == segment_id, after], limit)
        if not rows:
            continue
        stored += _insert_events(session, rows)
        last_row = rows[-1]
        session.execute(
            update(_CURSORS)
            .where(_CURSORS.c.name == name)
            .values(position=_micros(last_row[3]), floor=last_row[1], updated_at=now)
        )
    return stored


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _instant(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def run_date_triggers(session: Session, *, day: date, now: datetime) -> Counter[str]:
    """Put into the inbox one :data:`START_EVENT` per customer and active date-triggered
    journey whose rule falls due on ``day`` (the customer's local day: instants such as
    ``last_purchase_at`` are read as local dates in their time zone). Event ids
    ``date:<journey>:<day>:<customer>``: running it twice for a day stores nothing twice.
    Candidates are found in SQL (month and day of birth, dates around the target); only they
    are checked one by one with :func:`rules.date_rule_due`. Returns the events stored per
    journey."""
    Dialect.of(session).claim_write(session.connection(), _INBOX)
    counts: Counter[str] = Counter()
    for journey, journey_def in _active_journeys(session):
        rule = journey_def.trigger
        if not isinstance(rule, DateRule):
            continue
        rows = [
            (
                f"date:{journey.code}:{day.isoformat()}:{customer_id}",
                customer_id,
                START_EVENT,
                now,
                {"journey": journey.code, "rule": rule.rule, "day": day.isoformat()},
                now,
            )
            for customer_id in date_candidates(session, rule=rule, day=day)
        ]
        counts[journey.code] += _insert_events(session, rows)
    return counts


def date_candidates(
    session: Session, *, rule: DateRule, day: date, customers: Sequence[int] | None = None
) -> list[int]:
    """The active customers (among ``customers`` when given) for whom ``rule`` falls due on
    their local ``day``. A ``field`` that is neither a customer column nor a customer feature
    finds nobody."""
    c = cast(Table, Customer.__table__)
    f = cast(Table, CustomerFeature.__table__)
    if rule.field in c.c and rule.field not in ("id", "provenance"):
        column = c.c[rule.field]
        source: Any = c
    elif rule.field in f.c and rule.field != "customer_id":
        column = f.c[rule.field]
        source = c.join(f, f.c.customer_id == c.c.id)
    else:
        return []
    is_date = isinstance(column.type, Date)
    slack = timedelta(0) if is_date else timedelta(days=1)  # local day vs UTC instant
    conditions: list[Any] = [c.c.status == "active", column.is_not(None)]
    if rule.rule in ("birthday", "age"):
        days = {day + timedelta(days=k) for k in (-1, 0, 1)} if slack else {day}
        if (day.month, day.day) == (2, 28) and not _leap(day.year):
            days.add(date(2000, 2, 29))
        conditions.append(
            _month_day(session, column).in_(sorted({d.strftime("%m-%d") for d in days}))
        )
        if rule.rule == "age":
            year = day.year - (rule.years or 0)
            conditions.append(column >= _bound(date(year, 1, 1) - slack, is_date))
            conditions.append(column < _bound(date(year + 1, 1, 1) + slack, is_date))
        else:
            conditions.append(column < _bound(date(day.year, 1, 1) + slack, is_date))
    else:
        shift_days = (
            (rule.offset or timedelta(0))
            if rule.rule == "offset"
            else timedelta(days=rule.days or 0)
        )
        target = day - shift_days
        conditions.append(column >= _bound(target - slack, is_date))
        conditions.append(column < _bound(target + timedelta(days=1) + slack, is_date))
    query = select(c.c.id, c.c.country, column).select_from(source).where(*conditions)
    found: list[int] = []
    batches: Iterable[Sequence[int] | None] = (
        [None] if customers is None else chunked(customers, 5000)
    )
    dialect = Dialect.of(session)
    for batch in batches:
        q = query if batch is None else query.where(dialect.one_of(c.c.id, list(batch)))
        for customer_id, country, value in session.execute(q):
            zone = COUNTRY_ZONES.get(country or "FR", DEFAULT_ZONE)
            if date_rule_due(rule, customer={rule.field: value}, on=day, tz=zone):
                found.append(customer_id)
    return sorted(found)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _bound(value: date, is_date: bool) -> date | datetime:
    return value if is_date else datetime.combine(value, time(), UTC)


def _month_day(session: Session, column: Any) -> Any:
    """``MM-DD`` of a date or date-time column, in SQL."""
    if Dialect.of(session).name == "postgresql":
        return func.to_char(column, "MM-DD")
    return func.strftime("%m-%d", column)


# --------------------------------------------------------------------------------------------
# Facts


def load_facts(
    session: Session, customer_ids: Sequence[int], now: datetime, reads: frozenset[str] = EVERYTHING
) -> dict[int, Facts]:
    """What the engine knows about these customers at ``now``, in a few set-based reads;
    ``reads`` says which parts (:meth:`JourneyDefinition.reads`), the others stay empty:

    - ``attributes``: ``customer`` holds the golden record's columns (but the provenance),
      ``age`` in whole years, the features of ``customer_feature`` (``last_purchase_at``,
      ``purchase_count_365``...; amounts as numbers) and ``rfm_segment`` (RFM over all
      brands), ``tags`` (sorted) and ``attributes`` (what update steps set); without it,
      ``customer`` holds ``id`` and ``country`` only;
    - ``segments``: the codes of the saved segments they are in now; ``scores``: by model;
    - ``consent``: ``allowed_channels``, the ``(channel, purpose)`` pairs that
      :func:`tournesol.campaigns.rules.decide_consent` allows under the French defaults for
      the customer's brand (or the group), for purpose ``marketing`` and every purpose their
      consents name; a purchase within :data:`CONTRACT_DAYS` counts as a contract;
    - always ``timezone``: the zone of their country (``COUNTRY_ZONES``), Paris by default.

    Merged or erased customers are left out of the answer.
    """
    out: dict[int, Facts] = {}
    dialect = Dialect.of(session)
    c = cast(Table, Customer.__table__)
    if "attributes" in reads or "consent" in reads:
        columns = [col for col in c.c if col.name != "provenance"]
    else:
        columns = [c.c.id, c.c.country]
    for batch in chunked(sorted(set(customer_ids)), 5000):
        ids = list(batch)
        people: dict[int, dict[str, Any]] = {}
        for row in session.execute(
            select(*columns).where(dialect.one_of(c.c.id, ids), c.c.status == "active")
        ):
            values = {k: _value(v) for k, v in row._mapping.items()}
            people[values["id"]] = values
        if not people:
            continue
        zones = {
            cid: COUNTRY_ZONES.get(p.get("country") or "FR", DEFAULT_ZONE)
            for cid, p in people.items()
        }
        if "attributes" in reads:
            _attributes(session, ids, people, zones, now)
        segments: dict[int, set[str]] = defaultdict(set)
        if "segments" in reads:
            for cid, code in session.execute(
                select(SegmentMembership.customer_id, Segment.code)
                .join(Segment, Segment.id == SegmentMembership.segment_id)
                .where(
                    dialect.one_of(SegmentMembership.customer_id, ids),
                    SegmentMembership.left_at.is_(None),
                )
            ):
                segments[cid].add(code)
        scores: dict[int, dict[str, float]] = defaultdict(dict)
        if "scores" in reads:
            for cid, model, value in session.execute(
                select(CustomerScore.customer_id, CustomerScore.model, CustomerScore.value).where(
                    dialect.one_of(CustomerScore.customer_id, ids)
                )
            ):
                scores[cid][model] = float(value)
        allowed = _allowed(session, ids, people, now) if "consent" in reads else {}
        if "attributes" not in reads:
            people = {cid: {"id": cid, "country": p.get("country")} for cid, p in people.items()}
        for cid, person in people.items():
            out[cid] = Facts(
                customer=person,
                segments=frozenset(segments.get(cid, ())),
                scores=scores.get(cid, {}),
                allowed_channels=allowed.get(cid, frozenset()),
                timezone=zones[cid],
            )
    return out


def _attributes(
    session: Session,
    ids: list[int],
    people: dict[int, dict[str, Any]],
    zones: Mapping[int, str],
    now: datetime,
) -> None:
    """Add the age, the features, the RFM segment, the tags (``tags``, sorted) and the
    values set by journeys (``attributes``) to the customers' attributes."""
    dialect = Dialect.of(session)
    for cid, p in people.items():
        born = p.get("birth_date")
        if isinstance(born, date):
            today = now.astimezone(ZoneInfo(zones[cid])).date()
            p["age"] = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    f = cast(Table, CustomerFeature.__table__)
    for row in session.execute(select(f).where(dialect.one_of(f.c.customer_id, ids))):
        values = dict(row._mapping)
        person = people.get(values.pop("customer_id"))
        if person is not None:
            values.pop("computed_at", None)
            person.update({k: _value(v) for k, v in values.items()})
    for cid, segment in session.execute(
        select(CustomerRfm.customer_id, CustomerRfm.segment).where(
            dialect.one_of(CustomerRfm.customer_id, ids), CustomerRfm.scope == "all"
        )
    ):
        if cid in people:
            people[cid]["rfm_segment"] = segment
    for p in people.values():
        p["tags"] = []
        p["attributes"] = {}
    for cid, tag in session.execute(
        select(_TAGS.c.customer_id, _TAGS.c.tag)
        .where(dialect.one_of(_TAGS.c.customer_id, ids))
        .order_by(_TAGS.c.tag)
    ):
        if cid in people:
            people[cid]["tags"].append(tag)
    a = _ATTRIBUTES
    for cid, name, value in session.execute(
        select(a.c.customer_id, a.c.name, a.c.value).where(dialect.one_of(a.c.customer_id, ids))
    ):
        if cid in people:
            people[cid]["attributes"][name] = value


def _allowed(
    session: Session, ids: list[int], people: Mapping[int, Mapping[str, Any]], now: datetime
) -> dict[int, frozenset[tuple[str, str]]]:
    dialect = Dialect.of(session)
    facts: dict[int, list[ConsentFact]] = defaultdict(list)
    s = ConsentState
    for cid, channel, purpose, brand_id, status, collected_at, provable in session.execute(
        select(
            s.customer_id, s.channel, s.purpose, s.brand_id, s.status, s.collected_at, s.provable
        ).where(dialect.one_of(s.customer_id, ids))
    ):
        facts[cid].append(
            ConsentFact(channel, purpose, brand_id, status, collected_at, bool(provable))
        )
    b2b = set(
        session.scalars(
            select(OrganisationContact.customer_id)
            .where(dialect.one_of(OrganisationContact.customer_id, ids))
            .distinct()
        )
    )
    t = Transaction
    bought: dict[int, dict[int | None, datetime]] = defaultdict(dict)
    for buyer, brand_id, last in session.execute(
        select(t.customer_id, t.brand_id, func.max(t.occurred_at))
        .where(dialect.one_of(t.customer_id, ids), t.kind != "return", t.occurred_at <= now)
        .group_by(t.customer_id, t.brand_id)
    ):
        if buyer is not None and last is not None:
            bought[buyer][brand_id] = last
    since = now - timedelta(days=CONTRACT_DAYS)
    out: dict[int, frozenset[tuple[str, str]]] = {}
    for cid, person in people.items():
        brand = person.get("brand_id")
        purchases = bought.get(cid, {})
        dates = purchases.values() if brand is None else [purchases.get(brand)]
        last = max((d for d in dates if d is not None), default=None)
        own = facts.get(cid, [])
        purposes = {"marketing", *(fact.purpose for fact in own)}
        pairs = set()
        for channel in CONTACT_CHANNELS:
            for purpose in purposes:
                decision = decide_consent(
                    FRENCH_DEFAULTS,
                    channel=channel,
                    purpose=purpose,
                    brand_id=brand,
                    audience="b2b" if cid in b2b else "b2c",
                    facts=own,
                    bought_from_brand=last is not None,
                    has_contract=last is not None and last >= since,
                    now=now,
                )
                if decision.allowed:
                    pairs.add((channel, purpose))
        out[cid] = frozenset(pairs)
    return out


# --------------------------------------------------------------------------------------------
# The engine


# The columns the engine's lookups filter on, per table it fills (for refresh_statistics).
LOOKUP_COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    "journey_instance": ("id", "customer_id", "journey_id", "status"),
    "journey_step_log": ("instance_id",),
    "journey_inbox": ("id", "customer_id"),
    "outbox": ("id", "key", "customer_id"),
    "interaction": ("id", "customer_id"),
}


def refresh_statistics(session: Session) -> list[str]:
    """ANALYZE the tables the engine fills whose planner statistics are stale (PostgreSQL;
    nothing on SQLite); the tables done. On a new database, or after a purge, PostgreSQL
    keeps the plans it made for nearly empty tables (sequential scans, in its foreign key
    checks too) until autovacuum comes by, and each pass slows down as the tables fill: the
    worker calls this after each pass (one query when nothing is stale)."""
    from tournesol.collect.service import refresh_stale

    return refresh_stale(session.connection(), LOOKUP_COLUMNS)


def process_inbox(
    session: Session,
    *,
    now: datetime,
    gate: Gate | None = None,
    facts_loader: FactsLoader = load_facts,
    limit: int = 1000,
    shard: tuple[int, int] | None = None,
) -> Counter[str]:
    """Process up to ``limit`` unprocessed inbox events (claimed in id order, ``SKIP
    LOCKED``; run in the order they occurred): each goes first to the customer's running
    instances (exit criteria, awaited events; an event that occurred before an instance
    began does not concern it), then starts every active journey whose trigger it matches
    and whose re-entry policy allows; the instance runs until it waits, ends or reaches an
    action. With a ``gate``, the actions reached go through it in the same pass (all the
    pass's Sends in one call), and the instances run on until they wait or end; without
    one, they wait at the gate for :func:`run_due`. Then the events are marked processed.

    On PostgreSQL the customers are held as in :func:`run_due`: the events of a customer
    whom another worker holds stay in the inbox for a later pass (counted ``busy``).
    Several workers: give each a ``shard`` ``(k, n)`` (it takes the customers whose id is
    ``k`` modulo ``n``), so that the events of one customer are processed by one worker in
    order. Returns counts: ``events``, ``entered``, ``refused`` (re-entry or a race),
    ``no_key`` (the event lacks the instance key), ``busy``, the gate's answers (``sent``,
    ``suppressed``, ``deferred``), ``goals``, ``exits``.
    """
    return _Engine(session, now=now, facts_loader=facts_loader).process_inbox(
        limit=limit, shard=shard, gate=gate
    )


def run_due(
    session: Session,
    *,
    now: datetime,
    gate: Gate,
    facts_loader: FactsLoader = load_facts,
    worker: str = "worker",
    limit: int = 500,
) -> Counter[str]:
    """Claim up to ``limit`` instances due at ``now`` (waiting, awaiting the gate; journeys
    not paused), in due order, locked ``FOR UPDATE SKIP LOCKED`` on PostgreSQL until the
    caller commits, and advance each: every ``Send`` goes through ``gate`` and its answer is
    fed back, until the instance waits or ends. On PostgreSQL the customers are locked too,
    so that two workers never pass messages to one customer at once (the pressure rules
    must see the other's): an instance whose customer another worker holds is left for a
    later pass. Returns counts: ``claimed`` (advanced), ``busy`` (left), the gate's answers
    (``sent``, ``suppressed``, ``deferred``), ``goals``, ``exits``. Called again at the same
    ``now``, it finds nothing more to do."""
    engine = _Engine(session, now=now, facts_loader=facts_loader)
    return engine.run_due(gate=gate, worker=worker, limit=limit)


@dataclass
class _Meta:
    id: int
    code: str
    name: str
    brand_id: int | None
    status: str
    current_version_id: int | None


def _active_journeys(
    session: Session, journey_ids: Sequence[int] | None = None
) -> list[tuple[_Meta, JourneyDefinition]]:
    query = select(Journey).where(
        Journey.status == "active", Journey.current_version_id.is_not(None)
    )
    if journey_ids is not None:
        query = query.where(Journey.id.in_(journey_ids))
    out = []
    for journey in session.scalars(query.order_by(Journey.id)):
        version = session.get(JourneyVersion, journey.current_version_id)
        if version is not None:
            out.append((_meta(journey), definition_of(version)))
    return out


def _meta(journey: Journey) -> _Meta:
    return _Meta(
        journey.id,
        journey.code,
        journey.name,
        journey.brand_id,
        journey.status,
        journey.current_version_id,
    )


@dataclass(slots=True)
class _Moving:
    """An instance whose last result (``result``) has a Send for the gate."""

    inst: JourneyInstance
    journey_def: JourneyDefinition
    facts: Facts
    result: Advance


class _Engine:
    """One pass of the engine in the caller's transaction: it advances instances, gathers
    the rows their effects call for, and writes them with :meth:`flush`."""

    def __init__(
        self,
        session: Session,
        *,
        now: datetime,
        facts_loader: FactsLoader,
        journey_ids: Sequence[int] | None = None,
        min_instance_id: int = 0,
        event_prefix: str | None = None,
    ) -> None:
        self.session = session
        self.now = now
        self.facts_loader = facts_loader
        self.journey_ids = journey_ids
        self.min_instance_id = min_instance_id
        self.event_prefix = event_prefix  # simulation: its events only, those that occurred
        self.counts: Counter[str] = Counter()
        self.logs: list[tuple[Any, ...]] = []
        self.timeline: list[tuple[Any, ...]] = []
        self.scores: dict[tuple[int, str], dict[str, Any]] = {}  # the last wins
        # (customer, tag) -> source; (customer, attribute) -> (value, source): the last wins
        self.tags: dict[tuple[int, str], str] = {}
        self.attributes: dict[tuple[int, str], tuple[Any, str]] = {}
        self._journeys: dict[int, _Meta] | None = None
        self._versions: dict[int, JourneyDefinition] = {}
        # instances started in this pass, written at the end (ids reserved beforehand)
        self.fresh: list[JourneyInstance] = []
        self._ids: list[int] = []
        self._top = 0
        # instance id -> the instance whose last result has a Send for the gate
        self.sending: dict[int, _Moving] = {}

    # ------------------------------------------------------------ lookups

    def journey(self, journey_id: int) -> _Meta:
        if self._journeys is None or journey_id not in self._journeys:
            self._journeys = {j.id: _meta(j) for j in self.session.scalars(select(Journey))}
        return self._journeys[journey_id]

    def definition(self, version_id: int) -> JourneyDefinition:
        found = self._versions.get(version_id)
        if found is None:
            version = self.session.get(JourneyVersion, version_id)
            assert version is not None
            found = self._versions[version_id] = definition_of(version)
        return found

    def _reads(
        self, journeys: Sequence[JourneyDefinition], instances: Sequence[JourneyInstance]
    ) -> frozenset[str]:
        """What load_facts must read for these journeys and the versions of these instances."""
        reads: set[str] = set()
        for journey_def in journeys:
            reads |= journey_def.reads()
        for version_id in {inst.version_id for inst in instances}:
            reads |= self.definition(version_id).reads()
        return frozenset(reads)

    def _scope(self, query: Any) -> Any:
        if self.journey_ids is not None:
            query = query.where(JourneyInstance.journey_id.in_(self.journey_ids))
        if self.min_instance_id:
            query = query.where(JourneyInstance.id > self.min_instance_id)
        return query

    # ------------------------------------------------------------ events

    def process_inbox(
        self, *, limit: int, shard: tuple[int, int] | None, gate: Gate | None = None
    ) -> Counter[str]:
        session = self.session
        dialect = Dialect.of(session)
        dialect.claim_write(session.connection(), _INBOX)
        i = _INBOX
        query = select(
            i.c.id, i.c.event_id, i.c.customer_id, i.c.type, i.c.occurred_at, i.c.properties
        ).where(i.c.processed_at.is_(None))
        if self.event_prefix is not None:
            query = query.where(
                i.c.event_id.like(f"{self.event_prefix}%"), i.c.occurred_at <= self.now
            )
        if shard is not None:
            query = query.where(i.c.customer_id % shard[1] == shard[0])
        rows = session.execute(
            query.order_by(i.c.id).limit(limit).with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return self.counts
        # the customers another worker is passing through the gate now wait for a later pass
        held = self._hold(sorted({row[2] for row in rows}))
        self.counts["busy"] += sum(1 for row in rows if row[2] not in held)
        events = sorted(
            (
                (occurred, inbox_id, Event(event_id, kind, occurred, props or {}, customer))
                for inbox_id, event_id, customer, kind, occurred, props in rows
                if customer in held
            ),
            key=lambda item: (item[0], item[1]),
        )
        if not events:
            return self.counts
        customers = sorted({e.customer_id for _, _, e in events})
        live: dict[int, list[JourneyInstance]] = defaultdict(list)
        for batch in chunked(customers, 5000):
            query = self._scope(
                select(JourneyInstance).where(
                    dialect.one_of(JourneyInstance.customer_id, list(batch)),
                    JourneyInstance.status.not_in(FINAL),
                )
            )
            for inst in session.scalars(query.order_by(JourneyInstance.id).with_for_update()):
                live[inst.customer_id].append(inst)
        journeys = _active_journeys(session, self.journey_ids)
        by_type: dict[str, list[tuple[_Meta, JourneyDefinition]]] = defaultdict(list)
        by_code: dict[str, tuple[_Meta, JourneyDefinition]] = {}
        for meta, journey_def in journeys:
            trigger = journey_def.trigger
            if isinstance(trigger, EventSpec):
                by_type[trigger.type].append((meta, journey_def))
            elif isinstance(trigger, SegmentTrigger):
                kind = SEGMENT_ENTERED if trigger.on == "enter" else SEGMENT_LEFT
                by_type[kind].append((meta, journey_def))
            else:
                by_code[meta.code] = (meta, journey_def)
        # facts for the customers with an instance to advance or a journey to enter only,
        # and only what those journeys read
        concerned = {e.customer_id for _, _, e in events if e.customer_id in live}
        concerned.update(
            e.customer_id
            for _, _, e in events
            if e.type in by_type
            or (e.type == START_EVENT and e.properties.get("journey") in by_code)
        )
        reads = self._reads(
            [jd for _, jd in journeys], [inst for insts in live.values() for inst in insts]
        )
        past = self._past(sorted(concerned), [meta.id for meta, _ in journeys])
        facts = self.facts_loader(session, sorted(concerned), self.now, reads) if concerned else {}
        for _, _, event in events:
            self.counts["events"] += 1
            own = facts.get(event.customer_id)
            for inst in live.get(event.customer_id, ()):
                if inst.status not in FINAL:
                    self._offer(inst, event, own or Facts())
            if own is None:
                continue  # merged, erased or unknown: enters nothing
            if event.type == START_EVENT:
                code = event.properties.get("journey")
                found = by_code.get(code) if isinstance(code, str) else None
                candidates = [found] if found is not None else []
            else:
                candidates = [
                    (meta, jd)
                    for meta, jd in by_type.get(event.type, ())
                    if trigger_matches(jd, event)
                ]
            for meta, journey_def in candidates:
                self._enter(meta, journey_def, event, own, live, past)
        if gate is not None:  # the sends of this pass, at once: their customers are held
            self._drive(gate, list(self.sending.values()))
        self._write_fresh()
        ids = [inbox_id for _, inbox_id, _ in events]
        for batch in chunked(ids, 5000):
            session.execute(
                update(i).where(dialect.one_of(i.c.id, list(batch))).values(processed_at=self.now)
            )
        self.flush()
        return self.counts

    def _past(
        self, customers: Sequence[int], journey_ids: Sequence[int]
    ) -> dict[tuple[int, int], list[PastInstance]]:
        past: dict[tuple[int, int], list[PastInstance]] = defaultdict(list)
        if not journey_ids:
            return past
        t = _INSTANCES
        dialect = Dialect.of(self.session)
        for batch in chunked(customers, 5000):
            for journey_id, customer_id, status, ended_at, key in self.session.execute(
                select(
                    t.c.journey_id, t.c.customer_id, t.c.status, t.c.ended_at, t.c.instance_key
                ).where(
                    dialect.one_of(t.c.customer_id, list(batch)), t.c.journey_id.in_(journey_ids)
                )
            ):
                past[(journey_id, customer_id)].append(PastInstance(status, ended_at, key))
        return past

    def _offer(self, inst: JourneyInstance, event: Event, facts: Facts) -> None:
        state = InstanceState.from_json(inst.state)
        began = state.entered_at
        trigger_at = state.trigger.get("occurred_at")
        if isinstance(trigger_at, str):
            began = datetime.fromisoformat(trigger_at)
        if event.occurred_at < began or event.id == state.trigger.get("id"):
            return
        journey_def = self.definition(inst.version_id)
        result = advance(journey_def, state, event=event, now=self.now, facts=facts)
        if result.state is not state or result.effects:
            self.apply(inst, journey_def, result)
            self._track(inst, journey_def, facts, result)

    def _track(
        self, inst: JourneyInstance, journey_def: JourneyDefinition, facts: Facts, result: Advance
    ) -> None:
        """Remember an instance whose last result has a Send for the gate (or forget it)."""
        if result.send is not None:
            self.sending[inst.id] = _Moving(inst, journey_def, facts, result)
        else:
            self.sending.pop(inst.id, None)

    def _enter(
        self,
        meta: _Meta,
        journey_def: JourneyDefinition,
        event: Event,
        facts: Facts,
        live: dict[int, list[JourneyInstance]],
        past: dict[tuple[int, int], list[PastInstance]],
    ) -> None:
        customer_id = event.customer_id
        try:
            key = instance_key_of(journey_def, event, customer_id)
        except ValueError:
            self.counts["no_key"] += 1
            return
        previous = past[(meta.id, customer_id)]
        if not may_enter(journey_def, previous=previous, instance_key=key, now=self.now):
            self.counts["refused"] += 1
            return
        result = start(
            journey_def, customer_id=customer_id, instance_key=key, event=event, now=self.now,
            facts=facts,
        )  # fmt: skip
        assert meta.current_version_id is not None
        inst = self._new(meta, meta.current_version_id, journey_def, result.state)
        self.counts["entered"] += 1
        self.timeline.append(
            self._timeline_row(
                inst, meta, "journey_entered", "internal", key,
                {"event": event.id, "key": key},
            )
        )  # fmt: skip
        self.apply(inst, journey_def, result)
        self._track(inst, journey_def, facts, result)
        live[customer_id].append(inst)
        state = result.state
        previous.append(PastInstance(state.status, state.ended_at, key))

    def _new(
        self, meta: _Meta, version_id: int, journey_def: JourneyDefinition, state: InstanceState
    ) -> JourneyInstance:
        """A new instance, its id reserved, written by :meth:`_write_fresh` at the end of the
        pass (whatever its state by then)."""
        inst = JourneyInstance(
            id=self._new_id(),
            journey_id=meta.id,
            version_id=version_id,
            customer_id=state.customer_id,
            instance_key=state.instance_key,
            concurrent=journey_def.reentry.policy == "always",
            entered_at=state.entered_at,
            expires_at=state.expires_at,
            claimed_by=None,
            claimed_at=None,
        )
        self.fresh.append(inst)
        return inst

    def _new_id(self) -> int:
        if not self._ids:
            conn = self.session.connection()
            ids = Dialect.of(self.session).reserve_ids(conn, _INSTANCES, 256)
            if ids[0] <= self._top:  # SQLite numbers from the largest id written: ours are not
                ids = list(range(self._top + 1, self._top + 1 + len(ids)))
            self._top = ids[-1]
            self._ids = ids[::-1]
        return self._ids.pop()

    def _write_fresh(self) -> None:
        """Insert the instances started in this pass, in their state at the end of it. The
        customers are held (:meth:`_hold`) and their live instances were read, so none can
        clash with a live instance of the same key; should one all the same (a writer that
        does not hold customers), the whole pass fails and rolls back, its messages with it,
        rather than leave a message without its instance."""
        if not self.fresh:
            return
        columns = (
            "id", "journey_id", "version_id", "customer_id", "instance_key", "concurrent",
            "status", "step", "state", "due_at", "waiting_for", "match_value", "entered_at",
            "expires_at", "ended_at", "exit_reason", "claimed_by", "claimed_at", "updated_at",
        )  # fmt: skip
        rows = [tuple(getattr(inst, c) for c in columns) for inst in self.fresh]
        dialect = Dialect.of(self.session)
        written = dialect.insert_rows(
            self.session.connection(), _INSTANCES, columns, rows,
            conflict=("journey_id", "customer_id", "instance_key"), conflict_where=LIVE,
            returning=("id",),
        )  # fmt: skip
        if len(written) != len(rows):
            raise RuntimeError(
                f"{len(rows) - len(written)} new journey instance(s) clash with a live one "
                "started meanwhile: the pass is rolled back, the next one takes its events again"
            )
        self.fresh = []

    # ------------------------------------------------------------ time

    def run_due(self, *, gate: Gate, worker: str, limit: int) -> Counter[str]:
        session = self.session
        Dialect.of(session).claim_write(session.connection(), _INSTANCES)
        paused = select(Journey.id).where(Journey.status == "paused")
        query = self._scope(
            select(JourneyInstance).where(
                JourneyInstance.status.in_(LIVE_STATUSES),
                JourneyInstance.due_at <= self.now,
                JourneyInstance.journey_id.not_in(paused),
            )
        )
        claimed = list(
            session.scalars(
                query.order_by(JourneyInstance.due_at, JourneyInstance.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not claimed:
            return self.counts
        held = self._hold(sorted({inst.customer_id for inst in claimed}))
        mine = [inst for inst in claimed if inst.customer_id in held]
        self.counts["busy"] += len(claimed) - len(mine)
        claimed = mine
        if not claimed:
            return self.counts
        self.counts["claimed"] += len(claimed)
        facts = self.facts_loader(
            session, sorted({i.customer_id for i in claimed}), self.now, self._reads([], claimed)
        )
        moving: list[_Moving] = []
        for inst in claimed:
            inst.claimed_by = worker
            inst.claimed_at = self.now
            journey_def = self.definition(inst.version_id)
            own = facts.get(inst.customer_id) or Facts()
            state = InstanceState.from_json(inst.state)
            result = advance(journey_def, state, event=None, now=self.now, facts=own)
            if result.state is not state or result.effects:
                self.apply(inst, journey_def, result)
            if result.send is not None:
                moving.append(_Moving(inst, journey_def, own, result))
        self._drive(gate, moving)
        self.flush()
        return self.counts

    def _hold(self, customers: Sequence[int]) -> set[int]:
        """The customers (sorted ids) this transaction now holds. On PostgreSQL, another
        worker may be passing a message to the same customer through the gate, not yet
        committed: the pressure rules would not see it, and both messages would go out; or
        starting the same instance. So each customer is locked (a transaction-level advisory
        lock, tried without waiting, in the :data:`_CUSTOMER_LOCKS` key space); what
        concerns a customer held elsewhere is left for a later pass (counted ``busy``).
        SQLite has one writer at a time: all are held."""
        return Dialect.of(self.session).try_lock_each(self.session, _CUSTOMER_LOCKS, customers)

    def _drive(self, gate: Gate, moving: Sequence[_Moving]) -> None:
        """Pass the Sends of ``moving`` through the gate, all at once, feed each answer back,
        and go on with the Sends that follow, round after round, until every instance waits
        or ends."""
        for _ in range(MAX_STEPS_PER_CALL):
            moving = [m for m in moving if m.result.send is not None]
            if not moving:
                return
            asks = [Ask(cast(Send, m.result.send), m.inst, m.journey_def) for m in moving]
            answers = gate.send_many(self.session, asks, now=self.now)
            after: list[_Moving] = []
            for m, answer in zip(moving, answers, strict=True):
                inst, journey_def = m.inst, m.journey_def
                self.counts[answer.outcome] += 1
                if answer.outcome == "deferred":
                    send = cast(Send, m.result.send)
                    until = answer.until.isoformat() if answer.until is not None else None
                    self.timeline.append(
                        self._timeline_row(
                            inst, self.journey(inst.journey_id), "journey_step", send.channel,
                            "deferred", {"step": send.step, "visit": send.visit, "until": until},
                        )
                    )  # fmt: skip
                state = m.result.state
                result = advance(journey_def, state, event=answer, now=self.now, facts=m.facts)
                if result.state is not state or result.effects:
                    self.apply(inst, journey_def, result)
                after.append(_Moving(inst, journey_def, m.facts, result))
            moving = after

    # ------------------------------------------------------------ writing

    def apply(self, inst: JourneyInstance, journey_def: JourneyDefinition, result: Advance) -> None:
        """Store the instance's new state and gather the rows its effects call for."""
        state = result.state
        inst.state = state.to_json()
        inst.status = state.status
        inst.step = state.step
        inst.due_at = state.due_at
        inst.waiting_for = state.waiting_for
        inst.match_value = state.match_value
        inst.ended_at = state.ended_at
        inst.exit_reason = state.exit_reason
        inst.updated_at = self.now
        meta = self.journey(inst.journey_id)
        updates: dict[tuple[str, int], Update] = {}
        for effect in result.effects:
            if isinstance(effect, Update):
                updates[(effect.step, effect.visit)] = effect
                source = f"journey:{meta.code}"[:100]
                if effect.what == "tag":
                    self.tags[(inst.customer_id, effect.name[:60])] = source
                elif effect.what == "attribute":
                    self.attributes[(inst.customer_id, effect.name[:60])] = (
                        effect.value,
                        source,
                    )
                if effect.what == "score" and isinstance(effect.value, int | float):
                    self.scores[(inst.customer_id, effect.name[:40])] = {
                        "customer_id": inst.customer_id,
                        "model": effect.name[:40],
                        "version": f"journey:{meta.code}"[:40],
                        "value": float(effect.value),
                        "computed_at": self.now,
                    }
            elif isinstance(effect, StepLogged):
                detail = effect.detail
                change = updates.get((effect.step, effect.visit))
                if change is not None:
                    detail = _describe(change)
                self.logs.append(
                    (
                        inst.id, inst.journey_id, effect.step, effect.visit,
                        effect.outcome, (detail or None) and detail[:300], self.now,
                    )
                )  # fmt: skip
                if effect.outcome in ("sent", "suppressed", "updated"):
                    step = journey_def.step(effect.step)
                    channel = step.channel if isinstance(step, ActionStep) else "internal"
                    outcome = effect.outcome if detail is None else f"{effect.outcome}:{detail}"
                    self.timeline.append(
                        self._timeline_row(
                            inst, meta, "journey_step", channel, outcome,
                            {"step": effect.step, "visit": effect.visit, "detail": detail},
                        )
                    )  # fmt: skip
            elif isinstance(effect, GoalReached):
                self.counts["goals"] += 1
                self.timeline.append(
                    self._timeline_row(
                        inst, meta, "journey_goal", "internal", effect.name, {"step": effect.step}
                    )
                )
            elif isinstance(effect, Exited):
                self.counts["exits"] += 1
                self.timeline.append(
                    self._timeline_row(
                        inst, meta, "journey_exited", "internal", effect.reason,
                        {"step": state.step, "reason": effect.reason},
                    )
                )  # fmt: skip

    def _timeline_row(
        self,
        inst: JourneyInstance,
        meta: _Meta,
        kind: str,
        channel: str,
        outcome: str | None,
        payload: dict[str, Any],
    ) -> tuple[Any, ...]:
        payload = {"journey": meta.code, "instance_id": inst.id, **payload}
        return (
            inst.customer_id, self.now, channel[:20], INTERNAL, kind, meta.name[:300],
            outcome[:100] if outcome else None, f"journey:{meta.code}"[:100], meta.brand_id,
            _plain(payload), self.now,
        )  # fmt: skip

    def flush(self) -> None:
        session = self.session
        session.flush()
        dialect = Dialect.of(session)
        conn = session.connection()
        if self.logs:
            dialect.insert_rows(
                conn,
                _LOGS,
                ("instance_id", "journey_id", "step", "visit", "outcome", "detail", "at"),
                self.logs,
                conflict=("instance_id", "step", "visit"),
            )
            self.logs = []
        if self.timeline:
            dialect.insert_rows(
                conn,
                _INTERACTIONS,
                (
                    "customer_id", "occurred_at", "channel", "direction", "type", "subject",
                    "outcome", "campaign_code", "brand_id", "payload", "created_at",
                ),
                self.timeline,
            )  # fmt: skip
            self.timeline = []
        if self.tags:
            rows = [
                {"customer_id": c, "tag": t, "source": source, "set_at": self.now}
                for (c, t), source in sorted(self.tags.items())
            ]
            _upsert(session, _TAGS, rows, ("customer_id", "tag"))
            self.tags = {}
        if self.attributes:
            cleared = [key for key, (value, _) in self.attributes.items() if value is None]
            for customer_id, name in cleared:  # value null: the attribute is removed
                session.execute(
                    delete(_ATTRIBUTES).where(
                        _ATTRIBUTES.c.customer_id == customer_id, _ATTRIBUTES.c.name == name
                    )
                )
            rows = [
                {"customer_id": c, "name": n, "value": value, "source": source, "set_at": self.now}
                for (c, n), (value, source) in sorted(self.attributes.items())
                if value is not None
            ]
            _upsert(session, _ATTRIBUTES, rows, ("customer_id", "name"))
            self.attributes = {}
        if self.scores:
            _upsert(session, _SCORES, list(self.scores.values()), ("customer_id", "model"))
            self.scores = {}


def _upsert(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """Insert ``rows`` (one per key) in one statement; a row whose ``keys`` exist updates the
    other columns of the existing one."""
    if not rows:
        return
    module: Any = postgresql if Dialect.of(session).name == "postgresql" else sqlite
    statement = module.insert(table).values(list(rows))
    others = [name for name in rows[0] if name not in keys]
    session.execute(
        statement.on_conflict_do_update(
            index_elements=list(keys), set_={name: statement.excluded[name] for name in others}
        )
    )


def _describe(change: Update) -> str:
    if change.what == "tag":
        return f"tag {change.name}"
    return f"{change.what} {change.name} = {change.value}"


# --------------------------------------------------------------------------------------------
# Simulation


@dataclass
class SimulationReport:
    """What a journey would have done over a period for a population, nothing written:
    ``steps`` counts each step's outcomes (the step log), ``entered`` the instances started,
    ``sends`` the messages by channel the gate accepted, ``exits`` the exit reasons,
    ``goals`` the goals reached, ``running`` the instances still running at the end (by
    status), ``calls`` every call of the recording gate."""

    journey: str
    digest: str
    start: datetime
    end: datetime
    customers: int
    events: int = 0
    entered: int = 0
    steps: dict[str, Counter[str]] = field(default_factory=dict)
    sends: Counter[str] = field(default_factory=Counter)
    exits: Counter[str] = field(default_factory=Counter)
    goals: Counter[str] = field(default_factory=Counter)
    running: Counter[str] = field(default_factory=Counter)
    calls: list[GateCall] = field(default_factory=list)


SIMULATED: Final = "sim:"


def simulate(
    session: Session,
    *,
    text_or_version: str | JourneyVersion,
    customers: Sequence[int],
    start: datetime,
    end: datetime,
    step: timedelta = timedelta(hours=1),
    events: Sequence[Event] = (),
    gate: RecordingGate | None = None,
    facts_loader: FactsLoader = load_facts,
) -> SimulationReport:
    """Run the journey (YAML text, or a published version) over ``[start, end]`` for
    ``customers`` with the very engine of production, a fake clock moving by ``step`` and a
    :class:`RecordingGate` (``gate``; by default every message is sent), inside a SAVEPOINT
    rolled back at the end: nothing it writes stays.

    The events are the customers' history in the period (interactions, transactions, new
    customers, segment entries and exits, as :func:`collect_events` makes them), the date
    rule's days (a date-triggered journey), and ``events`` (for an API-triggered journey, or
    events to imagine). Facts (attributes, segments, consent) are read as they are now.
    Other journeys do not run; instances already running are left alone, but count for the
    re-entry policy."""
    if step <= timedelta(0):
        raise ValueError("step must be a positive duration")
    gate = gate or RecordingGate()
    savepoint = session.begin_nested()
    try:
        if isinstance(text_or_version, str):
            version = publish(session, text=text_or_version, now=start, actor="simulation")
        else:
            version = text_or_version
        journey_def = definition_of(version)
        journey = session.get(Journey, version.journey_id)
        assert journey is not None
        journey.status = "active"
        journey.current_version_id = version.id
        session.flush()
        watermark = session.scalar(select(func.max(JourneyInstance.id))) or 0
        people = sorted(set(customers))
        rows = _history(session, people, start, end)
        if isinstance(journey_def.trigger, DateRule):
            day = start.astimezone(ZoneInfo(DEFAULT_ZONE)).date()
            while day <= end.astimezone(ZoneInfo(DEFAULT_ZONE)).date():
                at = max(start, datetime.combine(day, time(), ZoneInfo(DEFAULT_ZONE)))
                for customer_id in date_candidates(
                    session, rule=journey_def.trigger, day=day, customers=people
                ):
                    rows.append(
                        (
                            f"date:{journey.code}:{day.isoformat()}:{customer_id}", customer_id,
                            START_EVENT, at, {"journey": journey.code, "day": day.isoformat()}, at,
                        )
                    )  # fmt: skip
                day += timedelta(days=1)
        wanted = set(people)
        for e in events:
            if e.customer_id in wanted:
                props = dict(e.properties)
                rows.append(
                    (e.id, e.customer_id, e.type, e.occurred_at, _plain(props), e.occurred_at)
                )
        rows = [(f"{SIMULATED}{r[0]}", *r[1:]) for r in rows]
        report = SimulationReport(journey.code, version.digest, start, end, len(people))
        report.events = _insert_events(session, rows)
        moment = start
        while True:

            def engine(prefix: str | None = None, now: datetime = moment) -> _Engine:
                return _Engine(
                    session,
                    now=now,
                    facts_loader=facts_loader,
                    journey_ids=[journey.id],
                    min_instance_id=watermark,
                    event_prefix=prefix,
                )

            while engine(SIMULATED).process_inbox(limit=1000, shard=None, gate=gate)["events"]:
                pass
            # an instance the gate keeps deferring to the same instant is due again at once
            for _ in range(100):
                if not engine().run_due(gate=gate, worker="simulation", limit=1000)["claimed"]:
                    break
            if moment >= end:
                break
            moment = min(moment + step, end)
        _report(session, report, journey.id, watermark)
        report.calls = list(gate.calls)
        for call in gate.calls:
            if call.result.outcome == "sent":
                report.sends[call.send.channel] += 1
        return report
    finally:
        savepoint.rollback()


def _history(
    session: Session, customers: Sequence[int], start: datetime, end: datetime
) -> list[_EventRow]:
    """The events of these customers' history in ``[start, end]``."""
    rows: list[_EventRow] = []
    dialect = Dialect.of(session)
    i, t = _INTERACTIONS, cast(Table, Transaction.__table__)
    c, m = cast(Table, Customer.__table__), _MEMBERSHIPS
    for batch in chunked(list(customers), 5000):
        ids = list(batch)
        happened = func.coalesce(i.c.occurred_at, i.c.created_at)
        rows += _interactions(
            session, start, [dialect.one_of(i.c.customer_id, ids), happened <= end]
        )
        bought = func.coalesce(t.c.occurred_at, t.c.created_at)
        rows += _transactions(session, start, [dialect.one_of(t.c.customer_id, ids), bought <= end])
        rows += _customers(session, start, [dialect.one_of(c.c.id, ids), c.c.created_at <= end])
        rows += _entries(
            session, start, [dialect.one_of(m.c.customer_id, ids), m.c.entered_at <= end]
        )
        rows += _exits(session, start, [dialect.one_of(m.c.customer_id, ids), m.c.left_at <= end])
    return rows


def _report(session: Session, report: SimulationReport, journey_id: int, watermark: int) -> None:
    log, inst = _LOGS, _INSTANCES
    mine = and_(log.c.instance_id > watermark, log.c.journey_id == journey_id)
    for step_id, outcome, detail, count in session.execute(
        select(log.c.step, log.c.outcome, log.c.detail, func.count())
        .where(mine)
        .group_by(log.c.step, log.c.outcome, log.c.detail)
    ):
        report.steps.setdefault(step_id, Counter())[outcome] += count
        if outcome == "goal" and detail:
            report.goals[detail] += count
    for status, reason, count in session.execute(
        select(inst.c.status, inst.c.exit_reason, func.count())
        .where(inst.c.id > watermark, inst.c.journey_id == journey_id)
        .group_by(inst.c.status, inst.c.exit_reason)
    ):
        report.entered += count
        if status == "exited" and reason:
            report.exits[reason] += count
        elif status not in FINAL:
            report.running[status] += count


# --------------------------------------------------------------------------------------------
# Reporting


def graph_counts(session: Session, *, journey_id: int) -> dict[str, Counter[str]]:
    """Per step of the journey (all versions), how many visits ended with each outcome (the
    step log), plus ``waiting`` and ``awaiting_gate``: the instances there now.

    >>> graph_counts(session, journey_id=1)  # doctest: +SKIP
    {'wait_cart': Counter({'timeout': 40, 'event': 12, 'waiting': 7}), ...}
    """
    out: dict[str, Counter[str]] = {}
    log = _LOGS
    for step_id, outcome, count in session.execute(
        select(log.c.step, log.c.outcome, func.count())
        .where(log.c.journey_id == journey_id)
        .group_by(log.c.step, log.c.outcome)
    ):
        out.setdefault(step_id, Counter())[outcome] += count
    t = _INSTANCES
    for step_id, status, count in session.execute(
        select(t.c.step, t.c.status, func.count())
        .where(t.c.journey_id == journey_id, t.c.status.in_(("waiting", "awaiting_gate")))
        .group_by(t.c.step, t.c.status)
    ):
        if step_id is not None:
            out.setdefault(step_id, Counter())[status] += count
    return out


# --------------------------------------------------------------------------------------------
# Values


def _value(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _plain(value: Any) -> Any:
    """``value`` as JSON values: decimals as numbers, dates and instants in ISO 8601."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
