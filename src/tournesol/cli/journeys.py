"""`tournesol journeys`: validate and publish journeys (YAML, docs/journeys.md), list, pause
and resume them, simulate one before publishing it, run the engine over a period; and
`tournesol worker`, the process that runs due steps for good."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail, settings

if TYPE_CHECKING:
    from tournesol.triggers.gate import Gate

app = typer.Typer(
    help="Journeys: validate, publish, list, pause, resume, simulate, run.",
    no_args_is_help=True,
)


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"there is no file {file}", hint="give a journey file (YAML, docs/journeys.md)")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: cannot read it ({exc})", hint="a YAML file in UTF-8")


def _time(value: str | None, *, name: str) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name}: {value!r} is not a date-time", hint="ISO 8601, e.g. 2026-11-24T09:00+01:00")
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


@app.command()
def validate(files: list[Path] = typer.Argument(..., help="Journey files (YAML).")) -> None:
    """Check journey files without touching the database; exit 1 at the first bad one."""
    from tournesol.triggers.definition import JourneyError, load_journey

    for file in files:
        try:
            journey = load_journey(_read(file))
        except JourneyError as exc:
            fail(f"{file}: {exc}", hint="docs/journeys.md lists every field")
        console.print(
            f"[green]ok[/] {file}: {journey.code}, {len(journey.steps)} steps, "
            f"digest {journey.digest()[:12]}"
        )


@app.command()
def publish(
    files: list[Path] = typer.Argument(..., help="Journey files (YAML)."),
    actor: str = typer.Option("cli", help="Who publishes (kept with the version)."),
) -> None:
    """Publish journeys: each becomes its journey's current version (a new version only when
    it changed; running instances stay on theirs), and the journey active."""
    from tournesol.db import unit_of_work
    from tournesol.triggers import service
    from tournesol.triggers.definition import JourneyError

    _, factory = engine_and_factory()
    for file in files:
        text = _read(file)
        try:
            with unit_of_work(factory) as session:
                version = service.publish(session, text=text, now=datetime.now(UTC), actor=actor)
                journey = service.get(session, journey_id=version.journey_id)
                assert journey is not None
                code, number, digest = journey.code, version.version, version.digest
        except JourneyError as exc:
            fail(f"{file}: {exc}", hint="`tournesol journeys validate` checks a file")
        console.print(f"published {code} version {number} ({digest[:12]})")


@app.command("list")
def list_command() -> None:
    """The journeys, their status, current version and live instances."""
    from sqlalchemy import func, select

    from tournesol.db import unit_of_work
    from tournesol.triggers import service
    from tournesol.triggers.models import JourneyInstance, JourneyVersion
    from tournesol.triggers.service import LIVE_STATUSES

    _, factory = engine_and_factory()
    table = Table("code", "name", "status", "version", "live instances", "ended")
    with unit_of_work(factory) as session:
        for journey in service.list_journeys(session):
            version = (
                session.get(JourneyVersion, journey.current_version_id)
                if journey.current_version_id
                else None
            )
            counts = dict(
                session.execute(
                    select(JourneyInstance.status.in_(LIVE_STATUSES), func.count())
                    .where(JourneyInstance.journey_id == journey.id)
                    .group_by(JourneyInstance.status.in_(LIVE_STATUSES))
                ).tuples()
            )
            table.add_row(
                journey.code, journey.name, journey.status,
                str(version.version) if version else "-",
                str(counts.get(True, 0)), str(counts.get(False, 0)),
            )  # fmt: skip
    console.print(table)


def _set(code: str, action: str) -> None:
    from tournesol.db import unit_of_work
    from tournesol.triggers import service

    _, factory = engine_and_factory()
    try:
        with unit_of_work(factory) as session:
            change = service.pause if action == "pause" else service.resume
            journey = change(session, code=code, now=datetime.now(UTC))
            status = journey.status
    except service.JourneyNotFound:
        fail(f"there is no journey {code!r}", hint="`tournesol journeys list` shows them")
    console.print(f"{code}: {status}")


@app.command()
def pause(code: str = typer.Argument(..., help="The journey's code.")) -> None:
    """Pause a journey: no entries, no timers, no sends until resumed (exits still apply)."""
    _set(code, "pause")


@app.command()
def resume(code: str = typer.Argument(..., help="The journey's code.")) -> None:
    """Resume a paused journey."""
    _set(code, "resume")


@app.command()
def simulate(
    file: Path = typer.Argument(..., help="The journey file (YAML), published or not."),
    start: str = typer.Option(..., "--from", help="Start of the period (ISO 8601)."),
    end: str = typer.Option(..., "--to", help="End of the period (ISO 8601)."),
    segment: str = typer.Option(None, help="The population: a saved segment's members..."),
    customers: int = typer.Option(1000, help="...at most this many (lowest ids first)."),
    step: int = typer.Option(60, help="Minutes between two ticks of the simulated clock."),
) -> None:
    """What the journey would do over a period: the same engine with a recording gate,
    inside a transaction rolled back at the end. Counts only, no personal data."""
    from sqlalchemy import select

    from tournesol.customers.models import Customer
    from tournesol.db import unit_of_work
    from tournesol.segments import service as segments
    from tournesol.triggers import service
    from tournesol.triggers.definition import JourneyError

    text = _read(file)
    begin, finish = _time(start, name="--from"), _time(end, name="--to")
    if finish <= begin:
        fail("--to must come after --from")
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        if segment:
            saved = segments.get_by_code(session, code=segment)
            if saved is None:
                fail(f"there is no segment {segment!r}", hint="`tournesol segments list`")
            ids = sorted(session.scalars(segments.compile(session, saved.definition).query))
        else:
            ids = list(
                session.scalars(
                    select(Customer.id).where(Customer.status == "active").order_by(Customer.id)
                )
            )
        ids = ids[:customers]
        try:
            report = service.simulate(
                session, text_or_version=text, customers=ids, start=begin, end=finish,
                step=timedelta(minutes=step),
            )  # fmt: skip
        except JourneyError as exc:
            fail(f"{file}: {exc}", hint="`tournesol journeys validate` checks a file")
    console.print(
        f"{report.journey}: {report.customers} customers, {report.events} events, "
        f"{report.entered} entered, {report.start:%Y-%m-%d %H:%M} -> {report.end:%Y-%m-%d %H:%M}"
    )
    table = Table("step", "outcome", "count")
    for step_id, outcomes in report.steps.items():
        for outcome, count in outcomes.most_common():
            table.add_row(step_id, outcome, str(count))
    console.print(table)
    for title, counts in (
        ("sends", report.sends), ("goals", report.goals), ("exits", report.exits),
        ("still running", report.running),
    ):  # fmt: skip
        if counts:
            console.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


def _gate() -> Gate:
    from tournesol.campaigns.setup import SetupError, policies
    from tournesol.triggers.gate import DispatchGate

    try:
        return DispatchGate(policies(settings()))
    except SetupError as exc:
        fail(str(exc))


def _show(counts: Counter[str]) -> str:
    shown = [f"{k} {v}" for k, v in sorted(counts.items()) if v]
    return ", ".join(shown) or "nothing to do"


@app.command()
def run(
    now: str = typer.Option(None, help="The clock (ISO 8601; default: now)."),
    until: str = typer.Option(None, help="Step the clock up to this time (ISO 8601)."),
    step: int = typer.Option(60, help="Minutes between two passes when --until is given."),
) -> None:
    """Run the engine: one pass at --now, or passes from --now to --until every --step
    minutes (to catch up, or to play the demo's days). Sends go to the outbox; `tournesol
    campaigns run` sends what is due there."""
    from tournesol.campaigns.dispatch import worker_id
    from tournesol.triggers.worker import run_once

    _, factory = engine_and_factory()
    gate = _gate()
    clock = _time(now, name="--now")
    last = _time(until, name="--until") if until else clock
    if last < clock:
        fail("--until must not come before --now")
    total: Counter[str] = Counter()
    name = worker_id("journeys")
    while True:
        total.update(run_once(factory, now=clock, gate=gate, worker=name))
        if clock >= last:
            break
        clock = min(clock + timedelta(minutes=step), last)
    console.print(_show(total))


def worker(
    interval: float = typer.Option(5.0, help="Seconds between two passes."),
    once: bool = typer.Option(False, help="One pass, then stop."),
) -> None:
    """Run due journey steps for good: collect events, start and advance instances, send
    through the gate; a pass every --interval seconds. Stop with Ctrl-C; a worker killed at
    any point loses nothing and sends nothing twice (docs/journeys.md)."""
    from tournesol.campaigns.dispatch import worker_id
    from tournesol.triggers.worker import run_once

    _, factory = engine_and_factory()
    gate = _gate()
    name = worker_id("journeys")
    console.print(f"journey worker {name}: a pass every {interval:g} s (Ctrl-C stops it)")
    try:
        while True:
            counts = run_once(factory, now=datetime.now(UTC), gate=gate, worker=name)
            if counts or once:
                console.print(f"{datetime.now(UTC):%H:%M:%S} {_show(counts)}")
            if once:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        console.print("stopped")
