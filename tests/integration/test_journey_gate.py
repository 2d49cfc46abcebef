"""The dispatch gate (campaigns.service.admit, triggers.gate.DispatchGate) one rule at a time,
on SQLite and PostgreSQL: a message goes into the outbox once per idempotency key; consent,
suppression lists, contact points, inactive customers and cancelled campaigns suppress it with
their reason; the customer's contact hours and marketing pressure defer it to the first
instant they allow (across the Paris daylight-saving changes too), or suppress it when no
instant within 30 days does; advisor tasks need no consent, call-centre actions use the phone
channel, webhooks queue their URL and payload; and ``next_fit`` on plain data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.integration.test_journeys_store import example
from tournesol.campaigns import rules
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Campaign, Outbox
from tournesol.consent import service as consent_service
from tournesol.consent.models import Preference, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Brand, Customer
from tournesol.ingest.models import Source
from tournesol.interactions.models import Transaction
from tournesol.triggers.definition import load_journey
from tournesol.triggers.gate import DispatchGate
from tournesol.triggers.models import JourneyInstance
from tournesol.triggers.rules import GateResult, Send

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday 24 November 2026, 10:00 in Paris
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
POLICIES = campaigns.Policies()
ADDRESS = {"address_line4": "12 RUE DES LILAS", "address_line6": "69003 LYON"}
CART = load_journey(example("abandoned_cart"))


@dataclass
class World:
    brand: int
    email: Campaign  # cart_reminder: e-mail
    sms: Campaign  # cart_last_call: SMS
    phone: Campaign  # call_back: telephone (call-centre actions)
    task: Campaign  # advisor_call: advisor tasks (an e-mail channel, never used)


def brand_id(session: Session) -> int:
    found = session.scalar(select(Brand.id).where(Brand.code == "SOLEIL"))
    if found is None:
        row = Brand(code="SOLEIL", name="Soleil")
        session.add(row)
        session.flush()
        found = row.id
    return found


def triggered(session: Session, code: str, channels: list[str], **values: Any) -> Campaign:
    values.setdefault("brand", "SOLEIL")
    values.setdefault("control_share", 0.0)
    campaign = campaigns.create(
        session, code=code, name=code.title(), segment=None, channels=channels,
        kind="triggered", **values,
    )  # fmt: skip
    for channel in channels:
        campaigns.set_message(
            session, campaign=campaign, channel=channel, language="fr",
            subject="Votre panier" if channel == "email" else None, body_text="Bonjour",
        )  # fmt: skip
    return campaign


@pytest.fixture
def world(session: Session) -> World:
    return World(
        brand_id(session),
        triggered(session, "cart_reminder", ["email"]),
        triggered(session, "cart_last_call", ["sms"]),
        triggered(session, "call_back", ["phone"]),
        triggered(session, "advisor_call", ["email"]),
    )


def person(session: Session, name: str = "Ann", **values: Any) -> int:
    values.setdefault("email", f"{name.lower()}@exemple.fr")
    values.setdefault("country", "FR")
    row = Customer(first_name=name, last_name="Test", **values)
    session.add(row)
    session.flush()
    return row.id


def consent(
    session: Session,
    customer_id: int,
    channel: str = "email",
    status: str = "granted",
    *,
    brand: int | None = None,
    at: datetime = NOW - 30 * DAY,
) -> None:
    consent_service.set_consent(
        session, customer_id=customer_id, channel=channel, purpose="marketing", brand_id=brand,
        status=status, proof_source="web form", proof_text_version="v1", collected_at=at,
        actor="test",
    )  # fmt: skip


def contact(session: Session, customer_id: int, at: datetime, channel: str = "email") -> None:
    """A message already in the outbox (a planned campaign's, say)."""
    session.add(
        Outbox(
            key=f"old:{customer_id}:{at.isoformat()}:{channel}", customer_id=customer_id,
            brand_id=brand_id(session), channel=channel, purpose="marketing", language="fr",
            state="planned", send_after=at, planned_at=at,
        )
    )  # fmt: skip
    session.flush()


def admit(
    session: Session,
    campaign: Campaign,
    customer_id: int,
    *,
    channel: str = "email",
    key: str = "k-1",
    now: datetime = NOW,
    policies: campaigns.Policies = POLICIES,
) -> campaigns.Admission:
    return campaigns.admit(
        session, campaign=campaign, customer_id=customer_id, channel=channel, key=key, now=now,
        policies=policies,
    )  # fmt: skip


def rows(session: Session, key: str | None = None) -> list[Outbox]:
    session.flush()
    query = select(Outbox).where(~Outbox.key.like("old:%")).order_by(Outbox.id)
    if key is not None:
        query = query.where(Outbox.key == key)
    return list(session.scalars(query))


# --- sent, once per key --------------------------------------------------------------------


def test_sent_writes_one_outbox_row_with_the_key_and_the_same_key_finds_it(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann")
    consent(session, ann)
    first = admit(session, world.email, ann, key="jrn-abc")
    assert (first.outcome, first.reason, first.until) == ("sent", None, None)
    (row,) = rows(session)
    assert first.outbox_id == row.id
    assert (row.key, row.customer_id, row.campaign_id, row.brand_id) == (
        "jrn-abc", ann, world.email.id, world.brand
    )  # fmt: skip
    assert (row.channel, row.address, row.language, row.purpose, row.state) == (
        "email", "ann@exemple.fr", "fr", "marketing", "planned"
    )  # fmt: skip
    assert row.send_after == NOW and row.planned_at == NOW

    # the same key again, later, even once the rules would now refuse: the row is found
    again = admit(session, world.email, ann, key="jrn-abc", now=NOW + HOUR)
    assert (again.outcome, again.outbox_id) == ("sent", row.id)
    consent(session, ann, status="withdrawn", at=NOW + HOUR)
    world.email.status = "cancelled"
    late = admit(session, world.email, ann, key="jrn-abc", now=NOW + 2 * HOUR)
    assert (late.outcome, late.outbox_id) == ("sent", row.id)
    assert len(rows(session)) == 1

    # another key is another message, and it is refused now
    other = admit(session, world.email, ann, key="jrn-def", now=NOW + 2 * HOUR)
    assert (other.outcome, other.reason) == ("suppressed", "campaign_cancelled")
    assert len(rows(session)) == 1


# --- suppressed, with the reason ------------------------------------------------------------


def _no_consent(session: Session, world: World) -> int:
    return person(session, "Nobody")


def _withdrawn(session: Session, world: World) -> int:
    who = person(session, "Withdrawn")
    consent(session, who)
    consent(session, who, status="withdrawn", at=NOW - DAY)
    return who


def _suppressed(session: Session, world: World) -> int:
    who = person(session, "Listed")
    consent(session, who)
    session.add(
        Suppression(
            channel="email", value_hash=contact_hash("email", "Listed@Exemple.fr"),
            reason="unsubscribe", source="test",
        )
    )  # fmt: skip
    return who


def _brand_consent_other_brand(session: Session, world: World) -> int:
    other = Brand(code="LUNE", name="Lune")
    session.add(other)
    session.flush()
    who = person(session, "Elsewhere")
    consent(session, who, brand=other.id)  # consent for another brand only
    return who


def _no_email(session: Session, world: World) -> int:
    who = person(session, "Mute", email=None)
    consent(session, who)
    return who


def _merged(session: Session, world: World) -> int:
    into = person(session, "Survivor")
    who = person(session, "Merged", status="merged", merged_into_id=into)
    consent(session, who)
    return who


def _erased(session: Session, world: World) -> int:
    who = person(session, "Erased", status="erased")
    consent(session, who)
    return who


def _unknown(session: Session, world: World) -> int:
    return 987_654_321


def _no_language(session: Session, world: World) -> int:
    # a campaign in German only (its default language French), a French customer
    german = campaigns.create(
        session, code="german", name="German", segment=None, channels=["email"],
        kind="triggered", brand="SOLEIL", control_share=0.0, default_language="fr",
    )  # fmt: skip
    campaigns.set_message(
        session, campaign=german, channel="email", language="de", subject="Hallo",
        body_text="Hallo",
    )  # fmt: skip
    world.email = german
    who = person(session, "French", language="fr")
    consent(session, who)
    return who


def _restricted(session: Session, world: World) -> int:
    from tournesol.ingest.models import ImportBatch, SourceRecord

    rented = Source(name="rented", kind="rented", restrictions=["rented_list"])
    session.add(rented)
    session.flush()
    batch = ImportBatch(
        source_id=rented.id, entity="customer", file_name="r.csv", file_sha256="0" * 64,
        mapping_sha256="0" * 64, file_format="csv",
    )  # fmt: skip
    session.add(batch)
    session.flush()
    who = person(session, "Rented")
    consent(session, who)
    session.add(
        SourceRecord(
            source_id=rented.id, entity="customer", source_key="r1", raw={}, normalized={},
            record_hash="0" * 32, line_no=2, first_batch_id=batch.id, last_batch_id=batch.id,
            customer_id=who,
        )
    )  # fmt: skip
    return who


def _cancelled(session: Session, world: World) -> int:
    world.email.status = "cancelled"
    who = person(session, "Ann")
    consent(session, who)
    return who


def _paused(session: Session, world: World) -> int:
    world.email.status = "paused"
    who = person(session, "Ann")
    consent(session, who)
    return who


def _sms_campaign_asked_for_email(session: Session, world: World) -> int:
    who = person(session, "Ann")
    consent(session, who)
    world.email = world.sms  # the SMS campaign, asked for an e-mail
    return who


SUPPRESSIONS: dict[str, tuple[Callable[[Session, World], int], str]] = {
    "no consent": (_no_consent, "no_consent"),
    "consent withdrawn": (_withdrawn, "opted_out"),
    "on the suppression list": (_suppressed, "suppressed_unsubscribe"),
    "consent for another brand": (_brand_consent_other_brand, "no_consent"),
    "no e-mail address": (_no_email, "no_contact_point"),
    "merged customer": (_merged, "not_active"),
    "erased customer": (_erased, "not_active"),
    "unknown customer": (_unknown, "not_active"),
    "no message in a language": (_no_language, "language_unavailable"),
    "rented list only": (_restricted, "restricted_source"),
    "cancelled campaign": (_cancelled, "campaign_cancelled"),
    "paused campaign": (_paused, "campaign_paused"),
    "channel not in the campaign": (_sms_campaign_asked_for_email, "channel_not_in_campaign"),
}


@pytest.mark.parametrize("case", list(SUPPRESSIONS))
def test_a_rule_that_refuses_suppresses_with_its_reason_and_writes_nothing(
    session: Session, world: World, case: str
) -> None:
    setup, reason = SUPPRESSIONS[case]
    who = setup(session, world)
    session.flush()
    answer = admit(session, world.email, who)
    assert (answer.outcome, answer.reason, answer.until, answer.outbox_id) == (
        "suppressed", reason, None, None
    )  # fmt: skip
    assert rows(session) == []


def test_a_purchase_from_the_brand_is_a_soft_opt_in_and_the_control_group_is_held_out(
    session: Session, world: World
) -> None:
    shop = Source(name="shop", kind="pos", restrictions=[])
    session.add(shop)
    session.flush()
    buyer = person(session, "Buyer")
    session.add(
        Transaction(
            source_id=shop.id, external_id="t1", customer_id=buyer, kind="order",
            brand_id=world.brand, occurred_at=NOW - 10 * DAY, total_amount=Decimal("30"),
        )
    )  # fmt: skip
    session.flush()
    assert admit(session, world.email, buyer, key="soft").outcome == "sent"
    # a purchase after the send time does not count
    late = person(session, "Late")
    session.add(
        Transaction(
            source_id=shop.id, external_id="t2", customer_id=late, kind="order",
            brand_id=world.brand, occurred_at=NOW + DAY, total_amount=Decimal("30"),
        )
    )  # fmt: skip
    session.flush()
    assert admit(session, world.email, late, key="late").reason == "no_consent"

    held = triggered(session, "held_out", ["email"], control_share=0.5)
    inside = None
    for i in range(40):
        who = person(session, f"Held{i}")
        # drawn by e-mail address (shared addresses land in the same arm)
        unit = campaigns.randomization_unit(who, f"held{i}@exemple.fr", None, household=False)
        if rules.in_control(unit, held.control_salt, 0.5):
            inside = who
            break
    assert inside is not None
    consent(session, inside)
    answer = admit(session, held, inside, key="held")
    assert (answer.outcome, answer.reason) == ("suppressed", "control_group")


def test_the_gate_records_each_customers_arm_once_for_measurement(
    session: Session, world: World
) -> None:
    """A triggered campaign (a journey's messages) is measured like a planned one: the first
    decision for a customer writes their arm, with the time the message went or would have
    gone; later decisions leave it alone."""
    from tournesol.campaigns.models import CampaignTarget
    from tournesol.reporting import measure

    journey = triggered(session, "welcome_measured", ["email"], control_share=0.5)
    decided: dict[int, str] = {}
    for i in range(30):
        who = person(session, f"Arm{i}")
        consent(session, who)
        answer = admit(session, journey, who, key=f"arm-{i}")
        decided[who] = answer.outcome if answer.reason is None else answer.reason
        # asked again later: the arm stays the first one
        admit(session, journey, who, key=f"arm-{i}-again", now=NOW + 3 * DAY)
    ct = CampaignTarget
    stored = {
        customer_id: (group, reason, send_at)
        for customer_id, group, reason, send_at in session.execute(
            select(ct.customer_id, ct.group, ct.reason, ct.send_at).where(
                ct.campaign_id == journey.id
            )
        )
    }
    assert set(stored) == set(decided)
    for who, outcome in decided.items():
        group, reason, send_at = stored[who]
        assert send_at == NOW
        if outcome == "sent":
            assert (group, reason) == ("target", None)
        else:
            assert (group, reason) == ("control", "control_group")
    arms = measure.incremental(session, journey, now=NOW + 30 * DAY).arms
    assert arms["treatment"].assigned + arms["control"].assigned == 30
    assert 0 < arms["control"].assigned < 30


def test_a_planned_campaign_is_refused(session: Session, world: World) -> None:
    from tournesol.segments.models import Segment

    session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    session.flush()
    planned = campaigns.create(
        session, code="spring", name="Spring", segment="everyone", channels=["email"]
    )
    ann = person(session, "Ann")
    consent(session, ann)
    with pytest.raises(campaigns.CampaignError, match="planned, not triggered"):
        admit(session, planned, ann)
    assert rows(session) == []


# --- deferred until the first instant allowed ----------------------------------------------


@pytest.mark.parametrize(
    ("preference", "until"),
    [
        # evenings only: 18:00 in Paris today
        ({"channel": "email", "hours": "18:00-20:00"}, datetime(2026, 11, 24, 17, 0, tzinfo=UTC)),
        # any channel, Saturdays: Saturday 00:00 in Paris
        ({"channel": "any", "days": "sat"}, datetime(2026, 11, 27, 23, 0, tzinfo=UTC)),
        # mornings, but 10:00 has passed: tomorrow 08:00
        ({"channel": "any", "hours": "08:00-09:30"}, datetime(2026, 11, 25, 7, 0, tzinfo=UTC)),
    ],
)
def test_outside_the_customers_hours_defers_until_the_window_opens(
    session: Session, world: World, preference: dict[str, str], until: datetime
) -> None:
    ann = person(session, "Ann")
    consent(session, ann)
    session.add(Preference(customer_id=ann, **preference))
    session.flush()
    answer = admit(session, world.email, ann)
    assert (answer.outcome, answer.reason, answer.until) == (
        "deferred", "outside_contact_window", until
    )  # fmt: skip
    assert rows(session) == []
    # at that instant it goes
    assert admit(session, world.email, ann, now=until).outcome == "sent"
    assert rows(session)[0].send_after == until


def test_a_customer_in_new_york_is_reached_in_new_york_hours(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann", country="US")
    consent(session, ann)
    session.add(Preference(customer_id=ann, channel="any", hours="09:00-17:00"))
    session.flush()
    answer = admit(session, world.email, ann)  # 04:00 in New York
    assert answer.until == datetime(2026, 11, 24, 14, 0, tzinfo=UTC)  # 09:00 EST


@pytest.mark.parametrize(
    ("now", "hours", "days", "until"),
    [
        # Spring forward, Sunday 29 March 2026 (02:00 CET -> 03:00 CEST)
        # Saturday 22:00 CET: Sunday 09:00 CEST
        (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), "09:00-10:00", None,
         datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),
        # a span partly in the gap opens at 03:00 CEST
        (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), "02:30-04:00", None,
         datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        # a span wholly in the gap does not exist that Sunday: Monday 02:15 CEST
        (datetime(2026, 3, 28, 21, 0, tzinfo=UTC), "02:15-02:45", None,
         datetime(2026, 3, 30, 0, 15, tzinfo=UTC)),
        # Friday 20:00 CET, weekdays 09:00: Monday 09:00 CEST
        (datetime(2026, 3, 27, 19, 0, tzinfo=UTC), "09:00-19:00", "mon,tue,wed,thu,fri",
         datetime(2026, 3, 30, 7, 0, tzinfo=UTC)),
        # Fall back, Sunday 25 October 2026 (03:00 CEST -> 02:00 CET)
        # Saturday 22:00 CEST: Sunday 09:00 CET
        (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), "09:00-10:00", None,
         datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),
        # the repeated hour: its first occurrence (02:30 CEST)
        (datetime(2026, 10, 24, 20, 0, tzinfo=UTC), "02:30-03:00", None,
         datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        # in the second pass of the repeated hour (02:10 CET), the window is open: now
        (datetime(2026, 10, 25, 1, 10, tzinfo=UTC), "02:00-02:30", None, None),
        # Friday 20:00 CEST, weekdays 09:00: Monday 09:00 CET
        (datetime(2026, 10, 23, 18, 0, tzinfo=UTC), "09:00-19:00", "mon,tue,wed,thu,fri",
         datetime(2026, 10, 26, 8, 0, tzinfo=UTC)),
    ],
)  # fmt: skip
def test_deferral_to_the_customers_hours_across_the_paris_dst_changes(
    session: Session,
    world: World,
    now: datetime,
    hours: str,
    days: str | None,
    until: datetime | None,
) -> None:
    ann = person(session, "Ann")
    consent(session, ann, at=now - 30 * DAY)
    session.add(Preference(customer_id=ann, channel="any", hours=hours, days=days))
    session.flush()
    answer = admit(session, world.email, ann, now=now)
    if until is None:
        assert answer.outcome == "sent"
        return
    assert (answer.outcome, answer.reason, answer.until) == (
        "deferred", "outside_contact_window", until
    )  # fmt: skip
    assert admit(session, world.email, ann, now=until).outcome == "sent"


def test_pressure_gap_defers_until_the_last_contact_plus_48_hours(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann")
    consent(session, ann)
    contact(session, ann, NOW - DAY)
    answer = admit(session, world.email, ann)
    assert (answer.outcome, answer.reason, answer.until) == (
        "deferred", "pressure_gap", NOW - DAY + 48 * HOUR
    )  # fmt: skip
    assert rows(session) == []
    until = NOW + DAY
    assert admit(session, world.email, ann, now=until - timedelta(seconds=1)).until == until
    assert admit(session, world.email, ann, now=until).outcome == "sent"
    # a contact planned for later counts too: the gap holds on both sides
    bob = person(session, "Bob")
    consent(session, bob)
    contact(session, bob, NOW + DAY)
    answer = admit(session, world.email, bob, key="k-2")
    assert (answer.outcome, answer.until) == ("deferred", NOW + 3 * DAY)


def test_weekly_cap_defers_until_the_oldest_contact_leaves_the_week(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann")
    consent(session, ann)
    for days in (6, 4, 2):
        contact(session, ann, NOW - days * DAY)
    answer = admit(session, world.email, ann)
    assert (answer.outcome, answer.reason, answer.until) == (
        "deferred", "pressure_cap", NOW + DAY
    )  # fmt: skip
    # the SMS cap is one a week, on its own channel
    bob = person(session, "Bob", phone_mobile="+33612345678")
    consent(session, bob, "sms")
    contact(session, bob, NOW - 3 * DAY, channel="sms")
    answer = admit(session, world.sms, bob, channel="sms", key="k-2")
    assert (answer.outcome, answer.reason, answer.until) == (
        "deferred", "pressure_cap", NOW + 4 * DAY
    )  # fmt: skip


def test_a_cap_no_instant_within_30_days_frees_suppresses(session: Session, world: World) -> None:
    ann = person(session, "Ann")
    consent(session, ann)
    contact(session, ann, NOW - DAY)
    monthly = replace(
        POLICIES,
        pressure=replace(
            rules.DEFAULT_PRESSURE,
            caps=(rules.CapRule("bimonthly", 1, timedelta(days=60)),),
        ),
    )
    answer = admit(session, world.email, ann, policies=monthly)
    assert (answer.outcome, answer.reason, answer.until) == ("suppressed", "pressure_cap", None)
    # the customer's own cap of zero a week: nothing ever frees it
    bob = person(session, "Bob")
    consent(session, bob)
    session.add(Preference(customer_id=bob, channel="any", max_per_week=0))
    session.flush()
    answer = admit(session, world.email, bob, key="k-2")
    assert (answer.outcome, answer.reason) == ("suppressed", "pressure_cap")
    # the customer's own cap of one a week, with a contact 3 days ago: in 4 days
    cid = person(session, "Cid")
    consent(session, cid)
    session.add(Preference(customer_id=cid, channel="any", max_per_week=1))
    contact(session, cid, NOW - 3 * DAY)
    answer = admit(session, world.email, cid, key="k-3")
    assert (answer.outcome, answer.reason, answer.until) == (
        "deferred", "pressure_cap", NOW + 4 * DAY
    )  # fmt: skip
    assert rows(session) == []


def test_transactional_messages_are_exempt_from_pressure(session: Session, world: World) -> None:
    receipt = triggered(session, "receipt", ["email"], purpose="transactional")
    ann = person(session, "Ann")
    consent_service.set_consent(
        session, customer_id=ann, channel="email", purpose="transactional", brand_id=None,
        status="granted", proof_source="web form", proof_text_version="v1",
        collected_at=NOW - DAY, actor="test",
    )  # fmt: skip
    contact(session, ann, NOW - HOUR)
    assert admit(session, receipt, ann).outcome == "sent"


# --- tasks, the telephone, webhooks ---------------------------------------------------------


def test_an_advisor_task_needs_no_consent_but_an_active_customer(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann", email=None)  # no consent, no contact point
    answer = admit(session, world.task, ann, channel="advisor_task", key="task-1")
    assert answer.outcome == "sent"
    (row,) = rows(session)
    assert (row.channel, row.address, row.language, row.key, row.campaign_id) == (
        "advisor_task", None, "fr", "task-1", world.task.id
    )  # fmt: skip
    assert admit(session, world.task, ann, channel="advisor_task", key="task-1").outbox_id == row.id
    gone = person(session, "Gone", status="erased")
    answer = admit(session, world.task, gone, channel="advisor_task", key="task-2")
    assert (answer.outcome, answer.reason) == ("suppressed", "not_active")
    assert len(rows(session)) == 1


def instance(customer_id: int) -> JourneyInstance:
    return JourneyInstance(id=1, customer_id=customer_id, journey_id=1, version_id=1)


def gate_send(
    session: Session,
    customer_id: int,
    channel: str,
    message: str | None,
    key: str,
    **properties: Any,
) -> GateResult:
    send = Send(
        step="s", visit=1, channel=channel, message=message, idempotency_key=key,
        on_suppressed="exit", purpose="marketing", properties=properties,
    )  # fmt: skip
    return DispatchGate(POLICIES).send(
        session, send=send, instance=instance(customer_id), journey=CART, now=NOW
    )


def test_dispatch_gate_channels_webhooks_and_unknown_messages(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann", phone_mobile="+33612345678")
    consent(session, ann)
    consent(session, ann, "phone")  # a provable consent (after the August 2026 switch)
    # call centre: the campaign's phone channel, to the mobile number
    assert gate_send(session, ann, "call_center", "call_back", "c-1") == GateResult("sent")
    (row,) = rows(session, "c-1")
    assert (row.channel, row.address) == ("phone", "+33612345678")
    # e-mail: the triggered campaign named by the message
    assert gate_send(session, ann, "email", "cart_reminder", "e-1") == GateResult(
        "deferred", "pressure_gap", NOW + 48 * HOUR
    )
    assert gate_send(
        session, ann, "advisor_task", "advisor_call", "t-1", queue="premium", priority="high"
    ) == GateResult("sent")
    (task,) = rows(session, "t-1")
    assert task.payload == {
        "journey": "abandoned_cart", "step": "s", "visit": 1, "instance_id": 1,
        "queue": "premium", "priority": "high",
    }  # fmt: skip
    # a webhook: no campaign, no consent; the row holds the URL and what to post
    url = "https://crm.example.com/hooks/cart"
    hooked = person(session, "Hook", email=None)
    answer = gate_send(session, hooked, "webhook", None, "w-1", url=url, kind="cart")
    assert answer == GateResult("sent")
    (hook,) = rows(session, "w-1")
    assert (hook.channel, hook.address, hook.campaign_id, hook.purpose, hook.customer_id) == (
        "webhook", url, None, "marketing", hooked
    )  # fmt: skip
    assert hook.payload is not None and hook.payload["kind"] == "cart"
    assert gate_send(session, ann, "email", "no_such_campaign", "x-1") == GateResult(
        "suppressed", "no_triggered_campaign"
    )
    # a planned campaign's code is not a triggered campaign
    from tournesol.segments.models import Segment

    session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    session.flush()
    campaigns.create(session, code="spring", name="Spring", segment="everyone", channels=["email"])
    assert gate_send(session, ann, "email", "spring", "x-2") == GateResult(
        "suppressed", "no_triggered_campaign"
    )
    bob = person(session, "Bob")  # no SMS consent, no mobile
    assert gate_send(session, bob, "sms", "cart_last_call", "s-1") == GateResult(
        "suppressed", "no_contact_point"
    )
    assert {r.key for r in rows(session)} == {"c-1", "t-1", "w-1"}


def test_the_phone_keeps_to_the_legal_hours_without_a_preference(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann", phone_mobile="+33612345678")
    consent(session, ann, "phone")
    lunch = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)  # 13:30 in Paris
    answer = admit(session, world.phone, ann, channel="phone", now=lunch)
    assert (answer.outcome, answer.until) == ("deferred", datetime(2026, 11, 24, 13, tzinfo=UTC))
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    answer = admit(session, world.phone, ann, channel="phone", now=saturday)
    assert answer.until == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday 10:00


def test_one_row_per_key_however_often_the_gate_is_asked(session: Session, world: World) -> None:
    ann = person(session, "Ann")
    consent(session, ann)
    answers = {admit(session, world.email, ann, key="same").outbox_id for _ in range(5)}
    assert len(answers) == 1
    count = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.key == "same"))
    assert count == 1


# --- next_fit --------------------------------------------------------------------------------


def at(days: float) -> datetime:
    return NOW + timedelta(days=days)


def email(days: float, brand: int | None = 1, purpose: str = "marketing") -> rules.Contact:
    return rules.Contact(at(days), "email", brand, purpose)


def sms(days: float) -> rules.Contact:
    return rules.Contact(at(days), "sms", 1, "marketing")


P = rules.DEFAULT_PRESSURE
PER_BRAND = rules.PressurePolicy(caps=(rules.CapRule("brand", 1, timedelta(days=7), None, True),))


@pytest.mark.parametrize(
    ("policy", "history", "proposed", "latest", "expected"),
    [
        # nothing in the way: no instant frees anything (the caller only asks when refused)
        (P, [], email(0), at(30), None),
        # the gap: 48 hours after the last contact
        (P, [email(-1)], email(0), at(30), at(1)),
        # a contact ahead counts too: 48 hours after it
        (P, [email(1)], email(0), at(30), at(3)),
        # two contacts: after the gap of the later one
        (P, [email(-3), email(-1.5)], email(0), at(30), at(0.5)),
        # the weekly cap: when the oldest of the three leaves the week
        (P, [email(-6), email(-4), email(-2)], email(0), at(30), at(1)),
        # exactly one period later is free (the window is half-open)
        (P, [email(-6.5), email(-4), email(-2)], email(0), at(30), at(0.5)),
        # the SMS cap: a week after the last SMS; the e-mail gap is passed by then
        (P, [sms(-3)], sms(0), at(30), at(4)),
        # an e-mail does not count against the SMS cap, only the gap
        (P, [email(-1)], sms(0), at(30), at(1)),
        # the latest instant bounds the search
        (P, [email(-6), email(-4), email(-2)], email(0), at(0.5), None),
        (P, [email(-1)], email(0), at(1), at(1)),
        # exempt purposes never count
        (P, [email(-1, purpose="transactional"), email(-1.5)], email(0), at(30), at(0.5)),
        # a per-brand cap: another brand's contact does not count
        (PER_BRAND, [email(-3, brand=1), email(-1, brand=2)], email(0, brand=1), at(30), at(4)),
        # a cap nothing frees within the horizon
        (
            rules.PressurePolicy(caps=(rules.CapRule("m", 1, timedelta(days=60)),)),
            [email(-1)], email(0), at(30), None,
        ),
    ],
)  # fmt: skip
def test_next_fit(
    policy: rules.PressurePolicy,
    history: list[rules.Contact],
    proposed: rules.Contact,
    latest: datetime,
    expected: datetime | None,
) -> None:
    found = campaigns.next_fit(policy, history, proposed, latest=latest)
    assert found == expected
    if found is not None:
        moved = replace(proposed, at=found)
        assert rules.check_pressure(policy, history, moved) is None
        # and nothing earlier fits: every hour between is still refused
        probe = proposed.at + HOUR
        while probe < found:
            assert rules.check_pressure(policy, history, replace(proposed, at=probe)) is not None
            probe += HOUR


# --- many requests at once ------------------------------------------------------------------


def test_admit_many_decides_in_order_each_message_counting_for_the_next(
    session: Session, world: World
) -> None:
    ann = person(session, "Ann", phone_mobile="+33612345678")
    consent(session, ann)
    bob = person(session, "Bob")
    consent(session, bob)
    nobody = person(session, "Nobody")
    request = campaigns.AdmitRequest
    answers = campaigns.admit_many(
        session,
        [
            request(world.email, ann, "email", "a-1"),
            request(world.email, ann, "email", "a-2"),  # the gap after a-1, in the same call
            request(world.email, bob, "email", "b-1"),
            request(world.email, bob, "email", "b-1"),  # the same key twice: one message
            request(world.email, nobody, "email", "n-1"),
            request(world.task, nobody, "advisor_task", "t-1"),  # a task needs no consent
            request(world.sms, ann, "email", "x-1"),  # not a channel of that campaign
        ],
        now=NOW,
        policies=POLICIES,
    )
    outcomes = [(a.outcome, a.reason, a.until) for a in answers]
    assert outcomes == [
        ("sent", None, None),
        ("deferred", "pressure_gap", NOW + 48 * HOUR),
        ("sent", None, None),
        ("sent", None, None),
        ("suppressed", "no_consent", None),
        ("sent", None, None),
        ("suppressed", "channel_not_in_campaign", None),
    ]
    stored = {r.key: r.id for r in rows(session)}
    assert set(stored) == {"a-1", "b-1", "t-1"}
    assert [a.outbox_id for a in answers if a.outcome == "sent"] == [
        stored["a-1"], stored["b-1"], stored["b-1"], stored["t-1"]
    ]  # fmt: skip
    # asked again, one by one, the answers agree and nothing more is written
    again = [admit(session, world.email, ann, key=k) for k in ("a-1", "a-2")]
    assert [(a.outcome, a.reason) for a in again] == [("sent", None), ("deferred", "pressure_gap")]
    assert len(rows(session)) == 3


def test_the_gate_defers_while_a_campaign_plan_is_under_way(
    session: Session, world: World, engine: Any
) -> None:
    """On PostgreSQL a plan holds the sends lock alone until it commits: the gate defers its
    messages meanwhile (the plan's own are not visible yet), and sends them afterwards."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: a plan and the gate never overlap")
    ann = person(session, "Ann")
    consent(session, ann)
    with engine.connect() as planner:
        planner.begin()
        campaigns._hold_sends(Session(bind=planner))
        answer = admit(session, world.email, ann, key="during")
        assert (answer.outcome, answer.reason, answer.until) == (
            "deferred", campaigns.PLAN_RUNNING, NOW + campaigns.PLAN_WAIT
        )  # fmt: skip
        planner.rollback()
    assert rows(session) == []
    # the gate's shared hold lasts until the test's transaction ends: take a new one
    assert admit(session, world.email, ann, key="after").outcome == "sent"
