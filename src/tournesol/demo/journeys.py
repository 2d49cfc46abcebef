"""The demo's journeys step: the three example journeys (``triggers/examples``) published with
their messages (triggered campaigns, ``demo/campaigns/journeys/*.yaml``), then three days
played from now on the demo's customers by the real engine and gate, a pass every two hours:
the new customers enter the welcome series, some carts are left on the web shop (a few are
then ordered), the customers whose birthday falls in those days get a greeting. Messages go
into the outbox (nothing is sent: `tournesol campaigns run` sends, docs/campaigns.md)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tournesol.db import unit_of_work, utcnow

MESSAGES_DIR: Final = Path(__file__).with_name("campaigns") / "journeys"
EXAMPLES_DIR: Final = Path(__file__).resolve().parent.parent / "triggers" / "examples"
DAYS: Final = 3
STEP: Final = timedelta(hours=2)
CARTS: Final = 60  # carts left at the start, by customers with an e-mail address
ORDERED: Final = 20  # of which ordered a few hours later


def journeys(factory: sessionmaker[Session], console: Console) -> Counter[str]:
    """Publish the demo journeys and play three days of them, once (a second demo finds them
    played and says so). Prints what each journey did; returns the worker's counts."""
    from tournesol.campaigns import service as campaigns
    from tournesol.campaigns.service import Policies
    from tournesol.cli.campaigns import read_campaign_file, save_campaign
    from tournesol.triggers import service
    from tournesol.triggers.gate import DispatchGate
    from tournesol.triggers.models import JourneyInstance
    from tournesol.triggers.worker import run_once

    start = utcnow()
    with unit_of_work(factory) as session:
        for file in sorted(MESSAGES_DIR.glob("*.yaml")):
            found = read_campaign_file(file)
            if campaigns.get_by_code(session, code=found["values"]["code"]) is None:
                save_campaign(session, found, created_by="demo")
        for file in sorted(EXAMPLES_DIR.glob("*.yaml")):
            service.publish(session, text=file.read_text(encoding="utf-8"), now=start, actor="demo")
        played = session.scalar(select(func.count()).select_from(JourneyInstance))
    if played:
        console.print("[green]✓[/] Demo journeys played already (tournesol journeys list)")
        return Counter()
    gate = DispatchGate(Policies())
    total: Counter[str] = Counter()
    with unit_of_work(factory) as session:
        # the demo's customers arrived minutes ago: the welcome series is for them
        total.update(service.collect_events(session, now=start, backfill=True, limit=1_000_000))
        later = _carts(session, start)
    clock = start
    end = start + timedelta(days=DAYS)
    with console.status("Journeys: three days of the engine, a pass every two hours...") as s:
        while clock <= end:
            due = [e for e in later if e[0] <= clock]
            if due:
                with unit_of_work(factory) as session:
                    for at, customer_id, kind, properties, event_id in due:
                        service.submit_event(
                            session, customer_id=customer_id, type=kind, properties=properties,
                            occurred_at=at, event_id=event_id,
                        )  # fmt: skip
                later = [e for e in later if e[0] > clock]
            total.update(run_once(factory, now=clock, gate=gate, worker="demo"))
            s.update(f"Journeys: {clock - start} of {DAYS} days played")
            clock += STEP
    _show(factory, console)
    return total


def _carts(
    session: Session, start: datetime
) -> list[tuple[datetime, int, str, dict[str, object], str]]:
    """Carts left at the start by customers with an e-mail address (inbox events, as the web
    shop's Segment ``track`` calls would bring them), some ordered hours later: the ones to
    submit later, with their time."""
    from tournesol.customers.models import Customer
    from tournesol.triggers import service

    ids = list(
        session.scalars(
            select(Customer.id)
            .where(Customer.status == "active", Customer.email.is_not(None))
            .order_by(Customer.id)
            .limit(CARTS * 5)
        )
    )
    rng = random.Random(7)
    later = []
    for n, customer_id in enumerate(sorted(rng.sample(ids, min(CARTS, len(ids))))):
        cart = f"demo-cart-{n + 1:03d}"
        total = round(rng.uniform(15, 180), 2)
        service.submit_event(
            session, customer_id=customer_id, type="cart_abandoned",
            properties={"cart_id": cart, "total": total}, occurred_at=start,
            event_id=f"demo:{cart}:abandoned",
        )  # fmt: skip
        if n < ORDERED:
            at = start + timedelta(hours=rng.choice((4, 10, 30)))
            later.append(
                (at, customer_id, "order_completed", {"cart_id": cart, "total": total},
                 f"demo:{cart}:ordered")
            )  # fmt: skip
    return later


def _show(factory: sessionmaker[Session], console: Console) -> None:
    from tournesol.triggers import service
    from tournesol.triggers.models import JourneyInstance, JourneyStepLog

    table = Table(title="Journeys played over three days", title_justify="left")
    for col, justify in (
        ("journey", "left"), ("entered", "right"), ("running", "right"), ("goals", "right"),
        ("messages", "left"), ("suppressed, why", "left"), ("exits", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    with unit_of_work(factory) as session:
        for journey in service.list_journeys(session):
            statuses: Counter[str] = Counter()
            reasons: Counter[str] = Counter()
            for status, reason, count in session.execute(
                select(JourneyInstance.status, JourneyInstance.exit_reason, func.count())
                .where(JourneyInstance.journey_id == journey.id)
                .group_by(JourneyInstance.status, JourneyInstance.exit_reason)
            ):
                statuses[status] += count
                if status == "exited":
                    reasons[str(reason)] += count
            sent: Counter[str] = Counter()
            suppressed: Counter[str] = Counter()
            for step, outcomes in service.graph_counts(session, journey_id=journey.id).items():
                for outcome, count in outcomes.items():
                    if outcome == "sent":
                        sent[step] += count
            for reason, count in session.execute(
                select(JourneyStepLog.detail, func.count())
                .where(
                    JourneyStepLog.journey_id == journey.id, JourneyStepLog.outcome == "suppressed"
                )
                .group_by(JourneyStepLog.detail)
            ):
                suppressed[str(reason)] += count
            running = sum(statuses[s] for s in service.LIVE_STATUSES)
            table.add_row(
                journey.code,
                f"{sum(statuses.values()):,}",
                f"{running:,}",
                f"{statuses['done']:,}",
                ", ".join(f"{k} {v:,}" for k, v in sent.most_common(4)) or "-",
                ", ".join(f"{k} {v:,}" for k, v in suppressed.most_common(3)) or "-",
                ", ".join(f"{k!s} {v:,}" for k, v in reasons.most_common(3)) or "-",
            )
    console.print(table)
