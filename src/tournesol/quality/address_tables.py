"""Reference tables of :mod:`tournesol.quality.addresses` (AFNOR NF Z10-011 postal addresses).

Data only (the rules that use them are in :mod:`tournesol.quality.addresses`); each
table has its source in the comment above it:

- street types and their official abbreviations (``STREET_TYPES``): the AFNOR NF Z10-011 /
  FANTOIR list, as used by La Poste and INSEE; the number suffixes B, T, Q, C for bis, ter,
  quater, quinquies (``SUFFIX_WORDS``): NF Z10-011; how sources write the types
  (``TYPE_VARIANTS``): spellings met in source files;
- abbreviations of common words of street names and localities (``WORD_ABBREVIATIONS``):
  NF Z10-011;
- the first words that put a piece on line 2, 3 or 5 (``COMPLEMENT_WORDS``, ``BUILDING_WORDS``,
  ``SPECIAL_WORDS``): what the standard and La Poste's addressing rules write on those lines;
- countries (``COUNTRIES``): ISO 3166 alpha-2 codes, named in French capitals as the UPU asks
  (the language of the sending country); their aliases and the "no country" values: forms met
  in source files; the letter prefixes of European postal codes ("B-1000", "CH-1200").
"""

from __future__ import annotations

import re
from typing import Final

# --- the street line (4) -----------------------------------------------------------------------

