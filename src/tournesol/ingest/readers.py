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

import codecs
import csv
import hashlib
import json
import math
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, repeat
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import ijson

from tournesol.ingest.schemas import FormatSpec

__all__ = [
    "MAX_RECORD_LINES",
    "RawRow",
    "ReadError",
    "ReadInfo",
    "SourceReader",
    "open_reader",
]

CHUNK_BYTES: Final = 1 << 20
# A quoted CSV field may hold line breaks, but one that is still open after this many physical
# lines (or at the end of the file) is taken for a quote that was never closed: its first line
# becomes an UNTERMINATED_QUOTE row and parsing starts again on the next physical line, so a
# stray quote costs one row instead of swallowing the rest of the file.
MAX_RECORD_LINES: Final = 100
SNIFF_LINES: Final = 50
DELIMITERS: Final = (";", ",", "\t", "|")  # in order of preference when sniffing
JSONL_COLUMN_SAMPLE: Final = 1000
PARQUET_BATCH_ROWS: Final = 10_000

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
_DELIMITER_NAMES: Final = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
}
_MAGIC: Final = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?): give it the .xlsx extension"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook: save it as .xlsx or as CSV"),
    (b"PAR1", "a Parquet file: give it the .parquet extension"),
    (b"\xff\xfe", "UTF-16 text (Excel 'Unicode text'): save it as 'CSV UTF-8'"),
    (b"\xfe\xff", "UTF-16 text: save it as 'CSV UTF-8'"),
)
# Encoding detection: how much of the file's non-UTF-8 text is kept to choose a legacy encoding,
# and when the answer is settled (that many non-UTF-8 lines, twenty times more than UTF-8 ones).
_SAMPLE_LINES: Final = 200
_SAMPLE_BYTES: Final = 64 * 1024
_SETTLED_INVALID: Final = 1000
_MAX_SCAN_LINE: Final = 16 * CHUNK_BYTES
_JSON_BUF: Final = 64 * 1024  # bytes that ijson parses at a time
_MAX_JSON_DEPTH: Final = 500  # deeper JSON values are refused (json.dumps would recurse too far)


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


# --------------------------------------------------------------------------- bytes and encodings


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror}") from exc


