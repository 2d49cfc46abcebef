"""The customer REST API under ``/api/v1`` (docs/api.md): search, the 360 detail, the
timeline, and the writes an integration makes (log a contact, record a consent with its proof,
set a contact preference).

Authentication: an API key (``Authorization: Bearer tsk_...``) or a browser session, checked by
``require``; reading needs ``customers:read``, writing ``customers:write``. Every read of one
customer's data and every write leaves an audit row (channel ``api``) with the reason given in
``?reason=`` or the ``X-Audit-Reason`` header.

A merged customer's id answers ``308 Permanent Redirect`` to the same URL on the customer it
now lives in (``Location``, and ``survivor_id`` in the JSON body) for reads, and ``409`` naming
the survivor for writes: a write goes where the client means it to, explicitly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.consent import service as consent_service
from tournesol.consent.rules import ConsentRuleError
from tournesol.customers import schemas, search, view360
from tournesol.interactions import service as history_service
from tournesol.web.app import json_error
from tournesol.web.deps import SessionDep, require

router = APIRouter(prefix="/api/v1", tags=["customers"])

Reader = Annotated[Principal, Depends(require(rules.CUSTOMERS_READ))]
Writer = Annotated[Principal, Depends(require(rules.CUSTOMERS_WRITE))]
Reason = Annotated[
    str | None, Query(description="why you read this customer's data (kept in the audit log)")
]
ReasonHeader = Annotated[str | None, Header(description="same as `reason`")]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorOut, "description": "no or bad credentials"},
    403: {"model": schemas.ErrorOut, "description": "the role or key scope does not allow it"},
    404: {"model": schemas.ErrorOut, "description": "there is no such customer"},
    410: {"model": schemas.ErrorOut, "description": "the customer's data was erased"},
    422: {"model": schemas.ErrorOut, "description": "invalid parameters; `details` names them"},
}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    308: {
        "model": schemas.ErrorOut,
        "description": "the customer was merged: `Location` is the same request on the "
        "customer it now lives in (`survivor_id`)",
    },
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    409: {
        "model": schemas.ErrorOut,
        "description": "the customer was merged: write to `survivor_id` instead",
    },
}


# Read answers are the services' dataclasses (fields in the order of the schemas' models,
# which document them: tests/unit/test_api_schemas.py) serialized by orjson as Pydantic would
# (date-times in UTC with Z, decimals as strings): no model built and validated per answer.
_OPTIONS = orjson.OPT_UTC_Z
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(type(value).__name__)


def _json(content: Any) -> Response:
    """``content`` (dicts, lists, the services' dataclasses) as a JSON answer."""
    try:
        body = orjson.dumps(content, default=_decimal, option=_OPTIONS)
    except TypeError:  # what orjson does not take (an integer past 64 bits in a payload)
        body = _ANY.dump_json(content)
    return Response(body, media_type="application/json")


def _invalid(field: str, message: str) -> JSONResponse:
    return json_error(422, f"{field}: {message}", details=[{"field": field, "message": message}])


def _where(
    session: Session, request: Request, customer_id: int, *, write: bool
) -> JSONResponse | None:
    """None when the customer is there to read or write; else the answer to give."""
    found = view360.status_of(session, customer_id=customer_id)
    if found is None:
        return json_error(404, f"there is no customer {customer_id}")
    status, survivor = found
    return _elsewhere(request, customer_id, status, survivor, write=write)


def _elsewhere(
    request: Request, customer_id: int, status: str, survivor: int | None, *, write: bool
) -> JSONResponse | None:
    """The answer for a customer that is not active (None for an active one): where it
    now lives, or that it was erased."""
    if status == "active":
        return None
    if status == "merged" and survivor is not None:
        message = f"customer {customer_id} was merged into customer {survivor}"
        if write:
            return json_error(409, f"{message}: write to customer {survivor}", survivor_id=survivor)
        base = f"/api/v1/customers/{customer_id}"
        path = f"/api/v1/customers/{survivor}" + request.url.path[len(base) :]
        location = path + (f"?{request.url.query}" if request.url.query else "")
        response = json_error(308, message, survivor_id=survivor)
        response.headers["Location"] = location
        return response
    return json_error(410, f"customer {customer_id}'s data was erased")


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    customer_id: int | None,
    reason: str | None,
    **details: Any,
) -> None:
    auth_service.audit(
        session,
        principal=principal,
        action=action,
        customer_id=customer_id,
        reason=reason,
        channel="api",
        details=details,
    )


