"""Staff users, API keys for integrations and event collection, and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tournesol.db import Base, BigId, Json, UtcDateTime, utcnow


class User(Base):
    """A member of staff who signs in to the web UI (the table is ``app_user``: ``user`` is
    reserved in PostgreSQL)."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # auth.rules.ROLES
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    language: Mapped[str] = mapped_column(String(8), default="fr")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ApiKey(Base):
    """A secret for a program: ``tsk_<prefix>_<secret>``. Only the prefix (to find the row) and
    a SHA-256 of the whole key are stored; the key is shown once, when it is created. Keys are
    long random strings, so a fast hash is safe and lets event collection check one per
    request."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(Json, default=list)
    # Events collected with this key are filed under this source (created on first use).
    source_name: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditLog(Base):
    """Who did or read what, when, about which customer, and why if they said. Never updated;
    never holds the personal data itself, only ids."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))  # "user:<id>" or "api_key:<id>"
    actor_name: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(60))  # customer.read, customer.unmerge, login...
    customer_id: Mapped[int | None] = mapped_column(BigId)  # no FK: erased customers stay logged
    reason: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(10), default="web")  # web, api, cli
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)

    __table_args__ = (
        Index("ix_audit_log_customer_at", "customer_id", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
    )
