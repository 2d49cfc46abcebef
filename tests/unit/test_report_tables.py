"""Report exports: CSV with intervals in two columns and formula-like text defused, JSON with
plain values; hypothesis checks that any text survives a CSV round trip."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tournesol.reporting.tables import Report, columns, interval


def report(rows: list[dict[str, object]]) -> Report:
    return Report(
        key="t",
        title="T",
        columns=columns(
            ("name", "Name", "text"),
            ("revenue", "Revenue", "money"),
            ("ci", "Interval", "interval"),
            ("day", "Day", "date"),
        ),
        rows=rows,
        headline=[("Cost", Decimal("12.50"), "money")],
        as_of=datetime(2026, 11, 24, tzinfo=UTC),
    )


def test_csv_splits_intervals_and_defuses_formulas() -> None:
    r = report(
        [
            {"name": "=HYPERLINK(1)", "revenue": Decimal("10.25"), "ci": interval(-1.5, 3.0),
             "day": date(2026, 1, 2)},
            {"name": "plain", "revenue": None, "ci": None},
        ]
    )  # fmt: skip
    rows = list(csv.reader(io.StringIO(r.to_csv())))
    assert rows[0] == ["name", "revenue", "ci_low", "ci_high", "day"]
    assert rows[1] == ["'=HYPERLINK(1)", "10.25", "-1.5", "3.0", "2026-01-02"]
    assert rows[2] == ["plain", "", "", "", ""]


def test_json_holds_plain_values() -> None:
    r = report([{"name": "a", "revenue": Decimal("1.10"), "ci": (0.1, 0.2), "day": None}])
    data = json.loads(r.to_json())
    assert data["rows"] == [{"name": "a", "revenue": 1.1, "ci": [0.1, 0.2], "day": None}]
    assert data["headline"] == [{"label": "Cost", "value": 12.5, "kind": "money"}]
    assert data["as_of"].startswith("2026-11-24")


@given(st.text())
def test_any_text_survives_the_csv_round_trip(text: str) -> None:
    rows = list(csv.reader(io.StringIO(report([{"name": text}]).to_csv(), newline="")))
    cell = rows[1][0]
    if text.startswith(("=", "+", "-", "@", "\t", "\r")):
        assert cell == "'" + text
    else:
        assert cell == text


def test_a_note_keeps_its_template_and_reads_as_its_english_text() -> None:
    from tournesol.reporting.tables import Note, note

    n = note("%(n)s buyers in %(days)s days", n=12, days=30)
    assert isinstance(n, Note) and isinstance(n, str)
    assert n == "12 buyers in 30 days" and n.startswith("12")
    assert (n.msgid, n.params) == ("%(n)s buyers in %(days)s days", {"n": "12", "days": "30"})
    exported = json.loads(report([]).to_json())
    assert exported["notes"] == []
    r = report([])
    r.notes.append(n)
    assert json.loads(r.to_json())["notes"] == ["12 buyers in 30 days"]
