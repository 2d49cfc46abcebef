"""The migrations build exactly the schema the models describe, and go down and up again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests.conftest import FreshDatabase
from tournesol.db import make_engine
from tournesol.migrations import current_revision, downgrade, head_revision, upgrade
from tournesol.models import Base


def test_migrated_schema_matches_the_models(backend: str, fresh_databases: FreshDatabase) -> None:
    engine = make_engine(fresh_databases.url(backend))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_quality_columns_go_down_and_up(backend: str, fresh_databases: FreshDatabase) -> None:
    engine = make_engine(fresh_databases.url(backend))
    try:
        downgrade(engine, "0001")
        columns = {c["name"] for c in inspect(engine).get_columns("customer")}
        assert "quality_score" not in columns and "address_line6" not in columns
        upgrade(engine)
        columns = {c["name"] for c in inspect(engine).get_columns("customer")}
        assert {"address_line1", "address_line6", "insee_code", "quality_score"} <= columns
    finally:
        engine.dispose()
