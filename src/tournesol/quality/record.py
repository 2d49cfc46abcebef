"""One customer record through every normalizer: normalized fields, flags per field, a score.

This is what the import applies to every customer row (``ingest.rules.RowMapper``) and what
``bench/normalize_throughput.py`` measures. Pure: a dict of mapped values in, a
:class:`RecordQuality` out.

The fields it reads are the mapping's field names (docs/mappings.md): ``civility``,
``first_name``, ``last_name``, ``maiden_name``, ``full_name``, ``gender``, ``birth_date``,
``email``, ``phone``, ``phone_mobile``, ``phone_fixed``, ``address`` (free text),
``address_complement``, ``address_building``, ``address_street``, ``address_special``,
``postal_code``, ``city``, ``country``, ``org_siret``, ``org_siren``, ``org_vat``,
``org_naf_code``. Missing fields are simply absent.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from typing import Any

from tournesol.quality import addresses, business, dates, emails, names, phones
from tournesol.quality.base import Severity, blank
from tournesol.quality.flags import all_flags

# Bump when a rule changes what a record normalizes to: files already imported under an older
# version are then imported again (the version is part of the mapping's fingerprint).
QUALITY_VERSION = 1

# How much each contact element weighs in the 0-100 quality score (docs/quality.md).
SCORE_WEIGHTS: dict[str, int] = {
    "last_name": 15,
    "first_name": 10,
    "civility": 5,
    "birth_date": 10,
    "email": 20,
    "phone_mobile": 15,
    "phone_fixed": 5,
    "address": 20,
}
ADDRESS_INPUTS = (
    "address",
    "address_complement",
    "address_building",
    "address_street",
    "address_special",
    "postal_code",
    "city",
    "country",
)


@dataclass(slots=True)  # not frozen: built ~7 times per record, and frozen init costs 2x
class FieldQuality:
    """What the checks found on one field of one record."""

    original: Any
    valid: bool
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"valid": self.valid}
        if self.flags:
            out["flags"] = list(self.flags)
        if self.original is not None:
            out["original"] = _text(self.original)
        return out


@dataclass(slots=True)
class RecordQuality:
    """A record's normalized values (to write over the mapped ones), its flags and score."""

    values: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, FieldQuality] = field(default_factory=dict)
    # The normalized value of each input column that moved to another slot (a phone given as
    # the landline but filed as the mobile): identifiers declared on the column follow it.
    moved: dict[str, Any] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # field -> why it cannot be read
    score: int = 0
    completeness: float = 0.0
    validity: float = 1.0

    @property
    def flags(self) -> list[str]:
        """Every flag of the record, sorted, once each."""
        return sorted({code for q in self.fields.values() for code in q.flags})

    def to_json(self) -> dict[str, Any]:
        """The ``quality`` section kept in the source record's normalized fields."""
        return {
            "version": QUALITY_VERSION,
            "score": self.score,
            "completeness": self.completeness,
            "validity": self.validity,
            "fields": {name: q.to_json() for name, q in sorted(self.fields.items())},
        }

    def note(self, name: str, original: Any, value: Any, flags: tuple[str, ...]) -> None:
        """Record the outcome of one field; the original is kept only when it changed."""
        valid = value is not None and (not flags or _codes(Severity.INVALID).isdisjoint(flags))
        same = original == value or (
            original.__class__ is not value.__class__ and _text(original) == _text(value)
        )
        self.fields[name] = FieldQuality(None if same else original, valid, flags)


@cache
def _codes(level: Severity) -> frozenset[str]:
    """Every flag code of one severity."""
    return frozenset(code for code, flag in all_flags().items() if flag.severity is level)


def _text(value: Any) -> str | None:
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def normalize_customer(
    values: Mapping[str, Any],
    *,
    date_formats: Mapping[str, tuple[str, ...]] | None = None,
    today: date | None = None,
) -> RecordQuality:
    """Normalize every contact field of one mapped customer record.

    ``date_formats``: per date field, the mapping's ``strptime`` formats, tried first. A date
    that cannot be read at all is named in ``unreadable`` with the reason (the import rejects
    such a row).

    Returns the normalized values (golden-ready: ``email`` corrected, phones in E.164 in the
    right slot, AFNOR lines, ``address_line1``/``address_line6``, match keys...), the flags
    per field with the original of each changed value, and the score.

    >>> q = normalize_customer({"last_name": "DUPONT", "email": "Jean@GMIAL.com"})
    >>> q.values["email"], q.fields["email"].flags
    ('Jean@gmail.com', ('EMAIL_TYPO_FIXED',))
    """
    out = RecordQuality()
    _person(values, out)
    _birth_date(values, out, (date_formats or {}).get("birth_date", ()), today)
    _email(values, out)
    _phones(values, out)
    _address(values, out)
    _business(values, out)
    _score(out)
    return out


