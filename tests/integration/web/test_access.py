"""Roles without personal data (analyst, agency) obtain none through ANY route of the UI or the
API, signed in or with an API key of their scopes; strangers obtain nothing. The test walks
every route the application has, so a new route is covered the day it is added (and fails
here until its path parameters have a value below)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.web_support import make_api_key, signed_in
from tournesol.auth import rules
from tournesol.customers.models import Customer
from tournesol.db import unit_of_work
from tournesol.demo.generator import DemoManifest, generate
from tournesol.identity import service as identity_service
from tournesol.identity.models import MatchReview, MergeEvent
from tournesol.ingest.importer import import_file
from tournesol.ingest.schemas import load_mapping
from tournesol.segments import service as segment_service

PUBLIC = {"/login", "/lang/{code}", "/api/v1/openapi.json", "/api/v1/docs", "/docs/oauth2-redirect"}
EVENT_COLLECTION = "/v1/"  # authenticated by a write key, not by a role: checked below
# Reached from messages: authenticated by the signed token in the path (or the SMS provider's
# signature), never by a role. A forged token gets an error page, or the pixel, and nothing
# else (tests/integration/web/test_public_pages.py has the real tokens).
FROM_MESSAGES = ("/t/", "/u/", "/p/")


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("access"), seed=5, persons=150)


def routes(app: FastAPI) -> Iterator[APIRoute]:
    def walk(items: list) -> Iterator[APIRoute]:  # type: ignore[type-arg]
        for item in items:
            if hasattr(item, "original_router"):
                yield from walk(item.original_router.routes)
            elif isinstance(item, APIRoute):
                yield item

    yield from walk(list(app.routes))


class World:
    """A resolved small demo base and the personal values that must never leak."""

    def __init__(self, factory: sessionmaker[Session], demo: DemoManifest) -> None:
        for item in demo.files:
            if item.source != "products":
                import_file(factory, item.path, load_mapping(item.mapping))
        identity_service.resolve(factory, full=True)
        with unit_of_work(factory) as session:
            people = session.execute(
                select(Customer.id, Customer.email, Customer.phone_mobile, Customer.last_name)
                .where(Customer.status == "active", Customer.email.is_not(None))
                .order_by(Customer.id)
            ).all()
            self.customer_id = people[0][0]
            self.secrets = {v for row in people for v in row[1:3] if v}
            for phone in [row[2] for row in people if row[2] and row[2].startswith("+33")]:
                national = "0" + phone[3:]  # as a page may show it: 0612345678, 06 12 34 56 78
                self.secrets |= {national, " ".join(national[i : i + 2] for i in range(0, 10, 2))}
            event = session.scalars(select(MergeEvent.id)).first()
            # a saved segment whose code is also a language ("code" below serves both routes),
            # with members whose e-mails must not leak through previews or exports
            segment = segment_service.create(
                session, code="en", name="Reachable by e-mail", definition={"reachable": "email"}
            )
            segment_service.refresh(session, segment)
            review = session.scalars(select(MatchReview.id)).first()
        assert len(self.secrets) > 50
        self.values = {
            "customer_id": str(self.customer_id),
            "event_id": str(event or 1),
            "review_id": str(review or 1),
            "key_id": "1",
            "outbox_id": "1",
            "channel": "email",
            "code": "en",
            "path": "batch",
            "token": "WzEsImVtYWlsIixudWxsLG51bGxd.forged-signature",
        }

    def url(self, route: APIRoute) -> str:
        path = route.path
        for name in route.param_convertors:
            assert name in self.values, f"add a value for path parameter {name!r} of {path}"
            path = path.replace("{" + name + "}", self.values[name]).replace(
                "{" + name + ":path}", self.values[name]
            )
        return path


def leaks(world: World, text: str) -> list[str]:
    return [s for s in world.secrets if s in text]


def call(client: TestClient, method: str, url: str) -> tuple[int, str]:
    if method in ("GET", "HEAD"):
        response = client.request(method, url, follow_redirects=False)
    else:
        response = client.request(method, url, data={"reason": "test"}, follow_redirects=False)
    return response.status_code, response.text


@pytest.mark.parametrize("role", ["analyst", "agency"])
def test_no_personal_data_for_roles_without_it_on_any_route(
    role: str, app: FastAPI, factory: sessionmaker[Session], small_demo: DemoManifest
) -> None:
    world = World(factory, small_demo)
    client = signed_in(app, factory, role)
    checked = 0
    for route in routes(app):
        if route.path == "/logout":
            continue  # would end the session the rest of the walk needs
        url = world.url(route)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            status, body = call(client, method, url)
            assert not leaks(world, body), f"{role} got personal data from {method} {url}"
            personal = url.startswith(
                ("/customers", "/identity", "/api/v1/customers", "/admin", "/tasks")
            )
            if personal:
                assert status == 403, f"{role} was not refused {method} {url}: {status}"
            checked += 1
    assert checked >= 30


def test_api_keys_of_aggregate_scopes_are_refused_every_customer_route(
    app: FastAPI, factory: sessionmaker[Session], small_demo: DemoManifest
) -> None:
    world = World(factory, small_demo)
    secret = make_api_key(
        factory, [rules.AGGREGATES_READ, rules.QUALITY_READ, rules.CAMPAIGNS_DESIGN]
    )
    client = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    for route in routes(app):
        if not route.path.startswith("/api/v1/customers"):
            continue
        for method in route.methods - {"HEAD", "OPTIONS"}:
            status, body = call(client, method, world.url(route))
            assert status == 403 and not leaks(world, body), (method, route.path, status)


def test_strangers_get_nothing_but_the_sign_in_form(
    app: FastAPI, factory: sessionmaker[Session], small_demo: DemoManifest
) -> None:
    world = World(factory, small_demo)
    client = TestClient(app)
    for route in routes(app):
        if route.path in PUBLIC:
            continue
        url = world.url(route)
        for method in route.methods - {"HEAD", "OPTIONS"}:
            status, body = call(client, method, url)
            assert not leaks(world, body), (method, url)
            if route.path.startswith(EVENT_COLLECTION):
                assert status in (400, 401), (method, url, status)  # no write key
            elif route.path.startswith(FROM_MESSAGES):
                pixel = route.path.endswith(".gif")
                assert status == (200 if pixel else status) and status in (200, 400, 403), (
                    method, url, status,
                )  # fmt: skip
                assert pixel or status != 200, (method, url, status)
            elif route.path == "/logout":
                assert status == 303
            elif url.startswith("/api/"):
                assert status == 401, (method, url, status)
            else:
                assert status in (303, 403), (method, url, status)


def test_the_quality_report_of_an_analyst_is_aggregates_only(
    app: FastAPI, factory: sessionmaker[Session], small_demo: DemoManifest
) -> None:
    world = World(factory, small_demo)
    page = signed_in(app, factory, "analyst").get("/quality")
    assert page.status_code == 200 and not leaks(world, page.text)
    assert "%" in page.text or "0" in page.text
