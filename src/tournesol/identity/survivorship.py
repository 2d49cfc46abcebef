"""Golden-record survivorship: which source record each customer column is taken from.

Identity resolution groups a person's source records into one customer; :func:`build_golden`
builds that customer's golden record from them, attribute by attribute, by the rules of a YAML
file (:func:`load_rules`; the packaged ``survivorship.yaml`` documents the schema in its
header). An attribute is one customer column or a group of columns that always come from one
record (the postal address). ``address_line1`` (AFNOR identity line) is not chosen but derived
from the golden civility, first and last name. Pure: plain data in and out, no database.

>>> golden = build_golden([Candidate(7, "loyalty", 2, None, {"last_name": "Bodin"})], load_rules())
>>> golden.values["last_name"], golden.provenance_json()["last_name"]
('Bodin', {'record': 7, 'source': 'loyalty', 'rule': 'most_frequent'})
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tournesol.customers.rules import GOLDEN_FIELDS
from tournesol.quality.names import identity_line

Selection = Literal["source_priority", "most_recent", "most_frequent", "most_complete"]
Rule = Literal[Selection, "any_customer", "top_contributor"]

DEFAULT_RULES_FILE = Path(__file__).with_name("survivorship.yaml")
COLUMNS: tuple[str, ...] = tuple(GOLDEN_FIELDS.values())
DERIVED = "address_line1"  # from the golden civility, first_name and last_name
_FIELD_OF = {column: name for name, column in GOLDEN_FIELDS.items()}
# normalized fields whose validity is the one ``address`` entry of the quality section
_ADDRESS_FIELDS = ("address_complement", "address_building", "address_street", "address_special",
                   "address_line6", "postal_code", "city", "insee_code", "country")  # fmt: skip
ADDRESS_COLUMNS: tuple[str, ...] = tuple(GOLDEN_FIELDS[name] for name in _ADDRESS_FIELDS)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One source record of the customer: ``values`` is its ``normalized`` dict; ``seen_at``
    when the source last asserted it (UTC-aware, None when unknown); ``trust_rank`` 1 = most
    trusted source."""

    record_id: int
    source: str
    trust_rank: int
    seen_at: datetime | None
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Provenance:
    """The record a golden value comes from and the rule that chose it (``derived`` for
    ``address_line1``: the record named is the one of the last name)."""

    record_id: int
    source: str
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record_id, "source": self.source, "rule": self.rule}


@dataclass(slots=True)
class Golden:
    """Customer column -> value (None when no record has a usable one), and -> provenance
    (only for the columns that have a value)."""

    values: dict[str, Any]
    provenance: dict[str, Provenance] = field(default_factory=dict)

    def provenance_json(self) -> dict[str, dict[str, Any]]:
        return {column: p.to_json() for column, p in self.provenance.items()}


