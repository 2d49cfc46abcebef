"""Pure RFM rules: quintile scores with ties, and the (R, FM) grid of named segments.

Everything here works on plain values; ``scoring.service`` runs the same rules in SQL (window
functions and a CASE generated from :data:`SEGMENT_GRID`), and the tests check that both agree.

Quintile rule (docs/scoring.md): a customer's score is ``1 + floor(5 * below / n)``, where ``n``
is the number of customers scored and ``below`` the number of them whose value is strictly
worse. Equal values therefore always get the same score (the score of the quintile where their
group starts), the worst value always gets 1, and with distinct values the five scores hold
equal shares of the customers. Recency is reversed: fewer days since the last purchase is
better, so ``below`` counts the customers whose last purchase is strictly older.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

SCORES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class RfmSegment:
    code: str
    name: str
    description: str


RFM_SEGMENTS: tuple[RfmSegment, ...] = (
    RfmSegment("champions", "Champions", "bought recently, buy often and spend the most"),
    RfmSegment("loyal", "Loyal", "buy often and spend well; not quite the most recent"),
    RfmSegment(
        "potential_loyalists", "Potential loyalists", "recent buyers with average frequency"
    ),
    RfmSegment("new", "New", "bought very recently, but little so far"),
    RfmSegment("promising", "Promising", "recent buyers who have not spent much yet"),
    RfmSegment("need_attention", "Need attention", "average on all three: worth a nudge"),
    RfmSegment("about_to_sleep", "About to sleep", "below average recency and frequency"),
    RfmSegment("at_risk", "At risk", "bought often and spent well, but long ago"),
    RfmSegment("cant_lose", "Can't lose", "were among the best, and have not come back"),
    RfmSegment("hibernating", "Hibernating", "last purchase long ago, few and small purchases"),
    RfmSegment("lost", "Lost", "the oldest last purchases, few and small purchases"),
)
SEGMENT_CODES: tuple[str, ...] = tuple(s.code for s in RFM_SEGMENTS)

# The R x FM grid: one row per R score (5 at the top), one column per FM score (1 to 5).
# It is the widely published 5 x 5 RFM grid (read on R and the average of F and M instead of
# F alone), with "lost" split off from "hibernating" at R = 1, as in the published ranges
# ("lost": R <= 1 and FM <= 2).
_GRID_ROWS: dict[int, tuple[str, str, str, str, str]] = {
    5: ("new", "potential_loyalists", "potential_loyalists", "champions", "champions"),
    4: ("promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"),
    3: ("about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"),
    1: ("lost", "lost", "at_risk", "at_risk", "cant_lose"),
}
SEGMENT_GRID: Mapping[tuple[int, int], str] = {
    (r, fm): code for r, row in _GRID_ROWS.items() for fm, code in zip(SCORES, row, strict=True)
}


def fm_score(f: int, m: int) -> int:
    """The average of the F and M scores, rounded half up: ``fm_score(4, 5) == 5``,
    ``fm_score(2, 3) == 3``, ``fm_score(1, 1) == 1``."""
    return (f + m + 1) // 2


def segment_of(r: int, f: int, m: int) -> str:
    """The segment code of R, F and M scores (each 1-5).

    >>> segment_of(5, 5, 4)
    'champions'
    >>> segment_of(1, 1, 2)
    'lost'
    """
    if not (r in SCORES and f in SCORES and m in SCORES):
        raise ValueError(f"RFM scores are 1 to 5, got R={r} F={f} M={m}")
    return SEGMENT_GRID[(r, fm_score(f, m))]


def quintile_scores(values: Sequence[int | float | Decimal], *, reverse: bool = False) -> list[int]:
    """Score 1-5 of each value among ``values`` (5 = highest, or lowest with ``reverse``):
    ``1 + floor(5 * below / n)`` with ``below`` the count of strictly worse values, so ties
    share a score.

    >>> quintile_scores([10, 20, 20, 30, 40])
    [1, 2, 2, 4, 5]
    >>> quintile_scores([3, 0, 0, 7, 1], reverse=True)
    [2, 4, 4, 1, 3]
    """
    n = len(values)
    if n == 0:
        return []
    ordered = sorted(values, reverse=reverse)
    below: dict[int | float | Decimal, int] = {}
    for index, value in enumerate(ordered):
        below.setdefault(value, index)  # the first position of a value = values strictly worse
    return [1 + (5 * below[v]) // n for v in values]


@dataclass(frozen=True)
class RfmRow:
    customer_id: int
    recency_days: int
    frequency: int
    monetary: Decimal


@dataclass(frozen=True)
class RfmScore:
    customer_id: int
    r: int
    f: int
    m: int
    segment: str


def score_rfm(rows: Sequence[RfmRow]) -> list[RfmScore]:
    """R, F, M scores and segment of each customer of one scope (customers with at least one
    purchase), in the order given."""
    r = quintile_scores([row.recency_days for row in rows], reverse=True)
    f = quintile_scores([row.frequency for row in rows])
    m = quintile_scores([row.monetary for row in rows])
    return [
        RfmScore(row.customer_id, ri, fi, mi, segment_of(ri, fi, mi))
        for row, ri, fi, mi in zip(rows, r, f, m, strict=True)
    ]
