"""Event collection: each accepted event is stored whole and filed in the timeline as an
interaction of the customer who sent it (or of nobody yet), in one transaction. Set-based: a
batch costs the same few statements whatever its size. Never commits.

Who sent an event is decided by :func:`tournesol.collect.rules.resolve` over what the base
knows: identifiers (``account_id``, ``email``, phones) and the links this source learned
(``visitor_link``). An event nobody can be found for is filed without a customer
(``unresolved``) and attached later, when an event links its anonymousId or userId to a
customer (stitching) or when :func:`reprocess` finds its customer after an import. No
customer is ever created from an event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, text, union_all
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tournesol.auth import service as auth_service
from tournesol.collect import rules
from tournesol.collect.models import CollectedEvent, VisitorLink
from tournesol.customers.models import Customer, Identifier
from tournesol.db import Dialect, chunked, utcnow
from tournesol.ingest.models import Source
from tournesol.interactions.models import Interaction

log = logging.getLogger("tournesol.collect")

DEFAULT_SOURCE = "events"  # the source of keys that name none
SOURCE_KIND = "events"
KEY_TTL = auth_service.KEY_TTL  # seconds a verified key is trusted without asking again
PHONE_KINDS = ("phone", "phone_mobile", "phone_fixed")
_EVENTS = cast(Table, CollectedEvent.__table__)
_LINKS = cast(Table, VisitorLink.__table__)
_INTERACTIONS = cast(Table, Interaction.__table__)
EVENT_COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "event",
    "user_id",
    "anonymous_id",
    "email",
    "phone",
    "occurred_at",
    "received_at",
    "payload",
    "status",
    "customer_id",
    "interaction_id",
)
INTERACTION_COLUMNS = (
    "id",
    "customer_id",
    "occurred_at",
    "channel",
    "direction",
    "type",
    "subject",
    "brand_id",
    "source_id",
    "payload",
    "created_at",
)
_SOURCES = cast(Table, Source.__table__)


# --- write keys ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteKey:
    """What a verified API key may do, and the source its events are filed under."""

    key_id: int
    name: str
    scopes: frozenset[str]
    source_name: str

    def can(self, permission: str) -> bool:
        return permission in self.scopes


class KeyCache:
    """Verified write keys, kept ``ttl`` seconds (a revoked key stops working within that
    time: :class:`tournesol.auth.service.KeyCache`), and the ids of event sources. One per
    application; safe across threads (plain dict reads and writes)."""

    def __init__(
        self,
        ttl: float = KEY_TTL,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = auth_service.KeyCache(ttl, max_entries=max_entries, clock=clock)
        self._sources: dict[str, int] = {}

    def verify(self, session: Session, *, secret: str) -> WriteKey | None:
        """The key behind ``secret`` (None: unknown or revoked), from the cache when fresh."""
        key = self.keys.verify(session, secret=secret)
        if key is None:
            return None
        return WriteKey(key.id, key.name, key.scopes, key.source_name or DEFAULT_SOURCE)

    def source_id(self, session: Session, *, name: str) -> int:
        """The id of the source called ``name``, created (kind ``events``) on first use.
        Writes before it reads (see :func:`get_or_create_source`)."""
        cached = self._sources.get(name)
        if cached is not None:
            return cached
        source_id, created = get_or_create_source(session, name=name)
        if not created:  # committed by someone else: safe to keep (ours may roll back)
            self._sources[name] = source_id
        return source_id


def get_or_create_source(session: Session, *, name: str) -> tuple[int, bool]:
    """The id of the source called ``name``, and whether this call created it (as an event
    source). It inserts first and reads after, so that concurrent first requests create it
    once, and so that on SQLite the transaction starts as a writer and waits for the lock
    rather than failing to upgrade a read."""
    created = session.execute(
        Dialect.of(session)
        .insert_ignoring(_SOURCES, ("name",))
        .values(name=name, kind=SOURCE_KIND, trust_rank=5, restrictions=[], created_at=utcnow())
    )
    source_id = session.execute(select(Source.id).where(Source.name == name)).scalar_one()
    return source_id, bool(getattr(created, "rowcount", 0))


# --- planner statistics --------------------------------------------------------------------

# The columns the collector's lookups filter on, per table.
LOOKUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "collected_event": ("source_id", "anonymous_id", "user_id", "status", "interaction_id"),
    "visitor_link": ("source_id", "kind", "value"),
    "interaction": ("id", "customer_id"),
}


class Growth:
    """When this process should let the database's planner see how much the event tables
    have grown: after ``first`` events stored, then each time the count doubles. On a new
    database, PostgreSQL otherwise keeps the plans it made for empty tables (sequential
    scans, also in its foreign key checks) until autovacuum comes by, and collection slows
    down several times over as the tables fill."""

    def __init__(self, first: int = 1_000) -> None:
        self.count = 0
        self.next = first
        self._lock = threading.Lock()

    def add(self, stored: int) -> bool:
        """Count ``stored`` new events; True when statistics are due."""
        with self._lock:
            self.count += stored
            if self.count < self.next:
                return False
            self.next = max(self.next, self.count) * 2
            return True


# A table's statistics are stale when it was never analyzed, or when the rows written since
# its last ANALYZE reach this share of the rows it counted then (autovacuum's own threshold
# is 10 %: this one only has to catch the tables that grew from nothing).
STALE_SHARE = 0.2
# One refresh at a time across the server's processes (an ANALYZE waits for another one of
# the same table): the key of a PostgreSQL advisory lock.
_ANALYZE_LOCK = "analyze"


def stale_tables(
    conn: Connection, lookups: Mapping[str, tuple[str, ...]] = LOOKUP_COLUMNS
) -> dict[str, tuple[str, ...]]:
    """The tables of ``lookups`` (table -> the columns lookups filter on) whose planner
    statistics are stale (see STALE_SHARE), with their columns; none on SQLite, whose
    planner keeps no such statistics."""
    if Dialect.of(conn).name != "postgresql":
        return {}
    rows = conn.execute(
        text(
            "SELECT t.name FROM unnest(CAST(:names AS text[])) AS t(name)"
            " JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)"
            " JOIN pg_class c ON c.oid = s.relid"
            " WHERE (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL)"
            " OR (s.n_mod_since_analyze > 0"
            " AND s.n_mod_since_analyze >= :share * GREATEST(c.reltuples, 0))"
        ),
        {"names": list(lookups), "share": STALE_SHARE},
    )
    stale = {name for (name,) in rows}
    return {name: columns for name, columns in lookups.items() if name in stale}


def refresh_stale(
    conn: Connection, lookups: Mapping[str, tuple[str, ...]] = LOOKUP_COLUMNS
) -> list[str]:
    """ANALYZE the stale tables of ``lookups``, unless another process is refreshing
    statistics; the tables done. Other engines that fill tables from nothing (the journey
    worker) call it with their own lookups."""
    dialect = Dialect.of(conn)
    if not dialect.try_lock(conn, _ANALYZE_LOCK):
        return []
    tables = stale_tables(conn, lookups)
    dialect.refresh_statistics(conn, tables)
    return list(tables)


class StatisticsRefresher:
    """Refreshes the planner's statistics of the tables collection reads, away from the
    requests: in a thread of its own, at most one at a time in a process (a refresh asked
    for while one runs is dropped: the next growth step asks again)."""

    def __init__(self) -> None:
        self._running = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self, session: Session) -> bool:
        """Start a refresh on a connection of its own and return at once (False: one is
        running). A session bound to a connection rather than an engine (a test's
        transaction, a unit of work that must see its own rows) has it done at once, on that
        connection."""
        bind = session.get_bind()
        if not isinstance(bind, Engine):
            refresh_stale(session.connection())
            return True
        if not self._running.acquire(blocking=False):
            return False
        self._thread = threading.Thread(
            target=self._run, args=(bind,), name="tournesol-statistics", daemon=True
        )
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the refresh under way, if any (tests, orderly shutdowns)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, engine: Engine) -> None:
        try:
            with engine.connect() as conn:
                refresh_stale(conn)
                conn.commit()
        except SQLAlchemyError as exc:  # the events are committed: statistics can wait
            log.warning("refreshing the planner's statistics failed (%s)", type(exc).__name__)
        finally:
            self._running.release()


_REFRESHER = StatisticsRefresher()


def refresh_statistics(session: Session) -> None:
    """Let the planner see how the tables collection reads have grown (ANALYZE of the stale
    ones on PostgreSQL, nothing on SQLite), without holding up the caller: in a background
    thread of this process, one at a time (:class:`StatisticsRefresher`); at once when the
    session is bound to a connection."""
    _REFRESHER.refresh(session)


# --- collection ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a request's events: ``stored`` new ones, ``duplicates`` already there
    (same messageId), ``resolved`` filed on a customer; ``filed`` False when filing failed
    (the events are stored, ``received``, and :func:`reprocess` files them)."""

    stored: int
    duplicates: int
    resolved: int
    filed: bool = True


