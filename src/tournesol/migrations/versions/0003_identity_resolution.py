"""identity resolution: match profiles, models, runs, merge events and moves, review queue;
customer.merged_into_id and provenance

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:35:56.585449
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_model",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("splink_version", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_model")),
        sa.UniqueConstraint("version", name=op.f("uq_identity_model_version")),
    )
    op.create_table(
        "identity_run",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("pairs", sa.Integer(), nullable=False),
        sa.Column("links", sa.Integer(), nullable=False),
        sa.Column("merges", sa.Integer(), nullable=False),
        sa.Column("reviews", sa.Integer(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["identity_model.id"],
            name=op.f("fk_identity_run_model_id_identity_model"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_run")),
    )
    op.create_table(
        "merge_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "survivor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "absorbed_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("survivor_before", sa.JSON(), nullable=True),
        sa.Column("absorbed_before", sa.JSON(), nullable=False),
        sa.Column("survivor_written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unmerged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unmerged_by", sa.String(length=100), nullable=True),
        sa.Column("unmerge_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["absorbed_id"], ["customer.id"], name=op.f("fk_merge_event_absorbed_id_customer")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["identity_run.id"], name=op.f("fk_merge_event_run_id_identity_run")
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["customer.id"], name=op.f("fk_merge_event_survivor_id_customer")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_event")),
    )
    with op.batch_alter_table("merge_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_merge_event_absorbed_id"), ["absorbed_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_merge_event_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_merge_event_survivor_id"), ["survivor_id"], unique=False
        )

    op.create_table(
        "merge_move",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("table_name", sa.String(length=40), nullable=False),
        sa.Column("row_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["merge_event.id"], name=op.f("fk_merge_move_event_id_merge_event")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merge_move")),
    )
    with op.batch_alter_table("merge_move", schema=None) as batch_op:
        batch_op.create_index("ix_merge_move_event_table", ["event_id", "table_name"], unique=False)

    op.create_table(
        "match_profile",
        sa.Column(
            "record_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("first_name", sa.String(length=100), nullable=True),
        sa.Column("first_name_canon", sa.String(length=100), nullable=True),
        sa.Column("last_name", sa.String(length=100), nullable=True),
        sa.Column("maiden_name", sa.String(length=100), nullable=True),
        sa.Column("gender", sa.String(length=1), nullable=True),
        sa.Column("birth_date", sa.String(length=10), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone_mobile", sa.String(length=40), nullable=True),
        sa.Column("phone_fixed", sa.String(length=40), nullable=True),
        sa.Column("postal_code", sa.String(length=10), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("street", sa.String(length=150), nullable=True),
        sa.Column("loyalty_card", sa.String(length=40), nullable=True),
        sa.Column("account_id", sa.String(length=60), nullable=True),
        sa.Column("siret", sa.String(length=14), nullable=True),
        sa.Column("work_email", sa.String(length=320), nullable=True),
        sa.Column("work_phone", sa.String(length=40), nullable=True),
        sa.Column("record_hash", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_record.id"],
            name=op.f("fk_match_profile_record_id_source_record"),
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["source.id"], name=op.f("fk_match_profile_source_id_source")
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_match_profile")),
    )
    op.create_table(
        "match_review",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "record_a_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "record_b_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["record_a_id"],
            ["source_record.id"],
            name=op.f("fk_match_review_record_a_id_source_record"),
        ),
        sa.ForeignKeyConstraint(
            ["record_b_id"],
            ["source_record.id"],
            name=op.f("fk_match_review_record_b_id_source_record"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["identity_run.id"], name=op.f("fk_match_review_run_id_identity_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_match_review")),
        sa.UniqueConstraint(
            "record_a_id", "record_b_id", name=op.f("uq_match_review_record_a_id_record_b_id")
        ),
    )
    with op.batch_alter_table("match_review", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_match_review_record_b_id"), ["record_b_id"], unique=False
        )
        batch_op.create_index("ix_match_review_status", ["status"], unique=False)

    # Plain ALTER TABLE ADD COLUMN (with its REFERENCES clause) on SQLite too: rebuilding the
    # customer table would trip the foreign keys of every row that points at it.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE customer ADD COLUMN merged_into_id INTEGER "
            "CONSTRAINT fk_customer_merged_into_id_customer REFERENCES customer (id)"
        )
    else:
        op.add_column(
            "customer",
            sa.Column(
                "merged_into_id",
                sa.BigInteger(),
                sa.ForeignKey("customer.id", name=op.f("fk_customer_merged_into_id_customer")),
                nullable=True,
            ),
        )
    op.add_column("customer", sa.Column("provenance", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_customer_merged_into_id"), "customer", ["merged_into_id"])


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("customer", schema=None) as batch_op:
        if not sqlite:  # SQLite's rebuild of the table drops the constraint with the column
            batch_op.drop_constraint(
                batch_op.f("fk_customer_merged_into_id_customer"), type_="foreignkey"
            )
        batch_op.drop_index(batch_op.f("ix_customer_merged_into_id"))
        batch_op.drop_column("provenance")
        batch_op.drop_column("merged_into_id")

    with op.batch_alter_table("match_review", schema=None) as batch_op:
        batch_op.drop_index("ix_match_review_status")
        batch_op.drop_index(batch_op.f("ix_match_review_record_b_id"))

    op.drop_table("match_review")
    op.drop_table("match_profile")
    with op.batch_alter_table("merge_move", schema=None) as batch_op:
        batch_op.drop_index("ix_merge_move_event_table")

    op.drop_table("merge_move")
    with op.batch_alter_table("merge_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merge_event_survivor_id"))
        batch_op.drop_index(batch_op.f("ix_merge_event_run_id"))
        batch_op.drop_index(batch_op.f("ix_merge_event_absorbed_id"))

    op.drop_table("merge_event")
    op.drop_table("identity_run")
    op.drop_table("identity_model")
