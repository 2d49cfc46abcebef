"""Campaign pages for staff: the list, the editor (settings, channels in fallback order, costs,
messages per channel and language checked as they are saved, A/B variants of the messages
with their shares, a preview), the dry run (the
funnel of a plan, alone and against the other scheduled campaigns), planning, cancelling, and a
campaign's page with its results (target against control, uplift, cost, ROI).

Viewing needs ``aggregates:read``; editing, dry runs, planning, cancelling and attribution
``campaigns:design``. A preview names real customers only for ``customers:read`` (and writes a
``campaign.preview`` audit row); others see the message with each field shown by its name and
described. Every action writes an audit row. Times are typed and shown in Paris time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from tournesol.auth import rules as auth_rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.campaigns import results as campaign_results
from tournesol.campaigns import rules, service
from tournesol.campaigns.models import (
    Campaign,
    CampaignMessage,
    CampaignTarget,
    Outbox,
)
from tournesol.customers.models import Brand
from tournesol.db import utcnow
from tournesol.segments import service as segment_service
from tournesol.segments.compiler import DefinitionError
from tournesol.segments.models import Segment
from tournesol.web.deps import SessionDep, render, require

router = APIRouter(include_in_schema=False)

Viewer = Annotated[Principal, Depends(require(auth_rules.AGGREGATES_READ))]
Designer = Annotated[
    Principal, Depends(require(auth_rules.AGGREGATES_READ, auth_rules.CAMPAIGNS_DESIGN))
]
PARIS: Final = ZoneInfo("Europe/Paris")
EDITABLE: Final = ("draft", "scheduled")
CANCELLABLE: Final = ("draft", "scheduled", "running")
PURPOSES: Final = ("marketing", "transactional")
CHANNELS: Final = rules.CONTACT_CHANNELS
# Channels whose message has a subject and an HTML body.
RICH: Final = frozenset({"email"})
PREVIEW_LIMIT: Final = 3
# Paths of the fixed pages: no campaign may take one of these codes.
RESERVED: Final = frozenset({"new", "editor"})
_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})?")
# The names the editor gives the variants it adds, in order.
VARIANT_NAMES: Final = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DEFAULT_VARIANT: Final = rules.DEFAULT_VARIANT


def _(text: str) -> str:
    """Marks an English message for translation; the page translates it when it renders."""
    return text


# --- reading and checking the editor's form --------------------------------------------------


@dataclass
class EditorForm:
    """The editor's fields as typed (``values``), the channels in fallback order, the
    languages of the messages, the messages: (channel, language, variant) -> subject, text,
    html, and the A/B variants (A first) with the share typed for each (percent, "" when
    left empty: equal shares)."""

    values: dict[str, str]
    channels: list[str]
    languages: list[str]
    messages: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    variants: list[str] = field(default_factory=lambda: [DEFAULT_VARIANT])
    shares: dict[str, str] = field(default_factory=dict)

    def message(
        self, channel: str, language: str, variant: str = DEFAULT_VARIANT
    ) -> dict[str, str]:
        """The message typed for a channel, language and variant (empty parts when none)."""
        return self.messages.get(
            (channel, language, variant), {"subject": "", "text": "", "html": ""}
        )

    @staticmethod
    def key(channel: str, language: str, variant: str = DEFAULT_VARIANT) -> str:
        """The prefix of a message's field names: ``m.CHANNEL.LANGUAGE`` for variant A (as
        before variants existed), ``m.CHANNEL.LANGUAGE.VARIANT`` for the others."""
        base = f"m.{channel}.{language}"
        return base if variant == DEFAULT_VARIANT else f"{base}.{variant}"


def _blank_form() -> EditorForm:
    values = {
        "code": "", "name": "", "brand": "", "objective": "", "segment": "",
        "purpose": "marketing", "starts_at": "", "ends_at": "", "priority": "50",
        "expected_value": "0", "fixed_cost": "0", "control_percent": "10",
        "attribution_days": "30", "default_language": "fr", "status": "draft",
        "postal_delay_days": "3", "margin_percent": "",
    }  # fmt: skip
    return EditorForm(values, ["email"], ["fr"])


def _local_text(value: datetime | None) -> str:
    """A UTC time as the value of a datetime-local field, in Paris time."""
    return value.astimezone(PARIS).strftime("%Y-%m-%dT%H:%M") if value is not None else ""


def _decimal_text(value: Any) -> str:
    return "" if value is None else format(Decimal(str(value)).normalize(), "f")


def form_of(session: Session, campaign: Campaign) -> EditorForm:
    """The editor's form filled with a saved campaign and its messages."""
    brand = session.get(Brand, campaign.brand_id) if campaign.brand_id is not None else None
    segment = session.get(Segment, campaign.segment_id) if campaign.segment_id else None
    values = {
        "code": campaign.code,
        "name": campaign.name,
        "brand": brand.code if brand is not None else "",
        "objective": campaign.objective or "",
        "segment": segment.code if segment is not None else "",
        "purpose": campaign.purpose,
        "starts_at": _local_text(campaign.starts_at),
        "ends_at": _local_text(campaign.ends_at),
        "priority": str(campaign.priority),
        "expected_value": _decimal_text(campaign.expected_value),
        "fixed_cost": _decimal_text(campaign.fixed_cost),
        "control_percent": f"{campaign.control_share * 100:g}",
        "attribution_days": str(campaign.attribution_days),
        "postal_delay_days": str(campaign.postal_delay_days),
        "margin_percent": "" if campaign.margin_rate is None else f"{campaign.margin_rate * 100:g}",
        "default_language": campaign.default_language,
        "status": campaign.status,
    }
    for channel in CHANNELS:
        cost = (campaign.unit_costs or {}).get(channel)
        values[f"cost.{channel}"] = "" if cost is None else _decimal_text(cost)
        days = (campaign.attribution_windows or {}).get(channel)
        values[f"window.{channel}"] = "" if days is None else str(days)
    messages = {
        (m.channel, m.language, m.variant): {
            "subject": m.subject or "",
            "text": m.body_text or "",
            "html": m.body_html or "",
        }
        for m in _messages(session, campaign)
    }
    languages = [campaign.default_language]
    for _channel, language, _variant in sorted(messages):
        if language not in languages:
            languages.append(language)
    shares = campaign.variant_shares or {}
    variants = sorted({DEFAULT_VARIANT} | {v for _, _, v in messages} | set(shares))
    return EditorForm(
        values,
        list(campaign.channels),
        languages,
        messages,
        variants,
        {v: f"{float(share) * 100:g}" for v, share in shares.items()},
    )


