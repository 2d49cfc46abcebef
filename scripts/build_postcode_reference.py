"""Build ``src/tournesol/quality/data/postcodes.tsv.gz`` from Etalab's ``codes-postaux`` package.

Run from the repository root (needs network access to registry.npmjs.org)::

    .venv/bin/python scripts/build_postcode_reference.py

What it does:

1. reads the registry metadata of the pinned version (``codes-postaux@4.1.2``) and checks that
   its ``dist.integrity`` is the one pinned below (a republished tarball is refused);
2. downloads the tarball and checks its SHA-512 against that integrity string;
3. reads ``codes-postaux.json`` (one row per postal code x commune: ``codePostal``,
   ``codeCommune`` (INSEE), ``nomCommune``, ``libelleAcheminement``) and the extra routing
   labels of ``codes-postaux-full.json`` (same commune and code, another label, e.g.
   ``13280 ARLES`` next to ``13280 RAPHELE LES ARLES``);
4. writes the routing labels in their AFNOR form (upper case, no accents, no punctuation, the
   article in front: ``ORBRIE (L )`` -> ``L ORBRIE``; ``PARIS 16`` and ``MARSEILLE 9EME`` ->
   ``PARIS``, ``MARSEILLE``; a postal code or ``PRINCIPAL`` glued to the label is dropped);
5. adds the rows the package lacks (Monaco 98000, Saint-Barthelemy 97133, Saint-Martin 97150);
6. writes a gzip TSV, sorted by postal code then source order, reproducible byte for byte.

``--tarball FILE`` uses an already downloaded tarball (still checked against the pinned
integrity, no network needed). Nothing downloaded is kept.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from unidecode import unidecode

PACKAGE = "codes-postaux"
VERSION = "4.1.2"
REGISTRY = "https://registry.npmjs.org"
# dist.integrity of codes-postaux@4.1.2 as published on the npm registry.
INTEGRITY = (
    "sha512-"
    "naSV2sect0t5YmX9GhQgvBD/eLGtdhbhMSEu2eYx7Gwd2zpzH2qY2CQI2r41zb5/97YOuIwLVbuHxA1TCDuIZA=="
)
OUTPUT = Path(__file__).resolve().parents[1] / "src/tournesol/quality/data/postcodes.tsv.gz"
HEADER = ("postal_code", "insee_code", "name", "routing_label", "line5")

# Rows the package does not carry (documented in src/tournesol/quality/data/README.md):
# Monaco has one postal code, 98000, routing label MONACO, and no INSEE commune code;
# Saint-Barthelemy and Saint-Martin (collectivities split from Guadeloupe in 2007) keep the
# Guadeloupe postal codes 97133 and 97150 and have the INSEE codes 97701 and 97801.
EXTRA_ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("98000", "", "Monaco", "MONACO", ""),
    ("97133", "97701", "Saint-Barthélemy", "SAINT BARTHELEMY", ""),
    ("97150", "97801", "Saint-Martin", "SAINT MARTIN", ""),
)

_POSTPOSED_ARTICLE = re.compile(r"^(?P<name>.+?)\s*\((?P<article>L|L'|L |LA|LE|LES)\s*\)$")
_ARRONDISSEMENT = re.compile(r"^(PARIS|MARSEILLE|LYON)\s+\d{1,2}\s*(?:E|EME|ER)?$")
_GLUED_CODE = re.compile(r"\s+\d{5}$")
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


def afnor(text: str) -> str:
    """Upper case, no accents, every non-alphanumeric run as one space."""
    return _NOT_ALNUM.sub(" ", unidecode(text).upper()).strip()


def clean_label(label: str) -> str:
    """A routing label as printed on line 6 (see the module docstring, step 4)."""
    text = label.strip()
    m = _POSTPOSED_ARTICLE.match(text)
    if m:
        text = f"{m['article'].strip()} {m['name']}"
    text = afnor(_GLUED_CODE.sub("", text))
    if text.endswith(" PRINCIPAL"):
        text = text.removesuffix(" PRINCIPAL")
    m = _ARRONDISSEMENT.match(text)
    return m.group(1) if m else text


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        data: bytes = response.read()
    return data


def check_integrity(data: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise SystemExit(f"unexpected integrity algorithm: {integrity}")
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != expected:
        raise SystemExit(f"{PACKAGE}@{VERSION}: SHA-512 mismatch (got sha512-{digest})")


def download() -> bytes:
    meta = json.loads(fetch(f"{REGISTRY}/{PACKAGE}/{VERSION}"))
    dist = meta["dist"]
    if dist["integrity"] != INTEGRITY:
        raise SystemExit(f"registry integrity {dist['integrity']} is not the pinned {INTEGRITY}")
    data = fetch(dist["tarball"])
    check_integrity(data, dist["integrity"])
    return data


def read_package(tarball: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:

        def load(name: str) -> list[dict[str, Any]]:
            member = tar.extractfile(f"package/{name}")
            if member is None:
                raise SystemExit(f"{name} missing from the tarball")
            rows: list[dict[str, Any]] = json.load(member)
            return rows

        return load("codes-postaux.json"), load("codes-postaux-full.json")


def build_rows(
    main: list[dict[str, Any]], full: list[dict[str, Any]]
) -> list[tuple[str, str, str, str, str]]:
    """One row per (postal code, commune, routing label); the main label of a (code, commune)
    pair comes first, then the other labels the full file gives it."""
    ordered: dict[tuple[str, ...], tuple[int, tuple[str, str, str, str, str]]] = {}
    names: dict[tuple[str, str], str] = {}
    for index, r in enumerate([*main, *full]):
        pair = (r["codePostal"], r["codeCommune"])
        if index >= len(main) and pair not in names:
            continue  # the full file only adds labels to pairs the main file knows
        name = names.setdefault(pair, r["nomCommune"])
        label = clean_label(r["libelleAcheminement"])
        line5 = afnor(r.get("ligne5") or "")
        key = (*pair, label + "\t" + line5)
        if key not in ordered:
            ordered[key] = (index, (*pair, name, label, line5))
    rows = [row for _, row in sorted(ordered.values(), key=lambda item: (item[1][0], item[0]))]
    known = {(r[0], r[1]) for r in rows}
    for extra in EXTRA_ROWS:
        if (extra[0], extra[1]) not in known:
            rows.append(extra)
    rows.sort(key=lambda r: r[0])  # stable: keeps the main label first within a code
    return rows


def write(rows: list[tuple[str, str, str, str, str]], output: Path) -> None:
    text = "\n".join("\t".join(r) for r in [HEADER, *rows]) + "\n"
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(buffer.getvalue())


def coverage(rows: list[tuple[str, str, str, str, str]]) -> str:
    codes = {r[0] for r in rows}
    communes = {r[1] for r in rows if r[1]}
    corsica = sorted({r[1][:2] for r in rows if r[0].startswith("20")})
    overseas = sorted({r[0][:3] for r in rows if r[0][:2] in ("97", "98")})
    with_line5 = sum(1 for r in rows if r[4])
    return (
        f"{len(rows)} rows, {len(codes)} postal codes, {len(communes)} communes; "
        f"Corsica INSEE prefixes {corsica}; overseas prefixes {overseas}; "
        f"rows with a line 5: {with_line5}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="use this downloaded tarball (offline)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.tarball:
        tarball = args.tarball.read_bytes()
        check_integrity(tarball, INTEGRITY)
    else:
        tarball = download()
    main_rows, full_rows = read_package(tarball)
    rows = build_rows(main_rows, full_rows)
    write(rows, args.output)
    size = args.output.stat().st_size
    print(f"{args.output}: {size} bytes; {coverage(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
