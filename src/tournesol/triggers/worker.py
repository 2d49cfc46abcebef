"""The journey worker's pass: what ``tournesol worker`` repeats and ``tournesol journeys run``
steps through, each part in transactions of its own.

1. collect: new interactions, transactions, customers and segment stays into the inbox;
2. date triggers, once per day (the day in Paris; each customer's own local day is the
   service's business): the birthdays and other date rules due that day;
3. the inbox, batch by batch, until it is empty: exits, awaited events, entries, and the
   sends these lead to, through the gate (the outbox rows and the instances' new states
   commit together);
4. due instances, batch by batch, until none is due: waits that ended, sends through the
   gate, as above;
5. the planner's statistics of the tables the engine fills, when they have grown stale.

Each batch commits on its own: a worker killed in the middle loses only its uncommitted
batch, which the next pass (or another worker) takes again; the unique keys of the inbox,
the step log and the outbox make the replay harmless.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tournesol.db import unit_of_work
from tournesol.triggers import service
from tournesol.triggers.gate import Gate
from tournesol.triggers.models import JourneyCursor

DATE_CURSOR: Final = "date_triggers"
DAY_ZONE: Final = ZoneInfo("Europe/Paris")
# A pass stops after this many batches of one kind, so that one pass always ends.
MAX_BATCHES: Final = 1000


def run_once(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    gate: Gate,
    worker: str,
    batch: int = 500,
    progress: Callable[[str, Counter[str]], None] | None = None,
) -> Counter[str]:
    """One pass at ``now`` (see the module); returns what it did, by kind."""
    total: Counter[str] = Counter()

    def add(kind: str, counts: Counter[str]) -> int:
        for key, value in counts.items():
            total[f"{kind}.{key}"] += value
        if progress is not None:
            progress(kind, counts)
        return sum(counts.values())

    for _ in range(MAX_BATCHES):
        with unit_of_work(factory) as session:
            found = service.collect_events(session, now=now, limit=batch * 10)
        if not add("collected", found):
            break
    day = now.astimezone(DAY_ZONE).date()
    with unit_of_work(factory) as session:
        if _day_due(session, day, now):
            add("date", service.run_date_triggers(session, day=day, now=now))
    for _ in range(MAX_BATCHES):
        with unit_of_work(factory) as session:
            counts = service.process_inbox(session, now=now, gate=gate, limit=batch)
        add("inbox", counts)
        if counts["events"] + counts["busy"] < batch or not counts["events"]:
            break
    for _ in range(MAX_BATCHES):
        with unit_of_work(factory) as session:
            counts = service.run_due(session, now=now, gate=gate, worker=worker, limit=batch)
        add("due", counts)
        # stop when nothing more is due, or when all that is due is another worker's business
        if counts["claimed"] + counts["busy"] < batch or not counts["claimed"]:
            break
    with unit_of_work(factory) as session:
        refreshed = service.refresh_statistics(session)
    if refreshed:
        total["statistics.analyzed"] += len(refreshed)
    return total


def _day_due(session: Session, day: date, now: datetime) -> bool:
    """Whether the date triggers of ``day`` are still to run, and mark them run (in the
    caller's transaction, with the events they store: both or neither)."""
    cursor = session.scalar(
        select(JourneyCursor).where(JourneyCursor.name == DATE_CURSOR).with_for_update()
    )
    ordinal = day.toordinal()
    if cursor is None:
        session.add(JourneyCursor(name=DATE_CURSOR, position=ordinal, floor=0, updated_at=now))
        session.flush()
        return True
    if cursor.position >= ordinal:
        return False
    cursor.position = ordinal
    cursor.updated_at = now
    return True
