"""The demo dataset generator: formats, ground truth, planted rejects, behaviour. No database."""

from __future__ import annotations

import csv
import io
import json
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
from faker import Faker
from openpyxl import load_workbook

from tournesol.demo.generator import DemoFile, DemoManifest, generate
from tournesol.demo.people import build_population, fold, luhn_ok
from tournesol.ingest.readers import open_reader
from tournesol.ingest.rules import RowMapper, RowRejected
from tournesol.ingest.schemas import EntityKind, Mapping, load_mapping

PERSONS = 300
TODAY = date(2026, 11, 1)
CSV_SOURCES = ("products", "loyalty", "b2b", "callcenter", "tickets")
LOYALTY_CIVILITIES = {"M", "MR", "Monsieur", "MME", "Madame", "MLLE", ""}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("demo"), seed=7, persons=PERSONS, today=TODAY)


@pytest.fixture(scope="module")
def truth(manifest: DemoManifest) -> list[dict[str, str]]:
    with manifest.truth_path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _truth_of(truth: list[dict[str, str]], source: str) -> list[dict[str, str]]:
    return [row for row in truth if row["source"] == source]


def _mapping(item: DemoFile) -> Mapping:
    return load_mapping(item.mapping)


def _text(item: DemoFile) -> str:
    encoding = _mapping(item).format.encoding
    return item.path.read_bytes().decode("utf-8-sig" if encoding == "utf-8" else encoding)


def _csv_lines(item: DemoFile) -> list[list[str]]:
    """Each physical line parsed on its own (no value holds a line break)."""
    delimiter = _mapping(item).format.delimiter
    return [next(csv.reader([line], delimiter=delimiter)) for line in _text(item).splitlines()]


def _records(item: DemoFile) -> Iterator[dict[str, object]]:
    """The accepted-looking records of any file, as column -> value."""
    if item.path.suffix == ".csv":
        lines = _csv_lines(item)
        for fields in lines[1:]:
            if len(fields) == len(lines[0]) and fields != lines[0]:
                yield dict(zip(lines[0], fields, strict=True))
    elif item.path.suffix == ".jsonl":
        for line in item.path.read_text(encoding="utf-8").splitlines():
            yield json.loads(line)
    elif item.path.suffix == ".json":
        yield from json.loads(item.path.read_text(encoding="utf-8"))["orders"]
    else:
        sheet = load_workbook(item.path, read_only=True)[_mapping(item).format.sheet or ""]
        rows = list(sheet.iter_rows(values_only=True))
        for values in rows[1:]:
            yield dict(zip(rows[0], values, strict=False))


# --- determinism and shape ----------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(manifest: DemoManifest, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", seed=7, persons=PERSONS, today=TODAY)
    first_dir, second_dir = manifest.truth_path.parent, again.truth_path.parent
    names = sorted(p.relative_to(first_dir) for p in first_dir.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second_dir) for p in second_dir.rglob("*") if p.is_file())
    for name in names:
        assert (first_dir / name).read_bytes() == (second_dir / name).read_bytes(), name
    other = generate(tmp_path / "other", seed=8, persons=PERSONS, today=TODAY)
    assert other.truth_path.read_bytes() != manifest.truth_path.read_bytes()


def test_manifest_lists_every_source_in_import_order(manifest: DemoManifest) -> None:
    sources = [f.source for f in manifest.files]
    assert sources == [
        "products",
        "loyalty",
        "ecommerce",
        "contest",
        "b2b",
        "callcenter",
        "tickets",
        "orders",
        "web_events",
    ]
    for item in manifest.files:
        assert item.path.is_file() and item.mapping.is_file() and item.rows > 0
        assert item.mapping.parent == manifest.truth_path.parent / "mappings"
        assert item.description
    assert manifest.persons_path.is_file()


