"""Engagement hygiene on SQLite and PostgreSQL: machine opens and suspected bot clicks are kept
on the timeline, flagged with their reason, and left out of the human figures; through the
public routes (Apple's privacy proxy, a person's open, a scanner's HEAD), a burst of clicks
flagged afterwards, the campaign results, the deliverability report on fixed data, and the
migration that keeps the opens recorded before it."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, Table, insert, select
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tournesol.campaigns import feedback, setup
from tournesol.campaigns import results as campaign_results
from tournesol.campaigns.models import Campaign, CampaignAttribution, Outbox
from tournesol.channels.links import LinkSigner
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, utcnow
from tournesol.ingest.models import Source
from tournesol.interactions.models import Interaction, Transaction
from tournesol.migrations import upgrade
from tournesol.reporting import hygiene
from tournesol.reporting.hygiene import DeliverabilityRow, Signals

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
APPLE = ("17.58.63.21", 443)
HOME = ("203.0.113.7", 51000)
MPP_AGENT = "Mozilla/5.0"
IOS_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
PERSON = Signals(user_agent=CHROME)
URL = "https://shop.soleil.example/soldes?utm_campaign=spring"
_serial = itertools.count(1)


@dataclass
class World:
    brand: int
    people: list[int]
    spring: Campaign


@pytest.fixture
def world(session: Session) -> World:
    brand = Brand(code="SOLEIL", name="Soleil")
    session.add(brand)
    session.flush()
    people = []
    for i in range(6):
        customer = Customer(first_name=f"P{i}", last_name="Test", email=f"p{i}@exemple.fr")
        session.add(customer)
        session.flush()
        people.append(customer.id)
    spring = campaign(session, "spring", brand.id)
    return World(brand.id, people, spring)


def campaign(session: Session, code: str, brand: int | None) -> Campaign:
    row = Campaign(
        code=code, name=code.title(), brand_id=brand, channels=["email", "sms"], status="running",
        control_salt=code, attribution_days=30,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def message(
    session: Session,
    c: Campaign,
    customer_id: int,
    sent_at: datetime | None,
    *,
    channel: str = "email",
    state: str = "sent",
    send_after: datetime | None = None,
    **values: object,
) -> Outbox:
    row = Outbox(
        key=f"{c.code}:{customer_id}:{next(_serial)}", campaign_id=c.id, customer_id=customer_id,
        brand_id=c.brand_id, channel=channel, language="fr", address=f"{customer_id}@exemple.fr",
        state=state, send_after=send_after or sent_at or T0, planned_at=T0 - timedelta(days=1),
        sent_at=sent_at, **values,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def timeline(session: Session, kind: str, outbox_id: int) -> list[dict[str, object]]:
    session.expire_all()
    rows = session.scalars(
        select(Interaction)
        .where(Interaction.type == kind, Interaction.payload["outbox_id"].as_integer() == outbox_id)
        .order_by(Interaction.occurred_at, Interaction.id)
    )
    return [row.payload for row in rows]


def human_times(session: Session, outbox_id: int) -> tuple[object, ...]:
    session.expire_all()
    row = session.get(Outbox, outbox_id)
    assert row is not None
    return (row.opened_at, row.human_opened_at, row.clicked_at, row.human_clicked_at)


@pytest.fixture
def public(app: FastAPI) -> tuple[FastAPI, LinkSigner]:
    app.state.settings = app.state.settings.model_copy(update={"link_secret": "l" * 40})
    return app, setup.link_signer(app.state.settings)


def client(app: FastAPI, peer: tuple[str, int], agent: str | None) -> TestClient:
    """A client at ``peer`` sending ``agent`` ("" : an empty User-Agent header)."""
    headers = {} if agent is None else {"user-agent": agent}
    return TestClient(app, client=peer, headers=headers)


# --- through the public routes ---------------------------------------------------------------


def test_an_apple_proxy_open_is_flagged_and_a_person_open_counted(
    session: Session, world: World, public: tuple[FastAPI, LinkSigner]
) -> None:
    app, signer = public
    hour_ago = utcnow() - timedelta(hours=1)
    read = message(session, world.spring, world.people[0], hour_ago)
    unread = message(session, world.spring, world.people[1], hour_ago)
    session.commit()
    proxy = client(app, APPLE, MPP_AGENT)
    for mail in (read, unread):
        answer = proxy.get(f"/t/o/{signer.make_open(mail.id)}.gif")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
    opened, human, _, _ = human_times(session, unread.id)
    assert opened is not None and human is None
    [flagged] = timeline(session, "email_opened", unread.id)
    assert flagged == {
        "outbox_id": unread.id, "machine": True, "reason": "mail_privacy_proxy",
        "user_agent": MPP_AGENT,
    }  # fmt: skip
    # the reader opens the message on their phone, at home: counted, once
    phone = client(app, HOME, IOS_MAIL)
    for _ in range(2):
        phone.get(f"/t/o/{signer.make_open(read.id)}.gif")
    proxy.get(f"/t/o/{signer.make_open(read.id)}.gif")
    opened, human, _, _ = human_times(session, read.id)
    assert human is not None and opened is not None and human > opened
    rows = timeline(session, "email_opened", read.id)
    assert [(r.get("machine"), r.get("user_agent")) for r in rows] == [
        (True, MPP_AGENT), (None, IOS_MAIL),
    ]  # fmt: skip
    # the address decided, and went no further
    assert APPLE[0] not in json.dumps(rows) and HOME[0] not in json.dumps(rows)
    found = campaign_results.results(session, world.spring, now=utcnow())
    assert (found.opened, found.machine_opened) == (1, 1)


def test_a_scanner_head_is_a_flagged_click_and_its_redirect_is_not_followed(
    session: Session, world: World, public: tuple[FastAPI, LinkSigner]
) -> None:
    app, signer = public
    mail = message(session, world.spring, world.people[0], utcnow() - timedelta(hours=1))
    other = message(session, world.spring, world.people[1], utcnow() - timedelta(hours=1))
    session.commit()
    token = signer.make_click(mail.id, 0, URL)
    scanner = client(app, HOME, CHROME)
    checked = scanner.head(f"/t/c/{token}", follow_redirects=False)
    assert checked.status_code == 302 and checked.headers["location"] == URL
    assert checked.content == b""
    opened, human_opened, clicked, human_clicked = human_times(session, mail.id)
    assert opened is not None and clicked is not None
    assert human_opened is None and human_clicked is None
    [click] = timeline(session, "email_clicked", mail.id)
    assert (click["bot"], click["reason"], click["index"]) == (True, "head_request", 0)
    [implied] = timeline(session, "email_opened", mail.id)
    assert (implied["implied_by"], implied["machine"], implied["reason"]) == (
        "click", True, "head_request",
    )  # fmt: skip
    # the customer follows the link later: their click counts (a row of its own)
    followed = client(app, HOME, CHROME).get(f"/t/c/{token}", follow_redirects=False)
    assert followed.status_code == 302 and followed.headers["location"] == URL
    _, human_opened, _, human_clicked = human_times(session, mail.id)
    assert human_opened is not None and human_clicked is not None
    assert [c.get("bot") for c in timeline(session, "email_clicked", mail.id)] == [True, None]
    # a security gateway naming itself, and a request naming no agent at all
    named = client(app, HOME, "Mozilla/5.0 (compatible; Proofpoint URL Defense)")
    named.get(f"/t/c/{signer.make_click(other.id, 0, URL)}", follow_redirects=False)
    client(app, HOME, "").get(f"/t/c/{signer.make_click(other.id, 1, URL)}", follow_redirects=False)
    reasons = [c["reason"] for c in timeline(session, "email_clicked", other.id)]
    assert sorted(reasons) == ["no_user_agent", "scanner_agent"]
    found = campaign_results.results(session, world.spring, now=utcnow())
    assert (found.clicked, found.bot_clicked, found.opened, found.machine_opened) == (1, 1, 1, 1)


def test_links_followed_all_at_once_through_the_routes_are_flagged(
    session: Session, world: World, public: tuple[FastAPI, LinkSigner]
) -> None:
    app, signer = public
    mail = message(session, world.spring, world.people[2], utcnow() - timedelta(hours=1))
    session.commit()
    sandbox = client(app, HOME, CHROME)
    for index in range(3):
        link = signer.make_click(mail.id, index, f"https://shop.soleil.example/{index}")
        assert sandbox.get(f"/t/c/{link}", follow_redirects=False).status_code == 302
    clicks = timeline(session, "email_clicked", mail.id)
    assert [(c["index"], c.get("reason")) for c in clicks] == [
        (0, "all_links_at_once"), (1, "all_links_at_once"), (2, "all_links_at_once"),
    ]  # fmt: skip
    assert human_times(session, mail.id)[1:4:2] == (None, None)


# --- recorded directly, at known times -------------------------------------------------------


def test_a_burst_flags_the_earlier_click_and_recomputes_the_human_times(
    session: Session, world: World
) -> None:
    mail = message(session, world.spring, world.people[0], T0)
    # the reader had opened the message half an hour after it went out
    assert feedback.record_open(session, outbox_id=mail.id, at=T0 + timedelta(minutes=30))
    first = T0 + timedelta(hours=1)
    assert feedback.record_click(
        session, outbox_id=mail.id, index=0, url=URL, at=first, signals=PERSON
    )
    assert human_times(session, mail.id) == (T0 + timedelta(minutes=30),) * 2 + (first, first)
    # a second link 0.8 s later: both were a machine's
    burst = first + timedelta(seconds=0.8)
    assert feedback.record_click(
        session, outbox_id=mail.id, index=1, url=URL + "&b", at=burst, signals=PERSON
    )
    clicks = timeline(session, "email_clicked", mail.id)
    assert [(c["index"], c.get("bot"), c.get("reason")) for c in clicks] == [
        (0, True, "all_links_at_once"), (1, True, "all_links_at_once"),
    ]  # fmt: skip
    assert all(c["user_agent"] == CHROME for c in clicks)
    # the open stays the reader's; the clicks are no longer
    assert human_times(session, mail.id) == (
        T0 + timedelta(minutes=30), T0 + timedelta(minutes=30), first, None,
    )  # fmt: skip

    # without an earlier open, the open the first click implied goes with it
    other = message(session, world.spring, world.people[1], T0)
    feedback.record_click(session, outbox_id=other.id, index=2, url=URL, at=first, signals=PERSON)
    feedback.record_click(session, outbox_id=other.id, index=0, url=URL, at=burst, signals=PERSON)
    assert human_times(session, other.id) == (first, None, first, None)
    [implied] = timeline(session, "email_opened", other.id)
    assert (implied["implied_by"], implied["machine"], implied["reason"]) == (
        "click", True, "all_links_at_once",
    )  # fmt: skip
    # the reader comes back the next day and clicks the first link again: it counts
    later = T0 + timedelta(days=1)
    assert feedback.record_click(
        session, outbox_id=other.id, index=2, url=URL, at=later, signals=PERSON
    )
    assert not feedback.record_click(
        session, outbox_id=other.id, index=2, url=URL, at=later + timedelta(hours=1)
    )
    assert human_times(session, other.id) == (first, later, first, later)
    assert [c.get("bot") for c in timeline(session, "email_clicked", other.id)] == [
        True, True, None,
    ]  # fmt: skip


def test_prefetched_opens_and_clicks_too_soon_after_the_send(
    session: Session, world: World
) -> None:
    mail = message(session, world.spring, world.people[3], T0)
    assert feedback.record_open(session, outbox_id=mail.id, at=T0 + timedelta(seconds=1))
    assert feedback.record_click(
        session, outbox_id=mail.id, index=0, url=URL, at=T0 + timedelta(seconds=5), signals=PERSON
    )
    [opened] = timeline(session, "email_opened", mail.id)
    [clicked] = timeline(session, "email_clicked", mail.id)
    assert (opened["reason"], clicked["reason"]) == ("prefetch", "too_fast")
    assert human_times(session, mail.id)[1:4:2] == (None, None)
    # configurable: with a shorter window, the same click would have been a person's
    quick = message(session, world.spring, world.people[4], T0)
    assert feedback.record_click(
        session, outbox_id=quick.id, index=0, url=URL, at=T0 + timedelta(seconds=5),
        signals=PERSON, thresholds=hygiene.Thresholds(click=3.0),
    )  # fmt: skip
    assert human_times(session, quick.id)[3] == T0 + timedelta(seconds=5)


def test_purchases_after_a_click_count_only_a_person_s_click(
    session: Session, world: World
) -> None:
    source = Source(name="till", kind="pos", restrictions=[])
    session.add(source)
    session.flush()
    p = world.people
    hour = timedelta(hours=1)
    message(session, world.spring, p[0], T0, clicked_at=T0 + hour)  # a scanner's click only
    message(session, world.spring, p[1], T0, clicked_at=T0 + hour, human_clicked_at=T0 + hour)
    for who in p[:2]:
        session.add(
            Transaction(
                source_id=source.id, external_id=f"t{who}", customer_id=who, kind="ticket",
                occurred_at=T0 + 2 * hour, brand_id=world.brand, total_amount=Decimal("10.00"),
            )
        )  # fmt: skip
    session.flush()
    assert campaign_results.attribute(session, now=T0 + timedelta(days=2)) == 2
    a = CampaignAttribution
    clicked = {who: bool(v) for who, v in session.execute(select(a.customer_id, a.clicked))}
    assert clicked == {p[0]: False, p[1]: True}
    found = campaign_results.results(session, world.spring, now=T0 + timedelta(days=2))
    assert (found.clicked, found.bot_clicked, found.clicked_purchases) == (1, 1, 1)


# --- the deliverability report ---------------------------------------------------------------


def test_deliverability_rows_on_fixed_data(session: Session, world: World) -> None:
    p, spring = world.people, world.spring
    autumn = campaign(session, "autumn", None)
    hour = timedelta(hours=1)
    rows = [
        # spring, e-mail: a person opened and clicked; a machine only opened; a machine opened
        # and a scanner clicked; a hard bounce (with a soft one before it); a soft bounce and
        # a complaint; never sent (failed); a cancelled message
        message(session, spring, p[0], T0, opened_at=T0 + hour, human_opened_at=T0 + hour,
                clicked_at=T0 + hour, human_clicked_at=T0 + hour),
        message(session, spring, p[1], T0, opened_at=T0),
        message(session, spring, p[2], T0, opened_at=T0, clicked_at=T0, unsubscribed_at=T0 + hour),
        message(session, spring, p[3], T0, state="bounced", bounced_at=T0 + hour),
        message(session, spring, p[4], T0, opened_at=T0 + hour, human_opened_at=T0 + 2 * hour),
        message(session, spring, p[5], None, state="failed"),
        message(session, spring, p[5], None, state="cancelled"),
        # spring, SMS: delivered, and another sent
        message(session, spring, p[0], T0, channel="sms", state="delivered", delivered_at=T0),
        message(session, spring, p[1], T0, channel="sms"),
        # autumn: one message in the window, one before it, one due (planned) in it
        message(session, autumn, p[0], T0 + timedelta(days=3), opened_at=T0 + timedelta(days=3)),
        message(session, autumn, p[1], T0 - timedelta(days=40)),
        message(session, autumn, p[2], None, state="planned", send_after=T0 + timedelta(days=5)),
    ]  # fmt: skip
    events = [
        (rows[3], "email_bounced", "soft"), (rows[3], "email_bounced", "5.1.1"),
        (rows[4], "email_bounced", "soft"), (rows[4], "email_bounced", "soft"),
        (rows[4], "email_complaint", "abuse"),
        (rows[10], "email_complaint", "abuse"),  # outside the window
    ]  # fmt: skip
    for row, kind, outcome in events:
        session.add(
            Interaction(
                customer_id=row.customer_id, occurred_at=T0 + hour, channel="email",
                direction="inbound", type=kind, outcome=outcome, campaign_code="spring",
                payload={"outbox_id": row.id, "report": f"r{next(_serial)}"},
            )
        )  # fmt: skip
    session.flush()

    found = hygiene.deliverability(session, since=T0 - timedelta(days=1), until=T0 + timedelta(7))

    assert found == [
        DeliverabilityRow(
            autumn.id, "autumn", "Autumn", "email", planned=2, sent=1, human_opens=0,
            machine_opens=1,
        ),
        DeliverabilityRow(
            spring.id, "spring", "Spring", "email", planned=6, sent=5, delivered=0,
            bounced_hard=1, bounced_soft=1, failed=1, complaints=1, unsubscribed=1,
            human_opens=2, machine_opens=2, human_clicks=1, bot_clicks=1,
        ),
        DeliverabilityRow(spring.id, "spring", "Spring", "sms", planned=2, sent=2, delivered=1),
    ]  # fmt: skip
    email = found[1].to_dict()
    assert (email["human_open_rate"], email["human_click_rate"]) == (0.5, 0.25)
    assert (email["click_to_open_rate"], email["hard_bounce_rate"]) == (0.5, 0.2)
    assert email["complaint_rate"] == 0.25
    # the window's edges: since is in, until is out; campaigns by id
    edge = hygiene.deliverability(session, since=T0, until=T0 + timedelta(days=3))
    assert [(r.campaign, r.channel, r.sent) for r in edge] == [
        ("spring", "email", 5), ("spring", "sms", 2),
    ]  # fmt: skip
    only = hygiene.deliverability(
        session, since=T0 - timedelta(days=60), until=T0 + timedelta(7), campaign_ids=[autumn.id]
    )
    assert [(r.campaign, r.planned, r.sent, r.complaints) for r in only] == [("autumn", 3, 2, 1)]
    assert hygiene.deliverability(session, since=T0, until=T0, campaign_ids=[]) == []


# --- the migration ---------------------------------------------------------------------------


def test_the_migration_keeps_the_opens_recorded_before_it(
    backend: str, fresh_databases: FreshDatabase
) -> None:
    engine = make_engine(fresh_databases.url(backend, migrate=False))
    try:
        upgrade(engine, "0019")
        with engine.begin() as conn:
            outbox = Table("outbox", MetaData(), autoload_with=conn)
            base = {
                "customer_id": 1, "channel": "email", "purpose": "marketing", "language": "fr",
                "state": "sent", "send_after": T0, "attempts": 0, "planned_at": T0,
                "updated_at": T0, "sent_at": T0, "opened_at": None, "clicked_at": None,
            }  # fmt: skip
            conn.execute(
                insert(outbox),
                [
                    {**base, "key": "a", "opened_at": T0 + timedelta(hours=1)},
                    {**base, "key": "b", "opened_at": T0, "clicked_at": T0 + timedelta(hours=2)},
                    {**base, "key": "c"},
                ],
            )
        upgrade(engine)
        with engine.connect() as conn:
            found = {
                key: (opened, clicked)
                for key, opened, clicked in conn.execute(
                    select(Outbox.key, Outbox.human_opened_at, Outbox.human_clicked_at)
                )
            }
        assert found == {
            "a": (T0 + timedelta(hours=1), None),
            "b": (T0, T0 + timedelta(hours=2)),
            "c": (None, None),
        }
    finally:
        engine.dispose()