def collect(
    session: Session,
    *,
    source_id: int,
    events: Sequence[rules.Event],
    received_at: datetime | None = None,
) -> Outcome:
    """Store ``events`` (checked by rules.read_event) for ``source_id`` and file them in the
    timeline, in a few set-based statements whatever their number.

    A messageId this source already sent is skipped (``INSERT ... ON CONFLICT DO NOTHING``):
    resends are harmless. Storing and filing run in a savepoint; if filing fails, the events
    are stored raw (``received``) instead, for :func:`reprocess`, and the request still
    succeeds: an accepted event is never lost. Returns an :class:`Outcome`."""
    received_at = received_at or utcnow()
    unique: dict[str, rules.Event] = {}
    for event in events:
        unique.setdefault(event.message_id, event)
    if not unique:
        return Outcome(0, 0, 0)
    batch = list(unique.values())
    Dialect.of(session).claim_write(session.connection(), _EVENTS)
    try:
        with session.begin_nested():
            stored, resolved = _store_filed(
                session, source_id=source_id, events=batch, received_at=received_at
            )
    except Exception as exc:  # store them raw: reprocess files them later
        log.error(
            "filing %d collected events failed (%s); they are stored 'received' for reprocess",
            len(batch),
            type(exc).__name__,
        )
        stored = len(
            _insert_events(session, source_id=source_id, events=batch, received_at=received_at)
        )
        return Outcome(stored, len(events) - stored, 0, filed=False)
    return Outcome(stored, len(events) - stored, resolved)


