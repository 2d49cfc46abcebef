"""Fixtures shared by every test.

Database tests take the ``backend`` fixture, parametrised over SQLite and PostgreSQL. Each test
runs inside one outer transaction rolled back at the end; the code under test may commit (the
importer commits per chunk): its commits become savepoints of that outer transaction.

PostgreSQL tests need ``TOURNESOL_TEST_POSTGRES_URL`` (``./dev test`` and ``.ci/run`` set it);
without it they are skipped, loudly. Each test session works in its own schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from tournesol.db import make_engine
from tournesol.migrations import upgrade

# No per-example deadline: the suite runs on two busy cores next to its databases, where an
# example's time says nothing about the code (performance is measured in bench/).
hypothesis_settings.register_profile("tournesol", deadline=None)
hypothesis_settings.load_profile("tournesol")

BACKENDS = ("sqlite", "postgresql")
PG_URL_ENV = "TOURNESOL_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    url = os.environ.get(PG_URL_ENV, "").strip()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url or None


def _with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


class FreshDatabase:
    """Creates empty, migrated databases (SQLite files or PostgreSQL schemas) and drops them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.schemas: list[str] = []

    def url(self, backend: str, *, migrate: bool = True) -> str:
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp / f'db-{uuid.uuid4().hex[:8]}.db'}"
        else:
            base = postgres_url()
            if base is None:
                pytest.skip(f"PostgreSQL tests need {PG_URL_ENV}")
            schema = f"t_{uuid.uuid4().hex[:12]}"
            admin = make_engine(base)
            with admin.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            self.schemas.append(schema)
            url = _with_schema(base, schema)
        if migrate:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
        return url

    def drop(self) -> None:
        base = postgres_url()
        if base and self.schemas:
            admin = make_engine(base)
            # one transaction per schema: dropping one locks each of its ~1,000 objects, and
            # all of a session's schemas at once outgrew the server's shared lock table
            for schema in self.schemas:
                with admin.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            admin.dispose()


@pytest.fixture(scope="session")
def fresh_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshDatabase]:
    fresh = FreshDatabase(tmp_path_factory.mktemp("databases"))
    yield fresh
    fresh.drop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "postgresql" and postgres_url() is None:
        pytest.skip(f"PostgreSQL tests need {PG_URL_ENV}")
    return name


@pytest.fixture(scope="session")
def engine(backend: str, fresh_databases: FreshDatabase) -> Iterator[Engine]:
    """One migrated database per backend for the whole test session."""
    eng = make_engine(fresh_databases.url(backend))
    yield eng
    eng.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        outer = conn.begin()
        yield conn
        outer.rollback()


@pytest.fixture
def factory(connection: Connection) -> sessionmaker[Session]:
    """Sessions inside the test's transaction; their commits are savepoints."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as s:
        yield s


@pytest.fixture
def app(factory: sessionmaker[Session]) -> FastAPI:
    """The web application on the test's transaction (tests/web_support.py has helpers)."""
    from tests.web_support import make_app

    return make_app(factory)


def pytest_report_header(config: pytest.Config) -> str:
    url = postgres_url()
    return f"PostgreSQL tests: {'on' if url else 'SKIPPED (set ' + PG_URL_ENV + ')'}"
