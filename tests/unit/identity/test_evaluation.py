"""Pairwise scores of identity resolution against the truth: hand-computed cases, and a
brute-force enumeration of every pair of records on small random assignments."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.identity.evaluation import IdentityScores, TruthRecord, score

# Two households. H1: P1 (3 records), P2 (1 record), twins P3 and P4 (1 record each).
# H2: P5 (2 records), a homonym of P1 (group G1); P6 (1 record), no homonym.
TRUTH = {
    "r1": TruthRecord("P1", "H1", False, "G1"),
    "r2": TruthRecord("P1", "H1", False, "G1"),
    "r3": TruthRecord("P1", "H1", False, "G1"),
    "r4": TruthRecord("P2", "H1", False, None),
    "r5": TruthRecord("P3", "H1", True, None),
    "r6": TruthRecord("P4", "H1", True, None),
    "r7": TruthRecord("P5", "H2", False, "G1"),
    "r8": TruthRecord("P5", "H2", False, "G1"),
    "r9": TruthRecord("P6", "H2", False, ""),
}
PERFECT = {"r1": 1, "r2": 1, "r3": 1, "r4": 2, "r5": 3, "r6": 4, "r7": 5, "r8": 5, "r9": 6}
TRUE_PAIRS = 3 + 1  # P1: 3 records, P5: 2


def test_perfect_assignment() -> None:
    s = score(PERFECT, TRUTH)
    assert (s.records, s.persons, s.customers) == (9, 6, 6)
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (4, 4, 4)
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert (s.persons_split, s.customers_mixing_persons) == (0, 0)
    assert (s.household_pairs_merged, s.twin_pairs_merged, s.homonym_pairs_merged) == (0, 0, 0)


def test_every_record_its_own_customer() -> None:
    """The baseline before identity resolution: nothing merged, so nothing merged wrongly."""
    s = score({key: n for n, key in enumerate(TRUTH)}, TRUTH)
    assert (s.customers, s.true_pairs, s.predicted_pairs, s.correct_pairs) == (9, 4, 0, 0)
    assert (s.precision, s.recall, s.f1) == (1.0, 0.0, 0.0)
    assert s.persons_split == 2  # P1 and P5
    assert s.customers_mixing_persons == 0


def test_one_wrong_merge_within_a_household() -> None:
    s = score({**PERFECT, "r4": 1}, TRUTH)  # P2 joins P1's customer: 3 wrong pairs
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (4, 7, 4)
    assert s.precision == pytest.approx(4 / 7)
    assert s.recall == 1.0
    assert s.f1 == pytest.approx(2 * (4 / 7) / (4 / 7 + 1))
    assert (s.persons_split, s.customers_mixing_persons) == (0, 1)
    assert (s.household_pairs_merged, s.twin_pairs_merged, s.homonym_pairs_merged) == (3, 0, 0)


def test_twins_merged() -> None:
    s = score({**PERFECT, "r6": 3}, TRUTH)
    assert (s.predicted_pairs, s.correct_pairs) == (5, 4)
    assert s.precision == pytest.approx(4 / 5)
    assert (s.household_pairs_merged, s.twin_pairs_merged, s.homonym_pairs_merged) == (0, 1, 0)


def test_twin_and_sibling_merged() -> None:
    """A twin with a non-twin of the household is a household pair, not a twin pair."""
    s = score({**PERFECT, "r4": 3, "r6": 3}, TRUTH)  # P2, P3, P4 together
    assert (s.household_pairs_merged, s.twin_pairs_merged) == (2, 1)
    assert s.customers_mixing_persons == 1


def test_homonyms_merged() -> None:
    s = score({**PERFECT, "r7": 1, "r8": 1}, TRUTH)  # P5 (G1, H2) into P1's customer (G1, H1)
    assert (s.predicted_pairs, s.correct_pairs) == (10, 4)
    assert (s.household_pairs_merged, s.twin_pairs_merged, s.homonym_pairs_merged) == (0, 0, 6)


def test_a_person_split_in_two() -> None:
    s = score({**PERFECT, "r3": 7}, TRUTH)  # one of P1's three records on its own
    assert (s.true_pairs, s.predicted_pairs, s.correct_pairs) == (4, 2, 2)
    assert (s.precision, s.recall) == (1.0, 0.5)
    assert s.f1 == pytest.approx(2 / 3)
    assert (s.persons_split, s.customers_mixing_persons) == (1, 0)


def test_everything_in_one_customer() -> None:
    s = score(dict.fromkeys(TRUTH, 1), TRUTH)
    assert (s.customers, s.predicted_pairs, s.correct_pairs) == (1, 36, 4)
    assert s.recall == 1.0
    # H1 holds 6 records of 4 persons: 15 pairs, 3 of them within P1, 1 between the twins,
    # 11 between other persons; H2: P5 x P6, 2 pairs; homonyms G1: P1 x P5, 6 pairs
    assert (s.household_pairs_merged, s.twin_pairs_merged, s.homonym_pairs_merged) == (13, 1, 6)
    assert (s.persons_split, s.customers_mixing_persons) == (0, 1)


def test_rejected_records_are_left_out() -> None:
    s = score({"r1": 1, "r2": 1}, TRUTH)
    assert (s.records, s.persons, s.true_pairs, s.correct_pairs) == (2, 1, 1, 1)


def test_a_record_without_truth_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"1 assigned records have no truth, e\.g\. 'zz'"):
        score({**PERFECT, "zz": 1}, TRUTH)


def test_empty_and_pairless_inputs() -> None:
    empty = score({}, TRUTH)
    assert (empty.records, empty.precision, empty.recall, empty.f1) == (0, 1.0, 1.0, 1.0)
    lone = score({"r4": 1, "r9": 2}, TRUTH)
    assert (lone.true_pairs, lone.predicted_pairs, lone.f1) == (0, 0, 1.0)


def test_to_json() -> None:
    payload = score({**PERFECT, "r4": 1}, TRUTH).to_json()
    assert json.loads(json.dumps(payload)) == payload
    assert list(payload) == list(IdentityScores.__dataclass_fields__)
    assert payload["household_pairs_merged"] == 3


def test_keys_of_any_hashable_type() -> None:
    truth = {("loyalty", "C1"): TRUTH["r1"], ("ecommerce", "A1"): TRUTH["r2"]}
    s = score({("loyalty", "C1"): 10, ("ecommerce", "A1"): 10}, truth)
    assert (s.precision, s.recall) == (1.0, 1.0)


# --- against a brute-force enumeration of every pair -------------------------------------------


def brute_force(assignment: dict[int, int], truth: dict[int, TruthRecord]) -> dict[str, float]:
    true = predicted = correct = household = twins = homonyms = 0
    for a, b in itertools.combinations(assignment, 2):
        ta, tb = truth[a], truth[b]
        same_person = ta.person_id == tb.person_id
        same_customer = assignment[a] == assignment[b]
        true += same_person
        predicted += same_customer
        correct += same_person and same_customer
        if same_customer and not same_person:
            same_household = bool(ta.household_id) and ta.household_id == tb.household_id
            twin_pair = same_household and ta.is_twin and tb.is_twin
            twins += twin_pair
            household += same_household and not twin_pair
            homonyms += bool(ta.homonym_group) and ta.homonym_group == tb.homonym_group
    customers_of: dict[str, set[int]] = {}
    persons_in: dict[int, set[str]] = {}
    for key, customer in assignment.items():
        customers_of.setdefault(truth[key].person_id, set()).add(customer)
        persons_in.setdefault(customer, set()).add(truth[key].person_id)
    return {
        "true_pairs": true,
        "predicted_pairs": predicted,
        "correct_pairs": correct,
        "precision": correct / predicted if predicted else 1.0,
        "recall": correct / true if true else 1.0,
        "persons_split": sum(len(c) > 1 for c in customers_of.values()),
        "customers_mixing_persons": sum(len(p) > 1 for p in persons_in.values()),
        "household_pairs_merged": household,
        "twin_pairs_merged": twins,
        "homonym_pairs_merged": homonyms,
    }


@st.composite
def populations(draw: st.DrawFn) -> tuple[dict[int, int], dict[int, TruthRecord]]:
    """A few persons in a few households (some twins, some homonyms), each with 1-4 records,
    the records assigned to random customers."""
    n_persons = draw(st.integers(1, 8))
    persons = []
    for p in range(n_persons):
        household = draw(st.sampled_from(["H1", "H2", "H3", ""]))
        persons.append(
            TruthRecord(
                f"P{p}",
                household,
                draw(st.booleans()) if household else False,
                draw(st.sampled_from([None, "", "G1", "G2"])),
            )
        )
    truth: dict[int, TruthRecord] = {}
    for person in persons:
        for _ in range(draw(st.integers(1, 4))):
            truth[len(truth)] = person
    keys = draw(st.lists(st.sampled_from(sorted(truth)), unique=True))  # the others: rejected
    customers = st.integers(0, draw(st.integers(0, 6)))
    return {key: draw(customers) for key in keys}, truth


@given(populations())
def test_score_matches_brute_force(case: tuple[dict[int, int], dict[int, TruthRecord]]) -> None:
    assignment, truth = case
    s = score(assignment, truth).to_json()
    expected = brute_force(assignment, truth)
    assert {k: s[k] for k in expected} == pytest.approx(expected)
    assert s["records"] == len(assignment)
    assert s["customers"] == len(set(assignment.values()))
    assert s["persons"] == len({truth[k].person_id for k in assignment})
    p, r = s["precision"], s["recall"]
    assert s["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
