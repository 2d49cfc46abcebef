"""journeys: published versions, instances with their state, the step log, the event inbox and
the cursors of the scans that fill it

Revision ID: 0014
Revises: 0013 (0013_plan_writes.py, written alongside: this file keeps the name its brief gave)
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
LIVE = "status NOT IN ('done', 'exited') AND NOT concurrent"


def _where(condition: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "journey",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("brand_id", ID, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("current_version_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["brand_id"], ["brand.id"], name=op.f("fk_journey_brand_id_brand")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey")),
        sa.UniqueConstraint("code", name=op.f("uq_journey_code")),
    )
    op.create_table(
        "journey_version",
        sa.Column("id", ID, nullable=False),
        sa.Column("journey_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("source_yaml", sa.Text(), nullable=False),
        sa.Column("published_at", WHEN, nullable=False),
        sa.Column("published_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["journey_id"], ["journey.id"], name=op.f("fk_journey_version_journey_id_journey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_version")),
        sa.UniqueConstraint(
            "journey_id", "digest", name=op.f("uq_journey_version_journey_id_digest")
        ),
        sa.UniqueConstraint(
            "journey_id", "version", name=op.f("uq_journey_version_journey_id_version")
        ),
    )
    op.create_table(
        "journey_instance",
        sa.Column("id", ID, nullable=False),
        sa.Column("journey_id", ID, nullable=False),
        sa.Column("version_id", ID, nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("instance_key", sa.String(length=200), nullable=False),
        sa.Column("concurrent", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=True),
        sa.Column("state", JSON, nullable=False),
        sa.Column("due_at", WHEN, nullable=True),
        sa.Column("waiting_for", sa.String(length=60), nullable=True),
        sa.Column("match_value", sa.String(length=200), nullable=True),
        sa.Column("entered_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("exit_reason", sa.String(length=120), nullable=True),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("claimed_at", WHEN, nullable=True),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["journey_id"], ["journey.id"], name=op.f("fk_journey_instance_journey_id_journey")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["journey_version.id"],
            name=op.f("fk_journey_instance_version_id_journey_version"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_instance")),
    )
    op.create_index(
        "uq_journey_instance_live",
        "journey_instance",
        ["journey_id", "customer_id", "instance_key"],
        unique=True,
        **_where(LIVE),
    )
    op.create_index(
        "ix_journey_instance_due",
        "journey_instance",
        ["status", "due_at"],
        **_where("due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_journey_instance_customer", "journey_instance", ["customer_id", "waiting_for"]
    )
    op.create_table(
        "journey_step_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("instance_id", ID, nullable=False),
        sa.Column("journey_id", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("visit", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.Column("at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["journey_instance.id"],
            name=op.f("fk_journey_step_log_instance_id_journey_instance"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_step_log")),
        sa.UniqueConstraint(
            "instance_id", "step", "visit", name=op.f("uq_journey_step_log_instance_id_step_visit")
        ),
    )
    op.create_index(
        "ix_journey_step_log_counts", "journey_step_log", ["journey_id", "step", "outcome"]
    )
    op.create_table(
        "journey_inbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("occurred_at", WHEN, nullable=False),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("received_at", WHEN, nullable=False),
        sa.Column("processed_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_inbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_journey_inbox_event_id")),
    )
    op.create_index(
        "ix_journey_inbox_pending", "journey_inbox", ["id"], **_where("processed_at IS NULL")
    )
    op.create_table(
        "journey_cursor",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("floor", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_journey_cursor")),
    )


def downgrade() -> None:
    op.drop_table("journey_cursor")
    op.drop_index("ix_journey_inbox_pending", table_name="journey_inbox")
    op.drop_table("journey_inbox")
    op.drop_index("ix_journey_step_log_counts", table_name="journey_step_log")
    op.drop_table("journey_step_log")
    op.drop_index("ix_journey_instance_customer", table_name="journey_instance")
    op.drop_index("ix_journey_instance_due", table_name="journey_instance")
    op.drop_index("uq_journey_instance_live", table_name="journey_instance")
    op.drop_table("journey_instance")
    op.drop_table("journey_version")
    op.drop_table("journey")
