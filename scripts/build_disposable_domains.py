"""Build src/tournesol/quality/data/disposable_domains.txt.gz from the npm package
``disposable-email-domains`` (MIT), at a pinned version whose integrity is checked.

    .venv/bin/python scripts/build_disposable_domains.py          # write the list
    .venv/bin/python scripts/build_disposable_domains.py --check  # compare, write nothing

The package is fetched with ``npm pack`` (npm's own client and registry), its SHA-512 is
compared with the pinned one before anything is read, and its ``index.json`` (exact domains)
and ``wildcard.json`` (domains whose every subdomain is disposable, written ``*.domain``) are
written one per line, sorted, under a header naming the source. To move to a newer release:
``npm view disposable-email-domains version dist.integrity``, update the two constants below,
run the script, and review the diff.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "disposable-email-domains"
VERSION = "1.0.62"
INTEGRITY = "sha512-LBQvhRw7mznQTPoyZbsmYeNOZt1pN5aCsx4BAU/3siVFuiM9f2oyKzUaB8v1jbxFjE3aYqYiMo63kAL4pHgfWQ=="  # noqa: E501
ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src/tournesol/quality/data/disposable_domains.txt.gz"
_DOMAIN = re.compile(r"[^\s/@*]+\.[^\s/@*.]+")


def fetch(destination: Path) -> Path:
    """The package's tarball, downloaded by npm into ``destination``."""
    spec = f"{PACKAGE}@{VERSION}"
    done = subprocess.run(
        ["npm", "pack", spec, "--json", "--pack-destination", str(destination)],
        check=True,
        capture_output=True,
        text=True,
    )
    filename: str = json.loads(done.stdout)[0]["filename"]
    return destination / filename


def check_integrity(tarball: Path) -> None:
    digest = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if f"sha512-{digest}" != INTEGRITY:
        raise SystemExit(f"{tarball.name}: integrity sha512-{digest} is not the pinned one")


def read_list(archive: tarfile.TarFile, name: str) -> list[str]:
    member = archive.extractfile(f"package/{name}")
    if member is None:
        raise SystemExit(f"package/{name} is missing from the package")
    domains = json.loads(member.read().decode("utf-8"))
    cleaned = sorted({d.strip().lower() for d in domains})
    bad = [d for d in cleaned if not _DOMAIN.fullmatch(d)]
    if bad:
        raise SystemExit(f"{name}: not domains: {bad[:5]}")
    return cleaned


def render(exact: list[str], wildcards: list[str]) -> str:
    header = [
        f"# Disposable e-mail domains from the npm package {PACKAGE} {VERSION} (MIT licence,",
        "# https://github.com/ivolo/disposable-email-domains), integrity",
        f"# {INTEGRITY}.",
        "# Built by scripts/build_disposable_domains.py; do not edit by hand.",
        f"# {len(exact)} exact domains, then {len(wildcards)} '*.' domains whose every",
        "# subdomain is disposable.",
    ]
    return "\n".join([*header, *exact, *(f"*.{d}" for d in wildcards)]) + "\n"


def build() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        tarball = fetch(Path(tmp))
        check_integrity(tarball)
        with tarfile.open(tarball, "r:gz") as archive:
            exact = read_list(archive, "index.json")
            wildcards = read_list(archive, "wildcard.json")
    return render(exact, wildcards)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed list")
    args = parser.parse_args()
    text = build()
    if args.check:
        same = TARGET.exists() and gzip.decompress(TARGET.read_bytes()).decode("utf-8") == text
        print(f"{TARGET.relative_to(ROOT)}: {'up to date' if same else 'differs'}")
        sys.exit(0 if same else 1)
    # mtime=0: the same list gives the same bytes, so a rebuild shows no spurious change
    TARGET.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    lines = text.count("\n")
    print(f"wrote {TARGET.relative_to(ROOT)} ({lines} lines, {PACKAGE} {VERSION})")


if __name__ == "__main__":
    main()
