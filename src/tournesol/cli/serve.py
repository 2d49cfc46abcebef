"""`tournesol serve`: the web UI, the REST API and event collection (uvicorn)."""

from __future__ import annotations

import os
import secrets

import typer

from tournesol.cli.common import console, engine_and_factory, settings


def serve(
    host: str | None = typer.Option(None, help="Address to listen on (TOURNESOL_WEB_HOST)."),
    port: int | None = typer.Option(None, help="Port (TOURNESOL_WEB_PORT)."),
    workers: int | None = typer.Option(
        None, help="Server processes (TOURNESOL_WEB_WORKERS); PostgreSQL for more than one."
    ),
) -> None:
    """Serve the web UI (/), the REST API (/api/v1, OpenAPI at /api/v1/docs) and event
    collection (/v1/batch...)."""
    conf = settings()
    engine, _ = engine_and_factory()  # migrates, and fails clearly if unreachable
    engine.dispose()
    if not conf.secret_key:
        # Every worker must sign cookies with the same key: hand them one through the env.
        os.environ["TOURNESOL_SECRET_KEY"] = secrets.token_urlsafe(48)
        console.print(
            "[yellow]TOURNESOL_SECRET_KEY is not set: sign-ins last until the server stops.[/]"
        )
    serve_app(
        host=host or conf.web_host,
        port=port or conf.web_port,
        workers=workers or conf.web_workers,
        sqlite=conf.database_url.startswith("sqlite"),
    )


def serve_app(*, host: str, port: int, workers: int, sqlite: bool) -> None:
    """Run uvicorn on ``create_app()`` (settings from the environment) until interrupted."""
    import uvicorn

    from tournesol.config import get_settings

    get_settings.cache_clear()
    if sqlite and workers > 1:
        console.print("[yellow]SQLite takes one writer at a time: serving with 1 worker.[/]")
        workers = 1
    console.print(f"Serving on [bold]http://{host}:{port}/[/]  (Ctrl+C to stop)")
    uvicorn.run(
        "tournesol.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,  # URLs can hold search terms: personal data stays out of logs
    )
