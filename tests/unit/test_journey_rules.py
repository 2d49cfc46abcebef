"""The pure journey engine with a fixed clock: every step type, the gate's three answers, exit
criteria, the maximum duration, loops and the loop guard, windows across the Paris DST changes,
date rules (29 February), re-entry policies, predicates, and the three example journeys walked
through their main paths."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tournesol.triggers.definition import (
    DateExpr,
    DateRule,
    FieldTest,
    JourneyDefinition,
    load_journey,
    parse_journey,
)
from tournesol.triggers.rules import (
    MAX_STEPS_PER_CALL,
    SEGMENT_ENTERED,
    Advance,
    Event,
    Exited,
    Facts,
    GateResult,
    GoalReached,
    InstanceState,
    PastInstance,
    Send,
    StepLogged,
    Update,
    advance,
    date_rule_due,
    evaluate,
    exit_reason,
    idempotency_key,
    instance_key_of,
    may_enter,
    resolve_date,
    shift,
    start,
    trigger_matches,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "src/tournesol/triggers/examples"
PARIS = "Europe/Paris"
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)  # Monday 4 May 2026, 10:00 in Paris
FACTS = Facts(timezone=PARIS)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def example(name: str) -> JourneyDefinition:
    return load_journey((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


def journey(steps: list[dict[str, Any]], **top: Any) -> JourneyDefinition:
    data: dict[str, Any] = {
        "code": "t",
        "name": "T",
        "trigger": {"event": {"type": "go"}},
        "max_duration": "30d",
        "steps": steps,
    }
    data.update(top)
    return parse_journey(data)


def event(
    kind: str,
    at: datetime = T0,
    *,
    id: str | None = None,
    customer: int = 7,
    **properties: Any,
) -> Event:
    return Event(id or f"{kind}-{at:%d%H%M}", kind, at, properties, customer)


def begin(
    j: JourneyDefinition,
    *,
    now: datetime = T0,
    facts: Facts = FACTS,
    trigger: Event | None = None,
    customer: int = 7,
) -> Advance:
    trigger = trigger if trigger is not None else event("go", now, id="evt-1")
    key = instance_key_of(j, trigger, customer)
    return start(j, customer_id=customer, instance_key=key, event=trigger, now=now, facts=facts)


def logs(result: Advance) -> list[tuple[str, int, str]]:
    return [(e.step, e.visit, e.outcome) for e in result.effects if isinstance(e, StepLogged)]


def only_send(result: Advance) -> Send:
    sends = [e for e in result.effects if isinstance(e, Send)]
    assert len(sends) == 1, result.effects
    return sends[0]


EMAIL = {"id": "email", "action": {"channel": "email", "message": "hello"}}
END = {"id": "end", "exit": {"reason": "finished"}}


# ----------------------------------------------------------------------------------------------
# Waits


def test_wait_duration_then_next() -> None:
    j = journey([{"id": "w", "wait": {"duration": "2h"}, "next": "end"}, END])
    first = begin(j)
    assert first.state.status == "waiting"
    assert first.state.due_at == T0 + 2 * HOUR
    assert first.effects == ()
    early = advance(j, first.state, event=None, now=T0 + HOUR, facts=FACTS)
    assert early.state is first.state and early.effects == ()
    done = advance(j, first.state, event=None, now=T0 + 2 * HOUR, facts=FACTS)
    assert logs(done) == [("w", 1, "elapsed"), ("end", 1, "exit")]
    assert done.state.status == "exited"
    assert done.state.exit_reason == "finished"
    assert done.state.ended_at == T0 + 2 * HOUR
    assert Exited("finished") in done.effects


def test_whole_days_follow_the_local_clock_across_dst() -> None:
    # Saturday 28 March 2026 10:00 in Paris (UTC+1); one day later is 10:00 UTC+2.
    saturday = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    j = journey([{"id": "w", "wait": {"duration": "1d"}, "next": "end"}, END])
    assert begin(j, now=saturday).state.due_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    j = journey([{"id": "w", "wait": {"duration": "24h"}, "next": "end"}, END])
    # 24h is a whole day too: durations are compared by value once parsed
    assert begin(j, now=saturday).state.due_at == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    j = journey([{"id": "w", "wait": {"duration": "25h"}, "next": "end"}, END])
    assert begin(j, now=saturday).state.due_at == saturday + timedelta(hours=25)
    # autumn: Saturday 24 October 10:00 (UTC+2) + 1 day = Sunday 10:00 (UTC+1)
    autumn = datetime(2026, 10, 24, 8, 0, tzinfo=UTC)
    j = journey([{"id": "w", "wait": {"duration": "1d"}, "next": "end"}, END])
    assert begin(j, now=autumn).state.due_at == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "window", "due"),
    [
        # Spring forward, Sunday 29 March 2026: 02:00-03:00 does not exist in Paris.
        (
            datetime(2026, 3, 28, 23, 30, tzinfo=UTC),
            {"days": "sun", "hours": "02:30-04:00"},
            datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 03:00 CEST, the first valid instant
        ),
        (
            datetime(2026, 3, 28, 12, 0, tzinfo=UTC),
            {"days": "sun", "hours": "09:00-19:00"},
            datetime(2026, 3, 29, 7, 0, tzinfo=UTC),  # 09:00 CEST
        ),
        (
            datetime(2026, 3, 27, 19, 0, tzinfo=UTC),  # Friday 20:00 CET
            {"days": "mon-fri", "hours": "09:00-19:00"},
            datetime(2026, 3, 30, 7, 0, tzinfo=UTC),  # Monday 09:00 CEST
        ),
        # Fall back, Sunday 25 October 2026: 02:00-03:00 happens twice.
        (
            datetime(2026, 10, 24, 12, 0, tzinfo=UTC),
            {"days": "sun", "hours": "09:00-10:00"},
            datetime(2026, 10, 25, 8, 0, tzinfo=UTC),  # 09:00 CET
        ),
        (
            datetime(2026, 10, 24, 22, 0, tzinfo=UTC),  # Sunday 00:00 CEST
            {"hours": "02:30-03:00"},
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # the first 02:30 (CEST)
        ),
        (
            datetime(2026, 10, 23, 18, 0, tzinfo=UTC),  # Friday 20:00 CEST
            {"days": "mon-fri", "hours": "09:00-19:00"},
            datetime(2026, 10, 26, 8, 0, tzinfo=UTC),  # Monday 09:00 CET
        ),
    ],
)
def test_window_waits_across_paris_dst(
    now: datetime, window: dict[str, str], due: datetime
) -> None:
    j = journey([{"id": "w", "wait": {"window": window}, "next": "end"}, END])
    first = begin(j, now=now)
    assert first.state.status == "waiting"
    assert first.state.due_at == due
    assert advance(j, first.state, event=None, now=due, facts=FACTS).state.status == "exited"


def test_window_already_open_goes_on_at_once() -> None:
    j = journey([{"id": "w", "wait": {"window": {"hours": "09:00-19:00"}}, "next": "end"}, END])
    result = begin(j)  # 10:00 in Paris
    assert logs(result) == [("w", 1, "elapsed"), ("end", 1, "exit")]


def test_window_in_the_journey_zone_not_the_customers() -> None:
    j = journey(
        [{"id": "w", "wait": {"window": {"hours": "09:00-10:00"}}, "next": "end"}, END],
        timezone="America/New_York",
    )
    # 08:00 UTC is 04:00 in New York: wait until 09:00 EDT = 13:00 UTC
    assert begin(j).state.due_at == datetime(2026, 5, 4, 13, 0, tzinfo=UTC)


def test_duration_then_window() -> None:
    j = journey(
        [
            {
                "id": "w",
                "wait": {"duration": "3d", "window": {"days": "mon-fri", "hours": "09:00-19:00"}},
                "next": "end",
            },
            END,
        ]
    )
    friday = datetime(2026, 5, 8, 8, 0, tzinfo=UTC)  # Friday 10:00, + 3 days = Monday 10:00
    assert begin(j, now=friday).state.due_at == datetime(2026, 5, 11, 8, 0, tzinfo=UTC)
    wednesday = datetime(2026, 5, 6, 8, 0, tzinfo=UTC)  # + 3 days = Saturday -> Monday 09:00
    assert begin(j, now=wednesday).state.due_at == datetime(2026, 5, 11, 7, 0, tzinfo=UTC)


def test_wait_until_a_date_expression() -> None:
    steps = [{"id": "w", "wait": {"until": "customer.contract_end - 30d"}, "next": "end"}, END]
    j = journey(steps, max_duration="365d")
    facts = Facts(customer={"contract_end": date(2026, 11, 30)}, timezone=PARIS)
    # 31 October 00:00 in Paris, after the change to winter time (UTC+1)
    assert begin(j, facts=facts).state.due_at == datetime(2026, 10, 30, 23, 0, tzinfo=UTC)
    # a wait never outlives the instance
    short = journey(steps, max_duration="30d")
    assert begin(short, facts=facts).state.due_at == T0 + 30 * DAY
    past = Facts(customer={"contract_end": "2026-05-01"}, timezone=PARIS)
    assert logs(begin(j, facts=past))[0] == ("w", 1, "elapsed")
    missing = begin(j, facts=FACTS)
    assert logs(missing) == [("w", 1, "missing_date")]
    assert missing.state.exit_reason == "missing_date"


def test_resolve_date_forms() -> None:
    values = {
        "customer": {
            "d": date(2026, 7, 14),
            "naive": datetime(2026, 7, 14, 12, 0),
            "iso": "2026-07-14T12:00:00+02:00",
            "bad": "soon",
        }
    }
    assert resolve_date(DateExpr("customer.d"), values, PARIS) == datetime(
        2026, 7, 13, 22, 0, tzinfo=UTC
    )
    assert resolve_date(DateExpr("customer.naive", HOUR), values, PARIS) == datetime(
        2026, 7, 14, 13, 0, tzinfo=UTC
    )
    assert resolve_date(DateExpr("customer.iso", -DAY), values, PARIS) == datetime(
        2026, 7, 13, 10, 0, tzinfo=UTC
    )
    assert resolve_date(DateExpr("customer.bad"), values, PARIS) is None
    assert resolve_date(DateExpr("customer.none"), values, PARIS) is None
    assert shift(T0, 30 * timedelta(minutes=1), PARIS) == T0 + timedelta(minutes=30)


# ----------------------------------------------------------------------------------------------
# Waiting for an event


CART = dict(
    trigger={"event": {"type": "cart_abandoned"}},
    instance_key="event.properties.cart_id",
    exit_when=[
        {"event": {"type": "order_completed"}, "reason": "purchased"},
        {"event": {"type": "unsubscribed"}, "reason": "unsubscribed"},
    ],
)
WAIT_ORDER = {
    "id": "wait",
    "wait_event": {
        "event": {"type": "order_completed"},
        "match": "properties.cart_id",
        "timeout": "24h",
    },
    "on_event": "won",
    "on_timeout": "end",
}
WON = {"id": "won", "goal": {"name": "purchased"}}


def cart_start(j: JourneyDefinition, cart: str = "C1") -> Advance:
    return begin(j, trigger=event("cart_abandoned", id="evt-cart", cart_id=cart))


def test_wait_event_resolved_by_the_matching_event() -> None:
    j = journey([WAIT_ORDER, END, WON], **CART)
    first = cart_start(j)
    state = first.state
    assert (state.status, state.waiting_for, state.match_value) == (
        "waiting",
        "order_completed",
        "C1",
    )
    assert state.due_at == T0 + 24 * HOUR
    order = event("order_completed", T0 + 3 * HOUR, cart_id="C1")
    won = advance(j, state, event=order, now=T0 + 3 * HOUR, facts=FACTS)
    assert logs(won) == [("wait", 1, "event"), ("won", 1, "goal")]
    assert GoalReached("purchased", "won") in won.effects
    assert (won.state.status, won.state.goals) == ("done", ("purchased",))


def test_wait_event_ignores_other_keys_and_customers_but_exit_criteria_apply() -> None:
    j = journey([WAIT_ORDER, END, WON], **CART)
    state = cart_start(j).state
    other_customer = event("order_completed", T0 + HOUR, customer=8, cart_id="C1")
    assert advance(j, state, event=other_customer, now=T0 + HOUR, facts=FACTS).state is state
    noise = event("page_viewed", T0 + HOUR)
    assert advance(j, state, event=noise, now=T0 + HOUR, facts=FACTS).state is state
    # an order for another cart is not awaited here; the journey's criterion exits
    other_cart = event("order_completed", T0 + HOUR, cart_id="C2")
    out = advance(j, state, event=other_cart, now=T0 + HOUR, facts=FACTS)
    assert logs(out) == [("wait", 1, "interrupted")]
    assert (out.state.status, out.state.exit_reason) == ("exited", "purchased")


def test_wait_event_times_out() -> None:
    j = journey([WAIT_ORDER, END, WON], **CART)
    state = cart_start(j).state
    out = advance(j, state, event=None, now=T0 + 24 * HOUR, facts=FACTS)
    assert logs(out) == [("wait", 1, "timeout"), ("end", 1, "exit")]


def test_late_event_after_the_timeout_acts_as_a_wake_up() -> None:
    j = journey([WAIT_ORDER, END, WON], trigger=CART["trigger"], instance_key=CART["instance_key"])
    state = cart_start(j).state
    late = event("order_completed", T0 + 25 * HOUR, cart_id="C1")
    out = advance(j, state, event=late, now=T0 + 25 * HOUR, facts=FACTS)
    assert logs(out) == [("wait", 1, "timeout"), ("end", 1, "exit")]
    # an event that occurred in time but arrives late still counts
    in_time = event("order_completed", T0 + 23 * HOUR, cart_id="C1")
    out = advance(j, state, event=in_time, now=T0 + 25 * HOUR, facts=FACTS)
    assert logs(out) == [("wait", 1, "event"), ("won", 1, "goal")]


def test_wait_event_where_and_customer_keyed_journeys() -> None:
    j = journey(
        [
            {
                "id": "wait",
                "wait_event": {
                    "event": {
                        "type": "order_completed",
                        "where": {"field": "event.properties.total", "gte": 50},
                    },
                    "timeout": "7d",
                },
                "on_event": "won",
                "on_timeout": "end",
            },
            END,
            WON,
        ]
    )
    state = begin(j).state
    assert state.match_value is None
    small = event("order_completed", T0 + HOUR, total=20)
    assert advance(j, state, event=small, now=T0 + HOUR, facts=FACTS).state is state
    big = event("order_completed", T0 + HOUR, total=80, cart_id="anything")
    assert advance(j, state, event=big, now=T0 + HOUR, facts=FACTS).state.status == "done"


# ----------------------------------------------------------------------------------------------
# Branches, splits, updates, goals


ROUTE = {
    "id": "route",
    "branch": [
        {"when": {"field": "customer.rfm_segment", "in": ["champions", "loyal"]}, "next": "vip"},
        {"when": {"segment": "vip"}, "next": "vip"},
        {"when": {"score": {"name": "churn", "gte": 0.7}}, "next": "save"},
        {"when": {"consent": {"channel": "sms", "purpose": "marketing"}}, "next": "sms"},
        {"when": {"field": "event.properties.total", "gt": 100}, "next": "vip"},
    ],
    "else": "end",
}
ROUTE_STEPS = [
    ROUTE,
    {"id": "vip", "exit": {"reason": "vip"}},
    {"id": "save", "exit": {"reason": "save"}},
    {"id": "sms", "exit": {"reason": "sms"}},
    END,
]


@pytest.mark.parametrize(
    ("facts", "total", "reason"),
    [
        (Facts(customer={"rfm_segment": "loyal"}), 10, "vip"),
        (Facts(segments=frozenset({"vip"})), 10, "vip"),
        (Facts(scores={"churn": 0.71}), 10, "save"),
        (Facts(scores={"churn": 0.69}), 10, "finished"),
        (Facts(allowed_channels=frozenset({("sms", "marketing")})), 10, "sms"),
        (Facts(allowed_channels=frozenset({("sms", "service")})), 10, "finished"),
        (FACTS, 150, "vip"),  # the triggering event's properties
        (FACTS, 10, "finished"),
    ],
)
def test_branch_cases_in_order(facts: Facts, total: int, reason: str) -> None:
    j = journey(ROUTE_STEPS)
    result = begin(j, facts=facts, trigger=event("go", id="e", total=total))
    assert result.state.exit_reason == reason
    assert logs(result)[0][2] == "branch"


def test_branch_without_else_falls_off() -> None:
    j = journey(
        [{"id": "b", "branch": [{"when": {"segment": "vip"}, "next": "x"}]}, END | {"id": "x"}]
    )
    result = begin(j)
    assert result.state.exit_reason == "end"
    assert result.effects[-1] == Exited("end")


SPLIT = {
    "id": "ab",
    "split": {
        "salt": "ab-2026",
        "variants": [
            {"name": "A", "weight": 45, "next": "a"},
            {"name": "B", "weight": 45, "next": "b"},
            {"name": "holdout", "weight": 10, "holdout": True, "next": "end"},
        ],
    },
}
SPLIT_STEPS = [
    SPLIT,
    {"id": "a", "exit": {"reason": "A"}},
    {"id": "b", "exit": {"reason": "B"}},
    END,
]


def test_split_is_sticky_and_follows_the_weights() -> None:
    j = journey(SPLIT_STEPS)
    counts = {"A": 0, "B": 0, "finished": 0}
    for customer in range(1, 3001):
        first = begin(j, customer=customer, trigger=event("go", id="e", customer=customer))
        again = begin(j, customer=customer, trigger=event("go", id="f", customer=customer))
        assert first.state.variant == again.state.variant
        counts[first.state.exit_reason or ""] += 1
    assert 1200 < counts["A"] < 1500 and 1200 < counts["B"] < 1500
    assert 200 < counts["finished"] < 400


def test_split_logs_holdout_and_keeps_the_drawn_variant() -> None:
    j = journey(SPLIT_STEPS)
    holdout = next(
        c
        for c in range(1, 500)
        if begin(j, customer=c, trigger=event("go", customer=c)).state.variant["ab"] == "holdout"
    )
    result = begin(j, customer=holdout, trigger=event("go", customer=holdout))
    assert logs(result)[0] == ("ab", 1, "holdout")
    assert result.effects[0] == StepLogged("ab", 1, "holdout", "holdout")


def test_update_and_goal_with_next() -> None:
    j = journey(
        [
            {"id": "tag", "update": {"tag": "vip"}, "next": "set"},
            {"id": "set", "update": {"set": {"attribute": "tier", "value": "gold"}}, "next": "s"},
            {"id": "s", "update": {"score": {"name": "engagement", "value": 1.5}}, "next": "g"},
            {"id": "g", "goal": {"name": "tagged"}, "next": "end"},
            END,
        ]
    )
    result = begin(j)
    updates = [e for e in result.effects if isinstance(e, Update)]
    assert updates == [
        Update("tag", 1, "tag", "vip", None),
        Update("set", 1, "attribute", "tier", "gold"),
        Update("s", 1, "score", "engagement", 1.5),
    ]
    assert result.state.goals == ("tagged",)
    assert (result.state.status, result.state.exit_reason) == ("exited", "finished")


# ----------------------------------------------------------------------------------------------
# Actions and the gate


ACTION_STEPS = [
    {"id": "email", "action": {"channel": "email", "message": "hello"}, "next": "end"},
    END,
]


def action_journey(**action: Any) -> JourneyDefinition:
    spec = {"channel": "email", "message": "hello", **action}
    return journey([{"id": "email", "action": spec, "next": "end"}, END])


def test_action_emits_one_send_and_waits_for_the_gate() -> None:
    j = action_journey(purpose="service")
    first = begin(j)
    send = only_send(first)
    assert (send.step, send.visit, send.channel, send.message, send.purpose) == (
        "email",
        1,
        "email",
        "hello",
        "service",
    )
    assert send.idempotency_key == idempotency_key("t", j.digest(), "7:7:evt-1", "email", 1)
    assert first.state.status == "awaiting_gate"
    sent = advance(j, first.state, event=GateResult("sent"), now=T0, facts=FACTS)
    assert logs(sent) == [("email", 1, "sent"), ("end", 1, "exit")]
    # a stale gate answer changes nothing
    assert advance(j, sent.state, event=GateResult("sent"), now=T0, facts=FACTS).effects == ()


def test_suppressed_continue_exit_and_wait() -> None:
    go_on = action_journey(on_suppressed="continue")
    state = begin(go_on).state
    out = advance(go_on, state, event=GateResult("suppressed", "no_consent"), now=T0, facts=FACTS)
    assert out.effects[0] == StepLogged("email", 1, "suppressed", "no_consent")
    assert out.state.exit_reason == "finished"

    stop = action_journey()  # on_suppressed defaults to exit
    out = advance(
        stop, begin(stop).state, event=GateResult("suppressed", "pressure_cap"), now=T0, facts=FACTS
    )
    assert out.state.exit_reason == "suppressed:pressure_cap"

    retry = action_journey(on_suppressed="wait", retry_after="2d")
    first = begin(retry)
    out = advance(
        retry, first.state, event=GateResult("suppressed", "pressure_gap"), now=T0, facts=FACTS
    )
    assert (out.state.status, out.state.step, out.state.visit) == ("waiting", "email", 2)
    assert out.state.due_at == T0 + 2 * DAY
    assert advance(retry, out.state, event=None, now=T0 + DAY, facts=FACTS).effects == ()
    again = advance(retry, out.state, event=None, now=T0 + 2 * DAY, facts=FACTS)
    second = only_send(again)
    assert second.visit == 2
    assert second.idempotency_key != only_send(first).idempotency_key


def test_deferred_resends_the_same_key_when_due() -> None:
    j = action_journey()
    first = begin(j)
    key = only_send(first).idempotency_key
    later = T0 + 5 * HOUR
    out = advance(j, first.state, event=GateResult("deferred", None, later), now=T0, facts=FACTS)
    assert out.effects == ()  # the visit goes on
    assert (out.state.status, out.state.due_at, out.state.visit) == ("waiting", later, 1)
    assert advance(j, out.state, event=None, now=later - HOUR, facts=FACTS).effects == ()
    again = advance(j, out.state, event=None, now=later, facts=FACTS)
    assert only_send(again).idempotency_key == key
    assert again.state.status == "awaiting_gate"
    # without a date, an hour
    out = advance(j, first.state, event=GateResult("deferred"), now=T0, facts=FACTS)
    assert out.state.due_at == T0 + HOUR


def test_a_wake_while_awaiting_the_gate_emits_the_same_send() -> None:
    j = action_journey()
    first = begin(j)
    again = advance(j, first.state, event=None, now=T0 + timedelta(minutes=5), facts=FACTS)
    assert only_send(again) == only_send(first)
    # an event that is no exit criterion leaves the message to the worker's wake-up
    noise = event("page_viewed", T0 + HOUR)
    assert advance(j, first.state, event=noise, now=T0 + HOUR, facts=FACTS).state is first.state


def test_webhook_and_advisor_properties() -> None:
    j = journey(
        [
            {
                "id": "hook",
                "action": {"channel": "webhook", "url": "https://crm.example/hook"},
                "next": "task",
            },
            {
                "id": "task",
                "action": {
                    "channel": "advisor_task",
                    "message": "call",
                    "queue": "premium",
                    "properties": {"priority": "high"},
                },
            },
        ]
    )
    first = begin(j)
    assert dict(only_send(first).properties) == {"url": "https://crm.example/hook"}
    second = advance(j, first.state, event=GateResult("sent"), now=T0, facts=FACTS)
    assert dict(only_send(second).properties) == {"priority": "high", "queue": "premium"}
    last = advance(j, second.state, event=GateResult("sent"), now=T0, facts=FACTS)
    assert last.state.exit_reason == "end"


# ----------------------------------------------------------------------------------------------
# Exit criteria, maximum duration, loops


def test_exit_criteria_interrupt_waits_and_the_gate() -> None:
    j = journey(
        [{"id": "w", "wait": {"duration": "2d"}, "next": "email"}, *ACTION_STEPS],
        exit_when=[
            {
                "event": {
                    "type": "unsubscribed",
                    "where": {"field": "event.properties.channel", "eq": "email"},
                },
                "reason": "unsubscribed",
            }
        ],
    )
    waiting = begin(j).state
    sms_only = event("unsubscribed", T0 + HOUR, channel="sms")
    assert advance(j, waiting, event=sms_only, now=T0 + HOUR, facts=FACTS).state is waiting
    unsub = event("unsubscribed", T0 + HOUR, channel="email")
    out = advance(j, waiting, event=unsub, now=T0 + HOUR, facts=FACTS)
    assert logs(out) == [("w", 1, "interrupted")]
    assert out.effects[-1] == Exited("unsubscribed")
    awaiting = advance(j, waiting, event=None, now=T0 + 2 * DAY, facts=FACTS).state
    assert awaiting.status == "awaiting_gate"
    out = advance(j, awaiting, event=unsub, now=T0 + 2 * DAY, facts=FACTS)
    assert out.state.exit_reason == "unsubscribed"
    assert (
        advance(j, out.state, event=GateResult("sent"), now=T0 + 2 * DAY, facts=FACTS).effects == ()
    )


def test_max_duration_ends_any_wait() -> None:
    j = journey([{"id": "w", "wait": {"duration": "30d"}, "next": "end"}, END], max_duration="7d")
    first = begin(j)
    assert first.state.due_at == first.state.expires_at == T0 + 7 * DAY
    out = advance(j, first.state, event=None, now=T0 + 7 * DAY, facts=FACTS)
    assert logs(out) == [("w", 1, "interrupted")]
    assert (out.state.status, out.state.exit_reason) == ("exited", "max_duration")
    # a late gate answer: the send is logged, then the instance ends
    a = action_journey()
    state = begin(a).state
    late = advance(a, state, event=GateResult("sent"), now=T0 + 40 * DAY, facts=FACTS)
    assert logs(late) == [("email", 1, "sent")]
    assert late.state.exit_reason == "max_duration"
    deferred = advance(a, state, event=GateResult("deferred"), now=T0 + 40 * DAY, facts=FACTS)
    assert logs(deferred) == [("email", 1, "interrupted")]
    assert deferred.state.exit_reason == "max_duration"


def test_a_loop_increments_visits_and_keys() -> None:
    j = journey(
        [
            {"id": "w", "wait": {"duration": "7d"}, "next": "email"},
            {"id": "email", "action": {"channel": "email", "message": "news"}, "next": "again"},
            {
                "id": "again",
                "branch": [{"when": {"field": "instance.visits.email", "lt": 3}, "next": "w"}],
                "else": "end",
            },
            END,
        ],
        max_duration="60d",
    )
    state = begin(j).state
    keys = []
    now = T0
    for _ in range(3):
        now += 7 * DAY
        woken = advance(j, state, event=None, now=now, facts=FACTS)
        keys.append(only_send(woken).idempotency_key)
        state = advance(j, woken.state, event=GateResult("sent"), now=now, facts=FACTS).state
    assert len(set(keys)) == 3
    assert (state.status, state.exit_reason, dict(state.visits)) == (
        "exited",
        "finished",
        {"w": 3, "email": 3, "again": 3, "end": 1},
    )


def test_loop_guard_stops_a_loop_whose_wait_never_waits() -> None:
    j = journey(
        [
            {"id": "w", "wait": {"window": {"hours": "00:00-24:00"}}, "next": "tag"},
            {"id": "tag", "update": {"tag": "x"}, "next": "b"},
            {
                "id": "b",
                "branch": [{"when": {"field": "instance.visits.w", "lt": 10000}, "next": "w"}],
                "else": "end",
            },
            END,
        ]
    )
    result = begin(j)
    assert result.state.exit_reason == "loop_guard"
    assert len(logs(result)) == MAX_STEPS_PER_CALL


def test_events_of_another_customer_and_ended_instances_change_nothing() -> None:
    j = action_journey()
    state = begin(j).state
    stranger = event("unsubscribed", customer=99)
    assert advance(j, state, event=stranger, now=T0, facts=FACTS).state is state
    ended = advance(j, state, event=GateResult("sent"), now=T0, facts=FACTS).state
    assert advance(j, ended, event=None, now=T0 + 99 * DAY, facts=FACTS).state is ended


def test_state_json_round_trip() -> None:
    j = example("welcome")
    state = begin(j, trigger=event("customer_created", id="c1")).state
    assert InstanceState.from_json(state.to_json()) == state
    with pytest.raises(ValueError, match="aware"):
        begin(j, now=datetime(2026, 5, 4, 8, 0))


# ----------------------------------------------------------------------------------------------
# Predicates


@pytest.mark.parametrize(
    ("field", "ops", "expected"),
    [
        ("customer.age", (("gte", 18), ("lt", 30)), True),
        ("customer.age", (("eq", 25.0),), True),
        ("customer.age", (("eq", "25"),), False),  # no coercion between numbers and text
        ("customer.city", (("in", ("Lyon", "Paris")),), True),
        ("customer.city", (("not_in", ("Lyon",)),), True),
        ("customer.city", (("contains", "ar"),), True),
        ("customer.tags", (("contains", "vip"),), True),
        ("customer.city", (("gt", "Lyon"),), True),
        ("customer.born", (("lt", "2000-01-01"),), True),
        ("customer.seen", (("gte", "2026-05-04"),), True),  # an instant against a day
        ("customer.seen", (("eq", "2026-05-04"),), True),
        ("customer.seen", (("gt", "2026-05-04T09:00:00+02:00"),), True),
        ("customer.optin", (("eq", True),), True),
        ("customer.optin", (("eq", 1),), False),
        ("customer.missing", (("exists", False),), True),
        ("customer.missing", (("ne", "x"),), True),
        ("customer.missing", (("eq", "x"),), False),
        ("customer.missing", (("not_in", ("x",)),), False),
        ("customer.missing", (("lt", 3),), False),
        ("customer.none", (("exists", True),), False),
        ("customer.city", (("exists", True),), True),
        ("customer.age", (("gt", "old"),), False),  # incomparable
    ],
)
def test_field_operators(field: str, ops: tuple[tuple[str, Any], ...], expected: bool) -> None:
    customer: Mapping[str, Any] = {
        "age": 25,
        "city": "Paris",
        "tags": ["new", "vip"],
        "born": date(1990, 5, 1),
        "seen": datetime(2026, 5, 4, 8, 0, tzinfo=UTC),
        "optin": True,
        "none": None,
    }
    assert evaluate(FieldTest(field, ops), {"customer": customer}) is expected


# ----------------------------------------------------------------------------------------------
# Date rules


@pytest.mark.parametrize(
    ("rule", "value", "on", "due"),
    [
        (DateRule("birthday", "birth_date"), date(1990, 6, 15), date(2026, 6, 15), True),
        (DateRule("birthday", "birth_date"), date(1990, 6, 15), date(2026, 6, 16), False),
        (DateRule("birthday", "birth_date"), date(2026, 6, 15), date(2026, 6, 15), False),
        (DateRule("birthday", "birth_date"), date(2004, 2, 29), date(2026, 2, 28), True),
        (DateRule("birthday", "birth_date"), date(2004, 2, 29), date(2026, 3, 1), False),
        (DateRule("birthday", "birth_date"), date(2004, 2, 29), date(2028, 2, 28), False),
        (DateRule("birthday", "birth_date"), date(2004, 2, 29), date(2028, 2, 29), True),
        (DateRule("birthday", "birth_date"), "1990-06-15", date(2026, 6, 15), True),
        (DateRule("birthday", "birth_date"), None, date(2026, 6, 15), False),
        (DateRule("age", "birth_date", years=18), date(2008, 6, 15), date(2026, 6, 15), True),
        (DateRule("age", "birth_date", years=18), date(2007, 6, 15), date(2026, 6, 15), False),
        (DateRule("age", "birth_date", years=18), date(2008, 2, 29), date(2026, 2, 28), True),
        (
            DateRule("offset", "contract_end", offset=-30 * DAY),
            date(2026, 12, 31),
            date(2026, 12, 1),
            True,
        ),
        (
            DateRule("offset", "contract_end", offset=7 * DAY),
            date(2026, 12, 31),
            date(2027, 1, 7),
            True,
        ),
        (
            DateRule("no_purchase", "last_purchase_at", days=90),
            # 23:30 UTC on 1 February is 2 February in Paris
            datetime(2026, 2, 1, 23, 30, tzinfo=UTC),
            date(2026, 5, 3),
            True,
        ),
        (
            DateRule("no_purchase", "last_purchase_at", days=90),
            datetime(2026, 2, 1, 23, 30, tzinfo=UTC),
            date(2026, 5, 2),
            False,
        ),
    ],
)
def test_date_rules(rule: DateRule, value: Any, on: date, due: bool) -> None:
    assert date_rule_due(rule, customer={rule.field: value}, on=on, tz=PARIS) is due


# ----------------------------------------------------------------------------------------------
# Entry


def past(status: str, ended: datetime | None, key: str = "7") -> PastInstance:
    return PastInstance(status, ended, key)


@pytest.mark.parametrize(
    ("reentry", "previous", "allowed"),
    [
        ("never", [], True),
        ("never", [past("exited", T0 - 99 * DAY)], False),
        ("never", [past("exited", T0 - 99 * DAY, key="other")], True),
        ("after_exit", [past("waiting", None)], False),
        ("after_exit", [past("done", T0 - HOUR)], True),
        ({"cooldown": "30d"}, [past("done", T0 - 29 * DAY)], False),
        ({"cooldown": "30d"}, [past("done", T0 - 30 * DAY)], True),
        ({"cooldown": "30d"}, [past("done", T0 - 40 * DAY), past("exited", T0 - DAY)], False),
        ({"cooldown": "30d"}, [past("waiting", None)], False),
        ({"cooldown": "30d"}, [], True),
        ("always", [past("waiting", None)], True),
    ],
)
def test_reentry_policies(reentry: Any, previous: list[PastInstance], allowed: bool) -> None:
    j = journey([END], reentry=reentry)
    assert may_enter(j, previous=previous, instance_key="7", now=T0) is allowed


def test_triggers_keys_and_exit_reasons() -> None:
    cart = example("abandoned_cart")
    assert trigger_matches(cart, event("cart_abandoned", cart_id="C1", total=30))
    assert not trigger_matches(cart, event("cart_abandoned", cart_id="C1", total=10))
    assert not trigger_matches(cart, event("cart_abandoned", total=30))  # no key
    assert not trigger_matches(cart, event("order_completed", cart_id="C1", total=30))
    assert instance_key_of(cart, event("cart_abandoned", cart_id=123), 7) == "123"
    with pytest.raises(ValueError, match="cart_id"):
        instance_key_of(cart, event("cart_abandoned"), 7)
    assert instance_key_of(example("welcome"), None, 7) == "7"
    assert exit_reason(cart, event("unsubscribed")) == "unsubscribed"
    assert exit_reason(cart, event("page_viewed")) is None
    seg = journey([END], trigger={"segment": {"code": "churn_risk"}})
    assert trigger_matches(seg, event(SEGMENT_ENTERED, segment="churn_risk"))
    assert not trigger_matches(seg, event("segment_left", segment="churn_risk"))
    assert not trigger_matches(example("birthday"), event("birthday"))


def test_idempotency_keys() -> None:
    key = idempotency_key("welcome", "v1", "i", "email", 1)
    assert key == idempotency_key("welcome", "v1", "i", "email", 1)
    others = {
        idempotency_key("welcome", "v2", "i", "email", 1),
        idempotency_key("welcome", "v1", "j", "email", 1),
        idempotency_key("welcome", "v1", "i", "sms", 1),
        idempotency_key("welcome", "v1", "i", "email", 2),
        idempotency_key("welcom", "v1", "i", "email", 1),
    }
    assert key not in others and len(others) == 5
    assert len(key) == 36


# ----------------------------------------------------------------------------------------------
# The example journeys


def test_abandoned_cart_order_before_24h_is_the_goal() -> None:
    j = example("abandoned_cart")
    first = cart_start(j)
    order = event("order_completed", T0 + 20 * HOUR, cart_id="C1")
    out = advance(j, first.state, event=order, now=T0 + 20 * HOUR, facts=FACTS)
    assert (out.state.status, out.state.goals) == ("done", ("purchased",))
    assert not any(isinstance(e, Send) for e in out.effects)


def test_abandoned_cart_timeout_reminds_then_sms_in_the_window() -> None:
    j = example("abandoned_cart")
    facts = Facts(allowed_channels=frozenset({("sms", "marketing")}), timezone=PARIS)
    state = cart_start(j).state
    remind = advance(j, state, event=None, now=T0 + 24 * HOUR, facts=facts)
    send = only_send(remind)
    assert (send.step, send.channel, send.message) == ("remind", "email", "cart_reminder")
    state = advance(
        j, remind.state, event=GateResult("sent"), now=T0 + 24 * HOUR, facts=facts
    ).state
    assert (state.step, state.due_at) == ("wait_cart_2", T0 + 72 * HOUR)
    # Thursday 7 May 08:00 UTC = 10:00 in Paris: inside mon-sat 10:00-19:00
    sms = advance(j, state, event=None, now=T0 + 72 * HOUR, facts=facts)
    assert only_send(sms).channel == "sms"
    assert logs(sms) == [
        ("wait_cart_2", 1, "timeout"),
        ("sms_allowed", 1, "branch"),
        ("sms_window", 1, "elapsed"),
    ]
    # without SMS consent, the journey ends
    quiet = advance(j, state, event=None, now=T0 + 72 * HOUR, facts=FACTS)
    assert quiet.state.exit_reason == "finished"


def test_abandoned_cart_unsubscribe_during_a_wait_exits() -> None:
    j = example("abandoned_cart")
    state = cart_start(j).state
    out = advance(j, state, event=event("unsubscribed", T0 + HOUR), now=T0 + HOUR, facts=FACTS)
    assert (out.state.status, out.state.exit_reason) == ("exited", "unsubscribed")
    after = advance(j, out.state, event=None, now=T0 + 24 * HOUR, facts=FACTS)
    assert after.effects == ()


def test_welcome_routes_by_value() -> None:
    j = example("welcome")
    created = event("customer_created", id="c1")
    first = begin(j, trigger=created)
    assert only_send(first).message == "welcome_1"
    state = advance(j, first.state, event=GateResult("sent"), now=T0, facts=FACTS).state
    # Monday 10:00 + 3 days = Thursday 10:00, inside the window
    assert state.due_at == T0 + 3 * DAY
    champion = Facts(customer={"rfm_segment": "champions"}, timezone=PARIS)
    advisor = advance(j, state, event=None, now=T0 + 3 * DAY, facts=champion)
    assert (only_send(advisor).channel, only_send(advisor).properties["queue"]) == (
        "advisor_task",
        "premium",
    )
    other = advance(j, state, event=None, now=T0 + 3 * DAY, facts=FACTS)
    variant = other.state.variant["ab"]
    if variant == "holdout":
        assert other.state.step == "wait_order" and not any(
            isinstance(e, Send) for e in other.effects
        )
    else:
        assert only_send(other).message == f"welcome_2{variant.lower()}"


def test_birthday_is_due_then_greets_in_the_morning() -> None:
    j = example("birthday")
    rule = j.trigger
    assert isinstance(rule, DateRule)
    facts = Facts(
        customer={"birth_date": date(1992, 2, 29)},
        allowed_channels=frozenset({("email", "marketing")}),
        timezone=PARIS,
    )
    assert date_rule_due(rule, customer=facts.customer, on=date(2027, 2, 28), tz=PARIS)
    dawn = datetime(2027, 2, 28, 5, 0, tzinfo=UTC)  # 06:00 in Paris
    first = start(j, customer_id=7, instance_key="7", event=None, now=dawn, facts=facts)
    assert first.state.due_at == datetime(2027, 2, 28, 9, 0, tzinfo=UTC)  # 10:00 in Paris
    assert first.state.instance_id == "7:7:2027-02-28T05:00:00+00:00"
    out = advance(j, first.state, event=None, now=first.state.due_at, facts=facts)
    assert only_send(out).message == "birthday_email"
    letter = advance(j, first.state, event=None, now=first.state.due_at, facts=FACTS)
    assert only_send(letter).channel == "postal"
