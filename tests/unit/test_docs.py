"""Every command and every setting is documented (the Datasette habit)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from tournesol.cli.main import app
from tournesol.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = "\n".join(
    p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *ROOT.glob("docs/*.md")]
)


def _commands(group: typer.Typer, prefix: str = "tournesol") -> list[str]:
    click_group = typer.main.get_command(group)
    names: list[str] = []

    def walk(command: object, path: str) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, f"{path} {name}")
        else:
            names.append(path)

    walk(click_group, prefix)
    return names


@pytest.mark.parametrize("command", _commands(app))
def test_every_command_is_documented(command: str) -> None:
    assert command in DOCS, f"{command!r} appears nowhere in README.md or docs/"


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"TOURNESOL_{name.upper()}" in DOCS


def test_every_reject_code_is_documented() -> None:
    sources = "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "src/tournesol/ingest").glob("*.py")
    )
    # codes are the first argument of RowRejected(...) or of an (code, reason) error tuple
    codes = set(re.findall(r'\(\s*"([A-Z]+(?:_[A-Z]+)+)"', sources)) - {"UNREADABLE"}
    documented = set(re.findall(r"`([A-Z]+(?:_[A-Z]+)+)`", DOCS))
    assert codes <= documented, f"undocumented reject codes: {sorted(codes - documented)}"


def test_every_quality_flag_is_documented() -> None:
    from tournesol.quality.flags import all_flags

    quality_doc = (ROOT / "docs/quality.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([A-Z]+(?:_[A-Z0-9]+)+)`", quality_doc))
    missing = sorted(set(all_flags()) - documented)
    assert not missing, f"flags missing from docs/quality.md: {missing}"
