"""The segment compiler on SQLite and PostgreSQL: every node kind and every operator against a
small hand-built base whose answers were worked out by hand (below, next to each case), both
paths of behaviour conditions (customer features and the raw history) giving the same
customers, saved segments inlined (cycles refused), and values that try to become SQL
staying values.

The reference time is NOW = 2026-06-15 12:00 UTC (today is 2026-06-15); windows of N days
are (NOW - N days, NOW].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tournesol.consent import service as consent_service
from tournesol.consent.models import Consent, Preference
from tournesol.customers.models import (
    Brand,
    Customer,
    Identifier,
    Organisation,
    OrganisationContact,
    Zone,
)
from tournesol.ingest.models import Source
from tournesol.interactions.models import Interaction, Transaction, TransactionLine
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore
from tournesol.segments.compiler import Compiled, DefinitionError, compile_definition
from tournesol.segments.schemas import NODE_KEYS, OPS

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
INJECTION = "'; DROP TABLE customer; --"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the base ------------------------------------------------------------------------------
# Active: A B C D E F G H K L. I is merged, J erased: never in any segment.
PEOPLE: dict[str, dict[str, Any]] = {
    # F, 35 (36 tomorrow), Paris 11e, reachable by e-mail, SMS and post
    "A": dict(gender="F", birth_date=date(1990, 6, 16), postal_code="75011", country="FR",
              city="Paris", language="fr", brand="SOLEIL", zone="NORD", quality_score=80,
              email="a@exemple.fr", phone_mobile="+33600000001", address_line4="1 RUE A",
              address_line6="75011 PARIS", created_at=at("2024-01-10T15:00")),
    # M, 36 today, Lyon, no country given, a landline only
    "B": dict(gender="M", birth_date=date(1990, 6, 15), postal_code="69001", city="Lyon",
              language="fr", brand="LUNE", quality_score=60, email="b@exemple.fr",
              phone_fixed="+33400000002", created_at=at("2025-12-01T00:00")),
    # F, born on 29 February (26), Ajaccio (2A), prospect, English speaking
    "C": dict(gender="F", birth_date=date(2000, 2, 29), postal_code="20167", country="FR",
              city="Ajaccio", language="en", customer_type="prospect",
              phone_mobile="+33600000003", created_at=at("2026-06-15T09:00")),
    # M, no birth date, Saint-Barthélemy (97133: 977, no region)
    "D": dict(gender="M", postal_code="97133", country="FR", email="d@exemple.fr",
              created_at=at("2026-06-14T10:00")),
    # F, 65, Bastia (2B), works for a PME in NAF 47.11F and for a GE without NAF code
    "E": dict(gender="F", birth_date=date(1961, 1, 1), postal_code="20200", country="FR",
              brand="SOLEIL", zone="SUD", quality_score=90, email="e@exemple.fr",
              address_line5="BP 12", address_line6="20200 BASTIA",
              created_at=at("2020-05-05T08:00")),
    # no gender, 45 today, Guadeloupe (971), works for a TPE in 62.01Z
    "F": dict(birth_date=date(1981, 6, 15), postal_code="97100", country="FR",
              created_at=at("2023-03-03T08:00")),
    # F, 29 (30 tomorrow), Saint-Denis (93: Île-de-France), a street but no line 6
    "G": dict(gender="F", birth_date=date(1996, 6, 16), postal_code="93200", country="FR",
              city="Saint-Denis", email="g@exemple.fr", address_line4="2 RUE G",
              created_at=at("2022-02-02T08:00")),
    # M, 40, a German 75011 (not Paris)
    "H": dict(gender="M", birth_date=date(1986, 1, 1), postal_code="75011", country="DE",
              created_at=at("2021-01-01T08:00")),
    "I": dict(status="merged", gender="F", birth_date=date(1990, 1, 1), postal_code="75011",
              country="FR", email="i@exemple.fr", created_at=at("2020-01-01T08:00")),
    "J": dict(status="erased", gender="M", created_at=at("2020-01-01T08:00")),
    # M, 56, a 4-character postal code (no department)
    "K": dict(gender="M", birth_date=date(1970, 1, 1), postal_code="7501",
              created_at=at("2019-09-09T08:00")),
    # F, 31, no postal code, a city with LIKE wildcards in it
    "L": dict(gender="F", birth_date=date(1995, 3, 10), city="Le_Bourg%",
              created_at=at("2018-08-08T08:00")),
}  # fmt: skip
ACTIVE = frozenset("ABCDEFGHKL")

# (customer, when, kind, channel, store, brand, total, [(category, amount)])
PURCHASES: list[tuple[str, str | None, str, str, str | None, str | None, str | None, list[tuple[str, str]]]] = [
    ("A", "2026-06-01T10:00", "ticket", "store", "M01", "SOLEIL", "60.00", [("BEAUTE", "40.00"), ("MODE", "20.00")]),
    ("A", "2026-03-01T10:00", "order", "web", None, "SOLEIL", "50.00", [("MODE", "50.00")]),
    ("A", "2025-01-10T10:00", "ticket", "store", "M02", None, "30.00", [("MAISON", "30.00")]),
    ("A", "2026-06-02T10:00", "return", "store", "M01", None, "-20.00", []),
    ("B", "2025-06-16T13:00", "ticket", "store", "M01", "LUNE", "33.33", []),
    ("B", "2025-06-15T11:00", "ticket", "store", "M01", "LUNE", "33.33", []),
    ("B", "2025-06-15T12:00", "ticket", "store", "M01", "LUNE", "33.34", []),  # NOW - 365 days: outside
    ("D", "2026-06-15T11:00", "order", "web", None, None, "100.00", [("BEAUTE", "100.00")]),
    ("D", "2026-06-16T10:00", "order", "web", None, None, "999.00", []),  # after NOW: not seen
    ("D", None, "order", "web", None, None, "5.00", []),  # undated: not seen
    *(("E", f"2024-0{m}-05T10:00", "ticket", "store", "M02", "SOLEIL", "100.00", [("MODE", "100.00")]) for m in range(1, 6)),
    ("F", "2026-05-20T10:00", "ticket", "phone", None, "LUNE", "15.00", [("BEAUTE", "15.00")]),
    ("H", "2026-04-01T10:00", "order", "web", None, None, None, []),
    ("I", "2026-06-10T10:00", "ticket", "store", "M01", None, "500.00", []),
]  # fmt: skip
# Per active customer (all time / 30 / 90 / 180 / 365 days):
#   A: 3 purchases 140.00 (2025-01-10 .. 2026-06-01); 30d 1 60; 90d 1 60; 180d 2 110; 365d 2 110
#      (store 1, web 1); basket 46.67
#   B: 3 purchases 100.00 (33.33 + 33.33 + 33.34, 2025-06-15 11:00 .. 2025-06-16 13:00); 365d 1
#   D: 1 purchase 100.00 today; every window 1 100; web
#   E: 5 purchases 500.00 in 2024; no window
#   F: 1 purchase 15.00 on 2026-05-20 (channel phone); every window 1 15
#   H: 1 purchase, amount unknown (0), on 2026-04-01 (web); 90d .. 365d 1 0
#   C G K L: none

# (customer, when, channel, direction, type, campaign, brand)
INTERACTIONS: list[tuple[str, str | None, str, str, str, str | None, str | None]] = [
    ("A", "2026-06-10T10:00", "email", "outbound", "email_open", "CAMP1", "SOLEIL"),
    ("A", "2026-01-05T10:00", "phone", "inbound", "call", None, None),
    ("B", "2026-06-14T10:00", "phone", "inbound", "complaint", None, "LUNE"),
    ("B", "2025-01-01T10:00", "email", "outbound", "email_sent", "CAMP1", None),
    ("C", "2026-06-14T10:00", "web", "inbound", "page_view", None, None),
    ("D", None, "phone", "inbound", "call", None, None),
    ("E", "2026-04-01T10:00", "email", "outbound", "email_sent", "CAMP2", None),
]  # fmt: skip
# 90d: A B C E one each; 365d: A 2, B C E 1; inbound 365d: A B C; last: A 06-10, B 06-14,
# C 06-14, E 04-01; last inbound: A 01-05, B 06-14, C 06-14.

# (customer, channel, purpose, brand, status, collected_at)
CONSENTS = [
    ("A", "email", "marketing", None, "granted", "2025-01-01T10:00"),
    ("B", "email", "marketing", None, "granted", "2025-01-01T10:00"),
    ("B", "email", "marketing", None, "withdrawn", "2026-01-01T10:00"),
    ("C", "email", "marketing", "SOLEIL", "granted", "2025-05-01T10:00"),
    ("C", "sms", "marketing", None, "denied", "2025-05-01T10:00"),
    ("G", "email", "marketing", None, "granted", "2025-01-01T10:00"),
    ("G", "email", "marketing", None, "denied", "2025-01-01T10:00"),  # same instant, later row
    ("E", "email", "marketing", None, "granted", "2024-01-01T10:00"),
    ("E", "email", "partners", None, "granted", "2024-01-01T10:00"),
    ("I", "email", "marketing", None, "granted", "2024-01-01T10:00"),
]

SAVED: dict[str, dict[str, Any]] = {
    "paris_area": {"attribute": "region", "op": "eq", "value": "11"},
    "paris_women": {"all": [{"segment": "paris_area"}, {"attribute": "gender", "op": "eq", "value": "F"}]},
    "loop_a": {"any": [{"segment": "loop_b"}]},
    "loop_b": {"all": [{"attribute": "gender", "op": "eq", "value": "F"}, {"segment": "loop_a"}]},
    "itself": {"not": {"segment": "itself"}},
    "broken": {"attribute": "age", "op": "starts_with", "value": "3"},
}  # fmt: skip


@dataclass(frozen=True)
class Base:
    ids: dict[str, int]

    def names(self, ids: list[int]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id.get(i, f"?{i}") for i in ids}


def build(session: Session) -> Base:
    brands = {code: Brand(code=code, name=code.title()) for code in ("SOLEIL", "LUNE")}
    zones = {code: Zone(code=code, name=code.title()) for code in ("NORD", "SUD")}
    source = Source(name="segments-test", kind="shop")
    session.add_all([*brands.values(), *zones.values(), source])
    session.flush()
    customers: dict[str, Customer] = {}
    for key, fields in PEOPLE.items():
        values = dict(fields)
        brand, zone = values.pop("brand", None), values.pop("zone", None)
        values.setdefault("status", "active")
        customers[key] = Customer(
            last_name=f"Client {key}",
            brand_id=brands[brand].id if brand else None,
            zone_id=zones[zone].id if zone else None,
            **values,
        )
    session.add_all(customers.values())
    session.flush()
    ids = {k: c.id for k, c in customers.items()}

    for n, (who, when, kind, channel, store, brand, total, lines) in enumerate(PURCHASES):
        tx = Transaction(
            source_id=source.id, external_id=f"T{n}", customer_id=ids[who], kind=kind,
            channel=channel, store_code=store, brand_id=brands[brand].id if brand else None,
            occurred_at=at(when) if when else None,
            total_amount=Decimal(total) if total is not None else None,
        )  # fmt: skip
        session.add(tx)
        session.flush()
        for line_no, (category, amount) in enumerate(lines, start=1):
            session.add(
                TransactionLine(
                    transaction_id=tx.id, line_no=line_no, category=category, amount=Decimal(amount)
                )
            )
    for who, when, channel, direction, kind, campaign, brand in INTERACTIONS:
        session.add(
            Interaction(
                customer_id=ids[who], occurred_at=at(when) if when else None, channel=channel,
                direction=direction, type=kind, campaign_code=campaign,
                brand_id=brands[brand].id if brand else None,
            )
        )  # fmt: skip
    for who, channel, purpose, brand, status, when in CONSENTS:
        session.add(
            Consent(
                customer_id=ids[who], channel=channel, purpose=purpose, status=status,
                brand_id=brands[brand].id if brand else None, collected_at=at(when),
            )
        )  # fmt: skip
        session.flush()  # ids in this order: G's later row wins the tie
    consent_service.refresh_state(session, customers=None)
    session.add_all(
        [
            Preference(customer_id=ids["A"], channel="email", preferred=True, days="mon,sat", language="fr"),
            Preference(customer_id=ids["B"], channel="sms", preferred=False, language="en"),
            Preference(customer_id=ids["C"], channel="any", days="tue"),
            Identifier(customer_id=ids["A"], kind="email", value="a@exemple.fr"),
            Identifier(customer_id=ids["A"], kind="loyalty_card", value="C001"),
            Identifier(customer_id=ids["B"], kind="email", value="b@exemple.fr"),
            Identifier(customer_id=ids["C"], kind="phone_mobile", value="+33600000003"),
            Identifier(customer_id=ids["I"], kind="email", value="i@exemple.fr"),
        ]
    )  # fmt: skip
    orgs = [
        Organisation(siret="11111111111111", naf_code="47.11F", headcount_band="10-19", org_class="PME"),
        Organisation(siret="22222222222222", naf_code="62.01Z", headcount_band="0", org_class="TPE"),
        Organisation(siret="33333333333333", naf_code=None, headcount_band=None, org_class="GE"),
    ]  # fmt: skip
    session.add_all(orgs)
    session.flush()
    for who, org in (("E", 0), ("E", 2), ("F", 1)):
        session.add(OrganisationContact(organisation_id=orgs[org].id, customer_id=ids[who]))
    rfm = [
        ("A", "all", 5, 4, 4, "champions"),
        ("B", "all", 2, 2, 1, "hibernating"),
        ("E", "all", 1, 5, 5, "cant_lose"),
        ("E", "SOLEIL", 2, 5, 4, "at_risk"),
    ]
    for who, scope, r, f, m, name in rfm:
        session.add(
            CustomerRfm(
                customer_id=ids[who], scope=scope, computed_at=NOW, recency_days=10, frequency=f,
                monetary=Decimal(100), r_score=r, f_score=f, m_score=m, segment=name,
            )
        )  # fmt: skip
    for who, model, value in (
        ("A", "churn", 0.1),
        ("B", "churn", 0.8),
        ("E", "churn", 0.95),
        ("A", "purchase_90d", 0.7),
    ):
        session.add(CustomerScore(customer_id=ids[who], model=model, version="1", value=value, computed_at=NOW))  # fmt: skip
    session.flush()
    return Base(ids)


@pytest.fixture
def base(session: Session) -> Base:
    return build(session)


def resolve(code: str) -> Mapping[str, Any]:
    return SAVED[code]


def run(
    session: Session, definition: Mapping[str, Any], **options: Any
) -> tuple[list[int], Compiled]:
    compiled = compile_definition(definition, now=NOW, resolve=resolve, **options)
    return list(session.scalars(compiled.query)), compiled


def check(
    session: Session, base: Base, cases: list[tuple[dict[str, Any], str]], **options: Any
) -> None:
    """Every case's customers are the expected ones; all mismatches reported at once."""
    wrong = []
    for definition, expected in cases:
        ids, _ = run(session, definition, **options)
        got = base.names(ids)
        if got != set(expected) or len(ids) != len(set(ids)):
            wrong.append(
                f"{definition}: expected {sorted(expected)}, got {sorted(got)} ({len(ids)} rows)"
            )
    assert not wrong, "\n".join(wrong)


