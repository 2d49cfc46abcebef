"""Campaign results: which purchases a campaign brought (attribution, last touch), and the
figures of one campaign: audience and exclusions, messages sent and what became of them, the
target group's attributed purchases against the control group's, uplift, cost and ROI.

Attribution (:func:`attribute`) writes ``campaign_attribution`` rows in one set-based
``INSERT ... SELECT`` (it is run after sends and after purchase imports, by the CLI or a
scheduler); everything else here only reads.

A purchase is a transaction of any kind but ``return`` (tickets and orders), as everywhere in
Tournesol (customers.view360, segments, scoring). A campaign of a brand counts that brand's
purchases and those without a brand; a campaign of the whole group (no brand) counts them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final, cast

from sqlalchemy import (
    ColumnElement,
    Interval,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, aliased

from tournesol.campaigns import rules
from tournesol.campaigns.models import (
    Campaign,
    CampaignAttribution,
    CampaignTarget,
    Outbox,
)
from tournesol.campaigns.service import PlanReport
from tournesol.db import Dialect, UtcDateTime
from tournesol.interactions.models import Transaction

# The outbox states of a message that reached its recipient (a bounce, a failure, a message
# still planned or in doubt did not).
REACHED_STATES: Final = ("sent", "delivered")
# The stages of a campaign's results, in order (see Results.funnel).
RESULT_STAGES: Final = (
    "audience", "eligible", "targeted", "sent", "delivered", "opened", "clicked", "purchasers"
)  # fmt: skip
ATTRIBUTION_COLUMNS: Final = (
    "campaign_id", "customer_id", "outbox_id", "transaction_id", "amount", "purchased_at",
    "contacted_at", "clicked", "created_at",
)  # fmt: skip


def _days_after(dialect: Dialect, later: Any, earlier: Any, days: Any) -> ColumnElement[bool]:
    """``later <= earlier + days`` (``days`` a whole number or an integer column), for two
    UtcDateTime columns. The one place this module depends on the database: PostgreSQL adds an
    interval; SQLite (which stores date-times as text) compares Julian days."""
    if dialect.name == "postgresql":
        zero: ColumnElement[Any] = literal_column("0")
        window = func.make_interval(zero, zero, zero, days, type_=Interval())
        return cast(ColumnElement[bool], later <= earlier + window)
    return cast(ColumnElement[bool], func.julianday(later) <= func.julianday(earlier) + days)


def is_purchase(brand_id: Any) -> list[ColumnElement[bool]]:
    """Conditions on Transaction for a purchase that counts for a campaign of ``brand_id``
    (a column or a value; None: the whole group)."""
    t = Transaction
    found: list[ColumnElement[bool]] = [t.kind != "return", t.occurred_at.is_not(None)]
    if brand_id is None:
        return found
    if isinstance(brand_id, int):
        found.append(or_(t.brand_id.is_(None), t.brand_id == brand_id))
    else:
        found.append(or_(brand_id.is_(None), t.brand_id.is_(None), t.brand_id == brand_id))
    return found


# --- attribution ---------------------------------------------------------------------------


def attribute(session: Session, *, now: datetime, campaign_ids: Sequence[int] | None = None) -> int:
    """Attribute to campaigns the purchases made since their messages went out; returns the
    number of purchases newly attributed.

    A purchase (any transaction but a return, made at or before ``now``) goes to the campaign
    whose message reached the customer last before it (outbox state ``sent`` or ``delivered``;
    its exposure is ``sent_at``, plus the campaign's ``postal_delay_days`` for a letter: its
    in-home date; strictly before the purchase) among those whose attribution window (the
    channel's days in ``campaign.attribution_windows``, else ``attribution_days``, after the
    exposure, inclusive) covers it and whose brand matches (see the module's docstring): last
    touch, clicked or not; ``clicked`` records
    whether a person clicked the message before the purchase (``human_clicked_at``: a link
    scanner's click does not count). One ``INSERT ... SELECT`` ranks the candidate messages
    of each purchase in SQL, so a million messages never come into memory.

    Idempotent: a purchase already attributed keeps its campaign, so running again adds only
    purchases made (or imported, or linked to their customer) since. With ``campaign_ids``,
    only purchases whose last touch is one of these campaigns are written (the last touch is
    still chosen among every campaign). Writes in the caller's transaction; never commits.
    """
    if campaign_ids is not None and not campaign_ids:
        return 0
    dialect = Dialect.of(session)
    o, c, t, a = Outbox, Campaign, Transaction, CampaignAttribution
    clicked = case(
        (
            and_(o.human_clicked_at.is_not(None), o.human_clicked_at <= t.occurred_at),
            literal(True),
        ),
        else_=literal(False),
    )
    delay = case((o.channel == "postal", c.postal_delay_days), else_=literal(0))
    days = case(
        *(
            (
                o.channel == ch,
                func.coalesce(c.attribution_windows[ch].as_integer(), c.attribution_days),
            )
            for ch in rules.CONTACT_CHANNELS
        ),
        else_=c.attribution_days,
    )
    exposed = dialect.day_number(o.sent_at) + delay
    rank = func.row_number().over(partition_by=t.id, order_by=(exposed.desc(), o.id.desc()))
    conditions: list[ColumnElement[bool]] = [
        o.state.in_(REACHED_STATES),
        o.sent_at.is_not(None),
        *is_purchase(c.brand_id),
        t.occurred_at > o.sent_at,
        ~_days_after(dialect, t.occurred_at, o.sent_at, delay),
        t.occurred_at <= now,
        _days_after(dialect, t.occurred_at, o.sent_at, delay + days),
        ~exists().where(a.transaction_id == t.id),
    ]
    if campaign_ids is not None:
        reached = aliased(Outbox)
        conditions.append(
            t.customer_id.in_(
                select(reached.customer_id).where(
                    reached.campaign_id.in_(list(campaign_ids)),
                    reached.state.in_(REACHED_STATES),
                )
            )
        )
    ranked = (
        select(
            o.campaign_id.label("campaign_id"),
            t.customer_id.label("customer_id"),
            o.id.label("outbox_id"),
            t.id.label("transaction_id"),
            t.total_amount.label("amount"),
            t.occurred_at.label("purchased_at"),
            o.sent_at.label("contacted_at"),
            clicked.label("clicked"),
            rank.label("rank"),
        )
        .select_from(o)
        .join(c, c.id == o.campaign_id)
        .join(t, t.customer_id == o.customer_id)
        .where(*conditions)
        .subquery("ranked")
    )
    r = ranked.c
    chosen = select(
        r.campaign_id, r.customer_id, r.outbox_id, r.transaction_id, r.amount, r.purchased_at,
        r.contacted_at, r.clicked, literal(now, UtcDateTime()),
    ).where(r.rank == 1)  # fmt: skip
    if campaign_ids is not None:
        chosen = chosen.where(r.campaign_id.in_(list(campaign_ids)))
    table = cast(Table, CampaignAttribution.__table__)
    # ON CONFLICT: a concurrent run may have attributed the same purchase meanwhile.
    stmt = dialect.insert_ignoring(table, ["transaction_id"]).from_select(
        list(ATTRIBUTION_COLUMNS), chosen
    )
    result = cast(
        CursorResult[Any], session.execute(stmt, execution_options={"preserve_rowcount": True})
    )
    return max(result.rowcount, 0)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupFigures:
    """One group's purchases: of ``size`` customers, ``purchasers`` bought at least once,
    ``purchases`` purchases in all, worth ``revenue`` (transaction totals)."""

    size: int
    purchasers: int
    purchases: int
    revenue: Decimal

    @property
    def rate(self) -> float | None:
        """The share of the group who bought (purchasers / size); None for an empty group."""
        return self.purchasers / self.size if self.size else None

    @property
    def revenue_per_member(self) -> Decimal | None:
        """Revenue divided by the group's size; None for an empty group."""
        return self.revenue / self.size if self.size else None


@dataclass(frozen=True)
class Exclusion:
    """Customers of the audience left out for one reason, with the reason in English."""

    reason: str
    count: int
    text: str


@dataclass
class Results:
    """The figures of one campaign at ``now``.

    Audience (``campaign_target``): ``targeted`` customers got a message planned, ``control``
    were held out (the control group), ``excluded`` counts the others by reason code
    (:data:`rules.REASON_TEXT` explains each one; see :meth:`exclusions`).

    Messages (outbox): ``planned`` counts the messages by channel; ``states`` by current
    state. ``sent`` were handed to the provider (or printed, or listed for the call center:
    ``sent_at`` set), per channel in ``sent_by_channel``; ``delivered`` confirmed delivered
    (``delivered_at``: SMS delivery reports); ``failed`` refused for good before leaving;
    ``bounced`` came back (state or ``bounced_at``); ``in_doubt`` may or may not have left (a
    dispatcher stopped mid-send: an operator decides); ``opened``, ``clicked``: messages a
    person opened, clicked at least once (``human_opened_at``, ``human_clicked_at``);
    ``machine_opened``, ``bot_clicked``: messages whose every open, click was a machine's
    (reporting.hygiene: privacy and image proxies, link scanners; they are kept apart and
    never count as engagement); ``unsubscribed``: messages with an unsubscribe.

    Purchases: ``target`` holds the purchases attributed to the campaign (by
    :func:`attribute`: last touch, within the window after the message) over the target
    group; ``clicked_purchases`` are those whose message was clicked first. ``control_group``
    holds the control group's purchases within the same window after the time each customer
    would have been contacted (``campaign_target.send_at``), computed here, not attributed.
    The comparison is conservative: target customers whose message did not leave count in the
    group with no attributed purchase, and a purchase that a later campaign's message claimed
    is not the campaign's.

    Money: ``cost`` is the fixed cost plus each channel's unit cost times the messages sent
    on it. ``window_ends_at``: when the attribution window of the last contact closes; until
    then the figures still grow.
    """

    campaign: Campaign
    now: datetime
    targeted: int = 0
    control: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    planned: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    sent_by_channel: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    bounced: int = 0
    in_doubt: int = 0
    opened: int = 0
    clicked: int = 0
    machine_opened: int = 0
    bot_clicked: int = 0
    unsubscribed: int = 0
    target: GroupFigures = GroupFigures(0, 0, 0, Decimal(0))
    control_group: GroupFigures = GroupFigures(0, 0, 0, Decimal(0))
    clicked_purchases: int = 0
    cost: Decimal = Decimal(0)
    window_ends_at: datetime | None = None

    @property
    def audience(self) -> int:
        """Customers of the segment when the campaign was planned."""
        return self.targeted + self.control + sum(self.excluded.values())

    @property
    def planned_total(self) -> int:
        """Messages planned in all (every outbox row of the campaign)."""
        return sum(self.planned.values())

    @property
    def uplift(self) -> float | None:
        """Target purchase rate minus control purchase rate, in points of share (0.02: two
        more buyers in a hundred); None without a control group."""
        target, control = self.target.rate, self.control_group.rate
        return None if target is None or control is None else target - control

    @property
    def relative_uplift(self) -> float | None:
        """The uplift over the control rate (0.25: a quarter more buyers than without the
        campaign); None without a control group or when nobody in it bought."""
        uplift, control = self.uplift, self.control_group.rate
        return None if uplift is None or not control else uplift / control

    @property
    def incremental_revenue(self) -> Decimal | None:
        """The revenue the campaign added: (revenue per target member - revenue per control
        member) x target size; None without a control group."""
        target = self.target.revenue_per_member
        control = self.control_group.revenue_per_member
        if target is None or control is None:
            return None
        return ((target - control) * self.target.size).quantize(Decimal("0.01"))

    @property
    def roi(self) -> float | None:
        """(incremental revenue - cost) / cost: 1.5 means each euro spent brought 2.5 back;
        None when nothing was spent or without a control group."""
        gain = self.incremental_revenue
        if gain is None or self.cost <= 0:
            return None
        return float((gain - self.cost) / self.cost)

    @property
    def window_open(self) -> bool:
        """Whether purchases may still be attributed (the last window is not closed)."""
        return self.window_ends_at is None or self.now < self.window_ends_at

    def exclusions(self) -> list[Exclusion]:
        """The exclusions by reason, the most frequent first, each with its English text."""
        return exclusions_of(self.excluded)

    def funnel(self) -> list[tuple[str, int]]:
        """The campaign from audience to purchase (:data:`RESULT_STAGES`): the audience, the
        eligible (target and control), the target group, messages sent, delivered, opened
        and clicked by a person, and the target customers with an attributed purchase."""
        values = (
            self.audience, self.targeted + self.control, self.targeted, self.sent,
            self.delivered, self.opened, self.clicked, self.target.purchasers,
        )  # fmt: skip
        return list(zip(RESULT_STAGES, values, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Every figure as JSON-ready values (amounts as text, to keep their cents)."""

        def group(g: GroupFigures) -> dict[str, Any]:
            per = g.revenue_per_member
            return {
                "size": g.size,
                "purchasers": g.purchasers,
                "purchases": g.purchases,
                "revenue": str(g.revenue),
                "rate": g.rate,
                "revenue_per_member": None if per is None else str(per.quantize(Decimal("0.01"))),
            }

        gain = self.incremental_revenue
        ends = self.window_ends_at
        c = self.campaign
        return {
            "campaign": c.code,
            "name": c.name,
            "status": c.status,
            "at": self.now.isoformat(),
            "audience": self.audience,
            "targeted": self.targeted,
            "control": self.control,
            "excluded": dict(sorted(self.excluded.items())),
            "planned": dict(sorted(self.planned.items())),
            "states": dict(sorted(self.states.items())),
            "sent": self.sent,
            "sent_by_channel": dict(sorted(self.sent_by_channel.items())),
            "delivered": self.delivered,
            "failed": self.failed,
            "bounced": self.bounced,
            "in_doubt": self.in_doubt,
            "opened": self.opened,
            "clicked": self.clicked,
            "machine_opened": self.machine_opened,
            "bot_clicked": self.bot_clicked,
            "unsubscribed": self.unsubscribed,
            "target_group": group(self.target),
            "control_group": group(self.control_group),
            "clicked_purchases": self.clicked_purchases,
            "uplift": self.uplift,
            "relative_uplift": self.relative_uplift,
            "incremental_revenue": None if gain is None else str(gain),
            "cost": str(self.cost),
            "roi": self.roi,
            "attribution_days": c.attribution_days,
            "window_ends_at": None if ends is None else ends.isoformat(),
            "funnel": dict(self.funnel()),
        }


def reason_text(reason: str) -> str:
    """The English explanation of a reason code (the code itself when unknown)."""
    try:
        return rules.REASON_TEXT[rules.Reason(reason)]
    except ValueError:
        return reason


def unit_cost(campaign: Campaign, channel: str) -> Decimal:
    """The campaign's cost of one message on ``channel`` (0 when none is set or it is not a
    number)."""
    raw = (campaign.unit_costs or {}).get(channel)
    if raw is None or isinstance(raw, bool):
        return Decimal(0)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return Decimal(0)
    return value if value.is_finite() else Decimal(0)


def results(session: Session, campaign: Campaign, *, now: datetime) -> Results:
    """The figures of ``campaign`` at ``now`` (see :class:`Results` for what each one means),
    from its targets, its outbox rows, its attributed purchases and the control group's
    purchases; a handful of grouped queries, whatever the campaign's size. Reads only. A
    campaign never planned has zeros everywhere."""
    found = Results(campaign=campaign, now=now)
    ct = CampaignTarget
    last_contact: datetime | None = None
    for group, reason, count, latest in session.execute(
        select(ct.group, ct.reason, func.count(), func.max(ct.send_at))
        .where(ct.campaign_id == campaign.id)
        .group_by(ct.group, ct.reason)
    ):
        if group == "target":
            found.targeted += count
        elif group == "control":
            found.control += count
        else:
            found.excluded[reason or "unknown"] += count
        if group != "excluded" and latest is not None:
            last_contact = latest if last_contact is None else max(last_contact, latest)
    _messages(session, campaign, found)
    found.cost = (
        Decimal(campaign.fixed_cost or 0)
        + sum(
            (unit_cost(campaign, ch) * n for ch, n in found.sent_by_channel.items()),
            Decimal(0),
        )
    ).quantize(Decimal("0.01"))
    a = CampaignAttribution
    purchasers, purchases, revenue, clicked = session.execute(
        select(
            func.count(func.distinct(a.customer_id)),
            func.count(),
            func.sum(a.amount),
            func.count().filter(a.clicked.is_(True)),
        ).where(a.campaign_id == campaign.id)
    ).one()
    found.target = GroupFigures(found.targeted, purchasers, purchases, _money(revenue))
    found.clicked_purchases = clicked
    found.control_group = _control_figures(session, campaign, size=found.control, now=now)
    last = _max_time(last_contact, _last_sent(session, campaign))
    if last is not None:
        found.window_ends_at = last + timedelta(days=campaign.attribution_days)
    return found


def _max_time(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _money(value: Any) -> Decimal:
    return Decimal(0) if value is None else Decimal(value).quantize(Decimal("0.01"))


def _messages(session: Session, campaign: Campaign, found: Results) -> None:
    """The outbox figures of ``found``: counts by channel and state, and of the *_at columns."""
    o = Outbox
    rows = session.execute(
        select(
            o.channel, o.state, func.count(), func.count(o.sent_at), func.count(o.delivered_at),
            func.count(o.human_opened_at), func.count(o.human_clicked_at),
            func.count(o.opened_at).filter(o.human_opened_at.is_(None)),
            func.count(o.clicked_at).filter(o.human_clicked_at.is_(None)),
            func.count(o.unsubscribed_at), func.count(o.bounced_at),
        )
        .where(o.campaign_id == campaign.id)
        .group_by(o.channel, o.state)
    )  # fmt: skip
    for (
        channel, state, count, sent, delivered, opened, clicked, machine_opened, bot_clicked,
        unsubscribed, bounced,
    ) in rows:  # fmt: skip
        found.planned[channel] += count
        found.states[state] += count
        found.sent += sent
        if sent:
            found.sent_by_channel[channel] += sent
        found.delivered += count if state == "delivered" else delivered
        found.opened += opened
        found.clicked += clicked
        found.machine_opened += machine_opened
        found.bot_clicked += bot_clicked
        found.unsubscribed += unsubscribed
        found.bounced += count if state == "bounced" else bounced
        if state == "failed":
            found.failed += count
        elif state == "in_doubt":
            found.in_doubt += count


def _last_sent(session: Session, campaign: Campaign) -> datetime | None:
    value: datetime | None = session.scalar(
        select(func.max(Outbox.sent_at)).where(Outbox.campaign_id == campaign.id)
    )
    return value


def _control_figures(
    session: Session, campaign: Campaign, *, size: int, now: datetime
) -> GroupFigures:
    """The control group's purchases within the attribution window after the time each of its
    customers would have been contacted."""
    if not size:
        return GroupFigures(0, 0, 0, Decimal(0))
    ct, t = CampaignTarget, Transaction
    dialect = Dialect.of(session)
    purchasers, purchases, revenue = session.execute(
        select(func.count(func.distinct(t.customer_id)), func.count(), func.sum(t.total_amount))
        .select_from(ct)
        .join(t, t.customer_id == ct.customer_id)
        .where(
            ct.campaign_id == campaign.id,
            ct.group == "control",
            ct.send_at.is_not(None),
            *is_purchase(campaign.brand_id),
            t.occurred_at > ct.send_at,
            t.occurred_at <= now,
            _days_after(dialect, t.occurred_at, ct.send_at, campaign.attribution_days),
        )
    ).one()
    return GroupFigures(size, purchasers, purchases, _money(revenue))


# --- lists and dry runs --------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """A campaign's messages at a glance: ``planned`` (every outbox row but cancelled ones)
    and ``sent`` (rows in state sent, delivered or bounced), by the outbox states alone."""

    planned: int = 0
    sent: int = 0


def summaries(session: Session, campaign_ids: Iterable[int]) -> dict[int, Summary]:
    """Message counts of these campaigns (one grouped query on the outbox's campaign/state
    index); campaigns without messages are left out."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    counts: dict[int, Counter[str]] = {}
    for campaign_id, state, count in session.execute(
        select(Outbox.campaign_id, Outbox.state, func.count())
        .where(Outbox.campaign_id.in_(ids))
        .group_by(Outbox.campaign_id, Outbox.state)
    ):
        if campaign_id is not None:
            counts.setdefault(campaign_id, Counter())[state] = count
    return {
        cid: Summary(
            planned=sum(n for s, n in states.items() if s != "cancelled"),
            sent=sum(states[s] for s in ("sent", "delivered", "bounced")),
        )
        for cid, states in counts.items()
    }


@dataclass(frozen=True)
class FunnelRow:
    """One stage of a plan's funnel: ``count`` customers still in after it, their ``share``
    of the audience (0 to 1) and how many the stage ``dropped``."""

    stage: str
    count: int
    share: float
    dropped: int


def funnel_rows(report: PlanReport) -> list[FunnelRow]:
    """The funnel of a plan (service.STAGES: audience, channel, language, contact window,
    control, pressure) as rows for a bar chart or a table.

    >>> r = PlanReport("c", True, funnel=[("audience", 10), ("channel", 6), ("control", 5)])
    >>> [(f.stage, f.share, f.dropped) for f in funnel_rows(r)]
    [('audience', 1.0, 0), ('channel', 0.6, 4), ('control', 0.5, 1)]
    """
    audience = report.funnel[0][1] if report.funnel else 0
    rows: list[FunnelRow] = []
    previous = audience
    for stage, count in report.funnel:
        share = count / audience if audience else 0.0
        rows.append(FunnelRow(stage, count, share, max(previous - count, 0)))
        previous = count
    return rows


def exclusions_of(excluded: Mapping[str, int]) -> list[Exclusion]:
    """Exclusion counts (a plan report's or a Results') by reason, the most frequent first."""
    return [
        Exclusion(reason, count, reason_text(reason))
        for reason, count in sorted(excluded.items(), key=lambda i: (-i[1], i[0]))
    ]
