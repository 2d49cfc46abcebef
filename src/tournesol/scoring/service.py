"""RFM per scope, computed in SQL (window functions), and reads of models and scores.

Scopes: ``all`` (every purchase) and one per brand (the brand's code: that brand's
transactions). A customer is scored in a scope when it has at least one purchase there. The
quintile rule and the (R, FM) grid are :mod:`tournesol.scoring.rules`; the SQL here applies the
same rules (``1 + 5 * (rank - 1) / n`` in integers, and a CASE generated from the grid), and
the tests check that both give the same scores.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    FromClause,
    Integer,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    case,
    delete,
    extract,
    func,
    insert,
    literal,
    literal_column,
    select,
)
from sqlalchemy.orm import Session

from tournesol.customers.models import Brand, Customer
from tournesol.db import Dialect, UtcDateTime
from tournesol.interactions.models import Transaction
from tournesol.scoring.features import HISTORY_STATISTICS
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore, ScoreModel
from tournesol.scoring.rules import SEGMENT_CODES, SEGMENT_GRID

Rows = Select[*tuple[Any, ...]]  # a SELECT of any columns
ALL = "all"
RFM = cast(Table, CustomerRfm.__table__)
DAY_SECONDS = 86_400


class ScoringError(LookupError):
    """What a scoring command cannot do, said so that the user knows what to run first."""


@dataclass(frozen=True)
class RfmCounts:
    """One scope's RFM refresh: customers scored, per segment (every code, zeros included)
    and what it was computed from (``features`` = customer_feature, ``transactions``)."""

    scope: str
    customers: int
    segments: dict[str, int] = field(default_factory=dict)
    read: str = "transactions"


def epoch_seconds(value: Any) -> Any:
    """Seconds since 1970 of a date-time column, as an integer, on both databases
    (PostgreSQL rounds a fraction of a second, SQLite drops it)."""
    return extract("epoch", value).cast(BigInteger)


def days_before(now: datetime, value: Any) -> Any:
    """Whole days (24 h) from ``value`` to ``now``: ``(now - value) // 1 day``."""
    now_seconds = literal(int(now.timestamp()), BigInteger)
    return (now_seconds - epoch_seconds(value)) // DAY_SECONDS


def _from_features(now: datetime) -> Rows:
    f = CustomerFeature
    return (
        select(
            f.customer_id.label("customer_id"),
            literal(ALL, String()).label("scope"),
            days_before(now, f.last_purchase_at).label("recency_days"),
            f.purchase_count.label("frequency"),
            func.round(f.purchase_amount, 2).label("monetary"),
        )
        .join(Customer, Customer.id == f.customer_id)
        .where(f.purchase_count > 0, Customer.status == "active")
    )


def _from_transactions(now: datetime, *, brands: Mapping[str, int] | None = None) -> Rows:
    """Per customer: days since the last purchase, purchases, amount; with ``brands`` (code
    -> id), per customer and brand, each brand its own scope, in one pass over the
    transactions."""
    t = Transaction
    where = [
        t.customer_id.is_not(None),
        t.kind != "return",
        t.occurred_at <= literal(now, UtcDateTime()),
    ]
    keys: list[Any] = [t.customer_id.label("customer_id")]
    if brands:
        where.append(t.brand_id.in_(sorted(brands.values())))
        keys.append(t.brand_id.label("brand_id"))
    per = (
        select(
            *keys,
            func.max(t.occurred_at).label("last_at"),
            func.count().label("frequency"),
            func.round(func.coalesce(func.sum(t.total_amount), 0), 2).label("monetary"),
        )
        .where(*where)
        .group_by(*keys)
        .subquery("per")
    )
    scope: Any = literal(ALL, String())
    if brands:
        scope = case(
            *((per.c.brand_id == brand_id, literal(code)) for code, brand_id in brands.items())
        )
    return (
        select(
            per.c.customer_id,
            scope.label("scope"),
            days_before(now, per.c.last_at).label("recency_days"),
            per.c.frequency,
            per.c.monetary,
        )
        .join(Customer, Customer.id == per.c.customer_id)
        .where(Customer.status == "active")
    )