def preload() -> None:
    """Load every normalizer's reference data now (postal codes, first names, disposable
    domains) rather than on first use: before forking workers, so that they share it. The
    loaded objects are then moved out of the garbage collector's reach (``gc.freeze``, as
    CPython advises for data shared by forked workers): they live as long as the process,
    and full collections no longer walk through them."""
    normalize_customer(
        {
            "first_name": "Jean",
            "last_name": "Dupont",
            "email": "jean.dupont@example.org",
            "phone": "0612345678",
            "postal_code": "75001",
            "city": "Paris",
            "address_street": "1 rue de Rivoli",
        }
    )
    gc.freeze()


_KEY_FIELDS = {n: f"{n}_key" for n in ("civility", "first_name", "last_name", "maiden_name")}


def _person(values: Mapping[str, Any], out: RecordQuality) -> None:
    given = {k: values.get(k) for k in ("civility", "first_name", "last_name", "maiden_name")}
    full = values.get("full_name")
    if all(blank(v) for v in given.values()) and blank(full):
        return
    person = names.normalize_person(
        civility=_text(given["civility"]),
        first_name=_text(given["first_name"]),
        last_name=_text(given["last_name"]),
        maiden_name=_text(given["maiden_name"]),
        full_name=_text(full),
    )
    record_flags: tuple[str, ...] = ()
    if person.flags:  # the person-level ones (swap, order, maiden) go with both names
        parts = {
            *person.civility.flags,
            *person.first_name.flags,
            *person.last_name.flags,
            *person.maiden_name.flags,
        }
        record_flags = tuple(c for c in person.flags if c not in parts)
    for name, result in (
        ("civility", person.civility),
        ("first_name", person.first_name),
        ("last_name", person.last_name),
        ("maiden_name", person.maiden_name),
    ):
        original = given[name]
        value = result.value
        if value is None and blank(original):
            continue
        flags = result.flags
        if record_flags and name in ("first_name", "last_name"):
            flags = tuple(dict.fromkeys((*flags, *record_flags)))
        out.values[name] = value
        out.note(name, original, value, flags)
        key = getattr(result, "key", None)
        if key:
            out.values[_KEY_FIELDS[name]] = key
    if person.gender is not None:
        given_gender = values.get("gender")
        if given_gender not in (None, "", person.gender):
            flags = ("GENDER_CIVILITY_CONFLICT",)
            out.note("gender", given_gender, person.gender, flags)
        out.values["gender"] = person.gender
    line1 = names.identity_line(
        out.values.get("civility"), out.values.get("first_name"), out.values.get("last_name")
    )
    if line1:
        out.values["address_line1"] = line1


def _birth_date(
    values: Mapping[str, Any], out: RecordQuality, formats: tuple[str, ...], today: date | None
) -> None:
    raw = values.get("birth_date")
    if blank(raw):
        return
    result = dates.normalize_date(raw, formats=formats, birth=True, today=today)
    if result.date is None:
        out.unreadable["birth_date"] = result.reason or "not a date"
    valid = result.date is not None and _codes(Severity.INVALID).isdisjoint(result.flags)
    out.values["birth_date"] = result.date if valid else None
    out.note("birth_date", raw, out.values["birth_date"], result.flags)


def _email(values: Mapping[str, Any], out: RecordQuality) -> None:
    raw = values.get("email")
    if blank(raw):
        return
    result = emails.normalize_email(str(raw))
    out.values["email"] = result.value
    if result.match_key:
        out.values["email_key"] = result.match_key
    out.note("email", raw, result.value, result.flags)


