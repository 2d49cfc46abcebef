"""Event collection on Segment's HTTP tracking API: ``POST /v1/identify``, ``/v1/track``,
``/v1/page``, ``/v1/screen``, ``/v1/group``, ``/v1/alias`` and ``/v1/batch``, so that
Segment and RudderStack SDKs send to Tournesol unchanged (docs/api.md).

The write key is a Tournesol API key with the ``events:write`` scope, given as the user name
of HTTP basic auth (what the SDKs send), as a bearer token, or as ``writeKey`` in the body.
Answers: 200 ``{"success": true}``; 400 with the reason for a malformed request or event (a
batch is taken whole or not at all); 401 without a valid key; 403 for a key without the
scope."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tournesol.auth.rules import EVENTS_WRITE
from tournesol.collect import rules
from tournesol.collect import service as collect_service
from tournesol.collect.schemas import Accepted, BatchIn, EventIn
from tournesol.db import utcnow
from tournesol.web.deps import SessionDep

router = APIRouter(prefix="/v1", tags=["event collection"])
log = logging.getLogger("tournesol.collect")

TOO_LARGE = f"the request is larger than {rules.MAX_BATCH_BYTES // 1024}KB"
# Browser SDKs post from the shop's own domain; a key holding only events:write is meant to
# be public there, as Segment's write keys are.
CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = CORS | {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, "
    "X-API-Key, X-Retry-Count, AnonymousId",
    "Access-Control-Max-Age": "86400",
}


async def request_body(request: Request) -> bytes:
    """The raw body, read up to the batch limit (a larger one is refused unread)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > rules.MAX_BATCH_BYTES:
        raise HTTPException(400, TOO_LARGE)
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > rules.MAX_BATCH_BYTES:
            raise HTTPException(400, TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


BodyDep = Annotated[bytes, Depends(request_body)]


def _keys(request: Request) -> collect_service.KeyCache:
    keys: collect_service.KeyCache | None = getattr(request.app.state, "collect_keys", None)
    if keys is None:
        keys = request.app.state.collect_keys = collect_service.KeyCache()
    return keys


def _growth(request: Request) -> collect_service.Growth:
    growth: collect_service.Growth | None = getattr(request.app.state, "collect_growth", None)
    if growth is None:
        growth = request.app.state.collect_growth = collect_service.Growth()
    return growth


def _verify(
    keys: collect_service.KeyCache, session: Session, secret: str
) -> collect_service.WriteKey:
    key = keys.verify(session, secret=secret)
    if key is None:
        raise HTTPException(401, "this write key is unknown or revoked")
    return key


def _accept(request: Request, session: Session, raw: bytes, kind: str | None) -> Response:
    """Check the key and the events, store and file them, commit, answer Segment's way."""
    received_at = utcnow()
    keys = _keys(request)
    secret = rules.write_key_of(request.headers.get("authorization")) or request.headers.get(
        "x-api-key"
    )
    key = _verify(keys, session, secret) if secret else None
    try:
        body = rules.read_body(raw, encoding=request.headers.get("content-encoding"))
    except rules.Malformed as exc:
        raise HTTPException(400, str(exc)) from None
    if key is None:
        given = body.get("writeKey")
        if not isinstance(given, str) or not given.strip():
            raise HTTPException(
                401,
                "send the write key: HTTP basic auth with the key as user name (as the Segment "
                "and RudderStack SDKs do), or writeKey in the body",
            )
        key = _verify(keys, session, given.strip())
    if not key.can(EVENTS_WRITE):
        raise HTTPException(403, f"this API key lacks the {EVENTS_WRITE} scope")
    try:
        events = (
            rules.read_batch(body, received_at=received_at)
            if kind is None
            else [rules.read_event(body, kind=kind, received_at=received_at)]
        )
    except rules.Malformed as exc:
        raise HTTPException(400, str(exc)) from None
    # End the reads (the key) before writing: SQLite cannot turn a read transaction into a
    # write one once another writer has committed since ("database is locked" at once),
    # whereas a transaction that starts by writing waits its turn.
    session.commit()
    source_id = keys.source_id(session, name=key.source_name)
    outcome = collect_service.collect(
        session, source_id=source_id, events=events, received_at=received_at
    )
    session.commit()
    if _growth(request).add(outcome.stored):
        try:
            collect_service.refresh_statistics(session)
            session.commit()
        except SQLAlchemyError as exc:  # the events are committed: answer for them anyway
            session.rollback()
            log.warning("refreshing the planner's statistics failed (%s)", type(exc).__name__)
    return JSONResponse({"success": True}, headers=CORS)


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


@router.post("/batch", response_model=Accepted, openapi_extra=_documented(BatchIn))
def batch(request: Request, session: SessionDep, raw: BodyDep) -> Response:
    """Several events of any types (what server SDKs send): all stored, or none when one is
    malformed (400 naming it: ``batch[3]: track needs an event name``)."""
    return _accept(request, session, raw, None)


def _single(kind: str) -> Callable[..., Response]:
    def endpoint(request: Request, session: SessionDep, raw: BodyDep) -> Response:
        return _accept(request, session, raw, kind)

    endpoint.__name__ = f"collect_{kind}"
    return endpoint


for _kind in rules.EVENT_TYPES:
    router.add_api_route(
        f"/{_kind}",
        _single(_kind),
        methods=["POST"],
        response_model=Accepted,
        summary=f"One {_kind} event",
        openapi_extra=_documented(EventIn),
    )


@router.options("/{path:path}", include_in_schema=False)
def preflight(path: str) -> Response:
    """CORS preflight of browser SDKs."""
    return Response(status_code=204, headers=PREFLIGHT)