def _store_filed(
    session: Session, *, source_id: int, events: list[rules.Event], received_at: datetime
) -> tuple[int, int]:
    """Resolve the events, store the new ones with their customer and interaction, create
    the interactions, record what the events teach. Returns (stored, resolved)."""
    dialect = Dialect.of(session)
    identifiers, links = _known(session, source_id=source_id, events=events)
    resolution = rules.resolve(events, identifiers=identifiers, links=links)
    owners = resolution.owners
    interaction_ids = dialect.reserve_ids(session.connection(), _INTERACTIONS, len(events))
    inserted = _insert_events(
        session,
        source_id=source_id,
        events=events,
        received_at=received_at,
        owners=owners,
        interaction_ids=interaction_ids,
    )
    new = [i for i, e in enumerate(events) if e.message_id in inserted]
    _insert_interactions(
        session,
        source_id=source_id,
        rows=[(interaction_ids[i], owners[i], events[i]) for i in new],
    )
    learned = {
        key: (owner, inserted[events[index].message_id])
        for key, (owner, index) in resolution.learned.items()
        if events[index].message_id in inserted
    }
    if learned:
        _learn(session, source_id=source_id, learned=learned)
    return len(new), sum(owners[i] is not None for i in new)


def _insert_events(
    session: Session,
    *,
    source_id: int,
    events: Sequence[rules.Event],
    received_at: datetime,
    owners: Sequence[int | None] | None = None,
    interaction_ids: Sequence[int] | None = None,
) -> dict[str, int]:
    """Store the events this source has not sent before: filed (with their customer and
    interaction) or, without ``interaction_ids``, raw (``received``). Returns messageId ->
    id of the rows inserted."""
    rows = [
        (
            source_id,
            e.message_id,
            e.type,
            e.name,
            e.user_id,
            e.anonymous_id,
            e.email,
            e.phone,
            e.occurred_at,
            received_at,
            e.payload,
            _status(owners[i] if owners else None, filed=interaction_ids is not None),
            owners[i] if owners else None,
            interaction_ids[i] if interaction_ids else None,
        )
        for i, e in enumerate(events)
    ]
    inserted = Dialect.of(session).insert_rows(
        session.connection(),
        _EVENTS,
        EVENT_COLUMNS,
        rows,
        conflict=("source_id", "message_id"),
        returning=("id", "message_id"),
    )
    return {message_id: event_id for event_id, message_id in inserted}


