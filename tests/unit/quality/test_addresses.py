"""French postal addresses to AFNOR NF Z10-011 lines (quality.addresses).

The expected lines follow NF Z10-011 and La Poste's published addressing rules: at most six
lines of 38 characters, lines 4 to 6 in capitals without accents or punctuation, street types
in full unless the line is too long, number suffixes B/T/Q, line 6 = postal code + routing label.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality import addresses
from tournesol.quality.addresses import MAX_LINE, STREET_TYPES, normalize_address
from tournesol.quality.base import Severity

FIXED = {f.code for f in addresses.FLAGS if f.severity is Severity.FIXED}
DECLARED = {f.code for f in addresses.FLAGS}


# fmt: off
LINES: list[tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [
    # street types as sources write them -> the full word (NF Z10-011: abbreviate only when
    # the line would exceed 38 characters; La Poste: AVENUE DES FLEURS is not AV DES FLEURS)
    (dict(street="12 av. Victor Hugo", postal_code="75116", city="Paris"), ("12 AVENUE VICTOR HUGO", "75116 PARIS"), ()),
    (dict(street="12 ave Victor Hugo", postal_code="75116", city="PARIS"), ("12 AVENUE VICTOR HUGO", "75116 PARIS"), ()),
    (dict(street="3 bd Gambetta", postal_code="59000", city="Lille"), ("3 BOULEVARD GAMBETTA", "59000 LILLE"), ()),
    (dict(street="3 bld Gambetta", postal_code="59000", city="LILLE"), ("3 BOULEVARD GAMBETTA", "59000 LILLE"), ()),
    (dict(street="3 Bd Gambetta", postal_code="59000", city="lille"), ("3 BOULEVARD GAMBETTA", "59000 LILLE"), ()),
    (dict(street="8 r. de la Gare", postal_code="67000", city="Strasbourg"), ("8 RUE DE LA GARE", "67000 STRASBOURG"), ()),
    (dict(street="8 R de la Gare", postal_code="67000", city="STRASBOURG"), ("8 RUE DE LA GARE", "67000 STRASBOURG"), ()),
    (dict(street="5 chem. des Vignes", postal_code="33000", city="Bordeaux"), ("5 CHEMIN DES VIGNES", "33000 BORDEAUX"), ()),
    (dict(street="5 ch. des Vignes", postal_code="33000", city="Bordeaux"), ("5 CHEMIN DES VIGNES", "33000 BORDEAUX"), ()),
    (dict(street="5 che des Vignes", postal_code="33000", city="Bordeaux"), ("5 CHEMIN DES VIGNES", "33000 BORDEAUX"), ()),
    (dict(street="7 imp. du Moulin", postal_code="35000", city="Rennes"), ("7 IMPASSE DU MOULIN", "35000 RENNES"), ()),
    (dict(street="7 all. des Tilleuls", postal_code="44000", city="Nantes"), ("7 ALLEE DES TILLEULS", "44000 NANTES"), ()),
    (dict(street="7 allee des Tilleuls", postal_code="44000", city="Nantes"), ("7 ALLEE DES TILLEULS", "44000 NANTES"), ()),
    (dict(street="14 rte de Lyon", postal_code="38000", city="Grenoble"), ("14 ROUTE DE LYON", "38000 GRENOBLE"), ()),
    (dict(street="14 rte. de Lyon", postal_code="38000", city="Grenoble"), ("14 ROUTE DE LYON", "38000 GRENOBLE"), ()),
    (dict(street="2 pl. de la Mairie", postal_code="21000", city="Dijon"), ("2 PLACE DE LA MAIRIE", "21000 DIJON"), ()),
    (dict(street="2 pl de la Mairie", postal_code="21000", city="Dijon"), ("2 PLACE DE LA MAIRIE", "21000 DIJON"), ()),
    (dict(street="9 q. des Orfèvres", postal_code="75001", city="Paris"), ("9 QUAI DES ORFEVRES", "75001 PARIS"), ()),
    (dict(street="9 qu. des Orfèvres", postal_code="75001", city="Paris"), ("9 QUAI DES ORFEVRES", "75001 PARIS"), ()),
    (dict(street="14 crs Mirabeau", postal_code="13100", city="Aix-en-Provence"), ("14 COURS MIRABEAU", "13100 AIX EN PROVENCE"), ()),
    (dict(street="1 sq. Jean Moulin", postal_code="87000", city="Limoges"), ("1 SQUARE JEAN MOULIN", "87000 LIMOGES"), ()),
    (dict(street="22 fbg Saint-Honoré", postal_code="75008", city="Paris"), ("22 FAUBOURG SAINT HONORE", "75008 PARIS"), ()),
    (dict(street="22 fg St Honoré", postal_code="75008", city="Paris"), ("22 FAUBOURG SAINT HONORE", "75008 PARIS"), ()),
    (dict(street="3 rés. Les Tilleuls", postal_code="83000", city="Toulon"), ("3 RESIDENCE LES TILLEULS", "83000 TOULON"), ()),
    (dict(street="1 lot. Les Prés", postal_code="46500", city="Rocamadour"), ("1 LOTISSEMENT LES PRES", "46500 ROCAMADOUR"), ()),
    (dict(street="4 zi des Granges", postal_code="38000", city="Grenoble"), ("4 ZONE INDUSTRIELLE DES GRANGES", "38000 GRENOBLE"), ()),
    (dict(street="4 zac du Moulin", postal_code="38000", city="Grenoble"), ("4 ZAC DU MOULIN", "38000 GRENOBLE"), ("ADDRESS_ABBREVIATED",)),
    (dict(street="2 ham. de la Croix", postal_code="46500", city="Rocamadour"), ("2 HAMEAU DE LA CROIX", "46500 ROCAMADOUR"), ()),
    (dict(street="6 pass. du Commerce", postal_code="69001", city="Lyon"), ("6 PASSAGE DU COMMERCE", "69001 LYON"), ()),
    (dict(street="6 sen. des Prés", postal_code="29180", city="Locronan"), ("6 SENTIER DES PRES", "29180 LOCRONAN"), ()),
    # number + suffix: B, T, Q for bis, ter, quater (La Poste, line 4); a range is kept
    # (flagged: La Poste asks for the first number only); N° dropped; "12, rue" and "rue, 12"
    (dict(street="12 bis rue Pasteur", postal_code="69001", city="Lyon"), ("12 B RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12bis rue Pasteur", postal_code="69001", city="Lyon"), ("12 B RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12 B rue Pasteur", postal_code="69001", city="Lyon"), ("12 B RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12 ter rue Pasteur", postal_code="69001", city="Lyon"), ("12 T RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12T rue Pasteur", postal_code="69001", city="Lyon"), ("12 T RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12 quater rue Pasteur", postal_code="69001", city="Lyon"), ("12 Q RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12-14 rue Pasteur", postal_code="69001", city="Lyon"), ("12-14 RUE PASTEUR", "69001 LYON"), ("ADDRESS_NUMBER_RANGE",)),
    (dict(street="N° 12 rue Pasteur", postal_code="69001", city="Lyon"), ("12 RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="12, rue Pasteur", postal_code="69001", city="Lyon"), ("12 RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="Rue Pasteur, 12", postal_code="69001", city="Lyon"), ("12 RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="Rue Pasteur", postal_code="69001", city="Lyon"), ("RUE PASTEUR", "69001 LYON"), ()),
    # lines 4-6: capitals, no accents, no punctuation; sources' abbreviations written in full
    (dict(street="2 rue de l'Église", postal_code="88000", city="Épinal"), ("2 RUE DE L EGLISE", "88000 EPINAL"), ()),
    (dict(street="10 avenue du Maréchal Foch", postal_code="06000", city="Nice"), ("10 AVENUE DU MARECHAL FOCH", "06000 NICE"), ()),
    (dict(street="10 av du Gal de Gaulle", postal_code="06000", city="NICE"), ("10 AVENUE DU GENERAL DE GAULLE", "06000 NICE"), ()),
    (dict(street="1 place Notre-Dame", postal_code="38000", city="Grenoble"), ("1 PLACE NOTRE DAME", "38000 GRENOBLE"), ()),
    # > 38 characters: street type abbreviated first, then common words (GENERAL -> GAL...),
    # never truncated: still too long -> ADDRESS_LINE_TOO_LONG
    (dict(street="128 boulevard du Général Charles de Gaulle", postal_code="92380", city="Garches"), ("128 BD DU GENERAL CHARLES DE GAULLE", "92380 GARCHES"), ("ADDRESS_ABBREVIATED",)),
    (dict(street="12 avenue du Maréchal de Lattre de Tassigny", postal_code="94000", city="Créteil"), ("12 AV DU MAL DE LATTRE DE TASSIGNY", "94000 CRETEIL"), ("ADDRESS_ABBREVIATED",)),
    (dict(street="12 rue du Général de Gaulle prolongée et du Maréchal Leclerc", postal_code="75011", city="Paris"), ("12 RUE DU GAL DE GAULLE PROL ET DU MAL LECLERC", "75011 PARIS"), ("ADDRESS_ABBREVIATED", "ADDRESS_LINE_TOO_LONG")),
    # lines moved by their keywords (line 2: APPT, ETAGE, CHEZ, C/O, ESCALIER; line 3: BAT,
    # ENTREE, RESIDENCE, TOUR; line 5: BP, CS, TSA, LIEU DIT; line 4: number + street type);
    # lines 2-3 are kept as written (the standard imposes nothing on lines 1 to 3)
    (dict(complement="3 rue Pasteur", postal_code="69001", city="Lyon"), ("3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="Appt 12, 3 rue Pasteur", postal_code="69001", city="Lyon"), ("Appt 12", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="3 rue Pasteur Appt 12", postal_code="69001", city="Lyon"), ("Appt 12", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="Bât B 3 rue Pasteur", postal_code="69001", city="Lyon"), ("Bât B", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(complement="Résidence du Parc", building="Appt 12", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("Appt 12", "Résidence du Parc", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(complement="Appt 12, Résidence du Parc", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("Appt 12", "Résidence du Parc", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="Lieu-dit Les Granges", postal_code="46500", city="Rocamadour"), ("LIEU DIT LES GRANGES", "46500 ROCAMADOUR"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="BP 45", postal_code="46500", city="Rocamadour"), ("BP 45", "46500 ROCAMADOUR"), ("ADDRESS_RESTRUCTURED",)),
    (dict(special="Lieu dit Le Bourg", postal_code="46500", city="Rocamadour"), ("LIEU DIT LE BOURG", "46500 ROCAMADOUR"), ()),
    (dict(building="Chez Mme Martin", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("Chez Mme Martin", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_RESTRUCTURED",)),
    (dict(complement="c/o M. Durand", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("c/o M. Durand", "3 RUE PASTEUR", "69001 LYON"), ()),
    (dict(complement="3e étage", building="Bâtiment A", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("3e étage", "Bâtiment A", "3 RUE PASTEUR", "69001 LYON"), ()),
    (dict(complement="Escalier B", building="Entrée 2", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("Escalier B", "Entrée 2", "3 RUE PASTEUR", "69001 LYON"), ()),
    (dict(building="Tour Montparnasse", street="33 avenue du Maine", postal_code="75015", city="Paris"), ("Tour Montparnasse", "33 AVENUE DU MAINE", "75015 PARIS"), ()),
    (dict(street="Résidence Les Pins", postal_code="83000", city="Toulon"), ("RESIDENCE LES PINS", "83000 TOULON"), ()),
    # free text: split on line breaks and commas, postal code + city taken from the end
    (dict(free_text="12 bis av. de la République, Bât B, 75011 Paris"), ("Bât B", "12 B AVENUE DE LA REPUBLIQUE", "75011 PARIS"), ("ADDRESS_PARSED",)),
    (dict(free_text="Appt 12\n3 rue de la Paix\n75002 PARIS"), ("Appt 12", "3 RUE DE LA PAIX", "75002 PARIS"), ("ADDRESS_PARSED",)),
    (dict(free_text="3 rue de la Paix 75002 Paris"), ("3 RUE DE LA PAIX", "75002 PARIS"), ("ADDRESS_PARSED",)),
    (dict(free_text="3 rue de la Paix, Paris 75002"), ("3 RUE DE LA PAIX", "75002 PARIS"), ("ADDRESS_PARSED",)),
    (dict(free_text="3 rue de la Paix, 75002, Paris, France"), ("3 RUE DE LA PAIX", "75002 PARIS"), ("ADDRESS_PARSED",)),
    (dict(free_text="Le Clos Fleuri, 3 rue du Lavoir, Les Granges, 46500 Rocamadour"), ("Le Clos Fleuri", "3 RUE DU LAVOIR", "LES GRANGES", "46500 ROCAMADOUR"), ("ADDRESS_PARSED",)),
    (dict(free_text="Lieu-dit Le Bourg\n1000 Bourg-en-Bresse"), ("LIEU DIT LE BOURG", "01000 BOURG EN BRESSE"), ("ADDRESS_PARSED", "POSTCODE_FIXED")),
    # postal code repaired (lost zero, spaces, F- prefix, Excel decimal) and checked against
    # the reference; the city matched by key (ST = SAINT), by routing label, by arrondissement,
    # corrected when one typo away from the only close commune, else a mismatch
    (dict(street="3 rue Pasteur", postal_code="1000", city="Bourg-en-Bresse"), ("3 RUE PASTEUR", "01000 BOURG EN BRESSE"), ("POSTCODE_FIXED",)),
    (dict(street="3 rue Pasteur", postal_code="1000.0", city="BOURG EN BRESSE"), ("3 RUE PASTEUR", "01000 BOURG EN BRESSE"), ("POSTCODE_FIXED",)),
    (dict(street="3 rue Pasteur", postal_code="75 002", city="Paris"), ("3 RUE PASTEUR", "75002 PARIS"), ("POSTCODE_FIXED",)),
    (dict(street="3 rue Pasteur", postal_code="F-75002", city="Paris"), ("3 RUE PASTEUR", "75002 PARIS"), ("POSTCODE_FIXED",)),
    (dict(street="3 rue Pasteur", postal_code="75002 Paris"), ("3 RUE PASTEUR", "75002 PARIS"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="3 rue Pasteur", city="75002 Paris"), ("3 RUE PASTEUR", "75002 PARIS"), ("ADDRESS_RESTRUCTURED",)),
    (dict(street="3 rue Pasteur", postal_code="75099", city="Paris"), ("3 RUE PASTEUR", "75099 PARIS"), ("ADDRESS_UNKNOWN_POSTCODE",)),
    (dict(street="3 rue Pasteur", postal_code="7500", city="Paris"), ("3 RUE PASTEUR", "07500 PARIS"), ("POSTCODE_FIXED", "POSTCODE_CITY_MISMATCH")),
    (dict(street="3 rue Pasteur", postal_code="ABC", city="Paris"), ("3 RUE PASTEUR", "PARIS"), ("POSTCODE_INVALID", "POSTCODE_MISSING")),
    (dict(street="3 rue Pasteur", postal_code="75002", city="Lyon"), ("3 RUE PASTEUR", "75002 LYON"), ("POSTCODE_CITY_MISMATCH",)),
    (dict(street="3 rue Pasteur", postal_code="42000", city="ST ETIENNE"), ("3 RUE PASTEUR", "42000 SAINT ETIENNE"), ()),
    (dict(street="3 rue Pasteur", postal_code="42000", city="Saint-Étienne"), ("3 RUE PASTEUR", "42000 SAINT ETIENNE"), ()),
    (dict(street="3 rue Pasteur", postal_code="42000", city="ST ETIENE"), ("3 RUE PASTEUR", "42000 SAINT ETIENNE"), ("CITY_FIXED",)),
    (dict(street="3 rue Pasteur", postal_code="88000", city="Epinall"), ("3 RUE PASTEUR", "88000 EPINAL"), ("CITY_FIXED",)),
    (dict(street="3 rue Pasteur", postal_code="75011", city="Paris 11e"), ("3 RUE PASTEUR", "75011 PARIS"), ()),
    (dict(street="3 rue Pasteur", postal_code="13008", city="Marseille 8ème"), ("3 RUE PASTEUR", "13008 MARSEILLE"), ()),
    (dict(street="3 rue Pasteur", postal_code="13080", city="Luynes"), ("3 RUE PASTEUR", "13080 LUYNES"), ()),
    (dict(street="3 rue Pasteur", postal_code="13080", city="Aix-en-Provence"), ("3 RUE PASTEUR", "13080 LUYNES"), ()),
    (dict(street="3 rue Pasteur", postal_code="13290", city="Les Milles"), ("3 RUE PASTEUR", "13290 LES MILLES"), ()),
    (dict(street="3 rue Pasteur", city="Gex"), ("3 RUE PASTEUR", "01170 GEX"), ("POSTCODE_INFERRED",)),
    (dict(street="3 rue Pasteur", city="Lyon"), ("3 RUE PASTEUR", "LYON"), ("POSTCODE_MISSING",)),
    (dict(street="3 rue Pasteur", postal_code="01170"), ("3 RUE PASTEUR", "01170"), ("CITY_MISSING",)),
    (dict(street="3 rue Pasteur", postal_code="20000"), ("3 RUE PASTEUR", "20000"), ("CITY_MISSING",)),
    (dict(street="3 rue Pasteur"), ("3 RUE PASTEUR",), ("ADDRESS_INCOMPLETE",)),
    (dict(postal_code="69001", city="Lyon"), ("69001 LYON",), ("ADDRESS_NO_STREET",)),
    # CEDEX codes are not in the reference: checked by department, flagged as a fact
    (dict(special="BP 123", postal_code="13617", city="Aix-en-Provence Cedex 1"), ("BP 123", "13617 AIX EN PROVENCE CEDEX 1"), ("ADDRESS_CEDEX",)),
    (dict(special="CS 30001", postal_code="69441", city="LYON CEDEX 03"), ("CS 30001", "69441 LYON CEDEX 03"), ("ADDRESS_CEDEX",)),
    (dict(special="TSA 70011", postal_code="75901", city="Paris Cedex 15"), ("TSA 70011", "75901 PARIS CEDEX 15"), ("ADDRESS_CEDEX",)),
    (dict(special="BP 12", postal_code="13617 CEDEX", city="Aix en Provence"), ("BP 12", "13617 AIX EN PROVENCE CEDEX"), ("ADDRESS_CEDEX",)),
    (dict(special="BP 12", postal_code="13999", city="Lille Cedex"), ("BP 12", "13999 LILLE CEDEX"), ("POSTCODE_CITY_MISMATCH", "ADDRESS_CEDEX")),
    # Corsica (INSEE 2A/2B), overseas departments (domestic, no country line), Monaco (line 6
    # the French way, then the country line)
    (dict(street="10 rue de la Gare", postal_code="20000", city="Ajaccio"), ("10 RUE DE LA GARE", "20000 AJACCIO"), ()),
    (dict(street="10 bd Paoli", postal_code="20200", city="Bastia"), ("10 BOULEVARD PAOLI", "20200 BASTIA"), ()),
    (dict(street="10 rue de Paris", postal_code="97400", city="St Denis"), ("10 RUE DE PARIS", "97400 SAINT DENIS"), ()),
    (dict(street="10 rue Schoelcher", postal_code="97200", city="Fort-de-France", country="Martinique"), ("10 RUE SCHOELCHER", "97200 FORT DE FRANCE"), ()),
    (dict(street="10 rue Frébault", postal_code="97110", city="Pointe-à-Pitre"), ("10 RUE FREBAULT", "97110 POINTE A PITRE"), ()),
    (dict(street="10 rue X", postal_code="97600", city="Mamoudzou"), ("10 RUE X", "97600 MAMOUDZOU"), ()),
    (dict(street="10 rue X", postal_code="97300", city="Cayenne"), ("10 RUE X", "97300 CAYENNE"), ()),
    (dict(street="10 rue X", postal_code="97500", city="Saint-Pierre"), ("10 RUE X", "97500 SAINT PIERRE"), ()),
    (dict(street="10 rue X", postal_code="98800", city="Nouméa"), ("10 RUE X", "98800 NOUMEA"), ("ADDRESS_POSTCODE_UNCHECKED",)),
    (dict(street="10 boulevard Princesse Charlotte", postal_code="98000", city="Monaco"), ("10 BOULEVARD PRINCESSE CHARLOTTE", "98000 MONACO", "MONACO"), ()),
    (dict(street="10 boulevard Princesse Charlotte", postal_code="98000", city="MONACO", country="France"), ("10 BOULEVARD PRINCESSE CHARLOTTE", "98000 MONACO", "MONACO"), ("COUNTRY_FIXED",)),
    (dict(street="10 boulevard Princesse Charlotte", city="Monaco", country="MC"), ("10 BOULEVARD PRINCESSE CHARLOTTE", "98000 MONACO", "MONACO"), ("POSTCODE_INFERRED",)),
    # foreign: lines kept as given (cleaned), locality line, country in French capitals
    (dict(street="Rue de la Loi 16", postal_code="1000", city="Bruxelles", country="Belgique"), ("Rue de la Loi 16", "1000 Bruxelles", "BELGIQUE"), ("ADDRESS_FOREIGN",)),
    (dict(street="Hauptstraße 5", postal_code="10115", city="Berlin", country="DE"), ("Hauptstraße 5", "10115 Berlin", "ALLEMAGNE"), ("ADDRESS_FOREIGN",)),
    (dict(street="Via Roma 1", postal_code="00184", city="Roma", country="Italie"), ("Via Roma 1", "00184 Roma", "ITALIE"), ("ADDRESS_FOREIGN",)),
    (dict(street="10 Downing Street", postal_code="SW1A 2AA", city="London", country="United Kingdom"), ("10 Downing Street", "SW1A 2AA London", "ROYAUME UNI"), ("ADDRESS_FOREIGN",)),
    (dict(street="Rue du Rhône 1", postal_code="CH-1204", city="Genève"), ("Rue du Rhône 1", "CH-1204 Genève", "SUISSE"), ("ADDRESS_FOREIGN",)),
    (dict(free_text="Rue de la Loi 16\n1000 Bruxelles\nBelgique"), ("Rue de la Loi 16", "1000 Bruxelles", "BELGIQUE"), ("ADDRESS_FOREIGN", "ADDRESS_PARSED")),
    (dict(street="1 Main St", postal_code="12345", city="Springfield", country="Narnia"), ("1 Main St", "12345 Springfield", "NARNIA"), ("ADDRESS_FOREIGN", "ADDRESS_COUNTRY_UNKNOWN")),
    (dict(street="3 rue Pasteur", postal_code="69001", city="Lyon", country="n/a"), ("3 RUE PASTEUR", "69001 LYON"), ()),
    (dict(street="3 rue Pasteur", postal_code="69001", city="Lyon", country="FRANCE"), ("3 RUE PASTEUR", "69001 LYON"), ()),
    # line 1 kept as given (spaces cleaned); lines 1-3 shortened only with APPT, BAT, RES...
    (dict(identity="  Mme   Jeanne  DUPONT ", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("Mme Jeanne DUPONT", "3 RUE PASTEUR", "69001 LYON"), ()),
    (dict(identity="SARL Les Établissements Martin et Fils Réunis", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("SARL Les Établissements Martin et Fils Réunis", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_LINE_TOO_LONG",)),
    (dict(building="Immeuble Le Central - Bâtiment administratif Nord", street="3 rue Pasteur", postal_code="69001", city="Lyon"), ("IMM Le Central - BAT administratif Nord", "3 RUE PASTEUR", "69001 LYON"), ("ADDRESS_ABBREVIATED", "ADDRESS_LINE_TOO_LONG")),

]
# fmt: on


@pytest.mark.parametrize(("given_", "lines", "flags"), LINES)
def test_lines(given_: dict[str, Any], lines: tuple[str, ...], flags: tuple[str, ...]) -> None:
    result = normalize_address(**given_)
    assert result.lines == lines
    assert result.flags == flags
    assert set(result.flags) <= DECLARED


@pytest.mark.parametrize(
    ("street", "number", "suffix", "street_type", "name"),
    [
        ("12 bis av. de la République", "12", "B", "AVENUE", "DE LA REPUBLIQUE"),
        ("12bis avenue de la République", "12", "B", "AVENUE", "DE LA REPUBLIQUE"),
        ("12 B avenue de la République", "12", "B", "AVENUE", "DE LA REPUBLIQUE"),
        ("7 ter bd Voltaire", "7", "T", "BOULEVARD", "VOLTAIRE"),
        ("7T bd Voltaire", "7", "T", "BOULEVARD", "VOLTAIRE"),
        ("7 quater bd Voltaire", "7", "Q", "BOULEVARD", "VOLTAIRE"),
        ("7 quinquies bd Voltaire", "7", "C", "BOULEVARD", "VOLTAIRE"),
        ("7 A rue Voltaire", "7", "A", "RUE", "VOLTAIRE"),  # a letter suffix, before a type
        ("12-14 rue Voltaire", "12-14", None, "RUE", "VOLTAIRE"),
        ("12/14 rue Voltaire", "12-14", None, "RUE", "VOLTAIRE"),
        ("12rue Voltaire", "12", None, "RUE", "VOLTAIRE"),
        ("5 r. St-Jean", "5", None, "RUE", "SAINT JEAN"),  # La Poste: SAINT in full in a street
        ("5 R de la Paix", "5", None, "RUE", "DE LA PAIX"),  # one letter after a number: RUE
        ("5 Q des Orfèvres", "5", None, "QUAI", "DES ORFEVRES"),
        ("5 Q rue X", "5", "Q", "RUE", "X"),  # Q before a type is quater
        ("5 gde rue", "5", None, "GRANDE RUE", None),
        ("5 rd pt de l'Europe", "5", None, "ROND POINT", "DE L EUROPE"),
        ("5 z.i. des Granges", "5", None, "ZONE INDUSTRIELLE", "DES GRANGES"),
        ("Av. Foch", None, None, "AVENUE", "FOCH"),
        ("la Canebière", None, None, None, "LA CANEBIERE"),  # no type: La Poste's example
        ("12 arc en ciel", "12", None, None, "ARC EN CIEL"),  # ARC (arcade) only in full
        ("route du Col", None, None, "ROUTE", "DU COL"),
        ("3 av du Dr Schweitzer", "3", None, "AVENUE", "DU DOCTEUR SCHWEITZER"),
        ("0 rue X", None, None, None, "0 RUE X"),  # 0 is no street number (La Poste)
    ],
)
def test_street_parts(
    street: str, number: str | None, suffix: str | None, street_type: str | None, name: str | None
) -> None:
    r = normalize_address(street=street, postal_code="13001", city="Marseille")
    assert (r.street_number, r.street_suffix, r.street_type, r.street_name) == (
        number,
        suffix,
        street_type,
        name,
    )


@pytest.mark.parametrize(
    ("given_", "postal_code", "city", "insee", "label", "cedex", "country"),
    [
        (dict(postal_code="75011", city="paris"), "75011", "Paris 11e Arrondissement", "75111",
         "PARIS", None, "FR"),
        (dict(postal_code="1000", city="BOURG EN BRESSE"), "01000", "Bourg-en-Bresse", "01053",
         "BOURG EN BRESSE", None, "FR"),
        (dict(postal_code="42000", city="ST ETIENNE"), "42000", "Saint-Étienne", "42218",
         "SAINT ETIENNE", None, "FR"),
        (dict(postal_code="20000", city="Ajaccio"), "20000", "Ajaccio", "2A004", "AJACCIO", None,
         "FR"),
        (dict(postal_code="20200", city="Bastia"), "20200", "Bastia", "2B033", "BASTIA", None,
         "FR"),
        (dict(postal_code="97400", city="Saint-Denis"), "97400", "Saint-Denis", "97411",
         "SAINT DENIS", None, "FR"),
        (dict(postal_code="97133", city="St Barthélemy"), "97133", "Saint-Barthélemy", "97701",
         "SAINT BARTHELEMY", None, "FR"),
        (dict(postal_code="98000", city="Monaco"), "98000", "Monaco", None, "MONACO", None, "MC"),
        # a routing label that is not the commune's name: the commune is still found
        (dict(postal_code="13080", city="Luynes"), "13080", "Aix-en-Provence", "13001", "LUYNES",
         None, "FR"),
        # two communes share the label LACAUNE: the city given decides
        (dict(postal_code="81230", city="Gijounet"), "81230", "Gijounet", "81103", "LACAUNE",
         None, "FR"),
        (dict(postal_code="81230", city="Lacaune"), "81230", "Lacaune", "81124", "LACAUNE", None,
         "FR"),
        (dict(postal_code="13617", city="Aix-en-Provence CEDEX 1"), "13617", "Aix-en-Provence",
         "13001", "AIX EN PROVENCE", "CEDEX 1", "FR"),
        (dict(postal_code="69441", city="Lyon Cedex 03"), "69441", "Lyon", None, "LYON",
         "CEDEX 03", "FR"),
        (dict(city="Gex"), "01170", "Gex", "01173", "GEX", None, "FR"),
        (dict(postal_code="98800", city="Nouméa"), "98800", "Nouméa", None, "NOUMEA", None, "FR"),
        (dict(postal_code="1000", city="Bruxelles", country="BE"), "1000", "Bruxelles", None, None,
         None, "BE"),
    ],
)  # fmt: skip
def test_locality(
    given_: dict[str, str],
    postal_code: str,
    city: str,
    insee: str | None,
    label: str | None,
    cedex: str | None,
    country: str,
) -> None:
    r = normalize_address(street="1 rue X", **given_)
    assert (r.postal_code, r.city, r.insee_code, r.routing_label, r.cedex, r.country) == (
        postal_code,
        city,
        insee,
        label,
        cedex,
        country,
    )


def test_blank_input_is_no_address() -> None:
    r = normalize_address(street="  ", city="", postal_code=None, complement="\t")
    assert (r.value, r.flags, r.lines, r.original) == (None, (), (), {})
    assert normalize_address().value is None


def test_original_keeps_the_non_blank_inputs_verbatim() -> None:
    r = normalize_address(street="  3 bd  Gambetta ", postal_code=" 1000", city="", country=None)
    assert r.original == {"street": "  3 bd  Gambetta ", "postal_code": " 1000"}


def test_value_is_the_lines() -> None:
    r = normalize_address(street="3 bd Gambetta", complement="Appt 12", postal_code="59000",
                          city="Lille")  # fmt: skip
    assert r.value == "Appt 12\n3 BOULEVARD GAMBETTA\n59000 LILLE"
    assert r.valid


def test_incomplete_address_has_no_value() -> None:
    r = normalize_address(street="3 bd Gambetta")
    assert r.value is None
    assert "ADDRESS_INCOMPLETE" in r.flags


def test_a_postal_code_given_as_a_number() -> None:
    # Excel turned "01000" into the number 1000
    r = normalize_address(street="3 rue X", postal_code=1000, city="Bourg-en-Bresse")  # type: ignore[arg-type]
    assert r.postal_code == "01000"
    assert r.flags == ("POSTCODE_FIXED",)


def test_never_truncates() -> None:
    street = "12 rue du Général de Gaulle prolongée et du Maréchal Leclerc"
    r = normalize_address(street=street, postal_code="75011", city="Paris")
    assert r.street == "12 RUE DU GAL DE GAULLE PROL ET DU MAL LECLERC"
    assert "ADDRESS_LINE_TOO_LONG" in r.flags


@pytest.mark.parametrize(
    "given_",
    [
        dict(street="12 bis av. de la République", postal_code="75011", city="paris"),
        dict(free_text="12 bis av. de la République, Bât B, 75011 Paris"),
        dict(street="3 rue Pasteur Appt 12", postal_code="1000", city="BOURG EN BRESSE"),
        dict(special="BP 123", postal_code="13617", city="Aix-en-Provence Cedex 1"),
        dict(street="2 rue X", postal_code="88000", city="Epinall"),
        dict(street="2 rue X", city="Gex"),
        dict(street="2 rue X", postal_code="75016"),
        dict(street="1 av X", postal_code="98000", city="Monaco", country="France"),
        dict(street="128 boulevard du Général Charles de Gaulle", postal_code="92380",
             city="Garches"),
        dict(free_text="Rue de la Loi 16\n1000 Bruxelles\nBelgique"),
        dict(street="1 rue X", postal_code="13290", city="Les Milles"),
        dict(street="1 rue X", postal_code="81230", city="Gijounet"),
    ],
)  # fmt: skip
def test_as_input_gives_the_same_result(given_: dict[str, str]) -> None:
    first = normalize_address(**given_)
    again = normalize_address(**first.as_input())
    assert again.lines == first.lines
    assert (again.city, again.insee_code, again.country) == (
        first.city,
        first.insee_code,
        first.country,
    )
    assert not FIXED & set(again.flags)


def test_flags_are_declared_once_for_the_address_field() -> None:
    codes = [f.code for f in addresses.FLAGS]
    assert len(codes) == len(set(codes))
    assert all(f.field == "address" and f.description.endswith(".") for f in addresses.FLAGS)


def test_street_type_table() -> None:
    # the official abbreviation is never longer than the word; every variant names a known type
    assert all(len(abbr) <= len(full) for full, abbr in STREET_TYPES.items())
    assert set(addresses._TYPE_VARIANTS.values()) <= set(STREET_TYPES)


# --- properties -----------------------------------------------------------------------------

_WORDS = st.sampled_from(
    ["12", "bis", "av.", "rue", "Bât B", "Appt 3", "75011", "Paris", "1000", "BP 12", "Cedex",
     ",", "\n", "ST", "Étienne", "lieu-dit", "Les Granges", "Belgique", "98000", "Monaco",
     "20000", "chez", "c/o", "ZI", "résidence", "N°", "3e étage", "12-14", "q.", "R", "0"]
)  # fmt: skip
_FIELD = st.one_of(st.none(), st.text(max_size=60), st.lists(_WORDS, max_size=8).map(" ".join))
_NAMES = ("identity", "complement", "building", "street", "special", "postal_code", "city",
          "country", "free_text")  # fmt: skip
_ARGS = st.fixed_dictionaries({name: _FIELD for name in _NAMES})


@settings(max_examples=200, deadline=None)
@given(_ARGS)
def test_never_raises_and_keeps_the_original(kwargs: dict[str, str | None]) -> None:
    r = normalize_address(**kwargs)
    assert r.original == {k: v for k, v in kwargs.items() if v is not None and v.strip()}
    assert set(r.flags) <= DECLARED
    assert (r.value is None) or r.value == "\n".join(r.lines)


@settings(max_examples=200, deadline=None)
@given(_ARGS)
def test_idempotent(kwargs: dict[str, str | None]) -> None:
    first = normalize_address(**kwargs)
    again = normalize_address(**first.as_input())
    assert again.lines == first.lines
    assert again.value == first.value
    assert (again.postal_code, again.city, again.insee_code, again.country) == (
        first.postal_code,
        first.city,
        first.insee_code,
        first.country,
    )
    assert not FIXED & set(again.flags)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_lines_fit_or_are_flagged(street: str, city: str) -> None:
    r = normalize_address(street=street, city=city, postal_code="75011")
    if any(len(line) > MAX_LINE for line in r.lines):
        assert "ADDRESS_LINE_TOO_LONG" in r.flags


@pytest.mark.parametrize(
    ("street", "line"),
    [
        ("1Z:I", "1 ZONE INDUSTRIELLE"),  # found by hypothesis: was "1 Z I", then "1 ZONE..."
        ("12R de la Paix", "12 RUE DE LA PAIX"),
        ("12B", "12 B"),
        ("12B rue X", "12 B RUE X"),
    ],
)
def test_a_letter_glued_to_the_number_reads_as_if_it_stood_apart(street: str, line: str) -> None:
    first = normalize_address(street=street)
    assert first.lines == (line,)
    assert normalize_address(**first.as_input()).lines == (line,)
