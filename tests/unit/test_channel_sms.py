"""The SMS channel: sending through a real local HTTP server that answers like Twilio's Messages
API, status callbacks and their signatures, STOP replies, the opt-out mention and segments."""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.channels.base import RateLimiter, SenderError, SendResult
from tournesol.channels.sms import (
    STATUS_MAP,
    SmsSender,
    SmsSettings,
    is_stop,
    parse_status_callback,
    segments,
    valid_signature,
    with_stop_mention,
)

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token"
SERVICE = "MG" + "fedcba9876543210" * 2

# Twilio's magic test numbers: +15005550001 is an invalid number (error 21211)
INVALID = "+15005550001"
THROTTLED = "+15005550429"
BROKEN = "+15005550500"
SLOW = "+15005550999"


@dataclass
class Request:
    path: str
    authorization: str | None
    content_type: str | None
    form: dict[str, str]
    client: tuple[str, int]


@dataclass
class FakeTwilio:
    """What the server saw, shared with its handler threads."""

    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(state: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Twilio's API

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def error(self, status: int, code: int, message: str) -> None:
            self.answer(
                status,
                {
                    "code": code,
                    "message": message,
                    "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status,
                },
            )

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length).decode()
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            request = Request(
                self.path,
                self.headers.get("Authorization"),
                self.headers.get("Content-Type"),
                form,
                self.client_address,
            )
            with state.lock:
                state.requests.append(request)
            expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
            if request.authorization != expected:
                self.error(401, 20003, "Authenticate")
                return
            if self.path != f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json":
                self.error(404, 20404, "The requested resource was not found")
                return
            if not (request.content_type or "").startswith("application/x-www-form-urlencoded"):
                self.error(400, 21600, "Invalid content type")
                return
            to = form.get("To", "")
            if "Body" not in form or ("From" not in form) == ("MessagingServiceSid" not in form):
                self.error(
                    400, 21604, "A 'From' or 'MessagingServiceSid' and a 'Body' are required"
                )
            elif to == INVALID:
                self.error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            elif to == THROTTLED:
                self.error(429, 20429, "Too Many Requests")
            elif to == BROKEN:
                self.error(500, 20500, "Internal Server Error")
            else:
                if to == SLOW:
                    time.sleep(1.0)
                sid = "SM" + secrets.token_hex(16)
                self.answer(
                    201,
                    {
                        "account_sid": ACCOUNT,
                        "api_version": "2010-04-01",
                        "body": form["Body"],
                        "date_created": "Thu, 16 May 2024 14:00:00 +0000",
                        "direction": "outbound-api",
                        "error_code": None,
                        "error_message": None,
                        "from": form.get("From"),
                        "messaging_service_sid": form.get("MessagingServiceSid"),
                        "num_segments": str(segments(form["Body"])),
                        "price": None,
                        "sid": sid,
                        "status": "queued",
                        "to": to,
                        "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
                    },
                )

    return Handler


@pytest.fixture
def twilio() -> Iterator[tuple[FakeTwilio, str]]:
    state = FakeTwilio()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sms_settings(base_url: str, **changes: Any) -> SmsSettings:
    fields: dict[str, Any] = {
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "sender": "Tournesol",
        "base_url": base_url,
        "status_callback_url": "https://app.tournesol.example/sms/status",
        "timeout": 5.0,
    }
    return SmsSettings(**(fields | changes))


# --- sending -------------------------------------------------------------------------------


def test_messages_are_posted_like_twilio_expects(twilio: tuple[FakeTwilio, str]) -> None:
    state, url = twilio
    batch = ((i, f"+3361234567{i}", f"Soldes -30 % n°{i}\nSTOP au 36111") for i in range(5))
    with SmsSender(sms_settings(url)) as sender:
        results = list(sender.send(batch))
    assert [r.key for r in results] == [0, 1, 2, 3, 4]
    assert all(r.ok and r.error is None for r in results)
    assert all(re.fullmatch(r"SM[0-9a-f]{32}", r.provider_id or "") for r in results)
    assert len({r.provider_id for r in results}) == 5
    assert [r.form for r in state.requests] == [
        {
            "To": f"+3361234567{i}",
            "From": "Tournesol",
            "Body": f"Soldes -30 % n°{i}\nSTOP au 36111",
            "StatusCallback": "https://app.tournesol.example/sms/status",
        }
        for i in range(5)
    ]
    # one client, one kept-alive connection
    assert len({r.client for r in state.requests}) == 1


