"""`tournesol export`: the cross-reference table and the golden records, as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer

from tournesol.cli.common import console, engine_and_factory

app = typer.Typer(help="Export the cross-reference table and golden records.", no_args_is_help=True)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write a UTF-8, comma-separated file (empty cells for NULL); returns the row count."""
    count = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count


@app.command()
def crossref(
    out: Path = typer.Option(..., "--out", help="CSV file to write (UTF-8, comma)."),
) -> None:
    """source, entity, source_key, customer_id for every source record (table de correspondance)."""
    from tournesol.db import unit_of_work
    from tournesol.ingest import service

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        count = write_csv(out, service.CROSSREF_COLUMNS, service.crossref_rows(session))
    console.print(f"{count:,} source records written to {out}")


@app.command()
def customers(
    out: Path = typer.Option(..., "--out", help="CSV file to write (UTF-8, comma)."),
) -> None:
    """The golden customer records."""
    from tournesol.customers import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        count = write_csv(out, service.EXPORT_COLUMNS, service.export_rows(session))
    console.print(f"{count:,} customers written to {out}")
