"""The demo's measured campaign: a past postal campaign with a planted effect, then measured.

``relance-automne`` (brand SOLEIL, postal mail, 20 % control group, a 30-day window) goes to
the demo's most loyal customers (:data:`SEGMENT_DEFINITION`), 45 days before today:

1. the global holdout (5 %) is drawn first (``reporting.holdouts``; on a second run, only the
   customers it does not know yet), so the plan writes its held-out customers as control rows;
2. the campaign is created with the campaigns service and planned by the real planner with
   its clock 45 days back, then dispatched by the real dispatcher with the same clock: the
   letters are printed into the demo directory (``campaign-output/postal/``);
3. the purchases of the window are drawn by the demo's behavioural model
   (``behaviour.campaign_response``) from each customer's arm, with a planted effect of
   +4 points on the chance to buy, written as till tickets and e-shop orders in the demo's own
   formats and imported through the normal import pipeline (real transactions, with lineage);
4. the truth is written to ``truth/relance-automne.json`` (and per customer, ``.csv``) next to
   the demo's other ground truth, and the campaign is measured (``reporting.measure``): the
   incremental estimate with its interval against the truth, and the naive attributed figure.

The model knows each customer by their true person's traits (``persons.csv``, through the
ground truth ``truth.csv`` of their records). The base's own history already holds purchases
in part of the window: a customer who bought there has nothing left to gain (both chances 1).
:func:`prepare_audience`, :func:`create_campaign`, :func:`load_buyers` and :func:`simulate`
are shared with ``bench/uplift_coverage.py``.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from tournesol.campaigns.models import Campaign, CampaignTarget
from tournesol.db import Dialect, chunked, unit_of_work, utcnow
from tournesol.demo import behaviour as bh

if TYPE_CHECKING:
    from tournesol.demo.generator import DemoManifest
    from tournesol.reporting.measure import Attributed, Incremental

CODE: Final = "relance-automne"
SEGMENT: Final = "fideles_courrier"
SEGMENT_DEFINITION: Final[Mapping[str, Any]] = {
    "all": [
        {"behaviour": {"of": "purchases", "measure": "count", "op": "gte", "value": 15}},
        {"reachable": "postal"},
    ]
}
EFFECT: Final = 0.04  # the planted absolute effect on the chance to buy: +4 points
DAYS_AGO: Final = 45
CONTROL_SHARE: Final = 0.2
HOLDOUT_SHARE: Final = 0.05
WINDOW_DAYS: Final = 30
PARIS: Final = ZoneInfo("Europe/Paris")
LETTER: Final = """{{ civility | default("Madame, Monsieur") }},

L'automne est là : en remerciement de votre fidélité, un bon de 10 € vous attend dans votre
magasin Soleil et sur soleil.example jusqu'à la fin du mois, sur présentation de ce courrier.

À très bientôt,
L'équipe Soleil
"""
TRUTH_COLUMNS: Final = (
    "customer_id", "person_id", "arm", "window_start", "bought_already", "p_untreated",
    "p_treated", "basket", "bought", "caused",
)  # fmt: skip
CUSTOMER_SOURCES: Final = ("loyalty", "ecommerce", "contest", "b2b")


def past_instant(now: datetime, days: int = DAYS_AGO) -> datetime:
    """09:00 in Paris, ``days`` days before ``now`` (an aware UTC date-time)."""
    day = (now.astimezone(PARIS) - timedelta(days=days)).date()
    return datetime.combine(day, time(9), PARIS).astimezone(now.tzinfo)


# --- the campaign ----------------------------------------------------------------------------


def prepare_audience(session: Session, *, at: datetime, seed: int) -> None:
    """The global holdout (drawn at ``at`` when there is none, its salt made from the demo's
    ``seed`` so that a demo is reproducible; else the customers it does not know yet are
    stored) and the campaign's saved segment (created once). Never commits."""
    from tournesol.reporting import holdouts
    from tournesol.segments import service as segments

    if holdouts.active(session) is None:
        salt = f"demo-holdout-{seed}"
        holdouts.regenerate(session, now=at, actor="demo", share=HOLDOUT_SHARE, salt=salt)
    holdouts.assign(session, now=at)
    if segments.get_by_code(session, code=SEGMENT) is None:
        segment = segments.create(
            session,
            code=SEGMENT,
            name="Fidèles joignables par courrier",
            description="Fifteen purchases or more, with a complete postal address.",
            definition=dict(SEGMENT_DEFINITION),
        )
        segments.refresh(session, segment)


