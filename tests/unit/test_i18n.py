"""Every string the web UI marks for translation has its French (French is the default)."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir

from tournesol.web.i18n import best_language, translations

SRC = Path(__file__).resolve().parents[2] / "src" / "tournesol"
METHODS = [("**/templates/**.html", "jinja2"), ("**.py", "python")]


def _marked() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(SRC), METHODS, keywords={"_": None, "gettext": None}
    ):
        if isinstance(message, str):
            found.add(message)
    return found


def test_every_marked_string_has_a_french_translation() -> None:
    catalog = translations("fr")._catalog  # type: ignore[attr-defined]
    missing = sorted(m for m in _marked() if m and not catalog.get(m))
    assert not missing, f"add these to src/tournesol/web/locales/fr/*.po: {missing}"


def test_the_reader_language_comes_from_accept_language() -> None:
    assert best_language("en-GB,en;q=0.9,fr;q=0.8") == "en"
    assert best_language("de-DE, fr;q=0.5") == "fr"
    assert best_language(None) == "fr"
    assert translations("fr").gettext("Sign in") == "Se connecter"
