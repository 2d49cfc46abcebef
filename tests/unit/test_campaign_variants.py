"""A/B variants and the randomization unit of campaigns, without a database: the shares and
their checks, the draw (stable, shares respected, independent of the control draw), the
units (household for postal campaigns, shared e-mail address), a campaign file's variants,
the editor's variant fields, and the demo's A/B test."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from tournesol.campaigns import rules
from tournesol.campaigns.service import randomization_unit
from tournesol.campaigns.views import EditorForm, apply_action, check_form, check_messages
from tournesol.cli.campaigns import read_campaign_file
from tournesol.demo.act import campaign_files

ADDRESS = "||12 RUE DES LILAS||69003 LYON|"  # the six AFNOR lines joined by |

# --- shares --------------------------------------------------------------------------------


def test_no_shares_means_equal_shares_in_name_order() -> None:
    assert rules.variant_shares(["B", "A"], {}) == (("A", 0.5), ("B", 0.5))
    assert rules.variant_shares(["C", "A", "B"], None) == tuple((name, 1 / 3) for name in "ABC")
    assert rules.variant_shares([], None) == (("A", 1.0),)  # no message yet: one variant


def test_shares_given_are_kept_and_checked() -> None:
    assert rules.variant_shares(["A", "B"], {"B": 0.25, "A": 0.75}) == (("A", 0.75), ("B", 0.25))
    # typed as 1/3 each: a rounding error away from 1 is fine
    assert len(rules.variant_shares(list("ABC"), {v: 0.333333333 for v in "ABC"})) == 3
    cases: dict[str, dict[str, object]] = {
        "add up to 0.9, not 1": {"A": 0.5, "B": 0.4},
        "the share of B must be a number above 0": {"A": 1.0, "B": 0},
        "the share of A must be a number above 0": {"A": "half", "B": 0.5},
        "variant C has no message": {"A": 0.5, "B": 0.25, "C": 0.25},
        "no share for variant B": {"A": 1.0},
    }
    for message, shares in cases.items():
        with pytest.raises(ValueError, match=message):
            rules.variant_shares(["A", "B"], shares)
    with pytest.raises(ValueError, match="variant_shares: the share of B"):
        rules.variant_shares(["A", "B"], {"A": 0.5, "B": True})


@pytest.mark.parametrize("name", ["a", "1", "", "ABCDEFGHI", "B-2", " B"])
def test_variant_names_are_capital_letters_and_digits(name: str) -> None:
    with pytest.raises(ValueError, match="capital letters or digits"):
        rules.check_variant_name(name)
    assert rules.check_variant_name("B2") == "B2"


def test_every_variant_needs_the_channels_and_languages_of_the_others() -> None:
    messages = [
        ("email", "fr", "A"), ("email", "en", "A"), ("postal", "fr", "A"),
        ("email", "fr", "B"), ("email", "en", "B"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="variant B: no postal message in 'fr'"):
        rules.variants_of(messages, {})
    full = [*messages, ("postal", "fr", "B")]
    assert rules.variants_of(full, {"A": 0.6, "B": 0.4}) == (("A", 0.6), ("B", 0.4))
    assert rules.variants_of([("sms", "fr", "A")], {}) == (("A", 1.0),)


# --- the draw ------------------------------------------------------------------------------


def test_the_draw_respects_the_shares_and_is_independent_of_the_control_group() -> None:
    shares = (("A", 0.5), ("B", 0.3), ("C", 0.2))
    salt = "spring-1"
    units = [f"email:{i:040x}" for i in range(30_000)]
    drawn = {u: rules.pick_variant(u, salt, shares) for u in units}
    counts = Counter(drawn.values())
    for name, share in shares:
        # three standard deviations of a binomial proportion
        assert abs(counts[name] / len(units) - share) < 3 * math.sqrt(share * (1 - share) / 3e4)
    held = [u for u in units if rules.in_control(u, salt, 0.5)]
    among_held = Counter(drawn[u] for u in held)
    assert abs(among_held["A"] / len(held) - 0.5) < 0.03  # the same mix in both halves


@given(st.text(min_size=1, max_size=30), st.text(max_size=20))
def test_the_draw_is_stable_and_a_variant_of_the_campaign(unit: str, salt: str) -> None:
    shares = rules.variant_shares(["A", "B"], {"A": 0.9, "B": 0.1})
    first = rules.pick_variant(unit, salt, shares)
    assert first in ("A", "B") and rules.pick_variant(unit, salt, shares) == first
    # the variant draw uses its own salt: the same bucket as control_bucket(unit, salt:variant)
    point = rules.control_bucket(unit, f"{salt}:variant")
    assert first == ("A" if point < 0.9 else "B")


def test_one_variant_draws_nothing() -> None:
    assert rules.pick_variant("anything", "salt", (("A", 1.0),)) == "A"


# --- the randomization unit ----------------------------------------------------------------


def test_a_postal_campaign_draws_by_household_the_others_by_e_mail_address() -> None:
    # two people at one address with their own e-mail addresses
    ana = randomization_unit(1, "ana@exemple.fr", ADDRESS, household=True)
    bob = randomization_unit(2, "bob@exemple.fr", ADDRESS.lower(), household=True)
    assert ana == bob and ana.startswith("household:")
    assert randomization_unit(1, "ana@exemple.fr", ADDRESS, household=False) != randomization_unit(
        2, "bob@exemple.fr", ADDRESS, household=False
    )
    # a shared e-mail address, whatever its case or spaces
    assert randomization_unit(3, "Famille@Exemple.fr ", None, household=False) == (
        randomization_unit(4, "famille@exemple.fr", None, household=False)
    )
    # without an address, a postal campaign falls back on the e-mail address, then the customer
    assert randomization_unit(3, "famille@exemple.fr", None, household=True).startswith("email:")
    assert randomization_unit(5, None, None, household=True) == "customer:5"
    assert rules.in_control(ana, "salt", 0.5) == rules.in_control(bob, "salt", 0.5)


# --- a campaign file -----------------------------------------------------------------------

FILE = """\
code: ab
name: A/B
segment: everyone
channels: [email, postal]
{shares}
messages:
  - {{channel: email, language: fr, subject: Hi, text: "Hi {{{{ unsubscribe_url }}}}"}}
  - {{channel: email, language: fr, variant: b, subject: Ho, text: "Ho {{{{ unsubscribe_url }}}}"}}
  - &letter {{channel: postal, language: fr, text: "Une lettre"}}
{extra}
"""


def campaign_file(
    tmp_path: Path, *, shares: str = "", extra: str = "  - <<: *letter\n    variant: B"
) -> Path:
    path = tmp_path / "ab.yaml"
    path.write_text(FILE.format(shares=shares, extra=extra), encoding="utf-8")
    return path


def test_a_campaign_file_carries_its_variants(tmp_path: Path) -> None:
    found = read_campaign_file(campaign_file(tmp_path, shares="variant_shares: {A: 0.7, b: 0.3}"))
    assert found["values"]["variant_shares"] == {"A": 0.7, "B": 0.3}
    assert [(m["channel"], m["variant"]) for m in found["messages"]] == [
        ("email", "A"), ("email", "B"), ("postal", "A"), ("postal", "B"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("shares", "extra", "said"),
    [
        ("", "", "variant B: no postal message in 'fr'"),
        ("variant_shares: {A: 0.7, B: 0.2}", None, "the shares add up to 0.9, not 1"),
        ("variant_shares: {A: 1.2, B: -0.2}", None, "the share of B must be a number above 0"),
        ("variant_shares: {A: 0.5, C: 0.5}", None, "variant C has no message"),
        ("variant_shares: [A, B]", None, "variant_shares: a mapping"),
        (
            "",
            "  - {channel: postal, language: fr, variant: B, text: L}\n"
            "  - {channel: postal, language: fr, variant: B, text: L}",
            "a second postal message",
        ),
        ("", "  - {channel: postal, language: fr, variant: b-2, text: L}", "capital letters"),
        ("kind: triggered", None, "a triggered campaign has one version"),
    ],
)
def test_a_campaign_file_with_bad_variants_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shares: str, extra: str | None, said: str
) -> None:
    path = (
        campaign_file(tmp_path, shares=shares)
        if extra is None
        else campaign_file(tmp_path, shares=shares, extra=extra)
    )
    with pytest.raises(typer.Exit):
        read_campaign_file(path)
    assert said in " ".join(capsys.readouterr().err.split())


# --- the editor ----------------------------------------------------------------------------


def editor(**values: str) -> EditorForm:
    base = {
        "code": "ab", "name": "A/B", "brand": "", "objective": "", "segment": "everyone",
        "purpose": "marketing", "starts_at": "", "ends_at": "", "priority": "50",
        "expected_value": "0", "fixed_cost": "0", "control_percent": "10",
        "attribution_days": "30", "default_language": "fr", "status": "draft",
    }  # fmt: skip
    return EditorForm(base | values, ["email"], ["fr"])


def test_the_editor_adds_and_removes_variants_without_saving() -> None:
    form = editor()
    assert apply_action(form, "add_variant") and form.variants == ["A", "B"]
    assert apply_action(form, "add_variant") and form.variants == ["A", "B", "C"]
    form.messages[("email", "fr", "C")] = {"subject": "x", "text": "y", "html": ""}
    assert apply_action(form, "remove_variant:C") and form.variants == ["A", "B"]
    assert ("email", "fr", "C") not in form.messages
    assert apply_action(form, "remove_variant:A") and form.variants == ["A", "B"]  # A stays
    assert not apply_action(form, "")  # a save
    assert form.key("email", "fr", "A") == "m.email.fr" and form.key("email", "fr", "B") == (
        "m.email.fr.B"
    )


def test_the_editor_checks_the_shares_and_the_messages_of_each_variant() -> None:
    form = editor()
    form.variants = ["A", "B"]
    settings, errors = check_form(form, new=True)
    assert settings is not None and settings.variant_shares == {}  # equal shares
    form.shares = {"A": "70", "B": "30"}
    settings, errors = check_form(form, new=True)
    assert settings is not None and settings.variant_shares == {"A": 0.7, "B": 0.3}
    form.shares = {"A": "70", "B": ""}
    assert "variants" in check_form(form, new=True)[1]
    form.shares = {"A": "70", "B": "20"}
    assert check_form(form, new=True)[1]["variants"].startswith("The shares of the variants")
    form.shares = {"A": "100", "B": "0"}
    errors = check_form(form, new=True)[1]
    assert "share.A" in errors and "share.B" in errors
    text = "Bonjour {{ unsubscribe_url }}"
    form.messages = {("email", "fr", "A"): {"subject": "Hi", "text": text, "html": ""}}
    errors, _lines = check_messages(form)
    assert set(errors) == {"m.email.fr.B.text", "variants"}
    form.messages[("email", "fr", "B")] = {"subject": "Ho", "text": "{{ nope }}", "html": ""}
    errors, _lines = check_messages(form)
    assert set(errors) == {"m.email.fr.B.text"} and "nope" in errors["m.email.fr.B.text"]


# --- the demo ------------------------------------------------------------------------------


def test_the_demo_tests_two_subject_lines() -> None:
    [jardin] = [f for f in campaign_files() if f.stem == "jardin-printemps"]
    found = read_campaign_file(jardin)
    messages = {(m["channel"], m["language"], m["variant"]): m for m in found["messages"]}
    variants = rules.variants_of(list(messages), found["values"]["variant_shares"])
    assert variants == (("A", 0.5), ("B", 0.5))
    for language in ("fr", "en"):
        a, b = messages[("email", language, "A")], messages[("email", language, "B")]
        assert a["subject"] != b["subject"] and a["body_text"] == b["body_text"]
    assert (
        messages[("postal", "fr", "A")]["body_text"] == messages[("postal", "fr", "B")]["body_text"]
    )
