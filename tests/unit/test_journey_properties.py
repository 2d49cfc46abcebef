"""Property tests of the step function over random event streams, clock jumps and gate answers,
for the three example journeys and for random journeys: no message is sent twice (an
idempotency key is never sent twice nor emitted again once sent), every instance has ended
once it is advanced at or after its maximum duration, an exit criterion stops everything
(nothing is emitted after the instance ended), each step visit is logged once, states survive a
JSON round trip, and the same inputs always give the same outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from tournesol.triggers.definition import (
    EventSpec,
    JourneyDefinition,
    JourneyError,
    WaitEventStep,
    load_journey,
    parse_journey,
)
from tournesol.triggers.rules import (
    FINAL,
    Advance,
    Event,
    Facts,
    GateResult,
    InstanceState,
    Send,
    StepLogged,
    advance,
    exit_reason,
    instance_key_of,
    start,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "src/tournesol/triggers/examples"
T0 = datetime(2026, 3, 27, 9, 0, tzinfo=UTC)  # a Friday, two days before the spring change
JOURNEYS = {
    name: load_journey((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))
    for name in ("welcome", "abandoned_cart", "birthday")
}
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ("tick", minutes): time passes, then a wake-up; ("wake",): a wake-up at the same time (early
# or repeated); ("event", type index, same key?, minutes between occurrence and processing)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(1, 4 * 24 * 60)),
        st.tuples(st.just("event"), st.integers(0, 30), st.booleans(), st.integers(0, 12 * 60)),
        st.tuples(st.just("wake")),
    ),
    min_size=3,
    max_size=40,
)
GATES = st.lists(
    st.tuples(
        st.sampled_from(["sent", "sent", "suppressed", "deferred", "lost"]), st.integers(1, 3000)
    ),
    min_size=1,
    max_size=8,
)
FACTS = st.builds(
    lambda vip, sms, email, rfm, value, zone: Facts(
        customer={
            "rfm_segment": rfm,
            "birth_date": date(1992, 3, 27),
            "contract_end": date(2026, 4, 20),
        },
        segments=frozenset({"vip"} if vip else ()),
        scores={"value": value, "churn": value},
        allowed_channels=frozenset(
            ({("sms", "marketing")} if sms else set())
            | ({("email", "marketing")} if email else set())
        ),
        timezone=zone,
    ),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["champions", "loyal", "hibernating"]),
    st.floats(0, 1),
    st.sampled_from(["Europe/Paris", "America/New_York", "Asia/Tokyo"]),
)


@dataclass
class Trace:
    results: list[Advance] = field(default_factory=list)
    sends: list[tuple[Send, str]] = field(default_factory=list)  # with the gate's answer
    exits_checked: int = 0


def event_types(journey: JourneyDefinition) -> list[str]:
    types = ["page_viewed", "email_opened", "product_viewed"]
    if isinstance(journey.trigger, EventSpec):
        types.append(journey.trigger.type)
    types += [c.event.type for c in journey.exit_when]
    types += [s.event.type for s in journey.steps if isinstance(s, WaitEventStep)]
    return types


def simulate(
    journey: JourneyDefinition,
    ops: list[tuple[Any, ...]],
    gates: list[tuple[str, int]],
    facts: Facts,
    customer: int = 7,
) -> Trace:
    trace = Trace()
    now = T0
    answers = iter(gates * 200)
    trigger = None
    if isinstance(journey.trigger, EventSpec):
        trigger = Event(
            "start", journey.trigger.type, now, {"cart_id": "C1", "total": 80}, customer
        )
    key = instance_key_of(journey, trigger, customer)

    def record(result: Advance) -> Advance:
        trace.results.append(result)
        return result

    def settle(result: Advance) -> Advance:
        while result.send is not None and result.state.status == "awaiting_gate":
            outcome, minutes = next(answers)
            if outcome == "lost":  # the worker died before the gate answered: a wake re-drives it
                trace.sends.append((result.send, outcome))
                return result
            answer = GateResult(
                outcome,  # type: ignore[arg-type]
                "no_consent" if outcome == "suppressed" else None,
                now + timedelta(minutes=minutes) if outcome == "deferred" else None,
            )
            trace.sends.append((result.send, outcome))
            result = record(advance(journey, result.state, event=answer, now=now, facts=facts))
        return result

    result = settle(
        record(
            start(
                journey, customer_id=customer, instance_key=key, event=trigger, now=now, facts=facts
            )
        )
    )
    types = event_types(journey)
    for i, op in enumerate(ops):
        if op[0] == "tick":  # time passes; the worker wakes the instance if it is due
            now += timedelta(minutes=op[1])
        before = result.state
        if op[0] in ("tick", "wake"):
            result = settle(record(advance(journey, before, event=None, now=now, facts=facts)))
            continue
        kind = types[op[1] % len(types)]
        props = {"cart_id": "C1" if op[2] else "C2", "total": 80, "channel": "email"}
        incoming = Event(f"e{i}", kind, now - timedelta(minutes=op[3]), props, customer)
        result = settle(record(advance(journey, before, event=incoming, now=now, facts=facts)))
        if before.status not in FINAL and exit_reason(journey, incoming) is not None:
            # an exit criterion ends the instance, unless the event resolved the very
            # wait_event step that awaited it
            resolved = before.status == "waiting" and before.waiting_for == kind
            assert result.state.status in FINAL or resolved, (kind, before, result)
            trace.exits_checked += 1
    # the worker wakes the instance at its deadline at the latest
    last = max(now, result.state.expires_at)
    result = record(advance(journey, result.state, event=None, now=last, facts=facts))
    assert result.state.status in FINAL, result.state
    assert result.send is None
    return trace


def check(trace: Trace) -> None:
    final = trace.results[-1].state
    event(f"ended: {final.status} {final.exit_reason or ''}".strip())
    event(f"sends: {min(len(trace.sends), 4)}")
    event(f"gate answers: {sorted({o for _, o in trace.sends})}")
    sent: set[str] = set()
    by_visit: dict[tuple[str, int], str] = {}
    for send, outcome in trace.sends:
        # a key is never emitted again once sent: never twice
        assert send.idempotency_key not in sent
        if outcome == "sent":
            sent.add(send.idempotency_key)
        # one key per step visit, different visits different keys
        assert (
            by_visit.setdefault((send.step, send.visit), send.idempotency_key)
            == send.idempotency_key
        )
    assert len(set(by_visit.values())) == len(by_visit)
    logged: set[tuple[str, int]] = set()
    ended = False
    for result in trace.results:
        if ended:
            assert result.effects == (), "an ended instance changed"
        for effect in result.effects:
            if isinstance(effect, StepLogged):
                visit = (effect.step, effect.visit)
                assert visit not in logged, f"{visit} logged twice"
                logged.add(visit)
        state = result.state
        ended = state.status in FINAL
        if not ended:
            assert state.due_at is not None and state.due_at <= state.expires_at
        assert InstanceState.from_json(state.to_json()) == state


@SETTINGS
@given(
    name=st.sampled_from(sorted(JOURNEYS)),
    ops=OPS,
    gates=GATES,
    facts=FACTS,
)
def test_examples_keep_the_invariants(
    name: str, ops: list[tuple[Any, ...]], gates: list[tuple[str, int]], facts: Facts
) -> None:
    journey = JOURNEYS[name]
    trace = simulate(journey, ops, gates, facts)
    check(trace)
    assert simulate(journey, ops, gates, facts) == trace  # deterministic


# ----------------------------------------------------------------------------------------------
# Random journeys: a chain s0 -> s1 -> ... so every step is reachable, plus random side links
# (forward, to the end, or back to a wait step).

KINDS = ["wait", "wait_event", "branch", "split", "action", "action", "update", "goal"]
PREDICATES = [
    {"segment": "vip"},
    {"consent": {"channel": "sms"}},
    {"field": "customer.rfm_segment", "eq": "champions"},
    {"field": "instance.visits.s0", "lt": 3},
    {"score": {"name": "churn", "gte": 0.5}},
]


@st.composite
def random_journey(draw: st.DrawFn) -> JourneyDefinition:
    n = draw(st.integers(2, 8))
    ids = [f"s{i}" for i in range(n)]
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(n - 1)]
    kinds.append(draw(st.sampled_from([*KINDS, "exit", "exit"])))
    steps: list[dict[str, Any]] = []
    for i, kind in enumerate(kinds):
        waits = [ids[k] for k in range(i + 1) if kinds[k] in ("wait", "wait_event")]
        chain = ids[i + 1] if i + 1 < n else None
        options: list[str | None] = [None, *ids[i + 1 :], *waits]

        def side(options: list[str | None] = options) -> str | None:
            return draw(st.sampled_from(options))

        step: dict[str, Any] = {"id": ids[i]}
        if kind == "wait":
            step["wait"] = draw(
                st.sampled_from(
                    [
                        {"duration": "30m"},
                        {"duration": "1d"},
                        {"duration": "3d"},
                        {"window": {"days": "mon-fri", "hours": "09:00-12:00"}},
                        {"duration": "2h", "window": {"hours": "18:00-20:00"}},
                        {"until": "customer.contract_end - 1d"},
                    ]
                )
            )
            step["next"] = chain if chain else side()
        elif kind == "wait_event":
            step["wait_event"] = {
                "event": {"type": draw(st.sampled_from(["order_completed", "clicked"]))},
                "timeout": draw(st.sampled_from(["1h", "1d", "5d"])),
            }
            step["on_event"] = chain if chain else side()
            step["on_timeout"] = side()
        elif kind == "branch":
            step["branch"] = [{"when": draw(st.sampled_from(PREDICATES)), "next": chain or side()}]
            step["else"] = side()
        elif kind == "split":
            step["split"] = {
                "variants": [
                    {"name": "A", "weight": draw(st.integers(1, 9)), "next": chain or side()},
                    {"name": "B", "weight": draw(st.integers(1, 9)), "next": side()},
                    {"name": "H", "weight": 1, "holdout": True, "next": side()},
                ]
            }
        elif kind == "action":
            step["action"] = {
                "channel": draw(st.sampled_from(["email", "sms", "postal", "advisor_task"])),
                "message": "m",
                "on_suppressed": draw(st.sampled_from(["continue", "exit", "wait"])),
            }
            step["next"] = chain if chain else side()
        elif kind == "update":
            step["update"] = {"tag": "t"}
            step["next"] = chain if chain else side()
        elif kind == "goal":
            step["goal"] = {"name": f"g{i}"}
            step["next"] = chain if chain else side()
        else:
            step["exit"] = {"reason": "finished"}
        steps.append({k: v for k, v in step.items() if v is not None or k == "id"})
    data = {
        "code": "random",
        "name": "Random",
        "trigger": {"event": {"type": "go"}},
        "max_duration": draw(st.sampled_from(["2d", "7d", "20d"])),
        "exit_when": [{"event": {"type": "unsubscribed"}}],
        "steps": steps,
    }
    try:
        return parse_journey(data)
    except JourneyError:
        reject()


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(journey=random_journey(), ops=OPS, gates=GATES, facts=FACTS)
def test_random_journeys_keep_the_invariants(
    journey: JourneyDefinition,
    ops: list[tuple[Any, ...]],
    gates: list[tuple[str, int]],
    facts: Facts,
) -> None:
    trace = simulate(journey, ops, gates, facts)
    check(trace)
    assert simulate(journey, ops, gates, facts) == trace
    # the definition survives its canonical form
    assert load_journey(journey.to_yaml()) == journey


def test_the_simulation_meets_exit_criteria() -> None:
    # the property above is not vacuous: an unsubscription in the middle of the cart journey
    journey = JOURNEYS["abandoned_cart"]
    ops: list[tuple[Any, ...]] = [("tick", 60), ("event", 5, True, 0), ("wake",)]
    assert event_types(journey)[5] == "unsubscribed"
    trace = simulate(journey, ops, [("sent", 1)], Facts())
    assert trace.exits_checked == 1
    assert trace.results[-1].state.exit_reason == "unsubscribed"
