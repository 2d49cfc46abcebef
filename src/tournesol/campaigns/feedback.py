"""What comes back from messages: opens and clicks, unsubscribes, the preference center,
bounces and complaints, SMS delivery reports and STOP replies, call-center outcomes.

Each function records one kind of return on the outbox row it is about (its first open, click,
unsubscribe, bounce; its ``delivered`` / ``bounced`` / ``failed`` state), on the customer's
timeline (an :class:`~tournesol.interactions.models.Interaction` with the campaign's code and
ids only in its payload) and, for an opt-out, in the consents (a ``withdrawn`` row with its
proof) and the suppression list (the SHA-256 of the contact point, hashed as the planner
checks it). The planner reads ``consent_state`` and ``suppression`` when it runs, so every
change takes effect at the next plan.

Everything is idempotent: a pixel loaded twice, a link clicked again, an unsubscribe link
followed twice, a mailbox or an outcome file imported twice, a delivery report sent again
write nothing the second time. Rows are claimed by a write before they are read (an
``UPDATE`` of the outbox row), so two requests about the same message at once are recorded
one after the other.

Writes go in the caller's transaction; nothing here commits. Nothing personal is logged or
put in an error message: messages name the field, never the value.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import phonenumbers
from sqlalchemy import CursorResult, Table, delete, or_, select, update
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign, Outbox
from tournesol.channels import callcenter
from tournesol.channels import email as email_channel
from tournesol.channels import sms as sms_channel
from tournesol.channels.base import Key
from tournesol.channels.links import Subscription
from tournesol.consent import rules as consent_rules
from tournesol.consent import service as consent_service
from tournesol.consent.models import ConsentState, Preference, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Brand, Customer, Identifier
from tournesol.customers.view360 import survivor_of
from tournesol.db import Dialect, utcnow
from tournesol.interactions.models import Interaction
from tournesol.reporting import hygiene

PURPOSE: Final = "marketing"
TEXT_VERSION: Final = "v1"
"""The version of the unsubscribe and preference-center wording the proofs refer to."""
METHODS: Final = (
    "one_click",  # RFC 8058 POST sent by the mail client
    "link",  # confirmed on the unsubscribe page
    "sms_stop",  # a STOP reply
    "mailto",  # a mail to the List-Unsubscribe mailbox
    "preference_center",  # a channel switched off in the preference center
    "complaint",  # a spam complaint (ARF report)
    "call_outcome",  # "do not call" told to a call-center agent
)
"""How a customer can unsubscribe (``unsubscribe(..., method=)``)."""
PREFERENCE_CHANNELS: Final = ("email", "sms", "phone", "postal")
"""The channels the preference center shows, in this order."""
STATUSES: Final = ("granted", "withdrawn", "none")
"""A channel's status for a brand in the preference center: yes, no, never said."""
# Suppressions that no consent lifts: granting a channel again does not remove them.
BLOCKING_REASONS: Final = ("hard_bounce", "complaint", "erased")
# States of a message that went out (in_doubt: handed to the provider, answer not recorded).
_OUT: Final = ("sent", "in_doubt")
_UNSUBSCRIBE_TYPES: Final[Mapping[str, str]] = {
    "email": "email_unsubscribed",
    "sms": "sms_stop",
}
_E164: Final = re.compile(r"\+[1-9]\d{6,14}")
_ARF: Final = re.compile(rb"feedback-report", re.IGNORECASE)
_POSTAL_CITY: Final = re.compile(r"(\d{2})\d{3}\s+(.+)")
_IP_KEYS: Final = frozenset({"ip", "ip_address", "remote_addr", "client_ip"})
_MASK: Final = "•••"


class UnknownSubscriber(LookupError):
    """The customer of a link is unknown or no longer active (erased); nothing to show."""


# --- opens and clicks ------------------------------------------------------------------------


