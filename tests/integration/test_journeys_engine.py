"""The engine loop over stored instances, on SQLite and PostgreSQL, with a recording gate:
the abandoned cart end to end (order in time, reminder exactly once, unsubscription during a
wait), re-entry policies, deferrals and replays that never change an idempotency key, the
step log's unique key, updates, paused journeys, and two workers claiming at once
(PostgreSQL, ``SKIP LOCKED``)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tests.integration.test_journeys_store import (
    DAY,
    HOUR,
    SIGNUP,
    T0,
    brand,
    example,
    person,
)
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.interactions.models import INTERNAL, Interaction
from tournesol.scoring.models import CustomerScore
from tournesol.triggers import service as journeys
from tournesol.triggers.gate import RecordingGate
from tournesol.triggers.models import JourneyInstance, JourneyStepLog
from tournesol.triggers.rules import GateResult, Send

MINUTE = timedelta(minutes=1)


def event(
    session: Session, customer: int, kind: str, at: datetime, event_id: str, **properties: Any
) -> bool:
    return journeys.submit_event(
        session, customer_id=customer, type=kind, properties=properties, occurred_at=at,
        event_id=event_id, received_at=at,
    )  # fmt: skip


def instances(session: Session, customer: int | None = None) -> list[JourneyInstance]:
    query = select(JourneyInstance).order_by(JourneyInstance.id)
    if customer is not None:
        query = query.where(JourneyInstance.customer_id == customer)
    session.flush()
    return list(session.scalars(query))


def logs(session: Session, instance: JourneyInstance) -> list[tuple[str, int, str, str | None]]:
    rows = session.execute(
        select(JourneyStepLog.step, JourneyStepLog.visit, JourneyStepLog.outcome, JourneyStepLog.detail)
        .where(JourneyStepLog.instance_id == instance.id)
        .order_by(JourneyStepLog.id)
    )  # fmt: skip
    return [tuple(r) for r in rows]  # type: ignore[misc]


def timeline(session: Session, customer: int) -> list[tuple[str, str, str | None]]:
    rows = session.execute(
        select(Interaction.type, Interaction.channel, Interaction.outcome)
        .where(Interaction.customer_id == customer, Interaction.type.like("journey_%"))
        .order_by(Interaction.id)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_abandoned_cart_end_to_end(session: Session) -> None:
    brand(session)
    journeys.publish(session, text=example("abandoned_cart"), now=T0)
    ann, bob, cid = person(session, "Ann"), person(session, "Bob"), person(session, "Cid")
    event(session, ann, "cart_abandoned", T0, "api:ann-cart", cart_id="a1", total=80)
    event(session, bob, "cart_abandoned", T0, "api:bob-cart", cart_id="b1", total=35)
    event(session, cid, "cart_abandoned", T0, "api:cid-cart", cart_id="c1", total=5)  # too small
    counts = journeys.process_inbox(session, now=T0 + MINUTE)
    assert counts["events"] == 3 and counts["entered"] == 2
    (a,) = instances(session, ann)
    assert (a.status, a.step, a.waiting_for, a.match_value) == (
        "waiting", "wait_cart", "order_completed", "a1"
    )  # fmt: skip
    assert a.due_at == T0 + MINUTE + DAY and a.instance_key == "a1"
    assert a.expires_at == T0 + MINUTE + 7 * DAY
    assert instances(session, cid) == []

    # Ann orders this very cart within the day: the goal
    event(session, ann, "order_completed", T0 + 2 * HOUR, "api:ann-order", cart_id="a1")
    journeys.process_inbox(session, now=T0 + 2 * HOUR)
    session.refresh(a)
    assert a.status == "done" and a.ended_at == T0 + 2 * HOUR and a.due_at is None
    assert logs(session, a) == [
        ("wait_cart", 1, "event", "api:ann-order"),
        ("converted", 1, "goal", "purchased"),
    ]
    assert timeline(session, ann) == [
        ("journey_entered", "internal", "a1"),
        ("journey_goal", "internal", "purchased"),
    ]
    row = session.scalars(select(Interaction).where(Interaction.customer_id == ann)).first()
    assert row is not None and row.direction == INTERNAL
    assert row.campaign_code == "journey:abandoned_cart" and row.subject == "Panier abandonné"

    # Bob never orders: the reminder after 24 hours, exactly once
    gate = RecordingGate()
    assert journeys.run_due(session, now=T0 + 23 * HOUR, gate=gate)["claimed"] == 0
    counts = journeys.run_due(session, now=T0 + 25 * HOUR, gate=gate, worker="w1")
    assert counts["claimed"] == 1 and counts["sent"] == 1
    assert journeys.run_due(session, now=T0 + 25 * HOUR, gate=gate)["claimed"] == 0
    assert journeys.run_due(session, now=T0 + 25 * HOUR, gate=gate)["claimed"] == 0
    (call,) = gate.calls
    assert (call.customer_id, call.send.channel, call.send.message) == (
        bob,
        "email",
        "cart_reminder",
    )
    assert call.send.idempotency_key.startswith("jrn-")
    (b,) = instances(session, bob)
    assert (b.status, b.step, b.claimed_by) == ("waiting", "wait_cart_2", "w1")
    assert b.due_at == T0 + 25 * HOUR + 2 * DAY
    assert ("journey_step", "email", "sent") in timeline(session, bob)

    # Bob unsubscribes during the second wait: out at once, nothing more goes out
    event(session, bob, "unsubscribed", T0 + 26 * HOUR, "api:bob-unsub", channel="email")
    journeys.process_inbox(session, now=T0 + 26 * HOUR)
    session.refresh(b)
    assert (b.status, b.exit_reason, b.due_at) == ("exited", "unsubscribed", None)
    assert logs(session, b)[-1] == ("wait_cart_2", 1, "interrupted", "unsubscribed")
    assert timeline(session, bob)[-1] == ("journey_exited", "internal", "unsubscribed")
    assert journeys.run_due(session, now=T0 + 10 * DAY, gate=gate)["claimed"] == 0
    assert len(gate.calls) == 1


def test_reentry_policies_are_respected(session: Session) -> None:
    brand(session)
    journeys.publish(session, text=example("abandoned_cart"), now=T0)
    ann = person(session, "Ann")
    event(session, ann, "cart_abandoned", T0, "e1", cart_id="c1", total=50)
    event(session, ann, "cart_abandoned", T0 + MINUTE, "e2", cart_id="c1", total=50)  # same cart
    event(session, ann, "cart_abandoned", T0 + 2 * MINUTE, "e3", cart_id="c2", total=50)
    counts = journeys.process_inbox(session, now=T0 + 3 * MINUTE)
    assert counts["entered"] == 2 and counts["refused"] == 1
    first, second = instances(session, ann)
    assert (first.instance_key, second.instance_key) == ("c1", "c2")
    # the order of cart c1: its instance reaches the goal; the other exits (bought)
    event(session, ann, "order_completed", T0 + HOUR, "e4", cart_id="c1")
    journeys.process_inbox(session, now=T0 + HOUR)
    session.refresh(first)
    session.refresh(second)
    assert (first.status, second.status, second.exit_reason) == ("done", "exited", "purchased")
    # after_exit: the same cart may come back once its instance ended
    event(session, ann, "cart_abandoned", T0 + 2 * HOUR, "e5", cart_id="c1", total=50)
    assert journeys.process_inbox(session, now=T0 + 2 * HOUR)["entered"] == 1

    # never: a key seen once never enters again, even after the end
    text = example("abandoned_cart").replace("reentry: after_exit", "reentry: never")
    journeys.publish(session, text=text, now=T0 + 3 * HOUR)
    event(session, ann, "order_completed", T0 + 3 * HOUR, "e6", cart_id="c1")
    event(session, ann, "cart_abandoned", T0 + 4 * HOUR, "e7", cart_id="c1", total=50)
    counts = journeys.process_inbox(session, now=T0 + 4 * HOUR)
    assert counts["entered"] == 0 and counts["refused"] == 1


def test_reentry_always_lets_instances_with_the_same_key_run_side_by_side(
    session: Session,
) -> None:
    journeys.publish(
        session, text=SIGNUP.replace("max_duration", "reentry: always\nmax_duration"), now=T0
    )
    ann = person(session, "Ann")
    event(session, ann, "signed_up", T0, "s1")
    event(session, ann, "signed_up", T0, "s2")
    assert journeys.process_inbox(session, now=T0)["entered"] == 2
    one, two = instances(session, ann)
    assert one.concurrent and two.concurrent and one.instance_key == two.instance_key
    gate = RecordingGate()
    journeys.run_due(session, now=T0, gate=gate)
    keys = [c.send.idempotency_key for c in gate.calls]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_a_deferred_send_comes_back_with_the_same_key_and_a_replay_logs_nothing_twice(
    session: Session,
) -> None:
    journeys.publish(session, text=SIGNUP, now=T0)
    ann = person(session, "Ann")
    event(session, ann, "signed_up", T0, "s1")
    journeys.process_inbox(session, now=T0)
    answers = iter([GateResult("deferred", until=T0 + 2 * HOUR), GateResult("sent")])

    def policy(send: Send, instance: JourneyInstance, now: datetime) -> GateResult:
        return next(answers, GateResult("sent"))

    gate = RecordingGate(policy)
    counts = journeys.run_due(session, now=T0, gate=gate)
    assert counts["deferred"] == 1
    (inst,) = instances(session, ann)
    assert (inst.status, inst.step, inst.due_at) == ("waiting", "hello", T0 + 2 * HOUR)
    assert ("journey_step", "email", "deferred") in timeline(session, ann)
    assert journeys.run_due(session, now=T0 + HOUR, gate=gate)["claimed"] == 0
    snapshot = {
        name: getattr(inst, name) for name in ("state", "status", "step", "due_at", "ended_at")
    }
    assert journeys.run_due(session, now=T0 + 2 * HOUR, gate=gate)["sent"] == 1
    first, second = gate.calls
    assert first.send.idempotency_key == second.send.idempotency_key
    before = logs(session, inst)
    assert before == [("hello", 1, "sent", None)]

    # a replay of the same visit (the state as it was before the send) writes no second log
    for name, value in snapshot.items():
        setattr(inst, name, value)
    session.flush()
    assert journeys.run_due(session, now=T0 + 2 * HOUR, gate=gate)["sent"] == 1
    assert gate.calls[-1].send.idempotency_key == first.send.idempotency_key
    assert logs(session, inst) == before
    total = session.scalar(
        select(func.count())
        .select_from(JourneyStepLog)
        .where(JourneyStepLog.instance_id == inst.id)
    )
    assert total == 1


def test_suppressed_sends_follow_the_step_and_updates_are_recorded(session: Session) -> None:
    text = """
