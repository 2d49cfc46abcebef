"""Building marketing emails (headers, encodings, injection), SMTP settings, the rate limiter, and
reading returned mail: RFC 3464 bounces, non-standard bounces and RFC 5965 complaints."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.channels.base import RateLimiter, SendResult, redact
from tournesol.channels.email import (
    Bounce,
    Complaint,
    RenderedEmail,
    SmtpSettings,
    build_email,
    parse_bounce,
    parse_complaint,
    render_email,
)

LONG_URL = "https://t.tournesol.example/u/" + "WzEyMzQ1Niwi" * 12 + ".sig_abcdefghijklmnop"


def sample_fields(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "key": 98765,
        "to": "anais.lefevre@example.fr",
        "subject": "Découvrez nos nouveautés d'été — jusqu'à -30 %",
        "text": "Bonjour Anaïs,\n\nNos soldes commencent.\n.\nÀ bientôt",
        "html": "<p>Bonjour <b>Anaïs</b>,</p><p>Nos soldes commencent. À bientôt</p>",
        "from_address": "news@tournesol.example",
        "from_name": "Boulangerie Fraîche, Lyon",
        "unsubscribe_url": LONG_URL,
        "unsubscribe_mailto": "unsubscribe@tournesol.example",
    }
    fields.update(changes)
    return fields


def sample(**changes: object) -> EmailMessage:
    return build_email(**sample_fields(**changes))  # type: ignore[arg-type]


def rendered(**changes: object) -> RenderedEmail:
    return render_email(**sample_fields(**changes))  # type: ignore[arg-type]


def reparse(message: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(message.as_bytes(), policy=email_policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- build_email ---------------------------------------------------------------------------


def test_the_wire_form_is_seven_bit_with_crlf_and_short_lines() -> None:
    data = sample().as_bytes()
    assert data.isascii()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_headers_read_back() -> None:
    msg = reparse(sample())
    assert msg["Subject"] == "Découvrez nos nouveautés d'été — jusqu'à -30 %"
    assert msg["From"].addresses[0].display_name == "Boulangerie Fraîche, Lyon"
    assert msg["From"].addresses[0].addr_spec == "news@tournesol.example"
    assert msg["To"].addresses[0].addr_spec == "anais.lefevre@example.fr"
    assert msg["X-Tournesol-Outbox"] == "98765"
    assert re.fullmatch(r"<tournesol\.98765\.[0-9a-f]{16}@tournesol\.example>", msg["Message-ID"])
    sent_at = parsedate_to_datetime(msg["Date"])
    assert abs((datetime.now(UTC) - sent_at).total_seconds()) < 60


def test_one_click_unsubscribe_headers_are_plain_and_unencoded() -> None:
    data = sample().as_bytes().decode("ascii")
    header = re.search(r"^List-Unsubscribe: (.*?)\r\n(?=\S)", data, re.MULTILINE | re.DOTALL)
    assert header is not None
    assert "=?" not in header.group(1)
    msg = reparse(sample())
    assert msg["List-Unsubscribe"] == f"<{LONG_URL}>, <mailto:unsubscribe@tournesol.example>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_unsubscribe_variants() -> None:
    only_mailto = reparse(sample(unsubscribe_url=None, unsubscribe_mailto="mailto:u@t.example"))
    assert only_mailto["List-Unsubscribe"] == "<mailto:u@t.example>"
    assert only_mailto["List-Unsubscribe-Post"] is None
    transactional = reparse(sample(unsubscribe_url=None, unsubscribe_mailto=None))
    assert transactional["List-Unsubscribe"] is None
    assert transactional["List-Unsubscribe-Post"] is None


def test_bodies_are_multipart_alternative_in_utf8() -> None:
    msg = reparse(sample())
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert (
        parts[0].get_content().replace("\r\n", "\n")
        == "Bonjour Anaïs,\n\nNos soldes commencent.\n.\nÀ bientôt\n"
    )
    assert parts[1].get_content().startswith("<p>Bonjour <b>Anaïs</b>,</p>")
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)


def test_text_only_message() -> None:
    msg = reparse(sample(html=None))
    assert msg.get_content_type() == "text/plain"
    assert "Anaïs" in msg.get_content()
    assert msg.get_content_charset() == "utf-8"


def test_reply_to_custom_headers_and_message_id_domain() -> None:
    msg = reparse(
        sample(
            key="abc-12",
            reply_to="service@tournesol.example",
            message_id_domain="mail.tournesol.example",
            headers={"X-Campaign": "summer", "Precedence": "bulk"},
        )
    )
    assert msg["Reply-To"] == "service@tournesol.example"
    assert msg["X-Campaign"] == "summer" and msg["Precedence"] == "bulk"
    assert msg["Message-ID"].startswith("<tournesol.abc-12.")
    assert msg["Message-ID"].endswith("@mail.tournesol.example>")


def test_every_message_gets_its_own_message_id() -> None:
    assert sample()["Message-ID"] != sample()["Message-ID"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"subject": "Promo\r\nBcc: everyone@example.fr"}, "subject"),
        ({"subject": "Promo\nX: y"}, "subject"),
        ({"from_name": "Shop\r\nBcc: x@example.fr"}, "from_name"),
        ({"to": "ana@example.fr\r\nBcc: x@example.fr"}, "to"),
        ({"headers": {"X-Campaign": "a\r\nBcc: x@example.fr"}}, "X-Campaign"),
        ({"unsubscribe_url": "https://t.example/u/x\r\nBcc: x@example.fr"}, "unsubscribe_url"),
        ({"unsubscribe_mailto": "u@t.example\nBcc: x@example.fr"}, "mailto"),
    ],
)
def test_line_breaks_in_header_values_are_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field) as raised:
        sample(**changes)
    assert "@" not in str(raised.value)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"to": "not-an-address"}, "to"),
        ({"to": "ana@@example.fr"}, "to"),
        ({"to": "ana@localhost"}, "to"),
        ({"to": "Ana <ana@example.fr>, bob@example.fr"}, "to"),
        ({"from_address": "news"}, "from_address"),
        ({"key": "12 34"}, "key"),
        ({"key": "x" * 65}, "key"),
        ({"key": 1.5}, "key"),
        ({"headers": {"Subject": "other"}}, "Subject"),
        ({"headers": {"x-tournesol-outbox": "1"}}, "x-tournesol-outbox"),
        ({"headers": {"Bad Name": "1"}}, "header name"),
        ({"unsubscribe_url": "javascript:alert(1)"}, "unsubscribe_url"),
        ({"message_id_domain": "exemple.fr>"}, "message_id_domain"),
    ],
)
def test_bad_values_are_refused_without_echoing_them(
    changes: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match) as raised:
        sample(**changes)
    assert "example.fr" not in str(raised.value)


header_text = (
    st.text(
        alphabet=st.characters(
            codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"], exclude_characters="\x85"
        ),
        min_size=1,
        max_size=120,
    )
    .map(lambda s: " ".join(s.split()))
    .filter(bool)
)


@given(header_text)
def test_any_subject_survives_the_wire(subject: str) -> None:
    msg = reparse(sample(subject=subject))
    assert msg["Subject"] == subject
    assert sample(subject=subject).as_bytes().isascii()


@given(header_text)
def test_any_sender_name_survives_the_wire(name: str) -> None:
    msg = reparse(sample(from_name=name))
    # CPython's address parser keeps the folding space between two adjacent encoded words of a
    # long display name (RFC 2047 says to drop it; mail readers do): compare without spaces
    assert msg["From"].addresses[0].display_name.replace(" ", "") == name.replace(" ", "")
    assert msg["From"].addresses[0].addr_spec == "news@tournesol.example"


def test_a_long_accented_sender_name_is_split_into_encoded_words_that_join_exactly() -> None:
    name = "Boulangerie-Pâtisserie Fraîche des Pentes de la Croix-Rousse à Lyon ★"
    raw = sample(from_name=name).as_bytes().decode("ascii")
    from_value = re.search(r"^From: (.*?)\r\n(?=\S)", raw, re.MULTILINE | re.DOTALL)
    assert from_value is not None
    assert max(len(line) for line in from_value.group(0).split("\r\n")) <= 78
    decoded = str(make_header(decode_header(from_value.group(1))))
    assert decoded == f"{name} <news@tournesol.example>"


def test_rendered_and_built_messages_are_the_same_message() -> None:
    wire = rendered()
    assert wire.recipients == ("anais.lefevre@example.fr",)
    assert wire.data.isascii()
    message = wire.to_message()
    assert message["Message-ID"] == wire.message_id
    assert message.as_bytes() == wire.data  # the email package writes it back unchanged
    assert sample()["Subject"] == message["Subject"]


def test_unicode_domains_go_in_idna_form_and_unicode_mailboxes_are_refused() -> None:
    wire = rendered(to="claire@bücher.example")
    assert wire.recipients == ("claire@xn--bcher-kva.example",)
    assert b"To: claire@xn--bcher-kva.example\r\n" in wire.data
    with pytest.raises(ValueError, match="to is not a valid email address"):
        rendered(to="chloé@example.fr")  # would need SMTPUTF8


@given(
    header_text,
    header_text,
    st.text(max_size=200),
    st.one_of(st.none(), st.text(max_size=200)),
)
def test_the_email_package_reads_back_what_render_wrote(
    subject: str, name: str, text: str, html: str | None
) -> None:
    wire = rendered(subject=subject, from_name=name, text=text, html=html)
    assert wire.data.isascii()
    assert all(len(line) <= 998 for line in wire.data.split(b"\r\n"))
    message = wire.to_message()
    assert message.as_bytes() == wire.data
    assert message["Subject"] == subject
    assert message["X-Tournesol-Outbox"] == "98765"
    bodies = [message] if html is None else list(message.iter_parts())

    def normalise(body: str) -> str:
        return body.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")

    assert [normalise(b.get_content()) for b in bodies] == [
        normalise(t) for t in ([text] if html is None else [text, html])
    ]


@given(st.text(max_size=300).map(lambda s: s.replace("\r", "")))
def test_any_text_body_survives_the_wire(text: str) -> None:
    msg = reparse(sample(text=text, html=None))
    body = msg.get_content().replace("\r\n", "\n")
    assert body.rstrip("\n") == text.rstrip("\n")


# --- settings ------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = SmtpSettings(from_address="news@tournesol.example")
    assert (settings.host, settings.port, settings.security) == ("localhost", 25, "none")
    assert settings.messages_per_connection == 100 and settings.rate_per_second is None
    assert settings.connections == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"security": "ssl"},
        {"port": 0},
        {"port": 70000},
        {"timeout": 0},
        {"messages_per_connection": 0},
        {"connections": 0},
        {"connections": 33},
        {"rate_per_second": 0},
        {"connect_attempts": 0},
        {"username": "u"},
        {"from_address": "news"},
        {"from_name": "a\nb"},
        {"reply_to": "x"},
        {"list_unsubscribe_mailto": "x y@t.example"},
        {"host": "a\r\nb"},
    ],
)
def test_settings_fail_fast(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {"from_address": "news@tournesol.example", **changes}
    with pytest.raises(ValueError):
        SmtpSettings(**fields)  # type: ignore[arg-type]


# --- rate limiter and results --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(("rate", "burst", "count"), [(10, 1, 31), (500, None, 1000), (3, 3, 9)])
def test_the_token_bucket_caps_the_rate(rate: float, burst: float | None, count: int) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, burst=burst, clock=clock, sleep=clock.sleep)
    for _ in range(count):
        limiter.acquire()
    elapsed = clock.now - 100.0
    capacity = burst if burst is not None else max(1.0, rate / 10)
    assert elapsed == pytest.approx((count - capacity) / rate, rel=1e-6)


def test_the_token_bucket_refills_while_idle() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, burst=2, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()
    clock.now += 10  # idle: the bucket refills up to its capacity, not beyond
    for _ in range(2):
        limiter.acquire()
    assert clock.sleeps == []
    limiter.acquire()
    assert clock.sleeps == [pytest.approx(0.5)]


def test_no_limit_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        limiter.acquire()
    assert clock.sleeps == []
    with pytest.raises(ValueError):
        RateLimiter(0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550 5.1.1 <jean.dupont@orange.example>: unknown", "550 5.1.1 <redacted>: unknown"),
        ("number +33 6 12 34 56 78 is invalid", "number <redacted> is invalid"),
        ("The 'To' number +15005550001 is not valid", "The 'To' number <redacted> is not valid"),
        (
            "host [192.0.2.10] said: 421 4.7.0 try later",
            "host [192.0.2.10] said: 421 4.7.0 try later",
        ),
        ("Twilio error 21211", "Twilio error 21211"),
        ("multi\r\nline\ttext", "multi line text"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_failed_results_are_redacted_and_short() -> None:
    result = SendResult.failed(3, "550 " + "x" * 500 + " ana@example.fr", permanent=True)
    assert result.error is not None and len(result.error) <= 300
    assert "@" not in (SendResult.failed(3, "550 <x@example.fr>", permanent=True).error or "")
    assert SendResult.accepted("k", "<id@x>") == SendResult("k", True, False, "<id@x>", None)


# --- returned mail: RFC 3464 delivery status notifications ---------------------------------

POSTFIX_DSN = b"""\
Return-Path: <>
Received: by mail.tournesol.example (Postfix)
\tid 3F2A1C0123; Tue, 14 May 2024 10:12:03 +0200 (CEST)
Date: Tue, 14 May 2024 10:12:03 +0200 (CEST)
From: MAILER-DAEMON@mail.tournesol.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: news@tournesol.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="3F2A1C0123.1715674323/mail.tournesol.example"
Content-Transfer-Encoding: 7bit
Message-Id: <20240514081203.8F1B2C0456@mail.tournesol.example>

