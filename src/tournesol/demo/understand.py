"""The demo's last step: compute what segments read (features, RFM, scores), save the demo's
segments (``demo/segments.yaml``) and show them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from tournesol.db import unit_of_work, utcnow

SEGMENTS_FILE = Path(__file__).with_name("segments.yaml")


def demo_segments() -> list[dict[str, Any]]:
    """The saved segments the demo creates: code, name, description and definition."""
    loaded: list[dict[str, Any]] = yaml.safe_load(SEGMENTS_FILE.read_text(encoding="utf-8"))
    return loaded


def _save_segments(session: Session) -> list[tuple[str, str, int, str, int]]:
    from tournesol.segments import service as segments

    rows = []
    for item in demo_segments():
        segment = segments.get_by_code(session, code=item["code"])
        if segment is None:
            segment = segments.create(
                session,
                code=item["code"],
                name=item["name"],
                description=item.get("description"),
                definition=item["definition"],
            )
        else:  # a second demo run: the file is the truth
            segments.update(
                session,
                segment=segment,
                name=item["name"],
                description=item.get("description"),
                definition=item["definition"],
            )
        snapshot = segments.refresh(session, segment)
        rows.append(
            (segment.code, segment.name, snapshot.size, snapshot.path or "", snapshot.duration_ms)
        )
    return rows


def understand(factory: sessionmaker[Session], console: Console) -> None:
    """Features, RFM, both predictive models (trained and applied), then the demo segments."""
    from tournesol.scoring import features
    from tournesol.scoring.service import ScoringError, refresh_rfm
    from tournesol.scoring.training import MODELS, apply, train

    now = utcnow()
    with (
        console.status("Customer features (purchases, contacts, windows)..."),
        unit_of_work(factory) as session,
    ):
        done = features.refresh(session, now=now)
    console.print(f"[green]✓[/] Features of {done:,} customers")
    with console.status("RFM per brand..."), unit_of_work(factory) as session:
        counts = refresh_rfm(session, now=now)
    scopes = ", ".join(f"{c.scope} ({c.customers:,})" for c in counts)
    console.print(f"[green]✓[/] RFM scores and segments: {scopes}")

    models = Table(title="Predictive scores (time-based holdout)", title_justify="left")
    for col in ("model", "version", "AUC", "recency-only AUC", "Brier"):
        models.add_column(col, justify="left" if col in ("model", "version") else "right")
    for name in MODELS:
        with console.status(f"Training {name}...") as status, unit_of_work(factory) as session:
            try:
                report = train(session, name=name, progress=status.update)
            except ScoringError as exc:
                console.print(f"[yellow]![/] {name} not trained: {exc}")
                continue
        m = report.metrics
        models.add_row(
            name,
            report.version,
            f"{m['auc']:.3f}",
            f"{m['baseline_auc']:.3f}",
            f"{m['brier']:.3f}",
        )
    console.print(models)
    with console.status("Scoring every customer..."), unit_of_work(factory) as session:
        try:
            applied = apply(session, now=now)
        except ScoringError as exc:
            console.print(f"[yellow]![/] no scores: {exc}")
            applied = []
    for a in applied:
        console.print(f"[green]✓[/] {a.name} {a.version}: {a.scored:,} customers scored")

    with console.status("Saved segments..."), unit_of_work(factory) as session:
        rows = _save_segments(session)
    table = Table(title="Segments", title_justify="left")
    for col, justify in (("code", "left"), ("name", "left"), ("size", "right"), ("path", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    table.add_column("time", justify="right")
    for code, name, size, path, ms in rows:
        table.add_row(code, name, f"{size:,}", path, f"{ms} ms")
    console.print(table)
