"""Journey pages for staff: the list (status, current version, live instances, sends of the
last 7 days), a journey's page (its graph with live counts per step, refreshed by htmx, its
settings, versions and YAML source), pausing and resuming, and the "what would happen"
simulation over a period and a population.

Viewing needs ``aggregates:read``; pausing, resuming and simulating ``campaigns:design`` as
well, the rule of the campaign pages (planning and cancelling a campaign). Nothing here names
a customer: the graph, its counts and the simulation's report are aggregates only, so the
analyst and agency roles see the same pages as the marketer. Every action writes an audit
row. Times are typed and shown in Paris time.

The graph is laid out here, on the server, top-down: the trigger, then each step in the layer
of its longest path from the start; links that jump layers pass through narrow lanes; links
back up (a loop) run along the right-hand side. The steps are an ordered list of boxes (read
in the order of the definition by a screen reader, each with where it leads in words); the
arrows are an SVG drawn behind them, hidden from assistive technology.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tournesol.auth import rules as auth_rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.customers.models import Brand, Customer
from tournesol.db import utcnow
from tournesol.segments import service as segment_service
from tournesol.segments.compiler import DefinitionError
from tournesol.triggers import service
from tournesol.triggers.definition import (
    ActionStep,
    AllOf,
    AnyOf,
    ApiTrigger,
    BranchStep,
    ConsentAllowed,
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
    Trigger,
    UpdateStep,
    WaitEventStep,
    WaitStep,
    Window,
)
from tournesol.triggers.models import Journey, JourneyInstance, JourneyStepLog, JourneyVersion
from tournesol.triggers.rules import Event
from tournesol.web.deps import SessionDep, language_of, render, require
from tournesol.web.i18n import translations

router = APIRouter(include_in_schema=False)

Viewer = Annotated[Principal, Depends(require(auth_rules.AGGREGATES_READ))]
Operator = Annotated[
    Principal, Depends(require(auth_rules.AGGREGATES_READ, auth_rules.CAMPAIGNS_DESIGN))
]
PARIS: Final = ZoneInfo("Europe/Paris")
REFRESH_SECONDS: Final = 10
SENDS_WINDOW: Final = timedelta(days=7)
PAUSABLE: Final = ("active",)
RESUMABLE: Final = ("paused", "archived")
# The simulation: at most this many customers, over at most this long, the clock moving by
# the hour (each hour runs the inbox and the due instances once: a month is 744 rounds).
MAX_SIMULATED: Final = 5000
DEFAULT_SIMULATED: Final = 500
MAX_PERIOD: Final = timedelta(days=31)
SIMULATION_STEP: Final = timedelta(hours=1)
POPULATIONS: Final = ("segment", "ids", "all")
# Step-log outcomes whose detail is shown: reasons, branch cases, variants (never the
# ``event`` outcome, whose detail is an event id).
DETAILED: Final = ("suppressed", "interrupted", "branch", "variant", "holdout")
OUTCOME_ORDER: Final = (
    "waiting", "retrying", "awaiting_gate", "event", "timeout", "elapsed", "branch", "case",
    "else", "variant", "holdout", "sent", "suppressed", "updated", "goal", "exit",
    "missing_date", "interrupted",
)  # fmt: skip
ENTRY: Final = "__entry__"


def _(text: str) -> str:
    """Marks an English message for translation; the page translates it when it renders."""
    return text


Gettext = Callable[[str], str]
Ngettext = Callable[[str, str, int], str]


# --------------------------------------------------------------------------------------------
# A journey in words (the reader's language)


@dataclass(frozen=True)
class Words:
    """The reader's translations, and the journey's parts described with them."""

    gettext: Gettext
    ngettext: Ngettext

    def t(self, message: str, **values: Any) -> str:
        text = self.gettext(message)
        return text % values if values else text

    def duration(self, value: timedelta) -> str:
        minutes = int(value.total_seconds() // 60)
        if minutes and minutes % (24 * 60) == 0:
            n = minutes // (24 * 60)
            return self.ngettext("%(num)d day", "%(num)d days", n) % {"num": n}
        if minutes and minutes % 60 == 0:
            n = minutes // 60
            return self.ngettext("%(num)d hour", "%(num)d hours", n) % {"num": n}
        return self.ngettext("%(num)d minute", "%(num)d minutes", minutes) % {"num": minutes}

    def days(self, days: str) -> str:
        """``mon,tue,wed,thu,fri`` as ``Mon–Fri`` (runs of consecutive days as ranges)."""
        order = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        names = {
            "mon": _("Mon"), "tue": _("Tue"), "wed": _("Wed"), "thu": _("Thu"),
            "fri": _("Fri"), "sat": _("Sat"), "sun": _("Sun"),
        }  # fmt: skip
        chosen = sorted(order.index(d) for d in days.split(",") if d in order)
        runs: list[list[int]] = []
        for i in chosen:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        parts = []
        for run in runs:
            first, last = self.gettext(names[order[run[0]]]), self.gettext(names[order[run[-1]]])
            if len(run) >= 3:
                parts.append(f"{first}–{last}")
            else:
                parts.extend(self.gettext(names[order[i]]) for i in run)
        return ", ".join(parts)

    def window(self, window: Window) -> str:
        parts = []
        if window.days:
            parts.append(self.days(window.days))
        if window.hours:
            parts.append(window.hours.replace("-", "–").replace(",", ", "))
        return " ".join(parts)

    def value(self, value: Any) -> str:
        if isinstance(value, list | tuple):
            return ", ".join(self.value(v) for v in value)
        if isinstance(value, bool):
            return self.t(_("yes")) if value else self.t(_("no"))
        return str(value)

    def ops(self, ops: Sequence[tuple[str, Any]]) -> str:
        symbols = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
        parts = []
        for op, value in ops:
            if op in symbols:
                parts.append(f"{symbols[op]} {self.value(value)}")
            elif op == "in":
                parts.append(self.t(_("in %(values)s"), values=self.value(value)))
            elif op == "not_in":
                parts.append(self.t(_("not in %(values)s"), values=self.value(value)))
            elif op == "exists":
                parts.append(self.t(_("is set")) if value else self.t(_("is not set")))
            elif op == "contains":
                parts.append(self.t(_("contains %(value)s"), value=self.value(value)))
            else:
                parts.append(f"{op} {self.value(value)}")
        return self.t(_(" and ")).join(parts)

    def predicate(self, p: Predicate, nested: bool = False) -> str:
        """A condition in words: ``customer.rfm_segment in champions, loyal``."""
        if isinstance(p, FieldTest):
            return f"{p.field} {self.ops(p.ops)}"
        if isinstance(p, AllOf | AnyOf):
            joiner = self.t(_(" and ")) if isinstance(p, AllOf) else self.t(_(" or "))
            text = joiner.join(self.predicate(item, True) for item in p.items)
            return f"({text})" if nested and len(p.items) > 1 else text
        if isinstance(p, Not):
            return self.t(_("not (%(condition)s)"), condition=self.predicate(p.item))
        if isinstance(p, InSegment):
            return self.t(_("in segment %(code)s"), code=p.code)
        if isinstance(p, ScoreTest):
            return self.t(_("score %(name)s %(test)s"), name=p.name, test=self.ops(p.ops))
        assert isinstance(p, ConsentAllowed)
        return self.t(
            _("consent to %(channel)s (%(purpose)s)"),
            channel=self.channel(p.channel),
            purpose=self.purpose(p.purpose),
        )

    def channel(self, channel: str) -> str:
        names = {
            "email": _("e-mail"), "sms": _("SMS"), "postal": _("letter"),
            "call_center": _("call-centre task"), "advisor_task": _("advisor task"),
            "webhook": _("webhook"), "phone": _("phone"),
        }  # fmt: skip
        return self.gettext(names[channel]) if channel in names else channel

    def purpose(self, purpose: str) -> str:
        names = {"marketing": _("marketing"), "service": _("service")}
        return self.gettext(names[purpose]) if purpose in names else purpose

    def event(self, spec: EventSpec) -> str:
        if spec.where is None:
            return spec.type
        return self.t(
            _("%(type)s where %(condition)s"),
            type=spec.type,
            condition=self.predicate(spec.where),
        )

    def trigger(self, trigger: Trigger) -> str:
        if isinstance(trigger, EventSpec):
            return self.t(_("event %(event)s"), event=self.event(trigger))
        if isinstance(trigger, SegmentTrigger):
            if trigger.on == "enter":
                return self.t(_("entering segment %(code)s"), code=trigger.code)
            return self.t(_("leaving segment %(code)s"), code=trigger.code)
        if isinstance(trigger, ApiTrigger):
            return self.t(_("called through the API"))
        assert isinstance(trigger, DateRule)
        if trigger.rule == "birthday":
            return self.t(_("the anniversary of %(field)s"), field=trigger.field)
        if trigger.rule == "age":
            return self.t(
                _("the day the customer turns %(years)s (%(field)s)"),
                years=trigger.years,
                field=trigger.field,
            )
        if trigger.rule == "offset":
            offset = trigger.offset or timedelta(0)
            sign = "−" if offset < timedelta(0) else "+"
            return self.t(
                _("the day of %(field)s %(sign)s %(offset)s"),
                field=trigger.field,
                sign=sign,
                offset=self.duration(abs(offset)) if offset else "0",
            )
        return self.t(
            _("%(days)s days after %(field)s without a purchase"),
            days=trigger.days,
            field=trigger.field,
        )

    def target(self, step_id: str | None) -> str:
        return step_id if step_id is not None else self.t(_("end"))

    def kind(self, step: Step) -> str:
        """The box's title: what the step does."""
        if isinstance(step, ActionStep):
            titles = {
                "email": _("E-mail"), "sms": _("SMS"), "postal": _("Letter"),
                "call_center": _("Call-centre task"), "advisor_task": _("Advisor task"),
                "webhook": _("Webhook"),
            }  # fmt: skip
            return self.gettext(titles.get(step.channel, step.channel))
        names = {
            "wait": _("Wait"), "wait_event": _("Wait for an event"), "branch": _("Branch"),
            "split": _("Split"), "update": _("Update"), "goal": _("Goal"), "exit": _("Exit"),
        }  # fmt: skip
        return self.gettext(names[step.kind])

    def params(self, step: Step) -> list[str]:
        """The step's key parameters, one phrase each."""
        out: list[str] = []
        if isinstance(step, WaitStep):
            if step.duration is not None:
                out.append(self.duration(step.duration))
            if step.until is not None:
                out.append(self.t(_("until %(date)s"), date=step.until.text()))
            if step.window is not None:
                when = self.window(step.window)
                if step.duration is None and step.until is None:
                    out.append(self.t(_("until the next moment in %(when)s"), when=when))
                else:
                    out.append(self.t(_("then the next moment in %(when)s"), when=when))
        elif isinstance(step, WaitEventStep):
            out.append(self.t(_("for %(event)s"), event=self.event(step.event)))
            if step.match is not None:
                out.append(
                    self.t(_("with the same %(key)s"), key=step.match.removeprefix("properties."))
                )
            out.append(self.t(_("at most %(duration)s"), duration=self.duration(step.timeout)))
        elif isinstance(step, BranchStep):
            for i, case in enumerate(step.cases, 1):
                out.append(
                    self.t(
                        _("%(n)s. if %(condition)s → %(target)s"),
                        n=i,
                        condition=self.predicate(case.when),
                        target=self.target(case.next),
                    )
                )
            out.append(self.t(_("otherwise → %(target)s"), target=self.target(step.otherwise)))
        elif isinstance(step, SplitStep):
            total = sum(v.weight for v in step.variants) or 1
            for v in step.variants:
                share = self.t(_("%(num)s%%"), num=f"{100 * v.weight / total:.0f}")
                if v.holdout and v.name.lower() != "holdout":
                    message = _("%(name)s (holdout) %(share)s → %(target)s")
                else:
                    message = _("%(name)s %(share)s → %(target)s")
                out.append(self.t(message, name=v.name, share=share, target=self.target(v.next)))
        elif isinstance(step, ActionStep):
            if step.message is not None:
                out.append(self.t(_("message %(code)s"), code=step.message))
            if step.url is not None:
                out.append(self.t(_("to %(url)s"), url=step.url))
            if step.queue is not None:
                out.append(self.t(_("queue %(queue)s"), queue=step.queue))
            if step.purpose != "marketing":
                out.append(self.t(_("purpose: %(purpose)s"), purpose=self.purpose(step.purpose)))
            if step.on_suppressed == "continue":
                out.append(self.t(_("if suppressed: go on")))
            elif step.on_suppressed == "exit":
                out.append(self.t(_("if suppressed: exit")))
            else:
                retry = step.retry_after or timedelta(days=1)
                out.append(
                    self.t(
                        _("if suppressed: retry after %(duration)s"), duration=self.duration(retry)
                    )
                )
        elif isinstance(step, UpdateStep):
            if step.what == "tag":
                out.append(self.t(_("tag %(name)s"), name=step.name))
            elif step.what == "attribute":
                out.append(
                    self.t(
                        _("set %(name)s = %(value)s"), name=step.name, value=self.value(step.value)
                    )
                )
            else:
                out.append(
                    self.t(
                        _("score %(name)s = %(value)s"),
                        name=step.name,
                        value=self.value(step.value),
                    )
                )
        elif isinstance(step, GoalStep):
            out.append(step.name)
        else:
            assert isinstance(step, ExitStep)
            out.append(self.t(_("reason: %(reason)s"), reason=step.reason))
        return out

    def links(self, journey_def: JourneyDefinition, step_id: str) -> list[str]:
        """Where the step leads, in words (what the arrows show)."""
        labels = {"next": "", "on_event": _("if the event comes"), "on_timeout": _("on timeout")}
        out = []
        for source, target, label in journey_def.edges():
            if source != step_id:
                continue
            if label in labels:
                words = self.gettext(labels[label]) if labels[label] else ""
            elif label.startswith("when "):
                words = self.t(_("case %(n)s"), n=label.removeprefix("when "))
            elif label == "else":
                words = self.t(_("otherwise"))
            else:
                words = label
            out.append(f"{target} ({words})" if words else target)
        return out

    def reentry(self, journey_def: JourneyDefinition) -> str:
        r = journey_def.reentry
        if r.policy == "never":
            return self.t(_("never"))
        if r.policy == "after_exit":
            return self.t(_("once the previous instance has ended"))
        if r.policy == "cooldown" and r.cooldown is not None:
            return self.t(
                _("%(duration)s after the previous instance ended"),
                duration=self.duration(r.cooldown),
            )
        return self.t(_("always, even while one runs"))

    def instance_key(self, journey_def: JourneyDefinition) -> str:
        if journey_def.key_property is None:
            return self.t(_("one per customer"))
        return self.t(_("one per %(property)s"), property=journey_def.key_property)

    def timezone(self, journey_def: JourneyDefinition) -> str:
        if journey_def.timezone == "customer":
            return self.t(_("the customer's"))
        return journey_def.timezone


