"""campaign_measure and campaign_cell: each campaign's measured aggregates, refreshed by
reporting.measure.refresh (the reports read them instead of scanning purchases)

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _counts(*names: str) -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column(name, sa.BigInteger(), nullable=False) for name in names]


def _sums(*names: str) -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column(name, sa.Float(), nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "campaign_measure",
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("as_of", WHEN, nullable=False),
        sa.Column("refreshed_at", WHEN, nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("first_at", WHEN, nullable=True),
        sa.Column("closes_at", WHEN, nullable=True),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("funnel", JSON, nullable=False),
        *_counts("exposed", "attributed_purchasers", "attributed_purchases"),
        *_sums("attributed_revenue"),
        *_counts("clicked_purchases", "allocated_purchasers", "allocated_purchases"),
        *_sums("allocated_revenue"),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_campaign_measure")),
    )
    op.create_table(
        "campaign_cell",
        sa.Column("campaign_id", BIGID, nullable=False),
        sa.Column("arm", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("variant", sa.String(length=8), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("store", sa.String(length=40), nullable=False),
        *_counts("assigned", "converted", "purchases"),
        *_sums("revenue_sum", "revenue_sumsq", "pre_sum", "pre_sumsq", "cross_sum"),
        *_counts("attributed_purchases"),
        *_sums("attributed_revenue"),
        *_counts("allocated_purchases"),
        *_sums("allocated_revenue"),
        sa.PrimaryKeyConstraint(
            "campaign_id", "arm", "channel", "variant", "week", "store",
            name=op.f("pk_campaign_cell"),
        ),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("campaign_cell")
    op.drop_table("campaign_measure")
