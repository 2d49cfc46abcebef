"""The 360-degree view of one customer and their timeline.

``customer_360`` assembles what the repository knows about a person: the golden record with
where each value came from, identifiers, source records, organisations, consents (current
state and full history with proof), preferences, a purchase summary and the merge history.
``timeline`` merges interactions and transactions into one stream, newest first, filtered in
SQL and paged by an opaque keyset cursor.

This module reads across domains (history, consent, identity's merge events) because the 360
view is the customer domain's assembly of them; it only reads, and writes nothing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tournesol.consent import service as consent_service
from tournesol.consent.models import Consent
from tournesol.customers.models import (
    Brand,
    Customer,
    Identifier,
    Organisation,
    OrganisationContact,
)
from tournesol.customers.rules import GOLDEN_FIELDS
from tournesol.identity.merges import active_events_of
from tournesol.ingest.models import Source, SourceRecord
from tournesol.interactions import service as history_service
from tournesol.interactions.models import Interaction, Transaction, TransactionLine

GOLDEN_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(GOLDEN_FIELDS.values()))
SINGLE_RECORD_RULE = "single record"
MAX_TIMELINE = 200
# Transaction kinds as timeline item kinds (a shop ticket is a purchase).
TRANSACTION_KINDS = {"ticket": "purchase", "order": "order", "return": "return"}
_RANK = {"transaction": 0, "interaction": 1}  # order of two items at the same instant
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)

# interactions.service validates what is logged; re-exported for callers of the 360 view
add_interaction = history_service.add_interaction
InteractionError = history_service.InteractionError


# --- the 360 view ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSource:
    """Where one golden value came from: the source record, its source, the rule that chose
    it (``single record`` when the customer is the projection of its only record)."""

    record_id: int | None
    source: str | None
    rule: str | None


@dataclass(frozen=True)
class IdentifierItem:
    kind: str
    value: str
    source: str | None
    source_record_id: int | None


@dataclass(frozen=True)
class RecordItem:
    id: int
    source: str
    source_key: str
    entity: str
    first_seen: datetime
    last_seen: datetime
    quality_flags: list[str]
    quality_score: int | None


@dataclass(frozen=True)
class OrganisationItem:
    id: int
    name: str | None
    siret: str | None
    siren: str | None
    naf_code: str | None
    headcount_band: str | None
    org_class: str | None
    postal_code: str | None
    city: str | None
    job_title: str | None


@dataclass(frozen=True)
class ConsentItem:
    id: int
    channel: str
    purpose: str
    brand_id: int | None
    brand: str | None
    status: str
    collected_at: datetime
    source: str | None
    proof: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class PreferenceItem:
    channel: str
    preferred: bool
    days: str | None
    hours: str | None
    language: str | None
    max_per_week: int | None
    updated_at: datetime


@dataclass(frozen=True)
class TransactionSummary:
    """Purchases (tickets and orders) and returns: counts, amounts, first and last dates."""

    count: int
    total_amount: Decimal
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    returns: int
    returned_amount: Decimal


@dataclass(frozen=True)
class MergeItem:
    """One merge this customer took part in, as ``survivor`` or as the ``absorbed`` one."""

    event_id: int
    role: str
    survivor_id: int
    absorbed_id: int
    merged_at: datetime
    rule: str
    score: float | None
    reason: str
    actor: str
    unmerged_at: datetime | None
    unmerged_by: str | None
    can_undo: bool


@dataclass
class Customer360:
    """Everything about one customer. A merged customer (``status`` ``merged``) carries
    ``merged_into_id`` and ``survivor_id`` (the active customer at the end of the chain): the
    caller shows that one instead."""

    customer_id: int
    status: str
    merged_into_id: int | None
    survivor_id: int | None
    customer_type: str
    golden: dict[str, Any]
    provenance: dict[str, FieldSource]
    brand: str | None
    created_at: datetime
    updated_at: datetime
    identifiers: list[IdentifierItem] = field(default_factory=list)
    records: list[RecordItem] = field(default_factory=list)
    organisations: list[OrganisationItem] = field(default_factory=list)
    consents: list[ConsentItem] = field(default_factory=list)
    consent_history: list[ConsentItem] = field(default_factory=list)
    preferences: list[PreferenceItem] = field(default_factory=list)
    transactions: TransactionSummary | None = None
    merges: list[MergeItem] = field(default_factory=list)
    segments: list[Any] = field(default_factory=list)  # issue 6
    scores: list[Any] = field(default_factory=list)  # issue 6


def survivor_of(session: Session, *, customer_id: int) -> int | None:
    """The active customer a merged customer now lives in (following a chain of merges);
    the customer itself when active; None when unknown or erased."""
    seen: set[int] = set()
    current: int | None = customer_id
    while current is not None and current not in seen:
        seen.add(current)
        row = session.execute(
            select(Customer.status, Customer.merged_into_id).where(Customer.id == current)
        ).one_or_none()
        if row is None:
            return None
        if row.status == "active":
            return current
        if row.status != "merged":
            return None
        current = row.merged_into_id
    return None


def customer_360(session: Session, *, customer_id: int) -> Customer360 | None:
    """The 360 view of a customer, or None when there is no such customer. Reads only.

    >>> view = customer_360(session, customer_id=42)  # doctest: +SKIP
    >>> view.golden["last_name"], view.provenance["last_name"].source
    ('DUPONT', 'loyalty')
    """
    customer = session.get(Customer, customer_id)
    if customer is None:
        return None
    records = _records(session, customer_id)
    brand = session.get(Brand, customer.brand_id) if customer.brand_id else None
    golden = {column: getattr(customer, column) for column in GOLDEN_COLUMNS}
    survivor = (
        customer_id
        if customer.status == "active"
        else survivor_of(session, customer_id=customer_id)
    )
    # one read of the consents serves both the history and the state that holds now
    consent_rows = consent_service.history(session, customer_id=customer_id)
    consent_history = consent_items(session, consent_rows)
    holding = {row.id for row in consent_service.latest_of(consent_rows)}
    return Customer360(
        customer_id=customer.id,
        status=customer.status,
        merged_into_id=customer.merged_into_id,
        survivor_id=survivor,
        customer_type=customer.customer_type,
        golden=golden,
        provenance=_provenance(customer.provenance, golden, records),
        brand=brand.code if brand else None,
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        identifiers=_identifiers(session, customer_id),
        records=records,
        organisations=_organisations(session, customer_id),
        consents=[i for i in consent_history if i.id in holding],
        consent_history=consent_history,
        preferences=[
            PreferenceItem(
                p.channel, p.preferred, p.days, p.hours, p.language, p.max_per_week, p.updated_at
            )
            for p in consent_service.preferences(session, customer_id=customer_id)
        ],
        transactions=transaction_summary(session, customer_id=customer_id),
        merges=_merges(session, customer_id),
    )


def _provenance(
    stored: dict[str, Any] | None, golden: dict[str, Any], records: list[RecordItem]
) -> dict[str, FieldSource]:
    if stored is not None:
        return {
            column: FieldSource(p.get("record"), p.get("source"), p.get("rule"))
            for column, p in stored.items()
            if isinstance(p, dict)
        }
    own = [r for r in records if r.entity == "customer"]
    if len(own) != 1:
        return {}
    only = own[0]
    return {
        column: FieldSource(only.id, only.source, SINGLE_RECORD_RULE)
        for column, value in golden.items()
        if value is not None
    }


def _records(session: Session, customer_id: int) -> list[RecordItem]:
    query = (
        select(
            SourceRecord.id,
            Source.name,
            SourceRecord.source_key,
            SourceRecord.entity,
            SourceRecord.created_at,
            SourceRecord.updated_at,
            SourceRecord.quality_flags,
            SourceRecord.normalized["quality"]["score"].as_integer(),
        )
        .join(Source, Source.id == SourceRecord.source_id)
        .where(SourceRecord.customer_id == customer_id)
        .order_by(SourceRecord.entity, SourceRecord.id)
    )
    return [
        RecordItem(rid, src, key, entity, first, last, list(flags or []), score)
        for rid, src, key, entity, first, last, flags, score in session.execute(query)
    ]


def _identifiers(session: Session, customer_id: int) -> list[IdentifierItem]:
    query = (
        select(Identifier.kind, Identifier.value, Source.name, Identifier.source_record_id)
        .outerjoin(SourceRecord, SourceRecord.id == Identifier.source_record_id)
        .outerjoin(Source, Source.id == SourceRecord.source_id)
        .where(Identifier.customer_id == customer_id)
        .order_by(Identifier.kind, Identifier.value, Identifier.id)
    )
    return [IdentifierItem(*row) for row in session.execute(query)]


def _organisations(session: Session, customer_id: int) -> list[OrganisationItem]:
    query = (
        select(Organisation, OrganisationContact.job_title)
        .join(OrganisationContact, OrganisationContact.organisation_id == Organisation.id)
        .where(OrganisationContact.customer_id == customer_id)
        .order_by(Organisation.name, Organisation.id)
    )
    return [
        OrganisationItem(
            org.id,
            org.name,
            org.siret,
            org.siren,
            org.naf_code,
            org.headcount_band,
            org.org_class,
            org.postal_code,
            org.city,
            job_title,
        )
        for org, job_title in session.execute(query)
    ]


def consent_items(session: Session, rows: Sequence[Consent]) -> list[ConsentItem]:
    """Consent rows with their brand code and source name."""
    brands = _names(session, Brand.id, Brand.code, {r.brand_id for r in rows})
    sources = _names(session, Source.id, Source.name, {r.source_id for r in rows})
    return [
        ConsentItem(
            r.id,
            r.channel,
            r.purpose,
            r.brand_id,
            brands.get(r.brand_id) if r.brand_id else None,
            r.status,
            r.collected_at,
            sources.get(r.source_id) if r.source_id else None,
            dict(r.proof or {}),
            r.created_at,
        )
        for r in rows
    ]


def _names(session: Session, key: Any, label: Any, ids: set[int | None]) -> dict[int, str]:
    wanted = sorted(i for i in ids if i is not None)
    if not wanted:
        return {}
    return {k: v for k, v in session.execute(select(key, label).where(key.in_(wanted)))}


def transaction_summary(session: Session, *, customer_id: int) -> TransactionSummary:
    """Counts, amounts and first/last dates of the customer's purchases, and their returns."""
    query = (
        select(
            Transaction.kind,
            func.count(),
            func.sum(Transaction.total_amount),
            func.min(Transaction.occurred_at),
            func.max(Transaction.occurred_at),
        )
        .where(Transaction.customer_id == customer_id)
        .group_by(Transaction.kind)
    )
    count, total, returns, returned = 0, Decimal(0), 0, Decimal(0)
    first: datetime | None = None
    last: datetime | None = None
    for kind, n, amount, low, high in session.execute(query):
        if kind == "return":
            returns, returned = returns + n, returned + Decimal(amount or 0)
            continue
        count, total = count + n, total + Decimal(amount or 0)
        low, high = _aware(low), _aware(high)
        first = low if first is None or (low is not None and low < first) else first
        last = high if last is None or (high is not None and high > last) else last
    return TransactionSummary(count, total, first, last, returns, returned)


