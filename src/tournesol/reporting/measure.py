"""What a campaign caused, three ways that are never mixed: attributed, allocated, incremental.

- **Attributed**: the purchases of the customers a message reached, made within the channel's
  window after their *exposure*, clicked or not. A purchase counts for every campaign it
  follows: attributed figures of two campaigns overlap and must never be added up.
- **Allocated**: each purchase given to one touch only, the last one before it
  (``campaigns.results.attribute`` writes them to ``campaign_attribution``); these add up
  across campaigns.
- **Incremental**: intention-to-treat, treatment arm minus the randomized control arm, over
  everyone *assigned*, with confidence intervals (:mod:`tournesol.reporting.stats`).

Exposure, per channel (:func:`exposure_day`): an e-mail when it left (``sent_at``; a bounced
e-mail reached nobody), an SMS when delivered (the delivery report), a letter on its in-home
date (the print run's date plus the campaign's ``postal_delay_days``), a call when the
customer was reached (the outcome file sets ``delivered_at``). The control group's members
have the time they *would* have been contacted (``campaign_target.send_at``), shifted by the
same postal delay.

Arms, from a plan's ``campaign_target`` rows (:data:`ARMS`): ``treatment`` is every customer
the plan assigned a message, *including* those whose message marketing pressure then refused
(``pressure_cap``, ``pressure_gap``, ``lost_arbitration``): the control group was drawn before
pressure arbitration, so leaving them out would compare unlike groups. ``control`` is the
campaign's control group; ``holdout`` the customers of the global holdout in its eligible
audience, reported apart (they are a control for the whole programme, drawn with another
share).

Every aggregate is computed in SQL: per arm (and cut), customers assigned, customers who
bought, and sums and sums of squares of revenue in the window and in the same length of time
before the reference time (the pre-period CUPED uses). One ``GROUP BY`` over the campaign's
assigned customers joined to their purchases in the campaign's span; statistics in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from tournesol.campaigns import rules
from tournesol.campaigns.models import Campaign, CampaignAttribution, CampaignTarget, Outbox
from tournesol.db import Dialect
from tournesol.interactions.models import Transaction
from tournesol.reporting import stats
from tournesol.reporting.tables import note

ARMS: Final = ("treatment", "control", "holdout")
# Exclusions decided after the control group was drawn: their customers stay in the treatment
# arm for an intention-to-treat comparison.
PRESSURE_REASONS: Final = (
    str(rules.Reason.PRESSURE_CAP),
    str(rules.Reason.PRESSURE_GAP),
    str(rules.Reason.LOST_ARBITRATION),
)
# At most this many customers' values are read for a bootstrap (small samples only).
BOOTSTRAP_MAX_CUSTOMERS: Final = 200_000
_EPOCH_JULIAN: Final = 2440587.5
# The smallest difference of purchase rates worth detecting, for the "underpowered" warning.
EFFECT_OF_INTEREST: Final = 0.01


class MeasureError(ValueError):
    """A figure that cannot be given as asked (with what to do instead)."""


# --- windows and times -----------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """A campaign's attribution window per channel (days) and its postal delay (days)."""

    default_days: int
    by_channel: Mapping[str, int]
    postal_delay_days: int

    def days(self, channel: str | None) -> int:
        return self.by_channel.get(channel or "", self.default_days)

    @property
    def longest(self) -> int:
        return max([self.default_days, *self.by_channel.values()])

    def delay(self, channel: str | None) -> int:
        return self.postal_delay_days if channel == "postal" else 0


def windows_of(campaign: Campaign) -> Windows:
    """The windows of ``campaign``: ``attribution_windows`` (channel -> whole days, 1 to 365)
    over ``attribution_days``; malformed entries are ignored (the editor refuses them)."""
    by_channel: dict[str, int] = {}
    for channel, days in (campaign.attribution_windows or {}).items():
        if isinstance(days, int) and not isinstance(days, bool) and 1 <= days <= 365:
            by_channel[str(channel)] = days
    return Windows(
        default_days=int(campaign.attribution_days or 30),
        by_channel=by_channel,
        postal_delay_days=int(campaign.postal_delay_days or 0),
    )


def _day(dialect: Dialect, column: Any) -> ColumnElement[Any]:
    """A date-time column as a number of days, comparable with :func:`_day_of`."""
    return cast(ColumnElement[Any], dialect.day_number(column))


def _day_of(dialect: Dialect, moment: datetime) -> float:
    days = moment.astimezone(UTC).timestamp() / 86400.0
    return days if dialect.name == "postgresql" else days + _EPOCH_JULIAN


def _by_channel(channel: Any, values: Mapping[str, float], default: float) -> Any:
    """``CASE channel WHEN ... THEN value ... ELSE default END`` (a literal when uniform)."""
    special = {c: v for c, v in values.items() if v != default}
    if not special:
        return literal(default)
    return case(*((channel == c, literal(v)) for c, v in sorted(special.items())), else_=default)