def record_open(
    session: Session,
    *,
    outbox_id: int,
    at: datetime,
    signals: hygiene.Signals = hygiene.NO_REQUEST,
    thresholds: hygiene.Thresholds = hygiene.THRESHOLDS,
) -> bool:
    """Record that email ``outbox_id`` was opened (its pixel was loaded) at ``at``, by the
    request ``signals`` describe (none: an open recorded outside a request, judged on its
    timing alone).

    The load is judged by :func:`tournesol.reporting.hygiene.classify_open`. The first open
    sets ``Outbox.opened_at``; the first human one ``human_opened_at``. Each of the two adds
    an ``email_opened`` interaction (inbound, email; one when they are the same), a machine's
    marked ``"machine": true`` with its ``reason``, with the user agent (its first 200
    characters) when the request named one; later opens change nothing. Returns True when a
    row was written; False for a later open, an unknown id or a message that is not an email.
    """
    result = session.execute(
        update(Outbox)
        .where(
            Outbox.id == outbox_id,
            Outbox.channel == "email",
            or_(Outbox.opened_at.is_(None), Outbox.human_opened_at.is_(None)),
        )
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        return False
    message = _reload(session, outbox_id)
    verdict = hygiene.classify_open(
        user_agent=signals.user_agent,
        seconds_since_sent=_since_sent(message, at),
        privacy_proxy=signals.privacy_proxy,
        thresholds=thresholds,
    )
    first = message.opened_at is None
    if verdict.machine and not first:
        return False
    if first:
        message.opened_at = at
    if not verdict.machine:
        message.human_opened_at = at
    payload = _marked({"outbox_id": message.id}, verdict, signals, "machine")
    _event(session, message, "email", "inbound", "email_opened", at, payload)
    return True


def record_click(
    session: Session,
    *,
    outbox_id: int,
    index: int,
    url: str,
    at: datetime,
    signals: hygiene.Signals = hygiene.NO_REQUEST,
    thresholds: hygiene.Thresholds = hygiene.THRESHOLDS,
) -> bool:
    """Record a click on link ``index`` (target ``url``) of email ``outbox_id`` at ``at``, by
    the request ``signals`` describe (none: judged on timing alone).

    The click is judged by :func:`tournesol.reporting.hygiene.classify_click`. Sets
    ``Outbox.clicked_at`` on the first click, and ``opened_at`` when it is still empty (a
    click implies an open: images may be blocked; an ``email_opened`` interaction marked
    ``implied_by: click`` is added then); a human click sets ``human_clicked_at`` and
    ``human_opened_at`` when they are empty. One ``email_clicked`` interaction per message
    and link index (plus one for the link's first human click when a bot's came first),
    whose payload keeps the index and the URL (ours, signed in the token, not personal), the
    user agent when there is one, and ``"bot": true`` with the ``reason`` for a suspected
    bot. When this click and an earlier click on another link of the message were less than
    ``thresholds.burst`` seconds apart, the earlier one is flagged too (``all_links_at_once``)
    and the message's human times are recomputed without it. Returns True when a row was
    written for the click; False otherwise, or for an unknown id or a message that is not an
    email.
    """
    message = _claim(session, outbox_id, channel="email")
    if message is None:
        return False
    clicks = _timeline_of(session, message, "email_clicked")
    others = [(_index(c), (at - _at(c)).total_seconds()) for c in clicks]
    verdict = hygiene.classify_click(
        user_agent=signals.user_agent,
        method=signals.method,
        seconds_since_sent=_since_sent(message, at),
        index=index,
        other_clicks_of_message=others,
        thresholds=thresholds,
    )
    if message.opened_at is None:
        message.opened_at = at
        payload = _marked(
            {"outbox_id": message.id, "implied_by": "click"}, verdict, None, "machine"
        )
        _event(session, message, "email", "inbound", "email_opened", at, payload)
    if message.clicked_at is None:
        message.clicked_at = at
    if not verdict.machine:
        if message.human_clicked_at is None:
            message.human_clicked_at = at
        if message.human_opened_at is None:
            message.human_opened_at = at
    same_link = [c for c in clicks if _index(c) == index]
    written = not same_link or (
        not verdict.machine and all(c.payload.get("bot") for c in same_link)
    )
    if written:
        payload = _marked(
            {"outbox_id": message.id, "index": index, "url": url}, verdict, signals, "bot"
        )
        _event(session, message, "email", "inbound", "email_clicked", at, payload)
    partners = hygiene.burst_partners(index, others, thresholds=thresholds)
    flagged = [clicks[p] for p in partners if not clicks[p].payload.get("bot")]
    if flagged:
        _flag_burst(session, message, flagged)
    session.flush()
    return written


def _flag_burst(session: Session, message: Outbox, clicks: list[Interaction]) -> None:
    """Flag earlier clicks that a later one showed to be part of a burst on every link (and
    the open each of them implied), then set the message's human times again from the
    timeline: its first unflagged click, and its first unflagged open or click."""
    reason = {"bot": True, "reason": "all_links_at_once"}
    times = {_at(c) for c in clicks}
    for click in clicks:
        click.payload = {**click.payload, **reason}
    opens = _timeline_of(session, message, "email_opened")
    for row in opens:
        implied = row.payload.get("implied_by") == "click"
        if implied and _at(row) in times and not row.payload.get("machine"):
            row.payload = {**row.payload, "machine": True, "reason": "all_links_at_once"}
    human_clicks = [
        _at(c) for c in _timeline_of(session, message, "email_clicked") if not c.payload.get("bot")
    ]
    human_opens = [
        _at(o)
        for o in opens
        if not o.payload.get("machine") and o.payload.get("implied_by") != "click"
    ]
    message.human_clicked_at = min(human_clicks, default=None)
    message.human_opened_at = min([*human_opens, *human_clicks], default=None)


def _timeline_of(session: Session, message: Outbox, kind: str) -> list[Interaction]:
    """The message's interactions of one kind (a handful), oldest first."""
    return list(
        session.scalars(
            select(Interaction)
            .where(
                Interaction.customer_id == message.customer_id,
                Interaction.type == kind,
                Interaction.payload["outbox_id"].as_integer() == message.id,
            )
            .order_by(Interaction.occurred_at, Interaction.id)
        )
    )


def _marked(
    payload: dict[str, Any],
    verdict: hygiene.Verdict,
    signals: hygiene.Signals | None,
    flag: str,
) -> dict[str, Any]:
    """A timeline payload with the hygiene verdict (``flag``: ``machine`` for opens, ``bot``
    for clicks) and the request's user agent, shortened; never its address."""
    if verdict.machine:
        payload[flag] = True
        payload["reason"] = verdict.reason
    agent = hygiene.kept_agent(signals.user_agent) if signals is not None else None
    if agent:
        payload["user_agent"] = agent
    return payload


def _since_sent(message: Outbox, at: datetime) -> float | None:
    return None if message.sent_at is None else (at - message.sent_at).total_seconds()


def _index(row: Interaction) -> int:
    value = row.payload.get("index")
    return value if isinstance(value, int) else -1


def _at(row: Interaction) -> datetime:
    assert row.occurred_at is not None  # written with one by _event
    return row.occurred_at


# --- unsubscribing ---------------------------------------------------------------------------


def unsubscribe(
    session: Session,
    subscription: Subscription,
    *,
    at: datetime,
    method: str,
    proof: Mapping[str, str],
) -> bool:
    """Withdraw the marketing consent of ``subscription`` (a customer, a channel, a brand or
    the whole group when ``brand_id`` is None, the campaign whose link was used), at ``at``.

    All at once: a ``withdrawn`` consent row for the channel, purpose ``marketing`` and the
    brand (proof source ``unsubscribe:{method}``, wording ``v1``, actor ``customer``, plus
    ``proof``: user agent, hashed IP... a raw ``ip`` entry is replaced by its SHA-256); a
    suppression ``unsubscribe`` of the customer's current contact points for the channel (and
    of the address the campaign's message went to when it differs), hashed as the planner
    checks them; ``Outbox.unsubscribed_at`` on the campaign's message to the customer on that
    channel; the customer's marketing messages on the channel still ``planned`` for the brand
    (every brand when group-wide) ``cancelled``; and an interaction (``email_unsubscribed``,
    ``sms_stop`` or ``consent_changed``, inbound, with the campaign's code). A merged
    customer's link acts on the customer they were merged into.

    ``method`` is one of :data:`METHODS`. Returns True when anything was written; a second
    unsubscribe returns False and writes nothing. False too for an unknown or erased customer.
    Raises ValueError for an unknown method or channel.
    """
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(METHODS)}")
    _writer(session)
    return _withdraw(
        session,
        subscription,
        at=at,
        method=method,
        proof=proof,
        proof_source=f"unsubscribe:{method}",
    )


