"""Civilities, person names and the AFNOR identity line.

- :func:`normalize_civility`: the many spellings of a civility to ``M.``, ``Mme``, ``Dr``,
  ``Me``, ``Pr`` or ``M. et Mme``, with the gender it tells (``Mlle`` becomes ``Mme``: the
  French administration dropped *Mademoiselle* in 2012).
- :func:`normalize_name`: spacing, then case. A name typed in capitals or all in lower case is
  put in proper case with the French rules for particles (``DE LA FONTAINE`` ->
  ``de La Fontaine``, ``LE GALL`` -> ``Le Gall``, ``D'ARTAGNAN`` -> ``d'Artagnan``); a name
  already in mixed case was typed with care and keeps its case. Each name gets a matching
  ``key`` (upper-case ASCII): ``Hélène`` and ``HELENE`` share ``HELENE``.
- :func:`normalize_person`: a whole identity: a full name split into first and last name, a
  maiden name taken out of ``DUPONT née MARTIN``, first and last name put back the right way
  round when they were clearly swapped. The gender comes from the civility only.
- :func:`identity_line`: AFNOR NF Z10-011 line 1, ``M. Jean DUPONT``, at most 38 characters.
- :func:`name_key` and :func:`is_known_first_name`, for identity resolution and reports.

The first-name reference (``data/first_names.tsv.gz``, built by ``scripts/build_first_names.py``
from INSEE's first-name and surname statistics and Faker's first names) ranks each first name
among the names given in France and, when it is also a French surname, among surnames. It is
read once, on first use. The rules are written out in docs/quality.md (names section).
"""

from __future__ import annotations

import gzip
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Final, Literal

from unidecode import unidecode

from tournesol.quality.base import Flag, Severity, blank

FLAGS: tuple[Flag, ...] = (
    Flag(
        "CIVILITY_UNKNOWN",
        "name",
        Severity.INVALID,
        "Not a known civility (M., Mme, Dr, Me, Pr, M. et Mme in any usual spelling).",
    ),
    Flag(
        "CIVILITY_MLLE_REPLACED",
        "name",
        Severity.FIXED,
        "Mademoiselle (Mlle, Melle, Miss) was replaced by Madame, as the French administration"
        " has done since 2012.",
    ),
    Flag(
        "CIVILITY_COUPLE",
        "name",
        Severity.WARNING,
        "The civility addresses a couple (M. et Mme): the record may stand for two people.",
    ),
    Flag(
        "NAME_PLACEHOLDER",
        "name",
        Severity.INVALID,
        "A placeholder rather than a name (XXX, INCONNU, TEST, NC, a lone dot or dash).",
    ),
    Flag(
        "NAME_SUSPICIOUS",
        "name",
        Severity.WARNING,
        "The name holds digits or symbols, or is longer than 80 characters.",
    ),
    Flag(
        "NAME_SPACING_FIXED",
        "name",
        Severity.FIXED,
        "Spaces were cleaned: doubled spaces, spaces around a hyphen or an apostrophe.",
    ),
    Flag(
        "NAME_CASE_FIXED",
        "name",
        Severity.INFO,
        "A name written all in capitals or all in lower case was put in proper case.",
    ),
    Flag(
        "NAME_MAIDEN_EXTRACTED",
        "name",
        Severity.FIXED,
        "A birth name marked by née, épouse, ép. or veuve was taken out and filed as the"
        " maiden name.",
    ),
    Flag(
        "NAME_SWAPPED_FIXED",
        "name",
        Severity.FIXED,
        "First and last name were swapped (the first name field held no known first name, the"
        " last name field a first name) and were put back.",
    ),
    Flag(
        "NAME_ORDER_DETECTED",
        "name",
        Severity.INFO,
        "A full name was split into first and last name, the order told by capitals or by the"
        " first-name reference.",
    ),
    Flag(
        "NAME_ORDER_UNCERTAIN",
        "name",
        Severity.WARNING,
        "A full name was split into first and last name without clear evidence of the order.",
    ),
)

DATA_FILE = Path(__file__).parent / "data" / "first_names.tsv.gz"
Part = Literal["first", "last", "maiden"]

