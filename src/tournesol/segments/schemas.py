"""The segment definition language (docs/segments.md) as Pydantic models, its JSON Schema
(``segment.schema.json`` next to this file, generated from these models) and validation
errors that name the faulty node by its path (``$.all[2].behaviour.window``).

A definition is one node; a node is an object with exactly one of the keys ``all``, ``any``,
``not``, ``attribute``, ``reachable``, ``identifier``, ``consent``, ``preference``,
``behaviour``, ``rfm``, ``score``, ``segment`` (the key tells the node's kind). Everything a
compiler needs to refuse is refused here, so that a definition that validates compiles.

Regenerate the JSON Schema after changing a model::

    python -m tournesol.segments.schemas > src/tournesol/segments/segment.schema.json
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tournesol.segments import rules

SCHEMA_FILE: Final = Path(__file__).with_name("segment.schema.json")

NODE_KEYS: Final = (
    "all",
    "any",
    "not",
    "attribute",
    "reachable",
    "identifier",
    "consent",
    "preference",
    "behaviour",
    "rfm",
    "score",
    "segment",
)
Op = Literal[
    "eq",
    "ne",
    "in",
    "not_in",
    "lt",
    "lte",
    "gt",
    "gte",
    "between",
    "is_null",
    "is_not_null",
    "starts_with",
]
OPS: Final[tuple[str, ...]] = get_args(Op)
Channel = Literal["email", "sms", "phone", "postal", "push", "any"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MAX_DEPTH: Final = 24  # nested all / any / not
MAX_CHILDREN: Final = 200  # conditions in one all / any
MAX_NODES: Final = 1000  # nodes in a definition (SQL statements have limits too)
MAX_LIST: Final = 1000  # values in one in / not_in list or where filter
MAX_TEXT: Final = 200
MAX_DAYS: Final = 36_500
MIN_YEAR, MAX_YEAR = 1800, 2200

# --- value kinds --------------------------------------------------------------------------

TEXT, ENUM, CODE, DEPARTMENT, REGION, INT, DATE, BOOL = (
    "text",
    "enum",
    "code",
    "department",
    "region",
    "int",
    "date",
    "bool",
)
COUNT, AMOUNT, AVERAGE, SCORE = "count", "amount", "average", "score"

_EQUALITY = ("eq", "ne", "in", "not_in", "is_null", "is_not_null")
_ORDER = ("lt", "lte", "gt", "gte", "between")
OPS_BY_KIND: Final[dict[str, tuple[str, ...]]] = {
    TEXT: (*_EQUALITY, "starts_with"),
    ENUM: _EQUALITY,
    CODE: _EQUALITY,
    DEPARTMENT: _EQUALITY,
    REGION: _EQUALITY,
    INT: (*_EQUALITY, *_ORDER),
    DATE: ("eq", "ne", *_ORDER, "is_null", "is_not_null"),
    BOOL: ("eq", "ne"),
    COUNT: ("eq", "ne", "in", "not_in", *_ORDER),
    AMOUNT: ("eq", "ne", *_ORDER),
    AVERAGE: ("eq", "ne", *_ORDER, "is_null", "is_not_null"),
    SCORE: ("eq", "ne", *_ORDER, "is_null", "is_not_null"),
}

# Golden-record attributes: name -> value kind.
ATTRIBUTES: Final[dict[str, str]] = {
    "gender": ENUM,
    "age": INT,
    "birth_date": DATE,
    "postal_code": TEXT,
    "department": DEPARTMENT,
    "region": REGION,
    "city": TEXT,
    "country": TEXT,
    "language": TEXT,
    "brand": CODE,
    "zone": CODE,
    "customer_type": ENUM,
    "quality_score": INT,
    "created_at": DATE,
    "b2b": BOOL,
    "naf_code": TEXT,
    "headcount_band": TEXT,
    "org_class": TEXT,
}
AttributeName = Literal[
    "gender",
    "age",
    "birth_date",
    "postal_code",
    "department",
    "region",
    "city",
    "country",
    "language",
    "brand",
    "zone",
    "customer_type",
    "quality_score",
    "created_at",
    "b2b",
    "naf_code",
    "headcount_band",
    "org_class",
]
ENUM_VALUES: Final[dict[str, tuple[str, ...]]] = {
    "gender": ("M", "F"),
    "customer_type": ("customer", "prospect"),
}
INT_RANGES: Final[dict[str, tuple[int, int]]] = {"age": (0, 150), "quality_score": (0, 100)}
MEASURE_KINDS: Final[dict[str, str]] = {
    "count": COUNT,
    "amount": AMOUNT,
    "average_basket": AVERAGE,
    "first_date": DATE,
    "last_date": DATE,
}
# Which where-filters apply to which history.
WHERE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "purchases": ("channel", "store", "category", "brand", "type"),
    "interactions": ("channel", "brand", "campaign", "type", "direction"),
}


class DefinitionError(ValueError):
    """A definition that cannot be compiled: ``path`` names the faulty node or value
    (``$.all[2].behaviour.window``), ``message`` says what is wrong. ``problems`` lists every
    (path, message) found, the first being ``path`` and ``message``."""

    def __init__(
        self, path: str, message: str, *, problems: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.problems: tuple[tuple[str, str], ...] = tuple(problems) or ((path, message),)


class _At(ValueError):
    """A value error inside a node, at ``where`` below the node (("value", 1) for the second
    value of a list)."""

    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where


@dataclass(frozen=True)
class DaysAgo:
    """A date relative to the compilation's reference time: ``{"days_ago": 30}``."""

    days: int


