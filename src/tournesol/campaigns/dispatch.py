"""The dispatcher: moves outbox rows from ``planned`` to ``sent`` (or ``failed``) through the
channels, and takes back the rows of dispatchers that died.

A run (:func:`dispatch`) owns its transactions:

1. :func:`recover` takes back the ``sending`` rows of dead dispatchers (below);
2. the settings of every channel with due rows are checked (``SetupError`` before any claim);
3. e-mail and SMS: batches of due rows (``state='planned' AND send_after <= now``, in
   ``send_after, id`` order) are *claimed* in one short transaction each (``sending``,
   ``claimed_by``, ``claimed_at``, ``attempts + 1``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
   so that two dispatchers never claim the same row; SQLite has one writer). The same
   transaction re-checks what may have changed since planning (customer erased or merged,
   address suppressed, consent withdrawn: the row is ``cancelled``) and loads the
   recipients' fields and, for a campaign with A/B variants, each target's variant (its
   ``campaign_target`` row), whose message is the one rendered. Then, window by window
   (100 messages, or half a second's worth at the sender's rate limit), the messages are
   rendered, *armed* (their ``provider_id`` is written before they leave: the e-mail's
   Message-ID; a pending marker for an SMS) in the same transaction as the results of the
   previous window, and handed to the sender. A window goes in a thread of its own (the
   sender may use several connections) while the next one is claimed and rendered; the
   next is armed only once the window before it is back.
   Results are written every ~100 messages or 0.5 s: ``sent`` with the provider's id and an
   ``email_sent``/``sms_sent`` interaction, ``failed`` with the redacted error and an
   ``email_failed``/``sms_failed`` interaction, or, for a temporary failure, back to
   ``planned`` after a backoff (1 min, 5 min, 30 min, 2 h; ``failed`` at the fifth attempt
   or when the retry would fall after the campaign's end);
4. postal mail: one print run per campaign (``campaign_output_dir/postal/<code>-<run>``: a
   PDF per letter, a manifest, then the print file); the rows are armed with the run's
   folder before the print file is written, then marked ``sent`` (``letter_sent``);
5. telephone: one call list per campaign (``campaign_output_dir/phone/<code>-<run>.csv``,
   written as ``.partial`` and renamed once complete); rows armed, then ``sent``
   (``call_listed``);
6. running campaigns with nothing left to send become ``done`` (:func:`finish_campaigns`).

A relay that is down or refuses the credentials (``SenderError``), or a disk that fails,
stops the run: the results so far are written, the rows claimed but not handed over go back
to ``planned`` with their attempt count unchanged, and :class:`DispatchStopped` says what to
fix. Memory stays flat: one batch of rows at a time, senders pull messages from generators.

The honest guarantee. SMTP has no idempotency key (nor has the SMS API): a message the relay
accepted just before a crash, whose answer was not yet written, cannot be known as sent. A
dispatcher killed mid-run leaves its rows in ``sending``; :func:`recover` then puts the rows
it had not armed back to ``planned`` (they never left), and turns the armed ones (handed, or
about to be) into ``in_doubt``: they are **never sent again automatically** (never twice),
and nothing is silently lost: they are counted and listed, the e-mail's Message-ID kept to
look it up in the relay's logs, and :func:`requeue_in_doubt` is the operator's decision (it
may send twice). The window of doubt is one window of messages: at most 100, or half a
second's worth at the sender's rate. Likewise, a message whose sender reports a temporary
failure after the data went out (an SMTP connection lost during DATA, an SMS provider that
timed out) is left ``in_doubt`` rather than retried.

Keys. The outbox *id* identifies a message outside: ``X-Tournesol-Outbox`` and the Message-ID
of an e-mail, the reference printed on a letter, the ``outbox_key`` column of a call list.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Table,
    and_,
    any_,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from tournesol.campaigns import rules
from tournesol.campaigns.models import Campaign, CampaignMessage, CampaignTarget, Outbox
from tournesol.campaigns.service import SUPPRESSION_REASONS
from tournesol.campaigns.setup import (
    SetupError,
    link_signer,
    postal_sender_lines,
    sms_settings,
    smtp_settings,
    webhook_settings,
)
from tournesol.campaigns.templates import (
    MessageRenderer,
    TemplateError,
    fields_used,
    personal_context,
)
from tournesol.channels import links
from tournesol.channels.base import SenderError, SendResult
from tournesol.channels.callcenter import CallRow, write_call_list
from tournesol.channels.email import RenderedEmail, SmtpSender, render_email
from tournesol.channels.sms import SmsSender, with_stop_mention
from tournesol.channels.webhook import Webhook, WebhookSender, body_of
from tournesol.config import Settings
from tournesol.consent.models import ConsentState, Preference, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Customer
from tournesol.db import Dialect, UtcDateTime, chunked, unit_of_work, utcnow
from tournesol.interactions.models import INTERNAL, Interaction
from tournesol.quality.address_tables import COUNTRIES, FRENCH_TERRITORIES

CHANNELS: Final = ("email", "sms", "postal", "phone", "webhook")
# the channels sent message by message through a sender, windows in a thread
_SENDER_CHANNELS: Final = ("email", "sms", "webhook")
MAX_ATTEMPTS: Final = 5
BACKOFF: Final = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
)
FLUSH_EVERY: Final = 100
FLUSH_SECONDS: Final = 0.5
HEARTBEAT_SECONDS: Final = 60.0
STALE_AFTER: Final = timedelta(minutes=15)
IN_DOUBT_ERROR: Final = "in doubt: the dispatcher stopped during the send; not sent again"
SMS_PENDING: Final = "sms:pending"
SENT_TYPES: Final[Mapping[str, str]] = {
    "email": "email_sent",
    "sms": "sms_sent",
    "postal": "letter_sent",
    "phone": "call_listed",
    "webhook": "webhook_sent",
}
FAILED_TYPES: Final[Mapping[str, str]] = {
    "email": "email_failed",
    "sms": "sms_failed",
    "postal": "letter_failed",
    "phone": "call_failed",
    "webhook": "webhook_failed",
}
OUTBOUND: Final = "outbound"

_OUTBOX: Final = cast(Table, Outbox.__table__)
_INTERACTION: Final = cast(Table, Interaction.__table__)
_PARIS: Final = ZoneInfo("Europe/Paris")
_HOST: Final = socket.gethostname().split(".")[0][:40] or "host"
# the ids of the dispatchers running in this process (a worker of this process that is not
# here has stopped)
_LIVE: set[str] = set()
_HINTS: Final[Mapping[str, str]] = {
    "email": "check that the SMTP relay is up and TOURNESOL_SMTP_HOST, TOURNESOL_SMTP_PORT, "
    "TOURNESOL_SMTP_SECURITY, TOURNESOL_SMTP_USERNAME and TOURNESOL_SMTP_PASSWORD",
    "sms": "check that the SMS provider is reachable and TOURNESOL_SMS_BASE_URL, "
    "TOURNESOL_SMS_ACCOUNT_SID and TOURNESOL_SMS_AUTH_TOKEN",
    "postal": "check the free space and permissions of TOURNESOL_CAMPAIGN_OUTPUT_DIR",
    "phone": "check the free space and permissions of TOURNESOL_CAMPAIGN_OUTPUT_DIR",
    "webhook": "check TOURNESOL_WEBHOOK_SECRET",
}
WEBHOOK_PENDING: Final = "webhook:pending"
_Sender = SmtpSender | SmsSender | WebhookSender


@dataclass
class DispatchReport:
    """What a run did, per channel: rows ``claimed``; ``sent`` (accepted by the relay or the
    provider, printed in a print run, listed in a call list); ``failed`` for good;
    ``retried`` (a temporary failure, planned again later); ``cancelled`` (no longer allowed
    at send time); ``in_doubt`` (rows of dead dispatchers, or messages whose sending was cut
    off, that may have left: not sent again). ``released``: rows of dead dispatchers that
    had not left, planned again. ``outputs``: print-run folders and call lists written.
    ``finished``: campaigns now done. ``elapsed``: seconds."""

    worker: str
    claimed: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    cancelled: Counter[str] = field(default_factory=Counter)
    in_doubt: Counter[str] = field(default_factory=Counter)
    released: int = 0
    outputs: list[Path] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def lines(self) -> list[str]:
        """The report as short lines of text (one per channel with activity)."""
        out = []
        for channel in CHANNELS:
            counts = [
                (name, getattr(self, name)[channel])
                for name in ("claimed", "sent", "failed", "retried", "cancelled", "in_doubt")
            ]
            if any(n for _, n in counts):
                out.append(f"{channel}: " + ", ".join(f"{n} {name}" for name, n in counts))
        if self.released:
            out.append(f"{self.released} rows of a stopped dispatcher planned again")
        out += [f"written: {path}" for path in self.outputs]
        if self.finished:
            out.append("campaigns done: " + ", ".join(self.finished))
        out.append(f"{self.elapsed:.1f} s")
        return out


class DispatchStopped(SetupError):
    """A run stopped because a channel cannot be used (relay down, credentials refused, disk
    failure): the message says what to fix; ``report`` holds what was done before."""

    def __init__(self, message: str, report: DispatchReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(slots=True)
class _Row:
    id: int
    campaign_id: int | None
    customer_id: int
    brand_id: int | None
    channel: str
    purpose: str
    language: str
    address: str | None
    attempts: int
    send_after: datetime
    planned_at: datetime
    payload: dict[str, Any] | None  # a task's or webhook's (journeys)
    key: str
    context: dict[str, Any] = field(default_factory=dict)
    marker: str | None = None  # the provider id written when armed
    variant: str = rules.DEFAULT_VARIANT  # the target's A/B variant (campaign_target)


@dataclass
class _Campaign:
    campaign: Campaign
    messages: dict[tuple[str, str, str], CampaignMessage]  # by channel, language, variant
    renderers: dict[tuple[str, str, str], MessageRenderer | TemplateError] = field(
        default_factory=dict
    )
    untracked: tuple[str, ...] = ()  # link prefixes never rewritten to click redirects

    @cached_property
    def fields(self) -> frozenset[str]:
        """The personalization fields the campaign's messages read."""
        return fields_used(self.messages.values())

    @cached_property
    def variants(self) -> frozenset[str]:
        """The A/B variants its messages name."""
        return frozenset(variant for _, _, variant in self.messages)

    def renderer(
        self, channel: str, language: str, variant: str = rules.DEFAULT_VARIANT
    ) -> MessageRenderer:
        """The message of a variant for a channel in a language (else the default language,
        else any). A variant never stands in for another: none for the channel, ValueError."""
        key = (channel, language, variant)
        if key not in self.messages:
            key = (channel, self.campaign.default_language, variant)
        if key not in self.messages:
            key = next((k for k in sorted(self.messages) if k[::2] == (channel, variant)), key)
        if key not in self.messages:
            several = len(self.variants) > 1 or variant != rules.DEFAULT_VARIANT
            name = f" of variant {variant}" if several else ""
            raise ValueError(f"the campaign has no {channel} message{name}")
        found = self.renderers.get(key)
        if found is None:
            try:
                found = MessageRenderer(self.messages[key], untracked=self.untracked)
            except TemplateError as exc:
                found = exc
            self.renderers[key] = found
        if isinstance(found, TemplateError):
            raise found
        return found


