"""The advisors' task list in a real browser: Playwright driving Debian's Chromium against a
live server on each database. An advisor signs in, opens the tasks from the menu, filters a
queue (the list is swapped by htmx), completes a task with the keyboard only and sees it leave
the list, with the message read out and the task's outcome on the customer's timeline.
Screenshots go to build/screenshots/<backend>/ (tasks-*.png); on SQLite, the one of the list
also to docs/img/13-advisor-tasks.png (docs/user-guide.md shows it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e.live_server import LiveServer
from tournesol.auth import service as auth_service
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Outbox
from tournesol.consent.models import Preference
from tournesol.customers.models import Brand, Customer
from tournesol.db import unit_of_work
from tournesol.interactions.models import Interaction
from tournesol.scoring.models import CustomerFeature, CustomerRfm

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
DOCS_SHOT = ROOT / "docs" / "img" / "13-advisor-tasks.png"
PASSWORD = "tasks-browser-password"
HOUR = timedelta(hours=1)
PEOPLE = (  # first name, last name, queue, priority, hours ago, RFM segment, purchases
    ("Camille", "Fontaine", "premium", "high", 30, "champions", 9),
    ("Hugo", "Marchand", "premium", "high", 26, "loyal", 6),
    ("Léa", "Girard", "standard", None, 20, "potential_loyalists", 3),
    ("Nathan", "Roussel", "premium", None, 8, None, None),
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def world(live_server: LiveServer) -> dict[str, Any]:
    """Four advisor tasks of the welcome journey (three premium, one standard), asked
    through the dispatch gate over the last day and a half, with the customers' context; an
    advisor."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ids: dict[str, int] = {}
    tasks: dict[str, int] = {}
    with unit_of_work(live_server.factory) as session:
        session.add(Brand(code="SOLEIL", name="Soleil"))
        session.flush()
        campaign = campaigns.create(
            session, code="welcome_call", name="Appel de bienvenue", segment=None,
            channels=["email"], kind="triggered", brand="SOLEIL", control_share=0.0,
        )  # fmt: skip
        for first, last, queue, priority, ago, segment, purchases in PEOPLE:
            civility = "M." if first in ("Hugo", "Nathan") else "Mme"
            row = Customer(first_name=first, last_name=last, civility=civility, country="FR")
            session.add(row)
            session.flush()
            ids[first] = row.id
            properties: dict[str, Any] = {"journey": "welcome", "step": "advisor", "visit": 1}
            properties |= {"instance_id": row.id, "queue": queue}
            if priority:
                properties["priority"] = priority
            request = campaigns.AdmitRequest(
                campaign, row.id, "advisor_task", f"browser:{first}", properties
            )
            [answer] = campaigns.admit_many(
                session, [request], now=now - ago * HOUR, policies=campaigns.Policies()
            )
            assert answer.outbox_id is not None
            tasks[first] = answer.outbox_id
            if segment:
                session.add(
                    CustomerRfm(
                        customer_id=row.id, scope="all", recency_days=10, frequency=purchases,
                        monetary=Decimal(120 * (purchases or 1)), r_score=5, f_score=4,
                        m_score=4, segment=segment,
                    )
                )  # fmt: skip
                session.add(
                    CustomerFeature(
                        customer_id=row.id, purchase_count_365=purchases,
                        last_purchase_at=now - timedelta(days=10 + (purchases or 0)),
                    )
                )  # fmt: skip
        session.add_all(
            [
                Preference(customer_id=ids["Camille"], channel="phone", preferred=True,
                           days="mon,tue,wed,thu,fri", hours="09:00-12:00"),
                Preference(customer_id=ids["Hugo"], channel="email", preferred=True),
                Preference(customer_id=ids["Léa"], channel="any", hours="17:00-19:00",
                           language="fr"),
            ]
        )  # fmt: skip
        auth_service.create(
            session, email="tasks@e2e.example", name="Anne Conseil", role="advisor",
            password=PASSWORD, language="en",
        )  # fmt: skip
    return {"ids": ids, "tasks": tasks}


@pytest.fixture(scope="module")
def browser(backend: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    (SHOTS / backend).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def names_in(page: Any) -> list[str]:
    """The customers of the task table, in order."""
    cells = page.locator("table.tasks tbody th a")
    return [" ".join(text.split()) for text in cells.all_inner_texts()]


def test_an_advisor_works_a_task_in_a_real_browser(
    browser: Any, live_server: LiveServer, world: dict[str, Any], backend: str
) -> None:
    shots = SHOTS / backend
    context = browser.new_context(locale="en-GB", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(live_server.url("/login"))
    page.get_by_label("E-mail").fill("tasks@e2e.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()

    # the menu leads to the list, oldest task first
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    page.wait_for_url(re.compile(r".*/tasks$"))
    assert names_in(page) == [
        "Mme Camille Fontaine", "M. Hugo Marchand", "Mme Léa Girard", "M. Nathan Roussel"
    ]  # fmt: skip
    assert page.get_by_role("table", name="Open tasks, oldest first").is_visible()
    assert "4 open tasks" in page.locator("#tasks").inner_text()

    # the queue filter: the list is swapped in place, the address follows
    page.get_by_label("Queue", exact=True).select_option("premium")
    page.wait_for_url(re.compile(r".*/tasks\?queue=premium$"))
    page.wait_for_function("document.querySelectorAll('table.tasks tbody tr').length === 3")
    assert names_in(page) == ["Mme Camille Fontaine", "M. Hugo Marchand", "M. Nathan Roussel"]
    assert page.get_by_role("table", name=re.compile("queue premium")).is_visible()

    # complete Camille's task with the keyboard alone: outcome, note, Done
    task = world["tasks"]["Camille"]
    outcome = page.locator(f"#outcome-{task}")
    outcome.focus()
    page.keyboard.press("ArrowDown")  # the first outcome: reached
    assert outcome.input_value() == "reached"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == f"note-{task}"
    page.keyboard.type("Passera samedi en boutique.")
    if backend == "sqlite":
        page.screenshot(path=str(DOCS_SHOT), full_page=True)
    page.screenshot(path=str(shots / "tasks-01-list.png"), full_page=True)
    page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Done · Camille Fontaine")
    assert page.evaluate("document.activeElement.type") == "submit" and button.is_visible()
    page.keyboard.press("Enter")

    # the task leaves the list; the message has the focus, so a screen reader reads it out
    page.wait_for_function("document.querySelectorAll('table.tasks tbody tr').length === 2")
    status = page.get_by_role("status")
    assert status.inner_text() == "Task done: its outcome is on the customer's timeline."
    assert page.evaluate("document.activeElement.getAttribute('role')") == "status"
    assert names_in(page) == ["M. Hugo Marchand", "M. Nathan Roussel"]
    assert "3 open tasks" in page.locator("#tasks").inner_text()
    page.screenshot(path=str(shots / "tasks-02-done.png"), full_page=True)
    with unit_of_work(live_server.factory) as session:
        assert session.scalar(select(Outbox.state).where(Outbox.id == task)) == "sent"
        row = session.scalars(
            select(Interaction).where(Interaction.type == "advisor_task_done")
        ).one()
        assert (row.customer_id, row.outcome) == (world["ids"]["Camille"], "reached")
        assert row.payload["note"] == "Passera samedi en boutique."

    # the customer's page, from the list
    page.get_by_role("link", name="M. Hugo Marchand").click()
    page.wait_for_url(re.compile(rf".*/customers/{world['ids']['Hugo']}$"))
    context.close()
