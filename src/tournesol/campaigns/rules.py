"""Pure eligibility rules for campaigns: consent regimes, contact points, channel choice, contact
windows, marketing pressure, arbitration between campaigns, control groups, A/B variants and
languages.

Plain values in, plain values out: no database, no web framework, no clock (the time is always
passed in as an aware ``now``). The campaign planner evaluates these rules for up to a million
recipients, so each call is cheap: small frozen dataclasses with slots, pre-built decisions,
parsed contact windows cached by their text.

Every refusal carries a :class:`Reason`, a stable lower_snake code that is stored with the
exclusion in the customer's history; :data:`REASON_TEXT` explains each one in English (the web
layer translates), and :data:`REASON_PRECEDENCE` orders them from the most to the least telling
when several apply.
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tournesol.consent.rules import parse_days, parse_hours

# --------------------------------------------------------------------------------------------
# Reasons


class Reason(StrEnum):
    """Why a customer is not contacted, or loses a contact, by a campaign (stable codes)."""

    NOT_ACTIVE = "not_active"
    ERASED = "erased"
    CONTROL_GROUP = "control_group"
    GLOBAL_HOLDOUT = "global_holdout"
    NO_CONSENT = "no_consent"
    OPTED_OUT = "opted_out"
    CONSENT_WITHOUT_PROOF = "consent_without_proof"
    SUPPRESSED_UNSUBSCRIBE = "suppressed_unsubscribe"
    SUPPRESSED_HARD_BOUNCE = "suppressed_hard_bounce"
    SUPPRESSED_COMPLAINT = "suppressed_complaint"
    SUPPRESSED_OPPOSITION = "suppressed_opposition"
    NO_CONTACT_POINT = "no_contact_point"
    LANGUAGE_UNAVAILABLE = "language_unavailable"
    RESTRICTED_SOURCE = "restricted_source"
    PRESSURE_CAP = "pressure_cap"
    PRESSURE_GAP = "pressure_gap"
    LOST_ARBITRATION = "lost_arbitration"
    OUTSIDE_CONTACT_WINDOW = "outside_contact_window"


REASON_TEXT: Final[Mapping[Reason, str]] = MappingProxyType(
    {
        Reason.NOT_ACTIVE: "The customer record is no longer active (merged into another one).",
        Reason.ERASED: "The customer's personal data were erased at their request.",
        Reason.CONTROL_GROUP: "Held out in the campaign's control group to measure its effect.",
        Reason.GLOBAL_HOLDOUT: "In the global holdout: no marketing, to measure the programme.",
        Reason.NO_CONSENT: "The channel needs prior consent and none was given.",
        Reason.OPTED_OUT: "The customer refused or withdrew consent for this channel.",
        Reason.CONSENT_WITHOUT_PROOF: "Consent was recorded without the proof the law requires.",
        Reason.SUPPRESSED_UNSUBSCRIBE: "The contact point is on the unsubscribe list.",
        Reason.SUPPRESSED_HARD_BOUNCE: "Messages to this contact point bounced permanently.",
        Reason.SUPPRESSED_COMPLAINT: "The customer reported a previous message as spam.",
        Reason.SUPPRESSED_OPPOSITION: "The number is on the telephone opposition list (Bloctel).",
        Reason.NO_CONTACT_POINT: "No valid address, email or number for the channel.",
        Reason.LANGUAGE_UNAVAILABLE: "No version of the message in the customer's language.",
        Reason.RESTRICTED_SOURCE: "The data come from a source whose permitted use excludes this.",
        Reason.PRESSURE_CAP: "The customer already received the most contacts the policy allows.",
        Reason.PRESSURE_GAP: "Too close to another contact with the same customer.",
        Reason.LOST_ARBITRATION: "A campaign that ranked higher took the contact slot.",
        Reason.OUTSIDE_CONTACT_WINDOW: "No allowed contact time before the campaign ends.",
    }
)

# Most telling first. When every channel of a campaign is refused, or when the planner has
# several reasons for one customer, the reason reported is the first in this order: the record
# itself (inactive, erased, control group), then what the customer said (a refusal, then the
# suppression lists that record a refusal), then the missing legal basis (proof, consent,
# permitted use of the source), then reachability (a dead or missing contact point), then the
# message and the timing, and last the pressure rules, which depend on other campaigns.
REASON_PRECEDENCE: Final[tuple[Reason, ...]] = (
    Reason.NOT_ACTIVE,
    Reason.ERASED,
    Reason.GLOBAL_HOLDOUT,
    Reason.CONTROL_GROUP,
    Reason.OPTED_OUT,
    Reason.SUPPRESSED_UNSUBSCRIBE,
    Reason.SUPPRESSED_COMPLAINT,
    Reason.SUPPRESSED_OPPOSITION,
    Reason.CONSENT_WITHOUT_PROOF,
    Reason.NO_CONSENT,
    Reason.RESTRICTED_SOURCE,
    Reason.SUPPRESSED_HARD_BOUNCE,
    Reason.NO_CONTACT_POINT,
    Reason.LANGUAGE_UNAVAILABLE,
    Reason.OUTSIDE_CONTACT_WINDOW,
    Reason.PRESSURE_CAP,
    Reason.PRESSURE_GAP,
    Reason.LOST_ARBITRATION,
)
_RANK: Final[Mapping[Reason, int]] = {r: i for i, r in enumerate(REASON_PRECEDENCE)}


def most_telling(reasons: Sequence[Reason]) -> Reason | None:
    """The reason that comes first in :data:`REASON_PRECEDENCE`, or None for no reasons.

    >>> most_telling([Reason.NO_CONTACT_POINT, Reason.OPTED_OUT])
    <Reason.OPTED_OUT: 'opted_out'>
    """
    return min(reasons, key=_RANK.__getitem__, default=None)


# --------------------------------------------------------------------------------------------
# Consent regimes

Regime = Literal["opt_in", "opt_out", "opt_in_with_proof"]
Audience = Literal["b2c", "b2b"]
REGIMES: Final[tuple[str, ...]] = get_args(Regime)
AUDIENCES: Final[tuple[str, ...]] = get_args(Audience)
# The channels a message goes out on; consent rows may also say "any" (consent.rules.CHANNELS).
CONTACT_CHANNELS: Final[tuple[str, ...]] = ("email", "sms", "phone", "postal", "push")

# French telephone prospecting hours for consumers (décret n° 2022-1313 du 13 octobre 2022):
# Monday to Friday, 10:00-13:00 and 14:00-20:00, never on public holidays (not modelled here),
# unless the consumer expressly agreed to other times. Pass them to next_contact_time().
PHONE_PROSPECTING_DAYS: Final = "mon,tue,wed,thu,fri"
PHONE_PROSPECTING_HOURS: Final = "10:00-13:00,14:00-20:00"

_PARIS: Final = ZoneInfo("Europe/Paris")


def _french_regimes() -> Mapping[tuple[str, str], Regime]:
    return {
        ("email", "b2c"): "opt_in",
        ("email", "b2b"): "opt_out",
        ("sms", "b2c"): "opt_in",
        ("sms", "b2b"): "opt_out",
        ("postal", "b2c"): "opt_out",
        ("postal", "b2b"): "opt_out",
        ("phone", "b2c"): "opt_in_with_proof",
        ("phone", "b2b"): "opt_out",
        ("push", "b2c"): "opt_in",
        ("push", "b2b"): "opt_in",
    }


@dataclass(frozen=True)
class ConsentPolicy:
    """Which consent each channel needs, per audience, with the French rules as defaults.

    - ``regimes``: ``(channel, audience) -> regime``, for every channel of
      :data:`CONTACT_CHANNELS` and audience ``b2c``/``b2b``:

      * email and SMS, B2C: ``opt_in`` (CPCE art. L.34-5: prior consent for electronic
        prospecting of natural persons);
      * email and SMS, B2B: ``opt_out`` (CNIL guidance: professionals may be prospected
        without consent when the message concerns their profession, with a way to object);
      * postal mail, B2C and B2B: ``opt_out`` (GDPR art. 6(1)(f) legitimate interest and the
        right to object of art. 21);
      * telephone, B2C: ``opt_in_with_proof`` (Code de la consommation art. L.223-1 as amended
        by loi n° 2025-594 du 30 juin 2025, art. 13: prior consent that the professional can
        prove), from ``phone_consent_since``; before that date, ``opt_out`` plus the Bloctel
        opposition list (the planner applies the list as ``suppressed_opposition``);
      * telephone, B2B: ``opt_out`` (L.223-1 protects consumers only);
      * push notifications: ``opt_in`` (loi Informatique et Libertés art. 82, consent to write
        on the terminal; the operating system's own prompt).

    - ``soft_opt_in_channels``: where a customer who bought from the brand may be contacted
      about similar products unless they objected (the CPCE L.34-5 exception). Never under
      ``opt_in_with_proof``.
    - ``contract_exception_channels``: where a customer with a contract or purchase relationship
      in progress may be contacted about it without consent, unless they objected (L.223-1 for
      the telephone, both before and after the switch: it also lifts the opposition list).
    - ``phone_consent_since``: the day (Paris time) from which B2C telephone needs provable
      consent; ``None`` applies ``regimes[("phone", "b2c")]`` at every date.
    """

    regimes: Mapping[tuple[str, str], Regime] = field(default_factory=_french_regimes)
    soft_opt_in_channels: frozenset[str] = frozenset({"email", "sms"})
    contract_exception_channels: frozenset[str] = frozenset({"phone"})
    phone_consent_since: date | None = date(2026, 8, 11)
    _phone_switch_at: datetime | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        regimes = dict(self.regimes)
        for key, regime in regimes.items():
            channel, audience = key
            name = f"regimes.{channel}.{audience}"
            if channel not in CONTACT_CHANNELS:
                raise ValueError(f"{name}: channel must be one of {', '.join(CONTACT_CHANNELS)}")
            if audience not in AUDIENCES:
                raise ValueError(f"{name}: audience must be one of {', '.join(AUDIENCES)}")
            if regime not in REGIMES:
                raise ValueError(f"{name}: {regime!r} is not one of {', '.join(REGIMES)}")
        missing = [f"{c}.{a}" for c in CONTACT_CHANNELS for a in AUDIENCES if (c, a) not in regimes]
        if missing:
            raise ValueError(f"regimes: no regime for {', '.join(missing)}")
        for name in ("soft_opt_in_channels", "contract_exception_channels"):
            unknown = sorted(set(getattr(self, name)) - set(CONTACT_CHANNELS))
            if unknown:
                raise ValueError(f"{name}: {unknown[0]!r} is not a channel")
        object.__setattr__(self, "regimes", MappingProxyType(regimes))
        if self.phone_consent_since is not None:
            switch = datetime.combine(self.phone_consent_since, time(), _PARIS).astimezone(UTC)
            object.__setattr__(self, "_phone_switch_at", switch)

    def regime(self, channel: str, audience: str, now: datetime) -> Regime:
        """The regime in force at ``now`` for a channel and an audience.

        >>> FRENCH_DEFAULTS.regime("phone", "b2c", datetime(2026, 8, 10, 12, tzinfo=UTC))
        'opt_out'
        """
        try:
            regime = self.regimes[(channel, audience)]
        except KeyError:
            raise ValueError(f"no consent regime for channel {channel!r}, {audience!r}") from None
        switch = self._phone_switch_at
        if switch is not None and channel == "phone" and audience == "b2c" and now < switch:
            return "opt_out"
        return regime

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base: ConsentPolicy | None = None
    ) -> ConsentPolicy:
        """A policy from configuration, each key overriding ``base`` (the French defaults).

        Keys: ``regimes`` (``{channel: {audience: regime}}``, only the pairs to change),
        ``soft_opt_in_channels`` and ``contract_exception_channels`` (lists of channels),
        ``phone_consent_since`` (``YYYY-MM-DD``, a date, or null). A bad key or value raises
        ValueError naming it.

        >>> policy = ConsentPolicy.from_mapping({"regimes": {"postal": {"b2c": "opt_in"}}})
        >>> policy.regimes[("postal", "b2c")], policy.regimes[("email", "b2b")]
        ('opt_in', 'opt_out')
        """
        start = FRENCH_DEFAULTS if base is None else base
        if not isinstance(data, Mapping):
            raise ValueError("consent policy: expected a mapping of settings")
        known = ("regimes", "soft_opt_in_channels", "contract_exception_channels")
        unknown = [k for k in data if k not in (*known, "phone_consent_since")]
        if unknown:
            raise ValueError(f"consent policy: unknown key {unknown[0]!r}")
        regimes = dict(start.regimes)
        overrides = data.get("regimes", {})
        if not isinstance(overrides, Mapping):
            raise ValueError("consent policy: regimes: expected {channel: {audience: regime}}")
        for channel, per_audience in overrides.items():
            if channel not in CONTACT_CHANNELS:
                raise ValueError(
                    f"consent policy: regimes.{channel}: not one of {', '.join(CONTACT_CHANNELS)}"
                )
            if not isinstance(per_audience, Mapping):
                raise ValueError(
                    f"consent policy: regimes.{channel}: expected {{audience: regime}}"
                )
            for audience, regime in per_audience.items():
                name = f"regimes.{channel}.{audience}"
                if audience not in AUDIENCES:
                    raise ValueError(f"consent policy: {name}: audience must be b2c or b2b")
                if regime not in REGIMES:
                    raise ValueError(
                        f"consent policy: {name}: {regime!r} is not one of {', '.join(REGIMES)}"
                    )
                regimes[(channel, audience)] = cast(Regime, regime)
        sets: dict[str, frozenset[str]] = {}
        for name in ("soft_opt_in_channels", "contract_exception_channels"):
            value = data.get(name, getattr(start, name))
            if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
                raise ValueError(f"consent policy: {name}: expected a list of channels")
            for channel in value:
                if channel not in CONTACT_CHANNELS:
                    raise ValueError(f"consent policy: {name}: {channel!r} is not a channel")
            sets[name] = frozenset(value)
        since = data.get("phone_consent_since", start.phone_consent_since)
        if isinstance(since, str):
            try:
                since = date.fromisoformat(since.strip())
            except ValueError:
                raise ValueError(
                    f"consent policy: phone_consent_since: {since!r} is not a date (YYYY-MM-DD)"
                ) from None
        if isinstance(since, datetime) or not (since is None or isinstance(since, date)):
            raise ValueError("consent policy: phone_consent_since: expected a date (YYYY-MM-DD)")
        return cls(
            regimes=regimes,
            soft_opt_in_channels=sets["soft_opt_in_channels"],
            contract_exception_channels=sets["contract_exception_channels"],
            phone_consent_since=since,
        )


FRENCH_DEFAULTS: Final = ConsentPolicy()


@dataclass(frozen=True, slots=True)
class ConsentFact:
    """One recorded expression of will: a consent row reduced to what the rules read.

    ``channel`` is a contact channel or ``"any"``; ``brand_id`` None means group-wide;
    ``status`` is granted, denied or withdrawn.
    """

    channel: str
    purpose: str
    brand_id: int | None
    status: str
    collected_at: datetime
    has_proof: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a channel may be used. ``basis`` is a short code: for an allowance, why
    (``opt_in``, ``opt_in_with_proof``, ``soft_opt_in``, ``contract_exception``,
    ``opt_out_regime``); for a refusal, the regime that refused (or what the planner checked,
    such as ``contact_point`` or ``suppression``)."""

    allowed: bool
    reason: Reason | None
    basis: str


_ALLOW_OPT_IN: Final = Decision(True, None, "opt_in")
_ALLOW_WITH_PROOF: Final = Decision(True, None, "opt_in_with_proof")
_ALLOW_SOFT: Final = Decision(True, None, "soft_opt_in")
_ALLOW_CONTRACT: Final = Decision(True, None, "contract_exception")
_ALLOW_OPT_OUT: Final = Decision(True, None, "opt_out_regime")
_REFUSALS: Final[Mapping[tuple[Reason, str], Decision]] = {
    (reason, regime): Decision(False, reason, regime)
    for reason in (Reason.OPTED_OUT, Reason.NO_CONSENT, Reason.CONSENT_WITHOUT_PROOF)
    for regime in REGIMES
}


def decide_consent(
    policy: ConsentPolicy,
    *,
    channel: str,
    purpose: str,
    brand_id: int | None,
    audience: str,
    facts: Sequence[ConsentFact],
    bought_from_brand: bool,
    has_contract: bool,
    now: datetime,
) -> Decision:
    """Whether ``channel`` may carry a message of ``purpose`` from ``brand_id`` to a customer.

    The facts that apply are those for this channel or ``"any"``, this purpose, and this brand
    or the whole group (brand_id None). The latest by ``collected_at`` is the customer's current
    will, whether brand-specific or group-wide; on a tie a refusal beats a grant, and a grant
    with proof beats one without. Then, by the regime in force at ``now``:

    - ``opt_out``: allowed unless that fact is a denial or withdrawal (``opted_out``);
    - ``opt_in``: allowed by a grant; without any fact, by soft opt-in (channel enabled and
      ``bought_from_brand``) or the contract exception (channel enabled and ``has_contract``);
      otherwise ``no_consent``; a denial gives ``opted_out``;
    - ``opt_in_with_proof``: as ``opt_in``, but only a grant with proof counts, soft opt-in never
      applies, and a grant without proof gives ``consent_without_proof`` unless the contract
      exception allows.

    - ``opt_out``: the basis is ``contract_exception`` when it applies (for the telephone it
      also lifts the opposition list), else ``opt_in`` after a grant, else ``opt_out_regime``.

    >>> grant = datetime(2025, 1, 1, tzinfo=UTC)
    >>> facts = [ConsentFact("email", "marketing", None, "granted", grant)]
    >>> decide_consent(FRENCH_DEFAULTS, channel="email", purpose="marketing", brand_id=3,
    ...     audience="b2c", facts=facts, bought_from_brand=False, has_contract=False,
    ...     now=datetime(2026, 1, 1, tzinfo=UTC))
    Decision(allowed=True, reason=None, basis='opt_in')
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    regime = policy.regime(channel, audience, now)
    winner: ConsentFact | None = None
    winner_rank = -1
    for fact in facts:
        if (
            fact.purpose != purpose
            or (fact.channel != channel and fact.channel != "any")
            or (fact.brand_id is not None and fact.brand_id != brand_id)
        ):
            continue
        rank = 2 if fact.status != "granted" else int(fact.has_proof)
        if (
            winner is None
            or fact.collected_at > winner.collected_at
            or (fact.collected_at == winner.collected_at and rank > winner_rank)
        ):
            winner, winner_rank = fact, rank
    if winner is not None and winner_rank == 2:
        return _REFUSALS[(Reason.OPTED_OUT, regime)]
    contract = has_contract and channel in policy.contract_exception_channels
    if regime == "opt_out":
        if contract:
            return _ALLOW_CONTRACT
        return _ALLOW_OPT_OUT if winner is None else _ALLOW_OPT_IN
    if regime == "opt_in":
        if winner is not None:
            return _ALLOW_OPT_IN
        if bought_from_brand and channel in policy.soft_opt_in_channels:
            return _ALLOW_SOFT
        if contract:
            return _ALLOW_CONTRACT
        return _REFUSALS[(Reason.NO_CONSENT, regime)]
    # opt_in_with_proof
    if winner is not None and winner.has_proof:
        return _ALLOW_WITH_PROOF
    if contract:
        return _ALLOW_CONTRACT
    if winner is not None:
        return _REFUSALS[(Reason.CONSENT_WITHOUT_PROOF, regime)]
    return _REFUSALS[(Reason.NO_CONSENT, regime)]


# --------------------------------------------------------------------------------------------
# Contact points and channel choice


def has_contact_point(
    channel: str,
    *,
    email_valid: bool,
    mobile_valid: bool,
    phone_valid: bool,
    address_complete: bool,
    push_token: bool = False,
) -> bool:
    """Whether the customer can be reached on ``channel``: email needs a valid email, SMS a
    mobile, phone a mobile or a fixed line, postal a complete address, push a device token.

    >>> has_contact_point("phone", email_valid=False, mobile_valid=True, phone_valid=False,
    ...     address_complete=False)
    True
    """
    if channel == "email":
        return email_valid
    if channel == "sms":
        return mobile_valid
    if channel == "phone":
        return mobile_valid or phone_valid
    if channel == "postal":
        return address_complete
    if channel == "push":
        return push_token
    raise ValueError(f"{channel!r} is not one of {', '.join(CONTACT_CHANNELS)}")


def choose_channel(
    order: Sequence[str], allowed: Mapping[str, Decision], *, preferred: str | None
) -> tuple[str | None, Reason | None]:
    """The channel to use and, when there is none, why.

    ``order`` is the campaign's channels in fallback order; ``allowed`` the planner's decision
    per channel (consent, suppression and contact point folded into one). The customer's
    preferred channel wins if the campaign has it and it is allowed; otherwise the first allowed
    channel in ``order``. With none, the reason is the most telling of the refusals by
    :data:`REASON_PRECEDENCE` (opted_out > suppressions > consent_without_proof > no_consent >
    restricted_source > hard bounce > no_contact_point > ...). A channel missing from
    ``allowed`` counts as refused without a reason; ValueError if no reason is left at all.

    >>> no = Decision(False, Reason.NO_CONSENT, "opt_in")
    >>> yes = Decision(True, None, "opt_out_regime")
    >>> choose_channel(["email", "postal"], {"email": no, "postal": yes}, preferred="sms")
    ('postal', None)
    """
    if preferred is not None and preferred in order:
        decision = allowed.get(preferred)
        if decision is not None and decision.allowed:
            return preferred, None
    best: Reason | None = None
    for channel in order:
        decision = allowed.get(channel)
        if decision is None:
            continue
        if decision.allowed:
            return channel, None
        reason = decision.reason
        if reason is not None and (best is None or _RANK[reason] < _RANK[best]):
            best = reason
    if best is None:
        raise ValueError("no channel allowed and no refusal reason given for the campaign channels")
    return None, best


# --------------------------------------------------------------------------------------------
# Contact windows


@dataclass(frozen=True, slots=True)
class _Window:
    # weekday flags (Monday first), None for any day; [start, end) spans in minutes of the day
    weekdays: tuple[bool, ...] | None
    spans: tuple[tuple[int, int], ...]

    def next_wall(self, wall: datetime) -> datetime:
        """The first naive wall time >= ``wall`` inside the window."""
        minute = wall.hour * 60 + wall.minute
        weekday = wall.weekday()
        weekdays = self.weekdays
        for k in range(8):
            if weekdays is not None and not weekdays[(weekday + k) % 7]:
                continue
            for start, end in self.spans:
                if k == 0:
                    if minute >= end:
                        continue
                    if minute >= start:
                        return wall
                midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
                return midnight + timedelta(days=k, minutes=start)
        raise AssertionError("a window always has a day and a span")  # pragma: no cover


_ANY_TIME: Final[tuple[tuple[int, int], ...]] = ((0, 24 * 60),)


@lru_cache(maxsize=4096)
def _window(days: str | None, hours: str | None) -> _Window | None:
    """The parsed window, None when it allows any time; raises ConsentRuleError if invalid."""
    day_text = parse_days(days)
    hour_text = parse_hours(hours)
    if day_text is None and hour_text is None:
        return None
    weekdays = None
    if day_text is not None:
        chosen = set(day_text.split(","))
        weekdays = tuple(d in chosen for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    spans = _ANY_TIME
    if hour_text is not None:
        spans = tuple(
            (int(a[:2]) * 60 + int(a[3:5]), int(b[:2]) * 60 + int(b[3:5]))
            for a, b in (span.split("-") for span in hour_text.split(","))
        )
    return _Window(weekdays, spans)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a known time zone") from None


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _offset_at(zone: ZoneInfo, seconds: int) -> timedelta:
    return datetime.fromtimestamp(seconds, zone).utcoffset() or timedelta(0)


def _transition(zone: ZoneInfo, before: datetime, after: datetime, offset: timedelta) -> datetime:
    """The first instant after ``before`` whose UTC offset is no longer ``offset``, knowing that
    ``after`` has another one (time-zone transitions fall on whole seconds)."""
    low = math.floor(before.timestamp())
    high = math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(zone, middle) == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


_MAX_TRANSITIONS: Final = 16


def next_contact_time(
    earliest: datetime,
    *,
    days: str | None,
    hours: str | None,
    tz: str,
    latest: datetime | None,
) -> datetime | None:
    """The first instant >= ``earliest`` (in UTC) whose local time in ``tz`` falls on one of
    ``days`` and inside one of ``hours``; None if that instant is after ``latest``.

    ``days`` and ``hours`` use the preference formats (``"mon,tue"``,
    ``"09:00-12:00,14:00-18:00"``); None means any. An instant is allowed when its local
    wall-clock time is, so daylight-saving changes behave as a clock on the wall does: a span
    that does not exist on the spring-forward day (02:00-03:00 in Paris) is skipped, a span
    partly in the gap opens at the first valid instant (03:00), and on the fall-back day a span
    in the repeated hour opens at its first occurrence (and its wall times are allowed in both
    passes). Assumes the zone's offset does not change twice, and back, within eight days.

    >>> next_contact_time(datetime(2026, 3, 28, 23, 30, tzinfo=UTC), days="sun",
    ...     hours="02:30-04:00", tz="Europe/Paris", latest=None)
    datetime.datetime(2026, 3, 29, 1, 0, tzinfo=datetime.timezone.utc)
    """
    if earliest.tzinfo is None or (latest is not None and latest.tzinfo is None):
        raise ValueError("earliest and latest must be aware datetimes")
    window = _window(days, hours)
    zone = _zone(tz)
    instant = earliest.astimezone(UTC)
    if window is None:
        return instant if latest is None or instant <= latest else None
    for _ in range(_MAX_TRANSITIONS):
        if latest is not None and instant > latest:
            return None
        offset = _offset(zone, instant)
        wall = (instant + offset).replace(tzinfo=None)
        target = window.next_wall(wall)
        if target == wall:
            return instant if latest is None or instant <= latest else None
        found = instant + (target - wall)
        if _offset(zone, found) == offset:
            return found if latest is None or found <= latest else None
        # The offset changed before the wall time was reached: start again from the change.
        instant = _transition(zone, instant, found, offset)
    raise ValueError(f"time zone {tz!r} changes offset too often to place a contact")


# --------------------------------------------------------------------------------------------
# Marketing pressure

_DURATION: Final = re.compile(r"(\d+)\s*([wdhm])")
_UNITS: Final[Mapping[str, timedelta]] = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}


def parse_duration(text: str | timedelta) -> timedelta:
    """A positive duration from ``"7d"``, ``"48h"``, ``"30m"`` or ``"2w"`` (a timedelta is
    returned as is); ValueError otherwise.

    >>> parse_duration(" 48h ")
    datetime.timedelta(days=2)
    """
    if isinstance(text, timedelta):
        value = text
    elif isinstance(text, str) and (found := _DURATION.fullmatch(text.strip().lower())):
        value = int(found.group(1)) * _UNITS[found.group(2)]
    else:
        raise ValueError(f"{text!r} is not a duration such as 7d, 48h or 30m")
    if value <= timedelta(0):
        raise ValueError(f"{text!r}: a duration must be positive")
    return value


def format_duration(value: timedelta) -> str:
    """The text :func:`parse_duration` reads back, in days, hours or minutes (whole minutes).

    >>> format_duration(timedelta(hours=48)), format_duration(timedelta(hours=36))
    ('2d', '36h')
    """
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("d", 24 * 60), ("h", 60)):
        if minutes % size == 0 and minutes >= size:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


@dataclass(frozen=True, slots=True)
class CapRule:
    """At most ``max_contacts`` contacts in any window of length ``period``, counting one
    channel (or all when ``channel`` is None), and only the same brand's contacts when
    ``per_brand`` (else the whole group's)."""

    name: str
    max_contacts: int
    period: timedelta
    channel: str | None = None
    per_brand: bool = False

    def describe(self) -> str:
        """The rule as it appears in an exclusion's detail: ``"weekly: at most 3 in 7d"``."""
        return f"{self.name}: at most {self.max_contacts} in {format_duration(self.period)}"


@dataclass(frozen=True, slots=True)
class PressurePolicy:
    """The caps, the minimum gap between two contacts (None for none) and the purposes that
    never count nor are blocked (transactional messages)."""

    caps: tuple[CapRule, ...]
    min_gap: timedelta | None = None
    exempt_purposes: tuple[str, ...] = ("transactional",)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PressurePolicy:
        """A policy from configuration; ValueError naming the bad key.

        >>> PressurePolicy.from_mapping({"caps": [{"name": "weekly", "max": 3, "period": "7d"}],
        ...     "min_gap": "48h"}).min_gap
        datetime.timedelta(days=2)
        """
        if not isinstance(data, Mapping):
            raise ValueError("pressure policy: expected a mapping of settings")
        for key in data:
            if key not in ("caps", "min_gap", "exempt_purposes"):
                raise ValueError(f"pressure policy: unknown key {key!r}")
        raw_caps = data.get("caps", [])
        if isinstance(raw_caps, str | bytes) or not isinstance(raw_caps, Sequence):
            raise ValueError("pressure policy: caps: expected a list of rules")
        caps: list[CapRule] = []
        for i, raw in enumerate(raw_caps):
            caps.append(_cap_from_mapping(raw, f"caps[{i}]"))
        names = [c.name for c in caps]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"pressure policy: caps: the name {name!r} is used twice")
        gap = data.get("min_gap")
        try:
            min_gap = None if gap is None else parse_duration(gap)
        except ValueError as error:
            raise ValueError(f"pressure policy: min_gap: {error}") from None
        exempt = data.get("exempt_purposes", ("transactional",))
        if (
            isinstance(exempt, str)
            or not isinstance(exempt, Sequence)
            or not all(isinstance(p, str) and p for p in exempt)
        ):
            raise ValueError("pressure policy: exempt_purposes: expected a list of purposes")
        return cls(caps=tuple(caps), min_gap=min_gap, exempt_purposes=tuple(exempt))


def _cap_from_mapping(raw: Any, where: str) -> CapRule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"pressure policy: {where}: expected a mapping")
    for key in raw:
        if key not in ("name", "max", "period", "channel", "per_brand"):
            raise ValueError(f"pressure policy: {where}.{key}: unknown key")
    for key in ("name", "max", "period"):
        if key not in raw:
            raise ValueError(f"pressure policy: {where}.{key}: missing")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"pressure policy: {where}.name: expected a name")
    most = raw["max"]
    if isinstance(most, bool) or not isinstance(most, int) or most < 0:
        raise ValueError(f"pressure policy: {where}.max: expected a whole number >= 0")
    try:
        period = parse_duration(raw["period"])
    except ValueError as error:
        raise ValueError(f"pressure policy: {where}.period: {error}") from None
    channel = raw.get("channel")
    if channel is not None and channel not in CONTACT_CHANNELS:
        raise ValueError(
            f"pressure policy: {where}.channel: {channel!r} is not one of "
            f"{', '.join(CONTACT_CHANNELS)}"
        )
    per_brand = raw.get("per_brand", False)
    if not isinstance(per_brand, bool):
        raise ValueError(f"pressure policy: {where}.per_brand: expected true or false")
    return CapRule(name.strip(), most, period, channel, per_brand)


