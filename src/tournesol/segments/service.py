"""Segment operations over the store: count a definition, preview its first members, profile
it against the whole base, measure how saved segments overlap, save segments and refresh them
(who entered, who left, and when), and the rows of a CSV export.

Every question is asked as set-based SQL around the compiler's one statement
(``compiler.compile_definition``): no Python loop ever walks the customers. The service takes
the session and never commits; the CLI command or the request does.

    >>> result = count(session, {"all": [{"attribute": "gender", "op": "eq", "value": "F"}]})
    >>> result.size, result.path
    (1234, 'features')
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session, aliased

from tournesol.customers.models import Customer
from tournesol.db import utcnow
from tournesol.scoring import rules as scoring_rules
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore
from tournesol.segments import rules as segment_rules
from tournesol.segments.compiler import Compiled, DefinitionError, compile_definition
from tournesol.segments.models import Segment, SegmentMembership, SegmentSnapshot

CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
RFM_SCOPE = "all"
# Age bands of the profile: (label, lowest age of the band); the last band is open-ended.
AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("<25", 0),
    ("25-34", 25),
    ("35-44", 35),
    ("45-54", 45),
    ("55-64", 55),
    ("65-74", 65),
    ("75+", 75),
)
UNKNOWN = "unknown"
ABROAD = "abroad"
CHANNELS = ("email", "sms", "phone", "postal")
# Columns of an export: first those anybody allowed to export may see, then the personal ones
# (only for ``customers:read``). Score columns (``score_<model>``) follow the non-personal ones.
NON_PERSONAL_COLUMNS = (
    "customer_id",
    "customer_type",
    "gender",
    "age_band",
    "department",
    "region",
    "rfm_segment",
)
PERSONAL_COLUMNS = (
    "civility",
    "first_name",
    "last_name",
    "birth_date",
    "email",
    "phone_mobile",
    "phone_fixed",
    "address_line2",
    "address_line3",
    "address_line4",
    "address_line5",
    "address_line6",
    "postal_code",
    "city",
    "country",
    "language",
)


class SegmentError(ValueError):
    """A saved segment cannot be created, changed or found as asked; ``field`` names the input
    at fault (``code``, ``name`` or ``codes``)."""

    def __init__(self, message: str, *, field: str = "code") -> None:
        super().__init__(message)
        self.field = field


class SegmentTaken(SegmentError):
    """Another segment already has this code."""


# --- compiling -----------------------------------------------------------------------------


def features_as_of(session: Session) -> datetime | None:
    """When customer features were last computed (None: never), which the compiler needs to
    read them instead of the raw history."""
    value: datetime | None = session.scalar(select(func.max(CustomerFeature.computed_at)))
    return value


def resolver(session: Session) -> Callable[[str], Mapping[str, Any]]:
    """What ``{"segment": CODE}`` means: the saved segment's definition (archived ones too, so
    that a definition naming one keeps its meaning). Raises KeyError on an unknown code."""

    def resolve(code: str) -> Mapping[str, Any]:
        found: Mapping[str, Any] | None = session.scalar(
            select(Segment.definition).where(Segment.code == code)
        )
        if found is None:
            raise KeyError(code)
        return found

    return resolve


def compile(
    session: Session,
    definition: Mapping[str, Any],
    *,
    now: datetime | None = None,
    prefer_raw: bool = False,
) -> Compiled:
    """The definition compiled against this store (saved segments resolved, features read when
    they exist). Raises DefinitionError with the node's path."""
    return compile_definition(
        definition,
        now=now or utcnow(),
        features_as_of=features_as_of(session),
        resolve=resolver(session),
        prefer_raw=prefer_raw,
    )


def _ids(compiled: Compiled, name: str = "seg") -> Any:
    """The compiled statement as a subquery and its one column (the customer id)."""
    sub = compiled.query.subquery(name)
    return sub, next(iter(sub.c))


# --- count, preview ------------------------------------------------------------------------


@dataclass(frozen=True)
class CountResult:
    """How many customers a definition holds, which path the compiler took (features, raw
    history or both) and how long the count took."""

    size: int
    path: str
    duration_ms: int
    notes: tuple[str, ...] = ()


