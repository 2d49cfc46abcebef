"""`tournesol segments`: count a definition, save it, list, refresh, profile, compare and
export saved segments (docs/segments.md)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

if TYPE_CHECKING:
    from tournesol.segments.service import Profile

app = typer.Typer(
    help="Segments: count, save, refresh, profile, compare and export.", no_args_is_help=True
)


def _definition(file: Path) -> dict[str, Any]:
    from tournesol.segments.compiler import DefinitionError, load_definition

    if not file.exists():
        fail(f"there is no file {file}", hint="give a JSON or YAML segment definition")
    try:
        return dict(load_definition(file))
    except DefinitionError as exc:
        fail(f"{file}: {exc.path}: {exc.message}", hint="see docs/segments.md")


def _bad_definition(exc: Any) -> None:
    fail(f"{exc.path}: {exc.message}", hint="see docs/segments.md for the segment language")


@app.command()
def count(
    file: Path = typer.Argument(..., help="A segment definition (JSON or YAML)."),
) -> None:
    """How many active customers the definition holds now, the path the compiler took
    (features, raw history or mixed), the time taken and the compiler's notes."""
    from tournesol.db import unit_of_work
    from tournesol.segments import service
    from tournesol.segments.compiler import DefinitionError

    definition = _definition(file)
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            result = service.count(session, definition)
        except DefinitionError as exc:
            _bad_definition(exc)
    console.print(f"size: [bold]{result.size:,}[/]")
    console.print(f"path: {result.path}")
    console.print(f"time: {result.duration_ms:,} ms")
    for note in result.notes:
        console.print(f"note: {note}")


@app.command()
def save(
    file: Path = typer.Argument(..., help="A segment definition (JSON or YAML)."),
    code: str = typer.Option(..., "--code", help='Its code (what {"segment": CODE} names).'),
    name: str = typer.Option(..., "--name", help="Its name, as shown in lists."),
    description: str | None = typer.Option(None, "--description", help="What it is for."),
) -> None:
    """Save a segment (or change the one with this code) and compute its members."""
    from tournesol.db import unit_of_work
    from tournesol.segments import service
    from tournesol.segments.compiler import DefinitionError

    definition = _definition(file)
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            existing = service.get_by_code(session, code=code.strip())
            if existing is None:
                segment = service.create(
                    session, code=code, name=name, description=description, definition=definition
                )
            else:
                segment = service.update(
                    session,
                    segment=existing,
                    name=name,
                    description=description,
                    definition=definition,
                )
            snapshot = service.refresh(session, segment)
        except DefinitionError as exc:
            _bad_definition(exc)
        except service.SegmentError as exc:
            fail(str(exc))
        verb = "created" if existing is None else "updated"
        console.print(
            f"Segment {segment.code} {verb}: {snapshot.size:,} customers "
            f"(+{snapshot.entered:,} / -{snapshot.left:,}, {snapshot.path}, "
            f"{snapshot.duration_ms:,} ms)"
        )