def attr(name: str, op: str, value: Any = None) -> dict[str, Any]:
    node: dict[str, Any] = {"attribute": name, "op": op}
    if value is not None:
        node["value"] = value
    return node


ATTRIBUTE_CASES: list[tuple[dict[str, Any], str]] = [
    (attr("gender", "eq", "F"), "ACEGL"),
    (attr("gender", "ne", "F"), "BDHK"),  # F has no gender: neither F nor not F
    ({"not": attr("gender", "eq", "F")}, "BDFHK"),  # not: the exact complement
    (attr("gender", "is_null"), "F"),
    (attr("gender", "is_not_null"), "ABCDEGHKL"),
    (attr("gender", "in", ["M"]), "BDHK"),
    (attr("gender", "not_in", ["M"]), "ACEGL"),
    (attr("age", "eq", 35), "A"),
    (attr("age", "eq", 36), "B"),  # born 36 years ago today
    (attr("age", "gte", 36), "BEFHK"),
    (attr("age", "gt", 45), "EK"),
    (attr("age", "lte", 29), "CG"),
    (attr("age", "lt", 30), "CG"),
    (attr("age", "between", [25, 45]), "ABCFGHL"),
    (attr("age", "in", [26, 65]), "CE"),
    (attr("age", "not_in", [35, 36]), "CEFGHKL"),
    (attr("age", "ne", 35), "BCEFGHKL"),
    (attr("age", "is_null"), "D"),
    (attr("birth_date", "lt", "1990-06-16"), "BEFHK"),
    (attr("birth_date", "between", ["1990-06-15", "1990-06-16"]), "AB"),
    (attr("birth_date", "gte", "2000-02-29"), "C"),
    (attr("postal_code", "starts_with", "75"), "AHK"),
    (attr("postal_code", "eq", "75011"), "AH"),
    (attr("department", "eq", "75"), "A"),  # H is German, K has 4 characters
    (attr("department", "in", ["2A", "2B"]), "CE"),
    (attr("department", "eq", "2A"), "C"),
    (attr("department", "eq", "977"), "D"),
    (attr("department", "eq", "971"), "F"),  # 97133 is not Guadeloupe
    (attr("department", "ne", "75"), "BCDEFG"),
    (attr("department", "not_in", ["75", "93"]), "BCDEF"),
    (attr("department", "is_null"), "HKL"),
    (attr("department", "is_not_null"), "ABCDEFG"),
    (attr("region", "eq", "11"), "AG"),
    (attr("region", "eq", "Île-de-France"), "AG"),
    (attr("region", "eq", "ILE DE FRANCE"), "AG"),
    (attr("region", "eq", "Corse"), "CE"),
    (attr("region", "in", ["01", "84"]), "BF"),
    (attr("region", "not_in", ["11"]), "BCEF"),  # D (977) has no region
    (attr("region", "is_null"), "DHKL"),
    (attr("city", "eq", "Paris"), "A"),
    (attr("city", "starts_with", "Saint-"), "G"),
    (attr("city", "starts_with", "Le_"), "L"),
    (attr("city", "eq", "Le_Bourg%"), "L"),
    (attr("country", "eq", "DE"), "H"),
    (attr("country", "is_null"), "BKL"),
    (attr("language", "eq", "en"), "C"),
    (attr("language", "in", ["fr", "en"]), "ABC"),
    (attr("brand", "eq", "SOLEIL"), "AE"),
    (attr("brand", "ne", "SOLEIL"), "B"),
    (attr("brand", "in", ["SOLEIL", "LUNE"]), "ABE"),
    (attr("brand", "not_in", ["LUNE"]), "AE"),
    (attr("brand", "eq", "NOPE"), ""),
    (attr("brand", "ne", "NOPE"), "ABE"),
    (attr("brand", "is_null"), "CDFGHKL"),
    (attr("zone", "eq", "NORD"), "A"),
    (attr("zone", "is_not_null"), "AE"),
    (attr("customer_type", "eq", "prospect"), "C"),
    (attr("customer_type", "ne", "prospect"), "ABDEFGHKL"),
    (attr("quality_score", "gte", 70), "AE"),
    (attr("quality_score", "between", [50, 85]), "AB"),
    (attr("quality_score", "is_null"), "CDFGHKL"),
    (attr("created_at", "gte", {"days_ago": 1}), "CD"),  # since 2026-06-14 00:00
    (attr("created_at", "eq", "2024-01-10"), "A"),
    (attr("created_at", "lt", "2025-12-01"), "AEFGHKL"),
    (attr("created_at", "lte", "2025-12-01"), "ABEFGHKL"),
    (attr("created_at", "gt", "2026-06-14"), "C"),
    (attr("created_at", "ne", "2026-06-15"), "ABDEFGHKL"),
    (attr("created_at", "between", [{"days_ago": 400}, {"days_ago": 1}]), "BD"),
    (attr("b2b", "eq", True), "EF"),
    (attr("b2b", "eq", False), "ABCDGHKL"),
    (attr("b2b", "ne", True), "ABCDGHKL"),
    (attr("naf_code", "starts_with", "47"), "E"),
    (attr("naf_code", "eq", "62.01Z"), "F"),
    (attr("naf_code", "ne", "47.11F"), "F"),  # E's other company has no NAF code
    (attr("naf_code", "is_null"), "ABCDGHKL"),
    (attr("naf_code", "is_not_null"), "EF"),
    (attr("org_class", "eq", "PME"), "E"),
    (attr("org_class", "in", ["TPE", "GE"]), "EF"),
    (attr("org_class", "not_in", ["PME"]), "EF"),  # E also works for a GE
    (attr("headcount_band", "eq", "10-19"), "E"),
]