def count(
    session: Session, definition: Mapping[str, Any], *, now: datetime | None = None
) -> CountResult:
    """The size of the segment ``definition`` describes, now. Raises DefinitionError."""
    compiled = compile(session, definition, now=now)
    started = time.perf_counter()
    sub, _column = _ids(compiled)
    size = session.scalar(select(func.count()).select_from(sub)) or 0
    return CountResult(int(size), compiled.path, _ms(started), compiled.notes)


def preview(
    session: Session,
    definition: Mapping[str, Any],
    *,
    limit: int = 20,
    now: datetime | None = None,
) -> list[Customer]:
    """The first ``limit`` members (by id) of the segment, as golden records. Callers without
    ``customers:read`` must show only non-personal fields of them."""
    compiled = compile(session, definition, now=now)
    query = (
        select(Customer)
        .where(Customer.id.in_(compiled.query))
        .order_by(Customer.id)
        .limit(max(0, limit))
    )
    return list(session.scalars(query))


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


# --- profiling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    """One value of a dimension: how many members of the segment and of the whole active base
    hold it, and their shares of each."""

    key: str
    segment: int
    base: int
    segment_share: float
    base_share: float

    @property
    def index(self) -> float | None:
        """How over-represented the value is in the segment (100: as in the base)."""
        if not self.base_share:
            return None
        return 100.0 * self.segment_share / self.base_share


@dataclass(frozen=True)
class Distribution:
    """One dimension of a profile (age band, gender, region, RFM segment, reachability). For
    reachability the buckets overlap (one customer may be reachable on several channels), so
    shares do not sum to one."""

    name: str
    buckets: tuple[Bucket, ...]

    def bucket(self, key: str) -> Bucket | None:
        return next((b for b in self.buckets if b.key == key), None)


@dataclass(frozen=True)
class Profile:
    """Who is in a segment compared with the whole active base."""

    size: int
    base: int
    distributions: tuple[Distribution, ...]
    # Average purchase amount over the last 365 days (customer_feature.purchase_amount_365,
    # 0 for customers without features); None when features were never computed.
    average_value: float | None
    base_average_value: float | None
    features_as_of: datetime | None
    path: str
    duration_ms: int
    notes: tuple[str, ...] = ()

    def distribution(self, name: str) -> Distribution:
        return next(d for d in self.distributions if d.name == name)


def age_band(birth: Any, today: date) -> Any:
    """The age band of a birth date column as a SQL CASE on birth-date bounds (index-friendly
    and the same on every database)."""
    whens: list[tuple[ColumnElement[bool], str]] = [(birth.is_(None), UNKNOWN)]
    for (label, _low), (_next, high) in pairwise(AGE_BANDS):
        # younger than ``high`` years: born after the day ``high`` years ago
        whens.append((birth > segment_rules.years_before(today, high), label))
    return case(*whens, else_=AGE_BANDS[-1][0])


def age_band_of(birth: date | None, today: date) -> str:
    """The same band for one birth date (for rows already read)."""
    if birth is None:
        return UNKNOWN
    for (label, _low), (_next, high) in pairwise(AGE_BANDS):
        if birth > segment_rules.years_before(today, high):
            return label
    return AGE_BANDS[-1][0]


def _area(customer: Any) -> Any:
    """Enough of the postal code to know the department: its first 3 characters (Corsica and
    overseas need them) or the whole code for the two that break the rule (Saint-Barthélemy,
    Saint-Martin); ``unknown`` without a usable code, ``abroad`` outside France."""
    french = or_(customer.country.is_(None), customer.country == "FR")
    usable = and_(french, func.length(customer.postal_code) == 5)
    return case(
        (and_(usable, customer.postal_code.in_(_WHOLE_CODES)), customer.postal_code),
        (usable, func.substr(customer.postal_code, 1, 3)),
        (french, UNKNOWN),
        else_=ABROAD,
    )


_WHOLE_CODES = ("97133", "97150")


def department(postal_code: str | None, country: str | None) -> str | None:
    """The French department of a postal code (None abroad or without one)."""
    return segment_rules.department_of(postal_code, country=country)


def _region_of_area(area: str) -> str:
    """The region code of an area (``other`` for a French code in no region: overseas
    collectivities, codes no department has)."""
    if area in (UNKNOWN, ABROAD):
        return area
    code = area if len(area) == 5 else area + "00"
    return segment_rules.region_of_department(segment_rules.department_of(code)) or "other"


def _reachable(customer: Any) -> dict[str, ColumnElement[bool]]:
    return {
        "email": customer.email.is_not(None),
        "sms": customer.phone_mobile.is_not(None),
        "phone": or_(customer.phone_mobile.is_not(None), customer.phone_fixed.is_not(None)),
        "postal": and_(
            or_(customer.address_line4.is_not(None), customer.address_line5.is_not(None)),
            customer.address_line6.is_not(None),
        ),
    }


def profile(
    session: Session, definition: Mapping[str, Any], *, now: datetime | None = None
) -> Profile:
    """Distributions of age band, gender, region, RFM segment (scope ``all``) and channel
    reachability, and the average value, of the segment and of the whole active base.

    One statement: the active base left-joined to the segment's ids, grouped by (age band,
    gender, department area, RFM segment) with the sums of both populations; the marginals are
    added up here from the few thousand groups at most."""
    now = now or utcnow()
    compiled = compile(session, definition, now=now)
    as_of = features_as_of(session)
    started = time.perf_counter()
    _sub, member_id = _ids(compiled)
    member = case((member_id.is_not(None), 1), else_=0)
    band = age_band(Customer.birth_date, now.date())
    gender = case(
        (Customer.gender.in_(("M", "F")), Customer.gender),
        (Customer.gender.is_(None), UNKNOWN),
        else_="other",
    )
    area = _area(Customer)
    rfm = func.coalesce(CustomerRfm.segment, UNKNOWN)
    value = func.coalesce(CustomerFeature.purchase_amount_365, 0)
    reach = _reachable(Customer)
    # One row per active customer with its grouping key (the four values joined by "|"),
    # whether it is a member, its value and its reachability; then one GROUP BY on the key.
    # (PostgreSQL expects far more groups than the few thousand there are and sorts in
    # parallel rather than hashing; a planner fence to make it hash was not faster.)
    inside = member_id.is_not(None)
    per_customer = [
        (band + "|" + gender + "|" + area + "|" + rfm).label("key"),
        member.label("member"),
        value.label("value"),
        case((inside, value), else_=0).label("member_value"),
    ]
    for channel, test in reach.items():
        per_customer.append(case((test, 1), else_=0).label(f"r_{channel}"))
        per_customer.append(case((and_(test, inside), 1), else_=0).label(f"m_{channel}"))
    rows = (
        select(*per_customer)
        .select_from(Customer)
        .outerjoin(_sub, member_id == Customer.id)
        .outerjoin(
            CustomerRfm,
            and_(CustomerRfm.customer_id == Customer.id, CustomerRfm.scope == RFM_SCOPE),
        )
        .outerjoin(CustomerFeature, CustomerFeature.customer_id == Customer.id)
        .where(Customer.status == "active")
        .subquery("per_customer")
    )
    sums = [func.sum(c) for c in list(rows.c)[1:]]
    query = select(rows.c.key, func.count(), *sums).group_by(rows.c.key)
    seg_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    base_counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    size = base = 0
    value_sum = Decimal(0)
    seg_value_sum = Decimal(0)
    for row in session.execute(query):
        b, g, rest = row[0].split("|", 2)  # a junk postal code may hold a "|": split around it
        a, r = rest.rsplit("|", 1)
        n_base, n_seg, v_base, v_seg = row[1], row[2], row[3], row[4]
        n_base, n_seg = int(n_base), int(n_seg or 0)
        base += n_base
        size += n_seg
        value_sum += Decimal(v_base or 0)
        seg_value_sum += Decimal(v_seg or 0)
        for name, key in (("age_band", b), ("gender", g), ("region", _region_of_area(a))):
            base_counts[name][key] += n_base
            seg_counts[name][key] += n_seg
        base_counts["rfm_segment"][r] += n_base
        seg_counts["rfm_segment"][r] += n_seg
        reached = row[5:]
        for i, channel in enumerate(reach):
            base_counts["reachability"][channel] += int(reached[2 * i] or 0)
            seg_counts["reachability"][channel] += int(reached[2 * i + 1] or 0)
    orders: dict[str, Sequence[str]] = {
        "age_band": [label for label, _ in AGE_BANDS] + [UNKNOWN],
        "gender": ("F", "M", "other", UNKNOWN),
        "region": (),  # by size in the segment, then in the base
        "rfm_segment": [*scoring_rules.SEGMENT_CODES, UNKNOWN],
        "reachability": CHANNELS,
    }
    distributions = []
    for name, order in orders.items():
        keys = set(base_counts[name]) | set(seg_counts[name])
        if name == "reachability":
            keys = set(CHANNELS)
        ranked = [k for k in order if k in keys] + sorted(
            (k for k in keys if k not in order),
            key=lambda k: (-seg_counts[name][k], -base_counts[name][k], k),
        )
        if name in ("age_band", "gender", "rfm_segment"):
            # the unknown/other values last, whatever their size
            ranked = [k for k in ranked if k not in (UNKNOWN, "other", ABROAD)] + [
                k for k in ranked if k in ("other", ABROAD, UNKNOWN)
            ]
        elif name == "region":
            ranked = [k for k in ranked if k not in ("other", ABROAD, UNKNOWN)] + [
                k for k in ("other", ABROAD, UNKNOWN) if k in keys
            ]
        buckets = tuple(
            Bucket(
                key,
                seg_counts[name][key],
                base_counts[name][key],
                seg_counts[name][key] / size if size else 0.0,
                base_counts[name][key] / base if base else 0.0,
            )
            for key in ranked
        )
        distributions.append(Distribution(name, buckets))
    has_features = as_of is not None
    return Profile(
        size=size,
        base=base,
        distributions=tuple(distributions),
        average_value=float(seg_value_sum / size) if has_features and size else None,
        base_average_value=float(value_sum / base) if has_features and base else None,
        features_as_of=as_of,
        path=compiled.path,
        duration_ms=_ms(started),
        notes=compiled.notes,
    )


# --- overlap -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overlap:
    """How saved segments intersect: ``matrix[i][j]`` customers are in both ``codes[i]`` and
    ``codes[j]`` (the diagonal holds each segment's size); ``union`` are in at least one."""

    codes: tuple[str, ...]
    names: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]
    union: int
    duration_ms: int

    def share(self, i: int, j: int) -> float:
        """The share of segment ``i`` also in segment ``j``."""
        size = self.matrix[i][i]
        return self.matrix[i][j] / size if size else 0.0


