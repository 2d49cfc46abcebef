"""Pure rules of the segment language: French departments and regions from postal codes, ages
as birth-date bounds, and the RFM segment names a definition may name. No database here: the
compiler (``segments.compiler``) turns these answers into SQL, the service uses them to label
rows it has already read.

Departments are read from the postal code's first characters, as the post office assigns
them: two digits in metropolitan France (``75011`` -> ``75``), ``2A`` for ``200xx``-``201xx``
and ``2B`` for ``202xx``-``206xx`` (Corsica), three digits overseas (``97411`` -> ``974``;
``97133`` Saint-Barthélemy -> ``977`` and ``97150`` Saint-Martin -> ``978``; ``980xx`` is
Monaco, not France). A handful of communes carry the postal code of a neighbouring
department; for them the postal department is the answer (the commune's INSEE code would give
the administrative one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Final

from unidecode import unidecode

from tournesol.scoring.rules import SEGMENT_CODES

# The RFM segment codes a definition's {"rfm": {"segment": [...]}} may name: those scoring
# assigns (scoring.rules.RFM_SEGMENTS), so that the two never drift apart.
SEGMENT_NAMES: Final[tuple[str, ...]] = SEGMENT_CODES

# INSEE region codes (2016 regions) and names; overseas regions are also single departments.
REGIONS: Final[dict[str, str]] = {
    "01": "Guadeloupe",
    "02": "Martinique",
    "03": "Guyane",
    "04": "La Réunion",
    "06": "Mayotte",
    "11": "Île-de-France",
    "24": "Centre-Val de Loire",
    "27": "Bourgogne-Franche-Comté",
    "28": "Normandie",
    "32": "Hauts-de-France",
    "44": "Grand Est",
    "52": "Pays de la Loire",
    "53": "Bretagne",
    "75": "Nouvelle-Aquitaine",
    "76": "Occitanie",
    "84": "Auvergne-Rhône-Alpes",
    "93": "Provence-Alpes-Côte d'Azur",
    "94": "Corse",
}

REGION_DEPARTMENTS: Final[dict[str, tuple[str, ...]]] = {
    "01": ("971",),
    "02": ("972",),
    "03": ("973",),
    "04": ("974",),
    "06": ("976",),
    "11": ("75", "77", "78", "91", "92", "93", "94", "95"),
    "24": ("18", "28", "36", "37", "41", "45"),
    "27": ("21", "25", "39", "58", "70", "71", "89", "90"),
    "28": ("14", "27", "50", "61", "76"),
    "32": ("02", "59", "60", "62", "80"),
    "44": ("08", "10", "51", "52", "54", "55", "57", "67", "68", "88"),
    "52": ("44", "49", "53", "72", "85"),
    "53": ("22", "29", "35", "56"),
    "75": ("16", "17", "19", "23", "24", "33", "40", "47", "64", "79", "86", "87"),
    "76": ("09", "11", "12", "30", "31", "32", "34", "46", "48", "65", "66", "81", "82"),
    "84": ("01", "03", "07", "15", "26", "38", "42", "43", "63", "69", "73", "74"),
    "93": ("04", "05", "06", "13", "83", "84"),
    "94": ("2A", "2B"),
}

# Overseas collectivities: they have a postal code and a 3-digit INSEE code, but no region.
COLLECTIVITIES: Final[dict[str, str]] = {
    "975": "Saint-Pierre-et-Miquelon",
    "977": "Saint-Barthélemy",
    "978": "Saint-Martin",
    "986": "Wallis-et-Futuna",
    "987": "Polynésie française",
    "988": "Nouvelle-Calédonie",
}

_REGION_OF: Final[dict[str, str]] = {
    dept: region for region, depts in REGION_DEPARTMENTS.items() for dept in depts
}
DEPARTMENTS: Final[tuple[str, ...]] = (*sorted(_REGION_OF), *COLLECTIVITIES)

# Whole postal codes that belong to a collectivity although they start like a department.
_POSTAL_EXCEPTIONS: Final[dict[str, str]] = {"97133": "977", "97150": "978"}
_OVERSEAS_PREFIXES: Final[frozenset[str]] = frozenset(
    {"971", "972", "973", "974", "975", "976", "986", "987", "988"}
)
_CORSICA: Final[dict[str, str]] = {
    "200": "2A",
    "201": "2A",
    "202": "2B",
    "203": "2B",
    "204": "2B",
    "205": "2B",
    "206": "2B",
}
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def department_of(postal_code: str | None, *, country: str | None = None) -> str | None:
    """The department (or overseas collectivity) of a French postal code: ``75``, ``2A``,
    ``974``... None when the code is not a 5-character French one, or when ``country`` is given
    and is not ``FR``.

    >>> department_of("75011"), department_of("20167"), department_of("20600")
    ('75', '2A', '2B')
    >>> department_of("97411"), department_of("97133"), department_of("98000")
    ('974', '977', None)
    """
    if postal_code is None or len(postal_code) != 5 or country not in (None, "FR"):
        return None
    if postal_code in _POSTAL_EXCEPTIONS:
        return _POSTAL_EXCEPTIONS[postal_code]
    head3 = postal_code[:3]
    if head3 in _OVERSEAS_PREFIXES:
        return head3
    if head3 in _CORSICA:
        return _CORSICA[head3]
    head2 = postal_code[:2]
    if head2 in _REGION_OF:
        return head2
    return None


def region_of_department(department: str | None) -> str | None:
    """The INSEE code of the region a department belongs to (None for a collectivity or an
    unknown code). ``region_of_department("93") == "11"``."""
    return _REGION_OF.get(department) if department else None


def region_of(postal_code: str | None, *, country: str | None = None) -> str | None:
    """The INSEE region code of a French postal code: ``region_of("69001") == "84"``."""
    return region_of_department(department_of(postal_code, country=country))


def _name_key(text: str) -> str:
    return _NOT_ALNUM.sub(" ", unidecode(text).lower()).strip()


_REGION_BY_NAME: Final[dict[str, str]] = {_name_key(name): code for code, name in REGIONS.items()}


def region_code(text: str) -> str | None:
    """The INSEE code of a region written as its code (``"11"``) or its name, whatever the
    case, accents and hyphens (``"ile de France"``, ``"PROVENCE ALPES COTE D'AZUR"``); None
    when it names no region."""
    value = text.strip()
    if value in REGIONS:
        return value
    return _REGION_BY_NAME.get(_name_key(value))


def region_name(code: str) -> str:
    """The region's name: ``region_name("11") == "Île-de-France"``."""
    return REGIONS[code]


