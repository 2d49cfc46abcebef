"""The server under load on PostgreSQL: customer search, the customer page (360 detail and
timeline) and event ingestion through the Segment-compatible ``POST /v1/batch``, measured with
wrk against the real server (``tournesol serve``) over a base of 1,000,000 customers and
10,000,000 interactions.

    .venv/bin/python bench/api_load.py [--customers 1000000] [--interactions 10000000]
        [--transactions N] [--seed 7] [--server-url URL] [--database tournesol_bench]
        [--reuse] [--keep] [--load-only] [--workers 2] [--duration 30] [--warmup 5]
        [--connections 20] [--threads 2] [--scenarios search,detail,timeline,page,ingest]
        [--think-ms 0,1000] [--batch-size 100] [--pg-options '-c name=value']
        [--quiet-below 15] [--quiet-timeout 300] [--keep-logs] [--json PATH]

1. Database: a dedicated one (``tournesol_bench`` on the PostgreSQL server of ``--server-url``),
   dropped and created afresh, migrated (``tournesol.migrations.upgrade``), loaded, and dropped
   at the end unless ``--keep``. With ``--reuse``, a database this script loaded before with the
   same sizes and seed (it notes them as the database's comment) is migrated and used as it is;
   with ``--keep``, what the scenarios wrote (audit rows, events and their interactions) is
   deleted at the end, so that the next run starts from the same base.
2. Load (PostgreSQL COPY, text format, one connection): a population of French persons in
   households drawn as ``bench/identity_scale.py`` draws them (first names weighted by their
   INSEE ranks, a long tail of surnames with many MARTINs and DUPONTs, real postal codes and
   communes, unique e-mails, unique valid E.164 phones, maiden names of married women), each
   written as one golden ``customer`` with one ``source_record`` (loyalty 50 %, e-shop 38 %,
   contest 12 %), its ``identifier`` rows (email as its match key, phone_mobile, phone_fixed,
   loyalty_card, account_id), its ``customer_name_key`` rows (``customers.rules.name_keys`` of
   the last and maiden names), consents (e-mail, SMS, some postal refusals) and a few
   preferences. Then ``--interactions`` interactions over the last three years (customers drawn
   with log-normal weights: many with a handful, a few with hundreds; the daily volume grows
   over the years, peaks in December and dips on Sundays; e-mail and SMS campaigns, web page
   and product views, shop visits and purchases, calls and complaints, letters) written in
   time order, and ``--transactions`` tickets and web orders drawn the same way. The session
   runs with ``session_replication_role = replica`` (no per-row foreign-key triggers: the rows
   are generated consistent), the tables' secondary indexes are dropped before and rebuilt
   after, sequences are moved past the ids written, and the tables are vacuumed and analyzed.
3. Server: ``tournesol serve`` in a process of its own (``--workers`` uvicorn workers) on the
   bench database; two API keys made with ``auth.service``: ``customers:read`` for the reads,
   ``events:write`` (source ``bench-events``) for the events.
4. Scenarios, each a wrk warm-up then a measured run with ``--connections`` connections,
   once per ``--think-ms`` value: 0 is a closed loop (each connection sends its next request
   as soon as the previous one is answered), N a random pause of N ms on average before each
   request (a member of staff reading the answer). Each waits first until other programs
   leave the machine under ``--quiet-below`` % busy (at most ``--quiet-timeout`` s):
   ``search`` (``GET /api/v1/customers?q=``: last names as typed, with sound-alike and
   keyboard typos, name and first name, name and postal code, prefixes, e-mails, phones in the
   formats people write them, loyalty cards and account ids, postal codes), ``detail``
   (``GET /api/v1/customers/{id}``, audited), ``timeline`` (its first page), ``page`` (detail
   then timeline of the same customer), ``ingest`` (``POST /v1/batch`` of ``--batch-size``
   identify/track/page events with unique messageIds, 60 % from known customers' account ids,
   the others anonymous, one connection per wrk thread so that every acknowledged batch is
   known; the events stored are then read back from the database, message id by message id:
   every acknowledged event must be stored, filed as an interaction, and nothing else stored
   but the batches still in flight when wrk stopped).
5. Figures, printed last: per scenario the requests, requests/s, latency percentiles (wrk's,
   which correct for coordinated omission), non-2xx answers and socket errors, the CPU shares
   of the server, PostgreSQL, wrk, other programs and the hypervisor's steal, and the CPU
   milliseconds per request of the server and of PostgreSQL; for ingestion the events/s and
   stored vs acknowledged. ``--json`` writes them (and more: sessions opened, commits,
   buffer hits) to a file too. ``--pg-options`` gives the server's connections per-session
   settings (``-c synchronous_commit=off``...), postgresql.conf untouched.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import functools
import gc
import hashlib
import importlib.util
import itertools
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tournesol.customers.rules import name_keys  # noqa: E402
from tournesol.quality.emails import match_key  # noqa: E402

BENCH = Path(__file__).resolve().parent
READ_SCRIPT = BENCH / "api_load_read.lua"
BATCH_SCRIPT = BENCH / "api_load_batch.lua"
DEFAULT_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"
DEFAULT_DATABASE = "tournesol_bench"
SCENARIOS = ("search", "detail", "timeline", "page", "ingest")
EVENT_SOURCE = "bench-events"
HISTORY_DAYS = 3 * 365
CHUNK_PERSONS = 20_000
CHUNK_ROWS = 50_000
NULL = "\\N"
LOADED_TABLES = (
    "customer",
    "source_record",
    "identifier",
    "customer_name_key",
    "consent",
    "preference",
    "interaction",
    "transaction",
)
console = Console(stderr=True)


def _identity_scale() -> ModuleType:
    """bench/identity_scale.py, for its population of persons (pools, phone book,
    households): the same people this project's identity benchmark resolves."""
    name = "identity_scale"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / "identity_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- COPY text -------------------------------------------------------------------------------

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class Copied(str):
    """Text already in COPY's text format (escaped JSON): written as it is."""


def _text(value: object) -> str:
    """One value in COPY's text format (``\\N`` for NULL)."""
    if value is None:
        return NULL
    if type(value) is str:
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_ESCAPES)
        return value
    if isinstance(value, Copied):
        return value
    return str(value)


def _line(*values: object) -> str:
    return "\t".join(map(_text, values)) + "\n"


def _json(value: object) -> Copied:
    """JSON text ready for COPY (orjson writes control characters as ``\\n``...: the
    backslashes are doubled)."""
    text = orjson.dumps(value).decode()
    return Copied(text.translate(_ESCAPES) if "\\" in text else text)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S+00")


def _scalar(db: psycopg.Connection[Any] | psycopg.Cursor[Any], sql: str, *params: Any) -> Any:
    """The first column of the first row of ``sql`` (None without a row)."""
    row = db.execute(sql, params or None).fetchone()
    return None if row is None else row[0]


def _libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq (psycopg.connect) takes it."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


# --- the customers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    customers: int
    interactions: int
    transactions: int
    seed: int

    def label(self) -> dict[str, int]:
        return {
            "customers": self.customers,
            "interactions": self.interactions,
            "transactions": self.transactions,
            "seed": self.seed,
        }


@dataclass
class Reference:
    """Ids of the rows everything else points to."""

    brand: int
    sources: dict[str, int]
    batches: dict[str, int]