def _aware(value: Any) -> datetime | None:
    """MIN/MAX over a date-time column come back as text on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _merges(session: Session, customer_id: int) -> list[MergeItem]:
    events = active_events_of(session, customer_id)
    if not events:
        return []
    survivors = {e.survivor_id for e in events}
    status: dict[int, str] = {
        cid: state
        for cid, state in session.execute(
            select(Customer.id, Customer.status).where(Customer.id.in_(survivors))
        )
    }
    return [
        MergeItem(
            event_id=e.id,
            role="survivor" if e.survivor_id == customer_id else "absorbed",
            survivor_id=e.survivor_id,
            absorbed_id=e.absorbed_id,
            merged_at=e.merged_at,
            rule=e.rule,
            score=e.score,
            reason=e.reason,
            actor=e.actor,
            unmerged_at=e.unmerged_at,
            unmerged_by=e.unmerged_by,
            # identity.merges.unmerge refuses an undone event and one whose survivor was
            # itself merged since
            can_undo=e.unmerged_at is None and status.get(e.survivor_id) == "active",
        )
        for e in events
    ]


# --- the timeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineItem:
    """One entry of the timeline: an interaction (``kind`` ``interaction``) or a transaction
    (``purchase``, ``order`` or ``return``, with amount, store and number of lines)."""

    kind: str
    id: int
    occurred_at: datetime | None
    channel: str | None
    direction: str
    type: str
    subject: str | None = None
    outcome: str | None = None
    campaign_code: str | None = None
    source: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    store_code: str | None = None
    lines: int | None = None
    status: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> str:
        return "interaction" if self.kind == "interaction" else "transaction"


@dataclass(frozen=True)
class TimelinePage:
    items: list[TimelineItem]
    next_cursor: str | None


@dataclass(frozen=True)
class TimelineFacets:
    """The values present in a customer's timeline, for filter lists."""

    channels: list[str]
    directions: list[str]
    types: list[str]