def exposure_day(dialect: Dialect, windows: Windows) -> ColumnElement[Any]:
    """When an outbox row's message reached its customer, in days (see the module docstring);
    NULL when it did not (bounced, failed, still planned, a webhook)."""
    o = Outbox
    reached = o.state.in_(("sent", "delivered"))
    return case(
        (and_(o.channel == "email", reached, o.bounced_at.is_(None)), _day(dialect, o.sent_at)),
        (and_(o.channel.in_(("sms", "phone")), o.delivered_at.is_not(None)),
         _day(dialect, o.delivered_at)),
        (and_(o.channel == "postal", reached),
         _day(dialect, o.sent_at) + float(windows.postal_delay_days)),
        else_=None,
    )  # fmt: skip


def _arm(ct: type[CampaignTarget]) -> ColumnElement[Any]:
    return case(
        (ct.group == "target", literal("treatment")),
        (and_(ct.group == "excluded", ct.reason.in_(PRESSURE_REASONS)), literal("treatment")),
        (and_(ct.group == "control", ct.reason == str(rules.Reason.GLOBAL_HOLDOUT)),
         literal("holdout")),
        (ct.group == "control", literal("control")),
        else_=None,
    )  # fmt: skip


def _purchases(campaign: Campaign) -> list[ColumnElement[bool]]:
    """What counts as a purchase for ``campaign``: campaigns.results' rule (any transaction
    but a return, of the campaign's brand or of none; all brands for a group campaign)."""
    from tournesol.campaigns.results import is_purchase

    return is_purchase(campaign.brand_id)


# --- intention-to-treat sums -----------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """The reference times of a campaign's assigned customers: first and last, or None."""

    first: datetime | None
    last: datetime | None


def span(session: Session, campaign_id: int) -> Span:
    """The first and last reference times of a campaign's assigned customers."""
    return _span(session, campaign_id)


def _span(session: Session, campaign_id: int) -> Span:
    ct = CampaignTarget
    first, last = session.execute(
        select(func.min(ct.send_at), func.max(ct.send_at)).where(
            ct.campaign_id == campaign_id, ct.send_at.is_not(None), _arm(ct).is_not(None)
        )
    ).one()
    return Span(first, last)


CUTS: Final = ("channel", "variant", "week")


def _cut_column(dialect: Dialect, name: str) -> Any:
    ct = CampaignTarget
    if name == "channel":
        return ct.channel
    if name == "variant":
        variant = getattr(ct, "variant", None)
        return literal(None) if variant is None else variant
    if name == "week":
        return _week(dialect, ct.send_at)
    raise MeasureError(f"unknown cut {name!r}: choose among {', '.join(CUTS)}")


def _assigned(session: Session, campaign: Campaign, windows: Windows, cuts: Sequence[str]) -> Any:
    """The campaign's assigned customers with their arm, reference day and window."""
    dialect = Dialect.of(session)
    ct = CampaignTarget
    delays = {"postal": float(windows.postal_delay_days)}
    days = {c: float(d) for c, d in windows.by_channel.items()}
    columns: list[Any] = [
        ct.customer_id.label("customer_id"),
        _arm(ct).label("arm"),
        (_day(dialect, ct.send_at) + _by_channel(ct.channel, delays, 0.0)).label("start"),
        _by_channel(ct.channel, days, float(windows.default_days)).label("days"),
    ]
    columns += [_cut_column(dialect, c).label(f"cut_{c}") for c in cuts]
    return (
        select(*columns)
        .where(ct.campaign_id == campaign.id, ct.send_at.is_not(None), _arm(ct).is_not(None))
        .cte("assigned")
    )


def _per_customer(
    session: Session,
    campaign: Campaign,
    *,
    now: datetime,
    cuts: Sequence[str] = (),
    span: Span | None = None,
) -> Select[Any] | None:
    """One row per assigned customer: arm, cuts, converted (0/1), revenue in the window
    (``post``) and in the pre-period (``pre``); None when nobody is assigned. ``span``: the
    campaign's, when the caller has read it already."""
    span = span or _span(session, campaign.id)
    if span.first is None or span.last is None:
        return None
    dialect = Dialect.of(session)
    windows = windows_of(campaign)
    a = _assigned(session, campaign, windows, cuts)
    t = Transaction
    longest = timedelta(days=windows.longest)
    lo = span.first - longest
    hi = min(now, span.last + timedelta(days=windows.postal_delay_days) + longest)
    day = _day(dialect, t.occurred_at)
    amount = func.coalesce(t.total_amount, 0)
    in_post = and_(day > a.c.start, day <= a.c.start + a.c.days, day <= _day_of(dialect, now))
    in_pre = and_(day > a.c.start - a.c.days, day <= a.c.start)
    cut_columns = [a.c[f"cut_{c}"] for c in cuts]
    return (
        select(
            a.c.customer_id,
            a.c.arm,
            *cut_columns,
            func.max(case((in_post, 1), else_=0)).label("converted"),
            func.count(case((in_post, t.id), else_=None)).label("purchases"),
            func.coalesce(func.sum(case((in_post, amount), else_=0)), 0).label("post"),
            func.coalesce(func.sum(case((in_pre, amount), else_=0)), 0).label("pre"),
        )
        .select_from(a)
        .outerjoin(
            t,
            and_(
                t.customer_id == a.c.customer_id,
                *_purchases(campaign),
                t.occurred_at > lo,
                t.occurred_at <= hi,
            ),
        )
        .group_by(a.c.customer_id, a.c.arm, *cut_columns)
    )