def words_for(request: Request) -> Words:
    tr = translations(language_of(request))
    return Words(tr.gettext, tr.ngettext)


# --------------------------------------------------------------------------------------------
# Counts. step_details, instance_summary and list_figures are queries that triggers.service
# does not offer (yet): they read the journey tables only, and belong there in time.


@dataclass(frozen=True)
class CountLine:
    """One line of a box's counts: ``kind`` an outcome or state (``waiting``, ``sent``...),
    a branch ``case``/``else``, a ``variant``, or a ``reason`` under the line above it
    (``level`` 1); ``arg`` the case, variant or reason; ``number`` how many."""

    kind: str
    number: int
    level: int = 0
    arg: str | None = None
    target: str | None = None


def _rank(kind: str) -> int:
    return OUTCOME_ORDER.index(kind) if kind in OUTCOME_ORDER else len(OUTCOME_ORDER)


def count_lines(
    step: Step | None,
    counts: Mapping[str, int],
    details: Mapping[str, Mapping[str, int]] | None = None,
) -> list[CountLine]:
    """A step's counts as display lines: the instances there now first, then each outcome of
    its visits; suppressions and interruptions with their reasons below them, a branch by
    case and a split by variant when ``details`` gives them."""
    details = details or {}
    lines: list[CountLine] = []
    for kind in sorted(counts, key=lambda k: (_rank(k), k)):
        number = counts[kind]
        if not number:
            continue
        if kind == "waiting" and isinstance(step, ActionStep):
            lines.append(CountLine("retrying", number))
        elif kind == "branch" and details.get("branch"):
            for detail, n in sorted(details["branch"].items(), key=lambda i: _case_order(i[0])):
                case, _sep, target = (detail or "").partition(" -> ")
                if case.startswith("when "):
                    lines.append(
                        CountLine("case", n, arg=case.removeprefix("when "), target=target)
                    )
                else:
                    lines.append(CountLine("else", n, target=target))
        elif kind in ("variant", "holdout") and details.get(kind):
            for name, n in sorted(details[kind].items(), key=lambda i: str(i[0])):
                lines.append(CountLine(kind, n, arg=name))
        else:
            lines.append(CountLine(kind, number))
            if kind in ("suppressed", "interrupted") and details.get(kind):
                reasons = sorted(details[kind].items(), key=lambda i: (-i[1], str(i[0])))
                for reason, n in reasons:
                    lines.append(CountLine("reason", n, level=1, arg=reason or "unknown"))
    return lines


