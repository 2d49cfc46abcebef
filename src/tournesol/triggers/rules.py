"""The pure journey engine: predicates, date rules, entry rules and the step function.

Plain values in, plain values out: no database, no web, no clock (``now`` is always passed in,
aware), no randomness but the customer's hash for splits. The worker (a later layer) loads an
instance's :class:`InstanceState` and the customer's :class:`Facts`, calls :func:`start` or
:func:`advance`, and stores the new state with the effects in one transaction.

The step function
-----------------
:func:`advance` runs steps until the instance must wait, ends, or has a message to send:

- a ``wait`` step sets ``due_at`` (status ``waiting``); being woken (``event=None``) before it
  does nothing, at or after it goes on to ``next``;
- a ``wait_event`` step sets ``waiting_for`` (the event type), ``match_value`` (the instance
  key, in a journey keyed by an event property) and ``due_at`` (the timeout). An event of that
  type, of the same customer, whose ``where`` holds and whose ``match`` property equals the
  instance key, and that occurred before ``due_at``, goes to ``on_event``; being woken at or
  after ``due_at`` goes to ``on_timeout``;
- an ``action`` step stops with a :class:`Send` effect and the status ``awaiting_gate``; the
  caller runs the dispatch gate and calls :func:`advance` again with its :class:`GateResult`:
  ``sent`` goes to ``next``; ``suppressed`` follows the step's ``on_suppressed`` (``continue``:
  ``next``; ``exit``: exit with reason ``suppressed:<reason>``; ``wait``: a new visit of the
  same step after ``retry_after``, default 1 day, hence a new idempotency key); ``deferred``
  waits until ``until`` (1 hour when the gate gives none) and then emits the *same* Send again,
  same visit and same idempotency key: nothing was sent, and should the gate have queued the
  message anyway, the outbox's unique key makes the second one a no-op, so "never twice"
  holds in both readings of "deferred". Woken while ``awaiting_gate`` (a worker that died
  between the two calls), the same Send is emitted again, same key;
- ``branch``, ``split``, ``update`` and ``goal`` steps run at once; an ``exit`` step, a goal
  without ``next`` or a step without a way on ends the instance.

An event matching a journey-level ``exit_when`` criterion ends the instance from any state
(waiting, awaiting the gate), except a ``wait_event`` that this very event resolves: the step
that awaits it is the more specific rule. An instance advanced at or after ``expires_at``
(``entered_at + max_duration``; waits are capped to it, so the worker wakes it then) exits with
reason ``max_duration`` whatever it waits for. More than :data:`MAX_STEPS_PER_CALL` steps in one
call exit with ``loop_guard``.

Each visit of a step logs exactly one :class:`StepLogged`, when the visit ends: ``elapsed``,
``event``, ``timeout``, ``branch``, ``variant``, ``holdout``, ``sent``, ``suppressed``,
``updated``, ``goal``, ``exit``, ``missing_date``, or ``interrupted`` (by an exit criterion, the
maximum duration or the loop guard). Entering a step again (a loop, a retry after a
suppression) increments its visit, so its idempotency key differs.

Whole-day durations of ``wait`` steps and ``until`` offsets count calendar days on the
journey's local clock (``1d`` after 10:00 is 10:00 the next day, across a daylight-saving
change too); other durations (hours, minutes, timeouts, ``max_duration``, cooldowns) are
elapsed time.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tournesol.campaigns.rules import control_bucket, next_contact_time
from tournesol.triggers.definition import (
    ActionStep,
    AllOf,
    AnyOf,
    BranchStep,
    ConsentAllowed,
    DateExpr,
    DateRule,
    EventSpec,
    ExitStep,
    FieldTest,
    GoalStep,
    InSegment,
    JourneyDefinition,
    Not,
    Predicate,
    ScoreTest,
    SegmentTrigger,
    SplitStep,
    Step,
    UpdateStep,
    WaitEventStep,
    WaitStep,
)

Status: TypeAlias = Literal["active", "waiting", "awaiting_gate", "done", "exited"]
FINAL: Final[tuple[str, ...]] = ("done", "exited")
MAX_STEPS_PER_CALL: Final = 100
DEFAULT_DEFER: Final = timedelta(hours=1)
DEFAULT_RETRY: Final = timedelta(days=1)
# The events the worker makes of segment membership changes, for segment-triggered journeys:
# type segment_entered or segment_left, with the segment's code in properties["segment"].
SEGMENT_ENTERED: Final = "segment_entered"
SEGMENT_LEFT: Final = "segment_left"

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_DAY: Final = timedelta(days=1)


def _empty() -> Mapping[str, Any]:
    return _EMPTY


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a customer: an interaction, a transaction, a Segment track
    event, a segment membership change. ``id`` is unique (the inbox deduplicates by it)."""

    id: str
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any]
    customer_id: int