CONTACT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"reachable": "email"}, "ABDEG"),
    ({"reachable": "sms"}, "AC"),
    ({"reachable": "phone"}, "ABC"),
    ({"reachable": "postal"}, "AE"),
    ({"identifier": "email"}, "AB"),
    ({"identifier": "loyalty_card"}, "A"),
    ({"identifier": "phone_mobile"}, "C"),
    ({"identifier": "account_id"}, ""),
    ({"consent": {"channel": "email"}}, "AE"),
    (
        {
            "consent": {
                "channel": "email",
                "purpose": "marketing",
                "brand": None,
                "status": "granted",
            }
        },
        "AE",
    ),
    ({"consent": {"channel": "email", "status": "withdrawn"}}, "B"),
    ({"consent": {"channel": "email", "status": "denied"}}, "G"),  # the later row of a tie
    ({"consent": {"channel": "email", "brand": "SOLEIL"}}, "C"),
    ({"consent": {"channel": "sms", "status": "denied"}}, "C"),
    ({"consent": {"channel": "email", "purpose": "partners"}}, "E"),
    ({"not": {"consent": {"channel": "email"}}}, "BCDFGHKL"),
    ({"preference": {"channel": "email", "preferred": True}}, "A"),
    ({"preference": {"channel": "sms", "preferred": False}}, "ABCDEFGHKL"),
    ({"preference": {"language": "en"}}, "B"),
    ({"preference": {"language": "fr", "channel": "email"}}, "A"),
    ({"preference": {"day": "sat"}}, "A"),
    ({"preference": {"day": "tue"}}, "C"),
    ({"preference": {"day": "tue", "channel": "email"}}, ""),
    ({"rfm": {"segment": ["champions"]}}, "A"),
    ({"rfm": {"scope": "all", "segment": ["cant_lose", "at_risk"]}}, "E"),
    ({"rfm": {"scope": "SOLEIL", "segment": ["at_risk"]}}, "E"),
    ({"rfm": {"scope": "LUNE", "segment": ["hibernating"]}}, ""),
    ({"rfm": {"r": [1, 2]}}, "BE"),
    ({"rfm": {"r": [1, 2], "f": [5]}}, "E"),
    ({"rfm": {"m": [4, 5]}}, "AE"),
    ({"score": {"model": "churn", "op": "gte", "value": 0.8}}, "BE"),
    ({"score": {"model": "churn", "op": "lt", "value": 0.5}}, "A"),
    ({"score": {"model": "churn", "op": "ne", "value": 0.8}}, "AE"),
    ({"score": {"model": "churn", "op": "is_null"}}, "CDFGHKL"),
    ({"score": {"model": "churn", "op": "is_not_null"}}, "ABE"),
    ({"score": {"model": "purchase_90d", "op": "between", "value": [0.5, 1]}}, "A"),
    ({"score": {"model": "churn", "op": "lte", "value": 0.8}}, "AB"),
    ({"score": {"model": "churn", "op": "gt", "value": 0.8}}, "E"),
    ({"score": {"model": "churn", "op": "eq", "value": 0.95}}, "E"),
    ({"segment": "paris_area"}, "AG"),
    ({"segment": "paris_women"}, "AG"),
    ({"all": [{"segment": "paris_women"}, attr("age", "lt", 30)]}, "G"),
    ({"not": {"segment": "paris_women"}}, "BCDEFHKL"),
]


