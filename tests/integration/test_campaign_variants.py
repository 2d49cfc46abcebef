"""A/B variants and control groups drawn by randomization unit, planned on SQLite and
PostgreSQL: the shares respected on a few thousand customers and stored on each target row,
the same draw when a campaign is planned again, a household in one arm for a postal
campaign, a shared e-mail address in one arm, the dispatcher sending each target its
variant's e-mail (through a real SMTP server) and call script, the web editor, and the
migration down and up."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tests.integration.test_campaign_dispatch import (
    HTML,
    TEXT,
    at,
    make_settings,
    outbox,
    received,
    smtp,
)
from tests.integration.test_campaign_plan import NOW, consent, drawn_unit
from tests.integration.test_campaigns_cli import CAMPAIGN, Cli, cli
from tests.integration.test_smtp_sender import Recorder, start_server
from tests.web_support import signed_in
from tournesol.campaigns import rules
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.dispatch import dispatch
from tournesol.campaigns.models import Campaign, CampaignMessage, CampaignTarget
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, unit_of_work
from tournesol.interactions.models import Interaction
from tournesol.migrations import downgrade, upgrade
from tournesol.segments.models import Segment

__all__ = ["cli", "smtp", "start_server"]  # fixtures used here

LETTER = "{{ civility | default('Madame, Monsieur') }}, une lettre."


@pytest.fixture
def brand(session: Session) -> int:
    row = Brand(code="SOLEIL", name="Soleil")
    session.add(row)
    session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    session.flush()
    return row.id


def add_customers(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Customers in one insert (a plan's worth of them is slow one by one), their ids."""
    tag = f"T{len(rows)}-{session.scalar(select(func.count()).select_from(Customer))}"
    values = [{"first_name": "Client", "last_name": tag, "country": "FR"} | row for row in rows]
    session.execute(insert(Customer), values)
    return list(session.scalars(select(Customer.id).where(Customer.last_name == tag)))


def address(n: int) -> dict[str, str]:
    return {"address_line4": f"{n} RUE DES LILAS", "address_line6": "69003 LYON"}


def ab_campaign(
    session: Session,
    code: str,
    channels: list[str],
    *,
    control: float,
    shares: dict[str, float] | None = None,
    variants: str = "AB",
) -> Campaign:
    c = campaigns.create(
        session, code=code, name=code.title(), segment="everyone", channels=channels,
        brand="SOLEIL", control_share=control, variant_shares=shares,
    )  # fmt: skip
    for variant in variants:
        for channel in channels:
            if channel == "email":
                campaigns.set_message(
                    session, campaign=c, channel="email", language="fr", variant=variant,
                    subject=f"Variante {variant}, {{{{ first_name }}}}", body_text=TEXT,
                    body_html=HTML,
                )  # fmt: skip
            else:
                campaigns.set_message(
                    session, campaign=c, channel=channel, language="fr", variant=variant,
                    body_text=f"{LETTER} ({variant})",
                )  # fmt: skip
    return c


def plan(session: Session, *campaign: Campaign) -> list[campaigns.PlanReport]:
    return campaigns.plan(session, campaigns=list(campaign), now=NOW, policies=campaigns.Policies())


def arms(session: Session, campaign: Campaign) -> dict[int, tuple[str, str | None]]:
    """customer id -> (group, variant)."""
    t = CampaignTarget
    rows = session.execute(
        select(t.customer_id, t.group, t.variant).where(t.campaign_id == campaign.id)
    )
    return {cid: (group, variant) for cid, group, variant in rows}


# --- shares and stability ------------------------------------------------------------------


def test_the_shares_are_respected_and_each_target_keeps_its_variant(
    session: Session, brand: int
) -> None:
    """3,000 households (a letter each, no consent needed for postal mail): 10 % held out,
    the others split 60/40 between A and B, as the hash of their unit says."""
    ids = add_customers(session, [address(n) for n in range(3_000)])
    c = ab_campaign(session, "jardin", ["postal"], control=0.1, shares={"A": 0.6, "B": 0.4})
    [report] = plan(session, c)
    got = arms(session, c)
    assert set(got) == set(ids)
    groups = Counter(group for group, _ in got.values())
    assert groups["excluded"] == 0 and abs(groups["control"] / 3_000 - 0.1) < 0.02
    assert all(variant is None for group, variant in got.values() if group == "control")
    variants = Counter(variant for group, variant in got.values() if group == "target")
    targets = groups["target"]
    sd = math.sqrt(0.6 * 0.4 / targets)
    assert abs(variants["A"] / targets - 0.6) < 4 * sd and variants["A"] + variants["B"] == targets
    assert report.variants == variants and report.planned == targets
    # exactly the draw of rules.pick_variant on the unit
    shares = (("A", 0.6), ("B", 0.4))
    for cid in ids[:300]:
        group, variant = got[cid]
        if group == "target":
            unit = drawn_unit(session, cid, household=True)
            assert variant == rules.pick_variant(unit, c.control_salt, shares)
    # the timeline of a target names its variant; one outbox row per target
    target = next(cid for cid, (group, _) in got.items() if group == "target")
    payload = session.scalar(
        select(Interaction.payload).where(
            Interaction.customer_id == target, Interaction.campaign_code == "jardin"
        )
    )
    assert payload is not None and payload["variant"] == got[target][1]
    assert len(outbox(session, c)) == targets


