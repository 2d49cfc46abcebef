"""campaigns: campaigns with their messages per channel and language, the customers each
planned (target, control or excluded with the reason), the outbox of messages to send; the
suppression list of contact points that must receive no marketing

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "suppression",
        sa.Column("id", ID, nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("value_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("brand_id", ID, nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["brand_id"], ["brand.id"], name=op.f("fk_suppression_brand_id_brand")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression")),
    )
    op.create_index("ix_suppression_value", "suppression", ["channel", "value_hash"], unique=False)
    op.create_table(
        "campaign",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("brand_id", ID, nullable=True),
        sa.Column("objective", sa.String(length=500), nullable=True),
        sa.Column("segment_id", ID, nullable=True),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("starts_at", WHEN, nullable=True),
        sa.Column("ends_at", WHEN, nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("expected_value", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("fixed_cost", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("unit_costs", JSON, nullable=False),
        sa.Column("control_share", sa.Float(), nullable=False),
        sa.Column("control_salt", sa.String(length=40), nullable=False),
        sa.Column("attribution_days", sa.Integer(), nullable=False),
        sa.Column("default_language", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("planned_at", WHEN, nullable=True),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["brand_id"], ["brand.id"], name=op.f("fk_campaign_brand_id_brand")
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segment.id"], name=op.f("fk_campaign_segment_id_segment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("code", name=op.f("uq_campaign_code")),
    )
    op.create_table(
        "campaign_message",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_message_campaign_id_campaign")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_message")),
        sa.UniqueConstraint(
            "campaign_id",
            "channel",
            "language",
            name=op.f("uq_campaign_message_campaign_id_channel_language"),
        ),
    )
    op.create_table(
        "campaign_target",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("group", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.Column("send_at", WHEN, nullable=True),
        sa.Column("planned_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_campaign_target_campaign_id_campaign")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_target")),
        sa.UniqueConstraint(
            "campaign_id", "customer_id", name=op.f("uq_campaign_target_campaign_id_customer_id")
        ),
    )
    op.create_index("ix_campaign_target_customer", "campaign_target", ["customer_id"], unique=False)
    op.create_index(
        "ix_campaign_target_funnel",
        "campaign_target",
        ["campaign_id", "group", "reason"],
        unique=False,
    )
    op.create_table(
        "outbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("campaign_id", ID, nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("brand_id", sa.BigInteger(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("send_after", WHEN, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("claimed_at", WHEN, nullable=True),
        sa.Column("provider_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("planned_at", WHEN, nullable=False),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("delivered_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaign.id"], name=op.f("fk_outbox_campaign_id_campaign")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_key")),
    )
    op.create_index("ix_outbox_campaign_state", "outbox", ["campaign_id", "state"], unique=False)
    op.create_index(
        "ix_outbox_customer_time", "outbox", ["customer_id", "send_after"], unique=False
    )
    op.create_index("ix_outbox_due", "outbox", ["state", "channel", "send_after"], unique=False)


def downgrade() -> None:

    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_index("ix_outbox_customer_time", table_name="outbox")
    op.drop_index("ix_outbox_campaign_state", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_campaign_target_funnel", table_name="campaign_target")
    op.drop_index("ix_campaign_target_customer", table_name="campaign_target")
    op.drop_table("campaign_target")
    op.drop_table("campaign_message")
    op.drop_table("campaign")
    op.drop_index("ix_suppression_value", table_name="suppression")
    op.drop_table("suppression")
