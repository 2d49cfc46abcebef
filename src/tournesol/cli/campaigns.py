"""`tournesol campaigns`: create campaigns from YAML, list and show them, plan (or dry-run) them
together, send what is due, import bounces and call outcomes, attribute purchases, report
results (docs/campaigns.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from datetime import time as day_time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from tournesol.cli.common import console, engine_and_factory, fail

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tournesol.campaigns.models import Campaign
    from tournesol.campaigns.results import Results
    from tournesol.campaigns.service import PlanReport

app = typer.Typer(
    help="Campaigns: create, plan (or dry-run), send, import feedback, report.",
    no_args_is_help=True,
)

PARIS: Final = ZoneInfo("Europe/Paris")
# The keys a campaign file may hold (docs/campaigns.md), and those of each message.
CAMPAIGN_KEYS: Final = frozenset(
    {
        "code", "name", "brand", "segment", "channels", "objective", "purpose", "priority",
        "expected_value", "fixed_cost", "unit_costs", "control_share", "attribution_days",
        "default_language", "starts_at", "ends_at", "status", "messages", "kind",
        "variant_shares", "attribution_windows", "postal_delay_days", "margin_rate",
    }
)  # fmt: skip
MESSAGE_KEYS: Final = frozenset(
    {"channel", "language", "subject", "text", "text_file", "html", "html_file", "variant"}
)
LIST_HINT: Final = "`tournesol campaigns list` shows the campaigns"


# --- reading values ------------------------------------------------------------------------


def parse_time(value: Any, *, name: str) -> datetime | None:
    """A time from a campaign file or an option: ISO 8601 text, a YAML date-time or date.
    Without an offset the time is Paris time (as in the web editor); a date is midnight in
    Paris. Returns it in UTC; fails naming ``name`` when unreadable."""
    if value is None or value == "":
        return None
    found: datetime
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, date):
        found = datetime.combine(value, day_time())
    elif isinstance(value, str):
        try:
            found = datetime.fromisoformat(value.strip())
        except ValueError:
            fail(f"{name}: not a date and time", hint="write it as 2026-03-02T09:00 (ISO 8601)")
    else:
        fail(f"{name}: not a date and time", hint="write it as 2026-03-02T09:00 (ISO 8601)")
    if found.tzinfo is None:
        found = found.replace(tzinfo=PARIS)
    return found.astimezone(UTC)


def _now(value: str | None) -> datetime:
    from tournesol.db import utcnow

    return parse_time(value, name="--now") or utcnow()


def _decimal(value: Any, *, name: str) -> Decimal:
    try:
        found = Decimal(str(value).replace(",", "."))
    except InvalidOperation:
        fail(f"{name}: not an amount")
    if not found.is_finite() or found < 0:
        fail(f"{name}: an amount of 0 or more")
    return found


def _whole(value: Any, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(f"{name}: a whole number")
    try:
        return int(value)
    except ValueError:
        fail(f"{name}: a whole number")


def _windows(value: Any, file: Path) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(f"{file}: attribution_windows: a mapping of days per channel, such as {{sms: 7}}")
    return {
        str(ch): _whole(days, name=f"{file}: attribution_windows.{ch}")
        for ch, days in value.items()
    }


def _rate(value: Any, *, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(f"{name}: a share such as 0.35 for 35 %")
    return float(value)


def _read_text(base: Path, value: Any, *, name: str) -> str:
    path = base / str(value)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{name}: cannot read {path} ({exc.strerror})")


def read_campaign_file(file: Path) -> dict[str, Any]:
    """The campaign described by a YAML file, checked: keys known, values of the right kind,
    every message's template checked (part and line on an error), ``html_file`` and
    ``text_file`` read relative to the file, the A/B variants checked (each with a message for
    every channel and language the others have, ``variant_shares`` above 0 and adding up to
    1). Fails with a message naming what is wrong."""
    import yaml

    from tournesol.campaigns import rules
    from tournesol.campaigns.templates import TemplateError, check_message

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"there is no file {file}", hint="give a campaign file (YAML, docs/campaigns.md)")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        fail(f"{file}: cannot read it ({exc})", hint="a YAML file in UTF-8")
    if not isinstance(data, dict):
        fail(f"{file}: expected a mapping (code, name, segment, channels, messages...)")
    unknown = sorted(set(data) - CAMPAIGN_KEYS)
    if unknown:
        fail(
            f"{file}: unknown key {unknown[0]!r}", hint=f"known: {', '.join(sorted(CAMPAIGN_KEYS))}"
        )
    kind = str(data.get("kind", "planned"))
    if kind not in ("planned", "triggered"):
        fail(f"{file}: kind: planned (a segment, planned at once) or triggered (by journeys)")
    required = (
        ("code", "name", "segment", "channels")
        if kind == "planned"
        else ("code", "name", "channels")
    )
    for key in required:
        if not data.get(key):
            fail(f"{file}: {key} is missing")
    channels = data["channels"]
    if isinstance(channels, str):
        channels = [c.strip() for c in channels.split(",")]
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        fail(f"{file}: channels: a list such as [email, postal] (the fallback order)")
    unit_costs = data.get("unit_costs") or {}
    if not isinstance(unit_costs, dict):
        fail(f"{file}: unit_costs: a mapping such as {{email: 0.002, postal: 0.9}}")
    purpose = str(data.get("purpose", "marketing"))
    status = str(data.get("status", "draft" if kind == "planned" else "running"))
    if kind == "planned" and status not in ("draft", "scheduled"):
        fail(f"{file}: status: draft or scheduled")
    if kind == "triggered" and status not in ("running", "cancelled"):
        fail(f"{file}: status: a triggered campaign is running (or cancelled)")
    share = data.get("control_share", 0.1)
    if isinstance(share, bool) or not isinstance(share, int | float):
        fail(f"{file}: control_share: a share between 0 and 0.5 (0.1 for 10 %)")
    raw_shares = data.get("variant_shares") or {}
    if not isinstance(raw_shares, dict):
        fail(
            f"{file}: variant_shares: a mapping such as {{A: 0.5, B: 0.5}}",
            hint="leave it out for equal shares",
        )
    shares = {str(name).strip().upper(): value for name, value in raw_shares.items()}
    values: dict[str, Any] = {
        "code": str(data["code"]).strip(),
        "name": str(data["name"]),
        "segment": str(data["segment"]) if data.get("segment") else None,
        "kind": kind,
        "channels": channels,
        "brand": str(data["brand"]) if data.get("brand") else None,
        "objective": str(data["objective"]) if data.get("objective") else None,
        "purpose": purpose,
        "starts_at": parse_time(data.get("starts_at"), name=f"{file}: starts_at"),
        "ends_at": parse_time(data.get("ends_at"), name=f"{file}: ends_at"),
        "priority": _whole(data.get("priority", 50), name=f"{file}: priority"),
        "expected_value": _decimal(data.get("expected_value", 0), name=f"{file}: expected_value"),
        "fixed_cost": _decimal(data.get("fixed_cost", 0), name=f"{file}: fixed_cost"),
        "unit_costs": {
            str(ch): str(_decimal(cost, name=f"{file}: unit_costs.{ch}"))
            for ch, cost in unit_costs.items()
        },
        "control_share": float(share),
        "attribution_days": _whole(
            data.get("attribution_days", 30), name=f"{file}: attribution_days"
        ),
        "default_language": str(data.get("default_language", "fr")),
        "variant_shares": shares,
        "attribution_windows": _windows(data.get("attribution_windows"), file),
        "postal_delay_days": _whole(
            data.get("postal_delay_days", 3), name=f"{file}: postal_delay_days"
        ),
        "margin_rate": _rate(data.get("margin_rate"), name=f"{file}: margin_rate"),
    }
    messages = data.get("messages") or []
    if not isinstance(messages, list):
        fail(f"{file}: messages: a list of {{channel, language, subject, text, html}}")
    checked: list[dict[str, Any]] = []
    for i, raw in enumerate(messages, start=1):
        where = f"{file}: message {i}"
        if not isinstance(raw, dict):
            fail(f"{where}: expected a mapping with channel, language, text...")
        unknown = sorted(set(raw) - MESSAGE_KEYS)
        if unknown:
            fail(f"{where}: unknown key {unknown[0]!r}", hint=", ".join(sorted(MESSAGE_KEYS)))
        if not raw.get("channel") or not raw.get("language"):
            fail(f"{where}: channel and language are required")
        text = raw.get("text")
        if raw.get("text_file"):
            text = _read_text(file.parent, raw["text_file"], name=f"{where}: text_file")
        html = raw.get("html")
        if raw.get("html_file"):
            html = _read_text(file.parent, raw["html_file"], name=f"{where}: html_file")
        message: dict[str, Any] = {
            "channel": str(raw["channel"]).strip().lower(),
            "language": str(raw["language"]).strip(),
            "subject": None if raw.get("subject") is None else str(raw["subject"]),
            "body_text": "" if text is None else str(text),
            "body_html": None if not html else str(html),
            "variant": str(raw.get("variant") or rules.DEFAULT_VARIANT).strip().upper(),
        }
        try:
            rules.check_variant_name(message["variant"])
        except ValueError as exc:
            fail(f"{where}: {exc}")
        try:
            check_message(
                subject=message["subject"],
                body_text=message["body_text"],
                body_html=message["body_html"],
                channel=message["channel"],
                marketing=purpose == "marketing",
            )
        except TemplateError as exc:
            fail(
                f"{where} ({message['channel']}, {message['language']}): {exc}",
                hint="see the personalization fields in docs/campaigns.md",
            )
        checked.append(message)
    _check_variants(file, checked, shares, kind=kind)
    return {"values": values, "status": status, "messages": checked}


def _check_variants(
    file: Path, messages: Sequence[dict[str, Any]], shares: dict[str, Any], *, kind: str
) -> None:
    """The file's A/B variants: no message twice, each variant with a message for every
    channel and language the others have, the shares right (rules.variants_of)."""
    from tournesol.campaigns import rules

    seen: set[tuple[str, str, str]] = set()
    for i, m in enumerate(messages, start=1):
        key = (m["channel"], m["language"], m["variant"])
        if key in seen:
            channel, language, variant = key
            fail(
                f"{file}: message {i}: a second {channel} message in {language!r} "
                f"for variant {variant}",
                hint="one message per channel, language and variant",
            )
        seen.add(key)
    try:
        variants = rules.variants_of(seen, shares)
    except ValueError as exc:
        fail(f"{file}: {exc}", hint="see A/B variants in docs/campaigns.md")
    if kind == "triggered" and len(variants) > 1:
        fail(f"{file}: a triggered campaign has one version of each message (no variant B...)")


def save_campaign(session: Session, found: dict[str, Any], *, created_by: str) -> Campaign:
    """Create the campaign and its messages that :func:`read_campaign_file` read, with the
    file's status. Raises ``service.CampaignError`` on a value the service refuses."""
    from tournesol.campaigns import service

    campaign = service.create(session, **found["values"], created_by=created_by)
    campaign.status = found["status"]
    for message in found["messages"]:
        service.set_message(session, campaign=campaign, **message)
    service.check_variants(session, campaign=campaign)
    return campaign


