"""Kill -9 the journey worker 50 times at random points (collecting events, processing the
inbox, passing messages through the gate), restart it each time, then let it finish: the
outbox holds exactly the messages of a clean run of the same scenario on another database,
none twice, and no instance is stuck. Real processes, real databases (fresh ones: commits are
real here), the real dispatch gate, on SQLite and PostgreSQL.

The scenario: customers with various consents, contact hours and earlier contacts leave
carts, half before the worker starts (history, collected by its first pass), half while it
runs (sent to the inbox with fixed event ids, as the API does); later, some order (a cart's
own order, or another: transactions, collected), some unsubscribe. The worker process
(:data:`CHILD`) plays the clock from the scenario's start to its end, a pass every half hour
of the scenario, and writes down the last pass it completed; killed, the next one starts
after it. What happens in the world during a half hour is written just before the pass that
ends it, once (a restart finds it written). Kills land a little after a worker begins a
chosen pass: half spread over the scenario, half in the passes that send."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tests.integration.test_journeys_store import example
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Outbox
from tournesol.consent import service as consent_service
from tournesol.consent.models import Preference
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.ingest.models import Source
from tournesol.interactions.models import Interaction
from tournesol.triggers import service as journeys
from tournesol.triggers.models import JourneyInbox, JourneyInstance, JourneyStepLog

CUSTOMERS = 400
KILLS = 50
START = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)  # Monday 4 May 2026, 10:00 in Paris
CARTS_UNTIL = 72  # hours: carts are left until then
END = START + timedelta(hours=CARTS_UNTIL, days=7, minutes=30)  # every instance has ended
STEP = 30  # minutes between two passes
BATCH = 20  # the worker's batches: many transactions, many points to be killed between
SEED = 8
AHEAD = 3  # worker processes started ahead of their turn
DELAY = (0.0, 0.3)  # seconds a worker works in the pass it is killed in

CHILD = r"""
import json, os, sys
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from tournesol.campaigns.service import Policies
from tournesol.consent import service as consent_service
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.interactions.models import Transaction
from tournesol.triggers import service
from tournesol.triggers.gate import DispatchGate
from tournesol.triggers.worker import run_once

url, plan_file, done_file = sys.argv[1:4]
plan = json.loads(open(plan_file).read())
step = timedelta(minutes=plan["step"])
end = datetime.fromisoformat(plan["end"])
world = [(datetime.fromisoformat(at), kind, who, ref) for at, kind, who, ref in plan["world"]]
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
factory = make_session_factory(make_engine(url))
gate = DispatchGate(Policies())
clock = datetime.fromisoformat(plan["start"])
if os.path.exists(done_file):  # the last pass completed: go on after it
    clock = datetime.fromisoformat(open(done_file).read().strip()) + step


def progress(kind, counts):
    print("phase", kind, flush=True)


while clock <= end:
    now = [w for w in world if clock - step < w[0] <= clock]
    if now:
        print("phase world", flush=True)
        with unit_of_work(factory) as s:
            for at, kind, who, ref in now:
                if kind == "order":
                    found = s.scalar(
                        select(Transaction.id).where(
                            Transaction.source_id == plan["shop"], Transaction.external_id == ref
                        )
                    )
                    if found is None:
                        cart = ref.split(":")[1]
                        s.add(Transaction(
                            source_id=plan["shop"], external_id=ref, customer_id=who,
                            kind="order", channel="web", brand_id=plan["brand"],
                            occurred_at=at, total_amount=Decimal(50),
                            attributes={"cart_id": cart}, created_at=at,
                        ))
                elif kind == "cart":
                    cart, total = ref.split(":")[1:]
                    service.submit_event(
                        s, customer_id=who, type="cart_abandoned",
                        properties={"cart_id": cart, "total": int(total)}, occurred_at=at,
                        event_id=ref,
                    )
                elif service.submit_event(
                    s, customer_id=who, type="unsubscribed", properties={"channel": "email"},
                    occurred_at=at, event_id=ref,
                ):
                    consent_service.set_consent(
                        s, customer_id=who, channel="email", purpose="marketing",
                        brand_id=None, status="withdrawn", proof_source="unsubscribe link",
                        proof_text_version="v1", collected_at=at, actor="crash test",
                    )
    print("phase pass", clock.isoformat(), flush=True)
    run_once(factory, now=clock, gate=gate, worker=f"crash-{os.getpid()}", batch=plan["batch"],
             progress=progress)
    with open(done_file + ".tmp", "w") as out:
        out.write(clock.isoformat())
    os.replace(done_file + ".tmp", done_file)
    clock += step
