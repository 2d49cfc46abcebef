"""JSON documents (.json): an array of records, at the top level or under
``format.records_path``, checked whole then streamed record by record with ijson."""

from __future__ import annotations

import codecs
import hashlib
import json
import math
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import IO, Any, Final

import ijson

from tournesol.ingest.readers.base import (
    CHUNK_BYTES,
    RawRow,
    ReadError,
    ReadInfo,
    SourceReader,
    _json_kind,
    _not_an_object,
    _open_binary,
)
from tournesol.ingest.readers.encodings import _given_encoding
from tournesol.ingest.schemas import FormatSpec

_JSON_BUF: Final = 64 * 1024  # bytes that ijson parses at a time
_MAX_JSON_DEPTH: Final = 500  # deeper JSON values are refused (json.dumps would recurse too far)


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
