"""`tournesol users` and `tournesol apikeys`: who may sign in, and the keys programs use."""

from __future__ import annotations

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

app = typer.Typer(help="Staff users and their roles.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for integrations and event collection.", no_args_is_help=True)


@app.command("create")
def create_user(
    email: str = typer.Argument(..., help="The user's e-mail (their sign-in name)."),
    role: str = typer.Option(..., help="admin, marketer, advisor, analyst or agency."),
    name: str | None = typer.Option(None, help="Display name (default: the e-mail)."),
    language: str = typer.Option("fr", help="fr or en."),
    password: str = typer.Option(
        ...,
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="TOURNESOL_NEW_PASSWORD",
        help="Asked for when not given (or TOURNESOL_NEW_PASSWORD).",
    ),
) -> None:
    """Create a user who signs in to the web UI with a role."""
    from tournesol.auth import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    try:
        with unit_of_work(factory) as session:
            user = service.create(
                session,
                email=email,
                name=name or email,
                role=role,
                password=password,
                language=language,
            )
            user_id = user.id
    except ValueError as exc:
        fail(str(exc), hint="see `tournesol users create --help`; roles: docs/user-guide.md")
    console.print(f"[green]✓[/] user {user_id} {email.strip().lower()} ({role}) created")


@app.command("list")
def list_users() -> None:
    """List users, their role and last sign-in."""
    from tournesol.auth import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    table = Table("id", "e-mail", "name", "role", "language", "active", "last sign-in")
    with unit_of_work(factory) as session:
        for u in service.list_users(session):
            table.add_row(
                str(u.id),
                u.email,
                u.name,
                u.role,
                u.language,
                "yes" if u.active else "no",
                f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "-",
            )
    console.print(table)


@keys_app.command("create")
def create_key(
    name: str = typer.Argument(..., help="What the key is for, e.g. 'web shop events'."),
    scope: list[str] = typer.Option(
        ..., "--scope", help="A permission the key carries (repeat): e.g. events:write."
    ),
    source: str | None = typer.Option(
        None, help="Source name events sent with this key are filed under (default: events)."
    ),
) -> None:
    """Create an API key and print it once (only its hash is kept)."""
    from tournesol.auth import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    try:
        with unit_of_work(factory) as session:
            key, secret = service.create_api_key(
                session, name=name, scopes=scope, source_name=source
            )
            key_id = key.id
    except ValueError as exc:
        fail(str(exc), hint="scopes are listed in docs/api.md")
    console.print(f"[green]✓[/] API key {key_id} created. Copy it now, it is not shown again:")
    console.print(secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
def list_keys() -> None:
    """List API keys (never their secret)."""
    from tournesol.auth import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    table = Table("id", "name", "prefix", "scopes", "source", "created", "revoked")
    with unit_of_work(factory) as session:
        for k in service.list_api_keys(session):
            table.add_row(
                str(k.id),
                k.name,
                f"tsk_{k.prefix}_…",
                ", ".join(k.scopes),
                k.source_name or "-",
                f"{k.created_at:%Y-%m-%d}",
                f"{k.revoked_at:%Y-%m-%d}" if k.revoked_at else "-",
            )
    console.print(table)


@keys_app.command("revoke")
def revoke_key(
    key_id: int = typer.Argument(..., help="The key's id (see `apikeys list`)."),
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    from tournesol.auth import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    try:
        with unit_of_work(factory) as session:
            service.revoke_api_key(session, key_id=key_id)
    except ValueError as exc:
        fail(str(exc), hint="`tournesol apikeys list` shows the keys")
    console.print(f"[green]✓[/] API key {key_id} revoked")