def create_campaign(session: Session, *, at: datetime, code: str = CODE) -> Campaign:
    """A new draft of the campaign, ``code`` (its control group's salt comes from the code),
    created the day before ``at``, with its letter. Never commits."""
    from tournesol.campaigns import service

    campaign = service.create(
        session,
        code=code,
        name="Relance d'automne",
        segment=SEGMENT,
        channels=["postal"],
        brand="SOLEIL",
        objective="Faire revenir les clients fidèles à l'automne (un bon de 10 €).",
        expected_value=Decimal("4.00"),
        fixed_cost=Decimal("150"),
        unit_costs={"postal": 0.85},
        control_share=CONTROL_SHARE,
        attribution_days=WINDOW_DAYS,
        created_by="demo",
    )
    campaign.created_at = campaign.updated_at = at - timedelta(days=1)
    service.set_message(
        session, campaign=campaign, channel="postal", language="fr", body_text=LETTER
    )
    return campaign


@dataclass(frozen=True, slots=True)
class Assigned:
    """A customer of the campaign's arms (as ``reporting.measure`` reads them) and their
    attribution window: purchases after ``start``, up to ``days`` days later, count."""

    customer_id: int
    arm: str  # treatment, control, holdout
    start: datetime
    days: int


def assigned(session: Session, campaign: Campaign) -> list[Assigned]:
    """The campaign's assigned customers, by id: treatment (targets, and those marketing
    pressure then refused), control, global holdout; the window starts at the (would-have-
    been) send time plus the postal delay."""
    from tournesol.reporting.holdouts import REASON as HOLDOUT
    from tournesol.reporting.measure import PRESSURE_REASONS, windows_of

    windows = windows_of(campaign)
    ct = CampaignTarget
    found = []
    for customer_id, group, reason, channel, send_at in session.execute(
        select(ct.customer_id, ct.group, ct.reason, ct.channel, ct.send_at)
        .where(ct.campaign_id == campaign.id, ct.send_at.is_not(None))
        .order_by(ct.customer_id)
    ):
        if group == "target" or (group == "excluded" and reason in PRESSURE_REASONS):
            arm = "treatment"
        elif group == "control":
            arm = "holdout" if reason == HOLDOUT else "control"
        else:
            continue
        assert send_at is not None  # selected so
        start = send_at + timedelta(days=windows.delay(channel))
        found.append(Assigned(customer_id, arm, start, windows.days(channel)))
    return found


def bought_already(
    session: Session, campaign: Campaign, customers: Sequence[Assigned], *, now: datetime
) -> set[int]:
    """The customers whose history already holds a purchase within their window (a
    purchase as ``reporting.measure`` counts one: any transaction but a return, of the
    campaign's brand or of none, made by ``now``)."""
    from tournesol.interactions.models import Transaction

    if not customers:
        return set()
    by_id = {a.customer_id: a for a in customers}
    lo = min(a.start for a in customers)
    hi = min(now, max(a.start + timedelta(days=a.days) for a in customers))
    t = Transaction
    conditions = [t.kind != "return", t.occurred_at > lo, t.occurred_at <= hi]
    if campaign.brand_id is not None:
        conditions.append(or_(t.brand_id.is_(None), t.brand_id == campaign.brand_id))
    found: set[int] = set()
    for part in chunked(sorted(by_id), Dialect.of(session).max_params - 10):
        for customer_id, at in session.execute(
            select(t.customer_id, t.occurred_at).where(t.customer_id.in_(part), *conditions)
        ):
            a = by_id[int(customer_id or 0)]
            if at is not None and a.start < at <= min(now, a.start + timedelta(days=a.days)):
                found.add(a.customer_id)
    return found


# --- who the model knows ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Buyer:
    """What the behavioural model knows of a customer: their true person and traits, and the
    references their purchases are filed under (the newest loyalty card, e-shop account)."""

    customer_id: int
    person_id: str
    traits: bh.Traits | None
    card: str | None
    account: str | None
    postal_code: str | None


def read_persons(path: Path) -> dict[str, dict[str, str]]:
    """The generator's ``persons.csv``, by person id."""
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["person_id"]: row for row in csv.DictReader(fh)}