def test_a_messaging_service_is_sent_as_such(twilio: tuple[FakeTwilio, str]) -> None:
    state, url = twilio
    config = sms_settings(url, sender=SERVICE, status_callback_url=None)
    with SmsSender(config) as sender:
        [result] = sender.send([("k1", "+33612345678", "Bonjour")])
    assert result.ok
    assert state.requests[0].form == {
        "To": "+33612345678",
        "MessagingServiceSid": SERVICE,
        "Body": "Bonjour",
    }


def test_provider_errors_are_classified(twilio: tuple[FakeTwilio, str]) -> None:
    _, url = twilio
    batch = [
        (1, "+33612345678", "ok"),
        (2, INVALID, "invalid"),
        (3, THROTTLED, "throttled"),
        (4, BROKEN, "broken"),
        (5, "+33612345679", "ok again"),
    ]
    with SmsSender(sms_settings(url)) as sender:
        results = {r.key: r for r in sender.send(batch)}
    assert results[1].ok and results[5].ok
    assert results[2] == SendResult(
        2,
        ok=False,
        permanent=True,
        error="HTTP 400, provider error 21211: The 'To' number <redacted> is not a valid phone number.",
    )
    assert (results[3].ok, results[3].permanent) == (False, False)
    assert results[3].error == "HTTP 429, provider error 20429: Too Many Requests"
    assert (results[4].ok, results[4].permanent) == (False, False)
    assert results[4].error == "HTTP 500, provider error 20500: Internal Server Error"


@pytest.mark.parametrize(
    ("to", "body", "error"),
    [
        ("0612345678", "x", "recipient is not an E.164 number"),
        ("+33 6 12 34 56 78", "x", "recipient is not an E.164 number"),
        ("+0612345678", "x", "recipient is not an E.164 number"),
        ("+33612345678", "   ", "empty SMS body"),
        ("+33612345678", "x" * 1601, "SMS body longer than 1600 characters"),
    ],
)
def test_hopeless_messages_fail_without_a_request(
    twilio: tuple[FakeTwilio, str], to: str, body: str, error: str
) -> None:
    state, url = twilio
    with SmsSender(sms_settings(url)) as sender:
        [result] = sender.send([(9, to, body)])
    assert result == SendResult(9, ok=False, permanent=True, error=error)
    assert state.requests == []


def test_refused_credentials_stop_the_batch(twilio: tuple[FakeTwilio, str]) -> None:
    state, url = twilio
    with (
        SmsSender(sms_settings(url, auth_token="wrong")) as sender,
        pytest.raises(SenderError, match="credentials") as raised,
    ):
        list(sender.send([(1, "+33612345678", "x"), (2, "+33612345679", "y")]))
    assert "wrong" not in str(raised.value)
    assert len(state.requests) == 1


def test_a_timeout_is_a_temporary_failure(twilio: tuple[FakeTwilio, str]) -> None:
    _, url = twilio
    with SmsSender(sms_settings(url, timeout=0.2)) as sender:
        [result] = sender.send([(1, SLOW, "x")])
    assert (result.ok, result.permanent) == (False, False)
    assert result.error == "the SMS provider timed out; it may have accepted the message"


