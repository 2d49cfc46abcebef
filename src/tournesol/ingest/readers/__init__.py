"""Read a source file row by row, as raw records with their line numbers, losing nothing.

:func:`open_reader` picks the reader from the file's extension, reads what must be known before
the first row (encoding, delimiter, header, SHA-256 of the bytes) and returns a
:class:`SourceReader`. Iterating it yields one :class:`RawRow` per record of the file:

- a readable record carries its ``values`` (column name -> value);
- an unreadable one carries an ``error`` (code, message) and its raw text, so the importer stores
  it as a reject. Only blank lines / empty rows are skipped.

A file that cannot be read at all (missing, empty, unknown type, no header, broken workbook,
invalid JSON document) raises :class:`ReadError` from :func:`open_reader`, before any row.

Everything streams: memory does not grow with the file (a JSON array is parsed record by record
too), except for a single record, which is held whole.

Closing: use the reader as a context manager (``with open_reader(path) as reader:``) or call
:meth:`SourceReader.close`; an iteration that runs to the end also closes its file by itself.
Each iteration reads the file again from the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tournesol.ingest.readers.base import CHUNK_BYTES as CHUNK_BYTES
from tournesol.ingest.readers.base import RawRow, ReadError, ReadInfo, SourceReader
from tournesol.ingest.readers.delimited import DELIMITERS as DELIMITERS
from tournesol.ingest.readers.delimited import MAX_RECORD_LINES, _open_csv
from tournesol.ingest.readers.delimited import SNIFF_LINES as SNIFF_LINES
from tournesol.ingest.readers.json_document import _open_json
from tournesol.ingest.readers.json_lines import JSONL_COLUMN_SAMPLE as JSONL_COLUMN_SAMPLE
from tournesol.ingest.readers.json_lines import _open_jsonl
from tournesol.ingest.readers.parquet import PARQUET_BATCH_ROWS as PARQUET_BATCH_ROWS
from tournesol.ingest.readers.parquet import _open_parquet
from tournesol.ingest.readers.spreadsheets import _open_xlsx
from tournesol.ingest.schemas import FormatSpec

__all__ = [
    "MAX_RECORD_LINES",
    "RawRow",
    "ReadError",
    "ReadInfo",
    "SourceReader",
    "open_reader",
]

_EXTENSIONS: Final = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".xlsx": "xlsx",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}


def open_reader(path: Path, fmt: FormatSpec | None = None) -> SourceReader:
    """Open ``path`` for reading, its type chosen from the extension.

    Takes the file and its mapping's ``format`` options (defaults when None); returns a
    :class:`SourceReader` whose ``info`` is filled in. Raises :class:`ReadError` when the file is
    missing, empty or of an unknown type, or cannot be read at all (no header, broken workbook,
    invalid JSON document...).
    """
    path = Path(path)
    fmt = fmt if fmt is not None else FormatSpec()
    if not path.exists():
        raise ReadError(f"file not found: {path}; check the path and the file name")
    if not path.is_file():
        raise ReadError(f"{path} is not a file; give the path of the file to import")
    kind = _EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        known = " ".join(sorted(_EXTENSIONS))
        raise ReadError(
            f"{path.name}: unknown file type {path.suffix or '(no extension)'!r}; Tournesol "
            f"reads {known} (save .xls workbooks as .xlsx or CSV)"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror}") from exc
    if size == 0:
        raise ReadError(f"{path.name} is empty (0 bytes); export the data again")
    if kind == "csv":
        return _open_csv(path, fmt)
    if kind == "jsonl":
        return _open_jsonl(path, fmt)
    if kind == "json":
        return _open_json(path, fmt)
    if kind == "xlsx":
        return _open_xlsx(path, fmt)
    return _open_parquet(path)