def read_record_persons(path: Path) -> dict[tuple[str, str], str]:
    """The true person of each customer record, ``(source, source_key) -> person_id``, from
    the generator's ``truth.csv``."""
    found = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["source"] in CUSTOMER_SOURCES and row["person_id"] and row["source_key"]:
                found[(row["source"], row["source_key"])] = row["person_id"]
    return found


def _traits(row: Mapping[str, str], *, card: bool, account: bool) -> bh.Traits | None:
    if not row.get("purchase_rate"):
        return None
    start = date.fromisoformat(row["start_date"])
    starts = {c: start for c, has in (("store", card), ("web", account)) if has}
    return bh.Traits(
        purchase_rate=float(row["purchase_rate"]),
        avg_basket=float(row["avg_basket"]),
        start=start,
        starts=starts,
        churn_date=date.fromisoformat(row["churn_date"]) if row["churn_date"] else None,
        preferred_channel=row["preferred_channel"],
        web_share=float(row["web_share"]),
        responsiveness=float(row["responsiveness"]),
        store=row["home_store"],
        favourites=(1.0,) * len(bh.CONSUMER_CATEGORIES),  # not in persons.csv: no favourite
    )


def load_buyers(
    session: Session, ids: Sequence[int], *, truth_path: Path, persons_path: Path
) -> dict[int, Buyer]:
    """The model's view of these customers: the person most of their records belong to (by
    the ground truth), that person's traits (but favourite categories), and their references
    (a store purchase needs a card, an e-shop order an account)."""
    from tournesol.customers.models import Customer
    from tournesol.ingest.models import Source, SourceRecord

    record_persons = read_record_persons(truth_path)
    persons = read_persons(persons_path)
    seen: dict[int, Counter[str]] = {}
    cards: dict[int, str] = {}
    accounts: dict[int, str] = {}
    postal: dict[int, str | None] = {}
    sr = SourceRecord
    for part in chunked(sorted(ids), Dialect.of(session).max_params - 10):
        rows = session.execute(
            select(sr.customer_id, Source.name, sr.source_key)
            .join(Source, Source.id == sr.source_id)
            .where(sr.entity == "customer", sr.customer_id.in_(part))
        )
        for owner, source, key in rows:
            customer_id = int(owner or 0)
            person = record_persons.get((source, key))
            if person is not None:
                seen.setdefault(customer_id, Counter())[person] += 1
            if source == "loyalty" and key > cards.get(customer_id, ""):
                cards[customer_id] = key  # card numbers grow with their creation
            newest = accounts.get(customer_id, "0")
            if source == "ecommerce" and key.isdigit() and int(key) > int(newest):
                accounts[customer_id] = key
        postal.update(
            session.execute(
                select(Customer.id, Customer.postal_code).where(Customer.id.in_(part))
            ).all()
        )
    found = {}
    for customer_id in ids:
        counts = seen.get(customer_id)
        person = min(counts, key=lambda p: (-counts[p], p)) if counts else ""
        card, account = cards.get(customer_id), accounts.get(customer_id)
        row = persons.get(person)
        traits = _traits(row, card=card is not None, account=account is not None) if row else None
        found[customer_id] = Buyer(
            customer_id, person, traits, card, account, postal.get(customer_id)
        )
    return found


def load_shopper(session: Session) -> bh.Shopper:
    """The behavioural model's basket drawer over the catalogue the base holds."""
    from tournesol.customers.models import Brand
    from tournesol.interactions.models import Product

    catalogue = [
        bh.Product(sku, name or sku, category or "", brand or "", round((price or 0) * 100))
        for sku, name, category, brand, price in session.execute(
            select(Product.sku, Product.name, Product.category, Brand.code, Product.price)
            .outerjoin(Brand, Brand.id == Product.brand_id)
            .order_by(Product.sku)
        )
    ]
    if not any(p.category in bh.CONSUMER_CATEGORIES for p in catalogue):
        raise ValueError("no product of the demo's catalogue: import catalogue_produits.csv first")
    return bh.Shopper(catalogue)


# --- the window's purchases ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Simulated:
    """One assigned customer's response, with what the model knew of them."""

    assigned: Assigned
    buyer: Buyer | None
    bought_already: bool
    response: bh.CampaignResponse


