"""Dates as French files write them, and the plausibility of a birth date.

Reading order for a text (a ``date`` or ``datetime`` is taken as it is, its date part):

1. The ``formats`` asked for (``strptime`` formats, tried in order; the word ``excel`` reads an
   Excel serial day number such as ``29294`` -> 1980-03-14, and is the only way to get one
   read). A text none of them reads goes on to the built-in forms.
2. ISO ``yyyy-mm-dd`` (also ``/`` or ``.``), with anything after the date part ignored
   (``1980-03-12T10:00:00Z``).
3. Day first: ``dd/mm/yyyy``, ``dd-mm-yyyy``, ``dd.mm.yyyy``, ``dd mm yyyy``, one or two
   digits for the day and month, a trailing time ignored (``12/03/1980 00:00:00``).
4. Eight digits: ``yyyymmdd`` when it is a real date with a year between 1800 and 2199, else
   ``ddmmyyyy``. Both cannot hold at once (the month of one reading would have to be the
   century of the other), so the choice is never a guess.
5. French month names, full or abbreviated, with or without a dot or weekday:
   ``12 mars 1980``, ``1er janvier 1990``, ``12 janv. 1980``, ``lundi 3 févr 1975``,
   Excel's French display ``12-mars-80`` (English names are read too).

A two-digit year (``12/03/80``) is put in a century (``DATE_CENTURY_ASSUMED``): for a birth
date, in the current century unless that is after today, then the previous one; otherwise
the ``%y`` rule (00-68: 2000s, 69-99: 1900s).

Day and month swapped: a day-first text whose "month" is above 12 while its "day" is 12 or
less (``05/13/1980``) is read month first (``DATE_DAY_MONTH_SWAPPED``). When both readings
are real dates, day first wins: nothing tells them apart.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache, lru_cache
from typing import NamedTuple

from tournesol.quality.base import Flag, Severity, blank

FLAGS: tuple[Flag, ...] = (
    Flag(
        "DATE_INVALID",
        "date",
        Severity.INVALID,
        "Not a date in any known form.",
    ),
    Flag(
        "DATE_IMPOSSIBLE",
        "date",
        Severity.INVALID,
        "A date in a known form that does not exist (31/02/1980, month 13).",
    ),
    Flag(
        "DATE_DAY_MONTH_SWAPPED",
        "date",
        Severity.FIXED,
        "Day and month were written the other way round (05/13/1980) and were read month first.",
    ),
    Flag(
        "DATE_CENTURY_ASSUMED",
        "date",
        Severity.INFO,
        "A two-digit year was put in a century (12/03/80 -> 1980).",
    ),
    Flag(
        "BIRTH_DATE_FUTURE",
        "date",
        Severity.INVALID,
        "A birth date after today.",
    ),
    Flag(
        "BIRTH_DATE_TOO_OLD",
        "date",
        Severity.INVALID,
        "A birth date more than 120 years ago.",
    ),
    Flag(
        "BIRTH_DATE_MINOR",
        "date",
        Severity.WARNING,
        "A birth date less than 15 years ago: a child, or a wrong date.",
    ),
    Flag(
        "BIRTH_DATE_PLACEHOLDER",
        "date",
        Severity.INVALID,
        "A date systems and people type when the birth date is unknown (01/01/1900, "
        "11/11/1111, 01/01/1970...).",
    ),
)

EXCEL = "excel"  # the format word that asks for Excel serial day numbers
MAX_AGE = 120
MIN_AGE = 15
# Dates typed or stored for an unknown birth date: the classic defaults of forms, the epoch
# of Unix (01/01/1970), Excel's day 0, SQL Server's datetime minimum (1753-01-01).
PLACEHOLDERS = frozenset(
    {
        date(1, 1, 1), date(1111, 11, 11), date(1753, 1, 1), date(1800, 1, 1),
        date(1899, 12, 30), date(1899, 12, 31), date(1900, 1, 1), date(1901, 1, 1),
        date(1970, 1, 1), date(9999, 12, 31),
    }
)  # fmt: skip

MONTHS: dict[str, int] = {
    "janvier": 1, "janv": 1, "jan": 1, "january": 1,
    "fevrier": 2, "février": 2, "fevr": 2, "févr": 2, "fev": 2, "fév": 2, "feb": 2,
    "february": 2,
    "mars": 3, "mar": 3, "march": 3,
    "avril": 4, "avr": 4, "apr": 4, "april": 4,
    "mai": 5, "may": 5,
    "juin": 6, "jun": 6, "june": 6,
    "juillet": 7, "juil": 7, "jul": 7, "july": 7,
    "aout": 8, "août": 8, "aou": 8, "aoû": 8, "aug": 8, "august": 8,
    "septembre": 9, "sept": 9, "sep": 9, "september": 9,
    "octobre": 10, "oct": 10, "october": 10,
    "novembre": 11, "nov": 11, "november": 11,
    "decembre": 12, "décembre": 12, "dec": 12, "déc": 12, "december": 12,
}  # fmt: skip

_ISO = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?:[T\s].*)?\Z", re.DOTALL)
_DAY_FIRST = re.compile(
    r"(\d{1,2})([-/. ])(\d{1,2})\2(\d{4}|\d{2})(?:\s+\d{1,2}[:h]\d{2}(?::\d{2}(?:\.\d+)?)?)?\Z"
)
_EIGHT = re.compile(r"\d{8}\Z")
_WORDS = re.compile(
    r"(?:[a-z]+\.?,?\s+)?(\d{1,2})(?:er|e)?[\s/-]+([a-zéû]+)\.?,?[\s/-]+(\d{4}|\d{2})\Z",
    re.IGNORECASE,
)
_SERIAL = re.compile(r"(\d{1,7})(?:\.0*)?\Z")
_EXCEL_EPOCH = date(1899, 12, 30)  # serial 1 is 1900-01-01 (Excel's 1900 leap-year bug aside)
_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class DateResult:
    """One date, read: ``value`` ISO ``YYYY-MM-DD`` and ``date`` the same as a ``date``
    (None when unreadable or impossible; a birth date flagged invalid keeps its date so the
    steward sees what was read); ``reason`` why it could not be read."""

    original: str | None
    value: str | None
    date: date | None = None
    flags: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.value is not None


class _Unreadable(ValueError):
    """The text is in no known form."""


class NotThisFormat(Exception):
    """Raised by a :func:`fixed_width_parser` parser when the text is not in its shape."""


@cache
def fixed_width_parser(fmt: str) -> Callable[[str], date] | None:
    """A quick parser for the common fixed-width formats (``%d/%m/%Y``, ``%d-%m-%Y``,
    ``%d.%m.%Y``, ``%Y-%m-%d``, ``%Y/%m/%d``), None for any other format. The parser raises
    :class:`NotThisFormat` when the text does not have the shape, and ValueError ("... out of
    range ...", like ``strptime``) for an impossible date. Ten times faster than strptime.

    >>> fixed_width_parser("%d/%m/%Y")("05/03/1971")
    datetime.date(1971, 3, 5)
    """
    if fmt in ("%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"):
        sep = fmt[2]

        def dmy(t: str) -> date:
            if len(t) != 10 or t[2] != sep or t[5] != sep or not (t[:2] + t[3:5] + t[6:]).isdigit():
                raise NotThisFormat
            return date(int(t[6:]), int(t[3:5]), int(t[:2]))

        return dmy
    if fmt in ("%Y-%m-%d", "%Y/%m/%d"):
        sep = fmt[2]

        def ymd(t: str) -> date:
            if len(t) != 10 or t[4] != sep or t[7] != sep or not (t[:4] + t[5:7] + t[8:]).isdigit():
                raise NotThisFormat
            return date(int(t[:4]), int(t[5:7]), int(t[8:]))

        return ymd
    return None


class _Failure(NamedTuple):
    code: str  # DATE_INVALID or DATE_IMPOSSIBLE
    reason: str


def normalize_date(
    text: str | date | datetime | None,
    *,
    formats: tuple[str, ...] = (),
    birth: bool = False,
    today: date | None = None,
) -> DateResult:
    """Read a date written the French way (day first) and check a birth date; never raises.

    Takes the text (or a ``date``/``datetime``), the ``strptime`` formats to try first (and
    ``"excel"`` for serial numbers), whether it is a birth date, and the day to judge a birth
    date against (today by default). Returns a :class:`DateResult`.

    >>> r = normalize_date("1er janvier 1990")
    >>> r.value, r.flags
    ('1990-01-01', ())
    >>> normalize_date("05/13/1980").flags
    ('DATE_DAY_MONTH_SWAPPED',)
    >>> normalize_date("31/02/1980").reason
    "'31/02/1980' is not a real date (day is out of range for month)"
    >>> normalize_date("12/03/2020", birth=True, today=date(2026, 1, 1)).flags
    ('BIRTH_DATE_MINOR',)
    """
    if isinstance(text, datetime):
        return _checked(text.isoformat(), text.date(), (), birth, today)
    if isinstance(text, date):
        return _checked(text.isoformat(), text, (), birth, today)
    if blank(text):
        return DateResult(text, None)
    assert text is not None
    original = str(text)
    when = today or date.today()
    cleaned = original.strip()
    if not cleaned.isascii():
        cleaned = unicodedata.normalize("NFC", cleaned)
    read = _read(cleaned, tuple(formats), birth, when.year)
    if isinstance(read, _Failure):
        return DateResult(original, None, None, (read.code,), read.reason)
    day, flags = read
    return _checked(original, day, flags, birth, when)


def _checked(
    original: str, day: date, flags: tuple[str, ...], birth: bool, today: date | None
) -> DateResult:
    if birth:
        flags = (*flags, *_birth_flags(day, today or date.today()))
    return DateResult(original, day.isoformat(), day, tuple(sorted(flags)))


def _birth_flags(day: date, today: date) -> tuple[str, ...]:
    if day in PLACEHOLDERS:
        return ("BIRTH_DATE_PLACEHOLDER",)
    if day > today:
        return ("BIRTH_DATE_FUTURE",)
    age = today.year - day.year - ((today.month, today.day) < (day.month, day.day))
    if age > MAX_AGE:
        return ("BIRTH_DATE_TOO_OLD",)
    if age < MIN_AGE:
        return ("BIRTH_DATE_MINOR",)
    return ()


@lru_cache(maxsize=32768)
def _read(
    text: str, formats: tuple[str, ...], birth: bool, this_year: int
) -> tuple[date, tuple[str, ...]] | _Failure:
    """The date and the flags of its reading, or why it could not be read."""
    if len(text) > _MAX_LENGTH:
        return _Failure("DATE_INVALID", f"{text[:20]!r}... is too long to be a date")
    impossible: str | None = None
    for fmt in formats:
        quick = fixed_width_parser(fmt)
        if quick is not None:
            try:
                return quick(text), ()
            except NotThisFormat:
                continue
            except ValueError as exc:
                impossible = str(exc)
                continue
        try:
            if fmt.lower() == EXCEL:
                return _excel(text), ()
            parsed = datetime.strptime(text, fmt).date()
        except _Unreadable:
            continue
        except ValueError as exc:
            if "out of range" in str(exc) or "must be in" in str(exc):
                impossible = str(exc)
            continue
        if "%y" not in fmt:
            return parsed, ()
        if birth and parsed.year > this_year:
            parsed = parsed.replace(year=parsed.year - 100)
        return parsed, ("DATE_CENTURY_ASSUMED",)
    try:
        return _builtin(text, birth, this_year)
    except _Unreadable:
        if impossible is not None:
            return _Failure("DATE_IMPOSSIBLE", f"{text!r} is not a real date ({impossible})")
        if formats:
            reason = f"{text!r} matches none of the date formats {list(formats)} nor a known form"
            return _Failure("DATE_INVALID", reason)
        return _Failure("DATE_INVALID", f"{text!r} is not a date in any known form")
    except ValueError as exc:
        return _Failure("DATE_IMPOSSIBLE", f"{text!r} is not a real date ({exc})")


def _builtin(text: str, birth: bool, this_year: int) -> tuple[date, tuple[str, ...]]:
    """Raises _Unreadable (no known form) or ValueError (a form, but no such date)."""
    found = _ISO.match(text)
    if found is not None:
        year, _, month, day = found.groups()
        return date(int(year), int(month), int(day)), ()
    found = _DAY_FIRST.match(text)
    if found is not None:
        day, _, month, year = found.groups()
        full_year, flags = _year(year, birth, this_year)
        return _day_first(int(day), int(month), full_year, flags)
    if _EIGHT.match(text):
        return _eight_digits(text)
    found = _WORDS.match(text)
    if found is not None:
        day, name, year = found.groups()
        month = MONTHS.get(name.lower())
        if month is None:
            raise _Unreadable(text)
        full_year, flags = _year(year, birth, this_year)
        return date(full_year, month, int(day)), flags
    raise _Unreadable(text)


def _year(text: str, birth: bool, this_year: int) -> tuple[int, tuple[str, ...]]:
    if len(text) == 4:
        return int(text), ()
    short = int(text)
    if birth:
        year = this_year - this_year % 100 + short
        if year > this_year:
            year -= 100
    else:
        year = 2000 + short if short < 69 else 1900 + short
    return year, ("DATE_CENTURY_ASSUMED",)


def _day_first(
    day: int, month: int, year: int, flags: tuple[str, ...]
) -> tuple[date, tuple[str, ...]]:
    try:
        return date(year, month, day), flags
    except ValueError:
        if month > 12 and 1 <= day <= 12:
            try:
                return date(year, day, month), (*flags, "DATE_DAY_MONTH_SWAPPED")
            except ValueError:
                pass
        raise


def _eight_digits(text: str) -> tuple[date, tuple[str, ...]]:
    year = int(text[:4])
    if 1800 <= year <= 2199:
        try:
            return date(year, int(text[4:6]), int(text[6:])), ()
        except ValueError:
            pass
    return _day_first(int(text[:2]), int(text[2:4]), int(text[4:]), ())


def _excel(text: str) -> date:
    found = _SERIAL.match(text)
    if found is None:
        raise _Unreadable(text)
    serial = int(found.group(1))
    if not 1 <= serial <= 2958465:  # 9999-12-31
        raise _Unreadable(text)
    if serial == 60:  # Excel counts a 29 February 1900 that never was
        raise ValueError("day is out of range for month (Excel's 29 February 1900)")
    if serial < 60:
        serial += 1
    return _EXCEL_EPOCH + timedelta(days=serial)
