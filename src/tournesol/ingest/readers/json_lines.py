"""JSON Lines (.jsonl, .ndjson): one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Final

from tournesol.ingest.readers.base import (
    RawRow,
    ReadInfo,
    SourceReader,
    _not_an_object,
    _open_binary,
)
from tournesol.ingest.readers.encodings import (
    _decoded_lines,
    _line_pieces,
    _message_encoding,
    _scan,
    _text_encoding,
)
from tournesol.ingest.schemas import FormatSpec

JSONL_COLUMN_SAMPLE: Final = 1000


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
