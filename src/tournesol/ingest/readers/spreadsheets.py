"""Excel workbooks (.xlsx), read with openpyxl in read-only mode."""

from __future__ import annotations

import json
from collections.abc import Generator
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from tournesol.ingest.readers.base import (
    RawRow,
    ReadError,
    ReadInfo,
    SourceReader,
    _check_header,
    _clean_name,
    _hash_file,
)
from tournesol.ingest.schemas import FormatSpec


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
