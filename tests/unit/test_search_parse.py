"""What one search box holds (``customers.search.parse_query``), and the pure consent and
preference rules (``consent.rules``): examples, then properties over generated inputs."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.consent import rules
from tournesol.consent.rules import ConsentRuleError
from tournesol.customers.search import Query, parse_query

KINDS = {"empty", "email", "phone", "card", "postal_code", "name"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Query("empty", "")),
        ("   ", Query("empty", "")),
        (
            " Jean.Dupont@GMAIL.com ",
            Query(
                "email",
                "Jean.Dupont@GMAIL.com",
                email="Jean.Dupont@gmail.com",
                email_key="jeandupont@gmail.com",
            ),
        ),
        ("06 12 34 56 78", Query("phone", "06 12 34 56 78", phone="+33612345678")),
        (
            "+33612345678",
            Query("phone", "+33612345678", phone="+33612345678"),
        ),
        ("0033 6-12-34-56-78", Query("phone", "0033 6-12-34-56-78", phone="+33612345678")),
        (
            "0612345678",  # digits alone: a phone, and maybe a card number too
            Query("phone", "0612345678", phone="+33612345678", card="0612345678"),
        ),
        ("75011", Query("postal_code", "75011", postal_code="75011")),
        ("2990105976479", Query("card", "2990105976479", card="2990105976479")),
        ("113123", Query("card", "113123", card="113123")),
        ("LOY-00042", Query("card", "LOY-00042", card="LOY-00042")),
        ("dupont", Query("name", "dupont", words=("DUPONT",))),
        (
            "dupont 75011",
            Query("name", "dupont 75011", postal_code="75011", words=("DUPONT",)),
        ),
        (
            "Hélène  LEFÈVRE-Dupré",
            Query("name", "Hélène  LEFÈVRE-Dupré", words=("HELENE", "LEFEVRE", "DUPRE")),
        ),
        (
            "75011 jean d'arc",
            Query("name", "75011 jean d'arc", postal_code="75011", words=("JEAN", "D", "ARC")),
        ),
        ("12 34", Query("empty", "12 34")),
    ],
)
def test_examples(text: str, expected: Query) -> None:
    assert parse_query(text) == expected


@given(st.text(max_size=60))
def test_any_text_is_read_as_one_known_kind_without_error(text: str) -> None:
    query = parse_query(text)
    assert query.kind in KINDS
    assert query.text == text.strip()
    if query.kind == "name":
        assert query.words and all(w.isalpha() and w.isupper() and w.isascii() for w in query.words)
    if query.kind == "phone":
        assert query.phone is not None and query.phone.startswith("+")
    if query.kind == "postal_code":
        assert query.postal_code is not None and len(query.postal_code) == 5


# metropolitan mobile ranges (0639 is Mayotte's, 070-074 are not assigned)
mobiles = st.tuples(
    st.sampled_from(["61", "62", "64", "65", "67", "68", "75", "76", "77", "78"]),
    st.text("0123456789", min_size=7, max_size=7),
).map(lambda t: (t[0][0], t[0][1] + t[1]))
separators = st.sampled_from(["", " ", ".", "-", "/"])


@given(mobiles, separators, st.sampled_from(["0", "+33", "0033", "+33 (0)"]))
def test_a_french_mobile_reads_as_the_same_number_however_written(
    number: tuple[str, str], sep: str, prefix: str
) -> None:
    first, rest = number
    pairs = [rest[i : i + 2] for i in range(0, 8, 2)]
    written = prefix + first + sep + sep.join(pairs)
    query = parse_query(written)
    assert query.kind == "phone", written
    assert query.phone == f"+33{first}{rest}"


locals_ = st.text(string.ascii_letters + string.digits, min_size=1, max_size=12)
domains = st.sampled_from(["exemple.fr", "orange.fr", "laposte.net", "free.fr"])


@given(locals_, domains, st.booleans())
def test_an_email_in_any_case_gets_the_lower_case_key_identifiers_hold(
    local: str, domain: str, shout: bool
) -> None:
    address = f"{local}@{domain}"
    query = parse_query(address.upper() if shout else address)
    assert query.kind == "email"
    assert query.email_key == address.lower()


names_ = st.lists(
    st.text(string.ascii_letters + "éèàçÉ", min_size=2, max_size=12), min_size=1, max_size=3
)


@given(names_, st.one_of(st.none(), st.from_regex(r"\A[0-9]{5}\Z")))
def test_words_are_a_name_and_five_digits_beside_them_a_postal_code(
    words: list[str], postal: str | None
) -> None:
    text = " ".join(words + ([postal] if postal else []))
    query = parse_query(text)
    assert query.kind == "name"
    assert query.postal_code == postal
    assert len(query.words) >= len(words)


@given(st.from_regex(r"\A[0-9]{5}\Z"))
def test_five_digits_alone_are_a_postal_code(code: str) -> None:
    assert parse_query(code) == Query("postal_code", code, postal_code=code)


# --- consent and preference rules -----------------------------------------------------------


def test_days_and_hours_are_normalized_or_refused_naming_the_field() -> None:
    assert rules.parse_days(" Sun,mon , MON ") == "mon,sun"
    assert rules.parse_days("") is None and rules.parse_hours(None) is None
    assert rules.parse_hours("14:00-18:00,09:00-12:00") == "09:00-12:00,14:00-18:00"
    assert rules.parse_hours("20:00-24:00") == "20:00-24:00"
    for bad in ("lundi", "mon;tue", "mon,,tue"):
        with pytest.raises(ConsentRuleError) as error:
            rules.parse_days(bad)
        assert error.value.field == "days"
    for bad in (
        "9-12",
        "09:00",
        "12:00-09:00",
        "09:00-09:00",
        "10:00-12:00,11:00-13:00",
        "25:00-26:00",
        "08:00-09:00,10:00-11:00,12:00-13:00,14:00-15:00",
    ):
        with pytest.raises(ConsentRuleError) as error:
            rules.parse_hours(bad)
        assert error.value.field == "hours", bad


@given(st.lists(st.sampled_from(rules.DAYS), min_size=1))
def test_any_list_of_days_comes_back_in_week_order_once_each(days: list[str]) -> None:
    parsed = rules.parse_days(",".join(d.upper() for d in days))
    assert parsed is not None
    assert parsed.split(",") == [d for d in rules.DAYS if d in days]


@given(st.lists(st.integers(0, 47), min_size=2, max_size=6, unique=True))
def test_hours_built_from_disjoint_half_hours_are_accepted_and_sorted(marks: list[int]) -> None:
    ends = sorted(marks)
    spans = [(ends[i], ends[i + 1]) for i in range(0, len(ends) - 1, 2)][:3]

    def hhmm(half: int) -> str:
        return f"{half // 2:02d}:{30 * (half % 2):02d}"

    text = ",".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in reversed(spans))
    assert rules.parse_hours(text) == ",".join(f"{hhmm(a)}-{hhmm(b)}" for a, b in spans)


def test_consent_values_and_proof() -> None:
    assert rules.check_status(" Granted ") == "granted"
    assert rules.check_channel("SMS") == "sms"
    with pytest.raises(ConsentRuleError, match=r"^status: "):
        rules.check_status("yes")
    proof = rules.proof_of(
        source="web form",
        text_version="v2",
        collected_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        actor="user:1",
    )
    assert proof == {
        "kind": "manual",
        "source": "web form",
        "text_version": "v2",
        "timestamp": "2026-01-02T03:04:00+00:00",
        "actor": "user:1",
    }
    with pytest.raises(ConsentRuleError) as error:
        rules.proof_of(
            source="web", text_version="v2", collected_at=datetime(2026, 1, 2), actor="x"
        )
    assert error.value.field == "collected_at"


def test_the_current_consent_is_the_latest_collected_per_channel_purpose_and_brand() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 2, 1, tzinfo=UTC)
    rows = [
        {
            "id": 1,
            "channel": "email",
            "purpose": "marketing",
            "brand_id": None,
            "collected_at": later,
        },
        {
            "id": 2,
            "channel": "email",
            "purpose": "marketing",
            "brand_id": None,
            "collected_at": day,
        },
        {"id": 3, "channel": "email", "purpose": "marketing", "brand_id": 7, "collected_at": day},
        {"id": 4, "channel": "sms", "purpose": "marketing", "brand_id": None, "collected_at": day},
        {"id": 5, "channel": "sms", "purpose": "marketing", "brand_id": None, "collected_at": day},
    ]
    assert [r["id"] for r in rules.latest(rows)] == [1, 3, 5]


def test_a_card_typed_in_groups_is_a_card() -> None:
    for typed in ("2990 0000 0001 9", "2990-0000-0001-9", "2990.0000.0001.9"):
        query = parse_query(typed)
        assert (query.kind, query.card) == ("card", "2990000000019"), typed
    assert parse_query("06 12 34 56 78").kind == "phone"  # a phone stays a phone
    assert parse_query("dupont 75011").kind == "name"
