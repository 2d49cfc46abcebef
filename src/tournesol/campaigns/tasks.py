"""Advisors' tasks: the ``advisor_task`` rows of the outbox, which no dispatcher sends.

A journey's ``advisor_task`` action goes through the dispatch gate like a message and becomes
one outbox row (``channel='advisor_task'``, ``state='planned'``, the journey, the step and the
action's properties such as ``queue`` and ``priority`` in its ``payload``). Advisors work them
from their task list: :func:`open_tasks` lists the open ones with what an advisor needs to know
about each customer, :func:`complete_task` closes one with its outcome (the row goes to
``sent``, and the customer's timeline gets an ``advisor_task_done`` row in the same
transaction).

Functions here take the session and never commit (the web face does)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, aliased

from tournesol.campaigns.models import Campaign, Outbox
from tournesol.consent.models import Preference
from tournesol.customers.models import Customer
from tournesol.db import Dialect, utcnow
from tournesol.interactions.models import Interaction
from tournesol.scoring.models import CustomerFeature, CustomerRfm

TASK_CHANNEL: Final = "advisor_task"
OPEN: Final = "planned"  # an open task: the outbox's planned state
DONE: Final = "sent"  # a task worked: the outbox's sent state
OUTCOMES: Final = ("reached", "no_answer", "refused", "wrong_number", "not_needed")
NOTE_MAX: Final = 500
MAX_PAGE: Final = 500
# The timeline row of a task worked.
TIMELINE_CHANNEL: Final = "advisor"
TIMELINE_TYPE: Final = "advisor_task_done"
# The preference row whose days and hours say when to call, else the row for all channels.
CALL_CHANNELS: Final = ("phone", "any")


class TaskError(ValueError):
    """A task that cannot be completed, and why: ``code`` is ``unknown`` (no outbox row),
    ``not_a_task`` (a row of another channel), ``closed`` (done already, or cancelled) or
    ``invalid`` (a bad outcome or note)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class TaskView:
    """One open task as the task list shows it: the task (its campaign, the journey and step
    that asked for it, its queue and priority, when it fell due) and the customer's context
    (name, RFM segment over all brands, last purchase, purchases of the last 365 days, the
    preferred channels and when they like to be called). Context the base has not computed
    yet (features, RFM) is None."""

    outbox_id: int
    customer_id: int
    customer_status: str | None
    civility: str | None
    first_name: str | None
    last_name: str | None
    brand_id: int | None
    campaign_code: str | None
    campaign_name: str | None
    queue: str | None
    priority: str | None
    journey: str | None
    step: str | None
    due_at: datetime
    planned_at: datetime
    rfm_segment: str | None
    last_purchase_at: datetime | None
    purchase_count_365: int | None
    preferred_channels: tuple[str, ...]
    contact_days: str | None
    contact_hours: str | None
    language: str | None

    @property
    def name(self) -> str:
        """First and last name from the golden record ('' when it has neither)."""
        return " ".join(p for p in (self.first_name, self.last_name) if p)


def _queue_of() -> Any:
    """The queue of an outbox row's payload, as text (NULL when it has none)."""
    return Outbox.payload["queue"].as_string()


def _open() -> Any:
    return and_(Outbox.channel == TASK_CHANNEL, Outbox.state == OPEN)


