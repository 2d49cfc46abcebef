"""The tables of measurement: the global holdout's versions and every customer's assignment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, UtcDateTime


class HoldoutGroup(Base):
    """One version of the global control group: the customers it holds out receive no
    marketing (transactional messages are exempt). Regenerated only by explicit command,
    with a new salt; the previous version is kept, ended (``ended_at``), with its
    assignments, for the reports of its period."""

    __tablename__ = "holdout_group"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    share: Mapped[float] = mapped_column(Float)  # 0.01 to 0.15
    salt: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class HoldoutAssignment(Base):
    """A customer's arm in one version of the global holdout, with the randomization unit
    it was drawn for (a household, a shared e-mail address, or the customer alone) and the
    date it was drawn. Stored once: a customer keeps their arm for the version's life even
    if their address changes."""

    __tablename__ = "holdout_assignment"

    group_id: Mapped[int] = mapped_column(ForeignKey("holdout_group.id"), primary_key=True)
    # no foreign key, as the features: written in bulk for the whole base
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    unit: Mapped[str] = mapped_column(String(80))
    held_out: Mapped[bool] = mapped_column(Boolean)
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_holdout_assignment_customer", "customer_id"),)
