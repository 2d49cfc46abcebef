"""Campaign messages as Jinja2 templates, rendered per recipient in a sandbox.

A message (:class:`~tournesol.campaigns.models.CampaignMessage`) has a subject (e-mail only), a
text body and, for e-mail, an HTML body. Each is a Jinja2 template rendered in an immutable
sandbox (no access to Python internals, no includes): the HTML body with autoescaping (a
customer called ``<b>Ana</b>`` is printed, not interpreted), the subject and the text without.

What a template may use:

- the personalization fields of :data:`FIELDS` (``{{ first_name }}``...). A field that is
  empty for a customer is *undefined*: it renders as nothing, and ``default`` gives a
  fallback: ``Bonjour {{ first_name | default("cher client") }}``;
- the links of :data:`LINKS` (``unsubscribe_url``, ``preferences_url``), filled by the
  dispatcher for each recipient;
- two filters that write in the message's language: ``{{ last_purchase_date | date }}``
  (``3 mars 2026`` / ``3 March 2026``) and ``{{ total_spent | amount }}`` (``1 234,50 €`` /
  ``€1,234.50``).

:func:`check_message` refuses, when a message is saved, what would fail or leak later: a
syntax error, an unknown field (a typo would otherwise print nothing), unsafe attribute
access, includes, and a marketing e-mail without an unsubscribe or preference link.
:class:`MessageRenderer` compiles a message once and renders it for many recipients, with the
links of its HTML body rewritten to click redirects when asked (found once per message when its
HTML allows it, not in every copy); :func:`personal_context` loads the fields of many customers
in a few queries; :func:`preview` renders a message for real customers.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, cast
from zoneinfo import ZoneInfo

from jinja2 import TemplateSyntaxError, Undefined, meta, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign, CampaignMessage
from tournesol.campaigns.service import CampaignError
from tournesol.channels import links
from tournesol.channels.base import redact
from tournesol.channels.sms import with_stop_mention
from tournesol.customers.models import Brand, Customer, Identifier
from tournesol.db import Dialect, chunked
from tournesol.interactions.models import Transaction
from tournesol.quality.names import normalize_name
from tournesol.scoring.models import CustomerRfm
from tournesol.scoring.rules import RFM_SEGMENTS
from tournesol.segments import service as segment_service
from tournesol.segments.models import Segment

FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "customer_id": "The customer's number in Tournesol.",
        "civility": '"Madame" or "Monsieur", from the recorded gender; empty when unknown.',
        "first_name": "First name, in display case (Jean-Pierre); empty for a placeholder "
        "such as XXX or Test.",
        "last_name": "Last name, in display case (de La Fontaine); empty for a placeholder.",
        "email": "E-mail address.",
        "city": "City of the postal address.",
        "postal_code": "Postal code of the postal address.",
        "country": "Country code of the postal address (ISO 3166: FR, BE...).",
        "language": "The customer's language code (fr, en...).",
        "brand": "Name of the campaign's brand.",
        "customer_type": "customer or prospect.",
        "loyalty_card": "Loyalty card number (the first one recorded).",
        "purchase_count": "Number of purchases, returns left out (from the campaign's brand "
        "when it has one, else from all brands).",
        "total_spent": "Total amount of those purchases, a number: {{ total_spent | amount }}.",
        "last_purchase_date": "Day of the last purchase, a date: {{ last_purchase_date | date }}.",
        "last_purchase_amount": "Amount of the last purchase: {{ last_purchase_amount | amount }}.",
        "rfm_segment": "RFM segment (Champions, Loyal, At risk...) for the campaign's brand, "
        "else over all brands.",
    }
)
"""The personalization fields: name -> what it holds."""

LINKS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "unsubscribe_url": "The recipient's one-click unsubscribe link (from this brand, on "
        "this channel).",
        "preferences_url": "The recipient's preference center link.",
    }
)
"""The links every template may use, filled for each recipient by the dispatcher."""

PARTS: Final = ("subject", "text", "html")
PREVIEW_LINKS: Final[Mapping[str, str]] = MappingProxyType(
    {"unsubscribe_url": "#", "preferences_url": "#"}
)
_PARIS: Final = ZoneInfo("Europe/Paris")
_MONTHS: Final[Mapping[str, tuple[str, ...]]] = {
    "fr": (
        "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
        "octobre", "novembre", "décembre",
    ),
    "en": (
        "January", "February", "March", "April", "May", "June", "July", "August", "September",
        "October", "November", "December",
    ),
}  # fmt: skip
_CIVILITY: Final = {"F": "Madame", "M": "Monsieur"}
_SAMPLE: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "customer_id": 1234,
        "civility": "Madame",
        "first_name": "Anne",
        "last_name": "Petit",
        "email": "anne.petit@example.org",
        "city": "Lyon",
        "postal_code": "69002",
        "country": "FR",
        "language": "fr",
        "brand": "Brand",
        "customer_type": "customer",
        "loyalty_card": "2990000000001",
        "purchase_count": 3,
        "total_spent": Decimal("123.40"),
        "last_purchase_date": date(2026, 3, 2),
        "last_purchase_amount": Decimal("45.60"),
        "rfm_segment": "Loyal",
        "unsubscribe_url": "https://example.org/u/token",
        "preferences_url": "https://example.org/p/token",
    }
)


class TemplateError(ValueError):
    """A message that cannot be used: ``part`` (subject, text or html) and ``line`` (None when
    the fault is not on one line) say where; the message never quotes customer data."""

    def __init__(self, part: str, line: int | None, message: str) -> None:
        where = part if line is None else f"{part}, line {line}"
        super().__init__(f"{where}: {message}")
        self.part = part
        self.line = line
        self.message = message


@dataclass(frozen=True)
class RenderedMessage:
    """A message rendered for one recipient: subject (e-mail only), text, HTML (e-mail only)."""

    subject: str | None
    text: str
    html: str | None


# --- the sandbox ------------------------------------------------------------------------------


def format_date(value: Any, language: str = "fr") -> str:
    """A date (or date-time, read in Paris time) written out in ``language`` (French unless
    English): ``1er mars 2026``, ``3 March 2026``; anything else as text, "" for nothing.

    >>> format_date(date(2026, 3, 1)), format_date(date(2026, 3, 3), "en")
    ('1er mars 2026', '3 March 2026')
    """
    if isinstance(value, datetime):
        value = value.astimezone(_PARIS).date() if value.tzinfo else value.date()
    if not isinstance(value, date):
        return "" if value is None else str(value)
    lang = "en" if language.startswith("en") else "fr"
    month = _MONTHS[lang][value.month - 1]
    if lang == "en":
        return f"{value.day} {month} {value.year}"
    day = "1er" if value.day == 1 else str(value.day)
    return f"{day} {month} {value.year}"


def format_amount(value: Any, language: str = "fr", currency: str = "€") -> str:
    """An amount with two decimals and the currency, written in ``language``: ``1 234,50 €``
    (French, non-breaking spaces) or ``€1,234.50`` (English); "" for nothing.

    >>> format_amount(Decimal("1234.5")), format_amount(Decimal("1234.5"), "en")
    ('1\\u202f234,50\\xa0€', '€1,234.50')
    """
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    if language.startswith("en"):
        return f"{currency}{number:,.2f}"
    text = f"{number:,.2f}".replace(",", "\u202f").replace(".", ",")
    return f"{text}\u00a0{currency}"


class _Undefined(Undefined):
    """An empty field prints as nothing; what the sandbox refused (``''.__class__``) raises
    its SecurityError instead of printing nothing."""

    __slots__ = ()

    def __str__(self) -> str:
        if self._undefined_exception is SecurityError:
            self._fail_with_undefined_error()
        return ""


@lru_cache(maxsize=16)
def _environment(language: str, html: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=html, keep_trailing_newline=True, undefined=_Undefined
    )
    env.filters["date"] = lambda value: format_date(value, language)
    env.filters["amount"] = lambda value: format_amount(value, language)
    return env


def _compile(part: str, source: str, language: str) -> tuple[Template, nodes.Template]:
    """The template of one part and its syntax tree; TemplateError on a syntax error."""
    env = _environment(language, part == "html")
    try:
        tree = env.parse(source)
        template = env.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateError(part, exc.lineno, f"syntax error: {exc.message}") from None
    return template, tree


def _render(part: str, template: Template, context: Mapping[str, Any]) -> str:
    """Render one part; TemplateError (with the template line) on any failure."""
    try:
        return template.render(context)
    except (JinjaError, ArithmeticError, LookupError, TypeError, ValueError) as exc:
        line = None
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename == "<template>":
                line = frame.lineno
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(exc, UndefinedError) and not isinstance(exc, SecurityError):
            text += ' (a field may be empty for a customer: guard it with | default("..."))'
        raise TemplateError(part, line, redact(f"cannot render: {text}")) from None


def _unsafe(tree: nodes.Template) -> int | None:
    """The line of the first attribute or item whose name starts with ``_`` (Python
    internals), or None."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value if isinstance(node.arg.value, str) else None
        if name is not None and name.startswith("_"):
            return node.lineno
    return None