def open_tasks(
    session: Session,
    *,
    queue: str | None = None,
    brand_id: int | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[TaskView]:
    """The open advisor tasks, oldest first (by due time, then id), at most ``limit``.

    ``queue``: only this queue's tasks (``""``: the tasks without a queue; None: every
    queue). ``brand_id``: only the tasks of this brand. ``after_id``: the page after the task
    of this id (the last one of the previous page; the cursor holds when tasks before it are
    done meanwhile). Two statements whatever the page's size: the tasks with their customer,
    campaign, RFM and features, then the page's customers' preferences.

    >>> page = open_tasks(session, queue="premium", limit=50)
    >>> more = open_tasks(session, queue="premium", limit=50, after_id=page[-1].outbox_id)
    """
    limit = max(1, min(limit, MAX_PAGE))
    o, c, k, r, f = Outbox, Customer, Campaign, CustomerRfm, CustomerFeature
    columns = (
        o.id, o.customer_id, o.brand_id, o.payload, o.send_after, o.planned_at,
        c.status, c.civility, c.first_name, c.last_name, k.code, k.name, r.segment,
        f.last_purchase_at, f.purchase_count_365,
    )  # fmt: skip
    query = (
        select(*columns)
        .outerjoin(c, c.id == o.customer_id)
        .outerjoin(k, k.id == o.campaign_id)
        .outerjoin(r, and_(r.customer_id == o.customer_id, r.scope == "all"))
        .outerjoin(f, f.customer_id == o.customer_id)
        .where(_open())
        .order_by(o.send_after, o.id)
        .limit(limit)
    )
    if queue is not None:
        query = query.where(_queue_of().is_(None) if queue == "" else _queue_of() == queue)
    if brand_id is not None:
        query = query.where(o.brand_id == brand_id)
    if after_id is not None:
        before = aliased(Outbox)
        due = select(before.send_after).where(before.id == after_id).scalar_subquery()
        query = query.where(or_(o.send_after > due, and_(o.send_after == due, o.id > after_id)))
    rows = session.execute(query).all()
    contact = _contact(session, sorted({row[1] for row in rows}))
    out = []
    for (
        outbox_id, customer_id, brand, payload, due_at, planned_at, status, civility, first,
        last, code, name, segment, last_purchase, count_365,
    ) in rows:  # fmt: skip
        data = payload or {}
        preferred, days, hours, language = contact.get(customer_id, ((), None, None, None))
        out.append(
            TaskView(
                outbox_id=outbox_id, customer_id=customer_id, customer_status=status,
                civility=civility, first_name=first, last_name=last, brand_id=brand,
                campaign_code=code, campaign_name=name, queue=_text(data.get("queue")),
                priority=_text(data.get("priority")), journey=_text(data.get("journey")),
                step=_text(data.get("step")), due_at=due_at, planned_at=planned_at,
                rfm_segment=segment, last_purchase_at=last_purchase,
                purchase_count_365=count_365, preferred_channels=preferred, contact_days=days,
                contact_hours=hours, language=language,
            )
        )  # fmt: skip
    return out


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _contact(
    session: Session, customer_ids: list[int]
) -> dict[int, tuple[tuple[str, ...], str | None, str | None, str | None]]:
    """By customer: the channels they prefer, the days and hours they like to be called (their
    telephone preference, else their preference for all channels) and their language."""
    if not customer_ids:
        return {}
    p = Preference
    query = (
        select(p.customer_id, p.channel, p.preferred, p.days, p.hours, p.language)
        .where(Dialect.of(session).one_of(p.customer_id, customer_ids))
        .order_by(p.customer_id, p.channel)
    )
    preferred: dict[int, list[str]] = defaultdict(list)
    when: dict[int, dict[str, tuple[str | None, str | None]]] = defaultdict(dict)
    languages: dict[int, str] = {}
    for customer_id, channel, is_preferred, days, hours, language in session.execute(query):
        if is_preferred and channel != "any":
            preferred[customer_id].append(channel)
        if channel in CALL_CHANNELS and (days or hours):
            when[customer_id][channel] = (days, hours)
        if language and (channel == "any" or customer_id not in languages):
            languages[customer_id] = language
    out = {}
    for customer_id in customer_ids:
        slots = when.get(customer_id, {})
        days, hours = next((slots[ch] for ch in CALL_CHANNELS if ch in slots), (None, None))
        out[customer_id] = (
            tuple(preferred.get(customer_id, ())),
            days,
            hours,
            languages.get(customer_id),
        )
    return out


def queues(session: Session) -> list[tuple[str, int]]:
    """The queues that have open tasks, with how many each: by name, the tasks without a
    queue last under ``""``."""
    named = select(_queue_of().label("queue")).where(_open()).subquery()
    query = select(named.c.queue, func.count()).group_by(named.c.queue)
    counts = [(name or "", count) for name, count in session.execute(query)]
    return sorted(counts, key=lambda item: (item[0] == "", item[0]))


def complete_task(
    session: Session,
    *,
    outbox_id: int,
    outcome: str,
    note: str | None,
    actor: str,
    now: datetime,
) -> Interaction:
    """Close an open task with its ``outcome`` (one of :data:`OUTCOMES`) and an optional
    ``note`` (500 characters at most): the outbox row goes to ``sent`` at ``now`` with
    ``provider_id`` ``task:<outcome>``, and the customer's timeline gets one
    ``advisor_task_done`` row (channel ``advisor``, outbound, the campaign's name and code,
    the note, the journey and step, and ``actor``), which is returned.

    The row is closed by one conditional UPDATE: of two advisors completing the same task at
    once, one wins and the other gets a TaskError. Raises TaskError (a ValueError) with the
    reason's ``code``: ``invalid`` outcome or note, ``unknown`` row, ``not_a_task``, or
    ``closed`` (done already).

    >>> complete_task(session, outbox_id=98, outcome="reached", note="calls back Monday",
    ...               actor="web:anne@example.fr", now=utcnow())
    """
    if outcome not in OUTCOMES:
        raise TaskError("invalid", f"outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
    text = (note or "").strip()
    if len(text) > NOTE_MAX:
        raise TaskError("invalid", f"note: {NOTE_MAX} characters at most")
    closed = cast(
        CursorResult[Any],
        session.execute(
            update(Outbox)
            .where(Outbox.id == outbox_id, _open())
            .values(
                state=DONE,
                sent_at=now,
                error=None,
                provider_id=f"task:{outcome}",
                updated_at=now,
            )
        ),
    )
    columns = (
        Outbox.channel, Outbox.state, Outbox.customer_id, Outbox.brand_id, Outbox.payload,
        Campaign.code, Campaign.name,
    )  # fmt: skip
    found = session.execute(
        select(*columns)
        .outerjoin(Campaign, Campaign.id == Outbox.campaign_id)
        .where(Outbox.id == outbox_id)
    ).first()
    if found is None:
        raise TaskError("unknown", f"there is no task {outbox_id}")
    channel, state, customer_id, brand_id, payload, code, name = found
    if channel != TASK_CHANNEL:
        raise TaskError("not_a_task", f"outbox row {outbox_id} is a {channel} message, not a task")
    if closed.rowcount != 1:
        raise TaskError("closed", f"task {outbox_id} is no longer open (it is {state})")
    data = payload or {}
    row = Interaction(
        customer_id=customer_id,
        occurred_at=now,
        channel=TIMELINE_CHANNEL,
        direction="outbound",
        type=TIMELINE_TYPE,
        subject=name[:300] if name else None,
        outcome=outcome,
        campaign_code=code,
        brand_id=brand_id,
        payload={
            "outbox_id": outbox_id,
            "note": text or None,
            "journey": data.get("journey"),
            "step": data.get("step"),
            "by": actor,
        },
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row
