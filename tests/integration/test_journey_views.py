"""The journey pages on SQLite and PostgreSQL: the list (status, version, running instances,
sends of the week), a journey's page (the graph laid out top-down with its steps in words and
their live counts, versions, YAML source), the counts fragment htmx polls, pausing and
resuming (with CSRF, audited), the simulation (counts only, nothing written), who may see and
do what, no customer's data on any of these pages, and French. The graph's layout is also
checked alone (no database)."""

from __future__ import annotations

import gettext
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.web_support import signed_in
from tournesol.auth.models import AuditLog
from tournesol.customers.models import Brand, Customer
from tournesol.db import unit_of_work
from tournesol.interactions.models import Interaction
from tournesol.segments.models import Segment
from tournesol.triggers import service as journeys
from tournesol.triggers import views
from tournesol.triggers.definition import load_journey
from tournesol.triggers.gate import RecordingGate
from tournesol.triggers.models import Journey, JourneyInbox, JourneyInstance, JourneyStepLog
from tournesol.triggers.rules import GateResult

EXAMPLES = Path(__file__).resolve().parents[2] / "src/tournesol/triggers/examples"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
HTMX = {"HX-Request": "true"}
NAMES = ("Zéphyrine", "Anastase", "Philomène", "Barnabé", "Eulalie", "Gontran")
LOOP = """
code: nudges
name: Nudges
trigger: {event: {type: signed_up}}
max_duration: 30d
steps:
  - {id: nudge, action: {channel: email, message: nudge}, next: pause}
  - {id: pause, wait: {duration: 7d}, next: check}
  - id: check
    branch:
      - when: {segment: sleepers}
        next: nudge
    else: done
  - {id: done, exit: {reason: finished}}
"""