@dataclass(frozen=True, slots=True)
class Facts:
    """What the worker loaded about the customer at ``now``: attributes (``customer.*`` in
    predicates; ``birth_date``, ``last_purchase_at`` and the like for date rules), current
    segment codes, scores by name, the ``(channel, purpose)`` pairs consent allows now, and
    the customer's IANA time zone (used when the journey's ``timezone`` is ``customer``)."""

    customer: Mapping[str, Any] = field(default_factory=_empty)
    segments: frozenset[str] = frozenset()
    scores: Mapping[str, float] = field(default_factory=_empty)
    allowed_channels: frozenset[tuple[str, str]] = frozenset()
    timezone: str = "Europe/Paris"

    def __post_init__(self) -> None:
        _zone(self.timezone)


@dataclass(frozen=True, slots=True)
class GateResult:
    """What the dispatch gate did with a :class:`Send`: ``sent``; ``suppressed`` with a
    reason (``no_consent``, ``pressure_cap``...); ``deferred`` until an instant."""

    outcome: Literal["sent", "suppressed", "deferred"]
    reason: str | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class PastInstance:
    """An earlier instance of the same journey for the same customer, for :func:`may_enter`.
    ``ended_at`` is None while it runs."""

    status: str
    ended_at: datetime | None
    instance_key: str