def overlap(session: Session, codes: Sequence[str], *, now: datetime | None = None) -> Overlap:
    """The intersections of these saved segments, from their definitions (fresh, not their
    last refresh). One statement: each active customer in at least one segment, grouped by
    which of them hold it; pairwise counts are summed from those (at most 2^N) groups.
    Raises SegmentError for an unknown code, DefinitionError for a broken definition."""
    if not codes:
        raise SegmentError("name at least one segment", field="codes")
    if len(codes) > 8:
        raise SegmentError("compare at most 8 segments at once", field="codes")
    now = now or utcnow()
    segments = [_existing(session, code) for code in codes]
    flags: list[Any] = []
    joined: Any = select().select_from(Customer)
    for i, segment in enumerate(segments):
        compiled = compile(session, segment.definition, now=now)
        sub, member_id = _ids(compiled, f"seg{i}")
        joined = joined.outerjoin(sub, member_id == Customer.id)
        flags.append(member_id)
    columns = [case((f.is_not(None), 1), else_=0) for f in flags]
    started = time.perf_counter()
    query = (
        joined.add_columns(*columns, func.count())
        .where(Customer.status == "active", or_(*(f.is_not(None) for f in flags)))
        .group_by(*columns)
    )
    n = len(segments)
    matrix = [[0] * n for _ in range(n)]
    union = 0
    for row in session.execute(query):
        inside = [i for i in range(n) if row[i]]
        people = int(row[n])
        union += people
        for i in inside:
            for j in inside:
                matrix[i][j] += people
    return Overlap(
        codes=tuple(s.code for s in segments),
        names=tuple(s.name for s in segments),
        matrix=tuple(tuple(r) for r in matrix),
        union=union,
        duration_ms=_ms(started),
    )