DayValue = date | DaysAgo


def _quote_hint(raw: Any) -> str:
    return f" (write it in quotes: '{raw}')" if isinstance(raw, int | float) else ""


def _parse_day(raw: Any, where: tuple[str | int, ...], name: str) -> DayValue:
    if isinstance(raw, datetime):
        raise _At(where, f"{name} takes a date (YYYY-MM-DD), not a date and time")
    if isinstance(raw, date):  # YAML reads an unquoted 2025-01-31 as a date
        return _in_range(raw, where)
    if isinstance(raw, Mapping):
        if set(raw) != {"days_ago"}:
            raise _At(where, 'a relative date is {"days_ago": N}')
        days = raw["days_ago"]
        if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
            raise _At(where, f"days_ago takes a whole number of days from 0 to {MAX_DAYS}")
        return DaysAgo(days)
    if isinstance(raw, str) and len(raw) == 10:
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            pass
        else:
            return _in_range(day, where)
    raise _At(
        where, f'{name} takes a date as YYYY-MM-DD or {{"days_ago": N}}, not {json_repr(raw)}'
    )


def _in_range(day: date, where: tuple[str | int, ...]) -> date:
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise _At(where, f"{day.isoformat()}: dates go from {MIN_YEAR} to {MAX_YEAR}")
    return day


