"""indexes for reads: the name keys indexed with their customer (a name search reads the
customers of a key from the index alone); a customer's transactions and interactions indexed
with what features, RFM and segments aggregate (read from the index alone)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 20:15:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_customer_name_key_key_customer", "customer_name_key", ["key", "customer_id"]
    )
    op.drop_index("ix_customer_name_key_key", table_name="customer_name_key")
    op.drop_index("ix_transaction_customer_time", table_name="transaction")
    op.create_index(
        "ix_transaction_customer_time",
        "transaction",
        ["customer_id", "occurred_at", "kind", "channel", "total_amount", "brand_id"],
    )
    op.drop_index("ix_interaction_customer_time", table_name="interaction")
    op.create_index(
        "ix_interaction_customer_time", "interaction", ["customer_id", "occurred_at", "direction"]
    )


def downgrade() -> None:
    op.drop_index("ix_interaction_customer_time", table_name="interaction")
    op.create_index("ix_interaction_customer_time", "interaction", ["customer_id", "occurred_at"])
    op.drop_index("ix_transaction_customer_time", table_name="transaction")
    op.create_index("ix_transaction_customer_time", "transaction", ["customer_id", "occurred_at"])
    op.create_index("ix_customer_name_key_key", "customer_name_key", ["key"])
    op.drop_index("ix_customer_name_key_key_customer", table_name="customer_name_key")