def _messages(session: Session, campaign: Campaign) -> list[CampaignMessage]:
    return list(
        session.scalars(
            select(CampaignMessage)
            .where(CampaignMessage.campaign_id == campaign.id)
            .order_by(CampaignMessage.channel, CampaignMessage.language, CampaignMessage.variant)
        )
    )


def _read_form(form: FormData) -> EditorForm:
    """The editor's state from a posted form."""

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    names = (
        "code", "name", "brand", "objective", "segment", "purpose", "starts_at", "ends_at",
        "priority", "expected_value", "fixed_cost", "control_percent", "attribution_days",
        "default_language", "status", "languages", "postal_delay_days", "margin_percent",
    )  # fmt: skip
    values = {name: text(name) for name in names}
    values["code"] = values["code"].lower()
    for channel in CHANNELS:
        values[f"cost.{channel}"] = text(f"cost.{channel}")
        values[f"window.{channel}"] = text(f"window.{channel}")
    channels: list[str] = []
    for rank in range(1, len(CHANNELS) + 1):
        chosen = text(f"channel_{rank}").lower()
        if chosen in CHANNELS and chosen not in channels:
            channels.append(chosen)
    default = values["default_language"].lower() or "fr"
    languages = [default]
    for item in re.split(r"[,\s;]+", values.pop("languages").lower()):
        if item and item not in languages:
            languages.append(item)
    variants = [DEFAULT_VARIANT]
    for raw in form.getlist("variant"):
        name = raw.strip().upper() if isinstance(raw, str) else ""
        if rules.VARIANT_NAME.fullmatch(name) and name not in variants:
            variants.append(name)
    variants.sort()
    shares = {v: text(f"share.{v}") for v in variants}
    messages: dict[tuple[str, str, str], dict[str, str]] = {}
    for key, raw in form.multi_items():
        parts = key.split(".")
        if len(parts) not in (4, 5) or parts[0] != "m" or not isinstance(raw, str):
            continue
        channel, language, part = parts[1], parts[2], parts[-1]
        variant = parts[3] if len(parts) == 5 else DEFAULT_VARIANT
        if part in ("subject", "text", "html") and variant in variants:
            found = messages.setdefault(
                (channel, language, variant), {"subject": "", "text": "", "html": ""}
            )
            found[part] = raw.replace("\r\n", "\n")
    return EditorForm(values, channels, languages, messages, variants, shares)


def apply_action(form: EditorForm, action: str) -> bool:
    """The editor's buttons that change the form rather than save it: refresh the message
    fields, add a variant (the next letter, its messages empty), remove a variant (not A).
    Returns whether the action was one of them (the page is then shown again, unsaved)."""
    if action == "refresh":
        return True
    if action == "add_variant":
        free = [name for name in VARIANT_NAMES if name not in form.variants]
        if free:
            form.variants.append(free[0])
            form.shares.setdefault(free[0], "")
        return True
    if action.startswith("remove_variant:"):
        name = action.removeprefix("remove_variant:")
        if name != DEFAULT_VARIANT and name in form.variants:
            form.variants.remove(name)
            form.shares.pop(name, None)
            form.messages = {k: v for k, v in form.messages.items() if k[2] != name}
        return True
    return False


def _number(raw: str) -> Decimal | None:
    """A decimal typed with a point or a comma (spaces allowed between thousands)."""
    try:
        value = Decimal(raw.replace("\u202f", "").replace(" ", "").replace(",", "."))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _when(raw: str) -> datetime | None:
    """A datetime-local value, read in Paris time, as UTC; ValueError when unreadable."""
    if not raw:
        return None
    return datetime.fromisoformat(raw).replace(tzinfo=PARIS).astimezone(UTC)


