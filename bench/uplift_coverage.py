"""Does the incremental estimate find the truth? The demo's past campaign with its planted
effect (``tournesol.demo.measure``), planned and measured again and again (issue 9).

    .venv/bin/python bench/uplift_coverage.py [--persons 5000] [--seed 42] [--repetitions 100]
        [--effect 0.04] [--dir DIR] [--json PATH]

1. The base, once, on a temporary SQLite file: the demo's data (``demo.generator.generate``,
   ``--persons`` and ``--seed`` as ``tournesol demo`` takes them) imported file by file through
   the import pipeline, identity resolved, then the global holdout (5 %) and the campaign's
   segment (``demo.measure.prepare_audience``). The demo's other steps (features, models,
   its spring campaigns, journeys) are left out: they change neither the audience nor the
   purchases of its window.
2. Each repetition, in one transaction rolled back at its end (repetitions never see each
   other's purchases): a fresh copy of ``relance-automne`` (code ``relance-automne-r001``...,
   so a new control-group salt) is created and planned by the real planner 45 days before
   now; its letters are marked sent at that time (the dispatcher is left out: its PDF letters
   take 12 ms each, and the measurement reads only the outbox's state and time); the
   window's purchases are drawn by the behavioural model (``behaviour.campaign_response``, the
   planted effect, a generator per customer seeded by ``--seed``, the campaign's code and the
   customer) and inserted directly with SQLAlchemy as transaction rows (one bulk INSERT,
   without lines: the measurement reads the totals), where the demo writes files and
   imports them; then ``reporting.measure.incremental`` and ``.attributed`` are compared with
   that audience's truth (``demo.measure.truth_of``: the mean over the treatment and control
   arms of ``p_treated - p_untreated``, and of that times each customer's basket).
3. Printed last: how often the 95 % interval covered the true effect, for conversion and for
   revenue per customer (x / repetitions), the mean estimate against the mean truth, and the
   naive attributed figures (the treatment group's buyers within the window after their
   letter, and their revenue) against the true incremental ones, with how many times they
   overstate them. Target (issue 9): at least 90 covered out of 100 for conversion.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

console = Console(stderr=True)
TARGET = 90  # of 100: the interval must cover the truth at least this often


@dataclass(frozen=True)
class Repetition:
    """One repetition's truth, estimates and naive figures (conversion in shares, money in
    EUR per customer unless said otherwise)."""

    code: str
    treatment: int
    control: int
    holdout: int
    true_conversion: float
    conversion: float
    conversion_low: float
    conversion_high: float
    true_revenue: float
    revenue: float
    revenue_low: float
    revenue_high: float
    revenue_method: str
    attributed_purchasers: int
    attributed_revenue: float

    @property
    def covers_conversion(self) -> bool:
        return self.conversion_low <= self.true_conversion <= self.conversion_high

    @property
    def covers_revenue(self) -> bool:
        return self.revenue_low <= self.true_revenue <= self.revenue_high

    @property
    def true_buyers(self) -> float:
        """The purchasers the campaign truly added in the treatment group."""
        return self.true_conversion * self.treatment

    @property
    def true_incremental_revenue(self) -> float:
        return self.true_revenue * self.treatment


def build_base(factory: sessionmaker[Session], out_dir: Path, *, persons: int, seed: int) -> Any:
    """The demo's data imported and resolved, with the global holdout and the campaign's
    segment; returns the generator's manifest (the ground truth the model reads)."""
    from tournesol.db import unit_of_work, utcnow
    from tournesol.demo import measure
    from tournesol.demo.generator import generate
    from tournesol.identity.service import resolve
    from tournesol.ingest.importer import import_file
    from tournesol.ingest.schemas import load_mapping

    with console.status(f"Generating the demo's {persons:,} persons..."):
        manifest = generate(out_dir, seed=seed, persons=persons)
    for item in manifest.files:
        with console.status(f"Importing {item.source} ({item.path.name})..."):
            import_file(factory, item.path, load_mapping(item.mapping))
    with console.status("Identity resolution..."):
        resolve(factory, full=True)
    with unit_of_work(factory) as session:
        measure.prepare_audience(session, at=measure.past_instant(utcnow()), seed=seed)
    return manifest


def _source_ids(session: Session) -> dict[str, tuple[int, int | None]]:
    from tournesol.ingest.models import Source

    rows = session.execute(
        select(Source.name, Source.id, Source.brand_id).where(
            Source.name.in_(["tickets", "orders"])
        )
    )
    return {name: (source_id, brand_id) for name, source_id, brand_id in rows}


