"""Journeys in the database: published versions (immutable), instances with their state, the
step log (one row per step visit), the event inbox (deduplicated by event id) and the cursors
of the scans that fill it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, partial, utcnow

JOURNEY_STATUSES: Final = ("draft", "active", "paused", "archived")
# The instances that still run: at most one per journey, customer and instance key (unless
# the journey's re-entry policy is "always": then ``concurrent`` is true and they may share).
LIVE: Final = "status NOT IN ('done', 'exited') AND NOT concurrent"


class Journey(Base):
    """A journey: its stable code, the version new instances start on, and whether it runs
    (``active``), is frozen (``paused``: no entries, no timers, no sends; events still end or
    resolve waits), or takes no new entries any more (``archived``)."""

    __tablename__ = "journey"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # no foreign key: the version rows point back here (a cycle of constraints for nothing)
    current_version_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class JourneyVersion(Base):
    """One published definition of a journey, never changed once written: ``definition`` is
    the canonical form (``JourneyDefinition.to_dict()``), ``digest`` its SHA-256, so the same
    journey published twice is one version; ``source_yaml`` the text as the author wrote it."""

    __tablename__ = "journey_version"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journey.id"))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(Json)
    source_yaml: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_by: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("journey_id", "version"),
        UniqueConstraint("journey_id", "digest"),
    )


class JourneyInstance(Base):
    """One customer's way through one journey version. ``state`` is the engine's whole state
    (``InstanceState.to_json()``); the other columns copy what queries filter on: ``status``
    and ``due_at`` (the worker claims due instances), ``waiting_for`` and ``match_value`` (an
    awaited event), ``step`` (the journey graph's live counts)."""

    __tablename__ = "journey_instance"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journey.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("journey_version.id"))
    # no foreign key, as the outbox: instances follow the customer through merges by the
    # same re-pointing as the rest of the history
    customer_id: Mapped[int] = mapped_column(BigInteger)
    instance_key: Mapped[str] = mapped_column(String(200))
    # re-entry "always": several live instances may share the key
    concurrent: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))  # rules.Status
    step: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[dict[str, Any]] = mapped_column(Json)
    due_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    waiting_for: Mapped[str | None] = mapped_column(String(60))
    match_value: Mapped[str | None] = mapped_column(String(200))
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    exit_reason: Mapped[str | None] = mapped_column(String(120))
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "uq_journey_instance_live",
            "journey_id",
            "customer_id",
            "instance_key",
            unique=True,
            **partial(LIVE),
        ),
        # what the worker claims; ended instances (due_at NULL) leave the index
        Index("ix_journey_instance_due", "status", "due_at", **partial("due_at IS NOT NULL")),
        Index("ix_journey_instance_customer", "customer_id", "waiting_for"),
    )


class JourneyStepLog(Base):
    """One visit of a step, written when the visit ends, with its outcome (``elapsed``,
    ``event``, ``timeout``, ``branch``, ``sent``, ``suppressed``, ``goal``, ``exit``...) and
    a detail (the branch taken, the suppression's reason, the tag set). Unique per instance,
    step and visit: a replay writes nothing twice. ``journey_id`` is copied from the instance
    so that the graph's counts per step read one index."""

    __tablename__ = "journey_step_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("journey_instance.id"))
    journey_id: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[str] = mapped_column(String(100))
    visit: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(300))
    at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("instance_id", "step", "visit"),
        Index("ix_journey_step_log_counts", "journey_id", "step", "outcome"),
    )


class JourneyInbox(Base):
    """An event waiting for the engine (then kept, ``processed_at`` set): an interaction, a
    transaction, a segment entry or exit, a date rule that fell due, or an API call.
    ``event_id`` says where it came from and is unique (``interaction:123``,
    ``transaction:9``, ``segment:5:entered:77``, ``date:birthday:2026-11-24:42``,
    ``api:<uuid>``): the same event collected twice is stored once."""

    __tablename__ = "journey_inbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), unique=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(60))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    # the events still to process, in arrival order; processed ones leave the index
    __table_args__ = (Index("ix_journey_inbox_pending", "id", **partial("processed_at IS NULL")),)


class JourneyCursor(Base):
    """How far a scan that fills the inbox has read. For a scan by id (``interaction``,
    ``transaction``, ``customer``, ``segment_entered``): ``position`` is the last id read and
    ``floor`` the id the scan started from (a re-scan of the last ids never goes below it).
    For the exits of one segment (``segment_left:<id>``): ``position`` is the last exit time
    read (microseconds since 1970, UTC) and ``floor`` that row's customer id."""

    __tablename__ = "journey_cursor"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    floor: Mapped[int] = mapped_column(BigInteger, default=0)
    # scans by id on PostgreSQL (service._scan_ids): every row at or below ``settled`` is
    # read or never commits; ``watch`` is the id settled moves to once the transactions
    # older than the one in ``pending`` ("<round>:<transaction id>") have ended
    settled: Mapped[int | None] = mapped_column(BigInteger)
    watch: Mapped[int | None] = mapped_column(BigInteger)
    pending: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
