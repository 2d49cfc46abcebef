"""`tournesol holdout`: the global control group that receives no marketing."""

from __future__ import annotations

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

app = typer.Typer(
    help="The global holdout: customers who receive no marketing, to measure the whole "
    "programme against them.",
    no_args_is_help=True,
)


@app.command()
def regenerate(
    share: float = typer.Option(
        5.0, "--share", help="Percent of customers held out, from 1 to 15 (5 by default)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    actor: str = typer.Option("cli", "--actor", help="Who asks (kept with the version)."),
) -> None:
    """Start a new version of the global holdout with a new salt (the previous one ends:
    new customers are drawn, and measurement restarts), and store every active customer's
    arm with today's date."""
    from tournesol.db import unit_of_work, utcnow
    from tournesol.reporting import holdouts

    if not yes and not typer.confirm(
        "A new version draws every customer again and ends the current one. Go on?"
    ):
        raise typer.Exit(1)
    _, factory = engine_and_factory()
    try:
        with unit_of_work(factory) as session:
            holdout, stored = holdouts.regenerate(
                session, now=utcnow(), actor=actor, share=share / 100
            )
            figures = holdouts.summary(session, holdout)
    except holdouts.HoldoutError as exc:
        fail(str(exc), hint="give --share between 1 and 15 (percent)")
    console.print(
        f"Global holdout version {holdout.version}: {share:g}% of units; {stored:,} customers "
        f"assigned, {figures['held_out']:,} held out."
    )


@app.command()
def assign() -> None:
    """Store the arm of the customers who have none in the current version (those created
    since it began): run after imports."""
    from tournesol.db import unit_of_work, utcnow
    from tournesol.reporting import holdouts

    _, factory = engine_and_factory()
    try:
        with unit_of_work(factory) as session:
            stored = holdouts.assign(session, now=utcnow())
    except holdouts.HoldoutError as exc:
        fail(str(exc), hint="tournesol holdout regenerate --share 5")
    console.print(f"{stored:,} customer{'' if stored == 1 else 's'} assigned.")


@app.command()
def show() -> None:
    """The current version: its share, when it began, how many customers are held out."""
    from tournesol.db import unit_of_work
    from tournesol.reporting import holdouts
    from tournesol.reporting.models import HoldoutGroup

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        holdout = holdouts.active(session)
        if holdout is None:
            fail("no global holdout yet", hint="tournesol holdout regenerate --share 5")
        row = session.get(HoldoutGroup, holdout.id)
        assert row is not None
        figures = holdouts.summary(session, holdout)
    table = Table(title="Global holdout")
    table.add_column("version", justify="right")
    table.add_column("share", justify="right")
    table.add_column("since")
    table.add_column("assigned", justify="right")
    table.add_column("held out", justify="right")
    table.add_row(
        str(holdout.version), f"{holdout.share:.0%}", row.created_at.isoformat(timespec="seconds"),
        f"{figures['assigned']:,}", f"{figures['held_out']:,}",
    )  # fmt: skip
    console.print(table)
