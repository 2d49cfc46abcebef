"""Journeys in the database, on SQLite and PostgreSQL: publishing versions, the inbox and the
scans that fill it (deduplicated, re-scanned, starting at the end of the history), date
rules (birthdays, 29 February), the facts the engine reads, the graph's counts, and a
simulation that leaves nothing behind."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tournesol.consent import service as consent_service
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.ingest.models import Source
from tournesol.interactions.models import INTERNAL, Interaction, Transaction
from tournesol.segments.models import Segment, SegmentMembership
from tournesol.triggers import service as journeys
from tournesol.triggers.definition import JourneyError
from tournesol.triggers.gate import RecordingGate
from tournesol.triggers.models import (
    Journey,
    JourneyCursor,
    JourneyInbox,
    JourneyInstance,
    JourneyStepLog,
    JourneyVersion,
)
from tournesol.triggers.rules import Event, GateResult

EXAMPLES = Path(__file__).resolve().parents[2] / "src/tournesol/triggers/examples"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)  # Monday 4 May 2026, 10:00 in Paris
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

SIGNUP = """
code: signup
name: Signed up
trigger: {event: {type: signed_up}}
max_duration: 10d
steps:
  - {id: hello, action: {channel: email, message: hello_1}, next: pause}
  - {id: pause, wait: {duration: 2d}, next: again}
  - {id: again, action: {channel: email, message: hello_2}}