def _names(tree: nodes.Template) -> dict[str, int]:
    """Variables the template reads without defining them -> first line they appear on."""
    undeclared = meta.find_undeclared_variables(tree)
    lines: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name in undeclared and node.name not in lines:
            lines[node.name] = node.lineno
    for name in undeclared:
        lines.setdefault(name, 1)
    return lines


def check_message(
    *,
    subject: str | None,
    body_text: str,
    body_html: str | None,
    channel: str | None = None,
    marketing: bool = True,
) -> list[str]:
    """Check a message before it is saved; return the fields and links it uses, sorted.

    Compiles the three parts, refuses unknown variables (anything but :data:`FIELDS` and
    :data:`LINKS`), includes and imports, and renders each part twice (with sample values,
    and with every field empty) so that unsafe attribute access (``{{ ''.__class__ }}``) and
    run-time errors show now rather than at send time. ``channel`` is the message's channel;
    when None, a message with a subject or an HTML body is taken for an e-mail. A marketing
    e-mail must carry ``unsubscribe_url`` or ``preferences_url`` in its text or HTML, and
    needs a subject on one line. Raises :class:`TemplateError` naming the part and line.

    >>> check_message(subject=None, body_text="Hi {{ first_name }}", body_html=None)
    ['first_name']
    """
    is_email = (
        channel == "email"
        if channel is not None
        else bool((subject or "").strip() or (body_html or "").strip())
    )
    sources = {"subject": subject, "text": body_text or "", "html": body_html}
    used: dict[str, set[str]] = {}
    compiled: dict[str, Template] = {}
    for part in PARTS:
        source = sources[part]
        if source is None:
            continue
        template, tree = _compile(part, source, "fr")
        for name, line in sorted(_names(tree).items(), key=lambda item: item[1]):
            if name not in FIELDS and name not in LINKS:
                raise TemplateError(part, line, f"unknown field {name!r} (see the field list)")
        if any(True for _ in meta.find_referenced_templates(tree)):
            raise TemplateError(part, None, "include, import and extends are not allowed")
        unsafe = _unsafe(tree)
        if unsafe is not None:
            raise TemplateError(part, unsafe, "names starting with _ are not allowed")
        used[part] = set(_names(tree))
        compiled[part] = template
    empty = {name: value for name, value in _SAMPLE.items() if name in LINKS}
    for part, template in compiled.items():
        sample = _render(part, template, _SAMPLE)
        _render(part, template, empty)
        if part == "subject" and ("\n" in sample.strip() or "\r" in sample):
            raise TemplateError(part, None, "a subject must fit on one line")
    if is_email:
        if not (subject or "").strip():
            raise TemplateError("subject", None, "an e-mail needs a subject")
        links = used.get("text", set()) | used.get("html", set())
        if marketing and not links & set(LINKS):
            raise TemplateError(
                "html" if body_html else "text",
                None,
                "a marketing e-mail must carry an unsubscribe link: add "
                '<a href="{{ unsubscribe_url }}"> (or {{ preferences_url }}) to the text or HTML',
            )
    return sorted(set().union(*used.values())) if used else []


