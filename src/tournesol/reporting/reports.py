"""The measurement reports, each a :class:`~tournesol.reporting.tables.Report`: campaign
scorecard, A/B variants, direct-mail matchback, channel comparison, cost and ROI, the global
holdout's programme impact by quarter, deliverability, the ad-hoc cube and the marketer's
dashboard. Aggregates come from SQL (:mod:`tournesol.reporting.measure`), statistics from
:mod:`tournesol.reporting.stats`; rows hold no personal data.

Three kinds of results are kept apart everywhere (docs/measurement.md): *attributed* (a
purchase counts for every campaign it follows: never summed across campaigns), *allocated*
(last touch: each purchase once) and *incremental* (treatment minus control, with intervals).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from statistics import NormalDist
from typing import Any, Final

from sqlalchemy import Float, and_, case, func, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign, CampaignAttribution, CampaignTarget, Outbox
from tournesol.campaigns.results import unit_cost
from tournesol.consent.models import ConsentState
from tournesol.customers.models import Brand, Customer
from tournesol.db import Dialect
from tournesol.interactions.models import Transaction
from tournesol.reporting import measure, stats
from tournesol.reporting.models import CampaignMeasure, HoldoutAssignment, HoldoutGroup
from tournesol.reporting.tables import Chart, Column, Kind, Report, columns, interval, note
from tournesol.segments.models import Segment

Z95: Final = NormalDist().inv_cdf(0.975)


class CubeRefused(ValueError):
    """The cube was asked for a figure that would mislead (the message says why and what to
    ask instead)."""


# --- campaign scorecard ----------------------------------------------------------------------


def _diff_cells(result: stats.Difference | None) -> tuple[Any, Any, Any]:
    if result is None:
        return None, None, None
    return result.estimate, interval(result.low, result.high), result.p_value


def scorecard(session: Session, campaign: Campaign, *, now: datetime) -> Report:
    """A campaign from targeted to revenue: the funnel (customers, messages, human opens and
    clicks, buyers), then attributed, allocated and incremental results side by side, cost,
    return on spend and ROI."""
    measured = measure.cells(session, campaign, now=now)
    steps = measured.funnel
    inc = measure.incremental(session, campaign, now=now, measured=measured)
    naive, last = measured.attributed, measured.allocated
    treated = inc.arms.get("treatment")
    control = inc.arms.get("control")
    assigned = (treated.assigned if treated else 0) + (control.assigned if control else 0)
    audience = steps.get("audience", 0)
    stages: list[tuple[str, int | None]] = [
        ("Audience (segment when planned)", audience),
        ("Assigned to an arm (treatment + control)", assigned),
        ("Treatment arm", treated.assigned if treated else 0),
        ("Messages sent", steps.get("sent", 0)),
        ("Customers reached (exposed)", naive.exposed),
        ("Opened (human)", steps.get("opened", 0)),
        ("Clicked (human)", steps.get("clicked", 0)),
        ("Buyers after a message (attributed)", naive.purchasers),
    ]
    rows = [
        {"stage": stage, "count": count, "share": (count / audience) if audience and count else 0}
        for stage, count in stages
    ]
    main = inc.main
    conversion = main.conversion if main else None
    revenue = main.best_revenue if main else None
    inc_revenue = main.incremental_revenue if main else None
    inc_conversions = main.incremental_conversions if main else None
    headline: list[tuple[str, Any, Any]] = [
        ("Attributed revenue (every purchase after a message)", naive.revenue, "money"),
        ("Allocated revenue (last touch)", last.revenue, "money"),
        ("Incremental revenue", None if inc_revenue is None else inc_revenue.estimate, "money"),
        ("Incremental revenue, 95% interval",
         None if inc_revenue is None else interval(inc_revenue.low, inc_revenue.high),
         "interval"),
        ("Incremental buyers", None if inc_conversions is None else inc_conversions.estimate,
         "count"),
        ("Treatment purchase rate", treated.conversion_rate if treated else None, "rate"),
        ("Control purchase rate", control.conversion_rate if control else None, "rate"),
        ("Uplift (points)", None if conversion is None else conversion.estimate, "points"),
        ("Uplift, 95% interval",
         None if conversion is None else interval(conversion.low, conversion.high), "interval"),
        ("Revenue per assigned customer, difference",
         None if revenue is None else revenue.estimate, "money"),
        ("Cost", inc.cost, "money"),
        ("Incremental return on spend", _estimate(inc.return_on_spend), "ratio"),
        ("ROI on incremental margin", _estimate(inc.roi), "ratio"),
    ]  # fmt: skip
    notes = list(inc.notes)
    if naive.purchasers and inc_conversions is not None:
        notes.append(
            note(
                "%(buyers)s buyers followed a message, but the control group shows that about "
                "%(caused)s of them bought because of it: the others would have bought anyway. "
                "Judge the campaign on the incremental figures.",
                buyers=naive.purchasers,
                caused=f"{max(inc_conversions.estimate, 0):.0f}",
            )
        )
    return Report(
        key="scorecard",
        title=f"Scorecard: {campaign.name}",
        columns=columns(
            ("stage", "Stage", "text"),
            ("count", "Customers or messages", "count"),
            ("share", "Share of the audience", "rate"),
        ),
        rows=rows,
        charts=[Chart("bar", "From audience to buyers", "stage", ("count",))],
        notes=notes,
        headline=headline,
        as_of=now,
    )


def _estimate(result: stats.ReturnOnSpend | None) -> float | None:
    return None if result is None else result.estimate


# --- A/B variants ----------------------------------------------------------------------------


def variants(session: Session, campaign: Campaign, *, now: datetime) -> Report:
    """Each variant against the control group: purchase rate, uplift with its interval, the
    p-value and its Benjamini-Hochberg adjustment (several variants compared at once), and
    revenue per assigned customer. Opens and clicks are never used to pick a winner."""
    inc = measure.incremental(session, campaign, now=now)
    control = inc.arms.get("control")
    rows: list[dict[str, Any]] = []
    comparisons = inc.variants
    if not comparisons and inc.main is not None:
        comparisons = [inc.main]
    adjusted = inc.variant_adjustment
    for i, c in enumerate(comparisons):
        conv = c.conversion
        rows.append(
            {
                "variant": c.name.removeprefix("variant "),
                "assigned": c.treatment.assigned,
                "buyers": c.treatment.converted,
                "rate": c.treatment.conversion_rate,
                "revenue_per_customer": c.treatment.revenue_mean,
                "uplift": None if conv is None else conv.estimate,
                "uplift_interval": None if conv is None else interval(conv.low, conv.high),
                "p": None if conv is None else conv.p_value,
                "p_adjusted": None if adjusted is None else adjusted.adjusted[i],
                "shown": None if conv is None else (
                    adjusted.rejected[i] if adjusted is not None else conv.shows_effect
                ),
            }
        )  # fmt: skip
    if control is not None:
        rows.append(
            {
                "variant": "control",
                "assigned": control.assigned,
                "buyers": control.converted,
                "rate": control.conversion_rate,
                "revenue_per_customer": control.revenue_mean,
            }
        )
    notes = [n for n in inc.notes if not n.startswith("revenue")]
    if adjusted is not None:
        notes.append(
            note(
                "%(count)s variants are compared with the control group at once: the adjusted "
                "p-values (Benjamini-Hochberg) decide which effects are shown.",
                count=len(comparisons),
            )
        )
    return Report(
        key="variants",
        title=f"A/B variants: {campaign.name}",
        columns=columns(
            ("variant", "Variant", "text"),
            ("assigned", "Customers assigned", "count"),
            ("buyers", "Buyers", "count"),
            ("rate", "Purchase rate", "rate"),
            ("revenue_per_customer", "Revenue per customer", "money"),
            ("uplift", "Uplift vs control", "points"),
            ("uplift_interval", "95% interval", "interval"),
            ("p", "p-value", "p"),
            (
                "p_adjusted",
                "Adjusted p-value",
                "p",
                "Benjamini-Hochberg: keeps false discoveries under 5 % when several variants are "
                "compared",
            ),
            ("shown", "Effect shown", "text"),
        ),
        rows=rows,
        charts=[Chart("bar", "Purchase rate by variant", "variant", ("rate",))],
        notes=notes,
        as_of=now,
    )


# --- direct-mail matchback -------------------------------------------------------------------


def matchback(session: Session, campaign: Campaign, *, now: datetime) -> Report:
    """Orders matched back to the mailing file by the golden customer (merges move a
    customer's mailing rows and purchases to the survivor), within the postal window after
    the in-home date, per key code: ``<campaign>-<variant>`` for the mailed cells,
    ``<campaign>-CTL`` for the control group, ``<campaign>-GHO`` for the global holdout."""
    windows = measure.windows_of(campaign)
    cells = measure.cells(session, campaign, now=now).arms(by=("channel", "variant"))
    first_day = session.scalar(
        select(func.min(CampaignTarget.send_at)).where(
            CampaignTarget.campaign_id == campaign.id, CampaignTarget.channel == "postal"
        )
    )
    in_home = None if first_day is None else first_day + timedelta(days=windows.postal_delay_days)
    suffix = {"control": "CTL", "holdout": "GHO"}
    control_rate: float | None = None
    rows: list[dict[str, Any]] = []
    for (arm, channel, variant), cell in sorted(
        cells.items(), key=lambda kv: (measure.ARMS.index(kv[0][0]), str(kv[0][2]))
    ):
        if channel != "postal":
            continue
        t = cell.totals()
        code = f"{campaign.code}-{suffix.get(arm) or (variant or 'A')}".upper()
        if arm == "control":
            control_rate = t.conversion_rate
        rows.append(
            {
                "key_code": code,
                "cell": arm,
                "mailed": t.assigned if arm == "treatment" else 0,
                "file": t.assigned,
                "in_home": None if in_home is None else in_home.date(),
                "buyers": t.converted,
                "orders": cell.purchases,
                "revenue": round(t.revenue_sum, 2),
                "response_rate": t.conversion_rate,
                "revenue_per_piece": t.revenue_mean,
            }
        )
    for row in rows:
        if control_rate is not None and row["cell"] == "treatment":
            row["incremental_response"] = row["response_rate"] - control_rate
    notes: list[str] = [
        note(
            "Window: %(days)s days after the in-home date (the print run plus %(delay)s days "
            "of delivery). An order counts whether or not the customer quoted the key code.",
            days=windows.days("postal"),
            delay=windows.postal_delay_days,
        )
    ]
    if not rows:
        notes.append("This campaign mailed no letters: nothing to match back.")
    return Report(
        key="matchback",
        title=f"Direct-mail matchback: {campaign.name}",
        columns=columns(
            ("key_code", "Key code", "text"),
            ("cell", "Cell", "text"),
            ("file", "Customers in the file", "count"),
            ("mailed", "Letters mailed", "count"),
            ("in_home", "In-home date", "date"),
            ("buyers", "Matched buyers", "count"),
            ("orders", "Matched orders", "count"),
            ("revenue", "Matched revenue", "money"),
            ("response_rate", "Response rate", "rate"),
            ("revenue_per_piece", "Revenue per customer", "money"),
            ("incremental_response", "Response over control", "points"),
        ),
        rows=rows,
        charts=[Chart("bar", "Response rate by key code", "key_code", ("response_rate",))],
        notes=notes,
        as_of=now,
    )


# --- campaigns over a period: costs and channels ---------------------------------------------


def campaigns_between(session: Session, since: datetime, until: datetime) -> list[Campaign]:
    """Campaigns with a customer assigned (a reference time) in ``[since, until)``: planned
    ones and triggered ones, their span read from their stored measurement when there is one
    (no scan of their targets), else from their targets."""
    found = []
    heads = {h.campaign_id: h for h in session.scalars(select(CampaignMeasure))}
    for campaign in session.scalars(
        select(Campaign)
        .where(or_(Campaign.planned_at.is_not(None), Campaign.kind == "triggered"))
        .order_by(Campaign.code)
    ):
        head = heads.get(campaign.id)
        if head is not None and head.first_at is not None and head.closes_at is not None:
            windows = measure.windows_of(campaign)
            first = head.first_at
            last = head.closes_at - timedelta(days=windows.postal_delay_days + windows.longest)
        else:
            span = measure.span(session, campaign.id)
            if span.first is None or span.last is None:
                continue
            first, last = span.first, span.last
        if first < until and last >= since:
            found.append(campaign)
    return found


@dataclass
class _Sum:
    """A sum of independent incremental estimates: the estimate adds, so does the variance
    (each interval's half-width / z, squared): a normal interval for the total."""

    estimate: float = 0.0
    variance: float = 0.0
    parts: int = 0

    def add(self, result: stats.Difference | None) -> None:
        if result is None:
            return
        z = NormalDist().inv_cdf((1 + result.level) / 2)
        half = (result.high - result.low) / 2
        self.estimate += result.estimate
        self.variance += (half / z) ** 2 if z else 0.0
        self.parts += 1

    def interval(self) -> tuple[float, float] | None:
        if not self.parts:
            return None
        half = Z95 * math.sqrt(self.variance)
        return (self.estimate - half, self.estimate + half)


def costs(session: Session, *, since: datetime, until: datetime, now: datetime) -> Report:
    """Per campaign of the period: cost, attributed revenue (its own: never added across
    campaigns), allocated revenue (last touch), incremental revenue with its interval,
    incremental return on spend and ROI on margin; a total row adds only what adds up."""
    rows: list[dict[str, Any]] = []
    total_cost, total_allocated, total_inc = Decimal(0), Decimal(0), _Sum()
    for campaign in campaigns_between(session, since, until):
        measured = measure.cells(session, campaign, now=now)
        inc = measure.incremental(session, campaign, now=now, measured=measured)
        naive, last = measured.attributed, measured.allocated
        gain = inc.main.incremental_revenue if inc.main else None
        total_cost += inc.cost
        total_allocated += last.revenue
        total_inc.add(gain)
        ros = inc.return_on_spend
        rows.append(
            {
                "campaign": campaign.code,
                "channels": ", ".join(campaign.channels or []),
                "cost": inc.cost,
                "attributed_revenue": naive.revenue,
                "allocated_revenue": last.revenue,
                "incremental_revenue": None if gain is None else gain.estimate,
                "incremental_interval": None if gain is None else interval(gain.low, gain.high),
                "return_on_spend": None if ros is None else ros.estimate,
                "return_on_spend_interval": None if ros is None else interval(ros.low, ros.high),
                "roi": _estimate(inc.roi),
            }
        )
    if rows:
        rows.append(
            {
                "campaign": "Total",
                "cost": total_cost,
                "allocated_revenue": total_allocated,
                "incremental_revenue": total_inc.estimate if total_inc.parts else None,
                "incremental_interval": total_inc.interval(),
                "return_on_spend": (
                    total_inc.estimate / float(total_cost)
                    if total_cost and total_inc.parts else None
                ),
            }
        )  # fmt: skip
    return Report(
        key="costs",
        title="Cost and ROI",
        columns=columns(
            ("campaign", "Campaign", "text"),
            ("channels", "Channels", "text"),
            ("cost", "Cost", "money"),
            (
                "attributed_revenue",
                "Attributed revenue",
                "money",
                "Purchases after the campaign's messages; a purchase counts for every campaign it "
                "follows, so this column is never added up",
            ),
            ("allocated_revenue", "Allocated revenue (last touch)", "money"),
            ("incremental_revenue", "Incremental revenue", "money"),
            ("incremental_interval", "95% interval", "interval"),
            ("return_on_spend", "Incremental return on spend", "ratio"),
            ("return_on_spend_interval", "95% interval", "interval"),
            ("roi", "ROI on margin", "ratio"),
        ),
        rows=rows,
        charts=[
            Chart(
                "bar", "Cost and incremental revenue", "campaign", ("cost", "incremental_revenue")
            ),
        ],
        notes=_period_notes(rows, since, until),
        as_of=now,
    )


def _period_notes(rows: Sequence[Any], since: datetime, until: datetime) -> list[str]:
    if rows:
        return [
            "The total adds incremental revenue across campaigns (independent experiments: "
            "their variances add) and allocated revenue (each purchase once); attributed "
            "revenue is not totalled."
        ]
    return [
        note(
            "No campaign reached customers between %(since)s and %(until)s.",
            since=f"{since:%Y-%m-%d}",
            until=f"{until:%Y-%m-%d}",
        )
    ]


def channels(session: Session, *, since: datetime, until: datetime, now: datetime) -> Report:
    """Channels compared over the period's campaigns: messages sent, cost, allocated revenue
    and incremental revenue (each campaign's treatment against its control group, cut by the
    channel each customer was assigned), with intervals and the return on spend."""
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"campaigns": set(), "sent": 0, "cost": Decimal(0), "inc": _Sum(),
                 "allocated": Decimal(0), "treated": 0}
    )  # fmt: skip
    for campaign in campaigns_between(session, since, until):
        cells = measure.cells(session, campaign, now=now).arms(by=("channel",))
        sent = _sent_by_channel(session, campaign)
        total_sent = sum(sent.values())
        for (arm, channel), cell in cells.items():
            if arm != "treatment" or not channel:
                continue
            entry = per[channel]
            entry["campaigns"].add(campaign.code)
            treated = cell.totals()
            entry["treated"] += treated.assigned
            control = cells.get(("control", channel))
            if control is not None:
                try:
                    diff = stats.revenue_difference(treated, control.totals())
                    entry["inc"].add(stats.incremental_totals(diff, treated.assigned))
                except stats.NotEnoughData:
                    pass
        for channel, count in sent.items():
            entry = per[channel]
            entry["sent"] += count
            share = Decimal(count) / total_sent if total_sent else Decimal(0)
            entry["cost"] += unit_cost(campaign, channel) * count + (
                Decimal(campaign.fixed_cost or 0) * share
            )
        for channel, revenue in _allocated_by_channel(session, campaign).items():
            per[channel]["allocated"] += revenue
    rows = []
    for channel, e in sorted(per.items()):
        inc: _Sum = e["inc"]
        cost = e["cost"].quantize(Decimal("0.01"))
        rows.append(
            {
                "channel": channel,
                "campaigns": len(e["campaigns"]),
                "treated": e["treated"],
                "sent": e["sent"],
                "cost": cost,
                "cost_per_message": (cost / e["sent"]).quantize(Decimal("0.0001"))
                if e["sent"] else None,
                "allocated_revenue": e["allocated"],
                "incremental_revenue": inc.estimate if inc.parts else None,
                "incremental_interval": inc.interval(),
                "return_on_spend": inc.estimate / float(cost) if cost and inc.parts else None,
            }
        )  # fmt: skip
    return Report(
        key="channels",
        title="Channels compared",
        columns=columns(
            ("channel", "Channel", "text"),
            ("campaigns", "Campaigns", "count"),
            ("treated", "Customers in treatment", "count"),
            ("sent", "Messages sent", "count"),
            (
                "cost",
                "Cost",
                "money",
                "Unit costs, plus each campaign's fixed cost shared by its messages",
            ),
            ("cost_per_message", "Cost per message", "money"),
            ("allocated_revenue", "Allocated revenue (last touch)", "money"),
            ("incremental_revenue", "Incremental revenue", "money"),
            ("incremental_interval", "95% interval", "interval"),
            ("return_on_spend", "Incremental return on spend", "ratio"),
        ),
        rows=rows,
        charts=[
            Chart(
                "bar",
                "Cost and incremental revenue by channel",
                "channel",
                ("cost", "incremental_revenue"),
            )
        ],
        notes=[
            "Incremental revenue per channel adds up each campaign's treatment minus control "
            "among the customers assigned that channel; allocated revenue counts each purchase "
            "once."
        ]
        if rows
        else _period_notes(rows, since, until),
        as_of=now,
    )


