"""The web application: ``create_app(settings)`` builds it (nothing is built at import).

Pages are server-rendered (Jinja2, autoescaped) with htmx for live parts; the JSON API lives
under ``/api/v1`` with its OpenAPI description at ``/api/v1/openapi.json``; event collection
(Segment's HTTP tracking API) under ``/v1``. Routers are registered here, in one place."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from tournesol import __version__
from tournesol.config import Settings, get_settings
from tournesol.web.deps import LoginRequired, render

HERE = Path(__file__).parent
log = logging.getLogger("tournesol.web")

API_PREFIXES = ("/api/", "/v1/")


def is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIXES)


def json_error(status: int, message: str, **extra: Any) -> JSONResponse:
    """The one shape of every API error: ``{"error": {"status": ..., "message": ...}}``."""
    return JSONResponse({"error": {"status": status, "message": message, **extra}}, status)


def create_app(
    settings: Settings | None = None, *, factory: sessionmaker[Session] | None = None
) -> FastAPI:
    """The application on ``settings`` (default: from the environment). ``factory`` replaces
    the session factory (tests bind it to a transaction rolled back afterwards)."""
    settings = settings or get_settings()
    if factory is None:
        from tournesol.db import make_engine, make_session_factory

        factory = make_session_factory(make_engine(settings.database_url))
    app = FastAPI(
        title="Tournesol",
        version=__version__,
        description="The single customer repository: customers, their history, consents and "
        "preferences (docs/api.md).",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.factory = factory
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.add_extension("jinja2.ext.i18n")
    templates.env.globals["version"] = __version__
    app.state.templates = templates
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key or secrets.token_urlsafe(32),
        session_cookie="tournesol_session",
        max_age=settings.session_hours * 3600,
        same_site="lax",
        https_only=settings.cookie_secure,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _handle_errors(app)
    _register_routers(app)
    return app


def _register_routers(app: FastAPI) -> None:
    # The customer API first: the most requested routes are matched first (route matching
    # walks the list in order).
    from tournesol.customers.api import router as customers_api

    app.include_router(customers_api)
    from tournesol.auth import views as auth_views

    app.include_router(auth_views.router)
    from tournesol.collect import views as collect_views

    app.include_router(collect_views.router)
    from tournesol.auth import admin_views
    from tournesol.customers import views as customer_views
    from tournesol.identity import views as identity_views
    from tournesol.quality import views as quality_views

    app.include_router(admin_views.router)
    app.include_router(customer_views.router)
    app.include_router(identity_views.router)
    app.include_router(quality_views.router)
    from tournesol.segments import views as segment_views
    from tournesol.segments.api import router as segments_api

    app.include_router(segment_views.router)
    app.include_router(segments_api)
    from tournesol.campaigns import public_views as campaign_public_views
    from tournesol.campaigns import task_views
    from tournesol.campaigns import views as campaign_views

    app.include_router(campaign_views.router)
    app.include_router(campaign_public_views.router)
    app.include_router(task_views.router)
    from tournesol.triggers import views as journey_views

    app.include_router(journey_views.router)
    from tournesol.reporting import views as report_views

    app.include_router(report_views.router)


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if is_api(request):
            return json_error(401, "sign in or send an API key (Authorization: Bearer tsk_...)")
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if is_api(request):
            return json_error(exc.status_code, message)
        return render(
            request,
            "error.html",
            {"status": exc.status_code, "message": message},
            status=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                "message": e.get("msg", "invalid"),
            }
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        status = 400 if request.url.path.startswith("/v1/") else 422
        if is_api(request):
            return json_error(status, message, details=problems)
        return render(request, "error.html", {"status": 400, "message": message}, status=400)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        # The exception's type and the route only: its message could hold personal data.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        message = "something went wrong on the server; the error is logged"
        if is_api(request):
            return json_error(500, message)
        return render(request, "error.html", {"status": 500, "message": message}, status=500)