def simulate(
    session: Session,
    campaign: Campaign,
    *,
    buyers: Mapping[int, Buyer],
    shopper: bh.Shopper,
    seed: int,
    now: datetime,
    effect: float = EFFECT,
) -> list[Simulated]:
    """Each assigned customer's purchases in their window (``behaviour.campaign_response``),
    treated when in the treatment arm. Each customer draws from their own generator (seeded
    by ``seed``, the campaign's code and their id), so their basket is the one of either arm."""
    customers = assigned(session, campaign)
    already = bought_already(session, campaign, customers, now=now)
    found = []
    for a in customers:
        buyer = buyers.get(a.customer_id)
        rng = random.Random(f"{seed}:{campaign.code}:{a.customer_id}")
        response = bh.campaign_response(
            rng,
            buyer.traits if buyer is not None else None,
            treated=a.arm == "treatment",
            window_days=a.days,
            effect=effect,
            first_day=a.start.astimezone(PARIS).date(),
            shopper=shopper,
            person_id=buyer.person_id if buyer is not None else "",
            bought_already=a.customer_id in already,
            campaign_code=campaign.code,
        )
        found.append(Simulated(a, buyer, a.customer_id in already, response))
    return found


def truth_of(simulated: Sequence[Simulated]) -> bh.TrueEffect:
    """The true effects over the campaign's treatment and control arms (the population the
    intention-to-treat comparison is about; the global holdout is a separate arm)."""
    return bh.true_effect(
        s.response for s in simulated if s.assigned.arm in ("treatment", "control")
    )


def local_time(purchase: bh.Purchase) -> datetime:
    """A purchase's time, aware (the model draws wall-clock times in Paris)."""
    return purchase.at.replace(tzinfo=PARIS)


def write_purchases(
    out_dir: Path, simulated: Sequence[Simulated], *, products: Mapping[str, bh.Product]
) -> list[tuple[str, Path]]:
    """The window's purchases as the demo's sources write them: till tickets (a loyalty card
    names the customer) and e-shop orders (an account does), with keys of their own. Returns
    ``(source, path)`` of each file written (none without purchases)."""
    from tournesol.demo import dirt
    from tournesol.demo import generator as gen

    tickets: list[dirt.Row] = []
    orders: list[dirt.Row] = []
    sequence: Counter[tuple[str, date]] = Counter()
    for s in simulated:
        purchase = s.response.purchase
        if purchase is None or s.buyer is None:
            continue
        day = purchase.at.date()
        if purchase.channel == "store":
            sequence[(purchase.store, day)] += 1
            ticket_id = f"{purchase.store}-{day:%Y%m%d}-R{sequence[(purchase.store, day)]:03d}"
            for line_no, line in enumerate(purchase.lines, start=1):
                values: dict[str, Any] = {
                    "ticket_id": ticket_id,
                    "ligne": str(line_no),
                    "date_heure": f"{purchase.at:%d/%m/%Y %H:%M}",
                    "magasin": purchase.store,
                    "num_carte": s.buyer.card or "",
                    "sku": line.sku,
                    "libelle": products[line.sku].label.upper(),
                    "rayon": products[line.sku].category,
                    "qte": str(line.quantity),
                    "prix_unitaire": gen._money(line.unit_cents),
                    "remise": gen._money(line.discount_cents),
                    "montant": gen._money(line.amount_cents),
                }
                key = f"{ticket_id}|{line_no}"
                tickets.append(
                    dirt.Row(key, purchase.person_id, values, campaign_code=purchase.campaign_code)
                )
        else:
            order_id = f"RA{len(orders) + 1:08d}"
            values = {
                "order_id": order_id,
                "account_id": int(s.buyer.account or 0),
                "created_at": local_time(purchase).isoformat(),
                "status": "delivered",
                "channel": "web",
                "currency": "EUR",
                "payment": "CB",
                "shipping_zip": s.buyer.postal_code or "",
                "total": sum(line.amount_cents for line in purchase.lines) / 100,
                "lines": [gen._order_line(line, products[line.sku]) for line in purchase.lines],
            }
            orders.append(
                dirt.Row(order_id, purchase.person_id, values, campaign_code=purchase.campaign_code)
            )
    written = []
    stamp = datetime.combine(date.today(), time(6))
    for source, name, rows in (
        ("tickets", "tickets_caisse_relance.csv", tickets),
        ("orders", "eshop_commandes_relance.json", orders),
    ):
        if not rows:
            continue
        path = out_dir / name
        spec = gen.SOURCE_FILES[source]
        gen.write_table(path, gen.Table(source, list(rows[0].values), rows), spec, stamp)
        written.append((source, path))
    return written


