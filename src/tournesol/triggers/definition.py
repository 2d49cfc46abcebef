"""Journey definitions: YAML text in, a validated and frozen :class:`JourneyDefinition` out.

A journey says when a customer enters (its *trigger*: an event, a segment entry or exit, a date
rule, or an API call), what identifies one of their instances (``instance_key``), when they may
enter again (``reentry``), how long an instance may live (``max_duration``), which events stop
it at any point (``exit_when``), and its *steps*: wait, wait for an event, branch, split,
action, update, goal and exit. docs/journeys.md is the reference of the format.

:func:`load_journey` checks everything a marketer can get wrong before anything runs: unknown
keys, missing fields, durations, predicates, channels, time windows, step ids and the targets
of every ``next``, and the shape of the graph (every step reachable from the start, every loop
waits somewhere, every step has a way to an end). The first problem found raises
:class:`JourneyError`, whose message names the field by its path and the YAML line:

    steps[3] (wait_cart).wait_event.timeout: '24x' is not a duration such as 7d, 48h or 30m
    (line 21)

The model is made of frozen dataclasses; :meth:`JourneyDefinition.to_dict` gives its canonical
form (what :meth:`~JourneyDefinition.to_yaml` writes and :meth:`~JourneyDefinition.digest`
hashes), so a published version is identified by its content. Pure: no database, no clock.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, NoReturn, TypeAlias, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from tournesol.campaigns.rules import CONTACT_CHANNELS, format_duration, parse_duration
from tournesol.consent.rules import DAYS, ConsentRuleError, parse_days, parse_hours

# --------------------------------------------------------------------------------------------
# Vocabulary

STEP_KINDS: Final = ("wait", "wait_event", "branch", "split", "action", "update", "goal", "exit")
TRIGGER_KINDS: Final = ("event", "segment", "date", "api")
DATE_RULES: Final = ("birthday", "age", "offset", "no_purchase")
REENTRY_POLICIES: Final = ("never", "after_exit", "cooldown", "always")
ACTION_CHANNELS: Final = ("email", "sms", "postal", "call_center", "advisor_task", "webhook")
ON_SUPPRESSED: Final = ("continue", "exit", "wait")
OPERATORS: Final = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "contains")
# The roots a path may start with, and what may follow them.
EVENT_FIELDS: Final = ("id", "type", "occurred_at", "customer_id", "properties")
INSTANCE_FIELDS: Final = ("key", "entered_at", "expires_at", "step", "visit", "goals")
INSTANCE_MAPS: Final = ("variant", "visits")  # instance.variant.<split step>, .visits.<step>

DEFAULT_PURPOSE: Final = "marketing"

_CODE: Final = re.compile(r"[a-z0-9_]+")
_STEP_ID: Final = re.compile(r"[A-Za-z0-9_\-]+")
_NAME: Final = re.compile(r"[A-Za-z0-9_\-]+")
_PART: Final = re.compile(r"[A-Za-z0-9_\-]+")
_DATE_EXPR: Final = re.compile(r"\s*([A-Za-z_][\w.\-]*)\s*(?:([+-])\s*(\d+\s*[wdhmWDHM]))?\s*")
_SIGNED: Final = re.compile(r"\s*([+-]?)\s*(\d+\s*[wdhmWDHM])\s*")
_DAY_RANGE: Final = re.compile(r"([a-z]{3})\s*-\s*([a-z]{3})")

Scalar: TypeAlias = str | int | float | bool


# --------------------------------------------------------------------------------------------
# Errors


class JourneyError(ValueError):
    """A journey definition that cannot be used. ``path`` names the field at fault
    (``steps[3] (wait_cart).wait_event.timeout``), ``line`` its line in the YAML text when
    known (1-based), ``problem`` what is wrong with it."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        where = f"{path}: " if path else ""
        at = f" (line {line})" if line is not None else ""
        super().__init__(f"{where}{problem}{at}")
        self.path = path
        self.problem = problem
        self.line = line


# --------------------------------------------------------------------------------------------
# Predicates


@dataclass(frozen=True, slots=True)
class FieldTest:
    """``{field: path, <op>: value, ...}``: every operator must hold for the field's value."""

    field: str
    ops: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """``{all: [...]}``: every predicate holds."""

    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """``{any: [...]}``: at least one predicate holds."""

    items: tuple[Predicate, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """``{not: {...}}``: the predicate does not hold."""

    item: Predicate


@dataclass(frozen=True, slots=True)
class InSegment:
    """``{segment: code}``: the customer is a member of the segment now."""

    code: str


@dataclass(frozen=True, slots=True)
class ScoreTest:
    """``{score: {name: churn, gte: 0.7}}``: the customer's current score passes every test."""

    name: str
    ops: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ConsentAllowed:
    """``{consent: {channel: sms, purpose: marketing}}``: consent allows the channel now."""

    channel: str
    purpose: str


Predicate: TypeAlias = FieldTest | AllOf | AnyOf | Not | InSegment | ScoreTest | ConsentAllowed


# --------------------------------------------------------------------------------------------
# Triggers and journey-level settings


@dataclass(frozen=True, slots=True)
class EventSpec:
    """An event of ``type`` (an interaction or transaction type, or a Segment track event
    name) for which ``where`` holds (a predicate over ``event.*``; None for any)."""

    type: str
    where: Predicate | None = None


@dataclass(frozen=True, slots=True)
class SegmentTrigger:
    """Entering (``on="enter"``) or leaving (``"leave"``) the segment with this code."""

    code: str
    on: Literal["enter", "leave"] = "enter"


@dataclass(frozen=True, slots=True)
class DateRule:
    """A date rule evaluated every day in the customer's time zone.

    - ``birthday``: the anniversary of ``field`` (default ``birth_date``); a 29 February
      birthday falls on 28 February in other years;
    - ``age``: the day the customer turns ``years`` (``field`` as for birthday);
    - ``offset``: the day ``field`` + ``offset`` (whole days, negative before the date);
    - ``no_purchase``: ``days`` days after ``field`` (default ``last_purchase_at``).
    """

    rule: Literal["birthday", "age", "offset", "no_purchase"]
    field: str
    years: int | None = None
    offset: timedelta | None = None
    days: int | None = None


@dataclass(frozen=True, slots=True)
class ApiTrigger:
    """Entered only through the API (or the simulation), never by an event."""


Trigger: TypeAlias = EventSpec | SegmentTrigger | DateRule | ApiTrigger


@dataclass(frozen=True, slots=True)
class Reentry:
    """When a customer may enter again with the same instance key: ``never``; ``after_exit``
    (once the previous instance ended); ``cooldown`` (``cooldown`` after it ended); ``always``
    (even while one runs)."""

    policy: Literal["never", "after_exit", "cooldown", "always"] = "after_exit"
    cooldown: timedelta | None = None


@dataclass(frozen=True, slots=True)
class ExitCriterion:
    """An event that ends any instance of the customer, wherever it is, with ``reason``."""

    event: EventSpec
    reason: str


# --------------------------------------------------------------------------------------------
# Steps


@dataclass(frozen=True, slots=True)
class Window:
    """Allowed local days (``mon,tue,...`` in week order) and hours (``HH:MM-HH:MM,...``);
    None means any."""

    days: str | None = None
    hours: str | None = None


@dataclass(frozen=True, slots=True)
class DateExpr:
    """``<path> [+|- duration]``: a date or datetime field moved by a signed ``offset``."""

    path: str
    offset: timedelta = timedelta(0)

    def text(self) -> str:
        """The expression as written in YAML: ``customer.contract_end - 30d``."""
        if not self.offset:
            return self.path
        sign = "-" if self.offset < timedelta(0) else "+"
        return f"{self.path} {sign} {format_duration(abs(self.offset))}"


@dataclass(frozen=True, slots=True)
class WaitStep:
    """Wait ``duration``, or until the date ``until``; then, if ``window`` is set, until the
    next allowed local window. At least one of the three."""

    kind: ClassVar[str] = "wait"
    id: str
    next: str | None = None
    duration: timedelta | None = None
    until: DateExpr | None = None
    window: Window | None = None
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, slots=True)
class WaitEventStep:
    """Wait for ``event``; in a journey keyed by an event property, its ``match`` property
    (``properties.cart_id``) must equal the instance key. ``on_event`` when it comes,
    ``on_timeout`` after ``timeout``."""

    kind: ClassVar[str] = "wait_event"
    id: str
    event: EventSpec
    timeout: timedelta
    match: str | None = None
    on_event: str | None = None
    on_timeout: str | None = None
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return (("on_event", self.on_event), ("on_timeout", self.on_timeout))


