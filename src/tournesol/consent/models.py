"""Consents with their proof, and contact preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, utcnow


class Consent(Base):
    """A customer's consent (granted/denied/withdrawn) for a channel, a purpose and a brand.
    Rows are never updated in place: a change is a new row; the latest by collected_at wins."""

    __tablename__ = "consent"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    channel: Mapped[str] = mapped_column(String(20))  # email, sms, phone, postal, push, any
    purpose: Mapped[str] = mapped_column(String(40), default="marketing")
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    status: Mapped[str] = mapped_column(String(20))  # granted, denied, withdrawn
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    source_record_id: Mapped[int | None] = mapped_column(ForeignKey("source_record.id"))
    proof: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_consent_customer_channel", "customer_id", "channel", "purpose"),)


class ConsentState(Base):
    """The consent that holds now for one customer, channel, purpose and brand: a copy of
    the latest ``consent`` row of that key (by collected_at, then id), kept narrow so that
    segments and campaign planning read a million customers' consents without the history
    and its proofs. Derived data: ``consent.service.refresh_state`` rewrites a customer's rows
    whenever their consents change (a new consent, an import, a merge or an unmerge). No
    foreign keys: the rewrite deletes and inserts in bulk, and ``consent_id`` names the row
    it copies."""

    __tablename__ = "consent_state"

    consent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(40))
    brand_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    collected_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The proof names how the consent can be shown: a manual entry with its wording, or an
    # import whose source gave a reference (see consent.rules.PROVABLE).
    provable: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_consent_state_customer", "customer_id"),
        Index("ix_consent_state_lookup", "channel", "purpose", "status", "brand_id", "customer_id"),
    )


class Preference(Base):
    """When and how a customer likes to be contacted on one channel ('any' for all)."""

    __tablename__ = "preference"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    channel: Mapped[str] = mapped_column(String(20), default="any")
    preferred: Mapped[bool] = mapped_column(default=False)
    days: Mapped[str | None] = mapped_column(String(40))  # e.g. "mon,tue,wed,thu,fri"
    hours: Mapped[str | None] = mapped_column(String(40))  # e.g. "09:00-12:00,14:00-18:00"
    language: Mapped[str | None] = mapped_column(String(8))
    max_per_week: Mapped[int | None] = mapped_column(Integer)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("customer_id", "channel"),)


SUPPRESSION_REASONS = ("unsubscribe", "hard_bounce", "complaint", "erased", "opposition")


class Suppression(Base):
    """A contact point that must receive no marketing on a channel, whoever it belongs to
    now: an unsubscribe (of one brand, or of all with ``brand_id`` NULL), a hard bounce, a spam
    complaint, an erased person, an entry of an opposition list (Bloctel for telephone).
    Kept as the SHA-256 of the normalized value (lower-case e-mail, E.164 phone) so that the
    list of an erased person's addresses holds no address in clear
    (``consent.rules.contact_hash``)."""

    __tablename__ = "suppression"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(20))  # email, sms, phone, postal
    value_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(20))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    source: Mapped[str | None] = mapped_column(String(200))  # e.g. "bloctel 2026-11", outbox 42
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_suppression_value", "channel", "value_hash"),)
