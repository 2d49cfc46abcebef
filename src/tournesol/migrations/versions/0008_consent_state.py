"""the consent that holds now per customer, channel, purpose and brand, in a narrow table
(consent_state) filled from the consent history; the derived tables customer_feature,
customer_rfm and customer_score lose their foreign key to customer (rewritten in bulk, the
check's row lock per written row cost more than the computation)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_state",
        sa.Column("consent_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=40), nullable=False),
        sa.Column("brand_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provable", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consent_state")),
    )
    if op.get_bind().dialect.name == "postgresql":
        kind, reference = "proof->>'kind'", "proof->>'reference'"
    else:
        kind, reference = "json_extract(proof, '$.kind')", "json_extract(proof, '$.reference')"
    op.execute(
        f"""
        INSERT INTO consent_state (consent_id, customer_id, channel, purpose, brand_id, status,
                                   collected_at, provable)
        SELECT id, customer_id, channel, purpose, brand_id, status, collected_at, provable
        FROM (
            SELECT id, customer_id, channel, purpose, brand_id, status, collected_at,
                   CASE WHEN {kind} = 'manual' OR {reference} IS NOT NULL
                        THEN true ELSE false END AS provable,
                   row_number() OVER (
                       PARTITION BY customer_id, channel, purpose, brand_id
                       ORDER BY collected_at DESC, id DESC) AS rank
            FROM consent
        ) AS ranked
        WHERE rank = 1
        """
    )
    op.create_index("ix_consent_state_customer", "consent_state", ["customer_id"])
    op.create_index(
        "ix_consent_state_lookup",
        "consent_state",
        ["channel", "purpose", "status", "brand_id", "customer_id"],
    )

    for table in DERIVED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_customer_id_customer", type_="foreignkey")


DERIVED = ("customer_feature", "customer_rfm", "customer_score")


def downgrade() -> None:
    for table in DERIVED:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(
                f"fk_{table}_customer_id_customer", "customer", ["customer_id"], ["id"]
            )
    op.drop_index("ix_consent_state_lookup", table_name="consent_state")
    op.drop_index("ix_consent_state_customer", table_name="consent_state")
    op.drop_table("consent_state")
