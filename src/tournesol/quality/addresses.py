"""French postal addresses to the six AFNOR NF Z10-011 lines, checked against the postal codes.

The standard (and La Poste's addressing rules built on it) writes a French address on at most
six lines of at most 38 characters, left-aligned, blank lines left out:

1. identity of the addressee (name, company);
2. inside the building: apartment, floor, staircase, "chez", c/o;
3. outside the building: entrance, building, residence, industrial zone;
4. number, suffix (B, T, Q, C for bis, ter, quater, quinquies), street type and name;
5. special delivery mentions and lieu-dit: BP, CS, TSA, poste restante, lieu-dit;
6. postal code (or CEDEX code), one space, locality in capitals (plus ``CEDEX nn``).

A foreign address adds a seventh line, the country's name in French capitals. Lines 4 to 6
are written in capitals without accents or punctuation; lines 1 to 3 are free (kept as
given, spaces cleaned). Street types are written in full and abbreviated with the official
abbreviations only when the line would exceed 38 characters. See docs/quality.md.

:func:`normalize_address` takes the lines as a source gives them (structured fields, or one
free-text address), moves what it finds in the wrong slot, rewrites each line, checks the
postal code and the city against :mod:`tournesol.quality.postcodes`, and returns an
:class:`AddressResult` with the lines, the parts of the street line and the flags.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final, NamedTuple

from tournesol.quality.address_tables import (
    AREA_TYPES,
    ARTICLES,
    BUILDING_WORDS,
    COMPLEMENT_WORDS,
    COUNTRIES,
    COUNTRY_ALIASES,
    FRENCH_TERRITORIES,
    LIGHT_ABBREVIATIONS,
    NO_COUNTRY,
    ONE_LETTER_TYPES,
    POSTAL_PREFIXES,
    SPECIAL_FORMS,
    SPECIAL_WORDS,
    STREET_TYPES,
    SUFFIX_WORDS,
    TYPE_FIRST_WORDS,
    TYPE_VARIANTS,
    WORD_ABBREVIATIONS,
    WORD_EXPANSIONS,
)

# re-exported under its former name for tests/unit/quality/test_addresses.py
from tournesol.quality.address_tables import TYPE_VARIANTS as _TYPE_VARIANTS  # noqa: F401
from tournesol.quality.base import Flag, Severity
from tournesol.quality.postcodes import (
    Commune,
    city_key,
    communes,
    department,
    find,
    to_ascii,
)
from tournesol.quality.postcodes import postal_codes_of as _postal_codes_of

MAX_LINE: Final = 38  # NF Z10-011: 38 characters per line, spaces included

FLAGS: tuple[Flag, ...] = (
    Flag(
        "ADDRESS_INCOMPLETE",
        "address",
        Severity.INVALID,
        "A French address with neither a postal code nor a city: it cannot be delivered.",
    ),
    Flag(
        "ADDRESS_UNKNOWN_POSTCODE",
        "address",
        Severity.INVALID,
        "The postal code has five digits but does not exist (and the address is no CEDEX).",
    ),
    Flag(
        "POSTCODE_INVALID",
        "address",
        Severity.INVALID,
        "The postal code is not a French postal code (letters, too few or too many digits).",
    ),
    Flag(
        "POSTCODE_MISSING",
        "address",
        Severity.INVALID,
        "No postal code, and the city has none or several: line 6 cannot be completed.",
    ),
    Flag(
        "POSTCODE_FIXED",
        "address",
        Severity.FIXED,
        "The postal code was repaired: leading zero restored (1000 -> 01000), spaces, a F- "
        "prefix or an Excel decimal removed.",
    ),
    Flag(
        "POSTCODE_INFERRED",
        "address",
        Severity.FIXED,
        "The missing postal code was taken from the city, which has only one.",
    ),
    Flag(
        "POSTCODE_CITY_MISMATCH",
        "address",
        Severity.WARNING,
        "The city is none of the communes, routing labels or lieux-dits of the postal code.",
    ),
    Flag(
        "CITY_FIXED",
        "address",
        Severity.FIXED,
        "The city was misspelt (one or two letters) and corrected to the only commune of the "
        "postal code it is close to.",
    ),
    Flag(
        "CITY_INFERRED",
        "address",
        Severity.FIXED,
        "The missing city was taken from the postal code, which serves one locality.",
    ),
    Flag(
        "CITY_MISSING",
        "address",
        Severity.WARNING,
        "No city, and the postal code serves several localities: line 6 has the code only.",
    ),
    Flag(
        "ADDRESS_CEDEX",
        "address",
        Severity.INFO,
        "A CEDEX address: the code is a CEDEX code, checked by department only.",
    ),
    Flag(
        "ADDRESS_POSTCODE_UNCHECKED",
        "address",
        Severity.INFO,
        "A postal code of New Caledonia, French Polynesia or Wallis-et-Futuna (986-988), "
        "outside the reference: kept without a check.",
    ),
    Flag(
        "ADDRESS_RESTRUCTURED",
        "address",
        Severity.FIXED,
        "Parts of the address were found in the wrong field and moved to their AFNOR line.",
    ),
    Flag(
        "ADDRESS_PARSED",
        "address",
        Severity.INFO,
        "The address was given as free text and split into AFNOR lines.",
    ),
    Flag(
        "ADDRESS_ABBREVIATED",
        "address",
        Severity.INFO,
        "A line longer than 38 characters was shortened with the official abbreviations.",
    ),
    Flag(
        "ADDRESS_LINE_TOO_LONG",
        "address",
        Severity.WARNING,
        "A line is still longer than 38 characters after abbreviation (kept whole).",
    ),
    Flag(
        "ADDRESS_NO_STREET",
        "address",
        Severity.WARNING,
        "Neither a street line (4) nor a lieu-dit or BP line (5).",
    ),
    Flag(
        "ADDRESS_NUMBER_RANGE",
        "address",
        Severity.INFO,
        "The street number is a range (12-14); La Poste asks for the first number only.",
    ),
    Flag(
        "ADDRESS_FOREIGN",
        "address",
        Severity.INFO,
        "A foreign address: its lines are kept as given and the country line is added.",
    ),
    Flag(
        "ADDRESS_COUNTRY_UNKNOWN",
        "address",
        Severity.WARNING,
        "The country is not recognised; it is printed as given.",
    ),
    Flag(
        "COUNTRY_FIXED",
        "address",
        Severity.FIXED,
        "The country contradicted the postal code (France given with a Monaco code 980xx).",
    ),
    Flag(
        "COUNTRY_POSTCODE_MISMATCH",
        "address",
        Severity.WARNING,
        "Monaco is given as the country but the postal code is not a Monaco code (980xx).",
    ),
)

# --- text primitives ---------------------------------------------------------------------------


def _fold_table() -> dict[int, str]:
    """A length-preserving fold for matching: each Latin character whose AFNOR form (see
    :func:`_afnor`) is one letter, digit or space becomes that character; the others (Œ, ß,
    °...) are left as they are, and a text that keeps any goes through :func:`_afnor`."""
    table: dict[int, str] = {}
    for code in (*range(0x250), 0x2018, 0x2019, 0x201C, 0x201D, 0x2013, 0x2014, 0x202F):
        if code in (0xB0,):  # "°": unidecode writes "deg", the AFNOR lines a space
            table[code] = " "
            continue
        written = _NOT_ALNUM.sub(" ", to_ascii(chr(code)).upper())
        if len(written) == 1:
            table[code] = written
    return table


_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_FOLD: Final = _fold_table()
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff]")
_BREAKS = re.compile(r"\s*[\r\n\u2028\u2029;|,]+\s*")
_BREAK_CHAR = re.compile(r"[\r\n\u2028\u2029;|,]")
_EDGE_PUNCT = " ,;:-/\\_*+"


def _fold(text: str) -> str:
    return text.translate(_FOLD)


def _clean(text: str | None, *, keep_breaks: bool = False) -> str | None:
    """Control characters and odd spaces removed, runs of spaces collapsed; None when blank."""
    if text is None:
        return None
    if not text.isprintable():
        text = _CONTROL.sub(" ", text)
    if keep_breaks and ("\n" in text or "\r" in text or "\u2028" in text or "\u2029" in text):
        lines = (" ".join(line.split()) for line in re.split(r"[\r\n\u2028\u2029]+", text))
        text = "\n".join(line for line in lines if line)
    else:
        text = " ".join(text.split())
    return text or None


@lru_cache(maxsize=16384)
def _clean_field(text: str) -> str | None:
    """:func:`_clean` of a one-line field (postal code, city, country): cached, they repeat."""
    return _clean(text)


@lru_cache(maxsize=65536)
def _afnor(text: str) -> str:
    """Lines 4 to 6: capitals, no accents, every punctuation run as one space."""
    if "°" in text:
        text = text.replace("°", " ")  # unidecode writes "deg"
    return _NOT_ALNUM.sub(" ", to_ascii(text).upper()).strip()


def _light(text: str) -> str:
    """Lines 1 to 3: kept as given, minus stray punctuation at the ends."""
    return text.strip(_EDGE_PUNCT)


_ALNUM = re.compile(r"[^\W_]")


def _has_alnum(text: str) -> bool:
    return _ALNUM.search(text) is not None


def _expand(tokens: list[str]) -> list[str]:
    return [WORD_EXPANSIONS.get(t, t) for t in tokens]


def _shorten(tokens: list[str], start: int = 0) -> tuple[list[str], bool]:
    """Apply the common-word abbreviations one at a time, left to right, from ``start``, until
    the tokens fit in a line. Returns the tokens and whether anything was abbreviated."""
    changed = False
    i = start
    while i < len(tokens) and len(" ".join(tokens)) > MAX_LINE:
        pair = " ".join(tokens[i : i + 2])
        if pair in WORD_ABBREVIATIONS:
            tokens[i : i + 2] = [WORD_ABBREVIATIONS[pair]]
            changed = True
        elif tokens[i] in WORD_ABBREVIATIONS:
            tokens[i] = WORD_ABBREVIATIONS[tokens[i]]
            changed = True
        i += 1
    return tokens, changed


# --- the street line (4) -----------------------------------------------------------------------

_NUMBER = re.compile(
    r"^\s*(?:NO?[^A-Z0-9]*(?=\d))?(\d{1,4})(?:\s*[-/]\s*(\d{1,4}))?"
    r"([A-Z]{1,9})?(?![0-9])"
)
_N_DEGREE = re.compile(r"\bN\s*[°º]\s*(?=\d)", re.I)
_LEADING_JUNK = re.compile(r"^[^A-Z0-9]+")


class _Street(NamedTuple):
    line: str
    number: str | None
    suffix: str | None
    type: str | None
    name: str | None
    abbreviated: bool
    too_long: bool
    is_range: bool


def _type_at(tokens: list[str], i: int) -> tuple[str, int] | None:
    """The street type starting at token i (full word, tokens used), if any."""
    if i >= len(tokens) or tokens[i] not in TYPE_FIRST_WORDS:
        return None
    for n in (4, 3, 2, 1):
        if i + n <= len(tokens):
            full = TYPE_VARIANTS.get(" ".join(tokens[i : i + n]))
            if full is not None:
                return full, n
    return None


@lru_cache(maxsize=65536)
def _street_words(
    rest: str, numbered: bool, suffix: str | None
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """The part of line 4 after the number (upper case, no accents): the suffix (the one
    given, or a suffix word or letter in front), the street type in full and the name's words.
    Cached apart from the number, which rarely repeats while the street names do."""
    tokens: list[str] = _NOT_ALNUM.sub(" ", rest).split()
    if numbered and suffix is None and tokens:
        first = tokens[0]
        if first in SUFFIX_WORDS:
            suffix = SUFFIX_WORDS[first]
            tokens = tokens[1:]
        elif (
            len(first) == 1
            and first.isalpha()
            and (len(tokens) == 1 or _type_at(tokens, 1) is not None)  # "12 B", "12 B RUE X"
        ):
            suffix = first
            tokens = tokens[1:]
    street_type = None
    found = _type_at(tokens, 0) if tokens else None
    if found is not None:
        full, used = found
        one_letter = " ".join(tokens[:used]) in ONE_LETTER_TYPES
        if not one_letter or numbered or (len(tokens) > 1 and tokens[1] in ARTICLES):
            street_type = full
            tokens = tokens[used:]
    return suffix, street_type, tuple(_expand(tokens))


@lru_cache(maxsize=65536)
def _street(text: str) -> _Street:
    """Parse and write line 4: number, suffix, type in full, name; abbreviated when too long.

    >>> _street("12 bis av. de la République").line
    '12 B AVENUE DE LA REPUBLIQUE'
    """
    raw = _N_DEGREE.sub("", text) if ("°" in text or "º" in text) else text
    upper = _LEADING_JUNK.sub("", to_ascii(raw).upper())
    number = suffix = None
    is_range = False
    rest = upper
    m = _NUMBER.match(upper) if upper[:1].isdigit() or upper[:1] == "N" else None
    if m and m.group(1).lstrip("0"):  # "0" is no number
        attached = m.group(3)
        if attached is not None and len(attached) == 1 and not m.group(2):
            # "12B", "1Z I": the letter is read as if it stood apart ("12 B", "1 Z I"), by the
            # same rule (a suffix when alone or before a street type, else maybe a type), so
            # that the line written reads the same when normalized again
            number, rest = m.group(1), upper[m.end(1) :]
        elif attached is None or attached in SUFFIX_WORDS or len(attached) == 1:
            number, rest = m.group(1), upper[m.end() :]
            suffix = SUFFIX_WORDS.get(attached, attached) if attached else None
        elif _type_at([attached, *_NOT_ALNUM.sub(" ", upper[m.end() :]).split()], 0):
            number, rest = m.group(1), upper[m.end(2) if m.group(2) else m.end(1) :]  # 12RUE
        if number is not None and m.group(2):
            number, is_range = f"{number}-{m.group(2)}", True
    suffix, street_type, name_tokens = _street_words(rest, number is not None, suffix)
    head = [p for p in (number, suffix) if p]
    line_tokens = [*head, *(street_type.split() if street_type else ()), *name_tokens]
    abbreviated = False
    line = " ".join(line_tokens)
    if len(line) > MAX_LINE:
        if street_type and STREET_TYPES[street_type] != street_type:
            line_tokens = [*head, STREET_TYPES[street_type], *name_tokens]
            abbreviated = True
        if len(" ".join(line_tokens)) > MAX_LINE:
            start = len(head) + (1 if street_type else 0)
            line_tokens, changed = _shorten(line_tokens, start)
            abbreviated = abbreviated or changed
        line = " ".join(line_tokens)
    return _Street(
        line=line,
        number=number,
        suffix=suffix,
        type=street_type,
        name=" ".join(name_tokens) or None,
        abbreviated=abbreviated,
        too_long=len(line) > MAX_LINE,
        is_range=is_range,
    )


# --- line 5 ------------------------------------------------------------------------------------

_CEDEX_TAIL = re.compile(r"(?:^|\s)CEDEX(?:\s+(\d{1,3}))?\s*$")


@lru_cache(maxsize=16384)
def _special(text: str) -> tuple[str, str | None, bool, bool]:
    """Line 5 in AFNOR form; the CEDEX found at its end; abbreviated; too long."""
    line = _afnor(text)
    cedex = None
    m = _CEDEX_TAIL.search(line)
    while m:
        cedex = cedex or "CEDEX" + (f" {m.group(1)}" if m.group(1) else "")
        line = line[: m.start()].strip()
        m = _CEDEX_TAIL.search(line)
    for pattern, replacement in SPECIAL_FORMS:
        line = pattern.sub(replacement, line)
    tokens = _expand(line.split())
    abbreviated = False
    if len(" ".join(tokens)) > MAX_LINE:
        if tokens[:2] == ["LIEU", "DIT"]:
            tokens[:2] = ["LD"]
            abbreviated = True
        tokens, changed = _shorten(tokens)
        abbreviated = abbreviated or changed
    line = " ".join(tokens)
    return line, cedex, abbreviated, len(line) > MAX_LINE


# --- finding what each piece of text is --------------------------------------------------------

_TYPES_ALT = "|".join(
    sorted((re.escape(v) for v in TYPE_VARIANTS if len(v) > 1), key=len, reverse=True)
)
_POSTAL_PIECE = re.compile(
    rf"^(?:(?:F|FR)\s+)?(\d{{5}}|\d{{2}} \d{{3}})(?:\s+(?!(?:{_TYPES_ALT})\b)[A-Z].*)?$"
)
_STREET_INSIDE = re.compile(
    rf"\s(\d{{1,4}}(?:\s?(?:BIS|TER|QUATER|[A-Z]))?\s+(?:{_TYPES_ALT}|R)\s)"
)
_TRAILING_PART = re.compile(
    r"\s((?:BAT|BATIMENT|APPT|APT|APPARTEMENT|ETAGE|ESC|ESCALIER|ENTREE|PORTE|LOGEMENT|"
    r"BP|CS|TSA)(?:\s+N)?\s+[A-Z0-9]{1,4}(?=\s|$)|\d{1,2}\s?(?:E|EME|ER|ERE)\s+ETAGE(?=\s|$))"
)
_NUMBER_SIGN = re.compile(r"^NO? ?(?=\d)")
_NUMBER_ONLY = re.compile(r"^(?:N\s*)?\d{1,4}(?:\s*(?:BIS|TER|QUATER|[A-Z]))?$")


def _kind(folded: str) -> str:
    """complement, building, special, postal, street, area or unknown."""
    if folded[:1] == "N":
        folded = _NUMBER_SIGN.sub("", folded)  # "N 12 RUE X", as the street line drops it
    if COMPLEMENT_WORDS.match(folded):
        return "complement"
    if SPECIAL_WORDS.match(folded):
        return "special"
    if _POSTAL_PIECE.match(folded):
        return "postal"
    if folded[:1].isdigit():
        return "street"
    if BUILDING_WORDS.match(folded):
        return "building"
    tokens = folded.split()
    found = _type_at(tokens, 0)
    if found is not None:
        full, used = found
        if " ".join(tokens[:used]) in ONE_LETTER_TYPES and (
            len(tokens) < 2 or tokens[1] not in ARTICLES
        ):
            return "unknown"
        return "area" if full in AREA_TYPES else "street"
    return "unknown"


@lru_cache(maxsize=65536)
def _pieces(text: str, depth: int = 0) -> tuple[tuple[str, str], ...]:
    """One piece of a line -> its (kind, text) parts, split where a street starts inside a
    complement ("Bat B 12 rue X") or a complement trails a street ("12 rue X appt 3")."""
    folded = _fold(text)  # same length as text: positions found in it cut the text
    words = " ".join(folded.split())
    # classified as it will read once written (non-Latin letters transliterated), so that a
    # rerun on the written line agrees
    kind = _kind(words if words.isascii() else _afnor(text))
    if depth < 4:
        cut = None
        if kind == "street":
            m = _TRAILING_PART.search(folded)
            cut = m.start(1) if m else None
        elif kind in ("complement", "building", "special", "unknown", "area"):
            m = _STREET_INSIDE.search(folded)
            cut = m.start(1) if m else None
        if cut:
            head, tail = text[:cut].strip(), text[cut:].strip()
            if head and tail:
                return (*_pieces(head, depth + 1), *_pieces(tail, depth + 1))
    return ((kind, text),)


_LINES: Final = ("complement", "building", "street", "special")


@lru_cache(maxsize=65536)
def _line_pieces(text: str) -> tuple[tuple[str, str], ...]:
    """A line field as given -> the (kind, text) of its pieces: cleaned (:func:`_clean`, line
    breaks kept), split (:func:`_split`) and classified (:func:`_pieces`)."""
    cleaned = _clean(text, keep_breaks=True)
    if not cleaned:
        return ()
    return tuple(kind_piece for part in _split(cleaned) for kind_piece in _pieces(part))


def _split(text: str) -> list[str]:
    """A field's pieces: line breaks, semicolons, commas and bars separate them; a lone number
    goes with the piece next to it ("12, rue X", "rue X, 12")."""
    if not _BREAK_CHAR.search(text):
        part = text.strip(_EDGE_PUNCT)
        return [part] if _has_alnum(part) else []
    parts = [p.strip(_EDGE_PUNCT) for p in _BREAKS.split(text)]
    parts = [p for p in parts if _has_alnum(p)]
    merged: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if _NUMBER_ONLY.match(_fold(part).strip()) and len(parts) > 1:
            if i + 1 < len(parts):
                merged.append(f"{part} {parts[i + 1]}")
                i += 2
                continue
            if merged:
                merged[-1] = f"{part} {merged[-1]}"
                i += 1
                continue
        merged.append(part)
        i += 1
    return merged


# --- postal code, city, country ----------------------------------------------------------------

_EXCEL_DECIMAL = re.compile(r"^(\d{4,5})[.,]0+$")
_CODE_FIELD = re.compile(r"^(?:([A-Z]{1,2})\s*)?(\d{5}|\d{4}|\d{2} \d{3})$")
_CODE_THEN_TEXT = re.compile(r"^(?:(?:F|FR)\s+)?(\d{5}|\d{2} \d{3})\s+(\D.*)$")
_TEXT_THEN_CODE = re.compile(r"^(\D+?)\s+(\d{5})$")
_CEDEX_IN_CITY = re.compile(r"(?<![A-Z0-9])CEDEX(?:\s*(\d{1,3}))?\s*$")
_ARRONDISSEMENT = re.compile(
    r"^(PARIS|LYON|MARSEILLE)\s+\d{1,2}\s*(?:E|EME|ER|ERE)?(?:\s+ARR\w*)?$"
)
_CODE_IN_TEXT = re.compile(r"(?<![0-9])(\d{5}|\d{2} \d{3})(?![0-9])")
_FOUR_DIGIT_LINE = re.compile(r"^(\d{4})\s+([A-Z].*)$")
_FOREIGN_CODE_FIRST = re.compile(r"^([A-Z]{0,3}-?\d[\dA-Z-]*)\s+(\D.*)$", re.I)


class _Code(NamedTuple):
    code: str | None  # five digits, or None
    text: str | None  # text found next to the code (a city) in the same field
    cedex: str | None
    flags: tuple[str, ...]
    prefix: str | None  # a country letter prefix (B-, CH-...)


@lru_cache(maxsize=16384)
def _postal_field(text: str) -> _Code:
    """The postal-code field: five digits, or repairable, or with the city or a CEDEX in it."""
    m = _EXCEL_DECIMAL.match(text)
    if m:
        text = m.group(1)
        fixed = True
    else:
        fixed = False
    folded = " ".join(_fold(text).split())
    cedex = None
    c = _CEDEX_IN_CITY.search(folded)
    if c:
        cedex = "CEDEX" + (f" {c.group(1)}" if c.group(1) else "")
        folded = folded[: c.start()].strip()
        text = folded
    m = _CODE_FIELD.match(folded)
    if m:
        prefix, digits = m.group(1), m.group(2).replace(" ", "")
        if prefix == "CP":  # "CP 75011": code postal
            prefix, fixed = None, True
        if prefix is not None and prefix not in POSTAL_PREFIXES:
            return _Code(None, None, cedex, ("POSTCODE_INVALID",), None)
        fixed = fixed or prefix is not None or " " in m.group(2)
        if len(digits) == 4:
            if prefix not in (None, "F", "FR"):
                return _Code(digits, None, cedex, (), prefix)
            digits, fixed = "0" + digits, True
        return _Code(digits, None, cedex, ("POSTCODE_FIXED",) if fixed else (), prefix)
    m = _CODE_THEN_TEXT.match(folded)
    if m:
        return _Code(m.group(1).replace(" ", ""), m.group(2), cedex, (), None)
    m = _TEXT_THEN_CODE.match(folded)
    if m:
        return _Code(m.group(2), m.group(1), cedex, (), None)
    if not folded:
        return _Code(None, None, cedex, (), None)
    return _Code(None, None, cedex, ("POSTCODE_INVALID",), None)


class _CityField(NamedTuple):
    city: str | None
    code: str | None
    cedex: str | None


@lru_cache(maxsize=16384)
def _city_field(text: str) -> _CityField:
    """The city field: the city, and a postal code or CEDEX written in it."""
    folded = _fold(text)  # same length as text
    code = cedex = None
    m = _CEDEX_IN_CITY.search(folded)
    if m:
        cedex = "CEDEX" + (f" {m.group(1)}" if m.group(1) else "")
        text, folded = text[: m.start()], folded[: m.start()]
    m2 = _CODE_THEN_TEXT.match(folded.strip()) or _TEXT_THEN_CODE.match(folded.strip())
    if m2:
        lead = len(folded) - len(folded.lstrip())
        if m2.re is _CODE_THEN_TEXT:
            code = m2.group(1).replace(" ", "")
            start = lead + m2.start(2)
            text, folded = text[start:], folded[start:]
        else:
            code = m2.group(2)
            end = lead + m2.end(1)
            text, folded = text[lead:end], folded[lead:end]
        m = _CEDEX_IN_CITY.search(folded)  # "Paris Cedex 75001"
        if m:
            cedex = cedex or "CEDEX" + (f" {m.group(1)}" if m.group(1) else "")
            text = text[: m.start()]
    city = _light(" ".join(text.split()))
    return _CityField(city if _has_alnum(city) else None, code, cedex)


@lru_cache(maxsize=4096)
def country_code(text: str) -> str | None:
    """ISO 3166 alpha-2 code of a country written as a code or a name (French or English);
    None when not recognised.

    >>> country_code("Belgique"), country_code("fr"), country_code("ALLEMAGNE"), country_code("?")
    ('BE', 'FR', 'DE', None)
    """
    key = _afnor(text)
    if key in NO_COUNTRY:
        return None
    if len(key) == 2 and key.isalpha() and (key in COUNTRIES or key in FRENCH_TERRITORIES):
        return key
    return COUNTRY_ALIASES.get(key)


# --- locality: postal code + city -> line 6 ----------------------------------------------------


class _Locality(NamedTuple):
    postal_code: str | None
    city: str | None  # official commune name, or the city as given when it matches nothing
    insee: str | None
    label: str | None  # the routing label on line 6 (without CEDEX)
    line5: str | None  # a lieu-dit the city turned out to be
    flags: tuple[str, ...]


@lru_cache(maxsize=65536)
def _label_key(label: str) -> str:
    return city_key(label)


def _pick(rows: tuple[Commune, ...] | list[Commune], key: str) -> Commune | None:
    """The row a city key designates among a postal code's rows (see docs: label first, then
    commune name, then lieu-dit; ties go to the commune whose name is that city)."""
    by_label = [r for r in rows if _label_key(r.routing_label) == key]
    if by_label:
        for r in by_label:
            if city_key(r.name) == key:
                return r
        for r in by_label:
            if city_key(r.name).startswith(key + " "):
                return r
        return by_label[0]
    by_name = [r for r in rows if city_key(r.name) == key]
    if by_name:
        for r in by_name:
            if _label_key(r.routing_label) == key:
                return r
        return by_name[0]
    for r in rows:
        if r.line5 and _label_key(r.line5) == key:
            return r
    return None


def _fuzzy(rows: tuple[Commune, ...], key: str) -> Commune | None:
    """The row of the only commune of the code whose name or label is within a typo or two of
    the key (difflib ratio >= 0.8), picked by the closest name or label."""
    if len(key) < 4 or len(key) > 60:
        return None
    keys: dict[str, Commune] = {}
    for r in rows:
        keys.setdefault(city_key(r.name), r)
        keys.setdefault(_label_key(r.routing_label), r)
    close = difflib.get_close_matches(key, list(keys), n=5, cutoff=0.8)
    if len({keys[k].insee_code or keys[k].name for k in close}) != 1:
        return None
    return _pick(rows, close[0])


@lru_cache(maxsize=65536)
def _locality(code: str, city: str, cedex: bool) -> _Locality:
    """Check a five-digit code (or "") and a city (or "") against the reference."""
    if not code:
        if not city:
            return _Locality(None, None, None, None, None, ())
        codes = _postal_codes_of(city)
        if len(codes) == 1:
            found = _locality(codes[0], city, cedex)
            return found._replace(flags=("POSTCODE_INFERRED", *found.flags))
        return _Locality(None, city, None, _afnor(city), None, ("POSTCODE_MISSING",))
    rows = communes(code)
    key = city_key(city) if city else ""
    if rows:
        if not key:
            labels = {r.routing_label for r in rows}
            if len(labels) == 1:
                only = _pick(rows, _label_key(rows[0].routing_label)) or rows[0]
                return _Locality(
                    code, only.name, only.insee_code, only.routing_label, None, ("CITY_INFERRED",)
                )
            return _Locality(code, None, None, None, None, ("CITY_MISSING",))
        row = _pick(rows, key)
        flags: tuple[str, ...] = ()
        if row is None:
            m = _ARRONDISSEMENT.match(key)
            if m:
                row = _pick(rows, m.group(1))
        if row is None:
            row = _fuzzy(rows, key)
            flags = ("CITY_FIXED",) if row is not None else ()
        if row is None:
            return _Locality(code, city, None, _afnor(city), None, ("POSTCODE_CITY_MISMATCH",))
        line5 = None
        if row.line5 and _label_key(row.line5) == key:
            line5 = row.line5
            flags = (*flags, "ADDRESS_RESTRUCTURED")
        return _Locality(code, row.name, row.insee_code, row.routing_label, line5, flags)
    if cedex:
        if not key:
            return _Locality(code, None, None, None, None, ("CITY_MISSING",))
        rows = find(city, postal_prefix=department(code))
        if not rows:
            m = _ARRONDISSEMENT.match(key)
            if m:
                key = m.group(1)
                rows = find(key, postal_prefix=department(code))
        if not rows:
            return _Locality(code, city, None, _afnor(city), None, ("POSTCODE_CITY_MISMATCH",))
        best = _pick(rows, key) or rows[0]
        label = best.routing_label if _label_key(best.routing_label) == key else _afnor(best.name)
        if len({r.insee_code for r in rows}) > 1:  # PARIS CEDEX: no one commune
            return _Locality(code, city, None, label, None, ())
        return _Locality(code, best.name, best.insee_code, label, None, ())
    given = _afnor(city) if city else None
    if department(code) in ("986", "987", "988"):
        return _Locality(code, city or None, None, given, None, ("ADDRESS_POSTCODE_UNCHECKED",))
    return _Locality(code, city or None, None, given, None, ("ADDRESS_UNKNOWN_POSTCODE",))


# --- the result --------------------------------------------------------------------------------

_INPUTS: Final = (
    "identity",
    "complement",
    "building",
    "street",
    "special",
    "postal_code",
    "city",
    "country",
    "free_text",
)


@dataclass(frozen=True, slots=True)
class AddressResult:
    """A postal address as received and as AFNOR lines, with its parts and flags.

    ``lines`` are the printable lines in order (blank ones left out); for a foreign address,
    its lines as given (cleaned) and the country line. ``city`` is the official commune name
    (or the city as given when it matches no commune), ``routing_label`` the locality printed
    on line 6, ``country`` an ISO 3166 alpha-2 code ("FR" for French addresses, overseas
    included; "MC" for Monaco). ``usable`` is False when nothing deliverable remains (only a
    name or a country, or ``ADDRESS_INCOMPLETE``): ``value`` is then None.
    """

    original: dict[str, str]
    identity: str | None = None
    complement: str | None = None
    building: str | None = None
    street: str | None = None
    special: str | None = None
    postal_code: str | None = None
    city: str | None = None
    routing_label: str | None = None
    cedex: str | None = None
    line6: str | None = None
    country: str | None = None
    insee_code: str | None = None
    street_number: str | None = None
    street_suffix: str | None = None
    street_type: str | None = None
    street_name: str | None = None
    lines: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    usable: bool = False

    @property
    def value(self) -> str | None:
        """The printable lines joined by newlines; None when nothing usable remains."""
        return "\n".join(self.lines) if self.usable and self.lines else None

    @property
    def valid(self) -> bool:
        return self.value is not None

    @property
    def foreign(self) -> bool:
        return "ADDRESS_FOREIGN" in self.flags

    def as_input(self) -> dict[str, str | None]:
        """The keyword arguments that give this result again through normalize_address.

        >>> r = normalize_address(street="12 bis av. de la République", postal_code="75011",
        ...                       city="paris")
        >>> normalize_address(**r.as_input()).lines == r.lines
        True
        """
        city = self.city
        if not self.foreign:
            city = _city_for_input(self)
        country = self.country
        if self.foreign and country is None and self.lines:
            country = self.lines[-1]
        return {
            "identity": self.identity,
            "complement": self.complement,
            "building": self.building,
            "street": self.street,
            "special": self.special,
            "postal_code": self.postal_code,
            "city": city,
            "country": country,
        }


def _city_for_input(result: AddressResult) -> str | None:
    """The city text that designates the same commune and routing label again: the label when
    it designates one commune of the code, else the commune's name."""
    base = result.city
    if result.insee_code is not None or result.postal_code == "98000":
        rows = communes(result.postal_code or "")
        label = result.routing_label
        if label and rows:
            row = _pick(rows, _label_key(label))
            if row is not None and row.insee_code == result.insee_code:
                base = label
        elif label and result.cedex:
            base = label
    elif result.routing_label and result.city is None:
        base = result.routing_label
    if result.cedex:
        return f"{base} {result.cedex}" if base else result.cedex
    return base


