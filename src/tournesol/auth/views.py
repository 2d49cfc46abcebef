"""Sign in and out, the language switch, and the home page that sends each role where it
works."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.web.deps import SessionDep, check_csrf, principal_of, render, require
from tournesol.web.i18n import LANGUAGES

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


@router.get("/login")
def login_form(request: Request, session: SessionDep, next: str | None = None) -> Response:
    if principal_of(request, session) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    await check_csrf(request)
    user = auth_service.authenticate(session, email=email, password=password)
    if user is None:
        auth_service.audit(
            session,
            principal=Principal("anonymous", 0, email.strip().lower()[:320], frozenset()),
            action="login.failed",
        )
        session.commit()
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "wrong", "email": email},
            status=401,
        )
    principal = Principal.of_user(user)
    auth_service.audit(session, principal=principal, action="login")
    session.commit()
    request.session.clear()  # a new session on sign-in (no fixation)
    request.session["user_id"] = user.id
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    principal = principal_of(request, session)
    if principal is not None:
        await check_csrf(request)
        auth_service.audit(session, principal=principal, action="logout")
        session.commit()
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str | None = None) -> Response:
    if code not in LANGUAGES:
        raise HTTPException(404, f"unknown language {code!r}: fr or en")
    request.session["lang"] = code
    referer = urlsplit(request.headers.get("referer", ""))
    back = referer.path + (f"?{referer.query}" if referer.query else "")
    return RedirectResponse(_safe_next(next or back), status_code=303)


@router.get("/")
async def home(request: Request, session: SessionDep) -> Response:
    """Each role where it works: the measurement dashboard for those who read aggregates
    (marketers, analysts, agencies, admins), the customer search for advisors."""
    principal = await require()(request, session)
    if principal.can(rules.AGGREGATES_READ):
        return RedirectResponse("/dashboard", status_code=303)
    if principal.can(rules.CUSTOMERS_READ):
        return RedirectResponse("/customers", status_code=303)
    if principal.can(rules.QUALITY_READ):
        return RedirectResponse("/quality", status_code=303)
    return render(request, "home.html", {})
