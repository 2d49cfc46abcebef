"""Event collection on the Segment-compatible endpoints, through HTTP, on SQLite and
PostgreSQL: keys and scopes, refusals with reasons, idempotency, filing in the timeline,
resolution to demo customers, stitching of anonymous visits, reprocessing."""

from __future__ import annotations

import base64
import gzip
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tests.web_support import make_api_key
from tournesol.auth import service as auth_service
from tournesol.collect import service as collect_service
from tournesol.collect.models import CollectedEvent, VisitorLink
from tournesol.customers.models import Customer, Identifier
from tournesol.db import make_engine, unit_of_work
from tournesol.demo.generator import DemoManifest, generate
from tournesol.identity.service import refresh_profiles
from tournesol.ingest.importer import import_file
from tournesol.ingest.models import Source
from tournesol.ingest.schemas import load_mapping
from tournesol.interactions.models import Interaction

STAMP = "2025-03-01T10:{:02d}:00Z"


@dataclass(frozen=True)
class Person:
    customer_id: int
    account_id: str
    email: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("collect-demo"), seed=11, persons=50)


def import_shop(factory: sessionmaker[Session], demo: DemoManifest) -> None:
    """The e-shop's accounts, with their identifiers (account_id, email, phone)."""
    (item,) = (f for f in demo.files if f.source == "ecommerce")
    import_file(factory, item.path, load_mapping(item.mapping))
    refresh_profiles(factory)


def shop_people(factory: sessionmaker[Session]) -> list[Person]:
    """E-shop customers whose e-mail no other customer holds."""
    with unit_of_work(factory) as session:
        shared = (
            select(Identifier.value)
            .where(Identifier.kind == "email")
            .group_by(Identifier.value)
            .having(func.count(func.distinct(Identifier.customer_id)) > 1)
        )
        email = Identifier.__table__.alias("email")
        rows = session.execute(
            select(Identifier.customer_id, Identifier.value, email.c.value)
            .join(email, email.c.customer_id == Identifier.customer_id)
            .where(
                Identifier.kind == "account_id",
                email.c.kind == "email",
                email.c.value.not_in(shared),
            )
            .order_by(Identifier.customer_id)
        ).all()
    return [Person(cid, account, mail) for cid, account, mail in rows]


@pytest.fixture
def people(factory: sessionmaker[Session], demo: DemoManifest) -> list[Person]:
    import_shop(factory, demo)
    found = shop_people(factory)
    assert len(found) >= 5
    return found


class Collector:
    """A client of the collector with a write key, as an SDK would be."""

    def __init__(self, app: FastAPI, secret: str) -> None:
        self.client = TestClient(app, raise_server_exceptions=False)
        self.auth = "Basic " + base64.b64encode(f"{secret}:".encode()).decode()

    def post(self, path: str, body: Any, **headers: str) -> Any:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = {"Authorization": self.auth, "Content-Type": "application/json"}
        return self.client.post(f"/v1/{path}", content=content, headers=sent | headers)

    def ok(self, path: str, body: Any, **headers: str) -> None:
        response = self.post(path, body, **headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}


@pytest.fixture
def collector(app: FastAPI, factory: sessionmaker[Session]) -> Collector:
    return Collector(app, make_api_key(factory, ["events:write"]))


