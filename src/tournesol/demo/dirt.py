"""How each customer source writes a person down, dirt included.

Every source record starts from the true person and is then degraded the way real systems and
real people degrade data. Rates per record (they vary by source, see ``RATES``):

=============================  =======  =========  =======  ==========  =====
dirt                           loyalty  ecommerce  contest  callcenter  b2b
=============================  =======  =========  =======  ==========  =====
accents dropped (Hélène)        35 %     10 %       20 %     40 %        10 %
one-letter typo in a name       1.5 %    1 %        2 %      3 %         1 %
first/last name swapped         1 %      0.5 %      2 %      1 %         0
trailing or double spaces       3 %      4 %        3 %      2 %         2 %
street type abbreviated         40 %     10 %       -        -           -
e-mail domain typo (gmial.com)  1.5 %    2 %        3 %      -           -
invalid e-mail                  0.5 %    0.3 %      0.8 %    -           -
invalid phone                   0.5 %    0.8 %      1 %      1 %         0.5 %
birth day and month swapped     0.8 %    0.5 %      1 %      -           -
=============================  =======  =========  =======  ==========  =====

Case is a property of the system: the loyalty base writes last names and most cities in upper
case (``ST ETIENNE``), the e-shop keeps what people typed (5 % all lower, 4 % all upper), the
contest form is typed on phones (15 % lower). Fields go missing at realistic rates (the birth
date of 12 % of loyalty cards and 45 % of e-shop accounts, the e-mail of 30 % of loyalty cards,
the first name of 20 % of calls); phones are written in every French way (``06 12 34 56 78``,
``+33 6..``, ``0033..``, ``+33 (0)6..``, dotted); Excel turned 30 % of the contest's postal
codes into numbers (``01000`` reads ``1000``); a married woman sometimes gives her maiden name
(contest 15 %, B2B 30 %); 8 % of households moved and older records keep the old address; 2 %
of B2B rows carry a SIRET with a typo.

Only planted rows are meant to be rejected by the importer (see ``generator``): everything
above is dirt for the quality and identity steps, not for the reader.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from tournesol.demo.people import (
    Address,
    Person,
    country_calling_code,
    with_old_address,
)

ABBREVIATIONS = {
    "rue": ("r.", "R", "r"),
    "avenue": ("av.", "ave", "av"),
    "boulevard": ("bd", "bld", "Bd"),
    "chemin": ("chem.", "ch.", "che"),
    "impasse": ("imp.", "imp"),
    "allée": ("all.", "allee"),
    "route": ("rte", "rte."),
    "place": ("pl.", "pl"),
    "quai": ("q.", "qu."),
    "cours": ("crs",),
    "square": ("sq.",),
}
EMAIL_TYPOS = {
    "gmail.com": ("gmial.com", "gmail.fr", "gmal.com", "gmail.con"),
    "hotmail.fr": ("hotmial.fr", "hotmail.fe", "hotmai.fr"),
    "hotmail.com": ("hotmial.com", "hotmail.co"),
    "orange.fr": ("orage.fr", "oragne.fr", "orange.fe"),
    "yahoo.fr": ("yahooo.fr", "yaho.fr"),
    "free.fr": ("fre.fr", "free.fe"),
    "wanadoo.fr": ("wanado.fr", "wanadoo.com"),
    "laposte.net": ("laposte.fr", "laposte.ne"),
}
KEYBOARD_NEIGHBOURS = {
    "a": "zqs", "e": "zrd", "i": "uok", "o": "ipl", "u": "yij", "n": "bhm", "r": "etf",
    "s": "qdz", "t": "ryg", "l": "kmp", "m": "nlk", "c": "xvd", "d": "sfe", "g": "fhb",
}  # fmt: skip
IMPOSSIBLE_DAYS = ((31, 2), (30, 2), (31, 4), (31, 6), (31, 9), (31, 11))


@dataclass(frozen=True)
class Rates:
    accents: float
    typo: float
    swap_names: float
    spaces: float
    abbreviate: float = 0.0
    email_typo: float = 0.0
    invalid_email: float = 0.0
    invalid_phone: float = 0.0
    swap_birth: float = 0.0


RATES = {
    "loyalty": Rates(0.35, 0.015, 0.01, 0.03, 0.40, 0.015, 0.005, 0.005, 0.008),
    "ecommerce": Rates(0.10, 0.01, 0.005, 0.04, 0.10, 0.02, 0.003, 0.008, 0.005),
    "contest": Rates(0.20, 0.02, 0.02, 0.03, 0.0, 0.03, 0.008, 0.01, 0.01),
    "callcenter": Rates(0.40, 0.03, 0.01, 0.02, invalid_phone=0.01),
    "b2b": Rates(0.10, 0.01, 0.0, 0.02, invalid_phone=0.005),
}


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


def typo(rng: random.Random, text: str) -> str:
    """One wrong letter: a keyboard neighbour, a letter dropped, doubled or two swapped."""
    positions = [i for i, c in enumerate(text) if c.isalpha()]
    if len(positions) < 3:
        return text
    i = rng.choice(positions[1:])
    kind = rng.randrange(4)
    if kind == 0:
        near = KEYBOARD_NEIGHBOURS.get(text[i].lower(), "aeiou")
        letter = rng.choice(near)
        return text[:i] + (letter.upper() if text[i].isupper() else letter) + text[i + 1 :]
    if kind == 1:
        return text[:i] + text[i + 1 :]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    j = i - 1
    return text[:j] + text[i] + text[j] + text[i + 1 :]


def spaces(rng: random.Random, text: str) -> str:
    if not text:
        return text
    if rng.random() < 0.6 or " " not in text:
        return text + rng.choice((" ", "  "))
    return text.replace(" ", "  ", 1)


def email_typo(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    if domain in EMAIL_TYPOS and rng.random() < 0.8:
        return f"{local}@{rng.choice(EMAIL_TYPOS[domain])}"
    return f"{typo(rng, local)}@{domain}"


def invalid_email(rng: random.Random, email: str) -> str:
    local, _, domain = email.partition("@")
    return rng.choice(
        (
            f"{local}@",
            f"{local}{domain}",
            f"{local}@@{domain}",
            "nc@nc",
            "pas d'email",
            f"{local.replace('.', ' ')}@{domain}",
            f"{local}@{domain.split('.')[0]}",
        )
    )


def invalid_phone(rng: random.Random) -> str:
    return rng.choice(("0600000000", "12345", "06 12 34 56", "0000000000", "01234567890", "NC"))


def phone_text(rng: random.Random, digits: str, postal_code: str, styles: tuple[str, ...]) -> str:
    """A ten-digit national number written in one of ``styles``: plain, spaced, dotted,
    dashed, intl (+33 6 ..), intl_plain (+336..), intl_00 (00336..), intl_0 (+33 (0)6 ..)."""
    style = rng.choice(styles)
    pairs = " ".join(digits[i : i + 2] for i in range(0, 10, 2))
    cc, rest = country_calling_code(postal_code), digits[1:]
    spaced_rest = f"{rest[0]} " + " ".join(rest[i : i + 2] for i in range(1, 9, 2))
    return {
        "plain": digits,
        "spaced": pairs,
        "dotted": pairs.replace(" ", "."),
        "dashed": pairs.replace(" ", "-"),
        "intl": f"+{cc} {spaced_rest}",
        "intl_plain": f"+{cc}{rest}",
        "intl_00": f"00{cc}{rest}",
        "intl_0": f"+{cc} (0){spaced_rest}",
    }[style]


def swap_day_month(day: date) -> date:
    """The date with day and month exchanged, when that is still a date (day <= 12)."""
    if day.day <= 12 and day.day != day.month:
        return day.replace(month=day.day, day=day.month)
    return day


def impossible_date(rng: random.Random, year: int) -> tuple[int, int, int]:
    day, month = rng.choice(IMPOSSIBLE_DAYS)
    return day, month, year


def upper_city(rng: random.Random, city: str) -> str:
    """A city the La Poste way: upper case, no accents, hyphens as spaces, ST/STE sometimes."""
    text = strip_accents(city).upper().replace("-", " ").replace("'", " ")
    if rng.random() < 0.5:
        text = text.replace("SAINTE ", "STE ").replace("SAINT ", "ST ")
    return text


@dataclass(slots=True)
class Row:
    """One record of a source file and what the truth says about it."""

    key: str
    person_id: str
    values: dict[str, Any]
    reject: str = ""  # planted reject code: COLUMN_COUNT, REPEATED_HEADER, INVALID_DATE
    raw_fields: list[str] | None = None  # CSV: written verbatim, unquoted (malformed rows)
    campaign_code: str = ""


@dataclass
class Renderer:
    """Turns true persons into one source's records, with that source's dirt."""

    rng: random.Random
    source: str
    today: date

    @property
    def rates(self) -> Rates:
        return RATES[self.source]

    def chance(self, rate: float) -> bool:
        return self.rng.random() < rate

    def names(self, person: Person, last_name: str | None = None) -> tuple[str, str]:
        first, last = person.first_name, last_name or person.last_name
        rates = self.rates
        if self.chance(rates.accents):
            first, last = strip_accents(first), strip_accents(last)
        if self.chance(rates.typo):
            if self.rng.random() < 0.5:
                first = typo(self.rng, first)
            else:
                last = typo(self.rng, last)
        if self.chance(rates.spaces):
            first = spaces(self.rng, first)
        if self.chance(rates.swap_names):
            first, last = last, first
        return first, last

    def email(self, email: str) -> str:
        if not email:
            return email
        if self.chance(self.rates.invalid_email):
            return invalid_email(self.rng, email)
        if self.chance(self.rates.email_typo):
            return email_typo(self.rng, email)
        return email

    def own_email(self, person: Person) -> str:
        """The person's e-mail, or the one they give where an address is required."""
        return person.email or person.spare_email

    def phone(self, digits: str, postal_code: str, styles: tuple[str, ...]) -> str:
        if not digits:
            return ""
        if self.chance(self.rates.invalid_phone):
            return invalid_phone(self.rng)
        return phone_text(self.rng, digits, postal_code, styles)

    def birth_date(self, person: Person) -> date:
        if self.chance(self.rates.swap_birth):
            return swap_day_month(person.birth_date)
        return person.birth_date

    def street(self, address: Address, *, comma: bool = False) -> str:
        if not address.street_type:
            return ""
        kind = address.street_type
        if self.chance(self.rates.abbreviate):
            kind = self.rng.choice(ABBREVIATIONS[kind])
        number = f"{address.number}," if comma else address.number
        text = " ".join(p for p in (number, kind, address.street_name) if p)
        return spaces(self.rng, text) if self.chance(self.rates.spaces) else text