def test_an_unreachable_provider_gives_temporary_failures_then_stops_the_batch() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SmsSender(sms_settings(f"http://127.0.0.1:{port}", connect_attempts=2))
    results = sender.send((i, "+33612345678", "x") for i in range(5))
    first = next(results)
    assert (first.ok, first.permanent, first.error) == (
        False,
        False,
        "cannot reach the SMS provider",
    )
    with pytest.raises(SenderError, match="after 2 attempts"):
        next(results)
    sender.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_rate_limit_paces_the_requests(twilio: tuple[FakeTwilio, str]) -> None:
    state, url = twilio
    clock = FakeClock()
    limiter = RateLimiter(5, burst=1, clock=clock, sleep=clock.sleep)
    with SmsSender(sms_settings(url, rate_per_second=5), limiter=limiter) as sender:
        results = list(sender.send((i, "+33612345678", "x") for i in range(11)))
    assert all(r.ok for r in results) and len(state.requests) == 11
    assert clock.now == pytest.approx(2.0)  # 10 waits of 1/5 s after the first message


def test_the_rate_limit_holds_in_real_time(twilio: tuple[FakeTwilio, str]) -> None:
    _, url = twilio
    started = time.monotonic()
    with SmsSender(sms_settings(url, rate_per_second=20)) as sender:
        results = list(sender.send((i, "+33612345678", "x") for i in range(25)))
    assert all(r.ok for r in results)
    assert time.monotonic() - started >= (25 - 2) / 20 * 0.9


@pytest.mark.parametrize(
    "changes",
    [
        {"account_sid": "AC/../x"},
        {"auth_token": ""},
        {"sender": "0612345678"},
        {"sender": "A very long sender id"},
        {"sender": "12345"},
        {"base_url": "api.twilio.com"},
        {"status_callback_url": "ftp://x"},
        {"timeout": 0},
        {"rate_per_second": -1},
        {"connect_attempts": 0},
    ],
)
def test_settings_fail_fast(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        sms_settings(**({"base_url": "https://api.twilio.com"} | changes))


def test_settings_accept_the_three_kinds_of_sender() -> None:
    for sender in ("+33612345678", "Tournesol", "Promo 2024", SERVICE):
        assert sms_settings("https://api.twilio.com", sender=sender).sender == sender
    assert SmsSettings(account_sid=ACCOUNT, auth_token=TOKEN, sender="Shop").base_url == (
        "https://api.twilio.com"
    )


# --- status callbacks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("queued", "sent"),
        ("accepted", "sent"),
        ("sending", "sent"),
        ("sent", "sent"),
        ("delivered", "delivered"),
        ("read", "delivered"),
        ("undelivered", "bounced"),
        ("failed", "failed"),
        ("canceled", "failed"),
    ],
)
def test_twilio_statuses_map_to_ours(status: str, state: str) -> None:
    form = {"MessageSid": "SM" + "a" * 32, "MessageStatus": status, "AccountSid": ACCOUNT}
    assert parse_status_callback(form) == ("SM" + "a" * 32, state)


def test_older_callback_field_names_and_bad_callbacks() -> None:
    assert parse_status_callback({"SmsSid": "SM1", "SmsStatus": "Delivered"}) == (
        "SM1",
        "delivered",
    )
    with pytest.raises(ValueError, match="MessageSid"):
        parse_status_callback({"MessageStatus": "sent"})
    with pytest.raises(ValueError, match="unknown"):
        parse_status_callback({"MessageSid": "SM1", "MessageStatus": "teleported"})
    assert set(STATUS_MAP.values()) == {"sent", "delivered", "bounced", "failed"}


def test_callback_signature_with_twilios_documented_example() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    form = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert valid_signature(url, form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345")
    assert not valid_signature(url, form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "54321")
    assert not valid_signature(
        url, form | {"Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345"
    )
    assert not valid_signature(url + "&baz=3", form, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=", "12345")


# --- STOP replies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop.",
        " STOP! ",
        "stop sms",
        "STOP-SMS",
        "Stop SMS !!",
        "ARRET",
        "Arrêt",
        "ARRÊT.",
        "arrêt sms",
        "UNSUBSCRIBE",
        "Unsubscribe",
        "stopall",
        "« Stop »",
        "STOP\n",
    ],
)
def test_stop_replies(body: str) -> None:
    assert is_stop(body)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "Merci",
        "stop the music",
        "Ne pas arrêter",
        "STOPPER",
        "Oui",
        "START",
        "stop stop",
        "please unsubscribe me later",
    ],
)
def test_other_replies(body: str) -> None:
    assert not is_stop(body)


