"""The probabilistic pass on Splink's DuckDB backend, in process.

``Engine`` holds one in-memory DuckDB database for one resolution run: the records' profiles
go in as Arrow tables, the model is trained (EM) or loaded, pairs come out scored. Everything
Splink-specific stays here and in ``splink_settings``; the rest of ``identity`` sees plain
tuples.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import splink
from splink import DuckDBAPI, Linker
from splink.internals.exceptions import SplinkException

from tournesol.identity import splink_settings
from tournesol.identity.features import PROFILE_COLUMNS, STRONG_IDENTIFIERS

# Columns whose exact matches are weighted by how rare the value is (term frequencies).
TF_COLUMNS = ("first_name", "last_name", "email")
RECORD_COLUMNS = ("unique_id", "customer_id", *PROFILE_COLUMNS)
SHARED_CHECKED = (
    "email", "phone_mobile", "phone_fixed", "loyalty_card", "account_id", "work_email",
    "work_phone",
)  # fmt: skip
SPLINK_VERSION = splink.__version__
# EM needs pairs of one person, not all of them: above this many records it learns from a
# random sample (the prior, probability that two records match, is estimated on all).
TRAINING_SAMPLE = 400_000
# The prior estimated on a few records can reach 1 (and a match weight of infinity): cap it.
MAX_PRIOR = 0.1


@dataclass(frozen=True, slots=True)
class ScoredPair:
    a: int  # the smaller record id
    b: int
    probability: float
    weight: float


def splink_model(model: dict[str, Any]) -> dict[str, Any]:
    """The stored model without Tournesol's own notes (keys starting with ``tournesol_``)."""
    return {k: v for k, v in model.items() if not k.startswith("tournesol_")}


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def records_table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """An Arrow table of profiles: tuples in RECORD_COLUMNS order."""
    columns: list[Sequence[Any]] = (
        list(zip(*rows, strict=True)) if rows else [[] for _ in RECORD_COLUMNS]
    )
    arrays = [
        pa.array(columns[0], pa.int64()),
        pa.array(columns[1], pa.int64()),
        *(pa.array(col, pa.string()) for col in columns[2:]),
    ]
    return pa.Table.from_arrays(arrays, names=list(RECORD_COLUMNS))


