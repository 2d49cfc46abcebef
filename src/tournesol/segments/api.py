"""The segment REST API under ``/api/v1/segments`` (docs/api.md): count a definition, list,
read, create and refresh saved segments, profile them, and export their members as CSV.

Counting, profiling, listing and exporting need ``aggregates:read``; creating and refreshing
``campaigns:design``. An export holds the customer id and non-personal columns (type, gender,
age band, department, region, RFM segment, scores); with ``customers:read`` too it adds names,
contact points and the postal address. Every export writes a ``segment.export`` audit row
(channel ``api``) saying whether it held personal data."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.customers.schemas import ErrorOut
from tournesol.segments import service
from tournesol.segments.compiler import DefinitionError
from tournesol.segments.models import Segment
from tournesol.web.app import json_error
from tournesol.web.deps import SessionDep, require

router = APIRouter(prefix="/api/v1/segments", tags=["segments"])

Viewer = Annotated[Principal, Depends(require(rules.AGGREGATES_READ))]
Designer = Annotated[Principal, Depends(require(rules.CAMPAIGNS_DESIGN))]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no or bad credentials"},
    403: {"model": ErrorOut, "description": "the role or key scope does not allow it"},
    404: {"model": ErrorOut, "description": "there is no such segment"},
    422: {
        "model": ErrorOut,
        "description": "the definition is wrong: `details` holds the node's `path` "
        "(`$.all[2].behaviour.window`) and the message",
    },
}


# --- bodies and answers --------------------------------------------------------------------


class DefinitionIn(BaseModel):
    definition: dict[str, Any] = Field(
        description="a segment definition (docs/segments.md)",
        examples=[{"all": [{"attribute": "gender", "op": "eq", "value": "F"}]}],
    )


class SegmentIn(DefinitionIn):
    code: str = Field(max_length=80, examples=["women-paris"])
    name: str = Field(max_length=200, examples=["Women in Paris"])
    description: str | None = None


class CountOut(BaseModel):
    size: int
    path: str = Field(description="what the behaviour conditions read: features, raw or mixed")
    duration_ms: int
    notes: list[str]


class SnapshotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    computed_at: datetime
    size: int
    entered: int
    left: int
    duration_ms: int
    path: str | None


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    description: str | None
    definition: dict[str, Any]
    archived: bool
    last_size: int | None
    last_computed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SegmentDetailOut(SegmentOut):
    history: list[SnapshotOut] = Field(description="the last snapshots, oldest first")


class BucketOut(BaseModel):
    key: str
    segment: int
    base: int
    segment_share: float
    base_share: float


class DistributionOut(BaseModel):
    name: str
    buckets: list[BucketOut]


class ProfileOut(BaseModel):
    size: int
    base: int
    average_value: float | None = Field(
        description="average purchase amount of the last 365 days (features)"
    )
    base_average_value: float | None
    features_as_of: datetime | None
    path: str
    duration_ms: int
    notes: list[str]
    distributions: list[DistributionOut]


# --- helpers -------------------------------------------------------------------------------


def _invalid(exc: DefinitionError) -> JSONResponse:
    return json_error(
        422,
        f"{exc.path}: {exc.message}",
        details=[{"field": "definition", "path": exc.path, "message": exc.message}],
    )


def _segment(session: Session, code: str) -> Segment | JSONResponse:
    found = service.get_by_code(session, code=code)
    return found if found is not None else json_error(404, f"there is no segment {code!r}")


def _profile_out(found: service.Profile) -> ProfileOut:
    return ProfileOut(
        size=found.size,
        base=found.base,
        average_value=found.average_value,
        base_average_value=found.base_average_value,
        features_as_of=found.features_as_of,
        path=found.path,
        duration_ms=found.duration_ms,
        notes=list(found.notes),
        distributions=[
            DistributionOut(
                name=d.name,
                buckets=[
                    BucketOut(
                        key=b.key,
                        segment=b.segment,
                        base=b.base,
                        segment_share=round(b.segment_share, 6),
                        base_share=round(b.base_share, 6),
                    )
                    for b in d.buckets
                ],
            )
            for d in found.distributions
        ],
    )


# --- routes --------------------------------------------------------------------------------


@router.post("/count", response_model=CountOut, responses=_ERRORS, summary="Count a definition")
def count_definition(session: SessionDep, _who: Viewer, body: DefinitionIn) -> Any:
    """How many active customers the definition holds now, and which path it took."""
    try:
        result = service.count(session, body.definition)
    except DefinitionError as exc:
        return _invalid(exc)
    return CountOut(
        size=result.size, path=result.path, duration_ms=result.duration_ms, notes=list(result.notes)
    )


@router.post(
    "/profile", response_model=ProfileOut, responses=_ERRORS, summary="Profile a definition"
)
def profile_definition(session: SessionDep, _who: Viewer, body: DefinitionIn) -> Any:
    """Distributions of the segment against the whole active base (age band, gender, region,
    RFM segment, reachability) and the average value."""
    try:
        return _profile_out(service.profile(session, body.definition))
    except DefinitionError as exc:
        return _invalid(exc)


@router.get("", response_model=list[SegmentOut], responses=_ERRORS, summary="List segments")
def list_segments(
    session: SessionDep,
    _who: Viewer,
    archived: Annotated[bool, Query(description="include archived segments")] = False,
) -> Any:
    return service.list_segments(session, include_archived=archived)


@router.post(
    "",
    response_model=SegmentDetailOut,
    status_code=201,
    responses={**_ERRORS, 409: {"model": ErrorOut, "description": "the code is taken"}},
    summary="Save a segment",
)
def create_segment(session: SessionDep, who: Designer, body: SegmentIn) -> Any:
    """Save a segment and compute its members (the first snapshot)."""
    try:
        segment = service.create(
            session,
            code=body.code,
            name=body.name,
            description=body.description,
            definition=body.definition,
            created_by_id=who.id if who.kind == "user" else None,
        )
        snapshot = service.refresh(session, segment)
    except DefinitionError as exc:
        return _invalid(exc)
    except service.SegmentError as exc:
        status = 409 if isinstance(exc, service.SegmentTaken) else 422
        return json_error(status, f"{exc.field}: {exc}")
    auth_service.audit(
        session,
        principal=who,
        action="segment.create",
        channel="api",
        details={"segment": segment.code, "size": snapshot.size},
    )
    session.commit()
    return SegmentDetailOut.model_validate(
        {**SegmentOut.model_validate(segment).model_dump(), "history": [snapshot]}
    )


@router.get("/{code}", response_model=SegmentDetailOut, responses=_ERRORS, summary="Read a segment")
def get_segment(session: SessionDep, _who: Viewer, code: str) -> Any:
    segment = _segment(session, code)
    if isinstance(segment, JSONResponse):
        return segment
    history = service.snapshots(session, segment_ids=[segment.id], last=50)[segment.id]
    return SegmentDetailOut.model_validate(
        {**SegmentOut.model_validate(segment).model_dump(), "history": history}
    )


@router.post(
    "/{code}/refresh",
    response_model=SnapshotOut,
    responses=_ERRORS,
    summary="Recompute a segment's members",
)
def refresh_segment(session: SessionDep, who: Designer, code: str) -> Any:
    """Who entered and who left since the last computation, and the new size."""
    segment = _segment(session, code)
    if isinstance(segment, JSONResponse):
        return segment
    try:
        snapshot = service.refresh(session, segment)
    except DefinitionError as exc:
        return _invalid(exc)
    auth_service.audit(
        session,
        principal=who,
        action="segment.refresh",
        channel="api",
        details={
            "segment": segment.code,
            "size": snapshot.size,
            "entered": snapshot.entered,
            "left": snapshot.left,
        },
    )
    session.commit()
    return snapshot


@router.get(
    "/{code}/profile", response_model=ProfileOut, responses=_ERRORS, summary="Profile a segment"
)
def profile_segment(session: SessionDep, _who: Viewer, code: str) -> Any:
    segment = _segment(session, code)
    if isinstance(segment, JSONResponse):
        return segment
    try:
        return _profile_out(service.profile(session, segment.definition))
    except DefinitionError as exc:
        return _invalid(exc)


@router.get(
    "/{code}/export",
    responses={
        **_ERRORS,
        200: {"content": {"text/csv": {}}, "description": "the members, one line each"},
    },
    response_class=StreamingResponse,
    summary="Export a segment's members as CSV",
)
def export_segment(
    session: SessionDep,
    who: Viewer,
    code: str,
    reason: Annotated[
        str | None, Query(description="why you export (kept in the audit log)", max_length=1000)
    ] = None,
) -> Any:
    """The members as of the last refresh, by customer id, as UTF-8 CSV (comma). Personal
    columns only for callers holding ``customers:read``."""
    segment = _segment(session, code)
    if isinstance(segment, JSONResponse):
        return segment
    personal = who.can(rules.CUSTOMERS_READ)
    columns = service.export_columns(session, personal=personal)
    auth_service.audit(
        session,
        principal=who,
        action="segment.export",
        reason=reason,
        channel="web" if who.kind == "user" else "api",
        details={
            "segment": segment.code,
            "personal": personal,
            "rows": segment.last_size or 0,
            "columns": len(columns),
        },
    )
    session.commit()
    rows = service.export_rows(session, segment, personal=personal)
    filename = f"segment-{segment.code}.csv"
    return StreamingResponse(
        _csv(columns, rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv(columns: tuple[str, ...], rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """CSV text in chunks of about a thousand lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for n, row in enumerate(rows, start=1):
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
        if n % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
