"""What the customer API takes and answers (Pydantic): search hits, the 360 view, timeline
pages, and the bodies of the writes (interactions, consents, preferences). Responses are built
from the services' dataclasses (``from_attributes``); amounts are decimal strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- errors (documentation of the shape web.app.json_error writes) --------------------------


class ErrorBody(BaseModel):
    status: int
    message: str = Field(examples=["there is no customer 12"])
    survivor_id: int | None = Field(
        None, description="for a merged customer: the customer it now lives in"
    )
    details: list[dict[str, str]] | None = Field(
        None, description="validation errors: one {field, message} per faulty field"
    )


class ErrorOut(BaseModel):
    error: ErrorBody


# --- search ---------------------------------------------------------------------------------


class SearchHitOut(_Out):
    customer_id: int
    civility: str | None
    first_name: str | None
    last_name: str | None
    birth_date: date | None
    email: str | None
    phone_mobile: str | None
    postal_code: str | None
    city: str | None
    customer_type: str
    score: float = Field(description="0-100: how well the customer matches")
    matched_on: str = Field(
        description="what matched: an identifier kind (email, phone_mobile, loyalty_card...), "
        "name, name+postal_code or postal_code",
        examples=["name"],
    )


class SearchOut(BaseModel):
    query_kind: str = Field(
        description="how `q` was read: email, phone, card, postal_code, name or empty"
    )
    count: int
    items: list[SearchHitOut]


# --- the 360 view ---------------------------------------------------------------------------


class GoldenOut(_Out):
    """The golden record: the best value of each field across the customer's records."""

    civility: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    maiden_name: str | None = None
    birth_date: date | None = None
    gender: str | None = None
    email: str | None = None
    phone_mobile: str | None = None
    phone_fixed: str | None = None
    address_line1: str | None = Field(None, description="AFNOR line 1: identity")
    address_line2: str | None = Field(None, description="AFNOR line 2: inside the building")
    address_line3: str | None = Field(None, description="AFNOR line 3: building")
    address_line4: str | None = Field(None, description="AFNOR line 4: number and street")
    address_line5: str | None = Field(None, description="AFNOR line 5: special delivery")
    address_line6: str | None = Field(None, description="AFNOR line 6: postal code and town")
    postal_code: str | None = None
    city: str | None = None
    insee_code: str | None = None
    country: str | None = None
    language: str | None = None
    customer_type: str | None = None
    quality_score: int | None = Field(None, description="0-100, see docs/quality.md")


class FieldSourceOut(_Out):
    record_id: int | None = Field(description="the source record the value was taken from")
    source: str | None = Field(description="that record's source")
    rule: str | None = Field(
        description="the survivorship rule that chose it, or `single record` when the "
        "customer has only one record"
    )


class IdentifierOut(_Out):
    kind: str
    value: str
    source: str | None
    source_record_id: int | None


class RecordOut(_Out):
    id: int
    source: str
    source_key: str
    entity: str
    first_seen: datetime
    last_seen: datetime
    quality_flags: list[str]
    quality_score: int | None


class OrganisationOut(_Out):
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


class ConsentOut(_Out):
    id: int
    channel: str
    purpose: str
    brand_id: int | None
    brand: str | None
    status: str = Field(description="granted, denied or withdrawn")
    collected_at: datetime
    source: str | None = Field(description="the source it was imported from, if imported")
    proof: dict[str, Any] = Field(
        description="imported: batch, file, line, column, value; entered: source, "
        "text_version, timestamp, actor"
    )
    recorded_at: datetime


class PreferenceOut(_Out):
    channel: str
    preferred: bool
    days: str | None = Field(description="e.g. mon,tue,fri; null: any day")
    hours: str | None = Field(description="e.g. 09:00-12:00,14:00-18:00; null: any time")
    language: str | None
    max_per_week: int | None
    updated_at: datetime


class TransactionSummaryOut(_Out):
    count: int = Field(description="purchases: tickets and orders")
    total_amount: Decimal
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    returns: int
    returned_amount: Decimal