def test_a_campaign_planned_again_draws_the_same_arms_and_variants(
    session: Session, brand: int
) -> None:
    add_customers(session, [address(n) for n in range(400)])
    c = ab_campaign(session, "again", ["postal"], control=0.2, variants="ABC")
    [dry] = campaigns.plan(
        session, campaigns=[c], now=NOW, policies=campaigns.Policies(), dry_run=True
    )
    first = session.begin_nested()
    plan(session, c)
    once = arms(session, c)
    first.rollback()
    assert not arms(session, c)
    session.refresh(c)
    assert c.status == "draft"
    plan(session, c)
    again = arms(session, c)
    assert once == again
    assert dry.variants == Counter(v for g, v in again.values() if g == "target")
    assert set(dry.variants) == {"A", "B", "C"}


# --- randomization units -------------------------------------------------------------------


def test_a_household_lands_in_one_arm_of_a_postal_campaign(session: Session, brand: int) -> None:
    """Three people per address, each with an e-mail address of their own and no e-mail
    consent: a letter to the household must not reach a control member."""
    rows = [address(n) | {"email": f"p{n}-{k}@exemple.fr"} for n in range(120) for k in range(3)]
    ids = add_customers(session, rows)
    c = ab_campaign(session, "foyer", ["email", "postal"], control=0.5)
    plan(session, c)
    got = arms(session, c)
    by_household: dict[str | None, set[tuple[str, str | None]]] = defaultdict(set)
    lines = session.execute(select(Customer.id, Customer.address_line4).where(Customer.id.in_(ids)))
    for cid, street in lines:
        by_household[street].add(got[cid])
    assert len(by_household) == 120
    assert all(len(found) == 1 for found in by_household.values())
    seen = {next(iter(found)) for found in by_household.values()}
    assert {("control", None), ("target", "A"), ("target", "B")} <= seen


def test_customers_sharing_an_e_mail_address_land_in_one_arm(session: Session, brand: int) -> None:
    """Couples sharing an inbox (no postal address): an e-mail campaign draws the address,
    so the message never reaches a control member through their partner's copy."""
    shared: dict[int, str] = {}
    for n in range(60):
        for _partner in range(2):
            cid = add_customers(session, [{"email": f"famille{n}@exemple.fr"}])[0]
            consent(session, cid, "email", "granted", brand)
            shared[cid] = f"famille{n}"
    c = ab_campaign(session, "couple", ["email"], control=0.5)
    plan(session, c)
    got = arms(session, c)
    by_address: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for cid, inbox in shared.items():
        by_address[inbox].add(got[cid])
    assert all(len(found) == 1 for found in by_address.values())
    assert len({next(iter(found)) for found in by_address.values()}) == 3  # control, A, B


def test_variants_must_cover_the_same_messages_and_triggered_campaigns_have_one(
    session: Session, brand: int
) -> None:
    c = ab_campaign(session, "half", ["email", "postal"], control=0.0, variants="A")
    campaigns.set_message(
        session, campaign=c, channel="email", language="fr", variant="B", subject="B",
        body_text=TEXT,
    )  # fmt: skip
    with pytest.raises(campaigns.CampaignError, match="variant B: no postal message in 'fr'"):
        plan(session, c)
    c.variant_shares = {"A": 0.5, "C": 0.5}
    campaigns.set_message(
        session, campaign=c, channel="postal", language="fr", variant="B", body_text=LETTER
    )
    with pytest.raises(campaigns.CampaignError, match="variant C has no message"):
        plan(session, c)
    with pytest.raises(campaigns.CampaignError, match=r"add up to 1\.1"):
        campaigns.create(
            session, code="bad", name="Bad", segment="everyone", channels=["email"],
            variant_shares={"A": 0.6, "B": 0.5},
        )  # fmt: skip
    triggered = campaigns.create(
        session, code="welcome", name="Welcome", segment=None, channels=["email"],
        kind="triggered",
    )  # fmt: skip
    with pytest.raises(campaigns.CampaignError, match="triggered campaign has one version"):
        campaigns.set_message(
            session, campaign=triggered, channel="email", language="fr", variant="B",
            subject="B", body_text=TEXT,
        )  # fmt: skip


