"""customers by mobile number: an SMS reply (STOP) finds its customers without a scan

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_customer_phone_mobile", "customer", ["phone_mobile"])


def downgrade() -> None:
    op.drop_index("ix_customer_phone_mobile", table_name="customer")
