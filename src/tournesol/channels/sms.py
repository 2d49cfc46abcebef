"""SMS through an HTTP provider, shaped on Twilio's Programmable Messaging REST API, plus the SMS
rules every provider shares: STOP replies, the French opt-out mention and segment counting.

Sending is ``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`` with form fields
``To``, ``From`` (or ``MessagingServiceSid``), ``Body`` and ``StatusCallback``, HTTP basic auth
``AccountSid:AuthToken``; the answer is JSON with ``sid`` and ``status``, or on error ``code``
and ``message``. ``base_url`` is configurable (a regional endpoint, a test server).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal

import httpx

from tournesol.channels.base import Key, RateLimiter, SenderError, SendResult

SmsState = Literal["sent", "delivered", "bounced", "failed"]

MAX_BODY: Final = 1600
"""Twilio refuses longer bodies (error 21617)."""

STATUS_MAP: Final[Mapping[str, SmsState]] = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "bounced",
    "failed": "failed",
    "canceled": "failed",
}
"""Twilio message statuses mapped to outbox states; in-flight statuses count as sent."""

STOP_WORDS: Final = frozenset(
    {
        "stop",
        "stop sms",
        "stopsms",
        "arret",
        "arret sms",
        "unsubscribe",
        # the opt-out keywords Twilio itself acts on: it refuses further sends (error 21610)
        "stopall",
        "cancel",
        "end",
        "quit",
        "optout",
        "revoke",
    }
)
"""Whole-message replies that mean opt-out, compared without case, accents or punctuation."""

_E164: Final = re.compile(r"\+[1-9]\d{6,14}")
_SID: Final = re.compile(r"[A-Za-z0-9]{2,64}")
_SERVICE_SID: Final = re.compile(r"MG[0-9a-fA-F]{32}")
_ALPHANUMERIC: Final = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")


@dataclass(kw_only=True)
class SmsSettings:
    """Account and sender at the SMS provider.

    ``sender`` is an E.164 number, an alphanumeric sender id (up to 11 letters or digits, such
    as ``"Tournesol"``) or a Messaging Service SID (``MG`` + 32 hex digits, sent as
    ``MessagingServiceSid``). ``status_callback_url`` receives delivery reports.
    ``connect_attempts`` failed connections in a row stop a batch with :class:`SenderError`.

    >>> SmsSettings(account_sid="AC123", auth_token="t", sender="+33612345678").base_url
    'https://api.twilio.com'
    """

    account_sid: str
    auth_token: str
    sender: str
    base_url: str = "https://api.twilio.com"
    status_callback_url: str | None = None
    rate_per_second: float | None = None
    timeout: float = 10.0
    connect_attempts: int = 3

    def __post_init__(self) -> None:
        if not _SID.fullmatch(self.account_sid):
            raise ValueError("account_sid must be letters and digits")
        if not self.auth_token:
            raise ValueError("auth_token must not be empty")
        if not (
            _E164.fullmatch(self.sender)
            or _SERVICE_SID.fullmatch(self.sender)
            or _ALPHANUMERIC.fullmatch(self.sender)
        ):
            raise ValueError(
                "sender must be an E.164 number, an alphanumeric id of up to 11 characters"
                " or a Messaging Service SID"
            )
        if not re.fullmatch(r"https?://[^\s]+", self.base_url):
            raise ValueError("base_url must be an http(s) URL")
        if self.status_callback_url is not None and not re.fullmatch(
            r"https?://[^\s]+", self.status_callback_url
        ):
            raise ValueError("status_callback_url must be an http(s) URL")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive or None")
        if self.connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1")


class SmsSender:
    """Sends ``(key, to_e164, body)`` triples through the provider with one HTTP client.

    Each message is one POST. Accepted (HTTP 2xx): ``provider_id`` is the message ``sid``.
    HTTP 429 and 5xx, timeouts and network errors are temporary failures (a timeout after the
    request went out may still have sent the message: at least once); other 4xx (invalid
    number 21211, unsubscribed recipient 21610...) are permanent. A number that is not E.164,
    an empty body or one longer than 1600 characters fails permanently without a request.
    HTTP 401 (refused credentials) and ``connect_attempts`` connection failures in a row raise
    :class:`SenderError`.

    >>> with SmsSender(settings) as sender:  # doctest: +SKIP
    ...     for result in sender.send([(1, "+33612345678", "Soldes -30 %\\nSTOP au 36111")]):
    ...         print(result.ok, result.provider_id)
    """

    def __init__(self, settings: SmsSettings, *, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self._limiter = limiter or RateLimiter(settings.rate_per_second)
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/"),
            auth=(settings.account_sid, settings.auth_token),
            timeout=settings.timeout,
            headers={"Accept": "application/json"},
        )
        self._path = f"/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._failed_connects = 0

    def __enter__(self) -> SmsSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._client.close()

    def send(self, messages: Iterable[tuple[Key, str, str]]) -> Iterator[SendResult]:
        """One :class:`SendResult` per ``(key, to_e164, body)``, in order, pulled lazily."""
        for key, to, body in messages:
            yield self._send_one(key, to, body)

    def _send_one(self, key: Key, to: str, body: str) -> SendResult:
        if not isinstance(to, str) or not _E164.fullmatch(to):
            return SendResult.failed(key, "recipient is not an E.164 number", permanent=True)
        if not isinstance(body, str) or not body.strip():
            return SendResult.failed(key, "empty SMS body", permanent=True)
        if len(body) > MAX_BODY:
            return SendResult.failed(
                key, f"SMS body longer than {MAX_BODY} characters", permanent=True
            )
        form = {"To": to, "Body": body}
        if _SERVICE_SID.fullmatch(self.settings.sender):
            form["MessagingServiceSid"] = self.settings.sender
        else:
            form["From"] = self.settings.sender
        if self.settings.status_callback_url:
            form["StatusCallback"] = self.settings.status_callback_url
        self._limiter.acquire()
        try:
            response = self._client.post(self._path, data=form)
        except httpx.ConnectError:
            self._failed_connects += 1
            if self._failed_connects >= self.settings.connect_attempts:
                raise SenderError(
                    f"cannot reach the SMS provider after {self._failed_connects} attempts"
                ) from None
            return SendResult.failed(key, "cannot reach the SMS provider", permanent=False)
        except httpx.TimeoutException:
            return SendResult.failed(
                key,
                "the SMS provider timed out; it may have accepted the message",
                permanent=False,
                maybe_sent=True,
            )
        except httpx.TransportError:
            return SendResult.failed(
                key, "network error talking to the SMS provider", permanent=False
            )
        self._failed_connects = 0
        return self._result(key, response)

    def _result(self, key: Key, response: httpx.Response) -> SendResult:
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        status = response.status_code
        if 200 <= status < 300:
            sid = payload.get("sid")
            return SendResult.accepted(key, sid if isinstance(sid, str) else None)
        code = payload.get("code")
        message = payload.get("message")
        detail = f"HTTP {status}"
        if code is not None:
            detail += f", provider error {code}"
        if isinstance(message, str) and message:
            detail += f": {message}"
        if status == 401:
            raise SenderError(f"the SMS provider refused the credentials ({detail})")
        return SendResult.failed(key, detail, permanent=status != 429 and status < 500)


def parse_status_callback(form: Mapping[str, str]) -> tuple[str, SmsState]:
    """``(sid, state)`` from a status callback's form fields (``MessageSid`` and
    ``MessageStatus``, or the older ``SmsSid``/``SmsStatus``); the state is one of ours, see
    :data:`STATUS_MAP`. Raises ``ValueError`` on a missing sid or an unknown status.

    >>> parse_status_callback({"MessageSid": "SM1", "MessageStatus": "undelivered"})
    ('SM1', 'bounced')
    """
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not _SID.fullmatch(sid):
        raise ValueError("status callback without a valid MessageSid")
    if status not in STATUS_MAP:
        raise ValueError(f"unknown message status {status[:20]!r}")
    return sid, STATUS_MAP[status]


def valid_signature(url: str, form: Mapping[str, str], signature: str, auth_token: str) -> bool:
    """Whether ``signature`` (the ``X-Twilio-Signature`` header) authenticates a callback
    posted to ``url`` (exactly as configured, query string included) with fields ``form``:
    base64 of HMAC-SHA1, keyed with the auth token, over the URL followed by each field's
    name and value in name order.
    """
    data = url + "".join(f"{name}{form[name]}" for name in sorted(form))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    expected = base64.b64encode(digest).decode("ascii")
    return hmac.compare_digest(expected, signature.strip())


def is_stop(body: str) -> bool:
    """Whether an inbound reply asks to stop: the whole message is one of :data:`STOP_WORDS`,
    whatever its case, accents, spacing or punctuation.

    >>> [is_stop(b) for b in ("Stop", "ARRÊT !", "stop sms.", "stop the music")]
    [True, True, True, False]
    """
    return _fold(body) in STOP_WORDS


def with_stop_mention(body: str, mention: str = "STOP au 36111") -> str:
    """``body`` with the opt-out ``mention`` on a last line, unless it already holds it
    (compared without case, accents, spaces or punctuation).

    >>> with_stop_mention("Soldes -30 % ce week-end")
    'Soldes -30 % ce week-end\\nSTOP au 36111'
    >>> with_stop_mention("Soldes ! Stop au 36 111")
    'Soldes ! Stop au 36 111'
    """
    if _fold(mention).replace(" ", "") in _fold(body).replace(" ", ""):
        return body
    stripped = body.rstrip()
    return f"{stripped}\n{mention}" if stripped else mention


def segments(body: str) -> int:
    """How many SMS parts ``body`` takes: GSM-7 (extension characters such as ``€`` count
    double) fits 160 septets in one part and 153 per part beyond; any other character switches
    the whole message to UCS-2, 70 code units in one part and 67 per part beyond. A character
    is never split between parts. An empty body takes 0 parts.

    >>> segments("a" * 160), segments("a" * 161), segments("é" * 160), segments("ê" * 70)
    (1, 2, 1, 1)
    >>> segments("€" * 80), segments("ê" * 71)
    (1, 2)
    """
    if not body:
        return 0
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENSION for c in body):
        units = [2 if c in _GSM7_EXTENSION else 1 for c in body]
        single, part = 160, 153
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in body]
        single, part = 70, 67
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for size in units:
        if used + size > part:
            count += 1
            used = 0
        used += size
    return count


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", plain).split())