def civility_loyalty(rng: random.Random, person: Person, on: date) -> str:
    if rng.random() < 0.03:
        return ""
    if person.gender == "M":
        return rng.choices(("M", "Monsieur", "MR"), weights=(75, 20, 5))[0]
    young = (on - person.birth_date).days < 30 * 365 and not person.maiden_name
    if young and rng.random() < 0.6:
        return "MLLE"
    return rng.choices(("MME", "Madame"), weights=(78, 22))[0]


def loyalty_values(
    r: Renderer,
    person: Person,
    *,
    number: str,
    created: date,
    store: str,
    spend_cents: int,
    year_cents: int,
    invalid_date: bool,
) -> dict[str, Any]:
    """One loyalty-card row (cp1252 export of the shops' loyalty system)."""
    rng = r.rng
    address = with_old_address(person, created)
    first, last = r.names(person)
    last = last.upper()
    if rng.random() < 0.4:
        first = first.upper()
    born = r.birth_date(person)
    birth = "" if rng.random() < 0.12 else f"{born:%d/%m/%Y}"
    if invalid_date:
        birth = "{:02d}/{:02d}/{}".format(*impossible_date(rng, person.birth_date.year))
    street = r.street(address, comma=rng.random() < 0.2)
    upper_address = rng.random() < 0.5
    email = r.email(person.email) if rng.random() < 0.7 else ""
    mobile = r.phone(person.mobile, address.postal_code, ("plain", "spaced", "spaced", "dotted"))
    if rng.random() < 0.25:
        mobile = ""
    landline = person.landline if rng.random() < 0.9 else ""
    return {
        "num_carte": number,
        "civilite": civility_loyalty(rng, person, created),
        "nom": last,
        "prenom": first,
        "nom_jeune_fille": person.maiden_name.upper() if rng.random() < 0.6 else "",
        "date_naissance": birth,
        "adresse_1": address.complement.upper() if upper_address else address.complement,
        "adresse_2": address.building.upper() if upper_address else address.building,
        "adresse_3": street.upper() if upper_address else street,
        "adresse_4": address.special.upper(),
        "code_postal": address.postal_code,
        "ville": upper_city(rng, address.city) if rng.random() < 0.7 else address.city,
        "pays": rng.choices(("FRANCE", "", "FR"), weights=(70, 25, 5))[0],
        "tel_fixe": r.phone(landline, address.postal_code, ("plain", "spaced", "dotted")),
        "tel_portable": mobile,
        "email": email,
        "optin_email": ("O" if rng.random() < 0.55 else "N") if email else rng.choice(("N", "")),
        "optin_sms": ("O" if rng.random() < 0.35 else "N") if mobile else "",
        "date_creation": f"{created:%d/%m/%Y}",
        "magasin": store,
        "solde_points": str(year_cents // 100),
        "ca_cumule": f"{spend_cents // 100},{spend_cents % 100:02d}",
    }


def _case_as_typed(rng: random.Random, text: str, lower: float, upper: float) -> str:
    roll = rng.random()
    return text.lower() if roll < lower else text.upper() if roll < lower + upper else text


def ecommerce_values(
    r: Renderer,
    person: Person,
    *,
    account_id: int,
    email: str,
    created: datetime,
    last_login: datetime,
    invalid_date: bool,
) -> dict[str, Any]:
    """One e-shop account (JSON Lines export of the e-commerce platform)."""
    rng = r.rng
    address = with_old_address(person, created.date())
    first, last = r.names(person)
    first = _case_as_typed(rng, first, 0.05, 0.04)
    last = _case_as_typed(rng, last, 0.05, 0.04)
    born: str | None = None if rng.random() < 0.45 else r.birth_date(person).isoformat()
    if invalid_date:
        day, month, year = impossible_date(rng, person.birth_date.year)
        born = f"{year}-{month:02d}-{day:02d}"
    digits = person.mobile or person.landline
    phone = r.phone(
        digits,
        address.postal_code,
        ("plain", "spaced", "dotted", "dashed", "intl", "intl_plain", "intl_00", "intl_0"),
    )
    line2 = ", ".join(p for p in (address.complement, address.building) if p)
    city = _case_as_typed(rng, address.city, 0.05, 0.1)
    return {
        "account_id": account_id,
        "created_at": created.isoformat(),
        "email": r.email(email),
        "title": None if rng.random() < 0.2 else ("M." if person.gender == "M" else "Mme"),
        "first_name": first,
        "last_name": last,
        "birth_date": born,
        "phone": phone if rng.random() < 0.75 else None,
        "address_line1": r.street(address) or address.special,
        "address_line2": line2 or None,
        "zip_code": address.postal_code,
        "city": city,
        "country": rng.choice(("FR", "FR", "FR", "France")),
        "newsletter": rng.random() < 0.45,
        "sms_optin": None if not person.mobile else rng.random() < 0.25,
        "language": rng.choices(("fr", "fr-FR", "en", "de", "es", "it"), (90, 5, 2, 1, 1, 1))[0],
        "last_login_at": last_login.isoformat(),
    }


def _form_civility(rng: random.Random, person: Person) -> str | None:
    """A web form's civility: skipped by one in five, the wrong button by one in thirty."""
    roll = rng.random()
    if roll < 0.2:
        return None
    if roll < 0.233:
        return rng.choice(("M.", "Mme"))
    return "M." if person.gender == "M" else "Mme"


def contest_values(
    r: Renderer, person: Person, *, entry_id: int, at: datetime, game: str
) -> dict[str, Any]:
    """One contest entry (an Excel sheet exported by the contest agency)."""
    rng = r.rng
    use_maiden = person.maiden_name and rng.random() < 0.15
    first, last = r.names(person, person.maiden_name if use_maiden else None)
    first = _case_as_typed(rng, first, 0.15, 0.10)
    last = _case_as_typed(rng, last, 0.15, 0.15)
    address = with_old_address(person, at.date())
    postal: str | int = address.postal_code
    if rng.random() < 0.3:
        postal = int(address.postal_code)  # Excel turned it into a number
    born = r.birth_date(person) if rng.random() < 0.7 else None
    phone = person.mobile if rng.random() < 0.3 else ""
    return {
        "entry_id": entry_id,
        "date_participation": at,
        "jeu": game,
        "civilite": _form_civility(rng, person),
        "prenom": first if rng.random() < 0.97 else None,
        "nom": last,
        "email": r.email(r.own_email(person)),
        "code_postal": postal if rng.random() < 0.85 else None,
        "date_naissance": born,
        "telephone": r.phone(phone, address.postal_code, ("plain", "spaced", "intl")) or None,
        "optin_email": rng.choice(("Oui", "Non", "Non")),
        "optin_partenaires": rng.choice(("Oui", "Non", "Non", None)),
    }


def b2b_values(r: Renderer, person: Person, *, contact_id: str, updated: date) -> dict[str, Any]:
    """One B2B contact of the TOURNESOL PRO CRM (pipe-separated export)."""
    rng = r.rng
    company = person.company
    assert company is not None
    first, last = r.names(person, person.work_name)
    siret = company.siret
    if rng.random() < 0.02:
        i = rng.randrange(9, 14)
        siret = siret[:i] + str((int(siret[i]) + rng.randint(1, 9)) % 10) + siret[i + 1 :]
    if rng.random() < 0.15:
        siret = f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"
    mobile = person.mobile if rng.random() < 0.3 else ""
    return {
        "contact_id": contact_id,
        "civilite": "M." if person.gender == "M" else "Mme",
        "prenom": first,
        "nom": last.upper() if rng.random() < 0.3 else last,
        "fonction": person.job_title,
        "email": person.pro_email,
        "telephone": r.phone(
            person.pro_phone, company.postal_code, ("spaced", "spaced", "plain", "intl")
        ),
        "mobile": r.phone(mobile, company.postal_code, ("spaced", "plain")),
        "siret": siret,
        "raison_sociale": company.name.upper() if rng.random() < 0.4 else company.name,
        "code_naf": company.naf_code.replace(".", "") if rng.random() < 0.2 else company.naf_code,
        "tranche_effectif": company.headcount_band,
        "classe": company.org_class,
        "cp_etablissement": company.postal_code,
        "ville_etablissement": company.city,
        "date_maj": f"{updated:%d/%m/%Y}",
    }


def caller_names(r: Renderer, person: Person) -> tuple[str, str]:
    """How an agent types a caller's name: last name in capitals, first name often skipped."""
    first, last = r.names(person)
    return ("" if r.rng.random() < 0.2 else first), last.upper() if r.rng.random() < 0.6 else last
