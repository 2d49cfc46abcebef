"""One scored pair: link, review or nothing, by the deterministic rule, the thresholds, the
conflict guard and the corroboration rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.identity.decisions import Decision, corroborated, decide
from tournesol.identity.features import PROFILE_COLUMNS
from tournesol.identity.splink_settings import LOWER_THRESHOLD, UPPER_THRESHOLD

UPPER, LOWER = 0.9, 0.4
ADDRESS = {"street": "28 RUE DU LAVOIR", "postal_code": "37100", "city": "TOURS"}


def person(**fields: Any) -> dict[str, str | None]:
    assert set(fields) <= set(PROFILE_COLUMNS), set(fields) - set(PROFILE_COLUMNS)
    return {column: fields.get(column) for column in PROFILE_COLUMNS}


DIANE = person(first_name="DIANE", last_name="BODIN", birth_date="1985-10-07", **ADDRESS)
# Same name and address, nothing strong shared, nothing conflicting, birth dates both known.
DIANE_AGAIN = person(first_name="DIANE", last_name="BODIN", birth_date="1985-10-07", **ADDRESS)


# --- corroborated --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # both birth dates known: corroborated, whatever else differs
        (
            {"birth_date": "1985-10-07", "email": "a@x.fr", "phone_mobile": "+33611111111"},
            {"birth_date": "1960-01-01", "email": "b@x.fr", "phone_mobile": "+33622222222"},
            True,
        ),
        ({"email": "a@x.fr"}, {"email": "a@x.fr"}, True),  # one e-mail shared
        (
            {"email": "a@x.fr", "phone_mobile": "+33611111111"},
            {"email": "b@x.fr", "phone_mobile": "+33611111111"},
            True,  # one mobile shared
        ),
        ({"email": "a@x.fr"}, {"email": "b@x.fr"}, False),  # different user names
        ({"email": "a@x.fr"}, {"email": "a@y.fr"}, True),  # same user name, other domain
        (
            {"email": "a@x.fr", "phone_mobile": "+33611111111"},
            {"email": "a@y.fr", "phone_mobile": "+33622222222"},
            False,  # same user name but different mobiles
        ),
        ({"phone_mobile": "+33611111111"}, {"phone_mobile": "+33622222222"}, False),
        ({"phone_mobile": "+33611111111"}, {}, True),  # one side only
        ({"email": "a@x.fr"}, {"phone_mobile": "+33622222222"}, True),
        ({"birth_date": "1985-10-07", "email": "a@x.fr"}, {"email": "b@x.fr"}, False),
        ({}, {}, True),
    ],
)
def test_corroborated(a: dict[str, str], b: dict[str, str], expected: bool) -> None:
    assert corroborated(person(**a), person(**b)) is expected
    assert corroborated(person(**b), person(**a)) is expected


# --- decide --------------------------------------------------------------------------------


def test_default_thresholds_are_ordered() -> None:
    assert 0 < LOWER_THRESHOLD < UPPER_THRESHOLD < 1


@pytest.mark.parametrize(
    ("probability", "kind", "rule"),
    [
        (1.0, "link", "probabilistic"),
        (UPPER, "link", "probabilistic"),  # the upper threshold links
        (0.8999, "review", "grey_zone"),
        (LOWER, "review", "grey_zone"),  # the lower threshold reviews
        (0.3999, "none", "none"),
        (0.0, "none", "none"),
    ],
)
def test_decide_around_the_thresholds(probability: float, kind: str, rule: str) -> None:
    decision = decide(DIANE, DIANE_AGAIN, probability, upper=UPPER, lower=LOWER)
    assert (decision.kind, decision.rule) == (kind, rule)


def test_decide_reasons() -> None:
    assert decide(DIANE, DIANE_AGAIN, 0.95, upper=UPPER, lower=LOWER) == Decision(
        "link", "probabilistic", "match probability 0.9500"
    )
    assert decide(DIANE, DIANE_AGAIN, 0.5, upper=UPPER, lower=LOWER) == Decision(
        "review", "grey_zone", "match probability 0.500"
    )
    assert decide(DIANE, DIANE_AGAIN, 0.1, upper=UPPER, lower=LOWER) == Decision(
        "none", "none", "match probability 0.100"
    )


def test_decide_uses_the_module_thresholds_by_default() -> None:
    just_above = decide(DIANE, DIANE_AGAIN, UPPER_THRESHOLD)
    just_below = decide(DIANE, DIANE_AGAIN, UPPER_THRESHOLD - 1e-9)
    assert (just_above.kind, just_below.kind) == ("link", "review")
    assert decide(DIANE, DIANE_AGAIN, LOWER_THRESHOLD - 1e-9).kind == "none"


@pytest.mark.parametrize("probability", [0.0, 0.1, 0.5, 0.95])
def test_deterministic_beats_any_probability(probability: float) -> None:
    a = {**DIANE, "email": "diane_bodin@hotmail.com"}
    b = {**DIANE_AGAIN, "email": "diane_bodin@hotmail.com", "birth_date": None}
    decision = decide(a, b, probability, upper=UPPER, lower=LOWER)
    assert decision == Decision("link", "deterministic", "same email, last name, first name agree")


def test_conflict_above_upper_goes_to_review() -> None:
    mother = person(first_name="MARIE", last_name="DURAND", birth_date="1960-05-01", **ADDRESS)
    daughter = person(first_name="MARIE", last_name="DURAND", birth_date="1988-09-12", **ADDRESS)
    decision = decide(mother, daughter, 0.97, upper=UPPER, lower=LOWER)
    assert decision == Decision(
        "review", "conflict", "p=0.970 but birth dates differ (1960-05-01 / 1988-09-12)"
    )


def test_conflict_in_the_grey_zone_is_noted() -> None:
    twin_a = person(first_name="PAUL", last_name="DUPONT", birth_date="2001-04-12")
    twin_b = person(first_name="THOMAS", last_name="DUPONT", birth_date="2001-04-12")
    decision = decide(twin_a, twin_b, 0.5, upper=UPPER, lower=LOWER)
    assert decision == Decision(
        "review", "grey_zone", "match probability 0.500; first names differ (PAUL / THOMAS)"
    )
    assert decide(twin_a, twin_b, 0.1, upper=UPPER, lower=LOWER).kind == "none"


def test_a_shared_email_between_a_couple_is_not_deterministic() -> None:
    him = person(first_name="MARC", last_name="DUPONT", gender="M", email="f@x.fr", **ADDRESS)
    her = person(first_name="SOPHIE", last_name="DUPONT", gender="F", email="f@x.fr", **ADDRESS)
    assert decide(him, her, 0.95, upper=UPPER, lower=LOWER).rule == "conflict"


def test_uncorroborated_above_upper_goes_to_review() -> None:
    # A mother and daughter at one address, no birth dates, each with her own mailbox.
    mother = person(first_name="MARIE", last_name="DURAND", email="marie.d@orange.fr", **ADDRESS)
    daughter = person(first_name="MARIE", last_name="DURAND", email="mdurand@gmail.com", **ADDRESS)
    decision = decide(mother, daughter, 0.95, upper=UPPER, lower=LOWER)
    assert (decision.kind, decision.rule) == ("review", "uncorroborated")
    assert decision.reason.startswith("p=0.950 on name and address only")
    # One birth date is not enough to corroborate; two are.
    dated = {**mother, "birth_date": "1960-05-01"}
    assert decide(dated, daughter, 0.95, upper=UPPER, lower=LOWER).rule == "uncorroborated"
    both = {**daughter, "birth_date": "1960-05-01"}
    assert decide(dated, both, 0.95, upper=UPPER, lower=LOWER).rule == "probabilistic"


def test_uncorroborated_below_upper_is_plain_grey_zone() -> None:
    a = person(first_name="MARIE", last_name="DURAND", email="a@x.fr")
    b = person(first_name="MARIE", last_name="DURAND", email="b@x.fr")
    assert decide(a, b, 0.5, upper=UPPER, lower=LOWER).rule == "grey_zone"


@given(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=1.0))
def test_decisions_are_monotonic_in_the_probability(p: float, q: float) -> None:
    rank = {"none": 0, "review": 1, "link": 2}
    low, high = sorted((p, q))
    a = decide(DIANE, DIANE_AGAIN, low, upper=UPPER, lower=LOWER)
    b = decide(DIANE, DIANE_AGAIN, high, upper=UPPER, lower=LOWER)
    assert rank[a.kind] <= rank[b.kind]
