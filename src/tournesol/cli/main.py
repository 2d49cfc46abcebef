"""The `tournesol` command. Sub-commands import what they need when they run, so that
`tournesol --help` stays instant."""

from __future__ import annotations

from pathlib import Path

import typer

from tournesol import __version__
from tournesol.cli import (
    campaigns,
    db,
    events,
    export,
    holdout,
    identity,
    imports,
    journeys,
    measure,
    quality,
    scoring,
    segments,
    serve,
    users,
)

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
app.add_typer(events.app, name="events")
app.add_typer(users.app, name="users")
app.add_typer(users.keys_app, name="apikeys")
app.add_typer(segments.app, name="segments")
app.add_typer(scoring.features_app, name="features")
app.add_typer(scoring.rfm_app, name="rfm")
app.add_typer(scoring.scores_app, name="scores")
app.add_typer(campaigns.app, name="campaigns")
app.add_typer(journeys.app, name="journeys")
app.add_typer(holdout.app, name="holdout")
app.add_typer(measure.app, name="measure")
app.command("worker")(journeys.worker)
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
    serve: bool = typer.Option(
        True, help="End by serving the web UI with demo sign-ins (--no-serve to stop there)."
    ),
) -> None:
    """Generate a realistic French multi-source dataset, import it all, show the result, then
    serve the web UI with demo sign-ins."""
    from tournesol.cli.common import engine_and_factory, settings
    from tournesol.demo.run import demo_accounts, run_demo

    conf = settings()
    example = run_demo(out_dir=out or conf.demo_dir, persons=persons, seed=seed)
    _, factory = engine_and_factory()
    demo_accounts(factory)
    if example is not None:
        typer.echo(
            f"A customer built from several records: "
            f"http://{conf.web_host}:{conf.web_port}/customers/{example}"
        )
    if serve:
        import os
        import secrets

        from tournesol.cli.serve import serve_app

        os.environ.setdefault("TOURNESOL_SECRET_KEY", secrets.token_urlsafe(48))
        serve_app(
            host=conf.web_host,
            port=conf.web_port,
            workers=1,
            sqlite=conf.database_url.startswith("sqlite"),
        )