# --- normalize_address -------------------------------------------------------------------------


class _Piece(NamedTuple):
    origin: str  # complement, building, street, special, free
    kind: str
    text: str
    order: int


def normalize_address(
    *,
    identity: str | None = None,
    complement: str | None = None,
    building: str | None = None,
    street: str | None = None,
    special: str | None = None,
    postal_code: str | None = None,
    city: str | None = None,
    country: str | None = None,
    free_text: str | None = None,
) -> AddressResult:
    """Rewrite an address as AFNOR NF Z10-011 lines, checked against the postal codes.

    Takes the lines as a source gives them (any may be None): ``identity`` (line 1, kept),
    ``complement`` (line 2), ``building`` (line 3), ``street`` (line 4), ``special`` (line 5),
    ``postal_code``, ``city``, ``country`` (ISO code or name; France when absent), or
    ``free_text`` (a whole address on several lines or comma-separated). Returns an
    :class:`AddressResult`; never raises.

    >>> r = normalize_address(street="12 bis av. de la République", complement="Bât B",
    ...                       postal_code="75011", city="paris")
    >>> r.lines
    ('Bât B', '12 B AVENUE DE LA REPUBLIQUE', '75011 PARIS')
    >>> r.building, r.street_type, r.insee_code, r.flags
    ('Bât B', 'AVENUE', '75111', ('ADDRESS_RESTRUCTURED',))
    """
    given = (identity, complement, building, street, special, postal_code, city, country, free_text)
    texts = [v if v is None or isinstance(v, str) else str(v) for v in given]
    original = {n: t for n, t in zip(_INPUTS, texts, strict=True) if t and not t.isspace()}
    if not original:
        return AddressResult(original={})
    result, unsettled = _normalize(original, *texts)
    for _ in range(2):  # restructured: settle on the lines a rerun would give (idempotence)
        if not unsettled:
            break
        again, _ = _normalize(original, **result.as_input(), free_text=None)
        unsettled = again.lines != result.lines
        result = replace(again, flags=tuple(dict.fromkeys((*result.flags, *again.flags))))
    return result


