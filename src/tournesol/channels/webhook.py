"""Webhooks: a journey's call to another system (a CRM, an ad platform, a ticketing tool),
posted by the dispatcher like any message of the outbox.

Each webhook is one ``POST`` of a JSON body to the action's URL, with these headers:

- ``Idempotency-Key``: the outbox key (the journey's idempotency key for the step's visit):
  a retry carries the same key, and the receiver keeps the first and ignores the others;
- ``Tournesol-Signature``: ``t=<unix time>,v1=<hex>``, the HMAC-SHA256 of
  ``"<unix time>.<body>"`` under the shared secret (``TOURNESOL_WEBHOOK_SECRET``): the
  receiver recomputes it, compares in constant time, and refuses an old timestamp;
- ``User-Agent: Tournesol-Webhook/1``.

Delivery is at least once: HTTP 2xx is delivered; 408, 429, 5xx, timeouts and network errors
are temporary (the dispatcher retries with its backoff, same key); other answers are
permanent failures (a redirect is not followed: the URL is what the journey's author wrote).
The body holds the customer's id, never their personal data: a receiver that needs more asks
the API with its own key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, NamedTuple

import httpx

from tournesol.channels.base import Key, RateLimiter, SendResult

USER_AGENT: Final = "Tournesol-Webhook/1"
_URL: Final = re.compile(r"https?://[^\s/?#]+[^\s]*")


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The shared secret that signs every webhook, the time a receiver has to answer, and an
    optional cap on webhooks a second."""

    secret: str
    timeout: float = 10.0
    rate_per_second: float | None = None

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("the webhook secret must have at least 16 characters")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive or None")


class Webhook(NamedTuple):
    """One webhook to post: the outbox id (``key`` of the result), the URL, the body (JSON
    text) and the idempotency key."""

    key: Key
    url: str
    body: str
    idempotency_key: str


def body_of(values: Mapping[str, Any]) -> str:
    """The JSON text posted: compact, keys sorted, so that its signature is reproducible."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def signature(secret: str, timestamp: int, body: str) -> str:
    """The ``Tournesol-Signature`` header of ``body`` sent at ``timestamp`` (Unix seconds).

    >>> signature("0123456789abcdef", 1700000000, "{}")[:13]
    't=1700000000,'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: str, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does: whether ``header`` signs ``body`` with ``secret`` and its time is
    within ``tolerance`` seconds of ``now``.

    >>> header = signature("0123456789abcdef", 1700000000, "{}")
    >>> verify("0123456789abcdef", header, "{}", now=1700000060)
    True
    >>> verify("0123456789abcdef", header, '{"a":1}', now=1700000060)
    False
    """
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class WebhookSender:
    """Posts :class:`Webhook` values with one HTTP client; one :class:`SendResult` each, in
    order. ``clock`` gives the Unix time of the signatures (injected in tests)."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        clock: Callable[[], float],
        limiter: RateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._limiter = limiter or RateLimiter(settings.rate_per_second)
        self._client = httpx.Client(
            timeout=settings.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
            transport=transport,
        )

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def send(self, messages: Iterable[Webhook]) -> Iterator[SendResult]:
        for message in messages:
            yield self._send_one(message)

    def _send_one(self, hook: Webhook) -> SendResult:
        if not _URL.fullmatch(hook.url):
            return SendResult.failed(hook.key, "the webhook URL is not http(s)", permanent=True)
        timestamp = int(self._clock())
        headers = {
            "Idempotency-Key": hook.idempotency_key,
            "Tournesol-Signature": signature(self.settings.secret, timestamp, hook.body),
        }
        self._limiter.acquire()
        try:
            response = self._client.post(hook.url, content=hook.body.encode(), headers=headers)
        except httpx.TimeoutException:
            # the receiver may have taken it: the retry carries the same key
            return SendResult.failed(hook.key, "the receiver timed out", permanent=False)
        except httpx.TransportError as exc:
            return SendResult.failed(
                hook.key, f"network error: {type(exc).__name__}", permanent=False
            )
        status = response.status_code
        if 200 <= status < 300:
            return SendResult.accepted(hook.key, hook.idempotency_key[:200])
        detail = f"HTTP {status}"
        if 300 <= status < 400:
            detail += " (a redirect is not followed)"
        temporary = status in (408, 429) or status >= 500
        return SendResult.failed(hook.key, detail, permanent=not temporary)
