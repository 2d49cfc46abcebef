"""What an accepted chunk of rows does to the store, per entity.

Each handler receives the chunk's new records and changed records (a changed record's previous
state is kept as a version) and writes the source records and the entity rows (customers,
transactions, interactions, organisations, products) in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tournesol.consent import service as consent_service
from tournesol.customers import rules as customer_rules
from tournesol.customers import service as customer_service
from tournesol.customers.models import Customer
from tournesol.db import Dialect
from tournesol.ingest import service as ingest_service
from tournesol.ingest.rules import MappedRow, to_json_value
from tournesol.ingest.schemas import EntityKind, Mapping
from tournesol.ingest.service import ExistingRecord
from tournesol.interactions import service as history_service

TRANSACTION_FIELDS = (
    "occurred_at",
    "kind",
    "channel",
    "store_code",
    "total_amount",
    "currency",
    "status",
)
LINE_FIELDS = ("sku", "label", "category", "quantity", "unit_price", "amount")
INTERACTION_FIELDS = (
    "occurred_at",
    "channel",
    "direction",
    "type",
    "subject",
    "outcome",
    "campaign_code",
)
ORGANISATION_FIELDS = (
    "siret",
    "siren",
    "name",
    "naf_code",
    "headcount_band",
    "org_class",
    "postal_code",
    "city",
)


@dataclass
class ChunkContext:
    """What every handler needs to know about the file being imported."""

    mapping: Mapping
    source_id: int
    brand_id: int | None
    batch_id: int
    file_name: str
    started_at: datetime
    ref_source_id: int | None  # the source named by the mapping's `customer:` reference
    consent_columns: dict[str, str]  # "channel:purpose" -> the file's column holding it
    # The source held no records of this entity when this (fresh, not resumed) batch began:
    # every key is new, except repeats within the file, which the reading side catches.
    first_load: bool = False


@dataclass
class Accepted:
    """One accepted row; ``existing`` is its stored record when it changed."""

    row: MappedRow
    existing: ExistingRecord | None = None


def _write_records(
    session: Session,
    ctx: ChunkContext,
    new: list[Accepted],
    changed: list[Accepted],
    customer_ids: list[int | None] | None = None,
) -> list[int]:
    owners = customer_ids if customer_ids is not None else [None] * len(new)
    ids = ingest_service.insert_records(
        session,
        source_id=ctx.source_id,
        entity=ctx.mapping.entity.value,
        batch_id=ctx.batch_id,
        rows=[
            (r.key, r.raw_json, r.normalized_json, r.flags_json, r.record_hash, r.line_no, cid)
            for r, cid in zip((item.row for item in new), owners, strict=True)
        ],
    )
    ingest_service.supersede_records(
        session,
        batch_id=ctx.batch_id,
        changes=[
            {
                "id": item.existing.id,
                "raw": item.row.raw_json,
                "normalized": item.row.normalized_json,
                "flags": item.row.flags_json,
                "record_hash": item.row.record_hash,
                "line_no": item.row.line_no,
            }
            for item in changed
            if item.existing is not None
        ],
    )
    return ids


def handle_customers(
    session: Session, ctx: ChunkContext, new: list[Accepted], changed: list[Accepted]
) -> None:
    """Each new customer record starts as its own golden customer, projected from the
    record's normalized fields in SQL; identity resolution (``identity.service.resolve``,
    run after the import) then merges the records of one person. A changed record refreshes
    its customer: by projection while the customer has only that record, by the survivorship
    rules once it has several. Consents are appended set-based with their proof. Identifiers
    are indexed by identity resolution, from the records' normalized fields."""
    customer_ids = Dialect.of(session).reserve_ids(
        session.connection(),
        Customer.__table__,  # type: ignore[arg-type]
        len(new),
    )
    record_ids = _write_records(session, ctx, new, changed, list(customer_ids))
    customer_service.create_from_records(session, record_ids=record_ids, brand_id=ctx.brand_id)
    changed_ids = [i.existing.id for i in changed if i.existing is not None]
    merged = customer_service.refresh_from_records(
        session, record_ids=changed_ids, brand_id=ctx.brand_id
    )
    if merged:  # customers of several records: their golden record follows survivorship
        from tournesol.identity.merges import refresh_golden

        refresh_golden(session, merged)
    customer_service.refresh_name_keys(
        session,
        customer_ids=[
            *customer_ids,
            *customer_service.customer_ids_of_records(session, record_ids=changed_ids),
        ],
    )
    for label, column in ctx.consent_columns.items():
        for ids, updated in ((record_ids, False), (changed_ids, True)):
            consent_service.record_from_records(
                session,
                record_ids=ids,
                label=label,
                column=column,
                batch_id=ctx.batch_id,
                file_name=ctx.file_name,
                brand_id=ctx.brand_id,
                source_id=ctx.source_id,
                default_collected_at=ctx.started_at,
                updated=updated,
            )
    record_of = {id(i): rid for i, rid in zip(new, record_ids, strict=True)}
    customer_of: dict[int, int | None] = {
        id(i): cid for i, cid in zip(new, customer_ids, strict=True)
    }
    for item in changed:
        assert item.existing is not None
        record_of[id(item)] = item.existing.id
        customer_of[id(item)] = item.existing.customer_id
    contacts = [
        item
        for item in new + changed
        if item.row.organisation is not None and customer_of[id(item)] is not None
    ]
    if contacts:
        orgs = [item.row.organisation for item in contacts if item.row.organisation]
        org_ids = customer_service.upsert_organisations(session, orgs=orgs)
        customer_service.link_contacts(
            session,
            links=[
                {
                    "organisation_id": org_ids[customer_rules.organisation_key(org)],
                    "customer_id": customer_of[id(item)],
                    "job_title": item.row.values.get("job_title"),
                    "source_record_id": record_of[id(item)],
                }
                for item, org in zip(contacts, orgs, strict=True)
            ],
        )


