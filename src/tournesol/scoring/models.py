"""Computed customer data: features (one row per customer), RFM per brand, predictive scores and
the models that produced them. Everything here is derived from the history and rebuilt by the
``tournesol features|rfm|scores`` commands; none of it is a source of truth."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, utcnow

AMOUNT = Numeric(14, 2)


class CustomerFeature(Base):
    """Aggregates of one customer's transactions and interactions as of ``computed_at``: what
    segments read instead of scanning the raw history. Purchases are transactions whose kind is
    not ``return``; amounts are their ``total_amount``; windows are the N days before
    ``computed_at``."""

    __tablename__ = "customer_feature"

    # Derived rows rewritten in bulk: no foreign key (its check, a row lock on the customer per
    # row written, cost more than the ranking itself); the refresh writes existing customers.
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    purchase_count: Mapped[int] = mapped_column(Integer, default=0)
    purchase_amount: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0))
    first_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_purchase_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    purchase_count_30: Mapped[int] = mapped_column(Integer, default=0)
    purchase_amount_30: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0))
    purchase_count_90: Mapped[int] = mapped_column(Integer, default=0)
    purchase_amount_90: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0))
    purchase_count_180: Mapped[int] = mapped_column(Integer, default=0)
    purchase_amount_180: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0))
    purchase_count_365: Mapped[int] = mapped_column(Integer, default=0)
    purchase_amount_365: Mapped[Decimal] = mapped_column(AMOUNT, default=Decimal(0))
    store_purchase_count_365: Mapped[int] = mapped_column(Integer, default=0)
    web_purchase_count_365: Mapped[int] = mapped_column(Integer, default=0)
    return_count_365: Mapped[int] = mapped_column(Integer, default=0)
    interaction_count_90: Mapped[int] = mapped_column(Integer, default=0)
    interaction_count_365: Mapped[int] = mapped_column(Integer, default=0)
    inbound_count_365: Mapped[int] = mapped_column(Integer, default=0)
    last_interaction_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_inbound_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_customer_feature_last_purchase", "last_purchase_at"),
        Index("ix_customer_feature_count_365", "purchase_count_365"),
        # segments read max(computed_at) before each count (how fresh the features are)
        Index("ix_customer_feature_computed_at", "computed_at"),
    )


class CustomerRfm(Base):
    """Recency / frequency / monetary quintile scores (1-5, 5 best) of a customer, over all
    brands (``scope`` = ``all``) or one brand (``scope`` = the brand's code), and the named
    segment they map to (``scoring.rules``)."""

    __tablename__ = "customer_rfm"

    # no foreign key: see CustomerFeature.customer_id
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    scope: Mapped[str] = mapped_column(String(40), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    recency_days: Mapped[int] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary: Mapped[Decimal] = mapped_column(AMOUNT)
    r_score: Mapped[int] = mapped_column(SmallInteger)
    f_score: Mapped[int] = mapped_column(SmallInteger)
    m_score: Mapped[int] = mapped_column(SmallInteger)
    segment: Mapped[str] = mapped_column(String(30))

    __table_args__ = (Index("ix_customer_rfm_scope_segment", "scope", "segment"),)


class ScoreModel(Base):
    """A trained predictive model: what it predicts, how it was validated, and the fitted
    estimator itself (``artifact``, joblib bytes) so that ``scores apply`` can run anywhere."""

    __tablename__ = "score_model"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))  # purchase_90d, churn
    version: Mapped[str] = mapped_column(String(40))
    trained_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    algorithm: Mapped[str] = mapped_column(String(100))
    features: Mapped[list[str]] = mapped_column(Json, default=list)
    # AUC of the model and of the recency-only baseline on the holdout, calibration bins,
    # the train / validation cut-off dates and row counts.
    metrics: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    artifact: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (UniqueConstraint("name", "version"),)


class CustomerScore(Base):
    """A customer's current score for one model (0-1), and the model version that gave it."""

    __tablename__ = "customer_score"

    # no foreign key: see CustomerFeature.customer_id
    customer_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_customer_score_model_value", "model", "value"),)