"""


def example(name: str) -> str:
    return (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")


def brand(session: Session, code: str = "SOLEIL") -> int:
    found = session.scalar(select(Brand.id).where(Brand.code == code))
    if found is not None:
        return found
    row = Brand(code=code, name=code.title())
    session.add(row)
    session.flush()
    return row.id


def source(session: Session) -> int:
    found = session.scalar(select(Source.id).where(Source.name == "shop"))
    if found is not None:
        return found
    row = Source(name="shop", kind="pos", trust_rank=1, restrictions=[])
    session.add(row)
    session.flush()
    return row.id


def person(session: Session, name: str, **values: Any) -> int:
    values.setdefault("country", "FR")
    row = Customer(first_name=name, last_name="Test", created_at=T0 - 300 * DAY, **values)
    session.add(row)
    session.flush()
    return row.id


def grant(session: Session, customer_id: int, channel: str, brand_id: int | None = None) -> None:
    consent_service.set_consent(
        session, customer_id=customer_id, channel=channel, purpose="marketing", brand_id=brand_id,
        status="granted", proof_source="web form", proof_text_version="v1",
        collected_at=T0 - 30 * DAY, actor="test",
    )  # fmt: skip


def interaction(
    session: Session, customer_id: int | None, kind: str, at: datetime, **payload: Any
) -> int:
    row = Interaction(
        customer_id=customer_id, occurred_at=at, channel="web", direction="inbound", type=kind,
        payload=payload, created_at=at,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def order(session: Session, customer_id: int, at: datetime, **attributes: Any) -> int:
    row = Transaction(
        source_id=source(session), external_id=f"o-{customer_id}-{at.isoformat()}",
        customer_id=customer_id, kind="order", channel="web", occurred_at=at,
        total_amount=42, attributes=attributes, created_at=at,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row.id


def inbox(session: Session) -> list[JourneyInbox]:
    return list(session.scalars(select(JourneyInbox).order_by(JourneyInbox.id)))


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


# --- publishing ------------------------------------------------------------------------------


def test_publishing_the_same_text_twice_keeps_one_version_and_a_change_makes_v2(
    session: Session,
) -> None:
    brand(session)
    text = example("abandoned_cart")
    v1 = journeys.publish(session, text=text, now=T0, actor="alice")
    again = journeys.publish(session, text="# a comment\n" + text, now=T0 + HOUR)
    assert again.id == v1.id and v1.version == 1 and v1.published_by == "alice"
    journey = journeys.get_by_code(session, code="abandoned_cart")
    assert journey is not None and journey.status == "active"
    assert journey.current_version_id == v1.id and journey.brand_id == brand(session)
    assert v1.definition["code"] == "abandoned_cart" and v1.source_yaml == text

    v2 = journeys.publish(session, text=text.replace("timeout: 24h", "timeout: 12h"), now=T0)
    assert v2.version == 2 and v2.digest != v1.digest
    assert journey.current_version_id == v2.id
    # the first text again: its version comes back, no third one
    back = journeys.publish(session, text=text, now=T0)
    assert back.id == v1.id and journey.current_version_id == v1.id
    assert [v.version for v in journeys.versions(session, journey_id=journey.id)] == [2, 1]
    assert [j.code for j in journeys.list_journeys(session)] == ["abandoned_cart"]


def test_a_bad_journey_or_an_unknown_brand_is_refused_with_its_path(session: Session) -> None:
    with pytest.raises(JourneyError, match=r"steps\[0\] \(wait_cart\)\.wait_event\.timeout"):
        journeys.publish(
            session, text=example("abandoned_cart").replace("timeout: 24h", "timeout: 24x"), now=T0
        )
    with pytest.raises(JourneyError, match="no brand has the code 'SOLEIL'"):
        journeys.publish(session, text=example("abandoned_cart"), now=T0)
    assert count(session, Journey) == 0


def test_pause_resume_and_archive(session: Session) -> None:
    journeys.publish(session, text=SIGNUP, now=T0)
    assert journeys.pause(session, code="signup", now=T0).status == "paused"
    assert journeys.resume(session, code="signup", now=T0).status == "active"
    assert journeys.archive(session, code="signup", now=T0).status == "archived"
    with pytest.raises(journeys.JourneyNotFound):
        journeys.pause(session, code="nope", now=T0)


def test_running_instances_stay_on_their_version(session: Session) -> None:
    v1 = journeys.publish(session, text=SIGNUP, now=T0)
    ann = person(session, "Ann")
    journeys.submit_event(
        session, customer_id=ann, type="signed_up", properties={}, occurred_at=T0,
        event_id="api:1",
    )  # fmt: skip
    journeys.process_inbox(session, now=T0)
    v2 = journeys.publish(session, text=SIGNUP.replace("hello_2", "hello_2b"), now=T0 + HOUR)
    assert v2.version == 2
    gate = RecordingGate()
    journeys.run_due(session, now=T0 + HOUR, gate=gate)
    journeys.run_due(session, now=T0 + 3 * DAY, gate=gate)
    instance = session.scalars(select(JourneyInstance)).one()
    assert instance.version_id == v1.id and instance.status == "exited"
    assert [c.send.message for c in gate.calls] == ["hello_1", "hello_2"]
    # a new entry takes the current version
    bob = person(session, "Bob")
    journeys.submit_event(
        session, customer_id=bob, type="signed_up", properties={}, occurred_at=T0 + 4 * DAY,
        event_id="api:2",
    )  # fmt: skip
    journeys.process_inbox(session, now=T0 + 4 * DAY)
    journeys.run_due(session, now=T0 + 6 * DAY + HOUR, gate=gate)
    journeys.run_due(session, now=T0 + 9 * DAY, gate=gate)
    assert [c.send.message for c in gate.calls][2:] == ["hello_1", "hello_2b"]


# --- the inbox -------------------------------------------------------------------------------


def test_the_same_event_submitted_twice_is_stored_once(session: Session) -> None:
    ann = person(session, "Ann")
    args: dict[str, Any] = dict(
        customer_id=ann, type="signed_up", properties={"plan": "gold"}, occurred_at=T0,
        event_id="api:abc",
    )  # fmt: skip
    assert journeys.submit_event(session, **args) is True
    assert journeys.submit_event(session, **args) is False
    rows = inbox(session)
    assert len(rows) == 1 and rows[0].properties == {"plan": "gold"}
    assert journeys.enter(session, code="x", customer_id=ann, now=T0, event_id="api:x")
    assert not journeys.enter(session, code="x", customer_id=ann, now=T0, event_id="api:x")
    assert inbox(session)[-1].type == journeys.START_EVENT
    assert inbox(session)[-1].properties == {"journey": "x"}


def test_collecting_starts_at_the_end_of_the_history_then_takes_what_comes(
    session: Session,
) -> None:
    b = brand(session)
    ann = person(session, "Ann", brand_id=b)
    interaction(session, ann, "cart_abandoned", T0 - HOUR, cart_id="old")
    # the first scan only places the cursors: journeys act on what happens from now on
    assert sum(journeys.collect_events(session, now=T0).values()) == 0
    assert inbox(session) == []
    cart = interaction(session, ann, "cart_abandoned", T0, cart_id="c1", total=50)
    interaction(session, None, "page_view", T0)  # nobody's: not an event
    session.add(
        Interaction(
            customer_id=ann, occurred_at=T0, channel="email", direction=INTERNAL,
            type="campaign_planned", payload={}, created_at=T0,
        )
    )  # fmt: skip
    unsubscribe = interaction(session, ann, "email_unsubscribed", T0 + HOUR, method="link")
    sold = order(session, ann, T0 + 2 * HOUR, cart_id="c1")
    new = person(session, "Bob")
    session.get(Customer, new).created_at = T0  # type: ignore[union-attr]
    counts = journeys.collect_events(session, now=T0 + 3 * HOUR)
    assert counts == Counter(
        {"interaction": 2, "transaction": 1, "customer": 1, "segment_entered": 0, "segment_left": 0}
    )
    rows = {r.event_id: r for r in inbox(session)}
    assert set(rows) == {
        f"interaction:{cart}",
        f"interaction:{unsubscribe}",
        f"transaction:{sold}",
        f"customer:{new}",
    }
    cart_row = rows[f"interaction:{cart}"]
    assert cart_row.type == "cart_abandoned" and cart_row.customer_id == ann
    assert cart_row.properties["cart_id"] == "c1" and cart_row.properties["total"] == 50
    assert cart_row.properties["channel"] == "web"
    assert rows[f"interaction:{unsubscribe}"].type == "unsubscribed"
    assert rows[f"interaction:{unsubscribe}"].properties["interaction_type"] == "email_unsubscribed"
    sale = rows[f"transaction:{sold}"]
    assert sale.type == "order_completed" and sale.properties["cart_id"] == "c1"
    assert sale.properties["total"] == 42.0 and sale.occurred_at == T0 + 2 * HOUR
    assert rows[f"customer:{new}"].type == "customer_created"
    # again: nothing twice
    assert sum(journeys.collect_events(session, now=T0 + 3 * HOUR).values()) == 0
    assert len(inbox(session)) == 4


def test_a_row_that_commits_late_below_the_cursor_is_collected_by_the_rescan(
    backend: str, fresh_databases: FreshDatabase
) -> None:
    """PostgreSQL draws an id when a row is written: a transaction that wrote before a scan
    and commits after it has a row below the cursor. The scan keeps the transactions then
    running, reads their ids again until they have ended, and only then moves on; rows by
    any number of other writers in between change nothing (a fixed margin of ids did)."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer, which commits before the next draws an id")
    engine = make_engine(fresh_databases.url(backend))
    factory = make_session_factory(engine)

    def collect() -> int:
        with unit_of_work(factory) as s:
            return journeys.collect_events(s, now=T0)["interaction"]

    try:
        with unit_of_work(factory) as s:
            ann = person(s, "Ann")
        assert collect() == 0  # the cursor starts at the end of the history
        # the writer that commits first was given its transaction id first: the late one's
        # is then past the snapshot's xmax, and out of its list of running transactions
        early = factory()
        late = factory()
        try:
            early.execute(text("SELECT pg_current_xact_id()"))
            gap = interaction(late, ann, "viewed", T0)  # written, not committed
            others = [interaction(early, ann, "viewed", T0) for _ in range(1500)]
            early.commit()
            assert collect() == 1500
            assert collect() == 0  # the late transaction still runs: its id is watched
            with unit_of_work(factory) as s:
                others.append(interaction(s, ann, "viewed", T0))
            assert collect() == 1
            assert collect() == 0
            late.commit()
        finally:
            early.close()
            late.close()
        assert collect() == 1  # the late row, 1,501 ids below the cursor
        assert collect() == 0
        with unit_of_work(factory) as s:
            cursor = s.get(JourneyCursor, "interaction")
            assert cursor is not None and cursor.position == others[-1]
            # (settled moves past the late row once no transaction running at the scan that
            # passed it runs any more: the tests' other workers may hold it back a while)
            stored = {r.event_id for r in inbox(s)}
        assert stored == {f"interaction:{i}" for i in [gap, *others]}
    finally:
        engine.dispose()


