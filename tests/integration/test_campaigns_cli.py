"""`tournesol campaigns ...` through typer's CliRunner on a SQLite file: create from YAML (checked,
replaced), list, show, plan and dry-run, run (print runs, in-doubt requeue, a missing setting),
bounces, outcomes; attribute and report (JSON and CSV) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from tests.conftest import FreshDatabase
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Campaign, CampaignMessage, CampaignTarget, Outbox
from tournesol.cli.main import app
from tournesol.config import get_settings
from tournesol.consent import service as consent_service
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.ingest.models import Source
from tournesol.interactions.models import Transaction
from tournesol.segments.models import Segment

runner = CliRunner()
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Paris
CAMPAIGN = """\
code: spring
name: Spring sale
brand: SOLEIL
segment: everyone
channels: [email, postal]
priority: 60
expected_value: 2.5
fixed_cost: 10
unit_costs: {email: 0.01, postal: 0.9}
control_share: 0
attribution_days: 20
starts_at: 2026-11-23T09:00
messages:
  - channel: email
    language: fr
    subject: "Le printemps, {{ first_name }}"
    text: "Bonjour {{ first_name }}. Se désinscrire : {{ unsubscribe_url }}"
    html_file: spring.html
  - channel: postal
    language: fr
    text: "Cher {{ first_name }}, une lettre."
"""

RIVAL = """\
code: rival
name: Rival
brand: SOLEIL
segment: everyone
channels: [email]
priority: 10
control_share: 0
messages:
  - {channel: email, language: fr, subject: Hi, text: "Hi {{ unsubscribe_url }}"}
