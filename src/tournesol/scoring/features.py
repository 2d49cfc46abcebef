"""Customer features: one row per active customer with the aggregates of its history, rebuilt
set-based (``INSERT ... SELECT`` with conditional aggregates) so that segments read one narrow
row instead of scanning transactions and interactions.

Definitions (docs/scoring.md): purchases are transactions whose ``kind`` is not ``return``,
their amount is ``total_amount``; a window of N days is ``(now - N days, now]``; "all time" is
everything up to ``now``. Window bounds are computed here and bound as parameters, so the same
statement runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import Session

from tournesol.customers.models import Customer
from tournesol.db import Dialect, UtcDateTime, chunked
from tournesol.interactions.models import INTERNAL, Interaction, Transaction
from tournesol.scoring.models import CustomerFeature

Rows = Select[*tuple[Any, ...]]  # a SELECT of any columns
WINDOWS = (30, 90, 180, 365)
# Customer ids per statement of a full refresh; None: one statement over the whole base, the
# fastest on PostgreSQL (one scan of each history table; ranges rescan them) and as fast as
# ranges on SQLite. Aggregates spill to disk on both databases, so memory stays bounded either
# way; ranges give progress reports and smaller statements.
DEFAULT_CHUNK_IDS: int | None = None

Progress = Callable[[int, int], None]


def window_starts(now: datetime) -> dict[int, datetime]:
    """The exclusive lower bound of each standard window: ``{30: now - 30 days, ...}``."""
    return {days: now - timedelta(days=days) for days in WINDOWS}


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _amount(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(
        func.sum(case((condition, func.coalesce(Transaction.total_amount, 0)), else_=0)), 0
    )


def _at(value: datetime) -> Any:
    return literal(value, UtcDateTime())


IdFilter = Callable[[Any], ColumnElement[bool]]


def feature_select(now: datetime, *, customers: IdFilter | None = None) -> Rows:
    """The SELECT whose rows are customer_feature rows as of ``now`` (columns in the table's
    order), for active customers whose id passes ``customers`` (from :func:`id_condition`;
    None: everybody)."""
    starts = {days: _at(at) for days, at in window_starts(now).items()}
    t = Transaction
    purchase = t.kind != "return"
    # Two aggregates rather than one with every window: all-time purchases need no CASE, and
    # the windowed CASEs run over the last year's rows only (a per-row expression costs SQLite
    # about a second per 10 million rows).
    ever_where = [t.customer_id.is_not(None), purchase, t.occurred_at <= _at(now)]
    recent_where = [t.customer_id.is_not(None), t.occurred_at > starts[365]]
    recent_where.append(t.occurred_at <= _at(now))
    if customers is not None:
        ever_where.append(customers(t.customer_id))
        recent_where.append(customers(t.customer_id))
    ever = (
        select(
            t.customer_id.label("customer_id"),
            func.count().label("purchase_count"),
            func.coalesce(func.sum(t.total_amount), 0).label("purchase_amount"),
            func.min(t.occurred_at).label("first_purchase_at"),
            func.max(t.occurred_at).label("last_purchase_at"),
        )
        .where(*ever_where)
        .group_by(t.customer_id)
        .subquery("ever")
    )
    recent = (
        select(
            t.customer_id.label("customer_id"),
            *(
                column
                for days in WINDOWS
                for column in (
                    _count(and_(purchase, t.occurred_at > starts[days])).label(
                        f"purchase_count_{days}"
                    ),
                    _amount(and_(purchase, t.occurred_at > starts[days])).label(
                        f"purchase_amount_{days}"
                    ),
                )
            ),
            _count(and_(purchase, t.channel == "store")).label("store_365"),
            _count(and_(purchase, t.channel == "web")).label("web_365"),
            _count(t.kind == "return").label("return_count_365"),
        )
        .where(*recent_where)
        .group_by(t.customer_id)
        .subquery("recent")
    )
    i = Interaction
    it_where = [
        i.customer_id.is_not(None),
        i.occurred_at <= _at(now),
        i.direction != INTERNAL,
    ]
    if customers is not None:
        it_where.append(customers(i.customer_id))
    inbound = i.direction == "inbound"
    it = (
        select(
            i.customer_id.label("customer_id"),
            _count(i.occurred_at > starts[90]).label("interaction_count_90"),
            _count(i.occurred_at > starts[365]).label("interaction_count_365"),
            _count(and_(inbound, i.occurred_at > starts[365])).label("inbound_count_365"),
            func.max(i.occurred_at).label("last_interaction_at"),
            func.max(case((inbound, i.occurred_at))).label("last_inbound_at"),
        )
        .where(*it_where)
        .group_by(i.customer_id)
        .subquery("it")
    )

    def zero(column: Any) -> Any:
        return func.coalesce(column, 0)

    where = [Customer.status == "active"]
    if customers is not None:
        where.append(customers(Customer.id))
    return (
        select(
            Customer.id,
            _at(now),
            zero(ever.c.purchase_count),
            zero(ever.c.purchase_amount),
            ever.c.first_purchase_at,
            ever.c.last_purchase_at,
            *(
                zero(recent.c[f"purchase_{what}_{days}"])
                for days in WINDOWS
                for what in ("count", "amount")
            ),
            zero(recent.c.store_365),
            zero(recent.c.web_365),
            zero(recent.c.return_count_365),
            zero(it.c.interaction_count_90),
            zero(it.c.interaction_count_365),
            zero(it.c.inbound_count_365),
            it.c.last_interaction_at,
            it.c.last_inbound_at,
        )
        .select_from(Customer)
        .outerjoin(ever, ever.c.customer_id == Customer.id)
        .outerjoin(recent, recent.c.customer_id == Customer.id)
        .outerjoin(it, it.c.customer_id == Customer.id)
        .where(*where)
    )


FEATURES = cast(Table, CustomerFeature.__table__)
FEATURE_COLUMNS: tuple[str, ...] = tuple(c.name for c in FEATURES.columns)


def id_condition(
    *, between: tuple[int, int] | None = None, ids: Sequence[int] | None = None, dialect: Dialect
) -> IdFilter:
    """A function that restricts a customer id column to a range or a list of ids."""
    if between is not None:
        lo, hi = between
        return lambda column: column.between(lo, hi)
    assert ids is not None
    values = list(ids)
    return lambda column: dialect.one_of(column, values)


# What the refreshes filter and join on: the planner must know how big these tables are, or
# it may join a million customers to a million aggregated rows by nested loops.
HISTORY_STATISTICS: dict[str, tuple[str, ...]] = {
    "customer": ("id", "status"),
    "transaction": ("customer_id", "occurred_at", "kind", "brand_id"),
    "interaction": ("customer_id", "occurred_at"),
    "consent": ("customer_id", "purpose", "collected_at"),
    "customer_feature": ("customer_id", "purchase_count"),
}


def refresh_statistics(session: Session) -> None:
    """Bring the planner's statistics of the history tables up to date (PostgreSQL ANALYZE of
    the columns above; nothing on SQLite), before a statement over the whole base."""
    Dialect.of(session).refresh_statistics(session.connection(), HISTORY_STATISTICS)


def _insert(session: Session, now: datetime, customers: IdFilter) -> int:
    """Write the rows of the customers ``customers`` selects; returns how many (counted: the
    driver's row count of an INSERT ... SELECT is not reliable on every database)."""
    select_rows = feature_select(now, customers=customers)
    session.execute(insert(FEATURES).from_select(list(FEATURE_COLUMNS), select_rows))
    counted = select(func.count()).where(customers(FEATURES.c.customer_id))
    return int(session.scalar(counted) or 0)


def refresh(
    session: Session,
    *,
    now: datetime,
    customer_ids: Sequence[int] | None = None,
    chunk_ids: int | None = DEFAULT_CHUNK_IDS,
    progress: Progress | None = None,
) -> int:
    """Rebuild customer_feature as of ``now``; returns the rows written (one per active
    customer, zeros when it has no history).

    With ``customer_ids``, only those customers' rows are deleted and rebuilt (after an
    import or a merge: a merged customer loses its row, its survivor gets the sum). Otherwise
    the whole table is rebuilt in one statement, or by ranges of ``chunk_ids`` customer ids
    (all in the caller's transaction; ``progress(done_ids, total_ids)`` after each range).

    >>> refresh(session, now=utcnow())  # doctest: +SKIP
    1000000
    """
    dialect = Dialect.of(session)
    table = FEATURES
    if customer_ids is not None:
        ids = sorted(set(customer_ids))
        written = 0
        for part in chunked(ids, dialect.max_params // 4):
            condition = id_condition(ids=part, dialect=dialect)
            session.execute(delete(table).where(condition(table.c.customer_id)))
            written += _insert(session, now, condition)
        return written
    refresh_statistics(session)
    dialect.for_batch(session.connection())
    session.execute(delete(table))
    lo, hi = session.execute(select(func.min(Customer.id), func.max(Customer.id))).one()
    if lo is None:
        return 0
    step = chunk_ids or (hi - lo + 1)
    written = 0
    for start in range(lo, hi + 1, step):
        end = min(start + step - 1, hi)
        written += _insert(session, now, id_condition(between=(start, end), dialect=dialect))
        if progress is not None:
            progress(end - lo + 1, hi - lo + 1)
    return written
