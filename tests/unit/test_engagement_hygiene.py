"""Engagement hygiene without a database: which opens and clicks are machines' (Apple's privacy
proxy, webmail image proxies, bots, link scanners, prefetches, bursts), on real user agents
and, with hypothesis, on any agent and any timing; and the deliverability row's arithmetic."""

from __future__ import annotations

import doctest
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.campaigns.models import Campaign
from tournesol.campaigns.results import Results
from tournesol.reporting import hygiene
from tournesol.reporting.hygiene import (
    CLICK_REASONS,
    DELIVERABILITY_COLUMNS,
    OPEN_REASONS,
    DeliverabilityRow,
    Thresholds,
    Verdict,
    burst_partners,
    classify_click,
    classify_open,
    privacy_proxy,
)

# user agents as they arrive
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CUBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 12; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36"
)
IOS_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
MAC_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
OUTLOOK_DESKTOP = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PEOPLE = (SAFARI_MAC, CHROME_WIN, FIREFOX_LINUX, CUBOT_PHONE, IOS_MAIL, MAC_MAIL, OUTLOOK_DESKTOP)
# tokens that make any agent a machine's, wherever they stand in it
MACHINE_TOKENS = (
    "GoogleImageProxy", "YahooMailProxy", "Googlebot/2.1", "bingbot/2.0", "Slackbot-LinkExpanding",
    "Barracuda Sentinel (EE)", "Mimecast", "Proofpoint", "BingPreview/1.0b",
    "Microsoft Office Existence Discovery", "python-requests/2.32", "Go-http-client/1.1",
    "HeadlessChrome/124.0", "facebookexternalhit/1.1", "okhttp/4.12",
)  # fmt: skip
LATE = 3600.0  # an hour after the send: no timing rule applies


# --- opens -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "proxy", "seconds", "reason"),
    [
        # Apple Mail Privacy Protection: Apple's network, an agent naming no browser
        ("Mozilla/5.0", True, LATE, "mail_privacy_proxy"),
        (MAC_MAIL, True, LATE, "mail_privacy_proxy"),
        (IOS_MAIL, True, LATE, "mail_privacy_proxy"),
        ("", True, LATE, "mail_privacy_proxy"),
        # a person browsing from Apple's network (Safari names itself)
        (SAFARI_MAC, True, LATE, None),
        # Apple Mail without the protection: the reader's own address
        (MAC_MAIL, False, LATE, None),
        (IOS_MAIL, False, LATE, None),
        (GMAIL_PROXY, False, LATE, "image_proxy"),
        (YAHOO_PROXY, False, LATE, "image_proxy"),
        (GOOGLEBOT, False, LATE, "known_bot_agent"),
        ("curl/8.5.0", False, LATE, "known_bot_agent"),
        ("python-requests/2.32.3", False, LATE, "known_bot_agent"),
        # Cubot is a phone maker, not a bot
        (CUBOT_PHONE, False, LATE, None),
        (OUTLOOK_DESKTOP, False, LATE, None),
        # prefetched: loaded under 2 s after the send (or before its time was written)
        (CHROME_WIN, False, 0.4, "prefetch"),
        (CHROME_WIN, False, -3.0, "prefetch"),
        (CHROME_WIN, False, 2.0, None),
        (CHROME_WIN, False, None, None),
        # no agent sent: not a rule for opens (mail clients without one exist)
        ("", False, LATE, None),
    ],
)
def test_opens(agent: str, proxy: bool, seconds: float | None, reason: str | None) -> None:
    verdict = classify_open(user_agent=agent, seconds_since_sent=seconds, privacy_proxy=proxy)
    assert verdict == (Verdict(True, reason) if reason else hygiene.HUMAN)


def test_the_prefetch_window_is_configurable() -> None:
    slow = Thresholds(prefetch=30.0)
    assert classify_open(user_agent=CHROME_WIN, seconds_since_sent=20, thresholds=slow).machine
    assert not classify_open(user_agent=CHROME_WIN, seconds_since_sent=20).machine


def test_without_a_request_only_the_timing_counts() -> None:
    assert classify_open(user_agent=None, seconds_since_sent=LATE) == hygiene.HUMAN
    assert classify_open(user_agent=None, seconds_since_sent=1).reason == "prefetch"
    assert classify_click(user_agent=None, seconds_since_sent=LATE) == hygiene.HUMAN


