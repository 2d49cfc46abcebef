"""engagement hygiene: first human open and click of each message (machine opens and suspected
bot clicks kept, flagged)

The opens and clicks recorded before this revision were never judged: they are copied into
the human columns, so that a campaign's figures stay what they were rather than turning into
machine opens (docs/measurement.md, "Engagement hygiene").

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-24 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("human_opened_at", WHEN, nullable=True))
        batch.add_column(sa.Column("human_clicked_at", WHEN, nullable=True))
    op.execute(
        "UPDATE outbox SET human_opened_at = opened_at, human_clicked_at = clicked_at"
        " WHERE opened_at IS NOT NULL OR clicked_at IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("human_clicked_at")
        batch.drop_column("human_opened_at")
