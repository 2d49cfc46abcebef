"""Identity resolution at scale: 1,000,000 normalized customer records, about 30 % of them extra
records of a person already present, resolved end to end into golden records; then a batch of
10,000 new records matched against the resolved base.

    .venv/bin/python bench/identity_scale.py [--records 1000000] [--new 10000] [--seed 7]
        [--database-url URL] [--keep] [--json PATH] [--generate-only]

1. Generate (not timed against resolution): a population of French persons in households, and
   their records in four sources, each record a ``normalized`` dict shaped exactly like what
   the import stores in ``source_record.normalized`` (names with their match keys, e-mail and
   its key, E.164 phones, AFNOR address lines with the official commune, identifiers, the
   ``quality`` section). Values are drawn from pools built once (Faker's French names weighted
   by the INSEE first-name ranks, a long tail of surnames, real postal codes and communes run
   once through the project's own normalizers); nothing is normalized per record.
2. Load (timed apart: the import's job): one source and one import batch per source, customer
   ids reserved, records bulk-inserted with ``ingest.service.insert_records`` and one
   provisional golden customer per record with ``customers.service.create_from_records``, as
   ``ingest.handlers.handle_customers`` does; one transaction per chunk of 50,000 records.
3. ``identity.service.resolve(factory, full=True)``, timed end to end in a process of its own
   (as ``import_throughput.py`` runs each import), so that its peak memory is its own: the
   kernel's peak resident size of that process plus that of its largest child, and the PSS of
   the whole process tree sampled every 0.5 s. (In the generating process, memory freed by the
   population stays mapped: it would have counted several hundred MB that are not
   resolution's.)
4. ``--new`` further records (about 30 % new records of persons already loaded, the others new
   persons), loaded the same way, then the incremental ``resolve(factory)``, timed likewise.
5. After each resolution, the record -> customer assignment read back from the database is
   scored against the truth with ``identity.evaluation.score`` (pairwise precision, recall,
   wrong merges of households, twins and homonyms).

The model (shares of the default run; the generator counts and prints its own):

- ``--duplicates`` (0.30) of the records are extra records of a person already present: 700,000
  persons for 1,000,000 records. Each person has one first record (in the person's main source)
  and extras are spread at random over the persons (so some have three or four records).
- Households: about 40 % of persons live in a couple (two in three married: the woman bears
  her husband's name and keeps her birth name as maiden name; one couple in eight shares one
  e-mail address), some with adult children at the same address; a household shares its
  landline. Twins: 0.2 % of persons (same last name, birth date and address, different first
  names). Homonyms (same first and last name) come from frequent names, plus one planted pair
  per 250 persons; every group of them gets a ``homonym_group``.
- Sources: ``loyalty`` (card, full postal address, landline), ``ecommerce`` (account id,
  e-mail always, one phone), ``contest`` (prospects: e-mail, postal code only), ``crm`` (B2B
  contacts: work e-mail and phones, company SIRET, no address or birth date; only for the
  11.5 % of working-age persons who are B2B contacts).
- How an extra record differs from the person's first one (which has no typing error): another
  source (85 %) or a second card or account in the same one; the person's other (older) e-mail
  address; a missing phone or birth date (as its source often has them); a 1-character typo in
  the last or first name (5 %); a nickname (2 %: Cathy for Catherine); day and month of birth
  swapped (1 % of those with a birth date); the address from before a move (8 %: any record of
  a person who moved may have either address); the birth name instead of the married name
  (3 %).

The figures come last, one ``name value`` per line; ``--json`` writes them to a file too.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import gc
import gzip
import hashlib
import itertools
import json
import math
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tournesol.demo.people import (  # noqa: E402
    COMMUNES,
    EMAIL_DOMAINS,
    HEADCOUNT_BANDS,
    JOB_TITLES,
    LEGAL_FORMS,
    LIEUX_DITS,
    NAF_CODES,
    RESIDENCES,
    STREET_NAMES,
    STREET_TYPES,
    area_prefix,
    luhn_complete,
    slug,
)
from tournesol.ingest.rules import fingerprint  # noqa: E402
from tournesol.quality import addresses, emails, names, phones  # noqa: E402
from tournesol.quality.base import Severity  # noqa: E402
from tournesol.quality.flags import all_flags  # noqa: E402
from tournesol.quality.record import QUALITY_VERSION, SCORE_WEIGHTS  # noqa: E402

TODAY = date(2026, 11, 1)  # fixed: the data never depends on the clock
CHUNK_RECORDS = 50_000
WARNINGS = frozenset(
    code for code, flag in all_flags().items() if flag.severity is Severity.WARNING
)
POSTCODES = ROOT / "src/tournesol/quality/data/postcodes.tsv.gz"


# --- sources and record keys ------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInfo:
    name: str
    kind: str
    brand: str
    trust_rank: int


SOURCES = (
    SourceInfo("loyalty", "loyalty", "SOLEIL", 2),
    SourceInfo("ecommerce", "ecommerce", "SOLEIL", 3),
    SourceInfo("contest", "contest", "SOLEIL", 6),
    SourceInfo("crm", "b2b_crm", "TOURNESOL PRO", 3),
)
LOYALTY, ECOMMERCE, CONTEST, CRM = range(4)
CONSUMER_SOURCES = (LOYALTY, ECOMMERCE, CONTEST)
_KEY_PREFIX = ("2990", "W", "JC", "CRM")


def record_key(source: int, serial: int) -> str:
    """The record's key in its source: a 13-digit loyalty card (EAN-13), an e-shop account, a
    contest entry, a CRM contact. The serial (unique over all sources) is in every key."""
    if source == LOYALTY:
        base = f"2990{serial:08d}"
        total = sum(map(int, base[::2])) + 3 * sum(map(int, base[1::2]))
        return f"{base}{-total % 10}"
    return f"{_KEY_PREFIX[source]}{serial:08d}"


def serial_of(key: str) -> int:
    """The serial a key was made from (:func:`record_key`)."""
    return int(key[4:12]) if key.startswith("2990") else int(key[-8:])


class TruthRecord(NamedTuple):
    """Who a record really belongs to (the fields of ``identity.evaluation.TruthRecord``)."""

    person_id: str
    household_id: str
    is_twin: bool
    homonym_group: str | None


class Record(NamedTuple):
    """One generated customer record, as the import's reading side hands it over."""

    source: int
    key: str
    normalized: dict[str, Any]
    raw: dict[str, Any]


Built = tuple[dict[str, Any], dict[str, Any]]  # a record's normalized fields and its raw row


# --- pools ------------------------------------------------------------------------------------

NICKNAMES: dict[str, tuple[str, ...]] = {
    "Catherine": ("Cathy", "Cathie"), "Christophe": ("Chris",), "Christian": ("Chris",),
    "Nicolas": ("Nico",), "Alexandre": ("Alex",), "Alexandra": ("Alex",), "Frédéric": ("Fred",),
    "Stéphanie": ("Steph",), "Philippe": ("Phil",), "Isabelle": ("Isa",),
    "Élisabeth": ("Babeth", "Lisa"), "Elisabeth": ("Babeth", "Lisa"), "Dominique": ("Dom",),
    "Sébastien": ("Seb",), "Valérie": ("Val",), "Véronique": ("Véro",), "Benjamin": ("Ben",),
    "Thomas": ("Tom",), "Maxime": ("Max",), "Maximilien": ("Max",), "Mathieu": ("Matt",),
    "Anthony": ("Tony",), "Antoine": ("Tony",), "Nathalie": ("Nath",), "Sandrine": ("Sandy",),
    "Florence": ("Flo",), "Florian": ("Flo",), "Caroline": ("Caro",), "Emmanuel": ("Manu",),
    "Emmanuelle": ("Manue",), "Jacqueline": ("Jacky",), "Jacques": ("Jacky",),
    "Gabriel": ("Gaby",), "Gabrielle": ("Gaby",), "Béatrice": ("Béa",),
    "Marguerite": ("Margot",), "Victoria": ("Vicky",), "Raphaël": ("Raph",),
    "Robert": ("Bob",), "Joseph": ("Jo",), "Johanna": ("Jo",), "Patricia": ("Patty",),
    "Charlotte": ("Charlie",), "Charles": ("Charlie",), "Vincent": ("Vince",),
    "Pierre": ("Pierrot",), "François": ("Fanfan",), "Françoise": ("Fanfan",),
    "Laurence": ("Lolo",), "Laurent": ("Lolo",), "Mickaël": ("Mika",), "Michaël": ("Mika",),
    "Jean-Pierre": ("Jean",), "Jean-François": ("Jean",), "Jean-Claude": ("Jean",),
    "Marie-Christine": ("Marie",), "Anne-Sophie": ("Sophie",), "Marie-Claude": ("Marie",),
    "Guillaume": ("Will",), "Daniel": ("Dany",), "Danielle": ("Dany",),
    "Amandine": ("Mandy",), "Jennifer": ("Jenny",), "Virginie": ("Virgi",),
}  # fmt: skip
SURNAME_SUFFIXES = (
    "ier", "ard", "aud", "eau", "et", "ot", "in", "on", "ault", "and", "ois", "oux", "eux", "ac",
    "ec", "ez", "at", "el", "elin", "enet", "illon", "erot", "ouin", "ay", "ey", "y", "ière",
    "ette", "elle", "ignac", "ert", "ane", "iot", "azet", "eaux", "ange", "ory",
)  # fmt: skip
SURNAME_MIDDLES = (
    "el",
    "er",
    "ar",
    "in",
    "on",
    "ot",
    "il",
    "ill",
    "and",
    "ard",
    "ign",
    "ich",
    "oul",
)
VOWELS = frozenset("aeiouyAEIOUY")
CLUSTERS = frozenset(("rn", "rd", "rt", "ll", "nn", "ss", "tt", "ch", "st", "rm", "nd", "nt", "rg"))
COMPLEMENTS = (
    *(f"Appt {n}" for n in range(1, 61)),
    *(f"Apt {n}{c}" for n in range(1, 10) for c in "ABCD"),
    *(f"Escalier {c}" for c in "ABCD"),
    *(f"{n}e étage" for n in range(2, 10)),
    *(f"Porte {n}" for n in range(1, 41)),
)
EMAIL_PATTERNS = ("{f}.{l}", "{f}{l}", "{i}.{l}", "{l}.{f}", "{f}_{l}", "{f}.{l}", "{f}{n}")
GAMES = ("Grand jeu de l'été", "Calendrier de l'Avent", "Jeu fête des mères", "Quiz de Noël")
OLD_DOMAINS = ("wanadoo.fr", "hotmail.fr", "laposte.net", "free.fr", "orange.fr", "yahoo.fr")
AFNOR_LINE = 38
T = TypeVar("T")