class CursorError(ValueError):
    """A timeline cursor that this service did not hand out."""


@dataclass(frozen=True)
class _Cursor:
    occurred_at: datetime | None
    stream: str
    id: int


def encode_cursor(item: TimelineItem) -> str:
    """An opaque cursor after ``item``: URL-safe base64 of its date, stream and id."""
    when = item.occurred_at.astimezone(UTC).isoformat() if item.occurred_at else None
    return base64.urlsafe_b64encode(orjson.dumps([when, item.stream, item.id])).decode()


def decode_cursor(text: str) -> _Cursor:
    try:
        when, stream, ident = orjson.loads(base64.urlsafe_b64decode(text.encode()))
        moment = datetime.fromisoformat(when) if when is not None else None
        if stream not in _RANK or not isinstance(ident, int):
            raise ValueError(stream)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise CursorError(
            "this cursor is not one the timeline gave: start again without it"
        ) from None
    return _Cursor(moment, stream, ident)


def timeline(
    session: Session,
    *,
    customer_id: int,
    channels: Sequence[str] = (),
    directions: Sequence[str] = (),
    types: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> TimelinePage:
    """One page of the customer's interactions and transactions, newest first (undated
    entries last). Filters apply in SQL to both: ``types`` holds interaction types and
    ``purchase``/``order``/``return``; transactions are ``inbound``. ``since`` and ``until``
    bound ``occurred_at`` (both inclusive). ``next_cursor`` fetches the following page
    (None on the last one). Raises CursorError on a cursor it did not hand out.

    >>> page = timeline(session, customer_id=42, channels=["phone"], limit=20)  # doctest: +SKIP
    >>> more = timeline(session, customer_id=42, channels=["phone"], cursor=page.next_cursor)
    """
    limit = max(1, min(limit, MAX_TIMELINE))
    after = decode_cursor(cursor) if cursor else None
    filters = _Filters(tuple(channels), tuple(directions), tuple(types), since, until)
    dated = after is None or after.occurred_at is not None
    items: list[TimelineItem] = []
    if dated:
        for stream in _RANK:
            items.extend(_read(session, stream, customer_id, filters, after, True, limit + 1))
    if len(items) <= limit and since is None and until is None:
        undated_after = after if after is not None and after.occurred_at is None else None
        for stream in _RANK:
            items.extend(
                _read(session, stream, customer_id, filters, undated_after, False, limit + 1)
            )
    items.sort(key=_order, reverse=True)
    page = items[:limit]
    more = len(items) > limit
    return TimelinePage(page, encode_cursor(page[-1]) if more and page else None)


def _order(item: TimelineItem) -> tuple[int, datetime, int, int]:
    when = item.occurred_at
    return (when is not None, when or _EPOCH, _RANK[item.stream], item.id)


@dataclass(frozen=True)
class _Filters:
    channels: tuple[str, ...]
    directions: tuple[str, ...]
    types: tuple[str, ...]
    since: datetime | None
    until: datetime | None


def _read(
    session: Session,
    stream: str,
    customer_id: int,
    filters: _Filters,
    after: _Cursor | None,
    dated: bool,
    count: int,
) -> list[TimelineItem]:
    """Up to ``count`` items of one stream after the cursor, in timeline order."""
    if stream == "interaction":
        table: Any = Interaction
        query = select(Interaction, Source.name).outerjoin(
            Source, Source.id == Interaction.source_id
        )
        if filters.directions:
            query = query.where(Interaction.direction.in_(filters.directions))
        if filters.types:
            query = query.where(Interaction.type.in_(filters.types))
    else:
        table = Transaction
        if filters.directions and "inbound" not in filters.directions:
            return []
        lines = (
            select(func.count())
            .where(TransactionLine.transaction_id == Transaction.id)
            .scalar_subquery()
        )
        query = select(Transaction, Source.name, lines).join(
            Source, Source.id == Transaction.source_id
        )
        if filters.types:
            kinds = [k for k, label in TRANSACTION_KINDS.items() if label in filters.types]
            kinds += [t for t in filters.types if t not in TRANSACTION_KINDS.values()]
            query = query.where(Transaction.kind.in_(kinds))
    query = query.where(table.customer_id == customer_id)
    if filters.channels:
        query = query.where(table.channel.in_(filters.channels))
    when = table.occurred_at
    if dated:
        query = query.where(when.is_not(None))
        if filters.since is not None:
            query = query.where(when >= filters.since)
        if filters.until is not None:
            query = query.where(when <= filters.until)
        if after is not None and after.occurred_at is not None:
            mine, theirs = _RANK[stream], _RANK[after.stream]
            if mine > theirs:
                query = query.where(when < after.occurred_at)
            elif mine < theirs:
                query = query.where(when <= after.occurred_at)
            else:
                query = query.where(
                    when <= after.occurred_at,
                    (when < after.occurred_at) | (table.id < after.id),
                )
        query = query.order_by(when.desc(), table.id.desc())
    else:
        query = query.where(when.is_(None))
        if after is not None:
            mine, theirs = _RANK[stream], _RANK[after.stream]
            if mine > theirs:
                return []
            if mine == theirs:
                query = query.where(table.id < after.id)
        query = query.order_by(table.id.desc())
    rows: list[Any] = list(session.execute(query.limit(count)))
    if stream == "interaction":
        return [interaction_item(row[0], row[1]) for row in rows]
    return [_transaction_item(row[0], row[1], row[2]) for row in rows]


def interaction_item(row: Interaction, source: str | None = None) -> TimelineItem:
    """An interaction as a timeline entry."""
    return TimelineItem(
        kind="interaction",
        id=row.id,
        occurred_at=row.occurred_at,
        channel=row.channel,
        direction=row.direction,
        type=row.type,
        subject=row.subject,
        outcome=row.outcome,
        campaign_code=row.campaign_code,
        source=source,
        payload=dict(row.payload or {}),
    )


def _transaction_item(row: Transaction, source: str | None, lines: int) -> TimelineItem:
    kind = TRANSACTION_KINDS.get(row.kind, row.kind)
    return TimelineItem(
        kind=kind,
        id=row.id,
        occurred_at=row.occurred_at,
        channel=row.channel,
        direction="inbound",
        type=kind,
        source=source,
        amount=row.total_amount,
        currency=row.currency,
        store_code=row.store_code,
        lines=int(lines or 0),
        status=row.status,
    )


def timeline_facets(session: Session, *, customer_id: int) -> TimelineFacets:
    """The channels, directions and types present in the customer's timeline."""
    channels: set[str] = set()
    directions: set[str] = set()
    types: set[str] = set()
    for channel, direction, kind in session.execute(
        select(Interaction.channel, Interaction.direction, Interaction.type)
        .where(Interaction.customer_id == customer_id)
        .distinct()
    ):
        channels.add(channel)
        directions.add(direction)
        types.add(kind)
    for sold_on, kind in session.execute(
        select(Transaction.channel, Transaction.kind)
        .where(Transaction.customer_id == customer_id)
        .distinct()
    ):
        if sold_on:
            channels.add(sold_on)
        directions.add("inbound")
        types.add(TRANSACTION_KINDS.get(kind, kind))
    return TimelineFacets(sorted(channels), sorted(directions), sorted(types))


def status_of(session: Session, *, customer_id: int) -> tuple[str, int | None] | None:
    """A customer's status and, when merged, the active customer it now lives in; None when
    there is no such customer."""
    row = session.execute(select(Customer.status).where(Customer.id == customer_id)).one_or_none()
    if row is None:
        return None
    if row.status == "merged":
        return row.status, survivor_of(session, customer_id=customer_id)
    return row.status, None


def brand_id_of(session: Session, *, code: str) -> int | None:
    """The id of the brand with this code, or None."""
    return session.scalar(select(Brand.id).where(Brand.code == code.strip()))
