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

import contextlib
import multiprocessing
import os
import pickle
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any

from sqlalchemy import String, update
from sqlalchemy.orm import Session, sessionmaker

from tournesol.customers import service as customer_service
from tournesol.customers.models import Customer, Organisation, OrganisationContact
from tournesol.customers.rules import GOLDEN_FIELDS, ORGANISATION_FIELDS
from tournesol.db import Dialect, unit_of_work, utcnow
from tournesol.ingest import service as ingest_service
from tournesol.ingest.handlers import (
    HANDLERS,
    INTERACTION_FIELDS,
    LINE_FIELDS,
    TRANSACTION_FIELDS,
    Accepted,
    ChunkContext,
)
from tournesol.ingest.handlers import (
    ORGANISATION_FIELDS as ORG_ENTITY_FIELDS,
)
from tournesol.ingest.models import ImportBatch
from tournesol.ingest.readers import RawRow, ReadError, ReadInfo, SourceReader, open_reader
from tournesol.ingest.rules import (
    MappedRow,
    RowMapper,
    RowRejected,
    mapping_fingerprint,
)
from tournesol.ingest.schemas import EntityKind, Mapping, MappingError
from tournesol.interactions import service as history_service
from tournesol.interactions.models import Interaction, Product, Transaction, TransactionLine
from tournesol.quality import record as quality_record

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
PARALLEL_FROM_BYTES = 4_000_000
# How many processes map (and normalize) a large file's chunks while this one writes: one per
# core; the reading process and the writer mostly wait on them.
MAPPING_PROCESSES = max(1, min(4, os.cpu_count() or 1))
POOL_TASK_ROWS = 2_000  # rows a mapping process takes at a time
# Tables an import fills, with the columns its lookups filter on (the only ones worth sampling).
GROWING_TABLES = {
    "source_record": ("source_id", "entity", "source_key", "customer_id"),
    "source_record_version": ("source_record_id", "superseded_by_batch_id"),
    "transaction": ("source_id", "external_id", "customer_ref_source_id", "customer_ref_key"),
    "transaction_line": ("transaction_id",),
    "interaction": ("source_record_id", "customer_ref_source_id", "customer_ref_key"),
}


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


def _limits(table: Any, fields: dict[str, str]) -> dict[str, int]:
    """Field -> the length of the column it lands in (text columns with a length only)."""
    out = {}
    for name, column in fields.items():
        col_type = table.c[column].type
        if isinstance(col_type, String) and col_type.length:
            out[name] = col_type.length
    return out


def _same(names: tuple[str, ...]) -> dict[str, str]:
    return {name: name for name in names}


# Where each entity's fields land, to refuse (not truncate) what would not fit.
FIELD_LIMITS: dict[EntityKind, dict[str, int]] = {
    EntityKind.customer: _limits(Customer.__table__, GOLDEN_FIELDS)
    | _limits(OrganisationContact.__table__, {"job_title": "job_title"}),
    EntityKind.transaction: _limits(Transaction.__table__, _same(TRANSACTION_FIELDS)),
    EntityKind.interaction: _limits(Interaction.__table__, _same(INTERACTION_FIELDS)),
    EntityKind.organisation: _limits(Organisation.__table__, _same(ORG_ENTITY_FIELDS)),
    EntityKind.product: _limits(Product.__table__, _same(("sku", "name", "category"))),
}
LINE_LIMITS = _limits(TransactionLine.__table__, _same(LINE_FIELDS))
COMPANY_LIMITS = _limits(Organisation.__table__, _same(tuple(ORGANISATION_FIELDS.values())))


def mapper_for(mapping: Mapping, columns: list[str]) -> RowMapper:
    """The row mapper for a file, with the column lengths its fields are stored in."""
    return RowMapper(mapping, columns, limits=FIELD_LIMITS[mapping.entity], line_limits=LINE_LIMITS)


def _check_lengths(values: dict[str, Any], limits: dict[str, int], where: str) -> None:
    """No silent truncation: a value longer than its column is a reject that says so."""
    for name, limit in limits.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise RowRejected(
                "VALUE_TOO_LONG",
                f"{where}: {name} is {len(value)} characters, the limit is {limit}",
            )


