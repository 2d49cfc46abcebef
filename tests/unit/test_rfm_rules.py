"""The pure RFM rules: quintile scores with ties, recency reversed, the (R, FM) grid."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.scoring.rules import (
    RFM_SEGMENTS,
    SEGMENT_CODES,
    SEGMENT_GRID,
    RfmRow,
    fm_score,
    quintile_scores,
    score_rfm,
    segment_of,
)


def test_the_eleven_segments_have_stable_codes() -> None:
    assert SEGMENT_CODES == (
        "champions",
        "loyal",
        "potential_loyalists",
        "new",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cant_lose",
        "hibernating",
        "lost",
    )
    assert len({s.name for s in RFM_SEGMENTS}) == 11


def test_the_grid_covers_every_cell_with_every_segment() -> None:
    assert set(SEGMENT_GRID) == {(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert set(SEGMENT_GRID.values()) == set(SEGMENT_CODES)


def test_distinct_values_fill_five_equal_quintiles() -> None:
    assert quintile_scores(list(range(10))) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores([50, 40, 30, 20, 10]) == [5, 4, 3, 2, 1]


def test_ties_share_the_score_of_the_quintile_where_their_group_starts() -> None:
    # Hand-computed: n = 10; below(1) = 0, below(2) = 6, below(3) = 8, below(9) = 9.
    frequencies = [1, 1, 1, 1, 1, 1, 2, 2, 3, 9]
    assert quintile_scores(frequencies) == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    # Everybody equal: everybody gets 1.
    assert quintile_scores([7, 7, 7]) == [1, 1, 1]
    assert quintile_scores([]) == []


def test_recency_is_reversed_fewer_days_is_better() -> None:
    # Hand-computed: n = 6; sorted from the oldest: 400, 200, 30, 30, 5, 1.
    # below(400) = 0 -> 1; below(200) = 1 -> 1 + 5 // 6 = 1; below(30) = 2 -> 1 + 10 // 6 = 2;
    # below(5) = 4 -> 1 + 20 // 6 = 4; below(1) = 5 -> 1 + 25 // 6 = 5.
    assert quintile_scores([1, 30, 400, 30, 5, 200], reverse=True) == [5, 2, 1, 2, 4, 1]


def test_fm_is_the_average_of_f_and_m_rounded_half_up() -> None:
    assert fm_score(1, 1) == 1
    assert fm_score(1, 2) == 2
    assert fm_score(4, 5) == 5
    assert fm_score(3, 3) == 3
    assert fm_score(2, 5) == 4


@pytest.mark.parametrize(
    ("r", "f", "m", "segment"),
    [
        (5, 5, 5, "champions"),
        (5, 4, 3, "champions"),  # FM = 4
        (4, 5, 5, "loyal"),
        (3, 4, 4, "loyal"),
        (5, 2, 3, "potential_loyalists"),
        (4, 3, 3, "potential_loyalists"),
        (5, 1, 1, "new"),
        (4, 1, 1, "promising"),
        (3, 3, 3, "need_attention"),
        (3, 1, 2, "about_to_sleep"),
        (2, 3, 4, "at_risk"),
        (1, 3, 3, "at_risk"),
        (2, 5, 5, "cant_lose"),
        (1, 5, 4, "cant_lose"),
        (2, 1, 2, "hibernating"),
        (1, 2, 1, "lost"),
        (1, 1, 1, "lost"),
    ],
)
def test_segment_map(r: int, f: int, m: int, segment: str) -> None:
    assert segment_of(r, f, m) == segment


def test_scores_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="1 to 5"):
        segment_of(0, 3, 3)


def test_score_rfm_on_a_hand_computed_example() -> None:
    rows = [
        # id, days since the last purchase, purchases, amount
        RfmRow(1, 3, 12, Decimal("900.00")),
        RfmRow(2, 10, 6, Decimal("300.00")),
        RfmRow(3, 10, 1, Decimal("20.00")),
        RfmRow(4, 90, 4, Decimal("300.00")),
        RfmRow(5, 400, 9, Decimal("650.00")),
    ]
    # R (reversed, n = 5): 400 -> 1, 90 -> 2, 10 -> 3 (both), 3 -> 5.
    # F: 1 -> 1, 4 -> 2, 6 -> 3, 9 -> 4, 12 -> 5.
    # M: 20 -> 1, 300 -> 2 (both), 650 -> 4, 900 -> 5.
    got = {s.customer_id: (s.r, s.f, s.m, s.segment) for s in score_rfm(rows)}
    assert got == {
        1: (5, 5, 5, "champions"),
        2: (3, 3, 2, "need_attention"),  # FM = (3 + 2 + 1) // 2 = 3
        3: (3, 1, 1, "about_to_sleep"),
        4: (2, 2, 2, "hibernating"),
        5: (1, 4, 4, "at_risk"),
    }


values = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=200)


@given(values, st.booleans())
def test_scores_are_always_between_1_and_5(xs: list[int], reverse: bool) -> None:
    assert all(1 <= s <= 5 for s in quintile_scores(xs, reverse=reverse))


@given(values)
def test_scores_are_monotone_in_the_value_and_equal_for_ties(xs: list[int]) -> None:
    scores = quintile_scores(xs)
    reversed_scores = quintile_scores(xs, reverse=True)
    for a, sa, ra in zip(xs, scores, reversed_scores, strict=True):
        for b, sb, rb in zip(xs, scores, reversed_scores, strict=True):
            if a < b:
                assert sa <= sb and ra >= rb
            if a == b:
                assert sa == sb and ra == rb


@given(st.lists(st.integers(), min_size=1, max_size=200, unique=True))
def test_distinct_values_give_quintiles_of_equal_size(xs: list[int]) -> None:
    scores = quintile_scores(xs)
    sizes = [scores.count(s) for s in range(1, 6)]
    n = len(xs)
    assert all(n // 5 <= size <= n // 5 + 1 for size in sizes)
    assert scores[xs.index(min(xs))] == 1
    assert n < 5 or scores[xs.index(max(xs))] == 5
