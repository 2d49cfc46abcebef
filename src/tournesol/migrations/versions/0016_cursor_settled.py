"""journey_cursor.settled, watch, pending: a scan by id reads again the ids above the settled
point until every transaction that could still commit a lower id has ended (in place of a
fixed margin of 1,000 ids, which concurrent writers of the same table outran)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("journey_cursor") as batch:
        batch.add_column(sa.Column("settled", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("watch", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("pending", sa.Text(), nullable=True))
    # the old scans read the last 1,000 ids again: start from there
    op.execute(
        "UPDATE journey_cursor SET settled = CASE WHEN position - 1000 > floor"
        " THEN position - 1000 ELSE floor END WHERE name NOT LIKE 'segment_left:%'"
    )


def downgrade() -> None:
    with op.batch_alter_table("journey_cursor") as batch:
        batch.drop_column("pending")
        batch.drop_column("watch")
        batch.drop_column("settled")
