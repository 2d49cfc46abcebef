"""The YAML mapping that tells Tournesol how to read one source's files.

A mapping names the source, the kind of entity each row describes, the key column, and how
each column becomes a field. Example (a shop's loyalty-card extract)::

    source:
      name: loyalty
      kind: loyalty
      brand: SOLEIL
      trust_rank: 2
    entity: customer
    key: num_carte
    fields:
      civility: civilite
      first_name: {column: prenom, transforms: [strip, title]}
      birth_date: {column: date_naiss, type: date, formats: ["%d/%m/%Y"]}
    identifiers:
      loyalty_card: num_carte

See docs/mappings.md for the full reference.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class EntityKind(StrEnum):
    """What one row of a source file describes."""

    customer = "customer"  # a person (B2C customer, prospect, or a B2B contact)
    transaction = "transaction"  # a ticket or an order, optionally with lines
    interaction = "interaction"  # one contact or action on a channel
    organisation = "organisation"  # a company (B2B), keyed by SIREN/SIRET
    product = "product"  # the product catalogue


FieldType = Literal["string", "date", "datetime", "decimal", "integer", "boolean"]

TRANSFORMS = (
    "strip",
    "collapse_spaces",
    "upper",
    "lower",
    "title",
    "digits_only",
    "empty_to_null",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Strict):
    """How one column (or a constant) becomes one normalized field."""

    column: str | None = None
    type: FieldType = "string"
    formats: tuple[str, ...] = ()
    transforms: tuple[str, ...] = ("strip", "empty_to_null")
    values: dict[str, str | None] = Field(
        default_factory=dict
    )  # value map, applied after transforms
    default: Any = None
    true_values: tuple[str, ...] = ("1", "o", "oui", "y", "yes", "true", "vrai", "x")
    false_values: tuple[str, ...] = ("0", "n", "non", "no", "false", "faux")

    @field_validator("transforms")
    @classmethod
    def _known_transforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [t for t in value if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"unknown transform(s) {unknown}; known: {', '.join(TRANSFORMS)}")
        return value

    @model_validator(mode="after")
    def _column_or_default(self) -> FieldSpec:
        if self.column is None and self.default is None:
            raise ValueError("a field needs a column or a default")
        return self


class SourceSpec(_Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str = "file"  # the system it comes from: loyalty, ecommerce, contest, callcenter, b2b...
    brand: str | None = None
    trust_rank: int = Field(default=5, ge=1, le=10)  # 1 = most trusted
    restrictions: tuple[str, ...] = ()  # e.g. rented_list, no_marketing


class FormatSpec(_Strict):
    encoding: str = "auto"
    delimiter: str = "auto"
    decimal: Literal["auto", ".", ","] = "auto"
    sheet: str | None = None  # Excel sheet name; the first sheet by default
    records_path: str | None = None  # JSON: key of the array of records (top-level array if None)
    timezone: str = "Europe/Paris"  # how date-times without an offset are read

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)"
            ) from exc
        return value


class ReferenceSpec(_Strict):
    """A pointer from a row to a record of another (or the same) source, by that source's key."""

    source: str
    column: str


class ConsentSpec(_Strict):
    """A column that carries a consent (opt-in/opt-out) for one channel and purpose."""

    channel: Literal["email", "sms", "phone", "postal", "push", "any"]
    column: str
    purpose: str = "marketing"
    true_values: tuple[str, ...] = ("1", "o", "oui", "y", "yes", "true", "vrai", "x", "optin")
    false_values: tuple[str, ...] = ("0", "n", "non", "no", "false", "faux", "optout")
    collected_at: str | None = None  # column holding the collection date (the import time if None)
    proof: str | None = None  # column holding the proof reference (form id, recording id...)


class LinesSpec(_Strict):
    """Transaction lines: nested in each record (``path``) or one row per line (``key``)."""

    path: str | None = None  # JSON: key of the list of line objects inside each record
    key: str | None = None  # flat files: the column that numbers the line within its transaction
    fields: dict[str, FieldSpec | str]

    @model_validator(mode="after")
    def _one_mode(self) -> LinesSpec:
        if (self.path is None) == (self.key is None):
            raise ValueError(
                "lines need exactly one of 'path' (nested) or 'key' (one row per line)"
            )
        return self


class Mapping(_Strict):
    source: SourceSpec
    entity: EntityKind = EntityKind.customer
    key: str | tuple[str, ...]
    format: FormatSpec = FormatSpec()
    fields: dict[str, FieldSpec | str] = Field(default_factory=dict)
    required: tuple[str, ...] = ()
    identifiers: dict[str, str] = Field(default_factory=dict)  # identifier kind -> field name
    customer: ReferenceSpec | None = None  # transactions/interactions: whose they are
    consents: tuple[ConsentSpec, ...] = ()
    lines: LinesSpec | None = None
    keep_unmapped: bool = True  # unmapped columns stay in the raw payload either way

    @model_validator(mode="after")
    def _coherent(self) -> Mapping:
        names = set(self.fields)
        for fname in self.required:
            if fname not in names:
                raise ValueError(f"required field {fname!r} is not declared under 'fields'")
        for kind, fname in self.identifiers.items():
            if fname not in names:
                raise ValueError(f"identifier {kind!r} uses field {fname!r}, not declared")
        if self.lines is not None and self.entity is not EntityKind.transaction:
            raise ValueError("'lines' only applies to entity: transaction")
        if self.customer is not None and self.entity not in (
            EntityKind.transaction,
            EntityKind.interaction,
        ):
            raise ValueError("'customer' only applies to transactions and interactions")
        return self

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (self.key,) if isinstance(self.key, str) else self.key

    def field_specs(self) -> dict[str, FieldSpec]:
        return {name: _as_spec(spec) for name, spec in self.fields.items()}

    def line_specs(self) -> dict[str, FieldSpec]:
        if self.lines is None:
            return {}
        return {name: _as_spec(spec) for name, spec in self.lines.fields.items()}


def _as_spec(spec: FieldSpec | str) -> FieldSpec:
    return FieldSpec(column=spec) if isinstance(spec, str) else spec


class MappingError(ValueError):
    """A mapping file that cannot be used; the message says where and why."""


def load_mapping(path: Path) -> Mapping:
    """Read and validate a YAML mapping file; raise MappingError with a readable message."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"cannot read mapping {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping {path} is not valid YAML: {exc}") from exc
    return parse_mapping(data, origin=str(path))


def parse_mapping(data: object, *, origin: str = "<mapping>") -> Mapping:
    if not isinstance(data, dict):
        raise MappingError(f"mapping {origin} must be a YAML mapping (key: value), not {data!r}")
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top)"
            lines.append(f"  {where}: {err['msg']}")
        raise MappingError(f"mapping {origin} is invalid:\n" + "\n".join(lines)) from exc
