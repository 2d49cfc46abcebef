"""Pure rules: which normalized fields become which golden customer columns and identifiers.

Until identity resolution lands, every customer source record is its own customer, so its
golden record is a direct copy of its fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# normalized field -> customer column
GOLDEN_FIELDS: dict[str, str] = {
    "civility": "civility",
    "first_name": "first_name",
    "last_name": "last_name",
    "maiden_name": "maiden_name",
    "birth_date": "birth_date",
    "gender": "gender",
    "email": "email",
    "phone_mobile": "phone_mobile",
    "phone_fixed": "phone_fixed",
    "address_complement": "address_line2",
    "address_building": "address_line3",
    "address_street": "address_line4",
    "address_special": "address_line5",
    "postal_code": "postal_code",
    "city": "city",
    "country": "country",
    "language": "language",
    "customer_type": "customer_type",
}
CUSTOMER_TYPES = ("customer", "prospect")
ORGANISATION_FIELDS: dict[str, str] = {
    "org_siret": "siret",
    "org_siren": "siren",
    "org_name": "name",
    "org_naf_code": "naf_code",
    "org_headcount_band": "headcount_band",
    "org_class": "org_class",
}
_DIGITS = re.compile(r"\D+")
_FR_MOBILE = re.compile(r"^(?:0|33|0033)[67]\d{8}$")


def golden_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Customer columns from one record's typed values. A generic ``phone`` goes to the mobile
    or the fixed slot by its French prefix when that slot is empty."""
    out = {col: values[name] for name, col in GOLDEN_FIELDS.items() if values.get(name) is not None}
    phone = values.get("phone")
    if phone:
        slot = "phone_mobile" if _FR_MOBILE.match(_DIGITS.sub("", str(phone))) else "phone_fixed"
        out.setdefault(slot, phone)
    if out.get("customer_type") not in CUSTOMER_TYPES:
        out["customer_type"] = "customer"
    if isinstance(out.get("country"), str):
        out["country"] = out["country"].strip().upper()[:2] or None
    return out


def identifier_value(kind: str, value: Any) -> str | None:
    """A comparable form of an identifier (the data-quality rules refine this)."""
    text = str(value).strip()
    if not text:
        return None
    if kind == "email":
        return text.lower()
    if kind.startswith("phone") or kind in ("siret", "siren"):
        digits = _DIGITS.sub("", text)
        return digits or None
    return text


def identifiers(values: Mapping[str, Any], spec: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(kind, value)`` pairs declared by the mapping's ``identifiers`` section."""
    out: list[tuple[str, str]] = []
    for kind, field_name in spec.items():
        raw = values.get(field_name)
        if raw is None:
            continue
        value = identifier_value(kind, raw)
        if value is not None and (kind, value) not in out:
            out.append((kind, value))
    return out


def organisation_values(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Organisation columns carried by a B2B contact row, or None when it names no company."""
    org = {col: values[name] for name, col in ORGANISATION_FIELDS.items() if values.get(name)}
    if "siret" in org:
        org["siret"] = _DIGITS.sub("", str(org["siret"])) or None
    if "siren" in org:
        org["siren"] = _DIGITS.sub("", str(org["siren"])) or None
    if org.get("siret") and not org.get("siren"):
        org["siren"] = org["siret"][:9]
    if not (org.get("siret") or org.get("siren")):
        return None
    return org
