"""SmtpSender against a real SMTP server (aiosmtpd) started in the test: delivery, headers,
connection reuse and reconnection, refusals, rate limit, STARTTLS, implicit TLS and AUTH."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tournesol.channels.base import SenderError, SendResult
from tournesol.channels.email import (
    SmtpSender,
    SmtpSettings,
    build_email,
    render_email,
)

FROM = "news@tournesol.example"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    peer: Any

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=email_policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what it receives and refuses chosen recipients."""

    refuse: dict[str, str] = field(default_factory=dict)
    refuse_data: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    peers: set[Any] = field(default_factory=set)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.peers.add(session.peer)
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        for prefix, reply in self.refuse.items():
            if address.startswith(prefix):
                return reply.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for marker, reply in self.refuse_data.items():
            if marker.encode() in envelope.content:
                return reply
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                session.ssl is not None,
                session.peer,
            )
        )
        return "250 2.0.0 Ok: queued as 4F2A1C0123"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_server() -> Iterator[Callable[..., tuple[Controller, int]]]:
    controllers: list[Controller] = []

    def start(handler: Recorder, port: int | None = None, **kwargs: Any) -> tuple[Controller, int]:
        port = port or free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        controllers.append(controller)
        return controller, port

    yield start
    for controller in controllers:
        with contextlib.suppress(AssertionError):  # already stopped by the test
            controller.stop()


def message(i: int, to: str | None = None, *, build: Callable[..., Any] = build_email) -> Any:
    return i, build(
        key=i,
        to=to or f"client{i}@example.fr",
        subject=f"Soldes d'été n°{i}",
        text=f"Bonjour client {i},\nÀ bientôt.",
        html=f'<p>Bonjour client {i}</p><a href="https://shop.example/{i}">Voir</a>',
        from_address=FROM,
        from_name="Boulangerie Fraîche",
        unsubscribe_url=f"https://t.tournesol.example/u/token{i}",
        unsubscribe_mailto="unsubscribe@tournesol.example",
    )


def settings(port: int, **changes: Any) -> SmtpSettings:
    fields: dict[str, Any] = {"from_address": FROM, "host": "127.0.0.1", "port": port, "timeout": 5}
    return SmtpSettings(**(fields | changes))


@pytest.mark.parametrize("build", [build_email, render_email], ids=["EmailMessage", "rendered"])
def test_two_hundred_messages_arrive_once_with_their_headers_and_bodies(
    start_server: Callable[..., tuple[Controller, int]], build: Callable[..., Any]
) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    messages = (message(i, build=build) for i in range(200))  # a generator, not a list
    with SmtpSender(settings(port, messages_per_connection=50, connections=1)) as sender:
        results = list(sender.send(messages))
        assert sender.connections_opened == 4

    assert [r.key for r in results] == list(range(200))
    assert all(r.ok and r.error is None for r in results)
    assert len(handler.received) == 200
    assert len(handler.peers) == 4  # 50 messages per connection
    by_key = {}
    for got in handler.received:
        msg = got.message
        by_key[msg["X-Tournesol-Outbox"]] = (got, msg)
    assert sorted(by_key, key=int) == [str(i) for i in range(200)]
    for i, result in enumerate(results):
        got, msg = by_key[str(i)]
        assert got.mail_from == FROM
        assert got.rcpt_tos == [f"client{i}@example.fr"]
        assert msg["Message-ID"] == result.provider_id
        assert msg["Message-ID"].startswith(f"<tournesol.{i}.")
        assert msg["List-Unsubscribe"] == (
            f"<https://t.tournesol.example/u/token{i}>, <mailto:unsubscribe@tournesol.example>"
        )
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Subject"] == f"Soldes d'été n°{i}"
        assert msg["From"].addresses[0].display_name == "Boulangerie Fraîche"
        text, html = (part.get_content() for part in msg.iter_parts())
        assert text.replace("\r\n", "\n") == f"Bonjour client {i},\nÀ bientôt.\n"
        assert f'<a href="https://shop.example/{i}">' in html