ArmKey = tuple[Any, ...]


def arm_cells(
    session: Session,
    campaign: Campaign,
    *,
    now: datetime,
    cuts: Sequence[str] = (),
    span: Span | None = None,
) -> dict[ArmKey, CellFigures]:
    """Per arm and cut values (key ``(arm, *cut values)``), what the statistics need, in one
    grouped query. ``cuts`` among :data:`CUTS` (the assigned channel, the variant, the week of
    the reference time). Arms nobody is assigned to are absent."""
    per = _per_customer(session, campaign, now=now, cuts=cuts, span=span)
    if per is None:
        return {}
    p = per.subquery("per_customer")
    # as double precision: the sums of squares must not take the amounts' two decimals
    post = sql_cast(p.c.post, Float)
    pre = sql_cast(p.c.pre, Float)
    cut_columns = [p.c[f"cut_{c}"] for c in cuts]
    rows = session.execute(
        select(
            p.c.arm,
            *cut_columns,
            func.count(),
            func.sum(p.c.converted),
            func.sum(post),
            func.sum(post * post),
            func.sum(pre),
            func.sum(pre * pre),
            func.sum(pre * post),
            func.sum(p.c.purchases),
        ).group_by(p.c.arm, *cut_columns)
    )
    found: dict[ArmKey, CellFigures] = {}
    for row in rows:
        arm, keys = row[0], tuple(row[1 : 1 + len(cuts)])
        n, x, s, q, ps, pq, xs, bought = row[1 + len(cuts) :]
        found[(arm, *keys)] = CellFigures(
            assigned=int(n),
            converted=int(x or 0),
            purchases=int(bought or 0),
            revenue_sum=float(s or 0),
            revenue_sumsq=float(q or 0),
            pre_sum=float(ps or 0),
            pre_sumsq=float(pq or 0),
            cross_sum=float(xs or 0),
        )
    return found


def arm_totals(
    session: Session, campaign: Campaign, *, now: datetime, cuts: Sequence[str] = ()
) -> dict[ArmKey, stats.ArmTotals]:
    """:func:`arm_cells` without the purchase counts: what the statistics read."""
    return {
        key: cell.totals() for key, cell in arm_cells(session, campaign, now=now, cuts=cuts).items()
    }


def arm_values(session: Session, campaign: Campaign, *, now: datetime) -> dict[str, list[float]]:
    """Every assigned customer's revenue in the window, by arm (for the bootstrap), in one
    read."""
    per = _per_customer(session, campaign, now=now)
    if per is None:
        return {}
    p = per.subquery("per_customer")
    found: dict[str, list[float]] = {}
    for arm, value in session.execute(select(p.c.arm, p.c.post).limit(BOOTSTRAP_MAX_CUSTOMERS + 1)):
        found.setdefault(arm, []).append(float(value))
    return found


