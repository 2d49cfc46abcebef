"""The measurement pages in a real browser: Playwright driving Debian's Chromium against a live
server on each database. The base: 400 customers, a global holdout, a letter campaign with
two variants planned by the campaigns service (its messages marked sent, purchases after
them), and four earlier e-mail campaigns written as rows, so the dashboard has months to
draw. A marketer signs in, lands on the dashboard, then opens the hub and every report: each
chart is drawn (a canvas of non-zero size) and each table has rows. With JavaScript off, the
tables are all there and no empty chart frame shows.

Screenshots go to build/screenshots/<backend>/ (reports-*.png); on SQLite also to
docs/img/14-<name>.png (docs/user-guide.md shows them)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.e2e.live_server import LiveServer
from tests.integration.test_measure import assign, campaign, sent
from tournesol.auth import service as auth_service
from tournesol.campaigns import results as campaign_results
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import CampaignTarget, Outbox
from tournesol.customers.models import Brand, Customer
from tournesol.db import unit_of_work
from tournesol.ingest.models import Source
from tournesol.interactions.models import Transaction
from tournesol.reporting import holdouts
from tournesol.scoring.models import CustomerRfm
from tournesol.segments.models import Segment

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
DOCS = ROOT / "docs" / "img"
PASSWORD = "reports-browser-password"
PEOPLE = 400
DAY = timedelta(days=1)
LETTER = "rentree_courrier"
# the e-mail campaigns written as rows: (code, days ago)
MAILS = (("newsletter_juin", 150), ("soldes_ete", 115), ("rentree_mail", 80), ("automne_mail", 50))

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


def _buy(
    session: Any, source: int, brand: int, customer_id: int, at: datetime, rng: random.Random
) -> None:
    session.add(
        Transaction(
            source_id=source, external_id=f"r{customer_id}-{at.timestamp():.0f}",
            customer_id=customer_id, occurred_at=at, kind="ticket", brand_id=brand,
            total_amount=Decimal(rng.randrange(2500, 14000)) / 100,
        )
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(live_server: LiveServer) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(9)
    with unit_of_work(live_server.factory) as session:
        brand = Brand(code="SOLEIL", name="Soleil")
        source = Source(name="caisses", kind="pos", restrictions=[])
        session.add_all([brand, source])
        session.flush()
        people = [
            Customer(
                first_name="Client", last_name=f"Rapport{i}", country="FR",
                address_line4=f"{i + 1} RUE DES LILAS", address_line6=f"{69001 + i % 9} LYON",
            )
            for i in range(PEOPLE)
        ]  # fmt: skip
        session.add_all(people)
        session.flush()
        ids = [p.id for p in people]
        holdout, _count = holdouts.regenerate(
            session, now=now - 200 * DAY, actor="test", share=0.05, salt="reports-e2e"
        )
        held = holdouts.stored_arms(session, holdout, sorted(ids))
        # RFM segments for the base's health
        segments = ("champions", "loyal", "potential_loyalists", "at_risk", "hibernating", "lost")
        for customer_id in ids:
            segment = rng.choices(segments, weights=(1, 2, 3, 2, 3, 2))[0]
            session.add(
                CustomerRfm(customer_id=customer_id, scope="all", recency_days=30, frequency=2,
                            monetary=Decimal(100), r_score=3, f_score=3, m_score=3, segment=segment)
            )  # fmt: skip
        # a base rate of purchases for everyone
        for customer_id in ids:
            for month in range(6):
                if rng.random() < 0.05:
                    at = now - (month * 30 + rng.randrange(1, 29)) * DAY
                    _buy(session, source.id, brand.id, customer_id, at, rng)

        # e-mail campaigns written as rows: half treated, the treated buy more
        for code, ago in MAILS:
            c = campaign(session, code, brand_id=brand.id, fixed_cost=Decimal("120"),
                         unit_costs={"email": 0.02}, control_share=0.5)  # fmt: skip
            at = now - ago * DAY
            for customer_id in ids:
                treated = rng.random() < 0.5 and not held[customer_id]
                reason = (
                    None
                    if treated
                    else ("global_holdout" if held[customer_id] else "control_group")
                )
                assign(session, c, customer_id, "target" if treated else "control",
                       reason=reason, channel="email", at=at)  # fmt: skip
                if not treated:
                    continue
                opened = rng.random()
                human = opened < 0.3
                sent(
                    session, c, customer_id, channel="email", at=at,
                    opened_at=at + timedelta(hours=2) if opened < 0.5 else None,
                    human_opened_at=at + timedelta(hours=2) if human else None,
                    clicked_at=at + timedelta(hours=3) if opened < 0.1 else None,
                    human_clicked_at=at + timedelta(hours=3) if opened < 0.08 else None,
                )  # fmt: skip
                if rng.random() < 0.12:
                    _buy(
                        session,
                        source.id,
                        brand.id,
                        customer_id,
                        at + rng.randrange(2, 20) * DAY,
                        rng,
                    )

        # the letter: planned by the campaigns service, two variants, then sent
        session.add(Segment(code="tous", name="Tous les clients", definition={"all": []}))
        session.flush()
        letter = campaigns.create(
            session, code=LETTER, name="Rentrée : courrier", segment="tous", channels=["postal"],
            brand="SOLEIL", control_share=0.2, fixed_cost=Decimal("150"),
            unit_costs={"postal": "0.95"}, variant_shares={"A": 0.5, "B": 0.5},
        )  # fmt: skip
        for variant in ("A", "B"):
            campaigns.set_message(session, campaign=letter, channel="postal", language="fr",
                                  body_text=f"Bonjour ({variant})", variant=variant)  # fmt: skip
        planned_at = now - 35 * DAY
        [report] = campaigns.plan(session, campaigns=[letter], now=planned_at,
                                  policies=campaigns.Policies())  # fmt: skip
        assert report.planned > 200 and report.control > 40
        session.execute(
            update(Outbox)
            .where(Outbox.campaign_id == letter.id, Outbox.state == "planned")
            .values(state="sent", sent_at=planned_at + DAY)
        )
        targets = session.execute(
            select(CampaignTarget.customer_id, CampaignTarget.group, CampaignTarget.variant).where(
                CampaignTarget.campaign_id == letter.id
            )
        ).all()
        for customer_id, group, variant in targets:
            rate = {"target": 0.32 if variant == "B" else 0.24, "control": 0.08}.get(group, 0)
            if rng.random() < rate:
                _buy(session, source.id, brand.id, customer_id,
                     planned_at + rng.randrange(5, 25) * DAY, rng)  # fmt: skip
        session.flush()
        campaign_results.attribute(session, now=now)
        auth_service.create(
            session, email="reports@e2e.example", name="Marie Mesure", role="marketer",
            password=PASSWORD, language="en",
        )  # fmt: skip
    return {"letter": LETTER}


@pytest.fixture(scope="module")
def browser(backend: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    (SHOTS / backend).mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


def check_drawn(page: Any, what: str) -> None:
    """Every chart of the page drawn (a visible canvas of non-zero size), every table filled."""
    page.wait_for_function(
        "[...document.querySelectorAll('canvas[data-chart]')]"
        ".every(c => c.getAttribute('data-drawn') === 'true')"
    )
    canvases = page.locator("canvas[data-chart]")
    assert canvases.count() >= 1, f"{what}: no chart"
    for i in range(canvases.count()):
        canvas = canvases.nth(i)
        box = canvas.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, (what, box)
        assert canvas.get_attribute("role") == "img"
        assert (canvas.get_attribute("aria-label") or "").endswith(
            "The table below gives every figure."
        )
    tables = page.locator("table.report")
    assert tables.count() >= 1, f"{what}: no table"
    for i in range(tables.count()):
        assert tables.nth(i).locator("tbody tr").count() >= 1, f"{what}: an empty table"


def shoot(page: Any, backend: str, name: str) -> None:
    page.screenshot(path=str(SHOTS / backend / f"reports-{name}.png"), full_page=True)
    if backend == "sqlite":
        page.screenshot(path=str(DOCS / f"14-{name}.png"), full_page=True)


def test_a_marketer_reads_every_report_in_a_real_browser(
    browser: Any, live_server: LiveServer, world: dict[str, Any], backend: str
) -> None:
    context = browser.new_context(locale="en-GB", viewport={"width": 1360, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(live_server.url("/login"))
    page.get_by_label("E-mail").fill("reports@e2e.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    # marketers land on the dashboard
    page.wait_for_url(re.compile(r".*/dashboard$"))
    assert page.get_by_role("heading", name="Dashboard", exact=True).is_visible()
    check_drawn(page, "dashboard")
    assert page.locator(".dashboard > section").count() >= 4
    # once the charts are drawn, their tables are folded away, one click from the chart
    figures = page.locator("details.figures-table").first
    assert figures.get_attribute("open") is None
    band = page.locator("#incremental-by-month-chart-0 canvas")
    assert band.get_attribute("aria-label").startswith(  # type: ignore[union-attr]
        "Line chart with a shaded band (95 %): Incremental revenue with its 95% interval"
    )
    shoot(page, backend, "dashboard")

    # the hub, from the menu
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    page.wait_for_url(re.compile(r".*/reports$"))
    assert page.get_by_role("link", name="Channels compared").is_visible()
    shoot(page, backend, "reports")

    # a campaign's three reports, from the hub's list of campaigns
    page.get_by_role("link", name="Campaign scorecard · Rentrée : courrier").click()
    page.wait_for_url(re.compile(rf".*/reports/campaigns/{LETTER}$"))
    check_drawn(page, "scorecard")
    assert page.get_by_role("note", name="Read first").is_visible()
    assert page.locator("dl.figures .figure").count() >= 10
    shoot(page, backend, "scorecard")
    subnav = page.get_by_role("navigation", name="Reports of this campaign")
    subnav.get_by_role("link", name="A/B variants").click()
    page.wait_for_url(re.compile(r".*/variants$"))
    check_drawn(page, "variants")
    rows = page.locator("table.report tbody tr")
    assert [rows.nth(i).locator("th").inner_text() for i in range(rows.count())] == [
        "A",
        "B",
        "control",
    ]
    shoot(page, backend, "variants")
    subnav.get_by_role("link", name="Direct-mail matchback").click()
    page.wait_for_url(re.compile(r".*/matchback$"))
    check_drawn(page, "matchback")
    assert page.get_by_role("rowheader", name="RENTREE_COURRIER-CTL").is_visible()
    shoot(page, backend, "matchback")

    # the reports over a period, and the programme
    for path, name in (("/reports/channels", "channels"), ("/reports/costs", "costs"),
                       ("/reports/deliverability", "deliverability"),
                       ("/reports/programme", "programme")):  # fmt: skip
        page.goto(live_server.url(path))
        check_drawn(page, name)
        shoot(page, backend, name)

    # a different period: the form reloads the report for it
    page.goto(live_server.url("/reports/costs"))
    page.locator("#since").fill((datetime.now(UTC) - 60 * DAY).date().isoformat())
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r".*/reports/costs\?since=.*"))
    campaigns_shown = page.locator("table.report tbody th").all_inner_texts()
    assert "automne_mail" in campaigns_shown and "rentree_mail" not in campaigns_shown

    # the cube: revenue by channel is fine, attributed revenue across campaigns is refused
    page.goto(live_server.url("/reports/cube"))
    page.locator("#dim-campaign").uncheck()
    page.locator("#dim-arm").check()
    page.locator("#measure-revenue_per_customer").check()
    page.get_by_role("button", name="Build the report").click()
    page.wait_for_url(re.compile(r".*/reports/cube\?.*run=1.*"))
    check_drawn(page, "cube")
    assert page.locator("table.report tbody th").all_inner_texts() == [
        "control",
        "holdout",
        "treatment",
    ]
    shoot(page, backend, "cube")
    page.locator("#measure-attributed_revenue").check()
    page.get_by_role("button", name="Build the report").click()
    alert = page.get_by_role("alert")
    assert "cannot be added up across campaigns" in alert.inner_text()
    assert page.locator("table.report").count() == 0

    # the CSV export downloads
    page.goto(live_server.url(f"/reports/campaigns/{LETTER}"))
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV (spreadsheet)").click()
    assert re.fullmatch(
        rf"scorecard-{LETTER}-\d{{4}}-\d\d-\d\d\.csv", download.value.suggested_filename
    )
    assert not errors, errors
    context.close()


def test_the_reports_read_without_javascript(
    browser: Any, live_server: LiveServer, world: dict[str, Any]
) -> None:
    context = browser.new_context(locale="fr-FR", java_script_enabled=False)
    page = context.new_page()
    page.goto(live_server.url("/login"))
    page.get_by_label("E-mail").fill("reports@e2e.example")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(re.compile(r".*/dashboard$"))
    # no chart, no empty frame: the tables, open
    assert page.locator("figure.chart").count() >= 4
    assert all(not f.is_visible() for f in page.locator("figure.chart").all())
    assert all(t.is_visible() for t in page.locator("table.report").all())
    page.goto(live_server.url(f"/reports/campaigns/{LETTER}"))
    assert not page.locator("figure.chart").first.is_visible()
    assert page.locator("table.report tbody tr").count() == 8
    context.close()