def _normalize(
    original: dict[str, str],
    identity: str | None,
    complement: str | None,
    building: str | None,
    street: str | None,
    special: str | None,
    postal_code: str | None,
    city: str | None,
    country: str | None,
    free_text: str | None,
) -> tuple[AddressResult, bool]:
    """The result, and whether lines were moved or joined (a rerun may read them otherwise)."""
    flags: list[str] = []
    ident = _clean(identity)
    line_texts = (complement, building, street, special)
    code_text = _clean_field(postal_code) if postal_code is not None else None
    city_text = _clean_field(city) if city is not None else None
    country_text = _clean_field(country) if country is not None else None
    free = _clean(free_text, keep_breaks=True)
    free_parts = _split(free) if free else []

    # country: given, or the last piece of the free text, or a letter prefix of the code
    iso: str | None = None
    country_unknown = False
    if country_text and _afnor(country_text) not in NO_COUNTRY:
        iso = country_code(country_text)
        country_unknown = iso is None
    if free_parts:
        last = country_code(free_parts[-1]) if len(free_parts) > 1 else None
        if last is not None and (iso is None or last == iso or country_unknown):
            free_parts.pop()
            if iso is None:
                iso, country_unknown = last, False
    code_info = _postal_field(code_text) if code_text else None
    if iso is None and not country_unknown and code_info and code_info.prefix:
        iso = POSTAL_PREFIXES[code_info.prefix]

    if country_unknown or (iso is not None and iso not in FRENCH_TERRITORIES and iso != "MC"):
        fields = {
            name: _clean(text, keep_breaks=True)
            for name, text in zip(_LINES, line_texts, strict=True)
        }
        foreign = _foreign(
            original, ident, fields, code_text, city_text, free_parts, iso, country_text
        )
        return foreign, False

    # postal code and city: from their fields, else from the free text or another field
    cedex: str | None = None
    code: str | None = None
    the_city: str | None = None
    if code_info is not None:
        flags.extend(code_info.flags)
        code, cedex = code_info.code, code_info.cedex
        if code_info.text:
            the_city = code_info.text
            if not city_text:
                flags.append("ADDRESS_RESTRUCTURED")
    if city_text:
        cf = _city_field(city_text)
        the_city = cf.city or (the_city if not cf.code else None)
        cedex = cedex or cf.cedex
        if cf.code and not code:
            code = cf.code
            flags.append("ADDRESS_RESTRUCTURED")
    if free_parts:
        flags.append("ADDRESS_PARSED")
        code, the_city, cedex, free_parts = _free_locality(free_parts, code, the_city, cedex, flags)

    # the lines: every piece classified, then put in its slot (where it was given, when each
    # piece is of the kind of its field or of no kind: see _assign)
    given: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    in_place: dict[str, list[str]] = {name: [] for name in _LINES}
    simple = True
    for origin, text in zip(_LINES, line_texts, strict=True):
        if text is None:
            continue
        found = _line_pieces(text)
        given.append((origin, found))
        for kind, piece in found:
            if kind == origin or kind == "unknown":
                in_place[origin].append(piece)
            else:
                simple = False
    free_text_left = "\n".join(free_parts)
    if free_text_left:
        given.append(("free", tuple(kp for part in _split(free_text_left) for kp in _pieces(part))))
        simple = simple and not given[-1][1]
    if simple:
        slots, moved, found_code, found_city, found_cedex = in_place, False, None, None, None
    else:
        flat = [(origin, kind, piece) for origin, found in given for kind, piece in found]
        pieces = [_Piece(*piece, order) for order, piece in enumerate(flat)]
        slots, moved, found_code, found_city, found_cedex = _assign(pieces, code, the_city)
    unsettled = moved or bool(free_parts) or max(map(len, slots.values())) > 1
    if moved:
        flags.append("ADDRESS_RESTRUCTURED")
    if found_code:
        code, the_city = found_code, the_city or found_city
        cedex = cedex or found_cedex

    # line 4, line 5
    street_info = _street(" ".join(slots["street"])) if slots["street"] else None
    special_line = None
    if slots["special"]:
        special_line, special_cedex, short, long_ = _special(" ".join(slots["special"]))
        cedex = cedex or special_cedex
        if short:
            flags.append("ADDRESS_ABBREVIATED")
        if long_:
            flags.append("ADDRESS_LINE_TOO_LONG")
        special_line = special_line or None
    if street_info is not None:
        if street_info.suffix in ONE_LETTER_TYPES and street_info.type is None:
            unsettled = True  # "12Q X" is written "12 Q X", which reads "12 QUAI X"
        if street_info.abbreviated:
            flags.append("ADDRESS_ABBREVIATED")
        if street_info.too_long:
            flags.append("ADDRESS_LINE_TOO_LONG")
        if street_info.is_range:
            flags.append("ADDRESS_NUMBER_RANGE")

    # line 6
    loc = _locality(code or "", the_city or "", cedex is not None)
    flags.extend(loc.flags)
    code = loc.postal_code
    monaco = iso == "MC" or bool(code and code.startswith("980"))
    if code and code.startswith("980") and iso not in (None, "MC"):
        flags.append("COUNTRY_FIXED")
    if iso == "MC" and code and not code.startswith("980"):
        flags.append("COUNTRY_POSTCODE_MISMATCH")
    if loc.line5 and special_line is None:
        special_line = _afnor(loc.line5)
    if cedex:
        flags.append("ADDRESS_CEDEX")
    line6 = None
    if loc.postal_code or loc.label:
        parts6 = [p for p in (loc.postal_code, loc.label, cedex) if p]
        line6 = " ".join(parts6)
        if len(line6) > MAX_LINE:
            tokens, changed = _shorten(line6.split(), 1)
            line6 = " ".join(tokens)
            if changed:
                flags.append("ADDRESS_ABBREVIATED")
    if not loc.postal_code and not the_city:
        flags.append("ADDRESS_INCOMPLETE")
    if street_info is None and special_line is None:
        flags.append("ADDRESS_NO_STREET")

    # lines 1 to 3
    line2 = " ".join([_light(t) for t in slots["complement"]]) or None
    line3 = " ".join([_light(t) for t in slots["building"]]) or None
    if ident is not None and len(ident) > MAX_LINE:
        ident = _shorten_light(ident, flags)
    if line2 is not None and len(line2) > MAX_LINE:
        line2 = _shorten_light(line2, flags)
    if line3 is not None and len(line3) > MAX_LINE:
        line3 = _shorten_light(line3, flags)

    street_line = street_info.line if street_info and street_info.line else None
    lines = [x for x in (ident, line2, line3, street_line, special_line, line6) if x]
    if monaco:
        lines.append(COUNTRIES["MC"])
    if max(map(len, lines), default=0) > MAX_LINE and "ADDRESS_LINE_TOO_LONG" not in flags:
        flags.append("ADDRESS_LINE_TOO_LONG")
    usable = "ADDRESS_INCOMPLETE" not in flags and bool(
        line2 or line3 or street_line or special_line or line6
    )
    result = AddressResult(
        original=original,
        identity=ident,
        complement=line2,
        building=line3,
        street=street_line,
        special=special_line,
        postal_code=loc.postal_code,
        city=loc.city,
        routing_label=loc.label,
        cedex=cedex,
        line6=line6,
        country="MC" if monaco else "FR",
        insee_code=loc.insee,
        street_number=street_info.number if street_info else None,
        street_suffix=street_info.suffix if street_info else None,
        street_type=street_info.type if street_info else None,
        street_name=street_info.name if street_info else None,
        lines=tuple(lines),
        flags=tuple(dict.fromkeys(flags)),
        usable=usable,
    )
    return result, unsettled or "ADDRESS_RESTRUCTURED" in flags


