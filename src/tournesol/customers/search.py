"""Finding customers from one search box: an e-mail, a phone in any format, a card or account
number, a postal code, a name (with typos and sound-alikes), or a name with a postal code.

``parse_query`` (pure) says what the text holds; ``search`` looks it up with a few indexed
queries and ranks the candidates in Python:

- e-mails, phones, cards and account ids go through the ``identifier`` table (index on kind and
  value; the values are the normalized forms identity resolution copied from the records);
- names go through ``customer_name_key`` (``customers.rules.name_keys``): exact word keys,
  phonetic keys (DUPOND finds DUPONT) and a prefix range on the last word typed (results come
  while typing), each capped, then ranked with rapidfuzz on the whole name, first name included;
- a postal code alone lists the customers living there.

Only active customers are returned (a merged customer's records and identifiers live in its
survivor).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import and_, or_, select, text
from sqlalchemy.orm import Session

from tournesol.customers.models import Customer, CustomerNameKey, Identifier
from tournesol.customers.rules import plain_name, sound_key
from tournesol.db import Dialect
from tournesol.quality.emails import normalize_email
from tournesol.quality.phones import normalize_phone

MAX_LIMIT = 100
# Candidates read from the name keys, per read. Namesakes rank alike on the surname: the
# first EXACT_CANDIDATES bearers of a common one are read (the commonest French surname,
# MARTIN, is about 0.4 % of people: 4,000 per million); a first name typed with it reads its
# bearers with that initial through the (last name, first name) index instead.
EXACT_CANDIDATES = 500
SOUND_CANDIDATES = 300
PREFIX_CANDIDATES = 200  # per key range (the start of a word typed, a word's stem)
POSTAL_CANDIDATES = 2000
# Capital letters a first name may start with when typed without its accent (stored first
# names are capitalized: Élodie).
_INITIALS = {"A": "AÀÂÄ", "E": "EÉÈÊË", "I": "IÎÏ", "O": "OÔÖ", "U": "UÙÛÜ", "C": "CÇ", "Y": "YŸ"}
MIN_SCORE = 55.0

_POSTAL = re.compile(r"\d{5}")
_PHONE_CHARS = re.compile(r"[+()\d\s.\-/]+")
_CARD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-./]*")
_NOT_DIGIT = re.compile(r"\D+")
_sound = lru_cache(maxsize=100_000)(sound_key)

HIT_COLUMNS = (
    "id",
    "civility",
    "first_name",
    "last_name",
    "maiden_name",
    "birth_date",
    "email",
    "phone_mobile",
    "postal_code",
    "city",
    "customer_type",
)


@dataclass(frozen=True)
class Query:
    """What one search text holds. ``kind`` is the main reading: ``empty``, ``email``,
    ``phone``, ``card``, ``postal_code`` or ``name``; a name may come with a postal code, and a
    run of digits that reads as a phone is also tried as a card number."""

    kind: str
    text: str
    email: str | None = None  # the address as normalized
    email_key: str | None = None  # the key identifiers hold (lower case, gmail dots dropped...)
    phone: str | None = None  # E.164
    card: str | None = None  # a loyalty card or account id, as typed
    postal_code: str | None = None
    words: tuple[str, ...] = field(default=())  # plain upper-case name words

    @property
    def name(self) -> str:
        return " ".join(self.words)


_GROUP_SEPARATORS = re.compile(r"[\s.\-]+")


def parse_query(text: str) -> Query:
    """Say what a search box holds.

    >>> parse_query(" Jean.Dupont@GMAIL.com").email_key
    'jeandupont@gmail.com'
    >>> parse_query("0033 6-12-34-56-78").phone
    '+33612345678'
    >>> parse_query("75011").kind, parse_query("dupont 75011").words
    ('postal_code', ('DUPONT',))
    >>> parse_query("2912345678901").kind
    'card'
    >>> parse_query("2990 0000 0001 9").card
    '2990000000019'
    """
    raw = (text or "").strip()
    if not raw:
        return Query("empty", raw)
    if "@" in raw and " " not in raw.strip():
        result = normalize_email(raw)
        if result.value is not None:
            return Query("email", raw, email=result.value, email_key=result.match_key)
        return Query("email", raw, email=raw.lower(), email_key=raw.lower())
    if _POSTAL.fullmatch(raw):
        return Query("postal_code", raw, postal_code=raw)
    compact = not any(ch.isspace() for ch in raw)
    if _PHONE_CHARS.fullmatch(raw) and 8 <= len(_NOT_DIGIT.sub("", raw)) <= 15:
        phone = normalize_phone(raw).value
        if phone is not None:
            card = raw if compact and raw.isdigit() else None
            return Query("phone", raw, phone=phone, card=card)
    joined = _GROUP_SEPARATORS.sub("", raw)
    if compact and _CARD.fullmatch(raw) and any(ch.isdigit() for ch in raw) and len(raw) >= 4:
        return Query("card", raw, card=joined if joined.isdigit() else raw)
    if not compact and joined.isdigit() and len(joined) >= 8:
        # a card or account number typed in groups, as printed: 2990 0000 0001 9
        return Query("card", raw, card=joined)
    postal: str | None = None
    words: list[str] = []
    for token in raw.split():
        if postal is None and _POSTAL.fullmatch(token):
            postal = token
        elif any(ch.isalpha() for ch in token):
            words.extend(plain_name(token).split())
    if not words:
        if postal is not None:
            return Query("postal_code", raw, postal_code=postal)
        return Query("empty", raw)
    return Query("name", raw, postal_code=postal, words=tuple(words))


@dataclass(frozen=True)
class SearchHit:
    """One customer found, with what matched and how well (0-100)."""

    customer_id: int
    civility: str | None
    first_name: str | None
    last_name: str | None
    birth_date: date | None
    email: str | None
    phone_mobile: str | None
    postal_code: str | None
    city: str | None
    customer_type: str
    score: float
    matched_on: str


def search(
    session: Session,
    *,
    q: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    card: str | None = None,
    postal_code: str | None = None,
    name: str | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """Active customers matching a search text ``q`` (read by :func:`parse_query`) and/or the
    explicit criteria, best first. Identifier criteria (e-mail, phone, card) find exact
    matches, narrowed by the postal code and ranked by the name if those are given too; a name
    finds close and sound-alike spellings and prefixes; a postal code alone lists who lives
    there (by name).

    >>> search(session, q="dupond 75011")  # doctest: +SKIP
    [SearchHit(customer_id=42, ..., last_name='DUPONT', score=93.3, matched_on='name')]
    """
    limit = max(1, min(limit, MAX_LIMIT))
    parsed = parse_query(q or "")
    values: dict[str, None] = {}  # identifier values to look up, in order
    for found in (parsed.email_key, parsed.phone, parsed.card, (parsed.card or "").upper()):
        if found:
            values[found] = None
    if email and email.strip():
        result = normalize_email(email)
        values[result.match_key or email.strip().lower()] = None
    if phone and phone.strip():
        number = normalize_phone(phone).value
        values[number or phone.strip()] = None
    if card and card.strip():
        values[card.strip()] = None
        values[card.strip().upper()] = None
    postal = (postal_code or "").strip() or parsed.postal_code
    words = list(parsed.words) + (plain_name(name).split() if name else [])
    if values:
        return _by_identifiers(session, list(values), postal, words, limit)
    if words:
        return _by_name(session, words, postal, limit)
    if postal:
        return _by_postal_code(session, postal, limit)
    return []


def identifier_kinds(session: Session) -> list[str]:
    """The identifier kinds present, read from the (kind, value) index by a loose index scan:
    one probe per kind, whatever the table's size."""
    rows = session.execute(
        text(
            "WITH RECURSIVE k(kind) AS ("
            " SELECT MIN(kind) FROM identifier"
            " UNION ALL"
            " SELECT (SELECT MIN(i.kind) FROM identifier i WHERE i.kind > k.kind)"
            " FROM k WHERE k.kind IS NOT NULL"
            ") SELECT kind FROM k WHERE kind IS NOT NULL"
        )
    )
    return [str(kind) for (kind,) in rows]