punctuation = st.text(alphabet=" .,;:!?¡¿-_'\"«»()\t\n", max_size=4)


@given(
    st.sampled_from(["stop", "stop sms", "arret", "arrêt", "unsubscribe", "arret sms"]),
    punctuation,
    punctuation,
    st.data(),
)
def test_stop_in_any_case_with_any_punctuation(
    word: str, before: str, after: str, data: st.DataObject
) -> None:
    cased = "".join(c.upper() if data.draw(st.booleans()) else c for c in word)
    assert is_stop(before + cased + after)


# --- the opt-out mention -------------------------------------------------------------------


def test_the_mention_is_added_once() -> None:
    assert (
        with_stop_mention("Soldes -30 % ce week-end") == "Soldes -30 % ce week-end\nSTOP au 36111"
    )
    assert with_stop_mention("Soldes -30 %  \n") == "Soldes -30 %\nSTOP au 36111"
    assert with_stop_mention("Soldes ! stop au 36111") == "Soldes ! stop au 36111"
    assert with_stop_mention("Soldes ! STOP AU 36 111.") == "Soldes ! STOP AU 36 111."
    assert with_stop_mention("") == "STOP au 36111"
    assert with_stop_mention("Promo", mention="STOP SMS au 36180") == "Promo\nSTOP SMS au 36180"


@given(st.text(max_size=200))
def test_the_mention_is_idempotent_and_always_there(body: str) -> None:
    once = with_stop_mention(body)
    assert with_stop_mention(once) == once
    assert "stopau36111" in re.sub(r"\W", "", once.casefold())


# --- segments ------------------------------------------------------------------------------

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ("", 0),
        ("a", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("a" * 152 + "€" + "a" * 10, 2),  # the escape pair is not split: 152 + (2 + 10)
        ("a" * 151 + "€" + "a" * 154, 3),  # 151 + 2 | 153 | 1
        ("Élégant été à Noël", 1),  # é, É, à are GSM-7; ë is not
        ("ê" * 70, 1),
        ("ê" * 71, 2),
        ("ê" * 134, 2),
        ("ê" * 135, 3),
        ("😀" * 35, 1),  # a surrogate pair: two UCS-2 units
        ("😀" * 36, 2),
        ("a" * 66 + "😀" + "a" * 10, 2),  # the pair is not split: 66 | 2 + 10
        ("Soldes -30 % ce week-end !\nSTOP au 36111", 1),
        ("Découvrez nos offres — STOP au 36111", 1),  # the em dash forces UCS-2 (37 units)
    ],
)
def test_segments(body: str, count: int) -> None:
    assert segments(body) == count


def test_a_french_message_with_an_accent_outside_gsm7() -> None:
    body = "Bonjour, votre fidélité est récompensée : -20 % sur tout le magasin ce week-end ! ç"
    assert len(body) < 160 and segments(body) == 2  # 'ç' forces UCS-2: 85 units > 70


@given(st.text(alphabet=GSM_BASIC, min_size=1, max_size=1000))
def test_gsm7_segment_count(body: str) -> None:
    expected = 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    assert segments(body) == expected


@given(
    st.text(
        alphabet=st.characters(codec="utf-8", max_codepoint=0xFFFF, exclude_categories=["Cs"]),
        min_size=1,
        max_size=500,
    ).filter(lambda s: any(c not in GSM_BASIC and c not in "\f^{}\\[~]|€" for c in s))
)
def test_ucs2_segment_count(body: str) -> None:
    expected = 1 if len(body) <= 70 else math.ceil(len(body) / 67)
    assert segments(body) == expected


@given(st.text(max_size=400))
def test_more_text_never_takes_fewer_segments(body: str) -> None:
    assert segments(body + "a") >= segments(body) >= (1 if body else 0)