@app.command("list")
def list_command(
    archived: bool = typer.Option(False, "--archived", help="Include archived segments."),
) -> None:
    """Saved segments with their size, the change at their last refresh and when it was."""
    from tournesol.db import unit_of_work
    from tournesol.segments import service

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        segments = service.list_segments(session, include_archived=archived)
        history = service.snapshots(session, segment_ids=[s.id for s in segments], last=2)
        if not segments:
            console.print("No segment saved yet: `tournesol segments save FILE --code C --name N`.")
            return
        table = Table(title="Segments")
        for column, justify in (
            ("code", "left"),
            ("name", "left"),
            ("size", "right"),
            ("change", "right"),
            ("last computed (UTC)", "left"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for s in segments:
            sizes = [snap.size for snap in history.get(s.id, [])]
            change = f"{sizes[-1] - sizes[-2]:+,}" if len(sizes) >= 2 else ""
            table.add_row(
                s.code + (" (archived)" if s.archived else ""),
                s.name,
                "" if s.last_size is None else f"{s.last_size:,}",
                change,
                s.last_computed_at.strftime("%Y-%m-%d %H:%M") if s.last_computed_at else "never",
            )
        console.print(table)


@app.command()
def refresh(
    code: str | None = typer.Argument(None, help="One segment's code (default: all of them)."),
) -> None:
    """Recompute saved segments: who entered, who left, the new size."""
    from tournesol.db import unit_of_work
    from tournesol.segments import service
    from tournesol.segments.compiler import DefinitionError

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            if code:
                segment = service.get_by_code(session, code=code)
                if segment is None:
                    fail(f"there is no segment {code!r}", hint="`tournesol segments list`")
                done = [(segment.code, service.refresh(session, segment))]
            else:
                snapshots = service.refresh_all(session)
                by_id = {s.id: s.code for s in service.list_segments(session)}
                done = [(by_id[snap.segment_id], snap) for snap in snapshots]
        except DefinitionError as exc:
            _bad_definition(exc)
    if not done:
        console.print("No segment to refresh.")
    for seg_code, snap in done:
        console.print(
            f"{seg_code}: {snap.size:,} customers, {snap.entered:,} entered, "
            f"{snap.left:,} left ({snap.path}, {snap.duration_ms:,} ms)"
        )


@app.command()
def export(
    code: str = typer.Argument(..., help="The segment's code."),
    out: Path = typer.Option(..., "--out", help="CSV file to write (UTF-8, comma)."),
    personal: bool = typer.Option(
        False,
        "--personal",
        help="Add names, contact points and addresses (an audit row records the export).",
    ),
) -> None:
    """The segment's members as of its last refresh: customer id and non-personal columns
    (type, gender, age band, department, region, RFM segment, scores), and with --personal
    the personal ones."""
    from tournesol.auth import service as auth_service
    from tournesol.auth.service import Principal
    from tournesol.cli.export import write_csv
    from tournesol.db import unit_of_work
    from tournesol.segments import service

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        segment = service.get_by_code(session, code=code)
        if segment is None:
            fail(f"there is no segment {code!r}", hint="`tournesol segments list`")
        if segment.last_computed_at is None:
            service.refresh(session, segment)
        columns = service.export_columns(session, personal=personal)
        rows = service.export_rows(session, segment, personal=personal)
        written = write_csv(out, columns, ([row[c] for c in columns] for row in rows))
        if personal:
            who = Principal("cli", 0, f"cli:{getpass.getuser()}", frozenset())
            auth_service.audit(
                session,
                principal=who,
                action="segment.export",
                channel="cli",
                details={"segment": segment.code, "personal": True, "rows": written},
            )
    console.print(f"{written:,} customers of {code} written to {out}")


@app.command()
def profile(
    target: str = typer.Argument(..., help="A saved segment's code, or a definition file."),
) -> None:
    """Who is in the segment compared with the whole active base: age band, gender, region,
    RFM segment, reachability per channel and average value."""
    from tournesol.db import unit_of_work
    from tournesol.segments import service
    from tournesol.segments.compiler import DefinitionError

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        path = Path(target)
        if path.suffix.lower() in (".json", ".yaml", ".yml") or path.exists():
            definition = _definition(path)
        else:
            segment = service.get_by_code(session, code=target)
            if segment is None:
                fail(f"there is no segment {target!r} and no file of that name")
            definition = segment.definition
        try:
            found = service.profile(session, definition)
        except DefinitionError as exc:
            _bad_definition(exc)
    print_profile(found)


def print_profile(found: Profile) -> None:
    from tournesol.segments.rules import REGIONS

    share = found.size / found.base if found.base else 0.0
    console.print(
        f"[bold]{found.size:,}[/] customers of {found.base:,} in the active base "
        f"({share:.1%}); path {found.path}, {found.duration_ms:,} ms"
    )
    if found.average_value is not None and found.base_average_value is not None:
        console.print(
            f"average value (purchases of the last 365 days): {found.average_value:,.2f} "
            f"vs {found.base_average_value:,.2f} for the base"
        )
    titles = {
        "age_band": "Age band",
        "gender": "Gender",
        "region": "Region",
        "rfm_segment": "RFM segment (all brands)",
        "reachability": "Reachable by (a customer may be on several channels)",
    }
    for dist in found.distributions:
        table = Table(title=titles.get(dist.name, dist.name))
        for column in ("value", "segment", "share", "base", "share ", "index"):
            table.add_column(column, justify="left" if column == "value" else "right")
        for b in dist.buckets:
            index = b.index
            table.add_row(
                f"{b.key} {REGIONS[b.key]}"
                if dist.name == "region" and b.key in REGIONS
                else b.key,
                f"{b.segment:,}",
                f"{b.segment_share:.1%}",
                f"{b.base:,}",
                f"{b.base_share:.1%}",
                "" if index is None else f"{index:.0f}",
            )
        console.print(table)


@app.command()
def overlap(
    codes: list[str] = typer.Argument(..., help="Two to eight segment codes."),
) -> None:
    """How many customers each pair of segments shares (from their definitions, now)."""
    from tournesol.db import unit_of_work
    from tournesol.segments import service
    from tournesol.segments.compiler import DefinitionError

    if len(codes) < 2:
        fail("name at least two segments")
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            found = service.overlap(session, codes)
        except service.SegmentError as exc:
            fail(str(exc), hint="`tournesol segments list`")
        except DefinitionError as exc:
            _bad_definition(exc)
    table = Table(title=f"Overlap ({found.union:,} customers in at least one)")
    table.add_column("segment")
    for code in found.codes:
        table.add_column(code, justify="right")
    for i, code in enumerate(found.codes):
        cells = []
        for j in range(len(found.codes)):
            n = found.matrix[i][j]
            cells.append(f"{n:,}" if i == j else f"{n:,} ({found.share(i, j):.0%})")
        table.add_row(code, *cells)
    console.print(table)
    console.print("Each cell: customers in both; in brackets, the share of the row's segment.")
