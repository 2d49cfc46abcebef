"""SIREN, SIRET, VAT numbers and NAF codes.

Numbers come from python-stdnum's own documentation (732 829 320, 404 833 048, 303 265 045,
954 506 077...) and La Poste's SIREN 356 000 000, whose establishments follow their own rule.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.fr import siret as stdnum_siret

from tournesol.quality import business
from tournesol.quality.base import Severity
from tournesol.quality.business import (
    normalize_naf,
    normalize_siren,
    normalize_siret,
    normalize_vat,
)

FIXED = {f.code for f in business.FLAGS if f.severity is Severity.FIXED}


@pytest.mark.parametrize(
    ("text", "value", "flags"),
    [
        ("732829320", "732829320", ()),
        ("732 829 320", "732829320", ()),
        ("732.829.320", "732829320", ()),
        ("732-829-320", "732829320", ()),
        (" 404 833 048 ", "404833048", ()),
        ("356000000", "356000000", ()),  # La Poste
        ("552 008 443", "552008443", ()),
        ("443121975", "443121975", ()),
        ("732 829 320 00074", "732829320", ("SIREN_FROM_SIRET",)),  # a SIRET in the SIREN column
        ("404833047", None, ("SIREN_INVALID",)),  # wrong check digit (stdnum's example)
        ("732829321", None, ("SIREN_INVALID",)),
        ("73282932", None, ("SIREN_INVALID",)),  # 8 digits
        ("7328293200", None, ("SIREN_INVALID",)),
        ("73282932000079", None, ("SIREN_INVALID",)),  # an invalid SIRET is no SIREN either
        ("A32829320", None, ("SIREN_INVALID",)),
        ("７３２８２９３２０", None, ("SIREN_INVALID",)),  # full-width digits are not read
    ],
)
def test_normalize_siren(text: str, value: str | None, flags: tuple[str, ...]) -> None:
    result = normalize_siren(text)
    assert (result.original, result.value, result.flags) == (text, value, flags)
    assert (result.reason is None) == (value is not None)


@pytest.mark.parametrize(
    ("text", "value", "siren", "flags"),
    [
        ("73282932000074", "73282932000074", "732829320", ()),
        ("732 829 320 00074", "73282932000074", "732829320", ()),
        ("732.829.320.00074", "73282932000074", "732829320", ()),
        ("404 833 048 00006", "40483304800006", "404833048", ()),
        ("552 008 443 00004", "55200844300004", "552008443", ()),
        # La Poste's head office follows the Luhn rule
        ("356 000 000 00048", "35600000000048", "356000000", ()),
        # La Poste's establishments: the 14 digits add up to a multiple of 5 (not Luhn):
        # 3+5+6+0+...+1 = 15; these two fail the Luhn check yet are valid
        ("35600000000001", "35600000000001", "356000000", ()),
        ("356 000 000 00010", "35600000000010", "356000000", ()),
        ("35600000000002", None, None, ("SIRET_INVALID",)),  # digit sum 16
        ("73282932000079", None, None, ("SIRET_INVALID",)),  # stdnum's invalid example
        ("7328293200007", None, None, ("SIRET_INVALID",)),  # 13 digits
        ("732829320000741", None, None, ("SIRET_INVALID",)),
        ("732829320", None, None, ("SIRET_INVALID",)),  # a SIREN is not a SIRET
        ("7328293200007A", None, None, ("SIRET_INVALID",)),
        ("NC", None, None, ("SIRET_INVALID",)),
    ],
)
def test_normalize_siret(
    text: str, value: str | None, siren: str | None, flags: tuple[str, ...]
) -> None:
    result = normalize_siret(text)
    assert (result.original, result.value, result.siren, result.flags) == (
        text,
        value,
        siren,
        flags,
    )
    if value is not None:
        assert result.nic == value[9:]


def test_stdnum_implements_la_poste_rule() -> None:
    """La Poste establishments: the digit sum rule, as stdnum implements it (checked here in
    case a stdnum release changes it)."""
    luhn_invalid = "35600000000001"
    assert not luhn.is_valid(luhn_invalid)
    assert stdnum_siret.is_valid(luhn_invalid)
    assert sum(map(int, luhn_invalid)) % 5 == 0
    # the head office is the exception: Luhn, not the digit sum
    assert luhn.is_valid("35600000000048") and stdnum_siret.is_valid("35600000000048")
    reason = normalize_siret("35600000000002").reason
    assert reason is not None and "La Poste" in reason


@pytest.mark.parametrize(
    ("text", "value", "siren", "flags"),
    [
        ("FR40303265045", "FR40303265045", "303265045", ()),
        ("fr40303265045", "FR40303265045", "303265045", ()),
        ("FR 40 303265045", "FR40303265045", "303265045", ()),
        ("Fr 40 303 265 045", "FR40303265045", "303265045", ()),
        ("FR-40-303-265-045", "FR40303265045", "303265045", ()),
        ("40303265045", "FR40303265045", "303265045", ()),  # the default country
        ("FR 61 954 506 077", "FR61954506077", "954506077", ()),
        ("FR44732829320", "FR44732829320", "732829320", ()),  # key = (12 + 3 * (SIREN % 97)) % 97
        ("FR39356000000", "FR39356000000", "356000000", ()),  # La Poste
        ("FRK7399859412", "FRK7399859412", "399859412", ()),  # new-style key with a letter
        ("FR41303265045", None, None, ("VAT_INVALID",)),  # key does not match the SIREN
        ("FR84323140391", None, None, ("VAT_INVALID",)),  # stdnum's invalid example
        ("FR4030326504", None, None, ("VAT_INVALID",)),  # one digit short
        ("FR40303265046", None, None, ("VAT_INVALID",)),  # the SIREN's Luhn fails
        ("BE697449992", "BE0697449992", None, ()),  # stdnum adds Belgium's leading 0
        ("ATU 57194903", "ATU57194903", None, ()),
        ("DE 136,695 976", "DE136695976", None, ()),  # stdnum's German example
        ("DE136695976", "DE136695976", None, ()),
        ("GR094259216", "EL094259216", None, ()),  # Greece's VAT prefix is EL
        ("GB 980 7806 84", "GB980780684", None, ()),
        ("CHE-107.787.577 IVA", "CHE107787577IVA", None, ()),
        ("US123456789", None, None, ("VAT_INVALID",)),  # no VAT check for the US
        ("TVA intracom", None, None, ("VAT_INVALID",)),
    ],
)
def test_normalize_vat(
    text: str, value: str | None, siren: str | None, flags: tuple[str, ...]
) -> None:
    result = normalize_vat(text)
    assert (result.original, result.value, result.siren, result.flags) == (
        text,
        value,
        siren,
        flags,
    )


def test_vat_country_and_default() -> None:
    assert normalize_vat("FR40303265045").country == "FR"
    assert normalize_vat("0697449992", default_country="BE").value == "BE0697449992"
    reason = normalize_vat("FR41303265045").reason
    assert reason is not None and "SIREN" in reason


@pytest.mark.parametrize(
    ("text", "value", "section", "flags"),
    [
        ("4711F", "47.11F", "G", ()),
        ("47.11f", "47.11F", "G", ()),
        ("47 11 F", "47.11F", "G", ()),
        ("47.11 F", "47.11F", "G", ()),
        (" 47.11F ", "47.11F", "G", ()),
        ("6201Z", "62.01Z", "J", ()),
        ("01.11Z", "01.11Z", "A", ()),
        ("56.10A", "56.10A", "I", ()),
        ("8411Z", "84.11Z", "O", ()),
        ("9900Z", "99.00Z", "U", ()),
        ("52.4Z", None, None, ("NAF_INVALID",)),  # NAF rév. 1 (2003)
        ("524Z", None, None, ("NAF_INVALID",)),
        ("4711", None, None, ("NAF_INVALID",)),  # no sub-class letter
        ("47111F", None, None, ("NAF_INVALID",)),
        ("04.11Z", None, None, ("NAF_INVALID",)),  # division 04 does not exist
        ("40.11Z", None, None, ("NAF_INVALID",)),  # nor 40 (electricity is 35)
        ("47.12A", None, "G", ("NAF_INVALID",)),  # class 47.12 does not exist
        ("Commerce", None, None, ("NAF_INVALID",)),
    ],
)
def test_normalize_naf(
    text: str, value: str | None, section: str | None, flags: tuple[str, ...]
) -> None:
    result = normalize_naf(text)
    assert (result.original, result.value, result.section, result.flags) == (
        text,
        value,
        section,
        flags,
    )


def test_naf_divisions_cover_rev2() -> None:
    """88 divisions in NAF rév. 2 / NACE Rev. 2, sections A to U."""
    assert len(business.NAF_DIVISIONS) == 88
    assert sorted(business.NAF_SECTIONS) == [chr(c) for c in range(ord("A"), ord("U") + 1)]


@pytest.mark.parametrize("check", [normalize_siren, normalize_siret, normalize_vat, normalize_naf])
@pytest.mark.parametrize("text", [None, "", "  "])
def test_blank_is_absent_not_invalid(check: object, text: str | None) -> None:
    result = check(text)  # type: ignore[operator]
    assert (result.original, result.value, result.flags) == (text, None, ())


def test_flags_are_declared() -> None:
    codes = [f.code for f in business.FLAGS]
    assert len(codes) == len(set(codes))


def _with_luhn(body: str) -> str:
    return body + luhn.calc_check_digit(body)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[0-9]{8}", fullmatch=True))
def test_any_luhn_siren_is_valid_and_a_changed_digit_is_not(body: str) -> None:
    number = _with_luhn(body)
    assert normalize_siren(number).value == number
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert normalize_siren(wrong).value is None


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[0-9]{8}", fullmatch=True).filter(lambda s: not s.startswith("000")))
def test_vat_built_from_a_siren_is_valid(body: str) -> None:
    siren = _with_luhn(body)
    key = (12 + 3 * (int(siren) % 97)) % 97
    result = normalize_vat(f"FR {key:02d} {siren}")
    assert (result.value, result.siren) == (f"FR{key:02d}{siren}", siren)


def test_monaco_vat_has_no_siren() -> None:
    """Monaco's companies have French VAT numbers whose "SIREN" part starts with 000."""
    result = normalize_vat("FR12000000000")
    assert (result.value, result.siren) == ("FR12000000000", None)


_ANY = st.one_of(st.text(), st.from_regex(r"[0-9 .]{9,20}", fullmatch=True))


@settings(max_examples=200, deadline=None)
@given(_ANY)
def test_never_raises_keeps_the_original_and_is_idempotent(text: str) -> None:
    for check in (normalize_siren, normalize_siret, normalize_vat, normalize_naf):
        result = check(text)
        assert result.original == text
        if result.value is not None:
            again = check(result.value)
            assert again.value == result.value
            assert not set(again.flags) & FIXED