def test_on_sqlite_the_cursor_is_settled_at_once(session: Session) -> None:
    ann = person(session, "Ann")
    journeys.collect_events(session, now=T0)
    ids = [interaction(session, ann, "viewed", T0) for _ in range(3)]
    assert journeys.collect_events(session, now=T0)["interaction"] == 3
    assert journeys.collect_events(session, now=T0)["interaction"] == 0
    cursor = session.get(JourneyCursor, "interaction")
    assert cursor is not None and cursor.position == ids[-1]
    if session.get_bind().dialect.name == "sqlite":
        assert (cursor.settled, cursor.pending) == (ids[-1], None)


def test_old_history_and_backfill(session: Session) -> None:
    ann = person(session, "Ann")
    interaction(session, ann, "viewed", T0 - 30 * DAY)
    recent = interaction(session, ann, "viewed", T0 - DAY)
    counts = journeys.collect_events(session, now=T0, backfill=True)
    assert counts["interaction"] == 1  # older than max_age: never an event
    assert [r.event_id for r in inbox(session)] == [f"interaction:{recent}"]


def test_segment_entries_and_exits_become_events(session: Session) -> None:
    ann, bob = person(session, "Ann"), person(session, "Bob")
    vip = Segment(code="vip", name="VIP", definition={"all": []})
    session.add(vip)
    session.flush()
    journeys.collect_events(session, now=T0)
    stays = [SegmentMembership(segment_id=vip.id, customer_id=c, entered_at=T0) for c in (ann, bob)]
    session.add_all(stays)
    session.flush()
    counts = journeys.collect_events(session, now=T0 + HOUR)
    assert counts["segment_entered"] == 2 and counts["segment_left"] == 0
    for stay in stays:
        stay.left_at = T0 + 2 * HOUR
    session.flush()
    counts = journeys.collect_events(session, now=T0 + 3 * HOUR, limit=1)
    assert counts["segment_left"] == 1  # one per call at this limit
    counts = journeys.collect_events(session, now=T0 + 3 * HOUR, limit=1)
    assert counts["segment_left"] == 1
    assert journeys.collect_events(session, now=T0 + 3 * HOUR)["segment_left"] == 0
    rows = inbox(session)
    assert Counter(r.type for r in rows) == Counter({"segment_entered": 2, "segment_left": 2})
    assert {r.event_id for r in rows if r.type == "segment_left"} == {
        f"segment:{vip.id}:left:{s.id}" for s in stays
    }
    assert all(r.properties["segment"] == "vip" for r in rows)