class MessageRenderer:
    """One message compiled once, rendered for many recipients.

    :meth:`render` takes a recipient's context (the :func:`personal_context` of a customer
    plus the :data:`LINKS`); empty values (None, "") are left undefined so that ``default``
    filters apply. The subject is rendered on one line (runs of white space become one
    space). Compiling raises :class:`TemplateError` for a message that does not compile.
    ``untracked``: URL prefixes whose links are never rewritten to click redirects (the
    unsubscribe and preference-center bases), see :meth:`render`.
    """

    def __init__(self, message: CampaignMessage, *, untracked: Sequence[str] = ()) -> None:
        self.channel = message.channel
        self.language = message.language
        lang = message.language or "fr"
        self._subject = (
            _compile("subject", message.subject, lang)[0] if message.subject is not None else None
        )
        self._text = _compile("text", message.body_text or "", lang)[0]
        self._html = _compile("html", message.body_html, lang)[0] if message.body_html else None
        self._html_source = message.body_html or ""
        self._untracked = tuple(untracked)
        self._tracking: _Tracking | bool | None = False  # False: not compiled yet

    def render(
        self,
        context: Mapping[str, Any],
        *,
        click_url: Callable[[int, str], str] | None = None,
    ) -> RenderedMessage:
        """The message for one recipient; raises :class:`TemplateError` (part and line, no
        customer data) when a part fails to render.

        With ``click_url``, the links of the HTML body point to ``click_url(index, target)``:
        the same document as :func:`~tournesol.channels.links.find_links` (with the renderer's
        ``untracked`` prefixes) then :meth:`~tournesol.channels.links.LinkMap.apply` on the
        plain rendering give, without parsing each copy when the HTML allows it (no ``{% %}``
        statements, values printed in text or in quoted attribute values only, see
        :func:`~tournesol.channels.links.link_slots`)."""
        values = {k: v for k, v in context.items() if v is not None and v != ""}
        subject = None
        if self._subject is not None:
            subject = " ".join(_render("subject", self._subject, values).split())
        text = _render("text", self._text, values)
        html = None
        if self._html is not None:
            html = (
                _render("html", self._html, values)
                if click_url is None
                else self._tracked_html(self._html, values, click_url)
            )
        return RenderedMessage(subject, text, html)

    def _tracked_html(
        self, plain: Template, values: dict[str, Any], click_url: Callable[[int, str], str]
    ) -> str:
        if self._tracking is False:
            self._tracking = _tracking(
                self._html_source, plain, self.language or "fr", self._untracked
            )
        tracking = self._tracking
        if not isinstance(tracking, _Tracking):  # each copy is read on its own
            html = _render("html", plain, values)
            return links.find_links(html, untracked=self._untracked).apply(click_url)
        if not tracking.slots:  # no link to rewrite, whoever reads it
            return _render("html", plain, values)
        linker = _Linker(tracking.slots, click_url)
        return _render("html", tracking.template, values | {_LINKER: linker})


