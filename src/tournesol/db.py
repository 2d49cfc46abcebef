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
from sqlalchemy.dialects import postgresql, sqlite
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


def partial(condition: str) -> dict[str, Any]:
    """Keyword arguments of an ``Index`` that covers only the rows matching ``condition``
    (SQL), on both databases: ``Index("ix", "col", **partial("col IS NOT NULL"))``. An index
    over a column that is NULL on most rows then costs nothing when those rows are written."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


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
    """Create an engine for ``url`` (SQLite file or PostgreSQL through psycopg 3).

    PostgreSQL: a pool with a connection for each request one process serves at once (a
    server worker runs its routes in 40 threads): a connection past ``pool_size`` is closed
    when given back, and opening one costs both sides milliseconds (PostgreSQL forks a
    process). Connections are not pinged at checkout (a ``SELECT 1`` round trip per request):
    one broken by a restart of the database fails the statement that finds it, and the pool
    then drops every connection made before it (SQLAlchemy's disconnect handling); each is
    renewed after 30 minutes. ``kwargs`` override these settings."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    pool = {"pool_size": 20, "max_overflow": 10, "pool_recycle": 1800, "pool_use_lifo": True}
    return create_engine(url, **(pool | kwargs))


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

    def day_number(self, column: Any) -> Any:
        """A date-time column as a (fractional) number of days, to compare or order date-times
        shifted by whole days: days since 1970 on PostgreSQL, the Julian day on SQLite (which
        stores date-times as text)."""
        if self.name == "postgresql":
            return func.extract("epoch", column) / 86400.0
        return func.julianday(column)

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

    def for_batch(self, conn: Connection) -> None:
        """Settings for a batch job's transaction (a refresh over the whole base): on
        PostgreSQL, memory for its sorts and hashes (the 4 MB default spills a ranking of a
        million customers to disk) and no JIT compilation (seconds spent per statement for
        nothing on queries of this shape), both for this transaction only (SET LOCAL).
        Nothing to do on SQLite."""
        if self.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
            conn.exec_driver_sql("SET LOCAL jit = off")

    def among(self, column: Any, ids: Sequence[int]) -> Any:
        """``column`` among these ids: a range when they are consecutive (ids reserved for one
        chunk usually are), else :meth:`one_of`."""
        if ids and ids[-1] - ids[0] + 1 == len(ids) and list(ids) == sorted(ids):
            return column.between(ids[0], ids[-1])
        return self.one_of(column, ids)

    def around(self, column: Any, ids: Sequence[int]) -> Any:
        """``column`` in the range of the sorted ``ids``, and among them only when they fill
        less than half of it: unlike :meth:`among`, rows of other ids in the range may come
        back (the caller drops them), because a range scan costs the database far less than
        one index probe per id."""
        low, high = ids[0], ids[-1]
        if high - low + 1 <= 2 * len(ids):
            return column.between(low, high)
        return column.between(low, high) & self.one_of(column, ids)

    def driver_rows(self, conn: Connection, statement: Any) -> Sequence[tuple[Any, ...]]:
        """The rows of a SELECT as plain tuples. On PostgreSQL they are the driver's own,
        fetched without SQLAlchemy's row objects and result processing (a fraction of the
        cost over a million rows): use it only for columns whose driver value is the value
        wanted, that is numbers, text, booleans and aware date-times (those come in the
        session's time zone rather than UTC: compare them, do not format them). On SQLite,
        through SQLAlchemy's processing as usual."""
        result = conn.execute(statement)
        if self.name != "postgresql":
            return [tuple(row) for row in result]
        try:
            rows: Sequence[tuple[Any, ...]] = result.cursor.fetchall()
            return rows
        finally:
            result.close()

    def json_param(self, name: str, *, binary: bool) -> Any:
        """A bound parameter that carries JSON already serialized as text, for a JSONB
        (``binary``) or JSON column on PostgreSQL; plain text on SQLite."""
        return self.json_text(bindparam(name, type_=String()), binary=binary)

    def json_text(self, expr: Any, *, binary: bool) -> Any:
        """An expression holding JSON as text, as a value for a JSONB (``binary``) or JSON
        column on PostgreSQL; as it is on SQLite (a CAST there would change it)."""
        if self.name != "postgresql":
            return expr
        return cast(expr, postgresql.JSONB() if binary else postgresql.JSON())

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

    def insert_ignoring(self, table: Table, conflict: Sequence[str]) -> Any:
        """``INSERT ... ON CONFLICT (conflict) DO NOTHING`` into ``table``: rows whose
        ``conflict`` columns (a unique constraint) match an existing row are skipped. Add
        ``.returning(...)`` to learn which rows went in."""
        module: Any = postgresql if self.name == "postgresql" else sqlite
        return module.insert(table).on_conflict_do_nothing(index_elements=list(conflict))

    def insert_rows(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        conflict: Sequence[str] = (),
        conflict_where: str | None = None,
        returning: Sequence[str] = (),
    ) -> list[tuple[Any, ...]]:
        """Insert rows (tuples in ``columns`` order) with one statement, skipping those that
        clash with an existing row on the ``conflict`` columns (a unique constraint, or a
        partial unique index whose condition is ``conflict_where``) when given; returns the
        ``returning`` columns of the rows inserted, in no set order.

        PostgreSQL gets one array per column (``INSERT ... SELECT * FROM unnest(...)``): the
        statement's text does not depend on the number of rows, so the driver prepares it
        once instead of parsing a new multi-row VALUES each time. SQLite gets SQLAlchemy's
        multi-row insert. Values go through the columns' type processors, as in copy_rows."""
        if not rows:
            return []
        if self.name != "postgresql":
            stmt: Any = sqlite.insert(table)
            if conflict:
                stmt = stmt.on_conflict_do_nothing(
                    index_elements=list(conflict),
                    index_where=text(conflict_where) if conflict_where else None,
                )
            if returning:
                stmt = stmt.returning(*(table.c[c] for c in returning))
            result = conn.execute(stmt, [dict(zip(columns, row, strict=True)) for row in rows])
            return [tuple(r) for r in result] if returning else []
        arrays: list[list[Any]] = [list(values) for values in zip(*rows, strict=True)]
        for values, process in zip(arrays, self._processors(conn, table, columns), strict=True):
            if process is not None:
                values[:] = [None if v is None else process(v) for v in values]

        def names(cols: Sequence[str]) -> str:
            return ", ".join(f'"{c}"' for c in cols)

        types = [table.c[c].type.compile(dialect=conn.dialect) for c in columns]
        # Arrays sent in binary (%b): text arrays would escape every element in Python.
        arrays_sql = ", ".join(f"%b::{t}[]" for t in types)
        sql = f'INSERT INTO "{table.name}" ({names(columns)}) SELECT * FROM unnest({arrays_sql})'
        if conflict:
            where = f" WHERE {conflict_where}" if conflict_where else ""
            sql += f" ON CONFLICT ({names(conflict)}){where} DO NOTHING"
        if returning:
            sql += f" RETURNING {names(returning)}"
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(sql, arrays)
            return [tuple(r) for r in cur.fetchall()] if returning else []

    # Advisory locks (PostgreSQL), keyed by a name hashed with the current schema: two
    # schemas of one database (the tests run in several at once) never share a key.
    _KEY = "hashtextextended(current_schema() || ':' || :space, 0)"

    def try_lock(self, bind: Session | Connection, space: str, *, shared: bool = False) -> bool:
        """Take the transaction-level advisory lock ``space`` without waiting: whether it is
        now held (``shared``: along with other shared holders). SQLite has one writer at a
        time: always true."""
        if self.name != "postgresql":
            return True
        kind = "_shared" if shared else ""
        sql = f"SELECT pg_try_advisory_xact_lock{kind}({self._KEY})"
        return bool(bind.execute(text(sql), {"space": space}).scalar())

    def lock(self, bind: Session | Connection, space: str) -> None:
        """Take the transaction-level advisory lock ``space`` alone, waiting for its holders
        to commit (PostgreSQL; nothing to do on SQLite)."""
        if self.name == "postgresql":
            bind.execute(text(f"SELECT pg_advisory_xact_lock({self._KEY})"), {"space": space})

    def try_lock_each(self, bind: Session | Connection, space: str, ids: Sequence[int]) -> set[int]:
        """Try the advisory lock of each id (sorted) in ``space``, without waiting: the ids
        now held. On SQLite, all of them."""
        if self.name != "postgresql":
            return set(ids)
        rows = bind.execute(
            text(
                "SELECT c FROM unnest(CAST(:ids AS bigint[])) AS t(c)"
                f" WHERE pg_try_advisory_xact_lock({self._KEY} # c)"
            ),
            {"ids": list(ids), "space": space},
        )
        return {row[0] for row in rows}

    def claim_write(self, conn: Connection, table: Table) -> None:
        """Make the current transaction a writer now, before it reads what it will write
        from. SQLite cannot turn a read transaction into a write one once another connection
        has committed since it began (it fails at once: "database is locked"), whereas a
        transaction that writes first waits its turn (busy_timeout): a write that changes
        nothing, on ``table``, takes the lock. PostgreSQL locks rows, not the database:
        nothing to do."""
        if self.name == "sqlite":
            conn.exec_driver_sql(f'DELETE FROM "{table.name}" WHERE 0')

    def update_by_key(
        self,
        conn: Connection,
        table: Table,
        key: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Update the rows of a request (hundreds) by ``key`` in one statement: tuples of
        ``columns`` values followed by the key. PostgreSQL: ``UPDATE ... FROM unnest(arrays)``,
        which the planner joins through the key's index (update_rows' temporary table, never
        analyzed, makes it scan the whole table: that one is for bulk loads); SQLite:
        executemany. Values go through the columns' type processors, as in copy_rows."""
        if not rows:
            return
        names = [*columns, key]
        if self.name != "postgresql":
            self.update_rows(conn, table, key, columns, rows)
            return
        arrays: list[list[Any]] = [list(values) for values in zip(*rows, strict=True)]
        for values, process in zip(arrays, self._processors(conn, table, names), strict=True):
            if process is not None:
                values[:] = [None if v is None else process(v) for v in values]
        types = [table.c[c].type.compile(dialect=conn.dialect) for c in names]
        arrays_sql = ", ".join(f"%b::{t}[]" for t in types)
        aliases = ", ".join(f'"{c}"' for c in names)
        sets = ", ".join(f'"{c}" = v."{c}"' for c in columns)
        # The key also as "= ANY(keys)": an index lookup whatever the table's statistics say
        # (for a table that grew since it was last analyzed, the planner may pick a scan).
        sql = (
            f'UPDATE "{table.name}" SET {sets} FROM unnest({arrays_sql}) AS v({aliases}) '
            f'WHERE "{table.name}"."{key}" = v."{key}" '
            f'AND "{table.name}"."{key}" = ANY(%b::{types[-1]}[])'
        )
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            cur.execute(sql, [*arrays, arrays[-1]])


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


def chunked(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]