@dataclass(frozen=True, slots=True)
class InstanceState:
    """One customer's way through one journey version.

    - ``status``: ``waiting`` (``due_at`` set; ``waiting_for`` set for a wait_event),
      ``awaiting_gate`` (a Send to pass through the gate; ``due_at`` is when it was emitted,
      so a worker that died re-drives it), ``done`` (a goal ended it), ``exited``
      (``exit_reason`` says why); ``active`` only between steps, never returned;
    - ``step``/``visit``: the current step and its visit number (1 for the first);
      ``visits``: the visits of every step entered so far;
    - ``instance_id``: what identifies the instance in idempotency keys: by default the
      customer, the instance key and the triggering event's id (or the entry time);
    - ``variant``: the variant drawn at each split step; ``goals``: the goals reached;
    - ``trigger``: the triggering event as JSON values (``id``, ``type``, ``occurred_at``,
      ``customer_id``, ``properties``), what ``event.*`` reads in the steps; empty for a
      journey not started by an event.
    """

    status: Status
    step: str | None
    visit: int
    visits: Mapping[str, int]
    due_at: datetime | None
    waiting_for: str | None
    match_value: str | None
    entered_at: datetime
    expires_at: datetime
    instance_key: str
    customer_id: int
    instance_id: str
    variant: Mapping[str, str] = field(default_factory=_empty)
    exit_reason: str | None = None
    goals: tuple[str, ...] = ()
    ended_at: datetime | None = None
    trigger: Mapping[str, Any] = field(default_factory=_empty)

    def to_json(self) -> dict[str, Any]:
        """The state as JSON values (instants in ISO 8601 with their offset), for storage;
        :meth:`from_json` reads it back to an equal state."""
        return {
            "status": self.status,
            "step": self.step,
            "visit": self.visit,
            "visits": dict(self.visits),
            "due_at": _iso(self.due_at),
            "waiting_for": self.waiting_for,
            "match_value": self.match_value,
            "entered_at": _iso(self.entered_at),
            "expires_at": _iso(self.expires_at),
            "instance_key": self.instance_key,
            "customer_id": self.customer_id,
            "instance_id": self.instance_id,
            "variant": dict(self.variant),
            "exit_reason": self.exit_reason,
            "goals": list(self.goals),
            "ended_at": _iso(self.ended_at),
            "trigger": _jsonable(self.trigger),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstanceState:
        """The state :meth:`to_json` wrote."""

        def instant(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        entered = instant(data["entered_at"])
        expires = instant(data["expires_at"])
        if entered is None or expires is None:
            raise ValueError("entered_at and expires_at are required")
        return cls(
            status=data["status"],
            step=data["step"],
            visit=int(data["visit"]),
            visits=MappingProxyType({str(k): int(v) for k, v in data["visits"].items()}),
            due_at=instant(data["due_at"]),
            waiting_for=data["waiting_for"],
            match_value=data["match_value"],
            entered_at=entered,
            expires_at=expires,
            instance_key=str(data["instance_key"]),
            customer_id=int(data["customer_id"]),
            instance_id=str(data["instance_id"]),
            variant=MappingProxyType(dict(data.get("variant") or {})),
            exit_reason=data.get("exit_reason"),
            goals=tuple(data.get("goals") or ()),
            ended_at=instant(data.get("ended_at")),
            trigger=MappingProxyType(dict(data.get("trigger") or {})),
        )


# --------------------------------------------------------------------------------------------
# Effects


@dataclass(frozen=True, slots=True)
class Send:
    """A message or task for the dispatch gate. ``idempotency_key`` is unique per journey
    version, instance, step and visit: the outbox refuses a second row with it.
    ``properties``: the action's static ``properties``, plus ``queue`` (advisor and call-centre
    tasks) or ``url`` (webhooks) when set."""

    step: str
    visit: int
    channel: str
    message: str | None
    idempotency_key: str
    on_suppressed: str
    purpose: str
    properties: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Update:
    """Tag the customer (``what="tag"``), set an attribute to ``value``, or record a score."""

    step: str
    visit: int
    what: Literal["tag", "attribute", "score"]
    name: str
    value: Any


@dataclass(frozen=True, slots=True)
class GoalReached:
    name: str
    step: str


@dataclass(frozen=True, slots=True)
class Exited:
    """The instance ended without reaching a final goal: an exit step's reason, ``end`` (no
    next step), ``max_duration``, ``loop_guard``, ``missing_date``, ``suppressed:<reason>``,
    or an ``exit_when`` criterion's reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class StepLogged:
    """One visit of a step ended with ``outcome`` (see the module's docstring)."""

    step: str
    visit: int
    outcome: str
    detail: str | None = None


Effect: TypeAlias = Send | Update | GoalReached | Exited | StepLogged


@dataclass(frozen=True, slots=True)
class Advance:
    """The new state and what the caller must do, in order."""

    state: InstanceState
    effects: tuple[Effect, ...] = ()

    @property
    def send(self) -> Send | None:
        """The Send to pass through the gate (at most one per call), or None."""
        for effect in self.effects:
            if isinstance(effect, Send):
                return effect
        return None


# --------------------------------------------------------------------------------------------
# Predicates


class _Missing:
    __slots__ = ()


_MISSING: Final = _Missing()
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIME: Final = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*")


def lookup(values: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``customer.city``), or None when any part is missing."""
    current: Any = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def evaluate(predicate: Predicate, values: Mapping[str, Any], facts: Facts | None = None) -> bool:
    """Whether ``predicate`` holds. ``values`` maps the path roots (``event``, ``customer``,
    ``instance``) to mappings; ``facts`` gives segments, scores and consent (none if None).

    Numbers compare as numbers, texts as texts, dates and instants (``date``, ``datetime``
    or ISO 8601 text) as dates, a date against an instant by its day (UTC). A missing or null
    field makes every operator false except ``exists: false`` and ``ne``.

    >>> from tournesol.triggers.definition import FieldTest
    >>> evaluate(FieldTest("customer.age", (("gte", 18), ("lt", 30))), {"customer": {"age": 25}})
    True
    """
    if isinstance(predicate, FieldTest):
        actual = lookup(values, predicate.field)
        return all(_test(op, actual, expected) for op, expected in predicate.ops)
    if isinstance(predicate, AllOf):
        return all(evaluate(p, values, facts) for p in predicate.items)
    if isinstance(predicate, AnyOf):
        return any(evaluate(p, values, facts) for p in predicate.items)
    if isinstance(predicate, Not):
        return not evaluate(predicate.item, values, facts)
    if facts is None:
        return False
    if isinstance(predicate, InSegment):
        return predicate.code in facts.segments
    if isinstance(predicate, ScoreTest):
        score = facts.scores.get(predicate.name)
        return all(_test(op, score, expected) for op, expected in predicate.ops)
    assert isinstance(predicate, ConsentAllowed)
    return (predicate.channel, predicate.purpose) in facts.allowed_channels


def _test(op: str, actual: Any, expected: Any) -> bool:
    if actual is None or isinstance(actual, _Missing):
        return (op == "exists" and expected is False) or op == "ne"
    if op == "exists":
        return expected is True
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, v) for v in expected)
    if op == "not_in":
        return not any(_equal(actual, v) for v in expected)
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list | tuple | set | frozenset):
            return any(_equal(item, expected) for item in actual)
        return False
    pair = _comparable(actual, expected)
    if pair is None:
        return False
    a, b = pair
    if op == "gt":
        return bool(a > b)
    if op == "gte":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)  # lte


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _temporal(value: Any) -> date | datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            if _ISO_DATE.fullmatch(value):
                return date.fromisoformat(value)
            if _ISO_TIME.fullmatch(value):
                parsed = datetime.fromisoformat(value)
                return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


def _comparable(a: Any, b: Any) -> tuple[Any, Any] | None:
    if _is_number(a) and _is_number(b):
        return a, b
    if isinstance(a, bool) or isinstance(b, bool):
        return (a, b) if isinstance(a, bool) and isinstance(b, bool) else None
    ta, tb = _temporal(a), _temporal(b)
    if ta is not None and tb is not None:
        if isinstance(ta, datetime) != isinstance(tb, datetime):
            return _day(ta), _day(tb)
        return ta, tb
    if isinstance(a, str) and isinstance(b, str):
        return a, b
    return None


def _day(value: date | datetime) -> date:
    return value.astimezone(UTC).date() if isinstance(value, datetime) else value


def _equal(a: Any, b: Any) -> bool:
    pair = _comparable(a, b)
    return pair is not None and bool(pair[0] == pair[1])


# --------------------------------------------------------------------------------------------
# Time


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone") from None


def journey_zone(journey: JourneyDefinition, facts: Facts) -> str:
    """The IANA zone the journey's dates and windows are read in for this customer."""
    return facts.timezone if journey.timezone == "customer" else journey.timezone


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime")


def shift(instant: datetime, delta: timedelta, tz: str) -> datetime:
    """``instant + delta`` in UTC; a whole number of days moves the local wall clock in
    ``tz`` (10:00 stays 10:00 across a daylight-saving change; a wall time that does not
    exist that day reads with the offset before the change).

    >>> shift(datetime(2026, 3, 28, 9, tzinfo=UTC), timedelta(days=1), "Europe/Paris")
    datetime.datetime(2026, 3, 29, 8, 0, tzinfo=datetime.timezone.utc)
    """
    if delta % _DAY:
        return (instant + delta).astimezone(UTC)
    zone = _zone(tz)
    wall = instant.astimezone(zone).replace(tzinfo=None) + delta
    return wall.replace(tzinfo=zone).astimezone(UTC)


def resolve_date(expr: DateExpr, values: Mapping[str, Any], tz: str) -> datetime | None:
    """The instant (UTC) of a date expression, or None when its field is missing or not a
    date. A date means 00:00 local time in ``tz``; a naive datetime is read as UTC.

    >>> resolve_date(DateExpr("customer.end", -timedelta(days=30)),
    ...     {"customer": {"end": date(2026, 11, 30)}}, "Europe/Paris")
    datetime.datetime(2026, 10, 30, 23, 0, tzinfo=datetime.timezone.utc)
    """
    value = _temporal(lookup(values, expr.path))
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), _zone(tz))
    return shift(value, expr.offset, tz)


def _local_date(value: Any, tz: str) -> date | None:
    found = _temporal(value)
    if isinstance(found, datetime):
        return found.astimezone(_zone(tz)).date()
    return found


def _anniversary(born: date, year: int) -> date:
    if (born.month, born.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return born.replace(year=year)


def date_rule_due(rule: DateRule, *, customer: Mapping[str, Any], on: date, tz: str) -> bool:
    """Whether the date rule fires for this customer on the local day ``on`` (the worker
    evaluates it once a day per customer, ``on`` being today in ``tz``). Instants in the
    customer's fields are read as local dates in ``tz``; a missing field never fires.

    - ``birthday``: ``on`` is an anniversary of the field (not the birth day itself); born on
      29 February, 28 February in years without one;
    - ``age``: ``on`` is the day the customer turns ``years``;
    - ``offset``: ``on`` is the field's date plus the offset (``contract_end - 30d``);
    - ``no_purchase``: ``on`` is ``days`` days after the field (``last_purchase_at``), so it
      fires once per silence, on the day it reaches ``days``.

    >>> rule = DateRule("birthday", "birth_date")
    >>> date_rule_due(rule, customer={"birth_date": date(2004, 2, 29)}, on=date(2026, 2, 28),
    ...     tz="Europe/Paris")
    True
    """
    day = _local_date(customer.get(rule.field), tz)
    if day is None:
        return False
    if rule.rule == "birthday":
        return on.year > day.year and _anniversary(day, on.year) == on
    if rule.rule == "age":
        years = rule.years or 0
        return on.year == day.year + years and _anniversary(day, on.year) == on
    if rule.rule == "offset":
        return day + (rule.offset or timedelta(0)) == on
    return day + timedelta(days=rule.days or 0) == on


# --------------------------------------------------------------------------------------------
# Entry and exit


def _event_values(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "customer_id": event.customer_id,
        "properties": event.properties,
    }


def _key_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))


