"""Helpers for web tests: an app on the test's transaction, users signed in by role, API keys.

client = signed_in(app, factory, "advisor")      # a TestClient with a live session cookie
client.post("/some/form", data={...})            # the CSRF header is already set
secret = make_api_key(factory, ["events:write"])
"""

from __future__ import annotations

import re
import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tournesol.auth import service as auth_service
from tournesol.config import Settings
from tournesol.db import unit_of_work
from tournesol.web.app import create_app

PASSWORD = "correct horse battery"
ROLES = ("admin", "marketer", "advisor", "analyst", "agency")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_HEADER = re.compile(r'"X-CSRF-Token": "([^"]+)"')


def make_app(factory: sessionmaker[Session]) -> FastAPI:
    settings = Settings(database_url="sqlite://", secret_key="s" * 40, link_secret="l" * 40)
    return create_app(settings, factory=factory)


def make_user(factory: sessionmaker[Session], role: str, *, language: str = "en") -> str:
    email = f"{role}-{uuid.uuid4().hex[:8]}@staff.example"
    with unit_of_work(factory) as session:
        auth_service.create(
            session,
            email=email,
            name=f"{role.title()} User",
            role=role,
            password=PASSWORD,
            language=language,
        )
    return email


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/login")
    token = _CSRF.search(page.text)
    assert token, "the sign-in form carries a CSRF token"
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    # signing in starts a new session with a new CSRF token: read it from a page
    home = client.get("/")
    fresh = _CSRF_HEADER.search(home.text)
    assert fresh, f"no CSRF token on the home page ({home.status_code})"
    client.headers["X-CSRF-Token"] = fresh.group(1)
    return client


def signed_in(
    app: FastAPI, factory: sessionmaker[Session], role: str, *, language: str = "en"
) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    return sign_in(client, make_user(factory, role, language=language))


def make_api_key(
    factory: sessionmaker[Session], scopes: list[str], source: str | None = None
) -> str:
    with unit_of_work(factory) as session:
        _key, secret = auth_service.create_api_key(
            session, name="test key", scopes=scopes, source_name=source
        )
    return secret
