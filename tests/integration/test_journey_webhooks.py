"""Journeys' webhooks on SQLite and PostgreSQL: the gate queues them in the outbox (no
campaign, no consent, an active customer), and the dispatcher posts them to a real local
HTTP server, signed, with the idempotency key; 2xx is sent, 5xx and timeouts are retried
with the same key, other answers fail; the timeline records both."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.test_campaign_dispatch import Clock, make_settings
from tests.integration.test_journey_gate import CART, NOW, POLICIES, instance, person
from tournesol.campaigns.dispatch import BACKOFF, dispatch
from tournesol.campaigns.models import Outbox
from tournesol.campaigns.setup import SetupError
from tournesol.channels.webhook import verify
from tournesol.interactions.models import Interaction
from tournesol.triggers.gate import DispatchGate
from tournesol.triggers.rules import GateResult, Send

HOOK_SECRET = "s" * 32


class Receiver:
    """A local HTTP server: each path answers from a script of status codes (the last one
    repeats), and every request is kept."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.scripts: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                receiver.requests.append((self.path, dict(self.headers), body))
                script = receiver.scripts.get(self.path, [200])
                status = script.pop(0) if len(script) > 1 else script[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def queue(session: Session, customer_id: int, url: str, key: str, **properties: Any) -> GateResult:
    send = Send(
        step="notify", visit=1, channel="webhook", message=None, idempotency_key=key,
        on_suppressed="exit", purpose="service", properties={"url": url, **properties},
    )  # fmt: skip
    return DispatchGate(POLICIES).send(
        session, send=send, instance=instance(customer_id), journey=CART, now=NOW
    )


def row(session: Session, key: str) -> Outbox:
    session.expire_all()
    found = session.scalar(select(Outbox).where(Outbox.key == key))
    assert found is not None
    return found


def test_webhooks_are_posted_signed_retried_with_the_same_key_or_failed(
    session: Session, factory: sessionmaker[Session], receiver: Receiver, tmp_path: Path
) -> None:
    ann = person(session, "Ann", email=None)  # no contact point, no consent: not a message
    gone = person(session, "Gone", status="erased")
    assert queue(session, ann, f"{receiver.url}/ok", "jrn-ok", kind="cart") == GateResult("sent")
    assert queue(session, ann, f"{receiver.url}/flaky", "jrn-flaky") == GateResult("sent")
    assert queue(session, ann, f"{receiver.url}/gone", "jrn-gone") == GateResult("sent")
    assert queue(session, gone, f"{receiver.url}/ok", "jrn-erased") == GateResult(
        "suppressed", "not_active"
    )
    session.commit()
    receiver.scripts = {"/flaky": [503, 200], "/gone": [404]}

    # without the shared secret, nothing is claimed
    with pytest.raises(SetupError, match="TOURNESOL_WEBHOOK_SECRET"):
        dispatch(factory, settings=make_settings(tmp_path), now=Clock(NOW))
    assert row(session, "jrn-ok").state == "planned"

    settings = make_settings(tmp_path, webhook_secret=HOOK_SECRET)
    report = dispatch(factory, settings=settings, channels=["webhook"], now=Clock(NOW))
    assert (report.sent["webhook"], report.retried["webhook"], report.failed["webhook"]) == (
        1, 1, 1
    )  # fmt: skip
    ok = row(session, "jrn-ok")
    assert (ok.state, ok.provider_id, ok.attempts) == ("sent", "jrn-ok", 1)
    _, headers, body = next(r for r in receiver.requests if r[0] == "/ok")
    assert headers["Idempotency-Key"] == "jrn-ok"
    assert headers["Content-Type"] == "application/json"
    assert verify(HOOK_SECRET, headers["Tournesol-Signature"], body, now=int(NOW.timestamp()))
    assert not verify("x" * 32, headers["Tournesol-Signature"], body, now=int(NOW.timestamp()))
    assert json.loads(body) == {
        "id": "jrn-ok", "type": "journey.action", "journey": "abandoned_cart",
        "step": "notify", "visit": 1, "instance_id": 1, "customer_id": ann,
        "purpose": "service", "properties": {"kind": "cart"},
        "created_at": NOW.isoformat(),
    }  # fmt: skip
    flaky = row(session, "jrn-flaky")
    assert (flaky.state, flaky.send_after, flaky.error) == (
        "planned", NOW + BACKOFF[0], "HTTP 503"
    )  # fmt: skip
    assert (row(session, "jrn-gone").state, row(session, "jrn-gone").error) == (
        "failed", "HTTP 404"
    )  # fmt: skip

    # the retry, a minute later: the same key, delivered once
    later = NOW + BACKOFF[0] + timedelta(seconds=1)
    report = dispatch(factory, settings=settings, channels=["webhook"], now=Clock(later))
    assert report.sent["webhook"] == 1
    flaky_calls = [h["Idempotency-Key"] for p, h, _ in receiver.requests if p == "/flaky"]
    assert flaky_calls == ["jrn-flaky", "jrn-flaky"]
    assert row(session, "jrn-flaky").state == "sent"
    assert dispatch(factory, settings=settings, channels=["webhook"], now=Clock(later)).sent[
        "webhook"
    ] == 0  # fmt: skip
    assert len(receiver.requests) == 4

    history = session.execute(
        select(Interaction.type, Interaction.channel, Interaction.campaign_code)
        .where(Interaction.customer_id == ann)
        .order_by(Interaction.id)
    ).all()
    assert sorted(tuple(h) for h in history) == sorted(
        [
            ("webhook_sent", "webhook", "journey:abandoned_cart"),
            ("webhook_failed", "webhook", "journey:abandoned_cart"),
            ("webhook_sent", "webhook", "journey:abandoned_cart"),
        ]
    )
