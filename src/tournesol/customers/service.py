"""Database work for golden customers, identifiers, organisations, brands. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import BigInteger, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from tournesol.customers.models import (
    Brand,
    Customer,
    CustomerNameKey,
    Organisation,
    OrganisationContact,
)
from tournesol.customers.rules import GOLDEN_FIELDS, name_keys, organisation_key
from tournesol.db import Dialect, UtcDateTime, chunked, utcnow
from tournesol.ingest.models import SourceRecord

EXPORT_COLUMNS = (
    "id",
    "customer_type",
    "status",
    "civility",
    "first_name",
    "last_name",
    "maiden_name",
    "birth_date",
    "email",
    "phone_mobile",
    "phone_fixed",
    "address_line2",
    "address_line3",
    "address_line4",
    "address_line5",
    "postal_code",
    "city",
    "country",
    "language",
    "created_at",
    "updated_at",
)


def get_or_create_brand(session: Session, *, code: str) -> Brand:
    brand = session.scalars(select(Brand).where(Brand.code == code)).one_or_none()
    if brand is None:
        brand = Brand(code=code, name=code)
        session.add(brand)
        session.flush()
    return brand


def _projection(session: Session) -> dict[str, Any]:
    """Golden columns as SQL expressions over a source record's normalized fields."""
    dialect = Dialect.of(session)
    out: dict[str, Any] = {}
    for field_name, column in GOLDEN_FIELDS.items():
        expr = SourceRecord.normalized[field_name]
        if column == "birth_date":
            out[column] = dialect.json_date(expr)
        elif column == "quality_score":
            out[column] = expr.as_integer()
        else:
            out[column] = expr.as_string()
    out["customer_type"] = func.coalesce(out["customer_type"], "customer")
    return out


def create_from_records(
    session: Session, *, record_ids: Sequence[int], brand_id: int | None
) -> None:
    """One golden customer per source record (until identity resolution groups them), with the
    id already written in each record's ``customer_id``. Set-based: one INSERT ... SELECT."""
    if not record_ids:
        return
    projection = _projection(session)
    now = utcnow()
    columns = ["id", *projection, "status", "brand_id", "created_at", "updated_at"]
    for part in chunked(list(record_ids), Dialect.of(session).max_params - 10):
        select_part = select(
            SourceRecord.customer_id,
            *projection.values(),
            literal("active"),
            literal(brand_id, BigInteger()),
            literal(now, UtcDateTime()),
            literal(now, UtcDateTime()),
        ).where(Dialect.of(session).among(SourceRecord.id, part))
        session.execute(insert(Customer).from_select(columns, select_part))


def refresh_from_records(
    session: Session, *, record_ids: Sequence[int], brand_id: int | None
) -> list[int]:
    """Rewrite the golden fields of the customers behind these records from the records' new
    normalized fields (a field the record no longer has becomes empty), for customers that
    are still the projection of their one record. Returns the other customers (golden records
    built by survivorship from several records): the caller rebuilds those."""
    if not record_ids:
        return []
    projection = _projection(session)
    now = utcnow()
    dialect = Dialect.of(session)
    rebuilt: list[int] = []
    for part in chunked(list(record_ids), dialect.max_params - 10):
        session.execute(
            update(Customer)
            .where(
                Customer.id == SourceRecord.customer_id,
                dialect.among(SourceRecord.id, part),
                Customer.provenance.is_(None),
            )
            .values(**projection, brand_id=brand_id, updated_at=now),
            execution_options={"synchronize_session": False},
        )
        rebuilt.extend(
            session.scalars(
                select(Customer.id)
                .join(SourceRecord, SourceRecord.customer_id == Customer.id)
                .where(dialect.among(SourceRecord.id, part), Customer.provenance.is_not(None))
                .distinct()
            )
        )
    return rebuilt