def _columns() -> list[Any]:
    return [getattr(Customer, c) for c in HIT_COLUMNS]


def _by_identifiers(
    session: Session, values: list[str], postal: str | None, words: list[str], limit: int
) -> list[SearchHit]:
    kinds = identifier_kinds(session)
    if not kinds:
        return []
    dialect = Dialect.of(session)
    query = (
        select(Identifier.kind, *_columns())
        .join(Customer, Customer.id == Identifier.customer_id)
        .where(
            dialect.one_of(Identifier.kind, kinds),
            dialect.one_of(Identifier.value, values),
            Customer.status == "active",
        )
        .limit(MAX_LIMIT * 5)
    )
    if postal:
        query = query.where(Customer.postal_code == postal)
    matched: dict[int, tuple[set[str], Any]] = {}
    for row in session.execute(query):
        kinds_of, _ = matched.setdefault(row.id, (set(), row))
        kinds_of.add(row.kind)
    hits = []
    for kinds_of, row in matched.values():
        score = (
            _name_score(tuple(words), row.first_name, row.last_name, row.maiden_name)
            if words
            else 100.0
        )
        hits.append(_hit(row, score, "+".join(sorted(kinds_of))))
    return _best(hits, limit)


def _by_postal_code(session: Session, postal: str, limit: int) -> list[SearchHit]:
    query = (
        select(*_columns())
        .where(Customer.postal_code == postal, Customer.status == "active")
        .order_by(Customer.last_name, Customer.first_name, Customer.id)
        .limit(limit)
    )
    return [_hit(row, 100.0, "postal_code") for row in session.execute(query)]