# --- incremental ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One arm (``name``) against a control arm: the statistics of incremental impact.

    ``conversion``: difference of purchase rates (Newcombe); ``revenue``: of revenue per
    assigned customer (Welch, or a bootstrap when an arm has few buyers); ``cuped``: the same
    adjusted by the pre-period (None when it does not apply); ``incremental_conversions`` and
    ``incremental_revenue``: the differences times the customers of the arm. Each is None
    with a note when the data cannot support it.
    """

    name: str
    against: str
    treatment: stats.ArmTotals
    control: stats.ArmTotals
    conversion: stats.ConversionDifference | None
    revenue: stats.Difference | None
    cuped: stats.CupedDifference | None
    incremental_conversions: stats.Difference | None
    incremental_revenue: stats.Difference | None
    power: stats.PowerCheck | None
    notes: tuple[str, ...] = ()

    @property
    def best_revenue(self) -> stats.Difference | None:
        """The CUPED estimate when it narrowed the interval, else the plain one."""
        return _narrower(self.cuped, self.revenue)


def _narrower(
    cuped: stats.CupedDifference | None, plain: stats.Difference | None
) -> stats.Difference | None:
    if cuped is not None and plain is not None and cuped.high - cuped.low < plain.high - plain.low:
        return cuped
    return plain


def compare(
    name: str,
    treatment: stats.ArmTotals,
    control: stats.ArmTotals,
    *,
    against: str = "control",
    level: float = stats.DEFAULT_LEVEL,
    values: tuple[Sequence[float], Sequence[float]] | None = None,
    effect_of_interest: float = EFFECT_OF_INTEREST,
) -> Comparison:
    """The statistics of ``treatment`` against ``control`` (see :class:`Comparison`);
    ``values``, the raw revenues of both arms, allow the bootstrap for small samples. The
    comparison is *underpowered* when its interval is wider than ``effect_of_interest``, the
    smallest difference of purchase rates worth knowing (one point by default)."""
    notes: list[str] = []
    conversion: stats.ConversionDifference | None = None
    revenue: stats.Difference | None = None
    cuped: stats.CupedDifference | None = None
    power: stats.PowerCheck | None = None
    try:
        conversion = stats.conversion_difference(treatment, control, level)
    except stats.NotEnoughData as exc:
        notes.append(note("conversion: not enough data (%(why)s)", why=exc))
    try:
        if stats.needs_bootstrap(treatment, control) and values is not None:
            revenue = stats.bootstrap_difference(values[0], values[1], level)
        else:
            revenue = stats.revenue_difference(treatment, control, level)
            if stats.needs_bootstrap(treatment, control):
                notes.append("revenue: few buyers, the Welch interval is approximate")
    except stats.NotEnoughData as exc:
        notes.append(note("revenue: not enough data (%(why)s)", why=exc))
    if treatment.has_pre_period and control.has_pre_period:
        try:
            cuped = stats.cuped_difference(treatment, control, level)
        except stats.NotEnoughData:
            cuped = None
    if conversion is not None:
        try:
            power = stats.underpowered(conversion, effect=effect_of_interest)
        except stats.NotEnoughData:
            notes.append(
                "power: nobody (or everybody) in the control group bought, so the smallest "
                "detectable effect cannot be computed yet"
            )
        if power is not None and power.underpowered:
            notes.append(
                note(
                    "underpowered: the smallest effect this test could detect is %(mde)s "
                    "points; the interval is too wide to conclude",
                    mde=f"{power.mde * 100:.2f}",
                )
            )
    best = _narrower(cuped, revenue)
    return Comparison(
        name=name,
        against=against,
        treatment=treatment,
        control=control,
        conversion=conversion,
        revenue=revenue,
        cuped=cuped,
        incremental_conversions=(
            None if conversion is None
            else stats.incremental_totals(conversion, treatment.assigned)
        ),
        incremental_revenue=(
            None if best is None else stats.incremental_totals(best, treatment.assigned)
        ),
        power=power,
        notes=tuple(notes),
    )  # fmt: skip


@dataclass(frozen=True)
class Incremental:
    """What ``campaign`` caused (intention-to-treat): its arms, the treatment against the
    control group (``main``), each variant against it (``variants``, Benjamini-Hochberg
    adjusted when there are several), the sample-ratio check, cost and returns."""

    campaign: Campaign
    now: datetime
    arms: dict[str, stats.ArmTotals]
    main: Comparison | None
    variants: list[Comparison] = field(default_factory=list)
    variant_adjustment: stats.MultipleComparison | None = None
    srm: stats.SampleRatioCheck | None = None
    cost: Decimal = Decimal(0)
    return_on_spend: stats.ReturnOnSpend | None = None
    roi: stats.ReturnOnSpend | None = None
    window_ends_at: datetime | None = None
    notes: tuple[str, ...] = ()
    measured: Cells | None = None

    @property
    def conversion(self) -> stats.ConversionDifference | None:
        return None if self.main is None else self.main.conversion

    @property
    def revenue(self) -> stats.Difference | None:
        return None if self.main is None else self.main.best_revenue

    @property
    def window_open(self) -> bool:
        return self.window_ends_at is None or self.now < self.window_ends_at


def incremental(
    session: Session,
    campaign: Campaign,
    *,
    now: datetime,
    level: float = stats.DEFAULT_LEVEL,
    cost: Decimal | None = None,
    measured: Cells | None = None,
) -> Incremental:
    """The incremental impact of ``campaign`` at ``now`` (see :class:`Incremental`), from its
    cells (``measured``, else :func:`cells`: the stored ones when recent). ``cost`` defaults
    to the campaign's cost (fixed plus unit costs of the messages sent)."""
    measured = measured or cells(session, campaign, now=now)
    arms = {arm: figures.totals() for (arm,), figures in measured.arms().items()}
    by_variant: dict[str, CellFigures] = {}
    for (arm, variant), figures in measured.arms(by=("variant",)).items():
        if arm == "treatment":  # targets planned before variants existed read as A
            by_variant.setdefault(variant or "A", CellFigures()).add(figures)
    variants = {name: figures.totals() for name, figures in by_variant.items()}
    notes: list[str] = []
    if measured.stored:
        notes.append(
            note("figures as computed on %(at)s UTC", at=f"{measured.as_of:%Y-%m-%d %H:%M}")
        )
    spent = measured.cost if cost is None else cost
    treatment, control = arms.get("treatment"), arms.get("control")
    main: Comparison | None = None
    srm: stats.SampleRatioCheck | None = None
    if treatment is None or control is None:
        notes.append(
            "no control group: the campaign was planned without one, so its incremental "
            "effect cannot be measured"
            if treatment is not None
            else "nobody assigned yet: plan the campaign first"
        )
    else:
        values = None
        if stats.needs_bootstrap(treatment, control) and (
            treatment.assigned + control.assigned <= BOOTSTRAP_MAX_CUSTOMERS
        ):
            read = arm_values(session, campaign, now=now)
            values = (read.get("treatment", []), read.get("control", []))
        main = compare("treatment", treatment, control, level=level, values=values)
        share = float(campaign.control_share or 0)
        if 0 < share < 1:
            srm = stats.sample_ratio_mismatch(
                [treatment.assigned, control.assigned], [1 - share, share]
            )
            if srm.mismatch:
                notes.append(
                    note(
                        "sample ratio mismatch: the arms' sizes differ from the planned split "
                        "(p = %(p)s); the assignment may be broken, do not trust the "
                        "comparison before finding why",
                        p=f"{srm.p_value:.2g}",
                    )
                )
    compared: list[Comparison] = []
    adjustment: stats.MultipleComparison | None = None
    if control is not None and len(variants) > 1:
        compared = [
            compare(f"variant {name}", totals, control, level=level)
            for name, totals in sorted(variants.items())
        ]
        p_values = [c.conversion.p_value for c in compared if c.conversion is not None]
        if len(p_values) == len(compared):
            adjustment = stats.benjamini_hochberg(p_values, alpha=1 - level)
    return_on_spend = roi = None
    if main is not None and main.incremental_revenue is not None and spent > 0:
        return_on_spend = stats.incremental_return_on_spend(main.incremental_revenue, float(spent))
        if campaign.margin_rate:
            margin = _scaled(main.incremental_revenue, float(campaign.margin_rate))
            roi = stats.roi(margin, float(spent))
    ends = measured.closes_at
    if ends is not None and now < ends:
        notes.append(
            note(
                "the attribution window is still open until %(day)s: figures will grow",
                day=f"{ends:%Y-%m-%d}",
            )
        )
    return Incremental(
        campaign=campaign,
        now=now,
        arms=arms,
        main=main,
        variants=compared,
        variant_adjustment=adjustment,
        srm=srm,
        cost=spent,
        return_on_spend=return_on_spend,
        roi=roi,
        window_ends_at=ends,
        notes=tuple(notes) + (() if main is None else main.notes),
        measured=measured,
    )