MAX_LENGTH: Final = 80  # longer names are flagged NAME_SUSPICIOUS
AFNOR_LINE: Final = 38  # NF Z10-011: at most 38 characters per line, spaces included
# A first name beyond the COMMON_FIRST most given ones that is also among the COMMON_LAST
# most common surnames (LEROY, GIRARD, LAMBERT...) does not count as a known first name.
COMMON_FIRST: Final = 2000
COMMON_LAST: Final = 1000
_NEVER: Final = 10**9  # the rank of a name absent from a list

# --- civilities -----------------------------------------------------------------------------

MR, MRS, MLLE = "M.", "Mme", "Mlle"
COUPLE = "M. et Mme"
# Spellings, lowercased, without accents, dots or spaces -> the civility.
CIVILITIES: dict[str, str] = {
    "m": MR, "mr": MR, "monsieur": MR, "mons": MR, "msieur": MR, "mister": MR,
    "mme": MRS, "madame": MRS, "mdme": MRS, "mrs": MRS, "ms": MRS,
    "mlle": MLLE, "melle": MLLE, "mle": MLLE, "mademoiselle": MLLE, "miss": MLLE,
    "dr": "Dr", "docteur": "Dr", "doct": "Dr", "doctor": "Dr",
    "me": "Me", "maitre": "Me",
    "pr": "Pr", "professeur": "Pr", "prof": "Pr", "professor": "Pr",
}  # fmt: skip
GENDERS: dict[str, str] = {MR: "M", MRS: "F"}
_CIVILITY_DOTS = re.compile(r"[.\s]+")
_CIVILITY_JOIN = re.compile(r"\s*(?:\bet\b|\band\b|&|/|\+|,)\s*")


