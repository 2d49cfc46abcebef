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

import hmac
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from html import escape, unescape
from html.parser import HTMLParser
from itertools import pairwise
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
        # the newest key as each signer derives it to sign, and the name of its hash: signing
        # here gives the signer's own signature (HMAC) without deriving the key each time
        self._signing = {
            purpose: (signer.derive_key(), signer.digest_method().name)
            for purpose, signer in self._signers.items()
        }

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
        value = base64_encode(text.encode("utf-8"))
        key, digest = self._signing[purpose]
        signature = base64_encode(hmac.digest(key, value, digest))
        return (value + b"." + signature).decode("ascii")

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
        found = _trackable(tag.attrs, tag.text.endswith("/>"), untracked)
        if found is not None:
            target, before, after = found
            targets.append(target)
            spans.append((tag.start, tag.start + len(tag.text), before, after))
    return LinkMap(html, tuple(targets), tuple(spans))


@dataclass(frozen=True, slots=True)
class LinkSlot:
    """An ``<a>`` start tag of a document written with *holes* (see :func:`link_slots`): a
    tag to rewrite in every copy of the document, whatever its holes hold.

    ``start`` and ``end`` place the tag in the document; ``holes`` are the indices of the
    holes inside it, in order. :meth:`rewrite` gives the tag of one copy.
    """

    start: int
    end: int
    holes: tuple[int, ...]
    # a tag without holes that is tracked: its target and its text around the click URL
    target: str | None
    before: str
    after: str
    # a tag with holes: its text around them, and its attributes (a value with holes is its
    # quoted text: pieces of it and positions in ``holes``)
    pieces: tuple[str, ...] = ()
    attrs: tuple[tuple[str, str | tuple[str | int, ...] | None], ...] = ()
    untracked: tuple[str, ...] = ()

    def rewrite(self, values: Sequence[str], make_url: Callable[[str], str]) -> str:
        """The tag when its holes hold ``values`` (escaped text, one per hole): if its link is
        tracked, pointing to ``make_url(target)`` (called only then), else as written."""
        if self.target is not None:
            return self.before + escape(make_url(self.target), quote=True) + self.after
        attrs: list[tuple[str, str | None]] = []
        for name, value in self.attrs:
            if isinstance(value, tuple):
                text = "".join(p if isinstance(p, str) else values[p] for p in value)
                value = unescape(text) if text else text
            attrs.append((name, value))
        found = _trackable(attrs, self.pieces[-1].endswith("/>"), self.untracked)
        if found is None:
            written = [self.pieces[0]]
            for value, piece in zip(values, self.pieces[1:], strict=True):
                written += (value, piece)
            return "".join(written)
        target, before, after = found
        return before + escape(make_url(target), quote=True) + after


