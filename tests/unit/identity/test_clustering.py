"""Records into persons: links strongest first, the chaining guard, reviewers' refusals, records
already together, and records that fit two persons."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.identity.clustering import Clusters, Link, cluster
from tournesol.identity.features import PROFILE_COLUMNS, conflict

ADDRESS = {"street": "28 RUE DU LAVOIR", "postal_code": "37100", "city": "TOURS"}


def person(**fields: Any) -> dict[str, str | None]:
    assert set(fields) <= set(PROFILE_COLUMNS), set(fields) - set(PROFILE_COLUMNS)
    return {column: fields.get(column) for column in PROFILE_COLUMNS}


def marie(birth_date: str | None = None, **fields: Any) -> dict[str, str | None]:
    return person(first_name="MARIE", last_name="DURAND", birth_date=birth_date, **fields)


def prob(a: int, b: int, score: float) -> Link:
    return Link(a, b, score, "probabilistic", f"match probability {score}")


def det(a: int, b: int, score: float = 0.5) -> Link:
    return Link(a, b, score, "deterministic", "same email")


def pairs_of(result: Clusters) -> set[tuple[int, int]]:
    return {link.pair for link in result.accepted}


def refused_pairs(result: Clusters) -> set[tuple[int, int]]:
    return {r.link.pair for r in result.refused}


def assert_partition(result: Clusters, records: Sequence[int]) -> None:
    flat = [r for group in result.groups for r in group]
    assert sorted(flat) == sorted(records)
    assert len(flat) == len(set(flat))


def test_link_pair_is_ordered() -> None:
    assert prob(5, 2, 0.9).pair == (2, 5)
    assert prob(2, 5, 0.9).pair == (2, 5)


def test_no_links_every_record_alone() -> None:
    result = cluster([3, 1, 2], [], {})
    assert result.groups == [[1], [2], [3]]
    assert (result.accepted, result.refused, result.ambiguous) == ([], [], set())


def test_compatible_links_join() -> None:
    profiles = {1: marie("1960-05-01"), 2: marie("1960-05-01"), 3: marie(), 4: marie("1988-09-12")}
    links = [prob(1, 2, 0.95), det(2, 3)]
    result = cluster(profiles, links, profiles)
    assert result.groups == [[1, 2, 3], [4]]
    assert set(result.accepted) == set(links)
    assert result.refused == []


# --- the chaining guard --------------------------------------------------------------------


def test_chain_of_probabilistic_links_never_joins_conflicting_ends() -> None:
    # A - B - C, A and C born years apart. B (no birth date) fits both: it is ambiguous.
    profiles = {1: marie("1960-05-01"), 2: marie(), 3: marie("1988-09-12")}
    result = cluster([1, 2, 3], [prob(1, 2, 0.85), prob(2, 3, 0.95)], profiles)
    assert result.groups == [[1], [2], [3]]
    assert result.ambiguous == {2}
    assert result.accepted == []
    assert refused_pairs(result) == {(1, 2), (2, 3)}


def test_chain_strongest_link_wins() -> None:
    # Same chain, B tied to C by a shared identifier: B stays with C, the weaker A-B is refused.
    profiles = {1: marie("1960-05-01"), 2: marie(), 3: marie("1988-09-12")}
    result = cluster([1, 2, 3], [det(1, 2, 0.7), det(2, 3, 0.99)], profiles)
    assert result.groups == [[1], [2, 3]]
    assert pairs_of(result) == {(2, 3)}
    assert [(r.link.pair, r.reason) for r in result.refused] == [
        ((1, 2), "birth dates differ (1960-05-01 / 1988-09-12)")
    ]
    assert result.ambiguous == set()
    # The stronger link the other way round: B goes with A.
    swapped = cluster([1, 2, 3], [det(1, 2, 0.99), det(2, 3, 0.7)], profiles)
    assert swapped.groups == [[1, 2], [3]]


def test_chain_with_a_dated_middle_record_stays_with_the_strongest() -> None:
    # B's birth date is one keystroke from A's and one from C's; A and C are two apart.
    profiles = {1: marie("1985-10-07"), 2: marie("1985-10-17"), 3: marie("1985-11-17")}
    assert not conflict(profiles[1], profiles[2]).conflict
    assert not conflict(profiles[2], profiles[3]).conflict
    assert conflict(profiles[1], profiles[3]).conflict
    result = cluster([1, 2, 3], [det(1, 2, 0.6), det(2, 3, 0.9)], profiles)
    assert result.groups == [[1], [2, 3]]


def test_deterministic_links_are_taken_before_stronger_probabilistic_ones() -> None:
    profiles = {1: marie("1960-05-01"), 2: marie(), 3: marie("1988-09-12")}
    result = cluster([1, 2, 3], [prob(1, 2, 0.99), det(2, 3, 0.1)], profiles)
    assert result.groups == [[1], [2, 3]]
    assert result.ambiguous == set()  # 2 is anchored by the deterministic link
    assert refused_pairs(result) == {(1, 2)}


def test_links_accepted_by_a_reviewer_come_first() -> None:
    profiles = {1: marie("1960-05-01"), 2: marie(), 3: marie("1988-09-12")}
    review = Link(1, 2, 0.4, "review", "accepted by a reviewer")
    result = cluster([1, 2, 3], [det(2, 3, 0.99), review], profiles)
    assert result.groups == [[1, 2], [3]]


def test_a_link_inside_one_group_is_accepted() -> None:
    profiles = {1: marie(), 2: marie(), 3: marie()}
    links = [det(1, 2), det(2, 3), prob(1, 3, 0.9)]
    result = cluster([1, 2, 3], links, profiles)
    assert result.groups == [[1, 2, 3]]
    assert pairs_of(result) == {(1, 2), (2, 3), (1, 3)}


def test_group_against_group_checks_every_member() -> None:
    # 1-2 and 3-4 form two groups; 2 and 3 are compatible, 1 and 4 are not.
    profiles = {
        1: marie("1960-05-01"),
        2: marie(),
        3: marie(),
        4: marie("1988-09-12"),
    }
    result = cluster(profiles, [det(1, 2, 0.9), det(3, 4, 0.9), det(2, 3, 0.8)], profiles)
    assert result.groups == [[1, 2], [3, 4]]
    assert refused_pairs(result) == {(2, 3)}


# --- records already one customer, reviewers' refusals ------------------------------------


def test_preset_groups_stay_together_even_when_they_conflict() -> None:
    profiles = {1: marie("1960-05-01"), 2: marie("1988-09-12"), 3: marie("1988-09-12")}
    result = cluster([1, 2, 3], [det(2, 3, 0.99)], profiles, preset=[[1, 2]])
    assert result.groups == [[1, 2], [3]]  # 3 conflicts with 1
    assert refused_pairs(result) == {(2, 3)}
    assert result.ambiguous == set()


def test_preset_records_are_never_ambiguous() -> None:
    profiles = {1: marie("1960-05-01"), 2: marie(), 3: marie("1988-09-12")}
    result = cluster([1, 2, 3], [prob(2, 3, 0.95)], profiles, preset=[[1, 2]])
    assert result.groups == [[1, 2], [3]]
    assert result.ambiguous == set()


def test_cannot_link_pairs_are_never_joined() -> None:
    profiles = {i: marie() for i in (1, 2, 3)}
    result = cluster([1, 2, 3], [det(1, 3, 0.9)], profiles, cannot_link={(1, 3)})
    assert result.groups == [[1], [2], [3]]
    assert [r.reason for r in result.refused] == ["a reviewer said these records are two persons"]


def test_cannot_link_pairs_are_never_joined_transitively() -> None:
    profiles = {i: marie() for i in (1, 2, 3)}
    links = [det(1, 2, 0.9), det(2, 3, 0.8)]
    result = cluster([1, 2, 3], links, profiles, cannot_link={(1, 3)})
    assert result.groups == [[1, 2], [3]]
    assert refused_pairs(result) == {(2, 3)}


def test_cannot_link_inside_a_preset_group_does_not_split_it() -> None:
    profiles = {i: marie() for i in (1, 2)}
    result = cluster([1, 2], [], profiles, preset=[[1, 2]], cannot_link={(1, 2)})
    assert result.groups == [[1, 2]]


# --- ambiguous records ---------------------------------------------------------------------


def test_a_record_fitting_two_persons_is_detached() -> None:
    # A mother, her daughter (one address), and an undated record named like both.
    mother = marie("1960-05-01", **ADDRESS)
    daughter = marie("1988-09-12", **ADDRESS)
    mother_again = marie("1960-05-01", **ADDRESS)
    undated = marie(**ADDRESS)
    profiles = {1: mother, 2: mother_again, 3: daughter, 4: undated}
    links = [det(1, 2, 0.99), prob(1, 4, 0.95), prob(3, 4, 0.9)]
    result = cluster([1, 2, 3, 4], links, profiles)
    assert result.groups == [[1, 2], [3], [4]]
    assert result.ambiguous == {4}
    assert pairs_of(result) == {(1, 2)}
    reasons = {r.link.pair: r.reason for r in result.refused}
    assert reasons == {
        (3, 4): "birth dates differ (1988-09-12 / 1960-05-01)",
        (1, 4): "the record fits two persons who cannot be one",
    }


def test_a_record_anchored_by_an_identifier_is_not_ambiguous() -> None:
    profiles = {1: marie("1960-05-01"), 3: marie("1988-09-12"), 4: marie()}
    result = cluster([1, 3, 4], [det(1, 4, 0.95), prob(3, 4, 0.99)], profiles)
    assert result.groups == [[1, 4], [3]]
    assert result.ambiguous == set()


def test_a_record_conflicting_with_the_other_group_is_not_ambiguous() -> None:
    # 4 is refused by group {3} because of its own birth date, not because of a group mate.
    profiles = {1: marie("1960-05-01"), 3: marie("1988-09-12"), 4: marie("1960-05-01")}
    result = cluster([1, 3, 4], [prob(1, 4, 0.95), prob(3, 4, 0.9)], profiles)
    assert result.groups == [[1, 4], [3]]
    assert result.ambiguous == set()


def test_detaching_an_ambiguous_bridge_splits_its_group() -> None:
    # 5 alone ties 1 and 2 (no link between them) and also fits 3, who conflicts with 1.
    profiles = {1: marie("1960-05-01"), 2: marie(), 3: marie("1988-09-12"), 5: marie()}
    links = [prob(1, 5, 0.99), prob(2, 5, 0.98), prob(3, 5, 0.9)]
    result = cluster([1, 2, 3, 5], links, profiles)
    assert result.ambiguous == {5}
    assert result.groups == [[1], [2], [3], [5]]
    assert result.accepted == []


# --- custom conflicts ----------------------------------------------------------------------


def test_a_custom_conflict_replaces_the_default_one() -> None:
    profiles = {
        1: person(city="TOURS", birth_date="1960-05-01"),
        2: person(city="TOURS", birth_date="1988-09-12"),
        3: person(city="BREST"),
    }

    def other_city(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
        return None if a["city"] == b["city"] else "cities differ"

    links = [det(1, 2, 0.9), det(2, 3, 0.8)]
    result = cluster([1, 2, 3], links, profiles, conflict_of=other_city)
    assert result.groups == [[1, 2], [3]]  # birth dates no longer matter, cities do
    assert [r.reason for r in result.refused] == ["cities differ"]
    assert cluster([1, 2, 3], links, profiles).groups == [[1], [2, 3]]


# --- properties ----------------------------------------------------------------------------

FIRST_NAMES = [None, "JEAN", "JEAN", "JEANNE", "PAUL", "CATHY", "CATHERINE"]
BIRTH_DATES = [None, None, "1985-10-07", "1985-10-01", "1990-03-22"]
RULES = ["deterministic", "probabilistic", "review"]
SCORES = [0.3, 0.8, 0.9, 0.99]


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=2, max_value=8))
    records = list(range(1, n + 1))
    profiles = {
        r: person(
            first_name=draw(st.sampled_from(FIRST_NAMES)),
            last_name="MARTIN",
            birth_date=draw(st.sampled_from(BIRTH_DATES)),
            gender=draw(st.sampled_from([None, "M", "F"])),
        )
        for r in records
    }
    all_pairs = list(itertools.combinations(records, 2))
    # Half the graphs are all probabilistic: that is where records turn out ambiguous.
    rules = draw(st.sampled_from([RULES, ["probabilistic"]]))
    chosen = draw(st.lists(st.sampled_from(all_pairs), unique=True, min_size=len(all_pairs) // 3))
    links = [
        Link(
            *(pair if draw(st.booleans()) else pair[::-1]),
            score=draw(st.sampled_from(SCORES)),
            rule=draw(st.sampled_from(rules)),
            reason="",
        )
        for pair in chosen
    ]
    labels = {r: draw(st.sampled_from([None, None, None, "p", "q"])) for r in records}
    preset = [
        members
        for label in ("p", "q")
        if len(members := [r for r in records if labels[r] == label]) > 1
    ]
    banned = set(draw(st.lists(st.sampled_from(all_pairs), max_size=2)))
    return {
        "records": records,
        "links": links,
        "profiles": profiles,
        "preset": preset,
        "banned": banned,
    }


def _preset_of(preset: list[list[int]]) -> dict[int, int]:
    return {r: i for i, members in enumerate(preset) for r in members}


@settings(max_examples=300)
@given(graphs())
def test_clusters_respect_the_guard(graph: dict[str, Any]) -> None:
    records, profiles, preset = graph["records"], graph["profiles"], graph["preset"]
    result = cluster(records, graph["links"], profiles, preset=preset, cannot_link=graph["banned"])
    assert_partition(result, records)
    home = _preset_of(preset)
    group_of = {r: i for i, group in enumerate(result.groups) for r in group}
    for group in result.groups:
        for x, y in itertools.combinations(group, 2):
            if x in home and home.get(x) == home.get(y):
                continue
            assert not conflict(profiles[x], profiles[y]).conflict, (x, y)
            assert (x, y) not in graph["banned"], (x, y)
    for members in preset:
        assert len({group_of[r] for r in members}) == 1
    for link in result.accepted:
        assert group_of[link.a] == group_of[link.b]
    for refusal in result.refused:
        assert group_of[refusal.link.a] != group_of[refusal.link.b]
    assert len(result.accepted) + len(result.refused) == len(graph["links"])
    for r in result.ambiguous:
        assert [r] in result.groups
        assert r not in home


@settings(max_examples=200)
@given(graphs(), st.randoms(use_true_random=False))
def test_clusters_do_not_depend_on_the_order_of_links(graph: dict[str, Any], rnd: Any) -> None:
    def run(links: list[Link], records: list[int]) -> Clusters:
        return cluster(
            records, links, graph["profiles"], preset=graph["preset"], cannot_link=graph["banned"]
        )

    expected = run(graph["links"], graph["records"])
    links = list(graph["links"])
    rnd.shuffle(links)
    flipped = [Link(k.b, k.a, k.score, k.rule, k.reason) for k in links]
    records = list(graph["records"])
    rnd.shuffle(records)
    for other in (run(links, graph["records"]), run(flipped, graph["records"])):
        assert other.groups == expected.groups
        assert other.ambiguous == expected.ambiguous
        assert {k.pair for k in other.accepted} == {k.pair for k in expected.accepted}
    assert run(graph["links"], records).groups == expected.groups
