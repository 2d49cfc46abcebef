"""The API load benchmark (bench/api_load.py): its loader writes, by COPY, the promised rows of
every table into a PostgreSQL database, consistent with each other and with the project's own
rules (identifier keys, name keys), and leaves the database as it found it in every other
respect (indexes rebuilt, sequences past the ids written); its search terms read back as the
customers they were drawn from; its accounting of acknowledged events holds; and a tiny run of
the whole benchmark against the real server stores every acknowledged event.

The loader is PostgreSQL-only (COPY, per-session replica role, index rebuild): the benchmark's
figure is a PostgreSQL one, so there is no SQLite case."""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from tests.conftest import FreshDatabase, postgres_url
from tournesol.customers.rules import name_keys
from tournesol.quality.emails import match_key
from tournesol.quality.phones import normalize_phone

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "api_load.py"
TODAY = date(2026, 11, 1)


def _import_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _import_bench()
SIZES = bench.Sizes(customers=600, interactions=6000, transactions=400, seed=3)


@pytest.fixture(scope="module")
def loaded(fresh_databases: FreshDatabase) -> tuple[str, Any, set[str]]:
    """A PostgreSQL schema, migrated then loaded; and its index names before the load."""
    url = fresh_databases.url("postgresql")
    with psycopg.connect(bench._libpq(url)) as conn:
        before = _indexes(conn)
    report = bench.load(url, SIZES, today=TODAY)
    return url, report, before


def _indexes(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    ).fetchall()
    return {name for (name,) in rows}


def _rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(bench._libpq(url)) as conn:
        return conn.execute(sql, params or None).fetchall()


def _one(url: str, sql: str, *params: Any) -> Any:
    return _rows(url, sql, *params)[0][0]


def test_every_table_gets_its_rows(loaded: tuple[str, Any, set[str]]) -> None:
    url, report, _ = loaded
    assert report.counts["customer"] == 600
    assert report.counts["source_record"] == 600
    assert report.counts["interaction"] == 6000
    assert report.counts["transaction"] == 400
    for table, count in report.counts.items():
        assert _one(url, f'SELECT COUNT(*) FROM "{table}"') == count, table
    # most customers have an e-mail, many a mobile, about half a card or an account
    assert report.counts["identifier"] >= 600 * 2
    assert 600 * 1.0 <= report.counts["consent"] <= 600 * 1.6  # e-mail, SMS, some postal
    assert report.counts["customer_name_key"] >= 600 * 2
    assert not report.foreign_keys_checked  # the tests connect as a superuser


def test_rows_point_at_rows_that_exist(loaded: tuple[str, Any, set[str]]) -> None:
    """Foreign keys were not checked row by row during the load: the data must hold them."""
    url, _, _ = loaded
    orphans = {
        "identifier": "SELECT COUNT(*) FROM identifier i LEFT JOIN customer c"
        " ON c.id = i.customer_id WHERE c.id IS NULL",
        "identifier record": "SELECT COUNT(*) FROM identifier i LEFT JOIN source_record r"
        " ON r.id = i.source_record_id WHERE r.id IS NULL",
        "record": "SELECT COUNT(*) FROM source_record r LEFT JOIN customer c"
        " ON c.id = r.customer_id WHERE c.id IS NULL",
        "record batch": "SELECT COUNT(*) FROM source_record r LEFT JOIN import_batch b"
        " ON b.id = r.first_batch_id WHERE b.id IS NULL OR b.source_id <> r.source_id",
        "name key": "SELECT COUNT(*) FROM customer_name_key k LEFT JOIN customer c"
        " ON c.id = k.customer_id WHERE c.id IS NULL",
        "consent": "SELECT COUNT(*) FROM consent x LEFT JOIN customer c"
        " ON c.id = x.customer_id LEFT JOIN source s ON s.id = x.source_id"
        " WHERE c.id IS NULL OR s.id IS NULL",
        "interaction": "SELECT COUNT(*) FROM interaction x LEFT JOIN customer c"
        " ON c.id = x.customer_id LEFT JOIN source s ON s.id = x.source_id"
        " LEFT JOIN brand b ON b.id = x.brand_id WHERE c.id IS NULL OR s.id IS NULL"
        " OR b.id IS NULL",
        "transaction": "SELECT COUNT(*) FROM transaction x LEFT JOIN customer c"
        " ON c.id = x.customer_id LEFT JOIN source s ON s.id = x.source_id"
        " WHERE c.id IS NULL OR s.id IS NULL",
    }
    for name, sql in orphans.items():
        assert _one(url, sql) == 0, name