class Engine:
    def __init__(self, *, threads: int | None = None) -> None:
        self.con = duckdb.connect(":memory:")
        if threads:
            self.run(f"SET threads TO {int(threads)}")
        self.run("SET preserve_insertion_order = false")
        self.api = DuckDBAPI(connection=self.con)
        self.cleaned: set[str] = set()
        logging.getLogger("splink").setLevel(logging.ERROR)

    def run(self, sql: str, params: list[Any] | None = None) -> list[Any]:
        """Execute a statement to the end (DuckDB refuses new work while a result is open)."""
        return self.con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self.con.close()

    def load(self, name: str, table: pa.Table) -> None:
        """Materialise an Arrow table as a DuckDB table ``name``."""
        self.con.register(f"{name}_arrow", table)
        self.run(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
        self.con.unregister(f"{name}_arrow")
        self.cleaned.discard(name)

    def drop_shared_identifiers(self, name: str) -> None:
        """Blank, in profiles table ``name``, the identifiers held by more than
        MAX_SHARED_IDENTIFIER records (a shop's phone, ``contact@...``, a placeholder): they
        would block huge groups together and prove nothing. Idempotent."""
        if name in self.cleaned:
            return
        limit = splink_settings.MAX_SHARED_IDENTIFIER
        for column in SHARED_CHECKED:
            self.run(
                f"UPDATE {name} SET {column} = NULL WHERE {column} IN ("
                f"SELECT {column} FROM {name} WHERE {column} IS NOT NULL "
                f"GROUP BY {column} HAVING count(*) > {limit})"
            )
        self.cleaned.add(name)

    def count(self, name: str) -> int:
        return int(self.run(f"SELECT count(*) FROM {name}")[0][0])

    # --- model ---------------------------------------------------------------------------
    def train(self, name: str, *, seed: int = 42) -> dict[str, Any]:
        """Estimate the model on table ``name``: the prior from near-certain pairs on all
        records, u by random sampling, m by EM on each training blocking rule."""
        self.drop_shared_identifiers(name)
        settings = splink_settings.settings()
        linker = Linker(self.api.register(name), settings, log_level=logging.ERROR)
        notes: list[str] = []
        try:
            linker.training.estimate_probability_two_random_records_match(
                splink_settings.deterministic_rules_for_prior(), recall=0.8
            )
        except SplinkException as exc:  # no near-certain pair at all: keep the default prior
            notes.append(f"prior not estimated ({_first_line(exc)})")
        total = self.count(name)
        sample = name
        if total > TRAINING_SAMPLE:
            sample = f"{name}_sample"
            self.run(
                f"CREATE OR REPLACE TABLE {sample} AS SELECT * FROM {name} "
                f"USING SAMPLE reservoir({TRAINING_SAMPLE} ROWS) REPEATABLE ({seed})"
            )
        prior = linker.misc.save_model_to_json()["probability_two_random_records_match"]
        if not 0 < prior <= MAX_PRIOR:  # a handful of records: the estimate means nothing
            notes.append(f"prior {prior!r} out of range, capped")
            prior = min(max(prior, 1e-9), MAX_PRIOR)
        trainer = Linker(self.api.register(sample), settings, log_level=logging.ERROR)
        try:
            trainer.training.estimate_u_using_random_sampling(max_pairs=2_000_000, seed=seed)
        except SplinkException as exc:
            notes.append(f"u not estimated ({_first_line(exc)})")
        for rule in splink_settings.training_blocking_rules():
            try:
                trainer.training.estimate_parameters_using_expectation_maximisation(
                    rule, fix_probability_two_random_records_match=True
                )
            except SplinkException as exc:  # e.g. no pair of records shares that block yet
                notes.append(f"EM pass skipped ({_first_line(exc)})")
            except ValueError as exc:
                # On a small base a level seen in no matching pair can get an m below what a
                # float holds (Splink refuses it): that pass is skipped, the others stand.
                notes.append(f"EM pass skipped ({_first_line(exc)})")
        model = trainer.misc.save_model_to_json()
        model["probability_two_random_records_match"] = prior
        model["tournesol_training_notes"] = notes
        return model

    # --- scoring -------------------------------------------------------------------------
    def _linker(self, model: dict[str, Any], name: str) -> Linker:
        linker = Linker(self.api.register(name), splink_model(model), log_level=logging.ERROR)
        for column in TF_COLUMNS:
            self.run(
                f"CREATE OR REPLACE TABLE tf_{column} AS "
                f"SELECT {column}, count(*)::DOUBLE / (SELECT count({column}) FROM {name}) "
                f"AS tf_{column} FROM {name} WHERE {column} IS NOT NULL GROUP BY {column}"
            )
            linker.table_management.register_term_frequency_lookup(
                self.api.register(f"tf_{column}"), column
            )
        return linker

    def predict_all(self, model: dict[str, Any], name: str) -> str:
        """Score every blocked pair of table ``name``; returns the pairs table's name."""
        self.drop_shared_identifiers(name)
        linker = self._linker(model, name)
        pairs = linker.inference.predict(warning_mode="never")
        return self._pairs_table(pairs.physical_name)

    def predict_new(self, model: dict[str, Any], base: str, new: str, everyone: str) -> str:
        """Score the blocked pairs between ``new`` records and the ``base``, and within the
        new ones; term frequencies come from ``everyone`` (base and new)."""
        linker = self._linker(model, everyone)
        left = self.api.register(new)
        right = self.api.register(base)
        between = linker.inference.predict_between(left, right, warning_mode="never")
        within = linker.inference.predict_within(left, warning_mode="never")
        self.run(
            f"CREATE OR REPLACE TABLE new_pairs AS "
            f"SELECT unique_id_l, unique_id_r, match_probability, match_weight "
            f"FROM {between.physical_name} UNION ALL "
            f"SELECT unique_id_l, unique_id_r, match_probability, match_weight "
            f"FROM {within.physical_name}"
        )
        return self._pairs_table("new_pairs")

    def _pairs_table(self, source: str) -> str:
        self.run(
            "CREATE OR REPLACE TABLE pairs AS SELECT "
            "least(unique_id_l, unique_id_r)::BIGINT AS a, "
            "greatest(unique_id_l, unique_id_r)::BIGINT AS b, "
            "max(match_probability) AS p, max(match_weight) AS w "
            f"FROM {source} GROUP BY 1, 2"
        )
        return "pairs"

    def candidate_pairs(self, pairs: str, records: str, *, lower: float) -> Iterator[ScoredPair]:
        """Pairs worth a decision: in the grey zone or above, or sharing a strong identifier
        (the deterministic rule decides those whatever their score)."""
        strong = " OR ".join(
            f"(x.{k} IS NOT NULL AND x.{k} = y.{k})"
            for k in (*STRONG_IDENTIFIERS, "work_email", "work_phone")
        )
        work = (
            "(x.work_email IS NOT NULL AND x.work_email = y.email) OR "
            "(y.work_email IS NOT NULL AND y.work_email = x.email) OR "
            "(x.work_phone IS NOT NULL AND x.work_phone IN (y.phone_mobile, y.phone_fixed)) OR "
            "(y.work_phone IS NOT NULL AND y.work_phone IN (x.phone_mobile, x.phone_fixed))"
        )
        query = (
            f"SELECT p.a, p.b, p.p, p.w FROM {pairs} p "
            f"JOIN {records} x ON x.unique_id = p.a JOIN {records} y ON y.unique_id = p.b "
            f"WHERE p.p >= ? OR {strong} OR {work} ORDER BY p.a, p.b"
        )
        for a, b, p, w in self.run(query, [lower]):
            yield ScoredPair(int(a), int(b), float(p), float(w))

    def low_pairs_within(
        self, pairs: str, component_of: dict[int, int], *, below: float
    ) -> set[tuple[int, int]]:
        """Pairs the model scored as clearly two persons (probability below ``below``) whose
        records were drawn into one group by links: the evidence the chaining guard needs."""
        if not component_of:
            return set()
        ids = pa.table(
            {
                "rid": pa.array(list(component_of), pa.int64()),
                "comp": pa.array(list(component_of.values()), pa.int64()),
            }
        )
        self.load("components", ids)
        rows = self.run(
            f"SELECT p.a, p.b FROM {pairs} p "
            "JOIN components ca ON ca.rid = p.a JOIN components cb ON cb.rid = p.b "
            "WHERE ca.comp = cb.comp AND p.p < ?",
            [below],
        )
        return {(int(a), int(b)) for a, b in rows}

    def explain(
        self, model: dict[str, Any], left: dict[str, Any], right: dict[str, Any]
    ) -> dict[str, Any]:
        """One pair scored with every comparison's level and match weight."""
        settings = splink_model(model)
        settings["retain_intermediate_calculation_columns"] = True
        settings["retain_matching_columns"] = True
        table = records_table([[left.get(c) for c in RECORD_COLUMNS]])
        self.load("explain_input", table)
        linker = Linker(self.api.register("explain_input"), settings, log_level=logging.ERROR)
        scored = linker.inference.score_pair(left, right)
        row = self.con.execute(f"SELECT * FROM {scored.physical_name}").fetchone()
        names = [
            d[0] for d in self.con.execute(f"SELECT * FROM {scored.physical_name}").description
        ]
        return dict(zip(names, row or (), strict=False))
