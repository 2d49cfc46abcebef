"""holdout_group and holdout_assignment: the global control group (versions with their
share and salt) and every customer's stored arm

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-24 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "holdout_group",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.UniqueConstraint("version", name=op.f("uq_holdout_group_version")),
    )
    op.create_table(
        "holdout_assignment",
        sa.Column("group_id", BIGID, nullable=False),
        sa.Column("customer_id", BIGID, nullable=False),
        sa.Column("unit", sa.String(length=80), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.Column("assigned_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"], ["holdout_group.id"],
            name=op.f("fk_holdout_assignment_group_id_holdout_group"),
        ),
        sa.PrimaryKeyConstraint("group_id", "customer_id", name=op.f("pk_holdout_assignment")),
    )  # fmt: skip
    op.create_index("ix_holdout_assignment_customer", "holdout_assignment", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_holdout_assignment_customer", table_name="holdout_assignment")
    op.drop_table("holdout_assignment")
    op.drop_table("holdout_group")
