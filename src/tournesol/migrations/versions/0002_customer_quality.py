"""customer: AFNOR lines 1 and 6, INSEE commune code, quality score

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer") as batch:
        batch.add_column(sa.Column("address_line1", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("address_line6", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("insee_code", sa.String(length=5), nullable=True))
        batch.add_column(sa.Column("quality_score", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("quality_score")
        batch.drop_column("insee_code")
        batch.drop_column("address_line6")
        batch.drop_column("address_line1")
