"""what a campaign plan writes a million times costs less: campaign_target and outbox rows
lose their per-row foreign-key check on the campaign (the plan locks its campaigns instead,
and campaigns are never deleted), and interaction.source_record_id is unique only where set

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLANNED = ("campaign_target", "outbox")
WHERE = "source_record_id IS NOT NULL"


def upgrade() -> None:
    for table in PLANNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_campaign_id_campaign", type_="foreignkey")
    with op.batch_alter_table("interaction") as batch:
        batch.drop_constraint("uq_interaction_source_record_id", type_="unique")
    where = sa.text(WHERE)
    op.create_index(
        "uq_interaction_source_record_id",
        "interaction",
        ["source_record_id"],
        unique=True,
        postgresql_where=where,
        sqlite_where=where,
    )


def downgrade() -> None:
    op.drop_index("uq_interaction_source_record_id", table_name="interaction")
    with op.batch_alter_table("interaction") as batch:
        batch.create_unique_constraint("uq_interaction_source_record_id", ["source_record_id"])
    for table in PLANNED:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_campaign_id_campaign", "campaign", ["campaign_id"], ["id"]
            )
