"""The shape every report takes: a title, typed columns, rows of plain values, charts over
those rows, and notes a marketer must read before the figures. The web pages render any
:class:`Report` the same way (table, charts, CSV and JSON exports), so a report function only
computes; it never formats for a page.

Rows hold aggregates only (counts, sums, rates, intervals), never a customer's personal data:
the analyst and agency roles may read every report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final, Literal

Kind = Literal["text", "count", "money", "rate", "points", "ratio", "date", "interval", "p"]
KINDS: Final = ("text", "count", "money", "rate", "points", "ratio", "date", "interval", "p")
ChartKind = Literal["bar", "line", "band"]


class Note(str):
    """A note with figures in it: its text is the English sentence (what exports carry), and
    it keeps its template (``msgid``, with ``%(name)s`` placeholders) and the values, so a
    page can translate the template and fill it in.

    >>> n = note("%(n)s buyers followed a message.", n=12)
    >>> str(n), n.msgid, n.params
    ('12 buyers followed a message.', '%(n)s buyers followed a message.', {'n': '12'})
    """

    msgid: str
    params: dict[str, str]

    def __new__(cls, msgid: str, params: dict[str, str]) -> Note:
        made = super().__new__(cls, msgid % params)
        made.msgid = msgid
        made.params = params
        return made


def note(msgid: str, **params: object) -> Note:
    """A :class:`Note` from its English template and its values (turned into text)."""
    return Note(msgid, {name: str(value) for name, value in params.items()})


@dataclass(frozen=True)
class Column:
    """A column: its key in the rows, its label (English; the page translates it), its kind
    (how to format it: ``rate`` 0-1 shown as a percentage, ``points`` a difference of rates
    shown in percentage points, ``interval`` a (low, high) pair, ``p`` a p-value), and an
    optional help text saying what the figure means."""

    key: str
    label: str
    kind: Kind = "text"
    help: str = ""


@dataclass(frozen=True)
class Chart:
    """A chart over the report's rows: ``x`` a column key, ``series`` column keys drawn
    against it; for a ``band`` chart, ``low`` and ``high`` the keys of the interval drawn as
    a shaded band around the first series."""

    kind: ChartKind
    title: str
    x: str
    series: tuple[str, ...]
    low: str | None = None
    high: str | None = None


@dataclass
class Report:
    """A report ready to show and export."""

    key: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # figures above the table (label -> value, with the kind of the value)
    headline: list[tuple[str, Any, Kind]] = field(default_factory=list)
    as_of: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: columns, rows, headline and notes (dates as ISO text, amounts as
        numbers rounded to the cent, intervals as two-element lists)."""
        return {
            "report": self.key,
            "title": self.title,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "headline": [
                {"label": label, "value": plain(value), "kind": kind}
                for label, value, kind in self.headline
            ],
            "columns": [
                {"key": c.key, "label": c.label, "kind": c.kind, "help": c.help}
                for c in self.columns
            ],
            "rows": [{c.key: plain(row.get(c.key)) for c in self.columns} for row in self.rows],
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_csv(self) -> str:
        """CSV, one header line of column keys; an interval takes two columns
        (``key_low``, ``key_high``); text cells that a spreadsheet would read as a formula
        are prefixed with a quote."""
        out = io.StringIO()
        writer = csv.writer(out)
        header: list[str] = []
        for c in self.columns:
            header += [f"{c.key}_low", f"{c.key}_high"] if c.kind == "interval" else [c.key]
        writer.writerow(header)
        for row in self.rows:
            cells: list[Any] = []
            for c in self.columns:
                value = plain(row.get(c.key))
                if c.kind == "interval":
                    low, high = value if isinstance(value, list) else (None, None)
                    cells += [_cell(low), _cell(high)]
                else:
                    cells.append(_cell(value))
            writer.writerow(cells)
        return out.getvalue()


def plain(value: Any) -> Any:
    """A value as JSON allows: Decimal to float (cents kept), dates to ISO text, tuples to
    lists, None kept."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def interval(low: float | None, high: float | None) -> tuple[float, float] | None:
    """An interval cell (None when either bound is missing)."""
    return None if low is None or high is None else (low, high)


def columns(*specs: tuple[str, str, Kind] | tuple[str, str, Kind, str]) -> list[Column]:
    """Columns from ``(key, label, kind[, help])`` tuples."""
    return [Column(*spec) for spec in specs]


def keys(report: Report) -> Sequence[str]:
    return [c.key for c in report.columns]