_CLAIMED_COLUMNS: Final = (
    "id", "campaign_id", "customer_id", "brand_id", "channel", "purpose", "language", "address",
    "attempts", "send_after", "planned_at", "payload", "key",
)  # fmt: skip


class _Flight:
    """A window of armed messages on its way: a thread hands them to the sender and keeps the
    results (with the time each came back) while the dispatcher prepares the next window.

    ``in_hand`` is the run's set of messages handed over without a result: each message is
    added when the sender takes it. When the sender stops with :class:`SenderError`, the
    messages it took and did not answer were not sent, and leave ``in_hand``. ``stopped``
    (set by the dispatcher's thread) stops the handing over after the message under way.
    """

    def __init__(
        self,
        channel: str,
        sender: _Sender,
        items: list[Any],
        *,
        now: Callable[[], datetime],
        in_hand: set[int],
    ) -> None:
        self.channel = channel
        self.results: deque[tuple[SendResult, datetime]] = deque()
        self.error: BaseException | None = None
        self.stopped = False
        self._now = now
        self._in_hand = in_hand
        self._taken: list[int] = []
        self.thread = threading.Thread(
            target=self._fly, args=(sender, items), name=f"dispatch-{channel}", daemon=True
        )
        self.thread.start()

    def _fly(self, sender: _Sender, items: list[Any]) -> None:
        try:
            for result in sender.send(self._hand(items)):
                self.results.append((result, self._now()))
        except SenderError as exc:
            answered = {int(result.key) for result, _ in self.results}
            self._in_hand.difference_update(set(self._taken) - answered)
            self.error = exc
        except BaseException as exc:  # handed to the dispatcher's thread
            self.error = exc

    def _hand(self, items: list[Any]) -> Iterator[Any]:
        for item in items:
            if self.stopped:
                return
            self._taken.append(item[0])
            self._in_hand.add(item[0])
            yield item


# --- the run ---------------------------------------------------------------------------------


