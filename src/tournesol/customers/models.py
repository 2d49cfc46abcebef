"""Golden customer records, their identifiers, organisations (B2B), brands and zones."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, utcnow


class Brand(Base):
    __tablename__ = "brand"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Zone(Base):
    __tablename__ = "zone"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2), default="FR")


class Organisation(Base):
    """A company (B2B), identified by SIRET (establishment) or SIREN (legal unit)."""

    __tablename__ = "organisation"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    siren: Mapped[str | None] = mapped_column(String(9), index=True)
    siret: Mapped[str | None] = mapped_column(String(14), unique=True)
    name: Mapped[str | None] = mapped_column(String(300))
    naf_code: Mapped[str | None] = mapped_column(String(10))
    headcount_band: Mapped[str | None] = mapped_column(String(20))
    org_class: Mapped[str | None] = mapped_column(String(40))  # TPE, PME, ETI, GE, or own typology
    postal_code: Mapped[str | None] = mapped_column(String(10))
    city: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Customer(Base):
    """The golden record of one person (customer or prospect)."""

    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_type: Mapped[str] = mapped_column(String(20), default="customer")  # or prospect
    status: Mapped[str] = mapped_column(String(20), default="active")  # active, merged, erased
    # When merged: the customer it now lives in (merge_event has the details).
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id"), index=True)
    civility: Mapped[str | None] = mapped_column(String(20))
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    maiden_name: Mapped[str | None] = mapped_column(String(100))
    birth_date: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(10))
    email: Mapped[str | None] = mapped_column(String(320))
    phone_mobile: Mapped[str | None] = mapped_column(String(40))
    phone_fixed: Mapped[str | None] = mapped_column(String(40))
    # AFNOR NF Z10-011 lines: 1 identity, 2 inside the building, 3 building, 4 street,
    # 5 special delivery (BP, lieu-dit), 6 postal code + routing label (+ CEDEX).
    address_line1: Mapped[str | None] = mapped_column(String(100))
    address_line2: Mapped[str | None] = mapped_column(String(100))
    address_line3: Mapped[str | None] = mapped_column(String(100))
    address_line4: Mapped[str | None] = mapped_column(String(100))
    address_line5: Mapped[str | None] = mapped_column(String(100))
    address_line6: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(10), index=True)
    city: Mapped[str | None] = mapped_column(String(100))
    insee_code: Mapped[str | None] = mapped_column(String(5))  # the commune's official code
    country: Mapped[str | None] = mapped_column(String(2))
    # 0-100: how complete and valid the contact data is (docs/quality.md)
    quality_score: Mapped[int | None] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(8))
    # Per golden column: {"record": source record id, "source": name, "rule": survivorship rule}
    # (docs/identity.md); NULL while the customer is the projection of its only record.
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zone.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_customer_last_first", "last_name", "first_name"),
        # an SMS reply (STOP) finds its customers by their mobile
        Index("ix_customer_phone_mobile", "phone_mobile"),
    )


class Identifier(Base):
    """A normalized identifier (email, phone, loyalty card, account id, SIRET...) of a customer."""

    __tablename__ = "identifier"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(320))
    source_record_id: Mapped[int | None] = mapped_column(ForeignKey("source_record.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (Index("ix_identifier_kind_value", "kind", "value"),)


class OrganisationContact(Base):
    """A person (customer row) working for an organisation."""

    __tablename__ = "organisation_contact"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    job_title: Mapped[str | None] = mapped_column(String(200))
    source_record_id: Mapped[int | None] = mapped_column(ForeignKey("source_record.id"))

    __table_args__ = (UniqueConstraint("organisation_id", "customer_id"),)


class CustomerNameKey(Base):
    """Search keys of a customer's golden names (``customers.rules.name_keys``): the plain
    upper-case unaccented name (prefix search as one types) and its phonetic code (DUPOND
    finds DUPONT). Rewritten whenever the golden record is."""

    __tablename__ = "customer_name_key"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)

    # (key, customer_id): a search reads the customers of a key from the index alone
    __table_args__ = (Index("ix_customer_name_key_key_customer", "key", "customer_id"),)


class CustomerTag(Base):
    """A tag on a customer (``winback_candidate``), set by a journey's ``update`` step or by
    staff; ``source`` says who set it (``journey:welcome``). One row per customer and tag:
    setting it again refreshes ``set_at``. A merge moves the absorbed person's tags to the
    survivor (but those the survivor already has)."""

    __tablename__ = "customer_tag"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # no foreign key, as the outbox and the features: rows written in bulk by the engine
    customer_id: Mapped[int] = mapped_column(BigId)
    tag: Mapped[str] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("customer_id", "tag"),
        Index("ix_customer_tag_tag", "tag"),
    )


class CustomerAttribute(Base):
    """A named value kept on a customer outside the golden record (``preferred_store``,
    ``welcome_variant``), set by a journey's ``update`` step: the golden record's columns
    belong to survivorship and are never written this way. One row per customer and name."""

    __tablename__ = "customer_attribute"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigId)
    name: Mapped[str] = mapped_column(String(60))
    value: Mapped[Any] = mapped_column(Json)
    source: Mapped[str] = mapped_column(String(100))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("customer_id", "name"),)
