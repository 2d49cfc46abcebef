"""French first names and their diminutives, initials and spelling variants.

Identity resolution compares first names by their key (``quality.names.name_key``: upper-case
ASCII, hyphens as spaces). ``CATHY`` and ``CATHERINE``, ``JP`` and ``JEAN PIERRE``, ``MICHAEL``
and ``MICKAEL`` have different keys but may name the same person; this module says so.

The table (``data/nicknames.tsv``) is curated by the project: one line per canonical name with
its variants. A variant listed under several canonical names is ambiguous (``MAX``: MAXIME,
MAXIMILIEN, MAXENCE): it is equivalent to each of them but has no single canonical form, and
the canonical names stay different from one another. The relation is therefore not transitive:
``MAXIME ~ MAX ~ MAXENCE`` but not ``MAXIME ~ MAXENCE``.

The table is read once, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).parent / "data" / "nicknames.tsv"


@dataclass(frozen=True, slots=True)
class NicknameTable:
    """``variants``: canonical name -> its variants; ``roots``: every name of the table -> the
    canonical names it stands for (itself for a canonical name)."""

    variants: dict[str, frozenset[str]]
    roots: dict[str, frozenset[str]]


def parse_table(text: str) -> NicknameTable:
    """The table from the text of a ``canonical<TAB>variant,variant`` file (``#`` lines are
    comments); ValueError on a malformed line, a repeated canonical name, a name that is not a
    key (lower case, accents, hyphens), or a name that is both canonical and a variant."""
    variants: dict[str, frozenset[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        canonical, sep, rest = line.partition("\t")
        names = [v.strip() for v in rest.split(",")]
        if not sep or not all(names):
            raise ValueError(f"nicknames line {number}: expected canonical<TAB>variant,...")
        for name in (canonical, *names):
            if not _is_key(name):
                raise ValueError(f"nicknames line {number}: {name!r} is not a name key")
        if canonical in variants:
            raise ValueError(f"nicknames line {number}: {canonical} is listed twice")
        if canonical in names:
            raise ValueError(f"nicknames line {number}: {canonical} is its own variant")
        variants[canonical] = frozenset(names)
    roots: dict[str, set[str]] = {c: {c} for c in variants}
    for canonical, listed in variants.items():
        for name in listed:
            if name in variants:
                raise ValueError(f"nicknames: {name} is both a canonical name and a variant")
            roots.setdefault(name, set()).add(canonical)
    return NicknameTable(variants, {k: frozenset(v) for k, v in roots.items()})


def _is_key(name: str) -> bool:
    """Upper-case ASCII letters, single spaces between words."""
    words = name.split(" ")
    return all(w.isascii() and w.isalpha() and w.isupper() for w in words)


@cache
def table() -> NicknameTable:
    """The project's table, read from ``data/nicknames.tsv`` on first use."""
    return parse_table(DATA_FILE.read_text(encoding="utf-8"))


def canonical_first_name(key: str | None) -> str | None:
    """The canonical form of a first-name key: the key itself when it is unknown, canonical
    already, or ambiguous (a variant of several names); None for None.

    >>> canonical_first_name("CATHY")
    'CATHERINE'
    >>> canonical_first_name("JP")  # JEAN PIERRE, JEAN PAUL or JEAN PHILIPPE
    'JP'
    >>> canonical_first_name("ZOE")
    'ZOE'
    """
    if key is None:
        return None
    roots = table().roots.get(key)
    if roots is not None and len(roots) == 1:
        return next(iter(roots))
    return key


def nickname_equivalent(a: str | None, b: str | None) -> bool:
    """True when two first-name keys may name the same person: they are equal, one is a
    variant of the other, or both are variants of one canonical name. False when either is
    None. Symmetric, not transitive (see the module's docstring).

    >>> nickname_equivalent("SEB", "SEBASTIEN"), nickname_equivalent("CATH", "KATHY")
    (True, True)
    >>> nickname_equivalent("JEAN PIERRE", "JP"), nickname_equivalent("JEAN PIERRE", "JEAN PAUL")
    (True, False)
    """
    if a is None or b is None:
        return False
    if a == b:
        return True
    roots = table().roots
    root_a = roots.get(a)
    return root_a is not None and not root_a.isdisjoint(roots.get(b, ()))
