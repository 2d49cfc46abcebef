"""Segment pages: the list with sizes and trends, the builder (a form of conditions with a live
count, or the definition as JSON/YAML text), a saved segment's page (history, preview of its
members), its profile against the whole base, and the overlap of several segments.

Counts, profiles, overlaps, the list and the builder need ``aggregates:read``; saving,
refreshing and archiving ``campaigns:design``. The preview names members only for
``customers:read`` (and writes a ``segment.preview`` audit row with the count); others see
non-personal fields of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.consent import rules as consent_rules
from tournesol.scoring import rules as scoring_rules
from tournesol.segments import builder, service
from tournesol.segments import rules as segment_rules
from tournesol.segments.compiler import DefinitionError
from tournesol.segments.models import Segment
from tournesol.segments.schemas import OPS
from tournesol.web.deps import SessionDep, render, require

router = APIRouter(include_in_schema=False)

Viewer = Annotated[Principal, Depends(require(rules.AGGREGATES_READ))]
Designer = Annotated[Principal, Depends(require(rules.AGGREGATES_READ, rules.CAMPAIGNS_DESIGN))]
PREVIEW = 20
HISTORY = 30
# Paths of the fixed pages: no segment may take one of these codes.
RESERVED = frozenset({"new", "builder", "count", "profile", "overlap", "refresh"})


def _segment(session: Session, code: str) -> Segment:
    found = service.get_by_code(session, code=code)
    if found is None:
        raise HTTPException(404, f"there is no segment {code!r}")
    return found


async def _form_state(request: Request) -> tuple[builder.FormState, dict[str, str]]:
    """The builder's state and the segment fields (code, name, description) of a posted form."""
    form = await request.form()
    items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    details = {
        key: str(form.get(key) or "").strip()
        for key in ("code", "name", "description", "action", "shown_mode")
    }
    return builder.parse_form(items), details


def _options(session: Session) -> dict[str, Any]:
    """What the builder's selects offer."""
    return {
        "kinds": builder.KINDS,
        "ops": OPS,
        "attributes": builder.ATTRIBUTES,
        "reachable": builder.REACHABLE,
        "consent_channels": consent_rules.CHANNELS,
        "consent_statuses": builder.CONSENT_STATUSES,
        "preference_kinds": builder.PREFERENCE_KINDS,
        "days": builder.DAYS,
        "behaviour_of": builder.BEHAVIOUR_OF,
        "measures": builder.MEASURES,
        "windows": builder.WINDOWS,
        "where_lists": builder.WHERE_LISTS,
        "directions": builder.DIRECTIONS,
        "rfm_segments": scoring_rules.RFM_SEGMENTS,
        "saved": [(s.code, s.name) for s in service.list_segments(session)],
        "score_models": service.score_models(session),
        "region_names": segment_rules.REGIONS,
    }


def _count_context(session: Session, state: builder.FormState) -> dict[str, Any]:
    """The live count of the form's complete conditions (those still waiting for a value are
    left out and named), or the error with its node's path and the row it points into."""
    try:
        found = builder.draft(state)
        result = service.count(session, found.definition)
    except builder.FormError as exc:
        return {"error": str(exc), "error_path": exc.path, "error_row": None, "waiting": ()}
    except DefinitionError as exc:
        return {
            "error": exc.message,
            "error_path": exc.path,
            "error_row": builder.error_row(exc.path, state, found.kept),
            "waiting": found.waiting,
        }
    return {"result": result, "waiting": found.waiting}