def purchases(measure: str, op: str, value: Any = None, **more: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"of": "purchases", "measure": measure, "op": op, **more}
    if value is not None:
        spec["value"] = value
    return {"behaviour": spec}


def interactions(measure: str, op: str, value: Any = None, **more: Any) -> dict[str, Any]:
    node = purchases(measure, op, value, **more)
    node["behaviour"]["of"] = "interactions"
    return node


def days(n: int) -> dict[str, int]:
    return {"last_days": n}


# (definition, expected customers, whether customer_feature answers it)
BEHAVIOUR_CASES: list[tuple[dict[str, Any], str, bool]] = [
    (purchases("count", "gte", 2, window=days(180)), "A", True),
    (purchases("count", "gte", 1, window=days(30)), "ADF", True),
    (purchases("count", "eq", 1, window=days(90)), "ADFH", True),
    (purchases("count", "gte", 1, window=days(365)), "ABDFH", True),  # B: only 2025-06-16
    (purchases("amount", "gte", 100, window=days(180)), "AD", True),
    (purchases("amount", "lt", 20, window=days(90)), "BCEFGHKL", True),
    (purchases("count", "eq", 0), "CGKL", True),
    (purchases("count", "lt", 2), "CDFGHKL", True),
    (purchases("count", "in", [0, 1]), "CDFGHKL", True),
    (purchases("count", "not_in", [0]), "ABDEFH", True),
    (purchases("count", "ne", 1), "ABCEGKL", True),
    (purchases("count", "between", [1, 3]), "ABDFH", True),
    (purchases("count", "gt", 3), "E", True),
    (purchases("count", "lte", 0), "CGKL", True),
    (purchases("count", "gte", 0), "ABCDEFGHKL", True),
    (purchases("amount", "eq", 100), "BD", True),  # 33.33 + 33.33 + 33.34
    (purchases("amount", "lt", 50), "CFGHKL", True),
    (purchases("amount", "between", [100, 140]), "ABD", True),
    (purchases("amount", "ne", 0), "ABDEF", True),
    (purchases("amount", "gt", 140), "E", True),
    (purchases("amount", "lte", 15), "CFGHKL", True),
    (purchases("average_basket", "gte", 40), "ADE", True),  # A: 140 / 3
    (purchases("average_basket", "lt", 20), "FH", True),
    (purchases("average_basket", "between", [33, 34]), "B", True),
    (purchases("average_basket", "eq", 100), "DE", True),
    (purchases("average_basket", "ne", 100), "ABFH", True),
    (purchases("average_basket", "gt", 46.66), "ADE", True),
    (purchases("average_basket", "lte", 33.34), "BFH", True),
    (purchases("average_basket", "is_null"), "CGKL", True),
    (purchases("average_basket", "is_not_null"), "ABDEFH", True),
    (purchases("average_basket", "gte", 50, window=days(180)), "AD", True),  # A: 110 / 2
    (purchases("first_date", "lt", "2025-01-01"), "E", True),
    (purchases("first_date", "gte", "2026-01-01"), "DFH", True),
    (purchases("first_date", "eq", "2025-01-10"), "A", True),
    (purchases("first_date", "between", ["2025-06-15", "2026-04-01"]), "BH", True),
    (purchases("first_date", "gt", "2026-05-20"), "D", True),
    (purchases("first_date", "ne", "2025-01-10"), "BDEFH", True),
    (purchases("last_date", "gte", {"days_ago": 30}), "ADF", True),
    (purchases("last_date", "lt", {"days_ago": 365}), "E", True),
    (purchases("last_date", "is_null"), "CGKL", True),
    (purchases("last_date", "is_not_null"), "ABDEFH", True),
    (purchases("last_date", "between", ["2025-06-16", "2026-04-01"]), "BH", True),
    (purchases("last_date", "ne", "2026-06-01"), "BDEFH", True),
    (purchases("last_date", "eq", "2026-06-15"), "D", True),
    (purchases("last_date", "lte", "2025-06-16"), "BE", True),
    (purchases("last_date", "gt", "2026-06-01"), "D", True),
    (purchases("last_date", "gte", "2026-01-01", window=days(180)), "ADFH", False),
    (purchases("count", "gte", 1, window={"from": "2025-06-15", "to": "2025-06-15"}), "B", False),
    (
        purchases("amount", "eq", 66.67, window={"from": "2025-06-15", "to": "2025-06-15"}),
        "B",
        False,
    ),
    (purchases("count", "gte", 1, window={"from": "2026-06-01"}), "AD", False),
    (purchases("count", "gte", 1, window={"to": "2024-12-31"}), "E", False),
    # D's order of 06-16 is after NOW: not seen even inside the window
    (purchases("amount", "eq", 100, window={"from": "2026-06-15", "to": "2026-06-30"}), "D", False),
    (purchases("count", "gte", 1, window=days(45)), "ADF", False),
    (purchases("count", "gte", 1, window=days(365), where={"channel": ["web"]}), "ADH", True),
    (purchases("count", "gte", 1, window=days(365), where={"channel": ["store"]}), "AB", True),
    (purchases("count", "eq", 0, window=days(365), where={"channel": ["store"]}), "CDEFGHKL", True),
    (purchases("count", "gte", 1, where={"channel": ["store"]}), "ABE", False),
    (purchases("count", "gte", 1, where={"store": ["M01"]}), "AB", False),
    (purchases("count", "gte", 1, where={"category": ["BEAUTE"]}), "ADF", False),
    (purchases("amount", "gte", 40, where={"category": ["BEAUTE"]}), "AD", False),
    (purchases("amount", "eq", 70, where={"category": ["MODE"]}), "A", False),
    (purchases("average_basket", "eq", 35, where={"category": ["MODE"]}), "A", False),  # 70 / 2
    (purchases("count", "eq", 2, where={"category": ["BEAUTE", "MODE"]}), "A", False),  # t1 once
    (purchases("count", "gte", 2, where={"brand": ["LUNE"]}), "B", False),
    (purchases("count", "gte", 1, where={"type": ["order"]}), "ADH", False),
    (purchases("last_date", "gte", "2026-01-01", where={"channel": ["web"]}), "ADH", False),
    (interactions("count", "gte", 2, window=days(365)), "A", True),
    (interactions("count", "gte", 1, window=days(90)), "ABCE", True),
    (interactions("count", "eq", 0, window=days(90)), "DFGHKL", True),
    (
        interactions("count", "gte", 1, window=days(365), where={"direction": "inbound"}),
        "ABC",
        True,
    ),
    (interactions("last_date", "gte", {"days_ago": 7}), "ABC", True),
    (interactions("last_date", "is_null"), "DFGHKL", True),
    (interactions("last_date", "lt", "2026-02-01", where={"direction": "inbound"}), "A", True),
    (interactions("count", "gte", 1), "ABCE", False),  # D's call is undated
    (interactions("count", "gte", 1, where={"campaign": ["CAMP1"]}), "AB", False),
    (interactions("count", "gte", 1, window=days(30), where={"type": ["complaint"]}), "B", False),
    (interactions("count", "eq", 0, where={"channel": ["email"]}), "CDFGHKL", False),
    (interactions("count", "gte", 1, where={"brand": ["SOLEIL"]}), "A", False),
    (
        interactions("count", "gte", 1, where={"direction": "outbound"}, window=days(90)),
        "AE",
        False,
    ),
    (interactions("first_date", "lt", "2026-01-01"), "B", False),
    (interactions("first_date", "gte", "2026-06-14"), "C", False),
    (interactions("last_date", "gte", "2026-06-01", window=days(90)), "ABC", False),
]

