"""Kill -9 an import mid-file, run the same command again: the store ends up exactly as after
one clean run. Real processes, real databases (fresh ones, since commits are real here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import FreshDatabase
from tests.snapshot import snapshot
from tournesol.db import make_engine

MAPPING = """
source: {name: loyalty, kind: loyalty, brand: SOLEIL}
entity: customer
key: num_carte
fields:
  first_name: prenom
  last_name: nom
  birth_date: {column: naissance, type: date, formats: ["%d/%m/%Y"]}
  email: email
  postal_code: cp
required: [last_name]
identifiers: {email: email}
consents:
  - {channel: email, column: optin}
"""
ROWS = 60_000  # about 5 MB: large enough for the import to read in its worker process


def write_inputs(folder: Path) -> tuple[Path, Path]:
    lines = ["num_carte;prenom;nom;naissance;email;cp;optin"]
    for i in range(1, ROWS + 1):
        birth = (
            "31/02/1980"
            if i % 10_007 == 0
            else f"{1 + i % 28:02d}/{1 + i % 12:02d}/19{50 + i % 50}"
        )
        lines.append(
            f"C{i:07d};Éloïse;Martin-{i};{birth};e{i}@exemple.fr;{75000 + i % 20};{'ON'[i % 2]}"
        )
    data = folder / "cartes.csv"
    data.write_bytes(("\n".join(lines) + "\n").encode("cp1252"))
    mapping = folder / "loyalty.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return data, mapping


def command(data: Path, mapping: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tournesol",
        "import",
        "loyalty",
        str(data),
        "--mapping",
        str(mapping),
        "--no-resolve",  # this test is about the import; identity resolution has its own
    ]


def environment(url: str) -> dict[str, str]:
    return os.environ | {
        "TOURNESOL_DATABASE_URL": url,
        "TOURNESOL_IMPORT_CHUNK_ROWS": "4000",
        "COLUMNS": "200",  # no line wrapping in what the command prints
    }


def committed_line(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT COALESCE(MAX(committed_line), 0) FROM import_batch")
            ).scalar_one()
    except Exception:  # the schema may not exist yet while the command starts
        return 0
    finally:
        engine.dispose()


def test_killed_import_resumes_to_the_same_state_as_a_clean_run(
    backend: str, fresh_databases: FreshDatabase, tmp_path: Path
) -> None:
    data, mapping = write_inputs(tmp_path)
    killed_url = fresh_databases.url(backend)
    clean_url = fresh_databases.url(backend)

    process = subprocess.Popen(
        command(data, mapping),
        env=environment(killed_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while committed_line(killed_url) == 0:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the import never committed a chunk"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stopped_at = committed_line(killed_url)
    assert 0 < stopped_at < ROWS + 1, "the kill must land mid-file"

    resumed = subprocess.run(
        command(data, mapping), env=environment(killed_url), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after line" in resumed.stdout

    clean = subprocess.run(
        command(data, mapping), env=environment(clean_url), capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr

    states = []
    for url in (killed_url, clean_url):
        engine = make_engine(url)
        with engine.connect() as conn:
            states.append(snapshot(conn))
            batches = conn.execute(
                text("SELECT rows_read, accepted, rejected, status FROM import_batch")
            ).all()
        engine.dispose()
        assert [tuple(b) for b in batches] == [(ROWS, ROWS - 5, 5, "completed")]
    assert states[0] == states[1]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_import_command_explains_a_bad_mapping_and_writes_nothing(
    backend: str, fresh_databases: FreshDatabase, tmp_path: Path
) -> None:
    data, _ = write_inputs(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(MAPPING.replace("naissance", "date_de_naissance"), encoding="utf-8")
    url = fresh_databases.url(backend)
    result = subprocess.run(
        command(data, bad), env=environment(url), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "column 'date_de_naissance' is not in the file" in result.stderr
    assert "nothing was imported" in result.stderr
    assert committed_line(url) == 0


def test_a_wrong_database_url_is_a_clear_error(tmp_path: Path) -> None:
    env = os.environ | {"TOURNESOL_DATABASE_URL": "mysql://somewhere/db", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "tournesol", "batches", "list"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "invalid setting: TOURNESOL_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
