"""`tournesol events`: the events collected over HTTP (Segment-compatible endpoints)."""

from __future__ import annotations

import typer

from tournesol.cli.common import console, engine_and_factory

app = typer.Typer(help="Events collected over HTTP (Segment-compatible).", no_args_is_help=True)


@app.command()
def reprocess(
    batch: int = typer.Option(5_000, min=100, help="Events per transaction."),
) -> None:
    """File again the collected events not on a customer yet: run it after importing
    customers (or after identity resolution) so that their earlier web events join them."""
    from tournesol.collect.service import reprocess as run
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    seen = resolved = 0
    last = 0
    with console.status("Filing collected events...") as status:
        while True:
            with unit_of_work(factory) as session:
                done = run(session, after_id=last, limit=batch)
            seen += done.seen
            resolved += done.resolved
            last = done.last_id
            status.update(f"Filing collected events... {seen:,} read, {resolved:,} resolved")
            if done.seen < batch:
                break
    console.print(
        f"[green]✓[/] {seen:,} events not on a customer read again; {resolved:,} now are."
    )
