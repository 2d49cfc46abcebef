"""The probabilistic model's definition: comparisons, blocking rules, training plan. Pure.

Nothing here knows which engine runs it: the settings are Splink *creators* (comparison and
blocking-rule objects that Splink turns into SQL for the dialect of the database API it is given
at ``Linker`` time), so the same functions serve the in-process DuckDB run and a Spark run
(docs/identity.md, "Scaling out"). Custom SQL is written in DuckDB's dialect and marked so
(``base_dialect_str``): Splink translates it with sqlglot for other engines.

Columns compared are those of ``identity.features.PROFILE_COLUMNS``; ``unique_id`` is the
source record id.
"""

from __future__ import annotations

from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on
from splink.internals.blocking_rule_library import CustomRule

# Match probability at or above which two records are linked; from LOWER up to it, the pair
# waits in the review queue (docs/identity.md explains how they were chosen).
UPPER_THRESHOLD = 0.80
LOWER_THRESHOLD = 0.30
# An identifier shared by more records than this is a placeholder or a shared mailbox
# (``contact@``, a shop's phone): it neither blocks nor links (``Engine.drop_shared_identifiers``
# blanks it in the profiles the model sees).
MAX_SHARED_IDENTIFIER = 8
DUCKDB = "duckdb"


def _first_name() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="first_name",
        comparison_levels=[
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name").configure(tf_adjustment_column="first_name"),
            cll.ExactMatchLevel("first_name_canon").configure(label_for_charts="nickname"),
            cll.JaroWinklerLevel("first_name", 0.92),
            cll.CustomLevel(
                "strpos(first_name_l, first_name_r) > 0 OR strpos(first_name_r, first_name_l) > 0",
                label_for_charts="one name contains the other",
                base_dialect_str=DUCKDB,
            ),
            cll.JaroWinklerLevel("first_name", 0.80),
            cll.ElseLevel(),
        ],
        comparison_description="first name (nicknames, typos, compound names)",
    )


def _last_name() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="last_name",
        comparison_levels=[
            cll.NullLevel("last_name"),
            cll.ExactMatchLevel("last_name").configure(tf_adjustment_column="last_name"),
            cll.CustomLevel(
                "last_name_l = maiden_name_r OR maiden_name_l = last_name_r",
                label_for_charts="maiden name",
                base_dialect_str=DUCKDB,
            ),
            cll.JaroWinklerLevel("last_name", 0.92),
            cll.JaroWinklerLevel("last_name", 0.80),
            cll.ElseLevel(),
        ],
        comparison_description="last name (and maiden name)",
    )


def _birth_date() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="birth_date",
        comparison_levels=[
            cll.NullLevel("birth_date"),
            cll.ExactMatchLevel("birth_date"),
            cll.CustomLevel(
                "substr(birth_date_l, 1, 4) = substr(birth_date_r, 1, 4) "
                "AND substr(birth_date_l, 6, 2) = substr(birth_date_r, 9, 2) "
                "AND substr(birth_date_l, 9, 2) = substr(birth_date_r, 6, 2)",
                label_for_charts="day and month swapped",
                base_dialect_str=DUCKDB,
            ),
            cll.DamerauLevenshteinLevel("birth_date", 1),
            cll.ElseLevel(),
        ],
        comparison_description="birth date (typos, day/month swaps)",
    )


def _postal_code() -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="postal_code",
        comparison_levels=[
            cll.NullLevel("postal_code"),
            cll.And(cll.ExactMatchLevel("postal_code"), cll.ExactMatchLevel("street")).configure(
                label_for_charts="same street address"
            ),
            cll.ExactMatchLevel("postal_code"),
            cll.CustomLevel(
                "substr(postal_code_l, 1, 2) = substr(postal_code_r, 1, 2)",
                label_for_charts="same department",
                base_dialect_str=DUCKDB,
            ),
            cll.ElseLevel(),
        ],
        comparison_description="postal code and street",
    )


def comparisons() -> list[Any]:
    return [
        _first_name(),
        _last_name(),
        _birth_date(),
        cl.EmailComparison("email"),
        cl.ExactMatch("phone_mobile"),
        cl.ExactMatch("phone_fixed"),
        _postal_code(),
        cl.ExactMatch("gender"),
    ]


def prediction_blocking_rules() -> list[Any]:
    """Which pairs are compared at all: those sharing one of these (a union, each pair once)."""
    return [
        block_on("email"),
        block_on("phone_mobile"),
        block_on("phone_fixed"),
        block_on("loyalty_card"),
        block_on("account_id"),
        block_on("work_email"),
        CustomRule("l.work_email = r.email", DUCKDB),
        CustomRule("l.email = r.work_email", DUCKDB),
        CustomRule("l.work_phone = r.phone_mobile", DUCKDB),
        CustomRule("l.phone_mobile = r.work_phone", DUCKDB),
        block_on("last_name", "first_name"),
        block_on("last_name", "birth_date"),
        block_on("first_name_canon", "birth_date"),
        block_on("birth_date", "postal_code"),
        CustomRule("l.maiden_name = r.last_name AND l.first_name = r.first_name", DUCKDB),
        CustomRule("l.last_name = r.maiden_name AND l.first_name = r.first_name", DUCKDB),
    ]


def training_blocking_rules() -> list[Any]:
    """EM passes: each fixes some columns and learns the others' m probabilities."""
    return [
        block_on("last_name", "first_name"),
        block_on("birth_date", "gender"),
    ]


def deterministic_rules_for_prior() -> list[Any]:
    """Pairs almost surely the same person, to estimate how likely two random records match."""
    return [
        block_on("email", "first_name"),
        block_on("last_name", "first_name", "birth_date"),
    ]


def settings() -> SettingsCreator:
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=prediction_blocking_rules(),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        probability_two_random_records_match=1e-5,
    )