CUSTOMER_SOURCES = ("loyalty", "ecommerce", "contest")
EVENT_SOURCES = ("campaigns", "web_events", "tickets", "orders", "callcenter")
SOURCE_KINDS = {
    "loyalty": ("loyalty", 2),
    "ecommerce": ("ecommerce", 3),
    "contest": ("contest", 6),
    "campaigns": ("campaigns", 4),
    "web_events": ("web", 5),
    "tickets": ("pos", 2),
    "orders": ("ecommerce", 2),
    "callcenter": ("callcenter", 5),
}
SOURCE_WEIGHTS = (50.0, 88.0, 100.0)  # cumulative: loyalty, e-shop, contest
CUSTOMER_COLUMNS = (
    "id", "customer_type", "status", "civility", "first_name", "last_name", "maiden_name",
    "birth_date", "gender", "email", "phone_mobile", "phone_fixed", "address_line1",
    "address_line2", "address_line3", "address_line4", "address_line5", "address_line6",
    "postal_code", "city", "insee_code", "country", "quality_score", "language", "brand_id",
    "created_at", "updated_at",
)  # fmt: skip
RECORD_COLUMNS = (
    "id", "source_id", "entity", "source_key", "raw", "normalized", "quality_flags",
    "record_hash", "line_no", "customer_id", "first_batch_id", "last_batch_id", "created_at",
    "updated_at",
)  # fmt: skip
IDENTIFIER_COLUMNS = ("id", "customer_id", "kind", "value", "source_record_id", "created_at")
NAME_KEY_COLUMNS = ("customer_id", "key")
CONSENT_COLUMNS = (
    "id", "customer_id", "channel", "purpose", "brand_id", "status", "collected_at",
    "source_id", "source_record_id", "proof", "created_at",
)  # fmt: skip
PREFERENCE_COLUMNS = (
    "id", "customer_id", "channel", "preferred", "days", "hours", "language", "max_per_week",
    "source_id", "updated_at",
)  # fmt: skip
INTERACTION_COLUMNS = (
    "id", "customer_id", "occurred_at", "channel", "direction", "type", "subject", "outcome",
    "campaign_code", "brand_id", "source_id", "payload", "created_at",
)  # fmt: skip
TRANSACTION_COLUMNS = (
    "id", "source_id", "external_id", "customer_id", "kind", "channel", "store_code",
    "brand_id", "occurred_at", "total_amount", "currency", "status", "attributes", "created_at",
)  # fmt: skip


def population(count: int, seed: int) -> list[Any]:
    """``count`` persons in households (``identity_scale.Person``), deterministic for a seed."""
    scale = _identity_scale()
    rng = random.Random(seed)
    pools = scale.Pools.build(rng)
    builder = scale._PopulationBuilder(rng, pools, scale.PhoneBook(seed), count)
    collecting = gc.isenabled()
    gc.disable()  # nothing here is garbage
    try:
        while len(builder.persons) < count:
            builder.household()
        builder.plant_homonyms()
        for person in builder.persons:
            builder.contact(person)
    finally:
        if collecting:
            gc.enable()
    persons: list[Any] = builder.persons
    return persons


@functools.cache
def _name_keys(last: str, maiden: str | None) -> tuple[str, ...]:
    return tuple(sorted(name_keys((last, maiden))))


@dataclass
class CustomerRows:
    """One chunk of customers as COPY text, table by table."""

    customer: list[str] = field(default_factory=list)
    source_record: list[str] = field(default_factory=list)
    identifier: list[str] = field(default_factory=list)
    customer_name_key: list[str] = field(default_factory=list)
    consent: list[str] = field(default_factory=list)
    preference: list[str] = field(default_factory=list)


@dataclass
class Counters:
    identifier: int = 0
    consent: int = 0
    preference: int = 0
    line_no: Counter[str] = field(default_factory=Counter)


class CustomerWriter:
    """Turns persons into golden customers and what hangs on them, as COPY text."""

    def __init__(self, ref: Reference, seed: int, today: date) -> None:
        self.ref = ref
        self.rng = random.Random(seed * 31 + 1)
        self.today = today
        self.counters = Counters()
        self.scale = _identity_scale()

    def rows(self, persons: Sequence[Any], first_id: int) -> CustomerRows:
        out = CustomerRows()
        for offset, person in enumerate(persons):
            self._person(person, first_id + offset, out)
        return out

    def _person(self, p: Any, cid: int, out: CustomerRows) -> None:
        rng, ref, scale = self.rng, self.ref, self.scale
        roll = rng.random() * 100
        source = CUSTOMER_SOURCES[bisect.bisect(SOURCE_WEIGHTS, roll)]
        source_id = ref.sources[source]
        created_day = self.today - timedelta(days=30 + int(rng.random() * 3600))
        created = f"{created_day.isoformat()} {8 + int(rng.random() * 12):02d}:{int(rng.random() * 60):02d}:00+00"  # noqa: E501
        civility = "M." if p.sex == "M" else "Mme"
        email = p.email or p.alt_email
        if source == "loyalty" and rng.random() >= 0.7:
            email = None
        mobile = p.mobile if rng.random() < (0.85 if source == "loyalty" else 0.6) else None
        fixed = p.landline if source == "loyalty" and rng.random() < 0.8 else None
        birth_share = {"loyalty": 0.92, "ecommerce": 0.55, "contest": 0.8}[source]
        birth = p.birth.isoformat() if rng.random() < birth_share else None
        complement, building, street, special, commune = p.address
        if source == "contest":  # the postal code alone
            complement = building = street = special = None
            city, insee, line6 = commune.postal_only
        elif source == "ecommerce" and rng.random() < 0.05:
            complement = building = street = special = city = insee = line6 = None
            commune = None
        else:
            city, insee, line6 = commune.city, commune.insee_code, commune.line6
        postal = commune.postal_code if commune is not None else None
        last, first, maiden = p.last_name, p.first_name, p.maiden_name
        line1 = f"{civility} {first} {last.upper()}"[:38]
        score = 30 + 20 * bool(email) + 15 * bool(mobile or fixed) + 25 * bool(street)
        score += 10 * bool(birth)
        customer_type = "prospect" if source == "contest" else "customer"
        out.customer.append(
            _line(
                cid, customer_type, "active", civility, first, last, maiden, birth, p.sex,
                email, mobile, fixed, line1, complement, building, street, special, line6,
                postal, city, insee, "FR" if commune is not None else None, score, "fr",
                ref.brand, created, created,
            )
        )  # fmt: skip
        # the source record the golden record was built from (one per customer here)
        self.counters.line_no[source] += 1
        line_no = self.counters.line_no[source]
        if source == "loyalty":
            key = scale.record_key(scale.LOYALTY, cid)
            ids = {"loyalty_card": key}
        elif source == "ecommerce":
            key = scale.record_key(scale.ECOMMERCE, cid)
            ids = {"account_id": key}
        else:
            key = scale.record_key(scale.CONTEST, cid)
            ids = {}
        if email:
            local, _, domain = email.partition("@")
            ids["email"] = match_key(local, domain)
        if mobile:
            ids["phone_mobile"] = mobile
        if fixed:
            ids["phone_fixed"] = fixed
        normalized: dict[str, Any] = {
            "civility": civility,
            "first_name": first,
            "last_name": last,
            "maiden_name": maiden,
            "birth_date": birth,
            "email": email,
            "phone_mobile": mobile,
            "phone_fixed": fixed,
            "address_street": street,
            "postal_code": postal,
            "city": city,
            "customer_type": customer_type,
            "quality_score": score,
            "identifiers": ids,
        }
        raw = {
            "key": key,
            "civilite": "MME" if p.sex == "F" else "M",
            "nom": last.upper(),
            "prenom": first,
            "email": email or "",
            "code_postal": postal or "",
        }
        record_hash = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        batch = ref.batches[source]
        out.source_record.append(
            _line(
                cid, source_id, "customer", key, _json(raw), _json(normalized), "[]",
                record_hash, line_no, cid, batch, batch, created, created,
            )
        )  # fmt: skip
        for kind, value in ids.items():
            self.counters.identifier += 1
            out.identifier.append(_line(self.counters.identifier, cid, kind, value, cid, created))
        for name_key in _name_keys(last, maiden):
            out.customer_name_key.append(f"{cid}\t{_text(name_key)}\n")
        self._consents(cid, source_id, email, mobile, created, source, out)

    def _consents(
        self,
        cid: int,
        source_id: int,
        email: str | None,
        mobile: str | None,
        created: str,
        source: str,
        out: CustomerRows,
    ) -> None:
        rng, brand = self.rng, self.ref.brand
        proof = _json({"source": source, "form": "inscription", "text_version": "2023-02"})
        given: list[tuple[str, str]] = []
        if email and rng.random() < 0.85:
            given.append(("email", "granted" if rng.random() < 0.7 else "denied"))
        if mobile and rng.random() < 0.7:
            given.append(("sms", "granted" if rng.random() < 0.55 else "denied"))
        if rng.random() < 0.08:
            given.append(("postal", "denied"))
        for channel, status in given:
            self.counters.consent += 1
            out.consent.append(
                _line(
                    self.counters.consent, cid, channel, "marketing", brand, status, created,
                    source_id, cid, proof, created,
                )
            )  # fmt: skip
        if rng.random() < 0.08:
            self.counters.preference += 1
            channel = rng.choice(("email", "sms", "any"))
            days = rng.choice(("mon,tue,wed,thu,fri", "sat,sun", None))
            hours = rng.choice(("09:00-12:00", "14:00-18:00", "18:00-21:00", None))
            out.preference.append(
                _line(
                    self.counters.preference, cid, channel, "t", days, hours, "fr",
                    rng.choice((1, 2, 3, None)), source_id, created,
                )
            )  # fmt: skip


