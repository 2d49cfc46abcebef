"""Normalization throughput: every customer record of the demo through every quality
normalizer (names, e-mail, phones, AFNOR address, business identifiers, birth date, score).

    .venv/bin/python bench/normalize_throughput.py [--persons 20000] [--workers 2]

The demo's customer files (loyalty, e-shop, contest, B2B) are generated, read and mapped
first (not timed); the reference data (postal codes, first names, disposable domains) is
loaded once (timed and printed apart); then the mapped records are normalized by
``--workers`` processes forked from that parent, their caches empty, each taking every
n-th record from the parent's memory (as the import normalizes what its own process read).
The timing includes starting the processes. The figures come last: records per
second with one process and with the workers.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tournesol.demo.generator import generate  # noqa: E402
from tournesol.ingest.readers import open_reader  # noqa: E402
from tournesol.ingest.rules import RowMapper, RowRejected  # noqa: E402
from tournesol.ingest.schemas import load_mapping  # noqa: E402
from tournesol.quality.record import normalize_customer, preload  # noqa: E402

Record = tuple[dict[str, Any], dict[str, tuple[str, ...]]]


def mapped_records(persons: int) -> list[Record]:
    """The demo's customer records as their mappings read them, before normalization, each
    with its mapping's date formats."""
    records: list[Record] = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate(Path(tmp), persons=persons)
        for demo_file in manifest.files:
            if demo_file.entity != "customer":
                continue
            mapping = load_mapping(demo_file.mapping)
            reader = open_reader(demo_file.path, mapping.format)
            mapper = RowMapper(mapping, reader.info.columns, normalize=False)
            for raw in reader:
                if raw.values is None:
                    continue
                try:
                    values = mapper.map(raw.line_no, raw.values).values
                    records.append((values, mapper.quality_dates))
                except RowRejected:
                    continue
    return records


_RECORDS: list[Record] = []  # set before the workers fork: they read it, nothing is pickled


def _normalize_share(share: tuple[int, int]) -> tuple[int, float]:
    """Normalize every ``step``-th record from ``start``; (records flagged, seconds)."""
    start, step = share
    started = time.perf_counter()
    flagged = 0
    for values, formats in _RECORDS[start::step]:
        if normalize_customer(values, date_formats=formats).flags:
            flagged += 1
    return flagged, time.perf_counter() - started


def run(records: list[Record], workers: int) -> tuple[float, float, int]:
    """Wall-clock seconds for ``workers`` processes (forked after the reference data is
    loaded, with empty caches) to normalize their share; also the slowest worker's own time."""
    _RECORDS[:] = records
    ctx = mp.get_context("fork")
    started = time.perf_counter()
    with ctx.Pool(workers) as pool:
        results = pool.map(_normalize_share, [(i, workers) for i in range(workers)])
    wall = time.perf_counter() - started
    return wall, max(seconds for _, seconds in results), sum(flagged for flagged, _ in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(f"generating and mapping the demo's customer files for {args.persons:,} persons...")
    records = mapped_records(args.persons)
    loading = time.perf_counter()
    preload()
    loading = time.perf_counter() - loading
    print(f"reference data loaded in {loading:.2f} s (once per process that normalizes)")
    one, _, flagged = run(records, 1)
    many, slowest, _ = run(records, args.workers)
    print(f"{len(records):,} customer records, {flagged:,} with at least one quality flag")
    print(f"1 process:   {len(records) / one:,.0f} records/s ({one:.2f} s)")
    print(
        f"{args.workers} processes: {len(records) / many:,.0f} records/s ({many:.2f} s; "
        f"the slowest worker normalized for {slowest:.2f} s)"
    )


if __name__ == "__main__":
    main()
