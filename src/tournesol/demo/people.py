"""The true population behind the demo dataset: persons, households and companies.

Model
-----
Households are drawn one after the other until ``persons`` persons exist:

- a single adult (38 %);
- a couple (40 %): they share the address and the landline; two times in three they are married
  and the woman bears her husband's name (her birth name is kept as ``maiden_name``); one
  couple in eight shares one e-mail address (``famille.dupont@...``);
- parents with one or two adult children (22 %) living at the same address; the first families
  with two children get twins (same last name, birth date and address, different first names)
  until ``persons // 500`` pairs exist (at least one).

Homonyms come both from chance (Faker's first and last names are the most frequent French ones)
and from a few planted pairs (``persons // 250``, at least two): a person renamed after another
of the same sex, living elsewhere, born another day. Every group of persons sharing a first and
last name (accents and case ignored) gets a ``homonym_group`` id.

Addresses are drawn from real communes with their real postal codes, weighted by population,
including Corsica (20xxx) and overseas departments (971, 972, 974); about one household in
twelve moved recently (``old_address``, still known to the oldest source records). About 8 % of
persons (11.5 % of those aged 22-66) are B2B contacts of one of ``persons // 25`` companies
(at least 3), each with
a Luhn-valid SIRET, a NAF code, a headcount band and the matching class (TPE, PME, ETI, GE).
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

# (postal codes, commune, population in thousands): real pairs, a sample of France.
COMMUNES: tuple[tuple[str, str, int], ...] = (
    (" ".join(f"750{i:02d}" for i in range(1, 21)), "Paris", 2100),
    (" ".join(f"130{i:02d}" for i in range(1, 17)), "Marseille", 870),
    (" ".join(f"6900{i}" for i in range(1, 10)), "Lyon", 520),
    ("31000 31100 31200 31300 31400 31500", "Toulouse", 500),
    ("06000 06100 06200 06300", "Nice", 340),
    ("44000 44100 44200 44300", "Nantes", 320),
    ("34000 34070 34080 34090", "Montpellier", 300),
    ("67000 67100 67200", "Strasbourg", 290),
    ("33000 33100 33200 33300 33800", "Bordeaux", 260),
    ("59000 59160 59260 59800", "Lille", 235),
    ("35000 35200 35700", "Rennes", 222),
    ("51100", "Reims", 180),
    ("83000 83100 83200", "Toulon", 180),
    ("42000 42100", "Saint-Étienne", 173),
    ("76600 76610 76620", "Le Havre", 166),
    ("21000", "Dijon", 159),
    ("38000 38100", "Grenoble", 158),
    ("49000 49100", "Angers", 157),
    ("30000 30900", "Nîmes", 150),
    ("69100", "Villeurbanne", 150),
    ("63000 63100", "Clermont-Ferrand", 147),
    ("13090 13100", "Aix-en-Provence", 145),
    ("72000 72100", "Le Mans", 144),
    ("29200", "Brest", 140),
    ("37000 37100 37200", "Tours", 137),
    ("80000 80080 80090", "Amiens", 134),
    ("87000 87100 87280", "Limoges", 130),
    ("74000", "Annecy", 130),
    ("66000 66100", "Perpignan", 120),
    ("92100", "Boulogne-Billancourt", 120),
    ("57000 57050 57070", "Metz", 118),
    ("25000", "Besançon", 118),
    ("45000 45100", "Orléans", 116),
    ("76000 76100", "Rouen", 114),
    ("93200", "Saint-Denis", 113),
    ("95100", "Argenteuil", 110),
    ("93100", "Montreuil", 110),
    ("68100 68200", "Mulhouse", 108),
    ("14000", "Caen", 106),
    ("54000 54100", "Nancy", 104),
    ("92000", "Nanterre", 96),
    ("94400", "Vitry-sur-Seine", 95),
    ("94000", "Créteil", 92),
    ("84000", "Avignon", 91),
    ("86000", "Poitiers", 89),
    ("78000", "Versailles", 85),
    ("50100", "Cherbourg-en-Cotentin", 79),
    ("17000", "La Rochelle", 78),
    ("64000", "Pau", 76),
    ("94100 94210", "Saint-Maur-des-Fossés", 75),
    ("92400", "Courbevoie", 82),
    ("92500", "Rueil-Malmaison", 78),
    ("92600", "Asnières-sur-Seine", 87),
    ("92700", "Colombes", 86),
    ("93300", "Aubervilliers", 88),
    ("92130", "Issy-les-Moulineaux", 68),
    ("92300", "Levallois-Perret", 66),
    ("92200", "Neuilly-sur-Seine", 60),
    ("94300", "Vincennes", 50),
    ("78100", "Saint-Germain-en-Laye", 45),
    ("91000", "Évry-Courcouronnes", 67),
    ("91300", "Massy", 51),
    ("95000", "Cergy", 66),
    ("77100", "Meaux", 56),
    ("77000", "Melun", 41),
    ("68000", "Colmar", 67),
    ("26000", "Valence", 65),
    ("18000", "Bourges", 64),
    ("29000", "Quimper", 63),
    ("10000", "Troyes", 61),
    ("73000", "Chambéry", 60),
    ("79000", "Niort", 59),
    ("56100", "Lorient", 57),
    ("60000", "Beauvais", 56),
    ("56000", "Vannes", 54),
    ("64100", "Bayonne", 52),
    ("53000", "Laval", 50),
    ("81000", "Albi", 49),
    ("27000", "Évreux", 47),
    ("41000", "Blois", 46),
    ("35400", "Saint-Malo", 46),
    ("22000", "Saint-Brieuc", 44),
    ("16000", "Angoulême", 42),
    ("01000", "Bourg-en-Bresse", 41),
    ("28000", "Chartres", 39),
    ("89000", "Auxerre", 34),
    ("47000", "Agen", 33),
    ("24000", "Périgueux", 30),
    ("01100", "Oyonnax", 22),
    ("02000", "Laon", 24),
    ("03000", "Moulins", 19),
    ("04000", "Digne-les-Bains", 16),
    ("05000", "Gap", 40),
    ("07000", "Privas", 8),
    ("09000", "Foix", 9),
    ("11000", "Carcassonne", 46),
    ("12000", "Rodez", 24),
    ("15000", "Aurillac", 25),
    ("19000", "Tulle", 14),
    ("23000", "Guéret", 13),
    ("48000", "Mende", 12),
    ("46000", "Cahors", 19),
    ("50000", "Saint-Lô", 19),
    ("61000", "Alençon", 26),
    ("70000", "Vesoul", 15),
    ("39000", "Lons-le-Saunier", 17),
    ("52000", "Chaumont", 22),
    ("55000", "Bar-le-Duc", 15),
    ("88000", "Épinal", 32),
    ("82000", "Montauban", 61),
    ("65000", "Tarbes", 42),
    ("32000", "Auch", 22),
    ("40000", "Mont-de-Marsan", 30),
    ("40100", "Dax", 21),
    ("24200", "Sarlat-la-Canéda", 9),
    ("01170", "Gex", 13),
    ("17410", "Saint-Martin-de-Ré", 2),
    ("84230", "Châteauneuf-du-Pape", 2),
    ("74400", "Chamonix-Mont-Blanc", 9),
    ("14600", "Honfleur", 7),
    ("27620", "Giverny", 1),
    ("46500", "Rocamadour", 1),
    ("46330", "Saint-Cirq-Lapopie", 1),
    ("68420", "Eguisheim", 2),
    ("68340", "Riquewihr", 1),
    ("84220", "Gordes", 2),
    ("12320", "Conques-en-Rouergue", 2),
    ("29180", "Locronan", 1),
    ("50760", "Barfleur", 1),
    ("19500", "Collonges-la-Rouge", 1),
    ("74140", "Yvoire", 1),
    ("20000 20090", "Ajaccio", 72),
    ("20200 20600", "Bastia", 48),
    ("20137", "Porto-Vecchio", 12),
    ("20250", "Corte", 7),
    ("97110", "Pointe-à-Pitre", 15),
    ("97139", "Les Abymes", 53),
    ("97122", "Baie-Mahault", 31),
    ("97200", "Fort-de-France", 76),
    ("97232", "Le Lamentin", 40),
    ("97400", "Saint-Denis", 150),
    ("97410", "Saint-Pierre", 85),
    ("97430", "Le Tampon", 80),
    ("97460", "Saint-Paul", 105),
)
RURAL_MAX_POPULATION = 15  # thousands: below, lieux-dits and BP are common

STREET_TYPES: tuple[tuple[str, int], ...] = (
    ("rue", 50),
    ("avenue", 14),
    ("boulevard", 6),
    ("chemin", 7),
    ("impasse", 6),
    ("allée", 5),
    ("route", 5),
    ("place", 3),
    ("quai", 1),
    ("cours", 1),
    ("square", 1),
)
STREET_NAMES = (
    "de la République", "Victor Hugo", "Jean Jaurès", "du Général de Gaulle", "Pasteur",
    "de la Gare", "des Lilas", "du Moulin", "de l'Église", "Gambetta", "Jean Moulin",
    "Émile Zola", "de la Liberté", "des Écoles", "du Château", "de Verdun", "Voltaire",
    "Carnot", "du Maréchal Foch", "de Paris", "du Stade", "des Tilleuls", "de la Mairie",
    "Saint-Martin", "des Acacias", "du Maréchal Leclerc", "Léon Blum", "Anatole France",
    "Jules Ferry", "de Strasbourg", "des Peupliers", "de la Fontaine", "du Port", "des Vignes",
    "Marcel Pagnol", "Paul Bert", "Georges Clemenceau", "de la Paix", "du 8 Mai 1945",
    "du 11 Novembre 1918", "Aristide Briand", "des Roses", "du Commerce", "d'Alsace-Lorraine",
    "Marie Curie", "Simone Veil", "Jean Monnet", "Albert Camus", "Molière", "Alphonse Daudet",
    "Frédéric Mistral", "Louise Michel", "Jacques Prévert", "Antoine de Saint-Exupéry",
    "des Châtaigniers", "du Lavoir", "de la Croix Blanche", "des Prés", "du Bourg",
)  # fmt: skip
LIEUX_DITS = (
    "Le Bourg", "La Croix Blanche", "Les Granges", "Le Moulin Neuf", "La Métairie",
    "Les Quatre Chemins", "Le Haut du Bois", "La Ferme des Prés", "Les Essarts", "Le Pré Long",
)  # fmt: skip
RESIDENCES = (
    "Résidence Les Tilleuls", "Résidence du Parc", "Résidence Bellevue", "Les Jardins de Flore",
    "Résidence Le Clos des Vignes", "Immeuble Le Central", "Résidence Les Cèdres",
    "Le Hameau des Pins", "Résidence Saint-Exupéry", "Les Terrasses du Lac",
)  # fmt: skip
EXTRA_LAST_NAMES = (
    "Lefèvre", "Bénard", "Hébert", "Gérard", "Lemaître", "Lévêque", "Ménard", "Thébault",
    "Béranger", "Mézière", "Pépin", "Frémont", "Hélie", "Crépin", "Lécuyer", "Désiré",
)  # fmt: skip
EMAIL_DOMAINS: tuple[tuple[str, int], ...] = (
    ("gmail.com", 30), ("orange.fr", 15), ("hotmail.fr", 10), ("free.fr", 9), ("yahoo.fr", 7),
    ("laposte.net", 5), ("sfr.fr", 5), ("wanadoo.fr", 5), ("outlook.fr", 5), ("icloud.com", 4),
    ("hotmail.com", 3), ("live.fr", 2),
)  # fmt: skip
# NAF code, name templates ({last}, {city}, {first} are filled in)
NAF_CODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("47.11F", ("Hyper {city}", "Hypermarché de {city}")),
    ("47.11B", ("Épicerie {last}", "Proxi {city}")),
    ("56.10A", ("Restaurant {last}", "Brasserie de la Gare")),
    ("43.21A", ("{last} Électricité", "Élec Services {city}")),
    ("62.01Z", ("{last} Informatique", "Solutions Numériques {city}")),
    ("69.20Z", ("Cabinet {last}", "{last} & Associés")),
    ("68.31Z", ("Agence {last} Immobilier", "Immo {city}")),
    ("41.20A", ("{last} Construction", "Maisons {last}")),
    ("49.41A", ("Transports {last}", "{last} Logistique")),
    ("55.10Z", ("Hôtel du Commerce", "Hôtel {last}")),
    ("10.71C", ("Boulangerie {last}", "Au Fournil de {city}")),
    ("96.02A", ("{first} Coiffure", "L'Atelier de {first}")),
    ("45.20A", ("Garage {last}", "Garage de la Gare")),
    ("85.59A", ("{last} Formation", "Institut {last}")),
    ("70.22Z", ("{last} Conseil", "{last} Partners")),
    ("46.90Z", ("{last} Distribution", "Comptoir {last}")),
    ("81.21Z", ("{last} Propreté", "Net Services {city}")),
)
LEGAL_FORMS = ("SARL", "SAS", "SASU", "EURL", "SA")
HEADCOUNT_BANDS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 5), ("1-2", 1, 12), ("3-5", 3, 14), ("6-9", 6, 14), ("10-19", 10, 15),
    ("20-49", 20, 14), ("50-99", 50, 9), ("100-199", 100, 6), ("200-249", 200, 3),
    ("250-499", 250, 3), ("500-999", 500, 2), ("1000-1999", 1000, 1.2),
    ("2000-4999", 2000, 0.8), ("5000-9999", 5000, 0.5), ("10000+", 10000, 0.5),
)  # fmt: skip
JOB_TITLES = (
    "Gérant", "Directeur général", "Responsable achats", "Acheteur", "Assistante de direction",
    "Responsable des services généraux", "Office manager", "Directeur administratif et financier",
    "Comptable", "Chef de projet", "Responsable commercial", "Responsable magasin",
    "Chef d'atelier", "Responsable logistique", "Secrétaire",
)  # fmt: skip


@dataclass(slots=True)
class Address:
    """A postal address split the AFNOR way (lines 2 to 6)."""

    number: str  # "12", "3 bis", "" for a lieu-dit
    street_type: str  # "rue", "" for a lieu-dit
    street_name: str
    complement: str  # line 2: apartment, floor, "chez"
    building: str  # line 3: residence, building
    special: str  # line 5: BP, lieu-dit
    postal_code: str
    city: str

    @property
    def street(self) -> str:
        return " ".join(p for p in (self.number, self.street_type, self.street_name) if p)


@dataclass(slots=True)
class Company:
    siret: str
    name: str
    naf_code: str
    headcount_band: str
    org_class: str
    domain: str
    postal_code: str
    city: str
    switchboard: str


@dataclass(slots=True)
class Person:
    person_id: str
    household_id: str
    gender: str  # "M" or "F"
    first_name: str
    last_name: str
    birth_date: date
    address: Address
    maiden_name: str = ""
    email: str = ""
    spare_email: str = ""  # an address the person gives where asked, unknown to the others
    mobile: str = ""  # ten national digits
    landline: str = ""
    old_address: Address | None = None  # before a recent move
    moved_on: date | None = None
    is_twin: bool = False
    homonym_group: str = ""
    company: Company | None = None
    job_title: str = ""
    pro_email: str = ""
    pro_phone: str = ""
    work_name: str = ""  # the last name used at work (a maiden name, sometimes)


@dataclass
class Population:
    persons: list[Person]
    companies: list[Company]
    emails: set[str] = field(default_factory=set)  # every address in use
    by_id: dict[str, Person] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {p.person_id: p for p in self.persons}


def fold(text: str) -> str:
    """Lower case without accents: the key under which two spellings are the same name."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower().strip()