# --- date rules -------------------------------------------------------------------------------


def test_birthdays_fall_on_their_day_and_29_february_on_the_28th(session: Session) -> None:
    journeys.publish(session, text=example("birthday"), now=T0)
    ann = person(session, "Ann", birth_date=date(1990, 11, 24))
    leap = person(session, "Leap", birth_date=date(2004, 2, 29))
    person(session, "Other", birth_date=date(1990, 11, 25))
    person(session, "Nobody")
    baby = person(session, "Baby", birth_date=date(2026, 11, 24))  # born that day: no birthday
    merged = person(session, "Gone", birth_date=date(1980, 11, 24), status="merged")
    now = datetime(2026, 11, 24, 0, 5, tzinfo=UTC)
    assert journeys.run_date_triggers(session, day=date(2026, 11, 24), now=now) == Counter(
        {"birthday": 1}
    )
    assert [(r.customer_id, r.event_id) for r in inbox(session)] == [
        (ann, f"date:birthday:2026-11-24:{ann}")
    ]
    assert baby and merged
    # the same day again: nothing twice
    assert journeys.run_date_triggers(session, day=date(2026, 11, 24), now=now)["birthday"] == 0
    # 29 February: the 28th in a common year, the 29th in a leap year
    found = journeys.run_date_triggers(session, day=date(2027, 2, 28), now=now)
    assert found["birthday"] == 1 and inbox(session)[-1].customer_id == leap
    assert journeys.run_date_triggers(session, day=date(2028, 2, 28), now=now)["birthday"] == 0
    assert journeys.run_date_triggers(session, day=date(2028, 2, 29), now=now)["birthday"] == 1
    # the events start the journey for these customers
    counts = journeys.process_inbox(session, now=now)
    # Leap's second birthday event finds the first instance still running (cooldown 300d)
    assert counts["entered"] == 2 and counts["refused"] == 1
    instances = session.scalars(select(JourneyInstance).order_by(JourneyInstance.id)).all()
    assert [i.customer_id for i in instances] == [ann, leap]
    first = instances[0]
    # Tuesday 24 November 2026: waits for 10:00 in Paris
    assert first.status == "waiting" and first.step == "morning"
    assert first.due_at == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_other_date_rules_find_their_customers_in_sql(session: Session) -> None:
    from tournesol.scoring.models import CustomerFeature
    from tournesol.triggers.definition import DateRule

    teen = person(session, "Teen", birth_date=date(2008, 11, 24))
    person(session, "Older", birth_date=date(2007, 11, 24))
    quiet = person(session, "Quiet")
    busy = person(session, "Busy")
    # 90 days before 24 November 2026 is 26 August; 23:30 UTC is already the 27th in Paris
    session.add_all(
        [
            CustomerFeature(customer_id=quiet, last_purchase_at=datetime(2026, 8, 26, 10, tzinfo=UTC)),
            CustomerFeature(customer_id=busy, last_purchase_at=datetime(2026, 8, 26, 23, 30, tzinfo=UTC)),
        ]
    )  # fmt: skip
    session.flush()
    day = date(2026, 11, 24)
    assert journeys.date_candidates(
        session, rule=DateRule("age", "birth_date", years=18), day=day
    ) == [teen]
    rule = DateRule("no_purchase", "last_purchase_at", days=90)
    assert journeys.date_candidates(session, rule=rule, day=day) == [quiet]
    assert journeys.date_candidates(session, rule=rule, day=date(2026, 11, 25)) == [busy]
    offset = DateRule("offset", "created_at", offset=timedelta(days=300))
    assert len(journeys.date_candidates(session, rule=offset, day=T0.date())) == 4
    assert journeys.date_candidates(session, rule=DateRule("birthday", "nope"), day=day) == []


