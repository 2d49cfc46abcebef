"""Segments at scale: how long counting a segment takes on PostgreSQL and on SQLite holding the
same 1,000,000 customers and 10,000,000 transactions, and how long the features and RFM
refreshes that segments read take.

    .venv/bin/python bench/segments.py [--customers 1000000] [--transactions 10000000]
        [--interactions 2000000] [--line-days 365] [--runs 5] [--seed 7] [--today DATE]
        [--server-url URL]
        [--database tournesol_segments_bench] [--sqlite-path build/bench/segments.db]
        [--reuse] [--keep] [--only-postgres | --only-sqlite] [--pg-options '-c jit=off']
        [--load-only] [--explain DIR] [--json PATH]

1. PostgreSQL (a dedicated database, dropped and created afresh, migrated): the population of
   ``bench/api_load.py`` (French persons in households, each a golden ``customer`` with its
   source record, identifiers, name keys, consents and preferences; ``--interactions``
   contacts over three years), loaded by its own ``load``. Then this script's part, by COPY:
   three brands (SOLEIL 55 % of the customers, LUNE 30 %, ETOILE 15 %: each customer's brand
   is their home brand; e-mail and SMS consents are given to it), 1,200 products in eleven
   categories, ``--transactions`` tickets, web orders and returns over three years (the same
   log-normal activity per customer as the interactions; 85 % of a customer's purchases in
   their home brand, in its stores or on its web shop; 2 % returns) with their lines (1 to 3,
   each a product of a category, the brand's mix of categories) for the last
   ``--line-days`` days' transactions; later e-mail and SMS withdrawals (the latest consent
   row is the one that holds), group-wide postal opt-ins (brand NULL), 1 customer in 40 a
   contact of a company (``organisation``: NAF code, headcount band, class; some have two
   contacts), and a synthetic ``purchase_90d`` score per customer (a ``score_model`` row and
   a ``customer_score`` per customer, higher for recent buyers: the bench times the count of a
   score threshold, not a model). With ``--reuse``, a database this script loaded with the
   same sizes (noted as its comment) is used as it is; ``--keep`` keeps it at the end.
2. SQLite (``--sqlite-path``): migrated with ``tournesol.migrations.upgrade``, then every
   table a segment reads copied from PostgreSQL (COPY ... TO STDOUT as CSV, executemany in
   transactions of 50,000 rows, ``journal_mode=OFF`` and ``synchronous=OFF`` during the copy
   only, indexes dropped before and rebuilt after, then ANALYZE). ``source_record`` and
   ``customer_name_key`` are not copied (no segment reads them; ``source_record_id`` columns
   are NULL in the copy). A ``.json`` file beside it notes which PostgreSQL load it copies.
3. On each database: ``scoring.features.refresh`` (one row per customer), ANALYZE, then
   ``scoring.service.refresh_rfm`` for scope ``all`` and for each brand; then the saved
   segment ``sms_champions`` (definition 3) is created so that definition 10 can name it; then
   for each definition below ``segments.service.count``: one warm-up, then ``--runs`` timed
   runs (wall clock around the call); median, max, the path (features / raw / mixed) and the
   size. ``now`` is the day after the last generated history (the load's ``today``, 06:00 UTC).
4. Figures, printed last: the table (definition | PostgreSQL median / max | SQLite median /
   max | path | size), sizes that differ between the two databases flagged, the refresh
   times, and pass / fail against the targets: each definition's median count under 1 s on
   PostgreSQL and under 3 s on SQLite, RFM refresh under 60 s. ``--explain DIR`` writes each
   definition's plan (EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite)
   to a file; ``--json`` writes every figure to a file.

The definitions (read from this text: what is written here is what runs):

 1. idf_women_email_buyers: women aged 25 to 45 living in Île-de-France (INSEE region 11),
    opted in to Soleil's e-mails, with at least 2 purchases and at least 100 EUR in the last
    180 days.

        {"all": [
          {"attribute": "gender", "op": "eq", "value": "F"},
          {"attribute": "age", "op": "between", "value": [25, 45]},
          {"attribute": "region", "op": "eq", "value": "11"},
          {"consent": {"channel": "email", "purpose": "marketing", "brand": "SOLEIL",
                       "status": "granted"}},
          {"behaviour": {"of": "purchases", "measure": "count", "window": {"last_days": 180},
                         "op": "gte", "value": 2}},
          {"behaviour": {"of": "purchases", "measure": "amount", "window": {"last_days": 180},
                         "op": "gte", "value": 100}}
        ]}

 2. winback_lapsed: loyalty card holders with at least 3 purchases in all, none for a year.

        {"all": [
          {"identifier": "loyalty_card"},
          {"behaviour": {"of": "purchases", "measure": "count", "op": "gte", "value": 3}},
          {"behaviour": {"of": "purchases", "measure": "last_date", "op": "lt",
                         "value": {"days_ago": 365}}}
        ]}

 3. sms_champions: RFM champions or loyal customers (all brands) with a mobile phone, opted in
    to SMS by one of the three brands.

        {"all": [
          {"rfm": {"scope": "all", "segment": ["champions", "loyal"]}},
          {"reachable": "sms"},
          {"any": [
            {"consent": {"channel": "sms", "purpose": "marketing", "brand": "SOLEIL",
                         "status": "granted"}},
            {"consent": {"channel": "sms", "purpose": "marketing", "brand": "LUNE",
                         "status": "granted"}},
            {"consent": {"channel": "sms", "purpose": "marketing", "brand": "ETOILE",
                         "status": "granted"}}
          ]}
        ]}

 4. at_risk_high_value: at-risk big spenders (RFM over all brands: recency 1-2, frequency and
    monetary 4-5; at least 500 EUR in all) whom no campaign or call reached in 90 days.

        {"all": [
          {"rfm": {"scope": "all", "r": [1, 2], "f": [4, 5], "m": [4, 5]}},
          {"behaviour": {"of": "purchases", "measure": "amount", "op": "gte", "value": 500}},
          {"behaviour": {"of": "interactions", "measure": "count", "window": {"last_days": 90},
                         "where": {"direction": "outbound"}, "op": "eq", "value": 0}}
        ]}

 5. new_web_buyers: new customers (first purchase in the last 30 days) who bought on a web
    shop in these 30 days.

        {"all": [
          {"behaviour": {"of": "purchases", "measure": "first_date", "op": "gte",
                         "value": {"days_ago": 30}}},
          {"behaviour": {"of": "purchases", "measure": "count", "window": {"last_days": 30},
                         "where": {"channel": ["web"]}, "op": "gte", "value": 1}}
        ]}

 6. lune_garden_store: bought garden or DIY products in a Lune store in the last 90 days,
    reachable by e-mail (a category filter: transaction lines, the raw path).

        {"all": [
          {"behaviour": {"of": "purchases", "measure": "count", "window": {"last_days": 90},
                         "where": {"channel": ["store"], "brand": ["LUNE"],
                                   "category": ["jardin", "bricolage"]},
                         "op": "gte", "value": 1}},
          {"reachable": "email"}
        ]}

 7. b2b_or_prospect_postal: company contacts or prospects in the Rhône-Alpes departments, with
    a postal address and the group's postal opt-in (a consent of no brand).

        {"all": [
          {"any": [
            {"attribute": "b2b", "op": "eq", "value": true},
            {"attribute": "customer_type", "op": "eq", "value": "prospect"}
          ]},
          {"attribute": "department", "op": "in", "value": ["01", "38", "42", "69", "73", "74"]},
          {"reachable": "postal"},
          {"consent": {"channel": "postal", "purpose": "marketing", "brand": null,
                       "status": "granted"}}
        ]}

 8. reengage_email: reachable by e-mail, neither a purchase in the last 90 days nor a
    complaint in the last year, and some sign of interest: an e-mail opened or clicked in the
    last 90 days, e-mail as the preferred channel, or under 30 (NOT and ANY nested).

        {"all": [
          {"reachable": "email"},
          {"not": {"any": [
            {"behaviour": {"of": "purchases", "measure": "count", "window": {"last_days": 90},
                           "op": "gte", "value": 1}},
            {"behaviour": {"of": "interactions", "measure": "count",
                           "window": {"last_days": 365}, "where": {"type": ["complaint"]},
                           "op": "gte", "value": 1}}
          ]}},
          {"any": [
            {"behaviour": {"of": "interactions", "measure": "count",
                           "window": {"last_days": 90},
                           "where": {"type": ["email_open", "email_click"]},
                           "op": "gte", "value": 1}},
            {"preference": {"channel": "email", "preferred": true}},
            {"attribute": "age", "op": "lt", "value": 30}
          ]}
        ]}

 9. likely_buyers_email: a purchase_90d score of 0.7 or more, opted in to Soleil's e-mails,
    no purchase in the last 30 days.

        {"all": [
          {"score": {"model": "purchase_90d", "op": "gte", "value": 0.7}},
          {"consent": {"channel": "email", "purpose": "marketing", "brand": "SOLEIL",
                       "status": "granted"}},
          {"behaviour": {"of": "purchases", "measure": "count", "window": {"last_days": 30},
                         "op": "eq", "value": 0}}
        ]}

10. lune_recent_sms_champions: members of the saved segment sms_champions (definition 3)
    whose brand is Lune and who are recent Lune buyers (Lune's own RFM, recency 4-5).

        {"all": [
          {"segment": "sms_champions"},
          {"attribute": "brand", "op": "eq", "value": "LUNE"},
          {"rfm": {"scope": "LUNE", "r": [4, 5]}}
        ]}
"""

