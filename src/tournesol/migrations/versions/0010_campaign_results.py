"""campaign results: when each message was first opened, clicked, unsubscribed from or bounced
(outbox columns, for the results page without reading the timeline); the outbox found by its
provider's id (delivery reports, bounces); purchases attributed to campaigns

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        for name in ("opened_at", "clicked_at", "unsubscribed_at", "bounced_at"):
            batch.add_column(sa.Column(name, WHEN, nullable=True))
    op.create_index("ix_outbox_provider", "outbox", ["provider_id"])
    op.create_table(
        "campaign_attribution",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("purchased_at", WHEN, nullable=False),
        sa.Column("contacted_at", WHEN, nullable=False),
        sa.Column("clicked", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_campaign_attribution_campaign_id_campaign"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_attribution")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_campaign_attribution_transaction_id")),
    )
    op.create_index("ix_campaign_attribution_campaign", "campaign_attribution", ["campaign_id"])


def downgrade() -> None:
    op.drop_index("ix_campaign_attribution_campaign", table_name="campaign_attribution")
    op.drop_table("campaign_attribution")
    op.drop_index("ix_outbox_provider", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        for name in ("bounced_at", "unsubscribed_at", "clicked_at", "opened_at"):
            batch.drop_column(name)