@dataclass(frozen=True, slots=True)
class BranchCase:
    when: Predicate
    next: str | None


@dataclass(frozen=True, slots=True)
class BranchStep:
    """The first case whose ``when`` holds gives the next step, else ``otherwise``."""

    kind: ClassVar[str] = "branch"
    id: str
    cases: tuple[BranchCase, ...]
    otherwise: str | None = None
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        cases = tuple((f"branch[{i}].next", c.next) for i, c in enumerate(self.cases))
        return (*cases, ("else", self.otherwise))


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: int | float
    next: str | None = None
    holdout: bool = False


@dataclass(frozen=True, slots=True)
class SplitStep:
    """A sticky random split: the customer's hash bucket (``control_bucket(customer_id,
    salt)``) picks a variant by cumulative weight. ``salt`` None means ``<code>:<step id>``."""

    kind: ClassVar[str] = "split"
    id: str
    variants: tuple[Variant, ...]
    salt: str | None = None
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return tuple((f"split.variants[{i}].next", v.next) for i, v in enumerate(self.variants))


@dataclass(frozen=True, slots=True)
class ActionStep:
    """A message or task through the dispatch gate. ``on_suppressed``: ``continue`` (go on to
    ``next``), ``exit`` (end the instance) or ``wait`` (try again after ``retry_after``)."""

    kind: ClassVar[str] = "action"
    id: str
    channel: str
    message: str | None = None
    next: str | None = None
    purpose: str = DEFAULT_PURPOSE
    on_suppressed: Literal["continue", "exit", "wait"] = "exit"
    retry_after: timedelta | None = None
    queue: str | None = None
    url: str | None = None
    properties: tuple[tuple[str, Scalar], ...] = ()
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, slots=True)
class UpdateStep:
    """Tag the customer, set one of their attributes, or record a score."""

    kind: ClassVar[str] = "update"
    id: str
    what: Literal["tag", "attribute", "score"]
    name: str
    value: Scalar | None = None
    next: str | None = None
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, slots=True)
class GoalStep:
    """The goal ``name`` is reached; the instance ends (done) unless ``next`` is set."""

    kind: ClassVar[str] = "goal"
    id: str
    name: str
    next: str | None = None
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return (("next", self.next),)


@dataclass(frozen=True, slots=True)
class ExitStep:
    """The instance ends (exited) with ``reason``."""

    kind: ClassVar[str] = "exit"
    id: str
    reason: str = "finished"
    description: str | None = None

    def targets(self) -> tuple[tuple[str, str | None], ...]:
        return ()


Step: TypeAlias = (
    WaitStep
    | WaitEventStep
    | BranchStep
    | SplitStep
    | ActionStep
    | UpdateStep
    | GoalStep
    | ExitStep
)


# --------------------------------------------------------------------------------------------
# The journey


