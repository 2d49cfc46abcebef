"""`tournesol export`: the cross-reference table and the golden records, as CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import typer

from tournesol.cli.common import console, engine_and_factory

app = typer.Typer(help="Export the cross-reference table and golden records.", no_args_is_help=True)


@app.command()
def crossref(
    out: Path = typer.Option(..., "--out", help="CSV file to write (UTF-8, comma)."),
) -> None:
    """source, entity, source_key, customer_id for every source record (table de correspondance)."""
    from tournesol.db import unit_of_work
    from tournesol.ingest import service

    _, factory = engine_and_factory()
    count = 0
    with unit_of_work(factory) as session, out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "entity", "source_key", "customer_id"])
        for source, entity, key, customer_id in service.crossref_rows(session):
            writer.writerow([source, entity, key, "" if customer_id is None else customer_id])
            count += 1
    console.print(f"{count:,} source records written to {out}")


@app.command()
def customers(
    out: Path = typer.Option(..., "--out", help="CSV file to write (UTF-8, comma)."),
) -> None:
    """The golden customer records."""
    from tournesol.customers import service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    count = 0
    with unit_of_work(factory) as session, out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(service.EXPORT_COLUMNS)
        for row in service.export_rows(session):
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    console.print(f"{count:,} customers written to {out}")
