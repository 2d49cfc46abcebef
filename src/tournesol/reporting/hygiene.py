"""Engagement hygiene: which opens and clicks of e-mails were people's, which were machines'.

Machines inflate e-mail engagement. Apple Mail Privacy Protection and the image proxies of
webmails (Gmail, Yahoo) load the open pixel of the messages they receive, read or not; the
link checks of mail security gateways (Microsoft Defender Safe Links, Mimecast, Proofpoint,
Barracuda...) follow every link of a message within seconds of its delivery. Tournesol keeps
every such event on the timeline, flagged with its reason, and counts people only by default:

- :func:`classify_open` and :func:`classify_click` judge one request from its user agent,
  HTTP method and timing and, for an open, whether it came from a privacy proxy's network
  (:func:`privacy_proxy`, decided from the address when the request arrives: the address is
  never stored). They are pure: no database, no clock.
- :func:`deliverability` sums up messages per campaign and channel: sent, delivered,
  bounced, complaints, unsubscribes, human opens and clicks next to the machine ones, and
  their rates.

Opens never decide anything: uplift and winners are measured on purchases
(``reporting.stats``, ``campaigns.results``). These figures describe engagement; they do not
judge a campaign. docs/measurement.md ("Engagement hygiene") explains them to marketers.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from tournesol.campaigns.models import Campaign, Outbox
from tournesol.interactions.models import Interaction

# --- reasons ---------------------------------------------------------------------------------

OPEN_REASONS: Final = (
    "mail_privacy_proxy",  # Apple Mail Privacy Protection loaded the pixel for the reader
    "image_proxy",  # a webmail's image proxy (Gmail, Yahoo) loaded it
    "known_bot_agent",  # a crawler, an HTTP library, a security scanner
    "prefetch",  # loaded within seconds of the send: no one reads that fast
)
"""Why an open is a machine's, in the order the rules are tried."""
CLICK_REASONS: Final = (
    "scanner_agent",  # the user agent names a security scanner, a bot or a proxy
    "no_user_agent",  # the request named no user agent (browsers always do)
    "head_request",  # a HEAD request: a link check, never a person following a link
    "all_links_at_once",  # several links of the message followed within seconds
    "too_fast",  # followed within seconds of the send
)
"""Why a click is suspected to be a bot's, in the order the rules are tried."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a request was: ``machine`` True with the ``reason`` (one of :data:`OPEN_REASONS`
    or :data:`CLICK_REASONS`), or a person's (``machine`` False, no reason)."""

    machine: bool
    reason: str | None = None


