"""The webhook sender and its signature: status codes to results, headers, and the receiver's
check (any body and secret verify; any change of either does not)."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.channels.webhook import (
    USER_AGENT,
    Webhook,
    WebhookSender,
    WebhookSettings,
    body_of,
    signature,
    verify,
)

SECRET = "0123456789abcdef0123"
T = 1_800_000_000


def sender(handler: httpx.MockTransport) -> WebhookSender:
    return WebhookSender(WebhookSettings(SECRET), clock=lambda: T, transport=handler)


@pytest.mark.parametrize(
    ("status", "ok", "permanent", "error"),
    [
        (200, True, False, None),
        (204, True, False, None),
        (301, False, True, "HTTP 301 (a redirect is not followed)"),
        (400, False, True, "HTTP 400"),
        (404, False, True, "HTTP 404"),
        (408, False, False, "HTTP 408"),
        (429, False, False, "HTTP 429"),
        (500, False, False, "HTTP 500"),
        (503, False, False, "HTTP 503"),
    ],
)
def test_statuses(status: int, ok: bool, permanent: bool, error: str | None) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers={"Location": "https://elsewhere.example/"})

    body = body_of({"id": "k-1", "customer_id": 7})
    with sender(httpx.MockTransport(answer)) as hooks:
        (result,) = hooks.send([Webhook(1, "https://crm.example/hook", body, "k-1")])
    assert (result.key, result.ok, result.permanent, result.error) == (1, ok, permanent, error)
    assert result.provider_id == ("k-1" if ok else None)
    (request,) = seen  # never followed
    assert request.method == "POST" and str(request.url) == "https://crm.example/hook"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.content.decode() == body
    assert verify(SECRET, request.headers["Tournesol-Signature"], body, now=T)


def test_network_errors_and_timeouts_are_temporary_and_bad_urls_permanent() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        raise httpx.ConnectError("refused", request=request)

    with sender(httpx.MockTransport(fail)) as hooks:
        slow, down, bad = hooks.send(
            [
                Webhook(1, "https://crm.example/slow", "{}", "a"),
                Webhook(2, "https://crm.example/down", "{}", "b"),
                Webhook(3, "ftp://crm.example/x", "{}", "c"),
            ]
        )
    assert (slow.ok, slow.permanent, slow.maybe_sent) == (False, False, False)
    assert (down.ok, down.permanent) == (False, False) and "ConnectError" in (down.error or "")
    assert (bad.ok, bad.permanent) == (False, True)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        WebhookSettings("short")
    with pytest.raises(ValueError, match="timeout"):
        WebhookSettings(SECRET, timeout=0)


@given(
    secret=st.text(min_size=16, max_size=64),
    body=st.text(max_size=200),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
    drift=st.integers(min_value=-300, max_value=300),
)
def test_a_signature_verifies_only_its_body_secret_and_time(
    secret: str, body: str, timestamp: int, drift: int
) -> None:
    header = signature(secret, timestamp, body)
    assert verify(secret, header, body, now=timestamp + drift)
    assert not verify(secret, header, body + "x", now=timestamp)
    assert not verify(secret + "x", header, body, now=timestamp)
    assert not verify(secret, header, body, now=timestamp + 301)


def test_a_malformed_header_does_not_verify() -> None:
    for header in ("", "t=abc,v1=00", "v1=00", "t=1"):
        assert not verify(SECRET, header, "{}", now=1)
