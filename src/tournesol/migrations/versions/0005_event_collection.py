"""event collection: events received on the Segment-compatible endpoints, and the links
between visitors' anonymous or user ids and customers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 16:05:59.928764
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
WAITING = sa.text("status <> 'resolved'")


def upgrade() -> None:
    op.create_table(
        "collected_event",
        sa.Column("id", ID, nullable=False),
        sa.Column("source_id", ID, nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("event", sa.String(length=200), nullable=True),
        sa.Column("user_id", sa.String(length=300), nullable=True),
        sa.Column("anonymous_id", sa.String(length=300), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("occurred_at", WHEN, nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        # Plain JSON on both databases (kept whole, never queried inside: cheaper than JSONB).
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("customer_id", ID, nullable=True),
        sa.Column("interaction_id", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_collected_event_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["interaction_id"],
            ["interaction.id"],
            name=op.f("fk_collected_event_interaction_id_interaction"),
            deferrable=True,
            initially="DEFERRED",
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["source.id"], name=op.f("fk_collected_event_source_id_source")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collected_event")),
        sa.UniqueConstraint(
            "source_id", "message_id", name=op.f("uq_collected_event_source_id_message_id")
        ),
        sa.UniqueConstraint("interaction_id", name=op.f("uq_collected_event_interaction_id")),
    )
    op.create_index(
        "ix_collected_event_anonymous", "collected_event", ["source_id", "anonymous_id"]
    )
    op.create_index("ix_collected_event_customer_id", "collected_event", ["customer_id"])
    op.create_index("ix_collected_event_user", "collected_event", ["source_id", "user_id"])
    op.create_index(
        "ix_collected_event_waiting",
        "collected_event",
        ["status"],
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )
    op.create_table(
        "visitor_link",
        sa.Column("id", ID, nullable=False),
        sa.Column("source_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=300), nullable=False),
        sa.Column("customer_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_visitor_link_customer_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["collected_event.id"],
            name=op.f("fk_visitor_link_event_id_collected_event"),
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["source.id"], name=op.f("fk_visitor_link_source_id_source")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visitor_link")),
        sa.UniqueConstraint(
            "source_id", "kind", "value", name=op.f("uq_visitor_link_source_id_kind_value")
        ),
    )
    op.create_index("ix_visitor_link_customer_id", "visitor_link", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_visitor_link_customer_id", table_name="visitor_link")
    op.drop_table("visitor_link")
    op.drop_index("ix_collected_event_waiting", table_name="collected_event")
    op.drop_index("ix_collected_event_user", table_name="collected_event")
    op.drop_index("ix_collected_event_customer_id", table_name="collected_event")
    op.drop_index("ix_collected_event_anonymous", table_name="collected_event")
    op.drop_table("collected_event")
