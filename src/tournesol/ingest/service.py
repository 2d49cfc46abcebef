"""Database work for sources, import batches, source records, their versions and rejects.

Functions take the session and keyword-only arguments, and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, Integer, Table, bindparam, insert, literal, select, update
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
                Dialect.of(session).one_of(SourceRecord.source_key, part),
            )
        )
        for key, rid, fingerprint, last_batch, line_no, customer_id in rows:
            found[key] = ExistingRecord(rid, fingerprint, last_batch, line_no, customer_id)
    return found


def has_records(session: Session, *, source_id: int, entity: str) -> bool:
    """Whether this source already holds records of this entity."""
    found = session.execute(
        select(SourceRecord.id)
        .where(SourceRecord.source_id == source_id, SourceRecord.entity == entity)
        .limit(1)
    ).first()
    return found is not None


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
                Dialect.of(session).one_of(SourceRecord.source_key, part),
                SourceRecord.customer_id.is_not(None),
            )
        )
        out.update({key: cid for key, cid in rows if cid is not None})
    return out


RECORD_COLUMNS = (
    "id",
    "source_id",
    "entity",
    "source_key",
    "raw",
    "normalized",
    "quality_flags",
    "record_hash",
    "line_no",
    "customer_id",
    "first_batch_id",
    "last_batch_id",
    "created_at",
    "updated_at",
)


def insert_records(
    session: Session,
    *,
    source_id: int,
    entity: str,
    batch_id: int,
    rows: Sequence[tuple[str, str, str, str, str, int, int | None]],
) -> list[int]:
    """Bulk-insert new source records of one batch; returns their ids in the order given.
    ``rows``: ``(source_key, raw JSON text, normalized JSON text, quality flags JSON text,
    record_hash, line_no, customer_id)``."""
    if not rows:
        return []
    conn = session.connection()
    dialect = Dialect.of(session)
    table: Table = SourceRecord.__table__  # type: ignore[assignment]
    ids = dialect.reserve_ids(conn, table, len(rows))
    now = dialect.bind_value(conn, table, "created_at", utcnow())
    dialect.copy_rows(
        conn,
        table,
        RECORD_COLUMNS,
        [
            (
                rid,
                source_id,
                entity,
                key,
                raw,
                normalized,
                flags,
                fp,
                line,
                cid,
                batch_id,
                batch_id,
                now,
                now,
            )
            for rid, (key, raw, normalized, flags, fp, line, cid) in zip(ids, rows, strict=True)
        ],
        prepared=True,
    )
    return ids


def supersede_records(session: Session, *, batch_id: int, changes: list[dict[str, Any]]) -> None:
    """Keep the current state of each changed record as a version, then write the new state.

    ``changes``: dicts with ``id``, ``raw``, ``normalized`` and ``flags`` (JSON text),
    ``record_hash``, ``line_no``.
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
                ).where(Dialect.of(session).one_of(SourceRecord.id, part)),
            )
        )
    dialect = Dialect.of(session)
    table: Table = SourceRecord.__table__  # type: ignore[assignment]
    statement = (
        update(table)
        .where(table.c.id == bindparam("record_id"))
        .values(
            raw=dialect.json_param("raw_json", binary=False),
            normalized=dialect.json_param("normalized_json", binary=True),
            quality_flags=dialect.json_param("flags_json", binary=True),
            record_hash=bindparam("new_hash"),
            line_no=bindparam("new_line"),
            last_batch_id=batch_id,
            updated_at=now,
        )
    )
    session.connection().execute(
        statement,
        [
            {
                "record_id": c["id"],
                "raw_json": c["raw"],
                "normalized_json": c["normalized"],
                "flags_json": c["flags"],
                "new_hash": c["record_hash"],
                "new_line": c["line_no"],
            }
            for c in changes
        ],
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


CROSSREF_COLUMNS = ("source", "entity", "source_key", "customer_id")


def crossref_rows(session: Session) -> Iterable[tuple[str, str, str, int | None]]:
    """``(source, entity, source_key, customer_id)`` for every source record, in a stable order."""
    query = (
        select(Source.name, SourceRecord.entity, SourceRecord.source_key, SourceRecord.customer_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .order_by(Source.name, SourceRecord.entity, SourceRecord.source_key)
        .execution_options(yield_per=10_000)
    )
    yield from session.execute(query)