def test_any_email_message_can_be_sent(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    plain = EmailMessage()
    plain["From"] = FROM
    plain["To"] = "Anaïs <anais@example.fr>"
    plain["Bcc"] = "archive@tournesol.example"
    plain["Subject"] = "Reçu"
    plain.set_content("Merci pour votre commande.")
    international = EmailMessage()
    international["From"] = FROM
    international["To"] = "chloé@exemple.fr"
    international["Subject"] = "Bonjour"
    international.set_content("Texte")
    with SmtpSender(settings(port)) as sender:
        first, second = sender.send([("a", plain), ("b", international)])
    assert first.ok and second.ok
    assert first.provider_id is not None and first.provider_id == plain["Message-ID"]
    # two connections: either may arrive first
    got_plain, got_international = sorted(handler.received, key=lambda got: got.rcpt_tos[0])
    assert got_plain.rcpt_tos == ["anais@example.fr", "archive@tournesol.example"]
    assert b"archive@" not in got_plain.content  # Bcc stays out of the message
    assert got_plain.message["Subject"] == "Reçu"
    assert got_international.rcpt_tos == ["chloé@exemple.fr"]  # SMTPUTF8
    assert "chloé@exemple.fr" in got_international.content.decode("utf-8")


def test_an_international_address_needs_a_relay_with_smtputf8(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder()
    _, port = start_server(handler, enable_SMTPUTF8=False)
    international = EmailMessage()
    international["From"] = FROM
    international["To"] = "chloé@exemple.fr"
    international.set_content("Texte")
    with SmtpSender(settings(port)) as sender:
        [result] = sender.send([(1, international)])
    assert result == SendResult(
        1, ok=False, permanent=True, error="the relay does not offer SMTPUTF8"
    )
    assert handler.received == []


def test_refused_recipients_are_classified_and_the_others_go_through(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder(
        refuse={
            "unknown": "550 5.1.1 <{address}>: Recipient address rejected: User unknown",
            "full": "452 4.2.2 <{address}>: Mailbox full",
            "busy": "421 4.7.0 Too many connections, try again later",
        },
        refuse_data={"Bonjour client 7,": "554 5.7.1 Message refused as spam"},
    )
    _, port = start_server(handler)
    batch = [
        message(1),
        message(2, "unknown.person@example.fr"),
        message(3),
        message(4, "full.box@example.fr"),
        message(5, "busy.server@example.fr"),
        message(6),
        message(7),
        message(8),
    ]
    with SmtpSender(settings(port, connections=1)) as sender:
        results = {r.key: r for r in sender.send(batch)}

    assert [k for k, r in results.items() if r.ok] == [1, 3, 6, 8]
    assert results[2] == SendResult(
        2,
        ok=False,
        permanent=True,
        error="550 at RCPT TO: 5.1.1 <redacted>: Recipient address rejected: User unknown",
    )
    assert not results[4].ok and not results[4].permanent
    assert results[4].error is not None and results[4].error.startswith("452 at RCPT TO")
    assert not results[5].ok and not results[5].permanent  # 421: temporary
    assert (
        results[7].permanent
        and results[7].error == "554 at end of DATA: 5.7.1 Message refused as spam"
    )
    assert all("@" not in (r.error or "") for r in results.values())
    assert sorted(int(got.message["X-Tournesol-Outbox"]) for got in handler.received) == [
        1,
        3,
        6,
        8,
    ]
    assert len(handler.peers) == 2  # the 421 made the sender reconnect


def test_a_connection_closed_by_the_server_is_reopened(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    first = Recorder()
    controller, port = start_server(first)
    with SmtpSender(settings(port, connections=1)) as sender:
        assert all(r.ok for r in sender.send(message(i) for i in range(3)))
        controller.stop()  # the server goes away with our connection open
        second = Recorder()
        start_server(second, port=port)
        results = list(sender.send(message(i) for i in range(3, 6)))
        assert sender.connections_opened == 2
    assert [r.ok for r in results] == [True, True, True]
    assert len(first.received) == 3 and len(second.received) == 3


def test_an_unreachable_relay_gives_temporary_failures_then_stops_the_batch() -> None:
    port = free_port()  # nothing listens there
    sender = SmtpSender(settings(port, connect_attempts=2, timeout=2))
    results = sender.send(message(i) for i in range(10))
    first = next(results)
    assert (first.ok, first.permanent, first.error) == (
        False,
        False,
        "cannot connect to the SMTP relay",
    )
    with pytest.raises(SenderError, match="after 2 attempts"):
        next(results)


def test_the_rate_limit_is_respected(start_server: Callable[..., tuple[Controller, int]]) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    started = time.monotonic()
    with SmtpSender(settings(port, rate_per_second=40)) as sender:
        results = list(sender.send(message(i) for i in range(50)))
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results) and len(handler.received) == 50
    # 50 messages at 40/s with a burst of 4: at least (50 - 4) / 40 = 1.15 s
    assert elapsed >= 1.1


def test_throughput_to_a_local_server(start_server: Callable[..., tuple[Controller, int]]) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    count = 1000
    started = time.perf_counter()
    with SmtpSender(settings(port, messages_per_connection=500)) as sender:
        messages = (message(i, build=render_email) for i in range(count))
        ok = sum(r.ok for r in sender.send(messages))
    rate = count / (time.perf_counter() - started)
    print(f"\n{count} messages rendered and sent to aiosmtpd in this process: {rate:.0f}/s")
    assert ok == count == len(handler.received)
    assert rate > 250  # generous: the server shares this process and its interpreter lock


# --- several connections ----------------------------------------------------------------------


@dataclass
class SlowRecorder(Recorder):
    """A relay that takes ``delay`` seconds to accept each message."""

    delay: float = 0.05

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def test_several_connections_carry_the_messages_once_and_give_results_in_order(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    config = settings(port, connections=4, messages_per_connection=25)
    with SmtpSender(config) as sender:
        results = list(sender.send(message(i, build=render_email) for i in range(200)))
        opened = sender.connections_opened
    assert [r.key for r in results] == list(range(200)) and all(r.ok for r in results)
    keys = Counter(int(got.message["X-Tournesol-Outbox"]) for got in handler.received)
    assert sorted(keys) == list(range(200)) and set(keys.values()) == {1}
    for result in results:  # each result is its own message's
        assert result.provider_id is not None
        assert result.provider_id.startswith(f"<tournesol.{result.key}.")
    per_connection = Counter(got.peer for got in handler.received)
    assert len(per_connection) == opened >= 8
    assert max(per_connection.values()) <= 25


def test_several_connections_wait_for_the_relay_side_by_side(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = SlowRecorder(delay=0.05)
    _, port = start_server(handler)
    count = 40  # one after the other: at least 2 s
    with SmtpSender(settings(port, connections=4)) as sender:
        started = time.monotonic()
        results = list(sender.send(message(i) for i in range(count)))
        elapsed = time.monotonic() - started
    assert all(r.ok for r in results) and len(handler.received) == count
    assert elapsed < count * handler.delay * 0.75, elapsed  # four at a time: about a quarter


def test_the_rate_limit_holds_for_all_connections_together(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    started = time.monotonic()
    with SmtpSender(settings(port, rate_per_second=40, connections=4)) as sender:
        results = list(sender.send(message(i) for i in range(50)))
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results) and len(handler.received) == 50
    assert elapsed >= 1.1  # as with one connection: (50 - 4) / 40 s


def test_an_unreachable_relay_stops_all_connections() -> None:
    port = free_port()  # nothing listens there
    sender = SmtpSender(settings(port, connect_attempts=3, timeout=2, connections=2))
    given: list[SendResult] = []
    with pytest.raises(SenderError, match="after 3 attempts"):
        for result in sender.send(message(i) for i in range(10)):
            given.append(result)
    # two failed connections gave temporary failures, the third stopped the sending; the
    # messages without a result were not sent
    assert len(given) == 2
    assert all(not r.ok and not r.permanent and not r.maybe_sent for r in given)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_relay_that_wants_credentials_stops_all_connections(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder()
    _, port = start_server(
        handler, authenticator=authenticator, auth_required=True, auth_require_tls=False
    )
    with (
        SmtpSender(settings(port, connections=3)) as sender,
        pytest.raises(SenderError, match="requires authentication"),
    ):
        list(sender.send(message(i) for i in range(10)))
    assert handler.received == []


def test_a_caller_that_stops_early_leaves_no_thread_and_no_message_half_sent(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    threads = threading.active_count()
    with SmtpSender(settings(port, connections=3)) as sender:
        results = sender.send(message(i) for i in range(50))
        first = [next(results) for _ in range(5)]
        results.close()
        assert threading.active_count() == threads
        # the messages under way when the caller stopped went through, the others never
        # left; the sender goes on with the same connections
        more = list(sender.send(message(i) for i in range(50, 55)))
    assert [r.key for r in first] == [0, 1, 2, 3, 4] and all(r.ok for r in first + more)
    keys = Counter(int(got.message["X-Tournesol-Outbox"]) for got in handler.received)
    assert set(keys.values()) == {1}
    assert set(range(5)) | set(range(50, 55)) <= set(keys)
    assert len(keys) <= 5 + 3 + 5  # at most one message per connection beyond those given


# --- TLS and authentication ----------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"relay-user",
        b"relay-pass",
    )
    return AuthResult(success=good, handled=False)


def test_starttls_with_authentication(
    start_server: Callable[..., tuple[Controller, int]], certificate: tuple[Path, Path]
) -> None:
    handler = Recorder()
    _, port = start_server(
        handler,
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    config = settings(
        port,
        host="localhost",
        security="starttls",
        ca_file=str(certificate[0]),
        username="relay-user",
        password="relay-pass",
    )
    with SmtpSender(config) as sender:
        results = list(sender.send(message(i) for i in range(5)))
    assert all(r.ok for r in results)
    assert [got.tls for got in handler.received] == [True] * 5


def test_wrong_credentials_stop_the_batch(
    start_server: Callable[..., tuple[Controller, int]], certificate: tuple[Path, Path]
) -> None:
    handler = Recorder()
    _, port = start_server(
        handler,
        tls_context=server_context(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    config = settings(
        port,
        host="localhost",
        security="starttls",
        ca_file=str(certificate[0]),
        username="relay-user",
        password="wrong",
    )
    with SmtpSender(config) as sender, pytest.raises(SenderError, match="credentials") as raised:
        list(sender.send(message(i) for i in range(3)))
    assert "wrong" not in str(raised.value)
    assert handler.received == []


def test_an_untrusted_certificate_stops_the_batch(
    start_server: Callable[..., tuple[Controller, int]], certificate: tuple[Path, Path]
) -> None:
    handler = Recorder()
    _, port = start_server(handler, tls_context=server_context(certificate))
    with (
        SmtpSender(settings(port, host="localhost", security="starttls")) as sender,
        pytest.raises(SenderError, match="certificate"),
    ):
        list(sender.send([message(1)]))
    assert handler.received == []


def test_starttls_asked_of_a_relay_without_it_stops_the_batch(
    start_server: Callable[..., tuple[Controller, int]],
) -> None:
    _, port = start_server(Recorder())
    with (
        SmtpSender(settings(port, security="starttls")) as sender,
        pytest.raises(SenderError, match="STARTTLS"),
    ):
        list(sender.send([message(1)]))


def test_implicit_tls(
    start_server: Callable[..., tuple[Controller, int]], certificate: tuple[Path, Path]
) -> None:
    handler = Recorder()
    _, port = start_server(handler, ssl_context=server_context(certificate))
    config = settings(port, host="localhost", security="tls", ca_file=str(certificate[0]))
    with SmtpSender(config) as sender:
        results = list(sender.send(message(i) for i in range(3)))
    assert all(r.ok for r in results)
    assert len(handler.received) == 3
