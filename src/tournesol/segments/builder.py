"""The segment builder's form, both ways: the form's fields (one row per condition, a top-level
ALL/ANY switch, NOT per row) become a definition (docs/segments.md), and a definition becomes
the form again when it fits (one level of conditions, each possibly negated); deeper ones are
edited as JSON or YAML text. Pure: strings in, plain data out, no database.

Field names are ``combine``, ``mode`` (``form`` or ``raw``), ``raw`` (the text) and, per row
``i``, ``c{i}.kind``, ``c{i}.not`` and the kind's own fields (``c{i}.attribute``,
``c{i}.op``, ``c{i}.value``...).

    >>> state = parse_form([("combine", "all"), ("c0.kind", "attribute"),
    ...     ("c0.attribute", "age"), ("c0.op", "between"), ("c0.value", "25"),
    ...     ("c0.value2", "45")])
    >>> to_definition(state)
    {'all': [{'attribute': 'age', 'op': 'between', 'value': [25, 45]}]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import yaml

KINDS = (
    "attribute",
    "reachable",
    "consent",
    "preference",
    "behaviour",
    "rfm",
    "score",
    "segment",
    "identifier",
)
LIST_OPS = ("in", "not_in")
NO_VALUE_OPS = ("is_null", "is_not_null")
NUMBER_OPS = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between")
# Golden-record attributes the form offers, and the type of their values.
ATTRIBUTES: dict[str, str] = {
    "gender": "text",
    "age": "number",
    "birth_date": "date",
    "postal_code": "text",
    "department": "text",
    "region": "text",
    "city": "text",
    "country": "text",
    "language": "text",
    "brand": "text",
    "zone": "text",
    "customer_type": "text",
    "quality_score": "number",
    "created_at": "date",
    "b2b": "bool",
    "naf_code": "text",
    "headcount_band": "text",
    "org_class": "text",
}
REACHABLE = ("email", "sms", "phone", "postal")
CONSENT_STATUSES = ("granted", "denied", "withdrawn")
PREFERENCE_KINDS = ("channel", "language", "day")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BEHAVIOUR_OF = ("purchases", "interactions")
MEASURES = ("count", "amount", "average_basket", "first_date", "last_date")
DATE_MEASURES = ("first_date", "last_date")
WINDOWS = ("all", "last_days", "range")
WHERE_LISTS = ("channel", "store", "category", "brand", "campaign", "type")
DIRECTIONS = ("inbound", "outbound")
RFM_BY = ("segment", "scores")

_ROW_FIELD = re.compile(r"^c(\d{1,3})\.([a-z_0-9]+)$")
_ERROR_ROW = re.compile(r"^\$\.(all|any)\[(\d+)\]")


@dataclass
class Row:
    """One condition of the form, as typed: the kind, NOT, and the kind's fields."""

    kind: str = "attribute"
    negate: bool = False
    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, "").strip() or default

    def chosen(self, name: str) -> list[str]:
        return self.lists.get(name, [])


@dataclass
class FormState:
    """The whole form: ALL or ANY of the rows, or the raw text when ``mode`` is ``raw``."""

    combine: str = "all"
    rows: list[Row] = field(default_factory=list)
    mode: str = "form"
    raw: str = ""


class FormError(ValueError):
    """The raw text is not JSON or YAML describing one node; ``path`` is ``$``."""

    path = "$"


# --- form -> definition --------------------------------------------------------------------


def parse_form(items: Iterable[tuple[str, str]]) -> FormState:
    """The form's state from its submitted fields (repeated names allowed: multi-selects).
    Rows keep their order of index; a row without a known kind is an attribute row."""
    state = FormState()
    rows: dict[int, Row] = {}
    for name, raw_value in items:
        value = str(raw_value)
        if name == "combine":
            state.combine = "any" if value == "any" else "all"
        elif name == "mode":
            state.mode = "raw" if value == "raw" else "form"
        elif name == "raw":
            state.raw = value
        else:
            match = _ROW_FIELD.match(name)
            if not match:
                continue
            row = rows.setdefault(int(match.group(1)), Row())
            key = match.group(2)
            if key == "kind":
                row.kind = value if value in KINDS else "attribute"
            elif key == "not":
                row.negate = value not in ("", "0", "false", "off")
            elif key == "segments":
                row.lists.setdefault(key, []).append(value)
            else:
                row.values[key] = value
    state.rows = [rows[i] for i in sorted(rows)]
    return state


