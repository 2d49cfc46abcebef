"""Search ranks all its candidates at once (``customers.search._ranked``: rapidfuzz's cdist and
array maxima); each score must be the one :func:`customers.search._name_score` gives a
customer alone, and the order the documented one (score, then last name, first name, id)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.customers import search
from tournesol.customers.rules import plain_name

LETTERS = "ABDEGILMNORSTUÉÈÇ"
name = st.one_of(
    st.none(),
    st.just(""),
    st.text(LETTERS + " -'", max_size=14),
    st.sampled_from(["Dupont", "Dupond", "Martin", "Le Goff", "Jean-Pierre", "Élodie", "MARTINEZ"]),
)
typed = st.lists(
    st.one_of(st.text(LETTERS, min_size=1, max_size=9), st.sampled_from(["DUP", "MART", "JEAN"])),
    min_size=1,
    max_size=3,
)


def row(
    customer_id: int, first: str | None, last: str | None, maiden: str | None
) -> tuple[Any, ...]:
    values = {
        "id": customer_id,
        "first_name": first,
        "last_name": last,
        "maiden_name": maiden,
        "customer_type": "customer",
    }
    return tuple(values.get(column) for column in search.HIT_COLUMNS)


@settings(max_examples=300, deadline=None)
@given(typed, st.lists(st.tuples(name, name, name), max_size=25))
def test_ranking_all_candidates_at_once_scores_each_as_alone(
    words_typed: list[str], people: list[tuple[str | None, str | None, str | None]]
) -> None:
    words = tuple(w for text in words_typed for w in plain_name(text).split())
    if not words:
        return
    rows = [row(i + 1, *names) for i, names in enumerate(people)]
    rows += rows[:2]  # a customer read twice counts once
    hits = search._ranked(rows, words, "name", limit=100)
    expected = sorted(
        (
            (search._name_score(words, first, last, maiden), last or "", first or "", i + 1)
            for i, (first, last, maiden) in enumerate(people)
        ),
        key=lambda e: (-e[0], e[1], e[2], e[3]),
    )
    kept = [e for e in expected if e[0] >= search.MIN_SCORE]
    assert [(h.score, h.customer_id) for h in hits] == [(e[0], e[3]) for e in kept]


def test_examples_of_scores() -> None:
    rows = [
        row(1, "Jean", "Dupont", None),
        row(2, "Marie", "Martin", "Dupond"),  # the maiden name sounds alike
        row(3, "Paul", "Durand", None),
        row(4, "Jeanne", "Dupontel", None),  # the last word typed starts her name
    ]
    hits = search._ranked(rows, ("DUPONT",), "name", limit=10)
    assert [(h.customer_id, h.score) for h in hits] == [(1, 100.0), (4, 95.0), (2, 90.0)]
    both = search._ranked(rows, ("JEAN", "DUP"), "name", limit=10)
    assert [h.customer_id for h in both][:2] == [1, 4]
    assert search._ranked([], ("DUPONT",), "name", limit=10) == []