def insert_purchases(
    session: Session, simulated: Sequence[Any], *, code: str, now: datetime
) -> int:
    """The window's purchases as transaction rows (tickets in shops, orders on the e-shop),
    one bulk INSERT; returns how many."""
    from tournesol.demo.measure import local_time
    from tournesol.interactions.models import Transaction

    sources = _source_ids(session)
    rows = []
    for s in simulated:
        purchase = s.response.purchase
        if purchase is None:
            continue
        source = "orders" if purchase.channel == "web" else "tickets"
        source_id, brand_id = sources[source]
        cents = sum(line.amount_cents for line in purchase.lines)
        rows.append(
            {
                "source_id": source_id,
                "external_id": f"{code}:{s.assigned.customer_id}",
                "customer_id": s.assigned.customer_id,
                "kind": "order" if source == "orders" else "ticket",
                "channel": purchase.channel,
                "store_code": purchase.store or None,
                "brand_id": brand_id,
                "occurred_at": local_time(purchase).astimezone(UTC),
                "total_amount": Decimal(cents) / 100,
                "currency": "EUR",
                "status": "delivered" if source == "orders" else None,
                "attributes": {},
                "created_at": now,
            }
        )
    if rows:
        session.execute(insert(Transaction), rows)
    return len(rows)


def repeat(
    factory: sessionmaker[Session],
    manifest: Any,
    number: int,
    *,
    seed: int,
    effect: float,
    now: datetime,
) -> Repetition:
    """One repetition (see the module's docstring), rolled back at its end."""
    from tournesol.campaigns import service
    from tournesol.campaigns.models import Outbox
    from tournesol.demo import measure
    from tournesol.reporting import measure as reporting

    at = measure.past_instant(now)
    code = f"{measure.CODE}-r{number:03d}"
    with factory() as session:
        try:
            campaign = measure.create_campaign(session, at=at, code=code)
            service.plan(session, campaigns=[campaign], now=at, policies=service.Policies())
            session.execute(
                update(Outbox)
                .where(Outbox.campaign_id == campaign.id, Outbox.state == "planned")
                .values(state="sent", sent_at=at, updated_at=at)
            )
            customers = [a.customer_id for a in measure.assigned(session, campaign)]
            buyers = measure.load_buyers(
                session, customers, truth_path=manifest.truth_path,
                persons_path=manifest.persons_path,
            )  # fmt: skip
            simulated = measure.simulate(
                session, campaign, buyers=buyers, shopper=measure.load_shopper(session),
                seed=seed, now=now, effect=effect,
            )  # fmt: skip
            insert_purchases(session, simulated, code=code, now=now)
            truth = measure.truth_of(simulated)
            found = reporting.incremental(session, campaign, now=now)
            naive = reporting.attributed(session, campaign, now=now)
        finally:
            session.rollback()
    conversion, revenue = found.conversion, found.revenue
    if conversion is None or revenue is None:
        raise RuntimeError(f"{code}: no estimate ({'; '.join(found.notes)})")
    arms = found.arms
    return Repetition(
        code=code,
        treatment=arms["treatment"].assigned,
        control=arms["control"].assigned,
        holdout=arms["holdout"].assigned if "holdout" in arms else 0,
        true_conversion=truth.conversion,
        conversion=conversion.estimate,
        conversion_low=conversion.low,
        conversion_high=conversion.high,
        true_revenue=truth.revenue,
        revenue=revenue.estimate,
        revenue_low=revenue.low,
        revenue_high=revenue.high,
        revenue_method=revenue.method,
        attributed_purchasers=naive.purchasers,
        attributed_revenue=float(naive.revenue),
    )