@dataclass(frozen=True, slots=True)
class CivilityResult:
    """A civility: ``value`` is ``M.``, ``Mme``, ``Dr``, ``Me``, ``Pr`` or ``M. et Mme`` (None
    when unknown); ``gender`` is ``M`` or ``F`` for M. and Mme, None otherwise."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    gender: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


def normalize_civility(text: str | None) -> CivilityResult:
    """Read a civility in any usual spelling; never raises.

    Takes the civility as found in a file (``MONSIEUR``, ``Mr.``, ``MLLE``, ``M/MME``...).
    Returns a :class:`CivilityResult`; blank -> no value and no flag; unknown -> no value and
    ``CIVILITY_UNKNOWN``.

    >>> r = normalize_civility("MELLE")
    >>> r.value, r.gender, r.flags
    ('Mme', 'F', ('CIVILITY_MLLE_REPLACED',))
    >>> normalize_civility("MR ET MME").value
    'M. et Mme'
    """
    if blank(text):
        return CivilityResult(text, None)
    return _civility(str(text))


@lru_cache(maxsize=1024)
def _civility(text: str) -> CivilityResult:
    if len(text) > 40:
        return CivilityResult(text, None, ("CIVILITY_UNKNOWN",))
    folded = _CIVILITY_DOTS.sub(" ", unidecode(text).lower()).strip()
    parts = [p.replace(" ", "") for p in _CIVILITY_JOIN.split(folded)]
    if len(parts) == 1 and " " in folded:  # "M MME": two civilities side by side
        parts = folded.split(" ")
    found = [CIVILITIES.get(p) for p in parts]
    if len(found) == 1 and found[0] is not None:
        value = found[0]
        if value == MLLE:
            return CivilityResult(text, MRS, ("CIVILITY_MLLE_REPLACED",), "F")
        return CivilityResult(text, value, (), GENDERS.get(value))
    if len(found) == 2 and MR in found and (MRS in found or MLLE in found):
        return CivilityResult(text, COUPLE, ("CIVILITY_COUPLE",))
    if folded.replace(" ", "") == "metmme":  # "M.etMme": the words glued together
        return CivilityResult(text, COUPLE, ("CIVILITY_COUPLE",))
    return CivilityResult(text, None, ("CIVILITY_UNKNOWN",))


# --- one name -------------------------------------------------------------------------------

# French particles, lower case whenever a name follows them (de Gaulle, du Bellay, des Roches).
FRENCH_PARTICLES = frozenset({"de", "du", "des"})
# Foreign particles: capitalized at the start of a name (Da Silva, Di Maria, Van Damme), lower
# case inside it (Vasco da Gama, Otto von Bismarck). "van" only before der/den/de/het/ter/ten
# (van der Berg): alone it is also a Vietnamese middle name (Nguyen Van An).
FOREIGN_PARTICLES = frozenset({"da", "das", "dos", "di", "del", "della", "degli", "von", "zu"})
DUTCH_ARTICLES = frozenset({"der", "den", "de", "het", "ter", "ten"})
# Inside a hyphenated name, these words are lower case between two others (place names:
# Saint-Germain-en-Laye, Villiers-de-l'Isle-Adam).
HYPHEN_LOWER = frozenset({"de", "du", "des", "en", "sur", "sous", "les", "lès", "aux", "la"})
ROMAN = frozenset({"ii", "iii", "iv"})
# Words that attach to the word after them when a full name is split (de La Fontaine, Le Gall).
_ATTACHING = frozenset(
    {*FRENCH_PARTICLES, "le", "la", "les", "van", *FOREIGN_PARTICLES, *DUTCH_ARTICLES}
)

# A name made only of these words is a placeholder (compared on the key, digits left out).
PLACEHOLDER_WORDS = frozenset(
    {
        "X", "XX", "INCONNU", "INCONNUE", "INCONNUS", "TEST", "TESTS", "ESSAI", "NC", "NR",
        "ND", "NEANT", "NULL", "NUL", "NONE", "NIL", "AUCUN", "AUCUNE", "ANONYME", "NOM",
        "PRENOM", "CLIENT", "CLIENTE", "UNKNOWN", "NONAME", "ASDF", "QSDF", "AZERTY", "QWERTY",
        "MONSIEUR", "MADAME", "MADEMOISELLE",
    }
)  # fmt: skip
PLACEHOLDER_PHRASES = frozenset(
    {
        "N A", "NON RENSEIGNE", "NON RENSEIGNEE", "NON COMMUNIQUE", "NON COMMUNIQUEE",
        "NON DEFINI", "A COMPLETER", "A RENSEIGNER", "SANS NOM", "SANS PRENOM", "PAS DE NOM",
        "PAS DE PRENOM", "NO NAME", "NOT AVAILABLE",
    }
)  # fmt: skip

_GLYPHS = str.maketrans(
    {
        **dict.fromkeys("\u2019\u2018\u201b`\u00b4\u02bc\u02b9\u2032", "'"),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-"),
    }
)
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")
_AROUND_SEPARATOR = re.compile(r" ?([-']) ?")
_SEPARATOR_RUNS = re.compile(r"([-'])[-']+")
_EDGES = re.compile(r"^[\s\-',;:/_\"]+|[\s\-',;:/_\"]+$")
_SEGMENTS = re.compile(r"([-'])")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_REPEATED = re.compile(r"([A-Z])\1{2,}")  # AAA, ZZZZ
_NEE_PREFIX = re.compile(r"^(?:(?:n[ée]e|né)(?:\.|\b)\s*)+(?=\w)", re.IGNORECASE)
_NEEDS_CLEANING = re.compile(
    r"\s\s|[^\S ]|[\x00-\x1f\x7f-\x9f]|\s[-']|[-']\s|[-']{2}"
    r"|^[\s\-',;:/_\"]|[\s\-',;:/_\"]$"
)
_LETTER = re.compile(r"[^\W\d_]")
_INITIAL = re.compile(r"[^\W\d_]\.?(?:-[^\W\d_]\.?)?")  # J, J., J.-P.
_SUSPICIOUS = re.compile(r"[^\w \-'.]|[\d_]")


@dataclass(frozen=True, slots=True)
class NameResult:
    """One name: ``value`` cleaned and cased (None for a placeholder), ``key`` the matching key
    (upper-case ASCII, no accents, hyphens and apostrophes as spaces)."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    key: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