# --- the history ---------------------------------------------------------------------------

# weight, channel, direction, type, source, subjects, outcomes, campaign prefix
KINDS: tuple[tuple[float, str, str, str, str, tuple[str, ...], tuple[str | None, ...], str | None], ...] = (  # noqa: E501
    (30.0, "email", "outbound", "email_sent", "campaigns",
     ("Newsletter {month}", "Offre spéciale {month}", "Vos avantages fidélité",
      "Ventes privées : jusqu'à -50 %"), (None,), "NL"),
    (9.0, "email", "inbound", "email_open", "campaigns",
     ("Newsletter {month}", "Offre spéciale {month}"), (None,), "NL"),
    (2.5, "email", "inbound", "email_click", "campaigns",
     ("Newsletter {month}", "Offre spéciale {month}"), (None,), "NL"),
    (0.3, "email", "inbound", "unsubscribe", "campaigns", ("Newsletter {month}",), (None,), "NL"),
    (8.0, "sms", "outbound", "sms_sent", "campaigns",
     ("Promo week-end {month}", "Votre bon d'achat expire bientôt"), ("delivered", "failed"),
     "SMS"),
    (0.3, "sms", "inbound", "sms_reply", "campaigns", ("STOP",), ("unsubscribe",), "SMS"),
    (13.0, "web", "inbound", "page_view", "web_events",
     ("/", "/nouveautes", "/promotions", "/magasins", "/compte", "/panier"), (None,), None),
    (7.0, "web", "inbound", "product_view", "web_events", ("Fiche produit",), (None,), None),
    (2.0, "web", "inbound", "cart_add", "web_events", ("Ajout au panier",), (None,), None),
    (1.0, "web", "inbound", "order", "orders", ("Commande en ligne",), ("paid", "cancelled"),
     None),
    (9.0, "store", "inbound", "purchase", "tickets", ("Achat en magasin",), (None,), None),
    (2.5, "store", "inbound", "visit", "tickets", ("Visite en magasin",), (None,), None),
    (2.0, "phone", "inbound", "call", "callcenter",
     ("Question sur une commande", "Carte de fidélité", "Livraison", "Retour produit"),
     ("answered", "resolved", "callback"), None),
    (0.8, "phone", "outbound", "call", "callcenter", ("Relance", "Enquête de satisfaction"),
     ("reached", "voicemail", "no_answer"), None),
    (0.5, "phone", "inbound", "complaint", "callcenter",
     ("Produit défectueux", "Retard de livraison", "Erreur de caisse"), ("open", "closed"), None),
    (3.0, "postal", "outbound", "letter", "campaigns",
     ("Catalogue {season}", "Bon de réduction anniversaire"), (None,), "CAT"),
)  # fmt: skip
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
          "octobre", "novembre", "décembre")  # fmt: skip
HOUR_WEIGHTS = (1, 0.5, 0.3, 0.2, 0.2, 0.5, 2, 5, 8, 10, 11, 11, 10, 9, 9, 9, 9, 10, 12, 13,
                12, 9, 5, 2)  # fmt: skip


def _clock(rng: random.Random, size: int = 20_000) -> list[str]:
    """Times of day (`` HH:MM:SS+00``) drawn with the hours' weights: pick uniformly."""
    hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=size)
    return [f" {h:02d}:{int(rng.random() * 60):02d}:{int(rng.random() * 60):02d}+00" for h in hours]


def _day_counts(total: int, days: Sequence[date]) -> list[int]:
    """``total`` spread over ``days``: growing two-fold over the period, a December peak,
    fewer on Sundays; exact by largest remainders."""
    weights = []
    for i, day in enumerate(days):
        w = 1 + i / len(days)
        w *= 1.6 if day.month == 12 else 1.0
        w *= 0.6 if day.weekday() == 6 else 1.0
        weights.append(w)
    scale = total / sum(weights)
    raw = [w * scale for w in weights]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def customer_weights(customers: int, seed: int) -> list[float]:
    """Cumulative activity weights, log-normal (sigma 1.2): most customers have a handful of
    interactions, a few have hundreds."""
    rng = random.Random(seed * 17 + 3)
    return list(itertools.accumulate(rng.lognormvariate(0.0, 1.2) for _ in range(customers)))


def _templates(ref: Reference, months: Sequence[date]) -> list[list[list[str]]]:
    """Per month, per kind of interaction, the COPY text of every column from ``channel`` to
    ``payload`` (subjects, outcomes, campaign codes and payloads vary within a kind)."""
    out = []
    for month in months:
        label = f"{MONTHS[month.month - 1]} {month.year}"
        season = f"{'printemps-été' if 3 <= month.month <= 8 else 'automne-hiver'} {month.year}"
        per_kind = []
        for _, channel, direction, kind, source, subjects, outcomes, prefix in KINDS:
            campaign = f"{prefix}-{month.year}-{month.month:02d}" if prefix else None
            variants = []
            for subject in subjects:
                text = subject.format(month=label, season=season)
                for outcome in outcomes:
                    for n in range(20 if kind in ("product_view", "cart_add", "purchase") else 1):
                        payload: dict[str, Any] = {}
                        if kind in ("product_view", "cart_add"):
                            payload = {"sku": f"SKU{(n * 977 + month.month * 31) % 20000:05d}"}
                        elif kind == "purchase":
                            payload = {"store": f"M{1 + (n * 7) % 60:03d}"}
                        elif kind == "page_view":
                            payload = {"path": text}
                        variants.append(
                            "\t".join(
                                (
                                    channel, direction, kind, _text(text), _text(outcome),
                                    _text(campaign), str(ref.brand), str(ref.sources[source]),
                                    _json(payload),
                                )
                            )
                        )  # fmt: skip
            per_kind.append(variants)
        out.append(per_kind)
    return out


def interaction_chunks(
    ref: Reference, *, total: int, cumulative: Sequence[float], seed: int, today: date
) -> Iterator[tuple[int, str]]:
    """The interactions as COPY text, in time order: (rows, text) chunks."""
    rng = random.Random(seed * 101 + 7)
    days = [today - timedelta(days=HISTORY_DAYS - i) for i in range(HISTORY_DAYS)]
    months = sorted({d.replace(day=1) for d in days})
    month_index = {m: i for i, m in enumerate(months)}
    templates = _templates(ref, months)
    kind_cum = list(itertools.accumulate(k[0] for k in KINDS))
    kind_total = kind_cum[-1]
    clock = _clock(rng)
    n_clock = len(clock)
    weight_total = cumulative[-1]
    n_customers = len(cumulative)
    random_ = rng.random
    bisect_ = bisect.bisect
    iid = 0
    out: list[str] = []
    for day, count in zip(days, _day_counts(total, days), strict=True):
        stamp = day.isoformat()
        kinds = templates[month_index[day.replace(day=1)]]
        for _ in range(count):
            cid = min(bisect_(cumulative, random_() * weight_total), n_customers - 1) + 1
            variants = kinds[bisect_(kind_cum, random_() * kind_total)]
            moment = stamp + clock[int(random_() * n_clock)]
            iid += 1
            out.append(
                f"{iid}\t{cid}\t{moment}\t{variants[int(random_() * len(variants))]}\t{moment}\n"
            )
            if len(out) == CHUNK_ROWS:
                yield len(out), "".join(out)
                out = []
    if out:
        yield len(out), "".join(out)


