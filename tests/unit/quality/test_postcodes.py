"""The postal-code reference (quality.postcodes) and the script that builds it."""

from __future__ import annotations

import gzip
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.quality import postcodes
from tournesol.quality.postcodes import (
    DATA_FILE,
    city_key,
    communes,
    department,
    find,
    is_known,
    postal_codes_of,
)

ROOT = Path(__file__).resolve().parents[3]


def _build_script() -> ModuleType:
    path = ROOT / "scripts" / "build_postcode_reference.py"
    spec = importlib.util.spec_from_file_location("build_postcode_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Saint-Étienne", "SAINT ETIENNE"),
        ("ST ETIENNE", "SAINT ETIENNE"),
        ("st-etienne", "SAINT ETIENNE"),
        ("Sainte-Foy-lès-Lyon", "SAINTE FOY LES LYON"),
        ("STE FOY LES LYON", "SAINTE FOY LES LYON"),
        ("L'Haÿ-les-Roses", "L HAY LES ROSES"),
        ("  Aix   en  Provence ", "AIX EN PROVENCE"),
        ("Œuilly", "OEUILLY"),
        ("Pointe-à-Pitre", "POINTE A PITRE"),
        ("BASTIA", "BASTIA"),
        ("Stains", "STAINS"),  # ST only as a word
        ("Mesnil-St-Père", "MESNIL SAINT PERE"),
        ("", ""),
    ],
)
def test_city_key(text: str, key: str) -> None:
    assert city_key(text) == key
    assert city_key(key) == key  # a key is its own key


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("75011", [("75111", "Paris 11e Arrondissement", "PARIS")]),
        ("42000", [("42218", "Saint-Étienne", "SAINT ETIENNE")]),
        ("01000", [("01053", "Bourg-en-Bresse", "BOURG EN BRESSE"),
                   ("01344", "Saint-Denis-lès-Bourg", "SAINT DENIS LES BOURG")]),
        # Corsica: postal codes 20xxx, INSEE codes 2A (Corse-du-Sud) and 2B (Haute-Corse)
        ("20000", [("2A004", "Ajaccio", "AJACCIO"), ("2A139", "Lecci", "LECCI")]),
        ("20600", [("2B033", "Bastia", "BASTIA"), ("2B120", "Furiani", "FURIANI")]),
        # overseas departments 971 to 976, Saint-Pierre-et-Miquelon 975
        ("97110", [("97120", "Pointe-à-Pitre", "POINTE A PITRE")]),
        ("97200", [("97209", "Fort-de-France", "FORT DE FRANCE")]),
        ("97300", [("97302", "Cayenne", "CAYENNE")]),
        ("97600", [("97610", "Koungou", "KOUNGOU"), ("97611", "Mamoudzou", "MAMOUDZOU")]),
        ("97500", [("97501", "Miquelon-Langlade", "MIQUELON LANGLADE"),
                   ("97502", "Saint-Pierre", "SAINT PIERRE")]),
        # added by the build script: the package has no Monaco, Saint-Barthélemy, Saint-Martin
        ("98000", [(None, "Monaco", "MONACO")]),
        ("97133", [("97701", "Saint-Barthélemy", "SAINT BARTHELEMY")]),
        ("97150", [("97801", "Saint-Martin", "SAINT MARTIN")]),
        # labels cleaned by the build script: "ORBRIE (L )" -> "L ORBRIE", "PARIS 16" -> "PARIS"
        ("75016", [("75116", "Paris 16e Arrondissement", "PARIS"),
                   ("92012", "Boulogne-Billancourt", "PARIS")]),
        # a code with two routing labels for one commune: main label first
        ("13280", [("13004", "Arles", "RAPHELE LES ARLES"), ("13004", "Arles", "ARLES")]),
    ],
)  # fmt: skip
def test_communes(code: str, expected: list[tuple[str | None, str, str]]) -> None:
    assert [(c.insee_code, c.name, c.routing_label) for c in communes(code)] == expected
    assert all(c.postal_code == code for c in communes(code))


@pytest.mark.parametrize("code", ["75099", "00000", "99999", "7501", "", "ABCDE", "98800"])
def test_unknown_codes(code: str) -> None:
    assert communes(code) == ()
    assert not is_known(code)


