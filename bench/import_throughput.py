"""Import throughput: a 1,000,000-row customer CSV (Windows-1252, ';', French dates) imported
into a fresh SQLite file and a fresh PostgreSQL schema.

    .venv/bin/python bench/import_throughput.py [--rows 1000000] [--postgres-url URL]

Each import runs in its own process so that its peak memory (max RSS) is its own. The figures
come last: rows per second and peak memory per backend.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
POSTCODES = ROOT / "src/tournesol/quality/data/postcodes.tsv.gz"
MAPPING = """
source: {name: bench_loyalty, kind: loyalty, brand: SOLEIL, trust_rank: 2}
entity: customer
key: num_carte
fields:
  civility: {column: civilite, values: {M: "M.", MME: "Mme", MLLE: "Mme"}}
  first_name: prenom
  last_name: nom
  birth_date: {column: date_naissance, type: date, formats: ["%d/%m/%Y"]}
  email: email
  phone_mobile: telephone
  address_street: adresse
  address_complement: complement
  postal_code: code_postal
  city: ville
  loyalty_card: num_carte
  created_at: {column: date_creation, type: date, formats: ["%d/%m/%Y"]}
required: [last_name]
identifiers: {loyalty_card: loyalty_card, email: email, phone_mobile: phone_mobile}
consents:
  - {channel: email, column: optin_email}
"""
HEADER = [
    "num_carte",
    "civilite",
    "prenom",
    "nom",
    "date_naissance",
    "email",
    "telephone",
    "adresse",
    "complement",
    "code_postal",
    "ville",
    "optin_email",
    "date_creation",
]


def ascii_mail(text: str) -> str:
    """An address as people have them: lower case, no spaces, no accents (Gmail, Orange...
    refuse accented addresses)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return folded.lower().replace(" ", "")


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Write the CSV quickly from pools of realistic values (Faker builds the pools of names
    and streets; postal codes and communes come from the official reference)."""
    from faker import Faker

    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    rnd = random.Random(seed)
    firsts = [fake.first_name() for _ in range(800)]
    lasts = [fake.last_name() for _ in range(2000)]
    streets = [fake.street_address() for _ in range(3000)]
    # real postal code / commune pairs, as in real files (Faker's are random and do not exist)
    with gzip.open(POSTCODES, "rt", encoding="utf-8") as reference:
        next(reference)
        pairs = [line.split("\t")[:3:2] for line in reference]
    cities = [(code, name) for code, name in rnd.sample(pairs, 1500)]
    domains = ["gmail.com", "orange.fr", "free.fr", "hotmail.fr", "laposte.net", "sfr.fr"]
    with path.open("w", encoding="cp1252", errors="replace", newline="") as fh:
        fh.write(";".join(HEADER) + "\r\n")
        for i in range(rows):
            first, last = rnd.choice(firsts), rnd.choice(lasts)
            cp, city = rnd.choice(cities)
            fields = [
                f"C{i:09d}",
                rnd.choice(("M", "MME", "MLLE")),
                first,
                last.upper(),
                f"{rnd.randint(1, 28):02d}/{rnd.randint(1, 12):02d}/{rnd.randint(1935, 2006)}",
                ascii_mail(f"{first}.{last}{rnd.randint(1, 99)}@{rnd.choice(domains)}"),
                "06 " + " ".join(f"{rnd.randint(10, 99)}" for _ in range(4)),
                rnd.choice(streets),
                rnd.choice(("", "", "", "Bât. B", "Apt 12", "Chez Mme Martin")),
                cp,
                city,
                rnd.choice(("O", "N")),
                f"{rnd.randint(1, 28):02d}/{rnd.randint(1, 12):02d}/{rnd.randint(2015, 2026)}",
            ]
            fh.write(";".join(f.replace(";", ",") for f in fields) + "\r\n")


def child(url: str, csv_path: str, mapping_path: str) -> None:
    """Import once and print a JSON line with the figures."""
    from tournesol.config import get_settings
    from tournesol.db import make_engine, make_session_factory
    from tournesol.ingest.importer import import_file
    from tournesol.ingest.schemas import load_mapping
    from tournesol.migrations import upgrade

    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    start = time.perf_counter()
    chunk_rows = (
        get_settings().import_chunk_rows
    )  # the CLI's default, or TOURNESOL_IMPORT_CHUNK_ROWS
    report = import_file(
        factory, Path(csv_path), load_mapping(Path(mapping_path)), chunk_rows=chunk_rows
    )
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": report.rows_read,
                "accepted": report.accepted,
                "rejected": report.rejected,
                "seconds": round(elapsed, 2),
                "rows_per_s": round(report.rows_read / elapsed),
                "peak_mb": round(peak_mb),
                "chunk_rows": chunk_rows,
            }
        )
    )


def _tree_rss_mb(pid: int) -> float:
    """Memory of a process and all its descendants, from /proc (Linux): the sum of their
    proportional set sizes (PSS), so pages shared after a fork are counted once."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(next(x for x in rollup.splitlines() if x.startswith("Pss:")).split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue  # the process ended meanwhile
    return total / 1024


def run_child(url: str, csv_path: Path, mapping_path: Path) -> dict[str, float]:
    """Run one import in its own process; adds ``tree_peak_mb``, the largest memory of the
    import and every process it started (reading, mapping), sampled every 0.2 s."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", url, str(csv_path), str(mapping_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, _tree_rss_mb(process.pid))
        time.sleep(0.2)
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the import failed:\n{err}")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    result["tree_peak_mb"] = round(peak)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TOURNESOL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--child", nargs=3, metavar=("URL", "CSV", "MAPPING"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from tournesol.db import make_engine

    with tempfile.TemporaryDirectory(prefix="tournesol-bench-") as tmp_name:
        tmp = Path(tmp_name)
        csv_path, mapping_path = tmp / "customers.csv", tmp / "mapping.yaml"
        mapping_path.write_text(MAPPING, encoding="utf-8")
        t0 = time.perf_counter()
        generate(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1e6
        took = time.perf_counter() - t0
        print(f"generated {args.rows:,} rows ({size_mb:.0f} MB, cp1252, ';') in {took:.0f} s")

        results: dict[str, dict[str, float]] = {}
        results["SQLite"] = run_child(f"sqlite:///{tmp / 'bench.db'}", csv_path, mapping_path)
        print(f"SQLite done: {results['SQLite']}", flush=True)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(args.postgres_url)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            sep = "&" if "?" in args.postgres_url else "?"
            pg_url = f"{args.postgres_url}{sep}options=-csearch_path%3D{schema}"
            results["PostgreSQL"] = run_child(pg_url, csv_path, mapping_path)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()

    print()
    print("peak MB: the importing process alone / with its reading and mapping processes")
    print(f"{'backend':<12}{'rows':>12}{'seconds':>10}{'rows/s':>10}{'peak MB':>14}")
    for name, r in results.items():
        peaks = f"{r['peak_mb']} / {r['tree_peak_mb']}"
        print(f"{name:<12}{r['rows']:>12,}{r['seconds']:>10}{r['rows_per_s']:>10,}{peaks:>14}")


if __name__ == "__main__":
    main()
