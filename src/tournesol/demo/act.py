"""The demo's campaign step: two competing campaigns (``demo/campaigns/*.yaml``) created on the
demo's segments and planned together, with the funnel of each shown. Nothing is sent: sending
needs an SMTP relay and an SMS provider (docs/campaigns.md), and the demo has neither."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from tournesol.db import unit_of_work, utcnow

CAMPAIGNS_DIR = Path(__file__).with_name("campaigns")


def campaign_files() -> list[Path]:
    """The demo's campaign files, in the order they are created."""
    return sorted(CAMPAIGNS_DIR.glob("*.yaml"))


def act(factory: sessionmaker[Session], console: Console) -> list[str]:
    """Create the demo campaigns that do not exist yet and plan those not planned yet, all
    together (they compete); print their funnels. Returns the codes planned now (none on a
    second demo run: a campaign is planned once)."""
    from tournesol.campaigns import service
    from tournesol.cli.campaigns import read_campaign_file, save_campaign

    codes: list[str] = []
    with unit_of_work(factory) as session:
        for file in campaign_files():
            found = read_campaign_file(file)
            values = found["values"]
            if service.get_by_code(session, code=values["code"]) is None:
                save_campaign(session, found, created_by="demo")
            codes.append(values["code"])
    with unit_of_work(factory) as session:
        waiting = [
            c
            for code in codes
            if (c := service.get_by_code(session, code=code)) is not None
            and c.status in ("draft", "scheduled")
        ]
        if not waiting:
            console.print("[green]✓[/] Demo campaigns planned already (tournesol campaigns list)")
            return []
        with console.status("Planning the demo campaigns together..."):
            reports = service.plan(
                session, campaigns=waiting, now=utcnow(), policies=service.Policies()
            )
    table = Table(title="Campaigns planned together (nothing sent)", title_justify="left")
    for col, justify in (
        ("campaign", "left"), ("audience", "right"), ("messages", "right"),
        ("control", "right"), ("left out, why", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for report in reports:
        channels = ", ".join(f"{c} {n:,}" for c, n in report.channels.most_common())
        table.add_row(
            report.code,
            f"{report.funnel[0][1]:,}",
            f"{report.planned:,} ({channels})" if channels else "0",
            f"{report.control:,}",
            ", ".join(f"{reason} {n:,}" for reason, n in report.excluded.most_common(3)) or "-",
        )
    console.print(table)
    return [r.code for r in reports]