# Street types: full word -> official abbreviation (AFNOR NF Z10-011 / FANTOIR list, as used by
# La Poste and INSEE). The full word is written; the abbreviation only when the line is too long.
STREET_TYPES: Final[dict[str, str]] = {
    "ALLEE": "ALL", "ALLEES": "ALL", "ANCIEN CHEMIN": "ACH", "ANCIENNE ROUTE": "ART",
    "ARCADE": "ARC", "AVENUE": "AV", "BERGE": "BER", "BOULEVARD": "BD", "CARREFOUR": "CAR",
    "CENTRE": "CTRE", "CENTRE COMMERCIAL": "CCAL", "CHAUSSEE": "CHS", "CHEMIN": "CHE",
    "CHEMIN VICINAL": "CHV", "CITE": "CITE", "CLOS": "CLOS", "CORNICHE": "COR", "COTE": "COTE",
    "COUR": "COUR", "COURS": "CRS", "DESCENTE": "DSC", "DOMAINE": "DOM", "ECART": "ECA",
    "ESPLANADE": "ESP", "FAUBOURG": "FG", "GALERIE": "GAL", "GRANDE RUE": "GR", "HALLE": "HLE",
    "HAMEAU": "HAM", "IMPASSE": "IMP", "JARDIN": "JARD", "LOTISSEMENT": "LOT", "MAIL": "MAIL",
    "MARCHE": "MAR", "MONTEE": "MTE", "NOUVELLE ROUTE": "NTE", "PARC": "PARC", "PARVIS": "PRV",
    "PASSAGE": "PAS", "PASSERELLE": "PLE", "PETIT CHEMIN": "PCH", "PETITE AVENUE": "PAE",
    "PETITE ROUTE": "PRT", "PETITE RUE": "PTR", "PLACE": "PL", "PLAINE": "PLN",
    "PLATEAU": "PLT", "PONT": "PONT", "PORT": "PORT", "PORTE": "PTE", "PROMENADE": "PRO",
    "QUAI": "QUAI", "QUARTIER": "QUA", "RESIDENCE": "RES", "ROCADE": "ROC", "ROND POINT": "RPT",
    "ROUTE": "RTE", "RUE": "RUE", "RUELLE": "RLE", "SENTE": "SEN", "SENTIER": "SEN",
    "SQUARE": "SQ", "TERRE PLEIN": "TPL", "TRAVERSE": "TRA", "VILLA": "VLA", "VILLAGE": "VLGE",
    "VOIE": "VOIE", "ZONE": "ZONE", "ZONE ARTISANALE": "ZA",
    "ZONE D AMENAGEMENT CONCERTE": "ZAC", "ZONE D AMENAGEMENT DIFFERE": "ZAD",
    "ZONE INDUSTRIELLE": "ZI",
}  # fmt: skip
# How sources write them (accents and dots already removed) -> the full word. Abbreviations
# that are also common words or names (ARC, ROC, MAR, COR, CAR, GAL...) are recognised only in
# full, so that "12 ARC EN CIEL" is not read as an arcade.
TYPE_VARIANTS: Final[dict[str, str]] = {
    **{full: full for full in STREET_TYPES},
    **{
        variant: full
        for full, variants in {
            "ALLEE": ("ALL", "AL", "ALLE"),
            "AVENUE": ("AV", "AVE", "AVEN", "AVN", "AVNUE"),
            "BOULEVARD": ("BD", "BLD", "BLVD", "BVD", "BOUL", "BOULEV", "BOULVD", "BOULD"),
            "CENTRE COMMERCIAL": ("CCAL", "C CIAL", "CTRE CIAL", "CTRE COMMERCIAL"),
            "CHAUSSEE": ("CHS", "CHAUS"),
            "CHEMIN": ("CH", "CHE", "CHEM", "CHMN", "CHM"),
            "CHEMIN VICINAL": ("CHV",),
            "CITE": ("CIT",),
            "COURS": ("CRS",),
            "DOMAINE": ("DOM", "DNE"),
            "ESPLANADE": ("ESP", "ESPL"),
            "FAUBOURG": ("FG", "FBG", "FAUB", "FBOURG"),
            "GRANDE RUE": ("GDE RUE", "GD RUE", "GR RUE"),
            "HAMEAU": ("HAM",),
            "IMPASSE": ("IMP", "IMPA", "IMPAS"),
            "LOTISSEMENT": ("LOT", "LOTISS", "LOTIS", "LOTIST"),
            "MONTEE": ("MTE",),
            "PASSAGE": ("PASS", "PSG", "PAS"),
            "PLACE": ("PL", "PCE", "PLC"),
            "PLAINE": ("PLN",),
            "PLATEAU": ("PLT",),
            "PROMENADE": ("PROM",),
            "QUAI": ("Q", "QU", "QAI"),
            "QUARTIER": ("QUA", "QRT", "QUART", "QTR"),
            "RESIDENCE": ("RES", "RESID", "RESI", "RSD"),
            "ROND POINT": ("RPT", "RD PT", "RDPT", "ROND PT"),
            "ROUTE": ("RTE", "RT"),
            "RUE": ("R",),
            "RUELLE": ("RLE",),
            "SENTIER": ("SEN", "SENT", "STIER"),
            "SQUARE": ("SQ", "SQR"),
            "TERRE PLEIN": ("TPL",),
            "TRAVERSE": ("TRAV",),
            "VILLA": ("VLA",),
            "VILLAGE": ("VLGE",),
            "ZONE ARTISANALE": ("ZA", "Z A"),
            "ZONE D AMENAGEMENT CONCERTE": ("ZAC", "Z A C"),
            "ZONE INDUSTRIELLE": ("ZI", "Z I"),
        }.items()
        for variant in variants
    },
}
TYPE_FIRST_WORDS: Final = frozenset(v.split()[0] for v in TYPE_VARIANTS)
# Single-letter variants are street types only after a number or before an article.
ONE_LETTER_TYPES: Final = frozenset(v for v in TYPE_VARIANTS if len(v) == 1)
ARTICLES: Final = frozenset(
    ("DE", "DU", "DES", "D", "LA", "LE", "LES", "L", "A", "AU", "AUX", "SAINT", "SAINTE", "ST",
     "STE")
)  # fmt: skip
# Types that name an area rather than a street: line 3 when a street line exists, else line 4.
AREA_TYPES: Final = frozenset(
    (
        "CENTRE COMMERCIAL", "CITE", "CLOS", "DOMAINE", "HAMEAU", "LOTISSEMENT", "PARC",
        "QUARTIER", "RESIDENCE", "VILLAGE", "ZONE", "ZONE ARTISANALE",
        "ZONE D AMENAGEMENT CONCERTE", "ZONE D AMENAGEMENT DIFFERE", "ZONE INDUSTRIELLE",
    )
)  # fmt: skip
# Number suffixes: bis, ter, quater, quinquies -> B, T, Q, C (NF Z10-011).
SUFFIX_WORDS: Final = {"BIS": "B", "TER": "T", "QUATER": "Q", "QUINQUIES": "C", "QUINQUIS": "C"}

# --- common words ------------------------------------------------------------------------------

# Common words of street names and localities -> the standard's abbreviation, used (after the
# street type) only when a line is still too long. Sources' abbreviations are written in full.
WORD_ABBREVIATIONS: Final[dict[str, str]] = {
    "SAINT": "ST", "SAINTE": "STE", "GENERAL": "GAL", "MARECHAL": "MAL", "DOCTEUR": "DR",
    "PRESIDENT": "PDT", "PROFESSEUR": "PROF", "COMMANDANT": "CDT", "CAPITAINE": "CNE",
    "LIEUTENANT": "LT", "ADJUDANT": "ADJ", "SERGENT": "SGT", "MONSEIGNEUR": "MGR",
    "NOTRE DAME": "ND", "GRAND": "GD", "GRANDE": "GDE", "PROLONGEE": "PROL", "ANCIEN": "ANC",
}  # fmt: skip
WORD_EXPANSIONS: Final = {abbr: full for full, abbr in WORD_ABBREVIATIONS.items()}