def _case_order(detail: str | None) -> tuple[int, str]:
    case = (detail or "").partition(" -> ")[0]
    if case.startswith("when ") and case[5:].isdigit():
        return int(case[5:]), ""
    return 1_000_000, case


def step_details(session: Session, *, journey_id: int) -> dict[str, dict[str, Counter[str]]]:
    """Per step, the details of the outcomes in :data:`DETAILED`: ``{step: {outcome:
    Counter(detail: n)}}`` (what :func:`service.graph_counts` sums by outcome)."""
    log = JourneyStepLog
    out: dict[str, dict[str, Counter[str]]] = {}
    for step_id, outcome, detail, n in session.execute(
        select(log.step, log.outcome, log.detail, func.count())
        .where(log.journey_id == journey_id, log.outcome.in_(DETAILED))
        .group_by(log.step, log.outcome, log.detail)
    ):
        out.setdefault(step_id, {}).setdefault(outcome, Counter())[detail or ""] += n
    return out


@dataclass
class Summary:
    """A journey's instances: entered in all, running now (by status), ended on a goal
    (``done``), and exited by reason."""

    entered: int = 0
    running: Counter[str] = field(default_factory=Counter)
    done: int = 0
    exits: Counter[str] = field(default_factory=Counter)

    @property
    def live(self) -> int:
        return sum(self.running.values())


