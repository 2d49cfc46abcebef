"""Two competing campaigns on the demo base, planned together and sent for real: e-mails to an
SMTP server (aiosmtpd) and SMS to an HTTP server shaped like Twilio's API, both started here.

What is proved, from what the servers received and what the database holds, independently of
the planner's own bookkeeping:

- no customer exceeds the pressure caps (3 marketing contacts in any 7 days, 1 SMS in any
  7 days, 48 hours between two contacts), counting everything sent to them;
- nobody is contacted without the consent the French rules require for the channel (an
  opt-in of the brand or the group, or a purchase from the brand for the soft opt-in; no
  refusal; no suppressed contact point);
- the control groups receive nothing;
- every customer of each audience has exactly one decision on their timeline, and every
  exclusion carries its reason there;
- a received e-mail's one-click unsubscribe works, and the next plan leaves that customer out.

On SQLite and PostgreSQL (a fresh migrated database each)."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tests.integration.test_smtp_sender import Recorder, start_server  # noqa: F401 (fixture)
from tests.unit.test_channel_sms import ACCOUNT, TOKEN, FakeTwilio, twilio  # noqa: F401
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.dispatch import dispatch
from tournesol.campaigns.models import Campaign, CampaignTarget, Outbox
from tournesol.config import Settings
from tournesol.consent.models import ConsentState, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Brand, Customer, OrganisationContact
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.demo.generator import generate
from tournesol.identity import service as identity_service
from tournesol.ingest.importer import import_file
from tournesol.ingest.schemas import load_mapping
from tournesol.interactions.models import Interaction, Transaction
from tournesol.segments import service as segments
from tournesol.web.app import create_app

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Paris
LATER = NOW + timedelta(days=8)  # every planned message is due by then
PUBLIC = "https://t.soleil.example"
SECRET = "e2e-campaign-link-secret-" + "k" * 16
HTML = (
    "<p>Bonjour {{ first_name | default('') }},</p>"
    '<p><a href="https://shop.soleil.example/soldes">Les soldes</a></p>'
    '<p><a href="{{ unsubscribe_url }}">Se désabonner</a></p>'
)
TEXT = "Bonjour {{ first_name | default('') }}, les soldes : https://shop.soleil.example/soldes\n"
TEXT += "Se désabonner : {{ unsubscribe_url }}"
SMS = "Soleil : -20 % ce week-end, {{ first_name | default('') }} !"


@pytest.fixture(scope="module")
def demo_base(
    backend: str, fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sessionmaker[Session]]:
    """The demo (400 persons) imported and resolved into a fresh database."""
    manifest = generate(tmp_path_factory.mktemp("campaign-demo"), seed=11, persons=400)
    engine = make_engine(fresh_databases.url(backend))
    factory = make_session_factory(engine)
    for item in manifest.files:
        if item.source != "products":
            import_file(factory, item.path, load_mapping(item.mapping))
    identity_service.resolve(factory, full=True)
    yield factory
    engine.dispose()


def make_settings(tmp_path: Path, smtp_port: int, sms_url: str) -> Settings:
    values: dict[str, Any] = {
        "public_url": PUBLIC,
        "link_secret": SECRET,
        "secrets_dir": tmp_path / "secrets",
        "campaign_output_dir": tmp_path / "out",
        "mail_from": "news@soleil.example",
        "mail_from_name": "Soleil",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "sms_base_url": sms_url,
        "sms_account_sid": ACCOUNT,
        "sms_auth_token": TOKEN,
        "sms_sender": "Soleil",
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def create_campaigns(session: Session) -> tuple[Campaign, Campaign]:
    segments.create(session, code="e2e_everyone", name="Everyone", definition={"all": []})
    segments.create(
        session,
        code="e2e_women",
        name="Women",
        definition={"attribute": "gender", "op": "eq", "value": "F"},
    )
    newsletter = campaigns.create(
        session, code="e2e-newsletter", name="Newsletter", segment="e2e_everyone",
        channels=["email", "sms"], brand="SOLEIL", priority=50, control_share=0.2,
    )  # fmt: skip
    flash = campaigns.create(
        session, code="e2e-flash", name="Vente flash", segment="e2e_women",
        channels=["sms", "email"], brand="SOLEIL", priority=80, control_share=0.1,
    )  # fmt: skip
    for campaign in (newsletter, flash):
        for language in ("fr", "en"):
            campaigns.set_message(
                session, campaign=campaign, channel="email", language=language,
                subject="Les soldes, {{ first_name | default('') }}", body_text=TEXT,
                body_html=HTML,
            )  # fmt: skip
            campaigns.set_message(
                session, campaign=campaign, channel="sms", language=language, body_text=SMS
            )
    return newsletter, flash


def allowed_by_consent(
    session: Session, customer_id: int, channel: str, brand_id: int, address: str
) -> str | None:
    """None when the French defaults allow a marketing message of the brand on the channel,
    else why not; written from the raw tables, not with the planner's rules."""
    rows = session.execute(
        select(ConsentState.status, ConsentState.collected_at).where(
            ConsentState.customer_id == customer_id,
            ConsentState.channel.in_([channel, "any"]),
            ConsentState.purpose == "marketing",
            (ConsentState.brand_id == brand_id) | ConsentState.brand_id.is_(None),
        )
    ).all()
    latest = max(rows, key=lambda r: (r.collected_at, r.status != "granted"), default=None)
    if latest is not None and latest.status != "granted":
        return f"latest consent is {latest.status}"
    suppressed = session.scalar(
        select(func.count())
        .select_from(Suppression)
        .where(
            Suppression.channel == channel,
            Suppression.value_hash == contact_hash(channel, address),
        )
    )
    if suppressed:
        return "suppressed"
    if latest is not None:
        return None  # an opt-in
    b2b = session.scalar(
        select(func.count())
        .select_from(OrganisationContact)
        .where(OrganisationContact.customer_id == customer_id)
    )
    if b2b:
        return None  # B2B e-mail and SMS: opt-out
    bought = session.scalar(
        select(func.count())
        .select_from(Transaction)
        .where(
            Transaction.customer_id == customer_id,
            Transaction.brand_id == brand_id,
            Transaction.kind != "return",
        )
    )
    return None if bought else "no opt-in and no purchase from the brand"