def test_identifiers_and_name_keys_are_the_projects_own(
    loaded: tuple[str, Any, set[str]],
) -> None:
    url, _, _ = loaded
    customers = _rows(
        url,
        "SELECT id, last_name, maiden_name, email, phone_mobile, phone_fixed FROM customer",
    )
    ids: dict[int, dict[str, str]] = {}
    for cid, kind, value in _rows(url, "SELECT customer_id, kind, value FROM identifier"):
        assert kind not in ids.setdefault(cid, {}), (cid, kind)
        ids[cid][kind] = value
    keys: dict[int, set[str]] = {}
    for cid, key in _rows(url, "SELECT customer_id, key FROM customer_name_key"):
        keys.setdefault(cid, set()).add(key)
    for cid, last, maiden, email, mobile, fixed in customers:
        mine = ids.get(cid, {})
        if email:
            local, _, domain = email.partition("@")
            assert mine["email"] == match_key(local, domain)
        assert mine.get("phone_mobile") == mobile
        assert mine.get("phone_fixed") == fixed
        if mobile:
            assert normalize_phone(mobile).value == mobile
        assert len({"loyalty_card", "account_id"} & set(mine)) <= 1
        assert keys[cid] == name_keys((last, maiden))
    cards = [v for m in ids.values() for k, v in m.items() if k == "loyalty_card"]
    assert cards and all(len(c) == 13 and c.isdigit() for c in cards)
    # the commonest French surnames repeat, the tail is long
    names = _rows(url, "SELECT last_name, COUNT(*) FROM customer GROUP BY 1 ORDER BY 2 DESC")
    assert names[0][1] >= 3 and len(names) > 300


def test_history_covers_three_years_in_time_order(loaded: tuple[str, Any, set[str]]) -> None:
    url, _, _ = loaded
    low, high, customers = _rows(
        url, "SELECT MIN(occurred_at), MAX(occurred_at), COUNT(DISTINCT customer_id)"
        " FROM interaction",
    )[0]  # fmt: skip
    today = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC)
    assert today - timedelta(days=3 * 365 + 1) <= low < today - timedelta(days=3 * 365 - 5)
    assert today - timedelta(days=2) <= high < today
    assert 300 <= customers < 600  # log-normal weights: some customers have no history
    days = [d for (d,) in _rows(url, "SELECT occurred_at::date FROM interaction ORDER BY id")]
    assert days == sorted(days)  # written in time order, as events arrive
    top = _one(
        url, "SELECT MAX(n) FROM (SELECT COUNT(*) n FROM interaction GROUP BY customer_id) x"
    )
    assert top >= 10 * 6000 / 600  # a heavy tail
    channels = {c for (c,) in _rows(url, "SELECT DISTINCT channel FROM interaction")}
    assert channels == {"email", "sms", "web", "store", "phone", "postal"}
    kinds = dict(_rows(url, "SELECT kind, COUNT(*) FROM transaction GROUP BY 1"))
    assert set(kinds) == {"ticket", "order"} and kinds["ticket"] > kinds["order"]


def test_the_database_is_left_whole(loaded: tuple[str, Any, set[str]]) -> None:
    """Indexes dropped for the load are back, and new rows get new ids."""
    url, _, before = loaded
    with psycopg.connect(bench._libpq(url)) as conn:
        assert _indexes(conn) == before
        role = conn.execute("SHOW session_replication_role").fetchone()
        assert role == ("origin",)
        new_id = conn.execute(
            "INSERT INTO customer (customer_type, status, created_at, updated_at)"
            " VALUES ('customer', 'active', now(), now()) RETURNING id"
        ).fetchone()
        assert new_id == (601,)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute(
                "INSERT INTO identifier (customer_id, kind, value, created_at)"
                " VALUES (999999, 'email', 'x@example.org', now())"
            )
        conn.rollback()


