"""A content snapshot of the store by natural keys (no surrogate ids, no timestamps), to check
that two ways of reaching a state reach the same one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection


def _rows(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(str(v) for v in row) for row in conn.execute(text(sql))), key=repr)


def snapshot(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    rec = "source_record sr JOIN source s ON s.id = sr.source_id"
    owner = (
        "(SELECT s2.name || '/' || r2.source_key FROM source_record r2 JOIN source s2 "
        "ON s2.id = r2.source_id WHERE r2.customer_id = {col} AND r2.entity = 'customer' "
        "ORDER BY r2.id LIMIT 1)"
    )
    return {
        "sources": _rows(conn, "SELECT name, kind, trust_rank FROM source"),
        "batches": _rows(
            conn,
            "SELECT s.name, b.file_name, b.status, b.rows_read, b.accepted, b.updated, "
            "b.unchanged, b.rejected FROM import_batch b JOIN source s ON s.id = b.source_id",
        ),
        "records": _rows(
            conn,
            f"SELECT s.name, sr.entity, sr.source_key, sr.record_hash, sr.line_no, "
            f"sr.customer_id IS NULL FROM {rec}",
        ),
        "versions": _rows(
            conn,
            "SELECT s.name, sr.source_key, v.record_hash FROM source_record_version v "
            "JOIN source_record sr ON sr.id = v.source_record_id JOIN source s ON s.id = sr.source_id",
        ),
        "rejects": _rows(conn, "SELECT line_no, code, reason, raw_text FROM reject"),
        "customers": _rows(
            conn,
            f"SELECT {owner.format(col='c.id')}, c.customer_type, c.civility, c.first_name, "
            "c.last_name, c.birth_date, c.email, c.phone_mobile, c.postal_code, c.city FROM customer c",
        ),
        "identifiers": _rows(
            conn, f"SELECT {owner.format(col='i.customer_id')}, i.kind, i.value FROM identifier i"
        ),
        "consents": _rows(
            conn,
            f"SELECT {owner.format(col='c.customer_id')}, c.channel, c.purpose, c.status "
            "FROM consent c",
        ),
        "transactions": _rows(
            conn,
            f"SELECT t.external_id, t.total_amount, t.occurred_at, "
            f'{owner.format(col="t.customer_id")}, t.customer_ref_key FROM "transaction" t',
        ),
        "lines": _rows(
            conn,
            "SELECT t.external_id, l.line_no, l.sku, l.quantity, l.amount FROM transaction_line l "
            'JOIN "transaction" t ON t.id = l.transaction_id',
        ),
        "interactions": _rows(
            conn,
            f"SELECT {owner.format(col='i.customer_id')}, i.channel, i.direction, i.type, "
            "i.occurred_at, i.customer_ref_key FROM interaction i",
        ),
        "organisations": _rows(conn, "SELECT siret, siren, name, naf_code FROM organisation"),
    }