def transaction_chunks(
    ref: Reference, *, total: int, cumulative: Sequence[float], seed: int, today: date
) -> Iterator[tuple[int, str]]:
    """Tickets (70 %) and web orders, as COPY text in time order: (rows, text) chunks."""
    rng = random.Random(seed * 211 + 5)
    days = [today - timedelta(days=HISTORY_DAYS - i) for i in range(HISTORY_DAYS)]
    clock = _clock(rng)
    n_clock = len(clock)
    weight_total = cumulative[-1]
    n_customers = len(cumulative)
    tickets, orders, brand = ref.sources["tickets"], ref.sources["orders"], ref.brand
    random_ = rng.random
    tid = 0
    out: list[str] = []
    for day, count in zip(days, _day_counts(total, days), strict=True):
        stamp = day.isoformat()
        for _ in range(count):
            cid = min(bisect.bisect(cumulative, random_() * weight_total), n_customers - 1) + 1
            moment = stamp + clock[int(random_() * n_clock)]
            amount = min(rng.lognormvariate(3.6, 0.8), 5000.0)
            items = 1 + int(random_() * 6)
            tid += 1
            if random_() < 0.7:
                store = f"M{1 + int(random_() * 60):03d}"
                head = f"{tid}\t{tickets}\tT{tid:010d}\t{cid}\tticket\tstore\t{store}"
            else:
                head = f"{tid}\t{orders}\tC{tid:010d}\t{cid}\torder\tweb\t{NULL}"
            status = "returned" if random_() < 0.03 else "completed"
            out.append(
                f"{head}\t{brand}\t{moment}\t{amount:.2f}\tEUR\t{status}\t"
                f'{{"items": {items}}}\t{moment}\n'
            )
            if len(out) == CHUNK_ROWS:
                yield len(out), "".join(out)
                out = []
    if out:
        yield len(out), "".join(out)


# --- loading ---------------------------------------------------------------------------------


@dataclass
class LoadReport:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    foreign_keys_checked: bool = False


def _copy(cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], text: str) -> None:
    if not text:
        return
    cols = ", ".join(f'"{c}"' for c in columns)
    with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
        copy.write(text)


def _reference(cur: psycopg.Cursor[Any], now: str) -> Reference:
    brand = _scalar(
        cur,
        "INSERT INTO brand (code, name) VALUES ('SOLEIL', 'Soleil') "
        "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    sources, batches = {}, {}
    for name, (kind, rank) in SOURCE_KINDS.items():
        sources[name] = _scalar(
            cur,
            "INSERT INTO source (name, kind, brand_id, trust_rank, restrictions, created_at) "
            "VALUES (%s, %s, %s, %s, '[]', %s) "
            "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind RETURNING id",
            name, kind, brand, rank, now,
        )  # fmt: skip
    for name in CUSTOMER_SOURCES:
        batches[name] = _scalar(
            cur,
            "INSERT INTO import_batch (source_id, entity, file_name, file_sha256, mapping_sha256,"
            " file_format, status, committed_line, rows_read, accepted, updated, unchanged,"
            " rejected, started_at, finished_at) VALUES (%s, 'customer', %s, %s, %s, 'csv',"
            " 'completed', 0, 0, 0, 0, 0, 0, %s, %s) RETURNING id",
            sources[name], f"bench-{name}.csv", "0" * 64, "0" * 64, now, now,
        )  # fmt: skip
    return Reference(brand, sources, batches)


def _secondary_indexes(cur: psycopg.Cursor[Any]) -> list[tuple[str, str]]:
    """(name, definition) of the loaded tables' indexes that back no constraint."""
    cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
        " FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relname = ANY(%s) AND t.relnamespace = current_schema()::regnamespace"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        " ORDER BY t.relname, 1",
        (list(LOADED_TABLES),),
    )
    return [(str(name), str(definition)) for name, definition in cur.fetchall()]


def load(url: str, sizes: Sizes, *, today: date | None = None) -> LoadReport:
    """Load ``sizes`` of generated data into the migrated, empty PostgreSQL database at
    ``url`` (a SQLAlchemy or libpq URL). Returns the row counts and the time of each step."""
    today = today or datetime.now(UTC).date()
    report = LoadReport()
    started = time.perf_counter()
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cur:
        if _scalar(cur, "SELECT EXISTS (SELECT 1 FROM customer)"):
            raise SystemExit("the bench database already holds customers: start from an empty one")
        try:
            cur.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            conn.rollback()
            report.foreign_keys_checked = True
            console.print("[yellow]not a superuser: foreign keys are checked row by row[/]")
        cur.execute("SET synchronous_commit = off")
        cur.execute("SET maintenance_work_mem = '1GB'")
        indexes = _secondary_indexes(cur)
        for name, _ in indexes:
            cur.execute(f"DROP INDEX {name}")
        ref = _reference(cur, _stamp(datetime.now(UTC)))
        with _progress() as progress:
            step = time.perf_counter()
            task = progress.add_task("population", total=None)
            persons = population(sizes.customers, sizes.seed)
            progress.update(task, total=1, completed=1)
            report.seconds["population"] = time.perf_counter() - step

            step = time.perf_counter()
            writer = CustomerWriter(ref, sizes.seed, today)
            task = progress.add_task("customers", total=len(persons))
            for start in range(0, len(persons), CHUNK_PERSONS):
                part = persons[start : start + CHUNK_PERSONS]
                rows = writer.rows(part, start + 1)
                _copy(cur, "customer", CUSTOMER_COLUMNS, "".join(rows.customer))
                _copy(cur, "source_record", RECORD_COLUMNS, "".join(rows.source_record))
                _copy(cur, "identifier", IDENTIFIER_COLUMNS, "".join(rows.identifier))
                _copy(cur, "customer_name_key", NAME_KEY_COLUMNS, "".join(rows.customer_name_key))
                _copy(cur, "consent", CONSENT_COLUMNS, "".join(rows.consent))
                _copy(cur, "preference", PREFERENCE_COLUMNS, "".join(rows.preference))
                progress.advance(task, len(part))
            del persons
            _name_keys.cache_clear()
            report.seconds["customers"] = time.perf_counter() - step

            cumulative = customer_weights(sizes.customers, sizes.seed)
            for table, columns, total, chunks in (
                ("interaction", INTERACTION_COLUMNS, sizes.interactions, interaction_chunks),
                ("transaction", TRANSACTION_COLUMNS, sizes.transactions, transaction_chunks),
            ):
                step = time.perf_counter()
                task = progress.add_task(f"{table}s", total=total)
                cols = ", ".join(f'"{c}"' for c in columns)
                with cur.copy(f'COPY "{table}" ({cols}) FROM STDIN') as copy:
                    for count, text in chunks(
                        ref, total=total, cumulative=cumulative, seed=sizes.seed, today=today
                    ):
                        copy.write(text)
                        progress.advance(task, count)
                report.seconds[f"{table}s"] = time.perf_counter() - step
            conn.commit()

            step = time.perf_counter()
            task = progress.add_task("indexes", total=len(indexes))
            for name, definition in indexes:
                progress.update(task, description=f"index {name}")
                cur.execute(definition)
                conn.commit()
                progress.advance(task)
            for table in LOADED_TABLES:
                if table == "customer_name_key":
                    continue
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence(%s, 'id'),"
                    f' COALESCE((SELECT MAX(id) FROM "{table}"), 0) + 1, false)',
                    (table,),
                )
            conn.commit()
            report.seconds["indexes"] = time.perf_counter() - step

            step = time.perf_counter()
            conn.autocommit = True
            task = progress.add_task("vacuum analyze", total=len(LOADED_TABLES))
            for table in LOADED_TABLES:
                progress.update(task, description=f"vacuum analyze {table}")
                cur.execute(f'VACUUM (ANALYZE) "{table}"')
                progress.advance(task)
            report.seconds["vacuum"] = time.perf_counter() - step
            step = time.perf_counter()
            refresh_consent_state(url)
            cur.execute("ANALYZE consent_state")
            report.seconds["consent states"] = time.perf_counter() - step
        for table in LOADED_TABLES:
            report.counts[table] = int(_scalar(cur, f'SELECT COUNT(*) FROM "{table}"'))
    report.seconds["total"] = time.perf_counter() - started
    return report