COMBINED_CASES: list[tuple[dict[str, Any], str]] = [
    ({"all": []}, "ABCDEFGHKL"),
    # women 25-45 in Île-de-France opted in to e-mail, >= 2 purchases and >= 100 EUR in 180 days
    (
        {
            "all": [
                attr("gender", "eq", "F"),
                attr("age", "between", [25, 45]),
                attr("region", "eq", "Île-de-France"),
                {"consent": {"channel": "email", "purpose": "marketing", "status": "granted"}},
                purchases("count", "gte", 2, window=days(180)),
                purchases("amount", "gte", 100, window=days(180)),
            ]
        },
        "A",
    ),
    # win-back: no purchase for a year, at least three before
    ({"all": [purchases("count", "eq", 0, window=days(365)), purchases("count", "gte", 3)]}, "E"),
    # lapsed champions: spent a lot, nothing for a year
    (
        {"all": [purchases("amount", "gte", 300), purchases("last_date", "lt", {"days_ago": 365})]},
        "E",
    ),
    # B2B: PME in NAF division 47
    ({"all": [attr("b2b", "eq", True), attr("org_class", "eq", "PME"), attr("naf_code", "starts_with", "47")]}, "E"),
    ({"any": [attr("department", "eq", "2A"), {"not": {"reachable": "email"}}]}, "CFHKL"),
    ({"not": {"any": [attr("gender", "eq", "F"), attr("age", "gte", 40)]}}, "BD"),
    ({"not": {"not": attr("gender", "eq", "M")}}, "BDHK"),
    ({"any": [purchases("count", "gte", 1, window=days(30)), {"consent": {"channel": "email"}}]}, "ADEF"),
    ({"not": purchases("last_date", "gte", {"days_ago": 30})}, "BCEGHKL"),
    ({"not": purchases("average_basket", "gte", 40)}, "BCFGHKL"),
]  # fmt: skip