def _withdraw(
    session: Session,
    subscription: Subscription,
    *,
    at: datetime,
    method: str,
    proof: Mapping[str, str],
    proof_source: str,
) -> bool:
    channel = _channel(subscription.channel)
    customer = _active_customer(session, subscription.customer_id)
    if customer is None:
        return False
    _lock(session, customer.id)
    brand_id = _id_or_none(subscription.brand_id, "brand_id")
    campaign_id = _id_or_none(subscription.campaign_id, "campaign_id")
    messages = _campaign_messages(session, subscription, customer.id, campaign_id, channel)
    first = messages[0] if messages else None
    details = {
        "method": method,
        **({"outbox_id": first.id} if first is not None else {}),
        **({"campaign_id": campaign_id} if campaign_id is not None else {}),
        **_proof_details(proof),
    }
    changed = False
    winner = _winner(_facts(session, customer.id), channel, brand_id)
    if winner is None or (winner.status == "granted" and winner.collected_at <= at):
        row = consent_service.set_consent(
            session,
            customer_id=customer.id,
            channel=channel,
            purpose=PURPOSE,
            brand_id=brand_id,
            status="withdrawn",
            proof_source=proof_source,
            proof_text_version=TEXT_VERSION,
            collected_at=at,
            actor="customer",
        )
        row.proof = {**row.proof, **details}
        changed = True
    source = f"outbox {first.id} ({method})" if first is not None else f"unsubscribe ({method})"
    addresses = contact_points(customer).get(channel, [])
    for message in messages:
        if message.address and message.address not in addresses:
            addresses = [*addresses, message.address]
    for address in addresses:
        changed |= _suppress(
            session,
            channel=channel,
            value=address,
            reason="unsubscribe",
            brand_id=brand_id,
            source=source,
        )
    for message in messages:
        if message.unsubscribed_at is None:
            message.unsubscribed_at = at
            message.updated_at = utcnow()
            changed = True
    changed |= _cancel_planned(session, customer.id, channel, brand_id) > 0
    if changed:
        kind = _UNSUBSCRIBE_TYPES.get(channel, "consent_changed")
        payload: dict[str, Any] = {"method": method, "status": "withdrawn"}
        if first is not None:
            payload["outbox_id"] = first.id
        campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
        _record(
            session,
            customer_id=customer.id,
            channel=channel,
            direction="inbound",
            kind=kind,
            at=at,
            campaign=campaign,
            brand_id=brand_id,
            outcome=method,
            payload=payload,
        )
    session.flush()
    return changed


def _cancel_planned(session: Session, customer_id: int, channel: str, brand_id: int | None) -> int:
    """Cancel the marketing messages still waiting to go to the customer on the channel (for
    the brand; for every brand after a group-wide unsubscribe): an opt-out holds at once, not
    from the next plan. A message a dispatcher already claimed is past stopping."""
    query = update(Outbox).where(
        Outbox.customer_id == customer_id,
        Outbox.channel == channel,
        Outbox.state == "planned",
        Outbox.purpose == PURPOSE,
    )
    if brand_id is not None:
        query = query.where(Outbox.brand_id == brand_id)
    result = session.execute(
        query.values(
            state="cancelled", error="cancelled: the customer unsubscribed", updated_at=utcnow()
        ).execution_options(synchronize_session="fetch")
    )
    return cast(CursorResult[Any], result).rowcount


def _campaign_messages(
    session: Session,
    subscription: Subscription,
    customer_id: int,
    campaign_id: int | None,
    channel: str,
) -> list[Outbox]:
    """The campaign's messages to the customer on the channel (one; two after a merge)."""
    if campaign_id is None:
        return []
    owners = {customer_id}
    original = _id_or_none(subscription.customer_id, "customer_id")
    if original is not None:
        owners.add(original)
    query = (
        select(Outbox)
        .where(
            Outbox.campaign_id == campaign_id,
            Outbox.customer_id.in_(sorted(owners)),
            Outbox.channel == channel,
        )
        .order_by(Outbox.id)
    )
    return list(session.scalars(query))