@dataclass
class _Mapped:
    """One chunk as the reading side hands it to the writing side."""

    rows: list[MappedRow]
    rejects: list[tuple[int, str, str, str]]
    read: int
    last_line: int
    bytes_read: int


class _Chunker:
    """Maps raw rows (``map_rows``, no state: any process can do it) and keeps the within-file
    duplicate check across chunks (``dedupe``, in file order, in one place)."""

    def __init__(self, mapping: Mapping, columns: list[str]) -> None:
        self.mapper = mapper_for(mapping, columns)
        self.first_line: dict[str, int] = {}
        self.customers = mapping.entity is EntityKind.customer

    def split(self, rows: list[RawRow], bytes_read: int) -> _Mapped:
        return self.dedupe(self.map_rows(rows, bytes_read))

    def map_rows(self, rows: list[RawRow], bytes_read: int) -> _Mapped:
        out = _Mapped([], [], len(rows), rows[-1].line_no, bytes_read)
        for raw in rows:
            if raw.error is not None or raw.values is None:
                code, reason = raw.error or ("UNREADABLE", "row could not be read")
                out.rejects.append((raw.line_no, code, reason, raw.raw_text))
                continue
            try:
                row = self.mapper.map(raw.line_no, raw.values)
                if row.organisation is not None:
                    _check_lengths(row.organisation, COMPANY_LIMITS, f"line {raw.line_no}")
            except RowRejected as exc:
                out.rejects.append((raw.line_no, exc.code, exc.reason, raw.raw_text))
                continue
            row.raw_text = raw.raw_text
            # Only the JSON texts are written from here on: drop what would only cost pickling.
            row.raw = row.normalized = {}
            if self.customers:
                row.consents, row.consent_meta = {}, {}
                if row.organisation is None:
                    row.values = {}
            out.rows.append(row)
        return out

    def dedupe(self, mapped: _Mapped) -> _Mapped:
        """Reject a key already seen earlier in the file (rows come in file order)."""
        kept: list[MappedRow] = []
        late: list[tuple[int, str, str, str]] = []
        for row in mapped.rows:
            first = self.first_line.get(row.key)
            if first is not None:
                reason = f"line {row.line_no}: key {row.key!r} already appears at line {first}"
                late.append((row.line_no, "DUPLICATE_KEY", reason, row.raw_text))
                continue
            self.first_line[row.key] = row.line_no
            kept.append(row)
        if late:
            mapped.rejects = sorted([*mapped.rejects, *late])
        mapped.rows = kept
        return mapped


def _raw_chunks(
    reader: SourceReader, chunk_rows: int, after_line: int
) -> Iterator[tuple[list[RawRow], int]]:
    """The file's rows after ``after_line``, in chunks, each with the bytes read so far."""
    chunk: list[RawRow] = []
    for row in reader:
        if row.line_no <= after_line:
            continue
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            yield chunk, reader.bytes_read()
            chunk = []
    if chunk:
        yield chunk, reader.bytes_read()


def _mapped_chunks(
    reader: SourceReader, mapping: Mapping, chunk_rows: int, after_line: int
) -> Iterator[_Mapped]:
    chunker = _Chunker(mapping, reader.info.columns)
    for rows, bytes_read in _raw_chunks(reader, chunk_rows, after_line):
        yield chunker.split(rows, bytes_read)


# Mapping processes of the reading worker: each maps whole chunks (mapping, typing and, for
# customers, every quality normalizer: the costly part), in file order.
_POOL_CHUNKER: _Chunker | None = None


def _start_mapping_process(mapping: Mapping, columns: list[str]) -> None:
    global _POOL_CHUNKER
    _POOL_CHUNKER = _Chunker(mapping, columns)


def _map_in_pool(rows: list[RawRow], bytes_read: int) -> _Mapped:
    assert _POOL_CHUNKER is not None
    return _POOL_CHUNKER.map_rows(rows, bytes_read)


