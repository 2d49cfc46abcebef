"""The segment language without a database: validation errors that point at the faulty node,
random valid trees that validate and compile to SQL with every value bound, random faults
found where they were put, the JSON Schema kept in step with the models, YAML/JSON loading,
and the pure rules (departments and regions from postal codes, ages as birth-date ranges)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from tournesol.segments import rules
from tournesol.segments.compiler import DefinitionError, compile_definition, validate
from tournesol.segments.schemas import (
    NODE_KEYS,
    SCHEMA_FILE,
    json_schema_text,
    load_definition,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def behaviour(**spec: Any) -> dict[str, Any]:
    return {"behaviour": {"of": "purchases", "measure": "count", "op": "gte", "value": 1, **spec}}


# One valid leaf of every kind, with every attribute and most op shapes.
LEAVES: list[dict[str, Any]] = [
    {"attribute": "gender", "op": "eq", "value": "F"},
    {"attribute": "gender", "op": "in", "value": ["M", "F"]},
    {"attribute": "age", "op": "between", "value": [25, 45]},
    {"attribute": "age", "op": "not_in", "value": [18, 19]},
    {"attribute": "age", "op": "lt", "value": 30},
    {"attribute": "birth_date", "op": "gte", "value": "1980-01-01"},
    {"attribute": "postal_code", "op": "starts_with", "value": "75"},
    {"attribute": "postal_code", "op": "is_null"},
    {"attribute": "department", "op": "in", "value": ["2A", "2B", "974"]},
    {"attribute": "department", "op": "ne", "value": "75"},
    {"attribute": "region", "op": "eq", "value": "Île-de-France"},
    {"attribute": "region", "op": "is_not_null"},
    {"attribute": "city", "op": "starts_with", "value": "Saint-"},
    {"attribute": "country", "op": "eq", "value": "FR"},
    {"attribute": "language", "op": "ne", "value": "fr"},
    {"attribute": "brand", "op": "eq", "value": "SOLEIL"},
    {"attribute": "zone", "op": "not_in", "value": ["NORD"]},
    {"attribute": "customer_type", "op": "eq", "value": "prospect"},
    {"attribute": "quality_score", "op": "gte", "value": 60},
    {"attribute": "created_at", "op": "gt", "value": {"days_ago": 30}},
    {"attribute": "b2b", "op": "eq", "value": True},
    {"attribute": "naf_code", "op": "starts_with", "value": "47"},
    {"attribute": "headcount_band", "op": "in", "value": ["10-19", "20-49"]},
    {"attribute": "org_class", "op": "is_null"},
    {"reachable": "postal"},
    {"identifier": "loyalty_card"},
    {"consent": {"channel": "email"}},
    {"consent": {"channel": "sms", "purpose": "partners", "brand": "LUNE", "status": "denied"}},
    {"preference": {"channel": "phone", "preferred": True}},
    {"preference": {"language": "fr"}},
    {"preference": {"day": "sat", "channel": "phone"}},
    behaviour(window={"last_days": 180}),
    behaviour(measure="amount", op="between", value=[10, 99.5], window={"last_days": 45}),
    behaviour(measure="average_basket", op="gt", value=50),
    behaviour(measure="last_date", op="lt", value={"days_ago": 365}),
    behaviour(measure="first_date", op="is_null", value=None),
    behaviour(where={"category": ["MODE"], "store": ["M01"]}, window={"from": "2025-01-01"}),
    {
        "behaviour": {
            "of": "interactions",
            "measure": "count",
            "where": {"direction": "inbound", "campaign": ["C1"], "type": ["call"]},
            "window": {"from": "2025-01-01", "to": "2025-12-31"},
            "op": "eq",
            "value": 0,
        }
    },
    {"rfm": {"segment": ["champions", "loyal"]}},
    {"rfm": {"scope": "SOLEIL", "r": [1, 2], "m": [5]}},
    {"score": {"model": "churn", "op": "gte", "value": 0.7}},
    {"score": {"model": "purchase_90d", "op": "is_null"}},
    {"segment": "vip"},
]
SAVED = {"vip": {"rfm": {"segment": ["champions"]}}}


def test_every_node_kind_has_a_leaf_here() -> None:
    kinds = {next(k for k in leaf if k in NODE_KEYS) for leaf in LEAVES}
    assert kinds | {"all", "any", "not"} == set(NODE_KEYS)


trees = st.recursive(
    st.sampled_from(LEAVES),
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda nodes: {"all": nodes}),
        st.lists(children, min_size=1, max_size=4).map(lambda nodes: {"any": nodes}),
        children.map(lambda node: {"not": node}),
    ),
    max_leaves=12,
)


def literal_values(sql: str) -> list[str]:
    return re.findall(r"'[^']*'|(?<![\w:])\d+(?:\.\d+)?(?![\w])", sql)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, features=st.booleans())
def test_random_valid_trees_validate_and_compile_with_every_value_bound(
    tree: dict[str, Any], features: bool
) -> None:
    model = validate(tree)
    assert validate(model) is model
    compiled = compile_definition(
        tree, now=NOW, features_as_of=NOW if features else None, resolve=SAVED.__getitem__
    )
    assert compiled.path in ("features", "raw", "mixed")
    sql = str(compiled.query)
    assert sql.startswith("SELECT customer.id")
    assert literal_values(sql) == []
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled.query.compile(dialect=dialect)


# A broken leaf, where below it the error is reported, and what the message says.
FAULTS: list[tuple[Any, str, str]] = [
    ({"attribute": "agee", "op": "eq", "value": 1}, ".attribute", "is not one of"),
    ({"attribute": "age", "op": "starts_with", "value": "3"}, ".op", "does not apply to age"),
    ({"attribute": "age", "op": "gte", "value": "18"}, ".value", "whole number"),
    ({"attribute": "age", "op": "in", "value": [18, "x"]}, ".value[1]", "whole number"),
    ({"attribute": "age", "op": "between", "value": [45, 25]}, ".value", "above"),
    ({"attribute": "age", "op": "between", "value": [25]}, ".value", "two values"),
    ({"attribute": "age", "op": "is_null", "value": 3}, ".value", "takes no value"),
    ({"attribute": "age", "op": "eq"}, ".value", "needs a value"),
    ({"attribute": "gender", "op": "eq", "value": "X"}, ".value", "M, F"),
    ({"attribute": "postal_code", "op": "eq", "value": 75011}, ".value", "in quotes"),
    ({"attribute": "department", "op": "eq", "value": "20"}, ".value", "not a department"),
    ({"attribute": "region", "op": "eq", "value": "Narnia"}, ".value", "not a region"),
    ({"attribute": "country", "op": "eq", "value": "France"}, ".value", "ISO code"),
    ({"attribute": "created_at", "op": "gte", "value": "2025-02-30"}, ".value", "YYYY-MM-DD"),
    ({"attribute": "created_at", "op": "gte", "value": {"days": 3}}, ".value", "days_ago"),
    (
        {"attribute": "birth_date", "op": "lte", "value": "9999-12-31"},
        ".value",
        "from 1800 to 2200",
    ),
    (behaviour(window={"to": "0001-01-01"}), ".behaviour.window.to", "from 1800 to 2200"),
    ({"attribute": "b2b", "op": "eq", "value": "yes"}, ".value", "true or false"),
    ({"attribute": "age", "op": "eq", "value": 30, "extra": 1}, ".extra", "unknown key"),
    ({"attribute": "age", "value": 30}, ".op", "required"),
    ({"foo": 1}, "", "not a node"),
    ({"attribute": "age", "reachable": "email"}, "", "one node per object"),
    ([{"attribute": "age"}], "", "a node is an object"),
    ({"any": []}, ".any", "matches nobody"),
    ({"not": None}, ".not", "a node is an object"),
    ({"reachable": "fax"}, ".reachable", "is not one of"),
    ({"identifier": "Bad Kind"}, ".identifier", "not a valid identifier"),
    ({"consent": {"channel": "email", "status": "maybe"}}, ".consent.status", "is not one of"),
    ({"consent": {"purpose": "marketing"}}, ".consent.channel", "required"),
    ({"preference": {"preferred": True}}, ".preference.channel", "needs the channel"),
    ({"preference": {"language": "fr", "day": "mon"}}, ".preference", "a preference is"),
    (behaviour(window={"days": 30}), ".behaviour.window", "a window is"),
    (behaviour(window={"last_days": 0}), ".behaviour.window.last_days", "at least 1"),
    (
        behaviour(window={"from": "2025-02-01", "to": "2025-01-01"}),
        ".behaviour.window.to",
        "before",
    ),
    (behaviour(of="interactions", measure="amount"), ".behaviour.measure", "no amount"),
    (behaviour(where={"campaign": ["C1"]}), ".behaviour.where.campaign", "filtered by"),
    (behaviour(where={"store": []}), ".behaviour.where.store", "empty list"),
    (behaviour(where={"store": [42]}), ".behaviour.where.store[0]", "in quotes"),
    (behaviour(measure="amount", op="in", value=[1]), ".behaviour.op", "does not apply"),
    (behaviour(measure="last_date", op="gte", value=3), ".behaviour.value", "a date"),
    (behaviour(op="gte", value=-1), ".behaviour.value", "from 0"),
    ({"rfm": {"segment": ["champions", "vips"]}}, ".rfm.segment[1]", "not an RFM segment"),
    ({"rfm": {"r": [6]}}, ".rfm.r[0]", "at most 5"),
    ({"rfm": {"segment": ["lost"], "r": [1]}}, ".rfm.r", "not both"),
    ({"rfm": {"scope": "all"}}, ".rfm", "give segment"),
    ({"score": {"model": "churn", "op": "gte", "value": 2}}, ".score.value", "between 0 and 1"),
    (
        {"score": {"model": "churn", "op": "starts_with", "value": "0"}},
        ".score.op",
        "does not apply",
    ),
    ({"segment": 12}, ".segment", "expected text"),
]


def node_paths(tree: Any, path: str = "$") -> list[str]:
    """Every node's path in a valid tree."""
    out = [path]
    for key in ("all", "any"):
        for i, child in enumerate(tree.get(key, [])):
            out += node_paths(child, f"{path}.{key}[{i}]")
    if "not" in tree:
        out += node_paths(tree["not"], f"{path}.not")
    return out


