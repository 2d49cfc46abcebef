"""Measurement on SQLite and PostgreSQL, from rows written at known times: the arms of an
intention-to-treat comparison (pressure exclusions stay in the treatment arm, the global
holdout apart), windows per channel and the postal in-home delay, the pre-period CUPED reads,
attributed figures that count a purchase for every campaign it follows, and the case where
attributed and incremental figures must differ: customers who would have bought anyway."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign, CampaignTarget, Outbox
from tournesol.customers.models import Customer
from tournesol.ingest.models import Source
from tournesol.interactions.models import Transaction
from tournesol.reporting import measure, stats

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=90)
_serial = itertools.count(1)


def make_source(session: Session) -> int:
    row = Source(name="till", kind="pos", restrictions=[])
    session.add(row)
    session.flush()
    return row.id


@pytest.fixture
def source(session: Session) -> int:
    return make_source(session)


def people(session: Session, n: int) -> list[int]:
    rows = [Customer(first_name=f"P{i}", last_name="Test", country="FR") for i in range(n)]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def campaign(session: Session, code: str, **values: object) -> Campaign:
    values.setdefault("attribution_days", 30)
    values.setdefault("control_share", 0.5)
    values.setdefault("channels", ["email"])
    values.setdefault("planned_at", T0 - timedelta(days=1))
    row = Campaign(code=code, name=code, control_salt=code, status="running", **values)
    session.add(row)
    session.flush()
    return row


def assign(
    session: Session,
    c: Campaign,
    customer_id: int,
    group: str,
    *,
    reason: str | None = None,
    channel: str = "email",
    at: datetime = T0,
) -> None:
    session.add(
        CampaignTarget(
            campaign_id=c.id, customer_id=customer_id, group=group, channel=channel,
            language="fr", reason=reason, send_at=at, planned_at=at - timedelta(days=1),
        )
    )  # fmt: skip
    session.flush()


def sent(
    session: Session,
    c: Campaign,
    customer_id: int,
    *,
    channel: str = "email",
    at: datetime = T0,
    **values: object,
) -> None:
    values.setdefault("state", "sent")
    session.add(
        Outbox(
            key=f"{c.code}:{customer_id}:{next(_serial)}", campaign_id=c.id,
            customer_id=customer_id, channel=channel, language="fr", send_after=at,
            planned_at=at - timedelta(days=1), sent_at=at, **values,
        )
    )  # fmt: skip
    session.flush()


def buy(session: Session, source: int, customer_id: int, at: datetime, amount: str) -> None:
    session.add(
        Transaction(
            source_id=source, external_id=f"t{next(_serial)}", customer_id=customer_id,
            occurred_at=at, kind="ticket", total_amount=Decimal(amount),
        )
    )  # fmt: skip
    session.flush()


def test_arms_sum_every_assigned_customer_in_the_window_and_the_pre_period(
    session: Session, source: int
) -> None:
    p = people(session, 7)
    c = campaign(session, "spring")
    assign(session, c, p[0], "target")
    assign(session, c, p[1], "target")
    # refused by marketing pressure after the control draw: still in the treatment arm
    assign(session, c, p[2], "excluded", reason="lost_arbitration")
    assign(session, c, p[3], "control", reason="control_group")
    assign(session, c, p[4], "control", reason="control_group")
    assign(session, c, p[5], "control", reason="global_holdout")
    assign(session, c, p[6], "excluded", reason="no_consent")  # never assigned an arm
    buy(session, source, p[0], T0 + timedelta(days=3), "40.00")
    buy(session, source, p[0], T0 + timedelta(days=10), "10.00")
    buy(session, source, p[0], T0 - timedelta(days=5), "20.00")  # pre-period
    buy(session, source, p[2], T0 + timedelta(days=29), "30.00")
    buy(session, source, p[2], T0 + timedelta(days=31), "99.00")  # after the window
    buy(session, source, p[3], T0 + timedelta(days=1), "25.00")
    buy(session, source, p[3], T0 - timedelta(days=2), "5.00")  # pre-period
    buy(session, source, p[5], T0 + timedelta(days=2), "12.00")
    buy(session, source, p[6], T0 + timedelta(days=2), "500.00")
    buy(session, source, p[1], T0 - timedelta(days=40), "700.00")  # before the pre-period

    arms = measure.arm_totals(session, c, now=NOW)

    assert arms[("treatment",)] == stats.ArmTotals(
        assigned=3, converted=2, revenue_sum=80.0, revenue_sumsq=50.0**2 + 30.0**2,
        pre_sum=20.0, pre_sumsq=400.0, cross_sum=20.0 * 50.0,
    )  # fmt: skip
    assert arms[("control",)] == stats.ArmTotals(
        assigned=2, converted=1, revenue_sum=25.0, revenue_sumsq=625.0,
        pre_sum=5.0, pre_sumsq=25.0, cross_sum=125.0,
    )  # fmt: skip
    assert arms[("holdout",)].assigned == 1 and arms[("holdout",)].revenue_sum == 12.0
    # nothing after "now" counts
    early = measure.arm_totals(session, c, now=T0 + timedelta(days=5))
    assert early[("treatment",)].revenue_sum == 40.0


def test_windows_by_channel_and_the_postal_in_home_delay(session: Session, source: int) -> None:
    p = people(session, 3)
    c = campaign(
        session, "letters", attribution_days=30, attribution_windows={"sms": 7},
        postal_delay_days=3,
    )  # fmt: skip
    assign(session, c, p[0], "target", channel="postal")
    assign(session, c, p[1], "control", reason="control_group", channel="postal")
    assign(session, c, p[2], "target", channel="sms")
    # the letter is in the home on day 3: a purchase on day 2 is before exposure, day 32 in
    buy(session, source, p[0], T0 + timedelta(days=2), "11.00")
    buy(session, source, p[0], T0 + timedelta(days=32), "22.00")
    # the control's would-have-been time is shifted alike
    buy(session, source, p[1], T0 + timedelta(days=2), "13.00")
    buy(session, source, p[1], T0 + timedelta(days=4), "14.00")
    # the SMS window is 7 days
    buy(session, source, p[2], T0 + timedelta(days=6), "5.00")
    buy(session, source, p[2], T0 + timedelta(days=8), "50.00")

    arms = measure.arm_totals(session, c, now=NOW, cuts=("channel",))

    assert arms[("treatment", "postal")].revenue_sum == 22.0
    assert arms[("treatment", "postal")].pre_sum == 11.0
    assert arms[("control", "postal")].revenue_sum == 14.0
    assert arms[("treatment", "sms")].revenue_sum == 5.0

    sent(session, c, p[0], channel="postal")
    sent(session, c, p[2], channel="sms", state="delivered", delivered_at=T0)
    found = measure.attributed(session, c, now=NOW)
    assert (found.exposed, found.purchasers, found.purchases) == (2, 2, 2)
    assert found.revenue == Decimal("27.00")


def test_a_purchase_is_attributed_to_every_campaign_it_follows(
    session: Session, source: int
) -> None:
    p = people(session, 2)
    first, second = campaign(session, "first"), campaign(session, "second")
    for c in (first, second):
        assign(session, c, p[0], "target")
    sent(session, first, p[0], at=T0)
    sent(
        session, second, p[0], at=T0 + timedelta(days=5),
        clicked_at=T0 + timedelta(days=6), human_clicked_at=T0 + timedelta(days=6),
    )  # fmt: skip
    # a bounced message reached nobody
    sent(session, first, p[1], state="bounced", bounced_at=T0)
    buy(session, source, p[0], T0 + timedelta(days=7), "60.00")
    buy(session, source, p[1], T0 + timedelta(days=7), "80.00")

    one = measure.attributed(session, first, now=NOW)
    two = measure.attributed(session, second, now=NOW)

    assert (one.exposed, one.purchases, one.revenue, one.clicked_purchases) == (
        1, 1, Decimal("60.00"), 0,
    )  # fmt: skip
    assert (two.purchases, two.revenue, two.clicked_purchases) == (1, Decimal("60.00"), 1)


def test_customers_who_would_have_bought_anyway_are_attributed_but_not_incremental(
    session: Session, source: int
) -> None:
    """Both arms buy at the same rate: every target buyer is attributed to the campaign, yet
    the incremental estimate is zero and its interval contains zero."""
    p = people(session, 400)
    c = campaign(session, "anyway", fixed_cost=Decimal("100"))
    for i, customer_id in enumerate(p):
        treated = i % 2 == 0
        assign(session, c, customer_id, "target" if treated else "control",
               reason=None if treated else "control_group")  # fmt: skip
        if treated:
            sent(session, c, customer_id)
        if i % 4 < 2:  # half of each arm buys, 50 each
            buy(session, source, customer_id, T0 + timedelta(days=2), "50.00")

    found = measure.incremental(session, c, now=NOW)
    naive = measure.attributed(session, c, now=NOW)

    assert naive.purchasers == 100 and naive.revenue == Decimal("5000.00")
    assert found.main is not None and found.conversion is not None
    assert found.conversion.estimate == 0.0
    assert found.conversion.low < 0 < found.conversion.high
    assert found.main.incremental_revenue is not None
    assert found.main.incremental_revenue.estimate == pytest.approx(0.0)
    assert found.srm is not None and not found.srm.mismatch
    assert found.cost == Decimal("100.00")
    assert found.return_on_spend is not None and found.return_on_spend.estimate == pytest.approx(0)


def test_incremental_matches_the_statistics_on_the_same_sums(session: Session, source: int) -> None:
    p = people(session, 240)
    c = campaign(session, "lift", margin_rate=0.4, fixed_cost=Decimal("50"))
    for i, customer_id in enumerate(p):
        treated = i < 160
        assign(session, c, customer_id, "target" if treated else "control",
               reason=None if treated else "control_group")  # fmt: skip
        buys = (i % 4 == 0) if treated else (i % 8 == 0)
        if buys:
            buy(session, source, customer_id, T0 + timedelta(days=1), f"{20 + i % 7}.00")

    found = measure.incremental(session, c, now=NOW)
    arms = found.arms
    expected = stats.conversion_difference(arms["treatment"], arms["control"])

    assert (arms["treatment"].assigned, arms["control"].assigned) == (160, 80)
    assert (arms["treatment"].converted, arms["control"].converted) == (40, 10)
    assert found.conversion == expected
    assert found.conversion.estimate == pytest.approx(0.25 - 0.125)
    # 160/80 against a planned 50/50 split: the sample-ratio check says so
    assert found.srm is not None and found.srm.mismatch
    assert any("sample ratio mismatch" in n for n in found.notes)
    assert found.roi is not None and found.return_on_spend is not None


def test_no_control_group_and_no_plan_say_so(session: Session) -> None:
    p = people(session, 2)
    c = campaign(session, "solo", control_share=0.0)
    assert measure.incremental(session, c, now=NOW).main is None
    assign(session, c, p[0], "target")
    found = measure.incremental(session, c, now=NOW)
    assert found.main is None and "no control group" in found.notes[0]


def test_refresh_stores_the_cells_the_reports_read_until_they_are_stale(
    session: Session, source: int
) -> None:
    p = people(session, 4)
    c = campaign(session, "stored")
    for i, customer_id in enumerate(p):
        assign(session, c, customer_id, "target" if i < 2 else "control",
               reason=None if i < 2 else "control_group")  # fmt: skip
    sent(session, c, p[0])
    buy(session, source, p[0], T0 + timedelta(days=1), "10.00")
    at = T0 + timedelta(days=10)

    assert measure.refresh_due(session, now=at) == ["stored"]
    assert measure.refresh_due(session, now=at + timedelta(hours=1)) == []
    kept = measure.stored(session, c.id)
    assert kept is not None and kept.stored and kept.as_of == at
    live = measure.compute(session, c, now=at)
    assert kept.cells == live.cells and kept.attributed == live.attributed

    # a purchase made since: the stored cells serve until a day has passed
    buy(session, source, p[1], T0 + timedelta(days=10, hours=2), "30.00")
    soon = measure.cells(session, c, now=at + timedelta(hours=5))
    assert soon.stored and soon.arms()[("treatment",)].revenue_sum == 10.0
    later = measure.cells(session, c, now=at + timedelta(days=2))
    assert not later.stored and later.arms()[("treatment",)].revenue_sum == 40.0
    assert measure.refresh_due(session, now=at + timedelta(days=2)) == ["stored"]
    # once refreshed after the last window closed, the figures are final
    final = T0 + timedelta(days=40)
    measure.refresh(session, c, now=final)
    assert measure.cells(session, c, now=final + timedelta(days=300)).stored
    assert measure.refresh_due(session, now=final + timedelta(days=300)) == []


def test_sums_of_squares_keep_their_precision(session: Session, source: int) -> None:
    """263.99 squared is 69690.7201: summed as an amount column (two decimals) it came back
    as 69690.72, smaller than the sum allows, and the statistics refused it."""
    p = people(session, 2)
    c = campaign(session, "precise")
    assign(session, c, p[0], "target")
    assign(session, c, p[1], "control", reason="control_group")
    buy(session, source, p[0], T0 + timedelta(days=1), "263.99")
    buy(session, source, p[0], T0 - timedelta(days=1), "12.34")

    arms = measure.arm_totals(session, c, now=NOW)

    assert arms[("treatment",)].revenue_sumsq == pytest.approx(263.99**2, rel=1e-12)
    assert arms[("treatment",)].cross_sum == pytest.approx(263.99 * 12.34, rel=1e-12)


def test_the_service_checks_the_measurement_settings(session: Session) -> None:
    from tournesol.campaigns import service

    made = service.create(
        session, code="windows", name="Windows", segment=None, channels=["sms"],
        kind="triggered",
        attribution_windows={"sms": 7}, postal_delay_days=4, margin_rate=0.3,
    )  # fmt: skip
    assert measure.windows_of(made).days("sms") == 7
    assert measure.windows_of(made).days("email") == 30
    for bad in (
        {"attribution_windows": {"fax": 7}},
        {"attribution_windows": {"sms": 0}},
        {"postal_delay_days": 31},
        {"margin_rate": 0.0},
        {"margin_rate": 1.5},
    ):
        with pytest.raises(service.CampaignError):
            service.create(
                session,
                code="bad",
                name="Bad",
                segment=None,
                channels=["sms"],
                kind="triggered",
                **bad,
            )  # type: ignore[arg-type]


def test_last_touch_allocation_counts_from_the_exposure_and_the_channels_window(
    session: Session, source: int
) -> None:
    """A letter printed on day 0 reaches the letterbox on day 3 (postal delay): an e-mail of
    day 2 is the last touch of a purchase on day 2.5, the letter of a purchase on day 4; an
    SMS window of 7 days leaves a purchase on day 9 unallocated to it."""
    from sqlalchemy import select

    from tournesol.campaigns.models import CampaignAttribution
    from tournesol.campaigns.results import attribute

    p = people(session, 2)
    letter = campaign(session, "letter-touch", channels=["postal"], postal_delay_days=3)
    mail = campaign(session, "mail-touch")
    texts = campaign(session, "sms-touch", channels=["sms"], attribution_windows={"sms": 7})
    sent(session, letter, p[0], channel="postal", at=T0)
    sent(session, mail, p[0], at=T0 + timedelta(days=2))
    sent(session, texts, p[1], channel="sms", at=T0, state="delivered", delivered_at=T0)
    buy(session, source, p[0], T0 + timedelta(days=2, hours=12), "10.00")
    buy(session, source, p[0], T0 + timedelta(days=4), "20.00")
    buy(session, source, p[1], T0 + timedelta(days=6), "30.00")
    buy(session, source, p[1], T0 + timedelta(days=9), "40.00")

    attribute(session, now=NOW)

    a = CampaignAttribution
    allocated = {
        (code, float(amount))
        for code, amount in session.execute(
            select(Campaign.code, a.amount).join(Campaign, Campaign.id == a.campaign_id)
        )
    }
    assert allocated == {("mail-touch", 10.0), ("letter-touch", 20.0), ("sms-touch", 30.0)}