def instance_summary(session: Session, *, journey_id: int) -> Summary:
    """The journey's instances counted by status and exit reason (all versions)."""
    summary = Summary()
    inst = JourneyInstance
    for status, reason, n in session.execute(
        select(inst.status, inst.exit_reason, func.count())
        .where(inst.journey_id == journey_id)
        .group_by(inst.status, inst.exit_reason)
    ):
        summary.entered += n
        if status == "done":
            summary.done += n
        elif status == "exited":
            summary.exits[reason or "unknown"] += n
        else:
            summary.running[status] += n
    return summary


def list_figures(
    session: Session, journey_ids: Sequence[int], *, now: datetime
) -> tuple[dict[int, int], dict[int, int]]:
    """Per journey: the live instances, and the messages sent in the last 7 days."""
    if not journey_ids:
        return {}, {}
    inst, log = JourneyInstance, JourneyStepLog
    live: dict[int, int] = dict(
        session.execute(
            select(inst.journey_id, func.count())
            .where(inst.journey_id.in_(journey_ids), inst.status.in_(service.LIVE_STATUSES))
            .group_by(inst.journey_id)
        ).all()
    )
    sends: dict[int, int] = dict(
        session.execute(
            select(log.journey_id, func.count())
            .where(
                log.journey_id.in_(journey_ids),
                log.outcome == "sent",
                log.at >= now - SENDS_WINDOW,
            )
            .group_by(log.journey_id)
        ).all()
    )
    return live, sends


# --------------------------------------------------------------------------------------------
# The graph: boxes placed top-down, arrows routed between them (pure)

BOX_W: Final = 264
LINE_H: Final = 18
HEAD_H: Final = 26
PAD: Final = 8
SEPARATOR: Final = 7  # the rule above the counts
BORDER: Final = 2
GAP_X: Final = 28
GAP_Y: Final = 60
LANE_W: Final = 14
LANE_WEIGHT: Final = 0.05  # how much a lane's wanted place counts against a box's
MARGIN: Final = 18
WRAP: Final = 34  # characters per line of a box (French words are long)


@dataclass
class Box:
    """A step (or the journey's entry) as drawn: its texts and its place."""

    id: str
    kind: str
    title: str
    lines: list[str]
    counts: list[CountLine]
    links: list[str] = field(default_factory=list)
    description: str | None = None
    x: float = 0.0  # left
    y: float = 0.0  # top
    w: float = BOX_W
    h: float = 0.0

    @property
    def height(self) -> float:
        extra = SEPARATOR if self.counts else 0
        return PAD * 2 + BORDER + HEAD_H + (len(self.lines) + len(self.counts)) * LINE_H + extra


@dataclass(frozen=True)
class Arrow:
    """A link as an SVG path, with its label where it leaves its box."""

    path: str
    label: str
    label_x: float
    label_y: float
    back: bool = False


@dataclass
class Graph:
    boxes: list[Box]
    arrows: list[Arrow]
    width: float
    height: float