def _status(owner: int | None, *, filed: bool) -> str:
    if not filed:
        return "received"
    return "resolved" if owner is not None else "unresolved"


def _insert_interactions(
    session: Session,
    *,
    source_id: int,
    rows: Sequence[tuple[int, int | None, rules.Event]],
) -> None:
    """One interaction per (id, customer or None, event), with the source's brand."""
    if not rows:
        return
    brand_id = session.scalar(select(Source.brand_id).where(Source.id == source_id))
    now = utcnow()
    Dialect.of(session).copy_rows(
        session.connection(),
        _INTERACTIONS,
        INTERACTION_COLUMNS,
        [
            (
                interaction_id,
                owner,
                e.occurred_at,
                e.channel,
                "inbound",
                e.interaction_type,
                e.subject,
                brand_id,
                source_id,
                e.details,
                now,
            )
            for interaction_id, owner, e in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class Reprocessed:
    """What :func:`reprocess` did: events ``seen``, now ``resolved``, and the last id read
    (pass it as ``after_id`` to go on)."""

    seen: int
    resolved: int
    last_id: int


@dataclass(frozen=True, slots=True)
class _Stored:
    event_id: int
    event: rules.Event
    interaction_id: int | None


def reprocess(
    session: Session, *, source_id: int | None = None, after_id: int = 0, limit: int = 5_000
) -> Reprocessed:
    """File the stored events that are not on a customer yet, in id order after
    ``after_id``: those left ``received`` get their interaction, and every one is resolved
    again (a customer imported since may now be found). Run it after an import of customers,
    or after a failure to file. Returns a :class:`Reprocessed`."""
    Dialect.of(session).claim_write(session.connection(), _EVENTS)
    query = (
        select(
            CollectedEvent.id,
            CollectedEvent.source_id,
            CollectedEvent.type,
            CollectedEvent.payload,
            CollectedEvent.received_at,
            CollectedEvent.interaction_id,
        )
        .where(CollectedEvent.status != "resolved", CollectedEvent.id > after_id)
        .order_by(CollectedEvent.id)
        .limit(limit)
    )
    if source_id is not None:
        query = query.where(CollectedEvent.source_id == source_id)
    rows = session.execute(query).all()
    by_source: dict[int, list[_Stored]] = defaultdict(list)
    for event_id, source, kind, payload, received_at, interaction_id in rows:
        try:
            event = rules.read_event(payload, kind=kind, received_at=received_at)
        except rules.Malformed:
            log.error("collected event %d no longer reads as an event; left as it is", event_id)
            continue
        by_source[source].append(_Stored(event_id, event, interaction_id))
    resolved = sum(_refile(session, source_id=s, stored=p) for s, p in by_source.items())
    return Reprocessed(len(rows), resolved, rows[-1][0] if rows else after_id)


def _refile(session: Session, *, source_id: int, stored: Sequence[_Stored]) -> int:
    """File stored events again: create the interactions they lack, put them on the
    customer now found, record what they teach. Returns how many are resolved."""
    dialect = Dialect.of(session)
    conn = session.connection()
    events = [s.event for s in stored]
    identifiers, links = _known(session, source_id=source_id, events=events)
    resolution = rules.resolve(events, identifiers=identifiers, links=links)
    owners = resolution.owners
    interaction_ids = [s.interaction_id for s in stored]
    fresh = [i for i, s in enumerate(stored) if s.interaction_id is None]
    for new_id, i in zip(dialect.reserve_ids(conn, _INTERACTIONS, len(fresh)), fresh, strict=True):
        interaction_ids[i] = new_id
    _insert_interactions(
        session,
        source_id=source_id,
        rows=[(cast(int, interaction_ids[i]), owners[i], events[i]) for i in fresh],
    )
    dialect.update_by_key(
        conn,
        _INTERACTIONS,
        "id",
        ["customer_id"],
        [
            (owners[i], s.interaction_id)
            for i, s in enumerate(stored)
            if s.interaction_id is not None and owners[i] is not None
        ],
    )
    dialect.update_by_key(
        conn,
        _EVENTS,
        "id",
        ["status", "customer_id", "interaction_id"],
        [
            (_status(owners[i], filed=True), owners[i], interaction_ids[i], s.event_id)
            for i, s in enumerate(stored)
            if s.interaction_id is None or owners[i] is not None
        ],
    )
    learned = {
        key: (owner, stored[index].event_id) for key, (owner, index) in resolution.learned.items()
    }
    if learned:
        _learn(session, source_id=source_id, learned=learned)
    return sum(owner is not None for owner in owners)


def _learn(
    session: Session,
    *,
    source_id: int,
    learned: Mapping[tuple[str, str], tuple[int, int]],
) -> None:
    """Record the new links ((kind, value) -> (customer, id of the event that taught it);
    the first one wins, also against a concurrent request) and attach the earlier
    unresolved events they cover, with their interactions."""
    dialect = Dialect.of(session)
    conn = session.connection()
    now = utcnow()
    saved = {
        (kind, value): owner
        for kind, value, owner in dialect.insert_rows(
            conn,
            _LINKS,
            ("source_id", "kind", "value", "customer_id", "event_id", "created_at"),
            [
                (source_id, kind, value, owner, event_id, now)
                for (kind, value), (owner, event_id) in learned.items()
            ],
            conflict=("source_id", "kind", "value"),
            returning=("kind", "value", "customer_id"),
        )
    }
    if not saved:
        return
    values = {
        "anonymous": sorted(v for k, v in saved if k == "anonymous"),
        "user": sorted(v for k, v in saved if k == "user"),
    }
    # Each of the source's events with those ids (an index lookup each); the unresolved ones
    # are kept here, which spares the database a scan of every unresolved event.
    waiting: list[tuple[int, int | None, str | None, str | None]] = []
    for part in _parts(dialect, values):
        columns = (
            CollectedEvent.id,
            CollectedEvent.interaction_id,
            CollectedEvent.user_id,
            CollectedEvent.anonymous_id,
            CollectedEvent.status,
        )
        lookups = [
            select(*columns).where(
                CollectedEvent.source_id == source_id,
                dialect.one_of(
                    CollectedEvent.anonymous_id if kind == "anonymous" else CollectedEvent.user_id,
                    kind_values,
                ),
            )
            for kind, kind_values in part.items()
            if kind_values
        ]
        for event_id, interaction_id, user_id, anonymous_id, status in session.execute(
            union_all(*lookups)
        ):
            if status == "unresolved":
                waiting.append((event_id, interaction_id, user_id, anonymous_id))
    events: dict[int, tuple[Any, ...]] = {}
    interactions: list[tuple[Any, ...]] = []
    for event_id, interaction_id, user_id, anonymous_id in sorted(waiting):
        owner = (
            saved.get(("user", user_id))
            if user_id is not None
            else saved.get(("anonymous", anonymous_id or ""))
        )
        if owner is None or event_id in events:
            continue
        events[event_id] = ("resolved", owner, interaction_id, event_id)
        if interaction_id is not None:
            interactions.append((owner, interaction_id))
    fields = ["status", "customer_id", "interaction_id"]
    dialect.update_by_key(conn, _EVENTS, "id", fields, list(events.values()))
    dialect.update_by_key(conn, _INTERACTIONS, "id", ["customer_id"], interactions)


def _known(
    session: Session, *, source_id: int, events: Sequence[rules.Event]
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """What the base knows about the events' senders: identifiers held by exactly one live
    customer, as (``account_id`` | ``email`` | ``phone``, value) -> customer, and this
    source's links, as (``anonymous`` | ``user``, value) -> live customer. One query for
    each (more only past a database's parameter limit, or to follow merges), each made of
    plain index lookups (UNION ALL: an OR of lookups defeats the indexes)."""
    dialect = Dialect.of(session)
    users = sorted({e.user_id for e in events if e.user_id is not None})
    wanted = {
        "account_id": users,
        "email": sorted({e.email for e in events if e.email is not None}),
        "phone": sorted({e.phone for e in events if e.phone is not None}),
    }
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)
    statuses: dict[int, tuple[str, int | None]] = {}
    for part in _parts(dialect, wanted):
        lookups = [
            select(
                Identifier.kind,
                Identifier.value,
                Customer.id,
                Customer.status,
                Customer.merged_into_id,
            )
            .join(Customer, Customer.id == Identifier.customer_id)
            .where(
                Identifier.kind.in_(PHONE_KINDS) if kind == "phone" else Identifier.kind == kind,
                dialect.one_of(Identifier.value, values),
            )
            for kind, values in part.items()
            if values
        ]
        for kind, value, customer_id, status, merged_into in session.execute(union_all(*lookups)):
            holders[("phone" if kind in PHONE_KINDS else kind, value)].add(customer_id)
            statuses[customer_id] = (status, merged_into)
    linked: dict[tuple[str, str], int] = {}
    link_values = {
        "anonymous": sorted({e.anonymous_id for e in events if e.anonymous_id is not None}),
        "user": users,
    }
    for part in _parts(dialect, link_values):
        lookups = [
            select(
                VisitorLink.kind,
                VisitorLink.value,
                Customer.id,
                Customer.status,
                Customer.merged_into_id,
            )
            .join(Customer, Customer.id == VisitorLink.customer_id)
            .where(
                VisitorLink.source_id == source_id,
                VisitorLink.kind == kind,
                dialect.one_of(VisitorLink.value, values),
            )
            for kind, values in part.items()
            if values
        ]
        for kind, value, customer_id, status, merged_into in session.execute(union_all(*lookups)):
            linked[(kind, value)] = customer_id
            statuses[customer_id] = (status, merged_into)
    live = _live(session, statuses)
    identifiers: dict[tuple[str, str], int] = {}
    for key, customers in holders.items():
        owners = {live[c] for c in customers} - {None}
        if len(owners) == 1:
            identifiers[key] = cast(int, owners.pop())
    links = {key: cast(int, live[c]) for key, c in linked.items() if live[c] is not None}
    return identifiers, links


def _live(
    session: Session, statuses: Mapping[int, tuple[str, int | None]]
) -> dict[int, int | None]:
    """Each customer as it lives now: itself, the customer it was merged into (following
    chains), or None when erased."""
    known = dict(statuses)
    out: dict[int, int | None] = {}
    for _ in range(20):
        missing = {
            merged_into
            for status, merged_into in known.values()
            if status == "merged" and merged_into is not None and merged_into not in known
        }
        if not missing:
            break
        found = session.execute(
            select(Customer.id, Customer.status, Customer.merged_into_id).where(
                Dialect.of(session).one_of(Customer.id, sorted(missing))
            )
        )
        known.update({cid: (status, merged_into) for cid, status, merged_into in found})
    for customer_id in statuses:
        current: int | None = customer_id
        for _ in range(20):
            if current is None or current not in known:
                break
            status, merged_into = known[current]
            if status != "merged":
                break
            current = merged_into
        out[customer_id] = (
            current
            if current is not None and known.get(current, ("", None))[0] == "active"
            else None
        )
    return out


def _parts(dialect: Dialect, groups: dict[str, list[str]]) -> Iterator[dict[str, list[str]]]:
    """``groups`` of values in pieces a statement can bind: all at once on PostgreSQL (one
    array each) and on SQLite when few enough, else chunk by chunk."""
    size = dialect.max_params - 10
    if not any(groups.values()):
        return
    if dialect.name == "postgresql" or sum(len(v) for v in groups.values()) <= size:
        yield groups
        return
    for name, values in groups.items():
        for part in chunked(values, size):
            yield {name: list(part)}
