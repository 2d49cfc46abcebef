"""Engine, sessions, unit of work, and the small dialect object that hides SQLite/PostgreSQL
differences from business code."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

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


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware date-time stored in UTC on every backend.

    PostgreSQL keeps the instant (timestamptz); SQLite would store the wall-clock time and drop
    the offset, so values are converted to UTC before storage and read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Tournesol stores aware date-times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so that
    # transactions, savepoints and rollbacks behave as on PostgreSQL.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` (SQLite file or PostgreSQL through psycopg 3)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
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

    def json_date(self, expr: Any) -> Any:
        """An ISO date held as JSON text, as a value for a Date column."""
        text_value = expr.as_string()
        return text_value if self.name == "sqlite" else cast(text_value, Date)

    def json_timestamp(self, expr: Any) -> Any:
        """An ISO date-time held as JSON text, as a value for a UtcDateTime column."""
        text_value = expr.as_string()
        if self.name == "sqlite":  # the storage form SQLAlchemy reads back: UTC, no offset
            return func.strftime("%Y-%m-%d %H:%M:%S", text_value)
        return cast(text_value, DateTime(timezone=True))

    def one_of(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values``: one array parameter on PostgreSQL (a long IN list costs it
        dearly), bound parameters on SQLite (callers keep ``values`` under max_params)."""
        if self.name == "postgresql":
            return column == any_(cast(literal(list(values)), postgresql.ARRAY(column.type)))
        return column.in_(values)

    def refresh_statistics(self, conn: Connection, tables: Mapping[str, Sequence[str]]) -> None:
        """Let the planner see how big tables have grown (after bulk loads): ``tables`` maps
        each table to the columns lookups filter on. Without it, PostgreSQL plans against the
        row counts of an empty table, which turns key lookups into scans. SQLite's planner does
        well on indexes alone: nothing to do."""
        if self.name == "postgresql":
            for name, columns in tables.items():
                cols = ", ".join(f'"{c}"' for c in columns)
                conn.exec_driver_sql(f'ANALYZE "{name}" ({cols})')

    def among(self, column: Any, ids: Sequence[int]) -> Any:
        """``column`` among these ids: a range when they are consecutive (ids reserved for one
        chunk usually are), else :meth:`one_of`."""
        if ids and ids[-1] - ids[0] + 1 == len(ids) and list(ids) == sorted(ids):
            return column.between(ids[0], ids[-1])
        return self.one_of(column, ids)

    def json_param(self, name: str, *, binary: bool) -> Any:
        """A bound parameter that carries JSON already serialized as text, for a JSONB
        (``binary``) or JSON column on PostgreSQL; plain text on SQLite."""
        param = bindparam(name, type_=String())
        if self.name != "postgresql":
            return param
        return cast(param, postgresql.JSONB() if binary else postgresql.JSON())

    def json_entries(self, column: Any, key: str) -> Any:
        """The (key, value) pairs of the JSON object under ``key`` in a JSON column, as a
        table-valued function to join (values as text)."""
        if self.name == "postgresql":
            return func.jsonb_each_text(column[key]).table_valued("key", "value")
        return func.json_each(column, f"$.{key}").table_valued("key", "value")

    def json_object(self, *pairs: Any) -> Any:
        """A JSON object built in SQL from alternating keys and values (plain Python values are
        bound with an explicit type, which PostgreSQL needs to build JSON from parameters)."""
        args = [
            cast(literal(arg), Integer() if isinstance(arg, int) else String())
            if arg is None or isinstance(arg, str | int)
            else arg
            for arg in pairs
        ]
        if self.name == "postgresql":
            return func.jsonb_build_object(*args)
        return func.json_object(*args)

    def reserve_ids(self, conn: Connection, table: Table, count: int) -> list[int]:
        """``count`` new primary keys for ``table``, for rows that :meth:`copy_rows` will load.

        PostgreSQL draws them from the table's sequence. SQLite numbers on from the largest id:
        the caller must hold the write lock (have written in this transaction) so that no
        other writer can take the same numbers.
        """
        if count <= 0:
            return []
        if self.name == "postgresql":
            seq = f"{table.name}_id_seq"
            result = conn.execute(
                text(f"SELECT nextval('\"{seq}\"') FROM generate_series(1, :n)"), {"n": count}
            )
            return [row[0] for row in result]
        top = conn.execute(text(f'SELECT COALESCE(MAX(id), 0) FROM "{table.name}"')).scalar_one()
        return list(range(top + 1, top + 1 + count))

    def bind_value(self, conn: Connection, table: Table, column: str, value: Any) -> Any:
        """``value`` as :meth:`copy_rows` would send it for ``column``: convert a constant once,
        then pass rows with ``prepared=True``."""
        process = self._processors(conn, table, [column])[0]
        return value if process is None or value is None else process(value)

    def _processors(self, conn: Connection, table: Table, columns: Sequence[str]) -> list[Any]:
        """Per column, the function that turns a Python value into what the driver takes."""
        out: list[Any] = []
        for name in columns:
            col_type = table.c[name].type
            if isinstance(col_type, JSON):
                out.append(_json_text)
            elif self.name == "postgresql" and isinstance(col_type, UtcDateTime):
                out.append(lambda v: v.astimezone(UTC))
            elif self.name == "postgresql":
                out.append(None)  # psycopg adapts dates, decimals and numbers itself
            else:
                out.append(col_type.dialect_impl(conn.dialect).bind_processor(conn.dialect))
        return out

    def copy_rows(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        prepared: bool = False,
    ) -> None:
        """Bulk-load rows (tuples in ``columns`` order) through the driver: COPY on PostgreSQL,
        executemany on SQLite. Values go through the columns' own SQLAlchemy type processors, so
        what is stored is what the ORM would store. JSON columns take Python values or text
        already serialized (a ``str``: JSON columns here never hold a bare string). With
        ``prepared``, rows are already in driver form (JSON as text, constants through
        :meth:`bind_value`) and are sent as they are: the fast path for the import."""
        if not rows:
            return
        active = (
            []
            if prepared
            else [
                (i, p)
                for i, p in enumerate(self._processors(conn, table, columns))
                if p is not None
            ]
        )
        if active:
            # The same object often repeats down a column (the chunk's timestamp): convert once.
            last_in: list[Any] = [object()] * len(columns)
            last_out: list[Any] = [None] * len(columns)
            converted = []
            for row in rows:
                values = list(row)
                for i, proc in active:
                    value = values[i]
                    if value is None:
                        continue
                    if value is last_in[i]:
                        values[i] = last_out[i]
                    else:
                        last_in[i] = value
                        values[i] = last_out[i] = proc(value)
                converted.append(values)
            rows = converted
        raw = conn.connection.driver_connection
        assert raw is not None
        cols = ", ".join(f'"{c}"' for c in columns)
        if self.name == "postgresql":
            with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as cp:
                for row in rows:
                    cp.write_row(row)
            return
        marks = ", ".join("?" for _ in columns)
        cursor = raw.cursor()
        try:
            cursor.executemany(f'INSERT INTO "{table.name}" ({cols}) VALUES ({marks})', rows)
        finally:
            cursor.close()

    def update_rows(
        self,
        conn: Connection,
        table: Table,
        key: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Bulk-update rows by ``key``: tuples of ``columns`` values followed by the key.
        SQLite: executemany of one UPDATE; PostgreSQL: COPY into a temporary table, then one
        UPDATE ... FROM. Values go through the columns' type processors, as in copy_rows."""
        if not rows:
            return
        procs = list(enumerate(self._processors(conn, table, [*columns, key])))
        converted = [
            [v if p is None or v is None else p(v) for (_, p), v in zip(procs, row, strict=True)]
            for row in rows
        ]
        raw = conn.connection.driver_connection
        assert raw is not None
        if self.name == "postgresql":
            cols = ", ".join(f'"{c}"' for c in (*columns, key))
            with raw.cursor() as cur:
                cur.execute(
                    f'CREATE TEMP TABLE IF NOT EXISTS "tmp_{table.name}_update" '
                    f'AS SELECT {cols} FROM "{table.name}" WITH NO DATA'
                )
                cur.execute(f'TRUNCATE "tmp_{table.name}_update"')
                with cur.copy(f'COPY "tmp_{table.name}_update" ({cols}) FROM STDIN') as cp:
                    for row in converted:
                        cp.write_row(row)
                sets = ", ".join(f'"{c}" = t."{c}"' for c in columns)
                cur.execute(
                    f'UPDATE "{table.name}" SET {sets} FROM "tmp_{table.name}_update" t '
                    f'WHERE "{table.name}"."{key}" = t."{key}"'
                )
            return
        sets = ", ".join(f'"{c}" = ?' for c in columns)
        cursor = raw.cursor()
        try:
            cursor.executemany(f'UPDATE "{table.name}" SET {sets} WHERE "{key}" = ?', converted)
        finally:
            cursor.close()


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def chunked(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