def _wrap(text: str, width: int = WRAP) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def layout(boxes: Sequence[Box], edges: Sequence[tuple[str, str, str]]) -> Graph:
    """Place ``boxes`` (``edges``: from id, to id, label; the first box is the start) in
    layers top-down and route the edges. Each box's height is taken from its lines.

    Layers: the links found going back up by a depth-first walk from the start are set
    aside (loops); every other box goes one layer below the lowest of the boxes that lead to
    it. A link that spans several layers gets a narrow lane in each layer it crosses. The
    order within each layer comes from a few barycentre sweeps, the horizontal places from
    the average of the neighbours' places, pushed apart so that nothing overlaps."""
    by_id = {b.id: b for b in boxes}
    ids = [b.id for b in boxes]
    edges = [e for e in edges if e[0] in by_id and e[1] in by_id]
    out: dict[str, list[int]] = defaultdict(list)
    for i, (source, _target, _label) in enumerate(edges):
        out[source].append(i)

    # depth-first walk: the order boxes are found in, and the links that go back up
    found: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    finished: list[str] = []
    back: set[int] = set()
    for root in ids:
        if root in state:
            continue
        state[root] = 1
        found.append(root)
        stack = [(root, iter(out[root]))]
        while stack:
            node, pending = stack[-1]
            for i in pending:
                target = edges[i][1]
                if state.get(target) == 1:
                    back.add(i)
                elif target not in state:
                    state[target] = 1
                    found.append(target)
                    stack.append((target, iter(out[target])))
                    break
            else:
                state[node] = 2
                finished.append(node)
                stack.pop()

    forward = [i for i in range(len(edges)) if i not in back]
    layer = dict.fromkeys(ids, 0)
    for node in reversed(finished):  # a topological order of the forward links
        for i in out[node]:
            if i not in back:
                layer[edges[i][1]] = max(layer[edges[i][1]], layer[node] + 1)

    # lanes for links that span layers: each link becomes a chain of segments
    chains: dict[int, list[str]] = {}
    width = {b.id: float(b.w) for b in boxes}
    layer_of = dict(layer)
    for i in forward:
        source, target, _label = edges[i]
        chain = [source]
        for level in range(layer[source] + 1, layer[target]):
            lane = f"~{i}~{level}"
            layer_of[lane] = level
            width[lane] = LANE_W
            chain.append(lane)
        chain.append(target)
        chains[i] = chain
    ups: dict[str, list[str]] = defaultdict(list)
    downs: dict[str, list[str]] = defaultdict(list)
    for chain in chains.values():
        for upper, lower in pairwise(chain):
            downs[upper].append(lower)
            ups[lower].append(upper)

    depth = max(layer_of.values(), default=0) + 1
    rows: list[list[str]] = [[] for _ in range(depth)]
    seen = {node: n for n, node in enumerate(found)}
    for node in sorted(layer_of, key=lambda n: _first_seen(n, seen, edges)):
        rows[layer_of[node]].append(node)

    position = {node: float(n) for row in rows for n, node in enumerate(row)}
    for sweep in range(8):
        order = range(1, depth) if sweep % 2 == 0 else range(depth - 2, -1, -1)
        for level in order:
            row = rows[level]
            near = ups if sweep % 2 == 0 else downs

            def key(node: str, near: Mapping[str, list[str]] = near) -> tuple[float, float]:
                others = near.get(node) or []
                if not others:
                    return position[node], position[node]
                return sum(position[o] for o in others) / len(others), position[node]

            row.sort(key=key)
            for n, node in enumerate(row):
                position[node] = float(n)

    # horizontal places: centres
    centre: dict[str, float] = {}
    for row in rows:
        x = 0.0
        for n, node in enumerate(row):
            if n:
                x += (width[row[n - 1]] + width[node]) / 2 + _gap(row[n - 1], node)
            centre[node] = x
    for sweep in range(9):  # downwards last: each box under the boxes that lead to it
        order = range(depth) if sweep % 2 == 0 else range(depth - 1, -1, -1)
        near = ups if sweep % 2 == 0 else downs
        for level in order:
            row = rows[level]
            wanted = []
            for node in row:
                others = (near.get(node) or []) or (ups.get(node) or []) + (downs.get(node) or [])
                if not node.startswith("~"):  # a box follows boxes rather than lanes
                    others = [o for o in others if not o.startswith("~")] or others
                if others:
                    wanted.append(sum(centre[o] for o in others) / len(others))
                else:
                    wanted.append(centre[node])
            for node, x in zip(row, _spread(row, wanted, width), strict=True):
                centre[node] = x
    left = min((centre[n] - width[n] / 2 for n in centre), default=0.0)
    for node in centre:
        centre[node] += MARGIN - left

    # vertical places: rows as tall as their tallest box
    row_height = [max([by_id[n].height for n in row if n in by_id] or [LINE_H]) for row in rows]
    row_top = []
    y = float(MARGIN)
    for h in row_height:
        row_top.append(y)
        y += h + GAP_Y
    for box in boxes:
        box.h = box.height
        box.x = centre[box.id] - box.w / 2
        box.y = row_top[layer_of[box.id]]
    right = max((centre[n] + width[n] / 2 for n in centre), default=0.0)
    total_height = y - GAP_Y + MARGIN

    # ports: the links leaving a box spread along its bottom, arriving ones along its top
    def first_hop(i: int) -> str:
        return chains[i][1]

    def last_hop(i: int) -> str:
        return chains[i][-2]

    starts: dict[int, float] = {}
    ends: dict[int, float] = {}
    for node in ids:
        leaving = sorted((i for i in out[node] if i in chains), key=lambda i: centre[first_hop(i)])
        for n, i in enumerate(leaving):
            starts[i] = centre[node] + _port(n, len(leaving), width[node])
    arriving_at: dict[str, list[int]] = defaultdict(list)
    for i in chains:
        arriving_at[edges[i][1]].append(i)
    for node, arriving in arriving_at.items():
        arriving.sort(key=lambda i: centre[last_hop(i)])
        for n, i in enumerate(arriving):
            ends[i] = centre[node] + _port(n, len(arriving), width[node])

    arrows: list[Arrow] = []
    for i, chain in chains.items():
        source, target, label = edges[i]
        origin = by_id[source]
        points: list[tuple[float, float, bool]] = [(starts[i], origin.y + origin.h, False)]
        for lane in chain[1:-1]:
            top = row_top[layer_of[lane]]
            points.append((centre[lane], top, False))
            points.append((centre[lane], top + row_height[layer_of[lane]], True))
        points.append((ends[i], by_id[target].y, False))
        d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for (x0, y0, _s), (x1, y1, straight) in pairwise(points):
            if straight:
                d += f" L{x1:.1f},{y1:.1f}"
            else:
                bend = (y1 - y0) / 2
                d += f" C{x0:.1f},{y0 + bend:.1f} {x1:.1f},{y1 - bend:.1f} {x1:.1f},{y1:.1f}"
        (x0, y0, _s), (x1, y1, _t) = points[0], points[1]
        arrows.append(Arrow(d, label, (x0 + x1) / 2, (y0 + y1) / 2 + 4))

    # loops: out of the right side, up a lane right of everything, into the target's side
    lane_x = right + 24
    for n, i in enumerate(sorted(back)):
        source, target, label = edges[i]
        origin, end = by_id[source], by_id[target]
        x = lane_x + n * 16
        y0, y1 = origin.y + min(origin.h / 2, HEAD_H), end.y + min(end.h / 2, HEAD_H) + 6
        d = (
            f"M{origin.x + origin.w:.1f},{y0:.1f} L{x:.1f},{y0:.1f} L{x:.1f},{y1:.1f} "
            f"L{end.x + end.w:.1f},{y1:.1f}"
        )
        arrows.append(Arrow(d, label, x, (y0 + y1) / 2, back=True))
    if back:
        right = lane_x + 16 * len(back) + 24
    return Graph(list(boxes), arrows, right + MARGIN, total_height)