# --- facts -----------------------------------------------------------------------------------


def test_facts_gather_attributes_segments_scores_consent_and_zone(session: Session) -> None:
    from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore

    b = brand(session)
    ann = person(session, "Ann", brand_id=b, birth_date=date(2000, 5, 5), country="RE")
    grant(session, ann, "email", b)
    vip = Segment(code="vip", name="VIP", definition={"all": []})
    gone = Segment(code="gone", name="Gone", definition={"all": []})
    session.add_all([vip, gone])
    session.flush()
    session.add_all(
        [
            SegmentMembership(segment_id=vip.id, customer_id=ann, entered_at=T0 - DAY),
            SegmentMembership(segment_id=gone.id, customer_id=ann, entered_at=T0 - 9 * DAY, left_at=T0 - DAY),
            CustomerScore(customer_id=ann, model="churn", version="1", value=0.25),
            CustomerFeature(customer_id=ann, purchase_count_365=3, purchase_amount=120),
            CustomerRfm(
                customer_id=ann, scope="all", recency_days=3, frequency=3, monetary=120,
                r_score=5, f_score=4, m_score=4, segment="champions",
            ),
        ]
    )  # fmt: skip
    session.flush()
    facts = journeys.load_facts(session, [ann, 999_999], T0)
    assert set(facts) == {ann}
    f = facts[ann]
    assert f.customer["first_name"] == "Ann" and f.customer["age"] == 25
    assert f.customer["purchase_count_365"] == 3 and f.customer["purchase_amount"] == 120.0
    assert f.customer["rfm_segment"] == "champions"
    assert f.segments == {"vip"} and f.scores == {"churn": 0.25}
    assert ("email", "marketing") in f.allowed_channels
    assert ("sms", "marketing") not in f.allowed_channels
    assert ("postal", "marketing") in f.allowed_channels  # opt-out regime
    assert f.timezone == "Indian/Reunion"


