"""The probabilistic model's definition: the settings render for DuckDB and Spark, compare only
profile columns, and, trained on a small synthetic base, score obvious duplicates high."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlglot
from splink import SettingsCreator
from splink.internals.settings import Settings
from sqlglot import exp

from tournesol.identity import engine as engine_module
from tournesol.identity import splink_settings
from tournesol.identity.engine import RECORD_COLUMNS, TF_COLUMNS, Engine, ScoredPair
from tournesol.identity.features import PROFILE_COLUMNS
from tournesol.identity.nicknames import canonical_first_name

COMPARED = {
    "first_name",
    "last_name",
    "birth_date",
    "email",
    "phone_mobile",
    "phone_fixed",
    "postal_code",
    "gender",
}
DIALECTS = ("duckdb", "spark")


def _columns(sql: str, dialect: str) -> set[str]:
    return {column.name for column in sqlglot.parse_one(sql, read=dialect).find_all(exp.Column)}


def _conditions(settings_dict: dict[str, Any]) -> Iterator[str]:
    for comparison in settings_dict["comparisons"]:
        for level in comparison["comparison_levels"]:
            if level["sql_condition"] != "ELSE":
                yield level["sql_condition"]


def _rule_sql(rules: list[Any], dialect: str) -> list[str]:
    return [rule.get_blocking_rule(dialect).blocking_rule_sql for rule in rules]


# --- settings ------------------------------------------------------------------------------


def test_thresholds() -> None:
    assert 0 < splink_settings.LOWER_THRESHOLD < splink_settings.UPPER_THRESHOLD < 1
    assert splink_settings.MAX_SHARED_IDENTIFIER > 1


def test_settings_build_for_duckdb() -> None:
    creator = splink_settings.settings()
    assert isinstance(creator, SettingsCreator)
    settings = creator.get_settings("duckdb")
    assert isinstance(settings, Settings)
    assert settings._link_type == "dedupe_only"
    assert [c.output_column_name for c in settings.comparisons] == [
        "first_name",
        "last_name",
        "birth_date",
        "email",
        "phone_mobile",
        "phone_fixed",
        "postal_code",
        "gender",
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_settings_dict_renders(dialect: str) -> None:
    d = splink_settings.settings().create_settings_dict(dialect)
    assert d["link_type"] == "dedupe_only"
    assert d["unique_id_column_name"] == "unique_id"
    assert d["probability_two_random_records_match"] == 1e-5
    assert (d["retain_matching_columns"], d["retain_intermediate_calculation_columns"]) == (
        False,
        False,
    )
    assert {c["output_column_name"] for c in d["comparisons"]} == COMPARED
    assert len(d["blocking_rules_to_generate_predictions"]) == len(
        splink_settings.prediction_blocking_rules()
    )
    for comparison in d["comparisons"]:
        levels = comparison["comparison_levels"]
        assert levels[0].get("is_null_level") is True, comparison["output_column_name"]
        assert levels[-1]["sql_condition"] == "ELSE"
        assert sum(1 for level in levels if level.get("is_null_level")) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_condition_parses_and_uses_profile_columns(dialect: str) -> None:
    d = splink_settings.settings().create_settings_dict(dialect)
    used: set[str] = set()
    for sql in _conditions(d):
        columns = _columns(sql, dialect)
        assert columns, sql
        assert all(c.endswith(("_l", "_r")) for c in columns), sql
        used |= {c[:-2] for c in columns}
    assert used <= set(PROFILE_COLUMNS)
    # names, nicknames, maiden names, street: compared as parts of other comparisons
    assert used == COMPARED | {"first_name_canon", "maiden_name", "street"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_blocking_rules_use_profile_columns(dialect: str) -> None:
    d = splink_settings.settings().create_settings_dict(dialect)
    rules = [rule["blocking_rule"] for rule in d["blocking_rules_to_generate_predictions"]]
    rules += _rule_sql(splink_settings.training_blocking_rules(), dialect)
    rules += _rule_sql(splink_settings.deterministic_rules_for_prior(), dialect)
    for sql in rules:
        tree = sqlglot.parse_one(sql, read=dialect)
        columns = list(tree.find_all(exp.Column))
        assert columns, sql
        assert {c.table for c in columns} == {"l", "r"}, sql
        assert {c.name for c in columns} <= set(PROFILE_COLUMNS), sql


def test_every_strong_identifier_blocks() -> None:
    sql = _rule_sql(splink_settings.prediction_blocking_rules(), "duckdb")
    single = {next(iter(_columns(s, "duckdb"))) for s in sql if len(_columns(s, "duckdb")) == 1}
    assert single >= {
        "email",
        "phone_mobile",
        "phone_fixed",
        "loyalty_card",
        "account_id",
        "work_email",
    }


def test_term_frequencies_are_those_the_engine_computes() -> None:
    d = splink_settings.settings().create_settings_dict("duckdb")
    tf = {
        level["tf_adjustment_column"]
        for comparison in d["comparisons"]
        for level in comparison["comparison_levels"]
        if level.get("tf_adjustment_column")
    }
    assert tf == set(TF_COLUMNS)


def test_custom_sql_is_translated_for_spark() -> None:
    # The DuckDB-only functions of the custom levels do not reach Spark.
    spark = list(_conditions(splink_settings.settings().create_settings_dict("spark")))
    text = " ".join(spark).lower()
    assert "strpos(" not in text
    assert "substr(" not in text
    assert "locate(" in text
    assert "jaro_winkler(" in text
    duckdb = " ".join(_conditions(splink_settings.settings().create_settings_dict("duckdb")))
    assert "strpos(" in duckdb.lower()
    assert "jaro_winkler_similarity(" in duckdb


def test_settings_are_built_fresh_each_time() -> None:
    assert splink_settings.settings() is not splink_settings.settings()
    a = splink_settings.settings().create_settings_dict("duckdb")
    b = splink_settings.settings().create_settings_dict("duckdb")
    assert a == b


# --- end to end on a small synthetic base --------------------------------------------------

FIRST = ["JEAN", "MARIE", "PIERRE", "SOPHIE", "LUC", "CLAIRE", "PAUL", "ANNE", "LOUIS", "EMMA"]
FIRST += ["HUGO", "LEA", "NATHALIE", "THOMAS", "JULIE", "NICOLAS", "CAMILLE", "ANTOINE"]
LAST = ["MARTIN", "BERNARD", "DUBOIS", "ROBERT", "RICHARD", "PETIT", "DURAND", "LEROY"]
LAST += ["MOREAU", "SIMON", "LAURENT", "LEFEBVRE", "MICHEL", "GARCIA", "DAVID", "ROUX"]
LAST += ["VINCENT", "FOURNIER", "MOREL", "GIRARD", "ANDRE", "MERCIER", "LAMBERT", "BONNET"]
POSTAL_CODES = ["37000", "37100", "75011", "69003", "33000", "44000"]
STREETS = ["RUE HAUTE", "RUE BASSE", "RUE DU LAVOIR", "AVENUE DES LILAS", "PLACE DU MARCHE"]

DIANE, DIANE_AGAIN, PAUL_OTHER = 9001, 9002, 9003
B2B_CATHY, CATHERINE = 9004, 9005
PLACEHOLDER = range(9100, 9110)


def _row(uid: int, **fields: Any) -> tuple[Any, ...]:
    fields.setdefault("first_name_canon", canonical_first_name(fields.get("first_name")))
    return (uid, uid, *(fields.get(c) for c in PROFILE_COLUMNS))


def _synthetic(persons: int, seed: int) -> tuple[list[tuple[Any, ...]], dict[int, int]]:
    """Records of ``persons`` people, 40 % of them twice with gaps; record -> person."""
    rnd = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    person_of: dict[int, int] = {}
    for person in range(persons):
        gender = rnd.choice("MF")
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        birth = f"{rnd.randint(1940, 2005)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        email = f"{first.lower()}.{last.lower()}{rnd.randint(1, 999)}@example.fr"
        mobile = f"+336{rnd.randint(10**7, 10**8 - 1)}"
        postal = rnd.choice(POSTAL_CODES)
        street = f"{rnd.randint(1, 99)} {rnd.choice(STREETS)}"
        for copy in range(1 if rnd.random() < 0.6 else 2):
            uid = len(rows) + 1
            person_of[uid] = person
            rows.append(
                _row(
                    uid,
                    first_name=first,
                    last_name=last,
                    gender=gender,
                    birth_date=birth if copy == 0 or rnd.random() < 0.7 else None,
                    email=email if copy == 0 or rnd.random() < 0.6 else None,
                    phone_mobile=mobile if rnd.random() < 0.7 else None,
                    postal_code=postal,
                    street=street,
                )
            )
    return rows, person_of


def _hand_made() -> list[tuple[Any, ...]]:
    diane = {
        "first_name": "DIANE",
        "last_name": "BODIN",
        "gender": "F",
        "birth_date": "1985-10-07",
        "email": "diane_bodin@hotmail.com",
        "phone_mobile": "+33669072807",
        "phone_fixed": "+33270908144",
        "postal_code": "37100",
        "city": "TOURS",
        "street": "28 RUE DU LAVOIR",
        "loyalty_card": "2990105257431",
    }
    couturier = {"last_name": "COUTURIER", "postal_code": "37000", "city": "TOURS"}
    rows = [
        _row(DIANE, **diane),
        _row(DIANE_AGAIN, **{**diane, "phone_fixed": None, "loyalty_card": None}),
        _row(
            PAUL_OTHER,
            first_name="PAUL",
            last_name="FOURNIER",
            gender="M",
            birth_date="1952-03-30",
            email="pfournier@orange.fr",
            phone_mobile="+33611223344",
            postal_code="69003",
            city="LYON",
            street="4 PLACE DU MARCHE",
        ),
        # A B2B contact and the same person's own record: nicknamed, no birth date.
        _row(
            B2B_CATHY,
            first_name="CATHY",
            siret="30017521300028",
            work_email="c.couturier@latelier.fr",
            work_phone="+33642788173",
            **couturier,
        ),
        _row(
            CATHERINE,
            first_name="CATHERINE",
            gender="F",
            email="c.couturier@latelier.fr",
            phone_mobile="+33642788173",
            **couturier,
        ),
    ]
    # A shop's mailbox typed in for walk-in customers.
    rows += [
        _row(uid, first_name=FIRST[i], last_name=LAST[i], email="contact@boutique.fr")
        for i, uid in enumerate(PLACEHOLDER)
    ]
    return rows


@dataclass
class Scored:
    engine: Engine
    model: dict[str, Any]
    pairs: str
    candidates: dict[tuple[int, int], ScoredPair]
    person_of: dict[int, int]

    def scored(self) -> set[tuple[int, int]]:
        return {(a, b) for a, b in self.engine.run(f"SELECT a, b FROM {self.pairs}")}


@pytest.fixture(scope="module")
def scored() -> Iterator[Scored]:
    rows, person_of = _synthetic(240, seed=20240607)
    rows += _hand_made()
    assert all(len(row) == len(RECORD_COLUMNS) for row in rows)
    engine = Engine(threads=2)
    try:
        engine.load("records", engine_module.records_table(rows))
        model = engine.train("records")
        pairs = engine.predict_all(model, "records")
        candidates = {
            (p.a, p.b): p
            for p in engine.candidate_pairs(pairs, "records", lower=splink_settings.LOWER_THRESHOLD)
        }
        yield Scored(engine, model, pairs, candidates, person_of)
    finally:
        engine.close()


def test_records_table_columns_and_types() -> None:
    table = engine_module.records_table([_row(1, first_name="DIANE"), _row(2)])
    assert table.column_names == list(RECORD_COLUMNS)
    assert table.num_rows == 2
    assert str(table.schema.field("unique_id").type) == "int64"
    assert str(table.schema.field("first_name").type) == "string"
    assert engine_module.records_table([]).num_rows == 0


def test_training_learns_a_model(scored: Scored) -> None:
    model = scored.model
    assert 0 < model["probability_two_random_records_match"] < 0.05
    assert model["tournesol_training_notes"] == []
    assert {c["output_column_name"] for c in model["comparisons"]} == COMPARED
    assert "tournesol_training_notes" not in engine_module.splink_model(model)


def test_obvious_duplicates_score_high(scored: Scored) -> None:
    pair = scored.candidates[(DIANE, DIANE_AGAIN)]
    assert pair.probability > 0.9
    assert pair.weight > 0


def test_clearly_different_persons_are_not_candidates(scored: Scored) -> None:
    for other in (DIANE, DIANE_AGAIN):
        assert (other, PAUL_OTHER) not in scored.candidates
        assert (other, PAUL_OTHER) not in scored.scored()


def test_candidate_pairs_are_ordered_and_bounded(scored: Scored) -> None:
    assert scored.candidates
    for (a, b), pair in scored.candidates.items():
        assert a < b
        assert 0.0 <= pair.probability <= 1.0


def test_synthetic_duplicates_are_found_and_namesakes_kept_apart(scored: Scored) -> None:
    person_of = scored.person_of
    truth = {(a, b) for a in person_of for b in person_of if a < b and person_of[a] == person_of[b]}
    linked = {
        pair
        for pair, p in scored.candidates.items()
        if p.probability >= splink_settings.UPPER_THRESHOLD and pair[1] in person_of
    }
    assert len(truth) > 50
    assert len(linked & truth) / len(truth) >= 0.9  # recall
    assert len(linked & truth) / len(linked) >= 0.95  # precision
    names = scored.engine.run("SELECT unique_id, first_name, last_name FROM records")
    name_of = {uid: (first, last) for uid, first, last in names}
    namesakes = {
        (a, b)
        for a, b in scored.scored()
        if b in person_of and person_of[a] != person_of[b] and name_of[a] == name_of[b]
    }
    assert len(namesakes) > 20  # scored, since names block
    assert not namesakes & linked


def test_a_work_email_found_as_the_other_personal_email_is_a_candidate(scored: Scored) -> None:
    assert (B2B_CATHY, CATHERINE) in scored.candidates


def test_a_mailbox_shared_by_many_records_does_not_block(scored: Scored) -> None:
    assert len(PLACEHOLDER) > splink_settings.MAX_SHARED_IDENTIFIER
    shared = {(a, b) for a in PLACEHOLDER for b in PLACEHOLDER if a < b}
    assert not shared & scored.scored()
