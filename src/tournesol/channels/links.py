"""Signed links placed in messages: the open pixel, click redirects, one-click unsubscribe and the
preference center, plus the HTML rewriting that puts them into an email body.

Tokens are ``base64url(JSON list).signature``: an itsdangerous HMAC signature with one salt per
purpose so that a token made for one purpose is refused for another. They carry ids
only (outbox, customer, brand, campaign) and, for clicks, the target URL: never an address or a
name. Tokens do not expire: a link in a two-year-old email must still unsubscribe.

>>> signer = LinkSigner("s3cret")
>>> signer.read_open(signer.make_open(42))
42
>>> open_pixel_url("https://t.example.fr", signer.make_open(42)).endswith(".gif")
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from html.parser import HTMLParser
from typing import Any, Final, NamedTuple

from itsdangerous import BadData, Signer
from itsdangerous.encoding import base64_decode, base64_encode

from tournesol.channels.base import Key

_SALTS: Final = {
    "open": "tournesol.link.open",
    "click": "tournesol.link.click",
    "unsubscribe": "tournesol.link.unsubscribe",
    "preferences": "tournesol.link.preferences",
}
_MAX_TOKEN: Final = 4096
_TOKEN: Final = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
_CHANNEL: Final = re.compile(r"[a-z][a-z0-9_]{0,19}")


class BadLink(ValueError):
    """A token that was not made by us for this purpose, or was altered."""


@dataclass(frozen=True, slots=True)
class Click:
    """What a click token says: which message, which link in it, where to go."""

    outbox_id: Key
    index: int
    url: str


@dataclass(frozen=True, slots=True)
class Subscription:
    """Whom an unsubscribe or preference-center link is for: a customer on a channel, for a
    brand and the campaign that carried the link (None when not tied to one)."""

    customer_id: Key
    channel: str
    brand_id: Key | None = None
    campaign_id: Key | None = None


class LinkSigner:
    """Makes and reads the signed tokens of every tracked link.

    ``secret`` is the signing key; give a list ``[old, ..., newest]`` to rotate keys (the
    newest signs, all are accepted). Every ``read_*`` raises :class:`BadLink` when the token
    was altered, signed with another key, or made for another purpose.

    >>> signer = LinkSigner("s3cret")
    >>> signer.read_click(signer.make_click(7, 0, "https://shop.example.fr/?a=1"))
    Click(outbox_id=7, index=0, url='https://shop.example.fr/?a=1')
    >>> sub = Subscription(customer_id=12, channel="email", brand_id=3, campaign_id=None)
    >>> signer.read_unsubscribe(signer.make_unsubscribe(sub)) == sub
    True
    """

    def __init__(self, secret: str | bytes | Sequence[str | bytes]) -> None:
        given = [secret] if isinstance(secret, str | bytes) else list(secret)
        keys = [k.encode("utf-8") if isinstance(k, str) else bytes(k) for k in given]
        if not keys or any(not key for key in keys):
            raise ValueError("the link secret must not be empty")
        self._signers = {purpose: Signer(keys, salt=salt) for purpose, salt in _SALTS.items()}

    def make_open(self, outbox_id: Key) -> str:
        """Token of the open pixel of message ``outbox_id``."""
        return self._dump("open", [_check_key(outbox_id, "outbox_id")])

    def read_open(self, token: str) -> Key:
        """The outbox id carried by an open-pixel token."""
        payload = self._load("open", token, 1)
        return _read_key(payload[0])

    def make_click(self, outbox_id: Key, index: int, url: str) -> str:
        """Token of the ``index``-th link of message ``outbox_id``, redirecting to ``url``."""
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError("the link index must be a non-negative integer")
        return self._dump("click", [_check_key(outbox_id, "outbox_id"), index, _check_url(url)])

    def read_click(self, token: str) -> Click:
        """The message, link index and target URL carried by a click token."""
        outbox_id, index, url = self._load("click", token, 3)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise BadLink("malformed link token")
        if not isinstance(url, str) or not _is_web_url(url):
            raise BadLink("malformed link token")
        return Click(_read_key(outbox_id), index, url)

    def make_unsubscribe(self, subscription: Subscription) -> str:
        """Token of the one-click unsubscribe link for ``subscription``."""
        return self._dump("unsubscribe", _subscription_payload(subscription))

    def read_unsubscribe(self, token: str) -> Subscription:
        """The subscription an unsubscribe token stands for."""
        return _read_subscription(self._load("unsubscribe", token, 4))

    def make_preferences(self, subscription: Subscription) -> str:
        """Token of the preference-center link for ``subscription``."""
        return self._dump("preferences", _subscription_payload(subscription))

    def read_preferences(self, token: str) -> Subscription:
        """The subscription a preference-center token stands for."""
        return _read_subscription(self._load("preferences", token, 4))

    def _dump(self, purpose: str, payload: list[Any]) -> str:
        # base64url(JSON) signed by itsdangerous' Signer: the format of its URLSafeSerializer
        # without the zlib attempt, which cost two thirds of the time on these short payloads
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        return self._signers[purpose].sign(base64_encode(text.encode("utf-8"))).decode("ascii")

    def _load(self, purpose: str, token: str, size: int) -> list[Any]:
        if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _is_canonical(token):
            raise BadLink("malformed link token")
        try:
            value = self._signers[purpose].unsign(token)
        except BadData:
            raise BadLink("link token signature does not match") from None
        try:
            payload = json.loads(base64_decode(value))
        except (BadData, ValueError):
            raise BadLink("malformed link token") from None
        if not isinstance(payload, list) or len(payload) != size:
            raise BadLink("malformed link token")
        return payload


def open_pixel_url(base_url: str, token: str) -> str:
    """``{base}/t/o/{token}.gif``, the URL of the open pixel."""
    return f"{_base(base_url)}/t/o/{token}.gif"


def click_url(base_url: str, token: str) -> str:
    """``{base}/t/c/{token}``, the URL of a click redirect."""
    return f"{_base(base_url)}/t/c/{token}"


def unsubscribe_url(base_url: str, token: str) -> str:
    """``{base}/u/{token}``, the one-click unsubscribe URL (also the List-Unsubscribe target)."""
    return f"{_base(base_url)}/u/{token}"


def preferences_url(base_url: str, token: str) -> str:
    """``{base}/p/{token}``, the preference-center URL."""
    return f"{_base(base_url)}/p/{token}"


def click_url_maker(signer: LinkSigner, base_url: str, outbox_id: Key) -> Callable[[int, str], str]:
    """A ``make_click_url(index, url)`` for :func:`rewrite_links`, for message ``outbox_id``.

    >>> make = click_url_maker(LinkSigner("k"), "https://t.example.fr", 5)
    >>> make(0, "https://shop.example.fr/").startswith("https://t.example.fr/t/c/")
    True
    """

    def make(index: int, url: str) -> str:
        return click_url(base_url, signer.make_click(outbox_id, index, url))

    return make


@dataclass(frozen=True, slots=True)
class LinkMap:
    """The trackable links of one HTML document, found once and applied per message.

    ``targets[i]`` is the original URL of link ``i`` (document order, decoded from HTML
    entities). :meth:`apply` splices new URLs into the document without parsing it again, so a
    campaign whose HTML is the same for many recipients pays the parsing once (see
    :func:`find_links`).
    """

    html: str
    targets: tuple[str, ...]
    spans: tuple[tuple[int, int, str, str], ...]  # start, end, tag text before/after the URL

    def apply(self, make_click_url: Callable[[int, str], str]) -> str:
        """The document with link ``i`` pointing to ``make_click_url(i, targets[i])``."""
        pieces: list[str] = []
        cursor = 0
        for index, (start, end, before, after) in enumerate(self.spans):
            url = make_click_url(index, self.targets[index])
            pieces += (self.html[cursor:start], before, escape(url, quote=True), after)
            cursor = end
        pieces.append(self.html[cursor:])
        return "".join(pieces)


@lru_cache(maxsize=32)
def find_links(html: str, *, untracked: tuple[str, ...] = ()) -> LinkMap:
    """Where the links to track are in ``html``: every ``http(s)`` ``<a href>``, except links
    whose target starts with one of the ``untracked`` prefixes (pass the unsubscribe and
    preference-center base URLs) and links marked ``data-notrack``. ``mailto:``, ``tel:``,
    ``#anchor`` and relative links are never tracked; links in comments and scripts are not
    links. Uses the standard library's HTML parser; the last 32 documents are remembered.

    >>> find_links('<a href="https://a.fr/">A</a> <a href="mailto:x@a.fr">B</a>').targets
    ('https://a.fr/',)
    """
    targets: list[str] = []
    spans: list[tuple[int, int, str, str]] = []
    for tag in _Scanner(html).anchors:
        href_at = [i for i, (name, _) in enumerate(tag.attrs) if name == "href"]
        if not href_at or any(name == "data-notrack" for name, _ in tag.attrs):
            continue
        target = (tag.attrs[href_at[0]][1] or "").strip()
        if not _is_web_url(target) or (untracked and target.startswith(untracked)):
            continue
        marker = "\x00"  # cannot occur in parsed attribute values of a real document
        attrs = list(tag.attrs)
        attrs[href_at[0]] = ("href", marker)
        before, _, after = _start_tag("a", attrs, self_closing=tag.text.endswith("/>")).partition(
            marker
        )
        targets.append(target)
        spans.append((tag.start, tag.start + len(tag.text), before, after))
    return LinkMap(html, tuple(targets), tuple(spans))


def rewrite_links(
    html: str,
    make_click_url: Callable[[int, str], str],
    *,
    untracked: Iterable[str] = (),
) -> tuple[str, list[str]]:
    """Replace the target of every trackable link in ``html`` (see :func:`find_links`) by a
    click redirect.

    Links are numbered from 0 in document order and ``make_click_url(index, target)`` gives
    each new URL; returns the new HTML and the list of original targets (``targets[i]`` is link
    ``i``, decoded from HTML entities). Only the rewritten ``<a>`` tags are re-serialised; the
    rest of the document is unchanged.

    >>> rewrite_links('<a href="https://a.fr/x?p=1&amp;q=2">A</a>', lambda i, u: f"https://t/{i}")
    ('<a href="https://t/0">A</a>', ['https://a.fr/x?p=1&q=2'])
    """
    links = find_links(html, untracked=tuple(untracked))
    return links.apply(make_click_url), list(links.targets)


def add_pixel(html: str, url: str) -> str:
    """``html`` with a 1x1 image loading ``url`` just before the last ``</body>`` that is not
    inside a comment (at the end when there is none).

    >>> page = add_pixel("<html><body><p>Hi</p></body></html>", "https://t/o/x.gif")
    >>> page.startswith('<html><body><p>Hi</p><img src="https://t/o/x.gif" width="1" height="1"')
    True
    >>> page.endswith(" /></body></html>")
    True
    """
    pixel = _start_tag(
        "img",
        [
            ("src", url),
            ("width", "1"),
            ("height", "1"),
            ("alt", ""),
            ("style", "display:block;border:0;width:1px;height:1px"),
        ],
        self_closing=True,
    )
    # a search from the end, not a parse: the end of body is in the last few bytes of a page
    lowered = html.lower()
    at = len(html)
    while (at := lowered.rfind("</body", 0, at)) >= 0:
        comment = lowered.rfind("<!--", 0, at)
        if comment < 0 or lowered.find("-->", comment, at) >= 0:
            return html[:at] + pixel + html[at:]
    return html + pixel


class _Tag(NamedTuple):
    start: int
    text: str
    attrs: list[tuple[str, str | None]]


class _Scanner(HTMLParser):
    """Finds the ``<a>`` start tags of a page, with their offsets."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0]
        self._line_starts.extend(m.end() for m in re.finditer("\n", html))
        self.anchors: list[_Tag] = []
        self.feed(html)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text()
        if tag == "a" and text is not None:
            self.anchors.append(_Tag(self._offset(), text, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def _start_tag(name: str, attrs: list[tuple[str, str | None]], *, self_closing: bool) -> str:
    parts = [name]
    for key, value in attrs:
        parts.append(key if value is None else f'{key}="{escape(value, quote=True)}"')
    return "<" + " ".join(parts) + (" />" if self_closing else ">")


def _is_web_url(url: str) -> bool:
    if not url.lower().startswith(("http://", "https://")):
        return False
    return len(url) > len("https://") and not any(c in url for c in "\r\n\t ")


def _check_url(url: str) -> str:
    if not isinstance(url, str) or not _is_web_url(url.strip()):
        raise ValueError("a click target must be an absolute http(s) URL")
    return url.strip()


def _check_key(value: Key | None, field: str) -> Key:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{field} must be an int or a str")
    if isinstance(value, str) and not value:
        raise ValueError(f"{field} must not be empty")
    return value


def _read_key(value: object) -> Key:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise BadLink("malformed link token")
    return value


def _subscription_payload(sub: Subscription) -> list[Any]:
    if not isinstance(sub.channel, str) or not _CHANNEL.fullmatch(sub.channel):
        raise ValueError("channel must be a short lower-case name such as 'email'")
    return [
        _check_key(sub.customer_id, "customer_id"),
        sub.channel,
        None if sub.brand_id is None else _check_key(sub.brand_id, "brand_id"),
        None if sub.campaign_id is None else _check_key(sub.campaign_id, "campaign_id"),
    ]


def _read_subscription(payload: list[Any]) -> Subscription:
    customer_id, channel, brand_id, campaign_id = payload
    if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
        raise BadLink("malformed link token")
    return Subscription(
        customer_id=_read_key(customer_id),
        channel=channel,
        brand_id=None if brand_id is None else _read_key(brand_id),
        campaign_id=None if campaign_id is None else _read_key(campaign_id),
    )


def _is_canonical(token: str) -> bool:
    # base64 without padding lets the last character of each part vary in its unused low bits,
    # and the decoder skips characters outside the alphabet: accept only the one spelling that
    # encoding the decoded bytes gives back, so that any change to a token is refused
    if not _TOKEN.fullmatch(token):
        return False
    try:
        return all(
            base64_encode(base64_decode(part)).decode("ascii") == part for part in token.split(".")
        )
    except BadData:
        return False


def _base(base_url: str) -> str:
    if not base_url.lower().startswith(("http://", "https://")):
        raise ValueError("the public base URL must start with http:// or https://")
    return base_url.rstrip("/")