@dataclass(frozen=True)
class PostalSet:
    """The postal codes of one department: those starting with one of ``prefixes`` (digits
    only), except the whole codes in ``excluded``."""

    prefixes: tuple[str, ...]
    excluded: tuple[str, ...] = ()


def postal_set(department: str) -> PostalSet:
    """Which postal codes :func:`department_of` maps to ``department`` (the inverse, as
    prefixes that SQL can read as index ranges). Raises KeyError on an unknown department.

    >>> postal_set("2B")
    PostalSet(prefixes=('202', '203', '204', '205', '206'), excluded=())
    >>> postal_set("971")
    PostalSet(prefixes=('971',), excluded=('97133', '97150'))
    """
    if department not in DEPARTMENTS:
        raise KeyError(department)
    whole = tuple(code for code, dept in _POSTAL_EXCEPTIONS.items() if dept == department)
    if whole:
        return PostalSet(whole)
    if department in ("2A", "2B"):
        return PostalSet(tuple(p for p, d in _CORSICA.items() if d == department))
    excluded = tuple(code for code in _POSTAL_EXCEPTIONS if code.startswith(department))
    return PostalSet((department,), excluded)


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string of digits above every string that starts with ``prefix`` (digits):
    ``"75"`` -> ``"76"``, ``"209"`` -> ``"21"``; None for ``"99..."`` (no bound). Strings
    starting with ``prefix`` are then those in ``[prefix, bound)`` whatever the collation,
    as long as they are digits."""
    if not prefix.isdigit() or not prefix.isascii():
        raise ValueError(f"{prefix!r} is not a string of digits")
    stripped = prefix.rstrip("9")
    if not stripped:
        return None
    return stripped[:-1] + str(int(stripped[-1]) + 1)


# --- ages -------------------------------------------------------------------------------------


def years_before(today: date, years: int) -> date:
    """The same day ``years`` years before ``today`` (28 February for a 29 February that the
    year lacks): the last birth date of people ``years`` old or more today, so
    ``age_on(birth, today) >= years`` exactly when ``birth <= years_before(today, years)``."""
    year = today.year - years
    try:
        return today.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28)


def age_on(birth: date, today: date) -> int:
    """Completed years: ``age_on(date(1990, 6, 15), date(2026, 6, 14)) == 35``."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


@dataclass(frozen=True)
class BirthRange:
    """Birth dates ``after < birth_date <= until`` (None: no bound on that side)."""

    after: date | None
    until: date | None


def birth_range(min_age: int | None, max_age: int | None, today: date) -> BirthRange:
    """The birth dates of people aged from ``min_age`` to ``max_age`` (inclusive; None: no
    bound) on ``today``, as a range on the birth date (which an index can serve, and which
    needs no date arithmetic in SQL).

    >>> birth_range(25, 45, date(2026, 3, 1))
    BirthRange(after=datetime.date(1980, 3, 1), until=datetime.date(2001, 3, 1))
    """
    until = years_before(today, min_age) if min_age is not None else None
    after = years_before(today, max_age + 1) if max_age is not None else None
    return BirthRange(after, until)