FUNNEL: Final = ("audience", "sent", "delivered", "opened", "clicked")


def funnel(session: Session, campaign: Campaign) -> dict[str, int]:
    """The campaign's message funnel: its audience (every planned or decided customer), the
    messages sent, delivered (SMS reports, calls reached), opened and clicked by a person."""
    o, ct = Outbox, CampaignTarget
    audience = session.scalar(
        select(func.count()).select_from(ct).where(ct.campaign_id == campaign.id)
    )
    sent, delivered, opened, clicked = session.execute(
        select(
            func.count(o.sent_at),
            func.count(o.delivered_at),
            func.count(o.human_opened_at),
            func.count(o.human_clicked_at),
        ).where(o.campaign_id == campaign.id)
    ).one()
    values = (audience, sent, delivered, opened, clicked)
    return {name: int(v or 0) for name, v in zip(FUNNEL, values, strict=True)}


def campaign_cost(session: Session, campaign: Campaign) -> Decimal:
    """What ``campaign`` cost: its fixed cost plus each channel's unit cost times the messages
    that left on it (``sent_at`` set), as on the campaign's page."""
    from tournesol.campaigns.results import unit_cost

    total = Decimal(campaign.fixed_cost or 0)
    for channel, sent in session.execute(
        select(Outbox.channel, func.count(Outbox.sent_at))
        .where(Outbox.campaign_id == campaign.id)
        .group_by(Outbox.channel)
    ):
        total += unit_cost(campaign, channel) * sent
    return total.quantize(Decimal("0.01"))


def _scaled(result: stats.Difference, factor: float) -> stats.Difference:
    return stats.Difference(
        estimate=result.estimate * factor,
        low=result.low * factor,
        high=result.high * factor,
        level=result.level,
        p_value=result.p_value,
        method=f"{result.method} x margin rate",
    )


# --- attributed and allocated ----------------------------------------------------------------


@dataclass(frozen=True)
class Attributed:
    """Purchases after a message, within the channel's window after its exposure (clicked
    or not): ``purchasers`` customers, ``purchases``, ``revenue``; ``clicked_purchases``
    followed a click on the message. ``exposed``: customers a message reached."""

    exposed: int
    purchasers: int
    purchases: int
    revenue: Decimal
    clicked_purchases: int


def week_of(dialect: Dialect, column: Any) -> Any:
    """The ISO week of a date-time column as text (``2026-W09``; SQLite's %W week)."""
    return _week(dialect, column)


def _week(dialect: Dialect, column: Any) -> Any:
    if dialect.name == "postgresql":
        return func.to_char(column, 'IYYY-"W"IW')
    return func.strftime("%Y-W%W", column)


