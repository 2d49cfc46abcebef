"""Pure rules for consents and contact preferences: allowed values and the formats of contact
days and hours. Each check raises :class:`ConsentRuleError` naming the field at fault."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from itertools import pairwise
from typing import Any, Final

CHANNELS: Final = ("email", "sms", "phone", "postal", "push", "any")
STATUSES: Final = ("granted", "denied", "withdrawn")
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LANGUAGES: Final = re.compile(r"[a-z]{2}(-[A-Z]{2})?")
PURPOSE: Final = re.compile(r"[a-z][a-z0-9_\-]{0,39}")
_SPAN: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)")
MAX_PER_WEEK: Final = 50


class ConsentRuleError(ValueError):
    """A value a consent or preference cannot take; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_channel(channel: str, *, field: str = "channel") -> str:
    value = (channel or "").strip().lower()
    if value not in CHANNELS:
        raise ConsentRuleError(field, f"{channel!r} is not one of {', '.join(CHANNELS)}")
    return value


def check_status(status: str) -> str:
    value = (status or "").strip().lower()
    if value not in STATUSES:
        raise ConsentRuleError("status", f"{status!r} is not one of {', '.join(STATUSES)}")
    return value


def check_purpose(purpose: str) -> str:
    value = (purpose or "").strip().lower()
    if not PURPOSE.fullmatch(value):
        raise ConsentRuleError(
            "purpose", f"{purpose!r}: lower-case letters, digits, _ or -, up to 40 characters"
        )
    return value


def parse_days(text: str | None) -> str | None:
    """Contact days as ``mon,tue,...`` in week order, each once; None or blank means any day.

    >>> parse_days("Fri, mon,tue")
    'mon,tue,fri'
    """
    if text is None or not text.strip():
        return None
    days = [d.strip().lower() for d in text.split(",")]
    unknown = [d for d in days if d not in DAYS]
    if unknown:
        raise ConsentRuleError(
            "days", f"{unknown[0]!r} is not a day: use {','.join(DAYS)} separated by commas"
        )
    return ",".join(d for d in DAYS if d in days)


def parse_hours(text: str | None) -> str | None:
    """Contact hours as ``HH:MM-HH:MM`` spans separated by commas, each start before its end,
    in order and not overlapping; None or blank means any time.

    >>> parse_hours(" 14:00-18:00, 09:00-12:00")
    '09:00-12:00,14:00-18:00'
    """
    if text is None or not text.strip():
        return None
    spans: list[tuple[int, int, str]] = []
    for part in text.split(","):
        span = part.strip()
        found = _SPAN.fullmatch(span)
        if found is None:
            raise ConsentRuleError(
                "hours", f"{span!r} is not a span such as 09:00-12:00 (24-hour clock)"
            )
        start = int(found.group(1)) * 60 + int(found.group(2))
        end = int(found.group(3)) * 60 + int(found.group(4))
        if end > 24 * 60:
            raise ConsentRuleError("hours", f"{span!r} ends after 24:00")
        if start >= end:
            raise ConsentRuleError("hours", f"{span!r} ends before it starts")
        spans.append((start, end, span))
    spans.sort()
    for (_, end, first), (start, _, second) in pairwise(spans):
        if start < end:
            raise ConsentRuleError("hours", f"{first} and {second} overlap")
    # The column holds 40 characters: three spans.
    joined = ",".join(s for _, _, s in spans)
    if len(joined) > 40:
        raise ConsentRuleError("hours", "at most 3 spans")
    return joined


def check_language(language: str | None) -> str | None:
    if language is None or not language.strip():
        return None
    value = language.strip()
    if not LANGUAGES.fullmatch(value):
        raise ConsentRuleError("language", f"{language!r} is not a language code such as fr or en")
    return value


def check_max_per_week(value: int | None) -> int | None:
    if value is None:
        return None
    if not 0 <= value <= MAX_PER_WEEK:
        raise ConsentRuleError("max_per_week", f"must be between 0 and {MAX_PER_WEEK}")
    return value


def proof_of(
    *, source: str, text_version: str, collected_at: datetime, actor: str, **extra: Any
) -> dict[str, Any]:
    """The proof kept with a consent entered by a person or a program: where it was
    collected, which wording was shown, when, and who recorded it."""
    if not (source or "").strip():
        raise ConsentRuleError("proof.source", "say where the consent was collected")
    if not (text_version or "").strip():
        raise ConsentRuleError("proof.text_version", "say which wording the customer agreed to")
    if collected_at.tzinfo is None:
        raise ConsentRuleError("collected_at", "give a time zone (e.g. 2024-05-01T10:00:00Z)")
    return {
        "kind": "manual",
        "source": source.strip(),
        "text_version": text_version.strip(),
        "timestamp": collected_at.isoformat(),
        "actor": actor,
        **extra,
    }


def latest(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The current consent per (channel, purpose, brand): the latest by collected_at (then by
    id, the later entry winning a tie)."""
    best: dict[tuple[Any, Any, Any], Mapping[str, Any]] = {}
    for row in rows:
        key = (row["channel"], row["purpose"], row["brand_id"])
        known = best.get(key)
        if known is None or (row["collected_at"], row["id"]) > (
            known["collected_at"],
            known["id"],
        ):
            best[key] = row
    return sorted(best.values(), key=lambda r: (r["channel"], r["purpose"], r["brand_id"] or 0))


def contact_hash(channel: str, value: str) -> str:
    """The key of a contact point in the suppression list: SHA-256 (hex) of the channel and
    the normalized value (an e-mail lower-cased and stripped; a phone as given, E.164; a
    postal address as its lines joined by ``|``, upper-cased).

    >>> contact_hash("email", " Ana@Exemple.FR ") == contact_hash("email", "ana@exemple.fr")
    True
    """
    text = value.strip()
    if channel == "email":
        text = text.lower()
    elif channel == "postal":
        text = "|".join(part.strip() for part in text.upper().split("|"))
    elif channel in ("sms", "phone"):
        text = text.replace(" ", "")
        channel = "phone"  # one number, one list: an SMS opposition and a call opposition
    return hashlib.sha256(f"{channel}:{text}".encode()).hexdigest()
