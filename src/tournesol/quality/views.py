"""The data quality report in the app's layout (``quality:read``).

The report holds aggregates only: per source and field, counts and rates, flag codes, and how
many identifier values are shared by several records (counts, never the values). So the
analyst, who sees no personal data, may read it whole."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from tournesol.auth import rules
from tournesol.auth.service import Principal
from tournesol.ingest.service import list_sources
from tournesol.quality.flags import all_flags, severity
from tournesol.quality.service import build_report
from tournesol.web.deps import SessionDep, render, require

router = APIRouter(include_in_schema=False)

Reader = Annotated[Principal, Depends(require(rules.QUALITY_READ))]


def describe(code: str) -> str:
    """A flag's description (English: the page translates it), or nothing if unknown."""
    flag = all_flags().get(code)
    return flag.description if flag else ""


@router.get("/quality")
def quality_page(
    request: Request, session: SessionDep, _who: Reader, source: str | None = None
) -> Response:
    chosen = (source or "").strip() or None
    try:
        report = build_report(session, source=chosen)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return render(
        request,
        "quality/report.html",
        {
            "nav": "quality",
            "report": report,
            "source": chosen,
            "sources": [s.name for s in list_sources(session)],
            "severity": lambda code: severity(code).value,
            "describe": describe,
        },
    )