def _matches(session: Session, campaign: Campaign, *, now: datetime) -> Any:
    """The campaign's attributed purchases, one row each: customer, amount, whether a click
    came first, and the channel, week (of the message) and store of the match."""
    dialect = Dialect.of(session)
    windows = windows_of(campaign)
    o, t = Outbox, Transaction
    exposed = exposure_day(dialect, windows)
    days = _by_channel(
        o.channel, {c: float(d) for c, d in windows.by_channel.items()},
        float(windows.default_days),
    )  # fmt: skip
    touches = (
        select(
            o.customer_id.label("customer_id"),
            o.channel.label("channel"),
            _week(dialect, o.sent_at).label("week"),
            exposed.label("exposed"),
            days.label("days"),
            _day(dialect, o.human_clicked_at).label("clicked"),
        )
        .where(o.campaign_id == campaign.id, exposed.is_not(None))
        .cte("touches")
    )
    day = _day(dialect, t.occurred_at)
    after_click = case((and_(touches.c.clicked.is_not(None), touches.c.clicked <= day), 1), else_=0)
    matched = (
        select(
            t.id.label("transaction_id"),
            t.customer_id.label("customer_id"),
            func.max(t.total_amount).label("amount"),
            func.max(after_click).label("clicked"),
            func.min(touches.c.channel).label("channel"),
            func.min(touches.c.week).label("week"),
            func.min(t.store_code).label("store"),
        )
        .select_from(touches)
        .join(t, t.customer_id == touches.c.customer_id)
        .where(
            *_purchases(campaign),
            day > touches.c.exposed,
            day <= touches.c.exposed + touches.c.days,
            t.occurred_at <= now,
        )
        .group_by(t.id, t.customer_id)
        .subquery("matched")
    )
    return touches, matched


def attributed(session: Session, campaign: Campaign, *, now: datetime) -> Attributed:
    """The attributed figures of ``campaign`` (see the module docstring: a purchase counts
    for every campaign it follows; never add these up across campaigns)."""
    touches, matched = _matches(session, campaign, now=now)
    reached = session.scalar(select(func.count(func.distinct(touches.c.customer_id)))) or 0
    purchasers, purchases, revenue, clicked = session.execute(
        select(
            func.count(func.distinct(matched.c.customer_id)),
            func.count(),
            func.sum(matched.c.amount),
            func.coalesce(func.sum(matched.c.clicked), 0),
        )
    ).one()
    return Attributed(
        exposed=int(reached),
        purchasers=int(purchasers or 0),
        purchases=int(purchases or 0),
        revenue=_money(revenue),
        clicked_purchases=int(clicked or 0),
    )


def attributed_cells(
    session: Session, campaign: Campaign, *, now: datetime, by_store: bool
) -> list[tuple[str | None, str | None, str | None, int, float]]:
    """Attributed purchases and revenue by (channel, week of the message, store or None)."""
    _touches, m = _matches(session, campaign, now=now)
    store = m.c.store if by_store else literal(None)
    return [
        (channel, week, shop, int(count), float(total or 0))
        for channel, week, shop, count, total in session.execute(
            select(m.c.channel, m.c.week, store, func.count(), func.sum(m.c.amount)).group_by(
                m.c.channel, m.c.week, store
            )
        )
    ]


def allocated_cells(
    session: Session, campaign: Campaign, *, by_store: bool
) -> list[tuple[str | None, str | None, str | None, int, float]]:
    """Allocated (last-touch) purchases and revenue by (channel, week of the contact, store
    or None)."""
    dialect = Dialect.of(session)
    a, o, t = CampaignAttribution, Outbox, Transaction
    week = _week(dialect, a.contacted_at)
    store = t.store_code if by_store else literal(None)
    statement = (
        select(o.channel, week, store, func.count(), func.sum(a.amount))
        .select_from(a)
        .join(o, o.id == a.outbox_id)
        .where(a.campaign_id == campaign.id)
        .group_by(o.channel, week, store)
    )
    if by_store:
        statement = statement.join(t, t.id == a.transaction_id)
    return [(c, w, s_, int(n), float(v or 0)) for c, w, s_, n, v in session.execute(statement)]


def store_revenue(
    session: Session, campaign: Campaign, *, now: datetime, span: Span | None = None
) -> list[tuple[str, str | None, str | None, str | None, float]]:
    """Revenue in the window of every assigned customer, by (arm, channel, week, store)."""
    span = span or _span(session, campaign.id)
    if span.first is None or span.last is None:
        return []
    dialect = Dialect.of(session)
    windows = windows_of(campaign)
    a = _assigned(session, campaign, windows, ("channel", "week"))
    t = Transaction
    hi = min(now, span.last + timedelta(days=windows.postal_delay_days + windows.longest))
    day = _day(dialect, t.occurred_at)
    statement = (
        select(a.c.arm, a.c.cut_channel, a.c.cut_week, t.store_code, func.sum(t.total_amount))
        .select_from(a)
        .join(
            t,
            and_(
                t.customer_id == a.c.customer_id,
                *_purchases(campaign),
                t.occurred_at > span.first,
                t.occurred_at <= hi,
            ),
        )
        .where(day > a.c.start, day <= a.c.start + a.c.days)
        .group_by(a.c.arm, a.c.cut_channel, a.c.cut_week, t.store_code)
    )
    return [(arm, ch, wk, st, float(v or 0)) for arm, ch, wk, st, v in session.execute(statement)]