# --- graph and simulation ---------------------------------------------------------------------


def test_graph_counts_and_a_simulation_that_leaves_nothing(session: Session) -> None:
    brand(session)
    ids = [person(session, f"P{i}") for i in range(4)]
    journeys.collect_events(session, now=T0)  # the cursors, before the history below
    for n, customer in enumerate(ids):
        interaction(session, customer, "cart_abandoned", T0 + n * HOUR, cart_id=f"c{n}", total=30)
    order(session, ids[0], T0 + 2 * HOUR, cart_id="c0")  # converts
    order(session, ids[1], T0 + 3 * HOUR, cart_id="other")  # bought something else: exits
    tables = (Journey, JourneyVersion, JourneyInstance, JourneyStepLog, JourneyInbox, Interaction)
    before = {m.__tablename__: count(session, m) for m in tables}

    gate = RecordingGate({"sms": GateResult("suppressed", "no_consent")})
    report = journeys.simulate(
        session, text_or_version=example("abandoned_cart"), customers=ids,
        start=T0, end=T0 + 3 * DAY, step=HOUR, gate=gate,
    )  # fmt: skip
    assert {m.__tablename__: count(session, m) for m in tables} == before
    assert report.journey == "abandoned_cart" and report.customers == 4
    assert report.events == 6 and report.entered == 4
    assert report.steps["wait_cart"] == Counter({"event": 1, "interrupted": 1, "timeout": 2})
    assert report.goals == Counter({"purchased": 1})
    assert report.exits == Counter({"purchased": 1})
    assert report.sends == Counter({"email": 2})
    assert report.running == Counter({"waiting": 2})  # at the second wait: 48 h
    assert len(gate.calls) == 2 and all(c.send.message == "cart_reminder" for c in gate.calls)

    # the same journey for real: published, run, and counted for the graph
    journeys.publish(session, text=example("abandoned_cart"), now=T0)
    journeys.collect_events(session, now=T0 + 3 * HOUR)
    journeys.process_inbox(session, now=T0 + 3 * HOUR)
    journeys.run_due(session, now=T0 + 30 * HOUR, gate=RecordingGate())
    journey = journeys.get_by_code(session, code="abandoned_cart")
    assert journey is not None
    counts = journeys.graph_counts(session, journey_id=journey.id)
    assert counts["wait_cart"] == Counter({"event": 1, "interrupted": 1, "timeout": 2})
    assert counts["remind"] == Counter({"sent": 2})
    assert counts["wait_cart_2"] == Counter({"waiting": 2})
    assert counts["converted"] == Counter({"goal": 1})


def test_a_simulation_of_an_api_journey_takes_the_events_it_is_given(session: Session) -> None:
    text = """
code: vip_call
name: VIP call
trigger: {api: {}}
max_duration: 5d
steps:
  - {id: call, action: {channel: advisor_task, message: vip_call, queue: premium}}
"""
    ann, bob = person(session, "Ann"), person(session, "Bob")
    start = Event("e1", journeys.START_EVENT, T0 + HOUR, {"journey": "vip_call"}, ann)
    stranger = Event("e2", journeys.START_EVENT, T0 + HOUR, {"journey": "vip_call"}, 999_999)
    report = journeys.simulate(
        session, text_or_version=text, customers=[ann, bob], start=T0, end=T0 + DAY,
        step=6 * HOUR, events=[start, stranger],
    )  # fmt: skip
    assert report.events == 1 and report.entered == 1
    assert report.sends == Counter({"advisor_task": 1})
    assert report.steps == {"call": Counter({"sent": 1})}
    assert report.exits == Counter({"end": 1})
    (call,) = report.calls
    assert call.customer_id == ann and call.at == T0 + 6 * HOUR
    assert call.send.properties == {"queue": "premium"}
    assert count(session, Journey) == 0


def test_statistics_of_the_tables_the_engine_fills_are_refreshed_when_stale(
    session: Session,
) -> None:
    done = journeys.refresh_statistics(session)
    assert set(done) <= set(journeys.LOOKUP_COLUMNS)
    if session.get_bind().dialect.name == "sqlite":
        assert done == []  # SQLite's planner keeps no such statistics
