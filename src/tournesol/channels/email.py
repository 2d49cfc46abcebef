"""Email over SMTP: building a marketing message, sending a stream of them through a relay, and
reading what comes back (delivery status notifications and abuse complaints).

Building: :func:`render_email` writes a multipart/alternative message straight to its 7-bit
wire form (Message-ID, Date, RFC 8058 one-click unsubscribe headers, ``X-Tournesol-Outbox``
carrying the outbox key to match bounces); :func:`build_email` gives the same message as an
:class:`~email.message.EmailMessage`. Sending: :class:`SmtpSender` sends through a few
connections side by side, each reused for many messages, honours a rate limit and classifies
every refusal. Returned mail:
:func:`parse_bounce` and :func:`parse_complaint`.

The email package's own serialisation costs about a millisecond per message on a modest
machine, which alone would cap a sender near 500 messages a second; rendering the wire form
directly takes a few dozen microseconds, so bulk sends go through :func:`render_email`.
"""

from __future__ import annotations

import base64
import binascii
import queue
import re
import secrets
import smtplib
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import format_datetime, getaddresses, parsedate_to_datetime
from types import TracebackType
from typing import Any, Final, Literal

from tournesol.channels.base import Key, RateLimiter, SenderError, SendResult, redact

OUTBOX_HEADER: Final = "X-Tournesol-Outbox"
"""The header carrying the outbox key of a message; bounces and complaints are matched on it."""

Security = Literal["none", "starttls", "tls"]

_KEY: Final = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_HEADER_NAME: Final = re.compile(r"[!-9;-~]{1,76}")
_LOCAL_PART: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+)*"
)
_DOMAIN: Final = re.compile(
    r"(?=.{4,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9\-]*[A-Za-z0-9]"
)
_ATOM_PHRASE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\- ]+")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MAX_LINE: Final = 78
_FOLD_AT: Final = 78
_RESERVED: Final = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "Reply-To",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        OUTBOX_HEADER,
    )
)
_MESSAGE_ID_KEY: Final = re.compile(r"<tournesol\.([A-Za-z0-9_\-]{1,64})\.[0-9a-f]{16}@")
_OUTBOX_IN_TEXT: Final = re.compile(
    rf"^{OUTBOX_HEADER}:[ \t]*([A-Za-z0-9_\-]{{1,64}})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_ENHANCED: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_SMTP_CODE: Final = re.compile(r"(?<![\d.])([45]\d\d)(?=[ \-])")
_ADDRESS: Final = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"
)
_QUOTED_ORIGINAL: Final = re.compile(
    r"^.*(copy of the (original )?message|below this line|original message|message headers"
    r"|undelivered message|returned message).*$",
    re.IGNORECASE | re.MULTILINE,
)
_BOUNCE_SUBJECT: Final = re.compile(
    r"undeliver|delivery (status notification|failure|has failed)|mail delivery failed"
    r"|failure notice|returned mail|delivery problem|non remis|non distribu|échec de (la )?remise",
    re.IGNORECASE,
)
_DAEMONS: Final = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
_COMPLAINT_TYPES: Final = frozenset({"abuse", "fraud", "virus", "other"})


class _UriListHeader(UnstructuredHeader, BaseHeader):
    """``<uri>, <uri>`` (List-Unsubscribe): folded after the commas, never RFC 2047-encoded
    (the generic folder would encode a URL longer than a line, which readers cannot use)."""

    def fold(self, *, policy: Any) -> str:
        items = [item.strip() for item in re.split(r"(?<=>)\s*,", str(self)) if item.strip()]
        separator = "," + str(policy.linesep) + " "
        return f"{self.name}: {separator.join(items)}{policy.linesep}"


def _make_policy() -> email_policy.EmailPolicy[EmailMessage]:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", _UriListHeader)
    return email_policy.SMTP.clone(header_factory=registry, refold_source="none")


POLICY: Final = _make_policy()
"""The email policy of built messages: CRLF line ends, 7-bit headers (RFC 2047 words), headers
read from a message kept as they were folded."""
_POLICY_UTF8: Final = POLICY.clone(utf8=True)


