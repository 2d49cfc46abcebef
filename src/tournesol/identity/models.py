"""Identity resolution's own tables: match profiles, trained models, runs, merges, reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, UtcDateTime, utcnow


class MatchProfile(Base):
    """The comparable features of one customer source record, as identity resolution reads
    them: name keys, birth date, contact points, address. Derived from the record's normalized
    fields (``identity.features``) and rewritten when the record changes; resolution reads
    these narrow rows instead of parsing every record's JSON again."""

    __tablename__ = "match_profile"

    record_id: Mapped[int] = mapped_column(
        ForeignKey("source_record.id"), primary_key=True, autoincrement=False
    )
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    first_name: Mapped[str | None] = mapped_column(String(100))
    first_name_canon: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    maiden_name: Mapped[str | None] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(1))
    birth_date: Mapped[str | None] = mapped_column(String(10))  # ISO text: compared as text
    email: Mapped[str | None] = mapped_column(String(320))
    phone_mobile: Mapped[str | None] = mapped_column(String(40))
    phone_fixed: Mapped[str | None] = mapped_column(String(40))
    postal_code: Mapped[str | None] = mapped_column(String(10))
    city: Mapped[str | None] = mapped_column(String(100))
    street: Mapped[str | None] = mapped_column(String(150))
    loyalty_card: Mapped[str | None] = mapped_column(String(40))
    account_id: Mapped[str | None] = mapped_column(String(60))
    siret: Mapped[str | None] = mapped_column(String(14))
    work_email: Mapped[str | None] = mapped_column(String(320))
    work_phone: Mapped[str | None] = mapped_column(String(40))
    record_hash: Mapped[str] = mapped_column(String(32))  # the record version it was built from
    # No secondary index: resolution reads the whole table at once, and each index would cost
    # the full run about 10 s per million records to maintain.


class IdentityModel(Base):
    """A trained probabilistic model (Splink settings with m and u estimated by EM), versioned:
    incremental runs score new records with the latest one."""

    __tablename__ = "identity_model"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    splink_version: Mapped[str] = mapped_column(String(20))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    records: Mapped[int] = mapped_column(Integer)  # trained on how many records
    trained_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class IdentityRun(Base):
    """One run of ``identity resolve`` (full or incremental) and what it did."""

    __tablename__ = "identity_run"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mode: Mapped[str] = mapped_column(String(20))  # full, incremental
    model_id: Mapped[int | None] = mapped_column(ForeignKey("identity_model.id"))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    records: Mapped[int] = mapped_column(Integer, default=0)  # records examined
    pairs: Mapped[int] = mapped_column(Integer, default=0)  # candidate pairs scored
    links: Mapped[int] = mapped_column(Integer, default=0)
    merges: Mapped[int] = mapped_column(Integer, default=0)
    reviews: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MergeEvent(Base):
    """One customer absorbed into another (``merge``), or that merge undone (``unmerged_at``).

    ``moved`` rows (``merge_move``) say exactly which rows pointed at the absorbed customer, so
    that an unmerge re-points those and only those. ``survivor_before`` and ``absorbed_before``
    hold both customers' columns as they were, to restore them exactly."""

    __tablename__ = "merge_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    absorbed_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("identity_run.id"), index=True)
    actor: Mapped[str] = mapped_column(String(100))  # "identity resolve" or a user name
    rule: Mapped[str] = mapped_column(String(40))  # deterministic, probabilistic, review, manual
    score: Mapped[float | None] = mapped_column(Float)  # match probability of the best link
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    survivor_before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    absorbed_before: Mapped[dict[str, Any]] = mapped_column(JSON)
    survivor_written_at: Mapped[datetime] = mapped_column(UtcDateTime)
    merged_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    unmerged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    unmerged_by: Mapped[str | None] = mapped_column(String(100))
    unmerge_reason: Mapped[str | None] = mapped_column(Text)


class MergeMove(Base):
    """A row re-pointed from the absorbed customer to the survivor by a merge."""

    __tablename__ = "merge_move"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("merge_event.id"))
    table_name: Mapped[str] = mapped_column(String(40))
    row_id: Mapped[int] = mapped_column(BigId)

    # A run's moves are found from its events (merge_event.run_id), then by table.
    __table_args__ = (Index("ix_merge_move_event_table", "event_id", "table_name"),)


class MatchReview(Base):
    """A pair of records in the grey zone (or blocked by the anti-chaining guard), waiting for
    a person's decision; the decision is kept forever: a rejected pair never merges."""

    __tablename__ = "match_review"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    record_a_id: Mapped[int] = mapped_column(ForeignKey("source_record.id"))
    record_b_id: Mapped[int] = mapped_column(ForeignKey("source_record.id"), index=True)
    score: Mapped[float] = mapped_column(Float)  # match probability
    match_weight: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # accepted, rejected
    run_id: Mapped[int | None] = mapped_column(ForeignKey("identity_run.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("record_a_id", "record_b_id"),
        Index("ix_match_review_status", "status"),
    )
