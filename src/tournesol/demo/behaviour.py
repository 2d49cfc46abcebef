"""How the demo's customers buy, browse and call: a small generative model with known traits.

Model
-----
Every person with a loyalty card or an e-shop account gets latent traits (written to
``persons.csv`` so that RFM, scores and attribution can be checked against them):

- ``purchase_rate``: purchases per year while active, Gamma(shape 0.7, scale 4.5), mean 3.2,
  very unequal on purpose (a few heavy buyers, many occasional ones);
- ``avg_basket``: EUR, log-normal around 38 EUR (web baskets are 30 % larger);
- ``start`` (the first card or account) and ``churn_date``: an exponential lifetime with a mean
  of seven years; after it the person buys nothing more (most old cards are dormant);
- ``preferred_channel``: ``store`` or ``web``; with both a card and an account 85 % of the
  purchases go through the preferred one; ``responsiveness`` (Beta(2, 5)) to outbound offers;
- three favourite categories (weights 5, 3, 2 against 0.5 for the others) and a home store.

Purchases are a Poisson process over the last three years up to ``today`` whose daily intensity
is ``purchase_rate / 365`` times a calendar weight: a month factor (December 1.7 with a ramp up
to Christmas, January and July around the sales), the winter and summer sales (four weeks from
the second Wednesday of January and from the last Wednesday of June, with discounts on most
lines), Black Friday, a weekly pattern (Saturday peak in shops, Sunday closed except in
December, a flatter week on the web) and a few closed bank holidays. The weights average 1 over
the window, so ``purchase_rate`` is the expected number of purchases per active year. Shop
purchases start with the first card, web ones with the first account. Anonymous walk-ins (no
card) add about 6 % of the tickets.

Calls: inbound calls from buyers (heavier buyers call more) about orders, returns and loyalty
points, and two outbound campaigns: a win-back of lapsed buyers (no purchase for 8 to 30
months), where 70 % of the reached and interested persons buy again within three weeks, even
after their churn date (purchases tagged with the campaign code: the causal truth for
attribution), and a satisfaction survey with no effect.

Web events (last six months): each web order is preceded by a visit with product views and
cart adds, and buyers also come browsing without buying.

Campaign response (the planted effect, :func:`campaign_response`): for a customer assigned to a
campaign whose attribution window is ``window_days`` long, the chance to buy within the window
without the campaign comes from their own purchase rate, ``p_untreated = 1 - exp(-rate x
window_days / 365)`` (0 once churned): many would have bought anyway. Being treated adds a
planted absolute effect, ``p_treated = min(1, p_untreated + effect)``. A customer who already
bought within the window (in the history) has both chances at 1: nothing to add. The purchase
is one basket drawn as usual, on a day of the window, in a store or on the e-shop (by the
web share); it is the same basket in both arms (drawn whatever the arm), so the true effects
of an audience (:func:`true_effect`) are exactly: on conversion, the mean over its customers of
``p_treated - p_untreated``; on revenue per customer, the mean of ``(p_treated - p_untreated)
x basket``, the difference of their expected revenues.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from tournesol.demo.people import area_prefix, shift_years

SOLEIL = "SOLEIL"
PRO = "TOURNESOL PRO"

# category: (brand, variants, ((label, low price, high price), ...))
CATALOGUE: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, int, int], ...]]] = {
    "Maison": (SOLEIL, ("gris", "écru"), (
        ("Coussin déhoussable", 12, 25), ("Plaid polaire", 15, 35), ("Bougie parfumée", 6, 18),
        ("Vase en verre", 10, 40), ("Cadre photo", 5, 20), ("Lampe de chevet", 20, 60),
        ("Rideau occultant", 18, 45), ("Tapis de salon", 40, 150))),
    "Cuisine": (SOLEIL, ("classique", "premium"), (
        ("Poêle antiadhésive 28 cm", 15, 45), ("Casserole inox 18 cm", 18, 50),
        ("Cafetière filtre", 25, 60), ("Bouilloire électrique", 20, 55),
        ("Robot pâtissier", 120, 350), ("Set de couteaux", 25, 90),
        ("Boîtes de conservation", 8, 25), ("Grille-pain", 20, 50))),
    "Textile femme": (SOLEIL, ("noir", "bleu marine"), (
        ("T-shirt col V", 8, 20), ("Pull en maille", 25, 60), ("Jean slim", 30, 70),
        ("Robe d'été", 25, 65), ("Veste imperméable", 45, 120), ("Écharpe", 10, 30))),
    "Textile homme": (SOLEIL, ("bleu", "gris chiné"), (
        ("Chemise Oxford", 25, 55), ("Polo piqué", 18, 40), ("Pantalon chino", 30, 60),
        ("Pull col rond", 25, 60), ("Blouson", 60, 140), ("Chaussettes lot de 3", 6, 15))),
    "Enfant": (SOLEIL, ("bleu", "rose"), (
        ("Body bébé lot de 2", 10, 20), ("Pyjama enfant", 12, 25), ("Sac à dos école", 15, 40),
        ("Baskets enfant", 20, 45), ("Doudou", 10, 25))),
    "Jouets": (SOLEIL, ("classique", "édition luxe"), (
        ("Jeu de société", 15, 45), ("Puzzle 1000 pièces", 10, 25), ("Peluche", 8, 30),
        ("Voiture radiocommandée", 30, 80), ("Coffret de construction", 20, 90),
        ("Poupée", 15, 40))),
    "Beauté": (SOLEIL, ("classique", "édition limitée"), (
        ("Crème hydratante", 8, 30), ("Eau de toilette", 25, 70), ("Shampooing", 3, 10),
        ("Coffret maquillage", 20, 50), ("Gel douche", 2, 6), ("Sèche-cheveux", 25, 70))),
    "High-tech": (SOLEIL, ("noir", "blanc"), (
        ("Écouteurs sans fil", 25, 120), ("Enceinte Bluetooth", 30, 150),
        ("Chargeur USB-C", 10, 30), ("Montre connectée", 60, 250), ("Clé USB 64 Go", 8, 20),
        ("Tablette 10 pouces", 150, 400))),
    "Jardin": (SOLEIL, ("standard", "grand modèle"), (
        ("Pot en terre cuite", 5, 25), ("Tuyau d'arrosage", 15, 40),
        ("Salon de jardin", 150, 600), ("Barbecue charbon", 50, 200), ("Sécateur", 10, 35),
        ("Graines potagères", 2, 5))),
    "Bricolage": (SOLEIL, ("standard", "pro"), (
        ("Perceuse visseuse", 50, 150), ("Boîte à outils", 20, 60), ("Mètre ruban", 5, 15),
        ("Ampoule LED lot de 3", 6, 15), ("Escabeau", 30, 80),
        ("Peinture acrylique 2,5 L", 20, 45))),
    "Épicerie fine": (SOLEIL, ("classique", "coffret cadeau"), (
        ("Coffret chocolats", 10, 35), ("Thé en vrac", 6, 15), ("Huile d'olive AOP", 8, 20),
        ("Foie gras", 15, 45), ("Confiture artisanale", 4, 8), ("Champagne brut", 25, 50))),
    "Fournitures pro": (PRO, ("standard", "lot entreprise"), (
        ("Ramette papier A4 x5", 20, 35), ("Cartouche d'encre", 15, 60),
        ("Fauteuil de bureau", 90, 300), ("Classeurs lot de 10", 12, 25),
        ("Destructeur de documents", 60, 180))),
}  # fmt: skip
CONSUMER_CATEGORIES = tuple(c for c, (brand, *_) in CATALOGUE.items() if brand == SOLEIL)

# store code, commune, department (three digits overseas)
STORES: tuple[tuple[str, str, str], ...] = (
    ("M001", "Paris", "75"), ("M002", "Boulogne-Billancourt", "92"), ("M003", "Créteil", "94"),
    ("M004", "Lyon", "69"), ("M005", "Marseille", "13"), ("M006", "Toulouse", "31"),
    ("M007", "Nice", "06"), ("M008", "Nantes", "44"), ("M009", "Bordeaux", "33"),
    ("M010", "Lille", "59"), ("M011", "Rennes", "35"), ("M012", "Strasbourg", "67"),
    ("M013", "Montpellier", "34"), ("M014", "Grenoble", "38"), ("M015", "Dijon", "21"),
    ("M016", "Rouen", "76"), ("M017", "Tours", "37"), ("M018", "Clermont-Ferrand", "63"),
    ("M019", "Ajaccio", "20"), ("M020", "Saint-Denis", "974"),
)  # fmt: skip

MONTH_FACTOR = (1.15, 0.75, 0.85, 0.9, 0.95, 0.95, 1.15, 0.8, 0.85, 0.9, 1.1, 1.7)
WEEKDAY_FACTOR = {
    "store": (0.7, 0.8, 1.0, 0.9, 1.2, 1.9, 0.2),
    "web": (1.1, 1.0, 1.0, 0.95, 0.9, 0.9, 1.15),
}
HOUR_WEIGHTS: dict[str, dict[int, float]] = {
    "store": {9: 1, 10: 2, 11: 3, 12: 3, 13: 2, 14: 2, 15: 3, 16: 3, 17: 4, 18: 3, 19: 2},
    "web": {h: w for h, w in enumerate((1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1, 1.5, 2, 2, 2.2,
                                        2.5, 2.5, 2.2, 2, 2, 2.3, 2.8, 3.2, 3.6, 3.8, 3, 1.8))},
}  # fmt: skip
CLOSED = ((1, 1), (5, 1), (12, 25))  # (month, day) shops are closed
INBOUND_REASONS = {
    "web": ("Suivi de commande", "Retour produit", "Remboursement", "Colis non reçu"),
    "store": ("Carte de fidélité - points", "Horaires magasin", "Réclamation magasin"),
    "any": ("Modification adresse", "Information produit", "Désinscription newsletter"),
}
INBOUND_OUTCOMES = ("Résolu", "Rappel prévu", "Escaladé", "Abandon")
INBOUND_OUTCOME_WEIGHTS = (70, 12, 8, 10)


@dataclass(slots=True)
class Product:
    sku: str
    label: str
    category: str
    brand: str
    price_cents: int


@dataclass(slots=True)
class Traits:
    purchase_rate: float
    avg_basket: float
    start: date  # the first card or account
    starts: dict[str, date]  # per channel: purchases there start with the card or account
    churn_date: date | None
    preferred_channel: str  # store | web
    web_share: float  # share of purchases made on the web
    responsiveness: float
    store: str
    favourites: tuple[float, ...]  # weight per consumer category


@dataclass(slots=True)
class Line:
    sku: str
    quantity: int
    unit_cents: int
    discount_cents: int = 0

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.unit_cents - self.discount_cents


@dataclass(slots=True)
class Purchase:
    person_id: str  # "" for an anonymous walk-in
    channel: str  # store | web
    at: datetime
    store: str  # "" on the web
    lines: list[Line]
    campaign_code: str = ""


@dataclass(slots=True)
class Call:
    person_id: str
    at: datetime
    direction: str  # inbound | outbound
    reason: str
    outcome: str
    campaign_code: str = ""
    seconds: int = 0


def build_catalogue(rng: random.Random) -> list[Product]:
    """About 150 SKUs in 12 categories, each base item in two variants (the second dearer)."""
    products: list[Product] = []
    for code, (category, (brand, variants, items)) in enumerate(CATALOGUE.items(), start=1):
        for number, (label, low, high) in enumerate(items, start=1):
            base = rng.uniform(low, high)
            for v, variant in enumerate(variants):
                euros = int(base * (1 + 0.35 * v)) + rng.choice((0.99, 0.9, 0.5, 0.99))
                sku = f"{'PRO' if brand == PRO else 'SOL'}-{code:02d}{number:02d}{v + 1}"
                products.append(
                    Product(sku, f"{label} {variant}", category, brand, round(euros * 100))
                )
    return products


def _nth_weekday(year: int, month: int, weekday: int, nth: int) -> date:
    """The nth (1-based; -1 = last) given weekday of a month."""
    if nth > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (nth - 1))
    last = (date(year, month % 12 + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def in_sales(day: date) -> bool:
    winter = _nth_weekday(day.year, 1, 2, 2)
    summer = _nth_weekday(day.year, 6, 2, -1)
    return any(start <= day < start + timedelta(days=28) for start in (winter, summer))


def day_weight(day: date, channel: str) -> float:
    weight = MONTH_FACTOR[day.month - 1] * WEEKDAY_FACTOR[channel][day.weekday()]
    if day.month == 12 and day.weekday() == 6 and channel == "store":
        weight *= 5  # December Sundays: shops open
    if day.month == 12 and 10 <= day.day <= 24:
        weight *= 1.5
    if in_sales(day):
        weight *= 1.35
    if day == _nth_weekday(day.year, 11, 4, -1):
        weight *= 2.5 if channel == "web" else 1.6  # Black Friday
    if channel == "store" and (day.month, day.day) in CLOSED:
        weight = 0.0
    return weight


class Calendar:
    """Cumulative day weights over the window, for sampling purchase days per channel."""

    def __init__(self, start: date, end: date) -> None:
        self.start = start
        self.days = [start + timedelta(days=i) for i in range((end - start).days)]
        self.cum: dict[str, list[float]] = {}
        for channel in WEEKDAY_FACTOR:
            weights = [day_weight(d, channel) for d in self.days]
            mean = sum(weights) / len(weights)
            cum = [0.0]
            for w in weights:
                cum.append(cum[-1] + w / mean)
            self.cum[channel] = cum

    def index(self, day: date) -> int:
        return min(max((day - self.start).days, 0), len(self.days))

    def mass(self, channel: str, lo: int, hi: int) -> float:
        return self.cum[channel][hi] - self.cum[channel][lo]

    def sample(self, rng: random.Random, channel: str, lo: int, hi: int) -> date:
        cum = self.cum[channel]
        u = cum[lo] + rng.random() * (cum[hi] - cum[lo])
        return self.days[min(bisect_right(cum, u) - 1, hi - 1)]


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, count, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def home_store(rng: random.Random, postal_code: str) -> str:
    """A store in the customer's department, else one in the same region (by the landline
    area code), else any mainland store."""
    department = postal_code[:3] if postal_code.startswith("97") else postal_code[:2]
    local = [code for code, _, dept in STORES if dept == department]
    if not local:
        area = area_prefix(postal_code + "000")
        local = [code for code, _, dept in STORES[:19] if area_prefix(dept + "000") == area]
    return rng.choice(local) if local else rng.choice(STORES[:18])[0]


def draw_traits(rng: random.Random, *, starts: dict[str, date], today: date, store: str) -> Traits:
    """Latent traits of one buyer; ``starts`` gives, per channel (store, web), the day the
    buyer's first card or account was created."""
    start = min(starts.values())
    lifetime = rng.expovariate(1 / (7 * 365))
    churn = start + timedelta(days=int(lifetime))
    if len(starts) == 1:
        preferred = next(iter(starts))
        web_share = float(preferred == "web")
    else:
        preferred = rng.choice(("store", "store", "web"))
        web_share = 0.85 if preferred == "web" else 0.15
    favourites = [0.5] * len(CONSUMER_CATEGORIES)
    for weight, index in zip((5, 3, 2), rng.sample(range(len(favourites)), 3), strict=True):
        favourites[index] = weight
    return Traits(
        purchase_rate=round(rng.gammavariate(0.7, 4.5), 4),
        avg_basket=round(rng.lognormvariate(math.log(38), 0.55), 2),
        start=start,
        starts=dict(starts),
        churn_date=churn if churn < today else None,
        preferred_channel=preferred,
        web_share=web_share,
        responsiveness=round(rng.betavariate(2, 5), 4),
        store=store,
        favourites=tuple(favourites),
    )