def test_attributes_on_the_golden_record(session: Session, base: Base) -> None:
    check(session, base, ATTRIBUTE_CASES)


def test_reachability_identifiers_consents_preferences_rfm_scores_and_saved_segments(
    session: Session, base: Base
) -> None:
    check(session, base, CONTACT_CASES)


def test_behaviour_on_the_raw_history(session: Session, base: Base) -> None:
    cases = [(d, expected) for d, expected, _ in BEHAVIOUR_CASES]
    check(session, base, cases)
    for definition, _ in cases:
        assert run(session, definition)[1].path == "raw"


def test_behaviour_on_features_gives_the_same_customers_as_the_raw_history(
    session: Session, base: Base
) -> None:
    from tournesol.scoring.features import refresh

    refresh(session, now=NOW)
    session.flush()
    check(session, base, [(d, e) for d, e, _ in BEHAVIOUR_CASES], features_as_of=NOW)
    check(
        session, base, [(d, e) for d, e, _ in BEHAVIOUR_CASES], features_as_of=NOW, prefer_raw=True
    )
    for definition, _, featured in BEHAVIOUR_CASES:
        compiled = run(session, definition, features_as_of=NOW)[1]
        assert compiled.path == ("features" if featured else "raw"), definition
        if featured:
            assert compiled.notes == ("features as of 2026-06-15 12:00 UTC",)
        else:
            assert compiled.notes and "raw history for $.behaviour" in compiled.notes[0]
        assert run(session, definition, features_as_of=NOW, prefer_raw=True)[1].path == "raw"
    check(session, base, COMBINED_CASES, features_as_of=NOW)


