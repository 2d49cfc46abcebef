"""First-name diminutives, initials and spelling variants: the curated table and the two
questions identity resolution asks of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.identity.nicknames import (
    canonical_first_name,
    nickname_equivalent,
    parse_table,
    table,
)
from tournesol.quality.names import name_key, normalize_name

NAMES = sorted(table().roots)
CANONICAL = sorted(table().variants)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("CATHY", "CATHERINE"),
        ("KATHY", "CATHERINE"),
        ("CATH", "CATHERINE"),
        ("SEB", "SEBASTIEN"),
        ("NICO", "NICOLAS"),
        ("PHIL", "PHILIPPE"),
        ("LUDO", "LUDOVIC"),
        ("VERO", "VERONIQUE"),
        ("MICHAEL", "MICKAEL"),
        ("MIKAEL", "MICKAEL"),
        ("MOHAMMED", "MOHAMED"),
        ("MATTHIEU", "MATHIEU"),
        ("THIBAUT", "THIBAULT"),
        ("REMY", "REMI"),
        ("BABETH", "ELISABETH"),
        ("ELIZABETH", "ELISABETH"),
        ("JF", "JEAN FRANCOIS"),
        ("J F", "JEAN FRANCOIS"),
        ("JB", "JEAN BAPTISTE"),
        ("PY", "PIERRE YVES"),
        ("MAITE", "MARIE THERESE"),
        ("MARIE JOSEE", "MARIE JOSE"),
        # canonical names are their own canonical form
        ("CATHERINE", "CATHERINE"),
        ("JEAN PIERRE", "JEAN PIERRE"),
        ("MAXIME", "MAXIME"),
        # ambiguous variants keep their key
        ("MAX", "MAX"),
        ("JP", "JP"),
        ("J P", "J P"),
        ("CHRIS", "CHRIS"),
        ("ALEX", "ALEX"),
        ("FRED", "FRED"),
        ("MC", "MC"),
        # unknown names keep their key
        ("ZOE", "ZOE"),
        ("JEAN", "JEAN"),
        ("BASTIEN", "BASTIEN"),
        ("LISA", "LISA"),
        ("X AE A XII", "X AE A XII"),
        ("", ""),
        (None, None),
    ],
)
def test_canonical_first_name(key: str | None, expected: str | None) -> None:
    assert canonical_first_name(key) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # the same key
        ("ZOE", "ZOE", True),
        ("CATHERINE", "CATHERINE", True),
        # a variant and its canonical name
        ("CATHY", "CATHERINE", True),
        ("SEB", "SEBASTIEN", True),
        ("NICO", "NICOLAS", True),
        ("FRED", "FREDERIC", True),
        ("FRED", "FREDERIQUE", True),
        ("ALEX", "ALEXANDRE", True),
        ("ALEX", "ALEXANDRA", True),
        ("MAX", "MAXIME", True),
        ("MAX", "MAXIMILIEN", True),
        ("JP", "JEAN PIERRE", True),
        ("JP", "JEAN PAUL", True),
        ("J P", "JEAN PIERRE", True),
        ("JEAN FRANCOIS", "JF", True),
        ("MC", "MARIE CHRISTINE", True),
        ("MICHAEL", "MICKAEL", True),
        # two variants of one canonical name
        ("CATH", "KATHY", True),
        ("MICHAEL", "MIKAEL", True),
        ("JP", "J P", True),
        ("YOHAN", "YOANN", True),
        ("YOHAN", "YOHANN", True),
        ("MOHAMMED", "MUHAMMAD", True),
        ("CHRIS", "CHRIS", True),
        # two canonical names sharing an ambiguous variant stay different
        ("MAXIME", "MAXIMILIEN", False),
        ("JEAN PIERRE", "JEAN PAUL", False),
        ("FREDERIC", "FREDERIQUE", False),
        ("CHRISTOPHE", "CHRISTINE", False),
        # two ambiguous variants that are not variants of one name
        ("JP", "JC", False),
        ("MAX", "ALEX", False),
        # different names
        ("CATHERINE", "CHRISTINE", False),
        ("JEAN", "JEAN PIERRE", False),  # a compound name is not a nickname of its first part
        ("JEAN", "JP", False),
        ("MICHEL", "MICKAEL", False),
        ("ANNE", "ANNIE", False),
        ("SEBASTIEN", "BASTIEN", False),
        ("ZOE", "CATHY", False),
        ("ZOE", "CHLOE", False),
        # None never matches
        (None, "CATHERINE", False),
        ("CATHY", None, False),
        (None, None, False),
    ],
)
def test_nickname_equivalent(a: str | None, b: str | None, expected: bool) -> None:
    assert nickname_equivalent(a, b) is expected
    assert nickname_equivalent(b, a) is expected


def test_table_size_and_shape() -> None:
    t = table()
    assert 120 <= len(t.variants) <= 250
    # canonical names and variants are disjoint, so a canonical name's root is itself
    for canonical, variants in t.variants.items():
        assert t.roots[canonical] == {canonical}
        assert variants and canonical not in variants
        for variant in variants:
            assert canonical in t.roots[variant]


def test_names_are_keys() -> None:
    """Every name is written as ``name_key`` writes it, so callers pass keys straight in."""
    assert [name for name in NAMES if name_key(name) != name] == []


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        ("Jean-Pierre", "JEAN PIERRE"),
        ("jean pierre", "JEAN PIERRE"),
        ("J.-P.", "J P"),
        ("Marie-Thérèse", "MARIE THERESE"),
        ("Maïté", "MAITE"),
        ("Sébastien", "SEBASTIEN"),
        ("Mickaël", "MICKAEL"),
    ],
)
def test_typed_names_reach_the_table_through_their_key(typed: str, key: str) -> None:
    result = normalize_name(typed, part="first")
    assert result.key == key
    assert key in table().roots


def test_compound_names() -> None:
    assert canonical_first_name(normalize_name("J.-F.", part="first").key) == "JEAN FRANCOIS"
    assert nickname_equivalent(name_key("Jean-François"), name_key("JF"))
    assert nickname_equivalent(name_key("Marie-Josée"), name_key("Marie-José"))
    assert not nickname_equivalent(name_key("Marie-Claude"), name_key("Marie-Christine"))


@given(st.sampled_from(NAMES), st.sampled_from(NAMES))
def test_equivalence_is_symmetric(a: str, b: str) -> None:
    assert nickname_equivalent(a, b) == nickname_equivalent(b, a)


@given(st.sampled_from(NAMES))
def test_every_name_is_equivalent_to_its_canonical_names(name: str) -> None:
    assert nickname_equivalent(name, name)
    for root in table().roots[name]:
        assert nickname_equivalent(name, root)
    canonical = canonical_first_name(name)
    assert canonical is not None
    assert nickname_equivalent(name, canonical)
    assert canonical_first_name(canonical) == canonical


@given(st.sampled_from(CANONICAL), st.sampled_from(CANONICAL))
def test_canonical_names_are_never_equivalent_to_one_another(a: str, b: str) -> None:
    assert nickname_equivalent(a, b) is (a == b)


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ", max_size=12))
def test_unknown_names_keep_their_key(key: str) -> None:
    if key not in table().roots:
        assert canonical_first_name(key) == key
        assert nickname_equivalent(key, key)
        assert not any(nickname_equivalent(key, name) for name in CANONICAL)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CATHERINE CATHY\n", "expected canonical<TAB>variant"),
        ("CATHERINE\t\n", "expected canonical<TAB>variant"),
        ("CATHERINE\tCATHY,,CATH\n", "expected canonical<TAB>variant"),
        ("Catherine\tCATHY\n", "not a name key"),
        ("JEAN-PIERRE\tJP\n", "not a name key"),
        ("HELENE\tHÉLÈNE\n", "not a name key"),
        ("CATHERINE\tCATHY\nCATHERINE\tCATH\n", "listed twice"),
        ("CATHERINE\tCATHERINE\n", "its own variant"),
        ("CATHERINE\tCATHY\nCATHY\tCAT\n", "both a canonical name and a variant"),
    ],
)
def test_malformed_tables_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_table("# a comment\n" + text)


def test_parse_table_reads_comments_and_blank_lines() -> None:
    parsed = parse_table("# header\n\nMAXIME\tMAX\nMAXENCE\tMAX\n")
    assert parsed.variants == {"MAXIME": {"MAX"}, "MAXENCE": {"MAX"}}
    assert parsed.roots["MAX"] == {"MAXIME", "MAXENCE"}