class MergeOut(_Out):
    event_id: int
    role: str = Field(description="survivor (absorbed the other) or absorbed")
    survivor_id: int
    absorbed_id: int
    merged_at: datetime
    rule: str
    score: float | None
    reason: str
    actor: str
    unmerged_at: datetime | None
    unmerged_by: str | None
    can_undo: bool = Field(description="whether `tournesol identity unmerge` can undo it now")


class SegmentOut(_Out):
    code: str
    name: str
    entered_at: datetime = Field(description="the refresh at which the customer entered")


class RfmOut(_Out):
    scope: str = Field(description="all (every brand) or a brand code")
    segment: str = Field(description="champions, loyal, ... lost (docs/scoring.md)")
    r_score: int = Field(description="1-5, 5 = most recent")
    f_score: int = Field(description="1-5, 5 = most frequent")
    m_score: int = Field(description="1-5, 5 = highest spend")
    recency_days: int
    frequency: int
    monetary: Decimal
    computed_at: datetime


class ScoreOut(_Out):
    model: str = Field(description="purchase_90d or churn (docs/scoring.md)")
    version: str
    value: float = Field(description="probability, 0-1")
    computed_at: datetime


class CustomerOut(_Out):
    """The 360 view of one customer."""

    customer_id: int
    status: str
    merged_into_id: int | None
    survivor_id: int | None
    customer_type: str
    brand: str | None
    created_at: datetime
    updated_at: datetime
    golden: GoldenOut
    provenance: dict[str, FieldSourceOut] = Field(
        description="per golden field: where its value came from"
    )
    identifiers: list[IdentifierOut]
    records: list[RecordOut]
    organisations: list[OrganisationOut]
    consents: list[ConsentOut] = Field(
        description="the state that holds now per channel, purpose and brand"
    )
    consent_history: list[ConsentOut] = Field(description="every consent row, newest first")
    preferences: list[PreferenceOut]
    transactions: TransactionSummaryOut
    merges: list[MergeOut]
    segments: list[SegmentOut] = Field(
        description="saved segments the customer is in, as of their last refresh"
    )
    rfm: list[RfmOut] = Field(description="RFM per scope, all brands first")
    scores: list[ScoreOut] = Field(description="current predictive scores, one per model")


# --- timeline -------------------------------------------------------------------------------


class TimelineItemOut(_Out):
    kind: str = Field(description="interaction, purchase, order or return")
    id: int = Field(description="the interaction's or the transaction's id")
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
    lines: int | None = Field(None, description="transactions: number of lines")
    status: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class TimelineOut(BaseModel):
    items: list[TimelineItemOut]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last page"
    )


class FacetsOut(_Out):
    channels: list[str]
    directions: list[str]
    types: list[str]


# --- writes ---------------------------------------------------------------------------------


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        examples=["phone"],
        description="email, sms, phone, postal, web, store, push, chat, social, other",
    )
    direction: str = Field(examples=["inbound"], description="inbound or outbound")
    type: str = Field(examples=["call"], description="lower-case word: call, complaint...")
    occurred_at: AwareDatetime | None = Field(None, description="default: now")
    subject: str | None = Field(None, max_length=300)
    outcome: str | None = Field(None, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


class ProofIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        min_length=1, examples=["call center"], description="where it was collected"
    )
    text_version: str = Field(
        min_length=1, examples=["cgv-2024-03"], description="the wording the customer saw"
    )
    collected_at: AwareDatetime = Field(description="when the customer said so")


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(examples=["email"], description="email, sms, phone, postal, push, any")
    purpose: str = Field("marketing", examples=["marketing"])
    brand: str | None = Field(None, description="a brand code; null: every brand")
    status: str = Field(examples=["granted"], description="granted, denied or withdrawn")
    proof: ProofIn


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferred: bool = Field(False, description="the customer's preferred channel")
    days: str | None = Field(None, examples=["mon,tue,wed,thu,fri"])
    hours: str | None = Field(None, examples=["09:00-12:00,14:00-18:00"])
    language: str | None = Field(None, examples=["fr"])
    max_per_week: int | None = Field(None, ge=0, le=50)
