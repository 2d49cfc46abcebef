"""Pure rules: which normalized fields become which golden customer columns and identifiers.

Until identity resolution lands, every customer source record is its own customer, so its
golden record is a direct copy of its fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jellyfish
from unidecode import unidecode

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
    "address_line1": "address_line1",
    "address_complement": "address_line2",
    "address_building": "address_line3",
    "address_street": "address_line4",
    "address_special": "address_line5",
    "address_line6": "address_line6",
    "postal_code": "postal_code",
    "city": "city",
    "insee_code": "insee_code",
    "country": "country",
    "language": "language",
    "customer_type": "customer_type",
    "quality_score": "quality_score",
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


def settle_customer_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a customer record implies beyond what the mapping read: the customer type
    (``customer`` unless said), the country code in capitals. Raises ValueError on an unknown
    customer type. (Phones are filed by their line type in ``quality.record``.)"""
    extra: dict[str, Any] = {}
    kind = values.get("customer_type")
    if kind is None:
        extra["customer_type"] = "customer"
    elif kind not in CUSTOMER_TYPES:
        raise ValueError(f"customer_type {kind!r} is not one of {', '.join(CUSTOMER_TYPES)}")
    country = values.get("country")
    if isinstance(country, str):
        extra["country"] = country.strip().upper() or None
    return extra


def identifier_extractor(
    spec: Mapping[str, str],
) -> Callable[[Mapping[str, Any]], list[tuple[str, str]]]:
    """``identifiers`` with the mapping's declaration compiled once (the import's hot path)."""
    plan = [(kind, field_name, _identifier_cleaner(kind)) for kind, field_name in spec.items()]

    def extract(values: Mapping[str, Any]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for kind, field_name, clean in plan:
            raw = values.get(field_name)
            if raw is not None:
                value = clean(str(raw))
                if value:
                    out.append((kind, value))
        return out

    return extract


def _identifier_cleaner(kind: str) -> Callable[[str], str]:
    """Identifiers come from normalized fields (``quality``); this only trims what a source
    declared without a normalizer (account ids, cards) and makes the rest comparable."""
    if kind == "email":
        return lambda text: text.strip().lower()
    if kind in ("siret", "siren"):
        return lambda text: _DIGITS.sub("", text)
    return str.strip


def organisation_key(org: Mapping[str, Any]) -> str:
    """How an organisation is known: its SIRET (establishment), else its SIREN."""
    return str(org.get("siret") or org["siren"])


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


_NOT_LETTER = re.compile(r"[^A-Z]+")


def plain_name(text: str) -> str:
    """Upper case, no accents, letters only, words joined by one space: ``Lefèvre-Dupont``
    -> ``LEFEVRE DUPONT``."""
    return " ".join(_NOT_LETTER.sub(" ", unidecode(text).upper()).split())


def sound_key(word: str) -> str:
    """The phonetic code of one plain word (metaphone): DUPOND and DUPONT share TPNT."""
    return str(jellyfish.metaphone(word)).upper() if word else ""


def name_keys(names: Iterable[str | None]) -> set[str]:
    """Search keys of a customer's family names (last and maiden): ``N:`` the plain name and
    each of its words, ``S:`` the phonetic code of each word. Search looks the words typed up
    among these."""
    keys: set[str] = set()
    for name in names:
        plain = plain_name(name or "")
        if not plain:
            continue
        keys.add("N:" + plain[:110])
        for word in plain.split():
            if len(word) > 1:
                keys.add("N:" + word[:110])
                keys.add("S:" + sound_key(word)[:110])
    return keys
