"""The quality report: per source and per field, how full, how valid, how much was corrected.

Pure: :class:`ReportBuilder` takes each record's ``quality`` section (see
``quality.record.RecordQuality.to_json``) and builds a :class:`QualityReport`;
``quality.service`` feeds it from the store. Rendering to a table (Rich), JSON and HTML lives
here too, so that every face shows the same figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from tournesol.quality.base import Severity
from tournesol.quality.flags import all_flags, severity

# The fields the report shows, in this order (others found in records follow).
FIELD_ORDER = (
    "civility",
    "first_name",
    "last_name",
    "maiden_name",
    "birth_date",
    "email",
    "phone_mobile",
    "phone_fixed",
    "phone",
    "phone_other",
    "address",
    "org_siret",
    "org_siren",
    "org_vat",
    "org_naf_code",
)
TOP_FLAGS = 8


@dataclass
class FieldStats:
    """One field of one source. Rates are shares of the source's records (fill) or of the
    filled values (validity)."""

    name: str
    filled: int = 0
    valid: int = 0
    corrected: int = 0
    flags: Counter[str] = field(default_factory=Counter)

    def fill_rate(self, records: int) -> float:
        return self.filled / records if records else 0.0

    @property
    def validity_rate(self) -> float:
        return self.valid / self.filled if self.filled else 0.0


@dataclass
class Duplicate:
    """An identifier kind whose values are shared by several records of one source."""

    kind: str
    shared_values: int  # values held by more than one record
    records: int  # records holding such a value


@dataclass
class SourceQuality:
    source: str
    entity: str
    records: int = 0
    score_total: int = 0
    flagged_records: int = 0
    fields: dict[str, FieldStats] = field(default_factory=dict)
    flags: Counter[str] = field(default_factory=Counter)
    duplicates: list[Duplicate] = field(default_factory=list)

    @property
    def average_score(self) -> float:
        return self.score_total / self.records if self.records else 0.0

    def ordered_fields(self) -> list[FieldStats]:
        known = [self.fields[f] for f in FIELD_ORDER if f in self.fields]
        rest = [s for name, s in sorted(self.fields.items()) if name not in FIELD_ORDER]
        return known + rest

    def top_flags(self, n: int = TOP_FLAGS) -> list[tuple[str, int]]:
        return self.flags.most_common(n)


@dataclass
class QualityReport:
    generated_at: datetime
    sources: list[SourceQuality]

    def to_json(self) -> dict[str, Any]:
        """A plain, stable JSON form (rates rounded to 4 places)."""
        described = all_flags()
        return {
            "generated_at": self.generated_at.isoformat(),
            "sources": [
                {
                    "source": s.source,
                    "entity": s.entity,
                    "records": s.records,
                    "average_score": round(s.average_score, 1),
                    "flagged_records": s.flagged_records,
                    "fields": [
                        {
                            "field": f.name,
                            "filled": f.filled,
                            "fill_rate": round(f.fill_rate(s.records), 4),
                            "valid": f.valid,
                            "validity_rate": round(f.validity_rate, 4),
                            "corrected": f.corrected,
                            "flags": dict(f.flags.most_common()),
                        }
                        for f in s.ordered_fields()
                    ],
                    "top_flags": [
                        {
                            "code": code,
                            "count": count,
                            "severity": severity(code).value,
                            "description": described[code].description if code in described else "",
                        }
                        for code, count in s.top_flags()
                    ],
                    "duplicates": [asdict(d) for d in s.duplicates],
                }
                for s in self.sources
            ],
        }


class ReportBuilder:
    """Accumulates records' quality sections, one source at a time or interleaved."""

    def __init__(self) -> None:
        self._sources: dict[tuple[str, str], SourceQuality] = {}

    def source(self, name: str, entity: str) -> SourceQuality:
        key = (name, entity)
        if key not in self._sources:
            self._sources[key] = SourceQuality(name, entity)
        return self._sources[key]

    def add(self, source: str, entity: str, quality: Mapping[str, Any] | None) -> None:
        """Count one record; ``quality`` is its normalized ``quality`` section (None for
        records that carry none, such as transactions: they are counted, nothing else)."""
        stats = self.source(source, entity)
        stats.records += 1
        if not quality:
            return
        stats.score_total += int(quality.get("score") or 0)
        any_flag = False
        for name, checked in (quality.get("fields") or {}).items():
            f = stats.fields.get(name)
            if f is None:
                f = stats.fields[name] = FieldStats(name)
            f.filled += 1
            if checked.get("valid"):
                f.valid += 1
            codes = checked.get("flags") or ()
            if codes:
                any_flag = True
                f.flags.update(codes)
                stats.flags.update(codes)
                if any(severity(c) is Severity.FIXED for c in codes):
                    f.corrected += 1
        if any_flag:
            stats.flagged_records += 1

    def add_duplicates(self, source: str, entity: str, duplicates: Iterable[Duplicate]) -> None:
        self.source(source, entity).duplicates.extend(duplicates)

    def build(self, generated_at: datetime) -> QualityReport:
        ordered = sorted(self._sources.values(), key=lambda s: (s.entity != "customer", s.source))
        return QualityReport(generated_at, ordered)
