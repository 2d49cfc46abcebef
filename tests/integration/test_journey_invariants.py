"""Property tests of the journey engine ON THE DATABASE, SQLite and PostgreSQL: random streams
of events for a few customers with random consents, contact hours, weekly caps and earlier
contacts, driven through the real path (carts, orders and unsubscriptions written as history
and collected, or submitted to the inbox; the worker's pass with the real dispatch gate and
its outbox), then the invariants of docs/journeys.md checked on what the database holds:

- no two outbox rows share a key, and the journey's messages in the outbox are exactly the
  sends its step log records, one per instance, step and visit;
- every message went to a customer whose consent allowed its channel at the time it was
  queued (recomputed from the consent rows and purchases of that time);
- the pressure caps (3 a week, 1 SMS a week, 48 hours apart, the customer's own weekly cap)
  hold in every customer's outbox;
- every instance has ended once a pass ran at or after its maximum duration;
- an unsubscription ends the customer's instances at once, and none of them queues anything
  afterwards.

Each example runs in a transaction of its own, rolled back at the end."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import example as explicit
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tests.integration.test_journeys_store import example
from tournesol.campaigns import rules
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Campaign, Outbox
from tournesol.consent import service as consent_service
from tournesol.consent.models import Consent, Preference
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.ingest.models import Source
from tournesol.interactions.models import Interaction, Transaction
from tournesol.triggers import service as journeys
from tournesol.triggers.definition import ActionStep, JourneyDefinition
from tournesol.triggers.gate import DispatchGate
from tournesol.triggers.models import Journey, JourneyInstance, JourneyStepLog, JourneyVersion
from tournesol.triggers.rules import InstanceState, idempotency_key
from tournesol.triggers.worker import run_once

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)  # Monday 4 May 2026, 10:00 in Paris
DAY = timedelta(days=1)
POLICIES = campaigns.Policies()
LIVE = ("active", "waiting", "awaiting_gate")
MESSAGES = {"cart_reminder": "email", "cart_last_call": "sms"}

# --- what a customer is, and what happens ---------------------------------------------------

CONSENTS = st.sampled_from(["granted", "granted", "granted_brand", None, "denied"])


@dataclass(frozen=True)
class Profile:
    email: bool
    mobile: bool
    email_consent: str | None
    sms_consent: str | None
    hours: str | None  # contact hours (preference, any channel)
    max_per_week: int | None
    earlier: tuple[float, str] | None  # an earlier contact: days before T0, channel


PROFILES = st.builds(
    Profile,
    email=st.booleans() | st.just(True),
    mobile=st.booleans() | st.just(True),
    email_consent=CONSENTS,
    sms_consent=CONSENTS,
    hours=st.sampled_from([None, None, "18:00-20:00", "08:00-12:00,14:00-17:00"]),
    max_per_week=st.sampled_from([None, None, 1, 2]),
    earlier=st.none() | st.tuples(st.floats(0, 6.5), st.sampled_from(["email", "sms"])),
)
WHO = st.integers(0, 2)
CART = st.integers(0, 2)
VIA = st.sampled_from(["history", "api"])
LATE = st.sampled_from([0, 0, 0, 30, 180])  # minutes between the event and its arrival
CARTS = st.tuples(st.just("cart"), WHO, CART, st.sampled_from([10, 25, 80, 80]), VIA, LATE)
OPS = st.lists(
    st.one_of(
        CARTS,
        CARTS,
        st.tuples(st.just("order"), WHO, st.integers(0, 3), VIA, LATE),  # 3: a cart never left
        st.tuples(st.just("unsub"), WHO, st.sampled_from(["email", "sms"]), VIA),
        st.tuples(st.just("advance"), st.integers(1, 4 * 24 * 60)),  # minutes
        st.tuples(st.just("replay")),  # a second pass at the same time
        st.tuples(st.just("publish"), st.sampled_from(["12h", "24h"])),  # a new version
        st.tuples(st.just("pause")),  # paused until the next advance
    ),
    min_size=2,
    max_size=14,
)
# the abandoned-cart journey, its first wait of 24 hours or (another version) of 12
VERSIONS = {
    "24h": example("abandoned_cart"),
    "12h": example("abandoned_cart").replace("timeout: 24h", "timeout: 12h"),
}


@dataclass
class Run:
    """One example: its database session factory, its people and clock, what it recorded."""

    factory: sessionmaker[Session]
    people: list[int]
    brand: int
    shop: int
    now: datetime = T0
    ids: count[int] = field(default_factory=count)
    # per unsubscription: the customer, the last instance id and outbox id before it
    marks: list[tuple[int, int, int]] = field(default_factory=list)

    def session(self) -> AbstractContextManager[Session]:
        return unit_of_work(self.factory)

    def pass_(self) -> None:
        run_once(self.factory, now=self.now, gate=DispatchGate(POLICIES), worker="prop", batch=7)
        with self.session() as s:
            check_ended(s, self.now)


def setup(factory: sessionmaker[Session], profiles: list[Profile]) -> Run:
    with unit_of_work(factory) as s:
        brand = Brand(code="SOLEIL", name="Soleil")
        shop = Source(name="web shop", kind="ecommerce", restrictions=[])
        s.add_all([brand, shop])
        s.flush()
        for code, channel in MESSAGES.items():
            campaign = campaigns.create(
                s, code=code, name=code, segment=None, channels=[channel], kind="triggered",
                brand="SOLEIL", control_share=0.0,
            )  # fmt: skip
            campaigns.set_message(
                s, campaign=campaign, channel=channel, language="fr", body_text="Votre panier",
                subject="Votre panier" if channel == "email" else None,
            )  # fmt: skip
        journeys.publish(s, text=VERSIONS["24h"], now=T0 - DAY)
        people = []
        for i, p in enumerate(profiles):
            customer = Customer(
                first_name=f"P{i}", last_name="Test", country="FR", brand_id=brand.id,
                email=f"p{i}@exemple.fr" if p.email else None,
                phone_mobile=f"+3361234567{i}" if p.mobile else None,
                created_at=T0 - 300 * DAY,
            )  # fmt: skip
            s.add(customer)
            s.flush()
            people.append(customer.id)
            for channel, given_ in (("email", p.email_consent), ("sms", p.sms_consent)):
                if given_ is not None:
                    consent_service.set_consent(
                        s, customer_id=customer.id, channel=channel, purpose="marketing",
                        brand_id=brand.id if given_ == "granted_brand" else None,
                        status="denied" if given_ == "denied" else "granted",
                        proof_source="web form", proof_text_version="v1",
                        collected_at=T0 - 30 * DAY, actor="test",
                    )  # fmt: skip
            if p.hours is not None or p.max_per_week is not None:
                s.add(
                    Preference(
                        customer_id=customer.id, channel="any", hours=p.hours,
                        max_per_week=p.max_per_week,
                    )
                )  # fmt: skip
            if p.earlier is not None:
                days, channel = p.earlier
                when = T0 - timedelta(days=days)
                s.add(
                    Outbox(
                        key=f"earlier:{customer.id}", customer_id=customer.id, brand_id=brand.id,
                        channel=channel, purpose="marketing", language="fr", state="sent",
                        send_after=when, planned_at=when,
                    )
                )  # fmt: skip
        run = Run(factory, people, brand.id, shop.id)
    run.pass_()  # the scans start here: what is written from now on is collected
    return run


def play(run: Run, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind in ("advance", "replay", "publish", "pause"):
        with run.session() as s:
            if kind == "publish":
                journeys.publish(s, text=VERSIONS[op[1]], now=run.now)
            elif kind == "pause":
                journeys.pause(s, code="abandoned_cart", now=run.now)
            elif kind == "advance":  # the pause lasts until time passes
                run.now += timedelta(minutes=op[1])
                journeys.resume(s, code="abandoned_cart", now=run.now)
        run.pass_()
        return
    n = next(run.ids)
    who = run.people[op[1]]
    run.now += timedelta(seconds=1)  # after the last pass: what it queued came first
    at = run.now
    if kind in ("cart", "order"):  # it may have happened a little earlier
        at = max(at - timedelta(minutes=op[-1]), T0)
    with run.session() as s:
        if kind == "cart":
            _, _, cart, total, via, _ = op
            props = {"cart_id": f"cart-{cart}", "total": total}
            if via == "api":
                journeys.submit_event(
                    s, customer_id=who, type="cart_abandoned", properties=props, occurred_at=at,
                    event_id=f"api:{n}",
                )  # fmt: skip
            else:
                s.add(
                    Interaction(
                        customer_id=who, occurred_at=at, channel="web", direction="inbound",
                        type="cart_abandoned", payload=props, created_at=at,
                    )
                )  # fmt: skip
        elif kind == "order":
            _, _, cart, via, _ = op
            if via == "api":
                journeys.submit_event(
                    s, customer_id=who, type="order_completed",
                    properties={"cart_id": f"cart-{cart}"}, occurred_at=at, event_id=f"api:{n}",
                )  # fmt: skip
            else:
                s.add(
                    Transaction(
                        source_id=run.shop, external_id=f"order-{n}", customer_id=who,
                        kind="order", channel="web", brand_id=run.brand, occurred_at=at,
                        total_amount=Decimal(40), attributes={"cart_id": f"cart-{cart}"},
                        created_at=at,
                    )
                )  # fmt: skip
        else:
            _, _, channel, via = op
            run.marks.append(
                (
                    who,
                    s.scalar(select(func.max(JourneyInstance.id))) or 0,
                    s.scalar(select(func.max(Outbox.id))) or 0,
                )
            )
            consent_service.set_consent(
                s, customer_id=who, channel=channel, purpose="marketing", brand_id=None,
                status="withdrawn", proof_source="unsubscribe link", proof_text_version="v1",
                collected_at=at, actor="test",
            )  # fmt: skip
            if via == "api":
                journeys.submit_event(
                    s, customer_id=who, type="unsubscribed", properties={"channel": channel},
                    occurred_at=at, event_id=f"api:{n}",
                )  # fmt: skip
            else:
                s.add(
                    Interaction(
                        customer_id=who, occurred_at=at, channel=channel, direction="inbound",
                        type="email_unsubscribed" if channel == "email" else "sms_stop",
                        payload={}, created_at=at,
                    )
                )  # fmt: skip
    run.pass_()
    if kind == "unsub":
        with run.session() as s:
            who, last_instance, _ = run.marks[-1]
            live = s.scalars(
                select(JourneyInstance).where(
                    JourneyInstance.customer_id == who,
                    JourneyInstance.id <= last_instance,
                    JourneyInstance.status.in_(LIVE),
                )
            ).all()
            assert not live, f"still running after an unsubscription: {live}"


# --- the invariants -------------------------------------------------------------------------


def check_ended(session: Session, now: datetime) -> None:
    """After a pass at ``now``: nothing live past its maximum duration (unless its journey is
    paused: no timers then), no wait beyond it."""
    paused = select(Journey.id).where(Journey.status == "paused")
    late = session.execute(
        select(JourneyInstance.id, JourneyInstance.status, JourneyInstance.expires_at).where(
            JourneyInstance.status.in_(LIVE),
            JourneyInstance.expires_at <= now,
            JourneyInstance.journey_id.not_in(paused),
        )
    ).all()
    assert not late, f"instances still live after their maximum duration at {now}: {late}"
    beyond = session.execute(
        select(JourneyInstance.id).where(
            JourneyInstance.status.in_(LIVE), JourneyInstance.due_at > JourneyInstance.expires_at
        )
    ).all()
    assert not beyond, f"instances due after their maximum duration: {beyond}"


def instance_keys(session: Session) -> dict[str, tuple[int, str, int]]:
    """Every idempotency key an instance can have given the visits it made: key -> (instance
    id, step, visit)."""
    out: dict[str, tuple[int, str, int]] = {}
    for inst in session.scalars(select(JourneyInstance)):
        version = session.get(JourneyVersion, inst.version_id)
        assert version is not None
        journey: JourneyDefinition = journeys.definition_of(version)
        state = InstanceState.from_json(inst.state)
        for step in journey.steps:
            if not isinstance(step, ActionStep):
                continue
            for visit in range(1, state.visits.get(step.id, 0) + 1):
                key = idempotency_key(
                    journey.code, journey.digest(), state.instance_id, step.id, visit
                )
                assert key not in out, "two instances, steps or visits share a key"
                out[key] = (inst.id, step.id, visit)
    return out


def check_all(run: Run) -> Counter[str]:
    with run.session() as s:
        outbox = list(s.scalars(select(Outbox).order_by(Outbox.id)))
        keys = Counter(row.key for row in outbox)
        assert max(keys.values(), default=1) == 1, "two outbox rows share a key"
        codes: dict[int, str] = {
            id_: code
            for id_, code in s.execute(
                select(Campaign.id, Campaign.code).where(Campaign.kind == "triggered")
            )
        }
        ours = [row for row in outbox if row.campaign_id in codes]
        # the journey's messages are exactly the sends of its step log
        known = instance_keys(s)
        sent = set()
        for instance_id, step, visit in s.execute(
            select(JourneyStepLog.instance_id, JourneyStepLog.step, JourneyStepLog.visit).where(
                JourneyStepLog.outcome == "sent"
            )
        ):
            matching = [k for k, v in known.items() if v == (instance_id, step, visit)]
            assert len(matching) == 1
            sent.add(matching[0])
        assert {row.key for row in ours} == sent
        for row in ours:
            _, step, _ = known[row.key]
            assert row.campaign_id is not None
            assert MESSAGES[codes[row.campaign_id]] == row.channel
            assert {"remind": "email", "last_call": "sms"}[step] == row.channel
        # consent at send time
        for row in ours:
            check_consent(s, row, run.brand)
        # pressure
        by_customer: dict[int, list[Outbox]] = defaultdict(list)
        for row in outbox:
            if row.state in campaigns.CONTACT_STATES:
                by_customer[row.customer_id].append(row)
        caps: dict[int, int | None] = {
            customer_id: most
            for customer_id, most in s.execute(
                select(Preference.customer_id, Preference.max_per_week).where(
                    Preference.channel == "any", Preference.max_per_week.is_not(None)
                )
            )
        }
        for customer_id, contacts in by_customer.items():
            policy = rules.DEFAULT_PRESSURE
            most = caps.get(customer_id)
            if most is not None:
                own = rules.CapRule("customer_weekly", most, timedelta(days=7))
                policy = dataclasses.replace(policy, caps=(*policy.caps, own))
            for row in contacts:
                others = [
                    rules.Contact(o.send_after, o.channel, o.brand_id, o.purpose)
                    for o in contacts
                    if o.id != row.id
                ]
                this = rules.Contact(row.send_after, row.channel, row.brand_id, row.purpose)
                verdict = rules.check_pressure(policy, others, this)
                assert verdict is None, f"pressure exceeded for {customer_id}: {verdict}"
        # an unsubscription: nothing more for the instances that existed then
        for who, last_instance, last_outbox in run.marks:
            for row in ours:
                instance_id, _, _ = known[row.key]
                if row.customer_id == who and instance_id <= last_instance:
                    assert row.id <= last_outbox, "a message queued after the unsubscription"
        check_ended(s, run.now)
        stats = Counter(f"exit.{r}" for r in s.scalars(select(JourneyInstance.exit_reason)))
        stats.update(
            f"{step}.{outcome}" + (f".{detail}" if outcome == "suppressed" else "")
            for step, outcome, detail in s.execute(
                select(JourneyStepLog.step, JourneyStepLog.outcome, JourneyStepLog.detail).where(
                    JourneyStepLog.step.in_(("remind", "last_call"))
                )
            )
        )
        stats.update(f"outbox.{row.channel}" for row in ours)
        stats["deferred"] += (
            s.scalar(
                select(func.count()).where(
                    Interaction.type == "journey_step", Interaction.outcome == "deferred"
                )
            )
            or 0
        )
        stats["versions"] += (s.scalar(select(func.count()).select_from(JourneyVersion)) or 1) - 1
        return stats


def check_consent(session: Session, row: Outbox, brand: int) -> None:
    """The consent rules, recomputed from the consent rows and purchases of the send time."""
    at = row.send_after
    facts = [
        rules.ConsentFact(c.channel, c.purpose, c.brand_id, c.status, c.collected_at, True)
        for c in session.scalars(
            select(Consent).where(
                Consent.customer_id == row.customer_id, Consent.collected_at <= at
            )
        )
    ]
    last = session.scalar(
        select(func.max(Transaction.occurred_at)).where(
            Transaction.customer_id == row.customer_id,
            Transaction.kind != "return",
            Transaction.brand_id == brand,
            Transaction.occurred_at <= at,
        )
    )
    decision = rules.decide_consent(
        rules.FRENCH_DEFAULTS, channel=row.channel, purpose=row.purpose, brand_id=row.brand_id,
        audience="b2c", facts=facts, bought_from_brand=last is not None,
        has_contract=last is not None and last >= at - timedelta(days=365), now=at,
    )  # fmt: skip
    assert decision.allowed, f"{row.channel} to {row.customer_id} at {at}: {decision}"


# --- the property ---------------------------------------------------------------------------

STATS: Counter[str] = Counter()
# Streams that always run, besides the random ones: an e-mail reminder then the SMS last
# call, an unsubscription after the reminder; contact hours, a weekly cap and a contact
# the day before defer the reminder, and a second cart of the same customer comes after it.
REACHABLE = Profile(True, True, "granted", "granted", None, None, None)
PRESSED = Profile(True, True, "granted_brand", "granted", "18:00-20:00", 1, (0.5, "email"))
ALWAYS_PROFILES = [REACHABLE, REACHABLE, PRESSED]
ALWAYS_OPS: list[tuple[Any, ...]] = [
    ("cart", 0, 0, 80, "history", 0),
    ("cart", 1, 1, 80, "api", 30),
    ("cart", 2, 0, 25, "history", 0),
    ("advance", 25 * 60),
    ("cart", 2, 1, 80, "api", 0),
    ("unsub", 1, "email", "history"),
    ("advance", 3 * 24 * 60),
]


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(profiles=st.lists(PROFILES, min_size=3, max_size=3), ops=OPS)
@explicit(profiles=ALWAYS_PROFILES, ops=ALWAYS_OPS)
def _property(engine: Engine, profiles: list[Profile], ops: list[tuple[Any, ...]]) -> None:
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            factory = sessionmaker(
                bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
            )
            run = setup(factory, profiles)
            for op in ops:
                play(run, op)
            # then a worker every 4 hours, long enough for every instance to end
            for _ in range(8 * 6):
                play(run, ("advance", 4 * 60))
            STATS.update(check_all(run))
        finally:
            outer.rollback()


def test_journey_invariants_hold_on_random_event_streams(engine: Engine) -> None:
    STATS.clear()
    _property(engine=engine)
    # the streams did exercise the paths the invariants are about
    for kind in ("outbox.email", "outbox.sms", "exit.unsubscribed", "deferred"):
        assert STATS[kind] > 0, (kind, STATS)


# --- two workers ----------------------------------------------------------------------------

PING = """
code: ping
name: Ping
trigger: {event: {type: ping}}
instance_key: event.properties.ref
max_duration: 7d
steps:
  - {id: hello, action: {channel: email, message: cart_reminder, on_suppressed: continue}}
