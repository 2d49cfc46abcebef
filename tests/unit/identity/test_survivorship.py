"""Golden-record survivorship: each rule, ties, validity, groups, provenance, the rules file."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.customers.rules import GOLDEN_FIELDS
from tournesol.identity.survivorship import (
    ADDRESS_COLUMNS,
    COLUMNS,
    AttributeRule,
    Candidate,
    Golden,
    Provenance,
    SurvivorshipRules,
    build_golden,
    load_rules,
)
from tournesol.quality.names import identity_line

RULES = load_rules()
FIELD_OF = {column: name for name, column in GOLDEN_FIELDS.items()}
ADDRESS_FIELDS = [FIELD_OF[c] for c in ADDRESS_COLUMNS]

# The loyalty record of the brief, as stored in source_record.normalized.
DIANE: dict[str, Any] = {
    "address_line1": "Mme Diane BODIN",
    "address_line6": "37100 TOURS",
    "address_street": "28 RUE DU LAVOIR",
    "birth_date": "1985-10-07",
    "city": "Tours",
    "civility": "Mme",
    "country": "FR",
    "created_at": "2014-11-06",
    "customer_type": "customer",
    "email": "diane_bodin@hotmail.com",
    "email_key": "diane_bodin@hotmail.com",
    "first_name": "Diane",
    "first_name_key": "DIANE",
    "gender": "F",
    "identifiers": {"email": "diane_bodin@hotmail.com", "card": "L-0001"},
    "insee_code": "37261",
    "last_name": "Bodin",
    "last_name_key": "BODIN",
    "phone_fixed": "+33270908144",
    "phone_mobile": "+33669072807",
    "postal_code": "37100",
    "quality": {
        "completeness": 1.0,
        "fields": {
            "address": {"original": "28 rue du Lavoir | 37100 | TOURS", "valid": True},
            "birth_date": {"valid": True},
            "civility": {"flags": ["CIVILITY_MLLE_REPLACED"], "original": "Mlle", "valid": True},
            "email": {"valid": True},
            "last_name": {"flags": ["NAME_CASE_FIXED"], "original": "BODIN", "valid": True},
            "phone_fixed": {"valid": True},
            "phone_mobile": {"valid": True},
        },
        "score": 100,
        "version": 1,
    },
    "quality_score": 100,
}


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def cand(
    record_id: int,
    source: str = "loyalty",
    rank: int = 5,
    seen: datetime | None = None,
    invalid: tuple[str, ...] = (),
    **values: Any,
) -> Candidate:
    """A candidate whose quality section marks the ``invalid`` quality fields invalid."""
    quality = {"fields": {name: {"valid": False} for name in invalid}}
    return Candidate(record_id, source, rank, seen, {**values, "quality": quality})


def only(
    columns: tuple[str, ...],
    rule: Any,
    tie_break: tuple[Any, ...] = (),
    valid_only: bool = True,
    sources: tuple[str, ...] = (),
) -> SurvivorshipRules:
    return SurvivorshipRules((AttributeRule("x", columns, rule, valid_only, tie_break, sources),))


def winner(golden: Golden, column: str) -> int:
    return golden.provenance[column].record_id


# --- each rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "candidates", "expected"),
    [
        # source_priority without a list: the lowest trust_rank
        ("source_priority", [cand(1, rank=3, email="a@x.fr"), cand(2, rank=1, email="b@x.fr")], 2),
        # most_recent: the latest seen_at, an unknown one is oldest
        (
            "most_recent",
            [cand(1, seen=at(2), email="a@x.fr"), cand(2, seen=at(3), email="b@x.fr")],
            2,
        ),
        ("most_recent", [cand(1, rank=1, email="a@x.fr"), cand(2, seen=at(1), email="b@x.fr")], 2),
        # most_recent: equal seen_at, then the record's own updated_at (offsets honoured)...
        (
            "most_recent",
            [
                cand(1, seen=at(5), email="a@x.fr", updated_at="2024-01-02T00:30:00+00:00"),
                cand(2, seen=at(5), email="b@x.fr", updated_at="2024-01-01T23:00:00-02:00"),
            ],
            2,
        ),
        # ... else its created_at (a date)
        (
            "most_recent",
            [
                cand(1, rank=1, email="a@x.fr", created_at="2014-11-06"),
                cand(2, rank=9, email="b@x.fr", created_at="2019-03-01"),
            ],
            2,
        ),
        # most_frequent: values compared stripped and casefolded
        (
            "most_frequent",
            [
                cand(1, rank=1, email="solo@x.fr"),
                cand(2, rank=4, email="Two@X.fr "),
                cand(3, rank=3, email="two@x.fr"),
            ],
            3,
        ),
        # most_complete on one column: the longest value
        ("most_complete", [cand(1, rank=1, email="a@x.fr"), cand(2, email="abcdef@x.fr")], 2),
    ],
)
def test_each_rule_picks_its_record(rule: str, candidates: list[Candidate], expected: int) -> None:
    golden = build_golden(candidates, only(("email",), rule))
    assert winner(golden, "email") == expected
    assert golden.provenance["email"].rule == rule
    chosen = next(c for c in candidates if c.record_id == expected)
    assert golden.values["email"] == chosen.values["email"].strip()


def test_source_priority_follows_the_sources_list_then_trust_rank() -> None:
    candidates = [
        cand(1, source="contest", rank=1, email="c@x.fr"),
        cand(2, source="loyalty", rank=2, email="l@x.fr"),
        cand(3, source="ecommerce", rank=3, email="e@x.fr"),
    ]
    listed = only(("email",), "source_priority", sources=("ecommerce", "loyalty"))
    assert winner(build_golden(candidates, listed), "email") == 3
    # an unlisted source comes after the listed ones
    assert winner(build_golden(candidates[:1] + candidates[1:2], listed), "email") == 2


def test_most_complete_on_a_group_counts_filled_columns() -> None:
    rules = only(ADDRESS_COLUMNS, "most_complete")
    candidates = [
        cand(1, rank=1, city="Tours", postal_code="37100"),
        cand(2, rank=9, city="Tours", postal_code="37100", address_street="28 RUE DU LAVOIR"),
    ]
    golden = build_golden(candidates, rules)
    assert golden.values["address_line4"] == "28 RUE DU LAVOIR"
    assert {p.record_id for p in golden.provenance.values()} == {2}


# --- ties -----------------------------------------------------------------------------------


def test_tie_break_rules_apply_in_order() -> None:
    candidates = [
        cand(1, rank=1, seen=at(1), email="a@x.fr"),
        cand(2, rank=5, seen=at(9), email="b@x.fr"),
    ]
    # one vote each: most_frequent ties, most_recent decides (against the trust rank)
    rules = only(("email",), "most_frequent", tie_break=("most_recent", "source_priority"))
    assert winner(build_golden(candidates, rules), "email") == 2
    rules = only(("email",), "most_frequent", tie_break=("source_priority", "most_recent"))
    assert winner(build_golden(candidates, rules), "email") == 1


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        # everything ties but the trust rank
        ([cand(1, rank=4, seen=at(1)), cand(2, rank=3, seen=at(1))], 2),
        # same rank: the most recent
        ([cand(1, rank=3, seen=at(1)), cand(2, rank=3, seen=at(2))], 2),
        # same rank, same time: the lowest record id
        ([cand(7, rank=3, seen=at(1)), cand(4, rank=3, seen=at(1))], 4),
        ([cand(7, rank=3), cand(4, rank=3)], 4),
    ],
)
def test_final_tie_break_is_rank_then_recency_then_record_id(
    candidates: list[Candidate], expected: int
) -> None:
    # most_complete on equal-length values ties
    candidates = [
        Candidate(c.record_id, c.source, c.trust_rank, c.seen_at, {"email": f"{c.record_id}@x.fr"})
        for c in candidates
    ]
    rules = only(("email",), "most_complete")
    assert winner(build_golden(candidates, rules), "email") == expected
    assert winner(build_golden(candidates[::-1], rules), "email") == expected


# --- validity -------------------------------------------------------------------------------


def test_an_invalid_recent_email_loses_to_a_valid_older_one() -> None:
    candidates = [
        cand(1, seen=at(1), email="diane@hotmail.com"),
        cand(2, seen=at(9), email="diane@hotmial", invalid=("email",)),
    ]
    golden = build_golden(candidates, RULES)
    assert golden.values["email"] == "diane@hotmail.com"
    assert golden.provenance["email"] == Provenance(1, "loyalty", "most_recent")


def test_only_invalid_values_leave_the_column_empty_unless_valid_only_is_off() -> None:
    candidates = [cand(1, email="diane@hotmial", invalid=("email",))]
    golden = build_golden(candidates, only(("email",), "most_recent"))
    assert golden.values["email"] is None
    assert "email" not in golden.provenance
    golden = build_golden(candidates, only(("email",), "most_recent", valid_only=False))
    assert golden.values["email"] == "diane@hotmial"


def test_an_invalid_address_is_skipped_whole() -> None:
    old = cand(1, seen=at(1), city="Tours", postal_code="37100", address_street="28 RUE DU LAVOIR")
    new = cand(2, seen=at(9), city="Toures", postal_code="99999", invalid=("address",))
    golden = build_golden([old, new], RULES)
    assert golden.values["city"] == "Tours"
    assert golden.values["postal_code"] == "37100"


# --- groups ---------------------------------------------------------------------------------


def test_the_address_never_mixes_two_records() -> None:
    old = cand(
        1,
        rank=1,
        seen=at(1),
        address_street="28 RUE DU LAVOIR",
        address_line6="37100 TOURS",
        postal_code="37100",
        city="Tours",
        insee_code="37261",
        country="FR",
    )
    # a newer record (a contest entry) only knows a town: the deliverable address stays,
    # whole, and never takes the other record's town
    new = cand(2, rank=6, seen=at(9), postal_code="75011", city="Paris", country="FR")
    golden = build_golden([old, new], RULES)
    address = {c: golden.values[c] for c in ADDRESS_COLUMNS}
    assert address == {c: old.values.get(FIELD_OF[c]) for c in ADDRESS_COLUMNS}
    assert {golden.provenance[c].record_id for c in ADDRESS_COLUMNS if address[c]} == {1}
    # equally full addresses: the latest wins (the person moved), still whole
    moved = cand(3, rank=6, seen=at(9), address_street="3 RUE OBERKAMPF",
                 address_line6="75011 PARIS", postal_code="75011", city="Paris",
                 insee_code="75111", country="FR")  # fmt: skip
    golden = build_golden([old, moved], RULES)
    assert golden.values["address_line4"] == "3 RUE OBERKAMPF"
    assert {golden.provenance[c].record_id for c in ADDRESS_COLUMNS if golden.values[c]} == {3}


def test_civility_and_gender_come_from_one_record() -> None:
    candidates = [
        cand(1, rank=1, gender="M"),
        cand(2, rank=1, gender="M"),
        cand(3, rank=8, civility="Mme", gender="F"),
    ]
    golden = build_golden(candidates, RULES)
    assert (golden.values["civility"], golden.values["gender"]) == ("Mme", "F")
    assert winner(golden, "civility") == winner(golden, "gender") == 3


# --- special columns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("types", "expected", "record"),
    [
        (["prospect", "customer", "prospect"], "customer", 2),
        (["prospect", "prospect"], "prospect", 1),
        (["customer", "customer"], "customer", 1),
        ([None, None], None, None),
    ],
)
def test_customer_type_is_customer_if_any_record_says_so(
    types: list[str | None], expected: str | None, record: int | None
) -> None:
    candidates = [cand(i, customer_type=t) for i, t in enumerate(types, start=1)]
    golden = build_golden(candidates, RULES)
    assert golden.values["customer_type"] == expected
    if record is None:
        assert "customer_type" not in golden.provenance
    else:
        assert golden.provenance["customer_type"] == Provenance(record, "loyalty", "any_customer")


def test_quality_score_comes_from_the_record_that_provided_most_columns() -> None:
    rich = cand(1, rank=9, seen=at(1), first_name="Diane", email="d@x.fr", quality_score=60)
    poor = cand(2, rank=1, seen=at(2), first_name="Diane", quality_score=95)
    golden = build_golden([rich, poor], RULES)
    # one column each (first_name by source priority to poor, email to rich): the tie goes
    # to the most recent record, poor
    assert golden.values["quality_score"] == 95
    # rich now provides two columns (email, phone_fixed) against poor's one
    rich = cand(1, rank=9, seen=at(1), email="d@x.fr", phone_fixed="+33270908144", quality_score=60)
    golden = build_golden([rich, poor], RULES)
    assert golden.values["quality_score"] == 60
    assert golden.provenance["quality_score"] == Provenance(1, "loyalty", "top_contributor")


def test_address_line1_is_rebuilt_from_the_golden_names() -> None:
    candidates = [
        cand(1, rank=1, civility="Mme", first_name="Diane", last_name="Bodin", address_line1="x"),
        cand(2, rank=2, first_name="Diane", last_name="Martin", address_line1="Diane MARTIN"),
        cand(3, rank=3, last_name="Martin"),
    ]
    golden = build_golden(candidates, RULES)
    assert golden.values["address_line1"] == "Mme Diane MARTIN"
    assert golden.provenance["address_line1"] == Provenance(2, "loyalty", "derived")


def test_no_candidates_and_repeated_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_golden([], RULES)
    with pytest.raises(ValueError, match="repeat"):
        build_golden([cand(1, email="a@x.fr"), cand(1, email="b@x.fr")], RULES)


def test_a_single_candidate_is_its_own_golden_record() -> None:
    golden = build_golden([Candidate(42, "loyalty", 2, at(1), DIANE)], RULES)
    expected = {column: DIANE.get(name) for name, column in GOLDEN_FIELDS.items()}
    expected["birth_date"] = date(1985, 10, 7)
    assert golden.values == expected
    assert isinstance(golden.values["quality_score"], int)
    filled = {column for column, value in expected.items() if value is not None}
    assert set(golden.provenance) == filled
    assert {p.record_id for p in golden.provenance.values()} == {42}
    assert golden.provenance_json()["email"] == {
        "record": 42,
        "source": "loyalty",
        "rule": "most_recent",
    }
    assert golden.provenance_json()["last_name"]["rule"] == "most_frequent"


# --- properties -----------------------------------------------------------------------------

SOURCES = {"b2b": 3, "loyalty": 2, "ecommerce": 3, "contest": 6}
POOLS: dict[str, list[Any]] = {
    "civility": ["M.", "Mme"],
    "gender": ["M", "F"],
    "first_name": ["Diane", "DIANE", "Marc"],
    "last_name": ["Bodin", "Martin"],
    "birth_date": ["1985-10-07", "1985-07-10"],
    "email": ["d@x.fr", "D@x.fr", "m@y.fr"],
    "phone_mobile": ["+33669072807", "+33612345678"],
    "language": ["fr", "en"],
    "customer_type": ["customer", "prospect"],
    "quality_score": [40, 100],
    "updated_at": ["2020-01-01", "2023-05-01T10:00:00+02:00"],
}
ADDRESSES = [
    {"address_street": "28 RUE DU LAVOIR", "postal_code": "37100", "city": "Tours"},
    {"postal_code": "75011", "city": "Paris", "country": "FR", "insee_code": "75111"},
]


@st.composite
def records(draw: st.DrawFn) -> list[Candidate]:
    ids = draw(st.lists(st.integers(1, 30), min_size=1, max_size=5, unique=True))
    out = []
    for record_id in ids:
        values = {k: v for k, pool in POOLS.items() if (v := draw(st.sampled_from([None, *pool])))}
        values.update(draw(st.sampled_from([{}, *ADDRESSES])))
        invalid = draw(st.sets(st.sampled_from(["email", "birth_date", "address", "civility"])))
        values["quality"] = {"fields": {name: {"valid": False} for name in invalid}}
        source = draw(st.sampled_from(sorted(SOURCES)))
        seen = draw(st.sampled_from([None, at(1), at(2), at(2, 12)]))
        out.append(Candidate(record_id, source, SOURCES[source], seen, values))
    return out


@settings(max_examples=300, deadline=None)
@given(candidates=records(), data=st.data())
def test_golden_does_not_depend_on_the_order_of_candidates(
    candidates: list[Candidate], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(candidates))
    first, second = build_golden(candidates, RULES), build_golden(shuffled, RULES)
    assert first.values == second.values
    assert first.provenance_json() == second.provenance_json()


@settings(max_examples=300, deadline=None)
@given(candidates=records())
def test_every_golden_value_is_its_provenance_records_value(candidates: list[Candidate]) -> None:
    golden = build_golden(candidates, RULES)
    by_id = {c.record_id: c for c in candidates}
    assert set(golden.values) == set(COLUMNS)
    for column, value in golden.values.items():
        if value is None:
            assert column not in golden.provenance
            continue
        origin = golden.provenance[column]
        record = by_id[origin.record_id]
        assert origin.source == record.source
        if origin.rule == "derived":
            names = golden.values
            assert value == identity_line(
                names["civility"], names["first_name"], names["last_name"]
            )
            continue
        raw = record.values[FIELD_OF[column]]
        assert value == (date.fromisoformat(raw) if column == "birth_date" else raw)
        assert record.values["quality"]["fields"].get(quality_name(column), {}).get("valid", True)
    address_records = {golden.provenance[c].record_id for c in ADDRESS_COLUMNS if golden.values[c]}
    assert len(address_records) <= 1


def quality_name(column: str) -> str:
    return "address" if column in ADDRESS_COLUMNS else FIELD_OF[column]


# --- the rules file -------------------------------------------------------------------------


def test_packaged_rules_cover_every_column_once() -> None:
    covered = [c for a in RULES.attributes for c in a.columns]
    assert sorted(covered) == sorted(c for c in COLUMNS if c != "address_line1")
    groups = {a.name: a for a in RULES.attributes}
    assert set(groups["address"].columns) == set(ADDRESS_COLUMNS)
    assert groups["email"].rule == "most_recent" and groups["email"].valid_only


def test_unlisted_columns_take_the_defaults_and_the_address_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("defaults: {rule: most_recent, valid_only: false}\n", encoding="utf-8")
    rules = load_rules(path)
    assert all(a.rule == "most_recent" and not a.valid_only for a in rules.attributes)
    assert ADDRESS_COLUMNS in [a.columns for a in rules.attributes]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("attributes:\n  email: {rule: latest}\n", ["email", "latest"]),
        ("attributes:\n  emial: {rule: most_recent}\n", ["emial", "unknown attribute"]),
        ("attributes:\n  contact: {columns: [email, fax]}\n", ["contact", "fax"]),
        ("attributes:\n  email: {rul: most_recent}\n", ["email.rul"]),
        ("defaults: {tie_break: [top_contributor]}\n", ["defaults.tie_break", "top_contributor"]),
        ("attributes:\n  town: {columns: [city, postal_code]}\n", ["town", "address_line4"]),
        ("attributes:\n  email: {rule: any_customer}\n", ["email", "any_customer"]),
        ("attributes:\n  address_line1: {rule: most_recent}\n", ["address_line1", "derived"]),
        (
            "attributes:\n  a: {columns: [email]}\n  b: {columns: [email, language]}\n",
            ["'b'", "already in 'a'"],
        ),
        ("- email\n", ["YAML mapping"]),
        ("attributes: {email: [\n", ["not valid YAML"]),
    ],
)
def test_a_bad_rules_file_names_the_file_and_the_fault(
    tmp_path: Path, text: str, named: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert str(path) in message
    for part in named:
        assert part in message


def test_a_missing_rules_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ValueError, match=re.escape(f"cannot read survivorship rules {path}")):
        load_rules(path)
