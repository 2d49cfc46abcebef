"""Sign-in, CSRF, roles and API keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.web_support import PASSWORD, make_api_key, make_user, sign_in, signed_in
from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.models import AuditLog, User
from tournesol.db import unit_of_work


def test_pages_send_strangers_to_the_sign_in_form_and_the_api_answers_401(app: FastAPI) -> None:
    client = TestClient(app)
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/"
    api = client.get("/api/v1/openapi.json")
    assert api.status_code == 200  # the description itself is public
    assert client.get("/api/v1/nowhere").json()["error"]["status"] == 404


def test_sign_in_stores_an_argon2_hash_and_audits_success_and_failure(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    email = make_user(factory, "advisor")
    with unit_of_work(factory) as session:
        user = auth_service.get_by_email(session, email=email)
        assert user is not None and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    client = TestClient(app)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    wrong = client.post(
        "/login", data={"email": email, "password": "not the one", "csrf_token": token}
    )
    assert (
        wrong.status_code == 401 and "E-mail ou mot de passe incorrect" in wrong.text
    )  # French by default
    sign_in(client, email)
    assert client.get("/", follow_redirects=False).headers["location"] == "/customers"
    with unit_of_work(factory) as session:
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
        assert actions[-2:] == ["login.failed", "login"]
        assert session.scalars(select(User.last_login_at).where(User.email == email)).one()


def test_a_form_without_the_session_csrf_token_is_refused(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    client = signed_in(app, factory, "advisor")
    del client.headers["X-CSRF-Token"]
    refused = client.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert client.get("/", follow_redirects=False).headers["location"] == "/customers"


def test_api_keys_are_checked_and_revocable(app: FastAPI, factory: sessionmaker[Session]) -> None:
    secret = make_api_key(factory, [rules.EVENTS_WRITE])
    client = TestClient(app)
    with unit_of_work(factory) as session:
        key = auth_service.verify_api_key(session, secret=secret)
        assert key is not None and key.scopes == [rules.EVENTS_WRITE]
        assert auth_service.verify_api_key(session, secret=secret[:-2] + "xx") is None
        auth_service.revoke_api_key(session, key_id=key.id)
    response = client.get("/api/v1/nowhere", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code in (401, 404)
    with unit_of_work(factory) as session:
        assert auth_service.verify_api_key(session, secret=secret) is None


@pytest.mark.parametrize("role", ["analyst", "agency"])
def test_roles_without_personal_data_hold_no_personal_permission(role: str) -> None:
    assert not (rules.permissions_of(role) & rules.PERSONAL)


def test_user_creation_refuses_bad_input(factory: sessionmaker[Session]) -> None:
    with unit_of_work(factory) as session:
        with pytest.raises(ValueError, match="unknown role"):
            auth_service.create(session, email="x@y.fr", name="x", role="boss", password=PASSWORD)
        with pytest.raises(auth_service.AuthError, match="at least"):
            auth_service.create(session, email="x@y.fr", name="x", role="admin", password="short")
        auth_service.create(session, email="X@y.fr", name="x", role="admin", password=PASSWORD)
        with pytest.raises(auth_service.AuthError, match="already exists"):
            auth_service.create(session, email="x@Y.fr ", name="x", role="admin", password=PASSWORD)
