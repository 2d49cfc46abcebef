"""Attribution and campaign results on SQLite and PostgreSQL: last touch between campaigns,
the window's edges, returns, other brands and messages that never arrived left out, re-runs
that add only new purchases; and the figures of a campaign (volumes, target against control,
uplift, cost, ROI), from rows written at known times and from a real plan."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tournesol.campaigns import results as campaign_results
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Campaign, CampaignAttribution, CampaignTarget, Outbox
from tournesol.customers.models import Brand, Customer
from tournesol.ingest.models import Source
from tournesol.interactions.models import Transaction
from tournesol.segments.models import Segment

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=60)
_serial = itertools.count(1)


@dataclass
class World:
    soleil: int
    lune: int
    source: int
    people: list[int]


@pytest.fixture
def world(session: Session) -> World:
    soleil, lune = Brand(code="SOLEIL", name="Soleil"), Brand(code="LUNE", name="Lune")
    source = Source(name="till", kind="pos", restrictions=[])
    session.add_all([soleil, lune, source])
    session.flush()
    people = []
    for i in range(8):
        customer = Customer(first_name=f"P{i}", last_name="Test", country="FR")
        session.add(customer)
        session.flush()
        people.append(customer.id)
    return World(soleil.id, lune.id, source.id, people)


def campaign(
    session: Session, code: str, *, brand: int | None, days: int = 30, **values: object
) -> Campaign:
    values.setdefault("status", "running")
    row = Campaign(
        code=code, name=code.title(), brand_id=brand, channels=["email"], control_salt=code,
        attribution_days=days, **values,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def message(
    session: Session,
    c: Campaign,
    customer_id: int,
    sent_at: datetime | None,
    *,
    state: str = "sent",
    channel: str = "email",
    **values: object,
) -> Outbox:
    row = Outbox(
        key=f"{c.code}:{customer_id}:{next(_serial)}", campaign_id=c.id, customer_id=customer_id,
        brand_id=c.brand_id, channel=channel, language="fr", state=state,
        send_after=sent_at or T0, planned_at=T0 - timedelta(days=1), sent_at=sent_at, **values,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def purchase(
    session: Session,
    world: World,
    customer_id: int,
    at: datetime,
    amount: str,
    *,
    brand: int | None = None,
    kind: str = "ticket",
) -> int:
    row = Transaction(
        source_id=world.source, external_id=f"t{next(_serial)}", customer_id=customer_id,
        occurred_at=at, kind=kind, brand_id=brand, total_amount=Decimal(amount),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def attributed(session: Session) -> dict[int, tuple[int, bool]]:
    """transaction id -> (campaign id, clicked)."""
    a = CampaignAttribution
    return {
        tid: (cid, bool(clicked))
        for tid, cid, clicked in session.execute(select(a.transaction_id, a.campaign_id, a.clicked))
    }


def test_a_purchase_goes_to_the_last_contact_whose_window_covers_it(
    session: Session, world: World
) -> None:
    p = world.people
    early = campaign(session, "early", brand=world.soleil, days=30)
    late = campaign(session, "late", brand=world.soleil, days=30)
    short = campaign(session, "short", brand=world.soleil, days=2)
    # p0: contacted by both; the later message takes the purchase (last touch)
    message(session, early, p[0], T0)
    clicked = T0 + timedelta(days=3, hours=1)  # by a person (a scanner's click would not count)
    message(
        session, late, p[0], T0 + timedelta(days=3), clicked_at=clicked, human_clicked_at=clicked
    )
    last_touch = purchase(session, world, p[0], T0 + timedelta(days=5), "40.00", brand=world.soleil)
    # p1: the later message's window (2 days) is over: the earlier campaign keeps it
    message(session, early, p[1], T0)
    message(session, short, p[1], T0 + timedelta(days=3))
    covered = purchase(session, world, p[1], T0 + timedelta(days=6), "25.50", brand=world.soleil)
    # p2: bought before the message, after the window, a return, another brand's purchase, and
    # one purchase without a brand (it counts); then a click after the purchase
    message(
        session, early, p[2], T0, clicked_at=T0 + timedelta(days=20),
        human_clicked_at=T0 + timedelta(days=20),
    )  # fmt: skip
    purchase(session, world, p[2], T0 - timedelta(hours=1), "10.00", brand=world.soleil)
    purchase(session, world, p[2], T0 + timedelta(days=30, seconds=1), "11.00")
    purchase(session, world, p[2], T0 + timedelta(days=2), "12.00", kind="return")
    purchase(session, world, p[2], T0 + timedelta(days=3), "13.00", brand=world.lune)
    unbranded = purchase(session, world, p[2], T0 + timedelta(days=4), "14.00")
    edge = purchase(session, world, p[2], T0 + timedelta(days=30), "15.00", brand=world.soleil)
    # p3: messages that never reached: failed, bounced, in doubt, still planned
    for state in ("failed", "bounced", "in_doubt", "planned"):
        message(session, late, p[3], T0 if state != "planned" else None, state=state)
    purchase(session, world, p[3], T0 + timedelta(days=1), "99.00")
    # p4: the purchase comes after "now": not yet
    message(session, early, p[4], T0)
    purchase(session, world, p[4], NOW + timedelta(hours=1), "50.00")

    added = campaign_results.attribute(session, now=NOW)

    assert attributed(session) == {
        last_touch: (late.id, True),
        covered: (early.id, False),
        unbranded: (early.id, False),
        edge: (early.id, True),  # the click (day 20) came before this one
    }
    assert added == 4
    row = session.scalar(
        select(CampaignAttribution).where(CampaignAttribution.transaction_id == last_touch)
    )
    assert row is not None
    assert (row.customer_id, row.amount, row.purchased_at, row.contacted_at) == (
        p[0], Decimal("40.00"), T0 + timedelta(days=5), T0 + timedelta(days=3),
    )  # fmt: skip


def test_attribution_is_idempotent_and_keeps_what_it_gave(session: Session, world: World) -> None:
    p = world.people
    spring = campaign(session, "spring", brand=None)
    summer = campaign(session, "summer", brand=None)
    message(session, spring, p[0], T0)
    first = purchase(session, world, p[0], T0 + timedelta(days=1), "20.00")
    assert campaign_results.attribute(session, now=NOW) == 1
    assert campaign_results.attribute(session, now=NOW) == 0
    # a later campaign reaches the customer and they buy again: only the new purchase is added;
    # the first one stays with spring even though summer's message was sent "before" it would
    # be recorded today
    message(session, summer, p[0], T0 + timedelta(hours=12))
    second = purchase(session, world, p[0], T0 + timedelta(days=2), "30.00")
    assert campaign_results.attribute(session, now=NOW) == 1
    assert attributed(session) == {first: (spring.id, False), second: (summer.id, False)}


def test_attributing_some_campaigns_never_steals_from_the_others(
    session: Session, world: World
) -> None:
    p = world.people
    early = campaign(session, "early", brand=None)
    late = campaign(session, "late", brand=None)
    message(session, early, p[0], T0)
    message(session, late, p[0], T0 + timedelta(days=1))
    message(session, early, p[1], T0)
    theirs = purchase(session, world, p[0], T0 + timedelta(days=2), "10.00")
    mine = purchase(session, world, p[1], T0 + timedelta(days=2), "20.00")
    assert campaign_results.attribute(session, now=NOW, campaign_ids=[]) == 0
    assert campaign_results.attribute(session, now=NOW, campaign_ids=[early.id]) == 1
    assert attributed(session) == {mine: (early.id, False)}
    assert campaign_results.attribute(session, now=NOW, campaign_ids=[late.id]) == 1
    assert attributed(session)[theirs] == (late.id, False)


def test_results_compare_the_target_group_with_the_control_group(
    session: Session, world: World
) -> None:
    p = world.people
    c = campaign(
        session, "autumn", brand=world.soleil, days=10, fixed_cost=Decimal("5.00"),
        unit_costs={"email": "0.50", "sms": 0.08}, planned_at=T0,
    )  # fmt: skip
    targets = [
        (p[0], "target", None, T0), (p[1], "target", None, T0), (p[2], "target", None, T0),
        (p[3], "target", None, T0), (p[4], "control", "control_group", T0),
        (p[5], "control", "control_group", T0 + timedelta(days=1)),
        (p[6], "excluded", "no_consent", None), (p[7], "excluded", "no_consent", None),
    ]  # fmt: skip
    for customer_id, group, reason, send_at in targets:
        session.add(
            CampaignTarget(
                campaign_id=c.id, customer_id=customer_id, group=group, reason=reason,
                channel="email", send_at=send_at, planned_at=T0,
            )
        )  # fmt: skip
    hour = timedelta(hours=1)
    # opens and clicks by people (human_*: what the figures count)
    message(session, c, p[0], T0, state="delivered", delivered_at=T0 + hour, opened_at=T0 + hour,
            human_opened_at=T0 + hour, clicked_at=T0 + 2 * hour,
            human_clicked_at=T0 + 2 * hour)  # fmt: skip
    message(session, c, p[1], T0, opened_at=T0 + hour, human_opened_at=T0 + hour,
            unsubscribed_at=T0 + 2 * hour)  # fmt: skip
    message(session, c, p[2], T0, state="bounced", bounced_at=T0 + hour)
    message(session, c, p[3], None, state="failed", channel="sms")
    # target: p0 buys twice (once after clicking), p1 once, p2 (bounced) buys: not attributed
    purchase(session, world, p[0], T0 + 3 * hour, "100.00", brand=world.soleil)
    purchase(session, world, p[0], T0 + timedelta(days=2), "20.00")
    purchase(session, world, p[1], T0 + timedelta(days=1), "30.00", brand=world.soleil)
    purchase(session, world, p[2], T0 + timedelta(days=1), "500.00", brand=world.soleil)
    # control: p4 buys inside the window, and outside it; p5 bought before its would-be send
    # time, and another brand's purchase inside the window
    purchase(session, world, p[4], T0 + timedelta(days=9), "40.00", brand=world.soleil)
    purchase(session, world, p[4], T0 + timedelta(days=11), "400.00", brand=world.soleil)
    purchase(session, world, p[5], T0 + timedelta(hours=12), "60.00", brand=world.soleil)
    purchase(session, world, p[5], T0 + timedelta(days=2), "70.00", brand=world.lune)
    assert campaign_results.attribute(session, now=NOW) == 3

    found = campaign_results.results(session, c, now=NOW)

    assert (found.audience, found.targeted, found.control) == (8, 4, 2)
    assert found.excluded == {"no_consent": 2}
    [exclusion] = found.exclusions()
    assert exclusion.text.startswith("The channel needs prior consent")
    assert found.planned == {"email": 3, "sms": 1}
    assert found.states == {"delivered": 1, "sent": 1, "bounced": 1, "failed": 1}
    assert (found.sent, found.delivered, found.failed, found.bounced, found.in_doubt) == (
        3, 1, 1, 1, 0,
    )  # fmt: skip
    assert (found.opened, found.clicked, found.unsubscribed) == (2, 1, 1)
    assert found.target == campaign_results.GroupFigures(4, 2, 3, Decimal("150.00"))
    assert found.clicked_purchases == 2  # both of p0's purchases came after the click
    assert found.control_group == campaign_results.GroupFigures(2, 1, 1, Decimal("40.00"))
    assert found.target.rate == 0.5 and found.control_group.rate == 0.5
    assert found.uplift == 0.0 and found.relative_uplift == 0.0
    # (150 / 4 - 40 / 2) x 4 = 70
    assert found.incremental_revenue == Decimal("70.00")
    # 5.00 fixed + 3 e-mails sent x 0.50 (the failed SMS cost nothing)
    assert found.cost == Decimal("6.50")
    assert found.roi == pytest.approx((70 - 6.5) / 6.5)
    assert found.window_ends_at == T0 + timedelta(days=11)
    assert not found.window_open
    assert found.funnel() == [
        ("audience", 8), ("eligible", 6), ("targeted", 4), ("sent", 3), ("delivered", 1),
        ("opened", 2), ("clicked", 1), ("purchasers", 2),
    ]  # fmt: skip
    data = found.to_dict()
    assert data["incremental_revenue"] == "70.00" and data["target_group"]["revenue"] == "150.00"
    assert data["funnel"]["purchasers"] == 2


def test_results_of_a_campaign_never_planned_are_empty(session: Session, world: World) -> None:
    c = campaign(session, "draft", brand=None, status="draft")
    found = campaign_results.results(session, c, now=NOW)
    assert found.audience == 0 and found.sent == 0 and found.cost == Decimal(0)
    assert found.uplift is None and found.incremental_revenue is None and found.roi is None
    assert found.window_ends_at is None and found.window_open


def test_results_after_a_real_plan_and_summaries(session: Session, world: World) -> None:
    session.execute(
        Customer.__table__.update()
        .where(Customer.id.in_(world.people))
        .values(address_line4="1 RUE DU PORT", address_line6="13002 MARSEILLE")
    )
    session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    session.flush()
    c = campaigns.create(
        session, code="letters", name="Letters", segment="everyone", channels=["postal"],
        control_share=0.5, fixed_cost=Decimal("1.00"), unit_costs={"postal": "1.20"},
    )  # fmt: skip
    campaigns.set_message(session, campaign=c, channel="postal", language="fr", body_text="Hi")
    [report] = campaigns.plan(session, campaigns=[c], now=T0, policies=campaigns.Policies())
    rows = campaign_results.funnel_rows(report)
    assert rows[0].stage == "audience" and rows[0].count == 8 and rows[0].share == 1.0
    assert rows[-1].count == report.planned
    assert sum(r.dropped for r in rows) == 8 - report.planned
    found = campaign_results.results(session, c, now=T0)
    assert found.targeted == report.planned and found.control == report.control
    # (the control half is drawn by customer id, which on PostgreSQL depends on the tests run
    # before: all eight may fall in the control group or be excluded)
    assert +found.planned == +Counter({"postal": report.planned}) and found.sent == 0
    assert found.cost == Decimal("1.00")
    summary = campaign_results.summaries(session, [c.id])
    expected = {c.id: campaign_results.Summary(planned=report.planned, sent=0)}
    assert summary == (expected if report.planned else {})  # no message: left out
