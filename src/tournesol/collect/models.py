"""Events collected through the Segment-compatible endpoints, and what the collector learned
about who sends them (which anonymous visitor or app user is which customer)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, UtcDateTime, utcnow


class CollectedEvent(Base):
    """One event as received, kept whole (``payload``), and filed in the timeline.

    ``status``: ``received`` (stored raw: filing it failed; ``service.reprocess`` files it),
    ``unresolved`` (filed as an interaction without a customer: nobody known sent it yet),
    ``resolved`` (filed on ``customer_id``'s timeline). A resend of the same ``message_id`` by
    the same source is accepted and not stored again."""

    __tablename__ = "collected_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    message_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(10))  # identify, track, page, screen, group, alias
    event: Mapped[str | None] = mapped_column(String(200))  # track's event name, page's name
    user_id: Mapped[str | None] = mapped_column(String(300))
    anonymous_id: Mapped[str | None] = mapped_column(String(300))
    # Contact points the event carried, normalized as identifiers are (resolution keys).
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Kept for lineage and reprocessing, never queried inside: plain JSON (validated text)
    # is cheaper to write than JSONB. Holds context.ip and context.userAgent (personal data).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="received")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    # Deferred: a batch's events are stored before the interactions made of them. Unique
    # (one event per interaction), and so indexed: without it, each interaction inserted
    # while the check is pending makes SQLite scan this table, and each one deleted makes
    # PostgreSQL do so.
    interaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("interaction.id", deferrable=True, initially="DEFERRED"), unique=True
    )

    __table_args__ = (
        UniqueConstraint("source_id", "message_id"),
        Index("ix_collected_event_anonymous", "source_id", "anonymous_id"),
        Index("ix_collected_event_user", "source_id", "user_id"),
        Index(
            "ix_collected_event_waiting",
            "status",
            postgresql_where=text("status <> 'resolved'"),
            sqlite_where=text("status <> 'resolved'"),
        ),
    )


class VisitorLink(Base):
    """What an identifier of one source's visitors stands for: ``kind`` ``anonymous`` (a
    Segment ``anonymousId``, one browser or device) or ``user`` (a ``userId`` the customer
    base does not know as an account id), learned from an event that carried it together with
    something that identified the customer (an account id, an e-mail, a phone). The first
    link wins; the event that taught it is ``event_id``."""

    __tablename__ = "visitor_link"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("collected_event.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("source_id", "kind", "value"),)
