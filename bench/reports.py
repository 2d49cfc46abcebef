"""Measurement reports at scale on PostgreSQL: the campaign scorecard and the ad-hoc cube on
1,000,000 customers, 10,000,000 transactions and 5,000,000 message events.

    .venv/bin/python bench/reports.py [--database tournesol_segments_bench] [--runs 5]
        [--server-url URL] [--today DATE] [--campaigns 5] [--keep] [--json PATH]

1. The base: the database of ``bench/segments.py`` (1,000,000 customers of three brands,
   10,000,000 transactions over three years), loaded by that script when missing (about 5
   minutes here; ``--reuse`` semantics: an existing load is used as it is).
2. Earlier ``bench-report-*`` campaigns are removed, then ``--campaigns`` campaigns (5 by
   default) are written in SQL, as a plan would have left them: each assigns every active
   customer (1,000,000) with a 10 % control group drawn by a hash of the customer and the
   campaign, a reference time spread over the campaign's day, on e-mail (campaigns 1, 3,
   5), SMS (2) or postal mail (4), launched 150, 120, 90, 60 and 30 days before ``today``;
   every treatment customer has a message sent (e-mail) or delivered (SMS) or printed
   (postal): 4,500,000 outbox rows; 1 e-mail in 5 is opened and 1 in 30 clicked, each open
   and click also an ``email_opened`` / ``email_clicked`` timeline row: about 500,000 more.
   Message events in all (messages + open and click events) are counted and printed.
   Then ``campaigns.results.attribute`` allocates the purchases to their last touch, and
   ANALYZE.
3. ``measure.refresh`` computes and stores each campaign's cells (what the daily
   ``tournesol measure refresh`` does), timed per campaign.
4. Timed, ``--runs`` times each after one warm-up (wall clock around the call, in a fresh
   transaction each): ``reports.scorecard`` of the first campaign (incremental with its
   variants cut, attributed, allocated, the message funnel); ``reports.cube`` grouped by
   campaign and arm (assigned, buyers, revenue, attributed and allocated revenue: every
   campaign's window aggregates); the cube by channel and week (no attributed revenue).
5. Figures, printed last: the sizes, each report's median and max, and pass / fail against
   the target (each under 2 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
console = Console()
PREFIX = "bench-report-"
CHANNELS = ("email", "sms", "email", "postal", "email")
TARGET_SECONDS = 2.0


def _campaigns_bench() -> ModuleType:
    name = "campaigns_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / "campaigns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def remove(factory: Any) -> None:
    from sqlalchemy import delete, select

    from tournesol.campaigns.models import Campaign, CampaignAttribution, CampaignTarget, Outbox
    from tournesol.db import unit_of_work
    from tournesol.interactions.models import Interaction

    with unit_of_work(factory) as session:
        ids = list(session.scalars(select(Campaign.id).where(Campaign.code.like(f"{PREFIX}%"))))
        codes = list(session.scalars(select(Campaign.code).where(Campaign.id.in_(ids))))
        if ids:
            for model in (CampaignTarget, Outbox, CampaignAttribution):
                session.execute(delete(model).where(model.campaign_id.in_(ids)))
            session.execute(delete(Interaction).where(Interaction.campaign_code.in_(codes)))
            session.execute(delete(Campaign).where(Campaign.id.in_(ids)))


def write_campaigns(factory: Any, *, now: datetime, count: int) -> dict[str, int]:
    """The bench campaigns, their targets, messages and open/click events, in SQL."""
    from sqlalchemy import func, select, text

    from tournesol.campaigns.models import Campaign
    from tournesol.customers.models import Brand
    from tournesol.db import unit_of_work

    sizes = {"targets": 0, "messages": 0, "events": 0}
    with unit_of_work(factory) as session:
        soleil = session.scalar(select(Brand.id).where(Brand.code == "SOLEIL"))
        for k in range(count):
            channel = CHANNELS[k % len(CHANNELS)]
            launch = now - timedelta(days=150 - 30 * k)
            campaign = Campaign(
                code=f"{PREFIX}{k + 1}", name=f"Bench report {k + 1}", brand_id=soleil,
                channels=[channel], status="done", control_share=0.1,
                control_salt=f"{PREFIX}{k + 1}", attribution_days=30, fixed_cost=1000,
                unit_costs={"email": 0.002, "sms": 0.045, "postal": 0.85}, margin_rate=0.35,
                planned_at=launch - timedelta(days=1), created_by="bench",
            )  # fmt: skip
            session.add(campaign)
            session.flush()
            params = {"cid": campaign.id, "channel": channel, "launch": launch,
                      "planned": launch - timedelta(days=1)}  # fmt: skip
            with console.status(f"{campaign.code}: targets"):
                result = session.execute(
                    text(
                        """
                        INSERT INTO campaign_target (campaign_id, customer_id, "group", channel,
                            language, reason, send_at, planned_at)
                        SELECT :cid, c.id,
                            CASE WHEN (hashint8(c.id + :cid * 7919) & 1023) < 102
                                THEN 'control' ELSE 'target' END,
                            :channel, 'fr',
                            CASE WHEN (hashint8(c.id + :cid * 7919) & 1023) < 102
                                THEN 'control_group' END,
                            :launch + (c.id % 36000) * interval '1 second', :planned
                        FROM customer c WHERE c.status = 'active'
                        """
                    ),
                    params,
                )
                sizes["targets"] += result.rowcount  # type: ignore[attr-defined]
            with console.status(f"{campaign.code}: messages"):
                result = session.execute(
                    text(
                        """
                        INSERT INTO outbox (key, campaign_id, customer_id, brand_id, channel,
                            purpose, language, state, send_after, attempts, planned_at, sent_at,
                            delivered_at, opened_at, clicked_at, updated_at)
                        SELECT 'bench:' || t.campaign_id || ':' || t.customer_id, t.campaign_id,
                            t.customer_id, :brand, t.channel, 'marketing', 'fr',
                            CASE WHEN t.channel = 'sms' THEN 'delivered' ELSE 'sent' END,
                            t.send_at, 1, t.planned_at, t.send_at,
                            CASE WHEN t.channel = 'sms' THEN t.send_at + interval '20 seconds'
                            END,
                            CASE WHEN t.channel = 'email' AND t.customer_id % 5 = 0
                                THEN t.send_at + interval '3 hours' END,
                            CASE WHEN t.channel = 'email' AND t.customer_id % 30 = 0
                                THEN t.send_at + interval '4 hours' END,
                            t.send_at
                        FROM campaign_target t
                        WHERE t.campaign_id = :cid AND t."group" = 'target'
                        """
                    ),
                    {"cid": campaign.id, "brand": soleil},
                )
                sizes["messages"] += result.rowcount  # type: ignore[attr-defined]
            with console.status(f"{campaign.code}: open and click events"):
                for kind, column in (
                    ("email_opened", "opened_at"),
                    ("email_clicked", "clicked_at"),
                ):
                    result = session.execute(
                        text(
                            f"""
                            INSERT INTO interaction (customer_id, occurred_at, channel, direction,
                                type, subject, campaign_code, brand_id, payload, created_at)
                            SELECT o.customer_id, o.{column}, 'email', 'inbound', :kind,
                                :name, :code, o.brand_id,
                                jsonb_build_object('outbox_id', o.id), o.{column}
                            FROM outbox o
                            WHERE o.campaign_id = :cid AND o.{column} IS NOT NULL
                            """
                        ),
                        {"cid": campaign.id, "kind": kind, "name": campaign.name,
                         "code": campaign.code},
                    )  # fmt: skip
                    sizes["events"] += result.rowcount  # type: ignore[attr-defined]
        session.flush()
        sizes["campaigns"] = count
        sizes["customers"] = session.scalar(text("SELECT count(*) FROM customer")) or 0
        sizes["transactions"] = session.scalar(text("SELECT count(*) FROM transaction")) or 0
        del func
    return sizes


def existing_sizes(session: Any) -> dict[str, int]:
    """The sizes of the bench campaigns an earlier --keep run left."""
    from sqlalchemy import text

    like = {"like": f"{PREFIX}%"}
    ids = "SELECT id FROM campaign WHERE code LIKE :like"
    return {
        "campaigns": session.scalar(text("SELECT count(*) FROM campaign WHERE code LIKE :like"),
                                    like),
        "targets": session.scalar(
            text(f"SELECT count(*) FROM campaign_target WHERE campaign_id IN ({ids})"), like
        ),
        "messages": session.scalar(
            text(f"SELECT count(*) FROM outbox WHERE campaign_id IN ({ids})"), like
        ),
        "events": session.scalar(
            text("SELECT count(*) FROM interaction WHERE campaign_code LIKE :like"), like
        ),
        "customers": session.scalar(text("SELECT count(*) FROM customer")),
        "transactions": session.scalar(text("SELECT count(*) FROM transaction")),
    }  # fmt: skip


def allocate(factory: Any, *, now: datetime) -> int:
    from tournesol.campaigns.results import attribute
    from tournesol.db import unit_of_work

    with unit_of_work(factory) as session, console.status("last-touch allocation"):
        return attribute(session, now=now)


def analyze(engine: Any) -> None:
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM (ANALYZE) campaign_target, outbox, interaction, campaign_attribution"
        )


def timed(factory: Any, work: Any, runs: int) -> list[float]:
    from tournesol.db import unit_of_work

    seconds = []
    for i in range(runs + 1):
        with unit_of_work(factory) as session:
            started = time.perf_counter()
            work(session)
            elapsed = time.perf_counter() - started
            session.rollback()
        if i:  # the first run warms the caches
            seconds.append(elapsed)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--database", default="tournesol_segments_bench")
    parser.add_argument("--today", type=date.fromisoformat, help="the day after the history")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--campaigns", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reuse-campaigns", action="store_true",
                        help="time the campaigns an earlier --keep run left")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the bench campaigns")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from sqlalchemy import select

    from tournesol.campaigns.models import Campaign
    from tournesol.db import make_engine, make_session_factory, unit_of_work
    from tournesol.migrations import upgrade
    from tournesol.reporting import measure, reports

    url, today = _campaigns_bench().prepare_base(args)
    now = datetime.combine(today, clock_time(6), UTC)
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    figures: dict[str, Any] = {"database": "postgresql", "today": today.isoformat()}
    try:
        if not args.reuse_campaigns:
            remove(factory)
            started = time.perf_counter()
            figures["sizes"] = write_campaigns(factory, now=now, count=args.campaigns)
            figures["allocated_purchases"] = allocate(factory, now=now)
            analyze(engine)
            figures["setup_seconds"] = round(time.perf_counter() - started, 1)
        refreshed: dict[str, float] = {}
        with unit_of_work(factory) as session:
            for campaign in session.scalars(
                select(Campaign).where(Campaign.code.like(f"{PREFIX}%")).order_by(Campaign.id)
            ):
                with console.status(f"measure.refresh {campaign.code}"):
                    started = time.perf_counter()
                    measure.refresh(session, campaign, now=now)
                    refreshed[campaign.code] = round(time.perf_counter() - started, 1)
        figures["refresh_seconds"] = refreshed
        with unit_of_work(factory) as session:
            first = session.scalar(
                select(Campaign).where(Campaign.code == f"{PREFIX}1")
            )  # fmt: skip
            assert first is not None, "no bench campaigns: run without --reuse-campaigns"
            first_id = first.id
            if "sizes" not in figures:
                figures["sizes"] = existing_sizes(session)

        def scorecard(session: Any) -> Any:
            campaign = session.get(Campaign, first_id)
            return reports.scorecard(session, campaign, now=now)

        by_arm = reports.CubeQuery(
            ("campaign", "arm"),
            ("assigned", "buyers", "revenue", "attributed_revenue", "allocated_revenue"),
            since=now - timedelta(days=200),
        )
        by_week = reports.CubeQuery(
            ("channel", "week"), ("assigned", "buyers", "revenue"),
            since=now - timedelta(days=200),
        )  # fmt: skip
        with unit_of_work(factory) as session:
            card = scorecard(session)
            figures["scorecard_headline"] = {label: str(v) for label, v, _ in card.headline}
        timings = {}
        for label, work in (
            ("scorecard (one campaign)", scorecard),
            ("cube: campaign x arm, with attributed", lambda s: reports.cube(s, by_arm, now=now)),
            ("cube: channel x week", lambda s: reports.cube(s, by_week, now=now)),
        ):
            with console.status(f"timing {label}"):
                timings[label] = timed(factory, work, args.runs)
        figures["timings"] = timings
    finally:
        if not args.keep:
            remove(factory)
        engine.dispose()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    print_figures(figures)


def print_figures(figures: dict[str, Any]) -> None:
    sizes = figures.get("sizes", {})
    console.print(f"Database: PostgreSQL, today {figures['today']}")
    console.print(
        "Sizes: "
        + ", ".join(f"{k} {v:,}" for k, v in sizes.items() if isinstance(v, int))
        + (
            f"; message events {sizes['messages'] + sizes['events']:,}"
            if "messages" in sizes else ""
        )
    )  # fmt: skip
    if "setup_seconds" in figures:
        console.print(f"Setup (write, allocate, analyze): {figures['setup_seconds']} s")
    if "refresh_seconds" in figures:
        console.print(
            "measure.refresh per campaign (1,000,000 customers assigned each; run daily): "
            + ", ".join(f"{code} {sec} s" for code, sec in figures["refresh_seconds"].items())
        )
    table = Table(title="Reports on PostgreSQL (reading the refreshed cells)")
    for name in ("report", "median s", "max s", f"under {TARGET_SECONDS:.0f} s"):
        table.add_column(name)
    for label, seconds in figures["timings"].items():
        median = statistics.median(seconds)
        table.add_row(
            label, f"{median:.3f}", f"{max(seconds):.3f}",
            "met" if median < TARGET_SECONDS else "NOT met",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
