"""The advisors' task list on SQLite and PostgreSQL: the service (the open ``advisor_task`` rows
of the outbox, oldest first, with each customer's name, campaign, queue and context read in
two statements whatever the page's size; the queue filter; cursor pagination; completing a
task closes its row and writes one timeline row; completing twice, or a row that is not a
task, fails) and the pages (the list with its counts, the queue filter and its htmx fragment,
the done form with its message, audit rows, CSRF, who may see it, French)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from tests.web_support import signed_in
from tournesol.auth.models import AuditLog
from tournesol.campaigns import service as campaigns
from tournesol.campaigns import task_views, tasks
from tournesol.campaigns.models import Outbox
from tournesol.consent.models import Preference
from tournesol.customers.models import Brand, Customer
from tournesol.db import unit_of_work
from tournesol.interactions.models import Interaction
from tournesol.scoring.models import CustomerFeature, CustomerRfm

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday 24 November 2026, 10:00 in Paris
HOUR = timedelta(hours=1)
HTMX = {"HX-Request": "true", "HX-Target": "tasks"}
NAMES = ("Zéphyrine", "Anastase", "Philomène", "Barnabé", "Eulalie")


@dataclass
class World:
    """Five customers (their names must never reach analysts or agencies) and their tasks.
    ``order``: the open tasks' ids, oldest first; ``by_name``: each customer's task id."""

    customers: dict[str, int]
    by_name: dict[str, int]
    order: list[int]
    email_id: int  # an e-mail of the outbox: not a task
    done_id: int  # a task worked already
    secrets: list[str]


def build(session: Session) -> World:
    """Tasks asked through the dispatch gate at different times, so that the ids' order is not
    the due times' order: premium tasks for Zéphyrine (10:00... +2 h), Anastase (+0) and
    Philomène (+1 h), a standard one for Barnabé (+0, after Anastase's), one without a queue
    for Eulalie (+3 h); Zéphyrine has an RFM segment, features and preferences."""
    session.add(Brand(code="SOLEIL", name="Soleil"))
    session.flush()
    campaign = campaigns.create(
        session, code="welcome_call", name="Appel de bienvenue", segment=None,
        channels=["email"], kind="triggered", brand="SOLEIL", control_share=0.0,
    )  # fmt: skip
    ids: dict[str, int] = {}
    for name in NAMES:
        row = Customer(
            first_name=name, last_name="Secretname", email=f"{name.lower()}@hidden.example",
            country="FR",
        )  # fmt: skip
        session.add(row)
        session.flush()
        ids[name] = row.id

    def ask(name: str, at: datetime, key: str, **properties: Any) -> int:
        payload = {"journey": "welcome", "step": "advisor", "visit": 1, "instance_id": 98}
        request = campaigns.AdmitRequest(
            campaign, ids[name], "advisor_task", key, {**payload, **properties}
        )
        [answer] = campaigns.admit_many(session, [request], now=at, policies=campaigns.Policies())
        assert answer.outcome == "sent" and answer.outbox_id is not None
        return answer.outbox_id

    tasks_of = {
        "Zéphyrine": ask("Zéphyrine", T0 + 2 * HOUR, "t-z", queue="premium", priority="high"),
        "Anastase": ask("Anastase", T0, "t-a", queue="premium", priority="high"),
        "Philomène": ask("Philomène", T0 + HOUR, "t-p", queue="premium"),
        "Barnabé": ask("Barnabé", T0, "t-b", queue="standard", priority="low"),
        "Eulalie": ask("Eulalie", T0 + 3 * HOUR, "t-e"),
    }
    done = ask("Anastase", T0 - HOUR, "t-old", queue="premium")
    session.execute(Outbox.__table__.update().where(Outbox.id == done).values(state="sent"))
    email = Outbox(
        key="mail-1", campaign_id=campaign.id, customer_id=ids["Zéphyrine"], channel="email",
        purpose="marketing", language="fr", state="planned", send_after=T0 - HOUR,
        planned_at=T0 - HOUR,
    )  # fmt: skip
    session.add(email)
    zephyrine = ids["Zéphyrine"]
    session.add_all(
        [
            CustomerRfm(
                customer_id=zephyrine, scope="all", recency_days=12, frequency=9,
                monetary=Decimal("840.00"), r_score=5, f_score=5, m_score=5, segment="champions",
            ),
            CustomerRfm(
                customer_id=zephyrine, scope="SOLEIL", recency_days=400, frequency=1,
                monetary=Decimal("20.00"), r_score=1, f_score=1, m_score=1, segment="lost",
            ),
            CustomerFeature(
                customer_id=zephyrine, purchase_count_365=7,
                last_purchase_at=datetime(2026, 11, 12, 15, 30, tzinfo=UTC),
            ),
            Preference(customer_id=zephyrine, channel="phone", preferred=True,
                       days="mon,tue", hours="09:00-12:00"),
            Preference(customer_id=zephyrine, channel="email", preferred=True),
            Preference(customer_id=zephyrine, channel="any", preferred=False, language="fr"),
            Preference(customer_id=ids["Anastase"], channel="any", hours="14:00-18:00"),
        ]
    )  # fmt: skip
    session.flush()
    order = [tasks_of[n] for n in ("Anastase", "Barnabé", "Philomène", "Zéphyrine", "Eulalie")]
    assert tasks_of["Anastase"] < tasks_of["Barnabé"]  # the tie at T0 goes by id
    secrets = [*NAMES, "Secretname", *(f"{n.lower()}@hidden.example" for n in NAMES)]
    return World(ids, tasks_of, order, email.id, done, secrets)


@pytest.fixture
def world(session: Session) -> World:
    return build(session)


@pytest.fixture
def web_world(factory: sessionmaker[Session]) -> World:
    with unit_of_work(factory) as session:
        return build(session)


@contextmanager
def statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements the session runs inside the block."""
    seen: list[str] = []
    connection = session.connection()

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(connection, "before_cursor_execute", record)


# --- the service --------------------------------------------------------------------------


def test_open_tasks_come_oldest_first_with_their_customer_context(
    session: Session, world: World
) -> None:
    found = tasks.open_tasks(session)
    assert [t.outbox_id for t in found] == world.order  # not the done task, not the e-mail
    first = found[0]
    assert (first.name, first.customer_id, first.due_at) == (
        "Anastase Secretname", world.customers["Anastase"], T0
    )  # fmt: skip
    assert (first.campaign_code, first.campaign_name, first.queue, first.priority) == (
        "welcome_call", "Appel de bienvenue", "premium", "high"
    )  # fmt: skip
    assert (first.journey, first.step, first.customer_status) == ("welcome", "advisor", "active")
    # no RFM or features computed for her yet; her hours come from her "any" preference
    assert (first.rfm_segment, first.last_purchase_at, first.purchase_count_365) == (
        None, None, None
    )  # fmt: skip
    assert (first.contact_days, first.contact_hours, first.preferred_channels) == (
        None, "14:00-18:00", ()
    )  # fmt: skip
    zephyrine = found[3]
    assert zephyrine.name == "Zéphyrine Secretname"
    assert zephyrine.rfm_segment == "champions"  # the scope over all brands, not SOLEIL's
    assert zephyrine.last_purchase_at == datetime(2026, 11, 12, 15, 30, tzinfo=UTC)
    assert zephyrine.purchase_count_365 == 7
    assert zephyrine.preferred_channels == ("email", "phone")
    assert (zephyrine.contact_days, zephyrine.contact_hours, zephyrine.language) == (
        "mon,tue", "09:00-12:00", "fr"
    )  # fmt: skip
    eulalie = found[4]
    assert (eulalie.queue, eulalie.priority) == (None, None)


def test_the_context_of_a_page_takes_two_statements_whatever_its_size(
    session: Session, world: World
) -> None:
    with statements(session) as few:
        assert len(tasks.open_tasks(session, limit=1)) == 1
    with statements(session) as many:
        assert len(tasks.open_tasks(session, limit=50)) == 5
    assert len(few) == len(many) == 2
    with statements(session) as none:
        assert tasks.open_tasks(session, queue="nobody") == []
    assert len(none) == 1  # no customer: no preference to read


def test_the_queue_filter_and_the_counts_per_queue(session: Session, world: World) -> None:
    by = world.by_name
    premium = tasks.open_tasks(session, queue="premium")
    assert [t.outbox_id for t in premium] == [by["Anastase"], by["Philomène"], by["Zéphyrine"]]
    assert [t.outbox_id for t in tasks.open_tasks(session, queue="standard")] == [by["Barnabé"]]
    assert [t.outbox_id for t in tasks.open_tasks(session, queue="")] == [by["Eulalie"]]
    assert tasks.open_tasks(session, queue="nobody") == []
    assert tasks.queues(session) == [("premium", 3), ("standard", 1), ("", 1)]
    brand = session.scalar(select(Brand.id).where(Brand.code == "SOLEIL"))
    assert len(tasks.open_tasks(session, brand_id=brand)) == 5
    assert tasks.open_tasks(session, brand_id=(brand or 0) + 1) == []


def test_pages_follow_each_other_by_cursor(session: Session, world: World) -> None:
    first = tasks.open_tasks(session, limit=2)
    assert [t.outbox_id for t in first] == world.order[:2]
    second = tasks.open_tasks(session, limit=2, after_id=first[-1].outbox_id)
    assert [t.outbox_id for t in second] == world.order[2:4]
    # a task of the first page done meanwhile does not move the cursor
    tasks.complete_task(
        session, outbox_id=first[0].outbox_id, outcome="reached", note=None, actor="test",
        now=T0 + 4 * HOUR,
    )  # fmt: skip
    again = tasks.open_tasks(session, limit=2, after_id=first[-1].outbox_id)
    assert [t.outbox_id for t in again] == world.order[2:4]
    last = tasks.open_tasks(session, limit=2, after_id=again[-1].outbox_id)
    assert [t.outbox_id for t in last] == world.order[4:]
    assert tasks.open_tasks(session, limit=2, after_id=last[-1].outbox_id) == []
    premium = tasks.open_tasks(session, queue="premium", limit=1, after_id=world.order[2])
    assert [t.outbox_id for t in premium] == [world.by_name["Zéphyrine"]]


def test_completing_a_task_closes_it_and_writes_the_timeline(
    session: Session, world: World
) -> None:
    task_id = world.by_name["Zéphyrine"]
    at = T0 + 5 * HOUR
    row = tasks.complete_task(
        session, outbox_id=task_id, outcome="reached", note="  Rappelle lundi.  ",
        actor="web:anne@staff.example", now=at,
    )  # fmt: skip
    outbox = session.get(Outbox, task_id)
    assert outbox is not None
    session.refresh(outbox)
    assert (outbox.state, outbox.sent_at, outbox.error, outbox.provider_id) == (
        "sent", at, None, "task:reached"
    )  # fmt: skip
    [stored] = session.scalars(
        select(Interaction).where(Interaction.type == "advisor_task_done")
    ).all()
    assert stored.id == row.id
    assert (stored.customer_id, stored.occurred_at, stored.channel, stored.direction) == (
        world.customers["Zéphyrine"], at, "advisor", "outbound"
    )  # fmt: skip
    assert (stored.outcome, stored.subject, stored.campaign_code) == (
        "reached", "Appel de bienvenue", "welcome_call"
    )  # fmt: skip
    assert stored.brand_id == session.scalar(select(Brand.id).where(Brand.code == "SOLEIL"))
    assert stored.payload == {
        "outbox_id": task_id, "note": "Rappelle lundi.", "journey": "welcome",
        "step": "advisor", "by": "web:anne@staff.example",
    }  # fmt: skip
    assert task_id not in [t.outbox_id for t in tasks.open_tasks(session)]
    assert tasks.queues(session) == [("premium", 2), ("standard", 1), ("", 1)]
    # an empty note is no note
    other = tasks.complete_task(
        session, outbox_id=world.by_name["Eulalie"], outcome="not_needed", note="   ",
        actor="test", now=at,
    )  # fmt: skip
    assert other.payload["note"] is None and other.outcome == "not_needed"


def test_a_task_completes_once_and_only_a_task_completes(session: Session, world: World) -> None:
    task_id = world.by_name["Anastase"]

    def complete(outbox_id: int, outcome: str = "no_answer", note: str | None = None) -> None:
        tasks.complete_task(
            session, outbox_id=outbox_id, outcome=outcome, note=note, actor="test", now=T0
        )

    complete(task_id)
    with pytest.raises(ValueError, match="no longer open") as closed:
        complete(task_id, "reached")
    assert isinstance(closed.value, tasks.TaskError) and closed.value.code == "closed"
    with pytest.raises(tasks.TaskError, match="no longer open"):
        complete(world.done_id)
    with pytest.raises(tasks.TaskError, match="not a task") as other:
        complete(world.email_id)
    assert other.value.code == "not_a_task"
    assert session.get(Outbox, world.email_id).state == "planned"  # type: ignore[union-attr]
    with pytest.raises(tasks.TaskError, match="no task") as unknown:
        complete(world.email_id + 1000)
    assert unknown.value.code == "unknown"
    open_id = world.by_name["Barnabé"]
    with pytest.raises(tasks.TaskError, match="outcome") as bad:
        complete(open_id, "maybe")
    assert bad.value.code == "invalid"
    with pytest.raises(tasks.TaskError, match="500 characters"):
        complete(open_id, "reached", "x" * 501)
    complete(open_id, "refused", "x" * 500)  # the longest note
    rows = session.scalars(select(Interaction).where(Interaction.type == "advisor_task_done"))
    assert sorted(r.outcome or "" for r in rows) == ["no_answer", "refused"]


# --- the pages ----------------------------------------------------------------------------


def text_of(markup: str) -> str:
    """The visible text of some HTML, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def rows_of(page: str) -> list[str]:
    """The text of each row of the task table's body."""
    body = page.split('<table class="tasks">')[1].split("<tbody>")[1].split("</tbody>")[0]
    return [text_of("<tr " + chunk.split("</tr>")[0]) for chunk in body.split("<tr ")[1:]]


def audit(factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with unit_of_work(factory) as session:
        rows = list(session.scalars(select(AuditLog).where(AuditLog.action == action)))
        session.expunge_all()
        return rows


def state_of(factory: sessionmaker[Session], outbox_id: int) -> str:
    with unit_of_work(factory) as session:
        return str(session.scalar(select(Outbox.state).where(Outbox.id == outbox_id)))


def test_the_list_shows_the_open_tasks_with_their_context(
    app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    client = signed_in(app, factory, "advisor")
    home = client.get("/")
    assert 'href="/tasks"' in home.text  # in the menu
    page = client.get("/tasks")
    assert page.status_code == 200
    assert '<a href="/tasks" aria-current="page">' in page.text
    rows = rows_of(page.text)
    assert [r.split(" Customer ")[0] for r in rows] == [
        "Anastase Secretname", "Barnabé Secretname", "Philomène Secretname",
        "Zéphyrine Secretname", "Eulalie Secretname",
    ]  # fmt: skip
    zephyrine = rows[3]
    for part in (
        "2026-11-24 12:00",  # due at 11:00 UTC: noon in Paris
        "Appel de bienvenue", "premium", "priority high", "journey welcome, step advisor",
        "RFM segment Champions", "Last purchase 2026-11-12", "Purchases, 12 months 7",
        "Prefers e-mail, phone", "Call Mon, Tue 09:00-12:00", "Language fr",
    ):  # fmt: skip
        assert part in zephyrine, (part, zephyrine)
    assert "No queue" in rows[4]
    assert f'href="/customers/{web_world.customers["Zéphyrine"]}"' in page.text
    text = text_of(page.text)
    assert "5 open tasks premium: 3 standard: 1 No queue: 1" in text
    assert "<caption>" in page.text and 'scope="col"' in page.text
    for task_id in web_world.order:  # every field has its label
        assert f'<label for="outcome-{task_id}">' in page.text
        assert f'<label for="note-{task_id}">' in page.text
    assert "hidden.example" not in page.text  # the list needs no e-mail address
    [row] = audit(factory, "task.list")
    assert row.details == {"queue": None, "count": 5} and row.customer_id is None


def test_the_queue_filter_and_its_htmx_fragment(
    app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    page = client.get("/tasks", params={"queue": "premium"})
    assert [r.split(" ")[0] for r in rows_of(page.text)] == ["Anastase", "Philomène", "Zéphyrine"]
    assert '<option value="premium" selected>' in page.text
    assert "Open tasks of the queue premium, oldest first" in text_of(page.text)
    fragment = client.get("/tasks", params={"queue": "-"}, headers=HTMX)
    assert fragment.text.lstrip().startswith('<div id="tasks">') and "<html" not in fragment.text
    assert [r.split(" ")[0] for r in rows_of(fragment.text)] == ["Eulalie"]
    assert "Open tasks of the queue No queue" in text_of(fragment.text)
    empty = client.get("/tasks", params={"queue": "nobody"})
    assert "No open task in this queue." in empty.text and "<table" not in empty.text
    assert '<option value="nobody" selected>' in empty.text
    assert [r.details for r in audit(factory, "task.list")] == [
        {"queue": "premium", "count": 3}, {"queue": "", "count": 1},
        {"queue": "nobody", "count": 0},
    ]  # fmt: skip


def test_the_next_page(
    app: FastAPI,
    factory: sessionmaker[Session],
    web_world: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(task_views, "PAGE", 2)
    client = signed_in(app, factory, "advisor")
    page = client.get("/tasks")
    assert len(rows_of(page.text)) == 2
    link = re.search(r'href="(/tasks\?after=\d+)">Next tasks', page.text)
    assert link is not None
    second = client.get(html.unescape(link.group(1)))
    assert [r.split(" ")[0] for r in rows_of(second.text)] == ["Philomène", "Zéphyrine"]
    assert "Back to the first tasks" in second.text
    last = client.get(f"/tasks?after={web_world.order[-1]}")
    assert "No more tasks." in last.text


def test_the_done_form_closes_the_task_with_a_message(
    app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    client = signed_in(app, factory, "advisor")
    task_id = web_world.by_name["Philomène"]
    form = {"outcome": "reached", "note": "Ravie, passe en boutique samedi.", "queue": "premium"}
    sent = client.post(f"/tasks/{task_id}/done", data=form, follow_redirects=False)
    assert sent.status_code == 303
    assert sent.headers["location"] == "/tasks?queue=premium&notice=done"
    page = client.get(sent.headers["location"])
    assert "Task done: its outcome is on the customer's timeline." in text_of(page.text)
    assert [r.split(" ")[0] for r in rows_of(page.text)] == ["Anastase", "Zéphyrine"]
    assert state_of(factory, task_id) == "sent"
    with unit_of_work(factory) as session:
        [row] = session.scalars(
            select(Interaction).where(Interaction.type == "advisor_task_done")
        ).all()
        assert (row.customer_id, row.outcome, row.payload["note"]) == (
            web_world.customers["Philomène"], "reached", "Ravie, passe en boutique samedi."
        )  # fmt: skip
        assert row.payload["by"].startswith("web:advisor-")
    [done] = audit(factory, "task.done")
    assert done.customer_id == web_world.customers["Philomène"]
    assert done.details == {"outbox_id": task_id, "outcome": "reached", "interaction_id": row.id}
    assert "Ravie" not in str(done.details)  # the note stays on the timeline
    # the timeline shows it on the customer's page
    customer = client.get(f"/customers/{web_world.customers['Philomène']}")
    assert "Appel de bienvenue" in customer.text and "reached" in customer.text

    # through htmx: the redirect is followed and the list's fragment comes back
    other = web_world.by_name["Anastase"]
    swapped = client.post(
        f"/tasks/{other}/done", data={"outcome": "no_answer", "queue": "premium"}, headers=HTMX
    )
    assert swapped.status_code == 200 and "<html" not in swapped.text
    assert "Task done" in swapped.text
    assert [r.split(" ")[0] for r in rows_of(swapped.text)] == ["Zéphyrine"]

    # twice: a colleague was quicker; nothing changes
    again = client.post(f"/tasks/{task_id}/done", data={"outcome": "refused"})
    assert again.status_code == 200 and str(again.url).endswith("/tasks?notice=closed")
    assert "This task was already done" in text_of(again.text)
    assert len(audit(factory, "task.done")) == 2
    # not a task, no such row, a bad outcome
    email = client.post(f"/tasks/{web_world.email_id}/done", data={"outcome": "reached"})
    assert email.status_code == 404
    assert client.post("/tasks/999999/done", data={"outcome": "reached"}).status_code == 404
    bad = client.post(f"/tasks/{web_world.by_name['Barnabé']}/done", data={"outcome": "maybe"})
    assert bad.status_code == 400 and "outcome" in bad.text
    assert state_of(factory, web_world.email_id) == "planned"
    assert state_of(factory, web_world.by_name["Barnabé"]) == "planned"


def test_the_done_form_needs_its_csrf_token(
    app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    client = signed_in(app, factory, "advisor")
    token = client.headers.pop("X-CSRF-Token")
    task_id = web_world.by_name["Barnabé"]
    refused = client.post(f"/tasks/{task_id}/done", data={"outcome": "reached"})
    assert refused.status_code == 403
    forged = client.post(f"/tasks/{task_id}/done", data={"outcome": "reached", "csrf_token": "x"})
    assert forged.status_code == 403
    assert state_of(factory, task_id) == "planned"
    page = client.get("/tasks")
    assert f'name="csrf_token" value="{token}"' in page.text  # each form carries it
    form = client.post(f"/tasks/{task_id}/done", data={"outcome": "reached", "csrf_token": token})
    assert form.status_code == 200 and "Task done" in form.text
    assert state_of(factory, task_id) == "sent"


@pytest.mark.parametrize("role", ["analyst", "agency"])
def test_roles_without_personal_data_are_refused(
    role: str, app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    client = signed_in(app, factory, role)
    assert 'href="/tasks"' not in client.get("/").text
    for response in (
        client.get("/tasks"),
        client.get("/tasks", params={"queue": "premium"}, headers=HTMX),
        client.post(f"/tasks/{web_world.order[0]}/done", data={"outcome": "reached"}),
    ):
        assert response.status_code == 403
        leaked = [s for s in web_world.secrets if s in response.text]
        assert not leaked, leaked
    assert state_of(factory, web_world.order[0]) == "planned"
    assert audit(factory, "task.list") == []


def test_admins_see_the_list_and_strangers_sign_in_first(
    app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    admin = signed_in(app, factory, "admin")
    assert len(rows_of(admin.get("/tasks").text)) == 5
    stranger = TestClient(app)
    assert stranger.get("/tasks", follow_redirects=False).status_code == 303
    posted = stranger.post(f"/tasks/{web_world.order[0]}/done", data={"outcome": "reached"})
    assert posted.url.path == "/login"
    assert state_of(factory, web_world.order[0]) == "planned"


def test_the_page_speaks_french(
    app: FastAPI, factory: sessionmaker[Session], web_world: World
) -> None:
    client = signed_in(app, factory, "advisor", language="fr")
    page = client.get("/tasks")
    text = text_of(page.text)
    for part in (
        "Tâches des conseillers", "5 tâches ouvertes", "premium : 3", "Sans file : 1",
        "priorité haute", "Segment RFM Champions", "Dernier achat 12/11/2026",
        "Préfère e-mail, téléphone", "Appeler Lun, Mar 09:00-12:00", "24/11/2026 12:00",
    ):  # fmt: skip
        assert part in text, part
    assert ">Tâches</a>" in page.text
    assert '<option value="reached">Joint</option>' in page.text
    done = client.post(f"/tasks/{web_world.order[0]}/done", data={"outcome": "reached"})
    assert "Tâche faite : son résultat figure dans l'historique du client." in text_of(done.text)


def test_no_task_says_so(app: FastAPI, factory: sessionmaker[Session]) -> None:
    page = signed_in(app, factory, "advisor").get("/tasks")
    assert page.status_code == 200
    assert "No open task: nothing to call today." in page.text and "<table" not in page.text
    assert '<option value="" selected>All queues</option>' in page.text