class _Run:
    """The state of one dispatch run."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        settings: Settings,
        report: DispatchReport,
        now: Callable[[], datetime],
        campaign_ids: Sequence[int] | None,
        batch: int,
        limit: int | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.factory = factory
        self.settings = settings
        self.report = report
        self.worker = report.worker
        self.now = now
        self.campaign_ids = list(campaign_ids) if campaign_ids is not None else None
        self.batch = batch
        self.limit = limit
        self.progress = progress
        self.claimed_total = 0
        self.handled = 0  # rows whose outcome is written
        self.staged = 0  # letters and calls written to an output not finished yet
        self.campaigns: dict[int, _Campaign] = {}
        self.rows: dict[int, _Row] = {}  # claimed, no result written yet
        self.pending: list[tuple[SendResult, datetime]] = []
        self.in_hand: set[int] = set()  # handed to a sender, no result yet
        self.finalizing: str | None = None  # the marker of an output being finished
        self.channel = ""  # the channel being sent
        self.last_flush = time.monotonic()
        self.last_heartbeat = time.monotonic()
        started = now().astimezone(_PARIS)
        self.run_name = f"{started:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        self.smtp: SmtpSender | None = None
        self.sms: SmsSender | None = None
        self.webhooks: WebhookSender | None = None
        self.own_senders: list[_Sender] = []
        self.signer: links.LinkSigner | None = None
        self.sender_lines: list[str] = []
        self.unsubscribe_mailto: str | None = None

    # --- setup ---------------------------------------------------------------------------

    def setup(self, due: set[str], smtp: SmtpSender | None, sms: SmsSender | None) -> None:
        """Check the settings of the channels with due rows; SetupError names what to set."""
        if due & {"email", "sms"}:
            try:
                links.unsubscribe_url(self.settings.public_url, "x")
            except ValueError:
                raise SetupError(
                    "TOURNESOL_PUBLIC_URL must be the app's address, starting with https://"
                ) from None
            self.signer = link_signer(self.settings)
        if "email" in due:
            if smtp is None:
                smtp = SmtpSender(smtp_settings(self.settings))
                self.own_senders.append(smtp)
            self.smtp = smtp
            self.unsubscribe_mailto = (
                smtp.settings.list_unsubscribe_mailto or self.settings.mail_unsubscribe_mailto
            )
        if "sms" in due:
            if sms is None:
                sms = SmsSender(sms_settings(self.settings))
                self.own_senders.append(sms)
            self.sms = sms
        if "postal" in due:
            self.sender_lines = postal_sender_lines(self.settings)
        if "webhook" in due:
            clock = self.now
            self.webhooks = WebhookSender(
                webhook_settings(self.settings), clock=lambda: clock().timestamp()
            )
            self.own_senders.append(self.webhooks)

    def close(self) -> None:
        for sender in self.own_senders:
            with contextlib.suppress(Exception):
                sender.close()

    def execute(self, due: set[str]) -> None:
        messages = [c for c in _SENDER_CHANNELS if c in due]
        if messages:
            self._messages(messages)
        if "postal" in due:
            self._letters()
        if "phone" in due:
            self._calls()

    def _room(self) -> int:
        if self.limit is None:
            return self.batch
        return max(0, min(self.batch, self.limit - self.claimed_total))

    # --- claiming --------------------------------------------------------------------------

    def claim(self, channels: Sequence[str], *, campaign_id: int | None = None) -> list[_Row]:
        """Claim the next due rows (committed before anything is sent); rows no longer allowed
        are cancelled; the others come back in send order with their recipient's fields.
        An empty list: nothing is due (or the limit is reached)."""
        while True:
            claimed, rows = self._claim_once(channels, campaign_id)
            if rows or not claimed:
                return rows

    def _claim_once(
        self, channels: Sequence[str], campaign_id: int | None
    ) -> tuple[int, list[_Row]]:
        size = self._room()
        if size <= 0:
            return 0, []
        now = self.now()
        t = _OUTBOX
        with unit_of_work(self.factory) as session:
            due = select(t.c.id).where(
                t.c.state == "planned", t.c.send_after <= now, t.c.channel.in_(channels)
            )
            if campaign_id is not None:
                due = due.where(t.c.campaign_id == campaign_id)
            elif self.campaign_ids is not None:
                due = due.where(t.c.campaign_id.in_(self.campaign_ids))
            due = due.order_by(t.c.send_after, t.c.id).limit(size).with_for_update(skip_locked=True)
            if Dialect.of(session).name == "postgresql":
                # the ids as one array, computed once: with `IN (subquery)` and the
                # statistics of a smaller outbox (right after a bulk plan), PostgreSQL may
                # run the locking subquery again for every row of the outbox
                found = select(func.array_agg(due.subquery("due").c.id)).scalar_subquery()
                claimable = t.c.id == any_(sql_cast(found, postgresql.ARRAY(BigInteger())))
            else:
                claimable = t.c.id.in_(due)
            statement = (
                update(t)
                .where(claimable)
                .values(
                    state="sending",
                    claimed_by=self.worker,
                    claimed_at=now,
                    attempts=t.c.attempts + 1,
                    provider_id=None,
                    updated_at=now,
                )
                .returning(*(t.c[name] for name in _CLAIMED_COLUMNS))
            )
            claimed = [_Row(*found) for found in session.execute(statement)]
            claimed.sort(key=lambda r: (r.send_after, r.id))
            for row in claimed:
                self.report.claimed[row.channel] += 1
            self.claimed_total += len(claimed)
            rows = self._recheck(session, claimed, now)
            by_campaign: dict[int | None, list[_Row]] = defaultdict(list)
            for row in rows:
                by_campaign[row.campaign_id].append(row)
            for cid, group in by_campaign.items():
                info = self._campaign(session, cid)
                if info is None:
                    continue
                if len(info.variants) > 1 or rules.DEFAULT_VARIANT not in info.variants:
                    _read_variants(session, info, group)
                # only the fields its messages read (a call list shows the purchases)
                wanted = None if any(r.channel == "phone" for r in group) else info.fields
                fields = personal_context(
                    session, [r.customer_id for r in group], campaign=info.campaign, fields=wanted
                )
                for row in group:
                    row.context = fields.get(row.customer_id, {})
        for row in rows:
            self.rows[row.id] = row
        return len(claimed), rows

    def _campaign(self, session: Session, campaign_id: int | None) -> _Campaign | None:
        if campaign_id is None:
            return None
        info = self.campaigns.get(campaign_id)
        if info is None:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None:
                return None
            messages = list(
                session.scalars(
                    select(CampaignMessage).where(CampaignMessage.campaign_id == campaign_id)
                )
            )
            for obj in (campaign, *messages):
                session.expunge(obj)
            base = self.settings.public_url.rstrip("/")
            info = _Campaign(
                campaign,
                {(m.channel, m.language, m.variant): m for m in messages},
                untracked=(f"{base}/u/", f"{base}/p/"),
            )
            self.campaigns[campaign_id] = info
        return info

    def _recheck(self, session: Session, rows: list[_Row], now: datetime) -> list[_Row]:
        """Cancel the rows whose sending is no longer allowed (see :func:`refusals`)."""
        if not rows:
            return rows
        refused = refusals(session, rows, now=now)
        if not refused:
            return rows
        t = _OUTBOX
        session.execute(
            update(t)
            .where(t.c.id == bindparam("b_id"))
            .values(state="cancelled", error=bindparam("b_error"), updated_at=now),
            [
                {"b_id": oid, "b_error": f"cancelled at send time: {reason}"}
                for oid, reason in refused.items()
            ],
        )
        history = []
        for row in rows:
            reason = refused.get(row.id)
            if reason is None:
                continue
            info = self._campaign(session, row.campaign_id)
            history.append(
                self._history(row, info, now, "campaign_excluded", reason, INTERNAL)
                | {"payload": {"outbox_id": row.id, "stage": "dispatch"}}
            )
            self.report.cancelled[row.channel] += 1
        session.execute(insert(_INTERACTION), history)
        self.handled += len(refused)
        return [r for r in rows if r.id not in refused]

    # --- recording ---------------------------------------------------------------------------

    def add(self, result: SendResult, *, at: datetime | None = None) -> None:
        """Keep a result (given at ``at``, now by default); write the results every
        FLUSH_EVERY or FLUSH_SECONDS."""
        self.in_hand.discard(int(result.key))
        self.pending.append((result, at or self.now()))
        if len(self.pending) >= FLUSH_EVERY or time.monotonic() - self.last_flush >= FLUSH_SECONDS:
            self.flush()

    def unrecorded_sent(self) -> set[int]:
        return {int(r.key) for r, _ in self.pending if r.ok}

    def flush(self, arm: Mapping[int, str] | None = None) -> set[int]:
        """One transaction: the pending results, then the arming of the next messages (their
        provider id written before they leave); returns the ids armed. Rows another
        dispatcher took over meanwhile are left alone (and not armed)."""
        arm = arm or {}
        heartbeat = time.monotonic() - self.last_heartbeat >= HEARTBEAT_SECONDS
        if not self.pending and not arm and not heartbeat:
            return set()
        now = self.now()
        t = _OUTBOX
        armed: set[int] = set()
        with unit_of_work(self.factory) as session:
            dialect = Dialect.of(session)
            ids = sorted({int(r.key) for r, _ in self.pending} | set(arm))
            ours: dict[int, str] = {}
            for part in chunked(ids, dialect.max_params - 10):
                found = session.execute(
                    select(t.c.id, t.c.state)
                    .where(
                        dialect.one_of(t.c.id, part),
                        t.c.claimed_by == self.worker,
                        t.c.state.in_(("sending", "in_doubt")),
                    )
                    .with_for_update()
                )
                ours.update({oid: state for oid, state in found})
            changes: list[dict[str, Any]] = []
            history: list[dict[str, Any]] = []
            for result, at in self.pending:
                row = self.rows.pop(int(result.key), None)
                if row is None or row.id not in ours:
                    continue
                change, kind = self._outcome(row, result, at)
                changes.append(change)
                if kind is not None:
                    info = self.campaigns.get(row.campaign_id or 0)
                    outcome = None if result.ok else (result.error or "")[:100]
                    history.append(self._history(row, info, at, kind, outcome))
            if changes:
                session.execute(
                    update(t)
                    .where(t.c.id == bindparam("b_id"))
                    .values(
                        state=bindparam("b_state"),
                        sent_at=bindparam("b_sent_at"),
                        provider_id=bindparam("b_provider_id"),
                        error=bindparam("b_error"),
                        send_after=bindparam("b_send_after"),
                        claimed_by=bindparam("b_claimed_by"),
                        updated_at=bindparam("b_updated_at"),
                    ),
                    changes,
                )
            if history:
                session.execute(insert(_INTERACTION), history)
            arming: list[dict[str, Any]] = [
                {"b_id": oid, "b_provider_id": marker}
                for oid, marker in arm.items()
                if ours.get(oid) == "sending"
            ]
            if arming:
                session.execute(
                    update(t)
                    .where(t.c.id == bindparam("b_id"))
                    .values(provider_id=bindparam("b_provider_id"), claimed_at=now, updated_at=now),
                    arming,
                )
                armed = {int(item["b_id"]) for item in arming}
                for item in arming:
                    if (row := self.rows.get(int(item["b_id"]))) is not None:
                        row.marker = item["b_provider_id"]
            if heartbeat:
                self._heartbeat(session, now)
        for oid in set(arm) - armed:
            self.rows.pop(oid, None)
        self.handled += len(self.pending)
        self.pending = []
        self.last_flush = time.monotonic()
        self.report_progress()
        return armed

    def report_progress(self) -> None:
        if self.progress is not None:
            self.progress(self.handled + self.staged)

    def _outcome(
        self, row: _Row, result: SendResult, at: datetime
    ) -> tuple[dict[str, Any], str | None]:
        """The row's new values for a result, and the interaction type to write (or None)."""
        change = {
            "b_id": row.id,
            "b_state": "sent",
            "b_sent_at": at,
            "b_provider_id": result.provider_id,
            "b_error": None,
            "b_send_after": row.send_after,
            "b_claimed_by": self.worker,
            "b_updated_at": at,
        }
        if result.ok:
            self.report.sent[row.channel] += 1
            return change, SENT_TYPES[row.channel]
        error = result.error or "failed"
        change |= {"b_sent_at": None, "b_provider_id": None, "b_error": error[:300]}
        # a failure after the message went out (SendResult.maybe_sent): it may have been
        # delivered, so it is not retried (never twice) but left in doubt
        if not result.permanent and result.maybe_sent:
            self.report.in_doubt[row.channel] += 1
            change |= {
                "b_state": "in_doubt",
                "b_provider_id": row.marker,
                "b_error": f"in doubt: {error}; not sent again"[:300],
            }
            return change, None
        if not result.permanent and row.attempts < MAX_ATTEMPTS:
            retry_at = at + BACKOFF[min(row.attempts, len(BACKOFF)) - 1]
            info = self.campaigns.get(row.campaign_id or 0)
            ends = info.campaign.ends_at if info is not None else None
            if ends is None or retry_at <= ends:
                self.report.retried[row.channel] += 1
                change |= {"b_state": "planned", "b_send_after": retry_at, "b_claimed_by": None}
                return change, None
            change["b_error"] = (error[:240] + " (no retry before the campaign ends)")[:300]
        self.report.failed[row.channel] += 1
        change["b_state"] = "failed"
        return change, FAILED_TYPES[row.channel]

    @staticmethod
    def _history(
        row: _Row,
        info: _Campaign | None,
        at: datetime,
        kind: str,
        outcome: str | None,
        direction: str = OUTBOUND,
    ) -> dict[str, Any]:
        campaign = info.campaign if info is not None else None
        code = campaign.code if campaign is not None else None
        journey = (row.payload or {}).get("journey")
        if code is None and isinstance(journey, str):  # a journey's webhook
            code = f"journey:{journey}"[:100]
        return {
            "customer_id": row.customer_id,
            "occurred_at": at,
            "channel": row.channel,
            "direction": direction,
            "type": kind,
            "subject": campaign.name[:300] if campaign is not None else None,
            "outcome": outcome,
            "campaign_code": code,
            "brand_id": row.brand_id,
            "payload": {"outbox_id": row.id},
            "created_at": at,
        }

    def _heartbeat(self, session: Session, now: datetime) -> None:
        """Refresh claimed_at on this run's rows, so that they never look stale."""
        t = _OUTBOX
        session.execute(
            update(t)
            .where(t.c.claimed_by == self.worker, t.c.state == "sending")
            .values(claimed_at=now)
        )
        self._heartbeat_done()

    def _heartbeat_done(self) -> None:
        self.last_heartbeat = time.monotonic()

    def release(self, *, keep: set[int], keep_marker: str | None) -> int:
        """Put this run's ``sending`` rows back to ``planned`` (attempt count as before the
        claim), except ``keep`` and the rows armed with ``keep_marker``: they may have left."""
        t = _OUTBOX
        now = self.now()
        conditions = [t.c.claimed_by == self.worker, t.c.state == "sending"]
        if keep:
            conditions.append(t.c.id.not_in(sorted(keep)))
        if keep_marker is not None:
            conditions.append(or_(t.c.provider_id.is_(None), t.c.provider_id != keep_marker))
        with unit_of_work(self.factory) as session:
            result = session.execute(
                update(t)
                .where(*conditions)
                .values(
                    state="planned",
                    attempts=case((t.c.attempts > 0, t.c.attempts - 1), else_=0),
                    claimed_by=None,
                    provider_id=None,
                    updated_at=now,
                )
                .returning(t.c.id)
            )
            released = {oid for (oid,) in result}
        for oid in released:
            self.rows.pop(oid, None)
        return len(released)

    # --- e-mail and SMS ---------------------------------------------------------------------

    def _messages(self, channels: Sequence[str]) -> None:
        """Send the due e-mails and SMS window by window. A window is rendered while the one
        before it is on its way (a :class:`_Flight`); once that one is back, one transaction
        writes its results and arms the new window, which then leaves: at most one window is
        ever armed without its results written."""
        flight: _Flight | None = None
        try:
            for channel, rows in self._windows(channels):
                prepared = self._prepare(channel, rows)
                self._land(flight)
                armed = self.flush(arm={message[0]: marker for message, marker in prepared})
                items = [message for message, _ in prepared if message[0] in armed]
                flight = self._launch(channel, items)
            self._land(flight)
        except BaseException:
            self._abort(flight)
            raise
        self.flush()

    def _windows(self, channels: Sequence[str]) -> Iterator[tuple[str, list[_Row]]]:
        """The claimed rows, a window of a channel at a time (claims are made as needed)."""
        while rows := self.claim(channels):
            for channel in channels:
                sender = self._sender(channel)
                part = [r for r in rows if r.channel == channel]
                if not part:
                    continue
                assert sender is not None  # set up for every channel with due rows
                window = self._window(sender)
                for start in range(0, len(part), window):
                    yield channel, part[start : start + window]

    def _sender(self, channel: str) -> _Sender | None:
        return {"email": self.smtp, "sms": self.sms, "webhook": self.webhooks}[channel]

    def _window(self, sender: _Sender) -> int:
        rate = sender.settings.rate_per_second
        if rate is None:
            return FLUSH_EVERY
        return max(1, min(FLUSH_EVERY, math.ceil(rate * FLUSH_SECONDS)))

    def _prepare(self, channel: str, rows: list[_Row]) -> list[tuple[Any, str]]:
        """The messages of a window and their markers; one that cannot be built fails."""
        self.channel = channel
        prepared: list[tuple[Any, str]] = []
        for row in rows:
            try:
                build = {"email": self._email, "sms": self._sms, "webhook": self._webhook}
                prepared.append(build[channel](row))
            except (TemplateError, ValueError) as exc:
                self.add(
                    SendResult.failed(row.id, f"cannot build the message: {exc}", permanent=True)
                )
        return prepared

    def _launch(self, channel: str, items: list[Any]) -> _Flight | None:
        """Hand armed messages to the channel's sender, in a thread of their own."""
        if not items:
            return None
        sender = self._sender(channel)
        assert sender is not None
        return _Flight(channel, sender, items, now=self.now, in_hand=self.in_hand)

    def _land(self, flight: _Flight | None) -> None:
        """Wait for a window on its way; keep its results; raise what stopped its sender."""
        if flight is None:
            return
        flight.thread.join()
        while flight.results:
            result, at = flight.results.popleft()
            self.add(result, at=at)
        if flight.error is not None:
            error, flight.error = flight.error, None
            self.channel = flight.channel
            raise error

    def _abort(self, flight: _Flight | None) -> None:
        """On the way out of an error: stop handing messages over, wait for those under way
        and keep their results for the final write (nothing is written here)."""
        if flight is None:
            return
        flight.stopped = True
        flight.thread.join()
        while flight.results:
            result, at = flight.results.popleft()
            self.in_hand.discard(int(result.key))
            self.pending.append((result, at))

    def _links(self, row: _Row, channel: str) -> dict[str, str]:
        assert self.signer is not None
        base = self.settings.public_url
        sub = links.Subscription(row.customer_id, channel, row.brand_id, row.campaign_id)
        return {
            "unsubscribe_url": links.unsubscribe_url(base, self.signer.make_unsubscribe(sub)),
            "preferences_url": links.preferences_url(base, self.signer.make_preferences(sub)),
        }

    def _renderer(self, row: _Row) -> MessageRenderer:
        info = self.campaigns.get(row.campaign_id or 0)
        if info is None:
            raise ValueError("the outbox row has no campaign message")
        return info.renderer(row.channel, row.language, row.variant)

    def _email(self, row: _Row) -> tuple[tuple[int, RenderedEmail], str]:
        assert self.signer is not None and self.smtp is not None
        if not row.address:
            raise ValueError("the outbox row has no address")
        extra = self._links(row, "email")
        base = self.settings.public_url.rstrip("/")
        # the links of the HTML part (but the unsubscribe and preference links) lead to click
        # redirects: see MessageRenderer.render
        rendered = self._renderer(row).render(
            row.context | extra, click_url=links.click_url_maker(self.signer, base, row.id)
        )
        html = rendered.html
        if html is not None:
            html = links.add_pixel(html, links.open_pixel_url(base, self.signer.make_open(row.id)))
        s = self.smtp.settings
        email = render_email(
            key=row.id,
            to=row.address,
            subject=rendered.subject or "",
            text=rendered.text,
            html=html,
            from_address=s.from_address,
            from_name=s.from_name,
            reply_to=s.reply_to,
            unsubscribe_url=extra["unsubscribe_url"],
            unsubscribe_mailto=self.unsubscribe_mailto,
        )
        return (row.id, email), email.message_id

    def _sms(self, row: _Row) -> tuple[tuple[int, str, str], str]:
        if not row.address:
            raise ValueError("the outbox row has no number")
        rendered = self._renderer(row).render(row.context | self._links(row, "sms"))
        return (row.id, row.address, with_stop_mention(rendered.text.strip())), SMS_PENDING

    def _webhook(self, row: _Row) -> tuple[Webhook, str]:
        """The webhook of a journey's action: posted to the row's URL with its payload."""
        if not row.address:
            raise ValueError("the outbox row has no URL")
        payload = dict(row.payload or {})
        payload.pop("url", None)
        values = {
            "id": row.key,
            "type": "journey.action",
            "journey": payload.pop("journey", None),
            "step": payload.pop("step", None),
            "visit": payload.pop("visit", None),
            "instance_id": payload.pop("instance_id", None),
            "customer_id": row.customer_id,
            "purpose": row.purpose,
            "properties": payload,
            "created_at": row.planned_at.isoformat(),
        }
        return Webhook(row.id, row.address, body_of(values), row.key), WEBHOOK_PENDING

    # --- postal mail -----------------------------------------------------------------------

    def _due_campaigns(self, channel: str) -> list[int]:
        t = _OUTBOX
        with self.factory() as session:
            query = (
                select(t.c.campaign_id)
                .distinct()
                .where(
                    t.c.state == "planned",
                    t.c.send_after <= self.now(),
                    t.c.channel == channel,
                    t.c.campaign_id.is_not(None),
                )
            )
            if self.campaign_ids is not None:
                query = query.where(t.c.campaign_id.in_(self.campaign_ids))
            return sorted(session.scalars(query))

    def _letters(self) -> None:
        from tournesol.channels import postal  # fpdf takes most of a second to import

        self.channel = "postal"
        today = self.now().astimezone(_PARIS).date()
        date_line = "Le " + french_date(today)
        for campaign_id in self._due_campaigns("postal"):
            folder: Path | None = None
            letters: postal.LetterBatch | None = None
            code = ""
            try:
                while rows := self.claim(["postal"], campaign_id=campaign_id):
                    for row in rows:
                        try:
                            lines, postal_code, country = letter_address(row.address, row.context)
                            text = self._renderer(row).render(row.context).text
                            if letters is None:
                                code = self.campaigns[campaign_id].campaign.code
                                folder = (
                                    Path(self.settings.campaign_output_dir)
                                    / "postal"
                                    / f"{code}-{self.run_name}"
                                )
                                letters = postal.LetterBatch(folder, sender_lines=self.sender_lines)
                            letters.add(
                                outbox_key=row.id,
                                address_lines=lines,
                                postal_code=postal_code,
                                country=country,
                                date_line=date_line,
                                body_text=text,
                            )
                            self.staged += 1
                        except (TemplateError, ValueError) as exc:
                            self.add(
                                SendResult.failed(
                                    row.id, f"cannot print the letter: {exc}", permanent=True
                                )
                            )
                    self.flush()
                    self.report_progress()
                if letters is None or folder is None or letters.count == 0:
                    continue
                marker = f"postal/{folder.name}"
                armed = self._arm_all("postal", campaign_id, marker)
                self.finalizing = marker
                if len(armed) == letters.count:
                    letters.finish()
                else:  # rows another dispatcher took over meanwhile stay out of the print run
                    letters.close()
                    postal.write_print_file(
                        folder / postal.PRINT_FILE_NAME,
                        (r for r in postal.read_manifest(folder) if str(r.outbox_key) in armed),
                    )
                self._mark_sent("postal", campaign_id, marker)
                self.finalizing = None
                self.report.outputs.append(folder)
            finally:
                if letters is not None:
                    letters.close()
            if self._room() == 0:
                break

    def _arm_all(self, channel: str, campaign_id: int, marker: str) -> set[str]:
        """Arm this run's rows of an output with its marker; returns their ids as text."""
        t = _OUTBOX
        now = self.now()
        with unit_of_work(self.factory) as session:
            result = session.execute(
                update(t)
                .where(
                    t.c.claimed_by == self.worker,
                    t.c.state == "sending",
                    t.c.channel == channel,
                    t.c.campaign_id == campaign_id,
                )
                .values(provider_id=marker, claimed_at=now, updated_at=now)
                .returning(t.c.id)
            )
            return {str(oid) for (oid,) in result}

    def _mark_sent(self, channel: str, campaign_id: int, marker: str) -> int:
        """The rows of a finished output: sent, each with its interaction (set-based)."""
        t = _OUTBOX
        now = self.now()
        info = self.campaigns[campaign_id]
        mine = and_(
            t.c.claimed_by == self.worker,
            t.c.state == "sending",
            t.c.channel == channel,
            t.c.campaign_id == campaign_id,
            t.c.provider_id == marker,
        )
        with unit_of_work(self.factory) as session:
            dialect = Dialect.of(session)
            stamp = literal(now, UtcDateTime())
            rows = select(
                t.c.customer_id,
                stamp,
                literal(channel),
                literal(OUTBOUND),
                literal(SENT_TYPES[channel]),
                literal(info.campaign.name[:300]),
                literal(info.campaign.code),
                t.c.brand_id,
                dialect.json_object("outbox_id", t.c.id),
                stamp,
            ).where(mine)
            columns = [
                "customer_id", "occurred_at", "channel", "direction", "type", "subject",
                "campaign_code", "brand_id", "payload", "created_at",
            ]  # fmt: skip
            session.execute(insert(_INTERACTION).from_select(columns, rows))
            result = session.execute(
                update(t).where(mine).values(state="sent", sent_at=now, updated_at=now)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        for oid in [oid for oid, row in self.rows.items() if row.campaign_id == campaign_id]:
            if self.rows[oid].channel == channel:
                del self.rows[oid]
        self.report.sent[channel] += count
        self.handled += count
        self.staged = 0
        self.report_progress()
        return count

    # --- telephone -----------------------------------------------------------------------------

    def _calls(self) -> None:
        self.channel = "phone"
        for campaign_id in self._due_campaigns("phone"):
            info = self._load_campaign(campaign_id)
            if info is None:
                continue
            folder = Path(self.settings.campaign_output_dir) / "phone"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"{info.campaign.code}-{self.run_name}.csv"
            partial = final.with_name(final.name + ".partial")
            try:
                count = write_call_list(partial, self._call_rows(campaign_id))
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            if count == 0:
                partial.unlink(missing_ok=True)
                continue
            marker = f"phone/{final.name}"
            armed = self._arm_all("phone", campaign_id, marker)
            self.finalizing = marker
            if len(armed) == count:
                os.replace(partial, final)
            else:  # rows another dispatcher took over meanwhile stay out of the list
                _filter_csv(partial, final, armed)
                partial.unlink()
            self._mark_sent("phone", campaign_id, marker)
            self.finalizing = None
            self.report.outputs.append(final)
            if self._room() == 0:
                break

    def _load_campaign(self, campaign_id: int) -> _Campaign | None:
        with self.factory() as session:
            return self._campaign(session, campaign_id)

    def _call_rows(self, campaign_id: int) -> Iterator[CallRow]:
        info = self.campaigns[campaign_id]
        while rows := self.claim(["phone"], campaign_id=campaign_id):
            extra = self._call_data([r.customer_id for r in rows])
            for row in rows:
                phones, days, hours = extra.get(row.customer_id, ((), None, None))
                numbers = list(dict.fromkeys(p for p in (row.address, *phones) if p))
                ctx = row.context
                try:
                    valid = [p for p in numbers if _callable(p)][:3]
                    if not valid:
                        raise ValueError("no callable phone number (E.164)")
                    call = CallRow(
                        outbox_key=row.id,
                        customer_id=row.customer_id,
                        phones=tuple(valid),
                        campaign_name=info.campaign.name,
                        civility=ctx.get("civility"),
                        first_name=ctx.get("first_name"),
                        last_name=ctx.get("last_name"),
                        preferred_days=days,
                        preferred_hours=hours,
                        language=row.language,
                        last_purchase_date=ctx.get("last_purchase_date"),
                        last_purchase_amount=ctx.get("last_purchase_amount"),
                        rfm_segment=ctx.get("rfm_segment"),
                        script_reference=_script_reference(info, row),
                    )
                except ValueError as exc:
                    self.add(
                        SendResult.failed(row.id, f"cannot list the call: {exc}", permanent=True)
                    )
                    continue
                self.staged += 1
                yield call
            self.flush()
            self.report_progress()

    def _call_data(
        self, customer_ids: Sequence[int]
    ) -> dict[int, tuple[tuple[str, ...], str | None, str | None]]:
        """Per customer: their phone numbers, and their contact days and hours for calls."""
        out: dict[int, tuple[tuple[str, ...], str | None, str | None]] = {}
        with self.factory() as session:
            dialect = Dialect.of(session)
            c = Customer
            for part in chunked(sorted(set(customer_ids)), dialect.max_params - 10):
                for cid, mobile, fixed in session.execute(
                    select(c.id, c.phone_mobile, c.phone_fixed).where(dialect.one_of(c.id, part))
                ):
                    out[cid] = (tuple(p for p in (mobile, fixed) if p), None, None)
                p = Preference
                prefs = session.execute(
                    select(p.customer_id, p.channel, p.days, p.hours).where(
                        dialect.one_of(p.customer_id, part), p.channel.in_(("phone", "any"))
                    )
                )
                chosen: dict[int, tuple[str, str | None, str | None]] = {}
                for cid, channel, days, hours in prefs:
                    if cid not in chosen or channel == "phone":
                        chosen[cid] = (channel, days, hours)
                for cid, (_, days, hours) in chosen.items():
                    if cid in out:
                        out[cid] = (out[cid][0], days, hours)
        return out


def _read_variants(session: Session, info: _Campaign, rows: Sequence[_Row]) -> None:
    """The A/B variant of each claimed row of one campaign, from its customer's
    campaign_target row (one read per claim, by the unique campaign and customer key); a
    row without one (planned before variants existed) keeps ``A``."""
    t = CampaignTarget
    dialect = Dialect.of(session)
    ids = sorted({row.customer_id for row in rows})
    found: dict[int, str] = {}
    for part in chunked(ids, dialect.max_params - 10):
        query = select(t.customer_id, t.variant).where(
            t.campaign_id == info.campaign.id, dialect.one_of(t.customer_id, list(part))
        )
        found.update((cid, variant) for cid, variant in session.execute(query) if variant)
    for row in rows:
        row.variant = found.get(row.customer_id, rules.DEFAULT_VARIANT)


def _script_reference(info: _Campaign, row: _Row) -> str:
    """The call script a call center reads: the campaign and the language, and the variant
    when the campaign has several."""
    reference = f"{info.campaign.code}/{row.language}"
    if len(info.variants) > 1:
        reference += f"/{row.variant}"
    return reference


def _callable(number: str) -> bool:
    try:
        CallRow(outbox_key=1, customer_id=1, phones=(number,), campaign_name="")
    except ValueError:
        return False
    return True


def _filter_csv(source: Path, target: Path, keys: set[str]) -> None:
    """Copy a call list keeping the header and the rows whose outbox key is in ``keys``."""
    with (
        source.open(encoding="utf-8-sig", newline="") as inp,
        target.open("w", encoding="utf-8-sig", newline="") as out,
    ):
        reader = csv.reader(inp, delimiter=";")
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        for number, cells in enumerate(reader):
            if number == 0 or (cells and cells[0] in keys):
                writer.writerow(cells)


# --- letters ----------------------------------------------------------------------------------

_MONTHS: Final = (
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
    "octobre", "novembre", "décembre",
)  # fmt: skip
_ABBREVIATED: Final = {"Madame": "MME", "Monsieur": "M."}


def french_date(day: date) -> str:
    """``2 mars 2026``, ``1er mai 2026``: a date as a French letter writes it.

    >>> french_date(date(2026, 5, 1))
    '1er mai 2026'
    """
    return f"{'1er' if day.day == 1 else day.day} {_MONTHS[day.month - 1]} {day.year}"


def letter_address(address: str | None, context: Mapping[str, Any]) -> tuple[list[str], str, str]:
    """The lines to print, postal code and country (ISO, ``FR`` for French territories) of a
    letter: the customer's AFNOR lines as the planner copied them (``line1|...|line6``),
    blank ones left out, line 1 made from the civility and names when empty, and for a
    foreign address the country's name in French capitals as a last line. Raises ValueError
    (from ``postal.check_address_lines`` when printing) for what cannot be printed, e.g. a
    seven-line foreign address."""
    if not address:
        raise ValueError("the outbox row has no postal address")
    parts = [part.strip() for part in address.split("|")]
    if not parts[0]:
        parts[0] = _identity_line(context)
    lines = [part for part in parts if part]
    country = str(context.get("country") or "FR").strip().upper()
    if country in FRENCH_TERRITORIES:
        printed_country = "FR"
    else:
        printed_country = country
        if country != "MC":
            lines.append(COUNTRIES.get(country, country))
    postal_code = str(context.get("postal_code") or "").strip()
    if not postal_code and lines:
        first = lines[-1 if printed_country in ("FR", "MC") else -2].split(" ")[0]
        postal_code = first if first.isdigit() else ""
    if len(lines) > 6:
        raise ValueError(
            f"the address takes {len(lines)} lines with its country; AFNOR NF Z10-011 allows 6"
        )
    return lines, postal_code, printed_country


def _identity_line(context: Mapping[str, Any]) -> str:
    civility = _ABBREVIATED.get(str(context.get("civility") or ""), "")
    first = str(context.get("first_name") or "").upper()
    last = str(context.get("last_name") or "").upper()
    line = " ".join(p for p in (civility, first, last) if p)
    if len(line) > 38 and first:
        line = " ".join(p for p in (civility, first[0] + ".", last) if p)
    return line[:38]


# --- checks at send time ------------------------------------------------------------------------


def refusals(session: Session, rows: Sequence[Any], *, now: datetime) -> dict[int, str]:
    """Outbox rows (``id``, ``customer_id``, ``channel``, ``purpose``, ``brand_id``,
    ``address``, ``planned_at``) that must not be sent any more, with the reason code
    (``campaigns.rules.Reason``): a customer no longer active (merged, erased), an address
    on the suppression list since (a hard bounce, a complaint, an erasure; an unsubscribe
    from this brand or all brands, for marketing), a marketing consent refused or withdrawn
    after planning. What the planner weighed (opposition lists against the legal basis) is
    not decided again."""
    if not rows:
        return {}
    dialect = Dialect.of(session)
    refused: dict[int, str] = {}
    customers = sorted({r.customer_id for r in rows})
    status: dict[int, str] = {}
    for part in chunked(customers, dialect.max_params - 10):
        found_status = session.execute(
            select(Customer.id, Customer.status).where(dialect.one_of(Customer.id, part))
        )
        status.update({cid: state for cid, state in found_status})
    wanted: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        state = status.get(row.customer_id)
        if state != "active":
            refused[row.id] = str(
                rules.Reason.ERASED if state == "erased" else rules.Reason.NOT_ACTIVE
            )
        elif row.address:
            wanted[(row.channel, contact_hash(row.channel, row.address))].append(row)
    sup = Suppression
    hashes = sorted({h for _, h in wanted})
    for part in chunked(hashes, dialect.max_params - 10):
        found = session.execute(
            select(sup.channel, sup.value_hash, sup.reason, sup.brand_id).where(
                dialect.one_of(sup.value_hash, part),
                or_(sup.expires_at.is_(None), sup.expires_at > now),
            )
        )
        for channel, value_hash, reason, brand_id in found:
            for row in wanted.get((channel, value_hash), ()):
                if row.id in refused or reason == "opposition":
                    continue
                marketing = row.purpose == "marketing"
                if reason in ("unsubscribe", "complaint") and not marketing:
                    continue
                if reason == "unsubscribe" and brand_id is not None and brand_id != row.brand_id:
                    continue
                refused[row.id] = str(SUPPRESSION_REASONS.get(reason, rules.Reason.OPTED_OUT))
    marketing_rows = [r for r in rows if r.purpose == "marketing" and r.id not in refused]
    by_customer: dict[int, list[Any]] = defaultdict(list)
    for row in marketing_rows:
        by_customer[row.customer_id].append(row)
    s = ConsentState
    for part in chunked(sorted(by_customer), dialect.max_params - 10):
        consents = session.execute(
            select(s.customer_id, s.channel, s.brand_id, s.collected_at).where(
                dialect.one_of(s.customer_id, part),
                s.purpose == "marketing",
                s.status.in_(("withdrawn", "denied")),
            )
        )
        for owner, consent_channel, consent_brand, collected_at in consents:
            for row in by_customer.get(owner, []):
                if consent_channel not in (row.channel, "any"):
                    continue
                if consent_brand is not None and consent_brand != row.brand_id:
                    continue
                if collected_at > row.planned_at:
                    refused[row.id] = str(rules.Reason.OPTED_OUT)
    return refused


# --- workers ---------------------------------------------------------------------------------


def worker_id(label: str | None = None) -> str:
    """A new dispatcher id, ``host:pid:random`` (``host:pid:label-random`` with a label):
    unique to one run, so that its rows are told from any other run's."""
    suffix = secrets.token_hex(4)
    if label:
        clean = "".join(ch for ch in label if ch.isalnum() or ch in "-_")[:20]
        suffix = f"{clean}-{suffix}" if clean else suffix
    return f"{_HOST}:{os.getpid()}:{suffix}"[:80]


def _process_started(pid: int) -> tuple[bool, datetime | None]:
    """Whether process ``pid`` runs (a zombie does not) and, on Linux, when it started."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, None
    except PermissionError:
        pass
    except OSError:
        return False, None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text(encoding="ascii").splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return True, None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):
        return False, None
    try:
        ticks = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return True, None
    return True, datetime.fromtimestamp(boot + ticks).astimezone()


def _alive(
    worker: str | None, first: datetime | None, last: datetime | None, stale: datetime
) -> bool:
    """Whether the dispatcher ``worker`` (whose rows were claimed between ``first`` and
    ``last``) may still be sending: not if its rows are older than ``stale``, nor, for a
    dispatcher of this host, if its process is gone (or is another process now)."""
    if worker is None or last is None or last < stale:
        return False
    host, _, rest = worker.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return True  # another host: only the age of its rows can tell
    if worker in _LIVE:
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process, and no run of it has this id
    running, started = _process_started(pid)
    if not running:
        return False
    return started is None or first is None or started <= first + timedelta(seconds=2)


def _recover(
    session: Session, *, now: datetime, stale_after: timedelta
) -> tuple[Counter[str], int]:
    """:func:`recover`, with the rows in doubt by channel and the number planned again."""
    t = _OUTBOX
    found = session.execute(
        select(t.c.claimed_by, func.min(t.c.claimed_at), func.max(t.c.claimed_at))
        .where(t.c.state == "sending")
        .group_by(t.c.claimed_by)
    ).all()
    stale = now - stale_after
    in_doubt: Counter[str] = Counter()
    released = 0
    for worker, first, last in found:
        if _alive(worker, first, last, stale):
            continue
        mine = [
            t.c.state == "sending",
            t.c.claimed_by.is_(None) if worker is None else t.c.claimed_by == worker,
        ]
        doubtful = session.execute(
            update(t)
            .where(*mine, t.c.provider_id.is_not(None))
            .values(state="in_doubt", error=IN_DOUBT_ERROR, updated_at=now)
            .returning(t.c.channel)
        )
        in_doubt.update(channel for (channel,) in doubtful)
        back = session.execute(
            update(t)
            .where(*mine, t.c.provider_id.is_(None))
            .values(
                state="planned",
                attempts=case((t.c.attempts > 0, t.c.attempts - 1), else_=0),
                claimed_by=None,
                updated_at=now,
            )
            .returning(t.c.id)
        )
        released += len(back.all())
    return in_doubt, released


# --- public API --------------------------------------------------------------------------------


def recover(session: Session, *, now: datetime, stale_after: timedelta = STALE_AFTER) -> int:
    """Take back the rows a dispatcher left in ``sending`` when it died: a dispatcher whose
    rows were claimed (or last refreshed: running dispatchers refresh them every minute) more
    than ``stale_after`` ago, or a dispatcher of this host whose process is gone. The rows it
    had armed (handed to the channel, or about to be) become ``in_doubt`` with the error
    "in doubt: the dispatcher stopped during the send; not sent again": they are never sent
    again automatically (:func:`requeue_in_doubt` is the operator's decision). The rows it
    had not armed never left: they go back to ``planned``, their attempt count as before.
    Writes in the caller's transaction; returns the number of rows now in doubt."""
    in_doubt, _released = _recover(session, now=now, stale_after=stale_after)
    return sum(in_doubt.values())


def requeue_in_doubt(session: Session, *, campaign_id: int | None = None, now: datetime) -> int:
    """The operator's decision to send the ``in_doubt`` rows (of one campaign, or all) again:
    they go back to ``planned``, due at once (some may then reach their recipient twice); a
    campaign already ``done`` is ``running`` again. Writes in the caller's transaction;
    returns the number of rows requeued."""
    t = _OUTBOX
    conditions = [t.c.state == "in_doubt"]
    if campaign_id is not None:
        conditions.append(t.c.campaign_id == campaign_id)
    result = session.execute(
        update(t)
        .where(*conditions)
        .values(state="planned", error=None, claimed_by=None, provider_id=None, updated_at=now)
        .returning(t.c.campaign_id)
    )
    campaigns = [cid for (cid,) in result]
    touched = sorted({cid for cid in campaigns if cid is not None})
    if touched:
        session.execute(
            update(Campaign)
            .where(Campaign.id.in_(touched), Campaign.status == "done")
            .values(status="running", finished_at=None, updated_at=now)
        )
    return len(campaigns)


def finish_campaigns(session: Session, *, now: datetime) -> list[str]:
    """Running planned campaigns (a triggered one runs until stopped) with no ``planned`` or
    ``sending`` row left become ``done`` (``finished_at`` = ``now``). Writes in the caller's
    transaction; returns their codes."""
    t = _OUTBOX
    open_rows = (
        select(t.c.id)
        .where(t.c.campaign_id == Campaign.id, t.c.state.in_(("planned", "sending")))
        .exists()
    )
    done = list(
        session.scalars(
            select(Campaign)
            .where(Campaign.status == "running", Campaign.kind == "planned", ~open_rows)
            .order_by(Campaign.code)
        )
    )
    for campaign in done:
        campaign.status = "done"
        campaign.finished_at = now
        campaign.updated_at = now
    session.flush()
    return [c.code for c in done]


def dispatch(
    factory: sessionmaker[Session],
    *,
    settings: Settings,
    channels: Sequence[str] | None = None,
    campaign_ids: Sequence[int] | None = None,
    now: Callable[[], datetime] = utcnow,
    worker: str | None = None,
    batch: int = 200,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    smtp: SmtpSender | None = None,
    sms: SmsSender | None = None,
) -> DispatchReport:
    """Send the due outbox rows (of ``channels`` and ``campaign_ids``; all when None) until
    none is left or ``limit`` rows were claimed, ``batch`` rows per claim; see the module's
    documentation for the steps and the guarantee. Owns its transactions (sessions from
    ``factory``). ``now`` gives the time (tests pass a clock), ``worker`` a label for the
    dispatcher's id, ``progress`` is called with the number of rows handled so far after
    each write, ``smtp`` and ``sms`` replace the senders made from ``settings``. Returns a
    :class:`DispatchReport`. Raises ``SetupError`` before claiming anything when a channel
    with due rows lacks settings, :class:`DispatchStopped` when a channel failed mid-run
    (what was claimed and not sent is planned again), ``ValueError`` for a bad argument."""
    wanted = list(CHANNELS if channels is None else dict.fromkeys(channels))
    unknown = [c for c in wanted if c not in CHANNELS]
    if unknown:
        raise ValueError(f"channels: {unknown[0]!r} is not one of {', '.join(CHANNELS)}")
    if batch < 1:
        raise ValueError("batch: at least 1")
    if limit is not None and limit < 0:
        raise ValueError("limit: 0 or more")
    started = time.monotonic()
    report = DispatchReport(worker=worker_id(worker))
    with unit_of_work(factory) as session:
        in_doubt, released = _recover(session, now=now(), stale_after=STALE_AFTER)
    report.in_doubt.update(in_doubt)
    report.released = released
    t = _OUTBOX
    with factory() as session:
        query = (
            select(t.c.channel)
            .distinct()
            .where(t.c.state == "planned", t.c.send_after <= now(), t.c.channel.in_(wanted))
        )
        if campaign_ids is not None:
            query = query.where(t.c.campaign_id.in_(list(campaign_ids)))
        due = set(session.scalars(query))
    run = _Run(
        factory,
        settings=settings,
        report=report,
        now=now,
        campaign_ids=campaign_ids,
        batch=batch,
        limit=limit,
        progress=progress,
    )
    try:
        run.setup(due, smtp, sms)
        _LIVE.add(report.worker)
        try:
            run.execute(due)
            run.flush()
        except (SenderError, OSError) as exc:
            run.flush()
            # what the sender took and never answered was not sent (SenderError) and has
            # left in_hand; anything still there may have left
            back = run.release(keep=set(run.in_hand), keep_marker=run.finalizing)
            report.elapsed = time.monotonic() - started
            channel = run.channel or "email"
            raise DispatchStopped(
                f"{channel}: {exc}; {_HINTS.get(channel, '')}. {back} messages not sent were "
                "planned again: run the dispatcher again once fixed",
                report,
            ) from None
        except BaseException:
            keep = run.in_hand | run.unrecorded_sent()
            with contextlib.suppress(Exception):
                run.flush()
                keep = run.in_hand
            with contextlib.suppress(Exception):
                run.release(keep=keep, keep_marker=run.finalizing)
            raise
        finally:
            _LIVE.discard(report.worker)
    finally:
        run.close()
    with unit_of_work(factory) as session:
        report.finished = finish_campaigns(session, now=now())
    report.elapsed = time.monotonic() - started
    return report