def refresh_consent_state(url: str) -> None:
    """consent_state rebuilt from the consent rows COPY wrote past the consent service."""
    from tournesol.consent import service as consent_service
    from tournesol.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            consent_service.refresh_state(session, customers=None)
    finally:
        engine.dispose()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


# --- the database ----------------------------------------------------------------------------


def _database_url(server_url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _admin(server_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(_libpq(_database_url(server_url, "postgres")), autocommit=True)


def _marker(server_url: str, name: str) -> dict[str, Any] | None:
    with _admin(server_url) as admin:
        row = admin.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    if row is None:
        return None
    try:
        found = json.loads(row[0] or "")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def prepare_database(args: argparse.Namespace, sizes: Sizes) -> tuple[str, LoadReport | None]:
    """The bench database's URL, loaded (and the load's report), or reused as it is."""
    from tournesol.db import make_engine
    from tournesol.migrations import upgrade

    name = args.database
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or "bench" not in name:
        raise SystemExit(f"--database {name!r}: a plain lower-case name containing 'bench'")
    url = _database_url(args.server_url, name)
    marker = _marker(args.server_url, name)
    reuse = args.reuse and marker is not None and marker.get("sizes") == sizes.label()
    if args.reuse and not reuse:
        console.print(f"[yellow]{name} does not hold this load ({marker}): loading afresh[/]")
    if not reuse:
        with _admin(args.server_url) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    if reuse:
        console.print(f"reusing {name}, loaded {(marker or {}).get('loaded_at')}")
        return url, None
    console.print(f"loading {name}: {sizes.label()}")
    report = load(url, sizes)
    note = {"sizes": sizes.label(), "loaded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    note["load_seconds"] = round(report.seconds["total"], 1)
    with _admin(args.server_url) as admin:
        admin.execute(f"COMMENT ON DATABASE {name} IS {_quote(json.dumps(note))}")
    return url, report


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def drop_database(args: argparse.Namespace) -> None:
    with _admin(args.server_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


def database_facts(url: str) -> dict[str, Any]:
    """Size, row estimates and the PostgreSQL settings that matter here."""
    facts: dict[str, Any] = {}
    with psycopg.connect(_libpq(url)) as conn:
        facts["postgresql"] = _scalar(conn, "SHOW server_version")
        size = _scalar(conn, "SELECT pg_database_size(current_database())")
        facts["database_gb"] = round(size / 1e9, 2)
        settings = {}
        for name in (
            "shared_buffers", "work_mem", "effective_cache_size", "max_connections",
            "synchronous_commit", "random_page_cost", "max_parallel_workers_per_gather", "jit",
        ):  # fmt: skip
            settings[name] = _scalar(conn, f"SHOW {name}")
        facts["settings"] = settings
        rows = {}
        for table in ("customer", "interaction", "transaction", "identifier", "collected_event"):
            found = conn.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE relname = %s AND relkind = 'r'",
                (table,),
            ).fetchone()
            if found is not None:
                rows[table] = int(found[0])
        facts["rows"] = rows
    return facts


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A customer the requests are about."""

    id: int
    first_name: str | None
    last_name: str | None
    maiden_name: str | None
    email: str | None
    phone_mobile: str | None
    phone_fixed: str | None
    postal_code: str | None
    card: str | None
    account: str | None


def draw_samples(url: str, count: int, seed: int) -> list[Sample]:
    """``count`` random active customers with their card and account id (if any)."""
    rng = random.Random(seed * 7 + 11)
    with psycopg.connect(_libpq(url)) as conn:
        top = _scalar(conn, "SELECT COALESCE(MAX(id), 0) FROM customer")
        ids = sorted({1 + int(rng.random() * top) for _ in range(count * 2)})
        rows = conn.execute(
            "SELECT c.id, c.first_name, c.last_name, c.maiden_name, c.email, c.phone_mobile,"
            " c.phone_fixed, c.postal_code,"
            " (SELECT MIN(value) FROM identifier i WHERE i.customer_id = c.id"
            "   AND i.kind = 'loyalty_card'),"
            " (SELECT MIN(value) FROM identifier i WHERE i.customer_id = c.id"
            "   AND i.kind = 'account_id')"
            " FROM customer c WHERE c.id = ANY(%s) AND c.status = 'active'",
            (ids,),
        ).fetchall()
    samples = [Sample(*row) for row in rows]
    rng.shuffle(samples)
    return samples[:count]


def phone_as_typed(e164: str, rng: random.Random) -> str:
    """A French number the way people type it: ``06 12 34 56 78``, ``0612345678``,
    ``06.12.34.56.78``, ``+33 6 12 34 56 78``, ``0033612345678``."""
    national = _identity_scale().national(e164)
    pairs = " ".join(national[i : i + 2] for i in range(0, len(national), 2))
    forms = (
        pairs,
        national,
        pairs.replace(" ", "."),
        f"+33 {national[1]} {' '.join(national[i : i + 2] for i in range(2, 10, 2))}",
        "00" + e164[1:],
        pairs.replace(" ", "-"),
        e164,
    )
    if not e164.startswith("+33"):
        return forms[rng.choice((0, 1, 6))]
    return forms[int(rng.random() * len(forms))]


_SOUND_ALIKES = (
    ("T", "D"), ("D", "T"), ("AULT", "AUT"), ("EAU", "O"), ("AU", "O"), ("PH", "F"), ("Y", "I"),
    ("LL", "L"), ("NN", "N"), ("TT", "T"), ("SS", "S"), ("C", "K"), ("QU", "K"), ("EZ", "ES"),
    ("AIS", "AIT"), ("ER", "E"), ("ET", "E"),
)  # fmt: skip


def sound_alike(name: str, rng: random.Random) -> str:
    """A spelling that sounds the same (DUPONT -> DUPOND, RENAULT -> RENAUT), if one of the
    usual swaps applies, else the name as it is."""
    upper = name.upper()
    options = [(a, b) for a, b in _SOUND_ALIKES if a in upper[1:]]
    if not options:
        return upper
    a, b = options[int(rng.random() * len(options))]
    at = upper.rfind(a)
    return upper[:at] + b + upper[at + len(a) :]


def search_term(sample: Sample, rng: random.Random) -> tuple[str, str] | None:
    """What a member of staff types to find this customer, and what kind of search it is."""
    scale = _identity_scale()
    roll = rng.random()
    last, first = sample.last_name or "", sample.first_name or ""
    if roll < 0.22 and last:
        return "name", rng.choice((last, last.upper(), last.lower()))
    if roll < 0.32 and last:
        typed = sound_alike(last, rng) if rng.random() < 0.5 else scale._typo(rng, last)
        return "name typo", typed.lower()
    if roll < 0.42 and last and first:
        return "name first name", rng.choice((f"{last} {first}", f"{first} {last}")).lower()
    if roll < 0.47 and last and sample.postal_code:
        return "name postal code", f"{last.lower()} {sample.postal_code}"
    if roll < 0.52 and len(last) >= 4:
        return "name prefix", last[: 3 + int(rng.random() * (len(last) - 2))].lower()
    number = sample.phone_mobile or sample.phone_fixed
    if roll < 0.67 and number:
        return "phone", phone_as_typed(number, rng)
    if roll < 0.82 and sample.email:
        email = sample.email
        return "email", email.upper() if rng.random() < 0.1 else email
    if roll < 0.92 and (sample.card or sample.account):
        if sample.card and (sample.account is None or rng.random() < 0.6):
            card = sample.card
            spaced = f"{card[:4]} {card[4:8]} {card[8:12]} {card[12:]}"
            return "card", card if rng.random() < 0.8 else spaced
        return "account id", sample.account or ""
    if roll < 0.95 and sample.postal_code:
        return "postal code", sample.postal_code
    if last:
        return "name", last
    return None


@dataclass
class Requests:
    search: list[str]
    search_kinds: Counter[str]
    detail: list[str]
    timeline: list[str]
    page: list[str]
    identities: list[tuple[str, str]]


def build_requests(samples: Sequence[Sample], seed: int, paths: dict[str, str]) -> Requests:
    """The request paths of every read scenario, and the identities events are sent for."""
    rng = random.Random(seed * 13 + 1)
    search, kinds = [], Counter[str]()
    for sample in samples:
        found = search_term(sample, rng)
        if found is not None:
            kind, term = found
            kinds[kind] += 1
            search.append(f"{paths['search']}?q={quote(term)}")
    detail = [paths["detail"].format(id=s.id) for s in samples]
    timeline = [paths["timeline"].format(id=s.id) for s in samples]
    page = [p for pair in zip(detail, timeline, strict=True) for p in pair]
    identities = [(s.account, s.email or "") for s in samples if s.account]
    return Requests(search, kinds, detail, timeline, page, identities)


# --- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``tournesol serve`` on the bench database, in a process group of its own."""

    def __init__(self, url: str, workers: int, log_path: Path) -> None:
        self.url = url
        self.workers = workers
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        exe = Path(sys.executable).with_name("tournesol")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tournesol"]
        env = os.environ | {
            "TOURNESOL_DATABASE_URL": self.url,
            "TOURNESOL_SECRET_KEY": secrets.token_urlsafe(48),
            "TOURNESOL_WEB_WORKERS": str(self.workers),
        }
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the server stopped on start:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.base}/api/v1/openapi.json", timeout=5) as r:
                    self.openapi = json.loads(r.read())
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise SystemExit("the server did not answer within 120 s")

    def __exit__(self, *_: object) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def pids(self) -> list[int]:
        """The server's processes: the one started and its descendants."""
        assert self.process is not None
        return _descendants(self.process.pid)

    def endpoints(self) -> dict[str, str]:
        """The paths of the endpoints loaded, as the server's OpenAPI lists them (``{id}``
        for the customer id); a missing one is left out."""
        found: dict[str, str] = {}
        paths = self.openapi.get("paths", {})
        for path, operations in paths.items():
            if path == "/api/v1/customers" and "get" in operations:
                found["search"] = path
            elif re.fullmatch(r"/api/v1/customers/\{[^}/]+\}", path) and "get" in operations:
                found["detail"] = re.sub(r"\{[^}]+\}", "{id}", path)
            elif re.fullmatch(r"/api/v1/customers/\{[^}/]+\}/timeline", path) and "get" in (
                operations
            ):
                found["timeline"] = re.sub(r"\{[^}]+\}", "{id}", path)
            elif path == "/v1/batch" and "post" in operations:
                found["ingest"] = path
        return found


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


class CpuMeter:
    """Over a run: CPU time of the server's processes, PostgreSQL's (backends that ended
    included: the postmaster reaps them) and wrk's (this process's finished children), and
    what the database did (sessions opened, commits, blocks read from disk or found in
    shared buffers). CPU as shares of the machine: 100 % = all cores busy; ``other`` is what
    other programs used, ``steal`` what the hypervisor gave to other machines."""

    def __init__(self, server: Server, url: str) -> None:
        self.server = server
        self.url = url
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.cores = os.cpu_count() or 1

    def _snapshot(self) -> dict[str, float]:
        out = {"server": 0.0, "postgres": 0.0}
        server = set(self.server.pids())
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            own = int(fields[11]) + int(fields[12])
            if int(entry.name) in server:
                out["server"] += own / self.ticks
            elif name == "postgres":
                out["postgres"] += (own + int(fields[13]) + int(fields[14])) / self.ticks
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["wrk"] = children.ru_utime + children.ru_stime
        first = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        out["busy"] = (sum(first) - first[3] - first[4] - first[7]) / self.ticks
        out["steal"] = first[7] / self.ticks  # time the hypervisor gave our cores to others
        out["clock"] = time.monotonic()
        with psycopg.connect(_libpq(self.url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions, xact_commit, blks_read, blks_hit FROM pg_stat_database"
                " WHERE datname = current_database()"
            ).fetchone()
        if row is not None:
            names = ("sessions", "commits", "blks_read", "blks_hit")
            out |= {name: float(value) for name, value in zip(names, row, strict=True)}
        return out

    def start(self) -> None:
        self.begin = self._snapshot()

    def stop(self) -> dict[str, float]:
        end = self._snapshot()
        delta = {name: end[name] - self.begin.get(name, 0.0) for name in end}
        seconds = delta["clock"] * self.cores
        out = {
            f"cpu_{name}_pct": round(100 * delta[name] / seconds, 1)
            for name in ("server", "postgres", "wrk", "busy", "steal")
        }
        out["cpu_other_pct"] = round(
            out["cpu_busy_pct"] - out["cpu_server_pct"] - out["cpu_postgres_pct"]
            - out["cpu_wrk_pct"],
            1,
        )  # fmt: skip
        out["pg_sessions_opened"] = int(delta.get("sessions", 0)) - 1  # the end snapshot's
        out["pg_commits"] = int(delta.get("commits", 0))
        reads = delta.get("blks_read", 0) + delta.get("blks_hit", 0)
        out["pg_buffer_hit_pct"] = round(100 * delta.get("blks_hit", 0) / reads, 2) if reads else 0
        return out


def machine_busy(seconds: float = 3.0) -> float:
    """How busy the machine's cores are over ``seconds`` (percent of all cores)."""

    def busy() -> tuple[int, int]:
        first = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(first) - first[3] - first[4], sum(first)

    b0, t0 = busy()
    time.sleep(seconds)
    b1, t1 = busy()
    return 100 * (b1 - b0) / max(1, t1 - t0)


def wait_for_quiet(threshold: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until the machine, with this benchmark idle, is less than
    ``threshold`` % busy: other programs on the same cores skew every figure. Returns the
    last share seen."""
    deadline = time.monotonic() + timeout
    while True:
        share = machine_busy()
        if share < threshold or time.monotonic() > deadline:
            return round(share, 1)
        console.print(f"  the machine is {share:.0f} % busy with other work: waiting...")
        time.sleep(7)


def make_keys(url: str, run: str) -> tuple[str, str]:
    """Two API keys: customers:read, and events:write filed under the bench event source."""
    from tournesol.auth import rules
    from tournesol.auth import service as auth_service
    from tournesol.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            _, read = auth_service.create_api_key(
                session, name=f"bench {run} read", scopes=[rules.CUSTOMERS_READ]
            )
            _, write = auth_service.create_api_key(
                session,
                name=f"bench {run} events",
                scopes=[rules.EVENTS_WRITE],
                source_name=EVENT_SOURCE,
            )
    finally:
        engine.dispose()
    return read, write


def revoke_keys(url: str, run: str) -> None:
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(
            "UPDATE api_key SET revoked_at = now() WHERE name LIKE %s AND revoked_at IS NULL",
            (f"bench {run} %",),
        )


def forget_runs(url: str) -> None:
    """Remove what the scenarios wrote (audit rows of the bench keys, collected events and
    their interactions and links), so that the next ``--reuse`` starts from the loaded base."""
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(
            "DELETE FROM audit_log WHERE actor IN"
            " (SELECT 'api_key:' || id FROM api_key WHERE name LIKE 'bench %')"
        )
        source = _scalar(conn, "SELECT id FROM source WHERE name = %s", EVENT_SOURCE)
        if source is None:
            return
        for table in ("visitor_link", "collected_event", "interaction"):
            if _scalar(conn, "SELECT to_regclass(%s)", table) is not None:
                conn.execute(f'DELETE FROM "{table}" WHERE source_id = %s', (source,))


# --- wrk ---------------------------------------------------------------------------------------


def wrk_binary() -> str:
    """wrk's path, installed from Debian if missing (when this runs as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        console.print("wrk is missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "wrk is needed to load the server (Debian: apt-get install wrk; else build it from "
        "https://github.com/wg/wrk); --load-only loads the database without it"
    )


def run_wrk(
    script: Path,
    base: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    args: Sequence[str],
    env: dict[str, str],
) -> dict[str, Any]:
    """One wrk run; the script's ``BENCH {json}`` line, parsed."""
    command = [
        wrk_binary(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
        "--timeout", "60s", "-s", str(script), base, "--", *args,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=os.environ | env, timeout=seconds + 180
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH "))
            return result
    raise SystemExit(f"wrk failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


# --- scenarios -----------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    url: str
    server: Server
    meter: CpuMeter
    requests: Requests
    read_key: str
    write_key: str
    run: str
    workdir: Path


def read_scenario(
    ctx: Context, name: str, paths: Sequence[str], think_ms: int = 0
) -> dict[str, Any]:
    """One read scenario: a warm-up, then the measured run. With ``think_ms``, each
    connection pauses that long on average between an answer and its next request."""
    args = ctx.args
    listing = ctx.workdir / f"{name}.txt"
    listing.write_text("\n".join(paths) + "\n", encoding="utf-8")
    env = {"BENCH_TOKEN": ctx.read_key, "BENCH_THINK_MS": str(think_ms)}
    common = {"connections": args.connections, "threads": args.threads, "env": env}
    wrk_args = [str(listing), str(args.threads)]
    if args.warmup:
        run_wrk(READ_SCRIPT, ctx.server.base, seconds=args.warmup, args=wrk_args, **common)
    ctx.meter.start()
    result = run_wrk(READ_SCRIPT, ctx.server.base, seconds=args.duration, args=wrk_args, **common)
    cpu = ctx.meter.stop()
    label = f"{name} (think {think_ms} ms)" if think_ms else name
    extra = {"distinct_requests": len(paths), "think_ms": think_ms}
    return _per_request(_figures(label, result, args.connections) | cpu | extra)


def _figures(name: str, result: dict[str, Any], connections: int) -> dict[str, Any]:
    seconds = result["duration_us"] / 1e6
    socket_errors = sum(
        result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    out = {
        "scenario": name,
        "connections": connections,
        "seconds": round(seconds, 1),
        "requests": result["requests"],
        "requests_per_s": round(result["requests"] / seconds, 1),
        "p50_ms": round(result["p50_us"] / 1000, 1),
        "p90_ms": round(result["p90_us"] / 1000, 1),
        "p95_ms": round(result["p95_us"] / 1000, 1),
        "p99_ms": round(result["p99_us"] / 1000, 1),
        "max_ms": round(result["max_us"] / 1000, 1),
        "mean_ms": round(result["mean_us"] / 1000, 1),
        "socket_errors": socket_errors,
        "socket_errors_by_kind": {
            k: result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        },
    }
    if "non2xx" in result:
        out["non_2xx"] = result["non2xx"]
        out["statuses"] = result["statuses"]
    return out


def _per_request(out: dict[str, Any]) -> dict[str, Any]:
    """CPU milliseconds per request of the server and of PostgreSQL, from their shares."""
    core_ms = (os.cpu_count() or 1) * out["seconds"] * 1000 / max(1, out["requests"])
    return out | {
        "server_cpu_ms_per_request": round(out["cpu_server_pct"] / 100 * core_ms, 2),
        "postgres_cpu_ms_per_request": round(out["cpu_postgres_pct"] / 100 * core_ms, 2),
    }


def _batches(thread: dict[str, Any]) -> tuple[set[int], set[int], dict[int, int]]:
    """Of one wrk thread: the batches acknowledged (2xx), those sent and not answered, and
    the failed ones with their status. The first thread's first batch was wrk's script check,
    never sent."""
    first = 2 if thread["id"] == 1 else 1
    sent = list(range(first, thread["built"] + 1))
    answered = sent[: thread["responses"]]
    failed = {}
    for part in filter(None, thread["failed"].split(",")):
        number, status = part.split(":")
        failed[answered[int(number) - 1]] = int(status)
    acked = set(answered) - set(failed)
    return acked, set(sent[thread["responses"] :]), failed


def ingest_scenario(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    listing = ctx.workdir / "identities.txt"
    listing.write_text("".join(f"{u}\t{e}\n" for u, e in ctx.requests.identities), "utf-8")
    auth = "Basic " + base64.b64encode(f"{ctx.write_key}:".encode()).decode()
    env = {"BENCH_WRITE_AUTH": auth}
    conns = args.ingest_connections
    common = {"connections": conns, "threads": conns, "env": env}
    batch = str(args.batch_size)
    if args.warmup:
        warm = [str(listing), f"{ctx.run}w", batch]
        run_wrk(BATCH_SCRIPT, ctx.server.base, seconds=args.warmup, args=warm, **common)
    ctx.meter.start()
    result = run_wrk(
        BATCH_SCRIPT,
        ctx.server.base,
        seconds=args.duration,
        args=[str(listing), ctx.run, batch],
        **common,
    )
    cpu = ctx.meter.stop()
    out = _per_request(_figures("ingest", result, conns) | cpu)
    acked: set[str] = set()
    in_flight: set[str] = set()
    failed: Counter[int] = Counter()
    size = args.batch_size
    for thread in result["threads"]:
        ok, pending, bad = _batches(thread)
        for number in ok:
            acked.update(f"{ctx.run}-{thread['id']}-{number}-{n}" for n in range(1, size + 1))
        for number in pending:
            in_flight.update(f"{ctx.run}-{thread['id']}-{number}-{n}" for n in range(1, size + 1))
        failed.update(bad.values())
    stored = _stored_events(ctx.url, ctx.run, expected=len(acked))
    ids = set(stored)
    filed = {m for m, (status, interaction) in stored.items() if interaction is not None}
    statuses = Counter(status for status, _ in stored.values())
    seconds = result["duration_us"] / 1e6
    exact = out["socket_errors"] == result["timeouts"]  # no connection lost: order is known
    out |= {
        "batch_size": size,
        "events_acknowledged": len(acked),
        "events_per_s": round(len(acked) / seconds, 1),
        "events_stored": len(ids),
        "acknowledged_not_stored": len(acked - ids),
        "stored_in_flight_at_stop": len((ids - acked) & in_flight),
        "stored_unexpected": len(ids - acked - in_flight),
        "filed_as_interactions": len(filed),
        "acknowledged_not_filed": len(acked - filed),
        "event_statuses": dict(statuses),
        "batches_failed": dict(failed),
        "accounting": "exact" if exact else "approximate (connections were lost)",
        "interactions_of_events": _interactions_of(ctx.url, ctx.run),
    }
    out["non_2xx"] = sum(failed.values())
    return out


def _stored_events(url: str, run: str, *, expected: int) -> dict[str, tuple[str, int | None]]:
    """The run's events in the database (message id -> status, interaction), read once their
    number has stopped changing (requests wrk left in flight may still be committing)."""
    query = (
        "SELECT e.message_id, e.status, e.interaction_id FROM collected_event e"
        " JOIN source s ON s.id = e.source_id"
        " WHERE s.name = %s AND e.message_id LIKE %s"
    )
    previous = -1
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        for _ in range(30):
            rows = conn.execute(query, (EVENT_SOURCE, f"{run}-%")).fetchall()
            if len(rows) == previous and len(rows) >= expected:
                break
            previous = len(rows)
            time.sleep(1)
    return {message: (status, interaction) for message, status, interaction in rows}


def _interactions_of(url: str, run: str) -> int:
    """Interactions that exist for the run's stored events."""
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM collected_event e JOIN source s ON s.id = e.source_id"
            " JOIN interaction i ON i.id = e.interaction_id"
            " WHERE s.name = %s AND e.message_id LIKE %s",
            (EVENT_SOURCE, f"{run}-%"),
        ).fetchone()
    return int(row[0]) if row else 0


def _with_options(url: str, options: str | None) -> str:
    """``url`` whose connections start with these settings (libpq ``options``: per-session
    ``-c name=value``, the server's configuration untouched)."""
    if not options:
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).update_query_dict({"options": options}).render_as_string(False)


def run_scenarios(args: argparse.Namespace, url: str, figures: dict[str, Any]) -> None:
    run = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix="tournesol-api-load-"))
    wrk_binary()
    try:
        served = _with_options(url, args.pg_options)
        with Server(served, args.workers, workdir / "server.log") as server:
            endpoints = server.endpoints()
            wanted = [s for s in args.scenarios if s in SCENARIOS]
            missing = {
                s: need
                for s in wanted
                for need in {"page": ("detail", "timeline")}.get(s, (s,))
                if need not in endpoints
            }
            for scenario, need in missing.items():
                console.print(f"[yellow]{scenario}: the server has no {need} endpoint yet[/]")
            paths = {
                "search": endpoints.get("search", "/api/v1/customers"),
                "detail": endpoints.get("detail", "/api/v1/customers/{id}"),
                "timeline": endpoints.get("timeline", "/api/v1/customers/{id}/timeline"),
            }
            samples = draw_samples(url, args.samples, args.seed)
            requests = build_requests(samples, args.seed, paths)
            figures["search_terms"] = dict(requests.search_kinds)
            read_key, write_key = make_keys(url, run)
            ctx = Context(
                args,
                url,
                server,
                CpuMeter(server, url),
                requests,
                read_key,
                write_key,
                run,
                workdir,
            )
            lists = {
                "search": requests.search,
                "detail": requests.detail,
                "timeline": requests.timeline,
                "page": requests.page,
            }
            results = []
            try:
                runs = [
                    (scenario, think)
                    for scenario in wanted
                    if scenario not in missing
                    for think in ([0] if scenario == "ingest" else args.think_ms)
                ]
                for scenario, think in runs:
                    before = wait_for_quiet(args.quiet_below, args.quiet_timeout)
                    pause = f", think {think} ms" if think else ""
                    console.print(f"scenario {scenario} ({args.duration} s{pause})...")
                    if scenario == "ingest":
                        results.append(ingest_scenario(ctx))
                    else:
                        results.append(read_scenario(ctx, scenario, lists[scenario], think))
                    results[-1]["machine_busy_before_pct"] = before
                    _say(results[-1])
            finally:
                revoke_keys(url, run)
                if args.keep:
                    forget_runs(url)
            figures["scenarios"] = results
            figures["skipped"] = sorted(missing)
            log = (workdir / "server.log").read_text(errors="replace")
            errors = [line for line in log.splitlines() if "unhandled" in line or "Error" in line]
            figures["server_log_errors"] = len(errors)
            if errors:
                console.print(f"[red]server log: {len(errors)} error lines[/], e.g. {errors[:3]}")
    finally:
        if args.keep_logs:
            console.print(f"logs and request lists kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _say(result: dict[str, Any]) -> None:
    line = (
        f"  {result['scenario']}: {result['requests']:,} requests, "
        f"{result['requests_per_s']:,.1f}/s, p50 {result['p50_ms']} ms, "
        f"p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, non-2xx {result.get('non_2xx')}"
    )
    if "events_per_s" in result:
        line += (
            f", {result['events_per_s']:,.0f} events/s, stored {result['events_stored']:,}"
            f" of {result['events_acknowledged']:,} acknowledged"
        )
    console.print(line)


# --- figures -------------------------------------------------------------------------------


def print_figures(figures: dict[str, Any]) -> None:
    out = Console(width=max(170, shutil.get_terminal_size().columns))
    out.print()
    facts = figures.get("database", {})
    rows = facts.get("rows", {})
    out.print(
        f"database: PostgreSQL {facts.get('postgresql', '?')}, {facts.get('database_gb', '?')} GB,"
        f" {rows.get('customer', 0):,} customers, {rows.get('interaction', 0):,} interactions,"
        f" {rows.get('transaction', 0):,} transactions; settings {facts.get('settings', {})}"
    )
    if "load" in figures:
        load = figures["load"]
        out.print(f"load: {load['seconds']} s; rows {load['counts']}")
    out.print(
        f"server: {figures.get('workers')} workers, session settings"
        f" {figures.get('pg_options') or 'none'}; wrk {figures.get('connections')} connections,"
        f" {figures.get('threads')} threads; {figures.get('duration')} s per scenario after"
        f" {figures.get('warmup')} s of warm-up; cores {os.cpu_count()}"
    )
    if figures.get("search_terms"):
        out.print(f"search terms: {figures['search_terms']}")
    results = figures.get("scenarios", [])
    if not results:
        return
    table = Table(title="API load (latencies in ms)")
    for column in (
        "scenario", "conns", "requests", "req/s", "p50", "p95", "p99", "max", "non-2xx",
        "socket err", "events/s", "stored / acked", "cpu % srv/pg/wrk/other/steal",
        "cpu ms/req srv/pg",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for r in results:
        stored = ""
        if "events_stored" in r:
            stored = f"{r['events_stored']:,} / {r['events_acknowledged']:,}"
        table.add_row(
            r["scenario"],
            str(r["connections"]),
            f"{r['requests']:,}",
            f"{r['requests_per_s']:,.1f}",
            f"{r['p50_ms']}",
            f"{r['p95_ms']}",
            f"{r['p99_ms']}",
            f"{r['max_ms']}",
            str(r.get("non_2xx", "")),
            str(r["socket_errors"]),
            f"{r['events_per_s']:,.0f}" if "events_per_s" in r else "",
            stored,
            f"{r['cpu_server_pct']}/{r['cpu_postgres_pct']}/{r['cpu_wrk_pct']}"
            f"/{r['cpu_other_pct']}/{r['cpu_steal_pct']}",
            f"{r['server_cpu_ms_per_request']}/{r['postgres_cpu_ms_per_request']}",
        )
    out.print(table)
    for r in results:
        if r["scenario"] == "ingest":
            out.print(
                f"ingest: acknowledged {r['events_acknowledged']:,}, stored {r['events_stored']:,}"
                f" (acknowledged not stored {r['acknowledged_not_stored']}, in flight at the"
                f" stop {r['stored_in_flight_at_stop']}, unexpected {r['stored_unexpected']}),"
                f" filed as interactions {r['filed_as_interactions']:,} (acknowledged not filed"
                f" {r['acknowledged_not_filed']}), statuses {r['event_statuses']},"
                f" accounting {r['accounting']}"
            )
    if figures.get("skipped"):
        out.print(f"skipped (endpoint missing): {', '.join(figures['skipped'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument(
        "--transactions", type=int, help="tickets and web orders (default: one per customer)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-url", default=DEFAULT_SERVER_URL, help="the PostgreSQL server")
    parser.add_argument("--database", default=DEFAULT_DATABASE)
    parser.add_argument(
        "--reuse", action="store_true", help="use the database as loaded by an earlier run"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--load-only", action="store_true", help="load, then stop")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument(
        "--pg-options",
        help="per-session settings of the server's connections, e.g. "
        "'-c max_parallel_workers_per_gather=0' (postgresql.conf is left alone)",
    )
    parser.add_argument("--duration", type=int, default=30, help="seconds per scenario")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up per scenario")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (read scenarios)")
    parser.add_argument(
        "--ingest-connections", type=int, default=20, help="connections (one per wrk thread)"
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=list(SCENARIOS),
        help=f"comma-separated, among {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--think-ms",
        type=lambda text: [int(t) for t in text.split(",") if t.strip()],
        default=[0, 1000],
        help="read scenarios run once per value: 0 is a closed loop (each connection sends "
        "its next request at once), N a mean pause of N ms before each request (staff reading)",
    )
    parser.add_argument("--batch-size", type=int, default=100, help="events per /v1/batch")
    parser.add_argument("--samples", type=int, default=20_000, help="customers requested")
    parser.add_argument("--keep-logs", action="store_true", help="keep the server log")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=15.0,
        help="start a scenario once other work keeps the machine under this %% busy",
    )
    parser.add_argument(
        "--quiet-timeout", type=float, default=300.0, help="seconds to wait for that at most"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    sizes = Sizes(
        args.customers,
        args.interactions,
        args.customers if args.transactions is None else args.transactions,
        args.seed,
    )
    figures: dict[str, Any] = {
        "workers": args.workers,
        "pg_options": args.pg_options,
        "connections": args.connections,
        "threads": args.threads,
        "duration": args.duration,
        "warmup": args.warmup,
    }
    url, report = prepare_database(args, sizes)
    try:
        if report is not None:
            figures["load"] = {
                "seconds": round(report.seconds["total"], 1),
                "steps": {k: round(v, 1) for k, v in report.seconds.items()},
                "counts": report.counts,
                "foreign_keys_checked": report.foreign_keys_checked,
            }
        if not args.load_only:
            run_scenarios(args, url, figures)
        figures["database"] = database_facts(url)
    finally:
        if not args.keep:
            drop_database(args)
            console.print(f"dropped {args.database} (--keep keeps it)")
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
