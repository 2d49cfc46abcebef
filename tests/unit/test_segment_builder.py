"""The segment builder's form <-> definition (pure, no database): every kind of row becomes the
node the language expects, values typed as the language wants them; a definition that fits
the form comes back as the same definition through the form (checked on generated ones);
deeper ones stay text; drafts leave out the rows still waiting for a value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.segments import builder
from tournesol.segments.schemas import DefinitionError, validate


def form(*pairs: tuple[str, str]) -> builder.FormState:
    return builder.parse_form(list(pairs))


def test_rows_become_nodes_with_typed_values() -> None:
    state = form(
        ("combine", "any"),
        ("c0.kind", "attribute"), ("c0.attribute", "age"), ("c0.op", "between"),
        ("c0.value", "25"), ("c0.value2", "45"),
        ("c1.kind", "attribute"), ("c1.attribute", "department"), ("c1.op", "in"),
        ("c1.value", "75, 92,93"), ("c1.not", "1"),
        ("c2.kind", "behaviour"), ("c2.of", "purchases"), ("c2.measure", "amount"),
        ("c2.window", "last_days"), ("c2.days", "180"), ("c2.op", "gte"), ("c2.value", "99,5"),
        ("c2.where_channel", "store, web"),
        ("c3.kind", "rfm"), ("c3.scope", "all"), ("c3.by", "segment"),
        ("c3.segments", "champions"), ("c3.segments", "loyal"),
        ("c4.kind", "consent"), ("c4.channel", "sms"), ("c4.status", "granted"),
        ("c5.kind", "behaviour"), ("c5.measure", "last_date"), ("c5.op", "lt"),
        ("c5.unit", "days_ago"), ("c5.value", "365"),
        ("c6.kind", "attribute"), ("c6.attribute", "b2b"), ("c6.op", "eq"), ("c6.value", "oui"),
        ("c7.kind", "attribute"), ("c7.attribute", "birth_date"), ("c7.op", "is_null"),
        ("c7.value", "ignored"),
    )  # fmt: skip
    definition = builder.to_definition(state)
    assert definition == {
        "any": [
            {"attribute": "age", "op": "between", "value": [25, 45]},
            {"not": {"attribute": "department", "op": "in", "value": ["75", "92", "93"]}},
            {
                "behaviour": {
                    "of": "purchases",
                    "measure": "amount",
                    "window": {"last_days": 180},
                    "where": {"channel": ["store", "web"]},
                    "op": "gte",
                    "value": 99.5,
                }
            },
            {"rfm": {"scope": "all", "segment": ["champions", "loyal"]}},
            {
                "consent": {
                    "channel": "sms",
                    "purpose": "marketing",
                    "brand": None,
                    "status": "granted",
                }
            },
            {
                "behaviour": {
                    "of": "purchases",
                    "measure": "last_date",
                    "op": "lt",
                    "value": {"days_ago": 365},
                }
            },
            {"attribute": "b2b", "op": "eq", "value": True},
            {"attribute": "birth_date", "op": "is_null"},
        ]
    }
    validate(definition)  # the language accepts what the form writes


def test_an_empty_form_is_everybody_and_an_unknown_kind_an_attribute() -> None:
    assert builder.to_definition(form(("combine", "all"))) == {"all": []}
    state = form(("c0.kind", "nonsense"), ("c0.attribute", "gender"), ("c0.value", "F"))
    assert builder.to_definition(state) == {
        "all": [{"attribute": "gender", "op": "eq", "value": "F"}]
    }


def test_a_draft_leaves_out_rows_waiting_for_a_value_and_maps_errors_back() -> None:
    state = form(
        ("c0.kind", "attribute"), ("c0.attribute", "gender"), ("c0.value", ""),
        ("c1.kind", "reachable"), ("c1.channel", "email"),
        ("c2.kind", "attribute"), ("c2.attribute", "age"), ("c2.op", "gt"), ("c2.value", "x"),
        ("c3.kind", "rfm"), ("c3.by", "segment"),
    )  # fmt: skip
    draft = builder.draft(state)
    assert draft.kept == (1, 2) and draft.waiting == (0, 3)
    assert draft.definition["all"][0] == {"reachable": "email"}
    with pytest.raises(DefinitionError) as error:
        validate(draft.definition)
    assert error.value.path == "$.all[1].value"
    assert builder.error_row(error.value.path, state, draft.kept) == 2
    assert builder.draft(form(("combine", "any"))).definition == {"all": []}


def test_raw_text_is_json_or_yaml_and_dates_stay_text() -> None:
    assert builder.parse_raw('{"reachable": "sms"}') == {"reachable": "sms"}
    yaml_text = "attribute: created_at\nop: gte\nvalue: 2025-01-31\n"
    assert builder.parse_raw(yaml_text)["value"] == "2025-01-31"
    for bad in ("", "all: [", "- a\n- b\n", "just text"):
        with pytest.raises(builder.FormError):
            builder.parse_raw(bad)


def test_definitions_deeper_than_the_form_stay_text() -> None:
    nested = {"all": [{"any": [{"reachable": "sms"}, {"reachable": "email"}]}]}
    state = builder.to_state(nested)
    assert state.mode == "raw" and '"any"' in state.raw
    leaf = builder.to_state({"reachable": "sms"})
    assert leaf.mode == "form" and builder.to_definition(leaf) == {"all": [{"reachable": "sms"}]}


# --- round trip on generated definitions ---------------------------------------------------

texts = st.sampled_from(["75", "Paris", "fr", "2A", "11"])
attribute_nodes = st.one_of(
    st.builds(
        lambda v: {"attribute": "gender", "op": "eq", "value": v}, st.sampled_from(["M", "F"])
    ),
    st.builds(
        lambda lo, span: {"attribute": "age", "op": "between", "value": [lo, lo + span]},
        st.integers(0, 100),
        st.integers(0, 40),
    ),
    st.builds(
        lambda op, v: {"attribute": "city", "op": op, "value": v},
        st.sampled_from(["eq", "ne", "starts_with"]),
        texts,
    ),
    st.builds(
        lambda vs: {"attribute": "department", "op": "in", "value": vs},
        st.lists(st.sampled_from(["75", "92", "2A", "974"]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda op: {"attribute": "birth_date", "op": op},
        st.sampled_from(["is_null", "is_not_null"]),
    ),
    st.builds(lambda v: {"attribute": "b2b", "op": "eq", "value": v}, st.booleans()),
)
behaviour_nodes = st.builds(
    lambda of, measure, window, op, value: {
        "behaviour": {
            "of": of,
            "measure": measure,
            **({"window": window} if window else {}),
            "op": op,
            "value": value,
        }
    },
    st.sampled_from(["purchases", "interactions"]),
    st.just("count"),
    st.one_of(
        st.none(),
        st.builds(lambda d: {"last_days": d}, st.integers(1, 3650)),
        st.just({"from": "2025-01-01", "to": "2025-12-31"}),
    ),
    st.sampled_from(["gte", "lt", "eq"]),
    st.integers(0, 50),
)
leaves = st.one_of(
    attribute_nodes,
    behaviour_nodes,
    st.builds(lambda c: {"reachable": c}, st.sampled_from(["email", "sms", "phone", "postal"])),
    st.builds(lambda k: {"identifier": k}, st.sampled_from(["loyalty_card", "email"])),
    st.builds(lambda c: {"segment": c}, st.sampled_from(["a", "vip-2"])),
    st.builds(
        lambda ch, st_: {
            "consent": {"channel": ch, "purpose": "marketing", "brand": None, "status": st_}
        },
        st.sampled_from(["email", "sms"]),
        st.sampled_from(["granted", "withdrawn"]),
    ),
    st.builds(
        lambda segs: {"rfm": {"scope": "all", "segment": segs}},
        st.lists(st.sampled_from(["champions", "lost", "new"]), min_size=1, max_size=3),
    ),
    st.builds(
        lambda r: {"rfm": {"scope": "all", "r": r}},
        st.lists(st.integers(1, 5), min_size=1, max_size=3),
    ),
    st.builds(
        lambda v: {"score": {"model": "churn", "op": "gte", "value": v}},
        st.sampled_from([0.25, 0.5, 0.9]),
    ),
    st.builds(lambda lang: {"preference": {"language": lang}}, st.sampled_from(["fr", "en"])),
    st.builds(
        lambda ch: {"preference": {"channel": ch, "preferred": True}},
        st.sampled_from(["email", "sms"]),
    ),
)
rows = st.builds(lambda leaf, neg: {"not": leaf} if neg else leaf, leaves, st.booleans())
definitions = st.builds(
    lambda combine, children: {combine: children},
    st.sampled_from(["all", "any"]),
    st.lists(rows, min_size=1, max_size=6),
)


def _form_items(state: builder.FormState) -> list[tuple[str, str]]:
    """What a browser would post for this form state."""
    items: list[tuple[str, str]] = [("combine", state.combine), ("mode", state.mode)]
    for i, row in enumerate(state.rows):
        items.append((f"c{i}.kind", row.kind))
        if row.negate:
            items.append((f"c{i}.not", "1"))
        items += [(f"c{i}.{k}", v) for k, v in row.values.items()]
        items += [(f"c{i}.{k}", v) for k, vs in row.lists.items() for v in vs]
    return items


@settings(max_examples=300, deadline=None)
@given(definitions)
def test_a_definition_that_fits_the_form_comes_back_unchanged(definition: dict[str, Any]) -> None:
    state = builder.to_state(definition)
    assert state.mode == "form"
    posted = builder.parse_form(_form_items(state))
    assert builder.to_definition(posted) == definition
