"""The `tournesol` command. Sub-commands import what they need when they run, so that
`tournesol --help` stays instant."""

from __future__ import annotations

from pathlib import Path

import typer

from tournesol import __version__
from tournesol.cli import db, export, identity, imports, quality, serve, users

app = typer.Typer(
    help="Tournesol: one customer repository, every source, every channel.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
app.command("import")(imports.import_command)
app.add_typer(imports.batches_app, name="batches")
app.add_typer(export.app, name="export")
app.add_typer(quality.app, name="quality")
app.add_typer(identity.app, name="identity")
app.add_typer(users.app, name="users")
app.add_typer(users.keys_app, name="apikeys")
app.command("serve")(serve.serve)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def demo(
    persons: int = typer.Option(5000, help="How many synthetic persons to generate."),
    seed: int = typer.Option(42, help="Random seed (same seed, same data)."),
    out: Path | None = typer.Option(
        None, help="Folder for the generated files (default: TOURNESOL_DEMO_DIR, demo-data)."
    ),
) -> None:
    """Generate a realistic French multi-source dataset, import it all, and show the result."""
    from tournesol.cli.common import settings
    from tournesol.demo.run import run_demo

    run_demo(out_dir=out or settings().demo_dir, persons=persons, seed=seed)