DEFAULT_PRESSURE: Final = PressurePolicy(
    caps=(
        CapRule("weekly", 3, timedelta(days=7)),
        CapRule("sms_weekly", 1, timedelta(days=7), channel="sms"),
    ),
    min_gap=timedelta(hours=48),
)


@dataclass(frozen=True, slots=True)
class Contact:
    """A contact with a customer, past or planned: when, on which channel, for which brand
    (None for the group) and purpose."""

    at: datetime
    channel: str
    brand_id: int | None
    purpose: str


def _busiest(times: list[datetime], at: datetime, period: timedelta) -> int:
    """The most of ``times`` (sorted, all within ``period`` of ``at``) that one window
    ``[t, t + period)`` containing ``at`` holds. Such a window holds the most when it starts at
    one of the times or at ``at`` itself."""
    best = 0
    for start in (*(t for t in times if t <= at), at):
        count = bisect_left(times, start + period) - bisect_left(times, start)
        best = max(best, count)
    return best


def check_pressure(
    policy: PressurePolicy, history: Sequence[Contact], proposed: Contact
) -> tuple[Reason, str] | None:
    """None if ``proposed`` fits the policy given ``history`` (past and already planned
    contacts), else the reason and the rule's detail.

    A cap holds when every window ``[t, t + period)`` (rolling, half-open: two contacts exactly
    one period apart never share one) that contains the proposed contact holds at most
    ``max_contacts`` contacts with it. Counting history within ``period`` on both sides at once
    would over-count; the check slides the window over the sorted times instead. A cap on a
    channel applies only to a contact on that channel; a per-brand cap counts only contacts of
    the proposed contact's brand. The gap holds when no contact is strictly less than
    ``min_gap`` before or after. Exempt purposes never count and are never refused. Caps are
    checked in their order, then the gap.

    >>> day = datetime(2026, 5, 4, 9, tzinfo=UTC)
    >>> history = [Contact(day - timedelta(days=d), "email", 1, "marketing") for d in (2, 4, 6)]
    >>> check_pressure(DEFAULT_PRESSURE, history, Contact(day, "email", 1, "marketing"))
    (<Reason.PRESSURE_CAP: 'pressure_cap'>, 'weekly: at most 3 in 7d')
    """
    exempt = policy.exempt_purposes
    if proposed.purpose in exempt:
        return None
    if not history:  # the common case in a plan: only a cap of 0 can refuse
        for cap in policy.caps:
            if cap.max_contacts == 0 and cap.channel in (None, proposed.channel):
                return Reason.PRESSURE_CAP, cap.describe()
        return None
    at = proposed.at
    for cap in policy.caps:
        channel = cap.channel
        if channel is not None and channel != proposed.channel:
            continue
        low, high = at - cap.period, at + cap.period
        times = [
            c.at
            for c in history
            if low < c.at < high
            and c.purpose not in exempt
            and (channel is None or c.channel == channel)
            and (not cap.per_brand or c.brand_id == proposed.brand_id)
        ]
        if len(times) < cap.max_contacts:
            continue
        times.sort()
        if _busiest(times, at, cap.period) >= cap.max_contacts:
            return Reason.PRESSURE_CAP, cap.describe()
    gap = policy.min_gap
    if gap is not None:
        for c in history:
            if c.purpose not in exempt and abs(c.at - at) < gap:
                return Reason.PRESSURE_GAP, f"min_gap: {format_duration(gap)}"
    return None