def trigger_matches(journey: JourneyDefinition, event: Event) -> bool:
    """Whether ``event`` starts the journey (before the re-entry check): an event trigger of
    its type whose ``where`` holds and, in a journey keyed by an event property, that carries
    the property; a segment trigger and a ``segment_entered``/``segment_left`` event naming
    the segment in ``properties["segment"]``. Date and API triggers never match an event.
    """
    trigger = journey.trigger
    if isinstance(trigger, EventSpec):
        if event.type != trigger.type:
            return False
        values = {"event": _event_values(event)}
        if trigger.where is not None and not evaluate(trigger.where, values):
            return False
        key = journey.key_property
        return key is None or lookup(event.properties, key) is not None
    if isinstance(trigger, SegmentTrigger):
        kind = SEGMENT_ENTERED if trigger.on == "enter" else SEGMENT_LEFT
        return event.type == kind and event.properties.get("segment") == trigger.code
    return False


def instance_key_of(journey: JourneyDefinition, event: Event | None, customer_id: int) -> str:
    """The instance key: the customer's id for ``instance_key: customer``, else the event's
    property as text (an integer as its digits, a text as is). ValueError if the event lacks
    it."""
    key = journey.key_property
    if key is None:
        return str(customer_id)
    value = None if event is None else lookup(event.properties, key)
    if value is None:
        raise ValueError(f"the event has no property {key!r} to key the journey's instance")
    return _key_text(value)


