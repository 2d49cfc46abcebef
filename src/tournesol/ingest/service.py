"""Database work for sources, import batches, source records, their versions and rejects.

Functions take the session and keyword-only arguments, and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Integer, insert, literal, select, update
from sqlalchemy.orm import Session

from tournesol.db import Dialect, chunked, utcnow
from tournesol.ingest.models import ImportBatch, Reject, Source, SourceRecord, SourceRecordVersion
from tournesol.ingest.schemas import SourceSpec


def get_by_name(session: Session, *, name: str) -> Source | None:
    return session.scalars(select(Source).where(Source.name == name)).one_or_none()


def get_or_create_source(
    session: Session, *, name: str, spec: SourceSpec | None = None, brand_id: int | None = None
) -> Source:
    """The source called ``name``; created if new. With ``spec``, its description is updated
    from the mapping (a source first seen as someone's reference gets its real kind later)."""
    source = get_by_name(session, name=name)
    if source is None:
        source = Source(name=name, kind=spec.kind if spec else "pending", restrictions=[])
        session.add(source)
    if spec is not None:
        source.kind = spec.kind
        source.trust_rank = spec.trust_rank
        source.restrictions = list(spec.restrictions)
        source.brand_id = brand_id
    session.flush()
    return source


def list_sources(session: Session) -> Sequence[Source]:
    return session.scalars(select(Source).order_by(Source.name)).all()


def find_batch(
    session: Session, *, source_id: int, file_sha256: str, mapping_sha256: str
) -> ImportBatch | None:
    """The latest batch of this exact file read with this exact mapping, if any."""
    return session.scalars(
        select(ImportBatch)
        .where(
            ImportBatch.source_id == source_id,
            ImportBatch.file_sha256 == file_sha256,
            ImportBatch.mapping_sha256 == mapping_sha256,
        )
        .order_by(ImportBatch.id.desc())
        .limit(1)
    ).one_or_none()


def get_batch(session: Session, *, batch_id: int) -> ImportBatch | None:
    return session.get(ImportBatch, batch_id)


def list_batches(session: Session, *, source_id: int | None = None) -> Sequence[ImportBatch]:
    query = select(ImportBatch).order_by(ImportBatch.id)
    if source_id is not None:
        query = query.where(ImportBatch.source_id == source_id)
    return session.scalars(query).all()


@dataclass(frozen=True, slots=True)
class ExistingRecord:
    id: int
    record_hash: str
    last_batch_id: int
    line_no: int
    customer_id: int | None


def existing_records(
    session: Session, *, source_id: int, entity: str, keys: Iterable[str]
) -> dict[str, ExistingRecord]:
    """The stored records of this source and entity among ``keys``, by key."""
    found: dict[str, ExistingRecord] = {}
    wanted = list(keys)
    size = Dialect.of(session).max_params - 10
    for part in chunked(wanted, size):
        rows = session.execute(
            select(
                SourceRecord.source_key,
                SourceRecord.id,
                SourceRecord.record_hash,
                SourceRecord.last_batch_id,
                SourceRecord.line_no,
                SourceRecord.customer_id,
            ).where(
                SourceRecord.source_id == source_id,
                SourceRecord.entity == entity,
                SourceRecord.source_key.in_(part),
            )
        )
        for key, rid, fingerprint, last_batch, line_no, customer_id in rows:
            found[key] = ExistingRecord(rid, fingerprint, last_batch, line_no, customer_id)
    return found


def customer_ids_for_keys(
    session: Session, *, source_id: int, keys: Iterable[str]
) -> dict[str, int]:
    """The customers behind these keys of a customer source (for references from other rows)."""
    out: dict[str, int] = {}
    size = Dialect.of(session).max_params - 10
    for part in chunked(list(keys), size):
        rows = session.execute(
            select(SourceRecord.source_key, SourceRecord.customer_id).where(
                SourceRecord.source_id == source_id,
                SourceRecord.entity == "customer",
                SourceRecord.source_key.in_(part),
                SourceRecord.customer_id.is_not(None),
            )
        )
        out.update({key: cid for key, cid in rows if cid is not None})
    return out


def insert_records(session: Session, *, rows: list[dict[str, Any]]) -> list[int]:
    """Insert new source records; returns their ids in the order given."""
    if not rows:
        return []
    now = utcnow()
    for row in rows:
        row.setdefault("created_at", now)
        row.setdefault("updated_at", now)
        row.setdefault("quality_flags", [])
    result = session.execute(
        insert(SourceRecord).returning(SourceRecord.id, sort_by_parameter_order=True), rows
    )
    return [r[0] for r in result]


def supersede_records(session: Session, *, batch_id: int, changes: list[dict[str, Any]]) -> None:
    """Keep the current state of each changed record as a version, then write the new state.

    ``changes``: dicts with ``id``, ``raw``, ``normalized``, ``record_hash``, ``line_no``.
    """
    if not changes:
        return
    ids = [c["id"] for c in changes]
    now = utcnow()
    size = Dialect.of(session).max_params - 10
    for part in chunked(ids, size):
        session.execute(
            insert(SourceRecordVersion).from_select(
                [
                    "source_record_id",
                    "raw",
                    "normalized",
                    "record_hash",
                    "batch_id",
                    "superseded_by_batch_id",
                    "superseded_at",
                ],
                select(
                    SourceRecord.id,
                    SourceRecord.raw,
                    SourceRecord.normalized,
                    SourceRecord.record_hash,
                    SourceRecord.last_batch_id,
                    literal(batch_id, Integer()),
                    literal(now, DateTime(timezone=True)),
                ).where(SourceRecord.id.in_(part)),
            )
        )
    session.execute(
        update(SourceRecord),
        [
            {
                "id": c["id"],
                "raw": c["raw"],
                "normalized": c["normalized"],
                "record_hash": c["record_hash"],
                "line_no": c["line_no"],
                "last_batch_id": batch_id,
                "updated_at": now,
            }
            for c in changes
        ],
    )


def set_customer(session: Session, *, pairs: list[tuple[int, int]]) -> None:
    """Point source records at customers: ``(source_record_id, customer_id)`` pairs."""
    if pairs:
        session.execute(
            update(SourceRecord), [{"id": rid, "customer_id": cid} for rid, cid in pairs]
        )


def add_rejects(
    session: Session, *, batch_id: int, rejects: list[tuple[int, str, str, str]]
) -> None:
    """Store rejected rows: ``(line_no, code, reason, raw_text)``."""
    if rejects:
        session.execute(
            insert(Reject),
            [
                {
                    "batch_id": batch_id,
                    "line_no": ln,
                    "code": code,
                    "reason": reason,
                    "raw_text": raw,
                }
                for ln, code, reason, raw in rejects
            ],
        )


def list_rejects(session: Session, *, batch_id: int, limit: int | None = None) -> Sequence[Reject]:
    query = select(Reject).where(Reject.batch_id == batch_id).order_by(Reject.line_no)
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()


def crossref_rows(session: Session) -> Iterable[tuple[str, str, str, int | None]]:
    """``(source, entity, source_key, customer_id)`` for every source record, in a stable order."""
    query = (
        select(Source.name, SourceRecord.entity, SourceRecord.source_key, SourceRecord.customer_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .order_by(Source.name, SourceRecord.entity, SourceRecord.source_key)
        .execution_options(yield_per=10_000)
    )
    yield from session.execute(query)
