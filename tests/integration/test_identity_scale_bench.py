"""The identity-at-scale benchmark's data (bench/identity_scale.py): its generator draws what the
import would store, with the promised duplicates and hard cases, and its loader writes records
and golden customers as the import does."""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import FreshDatabase
from tournesol.db import make_engine, make_session_factory
from tournesol.quality.record import normalize_customer

BENCH = Path(__file__).resolve().parents[2] / "bench" / "identity_scale.py"


def _import_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("identity_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _import_bench()
CONTACT_FIELDS = (
    "civility", "first_name", "last_name", "maiden_name", "birth_date", "email", "phone_mobile",
    "phone_fixed", "address_complement", "address_building", "address_street", "address_special",
    "postal_code", "city", "country", "org_siret", "org_naf_code",
)  # fmt: skip


@pytest.fixture(scope="module")
def generated() -> tuple[Any, list[Any]]:
    gen = bench.Generator(5000, seed=3)
    return gen, list(gen.records())


def test_the_same_seed_draws_the_same_records(generated: tuple[Any, list[Any]]) -> None:
    _, records = generated
    again = list(bench.Generator(5000, seed=3).records())
    assert [(r.key, r.normalized) for r in again] == [(r.key, r.normalized) for r in records]
    other = list(bench.Generator(5000, seed=4).records())
    assert [r.normalized for r in other[:50]] != [r.normalized for r in records[:50]]


def test_about_30_percent_of_records_are_extra_records_of_a_person(
    generated: tuple[Any, list[Any]],
) -> None:
    gen, records = generated
    persons = {gen.truth(r.key).person_id for r in records}
    assert len(records) == 5000
    assert len(persons) == gen.base_persons
    assert 0.25 <= (len(records) - len(persons)) / len(records) <= 0.35
    assert {bench.SOURCES[r.source].name for r in records} == {
        "loyalty",
        "ecommerce",
        "contest",
        "crm",
    }


def test_every_record_has_a_last_name_and_the_keys_the_import_adds(
    generated: tuple[Any, list[Any]],
) -> None:
    _, records = generated
    for r in records:
        n = r.normalized
        assert n["last_name"] and n["last_name_key"] == n["last_name_key"].upper()
        assert n["first_name_key"]
        assert ("email_key" in n) == ("email" in n)
        assert n["quality"]["version"] and 0 <= n["quality_score"] <= 100
        assert n["identifiers"].get("email") == n.get("email_key")
    by_source = defaultdict(list)
    for r in records:
        by_source[bench.SOURCES[r.source].name].append(r.normalized)
    assert all(n["loyalty_card"] == n["identifiers"]["loyalty_card"] for n in by_source["loyalty"])
    assert all(n["account_id"] == n["identifiers"]["account_id"] for n in by_source["ecommerce"])
    assert all("org_siret" in n and "birth_date" not in n for n in by_source["crm"])


def test_records_are_what_the_quality_normalizers_make_of_them(
    generated: tuple[Any, list[Any]],
) -> None:
    """Read again by the import's normalizers, a record's contact fields come out unchanged,
    with the same score: the generator writes exactly what an import would have stored."""
    _, records = generated
    for r in records[::10]:
        n = r.normalized
        given = {k: n[k] for k in CONTACT_FIELDS if k in n}
        if bench.SOURCES[r.source].name == "contest":  # the file has the postal code alone
            given = {k: v for k, v in given.items() if k not in ("city", "country")}
        quality = normalize_customer(given)
        for name, value in quality.values.items():
            if isinstance(value, date):
                value = value.isoformat()
            if value is not None or name in n:
                assert n.get(name) == value, (r.key, name)
        assert quality.score == n["quality_score"], r.key


def test_twins_share_name_birth_date_and_address_not_first_name(
    generated: tuple[Any, list[Any]],
) -> None:
    gen, _ = generated
    twins = defaultdict(list)
    for p in gen.persons:
        if p.is_twin:
            twins[p.household].append(p)
    assert twins
    for pair in twins.values():
        a, b = pair
        assert a.last_key == b.last_key and a.birth == b.birth
        assert a.address[4].postal_code == b.address[4].postal_code
        assert a.first_key != b.first_key


def test_homonyms_share_a_group_and_a_name(generated: tuple[Any, list[Any]]) -> None:
    gen, _ = generated
    groups = defaultdict(set)
    for p in gen.persons:
        if p.homonym_group:
            groups[p.homonym_group].add((p.first_key, p.last_key))
    assert len(groups) >= 5000 // 250 // 2
    assert all(len(names) == 1 for names in groups.values())


def test_the_loader_writes_records_and_one_golden_customer_each(
    fresh_databases: FreshDatabase,
) -> None:
    gen = bench.Generator(2000, new=200, seed=5)
    engine = make_engine(fresh_databases.url("sqlite"))
    try:
        factory = make_session_factory(engine)
        stats = bench.load(factory, gen.records(), label="test", chunk_records=700)
        assert stats.records == 2000 and sum(stats.by_source.values()) == 2000
        new = bench.load(factory, gen.new_records(), label="test-new")
        assert new.records == 200
        with engine.connect() as conn:
            count = lambda sql: conn.execute(text(sql)).scalar_one()  # noqa: E731
            assert count("SELECT COUNT(*) FROM source_record") == 2200
            assert count("SELECT COUNT(*) FROM customer") == 2200
            assert count("SELECT COUNT(DISTINCT customer_id) FROM source_record") == 2200
            assert count("SELECT COUNT(*) FROM source") == 4
            assert count("SELECT COUNT(*) FROM import_batch WHERE status = 'completed'") == 8
            assert count("SELECT SUM(accepted) FROM import_batch") == 2200
            assert (
                count(
                    "SELECT COUNT(*) FROM source_record r JOIN customer c ON c.id = r.customer_id"
                    " WHERE c.last_name = json_extract(r.normalized, '$.last_name')"
                )
                == 2200
            )
            keys = [k for (k,) in conn.execute(text("SELECT source_key FROM source_record"))]
        persons = {gen.truth(key).person_id for key in keys}
        assert len(persons) == gen.base_persons + 200 - 60  # 30 % of the new ones: known persons
    finally:
        engine.dispose()