def _utc(value: datetime | None) -> datetime | None:
    """A date-time parameter; one given without an offset is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get(
    "/customers",
    response_model=schemas.SearchOut,
    responses=_ERRORS,
    summary="Search customers",
)
def search_customers(
    session: SessionDep,
    principal: Reader,
    q: Annotated[
        str | None,
        Query(
            description="one search box: an e-mail, a phone in any format, a card or account "
            "number, a postal code, a name (typos and sound-alikes welcome), or a name and a "
            "postal code (`dupont 75011`)",
            max_length=200,
        ),
    ] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
    card: Annotated[
        str | None, Query(max_length=100, description="loyalty card or account id")
    ] = None,
    postal_code: Annotated[str | None, Query(max_length=10)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=search.MAX_LIMIT)] = 20,
    reason: Reason = None,
    x_audit_reason: ReasonHeader = None,
) -> Any:
    """Active customers matching the criteria, best first. Criteria combine: `email`,
    `phone` and `card` find exact identifiers (narrowed by `postal_code`); `name` and a name in
    `q` find close spellings; `postal_code` alone lists who lives there. The search is audited
    (`customer.search`, with the ids shown, never the text searched)."""
    given = [v for v in (q, email, phone, card, postal_code, name) if v and v.strip()]
    if not given:
        return _invalid("q", "give a search text or at least one of email, phone, card, ...")
    hits = search.search(
        session,
        q=q,
        email=email,
        phone=phone,
        card=card,
        postal_code=postal_code,
        name=name,
        limit=limit,
    )
    kind = search.parse_query(q or "").kind
    _audit(
        session,
        principal,
        "customer.search",
        None,
        reason or x_audit_reason,
        query_kind=kind,
        customer_ids=[h.customer_id for h in hits],
    )
    session.commit()
    return _json({"query_kind": kind, "count": len(hits), "items": hits})


@router.get(
    "/customers/{customer_id}",
    response_model=schemas.CustomerOut,
    responses=_READ_ERRORS,
    summary="One customer's 360 view",
)
def get_customer(
    customer_id: int,
    request: Request,
    session: SessionDep,
    principal: Reader,
    reason: Reason = None,
    x_audit_reason: ReasonHeader = None,
) -> Any:
    """The golden record with the provenance of each field, identifiers, source records,
    organisations, consents (current and history), preferences, purchase summary and merge
    history. Audited (`customer.read`)."""
    view = view360.customer_360(session, customer_id=customer_id, active_only=True)
    if view is None:
        return json_error(404, f"there is no customer {customer_id}")
    answer = _elsewhere(request, customer_id, view.status, view.survivor_id, write=False)
    if answer is not None:
        return answer
    _audit(session, principal, "customer.read", customer_id, reason or x_audit_reason, view="360")
    session.commit()
    return _json(view)


@router.get(
    "/customers/{customer_id}/timeline",
    response_model=schemas.TimelineOut,
    responses=_READ_ERRORS,
    summary="One customer's timeline",
)
def get_timeline(
    customer_id: int,
    request: Request,
    session: SessionDep,
    principal: Reader,
    channel: Annotated[
        list[str], Query(description="keep these channels (repeat the parameter)")
    ] = [],  # noqa: B006 - FastAPI copies defaults
    direction: Annotated[list[str], Query(description="inbound, outbound")] = [],  # noqa: B006
    type: Annotated[
        list[str],
        Query(description="interaction types (call, complaint...) and purchase, order, return"),
    ] = [],  # noqa: B006
    since: Annotated[
        datetime | None, Query(description="from this date-time (UTC if no offset)")
    ] = None,
    until: Annotated[datetime | None, Query(description="up to this date-time, inclusive")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=view360.MAX_TIMELINE)] = 50,
    reason: Reason = None,
    x_audit_reason: ReasonHeader = None,
) -> Any:
    """Interactions and transactions in one stream, newest first, filtered, one page at a
    time. Audited (`customer.read`)."""
    answer = _where(session, request, customer_id, write=False)
    if answer is not None:
        return answer
    try:
        page = view360.timeline(
            session,
            customer_id=customer_id,
            channels=channel,
            directions=direction,
            types=type,
            since=_utc(since),
            until=_utc(until),
            cursor=cursor,
            limit=limit,
        )
    except view360.CursorError as exc:
        return _invalid("cursor", str(exc))
    _audit(
        session,
        principal,
        "customer.read",
        customer_id,
        reason or x_audit_reason,
        view="timeline",
    )
    session.commit()
    return _json({"items": page.items, "next_cursor": page.next_cursor})


@router.post(
    "/customers/{customer_id}/interactions",
    response_model=schemas.TimelineItemOut,
    status_code=201,
    responses=_WRITE_ERRORS,
    summary="Log a contact",
)
def create_interaction(
    customer_id: int,
    body: schemas.InteractionIn,
    request: Request,
    session: SessionDep,
    principal: Writer,
    reason: Reason = None,
    x_audit_reason: ReasonHeader = None,
) -> Any:
    """Record one contact with the customer (a call, a visit, a letter...); it appears in
    the timeline at once. Audited (`interaction.create`)."""
    answer = _where(session, request, customer_id, write=True)
    if answer is not None:
        return answer
    try:
        row = history_service.add_interaction(
            session,
            customer_id=customer_id,
            channel=body.channel,
            direction=body.direction,
            type=body.type,
            occurred_at=body.occurred_at,
            subject=body.subject,
            outcome=body.outcome,
            payload=body.payload,
            actor=principal.actor,
        )
    except history_service.InteractionError as exc:
        return _invalid(exc.field, exc.message)
    _audit(
        session,
        principal,
        "interaction.create",
        customer_id,
        reason or x_audit_reason,
        interaction_id=row.id,
    )
    session.commit()
    return schemas.TimelineItemOut.model_validate(view360.interaction_item(row))


@router.post(
    "/customers/{customer_id}/consents",
    response_model=schemas.ConsentOut,
    status_code=201,
    responses=_WRITE_ERRORS,
    summary="Record a consent with its proof",
)
def create_consent(
    customer_id: int,
    body: schemas.ConsentIn,
    request: Request,
    session: SessionDep,
    principal: Writer,
    reason: Reason = None,
    x_audit_reason: ReasonHeader = None,
) -> Any:
    """A consent decision is a new row (earlier ones stay, as history); the latest by
    `collected_at` is the state that holds. Audited (`consent.set`)."""
    answer = _where(session, request, customer_id, write=True)
    if answer is not None:
        return answer
    brand_id = None
    if body.brand:
        brand_id = view360.brand_id_of(session, code=body.brand)
        if brand_id is None:
            return _invalid("brand", f"there is no brand {body.brand!r}")
    try:
        row = consent_service.set_consent(
            session,
            customer_id=customer_id,
            channel=body.channel,
            purpose=body.purpose,
            brand_id=brand_id,
            status=body.status,
            proof_source=body.proof.source,
            proof_text_version=body.proof.text_version,
            collected_at=body.proof.collected_at,
            actor=principal.actor,
        )
    except ConsentRuleError as exc:
        return _invalid(exc.field, exc.message)
    _audit(
        session,
        principal,
        "consent.set",
        customer_id,
        reason or x_audit_reason,
        consent_id=row.id,
        channel=row.channel,
        purpose=row.purpose,
        status=row.status,
    )
    session.commit()
    return schemas.ConsentOut.model_validate(view360.consent_items(session, [row])[0])


@router.put(
    "/customers/{customer_id}/preferences/{channel}",
    response_model=schemas.PreferenceOut,
    responses=_WRITE_ERRORS,
    summary="Set a contact preference",
)
def put_preference(
    customer_id: int,
    channel: str,
    body: schemas.PreferenceIn,
    request: Request,
    session: SessionDep,
    principal: Writer,
    reason: Reason = None,
    x_audit_reason: ReasonHeader = None,
) -> Any:
    """How and when the customer likes to be contacted on one channel (`any` for all):
    replaces the previous preference for that channel. Audited (`preference.set`)."""
    answer = _where(session, request, customer_id, write=True)
    if answer is not None:
        return answer
    try:
        row = consent_service.set_preference(
            session,
            customer_id=customer_id,
            channel=channel,
            preferred=body.preferred,
            days=body.days,
            hours=body.hours,
            language=body.language,
            max_per_week=body.max_per_week,
        )
    except ConsentRuleError as exc:
        return _invalid(exc.field, exc.message)
    _audit(
        session,
        principal,
        "preference.set",
        customer_id,
        reason or x_audit_reason,
        channel=row.channel,
    )
    session.commit()
    return schemas.PreferenceOut.model_validate(row)
