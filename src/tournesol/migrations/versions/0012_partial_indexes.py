"""indexes over columns that are NULL on most rows cover only the other rows: a campaign plan
writes a million timeline and outbox rows without an entry in them

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, index, columns, the rows it covers)
PARTIAL: tuple[tuple[str, str, list[str], str], ...] = (
    (
        "transaction", "ix_transaction_unlinked", ["customer_ref_source_id", "customer_ref_key"],
        "customer_ref_source_id IS NOT NULL",
    ),
    (
        "interaction", "ix_interaction_unlinked", ["customer_ref_source_id", "customer_ref_key"],
        "customer_ref_source_id IS NOT NULL",
    ),
    ("outbox", "ix_outbox_provider", ["provider_id"], "provider_id IS NOT NULL"),
)  # fmt: skip


def upgrade() -> None:
    for table, name, columns, condition in PARTIAL:
        op.drop_index(name, table_name=table)
        where = sa.text(condition)
        op.create_index(name, table, columns, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for table, name, columns, _condition in PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