def _shorten_light(text: str, flags: list[str]) -> str:
    """A line 1 to 3 longer than 38 characters, shortened with APPT, BAT, RES...; flagged when
    that changed it."""
    short_text = text
    for pattern, abbr in LIGHT_ABBREVIATIONS:
        short_text = pattern.sub(abbr, short_text)
    if short_text != text:
        flags.append("ADDRESS_ABBREVIATED")
    return short_text


def _free_locality(
    parts: list[str], code: str | None, city: str | None, cedex: str | None, flags: list[str]
) -> tuple[str | None, str | None, str | None, list[str]]:
    """Take the postal code and city from the end of a free-text address."""
    parts = list(parts)
    for i in range(len(parts) - 1, max(-1, len(parts) - 4), -1):
        raw = parts[i]
        folded = _fold(raw)
        if len(folded) != len(raw):
            continue
        matches = list(_CODE_IN_TEXT.finditer(folded))
        four = None
        if not matches and i == len(parts) - 1:
            four = _FOUR_DIGIT_LINE.match(folded)
            if four and _type_at(folded.split(), 1) is not None:
                four = None  # "1234 route de X" is a street
        if not matches and four is None:
            continue
        if matches:
            m = matches[-1]
            found_code = m.group(1).replace(" ", "")
            before, after = raw[: m.start()], raw[m.end() :]
        else:
            assert four is not None
            found_code = "0" + four.group(1)
            before, after = "", raw[four.start(2) :]
            flags.append("POSTCODE_FIXED")
        before = re.sub(r"(?i)(?:^|\s)(?:F|FR)\s*-?\s*$", "", before).strip(_EDGE_PUNCT + " ")
        after = after.strip(_EDGE_PUNCT + " ")
        if not after and i + 1 < len(parts):
            after = parts.pop(i + 1)
        if not after and before and i == len(parts) - 1 and not any(ch.isdigit() for ch in before):
            after, before = before, ""
        if code is None:
            code = found_code
        found = _city_field(after) if after else _CityField(None, None, None)
        if city is None:
            city = found.city
        cedex = cedex or found.cedex
        parts[i : i + 1] = [before] if before else []
        break
    return code, city, cedex, parts


