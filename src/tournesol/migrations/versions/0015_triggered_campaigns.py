"""campaign.kind: ``planned`` (a segment planned at once) or ``triggered`` (always running,
its messages sent one by one by journeys through the dispatch gate)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="planned")
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("kind")
