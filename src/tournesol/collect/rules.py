"""What an event sent to the Segment-compatible endpoints must look like, and what it means
for the timeline (pure: no database, no web framework).

An event is read from the JSON the Segment and RudderStack SDKs send (the Segment Spec:
``type``, ``messageId``, ``userId`` / ``anonymousId``, ``timestamp``, ``context``,
``properties`` or ``traits``...). A malformed event raises :class:`Malformed` with the reason
the collector answers (HTTP 400); in a batch, one malformed event rejects the whole batch.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from unidecode import unidecode

from tournesol.quality.emails import normalize_email
from tournesol.quality.phones import normalize_phone

MAX_EVENT_BYTES: Final = 32 * 1024  # Segment's limit per event
MAX_BATCH_BYTES: Final = 500 * 1024  # Segment's limit per request (after decompression)
EVENT_TYPES: Final = ("identify", "track", "page", "screen", "group", "alias")
MAX_ID: Final = 300  # userId, anonymousId, previousId, groupId
MAX_MESSAGE_ID: Final = 200
MAX_NAME: Final = 200  # track's event name, page's and screen's name
MAX_TYPE: Final = 60  # interaction.type
MAX_SUBJECT: Final = 300  # interaction.subject
# The interaction type of each event type but track (whose event name gives it).
INTERACTION_TYPES: Final = {
    "identify": "identify",
    "page": "page_view",
    "screen": "screen_view",
    "group": "group",
    "alias": "alias",
}


class Malformed(ValueError):
    """An event or a request the collector refuses; the message says why (HTTP 400)."""


@dataclass(slots=True)
class Event:
    """One event, checked, with what the collector needs to file it.

    ``payload`` is the event as it is stored (the batch's context merged in, ``messageId``,
    ``receivedAt`` and ``sentAt`` set, no ``writeKey``); ``details`` is what the timeline
    shows (properties or traits); ``email`` and ``phone`` are the contact points the event
    carries, normalized as identifiers are (lower-case e-mail, E.164 phone)."""

    message_id: str
    type: str
    name: str | None
    user_id: str | None
    anonymous_id: str | None
    occurred_at: datetime
    channel: str
    interaction_type: str
    subject: str | None
    payload: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    previous_id: str | None = None
    email: str | None = None
    phone: str | None = None


# --- the request ---------------------------------------------------------------------------


def write_key_of(authorization: str | None) -> str | None:
    """The write key in an ``Authorization`` header: the user name of HTTP basic auth (the
    SDKs send ``base64("<key>:")``), or a bearer token.

    >>> write_key_of("Basic " + base64.b64encode(b"tsk_ab12_secret:").decode())
    'tsk_ab12_secret'
    """
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0].strip() or None


def read_body(raw: bytes, *, encoding: str | None = None) -> dict[str, Any]:
    """The JSON object of a request body, gunzipped when ``encoding`` (the Content-Encoding
    header) says gzip. Raises Malformed when it is larger than MAX_BATCH_BYTES once
    decompressed, not valid JSON, or not an object."""
    coding = (encoding or "identity").strip().lower()
    if coding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
        except zlib.error:
            raise Malformed("the body says it is gzip-compressed but is not") from None
    elif coding != "identity":
        raise Malformed(f"Content-Encoding {coding!r} is not supported: send gzip or nothing")
    if len(raw) > MAX_BATCH_BYTES:
        raise Malformed(f"the request is larger than {MAX_BATCH_BYTES // 1024}KB")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Malformed("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Malformed("the body must be a JSON object")
    return body


def read_batch(body: Mapping[str, Any], *, received_at: datetime) -> list[Event]:
    """The events of a ``/v1/batch`` body, all or none: raises Malformed naming the first
    faulty event (``batch[3]: ...``). The batch's ``context`` and ``integrations`` apply to
    each event (the event's own keys win), its ``sentAt`` to events without one."""
    items = body.get("batch")
    if not isinstance(items, list):
        raise Malformed("batch: a list of events is required")
    shared = {k: body[k] for k in ("context", "integrations", "sentAt") if body.get(k) is not None}
    for name in ("context", "integrations"):
        if name in shared and not isinstance(shared[name], dict):
            raise Malformed(f"{name} must be an object")
    events: list[Event] = []
    for index, item in enumerate(items):
        try:
            events.append(read_event(item, received_at=received_at, shared=shared))
        except Malformed as exc:
            raise Malformed(f"batch[{index}]: {exc}") from None
    return events


# --- one event -----------------------------------------------------------------------------


def read_event(
    data: Any,
    *,
    received_at: datetime,
    kind: str | None = None,
    shared: Mapping[str, Any] | None = None,
) -> Event:
    """One event, checked. ``kind`` is the type the endpoint implies (``/v1/track``); in a
    batch each event says its ``type``. ``shared`` holds the batch's context, integrations
    and sentAt. Raises Malformed with the reason.

    >>> e = read_event({"userId": "u1", "event": "Order Completed",
    ...                 "timestamp": "2025-03-01T10:00:00Z", "messageId": "m1"},
    ...                kind="track", received_at=datetime(2025, 3, 1, 10, 0, 5, tzinfo=UTC))
    >>> e.interaction_type, e.channel, e.occurred_at.isoformat()
    ('order_completed', 'web', '2025-03-01T10:00:00+00:00')
    """
    if not isinstance(data, dict):
        raise Malformed("an event must be a JSON object")
    if len(orjson.dumps(data)) > MAX_EVENT_BYTES:
        raise Malformed(f"the event is larger than {MAX_EVENT_BYTES // 1024}KB")
    event_type = kind or data.get("type")
    if event_type not in EVENT_TYPES:
        given = kind or data.get("type")
        if given is None:
            raise Malformed(f"type is required: one of {', '.join(EVENT_TYPES)}")
        raise Malformed(f"type {str(given)[:40]!r} is not one of {', '.join(EVENT_TYPES)}")
    shared = shared or {}
    payload = {k: v for k, v in data.items() if k != "writeKey"}
    payload["type"] = event_type
    context = _object(data, "context")
    if "context" in shared:
        context = {**shared["context"], **context}
    payload["context"] = context
    if "integrations" in shared:
        payload["integrations"] = {**shared["integrations"], **_object(data, "integrations")}

    user_id = _identifier(data.get("userId"), "userId")
    anonymous_id = _identifier(data.get("anonymousId"), "anonymousId")
    previous_id = _identifier(data.get("previousId"), "previousId")
    group_id = _identifier(data.get("groupId"), "groupId")
    if event_type == "alias":
        if user_id is None or previous_id is None:
            raise Malformed("alias needs a userId and a previousId")
    elif user_id is None and anonymous_id is None:
        raise Malformed("userId or anonymousId is required")
    if event_type == "group" and group_id is None:
        raise Malformed("group needs a groupId")

    message_id = _identifier(data.get("messageId"), "messageId", limit=MAX_MESSAGE_ID)
    if message_id is None:  # Segment sets one; an event without one can only be stored once
        message_id = f"tournesol-{uuid.uuid4()}"
    payload["messageId"] = message_id

    timestamp = _time(data.get("timestamp"), "timestamp")
    original = _time(data.get("originalTimestamp"), "originalTimestamp")
    sent_at = _time(data.get("sentAt", shared.get("sentAt")), "sentAt")
    occurred_at = event_time(timestamp, original, sent_at, received_at)
    payload["receivedAt"] = received_at.isoformat()
    if sent_at is not None:
        payload["sentAt"] = sent_at.isoformat()

    properties = _object(data, "properties")
    traits = _object(data, "traits")
    name = _name(data, event_type)
    if event_type == "track":
        details: dict[str, Any] = properties
        interaction_type = normalize_event_name(name or "")
        subject = name
    elif event_type in ("page", "screen"):
        details = properties
        interaction_type = INTERACTION_TYPES[event_type]
        subject = name or _text(properties.get("title")) or _text(properties.get("path"))
    elif event_type == "identify":
        details, interaction_type, subject = traits, "identify", None
    elif event_type == "group":
        details, interaction_type, subject = {**traits, "groupId": group_id}, "group", group_id
    else:
        details, interaction_type, subject = {"previousId": previous_id}, "alias", None

    # The person's traits: an identify's own, else those the SDK copies into the context
    # (a group's traits describe the company, not the person).
    person = traits if event_type == "identify" else _object(context, "traits")
    email = contact_email(person.get("email"))
    if email is None and user_id is not None and "@" in user_id:
        email = contact_email(user_id)
    return Event(
        message_id=message_id,
        type=event_type,
        name=name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        occurred_at=occurred_at,
        channel=channel_of(event_type, data, context),
        interaction_type=interaction_type,
        subject=subject[:MAX_SUBJECT] if subject else None,
        payload=payload,
        details=details,
        previous_id=previous_id,
        email=email,
        phone=contact_phone(person.get("phone")),
    )


def event_time(
    timestamp: datetime | None,
    original: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
) -> datetime:
    """When the event happened, as Segment computes it: ``timestamp`` when given; else
    ``originalTimestamp`` corrected by the device's clock skew (``receivedAt - (sentAt -
    originalTimestamp)``) when ``sentAt`` is known; else ``originalTimestamp``; else the
    time it was received."""
    if timestamp is not None:
        return timestamp
    if original is not None:
        return received_at - (sent_at - original) if sent_at is not None else original
    return received_at


# A word starts at a capital after a small letter or a digit (orderCompleted), or at the last
# capital of a run followed by a small letter (URLClicked).
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalize_event_name(name: str) -> str:
    """The interaction type of a track event's name: ASCII lower case words joined by ``_``
    (camelCase split), at most 60 characters; ``event`` when nothing is left.

    >>> normalize_event_name("Order Completed"), normalize_event_name("productViewed")
    ('order_completed', 'product_viewed')
    >>> normalize_event_name("URLClicked")
    'url_clicked'
    >>> normalize_event_name("Ajouté au panier (v2)")
    'ajoute_au_panier_v2'
    """
    text = _CAMEL.sub("_", unidecode(name)).lower()
    text = _NOT_WORD.sub("_", text).strip("_")
    return text[:MAX_TYPE].rstrip("_") or "event"


def channel_of(event_type: str, data: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """``app`` for screens and events from mobile SDKs (they describe the app in
    ``context.app``; RudderStack says ``channel: mobile``), else ``web``."""
    if event_type == "screen" or data.get("channel") == "mobile":
        return "app"
    return "app" if isinstance(context.get("app"), dict) else "web"


def contact_email(value: Any) -> str | None:
    """An e-mail as the identifier table holds it (normalized, lower case), or None."""
    if not isinstance(value, str):
        return None
    result = normalize_email(value)
    return result.value.lower() if result.value else None


def contact_phone(value: Any) -> str | None:
    """A phone number in E.164 (national numbers read as French), or None."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    return normalize_phone(str(value)).value


# --- fields --------------------------------------------------------------------------------


def _identifier(value: Any, name: str, *, limit: int = MAX_ID) -> str | None:
    """An id as the SDKs send it (a string, or a number they did not stringify)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Malformed(f"{name} must be a string")
    if isinstance(value, float):
        if not value.is_integer():
            raise Malformed(f"{name} must be a string")
        value = int(value)
    text = str(value).strip()
    if len(text) > limit:
        raise Malformed(f"{name} is longer than {limit} characters")
    return text or None


def _time(value: Any, name: str) -> datetime | None:
    """An ISO 8601 date-time (UTC when it has no offset)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"{name} must be an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Malformed(f"{name} {value[:40]!r} is not an ISO 8601 date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _object(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{name} must be an object")
    return value


def _name(data: Mapping[str, Any], event_type: str) -> str | None:
    field_name = "event" if event_type == "track" else "name"
    value = data.get(field_name)
    if value is not None and not isinstance(value, str):
        raise Malformed(f"{field_name} must be a string")
    text = (value or "").strip()
    if event_type == "track" and not text:
        raise Malformed("track needs an event name (event)")
    if len(text) > MAX_NAME:
        raise Malformed(f"{field_name} is longer than {MAX_NAME} characters")
    return text or None


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


# --- who sent it ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolution:
    """The customer behind each event (None: nobody known yet), and the links the batch
    teaches: (``anonymous`` or ``user``, value) -> (customer, index of the teaching event)."""

    owners: list[int | None]
    learned: dict[tuple[str, str], tuple[int, int]]


def resolve(
    events: list[Event],
    *,
    identifiers: Mapping[tuple[str, str], int],
    links: Mapping[tuple[str, str], int],
) -> Resolution:
    """Who sent each event, in this order of evidence:

    1. the ``userId``: a link this source learned before, else the customer holding it as
       an ``account_id`` identifier;
    2. the e-mail, then the phone the event carries (traits), as identifiers;
    3. for events without a userId only: the link of their ``anonymousId``.

    ``identifiers`` maps (``account_id`` | ``email`` | ``phone``, value) to the one customer
    holding it (values several customers share are left out by the caller: they prove
    nothing); ``links`` maps (``anonymous`` | ``user``, value) to the linked customer.

    An event resolved by 1 or 2 teaches links: its anonymousId (and an alias's previousId)
    stands for that customer, and so does its userId when only the e-mail or phone proved
    it. Existing links win, and within the batch the earliest event does. Events the batch's
    new links cover are resolved too, whatever their place in the batch. An anonymous link
    never speaks for an event that has a userId: a shared device must not file one person's
    events on another's timeline."""
    owners: list[int | None] = [None] * len(events)
    learned: dict[tuple[str, str], tuple[int, int]] = {}
    for i in sorted(range(len(events)), key=lambda i: events[i].occurred_at):
        event = events[i]
        owner = None
        if event.user_id is not None:
            owner = links.get(("user", event.user_id)) or identifiers.get(
                ("account_id", event.user_id)
            )
        by_user = owner is not None
        if owner is None and event.email is not None:
            owner = identifiers.get(("email", event.email))
        if owner is None and event.phone is not None:
            owner = identifiers.get(("phone", event.phone))
        if owner is None:
            continue
        owners[i] = owner
        taught: list[tuple[str, str]] = []
        if event.anonymous_id is not None:
            taught.append(("anonymous", event.anonymous_id))
        if event.user_id is not None and not by_user:
            taught.append(("user", event.user_id))
        if event.previous_id is not None:
            taught += [("anonymous", event.previous_id), ("user", event.previous_id)]
        for key in taught:
            if key not in links:
                learned.setdefault(key, (owner, i))
    known = {key: owner for key, (owner, _) in learned.items()} | dict(links)
    for i, event in enumerate(events):
        if owners[i] is None:
            if event.user_id is not None:
                owners[i] = known.get(("user", event.user_id))
            elif event.anonymous_id is not None:
                owners[i] = known.get(("anonymous", event.anonymous_id))
    return Resolution(owners, learned)
