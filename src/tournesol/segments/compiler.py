"""Segment definitions (docs/segments.md) compiled to one SQL statement.

:func:`compile_definition` turns a definition into ``SELECT customer.id FROM customer ...
WHERE customer.status = 'active' AND <conditions>``, built with SQLAlchemy Core: every value
the author wrote is a bound parameter, so the same statement runs on SQLite and PostgreSQL
and a value can never become SQL. Nothing here touches a database.

How conditions become SQL, so that a segment over millions of customers stays a few index
probes or one pass over narrow rows:

- golden attributes are comparisons on customer columns; an age is a birth-date range, a
  department or region a set of postal-code ranges (no function on an indexed column);
- identifiers, consents (their current state, ``consent_state``), preferences,
  organisations, RFM and scores are lookups: ``customer.id IN (SELECT customer_id FROM ...
  WHERE ...)``, uncorrelated, so that each database builds the list once from the table's
  index (PostgreSQL a hashed semi-join, SQLite an index driving the probes) instead of one
  probe per customer; an ``any`` of lookups on one table is one lookup with an OR; a ``not``
  of a lookup is a correlated ``NOT EXISTS`` (an anti-join: ``NOT IN`` over a list larger
  than work_mem is quadratic on PostgreSQL);
- behaviour reads ``customer_feature`` (one LEFT JOIN) when a feature column answers it and
  features exist (``features_as_of``), else the raw history: ``EXISTS`` or a correlated
  aggregate over transaction / interaction through the ``(customer_id, occurred_at)`` index;
- conditions of an ``all`` are ordered cheapest first (columns, features, lookups, history);
- every condition is two-valued (never NULL), so ``not`` is the exact complement: a customer
  with no birth date is not "under 30", and is "not under 30".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    outerjoin,
    select,
    true,
)
from sqlalchemy.sql.selectable import Exists, FromClause

from tournesol.consent.models import ConsentState, Preference
from tournesol.customers.models import (
    Brand,
    Customer,
    Identifier,
    Organisation,
    OrganisationContact,
    Zone,
)
from tournesol.interactions.models import INTERNAL, Interaction, Transaction, TransactionLine
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore
from tournesol.segments import rules
from tournesol.segments.schemas import (
    AMOUNT,
    ATTRIBUTES,
    AVERAGE,
    COUNT,
    DATE,
    MEASURE_KINDS,
    SCORE,
    AllNode,
    AnyNode,
    AttributeNode,
    BehaviourNode,
    BehaviourSpec,
    ConsentNode,
    DateRange,
    DaysAgo,
    Definition,
    DefinitionError,
    IdentifierNode,
    LastDays,
    NotNode,
    PreferenceNode,
    ReachableNode,
    RfmNode,
    ScoreNode,
    SegmentNode,
    load_definition,
    parse_value,
    validate,
)

__all__ = [
    "FEATURE_WINDOWS",
    "Compiled",
    "DefinitionError",
    "compile_definition",
    "load_definition",
    "validate",
]

Predicate = ColumnElement[bool]
Resolver = Callable[[str], Mapping[str, Any]]

FEATURE_WINDOWS: Final = (30, 90, 180, 365)  # the last_days windows customer_feature holds
MAX_SEGMENT_DEPTH: Final = 16
AMOUNT_TYPE: Final = Numeric(14, 2)

# Cost ranks, to put the cheap conditions of an ``all`` first.
_COLUMN, _FEATURE, _LOOKUP, _HISTORY = 0, 1, 2, 3
_ORG_COLUMNS: Final = {
    "naf_code": Organisation.naf_code,
    "headcount_band": Organisation.headcount_band,
    "org_class": Organisation.org_class,
}


@dataclass(frozen=True)
class Compiled:
    """A compiled definition: ``query`` is one SELECT of ``customer.id`` (active customers
    only) with every value bound; ``path`` says what the behaviour conditions read:
    ``features`` (customer_feature, or no behaviour condition at all), ``raw`` (the
    transaction and interaction history) or ``mixed``; ``notes`` say as of when features
    were computed and why a condition had to read the raw history."""

    query: Select[int]
    path: str
    notes: tuple[str, ...] = ()


@dataclass
class _Context:
    now: datetime
    features_as_of: datetime | None
    prefer_raw: bool
    resolve: Resolver | None
    stack: list[str] = field(default_factory=list)
    feature_nodes: int = 0
    raw_nodes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def today(self) -> date:
        return self.now.date()


@dataclass(frozen=True)
class _Lookup:
    """ "Some row of ``source`` whose ``column`` is the customer's id meets ``condition``",
    kept as data until its place is known: :meth:`holds` where it must be true,
    :meth:`absent` under a ``not``. Lookups with the same ``key`` read the same rows and can
    be merged by an ``any``."""

    key: str
    column: Any
    condition: Predicate
    source: Any

    def holds(self) -> Predicate:
        rows = select(self.column).select_from(self.source).where(self.condition)
        return Customer.id.in_(rows)

    def absent(self) -> Predicate:
        found = exists().select_from(self.source).where(self.column == Customer.id, self.condition)
        return not_(found.correlate(Customer))


Part = Predicate | _Lookup


def _predicate(part: Part) -> Predicate:
    return part.holds() if isinstance(part, _Lookup) else part


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def compile_definition(
    definition: Mapping[str, Any] | Definition,
    *,
    now: datetime,
    features_as_of: datetime | None = None,
    resolve: Resolver | None = None,
    prefer_raw: bool = False,
) -> Compiled:
    """Compile a definition (a dict as in docs/segments.md) into one statement.

    ``now`` is the reference time of relative windows, ``days_ago`` dates and ages (today is
    its date in UTC). ``features_as_of`` is when customer_feature was computed (None: never,
    so behaviour reads the raw history); behaviour conditions answered by features are
    relative to it instead. ``resolve(code)`` returns a saved segment's definition for
    ``{"segment": code}`` (raising KeyError when there is none). ``prefer_raw`` ignores the
    features (to check them against the history). Raises DefinitionError naming the faulty
    node.

    >>> compiled = compile_definition(
    ...     {"attribute": "gender", "op": "eq", "value": "F"}, now=utcnow())
    >>> session.scalars(compiled.query).all()  # doctest: +SKIP
    """
    model = validate(definition)
    ctx = _Context(
        now=_utc(now, "now"),
        features_as_of=None if features_as_of is None else _utc(features_as_of, "features_as_of"),
        prefer_raw=prefer_raw,
        resolve=resolve,
    )
    part, _cost = _node(model.root, "$", ctx)
    predicate = _predicate(part)
    source: FromClause = Customer.__table__
    if ctx.feature_nodes:
        source = outerjoin(
            Customer.__table__,
            CustomerFeature.__table__,
            CustomerFeature.customer_id == Customer.id,
        )
    query = (
        select(Customer.id)
        .select_from(source)
        .where(Customer.status == "active", predicate)
        # Keep its own FROM customer when a caller nests it (IN, a subquery, a join).
        .correlate(None)
    )
    notes: list[str] = []
    if ctx.feature_nodes and ctx.features_as_of is not None:
        notes.append(f"features as of {ctx.features_as_of:%Y-%m-%d %H:%M} UTC{_age_note(ctx)}")
    notes.extend(ctx.notes)
    if ctx.raw_nodes and ctx.feature_nodes:
        path = "mixed"
    elif ctx.raw_nodes:
        path = "raw"
    else:
        path = "features"
    return Compiled(query=query, path=path, notes=tuple(notes))


def _age_note(ctx: _Context) -> str:
    assert ctx.features_as_of is not None
    days = (ctx.now - ctx.features_as_of).days
    if days >= 1:
        return f" ({days} day{'s' if days > 1 else ''} before now: newer history is not seen)"
    return ""


# --- nodes -------------------------------------------------------------------------------


def _node(node: Any, path: str, ctx: _Context) -> tuple[Part, int]:
    if isinstance(node, AllNode):
        parts = sorted(
            (_node(child, f"{path}.all[{i}]", ctx) for i, child in enumerate(node.all_)),
            key=lambda part: part[1],
        )
        if not parts:
            return true(), _COLUMN
        if len(parts) == 1:
            return parts[0]
        return and_(*(_predicate(p) for p, _ in parts)), max(c for _, c in parts)
    if isinstance(node, AnyNode):
        parts = [_node(child, f"{path}.any[{i}]", ctx) for i, child in enumerate(node.any_)]
        return _any([p for p, _ in parts]), max(c for _, c in parts)
    if isinstance(node, NotNode):
        inner, cost = _node(node.not_, f"{path}.not", ctx)
        return (inner.absent() if isinstance(inner, _Lookup) else not_(inner)), cost
    if isinstance(node, AttributeNode):
        return _attribute(node, ctx)
    if isinstance(node, ReachableNode):
        return _reachable(node.reachable), _COLUMN
    if isinstance(node, IdentifierNode):
        found = _Lookup(
            "identifier",
            Identifier.customer_id,
            Identifier.kind == node.identifier,
            Identifier.__table__,
        )
        return found, _LOOKUP
    if isinstance(node, ConsentNode):
        return _consent(node), _LOOKUP
    if isinstance(node, PreferenceNode):
        return _preference(node), _LOOKUP
    if isinstance(node, BehaviourNode):
        return _behaviour(node.behaviour, f"{path}.behaviour", ctx)
    if isinstance(node, RfmNode):
        return _rfm(node), _LOOKUP
    if isinstance(node, ScoreNode):
        return _score(node), _LOOKUP
    if isinstance(node, SegmentNode):
        return _segment(node.segment, f"{path}.segment", ctx)
    raise TypeError(f"not a node: {node!r}")  # pragma: no cover - validate() guards this


def _any(parts: list[Part]) -> Part:
    """OR of the parts, the lookups on one table merged into one (one list to build)."""
    if not parts:
        return false()
    merged: dict[str, list[_Lookup]] = {}
    others: list[Predicate] = []
    for part in parts:
        if isinstance(part, _Lookup):
            merged.setdefault(part.key, []).append(part)
        else:
            others.append(part)
    lookups = [
        group[0]
        if len(group) == 1
        else replace(group[0], condition=or_(*(g.condition for g in group)))
        for group in merged.values()
    ]
    if len(lookups) == 1 and not others:
        return lookups[0]
    return or_(*others, *(lookup.holds() for lookup in lookups))


# --- comparisons -------------------------------------------------------------------------


def _compare(column: Any, op: str, value: Any, *, nullable: bool = True) -> Predicate:
    """``column op value``, false (not NULL) when the column is NULL."""
    if op == "is_null":
        return column.is_(None) if nullable else false()
    if op == "is_not_null":
        return column.is_not(None) if nullable else true()
    expr: Predicate
    if op == "eq":
        expr = column == value
    elif op == "ne":
        expr = column != value
    elif op == "in":
        expr = column.in_(list(value))
    elif op == "not_in":
        expr = column.not_in(list(value))
    elif op == "lt":
        expr = column < value
    elif op == "lte":
        expr = column <= value
    elif op == "gt":
        expr = column > value
    elif op == "gte":
        expr = column >= value
    elif op == "between":
        expr = and_(column >= value[0], column <= value[1])
    elif op == "starts_with":
        expr = _starts_with(column, value)
    else:  # pragma: no cover - validate() guards this
        raise ValueError(op)
    return and_(column.is_not(None), expr) if nullable else expr


def _starts_with(column: Any, prefix: str) -> Predicate:
    """Exact and case-sensitive on both databases (no LIKE: its case rules differ and its
    wildcards would need escaping); digits also get an index range."""
    exact = func.substr(column, 1, len(prefix)) == prefix
    if prefix.isascii() and prefix.isdigit():
        bound = rules.prefix_upper_bound(prefix)
        in_range = column >= prefix if bound is None else and_(column >= prefix, column < bound)
        return and_(in_range, exact)
    return exact


def _day(value: date | DaysAgo, ref: datetime) -> date:
    return (ref - timedelta(days=value.days)).date() if isinstance(value, DaysAgo) else value


def _day_bounds(
    op: str, value: Any, ref: datetime, start: Callable[[date], Any]
) -> tuple[Any, Any]:
    """A date condition as ``[low, high)`` bounds on the instant (None: open): a day covers
    from its midnight to the next (UTC)."""
    if op == "between":
        low, high = (_day(v, ref) for v in value)
        return start(low), start(high + timedelta(days=1))
    day = _day(value, ref)
    today, tomorrow = start(day), start(day + timedelta(days=1))
    return {
        "eq": (today, tomorrow),
        "ne": (today, tomorrow),
        "lt": (None, today),
        "lte": (None, tomorrow),
        "gt": (tomorrow, None),
        "gte": (today, None),
    }[op]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _same_day(day: date) -> date:
    return day


def _within(column: Any, low: Any, high: Any) -> Predicate:
    parts = [column.is_not(None)]
    if low is not None:
        parts.append(column >= low)
    if high is not None:
        parts.append(column < high)
    return and_(*parts)


def _compare_day(column: Any, op: str, value: Any, ref: datetime, *, instant: bool) -> Predicate:
    """A date or date-time column against a day (ISO date or days_ago before ``ref``)."""
    if op in ("is_null", "is_not_null"):
        return _compare(column, op, None)
    low, high = _day_bounds(op, value, ref, _midnight if instant else _same_day)
    inside = _within(column, low, high)
    if op == "ne":
        return and_(column.is_not(None), not_(inside))
    return inside


# --- attributes --------------------------------------------------------------------------


def _attribute(node: AttributeNode, ctx: _Context) -> tuple[Part, int]:
    name, op = node.attribute, node.op
    kind = ATTRIBUTES[name]
    value = parse_value(kind, op, node.value, name=name)
    if name == "age":
        return _age(op, value, ctx.today), _COLUMN
    if name == "department":
        return _area(op, None if value is None else _as_set(op, value)), _COLUMN
    if name == "region":
        regions = None if value is None else _as_set(op, value)
        departments = (
            None
            if regions is None
            else frozenset(d for r in regions for d in rules.REGION_DEPARTMENTS[r])
        )
        return _area(op, departments, region=True), _COLUMN
    if name in ("brand", "zone"):
        return _coded(name, op, value), _FEATURE
    if name == "b2b":
        works = _Lookup(
            "organisation_contact",
            OrganisationContact.customer_id,
            true(),
            OrganisationContact.__table__,
        )
        return (works if value == (op == "eq") else works.absent()), _LOOKUP
    if name in _ORG_COLUMNS:
        return _organisation(_ORG_COLUMNS[name], op, value), _LOOKUP
    column = getattr(Customer, name)
    if kind == DATE:
        return _compare_day(column, op, value, ctx.now, instant=name == "created_at"), _COLUMN
    return _compare(column, op, value, nullable=name != "customer_type"), _COLUMN


def _as_set(op: str, value: Any) -> frozenset[str]:
    return frozenset(value) if op in ("in", "not_in") else frozenset([value])


def _age(op: str, value: Any, today: date) -> Predicate:
    birth = Customer.birth_date
    if op in ("is_null", "is_not_null"):
        return _compare(birth, op, None)

    def aged(low: int | None, high: int | None) -> Predicate:
        bounds = rules.birth_range(low, high, today)
        parts: list[Predicate] = [birth.is_not(None)]
        if bounds.after is not None:
            parts.append(birth > bounds.after)
        if bounds.until is not None:
            parts.append(birth <= bounds.until)
        return and_(*parts)

    if op in ("eq", "ne"):
        one = aged(value, value)
        return one if op == "eq" else and_(birth.is_not(None), not_(one))
    if op in ("in", "not_in"):
        some = or_(*(aged(v, v) for v in sorted(set(value))))
        return some if op == "in" else and_(birth.is_not(None), not_(some))
    if op == "between":
        return aged(value[0], value[1])
    return {
        "lt": lambda: aged(None, value - 1),
        "lte": lambda: aged(None, value),
        "gt": lambda: aged(value + 1, None),
        "gte": lambda: aged(value, None),
    }[op]()


def _in_departments(departments: frozenset[str]) -> Predicate:
    """Customers whose postal code ``rules.department_of`` maps to one of ``departments``."""
    postal = Customer.postal_code
    sets = [rules.postal_set(d) for d in sorted(departments)]
    prefixes = sorted({p for s in sets for p in s.prefixes})
    excluded = sorted(
        {code for s in sets for code in s.excluded if rules.department_of(code) not in departments}
    )
    by_length: dict[int, list[str]] = {}
    for prefix in prefixes:
        by_length.setdefault(len(prefix), []).append(prefix)
    exact = or_(*(func.substr(postal, 1, n).in_(group) for n, group in sorted(by_length.items())))
    parts: list[Any] = [
        postal.is_not(None),
        or_(Customer.country.is_(None), Customer.country == "FR"),
        func.length(postal) == 5,
    ]
    if len(prefixes) <= 12:  # a few ranges an index on postal_code can serve
        ranges = []
        for prefix in prefixes:
            bound = rules.prefix_upper_bound(prefix)
            ranges.append(
                postal >= prefix if bound is None else and_(postal >= prefix, postal < bound)
            )
        parts.append(or_(*ranges))
    parts.append(exact)
    if excluded:
        parts.append(postal.not_in(excluded))
    return and_(*parts)


def _area(op: str, departments: frozenset[str] | None, *, region: bool = False) -> Predicate:
    known_set = frozenset(
        rules.DEPARTMENTS
        if not region
        else (d for ds in rules.REGION_DEPARTMENTS.values() for d in ds)
    )
    if op == "is_null":
        return not_(_in_departments(known_set))
    if op == "is_not_null":
        return _in_departments(known_set)
    assert departments is not None
    if op in ("eq", "in"):
        return _in_departments(departments)
    others = known_set - departments
    return _in_departments(others) if others else false()


def _coded(name: str, op: str, value: Any) -> Predicate:
    """brand / zone by code, through the brand or zone table."""
    table: Any = Brand if name == "brand" else Zone
    column = Customer.brand_id if name == "brand" else Customer.zone_id
    if op in ("is_null", "is_not_null"):
        return _compare(column, op, None)
    codes = list(value) if op in ("in", "not_in") else [value]
    ids = select(table.id).where(table.code.in_(codes))
    if op in ("eq", "in"):
        return column.in_(ids)
    return and_(column.is_not(None), column.not_in(ids))


def _organisation(column: Any, op: str, value: Any) -> Part:
    """Some organisation the customer works for satisfies the condition; is_null: none of
    them has a value."""

    def works_where(condition: Predicate) -> _Lookup:
        return _Lookup(
            "organisation",
            OrganisationContact.customer_id,
            condition,
            OrganisationContact.__table__.join(
                Organisation.__table__,
                Organisation.id == OrganisationContact.organisation_id,
            ),
        )

    if op == "is_null":
        return works_where(column.is_not(None)).absent()
    if op == "is_not_null":
        return works_where(column.is_not(None))
    return works_where(_compare(column, op, value))


def _reachable(channel: str) -> Predicate:
    c = Customer
    if channel == "email":
        return c.email.is_not(None)
    if channel == "sms":
        return c.phone_mobile.is_not(None)
    if channel == "phone":
        return or_(c.phone_mobile.is_not(None), c.phone_fixed.is_not(None))
    return and_(
        or_(c.address_line4.is_not(None), c.address_line5.is_not(None)),
        c.address_line6.is_not(None),
    )


# --- consents, preferences, RFM, scores ----------------------------------------------------


def _brand_ids(code: str) -> Any:
    return select(Brand.id).where(Brand.code == code)


def _consent(node: ConsentNode) -> _Lookup:
    """The consent as it stands now (the latest row of its key, kept in consent_state)."""
    spec = node.consent
    state = ConsentState
    brand = (
        state.brand_id.is_(None)
        if spec.brand is None
        else state.brand_id.in_(_brand_ids(spec.brand))
    )
    condition = and_(
        state.channel == spec.channel,
        state.purpose == spec.purpose,
        state.status == spec.status,
        brand,
    )
    return _Lookup("consent_state", state.customer_id, condition, state.__table__)


def _preference(node: PreferenceNode) -> Part:
    spec = node.preference
    conditions: list[Any] = []
    if spec.channel is not None:
        conditions.append(Preference.channel == spec.channel)
    if spec.preferred is not None:
        stated = _lookup(Preference.customer_id, *conditions, Preference.preferred == true())
        return stated if spec.preferred else stated.absent()
    if spec.language is not None:
        conditions.append(Preference.language == spec.language)
    else:
        # days is a normalized list such as "mon,tue,sat": day names never overlap.
        conditions.append(Preference.days.like(f"%{spec.day}%"))
    return _lookup(Preference.customer_id, *conditions)


def _lookup(customer_column: Any, *conditions: Any) -> _Lookup:
    """A lookup on the table of ``customer_column``, which holds the customer's id."""
    table = customer_column.table
    return _Lookup(table.name, customer_column, and_(true(), *conditions), table)


