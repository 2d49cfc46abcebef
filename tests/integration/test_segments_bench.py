"""The segments benchmark (bench/segments.py): its definitions are the ones its docstring
documents, its transactions are consistent (lines add up to their ticket, customers mostly buy
from their home brand), and a tiny run of the whole benchmark loads PostgreSQL, copies it into
SQLite, refreshes features and RFM on both, and counts the ten definitions with the same sizes
on both databases.

The loader is PostgreSQL's (COPY, as bench/api_load.py's): the end-to-end run needs
TOURNESOL_TEST_POSTGRES_URL and measures both databases itself."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import uuid
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

from tests.conftest import postgres_url

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "segments.py"


def _import_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("segments_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _import_bench()


def test_ten_documented_definitions_that_validate() -> None:
    from tournesol.segments.compiler import validate

    found = bench.definitions()
    assert [d.number for d in found] == list(range(1, 11))
    assert len({d.code for d in found}) == 10
    assert bench.SAVED_SEGMENT in {d.code for d in found}
    for d in found:
        assert d.words and d.code in bench.__doc__
        validate(d.definition)
    # the saved segment is named by another definition
    assert any(f'"segment": "{bench.SAVED_SEGMENT}"' in json.dumps(d.definition) for d in found)


def test_transactions_add_up_and_follow_the_home_brand() -> None:
    today = date(2026, 11, 23)
    items = bench.products(3)
    assert len(items) == len(bench.CATEGORIES) * bench.PRODUCTS_PER_CATEGORY
    cumulative = [float(i + 1) for i in range(500)]  # 500 customers, equal weights
    chunks = list(
        bench.transaction_chunks(
            brand_ids=[11, 12, 13], tickets=1, orders=2, total=20_000, cumulative=cumulative,
            seed=3, today=today, line_days=365, items=items, chunk_rows=5_000,
        )
    )  # fmt: skip
    assert sum(c.transactions for c in chunks) == 20_000
    rows = [line.split("\t") for c in chunks for line in c.transaction_text.splitlines()]
    lines = [line.split("\t") for c in chunks for line in c.line_text.splitlines()]
    assert len(lines) == sum(c.lines for c in chunks)
    totals = {row[0]: Decimal(row[9]) for row in rows}
    detailed: dict[str, Decimal] = {}
    for line in lines:
        assert line[5] in bench.CATEGORIES
        detailed[line[1]] = detailed.get(line[1], Decimal(0)) + Decimal(line[8])
    assert detailed and all(totals[tid] == amount for tid, amount in detailed.items())
    # lines only for the last year's transactions, every one of them
    recent = {row[0] for row in rows if row[8][:10] >= "2025-11-23"}
    assert set(detailed) == recent
    days = [row[8][:10] for row in rows]
    assert days == sorted(days) and days[-1] < today.isoformat()
    home = sum(row[7] == str(11 + bench.home_brand(int(row[3]))) for row in rows)
    assert 0.83 < home / len(rows) < 0.87
    kinds = Counter(row[4] for row in rows)
    assert kinds["ticket"] > kinds["order"] > kinds["return"] > 0
    stores = {row[6] for row in rows if row[5] == "store"}
    assert stores <= {f"M{n:03d}" for n in range(1, 61)}
    assert all(row[6] == "\\N" for row in rows if row[5] == "web")


@pytest.mark.slow
def test_a_tiny_run_counts_the_same_on_both_databases(tmp_path: Path) -> None:
    """The whole benchmark, tiny: its own PostgreSQL database and SQLite file, both dropped
    at the end; the figures as JSON and as the printed table."""
    base = postgres_url()
    if base is None:
        pytest.skip("needs TOURNESOL_TEST_POSTGRES_URL")
    from sqlalchemy.engine import make_url

    server = make_url(base).set(database="postgres").render_as_string(hide_password=False)
    name = f"tournesol_segments_bench_test_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "figures.json"
    sqlite_path = tmp_path / "segments.db"
    done = subprocess.run(
        [
            sys.executable, str(BENCH), "--customers", "800", "--transactions", "12000",
            "--interactions", "4000", "--runs", "1", "--server-url", server,
            "--database", name, "--sqlite-path", str(sqlite_path), "--today", "2026-11-23",
            "--json", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    codes = [d.code for d in bench.definitions()]
    for backend in ("postgresql", "sqlite"):
        counts = figures[backend]["counts"]
        assert [c["code"] for c in counts] == codes
        for c in counts:
            assert c["skipped"] is None, c
            assert c["path"] in {"features", "raw", "mixed"}, c
            assert c["size"] >= 0 and len(c["seconds"]) == 1
        refresh = figures[backend]["refresh"]
        assert refresh["features"]["rows"] == 800
        assert set(refresh["rfm"]) == {label for label, _ in bench.RFM_RUNS}
    sizes = {
        backend: {c["code"]: c["size"] for c in figures[backend]["counts"]}
        for backend in ("postgresql", "sqlite")
    }
    assert sizes["postgresql"] == sizes["sqlite"]
    assert figures["sizes_differ"] == []
    assert sum(1 for size in sizes["postgresql"].values() if size > 0) >= 5
    # the table is printed last, on stdout, with every definition and the verdicts
    printed = done.stdout
    for number, code in enumerate(codes, 1):
        assert f"{number}. {code}" in printed
    assert "identical on both databases" in printed
    assert printed.rstrip().splitlines()[-1].startswith(("PASS", "FAIL"))
    with psycopg.connect(bench._api_load()._libpq(server), autocommit=True) as admin:
        assert not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
    assert not sqlite_path.exists()
