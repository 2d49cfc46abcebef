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

    # --- campaigns (docs/campaigns.md) ---------------------------------------------------
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The web app's address as customers reach it: the base of the open pixel, "
        "click, unsubscribe and preference-center links placed in messages.",
    )
    link_secret: str | None = Field(
        default=None,
        min_length=32,
        description="Signs the links placed in messages (32+ characters; several, comma-"
        "separated, to rotate keys: the last signs). Unset: a secret is created once in "
        "secrets_dir/link-secret, shared by the dispatcher and the server run from there.",
    )
    secrets_dir: Path = Field(
        default=Path(".tournesol"), description="Where generated secrets are kept (mode 600)."
    )
    campaign_policies: Path | None = Field(
        default=None,
        description="YAML file of consent regimes, pressure caps, contract days and time zone "
        "(docs/campaigns.md); unset: the French defaults.",
    )
    campaign_output_dir: Path = Field(
        default=Path("campaign-output"),
        description="Where postal print runs and call-center lists are written.",
    )
    smtp_host: str = Field(default="localhost", description="SMTP relay host.")
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP relay port.")
    smtp_security: str = Field(
        default="none", pattern="^(none|starttls|tls)$", description="none, starttls or tls."
    )
    smtp_username: str | None = Field(default=None, description="SMTP login (with password).")
    smtp_password: str | None = Field(default=None, description="SMTP password.")
    smtp_rate_per_second: float | None = Field(
        default=None, gt=0, description="At most this many emails a second (unset: no cap)."
    )
    smtp_messages_per_connection: int = Field(
        default=100, ge=1, description="Emails sent through one SMTP connection."
    )
    smtp_connections: int = Field(
        default=2, ge=1, le=32, description="SMTP connections to the relay used side by side."
    )
    mail_from: str | None = Field(
        default=None, description="The From address of campaign emails (required to send)."
    )
    mail_from_name: str | None = Field(default=None, description="The From display name.")
    mail_reply_to: str | None = Field(default=None, description="Reply-To of campaign emails.")
    mail_unsubscribe_mailto: str | None = Field(
        default=None,
        description="A mailbox that unsubscribes its senders, added to List-Unsubscribe.",
    )
    sms_base_url: str = Field(
        default="https://api.twilio.com",
        description="The SMS provider's API (Twilio's shape: Accounts/{sid}/Messages.json).",
    )
    sms_account_sid: str | None = Field(default=None, description="SMS provider account id.")
    sms_auth_token: str | None = Field(default=None, description="SMS provider auth token.")
    sms_sender: str | None = Field(
        default=None,
        description="E.164 number, alphanumeric id (11 characters) or Messaging Service SID.",
    )
    sms_rate_per_second: float | None = Field(
        default=None, gt=0, description="At most this many SMS a second (unset: no cap)."
    )
    webhook_secret: str | None = Field(
        default=None,
        description="The shared secret that signs journeys' webhooks (16 characters or more; "
        "required to send them).",
    )
    webhook_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a webhook's receiver has to answer."
    )
    webhook_rate_per_second: float | None = Field(
        default=None, gt=0, description="At most this many webhooks a second (unset: no cap)."
    )
    postal_sender: str | None = Field(
        default=None,
        description="The sender block of letters, lines separated by '|' "
        "(e.g. 'Tournesol SA|1 rue de la Paix|75002 PARIS').",
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