This is a MIME-encapsulated message.

--3F2A1C0123.1715674323/mail.tournesol.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.tournesol.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

                   The mail system

<jean.dupont@orange.example>: host smtp-in.orange.example[192.0.2.10] said: 550
    5.1.1 <jean.dupont@orange.example>: Recipient address rejected: User unknown
    in virtual mailbox table (in reply to RCPT TO command)

--3F2A1C0123.1715674323/mail.tournesol.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.tournesol.example
X-Postfix-Queue-ID: 3F2A1C0123
X-Postfix-Sender: rfc822; news@tournesol.example
Arrival-Date: Tue, 14 May 2024 10:12:01 +0200 (CEST)

Final-Recipient: rfc822; jean.dupont@orange.example
Original-Recipient: rfc822;jean.dupont@orange.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; smtp-in.orange.example
Diagnostic-Code: smtp; 550 5.1.1 <jean.dupont@orange.example>: Recipient address
    rejected: User unknown in virtual mailbox table

--3F2A1C0123.1715674323/mail.tournesol.example
Content-Description: Undelivered Message
Content-Type: message/rfc822

Return-Path: <news@tournesol.example>
Received: from app.tournesol.example (app.tournesol.example [198.51.100.4])
\tby mail.tournesol.example (Postfix) with ESMTP id 3F2A1C0123
\tfor <jean.dupont@orange.example>; Tue, 14 May 2024 10:12:01 +0200 (CEST)
From: =?utf-8?q?Boulangerie_Fra=C3=AEche?= <news@tournesol.example>
To: jean.dupont@orange.example
Subject: =?utf-8?q?Nos_nouveaut=C3=A9s?=
Date: Tue, 14 May 2024 08:12:00 +0000
Message-ID: <tournesol.98765.0123456789abcdef@tournesol.example>
List-Unsubscribe: <https://t.tournesol.example/u/abc.def>
X-Tournesol-Outbox: 98765
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