def write_truth(
    folder: Path, campaign: Campaign, simulated: Sequence[Simulated], *, effect: float
) -> tuple[Path, bh.TrueEffect]:
    """``<code>.json`` (the planted effect, the true effects and what they were drawn from)
    and ``<code>.csv`` (each assigned customer's chances, basket and purchase) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = truth_of(simulated)
    arms = Counter(s.assigned.arm for s in simulated)
    treated = arms["treatment"]
    summary = {
        "campaign": campaign.code,
        "planted_effect": effect,
        "window_days": WINDOW_DAYS,
        "customers": truth.customers,
        "arms": dict(sorted(arms.items())),
        "true_conversion_effect": round(truth.conversion, 6),
        "true_revenue_effect_per_customer": round(truth.revenue, 4),
        "true_incremental_buyers": round(truth.conversion * treated, 2),
        "true_incremental_revenue": round(truth.revenue * treated, 2),
        "untreated_conversion": round(truth.untreated_conversion, 6),
        "bought_already": sum(s.bought_already for s in simulated),
        "purchases": sum(s.response.bought for s in simulated),
        "caused_purchases": sum(
            bool(s.response.purchase and s.response.purchase.campaign_code) for s in simulated
        ),
        "definition": (
            "ITT over the treatment and control arms: conversion = mean(p_treated - "
            "p_untreated); revenue per customer = mean((p_treated - p_untreated) x basket)"
        ),
    }
    path = folder / f"{campaign.code}.json"
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (folder / f"{campaign.code}.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for s in simulated:
            r = s.response
            writer.writerow(
                (
                    s.assigned.customer_id,
                    s.buyer.person_id if s.buyer else "",
                    s.assigned.arm,
                    s.assigned.start.isoformat(),
                    int(s.bought_already),
                    round(r.chances.untreated, 6),
                    round(r.chances.treated, 6),
                    f"{r.basket_euros:.2f}",
                    int(r.bought),
                    int(bool(r.purchase and r.purchase.campaign_code)),
                )
            )
    return path, truth


# --- the demo step ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What the demo step did: the campaign, its truth and the measurements."""

    code: str
    letters: int
    purchases: int
    truth: bh.TrueEffect
    truth_path: Path
    incremental: Incremental
    attributed: Attributed