def json_repr(value: Any) -> str:
    """A value as the definition's author wrote it (JSON), for messages."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _parse_scalar(kind: str, raw: Any, where: tuple[str | int, ...], name: str) -> Any:
    """One value of ``kind`` as the compiler uses it; raises _At with a message for the
    author."""
    if kind == DATE:
        return _parse_day(raw, where, name)
    if kind == BOOL:
        if not isinstance(raw, bool):
            raise _At(where, f"{name} takes true or false, not {json_repr(raw)}")
        return raw
    if kind in (INT, COUNT):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _At(where, f"{name} takes a whole number, not {json_repr(raw)}")
        low, high = INT_RANGES.get(name, (0, 10**12))
        if not low <= raw <= high:
            raise _At(where, f"{name} takes a number from {low} to {high}, not {raw}")
        return raw
    if kind in (AMOUNT, AVERAGE, SCORE):
        if not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw):
            raise _At(where, f"{name} takes a number, not {json_repr(raw)}")
        if kind == SCORE and not 0 <= raw <= 1:
            raise _At(where, f"a score is between 0 and 1, not {raw}")
        if abs(raw) >= 10**12:
            raise _At(where, f"{raw} is out of range")
        return Decimal(str(raw))
    # text-like kinds
    if not isinstance(raw, str):
        raise _At(where, f"{name} takes text, not {json_repr(raw)}{_quote_hint(raw)}")
    if not raw or len(raw) > MAX_TEXT:
        raise _At(where, f"{name} takes text of 1 to {MAX_TEXT} characters")
    if kind == ENUM and raw not in ENUM_VALUES[name]:
        raise _At(where, f"{name} is one of {', '.join(ENUM_VALUES[name])}, not {raw!r}")
    if kind == DEPARTMENT and raw not in rules.DEPARTMENTS:
        raise _At(where, f"{raw!r} is not a department code (01-95, 2A, 2B, 971-976, ...)")
    if kind == REGION:
        code = rules.region_code(raw)
        if code is None:
            raise _At(where, f"{raw!r} is not a region code or name (e.g. 11, Île-de-France)")
        return code
    if name == "country" and not (len(raw) == 2 and raw.isascii() and raw.isupper()):
        raise _At(where, f"country takes an ISO code in capitals such as FR, not {raw!r}")
    return raw


def parse_value(kind: str, op: str, raw: Any, *, name: str, field: str = "value") -> Any:
    """The value of a condition, checked against its op and kind: None for is_null /
    is_not_null, a tuple for in / not_in, a (low, high) pair for between, else one value
    (int, Decimal, str, bool, date or DaysAgo). Raises _At naming the faulty value."""
    if op in ("is_null", "is_not_null"):
        if raw is not None:
            raise _At((field,), f"{op} takes no value")
        return None
    if raw is None:
        raise _At((field,), f"{op} needs a value")
    if op in ("in", "not_in"):
        if not isinstance(raw, list) or not raw:
            raise _At((field,), f"{op} takes a non-empty list of values")
        if len(raw) > MAX_LIST:
            raise _At((field,), f"{op} takes at most {MAX_LIST} values")
        return tuple(_parse_scalar(kind, v, (field, i), name) for i, v in enumerate(raw))
    if op == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise _At((field,), "between takes a list of two values [low, high] (inclusive)")
        low, high = (_parse_scalar(kind, v, (field, i), name) for i, v in enumerate(raw))
        if _later(low, high):
            raise _At((field,), f"between: {json_repr(raw[0])} is above {json_repr(raw[1])}")
        return low, high
    if isinstance(raw, list):
        raise _At((field,), f"{op} takes one value, not a list")
    return _parse_scalar(kind, raw, (field,), name)


def _later(low: Any, high: Any) -> bool:
    if isinstance(low, DaysAgo) and isinstance(high, DaysAgo):
        return low.days < high.days
    if isinstance(low, DaysAgo) or isinstance(high, DaysAgo):
        return False  # known only against the reference time
    return bool(low > high)


def _check_op(kind: str, op: str, name: str) -> None:
    allowed = OPS_BY_KIND[kind]
    if op not in allowed:
        raise _At(("op",), f"{op} does not apply to {name}; use one of {', '.join(allowed)}")


# --- models -------------------------------------------------------------------------------

_DAYS_AGO_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {"days_ago": {"type": "integer", "minimum": 0, "maximum": MAX_DAYS}},
    "required": ["days_ago"],
    "additionalProperties": False,
}
_VALUE_SCHEMA: Final[dict[str, Any]] = {
    "description": (
        "A number, text, true/false, a date (YYYY-MM-DD) or {days_ago: N}; a list for in, "
        "not_in and between ([low, high]); nothing for is_null and is_not_null."
    ),
    "anyOf": [
        {"type": ["string", "number", "boolean", "null"]},
        _DAYS_AGO_SCHEMA,
        {
            "type": "array",
            "items": {"anyOf": [{"type": ["string", "number"]}, _DAYS_AGO_SCHEMA]},
        },
    ],
}
Value = Annotated[Any, WithJsonSchema(_VALUE_SCHEMA)]
Code = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")]
Name = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Text = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_TEXT)]
Purpose = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{0,39}$")]
IsoDate = Annotated[
    StrictStr,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"),
    WithJsonSchema({"type": "string", "format": "date"}),
]


def _real_date(value: str) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"{value}: dates go from {MIN_YEAR} to {MAX_YEAR}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AllNode(_Model):
    """AND: customers matching every condition (an empty list: everybody)."""

    all_: list[Node] = Field(alias="all", max_length=MAX_CHILDREN)


class AnyNode(_Model):
    """OR: customers matching at least one condition."""

    any_: list[Node] = Field(alias="any", max_length=MAX_CHILDREN)

    @field_validator("any_")
    @classmethod
    def _not_empty(cls, value: list[Node]) -> list[Node]:
        if not value:
            raise ValueError("an empty any matches nobody: give at least one condition")
        return value


class NotNode(_Model):
    """Customers not matching the condition."""

    not_: Node = Field(alias="not")


class AttributeNode(_Model):
    """A condition on the golden record (or, for b2b, naf_code, headcount_band and org_class,
    on the organisations the customer works for)."""

    attribute: AttributeName
    op: Op
    value: Value = None

    @model_validator(mode="after")
    def _coherent(self) -> AttributeNode:
        kind = ATTRIBUTES[self.attribute]
        _check_op(kind, self.op, self.attribute)
        parse_value(kind, self.op, self.value, name=self.attribute)
        return self


class ReachableNode(_Model):
    """A usable address on the golden record for the channel."""

    reachable: Literal["email", "sms", "phone", "postal"]


class IdentifierNode(_Model):
    """Has an identifier of that kind (email, phone_mobile, loyalty_card, account_id...)."""

    identifier: Name


class ConsentSpec(_Model):
    channel: Channel
    purpose: Purpose = "marketing"
    brand: Text | None = Field(None, description="a brand code; null: consents for no brand")
    status: Literal["granted", "denied", "withdrawn"] = "granted"


class ConsentNode(_Model):
    """The current consent (latest by collected_at) for channel, purpose and brand has this
    status."""

    consent: ConsentSpec


class PreferenceSpec(_Model):
    channel: Channel | None = None
    preferred: StrictBool | None = None
    language: Annotated[StrictStr, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = (
        None
    )
    day: Day | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PreferenceSpec:
        given = [k for k in ("preferred", "language", "day") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _At(
                (),
                'a preference is {"channel": C, "preferred": true}, {"language": L} or '
                '{"day": D} (each optionally with a channel)',
            )
        if given == ["preferred"] and self.channel is None:
            raise _At(("channel",), "preferred needs the channel it is about")
        return self


class PreferenceNode(_Model):
    """A stated contact preference (preference table)."""

    preference: PreferenceSpec


class LastDays(_Model):
    last_days: Annotated[StrictInt, Field(ge=1, le=MAX_DAYS)]


class DateRange(_Model):
    from_: Annotated[IsoDate, AfterValidator(_real_date)] | None = Field(None, alias="from")
    to: Annotated[IsoDate, AfterValidator(_real_date)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.from_ is None and self.to is None:
            raise _At((), "a window gives from, to or both")
        if self.from_ is not None and self.to is not None and self.from_ > self.to:
            raise _At(("to",), f"to ({self.to}) is before from ({self.from_})")
        return self


def _window_key(value: Any) -> str | None:
    if isinstance(value, LastDays):
        return "~last_days"
    if isinstance(value, DateRange):
        return "~range"
    if isinstance(value, Mapping):
        if "last_days" in value:
            return "~last_days"
        if "from" in value or "to" in value:
            return "~range"
    return None


Window = Annotated[
    Annotated[LastDays, Tag("~last_days")] | Annotated[DateRange, Tag("~range")],
    Discriminator(
        _window_key,
        custom_error_type="window",
        custom_error_message='a window is {"last_days": N} or {"from": DATE, "to": DATE}',
    ),
]
FilterValues = Annotated[list[Text], Field(min_length=1, max_length=MAX_LIST)]


class Where(_Model):
    channel: FilterValues | None = None
    store: FilterValues | None = None
    category: FilterValues | None = None
    brand: FilterValues | None = None
    campaign: FilterValues | None = None
    type: FilterValues | None = None
    direction: Literal["inbound", "outbound"] | None = None

    def given(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class BehaviourSpec(_Model):
    of: Literal["purchases", "interactions"]
    measure: Literal["count", "amount", "average_basket", "first_date", "last_date"]
    window: Window | None = Field(None, description="none: all time (up to now)")
    where: Where | None = None
    op: Op
    value: Value = None

    @model_validator(mode="after")
    def _coherent(self) -> BehaviourSpec:
        if self.of == "interactions" and self.measure in ("amount", "average_basket"):
            raise _At(
                ("measure",), "interactions have no amount: use count, first_date or last_date"
            )
        if self.where is not None:
            for key in self.where.given():
                if key not in WHERE_KEYS[self.of]:
                    allowed = ", ".join(WHERE_KEYS[self.of])
                    raise _At(("where", key), f"{self.of} are filtered by {allowed}, not {key}")
        kind = MEASURE_KINDS[self.measure]
        _check_op(kind, self.op, self.measure)
        parse_value(kind, self.op, self.value, name=self.measure)
        return self


class BehaviourNode(_Model):
    """An aggregate of the customer's purchases or interactions compared with a value."""

    behaviour: BehaviourSpec


