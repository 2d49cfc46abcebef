"""Pure rules that turn one raw row into a normalized record, or into a reject with a reason.

Nothing here touches a database. :class:`RowMapper` is compiled once per file from the mapping
and the file's columns, then called for every row.
"""

from __future__ import annotations

import hashlib
import re
from collections import ChainMap
from collections.abc import Callable
from collections.abc import Mapping as TMapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tournesol.customers import rules as customer_rules
from tournesol.ingest.schemas import EntityKind, FieldSpec, Mapping, MappingError
from tournesol.quality import record as quality_record
from tournesol.quality.dates import NotThisFormat, fixed_width_parser

DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d", "%d/%m/%y")
DEFAULT_DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%Y-%m-%d",
)
KEY_SEPARATOR = "|"
QUALITY_DATE_FIELDS = ("birth_date",)
MAX_KEY_LENGTH = 300

_SPACES = re.compile(r"\s+")
_NON_DIGITS = re.compile(r"\D+")

_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "collapse_spaces": lambda v: _SPACES.sub(" ", v).strip(),
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "digits_only": lambda v: _NON_DIGITS.sub("", v),
    "empty_to_null": lambda v: v,  # handled in apply_transforms
}


class RowRejected(Exception):
    """A row that cannot be accepted. ``code`` is machine-readable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def apply_transforms(value: str, transforms: tuple[str, ...]) -> str | None:
    """Apply the named transforms in order; ``empty_to_null`` turns a blank result into None."""
    for name in transforms:
        value = _TRANSFORMS[name](value)
    if "empty_to_null" in transforms and not value.strip():
        return None
    return value


def parse_decimal(text: str) -> Decimal:
    """Read an amount written the French or the English way: ``1 234,56``, ``1,234.56``,
    ``12,5``, ``-3.10``, ``12,50 €``.

    >>> parse_decimal("1 234,56")
    Decimal('1234.56')
    """
    cleaned = text.strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    cleaned = cleaned.removesuffix("€").removesuffix("EUR").strip()
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif cleaned.count(",") == 1:
        cleaned = cleaned.replace(",", ".")
    try:
        number = Decimal(cleaned)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    return number


def parse_date(text: str, formats: tuple[str, ...]) -> date:
    """Parse with the first format that fits. An impossible date (31/02/1980) is an error that
    says so, not a 'wrong format'."""
    impossible: str | None = None
    for fmt in formats or DEFAULT_DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError as exc:
            if "out of range" in str(exc) or "must be in" in str(exc):
                impossible = str(exc)
    if impossible:
        raise ValueError(f"{text!r} is not a real date ({impossible})")
    raise ValueError(
        f"{text!r} matches none of the date formats {list(formats or DEFAULT_DATE_FORMATS)}"
    )


def parse_datetime(text: str, formats: tuple[str, ...], tz: ZoneInfo) -> datetime:
    """Parse a date-time; ISO 8601 with an offset is always accepted; naive values are read in
    ``tz``. A bare date becomes midnight."""
    value: datetime | None = None
    if not formats:
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            value = None
    if value is None:
        impossible: str | None = None
        for fmt in formats or DEFAULT_DATETIME_FORMATS:
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError as exc:
                if "out of range" in str(exc) or "must be in" in str(exc):
                    impossible = str(exc)
        if value is None:
            if impossible:
                raise ValueError(f"{text!r} is not a real date-time ({impossible})")
            shown = list(formats or DEFAULT_DATETIME_FORMATS)
            raise ValueError(f"{text!r} matches none of the date-time formats {shown}")
    return value if value.tzinfo else value.replace(tzinfo=tz)


def _to_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _date_parser(formats: tuple[str, ...]) -> Callable[[str], date]:
    fast = [(fmt, fixed_width_parser(fmt)) for fmt in formats or DEFAULT_DATE_FORMATS]

    def parse(text: str) -> date:
        for _fmt, quick in fast:
            if quick is None:
                continue
            try:
                return quick(text)
            except NotThisFormat:
                continue
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a real date ({exc})") from exc
        return parse_date(text, formats)

    return parse


def compile_converter(spec: FieldSpec, tz: ZoneInfo) -> Callable[[Any], Any]:
    """A function that turns one raw value into a typed one according to ``spec``
    (ValueError if impossible). Built once per field and file, called for every row."""
    steps = [_TRANSFORMS[name] for name in spec.transforms if name != "empty_to_null"]
    null_if_empty = "empty_to_null" in spec.transforms
    value_map = spec.values
    default = spec.default
    plain = spec.transforms == ("strip", "empty_to_null") and not value_map

    def clean(raw: str) -> str | None:
        if plain:
            raw = raw.strip()
            return raw or None
        for step in steps:
            raw = step(raw)
        if null_if_empty and not raw.strip():
            return None
        if value_map:
            mapped = value_map.get(raw, value_map.get(raw.upper(), raw))
            return mapped
        return raw

    kind = spec.type
    parse_text: Callable[[str], Any]
    if kind == "string":
        parse_text = str
    elif kind == "date":
        parse_text = _date_parser(spec.formats)
    elif kind == "datetime":
        formats = spec.formats

        def parse_text(t: str) -> Any:
            return parse_datetime(t, formats, tz)

    elif kind == "decimal":
        parse_text = parse_decimal
    elif kind == "integer":

        def parse_text(t: str) -> Any:
            number = parse_decimal(t)
            if number != number.to_integral_value():
                raise ValueError(f"{t!r} is not a whole number")
            return int(number)

    else:
        yes, no = spec.true_values, spec.false_values

        def parse_text(t: str) -> Any:
            word = t.strip().lower()
            if word in yes:
                return True
            if word in no:
                return False
            raise ValueError(f"{t!r} is neither a yes ({yes}) nor a no value")

    def native(value: Any) -> Any:
        """Values that arrive typed (Excel, JSON, Parquet)."""
        if kind == "string":
            return _to_text(value)
        if kind == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
        elif kind == "datetime":
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=tz)
            if isinstance(value, date):
                return datetime.combine(value, time(), tzinfo=tz)
        elif kind == "decimal":
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not a number")
            if isinstance(value, int | Decimal):
                return Decimal(value)
            if isinstance(value, float):
                return Decimal(repr(value))
        elif kind == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(value, bool):
            return value
        return parse_text(_to_text(value))

    def convert_one(value: Any) -> Any:
        if value is None:
            return default
        if type(value) is str:
            text = clean(value)
            if text is None:
                return default
            return parse_text(text)
        return native(value)

    return convert_one


def convert(value: Any, spec: FieldSpec, tz: ZoneInfo) -> Any:
    """Turn one raw value into a typed one according to ``spec``; ValueError if impossible."""
    return compile_converter(spec, tz)(value)


_JSON_FORM: dict[str, Callable[[Any], Any]] = {
    "date": date.isoformat,
    "datetime": datetime.isoformat,
    "decimal": str,
}


def to_json_value(value: Any) -> Any:
    """The JSON form of a typed value: ISO dates, decimals as strings."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def to_json_text(value: Any) -> str:
    """The stored JSON form: keys sorted, so equal content gives equal text."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_SORT_KEYS).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def fingerprint(raw_json: str, normalized_json: str) -> str:
    """A fingerprint of what was received and what it meant: equal = nothing changed."""
    payload = f"{raw_json}\x00{normalized_json}".encode()
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def record_hash(raw: TMapping[str, Any], normalized: TMapping[str, Any]) -> str:
    return fingerprint(to_json_text(raw), to_json_text(normalized))


def mapping_fingerprint(mapping: Mapping) -> str:
    """The mapping and the quality rules' version: a file imported under other rules is read
    again rather than skipped as already imported."""
    described = mapping.model_dump(mode="json") | {"quality": quality_record.QUALITY_VERSION}
    return hashlib.sha256(to_json_text(described).encode()).hexdigest()


@dataclass(slots=True)
class MappedRow:
    """A row as understood: its key, typed field values, and their JSON form."""

    line_no: int
    key: str
    values: dict[str, Any]
    normalized: dict[str, Any]
    raw: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    consents: dict[str, bool] = field(default_factory=dict)  # "channel:purpose" -> granted
    consent_meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # column, value, date
    customer_ref: str | None = None
    transaction_key: str | None = None  # flat transaction lines: the transaction this row is in
    line_key: int | None = None
    raw_text: str = ""  # the row as read, kept for a reject decided after mapping
    organisation: dict[str, Any] | None = None  # B2B contacts: their company
    flags: list[str] = field(default_factory=list)  # quality flags (docs/quality.md)
    raw_json: str = ""
    normalized_json: str = ""
    record_hash: str = ""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Rows cross from the reading process to the writing one: a flat tuple pickles many
        # times faster than a slotted dataclass, and a customer row needs only its texts.
        if self.slim:
            return (
                _rebuild_slim,
                (
                    self.line_no,
                    self.key,
                    self.raw_text,
                    self.raw_json,
                    self.normalized_json,
                    self.record_hash,
                    self.flags,
                ),
            )
        return (_rebuild_row, tuple(getattr(self, name) for name in _ROW_FIELDS))

    @property
    def slim(self) -> bool:
        """True when everything the store needs is in the JSON texts."""
        return not (
            self.values
            or self.lines
            or self.consents
            or self.organisation
            or self.customer_ref
            or self.transaction_key
        )

    @property
    def flags_json(self) -> str:
        return orjson.dumps(self.flags).decode()

    def seal(self) -> None:
        """Serialize raw and normalized once, and fingerprint them."""
        self.raw_json = to_json_text(self.raw)
        self.normalized_json = to_json_text(self.normalized)
        self.record_hash = fingerprint(self.raw_json, self.normalized_json)


_ROW_FIELDS = tuple(MappedRow.__dataclass_fields__)


def _rebuild_row(*values: Any) -> MappedRow:
    return MappedRow(*values)


def _rebuild_slim(
    line_no: int,
    key: str,
    raw_text: str,
    raw_json: str,
    normalized_json: str,
    record_hash: str,
    flags: list[str],
) -> MappedRow:
    return MappedRow(
        line_no,
        key,
        {},
        {},
        {},
        raw_text=raw_text,
        flags=flags,
        raw_json=raw_json,
        normalized_json=normalized_json,
        record_hash=record_hash,
    )


class RowMapper:
    """Compiled mapping for one file: resolves column names once, then maps rows."""

    def __init__(
        self,
        mapping: Mapping,
        columns: list[str],
        *,
        limits: TMapping[str, int] | None = None,
        line_limits: TMapping[str, int] | None = None,
        normalize: bool = True,
    ) -> None:
        """``limits``: field -> the length of the column it is stored in; a longer value is a
        VALUE_TOO_LONG reject, never a truncation. ``normalize=False`` leaves customer rows as
        the mapping read them, without the quality normalizers (benchmarks, diagnostics)."""
        self.normalize = normalize
        self.limits = dict(limits or {})
        self.line_limits = dict(line_limits or {})
        self.mapping = mapping
        self.tz = ZoneInfo(mapping.format.timezone)
        by_lower = {c.strip().lower(): c for c in columns}

        def resolve(column: str, where: str) -> str:
            found = by_lower.get(column.strip().lower())
            if found is None:
                raise MappingError(
                    f"{where}: column {column!r} is not in the file; the file's columns are: "
                    + ", ".join(columns)
                )
            return found

        self.key_columns = [resolve(c, "key") for c in mapping.key_columns]
        self.is_customer = mapping.entity is EntityKind.customer
        # A customer's birth date is read by the quality rules (day/month swaps, age checks):
        # the converter only cleans the text, ``_quality`` parses it with the mapping's formats.
        self.quality_dates: dict[str, tuple[str, ...]] = {}
        specs = mapping.field_specs()
        if self.is_customer:
            for name in QUALITY_DATE_FIELDS:
                spec = specs.get(name)
                if spec is not None and spec.type == "date":
                    self.quality_dates[name] = spec.formats
                    specs[name] = spec.model_copy(update={"type": "string"})
        self.fields: list[tuple[str, str | None, FieldSpec]] = [
            (name, resolve(spec.column, f"field {name}") if spec.column else None, spec)
            for name, spec in specs.items()
        ]
        self._compiled = self._compile(self.fields, self.limits)
        self.consents = [
            (
                f"{c.channel}:{c.purpose}",
                resolve(c.column, f"consent {c.channel}"),
                c.true_values,
                c.false_values,
                resolve(c.collected_at, f"consent {c.channel} collected_at")
                if c.collected_at
                else None,
                resolve(c.proof, f"consent {c.channel} proof") if c.proof else None,
            )
            for c in mapping.consents
        ]
        self.customer_column = (
            resolve(mapping.customer.column, "customer") if mapping.customer else None
        )
        self.line_fields = list(mapping.line_specs().items())
        lines = mapping.lines
        self.lines_path = lines.path if lines else None
        self.line_key_column = resolve(lines.key, "lines.key") if lines and lines.key else None
        if self.line_key_column is not None:
            self.line_fields = [
                (name, spec.model_copy(update={"column": resolve(spec.column, f"lines.{name}")}))
                if spec.column
                else (name, spec)
                for name, spec in self.line_fields
            ]
        self._compiled_lines = self._compile(
            [(n, sp.column, sp) for n, sp in self.line_fields], self.line_limits
        )
        self._consent_date = compile_converter(
            FieldSpec(default=None, column="-", type="datetime"), self.tz
        )
        self.required = mapping.required
        self.consent_columns = {label: column for label, column, *_ in self.consents}
        self._identifiers = customer_rules.identifier_extractor(mapping.identifiers)

    def _key(self, values: TMapping[str, Any], line_no: int) -> str:
        parts = []
        for column in self.key_columns:
            raw = values.get(column)
            text = "" if raw is None else _to_text(raw).strip()
            if not text:
                raise RowRejected("MISSING_KEY", f"line {line_no}: key column {column!r} is empty")
            parts.append(text)
        key = KEY_SEPARATOR.join(parts)
        if len(key) > MAX_KEY_LENGTH:
            raise RowRejected(
                "KEY_TOO_LONG",
                f"line {line_no}: key is {len(key)} characters (max {MAX_KEY_LENGTH})",
            )
        return key

    Compiled = list[tuple[str, str | None, str, Callable[[Any], Any], Any, int]]

    def _compile(
        self, fields: list[tuple[str, str | None, FieldSpec]], limits: TMapping[str, int]
    ) -> RowMapper.Compiled:
        return [
            (
                name,
                column,
                spec.type,
                compile_converter(spec, self.tz),
                _JSON_FORM.get(spec.type),
                limits.get(name, 0),
            )
            for name, column, spec in fields
        ]

    @staticmethod
    def _fields(
        compiled: RowMapper.Compiled, values: TMapping[str, Any], where: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Typed values and their JSON form, in one pass; RowRejected on the first bad one."""
        typed: dict[str, Any] = {}
        normalized: dict[str, Any] = {}
        for name, column, kind, conv, json_form, limit in compiled:
            try:
                value = conv(values.get(column) if column else None)
            except ValueError as exc:
                code = "INVALID_DATE" if kind in ("date", "datetime") else "INVALID_VALUE"
                shown = column or name
                raise RowRejected(code, f"{where}: column {shown!r} ({name}): {exc}") from exc
            typed[name] = value
            if value is not None:
                if limit and type(value) is str and len(value) > limit:
                    reason = f"{where}: {name} is {len(value)} characters, the limit is {limit}"
                    raise RowRejected("VALUE_TOO_LONG", reason)
                normalized[name] = json_form(value) if json_form else value
        return typed, normalized

    def map(self, line_no: int, values: dict[str, Any]) -> MappedRow:
        """Map one raw row. Raises RowRejected with a precise code and reason."""
        where = f"line {line_no}"
        key = self._key(values, line_no)
        typed, normalized = self._fields(self._compiled, values, where)
        for name in self.required:
            if typed.get(name) in (None, ""):
                raise RowRejected("MISSING_REQUIRED", f"{where}: required field {name!r} is empty")
        row = MappedRow(
            line_no=line_no,
            key=key,
            values=typed,
            normalized=normalized,
            raw=values,
        )
        for label, column, yes, no, date_column, proof_column in self.consents:
            cell = values.get(column)
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                continue
            word = _to_text(cell).strip().lower()
            if isinstance(cell, bool):
                row.consents[label] = cell
            elif word in yes:
                row.consents[label] = True
            elif word in no:
                row.consents[label] = False
            else:
                raise RowRejected(
                    "INVALID_VALUE",
                    f"{where}: consent column {column!r}: {cell!r} is neither yes nor no",
                )
            meta: dict[str, Any] = {"column": column, "value": _to_text(cell)}
            if date_column is not None and values.get(date_column) not in (None, ""):
                try:
                    meta["collected_at"] = self._consent_date(values[date_column])
                except ValueError as exc:
                    raise RowRejected(
                        "INVALID_DATE", f"{where}: consent date column {date_column!r}: {exc}"
                    ) from exc
            if proof_column is not None and values.get(proof_column) not in (None, ""):
                meta["proof"] = _to_text(values[proof_column])
            row.consent_meta[label] = meta
        if row.consents:
            row.normalized["consents"] = dict(row.consents)
            details = {
                label: {
                    k: to_json_value(v) for k, v in meta.items() if k in ("collected_at", "proof")
                }
                for label, meta in row.consent_meta.items()
                if "collected_at" in meta or "proof" in meta
            }
            if details:
                row.normalized["consent_details"] = details
        if self.customer_column is not None:
            ref = values.get(self.customer_column)
            text = None if ref is None else _to_text(ref).strip()
            row.customer_ref = text or None
        if self.mapping.entity is EntityKind.transaction:
            self._map_lines(row, values, where)
        elif self.is_customer and self.normalize:
            self._quality(row, typed, where)
        row.seal()
        return row

    def _quality(self, row: MappedRow, typed: dict[str, Any], where: str) -> None:
        """Customer rows: the implied fields, then every contact field through the quality
        normalizers; normalized values replace the mapped ones, the flags go with the row."""
        try:
            settled = customer_rules.settle_customer_fields(typed)
        except ValueError as exc:
            raise RowRejected("INVALID_VALUE", f"{where}: {exc}") from exc
        typed.update(settled)
        quality = quality_record.normalize_customer(typed, date_formats=self.quality_dates)
        for name, reason in quality.unreadable.items():
            column = next((c for n, c, _ in self.fields if n == name), name)
            raise RowRejected("INVALID_DATE", f"{where}: column {column!r} ({name}): {reason}")
        limits = self.limits
        normalized = row.normalized
        for produced in (settled, quality.values):
            for name, value in produced.items():
                if value is None:
                    normalized.pop(name, None)
                    continue
                if value.__class__ is str:
                    limit = limits.get(name, 0)
                    if limit and len(value) > limit:
                        reason = f"{where}: {name} is {len(value)} characters, the limit is {limit}"
                        raise RowRejected("VALUE_TOO_LONG", reason)
                    normalized[name] = value
                else:
                    normalized[name] = to_json_value(value)
        typed.update(quality.values)
        normalized["quality"] = quality.to_json()
        row.flags = quality.flags
        row.organisation = customer_rules.organisation_values(typed)
        email_key = typed.get("email_key")
        overrides = {**quality.moved, **({"email": email_key} if email_key else {})}
        declared = self._identifiers(ChainMap(overrides, typed) if overrides else typed)
        if declared:
            normalized["identifiers"] = dict(declared)

    def _map_lines(self, row: MappedRow, values: dict[str, Any], where: str) -> None:
        if self.line_key_column is not None:
            number = values.get(self.line_key_column)
            try:
                line_key = (
                    int(parse_decimal(_to_text(number))) if number not in (None, "") else None
                )
            except ValueError:
                line_key = None
            if line_key is None:
                raise RowRejected(
                    "MISSING_KEY",
                    f"{where}: line number column {self.line_key_column!r} is not a number",
                )
            line, line_json = self._fields(self._compiled_lines, values, where)
            line["line_no"] = line_key
            row.transaction_key, row.line_key = row.key, line_key
            row.key = f"{row.key}{KEY_SEPARATOR}{line_key}"
            row.lines = [line]
            row.normalized["line"] = line_json | {"line_no": line_key}
        elif self.lines_path is not None:
            items = values.get(self.lines_path)
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise RowRejected(
                    "INVALID_VALUE", f"{where}: {self.lines_path!r} must be a list of objects"
                )
            lines_json: list[dict[str, Any]] = []
            for number, item in enumerate(items, start=1):
                line, line_json = self._fields(
                    self._compiled_lines, item, f"{where}, line item {number}"
                )
                line["line_no"] = number
                row.lines.append(line)
                lines_json.append(line_json | {"line_no": number})
            row.normalized["lines"] = lines_json