from __future__ import annotations

import argparse
import bisect
import csv
import importlib.util
import io
import itertools
import json
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DEFAULT_DATABASE = "tournesol_segments_bench"
DEFAULT_SQLITE = ROOT / "build" / "bench" / "segments.db"
TARGETS = {"postgresql": 1.0, "sqlite": 3.0, "rfm": 60.0}
SAVED_SEGMENT = "sms_champions"  # definition 3, saved so that definition 10 can name it
SCORE_MODEL = "purchase_90d"
LOAD_VERSION = 1  # bump when the generated data changes: --reuse then loads afresh
console = Console(stderr=True)


def _api_load() -> ModuleType:
    """bench/api_load.py, for its population, its loader and its database helpers."""
    name = "api_load"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / "api_load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- the definitions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    number: int
    code: str
    words: str
    definition: dict[str, Any]


def definitions(doc: str | None = None) -> list[Definition]:
    """The numbered definitions of this module's docstring: code, words and JSON."""
    text = (doc if doc is not None else __doc__ or "").split("The definitions (", 1)[1]
    found = []
    head = re.compile(r"^\s*(\d+)\. ([a-z0-9_]+): (.*)$")
    blocks = re.split(r"\n(?=[ ]*\d+\. [a-z0-9_]+: )", text)
    for block in blocks[1:]:
        lines = block.strip("\n").splitlines()
        match = head.match(lines[0])
        assert match is not None, lines[0]
        words, body = [match.group(3)], []
        for line in lines[1:]:
            if body or line.strip().startswith("{"):
                body.append(line)
            elif line.strip():
                words.append(line.strip())
        found.append(
            Definition(
                int(match.group(1)),
                match.group(2),
                " ".join(words),
                json.loads("\n".join(body)),
            )
        )
    return found


# --- the generated data ------------------------------------------------------------------------


@dataclass(frozen=True)
class BrandSpec:
    code: str
    name: str
    share: int  # percent of the customers whose home brand it is
    stores: range  # store numbers (store codes M001...)
    web_share: float  # share of its sales on its web shop
    categories: tuple[float, ...]  # weights of CATEGORIES in its baskets


CATEGORIES = (
    "jardin", "bricolage", "cuisine", "decoration", "textile", "beaute", "epicerie", "jouets",
    "sport", "librairie", "high-tech",
)  # fmt: skip
BRANDS = (
    BrandSpec("SOLEIL", "Soleil", 55, range(1, 31), 0.30, (6, 6, 12, 8, 12, 10, 22, 8, 7, 4, 5)),
    BrandSpec("LUNE", "Lune", 30, range(31, 49), 0.20, (24, 26, 8, 16, 4, 2, 2, 3, 6, 1, 8)),
    BrandSpec("ETOILE", "Étoile", 15, range(49, 61), 0.45, (1, 1, 4, 12, 40, 30, 1, 3, 6, 2, 0)),
)
PRODUCTS_PER_CATEGORY = 110
RETURN_SHARE = 0.02
HOME_LOYALTY = 0.85  # share of a customer's purchases in their home brand


def home_brand(customer_id: int) -> int:
    """Index in BRANDS of a customer's home brand (the same expression in SQL: HOME_SQL)."""
    roll = customer_id * 37 % 100
    return 0 if roll < 55 else 1 if roll < 85 else 2


# ``%%``: the statements run with psycopg parameters
HOME_SQL = "CASE WHEN {id} * 37 %% 100 < 55 THEN 0 WHEN {id} * 37 %% 100 < 85 THEN 1 ELSE 2 END"


@dataclass(frozen=True)
class LoadSizes:
    customers: int
    transactions: int
    interactions: int
    seed: int
    line_days: int
    today: date

    def label(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "transactions": self.transactions,
            "interactions": self.interactions,
            "seed": self.seed,
            "line_days": self.line_days,
            "today": self.today.isoformat(),
            "version": LOAD_VERSION,
        }


@dataclass(frozen=True)
class Product:
    id: int
    sku: str
    category: str
    price: float


def products(seed: int) -> list[Product]:
    """PRODUCTS_PER_CATEGORY products per category, with a price."""
    rng = random.Random(seed * 41 + 3)
    out = []
    for c, category in enumerate(CATEGORIES):
        for n in range(PRODUCTS_PER_CATEGORY):
            pid = c * PRODUCTS_PER_CATEGORY + n + 1
            price = round(min(rng.lognormvariate(2.8, 0.9), 900.0), 2)
            out.append(Product(pid, f"SKU{pid:05d}", category, price))
    return out


def product_rows(items: Sequence[Product]) -> str:
    return "".join(
        f"{p.id}\t{p.sku}\t{p.category.capitalize()} {p.id:04d}\t{p.category}\t{p.price:.2f}\n"
        for p in items
    )


