"""Journey definitions without a database: the three example journeys load and round-trip,
the canonical form and its digest ignore layout, and every kind of mistake is refused with a
message naming the field (and its YAML line)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from tournesol.triggers.definition import (
    ACTION_CHANNELS,
    DATE_RULES,
    ON_SUPPRESSED,
    OPERATORS,
    STEP_KINDS,
    ActionStep,
    ConsentAllowed,
    DateRule,
    EventSpec,
    FieldTest,
    JourneyDefinition,
    JourneyError,
    SegmentTrigger,
    WaitEventStep,
    WaitStep,
    load_journey,
    parse_journey,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "src/tournesol/triggers/examples"
DOC = ROOT / "docs/journeys.md"


def example(name: str) -> JourneyDefinition:
    return load_journey((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["welcome", "abandoned_cart", "birthday"])
def test_examples_load_and_round_trip(name: str) -> None:
    journey = example(name)
    assert journey.code == name
    again = load_journey(journey.to_yaml())
    assert again == journey
    assert again.digest() == journey.digest()
    assert parse_journey(journey.to_dict()) == journey
    assert len(journey.digest()) == 64


def test_abandoned_cart_is_read_as_written() -> None:
    journey = example("abandoned_cart")
    assert journey.start == "wait_cart"
    assert journey.key_property == "cart_id"
    assert journey.max_duration == timedelta(days=7)
    assert journey.trigger == EventSpec(
        "cart_abandoned", FieldTest("event.properties.total", (("gte", 20),))
    )
    wait = journey.step("wait_cart")
    assert isinstance(wait, WaitEventStep)
    assert (wait.match, wait.timeout, wait.on_event, wait.on_timeout) == (
        "properties.cart_id",
        timedelta(hours=24),
        "converted",
        "remind",
    )
    remind = journey.step("remind")
    assert isinstance(remind, ActionStep)
    assert (remind.channel, remind.on_suppressed, remind.purpose) == (
        "email",
        "continue",
        "marketing",
    )
    window = journey.step("sms_window")
    assert isinstance(window, WaitStep) and window.window is not None
    assert window.window.days == "mon,tue,wed,thu,fri,sat"  # the range mon-sat, spelt out
    assert [c.reason for c in journey.exit_when] == ["purchased", "unsubscribed"]
    assert ("wait_cart", "converted", "on_event") in journey.edges()
    assert ("sms_allowed", "done", "else") in journey.edges()


def test_birthday_and_segment_triggers() -> None:
    assert example("birthday").trigger == DateRule("birthday", "birth_date")
    journey = load_journey(
        """
code: churn
name: Churn
trigger: {segment: {code: churn_risk, on: leave}}
max_duration: 1d
steps: [{id: bye, exit: {}}]
"""
    )
    # "on" stays a key (YAML 1.1 would read it as true), and the exit reason defaults.
    assert journey.trigger == SegmentTrigger("churn_risk", "leave")
    assert journey.to_dict()["steps"] == [{"id": "bye", "exit": {"reason": "finished"}}]


def test_digest_ignores_layout_comments_and_defaults() -> None:
    one = load_journey(
        "code: a\nname: A\ntrigger: {api: {}}\nmax_duration: 48h\n"
        "steps: [{id: x, action: {channel: sms, message: m}}]\n"
    )
    two = load_journey(
        """
# the same journey, spelt differently
code: a
name: A
trigger:
  api: {}
instance_key: customer
reentry: after_exit
timezone: customer
max_duration: 2d
start: x
steps:
  - id: x
    action: {channel: sms, message: m, purpose: marketing, on_suppressed: exit}
"""
    )
    assert one == two and one.digest() == two.digest()
    three = load_journey(one.to_yaml().replace("message: m", "message: n"))
    assert three.digest() != one.digest()


def test_predicates_are_parsed_into_the_model() -> None:
    journey = example("welcome")
    route = journey.step("route")
    assert route.kind == "branch"
    assert journey.step("advisor") == ActionStep(
        "advisor",
        "advisor_task",
        "welcome_call",
        next="wait_order",
        purpose="service",
        queue="premium",
        properties=(("priority", "high"),),
    )
    birthday = example("birthday")
    channel = birthday.step("channel")
    assert channel.kind == "branch"
    assert ConsentAllowed("sms", "marketing") in [c.when for c in channel.cases]  # type: ignore[union-attr]


def test_dates_in_predicates_become_iso_text() -> None:
    journey = load_journey(
        """