def _pooled_chunks(
    reader: SourceReader, mapping: Mapping, chunk_rows: int, after_line: int, processes: int
) -> Iterator[_Mapped]:
    """The same chunks as ``_mapped_chunks``, with the mapping spread over ``processes``
    processes in tasks of at most ``POOL_TASK_ROWS`` rows (each process holds little at a
    time), put back together in file order. At most two tasks per process are in flight."""
    chunker = _Chunker(mapping, reader.info.columns)
    if mapping.entity is EntityKind.customer:
        quality_record.preload()  # loaded once here, shared by the forked processes
    ctx = multiprocessing.get_context("fork")
    task_rows = min(chunk_rows, POOL_TASK_ROWS)
    # (results of one chunk's tasks so far, how many tasks that chunk has); file order
    chunks: deque[tuple[list[_Mapped], int]] = deque()
    pending: deque[AsyncResult[_Mapped]] = deque()

    def collect() -> Iterator[_Mapped]:
        """Take the oldest task's result; yield its chunk when the chunk is complete."""
        parts, tasks = chunks[0]
        parts.append(chunker.dedupe(pending.popleft().get()))
        if len(parts) == tasks:
            chunks.popleft()
            yield _merge(parts)

    with ctx.Pool(
        processes, initializer=_start_mapping_process, initargs=(mapping, reader.info.columns)
    ) as pool:
        for rows, bytes_read in _raw_chunks(reader, chunk_rows, after_line):
            starts = range(0, len(rows), task_rows)
            chunks.append(([], len(starts)))
            for start in starts:
                task = rows[start : start + task_rows]
                pending.append(pool.apply_async(_map_in_pool, (task, bytes_read)))
                while len(pending) > 2 * processes:
                    yield from collect()
        while pending:
            yield from collect()


def _merge(parts: list[_Mapped]) -> _Mapped:
    """Consecutive mapped pieces as one chunk."""
    if len(parts) == 1:
        return parts[0]
    return _Mapped(
        [row for part in parts for row in part.rows],
        [reject for part in parts for reject in part.rejects],
        sum(part.read for part in parts),
        parts[-1].last_line,
        parts[-1].bytes_read,
    )


class _InProcessReading:
    """Reading and mapping in this process (small files)."""

    def __init__(self, path: Path, mapping: Mapping, chunk_rows: int) -> None:
        self.reader = open_reader(path, mapping.format)
        self.info = self.reader.info
        self.mapping = mapping
        self.chunk_rows = chunk_rows
        RowMapper(mapping, self.info.columns)  # a bad mapping fails before anything is written

    def chunks(self, after_line: int) -> Iterator[_Mapped]:
        return _mapped_chunks(self.reader, self.mapping, self.chunk_rows, after_line)

    def close(self) -> None:
        self.reader.close()


