"""customer_tag and customer_attribute: what journeys' update steps set on a customer (tags,
named values outside the golden record)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24 07:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "customer_tag",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("customer_id", BIGID, nullable=False),
        sa.Column("tag", sa.String(length=60), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("customer_id", "tag", name=op.f("uq_customer_tag_customer_id_tag")),
    )
    op.create_index("ix_customer_tag_tag", "customer_tag", ["tag"])
    op.create_table(
        "customer_attribute",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("customer_id", BIGID, nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "customer_id", "name", name=op.f("uq_customer_attribute_customer_id_name")
        ),
    )


def downgrade() -> None:
    op.drop_table("customer_attribute")
    op.drop_index("ix_customer_tag_tag", table_name="customer_tag")
    op.drop_table("customer_tag")
