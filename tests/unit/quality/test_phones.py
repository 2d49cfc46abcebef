"""Phone numbers: French writing habits, overseas departments, line types, E.164."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality import phones
from tournesol.quality.base import Severity
from tournesol.quality.phones import normalize_phone

FIXED = {f.code for f in phones.FLAGS if f.severity is Severity.FIXED}
CODES = {f.code for f in phones.FLAGS}
MOBILE_FR = "+33612345678"


@pytest.mark.parametrize(
    ("text", "value", "line_type", "region", "flags"),
    [
        # every French way of writing one mobile number
        ("0612345678", MOBILE_FR, "mobile", "FR", ()),
        ("06 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("06.12.34.56.78", MOBILE_FR, "mobile", "FR", ()),
        ("06-12-34-56-78", MOBILE_FR, "mobile", "FR", ()),
        ("06/12/34/56/78", MOBILE_FR, "mobile", "FR", ()),
        (" 06 12\u00a034 56 78 ", MOBILE_FR, "mobile", "FR", ()),
        ("+33 6 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("+33612345678", MOBILE_FR, "mobile", "FR", ()),
        ("0033 6 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("00336 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("+33 (0)6 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("0033 (0)6 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("(0)6 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("+33 06 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("33 6 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("Tél : 06 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("Portable. 06 12 34 56 78", MOBILE_FR, "mobile", "FR", ()),
        ("tel:+33612345678", MOBILE_FR, "mobile", "FR", ()),
        # a number that lost its leading zero (Excel): restored
        ("612345678", MOBILE_FR, "mobile", "FR", ("PHONE_ZERO_RESTORED",)),
        ("145678912", "+33145678912", "fixed", "FR", ("PHONE_ZERO_RESTORED",)),
        # line types from the French plan (ARCEP): 01-05 fixed, 06-07 mobile, 09 VoIP, 08 special
        ("01 45 67 89 12", "+33145678912", "fixed", "FR", ()),
        ("04 72 12 34 56", "+33472123456", "fixed", "FR", ()),
        ("07 40 12 34 56", "+33740123456", "mobile", "FR", ()),
        ("09 51 23 45 67", "+33951234567", "voip", "FR", ()),
        ("0800 12 34 56", "+33800123456", "toll_free", "FR", ()),
        ("0810 12 34 56", "+33810123456", "shared_cost", "FR", ()),
        ("0891 12 34 56", "+33891123456", "premium", "FR", ("PHONE_PREMIUM",)),
        ("0899 12 34 56", "+33899123456", "premium", "FR", ("PHONE_PREMIUM",)),
        # overseas departments: national numbers resolved to their own country codes
        ("0590 20 12 34", "+590590201234", "fixed", "GP", ()),
        ("0690 00 12 34", "+590690001234", "mobile", "GP", ()),
        ("0590 27 12 34", "+590590271234", "fixed", "BL", ()),
        ("0596 30 12 34", "+596596301234", "fixed", "MQ", ()),
        ("0696 20 12 34", "+596696201234", "mobile", "MQ", ()),
        ("0594 10 12 34", "+594594101234", "fixed", "GF", ()),
        ("0694 20 12 34", "+594694201234", "mobile", "GF", ()),
        ("0262 16 12 34", "+262262161234", "fixed", "RE", ()),
        ("0692 12 34 56", "+262692123456", "mobile", "RE", ()),
        ("0693 00 12 34", "+262693001234", "mobile", "RE", ()),
        ("0269 60 12 34", "+262269601234", "fixed", "YT", ()),
        ("0639 01 23 45", "+262639012345", "mobile", "YT", ()),
        ("+590 690 00 12 34", "+590690001234", "mobile", "GP", ()),
        ("00590 690 00 12 34", "+590690001234", "mobile", "GP", ()),
        ("590 690 00 12 34", "+590690001234", "mobile", "GP", ()),
        ("+262 (0)692 12 34 56", "+262692123456", "mobile", "RE", ()),
        # ... also when written with +33, which people do
        ("+33 690 00 12 34", "+590690001234", "mobile", "GP", ("PHONE_DOM_CODE_FIXED",)),
        ("0033 590 20 12 34", "+590590201234", "fixed", "GP", ("PHONE_DOM_CODE_FIXED",)),
        ("+33 (0)6 92 12 34 56", "+262692123456", "mobile", "RE", ("PHONE_DOM_CODE_FIXED",)),
        ("+33 6 39 01 23 45", "+262639012345", "mobile", "YT", ("PHONE_DOM_CODE_FIXED",)),
        ("+33 596 30 12 34", "+596596301234", "fixed", "MQ", ("PHONE_DOM_CODE_FIXED",)),
        # foreign numbers
        ("+44 20 7946 0958", "+442079460958", "fixed", "GB", ("PHONE_FOREIGN",)),
        ("0044 20 7946 0958", "+442079460958", "fixed", "GB", ("PHONE_FOREIGN",)),
        ("+32 2 555 12 12", "+3225551212", "fixed", "BE", ("PHONE_FOREIGN",)),
        ("+41 44 668 18 00", "+41446681800", "fixed", "CH", ("PHONE_FOREIGN",)),
        ("+49 30 123456", "+4930123456", "fixed", "DE", ("PHONE_FOREIGN",)),
        # NANP numbers are FIXED_LINE_OR_MOBILE in phonenumbers: no prefix tells them apart
        ("+1 650 253 0000", "+16502530000", "unknown", "US", ("PHONE_FOREIGN",)),
        # extensions are cut off and kept aside
        ("01 45 67 89 12 poste 12", "+33145678912", "fixed", "FR", ("PHONE_EXTENSION_DROPPED",)),
        ("01 45 67 89 12 ext. 345", "+33145678912", "fixed", "FR", ("PHONE_EXTENSION_DROPPED",)),
        ("01.45.67.89.12 p.12", "+33145678912", "fixed", "FR", ("PHONE_EXTENSION_DROPPED",)),
        ("0145678912x12", "+33145678912", "fixed", "FR", ("PHONE_EXTENSION_DROPPED",)),
        # invalid: value None, never dropped silently
        ("12345", None, None, None, ("PHONE_INVALID",)),
        ("06 12 34 56", None, None, None, ("PHONE_INVALID",)),
        ("01234567890", None, None, None, ("PHONE_INVALID",)),
        ("0000000000", None, None, None, ("PHONE_INVALID",)),
        ("NC", None, None, None, ("PHONE_INVALID",)),
        ("06 12 34 56 78 / 06 98 76 54 32", None, None, None, ("PHONE_INVALID",)),
        ("06 CALL ME", None, None, None, ("PHONE_INVALID",)),
        ("06+12345678", None, None, None, ("PHONE_INVALID",)),
        ("+33 7 00 00 00 01", None, None, None, ("PHONE_INVALID",)),  # 070 is not a French range
        ("0691 99 99 99", None, None, None, ("PHONE_INVALID",)),  # GP mobile 0691 2x-3x only
        ("+44 20 7946", None, None, None, ("PHONE_INVALID",)),
        ("+999 123 456 789", None, None, None, ("PHONE_INVALID",)),
        # dummy numbers
        ("0600000000", None, None, None, ("PHONE_PLACEHOLDER",)),
        ("06 11 11 11 11", None, None, None, ("PHONE_PLACEHOLDER",)),
        ("01 23 45 67 89", None, None, None, ("PHONE_PLACEHOLDER",)),
    ],
)
def test_normalize_phone(
    text: str,
    value: str | None,
    line_type: str | None,
    region: str | None,
    flags: tuple[str, ...],
) -> None:
    result = normalize_phone(text)
    assert result.original == text
    assert (result.value, result.line_type, result.region) == (value, line_type, region)
    assert result.flags == tuple(sorted(flags))
    if value is None:
        assert result.reason


@pytest.mark.parametrize("text", [None, "", "   ", "\t"])
def test_blank_is_absent_not_invalid(text: str | None) -> None:
    result = normalize_phone(text)
    assert (result.original, result.value, result.flags) == (text, None, ())


def test_extension_is_kept_aside() -> None:
    assert normalize_phone("01 45 67 89 12 poste 12").extension == "12"


def test_other_default_region() -> None:
    belgian = normalize_phone("02 555 12 12", default_region="BE")
    assert (belgian.value, belgian.region, belgian.flags) == ("+3225551212", "BE", ())
    french = normalize_phone("+33 6 12 34 56 78", default_region="BE")
    assert french.flags == ("PHONE_FOREIGN",)
    # the overseas departments read national numbers the French way
    assert normalize_phone("0612345678", default_region="GP").value == MOBILE_FR


def test_phonenumbers_alone_misreads_overseas_numbers() -> None:
    """Why the overseas prefixes are resolved before parsing: phonenumbers reads a national
    0690... in region FR as an invalid +33 number, and 0269... as a valid French one."""
    gp = phonenumbers.parse("0690001234", "FR")
    assert not phonenumbers.is_valid_number(gp)
    yt = phonenumbers.parse("0269601234", "FR")
    assert phonenumbers.region_code_for_number(yt) == "FR"
    assert normalize_phone("0269601234").region == "YT"


def test_phonenumbers_reads_letters_as_keypad_digits() -> None:
    """Why an extension is cut off before parsing: phonenumbers turns "poste" into 76783."""
    read = phonenumbers.parse("06 12 34 56 78 poste 12", "FR")
    assert not phonenumbers.is_valid_number(read)
    assert normalize_phone("06 12 34 56 78 poste 12").value == MOBILE_FR


def test_flags_are_declared() -> None:
    codes = [f.code for f in phones.FLAGS]
    assert len(codes) == len(set(codes)) and all(f.field == "phone" for f in phones.FLAGS)


_FRENCH_CODES = st.sampled_from([33, 590, 594, 596, 262])
_NATIONAL = st.from_regex(r"[1-9][0-9]{8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(
    _FRENCH_CODES,
    st.one_of(
        _NATIONAL,
        st.sampled_from(sorted(phones.DOM_PREFIXES)).flatmap(
            lambda p: st.from_regex(rf"{p}[0-9]{{{9 - len(p)}}}", fullmatch=True)
        ),
    ),
)
def test_fast_check_agrees_with_phonenumbers(code: int, national: str) -> None:
    """The precompiled French-plan check gives phonenumbers' region, validity and type."""
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    expected_region = phonenumbers.region_code_for_number(number)
    valid = phonenumbers.is_valid_number(number)
    found = phones._region_and_type(code, national)
    if not valid:
        assert found is None
    else:
        assert found == (expected_region, phonenumbers.number_type(number))


