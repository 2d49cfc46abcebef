"""Journeys at scale on PostgreSQL: a stream of events through two journey workers, the
events processed per second and the latency from an event to its message in the outbox.

    .venv/bin/python bench/journeys.py [--database tournesol_segments_bench] [--events 1000000]
        [--rate 0] [--workers 2] [--batch 500] [--server-url URL] [--json PATH]

1. The base: the database of ``bench/segments.py`` (1,000,000 customers with consents,
   preferences and history), loaded by that script when missing (about 15 minutes here).
2. Earlier bench journeys are removed (their instances, step log, inbox, outbox rows and
   timeline rows), then the journey ``bench_signal`` is published with its message (a
   triggered campaign): on a ``bench_signal`` event, an e-mail at once through the dispatch
   gate (consent, suppressions, contact hours, pressure: the gate's answer, sent or
   suppressed, ends the step), then exit. The customers' contact hours are ignored for the
   bench's message (it is transactional: pressure-exempt, consent needed all the same).
3. A feeder process writes ``--events`` events into the inbox, 1,000 per transaction, for
   random customers (``--rate`` events a second, 0: as fast as it can), each stamped with
   its wall-clock arrival; ``--workers`` worker processes (``triggers.worker.run_once`` in a
   loop, the real clock, each on its shard of customers) process them meanwhile.
4. Measured once every event is processed: events a second (from the first arrival to the
   last event processed), and for the events whose message went to the outbox, the latency
   from arrival to the outbox row (p50, p95, p99).

Figures are printed last. Targets (issue 8): at least 2,000 events a second with two
workers; event-to-outbox latency p95 under 2 s.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import random
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console

BENCH = Path(__file__).resolve().parent
console = Console(stderr=True)

JOURNEY = "bench_signal"
CAMPAIGN = "bench_signal_mail"
DEFINITION = f"""
code: {JOURNEY}
name: Bench — signal
trigger:
  event: {{type: bench_signal}}
instance_key: event.properties.signal
reentry: always
max_duration: 1d
steps:
  - id: mail
    action: {{channel: email, message: {CAMPAIGN}, purpose: transactional, on_suppressed: exit}}
    next: done
  - {{id: done, exit: {{reason: finished}}}}