# --------------------------------------------------------------------------------------------
# Arbitration


@dataclass(frozen=True, slots=True)
class Candidate:
    """A campaign's proposed contact with one customer; higher ``priority`` wins, then higher
    ``expected_value``, then the lower ``campaign_id``."""

    campaign_id: int
    priority: int
    expected_value: float
    contact: Contact

    def __post_init__(self) -> None:
        if math.isnan(self.expected_value):
            raise ValueError("expected_value must be a number, not NaN")


def arbitrate(
    policy: PressurePolicy, history: Sequence[Contact], candidates: Sequence[Candidate]
) -> tuple[list[Candidate], list[tuple[Candidate, Reason, str]]]:
    """The candidates accepted for one customer, and the refused ones with reason and detail.

    Candidates are taken by priority (highest first), expected value (highest first) and
    campaign id (lowest first); each is accepted if :func:`check_pressure` passes against the
    history plus the contacts accepted so far. A refused candidate that history alone would
    have let through gets ``lost_arbitration``, its detail naming the first accepted campaign
    whose contact made it fail and the rule: ``"campaign 7 (weekly: at most 3 in 7d)"``.
    Otherwise it keeps the reason history alone gives (``pressure_cap`` or ``pressure_gap``).
    Both lists are in arbitration order.
    """
    ordered = sorted(candidates, key=lambda c: (-c.priority, -c.expected_value, c.campaign_id))
    accepted: list[Candidate] = []
    refused: list[tuple[Candidate, Reason, str]] = []
    base = list(history)
    for candidate in ordered:
        verdict = check_pressure(policy, base, candidate.contact)
        if verdict is None:
            accepted.append(candidate)
            base.append(candidate.contact)
            continue
        alone = check_pressure(policy, history, candidate.contact)
        if alone is not None:
            refused.append((candidate, alone[0], alone[1]))
            continue
        trial = list(history)
        for winner in accepted:
            trial.append(winner.contact)
            caused = check_pressure(policy, trial, candidate.contact)
            if caused is not None:
                detail = f"campaign {winner.campaign_id} ({caused[1]})"
                refused.append((candidate, Reason.LOST_ARBITRATION, detail))
                break
        else:  # pragma: no cover - adding contacts never makes room, so a winner is found above
            refused.append((candidate, verdict[0], verdict[1]))
    return accepted, refused