def test_every_mapping_loads_and_matches_its_file(manifest: DemoManifest) -> None:
    package = Path(__file__).parents[2] / "src" / "tournesol" / "demo" / "mappings"
    assert {p.stem for p in package.glob("*.yaml")} == {f.source for f in manifest.files}
    for item in manifest.files:
        mapping = _mapping(item)
        assert mapping.source.name == item.source
        assert mapping.entity.value == item.entity
        assert item.mapping.read_bytes() == (package / item.mapping.name).read_bytes()
        first = next(_records(item))
        columns = {c.lower() for c in first}
        used = [spec.column for spec in mapping.field_specs().values() if spec.column]
        used += list(mapping.key_columns) + [c.column for c in mapping.consents]
        if mapping.customer is not None:
            used.append(mapping.customer.column)
        if mapping.lines is not None and mapping.lines.key:
            used += [mapping.lines.key, *(s.column or "" for s in mapping.line_specs().values())]
        assert {c.lower() for c in used} <= columns, item.source
        if mapping.entity in (EntityKind.transaction, EntityKind.interaction):
            assert mapping.customer is not None
    brands = {f.source: _mapping(f).source.brand for f in manifest.files}
    assert brands["b2b"] == "TOURNESOL PRO" and brands["loyalty"] == "SOLEIL"


def test_files_are_in_their_declared_encoding_and_separator(manifest: DemoManifest) -> None:
    for source in CSV_SOURCES:
        item = manifest.file(source)
        fmt = _mapping(item).format
        raw = item.path.read_bytes()
        text = raw.decode(fmt.encoding)  # strict: raises if the bytes are not in that encoding
        header = text.splitlines()[0].lstrip("\ufeff").split(fmt.delimiter)
        assert len(header) >= 5, source
        if fmt.encoding == "cp1252":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")  # accented letters really are single cp1252 bytes
            assert "\r\n" in text and "," in text.splitlines()[5]  # decimal comma
    assert manifest.file("callcenter").path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert not manifest.file("b2b").path.read_bytes().startswith(b"\xef\xbb\xbf")
    for source in ("ecommerce", "web_events"):
        for line in manifest.file(source).path.read_text(encoding="utf-8").splitlines():
            assert isinstance(json.loads(line), dict)
    orders = json.loads(manifest.file("orders").path.read_text(encoding="utf-8"))
    assert all(isinstance(o["lines"], list) and o["lines"] for o in orders["orders"])
    contest = load_workbook(manifest.file("contest").path, read_only=True)
    assert contest.sheetnames == ["Participations"]
    birth_cells = [r["date_naissance"] for r in _records(manifest.file("contest"))]
    assert any(isinstance(v, datetime) for v in birth_cells)  # real date cells, not text


# --- ground truth -------------------------------------------------------------------------------


def _data_rows(item: DemoFile) -> int:
    if item.path.suffix == ".csv":
        return len(_text(item).splitlines()) - 1
    if item.path.suffix == ".jsonl":
        return len(item.path.read_text(encoding="utf-8").splitlines())
    if item.path.suffix == ".json":
        return len(json.loads(item.path.read_text(encoding="utf-8"))["orders"])
    return sum(1 for _ in _records(item))


