"""The single history of each customer: interactions on every channel, transactions, products."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, partial, utcnow


class Product(Base):
    __tablename__ = "product"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    sku: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str | None] = mapped_column(String(300))
    category: Mapped[str | None] = mapped_column(String(100), index=True)
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    source_record_id: Mapped[int | None] = mapped_column(ForeignKey("source_record.id"))


class Transaction(Base):
    """A ticket (shop) or an order (web). ``customer_ref_*`` keep the owner's reference as given,
    so a transaction imported before its customer is linked when the customer arrives."""

    __tablename__ = "transaction"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    external_id: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    customer_ref_source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    customer_ref_key: Mapped[str | None] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(20), default="ticket")  # ticket, order, return
    channel: Mapped[str | None] = mapped_column(String(20))  # store, web, phone
    store_code: Mapped[str | None] = mapped_column(String(40))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    occurred_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    total_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    status: Mapped[str | None] = mapped_column(String(20))
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("source_id", "external_id"),
        # covering: features, RFM and segment aggregates read a customer's purchases from the
        # index alone (on SQLite a sequential read instead of one table lookup per row)
        Index(
            "ix_transaction_customer_time",
            "customer_id",
            "occurred_at",
            "kind",
            "channel",
            "total_amount",
            "brand_id",
        ),
        # rows that name their customer by a source key not imported yet: few
        Index(
            "ix_transaction_unlinked",
            "customer_ref_source_id",
            "customer_ref_key",
            **partial("customer_ref_source_id IS NOT NULL"),
        ),
    )


class TransactionLine(Base):
    __tablename__ = "transaction_line"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("transaction.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str | None] = mapped_column(String(100))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    label: Mapped[str | None] = mapped_column(String(300))
    category: Mapped[str | None] = mapped_column(String(100))
    quantity: Mapped[Decimal | None] = mapped_column(Numeric(12, 3))
    unit_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    source_record_id: Mapped[int | None] = mapped_column(ForeignKey("source_record.id"))

    __table_args__ = (UniqueConstraint("transaction_id", "line_no"),)


# The direction of a timeline row that records a marketing decision (a message planned, a
# customer held out in a control group or excluded with the reason), not a contact: counts of
# interactions, features and segments leave these rows out unless a type names them.
INTERNAL: Final = "internal"


class Interaction(Base):
    """One contact or marketing action, inbound or outbound, on any channel."""

    __tablename__ = "interaction"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"))
    customer_ref_source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    customer_ref_key: Mapped[str | None] = mapped_column(String(300))
    occurred_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    channel: Mapped[str] = mapped_column(String(20))  # email, sms, phone, postal, web, store...
    direction: Mapped[str] = mapped_column(String(10))  # inbound, outbound
    type: Mapped[str] = mapped_column(String(60))  # call, complaint, page_view, email_sent...
    subject: Mapped[str | None] = mapped_column(String(300))
    outcome: Mapped[str | None] = mapped_column(String(100))
    campaign_code: Mapped[str | None] = mapped_column(String(100))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("source.id"))
    source_record_id: Mapped[int | None] = mapped_column(ForeignKey("source_record.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_interaction_customer_time", "customer_id", "occurred_at", "direction"),
        # unique where set: the rows without a source record (campaign actions, collected
        # events: most of them) stay out of this index
        Index(
            "uq_interaction_source_record_id",
            "source_record_id",
            unique=True,
            **partial("source_record_id IS NOT NULL"),
        ),
        Index(
            "ix_interaction_unlinked",
            "customer_ref_source_id",
            "customer_ref_key",
            **partial("customer_ref_source_id IS NOT NULL"),
        ),
    )