def exit_reason(journey: JourneyDefinition, event: Event) -> str | None:
    """The reason of the first ``exit_when`` criterion the event meets, or None."""
    values: dict[str, Any] | None = None
    for criterion in journey.exit_when:
        if criterion.event.type != event.type:
            continue
        if criterion.event.where is not None:
            values = values or {"event": _event_values(event)}
            if not evaluate(criterion.event.where, values):
                continue
        return criterion.reason
    return None


def may_enter(
    journey: JourneyDefinition,
    *,
    previous: Sequence[PastInstance],
    instance_key: str,
    now: datetime,
) -> bool:
    """Whether a new instance with ``instance_key`` may start, given the customer's earlier
    instances of the journey (any version): ``never`` if one had this key; ``after_exit`` if
    none with this key still runs (status not done/exited); ``cooldown`` if, besides, the last
    ended at least ``cooldown`` before ``now``; ``always``: yes.
    """
    same = [p for p in previous if p.instance_key == instance_key]
    policy = journey.reentry.policy
    if policy == "always":
        return True
    if policy == "never":
        return not same
    if any(p.status not in FINAL for p in same):
        return False
    if policy == "after_exit" or not same:
        return True
    ends = [p.ended_at for p in same]
    if any(e is None for e in ends):
        return False
    cooldown = journey.reentry.cooldown or timedelta(0)
    return now >= max(e for e in ends if e is not None) + cooldown