def _line_pieces(
    f: IO[bytes], *, strip_bom: bool, on_read: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """Read a binary file in pieces of about CHUNK_BYTES that end at a line break.

    Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``. The bytes after a chunk's last line
    break (or a final ``\\r``, whose ``\\n`` may come next) are carried over to the next piece.
    """
    carry = b""
    first = True
    while chunk := f.read(CHUNK_BYTES if not first else max(CHUNK_BYTES, 4)):
        if on_read is not None:
            on_read(len(chunk))
        if first:
            first = False
            if strip_bom and chunk.startswith(codecs.BOM_UTF8):
                chunk = chunk[len(codecs.BOM_UTF8) :]
        data = carry + chunk if carry else chunk
        if not data:
            continue
        cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
        if cut == len(data):
            carry = b""
            yield data
        elif cut:
            carry = data[cut:]
            yield data[:cut]
        else:
            carry = data
    if carry:
        yield carry


def _decoded_pieces(
    pieces: Iterable[bytes], codec: str, encoding: str, bad: dict[int, str]
) -> Iterator[list[str]]:
    """Decode each piece into its physical lines, each with its line break.

    An undecodable line comes out with ``\\xNN`` escapes and its problem is recorded in
    ``bad`` under its 1-based line number. A piece is decoded in one call when it can be (the
    fast path), line by line otherwise.
    """
    no = 0
    for piece in pieces:
        try:
            lines = piece.decode(codec).splitlines(keepends=True)
        except UnicodeDecodeError:
            pass
        else:
            # str.splitlines also breaks at \v, \f, \x1c-\x1e, \x85, \u2028 and \u2029: keep
            # its lines only if it found exactly the piece's line breaks, that is as many as
            # there are \n (no lone \r: the usual case) or as \n plus lone \r.
            found = len(lines) - (not piece.endswith((b"\n", b"\r")))
            if found == piece.count(b"\n") or found == (
                piece.count(b"\n") + piece.count(b"\r") - piece.count(b"\r\n")
            ):
                no += len(lines)
                yield lines
                continue
        lines = []
        for raw in piece.splitlines(keepends=True):
            no += 1
            try:
                lines.append(raw.decode(codec))
            except UnicodeDecodeError as exc:
                lines.append(raw.decode(codec, "backslashreplace"))
                bad[no] = _decode_problem(raw, exc, codec, encoding, no)
        yield lines


def _decoded_lines(
    pieces: Iterable[bytes], codec: str, encoding: str, bad: dict[int, str]
) -> Iterator[str]:
    """The physical lines of :func:`_decoded_pieces`, one by one."""
    return chain.from_iterable(_decoded_pieces(pieces, codec, encoding, bad))


def _decode_problem(
    raw: bytes, exc: UnicodeDecodeError, codec: str, encoding: str, line_no: int
) -> str:
    column = len(raw[: exc.start].decode(codec, "backslashreplace")) + 1
    shown = "".join(f"\\x{b:02x}" for b in raw[exc.start : min(exc.end, exc.start + 4)])
    return (
        f"bytes not valid {encoding} at column {column} of line {line_no} ({shown}); the line "
        "is kept as raw text with \\xNN escapes"
    )


@dataclass
class _Scan:
    """One pass over a file's bytes: its digest, and how its non-ASCII lines decode."""

    sha256: str
    size: int
    head: bytes
    utf8_lines: int = 0  # non-ASCII lines that are valid UTF-8
    other_lines: int = 0  # lines that are not
    sample: list[bytes] = field(default_factory=list)  # some of the latter


def _scan(path: Path, *, classify: bool) -> _Scan:
    digest = hashlib.sha256()
    result = _Scan(sha256="", size=0, head=b"")
    carry = b""
    with _open_binary(path) as f:
        while chunk := f.read(CHUNK_BYTES if result.size else max(CHUNK_BYTES, 4)):
            if not result.size:
                result.head = chunk[:4]
                if chunk.startswith((codecs.BOM_UTF8, b"\xff\xfe", b"\xfe\xff")):
                    classify = False
            digest.update(chunk)
            result.size += len(chunk)
            if not classify:
                continue
            data = carry + chunk if carry else chunk
            cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            if cut == 0:
                if len(data) < _MAX_SCAN_LINE:
                    carry = data
                    continue
                cut = len(data)
            carry = data[cut:]
            _classify(data[:cut] if carry else data, result)
            # Settled: a legacy-encoded file, no need to look at every line.
            if result.other_lines >= _SETTLED_INVALID and (
                result.utf8_lines * 20 < result.other_lines
            ):
                classify = False
        if classify and carry:
            _classify(carry, result)
    result.sha256 = digest.hexdigest()
    return result


def _classify(piece: bytes, scan: _Scan) -> None:
    if piece.isascii():
        return
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        scan.utf8_lines += sum(1 for line in piece.splitlines() if not line.isascii())
        return
    sample = scan.sample
    for line in piece.splitlines():
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            scan.other_lines += 1
            if len(sample) < _SAMPLE_LINES and sum(map(len, sample)) < _SAMPLE_BYTES:
                sample.append(line[:1024])
        else:
            scan.utf8_lines += 1


def _detect_encoding(scan: _Scan) -> str:
    """UTF-8 (with BOM or not) unless most non-ASCII lines are not UTF-8; then cp1252 or
    latin-1. A few bad lines in either case become DECODE_ERROR rows."""
    if scan.head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if scan.other_lines == 0 or scan.utf8_lines > scan.other_lines:
        return "utf-8"
    return _legacy_encoding(scan.sample)


def _legacy_encoding(sample: list[bytes]) -> str:
    """cp1252 when it decodes the non-UTF-8 lines (all but a few stray ones); otherwise what
    charset-normalizer prefers between cp1252 and latin-1 (latin-1 decodes any byte)."""
    undecodable = 0
    for line in sample:
        try:
            line.decode("cp1252")
        except UnicodeDecodeError:
            undecodable += 1
    if undecodable * 10 <= len(sample):
        return "cp1252"
    from charset_normalizer import from_bytes

    best = from_bytes(b"\n".join(sample), cp_isolation=["cp1252", "latin_1"]).best()
    return "cp1252" if best is not None and best.encoding == "cp1252" else "latin-1"


def _given_encoding(name: str) -> str:
    """The codec for an encoding named in the mapping; ReadError if unusable line by line."""
    try:
        codec = codecs.lookup(name).name
    except LookupError as exc:
        raise ReadError(
            f"unknown encoding {name!r}; use auto, utf-8, cp1252, latin-1 or a Python codec name"
        ) from exc
    try:
        ascii_compatible = '\r\n;,\t|"azAZ09'.encode(codec) == b'\r\n;,\t|"azAZ09'
    except UnicodeError:
        ascii_compatible = False
    if not ascii_compatible:
        raise ReadError(
            f"encoding {name!r} is not supported for text files (its line breaks are not single "
            "bytes); save the file as UTF-8"
        )
    return codec


def _text_encoding(path: Path, fmt: FormatSpec, scan: _Scan) -> tuple[str, str, bool]:
    """(encoding name for ReadInfo, codec to decode lines with, strip a leading BOM?)."""
    given = fmt.encoding.strip()
    if given.lower() != "auto":
        codec = _given_encoding(given)
        if codec == "utf-8-sig":  # the BOM is dropped once, not at the start of every line
            return given, "utf-8", True
        return given, codec, codec == "utf-8"
    for magic, what in _MAGIC:
        if scan.head.startswith(magic):
            raise ReadError(f"{path.name} cannot be read as delimited text: it is {what}")
    encoding = _detect_encoding(scan)
    if encoding == "utf-8-sig":
        return encoding, "utf-8", True
    return encoding, encoding, False


# --------------------------------------------------------------------------------------- CSV


def _open_csv(path: Path, fmt: FormatSpec) -> SourceReader:
    scan = _scan(path, classify=fmt.encoding.strip().lower() == "auto")
    encoding, codec, strip_bom = _text_encoding(path, fmt, scan)
    lines = _csv_sample(path, codec, strip_bom)
    if not lines:
        raise ReadError(f"{path.name} has only blank lines: there is no header and no data")
    delimiter = _given_delimiter(fmt.delimiter) or _sniff_delimiter(
        [line for line in lines if line.strip()]
    )
    columns, header_lines = _csv_header(path, lines, delimiter)
    info = ReadInfo(
        format="csv",
        encoding=encoding,
        delimiter=delimiter,
        columns=columns,
        sha256=scan.sha256,
        size_bytes=scan.size,
    )
    return _CsvReader(path, info, codec=codec, strip_bom=strip_bom, header_lines=header_lines)


def _csv_sample(path: Path, codec: str, strip_bom: bool) -> list[str]:
    """The file's first physical lines, up to the SNIFF_LINES-th non-blank one ([] if none)."""
    lines: list[str] = []
    nonblank = 0
    with _open_binary(path) as f:
        pieces = _line_pieces(f, strip_bom=strip_bom)
        for text in _decoded_lines(pieces, codec, codec, {}):
            lines.append(text)
            if text.strip():
                nonblank += 1
                if nonblank >= SNIFF_LINES:
                    break
    return lines if nonblank else []


def _given_delimiter(value: str) -> str | None:
    if value.strip().lower() == "auto":
        return None
    delimiter = _DELIMITER_NAMES.get(value.strip().lower(), value)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ReadError(
            f"delimiter {value!r} is not usable: give one character (';', ',', '|'), 'tab', or auto"
        )
    return delimiter


def _sniff_delimiter(lines: list[str]) -> str:
    """The candidate whose header has more than one column and that most records agree with.

    Ties go to the earlier candidate in DELIMITERS. With a single column everywhere, the
    candidate that splits the fewest records wins the same way.
    """
    best = DELIMITERS[0]
    best_key: tuple[bool, float, int] | None = None
    for rank, candidate in enumerate(DELIMITERS):
        widths: list[int] = []
        try:
            for fields in csv.reader(lines, delimiter=candidate):
                if len(fields) > 1 or (fields and fields[0].strip()):
                    widths.append(len(fields))
        except csv.Error:
            pass
        if not widths:
            continue
        share = sum(1 for width in widths if width == widths[0]) / len(widths)
        key = (widths[0] > 1, share, -rank)
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    return best


def _csv_header(path: Path, lines: list[str], delimiter: str) -> tuple[list[str], int]:
    """Parse the first non-blank record as the header: (column names, physical lines used)."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        for fields in reader:
            if len(fields) > 1 or (fields and fields[0].strip()):
                break
        else:
            raise ReadError(f"{path.name} has no header line; the first line must name columns")
    except csv.Error as exc:
        raise ReadError(
            f"{path.name}: cannot read the header (line {reader.line_num}): {exc}; check its quotes"
        ) from None
    line_no = reader.line_num
    return _check_header(path, [_clean_name(name) for name in fields], line_no), line_no


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


class _CsvReader(SourceReader):
    def __init__(
        self, path: Path, info: ReadInfo, *, codec: str, strip_bom: bool, header_lines: int
    ) -> None:
        super().__init__(path, info)
        self._codec = codec
        self._strip_bom = strip_bom
        self._header_lines = header_lines

    def _rows(self) -> Generator[RawRow, None, None]:
        """Parse the records with one csv reader fed straight from the decoded lines.

        The csv module counts the lines it takes (``reader.line_num``), so each record's line
        numbers and raw text come from the window of decoded lines without any per-line Python
        code. A record that spans more than MAX_RECORD_LINES lines or runs into the end of the
        file (it takes the sentinel line that follows the last one) has an unterminated quote:
        its first line becomes an error row and a new csv reader starts on the next line.
        """
        columns = tuple(self.info.columns)
        ncols = len(columns)
        header_key = [name.lower() for name in columns]
        first_key = header_key[0]
        delimiter = self.info.delimiter or ";"
        encoding = _message_encoding(self.info, self._codec)
        limit = MAX_RECORD_LINES
        header_lines = self._header_lines
        with _open_binary(self.path) as f:
            bad: dict[int, str] = {}  # line number -> decoding problem, until its row is made
            window = _LineWindow()
            prev = header_lines  # the last line used by the rows made so far
            total = sys.maxsize  # the number of lines in the file, once known
            cur_base, cur_lines = 0, window.last  # the newest decoded lines follow line cur_base

            def decoded() -> Iterator[list[str]]:
                nonlocal total, cur_base, cur_lines
                base, skip = 0, header_lines
                pieces = _line_pieces(f, strip_bom=self._strip_bom, on_read=self._advance)
                for lines in _decoded_pieces(pieces, self._codec, encoding, bad):
                    if skip:
                        if len(lines) <= skip:
                            skip -= len(lines)
                            base += len(lines)
                            continue
                        lines, base, skip = lines[skip:], base + skip, 0
                        for no in [no for no in bad if no <= header_lines]:
                            del bad[no]
                    window.add(base, lines, keep_from=prev + 1)
                    cur_base, cur_lines = base, lines
                    yield lines
                    base += len(lines)
                total = base
                window.add(base, [_SENTINEL], keep_from=prev + 1)
                cur_base, cur_lines = base, window.last
                yield cur_lines

            source = decoded()
            reader = csv.reader(chain.from_iterable(source), delimiter=delimiter, strict=True)
            offset = header_lines  # line number = offset + reader.line_num
            while True:
                try:
                    for fields in reader:
                        end = offset + reader.line_num
                        first = prev + 1
                        prev = end
                        if end == first:  # one physical line: the common case
                            i = end - cur_base - 1
                            text = (cur_lines[i] if i >= 0 else window.line(end)).rstrip("\r\n")
                            message = bad.pop(end, None) if bad else None
                        elif end - first < limit and end <= total:
                            text = window.text(first, end)
                            message = _first_problem(bad, first, end) if bad else None
                        else:
                            break  # a quote left open
                        if message is not None:
                            yield RawRow(first, text, None, ("DECODE_ERROR", message))
                        elif (n := len(fields)) == ncols and (ncols > 1 or text.strip()):
                            if fields[0].strip().lower() == first_key and (
                                [value.strip().lower() for value in fields] == header_key
                            ):
                                problem = ("REPEATED_HEADER", f"line {first} repeats the header")
                                yield RawRow(first, text, None, problem)
                            else:
                                values = dict(zip(columns, fields, strict=True))
                                yield RawRow(first, text, values, None)
                        elif n > 1 or text.strip():
                            problem = ("COLUMN_COUNT", f"expected {ncols} columns, found {n}")
                            yield RawRow(first, text, None, problem)
                        # else: a blank line (or the sentinel), skipped
                    else:
                        break  # end of the file
                    problem = (
                        "UNTERMINATED_QUOTE",
                        f"a quoted field opened on line {first} is not closed within {limit} "
                        "lines; the line is kept as raw text and reading goes on with the next "
                        "line",
                    )
                except csv.Error as exc:
                    end = offset + reader.line_num
                    first = prev + 1
                    prev = end
                    if end == first:  # e.g. '"a"b': text after a closing quote
                        problem = ("MALFORMED_CSV", f"line {first}: {exc}")
                        bad.pop(first, None)
                        yield RawRow(first, window.line(first).rstrip("\r\n"), None, problem)
                        continue
                    # A quote opened on line `first` was "closed" by a stray quote further down
                    # (or the file ended): the lines in between are not one record.
                    why = "before the end of the file" if end > total else f"properly ({exc})"
                    problem = (
                        "UNTERMINATED_QUOTE",
                        f"a quoted field opened on line {first} is not closed {why}; the line is "
                        "kept as raw text and reading goes on with the next line",
                    )
                # A broken record spanning lines first..end: its first line becomes an error
                # row, and a new csv reader starts again on the next line.
                bad.pop(first, None)
                yield RawRow(first, window.line(first).rstrip("\r\n"), None, problem)
                replay = window.lines_from(first + 1)
                reader = csv.reader(
                    chain(replay, chain.from_iterable(source)), delimiter=delimiter, strict=True
                )
                offset = prev = first
        self._position = self.info.size_bytes


def _first_problem(bad: dict[int, str], first: int, last: int) -> str | None:
    """Pop the decoding problems of lines first..last; return the first one (None if none)."""
    found = [bad.pop(no, "") for no in range(first, last + 1)]
    return next((message for message in found if message), None)


_SENTINEL: Final = "\n"  # fed after the last line: taken inside a record only if a quote is open


class _LineWindow:
    """The decoded lines that the current record may still use, by absolute line number."""

    def __init__(self) -> None:
        self._lists: deque[tuple[int, list[str]]] = deque()  # (number of the line before, lines)
        self.last: list[str] = []

    def add(self, base: int, lines: list[str], *, keep_from: int) -> None:
        """Append ``lines`` (the first being line base + 1); forget lists that end before
        line ``keep_from``."""
        lists = self._lists
        while lists and lists[0][0] + len(lists[0][1]) < keep_from:
            lists.popleft()
        lists.append((base, lines))
        self.last = lines

    def line(self, no: int) -> str:
        for base, lines in reversed(self._lists):
            if no > base:
                return lines[no - base - 1]
        raise IndexError(no)  # pragma: no cover - the csv reader only returns lines it was given

    def text(self, first: int, last: int) -> str:
        """Lines first..last joined, without the final line break."""
        return "".join(self.line(no) for no in range(first, last + 1)).rstrip("\r\n")

    def lines_from(self, first: int) -> list[str]:
        """Every line from ``first`` to the newest one."""
        out: list[str] = []
        for base, lines in self._lists:
            if base + len(lines) >= first:
                out.extend(lines[max(0, first - base - 1) :])
        return out


# ------------------------------------------------------------------------------- JSON Lines


def _open_jsonl(path: Path, fmt: FormatSpec) -> SourceReader:
    scan = _scan(path, classify=fmt.encoding.strip().lower() == "auto")
    encoding, codec, strip_bom = _text_encoding(path, fmt, scan)
    columns: dict[str, None] = {}
    objects = 0
    with _open_binary(path) as f:
        for line in _decoded_lines(_line_pieces(f, strip_bom=strip_bom), codec, codec, {}):
            text = line.strip()
            if not text:
                continue
            try:
                obj = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(obj, dict):
                columns.update(dict.fromkeys(obj))
                objects += 1
                if objects >= JSONL_COLUMN_SAMPLE:
                    break
    info = ReadInfo(
        format="jsonl",
        encoding=encoding,
        delimiter=None,
        columns=list(columns),
        sha256=scan.sha256,
        size_bytes=scan.size,
    )
    return _JsonlReader(path, info, codec=codec, strip_bom=strip_bom)


class _JsonlReader(SourceReader):
    def __init__(self, path: Path, info: ReadInfo, *, codec: str, strip_bom: bool) -> None:
        super().__init__(path, info)
        self._codec = codec
        self._strip_bom = strip_bom

    def _rows(self) -> Generator[RawRow, None, None]:
        loads = json.loads
        encoding = _message_encoding(self.info, self._codec)
        with _open_binary(self.path) as f:
            bad: dict[int, str] = {}
            pieces = _line_pieces(f, strip_bom=self._strip_bom, on_read=self._advance)
            for no, line in enumerate(_decoded_lines(pieces, self._codec, encoding, bad), 1):
                text = line.rstrip("\r\n")
                if bad:
                    message = bad.pop(no, None)
                    if message is not None:
                        yield RawRow(no, text, None, ("DECODE_ERROR", message))
                        continue
                if not text.strip():
                    continue
                try:
                    obj = loads(text)
                except json.JSONDecodeError as exc:
                    yield RawRow(
                        no,
                        text,
                        None,
                        ("INVALID_JSON", f"line {no}: {exc.msg} at column {exc.colno}"),
                    )
                    continue
                except RecursionError:
                    yield RawRow(no, text, None, ("INVALID_JSON", f"line {no}: nested too deep"))
                    continue
                if isinstance(obj, dict):
                    yield RawRow(no, text, obj, None)
                else:
                    yield RawRow(no, text, None, _not_an_object(f"line {no}", obj))
        self._position = self.info.size_bytes


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _not_an_object(where: str, obj: object) -> tuple[str, str]:
    return ("NOT_AN_OBJECT", f"{where} is {_json_kind(obj)}, not an object")


def _message_encoding(info: ReadInfo, codec: str) -> str:
    """The encoding named in DECODE_ERROR messages."""
    return "utf-8" if codec == "utf-8" else (info.encoding or codec)


# ------------------------------------------------------------------------------------- JSON


class _Utf8Stream:
    """A JSON file's bytes for ijson: decoded with ``codec`` (a bad byte is a ReadError) and
    handed on as UTF-8, a BOM dropped by the ``utf-8-sig`` codec.

    Keeps the line and column reached, and from the raw byte offset ``exact_from`` on reads one
    byte at a time, so that a parse error is raised at the very byte where ijson finds it.
    """

    def __init__(
        self,
        f: IO[bytes],
        path: Path,
        codec: str,
        *,
        digest: Callable[[bytes], object] | None = None,
        on_read: Callable[[int], None] | None = None,
        exact_from: int | None = None,
    ) -> None:
        self._f = f
        self._path = path
        self._codec = codec
        self._decoder = codecs.getincrementaldecoder(codec)("strict")
        self._digest = digest
        self._on_read = on_read
        self._exact_from = exact_from
        self.offset = 0  # raw bytes read
        self.last_start = 0  # raw offset where the latest read began
        self.line = 1  # where the text read so far ends
        self.column = 0
        self.blank = True  # nothing but JSON white space so far
        self.eof = False

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            return b""
        size = CHUNK_BYTES if size < 0 else size
        if self._exact_from is not None:
            ahead = self._exact_from - self.offset
            size = min(size, ahead) if ahead > 0 else 1
        data = self._f.read(size)
        if self._digest is not None:
            self._digest(data)
        if self._on_read is not None:
            self._on_read(len(data))
        try:
            text = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            where = self.offset + max(exc.start, 0)
            raise ReadError(
                f"{self._path.name}: bytes not valid {self._codec} near byte {where}; save the "
                "file as UTF-8 or set format.encoding"
            ) from None
        self.last_start = self.offset
        self.offset += len(data)
        self.eof = not data
        if breaks := text.count("\n"):
            self.line += breaks
            self.column = len(text) - text.rfind("\n") - 1
        else:
            self.column += len(text)
        if self.blank and text.strip(" \t\n\r"):
            self.blank = False
        return data if self._codec == "utf-8" else text.encode("utf-8")


class _JsonShape:
    """Follows ijson's parse events through a whole document: checks that the records are an
    array (at ``records_path``) and collects the records' keys in order of first appearance."""

    def __init__(self, path: Path, records_path: str | None) -> None:
        self._name = path.name
        self._records_path = records_path
        self._parts = [part for part in (records_path or "").split(".") if part]
        self.columns: dict[str, None] = {}
        self.started = False  # an event was seen
        self.done = False  # the document's top-level value is complete
        # Numbers that ijson's use_float=True mishandles (integers beyond 64 bits, floats beyond
        # the double range): the records are then read with Decimals and converted.
        self.odd_numbers = False

    def _error(self, message: str) -> ReadError:
        return ReadError(f"{self._name}{message}")

    def check(self, events: Iterable[tuple[str, Any]]) -> None:
        parts, n = self._parts, len(self._parts)
        columns = self.columns
        level = 0  # the value of parts[:level] comes next (or is being walked)
        depth = 0  # containers open before the event
        expect = True  # the next event starts the value of parts[:level]
        keys: list[str] = []  # keys of the object searched for parts[level]
        records = False  # inside the array of records
        array_keys: list[str] | None = None  # for a top-level object without records_path
        pending: str | None = None
        for event, value in events:
            if expect:
                expect = False
                self.started = True
                if level < n:
                    if event != "start_map":
                        where = ".".join(parts[:level]) or "the top level"
                        raise self._error(
                            f": format.records_path is {self._records_path!r} but {where} is "
                            "not an object; fix records_path, or remove it if the file is an "
                            "array of records"
                        )
                    keys = []
                elif event != "start_array":
                    if n:
                        raise self._error(
                            f": {self._records_path!r} is not an array of records; set "
                            "format.records_path to the key that holds the array of records"
                        )
                    if event != "start_map":
                        raise self._error(
                            f" is not a JSON array of records (it is {_json_kind(value)}); "
                            "export the records as an array, or as JSON Lines"
                        )
                    array_keys = []
                else:
                    records = True
            if event == "map_key":
                if records and depth == n + 2 and value not in columns:
                    columns[value] = None  # a key of a record
                elif level < n and depth == level + 1:
                    if value == parts[level]:
                        level += 1
                        expect = True
                    elif len(keys) < 20:
                        keys.append(value)
                elif array_keys is not None and depth == 1:
                    pending = value
                continue
            if event in ("start_map", "start_array"):
                if pending is not None and array_keys is not None and event == "start_array":
                    array_keys.append(pending)
                depth += 1
                if depth > _MAX_JSON_DEPTH:
                    raise self._error(
                        f": values nested more than {_MAX_JSON_DEPTH} levels deep; export the "
                        "data with less nesting"
                    )
            elif event in ("end_map", "end_array"):
                depth -= 1
                self.done = depth == 0
                if records and depth == n:
                    records = False
                if event == "end_map" and level < n and depth == level:
                    shown = ", ".join(keys) or "none"
                    where = ".".join(parts[:level]) or "the top level"
                    raise self._error(
                        f": no key {parts[level]!r} in {where} (keys: {shown}); set "
                        "format.records_path to the key that holds the array of records"
                    )
                if array_keys is not None and depth == 0:
                    hint = (
                        f" (keys holding an array: {', '.join(array_keys[:20])})"
                        if array_keys
                        else ""
                    )
                    raise self._error(
                        " is a JSON object, not an array of records; set format.records_path "
                        f"to the key that holds the records{hint}"
                    )
            elif event == "number" and not self.odd_numbers:
                if isinstance(value, int):
                    self.odd_numbers = not -(2**63) <= value < 2**63
                else:
                    self.odd_numbers = not math.isfinite(value)
            pending = None


def _check_json(
    path: Path, codec: str, records_path: str | None, digest: Callable[[bytes], object]
) -> _JsonShape:
    """Parse the whole document once: its shape, its records' keys, the digest of its bytes."""
    with _open_binary(path) as f:
        stream = _Utf8Stream(f, path, codec, digest=digest)
        shape = _JsonShape(path, records_path)
        try:
            shape.check(ijson.basic_parse(stream, buf_size=min(CHUNK_BYTES, _JSON_BUF)))
        except ijson.JSONError:
            failed_from = stream.last_start
        else:
            while chunk := f.read(_JSON_BUF):  # nothing should be left; hash it all the same
                digest(chunk)
            return shape
    raise _json_syntax_error(path, codec, records_path, failed_from)


def _json_syntax_error(
    path: Path, codec: str, records_path: str | None, failed_from: int
) -> ReadError:
    """The ReadError for a document ijson cannot parse, located by parsing it again one byte at
    a time from the read where the error appeared."""
    with _open_binary(path) as f:
        stream = _Utf8Stream(f, path, codec, exact_from=failed_from)
        shape = _JsonShape(path, records_path)
        try:
            shape.check(ijson.basic_parse(stream, buf_size=min(CHUNK_BYTES, _JSON_BUF)))
        except ijson.JSONError as exc:
            problem = str(exc).split("\n", 1)[0].removeprefix("parse error: ").rstrip(".")
        else:  # pragma: no cover - the same bytes parse the same way
            problem = "cannot be parsed"
    if stream.blank and not shape.started:
        return ReadError(f"{path.name} holds no JSON, only blank space; export the data again")
    if shape.done:
        problem = "unexpected data after the end of the JSON document"
    elif stream.eof:
        problem = "the document ends before it is complete"
    return ReadError(
        f"{path.name} is not valid JSON: {problem} at line {stream.line}, column "
        f"{max(stream.column, 1)}; fix the file or export it again"
    )


def _open_json(path: Path, fmt: FormatSpec) -> SourceReader:
    given = fmt.encoding.strip()
    if given.lower() == "auto":
        with _open_binary(path) as f:
            bom = f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
        encoding = codec = "utf-8-sig" if bom else "utf-8"
    else:
        encoding, codec = given, _given_encoding(given)
    digest = hashlib.sha256()
    shape = _check_json(path, codec, fmt.records_path, digest.update)
    info = ReadInfo(
        format="json",
        encoding=encoding,
        delimiter=None,
        columns=list(shape.columns),
        sha256=digest.hexdigest(),
        size_bytes=path.stat().st_size,
    )
    parts = [part for part in (fmt.records_path or "").split(".") if part]
    return _JsonReader(
        path,
        info,
        codec=codec,
        prefix=".".join([*parts, "item"]),
        use_float=not shape.odd_numbers,
    )


class _JsonReader(SourceReader):
    def __init__(
        self, path: Path, info: ReadInfo, *, codec: str, prefix: str, use_float: bool
    ) -> None:
        super().__init__(path, info)
        self._codec = codec
        self._prefix = prefix  # ijson's name for the records: "item", "data.orders.item"
        self._use_float = use_float

    def _rows(self) -> Generator[RawRow, None, None]:
        dumps, loads = json.dumps, json.loads
        use_float = self._use_float
        with _open_binary(self.path) as f:
            stream = _Utf8Stream(f, self.path, self._codec, on_read=self._advance)
            records = ijson.items(
                stream, self._prefix, buf_size=min(CHUNK_BYTES, _JSON_BUF), use_float=use_float
            )
            for no, record in enumerate(records, 1):
                # Without use_float, non-integers come as Decimal: as floats, like json.load.
                text = dumps(record, ensure_ascii=False, default=str if use_float else float)
                if not use_float:
                    record = loads(text)
                if isinstance(record, dict):
                    yield RawRow(no, text, record, None)
                else:
                    yield RawRow(no, text, None, _not_an_object(f"record {no}", record))
        self._position = self.info.size_bytes


# ------------------------------------------------------------------------------------ Excel


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with _open_binary(path) as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _last_filled(row: tuple[Any, ...]) -> int:
    """1-based position of the row's last non-blank cell (0 for an empty row)."""
    n = len(row)
    while n and _is_blank(row[n - 1]):
        n -= 1
    return n


class _XlsxReader(SourceReader):
    def __init__(
        self,
        path: Path,
        info: ReadInfo,
        *,
        sheet: str | None,
        workbook: Any,
        header_row: int,
        expected_rows: int | None,
    ) -> None:
        super().__init__(path, info)
        self._sheet = sheet
        self._workbook = workbook  # kept open from open_reader for the first iteration
        self._header_row = header_row
        self._expected_rows = expected_rows

    def close(self) -> None:
        """Stop any iteration in progress and close the workbook."""
        super().close()
        if self._workbook is not None:
            self._workbook.close()
            self._workbook = None

    def _rows(self) -> Generator[RawRow, None, None]:
        workbook = self._workbook if self._workbook is not None else _load_workbook(self.path)
        self._workbook = None
        try:
            sheet = _pick_sheet(self.path, workbook, self._sheet)
            sheet.reset_dimensions()  # declared dimensions may be wrong: read every cell
            columns = self.info.columns
            ncols = len(columns)
            header_key = [name.lower() for name in columns]
            size = self.info.size_bytes
            expected = self._expected_rows or 0
            dumps = json.dumps
            first = self._header_row + 1
            rows = sheet.iter_rows(min_row=first, values_only=True)
            for no, row in enumerate(rows, first):
                if expected:
                    self._position = size * min(no, expected) // expected
                filled = _last_filled(row)
                if not filled:
                    continue
                cells = list(row[: max(filled, min(len(row), ncols))])
                text = dumps(cells, ensure_ascii=False, default=str)
                if filled > ncols:
                    error = ("COLUMN_COUNT", f"expected {ncols} columns, found {filled}")
                    yield RawRow(no, text, None, error)
                    continue
                if (
                    filled == ncols
                    and all(isinstance(v, str) for v in cells[:ncols])
                    and ([str(v).strip().lower() for v in cells[:ncols]] == header_key)
                ):
                    error = ("REPEATED_HEADER", f"row {no} repeats the header")
                    yield RawRow(no, text, None, error)
                    continue
                yield RawRow(
                    no, text, dict(zip(columns, chain(cells, repeat(None)), strict=False)), None
                )
        finally:
            workbook.close()
        self._position = self.info.size_bytes


def _load_workbook(path: Path) -> Any:
    from openpyxl import load_workbook

    try:
        return load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds of error for a broken workbook
        raise ReadError(
            f"{path.name} cannot be opened as an Excel workbook ({type(exc).__name__}); open it "
            "in Excel and save it again as .xlsx, or export the sheet as CSV"
        ) from exc


def _pick_sheet(path: Path, workbook: Any, name: str | None) -> Any:
    sheets = list(workbook.worksheets)
    if name is None:
        if not sheets:
            raise ReadError(f"{path.name} has no worksheet")
        return sheets[0]
    for sheet in sheets:
        if sheet.title == name:
            return sheet
    titles = ", ".join(repr(sheet.title) for sheet in sheets)
    raise ReadError(f"{path.name} has no sheet {name!r} (sheets: {titles}); fix format.sheet")


def _open_xlsx(path: Path, fmt: FormatSpec) -> SourceReader:
    sha256, size = _hash_file(path)
    workbook = _load_workbook(path)
    try:
        sheet = _pick_sheet(path, workbook, fmt.sheet)
        declared_rows = sheet.max_row
        sheet.reset_dimensions()
        header_row = 0
        header: tuple[Any, ...] = ()
        rows = sheet.iter_rows(values_only=True)
        for no, row in enumerate(rows, 1):
            if _last_filled(row):
                header_row, header = no, row
                break
        if hasattr(rows, "close"):
            rows.close()  # let go of the sheet's XML stream
        if not header_row:
            raise ReadError(f"{path.name}: sheet {sheet.title!r} is empty; there is no header")
        names = [
            "" if value is None else _clean_name(value) for value in header[: _last_filled(header)]
        ]
        columns = _check_header(path, names, header_row)
    except BaseException:
        workbook.close()
        raise
    info = ReadInfo(
        format="xlsx",
        encoding=None,
        delimiter=None,
        columns=columns,
        sha256=sha256,
        size_bytes=size,
    )
    return _XlsxReader(
        path,
        info,
        sheet=fmt.sheet,
        workbook=workbook,
        header_row=header_row,
        expected_rows=declared_rows if isinstance(declared_rows, int) else None,
    )


# ---------------------------------------------------------------------------------- Parquet


class _ParquetReader(SourceReader):
    def __init__(self, path: Path, info: ReadInfo, *, rows: int) -> None:
        super().__init__(path, info)
        self._expected_rows = rows

    def _rows(self) -> Generator[RawRow, None, None]:
        import pyarrow.parquet as pq

        dumps = json.dumps
        size = self.info.size_bytes
        expected = self._expected_rows
        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow's errors carry no common base worth naming
            raise ReadError(f"{self.path.name} cannot be read as Parquet: {exc}") from exc
        no = 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                records: list[dict[str, Any]] = batch.to_pylist()
                for record in records:
                    no += 1
                    yield RawRow(no, dumps(record, ensure_ascii=False, default=str), record, None)
                if expected:
                    self._position = size * min(no, expected) // expected
        except ReadError:
            raise
        except Exception as exc:
            raise ReadError(
                f"{self.path.name}: Parquet data unreadable after row {no}: {exc}"
            ) from exc
        finally:
            parquet.close()
        self._position = size


def _open_parquet(path: Path) -> SourceReader:
    import pyarrow.parquet as pq

    sha256, size = _hash_file(path)
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's errors carry no common base worth naming
        raise ReadError(
            f"{path.name} cannot be read as Parquet ({exc}); export the data again"
        ) from exc
    try:
        columns = [str(name) for name in parquet.schema_arrow.names]
        rows = int(parquet.metadata.num_rows)
    finally:
        parquet.close()
    _check_header(path, columns, 1)
    info = ReadInfo(
        format="parquet",
        encoding=None,
        delimiter=None,
        columns=columns,
        sha256=sha256,
        size_bytes=size,
    )
    return _ParquetReader(path, info, rows=rows)
