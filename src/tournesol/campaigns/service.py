"""Campaigns: create them, and plan them.

Planning turns campaigns into messages in the outbox, for a set of campaigns that compete for
the same customers (one run), in one transaction:

1. the audience: each campaign's saved segment, evaluated now;
2. per customer and campaign channel, whether it may carry the message: the consent as it
   stands now under the consent policy (French defaults, ``campaigns.rules``), the
   suppression list, a contact point for the channel, the sources' usage restrictions; the
   channel is the customer's preferred one when allowed, else the first allowed in the
   campaign's fallback order;
3. a message in the customer's language (or the campaign's default);
4. a time inside the customer's contact days and hours (their preferences; for telephone
   prospecting without preferences, the legal hours) before the campaign ends;
5. the control group: a stable share of the eligible customers held out (with the time they
   would have been contacted), drawn by randomization unit (the household for a campaign
   that may write letters, else the shared e-mail address, else the customer:
   :func:`randomization_unit`); each target gets one of the campaign's A/B variants, drawn
   by the same unit;
6. marketing pressure: the contacts already in the outbox plus those of the competing
   campaigns, arbitrated by priority then expected value;
7. what is left: one outbox row per message. Every customer of the audience gets a
   ``campaign_target`` row (target, control or excluded with its reason) and an interaction
   on their timeline.

A dry run does everything but write, and reports the volumes after each step. Customers are
processed by chunks of ids, so memory stays flat whatever the audience.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    case,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from tournesol.campaigns import rules
from tournesol.campaigns.models import Campaign, CampaignMessage, CampaignTarget, Outbox
from tournesol.consent.models import ConsentState, Preference, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Brand, Customer, OrganisationContact
from tournesol.db import BigId, Dialect, UtcDateTime, chunked, utcnow
from tournesol.ingest.models import Source, SourceRecord
from tournesol.interactions.models import INTERNAL, Interaction, Transaction
from tournesol.reporting import holdouts
from tournesol.reporting.holdouts import Holdout
from tournesol.segments import service as segment_service
from tournesol.segments.models import Segment

CODE: Final = re.compile(r"[a-z0-9][a-z0-9_\-]{0,59}")
KINDS: Final = ("planned", "triggered")
CHUNK: Final = 20_000
# After a plan of at least this many customers, the statistics of the tables it filled are
# brought up to date in its transaction (PostgreSQL's ANALYZE; nothing on SQLite).
ANALYZE_AFTER: Final = 10_000
PLAN_STATISTICS: Final[Mapping[str, Sequence[str]]] = {
    "outbox": ("id", "state", "channel", "send_after", "campaign_id", "customer_id"),
    "campaign_target": ("campaign_id", "customer_id", "group"),
    "interaction": ("customer_id", "occurred_at", "direction", "type"),
}
# Outbox rows that count as contacts for the pressure (a failed or cancelled message never
# reached anyone).
CONTACT_STATES: Final = ("planned", "sending", "sent", "delivered", "bounced")
# The stages a customer can drop out at, in order (the funnel of a plan).
STAGES: Final = ("audience", "channel", "language", "contact_window", "control", "pressure")
SUPPRESSION_REASONS: Final[Mapping[str, rules.Reason]] = {
    "unsubscribe": rules.Reason.SUPPRESSED_UNSUBSCRIBE,
    "hard_bounce": rules.Reason.SUPPRESSED_HARD_BOUNCE,
    "complaint": rules.Reason.SUPPRESSED_COMPLAINT,
    "erased": rules.Reason.ERASED,
    "opposition": rules.Reason.SUPPRESSED_OPPOSITION,
}
# Source restrictions that keep a source's data out of marketing (all channels) or one.
NO_MARKETING: Final = frozenset({"no_marketing", "rented_list"})
# The time zone of a customer's country (customers have no zone of their own yet).
COUNTRY_ZONES: Final[Mapping[str, str]] = {
    "FR": "Europe/Paris", "BE": "Europe/Brussels", "CH": "Europe/Zurich", "LU": "Europe/Luxembourg",
    "MC": "Europe/Monaco", "DE": "Europe/Berlin", "ES": "Europe/Madrid", "IT": "Europe/Rome",
    "GB": "Europe/London", "PT": "Europe/Lisbon", "NL": "Europe/Amsterdam",
    "RE": "Indian/Reunion", "GP": "America/Guadeloupe", "MQ": "America/Martinique",
    "GF": "America/Cayenne", "YT": "Indian/Mayotte", "NC": "Pacific/Noumea",
    "PF": "Pacific/Tahiti", "CA": "America/Toronto", "US": "America/New_York",
}  # fmt: skip


class CampaignError(ValueError):
    """A campaign that cannot be created or planned as asked; the message says what to do."""


# --- policies ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policies:
    """The rules a plan applies: consent regimes, marketing pressure, how long after a purchase
    a customer counts as under contract (the contract exception for telephone; Tournesol has
    no contract table yet), and the time zone of customers whose country has none."""

    consent: rules.ConsentPolicy = rules.FRENCH_DEFAULTS
    pressure: rules.PressurePolicy = rules.DEFAULT_PRESSURE
    contract_days: int = 365
    default_timezone: str = "Europe/Paris"


def load_policies(path: Path | None) -> Policies:
    """The policies of a YAML file (``consent:``, ``pressure:``, ``contract_days:``,
    ``default_timezone:``; see docs/campaigns.md), the defaults for what it leaves out, or
    the defaults alone with no file. Raises CampaignError naming the file and the bad key."""
    if path is None:
        return Policies()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CampaignError(f"{path}: cannot read the campaign policies ({exc})") from None
    if not isinstance(data, dict):
        raise CampaignError(f"{path}: expected a mapping with consent, pressure, ...")
    unknown = set(data) - {"consent", "pressure", "contract_days", "default_timezone"}
    if unknown:
        raise CampaignError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    try:
        consent = (
            rules.ConsentPolicy.from_mapping(data["consent"])
            if "consent" in data
            else rules.FRENCH_DEFAULTS
        )
        pressure = (
            rules.PressurePolicy.from_mapping(data["pressure"])
            if "pressure" in data
            else rules.DEFAULT_PRESSURE
        )
    except ValueError as exc:
        raise CampaignError(f"{path}: {exc}") from None
    days = data.get("contract_days", 365)
    if not isinstance(days, int) or not 0 <= days <= 3660:
        raise CampaignError(f"{path}: contract_days must be a number of days (0 to 3660)")
    zone = str(data.get("default_timezone", "Europe/Paris"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CampaignError(f"{path}: default_timezone {zone!r} is not a time zone") from None
    return Policies(consent, pressure, days, zone)


# --- campaigns -----------------------------------------------------------------------------


def get_by_code(session: Session, *, code: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.code == code))


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.created_at.desc())))


def create(
    session: Session,
    *,
    code: str,
    name: str,
    segment: str | None,
    channels: Sequence[str],
    kind: str = "planned",
    brand: str | None = None,
    objective: str | None = None,
    purpose: str = "marketing",
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    priority: int = 50,
    expected_value: Decimal = Decimal(0),
    fixed_cost: Decimal = Decimal(0),
    unit_costs: Mapping[str, Any] | None = None,
    control_share: float = 0.1,
    attribution_days: int = 30,
    default_language: str = "fr",
    variant_shares: Mapping[str, Any] | None = None,
    attribution_windows: Mapping[str, Any] | None = None,
    postal_delay_days: int = 3,
    margin_rate: float | None = None,
    created_by: str | None = None,
) -> Campaign:
    """A new campaign. ``kind`` planned (the default): a draft on a saved segment, planned at
    once later; triggered: no segment, running at once, its messages sent one by one when a
    journey asks (:func:`admit`). ``variant_shares``: the share of the target group each A/B
    variant gets (``{"A": 0.5, "B": 0.5}``; none: equal shares). ``attribution_windows``:
    days per channel overriding ``attribution_days`` (``{"sms": 7}``); ``postal_delay_days``:
    from a letter's print run to the letterbox; ``margin_rate``: the gross margin on a euro
    of sales, for the ROI (docs/measurement.md). Raises CampaignError on a bad value."""
    if not CODE.fullmatch(code):
        raise CampaignError("code: lower-case letters, digits, _ or -, up to 60 characters")
    if get_by_code(session, code=code) is not None:
        raise CampaignError(f"code: a campaign {code!r} exists already")
    if kind not in KINDS:
        raise CampaignError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    seg = None
    if segment is not None:
        seg = segment_service.get_by_code(session, code=segment)
        if seg is None:
            raise CampaignError(f"segment: no saved segment {segment!r} (tournesol segments list)")
    elif kind == "planned":
        raise CampaignError("segment: a planned campaign needs a saved segment")
    order = _channels(channels)
    brand_id = None
    if brand is not None:
        brand_id = session.scalar(select(Brand.id).where(Brand.code == brand))
        if brand_id is None:
            raise CampaignError(f"brand: no brand {brand!r}")
    if not 0 <= control_share <= 0.5:
        raise CampaignError("control_share: between 0 and 0.5")
    if not 1 <= attribution_days <= 365:
        raise CampaignError("attribution_days: between 1 and 365")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise CampaignError("ends_at: after starts_at")
    shares = check_shares(variant_shares, kind=kind)
    windows = check_windows(attribution_windows)
    if isinstance(postal_delay_days, bool) or not 0 <= postal_delay_days <= 30:
        raise CampaignError("postal_delay_days: between 0 and 30")
    if margin_rate is not None and not 0 < margin_rate <= 1:
        raise CampaignError("margin_rate: a share above 0 and at most 1 (0.35 for 35 %)")
    now = utcnow()
    campaign = Campaign(
        code=code,
        name=name.strip() or code,
        brand_id=brand_id,
        objective=objective,
        segment_id=seg.id if seg is not None else None,
        channels=order,
        purpose=purpose,
        kind=kind,
        status="draft" if kind == "planned" else "running",
        starts_at=starts_at,
        ends_at=ends_at,
        priority=priority,
        expected_value=expected_value,
        fixed_cost=fixed_cost,
        unit_costs=dict(unit_costs or {}),
        control_share=control_share,
        control_salt=f"{code}-1",
        variant_shares=shares,
        attribution_days=attribution_days,
        attribution_windows=windows,
        postal_delay_days=postal_delay_days,
        margin_rate=margin_rate,
        default_language=default_language,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    return campaign


def check_windows(windows: Mapping[str, Any] | None) -> dict[str, int]:
    """Attribution windows per channel: a known channel -> whole days from 1 to 365."""
    found: dict[str, int] = {}
    for channel, days in (windows or {}).items():
        if channel not in rules.CONTACT_CHANNELS:
            raise CampaignError(f"attribution_windows: {channel!r} is not a channel")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
            raise CampaignError(f"attribution_windows.{channel}: whole days between 1 and 365")
        found[str(channel)] = days
    return found


def _channels(channels: Sequence[str]) -> list[str]:
    order: list[str] = []
    for channel in channels:
        value = channel.strip().lower()
        if value not in rules.CONTACT_CHANNELS:
            known = ", ".join(rules.CONTACT_CHANNELS)
            raise CampaignError(f"channels: {channel!r} is not one of {known}")
        if value not in order:
            order.append(value)
    if not order:
        raise CampaignError("channels: at least one, in fallback order")
    return order


def check_shares(shares: Mapping[str, Any] | None, *, kind: str = "planned") -> dict[str, float]:
    """The variant shares of a campaign, checked on their own (names, each above 0, adding
    up to 1; whether each variant has its messages is :func:`check_variants`'s), as stored.
    Raises CampaignError."""
    if not shares:
        return {}
    try:
        rules.variant_shares(list(shares), shares)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    if kind == "triggered" and len(shares) > 1:
        raise CampaignError(TRIGGERED_VARIANTS)
    return {str(name): float(value) for name, value in shares.items()}


TRIGGERED_VARIANTS: Final = (
    "variant_shares: a triggered campaign has one version of each message (A/B variants need"
    " a planned campaign)"
)


def check_variants(session: Session, *, campaign: Campaign) -> tuple[tuple[str, float], ...]:
    """The campaign's A/B variants with their shares, in name order (``(("A", 1.0),)`` for a
    campaign with one version of each message), checked against its messages: every
    variant has a message for each channel and language another one has, the shares name
    exactly the variants that have messages. Raises CampaignError saying what is missing."""
    m = CampaignMessage
    found = session.execute(
        select(m.channel, m.language, m.variant).where(m.campaign_id == campaign.id)
    )
    messages = [(channel, language, variant) for channel, language, variant in found]
    try:
        variants = rules.variants_of(messages, campaign.variant_shares)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    if campaign.kind == "triggered" and len(variants) > 1:
        raise CampaignError(TRIGGERED_VARIANTS)
    return variants


def set_message(
    session: Session,
    *,
    campaign: Campaign,
    channel: str,
    language: str,
    body_text: str,
    subject: str | None = None,
    body_html: str | None = None,
    variant: str = rules.DEFAULT_VARIANT,
) -> CampaignMessage:
    """Create or replace the campaign's message on a channel in a language, in one of its A/B
    variants (``A`` by default; a triggered campaign has only that one)."""
    if channel not in campaign.channels:
        raise CampaignError(f"channel: the campaign does not use {channel!r}")
    if channel == "email" and not (subject or "").strip():
        raise CampaignError("subject: an e-mail needs one")
    try:
        rules.check_variant_name(variant)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    if campaign.kind == "triggered" and variant != rules.DEFAULT_VARIANT:
        raise CampaignError(TRIGGERED_VARIANTS)
    message = session.scalar(
        select(CampaignMessage).where(
            CampaignMessage.campaign_id == campaign.id,
            CampaignMessage.channel == channel,
            CampaignMessage.language == language,
            CampaignMessage.variant == variant,
        )
    )
    if message is None:
        message = CampaignMessage(
            campaign_id=campaign.id, channel=channel, language=language, variant=variant
        )
        session.add(message)
    message.subject = subject
    message.body_text = body_text
    message.body_html = body_html
    session.flush()
    return message


# --- planning ------------------------------------------------------------------------------


@dataclass
class PlanReport:
    """What a plan did (or, dry, would do) for one campaign: the volume left after each
    stage, the exclusions by reason, the messages by channel."""

    code: str
    dry_run: bool
    funnel: list[tuple[str, int]] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)  # the messages by A/B variant
    control: int = 0
    planned: int = 0


@dataclass(slots=True)
class _Person:
    id: int
    audience: str
    email: str | None
    mobile: str | None
    fixed: str | None
    address: str | None
    language: str | None
    zone: str
    # The containers below stay None until the customer has something in them: most have
    # no window, suppression or recent contact, and a plan builds a million of these.
    facts: list[rules.ConsentFact] | None = None
    preferred: str | None = None
    windows: dict[str, tuple[str | None, str | None]] | None = None
    suppressed: dict[str, list[tuple[str, int | None]]] | None = None
    blocked: frozenset[str] = frozenset()  # channels its sources keep it out of ("*": all)
    bought: dict[int | None, datetime] | None = None  # brand -> last purchase
    history: list[rules.Contact] | None = None
    max_per_week: int | None = None  # the customer's own cap (preference center)
    held_out: bool = False  # in the global holdout (reporting.holdouts)
    # their randomization units (see randomization_unit), hashed when first needed
    household_unit: str | None = None
    email_unit: str | None = None


@dataclass(frozen=True, slots=True)
class _Spec:
    """What the rules read of a campaign, copied once per plan: each read of an ORM
    instance's attribute goes through SQLAlchemy's instrumentation, and a plan reads them
    for every customer."""

    id: int
    code: str
    name: str
    brand_id: int | None
    purpose: str
    channels: tuple[str, ...]
    priority: int
    expected_value: float
    default_language: str
    starts_at: datetime | None
    ends_at: datetime | None
    control_salt: str
    control_share: float
    # whether customers are drawn by household (the campaign may write letters; kept when
    # the gate narrows the channels to the one asked for)
    household: bool = False
    # the A/B variants and their shares, in name order (rules.variant_shares)
    variants: tuple[tuple[str, float], ...] = ((rules.DEFAULT_VARIANT, 1.0),)

    @classmethod
    def of(
        cls,
        campaign: Campaign,
        variants: tuple[tuple[str, float], ...] = ((rules.DEFAULT_VARIANT, 1.0),),
    ) -> _Spec:
        return cls(
            campaign.id, campaign.code, campaign.name, campaign.brand_id, campaign.purpose,
            tuple(campaign.channels), campaign.priority, float(campaign.expected_value),
            campaign.default_language, campaign.starts_at, campaign.ends_at,
            campaign.control_salt, float(campaign.control_share), "postal" in campaign.channels,
            variants,
        )  # fmt: skip


@dataclass
class _Run:
    campaign: Campaign
    spec: _Spec
    members: set[int]
    languages: dict[str, list[str]]
    report: PlanReport
    reached: list[int] = field(default_factory=lambda: [0] * len(STAGES))


@dataclass(slots=True)
class _Outcome:
    group: str
    channel: str | None = None
    language: str | None = None
    reason: str | None = None
    detail: str | None = None
    send_at: datetime | None = None
    address: str | None = None
    variant: str | None = None  # a target's A/B variant


def plan(
    session: Session,
    *,
    campaigns: Sequence[Campaign],
    now: datetime,
    policies: Policies,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[PlanReport]:
    """Plan these campaigns together (they compete for their customers' attention); returns
    one report per campaign. Written, unless ``dry_run``: campaign_target rows, interactions,
    outbox rows, and the campaigns become ``running``. Never commits. Raises CampaignError
    when a campaign cannot be planned (not a draft or scheduled, no segment, a channel
    without a message)."""
    if len({c.id for c in campaigns}) != len(campaigns):
        raise CampaignError("a campaign is listed twice")
    runs = [_prepare(session, c, dry_run=dry_run) for c in campaigns]
    everyone = sorted(set().union(*(r.members for r in runs)))
    dialect = Dialect.of(session)
    horizon = _horizon(policies)
    lookups = _lookups(session, runs, now=now)
    if not dry_run:
        _hold_sends(session)
    reader = None if dry_run else _Reader.start(session)
    if not dry_run:
        _lock(session, runs)
    stage = None if dry_run else _stage(session)
    parts = iter(chunked(everyone, min(CHUNK, dialect.max_params - 10)))

    def load(loader: Session, ids: Sequence[int] | None) -> dict[int, _Person]:
        if ids is None:
            return {}
        return _load(loader, ids, now=now, horizon=horizon, policies=policies, lookups=lookups)

    # On PostgreSQL, a chunk's inserts run in a thread of their own while this one decides
    # the next chunk: the database writes on one core while Python works on the other. The
    # connection is never used by two threads at once: without a reader (below), the next
    # chunk is read before the inserts start, and the thread is waited for before the
    # connection is used again. With a reader, chunks are read ahead on a second connection
    # that sees the same snapshot of the database as this transaction.
    pool = ThreadPoolExecutor(1) if stage is not None and dialect.name == "postgresql" else None
    pending: Future[None] | None = None
    done = 0
    try:
        if reader is not None:
            reader.run(parts, load)
            part, people = reader.next()
        else:
            part = next(parts, None)
            people = load(session, part)
        while part is not None:
            outcomes = _decide(runs, people, now=now, policies=policies)
            for run in runs:
                _count(run, outcomes.get(run.spec.id, {}))
            rows = _stage_rows(runs, outcomes) if stage is not None else []
            if pending is not None:  # the connection is free once the last inserts are done
                pending.result()
                pending = None
            if stage is not None:
                _copy_stage(session, stage, rows)
            done += len(part)
            if reader is None:
                part = next(parts, None)
                people = load(session, part)
            if stage is not None:
                args = (session.connection(), runs, stage, now)
                if pool is not None:
                    pending = pool.submit(_insert_staged, *args)
                else:
                    _insert_staged(*args)
            if reader is not None:
                part, people = reader.next()
            if progress is not None:
                progress(done, len(everyone))
        if pending is not None:
            pending.result()
            pending = None
    finally:
        if pending is not None:  # an error here: let the thread finish with the connection
            wait([pending])
        if pool is not None:
            pool.shutdown()
        if reader is not None:
            reader.close()
    if stage is not None and done >= ANALYZE_AFTER:
        # The dispatcher claims from the outbox right after the commit: with the statistics
        # of the empty table it was, PostgreSQL would nest its claim query over every row.
        dialect.refresh_statistics(session.connection(), PLAN_STATISTICS)
    for run in runs:
        run.report.funnel = list(zip(STAGES, run.reached, strict=True))
        if not dry_run:
            run.campaign.status = "running"
            run.campaign.planned_at = now
            run.campaign.updated_at = now
    session.flush()
    return [r.report for r in runs]


def _horizon(policies: Policies) -> timedelta:
    """How far back the pressure rules look: the longest cap or gap, a week at least (the
    customers' own weekly caps)."""
    horizon = max((p.period for p in policies.pressure.caps), default=timedelta(days=7))
    horizon = max(horizon, timedelta(days=7))
    if policies.pressure.min_gap is not None:
        horizon = max(horizon, policies.pressure.min_gap)
    return horizon


def _lock(session: Session, runs: Sequence[_Run]) -> None:
    """Lock the campaigns being planned until the commit (PostgreSQL; SQLite's writer lock
    covers it): the target and outbox rows reference them without a foreign key, so this
    is what keeps a campaign from being deleted, or planned twice at once, meanwhile. Taken
    after the reader's snapshot: a lock gives the transaction an id, and a snapshot can only
    be shared before."""
    ids = sorted(run.spec.id for run in runs)
    locked = set(
        session.scalars(
            select(Campaign.id).where(Campaign.id.in_(ids)).with_for_update(of=Campaign)
        )
    )
    missing = [run.spec.code for run in runs if run.spec.id not in locked]
    if missing:
        raise CampaignError(f"campaign {', '.join(missing)} was deleted while being planned")


# The advisory key that orders plans and the gate (PostgreSQL): a plan holds it alone for its
# whole transaction, every call of the gate shares it. A plan then sees every message the
# gate has queued before it began, and the gate, every message of a plan that committed.
SENDS_LOCK: Final = "campaign-sends"
# How long the gate defers a message while a plan runs (it then tries again), and why.
PLAN_WAIT: Final = timedelta(minutes=1)
PLAN_RUNNING: Final = "campaign_plan_running"


def _hold_sends(session: Session) -> None:
    """Wait for the gate's calls under way to commit, and keep the gate (and other plans) out
    until this plan commits: the marketing pressure of both must see the other's messages.
    Taken before the plan's snapshot is shared with its reader (an advisory lock gives the
    transaction no id). SQLite has one writer at a time: nothing to do."""
    Dialect.of(session).lock(session, SENDS_LOCK)


def _share_sends(session: Session) -> bool:
    """For the gate: whether no plan is under way (then none starts until this transaction
    commits). Tried without waiting; always true on SQLite."""
    return Dialect.of(session).try_lock(session, SENDS_LOCK, shared=True)


_SNAPSHOT: Final = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


class _Reader:
    """Reads the plan's chunks ahead, in a thread, on a connection of its own that imports
    the snapshot of the planning transaction (PostgreSQL's ``pg_export_snapshot``): it sees
    the database exactly as the plan does. Only when that transaction has written nothing
    yet (no transaction id), since a second connection cannot see uncommitted rows; and
    only when the session is bound to an engine it can open a connection from."""

    def __init__(self, connection: Connection, session: Session) -> None:
        self.connection = connection
        self.session = session
        self.queue: queue.Queue[tuple[Sequence[int] | None, dict[int, _Person]] | BaseException] = (
            queue.Queue(maxsize=2)
        )
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    @classmethod
    def start(cls, session: Session) -> _Reader | None:
        bind = session.get_bind()
        if bind.dialect.name != "postgresql" or not isinstance(bind, Engine):
            return None
        conn = session.connection()
        if conn.exec_driver_sql("SELECT pg_current_xact_id_if_assigned()").scalar() is not None:
            return None  # this transaction wrote already: a second connection would miss it
        snapshot = str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar())
        if not _SNAPSHOT.fullmatch(snapshot):
            return None
        other = bind.connect().execution_options(isolation_level="REPEATABLE READ")
        try:
            other.begin()
            other.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            other.exec_driver_sql("SET TRANSACTION READ ONLY")
        except BaseException:
            other.close()
            raise
        return cls(other, Session(bind=other))

    def run(
        self,
        parts: Iterator[Sequence[int]],
        load: Callable[[Session, Sequence[int] | None], dict[int, _Person]],
    ) -> None:
        def work() -> None:
            try:
                for part in parts:
                    if not self._put((part, load(self.session, part))):
                        return
                self._put((None, {}))
            except BaseException as exc:  # handed to the planning thread
                self._put(exc)

        self.thread = threading.Thread(target=work, name="campaign-plan-reader", daemon=True)
        self.thread.start()

    def _put(self, item: tuple[Sequence[int] | None, dict[int, _Person]] | BaseException) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> tuple[Sequence[int] | None, dict[int, _Person]]:
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
        self.session.close()
        self.connection.close()  # rolls the read-only transaction back


def _prepare(session: Session, campaign: Campaign, *, dry_run: bool) -> _Run:
    if campaign.kind != "planned":
        raise CampaignError(
            f"campaign {campaign.code} is triggered: journeys send its messages one by one"
        )
    if campaign.status not in ("draft", "scheduled"):
        raise CampaignError(
            f"campaign {campaign.code} is {campaign.status}: "
            "only a draft or scheduled campaign can be planned"
        )
    if campaign.segment_id is None:
        raise CampaignError(f"campaign {campaign.code} has no segment")
    segment = session.get(Segment, campaign.segment_id)
    assert segment is not None
    languages: dict[str, list[str]] = defaultdict(list)
    m = CampaignMessage
    for channel, language in session.execute(
        select(m.channel, m.language).where(m.campaign_id == campaign.id).distinct()
    ):
        languages[channel].append(language)
    missing = [c for c in campaign.channels if not languages.get(c)]
    if missing:
        raise CampaignError(
            f"campaign {campaign.code}: no message for {', '.join(missing)} (write one first)"
        )
    try:
        variants = check_variants(session, campaign=campaign)
    except CampaignError as exc:
        raise CampaignError(f"campaign {campaign.code}: {exc}") from None
    if not dry_run and session.scalar(
        select(func.count()).where(CampaignTarget.campaign_id == campaign.id)
    ):
        raise CampaignError(f"campaign {campaign.code} was planned already")
    compiled = segment_service.compile(session, segment.definition)
    members = set(session.scalars(compiled.query))
    return _Run(
        campaign,
        _Spec.of(campaign, variants),
        members,
        {channel: sorted(found) for channel, found in languages.items()},
        PlanReport(campaign.code, dry_run),
    )


@dataclass
class _Lookups:
    """What a plan reads once for all its chunks: the sources' usage restrictions and, when
    the list is not too long, the whole current suppression list by contact hash."""

    blocks: dict[int, frozenset[str]]  # source id -> channels it keeps out of ("*": all)
    suppressions: dict[tuple[str, str], list[tuple[str, int | None]]] | None
    channels: frozenset[str]  # the channels the plan's campaigns use
    purposes: frozenset[str]  # their purposes
    brands: frozenset[int | None]  # their brands (None: a group-wide campaign)
    holdout: Holdout | None = None  # the global holdout's active version, if any


# Up to this many suppression rows are read once per plan; beyond, per chunk by hash.
SUPPRESSIONS_IN_MEMORY: Final = 2_000_000


def _lookups(session: Session, runs: Sequence[_Run], *, now: datetime) -> _Lookups:
    conn = session.connection()
    blocks = _source_blocks(session)
    sup = Suppression
    current = (sup.expires_at.is_(None)) | (sup.expires_at > now)
    table: dict[tuple[str, str], list[tuple[str, int | None]]] | None = None
    if (conn.scalar(select(func.count()).select_from(sup).where(current)) or 0) <= (
        SUPPRESSIONS_IN_MEMORY
    ):
        table = defaultdict(list)
        rows = conn.execute(
            select(sup.channel, sup.value_hash, sup.reason, sup.brand_id).where(current)
        )
        for channel, value_hash, reason, brand_id in rows:
            table[(channel, value_hash)].append((reason, brand_id))
        table = dict(table)
    channels = frozenset(c for run in runs for c in run.spec.channels)
    purposes = frozenset(run.spec.purpose for run in runs)
    brands = frozenset(run.spec.brand_id for run in runs)
    return _Lookups(blocks, table, channels, purposes, brands, holdouts.active(session))


def _source_blocks(session: Session) -> dict[int, frozenset[str]]:
    """Source id -> the channels its restrictions keep out of, for the restricted sources."""
    blocks: dict[int, frozenset[str]] = {}
    for source_id, restrictions in session.execute(select(Source.id, Source.restrictions)):
        blocked = _blocked(restrictions)
        if blocked:
            blocks[source_id] = blocked
    return blocks


def _blocked(restrictions: Sequence[Any] | None) -> frozenset[str]:
    """The channels a source's restrictions keep its data out of ("*": all of them)."""
    blocked = set()
    for item in restrictions or ():
        if item in NO_MARKETING:
            blocked.add("*")
        elif isinstance(item, str) and item.startswith("no_"):
            blocked.add(item.removeprefix("no_"))
    return frozenset(blocked)


def _load(
    session: Session,
    ids: Sequence[int],
    *,
    now: datetime,
    horizon: timedelta,
    policies: Policies,
    lookups: _Lookups,
) -> dict[int, _Person]:
    """Everything the rules need about these customers (sorted ids), in a few set-based
    reads through Core (rows as tuples, no ORM objects)."""
    dialect = Dialect.of(session)
    conn = session.connection()
    wanted = set(ids)
    c = Customer
    people: dict[int, _Person] = {}
    rows_of = dialect.driver_rows  # plain tuples: ids, text, aware date-times compared only
    b2b = {
        row[0]
        for row in rows_of(
            conn,
            select(OrganisationContact.customer_id)
            .where(dialect.around(OrganisationContact.customer_id, ids))
            .distinct(),
        )
    }
    rows = rows_of(
        conn,
        select(
            c.id, c.email, c.phone_mobile, c.phone_fixed, c.address_line1, c.address_line2,
            c.address_line3, c.address_line4, c.address_line5, c.address_line6, c.language,
            c.country,
        ).where(dialect.around(c.id, ids), c.status == "active")
    )  # fmt: skip
    zones = COUNTRY_ZONES
    default_zone = policies.default_timezone
    for id_, email, mobile, fixed, l1, l2, l3, l4, l5, l6, language, country in rows:
        if id_ not in wanted:
            continue
        address = None
        if (l4 or l5) and l6:
            address = "|".join(line or "" for line in (l1, l2, l3, l4, l5, l6))
        people[id_] = _Person(
            id_, "b2b" if id_ in b2b else "b2c", email, mobile, fixed, address, language,
            zones.get(country or "FR", default_zone),
        )  # fmt: skip
    s = ConsentState
    fact = rules.ConsentFact
    # Only the consents the plan's campaigns can read: their channels (and "any"), their
    # purposes, the group's and their brands' (rules.decide_consent ignores the others).
    brands = sorted(b for b in lookups.brands if b is not None)
    for customer_id, channel, purpose, brand_id, status, collected_at, provable in rows_of(
        conn,
        select(
            s.customer_id, s.channel, s.purpose, s.brand_id, s.status, s.collected_at, s.provable
        ).where(
            dialect.around(s.customer_id, ids),
            s.channel.in_(sorted(lookups.channels | {"any"})),
            s.purpose.in_(sorted(lookups.purposes)),
            s.brand_id.is_(None) | s.brand_id.in_(brands) if brands else s.brand_id.is_(None),
        ),
    ):
        person = people.get(customer_id)
        if person is not None:
            item = fact(channel, purpose, brand_id, status, collected_at, bool(provable))
            if person.facts is None:
                person.facts = [item]
            else:
                person.facts.append(item)
    p = Preference
    for customer_id, channel, preferred, days, hours, language, max_per_week in rows_of(
        conn,
        select(
            p.customer_id, p.channel, p.preferred, p.days, p.hours, p.language, p.max_per_week
        ).where(dialect.around(p.customer_id, ids)),
    ):
        person = people.get(customer_id)
        if person is None:
            continue
        if preferred and channel != "any":
            person.preferred = channel
        if days or hours:
            if person.windows is None:
                person.windows = {}
            person.windows[channel] = (days, hours)
        if channel == "any":
            # what the customer chose (preference center, call center) beats the record's
            if language:
                person.language = language
            person.max_per_week = max_per_week
    t = Transaction
    purchases = select(t.customer_id, t.brand_id, func.max(t.occurred_at)).where(
        dialect.around(t.customer_id, ids), t.kind != "return", t.occurred_at <= now
    )
    if None not in lookups.brands:  # no group-wide campaign: only the plan's brands matter
        purchases = purchases.where(t.brand_id.in_(brands))
    for buyer, brand_id, last in rows_of(conn, purchases.group_by(t.customer_id, t.brand_id)):
        person = people.get(buyer) if buyer is not None else None
        if person is not None and last is not None:
            if person.bought is None:
                person.bought = {}
            person.bought[brand_id] = last
    if lookups.blocks:
        _restrictions(session, people, ids, lookups.blocks)
    if lookups.holdout is not None:
        stored = holdouts.stored_arms(session, lookups.holdout, ids)
        for person in people.values():
            person.held_out = holdouts.holdout_of(
                lookups.holdout, stored, person.id, person.email, person.address
            )
    _suppressions(session, people, now=now, lookups=lookups)
    o = Outbox
    # The range first: the outbox grows in this very transaction, chunk after chunk, while
    # PostgreSQL's statistics still say it is as small as when the plan began; a plain
    # array test over the new rows then costs rows x ids. Chunks come in id order, so the
    # rows written so far all fall outside this chunk's range and are skipped cheaply.
    contact = rules.Contact
    for customer_id, send_after, channel, brand_id, purpose in rows_of(
        conn,
        select(o.customer_id, o.send_after, o.channel, o.brand_id, o.purpose).where(
            dialect.around(o.customer_id, ids),
            o.state.in_(CONTACT_STATES),
            o.send_after > now - horizon,
        ),
    ):
        person = people.get(customer_id)
        if person is not None:
            if person.history is None:
                person.history = []
            person.history.append(contact(send_after, channel, brand_id, purpose))
    return people


def _restrictions(
    session: Session,
    people: dict[int, _Person],
    ids: Sequence[int],
    blocks: Mapping[int, frozenset[str]],
) -> None:
    """A customer known only through sources whose restrictions exclude marketing (or a
    channel: ``no_email``...) is blocked there; one clean source is enough. Only the
    customers with a record from a restricted source are looked at further."""
    dialect = Dialect.of(session)
    conn = session.connection()
    sr = SourceRecord
    touched = sorted(
        customer_id
        for customer_id in conn.scalars(
            select(sr.customer_id)
            .where(dialect.around(sr.customer_id, ids), sr.source_id.in_(sorted(blocks)))
            .distinct()
        )
        if customer_id in people
    )
    per: dict[int, list[frozenset[str]]] = defaultdict(list)
    for part in chunked(touched, dialect.max_params - 10):
        query = select(sr.customer_id, sr.source_id).where(dialect.one_of(sr.customer_id, part))
        for owner, source_id in conn.execute(query):
            if owner is not None:
                per[owner].append(blocks.get(source_id, frozenset()))
    for customer_id, sets in per.items():
        people[customer_id].blocked = frozenset.intersection(*sets)


_NO_CONTACT_POINT: Final = rules.Decision(False, rules.Reason.NO_CONTACT_POINT, "")


def _points(person: _Person, channel: str) -> list[str]:
    """The contact points of one channel, in the order they are used."""
    if channel == "email":
        return [person.email] if person.email else []
    if channel == "sms":
        return [person.mobile] if person.mobile else []
    if channel == "phone":
        return [v for v in (person.mobile, person.fixed) if v]
    if channel == "postal":
        return [person.address] if person.address else []
    return []


def _suppressions(
    session: Session, people: dict[int, _Person], *, now: datetime, lookups: _Lookups
) -> None:
    """The suppression entries of each person's contact points, for the channels the plan
    uses (an SMS and a call share one list: a number's hash is the same for both)."""
    table = lookups.suppressions
    if table is not None and not table:
        return  # an empty list: nothing to hash
    channels = lookups.channels
    if table is not None:  # the list is in memory: look each contact point up as it is hashed
        email, sms, phone, postal = (c in channels for c in ("email", "sms", "phone", "postal"))
        for person in people.values():
            found: list[tuple[str, list[tuple[str, int | None]] | None]] = []
            if email and person.email:
                found.append(("email", table.get(("email", contact_hash("email", person.email)))))
            if (sms or phone) and person.mobile:
                number = contact_hash("sms", person.mobile)  # the same for a call
                if sms:
                    found.append(("sms", table.get(("sms", number))))
                if phone:
                    found.append(("phone", table.get(("phone", number))))
            if phone and person.fixed:
                found.append(("phone", table.get(("phone", contact_hash("phone", person.fixed)))))
            if postal and person.address:
                key = ("postal", contact_hash("postal", person.address))
                found.append(("postal", table.get(key)))
            for channel, entries in found:
                if entries:
                    if person.suppressed is None:
                        person.suppressed = {}
                    person.suppressed.setdefault(channel, []).extend(entries)
        return
    wanted: dict[tuple[str, str], list[_Person]] = defaultdict(list)
    for person in people.values():
        for channel in channels:
            for value in _points(person, channel):
                wanted[(channel, contact_hash(channel, value))].append(person)
    dialect = Dialect.of(session)
    hashes = sorted({h for _, h in wanted})
    sup = Suppression
    for part in chunked(hashes, dialect.max_params - 10):
        rows = session.connection().execute(
            select(sup.channel, sup.value_hash, sup.reason, sup.brand_id).where(
                dialect.one_of(sup.value_hash, part),
                (sup.expires_at.is_(None)) | (sup.expires_at > now),
            )
        )
        for channel, value_hash, reason, brand_id in rows:
            for person in wanted.get((channel, value_hash), ()):
                if person.suppressed is None:
                    person.suppressed = {}
                person.suppressed.setdefault(channel, []).append((reason, brand_id))


def _decide(
    runs: Sequence[_Run], people: Mapping[int, _Person], *, now: datetime, policies: Policies
) -> dict[int, dict[int, _Outcome]]:
    """campaign id -> customer id -> outcome, for the customers of this chunk."""
    out: dict[int, dict[int, _Outcome]] = {r.spec.id: {} for r in runs}
    contract_since = now - timedelta(days=policies.contract_days)
    own_caps: dict[int, rules.PressurePolicy] = {}
    for person in people.values():
        candidates: list[rules.Candidate] = []
        pending: dict[int, _Outcome] = {}
        for run in runs:
            if person.id not in run.members:
                continue
            outcome = _eligible(run, person, now=now, policies=policies, since=contract_since)
            out[run.spec.id][person.id] = outcome
            if outcome.group == "target":
                spec = run.spec
                assert outcome.send_at is not None and outcome.channel is not None
                contact = rules.Contact(
                    outcome.send_at, outcome.channel, spec.brand_id, spec.purpose
                )
                candidates.append(
                    rules.Candidate(spec.id, spec.priority, spec.expected_value, contact)
                )
                pending[spec.id] = outcome
        if not candidates:
            continue
        pressure = policies.pressure
        if person.max_per_week is not None:
            pressure = own_caps.get(person.max_per_week) or own_caps.setdefault(
                person.max_per_week, _with_own_cap(pressure, person.max_per_week)
            )
        _accepted, refused = rules.arbitrate(pressure, person.history or (), candidates)
        for candidate, reason, detail in refused:
            outcome = pending[candidate.campaign_id]
            outcome.group, outcome.reason, outcome.detail = "excluded", str(reason), detail
    return out


def _with_own_cap(policy: rules.PressurePolicy, per_week: int) -> rules.PressurePolicy:
    """The policy plus the customer's own weekly cap, across channels and brands."""
    own = rules.CapRule("customer_weekly", per_week, timedelta(days=7))
    return dataclasses.replace(policy, caps=(*policy.caps, own))


def _eligible(
    run: _Run, person: _Person, *, now: datetime, policies: Policies, since: datetime
) -> _Outcome:
    """The outcome of one campaign for one customer, pressure aside."""
    spec = run.spec
    brand = spec.brand_id
    last = None
    if person.bought:
        bought = person.bought.values() if brand is None else [person.bought.get(brand)]
        last = max((b for b in bought if b is not None), default=None)
    allowed: dict[str, rules.Decision] = {}
    for channel in spec.channels:
        if not _points(person, channel):  # nothing to send to: whatever the consent says
            allowed[channel] = _NO_CONTACT_POINT
            continue
        decision = rules.decide_consent(
            policies.consent,
            channel=channel,
            purpose=spec.purpose,
            brand_id=brand,
            audience=person.audience,
            facts=person.facts or (),
            bought_from_brand=last is not None,
            has_contract=last is not None and last >= since,
            now=now,
        )
        if decision.allowed:
            decision = _reachable(channel, decision, person, brand)
        allowed[channel] = decision
    chosen, reason = rules.choose_channel(spec.channels, allowed, preferred=person.preferred)
    if chosen is None:
        return _Outcome("excluded", reason=str(reason))
    channel = chosen
    language = rules.pick_language(
        run.languages[channel], customer=person.language, default=spec.default_language
    )
    if language is None:
        return _Outcome("excluded", channel=channel, reason=str(rules.Reason.LANGUAGE_UNAVAILABLE))
    windows = person.windows
    days, hours = (windows.get(channel) or windows.get("any") if windows else None) or (None, None)
    if channel == "phone" and days is None and hours is None:
        days, hours = rules.PHONE_PROSPECTING_DAYS, rules.PHONE_PROSPECTING_HOURS
    earliest = max(now, spec.starts_at) if spec.starts_at is not None else now
    send_at = rules.next_contact_time(
        earliest, days=days, hours=hours, tz=person.zone, latest=spec.ends_at
    )
    if send_at is None:
        return _Outcome(
            "excluded",
            channel=channel,
            language=language,
            reason=str(rules.Reason.OUTSIDE_CONTACT_WINDOW),
        )
    address = _points(person, channel)[0]
    if person.held_out and spec.purpose not in policies.pressure.exempt_purposes:
        # the global holdout: no marketing; the control row keeps when it would have gone
        return _Outcome(
            "control", channel, language, str(rules.Reason.GLOBAL_HOLDOUT), None, send_at
        )
    variants = spec.variants
    if spec.control_share <= 0 and len(variants) == 1:  # nothing to draw
        return _Outcome("target", channel, language, None, None, send_at, address, variants[0][0])
    unit = _unit(person, spec.household)
    if rules.in_control(unit, spec.control_salt, spec.control_share):
        return _Outcome(
            "control", channel, language, str(rules.Reason.CONTROL_GROUP), None, send_at
        )
    variant = rules.pick_variant(unit, spec.control_salt, variants)
    return _Outcome("target", channel, language, None, None, send_at, address, variant)


def randomization_unit(
    customer_id: int, email: str | None, address: str | None, *, household: bool
) -> str:
    """What a campaign's control group and A/B variants are drawn by, so that people who
    share a letter box or an inbox land in the same arm: for a campaign that may write
    letters (``household``: postal among its channels), the household (the postal address),
    else the e-mail address, else the customer; for the others, the e-mail address, else the
    customer (``reporting.holdouts.unit_of``; hashed, no personal data).

    >>> randomization_unit(7, None, None, household=True)
    'customer:7'
    >>> randomization_unit(7, "ana@exemple.fr", "|||1 RUE|", household=False)[:6]
    'email:'
    """
    return holdouts.unit_of(customer_id, email, address if household else None)


def _unit(person: _Person, household: bool) -> str:
    """:func:`randomization_unit` of a person, computed once per person and kind."""
    if household and person.address:
        found = person.household_unit
        if found is None:
            found = person.household_unit = randomization_unit(
                person.id, person.email, person.address, household=True
            )
        return found
    found = person.email_unit
    if found is None:
        found = person.email_unit = randomization_unit(
            person.id, person.email, None, household=False
        )
    return found


def _reachable(
    channel: str,
    decision: rules.Decision,
    person: _Person,
    brand: int | None,
) -> rules.Decision:
    """The consent decision, refused when the channel cannot or must not reach the person."""
    if "*" in person.blocked or channel in person.blocked:
        return rules.Decision(False, rules.Reason.RESTRICTED_SOURCE, decision.basis)
    found: list[rules.Reason] = []
    for reason, sup_brand in person.suppressed.get(channel, ()) if person.suppressed else ():
        if reason == "unsubscribe" and sup_brand is not None and sup_brand != brand:
            continue  # an unsubscribe from another brand
        if reason == "opposition" and decision.basis != "opt_out_regime":
            continue  # an opposition list does not apply to consent or a contract
        found.append(SUPPRESSION_REASONS.get(reason, rules.Reason.SUPPRESSED_UNSUBSCRIBE))
    if found:
        best = rules.most_telling(found)
        return rules.Decision(False, best, decision.basis)
    return decision


# --- the dispatch gate ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """What :func:`admit` did: ``sent`` (the outbox row ``outbox_id`` holds the message),
    ``suppressed`` with a reason code, or ``deferred`` until an instant (with the reason)."""

    outcome: str
    reason: str | None = None
    until: datetime | None = None
    outbox_id: int | None = None


# How far ahead the gate looks for the instant the pressure rules let a message through.
DEFER_HORIZON: Final = timedelta(days=30)
# Tasks for staff rather than messages: an outbox row each, no consent asked (the advisor
# sees the customer's consents in the 360° view), no dispatcher sends them: advisors work
# them from their task list.
TASK_CHANNELS: Final = ("advisor_task",)


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    """One message a journey asks the gate for: a triggered campaign's message to one
    customer on one channel, under an idempotency key. A webhook (channel ``webhook``) needs
    no campaign: its ``payload`` names the ``url``; ``purpose`` is then its own (``service``
    by default). ``payload``: what the outbox row carries besides (the journey, the step,
    the action's properties), never personal data."""

    campaign: Campaign | None
    customer_id: int
    channel: str
    key: str
    payload: Mapping[str, Any] | None = None
    purpose: str | None = None


def admit(
    session: Session,
    *,
    campaign: Campaign,
    customer_id: int,
    channel: str,
    key: str,
    now: datetime,
    policies: Policies,
) -> Admission:
    """The dispatch gate for one message: :func:`admit_many` with one request."""
    request = AdmitRequest(campaign, customer_id, channel, key)
    return admit_many(session, [request], now=now, policies=policies)[0]


# Channels the gate queues without consent or pressure (not messages to the customer): an
# advisor's task, a call to another system. They need an active customer all the same.
UNCHECKED_CHANNELS: Final = (*TASK_CHANNELS, "webhook")


def admit_many(
    session: Session,
    requests: Sequence[AdmitRequest],
    *,
    now: datetime,
    policies: Policies,
) -> list[Admission]:
    """The dispatch gate: may each message of a triggered campaign go to its customer now?
    One answer per request, in order.

    The rules are a plan's, for one customer and one channel, read as they stand at ``now``:
    the customer active, consent (French defaults or the policies'), suppression lists,
    source restrictions, a contact point, a message in a language, the customer's contact
    days and hours, the campaign's control group, then marketing pressure against what the
    outbox holds. Outside the contact window or over a pressure rule, the answer is
    ``deferred`` with the first instant it would pass (``suppressed`` when there is none
    within :data:`DEFER_HORIZON`). Sent means one outbox row, keyed by the request's key:
    asked again with the same key, the gate finds the row and answers ``sent`` without a
    second one. Writes in the caller's transaction (the journey worker commits it with the
    instances' states).

    The requests are decided together: one set of reads for all their customers (the
    plan's ``_load``), in request order, each message admitted counting in the pressure of
    the requests after it (two messages to one customer in one call are capped as if sent
    one after the other), then one insert of the outbox rows.

    While a campaign plan is under way (PostgreSQL), messages are deferred by
    :data:`PLAN_WAIT` (reason ``campaign_plan_running``): the plan's messages are not
    visible until it commits, and the pressure rules must count them. Callers hold the
    customers (the journey engine's advisory locks), so that two calls never decide for one
    customer at once."""
    for request in requests:
        if request.campaign is None:
            if request.channel != "webhook":
                raise CampaignError(f"a {request.channel} message needs a triggered campaign")
            if not str((request.payload or {}).get("url") or ""):
                raise CampaignError("a webhook needs a url in its payload")
        elif request.campaign.kind != "triggered":
            raise CampaignError(f"campaign {request.campaign.code} is planned, not triggered")
    answers: list[Admission | None] = [None] * len(requests)  # None: a task queued
    existing = _outbox_ids(session, [r.key for r in requests])
    pending: list[int] = []  # the requests to decide by the rules
    tasks: list[int] = []
    for index, request in enumerate(requests):
        campaign = request.campaign
        if request.key in existing:
            answers[index] = Admission("sent", outbox_id=existing[request.key])
        elif campaign is not None and campaign.status != "running":
            answers[index] = Admission("suppressed", f"campaign_{campaign.status}")
        elif request.channel in UNCHECKED_CHANNELS:
            tasks.append(index)
        elif campaign is None or request.channel not in campaign.channels:
            answers[index] = Admission("suppressed", "channel_not_in_campaign")
        else:
            pending.append(index)
    rows: dict[str, dict[str, Any]] = {}  # key -> outbox row (the first request of a key)
    # (campaign, customer) -> campaign_target row: each customer's arm, for measurement
    arms: dict[tuple[int, int], dict[str, Any]] = {}
    ids: dict[str, int] = {}
    if tasks:
        statuses = _statuses(session, sorted({requests[i].customer_id for i in tasks}))
        for index in tasks:
            request = requests[index]
            if statuses.get(request.customer_id) != "active":
                answers[index] = Admission("suppressed", str(rules.Reason.NOT_ACTIVE))
            else:
                language = request.campaign.default_language if request.campaign else ""
                url = str((request.payload or {}).get("url") or "") or None
                rows.setdefault(request.key, _outbox_row(request, language, url, now))
    if pending and not _share_sends(session):
        for index in pending:  # a plan is under way: its messages are not visible yet
            answers[index] = Admission("deferred", PLAN_RUNNING, now + PLAN_WAIT)
        pending = []
    if pending:
        campaigns_by_id = {
            c.id: c for c in (requests[i].campaign for i in pending) if c is not None
        }
        languages = _message_languages(session, sorted(campaigns_by_id))
        runs: dict[tuple[int, str], _Run] = {}
        for campaign_id, channel in sorted(
            {(cast(Campaign, requests[i].campaign).id, requests[i].channel) for i in pending}
        ):
            campaign = campaigns_by_id[campaign_id]
            spec = dataclasses.replace(_Spec.of(campaign), channels=(channel,))
            runs[(campaign_id, channel)] = _Run(
                campaign, spec, set(), {channel: languages.get((campaign_id, channel), [])},
                PlanReport(campaign.code, True),
            )  # fmt: skip
        specs = [run.spec for run in runs.values()]
        lookups = _Lookups(
            _source_blocks(session), None, frozenset(s.channels[0] for s in specs),
            frozenset(s.purpose for s in specs), frozenset(s.brand_id for s in specs),
            holdouts.active(session),
        )  # fmt: skip
        customers = sorted({requests[i].customer_id for i in pending})
        people = _load(
            session, customers, now=now, horizon=_horizon(policies), policies=policies,
            lookups=lookups,
        )  # fmt: skip
        since = now - timedelta(days=policies.contract_days)
        for index in pending:
            request = requests[index]
            if request.key in rows:  # the same key twice in one call: one message
                answers[index] = Admission("sent")
                continue
            run = runs[(cast(Campaign, request.campaign).id, request.channel)]
            person = people.get(request.customer_id)
            answer, row, arm = _decide_one(run, person, request, now, policies, since)
            answers[index] = answer
            if row is not None:
                rows[request.key] = row
            if arm is not None:
                arms.setdefault((arm["campaign_id"], arm["customer_id"]), arm)
    if arms:
        table = _table(CampaignTarget)
        statement = Dialect.of(session).insert_ignoring(table, ("campaign_id", "customer_id"))
        session.execute(statement, list(arms.values()))
    if rows:
        dialect = Dialect.of(session)
        session.execute(dialect.insert_ignoring(_table(Outbox), ("key",)), list(rows.values()))
        ids = _outbox_ids(session, list(rows))
    out: list[Admission] = []
    for request, given in zip(requests, answers, strict=True):
        if given is None or (given.outcome == "sent" and given.outbox_id is None):
            given = Admission("sent", outbox_id=ids.get(request.key))  # queued just now
        out.append(given)
    return out


def _decide_one(
    run: _Run,
    person: _Person | None,
    request: AdmitRequest,
    now: datetime,
    policies: Policies,
    since: datetime,
) -> tuple[Admission, dict[str, Any] | None, dict[str, Any] | None]:
    """One request by the plan's rules: the answer, the outbox row when it is sent (the
    message then joins the person's history, for the pressure of the requests after it), and
    the customer's arm for measurement (a ``campaign_target`` row: target when sent, control
    with the time it would have gone, excluded when pressure refused it; None otherwise)."""
    if person is None:
        return Admission("suppressed", str(rules.Reason.NOT_ACTIVE)), None, None
    outcome = _eligible(run, person, now=now, policies=policies, since=since)
    if outcome.group != "target":
        arm = None
        if outcome.group == "control":
            arm = _arm_row(run, request, "control", outcome.reason, outcome.send_at or now, now)
        return Admission("suppressed", outcome.reason), None, arm
    assert outcome.send_at is not None and outcome.language is not None
    if outcome.send_at > now:
        reason = str(rules.Reason.OUTSIDE_CONTACT_WINDOW)
        return Admission("deferred", reason, outcome.send_at), None, None
    spec = run.spec
    pressure = policies.pressure
    if person.max_per_week is not None:
        pressure = _with_own_cap(pressure, person.max_per_week)
    contact = rules.Contact(now, request.channel, spec.brand_id, spec.purpose)
    history = person.history or []
    verdict = rules.check_pressure(pressure, history, contact)
    if verdict is not None:
        later = next_fit(pressure, history, contact, latest=now + DEFER_HORIZON)
        if later is None:
            refused = _arm_row(run, request, "excluded", str(verdict[0]), now, now)
            return Admission("suppressed", str(verdict[0])), None, refused
        return Admission("deferred", str(verdict[0]), later), None, None
    if person.history is None:
        person.history = []
    person.history.append(contact)
    row = _outbox_row(request, outcome.language, outcome.address, now)
    return Admission("sent"), row, _arm_row(run, request, "target", None, now, now)


def _arm_row(
    run: _Run, request: AdmitRequest, group: str, reason: str | None, at: datetime, now: datetime
) -> dict[str, Any]:
    """A triggered campaign's ``campaign_target`` row: the customer's first decision fixes
    their arm (later ones are ignored), with the time of the (would-have-been) message."""
    return {
        "campaign_id": run.spec.id, "customer_id": request.customer_id, "group": group,
        "channel": request.channel, "language": None, "reason": reason, "detail": None,
        "send_at": at, "planned_at": now,
    }  # fmt: skip


def _outbox_ids(session: Session, keys: Sequence[str]) -> dict[str, int]:
    """The outbox rows' ids by key, for the keys that have one."""
    dialect = Dialect.of(session)
    found: dict[str, int] = {}
    for part in chunked(sorted(set(keys)), dialect.max_params - 10):
        query = select(Outbox.key, Outbox.id).where(dialect.one_of(Outbox.key, list(part)))
        found.update((key, id_) for key, id_ in session.execute(query))
    return found


def _statuses(session: Session, ids: Sequence[int]) -> dict[int, str]:
    dialect = Dialect.of(session)
    out: dict[int, str] = {}
    for part in chunked(ids, dialect.max_params - 10):
        query = select(Customer.id, Customer.status).where(dialect.one_of(Customer.id, list(part)))
        out.update((id_, status) for id_, status in session.execute(query))
    return out


def _message_languages(
    session: Session, campaign_ids: Sequence[int]
) -> dict[tuple[int, str], list[str]]:
    """The languages each campaign has a message in, by campaign and channel."""
    out: dict[tuple[int, str], list[str]] = defaultdict(list)
    m = CampaignMessage
    query = select(m.campaign_id, m.channel, m.language).where(m.campaign_id.in_(campaign_ids))
    for campaign_id, channel, language in session.execute(query.order_by(m.id)):
        if language not in out[(campaign_id, channel)]:
            out[(campaign_id, channel)].append(language)
    return out


def _outbox_row(
    request: AdmitRequest, language: str, address: str | None, now: datetime
) -> dict[str, Any]:
    campaign = request.campaign
    purpose = request.purpose or (campaign.purpose if campaign is not None else "service")
    return {
        "key": request.key, "campaign_id": campaign.id if campaign else None,
        "customer_id": request.customer_id, "brand_id": campaign.brand_id if campaign else None,
        "channel": request.channel, "purpose": purpose, "language": language,
        "address": address, "state": "planned", "send_after": now, "attempts": 0,
        "planned_at": now, "updated_at": now,
        "payload": dict(request.payload) if request.payload is not None else None,
    }  # fmt: skip


def next_fit(
    policy: rules.PressurePolicy,
    history: Sequence[rules.Contact],
    proposed: rules.Contact,
    *,
    latest: datetime,
) -> datetime | None:
    """The first instant after ``proposed.at``, up to ``latest``, at which ``proposed`` passes
    the pressure rules given ``history``: a rule frees up only when a past contact leaves
    its window (its time plus a cap's period) or the gap, so only those instants are tried."""
    spans = [cap.period for cap in policy.caps]
    if policy.min_gap is not None:
        spans.append(policy.min_gap)
    instants = sorted(
        {c.at + span for c in history for span in spans if proposed.at < c.at + span <= latest}
    )
    for instant in instants:
        moved = dataclasses.replace(proposed, at=instant)
        if rules.check_pressure(policy, history, moved) is None:
            return instant
    return None


# The stage (index in STAGES) a reason drops a customer at; the others: the channel stage.
_DROPPED_AT: Final[Mapping[str, int]] = {
    rules.Reason.LANGUAGE_UNAVAILABLE: 2,
    rules.Reason.OUTSIDE_CONTACT_WINDOW: 3,
    rules.Reason.PRESSURE_CAP: 5,
    rules.Reason.PRESSURE_GAP: 5,
    rules.Reason.LOST_ARBITRATION: 5,
}


def _count(run: _Run, outcomes: Mapping[int, _Outcome]) -> None:
    """Add a chunk's outcomes to the run's report and funnel."""
    report = run.report
    for outcome in outcomes.values():
        run.reached[0] += 1
        if outcome.group == "excluded":
            report.excluded[outcome.reason or "unknown"] += 1
            for stage in range(1, _DROPPED_AT.get(outcome.reason or "", 1)):
                run.reached[stage] += 1
            continue
        if outcome.group == "control":
            report.control += 1
            for stage in range(1, 4):
                run.reached[stage] += 1
            continue
        for stage in range(1, 6):
            run.reached[stage] += 1
        report.planned += 1
        report.channels[outcome.channel or "?"] += 1
        report.variants[outcome.variant or rules.DEFAULT_VARIANT] += 1


# Each chunk's outcomes go once through a temporary table, one row per campaign and
# customer; the target, outbox and timeline rows are derived from it inside the database.
_STAGE: Final = Table(
    "campaign_plan_stage",
    MetaData(),
    Column("campaign_id", BigId),
    Column("customer_id", BigId),
    Column("group", String(10)),
    Column("channel", String(20)),
    Column("language", String(10)),
    Column("reason", String(40)),
    Column("detail", Text),
    Column("send_at", UtcDateTime),
    Column("address", Text),
    Column("payload", Text),  # JSON text
    Column("variant", String(8)),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="drop",
)
STAGE_COLUMNS: Final = tuple(c.name for c in _STAGE.columns)
_HISTORY_TYPES: Final = {"target": "campaign_planned", "control": "campaign_control"}


def _stage(session: Session) -> Table:
    """The plan's temporary table, created (or emptied) for this plan."""
    conn = session.connection()
    _STAGE.create(conn, checkfirst=True)
    _empty(conn, _STAGE)
    return _STAGE


def _empty(conn: Connection, stage: Table) -> None:
    """Empty the staging table: TRUNCATE on PostgreSQL (a DELETE leaves every row dead in
    it for the next chunk's reads to skip), DELETE on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'TRUNCATE "{stage.name}"')
    else:
        conn.execute(stage.delete())


def _stage_rows(
    runs: Sequence[_Run], outcomes: Mapping[int, Mapping[int, _Outcome]]
) -> list[tuple[Any, ...]]:
    """One chunk's outcomes as rows of the staging table, one per campaign and customer."""
    rows: list[tuple[Any, ...]] = []
    for run in runs:
        campaign_id = run.spec.id
        several = len(run.spec.variants) > 1  # the timeline names the variant then
        last_at: datetime | None = None
        iso = ""
        for customer_id, o in outcomes.get(campaign_id, {}).items():
            # the payload as json.dumps would write it (keys in this order)
            payload = f'{{"group": "{o.group}"'
            if o.send_at is not None:
                if o.send_at is not last_at:
                    last_at, iso = o.send_at, o.send_at.isoformat()
                payload += f', "send_at": "{iso}"'
            if o.detail is not None:
                payload += f', "detail": {json.dumps(o.detail)}'
            variant = o.variant if o.group == "target" else None
            if several and variant is not None:  # a variant's name needs no escaping
                payload += f', "variant": "{variant}"'
            rows.append(
                (campaign_id, customer_id, o.group, o.channel, o.language, o.reason, o.detail,
                 o.send_at, o.address, payload + "}", variant)
            )  # fmt: skip
    return rows


def _copy_stage(session: Session, stage: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of :func:`_stage_rows` into the staging table."""
    dialect = Dialect.of(session)
    # On PostgreSQL the rows are in driver form already (send_at an aware date-time, the
    # payload JSON text): no per-value conversion.
    prepared = dialect.name == "postgresql"
    dialect.copy_rows(session.connection(), stage, STAGE_COLUMNS, rows, prepared=prepared)


def _insert_staged(conn: Connection, runs: Sequence[_Run], stage: Table, now: datetime) -> None:
    """From the staged chunk: campaign_target rows, a timeline row each, outbox rows for the
    targets; then the staging table is emptied."""
    dialect = Dialect.of(conn)
    st = stage.c
    postgres = dialect.name == "postgresql"

    def const(value: Any, type_: Any) -> Any:
        # typed on PostgreSQL (a bare parameter in a SELECT list is text to it); SQLite
        # stores what it is given, and a CAST there would change it
        return sql_cast(literal(value, type_), type_) if postgres else literal(value, type_)

    stamp = const(now, UtcDateTime())
    conn.execute(
        insert(_table(CampaignTarget)).from_select(
            TARGET_COLUMNS,
            select(
                st.campaign_id, st.customer_id, st.group, st.channel, st.language, st.reason,
                st.detail, st.send_at, stamp, st.variant,
            ),
        )
    )  # fmt: skip
    payload_json = dialect.json_text(st.payload, binary=True)
    for run in runs:
        campaign = run.spec
        mine = st.campaign_id == campaign.id
        brand = const(campaign.brand_id, BigId)
        conn.execute(
            insert(_table(Outbox)).from_select(
                OUTBOX_COLUMNS,
                select(
                    const(f"campaign:{campaign.id}:", String()) + sql_cast(st.customer_id, String),
                    st.campaign_id, st.customer_id, brand, st.channel,
                    const(campaign.purpose, String()), st.language, st.address,
                    const("planned", String()), st.send_at, const(0, Integer()), stamp, stamp,
                ).where(mine, st.group == "target"),
            )
        )  # fmt: skip
        conn.execute(
            insert(_table(Interaction)).from_select(
                HISTORY_COLUMNS,
                select(
                    st.customer_id, stamp,
                    func.coalesce(st.channel, const(campaign.channels[0], String())),
                    const(INTERNAL, String()),
                    case(
                        *((st.group == g, const(t, String())) for g, t in _HISTORY_TYPES.items()),
                        else_=const("campaign_excluded", String()),
                    ),
                    const(campaign.name[:300], String()), st.reason,
                    const(campaign.code, String()), brand, payload_json, stamp,
                ).where(mine),
            )
        )  # fmt: skip
    _empty(conn, stage)


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


TARGET_COLUMNS: Final = (
    "campaign_id", "customer_id", "group", "channel", "language", "reason", "detail", "send_at",
    "planned_at", "variant",
)  # fmt: skip
OUTBOX_COLUMNS: Final = (
    "key", "campaign_id", "customer_id", "brand_id", "channel", "purpose", "language",
    "address", "state", "send_after", "attempts", "planned_at", "updated_at",
)  # fmt: skip
HISTORY_COLUMNS: Final = (
    "customer_id", "occurred_at", "channel", "direction", "type", "subject", "outcome",
    "campaign_code", "brand_id", "payload", "created_at",
)  # fmt: skip
