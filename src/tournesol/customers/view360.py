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
from functools import lru_cache
from typing import Any, cast

import orjson
from sqlalchemy import (
    Integer,
    Select,
    Table,
    bindparam,
    func,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from tournesol.consent import rules as consent_rules
from tournesol.consent.models import Consent, Preference
from tournesol.customers.models import (
    Brand,
    Customer,
    Identifier,
    Organisation,
    OrganisationContact,
)
from tournesol.customers.rules import GOLDEN_FIELDS
from tournesol.identity.models import MergeEvent
from tournesol.ingest.models import Source, SourceRecord
from tournesol.interactions import service as history_service
from tournesol.interactions.models import Interaction, Transaction, TransactionLine
from tournesol.scoring.models import CustomerRfm, CustomerScore
from tournesol.segments.models import Segment, SegmentMembership

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


@dataclass(frozen=True)
class SegmentItem:
    """A saved segment the customer is in, as of the segment's last refresh."""

    code: str
    name: str
    entered_at: datetime


@dataclass(frozen=True)
class RfmItem:
    """The customer's RFM scores and segment in one scope (``all`` or a brand code)."""

    scope: str
    segment: str
    r_score: int
    f_score: int
    m_score: int
    recency_days: int
    frequency: int
    monetary: Decimal
    computed_at: datetime


@dataclass(frozen=True)
class ScoreItem:
    """The customer's current predictive score of one model."""

    model: str
    version: str
    value: float
    computed_at: datetime


@dataclass
class Customer360:
    """Everything about one customer. A merged customer (``status`` ``merged``) carries
    ``merged_into_id`` and ``survivor_id`` (the active customer at the end of the chain): the
    caller shows that one instead. The fields are in the order of the API's answer
    (``schemas.CustomerOut``), which serializes this object as it is."""

    customer_id: int
    status: str
    merged_into_id: int | None
    survivor_id: int | None
    customer_type: str
    brand: str | None
    created_at: datetime
    updated_at: datetime
    golden: dict[str, Any]
    provenance: dict[str, FieldSource]
    identifiers: list[IdentifierItem] = field(default_factory=list)
    records: list[RecordItem] = field(default_factory=list)
    organisations: list[OrganisationItem] = field(default_factory=list)
    consents: list[ConsentItem] = field(default_factory=list)
    consent_history: list[ConsentItem] = field(default_factory=list)
    preferences: list[PreferenceItem] = field(default_factory=list)
    transactions: TransactionSummary | None = None
    merges: list[MergeItem] = field(default_factory=list)
    segments: list[SegmentItem] = field(default_factory=list)
    rfm: list[RfmItem] = field(default_factory=list)
    scores: list[ScoreItem] = field(default_factory=list)


# Reads by the customer's id, built once: Core statements over the tables (no ORM objects to
# load), each one round trip.
_CUSTOMER = cast(Table, Customer.__table__)
_BRAND = cast(Table, Brand.__table__)
_SOURCE = cast(Table, Source.__table__)
_RECORD = cast(Table, SourceRecord.__table__)
_IDENTIFIER = cast(Table, Identifier.__table__)
_ORGANISATION = cast(Table, Organisation.__table__)
_CONTACT = cast(Table, OrganisationContact.__table__)
_CONSENT = cast(Table, Consent.__table__)
_PREFERENCE = cast(Table, Preference.__table__)
_TRANSACTION = cast(Table, Transaction.__table__)
_LINE = cast(Table, TransactionLine.__table__)
_INTERACTION = cast(Table, Interaction.__table__)
_MERGE = cast(Table, MergeEvent.__table__)
_SEGMENT = cast(Table, Segment.__table__)
_MEMBER = cast(Table, SegmentMembership.__table__)
_RFM = cast(Table, CustomerRfm.__table__)
_SCORE = cast(Table, CustomerScore.__table__)
_ID = bindparam("customer_id", type_=Integer())

_STATUS = select(_CUSTOMER.c.status, _CUSTOMER.c.merged_into_id).where(_CUSTOMER.c.id == _ID)
# Purchases (tickets, orders: every kind but returns) and returns: counts, amounts, dates.
_BOUGHT = _TRANSACTION.c.kind != "return"
_RETURNED = _TRANSACTION.c.kind == "return"
_TOTALS = select(
    func.count().filter(_BOUGHT).label("purchases"),
    func.sum(_TRANSACTION.c.total_amount).filter(_BOUGHT).label("purchased"),
    func.min(_TRANSACTION.c.occurred_at).filter(_BOUGHT).label("first_purchase_at"),
    func.max(_TRANSACTION.c.occurred_at).filter(_BOUGHT).label("last_purchase_at"),
    func.count().filter(_RETURNED).label("returns"),
    func.sum(_TRANSACTION.c.total_amount).filter(_RETURNED).label("returned"),
).where(_TRANSACTION.c.customer_id == _ID)
_TOTALS_OF = _TOTALS.subquery("totals")
# The customer with its brand, its purchase totals, and whether it has organisations,
# preferences or merges (most have none: their reads are skipped), in one statement.
_HEAD = (
    select(
        *(_CUSTOMER.c[c] for c in GOLDEN_COLUMNS if c != "customer_type"),
        _CUSTOMER.c.id,
        _CUSTOMER.c.status,
        _CUSTOMER.c.merged_into_id,
        _CUSTOMER.c.customer_type,
        _CUSTOMER.c.provenance,
        _CUSTOMER.c.created_at,
        _CUSTOMER.c.updated_at,
        _BRAND.c.code.label("brand"),
        *_TOTALS_OF.c,
        select(_CONTACT.c.id)
        .where(_CONTACT.c.customer_id == _CUSTOMER.c.id)
        .exists()
        .label("has_organisations"),
        select(_PREFERENCE.c.id)
        .where(_PREFERENCE.c.customer_id == _CUSTOMER.c.id)
        .exists()
        .label("has_preferences"),
        or_(
            select(_MERGE.c.id).where(_MERGE.c.survivor_id == _CUSTOMER.c.id).exists(),
            select(_MERGE.c.id).where(_MERGE.c.absorbed_id == _CUSTOMER.c.id).exists(),
        ).label("has_merges"),
        select(_MEMBER.c.id)
        .where(_MEMBER.c.customer_id == _CUSTOMER.c.id, _MEMBER.c.left_at.is_(None))
        .exists()
        .label("has_segments"),
        select(_RFM.c.scope).where(_RFM.c.customer_id == _CUSTOMER.c.id).exists().label("has_rfm"),
        select(_SCORE.c.model)
        .where(_SCORE.c.customer_id == _CUSTOMER.c.id)
        .exists()
        .label("has_scores"),
    )
    .select_from(
        _CUSTOMER.outerjoin(_BRAND, _BRAND.c.id == _CUSTOMER.c.brand_id).join(_TOTALS_OF, true())
    )
    .where(_CUSTOMER.c.id == _ID)
)
_SEGMENTS = (
    select(_SEGMENT.c.code, _SEGMENT.c.name, _MEMBER.c.entered_at)
    .select_from(_MEMBER.join(_SEGMENT, _SEGMENT.c.id == _MEMBER.c.segment_id))
    .where(
        _MEMBER.c.customer_id == _ID, _MEMBER.c.left_at.is_(None), _SEGMENT.c.archived.is_(False)
    )
    .order_by(_SEGMENT.c.name)
)
_RFMS = (
    select(
        _RFM.c.scope,
        _RFM.c.segment,
        _RFM.c.r_score,
        _RFM.c.f_score,
        _RFM.c.m_score,
        _RFM.c.recency_days,
        _RFM.c.frequency,
        _RFM.c.monetary,
        _RFM.c.computed_at,
    )
    .where(_RFM.c.customer_id == _ID)
    .order_by(_RFM.c.scope != "all", _RFM.c.scope)
)
_SCORES = (
    select(_SCORE.c.model, _SCORE.c.version, _SCORE.c.value, _SCORE.c.computed_at)
    .where(_SCORE.c.customer_id == _ID)
    .order_by(_SCORE.c.model)
)
_RECORDS = (
    select(
        _RECORD.c.id,
        _SOURCE.c.name,
        _RECORD.c.source_key,
        _RECORD.c.entity,
        _RECORD.c.created_at,
        _RECORD.c.updated_at,
        _RECORD.c.quality_flags,
        _RECORD.c.normalized["quality"]["score"].as_integer(),
    )
    .select_from(_RECORD.join(_SOURCE, _SOURCE.c.id == _RECORD.c.source_id))
    .where(_RECORD.c.customer_id == _ID)
    .order_by(_RECORD.c.entity, _RECORD.c.id)
)
_IDENTIFIERS = (
    select(_IDENTIFIER.c.kind, _IDENTIFIER.c.value, _SOURCE.c.name, _IDENTIFIER.c.source_record_id)
    .select_from(
        _IDENTIFIER.outerjoin(_RECORD, _RECORD.c.id == _IDENTIFIER.c.source_record_id).outerjoin(
            _SOURCE, _SOURCE.c.id == _RECORD.c.source_id
        )
    )
    .where(_IDENTIFIER.c.customer_id == _ID)
    .order_by(_IDENTIFIER.c.kind, _IDENTIFIER.c.value, _IDENTIFIER.c.id)
)
_ORGANISATIONS = (
    select(
        _ORGANISATION.c.id,
        _ORGANISATION.c.name,
        _ORGANISATION.c.siret,
        _ORGANISATION.c.siren,
        _ORGANISATION.c.naf_code,
        _ORGANISATION.c.headcount_band,
        _ORGANISATION.c.org_class,
        _ORGANISATION.c.postal_code,
        _ORGANISATION.c.city,
        _CONTACT.c.job_title,
    )
    .select_from(_ORGANISATION.join(_CONTACT, _CONTACT.c.organisation_id == _ORGANISATION.c.id))
    .where(_CONTACT.c.customer_id == _ID)
    .order_by(_ORGANISATION.c.name, _ORGANISATION.c.id)
)
# consent_service.history's order (newest collected first), with brand code and source name
_CONSENTS = (
    select(
        _CONSENT.c.id,
        _CONSENT.c.channel,
        _CONSENT.c.purpose,
        _CONSENT.c.brand_id,
        _BRAND.c.code,
        _CONSENT.c.status,
        _CONSENT.c.collected_at,
        _SOURCE.c.name,
        _CONSENT.c.proof,
        _CONSENT.c.created_at,
    )
    .select_from(
        _CONSENT.outerjoin(_BRAND, _BRAND.c.id == _CONSENT.c.brand_id).outerjoin(
            _SOURCE, _SOURCE.c.id == _CONSENT.c.source_id
        )
    )
    .where(_CONSENT.c.customer_id == _ID)
    .order_by(_CONSENT.c.collected_at.desc(), _CONSENT.c.id.desc())
)
_PREFERENCES = (
    select(
        _PREFERENCE.c.channel,
        _PREFERENCE.c.preferred,
        _PREFERENCE.c.days,
        _PREFERENCE.c.hours,
        _PREFERENCE.c.language,
        _PREFERENCE.c.max_per_week,
        _PREFERENCE.c.updated_at,
    )
    .where(_PREFERENCE.c.customer_id == _ID)
    .order_by(_PREFERENCE.c.channel)
)
# identity.merges.active_events_of (the merges that built this customer, and those it was
# absorbed by, oldest first) with the survivor's status, in one read of the columns shown
_SURVIVOR = _CUSTOMER.alias("survivor")
_MERGES = (
    select(
        _MERGE.c.id,
        _MERGE.c.survivor_id,
        _MERGE.c.absorbed_id,
        _MERGE.c.merged_at,
        _MERGE.c.rule,
        _MERGE.c.score,
        _MERGE.c.reason,
        _MERGE.c.actor,
        _MERGE.c.unmerged_at,
        _MERGE.c.unmerged_by,
        _SURVIVOR.c.status,
    )
    .select_from(_MERGE.outerjoin(_SURVIVOR, _SURVIVOR.c.id == _MERGE.c.survivor_id))
    .where(or_(_MERGE.c.survivor_id == _ID, _MERGE.c.absorbed_id == _ID))
    .order_by(_MERGE.c.id)
)


def survivor_of(session: Session, *, customer_id: int) -> int | None:
    """The active customer a merged customer now lives in (following a chain of merges);
    the customer itself when active; None when unknown or erased."""
    seen: set[int] = set()
    current: int | None = customer_id
    while current is not None and current not in seen:
        seen.add(current)
        row = session.execute(_STATUS, {"customer_id": current}).one_or_none()
        if row is None:
            return None
        if row.status == "active":
            return current
        if row.status != "merged":
            return None
        current = row.merged_into_id
    return None


def customer_360(
    session: Session, *, customer_id: int, active_only: bool = False
) -> Customer360 | None:
    """The 360 view of a customer, or None when there is no such customer. Reads only: one
    statement for the customer with its brand, purchase totals and which parts it has, then
    one per part it has (records, identifiers, consents; organisations, preferences,
    merges). With ``active_only``, a customer that is not active comes back with its status
    and survivor alone (nothing else read): for a caller that shows the survivor instead.

    >>> view = customer_360(session, customer_id=42)  # doctest: +SKIP
    >>> view.golden["last_name"], view.provenance["last_name"].source
    ('DUPONT', 'loyalty')
    """
    params = {"customer_id": customer_id}
    head = session.execute(_HEAD, params).one_or_none()
    if head is None:
        return None
    golden = {column: getattr(head, column) for column in GOLDEN_COLUMNS}
    survivor = (
        customer_id if head.status == "active" else survivor_of(session, customer_id=customer_id)
    )
    view = Customer360(
        customer_id=head.id,
        status=head.status,
        merged_into_id=head.merged_into_id,
        survivor_id=survivor,
        customer_type=head.customer_type,
        brand=head.brand,
        created_at=head.created_at,
        updated_at=head.updated_at,
        golden=golden,
        provenance={},
    )
    if active_only and head.status != "active":
        return view
    records = [
        RecordItem(rid, src, key, entity, first, last, list(flags or []), score)
        for rid, src, key, entity, first, last, flags, score in session.execute(_RECORDS, params)
    ]
    view.provenance = _provenance(head.provenance, golden, records)
    view.records = records
    view.identifiers = [IdentifierItem(*row) for row in session.execute(_IDENTIFIERS, params)]
    if head.has_organisations:
        view.organisations = [
            OrganisationItem(oid, name, siret, siren, naf, band, org_class, postal, city, title)
            for oid, name, siret, siren, naf, band, org_class, postal, city, title in (
                session.execute(_ORGANISATIONS, params)
            )
        ]
    # one read of the consents serves both the history and the state that holds now
    view.consent_history = [
        ConsentItem(
            cid, channel, purpose, brand_id, brand, status, at, source, dict(proof or {}), made
        )
        for cid, channel, purpose, brand_id, brand, status, at, source, proof, made in (
            session.execute(_CONSENTS, params)
        )
    ]
    holding = {
        int(r["id"])
        for r in consent_rules.latest(
            {
                "id": i.id,
                "channel": i.channel,
                "purpose": i.purpose,
                "brand_id": i.brand_id,
                "collected_at": i.collected_at,
            }
            for i in view.consent_history
        )
    }
    view.consents = [i for i in view.consent_history if i.id in holding]
    if head.has_preferences:
        view.preferences = [PreferenceItem(*row) for row in session.execute(_PREFERENCES, params)]
    view.transactions = _summary(head)
    if head.has_merges:
        view.merges = _merges(session, customer_id)
    if head.has_segments:
        view.segments = [SegmentItem(*row) for row in session.execute(_SEGMENTS, params)]
    if head.has_rfm:
        view.rfm = [RfmItem(*row) for row in session.execute(_RFMS, params)]
    if head.has_scores:
        view.scores = [ScoreItem(*row) for row in session.execute(_SCORES, params)]
    return view


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
    return _summary(session.execute(_TOTALS, {"customer_id": customer_id}).one())


def _summary(totals: Any) -> TransactionSummary:
    return TransactionSummary(
        totals.purchases or 0,
        Decimal(0) + Decimal(totals.purchased or 0),
        _aware(totals.first_purchase_at),
        _aware(totals.last_purchase_at),
        totals.returns or 0,
        Decimal(0) + Decimal(totals.returned or 0),
    )


def _aware(value: Any) -> datetime | None:
    """MIN/MAX over a date-time column come back as text on SQLite."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _merges(session: Session, customer_id: int) -> list[MergeItem]:
    return [
        MergeItem(
            event_id=event_id,
            role="survivor" if survivor_id == customer_id else "absorbed",
            survivor_id=survivor_id,
            absorbed_id=absorbed_id,
            merged_at=merged_at,
            rule=rule,
            score=score,
            reason=reason,
            actor=actor,
            unmerged_at=unmerged_at,
            unmerged_by=unmerged_by,
            # identity.merges.unmerge refuses an undone event and one whose survivor was
            # itself merged since
            can_undo=unmerged_at is None and survivor_status == "active",
        )
        for (
            event_id,
            survivor_id,
            absorbed_id,
            merged_at,
            rule,
            score,
            reason,
            actor,
            unmerged_at,
            unmerged_by,
            survivor_status,
        ) in session.execute(_MERGES, {"customer_id": customer_id})
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
    # Up to four reads (each stream, dated then undated), each capped at limit + 1 in timeline
    # order, sent as one statement; undated entries only when no date bounds are given.
    shapes: list[_Shape | None] = []
    if after is None or after.occurred_at is not None:
        shapes += [_shape(stream, filters, after, True) for stream in _RANK]
    if since is None and until is None:
        undated_after = after if after is not None and after.occurred_at is None else None
        shapes += [_shape(stream, filters, undated_after, False) for stream in _RANK]
    wanted = tuple(shape for shape in shapes if shape is not None)
    items: list[TimelineItem] = []
    if wanted:
        params = _params(customer_id, filters, after, limit + 1)
        items = [_item(row) for row in session.execute(_timeline_statement(wanted), params)]
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


@dataclass(frozen=True)
class _Shape:
    """What one read of the timeline filters on (the values come as parameters), so that
    the statement of each combination is built once. ``after``: how the keyset cursor
    applies (``before`` the cursor's instant, ``upto`` it, ``tie`` on it then by id, ``id``
    by id alone among undated entries)."""

    stream: str
    dated: bool
    channels: bool
    directions: bool
    types: bool
    since: bool
    until: bool
    after: str | None


def _shape(stream: str, filters: _Filters, after: _Cursor | None, dated: bool) -> _Shape | None:
    """The read of one stream (dated or undated entries), or None when it cannot hold any
    entry (transactions are inbound; undated entries before an undated cursor's stream)."""
    if stream == "transaction" and filters.directions and "inbound" not in filters.directions:
        return None
    relation: str | None = None
    if after is not None:
        mine, theirs = _RANK[stream], _RANK[after.stream]
        if dated:
            relation = "before" if mine > theirs else "upto" if mine < theirs else "tie"
        elif mine > theirs:
            return None
        elif mine == theirs:
            relation = "id"
    return _Shape(
        stream,
        dated,
        bool(filters.channels),
        bool(filters.directions) and stream == "interaction",
        bool(filters.types),
        dated and filters.since is not None,
        dated and filters.until is not None,
        relation,
    )


def _params(
    customer_id: int, filters: _Filters, after: _Cursor | None, count: int
) -> dict[str, Any]:
    kinds = [k for k, label in TRANSACTION_KINDS.items() if label in filters.types]
    kinds += [t for t in filters.types if t not in TRANSACTION_KINDS.values()]
    return {
        "customer_id": customer_id,
        "count": count,
        "channels": list(filters.channels),
        "directions": list(filters.directions),
        "types": list(filters.types),
        "kinds": kinds,
        "since": filters.since,
        "until": filters.until,
        "after_at": after.occurred_at if after is not None else None,
        "after_id": after.id if after is not None else None,
    }


# Both streams as the same columns: (stream, id, occurred_at, channel, direction, type,
# subject, outcome, campaign_code, source, payload, amount, currency, store_code, lines,
# status); a transaction's type is its kind.
def _columns(stream: str) -> list[Any]:
    if stream == "interaction":
        t = _INTERACTION
        return [
            literal_column("'interaction'").label("stream"),
            t.c.id,
            t.c.occurred_at,
            t.c.channel,
            t.c.direction,
            t.c.type,
            t.c.subject,
            t.c.outcome,
            t.c.campaign_code,
            _SOURCE.c.name.label("source"),
            t.c.payload,
            sql_cast(null(), _TRANSACTION.c.total_amount.type).label("amount"),
            sql_cast(null(), _TRANSACTION.c.currency.type).label("currency"),
            sql_cast(null(), _TRANSACTION.c.store_code.type).label("store_code"),
            sql_cast(null(), Integer()).label("lines"),
            sql_cast(null(), _TRANSACTION.c.status.type).label("status"),
        ]
    t = _TRANSACTION
    lines = select(func.count()).where(_LINE.c.transaction_id == t.c.id).scalar_subquery()
    return [
        literal_column("'transaction'").label("stream"),
        t.c.id,
        t.c.occurred_at,
        t.c.channel,
        literal_column("'inbound'").label("direction"),
        t.c.kind.label("type"),
        sql_cast(null(), _INTERACTION.c.subject.type).label("subject"),
        sql_cast(null(), _INTERACTION.c.outcome.type).label("outcome"),
        sql_cast(null(), _INTERACTION.c.campaign_code.type).label("campaign_code"),
        _SOURCE.c.name.label("source"),
        sql_cast(null(), _INTERACTION.c.payload.type).label("payload"),
        t.c.total_amount.label("amount"),
        t.c.currency,
        t.c.store_code,
        lines.label("lines"),
        t.c.status,
    ]


def _read(shape: _Shape) -> Select[Any]:
    """One stream's entries after the cursor, in timeline order, at most ``:count``."""
    if shape.stream == "interaction":
        table: Table = _INTERACTION
        query = select(*_columns("interaction")).select_from(
            table.outerjoin(_SOURCE, _SOURCE.c.id == table.c.source_id)
        )
        if shape.directions:
            query = query.where(table.c.direction.in_(bindparam("directions", expanding=True)))
        if shape.types:
            query = query.where(table.c.type.in_(bindparam("types", expanding=True)))
    else:
        table = _TRANSACTION
        query = select(*_columns("transaction")).select_from(
            table.join(_SOURCE, _SOURCE.c.id == table.c.source_id)
        )
        if shape.types:
            query = query.where(table.c.kind.in_(bindparam("kinds", expanding=True)))
    query = query.where(table.c.customer_id == _ID)
    if shape.channels:
        query = query.where(table.c.channel.in_(bindparam("channels", expanding=True)))
    when = table.c.occurred_at
    after_at = bindparam("after_at", type_=when.type)
    after_id = bindparam("after_id", type_=Integer())
    if shape.dated:
        query = query.where(when.is_not(None))
        if shape.since:
            query = query.where(when >= bindparam("since", type_=when.type))
        if shape.until:
            query = query.where(when <= bindparam("until", type_=when.type))
        if shape.after == "before":
            query = query.where(when < after_at)
        elif shape.after == "upto":
            query = query.where(when <= after_at)
        elif shape.after == "tie":
            query = query.where(when <= after_at, (when < after_at) | (table.c.id < after_id))
        query = query.order_by(when.desc(), table.c.id.desc())
    else:
        query = query.where(when.is_(None))
        if shape.after == "id":
            query = query.where(table.c.id < after_id)
        query = query.order_by(table.c.id.desc())
    return query.limit(bindparam("count", type_=Integer()))


@lru_cache(maxsize=512)
def _timeline_statement(shapes: tuple[_Shape, ...]) -> Select[Any]:
    """The reads of ``shapes`` as one statement (each read wrapped as a subquery: SQLite
    takes no LIMIT on the members of a UNION)."""
    reads = [select(*_read(shape).subquery().c) for shape in shapes]
    if len(reads) == 1:
        return reads[0]
    return cast(Select[Any], union_all(*reads))


def _item(row: Any) -> TimelineItem:
    if row.stream == "interaction":
        return interaction_item(row, row.source)
    kind = TRANSACTION_KINDS.get(row.type, row.type)
    return TimelineItem(
        kind=kind,
        id=row.id,
        occurred_at=row.occurred_at,
        channel=row.channel,
        direction="inbound",
        type=kind,
        source=row.source,
        amount=row.amount,
        currency=row.currency,
        store_code=row.store_code,
        lines=int(row.lines or 0),
        status=row.status,
    )


def interaction_item(row: Interaction | Any, source: str | None = None) -> TimelineItem:
    """An interaction (a model or a row with its columns) as a timeline entry."""
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
    row = session.execute(_STATUS, {"customer_id": customer_id}).one_or_none()
    if row is None:
        return None
    if row.status == "merged":
        return row.status, survivor_of(session, customer_id=customer_id)
    return row.status, None


def brand_id_of(session: Session, *, code: str) -> int | None:
    """The id of the brand with this code, or None."""
    return session.scalar(select(Brand.id).where(Brand.code == code.strip()))
