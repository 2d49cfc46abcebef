"""A base of a handful of records trains and scores: the estimates mean little, but nothing
breaks (the first import of a small file runs the resolution)."""

from __future__ import annotations

from tournesol.identity import engine as engine_module
from tournesol.identity.engine import Engine, records_table
from tournesol.identity.features import PROFILE_COLUMNS


def row(uid: int, first: str, last: str, email: str | None) -> tuple[object, ...]:
    values = dict.fromkeys(PROFILE_COLUMNS)
    values.update(first_name=first, first_name_canon=first, last_name=last, email=email)
    return (uid, uid, *values.values())


def test_four_records_train_and_score() -> None:
    rows = [
        row(1, "JEAN", "DUPONT", "jean@free.fr"),
        row(2, "JEAN", "DUPONT", "jean@free.fr"),
        row(3, "ANNE", "MARTIN", None),
        row(4, "LUC", "PETIT", "luc@free.fr"),
    ]
    engine = Engine()
    try:
        engine.load("records", records_table(rows))
        model = engine.train("records")
        assert 0 < model["probability_two_random_records_match"] <= engine_module.MAX_PRIOR
        pairs = engine.predict_all(model, "records")
        found = {(p.a, p.b) for p in engine.candidate_pairs(pairs, "records", lower=0.0)}
        assert (1, 2) in found
    finally:
        engine.close()
