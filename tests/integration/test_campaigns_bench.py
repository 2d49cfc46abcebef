"""The campaigns benchmark (bench/campaigns.py), tiny: it loads its own PostgreSQL database
(bench/segments.py's loader), plans two competing campaigns, sends email to an SMTP server it
starts, prints its figures last and drops the database. Needs TOURNESOL_TEST_POSTGRES_URL."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import postgres_url

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "campaigns.py"


def test_a_tiny_run_plans_both_campaigns_and_sends(tmp_path: Path) -> None:
    base = postgres_url()
    if base is None:
        pytest.skip("needs TOURNESOL_TEST_POSTGRES_URL")
    from sqlalchemy.engine import make_url

    server = make_url(base).set(database="postgres").render_as_string(hide_password=False)
    name = f"tournesol_campaigns_bench_test_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable, str(BENCH), "--customers", "1500", "--transactions", "15000",
            "--interactions", "3000", "--send", "200", "--server-url", server,
            "--database", name, "--today", "2026-11-23", "--drop", "--json", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    newsletter = figures["plan"]["campaigns"]["bench-newsletter"]
    flash = figures["plan"]["campaigns"]["bench-flash"]
    stages = [stage for stage, _ in newsletter["funnel"]]
    assert stages == ["audience", "channel", "language", "contact_window", "control", "pressure"]
    assert newsletter["funnel"][0][1] == 1500  # the whole base
    counts = [count for _, count in newsletter["funnel"]]
    assert counts == sorted(counts, reverse=True)
    assert newsletter["planned"] == counts[-1] == sum(newsletter["channels"].values())
    assert newsletter["control"] > 0 and flash["control"] == 0
    # the flash sale has the higher priority: the newsletter loses customers to it
    assert newsletter["excluded"].get("lost_arbitration", 0) > 0
    assert "lost_arbitration" not in flash["excluded"]
    send = figures["send"]
    assert send["messages"] == 200 and send["per_second"] > 0
    assert send["rss_peak_mb"] >= send["rss_first_tenth_mb"] > 0
    # the figures are printed last, the targets with them
    assert done.stdout.rstrip().splitlines()[-1].startswith("target: at least 500 emails/s")
    # the database is gone
    import psycopg

    with psycopg.connect(server.replace("postgresql+psycopg://", "postgresql://")) as admin:
        assert (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is None
        )