@dataclass
class Settings:
    """The editor's values checked and converted, ready for the service."""

    code: str
    name: str
    brand: str | None
    objective: str | None
    segment: str
    channels: list[str]
    purpose: str
    starts_at: datetime | None
    ends_at: datetime | None
    priority: int
    expected_value: Decimal
    fixed_cost: Decimal
    unit_costs: dict[str, str]
    control_share: float
    attribution_days: int
    default_language: str
    status: str
    variant_shares: dict[str, float] = field(default_factory=dict)
    # measurement (docs/measurement.md): windows per channel, letters' delivery, margin
    attribution_windows: dict[str, int] = field(default_factory=dict)
    postal_delay_days: int = 3
    margin_rate: float | None = None


def check_form(form: EditorForm, *, new: bool) -> tuple[Settings | None, dict[str, str]]:
    """The settings of a posted form, or the errors by field name (English messages that the
    page translates). Messages are checked separately (:func:`save_messages`)."""
    v = form.values
    errors: dict[str, str] = {}
    if new:
        if not service.CODE.fullmatch(v["code"]):
            errors["code"] = _("Lower-case letters, digits, - and _ only, up to 60 characters.")
        elif v["code"] in RESERVED:
            errors["code"] = _("This code names a page of the application: choose another one.")
    if not v["name"]:
        errors["name"] = _("Give the campaign a name.")
    if not v["segment"]:
        errors["segment"] = _("Choose the saved segment the campaign targets.")
    if not form.channels:
        errors["channels"] = _("Choose at least one channel.")
    if v["purpose"] not in PURPOSES:
        errors["purpose"] = _("Choose marketing or transactional.")
    starts = ends = None
    try:
        starts = _when(v["starts_at"])
    except ValueError:
        errors["starts_at"] = _("Not a date and time.")
    try:
        ends = _when(v["ends_at"])
    except ValueError:
        errors["ends_at"] = _("Not a date and time.")
    if starts is not None and ends is not None and ends <= starts:
        errors["ends_at"] = _("The end must come after the start.")
    priority = v["priority"] or "50"
    if not priority.isdigit() or not 0 <= int(priority) <= 1000:
        errors["priority"] = _("A whole number from 0 to 1000 (higher wins).")
    money: dict[str, Decimal] = {}
    for name in ("expected_value", "fixed_cost"):
        amount = _number(v[name] or "0")
        if amount is None or amount < 0 or amount >= Decimal("1e12"):
            errors[name] = _("An amount of 0 or more.")
        else:
            money[name] = amount.quantize(Decimal("0.01"))
    unit_costs: dict[str, str] = {}
    for channel in CHANNELS:
        raw = v.get(f"cost.{channel}", "")
        if not raw:
            continue
        amount = _number(raw)
        if amount is None or amount < 0 or amount >= Decimal("1e6"):
            errors[f"cost.{channel}"] = _("An amount of 0 or more.")
        elif channel in form.channels:
            unit_costs[channel] = format(amount.normalize(), "f")
    share = _number(v["control_percent"] or "0")
    if share is None or not 0 <= share <= 50:
        errors["control_percent"] = _("A percentage from 0 to 50.")
    days = v["attribution_days"] or "30"
    if not days.isdigit() or not 1 <= int(days) <= 365:
        errors["attribution_days"] = _("A number of days from 1 to 365.")
    windows: dict[str, int] = {}
    for channel in CHANNELS:
        raw = v.get(f"window.{channel}", "")
        if not raw:
            continue
        if not raw.isdigit() or not 1 <= int(raw) <= 365:
            errors[f"window.{channel}"] = _("A number of days from 1 to 365.")
        elif channel in form.channels:
            windows[channel] = int(raw)
    delay = v.get("postal_delay_days", "") or "3"
    if not delay.isdigit() or not 0 <= int(delay) <= 30:
        errors["postal_delay_days"] = _("A number of days from 0 to 30.")
    margin = _number(v.get("margin_percent", "")) if v.get("margin_percent") else None
    if v.get("margin_percent") and (margin is None or not 0 < margin <= 100):
        errors["margin_percent"] = _("A percentage above 0, at most 100.")
    languages = form.languages
    for language in languages:
        if not _LANGUAGE.fullmatch(language):
            key = "default_language" if language == languages[0] else "languages"
            errors[key] = _("Language codes such as fr, en or fr-be.")
    if v["status"] not in EDITABLE:
        errors["status"] = _("Choose draft or scheduled.")
    variant_shares = _check_shares(form, errors)
    if errors:
        return None, errors
    assert share is not None
    return Settings(
        code=v["code"],
        name=v["name"],
        brand=v["brand"] or None,
        objective=v["objective"] or None,
        segment=v["segment"],
        channels=list(form.channels),
        purpose=v["purpose"],
        starts_at=starts,
        ends_at=ends,
        priority=int(priority),
        expected_value=money["expected_value"],
        fixed_cost=money["fixed_cost"],
        unit_costs=unit_costs,
        control_share=float(share) / 100,
        attribution_days=int(days),
        default_language=languages[0],
        status=v["status"],
        variant_shares=variant_shares,
        attribution_windows=windows,
        postal_delay_days=int(delay),
        margin_rate=None if margin is None else float(margin) / 100,
    ), {}