def normalize_name(text: str | None, *, part: Part) -> NameResult:
    """Clean one first, last or maiden name; never raises.

    Takes the name as found in a file and which part of a name it is (``"first"``,
    ``"last"`` or ``"maiden"``: Mc-names are cased only in last and maiden names, and a maiden
    name loses a leading ``née``). Returns a :class:`NameResult`; blank -> no value and no
    flag; a placeholder -> no value and ``NAME_PLACEHOLDER``.

    >>> normalize_name("DE LA  FONTAINE", part="last")
    NameResult(original='DE LA  FONTAINE', value='de La Fontaine', flags=('NAME_CASE_FIXED', \
'NAME_SPACING_FIXED'), key='DE LA FONTAINE')
    >>> normalize_name("Hélène", part="first").key
    'HELENE'
    """
    if blank(text):
        return NameResult(text, None)
    return _name(str(text), part)


@lru_cache(maxsize=65536)
def _name(text: str | None, part: Part) -> NameResult:
    """:func:`normalize_name` for a string or None."""
    if text is None:
        return NameResult(None, None)
    flags: list[str] = []
    cleaned, spacing_fixed = _clean(text)
    if part == "maiden":
        without = _NEE_PREFIX.sub("", cleaned)
        if without != cleaned:
            cleaned = without
            flags.append("NAME_MAIDEN_EXTRACTED")
    if not cleaned and not _INVISIBLE.sub("", text).strip():
        return NameResult(text, None)  # nothing but invisible characters: blank
    key = name_key(cleaned)
    if key is None or _placeholder(key) or not _LETTER.search(cleaned):
        return NameResult(text, None, ("NAME_PLACEHOLDER",))
    value = cleaned if _typed_with_care(cleaned) else _recase(cleaned, part)
    if spacing_fixed:
        flags.append("NAME_SPACING_FIXED")
    if value != cleaned:
        flags.append("NAME_CASE_FIXED")
    if len(value) > MAX_LENGTH or _SUSPICIOUS.search(value):
        flags.append("NAME_SUSPICIOUS")
    return NameResult(text, value, tuple(sorted(flags)), key)


def name_key(text: str | None) -> str | None:
    """The matching key of a name: upper-case ASCII without accents, every run of other
    characters (hyphens, apostrophes, spaces, dots) as one space; None when nothing is left.

    >>> name_key("d'Artagnan-Éloi")
    'D ARTAGNAN ELOI'
    """
    if text is None:
        return None
    ascii_text = text if text.isascii() else unidecode(text)
    return _NOT_ALNUM.sub(" ", ascii_text.upper()).strip() or None


def _clean(text: str) -> tuple[str, bool]:
    """The text with normalized glyphs and spacing; True when inner spacing was fixed."""
    if not text.isascii():
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        text = _INVISIBLE.sub("", text.translate(_GLYPHS))
    if not _NEEDS_CLEANING.search(text):
        return text, False
    baseline = text.strip()
    cleaned = _SPACES.sub(" ", _CONTROL.sub(" ", baseline))
    cleaned = _SEPARATOR_RUNS.sub(r"\1", _AROUND_SEPARATOR.sub(r"\1", cleaned))
    cleaned = _EDGES.sub("", cleaned)
    return cleaned, cleaned != baseline


def _placeholder(key: str) -> bool:
    if key in PLACEHOLDER_WORDS or key in PLACEHOLDER_PHRASES:
        return True
    if key.isalpha():
        return _REPEATED.fullmatch(key) is not None
    words = _DIGITS.sub(" ", key).split()
    if not words or " ".join(words) in PLACEHOLDER_PHRASES:
        return True
    return all(w in PLACEHOLDER_WORDS or _REPEATED.fullmatch(w) for w in words)


def _typed_with_care(text: str) -> bool:
    """True when a word mixes capitals and lower case letters (Dupont, McDonald, d'Artagnan)."""
    return any(w != w.lower() and w != w.upper() for w in text.split(" "))


def _lower(word: str) -> str:
    """Lower case, leaving alone a letter whose case does not map back and forth one to one
    (İ, the Kelvin sign) or whose cases read differently in ASCII: casing never changes a
    name's key."""
    if word.isascii():
        return word.lower()
    return "".join(_swap_case(c, str.lower, str.upper) for c in word)


def _capitalize(segment: str) -> str:
    """The first letter in capitals (same proviso as :func:`_lower`)."""
    if segment.isascii():
        return segment[:1].upper() + segment[1:]
    return _swap_case(segment[:1], str.upper, str.lower) + segment[1:]


