"""Waits across the daylight-saving changes of Europe/Paris (spring forward on Sunday 29 March
2026, 02:00 CET -> 03:00 CEST; fall back on Sunday 25 October 2026, 03:00 CEST -> 02:00 CET),
through the pure engine: window waits against a brute-force reading of the wall clock at every
start instant of both weekends, whole-day waits that land in the missing or the repeated hour,
date expressions, elapsed-time timeouts and maximum durations, and the abandoned-cart journey's
SMS window. (The dispatch gate's deferral to a customer's hours across the same changes is in
tests/integration/test_journey_gate.py.)"""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tournesol.triggers.definition import JourneyDefinition, load_journey, parse_journey
from tournesol.triggers.rules import (
    Advance,
    Event,
    Facts,
    GateResult,
    StepLogged,
    advance,
    shift,
    start,
)

PARIS = ZoneInfo("Europe/Paris")
FACTS = Facts(timezone="Europe/Paris")
EXAMPLES = Path(__file__).resolve().parents[2] / "src/tournesol/triggers/examples"
SPRING = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # the instant the clocks go forward
AUTUMN = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # the instant they go back
STEP = timedelta(minutes=5)  # every window edge and start below falls on a multiple of it
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
END = {"id": "end", "exit": {"reason": "finished"}}


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def journey(steps: list[dict[str, Any]], **top: Any) -> JourneyDefinition:
    data: dict[str, Any] = {
        "code": "dst",
        "name": "DST",
        "trigger": {"event": {"type": "go"}},
        "max_duration": "60d",
        "steps": steps,
    }
    data.update(top)
    return parse_journey(data)


def begin(j: JourneyDefinition, now: datetime, facts: Facts = FACTS) -> Advance:
    trigger = Event(f"go-{now.isoformat()}", "go", now, {}, 7)
    return start(j, customer_id=7, instance_key="7", event=trigger, now=now, facts=facts)


def logs(result: Advance) -> list[tuple[str, str]]:
    return [(e.step, e.outcome) for e in result.effects if isinstance(e, StepLogged)]


def wall(instant: datetime) -> str:
    return instant.astimezone(PARIS).strftime("%a %d %b %H:%M %Z")


# --- window waits against the wall clock, every 5 minutes of both weekends -----------------

WINDOWS = [
    # (days, hours) as the YAML writes them
    (None, "09:00-19:00"),
    ("sun", "02:30-04:00"),  # partly in the spring gap
    ("sun", "02:15-02:45"),  # wholly in the spring gap; the repeated hour in autumn
    (None, "02:00-03:00"),  # the gap itself / the repeated hour
    (None, "01:30-02:05,02:55-03:10"),  # spans on both sides of the change
    ("mon-fri", "09:00-12:00,14:00-18:00"),
    ("sat-sun", None),
    ("mon,wed,sat", "23:00-23:55"),
]


def _weekdays(days: str | None) -> set[int]:
    if days is None:
        return set(range(7))
    chosen: set[int] = set()
    for part in days.split(","):
        first, _, last = part.partition("-")
        a, b = DAYS.index(first), DAYS.index(last or first)
        chosen.update(range(a, b + 1))
    return chosen


def _spans(hours: str | None) -> list[tuple[int, int]]:
    if hours is None:
        return [(0, 24 * 60)]
    out = []
    for span in hours.split(","):
        a, b = span.split("-")
        out.append((int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])))
    return out


def allowed(instant: datetime, days: str | None, hours: str | None) -> bool:
    """The window as a clock on the wall reads it: the local day and time of the instant."""
    local = instant.astimezone(PARIS)
    minute = local.hour * 60 + local.minute
    return local.weekday() in _weekdays(days) and any(a <= minute < b for a, b in _spans(hours))


@cache
def _open_instants(days: str | None, hours: str | None, begin: datetime) -> list[datetime]:
    """Every instant, 5 minutes apart, from ``begin`` over 16 days, at which the window is
    open."""
    return [begin + k * STEP for k in range(16 * 24 * 12) if allowed(begin + k * STEP, days, hours)]