def put(tree: Any, path: str, node: Any) -> Any:
    if path == "$":
        return node
    out = copy.deepcopy(tree)
    steps = re.findall(r"\.(\w+)|\[(\d+)\]", path)
    target = out
    for name, index in steps[:-1]:
        target = target[name] if name else target[int(index)]
    name, index = steps[-1]
    target[name if name else int(index)] = node
    return out


@settings(max_examples=200, deadline=None)
@given(tree=trees, fault=st.sampled_from(FAULTS), data=st.data())
def test_a_fault_anywhere_in_a_tree_is_reported_at_its_path(
    tree: dict[str, Any], fault: tuple[Any, str, str], data: st.DataObject
) -> None:
    broken, below, fragment = fault
    where = data.draw(st.sampled_from(node_paths(tree)))
    bad = put(tree, where, broken)
    with pytest.raises(DefinitionError) as caught:
        compile_definition(bad, now=NOW, resolve=SAVED.__getitem__)
    if where == "$" and isinstance(broken, list):
        assert caught.value.path == "$"
    else:
        assert caught.value.path == where + below, caught.value
    assert fragment in caught.value.message, caught.value
    assert str(caught.value) == f"{caught.value.path}: {caught.value.message}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 400) | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from([*NODE_KEYS, "op", "value", "eq", "in", "between", "last_days", "days_ago"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from([*NODE_KEYS, "op", "value", "of", "measure", "window", "where", "channel", "x"]),
        inner,
        max_size=4,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(anything=json_values)