@dataclass(frozen=True)
class JourneyDefinition:
    """A validated journey. Build it with :func:`load_journey` (YAML or JSON text) or
    :func:`parse_journey` (a mapping); the constructor does not check the graph.

    ``start`` is always a step id (the first step unless the YAML names one);
    ``instance_key`` is ``"customer"`` or ``"event.properties.<name>"``; ``timezone`` is
    ``"customer"`` or an IANA zone name.
    """

    code: str
    name: str
    trigger: Trigger
    max_duration: timedelta
    steps: tuple[Step, ...]
    start: str
    instance_key: str = "customer"
    reentry: Reentry = Reentry()
    timezone: str = "customer"
    exit_when: tuple[ExitCriterion, ...] = ()
    brand: str | None = None
    description: str | None = None
    _index: Mapping[str, Step] = field(init=False, repr=False, compare=False)
    _digest: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", MappingProxyType({s.id: s for s in self.steps}))
        object.__setattr__(self, "_digest", [])

    def step(self, step_id: str) -> Step:
        """The step with this id; KeyError if there is none."""
        return self._index[step_id]

    @property
    def key_property(self) -> str | None:
        """The event property that keys instances (``cart_id`` for
        ``event.properties.cart_id``), or None for one instance per customer."""
        if self.instance_key == "customer":
            return None
        return self.instance_key.removeprefix("event.properties.")

    def reads(self) -> frozenset[str]:
        """What the engine must load about a customer for this journey, beyond the time
        zone: ``attributes`` (a ``customer.*`` field in a branch or a date expression),
        ``segments``, ``scores``, ``consent`` (predicates on them in a branch). Event
        predicates (trigger, exit criteria, awaited events) read the event only."""
        found: set[str] = set()
        for s in self.steps:
            if isinstance(s, BranchStep):
                for case in s.cases:
                    found |= _predicate_reads(case.when)
            elif (
                isinstance(s, WaitStep)
                and s.until is not None
                and s.until.path.startswith("customer.")
            ):
                found.add("attributes")
        return frozenset(found)

    def edges(self) -> tuple[tuple[str, str, str], ...]:
        """The graph for display: ``(from step, to step, label)`` for every link, the label
        being ``next``, ``on_event``, ``on_timeout``, ``else``, a branch case (``when 1``) or
        a variant name."""
        out: list[tuple[str, str, str]] = []
        for s in self.steps:
            if isinstance(s, BranchStep):
                for i, case in enumerate(s.cases, 1):
                    if case.next is not None:
                        out.append((s.id, case.next, f"when {i}"))
                if s.otherwise is not None:
                    out.append((s.id, s.otherwise, "else"))
            elif isinstance(s, SplitStep):
                for v in s.variants:
                    if v.next is not None:
                        out.append((s.id, v.next, v.name))
            else:
                for label, target in s.targets():
                    if target is not None:
                        out.append((s.id, target, label))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """The canonical form: plain JSON values, durations as text (``7d``), every default
        spelt out where it matters (``start``, ``instance_key``, ``reentry``, ``timezone``).
        :func:`parse_journey` reads it back to an equal definition."""
        out: dict[str, Any] = {"code": self.code, "name": self.name}
        if self.brand is not None:
            out["brand"] = self.brand
        if self.description is not None:
            out["description"] = self.description
        out["trigger"] = _dump_trigger(self.trigger)
        out["instance_key"] = self.instance_key
        out["reentry"] = (
            {"cooldown": format_duration(self.reentry.cooldown)}
            if self.reentry.policy == "cooldown" and self.reentry.cooldown is not None
            else self.reentry.policy
        )
        out["max_duration"] = format_duration(self.max_duration)
        out["timezone"] = self.timezone
        if self.exit_when:
            out["exit_when"] = [
                {"event": _dump_event(c.event), "reason": c.reason} for c in self.exit_when
            ]
        out["start"] = self.start
        out["steps"] = [_dump_step(s) for s in self.steps]
        return out

    def to_yaml(self) -> str:
        """The canonical form as YAML (keys in the documented order)."""
        return yaml.safe_dump(
            self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=False
        )

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical form as compact JSON with sorted keys: equal
        definitions have equal digests, whatever their YAML layout or comments."""
        if not self._digest:
            text = json.dumps(
                self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            self._digest.append(hashlib.sha256(text.encode()).hexdigest())
        return self._digest[0]


def _predicate_reads(predicate: Predicate) -> set[str]:
    if isinstance(predicate, FieldTest):
        return {"attributes"} if predicate.field.startswith("customer.") else set()
    if isinstance(predicate, AllOf | AnyOf):
        return set().union(*(_predicate_reads(p) for p in predicate.items))
    if isinstance(predicate, Not):
        return _predicate_reads(predicate.item)
    if isinstance(predicate, InSegment):
        return {"segments"}
    if isinstance(predicate, ScoreTest):
        return {"scores"}
    return {"consent"}


# --------------------------------------------------------------------------------------------
# Canonical form


def _dump_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_dump_value(v) for v in value]
    return value


def dump_predicate(predicate: Predicate) -> dict[str, Any]:
    """The predicate as written in YAML (the inverse of the loader's parsing)."""
    if isinstance(predicate, FieldTest):
        return {"field": predicate.field, **{op: _dump_value(v) for op, v in predicate.ops}}
    if isinstance(predicate, AllOf):
        return {"all": [dump_predicate(p) for p in predicate.items]}
    if isinstance(predicate, AnyOf):
        return {"any": [dump_predicate(p) for p in predicate.items]}
    if isinstance(predicate, Not):
        return {"not": dump_predicate(predicate.item)}
    if isinstance(predicate, InSegment):
        return {"segment": predicate.code}
    if isinstance(predicate, ScoreTest):
        return {"score": {"name": predicate.name, **dict(predicate.ops)}}
    return {"consent": {"channel": predicate.channel, "purpose": predicate.purpose}}


def _dump_event(spec: EventSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": spec.type}
    if spec.where is not None:
        out["where"] = dump_predicate(spec.where)
    return out


def _dump_trigger(trigger: Trigger) -> dict[str, Any]:
    if isinstance(trigger, EventSpec):
        return {"event": _dump_event(trigger)}
    if isinstance(trigger, SegmentTrigger):
        return {"segment": {"code": trigger.code, "on": trigger.on}}
    if isinstance(trigger, ApiTrigger):
        return {"api": {}}
    rule: dict[str, Any] = {"rule": trigger.rule, "field": trigger.field}
    if trigger.years is not None:
        rule["years"] = trigger.years
    if trigger.offset is not None:
        rule["offset"] = _signed_text(trigger.offset)
    if trigger.days is not None:
        rule["days"] = trigger.days
    return {"date": rule}


def _signed_text(value: timedelta) -> str:
    return ("-" if value < timedelta(0) else "") + format_duration(abs(value))


def _dump_step(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"id": step.id}
    if step.description is not None:
        out["description"] = step.description
    if isinstance(step, WaitStep):
        wait: dict[str, Any] = {}
        if step.duration is not None:
            wait["duration"] = format_duration(step.duration)
        if step.until is not None:
            wait["until"] = step.until.text()
        if step.window is not None:
            window = {"days": step.window.days, "hours": step.window.hours}
            wait["window"] = {k: v for k, v in window.items() if v is not None}
        out["wait"] = wait
    elif isinstance(step, WaitEventStep):
        spec: dict[str, Any] = {"event": _dump_event(step.event)}
        if step.match is not None:
            spec["match"] = step.match
        spec["timeout"] = format_duration(step.timeout)
        out["wait_event"] = spec
        if step.on_event is not None:
            out["on_event"] = step.on_event
        if step.on_timeout is not None:
            out["on_timeout"] = step.on_timeout
        return out
    elif isinstance(step, BranchStep):
        out["branch"] = [{"when": dump_predicate(c.when), "next": c.next} for c in step.cases]
        if step.otherwise is not None:
            out["else"] = step.otherwise
        return out
    elif isinstance(step, SplitStep):
        split: dict[str, Any] = {}
        if step.salt is not None:
            split["salt"] = step.salt
        split["variants"] = [
            {
                "name": v.name,
                "weight": v.weight,
                **({"holdout": True} if v.holdout else {}),
                **({"next": v.next} if v.next is not None else {}),
            }
            for v in step.variants
        ]
        out["split"] = split
        return out
    elif isinstance(step, ActionStep):
        action: dict[str, Any] = {"channel": step.channel}
        if step.message is not None:
            action["message"] = step.message
        action["purpose"] = step.purpose
        action["on_suppressed"] = step.on_suppressed
        if step.retry_after is not None:
            action["retry_after"] = format_duration(step.retry_after)
        if step.queue is not None:
            action["queue"] = step.queue
        if step.url is not None:
            action["url"] = step.url
        if step.properties:
            action["properties"] = dict(step.properties)
        out["action"] = action
    elif isinstance(step, UpdateStep):
        if step.what == "tag":
            out["update"] = {"tag": step.name}
        elif step.what == "attribute":
            out["update"] = {"set": {"attribute": step.name, "value": step.value}}
        else:
            out["update"] = {"score": {"name": step.name, "value": step.value}}
    elif isinstance(step, GoalStep):
        out["goal"] = {"name": step.name}
    else:
        out["exit"] = {"reason": step.reason}
        return out
    if step.next is not None:
        out["next"] = step.next
    return out


# --------------------------------------------------------------------------------------------
# YAML reading: booleans are only true/false (so ``on: enter`` stays a key named "on"), and a
# map from each field's path to its line.


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

_Path: TypeAlias = tuple[str | int, ...]


def _line_map(node: yaml.Node, path: _Path, out: dict[_Path, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                raise JourneyError(
                    _format(child), "this key appears twice", key_node.start_mark.line + 1
                )
            seen.add(key)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), out)


def load_journey(text: str) -> JourneyDefinition:
    """A journey from YAML (or JSON) text, validated; :class:`JourneyError` names the first
    problem, its path and line.

    >>> journey = load_journey('''
    ... code: hello
    ... name: Hello
    ... trigger: {event: {type: signed_up}}
    ... max_duration: 2d
    ... steps:
    ...   - {id: hello, action: {channel: email, message: hello}}
    ... ''')
    >>> journey.start, journey.reentry.policy, journey.step("hello").on_suppressed
    ('hello', 'after_exit', 'exit')
    """
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise JourneyError("", f"not valid YAML: {error.problem}", line) from None
    except yaml.YAMLError as error:
        raise JourneyError("", f"not valid YAML: {error}") from None
    lines: dict[_Path, int] = {}
    if node is not None:
        _line_map(node, (), lines)
    return _Parser(lines).journey(data)


def parse_journey(data: Mapping[str, Any]) -> JourneyDefinition:
    """A journey from already parsed data (the canonical form stored with a published
    version, or YAML loaded elsewhere), validated as :func:`load_journey` does, without
    line numbers."""
    return _Parser({}).journey(data)


# --------------------------------------------------------------------------------------------
# Validation


class _Label(str):
    """A step id shown after its index in paths: ``steps[3] (wait_cart)``."""

    __slots__ = ()


_Where: TypeAlias = tuple[str | int, ...]


def _format(where: Sequence[str | int]) -> str:
    out = ""
    for part in where:
        if isinstance(part, _Label):
            out += f" ({part})"
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _plain(value: Any) -> str:
    return "nothing" if value is None else repr(value)


@lru_cache(maxsize=512)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Scope:
    """What predicates and date expressions may read at one place of the journey."""

    roots: tuple[str, ...]
    facts: bool  # segments, scores and consent

    def describe(self) -> str:
        return ", ".join(f"{r}." for r in self.roots)


_EVENT_ONLY: Final = _Scope(("event",), facts=False)


class _Parser:
    def __init__(self, lines: Mapping[_Path, int]) -> None:
        self.lines = lines
        self.refs: list[tuple[_Where, str]] = []

    # ---------------------------------------------------------------- plumbing

    def fail(self, where: _Where, problem: str) -> NoReturn:
        key = tuple(p for p in where if not isinstance(p, _Label))
        line = None
        while True:
            if key in self.lines:
                line = self.lines[key]
                break
            if not key:
                break
            key = key[:-1]
        raise JourneyError(_format(where) or "journey", problem, line)

    def mapping(
        self,
        raw: Any,
        where: _Where,
        *,
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
        what: str = "a mapping",
    ) -> Mapping[str, Any]:
        if not isinstance(raw, Mapping):
            self.fail(where, f"expected {what}, not {_kind(raw)}")
        allowed = (*required, *optional)
        for key in raw:
            if key not in allowed:
                hint = _did_you_mean(str(key), dict.fromkeys(allowed))
                self.fail((*where, str(key)), f"unknown key{hint}; expected {_one_of(allowed)}")
        for key in required:
            if key not in raw:
                self.fail(where, f"{key!r} is missing")
        return raw

    def text(
        self,
        raw: Any,
        where: _Where,
        *,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
    ) -> str:
        if not isinstance(raw, str) or not raw.strip():
            self.fail(where, f"expected a non-empty text, not {_kind(raw)}")
        value = raw.strip()
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(where, f"{value!r} is not valid: {hint}")
        return value

    def choice(self, raw: Any, where: _Where, options: Sequence[str]) -> str:
        if not isinstance(raw, str) or raw not in options:
            self.fail(where, f"{_plain(raw)} is not one of {', '.join(options)}")
        return raw

    def duration(self, raw: Any, where: _Where) -> timedelta:
        if isinstance(raw, bool) or not isinstance(raw, str):
            self.fail(where, f"{_plain(raw)} is not a duration such as 7d, 48h or 30m")
        try:
            return parse_duration(raw)
        except ValueError as error:
            self.fail(where, str(error))

    def whole(self, raw: Any, where: _Where, *, low: int, high: int) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            self.fail(where, f"{_plain(raw)} is not a whole number from {low} to {high}")
        return raw

    def target(self, raw: Any, where: _Where) -> str | None:
        if raw is None:
            return None
        value = self.text(raw, where, pattern=_STEP_ID, hint="a step id")
        self.refs.append((where, value))
        return value

    # ---------------------------------------------------------------- the journey

    def journey(self, data: Any) -> JourneyDefinition:
        top = self.mapping(
            data,
            (),
            required=("code", "name", "trigger", "max_duration", "steps"),
            optional=(
                "brand",
                "description",
                "instance_key",
                "reentry",
                "timezone",
                "exit_when",
                "start",
            ),
            what="a mapping with code, name, trigger, max_duration and steps",
        )
        code = self.text(
            top["code"], ("code",), pattern=_CODE, hint="lower-case letters, digits and _"
        )
        name = self.text(top["name"], ("name",))
        brand = None if top.get("brand") is None else self.text(top["brand"], ("brand",))
        description = self.optional_text(top.get("description"), ("description",))
        trigger = self.trigger(top["trigger"], ("trigger",))
        instance_key = self.instance_key(top.get("instance_key", "customer"), trigger)
        reentry = self.reentry(top.get("reentry", "after_exit"), ("reentry",))
        max_duration = self.duration(top["max_duration"], ("max_duration",))
        timezone = self.text(top.get("timezone", "customer"), ("timezone",))
        if timezone != "customer" and not _known_zone(timezone):
            self.fail(
                ("timezone",),
                f"{timezone!r} is neither 'customer' nor a time zone such as Europe/Paris",
            )
        exits = self.exit_when(top.get("exit_when", []), ("exit_when",))
        scope = _Scope(
            ("event", "customer", "instance")
            if isinstance(trigger, EventSpec)
            else ("customer", "instance"),
            facts=True,
        )
        raw_steps = top["steps"]
        if not isinstance(raw_steps, list) or not raw_steps:
            self.fail(("steps",), "expected a non-empty list of steps")
        steps: list[Step] = []
        where_of: dict[str, _Where] = {}
        for i, raw in enumerate(raw_steps):
            step = self.step(raw, ("steps", i), scope=scope, keyed=instance_key != "customer")
            if step.id in where_of:
                first = _format(where_of[step.id])
                self.fail(("steps", i, "id"), f"{step.id!r} is already the id of {first}")
            where_of[step.id] = ("steps", i, _Label(step.id))
            steps.append(step)
        start = steps[0].id
        if top.get("start") is not None:
            start = self.text(top["start"], ("start",), pattern=_STEP_ID, hint="a step id")
            if start not in where_of:
                self.fail(("start",), f"no step has the id {start!r}")
        for where, target in self.refs:
            if target not in where_of:
                self.fail(where, f"no step has the id {target!r}{_did_you_mean(target, where_of)}")
        self.graph(steps, start, where_of)
        return JourneyDefinition(
            code=code,
            name=name,
            trigger=trigger,
            max_duration=max_duration,
            steps=tuple(steps),
            start=start,
            instance_key=instance_key,
            reentry=reentry,
            timezone=timezone,
            exit_when=exits,
            brand=brand,
            description=description,
        )

    def optional_text(self, raw: Any, where: _Where) -> str | None:
        return None if raw is None else self.text(raw, where)

    def trigger(self, raw: Any, where: _Where) -> Trigger:
        spec = self.mapping(raw, where, optional=TRIGGER_KINDS, what="a mapping")
        kinds = [k for k in TRIGGER_KINDS if k in spec]
        if len(kinds) != 1:
            self.fail(where, f"expected exactly one of {', '.join(TRIGGER_KINDS)}")
        kind = kinds[0]
        inner = (*where, kind)
        if kind == "event":
            return self.event(spec[kind], inner)
        if kind == "segment":
            seg = self.mapping(spec[kind], inner, required=("code",), optional=("on",))
            on = self.choice(seg.get("on", "enter"), (*inner, "on"), ("enter", "leave"))
            code = self.text(seg["code"], (*inner, "code"), pattern=_NAME, hint="a segment code")
            return SegmentTrigger(code, cast(Literal["enter", "leave"], on))
        if kind == "api":
            if spec[kind] not in (None, {}):
                self.fail(inner, "an api trigger takes no settings: write api: {}")
            return ApiTrigger()
        return self.date_rule(spec[kind], inner)

    def date_rule(self, raw: Any, where: _Where) -> DateRule:
        if not isinstance(raw, Mapping) or "rule" not in raw:
            self.fail(where, f"expected {{rule: ...}} with a rule among {', '.join(DATE_RULES)}")
        rule = self.choice(raw["rule"], (*where, "rule"), DATE_RULES)
        needs = {"birthday": (), "age": ("years",), "offset": ("field", "offset")}
        spec = self.mapping(
            raw,
            where,
            required=("rule", *needs.get(rule, ("days",))),
            optional=("field",),
        )
        defaults = {"no_purchase": "last_purchase_at", "offset": ""}
        field_name = spec.get("field", defaults.get(rule, "birth_date"))
        field_name = self.text(field_name, (*where, "field"), pattern=_PART, hint="an attribute")
        field_name = field_name.removeprefix("customer.")
        typed = cast(Literal["birthday", "age", "offset", "no_purchase"], rule)
        if rule == "age":
            years = self.whole(spec["years"], (*where, "years"), low=1, high=150)
            return DateRule(typed, field_name, years=years)
        if rule == "offset":
            offset = self.signed_days(spec["offset"], (*where, "offset"))
            return DateRule(typed, field_name, offset=offset)
        if rule == "no_purchase":
            days = self.whole(spec["days"], (*where, "days"), low=1, high=36500)
            return DateRule(typed, field_name, days=days)
        return DateRule(typed, field_name)

    def signed_days(self, raw: Any, where: _Where) -> timedelta:
        found = _SIGNED.fullmatch(raw) if isinstance(raw, str) else None
        if found is None:
            self.fail(where, f"{_plain(raw)} is not an offset in days such as -30d or 7d")
        value = parse_duration(found.group(2))
        if value % timedelta(days=1):
            self.fail(where, f"{raw!r}: a date offset is a whole number of days")
        return -value if found.group(1) == "-" else value

    def instance_key(self, raw: Any, trigger: Trigger) -> str:
        where: _Where = ("instance_key",)
        key = self.text(raw, where)
        if key == "customer":
            return key
        parts = key.split(".")
        if (
            len(parts) < 3
            or parts[:2] != ["event", "properties"]
            or not all(_PART.fullmatch(p) for p in parts[2:])
        ):
            self.fail(where, f"{key!r} is neither 'customer' nor event.properties.<name>")
        if not isinstance(trigger, EventSpec):
            self.fail(where, "only a journey started by an event can be keyed by its property")
        return key

    def reentry(self, raw: Any, where: _Where) -> Reentry:
        if isinstance(raw, Mapping):
            spec = self.mapping(raw, where, required=("cooldown",))
            return Reentry("cooldown", self.duration(spec["cooldown"], (*where, "cooldown")))
        options = ("never", "after_exit", "always")
        if raw not in options:
            self.fail(
                where, f"{_plain(raw)} is not one of {', '.join(options)} or {{cooldown: 30d}}"
            )
        return Reentry(cast(Literal["never", "after_exit", "always"], raw))

    def exit_when(self, raw: Any, where: _Where) -> tuple[ExitCriterion, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.fail(where, "expected a list of {event: {...}, reason: ...}")
        out = []
        for i, item in enumerate(raw):
            spec = self.mapping(item, (*where, i), required=("event",), optional=("reason",))
            event = self.event(spec["event"], (*where, i, "event"))
            reason = spec.get("reason", event.type)
            reason = self.text(reason, (*where, i, "reason"), pattern=_NAME, hint="a reason code")
            out.append(ExitCriterion(event, reason))
        return tuple(out)

    def event(self, raw: Any, where: _Where) -> EventSpec:
        spec = self.mapping(raw, where, required=("type",), optional=("where",))
        kind = self.text(spec["type"], (*where, "type"))
        clause = spec.get("where")
        predicate = None
        if clause is not None:
            predicate = self.predicate(clause, (*where, "where"), _EVENT_ONLY)
        return EventSpec(kind, predicate)

    # ---------------------------------------------------------------- predicates

    def path(self, raw: Any, where: _Where, scope: _Scope) -> str:
        path = self.text(raw, where)
        parts = path.split(".")
        root = parts[0]
        if root not in scope.roots:
            self.fail(where, f"{path!r} is not a field here: start it with {scope.describe()}")
        if len(parts) < 2 or not all(_PART.fullmatch(p) for p in parts[1:]):
            self.fail(where, f"{path!r} is not a field path such as {root}.name")
        second = parts[1]
        if root == "event":
            if second not in EVENT_FIELDS:
                self.fail(where, f"{path!r}: an event has {', '.join(EVENT_FIELDS)}")
            if (second == "properties") != (len(parts) > 2):
                self.fail(where, f"{path!r}: write event.properties.<name> or event.{second}")
        elif root == "instance":
            if second in INSTANCE_MAPS:
                if len(parts) != 3:
                    self.fail(where, f"{path!r}: write instance.{second}.<step id>")
            elif second not in INSTANCE_FIELDS or len(parts) != 2:
                known = (*INSTANCE_FIELDS, *(f"{m}.<step>" for m in INSTANCE_MAPS))
                self.fail(where, f"{path!r}: an instance has {', '.join(known)}")
        return path

    def predicate(self, raw: Any, where: _Where, scope: _Scope) -> Predicate:
        forms = ("field", "all", "any", "not", "segment", "score", "consent")
        if not isinstance(raw, Mapping):
            self.fail(
                where, f"expected a predicate ({{{', '.join(forms)}: ...}}), not {_kind(raw)}"
            )
        found = [f for f in forms if f in raw]
        if len(found) != 1:
            self.fail(where, f"a predicate has exactly one of {', '.join(forms)}")
        form = found[0]
        inner = (*where, form)
        if form == "field":
            path = self.path(raw["field"], inner, scope)
            ops = self.operators(raw, where, ("field",))
            return FieldTest(path, ops)
        if len(raw) != 1:
            extra = next(str(k) for k in raw if k != form)
            self.fail((*where, extra), f"unknown key beside {form!r}")
        value = raw[form]
        if form in ("all", "any"):
            if not isinstance(value, list) or not value:
                self.fail(inner, "expected a non-empty list of predicates")
            items = tuple(self.predicate(p, (*inner, i), scope) for i, p in enumerate(value))
            return AllOf(items) if form == "all" else AnyOf(items)
        if form == "not":
            return Not(self.predicate(value, inner, scope))
        if not scope.facts:
            self.fail(inner, f"{form} cannot be tested here: only fields of the event can")
        if form == "segment":
            return InSegment(self.text(value, inner, pattern=_NAME, hint="a segment code"))
        if form == "score":
            if not isinstance(value, Mapping) or "name" not in value:
                self.fail(inner, "expected {name: <score>, <op>: <number>}")
            name = self.text(value["name"], (*inner, "name"), pattern=_NAME, hint="a score name")
            ops = self.operators(value, inner, ("name",), numeric=True)
            return ScoreTest(name, ops)
        spec = self.mapping(value, inner, required=("channel",), optional=("purpose",))
        channel = self.choice(spec["channel"], (*inner, "channel"), CONTACT_CHANNELS)
        purpose = self.text(spec.get("purpose", DEFAULT_PURPOSE), (*inner, "purpose"))
        return ConsentAllowed(channel, purpose)

    def operators(
        self, raw: Mapping[str, Any], where: _Where, skip: Sequence[str], numeric: bool = False
    ) -> tuple[tuple[str, Any], ...]:
        allowed = ("eq", "ne", "gt", "gte", "lt", "lte", "exists") if numeric else OPERATORS
        ops: list[tuple[str, Any]] = []
        for key, value in raw.items():
            if key in skip:
                continue
            at = (*where, str(key))
            if key not in allowed:
                self.fail(at, f"unknown operator; use {', '.join(allowed)}")
            ops.append((key, self.operand(key, value, at, numeric)))
        if not ops:
            self.fail(where, f"no operator: add one of {', '.join(allowed)}")
        return tuple(ops)

    def operand(self, op: str, value: Any, where: _Where, numeric: bool) -> Any:
        if op == "exists":
            if not isinstance(value, bool):
                self.fail(where, "expected true or false")
            return value
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                self.fail(where, "expected a non-empty list of values")
            return tuple(self.scalar(v, (*where, i), numeric) for i, v in enumerate(value))
        scalar = self.scalar(value, where, numeric)
        if op in ("gt", "gte", "lt", "lte") and isinstance(scalar, bool):
            self.fail(where, "true and false cannot be ordered: compare a number, text or date")
        return scalar

    def scalar(self, value: Any, where: _Where, numeric: bool) -> Scalar:
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            self.fail(where, f"{_plain(value)} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(where, "expected a finite number")
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, str | int | float | bool):
            return value
        self.fail(where, f"expected a number, a text, a date or true/false, not {_kind(value)}")

    # ---------------------------------------------------------------- steps

    def step(self, raw: Any, where: _Where, *, scope: _Scope, keyed: bool) -> Step:
        if not isinstance(raw, Mapping):
            self.fail(where, f"expected a step: {{id: ..., {' | '.join(STEP_KINDS)}: ...}}")
        step_id = self.text(
            raw.get("id"), (*where, "id"), pattern=_STEP_ID, hint="letters, digits, _ and -"
        )
        where = (*where, _Label(step_id))
        kinds = [k for k in STEP_KINDS if k in raw]
        if len(kinds) != 1:
            self.fail(where, f"a step has exactly one of {', '.join(STEP_KINDS)}")
        kind = kinds[0]
        links = {"wait_event": ("on_event", "on_timeout"), "branch": ("else",)}
        extra = links.get(kind, () if kind in ("split", "exit") else ("next",))
        self.mapping(raw, where, required=("id", kind), optional=("description", *extra))
        description = self.optional_text(raw.get("description"), (*where, "description"))
        spec = raw[kind]
        at = (*where, kind)
        nxt = self.target(raw.get("next"), (*where, "next")) if "next" in extra else None
        if kind == "wait":
            return self.wait(step_id, spec, at, scope, nxt, description)
        if kind == "wait_event":
            event_spec = self.mapping(spec, at, required=("event", "timeout"), optional=("match",))
            event = self.event(event_spec["event"], (*at, "event"))
            timeout = self.duration(event_spec["timeout"], (*at, "timeout"))
            match = event_spec.get("match")
            if keyed and match is None:
                self.fail(
                    at,
                    "'match' is missing: name the awaited event's property that must equal "
                    "the instance key, such as match: properties.cart_id",
                )
            if match is not None:
                if not keyed:
                    self.fail(
                        (*at, "match"),
                        "only a journey keyed by an event property (instance_key) can match",
                    )
                match = self.text(match, (*at, "match")).removeprefix("event.")
                parts = match.split(".")
                if (
                    len(parts) < 2
                    or parts[0] != "properties"
                    or not all(_PART.fullmatch(p) for p in parts[1:])
                ):
                    self.fail((*at, "match"), f"{match!r} is not a path such as properties.cart_id")
            return WaitEventStep(
                step_id,
                event,
                timeout,
                match=match,
                on_event=self.target(raw.get("on_event"), (*where, "on_event")),
                on_timeout=self.target(raw.get("on_timeout"), (*where, "on_timeout")),
                description=description,
            )
        if kind == "branch":
            if not isinstance(spec, list) or not spec:
                self.fail(at, "expected a non-empty list of {when: <predicate>, next: <step>}")
            cases = []
            for i, item in enumerate(spec):
                case = self.mapping(item, (*at, i), required=("when", "next"))
                when = self.predicate(case["when"], (*at, i, "when"), scope)
                cases.append(BranchCase(when, self.target(case["next"], (*at, i, "next"))))
            otherwise = self.target(raw.get("else"), (*where, "else"))
            return BranchStep(step_id, tuple(cases), otherwise, description)
        if kind == "split":
            return self.split(step_id, spec, at, description)
        if kind == "action":
            return self.action(step_id, spec, at, nxt, description)
        if kind == "update":
            return self.update(step_id, spec, at, nxt, description)
        if kind == "goal":
            goal = self.mapping(spec, at, required=("name",))
            name = self.text(goal["name"], (*at, "name"), pattern=_NAME, hint="a goal name")
            return GoalStep(step_id, name, nxt, description)
        if spec is None:
            return ExitStep(step_id, description=description)
        exit_spec = self.mapping(spec, at, optional=("reason",))
        reason = self.text(
            exit_spec.get("reason", "finished"), (*at, "reason"), pattern=_NAME, hint="a code"
        )
        return ExitStep(step_id, reason, description)

    def wait(
        self,
        step_id: str,
        raw: Any,
        where: _Where,
        scope: _Scope,
        nxt: str | None,
        description: str | None,
    ) -> WaitStep:
        spec = self.mapping(raw, where, optional=("duration", "until", "window"))
        if not spec:
            self.fail(where, "expected at least one of duration, until and window")
        if "duration" in spec and "until" in spec:
            self.fail(where, "a wait has a duration or an until date, not both")
        duration = until = window = None
        if "duration" in spec:
            duration = self.duration(spec["duration"], (*where, "duration"))
        if "until" in spec:
            until = self.date_expr(spec["until"], (*where, "until"), scope)
        if "window" in spec:
            window = self.window(spec["window"], (*where, "window"))
        return WaitStep(step_id, nxt, duration, until, window, description)

    def date_expr(self, raw: Any, where: _Where, scope: _Scope) -> DateExpr:
        found = _DATE_EXPR.fullmatch(raw) if isinstance(raw, str) else None
        if found is None:
            self.fail(
                where,
                f"{_plain(raw)} is not a date expression such as 'customer.contract_end - 30d'",
            )
        path = self.path(found.group(1), where, scope)
        offset = timedelta(0)
        if found.group(3):
            offset = parse_duration(found.group(3))
            if found.group(2) == "-":
                offset = -offset
        return DateExpr(path, offset)

    def window(self, raw: Any, where: _Where) -> Window:
        spec = self.mapping(raw, where, optional=("days", "hours"))
        if not spec:
            self.fail(where, "expected days, hours or both")
        days = hours = None
        if spec.get("days") is not None:
            days = self.days(spec["days"], (*where, "days"))
        if spec.get("hours") is not None:
            text = spec["hours"]
            try:
                hours = parse_hours(text if isinstance(text, str) else None)
            except ConsentRuleError as error:
                self.fail((*where, "hours"), error.message)
            if hours is None:
                self.fail((*where, "hours"), "expected spans such as '09:00-12:00,14:00-18:00'")
        return Window(days, hours)

    def days(self, raw: Any, where: _Where) -> str:
        if not isinstance(raw, str) or not raw.strip():
            self.fail(where, "expected days such as mon-fri or mon,wed,fri")
        names: list[str] = []
        for part in raw.lower().split(","):
            part = part.strip()
            found = _DAY_RANGE.fullmatch(part)
            if found and found.group(1) in DAYS and found.group(2) in DAYS:
                first, last = DAYS.index(found.group(1)), DAYS.index(found.group(2))
                names.extend(DAYS[(first + k) % 7] for k in range((last - first) % 7 + 1))
            else:
                names.append(part)
        try:
            days = parse_days(",".join(names))
        except ConsentRuleError as error:
            self.fail(where, error.message.replace("separated by commas", "or a range mon-fri"))
        assert days is not None
        return days

    def split(self, step_id: str, raw: Any, where: _Where, description: str | None) -> SplitStep:
        spec = self.mapping(raw, where, required=("variants",), optional=("salt",))
        salt = None if spec.get("salt") is None else self.text(spec["salt"], (*where, "salt"))
        raw_variants = spec["variants"]
        at = (*where, "variants")
        if not isinstance(raw_variants, list) or not raw_variants:
            self.fail(at, "expected a non-empty list of {name, weight, next}")
        variants: list[Variant] = []
        seen: set[str] = set()
        for i, item in enumerate(raw_variants):
            v = self.mapping(
                item, (*at, i), required=("name", "weight"), optional=("next", "holdout")
            )
            name = self.text(v["name"], (*at, i, "name"), pattern=_NAME, hint="a variant name")
            if name in seen:
                self.fail((*at, i, "name"), f"the variant name {name!r} is used twice")
            seen.add(name)
            weight = v["weight"]
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight <= 0
            ):
                self.fail((*at, i, "weight"), f"{_plain(weight)} is not a positive number")
            holdout = v.get("holdout", False)
            if not isinstance(holdout, bool):
                self.fail((*at, i, "holdout"), "expected true or false")
            nxt = self.target(v.get("next"), (*at, i, "next"))
            variants.append(Variant(name, weight, nxt, holdout))
        return SplitStep(step_id, tuple(variants), salt, description)

    def action(
        self,
        step_id: str,
        raw: Any,
        where: _Where,
        nxt: str | None,
        description: str | None,
    ) -> ActionStep:
        spec = self.mapping(
            raw,
            where,
            required=("channel",),
            optional=(
                "message",
                "purpose",
                "on_suppressed",
                "retry_after",
                "queue",
                "url",
                "properties",
            ),
        )
        channel = self.choice(spec["channel"], (*where, "channel"), ACTION_CHANNELS)
        message = spec.get("message")
        if message is not None:
            message = self.text(message, (*where, "message"))
        elif channel != "webhook":
            self.fail(where, f"'message' is missing: a {channel} action names its message")
        purpose = self.text(spec.get("purpose", DEFAULT_PURPOSE), (*where, "purpose"))
        on_suppressed = self.choice(
            spec.get("on_suppressed", "exit"), (*where, "on_suppressed"), ON_SUPPRESSED
        )
        retry_after = None
        if "retry_after" in spec:
            if on_suppressed != "wait":
                self.fail((*where, "retry_after"), "only with on_suppressed: wait")
            retry_after = self.duration(spec["retry_after"], (*where, "retry_after"))
        queue = url = None
        if "queue" in spec:
            if channel not in ("advisor_task", "call_center"):
                self.fail((*where, "queue"), "only an advisor_task or call_center action has one")
            queue = self.text(spec["queue"], (*where, "queue"), pattern=_NAME, hint="a queue")
        if channel == "webhook":
            if "url" not in spec:
                self.fail(where, "'url' is missing: a webhook action names its https:// URL")
            url = self.text(spec["url"], (*where, "url"))
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                self.fail((*where, "url"), f"{url!r} is not an http(s) URL")
        elif "url" in spec:
            self.fail((*where, "url"), "only a webhook action has a url")
        properties: tuple[tuple[str, Scalar], ...] = ()
        if spec.get("properties") is not None:
            props = spec["properties"]
            if not isinstance(props, Mapping):
                self.fail((*where, "properties"), "expected a mapping of names to values")
            properties = tuple(
                (
                    self.text(k, (*where, "properties", str(k)), pattern=_PART, hint="a name"),
                    self.scalar(v, (*where, "properties", str(k)), numeric=False),
                )
                for k, v in props.items()
            )
        return ActionStep(
            step_id,
            channel,
            message,
            nxt,
            purpose,
            cast(Literal["continue", "exit", "wait"], on_suppressed),
            retry_after,
            queue,
            url,
            properties,
            description,
        )

    def update(
        self,
        step_id: str,
        raw: Any,
        where: _Where,
        nxt: str | None,
        description: str | None,
    ) -> UpdateStep:
        forms = ("tag", "set", "score")
        spec = self.mapping(raw, where, optional=forms)
        if len(spec) != 1:
            self.fail(where, "expected exactly one of tag, set and score")
        form = next(iter(spec))
        at = (*where, form)
        if form == "tag":
            tag = self.text(spec["tag"], at, pattern=_NAME, hint="a tag")
            return UpdateStep(step_id, "tag", tag, None, nxt, description)
        if form == "set":
            s = self.mapping(spec["set"], at, required=("attribute", "value"))
            name = self.text(s["attribute"], (*at, "attribute"), pattern=_PART, hint="a name")
            value = None if s["value"] is None else self.scalar(s["value"], (*at, "value"), False)
            return UpdateStep(step_id, "attribute", name, value, nxt, description)
        s = self.mapping(spec["score"], at, required=("name", "value"))
        name = self.text(s["name"], (*at, "name"), pattern=_NAME, hint="a score name")
        number = self.scalar(s["value"], (*at, "value"), numeric=True)
        return UpdateStep(step_id, "score", name, number, nxt, description)

    # ---------------------------------------------------------------- the graph

    def graph(self, steps: Sequence[Step], start: str, where_of: Mapping[str, _Where]) -> None:
        succ = {s.id: [t for _, t in s.targets() if t is not None] for s in steps}
        # 1. Every step reachable from the start.
        seen = {start}
        todo = [start]
        while todo:
            for t in succ[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        for s in steps:
            if s.id not in seen:
                self.fail(where_of[s.id], f"no path leads here from the start step {start!r}")
        # 2. Every loop waits: no cycle among the steps that never wait.
        waits = {s.id for s in steps if isinstance(s, WaitStep | WaitEventStep)}
        cycle = _find_cycle([s.id for s in steps if s.id not in waits], succ, waits)
        if cycle:
            self.fail(
                where_of[cycle[0]],
                f"the loop {' -> '.join([*cycle, cycle[0]])} has no wait or wait_event step; "
                "a loop must wait",
            )
        # 3. Every step has a way to an end (an exit, a goal without next, or no next).
        ends = {s.id for s in steps if any(t is None for _, t in s.targets()) or not s.targets()}
        pred: dict[str, list[str]] = {s.id: [] for s in steps}
        for s in steps:
            for t in succ[s.id]:
                pred[t].append(s.id)
        can_end = set(ends)
        todo = list(ends)
        while todo:
            for p in pred[todo.pop()]:
                if p not in can_end:
                    can_end.add(p)
                    todo.append(p)
        for s in steps:
            if s.id not in can_end:
                self.fail(
                    where_of[s.id],
                    "no path from this step ever ends: every way out loops back; add a branch "
                    "to an exit step",
                )


def _find_cycle(
    nodes: Sequence[str], succ: Mapping[str, Sequence[str]], skip: set[str]
) -> list[str] | None:
    """A cycle among ``nodes`` (ignoring the ``skip`` ones), as the list of its steps."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in nodes:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(succ[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if child in skip:
                    continue
                if state.get(child) == 1:
                    return path[path.index(child) :]
                if child not in state:
                    state[child] = 1
                    stack.append((child, iter(succ[child])))
                    path.append(child)
                    break
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _one_of(options: Sequence[str]) -> str:
    return ", ".join(options) if options else "no keys"


def _did_you_mean(target: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(target, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