class Shopper:
    """Draws baskets: products near the target price in the buyer's favourite categories."""

    def __init__(self, catalogue: list[Product]) -> None:
        self.by_category = {
            c: [p for p in catalogue if p.category == c] for c in CONSUMER_CATEGORIES
        }

    def basket(
        self, rng: random.Random, day: date, target_euros: float, favourites: tuple[float, ...]
    ) -> list[Line]:
        count = min(8, 1 + poisson(rng, 1.4) + (rng.random() < 0.4 and day.month == 12))
        per_line = math.log(max(2.0, target_euros / count))
        sales = in_sales(day)
        lines: list[Line] = []
        for _ in range(count):
            category = rng.choices(CONSUMER_CATEGORIES, weights=favourites)[0]
            items = self.by_category[category]
            weights = [
                math.exp(-1.5 * abs(math.log(p.price_cents / 100) - per_line)) for p in items
            ]
            product = rng.choices(items, weights=weights)[0]
            if any(line.sku == product.sku for line in lines):
                continue
            quantity = 1 + (rng.random() < 0.25) * rng.randint(1, 2) * (product.price_cents < 1500)
            discount = 0
            if sales and rng.random() < 0.6:
                discount = round(quantity * product.price_cents * rng.choice((0.2, 0.3, 0.4, 0.5)))
            lines.append(Line(product.sku, quantity, product.price_cents, discount))
        return lines


