"""Every quality flag, gathered from the normalizer modules, for the report and the docs."""

from __future__ import annotations

from functools import cache

from tournesol.quality.base import Flag, Severity

# Flags decided on the whole record rather than on one value (see ``quality.record``).
RECORD_FLAGS: tuple[Flag, ...] = (
    Flag(
        "PHONE_MOVED_TO_MOBILE",
        "phone",
        Severity.FIXED,
        "A mobile number given in the landline column was filed as the mobile.",
    ),
    Flag(
        "PHONE_MOVED_TO_FIXED",
        "phone",
        Severity.FIXED,
        "A landline number given in the mobile column was filed as the landline.",
    ),
    Flag(
        "GENDER_CIVILITY_CONFLICT",
        "name",
        Severity.WARNING,
        "The gender given by the source contradicts the civility; the civility's gender is kept.",
    ),
    Flag(
        "SIRET_SIREN_MISMATCH",
        "siret",
        Severity.WARNING,
        "The SIRET does not start with the SIREN given next to it.",
    ),
)


@cache
def all_flags() -> dict[str, Flag]:
    """Code -> flag, for every normalizer and the record-level rules."""
    from tournesol.quality import addresses, business, dates, emails, names, phones

    found: dict[str, Flag] = {}
    for group in (
        names.FLAGS,
        emails.FLAGS,
        phones.FLAGS,
        addresses.FLAGS,
        business.FLAGS,
        dates.FLAGS,
        RECORD_FLAGS,
    ):
        for flag in group:
            found[flag.code] = flag
    return found


def severity(code: str) -> Severity:
    """The severity of a flag code; an unknown code counts as a warning."""
    flag = all_flags().get(code)
    return flag.severity if flag else Severity.WARNING