def _first_seen(node: str, seen: Mapping[str, int], edges: Sequence[tuple[str, str, str]]) -> float:
    if node in seen:
        return float(seen[node])
    _tilde, i, _level = node.split("~")
    return seen[edges[int(i)][0]] + 0.5


def _gap(a: str, b: str) -> float:
    return GAP_X if not (a.startswith("~") or b.startswith("~")) else GAP_X / 2


def _port(n: int, count: int, box_width: float) -> float:
    """The offset from the box's centre of the ``n``-th of ``count`` links."""
    if count <= 1:
        return 0.0
    step = min(36.0, box_width * 0.6 / (count - 1))
    return (n - (count - 1) / 2) * step


def _spread(row: Sequence[str], wanted: Sequence[float], width: Mapping[str, float]) -> list[float]:
    """Places as close to ``wanted`` as the row's order and widths allow: pushed right from
    the left, pushed left from the right, the two averaged, then pushed apart again."""
    n = len(row)
    if not n:
        return []

    def apart(i: int) -> float:
        return (width[row[i - 1]] + width[row[i]]) / 2 + _gap(row[i - 1], row[i])

    rightward = list(wanted)
    for i in range(1, n):
        rightward[i] = max(rightward[i], rightward[i - 1] + apart(i))
    leftward = list(wanted)
    for i in range(n - 2, -1, -1):
        leftward[i] = min(leftward[i], leftward[i + 1] - apart(i + 1))
    placed = [(r + lft) / 2 for r, lft in zip(rightward, leftward, strict=True)]
    for i in range(1, n):
        placed[i] = max(placed[i], placed[i - 1] + apart(i))
    # the boxes stay where they are wanted, the lanes make way
    weights = [LANE_WEIGHT if node.startswith("~") else 1.0 for node in row]
    shift = sum(
        weight * (w - p) for weight, w, p in zip(weights, wanted, placed, strict=True)
    ) / sum(weights)
    if not math.isfinite(shift):
        return placed
    return [p + shift for p in placed]


def journey_graph(
    journey_def: JourneyDefinition,
    words: Words,
    *,
    counts: Mapping[str, Mapping[str, int]],
    details: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
    entry: Mapping[str, int] | None = None,
) -> Graph:
    """The journey's graph with ``counts`` per step (``graph_counts`` or a simulation's),
    ``details`` of their outcomes, and ``entry`` (counts shown on the trigger's box)."""
    details = details or {}
    boxes = [
        Box(
            ENTRY,
            "entry",
            words.t(_("Entry")),
            _wrap(words.trigger(journey_def.trigger)),
            [CountLine(k, n) for k, n in (entry or {}).items() if n],
            links=[journey_def.start],
        )
    ]
    for step in journey_def.steps:
        lines = [line for phrase in words.params(step) for line in _wrap(phrase)]
        boxes.append(
            Box(
                step.id,
                step.kind,
                words.kind(step),
                lines,
                count_lines(step, counts.get(step.id, {}), details.get(step.id)),
                links=words.links(journey_def, step.id),
                description=step.description,
            )
        )
    edges = [(ENTRY, journey_def.start, ""), *_labelled(journey_def.edges(), words)]
    return layout(boxes, edges)


def _labelled(edges: Sequence[tuple[str, str, str]], words: Words) -> list[tuple[str, str, str]]:
    labels = {"next": "", "on_event": _("event"), "on_timeout": _("timeout"), "else": _("else")}
    out = []
    for source, target, label in edges:
        if label in labels:
            text = words.gettext(labels[label]) if labels[label] else ""
        elif label.startswith("when "):
            text = label.removeprefix("when ")
        else:
            text = label
        out.append((source, target, text))
    return out


# --------------------------------------------------------------------------------------------
# Pages


def _journey(session: Session, code: str) -> Journey:
    found = service.get_by_code(session, code=code)
    if found is None:
        raise HTTPException(404, f"there is no journey {code!r}")
    return found


