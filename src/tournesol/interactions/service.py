"""Database work for products, transactions with lines, and interactions. Never commits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from tournesol.db import Dialect, chunked, utcnow
from tournesol.ingest.models import SourceRecord
from tournesol.interactions.models import Interaction, Product, Transaction, TransactionLine


def _in_parts(session: Session, values: Sequence[Any]) -> list[Sequence[Any]]:
    return list(chunked(list(values), Dialect.of(session).max_params - 10))


def upsert_products(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """Create or update products by SKU (dicts with sku, name, category, brand_id, price,
    source_record_id)."""
    if not rows:
        return
    by_sku = {r["sku"]: r for r in rows}
    existing: dict[str, int] = {}
    for part in _in_parts(session, list(by_sku)):
        existing.update(
            {
                sku: pid
                for sku, pid in session.execute(
                    select(Product.sku, Product.id).where(
                        Dialect.of(session).one_of(Product.sku, part)
                    )
                )
            }
        )
    new = [r for sku, r in by_sku.items() if sku not in existing]
    old = [r | {"id": existing[sku]} for sku, r in by_sku.items() if sku in existing]
    if new:
        session.execute(insert(Product), new)
    if old:
        session.execute(update(Product), old)


def upsert_transactions(
    session: Session, *, source_id: int, rows: list[dict[str, Any]], overwrite: set[str]
) -> dict[str, int]:
    """Create transactions by ``external_id`` for this source, or update the ones listed in
    ``overwrite`` (their source record changed); returns external_id -> transaction id."""
    by_ext = {r["external_id"]: r for r in rows}
    ids: dict[str, int] = {}
    for part in _in_parts(session, list(by_ext)):
        found = session.execute(
            select(Transaction.external_id, Transaction.id).where(
                Transaction.source_id == source_id,
                Dialect.of(session).one_of(Transaction.external_id, part),
            )
        )
        ids.update({ext: tid for ext, tid in found})
    new = [r | {"source_id": source_id} for ext, r in by_ext.items() if ext not in ids]
    if new:
        now = utcnow()
        result = session.execute(
            insert(Transaction).returning(Transaction.id, sort_by_parameter_order=True),
            [r | {"created_at": now} for r in new],
        )
        for r, (tid,) in zip(new, result, strict=True):
            ids[r["external_id"]] = tid
    changed = [r | {"id": ids[ext]} for ext, r in by_ext.items() if ext in overwrite]
    if changed:
        session.execute(update(Transaction), changed)
    return ids


def upsert_lines(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """Create or replace transaction lines by (transaction_id, line_no)."""
    if not rows:
        return
    keyed = {(r["transaction_id"], r["line_no"]): r for r in rows}
    existing: dict[tuple[int, int], int] = {}
    for part in _in_parts(session, list({t for t, _ in keyed})):
        existing.update(
            {
                (t, n): i
                for t, n, i in session.execute(
                    select(
                        TransactionLine.transaction_id, TransactionLine.line_no, TransactionLine.id
                    ).where(Dialect.of(session).one_of(TransactionLine.transaction_id, part))
                )
            }
        )
    new = [r for k, r in keyed.items() if k not in existing]
    old = [r | {"id": existing[k]} for k, r in keyed.items() if k in existing]
    if new:
        session.execute(insert(TransactionLine), new)
    if old:
        session.execute(update(TransactionLine), old)


def delete_lines(session: Session, *, transaction_ids: Sequence[int]) -> None:
    for part in _in_parts(session, transaction_ids):
        session.execute(
            delete(TransactionLine).where(
                Dialect.of(session).one_of(TransactionLine.transaction_id, part)
            )
        )


def refresh_totals(session: Session, *, transaction_ids: Sequence[int], set_total: bool) -> None:
    """Link lines to products by SKU and, with ``set_total``, set each transaction's total to
    the sum of its lines (when the source gives no total of its own)."""
    line_sum = (
        select(func.sum(TransactionLine.amount))
        .where(TransactionLine.transaction_id == Transaction.id)
        .scalar_subquery()
    )
    product_id = select(Product.id).where(Product.sku == TransactionLine.sku).scalar_subquery()
    for part in _in_parts(session, transaction_ids):
        if set_total:
            session.execute(
                update(Transaction)
                .where(Dialect.of(session).one_of(Transaction.id, part))
                .values(total_amount=line_sum),
                execution_options={"synchronize_session": False},
            )
        session.execute(
            update(TransactionLine)
            .where(
                Dialect.of(session).one_of(TransactionLine.transaction_id, part),
                TransactionLine.product_id.is_(None),
            )
            .values(product_id=product_id),
            execution_options={"synchronize_session": False},
        )


def upsert_interactions(
    session: Session, *, rows: list[dict[str, Any]], overwrite: set[int]
) -> None:
    """Create one interaction per source record, or rewrite those whose record id is in
    ``overwrite``."""
    if not rows:
        return
    existing: dict[int, int] = {}
    if overwrite:
        for part in _in_parts(session, list(overwrite)):
            found = session.execute(
                select(Interaction.source_record_id, Interaction.id).where(
                    Dialect.of(session).one_of(Interaction.source_record_id, part)
                )
            )
            existing.update({rid: iid for rid, iid in found if rid is not None})
    new = [r for r in rows if r["source_record_id"] not in existing]
    old = [
        r | {"id": existing[r["source_record_id"]]}
        for r in rows
        if r["source_record_id"] in existing
    ]
    if new:
        now = utcnow()
        session.execute(insert(Interaction), [r | {"created_at": now} for r in new])
    if old:
        session.execute(update(Interaction), old)


def link_pending(session: Session, *, ref_source_id: int) -> int:
    """Give an owner to transactions and interactions that referenced a key of this source
    before that key was imported. Returns how many rows got linked."""
    linked = 0
    for table in (Transaction, Interaction):
        owner = (
            select(SourceRecord.customer_id)
            .where(
                SourceRecord.source_id == table.customer_ref_source_id,
                SourceRecord.entity == "customer",
                SourceRecord.source_key == table.customer_ref_key,
            )
            .scalar_subquery()
        )
        result = session.execute(
            update(table)
            .where(
                table.customer_id.is_(None),
                table.customer_ref_source_id == ref_source_id,
                table.customer_ref_key.is_not(None),
            )
            .values(customer_id=owner),
            execution_options={"synchronize_session": False},
        )
        linked += getattr(result, "rowcount", 0) or 0
    return linked


# --- contacts logged by staff or the API ---------------------------------------------------

INTERACTION_CHANNELS = (
    "email",
    "sms",
    "phone",
    "postal",
    "web",
    "store",
    "push",
    "chat",
    "social",
    "other",
)
DIRECTIONS = ("inbound", "outbound")
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,59}")


class InteractionError(ValueError):
    """An interaction that cannot be recorded; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def add_interaction(
    session: Session,
    *,
    customer_id: int,
    channel: str,
    direction: str,
    type: str,
    occurred_at: datetime | None,
    subject: str | None,
    outcome: str | None,
    payload: dict[str, Any] | None,
    actor: str,
) -> Interaction:
    """Log one contact with a customer (a call taken, a letter sent...). ``occurred_at``
    defaults to now; the actor is kept in the payload under ``logged_by``. Raises
    InteractionError naming a bad field."""
    channel = (channel or "").strip().lower()
    if channel not in INTERACTION_CHANNELS:
        raise InteractionError(
            "channel", f"{channel!r} is not one of {', '.join(INTERACTION_CHANNELS)}"
        )
    direction = (direction or "").strip().lower()
    if direction not in DIRECTIONS:
        raise InteractionError("direction", f"{direction!r} is not inbound or outbound")
    kind = (type or "").strip().lower()
    if not _TYPE.fullmatch(kind):
        raise InteractionError(
            "type", "lower-case letters, digits and _, starting with a letter (e.g. call)"
        )
    if occurred_at is not None and occurred_at.tzinfo is None:
        raise InteractionError("occurred_at", "give a time zone (e.g. 2024-05-01T10:00:00Z)")
    for name, value, size in (("subject", subject, 300), ("outcome", outcome, 100)):
        if value is not None and len(value) > size:
            raise InteractionError(name, f"at most {size} characters")
    row = Interaction(
        customer_id=customer_id,
        occurred_at=occurred_at.astimezone(UTC) if occurred_at else utcnow(),
        channel=channel,
        direction=direction,
        type=kind,
        subject=(subject or "").strip() or None,
        outcome=(outcome or "").strip() or None,
        payload={**(payload or {}), "logged_by": actor},
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row
