"""One customer record through every normalizer: slots, originals, flags, score, properties."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality.base import Severity
from tournesol.quality.flags import all_flags, severity
from tournesol.quality.record import (
    ADDRESS_INPUTS,
    QUALITY_VERSION,
    SCORE_WEIGHTS,
    normalize_customer,
)

TODAY = date(2026, 11, 23)


def norm(**values: Any) -> Any:
    return normalize_customer(values, today=TODAY)


@pytest.mark.parametrize(
    ("given_", "mobile", "fixed", "other", "flags"),
    [
        # a mobile in the landline column moves to the free mobile slot
        ({"phone_fixed": "06 12 34 56 78"}, "+33612345678", None, None, {"PHONE_MOVED_TO_MOBILE"}),
        # a landline in the mobile column moves to the free landline slot
        ({"phone_mobile": "01 42 68 53 00"}, None, "+33142685300", None, {"PHONE_MOVED_TO_FIXED"}),
        # both columns swapped: each number goes to its slot
        (
            {"phone_mobile": "01 42 68 53 00", "phone_fixed": "0612345678"},
            "+33612345678",
            "+33142685300",
            None,
            {"PHONE_MOVED_TO_MOBILE", "PHONE_MOVED_TO_FIXED"},
        ),
        # a generic column is filed by its line type, without a flag
        ({"phone": "+33 (0)6 12 34 56 78"}, "+33612345678", None, None, set()),
        ({"phone": "04 72 10 30 30"}, None, "+33472103030", None, set()),
        # two mobiles: the mobile column keeps its own, the other is kept aside
        (
            {"phone_mobile": "0612345678", "phone": "0798765432"},
            "+33612345678",
            None,
            "+33798765432",
            set(),
        ),
        # an invalid number stays in its column, flagged, out of the golden record
        ({"phone_mobile": "06 12"}, None, None, None, {"PHONE_INVALID"}),
        # overseas: a Réunion mobile written with +33
        (
            {"phone_mobile": "+33 6 92 12 34 56"},
            "+262692123456",
            None,
            None,
            {"PHONE_DOM_CODE_FIXED"},
        ),
    ],
)
def test_phones_are_filed_by_line_type(
    given_: dict[str, str],
    mobile: str | None,
    fixed: str | None,
    other: str | None,
    flags: set[str],
) -> None:
    q = norm(**given_)
    assert q.values.get("phone_mobile") == mobile
    assert q.values.get("phone_fixed") == fixed
    assert q.values.get("phone_other") == other
    assert set(q.flags) == flags


def test_originals_are_kept_only_for_changed_values() -> None:
    q = norm(email="jean@gmail.com", last_name="Dupont", first_name="JEAN")
    assert q.fields["email"].original is None  # unchanged
    assert q.fields["last_name"].original is None
    assert q.fields["first_name"].original == "JEAN"
    assert q.values["first_name"] == "Jean"
    assert q.to_json()["fields"]["first_name"] == {
        "valid": True,
        "flags": ["NAME_CASE_FIXED"],
        "original": "JEAN",
    }


def test_an_invalid_value_is_left_out_of_the_golden_fields_but_noted() -> None:
    q = norm(email="jean.dupont@", last_name="Dupont")
    assert q.values["email"] is None and "email_key" not in q.values
    assert q.fields["email"].valid is False
    assert q.fields["email"].original == "jean.dupont@"
    assert q.flags == ["EMAIL_INVALID"]


def test_birth_dates_use_the_mapping_formats_then_known_forms() -> None:
    us = normalize_customer(
        {"birth_date": "05/03/1971"}, date_formats={"birth_date": ("%m/%d/%Y",)}, today=TODAY
    )
    assert us.values["birth_date"] == date(1971, 5, 3)
    swapped = norm(birth_date="05/13/1980")
    assert swapped.values["birth_date"] == date(1980, 5, 13)
    assert swapped.flags == ["DATE_DAY_MONTH_SWAPPED"]
    placeholder = norm(birth_date="01/01/1900")
    assert placeholder.values["birth_date"] is None and not placeholder.unreadable
    assert placeholder.fields["birth_date"].valid is False
    impossible = norm(birth_date="31/02/1980")
    assert impossible.unreadable["birth_date"].startswith("'31/02/1980' is not a real date")


def test_business_identifiers_and_their_consistency() -> None:
    q = norm(org_siret="356 000 000 00048", org_siren="552 100 554", org_naf_code="4711f")
    assert q.values["org_siret"] == "35600000000048"
    assert q.values["org_naf_code"] == "47.11F"
    assert "SIRET_SIREN_MISMATCH" in q.fields["org_siret"].flags
    bad = norm(org_siret="35600000000049")
    assert bad.values["org_siret"] is None and bad.flags == ["SIRET_INVALID"]


def test_civility_decides_gender_and_a_conflict_is_flagged() -> None:
    q = norm(civility="MADAME", gender="M", last_name="Martin")
    assert q.values["civility"] == "Mme" and q.values["gender"] == "F"
    assert q.fields["gender"].flags == ("GENDER_CIVILITY_CONFLICT",)
    assert q.values["address_line1"] == "Mme MARTIN"


def test_the_score_adds_the_weights_of_valid_elements() -> None:
    assert sum(SCORE_WEIGHTS.values()) == 100
    full = norm(
        civility="M",
        first_name="Jean",
        last_name="Dupont",
        birth_date="12/05/1975",
        email="jean.dupont@orange.fr",
        phone_mobile="0612345678",
        phone_fixed="0142685300",
        address_street="8 rue de la Paix",
        postal_code="75002",
        city="Paris",
    )
    assert (full.score, full.completeness, full.validity) == (100, 1.0, 1.0)
    assert full.values["quality_score"] == 100
    # a role address counts half (warning); an invalid phone counts nothing
    partial = norm(last_name="Dupont", email="contact@dupont.fr", phone_mobile="06 12")
    assert partial.score == 15 + 10
    assert partial.completeness == 0.5 and partial.validity == 0.7
    assert norm().score == 0 and norm().to_json()["version"] == QUALITY_VERSION


def test_every_flag_has_a_known_severity_and_family() -> None:
    flags = all_flags()
    assert len(flags) > 60
    for code, flag in flags.items():
        assert code == flag.code and code.isupper() and flag.description.endswith(".")
        assert severity(code) is flag.severity
    assert severity("NOT_A_FLAG") is Severity.WARNING


TEXT = st.text(max_size=60) | st.sampled_from(["", " ", "06 12 34 56 78", "75011", "Paris", "x@y"])
FIELDS = [
    "civility",
    "first_name",
    "last_name",
    "maiden_name",
    "birth_date",
    "email",
    "phone",
    "phone_mobile",
    "phone_fixed",
    "org_siret",
    "org_naf_code",
    *ADDRESS_INPUTS,
]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), TEXT, max_size=8))
def test_any_record_normalizes_without_raising_and_keeps_what_it_changed(
    values: dict[str, str],
) -> None:
    q = normalize_customer(values, today=TODAY)
    assert 0 <= q.score <= 100
    for name, checked in q.fields.items():
        if checked.original is not None:
            assert checked.original in values.values() or name == "address"
    assert q.flags == sorted(set(q.flags))