print("done", flush=True)
"""


# --- the scenario ---------------------------------------------------------------------------


def populate(url: str) -> dict[str, Any]:
    """Customers, consents, preferences, earlier contacts, the triggered campaigns, the
    published journey, the scans started, then the carts left (in the last 3 hours before
    START). The same on every fresh database (same ids): a seeded random generator."""
    rng = random.Random(SEED)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        with unit_of_work(factory) as s:
            brand = Brand(code="SOLEIL", name="Soleil")
            shop = Source(name="web shop", kind="ecommerce", restrictions=[])
            s.add_all([brand, shop])
            s.flush()
            for code, channel in (("cart_reminder", "email"), ("cart_last_call", "sms")):
                campaign = campaigns.create(
                    s, code=code, name=code, segment=None, channels=[channel],
                    kind="triggered", brand="SOLEIL", control_share=0.0,
                )  # fmt: skip
                campaigns.set_message(
                    s, campaign=campaign, channel=channel, language="fr", body_text="Panier",
                    subject="Votre panier" if channel == "email" else None,
                )  # fmt: skip
            journeys.publish(s, text=example("abandoned_cart"), now=START - timedelta(days=1))
            people = []
            for i in range(CUSTOMERS):
                person = Customer(
                    first_name=f"C{i}", last_name="Test", country="FR", brand_id=brand.id,
                    email=f"c{i}@exemple.fr" if rng.random() < 0.9 else None,
                    phone_mobile=f"+336{i:08d}" if rng.random() < 0.7 else None,
                    created_at=START - timedelta(days=400),
                )  # fmt: skip
                s.add(person)
                s.flush()
                people.append(person.id)
                for channel, share in (("email", 0.75), ("sms", 0.5)):
                    draw = rng.random()
                    if draw < share or draw > 0.95:
                        consent_service.set_consent(
                            s, customer_id=person.id, channel=channel, purpose="marketing",
                            brand_id=None, status="granted" if draw < share else "denied",
                            proof_source="web form", proof_text_version="v1",
                            collected_at=START - timedelta(days=60), actor="test",
                        )  # fmt: skip
                if rng.random() < 0.2:
                    s.add(Preference(customer_id=person.id, channel="any", hours="09:00-12:00"))
                if rng.random() < 0.2:
                    when = START - timedelta(hours=rng.randrange(0, 6 * 24))
                    s.add(
                        Outbox(
                            key=f"earlier:{person.id}", customer_id=person.id,
                            brand_id=brand.id, channel=rng.choice(["email", "sms"]),
                            purpose="marketing", language="fr", state="sent",
                            send_after=when, planned_at=when,
                        )
                    )  # fmt: skip
            shop_id, brand_id = shop.id, brand.id
        with unit_of_work(factory) as s:  # the scans start at the end of the history
            journeys.collect_events(s, now=START - timedelta(hours=4))
        world: list[tuple[str, str, int, str]] = []
        with unit_of_work(factory) as s:
            for n, who in enumerate(people):
                for cart in range(rng.choice([1, 1, 2])):
                    cart_id = f"cart-{n}-{cart}"
                    total = rng.choice([15, 40, 90])
                    if rng.random() < 0.5:  # left before the worker starts: collected
                        at = START - timedelta(minutes=rng.randrange(0, 180))
                        s.add(
                            Interaction(
                                customer_id=who, occurred_at=at, channel="web",
                                direction="inbound", type="cart_abandoned",
                                payload={"cart_id": cart_id, "total": total}, created_at=at,
                            )
                        )  # fmt: skip
                    else:  # left while it runs: sent to the inbox (the API), a fixed id
                        at = START + timedelta(minutes=rng.randrange(1, CARTS_UNTIL * 60))
                        world.append((at.isoformat(), "cart", who, f"api:{cart_id}:{total}"))
                    if rng.random() < 0.3:  # an order: this cart's, or now and then another
                        bought = cart_id if rng.random() < 0.8 else f"cart-{n}-other"
                        at += timedelta(minutes=rng.randrange(30, 100 * 60))
                        world.append((at.isoformat(), "order", who, f"order:{bought}:{n}"))
                if rng.random() < 0.1:
                    at = START + timedelta(minutes=rng.randrange(30, 120 * 60))
                    world.append((at.isoformat(), "unsubscribe", who, f"unsub:{n}"))
        return {
            "people": people, "shop": shop_id, "brand": brand_id, "world": sorted(world),
            "start": START.isoformat(), "end": END.isoformat(), "step": STEP, "batch": BATCH,
        }  # fmt: skip
    finally:
        engine.dispose()


# --- the worker process ---------------------------------------------------------------------

# the last line a worker wrote -> what it was doing when killed
DOING = {
    "world": "writing the world's events",
    "pass": "collecting",
    "collected": "collecting, date triggers or the inbox",
    "date": "the inbox",
    "inbox": "the inbox or due instances",
    "due": "due instances",
}


class Worker:
    """A worker process, started at once; it does its imports, then waits for ``go``."""

    def __init__(self, url: str, plan: Path, done: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(plan), str(done)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    def go(self) -> None:
        """Wait until it is ready, then let it work."""
        assert self.process.stdout is not None and self.process.stdin is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", line + self.process.communicate()[1]
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def reach(self, target: datetime) -> None:
        """Return once it begins the pass of ``target`` or a later one (or has ended)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("phase pass") and datetime.fromisoformat(line.split()[2]) >= target:
                return

    def kill(self) -> str | None:
        """SIGKILL; what it was doing then (None if it had ended on its own)."""
        ended = self.process.poll() is not None
        if not ended:
            os.kill(self.process.pid, signal.SIGKILL)
        out, err = self.process.communicate()
        if ended:
            assert self.process.returncode == 0, err
            return None
        # a line the kill cut short (no newline yet) says nothing: only whole lines count
        lines = [*self.lines, *out.splitlines(keepends=True)]
        phases = [
            line.split()[1] for line in lines if line.startswith("phase ") and line.endswith("\n")
        ]
        # the last phase it reported is the last batch it finished: it was in the next
        return DOING[phases[-1]]

    def finish(self, timeout: float) -> str:
        self.go()
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == 0, err
        return out


