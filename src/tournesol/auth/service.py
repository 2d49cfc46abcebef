"""Users (argon2id passwords), API keys and the audit log. Never commits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from tournesol.auth import rules
from tournesol.auth.models import ApiKey, AuditLog, User
from tournesol.db import utcnow

MIN_PASSWORD = 10
_INSERT_AUDIT = insert(cast(Table, AuditLog.__table__))
KEY_TTL = 5.0  # seconds a verified API key is trusted without asking the database again


class AuthError(ValueError):
    """A request about users or keys that cannot be met; the message says why."""


@lru_cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with the library's current recommended parameters


@lru_cache
def _dummy_hash() -> str:
    return _hasher().hash(secrets.token_urlsafe(16))


def get(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_by_email(session: Session, *, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email.strip().lower())).one_or_none()


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.email)).all()


def create(
    session: Session, *, email: str, name: str, role: str, password: str, language: str = "fr"
) -> User:
    """A new user; raises AuthError on a taken e-mail, an unknown role or a short password."""
    rules.permissions_of(role)  # ValueError on an unknown role
    email = email.strip().lower()
    if "@" not in email:
        raise AuthError(f"{email!r} is not an e-mail address")
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password needs at least {MIN_PASSWORD} characters")
    if language not in ("fr", "en"):
        raise AuthError("language must be fr or en")
    if get_by_email(session, email=email) is not None:
        raise AuthError(f"a user with the e-mail {email} already exists")
    user = User(
        email=email, name=name, role=role, password_hash=_hasher().hash(password), language=language
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, *, user: User, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"the password needs at least {MIN_PASSWORD} characters")
    user.password_hash = _hasher().hash(password)


def authenticate(session: Session, *, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, else None. An unknown e-mail costs the
    same time as a wrong password (no account enumeration by timing)."""
    user = get_by_email(session, email=email)
    stored = user.password_hash if user is not None and user.active else _dummy_hash()
    try:
        _hasher().verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher().check_needs_rehash(user.password_hash):
        user.password_hash = _hasher().hash(password)
    user.last_login_at = utcnow()
    return user


# --- API keys ------------------------------------------------------------------------------


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    source_name: str | None = None,
    created_by: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret text (shown once: only its hash is kept)."""
    try:
        scopes = rules.check_scopes(scopes)
    except ValueError as exc:
        raise AuthError(str(exc)) from None
    prefix = secrets.token_hex(4)
    secret = f"tsk_{prefix}_{secrets.token_urlsafe(24)}"
    key = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=_digest(secret),
        scopes=scopes,
        source_name=source_name,
        created_by=created_by,
    )
    session.add(key)
    session.flush()
    return key, secret


def verify_api_key(session: Session, *, secret: str) -> ApiKey | None:
    """The live key this secret belongs to, else None."""
    parts = secret.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "tsk":
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == parts[1])).one_or_none()
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.key_hash, _digest(secret.strip())):
        return None
    return key


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """What a verified API key is: its id and name, what it may do (``scopes``) and the
    source its events are filed under (``source_name``, None: the default)."""

    id: int
    name: str
    scopes: frozenset[str]
    source_name: str | None

    def can(self, permission: str) -> bool:
        return permission in self.scopes


class KeyCache:
    """Verified API keys, each trusted ``ttl`` seconds after the database said so (a revoked
    key stops working within that time; an unknown one is refused that long without asking
    again), so that a program sending many requests costs one key lookup every ``ttl``
    seconds, not one per request. Entries are keyed by the SHA-256 of the secret, never the
    secret itself. One per application; safe across threads (plain dict reads and writes).

    >>> keys = KeyCache()
    >>> key = keys.verify(session, secret="tsk_ab12cd34_...")  # doctest: +SKIP
    >>> key.can("customers:read")  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        ttl: float = KEY_TTL,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._keys: dict[str, tuple[float, VerifiedKey | None]] = {}

    def verify(self, session: Session, *, secret: str) -> VerifiedKey | None:
        """The key behind ``secret`` (None: unknown or revoked), from the cache when fresh."""
        digest = _digest(secret.strip())
        now = self.clock()
        hit = self._keys.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = verify_api_key(session, secret=secret)
        found = (
            None
            if key is None
            else VerifiedKey(key.id, key.name, frozenset(key.scopes), key.source_name)
        )
        if len(self._keys) >= self.max_entries:
            self._keys.clear()  # a flood of made-up keys: start again rather than grow
        self._keys[digest] = (now + self.ttl, found)
        return found


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.id)).all()


def revoke_api_key(session: Session, *, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise AuthError(f"there is no API key {key_id}")
    key.revoked_at = key.revoked_at or utcnow()
    return key


# --- the acting principal and the audit log ------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in user or an API key, with what they may do."""

    kind: str  # "user" or "api_key"
    id: int
    name: str
    permissions: frozenset[str]
    role: str | None = None
    language: str = "fr"

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @classmethod
    def of_user(cls, user: User) -> Principal:
        return cls(
            "user",
            user.id,
            user.email,
            rules.permissions_of(user.role),
            role=user.role,
            language=user.language,
        )

    @classmethod
    def of_key(cls, key: ApiKey | VerifiedKey) -> Principal:
        return cls("api_key", key.id, key.name, frozenset(key.scopes))


def audit(
    session: Session,
    *,
    principal: Principal,
    action: str,
    customer_id: int | None = None,
    reason: str | None = None,
    channel: str = "web",
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Write one audit row (in the caller's transaction), at once: one INSERT, no object
    for the session to track."""
    session.execute(
        _INSERT_AUDIT,
        {
            "at": at or utcnow(),
            "actor": principal.actor,
            "actor_name": principal.name,
            "action": action,
            "customer_id": customer_id,
            "reason": (reason or "").strip()[:1000] or None,
            "channel": channel,
            "details": details or {},
        },
    )


def list_audit(
    session: Session,
    *,
    customer_id: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Sequence[AuditLog]:
    """Audit rows, newest first; ``before_id`` pages backwards."""
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(AuditLog.customer_id == customer_id)
    if actor is not None:
        query = query.where(AuditLog.actor == actor)
    if action is not None:
        query = query.where(AuditLog.action == action)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return session.scalars(query).all()