def upsert_organisations(session: Session, *, orgs: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Create or refresh organisations keyed by SIRET (or SIREN when no SIRET); returns
    key -> organisation id. Empty values never overwrite known ones."""
    by_key: dict[str, dict[str, Any]] = {}
    for given in orgs:
        key = organisation_key(given)
        by_key.setdefault(key, {}).update({k: v for k, v in given.items() if v})
    if not by_key:
        return {}
    sirets = [k for k in by_key if len(k) == 14]
    sirens = [k for k in by_key if len(k) != 14]
    found: dict[str, Organisation] = {}
    if sirets:
        for org in session.scalars(select(Organisation).where(Organisation.siret.in_(sirets))):
            assert org.siret is not None
            found[org.siret] = org
    if sirens:
        query = select(Organisation).where(
            Organisation.siren.in_(sirens), Organisation.siret.is_(None)
        )
        for org in session.scalars(query):
            assert org.siren is not None
            found[org.siren] = org
    now = utcnow()
    for key, fields in by_key.items():
        known = found.get(key)
        if known is None:
            known = Organisation(**fields, created_at=now, updated_at=now)
            session.add(known)
            found[key] = known
        else:
            for name, value in fields.items():
                setattr(known, name, value)
            known.updated_at = now
    session.flush()
    return {key: org.id for key, org in found.items()}


def link_contacts(session: Session, *, links: list[dict[str, Any]]) -> None:
    """Attach persons to organisations (organisation_id, customer_id, job_title,
    source_record_id); an existing link gets the new job title."""
    if not links:
        return
    pairs = {(link["organisation_id"], link["customer_id"]): link for link in links}
    customer_ids = list({cid for _, cid in pairs})
    existing: dict[tuple[int, int], int] = {}
    size = Dialect.of(session).max_params - 10
    for part in chunked(customer_ids, size):
        rows = session.execute(
            select(
                OrganisationContact.organisation_id,
                OrganisationContact.customer_id,
                OrganisationContact.id,
            ).where(Dialect.of(session).one_of(OrganisationContact.customer_id, part))
        )
        existing.update({(o, c): i for o, c, i in rows})
    new = [link for pair, link in pairs.items() if pair not in existing]
    old = [
        {"id": existing[pair], "job_title": link.get("job_title")}
        for pair, link in pairs.items()
        if pair in existing
    ]
    if new:
        session.execute(insert(OrganisationContact), new)
    if old:
        session.execute(update(OrganisationContact), old)


def export_rows(session: Session) -> Iterable[tuple[Any, ...]]:
    """Golden records, one tuple per customer in EXPORT_COLUMNS order."""
    columns = [getattr(Customer, c) for c in EXPORT_COLUMNS]
    query = select(*columns).order_by(Customer.id).execution_options(yield_per=10_000)
    for row in session.execute(query):
        yield tuple(row)


def refresh_name_keys(session: Session, *, customer_ids: Sequence[int]) -> None:
    """Rewrite the search keys of these customers from their golden names (set-based: one
    DELETE and one multi-row INSERT per chunk). Call after any write of golden names."""
    dialect = Dialect.of(session)
    for part in chunked(sorted(set(customer_ids)), dialect.max_params // 2 - 10):
        session.execute(
            delete(CustomerNameKey).where(dialect.among(CustomerNameKey.customer_id, part))
        )
        rows = [
            {"customer_id": cid, "key": key}
            for cid, last, maiden in session.execute(
                select(Customer.id, Customer.last_name, Customer.maiden_name).where(
                    dialect.among(Customer.id, part)
                )
            )
            for key in sorted(name_keys((last, maiden)))
        ]
        for rows_part in chunked(rows, dialect.max_params // 2 - 10):
            session.execute(insert(CustomerNameKey), list(rows_part))


def customer_ids_of_records(session: Session, *, record_ids: Sequence[int]) -> list[int]:
    """The customers that hold these source records."""
    dialect = Dialect.of(session)
    out: set[int] = set()
    for part in chunked(list(record_ids), dialect.max_params - 10):
        out.update(
            cid
            for cid in session.scalars(
                select(SourceRecord.customer_id).where(dialect.among(SourceRecord.id, part))
            )
            if cid is not None
        )
    return sorted(out)
