"""`tournesol measure`: compute the campaigns' measured cells the reports read."""

from __future__ import annotations

import time

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

app = typer.Typer(
    help="Measurement: allocate purchases to their last touch and compute each campaign's "
    "attributed and incremental figures (run daily, e.g. from cron).",
    no_args_is_help=True,
)


@app.command()
def refresh(
    campaign: str | None = typer.Option(
        None, "--campaign", help="Only this campaign (its code), whatever its age."
    ),
    limit: int = typer.Option(50, help="At most this many campaigns in one run."),
) -> None:
    """Allocate new purchases (last touch), then compute and store the figures of every
    campaign whose stored figures are missing or older than a day while its attribution
    window was open (or of --campaign). The reports read what this stores; without it they
    compute on the fly, which is slow on a large base."""
    from sqlalchemy import select

    from tournesol.campaigns.models import Campaign
    from tournesol.campaigns.results import attribute
    from tournesol.db import unit_of_work, utcnow
    from tournesol.reporting import measure

    _, factory = engine_and_factory()
    now = utcnow()
    started = time.perf_counter()
    with unit_of_work(factory) as session, console.status("Allocating purchases (last touch)"):
        allocated = attribute(session, now=now)
    table = Table(title="Campaigns measured")
    for name, justify in (("campaign", "left"), ("assigned", "right"), ("seconds", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    done: list[str] = []
    with unit_of_work(factory) as session:
        if campaign is not None:
            found = session.scalar(select(Campaign).where(Campaign.code == campaign))
            if found is None:
                fail(f"no campaign {campaign!r}", hint="tournesol campaigns list")
            with console.status(f"Measuring {campaign}"):
                measure.refresh(session, found, now=now)
            done = [campaign]
        else:
            with console.status("Measuring the campaigns whose figures are due"):
                done = measure.refresh_due(session, now=now, limit=limit)
        for code in done:
            row = session.scalar(select(Campaign).where(Campaign.code == code))
            assert row is not None
            cells = measure.stored(session, row.id)
            assigned = sum(f.assigned for f in cells.arms().values()) if cells else 0
            head = measure.head(session, row.id)
            table.add_row(code, f"{assigned:,}", f"{head.seconds:.1f}" if head else "-")
    console.print(f"{allocated:,} purchases newly allocated to their last touch.")
    if done:
        console.print(table)
    else:
        console.print("Every campaign's figures are up to date.")
    console.print(f"Done in {time.perf_counter() - started:.1f} s.")