PRODUCT_COLUMNS = ("id", "sku", "name", "category", "price")
TRANSACTION_COLUMNS = (
    "id", "source_id", "external_id", "customer_id", "kind", "channel", "store_code",
    "brand_id", "occurred_at", "total_amount", "currency", "status", "attributes", "created_at",
)  # fmt: skip
LINE_COLUMNS = (
    "id", "transaction_id", "line_no", "sku", "product_id", "category", "quantity",
    "unit_price", "amount",
)  # fmt: skip


@dataclass
class Chunk:
    transactions: int
    transaction_text: str
    lines: int
    line_text: str


def transaction_chunks(
    *,
    brand_ids: Sequence[int],
    tickets: int,
    orders: int,
    total: int,
    cumulative: Sequence[float],
    seed: int,
    today: date,
    line_days: int,
    items: Sequence[Product],
    chunk_rows: int = 50_000,
) -> Iterator[Chunk]:
    """Tickets, web orders and returns as COPY text in time order, with the lines of those of
    the last ``line_days`` days. Customers are drawn with api_load's activity weights (the
    same customers are active in the interactions); 85 % of a customer's purchases go to
    their home brand."""
    api = _api_load()
    rng = random.Random(seed * 307 + 9)
    random_ = rng.random
    days = [today - timedelta(days=api.HISTORY_DAYS - i) for i in range(api.HISTORY_DAYS)]
    lines_from = today - timedelta(days=line_days)
    clock = api._clock(rng)
    n_clock = len(clock)
    weight_total = cumulative[-1]
    n_customers = len(cumulative)
    by_category = [[p for p in items if p.category == c] for c in CATEGORIES]
    brand_categories = [list(itertools.accumulate(b.categories)) for b in BRANDS]
    tid = lid = 0
    tx: list[str] = []
    lines: list[str] = []
    n_lines = 0
    for day, count in zip(days, api._day_counts(total, days), strict=True):
        stamp = day.isoformat()
        detailed = day >= lines_from
        for _ in range(count):
            cid = min(bisect.bisect(cumulative, random_() * weight_total), n_customers - 1) + 1
            b = home_brand(cid)
            if random_() >= HOME_LOYALTY:
                b = (b + 1 + int(random_() * 2)) % 3
            brand = BRANDS[b]
            moment = stamp + clock[int(random_() * n_clock)]
            amount = min(rng.lognormvariate(3.6, 0.8), 5000.0)
            web = random_() < brand.web_share
            tid += 1
            if random_() < RETURN_SHARE:
                kind, external, amount = "return", f"R{tid:010d}", -round(amount * 0.6, 2)
            elif web:
                kind, external = "order", f"C{tid:010d}"
            else:
                kind, external = "ticket", f"T{tid:010d}"
            source = orders if web else tickets
            if web:
                channel, store = "web", api.NULL
            else:
                number = brand.stores[int(random_() * len(brand.stores))]
                channel, store = "store", f"M{number:03d}"
            n_items = 1 + (random_() < 0.4) + (random_() < 0.15)
            tx.append(
                f"{tid}\t{source}\t{external}\t{cid}\t{kind}\t{channel}\t{store}\t"
                f"{brand_ids[b]}\t{moment}\t{amount:.2f}\tEUR\tcompleted\t"
                f'{{"items": {n_items}}}\t{moment}\n'
            )
            if detailed:
                left = round(amount, 2)
                weights = brand_categories[b]
                for line_no in range(1, n_items + 1):
                    category = bisect.bisect(weights, random_() * weights[-1])
                    pool = by_category[category]
                    product = pool[int(random_() * len(pool))]
                    part = left if line_no == n_items else round(left * (0.3 + random_() * 0.5), 2)
                    left = round(left - part, 2)
                    quantity = 1 if random_() < 0.8 else 2 + int(random_() * 2)
                    lid += 1
                    lines.append(
                        f"{lid}\t{tid}\t{line_no}\t{product.sku}\t{product.id}\t"
                        f"{product.category}\t{quantity}\t{part / quantity:.2f}\t{part:.2f}\n"
                    )
                    n_lines += 1
            if len(tx) == chunk_rows:
                yield Chunk(len(tx), "".join(tx), n_lines, "".join(lines))
                tx, lines, n_lines = [], [], 0
    if tx:
        yield Chunk(len(tx), "".join(tx), n_lines, "".join(lines))


# SQL run after the rows are in: home brands, consents given to them, later withdrawals,
# group-wide postal opt-ins, companies and their contacts, the synthetic score.
ENRICH_SQL = (
    (
        "customers' home brand",
        "UPDATE customer SET brand_id = (%(brands)s)[1 + " + HOME_SQL.format(id="id") + "]",
    ),
    (
        "consents given to the home brand",
        "UPDATE consent x SET brand_id = c.brand_id FROM customer c WHERE c.id = x.customer_id",
    ),
    (
        "later withdrawals",
        # 7 % of e-mail and 4 % of SMS grants withdrawn later (the latest row holds)
        "INSERT INTO consent (customer_id, channel, purpose, brand_id, status, collected_at,"
        " source_id, proof, created_at)"
        " SELECT customer_id, channel, purpose, brand_id, 'withdrawn',"
        " LEAST(collected_at + (1 + customer_id %% 900) * interval '1 day',"
        " %(today)s::timestamptz - interval '2 days'),"
        ' source_id, \'{"form": "unsubscribe link"}\','
        " LEAST(collected_at + (1 + customer_id %% 900) * interval '1 day',"
        " %(today)s::timestamptz - interval '2 days')"
        " FROM consent WHERE status = 'granted' AND ("
        " (channel = 'email' AND customer_id * 13 %% 100 < 7)"
        " OR (channel = 'sms' AND customer_id * 17 %% 100 < 4))",
    ),
    (
        "postal opt-ins of the group",
        # 35 % of the customers with an address, unless they refused postal mail
        "INSERT INTO consent (customer_id, channel, purpose, brand_id, status, collected_at,"
        " source_id, proof, created_at)"
        " SELECT c.id, 'postal', 'marketing', NULL, 'granted', c.created_at, %(source)s,"
        ' \'{"form": "catalogue coupon"}\', c.created_at FROM customer c'
        " WHERE c.address_line6 IS NOT NULL AND c.id * 29 %% 100 < 35"
        " AND NOT EXISTS (SELECT 1 FROM consent x WHERE x.customer_id = c.id"
        " AND x.channel = 'postal')",
    ),
    (
        "companies",
        # one company per 40 customers, its SIREN the contact's id (so contacts find it)
        "INSERT INTO organisation (siren, siret, name, naf_code, headcount_band, org_class,"
        " postal_code, city, created_at, updated_at)"
        " SELECT lpad(c.id::text, 9, '0'), lpad(c.id::text, 9, '0') || '00017',"
        " 'Entreprise ' || upper(coalesce(c.last_name, 'X')) || ' ' || c.id,"
        " (ARRAY['47.11F', '56.10A', '62.01Z', '43.21A', '86.21Z', '69.20Z', '47.71Z',"
        " '45.20A', '10.71C', '41.20A'])[1 + c.id / 40 %% 10],"
        " (ARRAY['0', '1-2', '3-5', '6-9', '10-19', '20-49', '50-99', '100-199', '200+'])"
        "[1 + c.id / 40 %% 9],"
        " CASE WHEN c.id / 40 %% 100 < 70 THEN 'TPE' WHEN c.id / 40 %% 100 < 95 THEN 'PME'"
        " WHEN c.id / 40 %% 100 < 99 THEN 'ETI' ELSE 'GE' END,"
        " c.postal_code, c.city, c.created_at, c.created_at"
        " FROM customer c WHERE c.id %% 40 = 7 ORDER BY c.id",
    ),
    (
        "company contacts",
        # the customer it was made from, and for one company in ten the next customer too
        "INSERT INTO organisation_contact (organisation_id, customer_id, job_title)"
        " SELECT o.id, o.siren::bigint, 'Gérant' FROM organisation o"
        " UNION ALL SELECT o.id, o.siren::bigint + 1, 'Assistant' FROM organisation o"
        " WHERE o.siren::bigint %% 400 = 7"
        " AND o.siren::bigint < (SELECT max(id) FROM customer)",
    ),
    (
        "score model",
        "INSERT INTO score_model (name, version, trained_at, algorithm, features, metrics,"
        " artifact, active) VALUES (%(model)s, 'bench', %(today)s::timestamptz - interval"
        " '1 day', 'synthetic (bench/segments.py)', '[]', '{}', '\\x', true)",
    ),
    (
        "scores",
        # higher for customers who bought often in the last 180 days, plus noise
        "INSERT INTO customer_score (customer_id, model, version, value, computed_at)"
        " SELECT c.id, %(model)s, 'bench', round(((1 - exp(-0.5 * coalesce(t.n, 0))) * 0.8"
        " + (c.id * 7919 %% 1000) / 5000.0)::numeric, 4)::float,"
        " %(today)s::timestamptz - interval '1 day' FROM customer c LEFT JOIN"
        " (SELECT customer_id, count(*) AS n FROM transaction WHERE kind <> 'return'"
        " AND occurred_at >= %(today)s::timestamptz - interval '180 days'"
        " GROUP BY customer_id) t ON t.customer_id = c.id",
    ),
)
ENRICHED_TABLES = (
    "customer", "consent", "organisation", "organisation_contact", "score_model",
    "customer_score", "product", "transaction", "transaction_line",
)  # fmt: skip