def first_open(now: datetime, days: str | None, hours: str | None, begin: datetime) -> datetime:
    found = _open_instants(days, hours, begin)
    return found[bisect_left(found, now)]


@pytest.mark.parametrize("change", [SPRING, AUTUMN], ids=["spring", "autumn"])
@pytest.mark.parametrize(("days", "hours"), WINDOWS)
def test_a_window_wait_ends_at_the_first_open_instant_of_the_wall_clock(
    change: datetime, days: str | None, hours: str | None
) -> None:
    """From every start instant, every 5 minutes from the Friday before the change to the
    Tuesday after, the wait ends at the first instant the wall clock is in the window."""
    window: dict[str, str] = {}
    if days is not None:
        window["days"] = days
    if hours is not None:
        window["hours"] = hours
    j = journey([{"id": "w", "wait": {"window": window}, "next": "end"}, END])
    begin_at = change - timedelta(days=3)
    now = begin_at
    while now < change + timedelta(days=2):
        expected = first_open(now, days, hours, begin_at)
        result = begin(j, now)
        if expected == now:
            assert logs(result) == [("w", "elapsed"), ("end", "exit")], wall(now)
        else:
            assert result.state.status == "waiting", wall(now)
            due = result.state.due_at
            assert due is not None
            assert due == expected, f"from {wall(now)}: {wall(due)} instead of {wall(expected)}"
            done = advance(j, result.state, event=None, now=due, facts=FACTS)
            assert done.state.status == "exited"
            # a wake-up one second early changes nothing
            early = advance(
                j, result.state, event=None, now=due - timedelta(seconds=1), facts=FACTS
            )
            assert early.state is result.state
        now += STEP


# --- whole days on the local clock ----------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "duration", "due"),
    [
        # Saturday 10:00 CET + 1 day = Sunday 10:00 CEST: 23 hours later
        (utc(2026, 3, 28, 9, 0), "1d", utc(2026, 3, 29, 8, 0)),
        # + 2 days = Monday 10:00 CEST
        (utc(2026, 3, 28, 9, 0), "2d", utc(2026, 3, 30, 8, 0)),
        # a week: Saturday 10:00 CET -> Saturday 10:00 CEST
        (utc(2026, 3, 28, 9, 0), "1w", utc(2026, 4, 4, 8, 0)),
        # Saturday 02:30 CET + 1 day: 02:30 does not exist on Sunday; read with the offset
        # before the change, 01:30 UTC (03:30 CEST)
        (utc(2026, 3, 28, 1, 30), "1d", utc(2026, 3, 29, 1, 30)),
        # Saturday 10:00 CEST + 1 day = Sunday 10:00 CET: 25 hours later
        (utc(2026, 10, 24, 8, 0), "1d", utc(2026, 10, 25, 9, 0)),
        # Saturday 02:30 CEST + 1 day: 02:30 happens twice on Sunday; the first (CEST)
        (utc(2026, 10, 24, 0, 30), "1d", utc(2026, 10, 25, 0, 30)),
        # Sunday 02:30 CET (the second pass) + 1 day = Monday 02:30 CET
        (utc(2026, 10, 25, 1, 30), "1d", utc(2026, 10, 26, 1, 30)),
        # hours are elapsed time: 36 hours are 36 hours across either change
        (utc(2026, 3, 28, 9, 0), "36h", utc(2026, 3, 29, 21, 0)),
        (utc(2026, 10, 24, 8, 0), "36h", utc(2026, 10, 25, 20, 0)),
        (utc(2026, 3, 28, 23, 30), "90m", utc(2026, 3, 29, 1, 0)),
    ],
)
def test_whole_day_waits_keep_the_local_time_and_hours_are_elapsed(
    now: datetime, duration: str, due: datetime
) -> None:
    j = journey([{"id": "w", "wait": {"duration": duration}, "next": "end"}, END])
    assert begin(j, now).state.due_at == due
    assert shift(now, due - now if "d" not in duration else _days(duration), "Europe/Paris") == due