"""


def test_two_workers_never_exceed_a_customers_pressure(fresh_databases: FreshDatabase) -> None:
    """Two workers (PostgreSQL) claim two instances of the same customer, both due: the
    second must not pass the gate while the first's message is uncommitted, or both go out
    within the 48-hour gap. It waits for a later pass, which sees the first message."""
    engine = make_engine(fresh_databases.url("postgresql"))
    factory = make_session_factory(engine)
    try:
        with unit_of_work(factory) as s:
            s.add(Brand(code="SOLEIL", name="Soleil"))
            s.flush()
            campaign = campaigns.create(
                s, code="cart_reminder", name="Reminder", segment=None, channels=["email"],
                kind="triggered", brand="SOLEIL", control_share=0.0,
            )  # fmt: skip
            campaigns.set_message(
                s, campaign=campaign, channel="email", language="fr", subject="Hello",
                body_text="Hello",
            )  # fmt: skip
            journeys.publish(s, text=PING, now=T0 - DAY)
            ann = Customer(first_name="Ann", last_name="Test", email="ann@exemple.fr")
            s.add(ann)
            s.flush()
            consent_service.set_consent(
                s, customer_id=ann.id, channel="email", purpose="marketing", brand_id=None,
                status="granted", proof_source="web form", proof_text_version="v1",
                collected_at=T0 - DAY, actor="test",
            )  # fmt: skip
            for ref in ("a", "b"):
                journeys.submit_event(
                    s, customer_id=ann.id, type="ping", properties={"ref": ref},
                    occurred_at=T0, event_id=f"ping-{ref}",
                )  # fmt: skip
        with unit_of_work(factory) as s:
            assert journeys.process_inbox(s, now=T0)["entered"] == 2
        first, second = factory(), factory()
        try:
            one = journeys.run_due(first, now=T0, gate=DispatchGate(POLICIES), limit=1)
            assert (one["claimed"], one["sent"]) == (1, 1)
            # the other worker, while the first has not committed
            two = journeys.run_due(second, now=T0, gate=DispatchGate(POLICIES), limit=1)
            assert two["sent"] == 0, "a second message passed the gate beside the first"
            second.commit()
            first.commit()
        finally:
            first.close()
            second.close()
        with unit_of_work(factory) as s:
            again = journeys.run_due(s, now=T0, gate=DispatchGate(POLICIES))
            assert (again["claimed"], again["deferred"]) == (1, 1)
            sends = list(s.scalars(select(Outbox.send_after)))
            assert sends == [T0]
    finally:
        engine.dispose()