@dataclass(frozen=True)
class Allocated:
    """Purchases allocated to the campaign as their last touch (each sale to one campaign)."""

    purchasers: int
    purchases: int
    revenue: Decimal


def allocated(session: Session, campaign: Campaign) -> Allocated:
    """The campaign's last-touch purchases, as ``campaigns.results.attribute`` wrote them."""
    a = CampaignAttribution
    purchasers, purchases, revenue = session.execute(
        select(func.count(func.distinct(a.customer_id)), func.count(), func.sum(a.amount)).where(
            a.campaign_id == campaign.id
        )
    ).one()
    return Allocated(int(purchasers or 0), int(purchases or 0), _money(revenue))


def _money(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(value).quantize(Decimal("0.01"))


# --- stored cells ----------------------------------------------------------------------------

CellKey = tuple[str, str, str, str, str]  # arm, channel, variant, week, store ("" for none)
STALE_AFTER: Final = timedelta(days=1)


@dataclass
class CellFigures:
    """A cell's figures (see ``reporting.models.CampaignCell``)."""

    assigned: int = 0
    converted: int = 0
    purchases: int = 0
    revenue_sum: float = 0.0
    revenue_sumsq: float = 0.0
    pre_sum: float = 0.0
    pre_sumsq: float = 0.0
    cross_sum: float = 0.0
    attributed_purchases: int = 0
    attributed_revenue: float = 0.0
    allocated_purchases: int = 0
    allocated_revenue: float = 0.0

    def totals(self) -> stats.ArmTotals:
        return stats.ArmTotals(
            assigned=self.assigned,
            converted=self.converted,
            revenue_sum=self.revenue_sum,
            revenue_sumsq=self.revenue_sumsq,
            pre_sum=self.pre_sum,
            pre_sumsq=self.pre_sumsq,
            cross_sum=self.cross_sum,
        )

    def add(self, other: CellFigures) -> None:
        for name in CELL_FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))


CELL_FIGURES: Final = tuple(CellFigures.__dataclass_fields__)


@dataclass
class Cells:
    """A campaign's measurement at ``as_of``: cells by (arm, channel, variant, week, store),
    the campaign-wide attributed and allocated figures; ``stored``: read from the tables
    (computed at ``as_of`` by :func:`refresh`) rather than computed just now."""

    campaign_id: int
    as_of: datetime
    cells: dict[CellKey, CellFigures]
    attributed: Attributed
    allocated: Allocated
    first_at: datetime | None
    closes_at: datetime | None
    cost: Decimal
    funnel: dict[str, int]
    stored: bool = False

    def arms(self, *, by: Sequence[str] = ()) -> dict[tuple[str, ...], CellFigures]:
        """The cells of assigned customers (not the stores', nor the cells that only hold
        attributed or allocated purchases) added up by arm and the ``by`` fields (among
        channel, variant, week): key ``(arm, *values)``."""
        index = {"channel": 1, "variant": 2, "week": 3}
        found: dict[tuple[str, ...], CellFigures] = {}
        for key, figures in self.cells.items():
            if key[4] or not figures.assigned:  # a store's revenue, or purchases only
                continue
            out = (key[0], *(key[index[b]] for b in by))
            found.setdefault(out, CellFigures()).add(figures)
        return found


def compute(session: Session, campaign: Campaign, *, now: datetime) -> Cells:
    """A campaign's cells computed from its rows at ``now`` (the heavy queries: every
    assigned customer's purchases, every message's matches)."""
    cells: dict[CellKey, CellFigures] = {}

    def cell(*key: str | None) -> CellFigures:
        k = cast(CellKey, tuple(v or "" for v in key))
        return cells.setdefault(k, CellFigures())

    span = _span(session, campaign.id)
    for (arm, channel, variant, week), figures in arm_cells(
        session, campaign, now=now, cuts=("channel", "variant", "week"), span=span
    ).items():
        cell(arm, channel, variant, week, None).add(figures)
    for by_store in (False, True):
        for channel, week, store, n, revenue in attributed_cells(
            session, campaign, now=now, by_store=by_store
        ):
            f = cell("treatment", channel, None, week, (store or "-") if by_store else None)
            f.attributed_purchases += n
            f.attributed_revenue += revenue
        for channel, week, store, n, revenue in allocated_cells(
            session, campaign, by_store=by_store
        ):
            f = cell("treatment", channel, None, week, (store or "-") if by_store else None)
            f.allocated_purchases += n
            f.allocated_revenue += revenue
    for arm, channel, week, store, revenue in store_revenue(session, campaign, now=now, span=span):
        cell(arm, channel, None, week, store or "-").revenue_sum += revenue
    return Cells(
        campaign_id=campaign.id,
        as_of=now,
        cells=cells,
        attributed=attributed(session, campaign, now=now),
        allocated=allocated(session, campaign),
        first_at=span.first,
        closes_at=_closes(campaign, span),
        cost=campaign_cost(session, campaign),
        funnel=funnel(session, campaign),
    )