def test_a_loaded_database_is_not_loaded_again(loaded: tuple[str, Any, set[str]]) -> None:
    url, _, _ = loaded
    with pytest.raises(SystemExit, match="already holds customers"):
        bench.load(url, SIZES, today=TODAY)


def test_search_terms_read_back_as_their_customer(loaded: tuple[str, Any, set[str]]) -> None:
    """What the benchmark types finds the customer it was drawn from, by the search rules."""
    from tournesol.customers.search import parse_query

    url, _, _ = loaded
    samples = bench.draw_samples(url, 300, seed=5)
    assert len(samples) == 300 and len({s.id for s in samples}) == 300
    paths = {
        "search": "/api/v1/customers",
        "detail": "/api/v1/customers/{id}",
        "timeline": "/api/v1/customers/{id}/timeline",
    }
    requests = bench.build_requests(samples, 5, paths)
    assert requests.detail[0] == f"/api/v1/customers/{samples[0].id}"
    assert requests.page[:2] == [requests.detail[0], requests.timeline[0]]
    assert len(requests.search) == 300
    assert {"name", "name typo", "phone", "email", "card"} <= set(requests.search_kinds)
    rng = random.Random(1)
    for sample in samples:
        for number in filter(None, (sample.phone_mobile, sample.phone_fixed)):
            typed = bench.phone_as_typed(number, rng)
            assert parse_query(typed).phone == number, typed
        if sample.email:
            local, _, domain = sample.email.partition("@")
            assert parse_query(sample.email.upper()).email_key == match_key(local, domain)
    assert bench.sound_alike("Dupont", rng) == "DUPOND"
    assert bench.sound_alike("Renault", rng) in {"RENAULD", "RENAUT", "RENOLT"}
    assert all(user for user, _ in requests.identities)


def test_acknowledged_batches_follow_the_order_of_responses() -> None:
    """One connection per wrk thread: the k-th response answers the k-th batch sent; the
    first thread's first batch was built for wrk's script check and never sent."""
    first = {"id": 1, "built": 6, "responses": 4, "failed": "2:400,"}
    acked, pending, failed = bench._batches(first)
    assert acked == {2, 4, 5} and failed == {3: 400} and pending == {6}
    other = {"id": 2, "built": 3, "responses": 3, "failed": ""}
    assert bench._batches(other) == ({1, 2, 3}, set(), {})


@pytest.mark.slow
def test_a_tiny_run_stores_every_acknowledged_event() -> None:
    """The whole benchmark, tiny: its own database, the real server, wrk; figures as JSON."""
    base = postgres_url()
    if base is None:
        pytest.skip("needs TOURNESOL_TEST_POSTGRES_URL")
    if shutil.which("wrk") is None:
        pytest.skip("needs wrk")
    from sqlalchemy.engine import make_url

    server = make_url(base).set(database="postgres").render_as_string(hide_password=False)
    name = f"tournesol_bench_test_{uuid.uuid4().hex[:8]}"
    out = Path(f"/tmp/{name}.json")
    done = subprocess.run(
        [
            sys.executable, str(BENCH), "--customers", "400", "--interactions", "4000",
            "--server-url", server, "--database", name, "--duration", "2", "--warmup", "0",
            "--connections", "4", "--ingest-connections", "2", "--workers", "1",
            "--samples", "200", "--batch-size", "20", "--quiet-timeout", "0",
            "--json", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import json

    figures = json.loads(out.read_text())
    out.unlink()
    by_name = {s["scenario"]: s for s in figures["scenarios"]}
    assert figures["load"]["counts"]["customer"] == 400
    for scenario in figures["skipped"]:
        assert scenario not in by_name
    for result in by_name.values():
        assert result["requests"] > 0 and result["non_2xx"] == 0, result
    if "ingest" in by_name:
        ingest = by_name["ingest"]
        assert ingest["events_acknowledged"] > 0
        assert ingest["acknowledged_not_stored"] == 0
        assert ingest["stored_unexpected"] == 0
        assert ingest["acknowledged_not_filed"] == 0
        assert ingest["interactions_of_events"] == ingest["events_stored"]
    with psycopg.connect(bench._libpq(server), autocommit=True) as admin:
        assert not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall()