# --- links rewritten while rendering -------------------------------------------------------------

_LINKER: Final = "_tournesol_link"
# filters that never mark text as safe HTML (|safe, |tojson, |urlize, |xmlattr do; |map and
# the like could call them)
_PLAIN_FILTERS: Final = frozenset(
    {
        "abs", "amount", "capitalize", "center", "count", "d", "date", "default", "e",
        "escape", "filesizeformat", "first", "float", "forceescape", "format", "int", "last",
        "length", "lower", "replace", "round", "string", "striptags", "title", "trim",
        "truncate", "upper", "urlencode", "wordcount", "wordwrap",
    }
)  # fmt: skip
_PLAIN_NODES: Final = (
    nodes.Name, nodes.Const, nodes.Filter, nodes.Test, nodes.Getattr, nodes.Getitem,
    nodes.Slice, nodes.CondExpr, nodes.Concat, nodes.Compare, nodes.Operand, nodes.BinExpr,
    nodes.UnaryExpr, nodes.Tuple, nodes.List, nodes.Keyword,
)  # fmt: skip


@dataclass(frozen=True)
class _Tracking:
    """An HTML part compiled with its link tags replaced by calls to the linker."""

    template: Template
    slots: tuple[links.LinkSlot, ...]


class _Linker:
    """Writes the link tags of one copy, numbering the tracked links in document order."""

    def __init__(
        self, slots: tuple[links.LinkSlot, ...], click_url: Callable[[int, str], str]
    ) -> None:
        self._slots = slots
        self._click_url = click_url
        self._count = 0

    def __call__(self, slot: int, *values: Any) -> Markup:
        # values are written as the template writes them: escaped
        return Markup(self._slots[slot].rewrite([str(escape(v)) for v in values], self._url))

    def _url(self, target: str) -> str:
        url = self._click_url(self._count, target)
        self._count += 1
        return url