def run(
    factory: sessionmaker[Session],
    manifest: Any,
    *,
    repetitions: int,
    seed: int,
    effect: float,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> list[Repetition]:
    """The repetitions, one after the other."""
    done = []
    for number in range(1, repetitions + 1):
        done.append(repeat(factory, manifest, number, seed=seed, effect=effect, now=now))
        if progress is not None:
            progress(number)
    return done


def figures(done: Sequence[Repetition]) -> dict[str, Any]:
    """What the bench prints: coverage, mean estimates against mean truths, naive figures."""
    n = len(done)

    def mean(values: Sequence[float]) -> float:
        return statistics.fmean(values) if values else 0.0

    true_buyers = mean([r.true_buyers for r in done])
    true_revenue = mean([r.true_incremental_revenue for r in done])
    attributed = mean([r.attributed_purchasers for r in done])
    attributed_revenue = mean([r.attributed_revenue for r in done])
    methods: dict[str, int] = {}
    for r in done:
        methods[r.revenue_method] = methods.get(r.revenue_method, 0) + 1
    return {
        "repetitions": n,
        "treatment": mean([r.treatment for r in done]),
        "control": mean([r.control for r in done]),
        "holdout": mean([r.holdout for r in done]),
        "conversion_covered": sum(r.covers_conversion for r in done),
        "revenue_covered": sum(r.covers_revenue for r in done),
        "conversion_mean_estimate": mean([r.conversion for r in done]),
        "conversion_mean_truth": mean([r.true_conversion for r in done]),
        "conversion_mean_width": mean([r.conversion_high - r.conversion_low for r in done]),
        "revenue_mean_estimate": mean([r.revenue for r in done]),
        "revenue_mean_truth": mean([r.true_revenue for r in done]),
        "revenue_methods": methods,
        "attributed_purchasers": attributed,
        "true_incremental_buyers": true_buyers,
        "attributed_revenue": attributed_revenue,
        "true_incremental_revenue": true_revenue,
        "overstated_buyers": attributed / true_buyers if true_buyers > 0 else None,
        "overstated_revenue": attributed_revenue / true_revenue if true_revenue > 0 else None,
    }


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def report_lines(f: dict[str, Any], *, persons: int, seed: int, effect: float) -> list[str]:
    n = f["repetitions"]
    methods = ", ".join(f"{k} by {m}" for m, k in sorted(f["revenue_methods"].items()))
    met = f["conversion_covered"] >= TARGET * n / 100
    return [
        f"repetitions: {n} (persons {persons:,}, seed {seed}, planted effect "
        f"{effect * 100:+.1f} points); arms on average: treatment {f['treatment']:.0f}, "
        f"control {f['control']:.0f}, global holdout {f['holdout']:.0f}",
        f"conversion: the 95% interval covers the true effect in {f['conversion_covered']}/{n}; "
        f"mean estimate {f['conversion_mean_estimate'] * 100:+.2f} points, mean truth "
        f"{f['conversion_mean_truth'] * 100:+.2f} points (mean width "
        f"{f['conversion_mean_width'] * 100:.1f} points)",
        f"revenue per customer: the 95% interval covers the true effect in "
        f"{f['revenue_covered']}/{n}; mean estimate {f['revenue_mean_estimate']:+.2f} EUR, "
        f"mean truth {f['revenue_mean_truth']:+.2f} EUR (intervals: {methods})",
        f"naive attributed buyers: {f['attributed_purchasers']:.1f} on average against "
        f"{f['true_incremental_buyers']:.1f} truly incremental "
        f"({_times(f['overstated_buyers'])})",
        f"naive attributed revenue: {f['attributed_revenue']:,.0f} EUR on average against "
        f"{f['true_incremental_revenue']:,.0f} EUR truly incremental "
        f"({_times(f['overstated_revenue'])})",
        f"target: the conversion interval covers the truth in at least {TARGET} of 100: "
        f"{'met' if met else 'NOT met'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=5000, help="the demo's size")
    parser.add_argument("--seed", type=int, default=42, help="the demo's and the draws' seed")
    parser.add_argument("--repetitions", type=int, default=100)
    parser.add_argument("--effect", type=float, default=0.04, help="planted, on the chance")
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.repetitions < 1:
        parser.error("--repetitions: at least 1")

    from tournesol.db import make_engine, make_session_factory, utcnow
    from tournesol.migrations import upgrade

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="uplift-coverage-") as tmp:
        work = args.dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        engine = make_engine(f"sqlite:///{work / 'base.sqlite'}")
        try:
            upgrade(engine)
            factory = make_session_factory(engine)
            manifest = build_base(factory, work / "demo", persons=args.persons, seed=args.seed)
            base_seconds = time.perf_counter() - started
            now = utcnow()
            with Progress(
                TextColumn("repetitions"), BarColumn(),
                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                console=console,
            ) as bar:  # fmt: skip
                task = bar.add_task("repetitions", total=args.repetitions)
                done = run(
                    factory, manifest, repetitions=args.repetitions, seed=args.seed,
                    effect=args.effect, now=now,
                    progress=lambda k: bar.update(task, completed=k),
                )  # fmt: skip
        finally:
            engine.dispose()
    found = figures(done)
    found["base_seconds"] = round(base_seconds, 1)
    found["seconds"] = round(time.perf_counter() - started, 1)
    if args.json is not None:
        args.json.write_text(
            json.dumps({**found, "runs": [asdict(r) for r in done]}, indent=2) + "\n",
            encoding="utf-8",
        )
    print(f"base built in {found['base_seconds']} s; {args.repetitions} repetitions, "
          f"{found['seconds']} s in all")  # fmt: skip
    for line in report_lines(found, persons=args.persons, seed=args.seed, effect=args.effect):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