def test_a_customer_without_a_feature_row_has_no_history_on_the_features_path(
    session: Session, base: Base
) -> None:
    from tournesol.scoring.features import refresh

    refresh(session, now=NOW)
    session.execute(delete(CustomerFeature).where(CustomerFeature.customer_id == base.ids["A"]))
    zero = purchases("count", "eq", 0)
    assert "A" in base.names(run(session, zero, features_as_of=NOW)[0])
    assert "A" not in base.names(run(session, zero)[0])  # the raw history has A's purchases
    assert "A" in base.names(run(session, purchases("last_date", "is_null"), features_as_of=NOW)[0])


def test_mixed_paths_and_features_read_as_of_their_computation(
    session: Session, base: Base
) -> None:
    from tournesol.scoring.features import refresh

    earlier = datetime(2026, 5, 31, 12, 0, tzinfo=UTC)
    refresh(session, now=earlier)  # before A's 2026-06-01 purchase and D's of today
    definition = {
        "all": [
            purchases("count", "gte", 1, window=days(30)),
            purchases("count", "gte", 1, window=days(45)),
        ]
    }
    ids, compiled = run(session, definition, features_as_of=earlier)
    assert compiled.path == "mixed"
    assert compiled.notes[0].startswith("features as of 2026-05-31 12:00 UTC (15 days before now")
    # features (as of 05-31): F only in its 30 days; history (to NOW): A D F in 45 days
    assert base.names(ids) == {"F"}
    # last purchase before 20 days ago: before 05-11 on features, before 05-26 on the history
    lapsed = purchases("last_date", "lt", {"days_ago": 20})
    assert base.names(run(session, lapsed, features_as_of=earlier)[0]) == {"A", "B", "E", "H"}
    assert base.names(run(session, lapsed)[0]) == {"B", "E", "F", "H"}


def test_combined_definitions(session: Session, base: Base) -> None:
    check(session, base, COMBINED_CASES)


