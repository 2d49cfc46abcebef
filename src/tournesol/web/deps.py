"""What routes depend on: the request's database session, who is acting, permission checks
(with CSRF for browser sessions), and page rendering. Routes declare them with the
``Annotated`` aliases (``SessionDep``, ``require(...)``)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import anyio
from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.web.i18n import LANGUAGES, best_language, translations

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """Nobody is signed in: a page redirects to the sign-in form, the API answers 401."""


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for this request. Routes that write commit it themselves (the face commits);
    anything not committed is rolled back when the request ends. Made and closed in the event
    loop (no trip to a worker thread: the session connects on its first statement, in the
    route's thread); only a transaction left open is rolled back in a worker thread."""
    session: Session = request.app.state.factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_end, session)
        else:
            session.close()


def _end(session: Session) -> None:
    session.rollback()
    session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def api_key_secret(request: Request) -> str | None:
    """An API key given as ``Authorization: Bearer tsk_...`` or ``X-API-Key``."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def api_keys(request: Request) -> auth_service.KeyCache:
    """The application's verified API keys (made on first use): a key is looked up in the
    database once every few seconds (``auth.service.KEY_TTL``), not on every request."""
    keys: auth_service.KeyCache | None = getattr(request.app.state, "api_keys", None)
    if keys is None:
        keys = request.app.state.api_keys = auth_service.KeyCache()
    return keys


def principal_of(request: Request, session: Session) -> Principal | None:
    """Who is acting: the API key in the headers, else the signed-in user of the cookie."""
    secret = api_key_secret(request)
    if secret:
        key = api_keys(request).verify(session, secret=secret)
        if key is None:
            raise HTTPException(401, "this API key is unknown or revoked")
        return Principal.of_key(key)
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = auth_service.get(session, user_id=int(user_id))
    if user is None or not user.active:
        request.session.clear()
        return None
    return Principal.of_user(user)


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def check_csrf(request: Request) -> None:
    """A form or htmx request from a browser session must carry the session's token."""
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = str((await request.form()).get(CSRF_FIELD) or "")
    if not expected or not given or not secrets.compare_digest(str(expected), given):
        raise HTTPException(403, "the form has expired or did not come from this site: reload it")


def require(*permissions: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the acting principal, if they hold every one of ``permissions``."""

    async def dependency(request: Request, session: SessionDep) -> Principal:
        principal = principal_of(request, session)
        if principal is None:
            raise LoginRequired()
        request.state.principal = principal  # error pages show the menu, in their language
        if principal.kind == "user":
            await check_csrf(request)
        missing = [p for p in permissions if not principal.can(p)]
        if missing:
            raise HTTPException(403, f"your role does not allow this ({missing[0]})")
        return principal

    return dependency


def language_of(request: Request) -> str:
    principal: Principal | None = getattr(request.state, "principal", None)
    chosen = request.session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    if principal is not None and principal.language in LANGUAGES:
        return principal.language
    return best_language(request.headers.get("accept-language"))


def render(
    request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """A page (or an htmx fragment) in the reader's language, with the CSRF token and who is
    signed in available to the template."""
    language = language_of(request)
    tr = translations(language)
    values: dict[str, Any] = {
        "request": request,
        "lang": language,
        "_": tr.gettext,
        "gettext": tr.gettext,
        "ngettext": tr.ngettext,
        "csrf_token": csrf_token(request),
        "principal": getattr(request.state, "principal", None),
        "htmx": request.headers.get("hx-request") == "true",
    }
    values.update(context or {})
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request, template, values, status_code=status
    )
    return response