"""


def _campaigns_bench() -> ModuleType:
    name = "campaigns_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / "campaigns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def remove_bench_journey(factory: Any) -> None:
    from sqlalchemy import delete, select

    from tournesol.campaigns.models import Campaign, CampaignMessage, Outbox
    from tournesol.db import unit_of_work
    from tournesol.interactions.models import Interaction
    from tournesol.triggers.models import (
        Journey,
        JourneyInbox,
        JourneyInstance,
        JourneyStepLog,
        JourneyVersion,
    )

    with unit_of_work(factory) as session:
        journey_id = session.scalar(select(Journey.id).where(Journey.code == JOURNEY))
        if journey_id is not None:
            session.execute(delete(JourneyStepLog).where(JourneyStepLog.journey_id == journey_id))
            session.execute(delete(JourneyInstance).where(JourneyInstance.journey_id == journey_id))
            session.execute(delete(JourneyVersion).where(JourneyVersion.journey_id == journey_id))
            session.execute(delete(Journey).where(Journey.id == journey_id))
        session.execute(delete(JourneyInbox).where(JourneyInbox.type == "bench_signal"))
        session.execute(
            delete(Interaction).where(Interaction.campaign_code == f"journey:{JOURNEY}")
        )
        campaign_id = session.scalar(select(Campaign.id).where(Campaign.code == CAMPAIGN))
        if campaign_id is not None:
            session.execute(delete(Outbox).where(Outbox.campaign_id == campaign_id))
            session.execute(
                delete(CampaignMessage).where(CampaignMessage.campaign_id == campaign_id)
            )
            session.execute(delete(Campaign).where(Campaign.id == campaign_id))


def publish(factory: Any, now: datetime) -> None:
    from tournesol.campaigns import service as campaigns
    from tournesol.db import unit_of_work
    from tournesol.triggers import service

    text = _campaigns_bench().TEXT
    with unit_of_work(factory) as session:
        campaign = campaigns.create(
            session, code=CAMPAIGN, name="Bench signal", segment=None, channels=["email"],
            kind="triggered", purpose="transactional", control_share=0.0,
        )  # fmt: skip
        campaigns.set_message(
            session, campaign=campaign, channel="email", language="fr",
            subject="Votre signal", body_text=text, body_html=None,
        )  # fmt: skip
        service.publish(session, text=DEFINITION, now=now, actor="bench")
        # the scans of new rows start after what is there (the bench feeds the inbox itself)
        service.collect_events(session, now=now, limit=1)


def feed(url: str, events: int, rate: float, seed: int, customers: int) -> None:
    """The feeder process: ``events`` events into the inbox, 1,000 per transaction."""
    from sqlalchemy import insert

    from tournesol.db import make_engine, make_session_factory, unit_of_work
    from tournesol.triggers.models import JourneyInbox

    factory = make_session_factory(make_engine(url))
    rng = random.Random(seed)
    started = time.perf_counter()
    sent = 0
    while sent < events:
        size = min(1000, events - sent)
        now = datetime.now(UTC)
        rows = [
            {
                "event_id": f"bench:{sent + i}",
                "customer_id": rng.randint(1, customers),
                "type": "bench_signal",
                "occurred_at": now,
                "properties": {"signal": f"s{sent + i}"},
                "received_at": now,
            }
            for i in range(size)
        ]
        with unit_of_work(factory) as session:
            session.execute(insert(JourneyInbox), rows)
        sent += size
        if rate > 0:
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)


def work(url: str, shard: int, shards: int, batch: int, stop_at: float) -> None:
    """A worker process: passes of the engine on its shard until the inbox is drained (or the
    time limit)."""
    from collections import Counter

    from tournesol.campaigns.service import Policies
    from tournesol.db import make_engine, make_session_factory, unit_of_work
    from tournesol.triggers import service
    from tournesol.triggers.gate import DispatchGate

    factory = make_session_factory(make_engine(url))
    gate = DispatchGate(Policies())
    idle = 0
    while time.time() < stop_at and idle < 40:
        now = datetime.now(UTC)
        with unit_of_work(factory) as session:
            inbox: Counter[str] = service.process_inbox(
                session, now=now, limit=batch, shard=(shard, shards)
            )
        with unit_of_work(factory) as session:
            due = service.run_due(session, now=now, gate=gate, worker=f"bench-{shard}", limit=batch)
        if inbox["events"] or due["claimed"]:
            idle = 0
        else:
            idle += 1
            time.sleep(0.25)


def measure(factory: Any, started: datetime) -> dict[str, Any]:
    from sqlalchemy import func, select

    from tournesol.db import unit_of_work
    from tournesol.triggers.models import JourneyInbox, JourneyInstance, JourneyStepLog

    inbox, inst, log = JourneyInbox, JourneyInstance, JourneyStepLog
    with unit_of_work(factory) as session:
        total, first, last, pending = session.execute(
            select(
                func.count(), func.min(inbox.received_at), func.max(inbox.processed_at),
                func.count(inbox.id).filter(inbox.processed_at.is_(None)),
            ).where(inbox.type == "bench_signal")
        ).one()  # fmt: skip
        # the step log's time is the pass's clock (the real one): arrival -> the gate's answer,
        # which for a message sent is its outbox row (written in the same transaction)
        latencies: dict[str, list[float]] = {"sent": [], "suppressed": []}
        for outcome, received, decided in session.execute(
            select(log.outcome, inbox.received_at, log.at)
            .join(inst, inst.id == log.instance_id)
            .join(
                inbox,
                (inbox.customer_id == inst.customer_id)
                & (inst.instance_key == func.concat("s", func.substr(inbox.event_id, 7))),
            )
            .where(inbox.type == "bench_signal", log.step == "mail")
        ):
            latencies.setdefault(outcome, []).append((decided - received).total_seconds())
    seconds = (last - first).total_seconds() if first and last else None
    sent = sorted(latencies["sent"])
    every = sorted(v for values in latencies.values() for v in values)

    def pct(values: list[float], p: float) -> float | None:
        if not values:
            return None
        return round(values[min(len(values) - 1, int(p * len(values)))], 3)

    return {
        "events": total,
        "unprocessed": pending,
        "seconds": round(seconds, 1) if seconds else None,
        "per_second": round(total / seconds, 1) if seconds else None,
        "sent": len(sent),
        "suppressed": len(latencies["suppressed"]),
        "latency_p50_s": pct(sent, 0.50),
        "latency_p95_s": pct(sent, 0.95),
        "latency_p99_s": pct(sent, 0.99),
        "decision_p95_s": pct(every, 0.95),
        "started": started.isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--database", default="tournesol_segments_bench")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=0.0, help="events a second (0: at once)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds at most")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--today", type=date.fromisoformat)
    args = parser.parse_args()
    args.keep_plan = args.reuse_plan = False

    from tournesol.db import make_engine, make_session_factory

    url, _today = _campaigns_bench().prepare_base(args)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    started = datetime.now(UTC)
    remove_bench_journey(factory)
    publish(factory, started)
    stop_at = time.time() + args.timeout
    context = multiprocessing.get_context("spawn")
    feeder = context.Process(
        target=feed, args=(url, args.events, args.rate, 7, args.customers), name="feeder"
    )
    workers = [
        context.Process(target=work, args=(url, k, args.workers, args.batch, stop_at))
        for k in range(args.workers)
    ]
    with console.status(f"{args.events:,} events through {args.workers} workers..."):
        feeder.start()
        for process in workers:
            process.start()
        feeder.join()
        for process in workers:
            process.join()
    figures = {"database": args.database, "workers": args.workers, "batch": args.batch}
    figures.update(measure(factory, started))
    engine.dispose()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    print(f"\nJourneys bench on PostgreSQL ({args.database}), {args.workers} workers")
    print(
        f"events: {figures['events']:,} in {figures['seconds']} s = {figures['per_second']}/s "
        f"(unprocessed: {figures['unprocessed']:,})"
    )
    print(
        f"messages in the outbox: {figures['sent']:,} (suppressed by the gate: "
        f"{figures['suppressed']:,}); event -> outbox latency p50 "
        f"{figures['latency_p50_s']} s, p95 {figures['latency_p95_s']} s, "
        f"p99 {figures['latency_p99_s']} s"
    )
    rate = figures["per_second"] or 0
    p95 = figures["latency_p95_s"]
    print(f"target: at least 2,000 events/s: {'met' if rate >= 2000 else 'NOT met'}")
    print(f"target: p95 under 2 s: {'met' if p95 is not None and p95 < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