def _by_name(session: Session, words: list[str], postal: str | None, limit: int) -> list[SearchHit]:
    """Candidate ids from capped reads of the name-key index (the words, their sounds, key
    ranges), their customers in one read by primary key, ranked here. A common surname with a
    first name is narrowed through the (last name, first name) index. With a postal code, one
    statement intersects the keys with the customers of that postal code instead.

    Every read is driven by an index: the planner is never asked to join the key table to
    ``customer`` without one (it hash-joins over a scan of ``customer``)."""
    dialect = Dialect.of(session)
    usable = [w for w in words if len(w) > 1]
    plain = {f"N:{w[:110]}" for w in usable} | (
        {"N:" + " ".join(words)[:110]} if len(words) > 1 else set()
    )
    sounds = {f"S:{_sound(w)[:110]}" for w in usable if _sound(w)}
    ranges = [(low, low[:-1] + chr(ord(low[-1]) + 1)) for low in _prefixes(words)]
    key = CustomerNameKey.key
    if postal:
        if not (plain or sounds or ranges):
            return []
        matching = or_(
            *([dialect.one_of(key, sorted(plain | sounds))] if plain or sounds else []),
            *[and_(key >= low, key < high) for low, high in ranges],
        )
        query = select(*_columns()).where(
            Customer.postal_code == postal,
            Customer.status == "active",
            Customer.id.in_(select(CustomerNameKey.customer_id).where(matching)),
        )
        rows = list(session.execute(query.limit(POSTAL_CANDIDATES)))
    else:
        ids: dict[int, None] = {}
        common = False
        for keys, cap in ((plain, EXACT_CANDIDATES), (sounds, SOUND_CANDIDATES)):
            if keys:
                found = select(CustomerNameKey.customer_id).where(dialect.one_of(key, sorted(keys)))
                read = list(session.scalars(found.limit(cap)))
                common = common or (keys is plain and len(read) >= cap)
                ids.update(dict.fromkeys(read))
        for low, high in ranges:
            found = (
                select(CustomerNameKey.customer_id)
                .where(key >= low, key < high)
                .order_by(key)
                .limit(PREFIX_CANDIDATES)
            )
            ids.update(dict.fromkeys(session.scalars(found)))
        if not ids:
            return []
        query = select(*_columns()).where(
            dialect.one_of(Customer.id, list(ids)), Customer.status == "active"
        )
        rows = list(session.execute(query))
        if common and len(usable) > 1:
            rows.extend(_namesakes(session, usable, rows))
    matched_on = "name+postal_code" if postal else "name"
    best: dict[int, tuple[float, Any]] = {}
    for row in rows:
        if row.id not in best:
            score = _name_score(tuple(words), row.first_name, row.last_name, row.maiden_name)
            if score >= MIN_SCORE:
                best[row.id] = (score, row)
    ranked = sorted(
        best.values(), key=lambda p: (-p[0], p[1].last_name or "", p[1].first_name or "", p[1].id)
    )
    return [_hit(row, score, matched_on) for score, row in ranked[:limit]]


