"""The pure campaign rules: consent matrix, contact points, channel choice, contact windows
across daylight-saving changes, pressure caps, arbitration, control groups and languages."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.campaigns.rules import (
    CONTACT_CHANNELS,
    DEFAULT_PRESSURE,
    FRENCH_DEFAULTS,
    PHONE_PROSPECTING_DAYS,
    PHONE_PROSPECTING_HOURS,
    REASON_PRECEDENCE,
    REASON_TEXT,
    Candidate,
    CapRule,
    ConsentFact,
    ConsentPolicy,
    Contact,
    Decision,
    PressurePolicy,
    Reason,
    arbitrate,
    check_pressure,
    choose_channel,
    control_bucket,
    decide_consent,
    format_duration,
    has_contact_point,
    in_control,
    most_telling,
    next_contact_time,
    parse_duration,
    pick_language,
)
from tournesol.consent.rules import ConsentRuleError

AFTER = datetime(2026, 9, 1, 12, tzinfo=UTC)  # telephone needs provable consent
BEFORE = datetime(2026, 6, 1, 12, tzinfo=UTC)  # telephone on opt-out + Bloctel
T0 = datetime(2025, 3, 1, 10, tzinfo=UTC)


# --------------------------------------------------------------------------- reasons


def test_reason_codes_are_stable_lower_snake_strings() -> None:
    assert [r.value for r in Reason] == [
        "not_active",
        "erased",
        "control_group",
        "global_holdout",
        "no_consent",
        "opted_out",
        "consent_without_proof",
        "suppressed_unsubscribe",
        "suppressed_hard_bounce",
        "suppressed_complaint",
        "suppressed_opposition",
        "no_contact_point",
        "language_unavailable",
        "restricted_source",
        "pressure_cap",
        "pressure_gap",
        "lost_arbitration",
        "outside_contact_window",
    ]
    assert Reason("opted_out") is Reason.OPTED_OUT
    assert f"{Reason.PRESSURE_CAP}" == "pressure_cap"


def test_every_reason_has_a_text_and_a_single_place_in_the_precedence() -> None:
    assert set(REASON_TEXT) == set(Reason)
    assert all(text.strip().endswith(".") for text in REASON_TEXT.values())
    assert sorted(REASON_PRECEDENCE) == sorted(Reason)
    assert len(REASON_PRECEDENCE) == len(set(REASON_PRECEDENCE))
    assert REASON_PRECEDENCE.index(Reason.OPTED_OUT) < REASON_PRECEDENCE.index(
        Reason.CONSENT_WITHOUT_PROOF
    )
    assert REASON_PRECEDENCE.index(Reason.CONSENT_WITHOUT_PROOF) < REASON_PRECEDENCE.index(
        Reason.NO_CONSENT
    )
    assert REASON_PRECEDENCE.index(Reason.NO_CONSENT) < REASON_PRECEDENCE.index(
        Reason.NO_CONTACT_POINT
    )


def test_most_telling_follows_the_precedence() -> None:
    assert most_telling([]) is None
    assert most_telling([Reason.PRESSURE_GAP, Reason.NO_CONTACT_POINT]) == Reason.NO_CONTACT_POINT
    assert (
        most_telling([Reason.NO_CONSENT, Reason.SUPPRESSED_UNSUBSCRIBE])
        == Reason.SUPPRESSED_UNSUBSCRIBE
    )


# --------------------------------------------------------------------------- consent policy


def test_french_defaults_regimes() -> None:
    assert dict(FRENCH_DEFAULTS.regimes) == {
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
    assert FRENCH_DEFAULTS.soft_opt_in_channels == {"email", "sms"}
    assert FRENCH_DEFAULTS.contract_exception_channels == {"phone"}
    assert FRENCH_DEFAULTS.phone_consent_since == date(2026, 8, 11)
    assert ConsentPolicy() == FRENCH_DEFAULTS


def test_the_phone_switch_happens_at_midnight_paris_time() -> None:
    # 11 August 2026 00:00 in Paris is 10 August 22:00 UTC (summer time, UTC+2).
    just_before = datetime(2026, 8, 10, 21, 59, 59, tzinfo=UTC)
    at_switch = datetime(2026, 8, 10, 22, 0, tzinfo=UTC)
    assert FRENCH_DEFAULTS.regime("phone", "b2c", just_before) == "opt_out"
    assert FRENCH_DEFAULTS.regime("phone", "b2c", at_switch) == "opt_in_with_proof"
    # Only B2C telephone changes.
    assert FRENCH_DEFAULTS.regime("phone", "b2b", just_before) == "opt_out"
    assert FRENCH_DEFAULTS.regime("email", "b2c", just_before) == "opt_in"
    without_switch = ConsentPolicy.from_mapping({"phone_consent_since": None})
    assert without_switch.regime("phone", "b2c", BEFORE) == "opt_in_with_proof"


def test_the_policy_cannot_be_changed_in_place() -> None:
    with pytest.raises(TypeError):
        FRENCH_DEFAULTS.regimes[("postal", "b2c")] = "opt_in"  # type: ignore[index]


def test_from_mapping_overrides_only_what_it_names() -> None:
    policy = ConsentPolicy.from_mapping(
        {
            "regimes": {"postal": {"b2c": "opt_in"}, "email": {"b2b": "opt_in"}},
            "soft_opt_in_channels": ["email"],
            "contract_exception_channels": ["phone", "sms"],
            "phone_consent_since": "2027-01-01",
        }
    )
    assert policy.regimes[("postal", "b2c")] == "opt_in"
    assert policy.regimes[("email", "b2b")] == "opt_in"
    assert policy.regimes[("postal", "b2b")] == "opt_out"
    assert policy.regimes[("phone", "b2c")] == "opt_in_with_proof"
    assert policy.soft_opt_in_channels == {"email"}
    assert policy.contract_exception_channels == {"phone", "sms"}
    assert policy.regime("phone", "b2c", AFTER) == "opt_out"
    # YAML reads a bare date as a date object.
    assert ConsentPolicy.from_mapping({"phone_consent_since": date(2026, 1, 1)}).regime(
        "phone", "b2c", BEFORE
    ) == ("opt_in_with_proof")
    assert ConsentPolicy.from_mapping({}) == FRENCH_DEFAULTS


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"regime": {}}, "'regime'"),
        ({"regimes": {"fax": {"b2c": "opt_in"}}}, "regimes.fax"),
        ({"regimes": {"email": {"b2g": "opt_in"}}}, "regimes.email.b2g"),
        ({"regimes": {"email": {"b2c": "optin"}}}, "regimes.email.b2c"),
        ({"regimes": {"email": "opt_in"}}, "regimes.email"),
        ({"regimes": ["email"]}, "regimes"),
        ({"soft_opt_in_channels": "email"}, "soft_opt_in_channels"),
        ({"soft_opt_in_channels": ["mail"]}, "soft_opt_in_channels"),
        ({"contract_exception_channels": ["any"]}, "contract_exception_channels"),
        ({"phone_consent_since": "11/08/2026"}, "phone_consent_since"),
        ({"phone_consent_since": 2026}, "phone_consent_since"),
    ],
)
def test_from_mapping_names_the_bad_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match="consent policy") as error:
        ConsentPolicy.from_mapping(data)
    assert named in str(error.value)


def test_a_policy_missing_a_regime_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no regime for push\.b2c, push\.b2b"):
        ConsentPolicy(regimes={k: v for k, v in FRENCH_DEFAULTS.regimes.items() if k[0] != "push"})


# --------------------------------------------------------------------------- consent decisions


def _fact(
    status: str,
    *,
    proof: bool = False,
    channel: str = "email",
    purpose: str = "marketing",
    brand_id: int | None = None,
    at: datetime = T0,
) -> ConsentFact:
    return ConsentFact(channel, purpose, brand_id, status, at, has_proof=proof)


# (name, facts' statuses as (status, has_proof), bought_from_brand, has_contract)
SITUATIONS: list[tuple[str, list[tuple[str, bool]], bool, bool]] = [
    ("nothing", [], False, False),
    ("granted_proof", [("granted", True)], False, False),
    ("granted_no_proof", [("granted", False)], False, False),
    ("denied", [("denied", False)], False, False),
    ("withdrawn", [("withdrawn", True)], False, False),
    ("bought", [], True, False),
    ("contract", [], False, True),
    ("granted_no_proof_contract", [("granted", False)], False, True),
    ("denied_contract", [("denied", False)], False, True),
    ("denied_bought", [("denied", False)], True, False),
]

# One row per channel x audience x date; one outcome per situation above, in order.
# A plain word is the basis of an allowance; "!" marks a refusal with its reason.
OPT_IN_SOFT = (
    "!no_consent opt_in opt_in !opted_out !opted_out soft_opt_in !no_consent opt_in "
    "!opted_out !opted_out"
)
OPT_OUT = (
    "opt_out_regime opt_in opt_in !opted_out !opted_out opt_out_regime opt_out_regime opt_in "
    "!opted_out !opted_out"
)
OPT_OUT_CONTRACT = (
    "opt_out_regime opt_in opt_in !opted_out !opted_out opt_out_regime contract_exception "
    "contract_exception !opted_out !opted_out"
)
PROOF_CONTRACT = (
    "!no_consent opt_in_with_proof !consent_without_proof !opted_out !opted_out !no_consent "
    "contract_exception contract_exception !opted_out !opted_out"
)
OPT_IN_STRICT = (
    "!no_consent opt_in opt_in !opted_out !opted_out !no_consent !no_consent opt_in "
    "!opted_out !opted_out"
)
MATRIX: list[tuple[str, str, datetime, str]] = [
    (channel, audience, when, expected)
    for when in (BEFORE, AFTER)
    for channel, audience, expected in [
        ("email", "b2c", OPT_IN_SOFT),
        ("sms", "b2c", OPT_IN_SOFT),
        ("email", "b2b", OPT_OUT),
        ("sms", "b2b", OPT_OUT),
        ("postal", "b2c", OPT_OUT),
        ("postal", "b2b", OPT_OUT),
        ("phone", "b2c", PROOF_CONTRACT if when is AFTER else OPT_OUT_CONTRACT),
        ("phone", "b2b", OPT_OUT_CONTRACT),
        ("push", "b2c", OPT_IN_STRICT),
        ("push", "b2b", OPT_IN_STRICT),
    ]
]


def test_the_matrix_covers_every_channel_and_audience() -> None:
    assert {(c, a) for c, a, _, _ in MATRIX} == set(FRENCH_DEFAULTS.regimes)
    assert {c for c, _, _, _ in MATRIX} == set(CONTACT_CHANNELS)
    assert len(MATRIX) == 2 * len(CONTACT_CHANNELS) * 2


@pytest.mark.parametrize(
    ("channel", "audience", "when", "expected"),
    MATRIX,
    ids=[f"{c}-{a}-{'after' if w is AFTER else 'before'}" for c, a, w, _ in MATRIX],
)
def test_consent_matrix(channel: str, audience: str, when: datetime, expected: str) -> None:
    outcomes = expected.split()
    assert len(outcomes) == len(SITUATIONS)
    for (name, statuses, bought, contract), outcome in zip(SITUATIONS, outcomes, strict=True):
        facts = [_fact(s, proof=p, channel=channel) for s, p in statuses]
        decision = decide_consent(
            FRENCH_DEFAULTS,
            channel=channel,
            purpose="marketing",
            brand_id=1,
            audience=audience,
            facts=facts,
            bought_from_brand=bought,
            has_contract=contract,
            now=when,
        )
        regime = FRENCH_DEFAULTS.regime(channel, audience, when)
        if outcome.startswith("!"):
            assert decision == Decision(False, Reason(outcome[1:]), regime), name
        else:
            assert decision == Decision(True, None, outcome), name


def test_the_latest_expression_of_will_wins_brand_or_group_wide() -> None:
    def decide(*facts: ConsentFact) -> Decision:
        return decide_consent(
            FRENCH_DEFAULTS,
            channel="email",
            purpose="marketing",
            brand_id=7,
            audience="b2c",
            facts=facts,
            bought_from_brand=False,
            has_contract=False,
            now=AFTER,
        )

    day = timedelta(days=1)
    group_grant = _fact("granted", at=T0)
    brand_denial = _fact("denied", brand_id=7, at=T0 + day)
    assert decide(group_grant, brand_denial).reason == Reason.OPTED_OUT
    # ... and a later group-wide grant overrides the earlier brand denial.
    assert decide(group_grant, brand_denial, _fact("granted", at=T0 + 2 * day)).allowed
    # A later brand grant overrides an earlier group-wide withdrawal.
    assert decide(_fact("withdrawn", at=T0), _fact("granted", brand_id=7, at=T0 + day)).allowed
    # Channel "any" counts like the channel itself.
    assert decide(group_grant, _fact("withdrawn", channel="any", at=T0 + day)).reason == (
        Reason.OPTED_OUT
    )
    # The order of the facts does not matter.
    assert decide(_fact("granted", at=T0 + day), _fact("denied", at=T0)).allowed
    # On a tie, the refusal wins.
    assert not decide(_fact("granted", at=T0), _fact("denied", at=T0)).allowed
    assert not decide(_fact("denied", at=T0), _fact("granted", at=T0)).allowed


def test_facts_of_other_channels_purposes_and_brands_do_not_apply() -> None:
    def decide(*facts: ConsentFact) -> Decision:
        return decide_consent(
            FRENCH_DEFAULTS,
            channel="email",
            purpose="marketing",
            brand_id=7,
            audience="b2c",
            facts=facts,
            bought_from_brand=False,
            has_contract=False,
            now=AFTER,
        )

    assert decide(_fact("granted", channel="sms")).reason == Reason.NO_CONSENT
    assert decide(_fact("granted", purpose="newsletter")).reason == Reason.NO_CONSENT
    assert decide(_fact("granted", brand_id=8)).reason == Reason.NO_CONSENT
    assert decide(_fact("granted", brand_id=7)).allowed
    # Another brand's denial does not stop this brand's email under opt-out either.
    b2b = decide_consent(
        FRENCH_DEFAULTS,
        channel="email",
        purpose="marketing",
        brand_id=7,
        audience="b2b",
        facts=[_fact("denied", brand_id=8)],
        bought_from_brand=False,
        has_contract=False,
        now=AFTER,
    )
    assert b2b == Decision(True, None, "opt_out_regime")


def test_a_tie_between_grants_prefers_the_one_with_proof() -> None:
    decision = decide_consent(
        FRENCH_DEFAULTS,
        channel="phone",
        purpose="marketing",
        brand_id=1,
        audience="b2c",
        facts=[_fact("granted", channel="phone"), _fact("granted", proof=True, channel="any")],
        bought_from_brand=False,
        has_contract=False,
        now=AFTER,
    )
    assert decision == Decision(True, None, "opt_in_with_proof")


def test_decide_consent_rejects_unknown_channels_and_naive_times() -> None:
    kwargs: dict[str, object] = dict(
        purpose="marketing", brand_id=None, facts=[], bought_from_brand=False, has_contract=False
    )
    with pytest.raises(ValueError, match="fax"):
        decide_consent(FRENCH_DEFAULTS, channel="fax", audience="b2c", now=AFTER, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="b2g"):
        decide_consent(FRENCH_DEFAULTS, channel="email", audience="b2g", now=AFTER, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        decide_consent(
            FRENCH_DEFAULTS,
            channel="email",
            audience="b2c",
            now=datetime(2026, 1, 1),
            **kwargs,  # type: ignore[arg-type]
        )


# --------------------------------------------------------------------------- contact points


@pytest.mark.parametrize(
    ("channel", "points", "expected"),
    [
        ("email", {"email_valid": True}, True),
        ("email", {"mobile_valid": True, "phone_valid": True, "address_complete": True}, False),
        ("sms", {"mobile_valid": True}, True),
        ("sms", {"phone_valid": True, "email_valid": True}, False),
        ("phone", {"mobile_valid": True}, True),
        ("phone", {"phone_valid": True}, True),
        ("phone", {"email_valid": True, "address_complete": True}, False),
        ("postal", {"address_complete": True}, True),
        ("postal", {"email_valid": True, "mobile_valid": True}, False),
        ("push", {"push_token": True}, True),
        ("push", {"email_valid": True, "mobile_valid": True}, False),
    ],
)
def test_contact_points(channel: str, points: dict[str, bool], expected: bool) -> None:
    flags = {
        "email_valid": False,
        "mobile_valid": False,
        "phone_valid": False,
        "address_complete": False,
    }
    flags.update(points)
    assert has_contact_point(channel, **flags) is expected


def test_contact_point_of_an_unknown_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="fax"):
        has_contact_point(
            "fax", email_valid=True, mobile_valid=True, phone_valid=True, address_complete=True
        )


# --------------------------------------------------------------------------- channel choice

YES = Decision(True, None, "opt_in")


def _no(reason: Reason) -> Decision:
    return Decision(False, reason, "opt_in")


def test_the_preferred_channel_wins_when_the_campaign_has_it_and_it_is_allowed() -> None:
    allowed = {"email": YES, "sms": YES, "postal": YES}
    assert choose_channel(["email", "sms", "postal"], allowed, preferred="sms") == ("sms", None)
    assert choose_channel(["email", "postal"], allowed, preferred="sms") == ("email", None)
    assert choose_channel(["postal", "email"], allowed, preferred=None) == ("postal", None)


def test_a_refused_preferred_channel_falls_back_in_order() -> None:
    allowed = {"email": _no(Reason.OPTED_OUT), "sms": _no(Reason.NO_CONSENT), "postal": YES}
    assert choose_channel(["email", "sms", "postal"], allowed, preferred="email") == (
        "postal",
        None,
    )


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([Reason.NO_CONTACT_POINT, Reason.OPTED_OUT], Reason.OPTED_OUT),
        ([Reason.NO_CONSENT, Reason.CONSENT_WITHOUT_PROOF], Reason.CONSENT_WITHOUT_PROOF),
        ([Reason.NO_CONTACT_POINT, Reason.NO_CONSENT], Reason.NO_CONSENT),
        ([Reason.SUPPRESSED_HARD_BOUNCE, Reason.NO_CONTACT_POINT], Reason.SUPPRESSED_HARD_BOUNCE),
        ([Reason.NO_CONSENT, Reason.SUPPRESSED_OPPOSITION], Reason.SUPPRESSED_OPPOSITION),
        ([Reason.LANGUAGE_UNAVAILABLE, Reason.NO_CONTACT_POINT], Reason.NO_CONTACT_POINT),
        ([Reason.RESTRICTED_SOURCE, Reason.NO_CONTACT_POINT], Reason.RESTRICTED_SOURCE),
    ],
)
def test_with_no_channel_the_most_telling_reason_is_given(
    reasons: list[Reason], expected: Reason
) -> None:
    channels = ["email", "sms"]
    allowed = {c: _no(r) for c, r in zip(channels, reasons, strict=True)}
    assert choose_channel(channels, allowed, preferred="sms") == (None, expected)
    assert choose_channel(channels[::-1], allowed, preferred=None) == (None, expected)


def test_channels_outside_the_campaign_or_undecided_are_ignored() -> None:
    allowed = {"email": _no(Reason.NO_CONTACT_POINT), "sms": YES}
    assert choose_channel(["email", "postal"], allowed, preferred="sms") == (
        None,
        Reason.NO_CONTACT_POINT,
    )
    with pytest.raises(ValueError):
        choose_channel(["postal"], allowed, preferred=None)


# --------------------------------------------------------------------------- contact windows

PARIS = "Europe/Paris"


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("earliest", "days", "hours", "expected"),
    [
        # Monday 4 May 2026, Paris is UTC+2.
        (_utc(2026, 5, 4, 8, 0), None, None, _utc(2026, 5, 4, 8, 0)),
        (_utc(2026, 5, 4, 8, 0), None, "09:00-12:00", _utc(2026, 5, 4, 8, 0)),  # 10:00 local
        (_utc(2026, 5, 4, 6, 30), None, "09:00-12:00", _utc(2026, 5, 4, 7, 0)),
        (_utc(2026, 5, 4, 10, 0), None, "09:00-12:00,14:00-18:00", _utc(2026, 5, 4, 12, 0)),
        (_utc(2026, 5, 4, 16, 0), None, "09:00-12:00,14:00-18:00", _utc(2026, 5, 5, 7, 0)),
        # End of a span is excluded; 11:59:30 is still inside.
        (_utc(2026, 5, 4, 9, 59, 30), None, "09:00-12:00", _utc(2026, 5, 4, 9, 59, 30)),
        (_utc(2026, 5, 4, 10, 0), None, "09:00-12:00", _utc(2026, 5, 5, 7, 0)),
        # Days: Friday 8 May 2026 15:00 UTC -> next Monday 09:00 local.
        (_utc(2026, 5, 8, 15, 0), "mon", "09:00-12:00", _utc(2026, 5, 11, 7, 0)),
        (_utc(2026, 5, 8, 15, 0), "sat,sun", None, _utc(2026, 5, 8, 22, 0)),
        (_utc(2026, 5, 4, 21, 0), None, "23:00-24:00", _utc(2026, 5, 4, 21, 0)),
        # Spring forward, Sunday 29 March 2026: 02:00-03:00 local does not exist.
        (_utc(2026, 3, 28, 23, 0), "sun", "02:00-03:00", _utc(2026, 4, 5, 0, 0)),
        (_utc(2026, 3, 28, 23, 0), None, "02:00-03:00", _utc(2026, 3, 30, 0, 0)),
        (_utc(2026, 3, 28, 23, 0), "sun", "02:30-04:00", _utc(2026, 3, 29, 1, 0)),
        (_utc(2026, 3, 29, 0, 30), None, "01:00-02:30", _utc(2026, 3, 29, 0, 30)),
        (_utc(2026, 3, 28, 23, 0), None, "09:00-10:00", _utc(2026, 3, 29, 7, 0)),
        # Fall back, Sunday 25 October 2026: 02:00-03:00 local happens twice; first one.
        (_utc(2026, 10, 24, 23, 0), "sun", "02:00-03:00", _utc(2026, 10, 25, 0, 0)),
        (_utc(2026, 10, 24, 23, 0), "sun", "02:30-04:00", _utc(2026, 10, 25, 0, 30)),
        # ... and a time inside the repeated hour is still inside, in the second pass too.
        (_utc(2026, 10, 25, 1, 10), "sun", "02:30-04:00", _utc(2026, 10, 25, 1, 30)),
        (_utc(2026, 10, 25, 0, 40), "sun", "01:30-02:30", _utc(2026, 10, 25, 1, 0)),
        (_utc(2026, 10, 24, 23, 0), None, "09:00-10:00", _utc(2026, 10, 25, 8, 0)),
    ],
)
def test_next_contact_time_examples(
    earliest: datetime, days: str | None, hours: str | None, expected: datetime
) -> None:
    found = next_contact_time(earliest, days=days, hours=hours, tz=PARIS, latest=None)
    assert found == expected
    assert found is not None and found.tzinfo is UTC


def test_next_contact_time_respects_latest_and_other_zones() -> None:
    earliest = _utc(2026, 5, 4, 16, 0)
    assert (
        next_contact_time(
            earliest, days=None, hours="09:00-12:00", tz=PARIS, latest=_utc(2026, 5, 5, 6, 59)
        )
        is None
    )
    assert next_contact_time(
        earliest, days=None, hours="09:00-12:00", tz=PARIS, latest=_utc(2026, 5, 5, 7, 0)
    ) == _utc(2026, 5, 5, 7, 0)
    assert next_contact_time(earliest, days=None, hours=None, tz=PARIS, latest=earliest) == (
        earliest
    )
    # New York (UTC-4 in May): 09:00 local is 13:00 UTC.
    assert next_contact_time(
        earliest, days=None, hours="09:00-12:00", tz="America/New_York", latest=None
    ) == _utc(2026, 5, 5, 13, 0)
    # Aware but not UTC in, UTC out.
    local = datetime(2026, 5, 4, 10, 0, tzinfo=ZoneInfo(PARIS))
    assert next_contact_time(local, days=None, hours=None, tz=PARIS, latest=None) == _utc(
        2026, 5, 4, 8, 0
    )


def test_legal_phone_hours_for_consumers() -> None:
    # Saturday 9 May 2026 noon -> Monday 10:00 Paris.
    found = next_contact_time(
        _utc(2026, 5, 9, 10, 0),
        days=PHONE_PROSPECTING_DAYS,
        hours=PHONE_PROSPECTING_HOURS,
        tz=PARIS,
        latest=None,
    )
    assert found == _utc(2026, 5, 11, 8, 0)


def test_next_contact_time_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_contact_time(datetime(2026, 1, 1), days=None, hours=None, tz=PARIS, latest=None)
    with pytest.raises(ValueError, match="time zone"):
        next_contact_time(_utc(2026, 1, 1), days=None, hours=None, tz="Mars/Olympus", latest=None)
    with pytest.raises(ConsentRuleError, match="hours"):
        next_contact_time(_utc(2026, 1, 1), days=None, hours="9-12", tz=PARIS, latest=None)
    with pytest.raises(ConsentRuleError, match="days"):
        next_contact_time(_utc(2026, 1, 1), days="lun", hours=None, tz=PARIS, latest=None)


ZONES = [
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "Africa/Casablanca",
    "UTC",
]
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@st.composite
def windows(draw: st.DrawFn) -> tuple[str | None, str | None]:
    days = draw(st.none() | st.sets(st.sampled_from(DAY_NAMES), min_size=1).map(",".join))
    if draw(st.booleans()):
        return days, None
    # Up to three sorted, non-overlapping spans on a 15-minute grid.
    cuts = sorted(draw(st.sets(st.integers(0, 96), min_size=2, max_size=6)))
    pairs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    text = ",".join(
        f"{a * 15 // 60:02d}:{a * 15 % 60:02d}-{b * 15 // 60:02d}:{b * 15 % 60:02d}"
        for a, b in pairs
    )
    return days, text


def _inside(instant: datetime, tz: str, days: str | None, hours: str | None) -> bool:
    local = instant.astimezone(ZoneInfo(tz))
    if days is not None and DAY_NAMES[local.weekday()] not in days.split(","):
        return False
    if hours is None:
        return True
    minute = local.hour * 60 + local.minute
    for span in hours.split(","):
        start, end = span.split("-")
        low = int(start[:2]) * 60 + int(start[3:])
        high = int(end[:2]) * 60 + int(end[3:])
        if low <= minute < high:
            return True
    return False


# Near the transitions of the zones above, and anywhere in 2000-2040.
EARLIEST = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
    st.sampled_from(
        [
            datetime(2026, 3, 28, 22),
            datetime(2026, 3, 8, 5),
            datetime(2026, 4, 4, 14),
            datetime(2026, 9, 26, 13),
            datetime(2026, 10, 24, 23),
            datetime(2026, 11, 1, 4),
        ]
    ).flatmap(lambda d: st.integers(0, 48 * 60).map(lambda m: d + timedelta(minutes=m))),
).map(lambda d: d.replace(tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(earliest=EARLIEST, tz=st.sampled_from(ZONES), window=windows(), data=st.data())
def test_next_contact_time_is_the_first_allowed_instant(
    earliest: datetime, tz: str, window: tuple[str | None, str | None], data: st.DataObject
) -> None:
    days, hours = window
    found = next_contact_time(earliest, days=days, hours=hours, tz=tz, latest=None)
    assert found is not None
    assert found >= earliest
    assert found - earliest < timedelta(days=15)
    assert _inside(found, tz, days, hours)
    # Minimal: no allowed instant at minute resolution between earliest and the result. Check
    # every minute over the first and last two days, and a sample in between.
    first = earliest.replace(second=0, microsecond=0)
    if first < earliest:
        first += timedelta(minutes=1)
    total = int((found - first).total_seconds() // 60)
    edge = 2 * 24 * 60
    if total <= 2 * edge:
        minutes = list(range(total))
    else:
        middle = data.draw(st.lists(st.integers(edge, total - edge), max_size=200))
        minutes = [*range(edge), *middle, *range(total - edge, total)]
    for m in minutes:
        instant = first + timedelta(minutes=m)
        if instant < found:
            assert not _inside(instant, tz, days, hours), instant
    # And the latest bound is honoured either side of the result.
    assert next_contact_time(earliest, days=days, hours=hours, tz=tz, latest=found) == found
    if found > earliest:
        before = found - timedelta(microseconds=1)
        assert next_contact_time(earliest, days=days, hours=hours, tz=tz, latest=before) is None


# --------------------------------------------------------------------------- pressure policy


def test_durations() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration(" 48H ") == timedelta(hours=48)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(days=14)
    assert parse_duration(timedelta(hours=1)) == timedelta(hours=1)
    for bad in ("7", "7 days", "-1d", "0h", "1.5d", "", "d"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert [format_duration(parse_duration(t)) for t in ("7d", "48h", "36h", "90m", "2w")] == [
        "7d",
        "2d",
        "36h",
        "90m",
        "14d",
    ]


@given(st.integers(1, 10**6))
def test_format_duration_reads_back(minutes: int) -> None:
    value = timedelta(minutes=minutes)
    assert parse_duration(format_duration(value)) == value


def test_pressure_policy_from_mapping() -> None:
    policy = PressurePolicy.from_mapping(
        {
            "caps": [
                {"name": "weekly", "max": 3, "period": "7d"},
                {"name": "sms_weekly", "max": 1, "period": "7d", "channel": "sms"},
                {"name": "brand_month", "max": 4, "period": "30d", "per_brand": True},
            ],
            "min_gap": "48h",
        }
    )
    assert policy.caps == (
        CapRule("weekly", 3, timedelta(days=7)),
        CapRule("sms_weekly", 1, timedelta(days=7), channel="sms"),
        CapRule("brand_month", 4, timedelta(days=30), per_brand=True),
    )
    assert policy.min_gap == timedelta(hours=48)
    assert policy.exempt_purposes == ("transactional",)
    assert (
        PressurePolicy.from_mapping(
            {
                "caps": [
                    {"name": "weekly", "max": 3, "period": "7d"},
                    {"name": "sms_weekly", "max": 1, "period": "7d", "channel": "sms"},
                ],
                "min_gap": "48h",
            }
        )
        == DEFAULT_PRESSURE
    )
    assert PressurePolicy.from_mapping({}) == PressurePolicy(caps=())
    assert PressurePolicy.from_mapping(
        {"exempt_purposes": ["transactional", "service"]}
    ).exempt_purposes == ("transactional", "service")


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"cap": []}, "'cap'"),
        ({"caps": {"name": "weekly"}}, "caps"),
        ({"caps": ["weekly"]}, "caps[0]"),
        ({"caps": [{"max": 3, "period": "7d"}]}, "caps[0].name"),
        ({"caps": [{"name": "w", "period": "7d"}]}, "caps[0].max"),
        ({"caps": [{"name": "w", "max": 3}]}, "caps[0].period"),
        ({"caps": [{"name": "w", "max": -1, "period": "7d"}]}, "caps[0].max"),
        ({"caps": [{"name": "w", "max": "3", "period": "7d"}]}, "caps[0].max"),
        ({"caps": [{"name": "w", "max": True, "period": "7d"}]}, "caps[0].max"),
        ({"caps": [{"name": "w", "max": 3, "period": "a week"}]}, "caps[0].period"),
        ({"caps": [{"name": "w", "max": 3, "period": "7d", "channel": "fax"}]}, "caps[0].channel"),
        ({"caps": [{"name": "w", "max": 3, "period": "7d", "per_brand": "yes"}]}, "per_brand"),
        ({"caps": [{"name": "w", "max": 3, "period": "7d", "every": 1}]}, "caps[0].every"),
        (
            {
                "caps": [
                    {"name": "w", "max": 1, "period": "1d"},
                    {"name": "w", "max": 2, "period": "2d"},
                ]
            },
            "'w' is used twice",
        ),
        ({"min_gap": "two days"}, "min_gap"),
        ({"min_gap": 48}, "min_gap"),
        ({"exempt_purposes": "transactional"}, "exempt_purposes"),
    ],
)
def test_pressure_policy_errors_name_the_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match="pressure policy") as error:
        PressurePolicy.from_mapping(data)
    assert named in str(error.value)


def test_default_pressure() -> None:
    assert DEFAULT_PRESSURE.caps == (
        CapRule("weekly", 3, timedelta(days=7)),
        CapRule("sms_weekly", 1, timedelta(days=7), channel="sms"),
    )
    assert DEFAULT_PRESSURE.min_gap == timedelta(hours=48)
    assert DEFAULT_PRESSURE.exempt_purposes == ("transactional",)


# --------------------------------------------------------------------------- pressure checks

DAY = timedelta(days=1)
NOW = _utc(2026, 5, 4, 9, 0)


def _c(
    offset_days: float, channel: str = "email", brand: int | None = 1, purpose: str = "marketing"
) -> Contact:
    return Contact(NOW + offset_days * DAY, channel, brand, purpose)


CAP_ONLY = PressurePolicy(caps=(CapRule("weekly", 3, 7 * DAY),))
TWO_A_WEEK = PressurePolicy(caps=(CapRule("two", 2, 7 * DAY),))


@pytest.mark.parametrize(
    ("policy", "history", "proposed", "expected"),
    [
        # Three in the past week: a fourth is refused; one moved out of the window: accepted.
        (CAP_ONLY, [_c(-1), _c(-3), _c(-5)], _c(0), "weekly: at most 3 in 7d"),
        (CAP_ONLY, [_c(-1), _c(-3), _c(-7)], _c(0), None),
        # Planned contacts after the proposed one count too.
        (CAP_ONLY, [_c(1), _c(3), _c(-2)], _c(0), "weekly: at most 3 in 7d"),
        # Within (at - 7d, at + 7d) there are two, but no 7-day window holds both with it:
        # a conservative double-sided count would wrongly refuse.
        (TWO_A_WEEK, [_c(-6), _c(6)], _c(0), None),
        (TWO_A_WEEK, [_c(-6), _c(-5)], _c(0), "two: at most 2 in 7d"),
        (TWO_A_WEEK, [_c(-3), _c(3)], _c(0), "two: at most 2 in 7d"),
        (TWO_A_WEEK, [_c(-3.5), _c(3.5)], _c(0), None),  # exactly a period apart
        (TWO_A_WEEK, [_c(-6), _c(0.5), _c(6.9)], _c(0), "two: at most 2 in 7d"),
        (TWO_A_WEEK, [_c(-7), _c(7)], _c(0), None),  # exactly one period away
        # Transactional messages never count, and are never refused.
        (CAP_ONLY, [_c(-1, purpose="transactional")] * 5, _c(0), None),
        (CAP_ONLY, [_c(-1), _c(-2), _c(-3)], _c(0, purpose="transactional"), None),
        # A zero cap forbids the channel.
        (
            PressurePolicy(caps=(CapRule("no_sms", 0, DAY, channel="sms"),)),
            [],
            _c(0, "sms"),
            "no_sms: at most 0 in 1d",
        ),
    ],
)
def test_caps(
    policy: PressurePolicy, history: list[Contact], proposed: Contact, expected: str | None
) -> None:
    verdict = check_pressure(policy, history, proposed)
    if expected is None:
        assert verdict is None
    else:
        assert verdict == (Reason.PRESSURE_CAP, expected)


def test_channel_caps_apply_to_their_channel_only() -> None:
    sms_cap = PressurePolicy(caps=(CapRule("sms_weekly", 1, 7 * DAY, channel="sms"),))
    assert check_pressure(sms_cap, [_c(-1, "sms")], _c(0, "email")) is None
    assert check_pressure(sms_cap, [_c(-1, "email")] * 3, _c(0, "sms")) is None
    assert check_pressure(sms_cap, [_c(-1, "sms")], _c(0, "sms")) == (
        Reason.PRESSURE_CAP,
        "sms_weekly: at most 1 in 7d",
    )


def test_per_brand_caps_count_the_brand_only_and_group_caps_count_all() -> None:
    per_brand = PressurePolicy(caps=(CapRule("brand", 1, 7 * DAY, per_brand=True),))
    group = PressurePolicy(caps=(CapRule("group", 1, 7 * DAY),))
    history = [_c(-1, brand=2)]
    assert check_pressure(per_brand, history, _c(0, brand=1)) is None
    assert check_pressure(per_brand, history, _c(0, brand=2)) is not None
    assert check_pressure(group, history, _c(0, brand=1)) is not None
    # Group-level contacts (brand None) are their own "brand" for a per-brand cap.
    assert check_pressure(per_brand, [_c(-1, brand=None)], _c(0, brand=None)) is not None
    assert check_pressure(per_brand, [_c(-1, brand=None)], _c(0, brand=1)) is None


def test_min_gap_before_and_after() -> None:
    gap_only = PressurePolicy(caps=(), min_gap=timedelta(hours=48))
    expected = (Reason.PRESSURE_GAP, "min_gap: 2d")
    assert check_pressure(gap_only, [_c(-1.5)], _c(0)) == expected
    assert check_pressure(gap_only, [_c(1.5, "postal", brand=9)], _c(0)) == expected
    assert check_pressure(gap_only, [_c(0)], _c(0)) == expected
    assert check_pressure(gap_only, [_c(-2), _c(2)], _c(0)) is None  # exactly 48 h is fine
    assert check_pressure(gap_only, [_c(-1, purpose="transactional")], _c(0)) is None
    assert check_pressure(gap_only, [_c(-1)], _c(0, purpose="transactional")) is None


def test_default_pressure_checks_caps_before_the_gap() -> None:
    history = [_c(-1, "sms")]
    assert check_pressure(DEFAULT_PRESSURE, history, _c(0, "sms")) == (
        Reason.PRESSURE_CAP,
        "sms_weekly: at most 1 in 7d",
    )
    assert check_pressure(DEFAULT_PRESSURE, history, _c(0, "email")) == (
        Reason.PRESSURE_GAP,
        "min_gap: 2d",
    )
    assert check_pressure(DEFAULT_PRESSURE, [_c(-3, "sms")], _c(0, "email")) is None


def _brute_force_fits(history_hours: list[int], at: int, max_contacts: int, period: int) -> bool:
    # Every window [t, t + period) on the hour grid that contains `at`.
    for start in range(at - period + 1, at + 1):
        inside = sum(start <= h < start + period for h in history_hours) + 1
        if inside > max_contacts:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    hours=st.lists(st.integers(-400, 400), max_size=12),
    max_contacts=st.integers(0, 5),
    period=st.integers(1, 240),
)
def test_the_cap_check_agrees_with_brute_force(
    hours: list[int], max_contacts: int, period: int
) -> None:
    policy = PressurePolicy(caps=(CapRule("cap", max_contacts, timedelta(hours=period)),))
    history = [Contact(NOW + timedelta(hours=h), "email", 1, "marketing") for h in hours]
    verdict = check_pressure(policy, history, Contact(NOW, "email", 1, "marketing"))
    assert (verdict is None) is _brute_force_fits(hours, 0, max_contacts, period)


@settings(max_examples=200, deadline=None)
@given(
    caps=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([None, "email", "sms"]), st.booleans()),
        max_size=3,
    ),
    channel=st.sampled_from(["email", "sms", "postal"]),
    purpose=st.sampled_from(["marketing", "transactional"]),
)
def test_an_empty_history_is_decided_as_the_general_case_would(
    caps: list[tuple[int, str | None, bool]], channel: str, purpose: str
) -> None:
    # the shortcut for an empty history against the general path: a history holding only
    # a transactional contact (which never counts) is empty for the rules
    policy = PressurePolicy(
        caps=tuple(
            CapRule(f"cap{i}", most, 7 * DAY, channel=ch, per_brand=per_brand)
            for i, (most, ch, per_brand) in enumerate(caps)
        ),
        min_gap=timedelta(hours=48),
    )
    proposed = Contact(NOW, channel, 1, purpose)
    exempt_only = [Contact(NOW, "email", 1, "transactional")]
    assert check_pressure(policy, [], proposed) == check_pressure(policy, exempt_only, proposed)


# --------------------------------------------------------------------------- arbitration


def _cand(
    campaign: int,
    priority: int,
    value: float,
    offset_days: float = 0,
    channel: str = "email",
    purpose: str = "marketing",
) -> Candidate:
    return Candidate(campaign, priority, value, _c(offset_days, channel, purpose=purpose))


def test_three_campaigns_compete_for_the_last_slot() -> None:
    history = [_c(-3), _c(-5)]  # two of the three weekly contacts already used
    a, b, c = _cand(1, 5, 10.0), _cand(2, 9, 1.0), _cand(3, 5, 20.0)
    accepted, refused = arbitrate(CAP_ONLY, history, [a, b, c])
    assert accepted == [b]
    assert refused == [
        (c, Reason.LOST_ARBITRATION, "campaign 2 (weekly: at most 3 in 7d)"),
        (a, Reason.LOST_ARBITRATION, "campaign 2 (weekly: at most 3 in 7d)"),
    ]


def test_ties_go_to_expected_value_then_the_lower_campaign_id() -> None:
    accepted, refused = arbitrate(
        TWO_A_WEEK, [], [_cand(7, 1, 5.0), _cand(4, 1, 5.0), _cand(9, 1, 8.0)]
    )
    assert [c.campaign_id for c in accepted] == [9, 4]
    assert [(c.campaign_id, r, d) for c, r, d in refused] == [
        (7, Reason.LOST_ARBITRATION, "campaign 4 (two: at most 2 in 7d)")
    ]  # campaign 4 took the second and last slot


def test_losers_blocked_by_history_keep_the_pressure_reason() -> None:
    policy = PressurePolicy(
        caps=(CapRule("sms_weekly", 1, 7 * DAY, channel="sms"),), min_gap=timedelta(hours=48)
    )
    history = [_c(-4, "sms")]
    sms, winner, too_close = (
        _cand(1, 9, 1.0, 0, "sms"),  # history alone already holds the weekly SMS
        _cand(2, 5, 1.0, 1),
        _cand(3, 1, 1.0, 2.5),  # 36 h after campaign 2's contact
    )
    accepted, refused = arbitrate(policy, history, [too_close, winner, sms])
    assert accepted == [winner]
    assert refused == [
        (sms, Reason.PRESSURE_CAP, "sms_weekly: at most 1 in 7d"),
        (too_close, Reason.LOST_ARBITRATION, "campaign 2 (min_gap: 2d)"),
    ]


def test_the_detail_names_the_competitor_that_took_the_slot() -> None:
    # Campaign 1 is on another channel and does not count for the SMS cap; campaign 2 does.
    policy = PressurePolicy(caps=(CapRule("sms_weekly", 1, 7 * DAY, channel="sms"),))
    first, second, third = (
        _cand(1, 9, 1.0, 0, "email"),
        _cand(2, 8, 1.0, 1, "sms"),
        _cand(3, 7, 1.0, 2, "sms"),
    )
    accepted, refused = arbitrate(policy, [], [third, second, first])
    assert accepted == [first, second]
    assert refused == [(third, Reason.LOST_ARBITRATION, "campaign 2 (sms_weekly: at most 1 in 7d)")]


def test_transactional_candidates_always_pass() -> None:
    history = [_c(-1), _c(-2), _c(-3)]
    receipt = _cand(5, 0, 0.0, purpose="transactional")
    promo = _cand(6, 9, 9.0)
    accepted, refused = arbitrate(DEFAULT_PRESSURE, history, [promo, receipt])
    assert accepted == [receipt]
    assert refused == [(promo, Reason.PRESSURE_CAP, "weekly: at most 3 in 7d")]
    assert arbitrate(DEFAULT_PRESSURE, [], []) == ([], [])


def test_a_candidate_needs_a_real_expected_value() -> None:
    with pytest.raises(ValueError, match="NaN"):
        _cand(1, 1, float("nan"))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 50),
            st.integers(0, 3),
            st.floats(0, 100),
            st.integers(0, 21 * 24),
            st.sampled_from(["email", "sms", "postal"]),
        ),
        max_size=12,
    )
)
def test_arbitration_never_exceeds_the_default_policy(
    raw: list[tuple[int, int, float, int, str]],
) -> None:
    candidates = [
        Candidate(cid, prio, value, Contact(NOW + timedelta(hours=h), ch, 1, "marketing"))
        for cid, prio, value, h, ch in raw
    ]
    accepted, refused = arbitrate(DEFAULT_PRESSURE, [], candidates)
    assert len(accepted) + len(refused) == len(candidates)
    times = sorted(c.contact.at for c in accepted)
    for first, second in pairwise(times):
        assert second - first >= timedelta(hours=48)
    for cap in DEFAULT_PRESSURE.caps:
        counted = sorted(c.contact.at for c in accepted if cap.channel in (None, c.contact.channel))
        for start in counted:
            assert sum(start <= t < start + cap.period for t in counted) <= cap.max_contacts
    for _, reason, detail in refused:
        assert reason in (Reason.LOST_ARBITRATION, Reason.PRESSURE_CAP, Reason.PRESSURE_GAP)
        if reason is Reason.LOST_ARBITRATION:
            assert detail.startswith("campaign ")


# --------------------------------------------------------------------------- control group


def test_control_buckets_are_pinned() -> None:
    # sha256("spring-sale:<id>"), first 53 bits / 2**53: these must never change.
    assert control_bucket(0, "spring-sale") == 0.022058355580706457
    assert control_bucket(1, "spring-sale") == 0.8076874162918385
    assert control_bucket(42, "spring-sale") == 0.6774138913404928
    assert control_bucket(1_000_000, "spring-sale") == 0.6589563453969092
    assert control_bucket(42, "other") == 0.7330616383207199


@pytest.mark.parametrize("share", [0.0, 0.05, 0.1, 0.25, 0.5])
def test_the_observed_control_share_is_close_to_the_requested_one(share: float) -> None:
    held = sum(in_control(i, "campaign-7", share) for i in range(100_000))
    assert abs(held / 100_000 - share) < 0.005


@given(st.integers(0, 10**12), st.text(max_size=20))
def test_buckets_are_in_the_unit_interval(customer_id: int, salt: str) -> None:
    value = control_bucket(customer_id, salt)
    assert 0.0 <= value < 1.0
    assert in_control(customer_id, salt, 0.5) is (value < 0.5)


def test_control_share_is_bounded() -> None:
    for share in (-0.1, 0.51, 1.0):
        with pytest.raises(ValueError, match=r"between 0 and 0\.5"):
            in_control(1, "x", share)


# --------------------------------------------------------------------------- language


@pytest.mark.parametrize(
    ("available", "customer", "default", "expected"),
    [
        (["fr", "en"], "en", "fr", "en"),
        (["fr", "fr-BE", "en"], "fr-BE", "en", "fr-BE"),
        (["fr", "en"], "fr-BE", "en", "fr"),
        (["fr", "en"], "fr_BE", "en", "fr"),
        (["fr", "en"], "FR-be", "en", "fr"),
        (["fr", "en"], "de", "fr", "fr"),
        (["fr", "en"], None, "en", "en"),
        (["fr", "en"], "", "en", "en"),
        (["fr-FR", "en"], "fr", "en", "en"),  # no guess from a base to a regional variant
        (["fr", "en"], "de", "fr-FR", "fr"),
        (["de"], "it", "en", None),
        ([], "fr", "fr", None),
    ],
)
def test_pick_language(
    available: list[str], customer: str | None, default: str, expected: str | None
) -> None:
    assert pick_language(available, customer=customer, default=default) == expected


LANGS = st.sampled_from(["fr", "en", "de", "fr-BE", "fr-CA", "en-GB", "nl", "nl-BE"])


@given(st.lists(LANGS, unique=True), st.none() | LANGS, LANGS)
def test_pick_language_prefers_the_customer(
    available: list[str], customer: str | None, default: str
) -> None:
    chosen = pick_language(available, customer=customer, default=default)
    assert chosen is None or chosen in available
    if customer in available:
        assert chosen == customer
    elif chosen is None:
        assert default not in available
        if customer is not None:
            assert customer.split("-")[0] not in available


def test_the_docstring_examples_hold() -> None:
    import doctest

    from tournesol.campaigns import rules

    result = doctest.testmod(rules)
    assert result.failed == 0
    assert result.attempted >= 20