# --- the preference center -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    """One channel of the preference center: the customer's current status for the brand
    (``granted``, ``withdrawn`` or ``none``), the masked contact point (None without one),
    whether the customer may change it here, and why not (``no_contact_point``, or the
    suppression reason that keeps the channel closed: ``hard_bounce``, ``complaint``...). A
    channel whose contact point is on the unsubscribe list shows ``withdrawn``: nothing goes
    out on it, whatever the consent says."""

    channel: str
    status: str
    contact: str | None
    changeable: bool
    blocked: str | None = None


@dataclass(frozen=True, slots=True)
class PreferenceView:
    """What the preference center shows: the first name (for the greeting only), the brand,
    each channel's status with a masked contact point, the language and the weekly maximum
    of marketing messages. Never a full address, email or phone number."""

    customer_id: int
    first_name: str | None
    brand_id: int | None
    brand_name: str | None
    channel: str
    channels: tuple[ChannelChoice, ...]
    language: str | None
    max_per_week: int | None

    def choice(self, channel: str) -> ChannelChoice | None:
        """The choice of one channel, or None when the center does not show it."""
        return next((c for c in self.channels if c.channel == channel), None)


def preference_view(session: Session, subscription: Subscription) -> PreferenceView:
    """The preference center of ``subscription``'s customer for its brand (the customer a
    merged record lives in). A channel's status is the consent that decides for this brand,
    as the planner reads it: the latest row for the channel or ``any``, for this brand or
    the whole group. Raises :class:`UnknownSubscriber` when the customer is unknown or
    erased."""
    customer = _active_customer(session, subscription.customer_id)
    if customer is None:
        raise UnknownSubscriber("the customer of this link is unknown or no longer active")
    brand_id = _id_or_none(subscription.brand_id, "brand_id")
    brand_name = (
        session.scalar(select(Brand.name).where(Brand.id == brand_id)) if brand_id else None
    )
    facts = _facts(session, customer.id)
    points = contact_points(customer)
    blocked, unsubscribed = _suppressed(session, points, brand_id)
    choices = []
    for channel in PREFERENCE_CHANNELS:
        winner = _winner(facts, channel, brand_id)
        status = "none" if winner is None else _plain_status(winner.status)
        if channel in unsubscribed:  # on the unsubscribe list: nothing goes out, whatever else
            status = "withdrawn"
        values = points.get(channel, [])
        reason = "no_contact_point" if not values else blocked.get(channel)
        changeable = bool(values) and (reason is None or status == "granted")
        contact = mask(channel, values[0]) if values else None
        choices.append(ChannelChoice(channel, status, contact, changeable, reason))
    general = _general_preference(session, customer.id)
    language = (general.language if general is not None else None) or customer.language
    return PreferenceView(
        customer_id=customer.id,
        first_name=customer.first_name,
        brand_id=brand_id,
        brand_name=brand_name,
        channel=subscription.channel,
        channels=tuple(choices),
        language=language,
        max_per_week=general.max_per_week if general is not None else None,
    )


def update_preferences(
    session: Session,
    subscription: Subscription,
    *,
    channels: Mapping[str, bool],
    language: str | None,
    max_per_week: int | None,
    at: datetime,
    proof: Mapping[str, str],
) -> list[str]:
    """Apply what the customer chose in the preference center; returns what changed, as
    ``"email:granted"``, ``"sms:withdrawn"``, ``"language"``, ``"max_per_week"`` (empty when
    nothing did).

    ``channels`` maps a channel to yes (True) or no (False); a channel left out is unchanged,
    and so is one that cannot be changed (see :class:`ChannelChoice`). A channel changed to
    yes gets a ``granted`` consent row for the brand (proof source ``preference_center``) and
    loses the ``unsubscribe`` suppressions of its contact points for this brand or the whole
    group (never a hard bounce, complaint, opposition or erasure); one changed to no is
    unsubscribed (see :func:`unsubscribe`, method ``preference_center``). ``language`` and
    ``max_per_week`` are the values wanted (None: none); they go to the customer's preference
    for every channel (``any``), whose days and hours are kept. A ``preferences_changed``
    interaction lists the changes. Effective at once: the planner reads ``consent_state``.
    Raises :class:`UnknownSubscriber`, or ConsentRuleError naming a bad field.
    """
    _writer(session)
    customer = _active_customer(session, subscription.customer_id)
    if customer is not None:
        _lock(session, customer.id)
    view = preference_view(session, subscription)
    language = consent_rules.check_language(language)
    max_per_week = consent_rules.check_max_per_week(max_per_week)
    for channel in channels:
        if channel not in PREFERENCE_CHANNELS:
            raise consent_rules.ConsentRuleError("channels", f"{channel!r} is not shown here")
    brand_id = view.brand_id
    campaign_id = _id_or_none(subscription.campaign_id, "campaign_id")
    details = {"method": "preference_center", **_proof_details(proof)}
    changes: list[str] = []
    for choice in view.channels:
        wanted = channels.get(choice.channel)
        if wanted is None or not choice.changeable:
            continue
        status = "granted" if wanted else "withdrawn"
        if status == choice.status:
            continue
        if wanted:
            row = consent_service.set_consent(
                session,
                customer_id=view.customer_id,
                channel=choice.channel,
                purpose=PURPOSE,
                brand_id=brand_id,
                status="granted",
                proof_source="preference_center",
                proof_text_version=TEXT_VERSION,
                collected_at=at,
                actor="customer",
            )
            row.proof = {**row.proof, **details}
            _lift_unsubscribes(session, view.customer_id, choice.channel, brand_id)
        else:
            _withdraw(
                session,
                Subscription(view.customer_id, choice.channel, brand_id, campaign_id),
                at=at,
                method="preference_center",
                proof=proof,
                proof_source="preference_center",
            )
        changes.append(f"{choice.channel}:{status}")
    general = _general_preference(session, view.customer_id)
    current_cap = general.max_per_week if general is not None else None
    language_changed = language is not None and language != view.language
    if language_changed or max_per_week != current_cap:
        consent_service.set_preference(
            session,
            customer_id=view.customer_id,
            channel="any",
            preferred=general.preferred if general is not None else False,
            days=general.days if general is not None else None,
            hours=general.hours if general is not None else None,
            language=language if language is not None else view.language,
            max_per_week=max_per_week,
        )
        if language_changed:
            changes.append("language")
        if max_per_week != current_cap:
            changes.append("max_per_week")
    if changes:
        campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
        _record(
            session,
            customer_id=view.customer_id,
            channel="web",
            direction="inbound",
            kind="preferences_changed",
            at=at,
            campaign=campaign,
            brand_id=brand_id,
            outcome=None,
            payload={"changes": changes, "method": "preference_center"},
        )
    session.flush()
    return changes


def _lift_unsubscribes(
    session: Session, customer_id: int, channel: str, brand_id: int | None
) -> None:
    """Remove the ``unsubscribe`` suppressions of the customer's contact points on the
    channel for this brand and the whole group (all of them for a group-wide grant)."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        return
    hashes = [contact_hash(channel, v) for v in contact_points(customer).get(channel, [])]
    if not hashes:
        return
    query = delete(Suppression).where(
        Suppression.channel == channel,
        Suppression.value_hash.in_(hashes),
        Suppression.reason == "unsubscribe",
    )
    if brand_id is not None:
        query = query.where(or_(Suppression.brand_id.is_(None), Suppression.brand_id == brand_id))
    session.execute(query.execution_options(synchronize_session=False))