def to_definition(state: FormState) -> dict[str, Any]:
    """The definition the form describes. Values are typed as far as the form knows (numbers
    for ages, counts and amounts; lists for ``in``, ``between``); what is missing or wrong is
    left for the compiler to report, with the node's path. Raises FormError on raw text that
    is not a JSON or YAML mapping."""
    if state.mode == "raw":
        return parse_raw(state.raw)
    return {state.combine: [row_node(row) for row in state.rows]}


@dataclass(frozen=True)
class Draft:
    """What the live count counts while the form is being filled: the definition of the
    complete rows (``kept``: their indexes in the form) and the rows still waiting for a
    value (``waiting``), left out rather than reported as errors."""

    definition: dict[str, Any]
    kept: tuple[int, ...]
    waiting: tuple[int, ...]


def draft(state: FormState) -> Draft:
    """The definition of the form's complete rows (see :class:`Draft`); the raw text whole.
    Raises FormError on raw text that is not a JSON or YAML mapping."""
    if state.mode == "raw":
        return Draft(parse_raw(state.raw), (), ())
    kept = tuple(i for i, row in enumerate(state.rows) if not incomplete(row))
    waiting = tuple(i for i in range(len(state.rows)) if i not in kept)
    nodes = [row_node(state.rows[i]) for i in kept]
    definition = {state.combine: nodes} if nodes else {"all": []}
    return Draft(definition, kept, waiting)


def incomplete(row: Row) -> bool:
    """A row whose value is not given yet (a new row, or one whose kind just changed)."""
    kind = row.kind
    if kind in ("attribute", "score", "behaviour"):
        return row.get("op", "eq") not in NO_VALUE_OPS and not row.get("value")
    if kind == "identifier":
        return not row.get("identifier")
    if kind == "segment":
        return not row.get("segment")
    if kind == "preference":
        return not row.get("pvalue")
    if kind == "rfm":
        if row.get("by", "segment") == "scores":
            return not (row.get("r") or row.get("f") or row.get("m"))
        return not row.chosen("segments")
    return False


def parse_raw(text: str) -> dict[str, Any]:
    """A definition written as JSON or YAML text."""
    if not text.strip():
        raise FormError('write a definition, for example {"all": []}')
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise FormError(f"not valid JSON or YAML{where}") from None
    if not isinstance(loaded, dict):
        raise FormError('a definition is one node: a mapping such as {"all": [...]}')
    plain: dict[str, Any] = _plain(loaded)
    return plain