HUMAN: Final = Verdict(False)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The timings the rules use, in seconds: an open sooner than ``prefetch`` after the send
    is a prefetch, a click sooner than ``click`` after it is too fast, clicks on distinct
    links of one message less than ``burst`` apart are all links at once."""

    prefetch: float = 2.0
    click: float = 10.0
    burst: float = 2.0


THRESHOLDS: Final = Thresholds()


@dataclass(frozen=True, slots=True)
class Signals:
    """What the request for a pixel or a link tells about its sender.

    ``user_agent``: the ``User-Agent`` header, ``""`` when the request sent none; None when
    there was no request to read (an import, a test): the agent rules are then skipped.
    ``method``: the HTTP method. ``privacy_proxy``: the request came from the network of a
    privacy proxy (:func:`privacy_proxy`); the address itself is not kept.
    """

    user_agent: str | None = None
    method: str = "GET"
    privacy_proxy: bool = False


NO_REQUEST: Final = Signals()

# --- the lists of agents and networks --------------------------------------------------------

PRIVACY_PROXY_NETWORKS: Final = (
    # Apple's own block (ARIN, "Apple Inc."): Mail Privacy Protection fetches remote content
    # through Apple's relays, which leave from it (as the ESPs that flag MPP opens document,
    # e.g. SocketLabs' "Identifying Apple MPP opens"). Add Apple's IPv6 egress when seen.
    ipaddress.ip_network("17.0.0.0/8"),
)
# What MPP's fetch sends: "Mozilla/5.0" alone, or Mail's own WebKit agent, without any
# browser product (a person's Safari, Chrome or Firefox names itself: "Version/... Safari/...").
_BROWSER_PRODUCT: Final = re.compile(
    r"(?:Safari|Chrome|CriOS|Firefox|FxiOS|Edge?|EdgiOS|OPR|Version)/", re.IGNORECASE
)
IMAGE_PROXY_AGENTS: Final = (
    # Gmail and Google Workspace: "... Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    # (Matomo device-detector, regexes/bots.yml: "Gmail Image Proxy")
    r"GoogleImageProxy",
    # Yahoo Mail and AOL: "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
    r"YahooMailProxy",
)
"""Webmail image proxies that name themselves. Others (Outlook.com...) send an ordinary
browser agent: the timing rule catches their prefetch, when there is one."""
SCANNER_AGENTS: Final = (
    # Barracuda's link protection (Matomo device-detector, bots.yml: "Barracuda Sentinel")
    r"Barracuda",
    # names that mail security gateways put in the agent of their link checks in some
    # deployments; most of the time they send an ordinary browser agent, which the HEAD,
    # burst and timing rules catch instead
    r"Mimecast",
    r"Proofpoint",
    r"IronPort",
    r"Trend ?Micro",
    r"Symantec",
    r"Sophos",
    r"Forti(?:Guard|Mail|net)",
    r"Zscaler",
    # Microsoft Office checking that a link exists before opening it
    r"Microsoft Office (?:Existence|Protocol) Discovery",
    # Microsoft's and others' link previews: BingPreview, MicrosoftPreview, SkypeUriPreview,
    # "Yahoo Link Preview", "Google Web Preview" (monperrus/crawler-user-agents)
    r"Preview",
)
"""Agents of link checkers and previewers."""
BOT_AGENTS: Final = (
    # the generic rule of Matomo device-detector (bots.yml), shortened: a word ending in
    # "bot" (but Cubot, a phone maker), crawlers, spiders, scrapers
    r"(?<!cu)bot(?![a-z])",
    r"crawl",
    r"spider",
    r"scraper",
    r"slurp",
    r"facebookexternalhit",
    # HTTP libraries and headless browsers (monperrus/crawler-user-agents)
    r"^curl",
    r"wget",
    r"python-(?:requests|urllib)",
    r"httpx",
    r"aiohttp",
    r"Go-http-client",
    r"^Java/",
    r"okhttp",
    r"libwww-perl",
    r"axios",
    r"node-fetch",
    r"Scrapy",
    r"HeadlessChrome",
    r"PhantomJS",
)
"""Agents of crawlers, HTTP libraries and headless browsers."""
_MAX_AGENT: Final = 1000
"""Characters of an agent read by the rules (headers can be long; agents are not)."""
KEPT_AGENT: Final = 200
"""Characters of an agent kept in a timeline row's payload (an agent is not personal data;
the address is never kept)."""


def _any_of(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


_IMAGE_PROXY: Final = _any_of(IMAGE_PROXY_AGENTS)
_MACHINE: Final = _any_of((*SCANNER_AGENTS, *BOT_AGENTS))
_CHECKER: Final = _any_of((*IMAGE_PROXY_AGENTS, *SCANNER_AGENTS, *BOT_AGENTS))


# --- classification --------------------------------------------------------------------------


def privacy_proxy(host: str | None) -> bool:
    """Whether a client address belongs to a privacy proxy's network
    (:data:`PRIVACY_PROXY_NETWORKS`). Anything that is not an IP address is not.

    >>> privacy_proxy("17.58.101.7"), privacy_proxy("::ffff:17.1.2.3"), privacy_proxy("testclient")
    (True, True, False)
    """
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in PRIVACY_PROXY_NETWORKS)


def classify_open(
    *,
    user_agent: str | None,
    seconds_since_sent: float | None,
    privacy_proxy: bool = False,
    thresholds: Thresholds = THRESHOLDS,
) -> Verdict:
    """Whether a load of the open pixel was a machine's, and why (:data:`OPEN_REASONS`, the
    first rule that applies).

    ``user_agent``: the request's (``""``: none sent; None: unknown, agent rules skipped).
    ``seconds_since_sent``: from the send to the load (None: unknown; negative, when the
    message's send time was written after the load, counts as immediate).
    ``privacy_proxy``: the request came from a privacy proxy's network.

    >>> classify_open(user_agent="Mozilla/5.0", seconds_since_sent=900, privacy_proxy=True)
    Verdict(machine=True, reason='mail_privacy_proxy')
    >>> classify_open(user_agent="Mozilla/5.0 (Windows NT 10.0) Firefox/128.0",
    ...               seconds_since_sent=0.4).reason
    'prefetch'
    """
    agent = _agent(user_agent)
    if privacy_proxy and (not agent or _generic_mozilla(agent)):
        return Verdict(True, "mail_privacy_proxy")
    if agent and _IMAGE_PROXY.search(agent):
        return Verdict(True, "image_proxy")
    if agent and _MACHINE.search(agent):
        return Verdict(True, "known_bot_agent")
    seconds = _seconds(seconds_since_sent)
    if seconds is not None and seconds < thresholds.prefetch:
        return Verdict(True, "prefetch")
    return HUMAN


def classify_click(
    *,
    user_agent: str | None,
    method: str = "GET",
    seconds_since_sent: float | None,
    index: int = 0,
    other_clicks_of_message: Sequence[tuple[int, float]] = (),
    thresholds: Thresholds = THRESHOLDS,
) -> Verdict:
    """Whether a click on link ``index`` of a message was a bot's, and why
    (:data:`CLICK_REASONS`, the first rule that applies).

    ``user_agent`` and ``seconds_since_sent`` as for :func:`classify_open`; ``method``: the
    HTTP method; ``other_clicks_of_message``: the message's clicks recorded before, as
    (link index, seconds from that click to this one).

    >>> classify_click(user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    ...                method="GET", seconds_since_sent=4000, index=2,
    ...                other_clicks_of_message=[(0, 0.8)]).reason
    'all_links_at_once'
    """
    agent = _agent(user_agent)
    if agent and _CHECKER.search(agent):
        return Verdict(True, "scanner_agent")
    if agent == "":
        return Verdict(True, "no_user_agent")
    if method.strip().upper() == "HEAD":
        return Verdict(True, "head_request")
    if burst_partners(index, other_clicks_of_message, thresholds=thresholds):
        return Verdict(True, "all_links_at_once")
    seconds = _seconds(seconds_since_sent)
    if seconds is not None and seconds < thresholds.click:
        return Verdict(True, "too_fast")
    return HUMAN


def burst_partners(
    index: int,
    other_clicks: Sequence[tuple[int, float]],
    *,
    thresholds: Thresholds = THRESHOLDS,
) -> list[int]:
    """The positions in ``other_clicks`` ((link index, seconds to this click)) of the clicks
    on other links than ``index`` less than ``thresholds.burst`` seconds from this click:
    with it, they are "all links at once".

    >>> burst_partners(1, [(0, 1.5), (1, 0.2), (2, 30.0)])
    [0]
    """
    found: list[int] = []
    for position, (other, apart) in enumerate(other_clicks):
        seconds = _seconds(apart)
        if other != index and seconds is not None and abs(seconds) < thresholds.burst:
            found.append(position)
    return found


def kept_agent(user_agent: str | None) -> str | None:
    """The agent as a payload keeps it: its first :data:`KEPT_AGENT` characters, or None
    when there is none."""
    agent = _agent(user_agent)
    return agent[:KEPT_AGENT] if agent else None


def _generic_mozilla(agent: str) -> bool:
    return agent.startswith("Mozilla/") and not _BROWSER_PRODUCT.search(agent)


def _agent(user_agent: str | None) -> str | None:
    return None if user_agent is None else user_agent[:_MAX_AGENT].strip()


def _seconds(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- deliverability --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliverabilityRow:
    """The messages of one campaign on one channel.

    ``planned``: messages written for it, cancelled ones aside; ``sent``: handed to the
    provider (``sent_at``); ``delivered``: delivery confirmed (SMS reports, call outcomes);
    ``bounced_hard``: came back for good; ``bounced_soft``: came back for a while only (a
    soft bounce and no hard one); ``failed``: refused before leaving; ``complaints``: marked
    as spam; ``unsubscribed``: the recipient opted out from it. ``human_opens`` and
    ``human_clicks``: messages opened / clicked by a person at least once;
    ``machine_opens`` and ``bot_clicks``: messages whose every open / click was a machine's.
    """

    campaign_id: int
    campaign: str
    name: str
    channel: str
    planned: int = 0
    sent: int = 0
    delivered: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    failed: int = 0
    complaints: int = 0
    unsubscribed: int = 0
    human_opens: int = 0
    machine_opens: int = 0
    human_clicks: int = 0
    bot_clicks: int = 0

    @property
    def reached(self) -> int:
        """Messages sent that did not bounce for good: the base of the rates."""
        return max(self.sent - self.bounced_hard, 0)

    @property
    def human_open_rate(self) -> float | None:
        """Human opens over messages reached (None when none was)."""
        return _share(self.human_opens, self.reached)

    @property
    def human_click_rate(self) -> float | None:
        """Human clicks over messages reached."""
        return _share(self.human_clicks, self.reached)

    @property
    def click_to_open_rate(self) -> float | None:
        """Human clicks over human opens."""
        return _share(self.human_clicks, self.human_opens)

    @property
    def hard_bounce_rate(self) -> float | None:
        """Hard bounces over messages sent."""
        return _share(self.bounced_hard, self.sent)

    @property
    def complaint_rate(self) -> float | None:
        """Complaints over messages reached."""
        return _share(self.complaints, self.reached)

    def to_dict(self) -> dict[str, Any]:
        """Every count and rate as JSON-ready values, flat (one CSV line): the columns of
        :data:`DELIVERABILITY_COLUMNS`, in that order."""
        found = asdict(self)
        for rate in _RATES:
            found[rate] = getattr(self, rate)
        return {column: found[column] for column in DELIVERABILITY_COLUMNS}


_RATES: Final = (
    "human_open_rate", "human_click_rate", "click_to_open_rate", "hard_bounce_rate",
    "complaint_rate",
)  # fmt: skip
DELIVERABILITY_COLUMNS: Final = (
    "campaign_id", "campaign", "name", "channel", "planned", "sent", "delivered",
    "bounced_hard", "bounced_soft", "failed", "complaints", "unsubscribed", "human_opens",
    "machine_opens", "human_clicks", "bot_clicks", *_RATES,
)  # fmt: skip
"""The keys of :meth:`DeliverabilityRow.to_dict`, in order (a CSV export's header)."""


def deliverability(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    campaign_ids: Sequence[int] | None = None,
) -> list[DeliverabilityRow]:
    """The messages of every campaign (or of ``campaign_ids``) sent, or due when not sent,
    from ``since`` (inclusive) to ``until`` (exclusive), per campaign and channel, ordered by
    campaign code then channel (see :class:`DeliverabilityRow` for each figure).

    Two grouped queries, whatever the volume: the outbox columns (first open and click, human
    or not, bounces, unsubscribes), then the soft bounces and complaints the timeline holds.
    Reads only.

    >>> rows = deliverability(session, since=start, until=end)  # doctest: +SKIP
    >>> rows[0].human_open_rate, rows[0].to_dict()["machine_opens"]  # doctest: +SKIP
    (0.21, 340)
    """
    if campaign_ids is not None and not campaign_ids:
        return []
    o, c, i = Outbox, Campaign, Interaction
    when = func.coalesce(o.sent_at, o.send_after)
    conditions = [o.campaign_id.is_not(None), when >= since, when < until]
    if campaign_ids is not None:
        conditions.append(o.campaign_id.in_(list(campaign_ids)))
    hard = or_(o.state == "bounced", o.bounced_at.is_not(None))
    rows: dict[tuple[int, str], DeliverabilityRow] = {}
    for (
        campaign_id, code, name, channel, planned, sent, delivered, bounced, failed,
        unsubscribed, human_opens, machine_opens, human_clicks, bot_clicks,
    ) in session.execute(
        select(
            c.id, c.code, c.name, o.channel,
            func.count().filter(o.state != "cancelled"),
            func.count(o.sent_at),
            func.count().filter(or_(o.state == "delivered", o.delivered_at.is_not(None))),
            func.count().filter(hard),
            func.count().filter(o.state == "failed"),
            func.count(o.unsubscribed_at),
            func.count(o.human_opened_at),
            func.count(o.opened_at).filter(o.human_opened_at.is_(None)),
            func.count(o.human_clicked_at),
            func.count(o.clicked_at).filter(o.human_clicked_at.is_(None)),
        )
        .join(c, c.id == o.campaign_id)
        .where(*conditions)
        .group_by(c.id, c.code, c.name, o.channel)
    ):  # fmt: skip
        rows[(campaign_id, channel)] = DeliverabilityRow(
            campaign_id, code, name, channel, planned, sent, delivered, bounced, 0, failed, 0,
            unsubscribed, human_opens, machine_opens, human_clicks, bot_clicks,
        )  # fmt: skip
    if rows:
        soft = and_(i.type == "email_bounced", i.outcome == "soft", ~hard)
        for outbox_campaign, channel, soft_bounced, complaints in session.execute(
            select(
                o.campaign_id,
                o.channel,
                func.count(func.distinct(o.id)).filter(soft),
                func.count(func.distinct(o.id)).filter(i.type == "email_complaint"),
            )
            .join(
                i,
                and_(
                    i.customer_id == o.customer_id,
                    i.payload["outbox_id"].as_integer() == o.id,
                ),
            )
            .where(*conditions, i.type.in_(("email_bounced", "email_complaint")))
            .group_by(o.campaign_id, o.channel)
        ):
            if outbox_campaign is not None and (outbox_campaign, channel) in rows:
                key = (outbox_campaign, channel)
                rows[key] = replace(rows[key], bounced_soft=soft_bounced, complaints=complaints)
    return sorted(rows.values(), key=lambda r: (r.campaign, r.channel))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None
