"""The measurement pages (issue 9): the hub of reports, a campaign's scorecard, A/B variants
and direct-mail matchback, the channels compared, costs and ROI, deliverability, the
programme's impact against the global holdout, the ad-hoc cube, and the dashboard marketers
and analysts land on.

Every page shows a :class:`~tournesol.reporting.tables.Report` through one template
(``reports/_report.html``: notes first, headline figures, charts, then the table, which is
the accessible truth: every chart's data is in it) and answers ``?format=csv`` and
``?format=json`` from the same report. Reports hold aggregates only, so the pages need
``aggregates:read`` (admin, marketer, analyst, agency; never the advisor role) and nothing
is audited. Labels come from the reports in English and are translated when rendered.

Charts are drawn in the browser (Chart.js, vendored under ``static/vendor``, by
``static/reports.js``) from a JSON description built here (:func:`chart_view`); with
JavaScript off the page shows the tables alone."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth.service import Principal
from tournesol.campaigns import service as campaign_service
from tournesol.campaigns.models import Campaign
from tournesol.customers.models import Brand
from tournesol.db import utcnow
from tournesol.reporting import reports
from tournesol.reporting.measure import ARMS
from tournesol.reporting.tables import Chart, Kind, Report
from tournesol.segments.models import Segment
from tournesol.web.deps import SessionDep, language_of, render, require
from tournesol.web.i18n import translations

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require(rules.AGGREGATES_READ))]
Format = Literal["html", "csv", "json"]
PARIS: Final = ZoneInfo("Europe/Paris")
PERIOD_DAYS: Final = 90  # the default period of the channel, cost and deliverability pages
CUBE_DAYS: Final = 365  # the cube's default period
HUB_CAMPAIGNS: Final = 30  # the latest campaigns listed on the hub
# The cube's filters offered as a list of values (the others are too many or open-ended).
CUBE_FILTERS: Final = ("campaign", "channel", "segment", "brand", "arm")


def _(text: str) -> str:
    """Marks an English message for translation; the page translates it when it renders."""
    return text


@dataclass(frozen=True)
class Page:
    """A report of the hub: its key, its address (``{code}`` for a campaign's), its title and
    the question it answers."""

    key: str
    path: str
    title: str
    question: str

    @property
    def per_campaign(self) -> bool:
        return "{code}" in self.path


PAGES: Final = (
    Page(
        "scorecard",
        "/reports/campaigns/{code}",
        _("Campaign scorecard"),
        _(
            "What did one campaign cause? From audience to buyers, then attributed, allocated "
            "and incremental revenue side by side, with cost and ROI."
        ),
    ),
    Page(
        "variants",
        "/reports/campaigns/{code}/variants",
        _("A/B variants"),
        _(
            "Which variant did better than the control group, once the p-values are adjusted "
            "for comparing several at once?"
        ),
    ),
    Page(
        "matchback",
        "/reports/campaigns/{code}/matchback",
        _("Direct-mail matchback"),
        _("Which orders followed a letter, per key code, after its in-home date?"),
    ),
    Page(
        "channels",
        "/reports/channels",
        _("Channels compared"),
        _("Which channel brings the most incremental revenue for what it costs?"),
    ),
    Page(
        "costs",
        "/reports/costs",
        _("Cost and ROI"),
        _("What did each campaign of a period cost, and what did it bring beyond its control?"),
    ),
    Page(
        "deliverability",
        "/reports/deliverability",
        _("Deliverability and engagement hygiene"),
        _(
            "Did the messages arrive, and which opens and clicks were people's rather than "
            "privacy proxies' or link scanners'?"
        ),
    ),
    Page(
        "programme",
        "/reports/programme",
        _("Programme impact (global holdout)"),
        _(
            "What does all our marketing add, quarter by quarter, compared with customers who "
            "receive none?"
        ),
    ),
    Page(
        "cube",
        "/reports/cube",
        _("Ad-hoc report"),
        _("Any cut of the campaigns' results: choose dimensions, measures and filters."),
    ),
)
PAGE: Final = {p.key: p for p in PAGES}
# Where a dashboard report leads for more detail.
DASHBOARD_LINKS: Final = {
    "incremental-by-month": "/reports/costs",
    "programme": "/reports/programme",
    "cost-vs-incremental": "/reports/channels",
}
# The x values of total rows, left out of charts.
TOTALS: Final = frozenset({"Total"})
# Words the reports write in their rows, for the French catalogue (rows are translated when
# shown: see the ``text`` macro of reports/_format.html).
ROW_WORDS: Final = (
    _("treatment"),
    _("control"),
    _("holdout"),
    _("Total"),
    _("Active customers"),
    _("Audience (segment when planned)"),
    _("Assigned to an arm (treatment + control)"),
    _("Treatment arm"),
    _("Messages sent"),
    _("Customers reached (exposed)"),
    _("Opened (human)"),
    _("Clicked (human)"),
    _("Buyers after a message (attributed)"),
)


# --- what the templates show -------------------------------------------------------------------


@dataclass(frozen=True)
class ChartView:
    """A chart ready for the page: the JSON ``spec`` reports.js draws, and what its text
    summary (the canvas's ``aria-label``) says: per series, its lowest and highest value."""

    dom_id: str
    title: str
    kind: str
    spec: dict[str, Any]
    x_label: str
    points: int
    extremes: list[dict[str, Any]]


@dataclass(frozen=True)
class Card:
    """A headline figure, with the interval that follows it in the report when there is one
    (``range``: its label, its value, the kind of its bounds)."""

    label: str
    value: Any
    kind: Kind
    range: tuple[str, Any, Kind] | None = None


def cards(headline: Sequence[tuple[str, Any, Kind]]) -> list[Card]:
    """The headline as cards: an interval right after its estimate joins the estimate's card
    (an interval alone gets a card of its own, its bounds written as ratios)."""
    found: list[Card] = []
    for label, value, kind in headline:
        last = found[-1] if found else None
        if kind == "interval" and last is not None and last.kind != "interval" and not last.range:
            found[-1] = Card(last.label, last.value, last.kind, (label, value, last.kind))
        elif kind == "interval":
            found.append(Card(label, value, kind, None))
        else:
            found.append(Card(label, value, kind))
    return found


@dataclass(frozen=True)
class ReportView:
    """A report and what its page needs besides: the kind each interval's bounds are shown
    in, its headline as cards, its charts, its export links."""

    report: Report
    dom_id: str
    bounds: dict[str, Kind]
    cards: list[Card]
    charts: list[ChartView]
    exports: dict[str, str]
    link: str | None = None

    @property
    def as_of(self) -> datetime | None:
        """When the figures were read, in Paris time."""
        return None if self.report.as_of is None else self.report.as_of.astimezone(PARIS)


def _dom_id(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "report"


def bound_kinds(kinds: Sequence[tuple[str, Kind]]) -> dict[str, Kind]:
    """For each ``interval`` item of ``(key, kind)`` pairs, how its bounds are shown: like the
    estimate before it (an uplift in points, then its interval; revenue, then its interval),
    as a ratio when nothing precedes it."""
    found: dict[str, Kind] = {}
    last: Kind = "ratio"
    for key, kind in kinds:
        if kind == "interval":
            found[key] = last
        else:
            last = kind
    return found


def _number(value: Any, part: int | None = None) -> float | None:
    """A cell as a number for a chart (an interval's bound with ``part``), None when it is
    not one."""
    if isinstance(value, tuple | list):
        if part is None or len(value) != 2:
            return None
        value = value[part]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    return None


def _label(value: Any, gettext: Callable[[str], str], lang: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime | date):
        return value.strftime("%d/%m/%Y" if lang == "fr" else "%Y-%m-%d")
    if isinstance(value, str):
        return gettext(value) if value else value
    return str(value)


def chart_view(
    report: Report, chart: Chart, index: int, gettext: Callable[[str], str], lang: str
) -> ChartView | None:
    """The chart's JSON for reports.js, or None when it has nothing to draw (no row, no
    number). A total row stays in the table but not in the chart, where it would dwarf the
    bars it adds up. The JSON: ``{"type": "bar"|"line"|"band", "format": the kind of its
    values, "labels": x values as text, "series": [{"label", "data"}], "low", "high",
    "band": for a band}``."""
    by_key = {c.key: c for c in report.columns}
    drawn = [by_key[k] for k in chart.series if k in by_key]
    rows = [row for row in report.rows if row.get(chart.x) not in TOTALS]
    if not drawn or not rows:
        return None
    labels = [_label(row.get(chart.x), gettext, lang) for row in rows]
    series = [
        {"label": gettext(c.label), "data": [_number(row.get(c.key)) for row in rows]}
        for c in drawn
    ]
    if all(v is None for s in series for v in s["data"]):
        return None
    bounds = bound_kinds([(c.key, c.kind) for c in report.columns])
    first = drawn[0]
    spec: dict[str, Any] = {
        "type": chart.kind,
        "format": bounds.get(first.key, first.kind),
        "labels": labels,
        "series": series,
    }
    if chart.kind == "band" and chart.low and chart.high:
        spec["low"] = [_number(row.get(chart.low), 0) for row in rows]
        spec["high"] = [_number(row.get(chart.high), 1) for row in rows]
        spec["band"] = gettext("Interval (95 %)")
    extremes: list[dict[str, Any]] = []
    for column, drawn_series in zip(drawn, series, strict=True):
        values = [(v, i) for i, v in enumerate(drawn_series["data"]) if v is not None]
        if not values:
            continue
        low, high = min(values), max(values)
        extremes.append(
            {
                "label": drawn_series["label"],
                "kind": spec["format"] if column is first else column.kind,
                "low": (low[0], labels[low[1]]),
                "high": (high[0], labels[high[1]]),
            }
        )
    x = by_key.get(chart.x)
    return ChartView(
        dom_id=f"{_dom_id(report.key)}-chart-{index}",
        title=gettext(chart.title),
        kind=chart.kind,
        spec=spec,
        x_label=gettext(x.label) if x else chart.x,
        points=len(rows),
        extremes=extremes,
    )


def report_view(
    request: Request,
    report: Report,
    *,
    exports: bool = True,
    link: str | None = None,
) -> ReportView:
    """What the report templates need to show ``report`` on this request's page."""
    lang = language_of(request)
    gettext = translations(lang).gettext
    charts = [chart_view(report, chart, i, gettext, lang) for i, chart in enumerate(report.charts)]
    return ReportView(
        report=report,
        dom_id=_dom_id(report.key),
        bounds=bound_kinds([(c.key, c.kind) for c in report.columns]),
        cards=cards(report.headline),
        charts=[c for c in charts if c is not None],
        exports={f: _with_format(request, f) for f in ("csv", "json")} if exports else {},
        link=link,
    )


def _with_format(request: Request, fmt: str) -> str:
    """This page's address with ``format=fmt`` (its other parameters kept)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
    return request.url.path + "?" + urlencode([*kept, ("format", fmt)])


# --- answering ---------------------------------------------------------------------------------


def _filename(report: Report, *parts: str) -> str:
    day = (report.as_of or utcnow()).astimezone(PARIS).date().isoformat()
    name = "-".join([report.key, *parts, day])
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _answer(
    request: Request,
    report: Report,
    fmt: Format,
    context: dict[str, Any],
    *,
    name: Sequence[str] = (),
) -> Response:
    """The report as CSV, JSON or its page."""
    if fmt == "csv":
        return Response(
            report.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{_filename(report, *name)}.csv"'
            },
        )
    if fmt == "json":
        return Response(report.to_json(), media_type="application/json")
    view = report_view(request, report)
    return render(request, "reports/report.html", {"nav": "reports", "view": view} | context)


@dataclass(frozen=True)
class Period:
    """The days chosen (Paris dates, both included) and the instants they span: from the
    Paris midnight starting ``since`` to the one ending ``until`` (excluded)."""

    since: date
    until: date
    start: datetime
    end: datetime


def period(since: date | None, until: date | None, *, days: int = PERIOD_DAYS) -> Period:
    """The period of ``since`` to ``until`` (the last ``days`` days up to today by default);
    a period that ends before it starts is refused (400)."""
    today = utcnow().astimezone(PARIS).date()
    until = until or today
    since = since or until - timedelta(days=days)
    if since > until:
        raise HTTPException(400, "the period must start before it ends: swap the two dates")
    start = datetime.combine(since, time(), PARIS)
    end = datetime.combine(until + timedelta(days=1), time(), PARIS)
    return Period(since, until, start, end)


Since = Annotated[date | None, Query()]
Until = Annotated[date | None, Query()]


# --- the hub and the dashboard ------------------------------------------------------------------


@router.get("/reports")
def hub(request: Request, session: SessionDep, who: Reader) -> Response:
    """Every report with the question it answers; the latest campaigns with their three."""
    latest = [c for c in campaign_service.list_campaigns(session) if c.status != "draft"]
    return render(
        request,
        "reports/index.html",
        {
            "nav": "reports",
            "pages": [p for p in PAGES if not p.per_campaign],
            "campaign_pages": [p for p in PAGES if p.per_campaign],
            "campaigns": latest[:HUB_CAMPAIGNS],
            "more": len(latest) > HUB_CAMPAIGNS,
        },
    )


@router.get("/dashboard")
def dashboard(request: Request, session: SessionDep, who: Reader) -> Response:
    """Where marketers and analysts land: the reports of ``reports.dashboard``, each with a
    link to the full report where there is one."""
    found = reports.dashboard(session, now=utcnow())
    views = [report_view(request, r, exports=False, link=DASHBOARD_LINKS.get(r.key)) for r in found]
    return render(request, "reports/dashboard.html", {"nav": "dashboard", "views": views})


# --- a campaign's reports ------------------------------------------------------------------------

CampaignReport = Callable[..., Report]
CAMPAIGN_REPORTS: Final[Mapping[str, CampaignReport]] = {
    "scorecard": reports.scorecard,
    "variants": reports.variants,
    "matchback": reports.matchback,
}


def _campaign(session: Session, code: str) -> Campaign:
    found = campaign_service.get_by_code(session, code=code)
    if found is None:
        raise HTTPException(404, f"there is no campaign {code!r}")
    return found


def _campaign_report(
    request: Request, session: Session, code: str, key: str, fmt: Format
) -> Response:
    campaign = _campaign(session, code)
    report = CAMPAIGN_REPORTS[key](session, campaign, now=utcnow())
    context = {
        "page": PAGE[key],
        "campaign": campaign,
        "campaign_pages": [p for p in PAGES if p.per_campaign],
    }
    return _answer(request, report, fmt, context, name=(campaign.code,))


@router.get("/reports/campaigns/{code}")
def scorecard(
    request: Request, session: SessionDep, who: Reader, code: str, format: Format = "html"
) -> Response:
    """A campaign's scorecard: funnel, attributed, allocated and incremental results."""
    return _campaign_report(request, session, code, "scorecard", format)


@router.get("/reports/campaigns/{code}/variants")
def variants(
    request: Request, session: SessionDep, who: Reader, code: str, format: Format = "html"
) -> Response:
    """A campaign's variants against its control group."""
    return _campaign_report(request, session, code, "variants", format)


@router.get("/reports/campaigns/{code}/matchback")
def matchback(
    request: Request, session: SessionDep, who: Reader, code: str, format: Format = "html"
) -> Response:
    """A campaign's letters matched back to orders, per key code."""
    return _campaign_report(request, session, code, "matchback", format)


# --- reports over a period -----------------------------------------------------------------------

PeriodReport = Callable[..., Report]
PERIOD_REPORTS: Final[Mapping[str, PeriodReport]] = {
    "channels": reports.channels,
    "costs": reports.costs,
    "deliverability": reports.deliverability,
}


def _period_report(
    request: Request,
    session: Session,
    key: str,
    fmt: Format,
    since: date | None,
    until: date | None,
) -> Response:
    chosen = period(since, until)
    report = PERIOD_REPORTS[key](session, since=chosen.start, until=chosen.end, now=utcnow())
    context = {"page": PAGE[key], "period": chosen}
    return _answer(request, report, fmt, context, name=(f"{chosen.since}_{chosen.until}",))


@router.get("/reports/channels")
def channels(
    request: Request,
    session: SessionDep,
    who: Reader,
    since: Since = None,
    until: Until = None,
    format: Format = "html",
) -> Response:
    """The channels compared over the period's campaigns."""
    return _period_report(request, session, "channels", format, since, until)


@router.get("/reports/costs")
def costs(
    request: Request,
    session: SessionDep,
    who: Reader,
    since: Since = None,
    until: Until = None,
    format: Format = "html",
) -> Response:
    """Each campaign of the period: cost, revenue three ways, return on spend and ROI."""
    return _period_report(request, session, "costs", format, since, until)


@router.get("/reports/deliverability")
def deliverability(
    request: Request,
    session: SessionDep,
    who: Reader,
    since: Since = None,
    until: Until = None,
    format: Format = "html",
) -> Response:
    """Messages per campaign and channel: delivered, bounced, human and machine opens."""
    return _period_report(request, session, "deliverability", format, since, until)


@router.get("/reports/programme")
def programme(
    request: Request, session: SessionDep, who: Reader, format: Format = "html"
) -> Response:
    """The global holdout against everyone else, quarter by quarter."""
    report = reports.programme(session, now=utcnow())
    return _answer(request, report, format, {"page": PAGE["programme"]})


# --- the ad-hoc cube -----------------------------------------------------------------------------


def _cube_choices(session: Session, chosen: Period) -> dict[str, list[tuple[str, str]]]:
    """The values each filter of the cube offers (value, label): the period's campaigns,
    their channels, segments and brands, and the arms."""
    found = reports.campaigns_between(session, chosen.start, chosen.end)
    segments = {c.segment_id for c in found if c.segment_id is not None}
    brands = {c.brand_id for c in found if c.brand_id is not None}
    segment_names = sorted({s.name for i in segments if (s := session.get(Segment, i))})
    brand_codes = sorted({b.code for i in brands if (b := session.get(Brand, i))})
    channels = sorted({ch for c in found for ch in (c.channels or [])})
    return {
        "campaign": [
            (c.code, f"{c.name} ({c.code})" if c.name != c.code else c.code) for c in found
        ],
        "channel": [(ch, ch) for ch in channels],
        "segment": [(n, n) for n in segment_names],
        "brand": [(b, b) for b in brand_codes],
        "arm": [(a, a) for a in ARMS],
    }


def _refused(fmt: Format, message: str) -> Response:
    if fmt == "json":
        return JSONResponse({"error": {"status": 422, "message": message}}, 422)
    return Response(message + "\n", status_code=422, media_type="text/plain; charset=utf-8")


@router.get("/reports/cube")
def cube(
    request: Request,
    session: SessionDep,
    who: Reader,
    dimension: Annotated[list[str] | None, Query()] = None,
    measure: Annotated[list[str] | None, Query()] = None,
    since: Since = None,
    until: Until = None,
    run: bool = False,
    format: Format = "html",
) -> Response:
    """The ad-hoc builder: the form (dimensions, measures, filters as ``filter_<dimension>``,
    the period), and once it is sent (``run``, or an export) its report. A question the
    cube refuses (attributed revenue added across campaigns...) is said above the form, or
    answered 422 to an export."""
    chosen = period(since, until, days=CUBE_DAYS)
    defaults = reports.CubeQuery()
    sent = run or format != "html"
    dimensions = tuple(dimension or ()) if sent else defaults.dimensions
    measures = tuple(measure or ()) if sent else defaults.measures
    filters = {
        key: value.strip()[:200]
        for key in reports.DIMENSIONS
        if (value := request.query_params.get(f"filter_{key}", "")).strip()
    }
    report: Report | None = None
    refused: str | None = None
    if sent:
        query = reports.CubeQuery(
            dimensions=dimensions,
            measures=measures,
            filters=filters,
            since=chosen.start,
            until=chosen.end,
        )
        try:
            report = reports.cube(session, query, now=utcnow())
        except reports.CubeRefused as exc:
            refused = str(exc)
    if refused is not None and format != "html":
        return _refused(format, refused)
    if report is not None and format != "html":
        return _answer(request, report, format, {}, name=(f"{chosen.since}_{chosen.until}",))
    choices = _cube_choices(session, chosen)
    for key, value in filters.items():  # a value the period no longer has stays chosen
        if key in choices and value not in [v for v, _label in choices[key]]:
            choices[key].append((value, value))
    return render(
        request,
        "reports/cube.html",
        {
            "nav": "reports",
            "page": PAGE["cube"],
            "period": chosen,
            "dimensions": reports.DIMENSIONS,
            "measures": reports.MEASURES,
            "chosen_dimensions": dimensions,
            "chosen_measures": measures,
            "filters": filters,
            "choices": {k: choices[k] for k in CUBE_FILTERS if k in choices},
            "refused": refused,
            "view": None if report is None else report_view(request, report),
        },
    )