def test_a_wide_definition_stays_within_the_databases_limits(session: Session, base: Base) -> None:
    every_age = {"any": [attr("age", "eq", n) for n in range(150)]}
    ages_in = attr("age", "in", list(range(151)))
    many = {
        "all": [{"not": every_age}, *({"not": attr("city", "eq", f"X{n}")} for n in range(150))]
    }
    check(session, base, [(every_age, "ABCEFGHKL"), (ages_in, "ABCEFGHKL"), (many, "D")])


def test_every_node_kind_and_operator_is_exercised() -> None:
    kinds: set[str] = set()
    ops: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            kinds.update(k for k in node if k in NODE_KEYS)
            if isinstance(node.get("op"), str):
                ops.add(node["op"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for definition, *_ in [*ATTRIBUTE_CASES, *CONTACT_CASES, *BEHAVIOUR_CASES, *COMBINED_CASES]:
        walk(definition)
    assert kinds == set(NODE_KEYS)
    assert ops == set(OPS)


# --- values stay values ----------------------------------------------------------------------

INJECTIONS: list[tuple[dict[str, Any], str]] = [
    (attr("city", "eq", INJECTION), ""),
    (attr("city", "in", [INJECTION, "Paris"]), "A"),
    (attr("city", "starts_with", INJECTION), ""),
    (attr("postal_code", "starts_with", "%"), ""),
    (attr("postal_code", "starts_with", "_"), ""),
    (attr("city", "starts_with", "L_"), ""),  # no LIKE: _ is an underscore
    (attr("city", "starts_with", "Le%"), ""),  # and % a percent sign
    (attr("city", "starts_with", "Le_Bourg%"), "L"),
    (attr("city", "starts_with", "%"), ""),
    (attr("language", "eq", "fr' OR '1'='1"), ""),
    (attr("brand", "eq", INJECTION), ""),
    (attr("brand", "ne", INJECTION), "ABE"),
    (attr("naf_code", "starts_with", "4%"), ""),
    (purchases("count", "gte", 1, where={"store": [INJECTION]}), ""),
    (purchases("count", "gte", 1, where={"category": ["%"]}), ""),
    (interactions("count", "gte", 1, where={"campaign": [INJECTION], "type": ["%"]}), ""),
]


def test_values_that_look_like_sql_or_wildcards_are_inert(session: Session, base: Base) -> None:
    check(session, base, INJECTIONS)
    assert session.scalar(select(func.count()).select_from(Customer)) == len(PEOPLE)


def literal_values(sql: str) -> list[str]:
    """Quoted strings and bare numbers in SQL text (bound parameters are :names)."""
    return re.findall(r"'[^']*'|(?<![\w:])\d+(?:\.\d+)?(?![\w])", sql)


@pytest.mark.parametrize(
    "definition",
    [d for d, _ in INJECTIONS]
    + [d for d, *_ in COMBINED_CASES]
    + [d for d, *_ in BEHAVIOUR_CASES[::5]]
    + [d for d, _ in ATTRIBUTE_CASES[::4]]
    + [d for d, _ in CONTACT_CASES[::3]],
)
def test_the_compiled_statement_is_one_select_with_every_value_bound(
    definition: dict[str, Any],
) -> None:
    for features_as_of in (None, NOW):
        compiled = compile_definition(
            definition, now=NOW, resolve=resolve, features_as_of=features_as_of
        )
        sql = str(compiled.query)
        assert sql.startswith("SELECT customer.id \nFROM customer")
        assert literal_values(sql) == [], sql
        assert INJECTION not in sql and "DROP" not in sql


def test_saved_segment_cycles_and_unknown_codes_are_definition_errors() -> None:
    with pytest.raises(DefinitionError) as cycle:
        compile_definition(
            {"all": [attr("age", "gte", 18), {"segment": "loop_a"}]}, now=NOW, resolve=resolve
        )
    assert cycle.value.path == "$.all[1].segment"
    assert "loop_a -> loop_b -> loop_a" in cycle.value.message
    with pytest.raises(DefinitionError) as itself:
        compile_definition({"segment": "itself"}, now=NOW, resolve=resolve)
    assert itself.value.path == "$.segment" and "itself -> itself" in itself.value.message
    with pytest.raises(DefinitionError) as unknown:
        compile_definition({"not": {"segment": "nope"}}, now=NOW, resolve=resolve)
    assert (unknown.value.path, unknown.value.message) == (
        "$.not.segment",
        "no saved segment has the code 'nope'",
    )
    with pytest.raises(DefinitionError) as broken:
        compile_definition({"any": [{"segment": "broken"}]}, now=NOW, resolve=resolve)
    assert broken.value.path == "$.any[0].segment"
    assert "in segment 'broken', $.op: starts_with does not apply to age" in broken.value.message
    with pytest.raises(DefinitionError) as unavailable:
        compile_definition({"segment": "paris_area"}, now=NOW)
    assert unavailable.value.path == "$.segment"


def test_the_statement_nests_in_a_callers_query(session: Session, base: Base) -> None:
    """The service counts, previews and profiles around the statement: it must keep its own
    FROM customer inside IN, a subquery or a join."""
    compiled = compile_definition(
        {"all": [attr("gender", "eq", "F"), purchases("count", "gte", 1)]},
        now=NOW,
        features_as_of=None,
    )
    inside = (
        select(Customer.last_name)
        .where(Customer.id.in_(compiled.query))
        .order_by(Customer.last_name)
    )
    assert list(session.scalars(inside)) == ["Client A", "Client E"]
    sub = compiled.query.subquery()
    assert session.scalar(select(func.count()).select_from(sub)) == 2
