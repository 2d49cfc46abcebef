"""The measurement pages on SQLite and PostgreSQL: every report route opens for the roles that
read aggregates (marketer, analyst, agency) and is refused to advisors, strangers are sent to
sign in; each page puts its notes before its figures, draws its charts from the same rows as
its table, and exports that table as CSV and JSON; the cube says why it refuses a question;
marketers and analysts land on the dashboard; French labels; and no customer's name, e-mail
or phone on any of these pages or exports, whoever reads them."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.test_measure import assign, buy, campaign, make_source, sent
from tests.web_support import make_api_key, signed_in
from tournesol.auth import rules
from tournesol.campaigns import results as campaign_results
from tournesol.customers.models import Customer
from tournesol.db import unit_of_work, utcnow
from tournesol.reporting import reports, views
from tournesol.reporting.models import HoldoutAssignment, HoldoutGroup
from tournesol.reporting.tables import Report
from tournesol.web.i18n import translations

CAMPAIGN_ROUTES = ("", "/variants", "/matchback")
PERIOD_ROUTES = ("/reports/channels", "/reports/costs", "/reports/deliverability")
OTHER_ROUTES = ("/reports/programme", "/reports/cube?run=1&dimension=campaign&measure=assigned")
PEOPLE = 120


@dataclass
class World:
    """Two measured campaigns (an e-mail and a letter, half treated, half control) and a
    global holdout over 120 customers whose personal data must never show."""

    spring: str
    letter: str
    secrets: list[str]

    def report_routes(self) -> list[str]:
        codes = (self.spring, self.letter)
        routes = [f"/reports/campaigns/{c}{r}" for c in codes for r in CAMPAIGN_ROUTES]
        return [*routes, *PERIOD_ROUTES, *OTHER_ROUTES]

    def routes(self) -> list[str]:
        return ["/reports", "/dashboard", *self.report_routes()]


@pytest.fixture
def world(factory: sessionmaker[Session]) -> World:
    start = utcnow() - timedelta(days=20)
    secrets: list[str] = []
    with unit_of_work(factory) as session:
        source = make_source(session)
        people = []
        for i in range(PEOPLE):
            row = Customer(
                first_name="Philomène", last_name=f"Vantongerloo{i:03d}", country="FR",
                email=f"philomene.vantongerloo{i}@secret-leak.example",
                phone_mobile=f"+3369{i:07d}",
            )  # fmt: skip
            session.add(row)
            people.append(row)
            secrets += [row.last_name or "", row.email or "", row.phone_mobile or ""]
        session.flush()
        ids = [p.id for p in people]
        spring = campaign(session, "spring_mail", fixed_cost=Decimal("20"))
        letter = campaign(
            session, "autumn_letter", channels=["postal"], postal_delay_days=3,
            unit_costs={"postal": 0.8}, fixed_cost=Decimal("50"),
        )  # fmt: skip
        for c, channel in ((spring, "email"), (letter, "postal")):
            for i, customer_id in enumerate(ids):
                treated = i % 2 == 0
                assign(session, c, customer_id, "target" if treated else "control",
                       reason=None if treated else "control_group", channel=channel, at=start)  # fmt: skip
                if treated:
                    sent(session, c, customer_id, channel=channel, at=start)
        for i, customer_id in enumerate(ids):
            if (i % 2 == 0 and i % 3 == 0) or (i % 2 == 1 and i % 10 == 1):
                buy(session, source, customer_id, start + timedelta(days=5), f"{30 + i % 7}.50")
        group = HoldoutGroup(version=1, share=0.1, salt="s", created_by="test",
                             created_at=start - timedelta(days=200))  # fmt: skip
        session.add(group)
        session.flush()
        for i, customer_id in enumerate(ids):
            session.add(
                HoldoutAssignment(group_id=group.id, customer_id=customer_id, unit=f"u{i}",
                                  held_out=i % 10 == 9, assigned_at=start - timedelta(days=200))
            )  # fmt: skip
        campaign_results.attribute(session, now=utcnow())
    secrets += ["Philomène", "secret-leak.example"]
    return World(spring.code, letter.code, secrets)


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def tables(page: str) -> list[str]:
    return re.findall(r'<table class="report".*?</table>', page, re.S)


def body_rows(table: str) -> list[str]:
    return re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)


def charts(page: str) -> list[dict[str, Any]]:
    return [json.loads(html.unescape(s)) for s in re.findall(r"data-chart='([^']*)'", page)]


# --- who may open what ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["marketer", "analyst", "agency"])
def test_every_report_opens_for_the_roles_that_read_aggregates(
    role: str, app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, role)
    for route in world.routes():
        page = client.get(route)
        assert page.status_code == 200, (role, route, page.text[:500])
        assert "<h1" in page.text and 'href="/reports"' in page.text, route
    hub = client.get("/reports").text
    assert '<a href="/reports" aria-current="page">Reports</a>' in hub


def test_advisors_are_refused_and_strangers_sent_to_sign_in(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    advisor = signed_in(app, factory, "advisor")
    assert 'href="/reports"' not in advisor.get("/customers").text  # not in the menu
    stranger = TestClient(app)
    for route in world.routes():
        refused = advisor.get(route)
        assert refused.status_code == 403, route
        assert 'role="alert"' in refused.text and "Not allowed" in refused.text
        assert advisor.get(route + ("&" if "?" in route else "?") + "format=csv").status_code == 403
        away = stranger.get(route, follow_redirects=False)
        assert away.status_code == 303 and away.headers["location"].startswith("/login?next=/")


def test_marketers_and_analysts_land_on_the_dashboard_advisors_on_the_customers(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    for role, target in (("marketer", "/dashboard"), ("analyst", "/dashboard"),
                         ("agency", "/dashboard"), ("advisor", "/customers")):  # fmt: skip
        client = signed_in(app, factory, role)
        assert client.get("/", follow_redirects=False).headers["location"] == target, role
    page = signed_in(app, factory, "marketer").get("/dashboard").text
    titles = re.findall(r'<h2 id="[^"]+-title">([^<]+)</h2>', page)
    assert titles[:4] == [
        "Incremental revenue by month of launch",
        "Programme impact (global holdout)",
        "Cost vs incremental revenue by channel (90 days)",
        "Base health",
    ]
    drawn = charts(page)
    band = next(c for c in drawn if c["type"] == "band")
    assert band["format"] == "money" and band["series"][0]["label"] == "Incremental revenue"
    assert len(band["low"]) == len(band["high"]) == len(band["labels"]) >= 1
    assert all(lo <= hi for lo, hi in zip(band["low"], band["high"], strict=True) if lo is not None)
    # each table of the dashboard is in the page, open, for those without JavaScript
    assert page.count('<details class="figures-table" open data-close-when-drawn>') >= 4
    assert 'href="/reports/programme"' in page and 'href="/reports/channels"' in page


# --- what a report page shows ----------------------------------------------------------------


def test_the_scorecard_reads_notes_then_figures_then_charts_then_the_table(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    page = client.get(f"/reports/campaigns/{world.spring}").text
    order = [page.index(s) for s in ('class="callout"', '<dl class="figures">',
                                     '<figure class="chart"', '<table class="report"')]  # fmt: skip
    assert order == sorted(order)
    assert "would have bought anyway" in page
    figures = dict(
        (text_of(dt), text_of(dd))
        for dt, dd in re.findall(r"<dt[^>]*>(.*?)</dt><dd[^>]*>(.*?)</dd>", page.split('<dl class="figures">')[1].split("</dl>")[0])
    )  # fmt: skip
    assert figures["Treatment purchase rate"] == "33.3%"  # 20 of 60
    assert figures["Control purchase rate"] == "20.0%"  # 12 of 60
    assert figures["Uplift (points)"] == "+13.3 pts"
    low, high = figures["Uplift, 95% interval"].strip("[]").split(" ; ")
    assert low.endswith("pts") and high.endswith("pts")
    assert figures["Cost"] == "€20.00"  # the fixed cost: e-mails cost nothing each
    # the chart draws the rows of the table: same labels, same counts
    [chart] = charts(page)
    [table] = tables(page)
    rows = [text_of(r) for r in body_rows(table)]
    assert chart["type"] == "bar" and chart["format"] == "count"
    assert len(chart["labels"]) == len(rows) == 8
    assert rows[0].startswith("Audience (segment when planned)")
    assert chart["series"][0]["data"][2] == 60  # treatment arm
    canvas = re.search(r"<canvas ([^>]*)>", page)
    assert canvas is not None and 'role="img"' in canvas.group(1)
    label = html.unescape(re.search(r'aria-label="([^"]*)"', canvas.group(1)).group(1))  # type: ignore[union-attr]
    assert label.startswith("Bar chart: From audience to buyers, 8 values by Stage.")
    assert "The table below gives every figure." in label
    # the other reports of the campaign, its page, the exports
    assert f'href="/reports/campaigns/{world.spring}/variants"' in page
    assert f'href="/campaigns/{world.spring}"' in page
    assert f'href="/reports/campaigns/{world.spring}?format=csv"' in page
    # the campaign's page leads here
    assert (
        f'href="/reports/campaigns/{world.spring}"' in client.get(f"/campaigns/{world.spring}").text
    )


def test_matchback_and_channels_show_their_rows(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "analyst")
    page = client.get(f"/reports/campaigns/{world.letter}/matchback").text
    rows = [text_of(r) for r in body_rows(tables(page)[0])]
    assert [r.split()[0] for r in rows] == ["AUTUMN_LETTER-A", "AUTUMN_LETTER-CTL"]
    assert "+13.3 pts" in rows[0]
    page = client.get("/reports/channels").text
    rows = [text_of(r) for r in body_rows(tables(page)[0])]
    assert [r.split()[0] for r in rows] == ["email", "postal"]
    # an interval is written "[low ; high]" in the kind of its estimate (money here)
    assert re.search(r"\[-?€[\d,.]+ ; €[\d,.]+\]", rows[0]), rows[0]


def test_an_unknown_campaign_is_the_not_found_page(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    for route in CAMPAIGN_ROUTES:
        for fmt in ("", "?format=csv"):
            missing = client.get(f"/reports/campaigns/nowhere{route}{fmt}")
            assert missing.status_code == 404
            assert "Not found" in missing.text and "<main" in missing.text


def test_the_period_filter(app: FastAPI, factory: sessionmaker[Session], world: World) -> None:
    client = signed_in(app, factory, "marketer")
    today = utcnow().date()
    page = client.get("/reports/costs").text
    assert f'name="since" value="{today - timedelta(days=90)}"' in page
    assert {r.split()[0] for r in (text_of(x) for x in body_rows(tables(page)[0]))} == {
        "spring_mail", "autumn_letter", "Total",
    }  # fmt: skip
    long_ago = client.get("/reports/costs", params={"since": "2020-01-01", "until": "2020-03-31"})
    assert long_ago.status_code == 200
    assert "No campaign reached customers between 2020-01-01" in long_ago.text
    assert 'name="until" value="2020-03-31"' in long_ago.text
    backwards = client.get("/reports/costs", params={"since": "2020-03-31", "until": "2020-01-01"})
    assert backwards.status_code == 400 and "swap the two dates" in backwards.text
    assert client.get("/reports/costs", params={"since": "soon"}).status_code == 400
    assert client.get("/reports/costs", params={"format": "xlsx"}).status_code == 400


# --- exports ---------------------------------------------------------------------------------


def test_every_report_exports_its_table_as_csv_and_json(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "agency")
    day = utcnow().astimezone(views.PARIS).date().isoformat()
    for route in world.report_routes():
        glue = "&" if "?" in route else "?"
        as_json = client.get(f"{route}{glue}format=json")
        assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
        data = json.loads(as_json.text)
        keys = [c["key"] for c in data["columns"]]
        assert all(list(r) == keys for r in data["rows"]), route
        # every report has rows, but the matchback of an e-mail campaign (no letter)
        assert data["rows"] or route.endswith(f"{world.spring}/matchback"), route
        as_csv = client.get(f"{route}{glue}format=csv")
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        disposition = as_csv.headers["content-disposition"]
        assert disposition.startswith(f'attachment; filename="{data["report"]}-')
        assert disposition.endswith(f'-{day}.csv"'), disposition
        parsed = list(csv.reader(io.StringIO(as_csv.text)))
        expected: list[str] = []
        for c in data["columns"]:
            expected += (
                [f"{c['key']}_low", f"{c['key']}_high"] if c["kind"] == "interval" else [c["key"]]
            )
        assert parsed[0] == expected, route
        assert len(parsed) == len(data["rows"]) + 1, route
    # a script with an API key of the aggregates scope reads them too; another scope does not
    secret = make_api_key(factory, [rules.AGGREGATES_READ])
    script = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    assert script.get("/reports/costs?format=csv").text.startswith("campaign,channels,cost,")
    other = make_api_key(factory, [rules.EVENTS_WRITE])
    refused = TestClient(app, headers={"Authorization": f"Bearer {other}"})
    assert refused.get("/reports/costs?format=csv").status_code == 403
    scorecard = client.get(f"/reports/campaigns/{world.spring}?format=csv")
    assert (
        f'filename="scorecard-{world.spring}-{day}.csv"' in scorecard.headers["content-disposition"]
    )


# --- the cube --------------------------------------------------------------------------------


def test_the_cube_builds_what_is_asked_and_says_why_it_refuses(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "analyst")
    form = client.get("/reports/cube").text  # the form, with the default choices, no result
    assert 'id="dim-campaign" name="dimension" value="campaign" checked' in form
    assert "<table" not in form and 'id="filter-campaign"' in form
    assert f'<option value="{world.spring}">' in form

    params: dict[str, Any] = {
        "run": 1,
        "dimension": ["campaign", "arm"],
        "measure": ["assigned", "buyers"],
    }
    by_arm = client.get("/reports/cube", params=params).text
    rows = [text_of(r) for r in body_rows(tables(by_arm)[0])]
    assert f"{world.spring} control 60 12" in rows and f"{world.spring} treatment 60 20" in rows
    assert not charts(by_arm)  # two dimensions: a table only
    one = client.get("/reports/cube", params={"run": 1, "dimension": "arm", "measure": "assigned",
                                               "filter_campaign": world.spring})  # fmt: skip
    [chart] = charts(one.text)
    assert chart["labels"] == ["control", "treatment"] and chart["series"][0]["data"] == [60, 60]
    assert f'<option value="{world.spring}" selected>' in one.text

    refused_params = {"run": 1, "dimension": "channel", "measure": "attributed_revenue"}
    refused = client.get("/reports/cube", params=refused_params)
    assert refused.status_code == 200
    alert = refused.text.index('role="alert"')
    assert "cannot be added up across campaigns" in refused.text[alert : alert + 400]
    assert alert < refused.text.index('<form method="get" action="/reports/cube"')
    assert (
        'id="measure-attributed_revenue" name="measure" value="attributed_revenue" checked'
        in refused.text
    )
    as_json = client.get("/reports/cube", params={**refused_params, "format": "json"})
    assert as_json.status_code == 422
    assert "twice" in as_json.json()["error"]["message"]
    as_csv = client.get("/reports/cube", params={**refused_params, "format": "csv"})
    assert as_csv.status_code == 422 and "twice" in as_csv.text
    nothing = client.get("/reports/cube", params={"run": 1, "dimension": "arm"})
    assert nothing.status_code == 200 and "choose at least one measure" in nothing.text
    unknown = client.get(
        "/reports/cube", params={"run": 1, "dimension": "shoe_size", "measure": "assigned"}
    )
    assert unknown.status_code == 200 and "unknown dimension or measure: shoe_size" in unknown.text


# --- French ----------------------------------------------------------------------------------


def test_the_pages_are_in_french_with_french_numbers(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer", language="fr")
    page = client.get(f"/reports/campaigns/{world.spring}").text
    assert '<html lang="fr">' in page
    assert "Taux d'achat du groupe traité" in html.unescape(page)
    assert "33,3\u00a0%" in html.unescape(page) and "+13,3\u00a0pts" in html.unescape(page)
    assert "20,00\u00a0€" in html.unescape(page)
    # a note with figures: its French template, filled in
    assert "acheteurs ont suivi un message" in html.unescape(page)
    assert "buyers followed a message" not in page
    [chart] = charts(page)
    assert chart["labels"][0] == "Audience (segment au moment du plan)"
    hub = client.get("/reports").text
    assert ">Rapports</a>" in hub and "Fiche de campagne" in hub
    dashboard = client.get("/dashboard").text
    assert "Tableau de bord" in dashboard and "Santé de la base" in dashboard


def every_text(report: Report) -> set[str]:
    found = {c.label for c in report.columns} | {c.help for c in report.columns if c.help}
    found |= {chart.title for chart in report.charts} | {label for label, _v, _k in report.headline}
    # notes: a note with figures by its template, a plain one by its text
    found |= {getattr(n, "msgid", n) for n in report.notes}
    return found


def test_every_label_of_every_report_has_its_french(session: Session, world: World) -> None:
    now = utcnow()
    since, until = now - timedelta(days=90), now + timedelta(days=1)
    spring = reports.campaigns_between(session, since, until)
    found: list[Report] = [*reports.dashboard(session, now=now)]
    for c in spring:
        found += [reports.scorecard(session, c, now=now), reports.variants(session, c, now=now),
                  reports.matchback(session, c, now=now)]  # fmt: skip
    for function in (reports.channels, reports.costs, reports.deliverability):
        found.append(function(session, since=since, until=until, now=now))
    found.append(reports.programme(session, now=now))
    everything = reports.CubeQuery(tuple(reports.DIMENSIONS)[:3], tuple(reports.MEASURES))
    found.append(reports.cube(session, everything, now=now))
    french = translations("fr")._catalog  # type: ignore[attr-defined]
    texts = set().union(*(every_text(r) for r in found))
    texts |= set(reports.DIMENSIONS.values()) | set(reports.MEASURES.values())
    texts |= {r.title for r in found if r.key not in ("scorecard", "variants", "matchback")}
    missing = sorted(t for t in texts if not french.get(t))
    assert not missing, f"add to src/tournesol/web/locales/fr/reports.po: {missing}"


# --- personal data ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["analyst", "agency"])
def test_no_customer_name_email_or_phone_on_any_report(
    role: str, app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, role)
    national = [f"0{s[3:]}" for s in world.secrets if s.startswith("+33")]
    secrets = [*world.secrets, *national]
    routes = world.routes()
    routes += [
        r + ("&" if "?" in r else "?") + f"format={f}"
        for r in world.report_routes()
        for f in ("csv", "json")
    ]
    routes += [
        "/reports/cube?run=1&dimension=segment&dimension=brand&dimension=week&measure=revenue"
    ]
    for route in routes:
        response = client.get(route)
        assert response.status_code == 200, route
        leaked = [s for s in secrets if s in response.text]
        assert not leaked, f"{role} read personal data on {route}: {leaked[:3]}"