# --- lines 2, 3 and 5 --------------------------------------------------------------------------

# Lines 2 and 3 (kept as given) are shortened with these when longer than 38 characters.
LIGHT_ABBREVIATIONS: Final = (
    (re.compile(r"\bappartement\b", re.I), "APPT"),
    (re.compile(r"\bb[aâ]timent\b", re.I), "BAT"),
    (re.compile(r"\br[ée]sidence\b", re.I), "RES"),
    (re.compile(r"\bescalier\b", re.I), "ESC"),
    (re.compile(r"\bimmeuble\b", re.I), "IMM"),
    (re.compile(r"\bentr[ée]e\b", re.I), "ENT"),
)
# First words of a piece that goes on line 2 (inside the building: apartment, floor,
# staircase, "chez", c/o, a department)...
COMPLEMENT_WORDS: Final = re.compile(
    r"^(?:APPTS?|APT|APPART|APPARTEMENTS?|APP|LOGT|LOGEMENT|LOG|ETAGE|ETG|ESC|ESCALIER|CHEZ|"
    r"C O|PORTE (?:N )?\d|PORTE [A-Z]$|CHAMBRE|CH \d|BAL|BOITE AUX LETTRES|RDC|REZ DE CHAUSSEE|"
    r"CELLULE|BUREAU|A L ATTENTION|ATTN|SERVICE|DEPARTEMENT|"
    r"\d{1,3} ?(?:E|EME|ER|ERE|ND|NDE) (?:ETAGE|ETG)|\d{1,3} ?(?:E|EME|ER|ERE) ?ETAGE|"
    r"\d{1,3}(?:E|EME|ER|ERE)$)(?:\s|$)"
)
# ... on line 3 (outside the building: building, entrance, residence)...
BUILDING_WORDS: Final = re.compile(
    r"^(?:BAT|BATIMENTS?|BLOC|ENTREE|RESIDENCES?|RESID|RES|IMMEUBLE|IMM|TOUR|PAVILLON)(?:\s|$)"
)
# ... on line 5 (special delivery mentions and lieu-dit).
SPECIAL_WORDS: Final = re.compile(
    r"^(?:(?:B ?P|BOITE POSTALE|CS|TSA|CIDEX)\s*\d|(?:LIEU ?DIT|LD|L D|POSTE RESTANTE)(?:\s|$))"
)
# Line 5: the sources' ways of writing BP and LIEU DIT.
SPECIAL_FORMS: Final = (
    (re.compile(r"^B P\b"), "BP"),
    (re.compile(r"^BOITE POSTALE\b"), "BP"),
    (re.compile(r"^(?:LIEUDIT|L D|LD)\b"), "LIEU DIT"),
)

# --- countries ---------------------------------------------------------------------------------