class Commune(NamedTuple):
    postal_code: str
    city: str
    insee_code: str
    line6: str
    postal_only: tuple[str | None, str | None, str]  # city, INSEE code, line 6 (code alone)
    postal_only_flags: tuple[str, ...]  # what the normalizer says of the postal code alone
    rural: bool
    overseas: str | None  # "971", "972", "974"


class Company(NamedTuple):
    siret: str
    name: str
    naf_code: str
    headcount_band: str
    org_class: str
    domain: str
    postal_code: str
    city: str
    switchboard: str


# (complement, building, street, special, commune): the AFNOR lines 2 to 6, already normalized
Address = tuple[str | None, str | None, str | None, str | None, Commune]


def _cumulative(weights: Iterable[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _pick(rng: random.Random, items: Sequence[T], cumulative: Sequence[float]) -> T:
    """``rng.choices(items, cum_weights=cumulative)[0]``, three times faster."""
    return items[bisect.bisect(cumulative, rng.random() * cumulative[-1], 0, len(items) - 1)]


def _below(rng: random.Random, n: int) -> int:
    """``rng.randrange(n)``, twice faster (and as random for these sizes)."""
    return int(rng.random() * n)


_slug = functools.cache(slug)  # names repeat: fold each one once
HOUSEHOLDS = ("single", "couple", "family")
HOUSEHOLD_WEIGHTS = _cumulative((717, 203, 80))  # ~40 % of persons in couples
FIRST_SOURCE_WEIGHTS = _cumulative((50, 35, 15))  # where a person's first record is


def _faker_people(locale: str) -> Any:
    from faker import Faker

    fake = Faker(locale)
    return next(
        p for p in fake.providers if type(p).__module__.startswith("faker.providers.person")
    )


def _first_name_ranks() -> dict[str, int]:
    ranks: dict[str, int] = {}
    with gzip.open(names.DATA_FILE, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.startswith("#"):
                key, first, _ = line.rstrip("\n").split("\t")
                if first:
                    ranks[key] = int(first)
    return ranks


@dataclass
class Pools:
    """Everything values are drawn from, built once per seed."""

    first: dict[str, tuple[list[tuple[str, str]], list[float]]]  # sex -> (name, key), weights
    last: list[tuple[str, str]]  # (name, key)
    last_weights: list[float]
    communes: list[Commune]
    commune_weights: list[float]
    streets: list[str]  # "RUE DE LA GARE": AFNOR line 4 without its number
    street_weights: list[float]
    lieux_dits: list[str]  # AFNOR line 5
    complements: list[str]
    buildings: list[str]
    domains: list[str]
    domain_weights: list[float]
    nickname_share: dict[str, float]  # sex -> share of persons whose first name has a nickname

    @classmethod
    def build(cls, rng: random.Random) -> Pools:
        ranks = _first_name_ranks()
        first: dict[str, tuple[list[tuple[str, str]], list[float]]] = {}
        nickname_share: dict[str, float] = {}
        for sex, attr in (("M", "first_names_male"), ("F", "first_names_female")):
            seen: dict[str, str] = {}
            for locale in ("fr_FR", "fr_BE", "fr_CA", "fr_CH"):
                for name in getattr(_faker_people(locale), attr):
                    key = names.name_key(name)
                    if key and key not in seen and key in ranks and names.is_known_first_name(name):
                        seen[key] = name
            pool = [(name, key) for key, name in seen.items()]
            weights = [1 / (ranks[key] + 30) for _, key in pool]
            first[sex] = (pool, _cumulative(weights))
            nick = sum(w for (name, _), w in zip(pool, weights, strict=True) if name in NICKNAMES)
            nickname_share[sex] = nick / sum(weights)
        last, last_weights = _last_names(rng)
        communes, commune_weights = _communes(rng)
        streets, street_weights = [], []
        for street_type, weight in STREET_TYPES:
            for street_name in STREET_NAMES:
                line4 = _afnor(street=f"1 {street_type} {street_name}").street
                if line4 and len(f"180 B {line4[2:]}") <= AFNOR_LINE:
                    streets.append(line4[2:])
                    street_weights.append(weight)
        return cls(
            first=first,
            last=last,
            last_weights=_cumulative(last_weights),
            communes=communes,
            commune_weights=_cumulative(commune_weights),
            streets=streets,
            street_weights=_cumulative(street_weights),
            lieux_dits=[str(_afnor(special=f"Lieu-dit {x}").special) for x in LIEUX_DITS],
            complements=[str(_afnor(complement=c).complement) for c in COMPLEMENTS],
            buildings=[
                str(_afnor(building=b).building)
                for b in (*RESIDENCES, *(f"Bâtiment {c}" for c in "ABCDEF"))
            ],
            domains=[d for d, _ in EMAIL_DOMAINS],
            domain_weights=_cumulative(w for _, w in EMAIL_DOMAINS),
            nickname_share=nickname_share,
        )


def _afnor(**parts: str) -> addresses.AddressResult:
    given = {"street": "1 rue de la Gare", "postal_code": "37100", "city": "Tours"} | parts
    return addresses.normalize_address(**given)


def _last_names(rng: random.Random) -> tuple[list[tuple[str, str]], list[float]]:
    """Surnames with a long tail, as in France: Faker's 400 most frequent French ones (12 % of
    persons, Martin about 0.4 %), the other French-speaking and neighbouring locales' (13 %),
    and 120,000 rarer ones made of French stems and endings (75 %, Zipf-like)."""
    head = list(_faker_people("fr_FR").last_names)
    others: list[tuple[str, str]] = []
    for locale in ("fr_CA", "fr_CH", "fr_BE", "it_IT", "es_ES", "pt_PT", "de_DE"):
        others.extend((locale, name) for name in _faker_people(locale).last_names)
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    weights: list[float] = []
    head_norm = sum(1 / (i + 8) for i in range(len(head)))
    for i, name in enumerate(head):
        key = names.name_key(name)
        if key and key not in seen:
            seen.add(key)
            out.append((name, key))
            weights.append(0.12 / head_norm / (i + 8))
    kept_others, kept_french = [], []
    for locale, name in others:
        key = names.name_key(name)
        if key and key not in seen and name.replace(" ", "").replace("-", "").isalpha():
            seen.add(key)
            kept_others.append((name, key))
            if locale.startswith("fr"):
                kept_french.append((name, key))
    for name, key in kept_others:
        out.append((name, key))
        weights.append(0.13 / len(kept_others) * rng.lognormvariate(0, 0.7))
    stems = sorted(
        {
            name[:cut]
            for name, _ in out[: len(head)] + kept_french
            if name.isascii() and name.isalpha()
            for cut in range(3, len(name))
            if name[cut - 1] not in VOWELS
            and (name[cut - 2] in VOWELS or name[cut - 2 : cut] in CLUSTERS)
        }
    )
    tail: list[tuple[str, str]] = []
    while len(tail) < 120_000:
        middle = rng.choice(SURNAME_MIDDLES) if rng.random() < 0.7 else ""
        made = rng.choice(stems) + middle + rng.choice(SURNAME_SUFFIXES)
        if rng.random() < 0.04:
            made = f"Le {made}"
        key = names.name_key(made)
        if key and key not in seen and not names.is_known_first_name(made):
            seen.add(key)
            tail.append((made, key))
    tail_norm = sum(1 / (j + 100) ** 0.7 for j in range(len(tail)))
    for j, entry in enumerate(tail):
        out.append(entry)
        weights.append(0.75 / tail_norm / (j + 100) ** 0.7)
    return out, weights


def _communes(rng: random.Random) -> tuple[list[Commune], list[float]]:
    """Real postal code and commune pairs: the demo's towns weighted by population (two thirds
    of households) and 2,500 other communes drawn from the official reference (one third),
    each through the address normalizer once."""
    drawn: list[tuple[str, str, float, bool]] = []
    known = set()
    for codes, city, population in COMMUNES:
        split = codes.split()
        for code in split:
            known.add(code)
            drawn.append((code, city, population / len(split), population <= 15))
    with gzip.open(POSTCODES, "rt", encoding="utf-8") as reference:
        next(reference)
        pairs = sorted({(r[0], r[2]) for r in (line.split("\t") for line in reference)})
    rural = [p for p in pairs if p[0] not in known]
    town_weight = sum(w for *_, w, _ in drawn)
    for code, city in rng.sample(rural, 2500):
        drawn.append((code, city, town_weight / 2 / 2500, True))
    communes, weights = [], []
    for code, city, weight, is_rural in drawn:
        full = _afnor(postal_code=code, city=city)
        if not (full.city and full.insee_code and full.postal_code and full.line6):
            continue
        alone = addresses.normalize_address(postal_code=code)
        overseas = code[:3] if code[:3] in ("971", "972", "974") else None
        communes.append(
            Commune(
                full.postal_code,
                full.city,
                full.insee_code,
                full.line6,
                (alone.city, alone.insee_code, alone.line6 or code),
                alone.flags,
                is_rural,
                overseas,
            )
        )
        weights.append(weight)
    return communes, weights


# --- phones -----------------------------------------------------------------------------------


MOBILE_AREAS = {"971": "+590690", "972": "+596696", "974": "+262692"}
FIXED_AREAS = {"971": "+590590", "972": "+596596", "974": "+262262"}


class PhoneBook:
    """Unique, valid E.164 numbers. Each area (``+336``, ``+337``, ``+331`` to ``+335``, the
    overseas ones) issues its numbers in a scrambled order: the k-th is an affine bijection of
    k over the area's capacity (the two digits after the area that the normalizer accepts as
    that kind of line, times the remaining digits), so no two holders ever share a number and
    only a counter per area is kept."""

    def __init__(self, seed: int) -> None:
        self.areas: dict[str, tuple[list[str], int, int, int]] = {}
        self.issued: Counter[str] = Counter()
        plan = [(area, "mobile", 6) for area in ("+336", "+337")]
        plan += [(f"+33{digit}", "fixed", 6) for digit in "12345"]
        plan += [(area, "mobile", 4) for area in MOBILE_AREAS.values()]
        plan += [(area, "fixed", 4) for area in FIXED_AREAS.values()]
        for area, kind, width in plan:
            tails = [f"{t:0{width}d}" for t in (1234, 908172 % 10**width, 451)]
            valid = [
                f"{d:02d}"
                for d in range(100)
                if all(
                    (r := phones.normalize_phone(number)).value == number and r.line_type == kind
                    for number in (f"{area}{d:02d}{tail}" for tail in tails)
                )
            ]
            capacity = len(valid) * 10**width
            step = capacity * 2 // 3 + 1
            while math.gcd(step, capacity) != 1:
                step += 1
            self.areas[area] = (valid, width, step, (seed * 7_919) % capacity)

    def _issue(self, area: str) -> str:
        valid, width, step, offset = self.areas[area]
        k = self.issued[area]
        self.issued[area] = k + 1
        x = (k * step + offset) % (len(valid) * 10**width)
        subscriber = f"{valid[x // 10**width]}{x % 10**width:0{width}d}"
        if len(set(subscriber)) == 1:  # a dummy number (06 11 11 11 11): take the next one
            return self._issue(area)
        return f"{area}{subscriber}"

    def mobile(self, commune: Commune, rng: random.Random) -> str:
        if commune.overseas:
            return self._issue(MOBILE_AREAS[commune.overseas])
        return self._issue("+337" if rng.random() < 0.25 else "+336")

    def landline(self, commune: Commune) -> str:
        if commune.overseas:
            return self._issue(FIXED_AREAS[commune.overseas])
        return self._issue(f"+33{area_prefix(commune.postal_code)[1]}")


def national(e164: str) -> str:
    """The number as people write it in France (the ``original`` the import keeps)."""
    if e164.startswith("+33"):
        return "0" + e164[3:]
    return "0" + e164[4:]  # +590690..., +262692...: the overseas prefix repeats in the number


# --- population -------------------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    idx: int
    household: int
    sex: str
    first_name: str
    first_key: str
    last_name: str
    last_key: str
    birth: date
    address: Address
    old_address: Address | None = None
    maiden_name: str | None = None
    maiden_key: str | None = None
    email: str | None = None
    alt_email: str | None = None  # an older address, or one given where asked (no other)
    mobile: str | None = None
    landline: str | None = None
    is_twin: bool = False
    homonym_group: int = 0
    company: int = -1
    job_title: str | None = None
    pro_email: str | None = None
    pro_phone: str | None = None
    pro_phone_is_mobile: bool = False
    work_maiden: bool = False  # uses her birth name at work


class _PopulationBuilder:
    def __init__(self, rng: random.Random, pools: Pools, phones: PhoneBook, count: int) -> None:
        self.rng, self.pools, self.phones, self.count = rng, pools, phones, count
        self.persons: list[Person] = []
        self.households = 0
        self.twins_left = max(1, count // 1000)
        self.email_keys: set[str] = set()
        self.in_couples = 0  # persons living with a partner

    def first_name(self, sex: str) -> tuple[str, str]:
        pool, weights = self.pools.first[sex]
        return _pick(self.rng, pool, weights)

    def last_name(self) -> tuple[str, str]:
        return _pick(self.rng, self.pools.last, self.pools.last_weights)

    def address(self) -> Address:
        rng, pools = self.rng, self.pools
        commune = _pick(rng, pools.communes, pools.commune_weights)
        if commune.rural and rng.random() < 0.2:
            return (None, None, None, rng.choice(pools.lieux_dits), commune)
        number = str(1 + (_below(rng, 30) if rng.random() < 0.5 else _below(rng, 180)))
        suffix = rng.random()
        if suffix < 0.07:
            number += " B" if suffix < 0.05 else " T"
        street = f"{number} {_pick(rng, pools.streets, pools.street_weights)}"
        complement = building = None
        if not commune.rural and rng.random() < 0.35:
            complement = rng.choice(pools.complements)
            if rng.random() < 0.4:
                building = rng.choice(pools.buildings)
        return (complement, building, street, None, commune)

    def birth(self, low: int, high: int) -> date:
        age = low + _below(self.rng, high - low + 1)
        start = TODAY.replace(year=TODAY.year - age - 1) + timedelta(days=1)
        return start + timedelta(days=_below(self.rng, 365))

    def adult_birth(self) -> date:
        bands = ((18, 29), (30, 44), (45, 59), (60, 74), (75, 90))
        low, high = self.rng.choices(bands, weights=(18, 27, 27, 20, 8))[0]
        return self.birth(low, high)

    def person(self, hh: int, sex: str, last: tuple[str, str], born: date, addr: Address) -> Person:
        first = self.first_name(sex)
        person = Person(len(self.persons), hh, sex, *first, *last, born, addr)
        self.persons.append(person)
        return person

    def household(self) -> None:
        rng = self.rng
        hh = self.households = self.households + 1
        addr = self.address()
        start = len(self.persons)
        kind = _pick(rng, HOUSEHOLDS, HOUSEHOLD_WEIGHTS)
        if kind == "single" or self.count - start < 2:
            self.person(hh, rng.choice("MF"), self.last_name(), self.adult_birth(), addr)
        else:
            self.couple(hh, addr, 0 if kind == "couple" else rng.choice((1, 2, 2)))
        members = self.persons[start:]
        if rng.random() < (0.45 if len(members) > 1 else 0.22):
            landline = self.phones.landline(addr[4])
            for p in members:
                p.landline = landline
        if rng.random() < 0.16:  # moved: the oldest records may still know the old address
            old = self.address()
            for p in members:
                p.old_address = old

    def couple(self, hh: int, addr: Address, children: int) -> None:
        rng = self.rng
        children = min(children, self.count - len(self.persons) - 2)
        low = 38 if children else 20
        his_birth = self.birth(low + 2, 85)
        her_birth = his_birth + timedelta(days=_below(rng, 4001) - 1500)
        if (TODAY - her_birth).days < low * 366:
            her_birth = his_birth
        family = self.last_name()
        married = rng.random() < 0.66 or (children > 0 and rng.random() < 0.8)
        man = self.person(hh, "M", family, his_birth, addr)
        woman = self.person(hh, "F", family if married else self.last_name(), her_birth, addr)
        self.in_couples += 2
        if married:
            woman.maiden_name, woman.maiden_key = self.last_name()
            woman.work_maiden = rng.random() < 0.3
        if rng.random() < 0.125:
            local = f"famille.{_slug(family[0])}"
            man.email = woman.email = self.unique_email(local, his_birth)
        youngest = max(his_birth, her_birth)
        twins = children == 2 and self.twins_left > 0 and rng.random() < 0.06
        born: date | None = None
        for _ in range(children):
            if born is None or not twins:
                oldest = youngest.replace(year=youngest.year + 20, day=min(youngest.day, 28))
                latest = TODAY.replace(year=TODAY.year - 18)
                born = oldest + timedelta(days=_below(rng, max(1, (latest - oldest).days)))
            child = self.person(hh, rng.choice("MF"), family, born, addr)
            child.is_twin = twins
        if twins:
            self.twins_left -= 1
            a, b = self.persons[-2], self.persons[-1]
            while a.first_key == b.first_key:
                b.first_name, b.first_key = self.first_name(b.sex)

    def unique_email(self, local: str, born: date, domains: tuple[str, ...] | None = None) -> str:
        """An address nobody else has: ``local`` at a provider (weighted, or one of
        ``domains``), with a number appended when taken."""
        rng, pools = self.rng, self.pools
        for attempt in range(60):
            suffix = "" if attempt == 0 else str(rng.choice((born.year % 100, born.year, attempt)))
            if domains is None:
                domain = _pick(rng, pools.domains, pools.domain_weights)
            else:
                domain = domains[_below(rng, len(domains))]
            key = emails.match_key(local + suffix, domain)
            if key not in self.email_keys:
                self.email_keys.add(key)
                return f"{local}{suffix}@{domain}"
        raise RuntimeError("could not find a free e-mail address")  # pragma: no cover

    def contact(self, p: Person) -> None:
        rng = self.rng
        age = (TODAY - p.birth).days // 365
        first, last = _slug(p.first_name), _slug(p.last_name)
        if not p.email and rng.random() < (0.5 if age > 75 else 0.92):
            pattern = EMAIL_PATTERNS[_below(rng, len(EMAIL_PATTERNS))]
            local = pattern.format(f=first, i=first[0], l=last, n=1 + _below(rng, 99))
            p.email = self.unique_email(local, p.birth)
        if not p.email or rng.random() < 0.3:
            local = f"{first}.{last}{1 + _below(rng, 99)}"
            p.alt_email = self.unique_email(local, p.birth, OLD_DOMAINS if p.email else None)
        if rng.random() < (0.6 if age > 80 else 0.9):
            p.mobile = self.phones.mobile(p.address[4], rng)

    def plant_homonyms(self) -> None:
        """A person living alone renamed after another of the same sex living elsewhere, born
        another day (one pair per 250 persons)."""
        pairs = max(2, self.count // 250)
        sizes = Counter(p.household for p in self.persons)
        for _ in range(pairs * 10):
            if pairs == 0:
                return
            a, b = self.rng.sample(self.persons, 2)
            if (
                a.sex != b.sex
                or sizes[b.household] > 1  # (a family keeps its name)
                or b.is_twin
                or a.birth == b.birth
                or a.address[4] is b.address[4]
            ):
                continue
            b.first_name, b.first_key = a.first_name, a.first_key
            b.last_name, b.last_key = a.last_name, a.last_key
            pairs -= 1

    def mark_homonyms(self) -> None:
        groups: dict[tuple[str, str], list[Person]] = {}
        for p in self.persons:
            groups.setdefault((p.first_key, p.last_key), []).append(p)
        number = 0
        for members in groups.values():
            if len(members) > 1:
                number += 1
                for p in members:
                    p.homonym_group = number

    def companies(self) -> list[Company]:
        rng, pools = self.rng, self.pools
        out = []
        domains: set[str] = set()
        for i in range(max(3, self.count // 25)):
            naf, templates = rng.choice(NAF_CODES)
            commune = _pick(rng, pools.communes, pools.commune_weights)
            town = commune.city.split(" ")[0]
            base = rng.choice(templates).format(
                last=self.last_name()[0], city=town, first=self.first_name(rng.choice("MF"))[0]
            )
            name = f"{base} {rng.choice(LEGAL_FORMS)}" if rng.random() < 0.6 else base
            band, low, _ = rng.choices(HEADCOUNT_BANDS, weights=[w for *_, w in HEADCOUNT_BANDS])[0]
            org_class = "TPE" if low < 10 else "PME" if low < 250 else "ETI" if low < 5000 else "GE"
            siren = luhn_complete(f"{rng.randint(3, 9)}{i:07d}")
            siret = luhn_complete(siren + f"{rng.choice((1, 1, 1, 2, 3, 12, 25)):04d}")
            domain = slug(base)[:24] or "entreprise"
            while domain in domains:
                domain = f"{slug(base)[:18]}{rng.randint(1, 9999)}"
            domains.add(domain)
            switchboard = self.phones.landline(commune)
            out.append(
                Company(
                    siret,
                    name,
                    naf,
                    band,
                    org_class,
                    domain + rng.choice((".fr", ".fr", ".com")),
                    commune.postal_code,
                    commune.city,
                    switchboard,
                )
            )
        return out

    def b2b_contacts(self, companies: list[Company]) -> None:
        rng = self.rng
        sizes = _cumulative(1.0 / (i + 1) ** 0.6 for i in range(len(companies)))
        pro_emails: set[str] = set()
        for p in self.persons:
            age = (TODAY - p.birth).days // 365
            if not 22 <= age <= 66 or rng.random() >= 0.115:
                continue
            p.company = _pick(rng, range(len(companies)), sizes)
            company = companies[p.company]
            p.job_title = rng.choice(JOB_TITLES)
            work_last = p.maiden_name if p.work_maiden and p.maiden_name else p.last_name
            first, last = _slug(p.first_name), _slug(work_last)
            local = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", f"{first[0]}{last}"))
            while f"{local}@{company.domain}" in pro_emails:
                local += str(rng.randint(0, 9))
            p.pro_email = f"{local}@{company.domain}"
            pro_emails.add(p.pro_email)
            if rng.random() < 0.6:
                p.pro_phone = company.switchboard  # colleagues share it
            else:
                p.pro_phone = self.phones.mobile(p.address[4], rng)
                p.pro_phone_is_mobile = True


# --- records ----------------------------------------------------------------------------------


def _typo(rng: random.Random, name: str) -> str:
    """One letter wrong, as typed: replaced, dropped, doubled or swapped with the next one
    (never the first letter, which keeps its capital, nor a space, hyphen or apostrophe)."""
    letters = [i for i in range(1, len(name)) if name[i].isalpha()]
    if not letters:
        return name + name[-1]
    i = letters[_below(rng, len(letters))]
    kind = _below(rng, 4)
    if kind == 0:
        letter = "aeiourstnlmcdp"[_below(rng, 14)]
        if letter == name[i].lower():
            letter = "e" if letter != "e" else "a"
        return name[:i] + letter + name[i + 1 :]
    if kind == 1 and len(letters) > 3:
        return name[:i] + name[i + 1 :]
    if kind == 3 and i + 1 < len(name) and name[i + 1].isalpha():
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[: i + 1] + name[i:]


def _consents(
    out: dict[str, Any], rng: random.Random, shares: dict[str, float], collected_at: str
) -> None:
    """The mapping's consent columns as the import keeps them: yes or no, and when."""
    out["consents"] = {label: rng.random() < share for label, share in shares.items()}
    out["consent_details"] = {label: {"collected_at": collected_at} for label in shares}


def _line1(civility: str | None, first: str, last: str) -> str | None:
    """``names.identity_line`` (AFNOR line 1) for values already clean: its short case inline."""
    line = f"{civility} {first} {last.upper()}" if civility else f"{first} {last.upper()}"
    return line if len(line) <= AFNOR_LINE else names.identity_line(civility, first, last)


def _fields(presence: dict[str, bool]) -> dict[str, Any]:
    return {name: {"valid": True} for name, present in presence.items() if present}


class Generator:
    """A population and its records, deterministic for a seed.

    ``records`` base records (``duplicates`` of them extra records of a person already present)
    and ``new`` further ones (the same share of them new records of persons of the base, the
    others records of persons not in the base). :meth:`records` and :meth:`new_records` yield
    them source by source (loyalty, e-shop, contest, CRM), in a shuffled order within each;
    :attr:`stats` counts what the records were given.

    >>> gen = Generator(2000, seed=1)
    >>> first = next(gen.records())
    >>> first.normalized["last_name_key"] == first.normalized["last_name_key"].upper()
    True
    """

    def __init__(
        self, records: int, *, new: int = 0, seed: int = 7, duplicates: float = 0.30
    ) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.pools = Pools.build(rng)
        self.phones = PhoneBook(seed)
        self.base_persons = round(records * (1 - duplicates))
        new_extras = round(new * duplicates)
        total = self.base_persons + new - new_extras
        builder = _PopulationBuilder(rng, self.pools, self.phones, total)
        collecting = gc.isenabled()
        gc.disable()  # nothing here is garbage: collections would walk the growing heap for nothing
        try:
            while len(builder.persons) < total:
                builder.household()
            builder.plant_homonyms()
            for person in builder.persons:
                builder.contact(person)
            builder.mark_homonyms()
            self.companies = builder.companies()
            builder.b2b_contacts(self.companies)
            builder.email_keys.clear()
        finally:
            if collecting:
                gc.enable()
        gc.freeze()  # and later collections need not walk the population either
        self.persons = builder.persons
        self.households = builder.households
        self.in_couples = builder.in_couples
        married = sum(1 for p in self.persons if p.maiden_name)
        self.p_maiden = min(1.0, 0.03 * len(self.persons) / max(1, married))
        self.stats: Counter[str] = Counter()
        self.used = bytearray(total)  # per person: bit mask of the sources holding a record
        self._base = self._plan(
            rng, range(self.base_persons), records - self.base_persons, self.base_persons
        )
        self._new = self._plan(rng, range(self.base_persons, total), new_extras, self.base_persons)
        self.person_of = array("i")  # serial -> person
        for plan in (*self._base, *self._new):
            self.person_of.extend(code >> 1 for code in plan)
        self._household_of = array("i", (p.household for p in self.persons))
        self._homonym_of = array("i", (p.homonym_group for p in self.persons))
        self._twin_of = bytes(p.is_twin for p in self.persons)

    @property
    def record_count(self) -> int:
        return sum(len(p) for p in self._base)

    @property
    def new_count(self) -> int:
        return sum(len(p) for p in self._new)

    def _plan(
        self, rng: random.Random, firsts: range, extras: int, extra_pool: int
    ) -> list[array[int]]:
        """Per source, the records to make: ``person << 1 | is_extra``, shuffled."""
        plan: list[array[int]] = [array("q") for _ in SOURCES]
        used = self.used
        for i in firsts:
            p = self.persons[i]
            if p.company >= 0 and rng.random() < 0.35:
                source = CRM
            else:
                source = _pick(rng, CONSUMER_SOURCES, FIRST_SOURCE_WEIGHTS)
            used[i] |= 1 << source
            plan[source].append(i << 1)
        for _ in range(extras):
            i = _below(rng, extra_pool)
            p = self.persons[i]
            mask = used[i]
            unused = [s for s in CONSUMER_SOURCES if not mask & (1 << s)]
            if p.company >= 0 and not mask & (1 << CRM) and rng.random() < 0.5:
                source = CRM
            elif unused and rng.random() < 0.85:
                weights = [(40, 45, 15)[s] for s in unused]
                source = rng.choices(unused, weights=weights)[0]
            else:
                held = [s for s in range(len(SOURCES)) if mask & (1 << s)]
                source = rng.choice(held)
            used[i] |= 1 << source
            plan[source].append(i << 1 | 1)
        for part in plan:
            rng.shuffle(part)
        return plan

    def records(self) -> Iterator[Record]:
        """The base records, source by source."""
        return self._records(self._base, 0, random.Random(self.seed * 1_000_003 + 1))

    def new_records(self) -> Iterator[Record]:
        """The new records (after the base ones), source by source."""
        start = self.record_count
        return self._records(self._new, start, random.Random(self.seed * 1_000_003 + 2))

    def truth(self, key: str) -> TruthRecord:
        """Who the record ``key`` (base or new) belongs to."""
        person = self.person_of[serial_of(key)]
        group = self._homonym_of[person]
        return TruthRecord(
            f"P{person + 1:07d}",
            f"H{self._household_of[person]:07d}",
            bool(self._twin_of[person]),
            f"HG{group:06d}" if group else None,
        )

    def release(self) -> None:
        """Let the population go (the truth stays, in a few compact arrays): no record can be
        drawn afterwards."""
        self.persons, self.companies = [], []
        self._base, self._new = [], []
        gc.unfreeze()
        gc.collect()

    def _records(self, plan: list[array[int]], serial: int, rng: random.Random) -> Iterator[Record]:
        builders: tuple[Callable[[Person, str, bool, random.Random], Built], ...] = (
            self._loyalty,
            self._ecommerce,
            self._contest,
            self._crm,
        )
        persons = self.persons
        for source, part in enumerate(plan):
            build = builders[source]
            extras = sum(code & 1 for code in part)
            self.stats.update({"extras": extras, "firsts": len(part) - extras})
            for code in part:
                key = record_key(source, serial)
                serial += 1
                normalized, raw = build(persons[code >> 1], key, bool(code & 1), rng)
                yield Record(source, key, normalized, raw)

    # --- what every record of a person says ---------------------------------------------------

    def _identity(
        self,
        p: Person,
        extra: bool,
        rng: random.Random,
        out: dict[str, Any],
        civility_p: float,
        maiden_p: float = 0.0,
    ) -> dict[str, bool]:
        """Civility, gender, names and their match keys, AFNOR line 1 into ``out`` (the maiden
        name only where the source has a column for it, with ``maiden_p``); returns which
        elements are present, for the quality section."""
        first, first_key = p.first_name, p.first_key
        last, last_key = p.last_name, p.last_key
        maiden = p.maiden_name
        if extra:
            stats = self.stats
            roll = rng.random()
            if roll < 0.025:
                last = _typo(rng, last)
                stats["last_name_typo"] += 1
            elif roll < 0.05:
                first = _typo(rng, first)
                stats["first_name_typo"] += 1
            elif first in NICKNAMES and rng.random() < 0.02 / self.pools.nickname_share[p.sex]:
                first = rng.choice(NICKNAMES[first])
                stats["nickname"] += 1
            if roll < 0.05 or first is not p.first_name:
                # as the import reads them: an unknown first name before a last name that is
                # mainly a first name gets the two swapped back, for one
                person = names.normalize_person(first_name=first, last_name=last)
                first, first_key = person.first_name.value or first, person.first_name.key or ""
                last, last_key = person.last_name.value or last, person.last_name.key or ""
            if maiden and p.maiden_key and rng.random() < self.p_maiden:
                last, last_key, maiden = maiden, p.maiden_key, None
                stats["birth_name_as_last_name"] += 1
        civility = None
        if rng.random() < civility_p:
            civility = "M." if p.sex == "M" else "Mme"
            out["civility"] = civility
            out["gender"] = p.sex
        out["first_name"], out["first_name_key"] = first, first_key
        out["last_name"], out["last_name_key"] = last, last_key
        has_maiden = bool(maiden and p.maiden_key and rng.random() < maiden_p)
        if has_maiden:
            out["maiden_name"], out["maiden_name_key"] = maiden, p.maiden_key
        out["address_line1"] = _line1(civility, first, last)
        return {
            "civility": civility is not None,
            "first_name": True,
            "last_name": True,
            "maiden_name": has_maiden,
        }

    def _birth(self, p: Person, extra: bool, rng: random.Random, share: float) -> str | None:
        if rng.random() >= share:
            return None
        born = p.birth
        if extra:
            self.stats["extras_with_birth_date"] += 1
            if born.day <= 12 and born.day != born.month and rng.random() < 0.01 / 0.36:
                self.stats["birth_day_month_swapped"] += 1
                return f"{born.year:04d}-{born.day:02d}-{born.month:02d}"
        return born.isoformat()

    def _email(self, p: Person, extra: bool, rng: random.Random) -> str | None:
        email = p.email or p.alt_email
        if extra and p.email and p.alt_email and rng.random() < 0.4:
            self.stats["other_email"] += 1
            email = p.alt_email
        return email

    def _address(self, p: Person, extra: bool, rng: random.Random, older: float) -> Address:
        if p.old_address is not None and rng.random() < older:
            if extra:
                self.stats["address_before_move"] += 1
            return p.old_address
        return p.address

    @staticmethod
    def _put_email(out: dict[str, Any], ids: dict[str, str], email: str | None) -> bool:
        if email is None:
            return False
        local, _, domain = email.partition("@")
        out["email"] = email
        out["email_key"] = ids["email"] = emails.match_key(local, domain)
        return True

    @staticmethod
    def _put_address(out: dict[str, Any], addr: Address, raw: dict[str, Any]) -> None:
        complement, building, street, special, commune = addr
        for name, value in (
            ("address_complement", complement),
            ("address_building", building),
            ("address_street", street),
            ("address_special", special),
        ):
            if value is not None:
                out[name] = value
        out["postal_code"] = commune.postal_code
        out["city"] = commune.city
        out["insee_code"] = commune.insee_code
        out["address_line6"] = commune.line6
        out["country"] = "FR"
        raw["adresse"] = (street or special or "").lower()
        raw["code_postal"] = commune.postal_code
        raw["ville"] = commune.city.upper()

    @staticmethod
    def _quality(
        out: dict[str, Any],
        present: dict[str, bool],
        originals: dict[str, str],
        flags: tuple[str, tuple[str, ...]] | None = None,
    ) -> None:
        """The ``quality`` section and score as ``quality.record`` computes them: every element
        here is valid; one with a warning flag counts half."""
        fields = _fields(present)
        for name, original in originals.items():
            fields[name]["original"] = original
        filled = sum(SCORE_WEIGHTS.get(n, 0) for n, here in present.items() if here)
        score = float(filled)
        if flags is not None and flags[1]:
            name, codes = flags
            fields[name]["flags"] = list(codes)
            if not WARNINGS.isdisjoint(codes):
                score -= SCORE_WEIGHTS[name] / 2
        out["quality"] = {
            "completeness": round(filled / 100, 3),
            "fields": fields,
            "score": round(score),
            "validity": 1.0,
            "version": QUALITY_VERSION,
        }
        out["quality_score"] = round(score)

    def _phones(
        self,
        out: dict[str, Any],
        present: dict[str, bool],
        originals: dict[str, str],
        mobile: str | None,
        fixed: str | None,
    ) -> None:
        for slot, number, kind in (
            ("phone_mobile", mobile, "mobile"),
            ("phone_fixed", fixed, "fixed"),
        ):
            present[slot] = number is not None
            if number is not None:
                out[slot] = number
                out[f"{slot}_type"] = kind
                originals[slot] = national(number)

    # --- one builder per source ---------------------------------------------------------------

    def _loyalty(self, p: Person, key: str, extra: bool, rng: random.Random) -> Built:
        out: dict[str, Any] = {"loyalty_card": key}
        ids: dict[str, str] = {"loyalty_card": key}
        present = self._identity(p, extra, rng, out, 0.97, maiden_p=0.5)
        born = self._birth(p, extra, rng, 0.92)
        if born:
            out["birth_date"] = born
        present["birth_date"] = born is not None
        email = self._email(p, extra, rng) if rng.random() < 0.7 else None
        present["email"] = self._put_email(out, ids, email)
        raw: dict[str, Any] = {
            "num_carte": key,
            "civilite": "MME" if p.sex == "F" else "M",
            "nom": out["last_name"].upper(),
            "prenom": out["first_name"].upper(),
            "date_naissance": born or "",
            "email": email or "",
        }
        self._put_address(out, self._address(p, extra, rng, 0.7), raw)
        present["address"] = True
        originals: dict[str, str] = {}
        mobile = p.mobile if p.mobile and rng.random() < 0.85 else None
        fixed = p.landline if p.landline and rng.random() < 0.8 else None
        self._phones(out, present, originals, mobile, fixed)
        if mobile:
            ids["phone_mobile"] = mobile
        if fixed:
            ids["phone_fixed"] = fixed
        raw["tel_portable"] = originals.get("phone_mobile", "")
        raw["tel_fixe"] = originals.get("phone_fixed", "")
        since = TODAY - timedelta(days=30 + _below(rng, 5970))
        out["created_at"] = raw["date_creation"] = since.isoformat()
        out["customer_type"] = "customer"
        out["home_store"] = raw["magasin"] = f"M{1 + _below(rng, 60):03d}"
        out["points_balance"] = _below(rng, 4001)
        out["lifetime_spend"] = f"{_below(rng, 900_001) / 100:.2f}"
        _consents(out, rng, {"email:marketing": 0.6, "sms:marketing": 0.4}, out["created_at"])
        out["identifiers"] = ids
        self._quality(out, present, originals)
        return out, raw

    def _ecommerce(self, p: Person, key: str, extra: bool, rng: random.Random) -> Built:
        out: dict[str, Any] = {"account_id": key}
        ids: dict[str, str] = {"account_id": key}
        present = self._identity(p, extra, rng, out, 0.75)
        born = self._birth(p, extra, rng, 0.55)
        if born:
            out["birth_date"] = born
        present["birth_date"] = born is not None
        email = self._email(p, extra, rng)
        present["email"] = self._put_email(out, ids, email)
        raw: dict[str, Any] = {
            "account_id": key,
            "email": email,
            "first_name": out["first_name"],
            "last_name": out["last_name"],
        }
        present["address"] = rng.random() < 0.95
        if present["address"]:
            self._put_address(out, self._address(p, extra, rng, 0.4), raw)
        originals: dict[str, str] = {}
        phone = None
        if rng.random() < 0.6:
            phone = p.mobile or p.landline
        mobile = phone if phone is not None and phone == p.mobile else None
        fixed = phone if phone is not None and mobile is None else None
        self._phones(out, present, originals, mobile, fixed)
        if phone:
            ids["phone"] = phone
            raw["phone"] = national(phone)
        since = TODAY - timedelta(days=30 + _below(rng, 3970))
        out["created_at"] = (
            f"{since.isoformat()}T{_below(rng, 24):02d}:{_below(rng, 60):02d}:00+01:00"
        )
        out["last_login_at"] = f"{TODAY.isoformat()}T08:00:00+01:00"
        out["language"] = "fr"
        out["customer_type"] = "customer"
        _consents(out, rng, {"email:marketing": 0.5, "sms:marketing": 0.2}, out["created_at"])
        out["identifiers"] = ids
        self._quality(out, present, originals)
        return out, raw

    def _contest(self, p: Person, key: str, extra: bool, rng: random.Random) -> Built:
        out: dict[str, Any] = {"contest_entry": key, "contest_name": rng.choice(GAMES)}
        ids: dict[str, str] = {}
        present = self._identity(p, extra, rng, out, 0.75)
        born = self._birth(p, extra, rng, 0.7)
        if born:
            out["birth_date"] = born
        present["birth_date"] = born is not None
        email = self._email(p, extra, rng)
        present["email"] = self._put_email(out, ids, email)
        commune = self._address(p, extra, rng, 0.4)[4]
        city, insee, line6 = commune.postal_only
        out["postal_code"] = commune.postal_code
        out["address_line6"] = line6
        out["country"] = "FR"
        if city and insee:
            out["city"], out["insee_code"] = city, insee
        present["address"] = True
        originals: dict[str, str] = {}
        phone = (p.mobile or p.landline) if rng.random() < 0.4 else None
        mobile = phone if phone is not None and phone == p.mobile else None
        fixed = phone if phone is not None and mobile is None else None
        self._phones(out, present, originals, mobile, fixed)
        if phone:
            ids["phone"] = phone
        out["created_at"] = (
            f"{(TODAY - timedelta(days=10 + _below(rng, 1490))).isoformat()}T00:00:00+01:00"
        )
        out["customer_type"] = "prospect"
        _consents(out, rng, {"email:marketing": 0.7, "email:partners": 0.3}, out["created_at"])
        out["identifiers"] = ids
        self._quality(out, present, originals, ("address", commune.postal_only_flags))
        raw = {
            "entry_id": key,
            "nom": out["last_name"],
            "prenom": out["first_name"],
            "email": email,
        }
        return out, raw

    def _crm(self, p: Person, key: str, extra: bool, rng: random.Random) -> Built:
        company = self.companies[p.company]
        out: dict[str, Any] = {"b2b_contact": key}
        ids: dict[str, str] = {}
        present = self._identity(p, extra, rng, out, 0.9)
        if p.work_maiden and p.maiden_name and p.maiden_key and out["last_name_key"] == p.last_key:
            out["last_name"], out["last_name_key"] = p.maiden_name, p.maiden_key
            out.pop("maiden_name", None)
            out.pop("maiden_name_key", None)
            out["address_line1"] = _line1(out.get("civility"), out["first_name"], p.maiden_name)
        present["birth_date"] = False
        email = p.pro_email if rng.random() < 0.9 else None
        present["email"] = self._put_email(out, ids, email)
        present["address"] = False
        originals: dict[str, str] = {}
        pro = p.pro_phone if rng.random() < 0.8 else None
        pro_mobile = pro is not None and p.pro_phone_is_mobile
        mobile = pro if pro_mobile else (p.mobile if p.mobile and rng.random() < 0.3 else None)
        fixed = pro if pro is not None and not pro_mobile else None
        self._phones(out, present, originals, mobile, fixed)
        if mobile:
            ids["phone_mobile"] = mobile
        if fixed:
            ids["phone_fixed"] = fixed
        out["job_title"] = p.job_title
        out["org_siret"] = company.siret
        present["org_siret"] = present["org_naf_code"] = True
        out["org_name"] = company.name
        out["org_naf_code"] = company.naf_code
        out["org_headcount_band"] = company.headcount_band
        out["org_class"] = company.org_class
        out["org_postal_code"] = company.postal_code
        out["org_city"] = company.city
        out["updated_at"] = (TODAY - timedelta(days=1 + _below(rng, 899))).isoformat()
        out["customer_type"] = "customer"
        out["identifiers"] = ids
        self._quality(out, present, originals)
        raw = {"contact_id": key, "nom": out["last_name"], "siret": company.siret, "email": email}
        return out, raw

    def model(self) -> dict[str, float]:
        """The population's shares (of persons) and what the extra records were given (shares
        of extra records; the birth-date swap: of extras with a birth date)."""
        persons = self.persons[: self.base_persons]
        n = len(persons)
        stats = self.stats
        extras = max(1, stats["extras"])
        household_sizes = Counter(p.household for p in persons)
        return {
            "persons_in_households_of_2_or_more": round(
                sum(1 for p in persons if household_sizes[p.household] > 1) / n, 3
            ),
            "persons_in_couples": round(self.in_couples / len(self.persons), 3),
            "married_women": round(sum(1 for p in persons if p.maiden_name) / n, 3),
            "twins": round(sum(1 for p in persons if p.is_twin) / n, 4),
            "persons_with_a_homonym": round(sum(1 for p in persons if p.homonym_group) / n, 3),
            "b2b_contacts": round(sum(1 for p in persons if p.company >= 0) / n, 3),
            "moved_persons": round(sum(1 for p in persons if p.old_address) / n, 3),
            **{
                f"extras_{name}": round(stats[name] / extras, 4)
                for name in (
                    "last_name_typo",
                    "first_name_typo",
                    "nickname",
                    "birth_name_as_last_name",
                    "other_email",
                    "address_before_move",
                )
            },
            "extras_birth_day_month_swapped": round(
                stats["birth_day_month_swapped"] / max(1, stats["extras_with_birth_date"]), 4
            ),
        }


# --- loading, as the import does --------------------------------------------------------------


@dataclass
class LoadStats:
    records: int = 0
    generate_seconds: float = 0.0
    load_seconds: float = 0.0
    by_source: Counter[str] = field(default_factory=Counter)


def _seal(record: Record) -> tuple[str, str, str, str, str]:
    """``(key, raw JSON, normalized JSON, quality flags JSON, fingerprint)``, as the import's
    ``MappedRow.seal`` makes them."""
    raw_json = orjson.dumps(record.raw, option=orjson.OPT_SORT_KEYS).decode()
    normalized_json = orjson.dumps(record.normalized, option=orjson.OPT_SORT_KEYS).decode()
    fields = record.normalized["quality"]["fields"]
    codes = sorted({c for q in fields.values() for c in q.get("flags", ())})
    flags_json = orjson.dumps(codes).decode() if codes else "[]"
    return record.key, raw_json, normalized_json, flags_json, fingerprint(raw_json, normalized_json)


def load(
    factory: Any,
    records: Iterable[Record],
    *,
    label: str,
    chunk_records: int = CHUNK_RECORDS,
    progress: Callable[[LoadStats], None] | None = None,
) -> LoadStats:
    """Write ``records`` as the import writes accepted customer rows: per source a source and
    an import batch, then per chunk (one transaction) the source records with ids reserved for
    their golden customers, one provisional customer per record, the batch's progress.
    Generation (building and sealing the records) and writing are timed apart."""
    from sqlalchemy import update

    from tournesol.customers import service as customer_service
    from tournesol.customers.models import Customer
    from tournesol.db import Dialect, unit_of_work, utcnow
    from tournesol.ingest import service as ingest_service
    from tournesol.ingest.importer import GROWING_TABLES
    from tournesol.ingest.models import ImportBatch
    from tournesol.ingest.schemas import SourceSpec

    stats = LoadStats()
    chunks_done = 0
    for source, group in itertools.groupby(records, key=lambda r: r.source):
        info = SOURCES[source]
        started = time.perf_counter()
        with unit_of_work(factory) as session:
            brand_id = customer_service.get_or_create_brand(session, code=info.brand).id
            spec = SourceSpec(
                name=info.name, kind=info.kind, brand=info.brand, trust_rank=info.trust_rank
            )
            source_id = ingest_service.get_or_create_source(
                session, name=info.name, spec=spec, brand_id=brand_id
            ).id
            digest = hashlib.sha256(f"{label}:{info.name}".encode()).hexdigest()
            batch = ImportBatch(
                source_id=source_id,
                entity="customer",
                file_name=f"{label}-{info.name}.jsonl",
                file_sha256=digest,
                mapping_sha256=digest,
                file_format="jsonl",
                encoding="utf-8",
                status="running",
            )
            session.add(batch)
            session.flush()
            batch_id = batch.id
        stats.load_seconds += time.perf_counter() - started
        line = 1  # the file's header
        while True:
            started = time.perf_counter()
            # sealed at once: a chunk holds text, not a few million dicts for the collector
            sealed = [_seal(r) for r in itertools.islice(group, chunk_records)]
            stats.generate_seconds += time.perf_counter() - started
            if not sealed:
                break
            started = time.perf_counter()
            with unit_of_work(factory) as session:
                # write first: on SQLite this takes the write lock before ids are reserved
                session.execute(
                    update(ImportBatch)
                    .where(ImportBatch.id == batch_id)
                    .values(committed_line=ImportBatch.committed_line)
                )
                customer_ids = Dialect.of(session).reserve_ids(
                    session.connection(),
                    Customer.__table__,  # type: ignore[arg-type]
                    len(sealed),
                )
                record_ids = ingest_service.insert_records(
                    session,
                    source_id=source_id,
                    entity="customer",
                    batch_id=batch_id,
                    rows=[
                        (key, raw, normalized, flags, fp, line + i, cid)
                        for i, ((key, raw, normalized, flags, fp), cid) in enumerate(
                            zip(sealed, customer_ids, strict=True), start=1
                        )
                    ],
                )
                customer_service.create_from_records(
                    session, record_ids=record_ids, brand_id=brand_id
                )
                line += len(sealed)
                current = session.get_one(ImportBatch, batch_id)
                current.rows_read += len(sealed)
                current.accepted += len(sealed)
                current.committed_line = line
            chunks_done += 1
            if chunks_done & (chunks_done - 1) == 0:  # after chunks 1, 2, 4, 8... as the import
                with unit_of_work(factory) as session:
                    Dialect.of(session).refresh_statistics(session.connection(), GROWING_TABLES)
            stats.load_seconds += time.perf_counter() - started
            stats.records += len(sealed)
            stats.by_source[info.name] += len(sealed)
            if progress is not None:
                progress(stats)
        started = time.perf_counter()
        with unit_of_work(factory) as session:
            current = session.get_one(ImportBatch, batch_id)
            current.status = "completed"
            current.finished_at = utcnow()
        stats.load_seconds += time.perf_counter() - started
    return stats


# --- memory -----------------------------------------------------------------------------------


def tree_pss_mb(pid: int) -> float:
    """Memory of a process and all its descendants, from /proc (Linux): the sum of their
    proportional set sizes (PSS), so pages shared after a fork are counted once."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            total += int(next(x for x in rollup.splitlines() if x.startswith("Pss:")).split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue  # the process ended meanwhile
    return total / 1024


class TreeSampler:
    """The largest :func:`tree_pss_mb` of a process tree, sampled every ``every`` seconds in a
    thread between :meth:`start` and :meth:`stop`."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, tree_pss_mb(self.pid))
            if self._stop.wait(self.every):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def peak_rss_mb() -> float:
    """This process's peak resident size plus that of its largest finished child (Linux: KB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (own + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


# --- the run ----------------------------------------------------------------------------------


class Unavailable(Exception):
    """Identity resolution is not there yet."""


def _resolver() -> Callable[..., Any]:
    try:
        from tournesol.identity.service import resolve
    except ImportError as exc:  # the module or its function is missing, not one of its imports
        if exc.name in ("tournesol.identity.service", "tournesol.identity"):
            raise Unavailable from exc
        raise
    return resolve


def _scorer() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    try:
        from tournesol.identity.evaluation import TruthRecord as EvalTruth
        from tournesol.identity.evaluation import score
    except ImportError as exc:
        if exc.name in ("tournesol.identity.evaluation", "tournesol.identity"):
            return None
        raise
    return score, EvalTruth


QUALITY_FIGURES = (
    "precision",
    "recall",
    "f1",
    "persons_split",
    "customers_mixing_persons",
    "household_pairs_merged",
    "twin_pairs_merged",
    "homonym_pairs_merged",
)


def _quality(factory: Any, gen: Generator, prefix: str) -> dict[str, Any]:
    from sqlalchemy import text

    found = _scorer()
    if found is None:
        print("quality: tournesol.identity.evaluation is not available; not scored")
        return {}
    score, eval_truth = found
    with factory() as session:
        assignment = {
            key: cid
            for key, cid in session.execute(
                text("SELECT source_key, customer_id FROM source_record")
            )
        }
    truth = {key: eval_truth(*gen.truth(key)) for key in assignment}
    scores = score(assignment, truth)
    out = {f"{prefix}{name}": getattr(scores, name) for name in QUALITY_FIGURES}
    for name in ("precision", "recall", "f1"):
        out[f"{prefix}{name}"] = round(out[f"{prefix}{name}"], 5)
    return out


def _customers_in_use(factory: Any) -> int:
    from sqlalchemy import text

    with factory() as session:
        return int(
            session.execute(
                text("SELECT COUNT(DISTINCT customer_id) FROM source_record")
            ).scalar_one()
        )


def _count(factory: Any, table: str) -> int:
    from sqlalchemy import text

    with factory() as session:
        return int(session.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one())


def _database(args: argparse.Namespace) -> tuple[str, Callable[[], None]]:
    """A fresh database URL and what to do at the end (drop it, unless ``--keep``)."""
    from sqlalchemy import text

    from tournesol.db import make_engine

    if args.database_url is None:
        folder = Path(tempfile.mkdtemp(prefix="tournesol-identity-bench-"))
        path = folder / "bench.db"

        def drop_file() -> None:
            if args.keep:
                print(f"kept the SQLite database: {path}")
            else:
                shutil.rmtree(folder, ignore_errors=True)

        return f"sqlite:///{path}", drop_file
    base = args.database_url
    if base.startswith("postgresql://"):
        base = "postgresql+psycopg://" + base.removeprefix("postgresql://")
    schema = f"bench_identity_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))

    def drop_schema() -> None:
        if args.keep:
            print(f"kept the PostgreSQL schema: {schema}")
        else:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", drop_schema


def resolve_child(url: str, mode: str) -> None:
    """In its own process (so that its memory is its own): one resolution, its progress, its
    report, then a ``RESULT`` line with the time of ``resolve`` and the process's peak memory."""
    from tournesol.db import make_engine, make_session_factory

    resolve = _resolver()
    engine = make_engine(url)
    started = time.perf_counter()
    report = resolve(make_session_factory(engine), full=mode == "full", progress=_say(started))
    seconds = time.perf_counter() - started
    print(report, flush=True)
    engine.dispose()
    print("RESULT " + json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb()}), flush=True)


def run_resolution(url: str, mode: str) -> dict[str, float]:
    """Run :func:`resolve_child` and echo what it says; adds ``tree_peak_mb``, the largest
    memory of it and every process it started (PSS, sampled every 0.5 s)."""
    import subprocess

    child = subprocess.Popen(
        [sys.executable, __file__, "--resolve-child", url, mode],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    sampler = TreeSampler(child.pid)
    sampler.start()
    result: dict[str, float] | None = None
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("RESULT "):
            result = json.loads(line.removeprefix("RESULT "))
        else:
            print(line, end="", flush=True)
    child.wait()
    tree_peak = sampler.stop()
    if child.returncode != 0 or result is None:
        raise SystemExit(f"the {mode} resolution failed (exit code {child.returncode}): see above")
    return result | {"tree_peak_mb": tree_peak}


def _say(started: float) -> Callable[[str], None]:
    """Resolution's progress messages, with the time since ``started``."""

    def say(message: str) -> None:
        print(f"  [{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    return say


def _progress(stats: LoadStats) -> None:
    print(
        f"  {stats.records:>10,} records  (generating {stats.generate_seconds:6.1f} s, "
        f"writing {stats.load_seconds:6.1f} s)",
        flush=True,
    )


def run(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Generate, load, resolve, score; the figures go into ``figures`` as they come. Raises
    Unavailable after the load when identity resolution is not there."""
    from tournesol.db import make_engine, make_session_factory
    from tournesol.migrations import upgrade

    started = time.perf_counter()
    new = 0 if args.generate_only else args.new
    gen = Generator(args.records, new=new, seed=args.seed, duplicates=args.duplicates)
    population_seconds = time.perf_counter() - started
    print(
        f"population: {len(gen.persons):,} persons in {gen.households:,} households, "
        f"{len(gen.companies):,} companies ({population_seconds:.1f} s)",
        flush=True,
    )
    url, finish = _database(args)
    engine = make_engine(url)
    try:
        upgrade(engine)
        factory = make_session_factory(engine)
        print(f"generating and loading {gen.record_count:,} records into {engine.url}")
        loaded = load(factory, gen.records(), label=f"base-{args.seed}", progress=_progress)
        figures |= {
            "records": loaded.records,
            "persons": gen.base_persons,
            "duplicates_share": round((loaded.records - gen.base_persons) / loaded.records, 4),
            "generate_seconds": round(population_seconds + loaded.generate_seconds, 1),
            "load_seconds": round(loaded.load_seconds, 1),
            "generate_and_load_peak_rss_mb": round(peak_rss_mb()),
        }
        for name, value in gen.model().items():
            print(f"model: {name} {value}")
        print(f"records per source: {dict(loaded.by_source)}")
        if args.generate_only:
            figures["source_records"] = _count(factory, "source_record")
            figures["customers"] = _count(factory, "customer")
            return
        new_records = list(gen.new_records())
        gen.release()
        _resolver()  # Unavailable, now that generation and load are known to work

        print("resolving the whole base (in its own process)...", flush=True)
        result = run_resolution(url, "full")
        figures |= {
            "resolve_seconds": round(result["seconds"], 1),
            "peak_rss_mb": round(result["peak_rss_mb"]),
            "peak_tree_pss_mb": round(result["tree_peak_mb"]),
            "customers_after": _customers_in_use(factory),
        }
        figures |= _quality(factory, gen, "")

        print(f"loading {len(new_records):,} new records...", flush=True)
        loaded_new = load(factory, new_records, label=f"new-{args.seed}")
        print("resolving the new records (in its own process)...", flush=True)
        result = run_resolution(url, "incremental")
        figures |= {
            "incremental_records": loaded_new.records,
            "incremental_load_seconds": round(loaded_new.load_seconds, 2),
            "incremental_seconds": round(result["seconds"], 2),
            "incremental_peak_rss_mb": round(result["peak_rss_mb"]),
            "customers_after_incremental": _customers_in_use(factory),
        }
        figures |= _quality(factory, gen, "incremental_")
    finally:
        engine.dispose()
        finish()


def _print(figures: dict[str, Any]) -> None:
    print()
    for name, value in figures.items():
        print(f"{name} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--duplicates",
        type=float,
        default=0.30,
        help="share of the records that are extra records of a person already present",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL URL (a fresh schema is made and dropped); default: a fresh SQLite file",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--generate-only", action="store_true", help="generate and load, then stop")
    parser.add_argument("--resolve-child", nargs=2, metavar=("URL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resolve_child:
        resolve_child(*args.resolve_child)
        return
    figures: dict[str, Any] = {}
    try:
        run(args, figures)
    except Unavailable:
        _print(figures)
        raise SystemExit(
            "identity resolution is not available yet (tournesol.identity.service.resolve is "
            "missing): generation and load worked (figures above; --generate-only stops there)"
        ) from None
    _print(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
