"""What every reader shares: the row and file types, the reader base class, and small
helpers used by several formats (opening, hashing, header checks, JSON value kinds)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

CHUNK_BYTES: Final = 1 << 20


class ReadError(Exception):
    """The whole file cannot be read; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RawRow:
    """One record of a source file, readable (``values``) or not (``error``).

    ``line_no`` is 1-based: the physical line where a CSV/JSONL record starts (the header is
    line 1), the sheet row for Excel, the record's position for JSON arrays and Parquet.
    ``raw_text`` is the record as read (CSV: its physical lines without the final line break,
    undecodable bytes as ``\\xNN``; JSON Lines: the line; JSON, Excel and Parquet: ``json.dumps``
    of the record). CSV values are ``str`` (never None); the other formats keep native values.
    """

    line_no: int
    raw_text: str
    values: dict[str, Any] | None
    error: tuple[str, str] | None


@dataclass
class ReadInfo:
    """What is known about a file before its first row is read."""

    format: str  # "csv" | "xlsx" | "json" | "jsonl" | "parquet"
    encoding: str | None  # csv / jsonl / json: detected or given
    delimiter: str | None  # csv only
    columns: list[str]  # header names as in the file (stripped, BOM removed)
    sha256: str  # of the file's bytes
    size_bytes: int


class SourceReader(ABC):
    """An open source file: ``info``, then its rows by iteration.

    Use it as a context manager or call :meth:`close`; an iteration that reaches the end closes
    its file by itself. Every iteration reads the file from the start.
    """

    info: ReadInfo

    def __init__(self, path: Path, info: ReadInfo) -> None:
        self.path = path
        self.info = info
        self._position = 0
        self._iterations: list[Generator[RawRow, None, None]] = []

    def __iter__(self) -> Iterator[RawRow]:
        self._position = 0
        rows = self._rows()
        self._iterations.append(rows)
        return rows

    @abstractmethod
    def _rows(self) -> Generator[RawRow, None, None]:
        """Yield the file's rows; open the file inside and close it in a ``finally``."""

    def bytes_read(self) -> int:
        """How far into the file the iteration is, in bytes (estimated for xlsx and Parquet)."""
        return min(self._position, self.info.size_bytes)

    def _advance(self, nbytes: int) -> None:
        self._position += nbytes

    def close(self) -> None:
        """Stop any iteration in progress and release the file."""
        while self._iterations:
            self._iterations.pop().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror}") from exc


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with _open_binary(path) as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _clean_name(name: object) -> str:
    return str(name).replace("\ufeff", "").strip()


def _check_header(path: Path, names: list[str], line_no: int) -> list[str]:
    where = f"{path.name}, header (line {line_no})"
    if not any(names):
        raise ReadError(f"{where} is empty; the first line must name the columns")
    unnamed = [str(i) for i, name in enumerate(names, 1) if not name]
    if unnamed:
        raise ReadError(
            f"{where}: column(s) {', '.join(unnamed)} have no name; name every column (a "
            "delimiter at the end of the lines also makes an unnamed column)"
        )
    seen: dict[str, str] = {}
    duplicates: list[str] = []
    for name in names:
        key = name.lower()
        if key in seen:
            duplicates.append(name if name == seen[key] else f"{seen[key]}/{name}")
        seen.setdefault(key, name)
    if duplicates:
        raise ReadError(
            f"{where}: duplicate column name(s) {', '.join(sorted(set(duplicates)))} (names are "
            "compared without case); rename them so that each column has its own name"
        )
    return names


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _not_an_object(where: str, obj: object) -> tuple[str, str]:
    return ("NOT_AN_OBJECT", f"{where} is {_json_kind(obj)}, not an object")
