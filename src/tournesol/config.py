"""Typed settings, read from the environment (prefix ``TOURNESOL_``) or a ``.env`` file.

Nothing is built here at import time: call :func:`get_settings` where settings are needed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///tournesol.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOURNESOL_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path.db (default) or postgresql+psycopg://...",
    )
    import_chunk_rows: int = Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description="Rows committed together during an import (one atomic step).",
    )
    demo_dir: Path = Field(
        default=Path("demo-data"), description="Where the demo writes its files."
    )

    secret_key: str | None = Field(
        default=None,
        min_length=32,
        description="Signs the web session cookies (32+ characters). `tournesol serve` makes a "
        "random one for its lifetime when unset: sign-ins then end when the server stops.",
    )
    web_host: str = Field(default="127.0.0.1", description="Address `tournesol serve` listens on.")
    web_port: int = Field(default=8000, ge=1, le=65535, description="Port of `tournesol serve`.")
    web_workers: int = Field(
        default=1, ge=1, le=64, description="Server processes started by `tournesol serve`."
    )
    cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie over HTTPS only (set it behind a TLS proxy).",
    )
    session_hours: int = Field(
        default=8, ge=1, le=24 * 30, description="How long a web sign-in lasts without activity."
    )

    @field_validator("database_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        url = value.strip()
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if not (url.startswith("sqlite") or url.startswith("postgresql+psycopg://")):
            raise ValueError(
                "TOURNESOL_DATABASE_URL must be sqlite:///FILE.db or postgresql+psycopg://..."
            )
        return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