def _plain(value: Any) -> Any:
    """JSON values only: YAML reads an unquoted 2025-01-31 as a date, kept as its text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def row_node(row: Row) -> dict[str, Any]:
    node = _leaf(row)
    return {"not": node} if row.negate else node


def _leaf(row: Row) -> dict[str, Any]:
    kind = row.kind
    if kind == "attribute":
        name = row.get("attribute", "gender")
        node: dict[str, Any] = {"attribute": name, "op": row.get("op", "eq")}
        _set_value(node, row, ATTRIBUTES.get(name, "text"))
        return node
    if kind == "reachable":
        return {"reachable": row.get("channel", "email")}
    if kind == "identifier":
        return {"identifier": row.get("identifier")}
    if kind == "consent":
        return {
            "consent": {
                "channel": row.get("channel", "email"),
                "purpose": row.get("purpose", "marketing"),
                "brand": row.get("brand") or None,
                "status": row.get("status", "granted"),
            }
        }
    if kind == "preference":
        which = row.get("preference", "channel")
        if which == "channel":
            return {"preference": {"channel": row.get("pvalue", "email"), "preferred": True}}
        return {"preference": {which: row.get("pvalue")}}
    if kind == "behaviour":
        return {"behaviour": _behaviour(row)}
    if kind == "rfm":
        rfm: dict[str, Any] = {"scope": row.get("scope", "all")}
        if row.get("by", "segment") == "scores":
            for letter in ("r", "f", "m"):
                scores = _split(row.get(letter))
                if scores:
                    rfm[letter] = [_number(s) for s in scores]
        else:
            rfm["segment"] = [s for s in row.chosen("segments") if s]
        return {"rfm": rfm}
    if kind == "score":
        score: dict[str, Any] = {"model": row.get("model"), "op": row.get("op", "gte")}
        _set_value(score, row, "number")
        return {"score": score}
    return {"segment": row.get("segment")}


def _behaviour(row: Row) -> dict[str, Any]:
    measure = row.get("measure", "count")
    node: dict[str, Any] = {"of": row.get("of", "purchases"), "measure": measure}
    window = row.get("window", "all")
    if window == "last_days":
        node["window"] = {"last_days": _number(row.get("days"))}
    elif window == "range":
        node["window"] = {"from": row.get("from"), "to": row.get("to")}
    where: dict[str, Any] = {}
    for key in WHERE_LISTS:
        items = _split(row.get(f"where_{key}"))
        if items:
            where[key] = items
    if row.get("direction") in DIRECTIONS:
        where["direction"] = row.get("direction")
    if where:
        node["where"] = where
    node["op"] = row.get("op", "gte")
    if measure in DATE_MEASURES:
        _set_value(node, row, "days_ago" if row.get("unit") == "days_ago" else "date")
    else:
        _set_value(node, row, "number")
    return node


def _set_value(node: dict[str, Any], row: Row, kind: str) -> None:
    op = node["op"]
    if op in NO_VALUE_OPS:
        return
    if op in LIST_OPS:
        node["value"] = [_typed(item, kind) for item in _split(row.get("value"))]
    elif op == "between":
        node["value"] = [_typed(row.get("value"), kind), _typed(row.get("value2"), kind)]
    else:
        node["value"] = _typed(row.get("value"), kind)


def _typed(text: str, kind: str) -> Any:
    text = text.strip()
    if kind == "number":
        return _number(text)
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("true", "yes", "oui", "1"):
            return True
        if lowered in ("false", "no", "non", "0"):
            return False
        return text
    if kind == "days_ago":
        number = _number(text)
        return {"days_ago": number}
    return text


def _number(text: str) -> Any:
    """An int or float from the form (a comma as decimal mark too); the text itself when it is
    not a number, for the compiler to report."""
    cleaned = text.strip().replace("\u202f", "").replace(" ", "").replace(",", ".")
    try:
        return int(cleaned)
    except ValueError:
        pass
    try:
        return float(cleaned)
    except ValueError:
        return text.strip()


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def error_row(path: str, state: FormState, kept: tuple[int, ...] | None = None) -> int | None:
    """The form row a definition error's path points into (``$.all[2].value`` -> 2); with
    ``kept`` (a draft's rows), the index in the draft is mapped back to the form's."""
    match = _ERROR_ROW.match(path)
    if not match or state.mode == "raw" or match.group(1) != state.combine:
        return None
    index = int(match.group(2))
    if kept is not None:
        return kept[index] if index < len(kept) else None
    return index if index < len(state.rows) else None


# --- definition -> form --------------------------------------------------------------------


def to_state(definition: Mapping[str, Any]) -> FormState:
    """The form for a definition: rows when it fits the form, else the raw editor holding it
    as JSON."""
    rows = _rows_of(definition)
    if rows is None:
        return FormState(mode="raw", raw=raw_text(definition))
    combine, found = rows
    return FormState(combine=combine, rows=found, raw=raw_text(definition))


def raw_text(definition: Mapping[str, Any]) -> str:
    return json.dumps(definition, indent=2, ensure_ascii=False, default=str)


def _rows_of(definition: Mapping[str, Any]) -> tuple[str, list[Row]] | None:
    if not isinstance(definition, Mapping) or len(definition) != 1:
        return None
    ((key, children),) = definition.items()
    if key in ("all", "any") and isinstance(children, list):
        rows = [_row_of(child) for child in children]
        if any(row is None for row in rows):
            return None
        return key, [row for row in rows if row is not None]
    single = _row_of(definition)
    return ("all", [single]) if single is not None else None


def _row_of(node: Any) -> Row | None:
    if not isinstance(node, Mapping):
        return None
    negate = False
    if set(node) == {"not"}:
        negate, node = True, node["not"]
        if not isinstance(node, Mapping):
            return None
    try:
        row = _leaf_row(node)
    except (KeyError, TypeError, ValueError):
        return None
    if row is not None:
        row.negate = negate
    return row


def _leaf_row(node: Mapping[str, Any]) -> Row | None:
    keys = set(node)
    if "attribute" in keys and keys <= {"attribute", "op", "value"}:
        row = Row("attribute", values={"attribute": str(node["attribute"])})
        _get_value(row, node)
        return row
    if keys == {"reachable"} and isinstance(node["reachable"], str):
        return Row("reachable", values={"channel": node["reachable"]})
    if keys == {"identifier"} and isinstance(node["identifier"], str):
        return Row("identifier", values={"identifier": node["identifier"]})
    if keys == {"segment"} and isinstance(node["segment"], str):
        return Row("segment", values={"segment": node["segment"]})
    if keys == {"consent"}:
        c = node["consent"]
        if not isinstance(c, Mapping) or not set(c) <= {"channel", "purpose", "brand", "status"}:
            return None
        values = {k: "" if c.get(k) is None else str(c.get(k)) for k in c}
        return Row("consent", values=values)
    if keys == {"preference"}:
        return _preference_row(node["preference"])
    if keys == {"behaviour"}:
        return _behaviour_row(node["behaviour"])
    if keys == {"rfm"}:
        return _rfm_row(node["rfm"])
    if keys == {"score"}:
        s = node["score"]
        if not isinstance(s, Mapping) or not set(s) <= {"model", "op", "value"}:
            return None
        row = Row("score", values={"model": str(s.get("model", ""))})
        _get_value(row, s)
        return row
    return None


def _preference_row(p: Any) -> Row | None:
    if not isinstance(p, Mapping):
        return None
    if set(p) == {"channel", "preferred"} and p["preferred"] is True:
        return Row("preference", values={"preference": "channel", "pvalue": str(p["channel"])})
    if len(p) == 1 and next(iter(p)) in ("language", "day"):
        ((key, value),) = p.items()
        return Row("preference", values={"preference": key, "pvalue": str(value)})
    return None


def _behaviour_row(b: Any) -> Row | None:
    if not isinstance(b, Mapping) or not set(b) <= {
        "of",
        "measure",
        "window",
        "where",
        "op",
        "value",
    }:
        return None
    values = {
        "of": str(b.get("of", "purchases")),
        "measure": str(b.get("measure", "count")),
        "window": "all",
    }
    window = b.get("window")
    if isinstance(window, Mapping):
        if set(window) == {"last_days"}:
            values |= {"window": "last_days", "days": _text(window["last_days"])}
        elif set(window) <= {"from", "to"}:
            values |= {
                "window": "range",
                "from": _text(window.get("from", "")),
                "to": _text(window.get("to", "")),
            }
        else:
            return None
    elif window is not None:
        return None
    where = b.get("where") or {}
    if not isinstance(where, Mapping) or not set(where) <= {*WHERE_LISTS, "direction"}:
        return None
    for key, items in where.items():
        if key == "direction":
            values["direction"] = str(items)
        else:
            values[f"where_{key}"] = ", ".join(_text(i) for i in _as_list(items))
    row = Row("behaviour", values=values)
    _get_value(row, b)
    return row


def _rfm_row(r: Any) -> Row | None:
    if not isinstance(r, Mapping) or not set(r) <= {"scope", "segment", "r", "f", "m"}:
        return None
    values = {"scope": str(r.get("scope", "all"))}
    if "segment" in r:
        if set(r) - {"scope", "segment"}:
            return None
        return Row(
            "rfm",
            values=values | {"by": "segment"},
            lists={"segments": [str(s) for s in _as_list(r["segment"])]},
        )
    values["by"] = "scores"
    for letter in ("r", "f", "m"):
        if letter in r:
            values[letter] = ", ".join(_text(v) for v in _as_list(r[letter]))
    return Row("rfm", values=values)


def _get_value(row: Row, node: Mapping[str, Any]) -> None:
    op = str(node.get("op", "eq"))
    row.values["op"] = op
    if "value" not in node:
        return
    value = node["value"]
    if op == "between" and isinstance(value, list) and len(value) == 2:
        row.values["value"], row.values["value2"] = (
            _value_text(row, value[0]),
            _value_text(row, value[1]),
        )
    elif isinstance(value, list):
        row.values["value"] = ", ".join(_value_text(row, v) for v in value)
    else:
        row.values["value"] = _value_text(row, value)


def _value_text(row: Row, value: Any) -> str:
    if isinstance(value, Mapping):
        if set(value) == {"days_ago"}:
            row.values["unit"] = "days_ago"
            return _text(value["days_ago"])
        raise ValueError("a value the form cannot show")
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