@dataclass(kw_only=True)
class SmtpSettings:
    """How to reach the SMTP relay and who the sender is.

    ``security``: ``"none"`` (plain, port 25 or a local relay), ``"starttls"`` (upgrade, port
    587) or ``"tls"`` (implicit TLS, port 465). ``ca_file`` is a CA bundle trusted instead of the
    system's (a private relay's certificate). ``messages_per_connection`` messages go through
    one connection before it is closed and opened again; ``connections`` connections send side
    by side (1 to 32: more pay when the relay is far, each waiting for its replies while the
    others go); ``rate_per_second`` caps the sending rate of them all (None: no cap).
    After ``connect_attempts`` failed connections in a row, sending stops with
    :class:`SenderError`. Invalid values raise ``ValueError`` at construction.

    >>> SmtpSettings(from_address="news@example.fr", port=1025).security
    'none'
    """

    from_address: str
    host: str = "localhost"
    port: int = 25
    security: Security = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    messages_per_connection: int = 100
    connections: int = 2
    rate_per_second: float | None = None
    from_name: str | None = None
    reply_to: str | None = None
    list_unsubscribe_mailto: str | None = None
    local_hostname: str | None = None
    ca_file: str | None = None
    connect_attempts: int = 3

    def __post_init__(self) -> None:
        if self.security not in ("none", "starttls", "tls"):
            raise ValueError("security must be 'none', 'starttls' or 'tls'")
        if not 0 < self.port < 65536:
            raise ValueError("port must be between 1 and 65535")
        if not self.host or _has_newline(self.host):
            raise ValueError("host must be a host name or address")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        if self.messages_per_connection < 1:
            raise ValueError("messages_per_connection must be at least 1")
        if not 1 <= self.connections <= 32:
            raise ValueError("connections must be between 1 and 32")
        if self.rate_per_second is not None and self.rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive or None")
        if self.connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        _check_address(self.from_address, "from_address")
        if self.reply_to is not None:
            _check_address(self.reply_to, "reply_to")
        if self.list_unsubscribe_mailto is not None:
            _mailto(self.list_unsubscribe_mailto)
        if self.from_name is not None and _has_newline(self.from_name):
            raise ValueError("from_name must not contain line breaks")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A message in its wire form, ready for :class:`SmtpSender`: the bytes (CRLF line ends,
    7-bit), the envelope recipients and the Message-ID. This is what :func:`render_email`
    returns; sending it costs no MIME work (an :class:`EmailMessage` is serialised again by the
    email package, about a millisecond per message). :meth:`to_message` gives the same message
    as an :class:`EmailMessage` for reading or previewing.
    """

    recipients: tuple[str, ...]
    data: bytes
    message_id: str

    def to_message(self) -> EmailMessage:
        """This message parsed into an :class:`EmailMessage` (with :data:`POLICY`)."""
        parsed = BytesParser(policy=POLICY).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


def render_email(
    *,
    key: Key,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    from_address: str,
    from_name: str | None = None,
    reply_to: str | None = None,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    message_id_domain: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> RenderedEmail:
    """A ready-to-send message for recipient ``to`` in wire form; the fast path for bulk sends.
    Takes the same arguments as :func:`build_email`, which describes them.

    >>> rendered = render_email(key=42, to="ana@example.fr", subject="Été", text="Bonjour",
    ...                         from_address="news@example.fr")
    >>> rendered.recipients, rendered.data.isascii(), b"X-Tournesol-Outbox: 42" in rendered.data
    (('ana@example.fr',), True, True)
    """
    key_text = _check_key(key)
    recipient = _check_address(to, "to")
    sender = _check_address(from_address, "from_address")
    for field, value in (("subject", subject), ("from_name", from_name)):
        if value is not None:
            _check_header_text(field, value)
    for field, value in (("text", text), ("html", html)):
        if value is not None and (not isinstance(value, str) or not _is_unicode(value)):
            raise ValueError(f"{field} must be valid Unicode text")
    domain = message_id_domain or sender.rpartition("@")[2]
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?", domain):
        raise ValueError("message_id_domain must be a plain ASCII domain name")
    message_id = f"<tournesol.{key_text}.{secrets.token_hex(8)}@{domain}>"

    lines = [_mailbox_header("From", from_name, sender), f"To: {recipient}"]
    if reply_to is not None:
        lines.append(f"Reply-To: {_check_address(reply_to, 'reply_to')}")
    lines.append(_unstructured_header("Subject", subject))
    lines.append(f"Date: {format_datetime(datetime.now(UTC))}")
    lines.append(f"Message-ID: {message_id}")
    entries: list[str] = []
    if unsubscribe_url is not None:
        entries.append(f"<{_unsubscribe_http(unsubscribe_url)}>")
    if unsubscribe_mailto is not None:
        entries.append(f"<{_mailto(unsubscribe_mailto)}>")
    if entries:
        lines.append(_list_header("List-Unsubscribe", entries))
    if unsubscribe_url is not None:
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    lines.append(f"{OUTBOX_HEADER}: {key_text}")
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError("a custom header name must be printable ASCII without a colon")
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name} is set by build_email and cannot be replaced")
        _check_header_text(f"header {name}", value)
        lines.append(_unstructured_header(name, value))
    lines.append("MIME-Version: 1.0")
    plain = _text_part("plain", text)
    if html is None:
        lines.extend(plain)
    else:
        boundary = f"=_tournesol_{secrets.token_hex(12)}"  # "=_" never occurs in QP bodies
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        lines.append("")
        # the line break before a boundary belongs to the boundary: each body keeps its own
        lines.append(f"--{boundary}")
        lines.extend(plain)
        lines.append("")
        lines.append(f"--{boundary}")
        lines.extend(_text_part("html", html))
        lines.append("")
        lines.append(f"--{boundary}--")
    lines.append("")
    return RenderedEmail((recipient,), "\r\n".join(lines).encode("ascii"), message_id)


def build_email(
    *,
    key: Key,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    from_address: str,
    from_name: str | None = None,
    reply_to: str | None = None,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    message_id_domain: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """A ready-to-send message for recipient ``to``: text and, when given, HTML alternatives.

    ``key`` (the outbox id; letters, digits, ``_`` or ``-``) goes into ``X-Tournesol-Outbox`` and
    into the Message-ID (``<tournesol.{key}.{random}@{message_id_domain}>``, the sender's domain
    by default), so a bounce that returns only the Message-ID still finds its row. With
    ``unsubscribe_url`` (http(s); RFC 8058 wants https in production) the message carries
    ``List-Unsubscribe: <url>`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``;
    ``unsubscribe_mailto`` (an address or ``mailto:`` URI) adds a mailto entry. Names, subjects
    and custom header values may hold any Unicode (RFC 2047 encoded-words, lines within 78
    characters); bodies go quoted-printable in UTF-8, so the message is 7-bit. Addresses are
    plain ``local@domain`` with an ASCII local part (a Unicode domain is sent in its IDNA
    form). ``headers`` adds custom headers, which may not replace the ones set here. A line
    break in any header value, an invalid address or a bad key raises ``ValueError`` naming
    the field, never the value. For bulk sends use :func:`render_email` (same arguments),
    which skips the email package's costly serialisation.

    >>> msg = build_email(key=42, to="ana@example.fr", subject="Été", text="Bonjour",
    ...                   from_address="news@example.fr", unsubscribe_url="https://t.fr/u/x")
    >>> msg["List-Unsubscribe"], msg["X-Tournesol-Outbox"], msg["Subject"]
    ('<https://t.fr/u/x>', '42', 'Été')
    """
    return render_email(
        key=key,
        to=to,
        subject=subject,
        text=text,
        html=html,
        from_address=from_address,
        from_name=from_name,
        reply_to=reply_to,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
        message_id_domain=message_id_domain,
        headers=headers,
    ).to_message()


class SmtpSender:
    """Sends ``(key, message)`` pairs through one SMTP relay; a message is a
    :class:`RenderedEmail` (the fast path) or any :class:`~email.message.EmailMessage`.

    ``settings.connections`` connections carry the messages side by side (one thread each,
    started by :meth:`send` and stopped before it returns), so that the relay's replies to one
    are awaited while others go: each connection carries up to
    ``settings.messages_per_connection`` messages, then is closed and reopened; a connection
    found closed when a message starts is reopened once. With one connection, messages go one
    after the other from the calling thread. The rate limit holds for all connections
    together. The envelope sender is ``settings.from_address``; recipients are those of a
    :class:`RenderedEmail`, or the To, Cc and Bcc addresses of an :class:`EmailMessage` (Bcc is
    removed from it, and it gets a Message-ID if it has none). A message is all-or-nothing: if
    any recipient is refused, nothing is sent. Refusals are classified: 5xx permanent, 4xx
    temporary; connection failures and timeouts are temporary. A connection lost after the
    message data went out is reported as temporary too, although the relay may have kept it
    (at least once).
    Refused credentials, a certificate that does not verify, a relay without STARTTLS when it
    is asked for, or ``connect_attempts`` failed connections in a row (on any connection)
    raise :class:`SenderError`. The ``provider_id`` of a result is the message's Message-ID.

    >>> settings = SmtpSettings(from_address="news@example.fr", port=1025)
    >>> with SmtpSender(settings) as sender:  # doctest: +SKIP
    ...     for result in sender.send((row.id, render_email(...)) for row in rows):
    ...         record(result)
    """

    def __init__(self, settings: SmtpSettings, *, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self._limiter = limiter or RateLimiter(settings.rate_per_second)
        self._lanes = [_Lane() for _ in range(settings.connections)]
        self._lock = threading.Lock()  # the counters below, shared by the connections
        self._failed_connects = 0
        self.connections_opened = 0

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send(
        self, messages: Iterable[tuple[Key, EmailMessage | RenderedEmail]]
    ) -> Iterator[SendResult]:
        """One :class:`SendResult` per ``(key, message)``, in order, pulled lazily: with
        several connections, up to one message per connection is pulled ahead of the results
        given. When :class:`SenderError` stops the sending, the results of the messages that
        went meanwhile on other connections come first; the messages without a result were
        not sent. Messages pulled and not answered when the caller stops early (an exception,
        ``close()`` on the iterator) are finished first, their results dropped."""
        if len(self._lanes) == 1:
            lane = self._lanes[0]
            for key, message in messages:
                self._limiter.acquire()
                yield self._send_one(lane, key, message)
            return
        yield from self._send_side_by_side(messages)

    def close(self) -> None:
        """Say QUIT and drop the connections that are open."""
        for lane in self._lanes:
            self._close(lane)

    def _send_side_by_side(
        self, messages: Iterable[tuple[Key, EmailMessage | RenderedEmail]]
    ) -> Iterator[SendResult]:
        jobs: queue.SimpleQueue[tuple[int, Key, EmailMessage | RenderedEmail] | None]
        jobs = queue.SimpleQueue()
        done: queue.SimpleQueue[tuple[int, SendResult | BaseException]] = queue.SimpleQueue()

        def work(lane: _Lane) -> None:
            while (job := jobs.get()) is not None:
                number, key, message = job
                try:
                    outcome: SendResult | BaseException = self._send_one(lane, key, message)
                except BaseException as exc:  # handed to the caller's thread
                    outcome = exc
                done.put((number, outcome))

        workers = [
            threading.Thread(target=work, args=(lane,), name=f"smtp-{i}", daemon=True)
            for i, lane in enumerate(self._lanes)
        ]
        for worker in workers:
            worker.start()
        pending = iter(messages)
        results: dict[int, SendResult | None] = {}  # None: stopped by an exception
        pulled = answered = given = 0
        error: BaseException | None = None
        try:
            while True:
                while error is None and pulled - answered < len(workers):
                    try:
                        key, message = next(pending)
                    except StopIteration:
                        break
                    self._limiter.acquire()
                    jobs.put((pulled, key, message))
                    pulled += 1
                if pulled == answered:
                    break
                number, outcome = done.get()
                answered += 1
                if isinstance(outcome, SendResult):
                    results[number] = outcome
                else:
                    results[number] = None
                    # a SenderError says its message was not sent; anything else may hide a
                    # message that left: that one is raised
                    if error is None or (
                        isinstance(error, SenderError) and not isinstance(outcome, SenderError)
                    ):
                        error = outcome
                while given in results:
                    result = results.pop(given)
                    given += 1
                    if result is not None:
                        yield result
        finally:
            while answered < pulled:  # the caller stopped early: finish what is under way
                done.get()
                answered += 1
            for _ in workers:
                jobs.put(None)
            for worker in workers:
                worker.join()
        if error is not None:
            raise error

    def _send_one(self, lane: _Lane, key: Key, message: EmailMessage | RenderedEmail) -> SendResult:
        if isinstance(message, RenderedEmail):
            prepared: SendResult | tuple[list[str], bytes, list[str], str] = (
                list(message.recipients),
                message.data,
                [] if message.data.isascii() else ["BODY=8BITMIME"],
                message.message_id,
            )
        else:
            prepared = self._prepare(key, message)
        if isinstance(prepared, SendResult):
            return prepared
        recipients, data, options, message_id = prepared
        plain = isinstance(message, RenderedEmail)  # its addresses were checked when built
        for attempt in (1, 2):
            fresh = lane.smtp is None
            smtp = self._connection(lane)
            if smtp is None:
                return SendResult.failed(key, "cannot connect to the SMTP relay", permanent=False)
            try:
                result = self._transaction(
                    lane, smtp, key, recipients, data, options, message_id, plain=plain
                )
            except _StaleConnection:
                self._drop(lane)
                if attempt == 1 and not fresh:
                    continue
                return SendResult.failed(key, "SMTP connection lost", permanent=False)
            lane.sent += 1
            if lane.smtp is not None and lane.sent >= self.settings.messages_per_connection:
                self._close(lane)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _prepare(
        self, key: Key, message: EmailMessage
    ) -> SendResult | tuple[list[str], bytes, list[str], str]:
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
        recipients = [address for _, address in getaddresses(fields) if address]
        if not recipients:
            return SendResult.failed(key, "message has no valid recipient", permanent=True)
        if "Bcc" in message:
            del message["Bcc"]
        if message["Message-ID"] is None:
            domain = self.settings.from_address.rpartition("@")[2]
            message["Message-ID"] = f"<{secrets.token_hex(12)}@{domain}>"
        message_id = str(message["Message-ID"])
        international = not all(a.isascii() for a in [*recipients, self.settings.from_address])
        try:
            data = message.as_bytes(policy=_POLICY_UTF8 if international else POLICY)
        except (ValueError, TypeError, UnicodeError, LookupError):
            return SendResult.failed(key, "message cannot be serialised", permanent=True)
        options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
        if not international and not data.isascii():
            options = ["BODY=8BITMIME"]
        return recipients, data, options, message_id

    def _transaction(
        self,
        lane: _Lane,
        smtp: smtplib.SMTP,
        key: Key,
        recipients: list[str],
        data: bytes,
        options: list[str],
        message_id: str,
        *,
        plain: bool,
    ) -> SendResult:
        for option, extension in (("SMTPUTF8", "smtputf8"), ("BODY=8BITMIME", "8bitmime")):
            if option in options and not smtp.has_extn(extension):
                return SendResult.failed(
                    key, f"the relay does not offer {extension.upper()}", permanent=True
                )
        try:
            if plain and "SMTPUTF8" not in options:
                # what smtplib's mail() sends for a plain address, without its costly parsing
                listed = " " + " ".join(options) if options and smtp.does_esmtp else ""
                smtp.putcmd("mail", f"from:<{self.settings.from_address}>{listed}")
                code, reply = smtp.getreply()
            else:
                code, reply = smtp.mail(self.settings.from_address, options)
        except (smtplib.SMTPServerDisconnected, OSError):
            raise _StaleConnection from None
        if code == 530:
            raise SenderError("the SMTP relay requires authentication (530)")
        if code != 250:
            return self._refused(lane, smtp, key, "MAIL FROM", code, reply)
        try:
            for address in recipients:
                if plain:
                    smtp.putcmd("rcpt", f"to:<{address}>")
                    code, reply = smtp.getreply()
                else:
                    code, reply = smtp.rcpt(address)
                if code not in (250, 251):
                    return self._refused(lane, smtp, key, "RCPT TO", code, reply)
        except (smtplib.SMTPServerDisconnected, OSError):
            self._drop(lane)
            return SendResult.failed(key, "SMTP connection lost before DATA", permanent=False)
        try:
            code, reply = smtp.data(data)
        except smtplib.SMTPDataError as exc:
            return self._refused(lane, smtp, key, "DATA", exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError):
            self._drop(lane)
            return SendResult.failed(
                key,
                "SMTP connection lost during DATA; the relay may have kept it",
                permanent=False,
                maybe_sent=True,
            )
        if code != 250:
            return self._refused(lane, smtp, key, "end of DATA", code, reply, reset=False)
        return SendResult.accepted(key, message_id)

    def _refused(
        self,
        lane: _Lane,
        smtp: smtplib.SMTP,
        key: Key,
        stage: str,
        code: int,
        reply: bytes | str,
        *,
        reset: bool = True,
    ) -> SendResult:
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        if code == 421 or code < 0:
            self._drop(lane)
        elif reset:
            try:
                smtp.rset()
            except (smtplib.SMTPException, OSError):
                self._drop(lane)
        return SendResult.failed(key, f"{code} at {stage}: {text}", permanent=500 <= code < 600)

    def _connection(self, lane: _Lane) -> smtplib.SMTP | None:
        if lane.smtp is not None:
            return lane.smtp
        try:
            opened = self._open()
        except SenderError:
            raise
        except (smtplib.SMTPException, OSError):
            with self._lock:
                self._failed_connects += 1
                failed = self._failed_connects
            if failed >= self.settings.connect_attempts:
                raise SenderError(
                    f"cannot connect to the SMTP relay after {failed} attempts"
                ) from None
            return None
        with self._lock:
            self._failed_connects = 0
            self.connections_opened += 1
        lane.smtp, lane.sent = opened, 0
        return opened

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file) if s.security != "none" else None
        smtp: smtplib.SMTP
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host,
                    s.port,
                    local_hostname=s.local_hostname,
                    timeout=s.timeout,
                    context=context,
                )
            else:
                smtp = smtplib.SMTP(
                    s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout
                )
        except ssl.SSLCertVerificationError:
            raise SenderError("the SMTP relay's certificate does not verify") from None
        try:
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username is not None and s.password is not None:
                smtp.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise SenderError(f"the SMTP relay refused the credentials ({exc.smtp_code})") from None
        except smtplib.SMTPNotSupportedError:
            smtp.close()
            raise SenderError("the SMTP relay does not support STARTTLS or AUTH") from None
        except ssl.SSLCertVerificationError:
            smtp.close()
            raise SenderError("the SMTP relay's certificate does not verify") from None
        except (smtplib.SMTPException, OSError):
            smtp.close()
            raise
        return smtp

    def _drop(self, lane: _Lane) -> None:
        smtp, lane.smtp, lane.sent = lane.smtp, None, 0
        if smtp is not None:
            smtp.close()

    def _close(self, lane: _Lane) -> None:
        """Say QUIT and drop the lane's connection, if one is open."""
        smtp, lane.smtp, lane.sent = lane.smtp, None, 0
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


@dataclass
class _Lane:
    """One connection to the relay (None when closed) and the messages it carried."""

    smtp: smtplib.SMTP | None = None
    sent: int = 0


class _StaleConnection(Exception):
    """The connection was closed before the transaction started: safe to try again."""


# ---------------------------------------------------------------------------------------------
# Returned mail: bounces (RFC 3464) and complaints (RFC 5965)


@dataclass(frozen=True, slots=True)
class Bounce:
    """A delivery failure read from a returned mail.

    ``outbox_key`` is the ``X-Tournesol-Outbox`` of the returned message (or the key read from
    its Message-ID), as text; ``recipient`` the address that failed; ``hard`` is True for a
    permanent failure (status 5.x.x); ``status`` the enhanced status code (``"5.1.1"``) or,
    when only that is known, the SMTP reply code (``"550"``); ``diagnostic`` the remote server's
    text with addresses redacted; ``action`` ``"failed"`` or ``"delayed"`` (a warning, not final).
    """

    outbox_key: str | None
    recipient: str | None
    hard: bool
    status: str | None
    diagnostic: str | None
    action: str = "failed"


@dataclass(frozen=True, slots=True)
class Complaint:
    """A spam complaint (ARF feedback report, RFC 5965) about one of our messages."""

    outbox_key: str | None
    recipient: str | None
    feedback_type: str
    user_agent: str | None
    arrival_date: datetime | None


def parse_bounce(raw: bytes) -> Bounce | None:
    """The bounce described by returned mail ``raw``, or None when it is not a bounce.

    Reads RFC 3464 delivery status notifications (``multipart/report;
    report-type=delivery-status``), taking the first recipient whose action is ``failed``
    (else ``delayed``); a report that only says delivered, relayed or expanded gives None.
    Other mail from a mailer daemon, or with a bounce-like subject (Undelivered, failure notice,
    Non remis...), is read best-effort: status codes and the first address in the text before
    the copy of the original. ARF complaints give None (see :func:`parse_complaint`).

    >>> parse_bounce(b"From: ana@example.fr\\r\\nSubject: Hello\\r\\n\\r\\nHi") is None
    True
    """
    message = BytesParser(policy=email_policy.default).parsebytes(raw)
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return None
    status_part = _first_part(message, "message/delivery-status")
    if status_part is not None:
        return _bounce_from_dsn(message, status_part, raw)
    if not _looks_like_bounce(message):
        return None
    return _bounce_from_text(message, raw)


def parse_complaint(raw: bytes) -> Complaint | None:
    """The complaint in ARF report ``raw`` (``multipart/report; report-type=feedback-report``),
    or None when ``raw`` is not one or reports something other than a complaint (``not-spam``,
    ``auth-failure``).

    The recipient is the report's ``Original-Rcpt-To`` or else the To of the returned message
    (providers often redact both); the outbox key comes from the returned message's headers.
    """
    message = BytesParser(policy=email_policy.default).parsebytes(raw)
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    if message.get_content_type() != "multipart/report" or report_type != "feedback-report":
        return None
    report = _first_part(message, "message/feedback-report")
    if report is None:
        return None
    fields = _fields(report)[0] if _fields(report) else {}
    feedback_type = fields.get("feedback-type", "").strip().lower()
    if feedback_type not in _COMPLAINT_TYPES:
        return None
    original = _original_headers(message)
    recipient = _address_in(fields.get("original-rcpt-to", ""))
    if recipient is None and original is not None:
        recipient = _address_in(str(original.get("To", "")))
    arrival: datetime | None = None
    if fields.get("arrival-date"):
        try:
            arrival = parsedate_to_datetime(fields["arrival-date"])
        except (TypeError, ValueError):
            arrival = None
    return Complaint(
        outbox_key=_outbox_key(message, raw),
        recipient=recipient,
        feedback_type=feedback_type,
        user_agent=fields.get("user-agent") or None,
        arrival_date=arrival,
    )


def _bounce_from_dsn(message: Message, status_part: Message, raw: bytes) -> Bounce | None:
    blocks = _fields(status_part)
    recipients = [b for b in blocks[1:] if "action" in b or "final-recipient" in b]
    if not recipients:
        recipients = [b for b in blocks if "action" in b]
    chosen = next((b for b in recipients if b.get("action", "").lower() == "failed"), None)
    if chosen is None:
        chosen = next((b for b in recipients if b.get("action", "").lower() == "delayed"), None)
    if chosen is None:
        return None
    action = chosen.get("action", "").strip().lower()
    diagnostic_raw = chosen.get("diagnostic-code", "").partition(";")[2].strip()
    status = _status_of(chosen.get("status", "")) or _status_of(diagnostic_raw)
    code = _SMTP_CODE.search(diagnostic_raw + " ")
    if status is None and code is not None:
        status = code.group(1)
    hard = action == "failed" and (status is None or status.startswith("5"))
    recipient = _address_in(chosen.get("original-recipient", "").partition(";")[2])
    if recipient is None:
        recipient = _address_in(chosen.get("final-recipient", "").partition(";")[2])
    return Bounce(
        outbox_key=_outbox_key(message, raw),
        recipient=recipient,
        hard=hard,
        status=status,
        diagnostic=redact(diagnostic_raw) or None,
        action=action,
    )


def _bounce_from_text(message: Message, raw: bytes) -> Bounce:
    text = _body_text(message)
    cut = _QUOTED_ORIGINAL.search(text)
    head = text[: cut.start()] if cut else text
    ours = {a.lower() for _, a in getaddresses([str(v) for v in message.get_all("To", [])])}
    recipient = next(
        (
            a
            for a in _ADDRESS.findall(head)
            if a.lower() not in ours and not a.lower().startswith(_DAEMONS)
        ),
        None,
    )
    status = _status_of(head)
    code = _SMTP_CODE.search(head)
    if status is None and code is not None:
        status = code.group(1)
    permanent = re.search(r"permanent (error|failure)|permanently", head, re.IGNORECASE)
    temporary = re.search(r"temporar|delayed|will (keep )?retry", head, re.IGNORECASE)
    hard = status.startswith("5") if status is not None else bool(permanent) and not temporary
    diagnostic = None
    if code is not None:
        line_end = head.find("\n", code.start())
        diagnostic = redact(head[code.start() : line_end if line_end >= 0 else None]) or None
    return Bounce(
        outbox_key=_outbox_key(message, raw),
        recipient=recipient,
        hard=hard,
        status=status,
        diagnostic=diagnostic,
        action="failed" if hard or not temporary else "delayed",
    )


def _looks_like_bounce(message: Message) -> bool:
    sender = " ".join(str(v) for v in message.get_all("From", [])).lower()
    if any(daemon in sender for daemon in _DAEMONS):
        return True
    if str(message.get("Return-Path", "")).strip() == "<>":
        return True
    return bool(_BOUNCE_SUBJECT.search(str(message.get("Subject", ""))))


def _first_part(message: Message, content_type: str) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _fields(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status or feedback-report part, names lower-cased."""
    payload = part.get_payload()
    blocks: list[Message] = []
    if isinstance(payload, list):
        blocks = [p for p in payload if isinstance(p, Message)]
    else:
        body = part.get_payload(decode=True)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(payload)
        for chunk in re.split(r"\r?\n[ \t]*\r?\n", text.strip()):
            blocks.append(HeaderParser(policy=email_policy.compat32).parsestr(chunk))
    result = []
    for block in blocks:
        fields: dict[str, str] = {}
        for name, value in block.items():
            fields.setdefault(name.lower(), " ".join(str(value).split()))
        result.append(fields)
    return result


def _original_headers(message: Message) -> Message | None:
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if content_type in ("text/rfc822-headers", "text/global-headers"):
            body = part.get_payload(decode=True)
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
            return HeaderParser(policy=email_policy.compat32).parsestr(text)
    return None


def _outbox_key(message: Message, raw: bytes) -> str | None:
    original = _original_headers(message)
    if original is not None:
        value = str(original.get(OUTBOX_HEADER, "")).strip()
        if _KEY.fullmatch(value):
            return value
        found = _MESSAGE_ID_KEY.search(str(original.get("Message-ID", "")))
        if found:
            return found.group(1)
    text = raw.decode("utf-8", "replace")
    in_text = _OUTBOX_IN_TEXT.search(text)
    if in_text:
        return in_text.group(1)
    found = _MESSAGE_ID_KEY.search(text)
    return found.group(1) if found else None


def _body_text(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    texts.append(body.decode(charset, "replace"))
                except LookupError:
                    texts.append(body.decode("utf-8", "replace"))
    return "\n".join(texts)


def _status_of(text: str) -> str | None:
    found = _ENHANCED.search(text)
    return ".".join(found.groups()) if found else None


def _address_in(text: str) -> str | None:
    found = _ADDRESS.search(text)
    return found.group(0) if found else None


# ---------------------------------------------------------------------------------------------
# Checks and encodings shared by the builder and the settings


def _has_newline(value: str) -> bool:
    return "\r" in value or "\n" in value or "\x00" in value


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _check_header_text(field: str, value: str) -> None:
    if not isinstance(value, str) or not _is_unicode(value):
        raise ValueError(f"{field} must be valid Unicode text")
    if _has_newline(value):
        raise ValueError(f"{field} must not contain line breaks")


def _check_key(key: Key) -> str:
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise ValueError("key must be an int or a str")
    text = str(key)
    if not _KEY.fullmatch(text):
        raise ValueError("key must be 1-64 letters, digits, '_' or '-'")
    return text


def _check_address(value: str, field: str) -> str:
    """``value`` as a plain ``local@domain`` address, its domain in IDNA (ASCII) form."""
    if not isinstance(value, str):
        raise ValueError(f"{field} is not a valid email address")
    local, at, domain = value.strip().rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or len(local) > 64:
        raise ValueError(f"{field} is not a valid email address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{field} is not a valid email address") from None
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{field} is not a valid email address")
    return f"{local}@{domain}"


def _unsubscribe_http(url: str) -> str:
    if not isinstance(url, str) or not re.fullmatch(r"https?://[!-~]+", url, re.IGNORECASE):
        raise ValueError("unsubscribe_url must be an absolute http(s) URL in printable ASCII")
    if "<" in url or ">" in url:
        raise ValueError("unsubscribe_url must not contain < or >")
    return url


def _mailto(value: str) -> str:
    if not isinstance(value, str) or _has_newline(value) or re.search(r"[\s<>]", value):
        raise ValueError("unsubscribe mailto must be an address or mailto: URI without spaces")
    uri = value if value.lower().startswith("mailto:") else f"mailto:{value}"
    address, _, query = uri[len("mailto:") :].partition("?")
    checked = _check_address(address, "unsubscribe mailto")
    if not uri.isascii() and query:
        raise ValueError("unsubscribe mailto must be printable ASCII")
    return f"mailto:{checked}" + (f"?{query}" if query else "")


def _needs_encoding(value: str) -> bool:
    return not value.isascii() or "=?" in value or bool(_CONTROL.search(value))


def _encoded_words(text: str, first_room: int) -> list[str]:
    """``text`` as RFC 2047 base64 encoded-words: the first fits ``first_room`` characters, the
    others a continuation line (75); no character is split between two words."""
    words: list[str] = []
    chunk = bytearray()
    room = first_room
    for char in text:
        data = char.encode("utf-8")
        if chunk and 12 + 4 * -(-(len(chunk) + len(data)) // 3) > room:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk = bytearray()
            room = _MAX_LINE - 3
        chunk += data
    words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return words


def _unstructured_header(name: str, value: str) -> str:
    """``Name: value`` folded within 78 characters where spaces allow, encoded when needed."""
    if _needs_encoding(value):
        room = _MAX_LINE - 2 - len(name) - 2
        if room < 20:
            return f"{name}:\r\n " + "\r\n ".join(_encoded_words(value, _MAX_LINE - 3))
        return f"{name}: " + "\r\n ".join(_encoded_words(value, room))
    lines: list[str] = []
    line = f"{name}:"
    for token in re.findall(r" *[^ ]+| +$", " " + value if value else ""):
        if len(line) + len(token) > _FOLD_AT and line != f"{name}:" and token.startswith(" "):
            lines.append(line)
            line = ""
        line += token
    lines.append(line)
    return "\r\n".join(lines)


def _mailbox_header(name: str, display_name: str | None, address: str) -> str:
    """``Name: display name <address>``; the name quoted or encoded as it requires."""
    if not display_name:
        return f"{name}: {address}"
    if _needs_encoding(display_name):
        words = _encoded_words(display_name, _MAX_LINE - 2 - len(name) - 2)
        last = words[-1] + f" <{address}>"
        if len(last) + 1 > _FOLD_AT:
            words.append(f"<{address}>")
        else:
            words[-1] = last
        return f"{name}: " + "\r\n ".join(words)
    if _ATOM_PHRASE.fullmatch(display_name):
        return f"{name}: {display_name} <{address}>"
    quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}: "{quoted}" <{address}>'


def _list_header(name: str, entries: list[str]) -> str:
    line = f"{name}: {entries[0]}"
    lines: list[str] = []
    for entry in entries[1:]:
        if len(line) + 2 + len(entry) > _FOLD_AT:
            lines.append(line + ",")
            line = f" {entry}"
        else:
            line += f", {entry}"
    lines.append(line)
    return "\r\n".join(lines)


def _text_part(subtype: str, body: str) -> list[str]:
    """The header lines, blank line and quoted-printable UTF-8 body of a text part."""
    data = body.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    return [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        encoded.decode("ascii").replace("\n", "\r\n").removesuffix("\r\n"),
    ]