def idempotency_key(
    journey_code: str, version: str, instance_id_or_key: str, step: str, visit: int
) -> str:
    """The key of one send: ``jrn-`` and 32 hex digits of the SHA-256 of the five parts. The
    same inputs always give the same key; any other step, visit, instance or version another.

    >>> idempotency_key("welcome", "v1", "42:42:evt-1", "email", 1)[:4]
    'jrn-'
    """
    text = "\x1f".join((journey_code, version, instance_id_or_key, step, str(visit)))
    return "jrn-" + hashlib.sha256(text.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# The step function


def start(
    journey: JourneyDefinition,
    *,
    customer_id: int,
    instance_key: str,
    event: Event | None,
    now: datetime,
    facts: Facts,
    instance_id: str | None = None,
) -> Advance:
    """A new instance entered at ``now`` (call :func:`trigger_matches` and :func:`may_enter`
    first), run from the start step until it waits, ends or has a Send for the gate.

    ``instance_id`` defaults to ``"<customer>:<key>:<event id>"`` (``<entry time>`` without an
    event): starting twice from the same event gives the same idempotency keys.
    """
    _aware("now", now)
    trigger: Mapping[str, Any] = _EMPTY
    if event is not None:
        trigger = MappingProxyType(
            {
                "id": event.id,
                "type": event.type,
                "occurred_at": event.occurred_at.isoformat(),
                "customer_id": event.customer_id,
                "properties": _jsonable(event.properties),
            }
        )
    if instance_id is None:
        tail = event.id if event is not None else now.astimezone(UTC).isoformat()
        instance_id = f"{customer_id}:{instance_key}:{tail}"
    state = InstanceState(
        status="active",
        step=None,
        visit=0,
        visits=_EMPTY,
        due_at=None,
        waiting_for=None,
        match_value=None,
        entered_at=now,
        expires_at=now + journey.max_duration,
        instance_key=instance_key,
        customer_id=customer_id,
        instance_id=instance_id,
        trigger=trigger,
    )
    run = _Run(journey, state, now, facts)
    run.go(journey.start)
    return run.result()


def advance(
    journey: JourneyDefinition,
    state: InstanceState,
    *,
    event: Event | GateResult | None,
    now: datetime,
    facts: Facts,
) -> Advance:
    """The instance after ``event`` (an event of the customer, the gate's answer to the last
    Send, or None for a wake-up at ``now``), with the effects to apply. An ended instance,
    an event of another customer, a stale gate answer or an early wake-up change nothing
    (the same state, no effects). Deterministic: the same inputs give the same output.
    """
    _aware("now", now)
    if state.status in FINAL or state.step is None:
        return Advance(state)
    run = _Run(journey, state, now, facts)
    expired = now >= state.expires_at
    step = journey.step(state.step)
    if isinstance(event, GateResult):
        if state.status != "awaiting_gate" or not isinstance(step, ActionStep):
            return Advance(state)
        run.gate(step, event)
    elif isinstance(event, Event):
        if event.customer_id != state.customer_id:
            return Advance(state)
        if not expired and run.resolves(step, event):
            run.on_event(step, event)
        elif (reason := exit_reason(journey, event)) is not None:
            run.interrupt(reason)
        elif expired:
            run.interrupt("max_duration")
        elif state.status == "waiting" and run.due():
            run.wake()  # the event comes after the instance's time: that comes first
            after = run.current()
            if after is not None and run.resolves(after, event):
                run.on_event(after, event)
        else:
            return Advance(state)
    elif expired:
        run.interrupt("max_duration")
    elif run.due():
        run.wake()
    else:
        return Advance(state)
    if run.status not in FINAL and now >= state.expires_at:
        run.interrupt("max_duration")
    return run.result()


class _Stop:
    __slots__ = ()


_STOP: Final = _Stop()


class _Run:
    """The working copy of a state while steps run."""

    def __init__(
        self, journey: JourneyDefinition, state: InstanceState, now: datetime, facts: Facts
    ) -> None:
        self.journey = journey
        self.base = state
        self.now = now
        self.facts = facts
        self.status: Status = state.status
        self.step = state.step
        self.visit = state.visit
        self.visits = dict(state.visits)
        self.due_at = state.due_at
        self.waiting_for = state.waiting_for
        self.match_value = state.match_value
        self.variant = dict(state.variant)
        self.exit_reason = state.exit_reason
        self.goals = list(state.goals)
        self.ended_at = state.ended_at
        self.effects: list[Effect] = []
        self.count = 0

    def result(self) -> Advance:
        state = replace(
            self.base,
            status=self.status,
            step=self.step,
            visit=self.visit,
            visits=MappingProxyType(dict(self.visits)),
            due_at=self.due_at,
            waiting_for=self.waiting_for,
            match_value=self.match_value,
            variant=MappingProxyType(dict(self.variant)),
            exit_reason=self.exit_reason,
            goals=tuple(self.goals),
            ended_at=self.ended_at,
        )
        return Advance(state, tuple(self.effects))

    def current(self) -> Step | None:
        if self.status in FINAL or self.step is None:
            return None
        return self.journey.step(self.step)

    def log(self, outcome: str, detail: str | None = None) -> None:
        assert self.step is not None
        self.effects.append(StepLogged(self.step, self.visit, outcome, detail))

    def exit(self, reason: str) -> None:
        self.status = "exited"
        self.exit_reason = reason
        self.ended_at = self.now
        self.due_at = self.waiting_for = self.match_value = None
        self.effects.append(Exited(reason))

    def interrupt(self, reason: str) -> None:
        """End the open visit of the current step, then the instance."""
        self.log("interrupted", reason)
        self.exit(reason)

    def due(self) -> bool:
        return self.status in ("waiting", "awaiting_gate", "active") and (
            self.due_at is None or self.now >= self.due_at
        )

    def values(self) -> dict[str, Any]:
        return {
            "event": self.base.trigger,
            "customer": self.facts.customer,
            "instance": {
                "key": self.base.instance_key,
                "entered_at": self.base.entered_at,
                "expires_at": self.base.expires_at,
                "step": self.step,
                "visit": self.visit,
                "goals": list(self.goals),
                "variant": dict(self.variant),
                "visits": dict(self.visits),
            },
        }

    # ------------------------------------------------------------ waking up

    def resolves(self, step: Step, event: Event) -> bool:
        """Whether the event resolves the wait_event step the instance waits at."""
        if self.status != "waiting" or not isinstance(step, WaitEventStep):
            return False
        if event.type != step.event.type or event.customer_id != self.base.customer_id:
            return False
        if self.due_at is not None and event.occurred_at >= self.due_at:
            return False
        if step.match is not None:
            value = lookup(event.properties, step.match.removeprefix("properties."))
            if value is None or _key_text(value) != self.match_value:
                return False
        where = step.event.where
        return where is None or evaluate(where, {"event": _event_values(event)})

    def on_event(self, step: Step, event: Event) -> None:
        assert isinstance(step, WaitEventStep)
        self.log("event", event.id)
        self.go(step.on_event)

    def wake(self) -> None:
        step = self.current()
        if isinstance(step, WaitStep):
            self.log("elapsed")
            self.go(step.next)
        elif isinstance(step, WaitEventStep):
            self.log("timeout")
            self.go(step.on_timeout)
        elif step is not None:  # an action to (re)send, or a state saved between steps
            self.go(step.id, enter=False)

    def gate(self, step: ActionStep, result: GateResult) -> None:
        if result.outcome == "sent":
            self.log("sent")
            self.go(step.next)
            return
        if result.outcome == "deferred":
            until = result.until if result.until is not None else self.now + DEFAULT_DEFER
            self.status = "waiting"
            self.due_at = min(max(until, self.now), self.base.expires_at)
            return
        reason = result.reason or "unknown"
        self.log("suppressed", reason)
        if step.on_suppressed == "continue":
            self.go(step.next)
        elif step.on_suppressed == "exit":
            self.exit(f"suppressed:{reason}")
        else:
            self.visits[step.id] = self.visit = self.visits.get(step.id, 0) + 1
            self.status = "waiting"
            retry = step.retry_after or DEFAULT_RETRY
            self.due_at = min(self.now + retry, self.base.expires_at)

    # ------------------------------------------------------------ running steps

    def go(self, target: str | None, *, enter: bool = True) -> None:
        """Enter ``target`` (or run the current step again at the same visit) and go on
        until the instance waits, ends or awaits the gate."""
        while True:
            if enter:
                if target is None:
                    self.exit("end")
                    return
                if self.now >= self.base.expires_at:
                    self.exit("max_duration")
                    return
                if self.count >= MAX_STEPS_PER_CALL:
                    self.exit("loop_guard")
                    return
                self.visits[target] = self.visit = self.visits.get(target, 0) + 1
                self.step = target
            enter = True
            self.count += 1
            self.status = "active"
            self.due_at = self.waiting_for = self.match_value = None
            assert self.step is not None
            outcome = self.execute(self.journey.step(self.step))
            if isinstance(outcome, _Stop):
                return
            target = outcome

    def execute(self, step: Step) -> str | _Stop | None:
        if isinstance(step, WaitStep):
            return self.wait(step)
        if isinstance(step, WaitEventStep):
            self.status = "waiting"
            self.waiting_for = step.event.type
            self.match_value = self.base.instance_key if step.match is not None else None
            self.due_at = min(self.now + step.timeout, self.base.expires_at)
            return _STOP
        if isinstance(step, BranchStep):
            values = self.values()
            for i, case in enumerate(step.cases, 1):
                if evaluate(case.when, values, self.facts):
                    self.log("branch", f"when {i} -> {case.next or 'end'}")
                    return case.next
            self.log("branch", f"else -> {step.otherwise or 'end'}")
            return step.otherwise
        if isinstance(step, SplitStep):
            return self.split(step)
        if isinstance(step, ActionStep):
            self.status = "awaiting_gate"
            self.due_at = self.now
            self.effects.append(self.send(step))
            return _STOP
        if isinstance(step, UpdateStep):
            self.effects.append(Update(step.id, self.visit, step.what, step.name, step.value))
            self.log("updated", step.name)
            return step.next
        if isinstance(step, GoalStep):
            self.goals.append(step.name)
            self.effects.append(GoalReached(step.name, step.id))
            self.log("goal", step.name)
            if step.next is None:
                self.status = "done"
                self.ended_at = self.now
                return _STOP
            return step.next
        assert isinstance(step, ExitStep)
        self.log("exit", step.reason)
        self.exit(step.reason)
        return _STOP

    def wait(self, step: WaitStep) -> str | _Stop | None:
        tz = journey_zone(self.journey, self.facts)
        due = self.now
        if step.duration is not None:
            due = shift(self.now, step.duration, tz)
        elif step.until is not None:
            found = resolve_date(step.until, self.values(), tz)
            if found is None:
                self.log("missing_date", step.until.path)
                self.exit("missing_date")
                return _STOP
            due = max(found, self.now)
        if step.window is not None:
            found = next_contact_time(
                due, days=step.window.days, hours=step.window.hours, tz=tz, latest=None
            )
            due = found if found is not None else due
        if due <= self.now:
            self.log("elapsed")
            return step.next
        self.status = "waiting"
        self.due_at = min(due, self.base.expires_at)
        return _STOP

    def split(self, step: SplitStep) -> str | None:
        names = [v.name for v in step.variants]
        chosen = self.variant.get(step.id)
        if chosen not in names:
            salt = step.salt or f"{self.journey.code}:{step.id}"
            point = control_bucket(self.base.customer_id, salt) * sum(
                v.weight for v in step.variants
            )
            total = 0.0
            chosen = names[-1]
            for v in step.variants:
                total += v.weight
                if point < total:
                    chosen = v.name
                    break
            self.variant[step.id] = chosen
        variant = step.variants[names.index(chosen)]
        self.log("holdout" if variant.holdout else "variant", variant.name)
        return variant.next

    def send(self, step: ActionStep) -> Send:
        properties: dict[str, Any] = dict(step.properties)
        if step.queue is not None:
            properties["queue"] = step.queue
        if step.url is not None:
            properties["url"] = step.url
        key = idempotency_key(
            self.journey.code, self.journey.digest(), self.base.instance_id, step.id, self.visit
        )
        return Send(
            step=step.id,
            visit=self.visit,
            channel=step.channel,
            message=step.message,
            idempotency_key=key,
            on_suppressed=step.on_suppressed,
            purpose=step.purpose,
            properties=MappingProxyType(properties),
        )


# --------------------------------------------------------------------------------------------
# JSON


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


__all__ = [
    "DEFAULT_DEFER",
    "DEFAULT_RETRY",
    "FINAL",
    "MAX_STEPS_PER_CALL",
    "SEGMENT_ENTERED",
    "SEGMENT_LEFT",
    "Advance",
    "Effect",
    "Event",
    "Exited",
    "Facts",
    "GateResult",
    "GoalReached",
    "InstanceState",
    "PastInstance",
    "Send",
    "Status",
    "StepLogged",
    "Update",
    "advance",
    "date_rule_due",
    "evaluate",
    "exit_reason",
    "idempotency_key",
    "instance_key_of",
    "journey_zone",
    "lookup",
    "may_enter",
    "resolve_date",
    "shift",
    "start",
    "trigger_matches",
]
