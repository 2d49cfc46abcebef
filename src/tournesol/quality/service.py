"""The quality report from the store: source records' quality sections, identifiers shared
by several records of a source. Reads only; never commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tournesol.db import utcnow
from tournesol.ingest.models import Source, SourceRecord
from tournesol.quality.report import Duplicate, QualityReport, ReportBuilder

BATCH = 5000


def build_report(
    session: Session, *, source: str | None = None, now: datetime | None = None
) -> QualityReport:
    """Per source (or the one named) and per field: fill rate, validity, corrections, flags,
    and identifiers shared by several records. Raises LookupError for an unknown source."""
    sources = select(Source.id, Source.name).order_by(Source.name)
    if source is not None:
        sources = sources.where(Source.name == source)
    found = session.execute(sources).all()
    if source is not None and not found:
        known = session.scalars(select(Source.name).order_by(Source.name)).all()
        raise LookupError(
            f"no source named {source!r}; known sources: {', '.join(known) or 'none'}"
        )
    builder = ReportBuilder()
    for source_id, name in found:
        rows = session.execute(
            select(
                SourceRecord.entity,
                SourceRecord.normalized["quality"],
                SourceRecord.normalized["identifiers"],
            )
            .where(SourceRecord.source_id == source_id)
            .execution_options(yield_per=BATCH)
        )
        kinds: dict[str, set[str]] = {}
        for entity, quality, identifiers in rows:
            builder.add(name, entity, quality)
            seen = kinds.setdefault(entity, set())
            if identifiers:
                seen.update(identifiers)
        for entity, entity_kinds in kinds.items():
            builder.add_duplicates(
                name,
                entity,
                [_duplicates(session, source_id, entity, k) for k in sorted(entity_kinds)],
            )
    return builder.build(now or utcnow())


def _duplicates(session: Session, source_id: int, entity: str, kind: str) -> Duplicate:
    value = SourceRecord.normalized["identifiers"][kind].as_string()
    groups = (
        select(value.label("value"), func.count().label("n"))
        .where(
            SourceRecord.source_id == source_id,
            SourceRecord.entity == entity,
            value.is_not(None),
        )
        .group_by(value)
        .having(func.count() > 1)
        .subquery()
    )
    shared, records = session.execute(
        select(func.count(), func.coalesce(func.sum(groups.c.n), 0))
    ).one()
    return Duplicate(kind, int(shared), int(records))