def _moment(rng: random.Random, day: date, channel: str) -> datetime:
    hours = HOUR_WEIGHTS[channel]
    hour = rng.choices(list(hours), weights=list(hours.values()))[0]
    return datetime.combine(day, time(hour, rng.randrange(60), rng.randrange(60)))


@dataclass
class Simulation:
    """Purchases, calls and the calendar they were drawn from."""

    calendar: Calendar
    purchases: list[Purchase] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


def simulate_purchases(
    rng: random.Random,
    traits: dict[str, Traits],
    catalogue: list[Product],
    *,
    today: date,
    years: int = 3,
) -> Simulation:
    """Draw every buyer's purchases, plus anonymous walk-in tickets (about 6 % of tickets)."""
    calendar = Calendar(shift_years(today, -years), today)
    shopper = Shopper(catalogue)
    sim = Simulation(calendar)
    for person_id, t in traits.items():
        hi = calendar.index(t.churn_date or today)
        for channel, share in (("store", 1 - t.web_share), ("web", t.web_share)):
            lo = calendar.index(t.starts.get(channel, today))
            if share <= 0 or hi <= lo:
                continue
            expected = t.purchase_rate * share * calendar.mass(channel, lo, hi) / 365
            for _ in range(min(150, poisson(rng, expected))):
                day = calendar.sample(rng, channel, lo, hi)
                basket = t.avg_basket * (1.3 if channel == "web" else 1.0)
                sim.purchases.append(purchase(rng, shopper, person_id, channel, day, basket, t))
    walk_ins = sum(p.channel == "store" for p in sim.purchases) * 6 // 94
    last = len(calendar.days)
    for _ in range(walk_ins):
        day = calendar.sample(rng, "store", 0, last)
        favourites = tuple(1.0 for _ in CONSUMER_CATEGORIES)
        lines = shopper.basket(rng, day, rng.lognormvariate(math.log(25), 0.5), favourites)
        store = rng.choice(STORES)[0]
        sim.purchases.append(Purchase("", "store", _moment(rng, day, "store"), store, lines))
    return sim


