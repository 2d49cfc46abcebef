"""segments and scoring: saved segments with their memberships and snapshots; computed
customer features, RFM per brand, predictive scores and the models that gave them

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 18:42:42.477528
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "score_model",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("trained_at", WHEN, nullable=False),
        sa.Column("algorithm", sa.String(length=100), nullable=False),
        sa.Column("features", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("artifact", sa.LargeBinary(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_model")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_score_model_name_version")),
    )
    op.create_table(
        "segment",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("brand_id", ID, nullable=True),
        sa.Column("created_by_id", ID, nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("last_size", sa.Integer(), nullable=True),
        sa.Column("last_computed_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["brand_id"], ["brand.id"], name=op.f("fk_segment_brand_id_brand")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["app_user.id"], name=op.f("fk_segment_created_by_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment")),
        sa.UniqueConstraint("code", name=op.f("uq_segment_code")),
    )
    op.create_table(
        "customer_feature",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("computed_at", WHEN, nullable=False),
        sa.Column("purchase_count", sa.Integer(), nullable=False),
        sa.Column("purchase_amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("first_purchase_at", WHEN, nullable=True),
        sa.Column("last_purchase_at", WHEN, nullable=True),
        sa.Column("purchase_count_30", sa.Integer(), nullable=False),
        sa.Column("purchase_amount_30", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("purchase_count_90", sa.Integer(), nullable=False),
        sa.Column("purchase_amount_90", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("purchase_count_180", sa.Integer(), nullable=False),
        sa.Column("purchase_amount_180", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("purchase_count_365", sa.Integer(), nullable=False),
        sa.Column("purchase_amount_365", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("store_purchase_count_365", sa.Integer(), nullable=False),
        sa.Column("web_purchase_count_365", sa.Integer(), nullable=False),
        sa.Column("return_count_365", sa.Integer(), nullable=False),
        sa.Column("interaction_count_90", sa.Integer(), nullable=False),
        sa.Column("interaction_count_365", sa.Integer(), nullable=False),
        sa.Column("inbound_count_365", sa.Integer(), nullable=False),
        sa.Column("last_interaction_at", WHEN, nullable=True),
        sa.Column("last_inbound_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_customer_feature_customer_id_customer")
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_feature")),
    )
    op.create_index(
        "ix_customer_feature_count_365", "customer_feature", ["purchase_count_365"], unique=False
    )
    op.create_index(
        "ix_customer_feature_computed_at", "customer_feature", ["computed_at"], unique=False
    )
    op.create_index(
        "ix_customer_feature_last_purchase", "customer_feature", ["last_purchase_at"], unique=False
    )
    op.create_table(
        "customer_rfm",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("computed_at", WHEN, nullable=False),
        sa.Column("recency_days", sa.Integer(), nullable=False),
        sa.Column("frequency", sa.Integer(), nullable=False),
        sa.Column("monetary", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("r_score", sa.SmallInteger(), nullable=False),
        sa.Column("f_score", sa.SmallInteger(), nullable=False),
        sa.Column("m_score", sa.SmallInteger(), nullable=False),
        sa.Column("segment", sa.String(length=30), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_customer_rfm_customer_id_customer")
        ),
        sa.PrimaryKeyConstraint("customer_id", "scope", name=op.f("pk_customer_rfm")),
    )
    op.create_index(
        "ix_customer_rfm_scope_segment", "customer_rfm", ["scope", "segment"], unique=False
    )
    op.create_table(
        "customer_score",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("model", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("computed_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_customer_score_customer_id_customer")
        ),
        sa.PrimaryKeyConstraint("customer_id", "model", name=op.f("pk_customer_score")),
    )
    op.create_index(
        "ix_customer_score_model_value", "customer_score", ["model", "value"], unique=False
    )
    op.create_table(
        "segment_membership",
        sa.Column("id", ID, nullable=False),
        sa.Column("segment_id", ID, nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("entered_at", WHEN, nullable=False),
        sa.Column("left_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_segment_membership_customer_id_customer"),
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segment.id"], name=op.f("fk_segment_membership_segment_id_segment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_membership")),
    )
    op.create_index(
        "ix_segment_membership_current",
        "segment_membership",
        ["segment_id", "left_at", "customer_id"],
        unique=False,
    )
    op.create_index(
        "ix_segment_membership_customer", "segment_membership", ["customer_id"], unique=False
    )
    op.create_table(
        "segment_snapshot",
        sa.Column("id", ID, nullable=False),
        sa.Column("segment_id", ID, nullable=False),
        sa.Column("computed_at", WHEN, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("left", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segment.id"], name=op.f("fk_segment_snapshot_segment_id_segment")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_snapshot")),
    )
    op.create_index(
        op.f("ix_segment_snapshot_segment_id"), "segment_snapshot", ["segment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_segment_snapshot_segment_id"), table_name="segment_snapshot")
    op.drop_table("segment_snapshot")
    op.drop_index("ix_segment_membership_customer", table_name="segment_membership")
    op.drop_index("ix_segment_membership_current", table_name="segment_membership")
    op.drop_table("segment_membership")
    op.drop_index("ix_customer_score_model_value", table_name="customer_score")
    op.drop_table("customer_score")
    op.drop_index("ix_customer_rfm_scope_segment", table_name="customer_rfm")
    op.drop_table("customer_rfm")
    op.drop_index("ix_customer_feature_last_purchase", table_name="customer_feature")
    op.drop_index("ix_customer_feature_computed_at", table_name="customer_feature")
    op.drop_index("ix_customer_feature_count_365", table_name="customer_feature")
    op.drop_table("customer_feature")
    op.drop_table("segment")
    op.drop_table("score_model")