_PHONE_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="0123456789 +.-()/", max_size=25),
    st.from_regex(r"0[1-79]( ?[0-9]{2}){4}", fullmatch=True),
    st.from_regex(r"(\+|00)33 ?[1-79]( ?[0-9]{2}){4}", fullmatch=True),
)


@settings(max_examples=200, deadline=None)
@given(_PHONE_TEXT)
def test_never_raises_keeps_the_original_and_is_idempotent(text: str) -> None:
    result = normalize_phone(text)
    assert result.original == text
    assert set(result.flags) <= CODES
    if result.value is not None:
        assert result.value.startswith("+") and result.value[1:].isdigit()
        again = normalize_phone(result.value)
        assert (again.value, again.line_type, again.region) == (
            result.value,
            result.line_type,
            result.region,
        )
        assert not set(again.flags) & FIXED


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"0[67][0-9]{8}", fullmatch=True))
def test_every_written_form_of_a_mobile_gives_one_value(digits: str) -> None:
    pairs = " ".join(digits[i : i + 2] for i in range(0, 10, 2))
    forms = [digits, pairs, pairs.replace(" ", "."), f"+33 {digits[1:]}", f"0033{digits[1:]}"]
    values = {normalize_phone(form).value for form in forms}
    assert len(values) == 1


def test_long_and_odd_inputs() -> None:
    for text in ("0" * 10_000, "6" * 10_000, "+" * 500, "😀" * 100, "\x00\x01", "()", "+"):
        result = normalize_phone(text)
        assert result.value is None and result.flags
