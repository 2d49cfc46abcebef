"""Dates written the French way, day/month swaps, and the plausibility of birth dates."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality import dates
from tournesol.quality.base import Severity
from tournesol.quality.dates import normalize_date

TODAY = date(2026, 6, 15)
FIXED = {f.code for f in dates.FLAGS if f.severity is Severity.FIXED}
CENTURY = ("DATE_CENTURY_ASSUMED",)
SWAPPED = ("DATE_DAY_MONTH_SWAPPED",)
IMPOSSIBLE = ("DATE_IMPOSSIBLE",)
INVALID = ("DATE_INVALID",)


@pytest.mark.parametrize(
    ("text", "value", "flags"),
    [
        ("12/03/1980", "1980-03-12", ()),
        ("12-03-1980", "1980-03-12", ()),
        ("12.03.1980", "1980-03-12", ()),
        ("12 03 1980", "1980-03-12", ()),
        ("2/3/1980", "1980-03-02", ()),
        (" 12/03/1980 ", "1980-03-12", ()),
        ("12/03/1980 00:00:00", "1980-03-12", ()),  # Excel and database exports
        ("12/03/1980 10h30", "1980-03-12", ()),
        ("1980-03-12", "1980-03-12", ()),
        ("1980/03/12", "1980-03-12", ()),
        ("1980-3-2", "1980-03-02", ()),
        ("1980-03-12T10:15:00", "1980-03-12", ()),  # ISO 8601 date-time: the date part
        ("1980-03-12T23:30:00+02:00", "1980-03-12", ()),  # the date as written, no shift
        ("1980-03-12 10:15:00.123", "1980-03-12", ()),
        # eight digits: yyyymmdd when plausible, else ddmmyyyy (both cannot hold)
        ("19800312", "1980-03-12", ()),
        ("12031980", "1980-03-12", ()),
        ("20000101", "2000-01-01", ()),
        ("01022000", "2000-02-01", ()),
        # two-digit years (not a birth date: the %y rule, 00-68 -> 2000s)
        ("12/03/80", "1980-03-12", CENTURY),
        ("12/03/05", "2005-03-12", CENTURY),
        ("12/03/68", "2068-03-12", CENTURY),
        ("12/03/69", "1969-03-12", CENTURY),
        # French month names, full, abbreviated, with 1er, a weekday, Excel's 12-mars-80
        ("12 mars 1980", "1980-03-12", ()),
        ("1er janvier 1990", "1990-01-01", ()),
        ("1ER JANVIER 1990", "1990-01-01", ()),
        ("12 janv. 1980", "1980-01-12", ()),
        ("3 févr 1975", "1975-02-03", ()),
        ("3 fevrier 1975", "1975-02-03", ()),
        ("15 août 1969", "1969-08-15", ()),
        ("15 aout 1969", "1969-08-15", ()),
        ("25 déc. 1999", "1999-12-25", ()),
        ("lundi 3 févr 1975", "1975-02-03", ()),
        ("Mardi, 4 mars 1980", "1980-03-04", ()),
        ("12-mars-80", "1980-03-12", CENTURY),
        ("7 sept. 2001", "2001-09-07", ()),
        ("12 March 1980", "1980-03-12", ()),
        # day and month swapped: read month first only when day first is impossible
        ("05/13/1980", "1980-05-13", SWAPPED),
        ("12/31/1999", "1999-12-31", SWAPPED),
        ("05131980", "1980-05-13", SWAPPED),
        ("05/12/1980", "1980-12-05", ()),  # both readings real: day first, no guess
        ("13/13/1980", None, IMPOSSIBLE),  # no reading works
        ("02/30/1980", None, IMPOSSIBLE),  # "month" 30, day 2: swapped, 30 February fails
        # impossible dates: a known form, no such day
        ("31/02/1980", None, IMPOSSIBLE),
        ("29/02/2001", None, IMPOSSIBLE),
        ("31/04/1980", None, IMPOSSIBLE),
        ("00/00/0000", None, IMPOSSIBLE),
        ("1980-02-30", None, IMPOSSIBLE),
        ("1980-13-01", None, IMPOSSIBLE),
        ("31 février 1980", None, IMPOSSIBLE),
        ("29/02/2000", "2000-02-29", ()),  # 2000 is a leap year (divisible by 400)
        # not dates
        ("1980", None, INVALID),
        ("mars 1980", None, INVALID),
        ("12 flores 1980", None, INVALID),
        ("12/03", None, INVALID),
        ("12/03/1980/4", None, INVALID),
        ("12/03-1980", None, INVALID),  # mixed separators
        ("NC", None, INVALID),
        ("29294", None, INVALID),  # an Excel serial is read only when asked for
    ],
)
def test_normalize_date(text: str, value: str | None, flags: tuple[str, ...]) -> None:
    result = normalize_date(text, today=TODAY)
    assert result.original == text
    assert (result.value, result.flags) == (value, tuple(sorted(flags)))
    assert result.date == (date.fromisoformat(value) if value else None)
    assert (result.reason is None) == (value is not None)


def test_impossible_date_says_why() -> None:
    """The reason the importer shows in its reject (docs/mappings.md)."""
    result = normalize_date("31/02/1980")
    assert result.reason == "'31/02/1980' is not a real date (day is out of range for month)"


@pytest.mark.parametrize(
    ("text", "value", "flags"),
    [
        ("12/03/1980", "1980-03-12", ()),
        ("15/06/2011", "2011-06-15", ()),  # 15 today: not a minor any more
        ("16/06/2011", "2011-06-16", ("BIRTH_DATE_MINOR",)),  # 15 tomorrow
        ("01/01/2020", "2020-01-01", ("BIRTH_DATE_MINOR",)),
        ("15/06/2026", "2026-06-15", ("BIRTH_DATE_MINOR",)),  # born today
        ("16/06/2026", "2026-06-16", ("BIRTH_DATE_FUTURE",)),
        ("01/01/2030", "2030-01-01", ("BIRTH_DATE_FUTURE",)),
        ("15/06/1906", "1906-06-15", ()),  # 120 today
        ("16/06/1905", "1905-06-16", ()),  # 121 tomorrow, 120 today
        ("15/06/1905", "1905-06-15", ("BIRTH_DATE_TOO_OLD",)),  # 121 today
        ("01/01/1890", "1890-01-01", ("BIRTH_DATE_TOO_OLD",)),
        ("01/01/1900", "1900-01-01", ("BIRTH_DATE_PLACEHOLDER",)),
        ("01/01/1901", "1901-01-01", ("BIRTH_DATE_PLACEHOLDER",)),
        ("11/11/1111", "1111-11-11", ("BIRTH_DATE_PLACEHOLDER",)),
        ("01/01/1970", "1970-01-01", ("BIRTH_DATE_PLACEHOLDER",)),
        ("1753-01-01", "1753-01-01", ("BIRTH_DATE_PLACEHOLDER",)),  # SQL Server's minimum
        ("02/01/1970", "1970-01-02", ()),
        # two-digit years of a birth date: this century unless after today, then the last
        ("12/03/80", "1980-03-12", CENTURY),
        ("12/03/26", "2026-03-12", ("BIRTH_DATE_MINOR", *CENTURY)),
        ("12/03/27", "1927-03-12", CENTURY),
        ("12/03/05", "2005-03-12", CENTURY),
        ("12/03/00", "2000-03-12", CENTURY),
    ],
)
def test_birth_dates(text: str, value: str, flags: tuple[str, ...]) -> None:
    result = normalize_date(text, birth=True, today=TODAY)
    assert (result.value, result.flags) == (value, tuple(sorted(flags)))


def test_mapping_formats_come_first() -> None:
    # a US file: the mapping says month first
    us = normalize_date("03/12/1980", formats=("%m/%d/%Y",))
    assert (us.value, us.flags) == ("1980-03-12", ())
    # a text the formats do not read goes on to the built-in forms
    assert normalize_date("1980-03-12", formats=("%d/%m/%Y",)).value == "1980-03-12"
    swapped = normalize_date("05/13/1980", formats=("%d/%m/%Y",))
    assert (swapped.value, swapped.flags) == ("1980-05-13", SWAPPED)
    impossible = normalize_date("31/02/1980", formats=("%d/%m/%Y",))
    assert impossible.flags == IMPOSSIBLE and "not a real date" in (impossible.reason or "")
    unread = normalize_date("n/a", formats=("%d/%m/%Y",))
    assert unread.flags == INVALID and "%d/%m/%Y" in (unread.reason or "")
    # %y in a birth date's format follows the birth pivot
    birth = normalize_date("12/03/45", formats=("%d/%m/%y",), birth=True, today=TODAY)
    assert (birth.value, birth.flags) == ("1945-03-12", CENTURY)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("29294", "1980-03-14"),
        ("29294.0", "1980-03-14"),
        ("1", "1900-01-01"),
        ("59", "1900-02-28"),
        ("61", "1900-03-01"),  # serial 60 is Excel's 29 February 1900, which never was
        ("45658", "2025-01-01"),
    ],
)
def test_excel_serials_when_asked(text: str, value: str) -> None:
    result = normalize_date(text, formats=("excel",))
    assert (result.value, result.flags) == (value, ())


def test_excel_serial_60_is_impossible() -> None:
    assert normalize_date("60", formats=("excel",)).flags == IMPOSSIBLE
    assert normalize_date("12/03/1980", formats=("excel",)).value == "1980-03-12"


def test_date_objects_are_taken_as_they_are() -> None:
    result = normalize_date(date(1980, 3, 12), birth=True, today=TODAY)
    assert (result.original, result.value, result.flags) == ("1980-03-12", "1980-03-12", ())
    moment = normalize_date(datetime(1900, 1, 1, 0, 0), birth=True, today=TODAY)
    assert (moment.original, moment.value) == ("1900-01-01T00:00:00", "1900-01-01")
    assert moment.flags == ("BIRTH_DATE_PLACEHOLDER",)


@pytest.mark.parametrize("text", [None, "", "   "])
def test_blank_is_absent_not_invalid(text: str | None) -> None:
    result = normalize_date(text, birth=True, today=TODAY)
    assert (result.original, result.value, result.flags) == (text, None, ())


def test_flags_are_declared() -> None:
    codes = [f.code for f in dates.FLAGS]
    assert len(codes) == len(set(codes)) and all(f.field == "date" for f in dates.FLAGS)


_DAYS = st.dates(min_value=date(1800, 1, 1), max_value=date(2199, 12, 31))


@settings(max_examples=200, deadline=None)
@given(_DAYS, st.sampled_from(["%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y-%m-%d", "%Y%m%d", "%d%m%Y"]))
def test_every_written_form_reads_back(day: date, fmt: str) -> None:
    """Includes ddmmyyyy vs yyyymmdd: a real date never reads as the other (see dates.py)."""
    result = normalize_date(day.strftime(fmt), today=TODAY)
    assert (result.date, result.flags) == (day, ())


@settings(max_examples=200, deadline=None)
@given(_DAYS.filter(lambda d: d.day > 12))
def test_month_first_is_read_as_a_swap(day: date) -> None:
    result = normalize_date(day.strftime("%m/%d/%Y"), today=TODAY)
    assert (result.date, result.flags) == (day, SWAPPED)


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=TODAY - timedelta(days=120 * 366), max_value=TODAY))
def test_birth_flags_agree_with_age(day: date) -> None:
    result = normalize_date(day.strftime("%d/%m/%Y"), birth=True, today=TODAY)
    age = TODAY.year - day.year - ((TODAY.month, TODAY.day) < (day.month, day.day))
    if day in dates.PLACEHOLDERS:
        assert result.flags == ("BIRTH_DATE_PLACEHOLDER",)
    elif age > 120:
        assert result.flags == ("BIRTH_DATE_TOO_OLD",)
    elif age < 15:
        assert result.flags == ("BIRTH_DATE_MINOR",)
    else:
        assert result.flags == ()


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.text(), st.from_regex(r"[0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}", fullmatch=True))
)
def test_never_raises_keeps_the_original_and_is_idempotent(text: str) -> None:
    for birth in (False, True):
        result = normalize_date(text, birth=birth, today=TODAY)
        assert result.original == text
        if result.value is not None:
            again = normalize_date(result.value, birth=birth, today=TODAY)
            assert again.value == result.value
            assert not set(again.flags) & FIXED


def test_long_and_odd_inputs() -> None:
    for text in ("1" * 10_000, "12/03/1980" * 1000, "\x00", "😀 mars 1980", "99999999"):
        result = normalize_date(text, formats=("excel", "%d/%m/%Y"), today=TODAY)
        assert result.value is None and result.flags