code: tagger
name: Tagger
trigger: {event: {type: signed_up}}
max_duration: 10d
steps:
  - {id: tag, update: {tag: newcomer}, next: score}
  - {id: score, update: {score: {name: engagement, value: 0.75}}, next: sms}
  - {id: sms, action: {channel: sms, message: hi, on_suppressed: wait, retry_after: 1d}, next: done}
  - {id: done, exit: {reason: finished}}
"""
    journeys.publish(session, text=text, now=T0)
    ann = person(session, "Ann")
    event(session, ann, "signed_up", T0, "s1")
    journeys.process_inbox(session, now=T0)
    (inst,) = instances(session, ann)
    assert logs(session, inst) == [
        ("tag", 1, "updated", "tag newcomer"),
        ("score", 1, "updated", "score engagement = 0.75"),
    ]
    score = session.get(CustomerScore, (ann, "engagement"))
    assert score is not None and score.value == 0.75 and score.version == "journey:tagger"
    assert ("journey_step", "internal", "updated:tag newcomer") in timeline(session, ann)
    gate = RecordingGate({"sms": GateResult("suppressed", "no_consent")})
    journeys.run_due(session, now=T0, gate=gate)
    session.refresh(inst)
    assert (inst.status, inst.step, inst.due_at) == ("waiting", "sms", T0 + DAY)
    assert ("journey_step", "sms", "suppressed:no_consent") in timeline(session, ann)
    journeys.run_due(session, now=T0 + DAY, gate=RecordingGate())
    session.refresh(inst)
    assert (inst.status, inst.exit_reason) == ("exited", "finished")
    keys = [c.send.idempotency_key for c in gate.calls]
    assert len(keys) == 1
    assert [r[:3] for r in logs(session, inst)][2:] == [
        ("sms", 1, "suppressed"), ("sms", 2, "sent"), ("done", 1, "exit")
    ]  # fmt: skip


def test_a_paused_journey_neither_enters_nor_sends_until_resumed(session: Session) -> None:
    journeys.publish(session, text=SIGNUP, now=T0)
    ann, bob = person(session, "Ann"), person(session, "Bob")
    event(session, ann, "signed_up", T0, "s1")
    journeys.process_inbox(session, now=T0)
    journeys.pause(session, code="signup", now=T0)
    event(session, bob, "signed_up", T0, "s2")
    assert journeys.process_inbox(session, now=T0)["entered"] == 0
    gate = RecordingGate()
    assert journeys.run_due(session, now=T0 + HOUR, gate=gate)["claimed"] == 0
    journeys.resume(session, code="signup", now=T0 + HOUR)
    assert journeys.run_due(session, now=T0 + HOUR, gate=gate)["sent"] == 1
    assert [c.customer_id for c in gate.calls] == [ann]


def test_an_event_before_the_instance_began_does_not_concern_it(session: Session) -> None:
    brand(session)
    journeys.publish(session, text=example("abandoned_cart"), now=T0)
    ann = person(session, "Ann")
    event(session, ann, "cart_abandoned", T0, "cart", cart_id="c1", total=50)
    journeys.process_inbox(session, now=T0)
    # an order of yesterday, collected late: not a purchase after this cart
    event(session, ann, "order_completed", T0 - DAY, "old-order", cart_id="c0")
    journeys.process_inbox(session, now=T0 + HOUR)
    (inst,) = instances(session, ann)
    assert inst.status == "waiting"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_workers_claiming_at_once_never_get_the_same_instance(
    backend: str, fresh_databases: FreshDatabase
) -> None:
    engine = make_engine(fresh_databases.url(backend))
    factory = make_session_factory(engine)

    def signups(prefix: str, count: int, at: datetime) -> None:
        with unit_of_work(factory) as s:
            for i in range(count):
                customer = person(s, f"{prefix}{i}")
                event(s, customer, "signed_up", at, f"{prefix}:{i}")
            journeys.process_inbox(s, now=at, limit=1000)

    try:
        with unit_of_work(factory) as s:
            journeys.publish(s, text=SIGNUP, now=T0)
        signups("a", 40, T0)
        # the first worker holds its claims (not committed yet): the second skips them
        first, second = factory(), factory()
        one, two = RecordingGate(), RecordingGate()
        try:
            got_one = journeys.run_due(first, now=T0, gate=one, worker="one", limit=15)
            got_two = journeys.run_due(second, now=T0, gate=two, worker="two", limit=100)
            first.commit()
            second.commit()
        finally:
            first.close()
            second.close()
        assert (got_one["claimed"], got_two["claimed"]) == (15, 25)
        mine = {c.instance_id for c in one.calls}
        theirs = {c.instance_id for c in two.calls}
        assert not mine & theirs and len(mine | theirs) == 40

        # and in two threads at once, small batches, each committed
        signups("b", 60, T0 + HOUR)
        gates = {"x": RecordingGate(), "y": RecordingGate()}
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def work(name: str) -> None:
            try:
                barrier.wait()
                while True:
                    with unit_of_work(factory) as s:
                        got = journeys.run_due(
                            s, now=T0 + HOUR, gate=gates[name], worker=name, limit=4
                        )
                    if not got["claimed"]:
                        return
            except BaseException as error:  # reported by the test
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in gates]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        calls = [c for g in gates.values() for c in g.calls]
        keys = Counter(c.send.idempotency_key for c in calls)
        assert len(keys) == 60 and set(keys.values()) == {1}
        with factory() as s:
            claimed_by = Counter(
                s.scalars(
                    select(JourneyInstance.claimed_by).where(
                        JourneyInstance.entered_at == T0 + HOUR
                    )
                )
            )
        assert sum(claimed_by.values()) == 60 and set(claimed_by) <= {"x", "y"}
    finally:
        engine.dispose()


def test_with_a_gate_the_inbox_pass_sends_at_once_and_the_instance_is_written_once(
    session: Session,
) -> None:
    """process_inbox(gate=...): an event enters, its first action goes through the gate in
    the same pass (all the pass's sends in one call), and the instance is stored as it
    stands at the end, waiting for the next step; run_due then has nothing to do until the
    wait ends."""
    journeys.publish(session, text=SIGNUP, now=T0)
    people = [person(session, f"P{i}") for i in range(3)]
    for i, customer in enumerate(people):
        event(session, customer, "signed_up", T0, f"api:s{i}")
    event(session, people[0], "signed_up", T0, "api:s0")  # the same event id: stored once
    calls: list[int] = []

    class Counting(RecordingGate):
        def send_many(self, session: Session, asks: Any, *, now: datetime) -> Any:
            calls.append(len(asks))
            return super().send_many(session, asks, now=now)

    gate = Counting({"email": GateResult("sent")})
    counts = journeys.process_inbox(session, now=T0 + MINUTE, gate=gate)
    assert (counts["events"], counts["entered"], counts["sent"]) == (3, 3, 3)
    assert calls == [3]  # one call of the gate for the pass
    rows = instances(session)
    assert [(i.status, i.step, i.due_at) for i in rows] == [
        ("waiting", "pause", T0 + MINUTE + 2 * DAY)
    ] * 3
    assert logs(session, rows[0]) == [("hello", 1, "sent", None)]
    assert timeline(session, people[0]) == [
        ("journey_entered", "internal", str(people[0])),
        ("journey_step", "email", "sent"),
    ]
    assert journeys.run_due(session, now=T0 + HOUR, gate=gate)["claimed"] == 0
    counts = journeys.run_due(session, now=T0 + 3 * DAY, gate=gate)
    assert (counts["claimed"], counts["sent"]) == (3, 3)
    assert calls == [3, 3]
    assert {c.send.message for c in gate.calls} == {"hello_1", "hello_2"}
    assert len(gate.sent_keys) == 6


def test_without_a_gate_the_inbox_pass_leaves_the_send_to_run_due(session: Session) -> None:
    journeys.publish(session, text=SIGNUP, now=T0)
    ann = person(session, "Ann")
    event(session, ann, "signed_up", T0, "api:ann")
    assert journeys.process_inbox(session, now=T0)["entered"] == 1
    (inst,) = instances(session, ann)
    assert (inst.status, inst.step, inst.due_at) == ("awaiting_gate", "hello", T0)
    gate = RecordingGate()
    assert journeys.run_due(session, now=T0, gate=gate)["sent"] == 1
    session.refresh(inst)
    assert (inst.status, inst.step) == ("waiting", "pause")


def test_update_steps_keep_tags_and_values_on_the_customer_and_branches_read_them(
    session: Session,
) -> None:
    text = """
code: tiers
name: Tiers
trigger: {event: {type: signed_up}}
reentry: always
max_duration: 10d
steps:
  - id: route
    branch:
      - when: {field: customer.tags, contains: newcomer}
        next: known
    else: first
  - {id: first, update: {tag: newcomer}, next: tier}
  - {id: tier, update: {set: {attribute: loyalty_tier, value: silver}}, next: done}
  - {id: known, update: {set: {attribute: loyalty_tier, value: null}}, next: again}
  - {id: again, update: {tag: returning}, next: done}
  - {id: done, exit: {reason: finished}}
"""
    from tournesol.customers.models import CustomerAttribute, CustomerTag

    journeys.publish(session, text=text, now=T0)
    ann = person(session, "Ann")
    event(session, ann, "signed_up", T0, "s1")
    journeys.process_inbox(session, now=T0)

    def tags() -> list[tuple[str, str]]:
        rows = session.execute(
            select(CustomerTag.tag, CustomerTag.source)
            .where(CustomerTag.customer_id == ann)
            .order_by(CustomerTag.tag)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def values() -> dict[str, Any]:
        rows = session.execute(
            select(CustomerAttribute.name, CustomerAttribute.value).where(
                CustomerAttribute.customer_id == ann
            )
        )
        return dict(rows.all())  # type: ignore[arg-type]

    assert tags() == [("newcomer", "journey:tiers")]
    assert values() == {"loyalty_tier": "silver"}
    facts = journeys.load_facts(session, [ann], T0)[ann]
    assert facts.customer["tags"] == ["newcomer"]
    assert facts.customer["attributes"] == {"loyalty_tier": "silver"}

    # the second time, the branch reads the tag: the value is cleared, another tag added
    event(session, ann, "signed_up", T0 + HOUR, "s2")
    journeys.process_inbox(session, now=T0 + HOUR)
    assert tags() == [("newcomer", "journey:tiers"), ("returning", "journey:tiers")]
    assert values() == {}