def _staging_table() -> Table:
    """Where one refresh's base rows wait to be ranked (a temporary table: each connection
    has its own, gone with the connection)."""
    return Table(
        "tmp_rfm_base",
        MetaData(),
        Column("customer_id", BigInteger, nullable=False),
        Column("scope", String(40), nullable=False),
        Column("recency_days", Integer, nullable=False),
        Column("frequency", Integer, nullable=False),
        Column("monetary", Numeric(14, 2), nullable=False),
        prefixes=["TEMPORARY"],
    )


def _quintile(order: Any, scope: Any, sizes: dict[str, int]) -> Any:
    """The rule of ``rules.quintile_scores`` in SQL: ``1 + 5 * (rank - 1) / n`` in integers;
    rank() gives equal values the same rank, so ties share a score. ``n`` (customers in the
    scope) is counted beforehand and bound: a whole-partition count() would make the database
    buffer each partition a second time."""
    rank = func.rank().over(partition_by=scope, order_by=order)
    if len(sizes) == 1:
        n: Any = literal(next(iter(sizes.values())), Integer)
    else:
        n = case(*((scope == name, literal(size, Integer)) for name, size in sizes.items()))
    return 1 + (5 * (rank - 1)) // n


def _segment_case(r: Any, fm: Any) -> Any:
    cells: dict[str, list[int]] = defaultdict(list)
    for (rs, fms), code in SEGMENT_GRID.items():
        cells[code].append(rs * 10 + fms)
    key = r * 10 + fm
    return case(
        *(
            (key.in_([literal_column(str(k)) for k in sorted(v)]), literal_column(f"'{c}'"))
            for c, v in cells.items()
        )
    )


def rfm_select(base: FromClause, sizes: dict[str, int], now: datetime) -> Rows:
    """Rows of customer_rfm from ``base`` (customer_id, scope, recency_days, frequency,
    monetary), scored within each scope; ``sizes``: customers per scope."""
    b = base.c
    scored = select(
        b.customer_id,
        b.scope,
        b.recency_days,
        b.frequency,
        b.monetary,
        _quintile(b.recency_days.desc(), b.scope, sizes).label("r"),
        _quintile(b.frequency, b.scope, sizes).label("f"),
        _quintile(b.monetary, b.scope, sizes).label("m"),
    ).subquery("scored")
    s = scored.c
    fm = (s.f + s.m + 1) // 2
    return select(
        s.customer_id,
        s.scope,
        literal(now, UtcDateTime()),
        s.recency_days,
        s.frequency,
        s.monetary,
        s.r.cast(Integer),
        s.f.cast(Integer),
        s.m.cast(Integer),
        _segment_case(s.r, fm),
    ).order_by(s.customer_id)  # rows written in key order: each page of the primary key's
    # index is then visited once (unordered, the complete refresh took 74 s instead of 39 s)


def _score(session: Session, bases: Sequence[Rows], now: datetime) -> None:
    """Stage the ``bases`` in a temporary table, count each scope, rank every scope in one
    pass, write customer_rfm."""
    staging = _staging_table()
    conn = session.connection()
    staging.drop(conn, checkfirst=True)
    staging.create(conn)
    try:
        for base in bases:
            session.execute(insert(staging).from_select([c.name for c in staging.columns], base))
        sizes = {
            name: int(n)
            for name, n in session.execute(
                select(staging.c.scope, func.count()).group_by(staging.c.scope)
            )
        }
        if sizes:
            rows = rfm_select(staging, sizes, now)
            session.execute(insert(RFM).from_select(list(RFM_COLUMNS), rows))
    finally:
        staging.drop(conn)


# What an RFM refresh reads (the planner's statistics brought up to date first).
RFM_STATISTICS: dict[str, tuple[str, ...]] = {
    key: HISTORY_STATISTICS[key] for key in ("customer", "transaction", "customer_feature")
}

RFM_COLUMNS = (
    "customer_id",
    "scope",
    "computed_at",
    "recency_days",
    "frequency",
    "monetary",
    "r_score",
    "f_score",
    "m_score",
    "segment",
)


def features_as_of(session: Session) -> datetime | None:
    """When customer_feature was last rebuilt (None when it is empty)."""
    return session.scalar(select(func.max(CustomerFeature.computed_at)))