def test_any_json_either_compiles_or_is_a_definition_error(anything: Any) -> None:
    try:
        compile_definition(anything, now=NOW, resolve=SAVED.__getitem__)
    except DefinitionError as exc:
        assert exc.path.startswith("$") and exc.message


def test_every_problem_is_listed_the_first_one_leading() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate(
            {
                "all": [
                    {"attribute": "age", "op": "gte", "value": 18},
                    {"attribute": "gender", "op": "eq", "value": "X"},
                    {"behaviour": {"of": "purchases", "measure": "count", "window": {"last": 3}}},
                ]
            }
        )
    error = caught.value
    assert (error.path, error.message) == ("$.all[1].value", "gender is one of M, F, not 'X'")
    assert [path for path, _ in error.problems] == [
        "$.all[1].value",
        "$.all[2].behaviour.window",
        "$.all[2].behaviour.op",
    ]


def test_a_definition_nested_too_deep_is_refused_at_the_deepest_node() -> None:
    tree: dict[str, Any] = {"reachable": "email"}
    for _ in range(30):
        tree = {"not": tree}
    with pytest.raises(DefinitionError) as caught:
        validate(tree)
    assert caught.value.path == "$" + ".not" * 24
    assert "nested more than 24" in caught.value.message


def test_definitions_too_wide_or_too_large_are_refused() -> None:
    leaf = {"reachable": "email"}
    with pytest.raises(DefinitionError) as wide:
        validate({"not": {"any": [leaf] * 201}})
    assert (wide.value.path, wide.value.message) == ("$.not.any", "too many entries: at most 200")
    with pytest.raises(DefinitionError) as large:
        validate({"all": [{"all": [leaf] * 150}] * 7})
    assert "more than 1000 conditions" in large.value.message