@dataclass
class LoadReport:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def load_postgres(url: str, sizes: LoadSizes) -> LoadReport:
    """api_load's population and interactions, then this bench's brands, products,
    transactions with lines, consents, companies and scores, into the empty migrated
    PostgreSQL database at ``url``."""
    api = _api_load()
    report = LoadReport()
    started = time.perf_counter()
    base = api.load(
        url,
        api.Sizes(sizes.customers, sizes.interactions, 0, sizes.seed),
        today=sizes.today,
    )
    report.seconds.update({f"api_load {k}": v for k, v in base.seconds.items()})
    with psycopg.connect(api._libpq(url)) as conn, conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # rows are generated consistent
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '1GB'")
        brand_ids = []
        for brand in BRANDS:
            brand_ids.append(
                api._scalar(
                    cur,
                    "INSERT INTO brand (code, name) VALUES (%s, %s) ON CONFLICT (code)"
                    " DO UPDATE SET name = EXCLUDED.name RETURNING id",
                    brand.code,
                    brand.name,
                )
            )
        sources = dict(cur.execute("SELECT name, id FROM source").fetchall())
        indexes = _secondary_indexes(cur, ("transaction", "transaction_line"))
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        items = products(sizes.seed)
        _copy(cur, "product", PRODUCT_COLUMNS, product_rows(items))
        step = time.perf_counter()
        cumulative = api.customer_weights(sizes.customers, sizes.seed)
        with api._progress() as progress:
            task = progress.add_task("transactions and lines", total=sizes.transactions)
            for chunk in transaction_chunks(
                brand_ids=brand_ids,
                tickets=sources["tickets"],
                orders=sources["orders"],
                total=sizes.transactions,
                cumulative=cumulative,
                seed=sizes.seed,
                today=sizes.today,
                line_days=sizes.line_days,
                items=items,
            ):
                _copy(cur, "transaction", TRANSACTION_COLUMNS, chunk.transaction_text)
                _copy(cur, "transaction_line", LINE_COLUMNS, chunk.line_text)
                progress.advance(task, chunk.transactions)
            conn.commit()
            report.seconds["transactions"] = time.perf_counter() - step

            step = time.perf_counter()
            task = progress.add_task("indexes", total=len(indexes))
            for _, definition in indexes:
                cur.execute(definition)
                progress.advance(task)
            conn.commit()
            report.seconds["transaction indexes"] = time.perf_counter() - step

            params = {
                "brands": brand_ids,
                "today": datetime.combine(sizes.today, clock_time(), UTC),
                "source": sources["loyalty"],
                "model": SCORE_MODEL,
            }
            step = time.perf_counter()
            task = progress.add_task("brands, consents, companies, scores", total=len(ENRICH_SQL))
            cur.execute("ANALYZE transaction")
            for label, sql in ENRICH_SQL:
                progress.update(task, description=label)
                cur.execute(sql, params)
                progress.advance(task)
            for table in ENRICHED_TABLES:
                if table in ("customer_score",):
                    continue
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence(%s, 'id'),"
                    f' COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)',
                    (table,),
                )
            conn.commit()
            report.seconds["enrich"] = time.perf_counter() - step

            step = time.perf_counter()
            conn.autocommit = True
            task = progress.add_task("vacuum analyze", total=len(ENRICHED_TABLES))
            for table in ENRICHED_TABLES:
                progress.update(task, description=f"vacuum analyze {table}")
                cur.execute(f'VACUUM (ANALYZE) "{table}"')
                progress.advance(task)
            # the consents changed past the consent service (brands, withdrawals, postal)
            api.refresh_consent_state(url)
            # and every other table: a 3-row brand table is never analyzed by autovacuum
            # (under 50 rows changed), and the planner then misjudges every brand lookup
            cur.execute("ANALYZE")
            report.seconds["vacuum"] = time.perf_counter() - step
        for table in (*api.LOADED_TABLES, *ENRICHED_TABLES, "organisation_contact"):
            report.counts[table] = int(api._scalar(cur, f'SELECT COUNT(*) FROM "{table}"'))
    report.seconds["total"] = time.perf_counter() - started
    return report


def _copy(cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], text: str) -> None:
    if not text:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
        copy.write(text)


def _secondary_indexes(cur: psycopg.Cursor[Any], tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, definition) of these tables' indexes that back no constraint."""
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
        " FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relname = ANY(%s) AND t.relnamespace = current_schema()::regnamespace"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        " ORDER BY t.relname, 1",
        (list(tables),),
    )
    return [(str(name), str(definition)) for name, definition in cur.fetchall()]


# --- the PostgreSQL database ---------------------------------------------------------------------