# --------------------------------------------------------------------------------------------
# Control group and language


def control_bucket(customer_id: int | str, salt: str) -> float:
    """A stable number in [0, 1) for a customer (or a randomization unit's text: a household,
    a shared address): the first 53 bits of the SHA-256 digest of the UTF-8 text
    ``f"{salt}:{customer_id}"``, divided by 2**53. It depends on nothing else, so it
    is the same in every process, on every machine and in every version; changing the salt
    (one per campaign) draws a new, independent group.

    >>> round(control_bucket(1, "spring-sale"), 6)
    0.807687
    """
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / 2**53


def in_control(unit: int | str, salt: str, share: float) -> bool:
    """Whether a randomization unit (a customer's id, or the text of their household or shared
    e-mail address: ``service.randomization_unit``) is held out: ``control_bucket < share``,
    share between 0 and 0.5.

    >>> in_control(1, "spring-sale", 0.0)
    False
    """
    if not 0.0 <= share <= 0.5:
        raise ValueError("the control share must be between 0 and 0.5")
    return control_bucket(unit, salt) < share


# --------------------------------------------------------------------------------------------
# A/B variants

DEFAULT_VARIANT: Final = "A"
VARIANT_NAME: Final = re.compile(r"[A-Z][A-Z0-9]{0,7}")
# How far the shares may add up from 1 (shares typed as 0.333, 0.333, 0.334 are fine).
SHARE_TOLERANCE: Final = 1e-6


