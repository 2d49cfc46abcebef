"""The measurement reports on SQLite and PostgreSQL, from rows written at known times: the
scorecard keeps attributed, allocated and incremental results apart, matchback finds the
letters' buyers after the in-home date, costs total only what adds up, the programme report
compares the global holdout quarter by quarter, and the cube refuses to add attributed
revenue across campaigns."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from tests.integration.test_measure import (
    NOW,
    T0,
    assign,
    buy,
    campaign,
    make_source,
    people,
    sent,
)
from tournesol.campaigns import results as campaign_results
from tournesol.campaigns.models import Campaign
from tournesol.reporting import reports
from tournesol.reporting.models import HoldoutAssignment, HoldoutGroup


@pytest.fixture
def source(session: Session) -> int:
    return make_source(session)


@pytest.fixture
def two_campaigns(session: Session, source: int) -> tuple[list[int], list[int]]:
    """ "letter" (postal) and "mail" (email), 200 customers each half treated; the treated buy
    more; customer 0 of both bought once after both campaigns' messages."""
    p = people(session, 200)
    letter = campaign(session, "letter", fixed_cost=Decimal("80"), unit_costs={"postal": 0.5},
                      channels=["postal"], postal_delay_days=3, margin_rate=0.5)  # fmt: skip
    mail = campaign(session, "mail", fixed_cost=Decimal("10"))
    for c, channel in ((letter, "postal"), (mail, "email")):
        for i, customer_id in enumerate(p):
            treated = i % 2 == 0
            assign(session, c, customer_id, "target" if treated else "control",
                   reason=None if treated else "control_group", channel=channel)  # fmt: skip
            if treated:
                sent(session, c, customer_id, channel=channel)
    for i, customer_id in enumerate(p):
        if (i % 2 == 0 and i % 6 == 0) or (i % 2 == 1 and i % 10 == 1):
            buy(session, source, customer_id, T0 + timedelta(days=5), "40.00")
    campaign_results.attribute(session, now=NOW)
    return p, [letter.id, mail.id]


def test_scorecard_keeps_the_three_kinds_of_results_apart(
    session: Session, two_campaigns: tuple[list[int], list[int]]
) -> None:
    letter = session.get(Campaign, two_campaigns[1][0])
    assert letter is not None
    report = reports.scorecard(session, letter, now=NOW)
    head = {label: value for label, value, _ in report.headline}

    # treated buyers: i even and i % 6 == 0 -> 34 of 100, 40 each; control: i % 10 == 1 -> 20
    assert head["Attributed revenue (every purchase after a message)"] == Decimal("1360.00")
    assert head["Treatment purchase rate"] == pytest.approx(0.34)
    assert head["Control purchase rate"] == pytest.approx(0.20)
    assert head["Uplift (points)"] == pytest.approx(0.14)
    assert head["Incremental revenue"] == pytest.approx((0.34 - 0.20) * 40 * 100)
    # allocated: each purchase to its last touch: the letter, in the letterbox on day 3,
    # after the e-mail of day 0
    assert head["Allocated revenue (last touch)"] == Decimal("1360.00")
    assert head["Cost"] == Decimal("130.00")
    stages = {r["stage"]: r["count"] for r in report.rows}
    assert stages["Treatment arm"] == 100 and stages["Messages sent"] == 100
    assert any("would have bought anyway" in n for n in report.notes)
    exported = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["stage"] for r in exported] == [r["stage"] for r in report.rows]
    assert json.loads(report.to_json())["headline"][0]["value"] == 1360.0


def test_matchback_counts_orders_after_the_in_home_date_by_key_code(
    session: Session, source: int, two_campaigns: tuple[list[int], list[int]]
) -> None:
    p, (letter_id, _mail) = two_campaigns
    letter = session.get(Campaign, letter_id)
    assert letter is not None
    # before the in-home date (day 3): not a response to the letter
    buy(session, source, p[2], T0 + timedelta(days=2), "999.00")
    report = reports.matchback(session, letter, now=NOW)
    by_code = {r["key_code"]: r for r in report.rows}

    assert set(by_code) == {"LETTER-A", "LETTER-CTL"}
    mailed, control = by_code["LETTER-A"], by_code["LETTER-CTL"]
    assert (mailed["mailed"], mailed["buyers"], mailed["orders"]) == (100, 34, 34)
    assert mailed["revenue"] == 1360.0
    assert mailed["in_home"] == (T0 + timedelta(days=3)).date()
    assert (control["file"], control["buyers"]) == (100, 20)
    assert mailed["incremental_response"] == pytest.approx(0.14)


