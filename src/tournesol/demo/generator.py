"""A realistic synthetic French multi-source customer dataset, with its ground truth.

``generate(out_dir)`` draws a population (``people``), gives each person records in some of
the sources, simulates purchases and calls (``behaviour``), writes every source in its own
format with its own dirt (``dirt``), and writes what really happened:

- ``truth.csv``: one row per data row of every file: ``source, source_key, line_no,
  person_id, household_id, is_twin, is_homonym_group, expected, reject_reason_code,
  campaign_code``. ``expected`` is ``reject`` only for the planted malformed rows listed below;
  ``campaign_code`` marks the purchases caused by an outbound campaign.
- ``persons.csv``: one row per true person with their latent traits.
- ``mappings/*.yaml``: the mapping of each source, as the importer reads it.

Who is where: 60 % of persons hold a loyalty card (5 % of them two), an e-shop account is held
by 42 % of cardholders and 62 % of the others (4 % of account holders have two), 11 % of
persons entered a contest (6 % of them twice) and so did every person known nowhere else
(prospects); B2B contacts are in the B2B CRM. Only records the importer accepts are used by
tickets, orders, calls and web events, so every reference points to an existing record; a
person with two cards (or accounts) mostly uses the newest one once it exists. Call-center
agents find the caller's e-shop account in 55 % of inbound calls (always for outbound ones)
and type the loyalty card in 45 % of calls; the others stay unlinked.

Line numbers (``line_no``): CSV files count physical lines with the header as line 1 (no value
ever contains a line break); JSON Lines count lines from 1; the workbook counts sheet rows with
the header as row 1; the orders JSON counts records of the ``orders`` array from 1.

Planted rejects (and nothing else is meant to be rejected):

- loyalty: the header line repeated once in the middle (``REPEATED_HEADER``), ``persons //
  2500`` rows with one column too many (an unquoted ``;`` in an address) or one too few
  (``COLUMN_COUNT``), ``persons // 1250`` impossible birth dates such as 31/02/1980
  (``INVALID_DATE``), each at least one;
- ecommerce: ``persons // 2500`` impossible ISO birth dates (``INVALID_DATE``), at least one;
- callcenter: ``persons // 2500`` rows with an unquoted comma in the comment (``COLUMN_COUNT``);
- tickets: ``persons // 2500`` lines missing their discount column (``COLUMN_COUNT``);
- b2b: one row missing its last column (``COLUMN_COUNT``).

For a given seed the files are byte-identical from one run to the next: everything is drawn
from ``random.Random(seed)`` and a seeded Faker, nothing reads the clock.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import shutil
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from faker import Faker

from tournesol.demo import behaviour as bh
from tournesol.demo import dirt
from tournesol.demo.people import Person, Population, build_population, shift_years

MAPPINGS_DIR = Path(__file__).parent / "mappings"
R = TypeVar("R")
PARIS = ZoneInfo("Europe/Paris")
TRUTH_COLUMNS = (
    "source", "source_key", "line_no", "person_id", "household_id", "is_twin",
    "is_homonym_group", "expected", "reject_reason_code", "campaign_code",
)  # fmt: skip
PERSONS_COLUMNS = (
    "person_id", "household_id", "gender", "birth_year", "is_twin", "homonym_group", "is_b2b",
    "has_card", "has_account", "in_contest", "start_date", "purchase_rate", "avg_basket",
    "churn_date", "preferred_channel", "web_share", "responsiveness", "home_store",
)  # fmt: skip
GAMES = (
    ("Grand jeu de l'été", 7, 1, 31),
    ("Calendrier de l'Avent", 12, 1, 24),
    ("Jeu fête des mères", 5, 10, 31),
)
CALLER_ID_STYLES = ("plain", "intl_plain", "spaced")
ORDER_STATUSES, ORDER_STATUS_WEIGHTS = ("delivered", "returned", "cancelled"), (92, 5, 3)
PAYMENTS, PAYMENT_WEIGHTS = ("CB", "PayPal", "Apple Pay", "Carte cadeau"), (70, 20, 7, 3)
COMMENTS = (
    "", "", "", "RAS", "Client mécontent, rappeler lundi", "Colis livré chez un voisin",
    "Demande de geste commercial", "Points crédités manuellement", "Bon d'achat envoyé",
    "Erreur de saisie de l'adresse, corrigée", "Transféré au service retours",
)  # fmt: skip


@dataclass(frozen=True)
class DemoFile:
    """One generated source file, in import order."""

    source: str
    path: Path
    mapping: Path
    description: str
    rows: int  # data rows (records) in the file, planted malformed rows included
    entity: str = "customer"


@dataclass(frozen=True)
class DemoManifest:
    files: list[DemoFile]
    truth_path: Path
    persons_path: Path
    seed: int
    persons: int
    today: date

    def file(self, source: str) -> DemoFile:
        return next(f for f in self.files if f.source == source)


@dataclass(slots=True)
class Card:
    number: str
    person_id: str
    created: date
    store: str
    reject: str = ""


@dataclass(slots=True)
class Account:
    account_id: int
    person_id: str
    created: datetime
    email: str
    reject: str = ""


@dataclass
class Plan:
    """Which source records each person has."""

    cards: list[Card] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    entries: list[tuple[str, datetime, str]] = field(default_factory=list)  # person, at, game
    contacts: list[Person] = field(default_factory=list)

    cards_of: dict[str, list[Card]] = field(default_factory=dict)  # usable ones, oldest first
    accounts_of: dict[str, list[Account]] = field(default_factory=dict)

    def index(self) -> None:
        """Index the records the importer will accept: only those are referenced."""
        self.cards_of, self.accounts_of = {}, {}
        for card in self.cards:
            if not card.reject:
                self.cards_of.setdefault(card.person_id, []).append(card)
        for account in self.accounts:
            if not account.reject:
                self.accounts_of.setdefault(account.person_id, []).append(account)


@dataclass
class Table:
    """A file's columns and rows before writing."""

    source: str
    columns: list[str]
    rows: list[dirt.Row]