def _builder_page(
    request: Request,
    session: Session,
    who: Principal,
    state: builder.FormState,
    *,
    segment: Segment | None = None,
    details: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    values = details or {}
    if segment is not None:
        values = (
            {"code": segment.code, "name": segment.name}
            | {"description": segment.description or ""}
            | {k: v for k, v in values.items() if k in ("name", "description") and v}
        )
    return render(
        request,
        "segments/builder.html",
        {
            "nav": "segments",
            "state": state,
            "segment": segment,
            "details": values,
            "errors": errors or {},
            "notice": notice,
            "can_save": who.can(rules.CAMPAIGNS_DESIGN),
            "count": _count_context(session, state),
            **_options(session),
        },
        status=status,
    )


# --- list ----------------------------------------------------------------------------------


@router.get("/segments")
def list_page(
    request: Request, session: SessionDep, who: Viewer, archived: bool = False
) -> Response:
    segments = service.list_segments(session, include_archived=archived)
    history = service.snapshots(session, segment_ids=[s.id for s in segments], last=HISTORY)
    rows = []
    for segment in segments:
        sizes = [s.size for s in history.get(segment.id, [])]
        change = sizes[-1] - sizes[-2] if len(sizes) >= 2 else None
        rows.append({"segment": segment, "sizes": sizes, "change": change})
    return render(
        request,
        "segments/list.html",
        {
            "nav": "segments",
            "rows": rows,
            "archived": archived,
            "can_save": who.can(rules.CAMPAIGNS_DESIGN),
            "notice": request.query_params.get("notice"),
        },
    )


@router.post("/segments/refresh")
def refresh_all(request: Request, session: SessionDep, who: Designer) -> Response:
    """Refresh every segment of the list."""
    done = service.refresh_all(session)
    auth_service.audit(
        session,
        principal=who,
        action="segment.refresh",
        details={
            "segments": len(done),
            "entered": sum(s.entered for s in done),
            "left": sum(s.left for s in done),
        },
    )
    session.commit()
    return RedirectResponse("/segments?notice=refreshed", status_code=303)


# --- builder -------------------------------------------------------------------------------


@router.get("/segments/new")
def new_page(
    request: Request, session: SessionDep, who: Viewer, copy: str | None = None
) -> Response:
    """An empty builder, or one holding a copy of a saved segment's definition."""
    state = builder.FormState(rows=[builder.Row()])
    details: dict[str, str] = {}
    if copy:
        original = _segment(session, copy)
        state = builder.to_state(original.definition)
        details = {"name": original.name, "description": original.description or ""}
    return _builder_page(request, session, who, state, details=details)


@router.post("/segments/new")
async def create_segment(request: Request, session: SessionDep, who: Designer) -> Response:
    state, details = await _form_state(request)
    state, notice, asked = _apply(state, details)
    if asked:  # a button of the form without JavaScript: show the form again
        return _builder_page(request, session, who, state, details=details, notice=notice)
    return _save(request, session, who, state, details, segment=None)


def _save(
    request: Request,
    session: Session,
    who: Principal,
    state: builder.FormState,
    details: dict[str, str],
    *,
    segment: Segment | None,
) -> Response:
    errors: dict[str, str] = {}
    try:
        definition = builder.to_definition(state)
    except builder.FormError as exc:
        definition, errors["definition"] = None, f"{exc.path}: {exc}"
    if segment is None and details.get("code", "").strip().lower() in RESERVED:
        errors["code"] = "this code names a page of the application: choose another one"
    if definition is not None and not errors:
        try:
            if segment is None:
                saved = service.create(
                    session,
                    code=details.get("code", ""),
                    name=details.get("name", ""),
                    description=details.get("description"),
                    definition=definition,
                    created_by_id=who.id if who.kind == "user" else None,
                )
            else:
                saved = service.update(
                    session,
                    segment=segment,
                    name=details.get("name", ""),
                    description=details.get("description", ""),
                    definition=definition,
                )
            snapshot = service.refresh(session, saved)
        except service.SegmentError as exc:
            errors[exc.field] = str(exc)
        except DefinitionError as exc:
            errors["definition"] = f"{exc.path}: {exc.message}"
        else:
            auth_service.audit(
                session,
                principal=who,
                action="segment.create" if segment is None else "segment.update",
                details={"segment": saved.code, "size": snapshot.size},
            )
            session.commit()
            return RedirectResponse(f"/segments/{saved.code}?notice=saved", status_code=303)
    session.rollback()
    if segment is not None:
        segment = _segment(session, segment.code)
    return _builder_page(
        request, session, who, state, segment=segment, details=details, errors=errors, status=400
    )


def _apply(
    state: builder.FormState, details: dict[str, str]
) -> tuple[builder.FormState, str | None, bool]:
    """The form after the action of the button or select used (add a condition, remove one,
    reset one whose kind changed) or a switch between the form and the text; a notice when
    the text does not fit the form; whether anything was asked at all."""
    action = details.get("action", "")
    notice = None
    asked = False
    if action == "add":
        state.rows.append(builder.Row())
        asked = True
    elif action.startswith("remove:") and action[7:].isdigit():
        index = int(action[7:])
        if 0 <= index < len(state.rows):
            del state.rows[index]
        asked = True
    elif action.startswith("kind:") and action[5:].isdigit():
        index = int(action[5:])
        if 0 <= index < len(state.rows):
            row = state.rows[index]
            state.rows[index] = builder.Row(kind=row.kind, negate=row.negate)
        asked = True
    shown = details.get("shown_mode") or state.mode
    if state.mode != shown:
        asked = True
        if state.mode == "raw":
            form_only = builder.FormState(combine=state.combine, rows=state.rows)
            state.raw = builder.raw_text(builder.to_definition(form_only))
        else:
            try:
                converted = builder.to_state(builder.parse_raw(state.raw))
            except builder.FormError as exc:
                converted = builder.FormState(mode="raw", raw=state.raw)
                notice = str(exc)
            if converted.mode == "raw":
                state.mode = "raw"
                notice = notice or "too_deep"
            else:
                state = converted
    return state, notice, asked


@router.post("/segments/builder")
async def builder_fragment(request: Request, session: SessionDep, who: Viewer) -> Response:
    """The editor after an action: add a condition, remove one, change a condition's kind,
    switch between the form and the raw text. htmx gets the editor; a plain form post the
    whole builder page."""
    state, details = await _form_state(request)
    state, notice, _changed = _apply(state, details)
    if request.headers.get("hx-request") != "true":
        code = details.get("code", "")
        segment = service.get_by_code(session, code=code) if code else None
        return _builder_page(
            request, session, who, state, segment=segment, details=details, notice=notice
        )
    return render(
        request,
        "segments/_editor.html",
        {
            "state": state,
            "notice": notice,
            "count": _count_context(session, state),
            "oob_count": True,
            **_options(session),
        },
    )


@router.get("/segments/suggest")
def suggest_fragment(request: Request, who: Viewer, row: int = 0) -> Response:
    """The values the value field of row ``row`` suggests for its attribute (a datalist),
    when the attribute changes: the row itself is not redrawn, so nothing typed is lost."""
    attribute = request.query_params.get(f"c{row}.attribute", "")
    return render(
        request,
        "segments/_values.html",
        {"i": row, "a": attribute, "region_names": segment_rules.REGIONS},
    )


@router.post("/segments/count")
async def count_fragment(request: Request, session: SessionDep, who: Viewer) -> Response:
    """The live count of the builder's current definition (htmx), or the builder page with it
    (a plain form post)."""
    state, details = await _form_state(request)
    if request.headers.get("hx-request") != "true":
        code = details.get("code", "")
        segment = service.get_by_code(session, code=code) if code else None
        return _builder_page(request, session, who, state, segment=segment, details=details)
    return render(request, "segments/_count.html", {"count": _count_context(session, state)})


@router.post("/segments/profile")
async def profile_of_form(request: Request, session: SessionDep, who: Viewer) -> Response:
    """The profile of the builder's current definition, unsaved."""
    state, _details = await _form_state(request)
    try:
        definition = builder.to_definition(state)
        found = service.profile(session, definition)
    except builder.FormError as exc:
        raise HTTPException(400, f"{exc.path}: {exc}") from None
    except DefinitionError as exc:
        raise HTTPException(400, f"{exc.path}: {exc.message}") from None
    return _profile_page(request, None, found, definition)


# --- overlap -------------------------------------------------------------------------------


@router.get("/segments/overlap")
def overlap_page(
    request: Request,
    session: SessionDep,
    who: Viewer,
    codes: Annotated[list[str] | None, Query()] = None,
) -> Response:
    chosen = [c for c in (codes or []) if c][:8]
    result = None
    error = None
    if len(chosen) >= 2:
        try:
            result = service.overlap(session, chosen)
        except service.SegmentError as exc:
            error = str(exc)
        except DefinitionError as exc:
            error = f"{exc.path}: {exc.message}"
    elif chosen:
        error = "choose at least two segments"
    return render(
        request,
        "segments/overlap.html",
        {
            "nav": "segments",
            "segments": service.list_segments(session),
            "chosen": chosen,
            "result": result,
            "error": error,
        },
        status=200 if error is None or not chosen else 400,
    )


# --- one segment ---------------------------------------------------------------------------


@router.get("/segments/{code}")
def segment_page(
    request: Request, session: SessionDep, who: Viewer, code: str, reason: str = ""
) -> Response:
    segment = _segment(session, code)
    history = service.snapshots(session, segment_ids=[segment.id], last=HISTORY)[segment.id]
    personal = who.can(rules.CUSTOMERS_READ)
    members: list[Any] = []
    error = None
    today = datetime.now(UTC).date()
    try:
        found = service.preview(session, segment.definition, limit=PREVIEW)
    except DefinitionError as exc:
        found, error = [], f"{exc.path}: {exc.message}"
    for c in found:
        row: dict[str, Any] = {
            "id": c.id,
            "customer_type": c.customer_type,
            "gender": c.gender,
            "age_band": service.age_band_of(c.birth_date, today),
            "department": service.department(c.postal_code, c.country),
        }
        if personal:
            row |= {
                "civility": c.civility,
                "first_name": c.first_name,
                "last_name": c.last_name,
                "email": c.email,
                "city": c.city,
            }
        members.append(row)
    if personal and members:
        auth_service.audit(
            session,
            principal=who,
            action="segment.preview",
            reason=reason or None,
            details={"segment": segment.code, "count": len(members)},
        )
        session.commit()
    return render(
        request,
        "segments/detail.html",
        {
            "nav": "segments",
            "segment": segment,
            "history": history,
            "sizes": [s.size for s in history],
            "members": members,
            "personal": personal,
            "error": error,
            "can_save": who.can(rules.CAMPAIGNS_DESIGN),
            "definition_text": builder.raw_text(segment.definition),
            "notice": request.query_params.get("notice"),
            "preview_limit": PREVIEW,
        },
    )


@router.get("/segments/{code}/edit")
def edit_page(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    segment = _segment(session, code)
    return _builder_page(
        request, session, who, builder.to_state(segment.definition), segment=segment
    )


@router.post("/segments/{code}/edit")
async def update_segment(
    request: Request, session: SessionDep, who: Designer, code: str
) -> Response:
    segment = _segment(session, code)
    state, details = await _form_state(request)
    state, notice, asked = _apply(state, details)
    if asked:
        return _builder_page(
            request, session, who, state, segment=segment, details=details, notice=notice
        )
    return _save(request, session, who, state, details, segment=segment)


@router.post("/segments/{code}/refresh")
def refresh_segment(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    segment = _segment(session, code)
    try:
        snapshot = service.refresh(session, segment)
    except DefinitionError as exc:
        session.rollback()
        message = f"the definition no longer compiles: {exc.path}: {exc.message}"
        raise HTTPException(409, message) from None
    auth_service.audit(
        session,
        principal=who,
        action="segment.refresh",
        details={
            "segment": segment.code,
            "size": snapshot.size,
            "entered": snapshot.entered,
            "left": snapshot.left,
        },
    )
    session.commit()
    back = request.query_params.get("back")
    target = "/segments" if back == "list" else f"/segments/{segment.code}"
    return RedirectResponse(f"{target}?{urlencode({'notice': 'refreshed'})}", status_code=303)


@router.post("/segments/{code}/archive")
def archive_segment(request: Request, session: SessionDep, who: Designer, code: str) -> Response:
    segment = _segment(session, code)
    service.archive(session, segment=segment)
    auth_service.audit(
        session, principal=who, action="segment.archive", details={"segment": segment.code}
    )
    session.commit()
    return RedirectResponse("/segments?notice=archived", status_code=303)


@router.get("/segments/{code}/profile")
def profile_page(request: Request, session: SessionDep, who: Viewer, code: str) -> Response:
    segment = _segment(session, code)
    try:
        found = service.profile(session, segment.definition)
    except DefinitionError as exc:
        message = f"the definition no longer compiles: {exc.path}: {exc.message}"
        raise HTTPException(409, message) from None
    return _profile_page(request, segment, found, segment.definition)


def _profile_page(
    request: Request,
    segment: Segment | None,
    found: service.Profile,
    definition: dict[str, Any],
) -> Response:
    return render(
        request,
        "segments/profile.html",
        {
            "nav": "segments",
            "segment": segment,
            "profile": found,
            "definition_text": builder.raw_text(definition),
            "rfm_names": {s.code: s.name for s in scoring_rules.RFM_SEGMENTS},
            "region_names": segment_rules.REGIONS,
        },
    )