def _namesakes(session: Session, words: list[str], rows: list[Any]) -> list[Any]:
    """A surname too common for its key reads to hold every bearer (MARTIN): its bearers
    whose first name starts with the first letter of another word typed, through the (last
    name, first name) index, for each spelling of a typed surname seen among the rows read
    (``jean martin``: the Martins whose first name starts with J, and the Jeans with M)."""
    typed = set(words)
    first = Customer.first_name
    wanted = []
    for spelling in sorted({r.last_name for r in rows if r.last_name}):
        surname = set(plain_name(spelling).split())
        others = [w for w in words if w not in surname]
        if not surname or not surname <= typed or not others:
            continue
        starts = sorted({v for w in others for v in _INITIALS.get(w[0], w[0])})
        initial = or_(*[and_(first >= v, first < chr(ord(v) + 1)) for v in starts])
        wanted.append(and_(Customer.last_name == spelling, initial))
    if not wanted:
        return []
    query = select(*_columns()).where(or_(*wanted), Customer.status == "active")
    return list(session.execute(query.limit(POSTAL_CANDIDATES)))


def _prefixes(words: Sequence[str]) -> list[str]:
    """Key ranges to read: the last word typed as the start of a name (results while
    typing), and each longer word's stem, so that a typo in its last letters still finds it
    (FERNANDEX -> FERNAN...)."""
    out: dict[str, None] = {}
    if len(words[-1]) >= 2:
        out[f"N:{words[-1]}"] = None
    for word in words:
        if len(word) >= 5:
            out[f"N:{word[: max(3, len(word) - 3)]}"] = None
    return list(out)


def _name_score(
    words: tuple[str, ...], first: str | None, last: str | None, maiden: str | None
) -> float:
    """How well the words typed match this customer's names (0-100): each word against its
    best name word (edit similarity; a sound-alike counts 90; the last word typed as the start
    of a name counts 95), averaged; words matching nothing count 0."""
    tokens = _tokens(first, last, maiden)
    if not tokens or not words:
        return 0.0
    final = len(words) - 1
    total = sum(
        max(_similarity(word, token, index == final) for token in tokens)
        for index, word in enumerate(words)
    )
    return round(total / len(words), 1)


@lru_cache(maxsize=200_000)
def _similarity(word: str, token: str, typing: bool) -> float:
    similarity = fuzz.ratio(word, token)
    sound = _sound(word)
    if sound and _sound(token) == sound:
        similarity = max(similarity, 90.0)
    if typing and len(word) >= 2 and token.startswith(word):
        similarity = max(similarity, 100.0 if token == word else 95.0)
    return similarity


@lru_cache(maxsize=200_000)
def _tokens(*names: str | None) -> tuple[str, ...]:
    return tuple(t for n in names if n for t in plain_name(n).split())


def _hit(row: Any, score: float, matched_on: str) -> SearchHit:
    return SearchHit(
        customer_id=row.id,
        civility=row.civility,
        first_name=row.first_name,
        last_name=row.last_name,
        birth_date=row.birth_date,
        email=row.email,
        phone_mobile=row.phone_mobile,
        postal_code=row.postal_code,
        city=row.city,
        customer_type=row.customer_type,
        score=score,
        matched_on=matched_on,
    )


def _best(hits: list[SearchHit], limit: int) -> list[SearchHit]:
    hits.sort(key=lambda h: (-h.score, h.last_name or "", h.first_name or "", h.customer_id))
    return hits[:limit]
