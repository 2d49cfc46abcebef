"""The demo's campaign files: each reads as `tournesol campaigns create` reads it (keys, values,
every template checked), names one of the demo's segments, has a message for each of its
channels, and the two compete for some customers (the spring preview ranks higher)."""

from __future__ import annotations

from tournesol.cli.campaigns import read_campaign_file
from tournesol.demo.act import campaign_files
from tournesol.demo.understand import demo_segments


def test_the_demo_campaign_files_are_valid_and_compete() -> None:
    files = campaign_files()
    assert [f.stem for f in files] == ["jardin-printemps", "printemps-champions"]
    segments = {s["code"] for s in demo_segments()}
    found = [read_campaign_file(f) for f in files]
    for campaign in found:
        values = campaign["values"]
        assert values["segment"] in segments
        assert campaign["status"] == "scheduled"
        channels = {m["channel"] for m in campaign["messages"]}
        assert channels == set(values["channels"])
        assert 0 < values["control_share"] <= 0.2
    by_code = {f["values"]["code"]: f["values"] for f in found}
    assert by_code["printemps-champions"]["priority"] > by_code["jardin-printemps"]["priority"]