def brand_scopes(session: Session) -> dict[str, int]:
    """The brands that have transactions: code -> id, by code."""
    used = select(Transaction.brand_id).where(Transaction.brand_id == Brand.id).exists()
    query = select(Brand.code, Brand.id).where(used).order_by(Brand.code)
    return {code: int(brand_id) for code, brand_id in session.execute(query)}


def refresh_rfm(
    session: Session,
    *,
    now: datetime,
    scope: str | None = None,
    use_features: bool | None = None,
) -> list[RfmCounts]:
    """Recompute RFM scores and segments as of ``now`` for ``scope`` (``all``, a brand code,
    or None for ``all`` and every brand with transactions), replacing that scope's rows in
    customer_rfm; returns the counts per scope and segment.

    Scope ``all`` reads customer_feature when it has rows (``use_features`` None) or when
    told (True): the features must then be fresh (``tournesol features refresh`` after
    imports); a brand scope aggregates that brand's transactions. Each scope's base rows are
    staged in a temporary table, counted, then ranked.

    >>> [c.scope for c in refresh_rfm(session, now=utcnow())]  # doctest: +SKIP
    ['all', 'SOLEIL', 'TOURNESOL PRO']
    """
    dialect = Dialect.of(session)
    dialect.refresh_statistics(session.connection(), RFM_STATISTICS)
    dialect.for_batch(session.connection())
    brands = brand_scopes(session)
    if scope is None:
        session.execute(delete(RFM))
        scopes = [ALL, *brands]
    elif scope == ALL:
        session.execute(delete(RFM).where(RFM.c.scope == ALL))
        scopes = [ALL]
    else:
        brand_id = session.scalar(select(Brand.id).where(Brand.code == scope))
        if brand_id is None:
            known = ", ".join([ALL, *brands])
            raise ScoringError(f"no brand {scope!r} (scopes with purchases: {known})")
        session.execute(delete(RFM).where(RFM.c.scope == scope))
        scopes = [scope]
        brands = {scope: brand_id}
    read: dict[str, str] = {}
    bases: list[Rows] = []
    if ALL in scopes:
        if use_features is None:
            use_features = features_as_of(session) is not None
        bases.append(_from_features(now) if use_features else _from_transactions(now))
        read[ALL] = "features" if use_features else "transactions"
    by_brand = {name: brands[name] for name in scopes if name != ALL}
    if by_brand:
        bases.append(_from_transactions(now, brands=by_brand))
        read.update(dict.fromkeys(by_brand, "transactions"))
    _score(session, bases, now)
    return rfm_counts(session, scopes=scopes, read=read)


def rfm_counts(
    session: Session, *, scopes: list[str] | None = None, read: dict[str, str] | None = None
) -> list[RfmCounts]:
    """Customers per segment in each scope of customer_rfm (all scopes when None)."""
    query = select(RFM.c.scope, RFM.c.segment, func.count()).group_by(RFM.c.scope, RFM.c.segment)
    if scopes is not None:
        query = query.where(RFM.c.scope.in_(scopes))
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for scope_name, segment, n in session.execute(query):
        found[scope_name][segment] = int(n)
    names = scopes if scopes is not None else sorted(found, key=lambda s: (s != ALL, s))
    return [
        RfmCounts(
            scope=name,
            customers=sum(found[name].values()),
            segments={code: found[name].get(code, 0) for code in SEGMENT_CODES},
            read=(read or {}).get(name, ""),
        )
        for name in names
    ]


def active_model(session: Session, name: str) -> ScoreModel | None:
    """The model of that name that ``scores apply`` uses (the latest trained, unless one was
    activated by hand)."""
    query = (
        select(ScoreModel)
        .where(ScoreModel.name == name, ScoreModel.active.is_(True))
        .order_by(ScoreModel.trained_at.desc(), ScoreModel.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def list_models(session: Session) -> list[ScoreModel]:
    """Every trained model, newest first."""
    return list(
        session.scalars(select(ScoreModel).order_by(ScoreModel.trained_at.desc(), ScoreModel.id))
    )


def score_counts(session: Session) -> dict[str, tuple[str, int]]:
    """Per model name: the version that gave the current scores and how many customers have
    one."""
    s = CustomerScore
    query = select(s.model, func.max(s.version), func.count()).group_by(s.model)
    return {model: (version, int(n)) for model, version, n in session.execute(query)}