def prepare_postgres(
    args: argparse.Namespace, sizes: LoadSizes
) -> tuple[str, dict[str, Any], LoadReport | None]:
    """The bench database's URL and its marker (what was loaded, when), loaded afresh unless
    ``--reuse`` finds the same load; and the load's report when it loaded."""
    from tournesol.db import make_engine
    from tournesol.migrations import upgrade

    api = _api_load()
    name = args.database
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or "bench" not in name:
        raise SystemExit(f"--database {name!r}: a plain lower-case name containing 'bench'")
    if name == "tournesol_bench":
        raise SystemExit("tournesol_bench belongs to bench/api_load.py: use another name")
    url = api._database_url(args.server_url, name)
    marker = api._marker(args.server_url, name)
    reuse = args.reuse and marker is not None and marker.get("sizes") == sizes.label()
    if args.reuse and not reuse:
        console.print(f"[yellow]{name} does not hold this load ({marker}): loading afresh[/]")
    if not reuse:
        with api._admin(args.server_url) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
    engine = make_engine(url)
    try:
        upgrade(engine)
        sync_indexes(engine)
    finally:
        engine.dispose()
    if reuse:
        assert marker is not None
        console.print(f"reusing {name}, loaded {marker.get('loaded_at')}")
        return url, marker, None
    console.print(f"loading {name}: {sizes.label()}")
    report = load_postgres(url, sizes)
    marker = {
        "sizes": sizes.label(),
        "loaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_seconds": round(report.seconds["total"], 1),
    }
    with api._admin(args.server_url) as admin:
        admin.execute(f"COMMENT ON DATABASE {name} IS {api._quote(json.dumps(marker))}")
    return url, marker, report


def sync_indexes(engine: Any) -> list[str]:
    """Create the indexes the models declare that a database migrated earlier lacks (a
    migration edited since a ``--keep``: alembic does not run a revision twice)."""
    from sqlalchemy import inspect

    from tournesol.models import Base  # every domain's tables, as migrations see them

    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    created = []
    for table in Base.metadata.sorted_tables:
        if table.name not in tables:
            continue
        present = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in present:
                index.create(engine)
                created.append(str(index.name))
    if created:
        console.print(f"[yellow]created indexes missing from the database: {created}[/]")
    return created


def drop_postgres(args: argparse.Namespace) -> None:
    api = _api_load()
    with api._admin(args.server_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


# --- the SQLite copy -----------------------------------------------------------------------------

NOT_COPIED = frozenset({"alembic_version", "source_record", "customer_name_key"})
SQLITE_CHUNK = 50_000
NULL_TEXT = "\\N"


class _CopyReader(io.RawIOBase):
    """The blocks of a COPY ... TO STDOUT as a readable binary stream."""

    def __init__(self, blocks: Iterator[Any]) -> None:
        self.blocks = blocks
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            try:
                self.pending = bytes(next(self.blocks))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def _sqlite_columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str, bool]]:
    """(name, declared type, nullable) of a table's columns."""
    return [
        (row[1], row[2].upper(), not row[3] and not row[5])
        for row in db.execute(f'PRAGMA table_info("{table}")')
    ]


def _pg_expression(column: str, declared: str) -> str:
    """The PostgreSQL expression that gives a column as SQLAlchemy stores it in SQLite:
    date-times in UTC as ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans as 0/1, binary as hex."""
    quoted = f'"{column}"'
    if column == "source_record_id":
        return "NULL"
    if declared.startswith("DATETIME") or declared.startswith("TIMESTAMP"):
        return f"to_char({quoted} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
    if declared.startswith("BOOLEAN"):
        return f"{quoted}::int"
    if declared in ("BLOB", "BYTEA"):
        return f"encode({quoted}, 'hex')"
    if declared.startswith("DATE"):
        return f"to_char({quoted}, 'YYYY-MM-DD')"
    return f"{quoted}::text"


def copy_to_sqlite(pg_url: str, path: Path, marker: Mapping[str, Any]) -> LoadReport:
    """A fresh SQLite file at ``path``, migrated, holding the PostgreSQL database's rows."""
    from tournesol.db import make_engine
    from tournesol.migrations import upgrade

    api = _api_load()
    report = LoadReport()
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        db.execute("PRAGMA temp_store=MEMORY")
        tables = [
            name
            for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            if name not in NOT_COPIED
        ]
        indexes = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({','.join('?' * len(tables))})",
            tables,
        ).fetchall()
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        with psycopg.connect(api._libpq(pg_url)) as pg, api._progress() as progress:
            pg.execute("SET DateStyle = ISO")
            estimates = dict(
                pg.execute(
                    "SELECT relname, GREATEST(reltuples, 0)::bigint FROM pg_class"
                    " WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"
                ).fetchall()
            )
            for table in tables:
                step = time.perf_counter()
                task = progress.add_task(f"sqlite {table}", total=estimates.get(table) or None)
                columns = _sqlite_columns(db, table)
                rows = _copy_table(pg, db, table, columns, lambda n, t=task: progress.advance(t, n))
                progress.update(task, total=rows, completed=rows)
                report.counts[table] = rows
                report.seconds[table] = time.perf_counter() - step
            step = time.perf_counter()
            task = progress.add_task("sqlite indexes", total=len(indexes))
            for name, sql in indexes:
                progress.update(task, description=f"sqlite index {name}")
                db.execute(sql)
                progress.advance(task)
            report.seconds["indexes"] = time.perf_counter() - step
            step = time.perf_counter()
            task = progress.add_task("sqlite analyze", total=None)
            db.execute("ANALYZE")
            progress.update(task, total=1, completed=1)
            report.seconds["analyze"] = time.perf_counter() - step
    finally:
        db.close()
    _sidecar(path).write_text(json.dumps(dict(marker), indent=2) + "\n", encoding="utf-8")
    report.seconds["total"] = time.perf_counter() - started
    return report


def _copy_table(
    pg: psycopg.Connection[Any],
    db: sqlite3.Connection,
    table: str,
    columns: Sequence[tuple[str, str, bool]],
    advance: Callable[[int], None],
) -> int:
    """One table from PostgreSQL to SQLite: COPY as CSV (NULL written ``\\N``, which SQLite
    turns back into NULL with NULLIF), executemany in transactions of SQLITE_CHUNK rows."""
    select = ", ".join(_pg_expression(name, declared) for name, declared, _ in columns)
    names = ", ".join(f'"{name}"' for name, _, _ in columns)
    values = ", ".join("NULLIF(?, '\\N')" if nullable else "?" for _, _, nullable in columns)
    insert = f'INSERT INTO "{table}" ({names}) VALUES ({values})'
    blobs = [i for i, (_, declared, _) in enumerate(columns) if declared in ("BLOB", "BYTEA")]
    total = 0
    with pg.cursor() as cur:
        sql = f"COPY (SELECT {select} FROM \"{table}\") TO STDOUT (FORMAT csv, NULL '\\N')"
        with cur.copy(sql) as copy:
            raw = io.BufferedReader(_CopyReader(iter(copy)), 1 << 20)
            stream = io.TextIOWrapper(raw, "utf-8", newline="")
            reader = csv.reader(stream)
            while True:
                batch = list(itertools.islice(reader, SQLITE_CHUNK))
                if not batch:
                    break
                if blobs:
                    batch = [_unhex(row, blobs) for row in batch]
                db.execute("BEGIN")
                db.executemany(insert, batch)
                db.execute("COMMIT")
                total += len(batch)
                advance(len(batch))
    return total


def _unhex(row: list[Any], positions: Sequence[int]) -> list[Any]:
    for i in positions:
        if row[i] != NULL_TEXT:
            row[i] = bytes.fromhex(row[i])
    return row


