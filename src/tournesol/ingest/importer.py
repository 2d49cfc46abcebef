"""Import one file of one source: read, map, and write it chunk by chunk.

Guarantees:

- **Nothing lost.** Every data row ends up as a source record (new, updated or unchanged) or as
  a reject with its line number, raw text and reason; ``rows_read`` equals their sum.
- **Atomic steps.** Each chunk (``import_chunk_rows`` rows) is one transaction that also moves
  the batch's ``committed_line`` forward. A crash or Ctrl-C loses at most the chunk in flight,
  which is rolled back as a whole.
- **Resumable and idempotent.** A batch is identified by the source, the file's SHA-256 and the
  mapping's fingerprint. Running the same import again resumes an unfinished batch after its
  committed line, and does nothing for a completed one. Another file with the same records
  changes nothing either: records are upserted by source key and compared by fingerprint;
  a changed record keeps its previous state as a version.

This is a process over several domains (ingest, customers, history, consent): it commits, one
unit of work per chunk; the services it calls never do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Session, sessionmaker

from tournesol.customers import service as customer_service
from tournesol.customers.models import Customer
from tournesol.customers.rules import GOLDEN_FIELDS
from tournesol.db import unit_of_work, utcnow
from tournesol.ingest import service as ingest_service
from tournesol.ingest.handlers import HANDLERS, Accepted, ChunkContext
from tournesol.ingest.models import ImportBatch
from tournesol.ingest.readers import RawRow, open_reader
from tournesol.ingest.rules import (
    MappedRow,
    RowMapper,
    RowRejected,
    mapping_fingerprint,
    record_hash,
)
from tournesol.ingest.schemas import EntityKind, Mapping
from tournesol.interactions import service as history_service

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


@dataclass
class ImportReport:
    """What an import did, for the CLI summary and for tests."""

    batch_id: int
    source: str
    entity: str
    file: str
    file_format: str
    encoding: str | None
    delimiter: str | None
    status: str  # completed, already_imported
    rows_read: int = 0
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    resumed_after_line: int = 0
    linked: int = 0
    seconds: float = 0.0
    reject_samples: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


@dataclass
class _Counts:
    read: int = 0
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejects: list[tuple[int, str, str, str]] = field(default_factory=list)


def _customer_limits() -> dict[str, int]:
    limits = {}
    for name, column in GOLDEN_FIELDS.items():
        col_type = Customer.__table__.c[column].type
        if isinstance(col_type, String) and col_type.length:
            limits[name] = col_type.length
    return limits


def _check_lengths(row: MappedRow, limits: dict[str, int]) -> None:
    """No silent truncation: a value longer than its column is a reject that says so."""
    for name, limit in limits.items():
        value = row.values.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise RowRejected(
                "VALUE_TOO_LONG",
                f"line {row.line_no}: {name} is {len(value)} characters, the limit is {limit}",
            )


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class _Chunker:
    """Maps raw rows and keeps the within-file duplicate check across chunks."""

    def __init__(self, mapper: RowMapper, entity: EntityKind) -> None:
        self.mapper = mapper
        self.entity = entity
        self.first_line: dict[str, int] = {}
        self.limits = _customer_limits() if entity is EntityKind.customer else {}

    def split(self, rows: list[RawRow], counts: _Counts) -> dict[str, MappedRow]:
        mapped: dict[str, MappedRow] = {}
        for raw in rows:
            counts.read += 1
            if raw.error is not None or raw.values is None:
                code, reason = raw.error or ("UNREADABLE", "row could not be read")
                counts.rejects.append((raw.line_no, code, reason, raw.raw_text))
                continue
            values = raw.values
            if any(not isinstance(v, str) for v in values.values()):
                values = _json_safe(values)
            try:
                row = self.mapper.map(raw.line_no, values)
                if self.limits:
                    _check_lengths(row, self.limits)
            except RowRejected as exc:
                counts.rejects.append((raw.line_no, exc.code, exc.reason, raw.raw_text))
                continue
            first = self.first_line.get(row.key)
            if first is not None:
                counts.rejects.append(
                    (
                        raw.line_no,
                        "DUPLICATE_KEY",
                        f"line {raw.line_no}: key {row.key!r} already appears at line {first}",
                        raw.raw_text,
                    )
                )
                continue
            self.first_line[row.key] = raw.line_no
            row.raw_text = raw.raw_text
            mapped[row.key] = row
        return mapped


def _process_chunk(
    session: Session, ctx: ChunkContext, chunker: _Chunker, rows: list[RawRow]
) -> _Counts:
    counts = _Counts()
    mapped = chunker.split(rows, counts)
    existing = ingest_service.existing_records(
        session, source_id=ctx.source_id, entity=ctx.mapping.entity.value, keys=mapped
    )
    new: list[Accepted] = []
    changed: list[Accepted] = []
    for key, row in mapped.items():
        fingerprint = record_hash(row.raw, row.normalized)
        found = existing.get(key)
        if found is None:
            new.append(Accepted(row, fingerprint))
        elif found.last_batch_id == ctx.batch_id:
            # written by an earlier chunk of this same batch before a restart
            counts.rejects.append(
                (
                    row.line_no,
                    "DUPLICATE_KEY",
                    f"line {row.line_no}: key {key!r} already appears at line {found.line_no}",
                    row.raw_text,
                )
            )
        elif found.record_hash == fingerprint:
            counts.unchanged += 1
        else:
            changed.append(Accepted(row, fingerprint, found))
    HANDLERS[ctx.mapping.entity](session, ctx, new, changed)
    counts.accepted, counts.updated = len(new), len(changed)
    ingest_service.add_rejects(session, batch_id=ctx.batch_id, rejects=counts.rejects)
    return counts


def _chunks(rows: Iterator[RawRow], size: int, after_line: int) -> Iterator[list[RawRow]]:
    chunk: list[RawRow] = []
    for row in rows:
        if row.line_no <= after_line:
            continue
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _report(batch: ImportBatch, source: str, status: str, **extra: Any) -> ImportReport:
    return ImportReport(
        batch_id=batch.id,
        source=source,
        entity=batch.entity,
        file=batch.file_name,
        file_format=batch.file_format,
        encoding=batch.encoding,
        delimiter=batch.delimiter,
        status=status,
        rows_read=batch.rows_read,
        accepted=batch.accepted,
        updated=batch.updated,
        unchanged=batch.unchanged,
        rejected=batch.rejected,
        **extra,
    )


def import_file(
    factory: sessionmaker[Session],
    path: Path,
    mapping: Mapping,
    *,
    chunk_rows: int = 20_000,
    progress: Progress | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path`` as described by ``mapping``; see the module docstring for guarantees.

    ``after_chunk`` is called with the committed line after each chunk's commit (progress
    reporting; tests use it to interrupt an import between two chunks).
    Raises ReadError or MappingError, before anything is written, when the file or the mapping
    cannot be used.
    """
    started = time.perf_counter()
    with open_reader(path, mapping.format) as reader:
        info = reader.info
        mapper = RowMapper(mapping, info.columns)
        fingerprint = mapping_fingerprint(mapping)
        with unit_of_work(factory) as session:
            brand_id = (
                customer_service.get_or_create_brand(session, code=mapping.source.brand).id
                if mapping.source.brand
                else None
            )
            source = ingest_service.get_or_create_source(
                session, name=mapping.source.name, spec=mapping.source, brand_id=brand_id
            )
            ref_source_id = None
            if mapping.customer is not None:
                ref_source_id = ingest_service.get_or_create_source(
                    session, name=mapping.customer.source
                ).id
            batch = ingest_service.find_batch(
                session,
                source_id=source.id,
                file_sha256=info.sha256,
                mapping_sha256=fingerprint,
            )
            if batch is not None and batch.status == "completed":
                return _report(batch, source.name, "already_imported")
            resumed_after = 0
            if batch is None:
                batch = ImportBatch(
                    source_id=source.id,
                    entity=mapping.entity.value,
                    file_name=path.name,
                    file_sha256=info.sha256,
                    mapping_sha256=fingerprint,
                    file_format=info.format,
                    encoding=info.encoding,
                    delimiter=info.delimiter,
                    status="running",
                )
                session.add(batch)
                session.flush()
            else:
                resumed_after = batch.committed_line
            ctx = ChunkContext(
                mapping=mapping,
                source_id=source.id,
                brand_id=brand_id,
                batch_id=batch.id,
                file_name=path.name,
                started_at=batch.started_at,
                ref_source_id=ref_source_id,
            )
            source_name = source.name
        chunker = _Chunker(mapper, mapping.entity)
        for rows in _chunks(iter(reader), chunk_rows, resumed_after):
            with unit_of_work(factory) as session:
                counts = _process_chunk(session, ctx, chunker, rows)
                current = session.get_one(ImportBatch, ctx.batch_id)
                current.rows_read += counts.read
                current.accepted += counts.accepted
                current.updated += counts.updated
                current.unchanged += counts.unchanged
                current.rejected += len(counts.rejects)
                current.committed_line = rows[-1].line_no
            if progress is not None:
                progress(reader.bytes_read(), info.size_bytes)
            if after_chunk is not None:
                after_chunk(rows[-1].line_no)
    with unit_of_work(factory) as session:
        linked = 0
        if mapping.entity is EntityKind.customer:
            linked = history_service.link_pending(session, ref_source_id=ctx.source_id)
        batch = session.get_one(ImportBatch, ctx.batch_id)
        batch.status = "completed"
        batch.finished_at = utcnow()
        samples = [
            (r.line_no, r.code, r.reason)
            for r in ingest_service.list_rejects(session, batch_id=batch.id, limit=20)
        ]
        report = _report(
            batch,
            source_name,
            "completed",
            resumed_after_line=resumed_after,
            linked=linked,
            reject_samples=samples,
        )
    report.seconds = time.perf_counter() - started
    return report