def _assign(
    pieces: list[_Piece], code: str | None, city: str | None
) -> tuple[dict[str, list[str]], bool, str | None, str | None, str | None]:
    """Put each piece in its slot; returns the slots, whether a given piece moved, and a postal
    code, city and CEDEX found in a line when the fields had none."""
    if all(p.kind == p.origin or (p.kind == "unknown" and p.origin != "free") for p in pieces):
        simple: dict[str, list[str]] = {
            "complement": [],
            "building": [],
            "street": [],
            "special": [],
        }
        for p in pieces:
            simple[p.origin].append(p.text)
        return simple, False, None, None, None  # every piece is where it was given
    slots: dict[str, list[tuple[int, str]]] = {
        "complement": [],
        "building": [],
        "street": [],
        "special": [],
    }
    moved = False
    found_code = found_city = found_cedex = None
    streets = [p for p in pieces if p.kind == "street"]
    free = [p for p in pieces if p.origin == "free"]
    first_free_street = next((p.order for p in free if p.kind == "street"), None)
    last_unknown = next((p.order for p in reversed(free) if p.kind == "unknown"), None)
    for p in pieces:
        kind = p.kind
        if kind == "postal":
            cf = _city_field(p.text)
            if cf.code is None:
                cf = cf._replace(code=_postal_field(p.text).code, city=None)
            if code is None and found_code is None:
                found_code, found_city, found_cedex = cf.code, cf.city, cf.cedex
                moved = moved or p.origin != "free"
                continue
            if cf.code == (code or found_code):  # the postal code again: dropped
                moved = moved or p.origin != "free"
                continue
            kind = "unknown"
        alone = not any(s is not p for s in streets)
        if kind == "area":
            target = "street" if alone else "building"
        elif kind == "building":
            residence = _fold(p.text).lstrip().startswith("RES")
            target = "street" if p.origin == "street" and alone and residence else "building"
        elif kind in slots:
            target = kind
        elif p.origin != "free":
            target = p.origin
        elif not streets:
            target = "street" if p.order == last_unknown else "building"
        elif first_free_street is not None and p.order > first_free_street:
            target = "special"
        else:
            target = "building"
        if (
            target == "street"
            and p.origin not in ("street", "free")
            and any(s is not p and s.origin == "street" for s in streets)
        ):
            target = p.origin  # a second street stays where it was given
        if p.origin != "free" and target != p.origin:
            moved = True
        slots[target].append((p.order, p.text))
    out = {slot: [t for _, t in sorted(items)] for slot, items in slots.items()}
    return out, moved, found_code, found_city, found_cedex