def run_clean(url: str, plan: Path, done: Path) -> float:
    began = time.monotonic()
    out = Worker(url, plan, done).finish(timeout=300)
    assert out.rstrip().endswith("done")
    return time.monotonic() - began


# --- what the database holds ----------------------------------------------------------------


@contextmanager
def reading(url: str) -> Iterator[Session]:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def outcome(url: str) -> dict[str, Any]:
    with reading(url) as s:
        outbox = s.execute(
            select(Outbox.key, Outbox.customer_id, Outbox.channel, Outbox.send_after).where(
                ~Outbox.key.like("earlier:%")
            )
        ).all()
        instances = s.execute(
            select(
                JourneyInstance.id, JourneyInstance.customer_id, JourneyInstance.instance_key,
                JourneyInstance.status, JourneyInstance.exit_reason, JourneyInstance.due_at,
                JourneyInstance.ended_at,
            )
        ).all()  # fmt: skip
        by_id = {row.id: (row.customer_id, row.instance_key) for row in instances}
        logs = s.execute(
            select(
                JourneyStepLog.instance_id, JourneyStepLog.step, JourneyStepLog.visit,
                JourneyStepLog.outcome, JourneyStepLog.at,
            )
        ).all()  # fmt: skip
        timeline = Counter(
            s.execute(
                select(Interaction.customer_id, Interaction.type, Interaction.outcome).where(
                    Interaction.type.like("journey_%")
                )
            ).all()
        )
        pending = s.scalar(
            select(func.count())
            .select_from(JourneyInbox)
            .where(JourneyInbox.processed_at.is_(None))
        )
        return {
            "outbox": [tuple(row) for row in outbox],
            "instances": {
                (row.customer_id, row.instance_key): (row.status, row.exit_reason, row.ended_at)
                for row in instances
            },
            "stuck": [
                row.id
                for row in instances
                if row.status not in ("done", "exited")
                and (row.due_at is None or row.due_at <= END)
            ],
            "logs": Counter((by_id[i], step, visit, out, at) for i, step, visit, out, at in logs),
            "timeline": timeline,
            "pending": pending,
            "count": len(instances),
        }


