"""Profiles taken from normalized records, and the guard that says two profiles are two persons:
names, birth dates, conflicts, shared identifiers and the deterministic rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.identity.features import (
    PROFILE_COLUMNS,
    STRONG_IDENTIFIERS,
    Verdict,
    birth_dates_compatible,
    conflict,
    deterministic,
    groups_conflict,
    names_compatible,
    profile,
    shared_strong,
)

DIANE: dict[str, Any] = {
    "address_line1": "Mme Diane BODIN",
    "address_line6": "37100 TOURS",
    "address_street": "28 RUE DU LAVOIR",
    "birth_date": "1985-10-07",
    "city": "Tours",
    "civility": "Mme",
    "country": "FR",
    "email": "diane_bodin@hotmail.com",
    "email_key": "diane_bodin@hotmail.com",
    "first_name": "Diane",
    "first_name_key": "DIANE",
    "gender": "F",
    "identifiers": {
        "email": "diane_bodin@hotmail.com",
        "loyalty_card": "2990105257431",
        "phone_fixed": "+33270908144",
        "phone_mobile": "+33669072807",
    },
    "insee_code": "37261",
    "last_name": "Bodin",
    "last_name_key": "BODIN",
    "loyalty_card": "2990105257431",
    "phone_fixed": "+33270908144",
    "phone_mobile": "+33669072807",
    "postal_code": "37100",
    "quality": {"fields": {}, "score": 100, "version": 1},
}
CLAUDE_B2B: dict[str, Any] = {
    "first_name": "Claude",
    "first_name_key": "CLAUDE",
    "last_name": "Couturier",
    "last_name_key": "COUTURIER",
    "email": "claude.couturier@latelierdeelisabeth.fr",
    "email_key": "claude.couturier@latelierdeelisabeth.fr",
    "phone_mobile": "+33642788173",
    "org_siret": "30017521300028",
    "org_name": "L'Atelier de Élisabeth SARL",
    "identifiers": {
        "email": "claude.couturier@latelierdeelisabeth.fr",
        "phone_mobile": "+33642788173",
    },
}


def person(**fields: Any) -> dict[str, str | None]:
    """A profile with every column None but those given."""
    unknown = set(fields) - set(PROFILE_COLUMNS)
    assert not unknown, unknown
    return {column: fields.get(column) for column in PROFILE_COLUMNS}


# --- profile -------------------------------------------------------------------------------


def test_profile_of_a_consumer_record() -> None:
    assert profile(DIANE) == {
        "first_name": "DIANE",
        "first_name_canon": "DIANE",
        "last_name": "BODIN",
        "maiden_name": None,
        "gender": "F",
        "birth_date": "1985-10-07",
        "email": "diane_bodin@hotmail.com",
        "phone_mobile": "+33669072807",
        "phone_fixed": "+33270908144",
        "postal_code": "37100",
        "city": "TOURS",
        "street": "28 RUE DU LAVOIR",
        "loyalty_card": "2990105257431",
        "account_id": None,
        "siret": None,
        "work_email": None,
        "work_phone": None,
    }


def test_profile_has_exactly_the_profile_columns() -> None:
    assert tuple(profile(DIANE)) == PROFILE_COLUMNS
    assert tuple(profile({})) == PROFILE_COLUMNS
    assert set(profile({}).values()) == {None}


def test_profile_of_a_b2b_record_keeps_email_and_phone_as_work_ones() -> None:
    p = profile(CLAUDE_B2B)
    assert p["siret"] == "30017521300028"
    assert p["work_email"] == "claude.couturier@latelierdeelisabeth.fr"
    assert p["work_phone"] == "+33642788173"
    assert (p["email"], p["phone_mobile"], p["phone_fixed"]) == (None, None, None)
    assert (p["first_name"], p["last_name"]) == ("CLAUDE", "COUTURIER")


@pytest.mark.parametrize(
    "org",
    [{"org_siret": "30017521300028"}, {"org_name": "Boulangerie Paul"}, {"org_siren": "300175213"}],
)
def test_any_organisation_field_makes_a_record_b2b(org: dict[str, str]) -> None:
    record = {"email_key": "a@b.fr", "phone_fixed": "+33140000000", **org}
    p = profile(record)
    assert (p["email"], p["phone_fixed"], p["work_email"], p["work_phone"]) == (
        None,
        None,
        "a@b.fr",
        "+33140000000",
    )


def test_profile_b2b_work_phone_prefers_the_mobile() -> None:
    p = profile({"org_name": "X", "phone_mobile": "+33611111111", "phone_fixed": "+33140000000"})
    assert p["work_phone"] == "+33611111111"


def test_profile_computes_keys_when_the_record_has_none() -> None:
    p = profile(
        {
            "first_name": "Cathy",
            "last_name": "Le Gall-Hervé",
            "maiden_name": "d'Estaing",
            "city": "Saint-Étienne",
            "address_street": "3 bis, rue de l'Église",
        }
    )
    assert p["first_name"] == "CATHY"
    assert p["first_name_canon"] == "CATHERINE"
    assert p["last_name"] == "LE GALL HERVE"
    assert p["maiden_name"] == "D ESTAING"
    assert p["city"] == "SAINT ETIENNE"
    assert p["street"] == "3 BIS RUE DE L EGLISE"


def test_profile_prefers_the_stored_keys() -> None:
    p = profile({"first_name": "Jean", "first_name_key": "JEAN PIERRE", "last_name_key": "X"})
    assert (p["first_name"], p["last_name"]) == ("JEAN PIERRE", "X")


@pytest.mark.parametrize(
    ("gender", "expected"), [("M", "M"), ("F", "F"), ("X", None), ("", None), (None, None)]
)
def test_profile_keeps_only_known_genders(gender: str | None, expected: str | None) -> None:
    assert profile({"gender": gender})["gender"] == expected


def test_profile_identifiers_fall_back_on_each_other() -> None:
    from_ids = profile(
        {"identifiers": {"email": "x@y.fr", "loyalty_card": "123", "account_id": "A-9"}}
    )
    assert (from_ids["email"], from_ids["loyalty_card"], from_ids["account_id"]) == (
        "x@y.fr",
        "123",
        "A-9",
    )
    from_fields = profile({"loyalty_card": 456, "account_id": "B-1", "email_key": "k@y.fr"})
    assert (from_fields["email"], from_fields["loyalty_card"], from_fields["account_id"]) == (
        "k@y.fr",
        "456",
        "B-1",
    )


def test_profile_blank_text_is_none_and_siret_is_cut_to_14() -> None:
    p = profile({"birth_date": "  ", "postal_code": " 37100 ", "org_siret": "30017521300028 9"})
    assert p["birth_date"] is None
    assert p["postal_code"] == "37100"
    assert p["siret"] == "30017521300028"


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (("DIANE", "BODIN"), ("DIANE", "BODIN"), True),
        (("CATHY", "BODIN"), ("CATHERINE", "BODIN"), True),  # nickname
        (("DIANE", "BODIN"), ("DIANA", "BODIN"), True),  # typo
        (("JEAN", "DUPONT"), ("JEAN PIERRE", "DUPONT"), True),  # compound name
        (("PIERRE", "DUPONT"), ("JEAN PIERRE", "DUPONT"), True),
        (("DIANE", "DUPONT"), ("DIANE", "DUPOND"), True),  # typo in the last name
        ((None, "BODIN"), ("DIANE", "BODIN"), True),  # unknown first name
        (("DIANE", None), ("DIANE", "BODIN"), True),  # unknown last name
        (("PAUL", "DUPONT"), ("THOMAS", "DUPONT"), False),
        (("DIANE", "BODIN"), ("DIANE", "MARTIN"), False),
        (("JEAN PIERRE", "DUPONT"), ("JEAN PAUL", "DUPONT"), False),
    ],
)
def test_names_compatible(
    a: tuple[str | None, str | None], b: tuple[str | None, str | None], expected: bool
) -> None:
    left = person(first_name=a[0], last_name=a[1])
    right = person(first_name=b[0], last_name=b[1])
    assert names_compatible(left, right) is expected
    assert names_compatible(right, left) is expected


def test_names_compatible_through_a_maiden_name() -> None:
    married = person(first_name="DIANE", last_name="MARTIN", maiden_name="BODIN")
    single = person(first_name="DIANE", last_name="BODIN")
    assert names_compatible(married, single)
    assert names_compatible(single, married)
    assert not names_compatible(person(first_name="DIANE", last_name="MARTIN"), single)


# --- birth dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ("1985-10-07", "1985-10-07", True),  # equal
        ("1985-10-07", "1985-07-10", True),  # day and month swapped
        ("1985-10-07", "1985-10-01", True),  # one keystroke
        ("1985-10-07", "1958-10-07", True),  # two digits transposed
        ("1985-10-07", "1985-10-17", True),
        ("1985-10-07", None, True),  # unknown
        (None, None, True),
        ("", "1985-10-07", True),
        ("1985-10-07", "1990-03-22", False),  # a real difference
        ("1985-10-07", "1985-11-17", False),  # two keystrokes
        ("1985-10-07", "1986-07-10", False),  # swapped, but another year
        ("1960-05-01", "1988-09-12", False),  # a mother and her daughter
    ],
)
def test_birth_dates_compatible(x: str | None, y: str | None, expected: bool) -> None:
    assert birth_dates_compatible(x, y) is expected
    assert birth_dates_compatible(y, x) is expected


# --- conflict ------------------------------------------------------------------------------

ADDRESS = {"street": "28 RUE DU LAVOIR", "postal_code": "37100", "city": "TOURS"}


def test_no_conflict_between_a_record_and_itself() -> None:
    p = profile(DIANE)
    assert conflict(p, p) == Verdict(False, "compatible")


def test_twins_conflict_on_first_names() -> None:
    paul = person(first_name="PAUL", last_name="DUPONT", birth_date="2001-04-12", **ADDRESS)
    thomas = person(first_name="THOMAS", last_name="DUPONT", birth_date="2001-04-12", **ADDRESS)
    verdict = conflict(paul, thomas)
    assert verdict.conflict
    assert verdict.reason == "first names differ (PAUL / THOMAS)"


def test_couple_sharing_an_email_conflicts() -> None:
    email = "famille.dupont@orange.fr"
    him = person(first_name="MARC", last_name="DUPONT", gender="M", email=email, **ADDRESS)
    her = person(first_name="SOPHIE", last_name="DUPONT", gender="F", email=email, **ADDRESS)
    assert conflict(him, her).conflict
    assert conflict(her, him).conflict


def test_homonyms_conflict_on_birth_dates() -> None:
    a = person(first_name="MARIE", last_name="DURAND", birth_date="1960-05-01")
    b = person(first_name="MARIE", last_name="DURAND", birth_date="1988-09-12")
    assert conflict(a, b) == Verdict(True, "birth dates differ (1960-05-01 / 1988-09-12)")


def test_parent_and_child_with_two_mobiles_at_one_address_conflict() -> None:
    father = person(first_name="JEAN", last_name="MARTIN", phone_mobile="+33611111111", **ADDRESS)
    son = person(first_name="JEAN", last_name="MARTIN", phone_mobile="+33622222222", **ADDRESS)
    assert conflict(father, son) == Verdict(
        True, "two mobile numbers at one address (a parent and child)"
    )


@pytest.mark.parametrize(
    "other",
    [
        {"phone_mobile": "+33611111111", **ADDRESS},  # the same mobile
        {"phone_mobile": None, **ADDRESS},  # one mobile only
        {**ADDRESS, "phone_mobile": "+33622222222", "street": "1 RUE HAUTE"},  # elsewhere
        {**ADDRESS, "phone_mobile": "+33622222222", "postal_code": "75011"},
        {**ADDRESS, "phone_mobile": "+33622222222", "street": None},  # street unknown
    ],
)
def test_two_mobiles_conflict_only_at_one_known_address(other: dict[str, str | None]) -> None:
    a = person(first_name="JEAN", last_name="MARTIN", phone_mobile="+33611111111", **ADDRESS)
    b = person(first_name="JEAN", last_name="MARTIN", **other)
    assert not conflict(a, b).conflict


def test_a_nickname_is_not_a_conflict() -> None:
    cathy = person(first_name="CATHY", last_name="BODIN", gender="F", birth_date="1970-02-03")
    catherine = person(
        first_name="CATHERINE", last_name="BODIN", gender="F", birth_date="1970-02-03"
    )
    assert conflict(cathy, catherine) == Verdict(False, "compatible")


def test_genders_differ_with_different_first_names() -> None:
    # JEAN and JEANNE are close enough to be one name mistyped: the genders tell them apart.
    jean = person(first_name="JEAN", last_name="MARTIN", gender="M")
    jeanne = person(first_name="JEANNE", last_name="MARTIN", gender="F")
    assert conflict(jean, jeanne) == Verdict(True, "genders differ")
    # Without genders, nothing says they are two persons.
    assert not conflict({**jean, "gender": None}, jeanne).conflict


def test_genders_differ_with_the_same_first_name_is_a_data_error() -> None:
    a = person(first_name="DOMINIQUE", last_name="MARTIN", gender="M")
    b = person(first_name="DOMINIQUE", last_name="MARTIN", gender="F")
    assert not conflict(a, b).conflict


def test_first_names_are_checked_before_birth_dates() -> None:
    a = person(first_name="PAUL", birth_date="1960-01-01")
    b = person(first_name="THOMAS", birth_date="1990-01-01")
    assert conflict(a, b).reason.startswith("first names differ")


NAMES = st.sampled_from(
    [None, "JEAN", "JEANNE", "JEAN PIERRE", "CATHY", "CATHERINE", "PAUL", "MARIE", "MARIE CLAIRE"]
)
DATES = st.sampled_from([None, "1985-10-07", "1985-07-10", "1985-10-01", "1990-03-22"])
PROFILES = st.builds(
    lambda first, date, gender, mobile, street: person(
        first_name=first,
        birth_date=date,
        gender=gender,
        phone_mobile=mobile,
        street=street,
        postal_code="37100" if street else None,
    ),
    NAMES,
    DATES,
    st.sampled_from([None, "M", "F"]),
    st.sampled_from([None, "+33611111111", "+33622222222"]),
    st.sampled_from([None, "1 RUE HAUTE"]),
)


@given(PROFILES, PROFILES)
def test_conflict_is_symmetric(a: dict[str, str | None], b: dict[str, str | None]) -> None:
    assert conflict(a, b).conflict == conflict(b, a).conflict


@given(PROFILES)
def test_a_profile_never_conflicts_with_itself(a: dict[str, str | None]) -> None:
    assert not conflict(a, a).conflict


# --- shared identifiers --------------------------------------------------------------------


def test_shared_strong_identifiers() -> None:
    a = person(email="x@y.fr", phone_mobile="+33611111111", loyalty_card="1", account_id="A")
    assert shared_strong(a, dict(a)) == list(STRONG_IDENTIFIERS)
    b = person(email="x@y.fr", phone_mobile="+33622222222", loyalty_card="2", account_id="A")
    assert shared_strong(a, b) == ["email", "account_id"]


def test_a_fixed_phone_is_not_strong() -> None:
    a = person(phone_fixed="+33140000000")
    assert shared_strong(a, dict(a)) == []
    assert shared_strong(person(), person()) == []


@pytest.mark.parametrize(
    ("b2b", "other", "expected"),
    [
        ({"work_email": "c@firm.fr"}, {"email": "c@firm.fr"}, ["work_email"]),
        ({"work_email": "c@firm.fr"}, {"work_email": "c@firm.fr"}, ["work_email"]),
        ({"work_email": "c@firm.fr"}, {"email": "d@firm.fr"}, []),
        ({"work_phone": "+33611111111"}, {"phone_mobile": "+33611111111"}, ["work_phone"]),
        ({"work_phone": "+33140000000"}, {"phone_fixed": "+33140000000"}, ["work_phone"]),
        ({"work_phone": "+33140000000"}, {"work_phone": "+33140000000"}, ["work_phone"]),
    ],
)
def test_shared_work_identifiers(
    b2b: dict[str, str], other: dict[str, str], expected: list[str]
) -> None:
    a, b = person(**b2b), person(**other)
    assert shared_strong(a, b) == expected
    assert shared_strong(b, a) == expected


def test_a_shared_siret_counts_only_when_names_agree() -> None:
    a = person(first_name="CLAUDE", last_name="COUTURIER", siret="30017521300028")
    same = person(first_name="CLAUDE", last_name="COUTURIER", siret="30017521300028")
    colleague = person(first_name="ELISABETH", last_name="ROUX", siret="30017521300028")
    assert shared_strong(a, same) == ["siret"]
    assert shared_strong(a, colleague) == []


# --- deterministic rule --------------------------------------------------------------------


def test_shared_email_and_compatible_names_link() -> None:
    a = profile(DIANE)
    b = person(
        first_name="DIANE", last_name="BODIN", email="diane_bodin@hotmail.com", postal_code="37000"
    )
    assert deterministic(a, b) == "same email, last name, first name agree"


def test_shared_email_nickname_and_birth_date_link() -> None:
    a = person(first_name="CATHY", last_name="BODIN", birth_date="1970-02-03", email="c@b.fr")
    b = person(first_name="CATHERINE", last_name="BODIN", birth_date="1970-02-03", email="c@b.fr")
    assert deterministic(a, b) == "same email, last name, first name, birth date agree"


def test_shared_email_between_a_couple_does_not_link() -> None:
    email = "famille.dupont@orange.fr"
    him = person(first_name="MARC", last_name="DUPONT", gender="M", email=email)
    her = person(first_name="SOPHIE", last_name="DUPONT", gender="F", email=email)
    assert deterministic(him, her) is None


def test_work_email_equal_to_the_other_personal_email_links() -> None:
    work = profile(CLAUDE_B2B)
    own = person(
        first_name="CLAUDE",
        last_name="COUTURIER",
        email="claude.couturier@latelierdeelisabeth.fr",
        phone_mobile="+33699999999",
    )
    assert deterministic(work, own) == "same work_email, last name, first name agree"
    assert deterministic(own, work) == "same work_email, last name, first name agree"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # nothing shared
        (
            {"first_name": "DIANE", "last_name": "BODIN", "birth_date": "1985-10-07"},
            {"first_name": "DIANE", "last_name": "BODIN", "birth_date": "1985-10-07"},
        ),
        # shared mobile, but different last names
        (
            {"first_name": "DIANE", "last_name": "BODIN", "phone_mobile": "+33611111111"},
            {"first_name": "DIANE", "last_name": "MARTIN", "phone_mobile": "+33611111111"},
        ),
        # shared mobile, homonyms born years apart
        (
            {"first_name": "MARIE", "last_name": "DURAND", "birth_date": "1960-05-01"}
            | {"phone_mobile": "+33611111111"},
            {"first_name": "MARIE", "last_name": "DURAND", "birth_date": "1988-09-12"}
            | {"phone_mobile": "+33611111111"},
        ),
        # shared e-mail, only the first name agrees (last names a typo apart, no birth date)
        (
            {"first_name": "DIANE", "last_name": "DUPONT", "email": "d@x.fr"},
            {"first_name": "DIANE", "last_name": "DUPOND", "email": "d@x.fr"},
        ),
        # shared e-mail and nothing else known
        ({"email": "d@x.fr"}, {"email": "d@x.fr"}),
    ],
)
def test_deterministic_refuses(a: dict[str, str], b: dict[str, str]) -> None:
    assert deterministic(person(**a), person(**b)) is None
    assert deterministic(person(**b), person(**a)) is None


def test_shared_loyalty_card_and_maiden_name_with_birth_date_link() -> None:
    married = person(
        first_name="DIANE",
        last_name="MARTIN",
        maiden_name="BODIN",
        birth_date="1985-10-07",
        loyalty_card="2990105257431",
    )
    single = person(
        first_name="DIANE", last_name="BODIN", birth_date="1985-10-07", loyalty_card="2990105257431"
    )
    assert deterministic(married, single) == "same loyalty_card, first name, birth date agree"


def test_deterministic_reason_does_not_depend_on_the_order() -> None:
    a = person(first_name="DIANE", last_name="BODIN", email="d@x.fr")
    b = person(first_name=None, last_name="BODIN", email="d@x.fr")
    assert deterministic(a, b) == deterministic(b, a) == "same email, last name agree"


@given(PROFILES, PROFILES)
def test_deterministic_link_never_overrides_a_conflict(
    a: dict[str, str | None], b: dict[str, str | None]
) -> None:
    a = {**a, "email": "x@y.fr", "last_name": "BODIN"}
    b = {**b, "email": "x@y.fr", "last_name": "BODIN"}
    rule = deterministic(a, b)
    assert (rule is None) == conflict(a, b).conflict
    assert (deterministic(b, a) is None) == (rule is None)


# --- groups --------------------------------------------------------------------------------


def test_groups_conflict_finds_the_first_conflicting_pair() -> None:
    mother = person(first_name="MARIE", last_name="DURAND", birth_date="1960-05-01")
    undated = person(first_name="MARIE", last_name="DURAND")
    daughter = person(first_name="MARIE", last_name="DURAND", birth_date="1988-09-12")
    assert groups_conflict([mother, undated], [undated]) is None
    assert groups_conflict([undated], [mother, daughter]) is None
    verdict = groups_conflict([undated, mother], [undated, daughter])
    assert verdict == Verdict(True, "birth dates differ (1960-05-01 / 1988-09-12)")
    assert groups_conflict([], [mother]) is None
    assert groups_conflict(iter([mother]), iter([daughter])) is not None
