"""`tournesol quality`: the data quality report per source and per field."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tournesol.cli.common import console, engine_and_factory, fail

if TYPE_CHECKING:
    from tournesol.quality.report import QualityReport

app = typer.Typer(
    help="Data quality: what the normalizers found, per source.", no_args_is_help=True
)


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    html = "html"


@app.command()
def report(
    source: str | None = typer.Option(None, "--source", help="Only this source."),
    fmt: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json or html."),
    out: Path | None = typer.Option(
        None, "--out", help="Write to this file instead of the terminal (json and html)."
    ),
) -> None:
    """Per source and per field: fill rate, validity rate, corrections made, top flags,
    identifiers shared by several records."""
    from tournesol.db import unit_of_work
    from tournesol.quality.service import build_report

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            built = build_report(session, source=source)
        except LookupError as exc:
            fail(str(exc), hint="run `tournesol batches list` to see the imported sources")
    if fmt is ReportFormat.table:
        if out is not None:
            fail("--out goes with --format json or html", hint="add --format html or json")
        print_tables(built)
        return
    if fmt is ReportFormat.json:
        text = json.dumps(built.to_json(), indent=2, ensure_ascii=False)
    else:
        from tournesol.quality.html import render_html

        text = render_html(built)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"Quality report written to {out}")


def print_tables(built: QualityReport) -> None:
    """One Rich table per source with contact fields, then one line per other source."""
    from rich.table import Table

    if not built.sources:
        console.print("No source has been imported yet.")
        return
    for s in built.sources:
        if not s.fields:
            console.print(
                f"[bold]{s.source}[/] ({s.entity}): {s.records:,} records, no contact fields"
            )
            continue
        flagged = s.flagged_records / s.records if s.records else 0.0
        table = Table(
            title=f"{s.source} ({s.entity}): {s.records:,} records, average score "
            f"{s.average_score:.0f}/100, {flagged:.1%} with a flag",
            title_justify="left",
        )
        table.add_column("field")
        table.add_column("fill", justify="right")
        table.add_column("valid", justify="right")
        table.add_column("corrected", justify="right")
        table.add_column("top flags")
        for f in s.ordered_fields():
            flags = ", ".join(f"{code} {n:,}" for code, n in f.flags.most_common(2))
            table.add_row(
                f.name,
                f"{f.fill_rate(s.records):.1%}",
                f"{f.validity_rate:.1%}",
                f"{f.corrected:,}",
                flags,
            )
        console.print(table)
        shared = [d for d in s.duplicates if d.shared_values]
        if shared:
            listed = "; ".join(
                f"{d.kind}: {d.shared_values:,} values on {d.records:,} records" for d in shared
            )
            console.print(f"  shared identifiers: {listed}")
