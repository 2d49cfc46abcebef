"""Phone numbers: French writing habits in, E.164 out, with the line type and the region.

Reading rules, in order (``default_region`` FR):

1. A trailing extension (``poste 12``, ``p. 12``, ``ext. 12``, ``x12``, ``#12``) is cut off
   and kept in ``extension`` (``PHONE_EXTENSION_DROPPED``); a leading label (``Tél :``,
   ``Portable``, ``Mobile :``, ``tel:``) is ignored.
2. Separators are ignored: spaces, dots, dashes, slashes, parentheses. ``(0)`` after a
   country code is the trunk zero and is dropped (``+33 (0)6...``); at the start of a
   national number it is read as ``0`` (``(0)6...``). Any other character (letters...) makes
   the number invalid: phonenumbers would read letters as a keypad's digits.
3. ``+`` or ``00`` starts an international number (``0033 6...``); ``+33 06...`` loses the
   trunk zero. Without either: 10 digits starting with 0 are a national number; 11 digits
   starting with 33 are ``+33`` without its plus (``33 6 12...``); 12 digits starting with
   590/594/596/262 are an overseas number without its plus; 9 digits not starting with 0
   are a national number that lost its leading zero (Excel does that to every number:
   ``612345678``, ``PHONE_ZERO_RESTORED``).
4. Overseas departments share the national plan but have their own country codes: the
   national prefixes 0590/0690/0691 (Guadeloupe, Saint-Barthélemy, Saint-Martin), 0596/0696/
   0697 (Martinique), 0594/0694 (Guiana), 0262/0263/0692/0693 (Réunion), 0269/0639 (Mayotte)
   and the new 07090-07093x mobiles are turned into +590/+596/+594/+262 *before* checking
   (phonenumbers reads 0690... as an invalid French number, and 0269... as a valid one). A
   number written with +33 and such a prefix (``+33 690...``, ``0033 590...``) is moved to
   its department's code (``PHONE_DOM_CODE_FIXED``).
5. The number is checked against phonenumbers' metadata (the same patterns; the French
   plan's country codes are matched here directly for speed, the others through
   ``phonenumbers.parse``). ``FIXED_LINE_OR_MOBILE`` is decided by the prefix in the French
   plan (national number starting with 6 or 7: mobile, else fixed); elsewhere it stays
   ``unknown``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

from tournesol.quality.base import Flag, Severity, blank

FLAGS: tuple[Flag, ...] = (
    Flag(
        "PHONE_INVALID",
        "phone",
        Severity.INVALID,
        "Not a valid phone number (length, prefix, letters); the original is kept.",
    ),
    Flag(
        "PHONE_PLACEHOLDER",
        "phone",
        Severity.INVALID,
        "A dummy number (06 00 00 00 00, 01 23 45 67 89): the subscriber part is one repeated "
        "digit, or the textbook example.",
    ),
    Flag(
        "PHONE_ZERO_RESTORED",
        "phone",
        Severity.FIXED,
        "A national number that lost its leading zero (612345678) got it back.",
    ),
    Flag(
        "PHONE_DOM_CODE_FIXED",
        "phone",
        Severity.FIXED,
        "An overseas number written with +33 (+33 690...) was given its own country code "
        "(+590 690...).",
    ),
    Flag(
        "PHONE_EXTENSION_DROPPED",
        "phone",
        Severity.FIXED,
        "An extension (poste 12, ext. 12) was cut off the number and kept aside.",
    ),
    Flag(
        "PHONE_PREMIUM",
        "phone",
        Severity.WARNING,
        "A premium-rate number (08 9x...), unlikely to be a customer's own line.",
    ),
    Flag(
        "PHONE_FOREIGN",
        "phone",
        Severity.INFO,
        "A number outside France and its overseas departments.",
    ),
)

# Regions that share the French ten-digit national plan (0 + 9 digits).
FRENCH_PLAN = frozenset({"FR", "GP", "MQ", "GF", "RE", "YT", "BL", "MF"})
_FRENCH_CODES = frozenset({33, 590, 594, 596, 262})
_DOM_CODES = ("590", "594", "596", "262")

# Start of the national significant number (9 digits) -> the overseas country code.
DOM_PREFIXES: dict[str, int] = {
    "590": 590, "690": 590, "691": 590, "7090": 590,
    "596": 596, "696": 596, "697": 596, "7091": 596,
    "594": 594, "694": 594, "70930": 594, "70931": 594, "70932": 594, "70933": 594,
    "262": 262, "263": 262, "692": 262, "693": 262, "7092": 262,
    "269": 262, "639": 262, "70935": 262, "70936": 262, "70937": 262,
}  # fmt: skip
PLACEHOLDERS = frozenset({"123456789"})  # 01 23 45 67 89

LINE_TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PREMIUM_RATE: "premium",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
}

_EXTENSION = re.compile(
    r"[\s,;]*(?:postes?|p\.|ext\.?|extension|x|#)\s*[:.]?\s*([0-9]{1,6})\s*\Z", re.IGNORECASE
)
_LABEL = re.compile(
    r"\A(?:t[ée]l(?:[ée]phone)?|tel|portable|port|mobile|mob|gsm|fixe|domicile|bureau)"
    r"\s*\.?\s*:?\s*",
    re.IGNORECASE,
)
_ALLOWED = re.compile(r"\+?[0-9\s.\-/()\u2010-\u2015]*\Z")
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")
_NOT_DIGIT = re.compile(r"[^0-9]")
# The usual shapes (0612345678, 06 12 34 56 78, 06.12..., +33 6 12...): no extension, no
# label, no parentheses; only the digits (and the plus) count.
_PLAIN = re.compile(r"\+?[0-9][0-9 .\-]*")
_MAX_DIGITS = 17  # E.164 allows 15 digits; 00 + 15 digits


@dataclass(frozen=True, slots=True)
class PhoneResult:
    """One phone number, checked.

    ``value``: E.164 (``+33612345678``) or None; ``line_type``: mobile, fixed, voip, premium,
    toll_free, shared_cost, personal, pager, uan or unknown (None when invalid); ``region``:
    the ISO 3166 alpha-2 code of the number's country (GP for Guadeloupe);
    ``extension``: the extension cut off; ``reason``: why an invalid number is invalid.
    """

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()
    line_type: str | None = None
    region: str | None = None
    extension: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


class _Read(NamedTuple):
    value: str | None
    line_type: str | None
    region: str | None
    flags: tuple[str, ...]
    reason: str | None


def normalize_phone(text: str | None, *, default_region: str = "FR") -> PhoneResult:
    """Read one phone number as written in a French file; never raises.

    Takes the text and the region to read national numbers in (ISO alpha-2). Returns a
    :class:`PhoneResult`: blank -> no value and no flag; invalid -> ``value`` None,
    ``PHONE_INVALID`` and the reason.

    >>> r = normalize_phone("+33 (0)6 12 34 56 78 poste 12")
    >>> r.value, r.line_type, r.region, r.extension, r.flags
    ('+33612345678', 'mobile', 'FR', '12', ('PHONE_EXTENSION_DROPPED',))
    >>> normalize_phone("0690 00 12 34").value
    '+590690001234'
    """
    if blank(text):
        return PhoneResult(text, None)
    assert text is not None
    cleaned = str(text).strip()
    if _PLAIN.fullmatch(cleaned):  # the common case, read as the general one below would
        digits = _NOT_DIGIT.sub("", cleaned)
        read = _read(f"+{digits}" if cleaned[0] == "+" else digits, default_region.upper())
        return PhoneResult(
            text, read.value, read.flags, read.line_type, read.region, None, read.reason
        )
    extension = None
    found = _EXTENSION.search(cleaned)
    if found is not None and found.start() > 0:
        extension = found.group(1)
        cleaned = cleaned[: found.start()]
    cleaned = _LABEL.sub("", cleaned, count=1)
    if not _ALLOWED.match(cleaned):
        read = _Read(None, None, None, ("PHONE_INVALID",), "contains letters or symbols")
    else:
        plus = cleaned.startswith("+")
        international = plus or cleaned.lstrip("(").startswith("00")
        cleaned = _TRUNK_ZERO.sub("" if international else "0", cleaned)
        digits = _NOT_DIGIT.sub("", cleaned)
        region = default_region.upper()
        read = _read(f"+{digits}" if plus else digits, region)
    flags = read.flags
    if extension is not None:
        flags = tuple(sorted((*flags, "PHONE_EXTENSION_DROPPED")))
    return PhoneResult(text, read.value, flags, read.line_type, read.region, extension, read.reason)


@lru_cache(maxsize=16384)
def _read(key: str, default_region: str) -> _Read:
    """The number for its digits (``+`` kept) and the region national numbers are read in."""
    digits = key.lstrip("+")
    if not digits:
        return _invalid("no digits")
    if len(digits) > _MAX_DIGITS:
        return _invalid(f"{len(digits)} digits, more than any phone number has")
    flags: list[str] = []
    if key.startswith("+") or digits.startswith("00"):
        international = digits[2:] if digits.startswith("00") else digits
        if international.startswith("00"):  # "+0033..."
            international = international[2:]
        if not international or international[0] == "0":
            return _invalid("no country code after the international prefix")
    elif default_region in FRENCH_PLAN:
        size = len(digits)
        if size == 10 and digits[0] == "0":
            international = _with_code(digits[1:])
        elif size == 9 and digits[0] != "0":
            flags.append("PHONE_ZERO_RESTORED")
            international = _with_code(digits)
        elif (size == 11 and digits.startswith("33")) or (size == 12 and digits[:3] in _DOM_CODES):
            international = digits
        else:
            return _invalid(f"{size} digits; a French number has 10 (0 and 9 digits)")
    else:
        return _foreign(digits, default_region, flags)
    code = 33 if international.startswith("33") else 0
    code = code or next((int(c) for c in _DOM_CODES if international.startswith(c)), 0)
    if not code:
        return _foreign(f"+{international}", default_region, flags)
    national = international[len(str(code)) :]
    if len(national) == 10 and national[0] == "0":  # "+33 06...": the trunk zero kept
        national = national[1:]
    if code == 33:
        dom = _dom_code(national)
        if dom:
            flags.append("PHONE_DOM_CODE_FIXED")
            code = dom
    return _french(code, national, default_region, flags)


def _with_code(national: str) -> str:
    """Country code and national significant number of a number of the French plan."""
    return f"{_dom_code(national) or 33}{national}"


def _dom_code(national: str) -> int | None:
    return (
        DOM_PREFIXES.get(national[:3])
        or DOM_PREFIXES.get(national[:4])
        or (DOM_PREFIXES.get(national[:5]))
    )


def _invalid(reason: str, flag: str = "PHONE_INVALID") -> _Read:
    return _Read(None, None, None, (flag,), reason)


def _french(code: int, national: str, default_region: str, flags: list[str]) -> _Read:
    """A number of the French plan, checked against phonenumbers' patterns directly."""
    found = _region_and_type(code, national)
    if found is None:
        return _invalid(f"+{code} {national} is not a valid number for its country")
    region, kind = found
    if national in PLACEHOLDERS or (len(national) == 9 and len(set(national[1:])) == 1):
        return _invalid(f"+{code} {national} is a dummy number", "PHONE_PLACEHOLDER")
    if kind == PhoneNumberType.FIXED_LINE_OR_MOBILE:
        line_type = "mobile" if national[0] in "67" else "fixed"
    else:
        line_type = LINE_TYPES.get(kind, "unknown")
    return _valid(f"+{code}{national}", line_type, region, default_region, flags)


