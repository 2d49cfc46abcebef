"""The campaign policies file: defaults, overrides, and errors that name the bad key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tournesol.campaigns import rules
from tournesol.campaigns.service import CampaignError, Policies, load_policies


def test_no_file_means_the_defaults() -> None:
    assert load_policies(None) == Policies()


def test_a_file_overrides_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(
        "pressure:\n  caps: [{name: weekly, max: 2, period: 7d}]\n  min_gap: 72h\n"
        "contract_days: 180\ndefault_timezone: Europe/Brussels\n",
        encoding="utf-8",
    )
    policies = load_policies(path)
    assert policies.pressure.min_gap == timedelta(hours=72)
    assert [c.max_contacts for c in policies.pressure.caps] == [2]
    assert policies.consent == rules.FRENCH_DEFAULTS
    assert (policies.contract_days, policies.default_timezone) == (180, "Europe/Brussels")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default_timezone: Mars/Olympus\n", "default_timezone 'Mars/Olympus'"),
        ("contract_days: -1\n", "contract_days"),
        ("frequency: 3\n", "unknown key 'frequency'"),
        ("pressure:\n  caps: [{name: w, max: 2, period: soon}]\n", "caps"),
    ],
)
def test_a_bad_file_is_refused_with_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CampaignError, match=message):
        load_policies(path)