def example(name: str) -> str:
    return (EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8")


@dataclass
class World:
    ids: list[int]
    secrets: list[str]
    t0: datetime


@pytest.fixture
def world(factory: sessionmaker[Session]) -> World:
    """Six customers with names and e-mails that must never show; the abandoned-cart and
    welcome journeys published; six carts abandoned two days ago (one too small to enter),
    one bought, reminders sent to three and suppressed for one, an unsubscription."""
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 2 * DAY
    with unit_of_work(factory) as session:
        session.add(Brand(code="SOLEIL", name="Soleil"))
        ids = []
        for name in NAMES:
            row = Customer(
                first_name=name, last_name="Secretname", email=f"{name.lower()}@hidden.example",
                country="FR", created_at=t0 - 300 * DAY,
            )  # fmt: skip
            session.add(row)
            session.flush()
            ids.append(row.id)
        for name in ("abandoned_cart", "welcome"):
            journeys.publish(session, text=example(name), now=t0 - DAY, actor="lead@staff.example")
        journeys.collect_events(session, now=t0)  # the cursors, before the history below
        for n, customer in enumerate(ids):
            total = 5 if n == 5 else 50
            interaction(
                session, customer, "cart_abandoned", t0 + n * 0.1 * HOUR, cart=n, total=total
            )
        interaction(session, ids[0], "order_completed", t0 + 2 * HOUR, cart=0)
        journeys.collect_events(session, now=t0 + 3 * HOUR)
        journeys.process_inbox(session, now=t0 + 3 * HOUR)
        gate = RecordingGate(
            lambda send, inst, now: (
                GateResult("suppressed", "no_consent")
                if inst.customer_id == ids[1]
                else GateResult("sent")
            )
        )
        journeys.run_due(session, now=t0 + 28 * HOUR, gate=gate)  # the 24 h wait ran out
        interaction(session, ids[2], "email_unsubscribed", t0 + 29 * HOUR)
        journeys.collect_events(session, now=t0 + 29 * HOUR)
        journeys.process_inbox(session, now=t0 + 29 * HOUR)
    secrets = [*NAMES, "Secretname", *(f"{n.lower()}@hidden.example" for n in NAMES)]
    return World(ids, secrets, t0)


def interaction(
    session: Session, customer: int, kind: str, at: datetime, cart: int | None = None, **extra: Any
) -> None:
    payload = dict(extra)
    if cart is not None:
        payload["cart_id"] = f"cart-{cart}"
    row = Interaction(
        customer_id=customer, occurred_at=at, channel="web", direction="inbound", type=kind,
        payload=payload, created_at=at,
    )  # fmt: skip
    session.add(row)
    session.flush()


def text_of(markup: str) -> str:
    """The visible text of some HTML, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup))).strip()


def box(page: str, step_id: str) -> str:
    """The text of the graph's box of one step."""
    for chunk in page.split('<li class="jbox')[1:]:
        if f'<span class="jid">{step_id}</span>' in chunk:
            return text_of("<li " + chunk.split("</ol>")[0])
    raise AssertionError(f"no box for step {step_id}")


def audit(factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with unit_of_work(factory) as session:
        rows = list(session.scalars(select(AuditLog).where(AuditLog.action == action)))
        session.expunge_all()
        return rows


def status_of(factory: sessionmaker[Session], code: str) -> str:
    with unit_of_work(factory) as session:
        found = journeys.get_by_code(session, code=code)
        assert found is not None
        return found.status


def no_secret(world: World, text: str) -> None:
    leaked = [s for s in world.secrets if s in text]
    assert not leaked, f"personal data on the page: {leaked}"


def test_the_list_shows_each_journey_with_its_figures(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    home = client.get("/").text
    assert 'href="/journeys"' in home
    page = client.get("/journeys")
    assert page.status_code == 200
    assert 'aria-current="page">Journeys' in page.text
    [cart] = [text_of(r) for r in page.text.split("<tr>")[2:] if "abandoned_cart" in r]
    # name, code, status, version, running (3 waiting), sent this week (3 reminders)
    assert cart.startswith("Panier abandonné abandoned_cart active v1 3 3 ")
    [welcome] = [text_of(r) for r in page.text.split("<tr>")[2:] if "/journeys/welcome" in r]
    assert welcome.startswith("Bienvenue welcome active v1 0 0 ")
    assert "No journey yet" not in page.text
    no_secret(world, page.text)


def test_the_journey_page_draws_the_graph_with_its_live_counts(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    page = client.get("/journeys/abandoned_cart")
    assert page.status_code == 200
    body = page.text
    definition = load_journey(example("abandoned_cart"))
    # one box per step plus the entry, one arrow per link plus the entry's
    assert body.count('<li class="jbox') == len(definition.steps) + 1
    assert body.count('marker-end="url(#jarrow)"') == len(definition.edges()) + 1
    assert '<svg class="jarrows" aria-hidden="true"' in body
    assert '<ol class="jsteps" aria-label="Steps of the journey' in body

    assert "event cart_abandoned where event.properties.total ≥ 20" in box_entry(body)
    assert "5 entered 3 running now" in box_entry(body)
    assert box(body, "wait_cart").startswith("Wait for an event wait_cart for order_completed")
    assert "with the same cart_id at most 1 day" in box(body, "wait_cart")
    assert "1 event came 4 timed out" in box(body, "wait_cart")
    remind = box(body, "remind")
    assert "E-mail remind message cart_reminder if suppressed: go on" in remind
    assert "3 sent 1 suppressed 1 no consent" in remind
    assert "Leads to: wait_cart_2." in remind
    waiting = box(body, "wait_cart_2")
    assert "3 waiting here now" in waiting and "1 interrupted 1 unsubscribed" in waiting
    assert "1. if consent to SMS (marketing) → sms_window" in box(body, "sms_allowed")
    assert "until the next moment in Mon–Sat 10:00–19:00" in box(body, "sms_window")
    assert "1 goal reached" in box(body, "converted")
    assert "Ends the journey." in box(body, "done")

    kpis = text_of(body.split('<div class="kpis">')[1].split("</div>\n  </div>")[0])
    assert kpis == "Entered 5 Running now 3 Reached a goal 1 Exited 1"
    assert "Running: waiting 3. Exits by reason: unsubscribed 1." in text_of(body)
    # settings, versions, source
    text = text_of(body)
    assert "Instances one per cart_id" in text and "Maximum duration 7 days" in text
    assert "Exits when order_completed: purchased unsubscribed: unsubscribed" in text
    assert "v1 current" in text and "lead@staff.example" in text
    assert re.search(r'<abbr title="SHA-256 [0-9a-f]{64}">[0-9a-f]{12}</abbr>', body)
    assert '<pre class="yaml"' in body and "code: abandoned_cart" in body
    # live: the fragment is polled every 10 s; actions for a marketer
    assert 'hx-get="/journeys/abandoned_cart/counts" hx-trigger="every 10s"' in body
    assert 'action="/journeys/abandoned_cart/pause"' in body
    assert 'action="/journeys/abandoned_cart/simulate"' in body
    no_secret(world, body)


def box_entry(page: str) -> str:
    chunk = page.split('<li class="jbox k-entry')[1]
    return text_of("<li " + chunk.split('<li class="jbox')[0])


def test_the_counts_fragment_follows_what_happens(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "analyst")
    fragment = client.get("/journeys/abandoned_cart/counts", headers=HTMX)
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="journey-graph" hx-get=')
    assert "<html" not in fragment.text and "3 waiting here now" in box(
        fragment.text, "wait_cart_2"
    )
    # the last waiting customers buy: the counts move
    with unit_of_work(factory) as session:
        for n in (3, 4):
            interaction(session, world.ids[n], "order_completed", world.t0 + 30 * HOUR, cart=n)
        journeys.collect_events(session, now=world.t0 + 30 * HOUR)
        journeys.process_inbox(session, now=world.t0 + 30 * HOUR)
    again = client.get("/journeys/abandoned_cart/counts", headers=HTMX).text
    assert "1 waiting here now" in box(again, "wait_cart_2")
    assert "2 events came" in box(again, "wait_cart_2")
    assert "3 goals reached" in box(again, "converted")
    assert client.get("/journeys/nothing/counts").status_code == 404


def test_pausing_and_resuming_need_the_form_token_and_are_audited(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    paused = client.post("/journeys/abandoned_cart/pause", follow_redirects=False)
    assert paused.status_code == 303
    assert paused.headers["location"] == "/journeys/abandoned_cart?notice=paused"
    assert status_of(factory, "abandoned_cart") == "paused"
    page = client.get("/journeys/abandoned_cart?notice=paused").text
    assert "Journey paused" in page
    assert "This journey is paused." in client.get("/journeys/abandoned_cart").text
    assert 'action="/journeys/abandoned_cart/resume"' in page and "/pause" not in page
    assert client.post("/journeys/abandoned_cart/pause").status_code == 409
    [row] = audit(factory, "journey.pause")
    assert row.details == {"journey": "abandoned_cart"} and row.customer_id is None

    token = client.headers.pop("X-CSRF-Token")
    assert client.post("/journeys/abandoned_cart/resume").status_code == 403
    assert status_of(factory, "abandoned_cart") == "paused"
    form = client.post("/journeys/abandoned_cart/resume", data={"csrf_token": token})
    assert form.status_code == 200 and "Journey resumed" in form.text
    assert status_of(factory, "abandoned_cart") == "active"
    assert len(audit(factory, "journey.resume")) == 1
    assert client.post("/journeys/nothing/pause", data={"csrf_token": token}).status_code == 404


def count(factory: sessionmaker[Session], model: Any) -> int:
    with unit_of_work(factory) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def simulation_form(world: World, **overrides: str) -> dict[str, str]:
    paris = views.PARIS
    data = {
        "start": (world.t0 - HOUR).astimezone(paris).strftime("%Y-%m-%dT%H:%M"),
        "end": (world.t0 + 2 * DAY).astimezone(paris).strftime("%Y-%m-%dT%H:%M"),
        "population": "ids",
        "segment": "",
        "ids": ", ".join(str(i) for i in world.ids),
        "limit": "100",
    }
    data.update(overrides)
    return data


def test_a_simulation_shows_counts_only_and_writes_nothing(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    tables = (Journey, JourneyInstance, JourneyStepLog, JourneyInbox, Interaction)
    before = {m.__tablename__: count(factory, m) for m in tables}
    client = signed_in(app, factory, "marketer")
    page = client.post("/journeys/abandoned_cart/simulate", data=simulation_form(world))
    assert page.status_code == 200, text_of(page.text)[:2000]
    assert {m.__tablename__: count(factory, m) for m in tables} == before
    body = page.text
    text = text_of(body)
    assert "Nothing was written" in text
    # six customers, their carts, orders and unsubscription; five carts are big enough, but
    # three of them still have a real instance running (re-entry once it has ended): two enter
    kpis = text_of(body.split('<div class="kpis">')[1].split("</div>\n  </div>")[0])
    assert kpis == (
        "Customers 6 Events 8 Entered 2 Messages and tasks 1 Goals reached 1 Exited 1 "
        "Still running at the end 0"
    )
    assert "e-mail 1" in text and "goal purchased 1" in text
    assert "exited: unsubscribed 1" in text
    assert "2 entered" in box_entry(body)
    assert "1 sent" in box(body, "remind") and "1 goal reached" in box(body, "converted")
    assert "hx-get" not in body  # a report, not live counts
    no_secret(world, body)
    assert "/customers/" not in body  # nobody pointed at
    [row] = audit(factory, "journey.simulate")
    assert row.details["customers"] == 6 and row.details["entered"] == 2
    assert "ids" not in row.details or row.details.get("ids") is None

    everyone = client.post(
        "/journeys/abandoned_cart/simulate", data=simulation_form(world, population="all")
    )
    assert everyone.status_code == 200 and "Customers 6 Events 8 Entered 2" in text_of(
        everyone.text
    )
    with unit_of_work(factory) as session:
        session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    by_segment = client.post(
        "/journeys/abandoned_cart/simulate",
        data=simulation_form(world, population="segment", segment="everyone", limit="2"),
    )
    assert by_segment.status_code == 200
    assert text_of(by_segment.text).count("Customers 2 ") == 1


def test_a_simulation_form_with_mistakes_says_where(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    client = signed_in(app, factory, "marketer")
    cases = {
        "The end must come after the start.": {"end": "2020-01-01T00:00"},
        "A period of 31 days at most.": {"start": "2020-01-01T00:00", "end": "2020-03-01T00:00"},
        "Not a date and time.": {"start": "tomorrow"},
        "Customer ids are whole numbers": {"ids": "12, abc"},
        "Choose a saved segment.": {"population": "segment"},
        "No saved segment has this code.": {"population": "segment", "segment": "ghost"},
        "A whole number from 1 to 5000.": {"limit": "9999"},
    }
    for message, change in cases.items():
        page = client.post(
            "/journeys/abandoned_cart/simulate", data=simulation_form(world, **change)
        )
        assert page.status_code == 400, message
        assert message in html.unescape(page.text) and 'aria-invalid="true"' in page.text
        assert "Check the fields marked below." in page.text
    assert audit(factory, "journey.simulate") == []


def test_who_may_see_and_do_what(
    app: FastAPI, factory: sessionmaker[Session], world: World
) -> None:
    paths = ("/journeys", "/journeys/abandoned_cart", "/journeys/abandoned_cart/counts")
    for role in ("analyst", "agency"):
        client = signed_in(app, factory, role)
        for path in paths:
            page = client.get(path)
            assert page.status_code == 200, (role, path)
            no_secret(world, page.text)
            assert "/customers/" not in page.text
    analyst = signed_in(app, factory, "analyst")
    page = analyst.get("/journeys/abandoned_cart").text
    assert "3 sent" in box(page, "remind")
    assert "/pause" not in page and "/simulate" not in page
    for action in ("pause", "resume", "simulate"):
        assert analyst.post(f"/journeys/abandoned_cart/{action}", data={}).status_code == 403
    assert status_of(factory, "abandoned_cart") == "active"
    # agency: campaign design without personal data, as on the campaign pages
    agency = signed_in(app, factory, "agency")
    assert 'action="/journeys/abandoned_cart/pause"' in agency.get("/journeys/abandoned_cart").text
    simulated = agency.post("/journeys/abandoned_cart/simulate", data=simulation_form(world))
    assert simulated.status_code == 200
    no_secret(world, simulated.text)
    advisor = signed_in(app, factory, "advisor")
    assert 'href="/journeys"' not in advisor.get("/customers").text
    for path in paths:
        assert advisor.get(path).status_code == 403
    for action in ("pause", "resume", "simulate"):
        assert advisor.post(f"/journeys/abandoned_cart/{action}", data={}).status_code == 403
    assert TestClient(app).get("/journeys", follow_redirects=False).status_code == 303


def test_the_pages_speak_french(app: FastAPI, factory: sessionmaker[Session], world: World) -> None:
    client = signed_in(app, factory, "marketer", language="fr")
    listing = text_of(client.get("/journeys").text)
    assert "Parcours" in listing and "actif" in listing and "Instances en cours" in listing
    page = client.get("/journeys/abandoned_cart").text
    assert "Attente d'événement" in box(page, "wait_cart")
    assert "avec le même cart_id au plus 1 jour" in box(page, "wait_cart")
    assert "si bloqué : on continue 3 envoyés 1 bloqué 1 pas de consentement" in box(page, "remind")
    assert "jusqu'au prochain moment dans Lun–Sam 10:00–19:00" in html.unescape(
        box(page, "sms_window")
    )
    assert "Mettre le parcours en pause" in page and "Que se passerait-il ?" in page
    report = client.post("/journeys/abandoned_cart/simulate", data=simulation_form(world)).text
    assert "Rien n'a été écrit" in html.unescape(report)


# --- the layout alone ---------------------------------------------------------------------------


def words() -> views.Words:
    null = gettext.NullTranslations()
    return views.Words(null.gettext, null.ngettext)


@pytest.mark.parametrize("text", [example("abandoned_cart"), example("welcome"), LOOP])
def test_boxes_never_overlap_and_links_go_down_except_loops(text: str) -> None:
    definition = load_journey(text)
    graph = views.journey_graph(definition, words(), counts={})
    boxes = {b.id: b for b in graph.boxes}
    assert len(boxes) == len(definition.steps) + 1
    placed = list(boxes.values())
    for n, a in enumerate(placed):
        assert a.x >= 0 and a.y >= 0
        assert a.x + a.w <= graph.width and a.y + a.h <= graph.height
        for b in placed[n + 1 :]:
            apart = a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y
            assert apart, (a.id, b.id)
    back = [a for a in graph.arrows if a.back]
    assert len(graph.arrows) == len(definition.edges()) + 1
    if text is LOOP:
        assert len(back) == 1 and back[0].label == "1"  # check -> nudge, the branch's case 1
        assert boxes["nudge"].y < boxes["pause"].y < boxes["check"].y < boxes["done"].y
    else:
        assert not back
        for source, target, _label in definition.edges():
            assert boxes[source].y + boxes[source].h < boxes[target].y, (source, target)
    assert boxes[views.ENTRY].y < min(b.y for b in placed if b.id != views.ENTRY)


def test_steps_in_words() -> None:
    w = words()
    assert w.days("mon,tue,wed,thu,fri") == "Mon–Fri"
    assert w.days("mon,wed,sat,sun") == "Mon, Wed, Sat, Sun"
    assert w.duration(timedelta(hours=48)) == "2 days"
    assert w.duration(timedelta(hours=36)) == "36 hours"
    assert w.duration(timedelta(minutes=1)) == "1 minute"
    welcome = load_journey(example("welcome"))
    assert w.params(welcome.step("route"))[0] == (
        "1. if customer.rfm_segment in champions, loyal → advisor"
    )
    assert w.params(welcome.step("route"))[2] == "3. if score value ≥ 0.8 → advisor"
    assert w.params(welcome.step("ab")) == [
        "A 45% → email_a", "B 45% → email_b", "holdout 10% → wait_order",
    ]  # fmt: skip
    assert w.params(welcome.step("advisor")) == [
        "message welcome_call", "queue premium", "purpose: service", "if suppressed: exit",
    ]  # fmt: skip
    birthday = load_journey(example("birthday"))
    assert w.trigger(birthday.trigger) == "the anniversary of birth_date"
    assert w.reentry(birthday) == "300 days after the previous instance ended"
