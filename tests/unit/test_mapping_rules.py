"""The pure mapping rules: parsing, transforms, keys, rejects with precise reasons."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.ingest.rules import (
    RowMapper,
    RowRejected,
    apply_transforms,
    mapping_fingerprint,
    parse_date,
    parse_datetime,
    parse_decimal,
    record_hash,
)
from tournesol.ingest.schemas import MappingError, parse_mapping

PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12,50", Decimal("12.50")),
        ("1 234,56", Decimal("1234.56")),
        ("1\u00a0234,56", Decimal("1234.56")),
        ("1.234,56", Decimal("1234.56")),
        ("1,234.56", Decimal("1234.56")),
        ("-3.10", Decimal("-3.10")),
        ("12,50 €", Decimal("12.50")),
        ("0", Decimal("0")),
    ],
)
def test_parse_decimal_reads_french_and_english_amounts(text: str, expected: Decimal) -> None:
    assert parse_decimal(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "1,2,3", "NaN", "inf"])
def test_parse_decimal_refuses_non_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**9), max_value=10**9
    )
)
def test_parse_decimal_round_trips_french_writing(value: Decimal) -> None:
    assert parse_decimal(str(value).replace(".", ",")) == value


@given(st.text())
def test_parse_decimal_never_raises_anything_but_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_decimal(text)


def test_impossible_date_says_it_is_not_a_real_date() -> None:
    with pytest.raises(ValueError, match="not a real date"):
        parse_date("31/02/1980", ("%d/%m/%Y",))
    with pytest.raises(ValueError, match="matches none"):
        parse_date("1980-02-xx", ("%d/%m/%Y",))
    assert parse_date("29/02/1980", ("%d/%m/%Y",)) == date(1980, 2, 29)


def test_default_date_formats_cover_french_and_iso() -> None:
    assert parse_date("05/03/1971", ()) == date(1971, 3, 5)
    assert parse_date("1971-03-05", ()) == date(1971, 3, 5)
    assert parse_date("05.03.1971", ()) == date(1971, 3, 5)


def test_datetimes_are_read_in_the_mapping_time_zone() -> None:
    naive = parse_datetime("2026-07-14 10:00:00", (), PARIS)
    assert naive.utcoffset() is not None and naive.astimezone(UTC).hour == 8
    with_offset = parse_datetime("2026-07-14T10:00:00Z", (), PARIS)
    assert with_offset == datetime(2026, 7, 14, 10, tzinfo=UTC)
    french = parse_datetime("14/01/2026 09:30", ("%d/%m/%Y %H:%M",), PARIS)
    assert french.astimezone(UTC).hour == 8


@given(
    st.text(), st.lists(st.sampled_from(["strip", "collapse_spaces", "upper", "lower", "title"]))
)
def test_transforms_never_raise(text: str, names: list[str]) -> None:
    apply_transforms(text, (*names, "empty_to_null"))


def test_empty_to_null_blanks() -> None:
    assert apply_transforms("   ", ("strip", "empty_to_null")) is None
    assert apply_transforms("  a  b ", ("collapse_spaces",)) == "a b"
    assert apply_transforms("06 12-34", ("digits_only",)) == "061234"


CUSTOMER_MAPPING = {
    "source": {"name": "loyalty", "kind": "loyalty", "brand": "SOLEIL"},
    "entity": "customer",
    "key": "num_carte",
    "fields": {
        "civility": {
            "column": "civ",
            "values": {"M": "M.", "MME": "Mme"},
            "transforms": ["strip", "upper", "empty_to_null"],
        },
        "last_name": "nom",
        "birth_date": {"column": "naiss", "type": "date", "formats": ["%d/%m/%Y"]},
        "points": {"column": "points", "type": "integer"},
    },
    "required": ["last_name"],
    "identifiers": {"loyalty_card": "last_name"},
    "consents": [{"channel": "email", "column": "optin"}],
}
COLUMNS = ["NUM_CARTE", "civ", "nom", "naiss", "points", "optin"]


def _row(**overrides: str) -> dict[str, str]:
    base = {
        "NUM_CARTE": "C1",
        "civ": "mme",
        "nom": " Durand ",
        "naiss": "05/03/1971",
        "points": "12",
        "optin": "O",
    }
    return base | overrides


def test_row_mapper_maps_a_row() -> None:
    mapper = RowMapper(parse_mapping(CUSTOMER_MAPPING), COLUMNS)
    row = mapper.map(2, _row())
    assert row.key == "C1"
    assert row.values == {
        "civility": "Mme",
        "last_name": "Durand",
        "birth_date": date(1971, 3, 5),
        "points": 12,
        "customer_type": "customer",  # settled: a customer unless the source says prospect
        # from the quality normalizers (docs/quality.md)
        "gender": "F",
        "last_name_key": "DURAND",
        "address_line1": "Mme DURAND",
        "quality_score": 30,  # last name 15 + civility 5 + birth date 10
    }
    assert row.normalized["birth_date"] == "1971-03-05"
    assert row.normalized["quality"]["fields"]["civility"] == {"valid": True}  # unchanged
    assert row.flags == []
    assert row.consents == {"email:marketing": True}
    assert row.consent_meta["email:marketing"]["column"] == "optin"


@pytest.mark.parametrize(
    ("overrides", "code", "fragment"),
    [
        ({"NUM_CARTE": "  "}, "MISSING_KEY", "key column 'NUM_CARTE' is empty"),
        ({"nom": ""}, "MISSING_REQUIRED", "'last_name'"),
        ({"naiss": "31/02/1980"}, "INVALID_DATE", "not a real date"),
        ({"points": "12,5"}, "INVALID_VALUE", "not a whole number"),
        ({"optin": "peut-être"}, "INVALID_VALUE", "neither yes nor no"),
    ],
)
def test_row_mapper_rejects_with_precise_reasons(
    overrides: dict[str, str], code: str, fragment: str
) -> None:
    mapper = RowMapper(parse_mapping(CUSTOMER_MAPPING), COLUMNS)
    with pytest.raises(RowRejected) as caught:
        mapper.map(7, _row(**overrides))
    assert caught.value.code == code
    assert fragment in caught.value.reason
    assert caught.value.reason.startswith("line 7")


def test_customer_rows_go_through_the_quality_normalizers() -> None:
    """A swapped birth date is read (not rejected), the flags travel with the row, identifiers
    come from normalized values, and the original of every changed value is kept."""
    mapping = parse_mapping(
        CUSTOMER_MAPPING
        | {
            "fields": CUSTOMER_MAPPING["fields"] | {"email": "mail", "phone_fixed": "tel"},
            "identifiers": {"email": "email", "phone": "phone_fixed"},
        }
    )
    mapper = RowMapper(mapping, [*COLUMNS, "mail", "tel"])
    row = mapper.map(
        3, _row(naiss="05/13/1971", mail=" Anne.Durand@GMIAL.com ", tel="06.12.34.56.78")
    )
    assert row.values["birth_date"] == date(1971, 5, 13)
    assert row.values["email"] == "Anne.Durand@gmail.com"
    assert row.values["phone_mobile"] == "+33612345678" and row.values["phone_fixed"] is None
    assert row.flags == ["DATE_DAY_MONTH_SWAPPED", "EMAIL_TYPO_FIXED", "PHONE_MOVED_TO_MOBILE"]
    # the identifier declared on the landline column follows the number to the mobile slot
    assert row.normalized["identifiers"] == {
        "email": "annedurand@gmail.com",  # Gmail ignores dots: the matching key drops them
        "phone": "+33612345678",
    }
    fields = row.normalized["quality"]["fields"]
    assert fields["email"]["original"] == "Anne.Durand@GMIAL.com"  # as mapped (stripped)
    assert fields["phone_mobile"]["original"] == "06.12.34.56.78"
    assert "phone_fixed" not in row.normalized


def test_mapping_naming_a_missing_column_fails_before_reading() -> None:
    with pytest.raises(MappingError, match="column 'naiss' is not in the file"):
        RowMapper(parse_mapping(CUSTOMER_MAPPING), ["num_carte", "civ", "nom", "points", "optin"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entity": "planet"}, "entity"),
        ({"required": ["email"]}, "required field 'email' is not declared"),
        (
            {
                "fields": {"x": {"column": "a", "transforms": ["shout"]}},
                "required": [],
                "identifiers": {},
            },
            "unknown transform",
        ),
        ({"lines": {"key": "n", "fields": {"sku": "sku"}}}, "'lines' only applies"),
        ({"source": {"name": "bad name!"}}, "source.name"),
    ],
)
def test_invalid_mappings_say_where(change: dict[str, object], message: str) -> None:
    with pytest.raises(MappingError, match=message):
        parse_mapping(CUSTOMER_MAPPING | change)


def test_flat_transaction_lines_key_each_row_by_transaction_and_line() -> None:
    mapping = parse_mapping(
        {
            "source": {"name": "tickets"},
            "entity": "transaction",
            "key": "ticket",
            "fields": {
                "occurred_at": {"column": "date", "type": "datetime", "formats": ["%d/%m/%Y %H:%M"]}
            },
            "customer": {"source": "loyalty", "column": "carte"},
            "lines": {
                "key": "ligne",
                "fields": {"sku": "sku", "amount": {"column": "montant", "type": "decimal"}},
            },
        }
    )
    mapper = RowMapper(mapping, ["ticket", "ligne", "date", "carte", "sku", "montant"])
    row = mapper.map(
        3,
        {
            "ticket": "T9",
            "ligne": "2",
            "date": "14/01/2026 10:00",
            "carte": "C1",
            "sku": "A",
            "montant": "3,50",
        },
    )
    assert (row.key, row.transaction_key, row.line_key, row.customer_ref) == ("T9|2", "T9", 2, "C1")
    assert row.lines == [{"sku": "A", "amount": Decimal("3.50"), "line_no": 2}]


def test_nested_lines_are_numbered_and_validated() -> None:
    mapping = parse_mapping(
        {
            "source": {"name": "orders"},
            "entity": "transaction",
            "key": "id",
            "lines": {
                "path": "lines",
                "fields": {"sku": "sku", "amount": {"column": "amount", "type": "decimal"}},
            },
        }
    )
    mapper = RowMapper(mapping, ["id", "lines"])
    row = mapper.map(
        1, {"id": "O1", "lines": [{"sku": "A", "amount": 2.5}, {"sku": "B", "amount": "1,25"}]}
    )
    assert [line["line_no"] for line in row.lines] == [1, 2]
    assert row.lines[1]["amount"] == Decimal("1.25")
    with pytest.raises(RowRejected, match="must be a list of objects"):
        mapper.map(2, {"id": "O2", "lines": "oops"})


def test_fingerprints_change_with_content_only() -> None:
    assert record_hash({"a": "1"}, {"x": 1}) == record_hash({"a": "1"}, {"x": 1})
    assert record_hash({"a": "1"}, {"x": 1}) != record_hash({"a": "2"}, {"x": 1})
    first = parse_mapping(CUSTOMER_MAPPING)
    assert mapping_fingerprint(first) == mapping_fingerprint(parse_mapping(CUSTOMER_MAPPING))
    assert mapping_fingerprint(first) != mapping_fingerprint(
        parse_mapping(CUSTOMER_MAPPING | {"required": []})
    )
