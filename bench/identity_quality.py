"""Identity resolution quality: how well the demo's customer records are grouped into customers,
scored pairwise against the generator's ground truth.

    .venv/bin/python bench/identity_quality.py [--persons 5000] [--seed 42]
        [--database-url URL] [--keep DIR] [--json PATH]

The demo dataset is generated and every file imported into a fresh database (by default a
SQLite file next to the dataset); then identity resolution runs over every customer record
(``tournesol.identity.service.resolve(factory, full=True)``, timed). Where it does not exist
yet, the scores are those of the import's own baseline, one customer per record: precision 1,
low recall.

Each customer record (sources loyalty, ecommerce, contest, b2b) is a record key
``(source, source_key)``; the customer it landed in comes from the cross-reference table and
its person from ``truth.csv`` (rows the generator expects to be accepted).
``tournesol.identity.evaluation.score`` counts pairs of records: precision, recall and F1, the
persons split over several customers, the customers mixing persons, and the wrong merges of
persons of one household, of twins and of homonyms. The figures come last, one per line.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from tournesol.identity.evaluation import IdentityScores, TruthRecord, score

RecordKey = tuple[str, str]  # (source, source_key)
FIGURES = (
    "precision",
    "recall",
    "f1",
    "persons_split",
    "customers_mixing_persons",
    "household_pairs_merged",
    "twin_pairs_merged",
    "homonym_pairs_merged",
)


@contextmanager
def work_dir(keep: Path | None) -> Iterator[Path]:
    """``keep`` (created if needed, left in place) or a temporary directory removed at the end."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="tournesol-identity-") as tmp:
        yield Path(tmp)


def import_demo(factory: sessionmaker[Session], files: list[tuple[str, Path, Path]]) -> None:
    """Import every (source, file, mapping) in order, as ``tournesol demo`` does."""
    from tournesol.config import get_settings
    from tournesol.ingest.importer import import_file
    from tournesol.ingest.schemas import load_mapping

    chunk_rows = get_settings().import_chunk_rows
    for source, path, mapping in files:
        started = time.perf_counter()
        report = import_file(factory, path, load_mapping(mapping), chunk_rows=chunk_rows)
        took = time.perf_counter() - started
        print(
            f"imported {source:<11}{report.rows_read:>9,} rows{report.accepted:>9,} accepted"
            f"{report.rejected:>5,} rejected ({report.status}, {took:.1f} s)",
            flush=True,
        )


def run_resolution(factory: sessionmaker[Session]) -> float | None:
    """Run identity resolution over every customer record; its seconds, or None when
    ``tournesol.identity.service.resolve`` is not available."""
    try:  # being written: looked up at run time so that the baseline still runs without it
        resolve = importlib.import_module("tournesol.identity.service").resolve
    except (ImportError, AttributeError) as exc:
        print(
            "identity resolution not available: scores of the 1 record = 1 customer baseline"
            f" ({type(exc).__name__}: {exc})"
        )
        return None
    print("resolving identities...", flush=True)
    started = time.perf_counter()
    report = resolve(factory, full=True)
    elapsed = time.perf_counter() - started
    if report is not None:
        print(str(report))
    return elapsed


def read_assignment(factory: sessionmaker[Session]) -> tuple[dict[RecordKey, int], int]:
    """Each customer record's customer, from the cross-reference table; also how many customer
    records have no customer (left out)."""
    from tournesol.db import unit_of_work
    from tournesol.ingest.service import crossref_rows

    assignment: dict[RecordKey, int] = {}
    unassigned = 0
    with unit_of_work(factory) as session:
        for source, entity, source_key, customer_id in crossref_rows(session):
            if entity != "customer":
                continue
            if customer_id is None:
                unassigned += 1
            else:
                assignment[source, source_key] = customer_id
    return assignment, unassigned


def read_truth(truth_path: Path, sources: set[str]) -> dict[RecordKey, TruthRecord]:
    """The truth of every row of ``sources`` the generator expects to be accepted."""
    truth: dict[RecordKey, TruthRecord] = {}
    with truth_path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"] not in sources or row["expected"] != "accept":
                continue
            key = (row["source"], row["source_key"])
            if key in truth:
                raise SystemExit(f"truth.csv: {key} appears twice")
            truth[key] = TruthRecord(
                person_id=row["person_id"],
                household_id=row["household_id"],
                is_twin=row["is_twin"] == "1",
                homonym_group=row["is_homonym_group"] or None,
            )
    return truth


def print_scores(scores: IdentityScores, resolution_seconds: float | None) -> None:
    """A table of the counts, then the figures one per line, last."""
    rows = (
        ("customer records", scores.records),
        ("true persons", scores.persons),
        ("customers", scores.customers),
        ("pairs of records of one person (true)", scores.true_pairs),
        ("pairs of records in one customer (predicted)", scores.predicted_pairs),
        ("pairs both true and predicted (correct)", scores.correct_pairs),
    )
    print()
    for label, value in rows:
        print(f"{label:<48}{value:>12,}")
    print()
    figures = scores.to_json()
    for name in FIGURES:
        value = figures[name]
        print(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}")
    if resolution_seconds is None:
        print("resolution_seconds n/a (baseline)")
    else:
        print(f"resolution_seconds {resolution_seconds:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--persons", type=int, default=5000, help="persons in the demo")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--database-url", help="an empty database (default: a new SQLite file in the work dir)"
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="generate into DIR and leave it there"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the scores as JSON")
    args = parser.parse_args()

    from tournesol.db import make_engine, make_session_factory
    from tournesol.demo.generator import generate
    from tournesol.migrations import upgrade

    with work_dir(args.keep) as work:
        started = time.perf_counter()
        manifest = generate(work / "demo", seed=args.seed, persons=args.persons)
        took = time.perf_counter() - started
        print(f"generated the demo for {args.persons:,} persons (seed {args.seed}) in {took:.1f} s")

        url = args.database_url or f"sqlite:///{work / 'identity.db'}"
        engine = make_engine(url)
        try:
            upgrade(engine)
            factory = make_session_factory(engine)
            import_demo(factory, [(f.source, f.path, f.mapping) for f in manifest.files])
            resolution_seconds = run_resolution(factory)
            assignment, unassigned = read_assignment(factory)
        finally:
            engine.dispose()
        sources = {f.source for f in manifest.files if f.entity == "customer"}
        truth = read_truth(manifest.truth_path, sources)

    if unassigned:
        print(f"warning: {unassigned:,} customer records have no customer (left out)")
    not_imported = len(truth.keys() - assignment.keys())
    if not_imported:
        print(f"warning: {not_imported:,} rows expected to be accepted have no customer record")
    scores = score(assignment, truth)
    if args.json:
        args.json.write_text(json.dumps(scores.to_json(), indent=2) + "\n", encoding="utf-8")
        print(f"scores written to {args.json}")
    print_scores(scores, resolution_seconds)


if __name__ == "__main__":
    main()
