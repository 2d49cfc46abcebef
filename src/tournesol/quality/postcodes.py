"""The French postal code reference: which communes a code serves and their routing labels.

Built by ``scripts/build_postcode_reference.py`` from Etalab's ``codes-postaux`` package (see
``data/README.md``) into ``data/postcodes.tsv.gz``: one row per postal code, commune (INSEE
code) and routing label (*libellé d'acheminement*, the locality printed on line 6), plus a
line 5 (lieu-dit) when the source gives one. Loaded once, on first use.

Cities are compared by :func:`city_key`, so ``ST ETIENNE``, ``Saint-Étienne`` and
``saint etienne`` are one city.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from unidecode import unidecode

DATA_FILE = Path(__file__).parent / "data" / "postcodes.tsv.gz"

_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_SAINT = re.compile(r"\b(ST|STE)\b")
_SAINT_FULL = {"ST": "SAINT", "STE": "SAINTE"}


@dataclass(frozen=True, slots=True)
class Commune:
    """One row of the reference: a commune served by a postal code under a routing label."""

    postal_code: str  # "75011"
    insee_code: str | None  # "75111", "2A004"; None for Monaco (no INSEE commune code)
    name: str  # the official name, "Saint-Étienne"
    routing_label: str  # the AFNOR line-6 locality, "SAINT ETIENNE"
    line5: str | None = None  # a lieu-dit printed on line 5, when the source gives one


@dataclass(frozen=True, slots=True)
class _Reference:
    by_code: dict[str, tuple[Commune, ...]]
    by_key: dict[str, tuple[Commune, ...]]  # city key (name, label or line 5) -> rows


def _ascii_table() -> dict[int, str]:
    table = {code: unidecode(chr(code)) for code in range(0x80, 0x250)}
    for code in (0x2018, 0x2019, 0x201C, 0x201D, 0x2013, 0x2014, 0x2026, 0x202F, 0x20AC):
        table[code] = unidecode(chr(code))
    return table


_ASCII = _ascii_table()


def to_ascii(text: str) -> str:
    """The text transliterated to ASCII as unidecode does; fast for Latin text (a translate
    table), unidecode for the rest.

    >>> to_ascii("Œuvre à l’Haÿ-les-Roses")
    "OEuvre a l'Hay-les-Roses"
    """
    if text.isascii():
        return text
    text = text.translate(_ASCII)
    return text if text.isascii() else unidecode(text)


@lru_cache(maxsize=65536)
def city_key(text: str) -> str:
    """The key two spellings of one city share.

    Upper case, no accents, hyphens, apostrophes and other punctuation as spaces, ``ST`` and
    ``STE`` as ``SAINT`` and ``SAINTE``, spaces collapsed. A key is its own key.

    >>> city_key("St-Étienne"), city_key("L'Haÿ-les-Roses"), city_key("  ste  foy ")
    ('SAINT ETIENNE', 'L HAY LES ROSES', 'SAINTE FOY')
    """
    key = _NOT_ALNUM.sub(" ", to_ascii(text).upper()).strip()
    if "ST" in key:
        key = _SAINT.sub(lambda m: _SAINT_FULL[m.group(1)], key)
    return key


def _afnor_key(text: str) -> str:
    """city_key of a text already in AFNOR form (the file's labels): only ST/STE to expand."""
    return _SAINT.sub(lambda m: _SAINT_FULL[m.group(1)], text) if "ST" in text else text


@cache
def _reference() -> _Reference:
    by_code: dict[str, list[Commune]] = {}
    by_key: dict[str, list[Commune]] = {}
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as lines:
        next(lines)  # header
        for line in lines:
            code, insee, name, label, line5 = line.rstrip("\n").split("\t")
            row = Commune(code, insee or None, name, label, line5 or None)
            by_code.setdefault(code, []).append(row)
            keys = {city_key(name), _afnor_key(label)}
            if line5:
                keys.add(_afnor_key(line5))
            for key in keys:
                by_key.setdefault(key, []).append(row)
    return _Reference(
        {code: tuple(rows) for code, rows in by_code.items()},
        {key: tuple(rows) for key, rows in by_key.items()},
    )


def communes(postal_code: str) -> tuple[Commune, ...]:
    """The reference rows of a five-digit postal code, main routing label first; () if unknown.

    >>> [(c.insee_code, c.name, c.routing_label) for c in communes("42000")]
    [('42218', 'Saint-Étienne', 'SAINT ETIENNE')]
    """
    return _reference().by_code.get(postal_code, ())


def is_known(postal_code: str) -> bool:
    """Whether the postal code exists in the reference (CEDEX codes are not in it).

    >>> is_known("75011"), is_known("75099")
    (True, False)
    """
    return postal_code in _reference().by_code


def find(city: str, *, postal_prefix: str = "") -> tuple[Commune, ...]:
    """The rows whose commune name, routing label or line 5 has the city's key, optionally
    only those whose postal code starts with ``postal_prefix`` (a department: ``"13"``).

    >>> sorted({c.postal_code for c in find("Aix en Provence", postal_prefix="13")})
    ['13080', '13090', '13100', '13122', '13290', '13540']
    """
    rows = _reference().by_key.get(city_key(city), ())
    if postal_prefix:
        rows = tuple(r for r in rows if r.postal_code.startswith(postal_prefix))
    return rows


@lru_cache(maxsize=16384)
def postal_codes_of(city: str) -> tuple[str, ...]:
    """The postal codes whose commune name, routing label or line 5 matches the city (any
    spelling: it is reduced by :func:`city_key`), sorted.

    >>> postal_codes_of("ST ETIENNE"), postal_codes_of("Gex"), postal_codes_of("Nowhere")
    (('42000', '42100', '42230'), ('01170',), ())
    """
    return tuple(sorted({r.postal_code for r in find(city)}))


def department(postal_code: str) -> str:
    """The department a postal code's first digits name: two digits, three overseas and in
    Monaco (``"971"``, ``"980"``). Corsica's codes all start with ``"20"``.

    >>> department("75011"), department("97411"), department("20000")
    ('75', '974', '20')
    """
    return postal_code[:3] if postal_code[:2] in ("97", "98") else postal_code[:2]