def measure(
    factory: sessionmaker[Session],
    console: Console,
    *,
    manifest: DemoManifest,
    effect: float = EFFECT,
    now: datetime | None = None,
) -> Measured | None:
    """Run the past campaign, import the window's purchases, write the truth, measure and
    show it (see the module's docstring). Returns None when the campaign exists already (a
    second demo run changes nothing)."""
    from tournesol.campaigns import service
    from tournesol.campaigns.dispatch import dispatch
    from tournesol.campaigns.results import attribute
    from tournesol.cli.common import settings
    from tournesol.ingest.importer import import_file
    from tournesol.ingest.schemas import load_mapping
    from tournesol.reporting import measure as reporting

    now = now or utcnow()
    at = past_instant(now)
    out_dir = manifest.truth_path.parent
    with unit_of_work(factory) as session:
        found = service.get_by_code(session, code=CODE)
        if found is not None:
            console.print(
                f"[green]✓[/] {CODE} measured already (truth in {out_dir / 'truth'}/)",
                highlight=False,
            )
            return None
    with console.status(f"{CODE}: a postal campaign {DAYS_AGO} days ago, planned and printed..."):
        with unit_of_work(factory) as session:
            prepare_audience(session, at=at, seed=manifest.seed)
            campaign = create_campaign(session, at=at, code=CODE)
            service.plan(session, campaigns=[campaign], now=at, policies=service.Policies())
            campaign_id = campaign.id
        conf = settings()
        conf = conf.model_copy(
            update={
                "campaign_output_dir": out_dir / "campaign-output",
                "postal_sender": conf.postal_sender or "Soleil SA|1 rue de la Paix|75002 PARIS",
            }
        )
        report = dispatch(
            factory, settings=conf, channels=["postal"], campaign_ids=[campaign_id], now=lambda: at
        )
    with console.status(f"{CODE}: the purchases of its window, drawn and imported..."):
        with unit_of_work(factory) as session:
            campaign = session.get_one(Campaign, campaign_id)
            ids = [a.customer_id for a in assigned(session, campaign)]
            buyers = load_buyers(
                session, ids, truth_path=manifest.truth_path, persons_path=manifest.persons_path
            )
            shopper = load_shopper(session)
            products = {p.sku: p for items in shopper.by_category.values() for p in items}
            simulated = simulate(
                session, campaign, buyers=buyers, shopper=shopper, seed=manifest.seed, now=now,
                effect=effect,
            )  # fmt: skip
        if not any(s.assigned.arm in ("treatment", "control") for s in simulated):
            console.print(f"[yellow]![/] {CODE}: nobody in its audience, nothing to measure")
            return None
        files = write_purchases(out_dir, simulated, products=products)
        for source, path in files:
            import_file(factory, path, load_mapping(manifest.file(source).mapping))
        truth_path, truth = write_truth(out_dir / "truth", campaign, simulated, effect=effect)
    with unit_of_work(factory) as session:
        # what `tournesol measure refresh` does each day: the purchases' last touch, then
        # the campaign's stored figures (the report pages read them)
        attribute(session, now=now)
        campaign = session.get_one(Campaign, campaign_id)
        reporting.refresh(session, campaign, now=now)
        incremental = reporting.incremental(session, campaign, now=now)
        attributed = reporting.attributed(session, campaign, now=now)
    measured = Measured(
        CODE,
        report.sent["postal"],
        sum(s.response.bought for s in simulated),
        truth,
        truth_path,
        incremental,
        attributed,
    )
    _show(console, measured, at=at, effect=effect)
    return measured


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _show(console: Console, m: Measured, *, at: datetime, effect: float) -> None:
    inc, att, truth = m.incremental, m.attributed, m.truth
    arms = inc.arms
    treated = arms["treatment"].assigned if "treatment" in arms else 0
    table = Table(
        title=f"A past campaign measured: {m.code}, letters of {at:%d/%m/%Y}, planted effect "
        f"{_points(effect)} points",
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("true", justify="right")
    table.add_column("measured (95% interval)", justify="right")
    sizes = " / ".join(
        f"{arms[a].assigned:,}" for a in ("treatment", "control", "holdout") if a in arms
    )
    table.add_row("letters / customers treatment, control, holdout", "", f"{m.letters:,} / {sizes}")
    table.add_row("purchases in the window (imported)", "", f"{m.purchases:,}")
    conv = inc.conversion
    table.add_row(
        "conversion effect (points)",
        _points(truth.conversion),
        "-"
        if conv is None
        else f"{_points(conv.estimate)} ({_points(conv.low)}, {_points(conv.high)})",
    )
    rev = inc.revenue
    table.add_row(
        "revenue per customer (EUR)",
        f"{truth.revenue:+.2f}",
        "-" if rev is None else f"{rev.estimate:+.2f} ({rev.low:+.2f}, {rev.high:+.2f})",
    )
    true_buyers = truth.conversion * treated
    times = f" = {att.purchasers / true_buyers:.1f}x the true" if true_buyers > 0 else ""
    table.add_row(
        "attributed buyers (naive)", f"{true_buyers:,.0f} incremental", f"{att.purchasers:,}{times}"
    )
    true_revenue = truth.revenue * treated
    table.add_row(
        "attributed revenue (naive, EUR)",
        f"{true_revenue:,.0f} incremental",
        f"{att.revenue:,.0f}",
    )
    console.print(table)
    missed = [
        name
        for name, found, true in (
            ("conversion", conv, truth.conversion),
            ("revenue", rev, truth.revenue),
        )
        if found is not None and not found.low <= true <= found.high
    ]
    chance = (
        f"Here the {' and '.join(missed)} interval missed the truth, as a 95% interval does "
        "once in 20 campaigns"
        if missed
        else "A 95% interval misses the truth once in 20 campaigns"
    )
    console.print(
        "Attributed: every buyer of the treatment group after the letter, most of whom would "
        f"have bought anyway. {chance}: bench/uplift_coverage.py plans this campaign 100 "
        f"times and counts. Truth: {m.truth_path}",
        highlight=False,
    )