# --- saved segments ------------------------------------------------------------------------


def get(session: Session, *, segment_id: int) -> Segment | None:
    return session.get(Segment, segment_id)


def get_by_code(session: Session, *, code: str) -> Segment | None:
    found: Segment | None = session.scalar(select(Segment).where(Segment.code == code))
    return found


def _existing(session: Session, code: str) -> Segment:
    found = get_by_code(session, code=code)
    if found is None:
        raise SegmentError(f"there is no segment {code!r}")
    return found


def list_segments(session: Session, *, include_archived: bool = False) -> list[Segment]:
    """Saved segments by name."""
    query = select(Segment).order_by(Segment.name, Segment.code)
    if not include_archived:
        query = query.where(Segment.archived.is_(False))
    return list(session.scalars(query))


def check_code(code: str) -> str:
    """A segment code as stored (lower case letters, digits, ``-`` and ``_``); raises
    SegmentError otherwise."""
    code = code.strip()
    if not CODE_PATTERN.match(code):
        raise SegmentError(
            f"code {code!r}: 1 to 80 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return code


def _check_definition(session: Session, definition: Mapping[str, Any], code: str) -> None:
    """Compile the definition as it would be saved (a definition naming its own segment, even
    through another one, is a cycle)."""
    resolve = resolver(session)

    def resolve_new(other: str) -> Mapping[str, Any]:
        return definition if other == code else resolve(other)

    compile_definition(
        definition,
        now=utcnow(),
        features_as_of=features_as_of(session),
        resolve=resolve_new,
    )


def create(
    session: Session,
    *,
    code: str,
    name: str,
    definition: Mapping[str, Any],
    description: str | None = None,
    brand_id: int | None = None,
    created_by_id: int | None = None,
) -> Segment:
    """A new saved segment (not computed yet: ``refresh`` it). Raises SegmentError on a bad or
    taken code or an empty name, DefinitionError on a bad definition."""
    code = check_code(code)
    name = name.strip()
    if not name:
        raise SegmentError("a segment needs a name", field="name")
    if get_by_code(session, code=code) is not None:
        raise SegmentTaken(f"the code {code!r} is taken by another segment")
    _check_definition(session, definition, code)
    segment = Segment(
        code=code,
        name=name[:200],
        description=(description or "").strip() or None,
        definition=dict(definition),
        brand_id=brand_id,
        created_by_id=created_by_id,
        archived=False,
    )
    session.add(segment)
    session.flush()
    return segment


def update(
    session: Session,
    *,
    segment: Segment,
    name: str | None = None,
    description: str | None = None,
    definition: Mapping[str, Any] | None = None,
) -> Segment:
    """Change a saved segment's name, description or definition (its members change at the
    next refresh). Raises SegmentError or DefinitionError."""
    if name is not None:
        if not name.strip():
            raise SegmentError("a segment needs a name", field="name")
        segment.name = name.strip()[:200]
    if description is not None:
        segment.description = description.strip() or None
    if definition is not None:
        _check_definition(session, definition, segment.code)
        segment.definition = dict(definition)
    segment.updated_at = utcnow()
    session.flush()
    return segment


def archive(session: Session, *, segment: Segment) -> Segment:
    """Hide a segment from lists and refresh-all; its history and memberships stay."""
    segment.archived = True
    segment.updated_at = utcnow()
    session.flush()
    return segment


def refresh(session: Session, segment: Segment, *, now: datetime | None = None) -> SegmentSnapshot:
    """Recompute a saved segment: members who no longer match leave (``left_at`` set), new
    ones enter (a new membership row), and a snapshot records the size, the counts and the
    path. Two statements, whatever the size: one UPDATE of the leavers, one INSERT ... SELECT
    of the newcomers; their row counts are the snapshot's ``left`` and ``entered``.

    Membership is tested with NOT EXISTS rather than NOT IN: PostgreSQL runs NOT IN over a
    subquery as a hashed subplan only while it fits in work_mem, and falls back to one scan of
    the subquery per row beyond that; NOT EXISTS becomes an anti-join at any size."""
    now = now or utcnow()
    # One refresh of a segment at a time (PostgreSQL: the segment's row is locked until the
    # caller commits; SQLite writes one transaction at a time anyway): two at once would both
    # see the same newcomers missing and insert them twice.
    session.execute(select(Segment.id).where(Segment.id == segment.id).with_for_update())
    compiled = compile(session, segment.definition, now=now)
    started = time.perf_counter()
    table: Table = SegmentMembership.__table__  # type: ignore[assignment]
    mc = table.c
    matches = compiled.query.subquery("matches")
    match_id = next(iter(matches.c))
    still_in = select(literal(1)).select_from(matches).where(match_id == mc.customer_id)
    leavers = (
        sql_update(table)
        .where(mc.segment_id == segment.id, mc.left_at.is_(None), ~exists(still_in))
        .values(left_at=now)
    )
    left = session.execute(leavers).rowcount  # type: ignore[attr-defined]
    inside = aliased(SegmentMembership)
    already = select(literal(1)).where(
        inside.segment_id == segment.id,
        inside.left_at.is_(None),
        inside.customer_id == match_id,
    )
    newcomers = select(literal(segment.id), match_id, literal(now, type_=mc.entered_at.type))
    newcomers = newcomers.select_from(matches).where(~exists(already))
    add = insert(table).from_select(["segment_id", "customer_id", "entered_at"], newcomers)
    # rowcount of an INSERT is kept only when asked for (SQLAlchemy keeps it for UPDATE)
    entered = session.execute(add.execution_options(preserve_rowcount=True)).rowcount  # type: ignore[attr-defined]
    size = (
        session.scalar(
            select(func.count())
            .select_from(table)
            .where(mc.segment_id == segment.id, mc.left_at.is_(None))
        )
        or 0
    )
    snapshot = SegmentSnapshot(
        segment_id=segment.id,
        computed_at=now,
        size=int(size),
        entered=int(entered),
        left=int(left),
        duration_ms=_ms(started),
        path=compiled.path,
    )
    session.add(snapshot)
    segment.last_size = int(size)
    segment.last_computed_at = now
    session.flush()
    return snapshot


def refresh_all(session: Session, *, now: datetime | None = None) -> list[SegmentSnapshot]:
    """Refresh every saved segment that is not archived, by code, at the same instant."""
    now = now or utcnow()
    segments = session.scalars(
        select(Segment).where(Segment.archived.is_(False)).order_by(Segment.code)
    ).all()
    return [refresh(session, segment, now=now) for segment in segments]


def snapshots(
    session: Session, *, segment_ids: Sequence[int], last: int = 20
) -> dict[int, list[SegmentSnapshot]]:
    """The ``last`` snapshots of each segment, oldest first (for trends and sparklines)."""
    if not segment_ids:
        return {}
    rank = (
        func.row_number()
        .over(partition_by=SegmentSnapshot.segment_id, order_by=SegmentSnapshot.id.desc())
        .label("rank")
    )
    ranked = (
        select(SegmentSnapshot.id, rank)
        .where(SegmentSnapshot.segment_id.in_(list(segment_ids)))
        .subquery()
    )
    query = (
        select(SegmentSnapshot)
        .join(ranked, ranked.c.id == SegmentSnapshot.id)
        .where(ranked.c.rank <= last)
        .order_by(SegmentSnapshot.segment_id, SegmentSnapshot.id)
    )
    found: dict[int, list[SegmentSnapshot]] = {sid: [] for sid in segment_ids}
    for snapshot in session.scalars(query):
        found[snapshot.segment_id].append(snapshot)
    return found


@dataclass(frozen=True)
class Membership:
    """A saved segment a customer is in now, and since when."""

    segment_id: int
    code: str
    name: str
    entered_at: datetime


def segments_of(session: Session, customer_id: int) -> list[Membership]:
    """The saved segments (not archived) a customer is a member of, as of their last refresh."""
    query = (
        select(Segment.id, Segment.code, Segment.name, SegmentMembership.entered_at)
        .join(SegmentMembership, SegmentMembership.segment_id == Segment.id)
        .where(
            SegmentMembership.customer_id == customer_id,
            SegmentMembership.left_at.is_(None),
            Segment.archived.is_(False),
        )
        .order_by(Segment.name)
    )
    return [Membership(*row) for row in session.execute(query)]


@dataclass(frozen=True)
class Movement:
    """A customer entering or leaving a segment at a refresh."""

    customer_id: int
    entered_at: datetime
    left_at: datetime | None


def memberships(
    session: Session, *, segment: Segment, customer_id: int | None = None
) -> list[Movement]:
    """The stays of customers in a segment (all of them, or one customer's), oldest first."""
    query = select(
        SegmentMembership.customer_id, SegmentMembership.entered_at, SegmentMembership.left_at
    ).where(SegmentMembership.segment_id == segment.id)
    if customer_id is not None:
        query = query.where(SegmentMembership.customer_id == customer_id)
    return [Movement(*row) for row in session.execute(query.order_by(SegmentMembership.id))]


# --- export --------------------------------------------------------------------------------


def score_models(session: Session) -> list[str]:
    """The names of the models customers have scores of, sorted."""
    return sorted(session.scalars(select(CustomerScore.model).distinct()))


def export_columns(session: Session, *, personal: bool) -> tuple[str, ...]:
    scores = tuple(f"score_{model}" for model in score_models(session))
    return NON_PERSONAL_COLUMNS + scores + (PERSONAL_COLUMNS if personal else ())


def export_rows(
    session: Session, segment: Segment, *, personal: bool, now: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The current members of a saved segment (as of its last refresh), one dict per customer
    in :func:`export_columns` order, streamed by id. Without ``personal``: the customer id and
    non-personal fields only (type, gender, age band, department, region, RFM segment,
    scores)."""
    today = (now or utcnow()).date()
    models = score_models(session)
    scores = {m: aliased(CustomerScore, name=f"score_{i}") for i, m in enumerate(models)}
    columns: list[Any] = [
        Customer.id,
        Customer.customer_type,
        Customer.gender,
        Customer.birth_date,
        Customer.postal_code,
        Customer.country,
        CustomerRfm.segment,
        *(alias.value for alias in scores.values()),
    ]
    if personal:
        columns += [getattr(Customer, c) for c in PERSONAL_COLUMNS if c != "birth_date"]
    query = (
        select(*columns)
        .select_from(SegmentMembership)
        .join(Customer, Customer.id == SegmentMembership.customer_id)
        .outerjoin(
            CustomerRfm,
            and_(CustomerRfm.customer_id == Customer.id, CustomerRfm.scope == RFM_SCOPE),
        )
        .where(SegmentMembership.segment_id == segment.id, SegmentMembership.left_at.is_(None))
        .order_by(Customer.id)
        .execution_options(yield_per=5_000)
    )
    for model, alias in scores.items():
        query = query.outerjoin(alias, and_(alias.customer_id == Customer.id, alias.model == model))
    personal_names = [c for c in PERSONAL_COLUMNS if c != "birth_date"]
    for row in session.execute(query):
        cid, ctype, gender, birth, postal, country, rfm = row[:7]
        dept = department(postal, country)
        out: dict[str, Any] = {
            "customer_id": cid,
            "customer_type": ctype,
            "gender": gender,
            "age_band": age_band_of(birth, today) if birth else None,
            "department": dept,
            "region": segment_rules.region_of_department(dept) if dept else None,
            "rfm_segment": rfm,
        }
        for i, model in enumerate(models):
            value = row[7 + i]
            out[f"score_{model}"] = None if value is None else round(float(value), 4)
        if personal:
            rest = row[7 + len(models) :]
            values = dict(zip(personal_names, rest, strict=True))
            for name in PERSONAL_COLUMNS:
                out[name] = birth if name == "birth_date" else values[name]
        yield out


__all__ = [
    "Bucket",
    "CountResult",
    "DefinitionError",
    "Distribution",
    "Membership",
    "Overlap",
    "Profile",
    "SegmentError",
    "archive",
    "count",
    "create",
    "export_rows",
    "get",
    "get_by_code",
    "list_segments",
    "overlap",
    "preview",
    "profile",
    "refresh",
    "refresh_all",
    "segments_of",
    "update",
]
