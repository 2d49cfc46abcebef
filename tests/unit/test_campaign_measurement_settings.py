"""A campaign file's measurement settings: windows per channel, the postal in-home delay and
the margin rate, read with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from tournesol.cli.campaigns import read_campaign_file

FILE = """\
code: letters
name: Letters
segment: everyone
channels: [postal, sms]
{extra}
messages:
  - {{channel: postal, language: fr, text: "Une lettre"}}
  - {{channel: sms, language: fr, text: "Un SMS STOP 36111"}}
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "letters.yaml"
    path.write_text(FILE.format(extra=extra), encoding="utf-8")
    return path


def test_the_measurement_settings_are_read(tmp_path: Path) -> None:
    extra = "attribution_windows: {sms: 7, postal: 45}\npostal_delay_days: 4\nmargin_rate: 0.35"
    values = read_campaign_file(write(tmp_path, extra))["values"]
    assert values["attribution_windows"] == {"sms": 7, "postal": 45}
    assert (values["postal_delay_days"], values["margin_rate"]) == (4, 0.35)


def test_defaults_when_left_out(tmp_path: Path) -> None:
    values = read_campaign_file(write(tmp_path, ""))["values"]
    assert values["attribution_windows"] == {}
    assert (values["postal_delay_days"], values["margin_rate"]) == (3, None)


@pytest.mark.parametrize(
    "extra",
    ["attribution_windows: [7]", "attribution_windows: {sms: soon}", "margin_rate: lots",
     "postal_delay_days: 2.5"],
)  # fmt: skip
def test_malformed_settings_are_refused(tmp_path: Path, extra: str) -> None:
    with pytest.raises(typer.Exit):
        read_campaign_file(write(tmp_path, extra))