@pytest.mark.parametrize(
    ("city", "codes"),
    [
        ("Gex", ("01170",)),
        ("gex", ("01170",)),
        ("ST ETIENNE", ("42000", "42100", "42230")),
        ("Monaco", ("98000",)),
        # the routing label of Aix-en-Provence's 13080, and the commune Luynes (Indre-et-Loire)
        ("Luynes", ("13080", "37230")),
        ("Nulle-Part-Sur-Rien", ()),
    ],
)
def test_postal_codes_of(city: str, codes: tuple[str, ...]) -> None:
    assert postal_codes_of(city) == codes


def test_find_by_department() -> None:
    rows = find("Aix-en-Provence", postal_prefix="13")
    assert {r.insee_code for r in rows} == {"13001"}
    assert find("Aix-en-Provence", postal_prefix="75") == ()


@pytest.mark.parametrize(
    ("code", "dep"), [("75011", "75"), ("01000", "01"), ("20000", "20"), ("97411", "974"),
                      ("98000", "980")]
)  # fmt: skip
def test_department(code: str, dep: str) -> None:
    assert department(code) == dep


def test_reference_coverage() -> None:
    ref = postcodes._reference()
    rows = [r for group in ref.by_code.values() for r in group]
    assert 35_000 < len(rows) < 37_000
    assert 6_000 < len(ref.by_code) < 6_500
    assert all(re.fullmatch(r"\d{5}", r.postal_code) for r in rows)
    insee = {r.insee_code for r in rows if r.insee_code}
    assert all(re.fullmatch(r"\d{5}|2[AB]\d{3}", c) for c in insee)
    assert {c[:2] for c in insee if c.startswith("2") and not c[1].isdigit()} == {"2A", "2B"}
    assert {r.postal_code[:3] for r in rows if r.postal_code.startswith("97")} >= {
        "971", "972", "973", "974", "975", "976"
    }  # fmt: skip
    # routing labels are printed on line 6: capitals, no accents, no punctuation, <= 32 chars
    assert all(re.fullmatch(r"[A-Z0-9]+(?: [A-Z0-9]+)*", r.routing_label) for r in rows)
    assert max(len(r.routing_label) for r in rows) <= 32


def test_data_file_is_small_and_has_its_attribution() -> None:
    assert DATA_FILE.stat().st_size < 1_000_000
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split("\t") == [
            "postal_code", "insee_code", "name", "routing_label", "line5"
        ]  # fmt: skip
    readme = (DATA_FILE.parent / "README.md").read_text(encoding="utf-8")
    assert "## postcodes" in readme
    assert "codes-postaux" in readme and "4.1.2" in readme and "MIT" in readme


@pytest.mark.parametrize(
    ("label", "clean"),
    [
        ("SAINT-ETIENNE", "SAINT ETIENNE"),
        ("ORBRIE (L )", "L ORBRIE"),
        ("CHAPELLES-BOURBON (LES)", "LES CHAPELLES BOURBON"),
        ("AIGUILLON-SUR- VIE (L')", "L AIGUILLON SUR VIE"),
        ("PARIS 16", "PARIS"),
        ("PARIS 07", "PARIS"),
        ("MARSEILLE 9EME", "MARSEILLE"),
        ("SAINT CHAFFREY 05330", "SAINT CHAFFREY"),
        ("POINTE A PITRE PRINCIPAL", "POINTE A PITRE"),
        ("LES CHATELLIERS N. DAME", "LES CHATELLIERS N DAME"),
        ("ST OUEN L AUMONE", "ST OUEN L AUMONE"),  # La Poste's own ST is kept
    ],
)
def test_build_script_cleans_labels(label: str, clean: str) -> None:
    assert _build_script().clean_label(label) == clean


def test_build_script_checks_the_integrity() -> None:
    script = _build_script()
    with pytest.raises(SystemExit):
        script.check_integrity(b"not the tarball", script.INTEGRITY)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_lookups_never_raise(text: str) -> None:
    assert city_key(city_key(text)) == city_key(text)
    assert isinstance(postal_codes_of(text), tuple)
    assert isinstance(communes(text), tuple)
