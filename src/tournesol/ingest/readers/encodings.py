"""Bytes and encodings: reading a file in line-aligned pieces, decoding them line by line,
and detecting or checking the encoding of text files."""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO, Final

from tournesol.ingest.readers.base import CHUNK_BYTES, ReadError, ReadInfo, _open_binary
from tournesol.ingest.schemas import FormatSpec

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


def _message_encoding(info: ReadInfo, codec: str) -> str:
    """The encoding named in DECODE_ERROR messages."""
    return "utf-8" if codec == "utf-8" else (info.encoding or codec)
