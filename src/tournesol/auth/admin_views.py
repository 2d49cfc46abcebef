"""Administration pages: staff users, API keys (the secret shown once), and the audit log.

Users and keys need ``users:admin``; the audit log ``audit:read``. Every change is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.service import Principal
from tournesol.web.deps import SessionDep, render, require

router = APIRouter(include_in_schema=False)

Admin = Annotated[Principal, Depends(require(rules.USERS_ADMIN))]
AuditReader = Annotated[Principal, Depends(require(rules.AUDIT_READ))]
AUDIT_PAGE = 50
# Actions the audit log's filter suggests (any other can be typed).
KNOWN_ACTIONS = (
    "customer.read",
    "customer.search",
    "customer.unmerge",
    "customer.consent",
    "customer.interaction",
    "review.accept",
    "review.reject",
    "user.create",
    "api_key.create",
    "api_key.revoke",
    "login",
    "login.failed",
    "logout",
)


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


# --- users ---------------------------------------------------------------------------------
def _users_page(
    request: Request,
    session: SessionDep,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    created: int | None = None,
    status: int = 200,
) -> Response:
    users = auth_service.list_users(session)
    return render(
        request,
        "admin/users.html",
        {
            "nav": "users",
            "users": users,
            "roles": rules.ROLES,
            "role_descriptions": rules.ROLE_DESCRIPTIONS,
            "form": form or {"role": "advisor", "language": "fr"},
            "error": error,
            "created": next((u for u in users if u.id == created), None),
            "min_password": auth_service.MIN_PASSWORD,
        },
        status=status,
    )


@router.get("/admin/users")
def users_page(
    request: Request, session: SessionDep, _who: Admin, created: str | None = None
) -> Response:
    return _users_page(request, session, created=_int_or_none(created))


@router.post("/admin/users")
def create_user(
    request: Request,
    session: SessionDep,
    who: Admin,
    email: Annotated[str, Form()],
    role: Annotated[str, Form()],
    password: Annotated[str, Form()],
    name: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "fr",
) -> Response:
    form = {"email": email, "name": name, "role": role, "language": language}
    try:
        user = auth_service.create(
            session,
            email=email,
            name=name.strip() or email.strip().lower(),
            role=role,
            password=password,
            language=language,
        )
    except ValueError as exc:  # AuthError is a ValueError; so is an unknown role
        session.rollback()
        return _users_page(request, session, form=form, error=str(exc), status=400)
    auth_service.audit(
        session, principal=who, action="user.create", details={"user_id": user.id, "role": role}
    )
    session.commit()
    return RedirectResponse(f"/admin/users?created={user.id}", status_code=303)


# --- API keys ------------------------------------------------------------------------------
def _keys_page(
    request: Request,
    session: SessionDep,
    *,
    secret: str | None = None,
    new_key: Any = None,
    form: dict[str, Any] | None = None,
    error: str | None = None,
    revoked: int | None = None,
    status: int = 200,
) -> Response:
    keys = list(reversed(auth_service.list_api_keys(session)))  # newest first
    response = render(
        request,
        "admin/api_keys.html",
        {
            "nav": "users",
            "keys": keys,
            "permissions": rules.PERMISSIONS,
            "personal": rules.PERSONAL,
            "secret": secret,
            "new_key": new_key,
            "form": form or {"scopes": [rules.EVENTS_WRITE]},
            "error": error,
            "revoked": next((k for k in keys if k.id == revoked), None),
        },
        status=status,
    )
    if secret:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/admin/api-keys")
def keys_page(
    request: Request, session: SessionDep, _who: Admin, revoked: str | None = None
) -> Response:
    return _keys_page(request, session, revoked=_int_or_none(revoked))


@router.post("/admin/api-keys")
def create_key(
    request: Request,
    session: SessionDep,
    who: Admin,
    name: Annotated[str, Form()],
    scopes: Annotated[list[str] | None, Form()] = None,
    source_name: Annotated[str, Form()] = "",
) -> Response:
    form = {"name": name, "scopes": scopes or [], "source_name": source_name}
    if not name.strip():
        return _keys_page(request, session, form=form, error="the key needs a name", status=400)
    try:
        key, secret = auth_service.create_api_key(
            session,
            name=name.strip()[:200],
            scopes=list(scopes or []),
            source_name=source_name.strip()[:100] or None,
            created_by=who.id if who.kind == "user" else None,
        )
    except auth_service.AuthError as exc:
        session.rollback()
        return _keys_page(request, session, form=form, error=str(exc), status=400)
    auth_service.audit(
        session,
        principal=who,
        action="api_key.create",
        details={"key_id": key.id, "prefix": key.prefix, "scopes": key.scopes},
    )
    session.commit()
    # The secret is in this response only (never in a URL): a reload asks to create another.
    return _keys_page(request, session, secret=secret, new_key=key, status=201)


@router.post("/admin/api-keys/{key_id}/revoke")
def revoke_key(request: Request, session: SessionDep, who: Admin, key_id: int) -> Response:
    try:
        key = auth_service.revoke_api_key(session, key_id=key_id)
    except auth_service.AuthError as exc:
        return _keys_page(request, session, error=str(exc), status=404)
    auth_service.audit(
        session,
        principal=who,
        action="api_key.revoke",
        details={"key_id": key.id, "prefix": key.prefix},
    )
    session.commit()
    return RedirectResponse(f"/admin/api-keys?revoked={key.id}", status_code=303)


# --- audit log -----------------------------------------------------------------------------
@router.get("/admin/audit")
def audit_page(
    request: Request,
    session: SessionDep,
    _who: AuditReader,
    customer_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    before: str | None = None,
) -> Response:
    """Newest first, ``AUDIT_PAGE`` rows a page; "older" pages on by the last row's id. The
    actor filter takes ``user:12``, ``api_key:3`` or a user's e-mail."""
    actor_text = (actor or "").strip()
    actor_key: str | None = actor_text or None
    if actor_key and "@" in actor_key:
        user = auth_service.get_by_email(session, email=actor_key)
        actor_key = f"user:{user.id}" if user else "user:none"
    customer = _int_or_none(customer_id)
    filters = {
        "customer_id": str(customer) if customer is not None else "",
        "actor": actor_text,
        "action": (action or "").strip(),
    }
    bad_customer = bool((customer_id or "").strip()) and customer is None
    rows = (
        []
        if bad_customer
        else list(
            auth_service.list_audit(
                session,
                customer_id=customer,
                actor=actor_key,
                action=filters["action"] or None,
                before_id=_int_or_none(before),
                limit=AUDIT_PAGE + 1,
            )
        )
    )
    older = rows[AUDIT_PAGE - 1].id if len(rows) > AUDIT_PAGE else None
    query = {k: v for k, v in filters.items() if v}
    return render(
        request,
        "admin/audit.html",
        {
            "nav": "audit",
            "rows": rows[:AUDIT_PAGE],
            "filters": filters,
            "query": query,
            "older": older,
            "paged": _int_or_none(before) is not None,
            "bad_customer": bad_customer,
            "actions": KNOWN_ACTIONS,
        },
    )
