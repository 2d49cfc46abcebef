"""Engine, sessions, unit of work, and the small dialect object that hides SQLite/PostgreSQL
differences from business code."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, MetaData, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.dml import Insert

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT keys on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL, JSON (text) on SQLite.
Json = JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (SQLite file or PostgreSQL through psycopg 3)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commits when the block ends normally, rolls back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@dataclass(frozen=True)
class Dialect:
    """What business code needs to know about the database, and nothing more."""

    name: str

    @classmethod
    def of(cls, bind: Session | Connection | Engine) -> Dialect:
        return cls(bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name)

    @property
    def max_params(self) -> int:
        """Bound parameters one statement may carry (SQLite's limit is 32,766)."""
        return 30_000 if self.name == "sqlite" else 60_000

    def insert(self, table: Table) -> Insert:
        """An INSERT that supports ``on_conflict_do_nothing``/``on_conflict_do_update``."""
        if self.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def copy_rows(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Bulk-load rows: COPY on PostgreSQL, executemany on SQLite. JSON columns take dicts."""
        if not rows:
            return
        json_cols = {i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)}
        if self.name == "postgresql":
            raw = conn.connection.driver_connection
            assert raw is not None
            cols = ", ".join(f'"{c}"' for c in columns)
            with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as cp:
                for row in rows:
                    cp.write_row(
                        [
                            json.dumps(v, ensure_ascii=False, default=str)
                            if i in json_cols and v is not None
                            else v
                            for i, v in enumerate(row)
                        ]
                    )
            return
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])


def chunked(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
