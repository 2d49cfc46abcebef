"""Database work for consents and preferences. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Select, case, delete, false, func, insert, literal, select, true
from sqlalchemy.orm import Session, aliased

from tournesol.consent import rules as consent_rules
from tournesol.consent.models import Consent, ConsentState, Preference
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
        refresh_state(
            session,
            customers=select(record.customer_id).where(
                dialect.among(record.id, part), record.customer_id.is_not(None)
            ),
        )


# --- the current state ---------------------------------------------------------------------

_STATE_COLUMNS = (
    "consent_id",
    "customer_id",
    "channel",
    "purpose",
    "brand_id",
    "status",
    "collected_at",
    "provable",
)


def refresh_state(session: Session, *, customers: Sequence[int] | Select[Any] | None) -> None:
    """Rewrite ``consent_state`` for these customers (a list of ids or a SELECT of ids; None:
    every customer) from their consent rows: one row per channel, purpose and brand, the
    latest by collected_at then id. Call it in the transaction that changes consents."""
    if customers is None:
        session.execute(delete(ConsentState))
        session.execute(insert(ConsentState).from_select(list(_STATE_COLUMNS), _latest(None)))
        return
    if isinstance(customers, Select):
        _refresh_some(session, customers)
        return
    dialect = Dialect.of(session)
    for part in chunked(sorted(set(customers)), dialect.max_params - 10):
        _refresh_some(session, part)


def _refresh_some(session: Session, customers: Sequence[int] | Select[Any]) -> None:
    if isinstance(customers, Select):
        of_state: Any = ConsentState.customer_id.in_(customers)
        of_consent: Any = Consent.customer_id.in_(customers)
    else:
        dialect = Dialect.of(session)
        of_state = dialect.one_of(ConsentState.customer_id, customers)
        of_consent = dialect.one_of(Consent.customer_id, customers)
    session.execute(delete(ConsentState).where(of_state))
    session.execute(insert(ConsentState).from_select(list(_STATE_COLUMNS), _latest(of_consent)))


def _latest(condition: Any) -> Select[Any]:
    c = Consent
    provable = case(
        (
            (c.proof["kind"].as_string() == "manual")
            | c.proof["reference"].as_string().is_not(None),
            true(),
        ),
        else_=false(),
    )
    ranked = select(
        c.id,
        c.customer_id,
        c.channel,
        c.purpose,
        c.brand_id,
        c.status,
        c.collected_at,
        provable.label("provable"),
        func.row_number()
        .over(
            partition_by=(c.customer_id, c.channel, c.purpose, c.brand_id),
            order_by=(c.collected_at.desc(), c.id.desc()),
        )
        .label("rank"),
    )
    if condition is not None:
        ranked = ranked.where(condition)
    r = ranked.subquery("ranked")
    return select(
        r.c.id, r.c.customer_id, r.c.channel, r.c.purpose, r.c.brand_id, r.c.status,
        r.c.collected_at, r.c.provable,
    ).where(r.c.rank == 1)  # fmt: skip


# --- consents and preferences entered by staff or the API ----------------------------------


def history(session: Session, *, customer_id: int) -> list[Consent]:
    """Every consent row of a customer, newest collected first."""
    query = (
        select(Consent)
        .where(Consent.customer_id == customer_id)
        .order_by(Consent.collected_at.desc(), Consent.id.desc())
    )
    return list(session.scalars(query))


def current_consents(session: Session, *, customer_id: int) -> list[Consent]:
    """The state that holds now per channel, purpose and brand: the latest row by
    collected_at (rows are never updated; a change is a new row)."""
    return latest_of(history(session, customer_id=customer_id))


def latest_of(rows: Sequence[Consent]) -> list[Consent]:
    """Of a customer's consent rows, those that hold now (``current_consents`` without the
    query, for a caller that already read the history)."""
    by_id = {row.id: row for row in rows}
    plain = [
        {
            "id": r.id,
            "channel": r.channel,
            "purpose": r.purpose,
            "brand_id": r.brand_id,
            "collected_at": r.collected_at,
        }
        for r in rows
    ]
    return [by_id[int(r["id"])] for r in consent_rules.latest(plain)]


def set_consent(
    session: Session,
    *,
    customer_id: int,
    channel: str,
    purpose: str,
    brand_id: int | None,
    status: str,
    proof_source: str,
    proof_text_version: str,
    collected_at: datetime,
    actor: str,
) -> Consent:
    """Record a consent decision as a new row (the history keeps every earlier one), with
    its proof: where it was collected, the wording's version, when and who entered it.
    Raises ConsentRuleError naming a bad field."""
    if collected_at.tzinfo is not None:
        collected_at = collected_at.astimezone(UTC)
    proof = consent_rules.proof_of(
        source=proof_source, text_version=proof_text_version, collected_at=collected_at, actor=actor
    )
    row = Consent(
        customer_id=customer_id,
        channel=consent_rules.check_channel(channel),
        purpose=consent_rules.check_purpose(purpose),
        brand_id=brand_id,
        status=consent_rules.check_status(status),
        collected_at=collected_at,
        proof=proof,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    refresh_state(session, customers=[customer_id])
    return row


def preferences(session: Session, *, customer_id: int) -> list[Preference]:
    query = (
        select(Preference).where(Preference.customer_id == customer_id).order_by(Preference.channel)
    )
    return list(session.scalars(query))


def set_preference(
    session: Session,
    *,
    customer_id: int,
    channel: str,
    preferred: bool,
    days: str | None,
    hours: str | None,
    language: str | None,
    max_per_week: int | None,
) -> Preference:
    """Create or replace the customer's preference for one channel (``any`` for all), after
    checking days (``mon,tue``), hours (``09:00-12:00,14:00-18:00``), language and weekly cap.
    Raises ConsentRuleError naming the bad field."""
    values = {
        "channel": consent_rules.check_channel(channel),
        "preferred": bool(preferred),
        "days": consent_rules.parse_days(days),
        "hours": consent_rules.parse_hours(hours),
        "language": consent_rules.check_language(language),
        "max_per_week": consent_rules.check_max_per_week(max_per_week),
        "updated_at": utcnow(),
    }
    row = session.scalars(
        select(Preference).where(
            Preference.customer_id == customer_id, Preference.channel == values["channel"]
        )
    ).one_or_none()
    if row is None:
        row = Preference(customer_id=customer_id, **values)
        session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    session.flush()
    return row