def test_large_counts_compile_at_once() -> None:
    for op in ("gte", "lt", "ne", "between", "in"):
        value: Any = [10**9, 10**12] if op in ("between", "in") else 10**12
        compiled = compile_definition(behaviour(op=op, value=value), now=NOW)
        assert "count(*)" in str(compiled.query)


def test_naive_reference_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        compile_definition({"all": []}, now=datetime(2026, 1, 1))


def test_the_committed_json_schema_is_the_one_the_models_produce() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema_text(), (
        "regenerate: python -m tournesol.segments.schemas > src/tournesol/segments/segment.schema.json"
    )
    schema = json.loads(json_schema_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert len(schema["oneOf"]) == len(NODE_KEYS)
    attribute = schema["$defs"]["AttributeNode"]["properties"]["attribute"]
    assert "naf_code" in attribute["enum"]
    segments = schema["$defs"]["RfmSpec"]["properties"]["segment"]["anyOf"][0]["items"]
    assert segments["enum"] == list(rules.SEGMENT_NAMES)


# --- loading YAML and JSON ------------------------------------------------------------------


def test_yaml_text_json_text_and_files_load_to_the_same_definition(tmp_path: Path) -> None:
    yaml_text = """
all:
  - {attribute: region, op: eq, value: "11"}
  - behaviour:
      of: purchases
      measure: count
      window: {from: 2025-01-01, to: 2025-12-31}
      op: gte
      value: 2
"""
    expected = {
        "all": [
            {"attribute": "region", "op": "eq", "value": "11"},
            {
                "behaviour": {
                    "of": "purchases",
                    "measure": "count",
                    "window": {"from": "2025-01-01", "to": "2025-12-31"},  # dates as text
                    "op": "gte",
                    "value": 2,
                }
            },
        ]
    }
    assert load_definition(yaml_text) == expected
    assert load_definition(json.dumps(expected)) == expected
    (tmp_path / "seg.yaml").write_text(yaml_text, encoding="utf-8")
    (tmp_path / "seg.json").write_text(json.dumps(expected), encoding="utf-8")
    assert load_definition(tmp_path / "seg.yaml") == expected
    assert load_definition(str(tmp_path / "seg.json")) == expected
    validate(load_definition(yaml_text))


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("missing-file.yaml", "cannot read missing-file.yaml"),
        ("all: [", "not valid YAML or JSON (line 1"),
        ("- attribute: age", "must hold one node"),
        ("", "must hold one node"),
        ("just words", "must hold one node"),
    ],
)
def test_unreadable_definitions_are_definition_errors(source: str, fragment: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source)
    assert caught.value.path == "$"
    assert fragment in caught.value.message


# --- the reference docs --------------------------------------------------------------------


def doc_definitions() -> list[str]:
    text = (ROOT / "docs/segments.md").read_text(encoding="utf-8")
    return re.findall(r"```(?:yaml|json)\n(.*?)```", text, flags=re.S)


def test_every_definition_in_the_reference_compiles() -> None:
    blocks = doc_definitions()
    assert len(blocks) >= 20
    saved = {"vip": {"rfm": {"segment": ["champions"]}}, "ile_de_france": {"attribute": "region", "op": "eq", "value": "11"}}  # fmt: skip
    for block in blocks:
        definition = load_definition(block)
        compile_definition(definition, now=NOW, features_as_of=NOW, resolve=saved.__getitem__)


# --- rules: departments and regions ----------------------------------------------------------


def test_department_of_and_postal_set_are_inverses_over_every_postal_code() -> None:
    by_sets: dict[str, str] = {}
    for department in rules.DEPARTMENTS:
        postal = rules.postal_set(department)
        for prefix in postal.prefixes:
            width = 5 - len(prefix)
            for n in range(10**width):
                code = prefix + (f"{n:0{width}d}" if width else "")
                if code in postal.excluded:
                    continue
                assert code not in by_sets, (code, department, by_sets.get(code))
                by_sets[code] = department
    for n in range(100_000):
        code = f"{n:05d}"
        assert rules.department_of(code) == by_sets.get(code), code