def check_variant_name(name: str) -> str:
    """The name, when it is a variant's: one to eight capital letters or digits, starting with
    a letter (A, B, C... or B2). Raises ValueError otherwise.

    >>> check_variant_name("B")
    'B'
    """
    if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
        raise ValueError(
            f"variant {name!r}: one to eight capital letters or digits, starting with a letter"
            " (A, B, C...)"
        )
    return name


def variant_shares(
    variants: Sequence[str], shares: Mapping[str, Any] | None
) -> tuple[tuple[str, float], ...]:
    """The variants (in name order) with the share of the target group each one gets: the
    ``shares`` given (variant -> share, each above 0, adding up to 1), or equal shares when
    ``shares`` is empty. Raises ValueError, starting with ``variant_shares:``, on a share
    that is not a number or not above 0, shares not adding up to 1, a share for a variant
    not in ``variants`` or a variant without one.

    >>> variant_shares(["B", "A"], None)
    (('A', 0.5), ('B', 0.5))
    >>> variant_shares(["A", "B"], {"A": 0.7, "B": 0.3})
    (('A', 0.7), ('B', 0.3))
    """
    names = sorted({check_variant_name(v) for v in variants}) or [DEFAULT_VARIANT]
    if not shares:
        return tuple((name, 1.0 / len(names)) for name in names)
    given: dict[str, float] = {}
    for name, raw in shares.items():
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise ValueError(f"variant_shares: the share of {name} must be a number above 0")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(
                f"variant_shares: the share of {name} must be a number above 0"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"variant_shares: the share of {name} must be a number above 0")
        given[str(name)] = value
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(
            f"variant_shares: variant {unknown[0]} has no message (variants: {', '.join(names)})"
        )
    missing = [name for name in names if name not in given]
    if missing:
        raise ValueError(f"variant_shares: no share for variant {missing[0]}")
    total = math.fsum(given.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"variant_shares: the shares add up to {total:g}, not 1")
    return tuple((name, given[name] / total) for name in names)