# --- sending -------------------------------------------------------------------------------


def test_the_dispatcher_sends_each_target_its_variant(
    session: Session,
    factory: sessionmaker[Session],
    brand: int,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    people = []
    for n in range(24):
        cid = add_customers(session, [{"email": f"ab{n}@exemple.fr", "first_name": f"P{n}"}])[0]
        consent(session, cid, "email", "granted", brand)
        people.append(cid)
    c = ab_campaign(session, "soldes", ["email"], control=0.0)
    plan(session, c)
    session.commit()
    variants = {cid: variant for cid, (_, variant) in arms(session, c).items()}
    assert set(variants.values()) == {"A", "B"}
    report = dispatch(factory, settings=make_settings(tmp_path, smtp_port=port), now=at(NOW))
    assert report.sent["email"] == 24
    rows = {o.id: o for o in outbox(session, c).values()}
    for outbox_id, message in received(handler).items():
        customer = rows[outbox_id].customer_id
        assert str(message["Subject"]).startswith(f"Variante {variants[customer]}, P")


def test_a_call_list_names_the_variant_script(
    session: Session, factory: sessionmaker[Session], brand: int, tmp_path: Path
) -> None:
    callers = add_customers(session, [{"phone_mobile": f"+336123456{n:02d}"} for n in range(12)])
    for cid in callers:
        consent(session, cid, "phone", "granted", brand)
    c = ab_campaign(session, "appel", ["phone"], control=0.0)
    plan(session, c)
    session.commit()
    variants = {cid: variant for cid, (_, variant) in arms(session, c).items()}
    report = dispatch(factory, settings=make_settings(tmp_path), now=at(NOW + timedelta(hours=3)))
    [path] = report.outputs
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(";")
    rows = {o.id: o.customer_id for o in outbox(session, c).values()}
    for line in lines[1:]:
        cells = dict(zip(header, line.split(";"), strict=True))
        customer = rows[int(cells["outbox_key"])]
        assert cells["script_reference"] == f"appel/fr/{variants[customer]}"


# --- the command line ----------------------------------------------------------------------


def test_the_command_line_creates_shows_and_plans_an_ab_test(cli: Cli) -> None:
    """The CLI's spring campaign with a variant B of each message, 50/50."""
    variant_b = """\
  - channel: email
    language: fr
    variant: B
    subject: "Le printemps arrive, {{ first_name }}"
    text: "Bonjour {{ first_name }}. Se désinscrire : {{ unsubscribe_url }}"
  - {channel: postal, language: fr, variant: B, text: "Cher {{ first_name }}, une lettre B."}
"""
    path = cli.folder / "ab.yaml"
    path.write_text(
        CAMPAIGN.replace(
            "control_share: 0\n", "control_share: 0\nvariant_shares: {A: 0.5, B: 0.5}\n"
        )
        + variant_b,
        encoding="utf-8",
    )
    code, out = cli("create", str(path))
    assert code == 0 and "4 messages" in out, out
    code, out = cli("show", "spring")
    assert code == 0 and "variants" in out and "A 50.0%, B 50.0%" in out
    assert "message email fr variant B: Le printemps arrive" in out
    code, out = cli("plan", "spring", "--now", NOW.isoformat())
    assert code == 0 and "variants: A " in out and ", B " in out, out
    with unit_of_work(cli.factory) as session:
        c = campaigns.get_by_code(session, code="spring")
        assert c is not None
        targets = arms(session, c)
    assert {v for g, v in targets.values() if g == "target"} <= {"A", "B"}
    assert all(v is not None for g, v in targets.values() if g == "target")
    # a B letter missing: refused before anything is written
    path.write_text(path.read_text(encoding="utf-8").rsplit("  - {channel: postal", 1)[0])
    code, out = cli("create", str(path), "--replace")
    assert code == 1 and "variant B: no postal message in 'fr'" in " ".join(out.split())


# --- the editor ----------------------------------------------------------------------------


def test_the_editor_adds_a_variant_with_its_share_and_the_page_shows_it(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    with unit_of_work(factory) as s:
        s.add(Brand(code="SOLEIL", name="Soleil"))
        s.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    client = signed_in(app, factory, "marketer")
    text = "Bonjour {{ first_name }}. Se désinscrire : {{ unsubscribe_url }}"
    form = {
        "code": "ab", "name": "A/B", "brand": "SOLEIL", "objective": "", "segment": "everyone",
        "channel_1": "email", "purpose": "marketing", "starts_at": "", "ends_at": "",
        "priority": "50", "expected_value": "0", "fixed_cost": "0", "control_percent": "10",
        "attribution_days": "30", "default_language": "fr", "languages": "", "status": "draft",
        "variant": "A", "m.email.fr.subject": "Sujet A", "m.email.fr.text": text,
    }  # fmt: skip
    page = client.post("/campaigns/new", data=form | {"action": "add_variant"})
    assert page.status_code == 200
    html = page.text
    assert 'name="m.email.fr.B.subject"' in html and 'name="share.B"' in html
    assert 'value="remove_variant:B"' in html and "Sujet A" in html
    # B left empty: refused, the empty message marked
    page = client.post("/campaigns/new", data=form | {"variant": ["A", "B"]})
    assert page.status_code == 400 and 'id="m-email-fr-B-text-error"' in page.text
    filled = form | {
        "variant": ["A", "B"], "share.A": "70", "share.B": "30",
        "m.email.fr.B.subject": "Sujet B", "m.email.fr.B.text": text,
    }  # fmt: skip
    page = client.post("/campaigns/new", data=filled | {"share.B": "20"})
    assert page.status_code == 400 and "must add up to 100" in page.text
    page = client.post("/campaigns/new", data=filled, follow_redirects=False)
    assert page.status_code == 303
    with unit_of_work(factory) as s:
        saved = campaigns.get_by_code(s, code="ab")
        assert saved is not None and saved.variant_shares == {"A": 0.7, "B": 0.3}
        subjects = dict(
            s.execute(
                select(CampaignMessage.variant, CampaignMessage.subject).where(
                    CampaignMessage.campaign_id == saved.id
                )
            ).all()
        )
    assert subjects == {"A": "Sujet A", "B": "Sujet B"}
    page = client.get("/campaigns/ab")
    assert "A/B variants" in page.text and "Sujet B" in page.text
    assert "variant=B" in page.text  # B's preview
    edit = client.get("/campaigns/ab/edit").text
    assert 'name="share.B" type="text" inputmode="decimal" value="30"' in edit
    # removing B, then saving: one variant again, equal shares
    page = client.post("/campaigns/ab/edit", data=filled | {"action": "remove_variant:B"})
    assert 'name="m.email.fr.B.subject"' not in page.text
    page = client.post("/campaigns/ab/edit", data=form | {"variant": ["A"]}, follow_redirects=False)
    assert page.status_code == 303
    with unit_of_work(factory) as s:
        saved = campaigns.get_by_code(s, code="ab")
        assert saved is not None and saved.variant_shares == {}
        count = s.scalar(select(func.count()).where(CampaignMessage.campaign_id == saved.id))
    assert count == 1


def test_the_campaign_page_shows_the_targets_of_each_variant(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    with unit_of_work(factory) as s:
        s.add(Brand(code="SOLEIL", name="Soleil"))
        s.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
        s.flush()
        add_customers(s, [address(n) for n in range(40)])
        c = ab_campaign(s, "lettre", ["postal"], control=0.0)
        plan(s, c)
        counts = Counter(v for _, v in arms(s, c).values())
    client = signed_in(app, factory, "marketer")
    response = client.get("/campaigns/lettre")
    assert response.status_code == 200, response.text[-3000:]
    page = " ".join(response.text.split())
    for variant in "AB":
        assert f"{variant} 50" in page and f"({counts[variant]} targets)" in page


# --- the migration -------------------------------------------------------------------------


def test_the_variant_columns_go_down_and_up(backend: str, fresh_databases: FreshDatabase) -> None:
    engine = make_engine(fresh_databases.url(backend))
    try:
        downgrade(engine, "0020")
        columns = {c["name"] for c in inspect(engine).get_columns("campaign_message")}
        assert "variant" not in columns
        upgrade(engine)
        found = inspect(engine)
        assert "variant" in {c["name"] for c in found.get_columns("campaign_target")}
        assert "variant_shares" in {c["name"] for c in found.get_columns("campaign")}
        unique = {
            tuple(u["column_names"]) for u in found.get_unique_constraints("campaign_message")
        }
        assert ("campaign_id", "channel", "language", "variant") in unique
    finally:
        engine.dispose()
