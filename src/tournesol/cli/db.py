"""`tournesol db`: create, migrate and inspect the database."""

from __future__ import annotations

import typer

from tournesol.cli.common import console, engine_and_factory

app = typer.Typer(help="Create, migrate and inspect the database.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create the database or migrate it to the latest schema."""
    from tournesol.migrations import current_revision
    from tournesol.migrations import upgrade as run_upgrade

    engine, _ = engine_and_factory(upgrade=False)
    before = current_revision(engine)
    run_upgrade(engine, revision)
    after = current_revision(engine)
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        console.print(f"Database {where} is up to date (revision {after}).")
    else:
        console.print(f"Database {where} migrated from {before or 'empty'} to {after}.")


@app.command()
def current() -> None:
    """Show the database's schema revision and the latest one this version knows."""
    from tournesol.migrations import current_revision, head_revision

    engine, _ = engine_and_factory(upgrade=False)
    console.print(f"current: {current_revision(engine) or 'empty'}  latest: {head_revision()}")