def link_slots(
    html: str, holes: Sequence[tuple[int, int]], *, untracked: tuple[str, ...] = ()
) -> tuple[LinkSlot, ...] | None:
    """The ``<a>`` tags to rewrite in every copy of a document whose text is ``html`` except
    for its ``holes`` (``(start, end)`` spans, in order, not overlapping; each filled here with
    letters, and in every copy with *escaped* text: no ``<``, ``>``, quotes, and ``&`` only
    in character references, as an HTML template's values are written).

    A hole in text, in a comment or in a quoted attribute value cannot change how a copy is
    parsed: the tags, and which of them are links, are the same in every copy. A hole anywhere
    else (in a tag or attribute name, an unquoted value, an end tag, a declaration, after an
    unclosed ``<`` in a script, where it could close a comment) could; then this returns None
    and each copy must be read on its own (:func:`find_links`). Otherwise: in document order,
    the links tracked whatever the holes hold (per :func:`find_links` and ``untracked``) and
    the links with holes in their tag, which are decided per copy by :meth:`LinkSlot.rewrite`;
    in every copy, the n-th link tracked by these slots is the n-th link :func:`find_links`
    finds there, and the rewritten tags are those of :meth:`LinkMap.apply`.

    >>> [slot.target for slot in link_slots('<a href="https://a.fr/">A</a> <p>xx</p>', [(33, 35)])]
    ['https://a.fr/']
    """
    scan = _Scanner(html, spans=True)
    starts = [start for start, _, _ in scan.spans]
    owner: dict[int, list[int]] = {}  # the span holding each hole -> its holes
    last = 0
    for index, (start, end) in enumerate(holes):
        if not last <= start < end <= len(html):
            raise ValueError("holes must be in order, inside the document and not empty")
        if not (html[start:end].isascii() and html[start:end].isalpha()):
            raise ValueError("holes must be filled with letters")
        last = end
        at = bisect_right(starts, start) - 1
        if at < 0:
            return None
        span_start, span_end, kind = scan.spans[at]
        if end > span_end or not _hole_is_inert(html, holes, index, (span_start, span_end), kind):
            return None
        owner.setdefault(at, []).append(index)
    tags = {tag.start: tag for tag in scan.tags}
    for at, inside in owner.items():
        span_start, span_end, kind = scan.spans[at]
        if kind == "starttag" and not _holes_in_quoted_values(
            html[span_start:span_end],
            tags[span_start].attrs,
            [(holes[i][0] - span_start, holes[i][1] - span_start) for i in inside],
        ):
            return None
    slots: list[LinkSlot] = []
    for tag in scan.anchors:
        end = tag.start + len(tag.text)
        at = bisect_right(starts, tag.start) - 1
        inside = owner.get(at, [])
        if not inside:
            found = _trackable(tag.attrs, tag.text.endswith("/>"), untracked)
            if found is not None:
                target, before, after = found
                slots.append(LinkSlot(tag.start, end, (), target, before, after))
            continue
        spans = [(holes[i][0] - tag.start, holes[i][1] - tag.start) for i in inside]
        pieces = [tag.text[: spans[0][0]]]
        pieces += [tag.text[e:s] for (_, e), (s, _) in pairwise(spans)]
        pieces.append(tag.text[spans[-1][1] :])
        attrs = _holed_attrs(tag.text, spans)
        slots.append(
            LinkSlot(tag.start, end, tuple(inside), None, "", "", tuple(pieces), attrs, untracked)
        )
    return tuple(slots)


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
    """Finds the ``<a>`` start tags of a page, with their offsets; with ``spans``, also every
    start tag and the span and kind of everything the parser reads (``data``, ``starttag``,
    ``endtag``, ``comment``, ``decl``, ``pi``, ``unknown_decl``; ``mixed`` when a span was
    reported as several things or none)."""

    def __init__(self, html: str, *, spans: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self._line_starts = [0]
        self._line_starts.extend(m.end() for m in re.finditer("\n", html))
        self.anchors: list[_Tag] = []
        self.tags: list[_Tag] = []
        self.spans: list[tuple[int, int, str]] = []
        self._spans = spans
        self._kinds: list[str] = []
        self.feed(html)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def updatepos(self, i: int, j: int) -> int:
        if not self._spans:
            return super().updatepos(i, j)
        start = self._offset()
        moved = super().updatepos(i, j)
        if i < j:
            kinds = set(self._kinds)
            self.spans.append((start, self._offset(), kinds.pop() if len(kinds) == 1 else "mixed"))
        self._kinds = []
        return moved

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        text = self.get_starttag_text()
        if text is None:
            return
        found = _Tag(self._offset(), text, attrs)
        if tag == "a":
            self.anchors.append(found)
        if self._spans:
            self.tags.append(found)
            self._kinds.append("starttag")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self._kinds.append("data")

    def handle_endtag(self, tag: str) -> None:
        self._kinds.append("endtag")

    def handle_comment(self, data: str) -> None:
        self._kinds.append("comment")

    def handle_decl(self, decl: str) -> None:
        self._kinds.append("decl")

    def handle_pi(self, data: str) -> None:
        self._kinds.append("pi")

    def unknown_decl(self, data: str) -> None:
        self._kinds.append("unknown_decl")


# the start-tag grammar of html.parser: a tag name, then attributes with their values
_TAG_NAME: Final = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*(?:\s|/(?!>))*")
_ATTRIBUTE: Final = re.compile(
    r"((?<=['\"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*"
    r"('[^']*'|\"[^\"]*\"|(?!['\"])[^>\s]*))?(?:\s|/(?!>))*"
)


def _attributes(text: str) -> list[tuple[str, tuple[int, int] | None, bool]] | None:
    """The attributes of start tag ``text`` as html.parser reads them: name, span of the value
    (inside its quotes when quoted; None when there is no value) and whether it is quoted;
    None if the tag is not one the parser reads as a tag."""
    found = _TAG_NAME.match(text)
    if found is None:
        return None
    out: list[tuple[str, tuple[int, int] | None, bool]] = []
    at = found.end()
    while at < len(text):
        match = _ATTRIBUTE.match(text, at)
        if match is None:
            break
        name, rest, value = match.group(1, 2, 3)
        span = match.span(3) if rest else None
        quoted = span is not None and value[:1] in ("'", '"') and value[-1:] == value[:1]
        if span is not None and quoted:
            span = (span[0] + 1, span[1] - 1)
        out.append((name.lower(), span, quoted))
        at = match.end()
    if text[at:].strip() not in (">", "/>"):
        return None
    return out


def _read_value(text: str, span: tuple[int, int] | None) -> str | None:
    if span is None:
        return None
    value = text[span[0] : span[1]]
    return unescape(value) if value else value


def _holes_in_quoted_values(
    text: str, attrs: list[tuple[str, str | None]], holes: list[tuple[int, int]]
) -> bool:
    """Whether every hole of start tag ``text`` lies in a quoted attribute value (the tag read
    here as the parser read it: ``attrs``)."""
    found = _attributes(text)
    if found is None or [(name, _read_value(text, span)) for name, span, _ in found] != attrs:
        return False
    quoted = [span for _, span, q in found if q and span is not None]
    return all(any(s <= start and end <= e for s, e in quoted) for start, end in holes)


def _holed_attrs(
    text: str, holes: list[tuple[int, int]]
) -> tuple[tuple[str, str | tuple[str | int, ...] | None], ...]:
    """The attributes of start tag ``text`` whose ``holes`` all lie in quoted values: a value
    with holes as the pieces of its quoted text and hole positions, the others as read."""
    found = _attributes(text)
    assert found is not None  # checked by _holes_in_quoted_values
    out: list[tuple[str, str | tuple[str | int, ...] | None]] = []
    for name, span, _ in found:
        inside = (
            []
            if span is None
            else [i for i, (s, e) in enumerate(holes) if span[0] <= s and e <= span[1]]
        )
        if not inside or span is None:
            out.append((name, _read_value(text, span)))
            continue
        pieces: list[str | int] = []
        cursor = span[0]
        for i in inside:
            pieces += (text[cursor : holes[i][0]], i)
            cursor = holes[i][1]
        pieces.append(text[cursor : span[1]])
        out.append((name, tuple(pieces)))
    return tuple(out)


def _hole_is_inert(
    html: str,
    holes: Sequence[tuple[int, int]],
    index: int,
    span: tuple[int, int],
    kind: str,
) -> bool:
    """Whether escaped text in hole ``index`` (inside ``span``, which the parser read as
    ``kind``) leaves the parsing of the document unchanged; start tags are checked apart."""
    start, end = holes[index]
    if kind == "starttag":
        return True
    if kind == "data":
        # after a "<" in the same text (a script, an unfinished tag), the hole could end
        # the text: "</scr{{ x }}ipt>"
        return "<" not in html[span[0] : start]
    if kind == "comment":
        if start < span[0] + 4:  # "<!-{{ x }}" may open a comment or not
            return False
        close = html.find(">", end)
        if close < 0 or close + 1 == span[1]:  # the comment ends there whatever the hole holds
            return close >= 0
        if any(s < close and e > end for s, e in holes[index + 1 :]):
            return False
        # else "-{{ x }}>" or "{{ x }} >" could end it there ("--", then spaces, then ">")
        return html[end:close].strip("-! \t\n\r\f") != ""
    return False


def _trackable(
    attrs: Sequence[tuple[str, str | None]], self_closing: bool, untracked: tuple[str, ...]
) -> tuple[str, str, str] | None:
    """For an ``<a>`` tag with these attributes, if its link is tracked: its target and the
    tag's text before and after the click URL (see :func:`find_links`)."""
    href_at = [i for i, (name, _) in enumerate(attrs) if name == "href"]
    if not href_at or any(name == "data-notrack" for name, _ in attrs):
        return None
    target = (attrs[href_at[0]][1] or "").strip()
    if not _is_web_url(target) or (untracked and target.startswith(untracked)):
        return None
    marker = "\x00"  # cannot occur in parsed attribute values of a real document
    changed = list(attrs)
    changed[href_at[0]] = ("href", marker)
    before, _, after = _start_tag("a", changed, self_closing=self_closing).partition(marker)
    return target, before, after


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