def _plain(expression: nodes.Node) -> bool:
    """Whether an expression always prints escaped text in an autoescaped template."""
    for node in (expression, *expression.find_all(nodes.Node)):
        if not isinstance(node, _PLAIN_NODES):
            return False
        if isinstance(node, nodes.Filter) and node.name not in _PLAIN_FILTERS:
            return False
    return True


def _tracking(
    source: str, plain: Template, language: str, untracked: tuple[str, ...]
) -> _Tracking | None:
    """The HTML part ``source`` (compiled as is: ``plain``) compiled so that its links are
    written while it renders, or None when each copy must be read on its own: a statement
    (``{% if %}``...), a value that could print HTML (``|safe``, a call), or a value where it
    could change how the page is read (see :func:`~tournesol.channels.links.link_slots`)."""
    env = _environment(language, True)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError:
        return None
    if not all(isinstance(node, nodes.Output) for node in tree.body):
        return None
    children = [child for output in tree.body for child in cast(nodes.Output, output).nodes]
    pieces: list[str] = []
    holes: list[tuple[int, int]] = []
    at = 0
    for child in children:
        if isinstance(child, nodes.TemplateData):
            pieces.append(child.data)
        elif _plain(child):
            pieces.append("x")  # a letter: see link_slots
            holes.append((at, at + 1))
        else:
            return None
        at += len(pieces[-1])
    slots = links.link_slots("".join(pieces), holes, untracked=untracked)
    if slots is None:
        return None
    if not slots:
        return _Tracking(plain, ())
    body = _with_linker(children, pieces, slots)
    try:
        template = env.from_string(nodes.Template([nodes.Output(body, lineno=1)], lineno=1))
    except JinjaError:
        return None
    return _Tracking(template, slots)


def _with_linker(
    children: Sequence[nodes.Expr], pieces: Sequence[str], slots: tuple[links.LinkSlot, ...]
) -> list[nodes.Expr]:
    """The output nodes of a part (``children``, written ``pieces`` in the document given to
    link_slots), each slot's tag (its text and values) replaced by a call to the linker with
    the slot's number and values."""
    out: list[nodes.Expr] = []
    begin = 0  # where the child starts in the document
    current = 0  # the next slot
    args: list[nodes.Expr] | None = None  # the values of the slot being crossed
    for child, piece in zip(children, pieces, strict=True):
        if not isinstance(child, nodes.TemplateData):
            (out if args is None else args).append(child)
            begin += len(piece)
            continue
        at = 0  # in the piece
        while at < len(piece):
            slot = slots[current] if current < len(slots) else None
            if slot is not None and args is not None:  # inside the slot's tag
                at = min(len(piece), slot.end - begin)
                if begin + at == slot.end:
                    assert len(args) == len(slot.holes)
                    lineno = args[0].lineno if args else child.lineno
                    name = nodes.Name(_LINKER, "load", lineno=lineno)
                    number = nodes.Const(current, lineno=lineno)
                    out.append(nodes.Call(name, [number, *args], [], None, None, lineno=lineno))
                    args = None
                    current += 1
                continue
            stop = len(piece) if slot is None else min(len(piece), slot.start - begin)
            if stop > at:
                out.append(nodes.TemplateData(piece[at:stop], lineno=child.lineno))
            at = stop
            if slot is not None and begin + at == slot.start:
                args = []
        begin += len(piece)
    assert args is None and current == len(slots)
    return out


# --- the customers' fields ----------------------------------------------------------------------


def _display(name: str | None, part: str) -> str | None:
    if not name:
        return None
    result = normalize_name(name, part="first" if part == "first" else "last")
    return result.value