@pytest.mark.parametrize(
    ("postal_code", "department", "region"),
    [
        ("75011", "75", "11"),
        ("93200", "93", "11"),
        ("01000", "01", "84"),
        ("13001", "13", "93"),
        ("20000", "2A", "94"),
        ("20167", "2A", "94"),
        ("20199", "2A", "94"),
        ("20200", "2B", "94"),
        ("20600", "2B", "94"),
        ("20700", None, None),
        ("97100", "971", "01"),
        ("97200", "972", "02"),
        ("97300", "973", "03"),
        ("97400", "974", "04"),
        ("97600", "976", "06"),
        ("97500", "975", None),
        ("97133", "977", None),
        ("97150", "978", None),
        ("98800", "988", None),
        ("98000", None, None),  # Monaco
        ("00100", None, None),
        ("96000", None, None),
        ("7501", None, None),
        (None, None, None),
    ],
)
def test_departments_and_regions_of_postal_codes(
    postal_code: str | None, department: str | None, region: str | None
) -> None:
    assert rules.department_of(postal_code) == department
    assert rules.region_of(postal_code) == region


def test_a_foreign_country_has_no_department() -> None:
    assert rules.department_of("75011", country="FR") == "75"
    assert rules.department_of("75011", country="DE") is None
    assert rules.region_of("69001", country="BE") is None


def test_every_department_belongs_to_one_region() -> None:
    listed = [d for ds in rules.REGION_DEPARTMENTS.values() for d in ds]
    assert len(listed) == len(set(listed)) == 96 + 5
    metropolitan = {f"{n:02d}" for n in range(1, 96) if n != 20} | {"2A", "2B"}
    assert metropolitan <= set(listed)
    assert set(rules.REGIONS) == set(rules.REGION_DEPARTMENTS)
    assert rules.region_of_department("2B") == "94"
    assert rules.region_of_department("977") is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("11", "11"),
        ("Île-de-France", "11"),
        ("ile de france", "11"),
        ("ILE-DE-FRANCE", "11"),
        ("Provence-Alpes-Côte d'Azur", "93"),
        ("provence alpes cote d azur", "93"),
        ("Auvergne-Rhône-Alpes", "84"),
        ("La Réunion", "04"),
        ("Corse", "94"),
        ("Narnia", None),
        ("12", None),
    ],
)
def test_regions_are_named_by_code_or_name(text: str, code: str | None) -> None:
    assert rules.region_code(text) == code


@given(
    prefix=st.text("0123456789", min_size=1, max_size=5),
    code=st.text("0123456789", min_size=5, max_size=5),
)
def test_a_prefix_and_its_upper_bound_delimit_the_codes_that_start_with_it(
    prefix: str, code: str
) -> None:
    bound = rules.prefix_upper_bound(prefix)
    inside = code >= prefix and (bound is None or code < bound)
    assert inside == code.startswith(prefix)


# --- rules: ages ---------------------------------------------------------------------------

dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(birth=dates, today=dates, years=st.integers(0, 120))
def test_years_before_is_the_last_birth_date_of_that_age(
    birth: date, today: date, years: int
) -> None:
    if today.year - years < 1:
        return
    assert (rules.age_on(birth, today) >= years) == (birth <= rules.years_before(today, years))


@given(birth=dates, today=dates, low=st.integers(0, 100), span=st.integers(0, 30))
def test_birth_range_holds_exactly_the_ages_asked(
    birth: date, today: date, low: int, span: int
) -> None:
    high = low + span
    if today.year - high - 1 < 1:
        return
    bounds = rules.birth_range(low, high, today)
    assert bounds.after is not None and bounds.until is not None
    inside = bounds.after < birth <= bounds.until
    assert inside == (low <= rules.age_on(birth, today) <= high)


def test_ages_around_29_february() -> None:
    leap = date(2000, 2, 29)
    assert rules.age_on(leap, date(2026, 2, 28)) == 25
    assert rules.age_on(leap, date(2026, 3, 1)) == 26
    assert rules.years_before(date(2028, 2, 29), 1) == date(2027, 2, 28)
    assert rules.years_before(date(2026, 2, 28), 26) == date(2000, 2, 28)
    assert rules.birth_range(26, 26, date(2026, 3, 1)).until == date(2000, 3, 1)
    assert rules.birth_range(None, 17, date(2026, 6, 15)).after == date(2008, 6, 15)
    assert rules.birth_range(18, None, date(2026, 6, 15)).until == date(2008, 6, 15)


def test_rfm_segment_names_are_the_ones_scoring_assigns() -> None:
    from tournesol.scoring.rules import SEGMENT_CODES

    assert rules.SEGMENT_NAMES == SEGMENT_CODES
    assert "champions" in rules.SEGMENT_NAMES