def purchase(
    rng: random.Random,
    shopper: Shopper,
    person_id: str,
    channel: str,
    day: date,
    basket_euros: float,
    t: Traits,
    campaign_code: str = "",
) -> Purchase:
    target = basket_euros * rng.lognormvariate(0, 0.35)
    store = "" if channel == "web" else (t.store if rng.random() < 0.88 else rng.choice(STORES)[0])
    lines = shopper.basket(rng, day, target, t.favourites)
    return Purchase(person_id, channel, _moment(rng, day, channel), store, lines, campaign_code)


def _office_time(rng: random.Random, day: date) -> datetime:
    while day.weekday() == 6:
        day += timedelta(days=1)
    return datetime.combine(day, time(rng.randint(9, 18), rng.randrange(60)))


def simulate_calls(
    rng: random.Random,
    sim: Simulation,
    traits: dict[str, Traits],
    catalogue: list[Product],
    *,
    today: date,
    persons: int,
) -> None:
    """Inbound calls, a win-back campaign (with its purchases) and a satisfaction survey."""
    buyers = sorted(traits)
    history: dict[str, list[Purchase]] = {}
    for p in sim.purchases:
        if p.person_id:
            history.setdefault(p.person_id, []).append(p)
    weights = [1 + len(history.get(b, ())) for b in buyers]
    for _ in range(persons // 4):
        person_id = rng.choices(buyers, weights=weights)[0]
        at = _office_time(rng, today - timedelta(days=rng.randint(1, 730)))
        channel = "web" if rng.random() < traits[person_id].web_share else "store"
        reason = rng.choice(INBOUND_REASONS[channel if rng.random() < 0.75 else "any"])
        outcome = rng.choices(INBOUND_OUTCOMES, INBOUND_OUTCOME_WEIGHTS)[0]
        sim.calls.append(Call(person_id, at, "inbound", reason, outcome, "", rng.randint(40, 900)))
    _win_back(rng, sim, traits, history, Shopper(catalogue), today=today, persons=persons)
    survey_day = today - timedelta(days=60)
    code = f"SATISF-{survey_day:%Y-%m}"
    recent = [
        b
        for b in buyers
        if any(0 < (survey_day - p.at.date()).days <= 30 for p in history.get(b, ()))
    ]
    for person_id in rng.sample(recent, min(len(recent), persons // 100)):
        at = _office_time(rng, survey_day + timedelta(days=rng.randint(0, 9)))
        outcome = rng.choice(("Satisfait", "Très satisfait", "Insatisfait", "Sans réponse"))
        sim.calls.append(Call(person_id, at, "outbound", "Enquête satisfaction", outcome, code))


def _win_back(
    rng: random.Random,
    sim: Simulation,
    traits: dict[str, Traits],
    history: dict[str, list[Purchase]],
    shopper: Shopper,
    *,
    today: date,
    persons: int,
) -> None:
    launch = today - timedelta(days=150)
    code = f"REACTIV-{launch:%Y-%m}"
    lapsed = []
    for person_id in sorted(traits):
        before = [p.at.date() for p in history.get(person_id, ()) if p.at.date() < launch]
        if before and 240 <= (launch - max(before)).days <= 900:
            lapsed.append(person_id)
    for person_id in rng.sample(lapsed, min(len(lapsed), persons // 40)):
        t = traits[person_id]
        at = _office_time(rng, launch + timedelta(days=rng.randint(0, 13)))
        reached = rng.random() < 0.55
        interested = reached and rng.random() < t.responsiveness * 1.6
        outcome = (
            "Intéressé"
            if interested
            else "Pas intéressé"
            if reached
            else rng.choice(("Sans réponse", "Messagerie"))
        )
        sim.calls.append(
            Call(person_id, at, "outbound", "Relance client inactif", outcome, code, 120)
        )
        day = at.date() + timedelta(days=rng.randint(1, 21))
        open_channels = [
            c for c in (t.preferred_channel, "store", "web") if t.starts.get(c, day) < day
        ]
        if interested and rng.random() < 0.7 and open_channels and day < today:
            channel = open_channels[0]  # the preferred one, unless its card/account is newer
            basket = t.avg_basket * (1.3 if channel == "web" else 1.0)
            sim.purchases.append(purchase(rng, shopper, person_id, channel, day, basket, t, code))


def web_sessions(
    rng: random.Random, sim: Simulation, traits: dict[str, Traits], *, today: date, days: int = 180
) -> list[tuple[str, datetime, str, str]]:
    """Web events of the last ``days`` days: ``(person_id, at, event, sku)``; each web order is
    preceded by product views and cart adds, and buyers also browse without buying."""
    events: list[tuple[str, datetime, str, str]] = []
    since = today - timedelta(days=days)
    skus_seen: dict[str, list[str]] = {}
    for p in sim.purchases:
        if p.channel != "web" or not p.person_id or p.at.date() < since:
            continue
        midnight = datetime.combine(p.at.date(), time())  # the visit starts the same day
        at = max(midnight, p.at - timedelta(minutes=rng.randint(5, 40)))
        events.append((p.person_id, at, "page_view", ""))
        for line in p.lines:
            at += timedelta(seconds=rng.randint(20, 240))
            events.append((p.person_id, at, "product_view", line.sku))
            events.append((p.person_id, at + timedelta(seconds=30), "add_to_cart", line.sku))
            skus_seen.setdefault(p.person_id, []).append(line.sku)
    for person_id, t in traits.items():
        start = max(since, t.starts.get("web", today))
        active = ((t.churn_date or today) - start).days
        if t.web_share <= 0 or active <= 0:
            continue
        for _ in range(poisson(rng, t.purchase_rate * t.web_share * active / 365)):
            at = _moment(rng, start + timedelta(days=rng.randrange(active)), "web")
            events.append((person_id, at, "page_view", ""))
            seen = skus_seen.get(person_id)
            if seen:
                events.append(
                    (person_id, at + timedelta(seconds=45), "product_view", rng.choice(seen))
                )
    events.sort(key=lambda e: (e[1], e[0]))
    return events


# --- the planted campaign effect ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chances:
    """A customer's chance to buy within a campaign's window, without it and with it."""

    untreated: float
    treated: float

    @property
    def effect(self) -> float:
        return self.treated - self.untreated


NO_CHANCE = Chances(0.0, 0.0)


def campaign_chances(
    traits: Traits | None,
    *,
    window_days: int,
    effect: float,
    first_day: date,
    bought_already: bool = False,
) -> Chances:
    """The chances of one customer (see the module's docstring): from their purchase rate
    (none once churned before ``first_day``), plus ``effect`` when treated, capped at 1; both 1
    when they ``bought_already`` within the window; none without traits (not a buyer the model
    knows: they never buy).

    >>> t = Traits(2.0, 40.0, date(2024, 1, 1), {"store": date(2024, 1, 1)}, None, "store",
    ...            0.0, 0.3, "M001", (1.0,) * len(CONSUMER_CATEGORIES))
    >>> c = campaign_chances(t, window_days=30, effect=0.04, first_day=date(2026, 10, 1))
    >>> round(c.untreated, 4), round(c.treated, 4)
    (0.1516, 0.1916)
    """
    if not 0 <= effect <= 1:
        raise ValueError(f"the effect is an absolute change of a chance, 0 to 1 (got {effect})")
    if window_days < 2:
        raise ValueError("the window lasts two days at least")
    if bought_already:
        return Chances(1.0, 1.0)
    if traits is None or not traits.starts:
        return NO_CHANCE
    churned = traits.churn_date is not None and traits.churn_date <= first_day
    rate = 0.0 if churned else traits.purchase_rate
    untreated = 1 - math.exp(-rate * window_days / 365)
    return Chances(untreated, min(1.0, untreated + effect))


@dataclass(frozen=True, slots=True)
class CampaignResponse:
    """What one customer does in a campaign's window: their chances, the basket they buy if
    they buy (the same whatever their arm; None when they cannot), and whether they bought."""

    chances: Chances
    treated: bool
    basket: Purchase | None
    bought: bool

    @property
    def purchase(self) -> Purchase | None:
        return self.basket if self.bought else None

    @property
    def basket_euros(self) -> float:
        if self.basket is None:
            return 0.0
        return sum(line.amount_cents for line in self.basket.lines) / 100


def campaign_response(
    rng: random.Random,
    traits: Traits | None,
    *,
    treated: bool,
    window_days: int,
    effect: float,
    first_day: date,
    shopper: Shopper,
    person_id: str = "",
    bought_already: bool = False,
    campaign_code: str = "",
) -> CampaignResponse:
    """One customer's response to a campaign (see :func:`campaign_chances`). The window's
    days are ``first_day + 1`` to ``first_day + window_days - 1`` (local dates: strictly inside
    a window starting on ``first_day``). The draws do not depend on ``treated`` (a uniform for
    the purchase, the channel, the day, the basket), so the same ``rng`` state gives the same
    basket in both arms, and a treated customer buys whenever the untreated one would. A
    purchase caused by the campaign (bought, and it would not have happened untreated) carries
    ``campaign_code``."""
    chances = campaign_chances(
        traits,
        window_days=window_days,
        effect=effect,
        first_day=first_day,
        bought_already=bought_already,
    )
    if traits is None or chances == NO_CHANCE or bought_already:
        return CampaignResponse(chances, treated, None, False)
    u = rng.random()
    web = rng.random() < traits.web_share if len(traits.starts) > 1 else "web" in traits.starts
    channel = "web" if web else "store"
    day = first_day + timedelta(days=rng.randint(1, window_days - 1))
    chance = chances.treated if treated else chances.untreated
    caused = treated and chances.untreated <= u < chances.treated
    basket_euros = traits.avg_basket * (1.3 if channel == "web" else 1.0)
    basket = purchase(
        rng, shopper, person_id, channel, day, basket_euros, traits,
        campaign_code if caused else "",
    )  # fmt: skip
    return CampaignResponse(chances, treated, basket, u < chance)


@dataclass(frozen=True, slots=True)
class TrueEffect:
    """The true intention-to-treat effects of a campaign on an audience: ``conversion``, the
    mean over its customers of ``p_treated - p_untreated`` (a share: 0.03 is 3 points);
    ``revenue``, per customer, the mean of ``(p_treated - p_untreated) x basket`` (EUR);
    ``untreated_conversion``: the mean chance to buy anyway."""

    customers: int
    conversion: float
    revenue: float
    untreated_conversion: float


def true_effect(responses: Iterable[CampaignResponse]) -> TrueEffect:
    """The true effects over these customers' responses (one per customer of the audience,
    whatever their arm). Raises ValueError on an empty audience.

    >>> none = CampaignResponse(Chances(0.2, 0.25), False, None, False)
    >>> e = true_effect([none, CampaignResponse(Chances(1.0, 1.0), True, None, False)])
    >>> e.customers, round(e.conversion, 3), e.revenue, e.untreated_conversion
    (2, 0.025, 0.0, 0.6)
    """
    n = 0
    conversion = revenue = untreated = 0.0
    for r in responses:
        n += 1
        conversion += r.chances.effect
        revenue += r.chances.effect * r.basket_euros
        untreated += r.chances.untreated
    if n == 0:
        raise ValueError("no customer: the audience is empty")
    return TrueEffect(n, conversion / n, revenue / n, untreated / n)