# --- clicks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "method", "seconds", "others", "reason"),
    [
        (CHROME_WIN, "GET", LATE, [], None),
        (CUBOT_PHONE, "GET", LATE, [], None),
        ("Mozilla/5.0 (compatible; Proofpoint)", "GET", LATE, [], "scanner_agent"),
        ("Barracuda Sentinel (EE)", "GET", LATE, [], "scanner_agent"),
        ("Microsoft Office Existence Discovery", "GET", LATE, [], "scanner_agent"),
        (GMAIL_PROXY, "GET", LATE, [], "scanner_agent"),
        (GOOGLEBOT, "GET", LATE, [], "scanner_agent"),
        ("", "GET", LATE, [], "no_user_agent"),
        ("   ", "GET", LATE, [], "no_user_agent"),
        (CHROME_WIN, "HEAD", LATE, [], "head_request"),
        (CHROME_WIN, "head", LATE, [], "head_request"),
        # the scanner's own name says more than its method
        ("Mimecast", "HEAD", LATE, [], "scanner_agent"),
        (CHROME_WIN, "GET", 9.9, [], "too_fast"),
        (CHROME_WIN, "GET", 10.0, [], None),
        # another link of the message under 2 s before (or after: reports arrive unordered)
        (CHROME_WIN, "GET", LATE, [(0, 0.8)], "all_links_at_once"),
        (CHROME_WIN, "GET", LATE, [(0, -1.5)], "all_links_at_once"),
        (CHROME_WIN, "GET", LATE, [(0, 2.0)], None),
        # the same link again is no burst
        (CHROME_WIN, "GET", LATE, [(1, 0.1)], None),
        (CHROME_WIN, "GET", 3.0, [(0, 0.5)], "all_links_at_once"),
    ],
)
def test_clicks(
    agent: str, method: str, seconds: float, others: list[tuple[int, float]], reason: str | None
) -> None:
    verdict = classify_click(
        user_agent=agent, method=method, seconds_since_sent=seconds, index=1,
        other_clicks_of_message=others,
    )  # fmt: skip
    assert verdict == (Verdict(True, reason) if reason else hygiene.HUMAN)


def test_burst_partners_and_thresholds() -> None:
    others = [(0, 1.9), (1, 0.1), (2, 30.0), (3, -0.5)]
    assert burst_partners(1, others) == [0, 3]
    assert burst_partners(1, others, thresholds=Thresholds(burst=60.0)) == [0, 2, 3]
    assert burst_partners(1, [(0, float("nan"))]) == []
    fast = Thresholds(click=1.0)
    assert not classify_click(user_agent=CHROME_WIN, seconds_since_sent=5, thresholds=fast).machine
    assert classify_click(user_agent=CHROME_WIN, seconds_since_sent=5).reason == "too_fast"


def test_privacy_proxy_networks() -> None:
    assert privacy_proxy("17.58.101.7") and privacy_proxy("17.0.0.1")
    assert privacy_proxy("::ffff:17.253.1.2")
    for host in (
        "18.0.0.1",
        "16.255.255.255",
        "203.0.113.9",
        "2001:db8::1",
        "testclient",
        "",
        None,
    ):
        assert not privacy_proxy(host), host


def test_the_payload_keeps_200_characters_of_an_agent() -> None:
    assert hygiene.kept_agent("x" * 500) == "x" * 200
    assert hygiene.kept_agent("  Firefox  ") == "Firefox"
    assert hygiene.kept_agent("") is None and hygiene.kept_agent(None) is None


def test_the_examples_of_the_module_hold() -> None:
    failed, tried = doctest.testmod(hygiene)
    assert tried >= 5 and failed == 0


# --- robustness (hypothesis) -----------------------------------------------------------------

agents = st.one_of(st.none(), st.text(max_size=400), st.sampled_from(PEOPLE))
timings = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
others = st.lists(st.tuples(st.integers(-3, 8), st.floats(allow_nan=True)), max_size=6)


@given(agent=agents, seconds=timings, proxy=st.booleans())
def test_any_open_gets_a_verdict_with_a_known_reason(
    agent: str | None, seconds: float | None, proxy: bool
) -> None:
    verdict = classify_open(user_agent=agent, seconds_since_sent=seconds, privacy_proxy=proxy)
    assert verdict.machine == (verdict.reason is not None)
    assert verdict.reason is None or verdict.reason in OPEN_REASONS
    again = classify_open(user_agent=agent, seconds_since_sent=seconds, privacy_proxy=proxy)
    assert again == verdict


