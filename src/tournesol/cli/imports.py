"""`tournesol import`: load a source file, and look at batches and rejects."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail, settings

if TYPE_CHECKING:
    from tournesol.ingest.importer import ImportReport


def import_command(
    source: str = typer.Argument(..., help="Source name; must match the mapping's source.name."),
    file: Path = typer.Argument(..., help="CSV/TXT, XLSX, JSON, JSONL or Parquet file."),
    mapping: Path | None = typer.Option(
        None, "--mapping", "-m", help="YAML mapping (default: mappings/SOURCE.yaml)."
    ),
    resolve: bool = typer.Option(
        True,
        "--resolve/--no-resolve",
        help="Match the batch's customer records against the base afterwards (incremental).",
    ),
) -> None:
    """Import FILE as SOURCE: every row becomes a record or a reject with its reason. Customer
    records are then matched against the existing customers (identity resolution)."""
    from tournesol.ingest.importer import import_file
    from tournesol.ingest.readers import ReadError
    from tournesol.ingest.schemas import MappingError, load_mapping

    mapping_path = mapping or Path("mappings") / f"{source}.yaml"
    if not mapping_path.exists():
        fail(
            f"no mapping {mapping_path}",
            hint=f"pass --mapping FILE.yaml (docs/mappings.md shows how to write one for {source})",
        )
    try:
        spec = load_mapping(mapping_path)
    except MappingError as exc:
        fail(str(exc), hint="fix the mapping file; docs/mappings.md lists every option")
    if spec.source.name != source:
        fail(
            f"the mapping {mapping_path} is for source {spec.source.name!r}, not {source!r}",
            hint="use the mapping written for this source",
        )
    _, factory = engine_and_factory()
    chunk_rows = settings().import_chunk_rows
    with Progress(
        TextColumn(f"[bold]{source}[/] {file.name}"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("import", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = import_file(factory, file, spec, chunk_rows=chunk_rows, progress=on_progress)
        except (ReadError, MappingError) as exc:
            fail(str(exc), hint="nothing was imported; fix the file or the mapping and rerun")
        except KeyboardInterrupt:
            bar.stop()
            fail(
                "interrupted; every chunk committed so far is kept",
                hint="run the same command again: it resumes where it stopped",
                code=130,
            )
    print_report(report)
    if resolve and spec.entity.value == "customer" and report.accepted + report.updated:
        from tournesol.cli.identity import print_report as print_resolution
        from tournesol.identity.service import resolve as run_resolution

        with console.status("Matching the new records against the customers...") as status:
            resolution = run_resolution(
                factory, progress=lambda msg: status.update(f"Identity resolution: {msg}")
            )
        print_resolution(resolution)


def print_report(report: ImportReport) -> None:
    if report.status == "already_imported":
        console.print(
            f"[green]{report.source}[/] {report.file}: already imported as batch "
            f"{report.batch_id} with this mapping; nothing to do."
        )
        return
    table = Table(title=f"{report.source} · {report.file} · batch {report.batch_id}")
    for name in ("read", "accepted", "updated", "unchanged", "rejected"):
        table.add_column(name, justify="right")
    table.add_row(
        *(
            f"{n:,}"
            for n in (
                report.rows_read,
                report.accepted,
                report.updated,
                report.unchanged,
                report.rejected,
            )
        )
    )
    console.print(table)
    details = f"{report.file_format}"
    if report.encoding:
        details += f", {report.encoding}"
    if report.delimiter:
        details += f", separator {report.delimiter!r}"
    console.print(
        f"{details}; {report.seconds:.1f} s ({report.rows_per_second:,.0f} rows/s)"
        + (f"; resumed after line {report.resumed_after_line}" if report.resumed_after_line else "")
        + (f"; {report.linked} earlier rows linked to their customer" if report.linked else "")
    )
    if report.rejected:
        console.print(f"[yellow]Rejected rows[/] (first {len(report.reject_samples)}):")
        for line_no, code, reason in report.reject_samples:
            console.print(f"  line {line_no}: [bold]{code}[/] {reason}", highlight=False)
        console.print(f"All of them: tournesol batches rejects {report.batch_id}")


batches_app = typer.Typer(help="Import batches and their rejects.", no_args_is_help=True)


@batches_app.command("list")
def list_batches(source: str | None = typer.Option(None, help="Only this source.")) -> None:
    """Every import batch with its counts."""
    from tournesol.db import unit_of_work
    from tournesol.ingest import service

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        source_id = None
        if source is not None:
            found = service.get_by_name(session, name=source)
            if found is None:
                fail(f"no source named {source!r}", hint="tournesol batches list shows them all")
            source_id = found.id
        names = {s.id: s.name for s in service.list_sources(session)}
        table = Table(title="Import batches")
        for col in (
            "id",
            "source",
            "file",
            "status",
            "read",
            "accepted",
            "updated",
            "unchanged",
            "rejected",
        ):
            table.add_column(
                col, justify="right" if col not in ("source", "file", "status") else "left"
            )
        for b in service.list_batches(session, source_id=source_id):
            table.add_row(
                str(b.id),
                names[b.source_id],
                b.file_name,
                b.status,
                *(f"{n:,}" for n in (b.rows_read, b.accepted, b.updated, b.unchanged, b.rejected)),
            )
        console.print(table)


@batches_app.command("rejects")
def list_rejects(
    batch_id: int = typer.Argument(..., help="Batch id (see tournesol batches list)."),
    out: Path | None = typer.Option(None, "--out", help="Write them to this CSV file instead."),
) -> None:
    """The rejected rows of a batch: line number, reason code, reason and raw text."""
    import csv

    from tournesol.db import unit_of_work
    from tournesol.ingest import service

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        if service.get_batch(session, batch_id=batch_id) is None:
            fail(f"no batch {batch_id}", hint="tournesol batches list shows them all")
        rejects = service.list_rejects(session, batch_id=batch_id)
        if out is not None:
            with out.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["line_no", "code", "reason", "raw_text"])
                for r in rejects:
                    writer.writerow([r.line_no, r.code, r.reason, r.raw_text])
            console.print(f"{len(rejects)} rejects written to {out}")
            return
        if not rejects:
            console.print(f"Batch {batch_id} has no rejected rows.")
            return
        table = Table(title=f"Rejects of batch {batch_id}")
        for col in ("line", "code", "reason"):
            table.add_column(col)
        for r in rejects:
            table.add_row(str(r.line_no), r.code, r.reason)
        console.print(table)