def _current(session: Session, journey: Journey) -> tuple[JourneyVersion, JourneyDefinition]:
    version = (
        session.get(JourneyVersion, journey.current_version_id)
        if journey.current_version_id is not None
        else None
    )
    if version is None:
        raise HTTPException(409, f"the journey {journey.code} has no published version")
    return version, service.definition_of(version)


def _local(value: datetime | None) -> datetime | None:
    """A UTC time in Paris time, for display."""
    return value.astimezone(PARIS) if value is not None else None


def _local_text(value: datetime) -> str:
    return value.astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")


@router.get("/journeys")
def list_page(request: Request, session: SessionDep, who: Viewer) -> Response:
    journeys = service.list_journeys(session)
    ids = [j.id for j in journeys]
    live, sends = list_figures(session, ids, now=utcnow())
    numbers = dict(
        session.execute(
            select(JourneyVersion.id, JourneyVersion.version).where(
                JourneyVersion.id.in_(
                    [j.current_version_id for j in journeys if j.current_version_id]
                )
            )
        ).all()
    )
    rows = [
        {
            "journey": j,
            "version": numbers.get(j.current_version_id or 0),
            "live": live.get(j.id, 0),
            "sends": sends.get(j.id, 0),
        }
        for j in journeys
    ]
    return render(request, "journeys/list.html", {"nav": "journeys", "rows": rows, "local": _local})


def _graph_context(session: Session, request: Request, journey: Journey) -> dict[str, Any]:
    _version, journey_def = _current(session, journey)
    counts = service.graph_counts(session, journey_id=journey.id)
    summary = instance_summary(session, journey_id=journey.id)
    graph = journey_graph(
        journey_def,
        words_for(request),
        counts=counts,
        details=step_details(session, journey_id=journey.id),
        entry={"entered": summary.entered, "live": summary.live},
    )
    known = {s.id for s in journey_def.steps}
    earlier = {
        step: count_lines(None, c) for step, c in sorted(counts.items()) if step not in known
    }
    return {
        "journey": journey,
        "graph": graph,
        "summary": summary,
        "earlier": earlier,
        "refreshed_at": _local(utcnow()),
        "refresh": REFRESH_SECONDS,
        "live": True,
    }


@router.get("/journeys/{code}")
def journey_page(request: Request, session: SessionDep, who: Viewer, code: str) -> Response:
    journey = _journey(session, code)
    version, journey_def = _current(session, journey)
    brand = session.get(Brand, journey.brand_id) if journey.brand_id is not None else None
    words = words_for(request)
    return render(
        request,
        "journeys/detail.html",
        {
            "nav": "journeys",
            **_graph_context(session, request, journey),
            "current": version,
            "definition": journey_def,
            "brand": brand,
            "versions": service.versions(session, journey_id=journey.id),
            "settings": _settings(journey_def, words),
            "can_operate": who.can(auth_rules.CAMPAIGNS_DESIGN),
            "pausable": journey.status in PAUSABLE,
            "resumable": journey.status in RESUMABLE,
            "form": _blank_simulation(),
            "segments": [(s.code, s.name) for s in segment_service.list_segments(session)],
            "errors": {},
            "max_simulated": MAX_SIMULATED,
            "notice": request.query_params.get("notice"),
            "local": _local,
        },
    )


def _settings(journey_def: JourneyDefinition, words: Words) -> list[tuple[str, list[str]]]:
    """The journey-level settings, labelled (English labels the template translates)."""
    exits = [
        words.t(_("%(event)s: %(reason)s"), event=words.event(c.event), reason=c.reason)
        for c in journey_def.exit_when
    ]
    return [
        (_("Trigger"), [words.trigger(journey_def.trigger)]),
        (_("Instances"), [words.instance_key(journey_def)]),
        (_("May enter again"), [words.reentry(journey_def)]),
        (_("Maximum duration"), [words.duration(journey_def.max_duration)]),
        (_("Time zone"), [words.timezone(journey_def)]),
        (_("Exits when"), exits or [words.t(_("no exit criterion"))]),
    ]


@router.get("/journeys/{code}/counts")
def counts_fragment(request: Request, session: SessionDep, who: Viewer, code: str) -> Response:
    """The graph with its live counts (htmx polls it every :data:`REFRESH_SECONDS`)."""
    journey = _journey(session, code)
    return render(request, "journeys/_graph.html", _graph_context(session, request, journey))


@router.post("/journeys/{code}/pause")
def pause(request: Request, session: SessionDep, who: Operator, code: str) -> Response:
    journey = _journey(session, code)
    if journey.status not in PAUSABLE:
        raise HTTPException(409, f"the journey is {journey.status}: only an active one pauses")
    service.pause(session, code=journey.code, now=utcnow())
    auth_service.audit(
        session, principal=who, action="journey.pause", details={"journey": journey.code}
    )
    session.commit()
    return RedirectResponse(f"/journeys/{journey.code}?notice=paused", status_code=303)


@router.post("/journeys/{code}/resume")
def resume(request: Request, session: SessionDep, who: Operator, code: str) -> Response:
    journey = _journey(session, code)
    if journey.status not in RESUMABLE:
        raise HTTPException(409, f"the journey is {journey.status}: it is not paused")
    service.resume(session, code=journey.code, now=utcnow())
    auth_service.audit(
        session, principal=who, action="journey.resume", details={"journey": journey.code}
    )
    session.commit()
    return RedirectResponse(f"/journeys/{journey.code}?notice=resumed", status_code=303)


# --- simulation ------------------------------------------------------------------------------


def _blank_simulation() -> dict[str, str]:
    now = utcnow().replace(minute=0, second=0, microsecond=0)
    return {
        "start": _local_text(now - timedelta(days=7)),
        "end": _local_text(now),
        "population": "all",
        "segment": "",
        "ids": "",
        "limit": str(DEFAULT_SIMULATED),
    }


