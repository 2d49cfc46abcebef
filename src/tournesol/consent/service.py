"""Database work for consents and preferences. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, case, func, insert, literal, select
from sqlalchemy.orm import Session, aliased

from tournesol.consent.models import Consent
from tournesol.db import Dialect, UtcDateTime, chunked, utcnow
from tournesol.ingest.models import SourceRecord, SourceRecordVersion

CONSENT_COLUMNS = (
    "customer_id",
    "channel",
    "purpose",
    "brand_id",
    "status",
    "collected_at",
    "source_id",
    "source_record_id",
    "proof",
)


def record_from_records(
    session: Session,
    *,
    record_ids: Sequence[int],
    label: str,
    column: str,
    batch_id: int,
    file_name: str,
    brand_id: int | None,
    source_id: int,
    default_collected_at: datetime,
    updated: bool = False,
) -> None:
    """Append the consent one mapping column gives (``label`` = ``channel:purpose``) for each of
    these source records, set-based. With ``updated`` (records this batch changed), a consent
    is added only when its value differs from the version the batch superseded. The proof
    points at the import: batch, file, line, column and the value as read."""
    if not record_ids:
        return
    dialect = Dialect.of(session)
    channel, purpose = label.split(":", 1)
    record = SourceRecord
    before = aliased(SourceRecordVersion)
    new_value = record.normalized[("consents", label)]
    old_value = before.normalized[("consents", label)]
    collected = func.coalesce(
        dialect.json_timestamp(record.normalized[("consent_details", label, "collected_at")]),
        literal(default_collected_at, UtcDateTime()),
    )
    proof = dialect.json_object(
        "kind", "import",
        "batch_id", batch_id,
        "file", file_name,
        "line", record.line_no,
        "column", column,
        "value", record.raw[column].as_string(),
        "reference", record.normalized[("consent_details", label, "proof")].as_string(),
    )  # fmt: skip
    now = utcnow()
    for part in chunked(list(record_ids), dialect.max_params - 10):
        rows = select(
            record.customer_id,
            literal(channel),
            literal(purpose),
            literal(brand_id, BigInteger()),
            case((new_value.as_boolean(), "granted"), else_="denied"),
            collected,
            literal(source_id, BigInteger()),
            record.id,
            proof,
            literal(now, UtcDateTime()),
        ).where(
            dialect.among(record.id, part),
            record.customer_id.is_not(None),
            new_value.as_string().is_not(None),
        )
        if updated:
            rows = rows.outerjoin(
                before,
                (before.source_record_id == record.id)
                & (before.superseded_by_batch_id == batch_id),
            ).where(
                before.id.is_(None)
                | old_value.as_string().is_(None)
                | (old_value.as_string() != new_value.as_string())
            )
        session.execute(insert(Consent).from_select([*CONSENT_COLUMNS, "created_at"], rows))