def timeline(factory: sessionmaker[Session], customer_id: int) -> list[tuple[str, str, str]]:
    with unit_of_work(factory) as session:
        rows = session.execute(
            select(Interaction.type, Interaction.channel, Interaction.direction)
            .where(Interaction.customer_id == customer_id, Interaction.source_record_id.is_(None))
            .order_by(Interaction.occurred_at, Interaction.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def stored(factory: sessionmaker[Session]) -> list[CollectedEvent]:
    with unit_of_work(factory) as session:
        return list(session.scalars(select(CollectedEvent).order_by(CollectedEvent.id)))


# --- filing --------------------------------------------------------------------------------


def test_identify_track_and_page_of_an_account_reach_its_timeline(
    collector: Collector, factory: sessionmaker[Session], people: list[Person]
) -> None:
    person = people[0]
    collector.ok(
        "identify",
        {
            "userId": person.account_id,
            "traits": {"plan": "gold"},
            "timestamp": STAMP.format(1),
            "messageId": "i-1",
        },
    )
    collector.ok(
        "track",
        {
            "userId": person.account_id,
            "event": "Order Completed",
            "properties": {"total": 42.5},
            "timestamp": STAMP.format(2),
        },
    )
    collector.ok(
        "page",
        {
            "userId": person.account_id,
            "name": "Cart",
            "properties": {"path": "/cart"},
            "timestamp": STAMP.format(3),
        },
    )
    collector.ok(
        "screen", {"userId": person.account_id, "name": "Home", "timestamp": STAMP.format(4)}
    )
    assert timeline(factory, person.customer_id) == [
        ("identify", "web", "inbound"),
        ("order_completed", "web", "inbound"),
        ("page_view", "web", "inbound"),
        ("screen_view", "app", "inbound"),
    ]
    with unit_of_work(factory) as session:
        source = session.scalars(select(Source).where(Source.name == "events")).one()
        order = session.scalars(
            select(Interaction).where(Interaction.type == "order_completed")
        ).one()
        assert order.source_id == source.id and source.kind == "events"
        assert order.payload == {"total": 42.5} and order.subject == "Order Completed"
        assert order.occurred_at.isoformat() == "2025-03-01T10:02:00+00:00"
    events = stored(factory)
    assert {e.status for e in events} == {"resolved"}
    assert {e.customer_id for e in events} == {person.customer_id}
    assert events[0].message_id == "i-1" and events[0].payload["traits"] == {"plan": "gold"}


def test_the_same_message_id_is_stored_once(
    app: FastAPI, collector: Collector, factory: sessionmaker[Session]
) -> None:
    batch = {
        "batch": [
            {"type": "page", "anonymousId": "a-1", "messageId": "m-1"},
            {"type": "track", "anonymousId": "a-1", "event": "Clicked", "messageId": "m-2"},
            {"type": "track", "anonymousId": "a-1", "event": "Clicked", "messageId": "m-2"},
        ]
    }
    collector.ok("batch", batch)
    collector.ok("batch", batch)  # the SDK resends after a timeout
    collector.ok("page", {"anonymousId": "a-1", "messageId": "m-1"})
    events = stored(factory)
    assert [e.message_id for e in events] == ["m-1", "m-2"]
    with unit_of_work(factory) as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 2
    # Another source may use the same message ids: they are its own events.
    other = Collector(app, make_api_key(factory, ["events:write"], "app"))
    other.ok("page", {"anonymousId": "a-1", "messageId": "m-1"})
    assert len(stored(factory)) == 3


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "headers", "message"),
    [
        ("track", {"event": "Signed Up"}, {}, "userId or anonymousId is required"),
        ("track", {"userId": "u1"}, {}, "track needs an event name (event)"),
        (
            "page",
            {"userId": "u1", "timestamp": "hier"},
            {},
            "timestamp 'hier' is not an ISO 8601 date-time",
        ),
        ("identify", b"{not json", {}, "the body is not valid JSON"),
        ("batch", b'[{"type": "page"}]', {}, "the body must be a JSON object"),
        ("batch", {"batch": {"type": "page"}}, {}, "batch: a list of events is required"),
        (
            "page",
            {"userId": "u1", "properties": {"text": "x" * 40_000}},
            {},
            "the event is larger than 32KB",
        ),
        (
            "batch",
            {"batch": [{"type": "page", "userId": "u1", "properties": {"t": "x" * 30_000}}] * 18},
            {},
            "the request is larger than 500KB",
        ),
        (
            "batch",
            gzip.compress(orjson.dumps({"batch": [], "pad": "x" * 600_000})),
            {"Content-Encoding": "gzip"},
            "the request is larger than 500KB",
        ),
        (
            "batch",
            {"batch": [{"type": "page", "anonymousId": "a"}, {"type": "track", "userId": "u"}]},
            {},
            "batch[1]: track needs an event name (event)",
        ),
    ],
)
def test_malformed_requests_are_refused_with_the_reason_and_nothing_is_stored(
    collector: Collector,
    factory: sessionmaker[Session],
    path: str,
    body: Any,
    headers: dict[str, str],
    message: str,
) -> None:
    response = collector.post(path, body, **headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"status": 400, "message": message}
    assert stored(factory) == []