def _rfm(node: RfmNode) -> _Lookup:
    spec = node.rfm
    conditions: list[Any] = [CustomerRfm.scope == spec.scope]
    if spec.segment is not None:
        conditions.append(CustomerRfm.segment.in_(spec.segment))
    for scores, column in (
        (spec.r, CustomerRfm.r_score),
        (spec.f, CustomerRfm.f_score),
        (spec.m, CustomerRfm.m_score),
    ):
        if scores is not None:
            conditions.append(column.in_(sorted(set(scores))))
    return _lookup(CustomerRfm.customer_id, *conditions)


def _score(node: ScoreNode) -> Part:
    spec = node.score
    value = parse_value(SCORE, spec.op, spec.value, name="score")
    of_model = CustomerScore.model == spec.model
    if spec.op == "is_null":
        return _lookup(CustomerScore.customer_id, of_model).absent()
    if spec.op == "is_not_null":
        return _lookup(CustomerScore.customer_id, of_model)
    number = _floats(value)
    return _lookup(
        CustomerScore.customer_id,
        of_model,
        _compare(CustomerScore.value, spec.op, number, nullable=False),
    )


def _floats(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(float(v) for v in value)
    return float(value)


# --- saved segments ------------------------------------------------------------------------


def _segment(code: str, path: str, ctx: _Context) -> tuple[Part, int]:
    if code in ctx.stack:
        chain = " -> ".join([*ctx.stack, code])
        raise DefinitionError(path, f"segments refer to each other in a cycle: {chain}")
    if ctx.resolve is None:
        raise DefinitionError(path, f"segment {code!r}: saved segments are not available here")
    if len(ctx.stack) >= MAX_SEGMENT_DEPTH:
        raise DefinitionError(path, f"segments nested more than {MAX_SEGMENT_DEPTH} deep")
    try:
        inner = ctx.resolve(code)
    except LookupError:
        raise DefinitionError(path, f"no saved segment has the code {code!r}") from None
    ctx.stack.append(code)
    try:
        model = validate(inner)
        return _node(model.root, "$", ctx)
    except DefinitionError as exc:
        raise DefinitionError(path, f"in segment {code!r}, {exc.path}: {exc.message}") from None
    finally:
        ctx.stack.pop()


# --- behaviour -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _FeatureColumns:
    count: Any = None
    amount: Any = None
    first: Any = None
    last: Any = None


def _features_for(spec: BehaviourSpec) -> tuple[_FeatureColumns | None, str]:
    """The customer_feature columns answering ``spec`` (None and why, when none does)."""
    f = CustomerFeature
    window = spec.window
    if isinstance(window, DateRange):
        return None, "features have no window between dates"
    days = window.last_days if isinstance(window, LastDays) else None
    if days is not None and days not in FEATURE_WINDOWS:
        return None, f"features have no {days}-day window"
    given = spec.where.given() if spec.where is not None else []
    measure = spec.measure
    if spec.of == "purchases":
        if given:
            channel = spec.where.channel if spec.where is not None else None
            if (
                given == ["channel"]
                and days == 365
                and measure == "count"
                and channel in (["store"], ["web"])
            ):
                assert channel is not None
                column = (
                    f.store_purchase_count_365 if channel == ["store"] else f.web_purchase_count_365
                )
                return _FeatureColumns(count=column), ""
            return None, f"features have no purchases filtered by {', '.join(given)}"
        if days is None:
            columns = _FeatureColumns(
                f.purchase_count, f.purchase_amount, f.first_purchase_at, f.last_purchase_at
            )
        else:
            columns = _FeatureColumns(
                getattr(f, f"purchase_count_{days}"), getattr(f, f"purchase_amount_{days}")
            )
    else:
        inbound = (
            spec.where is not None and given == ["direction"] and spec.where.direction == "inbound"
        )
        if given and not inbound:
            return None, f"features have no interactions filtered by {', '.join(given)}"
        if days is None:
            columns = _FeatureColumns(last=f.last_inbound_at if inbound else f.last_interaction_at)
        elif days == 365:
            columns = _FeatureColumns(
                count=f.inbound_count_365 if inbound else f.interaction_count_365
            )
        elif days == 90 and not inbound:
            columns = _FeatureColumns(count=f.interaction_count_90)
        else:
            columns = _FeatureColumns()
    needed = {
        "count": columns.count,
        "amount": columns.amount,
        "average_basket": columns.amount,
        "first_date": columns.first,
        "last_date": columns.last,
    }[measure]
    if needed is None:
        span = "all time" if days is None else f"the last {days} days"
        return None, f"features have no {measure} of {spec.of} over {span}"
    return columns, ""


def _behaviour(spec: BehaviourSpec, path: str, ctx: _Context) -> tuple[Predicate, int]:
    if ctx.prefer_raw:
        columns, reason = None, "raw history asked for"
    elif ctx.features_as_of is None:
        columns, reason = None, "features were never computed"
    else:
        columns, reason = _features_for(spec)
    kind = MEASURE_KINDS[spec.measure]
    value = parse_value(kind, spec.op, spec.value, name=spec.measure)
    if columns is not None:
        assert ctx.features_as_of is not None
        ctx.feature_nodes += 1
        return _from_features(spec, kind, value, columns, ctx.features_as_of), _FEATURE
    ctx.raw_nodes += 1
    location = path if not ctx.stack else f"{path} of segment {ctx.stack[-1]!r}"
    ctx.notes.append(f"raw history for {location}: {reason}")
    return _from_history(spec, kind, value, ctx.now), _HISTORY


def _holds_for(op: str, value: Any, number: Any) -> bool:
    """Whether ``number op value`` holds (for customers without history: 0)."""
    if op == "eq":
        return bool(number == value)
    if op == "ne":
        return bool(number != value)
    if op == "in":
        return number in value
    if op == "not_in":
        return number not in value
    if op == "lt":
        return bool(number < value)
    if op == "lte":
        return bool(number <= value)
    if op == "gt":
        return bool(number > value)
    if op == "gte":
        return bool(number >= value)
    if op == "between":
        return bool(value[0] <= number <= value[1])
    raise ValueError(op)  # pragma: no cover


def _rounded(amount: Any) -> Any:
    """Amounts compared to the cent: SQLite sums them as floating point numbers."""
    return func.round(amount, 2)


def _average(amount: Any, count: Any, op: str, value: Any) -> Predicate:
    """``amount / count op value`` without a division: ``amount op value * count``."""

    def times(v: Decimal) -> Any:
        return _rounded(literal(v, AMOUNT_TYPE) * count)

    total = _rounded(amount)
    if op == "between":
        return and_(count > 0, total >= times(value[0]), total <= times(value[1]))
    return and_(count > 0, _compare(total, op, times(value), nullable=False))


def _from_features(
    spec: BehaviourSpec, kind: str, value: Any, columns: _FeatureColumns, as_of: datetime
) -> Predicate:
    present = CustomerFeature.customer_id.is_not(None)
    if kind in (COUNT, AMOUNT):
        expr = columns.count if kind == COUNT else _rounded(columns.amount)
        holds = _compare(expr, spec.op, value, nullable=False)
        zero = Decimal(0) if kind == AMOUNT else 0
        # No feature row (a customer newer than the features): no history.
        return (
            or_(not_(present), holds) if _holds_for(spec.op, value, zero) else and_(present, holds)
        )
    if kind == AVERAGE:
        if spec.op == "is_null":
            return or_(not_(present), columns.amount.is_(None), columns.count == 0)
        if spec.op == "is_not_null":
            return and_(present, columns.count > 0)
        return and_(present, _average(columns.amount, columns.count, spec.op, value))
    column = columns.first if spec.measure == "first_date" else columns.last
    return _compare_day(column, spec.op, value, as_of, instant=True)


@dataclass(frozen=True)
class _Rows:
    """The history rows a behaviour condition aggregates, correlated on the customer."""

    source: Any
    conditions: tuple[Any, ...]
    count: Any
    amount: Any
    at: Any

    def exists(self, *more: Any) -> Exists:
        return exists().select_from(self.source).where(*self.conditions, *more).correlate(Customer)

    def scalar(self, expr: Any) -> Any:
        query = select(expr).select_from(self.source).where(*self.conditions)
        return query.correlate(Customer).scalar_subquery()


def _history_rows(spec: BehaviourSpec, ref: datetime) -> _Rows:
    where = spec.where
    if spec.of == "purchases":
        t = Transaction
        at: Any = t.occurred_at
        conditions: list[Any] = [t.customer_id == Customer.id, t.kind != "return"]
        source: Any = t.__table__
        count: Any = func.count()
        amount: Any = func.sum(t.total_amount)
        if where is not None:
            if where.type is not None:
                conditions.append(t.kind.in_(where.type))
            if where.channel is not None:
                conditions.append(t.channel.in_(where.channel))
            if where.store is not None:
                conditions.append(t.store_code.in_(where.store))
            if where.brand is not None:
                conditions.append(
                    t.brand_id.in_(select(Brand.id).where(Brand.code.in_(where.brand)))
                )
            if where.category is not None:
                line = TransactionLine
                source = t.__table__.join(line.__table__, line.transaction_id == t.id)
                conditions.append(line.category.in_(where.category))
                count = func.count(t.id.distinct())
                amount = func.sum(line.amount)
    else:
        i = Interaction
        at = i.occurred_at
        conditions = [i.customer_id == Customer.id]
        source = i.__table__
        count = func.count()
        amount = None
        if where is not None:
            if where.channel is not None:
                conditions.append(i.channel.in_(where.channel))
            if where.type is not None:
                conditions.append(i.type.in_(where.type))
            if where.campaign is not None:
                conditions.append(i.campaign_code.in_(where.campaign))
            if where.brand is not None:
                conditions.append(
                    i.brand_id.in_(select(Brand.id).where(Brand.code.in_(where.brand)))
                )
            if where.direction is not None:
                conditions.append(i.direction == where.direction)
        if where is None or (where.direction is None and where.type is None):
            conditions.append(i.direction != INTERNAL)  # decisions are not contacts
    window = spec.window
    if isinstance(window, LastDays):
        conditions += [at > ref - timedelta(days=window.last_days), at <= ref]
    elif isinstance(window, DateRange):
        if window.from_ is not None:
            conditions.append(at >= _midnight(date.fromisoformat(window.from_)))
        if window.to is not None:
            end = date.fromisoformat(window.to) + timedelta(days=1)
            conditions.append(at < _midnight(end))
        conditions.append(at <= ref)  # nothing dated after the reference time
    else:  # all time: everything dated up to the reference time
        conditions.append(at <= ref)
    return _Rows(source, tuple(conditions), count, amount, at)


def _from_history(spec: BehaviourSpec, kind: str, value: Any, ref: datetime) -> Predicate:
    rows = _history_rows(spec, ref)
    if kind == COUNT:
        return _count_from_history(rows, spec.op, value)
    if kind == AMOUNT:
        total = rows.scalar(_rounded(func.coalesce(rows.amount, 0)))
        return _compare(total, spec.op, value, nullable=False)
    if kind == AVERAGE:
        if spec.op == "is_null":
            return not_(rows.exists())
        if spec.op == "is_not_null":
            return rows.exists()
        amount = func.coalesce(rows.amount, 0)
        matches = case((_average(amount, rows.count, spec.op, value), 1), else_=0)
        matched: Predicate = rows.scalar(matches) == 1
        return matched
    return _date_from_history(rows, spec, value, ref)


def _count_from_history(rows: _Rows, op: str, value: Any) -> Predicate:
    """A count condition: EXISTS / NOT EXISTS when it only asks for "some" or "none" (the
    index finds the first row and stops), else a correlated count."""
    values = value if isinstance(value, tuple) else (value,)
    # The condition only changes value at the numbers it names: try each, its neighbours
    # and one past the largest.
    points = {1, max(values) + 1} | {n + d for n in values for d in (-1, 0, 1) if n + d >= 1}
    zero = _holds_for(op, value, 0)
    rest = {_holds_for(op, value, n) for n in points}
    if rest == {True}:
        return true() if zero else rows.exists()
    if rest == {False}:
        return not_(rows.exists()) if zero else false()
    return _compare(rows.scalar(rows.count), op, value, nullable=False)


def _date_from_history(rows: _Rows, spec: BehaviourSpec, value: Any, ref: datetime) -> Predicate:
    """first_date / last_date as EXISTS over the (customer_id, occurred_at) index: the last
    purchase is on or after X when some purchase is; before X when there are purchases and
    none on or after X."""
    some = rows.exists()
    if spec.op == "is_null":
        return not_(some)
    if spec.op == "is_not_null":
        return some
    low, high = _day_bounds(spec.op, value, ref, _midnight)
    if spec.op == "ne":
        return and_(some, not_(_extreme_within(rows, spec.measure, low, high)))
    return _extreme_within(rows, spec.measure, low, high)


def _extreme_within(rows: _Rows, measure: str, low: Any, high: Any) -> Predicate:
    at = rows.at
    inside = [
        c
        for c in (
            (at >= low) if low is not None else None,
            (at < high) if high is not None else None,
        )
        if c is not None
    ]
    if measure == "last_date":
        # the latest row is in [low, high): some row is, and none is at or after high
        if high is None:
            return rows.exists(*inside)
        return and_(rows.exists(*inside), not_(rows.exists(at >= high)))
    # the earliest row is in [low, high): some row is, and none is before low
    if low is None:
        return rows.exists(*inside)
    return and_(rows.exists(*inside), not_(rows.exists(at < low)))