def _general_preference(session: Session, customer_id: int) -> Preference | None:
    return session.scalar(
        select(Preference).where(Preference.customer_id == customer_id, Preference.channel == "any")
    )


def _suppressed(
    session: Session, points: Mapping[str, list[str]], brand_id: int | None
) -> tuple[dict[str, str], set[str]]:
    """The channels the suppression list keeps closed whatever the consent (channel -> the
    reason), and those on the unsubscribe list for this brand or the whole group."""
    wanted = {
        (channel, contact_hash(channel, value))
        for channel, values in points.items()
        for value in values
    }
    if not wanted:
        return {}, set()
    rows = session.execute(
        select(
            Suppression.channel, Suppression.value_hash, Suppression.reason, Suppression.brand_id
        ).where(
            Suppression.value_hash.in_(sorted({h for _, h in wanted})),
            Suppression.reason.in_((*BLOCKING_REASONS, "unsubscribe")),
            or_(Suppression.expires_at.is_(None), Suppression.expires_at > utcnow()),
        )
    )
    blocked: dict[str, str] = {}
    unsubscribed: set[str] = set()
    for channel, value_hash, reason, sup_brand in rows:
        if (channel, value_hash) not in wanted:
            continue
        if reason != "unsubscribe":
            blocked.setdefault(channel, reason)
        elif sup_brand is None or sup_brand == brand_id:
            unsubscribed.add(channel)
    return blocked, unsubscribed


# --- bounces and complaints ------------------------------------------------------------------


@dataclass
class BounceReport:
    """What an import of returned mail found: messages read, hard and soft bounces,
    complaints, bounces or complaints whose message is not in the outbox (``unknown``),
    mail that is neither (``rejected``: an auto-reply, a delivery notice, unreadable), and
    bounces or complaints already imported (``already_known``: nothing written again)."""

    read: int = 0
    bounces_hard: int = 0
    bounces_soft: int = 0
    complaints: int = 0
    unknown: int = 0
    rejected: int = 0
    already_known: int = 0


def import_bounces(session: Session, messages: Iterable[bytes], *, at: datetime) -> BounceReport:
    """Read returned mail (bounces, ARF complaints) and record it on the messages it is about,
    found by the ``X-Tournesol-Outbox`` header or the Message-ID of the returned message.

    A hard bounce moves the message to ``bounced`` (``bounced_at`` = ``at``), suppresses the
    address it went to (reason ``hard_bounce``, every brand) and adds an ``email_bounced``
    interaction (outcome: the status code). A soft bounce adds the interaction only (outcome
    ``soft``). A complaint unsubscribes the customer (method ``complaint``), suppresses the
    address (reason ``complaint``) and adds ``email_complaint``. Importing the same mail again
    writes nothing. Returns the counts; never raises on a malformed message (it is counted
    as rejected).
    """
    _writer(session)
    report = BounceReport()
    for raw in messages:
        report.read += 1
        try:
            # parsing costs milliseconds: an ARF report always names its type, so mail that
            # does not is read once, as a possible bounce
            complaint = email_channel.parse_complaint(raw) if _ARF.search(raw) else None
            bounce = None if complaint is not None else email_channel.parse_bounce(raw)
        except Exception:  # one unreadable mail must not stop the import
            report.rejected += 1
            continue
        found = complaint or bounce
        if found is None:
            report.rejected += 1
            continue
        message = _outbox_by_key(session, found.outbox_key)
        if message is None or message.channel != "email":
            report.unknown += 1
            continue
        fingerprint = hashlib.sha256(raw).hexdigest()[:32]
        if complaint is not None:
            report.complaints += 1
            new = _complaint(session, message, complaint, at=at, fingerprint=fingerprint)
        else:
            assert bounce is not None
            if bounce.hard:
                report.bounces_hard += 1
                new = _hard_bounce(session, message, bounce, at=at, fingerprint=fingerprint)
            else:
                report.bounces_soft += 1
                new = _soft_bounce(session, message, bounce, at=at, fingerprint=fingerprint)
        if not new:
            report.already_known += 1
    session.flush()
    return report


def _hard_bounce(
    session: Session,
    message: Outbox,
    bounce: email_channel.Bounce,
    *,
    at: datetime,
    fingerprint: str,
) -> bool:
    changed = False
    if message.bounced_at is None:
        message.bounced_at = at
        changed = True
    if message.state in (*_OUT, "delivered"):
        message.state = "bounced"
        message.error = f"hard bounce {bounce.status or ''}".strip()[:300]
        changed = True
    if changed:
        message.updated_at = utcnow()
    address = message.address or bounce.recipient
    if address:
        changed |= _suppress(
            session,
            channel="email",
            value=address,
            reason="hard_bounce",
            brand_id=None,
            source=f"outbox {message.id} (bounce)",
        )
    if changed:
        payload = {"outbox_id": message.id, "report": fingerprint}
        _event(
            session, message, "email", "inbound", "email_bounced", at, payload,
            outcome=bounce.status or "hard",
        )  # fmt: skip
    return changed


def _soft_bounce(
    session: Session,
    message: Outbox,
    bounce: email_channel.Bounce,
    *,
    at: datetime,
    fingerprint: str,
) -> bool:
    if _reported(session, message, "email_bounced", fingerprint):
        return False
    payload = {"outbox_id": message.id, "report": fingerprint}
    if bounce.status:
        payload["status"] = bounce.status
    _event(session, message, "email", "inbound", "email_bounced", at, payload, outcome="soft")
    return True