def _owners(session: Session, ctx: ChunkContext, rows: list[MappedRow]) -> dict[str, int]:
    if ctx.ref_source_id is None:
        return {}
    refs = {r.customer_ref for r in rows if r.customer_ref}
    return ingest_service.customer_ids_for_keys(session, source_id=ctx.ref_source_id, keys=refs)


def _records_and_owners(
    session: Session, ctx: ChunkContext, new: list[Accepted], changed: list[Accepted]
) -> tuple[list[Accepted], dict[str, int], dict[int, int]]:
    """Write the chunk's records; return its rows, the customers their references name, and
    each row's record id (keyed by ``id(row)``)."""
    items = new + changed
    owners = _owners(session, ctx, [i.row for i in items])
    record_ids = _write_records(session, ctx, new, changed)
    rec_of = {id(item): rid for item, rid in zip(new, record_ids, strict=True)}
    rec_of.update({id(i): i.existing.id for i in changed if i.existing})
    return items, owners, rec_of


def _extra(values: dict[str, Any], known: tuple[str, ...]) -> dict[str, Any]:
    return {k: to_json_value(v) for k, v in values.items() if k not in known and v is not None}


def handle_transactions(
    session: Session, ctx: ChunkContext, new: list[Accepted], changed: list[Accepted]
) -> None:
    items, owners, rec_of = _records_and_owners(session, ctx, new, changed)

    headers: dict[str, dict[str, Any]] = {}
    for item in items:
        row = item.row
        ext = row.transaction_key or row.key
        header = {f: row.values.get(f) for f in TRANSACTION_FIELDS}
        header["kind"] = header["kind"] or "ticket"
        header["currency"] = header["currency"] or "EUR"
        header.update(
            external_id=ext,
            brand_id=ctx.brand_id,
            customer_id=owners.get(row.customer_ref) if row.customer_ref else None,
            customer_ref_source_id=ctx.ref_source_id if row.customer_ref else None,
            customer_ref_key=row.customer_ref,
            attributes=_extra(row.values, TRANSACTION_FIELDS),
        )
        if row.transaction_key is None:  # one record per transaction: it is the header's source
            header["source_record_id"] = rec_of[id(item)]
        headers.setdefault(ext, header)
    overwrite = {(i.row.transaction_key or i.row.key) for i in changed}
    txn_ids = history_service.upsert_transactions(
        session, source_id=ctx.source_id, rows=list(headers.values()), overwrite=overwrite
    )
    nested_changed = [txn_ids[i.row.key] for i in changed if i.row.transaction_key is None]
    history_service.delete_lines(session, transaction_ids=nested_changed)
    lines = []
    for item in items:
        ext = item.row.transaction_key or item.row.key
        for line in item.row.lines:
            lines.append(
                {f: line.get(f) for f in LINE_FIELDS}
                | {
                    "transaction_id": txn_ids[ext],
                    "line_no": line["line_no"],
                    "source_record_id": rec_of[id(item)],
                }
            )
    history_service.upsert_lines(session, rows=lines)
    history_service.refresh_totals(
        session,
        transaction_ids=sorted({txn_ids[h] for h in headers}),
        set_total="total_amount" not in ctx.mapping.fields,
    )