def test_a_journey_worker_killed_50_times_sends_exactly_what_a_clean_run_sends(
    backend: str, fresh_databases: FreshDatabase, tmp_path: Path
) -> None:
    clean_url, crash_url = fresh_databases.url(backend), fresh_databases.url(backend)
    plan = populate(clean_url)
    assert populate(crash_url) == plan, "the two databases must hold the same scenario"
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    clean_seconds = run_clean(clean_url, plan_file, tmp_path / "clean.done")
    print(f"\n{backend}: clean run {clean_seconds:.1f} s")
    expected = outcome(clean_url)
    assert len(expected["outbox"]) > 100, "the scenario must send many messages"
    assert expected["stuck"] == [] and expected["pending"] == 0

    # Where to kill: half the kills in passes spread over the whole scenario, half in the
    # passes that send (drawn among the clean run's messages): a little after the worker
    # begins that pass, or, when a restart begins past it, a little after the restart.
    rng = random.Random()
    # after it, too little work is left to be killed in: the last day's passes take the
    # worker less than a kill's delay
    last = END - timedelta(days=3)
    span = (last - START).total_seconds()
    targets = sorted(
        [START + timedelta(seconds=rng.uniform(0, span)) for _ in range(KILLS // 2)]
        + [min(rng.choice(expected["outbox"])[3], last) for _ in range(KILLS - KILLS // 2)]
    )
    done = tmp_path / "crash.done"
    phases: Counter[str] = Counter()
    began = time.monotonic()
    # workers started ahead do their imports while the one before them works
    ahead = [Worker(crash_url, plan_file, done) for _ in range(AHEAD)]
    for target in targets:
        worker = ahead.pop(0)
        worker.go()
        ahead.append(Worker(crash_url, plan_file, done))
        worker.reach(target)
        time.sleep(rng.uniform(*DELAY))
        phases[worker.kill() or "ended"] += 1
    reached = done.read_text(encoding="utf-8") if done.exists() else "the start"
    out = ahead.pop(0).finish(timeout=300)
    for spare in ahead:
        spare.process.kill()
        spare.process.communicate()
    assert out.rstrip().endswith("done")
    crashed_seconds = time.monotonic() - began
    print(
        f"{backend}: clean run {clean_seconds:.1f} s; {KILLS} kills then the end "
        f"{crashed_seconds:.1f} s; the last kill after the pass of {reached} (the end: "
        f"{END.isoformat()}); killed while {dict(phases)}"
    )
    assert phases["ended"] == 0, f"every kill must land mid-run: {dict(phases)}"
    assert len(set(phases)) >= 3, phases

    got = outcome(crash_url)
    keys = Counter(key for key, *_ in got["outbox"])
    assert max(keys.values()) == 1, "a key twice in the outbox"
    assert {k for k, *_ in got["outbox"]} == {k for k, *_ in expected["outbox"]}
    assert sorted(got["outbox"]) == sorted(expected["outbox"])  # same customers, channels, times
    assert got["stuck"] == [] and got["pending"] == 0, "an instance or an event left behind"
    assert got["count"] == expected["count"]
    assert got["instances"] == expected["instances"]
    assert got["logs"] == expected["logs"]  # each visit logged once, with the same outcome
    assert got["timeline"] == expected["timeline"]  # nothing twice on the customers' timelines