PURCHASE_FIELDS: Final = frozenset(
    {"purchase_count", "total_spent", "last_purchase_date", "last_purchase_amount"}
)


def fields_used(messages: Iterable[CampaignMessage]) -> frozenset[str]:
    """The personalization fields these messages read (their subject, text and HTML): what
    :func:`personal_context` needs to load for them. A message that does not compile counts
    as reading every field (its error comes when it is rendered)."""
    used: set[str] = set()
    for message in messages:
        lang = message.language or "fr"
        for part, source in (
            ("subject", message.subject),
            ("text", message.body_text),
            ("html", message.body_html),
        ):
            if not source:
                continue
            try:
                used |= set(_names(_compile(part, source, lang)[1]))
            except TemplateError:
                return frozenset(FIELDS)
    return frozenset(used & set(FIELDS))


def personal_context(
    session: Session,
    customer_ids: Sequence[int],
    *,
    campaign: Campaign,
    fields: Collection[str] | None = None,
) -> dict[int, dict[str, Any]]:
    """The :data:`FIELDS` of these customers for ``campaign``: customer id -> field -> value
    (None when the customer has nothing for a field). Loads them by chunks of ids, a few
    set-based queries per chunk: the customers, their first loyalty card, their purchases
    (returns left out; of the campaign's brand when it has one: count, total, last date and
    amount) and their RFM segment (the brand's scope, else ``all``). Customers not found are
    left out. With ``fields`` (see :func:`fields_used`), the loyalty card, purchases and RFM
    segment are read only when one of them is named: the purchases of random customers are
    random reads in a large table, the slowest part of a send when no message uses them."""
    wanted = frozenset(FIELDS) if fields is None else frozenset(fields)
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    dialect = Dialect.of(session)
    brand_name: str | None = None
    brand_code: str | None = None
    if campaign.brand_id is not None:
        found = session.execute(
            select(Brand.name, Brand.code).where(Brand.id == campaign.brand_id)
        ).first()
        if found is not None:
            brand_name, brand_code = found
    labels = {s.code: s.name for s in RFM_SEGMENTS}
    out: dict[int, dict[str, Any]] = {}
    c = Customer
    for part in chunked(ids, dialect.max_params - 10):
        rows = session.execute(
            select(
                c.id, c.gender, c.first_name, c.last_name, c.email, c.city, c.postal_code,
                c.country, c.language, c.customer_type,
            ).where(dialect.one_of(c.id, part))
        )  # fmt: skip
        for row in rows:
            out[row.id] = {
                "customer_id": row.id,
                "civility": _CIVILITY.get((row.gender or "").strip().upper()[:1]),
                "first_name": _display(row.first_name, "first"),
                "last_name": _display(row.last_name, "last"),
                "email": row.email,
                "city": row.city,
                "postal_code": row.postal_code,
                "country": row.country,
                "language": row.language,
                "brand": brand_name,
                "customer_type": row.customer_type,
                "loyalty_card": None,
                "purchase_count": 0,
                "total_spent": None,
                "last_purchase_date": None,
                "last_purchase_amount": None,
                "rfm_segment": None,
            }
        if "loyalty_card" in wanted:
            _loyalty_cards(session, out, part)
        if wanted & PURCHASE_FIELDS:
            _purchases(session, out, part, campaign.brand_id)
        if "rfm_segment" not in wanted:
            continue
        scopes = ["all"] if brand_code is None else [brand_code, "all"]
        rfm = session.execute(
            select(CustomerRfm.customer_id, CustomerRfm.scope, CustomerRfm.segment).where(
                dialect.one_of(CustomerRfm.customer_id, part), CustomerRfm.scope.in_(scopes)
            )
        )
        best: dict[int, tuple[int, str]] = {}
        for customer_id, scope, segment in rfm:
            rank = scopes.index(scope)
            if customer_id not in best or rank < best[customer_id][0]:
                best[customer_id] = (rank, segment)
        for customer_id, (_, segment) in best.items():
            if customer_id in out:
                out[customer_id]["rfm_segment"] = labels.get(segment, segment)
    return out