"""


@dataclass
class Cli:
    factory: sessionmaker[Session]
    folder: Path
    ids: list[int]

    def __call__(self, *args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["campaigns", *args])
        return result.exit_code, result.output


def seed(session: Session) -> list[int]:
    """Four customers with an e-mail consent, two reachable by post only, a segment of all."""
    brand = Brand(code="SOLEIL", name="Soleil")
    session.add(brand)
    session.flush()
    ids = []
    for i in range(6):
        values: dict[str, object] = {"email": f"client{i}@exemple.fr"}
        if i >= 4:
            values = {"address_line4": f"{i} RUE DES LILAS", "address_line6": "69003 LYON"}
        customer = Customer(first_name=f"Client{i}", last_name="Martin", country="FR", **values)
        session.add(customer)
        session.flush()
        ids.append(customer.id)
        if i < 4:
            consent_service.set_consent(
                session, customer_id=customer.id, channel="email", purpose="marketing",
                brand_id=brand.id, status="granted", proof_source="web form",
                proof_text_version="v1", collected_at=NOW - timedelta(days=30), actor="test",
            )  # fmt: skip
    session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    return ids


def connect(url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Cli]:
    monkeypatch.setenv("TOURNESOL_DATABASE_URL", url)
    monkeypatch.setenv("TOURNESOL_SECRETS_DIR", str(tmp_path / "secrets"))
    monkeypatch.setenv("TOURNESOL_CAMPAIGN_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("TOURNESOL_POSTAL_SENDER", "Soleil SA|1 rue de la Paix|75002 PARIS")
    monkeypatch.delenv("TOURNESOL_MAIL_FROM", raising=False)
    monkeypatch.delenv("TOURNESOL_CAMPAIGN_POLICIES", raising=False)
    monkeypatch.setenv("COLUMNS", "160")
    # the commands' console may exist already (another test made it) with another width
    from tournesol.cli.common import console, err_console

    monkeypatch.setattr(console, "width", 160)
    monkeypatch.setattr(err_console, "width", 160)
    get_settings.cache_clear()
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with unit_of_work(factory) as session:
        ids = seed(session)
    (tmp_path / "spring.html").write_text(
        '<p>Bonjour {{ first_name }}</p><a href="{{ unsubscribe_url }}">stop</a>', "utf-8"
    )
    (tmp_path / "spring.yaml").write_text(CAMPAIGN, "utf-8")
    yield Cli(factory, tmp_path, ids)
    get_settings.cache_clear()
    engine.dispose()


@pytest.fixture
def cli(
    fresh_databases: FreshDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Cli]:
    """The CLI on a new SQLite file."""
    yield from connect(fresh_databases.url("sqlite"), monkeypatch, tmp_path)


@pytest.fixture
def any_cli(
    backend: str, fresh_databases: FreshDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Cli]:
    """The CLI on a new database of each backend."""
    yield from connect(fresh_databases.url(backend), monkeypatch, tmp_path)


def test_create_list_and_show(cli: Cli) -> None:
    code, out = cli("create", str(cli.folder / "spring.yaml"))
    assert code == 0, out
    assert "Campaign spring created (draft): email, postal, 2 messages" in out
    with unit_of_work(cli.factory) as session:
        c = campaigns.get_by_code(session, code="spring")
        assert c is not None
        assert (c.priority, c.expected_value, c.unit_costs) == (
            60, Decimal("2.50"), {"email": "0.01", "postal": "0.9"},
        )  # fmt: skip
        assert c.starts_at == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Paris time
        html = session.scalar(
            select(CampaignMessage.body_html).where(CampaignMessage.channel == "email")
        )
        assert html is not None and html.startswith("<p>Bonjour")
    code, out = cli("create", str(cli.folder / "spring.yaml"))
    assert code == 1 and "exists already" in out and "--replace" in out
    (cli.folder / "spring.yaml").write_text(CAMPAIGN.replace("priority: 60", "priority: 70"))
    code, out = cli("create", str(cli.folder / "spring.yaml"), "--replace")
    assert code == 0 and "Campaign spring replaced" in out
    code, out = cli("list")
    assert code == 0 and "spring" in out and "Spring sale" in out and "email > postal" in out
    code, out = cli("show", "spring")
    assert code == 0 and "priority" in out and "70" in out and "message email fr" in out
    code, out = cli("show", "nothing")
    assert code == 1 and "there is no campaign 'nothing'" in out


def test_a_bad_campaign_file_is_refused_with_what_to_fix(cli: Cli) -> None:
    path = cli.folder / "bad.yaml"
    path.write_text(CAMPAIGN.replace("{{ first_name }}.", "{{ first_nam }}."))
    code, out = cli("create", str(path))
    assert code == 1
    assert "message 1 (email, fr)" in out and "text, line 1" in out and "first_nam" in out
    path.write_text(CAMPAIGN + "colour: blue\n")
    code, out = cli("create", str(path))
    assert code == 1 and "unknown key 'colour'" in out
    path.write_text(CAMPAIGN.replace("segment: everyone", "segment: nobody"))
    code, out = cli("create", str(path))
    assert code == 1 and "no saved segment 'nobody'" in out
    code, out = cli("create", str(cli.folder / "missing.yaml"))
    assert code == 1 and "there is no file" in out
    with unit_of_work(cli.factory) as session:
        assert session.scalar(select(Campaign.id)) is None


def test_plan_dry_run_then_for_real(cli: Cli) -> None:
    assert cli("create", str(cli.folder / "spring.yaml"))[0] == 0
    (cli.folder / "rival.yaml").write_text(RIVAL)
    assert cli("create", str(cli.folder / "rival.yaml"))[0] == 0
    with unit_of_work(cli.factory) as session:
        rival = campaigns.get_by_code(session, code="rival")
        assert rival is not None
        rival.status = "scheduled"
    code, out = cli("plan", "spring", "--dry-run", "--now", NOW.isoformat())
    assert code == 0, out
    assert (
        "spring (dry run)" in out and "audience" in out and "Dry run: nothing was written." in out
    )
    assert "messages: 6 (email 4, postal 2); control group: 0" in out
    with unit_of_work(cli.factory) as session:
        assert session.scalar(select(CampaignTarget.id)) is None
    code, out = cli("plan", "spring", "--with-scheduled", "--now", NOW.isoformat())
    assert code == 0, out
    assert "Planned 6 messages" in out and "rival" in out
    assert (
        "excluded 4: lost_arbitration (A campaign that ranked higher took the contact slot.)" in out
    )
    with unit_of_work(cli.factory) as session:
        statuses = dict(session.execute(select(Campaign.code, Campaign.status)).all())
        assert statuses == {"spring": "running", "rival": "running"}
    code, out = cli("plan", "spring")
    assert code == 1 and "only a draft or scheduled campaign can be planned" in out


def test_run_prints_letters_and_handles_what_is_in_doubt(cli: Cli) -> None:
    assert cli("create", str(cli.folder / "spring.yaml"))[0] == 0
    assert cli("plan", "spring", "--now", NOW.isoformat())[0] == 0
    # e-mail needs settings: the run stops before claiming anything, saying what to set
    code, out = cli("run", "--channel", "email")
    assert code == 1 and "TOURNESOL_MAIL_FROM" in out
    code, out = cli("run", "--channel", "postal")
    assert code == 0, out
    assert "postal: 2 claimed, 2 sent" in out and "written:" in out
    with unit_of_work(cli.factory) as session:
        rows = session.scalars(select(Outbox).where(Outbox.channel == "postal")).all()
        assert {r.state for r in rows} == {"sent"}
        doubtful = session.scalars(select(Outbox).where(Outbox.channel == "email")).first()
        assert doubtful is not None
        doubtful.state = "in_doubt"
    code, out = cli("run", "--requeue-in-doubt", "spring")
    assert code == 0 and "1 in-doubt messages of spring planned again" in out
    with unit_of_work(cli.factory) as session:
        assert session.scalar(select(Outbox.id).where(Outbox.state == "in_doubt")) is None
    code, out = cli("run", "--campaign", "nothing")
    assert code == 1 and "there is no campaign" in out


def test_bounces_and_outcomes_are_imported(cli: Cli) -> None:
    assert cli("create", str(cli.folder / "spring.yaml"))[0] == 0
    assert cli("plan", "spring", "--now", NOW.isoformat())[0] == 0
    with unit_of_work(cli.factory) as session:
        message = session.scalars(select(Outbox).where(Outbox.channel == "email")).first()
        assert message is not None
        message.state, message.sent_at = "sent", NOW
        outbox_id, address = message.id, message.address
    mails = cli.folder / "returned"
    mails.mkdir()
    (mails / "1.eml").write_bytes(dsn(outbox_id, address or ""))
    (mails / "2.eml").write_bytes(b"From: someone@exemple.fr\r\nSubject: Hello\r\n\r\nHi")
    code, out = cli("bounces", str(mails))
    assert code == 0, out
    assert "bounces: 2 read, 1 bounces_hard, 0 bounces_soft" in out and "1 rejected" in out
    with unit_of_work(cli.factory) as session:
        assert session.get(Outbox, outbox_id).state == "bounced"  # type: ignore[union-attr]
    assert "1 already_known" in cli("bounces", str(mails / "1.eml"))[1]
    assert cli("bounces", str(cli.folder / "none"))[0] == 1

    calls = cli.folder / "outcomes.csv"
    calls.write_text("outbox_key;outcome;called_at\n999999;reached_interested;2026-11-24 10:00\n")
    code, out = cli("outcomes", str(calls))
    assert code == 0, out
    assert "outcomes: 1 read, 0 recorded, 1 unknown" in out and "line 2: unknown_key" in out
    calls.write_text("key;something\n1;2\n")
    code, out = cli("outcomes", str(calls))
    assert code == 1 and "outbox_key, outcome and called_at" in out


def test_attribute_and_report(any_cli: Cli) -> None:
    cli = any_cli
    (cli.folder / "spring.yaml").write_text(
        CAMPAIGN.replace("control_share: 0", "control_share: 0.5")
    )
    assert cli("create", str(cli.folder / "spring.yaml"))[0] == 0
    assert cli("plan", "spring", "--now", NOW.isoformat())[0] == 0
    with unit_of_work(cli.factory) as session:
        c = campaigns.get_by_code(session, code="spring")
        assert c is not None
        source = Source(name="till", kind="pos", restrictions=[])
        session.add(source)
        session.flush()
        targets = session.scalars(
            select(CampaignTarget).where(CampaignTarget.campaign_id == c.id)
        ).all()
        groups = {t.customer_id: t.group for t in targets}
        for o in session.scalars(select(Outbox).where(Outbox.campaign_id == c.id)):
            o.state, o.sent_at = "sent", o.send_after
        for n, customer_id in enumerate(sorted(groups)):
            session.add(
                Transaction(
                    source_id=source.id, external_id=f"t{n}", customer_id=customer_id,
                    # after the letters' in-home date (printed, then 3 days of delivery)
                    occurred_at=NOW + timedelta(days=5), kind="ticket", channel="store",
                    total_amount=Decimal("25.00"),
                )
            )  # fmt: skip
        target = sum(1 for g in groups.values() if g == "target")
        control = sum(1 for g in groups.values() if g == "control")
    assert target and control  # the control draw is stable: a half of six customers
    later = (NOW + timedelta(days=7)).isoformat()
    code, out = cli("attribute", "--now", later)
    assert code == 0 and f"{target} purchases attributed" in out
    assert "0 purchases attributed" in cli("attribute", "--now", later, "--campaign", "spring")[1]
    code, out = cli(
        "report", "spring", "--json", "--now", later, "--csv", str(cli.folder / "f.csv")
    )
    assert code == 0, out
    data = json.loads(out)
    assert data["target_group"]["purchasers"] == target
    assert data["control_group"]["purchasers"] == control
    assert data["target_group"]["revenue"] == f"{25 * target}.00"
    assert data["uplift"] == 0.0 and data["incremental_revenue"] == "0.00"
    with (cli.folder / "f.csv").open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["stage", "count", "share_of_audience"]
    assert rows[1] == ["audience", "6", "1.0000"] and rows[-1][:2] == ["purchasers", str(target)]
    code, out = cli("report", "spring", "--now", later)
    assert (
        code == 0 and "Target group against control group" in out and "uplift: +0.0 points" in out
    )


def dsn(outbox_id: int, address: str) -> bytes:
    """A delivery status notification: the address does not exist."""
    return f"""\
From: MAILER-DAEMON@mail.exemple.fr
To: news@soleil.exemple.fr
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.exemple.fr

Final-Recipient: rfc822; {address}
Action: failed
Status: 5.1.1

--B
Content-Type: text/rfc822-headers

To: {address}
X-Tournesol-Outbox: {outbox_id}

--B--
""".replace("\n", "\r\n").encode()
