"""The channel settings of a deployment, from :class:`~tournesol.config.Settings`: the link signer
shared by the dispatcher and the web app, the SMTP and SMS settings, the campaign policies.

Each function raises :class:`SetupError` with what to set when a setting is missing or wrong.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tournesol.campaigns.service import Policies, load_policies
from tournesol.channels.email import SmtpSettings
from tournesol.channels.links import LinkSigner
from tournesol.channels.sms import SmsSettings
from tournesol.channels.webhook import WebhookSettings
from tournesol.config import Settings

LINK_SECRET_FILE = "link-secret"


class SetupError(ValueError):
    """A channel cannot be used with the settings given; the message says what to set."""


def link_secrets(settings: Settings) -> list[str]:
    """The link-signing keys, oldest first: ``TOURNESOL_LINK_SECRET`` (comma-separated to
    rotate), else the one kept in ``secrets_dir/link-secret``, created on first use."""
    if settings.link_secret:
        keys = [k.strip() for k in settings.link_secret.split(",") if k.strip()]
        if any(len(k) < 32 for k in keys):
            raise SetupError("TOURNESOL_LINK_SECRET: each key needs 32 characters or more")
        return keys
    path = Path(settings.secrets_dir) / LINK_SECRET_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise SetupError(
            f"cannot read {path} ({exc.strerror}): set TOURNESOL_LINK_SECRET"
        ) from None
    if len(text) >= 32:
        return [text]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(text + "\n")
    except FileExistsError:  # another process made it first: use theirs
        return link_secrets(settings)
    except OSError as exc:
        raise SetupError(
            f"cannot create {path} ({exc.strerror}): set TOURNESOL_LINK_SECRET"
        ) from None
    return [text]


def link_signer(settings: Settings) -> LinkSigner:
    """The signer of the links placed in messages (see :func:`link_secrets`)."""
    return LinkSigner(link_secrets(settings))


def smtp_settings(settings: Settings) -> SmtpSettings:
    """The SMTP relay and sender of campaign emails."""
    if not settings.mail_from:
        raise SetupError("set TOURNESOL_MAIL_FROM (the From address of campaign emails)")
    try:
        return SmtpSettings(
            from_address=settings.mail_from,
            from_name=settings.mail_from_name,
            reply_to=settings.mail_reply_to,
            list_unsubscribe_mailto=settings.mail_unsubscribe_mailto,
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,  # type: ignore[arg-type]
            username=settings.smtp_username,
            password=settings.smtp_password,
            rate_per_second=settings.smtp_rate_per_second,
            messages_per_connection=settings.smtp_messages_per_connection,
            connections=settings.smtp_connections,
        )
    except ValueError as exc:
        raise SetupError(f"SMTP settings (TOURNESOL_SMTP_*, TOURNESOL_MAIL_*): {exc}") from None


def sms_settings(settings: Settings) -> SmsSettings:
    """The SMS provider account and sender."""
    missing = [
        name
        for name, value in (
            ("TOURNESOL_SMS_ACCOUNT_SID", settings.sms_account_sid),
            ("TOURNESOL_SMS_AUTH_TOKEN", settings.sms_auth_token),
            ("TOURNESOL_SMS_SENDER", settings.sms_sender),
        )
        if not value
    ]
    if missing:
        raise SetupError(f"set {', '.join(missing)} to send SMS")
    assert settings.sms_account_sid and settings.sms_auth_token and settings.sms_sender
    try:
        return SmsSettings(
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token,
            sender=settings.sms_sender,
            base_url=settings.sms_base_url,
            status_callback_url=settings.public_url.rstrip("/") + "/t/sms/status",
            rate_per_second=settings.sms_rate_per_second,
        )
    except ValueError as exc:
        raise SetupError(f"SMS settings (TOURNESOL_SMS_*): {exc}") from None


def webhook_settings(settings: Settings) -> WebhookSettings:
    """The secret, timeout and rate of journeys' webhooks."""
    if not settings.webhook_secret:
        raise SetupError(
            "set TOURNESOL_WEBHOOK_SECRET (16 characters or more, shared with the receivers) "
            "to send webhooks"
        )
    try:
        return WebhookSettings(
            secret=settings.webhook_secret,
            timeout=settings.webhook_timeout,
            rate_per_second=settings.webhook_rate_per_second,
        )
    except ValueError as exc:
        raise SetupError(f"webhook settings (TOURNESOL_WEBHOOK_*): {exc}") from None


def postal_sender_lines(settings: Settings) -> list[str]:
    """The sender block of letters."""
    if not settings.postal_sender:
        raise SetupError("set TOURNESOL_POSTAL_SENDER (e.g. 'Tournesol SA|1 rue X|75002 PARIS')")
    return [line.strip() for line in settings.postal_sender.split("|") if line.strip()]


def policies(settings: Settings) -> Policies:
    """The campaign policies of ``TOURNESOL_CAMPAIGN_POLICIES`` (defaults when unset)."""
    return load_policies(settings.campaign_policies)