def test_keys_are_required_and_need_the_events_write_scope(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    client = TestClient(app, raise_server_exceptions=False)
    page = {"anonymousId": "a-1"}
    missing = client.post("/v1/page", json=page)
    assert missing.status_code == 401 and "write key" in missing.json()["error"]["message"]
    unknown = Collector(app, "tsk_00000000_not-a-key")
    assert unknown.post("page", page).status_code == 401
    reader = Collector(app, make_api_key(factory, ["customers:read"]))
    refused = reader.post("page", page)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "this API key lacks the events:write scope"
    secret = make_api_key(factory, ["events:write"])
    assert client.post("/v1/page", json=page | {"writeKey": secret}).status_code == 200
    bearer = client.post("/v1/page", json=page, headers={"Authorization": f"Bearer {secret}"})
    assert bearer.status_code == 200
    revoked = make_api_key(factory, ["events:write"])
    with unit_of_work(factory) as session:
        (key,) = [
            k for k in auth_service.list_api_keys(session) if revoked.split("_")[1] == k.prefix
        ]
        auth_service.revoke_api_key(session, key_id=key.id)
    assert Collector(app, revoked).post("page", page).status_code == 401
    assert len(stored(factory)) == 2
    # The key is not kept with the event.
    assert all("writeKey" not in e.payload for e in stored(factory))


def test_a_verified_key_is_trusted_for_a_few_seconds(
    session: Session, factory: sessionmaker[Session]
) -> None:
    secret = make_api_key(factory, ["events:write"], "shop")
    now = [100.0]
    keys = collect_service.KeyCache(ttl=5, clock=lambda: now[0])
    key = keys.verify(session, secret=secret)
    assert key is not None and key.source_name == "shop" and key.can("events:write")
    (row,) = auth_service.list_api_keys(session)
    auth_service.revoke_api_key(session, key_id=row.id)
    session.flush()
    assert keys.verify(session, secret=secret) == key  # cached
    now[0] += 6
    assert keys.verify(session, secret=secret) is None
    assert keys.verify(session, secret="tsk_zz_nothing") is None


# --- resolution and stitching --------------------------------------------------------------


def test_anonymous_page_views_join_the_customer_who_identifies_later(
    collector: Collector, factory: sessionmaker[Session], people: list[Person]
) -> None:
    person = people[1]
    visit = [
        {
            "type": "page",
            "anonymousId": "anon-42",
            "properties": {"path": f"/p/{i}"},
            "timestamp": STAMP.format(i),
            "context": {"ip": "203.0.113.9"},
        }
        for i in range(3)
    ]
    collector.ok("batch", {"batch": visit})
    collector.ok("page", {"anonymousId": "someone-else", "timestamp": STAMP.format(4)})
    assert {e.status for e in stored(factory)} == {"unresolved"}
    assert timeline(factory, person.customer_id) == []
    with unit_of_work(factory) as session:
        # Nothing accepted is lost: the interactions exist, waiting for their customer.
        waiting = session.scalar(
            select(func.count()).select_from(Interaction).where(Interaction.customer_id.is_(None))
        )
        assert waiting == 4
    collector.ok(
        "identify",
        {
            "anonymousId": "anon-42",
            "userId": "web-9001",
            "traits": {"email": person.email.upper()},
            "timestamp": STAMP.format(10),
        },
    )
    assert timeline(factory, person.customer_id) == [("page_view", "web", "inbound")] * 3 + [
        ("identify", "web", "inbound")
    ]
    # Later visits of that browser, and events of that user id, resolve at once.
    collector.ok("page", {"anonymousId": "anon-42", "timestamp": STAMP.format(11)})
    collector.ok(
        "track", {"userId": "web-9001", "event": "Added To Cart", "timestamp": STAMP.format(12)}
    )
    assert [t for t, _, _ in timeline(factory, person.customer_id)][-2:] == [
        "page_view",
        "added_to_cart",
    ]
    with unit_of_work(factory) as session:
        links = session.execute(
            select(VisitorLink.kind, VisitorLink.value, VisitorLink.customer_id).order_by(
                VisitorLink.kind
            )
        ).all()
        assert [tuple(r) for r in links] == [
            ("anonymous", "anon-42", person.customer_id),
            ("user", "web-9001", person.customer_id),
        ]
        stranger = session.scalars(
            select(CollectedEvent).where(CollectedEvent.anonymous_id == "someone-else")
        ).one()
        assert stranger.status == "unresolved" and stranger.customer_id is None


def test_a_batch_of_every_type_in_gzip(
    app: FastAPI, factory: sessionmaker[Session], people: list[Person]
) -> None:
    person = people[2]
    shop = Collector(app, make_api_key(factory, ["events:write"], "shop-app"))
    body = {
        "batch": [
            {
                "type": "screen",
                "anonymousId": "dev-1",
                "name": "Home",
                "timestamp": STAMP.format(0),
            },
            {
                "type": "track",
                "anonymousId": "dev-1",
                "event": "Product Viewed",
                "properties": {"sku": "SKU-1"},
                "timestamp": STAMP.format(1),
            },
            {
                "type": "identify",
                "anonymousId": "dev-1",
                "userId": person.account_id,
                "traits": {"email": person.email},
                "timestamp": STAMP.format(2),
            },
            {
                "type": "group",
                "userId": person.account_id,
                "groupId": "acme",
                "traits": {"name": "ACME"},
                "timestamp": STAMP.format(3),
            },
            {
                "type": "alias",
                "userId": person.account_id,
                "previousId": "old-id",
                "timestamp": STAMP.format(4),
            },
            {
                "type": "page",
                "userId": person.account_id,
                "name": "Checkout",
                "timestamp": STAMP.format(5),
            },
        ],
        "context": {"app": {"name": "Soleil", "version": "3.1"}},
        "sentAt": STAMP.format(6),
    }
    shop.ok("batch", gzip.compress(orjson.dumps(body)), **{"Content-Encoding": "gzip"})
    assert timeline(factory, person.customer_id) == [
        ("screen_view", "app", "inbound"),
        ("product_viewed", "app", "inbound"),
        ("identify", "app", "inbound"),
        ("group", "app", "inbound"),
        ("alias", "app", "inbound"),
        ("page_view", "app", "inbound"),
    ]
    with unit_of_work(factory) as session:
        source = session.scalars(select(Source).where(Source.name == "shop-app")).one()
        assert {e.source_id for e in session.scalars(select(CollectedEvent))} == {source.id}
        links = session.execute(select(VisitorLink.kind, VisitorLink.value)).all()
        assert sorted(tuple(r) for r in links) == [
            ("anonymous", "dev-1"),
            ("anonymous", "old-id"),
            ("user", "old-id"),
        ]


def test_an_email_two_customers_hold_resolves_nobody(
    collector: Collector, factory: sessionmaker[Session], people: list[Person]
) -> None:
    person, other = people[3], people[4]
    with unit_of_work(factory) as session:
        session.add(Identifier(customer_id=other.customer_id, kind="email", value=person.email))
    collector.ok("identify", {"userId": "web-1", "traits": {"email": person.email}})
    (event,) = stored(factory)
    assert event.status == "unresolved" and event.email == person.email


def test_links_to_a_merged_customer_lead_to_the_survivor(
    collector: Collector, factory: sessionmaker[Session], people: list[Person]
) -> None:
    absorbed, survivor = people[0], people[1]
    collector.ok("identify", {"anonymousId": "a-7", "traits": {"email": absorbed.email}})
    with unit_of_work(factory) as session:
        session.execute(
            update(Customer)
            .where(Customer.id == absorbed.customer_id)
            .values(status="merged", merged_into_id=survivor.customer_id)
        )
    collector.ok("page", {"anonymousId": "a-7", "timestamp": STAMP.format(30)})
    assert timeline(factory, survivor.customer_id) == [("page_view", "web", "inbound")]


def test_events_of_people_imported_later_are_filed_by_reprocess(
    collector: Collector, factory: sessionmaker[Session], demo: DemoManifest
) -> None:
    (item,) = (f for f in demo.files if f.source == "ecommerce")
    account = orjson.loads(item.path.read_text(encoding="utf-8").splitlines()[0])
    collector.ok(
        "identify",
        {
            "userId": str(account["account_id"]),
            "anonymousId": "a-1",
            "traits": {"email": account["email"]},
        },
    )
    collector.ok("page", {"anonymousId": "a-1"})
    assert {e.status for e in stored(factory)} == {"unresolved"}
    import_shop(factory, demo)
    with unit_of_work(factory) as session:
        done = collect_service.reprocess(session)
    assert (done.seen, done.resolved) == (2, 2)
    events = stored(factory)
    assert {e.status for e in events} == {"resolved"}
    (customer_id,) = {e.customer_id for e in events}
    assert [t for t, _, _ in timeline(factory, customer_id)] == ["identify", "page_view"]
    with unit_of_work(factory) as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 2


def test_a_failure_to_file_keeps_the_events_for_reprocess(
    collector: Collector,
    factory: sessionmaker[Session],
    people: list[Person],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    person = people[0]

    def broken(*_args: Any, **_kwargs: Any) -> int:
        raise RuntimeError(f"boom with {person.email}")

    monkeypatch.setattr(collect_service, "_store_filed", broken)
    with caplog.at_level(logging.INFO):
        collector.ok(
            "track",
            {
                "userId": person.account_id,
                "event": "Clicked",
                "context": {"ip": "203.0.113.9", "userAgent": "Mozilla/5.0"},
            },
        )
    (event,) = stored(factory)
    assert (event.status, event.interaction_id) == ("received", None)
    assert "filing 1 collected events failed (RuntimeError)" in caplog.text
    for secret in (person.email, person.account_id, "203.0.113.9", "Mozilla"):
        assert secret not in caplog.text  # personal data stays out of the logs
    monkeypatch.undo()
    with unit_of_work(factory) as session:
        assert collect_service.reprocess(session).resolved == 1
    assert timeline(factory, person.customer_id) == [("clicked", "web", "inbound")]


# --- the HTTP surface ----------------------------------------------------------------------


def test_browsers_may_post_from_another_origin(app: FastAPI) -> None:
    client = TestClient(app)
    preflight = client.options(
        "/v1/batch",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]


def test_the_endpoints_are_described_in_openapi(app: FastAPI) -> None:
    paths = TestClient(app).get("/api/v1/openapi.json").json()["paths"]
    for kind in ("identify", "track", "page", "screen", "group", "alias", "batch"):
        assert "post" in paths[f"/v1/{kind}"]


def test_statistics_are_refreshed_as_the_tables_grow(session: Session) -> None:
    growth = collect_service.Growth(first=1_000)
    due = [growth.add(n) for n in (400, 500, 100, 900, 50, 2_000, 1_000)]
    assert due == [False, False, True, False, False, True, False]  # at 1,000, then 3,950
    assert growth.next == 7_900  # twice the count that triggered it
    collect_service.refresh_statistics(session)  # ANALYZE on PostgreSQL, nothing on SQLite


def test_statistics_are_refreshed_in_a_background_thread_for_stale_tables_only(
    backend: str, fresh_databases: FreshDatabase
) -> None:
    engine = make_engine(fresh_databases.url(backend))
    try:
        with engine.connect() as conn:
            before = collect_service.stale_tables(conn)
        # never analyzed: every table collection reads (PostgreSQL); SQLite keeps none
        expected = set(collect_service.LOOKUP_COLUMNS) if backend == "postgresql" else set()
        assert set(before) == expected
        refresher = collect_service.StatisticsRefresher()
        with Session(engine) as session:  # a server's session: on an engine
            assert refresher.refresh(session) is True  # started, not awaited
            assert not session.in_transaction()  # the request's session was not used
        refresher.wait(60)
        with engine.connect() as conn:
            assert collect_service.stale_tables(conn) == {}
    finally:
        engine.dispose()