def _swap_case(c: str, to: Callable[[str], str], back: Callable[[str], str]) -> str:
    """``to(c)`` when that is one letter that ``back`` maps back to ``c``, else ``c``."""
    changed = to(c)
    if changed == c or c.isascii():
        return changed
    if len(changed) != 1 or back(changed) != c:
        return c
    return changed if unidecode(changed).upper() == unidecode(c).upper() else c


def _recase(text: str, part: Part) -> str:
    """Proper case for a name written in one case (rules in docs/quality.md, names section)."""
    words = [_lower(w) for w in text.split(" ")]
    last = len(words) - 1
    out: list[str] = []
    for i, word in enumerate(words):
        before = words[i - 1] if i else ""
        after = words[i + 1] if i < last else ""
        if after and _particle(word, i, before, after):
            out.append(word)
        elif i and word in ROMAN:
            out.append(word.upper())
        else:
            out.append(_recase_word(word, part))
    return " ".join(out)


def _particle(word: str, i: int, before: str, after: str) -> bool:
    """True for a particle that stays lower case (a word follows it)."""
    if word in FRENCH_PARTICLES:
        return True
    if i and (word in FOREIGN_PARTICLES or (word == "van" and after in DUTCH_ARTICLES)):
        return True
    return before in ("van", "von") and word in DUTCH_ARTICLES


def _recase_word(word: str, part: Part) -> str:
    if "-" not in word and "'" not in word:
        if part != "first" and word.startswith("mc") and len(word) > 2 and word[2].isalpha():
            return "Mc" + _capitalize(word[2:])
        return _capitalize(word)
    pieces = _SEGMENTS.split(word)  # segments at even indices, separators at odd ones
    last = len(pieces) - 1
    out: list[str] = []
    for j in range(0, len(pieces), 2):
        segment = pieces[j]
        before_sep = pieces[j - 1] if j else ""
        after_sep = pieces[j + 1] if j < last else ""
        if after_sep == "'" and segment == "d":
            out.append("d")  # elided de: d'Artagnan, Giscard d'Estaing
        elif before_sep == "'" and len(pieces[j - 2]) > 1:
            out.append(segment)  # after an apostrophe inside a word: Marc'andria
        elif j and after_sep == "-" and segment in HYPHEN_LOWER:
            out.append(segment)
        else:
            out.append(_capitalize(segment))
        if after_sep:
            out.append(after_sep)
    return "".join(out)


# --- the first-name reference ---------------------------------------------------------------


@cache
def _reference() -> dict[str, tuple[int, int]]:
    """First-name key -> (rank among French first names, rank among French surnames)."""
    ranks: dict[str, tuple[int, int]] = {}
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            key, first, last = line.rstrip("\n").split("\t")
            ranks[key] = (int(first) if first else _NEVER - 1, int(last) if last else _NEVER)
    return ranks


def is_known_first_name(text: str | None) -> bool:
    """True when the name, or each of its words, is a known first name (see docs/quality.md).

    >>> is_known_first_name("Jean-Pierre"), is_known_first_name("Dupont")
    (True, False)
    """
    key = name_key(text)
    if key is None:
        return False
    return _known(key) or all(_known(w) for w in key.split(" "))


def _known(key: str) -> bool:
    ranks = _reference().get(key)
    if ranks is None:
        return False
    first, last = ranks
    return first <= COMMON_FIRST or last > COMMON_LAST


def _mainly_first(key: str) -> bool:
    """A known first name given more often than it is borne as a surname, judged by the ranks
    (JEAN, MICHEL, NICOLAS: yes; MARTIN, THOMAS, ROBERT, BERNARD: no)."""
    ranks = _reference().get(key)
    return ranks is not None and _known(key) and ranks[0] <= ranks[1]


def _mostly_first_name(key: str) -> bool:
    return _mainly_first(key) or all(_mainly_first(w) for w in key.split(" "))


def _any_first_name(key: str) -> bool:
    return _known(key) or any(len(w) > 1 and _known(w) for w in key.split(" "))


