"""Saved segments, who is in them, and how their size moved."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, utcnow


class Segment(Base):
    """A saved segment: its definition (docs/segments.md) and its last known size."""

    __tablename__ = "segment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # What other definitions write to mean "member of this segment" ({"segment": code}).
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    last_size: Mapped[int | None] = mapped_column(Integer)
    last_computed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SegmentMembership(Base):
    """One stay of a customer in a segment: entered at one snapshot, left at a later one
    (``left_at`` NULL while still a member)."""

    __tablename__ = "segment_membership"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segment.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"))
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    left_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_segment_membership_current", "segment_id", "left_at", "customer_id"),
        Index("ix_segment_membership_customer", "customer_id"),
    )


class SegmentSnapshot(Base):
    """One computation of a saved segment: its size, who entered and left since the previous
    one, how long it took and which path the compiler chose (features or raw history)."""

    __tablename__ = "segment_snapshot"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segment.id"), index=True)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    size: Mapped[int] = mapped_column(Integer)
    entered: Mapped[int] = mapped_column(Integer)
    left: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    path: Mapped[str | None] = mapped_column(String(40))
