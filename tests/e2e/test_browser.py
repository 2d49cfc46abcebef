"""The staff UI in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium,
installed by .ci/run) against a live server on each database. Signs in, finds a demo customer
by a phone number typed in another format, opens the page, filters the timeline, undoes a
merge, and finds the reads and the unmerge in the audit log. A screenshot of every page is
saved under build/screenshots/<backend>/ (docs/user-guide.md shows them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.e2e.live_server import LiveServer
from tournesol.auth import service as auth_service
from tournesol.customers.models import Customer
from tournesol.db import unit_of_work
from tournesol.demo.generator import DemoManifest, generate
from tournesol.identity import service as identity_service
from tournesol.identity.models import MergeEvent
from tournesol.ingest.importer import import_file
from tournesol.ingest.schemas import load_mapping
from tournesol.interactions.models import Interaction

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
PASSWORD = "browser-test-password"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("browser"), seed=3, persons=250)


@pytest.fixture(scope="module")
def world(live_server: LiveServer, demo: DemoManifest) -> dict[str, object]:
    """The demo imported and resolved in the server's database; a marketer and an admin."""
    factory = live_server.factory
    for item in demo.files:
        if item.source != "products":
            import_file(factory, item.path, load_mapping(item.mapping))
    identity_service.resolve(factory, full=True)
    with unit_of_work(factory) as session:
        channels = (
            select(Interaction.customer_id)
            .group_by(Interaction.customer_id)
            .having(func.count(func.distinct(Interaction.channel)) >= 2)
        )
        row = session.execute(
            select(Customer.id, Customer.phone_mobile, MergeEvent.id)
            .join(MergeEvent, MergeEvent.survivor_id == Customer.id)
            .where(
                Customer.status == "active",
                Customer.phone_mobile.like("+336%"),
                MergeEvent.unmerged_at.is_(None),
                Customer.id.in_(channels),
            )
            .order_by(Customer.id)
        ).first()
        assert row is not None, "the demo has merged customers with a mobile and a history"
        auth_service.create(
            session,
            email="marketer@e2e.example",
            name="Marie Marketing",
            role="marketer",
            password=PASSWORD,
            language="en",
        )
        auth_service.create(
            session,
            email="admin@e2e.example",
            name="Adam Admin",
            role="admin",
            password=PASSWORD,
            language="en",
        )
    customer_id, phone, event_id = row
    national = "0" + phone[3:]  # +33612345678 -> 06.12.34.56.78 (another format)
    return {
        "customer_id": customer_id,
        "event_id": event_id,
        "typed_phone": ".".join(national[i : i + 2] for i in range(0, 10, 2)),
    }


@pytest.fixture(scope="module")
def browser(backend: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    (SHOTS / backend).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def _sign_in(page, server: LiveServer, email: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url("/login"))
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # staff who read aggregates land on the marketing dashboard; the search is one link away
    page.wait_for_url(re.compile(r".*/dashboard$"))
    page.goto(server.url("/customers"))


def test_search_open_filter_unmerge_and_audit_in_a_real_browser(
    browser,
    live_server: LiveServer,
    world: dict[str, object],
    backend: str,  # type: ignore[no-untyped-def]
) -> None:
    shots = SHOTS / backend
    context = browser.new_context(locale="en-GB", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(live_server.url("/login"))
    page.screenshot(path=str(shots / "01-login.png"), full_page=True)
    _sign_in(page, live_server, "marketer@e2e.example")

    # search by phone typed in another format: results come as one types (htmx)
    customer_id = world["customer_id"]
    page.locator("#q").press_sequentially(str(world["typed_phone"]), delay=20)
    link = page.locator(f'#results a[href^="/customers/{customer_id}"]')
    link.wait_for(timeout=10_000)
    page.screenshot(path=str(shots / "02-search.png"), full_page=True)

    # the customer's page
    link.click()
    page.wait_for_url(re.compile(rf".*/customers/{customer_id}.*"))
    assert page.locator("#identity-title").is_visible()
    assert page.locator("#merges").get_by_text("in force").count() >= 1
    page.screenshot(path=str(shots / "03-customer.png"), full_page=True)

    # filter the timeline by one channel: only that channel's entries remain
    entries = page.locator("#timeline-list ol.timeline > li:not(.more)")
    before = entries.count()
    options = page.locator("#t-channel option:not([value=''])")
    assert options.count() >= 2
    label = options.nth(0).inner_text().strip()
    page.select_option("#t-channel", options.nth(0).get_attribute("value"))
    page.locator("#timeline-status").get_by_text(re.compile("Timeline filtered|Nothing")).wait_for()
    after = entries.count()
    assert 0 < after <= before
    for i in range(after):
        assert label in entries.nth(i).locator(".meta").inner_text()
    page.screenshot(path=str(shots / "04-timeline-filtered.png"), full_page=True)

    # undo the merge, with a reason
    event_id = world["event_id"]
    merges = page.locator("#merges")
    merges.get_by_text("Undo this merge").first.click()
    page.fill(f"#undo-reason-{event_id}", "two different people (browser test)")
    page.get_by_role("button", name=f"Undo merge {event_id}").click()
    page.wait_for_load_state()
    page.screenshot(path=str(shots / "05-after-unmerge.png"), full_page=True)
    with unit_of_work(live_server.factory) as session:
        event = session.get(MergeEvent, event_id)
        assert event is not None and event.unmerged_at is not None
        assert event.unmerge_reason == "two different people (browser test)"

    # the other pages, for the record
    for path, name in (("/identity/review", "06-review"), ("/quality", "07-quality")):
        page.goto(live_server.url(path))
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    context.close()

    # the audit log, as an admin: the reads of that customer's page and the unmerge
    context = browser.new_context(locale="en-GB", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    _sign_in(page, live_server, "admin@e2e.example")
    page.goto(live_server.url(f"/admin/audit?customer_id={customer_id}"))
    text = page.locator("main").inner_text()
    assert "customer.read" in text and "customer.unmerge" in text
    assert "marketer@e2e.example" in text
    page.screenshot(path=str(shots / "08-audit.png"), full_page=True)
    context.close()


def test_the_ui_speaks_french_to_a_french_browser(
    browser,
    live_server: LiveServer,
    world: dict[str, object],  # type: ignore[no-untyped-def]
) -> None:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.goto(live_server.url("/login"))
    assert page.get_by_role("heading", name="Se connecter").is_visible()
    assert page.locator("html").get_attribute("lang") == "fr"
    # for keyboard users the skip link is the first stop, and shows itself when focused
    first = "document.querySelector('a[href], button, input:not([type=hidden]), select').className"
    assert page.evaluate(first) == "skip"
    page.locator("a.skip").focus()
    assert page.locator("a.skip").bounding_box()["x"] >= 0  # type: ignore[index]
    context.close()
