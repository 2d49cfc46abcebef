"""Parquet files, read in batches with pyarrow."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

from tournesol.ingest.readers.base import (
    RawRow,
    ReadError,
    ReadInfo,
    SourceReader,
    _check_header,
    _hash_file,
)

PARQUET_BATCH_ROWS: Final = 10_000


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