def _days(duration: str) -> timedelta:
    return timedelta(days=int(duration[:-1]) * (7 if duration.endswith("w") else 1))


def test_a_day_then_a_window_across_the_spring_change() -> None:
    # Saturday 28 March 18:30 CET, one day then office hours: Sunday 18:30 CEST is outside
    # mon-fri, so Monday 09:00 CEST
    j = journey(
        [
            {
                "id": "w",
                "wait": {"duration": "1d", "window": {"days": "mon-fri", "hours": "09:00-19:00"}},
                "next": "end",
            },
            END,
        ]
    )
    assert begin(j, utc(2026, 3, 28, 17, 30)).state.due_at == utc(2026, 3, 30, 7, 0)
    # Friday 27 March 18:30 CET + 1 day = Saturday: Monday 09:00 CEST too
    assert begin(j, utc(2026, 3, 27, 17, 30)).state.due_at == utc(2026, 3, 30, 7, 0)
    # Thursday 26 March 18:30 CET + 1 day = Friday 18:30 CET: open, no extra wait
    assert begin(j, utc(2026, 3, 26, 17, 30)).state.due_at == utc(2026, 3, 27, 17, 30)


def test_windows_follow_the_journey_zone_not_the_customers() -> None:
    # A journey pinned to Paris, a customer in New York: Paris's change applies
    j = journey(
        [{"id": "w", "wait": {"window": {"hours": "09:00-10:00"}}, "next": "end"}, END],
        timezone="Europe/Paris",
    )
    facts = Facts(timezone="America/New_York")
    assert begin(j, utc(2026, 3, 28, 21, 0), facts).state.due_at == utc(2026, 3, 29, 7, 0)
    # the customer's zone: New York changed on 8 March; 09:00 EDT = 13:00 UTC
    j = journey([{"id": "w", "wait": {"window": {"hours": "09:00-10:00"}}, "next": "end"}, END])
    assert begin(j, utc(2026, 3, 28, 21, 0), facts).state.due_at == utc(2026, 3, 29, 13, 0)


# --- dates, timeouts and the maximum duration -----------------------------------------------


@pytest.mark.parametrize(
    ("field", "expr", "due"),
    [
        # a date is 00:00 local: 29 March is still CET at midnight
        (date(2026, 3, 29), "customer.renewal", utc(2026, 3, 28, 23, 0)),
        # one day after: 30 March 00:00 CEST
        (date(2026, 3, 29), "customer.renewal + 1d", utc(2026, 3, 29, 22, 0)),
        # 30 days before 28 April (CEST) is 29 March at 00:00, still CET
        (date(2026, 4, 28), "customer.renewal - 30d", utc(2026, 3, 28, 23, 0)),
        # autumn: 26 October 00:00 CET
        (date(2026, 10, 25), "customer.renewal + 1d", utc(2026, 10, 25, 23, 0)),
        # 25 October 00:00 is still CEST
        (date(2026, 10, 25), "customer.renewal", utc(2026, 10, 24, 22, 0)),
        # an instant keeps its wall time across the change when moved by days
        (utc(2026, 3, 28, 9, 0), "customer.renewal + 1d", utc(2026, 3, 29, 8, 0)),
        # and is moved by elapsed time by hours
        (utc(2026, 3, 28, 9, 0), "customer.renewal + 24h", utc(2026, 3, 29, 8, 0)),
    ],
)
def test_wait_until_a_date_across_the_changes(field: Any, expr: str, due: datetime) -> None:
    j = journey([{"id": "w", "wait": {"until": expr}, "next": "end"}, END])
    facts = Facts(customer={"renewal": field}, timezone="Europe/Paris")
    now = utc(2026, 3, 1, 12, 0) if due.month < 6 else utc(2026, 10, 1, 12, 0)
    assert begin(j, now, facts).state.due_at == due


