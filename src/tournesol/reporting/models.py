"""The tables of measurement: the global holdout's versions and every customer's assignment,
and each campaign's measured cells (aggregates refreshed by ``reporting.measure.refresh``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime


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


class CampaignMeasure(Base):
    """When a campaign's cells were last computed (``as_of``: the "now" they were computed
    for) and its campaign-wide attributed and allocated figures (distinct buyers do not add
    up across cells)."""

    __tablename__ = "campaign_measure"

    campaign_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    as_of: Mapped[datetime] = mapped_column(UtcDateTime)
    refreshed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # the first reference time, when the last window closes, the campaign's cost then
    first_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    # the message funnel: audience, sent, delivered, opened and clicked by a person
    funnel: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    exposed: Mapped[int] = mapped_column(BigInteger, default=0)
    attributed_purchasers: Mapped[int] = mapped_column(BigInteger, default=0)
    attributed_purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    attributed_revenue: Mapped[float] = mapped_column(Float, default=0.0)
    clicked_purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_purchasers: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_revenue: Mapped[float] = mapped_column(Float, default=0.0)


class CampaignCell(Base):
    """One cell of a campaign's measurement: its customers of one arm, assigned channel,
    variant and week (``""`` when none), with the sums the statistics read (intention-to-treat,
    in each customer's window) and the attributed and allocated purchases of the cell's
    messages. ``store`` is ``""`` for these rows; rows with a store carry only the revenue
    made in that store (for the ad-hoc report's store dimension)."""

    __tablename__ = "campaign_cell"

    campaign_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    arm: Mapped[str] = mapped_column(String(10), primary_key=True)
    channel: Mapped[str] = mapped_column(String(20), primary_key=True)
    variant: Mapped[str] = mapped_column(String(8), primary_key=True)
    week: Mapped[str] = mapped_column(String(10), primary_key=True)
    store: Mapped[str] = mapped_column(String(40), primary_key=True)
    assigned: Mapped[int] = mapped_column(BigInteger, default=0)
    converted: Mapped[int] = mapped_column(BigInteger, default=0)
    purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue_sum: Mapped[float] = mapped_column(Float, default=0.0)
    revenue_sumsq: Mapped[float] = mapped_column(Float, default=0.0)
    pre_sum: Mapped[float] = mapped_column(Float, default=0.0)
    pre_sumsq: Mapped[float] = mapped_column(Float, default=0.0)
    cross_sum: Mapped[float] = mapped_column(Float, default=0.0)
    attributed_purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    attributed_revenue: Mapped[float] = mapped_column(Float, default=0.0)
    allocated_purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    allocated_revenue: Mapped[float] = mapped_column(Float, default=0.0)