# --- a person -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersonResult:
    """A person's civility and names, each normalized, plus the gender the civility tells
    and ``flags``: every flag of the parts and the record-level ones (order, swap, maiden)."""

    civility: CivilityResult
    first_name: NameResult
    last_name: NameResult
    maiden_name: NameResult
    gender: str | None = None
    flags: tuple[str, ...] = ()


# "A née B": A the usage name, B the birth name. "A épouse B" (ép., ep, épse, veuve, vve):
# A the birth name, B the usage (married) name.
_MAIDEN = re.compile(
    r"[\s(\[,;]+(?P<marker>n[ée]e|né|[ée]pouse|[ée]pse|[ée]p|veuve|vve)(?:\.|\b)\s*",
    re.IGNORECASE,
)
_BRACKETS = " ()[],;"


def normalize_person(
    *,
    civility: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    maiden_name: str | None = None,
    full_name: str | None = None,
) -> PersonResult:
    """Normalize a person's civility and names together; never raises.

    Takes the fields as found (any may be None). ``full_name`` is read only when neither
    ``first_name`` nor ``last_name`` is given: a leading civility is taken from it, then it is
    split into first and last name. A birth name marked in the last name (or full name) by
    ``née``, ``épouse``, ``ép.`` or ``veuve`` is moved to ``maiden_name`` unless one is given.
    First and last name are swapped back when the first-name field holds no known first name
    and the last-name field mainly a first name. Returns a :class:`PersonResult`.

    >>> p = normalize_person(civility="MME", last_name="DUPONT née MARTIN", first_name="marie")
    >>> p.first_name.value, p.last_name.value, p.maiden_name.value, p.gender
    ('Marie', 'Dupont', 'Martin', 'F')
    >>> normalize_person(full_name="DUPONT Jean-Pierre").first_name.value
    'Jean-Pierre'
    """
    return _person(
        None if civility is None else str(civility),
        None if first_name is None else str(first_name),
        None if last_name is None else str(last_name),
        None if maiden_name is None else str(maiden_name),
        None if blank(full_name) else str(full_name),
    )


@lru_cache(maxsize=65536)
def _person(
    civility: str | None,
    first_name: str | None,
    last_name: str | None,
    maiden_name: str | None,
    full_name: str | None,
) -> PersonResult:
    civ = normalize_civility(civility)
    extra: list[str] = []
    maiden_text: str | None = None
    first_text, last_text = first_name, last_name
    from_full = blank(first_name) and blank(last_name) and full_name is not None
    if from_full and full_name is not None:
        words = _clean(full_name)[0].split(" ")
        taken = _civility_prefix(words)
        if taken and blank(civility):
            civ = normalize_civility(" ".join(words[:taken]))
        first_text, last_text, maiden_text, order = _split_full(" ".join(words[taken:]))
        extra.extend(order)
    if maiden_text is None:
        last_text, maiden_text = _take_maiden(last_text)
    first = _name(first_text, "first")
    last = _name(last_text, "last")
    if _swapped(first.key, last.key):
        first_text, last_text = last_text, first_text
        if maiden_text is None:
            last_text, maiden_text = _take_maiden(last_text)
        first = _name(first_text, "first")
        last = _name(last_text, "last")
        if not from_full:  # a full name's order is told by its NAME_ORDER_ flag
            extra.append("NAME_SWAPPED_FIXED")
    if maiden_text is not None:
        extra.append("NAME_MAIDEN_EXTRACTED")
    maiden = _name(maiden_text if blank(maiden_name) else maiden_name, "maiden")
    flags = (*civ.flags, *first.flags, *last.flags, *maiden.flags, *extra)
    if len(flags) > 1:
        flags = tuple(sorted(set(flags)))
    return PersonResult(civ, first, last, maiden, civ.gender, flags)


@lru_cache(maxsize=16384)
def _take_maiden(last_name: str | None) -> tuple[str | None, str | None]:
    """(usage name, birth name) of a last name that holds a maiden-name marker, else
    (the last name, None)."""
    if last_name is None or blank(last_name):
        return last_name, None
    split = _split_maiden(_clean(last_name)[0])
    if split is None:
        return last_name, None
    before, after, nee = split
    return (before, after) if nee else (after, before)