def _foreign(text: str, default_region: str, flags: list[str]) -> _Read:
    """Any other number, through phonenumbers.parse."""
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        return _invalid(str(exc))
    if not phonenumbers.is_valid_number(number):
        return _invalid(f"{text} is not a valid number for its country")
    region = phonenumbers.region_code_for_number(number)
    kind = phonenumbers.number_type(number)
    line_type = LINE_TYPES.get(kind, "unknown")
    value = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return _valid(value, line_type, region, default_region, flags)


def _valid(
    value: str, line_type: str, region: str | None, default_region: str, flags: list[str]
) -> _Read:
    home = FRENCH_PLAN if default_region in FRENCH_PLAN else {default_region}
    if line_type == "premium":
        flags.append("PHONE_PREMIUM")
    if region not in home:
        flags.append("PHONE_FOREIGN")
    return _Read(value, line_type, region, tuple(sorted(flags)), None)


class _Desc(NamedTuple):
    lengths: frozenset[int]
    pattern: re.Pattern[str]


class _Meta(NamedTuple):
    region: str
    leading_digits: re.Pattern[str] | None
    general: _Desc | None
    ordered: tuple[tuple[int, _Desc | None], ...]  # special types, in phonenumbers' order
    fixed: _Desc | None
    mobile: _Desc | None
    same_fixed_and_mobile: bool
    # number length -> the patterns of `ordered`, `fixed` and `mobile` that allow it (None:
    # any other length), in that order, as one alternation with one group per type.
    by_length: dict[int | None, _Types]