def refresh(session: Session, campaign: Campaign, *, now: datetime) -> Cells:
    """Compute a campaign's cells at ``now`` and store them (replacing the previous ones),
    in the caller's transaction; the reports read them (:func:`cells`)."""
    import time

    from tournesol.db import utcnow
    from tournesol.reporting.models import CampaignCell, CampaignMeasure

    started = time.perf_counter()
    found = compute(session, campaign, now=now)
    session.execute(delete(CampaignCell).where(CampaignCell.campaign_id == campaign.id))
    session.execute(delete(CampaignMeasure).where(CampaignMeasure.campaign_id == campaign.id))
    rows = [
        {"campaign_id": campaign.id, "arm": k[0], "channel": k[1], "variant": k[2],
         "week": k[3], "store": k[4][:40], **{n: getattr(f, n) for n in CELL_FIGURES}}
        for k, f in found.cells.items()
    ]  # fmt: skip
    if rows:
        session.execute(insert(CampaignCell), rows)
    a, b = found.attributed, found.allocated
    session.add(
        CampaignMeasure(
            campaign_id=campaign.id, as_of=now, refreshed_at=utcnow(),
            seconds=round(time.perf_counter() - started, 3), first_at=found.first_at,
            closes_at=found.closes_at, cost=float(found.cost), funnel=found.funnel,
            exposed=a.exposed,
            attributed_purchasers=a.purchasers, attributed_purchases=a.purchases,
            attributed_revenue=float(a.revenue), clicked_purchases=a.clicked_purchases,
            allocated_purchasers=b.purchasers, allocated_purchases=b.purchases,
            allocated_revenue=float(b.revenue),
        )
    )  # fmt: skip
    session.flush()
    return found


def head(session: Session, campaign_id: int) -> Any:
    """The ``campaign_measure`` row of a campaign (when and how fast it was measured)."""
    from tournesol.reporting.models import CampaignMeasure

    return session.get(CampaignMeasure, campaign_id)


def stored(session: Session, campaign_id: int) -> Cells | None:
    """The cells :func:`refresh` stored for a campaign, or None."""
    from tournesol.reporting.models import CampaignCell, CampaignMeasure

    head = session.get(CampaignMeasure, campaign_id)
    if head is None:
        return None
    cells: dict[CellKey, CellFigures] = {}
    for row in session.scalars(select(CampaignCell).where(CampaignCell.campaign_id == campaign_id)):
        key = (row.arm, row.channel, row.variant, row.week, row.store)
        cells[key] = CellFigures(**{n: getattr(row, n) for n in CELL_FIGURES})
    return Cells(
        campaign_id=campaign_id,
        as_of=head.as_of,
        cells=cells,
        attributed=Attributed(
            head.exposed, head.attributed_purchasers, head.attributed_purchases,
            _money(head.attributed_revenue), head.clicked_purchases,
        ),
        allocated=Allocated(
            head.allocated_purchasers, head.allocated_purchases, _money(head.allocated_revenue)
        ),
        first_at=head.first_at, closes_at=head.closes_at, cost=_money(head.cost),
        funnel=dict(head.funnel or {}), stored=True,
    )  # fmt: skip


def cells(session: Session, campaign: Campaign, *, now: datetime) -> Cells:
    """The campaign's cells for a report at ``now``: the stored ones when they are recent
    (computed less than :data:`STALE_AFTER` before ``now``, or after the last window closed),
    else computed now (without storing: a page view writes nothing)."""
    found = stored(session, campaign.id)
    if found is not None and found.as_of <= now and _fresh(found.as_of, found.closes_at, now):
        return found
    return compute(session, campaign, now=now)


def _fresh(as_of: datetime, closes_at: datetime | None, now: datetime) -> bool:
    return now - as_of < STALE_AFTER or (closes_at is not None and as_of >= closes_at)


def _closes(campaign: Campaign, span: Span) -> datetime | None:
    """When the last customer's window of ``campaign`` closes (None: nobody assigned)."""
    if span.last is None:
        return None
    windows = windows_of(campaign)
    return span.last + timedelta(days=windows.postal_delay_days + windows.longest)


def refresh_due(session: Session, *, now: datetime, limit: int = 20) -> list[str]:
    """Refresh the campaigns whose stored cells are missing or stale and whose window was
    still open when last computed (the worker's daily measurement step); returns their
    codes. Commits nothing."""
    from tournesol.reporting.models import CampaignMeasure

    done: list[str] = []
    planned = select(CampaignTarget.campaign_id).distinct()
    for campaign in session.scalars(
        select(Campaign).where(Campaign.id.in_(planned)).order_by(Campaign.id)
    ):
        head = session.get(CampaignMeasure, campaign.id)
        if head is not None and _fresh(head.as_of, head.closes_at, now):
            continue
        refresh(session, campaign, now=now)
        done.append(campaign.code)
        if len(done) >= limit:
            break
    return done