def variants_of(
    messages: Iterable[tuple[str, str, str]], shares: Mapping[str, Any] | None
) -> tuple[tuple[str, float], ...]:
    """The variants of a campaign's messages, (channel, language, variant) each, with their
    shares (:func:`variant_shares`). Every variant must have a message for every channel and
    language another variant has: the channel and the language are chosen before the
    variant is drawn, and an arm that could not carry one would lose customers the others
    keep. Raises ValueError naming the first message missing.

    >>> variants_of([("email", "fr", "A"), ("email", "fr", "B")], {})
    (('A', 0.5), ('B', 0.5))
    """
    have = set(messages)
    names = sorted({variant for _, _, variant in have})
    pairs = sorted({(channel, language) for channel, language, _ in have})
    for name in names:
        for channel, language in pairs:
            if (channel, language, name) not in have:
                raise ValueError(
                    f"variant {name}: no {channel} message in {language!r} (every variant needs"
                    " a message for each channel and language the other variants have)"
                )
    return variant_shares(names, shares)


def pick_variant(unit: int | str, salt: str, shares: Sequence[tuple[str, float]]) -> str:
    """The variant a randomization unit gets: its bucket with the campaign's salt followed
    by ``:variant`` (``control_bucket(unit, salt + ":variant")``, independent of the control
    draw) falls into one of the consecutive intervals the shares cut [0, 1) into, in the
    order given (:func:`variant_shares`). Stable: the same unit, salt and shares always give
    the same variant.

    >>> pick_variant(1, "spring-sale", (("A", 1.0),))
    'A'
    """
    if len(shares) == 1:
        return shares[0][0]
    point = control_bucket(unit, f"{salt}:variant")
    reached = 0.0
    for name, share in shares:
        reached += share
        if point < reached:
            return name
    return shares[-1][0]  # the sum fell a rounding error short of 1


def pick_language(available: Sequence[str], *, customer: str | None, default: str) -> str | None:
    """The language to send in, spelt as in ``available``, or None (``language_unavailable``).

    The customer's language if a message exists in it, else its base language (``fr`` for
    ``fr-BE``), else the default (or its base language); codes compare case-insensitively and
    ``_`` reads as ``-``.

    >>> pick_language(["fr", "en"], customer="fr-BE", default="en")
    'fr'
    >>> pick_language(["de"], customer="it", default="en") is None
    True
    """
    for wanted in (customer, default):
        if not wanted:
            continue
        code = wanted.strip().replace("_", "-").lower()
        base = code.split("-", 1)[0]
        for candidate in (code, base) if base != code else (code,):
            for language in available:
                if language.lower() == candidate:
                    return language
    return None
