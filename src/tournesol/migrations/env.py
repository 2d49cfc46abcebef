"""Alembic environment: the engine comes from ``config.attributes['engine']``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from tournesol.models import Base

config = context.config


def run_migrations_online() -> None:
    engine: Engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
