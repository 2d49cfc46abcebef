"""What every normalizer returns and how flags are declared.

Each normalizer module (``names``, ``emails``, ``phones``, ``addresses``, ``business``,
``dates``) is pure: text in, a frozen result out, no database, no I/O after its reference
data is loaded. Every result keeps the value as received (``original``) next to the normalized
one (``value``, None when nothing usable remains) and the machine-readable ``flags`` that
explain what was found or changed. A normalizer never raises on bad input: it flags it.

Each module declares its flags in a ``FLAGS`` tuple of :class:`Flag`; ``quality.flags``
gathers them for the report and the docs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """What a flag says about the value it is attached to."""

    INVALID = "invalid"  # the value cannot be used for its purpose (value is None or unusable)
    FIXED = "fixed"  # the value was corrected; the original is kept
    WARNING = "warning"  # usable, but worth a look (role address, unknown first name...)
    INFO = "info"  # a fact about the value (foreign address, CEDEX...)


@dataclass(frozen=True, slots=True)
class Flag:
    code: str  # UPPER_SNAKE, stable: stored in source_record.quality_flags
    field: str  # the field family: name, email, phone, address, siret, siren, vat, naf, date
    severity: Severity
    description: str  # one English sentence for docs/quality.md and the report


@dataclass(frozen=True, slots=True)
class Checked:
    """The simplest result: a value as received, as normalized, and the flags."""

    original: str | None
    value: str | None
    flags: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.value is not None


def blank(text: object) -> bool:
    """True for None and for strings with nothing but spaces."""
    return text is None or text == "" or (text.__class__ is str and text.isspace())