def _sent_by_channel(session: Session, campaign: Campaign) -> dict[str, int]:
    return {
        channel: count
        for channel, count in session.execute(
            select(Outbox.channel, func.count(Outbox.sent_at))
            .where(Outbox.campaign_id == campaign.id)
            .group_by(Outbox.channel)
        )
        if count
    }


def _allocated_by_channel(session: Session, campaign: Campaign) -> dict[str, Decimal]:
    a, o = CampaignAttribution, Outbox
    return {
        channel: Decimal(total or 0)
        for channel, total in session.execute(
            select(o.channel, func.sum(a.amount))
            .join(o, o.id == a.outbox_id)
            .where(a.campaign_id == campaign.id)
            .group_by(o.channel)
        )
    }


# --- programme impact: the global holdout ----------------------------------------------------


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _next_quarter(day: date) -> date:
    month = day.month + 3
    return date(day.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def programme(session: Session, *, now: datetime, quarters: int = 8) -> Report:
    """The whole programme's effect, quarter by quarter: customers of the global holdout
    (no marketing) against everyone else of the same version, purchase rate and revenue per
    customer within the quarter, with intervals, and the incremental revenue over the
    marketed base. A quarter still running is marked partial."""
    groups = list(session.scalars(select(HoldoutGroup).order_by(HoldoutGroup.version)))
    rows: list[dict[str, Any]] = []
    dialect = Dialect.of(session)
    start = _quarter_start(now.date())
    periods = []
    for _ in range(quarters):
        periods.append(start)
        start = _quarter_start(start - timedelta(days=1))
    for q in reversed(periods):
        lo, hi = _moment(q), min(_moment(_next_quarter(q)), now)
        group = next(
            (g for g in reversed(groups)
             if g.created_at < hi and (g.ended_at is None or g.ended_at > lo)),
            None,
        )  # fmt: skip
        if group is None:
            continue
        arms = _holdout_arms(session, dialect, group, lo, hi)
        held, rest = arms.get(True), arms.get(False)
        row: dict[str, Any] = {
            "quarter": f"{q.year}-Q{(q.month - 1) // 3 + 1}" + ("" if hi == _moment(
                _next_quarter(q)) else " (partial)"),
            "version": group.version,
            "holdout": held.assigned if held else 0,
            "marketed": rest.assigned if rest else 0,
            "holdout_rate": held.conversion_rate if held else None,
            "marketed_rate": rest.conversion_rate if rest else None,
            "holdout_revenue": held.revenue_mean if held else None,
            "marketed_revenue": rest.revenue_mean if rest else None,
        }  # fmt: skip
        if held is not None and rest is not None:
            try:
                conv = stats.conversion_difference(rest, held)
                row["uplift"], row["uplift_interval"] = conv.estimate, interval(conv.low, conv.high)
                rev = stats.revenue_difference(rest, held)
                total = stats.incremental_totals(rev, rest.assigned)
                row["revenue_difference"] = rev.estimate
                row["revenue_low"], row["revenue_high"] = rev.low, rev.high
                row["incremental_revenue"] = total.estimate
                row["incremental_interval"] = interval(total.low, total.high)
            except stats.NotEnoughData:
                pass
        rows.append(row)
    notes = [
        "The global holdout receives no marketing at all (transactional messages excepted): "
        "the difference with everyone else is what the whole marketing programme adds."
    ]
    if not groups:
        notes = [
            "No global holdout yet: create one with `tournesol holdout regenerate --share 0.05` "
            "then `tournesol holdout assign`."
        ]
    return Report(
        key="programme",
        title="Programme impact (global holdout)",
        columns=columns(
            ("quarter", "Quarter", "text"),
            ("version", "Holdout version", "count"),
            ("holdout", "Customers held out", "count"),
            ("marketed", "Customers marketed", "count"),
            ("holdout_rate", "Purchase rate, holdout", "rate"),
            ("marketed_rate", "Purchase rate, marketed", "rate"),
            ("uplift", "Uplift", "points"),
            ("uplift_interval", "95% interval", "interval"),
            ("holdout_revenue", "Revenue per customer, holdout", "money"),
            ("marketed_revenue", "Revenue per customer, marketed", "money"),
            ("revenue_difference", "Difference per customer", "money"),
            ("incremental_revenue", "Incremental revenue", "money"),
            ("incremental_interval", "95% interval", "interval"),
        ),
        rows=rows,
        charts=[
            Chart(
                "line",
                "Revenue per customer: marketed vs holdout",
                "quarter",
                ("marketed_revenue", "holdout_revenue"),
            ),
            Chart(
                "band",
                "Difference per customer with its 95% interval",
                "quarter",
                ("revenue_difference",),
                low="revenue_low",
                high="revenue_high",
            ),
        ],
        notes=notes,
        as_of=now,
    )


def _holdout_arms(
    session: Session, dialect: Dialect, group: HoldoutGroup, lo: datetime, hi: datetime
) -> dict[bool, stats.ArmTotals]:
    h, t = HoldoutAssignment, Transaction
    amount = func.coalesce(t.total_amount, 0)
    per = (
        select(
            h.held_out.label("held_out"),
            func.count(t.id).label("purchases"),
            func.coalesce(func.sum(amount), 0).label("revenue"),
        )
        .select_from(h)
        .outerjoin(
            t,
            and_(
                t.customer_id == h.customer_id,
                t.kind != "return",
                t.occurred_at >= lo,
                t.occurred_at < hi,
            ),
        )
        .where(h.group_id == group.id, h.assigned_at < hi)
        .group_by(h.customer_id, h.held_out)
        .subquery("per_customer")
    )
    revenue = sql_cast(per.c.revenue, Float)  # double precision: see measure.arm_cells
    found: dict[bool, stats.ArmTotals] = {}
    for held_out, n, x, s, q in session.execute(
        select(
            per.c.held_out,
            func.count(),
            func.sum(case((per.c.purchases > 0, 1), else_=0)),
            func.sum(revenue),
            func.sum(revenue * revenue),
        ).group_by(per.c.held_out)
    ):
        found[bool(held_out)] = stats.ArmTotals(int(n), int(x or 0), float(s or 0), float(q or 0))
    return found


# --- deliverability --------------------------------------------------------------------------


def deliverability(session: Session, *, since: datetime, until: datetime, now: datetime) -> Report:
    """Per campaign and channel: sent, delivered, bounced, complaints, unsubscribes, human and
    machine opens, human and suspected bot clicks (see reporting.hygiene)."""
    from tournesol.reporting import hygiene

    found = hygiene.deliverability(session, since=since, until=until)
    cols = columns(
        ("campaign", "Campaign", "text"),
        ("channel", "Channel", "text"),
        ("sent", "Sent", "count"),
        ("delivered", "Delivered", "count"),
        ("bounced_hard", "Hard bounces", "count"),
        ("bounced_soft", "Soft bounces", "count"),
        ("failed", "Failed", "count"),
        ("complaints", "Spam complaints", "count"),
        ("unsubscribed", "Unsubscribed", "count"),
        ("human_opens", "Opened by a person", "count"),
        ("machine_opens", "Opened by machines only", "count",
         "Mail privacy proxies and image prefetchers load the pixel of every message"),
        ("human_clicks", "Clicked by a person", "count"),
        ("bot_clicks", "Clicked by bots only", "count",
         "Link scanners follow every link within seconds of delivery"),
        ("human_open_rate", "Human open rate", "rate"),
        ("human_click_rate", "Human click rate", "rate"),
        ("click_to_open_rate", "Click-to-open", "rate"),
        ("hard_bounce_rate", "Hard bounce rate", "rate"),
        ("complaint_rate", "Complaint rate", "rate"),
    )  # fmt: skip
    rows = [row.to_dict() for row in found]
    for row in rows:
        row["campaign"] = f"{row['campaign']} ({row['channel']})"
    return Report(
        key="deliverability",
        title="Deliverability and engagement hygiene",
        columns=cols,
        rows=rows,
        charts=[
            Chart("bar", "Opens: people vs machines", "campaign", ("human_opens", "machine_opens")),
            Chart("bar", "Clicks: people vs bots", "campaign", ("human_clicks", "bot_clicks")),
        ],
        notes=[
            "Opens by mail privacy proxies and image prefetchers, and clicks by link scanners, "
            "are kept but shown apart: the human figures are the ones to read. Opens never "
            "decide a winner or an uplift."
        ],
        as_of=now,
    )


# --- the ad-hoc cube -------------------------------------------------------------------------


DIMENSIONS: Final[Mapping[str, str]] = {
    "campaign": "Campaign",
    "channel": "Channel",
    "segment": "Segment",
    "brand": "Brand",
    "store": "Store",
    "week": "Week",
    "arm": "Arm",
}
MEASURES: Final[Mapping[str, str]] = {
    "assigned": "Customers assigned",
    "buyers": "Buyers in the window",
    "purchase_rate": "Purchase rate",
    "revenue": "Revenue in the window",
    "revenue_per_customer": "Revenue per assigned customer",
    "attributed_revenue": "Attributed revenue",
    "allocated_revenue": "Allocated revenue (last touch)",
}


@dataclass(frozen=True)
class CubeQuery:
    """Dimensions to group by, measures to show, filters (dimension -> value)."""

    dimensions: tuple[str, ...] = ("campaign", "arm")
    measures: tuple[str, ...] = ("assigned", "buyers", "purchase_rate", "revenue")
    filters: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None


def check_cube(query: CubeQuery, campaigns: Sequence[Campaign]) -> None:
    """Refuse what would mislead: unknown names, attributed revenue summed across campaigns
    (a purchase counts for each campaign it follows), customers assigned split by store."""
    unknown = [d for d in query.dimensions if d not in DIMENSIONS] + [
        m for m in query.measures if m not in MEASURES
    ]
    unknown += [f for f in query.filters if f not in DIMENSIONS]
    if unknown:
        raise CubeRefused(f"unknown dimension or measure: {', '.join(unknown)}")
    if not query.measures:
        raise CubeRefused("choose at least one measure")
    if (
        "attributed_revenue" in query.measures
        and "campaign" not in query.dimensions
        and len(campaigns) > 1
    ):
        raise CubeRefused(
            "Attributed revenue cannot be added up across campaigns: a purchase made after "
            "two campaigns' messages is attributed to both, so the sum would count it twice. "
            "Add the campaign dimension, filter on one campaign, or use allocated revenue "
            "(last touch) or incremental figures."
        )
    per_customer = {"assigned", "purchase_rate", "revenue_per_customer", "buyers"}
    if "store" in query.dimensions and per_customer & set(query.measures):
        raise CubeRefused(
            "Customers are assigned to a campaign, not to a store: with the store dimension, "
            "choose revenue, attributed or allocated revenue (the store where the purchase "
            "was made)."
        )


@dataclass
class _Acc:
    assigned: int = 0
    buyers: int = 0
    revenue: float = 0.0
    attributed: float = 0.0
    allocated: float = 0.0


def cube(session: Session, query: CubeQuery, *, now: datetime) -> Report:
    """The ad-hoc report: the campaigns' assigned customers and their purchases in each
    campaign's window, grouped by any of :data:`DIMENSIONS`, with :data:`MEASURES`. Each
    campaign is aggregated in SQL at the grain (arm, channel, week[, store]); the requested
    grouping adds those up. Raises :class:`CubeRefused` for what would mislead."""
    since = query.since or now - timedelta(days=365)
    until = query.until or now + timedelta(days=1)
    chosen = campaigns_between(session, since, until)
    segments = _labels(session, Segment.name, {c.segment_id for c in chosen})
    brands = _labels(session, Brand.code, {c.brand_id for c in chosen})
    meta = {
        c.id: {"campaign": c.code, "segment": segments.get(c.segment_id, "-"),
               "brand": brands.get(c.brand_id, "all brands")}
        for c in chosen
    }  # fmt: skip
    filters = dict(query.filters)
    chosen = [
        c for c in chosen
        if all(meta[c.id][d] == v for d, v in filters.items() if d in meta[c.id])
    ]  # fmt: skip
    check_cube(query, chosen)
    by_store = "store" in query.dimensions or "store" in filters
    grouped: dict[tuple[Any, ...], _Acc] = defaultdict(_Acc)
    dims = query.dimensions
    for campaign in chosen:
        fine = _fine(session, campaign, now=now, by_store=by_store, query=query)
        for key, acc in fine.items():
            values = {**meta[campaign.id], "arm": key[0], "channel": key[1], "week": key[2],
                      "store": key[3]}  # fmt: skip
            if any(str(values[d]) != v for d, v in filters.items()):
                continue
            target = grouped[tuple(values[d] for d in dims)]
            target.assigned += acc.assigned
            target.buyers += acc.buyers
            target.revenue += acc.revenue
            target.attributed += acc.attributed
            target.allocated += acc.allocated
    rows: list[dict[str, Any]] = []
    for key, acc in sorted(grouped.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        row: dict[str, Any] = dict(zip(dims, key, strict=True))
        row.update(
            assigned=acc.assigned,
            buyers=acc.buyers,
            purchase_rate=acc.buyers / acc.assigned if acc.assigned else None,
            revenue=round(acc.revenue, 2),
            revenue_per_customer=acc.revenue / acc.assigned if acc.assigned else None,
            attributed_revenue=round(acc.attributed, 2),
            allocated_revenue=round(acc.allocated, 2),
        )
        rows.append(row)
    kinds: dict[str, Kind] = {"assigned": "count", "buyers": "count", "purchase_rate": "rate"}
    cols = [Column(d, DIMENSIONS[d], "text") for d in dims] + [
        Column(m, MEASURES[m], kinds.get(m, "money")) for m in query.measures
    ]
    charts = []
    if len(dims) == 1 and query.measures:
        charts.append(Chart("bar", MEASURES[query.measures[0]], dims[0], (query.measures[0],)))
    notes = []
    if "arm" not in dims and {"revenue", "buyers", "purchase_rate"} & set(query.measures):
        notes.append(
            "Treatment, control and holdout arms are added together: add the arm dimension "
            "to compare them."
        )
    return Report(
        key="cube",
        title="Ad-hoc report",
        columns=cols,
        rows=rows,
        charts=charts,
        notes=notes,
        as_of=now,
    )


def _labels(session: Session, label: Any, ids: Iterable[int | None]) -> dict[int | None, str]:
    """``label`` (a model's name or code column) of the rows with these ids."""
    model = label.class_
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return dict(session.execute(select(model.id, label).where(model.id.in_(wanted))).all())


def _fine(
    session: Session, campaign: Campaign, *, now: datetime, by_store: bool, query: CubeQuery
) -> dict[tuple[Any, ...], _Acc]:
    """One campaign at the grain (arm, channel, week, store or None)."""
    found: dict[tuple[Any, ...], _Acc] = defaultdict(_Acc)
    for (arm, channel, _variant, week, store), f in measure.cells(
        session, campaign, now=now
    ).cells.items():
        if bool(store) != by_store:
            continue
        acc = found[(arm, channel or None, week or None, store or None)]
        acc.assigned += f.assigned
        acc.buyers += f.converted
        acc.revenue += f.revenue_sum
        acc.attributed += f.attributed_revenue
        acc.allocated += f.allocated_revenue
    return found


# --- the marketer's dashboard ----------------------------------------------------------------


def dashboard(session: Session, *, now: datetime) -> list[Report]:
    """The home page of marketers and analysts: incremental revenue by month with its
    interval band, holdout vs marketed trend, cost vs incremental margin by channel, and the
    base's health (customers, reachable per channel, RFM segments) and data quality."""
    since = now - timedelta(days=365)
    return [
        _incremental_by_month(session, since=since, now=now),
        programme(session, now=now, quarters=4),
        _cost_vs_margin(session, since=now - timedelta(days=90), now=now),
        base_health(session, now=now),
        quality_trend(session, now=now),
    ]


def quality_trend(session: Session, *, now: datetime, weeks: int = 12) -> Report:
    """Data quality over the last weeks: rows imported and the share rejected (with a
    reason, kept in the rejects), week by week."""
    from tournesol.ingest.models import ImportBatch

    b = ImportBatch
    dialect = Dialect.of(session)
    week = measure.week_of(dialect, b.started_at)
    rows = [
        {"week": w, "batches": n, "rows": int(read or 0), "rejected": int(bad or 0),
         "reject_rate": (bad or 0) / read if read else None}
        for w, n, read, bad in session.execute(
            select(week, func.count(), func.sum(b.rows_read), func.sum(b.rejected))
            .where(b.started_at >= now - timedelta(weeks=weeks), b.started_at <= now)
            .group_by(week)
            .order_by(week)
        )
    ]  # fmt: skip
    return Report(
        key="quality-trend",
        title="Data quality: rows rejected by week",
        columns=columns(
            ("week", "Week", "text"),
            ("batches", "Imports", "count"),
            ("rows", "Rows read", "count"),
            ("rejected", "Rows rejected", "count"),
            ("reject_rate", "Reject rate", "rate"),
        ),
        rows=rows,
        charts=[Chart("line", "Reject rate by week", "week", ("reject_rate",))],
        notes=[] if rows else [note("No import in the last %(weeks)s weeks.", weeks=weeks)],
        as_of=now,
    )


def _incremental_by_month(session: Session, *, since: datetime, now: datetime) -> Report:
    months: dict[str, _Sum] = defaultdict(_Sum)
    costs_by_month: dict[str, Decimal] = defaultdict(Decimal)
    for campaign in campaigns_between(session, since, now + timedelta(days=1)):
        inc = measure.incremental(session, campaign, now=now)
        first = inc.measured.first_at if inc.measured else None
        if first is None:
            continue
        month = f"{first:%Y-%m}"
        months[month].add(inc.main.incremental_revenue if inc.main else None)
        costs_by_month[month] += inc.cost
    rows = []
    for month in sorted(months):
        s = months[month]
        band = s.interval()
        rows.append(
            {
                "month": month,
                "incremental_revenue": s.estimate if s.parts else None,
                "low": band[0] if band else None,
                "high": band[1] if band else None,
                "cost": costs_by_month[month],
            }
        )
    return Report(
        key="incremental-by-month",
        title="Incremental revenue by month of launch",
        columns=columns(
            ("month", "Month", "text"),
            ("incremental_revenue", "Incremental revenue", "money"),
            ("low", "Low (95 %)", "money"),
            ("high", "High (95 %)", "money"),
            ("cost", "Cost", "money"),
        ),
        rows=rows,
        charts=[
            Chart(
                "band",
                "Incremental revenue with its 95% interval",
                "month",
                ("incremental_revenue",),
                low="low",
                high="high",
            )
        ],
        notes=[] if rows else ["No campaign with a control group was measured this year."],
        as_of=now,
    )


def _cost_vs_margin(session: Session, *, since: datetime, now: datetime) -> Report:
    report = channels(session, since=since, until=now + timedelta(days=1), now=now)
    rows = [
        {"channel": r["channel"], "cost": r["cost"],
         "incremental_revenue": r.get("incremental_revenue")}
        for r in report.rows
    ]  # fmt: skip
    return Report(
        key="cost-vs-incremental",
        title="Cost vs incremental revenue by channel (90 days)",
        columns=columns(
            ("channel", "Channel", "text"),
            ("cost", "Cost", "money"),
            ("incremental_revenue", "Incremental revenue", "money"),
        ),
        rows=rows,
        charts=[
            Chart("bar", "Cost vs incremental revenue", "channel", ("cost", "incremental_revenue"))
        ],
        notes=report.notes,
        as_of=now,
    )


def base_health(session: Session, *, now: datetime) -> Report:
    """Customers, reachable per channel (a marketing consent granted now), RFM segments."""
    active = session.scalar(
        select(func.count()).select_from(Customer).where(Customer.status == "active")
    ) or 0  # fmt: skip
    rows: list[dict[str, Any]] = [{"figure": "Active customers", "value": active, "share": 1.0}]
    cs = ConsentState
    for channel, count in session.execute(
        select(cs.channel, func.count(func.distinct(cs.customer_id)))
        .where(cs.status == "granted", cs.purpose == "marketing")
        .group_by(cs.channel)
        .order_by(cs.channel)
    ):
        rows.append(
            {"figure": f"Reachable by {channel}", "value": count,
             "share": count / active if active else None}
        )  # fmt: skip
    from tournesol.scoring.models import CustomerRfm

    for segment, count in session.execute(
        select(CustomerRfm.segment, func.count())
        .where(CustomerRfm.scope == "all")
        .group_by(CustomerRfm.segment)
        .order_by(func.count().desc())
    ):
        rows.append(
            {"figure": f"RFM: {segment}", "value": count,
             "share": count / active if active else None}
        )  # fmt: skip
    return Report(
        key="base-health",
        title="Base health",
        columns=columns(
            ("figure", "Figure", "text"),
            ("value", "Customers", "count"),
            ("share", "Share of active customers", "rate"),
        ),
        rows=rows,
        charts=[Chart("bar", "Customers", "figure", ("value",))],
        as_of=now,
    )
