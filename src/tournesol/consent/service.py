"""Database work for consents and preferences. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tournesol.consent.models import Consent
from tournesol.db import utcnow


def record_many(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """Append consent rows (customer_id, channel, purpose, brand_id, status, collected_at,
    source_id, source_record_id, proof). Consents are never edited: each change is a row."""
    if rows:
        now = utcnow()
        session.execute(insert(Consent), [r | {"created_at": now} for r in rows])


def history(session: Session, *, customer_id: int) -> Sequence[Consent]:
    return session.scalars(
        select(Consent)
        .where(Consent.customer_id == customer_id)
        .order_by(Consent.collected_at, Consent.id)
    ).all()


def current(session: Session, *, customer_id: int) -> dict[tuple[str, str], Consent]:
    """The latest consent per (channel, purpose)."""
    latest: dict[tuple[str, str], Consent] = {}
    for consent in history(session, customer_id=customer_id):
        latest[(consent.channel, consent.purpose)] = consent
    return latest


def status_word(granted: bool) -> str:
    return "granted" if granted else "denied"


def collected_at(value: Any, default: datetime) -> datetime:
    return value if isinstance(value, datetime) else default
