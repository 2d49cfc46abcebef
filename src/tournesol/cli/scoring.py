"""`tournesol features|rfm|scores`: customer features, RFM segments and predictive scores."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

if TYPE_CHECKING:
    from tournesol.scoring.service import RfmCounts
    from tournesol.scoring.training import TrainReport

features_app = typer.Typer(
    help="Customer features: the aggregates of each customer's history that segments read.",
    no_args_is_help=True,
)
rfm_app = typer.Typer(
    help="RFM: recency, frequency and monetary scores (1-5) and named segments, per brand.",
    no_args_is_help=True,
)
scores_app = typer.Typer(
    help="Predictive scores: purchase in the next 90 days, churn.", no_args_is_help=True
)


class ModelChoice(StrEnum):
    purchase_90d = "purchase_90d"
    churn = "churn"
    all = "all"


@features_app.command("refresh")
def features_refresh() -> None:
    """Rebuild customer_feature (one row per active customer) from transactions and
    interactions, as of now."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tournesol.db import unit_of_work, utcnow
    from tournesol.scoring import features

    _, factory = engine_and_factory()
    started = time.perf_counter()
    with (
        Progress(
            TextColumn("features"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}% of customer ids"),
            TimeElapsedColumn(),
            console=console,
        ) as bar,
        unit_of_work(factory) as session,
    ):
        task = bar.add_task("features", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        rows = features.refresh(session, now=utcnow(), progress=on_progress)
    if rows == 0:
        fail("no active customers: nothing to compute", hint="import customers first")
    console.print(
        f"Features of {rows:,} customers rebuilt in {time.perf_counter() - started:.1f} s",
        highlight=False,
    )


@rfm_app.command("refresh")
def rfm_refresh(
    brand: str | None = typer.Option(
        None, "--brand", help="Only this brand's scope (its code); default: all and every brand."
    ),
) -> None:
    """Recompute RFM scores and segments as of now: scope `all` and one per brand that has
    transactions (or the one brand given)."""
    from tournesol.db import unit_of_work, utcnow
    from tournesol.scoring.service import ScoringError, refresh_rfm

    _, factory = engine_and_factory()
    started = time.perf_counter()
    with console.status("RFM: scoring..."), unit_of_work(factory) as session:
        try:
            counts = refresh_rfm(session, now=utcnow(), scope=brand)
        except ScoringError as exc:
            fail(str(exc), hint="run `tournesol rfm refresh` without --brand for every scope")
    seconds = time.perf_counter() - started
    if not any(c.customers for c in counts):
        fail(
            "no purchases: no customer could be scored",
            hint="import transactions first (`tournesol import`)",
        )
    print_rfm(counts)
    console.print(f"Time: {seconds:.1f} s", highlight=False)


def print_rfm(counts: list[RfmCounts]) -> None:
    """Customers per segment (rows) and scope (columns)."""
    from tournesol.scoring.rules import RFM_SEGMENTS

    table = Table(title="RFM segments (customers)")
    table.add_column("segment")
    for c in counts:
        table.add_column(c.scope, justify="right")
    for segment in RFM_SEGMENTS:
        table.add_row(segment.code, *(f"{c.segments.get(segment.code, 0):,}" for c in counts))
    table.add_row("[bold]total[/]", *(f"[bold]{c.customers:,}[/]" for c in counts))
    table.add_row("read from", *(c.read for c in counts))
    console.print(table)


@scores_app.command("train")
def scores_train(
    model: ModelChoice = typer.Option(ModelChoice.all, "--model", help="Which model to train."),
) -> None:
    """Train (a) model(s) on a time-based split, print AUC against the recency-only
    baseline and the calibration table, and store the model as the active version."""
    from tournesol.db import unit_of_work
    from tournesol.scoring.service import ScoringError
    from tournesol.scoring.training import MODELS, train

    names = list(MODELS) if model is ModelChoice.all else [model.value]
    _, factory = engine_and_factory()
    for name in names:
        started = time.perf_counter()
        with console.status(f"{name}: training...") as status, unit_of_work(factory) as session:
            try:
                report = train(session, name=name, progress=status.update)
            except ScoringError as exc:
                fail(str(exc), hint="import more transaction history, then train again")
        print_training(report, time.perf_counter() - started)


def print_training(report: TrainReport, seconds: float) -> None:
    m: dict[str, Any] = report.metrics
    console.print(
        f"[bold]{report.name} {report.version}[/] ({report.algorithm}): {m['definition']}",
        highlight=False,
    )
    console.print(
        f"  trained on {m['train_rows']:,} customers as of {m['train_cutoff'][:10]} "
        f"(positive rate {m['train_positive_rate']:.1%}); validated on "
        f"{m['validation_rows']:,} as of {m['validation_cutoff'][:10]} "
        f"(labels up to {m['validation_labels_until'][:10]}, positive rate "
        f"{m['validation_positive_rate']:.1%})",
        highlight=False,
    )
    better = m["auc"] > m["baseline_auc"]
    console.print(
        f"  holdout AUC [bold]{m['auc']:.3f}[/] against {m['baseline_auc']:.3f} for the "
        f"recency-only baseline ({'better' if better else '[red]not better[/]'}); "
        f"Brier {m['brier']:.4f} (base rate alone {m['brier_base_rate']:.4f}); {seconds:.1f} s",
        highlight=False,
    )
    table = Table(title=f"{report.name}: calibration on the holdout")
    for col in ("predicted probability", "customers", "mean predicted", "observed rate"):
        table.add_column(col, justify="right")
    for b in m["calibration"]:
        table.add_row(
            b["bin"], f"{b['customers']:,}", f"{b['predicted']:.3f}", f"{b['observed']:.3f}"
        )
    console.print(table)


@scores_app.command("apply")
def scores_apply() -> None:
    """Score every active customer with the active model of each name (features as of now)
    and replace customer_score."""
    from tournesol.db import unit_of_work, utcnow
    from tournesol.scoring.service import ScoringError
    from tournesol.scoring.training import MODELS, apply

    _, factory = engine_and_factory()
    started = time.perf_counter()
    with console.status("Scoring...") as status, unit_of_work(factory) as session:
        try:
            reports = apply(session, now=utcnow(), progress=status.update)
        except ScoringError as exc:
            fail(str(exc), hint="run `tournesol scores train` first")
    table = Table(title="Scores written")
    table.add_column("model")
    table.add_column("version")
    table.add_column("customers", justify="right")
    table.add_column("mean score", justify="right")
    for r in reports:
        table.add_row(r.name, r.version, f"{r.scored:,}", f"{r.mean_score:.3f}")
    console.print(table)
    for name in sorted(set(MODELS) - {r.name for r in reports}):
        console.print(
            f"No trained model {name}: run `tournesol scores train --model {name}`",
            highlight=False,
        )
    console.print(f"Time: {time.perf_counter() - started:.1f} s", highlight=False)
