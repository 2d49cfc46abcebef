"""What identity resolution compares, taken from a record's normalized fields, and the guard
that says when two records cannot be the same person. Pure.

A record's *profile* is the narrow row ``match_profile`` stores: name keys (upper-case ASCII,
``quality.names.name_key``), the first name's canonical form (nicknames), birth date as ISO
text, e-mail match key, phones in E.164, postal code, city and street keys, and the strong
identifiers a source may carry (loyalty card, e-shop account, SIRET).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jellyfish

from tournesol.identity.nicknames import canonical_first_name, nickname_equivalent
from tournesol.quality.names import name_key

PROFILE_COLUMNS = (
    "first_name",
    "first_name_canon",
    "last_name",
    "maiden_name",
    "gender",
    "birth_date",
    "email",
    "phone_mobile",
    "phone_fixed",
    "postal_code",
    "city",
    "street",
    "loyalty_card",
    "account_id",
    "siret",
    "work_email",
    "work_phone",
)
# Identifiers that belong to one person only: sharing one is strong evidence, unless the names
# or birth dates say otherwise (a couple's e-mail, a family's mobile, a company's phone).
STRONG_IDENTIFIERS = ("email", "phone_mobile", "loyalty_card", "account_id")
_PHONES = ("phone_mobile", "phone_fixed", "work_phone")
# Jaro-Winkler similarity above which two name keys are the same name mistyped.
SAME_NAME_SIMILARITY = 0.88


def profile(normalized: Mapping[str, Any]) -> dict[str, str | None]:
    """The profile of one customer record (the columns of PROFILE_COLUMNS)."""
    ids = normalized.get("identifiers") or {}
    first = normalized.get("first_name_key") or name_key(normalized.get("first_name"))
    gender = normalized.get("gender")
    siret = normalized.get("org_siret")
    email = normalized.get("email_key") or _text(ids.get("email"))
    mobile = _text(normalized.get("phone_mobile"))
    fixed = _text(normalized.get("phone_fixed"))
    work = bool(siret or normalized.get("org_name") or normalized.get("org_siren"))
    return {
        "first_name": first,
        "first_name_canon": canonical_first_name(first),
        "last_name": normalized.get("last_name_key") or name_key(normalized.get("last_name")),
        "maiden_name": name_key(normalized.get("maiden_name")),
        "gender": gender if gender in ("M", "F") else None,
        "birth_date": _text(normalized.get("birth_date")),
        # A B2B contact's e-mail and phones are those of their job: they are compared with
        # the person's own only to find them equal, never to count a difference against.
        "email": None if work else email,
        "phone_mobile": None if work else mobile,
        "phone_fixed": None if work else fixed,
        "postal_code": _text(normalized.get("postal_code")),
        "city": name_key(normalized.get("city")),
        "street": name_key(normalized.get("address_street")),
        "loyalty_card": _text(ids.get("loyalty_card") or normalized.get("loyalty_card")),
        "account_id": _text(ids.get("account_id") or normalized.get("account_id")),
        "siret": (_text(siret) or "")[:14] or None,
        "work_email": email if work else None,
        "work_phone": (mobile or fixed) if work else None,
    }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why two records can or cannot be the same person."""

    conflict: bool
    reason: str


