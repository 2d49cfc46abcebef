"""The global holdout on SQLite and PostgreSQL: versions with a share and a salt, every active
customer's arm stored with its date, households and shared e-mail addresses drawn together;
plans hold its members out of marketing (a control row with the time it would have gone, no
message) but not out of transactional messages; the dispatch gate suppresses their journey
messages the same way."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tests.integration.test_campaign_plan import NOW, World, new_campaign, targets, world
from tests.integration.test_journey_gate import brand_id, triggered
from tests.integration.test_journey_gate import consent as consent_email
from tests.integration.test_journey_gate import person as gate_person
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Outbox
from tournesol.consent import service as consent_service
from tournesol.customers.models import Customer
from tournesol.reporting import holdouts
from tournesol.reporting.models import HoldoutAssignment, HoldoutGroup

__all__ = ["world"]  # fixture used here


def add(session: Session, name: str, **values: object) -> int:
    row = Customer(first_name=name, last_name="Holdout", country="FR", **values)
    session.add(row)
    session.flush()
    return row.id


def arms(session: Session, version: int) -> dict[int, tuple[str, bool]]:
    rows = session.execute(
        select(HoldoutAssignment.customer_id, HoldoutAssignment.unit, HoldoutAssignment.held_out)
        .join(HoldoutGroup, HoldoutGroup.id == HoldoutAssignment.group_id)
        .where(HoldoutGroup.version == version)
    )
    return {cid: (unit, held) for cid, unit, held in rows}


def test_versions_units_and_stored_arms(session: Session) -> None:
    households, shared, alone = [], [], []
    for i in range(150):  # two people per household (the same postal address)
        address = {"address_line4": f"{i} RUE DES LILAS", "address_line6": "69003 LYON"}
        households.append(
            (add(session, f"H{i}a", **address), add(session, f"H{i}b", email=f"h{i}@x.fr", **address))
        )  # fmt: skip
    for i in range(100):  # two people sharing an e-mail address, no address
        shared.append(
            (add(session, f"S{i}a", email=f"s{i}@x.fr"), add(session, f"S{i}b", email=f"S{i}@X.fr"))
        )  # fmt: skip
    for i in range(300):
        alone.append(add(session, f"A{i}"))
    gone = add(session, "Merged", status="merged")

    holdout, stored = holdouts.regenerate(session, now=NOW, actor="test", share=0.1, salt="v1")
    assert (holdout.version, holdout.share, stored) == (1, 0.1, 300 + 200 + 300)
    first = arms(session, 1)
    assert gone not in first
    for a, b in [*households, *shared]:  # drawn together
        assert first[a][1] == first[b][1] and first[a][0] == first[b][0]
    assert first[households[0][0]][0].startswith("household:")
    assert first[shared[0][0]][0].startswith("email:")
    assert first[alone[0]][0] == f"customer:{alone[0]}"
    assert "LILAS" not in "".join(unit for unit, _ in first.values())  # hashed
    units = {unit: held for unit, held in first.values()}
    share = sum(units.values()) / len(units)
    assert 0.05 < share < 0.16, share  # 550 units drawn at 10 %
    summary = holdouts.summary(session, holdout)
    assert summary == {"assigned": 800, "held_out": sum(h for _, h in first.values())}

    # a customer created since is drawn by the same rule, then stored by assign()
    late = add(session, "Late", email="s0@x.fr")  # the e-mail address of S0a and S0b
    assert holdouts.holdout_of(holdout, {}, late, "s0@x.fr", None) == first[shared[0][0]][1]
    assert holdouts.assign(session, now=NOW + timedelta(days=1)) == 1
    assert holdouts.assign(session, now=NOW + timedelta(days=1)) == 0
    assert arms(session, 1)[late] == first[shared[0][0]]

    # a new version: a new salt, a new draw; the old one ends and keeps its arms
    again, _ = holdouts.regenerate(session, now=NOW + timedelta(days=2), actor="t", salt="v2")
    assert (again.version, again.share) == (2, holdouts.DEFAULT_SHARE)
    assert holdouts.active(session) == again
    old = session.scalar(select(HoldoutGroup).where(HoldoutGroup.version == 1))
    assert old is not None and old.ended_at == NOW + timedelta(days=2)
    assert len(arms(session, 1)) == 801 and len(arms(session, 2)) == 801
    assert arms(session, 1) != arms(session, 2)  # another salt, another draw

    for share in (0.005, 0.2):
        with pytest.raises(holdouts.HoldoutError, match="between 1% and 15%"):
            holdouts.regenerate(session, now=NOW, actor="t", share=share)


def test_plans_hold_the_global_holdout_out_of_marketing_only(
    session: Session, world: World
) -> None:
    holdout, _ = holdouts.regenerate(session, now=NOW, actor="test", share=0.15, salt="plan")
    held = {cid for cid, (_, h) in arms(session, holdout.version).items() if h}
    spring = new_campaign(session, "spring", priority=50)
    [report] = campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())
    planned = targets(session, spring)
    global_rows = {cid for cid, t in planned.items() if t.reason == "global_holdout"}
    assert global_rows, "some customers of the world must fall in the holdout"
    assert global_rows <= held
    assert all(planned[c].group == "control" and planned[c].send_at for c in global_rows)
    # a held-out customer is either in the holdout rows or excluded for a reason that comes
    # first (no consent, no contact point...): never sent anything
    assert all(planned[c].group == "excluded" for c in held & set(planned) - global_rows)
    sent_to = set(
        session.scalars(select(Outbox.customer_id).where(Outbox.campaign_id == spring.id))
    )
    assert not held & sent_to
    assert report.control == len(global_rows)

    # a transactional campaign goes to the holdout too
    notice = campaigns.create(
        session, code="notice", name="Notice", segment="everyone", channels=["email"],
        brand="SOLEIL", purpose="transactional", control_share=0.0,
    )  # fmt: skip
    campaigns.set_message(
        session, campaign=notice, channel="email", language="fr", subject="Info",
        body_text="Votre contrat", body_html=None,
    )  # fmt: skip
    campaigns.plan(session, campaigns=[notice], now=NOW, policies=campaigns.Policies())
    notice_rows = targets(session, notice)
    assert notice_rows and not any(t.reason == "global_holdout" for t in notice_rows.values())


def test_the_gate_suppresses_journey_marketing_to_the_holdout(session: Session) -> None:
    brand_id(session)
    people = [gate_person(session, f"P{i}") for i in range(60)]
    for cid in people:
        consent_email(session, cid)
        consent_service.set_consent(
            session, customer_id=cid, channel="email", purpose="transactional", brand_id=None,
            status="granted", proof_source="checkout", proof_text_version="v1",
            collected_at=NOW - timedelta(days=30), actor="test",
        )  # fmt: skip
    holdout, _ = holdouts.regenerate(session, now=NOW, actor="test", share=0.15, salt="gate")
    held = {cid for cid, (_, h) in arms(session, holdout.version).items() if h}
    assert held and set(people) - held
    mail = triggered(session, "hello", ["email"])
    receipt = triggered(session, "receipt", ["email"], purpose="transactional")
    for cid in people:
        answer = campaigns.admit(
            session, campaign=mail, customer_id=cid, channel="email", key=f"m-{cid}",
            now=NOW, policies=campaigns.Policies(),
        )  # fmt: skip
        expected = ("suppressed", "global_holdout") if cid in held else ("sent", None)
        assert (answer.outcome, answer.reason) == expected
        answer = campaigns.admit(
            session, campaign=receipt, customer_id=cid, channel="email", key=f"r-{cid}",
            now=NOW, policies=campaigns.Policies(),
        )  # fmt: skip
        assert (answer.outcome, answer.reason) == ("sent", None)


def test_the_holdout_commands(
    fresh_databases: FreshDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tournesol.cli.common import console, err_console
    from tournesol.cli.main import app
    from tournesol.config import get_settings
    from tournesol.db import make_engine, make_session_factory, unit_of_work

    url = fresh_databases.url("sqlite")
    monkeypatch.setenv("TOURNESOL_DATABASE_URL", url)
    monkeypatch.setenv("TOURNESOL_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setattr(console, "width", 160)
    monkeypatch.setattr(err_console, "width", 160)
    get_settings.cache_clear()
    engine = make_engine(url)
    factory = make_session_factory(engine)
    runner = CliRunner()
    try:
        with unit_of_work(factory) as session:
            for i in range(40):
                add(session, f"C{i}", email=f"c{i}@x.fr")
        result = runner.invoke(app, ["holdout", "show"])
        assert result.exit_code == 1 and "no global holdout yet" in result.output
        result = runner.invoke(app, ["holdout", "regenerate", "--share", "20", "--yes"])
        assert result.exit_code == 1 and "between 1% and 15%" in result.output
        result = runner.invoke(app, ["holdout", "regenerate", "--share", "10", "--yes"])
        assert result.exit_code == 0, result.output
        assert "Global holdout version 1: 10% of units; 40 customers assigned" in result.output
        with unit_of_work(factory) as session:
            add(session, "New", email="new@x.fr")
        result = runner.invoke(app, ["holdout", "assign"])
        assert result.exit_code == 0 and "1 customer assigned." in result.output
        result = runner.invoke(app, ["holdout", "show"])
        assert result.exit_code == 0 and "10%" in result.output and "41" in result.output
    finally:
        get_settings.cache_clear()
        engine.dispose()