def migrate_sqlite(url: str) -> None:
    """A reused SQLite copy brought to the current schema (migrations, then indexes)."""
    from tournesol.db import make_engine
    from tournesol.migrations import upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
        sync_indexes(engine)
    finally:
        engine.dispose()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def sqlite_marker(path: Path) -> dict[str, Any] | None:
    """What the SQLite file at ``path`` was copied from (None without a complete copy)."""
    note = _sidecar(path)
    if not path.exists() or not note.exists():
        return None
    try:
        found = json.loads(note.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def remove_sqlite(path: Path) -> None:
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)


# --- the measures --------------------------------------------------------------------------------


def other_load(seconds: float = 2.0) -> dict[str, Any]:
    """How busy the machine is while this script waits (percent of all cores), and the
    programs that keep it busy (percent of one core each)."""
    ticks = os.sysconf("SC_CLK_TCK")

    def sample() -> tuple[int, int, dict[int, tuple[str, int]]]:
        first = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        procs = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat.rsplit(")", 1)[1].split()
                procs[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
        return sum(first) - first[3] - first[4], sum(first), procs

    b0, t0, p0 = sample()
    time.sleep(seconds)
    b1, t1, p1 = sample()
    per_name: dict[str, float] = {}
    for pid, (name, used) in p1.items():
        before = p0.get(pid, (name, used))[1]
        share = 100 * (used - before) / ticks / seconds
        if share >= 1:
            per_name[name] = per_name.get(name, 0.0) + share
    top = sorted(per_name.items(), key=lambda kv: -kv[1])[:6]
    return {
        "busy_pct": round(100 * (b1 - b0) / max(1, t1 - t0), 1),
        "programs": {name: round(share) for name, share in top},
    }


@dataclass
class CountFigures:
    number: int
    code: str
    size: int | None = None
    path: str | None = None
    notes: tuple[str, ...] = ()
    seconds: list[float] = field(default_factory=list)
    skipped: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def max(self) -> float | None:
        return max(self.seconds) if self.seconds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "code": self.code,
            "size": self.size,
            "path": self.path,
            "notes": list(self.notes),
            "seconds": [round(s, 4) for s in self.seconds],
            "median_s": None if self.median is None else round(self.median, 4),
            "max_s": None if self.max is None else round(self.max, 4),
            "skipped": self.skipped,
        }


def _timed(label: str, work: Callable[[], Any]) -> tuple[float, Any]:
    console.print(f"  {label}...")
    started = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - started
    console.print(f"  {label}: {seconds:.2f} s")
    return seconds, result


def measure(
    url: str, backend: str, defs: Sequence[Definition], *, now: datetime, runs: int,
    explain: Path | None, skip_refresh: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """On one database: the refreshes, then the count of every definition."""
    from tournesol.db import make_engine, make_session_factory

    engine = make_engine(url)
    factory = make_session_factory(engine)
    out: dict[str, Any] = {"backend": backend, "refresh": {}, "counts": []}
    try:
        out["machine_before"] = other_load()
        console.print(f"{backend}: machine {out['machine_before']}")
        if skip_refresh:
            out["refresh"] = existing_refresh(factory, now=now)
        else:
            out["refresh"] = refresh_all(factory, engine, backend, now=now)
        save_segment(factory, defs, now=now)
        for d in defs:
            figures = count_runs(factory, d, now=now, runs=runs)
            out["counts"].append(figures.as_dict())
            if figures.skipped:
                console.print(f"  {d.number:>2}. {d.code}: skipped ({figures.skipped})")
            else:
                console.print(
                    f"  {d.number:>2}. {d.code}: {figures.size:,} customers, {figures.path},"
                    f" median {figures.median:.3f} s, max {figures.max:.3f} s"
                )
        if explain is not None:
            explain.mkdir(parents=True, exist_ok=True)
            for d in defs:
                (explain / f"{backend}-{d.number:02d}-{d.code}.txt").write_text(
                    plan(factory, d, now=now), encoding="utf-8"
                )
            console.print(f"  plans written to {explain}")
        out["machine_after"] = other_load()
    finally:
        engine.dispose()
    return out


def refresh_all(factory: Any, engine: Any, backend: str, *, now: datetime) -> dict[str, Any]:
    """The features refresh, the RFM refreshes of RFM_RUNS, then VACUUM / ANALYZE: timed."""
    from sqlalchemy import func, select, text

    from tournesol.scoring import features
    from tournesol.scoring import service as scoring
    from tournesol.scoring.models import CustomerFeature

    out: dict[str, Any] = {}

    def refresh_features() -> int:
        with factory() as session:
            features.refresh(session, now=now)
            session.commit()
            # counted here: the refresh's own figure is the driver's row count, which
            # psycopg with SQLAlchemy 2.1 leaves at -1 for INSERT ... SELECT
            return int(session.scalar(select(func.count()).select_from(CustomerFeature)))

    seconds, rows = _timed("features refresh", refresh_features)
    out["features"] = {"seconds": round(seconds, 2), "rows": rows}
    rfm: dict[str, float] = {}
    for label, kwargs in RFM_RUNS:

        def refresh_rfm(kwargs: Mapping[str, Any] = kwargs) -> Any:
            with factory() as session:
                result = scoring.refresh_rfm(session, now=now, **kwargs)
                session.commit()
            return result

        seconds, result = _timed(f"RFM refresh {label}", refresh_rfm)
        rfm[label] = round(seconds, 2)
        out.setdefault("rfm_results", {})[label] = _plain(result)
    out["rfm"] = rfm

    def analyze() -> None:
        # VACUUM too on PostgreSQL: a refresh deletes and rewrites every row, and index
        # scans would wade through the dead ones until autovacuum comes by
        verb = "VACUUM (ANALYZE)" if backend == "postgresql" else "ANALYZE"
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("customer_feature", "customer_rfm"):
                conn.execute(text(f"{verb} {table}"))

    seconds, _ = _timed("VACUUM / ANALYZE customer_feature, customer_rfm", analyze)
    out["analyze"] = round(seconds, 2)
    return out


def existing_refresh(factory: Any, *, now: datetime) -> dict[str, Any]:
    """With --skip-refresh: the features and RFM already there, if computed as of ``now``."""
    from sqlalchemy import func, select

    from tournesol.scoring.models import CustomerFeature, CustomerRfm

    with factory() as session:
        as_of = session.scalar(select(func.max(CustomerFeature.computed_at)))
        rows = session.scalar(select(func.count()).select_from(CustomerFeature))
        scopes = set(session.scalars(select(CustomerRfm.scope).distinct()))
    wanted = {"all", *(b.code for b in BRANDS)}
    if as_of != now or not wanted <= scopes:
        raise SystemExit(
            f"--skip-refresh: features as of {as_of} (not {now}) or RFM scopes {sorted(scopes)}"
            " incomplete: run once without it"
        )
    return {"features": {"seconds": None, "rows": int(rows or 0)}, "rfm": {}, "analyze": None}


# RFM refreshes timed, in this order: scope all (from the features), scope all from the
# transactions (what it costs without features), each brand alone, then everything in one call
# (all + every brand: the nightly job), which leaves customer_rfm complete for the counts.
RFM_RUNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("all", {"scope": "all"}),
    ("all from transactions", {"scope": "all", "use_features": False}),
    *((brand.code, {"scope": brand.code}) for brand in BRANDS),
    ("all + every brand", {"scope": None}),
)