@dataclass(frozen=True, slots=True)
class AttributeRule:
    """One attribute with its settings resolved against the file's defaults."""

    name: str
    columns: tuple[str, ...]
    rule: Rule
    valid_only: bool
    tie_break: tuple[Selection, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SurvivorshipRules:
    """Validated rules: every customer column but ``address_line1`` in exactly one attribute."""

    attributes: tuple[AttributeRule, ...]


class _DefaultsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: Selection = "source_priority"
    valid_only: bool = True
    tie_break: tuple[Selection, ...] = ("most_recent",)
    sources: tuple[str, ...] = ()


class _AttributeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    columns: tuple[str, ...] | None = Field(default=None, min_length=1)
    rule: Rule | None = None
    valid_only: bool | None = None
    tie_break: tuple[Selection, ...] | None = None
    sources: tuple[str, ...] | None = None


class _FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    defaults: _DefaultsSpec = _DefaultsSpec()
    attributes: dict[str, _AttributeSpec] = Field(default_factory=dict)


def load_rules(path: Path | None = None) -> SurvivorshipRules:
    """Read and validate a survivorship YAML file (None: the packaged default).

    Raises ValueError naming the file and the faulty key, attribute or column.
    """
    path = path or DEFAULT_RULES_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read survivorship rules {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"survivorship rules {path} are not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"survivorship rules {path} must be a YAML mapping, not {data!r}")
    try:
        return _resolve(_FileSpec.model_validate(data))
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            f" (got {err['input']!r})"
            for err in exc.errors()
        ]
        raise ValueError(f"survivorship rules {path} are invalid:\n" + "\n".join(lines)) from exc
    except ValueError as exc:
        raise ValueError(f"survivorship rules {path} are invalid: {exc}") from exc


def _resolve(spec: _FileSpec) -> SurvivorshipRules:
    d = spec.defaults
    taken: dict[str, str] = {}  # column -> attribute
    attributes: list[AttributeRule] = []
    for name, a in spec.attributes.items():
        columns = a.columns or (name,)
        for column in columns:
            if column == DERIVED:
                raise ValueError(f"attribute {name!r}: {DERIVED} is derived from the names")
            if column not in COLUMNS:
                what = f"unknown column {column!r}" if a.columns else "unknown attribute"
                known = ", ".join(c for c in COLUMNS if c != DERIVED)
                raise ValueError(f"attribute {name!r}: {what} (customer columns: {known})")
            if column in taken:
                raise ValueError(f"attribute {name!r}: {column!r} is already in {taken[column]!r}")
            taken[column] = name
        if 0 < len(set(ADDRESS_COLUMNS) & set(columns)) < len(ADDRESS_COLUMNS):
            raise ValueError(f"attribute {name!r}: all of {ADDRESS_COLUMNS} or none of them")
        rule = a.rule or d.rule
        if rule == "any_customer" and columns != ("customer_type",):
            raise ValueError(f"attribute {name!r}: any_customer is only for customer_type")
        attributes.append(
            AttributeRule(
                name,
                columns,
                rule,
                d.valid_only if a.valid_only is None else a.valid_only,
                d.tie_break if a.tie_break is None else a.tie_break,
                d.sources if a.sources is None else a.sources,
            )
        )
    unlisted = [c for c in COLUMNS if c not in taken and c != DERIVED]
    groups: list[tuple[str, ...]] = [(c,) for c in unlisted if c not in ADDRESS_COLUMNS]
    if ADDRESS_COLUMNS[0] in unlisted:
        groups.append(ADDRESS_COLUMNS)
    for columns in groups:
        name = "address" if columns == ADDRESS_COLUMNS else columns[0]
        attributes.append(
            AttributeRule(name, columns, d.rule, d.valid_only, d.tie_break, d.sources)
        )
    return SurvivorshipRules(tuple(attributes))


def build_golden(candidates: Sequence[Candidate], rules: SurvivorshipRules) -> Golden:
    """The golden record of one customer from its source records.

    Each attribute goes to the best-ranked record holding a value for it (a group: at least
    one of its columns): its rule first, then its ``tie_break`` rules, then always lowest
    ``trust_rank``, most recent, lowest ``record_id``, so that the order of ``candidates``
    does not matter. Raises ValueError on no candidates or repeated record ids.
    """
    if not candidates:
        raise ValueError("a golden record needs at least one source record")
    if len({c.record_id for c in candidates}) != len(candidates):
        raise ValueError("candidates repeat a record id")
    golden = Golden(dict.fromkeys(COLUMNS))
    # computed once per record, not once per attribute and comparison
    recency = {c.record_id: _recency(c) for c in candidates}
    for attribute in rules.attributes:
        if attribute.rule != "top_contributor":
            _settle(attribute, candidates, golden, Counter(), recency)
    contributions = Counter(p.record_id for p in golden.provenance.values())
    for attribute in rules.attributes:
        if attribute.rule == "top_contributor":
            _settle(attribute, candidates, golden, contributions, recency)
    names = golden.values
    line1 = identity_line(names["civility"], names["first_name"], names["last_name"])
    golden.values[DERIVED] = line1
    if line1 is not None:
        origin = golden.provenance["last_name"]
        golden.provenance[DERIVED] = Provenance(origin.record_id, origin.source, "derived")
    return golden


def _settle(
    attribute: AttributeRule,
    candidates: Sequence[Candidate],
    golden: Golden,
    counts: Counter[int],
    recency: Mapping[int, tuple[Any, ...]],
) -> None:
    rows = {c.record_id: row for c in candidates if (row := _row(attribute, c)) is not None}
    pool = [c for c in candidates if c.record_id in rows]
    if not pool:
        return
    if len(pool) == 1:
        best = pool[0]
    else:
        keys = [
            _ranks(rule, attribute, pool, rows, counts, recency) for rule in attribute.tie_break
        ]
        keys.insert(0, _ranks(attribute.rule, attribute, pool, rows, counts, recency))
        best = min(
            pool,
            key=lambda c: (
                *(k[c.record_id] for k in keys),
                c.trust_rank,
                *recency[c.record_id],
                c.record_id,
            ),
        )
    for column, value in zip(attribute.columns, rows[best.record_id], strict=True):
        golden.values[column] = value
        if value is not None:
            golden.provenance[column] = Provenance(best.record_id, best.source, attribute.rule)


def _row(attribute: AttributeRule, c: Candidate) -> tuple[Any, ...] | None:
    """The record's typed values for the attribute's columns (an invalid one blanked under
    ``valid_only``), or None when it has none."""
    row = tuple(
        None if attribute.valid_only and not _valid(c.values, column) else value
        for column in attribute.columns
        for value in (_typed(column, c.values.get(_FIELD_OF[column])),)
    )
    return None if all(v is None for v in row) else row


def _valid(values: Mapping[str, Any], column: str) -> bool:
    name = _FIELD_OF[column]
    entry = ((values.get("quality") or {}).get("fields") or {}).get(
        "address" if name in _ADDRESS_FIELDS else name
    )
    return not (isinstance(entry, Mapping) and entry.get("valid") is False)


def _typed(column: str, raw: Any) -> Any:
    """The value as the customer column holds it, or None when blank or unreadable."""
    if raw is None:
        return None
    if column == "quality_score":
        try:
            return int(raw)
        except (TypeError, ValueError):
            return None
    if column == "birth_date":
        if isinstance(raw, date):
            return raw.date() if isinstance(raw, datetime) else raw
        try:
            return datetime.fromisoformat(str(raw).strip()).date()
        except ValueError:
            return None
    return str(raw).strip() or None


def _ranks(
    rule: Rule,
    attribute: AttributeRule,
    pool: list[Candidate],
    rows: dict[int, tuple[Any, ...]],
    counts: Counter[int],
    recency: Mapping[int, tuple[Any, ...]],
) -> dict[int, tuple[Any, ...]]:
    """record id -> sort key under one rule (lower is better)."""
    if rule == "source_priority":
        order = {source: i for i, source in enumerate(attribute.sources)}
        return {c.record_id: (order.get(c.source, len(order)), c.trust_rank) for c in pool}
    if rule == "most_recent":
        return {c.record_id: recency[c.record_id] for c in pool}
    if rule == "most_frequent":
        folded = {c.record_id: _folded(rows[c.record_id]) for c in pool}
        frequency = Counter(folded.values())
        return {rid: (-frequency[key],) for rid, key in folded.items()}
    if rule == "most_complete":
        if len(attribute.columns) == 1:
            return {rid: (-len(str(row[0])),) for rid, row in rows.items()}
        return {rid: (-sum(v is not None for v in row),) for rid, row in rows.items()}
    if rule == "any_customer":
        return {rid: (row[0] != "customer",) for rid, row in rows.items()}
    return {c.record_id: (-counts[c.record_id],) for c in pool}  # top_contributor


def _folded(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v).strip().casefold() for v in row)


def _recency(c: Candidate) -> tuple[Any, ...]:
    """Latest ``seen_at`` first; among equal (or unknown) ones, the latest date the source
    itself gives (``updated_at``, else ``created_at``); unknown sorts last."""
    source_time = _instant(c.values.get("updated_at")) or _instant(c.values.get("created_at"))
    out: list[Any] = []
    for moment in (_instant(c.seen_at), source_time):
        out += [True, 0.0] if moment is None else [False, -moment.timestamp()]
    return tuple(out)


def _instant(raw: Any) -> datetime | None:
    """A date or ISO date(-time) text as an aware datetime (naive ones taken as UTC)."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
