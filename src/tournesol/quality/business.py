"""Business identifiers: SIREN, SIRET, VAT numbers and NAF codes.

Checksums come from python-stdnum: SIREN and SIRET use the Luhn algorithm, except La Poste's
establishments (SIREN 356000000, other than the head office 356 000 000 00048) whose 14
digits add up to a multiple of 5 (``stdnum.fr.siret`` implements that rule). A French VAT
number is ``FR`` + a two-character key + the SIREN, the numeric key being
``(12 + 3 * (SIREN mod 97)) mod 97``; other EU numbers are checked by ``stdnum.eu.vat``, British
and Swiss ones by ``stdnum.gb.vat`` and ``stdnum.ch.vat``.

NAF rév. 2 codes (``47.11F``) are checked for their shape, their division (the first two
digits) and their class (the four digits: NAF rév. 2 classes are NACE Rev. 2 classes, checked
against the NACE Rev. 2 list shipped with stdnum). The sub-class letter is not checked: the
list of the 732 sub-classes is in no installed library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from stdnum.ch import vat as ch_vat
from stdnum.eu import nace
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.fr import siren, siret, tva
from stdnum.gb import vat as gb_vat

from tournesol.quality.base import Flag, Severity, blank

FLAGS: tuple[Flag, ...] = (
    Flag(
        "SIREN_INVALID",
        "siren",
        Severity.INVALID,
        "Not a valid SIREN (9 digits with a Luhn checksum).",
    ),
    Flag(
        "SIREN_FROM_SIRET",
        "siren",
        Severity.FIXED,
        "A valid SIRET was given as the SIREN: its first nine digits were kept.",
    ),
    Flag(
        "SIRET_INVALID",
        "siret",
        Severity.INVALID,
        "Not a valid SIRET (14 digits with a Luhn checksum; La Poste: digit sum a multiple of 5).",
    ),
    Flag(
        "VAT_INVALID",
        "vat",
        Severity.INVALID,
        "Not a valid VAT number (country prefix, length, check digits; for France the key "
        "must match the SIREN).",
    ),
    Flag(
        "NAF_INVALID",
        "naf",
        Severity.INVALID,
        "Not a NAF rév. 2 code: wrong shape (NN.NNL), or a division or class that does not exist.",
    ),
)

LA_POSTE_SIREN = "356000000"

# NAF rév. 2 sections and the divisions (first two digits) in each.
NAF_SECTIONS: dict[str, tuple[int, ...]] = {
    "A": (1, 2, 3),
    "B": (5, 6, 7, 8, 9),
    "C": tuple(range(10, 34)),
    "D": (35,),
    "E": (36, 37, 38, 39),
    "F": (41, 42, 43),
    "G": (45, 46, 47),
    "H": (49, 50, 51, 52, 53),
    "I": (55, 56),
    "J": (58, 59, 60, 61, 62, 63),
    "K": (64, 65, 66),
    "L": (68,),
    "M": (69, 70, 71, 72, 73, 74, 75),
    "N": (77, 78, 79, 80, 81, 82),
    "O": (84,),
    "P": (85,),
    "Q": (86, 87, 88),
    "R": (90, 91, 92, 93),
    "S": (94, 95, 96),
    "T": (97, 98),
    "U": (99,),
}
NAF_DIVISIONS: dict[str, str] = {
    f"{division:02d}": section
    for section, divisions in NAF_SECTIONS.items()
    for division in divisions
}

_SEPARATORS = re.compile(r"[\s.\-_/\u2010-\u2015]+")
_DIGITS = re.compile(r"[0-9]+")
_NAF = re.compile(r"([0-9]{2})([0-9]{2})([A-Z])")
_NAF_REV1 = re.compile(r"[0-9]{3}[A-Z]")
_VAT_PREFIX = re.compile(r"[A-Z]{2}")
_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SirenResult:
    """A SIREN, checked: ``value`` the nine digits or None; ``reason`` why it is invalid."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class SiretResult:
    """A SIRET, checked: ``value`` the 14 digits or None, ``siren`` its first nine digits and
    ``nic`` the establishment's five (when valid)."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    siren: str | None = None
    nic: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class VatResult:
    """A VAT number, checked: ``value`` compact with its country prefix (``FR40303265045``),
    ``country`` the prefix, ``siren`` for a French company (None for Monaco's)."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    country: str | None = None
    siren: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class NafResult:
    """A NAF code, checked: ``value`` as ``47.11F`` or None, ``section`` its letter (A-U)."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    section: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


def normalize_siren(text: str | None) -> SirenResult:
    """Check a SIREN (company number); separators are ignored; never raises.

    A valid SIRET given instead keeps its first nine digits (``SIREN_FROM_SIRET``).

    >>> normalize_siren("732 829 320").value
    '732829320'
    >>> normalize_siren("732 829 320 00074").flags
    ('SIREN_FROM_SIRET',)
    """
    if blank(text):
        return SirenResult(text, None)
    assert text is not None
    digits = _compact(str(text))
    if not _DIGITS.fullmatch(digits):
        return SirenResult(text, None, ("SIREN_INVALID",), "not only digits")
    if len(digits) == 14 and _siret_error(digits) is None:
        return SirenResult(text, digits[:9], ("SIREN_FROM_SIRET",))
    reason = _siren_error(digits)
    if reason is not None:
        return SirenResult(text, None, ("SIREN_INVALID",), reason)
    return SirenResult(text, digits)


def normalize_siret(text: str | None) -> SiretResult:
    """Check a SIRET (establishment number); separators are ignored; never raises.

    >>> r = normalize_siret("732 829 320 00074")
    >>> r.value, r.siren, r.nic
    ('73282932000074', '732829320', '00074')
    >>> normalize_siret("73282932000079").flags
    ('SIRET_INVALID',)
    """
    if blank(text):
        return SiretResult(text, None)
    assert text is not None
    digits = _compact(str(text))
    if not _DIGITS.fullmatch(digits):
        return SiretResult(text, None, ("SIRET_INVALID",), reason="not only digits")
    reason = _siret_error(digits)
    if reason is not None:
        return SiretResult(text, None, ("SIRET_INVALID",), reason=reason)
    return SiretResult(text, digits, siren=digits[:9], nic=digits[9:])


def normalize_vat(text: str | None, default_country: str = "FR") -> VatResult:
    """Check an intra-EU VAT number (plus GB and CH); never raises.

    Takes the number with or without its country prefix (``default_country`` when there is
    none), any case, spaces, dots or dashes. Returns the compact number with its prefix.

    >>> r = normalize_vat("fr 40 303 265 045")
    >>> r.value, r.country, r.siren
    ('FR40303265045', 'FR', '303265045')
    >>> normalize_vat("40303265045").value
    'FR40303265045'
    """
    if blank(text):
        return VatResult(text, None)
    assert text is not None
    number = _compact(str(text)).upper()
    if len(number) > _MAX_LENGTH:
        return VatResult(text, None, ("VAT_INVALID",), reason="too long")
    if number.startswith("CHE"):
        country = "CH"
    elif _VAT_PREFIX.match(number):
        country, number = number[:2], number[2:]
    else:
        country = default_country.upper()
    checked = _check_vat("EL" if country == "GR" else country, number)
    if isinstance(checked, str):
        return VatResult(text, None, ("VAT_INVALID",), country=country, reason=checked)
    value, company = checked
    return VatResult(text, value, country=value[:2], siren=company)


def normalize_naf(text: str | None) -> NafResult:
    """Check a NAF rév. 2 code (APE code) and write it ``NN.NNL``; never raises.

    >>> normalize_naf("4711f").value
    '47.11F'
    >>> normalize_naf("47 11 F").section
    'G'
    """
    if blank(text):
        return NafResult(text, None)
    assert text is not None
    code = _compact(str(text)).upper()
    found = _NAF.fullmatch(code)
    if found is None:
        if _NAF_REV1.fullmatch(code):
            reason = "an old NAF rév. 1 code (NNNL, before 2008)"
        else:
            reason = "not of the form NN.NNL (two digits, two digits, a letter)"
        return NafResult(text, None, ("NAF_INVALID",), reason=reason)
    division, group, letter = found.groups()
    section = NAF_DIVISIONS.get(division)
    if section is None:
        reason = f"division {division} does not exist in NAF rév. 2"
        return NafResult(text, None, ("NAF_INVALID",), reason=reason)
    if not _nace_class_exists(division + group):
        reason = f"class {division}.{group} does not exist in NAF rév. 2 (NACE Rev. 2)"
        return NafResult(text, None, ("NAF_INVALID",), section=section, reason=reason)
    return NafResult(text, f"{division}.{group}{letter}", section=section)


def _compact(text: str) -> str:
    return _SEPARATORS.sub("", text)


def _siren_error(digits: str) -> str | None:
    if len(digits) != 9:
        return f"{len(digits)} digits; a SIREN has 9"
    try:
        siren.validate(digits)
    except ValidationError:
        return "the check digit does not match (Luhn)"
    return None


def _siret_error(digits: str) -> str | None:
    if len(digits) != 14:
        return f"{len(digits)} digits; a SIRET has 14"
    try:
        siret.validate(digits)
    except InvalidChecksum:
        if digits.startswith(LA_POSTE_SIREN) and digits != "35600000000048":
            return "a La Poste establishment whose digits do not add up to a multiple of 5"
        return "the check digit does not match (Luhn)"
    except ValidationError:
        return "the SIREN part is not valid"
    return None


def _check_vat(country: str, number: str) -> tuple[str, str | None] | str:
    """(compact value with prefix, SIREN or None), or why the number is not valid."""
    try:
        if country == "FR":
            compact = tva.validate(number)
            company = compact[2:] if compact[2:5] != "000" else None  # 000: Monaco
            return f"FR{compact}", company
        if country == "GB":
            return f"GB{gb_vat.validate(number)}", None
        if country == "CH":
            return ch_vat.validate(number), None
        if country.lower() in eu_vat.MEMBER_STATES or country == "EL":
            compact = eu_vat.validate(country + number)
            return compact, None
    except InvalidChecksum:
        if country == "FR":
            return "the key (two characters after FR) does not match the SIREN"
        return "the check digits do not match"
    except ValidationError as exc:
        return f"not a valid {country} VAT number ({exc})"
    return f"no VAT number check for the country prefix {country!r}"


@lru_cache(maxsize=1024)
def _nace_class_exists(code: str) -> bool:
    return bool(nace.is_valid(code, revision="2.0"))