def _loyalty_cards(session: Session, out: dict[int, dict[str, Any]], ids: Sequence[int]) -> None:
    """The first loyalty card of each of these customers."""
    ident = Identifier
    cards = session.execute(
        select(ident.customer_id, func.min(ident.value))
        .where(Dialect.of(session).one_of(ident.customer_id, ids), ident.kind == "loyalty_card")
        .group_by(ident.customer_id)
    )
    for customer_id, card in cards:
        if customer_id in out:
            out[customer_id]["loyalty_card"] = card


def _purchases(
    session: Session, out: dict[int, dict[str, Any]], ids: Sequence[int], brand_id: int | None
) -> None:
    """Count, total, last date and last amount of the purchases of these customers."""
    t = Transaction
    dialect = Dialect.of(session)
    conditions = [
        dialect.one_of(t.customer_id, ids),
        t.kind != "return",
        t.occurred_at.is_not(None),
    ]
    if brand_id is not None:
        conditions.append(t.brand_id == brand_id)
    ranked = (
        select(
            t.customer_id.label("customer_id"),
            t.occurred_at.label("occurred_at"),
            t.total_amount.label("amount"),
            func.row_number()
            .over(partition_by=t.customer_id, order_by=(t.occurred_at.desc(), t.id.desc()))
            .label("rank"),
            func.count().over(partition_by=t.customer_id).label("purchases"),
            func.sum(t.total_amount).over(partition_by=t.customer_id).label("total"),
        )
        .where(*conditions)
        .subquery()
    )
    query = select(
        ranked.c.customer_id, ranked.c.occurred_at, ranked.c.amount, ranked.c.purchases,
        ranked.c.total,
    ).where(ranked.c.rank == 1)  # fmt: skip
    for customer_id, occurred_at, amount, purchases, total in session.execute(query):
        fields = out.get(customer_id)
        if fields is None:
            continue
        fields["purchase_count"] = int(purchases)
        fields["total_spent"] = None if total is None else Decimal(str(total))
        if occurred_at is not None:
            fields["last_purchase_date"] = occurred_at.astimezone(_PARIS).date()
        fields["last_purchase_amount"] = None if amount is None else Decimal(str(amount))


# --- preview -------------------------------------------------------------------------------------


def preview(
    session: Session,
    campaign: Campaign,
    *,
    channel: str,
    language: str,
    customer_ids: Sequence[int] | None = None,
    limit: int = 3,
    links: Mapping[str, str] | None = None,
    variant: str = "A",
) -> list[tuple[int, RenderedMessage]]:
    """The campaign's message on ``channel`` in ``language`` (of an A/B ``variant``, A by
    default) rendered for real customers: the given ids (those that exist), else the first
    ``limit`` members (by id) of the campaign's segment. Links are ``links`` or "#". An SMS
    gets its STOP mention, as sent. Raises ``CampaignError`` when the campaign has no such
    message, :class:`TemplateError` when it does not render."""
    message = session.scalar(
        select(CampaignMessage).where(
            CampaignMessage.campaign_id == campaign.id,
            CampaignMessage.channel == channel,
            CampaignMessage.language == language,
            CampaignMessage.variant == variant,
        )
    )
    if message is None:
        suffix = f" (variant {variant})" if variant != "A" else ""
        raise CampaignError(f"the campaign has no {channel} message in {language!r}{suffix}")
    if customer_ids is None:
        segment = (
            session.get(Segment, campaign.segment_id) if campaign.segment_id is not None else None
        )
        if segment is None:
            return []
        members = segment_service.compile(session, segment.definition).query.subquery()
        column = next(iter(members.c))
        customer_ids = list(session.scalars(select(column).order_by(column).limit(max(0, limit))))
    renderer = MessageRenderer(message)
    contexts = personal_context(session, customer_ids, campaign=campaign)
    extra = dict(PREVIEW_LINKS) | dict(links or {})
    out: list[tuple[int, RenderedMessage]] = []
    for customer_id in customer_ids:
        context = contexts.get(customer_id)
        if context is None:
            continue
        rendered = renderer.render(context | extra)
        if channel == "sms":
            rendered = RenderedMessage(None, with_stop_mention(rendered.text), None)
        out.append((customer_id, rendered))
    return out