# ISO 3166 alpha-2 -> the country line in French capitals (UPU: the country name in the
# language of the sending country). French overseas codes are domestic (no country line).
COUNTRIES: Final[dict[str, str]] = {
    "AD": "ANDORRE", "AE": "EMIRATS ARABES UNIS", "AR": "ARGENTINE", "AT": "AUTRICHE",
    "AU": "AUSTRALIE", "BE": "BELGIQUE", "BF": "BURKINA FASO", "BG": "BULGARIE", "BJ": "BENIN",
    "BR": "BRESIL", "CA": "CANADA", "CD": "REPUBLIQUE DEMOCRATIQUE DU CONGO",
    "CG": "CONGO", "CH": "SUISSE", "CI": "COTE D IVOIRE", "CL": "CHILI", "CM": "CAMEROUN",
    "CN": "CHINE", "CO": "COLOMBIE", "CY": "CHYPRE", "CZ": "TCHEQUIE", "DE": "ALLEMAGNE",
    "DK": "DANEMARK", "DZ": "ALGERIE", "EE": "ESTONIE", "EG": "EGYPTE", "ES": "ESPAGNE",
    "FI": "FINLANDE", "GA": "GABON", "GB": "ROYAUME UNI", "GN": "GUINEE", "GR": "GRECE",
    "HR": "CROATIE", "HT": "HAITI", "HU": "HONGRIE", "IE": "IRLANDE", "IL": "ISRAEL",
    "IN": "INDE", "IS": "ISLANDE", "IT": "ITALIE", "JP": "JAPON", "KR": "COREE DU SUD",
    "LB": "LIBAN", "LI": "LIECHTENSTEIN", "LT": "LITUANIE", "LU": "LUXEMBOURG",
    "LV": "LETTONIE", "MA": "MAROC", "MC": "MONACO", "MG": "MADAGASCAR", "ML": "MALI",
    "MT": "MALTE", "MU": "MAURICE", "MX": "MEXIQUE", "NE": "NIGER", "NL": "PAYS BAS",
    "NO": "NORVEGE", "NZ": "NOUVELLE ZELANDE", "PE": "PEROU", "PL": "POLOGNE",
    "PT": "PORTUGAL", "RO": "ROUMANIE", "RS": "SERBIE", "RU": "RUSSIE", "SE": "SUEDE",
    "SG": "SINGAPOUR", "SI": "SLOVENIE", "SK": "SLOVAQUIE", "SM": "SAINT MARIN",
    "SN": "SENEGAL", "TD": "TCHAD", "TG": "TOGO", "TH": "THAILANDE", "TN": "TUNISIE",
    "TR": "TURQUIE", "UA": "UKRAINE", "US": "ETATS UNIS", "VA": "VATICAN", "VN": "VIET NAM",
    "ZA": "AFRIQUE DU SUD",
}  # fmt: skip
FRENCH_TERRITORIES: Final = frozenset(
    ["FR", "FX", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF", "NC", "PF", "WF", "TF"]
)  # fmt: skip
COUNTRY_ALIASES: Final[dict[str, str]] = {
    **{name: iso for iso, name in COUNTRIES.items()},
    **{
        alias: iso
        for iso, aliases in {
            "FR": ("FRANCE", "FRA", "FRANCE METROPOLITAINE", "REPUBLIQUE FRANCAISE", "CORSE"),
            "GP": ("GUADELOUPE",),
            "MQ": ("MARTINIQUE",),
            "GF": ("GUYANE", "GUYANE FRANCAISE"),
            "RE": ("REUNION", "LA REUNION", "ILE DE LA REUNION"),
            "YT": ("MAYOTTE",),
            "PM": ("SAINT PIERRE ET MIQUELON",),
            "BL": ("SAINT BARTHELEMY",),
            "MF": ("SAINT MARTIN",),
            "NC": ("NOUVELLE CALEDONIE",),
            "PF": ("POLYNESIE FRANCAISE", "POLYNESIE", "TAHITI"),
            "WF": ("WALLIS ET FUTUNA",),
            "MC": ("MCO", "PRINCIPAUTE DE MONACO"),
            "BE": ("BEL", "BELGIUM", "BELGIE", "BELGIEN"),
            "DE": ("DEU", "GERMANY", "DEUTSCHLAND"),
            "CH": ("CHE", "SWITZERLAND", "SCHWEIZ", "SVIZZERA"),
            "LU": ("LUX",),
            "IT": ("ITA", "ITALY", "ITALIA"),
            "ES": ("ESP", "SPAIN", "ESPANA"),
            "PT": ("PRT",),
            "GB": ("GBR", "UK", "UNITED KINGDOM", "ANGLETERRE", "GRANDE BRETAGNE", "ENGLAND"),
            "IE": ("IRL", "IRELAND"),
            "NL": ("NLD", "NETHERLANDS", "HOLLANDE", "NEDERLAND"),
            "AT": ("AUT", "AUSTRIA", "OSTERREICH"),
            "US": ("USA", "UNITED STATES", "ETATS UNIS D AMERIQUE", "AMERIQUE"),
            "CA": ("CAN",),
            "DZ": ("DZA",),
            "MA": ("MAR", "MOROCCO"),
            "TN": ("TUN", "TUNISIA"),
            "SE": ("SWEDEN",),
            "DK": ("DENMARK",),
            "NO": ("NORWAY",),
            "PL": ("POLAND",),
            "GR": ("GREECE",),
            "CZ": ("REPUBLIQUE TCHEQUE", "CZECH REPUBLIC", "CZECHIA"),
            "CN": ("CHINA",),
            "JP": ("JAPAN",),
            "BR": ("BRAZIL",),
            "SN": ("SENEGAL",),
            "CI": ("IVORY COAST",),
            "MU": ("ILE MAURICE", "MAURITIUS"),
        }.items()
        for alias in aliases
    },
}
# What sources write for "no country" (read as blank, so France).
NO_COUNTRY: Final = frozenset(
    ("", "N A", "NA", "NULL", "NONE", "NON", "INCONNU", "UNKNOWN", "NON RENSEIGNE", "XX", "ZZ")
)
# Letter prefixes of European postal codes ("B-1000", "CH-1200") -> ISO code.
POSTAL_PREFIXES: Final = {
    "F": "FR", "FR": "FR", "B": "BE", "D": "DE", "CH": "CH", "L": "LU", "I": "IT", "E": "ES",
    "NL": "NL", "A": "AT", "P": "PT", "MC": "MC",
}  # fmt: skip