@given(
    agent=agents,
    method=st.one_of(st.sampled_from(["GET", "HEAD", "POST"]), st.text(max_size=10)),
    seconds=timings,
    index=st.integers(-3, 8),
    earlier=others,
)
def test_any_click_gets_a_verdict_with_a_known_reason(
    agent: str | None,
    method: str,
    seconds: float | None,
    index: int,
    earlier: list[tuple[int, float]],
) -> None:
    verdict = classify_click(
        user_agent=agent, method=method, seconds_since_sent=seconds, index=index,
        other_clicks_of_message=earlier,
    )  # fmt: skip
    assert verdict.machine == (verdict.reason is not None)
    assert verdict.reason is None or verdict.reason in CLICK_REASONS


@given(
    token=st.sampled_from(MACHINE_TOKENS),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    seconds=timings,
    upper=st.booleans(),
)
def test_a_machine_token_anywhere_in_an_agent_flags_it(
    token: str, before: str, after: str, seconds: float | None, upper: bool
) -> None:
    agent = f"{before} {token.upper() if upper else token} {after}"
    assert classify_open(user_agent=agent, seconds_since_sent=seconds).machine
    assert classify_click(user_agent=agent, seconds_since_sent=seconds).reason == "scanner_agent"


@given(agent=st.sampled_from(PEOPLE), seconds=st.floats(-1e7, 1e7))
def test_a_person_is_judged_on_timing_alone(agent: str, seconds: float) -> None:
    opened = classify_open(user_agent=agent, seconds_since_sent=seconds)
    assert opened.machine == (seconds < 2.0)
    clicked = classify_click(user_agent=agent, method="GET", seconds_since_sent=seconds)
    assert clicked.machine == (seconds < 10.0)
    if clicked.machine:
        assert clicked.reason == "too_fast"


@given(agent=agents, seconds=timings, earlier=others, later=st.floats(0, 1e6))
def test_flags_only_grow_with_evidence(
    agent: str | None, seconds: float | None, earlier: list[tuple[int, float]], later: float
) -> None:
    """A HEAD is never more human than a GET; nor a click among more clicks, nor a sooner one."""
    get = classify_click(
        user_agent=agent, seconds_since_sent=seconds, index=0, other_clicks_of_message=earlier
    )
    head = classify_click(
        user_agent=agent, method="HEAD", seconds_since_sent=seconds, index=0,
        other_clicks_of_message=earlier,
    )  # fmt: skip
    assert head.machine  # whatever else it is, a HEAD is never a person following a link
    fewer = classify_click(user_agent=agent, seconds_since_sent=seconds, index=0)
    assert get.machine or not fewer.machine
    if seconds is not None and math.isfinite(seconds):
        slower = classify_click(user_agent=agent, seconds_since_sent=seconds + later, index=0)
        assert fewer.machine or not slower.machine


# --- deliverability rows and results ---------------------------------------------------------


def test_a_deliverability_row_has_its_rates_and_exports_flat() -> None:
    row = DeliverabilityRow(
        campaign_id=1, campaign="spring", name="Spring", channel="email", planned=120, sent=100,
        delivered=0, bounced_hard=4, bounced_soft=3, failed=2, complaints=1, unsubscribed=2,
        human_opens=24, machine_opens=40, human_clicks=6, bot_clicks=9,
    )  # fmt: skip
    assert row.reached == 96
    assert row.human_open_rate == 0.25 and row.human_click_rate == 0.0625
    assert row.click_to_open_rate == 0.25 and row.hard_bounce_rate == 0.04
    assert row.complaint_rate == pytest.approx(1 / 96)
    data = row.to_dict()
    assert tuple(data) == DELIVERABILITY_COLUMNS
    assert data["machine_opens"] == 40 and data["human_open_rate"] == 0.25
    empty = DeliverabilityRow(2, "draft", "Draft", "sms")
    assert empty.human_open_rate is None and empty.click_to_open_rate is None
    assert empty.hard_bounce_rate is None


def test_results_export_the_machine_figures_beside_the_human_ones() -> None:
    found = Results(
        campaign=Campaign(code="c", name="C", attribution_days=30),
        now=datetime(2026, 5, 4, 9, tzinfo=UTC),
        opened=3,
        clicked=1,
        machine_opened=12,
        bot_clicked=5,
    )
    data = found.to_dict()
    assert (data["opened"], data["clicked"]) == (3, 1)
    assert (data["machine_opened"], data["bot_clicked"]) == (12, 5)
    assert dict(found.funnel())["opened"] == 3 and data["funnel"]["clicked"] == 1
