"""web access: users, API keys, audit log; search keys of customer names (filled for the
customers already there)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:50:34.676081
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("last_login_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("email", name=op.f("uq_app_user_email")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_name", sa.String(length=320), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_actor_at", "audit_log", ["actor", "at"])
    op.create_index("ix_audit_log_customer_at", "audit_log", ["customer_id", "at"])
    op.create_table(
        "api_key",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("source_name", sa.String(length=100), nullable=True),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["app_user.id"], name=op.f("fk_api_key_created_by_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_key_prefix")),
    )
    op.create_table(
        "customer_name_key",
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_customer_name_key_customer_id_customer")
        ),
        sa.PrimaryKeyConstraint("customer_id", "key", name=op.f("pk_customer_name_key")),
    )
    op.create_index("ix_customer_name_key_key", "customer_name_key", ["key"])
    _fill_name_keys()


def _fill_name_keys() -> None:
    from tournesol.customers.rules import name_keys

    bind = op.get_bind()
    keys = sa.table("customer_name_key", sa.column("customer_id"), sa.column("key"))
    last = 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT id, last_name, maiden_name FROM customer WHERE id > :last "
                "ORDER BY id LIMIT 5000"
            ),
            {"last": last},
        ).all()
        if not rows:
            return
        values = [
            {"customer_id": cid, "key": key}
            for cid, name, maiden in rows
            for key in sorted(name_keys((name, maiden)))
        ]
        if values:
            bind.execute(keys.insert(), values)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index("ix_customer_name_key_key", table_name="customer_name_key")
    op.drop_table("customer_name_key")
    op.drop_table("api_key")
    op.drop_index("ix_audit_log_customer_at", table_name="audit_log")
    op.drop_index("ix_audit_log_actor_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("app_user")