code: d
name: D
trigger: {event: {type: t, where: {field: event.occurred_at, gte: 2026-01-01}}}
max_duration: 1d
steps: [{id: x, exit: {}}]
"""
    )
    assert journey.trigger == EventSpec(
        "t", FieldTest("event.occurred_at", (("gte", "2026-01-01"),))
    )


# ----------------------------------------------------------------------------------------------
# Refusals: each names the field and, from YAML, its line.

BASE = """\
code: cart
name: Cart
trigger:
  event: {type: cart_abandoned, where: {field: event.properties.total, gte: 20}}
instance_key: event.properties.cart_id
max_duration: 7d
steps:
  - id: wait_cart
    wait_event: {event: {type: order_completed}, match: properties.cart_id, timeout: 24h}
    on_event: thanks
    on_timeout: remind
  - id: remind
    action: {channel: email, message: cart_reminder}
    next: thanks
  - {id: thanks, goal: {name: purchased}}
"""


def test_base_is_valid() -> None:
    assert load_journey(BASE).code == "cart"


# (old text, new text, the start of the message, line or None)
EDITS = [
    (
        "timeout: 24h",
        "timeout: 24x",
        "steps[0] (wait_cart).wait_event.timeout: '24x' is not a duration such as 7d, 48h or 30m",
        9,
    ),
    ("name: Cart\n", "name: Cart\ncolour: red\n", "colour: unknown key", 3),
    ("code: cart", "code: Cart!", "code: 'Cart!' is not valid", 1),
    ("name: Cart\n", "", "journey: 'name' is missing", None),
    (
        "next: thanks",
        "next: thank",
        "steps[1] (remind).next: no step has the id 'thank' (did you mean 'thanks'?)",
        14,
    ),
    (
        "- id: remind",
        "- id: wait_cart",
        "steps[1].id: 'wait_cart' is already the id of steps[0]",
        12,
    ),
    (
        "  - {id: thanks",
        "  - {id: orphan, exit: {}}\n  - {id: thanks",
        "steps[2] (orphan): no path leads here from the start step 'wait_cart'",
        15,
    ),
    (
        "next: thanks",
        "next: remind",
        "steps[1] (remind): the loop remind -> remind has no wait or wait_event step",
        12,
    ),
    ("channel: email", "channel: fax", "steps[1] (remind).action.channel: 'fax' is not one of", 13),
    (
        "message: cart_reminder}",
        "message: cart_reminder, on_suppressed: retry}",
        "steps[1] (remind).action.on_suppressed: 'retry' is not one of continue, exit, wait",
        13,
    ),
    (
        "match: properties.cart_id, ",
        "",
        "steps[0] (wait_cart).wait_event: 'match' is missing",
        9,
    ),
    ("gte: 20}", "gtx: 20}", "trigger.event.where.gtx: unknown operator", 4),
    (
        "field: event.properties.total",
        "field: customer.age",
        "trigger.event.where.field: 'customer.age' is not a field here: start it with event.",
        4,
    ),
    (
        "trigger:\n",
        "trigger:\n  api: {}\n",
        "trigger: expected exactly one of event, segment, date, api",
        3,
    ),
    (
        "max_duration: 7d",
        "max_duration: 7d\nreentry: sometimes",
        "reentry: 'sometimes' is not one of",
        7,
    ),
    (
        "max_duration: 7d",
        "max_duration: 7d\ntimezone: Mars/Olympus",
        "timezone: 'Mars/Olympus' is neither 'customer' nor a time zone",
        7,
    ),
    (
        "  - {id: thanks, goal: {name: purchased}}",
        "  - {id: thanks, goal: {name: purchased}, exit: {}}",
        "steps[2] (thanks): a step has exactly one of wait, wait_event",
        15,
    ),
    (
        "  - {id: thanks, goal: {name: purchased}}",
        "  - {id: thanks, goal: {name: purchased}, colour: red}",
        "steps[2] (thanks).colour: unknown key",
        15,
    ),
    ("max_duration: 7d", "max_duration: -7d", "max_duration: '-7d' is not a duration", 6),
    (
        "max_duration: 7d",
        "max_duration: 7d\nmax_duration: 8d",
        "max_duration: this key appears twice",
        7,
    ),
    ("event: {type: order_completed}", "event: {type: order_completed", "not valid YAML", 10),
    (
        "instance_key: event.properties.cart_id",
        "instance_key: cart_id",
        "instance_key: 'cart_id' is neither 'customer' nor event.properties.<name>",
        5,
    ),
    (
        "message: cart_reminder}",
        "message: cart_reminder, url: 'https://x.example'}",
        "steps[1] (remind).action.url: only a webhook action has a url",
        13,
    ),
    (
        "channel: email, message: cart_reminder}",
        "channel: webhook}",
        "steps[1] (remind).action: 'url' is missing",
        13,
    ),
    (
        "message: cart_reminder}",
        "message: cart_reminder, retry_after: 1d}",
        "steps[1] (remind).action.retry_after: only with on_suppressed: wait",
        13,
    ),
]


@pytest.mark.parametrize(("old", "new", "message", "line"), EDITS)
def test_bad_definitions_name_the_field(old: str, new: str, message: str, line: int | None) -> None:
    assert old in BASE
    with pytest.raises(JourneyError) as caught:
        load_journey(BASE.replace(old, new, 1))
    text = str(caught.value)
    assert text.startswith(message), text
    assert caught.value.line == line, text
    if line is not None:
        assert text.endswith(f"(line {line})")


def journey_text(steps: str, *, head: str = "") -> str:
    return (
        "code: j\nname: J\n"
        + (head or "trigger: {event: {type: signed_up}}\n")
        + "max_duration: 30d\nsteps:\n"
        + steps
    )


# (steps or whole head, the start of the message)
WHOLE = [
    (
        journey_text(
            "  - {id: w, wait: {duration: 1d}, next: a}\n"
            "  - {id: a, action: {channel: email, message: m}, next: w}\n"
        ),
        "steps[0] (w): no path from this step ever ends",
    ),
    (
        journey_text(
            "  - id: ab\n    split:\n      variants:\n"
            "        - {name: A, weight: 50, next: x}\n        - {name: A, weight: 0, next: x}\n"
            "  - {id: x, exit: {}}\n"
        ),
        "steps[0] (ab).split.variants[1].name: the variant name 'A' is used twice",
    ),
    (
        journey_text(
            "  - id: ab\n    split:\n      variants:\n"
            "        - {name: A, weight: 50, next: x}\n        - {name: B, weight: 0, next: x}\n"
            "  - {id: x, exit: {}}\n"
        ),
        "steps[0] (ab).split.variants[1].weight: 0 is not a positive number",
    ),
    (
        journey_text("  - {id: w, wait: {window: {hours: '9-12'}}}\n"),
        "steps[0] (w).wait.window.hours: '9-12' is not a span such as 09:00-12:00",
    ),
    (
        journey_text("  - {id: w, wait: {window: {days: mon-funday}}}\n"),
        "steps[0] (w).wait.window.days: 'mon-funday' is not a day",
    ),
    (
        journey_text("  - {id: w, wait: {until: customer.contract_end - 30x}}\n"),
        "steps[0] (w).wait.until: 'customer.contract_end - 30x' is not a date expression",
    ),
    (
        journey_text("  - {id: w, wait: {until: contract_end - 30d}}\n"),
        "steps[0] (w).wait.until: 'contract_end' is not a field here: start it with event.",
    ),
    (
        journey_text("  - {id: w, wait: {duration: 1d, until: customer.x}}\n"),
        "steps[0] (w).wait: a wait has a duration or an until date, not both",
    ),
    (
        journey_text(
            "  - {id: x, exit: {}}\n",
            head="trigger: {event: {type: t}}\nexit_when:\n  - {event: {type: u, where: {segment: vip}}}\n",
        ),
        "exit_when[0].event.where.segment: segment cannot be tested here",
    ),
    (
        journey_text(
            "  - {id: x, exit: {}}\n",
            head="trigger: {date: {rule: birthday}}\ninstance_key: event.properties.id\n",
        ),
        "instance_key: only a journey started by an event can be keyed by its property",
    ),
    (
        journey_text(
            "  - {id: w, wait_event: {event: {type: o}, match: properties.id, timeout: 1d}}\n"
        ),
        "steps[0] (w).wait_event.match: only a journey keyed by an event property",
    ),
    (
        journey_text("  - {id: x, exit: {}}\n", head="trigger: {date: {rule: age}}\n"),
        "trigger.date: 'years' is missing",
    ),
    (
        journey_text(
            "  - {id: x, exit: {}}\n",
            head="trigger: {date: {rule: offset, field: contract_end, offset: -36h}}\n",
        ),
        "trigger.date.offset: '-36h': a date offset is a whole number of days",
    ),
    (
        journey_text(
            "  - {id: b, branch: [{when: {field: instance.colour, eq: 1}, next: x}]}\n"
            "  - {id: x, exit: {}}\n"
        ),
        "steps[0] (b).branch[0].when.field: 'instance.colour': an instance has key",
    ),
    (
        journey_text(
            "  - {id: b, branch: [{when: {field: customer.age, in: 3}, next: x}]}\n"
            "  - {id: x, exit: {}}\n"
        ),
        "steps[0] (b).branch[0].when.in: expected a non-empty list of values",
    ),
    (
        journey_text(
            "  - {id: b, branch: [{when: {score: {name: churn, gte: high}}, next: x}]}\n"
            "  - {id: x, exit: {}}\n"
        ),
        "steps[0] (b).branch[0].when.score.gte: 'high' is not a number",
    ),
    (
        journey_text(
            "  - {id: b, branch: [{when: {consent: {channel: fax}}, next: x}]}\n"
            "  - {id: x, exit: {}}\n"
        ),
        "steps[0] (b).branch[0].when.consent.channel: 'fax' is not one of email, sms",
    ),
    (
        journey_text(
            "  - {id: b, branch: [{when: {field: customer.age}, next: x}]}\n  - {id: x, exit: {}}\n"
        ),
        "steps[0] (b).branch[0].when: no operator",
    ),
    (
        journey_text("  - {id: u, update: {tag: a, score: {name: s, value: 1}}}\n"),
        "steps[0] (u).update: expected exactly one of tag, set and score",
    ),
    (
        journey_text(
            "  - {id: a, action: {channel: email, message: m}, next: b}\n"
            "  - {id: b, branch: [{when: {segment: vip}, next: a}], else: c}\n"
            "  - {id: c, exit: {}}\n"
        ),
        "steps[0] (a): the loop a -> b -> a has no wait or wait_event step",
    ),
    (journey_text("  []\n"), "steps: expected a non-empty list of steps"),
    (journey_text("  - {id: x, exit: {}}\n") + "start: y\n", "start: no step has the id 'y'"),
    ("- 1\n- 2\n", "journey: expected a mapping with code, name, trigger, max_duration and steps"),
]


@pytest.mark.parametrize(("text", "message"), WHOLE)
def test_bad_journeys_name_the_field(text: str, message: str) -> None:
    with pytest.raises(JourneyError) as caught:
        load_journey(text)
    assert str(caught.value).startswith(message), str(caught.value)


def test_error_carries_path_and_problem() -> None:
    with pytest.raises(JourneyError) as caught:
        load_journey(BASE.replace("timeout: 24h", "timeout: soon"))
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.path == "steps[0] (wait_cart).wait_event.timeout"
    assert error.problem == "'soon' is not a duration such as 7d, 48h or 30m"
    assert error.line == 9


def test_parse_journey_has_no_lines() -> None:
    data = load_journey(BASE).to_dict()
    data["steps"][1]["action"]["channel"] = "fax"
    with pytest.raises(JourneyError) as caught:
        parse_journey(data)
    assert caught.value.line is None
    assert caught.value.path == "steps[1] (remind).action.channel"


def test_a_loop_that_waits_and_can_leave_is_accepted() -> None:
    journey = load_journey(
        journey_text(
            "  - {id: w, wait: {duration: 7d}, next: a}\n"
            "  - {id: a, action: {channel: email, message: m}, next: b}\n"
            "  - id: b\n    branch: [{when: {field: instance.visits.a, lt: 3}, next: w}]\n"
            "    else: x\n"
            "  - {id: x, exit: {reason: three_sent}}\n"
        )
    )
    assert [s.id for s in journey.steps] == ["w", "a", "b", "x"]


# ----------------------------------------------------------------------------------------------
# docs/journeys.md stays in step


def test_docs_show_the_examples_and_their_journeys_load() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for name in ("welcome", "abandoned_cart", "birthday"):
        assert (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8").strip() in doc
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.DOTALL)
    journeys = [b for b in blocks if b.lstrip().startswith(("code:", "#"))]
    assert len(journeys) == 4
    for block in journeys:
        load_journey(block)


def test_docs_name_every_step_kind_channel_and_operator() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for word in (*STEP_KINDS, *ACTION_CHANNELS, *OPERATORS, *DATE_RULES, *ON_SUPPRESSED):
        assert f"`{word}`" in doc or f"### {word}" in doc, word


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("welcome", {"attributes", "segments", "scores"}),
        ("abandoned_cart", {"consent"}),
        ("birthday", {"segments", "consent"}),
    ],
)
def test_reads_names_what_the_engine_must_load(name: str, expected: set[str]) -> None:
    assert example(name).reads() == expected


def test_reads_follows_predicates_and_date_expressions() -> None:
    text = """
code: reads
name: Reads
trigger: {event: {type: signed_up, where: {field: event.properties.plan, eq: gold}}}
max_duration: 400d
steps:
  - id: route
    branch:
      - when: {not: {any: [{consent: {channel: sms, purpose: marketing}}, {field: instance.key, eq: x}]}}
        next: renew
    else: renew
  - {id: renew, wait: {until: customer.contract_end - 30d}}
"""
    assert load_journey(text).reads() == {"consent", "attributes"}