@dataclass
class SimulationRequest:
    start: datetime
    end: datetime
    population: str
    segment: str
    ids: list[int]
    limit: int


def check_simulation(values: Mapping[str, str]) -> tuple[SimulationRequest | None, dict[str, str]]:
    """The simulation form's values checked, or the errors by field (English messages that
    the page translates)."""
    errors: dict[str, str] = {}
    start = end = None
    try:
        start = datetime.fromisoformat(values["start"]).replace(tzinfo=PARIS).astimezone(UTC)
    except ValueError:
        errors["start"] = _("Not a date and time.")
    try:
        end = datetime.fromisoformat(values["end"]).replace(tzinfo=PARIS).astimezone(UTC)
    except ValueError:
        errors["end"] = _("Not a date and time.")
    if start is not None and end is not None:
        if end <= start:
            errors["end"] = _("The end must come after the start.")
        elif end - start > MAX_PERIOD:
            errors["end"] = _("A period of 31 days at most.")
    limit = values["limit"] or str(DEFAULT_SIMULATED)
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_SIMULATED:
        errors["limit"] = _("A whole number from 1 to 5000.")
    population = values["population"]
    ids: list[int] = []
    if population not in POPULATIONS:
        errors["population"] = _("Choose a segment, customer ids or all customers.")
    elif population == "segment" and not values["segment"]:
        errors["segment"] = _("Choose a saved segment.")
    elif population == "ids":
        parts = [p for p in re.split(r"[,;\s]+", values["ids"]) if p]
        if not parts:
            errors["ids"] = _("Type customer ids, separated by commas or spaces.")
        elif not all(p.isdigit() for p in parts):
            errors["ids"] = _("Customer ids are whole numbers, separated by commas or spaces.")
        else:
            ids = sorted({int(p) for p in parts})
    if errors:
        return None, errors
    assert start is not None and end is not None
    return SimulationRequest(start, end, population, values["segment"], ids, int(limit)), {}


def population_of(session: Session, chosen: SimulationRequest) -> list[int]:
    """The customer ids the simulation runs for, at most ``chosen.limit`` (the first by id).
    Raises LookupError for an unknown segment, DefinitionError for one that no longer
    compiles."""
    if chosen.population == "ids":
        return chosen.ids[: chosen.limit]
    query = select(Customer.id).where(Customer.status == "active")
    if chosen.population == "segment":
        segment = segment_service.get_by_code(session, code=chosen.segment)
        if segment is None:
            raise LookupError(chosen.segment)
        compiled = segment_service.compile(session, segment.definition)
        query = query.where(Customer.id.in_(compiled.query))
    return list(session.scalars(query.order_by(Customer.id).limit(chosen.limit)))


Field = Annotated[str, Form()]


@router.post("/journeys/{code}/simulate")
def simulate(
    request: Request,
    session: SessionDep,
    who: Operator,
    code: str,
    start: Field = "",
    end: Field = "",
    population: Field = "",
    segment: Field = "",
    ids: Field = "",
    limit: Field = "",
) -> Response:
    """What the current version would do over a period for a population, written nowhere:
    the engine of production with a fake clock moving by the hour and a gate that records
    the messages instead of sending them. (A plain function: it runs in a worker thread, as
    a simulation of a month takes seconds.)"""
    values = {
        "start": start.strip(), "end": end.strip(), "population": population.strip(),
        "segment": segment.strip(), "ids": ids.strip(), "limit": limit.strip(),
    }  # fmt: skip
    journey = _journey(session, code)
    version, journey_def = _current(session, journey)
    chosen, errors = check_simulation(values)
    report = None
    people: list[int] = []
    if chosen is not None:
        try:
            people = population_of(session, chosen)
        except LookupError:
            errors["segment"] = _("No saved segment has this code.")
        except DefinitionError as exc:
            errors["segment"] = f"the segment no longer compiles: {exc.path}: {exc.message}"
    if chosen is not None and not errors:
        events: list[Event] = []
        if isinstance(journey_def.trigger, ApiTrigger):  # everyone called at the start
            events = [
                Event(f"web:{n}", service.START_EVENT, chosen.start, {"journey": journey.code}, n)
                for n in people
            ]
        report = service.simulate(
            session,
            text_or_version=version,
            customers=people,
            start=chosen.start,
            end=chosen.end,
            step=SIMULATION_STEP,
            events=events,
        )
        report.calls = []  # who got what: not for these pages
    session.rollback()  # a simulation writes nothing; the audit row below is the only write
    journey = _journey(session, code)
    version, journey_def = _current(session, journey)
    if report is not None:
        auth_service.audit(
            session,
            principal=who,
            action="journey.simulate",
            details={
                "journey": journey.code,
                "version": version.version,
                "population": values["population"],
                "customers": report.customers,
                "entered": report.entered,
                "start": report.start.isoformat(),
                "end": report.end.isoformat(),
            },
        )
        session.commit()
    graph = None
    if report is not None:
        graph = journey_graph(
            journey_def,
            words_for(request),
            counts={step: dict(c) for step, c in report.steps.items()},
            entry={"entered": report.entered},
        )
    return render(
        request,
        "journeys/simulation.html",
        {
            "nav": "journeys",
            "journey": journey,
            "current": version,
            "report": report,
            "graph": graph,
            "live": False,
            "form": values,
            "errors": errors,
            "segments": [(s.code, s.name) for s in segment_service.list_segments(session)],
            "max_simulated": MAX_SIMULATED,
            "local": _local,
        },
        status=400 if errors else 200,
    )