class _Types(NamedTuple):
    pattern: re.Pattern[str]
    kinds: dict[int, int]  # group index -> PhoneNumberType (_FIXED, _MOBILE for those two)


_FIXED, _MOBILE = -1, -2  # in _Types.kinds: the fixed-line and mobile patterns


def _region_and_type(code: int, national: str) -> tuple[str, int] | None:
    """phonenumbers' region_code_for_number and number_type, for a French-plan code, on
    precompiled patterns; None when the number is not valid."""
    for meta in _metadata(code):
        if meta.leading_digits is not None:
            if meta.leading_digits.match(national):
                kind = _number_type(national, meta)
                return None if kind == PhoneNumberType.UNKNOWN else (meta.region, kind)
            continue
        kind = _number_type(national, meta)
        if kind != PhoneNumberType.UNKNOWN:
            return meta.region, kind
    return None


def _number_type(national: str, meta: _Meta) -> int:
    """phonenumbers' number_type: the first special type whose pattern matches, else fixed
    line and/or mobile. One regex tries the patterns in that order (the first alternative
    that matches the whole number wins), the group that matched tells the type."""
    if not _matches(national, meta.general):
        return PhoneNumberType.UNKNOWN
    types = meta.by_length.get(len(national)) or meta.by_length[None]
    found = types.pattern.fullmatch(national)
    if found is None or found.lastindex is None:
        return PhoneNumberType.UNKNOWN
    kind = types.kinds[found.lastindex]
    if kind == _FIXED:
        if meta.same_fixed_and_mobile or _matches(national, meta.mobile):
            return PhoneNumberType.FIXED_LINE_OR_MOBILE
        return PhoneNumberType.FIXED_LINE
    if kind == _MOBILE:
        return PhoneNumberType.MOBILE
    return kind


