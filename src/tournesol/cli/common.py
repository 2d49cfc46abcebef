"""What every command needs: settings, an engine on the configured database, a console."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from tournesol.config import Settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, *, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print a clear error (and what to do next) and exit."""
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False)
    if hint:
        err_console.print(f"[yellow]What to do:[/] {hint}", highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    """The settings, or a clear error naming the variable that is wrong."""
    from pydantic import ValidationError

    from tournesol.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TOURNESOL_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        fail(f"invalid setting: {problems}", hint="fix the environment variable or .env file")


def engine_and_factory(*, upgrade: bool = True) -> tuple[Engine, sessionmaker[Session]]:
    """Engine on TOURNESOL_DATABASE_URL; with ``upgrade``, the schema is brought up to date
    first, so a new SQLite file just works."""
    from sqlalchemy.exc import OperationalError

    from tournesol.db import make_engine, make_session_factory
    from tournesol.migrations import upgrade as run_upgrade

    engine = make_engine(settings().database_url)
    try:
        if upgrade:
            run_upgrade(engine)
        else:
            with engine.connect():
                pass
    except OperationalError as exc:
        fail(
            f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip().splitlines()[0] if exc.orig else exc}",
            hint="check TOURNESOL_DATABASE_URL, and that the server is running",
        )
    return engine, make_session_factory(engine)