Bonjour Jean,

--3F2A1C0123.1715674323/mail.tournesol.example--
"""

DELAY_DSN = b"""\
Return-Path: <>
From: MAILER-DAEMON@mail.tournesol.example (Mail Delivery System)
Subject: Delayed Mail (still being retried)
To: news@tournesol.example
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B2.1715674323/mail.tournesol.example"

--B2.1715674323/mail.tournesol.example
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.tournesol.example.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

--B2.1715674323/mail.tournesol.example
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.tournesol.example

Final-Recipient: rfc822; luc@slow.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.slow.example[203.0.113.9]:25: Connection
    timed out
Will-Retry-Until: Tue, 19 May 2024 10:12:01 +0200 (CEST)

--B2.1715674323/mail.tournesol.example
Content-Type: text/rfc822-headers

From: news@tournesol.example
To: luc@slow.example
Subject: Promo
Message-ID: <tournesol.4411.fedcba9876543210@tournesol.example>

--B2.1715674323/mail.tournesol.example--
"""

GMAIL_STYLE_DSN = b"""\
Delivered-To: bounces@tournesol.example
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: bounces@tournesol.example
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000abc"; report-type=delivery-status

--000000000000abc
Content-Type: multipart/related; boundary="000000000000def"

--000000000000def
Content-Type: multipart/alternative; boundary="000000000000ghi"