def _check_shares(form: EditorForm, errors: dict[str, str]) -> dict[str, float]:
    """The variants' shares typed in percent, as fractions ({} for equal shares: one variant,
    or no share typed); an error under ``variants`` when some are missing, out of range or
    do not add up to 100."""
    if len(form.variants) < 2:
        return {}
    typed = {v: form.shares.get(v, "") for v in form.variants}
    if not any(typed.values()):
        return {}
    if not all(typed.values()):
        errors["variants"] = _(
            "Give every variant a share, or leave them all empty for equal shares."
        )
        return {}
    shares: dict[str, Decimal] = {}
    for name, raw in typed.items():
        value = _number(raw)
        if value is None or not 0 < value < 100:
            errors[f"share.{name}"] = _("A percentage above 0 and below 100.")
        else:
            shares[name] = value
    if len(shares) == len(typed) and abs(sum(shares.values(), Decimal(0)) - 100) > Decimal("0.01"):
        errors["variants"] = _("The shares of the variants must add up to 100 %.")
    if len(shares) != len(typed) or "variants" in errors:
        return {}
    return {name: float(value) / 100 for name, value in shares.items()}


def _service_error(error: service.CampaignError) -> dict[str, str]:
    """A service error as the editor's errors: next to the field it names (its message
    starts with the field's name), else at the top of the form."""
    head, _sep, rest = str(error).partition(":")
    fields = {
        "code": "code", "name": "name", "segment": "segment", "brand": "brand",
        "channels": "channels", "ends_at": "ends_at", "control_share": "control_percent",
        "attribution_days": "attribution_days", "variant_shares": "variants",
        "postal_delay_days": "postal_delay_days", "margin_rate": "margin_percent",
        "attribution_windows": "general",
    }  # fmt: skip
    if head.strip() in fields and rest:
        return {fields[head.strip()]: rest.strip()}
    return {"general": str(error)}


# --- helpers that belong in campaigns.service (see the report of this change) ---------------


def update_campaign(session: Session, campaign: Campaign, settings: Settings) -> Campaign:
    """Change a draft or scheduled campaign's settings (its code stays). Raises
    service.CampaignError naming the field on a bad value or a campaign no longer editable.
    Never commits."""
    if campaign.status not in EDITABLE:
        raise service.CampaignError(
            f"status: the campaign is {campaign.status}: only a draft or scheduled one changes"
        )
    segment = segment_service.get_by_code(session, code=settings.segment)
    if segment is None:
        raise service.CampaignError(f"segment: no saved segment {settings.segment!r}")
    brand_id = None
    if settings.brand is not None:
        brand_id = session.scalar(select(Brand.id).where(Brand.code == settings.brand))
        if brand_id is None:
            raise service.CampaignError(f"brand: no brand {settings.brand!r}")
    if not 0 <= settings.control_share <= 0.5:
        raise service.CampaignError("control_share: between 0 and 0.5")
    if not 1 <= settings.attribution_days <= 365:
        raise service.CampaignError("attribution_days: between 1 and 365")
    if (
        settings.starts_at is not None
        and settings.ends_at is not None
        and settings.ends_at <= settings.starts_at
    ):
        raise service.CampaignError("ends_at: after starts_at")
    campaign.name = settings.name
    campaign.brand_id = brand_id
    campaign.objective = settings.objective
    campaign.segment_id = segment.id
    campaign.channels = list(settings.channels)
    campaign.purpose = settings.purpose
    campaign.starts_at = settings.starts_at
    campaign.ends_at = settings.ends_at
    campaign.priority = settings.priority
    campaign.expected_value = settings.expected_value
    campaign.fixed_cost = settings.fixed_cost
    campaign.unit_costs = dict(settings.unit_costs)
    campaign.control_share = settings.control_share
    campaign.variant_shares = service.check_shares(settings.variant_shares, kind=campaign.kind)
    campaign.attribution_days = settings.attribution_days
    campaign.attribution_windows = service.check_windows(settings.attribution_windows)
    campaign.postal_delay_days = settings.postal_delay_days
    campaign.margin_rate = settings.margin_rate
    campaign.default_language = settings.default_language
    campaign.status = settings.status
    campaign.updated_at = utcnow()
    session.flush()
    return campaign


