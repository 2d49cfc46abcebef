"""campaign variants (A/B): the variant of each message and of each targeted customer

campaign.variant_shares (variant -> share, {} for equal shares); campaign_message.variant
("A" for the messages written before), unique with the campaign, channel and language;
campaign_target.variant (the variant a target gets; NULL for control and excluded rows, and
for targets planned before this revision, which read as "A": they are not rewritten, a
campaign_target table holds millions of rows)

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-24 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
OLD_UNIQUE = "uq_campaign_message_campaign_id_channel_language"
NEW_UNIQUE = "uq_campaign_message_campaign_id_channel_language_variant"


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("variant_shares", JSON, nullable=False, server_default="{}"))
    # SQLite cannot drop a constraint in place: batch mode copies the table
    with op.batch_alter_table("campaign_message") as batch:
        batch.add_column(
            sa.Column("variant", sa.String(length=8), nullable=False, server_default="A")
        )
        batch.drop_constraint(OLD_UNIQUE, type_="unique")
        batch.create_unique_constraint(
            NEW_UNIQUE, ["campaign_id", "channel", "language", "variant"]
        )
    op.add_column("campaign_target", sa.Column("variant", sa.String(length=8), nullable=True))


def downgrade() -> None:
    """Back to one message per channel and language: the variants other than A go."""
    with op.batch_alter_table("campaign_target") as batch:
        batch.drop_column("variant")
    op.execute(sa.text("DELETE FROM campaign_message WHERE variant <> 'A'"))
    with op.batch_alter_table("campaign_message") as batch:
        batch.drop_constraint(NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(OLD_UNIQUE, ["campaign_id", "channel", "language"])
        batch.drop_column("variant")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("variant_shares")
