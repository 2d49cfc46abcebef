"""The arithmetic of campaign results (rates, uplift, incremental revenue, ROI, funnel rows) and
the editor's form checks, without a database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tournesol.campaigns.models import Campaign
from tournesol.campaigns.results import (
    GroupFigures,
    Results,
    exclusions_of,
    funnel_rows,
    reason_text,
    unit_cost,
)
from tournesol.campaigns.service import PlanReport
from tournesol.campaigns.views import EditorForm, check_form

NOW = datetime(2026, 5, 4, 9, tzinfo=UTC)


def figures(target: GroupFigures, control: GroupFigures, cost: str = "0") -> Results:
    return Results(
        campaign=Campaign(code="c", name="C", attribution_days=30),
        now=NOW,
        targeted=target.size,
        control=control.size,
        target=target,
        control_group=control,
        cost=Decimal(cost),
    )


def test_uplift_incremental_revenue_and_roi() -> None:
    found = figures(
        GroupFigures(1000, 80, 95, Decimal("4000.00")),
        GroupFigures(100, 5, 5, Decimal("200.00")),
        cost="500",
    )
    assert found.target.rate == 0.08 and found.control_group.rate == 0.05
    assert found.uplift == pytest.approx(0.03)
    assert found.relative_uplift == pytest.approx(0.6)
    # (4000 / 1000 - 200 / 100) x 1000 = 2000 added; (2000 - 500) / 500
    assert found.incremental_revenue == Decimal("2000.00")
    assert found.roi == pytest.approx(3.0)


def test_figures_that_cannot_be_measured_are_none() -> None:
    no_control = figures(GroupFigures(10, 2, 2, Decimal(50)), GroupFigures(0, 0, 0, Decimal(0)))
    assert no_control.uplift is None and no_control.incremental_revenue is None
    assert no_control.roi is None and no_control.relative_uplift is None
    nobody_bought = figures(GroupFigures(10, 2, 2, Decimal(50)), GroupFigures(5, 0, 0, Decimal(0)))
    assert nobody_bought.uplift == 0.2 and nobody_bought.relative_uplift is None
    assert nobody_bought.roi is None  # nothing spent
    worse = figures(
        GroupFigures(10, 1, 1, Decimal(10)), GroupFigures(10, 3, 3, Decimal(90)), cost="8"
    )
    assert worse.uplift == pytest.approx(-0.2) and worse.incremental_revenue == Decimal("-80.00")
    assert worse.roi == pytest.approx(-11.0)


def test_funnel_rows_and_exclusions() -> None:
    report = PlanReport("c", True, funnel=[("audience", 8), ("channel", 6), ("pressure", 6)])
    rows = funnel_rows(report)
    assert [(r.stage, r.count, r.dropped) for r in rows] == [
        ("audience", 8, 0), ("channel", 6, 2), ("pressure", 6, 0),
    ]  # fmt: skip
    assert rows[1].share == 0.75
    assert funnel_rows(PlanReport("c", True)) == []
    empty = funnel_rows(PlanReport("c", True, funnel=[("audience", 0), ("channel", 0)]))
    assert [r.share for r in empty] == [0.0, 0.0]
    items = exclusions_of(Counter({"no_consent": 2, "pressure_cap": 5, "mystery": 1}))
    assert [(e.reason, e.count) for e in items] == [
        ("pressure_cap", 5), ("no_consent", 2), ("mystery", 1),
    ]  # fmt: skip
    assert items[0].text.startswith("The customer already received") and items[2].text == "mystery"
    assert reason_text("lost_arbitration").startswith("A campaign that ranked higher")


def test_unit_costs_are_read_leniently() -> None:
    c = Campaign(
        code="c", unit_costs={"email": "0.002", "sms": 0.08, "postal": "n/a", "push": True}
    )
    assert unit_cost(c, "email") == Decimal("0.002") and unit_cost(c, "sms") == Decimal("0.08")
    assert unit_cost(c, "postal") == 0 and unit_cost(c, "push") == 0 and unit_cost(c, "phone") == 0


def editor(**values: str) -> EditorForm:
    base = {
        "code": "spring", "name": "Spring", "brand": "", "objective": "", "segment": "everyone",
        "purpose": "marketing", "starts_at": "2026-03-29T02:30", "ends_at": "", "priority": "50",
        "expected_value": "1 234,5", "fixed_cost": "0", "control_percent": "12.5",
        "attribution_days": "30", "default_language": "fr", "status": "draft",
        "cost.email": "0,002", "cost.sms": "0.08",
    }  # fmt: skip
    return EditorForm(base | values, ["email"], ["fr", "en"])


def test_the_editor_reads_comma_decimals_and_paris_time() -> None:
    settings, errors = check_form(editor(), new=True)
    assert errors == {} and settings is not None
    assert settings.expected_value == Decimal("1234.50") and settings.control_share == 0.125
    assert settings.unit_costs == {"email": "0.002"}  # SMS is not one of the channels
    # 02:30 on the night clocks go forward in Paris does not exist: read as 03:30 CEST
    assert settings.starts_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_the_editor_names_each_bad_field() -> None:
    _settings, errors = check_form(
        editor(
            code="New campaign", name="", starts_at="2026-05-02T10:00", ends_at="2026-05-01T10:00",
            priority="high", fixed_cost="-1", control_percent="51", attribution_days="400",
            status="running", **{"cost.sms": "x"},
        ),
        new=True,
    )  # fmt: skip
    assert set(errors) == {
        "code", "name", "ends_at", "priority", "fixed_cost", "control_percent",
        "attribution_days", "status", "cost.sms",
    }  # fmt: skip
    _settings, errors = check_form(editor(code="new"), new=True)
    assert errors == {"code": "This code names a page of the application: choose another one."}
    form = editor()
    form.languages = ["fr", "english"]
    assert set(check_form(form, new=False)[1]) == {"languages"}