def _reading_worker(path: Path, mapping: Mapping, chunk_rows: int, channel: Connection) -> None:
    """The worker process: open, report the file's info, wait for the resume line, then send
    mapped chunks and a final ("end", None). Messages are pickled here, in the worker's only
    thread, and travel over a pipe: a send blocks while the writer is a chunk behind, and
    fails (ending the worker) if the writer has died."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle

    def send(message: tuple[str, Any]) -> None:
        channel.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        with open_reader(path, mapping.format) as reader:
            RowMapper(mapping, reader.info.columns)
            send(("info", reader.info))
            after_line = channel.recv()
            if after_line is None:
                return
            for mapped in _pooled_chunks(
                reader, mapping, chunk_rows, after_line, MAPPING_PROCESSES
            ):
                send(("chunk", mapped))
        send(("end", None))
    except (BrokenPipeError, EOFError):
        return  # the writing process is gone: nothing to report to
    except (ReadError, MappingError) as exc:
        send(("error", exc))
    except Exception as exc:  # anything else: report it rather than leave the parent waiting
        send(("error", RuntimeError(f"{type(exc).__name__}: {exc}")))


class _WorkerReading:
    """Reading and mapping in a second process, so that one core parses while the other
    writes to the database (large files)."""

    def __init__(self, path: Path, mapping: Mapping, chunk_rows: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.channel, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            # not a daemon: it starts the mapping processes; ``close`` (always called) ends it
            target=_reading_worker,
            args=(path, mapping, chunk_rows, child),
            daemon=False,
        )
        self.process.start()
        child.close()
        self.info: ReadInfo = self._receive("info")

    def _receive(self, kind: str) -> Any:
        while not self.channel.poll(5):
            if not self.process.is_alive():
                raise RuntimeError("the reading process stopped unexpectedly")
        try:
            tag, payload = pickle.loads(self.channel.recv_bytes())
        except EOFError:
            raise RuntimeError("the reading process stopped unexpectedly") from None
        if tag == "error":
            raise payload
        if tag not in (kind, "end"):
            raise RuntimeError(f"reading process sent {tag!r}, expected {kind!r}")
        return payload if tag == kind else None

    def chunks(self, after_line: int) -> Iterator[_Mapped]:
        self.channel.send(after_line)
        while (mapped := self._receive("chunk")) is not None:
            yield mapped

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.channel.send(None)
            self.process.join(timeout=1)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.channel.close()


def _process_chunk(session: Session, ctx: ChunkContext, mapped: _Mapped) -> _Counts:
    counts = _Counts(read=mapped.read, rejects=list(mapped.rejects))
    # Write first: on SQLite this takes the database's write lock for the whole chunk.
    session.execute(
        update(ImportBatch)
        .where(ImportBatch.id == ctx.batch_id)
        .values(committed_line=ImportBatch.committed_line)
    )
    existing = (
        {}
        if ctx.first_load
        else ingest_service.existing_records(
            session,
            source_id=ctx.source_id,
            entity=ctx.mapping.entity.value,
            keys=[row.key for row in mapped.rows],
        )
    )
    new: list[Accepted] = []
    changed: list[Accepted] = []
    for row in mapped.rows:
        found = existing.get(row.key)
        if found is None:
            new.append(Accepted(row))
        elif found.last_batch_id == ctx.batch_id:
            # written by an earlier chunk of this same batch, before a restart
            reason = f"line {row.line_no}: key {row.key!r} already appears at line {found.line_no}"
            counts.rejects.append((row.line_no, "DUPLICATE_KEY", reason, row.raw_text))
        elif found.record_hash == row.record_hash:
            counts.unchanged += 1
        else:
            changed.append(Accepted(row, found))
    HANDLERS[ctx.mapping.entity](session, ctx, new, changed)
    counts.accepted, counts.updated = len(new), len(changed)
    counts.rejects.sort()
    ingest_service.add_rejects(session, batch_id=ctx.batch_id, rejects=counts.rejects)
    return counts


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
    chunk_rows: int = 10_000,
    progress: Progress | None = None,
    after_chunk: Callable[[int], None] | None = None,
    parallel: bool | None = None,
) -> ImportReport:
    """Import ``path`` as described by ``mapping``; see the module docstring for guarantees.

    ``after_chunk`` is called with the committed line after each chunk's commit (progress
    reporting; tests use it to interrupt an import between two chunks).
    ``parallel`` reads and maps the file in a second process while this one writes (default:
    for files of at least 4 MB).
    Raises ReadError or MappingError, before anything is written, when the file or the mapping
    cannot be used.
    """
    started = time.perf_counter()
    if parallel is None:
        parallel = path.stat().st_size >= PARALLEL_FROM_BYTES if path.exists() else False
    reading: _InProcessReading | _WorkerReading = (
        _WorkerReading(path, mapping, chunk_rows)
        if parallel
        else _InProcessReading(path, mapping, chunk_rows)
    )
    try:
        info = reading.info
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
            first_load = False
            if batch is None:
                first_load = not ingest_service.has_records(
                    session, source_id=source.id, entity=mapping.entity.value
                )
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
                consent_columns=RowMapper(mapping, info.columns).consent_columns,
                first_load=first_load,
            )
            source_name = source.name
        for chunks_done, mapped in enumerate(reading.chunks(resumed_after), start=1):
            with unit_of_work(factory) as session:
                counts = _process_chunk(session, ctx, mapped)
                current = session.get_one(ImportBatch, ctx.batch_id)
                current.rows_read += counts.read
                current.accepted += counts.accepted
                current.updated += counts.updated
                current.unchanged += counts.unchanged
                current.rejected += len(counts.rejects)
                current.committed_line = mapped.last_line
            if chunks_done & (chunks_done - 1) == 0:  # after chunks 1, 2, 4, 8...
                with unit_of_work(factory) as session:
                    Dialect.of(session).refresh_statistics(session.connection(), GROWING_TABLES)
            if progress is not None:
                progress(mapped.bytes_read, info.size_bytes)
            if after_chunk is not None:
                after_chunk(mapped.last_line)
    finally:
        reading.close()
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