def test_timeouts_and_the_maximum_duration_are_elapsed_time() -> None:
    j = journey(
        [
            {
                "id": "wait_order",
                "wait_event": {"event": {"type": "order"}, "timeout": "24h"},
                "on_event": "end",
                "on_timeout": "end",
            },
            END,
        ],
        max_duration="2d",
    )
    saturday = utc(2026, 3, 28, 9, 0)  # 10:00 CET
    first = begin(j, saturday)
    assert first.state.due_at == saturday + timedelta(hours=24)  # Sunday 11:00 CEST
    assert first.state.expires_at == saturday + timedelta(hours=48)
    # an order at 10:59 CEST on Sunday (23 h 59 later) is within the timeout
    order = Event("o-1", "order", utc(2026, 3, 29, 8, 59), {}, 7)
    took = advance(j, first.state, event=order, now=utc(2026, 3, 29, 9, 30), facts=FACTS)
    assert logs(took)[0] == ("wait_order", "event")
    autumn = utc(2026, 10, 24, 8, 0)  # 10:00 CEST
    first = begin(j, autumn)
    assert first.state.due_at == utc(2026, 10, 25, 8, 0)  # Sunday 09:00 CET
    late = advance(j, first.state, event=None, now=utc(2026, 10, 26, 8, 0), facts=FACTS)
    assert (late.state.status, late.state.exit_reason) == ("exited", "max_duration")


# --- the abandoned cart's SMS window --------------------------------------------------------


def cart_at_last_call_window(entered: datetime) -> Advance:
    """The abandoned-cart journey from ``entered``: no order, the reminder sent, no order
    again; returns the state at the SMS window (consent for SMS allowed)."""
    j = load_journey((EXAMPLES / "abandoned_cart.yaml").read_text(encoding="utf-8"))
    facts = Facts(allowed_channels=frozenset({("sms", "marketing")}), timezone="Europe/Paris")
    trigger = Event("cart-1", "cart_abandoned", entered, {"cart_id": "c1", "total": 50}, 7)
    state = start(j, customer_id=7, instance_key="c1", event=trigger, now=entered, facts=facts)
    remind_at = state.state.due_at
    assert remind_at is not None
    reminded = advance(j, state.state, event=None, now=remind_at, facts=facts)
    sent = advance(j, reminded.state, event=GateResult("sent"), now=remind_at, facts=facts)
    second = sent.state.due_at
    assert second is not None
    return advance(j, sent.state, event=None, now=second, facts=facts)


@pytest.mark.parametrize(
    ("entered", "due"),
    [
        # left Wednesday 25 March 19:30 CET: reminder Thursday, 48 h later Saturday 28 March
        # 19:30 CET, after the 19:00 close; Sunday is closed: Monday 10:00 CEST
        (utc(2026, 3, 25, 18, 30), utc(2026, 3, 30, 8, 0)),
        # left Thursday 26 March 08:00 CET: reminder Friday 08:00 CET, 48 hours later is
        # Sunday 09:00 CEST (elapsed time), closed: Monday 10:00 CEST
        (utc(2026, 3, 26, 7, 0), utc(2026, 3, 30, 8, 0)),
        # left Wednesday 21 October 20:00 CEST: Saturday 24 October 20:00 CEST, closed;
        # Sunday closed; Monday 26 October 10:00 CET
        (utc(2026, 10, 21, 18, 0), utc(2026, 10, 26, 9, 0)),
        # left Friday 23 October 08:00 CEST: reminder Saturday 08:00 CEST, 48 hours later is
        # Monday 26 October 07:00 CET, before the 10:00 opening
        (utc(2026, 10, 23, 6, 0), utc(2026, 10, 26, 9, 0)),
    ],
)
def test_the_last_call_waits_for_the_sms_window_across_the_changes(
    entered: datetime, due: datetime
) -> None:
    at_window = cart_at_last_call_window(entered)
    assert (at_window.state.status, at_window.state.step) == ("waiting", "sms_window")
    assert at_window.state.due_at == due, wall(at_window.state.due_at or entered)