def _phones(values: Mapping[str, Any], out: RecordQuality) -> None:
    """Each number to E.164, then filed by its line type: the mobile slot takes the first mobile
    number among (mobile, landline, generic phone) columns, the landline slot the first other
    one. An invalid number stays in its own column, flagged (or as ``phone_other`` when that
    column's slot went to a valid number); a valid number that finds no free slot is kept as
    ``phone_other`` (``phone_other_2`` for a second one)."""
    order = ("phone_mobile", "phone_fixed", "phone")
    results = {n: phones.normalize_phone(str(values[n])) for n in order if not blank(values.get(n))}
    if not results:
        return
    placed: dict[str, str] = {}  # slot -> column it came from
    for slot in ("phone_mobile", "phone_fixed"):
        wants_mobile = slot == "phone_mobile"
        preference = (slot, *(n for n in order if n != slot))
        for name in preference:
            r = results.get(name)
            if r is None or r.value is None or name in placed.values():
                continue
            if (r.line_type == "mobile") == wants_mobile:
                placed[slot] = name
                break
    for name, r in results.items():
        if name not in placed.values():
            slot = name if r.value is None else "phone_other"
            if slot in placed:  # two numbers left over
                slot = "phone_other_2" if "phone_other" in placed else "phone_other"
            placed[slot] = name
    for slot, name in placed.items():
        r = results[name]
        flags = r.flags
        # a generic phone column has no slot to be wrong about: filing it is not a fix
        if slot != name and name != "phone" and slot in ("phone_mobile", "phone_fixed"):
            moved = "PHONE_MOVED_TO_MOBILE" if slot == "phone_mobile" else "PHONE_MOVED_TO_FIXED"
            flags = (*flags, moved)
        out.values[slot] = r.value
        if r.value and r.line_type:
            out.values[f"{slot}_type"] = r.line_type
        out.note(slot, values[name], r.value, flags)
    for name, r in results.items():
        if name not in placed:
            out.values[name] = None
            out.moved[name] = r.value


def _address(values: Mapping[str, Any], out: RecordQuality) -> None:
    for name in ADDRESS_INPUTS[:-1]:  # the country alone is no address
        if not blank(values.get(name)):
            break
    else:
        return
    result = addresses.normalize_address(
        complement=_text(values.get("address_complement")),
        building=_text(values.get("address_building")),
        street=_text(values.get("address_street")),
        special=_text(values.get("address_special")),
        postal_code=_text(values.get("postal_code")),
        city=_text(values.get("city")),
        country=_text(values.get("country")),
        free_text=_text(values.get("address")),
    )
    out.values.update(
        {
            "address_complement": result.complement,
            "address_building": result.building,
            "address_street": result.street,
            "address_special": result.special,
            "postal_code": result.postal_code,
            "city": result.city,
            "country": result.country,
            "address_line6": result.line6,
            "insee_code": result.insee_code,
        }
    )
    original = {k: v for k in ADDRESS_INPUTS if not blank(v := values.get(k))}
    shown = " | ".join(_text(v) or "" for v in original.values())
    out.note("address", shown, result.value, result.flags)
    if result.value is not None and shown == result.value:
        out.fields["address"] = FieldQuality(None, out.fields["address"].valid, result.flags)


_BUSINESS_CHECKS: tuple[tuple[str, Callable[[str], Any]], ...] = (
    ("org_siret", business.normalize_siret),
    ("org_siren", business.normalize_siren),
    ("org_vat", business.normalize_vat),
    ("org_naf_code", business.normalize_naf),
)


def _business(values: Mapping[str, Any], out: RecordQuality) -> None:
    for name, check in _BUSINESS_CHECKS:
        raw = values.get(name)
        if blank(raw):
            continue
        result = check(str(raw))
        out.values[name] = result.value
        out.note(name, raw, result.value, result.flags)
    siret, siren = out.values.get("org_siret"), out.values.get("org_siren")
    if siret and siren and not str(siret).startswith(str(siren)):
        q = out.fields["org_siret"]
        out.fields["org_siret"] = FieldQuality(
            q.original, q.valid, (*q.flags, "SIRET_SIREN_MISMATCH")
        )


def _score(out: RecordQuality) -> None:
    """Score = the weights of the elements present and valid (half for a warning), 0-100;
    completeness = filled weight share; validity = valid share of the filled elements."""
    filled = valid = score = 0.0
    warnings = _codes(Severity.WARNING)
    fields = out.fields
    for name, weight in SCORE_WEIGHTS.items():
        q = fields.get(name)
        if q is None:
            continue
        filled += weight
        if q.valid:
            valid += weight
            score += weight / 2 if q.flags and not warnings.isdisjoint(q.flags) else weight
    out.score = round(score)
    out.completeness = round(filled / 100, 3)
    out.validity = round(valid / filled, 3) if filled else 1.0
    out.values["quality_score"] = out.score
