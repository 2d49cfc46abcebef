"""The real Segment SDK (segment-analytics-python), unchanged, pointed at a real Tournesol
server: its events reach the customers' timelines in the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import segment.analytics as analytics
from segment.analytics.client import Client
from segment.analytics.request import APIError
from sqlalchemy import func, select

from tests.e2e.live_server import LiveServer
from tournesol.auth import service as auth_service
from tournesol.collect.models import CollectedEvent
from tournesol.customers.models import Identifier
from tournesol.db import unit_of_work
from tournesol.demo.generator import generate
from tournesol.identity.service import refresh_profiles
from tournesol.ingest.importer import import_file
from tournesol.ingest.schemas import load_mapping
from tournesol.interactions.models import Interaction


@dataclass(frozen=True)
class Shop:
    server: LiveServer
    write_key: str
    people: list[tuple[int, str, str]]  # customer id, account id, e-mail


@pytest.fixture(scope="module")
def shop(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """The demo e-shop's accounts in the server's database, and a write key."""
    demo = generate(tmp_path_factory.mktemp("sdk-demo"), seed=5, persons=50)
    (item,) = (f for f in demo.files if f.source == "ecommerce")
    import_file(live_server.factory, item.path, load_mapping(item.mapping))
    refresh_profiles(live_server.factory)
    with unit_of_work(live_server.factory) as session:
        _key, secret = auth_service.create_api_key(
            session, name="e-shop events", scopes=["events:write"], source_name="eshop-web"
        )
        email = Identifier.__table__.alias("email")
        shared = (
            select(Identifier.value)
            .where(Identifier.kind == "email")
            .group_by(Identifier.value)
            .having(func.count(func.distinct(Identifier.customer_id)) > 1)
        )
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
    return Shop(live_server, secret, [(c, a, e) for c, a, e in rows])


def interactions_of(shop: Shop, customer_id: int) -> list[tuple[str, str | None]]:
    with unit_of_work(shop.server.factory) as session:
        rows = session.execute(
            select(Interaction.type, Interaction.subject)
            .where(Interaction.customer_id == customer_id, Interaction.source_record_id.is_(None))
            .order_by(Interaction.occurred_at, Interaction.id)
        ).all()
    return [(t, s) for t, s in rows]


@pytest.fixture
def module_sdk(shop: Shop) -> Iterator[list[Exception]]:
    """``segment.analytics`` configured as its documentation says, in sync mode."""
    errors: list[Exception] = []
    analytics.write_key = shop.write_key
    analytics.host = shop.server.base_url
    analytics.sync_mode = True
    analytics.on_error = lambda error, _batch: errors.append(error)
    analytics.default_client = None
    yield errors
    analytics.default_client = None
    analytics.sync_mode = False
    analytics.write_key = None
    analytics.host = None


def test_identify_track_and_page_from_the_sdk_reach_the_customer(
    shop: Shop, module_sdk: list[Exception]
) -> None:
    customer_id, account_id, email = shop.people[0]
    visitor = f"anon-{uuid.uuid4()}"
    analytics.page(anonymous_id=visitor, name="Home", properties={"path": "/"})
    analytics.track(anonymous_id=visitor, event="Product Viewed", properties={"sku": "SOL-1"})
    analytics.identify(account_id, {"email": email, "plan": "gold"}, anonymous_id=visitor)
    analytics.track(account_id, "Order Completed", {"total": 59.9, "currency": "EUR"})
    analytics.page(account_id, category="Shop", name="Checkout", properties={"path": "/checkout"})
    assert module_sdk == []
    assert interactions_of(shop, customer_id) == [
        ("page_view", "Home"),
        ("product_viewed", "Product Viewed"),
        ("identify", None),
        ("order_completed", "Order Completed"),
        ("page_view", "Checkout"),
    ]
    with unit_of_work(shop.server.factory) as session:
        events = session.scalars(
            select(CollectedEvent).where(CollectedEvent.customer_id == customer_id)
        ).all()
        assert len(events) == 5 and {e.status for e in events} == {"resolved"}
        assert all(e.payload["context"]["library"]["name"] == "analytics-python" for e in events)


def test_a_batching_client_with_gzip_loses_nothing_and_resends_nothing(shop: Shop) -> None:
    customer_id, account_id, _email = shop.people[1]
    errors: list[Any] = []
    client = Client(
        shop.write_key,
        host=shop.server.base_url,
        gzip=True,
        upload_size=50,
        on_error=lambda error, _batch: errors.append(error),
    )
    ids = [f"bulk-{uuid.uuid4()}" for _ in range(230)]
    for n, message_id in enumerate(ids):
        client.track(account_id, "Coupon Viewed", {"n": n}, message_id=message_id)
    client.flush()
    for message_id in ids[:40]:  # a resend of what was already delivered
        client.track(account_id, "Coupon Viewed", {"again": True}, message_id=message_id)
    client.shutdown()
    assert errors == []
    seen = [t for t, _ in interactions_of(shop, customer_id)]
    assert seen.count("coupon_viewed") == 230


def test_the_sdk_hears_a_bad_key(shop: Shop) -> None:
    client = Client("tsk_00000000_wrong", host=shop.server.base_url, sync_mode=True)
    with pytest.raises(APIError) as refused:
        client.page(anonymous_id="a", name="Home")
    assert refused.value.status == 401


def test_concurrent_batches_are_all_kept(shop: Shop) -> None:
    run = uuid.uuid4().hex[:8]
    failures: list[int] = []

    def send(worker: int) -> None:
        with httpx.Client(base_url=shop.server.base_url, auth=(shop.write_key, "")) as http:
            for b in range(10):
                batch = [
                    {
                        "type": "track",
                        "anonymousId": f"{run}-{worker}",
                        "event": "Scrolled",
                        "messageId": f"{run}-{worker}-{b}-{i}",
                    }
                    for i in range(40)
                ]
                response = http.post("/v1/batch", json={"batch": batch})
                if response.status_code != 200:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with unit_of_work(shop.server.factory) as session:
        kept = session.scalar(
            select(func.count())
            .select_from(CollectedEvent)
            .where(CollectedEvent.message_id.like(f"{run}-%"))
        )
        filed = session.scalar(
            select(func.count())
            .select_from(CollectedEvent)
            .where(
                CollectedEvent.message_id.like(f"{run}-%"),
                CollectedEvent.interaction_id.is_not(None),
            )
        )
    assert kept == filed == 6 * 10 * 40