def _plain(value: Any) -> Any:
    """A service's return value as JSON can hold it."""
    if value is None or isinstance(value, int | float | str | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    return str(value)


def save_segment(factory: Any, defs: Sequence[Definition], *, now: datetime) -> None:
    """The saved segment definition 10 names (definition 3), created or brought up to date."""
    from tournesol.segments import service as segments

    saved = next(d for d in defs if d.code == SAVED_SEGMENT)
    with factory() as session:
        found = segments.get_by_code(session, code=SAVED_SEGMENT)
        if found is None:
            segments.create(
                session,
                code=saved.code,
                name="SMS champions (bench/segments.py)",
                definition=saved.definition,
            )
        elif found.definition != saved.definition:
            segments.update(session, segment=found, definition=saved.definition)
        session.commit()


def count_runs(factory: Any, d: Definition, *, now: datetime, runs: int) -> CountFigures:
    """One warm-up count, then ``runs`` timed ones (wall clock around the service call)."""
    from tournesol.segments import service as segments
    from tournesol.segments.compiler import DefinitionError

    figures = CountFigures(d.number, d.code)
    with factory() as session:
        try:
            first = segments.count(session, d.definition, now=now)
        except DefinitionError as error:
            figures.skipped = f"{getattr(error, 'path', '')}: {getattr(error, 'message', error)}"
            return figures
        figures.size, figures.path, figures.notes = first.size, first.path, tuple(first.notes)
        for _ in range(runs):
            started = time.perf_counter()
            result = segments.count(session, d.definition, now=now)
            figures.seconds.append(time.perf_counter() - started)
            if result.size != first.size:
                raise SystemExit(f"{d.code}: {result.size} then {first.size} on the same data")
        session.rollback()
    return figures


def plan(factory: Any, d: Definition, *, now: datetime) -> str:
    """The plan of a definition's count: EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL (it runs the
    query), EXPLAIN QUERY PLAN on SQLite; with the SQL."""
    from sqlalchemy import event, func, select

    from tournesol.segments import service as segments

    with factory() as session:
        bind = session.get_bind()
        postgres = bind.dialect.name == "postgresql"
        compiled = segments.compile(session, d.definition, now=now)
        statement = select(func.count()).select_from(compiled.query.subquery())
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
        captured: dict[str, Any] = {}

        def before(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> Any:
            captured["sql"] = sql
            return prefix + sql, params

        def after(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
            captured["rows"] = cursor.fetchall()

        connection = session.connection()
        event.listen(connection, "before_cursor_execute", before, retval=True)
        event.listen(connection, "after_cursor_execute", after)
        try:
            connection.execute(statement).close()
        finally:
            event.remove(connection, "before_cursor_execute", before)
            event.remove(connection, "after_cursor_execute", after)
        session.rollback()
    if postgres:
        lines = [row[0] for row in captured["rows"]]
    else:
        lines = [f"{row[0]:>4} {row[1]:>4}  {row[-1]}" for row in captured["rows"]]
    head = f"{d.number}. {d.code} ({compiled.path}; {'; '.join(compiled.notes)})"
    return f"{head}\n\n{captured['sql']}\n\n" + "\n".join(lines) + "\n"


# --- figures -------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def verdicts(figures: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Each target and whether it holds."""
    out = []
    for backend, limit in (("postgresql", TARGETS["postgresql"]), ("sqlite", TARGETS["sqlite"])):
        measured = figures.get(backend)
        if not measured:
            continue
        medians = [c["median_s"] for c in measured["counts"] if c["median_s"] is not None]
        slow = [c["code"] for c in measured["counts"] if (c["median_s"] or 0) >= limit]
        out.append(
            (
                f"{backend}: every definition's median count under {limit:g} s"
                f" ({len(medians) - len(slow)}/{len(medians)}"
                + (f"; over: {', '.join(slow)})" if slow else ")"),
                not slow and bool(medians),
            )
        )
        if medians:
            overall = statistics.median(medians)
            out.append(
                (
                    f"{backend}: median over the definitions {overall:.3f} s under {limit:g} s",
                    overall < limit,
                )
            )
        rfm = measured["refresh"].get("rfm", {})
        for scope, seconds in rfm.items():
            if scope == "all from transactions":  # what features save: not a target
                continue
            out.append(
                (
                    f"{backend}: RFM refresh {scope} {seconds:.1f} s under {TARGETS['rfm']:g} s",
                    seconds < TARGETS["rfm"],
                )
            )
    return out


def print_figures(figures: Mapping[str, Any]) -> None:
    out = Console(width=max(150, shutil.get_terminal_size().columns))
    out.print()
    sizes = figures["sizes"]
    rows = figures.get("rows", {})
    out.print(
        f"data: {rows.get('customer', sizes['customers']):,} customers,"
        f" {rows.get('transaction', sizes['transactions']):,} transactions"
        f" ({rows.get('transaction_line', 0):,} lines, the last {sizes['line_days']} days'),"
        f" {rows.get('interaction', sizes['interactions']):,} interactions,"
        f" {rows.get('consent', 0):,} consents, {rows.get('organisation_contact', 0):,}"
        f" company contacts; now = {figures['now']}"
    )
    for key, label in (("postgresql_database", "PostgreSQL"), ("sqlite_database", "SQLite")):
        if key in figures:
            out.print(f"{label}: {figures[key]}")
    if figures.get("pg_options"):
        out.print(f"PostgreSQL session settings: {figures['pg_options']}")
    for key, label in (("load", "PostgreSQL load"), ("sqlite_copy", "SQLite copy")):
        if key in figures:
            out.print(f"{label}: {figures[key]['seconds']} s {figures[key]['steps']}")
    backends = [b for b in ("postgresql", "sqlite") if figures.get(b)]
    for backend in backends:
        m = figures[backend]
        out.print(
            f"{backend}: machine before the measures {m['machine_before']}, after"
            f" {m.get('machine_after')}"
        )
    if not backends:
        return
    refresh = Table(title="Refreshes (seconds)")
    refresh.add_column("refresh")
    for backend in backends:
        refresh.add_column(backend, justify="right")
    names = ["features", *(f"RFM {label}" for label, _ in RFM_RUNS), "VACUUM / ANALYZE after"]
    for name in names:
        cells = []
        for backend in backends:
            r = figures[backend]["refresh"]
            if name == "features":
                seconds = r["features"]["seconds"]
                cells.append(f"{seconds or 'skipped'} ({r['features']['rows']:,} rows)")
            elif name == "VACUUM / ANALYZE after":
                cells.append(str(r["analyze"] or "-"))
            else:
                cells.append(str(r["rfm"].get(name.removeprefix("RFM "), "-")))
        refresh.add_row(name, *cells)
    out.print(refresh)
    table = Table(title=f"Segment counts ({figures['runs']} runs after a warm-up; seconds)")
    table.add_column("definition")
    for backend in backends:
        table.add_column(f"{backend} median / max", justify="right")
    table.add_column("path")
    table.add_column("size", justify="right")
    by_backend = {b: {c["code"]: c for c in figures[b]["counts"]} for b in backends}
    for d in figures["definitions"]:
        cells = []
        found = [by_backend[b][d["code"]] for b in backends]
        for c in found:
            cells.append(
                f"skipped: {c['skipped']}" if c["skipped"] else
                f"{_seconds(c['median_s'])} / {_seconds(c['max_s'])}"
            )  # fmt: skip
        paths = sorted({c["path"] for c in found if c["path"]})
        sizes_seen = [c["size"] for c in found if c["size"] is not None]
        if len(set(sizes_seen)) > 1:
            size = "DIFFER: " + " / ".join(f"{s:,}" for s in sizes_seen)
        else:
            size = f"{sizes_seen[0]:,}" if sizes_seen else "-"
        table.add_row(f"{d['number']}. {d['code']}", *cells, " / ".join(paths), size)
    out.print(table)
    differ = figures.get("sizes_differ", [])
    if len(backends) == 2:
        out.print(
            "sizes: identical on both databases" if not differ
            else f"[red]sizes differ between the databases: {', '.join(differ)}[/]"
        )  # fmt: skip
    for label, ok in figures.get("verdicts", []):
        out.print(f"{'PASS' if ok else 'FAIL'}  {label}")


def sqlite_facts(path: Path) -> str:
    size = path.stat().st_size / 1e9 if path.exists() else 0
    return f"SQLite {sqlite3.sqlite_version}, {path} ({size:.2f} GB)"


def postgres_facts(url: str) -> str:
    facts = _api_load().database_facts(url)
    return (
        f"PostgreSQL {facts.get('postgresql')}, {facts.get('database_gb')} GB, settings"
        f" {facts.get('settings')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument(
        "--line-days", type=int, default=365, help="transactions of the last N days get lines"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed counts per definition")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--today",
        type=date.fromisoformat,
        help="the day after the generated history (default: today); counts run at 06:00 UTC",
    )
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="the PostgreSQL server")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument("--sqlite-path", type=Path, default=DEFAULT_SQLITE)
    parser.add_argument(
        "--reuse", action="store_true", help="use the databases as loaded by an earlier run"
    )
    parser.add_argument("--keep", action="store_true", help="keep both databases at the end")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--only-postgres", action="store_true", help="measure PostgreSQL only")
    only.add_argument("--only-sqlite", action="store_true", help="measure SQLite only")
    parser.add_argument(
        "--pg-options",
        help="per-session settings of the measuring connections to PostgreSQL, e.g. "
        "'-c jit=off' (postgresql.conf is left alone)",
    )
    parser.add_argument(
        "--skip-refresh",
        action="store_true",
        help="count on the features and RFM an earlier run left (with --reuse --keep)",
    )
    parser.add_argument("--load-only", action="store_true", help="load (and copy), then stop")
    parser.add_argument("--explain", type=Path, help="write each definition's plan here")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs: at least 1")
    defs = definitions()
    figures: dict[str, Any] = {
        "runs": args.runs,
        "definitions": [
            {"number": d.number, "code": d.code, "words": d.words, "definition": d.definition}
            for d in defs
        ],
    }
    sqlite_path: Path = args.sqlite_path.resolve()
    sqlite_url = f"sqlite:///{sqlite_path}"
    today = args.today
    if today is None and args.reuse:  # the day of the load being reused
        found = sqlite_marker(sqlite_path) if args.only_sqlite else None
        if found is None:
            found = _api_load()._marker(args.server_url, args.database)
        if found and "sizes" in found:
            today = date.fromisoformat(found["sizes"]["today"])
    sizes = LoadSizes(
        args.customers, args.transactions, args.interactions, args.seed, args.line_days,
        today or datetime.now(UTC).date(),
    )  # fmt: skip
    now = datetime.combine(sizes.today, clock_time(6), UTC)
    figures["sizes"] = sizes.label()
    figures["now"] = now.isoformat()
    need_postgres = not args.only_sqlite
    copied = sqlite_marker(sqlite_path)
    sqlite_reusable = args.reuse and copied is not None and copied.get("sizes") == sizes.label()
    if args.only_sqlite and not sqlite_reusable:
        need_postgres = True  # the data comes from PostgreSQL
    pg_url: str | None = None
    try:
        if need_postgres:
            pg_url, marker, report = prepare_postgres(args, sizes)
            if report is not None:
                figures["load"] = {
                    "seconds": round(report.seconds["total"], 1),
                    "steps": {k: round(v, 1) for k, v in report.seconds.items()},
                }
                figures["rows"] = report.counts
            if not args.only_postgres and not (sqlite_reusable and copied == marker):
                console.print(f"copying {args.database} into {sqlite_path}")
                copy = copy_to_sqlite(pg_url, sqlite_path, marker)
                figures["sqlite_copy"] = {
                    "seconds": round(copy.seconds["total"], 1),
                    "steps": {k: round(v, 1) for k, v in copy.seconds.items()},
                }
                figures["rows"] = figures.get("rows") or copy.counts
            elif not args.only_postgres:
                console.print(
                    f"reusing {sqlite_path}, copied from the load of {marker['loaded_at']}"
                )
        if "rows" not in figures:
            figures["rows"] = _row_counts(pg_url, sqlite_url)
        if args.load_only:
            pass
        elif not args.only_sqlite:
            assert pg_url is not None
            figures["postgresql_database"] = postgres_facts(pg_url)
            figures["pg_options"] = args.pg_options
            figures["postgresql"] = measure(
                _api_load()._with_options(pg_url, args.pg_options),
                "postgresql",
                defs,
                now=now,
                runs=args.runs,
                explain=args.explain,
                skip_refresh=args.skip_refresh,
            )
        if not args.only_postgres and not args.load_only:
            migrate_sqlite(sqlite_url)
            figures["sqlite_database"] = sqlite_facts(sqlite_path)
            figures["sqlite"] = measure(
                sqlite_url,
                "sqlite",
                defs,
                now=now,
                runs=args.runs,
                explain=args.explain,
                skip_refresh=args.skip_refresh,
            )
    finally:
        if not args.keep:
            if need_postgres:
                drop_postgres(args)
                console.print(f"dropped {args.database} (--keep keeps it)")
            if not args.only_postgres:
                remove_sqlite(sqlite_path)
                console.print(f"removed {sqlite_path} (--keep keeps it)")
    if figures.get("postgresql") and figures.get("sqlite"):
        pg = {c["code"]: c["size"] for c in figures["postgresql"]["counts"]}
        lite = {c["code"]: c["size"] for c in figures["sqlite"]["counts"]}
        figures["sizes_differ"] = [code for code in pg if pg[code] != lite.get(code)]
    figures["verdicts"] = verdicts(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    print_figures(figures)


def _row_counts(pg_url: str | None, sqlite_url: str) -> dict[str, int]:
    """Row counts of the main tables, from PostgreSQL (or the SQLite file without it)."""
    tables = ("customer", "transaction", "transaction_line", "interaction", "consent",
              "organisation_contact")  # fmt: skip
    if pg_url is not None:
        with psycopg.connect(_api_load()._libpq(pg_url)) as conn:
            return {
                t: int(_api_load()._scalar(conn, f'SELECT COUNT(*) FROM "{t}"')) for t in tables
            }
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        return {t: int(db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables}
    finally:
        db.close()


if __name__ == "__main__":
    main()
