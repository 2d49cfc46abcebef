"""Delimited text (CSV, TSV, TXT): delimiter sniffing, header, and records that may span
lines, with a stray quote costing one row."""

from __future__ import annotations

import csv
import sys
from collections import deque
from collections.abc import Generator, Iterator
from itertools import chain
from pathlib import Path
from typing import Final

from tournesol.ingest.readers.base import (
    RawRow,
    ReadError,
    ReadInfo,
    SourceReader,
    _check_header,
    _clean_name,
    _open_binary,
)
from tournesol.ingest.readers.encodings import (
    _decoded_lines,
    _decoded_pieces,
    _line_pieces,
    _message_encoding,
    _scan,
    _text_encoding,
)
from tournesol.ingest.schemas import FormatSpec

# A quoted CSV field may hold line breaks, but one that is still open after this many physical
# lines (or at the end of the file) is taken for a quote that was never closed: its first line
# becomes an UNTERMINATED_QUOTE row and parsing starts again on the next physical line, so a
# stray quote costs one row instead of swallowing the rest of the file.
MAX_RECORD_LINES: Final = 100
SNIFF_LINES: Final = 50
DELIMITERS: Final = (";", ",", "\t", "|")  # in order of preference when sniffing


_DELIMITER_NAMES: Final = {
    "tab": "\t",
    "\\t": "\t",
    "comma": ",",
    "semicolon": ";",
    "pipe": "|",
    "space": " ",
}


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