def test_costs_total_what_adds_up_and_the_cube_refuses_what_does_not(
    session: Session, two_campaigns: tuple[list[int], list[int]]
) -> None:
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    report = reports.costs(session, since=since, until=until, now=NOW)
    rows = {r["campaign"]: r for r in report.rows}
    assert set(rows) == {"letter", "mail", "Total"}
    assert rows["Total"]["cost"] == Decimal("140.00")
    assert "attributed_revenue" not in rows["Total"]
    assert rows["Total"]["incremental_revenue"] == pytest.approx(2 * 0.14 * 40 * 100)
    assert rows["letter"]["roi"] is not None  # a margin rate is set

    by_arm = reports.cube(
        session, reports.CubeQuery(("campaign", "arm"), ("assigned", "buyers", "revenue")),
        now=NOW,
    )  # fmt: skip
    cells = {(r["campaign"], r["arm"]): r for r in by_arm.rows}
    assert cells[("letter", "treatment")]["buyers"] == 34
    assert cells[("mail", "control")]["assigned"] == 100

    with pytest.raises(reports.CubeRefused, match="twice"):
        reports.cube(session, reports.CubeQuery(("channel",), ("attributed_revenue",)), now=NOW)
    per_campaign = reports.cube(
        session, reports.CubeQuery(("campaign",), ("attributed_revenue",)), now=NOW
    )
    assert {r["campaign"]: r["attributed_revenue"] for r in per_campaign.rows} == {
        "letter": 1360.0, "mail": 1360.0,
    }  # fmt: skip
    one = reports.cube(
        session,
        reports.CubeQuery(("channel",), ("attributed_revenue",), filters={"campaign": "mail"}),
        now=NOW,
    )
    assert [(r["channel"], r["attributed_revenue"]) for r in one.rows] == [("email", 1360.0)]
    with pytest.raises(reports.CubeRefused, match="store"):
        reports.cube(session, reports.CubeQuery(("store",), ("assigned",)), now=NOW)


def test_channels_compare_cost_and_incremental_revenue(
    session: Session, two_campaigns: tuple[list[int], list[int]]
) -> None:
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    report = reports.channels(session, since=since, until=until, now=NOW)
    rows = {r["channel"]: r for r in report.rows}
    assert rows["postal"]["sent"] == 100 and rows["postal"]["cost"] == Decimal("130.00")
    assert rows["email"]["incremental_revenue"] == pytest.approx(0.14 * 40 * 100)
    low, high = rows["email"]["incremental_interval"]
    assert low < 560 < high


def test_programme_compares_the_global_holdout_by_quarter(session: Session, source: int) -> None:
    p = people(session, 100)
    group = HoldoutGroup(version=1, share=0.1, salt="s", created_at=T0 - timedelta(days=200),
                         created_by="test")  # fmt: skip
    session.add(group)
    session.flush()
    for i, customer_id in enumerate(p):
        session.add(
            HoldoutAssignment(group_id=group.id, customer_id=customer_id, unit=f"c{i}",
                              held_out=i < 20, assigned_at=T0 - timedelta(days=200))
        )  # fmt: skip
        if i >= 20 and i % 2 == 0:
            buy(session, source, customer_id, T0 + timedelta(days=10), "30.00")
        if i < 20 and i % 5 == 0:
            buy(session, source, customer_id, T0 + timedelta(days=10), "30.00")
    session.flush()
    report = reports.programme(session, now=NOW, quarters=2)
    quarter = next(r for r in report.rows if r["quarter"].startswith("2026-Q1"))
    assert (quarter["holdout"], quarter["marketed"]) == (20, 80)
    assert quarter["holdout_rate"] == pytest.approx(0.2)
    assert quarter["marketed_rate"] == pytest.approx(0.5)
    assert quarter["uplift"] == pytest.approx(0.3)
    assert quarter["incremental_revenue"] == pytest.approx((15.0 - 6.0) * 80)


def test_deliverability_shows_people_and_machines_apart(
    session: Session, two_campaigns: tuple[list[int], list[int]]
) -> None:
    report = reports.deliverability(
        session, since=T0 - timedelta(days=1), until=T0 + timedelta(days=1), now=NOW
    )
    rows = {r["campaign"]: r for r in report.rows}
    assert set(rows) == {"letter (postal)", "mail (email)"}
    assert rows["mail (email)"]["sent"] == 100
    assert "campaign_id" not in report.to_dict()["rows"][0]


def test_the_dashboard_gathers_its_reports(
    session: Session, source: int, two_campaigns: tuple[list[int], list[int]]
) -> None:
    from tournesol.ingest.models import ImportBatch

    session.add(
        ImportBatch(source_id=source, entity="customer", file_name="f.csv", file_sha256="0" * 64,
                    mapping_sha256="0" * 64, file_format="csv", rows_read=200, rejected=5,
                    started_at=NOW - timedelta(days=3), status="completed")
    )  # fmt: skip
    session.flush()
    found = {r.key: r for r in reports.dashboard(session, now=NOW)}
    assert set(found) == {
        "incremental-by-month", "programme", "cost-vs-incremental", "base-health",
        "quality-trend",
    }  # fmt: skip
    (month,) = found["incremental-by-month"].rows
    assert month["month"] == f"{T0:%Y-%m}"
    assert month["incremental_revenue"] == pytest.approx(2 * 0.14 * 40 * 100)
    assert month["low"] < month["incremental_revenue"] < month["high"]
    (week,) = found["quality-trend"].rows
    assert (week["rows"], week["rejected"], week["reject_rate"]) == (200, 5, 0.025)
    for report in found.values():
        json.loads(report.to_json())