def _matches(national: str, desc: _Desc | None) -> bool:
    if desc is None:
        return False
    if desc.lengths and len(national) not in desc.lengths:
        return False
    return desc.pattern.fullmatch(national) is not None


@cache
def _metadata(code: int) -> tuple[_Meta, ...]:
    """The compiled metadata of the regions behind a French-plan country code."""
    if code not in _FRENCH_CODES:
        raise ValueError(code)
    found = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]:
        meta = PhoneMetadata.metadata_for_region(region)
        if meta is None:
            continue
        special = (
            (PhoneNumberType.PREMIUM_RATE, meta.premium_rate),
            (PhoneNumberType.TOLL_FREE, meta.toll_free),
            (PhoneNumberType.SHARED_COST, meta.shared_cost),
            (PhoneNumberType.VOIP, meta.voip),
            (PhoneNumberType.PERSONAL_NUMBER, meta.personal_number),
            (PhoneNumberType.PAGER, meta.pager),
            (PhoneNumberType.UAN, meta.uan),
            (PhoneNumberType.VOICEMAIL, meta.voicemail),
        )
        ordered = tuple((kind, d) for kind, desc in special if (d := _desc(desc)) is not None)
        fixed, mobile = _desc(meta.fixed_line), _desc(meta.mobile)
        same = bool(meta.same_mobile_and_fixed_line_pattern)
        typed = [*ordered, (_FIXED, fixed)]
        if not same:  # else the mobile pattern is the fixed one: it never matches alone
            typed.append((_MOBILE, mobile))
        found.append(
            _Meta(
                region,
                re.compile(meta.leading_digits) if meta.leading_digits else None,
                _desc(meta.general_desc),
                ordered,
                fixed,
                mobile,
                same,
                _by_length([(kind, d) for kind, d in typed if d is not None]),
            )
        )
    return tuple(found)


def _by_length(typed: list[tuple[int, _Desc]]) -> dict[int | None, _Types]:
    """For each possible length (None: any other), the types that allow it, as one regex."""
    lengths = {n for _, desc in typed for n in desc.lengths}
    out: dict[int | None, _Types] = {}
    for length in (*sorted(lengths), None):
        parts, kinds, group = [], {}, 1
        for kind, desc in typed:
            if desc.lengths and length not in desc.lengths:
                continue
            if re.search(r"\\[1-9]|\(\?P=", desc.pattern.pattern):
                raise ValueError(f"back-reference in {desc.pattern.pattern}")
            parts.append(f"({desc.pattern.pattern})")
            kinds[group] = kind
            group += 1 + desc.pattern.groups
        out[length] = _Types(re.compile("|".join(parts) or "(?!)"), kinds)
    return out


def _desc(desc: object) -> _Desc | None:
    """A number description with a pattern, compiled; None when it matches nothing."""
    pattern = getattr(desc, "national_number_pattern", None)
    if not pattern:
        return None
    lengths = frozenset(getattr(desc, "possible_length", None) or ())
    return _Desc(lengths, re.compile(pattern))
