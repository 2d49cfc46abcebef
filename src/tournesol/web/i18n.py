"""French and English for the web UI. Strings are written in English in the templates and the
code (``_("Search")``); ``locales/fr/*.po`` (one file per part of the UI) hold their French.
The catalogs are read with Babel and compiled in memory when the app starts (no build step,
no binary file in the tree). ``tests/unit/test_i18n.py`` fails on a string left untranslated."""

from __future__ import annotations

import gettext
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
LOCALES = Path(__file__).parent / "locales"


@lru_cache
def translations(language: str) -> gettext.NullTranslations:
    """The translations of ``language`` (English is the source language: identity)."""
    paths = sorted((LOCALES / language).glob("*.po"))
    if language == "en" or not paths:
        return gettext.NullTranslations()
    merged: Translations | None = None
    for path in paths:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        buffer = BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        part = Translations(fp=buffer)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    assert merged is not None
    return merged


def best_language(accept_language: str | None) -> str:
    """The first supported language of an Accept-Language header, else French."""
    if not accept_language:
        return DEFAULT_LANGUAGE
    weighted: list[tuple[float, str]] = []
    for part in accept_language.split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        weighted.append((weight, tag.strip().lower()[:2]))
    for _weight, tag in sorted(weighted, key=lambda item: -item[0]):
        if tag in LANGUAGES:
            return tag
    return DEFAULT_LANGUAGE