def _campaign(session: Session, code: str) -> Campaign:
    from tournesol.campaigns import service

    found = service.get_by_code(session, code=code)
    if found is None:
        fail(f"there is no campaign {code!r}", hint=LIST_HINT)
    return found


# --- create, list, show --------------------------------------------------------------------


@app.command()
def create(
    file: Path = typer.Argument(..., help="A campaign file (YAML, docs/campaigns.md)."),
    replace: bool = typer.Option(
        False, "--replace", help="Replace a draft campaign of the same code."
    ),
) -> None:
    """Create a campaign and its messages from a YAML file (code, name, brand, segment,
    channels, priority, expected_value, fixed_cost, unit_costs, control_share,
    attribution_days, attribution_windows, postal_delay_days, margin_rate, starts_at, ends_at,
    status, variant_shares, messages: channel, language,
    variant, subject, text or text_file, html or html_file). Every message is checked before
    anything is written."""
    from sqlalchemy import delete, func, select

    from tournesol.campaigns import service
    from tournesol.campaigns.models import CampaignMessage, CampaignTarget, Outbox
    from tournesol.db import unit_of_work

    found = read_campaign_file(file)
    values = found["values"]
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        existing = service.get_by_code(session, code=values["code"])
        if existing is not None:
            if not replace:
                fail(
                    f"a campaign {values['code']!r} exists already",
                    hint="add --replace to replace a draft, or choose another code",
                )
            used = session.scalar(
                select(func.count()).where(CampaignTarget.campaign_id == existing.id)
            ) or session.scalar(select(func.count()).where(Outbox.campaign_id == existing.id))
            if existing.status != "draft" or used:
                fail(
                    f"campaign {existing.code} is {existing.status}: only a draft is replaced",
                    hint="create a campaign with a new code",
                )
            session.execute(
                delete(CampaignMessage).where(CampaignMessage.campaign_id == existing.id)
            )
            session.delete(existing)
            session.flush()
        try:
            campaign = save_campaign(session, found, created_by="cli")
        except service.CampaignError as exc:
            fail(f"{file}: {exc}", hint="fix the file and run the command again")
        missing = [
            ch for ch in campaign.channels if not any(m["channel"] == ch for m in found["messages"])
        ]
    verb = "replaced" if existing is not None else "created"
    console.print(
        f"Campaign {campaign.code} {verb} ({campaign.status}): "
        f"{', '.join(campaign.channels)}, {len(found['messages'])} messages"
    )
    if missing:
        console.print(
            f"[yellow]No message yet for {', '.join(missing)}[/]: the campaign cannot be "
            "planned until each channel has one."
        )