def test_truth_covers_every_data_row(manifest: DemoManifest, truth: list[dict[str, str]]) -> None:
    first_line = {".csv": 2, ".xlsx": 2, ".jsonl": 1, ".json": 1}
    for item in manifest.files:
        rows = _truth_of(truth, item.source)
        count = _data_rows(item)
        assert len(rows) == count == item.rows, item.source
        start = first_line[item.path.suffix]
        assert [int(r["line_no"]) for r in rows] == list(range(start, start + count))
        keys = [r["source_key"] for r in rows if r["expected"] == "accept"]
        assert len(keys) == len(set(keys)) and all(keys), item.source
        if item.source != "products":
            named = [r for r in rows if r["reject_reason_code"] != "REPEATED_HEADER"]
            anonymous = [r for r in named if not r["person_id"]]
            assert len(anonymous) <= (len(named) // 10 if item.source == "tickets" else 0)


def test_truth_keys_are_the_files_keys(manifest: DemoManifest, truth: list[dict[str, str]]) -> None:
    for item in manifest.files:
        mapping = _mapping(item)
        keys = []
        for record in _records(item):
            key = "|".join(str(record[c]) for c in mapping.key_columns)
            if mapping.lines is not None and mapping.lines.key:
                key += f"|{record[mapping.lines.key]}"
            keys.append(key)
        rows = _truth_of(truth, item.source)
        rejected = {r["source_key"] for r in rows if r["expected"] == "reject"}
        accepted = [r["source_key"] for r in rows if r["expected"] == "accept"]
        assert sorted(k for k in keys if k not in rejected) == sorted(accepted), item.source


def test_planted_rejects_are_where_the_truth_says(
    manifest: DemoManifest, truth: list[dict[str, str]]
) -> None:
    planted = Counter(
        (r["source"], r["reject_reason_code"]) for r in truth if r["reject_reason_code"]
    )
    assert planted == {
        ("loyalty", "REPEATED_HEADER"): 1,
        ("loyalty", "COLUMN_COUNT"): 1,
        ("loyalty", "INVALID_DATE"): 1,
        ("ecommerce", "INVALID_DATE"): 1,
        ("callcenter", "COLUMN_COUNT"): 1,
        ("tickets", "COLUMN_COUNT"): 1,
        ("b2b", "COLUMN_COUNT"): 1,
    }
    assert all(r["expected"] == ("reject" if r["reject_reason_code"] else "accept") for r in truth)
    for source in CSV_SOURCES:
        item = manifest.file(source)
        lines = _csv_lines(item)
        header = lines[0]
        codes = {int(r["line_no"]): r["reject_reason_code"] for r in _truth_of(truth, source)}
        for line_no, fields in enumerate(lines[1:], start=2):
            code = codes[line_no]
            if code == "REPEATED_HEADER":
                assert fields == header
            elif code == "COLUMN_COUNT":
                assert len(fields) != len(header), (source, line_no)
            else:
                assert len(fields) == len(header) and fields != header, (source, line_no)
    loyalty = _csv_lines(manifest.file("loyalty"))
    column = loyalty[0].index("date_naissance")
    for r in _truth_of(truth, "loyalty"):
        value = (
            loyalty[int(r["line_no"]) - 1][column]
            if r["reject_reason_code"] != "COLUMN_COUNT"
            else ""
        )
        if r["reject_reason_code"] == "INVALID_DATE":
            with pytest.raises(ValueError, match=r"out of range|must be in"):
                datetime.strptime(value, "%d/%m/%Y")
        elif value and r["reject_reason_code"] == "":
            datetime.strptime(value, "%d/%m/%Y")  # every other birth date is a real date
    accounts = list(_records(manifest.file("ecommerce")))
    codes = {r["source_key"]: r["reject_reason_code"] for r in _truth_of(truth, "ecommerce")}
    for account in accounts:
        born = account["birth_date"]
        if codes[str(account["account_id"])] == "INVALID_DATE":
            with pytest.raises(ValueError):
                date.fromisoformat(str(born))
        elif born is not None:
            date.fromisoformat(str(born))


def test_reader_and_mapper_reject_exactly_the_planted_rows(
    manifest: DemoManifest, truth: list[dict[str, str]]
) -> None:
    """What the importer does before the database: read each file with its mapping's format,
    map each row; the rejects must be the truth's, line for line and code for code."""
    for item in manifest.files:
        mapping = _mapping(item)
        rejected: dict[int, str] = {}
        with open_reader(item.path, mapping.format) as reader:
            mapper = RowMapper(mapping, reader.info.columns)
            for raw in reader:
                if raw.error is not None or raw.values is None:
                    rejected[raw.line_no] = raw.error[0] if raw.error else "UNREADABLE"
                    continue
                # as the importer does: native values (Excel dates) are mapped in JSON form
                values = {
                    k: v.isoformat() if isinstance(v, date) else v for k, v in raw.values.items()
                }
                try:
                    mapper.map(raw.line_no, values)
                except RowRejected as exc:
                    rejected[raw.line_no] = exc.code
        planted = {
            int(r["line_no"]): r["reject_reason_code"]
            for r in _truth_of(truth, item.source)
            if r["expected"] == "reject"
        }
        assert rejected == planted, item.source


def test_no_hidden_reject_causes(manifest: DemoManifest) -> None:
    """Values the importer checks (dates, amounts, consents, required fields) are valid outside
    the planted rows."""
    loyalty = list(_records(manifest.file("loyalty")))
    assert {r["optin_email"] for r in loyalty} <= {"O", "N", ""}
    assert {r["optin_sms"] for r in loyalty} <= {"O", "N", ""}
    assert all(r["nom"].strip() for r in loyalty)
    for r in _records(manifest.file("tickets")):
        datetime.strptime(str(r["date_heure"]), "%d/%m/%Y %H:%M")
        unit, qty = float(str(r["prix_unitaire"]).replace(",", ".")), int(str(r["qte"]))
        discount = float(str(r["remise"]).replace(",", "."))
        assert float(str(r["montant"]).replace(",", ".")) == pytest.approx(unit * qty - discount)
    for r in _records(manifest.file("callcenter")):
        datetime.strptime(str(r["date_appel"]), "%d/%m/%Y %H:%M")
        assert r["sens"] in ("ENTRANT", "SORTANT") and r["canal"] == "TEL"
    for r in _records(manifest.file("contest")):
        assert r["email"] and r["optin_email"] in ("Oui", "Non")
    for r in _records(manifest.file("ecommerce")):
        assert r["email"] and isinstance(r["newsletter"], bool)


# --- population ---------------------------------------------------------------------------------


def test_households_twins_and_homonyms_exist(
    manifest: DemoManifest, truth: list[dict[str, str]]
) -> None:
    with manifest.persons_path.open(encoding="utf-8") as fh:
        persons = list(csv.DictReader(fh))
    assert len(persons) == PERSONS
    households = Counter(p["household_id"] for p in persons)
    assert sum(1 for n in households.values() if n >= 2) >= PERSONS // 10
    twins = [p for p in persons if p["is_twin"] == "1"]
    assert twins and len(twins) % 2 == 0
    by_household = defaultdict(list)
    for p in twins:
        by_household[p["household_id"]].append(p["birth_year"])
    assert all(len(years) == 2 and len(set(years)) == 1 for years in by_household.values())
    groups = Counter(p["homonym_group"] for p in persons if p["homonym_group"])
    assert groups and all(n >= 2 for n in groups.values())
    assert any(r["is_twin"] == "1" for r in truth)
    assert any(r["is_homonym_group"] for r in truth)
    sources_of = defaultdict(set)
    for r in truth:
        if r["person_id"]:
            sources_of[r["person_id"]].add(r["source"])
    assert len(sources_of) == PERSONS  # everyone is somewhere
    assert any(s == {"contest"} for s in sources_of.values())  # prospects
    per_source = Counter(r["person_id"] for r in _truth_of(truth, "loyalty") if r["person_id"])
    assert max(per_source.values()) >= 2  # someone holds two cards


def test_population_is_french_and_coherent() -> None:
    fake = Faker("fr_FR")
    fake.seed_instance(3)
    pop = build_population(random.Random(3), fake, 2000, TODAY)
    codes = [p.address.postal_code for p in pop.persons]
    assert any(c.startswith("20") for c in codes)
    assert any(c[:3] in ("971", "972", "974") for c in codes)
    assert any(p.address.special.startswith(("BP", "Lieu-dit")) for p in pop.persons)
    assert any(p.address.complement.startswith("Chez") for p in pop.persons)
    assert any(p.maiden_name for p in pop.persons)
    for p in pop.persons:
        age = (TODAY - p.birth_date).days / 365.25
        assert 18 <= age <= 91, p.person_id
        assert p.gender in ("M", "F")
    twins = defaultdict(list)
    for p in pop.persons:
        if p.is_twin:
            twins[p.household_id].append(p)
    for a, b in twins.values():
        assert a.last_name == b.last_name and a.birth_date == b.birth_date
        assert a.address == b.address and fold(a.first_name) != fold(b.first_name)
    couples = defaultdict(list)
    for p in pop.persons:
        couples[p.household_id].append(p)
    shared = [ms for ms in couples.values() if len(ms) >= 2 and ms[0].landline]
    assert shared and all(len({m.landline for m in ms}) == 1 for ms in shared)
    assert any(ms[0].email and ms[0].email == ms[1].email for ms in couples.values() if len(ms) > 1)
    homonyms = defaultdict(list)
    for p in pop.persons:
        if p.homonym_group:
            homonyms[p.homonym_group].append(p)
    assert any(len({m.birth_date for m in ms}) > 1 for ms in homonyms.values())
    contacts = [p for p in pop.persons if p.company is not None]
    assert 0.05 < len(contacts) / len(pop.persons) < 0.11
    for company in pop.companies:
        assert len(company.siret) == 14 and luhn_ok(company.siret) and luhn_ok(company.siret[:9])
        assert company.org_class in ("TPE", "PME", "ETI", "GE")
        assert company.naf_code[2] == "." and company.naf_code[-1].isalpha()


# --- behaviour ----------------------------------------------------------------------------------


def _purchases(manifest: DemoManifest) -> list[tuple[datetime, str, float]]:
    """(when, customer reference, amount) of every ticket and order."""
    tickets: dict[str, tuple[datetime, str, float]] = {}
    for r in _records(manifest.file("tickets")):
        when = datetime.strptime(str(r["date_heure"]), "%d/%m/%Y %H:%M")
        amount = float(str(r["montant"]).replace(",", "."))
        at, card, total = tickets.get(str(r["ticket_id"]), (when, str(r["num_carte"]), 0.0))
        tickets[str(r["ticket_id"])] = (at, card, total + amount)
    orders = [
        (
            datetime.fromisoformat(str(o["created_at"])).replace(tzinfo=None),
            f"web:{o['account_id']}",
            float(str(o["total"])),
        )
        for o in _records(manifest.file("orders"))
    ]
    return list(tickets.values()) + orders


def test_purchases_show_seasonality(manifest: DemoManifest) -> None:
    purchases = _purchases(manifest)
    assert all(datetime(2023, 11, 1) <= at < datetime(2026, 11, 1) for at, _, _ in purchases)
    months = Counter(at.month for at, _, _ in purchases)
    average = len(purchases) / 12
    assert months[12] > 1.3 * average
    assert months[12] > max(months[m] for m in (2, 3, 4, 5, 9, 10))
    weekdays = Counter(at.weekday() for at, card, _ in purchases if not card.startswith("web:"))
    assert weekdays.most_common(1)[0][0] == 5  # Saturday in the shops


def test_purchases_are_heterogeneous(manifest: DemoManifest) -> None:
    spend: Counter[str] = Counter()
    for _, customer, amount in _purchases(manifest):
        if customer:
            spend[customer] += amount
    values = sorted(spend.values(), reverse=True)
    assert sum(values[: len(values) // 5]) > 0.45 * sum(values)
    with manifest.persons_path.open(encoding="utf-8") as fh:
        rates = [float(p["purchase_rate"]) for p in csv.DictReader(fh) if p["purchase_rate"]]
    assert statistics.pstdev(rates) / statistics.mean(rates) > 0.7
    lines = _data_rows(manifest.file("tickets")) + sum(
        len(o["lines"]) for o in json.loads(manifest.file("orders").path.read_text())["orders"]
    )
    assert lines < 30 * PERSONS  # 150,000 lines for 5,000 persons at most


def test_transactions_reference_existing_records(
    manifest: DemoManifest, truth: list[dict[str, str]]
) -> None:
    accepted = {
        source: {r["source_key"] for r in _truth_of(truth, source) if r["expected"] == "accept"}
        for source in ("loyalty", "ecommerce")
    }
    owner = {(r["source"], r["source_key"]): r["person_id"] for r in truth if r["source_key"]}
    cards = [str(r["num_carte"]) for r in _records(manifest.file("tickets")) if r["num_carte"]]
    assert cards and set(cards) <= accepted["loyalty"]
    references = [
        *(str(o["account_id"]) for o in _records(manifest.file("orders"))),
        *(str(e["user_id"]) for e in _records(manifest.file("web_events"))),
        *(
            str(c["id_compte_web"])
            for c in _records(manifest.file("callcenter"))
            if c["id_compte_web"]
        ),
    ]
    assert references and set(references) <= accepted["ecommerce"]
    for order in _records(manifest.file("orders")):
        key = ("orders", str(order["order_id"]))
        assert owner[("ecommerce", str(order["account_id"]))] == owner[key]
    products = {str(p["sku"]) for p in _records(manifest.file("products"))}
    assert {str(r["sku"]) for r in _records(manifest.file("tickets"))} <= products


def test_loyalty_file_looks_like_a_legacy_export(manifest: DemoManifest) -> None:
    rows = list(_records(manifest.file("loyalty")))
    civilities = {r["civilite"] for r in rows}
    assert {"M", "MME"} <= civilities <= LOYALTY_CIVILITIES
    assert all(r["nom"] == r["nom"].upper() for r in rows)
    assert any("," in r["ca_cumule"] for r in rows)
    assert all(len(r["num_carte"]) == 13 for r in rows)
    text = io.StringIO(_text(manifest.file("ecommerce")))
    assert any("+33" in line or "0033" in line for line in text)


@pytest.mark.slow
def test_full_size_is_fast_enough(tmp_path: Path) -> None:
    import time

    started = time.perf_counter()
    result = generate(tmp_path, persons=5000)
    assert time.perf_counter() - started < 30
    lines = result.file("tickets").rows + sum(
        len(o["lines"]) for o in json.loads(result.file("orders").path.read_text())["orders"]
    )
    assert lines < 150_000
