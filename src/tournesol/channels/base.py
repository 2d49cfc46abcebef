"""What every channel sender shares: the result of one send, the sender protocol, the error that
stops a whole batch and a token-bucket rate limiter.

Senders know nothing of the database. A dispatcher hands them an iterable of messages, each with
the caller's key (an outbox id), and records the :class:`SendResult` yielded for each one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

Key = int | str
"""The caller's identifier of a message (an outbox id), passed through untouched."""

MessageT_contra = TypeVar("MessageT_contra", contravariant=True)

_EMAIL: Final = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+")
_DIGITS: Final = re.compile(r"\+?\d[\d .()/\-]*\d")
_IPV4: Final = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_MAX_ERROR: Final = 300


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one message handed to a sender.

    ``ok`` is True when the provider accepted the message (an SMTP 250 after DATA, an HTTP 201).
    When ``ok`` is False, ``permanent`` says that a retry cannot succeed (SMTP 5xx, HTTP 4xx
    other than 429): the dispatcher should mark the row failed or bounced, not retry it.
    ``provider_id`` is the SMTP Message-ID or the provider's message id; ``error`` is a short
    text without personal data (addresses and phone numbers are redacted).
    """

    key: Key
    ok: bool
    permanent: bool = False
    provider_id: str | None = None
    error: str | None = None
    # not accepted as far as we know, but the message may have reached the provider (a
    # connection lost after the data went out, a timeout): retrying could send it twice
    maybe_sent: bool = False

    @classmethod
    def accepted(cls, key: Key, provider_id: str | None) -> SendResult:
        """A message the provider accepted."""
        return cls(key=key, ok=True, permanent=False, provider_id=provider_id)

    @classmethod
    def failed(
        cls, key: Key, error: str, *, permanent: bool, maybe_sent: bool = False
    ) -> SendResult:
        """A message that was not accepted (``maybe_sent``: that may have reached the provider
        all the same); ``error`` is redacted and shortened here.

        >>> SendResult.failed(7, "550 <ana@example.fr> unknown", permanent=True).error
        '550 <redacted> unknown'
        """
        return cls(
            key=key, ok=False, permanent=permanent, error=redact(error), maybe_sent=maybe_sent
        )


class SenderError(Exception):
    """The channel itself cannot be used (refused credentials, relay unreachable, untrusted
    certificate): every further message would fail the same way, so the batch stops.

    The message being handled when this is raised has no :class:`SendResult`; it was not sent.
    """


class Sender(Protocol[MessageT_contra]):
    """A channel sender.

    ``send(messages)`` is a generator: it pulls messages from ``messages`` (which may itself be
    a generator over millions of rows, memory stays flat) at most a few ahead of what it has
    answered (one per connection for a sender with several), and yields exactly one
    :class:`SendResult` per message, in input order. A failure of one message is a result,
    never an exception; only :class:`SenderError` (the channel is unusable) escapes, after
    the results of the messages that did go out; a message pulled without a result was not
    sent. ``send`` may be
    called several times on one sender; ``close()`` releases connections (senders are also
    context managers). Senders are not thread-safe: use one per thread or process.
    """

    def send(self, messages: Iterable[MessageT_contra]) -> Iterator[SendResult]: ...

    def close(self) -> None: ...


class RateLimiter:
    """A token bucket: :meth:`acquire` blocks until one more message may go out so that at most
    ``rate_per_second`` pass on average, with bursts up to ``burst`` messages (default: a tenth of
    a second's worth, at least one). ``rate_per_second=None`` means no limit.

    >>> limiter = RateLimiter(None)
    >>> limiter.acquire()  # returns at once
    """

    def __init__(
        self,
        rate_per_second: float | None,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate_per_second is not None and not rate_per_second > 0:
            raise ValueError("rate_per_second must be positive or None")
        self.rate = rate_per_second
        self.capacity = (
            float(burst) if burst is not None else max(1.0, (rate_per_second or 0.0) / 10.0)
        )
        if self.capacity < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._last = clock()

    def acquire(self) -> None:
        """Wait, if needed, then take one token."""
        if self.rate is None:
            return
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return
        wait = (1.0 - self._tokens) / self.rate
        self._sleep(wait)
        # the token that accrued during the wait is spent at once; counting from the planned
        # time rather than a new clock reading lets an oversleep be caught up next time
        self._tokens = 0.0
        self._last = now + wait


def redact(text: str) -> str:
    """``text`` without email addresses or phone numbers, on one line, at most 300 characters.

    >>> redact("550 5.1.1 <jean.dupont@example.fr>: user unknown")
    '550 5.1.1 <redacted>: user unknown'
    """
    cleaned = _EMAIL.sub("<redacted>", text)
    cleaned = _DIGITS.sub(_redact_number, cleaned)
    cleaned = " ".join(cleaned.split())
    cleaned = cleaned.replace("<<redacted>>", "<redacted>")
    if len(cleaned) > _MAX_ERROR:
        cleaned = cleaned[: _MAX_ERROR - 1] + "…"
    return cleaned


def _redact_number(match: re.Match[str]) -> str:
    # phone numbers have 8 digits or more; SMTP codes, Twilio codes and IPv4 addresses are kept
    run = match.group(0)
    if _IPV4.fullmatch(run) or sum(c.isdigit() for c in run) < 8:
        return run
    return "<redacted>"
