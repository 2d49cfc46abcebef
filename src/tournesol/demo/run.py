"""`tournesol demo`: generate the synthetic dataset, import every source, show what happened."""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tournesol.cli.common import engine_and_factory, settings
from tournesol.cli.export import write_csv
from tournesol.consent.models import Consent
from tournesol.customers.models import Customer, Organisation, OrganisationContact
from tournesol.db import unit_of_work
from tournesol.ingest import service as ingest_service
from tournesol.ingest.importer import ImportReport, import_file
from tournesol.ingest.models import Reject, SourceRecord
from tournesol.ingest.schemas import load_mapping
from tournesol.interactions.models import Interaction, Product, Transaction, TransactionLine

console = Console()
ADDRESS_LINES = (
    "address_complement",
    "address_building",
    "address_street",
    "address_special",
    "address_line6",
)


def _count(session: Session, model: type[object]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _planted_rejects(truth_path: Path) -> Counter[str]:
    """How many malformed rows the generator planted, per source (from its ground truth)."""
    planted: Counter[str] = Counter()
    with truth_path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("expected") == "reject":
                planted[row["source"]] += 1
    return planted


def run_demo(*, out_dir: Path, persons: int, seed: int) -> int | None:
    """Generate, import, resolve and show; returns a merged customer worth opening."""
    from tournesol.demo.generator import generate

    chunk_rows = settings().import_chunk_rows
    started = time.perf_counter()
    console.print(
        Panel.fit(
            "[bold]Tournesol demo[/]: a French retailer with a loyalty program, an e-shop,\n"
            "a contest, a call center and a B2B arm. Its customer data is scattered over\n"
            "files in several formats and encodings; Tournesol brings it into one repository.",
            border_style="yellow",
        )
    )
    with console.status(f"Generating {persons:,} synthetic persons and their history..."):
        manifest = generate(out_dir, seed=seed, persons=persons)
    console.print(
        f"[green]✓[/] Generated {len(manifest.files)} source files in {out_dir}/ "
        f"({time.perf_counter() - started:.1f} s); ground truth in {manifest.truth_path.name}"
    )

    engine, factory = engine_and_factory()
    where = engine.url.render_as_string(hide_password=True)
    console.print(f"[green]✓[/] Database {where} is ready")

    reports: list[ImportReport] = []
    with Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        for item in manifest.files:
            task = bar.add_task(f"import {item.source} ({item.path.name})", total=None)

            def on_progress(done: int, total: int, task_id: TaskID = task) -> None:
                bar.update(task_id, completed=done, total=total)

            report = import_file(
                factory,
                item.path,
                load_mapping(item.mapping),
                chunk_rows=chunk_rows,
                progress=on_progress,
            )
            bar.update(task, completed=1, total=1)
            reports.append(report)

    from tournesol.cli.identity import print_report as print_resolution
    from tournesol.identity.service import resolve

    with console.status("Identity resolution: one customer per person...") as spinner:
        resolution = resolve(
            factory, progress=lambda msg: spinner.update(f"Identity resolution: {msg}")
        )

    planted = _planted_rejects(manifest.truth_path)
    table = Table(title="Imports", title_justify="left")
    for col, justify in (
        ("source", "left"),
        ("file", "left"),
        ("format", "left"),
        ("read", "right"),
        ("accepted", "right"),
        ("updated", "right"),
        ("unchanged", "right"),
        ("rejected", "right"),
        ("planted", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        fmt = r.file_format + (f" {r.encoding}" if r.encoding else "")
        fmt += f" {r.delimiter!r}" if r.delimiter else ""
        status = "" if r.status == "completed" else " (already imported)"
        table.add_row(
            r.source,
            r.file + status,
            fmt,
            f"{r.rows_read:,}",
            f"{r.accepted:,}",
            f"{r.updated:,}",
            f"{r.unchanged:,}",
            f"{r.rejected:,}",
            f"{planted.get(r.source, 0):,}",
        )
    console.print(table)

    with unit_of_work(factory) as session:
        _show_store(session)
        _show_rejects(session)
        _show_quality(session)
    print_resolution(resolution)
    with unit_of_work(factory) as session:
        example = _show_merged_example(session)
        crossref = out_dir / "crossref.csv"
        write_csv(crossref, ingest_service.CROSSREF_COLUMNS, ingest_service.crossref_rows(session))
    from tournesol.demo.understand import understand

    understand(factory, console)
    from tournesol.demo.act import act

    act(factory, console)
    from tournesol.demo.journeys import journeys

    journeys(factory, console)
    from tournesol.demo.measure import measure

    measure(factory, console, manifest=manifest)

    console.print(
        f"\n[bold green]Done in {time.perf_counter() - started:.0f} s.[/] "
        f"Cross-reference table written to {crossref}."
    )
    with_rejects = next((r.batch_id for r in reports if r.rejected), None)
    steps = [("tournesol batches list", "every import with its counts")]
    if with_rejects is not None:
        steps.append((f"tournesol batches rejects {with_rejects}", "the rejected rows and why"))
    steps += [
        ("tournesol quality report", "fill, validity and corrections per source and field"),
        ("tournesol identity review", "pairs of records waiting for a person's decision"),
    ]
    if example is not None:
        steps += [
            (f"tournesol identity history {example}", "the merges that built one customer"),
        ]
    steps += [
        ("tournesol quality report --format html --out q.html", "the same as a page"),
        ("tournesol export customers --out c.csv", "the golden records"),
        ("tournesol segments list", "the demo's saved segments, their sizes and moves"),
        ("tournesol segments profile champions_sms", "who they are, against the whole base"),
        ("tournesol campaigns show jardin-printemps", "a planned campaign and its funnel"),
        ("tournesol campaigns run", "send them (set TOURNESOL_SMTP_*: docs/campaigns.md)"),
        ("tournesol journeys list", "the demo's journeys: welcome, abandoned cart, birthday"),
        ("tournesol measure refresh", "allocate purchases, measure the campaigns (run daily)"),
        ("tournesol serve, then /reports", "scorecards, matchback, cube: what campaigns caused"),
        ("tournesol scores train", "the predictive models again, with calibration"),
        ("tournesol demo", "again: every file is recognised, nothing changes"),
    ]
    steps += [("tournesol serve", "the web UI, the REST API and event collection")]
    console.print("Next steps:")
    for cmd, what in steps:
        console.print(f"  [bold]{cmd:<52}[/] {what}", highlight=False)
    return example


DEMO_PASSWORD = "tournesol-demo"
DEMO_USERS = (
    ("demo@tournesol.example", "Demo Admin", "admin"),
    ("conseiller@tournesol.example", "Claire Conseil", "advisor"),
    ("analyste@tournesol.example", "Alain Analyse", "analyst"),
)


def demo_accounts(factory: sessionmaker[Session]) -> str:
    """The demo's staff accounts (one per role worth trying, password ``tournesol-demo``)
    and a fresh event-collection key (the previous demo key is revoked). Returns the key."""
    from tournesol.auth import rules
    from tournesol.auth import service as auth_service

    with unit_of_work(factory) as session:
        for email, name, role in DEMO_USERS:
            user = auth_service.get_by_email(session, email=email)
            if user is None:
                auth_service.create(
                    session, email=email, name=name, role=role, password=DEMO_PASSWORD
                )
            else:
                auth_service.set_password(session, user=user, password=DEMO_PASSWORD)
        for key in auth_service.list_api_keys(session):
            if key.name == "demo events" and key.revoked_at is None:
                auth_service.revoke_api_key(session, key_id=key.id)
        _key, secret = auth_service.create_api_key(
            session, name="demo events", scopes=[rules.EVENTS_WRITE], source_name="web-events"
        )
    table = Table(title="Demo sign-in (password: tournesol-demo)", title_justify="left")
    table.add_column("e-mail")
    table.add_column("role")
    for email, _name, role in DEMO_USERS:
        table.add_row(email, role)
    console.print(table)
    console.print(f"Event collection write key (Segment SDKs): [bold]{secret}[/]", highlight=False)
    return secret


def _show_store(session: Session) -> None:
    table = Table(title="The customer repository now holds", title_justify="left")
    table.add_column("what")
    table.add_column("rows", justify="right")
    linked_txn = session.scalar(
        select(func.count()).select_from(Transaction).where(Transaction.customer_id.is_not(None))
    )
    linked_int = session.scalar(
        select(func.count()).select_from(Interaction).where(Interaction.customer_id.is_not(None))
    )
    rows = [
        ("source records (raw rows with lineage)", _count(session, SourceRecord)),
        ("golden customers (one per person)", _active_customers(session)),
        ("organisations (B2B) / contacts", None),
        ("consents (with proof)", _count(session, Consent)),
        ("products", _count(session, Product)),
        ("transactions (tickets and orders)", _count(session, Transaction)),
        ("  of which linked to a customer", linked_txn or 0),
        ("transaction lines", _count(session, TransactionLine)),
        ("interactions (calls, web events)", _count(session, Interaction)),
        ("  of which linked to a customer", linked_int or 0),
        ("rejected rows (kept with reasons)", _count(session, Reject)),
    ]
    for label, value in rows:
        if value is None:
            value_text = (
                f"{_count(session, Organisation):,} / {_count(session, OrganisationContact):,}"
            )
        else:
            value_text = f"{value:,}"
        table.add_row(label, value_text)
    console.print(table)


def _active_customers(session: Session) -> int:
    query = select(func.count()).select_from(Customer).where(Customer.status == "active")
    return session.scalar(query) or 0


def _show_merged_example(session: Session) -> int | None:
    """The golden record of a customer built from the most sources, with where each value
    came from; returns its id."""
    from tournesol.ingest.models import Source

    counts = (
        select(SourceRecord.customer_id, func.count(func.distinct(SourceRecord.source_id)))
        .where(SourceRecord.entity == "customer", SourceRecord.customer_id.is_not(None))
        .group_by(SourceRecord.customer_id)
        .order_by(
            func.count(func.distinct(SourceRecord.source_id)).desc(), SourceRecord.customer_id
        )
        .limit(1)
    )
    found = session.execute(counts).first()
    if found is None or found[1] < 2:
        return None
    customer = session.get(Customer, found[0])
    assert customer is not None
    sources = dict(
        session.execute(
            select(SourceRecord.id, Source.name)
            .join(Source, Source.id == SourceRecord.source_id)
            .where(SourceRecord.customer_id == customer.id)
        ).all()
    )
    table = Table(
        title=f"Customer {customer.id}: one person seen in {found[1]} sources "
        f"({len(sources)} records)",
        title_justify="left",
    )
    table.add_column("golden field")
    table.add_column("value")
    table.add_column("from (record, source, rule)")
    provenance = customer.provenance or {}
    for column in ("first_name", "last_name", "birth_date", "email", "phone_mobile",
                   "address_line4", "address_line6"):  # fmt: skip
        value = getattr(customer, column)
        origin = provenance.get(column)
        where = f"{origin['record']}, {origin['source']}, {origin['rule']}" if origin else ""
        table.add_row(column, "" if value is None else str(value), where)
    console.print(table)
    return customer.id


def _show_rejects(session: Session) -> None:
    codes = session.execute(
        select(Reject.code, func.count()).group_by(Reject.code).order_by(func.count().desc())
    ).all()
    if not codes:
        return
    example = session.scalars(select(Reject).order_by(Reject.id).limit(3)).all()
    console.print(
        "Rejects by reason: " + ", ".join(f"{code} {n}" for code, n in codes), highlight=False
    )
    for r in example:
        reason = r.reason.removeprefix(f"line {r.line_no}: ")
        console.print(f"  batch {r.batch_id} line {r.line_no}: {reason}", highlight=False)


def _show_quality(session: Session, examples: int = 6) -> None:
    """What the normalizers found per customer source, and a few corrections they made."""
    from tournesol.quality.base import Severity
    from tournesol.quality.flags import severity
    from tournesol.quality.service import build_report

    report = build_report(session)
    table = Table(title="Data quality of the customer sources", title_justify="left")
    for col, justify in (
        ("source", "left"),
        ("records", "right"),
        ("avg score", "right"),
        ("flagged", "right"),
        ("most frequent flags", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in report.sources:
        if not s.fields:
            continue
        table.add_row(
            s.source,
            f"{s.records:,}",
            f"{s.average_score:.0f}",
            f"{s.flagged_records / s.records:.1%}",
            ", ".join(f"{code} {n:,}" for code, n in s.top_flags(3)),
        )
    console.print(table)
    shown = 0
    console.print("Some corrections (the original is kept next to the normalized value):")
    records = session.execute(
        select(SourceRecord.source_key, SourceRecord.normalized)
        .where(SourceRecord.entity == "customer")
        .order_by(SourceRecord.id)
        .execution_options(yield_per=1000)
    )
    seen_flags: set[str] = set()
    for key, normalized in records:
        for name, checked in ((normalized.get("quality") or {}).get("fields") or {}).items():
            fixed = [c for c in checked.get("flags", ()) if severity(c) is Severity.FIXED]
            if not fixed or fixed[0] in seen_flags or "original" not in checked:
                continue
            seen_flags.add(fixed[0])
            after = normalized.get(name, "")
            if name == "address":
                after = " / ".join(normalized[k] for k in ADDRESS_LINES if normalized.get(k))
            console.print(
                f"  {key} {name}: {checked['original']!r} -> {after!r} ({', '.join(fixed)})",
                highlight=False,
            )
            shown += 1
            break
        if shown >= examples:
            break