def handle_interactions(
    session: Session, ctx: ChunkContext, new: list[Accepted], changed: list[Accepted]
) -> None:
    items, owners, rec_of = _records_and_owners(session, ctx, new, changed)
    rows = []
    for item in items:
        row = item.row
        values = {f: row.values.get(f) for f in INTERACTION_FIELDS}
        values["channel"] = values["channel"] or "other"
        values["direction"] = values["direction"] or "inbound"
        values["type"] = values["type"] or "contact"
        rows.append(
            values
            | {
                "customer_id": owners.get(row.customer_ref) if row.customer_ref else None,
                "customer_ref_source_id": ctx.ref_source_id if row.customer_ref else None,
                "customer_ref_key": row.customer_ref,
                "brand_id": ctx.brand_id,
                "source_id": ctx.source_id,
                "source_record_id": rec_of[id(item)],
                "payload": _extra(row.values, INTERACTION_FIELDS),
            }
        )
    history_service.upsert_interactions(
        session, rows=rows, overwrite={i.existing.id for i in changed if i.existing}
    )


def handle_organisations(
    session: Session, ctx: ChunkContext, new: list[Accepted], changed: list[Accepted]
) -> None:
    _write_records(session, ctx, new, changed)
    orgs = []
    for item in new + changed:
        values = {f: item.row.values.get(f) for f in ORGANISATION_FIELDS}
        org = customer_rules.organisation_values({f"org_{k}": v for k, v in values.items()})
        if org is not None:
            org.update({k: values[k] for k in ("postal_code", "city") if values.get(k)})
            orgs.append(org)
    customer_service.upsert_organisations(session, orgs=orgs)


def handle_products(
    session: Session, ctx: ChunkContext, new: list[Accepted], changed: list[Accepted]
) -> None:
    items = new + changed
    record_ids = _write_records(session, ctx, new, changed)
    rec_of = {id(item): rid for item, rid in zip(new, record_ids, strict=True)}
    rec_of.update({id(i): i.existing.id for i in changed if i.existing})
    brands: dict[str, int] = {}
    rows = []
    for item in items:
        values = item.row.values
        brand_code = values.get("brand")
        brand_id = ctx.brand_id
        if brand_code:
            if brand_code not in brands:
                brands[brand_code] = customer_service.get_or_create_brand(
                    session, code=brand_code
                ).id
            brand_id = brands[brand_code]
        rows.append(
            {
                "sku": values.get("sku") or item.row.key,
                "name": values.get("name"),
                "category": values.get("category"),
                "price": values.get("price"),
                "brand_id": brand_id,
                "source_record_id": rec_of[id(item)],
            }
        )
    history_service.upsert_products(session, rows=rows)


Handler = Callable[[Session, ChunkContext, list[Accepted], list[Accepted]], None]

HANDLERS: dict[EntityKind, Handler] = {
    EntityKind.customer: handle_customers,
    EntityKind.transaction: handle_transactions,
    EntityKind.interaction: handle_interactions,
    EntityKind.organisation: handle_organisations,
    EntityKind.product: handle_products,
}