--000000000000ghi
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to nobody.here@gmail.example because the address couldn't be found.

--000000000000ghi--
--000000000000def--

--000000000000abc
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Arrival-Date: Wed, 15 May 2024 02:03:04 -0700 (PDT)

Final-Recipient: rfc822; other.person@gmail.example
Action: delivered
Status: 2.0.0

Final-Recipient: rfc822; nobody.here@gmail.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (2a00:1450:4013:c00::1a, the server for the domain gmail.example.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.
Last-Attempt-Date: Wed, 15 May 2024 02:03:05 -0700 (PDT)

--000000000000abc
Content-Type: message/rfc822

From: news@tournesol.example
To: nobody.here@gmail.example
Subject: Promo
X-Tournesol-Outbox: 31337

Hello
--000000000000abc--
"""

SUCCESS_DSN = GMAIL_STYLE_DSN.replace(
    b"Action: failed\nStatus: 5.1.1", b"Action: delivered\nStatus: 2.0.0"
)

QMAIL_BOUNCE = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net
To: news@tournesol.example
Subject: failure notice
Date: 14 May 2024 09:00:00 -0000

Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<marie.curie@example.net>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <news@tournesol.example>
From: news@tournesol.example
To: marie.curie@example.net
Subject: Promo
X-Tournesol-Outbox: 555
Message-ID: <tournesol.555.00112233aabbccdd@tournesol.example>

Bonjour Marie
"""

EXIM_BOUNCE = b"""\
From: Mail Delivery System <Mailer-Daemon@mx.example.org>
To: news@tournesol.example
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  paul.martin@example.org
    SMTP error from remote mail server after RCPT TO:<paul.martin@example.org>:
    host mx.example.org [198.51.100.7]: 550 No such user here

------ This is a copy of the message, including all the headers. ------

Return-path: <news@tournesol.example>
From: news@tournesol.example
To: paul.martin@example.org
Subject: Promo
X-Tournesol-Outbox: 777

Bonjour Paul
"""

OUT_OF_OFFICE = b"""\
From: Anne Martin <anne.martin@example.fr>
To: news@tournesol.example
Subject: Absence du bureau
Auto-Submitted: auto-replied

Je suis absente jusqu'au 20 mai. Pour toute urgence : 550 rue de la Paix.
"""


def test_postfix_dsn() -> None:
    assert parse_bounce(POSTFIX_DSN) == Bounce(
        outbox_key="98765",
        recipient="jean.dupont@orange.example",
        hard=True,
        status="5.1.1",
        diagnostic=(
            "550 5.1.1 <redacted>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
        ),
        action="failed",
    )


def test_delay_warning_is_a_soft_bounce_matched_by_message_id() -> None:
    bounce = parse_bounce(DELAY_DSN)
    assert bounce is not None
    assert (bounce.outbox_key, bounce.recipient) == ("4411", "luc@slow.example")
    assert (bounce.hard, bounce.status, bounce.action) == (False, "4.4.1", "delayed")
    assert bounce.diagnostic is not None and "Connection timed out" in bounce.diagnostic


def test_the_failed_recipient_of_a_multi_recipient_report_is_chosen() -> None:
    bounce = parse_bounce(GMAIL_STYLE_DSN)
    assert bounce is not None
    assert bounce.outbox_key == "31337"
    assert bounce.recipient == "nobody.here@gmail.example"
    assert bounce.hard and bounce.status == "5.1.1"
    assert (
        bounce.diagnostic == "550-5.1.1 The email account that you tried to reach does not exist."
    )


def test_a_delivery_report_without_failure_is_not_a_bounce() -> None:
    assert parse_bounce(SUCCESS_DSN) is None


def test_qmail_bounce() -> None:
    assert parse_bounce(QMAIL_BOUNCE) == Bounce(
        outbox_key="555",
        recipient="marie.curie@example.net",
        hard=True,
        status="5.1.1",
        diagnostic=None,
        action="failed",
    )


def test_exim_bounce() -> None:
    bounce = parse_bounce(EXIM_BOUNCE)
    assert bounce == Bounce(
        outbox_key="777",
        recipient="paul.martin@example.org",
        hard=True,
        status="550",
        diagnostic="550 No such user here",
        action="failed",
    )


def test_mail_that_is_not_a_bounce() -> None:
    assert parse_bounce(OUT_OF_OFFICE) is None
    assert parse_bounce(sample().as_bytes()) is None
    assert parse_bounce(b"") is None
    assert parse_bounce(b"\xff\xfe garbage \x00") is None


def test_a_dsn_for_a_message_built_here_finds_its_key(tmp_path: object) -> None:
    original = sample(key=2024).as_bytes().decode("ascii")
    dsn = POSTFIX_DSN.decode("ascii")
    head, _, _ = dsn.partition("Return-Path: <news@tournesol.example>")
    rebuilt = (
        head
        + original.replace("\r\n", "\n")
        + "\n--3F2A1C0123.1715674323/mail.tournesol.example--\n"
    )
    bounce = parse_bounce(rebuilt.encode("ascii"))
    assert bounce is not None and bounce.outbox_key == "2024"


# --- returned mail: RFC 5965 abuse reports -------------------------------------------------

ARF_REPORT = b"""\
From: <staff@hotmail.example>
Date: Thu, 16 May 2024 17:40:36 +0000
Subject: complaint about message from 198.51.100.4
To: <fbl@tournesol.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
198.51.100.4 on Thu, 16 May 2024 14:00:00 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <news@tournesol.example>
Original-Rcpt-To: <claire.durand@hotmail.example>
Arrival-Date: Thu, 16 May 2024 14:00:00 +0000
Reporting-MTA: dns; mail.hotmail.example
Source-IP: 198.51.100.4
Authentication-Results: mail.hotmail.example;
               spf=pass smtp.mail=news@tournesol.example
Reported-Domain: tournesol.example

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: news@tournesol.example
Received: from mail.tournesol.example (mail.tournesol.example
        [198.51.100.4]) by mail.hotmail.example with ESMTP id M63d4137594e46;
        Thu, 16 May 2024 14:00:00 +0000
To: claire.durand@hotmail.example
Subject: Promo
MIME-Version: 1.0
Content-type: text/plain
Message-ID: <tournesol.4242.0011223344556677@tournesol.example>
X-Tournesol-Outbox: 4242
Date: Thu, 16 May 2024 13:59:58 +0000

Promo promo promo
--part1_13d.2e68ed54_boundary--
"""

REDACTED_ARF = (
    ARF_REPORT.replace(b"Original-Rcpt-To: <claire.durand@hotmail.example>\n", b"")
    .replace(b"X-Tournesol-Outbox: 4242\n", b"")
    .replace(b"To: claire.durand@hotmail.example\n", b"To: redacted\n")
)


def test_arf_abuse_report() -> None:
    assert parse_complaint(ARF_REPORT) == Complaint(
        outbox_key="4242",
        recipient="claire.durand@hotmail.example",
        feedback_type="abuse",
        user_agent="SomeGenerator/1.0",
        arrival_date=datetime(2024, 5, 16, 14, 0, tzinfo=UTC),
    )


def test_arf_report_with_the_recipient_redacted_still_finds_the_message() -> None:
    complaint = parse_complaint(REDACTED_ARF)
    assert complaint is not None
    assert complaint.outbox_key == "4242"  # from the Message-ID
    assert complaint.recipient is None


def test_reports_that_are_not_complaints() -> None:
    assert (
        parse_complaint(ARF_REPORT.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam"))
        is None
    )
    assert parse_complaint(POSTFIX_DSN) is None
    assert parse_complaint(sample().as_bytes()) is None
    assert parse_bounce(ARF_REPORT) is None
