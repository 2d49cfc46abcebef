"""The customer API serializes the services' dataclasses as they are (customers/api.py): their
fields must be the documented models' fields (customers/schemas.py), in the same order, so
that what the OpenAPI description says is what the answers hold."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

from tournesol.customers import schemas, search, view360

PAIRS: list[tuple[type[Any], type[BaseModel]]] = [
    (view360.Customer360, schemas.CustomerOut),
    (view360.FieldSource, schemas.FieldSourceOut),
    (view360.IdentifierItem, schemas.IdentifierOut),
    (view360.RecordItem, schemas.RecordOut),
    (view360.OrganisationItem, schemas.OrganisationOut),
    (view360.ConsentItem, schemas.ConsentOut),
    (view360.PreferenceItem, schemas.PreferenceOut),
    (view360.TransactionSummary, schemas.TransactionSummaryOut),
    (view360.MergeItem, schemas.MergeOut),
    (view360.SegmentItem, schemas.SegmentOut),
    (view360.RfmItem, schemas.RfmOut),
    (view360.ScoreItem, schemas.ScoreOut),
    (view360.TimelineItem, schemas.TimelineItemOut),
    (search.SearchHit, schemas.SearchHitOut),
]


@pytest.mark.parametrize(("data", "model"), PAIRS, ids=[m.__name__ for _, m in PAIRS])
def test_each_answer_dataclass_has_its_models_fields_in_order(
    data: type[Any], model: type[BaseModel]
) -> None:
    assert [f.name for f in dataclasses.fields(data)] == list(model.model_fields)


def test_the_golden_record_holds_the_golden_models_fields_in_order() -> None:
    assert list(view360.GOLDEN_COLUMNS) == list(schemas.GoldenOut.model_fields)
