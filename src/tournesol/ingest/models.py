"""Sources, import batches, raw source records with their lineage and history, rejects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, utcnow


class Source(Base):
    """A system the data comes from: a loyalty program, an e-shop, a contest, a call center..."""

    __tablename__ = "source"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brand.id"))
    trust_rank: Mapped[int] = mapped_column(Integer, default=5)  # 1 = most trusted
    restrictions: Mapped[list[str]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ImportBatch(Base):
    """One import of one file. ``committed_line`` is how far it got: rows up to that line are
    committed; a rerun of the same file with the same mapping resumes after it."""

    __tablename__ = "import_batch"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"), index=True)
    entity: Mapped[str] = mapped_column(String(20))
    file_name: Mapped[str] = mapped_column(String(500))
    file_sha256: Mapped[str] = mapped_column(String(64))
    mapping_sha256: Mapped[str] = mapped_column(String(64))
    file_format: Mapped[str] = mapped_column(String(10))
    encoding: Mapped[str | None] = mapped_column(String(20))
    delimiter: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running, completed
    committed_line: Mapped[int] = mapped_column(Integer, default=0)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_import_batch_file", "source_id", "file_sha256", "mapping_sha256"),)


class SourceRecord(Base):
    """One record of one source, as received (raw) and as understood (normalized)."""

    __tablename__ = "source_record"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("source.id"))
    entity: Mapped[str] = mapped_column(String(20))
    source_key: Mapped[str] = mapped_column(String(300))
    # Kept for lineage, never indexed: plain JSON (validated text) is cheaper to load than JSONB.
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    normalized: Mapped[dict[str, Any]] = mapped_column(Json)
    quality_flags: Mapped[list[str]] = mapped_column(Json, default=list)
    record_hash: Mapped[str] = mapped_column(String(32))
    line_no: Mapped[int] = mapped_column(Integer)
    # Deferred: an import writes a chunk's records before the golden customers built from them.
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer.id", deferrable=True, initially="DEFERRED"), index=True
    )
    first_batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"))
    last_batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("source_id", "entity", "source_key"),)


class SourceRecordVersion(Base):
    """A previous state of a source record, kept when a later extract changed it."""

    __tablename__ = "source_record_version"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_record_id: Mapped[int] = mapped_column(ForeignKey("source_record.id"), index=True)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    normalized: Mapped[dict[str, Any]] = mapped_column(Json)
    record_hash: Mapped[str] = mapped_column(String(32))
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"))  # the batch it came from
    superseded_by_batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"))
    superseded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Reject(Base):
    """A row that could not be accepted, kept whole with the reason."""

    __tablename__ = "reject"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batch.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text)
    raw_text: Mapped[str] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("batch_id", "line_no"),)
