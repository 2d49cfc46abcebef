"""The journey pages in a real browser: Playwright driving Debian's Chromium against a live
server on each database. Signs in, opens the journeys from the menu, opens the abandoned cart,
reads the graph and its counts, sees them move on their own (htmx polls every 10 s) when
customers buy, pauses the journey with the keyboard and resumes it, and runs a simulation.
Screenshots go to build/screenshots/<backend>/ (journeys-*.png)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.live_server import LiveServer
from tests.integration.test_journey_views import example, interaction
from tournesol.auth import service as auth_service
from tournesol.customers.models import Brand, Customer
from tournesol.db import unit_of_work
from tournesol.triggers import service as journeys
from tournesol.triggers.definition import load_journey
from tournesol.triggers.gate import RecordingGate
from tournesol.triggers.rules import GateResult

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
PASSWORD = "journeys-browser-password"
HOUR = timedelta(hours=1)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def world(live_server: LiveServer) -> dict[str, Any]:
    """The three example journeys published; twenty customers left a cart two days ago, four
    bought it, the others got a reminder (suppressed for a few), two unsubscribed; a
    marketer."""
    factory = live_server.factory
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    with unit_of_work(factory) as session:
        session.add(Brand(code="SOLEIL", name="Soleil"))
        ids = []
        for n in range(20):
            row = Customer(
                first_name=f"Cliente{n}", last_name="Navigateur", country="FR",
                email=f"cliente{n}@browser.example", created_at=t0 - timedelta(days=300),
            )  # fmt: skip
            session.add(row)
            session.flush()
            ids.append(row.id)
        for name in ("abandoned_cart", "welcome", "birthday"):
            journeys.publish(session, text=example(name), now=t0, actor="lead@e2e.example")
        journeys.collect_events(session, now=t0)
        for n, customer in enumerate(ids):
            interaction(
                session, customer, "cart_abandoned", t0 + n * timedelta(minutes=3), cart=n, total=60
            )
        for n in range(4):
            interaction(session, ids[n], "order_completed", t0 + 5 * HOUR, cart=n)
        journeys.collect_events(session, now=t0 + 6 * HOUR)
        journeys.process_inbox(session, now=t0 + 6 * HOUR)
        suppressed = set(ids[4:7])
        gate = RecordingGate(
            lambda send, inst, now: (
                GateResult("suppressed", "no_consent")
                if inst.customer_id in suppressed
                else GateResult("sent")
            )
        )
        journeys.run_due(session, now=t0 + 31 * HOUR, gate=gate)
        for customer in ids[18:]:
            interaction(session, customer, "email_unsubscribed", t0 + 32 * HOUR)
        journeys.collect_events(session, now=t0 + 32 * HOUR)
        journeys.process_inbox(session, now=t0 + 32 * HOUR)
        auth_service.create(
            session, email="journeys@e2e.example", name="Jeanne Journeys", role="marketer",
            password=PASSWORD, language="en",
        )  # fmt: skip
    return {"ids": ids, "t0": t0}


@pytest.fixture(scope="module")
def browser(backend: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    (SHOTS / backend).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def counts_of(page: Any, step_id: str) -> str:
    """The counts of a step's box, as shown."""
    box = page.locator("li.jbox").filter(has=page.locator(f'span.jid:text-is("{step_id}")'))
    return " ".join(box.locator("ul.jcounts").inner_text().split())


def test_follow_pause_resume_and_simulate_a_journey_in_a_real_browser(
    browser: Any, live_server: LiveServer, world: dict[str, Any], backend: str
) -> None:
    shots = SHOTS / backend
    context = browser.new_context(locale="en-GB", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(live_server.url("/login"))
    page.get_by_label("E-mail").fill("journeys@e2e.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()

    # the menu leads to the list
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Journeys").click()
    page.wait_for_url(re.compile(r".*/journeys$"))
    row = page.locator("tr").filter(has_text="abandoned_cart")
    assert " ".join(row.inner_text().split()).startswith(
        "Panier abandonné abandoned_cart active v1 14 13"
    )
    page.screenshot(path=str(shots / "journeys-01-list.png"), full_page=True)

    # the journey: the graph, its steps in words and their counts
    page.get_by_role("link", name="Panier abandonné").click()
    page.wait_for_url(re.compile(r".*/journeys/abandoned_cart$"))
    assert page.get_by_role("heading", name="The journey, step by step").is_visible()
    steps = page.get_by_role("list", name=re.compile("^Steps of the journey"))
    definition = load_journey(example("abandoned_cart"))
    assert steps.locator(":scope > li").count() == len(definition.steps) + 1  # and the entry
    assert counts_of(page, "wait_cart") == "4 events came 16 timed out"
    assert counts_of(page, "remind") == "13 sent 3 suppressed 3 no consent"
    assert counts_of(page, "wait_cart_2") == "14 waiting here now 2 interrupted 2 unsubscribed"
    assert counts_of(page, "converted") == "4 goals reached"
    arrows = page.locator("svg.jarrows path[marker-end]")
    assert arrows.count() == len(definition.edges()) + 1
    page.screenshot(path=str(shots / "journeys-02-graph.png"), full_page=True)

    # customers buy: the counts move without reloading the page
    with unit_of_work(live_server.factory) as session:
        t0 = world["t0"]
        for n in (10, 11, 12):
            interaction(session, world["ids"][n], "order_completed", t0 + 40 * HOUR, cart=n)
        journeys.collect_events(session, now=t0 + 40 * HOUR)
        journeys.process_inbox(session, now=t0 + 40 * HOUR)
    page.wait_for_function(
        "document.querySelector('#journey-graph').innerText.includes('7 goals reached')",
        timeout=25_000,
    )
    assert counts_of(page, "wait_cart_2") == (
        "11 waiting here now 3 events came 2 interrupted 2 unsubscribed"
    )

    # pause with the keyboard, then resume
    pause = page.get_by_role("button", name="Pause the journey")
    pause.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*notice=paused$"))
    assert page.get_by_role("status").inner_text().startswith("Journey paused")
    assert page.locator("h1 .badge").inner_text() == "paused"
    page.screenshot(path=str(shots / "journeys-03-paused.png"), full_page=True)
    page.get_by_role("button", name="Resume the journey").click()
    page.wait_for_url(re.compile(r".*notice=resumed$"))
    assert page.locator("h1 .badge").inner_text() == "active"
    with unit_of_work(live_server.factory) as session:
        journey = journeys.get_by_code(session, code="abandoned_cart")
        assert journey is not None and journey.status == "active"

    # what would happen over the last week, for everyone: counts only, nothing written
    page.get_by_label("All active customers (the first ones by id)").check()
    page.get_by_role("button", name="Simulate").click()
    page.wait_for_url(re.compile(r".*/journeys/abandoned_cart/simulate$"))
    report = page.locator("main").inner_text()
    assert "Nothing was written" in report
    assert "Cliente" not in report and "browser.example" not in report
    page.screenshot(path=str(shots / "journeys-04-simulation.png"), full_page=True)
    context.close()