def _complaint(
    session: Session,
    message: Outbox,
    complaint: email_channel.Complaint,
    *,
    at: datetime,
    fingerprint: str,
) -> bool:
    proof = {"feedback_type": complaint.feedback_type}
    if complaint.user_agent:
        proof["reporter"] = complaint.user_agent[:100]
    subscription = Subscription(message.customer_id, "email", message.brand_id, message.campaign_id)
    changed = unsubscribe(session, subscription, at=at, method="complaint", proof=proof)
    if message.address:
        changed |= _suppress(
            session,
            channel="email",
            value=message.address,
            reason="complaint",
            brand_id=None,
            source=f"outbox {message.id} (complaint)",
        )
    if not _reported(session, message, "email_complaint", None):
        payload = {"outbox_id": message.id, "report": fingerprint}
        _event(
            session, message, "email", "inbound", "email_complaint", at, payload,
            outcome=complaint.feedback_type,
        )  # fmt: skip
        changed = True
    return changed


def _reported(session: Session, message: Outbox, kind: str, fingerprint: str | None) -> bool:
    """Whether the timeline has this kind of event about the message (from this report)."""
    query = select(Interaction.id).where(
        Interaction.customer_id == message.customer_id,
        Interaction.type == kind,
        Interaction.payload["outbox_id"].as_integer() == message.id,
    )
    if fingerprint is not None:
        query = query.where(Interaction.payload["report"].as_string() == fingerprint)
    return session.scalar(query.limit(1)) is not None


def read_mailbox(path: Path) -> Iterator[bytes]:
    """The raw messages of ``path``: a Maildir (a folder with ``cur``, ``new`` and ``tmp``), a
    folder of ``.eml`` files (sorted by name, subfolders included), an mbox file (it starts
    with a ``From`` line) or a single message file. One message at a time (memory stays flat).
    Raises FileNotFoundError when ``path`` does not exist."""
    if path.is_dir():
        if all((path / part).is_dir() for part in ("cur", "new", "tmp")):
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.iterkeys()):
                yield box.get_bytes(key)
            return
        for item in sorted(path.rglob("*.eml")):
            if item.is_file():
                yield item.read_bytes()
        return
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    with path.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        mbox = mailbox.mbox(path, factory=None, create=False)
        try:
            for key in mbox.iterkeys():
                yield mbox.get_bytes(key)
        finally:
            mbox.close()
        return
    yield path.read_bytes()


# --- SMS -------------------------------------------------------------------------------------


