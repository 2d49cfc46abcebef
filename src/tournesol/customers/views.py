"""Customer pages: the search box with instant results, and the 360-degree page of one
customer (golden record with provenance, identifiers, consents and preferences, timeline,
purchases, source records, organisations, merge history), with the advisor's forms.

Every search writes a ``customer.search`` audit row (the count, never the text typed: it is
personal data); every read of one customer's page or timeline a ``customer.read`` or
``customer.timeline`` row; every change its own row, in the change's transaction."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.consent import rules as consent_rules
from tournesol.consent import service as consent_service
from tournesol.customers import search as search_service
from tournesol.customers import view360
from tournesol.identity import service as identity_service
from tournesol.interactions import service as history_service
from tournesol.scoring.rules import RFM_SEGMENTS
from tournesol.web.deps import SessionDep, render, require

RFM_NAMES = {s.code: s.name for s in RFM_SEGMENTS}

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require(rules.CUSTOMERS_READ))]
Writer = Annotated[Principal, Depends(require(rules.CUSTOMERS_READ, rules.CUSTOMERS_WRITE))]
Unmerger = Annotated[Principal, Depends(require(rules.CUSTOMERS_READ, rules.IDENTITY_UNMERGE))]
RESULTS = 20
TIMELINE_PAGE = 20
NOTICES = ("consent", "preference", "interaction", "unmerged")


def actor_of(principal: Principal) -> str:
    """How a web user is named in proofs, logged contacts and merge events."""
    return f"web:{principal.name}"[:100]


# --- search --------------------------------------------------------------------------------
@router.get("/customers")
def search_page(
    request: Request, session: SessionDep, who: Reader, q: str = "", reason: str = ""
) -> Response:
    """The search page; an htmx request gets the results fragment only."""
    text = q.strip()[:200]
    hits: list[search_service.SearchHit] = []
    kind = "empty"
    if text:
        kind = search_service.parse_query(text).kind
        hits = search_service.search(session, q=text, limit=RESULTS)
        # Not the text typed: it is personal data. What kind of text it was, and the count.
        auth_service.audit(
            session,
            principal=who,
            action="customer.search",
            details={"kind": kind, "count": len(hits)},
        )
        session.commit()
    context = {
        "nav": "customers",
        "q": text,
        "reason": reason.strip()[:200],
        "hits": hits,
        "kind": kind,
        "limit": RESULTS,
    }
    if request.headers.get("hx-request") and request.headers.get("hx-target") == "results":
        return render(request, "customers/_results.html", context)
    return render(request, "customers/search.html", context)


# --- the 360 page --------------------------------------------------------------------------
def _day(text: str | None, *, end: bool = False) -> datetime | None:
    """A date field of the filter form as a UTC instant (the day's start, or its end)."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None
    moment = datetime.combine(day, time.min, tzinfo=UTC)
    return moment + timedelta(days=1, microseconds=-1) if end else moment


def _filters(
    channel: str | None,
    direction: str | None,
    type: str | None,
    since: str | None,
    until: str | None,
) -> dict[str, str]:
    values = {
        "channel": (channel or "").strip(),
        "direction": (direction or "").strip(),
        "type": (type or "").strip(),
        "since": (since or "").strip() if _day(since) else "",
        "until": (until or "").strip() if _day(until) else "",
    }
    return values


def _timeline(
    session: Session, customer_id: int, filters: dict[str, str], cursor: str | None
) -> view360.TimelinePage:
    try:
        return view360.timeline(
            session,
            customer_id=customer_id,
            channels=[filters["channel"]] if filters["channel"] else (),
            directions=[filters["direction"]] if filters["direction"] else (),
            types=[filters["type"]] if filters["type"] else (),
            since=_day(filters["since"]),
            until=_day(filters["until"], end=True),
            cursor=cursor or None,
            limit=TIMELINE_PAGE,
        )
    except view360.CursorError as exc:
        raise HTTPException(400, str(exc)) from None


def _more_url(customer_id: int, filters: dict[str, str], cursor: str | None) -> str | None:
    if not cursor:
        return None
    query = {k: v for k, v in filters.items() if v} | {"cursor": cursor}
    return f"/customers/{customer_id}/timeline?{urlencode(query)}"


def _view_or_redirect(
    session: Session, customer_id: int, request: Request
) -> view360.Customer360 | Response:
    view = view360.customer_360(session, customer_id=customer_id)
    if view is None:
        raise HTTPException(404, f"there is no customer {customer_id}")
    if view.status == "active":
        return view
    if view.survivor_id is not None and view.survivor_id != customer_id:
        query = {"merged_from": str(customer_id)}
        if request.query_params.get("reason"):
            query["reason"] = request.query_params["reason"]
        return RedirectResponse(
            f"/customers/{view.survivor_id}?{urlencode(query)}", status_code=303
        )
    raise HTTPException(410, f"customer {customer_id} was erased")


def _page(
    request: Request,
    session: SessionDep,
    who: Principal,
    view: view360.Customer360,
    *,
    filters: dict[str, str],
    cursor: str | None = None,
    reason: str = "",
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    page = _timeline(session, view.customer_id, filters, cursor)
    facets = view360.timeline_facets(session, customer_id=view.customer_id)
    auth_service.audit(
        session,
        principal=who,
        action="customer.read",
        customer_id=view.customer_id,
        reason=reason or None,
    )
    session.commit()
    merged_from = request.query_params.get("merged_from", "")
    return render(
        request,
        "customers/detail.html",
        {
            "nav": "customers",
            "c": view,
            "records_by_id": {r.id: r for r in view.records},
            "rfm_names": RFM_NAMES,
            "page": page,
            "facets": facets,
            "filters": filters,
            "cursor": cursor,
            "more_url": _more_url(view.customer_id, filters, page.next_cursor),
            "reason": reason,
            "notice": notice if notice in NOTICES else None,
            "merged_from": int(merged_from) if merged_from.isdigit() else None,
            "unmerged": request.query_params.get("absorbed", ""),
            "errors": errors or {},
            "form": form or {},
            "consent_channels": consent_rules.CHANNELS,
            "consent_statuses": consent_rules.STATUSES,
            "interaction_channels": history_service.INTERACTION_CHANNELS,
            "directions": history_service.DIRECTIONS,
            "days": consent_rules.DAYS,
            "today": datetime.now(UTC).date().isoformat(),
        },
        status=status,
    )


@router.get("/customers/{customer_id}")
def customer_page(
    request: Request,
    session: SessionDep,
    who: Reader,
    customer_id: int,
    reason: str = "",
    notice: str | None = None,
    channel: str | None = None,
    direction: str | None = None,
    type: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
) -> Response:
    found = _view_or_redirect(session, customer_id, request)
    if isinstance(found, Response):
        return found
    return _page(
        request,
        session,
        who,
        found,
        filters=_filters(channel, direction, type, since, until),
        cursor=cursor,
        reason=reason.strip()[:200],
        notice=notice,
    )


@router.get("/customers/{customer_id}/timeline")
def timeline_fragment(
    request: Request,
    session: SessionDep,
    who: Reader,
    customer_id: int,
    channel: str | None = None,
    direction: str | None = None,
    type: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
) -> Response:
    """The timeline for htmx: the whole list for a filter change, or the next items and the
    next "more" button for a cursor. Without htmx, the customer page with these filters."""
    filters = _filters(channel, direction, type, since, until)
    if not request.headers.get("hx-request"):
        query = {k: v for k, v in filters.items() if v} | ({"cursor": cursor} if cursor else {})
        suffix = f"?{urlencode(query)}" if query else ""
        return RedirectResponse(f"/customers/{customer_id}{suffix}#timeline", status_code=303)
    if view360.survivor_of(session, customer_id=customer_id) != customer_id:
        raise HTTPException(404, f"there is no active customer {customer_id}")
    page = _timeline(session, customer_id, filters, cursor)
    auth_service.audit(
        session,
        principal=who,
        action="customer.timeline",
        customer_id=customer_id,
        details={"items": len(page.items), **{k: v for k, v in filters.items() if v}},
    )
    session.commit()
    return render(
        request,
        "customers/_timeline.html",
        {
            "customer_id": customer_id,
            "page": page,
            "filters": filters,
            "more_url": _more_url(customer_id, filters, page.next_cursor),
            "appending": bool(cursor),
        },
    )


# --- changes -------------------------------------------------------------------------------
def _active(session: Session, customer_id: int, request: Request) -> view360.Customer360:
    found = _view_or_redirect(session, customer_id, request)
    if isinstance(found, Response):
        raise HTTPException(409, f"customer {customer_id} was merged: open its survivor")
    return found


def _back(customer_id: int, notice: str, anchor: str, **extra: str) -> Response:
    query = urlencode({"notice": notice, **extra})
    return RedirectResponse(f"/customers/{customer_id}?{query}#{anchor}", status_code=303)


def _invalid(
    request: Request,
    session: SessionDep,
    who: Principal,
    customer_id: int,
    errors: dict[str, str],
    form: dict[str, str],
) -> Response:
    session.rollback()
    view = _active(session, customer_id, request)
    return _page(
        request,
        session,
        who,
        view,
        filters=_filters(None, None, None, None, None),
        errors=errors,
        form=form,
        status=400,
    )


@router.post("/customers/{customer_id}/consents")
def record_consent(
    request: Request,
    session: SessionDep,
    who: Writer,
    customer_id: int,
    channel: Annotated[str, Form()],
    status: Annotated[str, Form()],
    proof_source: Annotated[str, Form()] = "",
    text_version: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "marketing",
    collected_on: Annotated[str, Form()] = "",
) -> Response:
    view = _active(session, customer_id, request)
    form = {
        "form": "consent",
        "channel": channel,
        "status": status,
        "proof_source": proof_source,
        "text_version": text_version,
        "purpose": purpose,
        "collected_on": collected_on,
    }
    collected = datetime.now(UTC)
    if collected_on.strip():
        day = _day(collected_on)
        if day is None or day.date() > collected.date():
            return _invalid(
                request,
                session,
                who,
                customer_id,
                {"consent": "collected_on: a past date (YYYY-MM-DD)"},
                form,
            )
        if day.date() < collected.date():
            collected = day + timedelta(hours=12)
    try:
        row = consent_service.set_consent(
            session,
            customer_id=view.customer_id,
            channel=channel,
            purpose=purpose or "marketing",
            brand_id=None,
            status=status,
            proof_source=proof_source,
            proof_text_version=text_version,
            collected_at=collected,
            actor=actor_of(who),
        )
    except consent_rules.ConsentRuleError as exc:
        return _invalid(request, session, who, customer_id, {"consent": str(exc)}, form)
    auth_service.audit(
        session,
        principal=who,
        action="customer.consent",
        customer_id=customer_id,
        details={"consent_id": row.id, "channel": row.channel, "status": row.status},
    )
    session.commit()
    return _back(customer_id, "consent", "consents")


@router.post("/customers/{customer_id}/preferences")
def record_preference(
    request: Request,
    session: SessionDep,
    who: Writer,
    customer_id: int,
    channel: Annotated[str, Form()],
    preferred: Annotated[str, Form()] = "",
    days: Annotated[list[str] | None, Form()] = None,
    hours: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    max_per_week: Annotated[str, Form()] = "",
) -> Response:
    view = _active(session, customer_id, request)
    form = {
        "form": "preference",
        "channel": channel,
        "preferred": preferred,
        "days": ",".join(days or []),
        "hours": hours,
        "language": language,
        "max_per_week": max_per_week,
    }
    cap = max_per_week.strip()
    if cap and not cap.isdigit():
        return _invalid(
            request,
            session,
            who,
            customer_id,
            {"preference": "max_per_week: a whole number"},
            form,
        )
    try:
        row = consent_service.set_preference(
            session,
            customer_id=view.customer_id,
            channel=channel,
            preferred=bool(preferred),
            days=",".join(days) if days else None,
            hours=hours or None,
            language=language or None,
            max_per_week=int(cap) if cap else None,
        )
    except consent_rules.ConsentRuleError as exc:
        return _invalid(request, session, who, customer_id, {"preference": str(exc)}, form)
    auth_service.audit(
        session,
        principal=who,
        action="customer.preference",
        customer_id=customer_id,
        details={"channel": row.channel},
    )
    session.commit()
    return _back(customer_id, "preference", "consents")


@router.post("/customers/{customer_id}/interactions")
def log_interaction(
    request: Request,
    session: SessionDep,
    who: Writer,
    customer_id: int,
    channel: Annotated[str, Form()],
    direction: Annotated[str, Form()],
    type: Annotated[str, Form()],
    subject: Annotated[str, Form()] = "",
    outcome: Annotated[str, Form()] = "",
) -> Response:
    view = _active(session, customer_id, request)
    form = {
        "form": "interaction",
        "channel": channel,
        "direction": direction,
        "type": type,
        "subject": subject,
        "outcome": outcome,
    }
    try:
        row = history_service.add_interaction(
            session,
            customer_id=view.customer_id,
            channel=channel,
            direction=direction,
            type=type,
            occurred_at=None,
            subject=subject or None,
            outcome=outcome or None,
            payload={"entered_with": "web"},
            actor=actor_of(who),
        )
    except history_service.InteractionError as exc:
        return _invalid(request, session, who, customer_id, {"interaction": str(exc)}, form)
    auth_service.audit(
        session,
        principal=who,
        action="customer.interaction",
        customer_id=customer_id,
        details={"interaction_id": row.id, "channel": row.channel, "type": row.type},
    )
    session.commit()
    return _back(customer_id, "interaction", "timeline")


@router.post("/customers/{customer_id}/merges/{event_id}/undo")
def undo_merge(
    request: Request,
    session: SessionDep,
    who: Unmerger,
    customer_id: int,
    event_id: int,
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Undo one merge of this customer: the absorbed customer comes back with its records."""
    view = _active(session, customer_id, request)
    event = next((m for m in view.merges if m.event_id == event_id), None)
    if event is None:
        raise HTTPException(404, f"merge {event_id} is not one of customer {customer_id}'s")
    try:
        identity_service.unmerge_event(
            session, event_id, actor=actor_of(who), reason=reason.strip()[:1000] or None
        )
    except identity_service.IdentityError as exc:
        session.rollback()
        raise HTTPException(409, str(exc)) from None
    auth_service.audit(
        session,
        principal=who,
        action="customer.unmerge",
        customer_id=customer_id,
        reason=reason,
        details={
            "event_id": event_id,
            "survivor_id": event.survivor_id,
            "absorbed_id": event.absorbed_id,
        },
    )
    session.commit()
    return _back(customer_id, "unmerged", "merges", absorbed=str(event.absorbed_id))
