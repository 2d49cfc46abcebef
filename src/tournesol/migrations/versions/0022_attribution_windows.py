"""attribution windows per channel, the postal service delay and the margin rate of a campaign

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-24 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(
            sa.Column("attribution_windows", JSON, server_default="{}", nullable=False)
        )
        batch.add_column(
            sa.Column("postal_delay_days", sa.Integer(), server_default="3", nullable=False)
        )
        batch.add_column(sa.Column("margin_rate", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("margin_rate")
        batch.drop_column("postal_delay_days")
        batch.drop_column("attribution_windows")
