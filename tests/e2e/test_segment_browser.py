"""The segment builder in a real browser: Playwright driving Debian's Chromium against a live
server on each database, with the demo base imported, resolved, and its features and RFM
computed. A marketer opens the builder, adds conditions and watches the live count change
(htmx, each number checked against the service), negates one, switches to the JSON editor and
back, saves, and finds the segment in the list with its size; then its page, its profile and
the overlap page. Screenshots go to build/screenshots/<backend>/ (segments-*.png)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.live_server import LiveServer
from tournesol.auth import service as auth_service
from tournesol.db import unit_of_work
from tournesol.demo.generator import DemoManifest, generate
from tournesol.identity import service as identity_service
from tournesol.ingest.importer import import_file
from tournesol.ingest.schemas import load_mapping
from tournesol.scoring import features
from tournesol.scoring import service as scoring_service
from tournesol.segments import service

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
PASSWORD = "browser-test-password"
WOMEN = {"attribute": "gender", "op": "eq", "value": "F"}
EMAIL = {"reachable": "email"}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("segments-browser"), seed=7, persons=300)


@pytest.fixture(scope="module")
def world(live_server: LiveServer, demo: DemoManifest) -> dict[str, Any]:
    """The demo imported, resolved, with features and RFM; a marketer; a saved segment to
    compare with."""
    factory = live_server.factory
    for item in demo.files:
        if item.source != "products":
            import_file(factory, item.path, load_mapping(item.mapping))
    identity_service.resolve(factory, full=True)
    now = datetime.now(UTC)
    with unit_of_work(factory) as session:
        features.refresh(session, now=now)
        scoring_service.refresh_rfm(session, now=now, scope="all")
        auth_service.create(
            session,
            email="segments@e2e.example",
            name="Sam Segments",
            role="marketer",
            password=PASSWORD,
            language="en",
        )
        email = service.create(
            session, code="by-email", name="Reachable by e-mail", definition=EMAIL
        )
        service.refresh(session, email)
        # a segment with a history: its size at five refreshes, a day apart
        quality = service.create(
            session, code="good-data", name="Good contact data", definition={"all": []}
        )
        for days_ago, floor in zip(range(4, -1, -1), (95, 90, 80, 85, 70), strict=True):
            quality.definition = {"attribute": "quality_score", "op": "gte", "value": floor}
            service.refresh(session, quality, now=now - timedelta(days=days_ago))
    return {}


def expected(server: LiveServer, definition: dict[str, Any]) -> int:
    with unit_of_work(server.factory) as session:
        return service.count(session, definition).size


@pytest.fixture(scope="module")
def browser(backend: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    (SHOTS / backend).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def shown(page: Any) -> int:
    """The number the live count shows now."""
    text = page.locator("#live-count .count-size b").inner_text()
    return int(re.sub(r"\D", "", text))


def wait_for_count(page: Any, value: int) -> None:
    from playwright.sync_api import TimeoutError as Timeout

    try:
        page.wait_for_function(
            "n => { const b = document.querySelector('#live-count .count-size b');"
            " return b && Number(b.textContent.replace(/\\D/g, '')) === n; }",
            arg=value,
            timeout=10_000,
        )
    except Timeout:
        now = page.locator("#live-count").inner_text()
        raise AssertionError(f"the count never showed {value}: {now!r}") from None


def test_build_a_segment_watch_the_count_save_it_and_find_it_in_the_list(
    browser: Any, live_server: LiveServer, world: dict[str, Any], backend: str
) -> None:
    shots = SHOTS / backend
    context = browser.new_context(locale="en-GB", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(live_server.url("/login"))
    page.get_by_label("E-mail").fill("segments@e2e.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/dashboard$"))

    page.get_by_role("link", name="Segments", exact=True).click()
    page.wait_for_url(re.compile(r".*/segments$"))
    page.get_by_role("link", name="New segment").click()
    page.wait_for_url(re.compile(r".*/segments/new$"))
    everybody = expected(live_server, {"all": []})
    assert shown(page) == everybody
    assert page.locator("#live-count").get_attribute("aria-live") == "polite"
    assert "waiting for a value" in page.locator("#live-count").inner_text()

    # condition 1: women (the attribute and "is" are the defaults; type the value)
    page.get_by_label("Attribute").select_option("gender")
    page.locator("#c0-value").fill("F")
    women = expected(live_server, {"all": [WOMEN]})
    assert 0 < women < everybody
    wait_for_count(page, women)

    # condition 2: reachable by e-mail (a new row, then its kind)
    page.get_by_role("button", name="+ Add a condition").click()
    page.locator("#c1-kind").wait_for()
    page.select_option("#c1-kind", "reachable")
    page.locator("#c1-channel").wait_for()
    page.select_option("#c1-channel", "email")
    both = expected(live_server, {"all": [WOMEN, EMAIL]})
    wait_for_count(page, both)
    page.screenshot(path=str(shots / "segments-01-builder.png"), full_page=True)

    # NOT on condition 2: women without a usable e-mail
    page.get_by_label("NOT: exclude those who match").nth(1).check()
    wait_for_count(page, women - both)
    page.get_by_label("NOT: exclude those who match").nth(1).uncheck()
    wait_for_count(page, both)

    # condition 3: at least one purchase in the last 365 days (read from features)
    page.get_by_role("button", name="+ Add a condition").click()
    page.locator("#c2-kind").wait_for()
    page.select_option("#c2-kind", "behaviour")
    page.locator("#c2-measure").wait_for()
    page.select_option("#c2-window", "last_days")
    page.locator("#c2-days").fill("365")
    page.select_option("#c2-op", "gte")
    page.locator("#c2-value").fill("1")
    buyers = {
        "behaviour": {
            "of": "purchases",
            "measure": "count",
            "window": {"last_days": 365},
            "op": "gte",
            "value": 1,
        }
    }
    bought = expected(live_server, {"all": [WOMEN, EMAIL, buyers]})
    wait_for_count(page, bought)
    assert "features" in page.locator("#live-count").inner_text()

    # a wrong value: the error names the condition and the node's path
    page.locator("#c2-value").fill("lots")
    page.locator("#live-count .count-error").wait_for(timeout=10_000)
    error = page.locator("#live-count").inner_text()
    assert "Condition 3" in error and "$.all[2].behaviour.value" in error
    page.screenshot(path=str(shots / "segments-02-error.png"), full_page=True)
    page.locator("#c2-value").fill("1")
    wait_for_count(page, bought)

    # the JSON editor holds the same definition, and the form comes back from it
    page.get_by_text("JSON or YAML text").click()
    page.locator("#raw-text").wait_for()
    assert '"last_days": 365' in page.locator("#raw-text").input_value()
    page.screenshot(path=str(shots / "segments-03-json.png"), full_page=True)
    page.get_by_text("the form", exact=True).click()
    page.locator("#c2-kind").wait_for()
    assert page.locator("#c2-kind").input_value() == "behaviour"
    wait_for_count(page, bought)

    # save
    page.get_by_label("Name", exact=True).fill("Women with e-mail who bought this year")
    page.get_by_label("Code", exact=True).fill("women-email-buyers")
    page.get_by_role("button", name="Save the segment").click()
    page.wait_for_url(re.compile(r".*/segments/women-email-buyers\?notice=saved$"))
    assert "Segment saved and computed." in page.locator("main").inner_text()
    page.screenshot(path=str(shots / "segments-04-segment.png"), full_page=True)

    # the list: name, size
    page.get_by_role("link", name="Segments", exact=True).first.click()
    page.wait_for_url(re.compile(r".*/segments$"))
    row = page.locator("table.segments tr", has_text="Women with e-mail who bought this year")
    assert row.count() == 1
    assert re.sub(r"\D", "", row.locator("td.num").first.inner_text()) == str(bought)
    page.screenshot(path=str(shots / "segments-05-list.png"), full_page=True)

    # its profile against the base
    page.goto(live_server.url("/segments/women-email-buyers/profile"))
    assert page.get_by_role("heading", name="Age band").is_visible()
    assert page.locator("table.profile").count() == 5
    page.screenshot(path=str(shots / "segments-06-profile.png"), full_page=True)

    # the overlap of the two saved segments
    page.goto(live_server.url("/segments/overlap"))
    page.get_by_label("Reachable by e-mail").check()
    page.get_by_label("Women with e-mail who bought this year").check()
    page.get_by_role("button", name="Compare").click()
    page.locator("table.overlap").wait_for()
    page.screenshot(path=str(shots / "segments-07-overlap.png"), full_page=True)
    context.close()


def test_the_builder_is_usable_with_the_keyboard_and_in_french(
    browser: Any, live_server: LiveServer, world: dict[str, Any], backend: str
) -> None:
    context = browser.new_context(locale="fr-FR", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(live_server.url("/login"))
    page.get_by_label("E-mail").fill("segments@e2e.example")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(re.compile(r".*/dashboard$"))
    # the user's language is English: French comes from the switch
    page.goto(live_server.url("/lang/fr"))
    page.goto(live_server.url("/segments/new"))
    assert page.get_by_role("heading", name="Nouveau segment").is_visible()
    # keyboard: focus the value, type, and Enter counts (it does not save nor remove a row)
    page.locator("#c0-value").focus()
    page.keyboard.type("M")
    page.keyboard.press("Enter")
    men = expected(live_server, {"attribute": "gender", "op": "eq", "value": "M"})
    wait_for_count(page, men)
    assert page.url.endswith("/segments/new")
    assert page.locator("#c0-kind").count() == 1
    # the ALL / ANY switch is a radio group the arrows move through
    page.locator("#combine-all").focus()
    page.keyboard.press("ArrowRight")
    assert page.locator("#combine-any").is_checked()
    page.screenshot(path=str(SHOTS / backend / "segments-08-builder-fr.png"), full_page=True)
    context.close()