def cancel_campaign(session: Session, campaign: Campaign, *, now: datetime) -> int:
    """Cancel a campaign: its planned messages become ``cancelled`` (those being sent or
    already sent are left as they are) and the campaign ``cancelled``; returns the number of
    messages cancelled. Raises service.CampaignError for a campaign already done or
    cancelled. Never commits."""
    if campaign.status not in CANCELLABLE:
        raise service.CampaignError(f"campaign {campaign.code} is {campaign.status} already")
    result = session.execute(
        update(Outbox)
        .where(Outbox.campaign_id == campaign.id, Outbox.state == "planned")
        .values(state="cancelled", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    campaign.status = "cancelled"
    campaign.finished_at = now
    campaign.updated_at = now
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def _typed(form: EditorForm) -> list[tuple[str, str, str, str | None, str, str | None]]:
    """The messages of the form that have any text: (channel, language, variant, subject,
    text, html), for the channels chosen, the languages listed and the variants (a subject
    and HTML for e-mail only)."""
    out = []
    for channel in form.channels:
        rich = channel in RICH
        for language in form.languages:
            for variant in form.variants:
                typed = form.message(channel, language, variant)
                subject = typed["subject"] if rich else ""
                html = typed["html"] if rich else ""
                if subject.strip() or typed["text"].strip() or html.strip():
                    out.append(
                        (channel, language, variant, subject if rich else None, typed["text"],
                         html or None)
                    )  # fmt: skip
    return out


def check_messages(form: EditorForm) -> tuple[dict[str, str], dict[str, int]]:
    """Check the form's messages with ``templates.check_message`` (a marketing e-mail must
    carry an unsubscribe link), and that every variant has a message for each channel and
    language another one has; returns the errors by field (``m.CHANNEL.LANGUAGE.PART``,
    ``m.CHANNEL.LANGUAGE.VARIANT.PART`` for a variant other than A, ``variants``; English
    messages) and the line each one is on."""
    from tournesol.campaigns.templates import TemplateError, check_message

    errors: dict[str, str] = {}
    lines: dict[str, int] = {}
    typed = _typed(form)
    for channel, language, variant, subject, text, html in typed:
        try:
            check_message(
                subject=subject,
                body_text=text,
                body_html=html,
                channel=channel,
                marketing=form.values.get("purpose", "marketing") == "marketing",
            )
        except TemplateError as exc:
            key = f"{form.key(channel, language, variant)}.{exc.part}"
            errors[key] = exc.message
            if exc.line is not None:
                lines[key] = exc.line
    if len(form.variants) > 1:
        have = {(channel, language, variant) for channel, language, variant, *_ in typed}
        pairs = sorted({(channel, language) for channel, language, _ in have})
        for channel, language in pairs:
            for variant in form.variants:
                if (channel, language, variant) not in have:
                    errors[f"{form.key(channel, language, variant)}.text"] = _(
                        "Write this message too: the other variants have one."
                    )
                    errors.setdefault(
                        "variants",
                        _(
                            "Every variant needs a message on each channel and in each "
                            "language the other variants have."
                        ),
                    )
    return errors, lines


def save_messages(session: Session, campaign: Campaign, form: EditorForm) -> int:
    """Write the form's messages (checked first with :func:`check_messages`): one per channel,
    language and variant that has any text; messages left empty, of a channel no longer
    used, of a language no longer listed or of a variant removed are removed; then the
    variants are checked (``service.check_variants``). Returns the number of messages kept.
    Raises service.CampaignError from ``service.set_message`` or ``check_variants``. Never
    commits."""
    kept: set[tuple[str, str, str]] = set()
    for channel, language, variant, subject, text, html in _typed(form):
        service.set_message(
            session,
            campaign=campaign,
            channel=channel,
            language=language,
            subject=(subject or "").strip() or None,
            body_text=text,
            body_html=html,
            variant=variant,
        )
        kept.add((channel, language, variant))
    for message in _messages(session, campaign):
        if (message.channel, message.language, message.variant) not in kept:
            session.delete(message)
    session.flush()
    service.check_variants(session, campaign=campaign)
    return len(kept)


# --- list ----------------------------------------------------------------------------------


@router.get("/campaigns")
def list_page(request: Request, session: SessionDep, who: Viewer) -> Response:
    campaigns = service.list_campaigns(session)
    counts = campaign_results.summaries(session, [c.id for c in campaigns])
    brands = _names(session, Brand, {c.brand_id for c in campaigns})
    segments = _names(session, Segment, {c.segment_id for c in campaigns})
    rows = []
    for c in campaigns:
        moments = [t for t in (c.updated_at, c.planned_at, c.finished_at) if t is not None]
        rows.append(
            {
                "campaign": c,
                "brand": brands.get(c.brand_id),
                "segment": segments.get(c.segment_id),
                "summary": counts.get(c.id, campaign_results.Summary()),
                "last": max(moments) if moments else c.created_at,
            }
        )
    return render(
        request,
        "campaigns/list.html",
        {
            "nav": "campaigns",
            "rows": rows,
            "can_design": who.can(auth_rules.CAMPAIGNS_DESIGN),
            "notice": request.query_params.get("notice"),
            "local": _local,
        },
    )


def _names(session: Session, model: Any, ids: set[int | None]) -> dict[int | None, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {
        i: n for i, n in session.execute(select(model.id, model.name).where(model.id.in_(wanted)))
    }


def _local(value: datetime | None) -> datetime | None:
    """A UTC time in Paris time, for display."""
    return value.astimezone(PARIS) if value is not None else None


# --- editor --------------------------------------------------------------------------------


def _campaign(session: Session, code: str) -> Campaign:
    found = service.get_by_code(session, code=code)
    if found is None:
        raise HTTPException(404, f"there is no campaign {code!r}")
    return found


def _editor_page(
    request: Request,
    session: Session,
    form: EditorForm,
    *,
    campaign: Campaign | None,
    errors: dict[str, str] | None = None,
    lines: dict[str, int] | None = None,
    status: int = 200,
) -> Response:
    return render(
        request,
        "campaigns/editor.html",
        {"nav": "campaigns", **_editor_context(session, form, campaign, errors, lines)},
        status=status,
    )


def _editor_context(
    session: Session,
    form: EditorForm,
    campaign: Campaign | None,
    errors: dict[str, str] | None = None,
    lines: dict[str, int] | None = None,
) -> dict[str, Any]:
    from tournesol.campaigns.templates import FIELDS, LINKS

    return {
        "form": form,
        "campaign": campaign,
        "errors": errors or {},
        "lines": lines or {},
        "brands": list(session.execute(select(Brand.code, Brand.name).order_by(Brand.name))),
        "segments": [(s.code, s.name) for s in segment_service.list_segments(session)],
        "channels": CHANNELS,
        "rich": RICH,
        "purposes": PURPOSES,
        "fields": FIELDS,
        "links": LINKS,
        "saved_messages": {(m.channel, m.language, m.variant) for m in _messages(session, campaign)}
        if campaign is not None
        else set(),
    }


@router.get("/campaigns/new")
def new_page(request: Request, session: SessionDep, who: Designer) -> Response:
    """An empty editor."""
    return _editor_page(request, session, _blank_form(), campaign=None)


@router.post("/campaigns/editor")
async def messages_fragment(request: Request, session: SessionDep, who: Designer) -> Response:
    """The message fields for the channels and languages chosen in the editor (htmx), what
    was typed kept."""
    form = _read_form(await request.form())
    code = form.values.get("code", "")
    campaign = service.get_by_code(session, code=code) if code else None
    return render(request, "campaigns/_messages.html", _editor_context(session, form, campaign))


@router.post("/campaigns/new")
async def create_campaign(request: Request, session: SessionDep, who: Designer) -> Response:
    posted = await request.form()
    form = _read_form(posted)
    # the message fields, a variant added or removed, without JavaScript
    if apply_action(form, str(posted.get("action") or "")):
        return _editor_page(request, session, form, campaign=None)
    return _save(request, session, who, form, campaign=None)


def _save(
    request: Request,
    session: Session,
    who: Principal,
    form: EditorForm,
    *,
    campaign: Campaign | None,
) -> Response:
    settings, errors = check_form(form, new=campaign is None)
    message_errors, lines = check_messages(form)
    errors |= message_errors
    if settings is not None and not errors:
        try:
            if campaign is None:
                saved = service.create(
                    session,
                    code=settings.code,
                    name=settings.name,
                    segment=settings.segment,
                    channels=settings.channels,
                    brand=settings.brand,
                    objective=settings.objective,
                    purpose=settings.purpose,
                    starts_at=settings.starts_at,
                    ends_at=settings.ends_at,
                    priority=settings.priority,
                    expected_value=settings.expected_value,
                    fixed_cost=settings.fixed_cost,
                    unit_costs=settings.unit_costs,
                    control_share=settings.control_share,
                    attribution_days=settings.attribution_days,
                    attribution_windows=settings.attribution_windows,
                    postal_delay_days=settings.postal_delay_days,
                    margin_rate=settings.margin_rate,
                    default_language=settings.default_language,
                    variant_shares=settings.variant_shares,
                    created_by=who.name,
                )
                saved.status = settings.status
            else:
                saved = update_campaign(session, campaign, settings)
            kept = save_messages(session, saved, form)
        except service.CampaignError as exc:
            errors = _service_error(exc)
        else:
            auth_service.audit(
                session,
                principal=who,
                action="campaign.create" if campaign is None else "campaign.update",
                details={
                    "campaign": saved.code,
                    "channels": saved.channels,
                    "messages": kept,
                    "variants": sorted(form.variants),
                },
            )
            session.commit()
            return RedirectResponse(f"/campaigns/{saved.code}?notice=saved", status_code=303)
    session.rollback()
    if campaign is not None:
        campaign = _campaign(session, campaign.code)
    return _editor_page(
        request, session, form, campaign=campaign, errors=errors, lines=lines, status=400
    )


@router.get("/campaigns/{code}/edit")
def edit_page(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    campaign = _campaign(session, code)
    if campaign.status not in EDITABLE:
        raise HTTPException(409, f"the campaign is {campaign.status}: it can no longer change")
    return _editor_page(request, session, form_of(session, campaign), campaign=campaign)


@router.post("/campaigns/{code}/edit")
async def update_page(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    campaign = _campaign(session, code)
    if campaign.status not in EDITABLE:
        raise HTTPException(409, f"the campaign is {campaign.status}: it can no longer change")
    posted = await request.form()
    form = _read_form(posted)
    form.values["code"] = campaign.code
    if apply_action(form, str(posted.get("action") or "")):
        return _editor_page(request, session, form, campaign=campaign)
    return _save(request, session, who, form, campaign=campaign)


@router.get("/campaigns/{code}/preview")
def preview_fragment(
    request: Request,
    session: SessionDep,
    who: Designer,
    code: str,
    channel: str,
    language: str,
    reason: str = "",
    variant: str = DEFAULT_VARIANT,
) -> Response:
    """The saved message on a channel in a language (of a variant: A by default), rendered
    for the first customers of the segment (``customers:read``: audited), or with each field
    shown by name for roles without personal data."""
    from tournesol.campaigns.templates import (
        FIELDS,
        PREVIEW_LINKS,
        MessageRenderer,
        TemplateError,
        check_message,
        preview,
    )

    campaign = _campaign(session, code)
    message = session.scalar(
        select(CampaignMessage).where(
            CampaignMessage.campaign_id == campaign.id,
            CampaignMessage.channel == channel,
            CampaignMessage.language == language,
            CampaignMessage.variant == variant,
        )
    )
    if message is None:
        raise HTTPException(404, "this campaign has no message on this channel in this language")
    personal = who.can(auth_rules.CUSTOMERS_READ)
    shown: list[tuple[int | None, Any]] = []
    used: list[str] = []
    error = None
    try:
        used = check_message(
            subject=message.subject,
            body_text=message.body_text,
            body_html=message.body_html,
            channel=channel,
            marketing=False,
        )
        if personal:
            shown = [
                (cid, r)
                for cid, r in preview(
                    session,
                    campaign,
                    channel=channel,
                    language=language,
                    limit=PREVIEW_LIMIT,
                    variant=variant,
                )
            ]
        else:
            placeholders = {name: f"[{name}]" for name in FIELDS}
            rendered = MessageRenderer(message).render(placeholders | dict(PREVIEW_LINKS))
            shown = [(None, rendered)]
    except TemplateError as exc:
        error = str(exc)
    except DefinitionError as exc:
        error = f"the segment no longer compiles: {exc.path}: {exc.message}"
    if personal and shown:
        auth_service.audit(
            session,
            principal=who,
            action="campaign.preview",
            reason=reason or None,
            details={
                "campaign": campaign.code,
                "channel": channel,
                "language": language,
                "variant": variant,
                "count": len(shown),
            },
        )
        session.commit()
    return render(
        request,
        "campaigns/_preview.html",
        {
            "campaign": campaign,
            "channel": channel,
            "language": language,
            "shown": shown,
            "personal": personal,
            "used": [(name, FIELDS[name]) for name in used if name in FIELDS],
            "error": error,
        },
    )


# --- dry run, plan, cancel, attribution ------------------------------------------------------


def _others(session: Session, campaign: Campaign) -> list[Campaign]:
    """The other scheduled campaigns, which a plan arbitrates against."""
    return list(
        session.scalars(
            select(Campaign)
            .where(Campaign.status == "scheduled", Campaign.id != campaign.id)
            .order_by(Campaign.priority.desc(), Campaign.code)
        )
    )


# The box "with the other scheduled campaigns" of the dry-run and plan forms.
WithScheduled = Annotated[str | None, Form()]


def _ticked(value: str | None) -> bool:
    return value in ("1", "on", "true")


@router.post("/campaigns/{code}/dry-run")
def dry_run(
    request: Request,
    session: SessionDep,
    who: Designer,
    code: str,
    with_scheduled: WithScheduled = None,
) -> Response:
    """What a plan would do, written nowhere: the campaign alone, and with the box ticked,
    together with the other scheduled campaigns."""
    from tournesol.campaigns.setup import policies

    campaign = _campaign(session, code)
    together = _ticked(with_scheduled)
    others = _others(session, campaign) if together else []
    now = utcnow()
    error = None
    alone = None
    joint: list[service.PlanReport] = []
    try:
        chosen = policies(request.app.state.settings)
        [alone] = service.plan(
            session, campaigns=[campaign], now=now, policies=chosen, dry_run=True
        )
        if others:
            joint = service.plan(
                session, campaigns=[campaign, *others], now=now, policies=chosen, dry_run=True
            )
    except service.CampaignError as exc:
        error = str(exc)
    except DefinitionError as exc:
        error = f"the segment no longer compiles: {exc.path}: {exc.message}"
    session.rollback()  # a dry run writes nothing; the audit row below is the only write
    campaign = _campaign(session, code)
    mine = next((r for r in joint if r.code == campaign.code), None)
    auth_service.audit(
        session,
        principal=who,
        action="campaign.dry_run",
        details={
            "campaign": campaign.code,
            "with": [c.code for c in others],
            "planned": alone.planned if alone is not None else None,
        },
    )
    session.commit()
    return render(
        request,
        "campaigns/dry_run.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "error": error,
            "alone": alone,
            "alone_rows": campaign_results.funnel_rows(alone) if alone else [],
            "alone_exclusions": campaign_results.exclusions_of(alone.excluded) if alone else [],
            "joint": mine,
            "joint_rows": campaign_results.funnel_rows(mine) if mine else [],
            "joint_exclusions": campaign_results.exclusions_of(mine.excluded) if mine else [],
            "others": [r for r in joint if r.code != campaign.code],
            "together": together,
            "at": _local(now),
        },
        status=400 if error else 200,
    )


@router.post("/campaigns/{code}/plan")
def plan(
    request: Request,
    session: SessionDep,
    who: Designer,
    code: str,
    with_scheduled: WithScheduled = None,
) -> Response:
    """Plan the campaign for real (with the other scheduled campaigns when the box is
    ticked): targets, outbox rows and timeline rows written, then the campaign page."""
    from tournesol.campaigns.setup import SetupError, policies

    campaign = _campaign(session, code)
    others = _others(session, campaign) if _ticked(with_scheduled) else []
    now = utcnow()
    try:
        reports = service.plan(
            session,
            campaigns=[campaign, *others],
            now=now,
            policies=policies(request.app.state.settings),
        )
    except (service.CampaignError, SetupError) as exc:
        session.rollback()
        raise HTTPException(409, str(exc)) from None
    except DefinitionError as exc:
        session.rollback()
        message = f"the segment no longer compiles: {exc.path}: {exc.message}"
        raise HTTPException(409, message) from None
    auth_service.audit(
        session,
        principal=who,
        action="campaign.plan",
        details={
            "campaigns": {r.code: {"planned": r.planned, "control": r.control} for r in reports}
        },
    )
    session.commit()
    return RedirectResponse(f"/campaigns/{campaign.code}?notice=planned", status_code=303)


@router.post("/campaigns/{code}/cancel")
def cancel(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    campaign = _campaign(session, code)
    try:
        cancelled = cancel_campaign(session, campaign, now=utcnow())
    except service.CampaignError as exc:
        session.rollback()
        raise HTTPException(409, str(exc)) from None
    auth_service.audit(
        session,
        principal=who,
        action="campaign.cancel",
        details={"campaign": campaign.code, "messages_cancelled": cancelled},
    )
    session.commit()
    return RedirectResponse(f"/campaigns/{campaign.code}?notice=cancelled", status_code=303)


@router.post("/campaigns/{code}/attribute")
def attribute(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    """Attribute the purchases made since the campaign's messages went out."""
    campaign = _campaign(session, code)
    added = campaign_results.attribute(session, now=utcnow(), campaign_ids=[campaign.id])
    auth_service.audit(
        session,
        principal=who,
        action="campaign.attribute",
        details={"campaign": campaign.code, "attributed": added},
    )
    session.commit()
    return RedirectResponse(f"/campaigns/{campaign.code}?notice=attributed", status_code=303)


# --- one campaign --------------------------------------------------------------------------


def _planned_shares(
    campaign: Campaign, messages: list[CampaignMessage]
) -> tuple[tuple[str, float], ...]:
    """The variants of the messages with their shares, when there are several (and they add
    up: a plan refuses them otherwise, and says why)."""
    names = sorted({m.variant for m in messages})
    if len(names) < 2:
        return ()
    try:
        return rules.variant_shares(names, campaign.variant_shares)
    except ValueError:
        return ()


def variant_rows(
    session: Session, campaign: Campaign, messages: list[CampaignMessage]
) -> list[tuple[str, int]] | None:
    """The planned targets by A/B variant (targets planned before variants existed count as
    A), or None for a campaign with one variant."""
    if len({m.variant for m in messages}) < 2:
        return None
    t = CampaignTarget
    counts: Counter[str] = Counter()
    for variant, n in session.execute(
        select(t.variant, func.count())
        .where(t.campaign_id == campaign.id, t.group == "target")
        .group_by(t.variant)
    ):
        counts[variant or DEFAULT_VARIANT] += int(n)
    return sorted(counts.items())


@router.get("/campaigns/{code}")
def campaign_page(request: Request, session: SessionDep, who: Viewer, code: str) -> Response:
    campaign = _campaign(session, code)
    planned = campaign.planned_at is not None or bool(
        session.scalar(select(func.count()).where(CampaignTarget.campaign_id == campaign.id))
    )
    found = campaign_results.results(session, campaign, now=utcnow()) if planned else None
    messages = _messages(session, campaign)
    brand = session.get(Brand, campaign.brand_id) if campaign.brand_id is not None else None
    segment = session.get(Segment, campaign.segment_id) if campaign.segment_id else None
    can_design = who.can(auth_rules.CAMPAIGNS_DESIGN)
    return render(
        request,
        "campaigns/detail.html",
        {
            "nav": "campaigns",
            "campaign": campaign,
            "brand": brand,
            "segment": segment,
            "messages": messages,
            "variants": variant_rows(session, campaign, messages) if planned else None,
            "shares": _planned_shares(campaign, messages),
            "results": found,
            "others": _others(session, campaign) if can_design else [],
            "can_design": can_design,
            "editable": campaign.status in EDITABLE,
            "cancellable": campaign.status in CANCELLABLE,
            "rich": RICH,
            "notice": request.query_params.get("notice"),
            "local": _local,
            "unit_cost": lambda ch: campaign_results.unit_cost(campaign, ch),
        },
    )