# --- who is where -----------------------------------------------------------------------------


def _ean13(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _adult_since(person: Person) -> date:
    return shift_years(person.birth_date, 18)


def _random_day(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange(max(1, (end - start).days)))


def plan_records(rng: random.Random, pop: Population, today: date) -> Plan:
    """Draw cards, accounts, contest entries and B2B contacts, and plant the rejects."""
    plan = Plan()
    for person in pop.persons:
        has_card = rng.random() < 0.60
        has_account = rng.random() < (0.42 if has_card else 0.62)
        earliest = max(_adult_since(person), today - timedelta(days=12 * 365))
        if has_card:
            plan.cards.extend(_cards(rng, person, earliest, today))
        if has_account:
            plan.accounts.extend(_accounts(rng, person, earliest, today, pop.emails))
        known = has_card or has_account or person.company is not None
        if not known or rng.random() < 0.11:
            for _ in range(2 if rng.random() < 0.06 else 1):
                plan.entries.append((person.person_id, *_contest_moment(rng, today)))
        if person.company is not None:
            plan.contacts.append(person)
    _number_records(rng, plan)
    persons = len(pop.persons)
    invalid, broken = max(1, persons // 1250), max(1, persons // 2500)
    for number, card in enumerate(rng.sample(plan.cards, invalid + broken)):
        card.reject = "INVALID_DATE" if number < invalid else "COLUMN_COUNT"
    for account in rng.sample(plan.accounts, max(1, persons // 2500)):
        account.reject = "INVALID_DATE"
    plan.index()
    return plan


def _cards(rng: random.Random, person: Person, earliest: date, today: date) -> list[Card]:
    store = bh.home_store(rng, person.address.postal_code)
    first = _random_day(rng, earliest, today - timedelta(days=1))
    cards = [Card("", person.person_id, first, store)]
    if rng.random() < 0.05 and (today - first).days > 200:
        second = _random_day(rng, first + timedelta(days=150), today - timedelta(days=20))
        cards.append(Card("", person.person_id, second, store))
    return cards


def _accounts(
    rng: random.Random, person: Person, earliest: date, today: date, taken: set[str]
) -> list[Account]:
    start = max(earliest, today - timedelta(days=8 * 365))
    first = _random_day(rng, start, today - timedelta(days=1))
    email = person.email or person.spare_email
    accounts = [Account(0, person.person_id, _daytime(rng, first), email)]
    if rng.random() < 0.04 and (today - first).days > 200:
        second = _random_day(rng, first + timedelta(days=100), today - timedelta(days=10))
        local, _, domain = email.partition("@")
        other = rng.choice(
            (f"{local}@hotmail.fr", f"{local}@yahoo.fr", dirt.email_typo(rng, email))
        )
        while other in taken:  # a second address, nobody else's
            other = f"{local}{rng.randint(1, 99)}@{domain}"
        taken.add(other)
        accounts.append(Account(0, person.person_id, _daytime(rng, second), other))
    return accounts


def _daytime(rng: random.Random, day: date) -> datetime:
    return datetime.combine(day, time(rng.randint(7, 23), rng.randrange(60), rng.randrange(60)))


def _contest_moment(rng: random.Random, today: date) -> tuple[datetime, str]:
    name, month, first, last = rng.choice(GAMES)
    year = today.year if date(today.year, month, last) < today else today.year - 1
    day = date(year, month, rng.randint(first, last))
    return _daytime(rng, day), f"{name} {year}"


def _number_records(rng: random.Random, plan: Plan) -> None:
    plan.cards.sort(key=lambda c: (c.created, c.person_id))
    counter = 10_000_000 + rng.randrange(1_000_000)
    for card in plan.cards:
        counter += rng.randint(1, 5)
        card.number = _ean13(f"2990{counter}")
    plan.accounts.sort(key=lambda a: (a.created, a.person_id))
    account_id = 100_000 + rng.randrange(10_000)
    for account in plan.accounts:
        account_id += rng.randint(1, 30)
        account.account_id = account_id
    plan.entries.sort(key=lambda e: (e[1], e[0]))


# --- behaviour --------------------------------------------------------------------------------


def draw_traits(
    rng: random.Random, pop: Population, plan: Plan, today: date
) -> dict[str, bh.Traits]:
    """Traits for every person with a usable card or account, keyed by person id."""
    traits = {}
    for person_id in sorted(plan.cards_of.keys() | plan.accounts_of.keys()):
        cards = plan.cards_of.get(person_id, [])
        accounts = plan.accounts_of.get(person_id, [])
        starts = {"store": cards[0].created} if cards else {}
        if accounts:
            starts["web"] = accounts[0].created.date()
        postal_code = pop.by_id[person_id].address.postal_code
        store = cards[0].store if cards else bh.home_store(rng, postal_code)
        traits[person_id] = bh.draw_traits(rng, starts=starts, today=today, store=store)
    return traits


# --- rendering: customer sources --------------------------------------------------------------


def render_loyalty(
    rng: random.Random, pop: Population, plan: Plan, spend: dict[str, tuple[int, int]], today: date
) -> Table:
    r = dirt.Renderer(rng, "loyalty", today)
    rows: list[dirt.Row] = []
    for card in plan.cards:
        person = pop.by_id[card.person_id]
        total, year = spend.get(card.number, (0, 0))
        values = dirt.loyalty_values(
            r,
            person,
            number=card.number,
            created=card.created,
            store=card.store,
            spend_cents=total,
            year_cents=year,
            invalid_date=card.reject == "INVALID_DATE",
        )
        row = dirt.Row(card.number, card.person_id, values, card.reject)
        if card.reject == "COLUMN_COUNT":
            row.key, row.raw_fields = "", _broken_fields(rng, values, "adresse_2", "Bât B")
        rows.append(row)
    columns = list(rows[0].values)
    header = dirt.Row("", "", {}, "REPEATED_HEADER", raw_fields=columns)
    rows.insert(len(rows) // 2, header)
    return Table("loyalty", columns, rows)


def _broken_fields(
    rng: random.Random, values: dict[str, Any], column: str, extra: str
) -> list[str]:
    """The row's fields with one too many (``extra`` after ``column``) or one too few."""
    fields = [str(v) for v in values.values()]
    if rng.random() < 0.5:
        index = list(values).index(column)
        return [*fields[: index + 1], extra, *fields[index + 1 :]]
    return fields[:-1]


def render_ecommerce(rng: random.Random, pop: Population, plan: Plan, today: date) -> Table:
    r = dirt.Renderer(rng, "ecommerce", today)
    rows = []
    end = datetime.combine(today, time())
    for account in plan.accounts:
        person = pop.by_id[account.person_id]
        login = account.created + timedelta(
            seconds=rng.randrange(int((end - account.created).total_seconds()))
        )
        values = dirt.ecommerce_values(
            r,
            person,
            account_id=account.account_id,
            email=account.email,
            created=account.created.replace(tzinfo=PARIS),
            last_login=login.replace(tzinfo=PARIS),
            invalid_date=account.reject == "INVALID_DATE",
        )
        rows.append(dirt.Row(str(account.account_id), person.person_id, values, account.reject))
    return Table("ecommerce", list(rows[0].values), rows)


def render_contest(rng: random.Random, pop: Population, plan: Plan, today: date) -> Table:
    r = dirt.Renderer(rng, "contest", today)
    rows = []
    entry_id = 20_000 + rng.randrange(5_000)
    for person_id, at, game in plan.entries:
        entry_id += 1
        values = dirt.contest_values(r, pop.by_id[person_id], entry_id=entry_id, at=at, game=game)
        rows.append(dirt.Row(str(entry_id), person_id, values))
    return Table("contest", list(rows[0].values), rows)


def render_b2b(rng: random.Random, plan: Plan, today: date) -> Table:
    r = dirt.Renderer(rng, "b2b", today)
    contacts = sorted(
        plan.contacts, key=lambda p: (p.company.siret if p.company else "", p.person_id)
    )
    rows = []
    for number, person in enumerate(contacts, start=1):
        updated = _random_day(rng, today - timedelta(days=730), today)
        values = dirt.b2b_values(r, person, contact_id=f"CT{number:06d}", updated=updated)
        rows.append(dirt.Row(values["contact_id"], person.person_id, values))
    broken = rows[len(rows) // 3]
    broken.key, broken.reject = "", "COLUMN_COUNT"
    broken.raw_fields = [str(v) for v in broken.values.values()][:-1]
    return Table("b2b", list(rows[0].values), rows)


def render_callcenter(
    rng: random.Random, pop: Population, plan: Plan, sim: bh.Simulation, today: date
) -> Table:
    r = dirt.Renderer(rng, "callcenter", today)
    rows = []
    number = 300_000 + rng.randrange(10_000)
    for call in sorted(sim.calls, key=lambda c: (c.at, c.person_id)):
        person = pop.by_id[call.person_id]
        number += rng.randint(1, 4)
        known = call.direction == "outbound" or rng.random() < 0.55
        own = plan.accounts_of.get(call.person_id)
        cards = plan.cards_of.get(call.person_id)
        first, last = dirt.caller_names(r, person)
        phone = (person.mobile or person.landline) if rng.random() < 0.9 else ""  # 10 % hidden
        values = {
            "ticket_no": f"TK{number:07d}",
            "date_appel": f"{call.at:%d/%m/%Y %H:%M}",
            "canal": "TEL",
            "sens": "ENTRANT" if call.direction == "inbound" else "SORTANT",
            "nom_client": last,
            "prenom_client": first,
            "tel_appelant": r.phone(phone, person.address.postal_code, CALLER_ID_STYLES),
            "id_compte_web": str(own[-1].account_id) if own and known else "",
            "num_carte": cards[-1].number if cards and rng.random() < 0.45 else "",
            "motif": call.reason,
            "resultat": call.outcome,
            "commentaire": rng.choice(COMMENTS),
            "code_campagne": call.campaign_code,
            "agent": f"AG{rng.randint(1, 24):02d}",
            "duree_sec": str(call.seconds),
        }
        rows.append(dirt.Row(values["ticket_no"], call.person_id, values))
    for row in rng.sample(rows, max(1, len(pop.persons) // 2500)):
        row.values["commentaire"] = "Client rappelé, pas de réponse, laisser un message"
        row.key, row.reject = "", "COLUMN_COUNT"
        row.raw_fields = [str(v) for v in row.values.values()]
    return Table("callcenter", list(rows[0].values), rows)


# --- rendering: transactions ------------------------------------------------------------------


def _pick(rng: random.Random, records: list[R], on: date, created: Callable[[R], date]) -> R | None:
    """The record in use on ``on``: mostly the newest one already created."""
    valid = [x for x in records if created(x) <= on]
    if not valid:
        return None
    return valid[-1] if len(valid) == 1 or rng.random() < 0.85 else rng.choice(valid[:-1])


def _money(cents: int) -> str:
    sign, cents = ("-" if cents < 0 else ""), abs(cents)
    return f"{sign}{cents // 100},{cents % 100:02d}"


def render_tickets(
    rng: random.Random,
    plan: Plan,
    sim: bh.Simulation,
    products: dict[str, bh.Product],
    *,
    broken: int,
    today: date,
) -> tuple[Table, dict[str, tuple[int, int]]]:
    """The till tickets, one row per line, and each card's spend in cents (all time, last
    year) for the loyalty file."""
    store_purchases = [p for p in sim.purchases if p.channel == "store"]
    store_purchases.sort(key=lambda p: (p.at, p.store, p.person_id))
    sequence: dict[tuple[str, date], int] = {}
    spend: dict[str, tuple[int, int]] = {}
    year_ago = today - timedelta(days=365)
    rows = []
    for purchase in store_purchases:
        day = purchase.at.date()
        seq = sequence[(purchase.store, day)] = sequence.get((purchase.store, day), 0) + 1
        ticket_id = f"{purchase.store}-{day:%Y%m%d}-{seq:04d}"
        card = _pick(rng, plan.cards_of.get(purchase.person_id, []), day, lambda c: c.created)
        if card is not None:
            cents = sum(line.amount_cents for line in purchase.lines)
            total, recent = spend.get(card.number, (0, 0))
            spend[card.number] = (total + cents, recent + (cents if day >= year_ago else 0))
        for line_no, line in enumerate(purchase.lines, start=1):
            values = {
                "ticket_id": ticket_id,
                "ligne": str(line_no),
                "date_heure": f"{purchase.at:%d/%m/%Y %H:%M}",
                "magasin": purchase.store,
                "num_carte": card.number if card else "",
                "sku": line.sku,
                "libelle": products[line.sku].label.upper(),
                "rayon": products[line.sku].category,
                "qte": str(line.quantity),
                "prix_unitaire": _money(line.unit_cents),
                "remise": _money(line.discount_cents),
                "montant": _money(line.amount_cents),
            }
            key = f"{ticket_id}|{line_no}"
            rows.append(dirt.Row(key, purchase.person_id, values, "", None, purchase.campaign_code))
    for row in rng.sample(rows, broken):  # the till dropped the discount column
        row.key, row.reject = "", "COLUMN_COUNT"
        row.raw_fields = [str(v) for k, v in row.values.items() if k != "remise"]
    return Table("tickets", list(rows[0].values), rows), spend


def _web_account(rng: random.Random, plan: Plan, person_id: str, on: date) -> Account:
    account = _pick(rng, plan.accounts_of[person_id], on, lambda a: a.created.date())
    assert account is not None, "web activity starts with the person's first account"
    return account


def _order_line(line: bh.Line, product: bh.Product) -> dict[str, Any]:
    return {
        "sku": line.sku,
        "name": product.label,
        "qty": line.quantity,
        "unit_price": line.unit_cents / 100,
        "discount": line.discount_cents / 100,
        "amount": line.amount_cents / 100,
    }


def render_orders(
    rng: random.Random,
    pop: Population,
    plan: Plan,
    sim: bh.Simulation,
    products: dict[str, bh.Product],
) -> Table:
    web = [p for p in sim.purchases if p.channel == "web"]
    web.sort(key=lambda p: (p.at, p.person_id))
    rows = []
    for number, purchase in enumerate(web, start=1):
        account = _web_account(rng, plan, purchase.person_id, purchase.at.date())
        order_id = f"CMD{number + 4_000_000:08d}"
        values = {
            "order_id": order_id,
            "account_id": account.account_id,
            "created_at": purchase.at.replace(tzinfo=PARIS).isoformat(),
            "status": rng.choices(ORDER_STATUSES, ORDER_STATUS_WEIGHTS)[0],
            "channel": "web",
            "currency": "EUR",
            "payment": rng.choices(PAYMENTS, PAYMENT_WEIGHTS)[0],
            "shipping_zip": pop.by_id[purchase.person_id].address.postal_code,
            "total": sum(line.amount_cents for line in purchase.lines) / 100,
            "lines": [_order_line(line, products[line.sku]) for line in purchase.lines],
        }
        row = dirt.Row(order_id, purchase.person_id, values, campaign_code=purchase.campaign_code)
        rows.append(row)
    return Table("orders", list(rows[0].values), rows)


def render_web_events(
    rng: random.Random, plan: Plan, sim: bh.Simulation, traits: dict[str, bh.Traits], today: date
) -> Table:
    sessions: dict[tuple[str, date, int], str] = {}
    rows = []
    events = bh.web_sessions(rng, sim, traits, today=today)
    for number, (person_id, at, event, sku) in enumerate(events, start=1):
        account = _web_account(rng, plan, person_id, at.date())
        session = sessions.setdefault((person_id, at.date(), at.hour), f"S{len(sessions) + 1:08d}")
        event_id = f"ev{number:09d}"
        values = {
            "event_id": event_id,
            "timestamp": at.replace(tzinfo=PARIS).isoformat(),
            "event": event,
            "user_id": account.account_id,
            "session_id": session,
            "page": {"page_view": "/", "product_view": f"/p/{sku}", "add_to_cart": "/panier"}[
                event
            ],
            "sku": sku or None,
        }
        rows.append(dirt.Row(event_id, person_id, values))
    return Table("web_events", list(rows[0].values), rows)


def render_products(products: list[bh.Product]) -> Table:
    rows = [
        dirt.Row(
            p.sku,
            "",
            {
                "sku": p.sku,
                "label": p.label,
                "category": p.category,
                "brand": p.brand,
                "price": f"{p.price_cents / 100:.2f}",
            },
        )
        for p in products
    ]
    return Table("products", list(rows[0].values), rows)


# --- writing ----------------------------------------------------------------------------------


def _cp1252_safe(text: str) -> str:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        decomposed = unicodedata.normalize("NFKD", text)
        return "".join(c for c in decomposed if c.encode("cp1252", "ignore"))
    return text


def _check_planted(table: Table, row: dirt.Row, line: str, delimiter: str) -> None:
    """A malformed line must be malformed exactly as planted: a repeated header has the
    header's width, any other planted line another width; no quote changes the count."""
    same_width = len(line.split(delimiter)) == len(table.columns)
    if '"' in line or same_width != (row.reject == "REPEATED_HEADER"):
        raise ValueError(f"{table.source}: a planted {row.reject} line is not what it claims")


def write_csv(
    path: Path, table: Table, *, encoding: str, delimiter: str, newline: str = "\n"
) -> list[int]:
    """Write the table; return the line number of each row (the header is line 1)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    writer.writerow(table.columns)
    numbers = []
    for line_no, row in enumerate(table.rows, start=2):
        if row.raw_fields is not None:
            line = delimiter.join(row.raw_fields)
            _check_planted(table, row, line, delimiter)
            buffer.write(line + newline)
        else:
            writer.writerow(["" if row.values[c] is None else row.values[c] for c in table.columns])
        numbers.append(line_no)
    text = buffer.getvalue()
    if encoding == "cp1252":
        text = _cp1252_safe(text)
    path.write_bytes(text.encode(encoding))
    return numbers


def write_jsonl(path: Path, table: Table) -> list[int]:
    lines = [json.dumps(row.values, ensure_ascii=False) for row in table.rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list(range(1, len(lines) + 1))


def write_orders_json(path: Path, table: Table) -> list[int]:
    records = ",\n".join(json.dumps(row.values, ensure_ascii=False) for row in table.rows)
    path.write_text('{"orders": [\n' + records + "\n]}\n", encoding="utf-8")
    return list(range(1, len(table.rows) + 1))


def write_xlsx(path: Path, table: Table, *, sheet: str, stamp: datetime) -> list[int]:
    """Write an Excel workbook, made reproducible: fixed document dates and zip timestamps."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    workbook.properties.creator = "Agence Jeux & Co"
    workbook.properties.created = stamp
    worksheet = workbook.create_sheet(sheet)
    worksheet.append(table.columns)
    for row in table.rows:
        worksheet.append([row.values[c] for c in table.columns])
    buffer = io.BytesIO()
    workbook.save(buffer)
    _freeze_zip(buffer.getvalue(), path, stamp)
    return list(range(2, len(table.rows) + 2))


def _freeze_zip(data: bytes, path: Path, stamp: datetime) -> None:
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = re.sub(
                    r"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)",
                    rf"\g<1>{iso}\g<2>",
                    content.decode("utf-8"),
                )
                content = text.encode("utf-8")
            frozen = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            frozen.compress_type = zipfile.ZIP_DEFLATED
            frozen.external_attr = 0o600 << 16
            target.writestr(frozen, content)


def write_truth(path: Path, pop: Population, written: list[tuple[Table, list[int]]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRUTH_COLUMNS)
    for table, numbers in written:
        for row, line_no in zip(table.rows, numbers, strict=True):
            person = pop.by_id.get(row.person_id)
            writer.writerow(
                (
                    table.source,
                    row.key,
                    line_no,
                    row.person_id,
                    person.household_id if person else "",
                    int(person.is_twin) if person else "",
                    person.homonym_group if person else "",
                    "reject" if row.reject else "accept",
                    row.reject,
                    row.campaign_code,
                )
            )
    path.write_text(buffer.getvalue(), encoding="utf-8")


def write_persons(path: Path, pop: Population, plan: Plan, traits: dict[str, bh.Traits]) -> None:
    holders = {c.person_id for c in plan.cards}
    web = {a.person_id for a in plan.accounts}
    entrants = {e[0] for e in plan.entries}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PERSONS_COLUMNS)
    for p in pop.persons:
        t = traits.get(p.person_id)
        trait_cells: tuple[object, ...] = ("",) * 8
        if t is not None:
            trait_cells = (
                t.start.isoformat(),
                t.purchase_rate,
                t.avg_basket,
                t.churn_date.isoformat() if t.churn_date else "",
                t.preferred_channel,
                t.web_share,
                t.responsiveness,
                t.store,
            )
        writer.writerow(
            (
                p.person_id,
                p.household_id,
                p.gender,
                p.birth_date.year,
                int(p.is_twin),
                p.homonym_group,
                int(p.company is not None),
                int(p.person_id in holders),
                int(p.person_id in web),
                int(p.person_id in entrants),
                *trait_cells,
            )
        )
    path.write_text(buffer.getvalue(), encoding="utf-8")


# --- the whole dataset ------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceFile:
    """How one source is written."""

    name: str
    entity: str
    description: str
    encoding: str = "utf-8"  # CSV only (JSON is UTF-8, the workbook has none)
    delimiter: str = ","
    newline: str = "\n"


SOURCE_FILES = {  # in import order
    "products": SourceFile(
        "catalogue_produits.csv", "product", "Product catalogue (PIM export, CSV UTF-8)"
    ),
    "loyalty": SourceFile(
        "fidelite_cartes.csv", "customer",
        "SOLEIL shops' loyalty cards (CSV cp1252, ';', legacy till system)", "cp1252", ";", "\r\n",
    ),
    "ecommerce": SourceFile(
        "eshop_comptes.jsonl", "customer", "SOLEIL e-shop accounts (JSON Lines)"
    ),
    "contest": SourceFile(
        "jeu_concours.xlsx", "customer", "Contest entries from an agency (Excel), with prospects"
    ),
    "b2b": SourceFile(
        "b2b_contacts.csv", "customer",
        "TOURNESOL PRO B2B contacts with their companies (CSV UTF-8, '|')", delimiter="|",
    ),
    "callcenter": SourceFile(
        "centre_appels.csv", "interaction", "Call-center contacts (CSV UTF-8 with BOM, ',')",
        "utf-8-sig",
    ),
    "tickets": SourceFile(
        "tickets_caisse.csv", "transaction",
        "Shop till tickets, one row per line (CSV cp1252, ';')", "cp1252", ";", "\r\n",
    ),
    "orders": SourceFile(
        "eshop_commandes.json", "transaction", "E-shop orders with nested lines (JSON)"
    ),
    "web_events": SourceFile(
        "web_events.jsonl", "interaction", "E-shop web events of the last six months (JSON Lines)"
    ),
}  # fmt: skip
CONTEST_SHEET = "Participations"


def write_table(path: Path, table: Table, spec: SourceFile, stamp: datetime) -> list[int]:
    """Write one source file in its format; return each row's line number."""
    if path.suffix == ".csv":
        return write_csv(
            path, table, encoding=spec.encoding, delimiter=spec.delimiter, newline=spec.newline
        )
    if path.suffix == ".jsonl":
        return write_jsonl(path, table)
    if path.suffix == ".json":
        return write_orders_json(path, table)
    return write_xlsx(path, table, sheet=CONTEST_SHEET, stamp=stamp)


def generate(
    out_dir: Path, *, seed: int = 42, persons: int = 5000, today: date = date(2026, 11, 1)
) -> DemoManifest:
    """Write the demo dataset into ``out_dir`` and return its manifest (files in import order).

    >>> manifest = generate(Path("/tmp/demo"), persons=300)  # doctest: +SKIP
    >>> [f.source for f in manifest.files][:3]  # doctest: +SKIP
    ['products', 'loyalty', 'ecommerce']
    """
    if persons < 50:
        raise ValueError("the demo needs at least 50 persons")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    pop = build_population(rng, fake, persons, today)
    plan = plan_records(rng, pop, today)
    catalogue = bh.build_catalogue(rng)
    products = {p.sku: p for p in catalogue}
    traits = draw_traits(rng, pop, plan, today)
    sim = bh.simulate_purchases(rng, traits, catalogue, today=today)
    bh.simulate_calls(rng, sim, traits, catalogue, today=today, persons=persons)

    tickets, spend = render_tickets(
        rng, plan, sim, products, broken=max(1, persons // 2500), today=today
    )
    tables = {
        "products": render_products(catalogue),
        "loyalty": render_loyalty(rng, pop, plan, spend, today),
        "ecommerce": render_ecommerce(rng, pop, plan, today),
        "contest": render_contest(rng, pop, plan, today),
        "b2b": render_b2b(rng, plan, today),
        "callcenter": render_callcenter(rng, pop, plan, sim, today),
        "tickets": tickets,
        "orders": render_orders(rng, pop, plan, sim, products),
        "web_events": render_web_events(rng, plan, sim, traits, today),
    }
    stamp = datetime.combine(today, time(6, 0))  # the exports' date, for the workbook
    mappings = out_dir / "mappings"
    mappings.mkdir(exist_ok=True)
    files, written = [], []
    for source, spec in SOURCE_FILES.items():
        table, path = tables[source], out_dir / spec.name
        written.append((table, write_table(path, table, spec, stamp)))
        mapping = mappings / f"{source}.yaml"
        shutil.copyfile(MAPPINGS_DIR / f"{source}.yaml", mapping)
        files.append(
            DemoFile(source, path, mapping, spec.description, len(table.rows), spec.entity)
        )
    truth_path, persons_path = out_dir / "truth.csv", out_dir / "persons.csv"
    write_truth(truth_path, pop, written)
    write_persons(persons_path, pop, plan, traits)
    return DemoManifest(files, truth_path, persons_path, seed, persons, today)