def _foreign(
    original: dict[str, str],
    ident: str | None,
    fields: dict[str, str | None],
    code_text: str | None,
    city_text: str | None,
    free_parts: list[str],
    iso: str | None,
    country_text: str | None,
) -> AddressResult:
    """A foreign address: lines as given (cleaned), the locality, the country line."""
    flags = ["ADDRESS_FOREIGN"]
    if iso is None:
        flags.append("ADDRESS_COUNTRY_UNKNOWN")
    values = {k: (" ".join(v.split("\n")) if v else None) for k, v in fields.items()}
    city = city_text
    if free_parts:
        flags.append("ADDRESS_PARSED")
        *rest, locality = free_parts
        if not city and not code_text:
            m = _FOREIGN_CODE_FIRST.match(locality)
            code_text, city = (m.group(1), m.group(2)) if m else (None, locality)
        else:
            rest.append(locality)
        # the last piece is the street line, the one before the building, the rest line 2
        for slot, text in (
            ("complement", " ".join(rest[:-2])),
            ("building", rest[-2] if len(rest) > 1 else ""),
            ("street", rest[-1] if rest else ""),
        ):
            values[slot] = " ".join(p for p in (values[slot], text) if p) or None
    locality_line = " ".join(p for p in (code_text, city) if p) or None
    country_line = COUNTRIES.get(iso or "", _afnor(country_text or "")) or None
    lines = [
        x
        for x in (
            ident,
            values["complement"],
            values["building"],
            values["street"],
            values["special"],
            locality_line,
            country_line,
        )
        if x
    ]
    if any(len(x) > MAX_LINE for x in lines):
        flags.append("ADDRESS_LINE_TOO_LONG")
    usable = any(
        x for x in (values["complement"], values["building"], values["street"], locality_line)
    )
    return AddressResult(
        original=original,
        identity=ident,
        complement=values["complement"],
        building=values["building"],
        street=values["street"],
        special=values["special"],
        postal_code=code_text,
        city=city,
        line6=locality_line,
        country=iso,
        lines=tuple(lines),
        flags=tuple(flags),
        usable=usable,
    )
