"""`tournesol campaigns`: create, plan, run, report (docs/campaigns.md). To be written."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Campaigns: create, plan (or dry-run), send, import feedback, report.",
    no_args_is_help=True,
)