def _segment_name(value: str) -> str:
    if value not in rules.SEGMENT_NAMES:
        raise ValueError(
            f"{value!r} is not an RFM segment; one of {', '.join(rules.SEGMENT_NAMES)}"
        )
    return value


SegmentName = Annotated[
    StrictStr,
    AfterValidator(_segment_name),
    WithJsonSchema({"type": "string", "enum": list(rules.SEGMENT_NAMES)}),
]
Score15 = Annotated[StrictInt, Field(ge=1, le=5)]


class RfmSpec(_Model):
    scope: Annotated[StrictStr, StringConstraints(min_length=1, max_length=40)] = Field(
        "all", description='"all" (every brand) or a brand code'
    )
    segment: Annotated[list[SegmentName], Field(min_length=1)] | None = None
    r: Annotated[list[Score15], Field(min_length=1)] | None = None
    f: Annotated[list[Score15], Field(min_length=1)] | None = None
    m: Annotated[list[Score15], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RfmSpec:
        scores = [k for k in ("r", "f", "m") if getattr(self, k) is not None]
        if self.segment is not None and scores:
            raise _At((scores[0],), "give either segment or r / f / m scores, not both")
        if self.segment is None and not scores:
            raise _At((), "give segment: [names] or r / f / m: [scores 1-5]")
        return self


class RfmNode(_Model):
    """The customer's RFM segment or scores (customer_rfm) in a scope."""

    rfm: RfmSpec


class ScoreSpec(_Model):
    model: Name
    op: Op
    value: Value = None

    @model_validator(mode="after")
    def _coherent(self) -> ScoreSpec:
        _check_op(SCORE, self.op, "score")
        parse_value(SCORE, self.op, self.value, name="score")
        return self


class ScoreNode(_Model):
    """The customer's current score (0-1) for a predictive model."""

    score: ScoreSpec


class SegmentNode(_Model):
    """Member of the saved segment with that code (its definition is inlined)."""

    segment: Code


_NODE_CLASSES: Final[dict[type[BaseModel], str]] = {
    AllNode: "all",
    AnyNode: "any",
    NotNode: "not",
    AttributeNode: "attribute",
    ReachableNode: "reachable",
    IdentifierNode: "identifier",
    ConsentNode: "consent",
    PreferenceNode: "preference",
    BehaviourNode: "behaviour",
    RfmNode: "rfm",
    ScoreNode: "score",
    SegmentNode: "segment",
}


def node_key(value: Any) -> str | None:
    """The kind of a node (its one node key), or None when it is not a node."""
    if isinstance(value, BaseModel):
        return _NODE_CLASSES.get(type(value))
    if isinstance(value, Mapping):
        keys = [k for k in NODE_KEYS if k in value]
        return keys[0] if len(keys) == 1 else None
    return None


def _node_tag(value: Any) -> str | None:
    key = node_key(value)
    return None if key is None else "~" + key


Node = Annotated[
    Annotated[AllNode, Tag("~all")]
    | Annotated[AnyNode, Tag("~any")]
    | Annotated[NotNode, Tag("~not")]
    | Annotated[AttributeNode, Tag("~attribute")]
    | Annotated[ReachableNode, Tag("~reachable")]
    | Annotated[IdentifierNode, Tag("~identifier")]
    | Annotated[ConsentNode, Tag("~consent")]
    | Annotated[PreferenceNode, Tag("~preference")]
    | Annotated[BehaviourNode, Tag("~behaviour")]
    | Annotated[RfmNode, Tag("~rfm")]
    | Annotated[ScoreNode, Tag("~score")]
    | Annotated[SegmentNode, Tag("~segment")],
    Discriminator(_node_tag, custom_error_type="node", custom_error_message="not a node"),
]


class Definition(RootModel[Node]):
    """A segment definition: one node (docs/segments.md)."""

    model_config = ConfigDict(frozen=True)


for _model in (AllNode, AnyNode, NotNode, Definition):
    _model.model_rebuild()


# --- validation -------------------------------------------------------------------------


def format_path(loc: Sequence[str | int]) -> str:
    """``("all", 2, "behaviour", "window")`` -> ``$.all[2].behaviour.window``."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _not_a_node(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = [k for k in NODE_KEYS if k in value]
        if keys:
            return f"one node per object: found {', '.join(keys)}; nest them in all or any"
        found = ", ".join(repr(k) for k in list(value)[:5]) or "no key"
        return f"not a node ({found}): a node has one of the keys {', '.join(NODE_KEYS)}"
    return f'a node is an object such as {{"attribute": ...}}, not {json_repr(value)}'


def _problem(err: Any) -> tuple[str, str]:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("~"))]
    kind = err["type"]
    value = err.get("input")
    if kind == "node":
        message = _not_a_node(value)
    elif kind == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}" if loc else "unknown key"
    elif kind == "missing":
        message = "required"
    elif kind == "literal_error":
        message = f"{json_repr(value)} is not one of {err['ctx']['expected']}"
    elif kind in ("string_type", "bool_type", "int_type", "list_type", "model_type"):
        expected = {
            "string_type": "text",
            "bool_type": "true or false",
            "int_type": "a whole number",
            "list_type": "a list",
            "model_type": "an object",
        }[kind]
        message = f"expected {expected}, not {json_repr(value)}"
        if kind == "string_type":
            message += _quote_hint(value)
    elif kind == "greater_than_equal":
        message = f"at least {err['ctx']['ge']}, not {json_repr(value)}"
    elif kind == "less_than_equal":
        message = f"at most {err['ctx']['le']}, not {json_repr(value)}"
    elif kind == "too_short":
        least = err["ctx"]["min_length"]
        message = f"an empty list: give at least {least} value{'s' if least > 1 else ''}"
    elif kind == "too_long":
        message = f"too many entries: at most {err['ctx']['max_length']}"
    elif kind == "string_too_short":
        message = "empty text"
    elif kind == "string_too_long":
        message = f"longer than {err['ctx']['max_length']} characters"
    elif kind == "string_pattern_mismatch":
        message = f"{json_repr(value)} is not a valid {loc[-1] if loc else 'value'}"
        pattern = err["ctx"]["pattern"]
        if pattern.startswith("^[a-z]"):
            extra = ", _ and -" if "\\-" in pattern else " and _"
            message += f" (lower-case letters, digits{extra})"
        elif pattern.startswith("^[A-Za-z0-9]"):
            message += " (letters, digits, _ . -)"
    elif kind in ("value_error", "assertion_error"):
        error = err.get("ctx", {}).get("error")
        if isinstance(error, _At):
            loc = [*loc, *error.where]
            message = str(error)
        else:
            message = str(error) if error is not None else err["msg"]
    else:
        message = err["msg"]
    return format_path(loc), message


def _size_problem(data: Any) -> tuple[str, str] | None:
    """The first node nested deeper than MAX_DEPTH, or past MAX_NODES (walked without
    recursion, before Pydantic recurses)."""
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(data, (), 1)]
    seen = 0
    while stack:
        node, loc, depth = stack.pop()
        seen += 1
        if depth > MAX_DEPTH:
            return format_path(loc), f"nested more than {MAX_DEPTH} levels deep"
        if seen > MAX_NODES:
            return format_path(loc), f"more than {MAX_NODES} conditions in one definition"
        if not isinstance(node, Mapping):
            continue
        for key in ("all", "any"):
            children = node.get(key)
            if isinstance(children, list):
                stack.extend((c, (*loc, key, i), depth + 1) for i, c in enumerate(children))
        if "not" in node:
            stack.append((node["not"], (*loc, "not"), depth + 1))
    return None


def validate(definition: Any) -> Definition:
    """The definition as a :class:`Definition` (models of its nodes). Raises DefinitionError
    at the first faulty node, every problem in ``problems``.

    >>> validate({"attribute": "age", "op": "gte", "value": "18"})
    Traceback (most recent call last):
    ...
    tournesol.segments.schemas.DefinitionError: $.value: age takes a whole number, not "18"
    """
    if isinstance(definition, Definition):
        return definition
    if not isinstance(definition, Mapping):
        raise DefinitionError("$", _not_a_node(definition))
    too_big = _size_problem(definition)
    if too_big is not None:
        raise DefinitionError(*too_big)
    try:
        return Definition.model_validate(definition)
    except ValidationError as exc:
        problems = [_problem(err) for err in exc.errors()]
        raise DefinitionError(*problems[0], problems=problems) from None


def _plain(value: Any) -> Any:
    """YAML values as JSON would hold them (an unquoted 2025-01-31 is read as a date)."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _looks_like_path(text: str) -> bool:
    stripped = text.strip()
    if not stripped or "\n" in stripped or stripped[0] in "{[":
        return False
    return Path(stripped).is_file() or stripped.lower().endswith((".yaml", ".yml", ".json"))


def load_definition(source: str | Path) -> dict[str, Any]:
    """A definition read from a YAML or JSON file (a :class:`Path`, or text naming a file
    that exists or ends in .yaml / .yml / .json) or from YAML / JSON text; dates written
    without quotes come back as ISO text. Only parses: :func:`validate` checks the nodes.
    Raises DefinitionError (path ``$``) on an unreadable file or text that is not a mapping.

    >>> load_definition('attribute: age\nop: gte\nvalue: 18')
    {'attribute': 'age', 'op': 'gte', 'value': 18}
    """
    origin = "definition"
    if isinstance(source, Path) or _looks_like_path(source):
        path = Path(source).expanduser() if isinstance(source, Path) else Path(source.strip())
        origin = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DefinitionError("$", f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise DefinitionError("$", f"{path} is not UTF-8 text") from None
    else:
        text = source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise DefinitionError(
            "$", f"{origin} is not valid YAML or JSON{where}: {problem}"
        ) from None
    if not isinstance(data, dict):
        raise DefinitionError(
            "$", f"{origin} must hold one node, an object such as {{attribute: age, ...}}"
        )
    plain: dict[str, Any] = _plain(data)
    return plain


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a definition, as committed in segment.schema.json."""
    schema = Definition.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Tournesol segment definition",
        "description": "One node; see docs/segments.md for every kind, attribute and op.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def json_schema_text() -> str:
    """The JSON Schema as the committed file holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m tournesol.segments.schemas > segment.schema.json
    print(json_schema_text(), end="")