def _civility_prefix(words: list[str]) -> int:
    """How many leading words of a full name are a civility (all of them when the full name
    is nothing but a civility)."""
    head = words[0].lower().rstrip(".")
    if not head.isascii():
        head = unidecode(head)
    if head not in CIVILITIES and not _CIVILITY_JOIN.search(head):
        return 0
    for n in (3, 2, 1):
        if len(words) >= n and normalize_civility(" ".join(words[:n])).value is not None:
            return n
    return 0


def _split_maiden(text: str) -> tuple[str | None, str, bool] | None:
    """(words before the marker, words after it, True for née) when one maiden-name marker
    stands between two names; a text that starts with ``née`` has nothing before it."""
    head = _NEE_PREFIX.match(text)
    if head:
        after = text[head.end() :].strip(_BRACKETS)
        return (None, after, True) if _one_name(after) else None
    m = _MAIDEN.search(text)
    if m is None:
        return None
    before = text[: m.start()].strip(_BRACKETS)
    after = text[m.end() :].strip(_BRACKETS)
    if not (_one_name(before) and _one_name(after)):
        return None
    return before, after, m.group("marker")[:1].lower() == "n"


def _one_name(text: str) -> bool:
    """Holds a letter and no other maiden-name marker."""
    return bool(
        _LETTER.search(text) and not _NEE_PREFIX.match(text) and not _MAIDEN.search(" " + text)
    )


def _split_full(text: str) -> tuple[str | None, str | None, str | None, tuple[str, ...]]:
    """(first name, last name, birth name, order flags) read from a full name."""
    split = _split_maiden(text)
    if split is None:
        first, last, order = _split_order(text)
        return first, last, None, order
    before, after, nee = split
    first = None
    order = ()
    # The side with several words holds the first name: "Marie DUPONT née MARTIN",
    # "Marie MARTIN épouse DUPONT", "MARTIN épouse DUPONT Marie".
    if before is not None and len(_units(before)) > 1:
        first, before, order = _split_order(before)
    elif len(_units(after)) > 1:
        first, rest, order = _split_order(after)
        after = rest or after
    if nee:
        return first, before, after, order
    return first, after, before, order


def _units(text: str) -> list[str]:
    """The words of a full name, a particle or article joined to the word after it."""
    units: list[str] = []
    pending = ""
    for word in text.split(" "):
        if not word:
            continue
        if _lower(word) in _ATTACHING:
            pending = f"{pending}{word} "
        else:
            units.append(pending + word)
            pending = ""
    if pending:
        if units:
            units[-1] = f"{units[-1]} {pending.strip()}"
        else:
            units.append(pending.strip())
    return units