@app.command("list")
def list_command() -> None:
    """The campaigns, latest first: code, name, status, channels, messages planned and sent."""
    from tournesol.campaigns import results, service
    from tournesol.db import unit_of_work

    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        campaigns = service.list_campaigns(session)
        counts = results.summaries(session, [c.id for c in campaigns])
    if not campaigns:
        console.print("No campaign yet: `tournesol campaigns create FILE.yaml`.")
        return
    table = Table(title="Campaigns")
    for column, justify in (
        ("code", "left"),
        ("name", "left"),
        ("status", "left"),
        ("channels", "left"),
        ("planned", "right"),
        ("sent", "right"),
        ("updated (UTC)", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for c in campaigns:
        summary = counts.get(c.id, results.Summary())
        table.add_row(
            c.code,
            c.name,
            c.status,
            " > ".join(c.channels),
            f"{summary.planned:,}",
            f"{summary.sent:,}",
            c.updated_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command()
def show(
    code: str = typer.Argument(..., help="The campaign's code."),
    now: str | None = typer.Option(None, "--now", help="Results as of this time (ISO 8601)."),
) -> None:
    """A campaign's settings, its messages and, once planned, its results."""
    from sqlalchemy import select

    from tournesol.campaigns import results
    from tournesol.campaigns.models import CampaignMessage
    from tournesol.customers.models import Brand
    from tournesol.db import unit_of_work
    from tournesol.segments.models import Segment

    at = _now(now)
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        c = _campaign(session, code)
        brand = session.get(Brand, c.brand_id) if c.brand_id is not None else None
        segment = session.get(Segment, c.segment_id) if c.segment_id is not None else None
        messages = list(
            session.scalars(
                select(CampaignMessage)
                .where(CampaignMessage.campaign_id == c.id)
                .order_by(
                    CampaignMessage.channel, CampaignMessage.language, CampaignMessage.variant
                )
            )
        )
        found = results.results(session, c, now=at) if c.planned_at is not None else None
    several = len({m.variant for m in messages}) > 1
    settings = Table(title=f"{c.name} ({c.code})", show_header=False)
    settings.add_column("setting")
    settings.add_column("value")
    rows = [
        ("status", c.status),
        ("brand", brand.name if brand else "the whole group"),
        ("segment", segment.code if segment else "-"),
        ("channels", " > ".join(c.channels)),
        ("purpose", c.purpose),
        ("starts", _utc(c.starts_at) or "as soon as planned"),
        ("ends", _utc(c.ends_at) or "no end"),
        ("priority", str(c.priority)),
        ("expected value", f"{c.expected_value:,.2f}"),
        ("fixed cost", f"{c.fixed_cost:,.2f}"),
        ("unit costs", ", ".join(f"{k} {v}" for k, v in sorted(c.unit_costs.items())) or "-"),
        ("control share", f"{c.control_share:.1%}"),
        *(
            [("variants", ", ".join(f"{v} {share:.1%}" for v, share in _shares(c, messages)))]
            if several
            else []
        ),
        (
            "attribution window",
            f"{c.attribution_days} days"
            + "".join(
                f", {ch} {d} days" for ch, d in sorted((c.attribution_windows or {}).items())
            ),
        ),
        ("postal in-home delay", f"{c.postal_delay_days} days"),
        ("margin rate", "-" if c.margin_rate is None else f"{c.margin_rate:.0%}"),
        ("default language", c.default_language),
        ("planned", _utc(c.planned_at) or "not yet"),
    ]
    for name, value in rows:
        settings.add_row(name, value)
    console.print(settings)
    for m in messages:
        subject = f": {m.subject}" if m.subject else ""
        html = ", with HTML" if m.body_html else ""
        variant = f" variant {m.variant}" if several else ""
        console.print(
            f"message {m.channel} {m.language}{variant}{subject} "
            f"({len(m.body_text)} characters{html})"
        )
    if found is not None:
        print_results(found)


def _shares(campaign: Campaign, messages: Sequence[Any]) -> tuple[tuple[str, float], ...]:
    """The variants of the messages with their shares (as planned), or none when they do not
    add up (the plan says why)."""
    from tournesol.campaigns import rules

    try:
        return rules.variant_shares([m.variant for m in messages], campaign.variant_shares)
    except ValueError:
        return ()


def _utc(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else None


# --- plan ----------------------------------------------------------------------------------


@app.command()
def plan(
    codes: list[str] = typer.Argument(..., help="Campaign codes, planned together."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report the funnel; write nothing."),
    now: str | None = typer.Option(None, "--now", help="Plan as of this time (ISO 8601)."),
    with_scheduled: bool = typer.Option(
        False, "--with-scheduled", help="Add every other scheduled campaign."
    ),
) -> None:
    """Plan campaigns together (they compete for their customers' attention): the messages,
    the control group and the exclusions are written in one transaction, and each
    campaign's funnel is printed. With --dry-run, nothing is written."""
    from rich.progress import Progress
    from sqlalchemy import select

    from tournesol.campaigns import service
    from tournesol.campaigns.models import Campaign
    from tournesol.campaigns.setup import policies
    from tournesol.cli.common import settings
    from tournesol.db import unit_of_work
    from tournesol.segments.compiler import DefinitionError

    at = _now(now)
    try:
        chosen_policies = policies(settings())
    except service.CampaignError as exc:
        fail(str(exc), hint="fix the policies file (TOURNESOL_CAMPAIGN_POLICIES)")
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        chosen = [_campaign(session, code) for code in dict.fromkeys(codes)]
        if with_scheduled:
            ids = [c.id for c in chosen]
            chosen += session.scalars(
                select(Campaign)
                .where(Campaign.status == "scheduled", Campaign.id.not_in(ids))
                .order_by(Campaign.code)
            )
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("planning", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                reports = service.plan(
                    session,
                    campaigns=chosen,
                    now=at,
                    policies=chosen_policies,
                    dry_run=dry_run,
                    progress=progress,
                )
            except service.CampaignError as exc:
                fail(str(exc), hint=LIST_HINT)
            except DefinitionError as exc:
                fail(
                    f"a segment no longer compiles: {exc.path}: {exc.message}",
                    hint="fix the segment (tournesol segments save)",
                )
        if dry_run:
            session.rollback()
    for report in reports:
        print_plan(report)
    if dry_run:
        console.print("Dry run: nothing was written.")
    else:
        console.print(
            f"Planned {sum(r.planned for r in reports):,} messages: "
            "`tournesol campaigns run` sends them when they are due."
        )


def print_plan(report: PlanReport) -> None:
    """A plan's funnel, messages by channel and exclusions by reason."""
    from tournesol.campaigns.results import exclusions_of, funnel_rows

    table = Table(title=f"{report.code}{' (dry run)' if report.dry_run else ''}")
    for column in ("stage", "customers", "share", "dropped"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in funnel_rows(report):
        table.add_row(row.stage, f"{row.count:,}", f"{row.share:.1%}", f"{row.dropped:,}")
    console.print(table)
    channels = ", ".join(f"{ch} {n:,}" for ch, n in report.channels.most_common())
    console.print(
        f"messages: {report.planned:,} ({channels or 'none'}); control group: {report.control:,}"
    )
    if len(report.variants) > 1:
        variants = ", ".join(f"{v} {n:,}" for v, n in sorted(report.variants.items()))
        console.print(f"variants: {variants}")
    for item in exclusions_of(report.excluded):
        console.print(f"  excluded {item.count:,}: {item.reason} ({item.text})")


# --- run -----------------------------------------------------------------------------------


@app.command()
def run(
    channel: list[str] | None = typer.Option(
        None, "--channel", help="Only this channel (repeat for several)."
    ),
    campaign: list[str] | None = typer.Option(
        None, "--campaign", help="Only this campaign's code (repeat for several)."
    ),
    limit: int | None = typer.Option(None, "--limit", min=0, help="At most this many messages."),
    watch: float | None = typer.Option(
        None, "--watch", min=1, help="Run again every SECONDS until interrupted (a worker)."
    ),
    requeue_in_doubt: str | None = typer.Option(
        None,
        "--requeue-in-doubt",
        metavar="CODE",
        help="Send a campaign's in-doubt messages again (some may arrive twice), then stop.",
    ),
) -> None:
    """Send the messages that are due (e-mail, SMS, print runs, call lists) with a progress
    bar, and print what was done; with --watch, keep doing it as a worker."""
    from tournesol.campaigns import dispatch as dispatcher
    from tournesol.campaigns.setup import SetupError
    from tournesol.cli.common import settings
    from tournesol.db import unit_of_work, utcnow

    conf = settings()
    _, factory = engine_and_factory()
    if requeue_in_doubt is not None:
        with unit_of_work(factory) as session:
            target = _campaign(session, requeue_in_doubt)
            count = dispatcher.requeue_in_doubt(session, campaign_id=target.id, now=utcnow())
        console.print(
            f"{count:,} in-doubt messages of {target.code} planned again: "
            "`tournesol campaigns run` sends them."
        )
        return
    ids: list[int] | None = None
    if campaign:
        with unit_of_work(factory) as session:
            ids = [_campaign(session, code).id for code in campaign]
    while True:
        try:
            report = _dispatch_once(factory, conf, channel or None, ids, limit)
        except dispatcher.DispatchStopped as exc:
            for line in exc.report.lines():
                console.print(line)
            fail(str(exc), hint="fix what is named, then run the command again")
        except SetupError as exc:
            fail(str(exc), hint="set the variables named (docs/campaigns.md)")
        except ValueError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            console.print("Stopped: messages being sent were put back or marked in doubt.")
            raise typer.Exit(130) from None
        for line in report.lines():
            console.print(line)
        if watch is None:
            return
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            console.print("Stopped.")
            return


def _due(factory: Any, channels: Sequence[str] | None, ids: Sequence[int] | None) -> int:
    """How many messages are due now (for the progress bar)."""
    from sqlalchemy import func, select

    from tournesol.campaigns.models import Outbox
    from tournesol.db import utcnow

    query = select(func.count()).where(Outbox.state == "planned", Outbox.send_after <= utcnow())
    if channels:
        query = query.where(Outbox.channel.in_(list(channels)))
    if ids is not None:
        query = query.where(Outbox.campaign_id.in_(list(ids)))
    with factory() as session:
        return int(session.scalar(query) or 0)


def _dispatch_once(
    factory: Any,
    conf: Any,
    channels: Sequence[str] | None,
    ids: Sequence[int] | None,
    limit: int | None,
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from tournesol.campaigns.dispatch import dispatch

    total = _due(factory, channels, ids)
    if limit is not None:
        total = min(total, limit)
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*Progress.get_default_columns()[:1], *columns, console=console) as bar:
        task = bar.add_task("sending", total=total or None)

        def progress(done: int) -> None:
            bar.update(task, completed=done)

        return dispatch(
            factory,
            settings=conf,
            channels=channels,
            campaign_ids=ids,
            limit=limit,
            progress=progress,
        )


# --- feedback ------------------------------------------------------------------------------


@app.command()
def bounces(
    path: Path = typer.Argument(
        ..., help="An mbox file, a Maildir, a folder of .eml files or one .eml message."
    ),
) -> None:
    """Import returned mail: hard bounces suppress the address, complaints unsubscribe;
    importing the same mail again changes nothing."""
    from tournesol.campaigns.feedback import import_bounces, read_mailbox
    from tournesol.db import unit_of_work, utcnow

    if not path.exists():
        fail(f"there is no file or folder {path}", hint="give a mailbox of returned mail")
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        report = import_bounces(session, read_mailbox(path), at=utcnow())
    _print_counts(
        "bounces",
        report,
        ("read", "bounces_hard", "bounces_soft", "complaints", "unknown", "rejected",
         "already_known"),
    )  # fmt: skip


@app.command()
def outcomes(
    file: Path = typer.Argument(..., help="The call center's outcome file (CSV)."),
) -> None:
    """Import call outcomes (outbox_key, outcome, called_at; agent, note): a `call` on each
    customer's timeline; "do not call" withdraws the telephone consent."""
    from tournesol.campaigns.feedback import import_call_outcomes
    from tournesol.channels.callcenter import OutcomeFileError
    from tournesol.db import unit_of_work, utcnow

    try:
        data = file.read_bytes()
    except FileNotFoundError:
        fail(f"there is no file {file}", hint="give the CSV the call center sent back")
    except OSError as exc:
        fail(f"cannot read {file} ({exc.strerror})")
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        try:
            report = import_call_outcomes(session, data, at=utcnow())
        except OutcomeFileError as exc:
            fail(f"{file}: {exc}", hint="the file needs outbox_key, outcome and called_at columns")
    _print_counts("outcomes", report, ("read", "recorded", "unknown", "already_recorded"))
    for line_no, reason in report.rejects[:50]:
        console.print(f"  line {line_no}: {reason}", highlight=False)
    if len(report.rejects) > 50:
        console.print(f"  ... and {len(report.rejects) - 50:,} more rows not recorded")


def _print_counts(title: str, report: Any, names: Sequence[str]) -> None:
    console.print(f"{title}: " + ", ".join(f"{getattr(report, n):,} {n}" for n in names))


# --- results -------------------------------------------------------------------------------


@app.command()
def attribute(
    campaign: list[str] | None = typer.Option(
        None, "--campaign", help="Only purchases whose last touch is this campaign (repeat)."
    ),
    now: str | None = typer.Option(None, "--now", help="Purchases up to this time (ISO 8601)."),
) -> None:
    """Attribute to campaigns the purchases made since their messages went out (last touch,
    within each campaign's window); purchases already attributed keep their campaign."""
    from tournesol.campaigns import results
    from tournesol.db import unit_of_work

    at = _now(now)
    _, factory = engine_and_factory()
    started = time.monotonic()
    with unit_of_work(factory) as session:
        ids = [_campaign(session, code).id for code in campaign] if campaign else None
        added = results.attribute(session, now=at, campaign_ids=ids)
    console.print(
        f"{added:,} purchases attributed ({time.monotonic() - started:.1f} s)", highlight=False
    )


@app.command()
def report(
    code: str = typer.Argument(..., help="The campaign's code."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    csv_file: Path | None = typer.Option(
        None, "--csv", help="Also write the funnel to this CSV file."
    ),
    now: str | None = typer.Option(None, "--now", help="Results as of this time (ISO 8601)."),
) -> None:
    """A campaign's results: audience, exclusions, messages, target against control group,
    uplift, incremental revenue, cost and ROI (attribute new purchases first with
    `tournesol campaigns attribute`)."""
    from tournesol.campaigns import results
    from tournesol.cli.export import write_csv
    from tournesol.db import unit_of_work

    at = _now(now)
    _, factory = engine_and_factory()
    with unit_of_work(factory) as session:
        found = results.results(session, _campaign(session, code), now=at)
    if csv_file is not None:
        audience = found.audience
        rows = [
            (stage, n, f"{n / audience:.4f}" if audience else "") for stage, n in found.funnel()
        ]
        write_csv(csv_file, ("stage", "count", "share_of_audience"), rows)
    if as_json:
        console.print_json(json.dumps(found.to_dict()))
        return
    print_results(found)
    if csv_file is not None:
        console.print(f"funnel written to {csv_file}")


def print_results(found: Results) -> None:
    """A campaign's results as tables."""
    funnel = Table(title=f"{found.campaign.code}: results at {_utc(found.now)}")
    for column in ("stage", "count", "share of audience"):
        funnel.add_column(column, justify="left" if column == "stage" else "right")
    for stage, n in found.funnel():
        share = f"{n / found.audience:.1%}" if found.audience else ""
        funnel.add_row(stage, f"{n:,}", share)
    console.print(funnel)
    states = ", ".join(f"{s} {n:,}" for s, n in sorted(found.states.items()))
    console.print(
        f"messages: {found.planned_total:,} planned ({states or 'none'}); "
        f"{found.failed:,} failed, {found.bounced:,} bounced, {found.in_doubt:,} in doubt, "
        f"{found.unsubscribed:,} unsubscribed"
    )
    groups = Table(title="Target group against control group")
    for column in ("group", "customers", "buyers", "rate", "purchases", "revenue", "per customer"):
        groups.add_column(column, justify="left" if column == "group" else "right")
    for name, g in (("target (attributed)", found.target), ("control", found.control_group)):
        per = g.revenue_per_member
        groups.add_row(
            name,
            f"{g.size:,}",
            f"{g.purchasers:,}",
            "-" if g.rate is None else f"{g.rate:.1%}",
            f"{g.purchases:,}",
            f"{g.revenue:,.2f}",
            "-" if per is None else f"{per:,.2f}",
        )
    console.print(groups)
    uplift, relative, gain, roi = (
        found.uplift, found.relative_uplift, found.incremental_revenue, found.roi
    )  # fmt: skip
    console.print(
        "uplift: "
        + ("-" if uplift is None else f"{uplift * 100:+.1f} points")
        + ("" if relative is None else f" ({relative:+.1%})")
        + f"; incremental revenue: {'-' if gain is None else f'{gain:,.2f}'}"
        + f"; cost: {found.cost:,.2f}; ROI: {'-' if roi is None else f'{roi:.1%}'}",
        highlight=False,
    )
    if found.window_open and found.window_ends_at is not None:
        console.print(f"provisional: purchases until {_utc(found.window_ends_at)} still count")
    for item in found.exclusions():
        console.print(f"  excluded {item.count:,}: {item.reason} ({item.text})")