def names_compatible(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """First names (when both known) are the same name, a nickname of it, a typo of it, or
    one a part of the other (``JEAN`` / ``JEAN PIERRE``); last names likewise, or one is the
    other's maiden name."""
    return _first_names_compatible(a.get("first_name"), b.get("first_name")) and (
        _last_names_compatible(a, b)
    )


def _similar(x: str, y: str) -> bool:
    return x == y or jellyfish.jaro_winkler_similarity(x, y) >= SAME_NAME_SIMILARITY


def _first_names_compatible(x: str | None, y: str | None) -> bool:
    if not x or not y or _similar(x, y) or nickname_equivalent(x, y):
        return True
    xs, ys = set(x.split()), set(y.split())
    return xs <= ys or ys <= xs


def _last_names_compatible(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    x, y = a.get("last_name"), b.get("last_name")
    if not x or not y or _similar(x, y):
        return True
    return bool(x == b.get("maiden_name") or y == a.get("maiden_name"))


def birth_dates_compatible(x: str | None, y: str | None) -> bool:
    """Unknown, equal, day and month swapped, or one keystroke apart (``1985-10-07`` and
    ``1985-10-01``, ``1958-...`` for ``1985-...``)."""
    if not x or not y or x == y:
        return True
    if len(x) == len(y) == 10 and x[:4] == y[:4] and x[5:7] == y[8:10] and x[8:10] == y[5:7]:
        return True
    return jellyfish.damerau_levenshtein_distance(x, y) <= 1


def conflict(a: Mapping[str, Any], b: Mapping[str, Any]) -> Verdict:
    """Strong evidence that two profiles are two persons: incompatible first names (twins, a
    couple, a parent and child), incompatible birth dates (homonyms), or two different values
    of an identifier that a person has only one of in a source (loyalty card within the same
    programme is not such: a person may hold two)."""
    if not _first_names_compatible(a.get("first_name"), b.get("first_name")):
        return Verdict(True, f"first names differ ({a.get('first_name')} / {b.get('first_name')})")
    if not birth_dates_compatible(a.get("birth_date"), b.get("birth_date")):
        return Verdict(True, f"birth dates differ ({a.get('birth_date')} / {b.get('birth_date')})")
    if (
        a.get("phone_mobile")
        and b.get("phone_mobile")
        and a["phone_mobile"] != b["phone_mobile"]
        and a.get("street")
        and a.get("street") == b.get("street")
        and a.get("postal_code") == b.get("postal_code")
    ):
        return Verdict(True, "two mobile numbers at one address (a parent and child)")
    genders = a.get("gender"), b.get("gender")
    if all(genders) and genders[0] != genders[1] and a.get("first_name") != b.get("first_name"):
        return Verdict(True, "genders differ")
    return Verdict(False, "compatible")


def shared_strong(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The strong identifiers two profiles share (plus SIRET when the names agree too); a
    work e-mail or phone counts when it is the other's own or work one."""
    shared = [k for k in STRONG_IDENTIFIERS if a.get(k) and a.get(k) == b.get(k)]
    for kind, own in (("work_email", ("email", "work_email")), ("work_phone", _PHONES)):
        for x, y in ((a, b), (b, a)):
            if x.get(kind) and any(x[kind] == y.get(k) for k in own) and kind not in shared:
                shared.append(kind)
    if a.get("siret") and a.get("siret") == b.get("siret") and names_compatible(a, b):
        shared.append("siret")
    return shared


def deterministic(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """The deterministic rule's verdict: a reason to link when the two share a strong
    identifier and nothing conflicts (names compatible, birth dates compatible, and at least a
    last name or a birth date to agree on); None otherwise."""
    shared = shared_strong(a, b)
    if not shared or conflict(a, b).conflict or not _last_names_compatible(a, b):
        return None
    agree = [
        what
        for what, ok in (
            ("last name", bool(a.get("last_name")) and a.get("last_name") == b.get("last_name")),
            (
                "first name",
                bool(a.get("first_name") and b.get("first_name"))
                and _first_names_compatible(a.get("first_name"), b.get("first_name")),
            ),
            (
                "birth date",
                bool(a.get("birth_date")) and a.get("birth_date") == b.get("birth_date"),
            ),
        )
        if ok
    ]
    if not agree or (len(agree) == 1 and agree[0] == "first name"):
        return None
    return "same " + " and ".join(shared) + ", " + ", ".join(agree) + " agree"


def groups_conflict(
    left: Iterable[Mapping[str, Any]], right: Iterable[Mapping[str, Any]]
) -> Verdict | None:
    """The first conflict between any member of one group and any member of the other."""
    rights = list(right)
    for a in left:
        for b in rights:
            verdict = conflict(a, b)
            if verdict.conflict:
                return verdict
    return None