def sms_status(session: Session, *, sid: str, state: str, at: datetime) -> bool:
    """Record an SMS delivery report for the message whose provider id is ``sid``.

    ``state`` is what ``channels.sms.parse_status_callback`` gives (or the provider's own
    status): ``delivered`` moves the message to ``delivered`` (``delivered_at`` = ``at``) with
    an ``sms_delivered`` interaction; ``bounced``, ``undelivered`` or ``failed`` move it to
    ``failed`` with ``sms_undelivered``; ``sent`` and in-flight statuses change nothing.
    Only a message in ``sent`` (or ``in_doubt``) moves: a report arriving late or out of
    order never moves a message backwards. Returns True when the message moved.
    """
    target = {
        "delivered": "delivered",
        "read": "delivered",
        "bounced": "failed",
        "undelivered": "failed",
        "failed": "failed",
    }.get(state)
    if target is None:
        return False
    values: dict[str, Any] = {"state": target, "updated_at": utcnow()}
    if target == "delivered":
        values["delivered_at"] = at
    else:
        values["error"] = f"SMS {state} (delivery report)"
    result = session.execute(
        update(Outbox)
        .where(Outbox.provider_id == sid, Outbox.channel == "sms", Outbox.state.in_(_OUT))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount < 1:
        return False
    moved = session.scalars(
        select(Outbox)
        .where(Outbox.provider_id == sid, Outbox.channel == "sms")
        .execution_options(populate_existing=True)
    ).all()
    kind = "sms_delivered" if target == "delivered" else "sms_undelivered"
    for message in moved:
        if message.state == target:
            _event(session, message, "sms", "inbound", kind, at, {"outbox_id": message.id},
                   outcome=state)  # fmt: skip
    return True


def sms_inbound(session: Session, *, from_number: str, body: str, at: datetime) -> int:
    """Act on an incoming SMS: a STOP reply (``channels.sms.is_stop``) from ``from_number``
    (E.164) withdraws the SMS consent of every active customer whose mobile it is, for every
    brand at once (one group-wide row: all brands send from the same number, so a STOP cannot
    be told apart by brand), marks the latest SMS they received as unsubscribed, and
    suppresses the number on SMS, whoever it belongs to now. Other replies change nothing.
    Returns how many customers were unsubscribed (0 when they already were)."""
    if not sms_channel.is_stop(body):
        return 0
    number = from_number.strip().replace(" ", "")
    if not _E164.fullmatch(number):
        return 0
    _writer(session)
    # the golden mobile (indexed), and a number the customer gave in another record
    holders = (
        select(Identifier.customer_id)
        .where(Identifier.kind == "phone_mobile", Identifier.value == number)
        .union(select(Customer.id).where(Customer.phone_mobile == number))
    )
    customers = session.scalars(
        select(Customer.id)
        .where(Customer.id.in_(holders), Customer.status == "active")
        .order_by(Customer.id)
    ).all()
    affected = 0
    for customer_id in customers:
        latest = session.scalar(
            select(Outbox.campaign_id)
            .where(
                Outbox.customer_id == customer_id,
                Outbox.channel == "sms",
                Outbox.sent_at.is_not(None),
            )
            .order_by(Outbox.sent_at.desc(), Outbox.id.desc())
            .limit(1)
        )
        subscription = Subscription(customer_id, "sms", None, latest)
        if unsubscribe(session, subscription, at=at, method="sms_stop", proof={}):
            affected += 1
    _suppress(
        session,
        channel="sms",
        value=number,
        reason="unsubscribe",
        brand_id=None,
        source="sms_stop",
    )
    session.flush()
    return affected


# --- call-center outcomes --------------------------------------------------------------------


@dataclass
class OutcomeReport:
    """What an import of call outcomes did: data rows read, outcomes recorded, outcomes whose
    outbox key names no telephone message (``unknown``), outcomes already recorded by an
    earlier import, and the rows not recorded with their line number and reason (the file's
    own rejects and the unknown keys), in line order."""

    read: int = 0
    recorded: int = 0
    unknown: int = 0
    already_recorded: int = 0
    rejects: list[tuple[int, str]] = field(default_factory=list)


def import_call_outcomes(session: Session, data: bytes, *, at: datetime) -> OutcomeReport:
    """Record a call center's outcome file (see ``channels.callcenter.read_outcomes``).

    Each outcome adds a ``call`` interaction (phone, outbound, outcome = the outcome code,
    subject = the campaign's name, at the call's time; agent and note in the payload); a
    customer reached moves the message to ``delivered``; ``do_not_call`` withdraws the
    telephone consent for the campaign's brand (unsubscribe, method ``call_outcome``). One
    interaction per message and call time: importing the file again records nothing. ``at``
    is when the import runs. Raises ``callcenter.OutcomeFileError`` when the file lacks a
    required column.
    """
    outcomes, rejects = callcenter.read_outcomes(data)
    _writer(session)
    report = OutcomeReport(read=len(outcomes) + len(rejects))
    report.rejects.extend((r.line_no, f"{r.code}: {r.reason}") for r in rejects)
    for outcome in outcomes:
        message = _outbox_by_key(session, outcome.outbox_key)
        if message is None or message.channel != "phone":
            report.unknown += 1
            report.rejects.append(
                (outcome.line_no, "unknown_key: no telephone message has this outbox key")
            )
            continue
        called_at = outcome.called_at.astimezone(UTC)
        known = session.scalar(
            select(Interaction.id)
            .where(
                Interaction.customer_id == message.customer_id,
                Interaction.type == "call",
                Interaction.occurred_at == called_at,
                Interaction.payload["outbox_id"].as_integer() == message.id,
            )
            .limit(1)
        )
        if known is not None:
            report.already_recorded += 1
            continue
        if outcome.outcome.reached and message.state in _OUT:
            message.state = "delivered"
            message.delivered_at = called_at
            message.updated_at = utcnow()
        payload: dict[str, Any] = {"outbox_id": message.id, "line": outcome.line_no}
        if outcome.agent:
            payload["agent"] = outcome.agent[:100]
        if outcome.note:
            payload["note"] = outcome.note[:500]
        _event(
            session, message, "phone", "outbound", "call", called_at, payload,
            outcome=outcome.outcome.value,
        )  # fmt: skip
        if outcome.opposition:
            subscription = Subscription(
                message.customer_id, "phone", message.brand_id, message.campaign_id
            )
            unsubscribe(
                session,
                subscription,
                at=called_at,
                method="call_outcome",
                proof={"line": str(outcome.line_no)},
            )
        report.recorded += 1
    report.rejects.sort()
    session.flush()
    return report


# --- contact points and masking --------------------------------------------------------------


def contact_points(customer: Customer) -> dict[str, list[str]]:
    """The customer's contact points per channel, as the planner reads them (and so hashes
    them for the suppression list): the email, the mobile for SMS, the mobile then the fixed
    line for the telephone, the six address lines joined by ``|`` when the address is
    complete (a street or locality line and the postal code and town line)."""
    address = None
    if (customer.address_line4 or customer.address_line5) and customer.address_line6:
        lines = (
            customer.address_line1, customer.address_line2, customer.address_line3,
            customer.address_line4, customer.address_line5, customer.address_line6,
        )  # fmt: skip
        address = "|".join(line or "" for line in lines)
    return {
        "email": [customer.email] if customer.email else [],
        "sms": [customer.phone_mobile] if customer.phone_mobile else [],
        "phone": [v for v in (customer.phone_mobile, customer.phone_fixed) if v],
        "postal": [address] if address else [],
    }


def mask(channel: str, value: str) -> str:
    """A contact point shown without giving it away: ``a•••@example.fr``,
    ``+33 6 •• •• •• 78``, ``69••• LYON`` (the postal code's department and the town).

    >>> mask("email", "ana.dupont@example.fr"), mask("sms", "+33612345678")
    ('a•••@example.fr', '+33 6 •• •• •• 78')
    >>> mask("postal", "|||12 RUE DES LILAS||69003 LYON")
    '69••• LYON'
    """
    text = value.strip()
    if channel == "email":
        local, at, domain = text.rpartition("@")
        if not at or not local:
            return _MASK
        return f"{local[0]}{_MASK}@{domain}"
    if channel in ("sms", "phone"):
        digits = re.sub(r"\D", "", text)
        try:
            number = phonenumbers.parse(text if text.startswith("+") else f"+{digits}")
        except phonenumbers.NumberParseException:
            return f"{_MASK} {digits[-2:]}" if len(digits) >= 2 else _MASK
        national = str(number.national_number)
        if number.country_code == 33 and len(national) == 9:
            return f"+33 {national[0]} •• •• •• {national[-2:]}"
        return f"+{number.country_code} {_MASK} {national[-2:]}"
    if channel == "postal":
        last = text.split("|")[-1].strip()
        found = _POSTAL_CITY.fullmatch(last)
        return f"{found.group(1)}{_MASK} {found.group(2)}" if found else _MASK
    return _MASK


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fact:
    channel: str
    brand_id: int | None
    status: str
    collected_at: datetime


def _facts(session: Session, customer_id: int) -> list[_Fact]:
    s = ConsentState
    rows = session.execute(
        select(s.channel, s.brand_id, s.status, s.collected_at).where(
            s.customer_id == customer_id, s.purpose == PURPOSE
        )
    )
    return [_Fact(*row) for row in rows]


def _winner(facts: Iterable[_Fact], channel: str, brand_id: int | None) -> _Fact | None:
    """The fact that decides for a channel and a brand, as ``campaigns.rules.decide_consent``
    picks it: for the channel or ``any``, this brand or the group; the latest; a refusal
    beats a grant on a tie."""
    best: _Fact | None = None
    for fact in facts:
        if fact.channel not in (channel, "any"):
            continue
        if fact.brand_id is not None and fact.brand_id != brand_id:
            continue
        if best is None or (fact.collected_at, fact.status != "granted") > (
            best.collected_at,
            best.status != "granted",
        ):
            best = fact
    return best


def _plain_status(status: str) -> str:
    return "granted" if status == "granted" else "withdrawn"


def _suppress(
    session: Session,
    *,
    channel: str,
    value: str,
    reason: str,
    brand_id: int | None,
    source: str,
) -> bool:
    """Add a suppression unless one already covers it (same reason, the brand or the group,
    not expired); True when added."""
    value_hash = contact_hash(channel, value)
    query = select(Suppression.id).where(
        Suppression.channel == channel,
        Suppression.value_hash == value_hash,
        Suppression.reason == reason,
        or_(Suppression.expires_at.is_(None), Suppression.expires_at > utcnow()),
    )
    if brand_id is None:
        query = query.where(Suppression.brand_id.is_(None))
    else:
        query = query.where(or_(Suppression.brand_id.is_(None), Suppression.brand_id == brand_id))
    if session.scalar(query.limit(1)) is not None:
        return False
    session.add(
        Suppression(
            channel=channel,
            value_hash=value_hash,
            reason=reason,
            brand_id=brand_id,
            source=source[:200],
            created_at=utcnow(),
        )
    )
    session.flush()
    return True


def _proof_details(proof: Mapping[str, str]) -> dict[str, str]:
    """The proof entries to keep: short strings; an IP address only as its SHA-256."""
    kept: dict[str, str] = {}
    for key, value in proof.items():
        name = str(key)[:40]
        text = str(value)[:300]
        if name.lower() in _IP_KEYS:
            name, text = "ip_hash", hashlib.sha256(f"ip:{text}".encode()).hexdigest()
        kept[name] = text
    return kept


def _channel(channel: str) -> str:
    if channel not in consent_rules.CHANNELS or channel == "any":
        raise ValueError("channel: not a contact channel")
    return channel


def _id_or_none(value: Key | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"{name}: not a row id")


def _active_customer(session: Session, key: Key) -> Customer | None:
    """The active customer of a link (the one a merged customer lives in), or None."""
    try:
        customer_id = _id_or_none(key, "customer_id")
    except ValueError:
        return None
    if customer_id is None:
        return None
    survivor = survivor_of(session, customer_id=customer_id)
    return session.get(Customer, survivor) if survivor is not None else None


def _writer(session: Session) -> None:
    """Make the transaction a writer before it reads what it decides on (SQLite cannot turn
    a reader into a writer once another connection committed; PostgreSQL: nothing to do)."""
    Dialect.of(session).claim_write(session.connection(), cast(Table, Outbox.__table__))


def _lock(session: Session, customer_id: int) -> None:
    """Hold the customer's row until the transaction ends: two opt-outs or two saves of the
    preference center for one customer at once are recorded one after the other."""
    session.execute(select(Customer.id).where(Customer.id == customer_id).with_for_update())


def _outbox_by_key(session: Session, key: str | None) -> Outbox | None:
    """The message a returned key names: an outbox id (what messages and call lists carry),
    else the outbox ``key`` column."""
    if not key:
        return None
    text = key.strip()
    if text.isdigit():
        return session.get(Outbox, int(text))
    return session.scalar(select(Outbox).where(Outbox.key == text))


def _claim(session: Session, outbox_id: int, *, channel: str) -> Outbox | None:
    """Lock the message's row by writing it first (two requests about it at once wait for
    each other), then read it as it is now."""
    result = session.execute(
        update(Outbox)
        .where(Outbox.id == outbox_id, Outbox.channel == channel)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        return None
    return _reload(session, outbox_id)


def _reload(session: Session, outbox_id: int) -> Outbox:
    message = session.get(Outbox, outbox_id, populate_existing=True)
    assert message is not None
    return message


def _event(
    session: Session,
    message: Outbox,
    channel: str,
    direction: str,
    kind: str,
    at: datetime,
    payload: dict[str, Any],
    *,
    outcome: str | None = None,
) -> None:
    """A timeline row about one message, with its campaign's code and name."""
    campaign = session.get(Campaign, message.campaign_id) if message.campaign_id else None
    _record(
        session,
        customer_id=message.customer_id,
        channel=channel,
        direction=direction,
        kind=kind,
        at=at,
        campaign=campaign,
        brand_id=message.brand_id,
        outcome=outcome,
        payload=payload,
    )


def _record(
    session: Session,
    *,
    customer_id: int,
    channel: str,
    direction: str,
    kind: str,
    at: datetime,
    campaign: Campaign | None,
    brand_id: int | None,
    outcome: str | None,
    payload: dict[str, Any],
) -> None:
    session.add(
        Interaction(
            customer_id=customer_id,
            occurred_at=at,
            channel=channel,
            direction=direction,
            type=kind,
            subject=campaign.name[:300] if campaign is not None else None,
            outcome=outcome[:100] if outcome else None,
            campaign_code=campaign.code if campaign is not None else None,
            brand_id=brand_id,
            payload=payload,
            created_at=utcnow(),
        )
    )
    session.flush()
