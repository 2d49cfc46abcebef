"""The advisors' task list: the open ``advisor_task`` rows of the outbox (the journeys' calls
to make), oldest first, filtered by queue, with each customer's context, and the form that
closes a task with its outcome.

The page names customers: it needs ``customers:read`` (admin, marketer, advisor; never the
analyst or agency roles), and closing a task ``customers:write`` as well. Each view of the
list writes one ``task.list`` audit row (the queue and how many tasks it showed, as a search
does), each task closed a ``task.done`` row with its customer, in the same transaction as the
task's timeline row. The customer's page, linked from each row, audits its own reads. Times
are shown in Paris time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.campaigns import tasks as service
from tournesol.db import utcnow
from tournesol.scoring.rules import RFM_SEGMENTS
from tournesol.web.deps import SessionDep, render, require

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require(rules.CUSTOMERS_READ))]
Worker = Annotated[Principal, Depends(require(rules.CUSTOMERS_READ, rules.CUSTOMERS_WRITE))]
PARIS: Final = ZoneInfo("Europe/Paris")
PAGE: Final = 50
# The queue filter's value for the tasks without a queue (a queue's name never starts with -).
NO_QUEUE: Final = "-"
NOTICES: Final = ("done", "closed")
RFM_NAMES: Final = {s.code: s.name for s in RFM_SEGMENTS}


def _(text: str) -> str:
    """Marks an English message for translation; the page translates it when it renders."""
    return text


OUTCOME_LABELS: Final = {
    "reached": _("Reached"),
    "no_answer": _("No answer"),
    "refused": _("Refused"),
    "wrong_number": _("Wrong number"),
    "not_needed": _("Not needed"),
}
PRIORITY_LABELS: Final = {"high": _("high"), "normal": _("normal"), "low": _("low")}


def _local(value: datetime | None) -> datetime | None:
    """A UTC time in Paris time, for display."""
    return value.astimezone(PARIS) if value is not None else None


def _queue_filter(queue: str) -> str | None:
    """The service's queue filter for the form's value: None for every queue, ``""`` for
    the tasks without one."""
    chosen = queue.strip()[:100]
    if not chosen:
        return None
    return "" if chosen == NO_QUEUE else chosen


def _back(queue: str, notice: str) -> str:
    query = {"queue": queue.strip()[:100]} if queue.strip() else {}
    return "/tasks?" + urlencode({**query, "notice": notice})


@router.get("/tasks")
def list_page(
    request: Request,
    session: SessionDep,
    who: Reader,
    queue: str = "",
    after: int | None = None,
    notice: str = "",
) -> Response:
    """The open tasks, a page of :data:`PAGE` at a time; an htmx request aimed at the list
    (``HX-Target: tasks``: the queue filter, the refresh button, a task done) gets the list's
    fragment only."""
    chosen = _queue_filter(queue)
    found = service.open_tasks(session, queue=chosen, limit=PAGE + 1, after_id=after)
    page, more = found[:PAGE], len(found) > PAGE
    counts = service.queues(session)
    shown = queue.strip()[:100]
    options = [(name or NO_QUEUE, name) for name, _count in counts]
    if shown and shown not in [value for value, _name in options]:  # emptied meanwhile
        options.append((shown, "" if shown == NO_QUEUE else shown))
    auth_service.audit(
        session,
        principal=who,
        action="task.list",
        details={"queue": chosen, "count": len(page), **({"after": after} if after else {})},
    )
    session.commit()
    context = {
        "nav": "tasks",
        "tasks": page,
        "queue": shown,
        "queues": counts,
        "options": options,
        "total": sum(n for _name, n in counts),
        "no_queue": NO_QUEUE,
        "after": after,
        "next_after": page[-1].outbox_id if more and page else None,
        "notice": notice if notice in NOTICES else None,
        "outcomes": service.OUTCOMES,
        "outcome_labels": OUTCOME_LABELS,
        "priority_labels": PRIORITY_LABELS,
        "note_max": service.NOTE_MAX,
        "rfm_names": RFM_NAMES,
        "local": _local,
    }
    fragment = (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == "tasks"
        and not request.headers.get("hx-history-restore-request")
    )
    return render(request, "tasks/_list.html" if fragment else "tasks/list.html", context)


@router.post("/tasks/{outbox_id}/done")
def done(
    request: Request,
    session: SessionDep,
    who: Worker,
    outbox_id: int,
    outcome: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    queue: Annotated[str, Form()] = "",
) -> Response:
    """Close a task with its outcome and note, then back to the list (with the same queue
    filter) and a message. Through htmx, the redirect is followed and the list's fragment
    swapped in. A task closed meanwhile (a colleague's click) says so instead."""
    try:
        row = service.complete_task(
            session,
            outbox_id=outbox_id,
            outcome=outcome.strip(),
            note=note,
            actor=f"web:{who.name}"[:100],
            now=utcnow(),
        )
    except service.TaskError as exc:
        session.rollback()
        if exc.code in ("unknown", "not_a_task"):
            raise HTTPException(404, f"there is no advisor task {outbox_id}") from None
        if exc.code == "closed":
            return RedirectResponse(_back(queue, "closed"), status_code=303)
        raise HTTPException(400, str(exc)) from None
    auth_service.audit(
        session,
        principal=who,
        action="task.done",
        customer_id=row.customer_id,
        details={"outbox_id": outbox_id, "outcome": row.outcome, "interaction_id": row.id},
    )
    session.commit()
    return RedirectResponse(_back(queue, "done"), status_code=303)