def _split_order(text: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(first name, last name, order flags) of a full name without a civility or maiden name."""
    units = _units(text)
    n = len(units)
    if n == 0:
        return None, None, ()
    if n == 1:
        key = name_key(units[0])
        unsure = key is not None and _mostly_first_name(key)
        return None, units[0], ("NAME_ORDER_UNCERTAIN",) if unsure else ()
    by_case = _split_by_case(units)
    if by_case is not None:
        first, last = " ".join(by_case[0]), " ".join(by_case[1])
        # capitals decide unless the reference says the other way round ("JEAN Dupont")
        if not _swapped(name_key(first), name_key(last)):
            return first, last, ("NAME_ORDER_DETECTED",)
    known, mainly = zip(*(_first_name_unit(u) for u in units), strict=True)
    lead = next((i for i, k in enumerate(known) if not k), n)
    trail = next((i for i, k in enumerate(reversed(known)) if not k), n)
    detected, uncertain = ("NAME_ORDER_DETECTED",), ("NAME_ORDER_UNCERTAIN",)
    if lead == n:  # every word is a first name: the one mainly borne as a surname is the last
        if mainly[-1] and not mainly[0]:
            return " ".join(units[1:]), units[0], detected
        return " ".join(units[:-1]), units[-1], detected if mainly[0] != mainly[-1] else uncertain
    if lead and not known[-1]:
        return " ".join(units[:lead]), " ".join(units[lead:]), detected
    if trail and not known[0]:
        return " ".join(units[n - trail :]), " ".join(units[: n - trail]), detected
    if lead:
        return " ".join(units[:lead]), " ".join(units[lead:]), uncertain
    return units[0], " ".join(units[1:]), uncertain


def _split_by_case(units: list[str]) -> tuple[list[str], list[str]] | None:
    """(first-name units, last-name units) when the last name is the block in capitals at one
    end and the other words are not in capitals (``DUPONT Jean``, ``Jean de LA FONTAINE``)."""
    kinds = [_case_kind(u) for u in units]
    caps = [i for i, k in enumerate(kinds) if k == "C"]
    if not caps or "m" not in kinds:
        return None
    start, end = caps[0], caps[-1]
    if end - start + 1 != len(caps):
        return None
    if start == 0:
        return units[end + 1 :], units[: end + 1]
    if end == len(units) - 1:
        return units[:start], units[start:]
    return None


def _case_kind(unit: str) -> str:
    """C: capitals (two letters or more), m: has lower-case letters, n: neither (initials)."""
    if " " in unit:
        unit = "".join(w for w in unit.split(" ") if _lower(w) not in _ATTACHING)
    if unit != unit.upper():
        return "m"
    return "C" if sum(c.isupper() for c in unit) > 1 else "n"


@lru_cache(maxsize=16384)
def _first_name_unit(unit: str) -> tuple[bool, bool]:
    """(a known first name or an initial, mainly a first name or an initial) for one word of
    a full name; a word with a particle (de La Fontaine) is neither."""
    if _INITIAL.fullmatch(unit):
        return True, True
    key = name_key(unit)
    if key is None or " " in unit:
        return False, False
    return _any_first_name(key), _mostly_first_name(key)


def _swapped(first_key: str | None, last_key: str | None) -> bool:
    """First and last name given the wrong way round: the first name holds no known first
    name (nor an initial) and the last name is mainly a first name."""
    if first_key is None or last_key is None:
        return False
    return _no_first_name(first_key) and _only_first_name(last_key)


@lru_cache(maxsize=16384)
def _no_first_name(key: str) -> bool:
    """No word of one letter (an initial) and no known first name: a first-name field that
    may hold the last name."""
    return not _has_initial(key) and not _any_first_name(key)


@lru_cache(maxsize=16384)
def _only_first_name(key: str) -> bool:
    """No word of one letter (an initial) and mainly a first name: a last-name field that
    may hold the first name."""
    return not _has_initial(key) and _mostly_first_name(key)


def _has_initial(key: str) -> bool:
    return any(len(w) < 2 for w in key.split(" "))


# --- AFNOR line 1 ---------------------------------------------------------------------------


def identity_line(
    civility: str | None, first_name: str | None, last_name: str | None
) -> str | None:
    """AFNOR NF Z10-011 line 1: civility, first name, LAST NAME in capitals; at most 38
    characters.

    Takes normalized values (see :func:`normalize_person`); returns None without a last name.
    A line that would be too long gets the first names as initials (``J.-P.``), then none,
    then no civility; a last name alone longer than 38 characters is cut.

    >>> identity_line("M.", "Jean", "Dupont")
    'M. Jean DUPONT'
    >>> identity_line("M.", "Jean-Pierre", "Dupont-Martin de La Fontaine")
    'M. J.-P. DUPONT-MARTIN DE LA FONTAINE'
    """
    last = " ".join((last_name or "").split()).upper()
    if not last:
        return None
    civ = " ".join((civility or "").split())
    first = " ".join((first_name or "").split())
    line = " ".join(p for p in (civ, first, last) if p)
    if len(line) <= AFNOR_LINE:
        return line
    for parts in ((civ, _initials(first)), (civ, ""), ("", "")):
        line = " ".join(p for p in (*parts, last) if p)
        if len(line) <= AFNOR_LINE:
            return line
    return last[:AFNOR_LINE].rstrip()


def _initials(first_names: str) -> str:
    """``Jean-Pierre`` -> ``J.-P.``, ``Marie Claire`` -> ``M. C.``."""
    words = []
    for word in first_names.split(" "):
        segments = [s for s in word.split("-") if any(c.isalpha() for c in s)]
        letters = [next(c for c in s if c.isalpha()).upper() for s in segments]
        if letters:
            words.append("-".join(f"{c}." for c in letters))
    return " ".join(words)
