"""Campaigns, their messages, who each one targeted (and why the others were left out), and
the outbox: one row per message to send, moved through its states by the dispatchers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, partial, utcnow

CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "done", "cancelled")
# in_doubt: a dispatcher stopped between handing the message to the provider and recording
# the answer; it is not sent again automatically (that could send it twice): see dispatch.
OUTBOX_STATES = (
    "planned", "sending", "sent", "delivered", "bounced", "failed", "in_doubt", "cancelled"
)  # fmt: skip


class Campaign(Base):
    """A campaign: who (a saved segment), on which channels in which fallback order, what
    (messages per channel and language), when, at what priority and cost, with which share
    held out as a control group and which attribution window."""

    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    objective: Mapped[str | None] = mapped_column(String(500))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id"))
    channels: Mapped[list[str]] = mapped_column(Json, default=list)  # fallback order
    purpose: Mapped[str] = mapped_column(String(40), default="marketing")
    # planned: its segment is planned at once; triggered: always running, each message sent
    # when a journey asks the dispatch gate (service.admit)
    kind: Mapped[str] = mapped_column(String(20), default="planned", server_default="planned")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    priority: Mapped[int] = mapped_column(Integer, default=50)
    expected_value: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))
    fixed_cost: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    unit_costs: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)  # channel -> cost
    control_share: Mapped[float] = mapped_column(Float, default=0.1)
    control_salt: Mapped[str] = mapped_column(String(40))
    # A/B variants: variant -> share of the target group ({}: equal shares between the
    # variants the messages name); see rules.variant_shares
    variant_shares: Mapped[dict[str, float]] = mapped_column(
        Json, default=dict, server_default="{}"
    )
    attribution_days: Mapped[int] = mapped_column(Integer, default=30)
    # channel -> days, overriding attribution_days for that channel (reporting.measure)
    attribution_windows: Mapped[dict[str, Any]] = mapped_column(
        Json, default=dict, server_default="{}"
    )
    # days from a letter's drop (its print run) to the customer's letterbox: its exposure
    postal_delay_days: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    # the gross margin on a euro of sales, for the ROI (None: only the return on spend)
    margin_rate: Mapped[float | None] = mapped_column(Float)
    default_language: Mapped[str] = mapped_column(String(8), default="fr")
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    planned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class CampaignMessage(Base):
    """The message of a campaign on one channel in one language, in one of its A/B variants
    ("A" when it has one; Jinja2 templates, rendered in a sandbox for each recipient)."""

    __tablename__ = "campaign_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"))
    channel: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    variant: Mapped[str] = mapped_column(String(8), default="A", server_default="A")

    __table_args__ = (UniqueConstraint("campaign_id", "channel", "language", "variant"),)


class CampaignTarget(Base):
    """One customer of a campaign's planned audience: ``group`` target (a message planned),
    control (held out) or excluded, with the reason code and its detail."""

    __tablename__ = "campaign_target"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys: a plan writes these rows by the million, and a key's check per row
    # (a lookup and a row lock on the campaign) cost a fifth of the plan. The plan locks its
    # campaigns instead (service.plan) and campaigns are never deleted; outbox rows alike.
    campaign_id: Mapped[int] = mapped_column(BigId)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    group: Mapped[str] = mapped_column(String(10))  # target, control, excluded
    channel: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(200))
    # when the message would go (for the control group: would have gone)
    send_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    planned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # the A/B variant of the message a target gets; None for control and excluded rows (and
    # for targets planned before variants existed: read them as "A")
    variant: Mapped[str | None] = mapped_column(String(8))

    __table_args__ = (
        UniqueConstraint("campaign_id", "customer_id"),
        Index("ix_campaign_target_funnel", "campaign_id", "group", "reason"),
        Index("ix_campaign_target_customer", "customer_id"),
    )


class Outbox(Base):
    """A message to send: written when a campaign is planned, in the same transaction as its
    target row; a dispatcher claims rows in ``planned`` state whose ``send_after`` has come,
    marks them ``sending``, sends, then ``sent`` / ``failed``; delivery reports, bounces and
    outcomes move them on. ``key`` is unique: planning twice cannot make a second message."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(BigId)  # no foreign key: see above
    customer_id: Mapped[int] = mapped_column(BigInteger)
    brand_id: Mapped[int | None] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(40), default="marketing")
    language: Mapped[str] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(320))  # email, E.164 phone, or URL
    # what a journey's task or webhook carries: the journey, the step, the action's
    # properties (queue, priority...); never personal data
    payload: Mapped[dict[str, Any] | None] = mapped_column(Json)
    state: Mapped[str] = mapped_column(String(20), default="planned")
    send_after: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(String(300))
    planned_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # the first open, click, unsubscribe and bounce of the message (the timeline has each one)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    bounced_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # the first open and click made by a person (reporting.hygiene: machine opens and
    # suspected bot clicks set only opened_at / clicked_at); a human click is a human open
    human_opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    human_clicked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        # written when a message leaves: planned rows (most of a plan) stay out of it
        Index("ix_outbox_provider", "provider_id", **partial("provider_id IS NOT NULL")),
        Index("ix_outbox_due", "state", "channel", "send_after"),
        # the marketing pressure a customer is under: their contacts by time
        Index("ix_outbox_customer_time", "customer_id", "send_after"),
        Index("ix_outbox_campaign_state", "campaign_id", "state"),
    )


class CampaignAttribution(Base):
    """A purchase attributed to a campaign: made by a contacted customer within the campaign's
    attribution window after the message went out, clicked or not. A purchase is attributed
    to one campaign at most (the latest contact before it whose window covers it)."""

    __tablename__ = "campaign_attribution"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id"))
    customer_id: Mapped[int] = mapped_column(BigInteger)
    outbox_id: Mapped[int] = mapped_column(BigInteger)
    transaction_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    purchased_at: Mapped[datetime] = mapped_column(UtcDateTime)
    contacted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    clicked: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_campaign_attribution_campaign", "campaign_id"),)
