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
from typing import Any, cast

import numpy as np
from rapidfuzz import fuzz, process
from sqlalchemy import (
    Integer,
    Select,
    Table,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)
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
# Positions in the rows read (a Row's attributes cost several times an index).
_AT = {name: index for index, name in enumerate(HIT_COLUMNS)}
_AT_ID, _AT_FIRST, _AT_LAST, _AT_MAIDEN = (
    _AT["id"],
    _AT["first_name"],
    _AT["last_name"],
    _AT["maiden_name"],
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


# Core tables (the statements below load no ORM objects: cheaper to run).
_CUSTOMER = cast(Table, Customer.__table__)
_IDENTIFIER = cast(Table, Identifier.__table__)
_NAME_KEY = cast(Table, CustomerNameKey.__table__)


def _kinds() -> Any:
    """The identifier kinds present, read from the (kind, value) index by a loose index scan
    (a recursive CTE: one probe per kind, whatever the table's size)."""
    first = select(func.min(_IDENTIFIER.c.kind).label("kind")).cte("kinds", recursive=True)
    other = _IDENTIFIER.alias("other")
    following = select(func.min(other.c.kind)).where(other.c.kind > first.c.kind).scalar_subquery()
    return first.union_all(select(following).where(first.c.kind.is_not(None)))


def identifier_kinds(session: Session) -> list[str]:
    """The identifier kinds present, read from the (kind, value) index by a loose index scan:
    one probe per kind, whatever the table's size."""
    kinds = _kinds()
    rows = session.execute(select(kinds.c.kind).where(kinds.c.kind.is_not(None)))
    return [str(kind) for (kind,) in rows]


def _columns() -> list[Any]:
    return [_CUSTOMER.c[c] for c in HIT_COLUMNS]


def _by_identifiers(
    session: Session, values: list[str], postal: str | None, words: list[str], limit: int
) -> list[SearchHit]:
    params = {"values": values, **({"postal": postal} if postal else {})}
    query = _identifier_statement(bool(postal))
    matched: dict[int, tuple[set[str], Any]] = {}
    for row in session.execute(query, params).all():
        kinds_of, _ = matched.setdefault(row[_AT_ID], (set(), row))
        kinds_of.add(row.kind)
    hits = []
    typed = tuple(words)
    for kinds_of, row in matched.values():
        score = (
            _name_score(typed, row[_AT_FIRST], row[_AT_LAST], row[_AT_MAIDEN]) if words else 100.0
        )
        hits.append(_hit(row, score, "+".join(sorted(kinds_of))))
    return _best(hits, limit)


@lru_cache(maxsize=2)
def _identifier_statement(postal: bool) -> Select[Any]:
    """Active customers holding one of ``:values`` as an identifier of any kind (in the postal
    code ``:postal``); the kinds come from the same statement, so that each (kind, values) is
    a lookup of the (kind, value) index."""
    kinds = _kinds()
    c = _CUSTOMER.c
    query = (
        select(*_columns(), _IDENTIFIER.c.kind)
        .join_from(_IDENTIFIER, _CUSTOMER, c.id == _IDENTIFIER.c.customer_id)
        .where(
            _IDENTIFIER.c.kind.in_(select(kinds.c.kind).where(kinds.c.kind.is_not(None))),
            _IDENTIFIER.c.value.in_(bindparam("values", expanding=True)),
            c.status == "active",
        )
        .limit(MAX_LIMIT * 5)
    )
    return query.where(c.postal_code == bindparam("postal")) if postal else query


def _by_postal_code(session: Session, postal: str, limit: int) -> list[SearchHit]:
    c = _CUSTOMER.c
    query = (
        select(*_columns())
        .where(c.postal_code == postal, c.status == "active")
        .order_by(c.last_name, c.first_name, c.id)
        .limit(limit)
    )
    return [_hit(row, 100.0, "postal_code") for row in session.execute(query)]


def _by_name(session: Session, words: list[str], postal: str | None, limit: int) -> list[SearchHit]:
    """Candidates from capped reads of the name-key index (the words, their sounds, key
    ranges) and their customers by primary key, in one statement, ranked here. A common
    surname with a first name is narrowed through the (last name, first name) index. With a
    postal code, one statement intersects the keys with the customers of that postal code
    instead.

    Every read is driven by an index: the planner is never asked to join the key table to
    ``customer`` without one (it hash-joins over a scan of ``customer``).

    With a postal code, the capped key reads run first with the postal code as a filter
    (a few index reads, whatever the size of the postal code); only when the exact words'
    read was capped (a common surname, whose bearers in that postal code it may have missed)
    or nothing there matches well enough does the statement that reads the postal code's
    customers run."""
    usable = [w for w in words if len(w) > 1]
    plain = {f"N:{w[:110]}" for w in usable} | (
        {"N:" + " ".join(words)[:110]} if len(words) > 1 else set()
    )
    sounds = {f"S:{_sound(w)[:110]}" for w in usable if _sound(w)}
    ranges = [(low, low[:-1] + chr(ord(low[-1]) + 1)) for low in _prefixes(words)]
    params: dict[str, Any] = {f"low{i}": low for i, (low, _) in enumerate(ranges)}
    params |= {f"high{i}": high for i, (_, high) in enumerate(ranges)}
    if not (plain or sounds or ranges):
        return []
    params |= {
        "plain": sorted(plain),
        "sounds": sorted(sounds),
        "exact_cap": EXACT_CANDIDATES,
        "sound_cap": SOUND_CANDIDATES,
        "prefix_cap": PREFIX_CANDIDATES,
    }
    dialect = Dialect.of(session).name
    if postal:
        params["postal"] = postal
        query = _name_statement(dialect, bool(plain), bool(sounds), len(ranges), postal=True)
        rows = list(session.execute(query, params).all())
        capped = bool(rows) and rows[0][-1] >= EXACT_CANDIDATES
        found = [] if capped else _ranked(rows, tuple(words), "name+postal_code", limit)
        if found:
            return found
        params |= {"keys": sorted(plain | sounds), "cap": POSTAL_CANDIDATES}
        query = _postal_name_statement(bool(plain or sounds), len(ranges))
        rows = list(session.execute(query, params).all())
        return _ranked(rows, tuple(words), "name+postal_code", limit)
    query = _name_statement(dialect, bool(plain), bool(sounds), len(ranges))
    rows = list(session.execute(query, params).all())
    common = bool(rows) and rows[0][-1] >= EXACT_CANDIDATES
    if common and len(usable) > 1:
        rows.extend(_namesakes(session, usable, rows))
    return _ranked(rows, tuple(words), "name", limit)


def _ranges_matching(count: int) -> list[Any]:
    key = _NAME_KEY.c.key
    return [and_(key >= bindparam(f"low{i}"), key < bindparam(f"high{i}")) for i in range(count)]


@lru_cache(maxsize=64)
def _name_statement(
    dialect: str, plain: bool, sounds: bool, ranges: int, *, postal: bool = False
) -> Select[Any]:
    """The candidates of a name in one statement: each read of the name keys capped on its
    own (a subquery: SQLite takes no LIMIT on the members of a UNION), then their active
    customers by primary key, each row ending with the number of ids the exact words read
    (all of them up to the cap: the surname may be too common for the read to hold its
    bearers); with ``postal``, only the customers of the postal code ``:postal``. Built once
    per shape; the keys, bounds and caps are parameters."""
    key = _NAME_KEY.c.key
    reads: list[tuple[Select[Any], bool]] = []
    if plain:
        found = select(_NAME_KEY.c.customer_id).where(key.in_(bindparam("plain", expanding=True)))
        reads.append((found.limit(bindparam("exact_cap", type_=Integer())), True))
    if sounds:
        found = select(_NAME_KEY.c.customer_id).where(key.in_(bindparam("sounds", expanding=True)))
        reads.append((found.limit(bindparam("sound_cap", type_=Integer())), False))
    for matching in _ranges_matching(ranges):
        found = select(_NAME_KEY.c.customer_id).where(matching).order_by(key)
        reads.append((found.limit(bindparam("prefix_cap", type_=Integer())), False))
    parts = [
        select(sub.c.customer_id, literal_column("1" if exact else "0").label("exact"))
        for sub, exact in ((read.subquery(), exact) for read, exact in reads)
    ]
    candidates = (parts[0] if len(parts) == 1 else parts[0].union_all(*parts[1:])).cte("candidates")
    read_exact = select(func.count()).where(candidates.c.exact == 1).scalar_subquery()
    c = _CUSTOMER.c
    return select(*_columns(), read_exact.label("exact")).where(
        _among(dialect, c.id, select(candidates.c.customer_id)),
        c.status == "active",
        *([c.postal_code == bindparam("postal")] if postal else []),
    )


def _among(dialect: str, column: Any, rows: Select[Any]) -> Any:
    """``column IN (rows)``; on PostgreSQL ``= ANY(ARRAY(rows))``, which it runs as one
    index scan over the sorted keys (twice as fast here as the semi-join it plans for the
    IN). A database difference: its place is ``db.Dialect``, with ``one_of``."""
    if dialect == "postgresql":
        return column == any_(func.array(rows.scalar_subquery()))
    return column.in_(rows)


@lru_cache(maxsize=64)
def _postal_name_statement(keys: bool, ranges: int) -> Select[Any]:
    """The active customers of a postal code whose name keys match (at most ``:cap``)."""
    key = _NAME_KEY.c.key
    matching = or_(
        *([key.in_(bindparam("keys", expanding=True))] if keys else []),
        *_ranges_matching(ranges),
    )
    c = _CUSTOMER.c
    return (
        select(*_columns())
        .where(
            c.postal_code == bindparam("postal"),
            c.status == "active",
            c.id.in_(select(_NAME_KEY.c.customer_id).where(matching)),
        )
        .limit(bindparam("cap", type_=Integer()))
    )


def _ranked(
    rows: Sequence[Any], words: tuple[str, ...], matched_on: str, limit: int
) -> list[SearchHit]:
    """The rows that match the words well enough (MIN_SCORE), best first, as hits: the score
    of :func:`_name_score`, computed for all the rows at once (each distinct name word
    compared once to each word typed, in rapidfuzz's C code, then maxima by array)."""
    unique: dict[int, Any] = {}
    for row in rows:
        unique.setdefault(row[_AT_ID], row)
    if not unique:
        return []
    candidates = list(unique.values())
    names: dict[str, int] = {}  # each distinct name, numbered
    held = [  # per candidate: the numbers of its first, last and maiden names (-1: none)
        [
            names.setdefault(name, len(names)) if name else -1
            for name in (r[_AT_FIRST], r[_AT_LAST], r[_AT_MAIDEN])
        ]
        for r in candidates
    ]
    tokens: dict[str, int] = {}  # each distinct word of those names, numbered
    spans: list[list[int]] = [
        [tokens.setdefault(t, len(tokens)) for t in _tokens(name)] for name in names
    ]
    best = _name_bests(words, list(tokens), spans)  # per word, per name (-1: a name without words)
    best = np.hstack([best, np.full((len(words), 1), -1.0)])  # column -1: no such name
    per_candidate = best[:, np.array(held)].max(axis=2).T.tolist()
    count = len(words)
    scored: list[tuple[float, Any]] = []
    for row, bests in zip(candidates, per_candidate, strict=True):
        score = 0.0 if bests[0] < 0 else round(sum(bests) / count, 1)
        if score >= MIN_SCORE:
            scored.append((score, row))
    scored.sort(key=lambda p: (-p[0], p[1][_AT_LAST] or "", p[1][_AT_FIRST] or "", p[1][_AT_ID]))
    return [_hit(row, score, matched_on) for score, row in scored[:limit]]


def _name_bests(words: tuple[str, ...], tokens: list[str], spans: list[list[int]]) -> Any:
    """Per word typed (rows) and per name (columns, each the list of its words' numbers in
    ``tokens``): the best similarity of the word to one of the name's words, as
    :func:`_similarity` scores it; -1 for a name without words."""
    best = np.full((len(words), len(spans)), -1.0)
    if not tokens:
        return best
    similarity = process.cdist(words, tokens, scorer=fuzz.ratio, dtype=np.float64)
    sounds = np.array([_sound(t) for t in tokens], dtype=object)
    final = len(words) - 1
    for index, word in enumerate(words):
        sound = _sound(word)
        if sound:
            alike = sounds == sound
            similarity[index, alike] = np.maximum(similarity[index, alike], 90.0)
        if index == final and len(word) >= 2:
            starting = np.array([t.startswith(word) for t in tokens])
            similarity[index, starting] = np.maximum(similarity[index, starting], 95.0)
            similarity[index, np.array([t == word for t in tokens])] = 100.0
    filled = [i for i, span in enumerate(spans) if span]
    if filled:
        flat = [t for i in filled for t in spans[i]]
        starts = np.cumsum([0] + [len(spans[i]) for i in filled[:-1]])
        best[:, filled] = np.maximum.reduceat(similarity[:, flat], starts, axis=1)
    return best


def _namesakes(session: Session, words: list[str], rows: list[Any]) -> list[Any]:
    """A surname too common for its key reads to hold every bearer (MARTIN): its bearers
    whose first name starts with the first letter of another word typed, through the (last
    name, first name) index, for each spelling of a typed surname seen among the rows read
    (``jean martin``: the Martins whose first name starts with J, and the Jeans with M)."""
    typed = set(words)
    c = _CUSTOMER.c
    first = c.first_name
    wanted = []
    for spelling in sorted({r.last_name for r in rows if r.last_name}):
        surname = set(plain_name(spelling).split())
        others = [w for w in words if w not in surname]
        if not surname or not surname <= typed or not others:
            continue
        starts = sorted({v for w in others for v in _INITIALS.get(w[0], w[0])})
        initial = or_(*[and_(first >= v, first < chr(ord(v) + 1)) for v in starts])
        wanted.append(and_(c.last_name == spelling, initial))
    if not wanted:
        return []
    query = select(*_columns()).where(or_(*wanted), c.status == "active")
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
    final = len(words) - 1
    parts = [
        tuple(_best_of(word, name, index == final) for index, word in enumerate(words))
        for name in (first, last, maiden)
        if name
    ]
    return _combine(parts, len(words))


def _combine(parts: Sequence[tuple[float, ...]], count: int) -> float:
    """The score from each name's best similarity per word (-1: a name without words)."""
    if not parts or not count:
        return 0.0
    bests = [max(part[index] for part in parts) for index in range(count)]
    if bests[0] < 0:  # no name has a word
        return 0.0
    return round(sum(bests) / count, 1)


@lru_cache(maxsize=200_000)
def _best_of(word: str, name: str, typing: bool) -> float:
    """The word's best similarity to one of the name's words (-1: the name has none). Names
    repeat across candidates (a surname's bearers, common first names): each pair is scored
    once."""
    return max((_similarity(word, token, typing) for token in _tokens(name)), default=-1.0)


@lru_cache(maxsize=200_000)
def _similarity(word: str, token: str, typing: bool) -> float:
    similarity = fuzz.ratio(word, token)
    sound = _sound(word)
    if sound and _sound(token) == sound:
        similarity = max(similarity, 90.0)
    if typing and len(word) >= 2 and token.startswith(word):
        similarity = max(similarity, 100.0 if token == word else 95.0)
    return similarity


@lru_cache(maxsize=100_000)
def _tokens(name: str) -> tuple[str, ...]:
    return tuple(plain_name(name).split())


def _hit(row: Any, score: float, matched_on: str) -> SearchHit:
    return SearchHit(
        customer_id=row[_AT_ID],
        civility=row[_AT["civility"]],
        first_name=row[_AT_FIRST],
        last_name=row[_AT_LAST],
        birth_date=row[_AT["birth_date"]],
        email=row[_AT["email"]],
        phone_mobile=row[_AT["phone_mobile"]],
        postal_code=row[_AT["postal_code"]],
        city=row[_AT["city"]],
        customer_type=row[_AT["customer_type"]],
        score=score,
        matched_on=matched_on,
    )


def _best(hits: list[SearchHit], limit: int) -> list[SearchHit]:
    hits.sort(key=lambda h: (-h.score, h.last_name or "", h.first_name or "", h.customer_id))
    return hits[:limit]