def check_pressure(times: list[tuple[datetime, str]]) -> str | None:
    """None when these contacts of one customer respect the default policy."""
    times = sorted(times)
    for (a, _), (b, _) in itertools.pairwise(times):
        if b - a < timedelta(hours=48):
            return f"two contacts {b - a} apart"
    for start, _ in times:
        window = [(t, c) for t, c in times if start <= t < start + timedelta(days=7)]
        if len(window) > 3:
            return "more than 3 contacts in 7 days"
        if sum(1 for _, c in window if c == "sms") > 1:
            return "more than 1 SMS in 7 days"
    return None


def test_two_competing_campaigns_keep_every_rule(
    demo_base: sessionmaker[Session],
    start_server: Callable[..., Any],  # noqa: F811
    twilio: tuple[FakeTwilio, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    factory = demo_base
    mails = Recorder()
    _, port = start_server(mails)
    texts, sms_url = twilio
    settings = make_settings(tmp_path, port, sms_url)

    with unit_of_work(factory) as session:
        newsletter, flash = create_campaigns(session)
        # an earlier campaign reached some customers in the last days: they count
        earlier = session.scalars(
            select(Customer.id).where(Customer.status == "active").order_by(Customer.id).limit(60)
        ).all()
        for n, customer_id in enumerate(earlier):
            for days in (1, 3, 5)[: 1 + n % 3]:
                session.add(
                    Outbox(
                        key=f"earlier:{customer_id}:{days}", customer_id=customer_id,
                        brand_id=newsletter.brand_id, channel="postal", language="fr",
                        state="sent", send_after=NOW - timedelta(days=days),
                        planned_at=NOW - timedelta(days=days),
                    )
                )  # fmt: skip
        session.flush()
        reports = campaigns.plan(
            session, campaigns=[newsletter, flash], now=NOW, policies=campaigns.Policies()
        )
        ids = {c.code: c.id for c in (newsletter, flash)}
        brand_id = newsletter.brand_id
    assert brand_id is not None
    by_code = {r.code: r for r in reports}
    # the demo base exercises the rules: both compete, consents and control groups bite
    assert by_code["e2e-newsletter"].excluded["lost_arbitration"] > 0
    assert by_code["e2e-newsletter"].control > 0 and by_code["e2e-flash"].control > 0
    assert sum(r.excluded["no_consent"] + r.excluded["opted_out"] for r in reports) > 0
    assert sum(r.excluded["pressure_gap"] + r.excluded["pressure_cap"] for r in reports) > 0
    assert sum(r.planned for r in reports) > 50

    report = dispatch(factory, settings=settings, now=lambda: LATER)
    assert report.sent["email"] > 0 and report.sent["sms"] > 0

    # what the servers received, mapped back to customers through the outbox
    received_mail = Counter(int(got.message["X-Tournesol-Outbox"]) for got in mails.received)
    assert all(n == 1 for n in received_mail.values()), "an e-mail was received twice"
    received_sms = Counter(r.form["To"] for r in texts.requests)
    with factory() as session:
        rows = {o.id: o for o in session.scalars(select(Outbox))}
        assert set(received_mail) == {  # (the earlier contacts were letters)
            i for i, o in rows.items() if o.channel == "email" and o.state == "sent"
        }
        sent_sms = [o for o in rows.values() if o.channel == "sms" and o.state == "sent"]
        assert Counter(o.address for o in sent_sms) == received_sms
        contacted: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
        for o in rows.values():
            if o.state == "sent":
                contacted[o.customer_id].append((o.send_after, o.channel))
            if o.state == "sent" and o.campaign_id in ids.values():
                # consent, checked from the raw tables for every message that went out
                assert o.address is not None
                why = allowed_by_consent(session, o.customer_id, o.channel, brand_id, o.address)
                assert why is None, f"customer {o.customer_id} on {o.channel}: {why}"
        assert len(contacted) > 50
        for customer_id, times in contacted.items():
            assert check_pressure(times) is None, f"customer {customer_id}: {times}"

        targets = session.scalars(
            select(CampaignTarget).where(CampaignTarget.campaign_id.in_(ids.values()))
        ).all()
        control = {(t.campaign_id, t.customer_id) for t in targets if t.group == "control"}
        assert control
        # the control groups receive nothing from their campaign
        assert not {(o.campaign_id, o.customer_id) for o in rows.values()} & control
        # every decision is on the timeline, every exclusion with its reason
        history = {
            (i.campaign_code, i.customer_id): i
            for i in session.scalars(
                select(Interaction).where(Interaction.campaign_code.in_(list(ids)))
                .where(Interaction.type.in_(
                    ["campaign_planned", "campaign_control", "campaign_excluded"]
                ))
            )
        }  # fmt: skip
        code_of = {v: k for k, v in ids.items()}
        for t in targets:
            entry = history[(code_of[t.campaign_id], t.customer_id)]
            expected = {
                "target": "campaign_planned",
                "control": "campaign_control",
                "excluded": "campaign_excluded",
            }[t.group]
            assert entry.type == expected and entry.direction == "internal"
            if t.group == "excluded":
                assert t.reason and entry.outcome == t.reason
        audience = sum(r.funnel[0][1] for r in reports)
        assert len(targets) == audience == len(history)
        # every message sent is on its customer's timeline too
        sent_history = session.scalar(
            select(func.count())
            .select_from(Interaction)
            .where(Interaction.type.in_(["email_sent", "sms_sent"]))
            .where(Interaction.campaign_code.in_(list(ids)))
        )
        assert sent_history == sum(
            1 for o in rows.values() if o.state == "sent" and o.campaign_id in ids.values()
        )

    # a received e-mail's one-click unsubscribe (RFC 8058), then the next plan leaves them out
    first = next(got.message for got in mails.received)
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = first["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    assert link.startswith(f"{PUBLIC}/u/")
    outbox_id = int(first["X-Tournesol-Outbox"])
    with TestClient(create_app(settings, factory=factory)) as client:
        answer = client.post(
            link.removeprefix(PUBLIC),
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 200
    with unit_of_work(factory) as session:
        who = rows[outbox_id].customer_id
        assert session.get(Customer, who) is not None
        again = campaigns.create(
            session, code="e2e-again", name="Again", segment="e2e_everyone", channels=["email"],
            brand="SOLEIL", control_share=0.0,
        )  # fmt: skip
        campaigns.set_message(
            session, campaign=again, channel="email", language="fr", subject="Encore",
            body_text=TEXT, body_html=HTML,
        )  # fmt: skip
        campaigns.set_message(
            session, campaign=again, channel="email", language="en", subject="Again",
            body_text=TEXT, body_html=HTML,
        )  # fmt: skip
        campaigns.plan(
            session, campaigns=[again], now=LATER, policies=campaigns.Policies(), dry_run=False
        )
        decided = session.scalar(
            select(CampaignTarget).where(
                CampaignTarget.campaign_id == again.id, CampaignTarget.customer_id == who
            )
        )
        assert decided is not None and decided.group == "excluded"
        assert decided.reason in ("opted_out", "suppressed_unsubscribe")
        assert session.scalar(select(Brand.code).where(Brand.id == brand_id)) == "SOLEIL"