def slug(text: str) -> str:
    return "".join(c for c in fold(text) if c.isalnum())


def shift_years(day: date, years: int) -> date:
    """The same day ``years`` later (earlier if negative); 29 February becomes the 28th."""
    return day.replace(year=day.year + years, day=min(day.day, 28) if day.month == 2 else day.day)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def luhn_complete(base: str) -> str:
    """``base`` followed by the digit that makes the whole number Luhn-valid."""
    return next(base + d for d in "0123456789" if luhn_ok(base + d))


def weighted(rng: random.Random, items: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


class _Builder:
    """Draws households, then contact data, homonyms and companies."""

    def __init__(self, rng: random.Random, fake: Any, count: int, today: date) -> None:
        self.rng, self.fake, self.count, self.today = rng, fake, count, today
        self.persons: list[Person] = []
        self.households = 0
        self.twins_left = max(1, count // 500)
        self.emails: set[str] = set()
        self.domains: set[str] = set()
        self.communes: list[tuple[str, str, int]] = []
        self.commune_weights: list[float] = []
        for codes, city, population in COMMUNES:
            for code in codes.split():
                self.communes.append((code, city, population))
                self.commune_weights.append(population / len(codes.split()))

    # --- names, dates, places -------------------------------------------------------------
    def first_name(self, gender: str) -> str:
        fake = self.fake
        return str(fake.first_name_male() if gender == "M" else fake.first_name_female())

    def last_name(self) -> str:
        if self.rng.random() < 0.08:
            return self.rng.choice(EXTRA_LAST_NAMES)
        return str(self.fake.last_name())

    def birth_date(self, age_low: int, age_high: int) -> date:
        age = self.rng.randint(age_low, age_high)
        start = shift_years(self.today, -age - 1) + timedelta(days=1)
        return start + timedelta(days=self.rng.randrange(365))

    def adult_birth_date(self) -> date:
        bands = ((18, 29), (30, 44), (45, 59), (60, 74), (75, 90))
        low, high = self.rng.choices(bands, weights=(18, 27, 27, 20, 8))[0]
        return self.birth_date(low, high)

    def address(self) -> Address:
        rng = self.rng
        code, city, pop = rng.choices(self.communes, weights=self.commune_weights)[0]
        rural = pop <= RURAL_MAX_POPULATION
        if rural and rng.random() < 0.25:
            return Address("", "", "", "", "", f"Lieu-dit {rng.choice(LIEUX_DITS)}", code, city)
        number = str(rng.choice((rng.randint(1, 30), rng.randint(1, 180))))
        if rng.random() < 0.07:
            number += rng.choice((" bis", " ter", "B"))
        complement = building = special = ""
        if not rural and rng.random() < 0.35:
            complement = rng.choice(
                (
                    f"Appt {rng.randint(1, 60)}",
                    f"Apt {rng.randint(1, 9)}{rng.choice('ABCD')}",
                    f"Escalier {rng.choice('ABCD')}",
                    f"{rng.randint(1, 9)}e étage",
                    f"Porte {rng.randint(1, 40)}",
                )
            )
            if rng.random() < 0.4:
                building = rng.choice((rng.choice(RESIDENCES), f"Bâtiment {rng.choice('ABCDEF')}"))
        if rng.random() < 0.02:
            complement = f"Chez {rng.choice(('M.', 'Mme', 'M. et Mme'))} {self.last_name()}"
        if rng.random() < (0.04 if rural else 0.005):
            special = f"BP {rng.randint(1, 400)}"
        street_type = weighted(rng, STREET_TYPES)
        return Address(
            number, street_type, rng.choice(STREET_NAMES), complement, building, special, code, city
        )

    def landline(self, postal_code: str) -> str:
        return area_prefix(postal_code) + _digits(self.rng, 10 - len(area_prefix(postal_code)))

    def mobile(self, postal_code: str) -> str:
        prefix = {"971": "0690", "972": "0696", "974": "0692"}.get(postal_code[:3])
        if prefix is None:
            prefix = self.rng.choice(("06", "06", "06", "07"))
        return prefix + _digits(self.rng, 10 - len(prefix))

    # --- households ----------------------------------------------------------------------
    def new_person(self, hh: str, gender: str, last: str, born: date, address: Address) -> Person:
        person = Person(
            f"P{len(self.persons) + 1:06d}",
            hh,
            gender,
            self.first_name(gender),
            last,
            born,
            address,
        )
        self.persons.append(person)
        return person

    def household(self) -> None:
        self.households += 1
        hh = f"H{self.households:06d}"
        address = self.address()
        kind = self.rng.choices(("single", "couple", "family"), weights=(38, 40, 22))[0]
        left = self.count - len(self.persons)
        if kind == "single" or left < 2:
            gender = self.rng.choice("MF")
            self.new_person(hh, gender, self.last_name(), self.adult_birth_date(), address)
        else:
            children = 0 if kind == "couple" else min(self.rng.choice((1, 2, 2)), left - 2)
            self.family(hh, address, children)
        members = [p for p in self.persons if p.household_id == hh]
        if len(members) > 1 or self.rng.random() < 0.5:
            landline = self.landline(address.postal_code) if self.rng.random() < 0.45 else ""
            for p in members:
                p.landline = landline
        if self.rng.random() < 0.08:
            old, moved = self.address(), self.today - timedelta(days=self.rng.randint(60, 1500))
            for p in members:
                p.old_address, p.moved_on = old, moved

    def family(self, hh: str, address: Address, children: int) -> None:
        rng = self.rng
        low = 38 if children else 20
        man_born = self.birth_date(low + 2, 85)
        woman_born = man_born + timedelta(days=rng.randint(-1500, 2500))
        if (self.today - woman_born).days < low * 366:
            woman_born = man_born
        family_name = self.last_name()
        married = rng.random() < 0.66 or (children > 0 and rng.random() < 0.8)
        man = self.new_person(hh, "M", family_name, man_born, address)
        if rng.random() < 0.03 and not children:
            self.new_person(hh, "M", self.last_name(), woman_born, address)
            return
        woman_last = family_name if married else self.last_name()
        woman = self.new_person(hh, "F", woman_last, woman_born, address)
        if married:
            woman.maiden_name = self.last_name()
        if rng.random() < 0.125:
            shared = self.unique_email(f"famille.{slug(family_name)}", man.birth_date)
            man.email = woman.email = shared
        youngest_parent = max(man_born, woman_born)
        twins = children == 2 and self.twins_left > 0
        child_born = None
        for _ in range(children):
            if child_born is None or not twins:
                oldest = shift_years(youngest_parent, 20)
                latest = shift_years(self.today, -18)
                span = max(1, (latest - oldest).days)
                child_born = oldest + timedelta(days=rng.randrange(span))
            child = self.new_person(hh, rng.choice("MF"), family_name, child_born, address)
            child.is_twin = twins
        if twins:
            self.twins_left -= 1
            a, b = self.persons[-2], self.persons[-1]
            while fold(a.first_name) == fold(b.first_name):
                b.first_name = self.first_name(b.gender)

    # --- contact data --------------------------------------------------------------------
    def unique_email(self, local: str, born: date) -> str:
        rng = self.rng
        domains = EMAIL_DOMAINS
        if (self.today - born).days > 55 * 365:  # older people kept their ISP's address
            domains = (*EMAIL_DOMAINS, ("wanadoo.fr", 20), ("orange.fr", 20))
        for attempt in range(50):
            suffix = "" if attempt == 0 else str(rng.choice((born.year % 100, born.year, attempt)))
            email = f"{local}{suffix}@{weighted(rng, domains)}"
            if email not in self.emails:
                self.emails.add(email)
                return email
        raise RuntimeError("could not find a free e-mail address")  # pragma: no cover

    def contact_data(self, person: Person) -> None:
        rng = self.rng
        age = (self.today - person.birth_date).days // 365
        first, last = slug(person.first_name), slug(person.last_name)
        if not person.email:
            spare = f"{first}.{last}{rng.randint(1, 99)}"
            person.spare_email = self.unique_email(spare, person.birth_date)
        if not person.email and rng.random() > (0.5 if age > 75 else 0.08):
            local = rng.choice(
                (
                    f"{first}.{last}",
                    f"{first}{last}",
                    f"{first[0]}.{last}",
                    f"{last}.{first}",
                    f"{first}_{last}",
                    f"{first}.{last}",
                    f"{first}{rng.randint(1, 99)}",
                )
            )
            person.email = self.unique_email(local, person.birth_date)
        if rng.random() < (0.6 if age > 80 else 0.93):
            person.mobile = self.mobile(person.address.postal_code)

    def plant_homonyms(self) -> None:
        pairs = max(2, self.count // 250)
        for _ in range(pairs * 10):
            if pairs == 0:
                return
            a, b = self.rng.sample(self.persons, 2)
            if (
                a.gender != b.gender
                or a.household_id == b.household_id
                or b.maiden_name
                or b.is_twin
                or a.birth_date == b.birth_date
                or a.address.city == b.address.city
            ):
                continue
            b.first_name, b.last_name = a.first_name, a.last_name
            pairs -= 1

    def mark_homonyms(self) -> None:
        groups: dict[tuple[str, str], list[Person]] = {}
        for p in self.persons:
            groups.setdefault((fold(p.first_name), fold(p.last_name)), []).append(p)
        number = 0
        for members in groups.values():
            if len(members) > 1:
                number += 1
                for p in members:
                    p.homonym_group = f"HG{number:05d}"

    # --- companies -------------------------------------------------------------------------
    def company(self) -> Company:
        rng = self.rng
        naf, templates = rng.choice(NAF_CODES)
        _, city, _ = rng.choices(self.communes, weights=self.commune_weights)[0]
        base = rng.choice(templates).format(
            last=self.last_name(), city=city, first=self.first_name(rng.choice("MF"))
        )
        name = f"{base} {rng.choice(LEGAL_FORMS)}" if rng.random() < 0.6 else base
        band, low, _ = rng.choices(HEADCOUNT_BANDS, weights=[w for *_, w in HEADCOUNT_BANDS])[0]
        org_class = "TPE" if low < 10 else "PME" if low < 250 else "ETI" if low < 5000 else "GE"
        siren = luhn_complete(str(rng.randint(3, 9)) + _digits(rng, 7))
        siret = luhn_complete(siren + f"{rng.choice((1, 1, 1, 2, 3, 12, 25)):04d}")
        code = next(c for c, n, _ in self.communes if n == city)
        domain = slug(base)[:24]
        if domain in self.domains:
            domain = f"{domain[:18]}-{slug(city)[:12]}"
        while domain in self.domains:
            domain += str(rng.randint(0, 9))
        self.domains.add(domain)
        domain += rng.choice((".fr", ".fr", ".com"))
        switchboard = self.landline(code)[:-2] + "00"
        return Company(siret, name, naf, band, org_class, domain, code, city, switchboard)

    def b2b_contacts(self) -> list[Company]:
        rng = self.rng
        companies = [self.company() for _ in range(max(3, self.count // 25))]
        sizes = [1.0 / (i + 1) ** 0.6 for i in range(len(companies))]
        contacts = 0
        for person in self.persons:
            age = (self.today - person.birth_date).days // 365
            if not 22 <= age <= 66 or (rng.random() >= 0.115 and contacts >= 2):
                continue  # (the first two working-age persons always are: never an empty CRM)
            contacts += 1
            company = rng.choices(companies, weights=sizes)[0]
            person.company, person.job_title = company, rng.choice(JOB_TITLES)
            use_maiden = person.maiden_name and rng.random() < 0.3
            person.work_name = person.maiden_name if use_maiden else person.last_name
            first, last = slug(person.first_name), slug(person.work_name)
            local = rng.choice((f"{first}.{last}", f"{first[0]}.{last}", f"{first[0]}{last}"))
            while f"{local}@{company.domain}" in self.emails:
                local += str(rng.randint(0, 9))
            person.pro_email = f"{local}@{company.domain}"
            self.emails.add(person.pro_email)
            person.pro_phone = (
                company.switchboard[:-2] + _digits(rng, 2)
                if rng.random() < 0.6
                else self.mobile(company.postal_code)
            )
        return companies


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


_AREAS = {  # first digits of a landline number -> departments (others: "04", south-east)
    "01": "75 77 78 91 92 93 94 95",
    "02": "14 18 22 27 28 29 35 36 37 41 44 45 49 50 53 56 61 72 76 85",
    "03": "02 08 10 21 25 39 51 52 54 55 57 58 59 60 62 67 68 70 71 80 88 89 90",
    "05": "09 12 16 17 19 23 24 31 32 33 40 46 47 64 65 79 81 82 86 87",
}
_AREA_BY_DEPARTMENT = {dept: area for area, depts in _AREAS.items() for dept in depts.split()}


def area_prefix(postal_code: str) -> str:
    """The first digits of a landline number in that postal code's area."""
    overseas = {"971": "0590", "972": "0596", "974": "0262"}.get(postal_code[:3])
    return overseas or _AREA_BY_DEPARTMENT.get(postal_code[:2], "04")


def country_calling_code(postal_code: str) -> str:
    """The international prefix of a number in that postal code's area (Guadeloupe: 590...)."""
    return {"971": "590", "972": "596", "974": "262"}.get(postal_code[:3], "33")


def build_population(rng: random.Random, fake: Any, count: int, today: date) -> Population:
    """Draw ``count`` persons in households, their contact data, homonyms and employers."""
    builder = _Builder(rng, fake, count, today)
    while len(builder.persons) < count:
        builder.household()
    builder.plant_homonyms()
    for person in builder.persons:
        builder.contact_data(person)
    builder.mark_homonyms()
    companies = builder.b2b_contacts()
    return Population(builder.persons, companies, builder.emails)


def with_old_address(person: Person, when: date) -> Address:
    """The address a source record created on ``when`` knows for this person."""
    if person.old_address is not None and person.moved_on is not None and when < person.moved_on:
        return person.old_address
    return person.address
