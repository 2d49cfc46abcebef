"""Civilities, person names (case, particles, placeholders), full names, swaps, maiden names
and the AFNOR identity line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality import names
from tournesol.quality.base import Severity, blank
from tournesol.quality.names import (
    identity_line,
    is_known_first_name,
    normalize_civility,
    normalize_name,
    normalize_person,
)

FIXED = {f.code for f in names.FLAGS if f.severity is Severity.FIXED}
CASE = ("NAME_CASE_FIXED",)
SPACING = ("NAME_SPACING_FIXED",)
CASE_SPACING = ("NAME_CASE_FIXED", "NAME_SPACING_FIXED")
PLACEHOLDER = ("NAME_PLACEHOLDER",)
SUSPICIOUS = ("NAME_SUSPICIOUS",)
MLLE = ("CIVILITY_MLLE_REPLACED",)
COUPLE = ("CIVILITY_COUPLE",)
UNKNOWN = ("CIVILITY_UNKNOWN",)


@pytest.mark.parametrize(
    ("text", "value", "gender", "flags"),
    [
        ("M", "M.", "M", ()),
        ("M.", "M.", "M", ()),
        ("MR", "M.", "M", ()),
        ("Mr.", "M.", "M", ()),
        ("MONSIEUR", "M.", "M", ()),
        (" monsieur ", "M.", "M", ()),
        ("MME", "Mme", "F", ()),
        ("Mme.", "Mme", "F", ()),
        ("MADAME", "Mme", "F", ()),
        # Mademoiselle: no longer used by the French administration (circular of 21/02/2012)
        ("MLLE", "Mme", "F", MLLE),
        ("Mlle", "Mme", "F", MLLE),
        ("MELLE", "Mme", "F", MLLE),
        ("Mademoiselle", "Mme", "F", MLLE),
        # titles are kept; they tell no gender
        ("DR", "Dr", None, ()),
        ("Docteur", "Dr", None, ()),
        ("ME", "Me", None, ()),
        ("Maître", "Me", None, ()),
        ("Maitre", "Me", None, ()),
        ("PR", "Pr", None, ()),
        ("Professeur", "Pr", None, ()),
        # couples
        ("M. et Mme", "M. et Mme", None, COUPLE),
        ("MR ET MME", "M. et Mme", None, COUPLE),
        ("M/MME", "M. et Mme", None, COUPLE),
        ("Monsieur et Madame", "M. et Mme", None, COUPLE),
        ("Mme et M.", "M. et Mme", None, COUPLE),
        ("Mr & Mrs", "M. et Mme", None, COUPLE),
        # English forms
        ("Mr", "M.", "M", ()),
        ("Mrs", "Mme", "F", ()),
        ("Ms", "Mme", "F", ()),
        ("Miss", "Mme", "F", MLLE),
        # unknown
        ("Sir", None, None, UNKNOWN),
        ("1", None, None, UNKNOWN),
        ("M. et M.", None, None, UNKNOWN),
    ],
)
def test_civility(text: str, value: str | None, gender: str | None, flags: tuple[str, ...]) -> None:
    r = normalize_civility(text)
    assert (r.original, r.value, r.gender, r.flags) == (text, value, gender, flags)


@pytest.mark.parametrize("text", [None, "", "   "])
def test_blank_civility(text: str | None) -> None:
    assert normalize_civility(text) == names.CivilityResult(text, None, (), None)


@pytest.mark.parametrize(
    ("text", "part", "value", "flags", "key"),
    [
        # capitals and lower case to proper case; hyphenated and compound names
        ("JEAN-PIERRE", "first", "Jean-Pierre", CASE, "JEAN PIERRE"),
        ("marie claire", "first", "Marie Claire", CASE, "MARIE CLAIRE"),
        ("MARIE-THÉRÈSE", "first", "Marie-Thérèse", CASE, "MARIE THERESE"),
        ("HÉLÈNE", "first", "Hélène", CASE, "HELENE"),
        ("Hélène", "first", "Hélène", (), "HELENE"),
        ("DUPONT-MARTIN", "last", "Dupont-Martin", CASE, "DUPONT MARTIN"),
        # French particles: de, du, des, d' lower case; the articles Le, La are the name
        ("DE LA FONTAINE", "last", "de La Fontaine", CASE, "DE LA FONTAINE"),
        ("de LA FONTAINE", "last", "de La Fontaine", CASE, "DE LA FONTAINE"),
        ("D'ARTAGNAN", "last", "d'Artagnan", CASE, "D ARTAGNAN"),
        ("GISCARD D'ESTAING", "last", "Giscard d'Estaing", CASE, "GISCARD D ESTAING"),
        ("LE GALL", "last", "Le Gall", CASE, "LE GALL"),
        ("LA FONTAINE", "last", "La Fontaine", CASE, "LA FONTAINE"),
        ("DU PONT", "last", "du Pont", CASE, "DU PONT"),
        ("DES ROCHES", "last", "des Roches", CASE, "DES ROCHES"),
        ("MARTIN DU GARD", "last", "Martin du Gard", CASE, "MARTIN DU GARD"),
        ("L'HERMITE", "last", "L'Hermite", CASE, "L HERMITE"),
        ("DE", "last", "De", CASE, "DE"),  # a particle alone is the whole name
        # hyphenated place names: particles between two words stay lower case
        ("SAINT-GERMAIN-EN-LAYE", "last", "Saint-Germain-en-Laye", CASE, "SAINT GERMAIN EN LAYE"),
        # other languages
        ("MAC ARTHUR", "last", "Mac Arthur", CASE, "MAC ARTHUR"),
        ("O'NEILL", "last", "O'Neill", CASE, "O NEILL"),
        ("MCDONALD", "last", "McDonald", CASE, "MCDONALD"),
        ("N'DIAYE", "last", "N'Diaye", CASE, "N DIAYE"),
        ("DA SILVA", "last", "Da Silva", CASE, "DA SILVA"),
        ("VAN DER BERG", "last", "Van der Berg", CASE, "VAN DER BERG"),
        ("NGUYEN VAN AN", "last", "Nguyen Van An", CASE, "NGUYEN VAN AN"),
        # a name typed with care keeps its case
        ("McDONALD", "last", "McDONALD", (), "MCDONALD"),
        ("de la Fontaine", "last", "de la Fontaine", (), "DE LA FONTAINE"),
        ("Jean-pierre", "first", "Jean-pierre", (), "JEAN PIERRE"),
        # spacing: inner runs, around hyphens and apostrophes, typographic glyphs
        ("Jean - Pierre", "first", "Jean-Pierre", SPACING, "JEAN PIERRE"),
        ("jean  pierre", "first", "Jean Pierre", CASE_SPACING, "JEAN PIERRE"),
        ("D ' ARTAGNAN", "last", "d'Artagnan", CASE_SPACING, "D ARTAGNAN"),
        ("D’ARTAGNAN", "last", "d'Artagnan", CASE, "D ARTAGNAN"),
        ("Jean–Pierre", "first", "Jean-Pierre", (), "JEAN PIERRE"),
        ("Jean--Pierre", "first", "Jean-Pierre", SPACING, "JEAN PIERRE"),
        ("  Dupont\t", "last", "Dupont", (), "DUPONT"),  # trimming alone is not a fix
        ("Du\tPont", "last", "Du Pont", SPACING, "DU PONT"),
        ('"DUPONT"', "last", "Dupont", CASE_SPACING, "DUPONT"),
        # placeholders
        ("XXX", "last", None, PLACEHOLDER, None),
        ("INCONNU", "last", None, PLACEHOLDER, None),
        ("test", "first", None, PLACEHOLDER, None),
        ("NC", "first", None, PLACEHOLDER, None),
        (".", "first", None, PLACEHOLDER, None),
        ("-", "last", None, PLACEHOLDER, None),
        ("N/A", "last", None, PLACEHOLDER, None),
        ("Non renseigné", "last", None, PLACEHOLDER, None),
        ("AAAA", "last", None, PLACEHOLDER, None),
        ("123", "last", None, PLACEHOLDER, None),
        ("X", "first", None, PLACEHOLDER, None),
        # suspicious, value still given
        ("DUPONT2", "last", "Dupont2", (*CASE, *SUSPICIOUS), "DUPONT2"),
        ("Jean@Dupont", "last", "Jean@Dupont", SUSPICIOUS, "JEAN DUPONT"),
        ("Du_pont", "last", "Du_pont", SUSPICIOUS, "DU PONT"),
        # initials are names
        ("J.", "first", "J.", (), "J"),
        ("J.-P.", "first", "J.-P.", (), "J P"),
        # a maiden name loses its "née"
        ("née MARTIN", "maiden", "Martin", ("NAME_CASE_FIXED", "NAME_MAIDEN_EXTRACTED"), "MARTIN"),
        ("Nee Martin", "maiden", "Martin", ("NAME_MAIDEN_EXTRACTED",), "MARTIN"),
        ("Neel", "maiden", "Neel", (), "NEEL"),
    ],
)
def test_name(
    text: str, part: names.Part, value: str | None, flags: tuple[str, ...], key: str | None
) -> None:
    r = normalize_name(text, part=part)
    assert (r.original, r.value, r.flags, r.key) == (text, value, flags, key)


@pytest.mark.parametrize("text", [None, "", "  ", "\u200b"])
def test_blank_name(text: str | None) -> None:
    assert normalize_name(text, part="last") == names.NameResult(text, None, (), None)


def test_mc_only_in_last_names() -> None:
    assert normalize_name("MCKENZIE", part="last").value == "McKenzie"
    assert normalize_name("MCKENZIE", part="first").value == "Mckenzie"


def test_long_name_is_suspicious() -> None:
    assert "NAME_SUSPICIOUS" in normalize_name("A" + "b" * 100, part="last").flags


DETECTED = "NAME_ORDER_DETECTED"
UNCERTAIN = "NAME_ORDER_UNCERTAIN"
MAIDEN = "NAME_MAIDEN_EXTRACTED"


@pytest.mark.parametrize(
    ("full", "civility", "first", "last", "maiden", "order"),
    [
        # capitals tell the last name
        ("DUPONT Jean", None, "Jean", "Dupont", None, DETECTED),
        ("Jean DUPONT", None, "Jean", "Dupont", None, DETECTED),
        ("DUPONT Jean-Pierre", None, "Jean-Pierre", "Dupont", None, DETECTED),
        ("Jean de LA FONTAINE", None, "Jean", "de La Fontaine", None, DETECTED),
        ("DE LA FONTAINE Jean", None, "Jean", "de La Fontaine", None, DETECTED),
        ("DUPONT Marie Claire", None, "Marie Claire", "Dupont", None, DETECTED),
        ("J. DUPONT", None, "J.", "Dupont", None, DETECTED),
        # else the first-name reference
        ("dupont jean", None, "Jean", "Dupont", None, DETECTED),
        ("Jean Dupont", None, "Jean", "Dupont", None, DETECTED),
        ("Yann Le Gall", None, "Yann", "Le Gall", None, DETECTED),
        ("Le Gall Yann", None, "Yann", "Le Gall", None, DETECTED),
        ("JEAN PIERRE DUPONT", None, "Jean Pierre", "Dupont", None, DETECTED),
        ("Martin Jean", None, "Jean", "Martin", None, DETECTED),  # Martin: mainly a surname
        ("Kevin Leroy", None, "Kevin", "Leroy", None, DETECTED),  # Leroy: a rare first name
        # both words are first names and both mainly surnames: a guess, in reading order
        ("Martin Thomas", None, "Martin", "Thomas", None, UNCERTAIN),
        ("Robert Bernard", None, "Robert", "Bernard", None, UNCERTAIN),
        ("Xyz Abcd", None, "Xyz", "Abcd", None, UNCERTAIN),
        # one word: the last name
        ("DUPONT", None, None, "Dupont", None, None),
        # a civility in front
        ("M. Jean DUPONT", "M.", "Jean", "Dupont", None, DETECTED),
        ("MME DUPONT MARIE", "Mme", "Marie", "Dupont", None, DETECTED),
        ("MR ET MME DUPONT", "M. et Mme", None, "Dupont", None, None),
        ("Madame", "Mme", None, None, None, None),
        # maiden names: "A née B": B the birth name; "A épouse B": A the birth name
        ("Marie DUPONT née MARTIN", None, "Marie", "Dupont", "Martin", DETECTED),
        ("Mme Dupont (née Martin)", "Mme", None, "Dupont", "Martin", None),
        ("MARTIN épouse DUPONT", None, None, "Dupont", "Martin", None),
        ("Marie MARTIN épouse DUPONT", None, "Marie", "Dupont", "Martin", DETECTED),
        ("MARTIN ep. DUPONT Marie", None, "Marie", "Dupont", "Martin", DETECTED),
    ],
)
def test_full_name(
    full: str,
    civility: str | None,
    first: str | None,
    last: str | None,
    maiden: str | None,
    order: str | None,
) -> None:
    p = normalize_person(full_name=full)
    got = (p.civility.value, p.first_name.value, p.last_name.value, p.maiden_name.value)
    assert got == (civility, first, last, maiden)
    assert [f for f in p.flags if f.startswith("NAME_ORDER")] == ([order] if order else [])
    assert (MAIDEN in p.flags) == (maiden is not None)


@pytest.mark.parametrize(
    ("first_in", "last_in", "first", "last", "swapped"),
    [
        # the first-name field holds no known first name, the last-name field mainly one
        ("DUPONT", "Jean", "Jean", "Dupont", True),
        ("Dupont", "Marie", "Marie", "Dupont", True),
        ("Dupont", "Jean-Pierre", "Jean-Pierre", "Dupont", True),
        ("LEROY", "Nicolas", "Nicolas", "Leroy", True),  # LEROY: a rare first name, a surname
        ("de La Fontaine", "Jean", "Jean", "de La Fontaine", True),
        # no swap: many surnames are also first names (MARTIN, THOMAS, ROBERT, BERNARD...)
        ("Martin", "Thomas", "Martin", "Thomas", False),
        ("THOMAS", "MARTIN", "Thomas", "Martin", False),
        ("Dupont", "Robert", "Dupont", "Robert", False),  # Robert: a top-5 surname too
        ("Dupont", "Bernard", "Dupont", "Bernard", False),
        ("Jean", "Dupont", "Jean", "Dupont", False),
        ("Jean", "Pierre", "Jean", "Pierre", False),  # the first-name field holds a first name
        ("J", "Jean", "J", "Jean", False),  # an initial
        ("Dupont", "Xyz", "Dupont", "Xyz", False),
    ],
)
def test_swap(first_in: str, last_in: str, first: str, last: str, swapped: bool) -> None:
    p = normalize_person(first_name=first_in, last_name=last_in)
    assert (p.first_name.value, p.last_name.value) == (first, last)
    assert ("NAME_SWAPPED_FIXED" in p.flags) is swapped


@pytest.mark.parametrize(
    ("last_in", "maiden_in", "last", "maiden"),
    [
        ("DUPONT née MARTIN", None, "Dupont", "Martin"),
        ("Dupont nee Martin", None, "Dupont", "Martin"),
        ("DUPONT NÉE MARTIN", None, "Dupont", "Martin"),
        ("Dupont (née Martin)", None, "Dupont", "Martin"),
        ("MARTIN épouse DUPONT", None, "Dupont", "Martin"),
        ("MARTIN ep. DUPONT", None, "Dupont", "Martin"),
        ("MARTIN EP DUPONT", None, "Dupont", "Martin"),
        ("MARTIN veuve DUPONT", None, "Dupont", "Martin"),
        ("née Martin", None, None, "Martin"),
        # an explicit maiden name is kept
        ("MARTIN épouse DUPONT", "Durand", "Dupont", "Durand"),
    ],
)
def test_maiden_in_last_name(
    last_in: str, maiden_in: str | None, last: str | None, maiden: str
) -> None:
    p = normalize_person(first_name="Marie", last_name=last_in, maiden_name=maiden_in)
    assert (p.first_name.value, p.last_name.value, p.maiden_name.value) == ("Marie", last, maiden)
    assert MAIDEN in p.flags


@pytest.mark.parametrize(
    "last_in", ["Renée", "DUPONT-NEEL", "Lepine", "Dupont Martin", "Vernee", "Dupont née"]
)
def test_no_maiden_marker(last_in: str) -> None:
    p = normalize_person(first_name="Marie", last_name=last_in)
    assert p.maiden_name.value is None
    assert MAIDEN not in p.flags


def test_person_gender_comes_from_the_civility_only() -> None:
    assert normalize_person(civility="MLLE", first_name="Jean", last_name="Dupont").gender == "F"
    assert normalize_person(first_name="Marie", last_name="Dupont").gender is None
    assert normalize_person(civility="Dr", first_name="Marie", last_name="Dupont").gender is None


def test_person_flags_are_the_union_plus_record_flags() -> None:
    p = normalize_person(civility="Mlle", first_name="DUPONT", last_name="marie  claire")
    assert p.flags == (
        "CIVILITY_MLLE_REPLACED",
        "NAME_CASE_FIXED",
        "NAME_SPACING_FIXED",
        "NAME_SWAPPED_FIXED",
    )
    assert p.first_name.value == "Marie Claire"
    assert "NAME_SWAPPED_FIXED" not in p.first_name.flags


def test_blank_person() -> None:
    p = normalize_person()
    assert (p.civility.value, p.first_name.value, p.last_name.value, p.flags) == (
        None,
        None,
        None,
        (),
    )


def test_full_name_is_read_only_without_first_and_last_names() -> None:
    p = normalize_person(first_name="Jean", full_name="Paul MARTIN")
    assert (p.first_name.value, p.last_name.value) == ("Jean", None)


@pytest.mark.parametrize(
    ("civility", "first", "last", "line"),
    [
        ("M.", "Jean", "Dupont", "M. Jean DUPONT"),
        ("Mme", "Hélène", "Lefèvre", "Mme Hélène LEFÈVRE"),
        ("M.", "Jean", "de La Fontaine", "M. Jean DE LA FONTAINE"),
        ("M. et Mme", None, "Dupont", "M. et Mme DUPONT"),
        (None, "Jean", "Dupont", "Jean DUPONT"),
        ("M.", "Jean", None, None),
        # over 38 characters: first names as initials, then none, then no civility
        ("M.", "Jean-Pierre", "Dupont-Martin de La Fontaine", "M. J.-P. DUPONT-MARTIN DE LA FONTAINE"),
        ("Mme", "Marie Claire", "Dupont-Martin de La Fontaine", "Mme M. C. DUPONT-MARTIN DE LA FONTAINE"),
        ("Mme", "Marie-Christine Anne", "Dupont-Martin de La Fontaine", "Mme DUPONT-MARTIN DE LA FONTAINE"),
        ("M. et Mme", "Jean", "de La Tour d'Auvergne-Lauraguais", "DE LA TOUR D'AUVERGNE-LAURAGUAIS"),
        (None, None, "A" * 50, "A" * 38),
    ],
)  # fmt: skip
def test_identity_line(
    civility: str | None, first: str | None, last: str | None, line: str | None
) -> None:
    assert identity_line(civility, first, last) == line


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("Jean", True),
        ("JEAN-PIERRE", True),
        ("Hélène", True),
        ("helene", True),
        ("Kevin", True),
        ("Mohamed", True),
        ("Martin", True),  # a first name too (rank 319), so never taken as a surname only
        ("Dupont", False),
        ("Leroy", False),  # rank 8272 as a first name, 14th surname: counted as a surname
        ("Xyz", False),
        (None, False),
    ],
)
def test_first_name_reference(name: str | None, known: bool) -> None:
    assert is_known_first_name(name) is known


def test_reference_size() -> None:
    assert len(names._reference()) > 5000


# --- properties -------------------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "JEAN", "Marie", "dupont", "DE", "la", "Le", "D'", "O'", "MC", "-", "'", "née", "EP.",
        "épouse", "M.", "MME", "Thomas", "MARTIN", "van", "der", "x", "J.", "  ", "\t", "ß",
        "İ", "ǅ", "Ⅻ", "2", "(", ")", "Hélène", "Leroy", "da", "SILVA",
    ]
)  # fmt: skip
NAMEISH = st.one_of(st.text(max_size=40), st.lists(WORDS, max_size=6).map(" ".join))


@settings(max_examples=200, deadline=None)
@given(NAMEISH, st.sampled_from(["first", "last", "maiden"]))
def test_name_properties(text: str, part: names.Part) -> None:
    r = normalize_name(text, part=part)
    assert r.original == text
    assert all(f in {f.code for f in names.FLAGS} for f in r.flags)
    if r.value is None:
        assert r.key is None
        return
    again = normalize_name(r.value, part=part)
    assert again.value == r.value
    assert again.key == r.key
    assert not FIXED & set(again.flags)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_civility_properties(text: str) -> None:
    r = normalize_civility(text)
    assert r.original == text
    if r.value is not None:
        again = normalize_civility(r.value)
        assert (again.value, again.gender) == (r.value, r.gender)
        assert not FIXED & set(again.flags)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.none(), st.sampled_from(["M.", "MLLE", "M/MME", "xx"])),
    st.one_of(st.none(), NAMEISH),
    st.one_of(st.none(), NAMEISH),
    st.one_of(st.none(), NAMEISH),
    st.one_of(st.none(), NAMEISH),
)
def test_person_properties(
    civility: str | None,
    first: str | None,
    last: str | None,
    maiden: str | None,
    full: str | None,
) -> None:
    p = normalize_person(
        civility=civility, first_name=first, last_name=last, maiden_name=maiden, full_name=full
    )
    if full is None or not blank(civility):  # else the civility may come from the full name
        assert p.civility.original == civility
    for given_text, result in ((first, p.first_name), (last, p.last_name)):
        if given_text is not None and not given_text.strip() and full is None:
            assert result.original == given_text
    again = normalize_person(
        civility=p.civility.value,
        first_name=p.first_name.value,
        last_name=p.last_name.value,
        maiden_name=p.maiden_name.value,
    )
    got = (again.first_name.value, again.last_name.value, again.maiden_name.value)
    assert got == (p.first_name.value, p.last_name.value, p.maiden_name.value)
    assert again.civility.value == p.civility.value
    assert not FIXED & set(again.flags)
    line = identity_line(p.civility.value, p.first_name.value, p.last_name.value)
    assert line is None or 0 < len(line) <= names.AFNOR_LINE


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=10_000))
def test_long_and_odd_text_never_raises(text: str) -> None:
    normalize_name(text, part="last")
    normalize_civility(text)
    normalize_person(full_name=text)
