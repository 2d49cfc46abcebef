"""The dispatcher on SQLite and PostgreSQL: a small campaign planned on the world of
test_campaign_plan.py, then sent to a real SMTP server (aiosmtpd) and parsed as received; SMS
through a local server that answers like Twilio; letters and call lists written to disk;
retries, failures, a relay that is down, rows refused at send time, two dispatchers at once
(PostgreSQL), dispatchers that died (recover), and the fields and previews of templates."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tests.integration.test_campaign_plan import (
    ADDRESS,
    NOW,
    World,
    consent,
    drawn_unit,
    person,
    world,
)
from tests.integration.test_smtp_sender import Recorder, free_port, start_server
from tests.unit.test_channel_sms import (
    ACCOUNT,
    INVALID,
    SLOW,
    TOKEN,
    FakeTwilio,
    sms_settings,
    twilio,
)
from tournesol.campaigns import dispatch as dispatch_module
from tournesol.campaigns import rules
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.dispatch import (
    BACKOFF,
    IN_DOUBT_ERROR,
    MAX_ATTEMPTS,
    DispatchReport,
    DispatchStopped,
    dispatch,
    finish_campaigns,
    recover,
    requeue_in_doubt,
    worker_id,
)
from tournesol.campaigns.models import Campaign, CampaignTarget, Outbox
from tournesol.campaigns.setup import SetupError
from tournesol.campaigns.templates import (
    FIELDS,
    check_message,
    personal_context,
    preview,
)
from tournesol.channels.links import LinkSigner
from tournesol.channels.sms import SmsSender
from tournesol.config import Settings
from tournesol.consent import service as consent_service
from tournesol.consent.models import Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Brand, Customer, Identifier
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.interactions.models import INTERNAL, Interaction
from tournesol.quality.names import normalize_name
from tournesol.scoring.models import CustomerRfm
from tournesol.segments.models import Segment

__all__ = ["start_server", "twilio", "world"]  # fixtures used here

PUBLIC = "https://t.soleil.example"
SECRET = "k" * 40
SHOP = "https://shop.soleil.example/soldes?utm=mail&x=1"
SUBJECT = "Bonjour {{ first_name | default('cher client') }}, les soldes !"
TEXT = "{{ civility }} {{ last_name }},\nles soldes sont là.\nSe désabonner : {{ unsubscribe_url }}"
HTML = (
    "<html><body><p>Bonjour {{ first_name | default('cher client') }}</p>"
    f'<a href="{SHOP.replace("&", "&amp;")}">Voir les soldes</a>'
    '<a href="{{ preferences_url }}">Mes préférences</a>'
    '<a href="{{ unsubscribe_url }}">Se désabonner</a></body></html>'
)


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": "sqlite://",
        "public_url": PUBLIC,
        "link_secret": SECRET,
        "secrets_dir": tmp_path / "secrets",
        "campaign_output_dir": tmp_path / "out",
        "mail_from": "news@soleil.example",
        "mail_from_name": "Soleil",
        "mail_unsubscribe_mailto": "unsubscribe@soleil.example",
        "smtp_host": "127.0.0.1",
        "smtp_port": 25,
        "postal_sender": "Soleil SA|1 rue de la Paix|75002 PARIS",
    }
    return Settings(_env_file=None, **(values | changes))  # type: ignore[call-arg]


def mail_campaign(
    session: Session, code: str = "soldes", *, control: float = 0.0, segment: str = "everyone"
) -> Campaign:
    assert check_message(subject=SUBJECT, body_text=TEXT, body_html=HTML, channel="email")
    c = campaigns.create(
        session, code=code, name="Soldes d'hiver", segment=segment, channels=["email"],
        brand="SOLEIL", control_share=control,
    )  # fmt: skip
    campaigns.set_message(
        session, campaign=c, channel="email", language="fr", subject=SUBJECT, body_text=TEXT,
        body_html=HTML,
    )  # fmt: skip
    return c


def plan(session: Session, *campaign: Campaign) -> None:
    campaigns.plan(session, campaigns=list(campaign), now=NOW, policies=campaigns.Policies())
    session.commit()


def outbox(session: Session, campaign: Campaign) -> dict[int, Outbox]:
    """customer id -> outbox row, read afresh."""
    session.expire_all()
    rows = session.scalars(select(Outbox).where(Outbox.campaign_id == campaign.id))
    return {o.customer_id: o for o in rows}


def timeline(session: Session, campaign: Campaign, kind: str) -> list[Interaction]:
    return list(
        session.scalars(
            select(Interaction)
            .where(Interaction.campaign_code == campaign.code, Interaction.type == kind)
            .order_by(Interaction.id)
        )
    )


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def smtp(start_server: Callable[..., tuple[Controller, int]]) -> tuple[Recorder, int]:
    handler = Recorder(
        refuse={
            "temp": "451 4.3.0 <{address}>: try again later",
            "perm": "550 5.1.1 <{address}>: user unknown",
        }
    )
    _, port = start_server(handler)
    return handler, port


def received(handler: Recorder) -> dict[int, EmailMessage]:
    keys = Counter(int(got.message["X-Tournesol-Outbox"]) for got in handler.received)
    assert all(n == 1 for n in keys.values()), f"received twice: {keys.most_common(3)}"
    return {int(got.message["X-Tournesol-Outbox"]): got.message for got in handler.received}


def add_people(session: Session, brand: int, count: int, prefix: str = "c") -> list[int]:
    ids = []
    for i in range(count):
        cid = person(session, f"{prefix}{i}", email=f"{prefix}{i}@exemple.fr", gender="F")
        consent(session, cid, "email", "granted", brand)
        ids.append(cid)
    return ids


# --- e-mail --------------------------------------------------------------------------------


def test_a_campaign_goes_out_once_per_target_with_tracking_and_personalization(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    crowd = add_people(session, world.brand, 12)
    # the Saturday-only customer and Ana must not be held out, whatever ids they were given
    # (an e-mail campaign draws its control group by e-mail address)
    weekend = world.ids["weekend"]
    weekend_unit = drawn_unit(session, weekend, household=False)
    salt = next(
        f"soldes-{n}"
        for n in itertools.count(1)
        if not rules.in_control(weekend_unit, f"soldes-{n}", 0.5)
    )
    ana = 0
    while not ana or rules.in_control(drawn_unit(session, ana, household=False), salt, 0.5):
        ana = person(session, "<b>Ana</b>", email=f"ana{ana}@exemple.fr", gender="F")
    session.get(Customer, ana).last_name = "DE LA FONTAINE"  # type: ignore[union-attr]
    consent(session, ana, "email", "granted", world.brand)
    spring = mail_campaign(session, control=0.5)
    spring.control_salt = salt
    plan(session, spring)
    groups = {
        t.customer_id: t.group
        for t in session.scalars(
            select(CampaignTarget).where(CampaignTarget.campaign_id == spring.id)
        )
    }
    held = {cid for cid, group in groups.items() if group == "control"}
    assert held, "half of the crowd is held out"
    rows = outbox(session, spring)
    due = {cid for cid, o in rows.items() if o.send_after <= NOW}
    assert weekend in rows and weekend not in due  # Saturdays only

    progress: list[int] = []
    settings = make_settings(tmp_path, smtp_port=port)
    report = dispatch(factory, settings=settings, now=at(NOW), batch=5, progress=progress.append)

    got = received(handler)
    rows = outbox(session, spring)
    sent = {o.id: o for o in rows.values() if o.state == "sent"}
    assert set(got) == set(sent) == {rows[cid].id for cid in due}
    assert report.sent["email"] == len(sent) and report.claimed["email"] == len(due)
    assert report.lines()[0] == f"email: {len(due)} claimed, {len(due)} sent, 0 failed, " + (
        "0 retried, 0 cancelled, 0 in_doubt"
    )
    assert progress and progress[-1] == len(due) and progress == sorted(progress)
    # nobody of the control group or the excluded got anything
    addresses = {m["To"] for m in got.values()}
    for cid, group in groups.items():
        email = session.get(Customer, cid).email  # type: ignore[union-attr]
        if group != "target":
            assert email not in addresses
    assert not held & set(rows)
    signer = LinkSigner(SECRET)
    for key, message in got.items():
        row = sent[key]
        assert message["To"] == row.address
        assert message["Message-ID"] == row.provider_id and row.sent_at == NOW
        assert message["X-Tournesol-Outbox"] == str(row.id)
        unsubscribe, mailto = (u.strip(" <>") for u in message["List-Unsubscribe"].split(","))
        assert (
            unsubscribe.startswith(f"{PUBLIC}/u/") and mailto == "mailto:unsubscribe@soleil.example"
        )
        subscription = signer.read_unsubscribe(unsubscribe.removeprefix(f"{PUBLIC}/u/"))
        assert (subscription.customer_id, subscription.channel) == (row.customer_id, "email")
        assert (subscription.brand_id, subscription.campaign_id) == (world.brand, spring.id)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        hrefs = re.findall(r'href="([^"]+)"', html)
        clicks = [h for h in hrefs if h.startswith(f"{PUBLIC}/t/c/")]
        assert len(clicks) == 1, "only the shop link is tracked"
        click = signer.read_click(clicks[0].removeprefix(f"{PUBLIC}/t/c/"))
        assert (click.outbox_id, click.index, click.url) == (row.id, 0, SHOP)
        assert f'href="{unsubscribe}"' in html  # untracked, as in List-Unsubscribe
        assert any(h.startswith(f"{PUBLIC}/p/") for h in hrefs)
        pixel = re.search(rf'<img src="{re.escape(PUBLIC)}/t/o/([^"]+)\.gif"', html)
        assert pixel and signer.read_open(pixel.group(1)) == row.id
        assert unsubscribe in text
    by_customer = {o.customer_id: got[o.id] for o in sent.values()}
    for cid, message in by_customer.items():
        name = session.get(Customer, cid).first_name  # type: ignore[union-attr]
        shown = normalize_name(name, part="first").value
        assert message["Subject"] == f"Bonjour {shown}, les soldes !"
    ana_mail = by_customer[ana]
    assert ana_mail["Subject"] == "Bonjour <b>Ana</b>, les soldes !"
    assert "Bonjour &lt;b&gt;Ana&lt;/b&gt;</p>" in ana_mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Madame de La Fontaine," in ana_mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # the timeline: one email_sent per message, ids only
    history = timeline(session, spring, "email_sent")
    assert sorted(h.payload["outbox_id"] for h in history) == sorted(sent)
    assert {(h.direction, h.channel, h.brand_id) for h in history} == {
        ("outbound", "email", world.brand)
    }
    assert {h.customer_id for h in history} == {o.customer_id for o in sent.values()}
    assert crowd and spring.status == "running"
    assert report.finished == []  # the Saturday message is still to go

    # Saturday: the last one goes, and the campaign is done
    saturday = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    again = dispatch(factory, settings=settings, now=at(saturday))
    assert again.sent["email"] == len(rows) - len(due)
    assert again.finished == ["soldes"]
    session.expire_all()
    done = session.get(Campaign, spring.id)
    assert done is not None and (done.status, done.finished_at) == ("done", saturday)
    assert len(received(handler)) == len(rows)


def test_temporary_failures_back_off_then_fail_and_permanent_ones_fail_at_once(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    temp = person(session, "Temp", email="temp@exemple.fr")
    perm = person(session, "Perm", email="perm@exemple.fr")
    for cid in (temp, perm):
        consent(session, cid, "email", "granted", world.brand)
    c = mail_campaign(session, "retry")
    plan(session, c)
    others = {
        cid
        for cid, o in outbox(session, c).items()
        if cid not in (temp, perm) and o.send_after <= NOW
    }
    settings = make_settings(tmp_path, smtp_port=port)
    clock = Clock(NOW)
    report = dispatch(factory, settings=settings, now=clock)
    rows = outbox(session, c)
    assert rows[perm].state == "failed" and rows[perm].attempts == 1
    assert rows[perm].error == "550 at RCPT TO: 5.1.1 <redacted>: user unknown"
    failed = timeline(session, c, "email_failed")
    assert [(h.customer_id, h.outcome) for h in failed] == [(perm, rows[perm].error)]
    assert rows[temp].state == "planned" and rows[temp].attempts == 1
    assert rows[temp].send_after == NOW + BACKOFF[0]
    assert "@" not in (rows[temp].error or "") and rows[temp].provider_id is None
    assert report.retried["email"] == 1 and report.failed["email"] == 1
    # each retry waits longer; the fifth attempt is the last
    for attempt in range(2, MAX_ATTEMPTS + 1):
        clock.moment = rows[temp].send_after - timedelta(seconds=1)
        assert dispatch(factory, settings=settings, now=clock).claimed["email"] == 0
        clock.moment = rows[temp].send_after
        dispatch(factory, settings=settings, now=clock)
        rows = outbox(session, c)
        assert rows[temp].attempts == attempt
        if attempt < MAX_ATTEMPTS:
            assert rows[temp].state == "planned"
            assert rows[temp].send_after == clock.moment + BACKOFF[attempt - 1]
    assert rows[temp].state == "failed"
    assert [h.customer_id for h in timeline(session, c, "email_failed")] == [perm, temp]
    assert {int(m["X-Tournesol-Outbox"]) for m in received(handler).values()} == {
        rows[cid].id for cid in others
    }
    assert all(rows[cid].state == "sent" for cid in others)


def test_a_relay_that_is_down_stops_the_run_and_nothing_is_lost(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    add_people(session, world.brand, 6)
    c = mail_campaign(session, "down")
    plan(session, c)
    settings = make_settings(tmp_path, smtp_port=free_port())  # nobody listens there
    with pytest.raises(DispatchStopped) as caught:
        dispatch(factory, settings=settings, now=at(NOW))
    message = str(caught.value)
    assert "cannot connect to the SMTP relay" in message and "TOURNESOL_SMTP_HOST" in message
    assert "planned again" in message
    report = caught.value.report
    assert report.sent["email"] == 0 and report.claimed["email"] > 0
    rows = outbox(session, c)
    assert {o.state for o in rows.values()} == {"planned"}
    assert all(
        o.provider_id is None and o.claimed_by is None for o in rows.values() if o.attempts == 0
    )
    # the two messages that met a refused connection count an attempt, the others do not
    assert sorted(o.attempts for o in rows.values() if o.send_after <= NOW + BACKOFF[0])[-2:] == [
        1,
        1,
    ]
    assert sum(o.attempts for o in rows.values()) == 2
    assert timeline(session, c, "email_sent") == []


def test_missing_settings_are_refused_before_anything_is_claimed(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    c = mail_campaign(session, "nosetup")
    plan(session, c)
    with pytest.raises(SetupError, match="TOURNESOL_MAIL_FROM"):
        dispatch(factory, settings=make_settings(tmp_path, mail_from=None), now=at(NOW))
    rows = outbox(session, c)
    assert {(o.state, o.attempts) for o in rows.values()} == {("planned", 0)}
    # only the channels asked for are checked
    report = dispatch(
        factory, settings=make_settings(tmp_path, mail_from=None), now=at(NOW), channels=["sms"]
    )
    assert report.claimed == Counter()
    with pytest.raises(ValueError, match="'fax' is not one of"):
        dispatch(factory, settings=make_settings(tmp_path), channels=["fax"])


def test_rows_no_longer_allowed_are_cancelled_at_send_time(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    gone, erased, withdrawn, other_brand = add_people(session, world.brand, 4, "late")
    c = mail_campaign(session, "late")
    plan(session, c)
    later = NOW + timedelta(hours=1)
    # after planning: an unsubscribe, an erasure, a consent withdrawn; an unsubscribe from
    # another brand changes nothing
    other = Brand(code="LUNE", name="Lune")
    session.add(other)
    session.flush()
    for cid, brand in ((gone, world.brand), (other_brand, other.id)):
        email = session.get(Customer, cid).email  # type: ignore[union-attr]
        session.add(
            Suppression(
                channel="email", value_hash=contact_hash("email", email), reason="unsubscribe",
                brand_id=brand, source="test",
            )
        )  # fmt: skip
    session.get(Customer, erased).status = "erased"  # type: ignore[union-attr]
    consent_service.set_consent(
        session, customer_id=withdrawn, channel="email", purpose="marketing",
        brand_id=world.brand, status="withdrawn", proof_source="phone call",
        proof_text_version="v3", collected_at=later, actor="test",
    )  # fmt: skip
    session.commit()
    report = dispatch(factory, settings=make_settings(tmp_path, smtp_port=port), now=at(later))
    rows = outbox(session, c)
    assert report.cancelled["email"] == 3
    expected = {
        gone: "suppressed_unsubscribe",
        erased: "erased",
        withdrawn: "opted_out",
    }
    for cid, reason in expected.items():
        assert rows[cid].state == "cancelled"
        assert rows[cid].error == f"cancelled at send time: {reason}"
    assert rows[other_brand].state == "sent"
    got = received(handler)
    assert not {rows[cid].id for cid in expected} & set(got)
    history = {
        h.customer_id: (h.outcome, h.direction, h.payload)
        for h in timeline(session, c, "campaign_excluded")
        if h.payload.get("stage") == "dispatch"
    }
    assert history == {
        cid: (reason, INTERNAL, {"outbox_id": rows[cid].id, "stage": "dispatch"})
        for cid, reason in expected.items()
    }


# --- dispatchers that die, and several at once --------------------------------------------------


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_recover_puts_back_what_never_left_and_keeps_in_doubt_what_may_have(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    people = add_people(session, world.brand, 6, "r")
    c = mail_campaign(session, "recover")
    plan(session, c)
    rows = outbox(session, c)
    host = worker_id().split(":")[0]
    dead_here = f"{host}:{dead_pid()}:abcd"
    old = NOW - timedelta(minutes=20)
    states = [
        # a dead process of this host: armed (handed) -> in doubt; not armed -> planned
        (dead_here, NOW, "<tournesol.1.x@soleil.example>"),
        (dead_here, NOW, None),
        # another host, silent for 20 minutes: the same
        ("elsewhere:123:ef01", old, "sms:pending"),
        ("elsewhere:123:ef01", old, None),
        # another host, claimed a minute ago: it may be working, left alone
        ("elsewhere:456:ef02", NOW - timedelta(minutes=1), "<m@x>"),
    ]
    for cid, (worker, claimed_at, provider_id) in zip(people, states, strict=False):
        row = rows[cid]
        row.state, row.claimed_by, row.claimed_at = "sending", worker, claimed_at
        row.provider_id, row.attempts = provider_id, 1
    session.commit()
    assert recover(session, now=NOW) == 2
    session.commit()
    rows = outbox(session, c)
    got = [(rows[cid].state, rows[cid].attempts, rows[cid].error) for cid in people[:5]]
    assert got == [
        ("in_doubt", 1, IN_DOUBT_ERROR),
        ("planned", 0, None),
        ("in_doubt", 1, IN_DOUBT_ERROR),
        ("planned", 0, None),
        ("sending", 1, None),
    ]
    assert rows[people[1]].claimed_by is None
    # in doubt is never sent again by itself; the operator may requeue it
    finish_campaigns(session, now=NOW)
    assert requeue_in_doubt(session, campaign_id=c.id, now=NOW) == 2
    rows = outbox(session, c)
    assert {rows[cid].state for cid in (people[0], people[2])} == {"planned"}
    assert rows[people[0]].provider_id is None and rows[people[0]].error is None


def test_a_dispatch_run_recovers_first_and_reports_it(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    people = add_people(session, world.brand, 3, "d")
    c = mail_campaign(session, "dead")
    plan(session, c)
    rows = outbox(session, c)
    dead = f"{worker_id().split(':')[0]}:{dead_pid()}:beef"
    armed, unarmed = rows[people[0]], rows[people[1]]
    for row, provider in ((armed, "<tournesol.9.x@soleil.example>"), (unarmed, None)):
        row.state, row.claimed_by, row.claimed_at, row.provider_id = "sending", dead, NOW, provider
        row.attempts = 1
    session.commit()
    report: DispatchReport = dispatch(
        factory, settings=make_settings(tmp_path, smtp_port=port), now=at(NOW)
    )
    assert report.in_doubt == Counter({"email": 1}) and report.released == 1
    rows = outbox(session, c)
    assert rows[people[0]].state == "in_doubt"
    assert rows[people[1]].state == "sent" and rows[people[1]].attempts == 1
    assert rows[people[0]].id not in received(handler)
    # an in-doubt row does not keep a campaign open (the Saturday one does, until cancelled)
    assert report.finished == []
    for row in rows.values():
        if row.state == "planned":
            row.state = "cancelled"
    assert finish_campaigns(session, now=NOW) == ["dead"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_dispatchers_at_once_never_send_a_row_twice(
    backend: str,
    fresh_databases: FreshDatabase,
    start_server: Callable[..., tuple[Controller, int]],
    tmp_path: Path,
) -> None:
    handler = Recorder()
    _, port = start_server(handler)
    engine = make_engine(fresh_databases.url(backend))
    factory = make_session_factory(engine)
    try:
        with unit_of_work(factory) as session:
            brand = Brand(code="SOLEIL", name="Soleil")
            session.add(brand)
            session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
            session.flush()
            add_people(session, brand.id, 120, "p")
            c = mail_campaign(session, "twice")
            campaigns.plan(session, campaigns=[c], now=NOW, policies=campaigns.Policies())
        settings = make_settings(tmp_path, smtp_port=port, smtp_rate_per_second=300.0)
        start = threading.Barrier(2)
        reports: list[DispatchReport] = []
        errors: list[BaseException] = []

        def run(label: str) -> None:
            try:
                start.wait()
                reports.append(
                    dispatch(factory, settings=settings, now=at(NOW), batch=7, worker=label)
                )
            except BaseException as exc:  # reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in ("one", "two")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        got = received(handler)  # asserts no key twice
        with factory() as session:
            states = Counter(session.scalars(select(Outbox.state)))
            workers = Counter(session.scalars(select(Outbox.claimed_by)))
        assert states == Counter({"sent": 120}) and len(got) == 120
        assert sum(sum(r.sent.values()) for r in reports) == 120
        assert all(sum(r.claimed.values()) > 0 for r in reports), "both dispatchers worked"
        assert len(workers) == 2
    finally:
        engine.dispose()


# --- SMS, letters, calls ------------------------------------------------------------------------


def test_sms_go_to_the_provider_with_the_stop_mention(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    twilio: tuple[FakeTwilio, str],
    tmp_path: Path,
) -> None:
    state, base_url = twilio
    good = person(session, "Sam", phone_mobile="+33612345678")
    bad = person(session, "Invalid", phone_mobile=INVALID)
    for cid in (good, bad):
        consent(session, cid, "sms", "granted", world.brand)
    c = campaigns.create(
        session, code="texto", name="Texto", segment="everyone", channels=["sms"], brand="SOLEIL",
        control_share=0.0,
    )  # fmt: skip
    text = "Soleil : -20 % pour vous {{ first_name }} ! {{ preferences_url }}"
    assert check_message(subject=None, body_text=text, body_html=None, channel="sms")
    campaigns.set_message(session, campaign=c, channel="sms", language="fr", body_text=text)
    plan(session, c)
    settings = make_settings(
        tmp_path, sms_base_url=base_url, sms_account_sid=ACCOUNT, sms_auth_token=TOKEN,
        sms_sender="Soleil",
    )  # fmt: skip
    report = dispatch(factory, settings=settings, now=at(NOW))
    rows = outbox(session, c)
    assert set(rows) == {good, bad}
    assert report.sent["sms"] == 1 and report.failed["sms"] == 1
    sent = [r for r in state.requests if r.form.get("To") == "+33612345678"]
    assert len(sent) == 1
    form = sent[0].form
    assert form["From"] == "Soleil"
    assert form["StatusCallback"] == f"{PUBLIC}/t/sms/status"
    assert form["Body"].startswith("Soleil : -20 % pour vous Sam ! https://t.soleil.example/p/")
    assert form["Body"].endswith("\nSTOP au 36111")
    assert rows[good].state == "sent" and (rows[good].provider_id or "").startswith("SM")
    assert rows[bad].state == "failed" and "21211" in (rows[bad].error or "")
    assert "+1500" not in (rows[bad].error or "")
    assert [h.customer_id for h in timeline(session, c, "sms_sent")] == [good]
    assert [h.customer_id for h in timeline(session, c, "sms_failed")] == [bad]


def test_letters_are_printed_with_a_print_file(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    from tournesol.channels import postal

    foreign = person(
        session, "Lieve", gender="F", address_line1="MME LIEVE PEETERS",
        address_line2="APPARTEMENT 3", address_line3="RESIDENCE LES PINS",
        address_line4="12 RUE DE LA LOI", address_line5="BP 12", address_line6="1000 BRUXELLES",
        postal_code="1000", city="Bruxelles",
    )  # fmt: skip
    session.get(Customer, foreign).country = "BE"  # type: ignore[union-attr]
    session.get(Customer, world.ids["fallback"]).last_name = "MARTIN"  # type: ignore[union-attr]
    c = campaigns.create(
        session, code="lettre", name="Lettre", segment="everyone", channels=["postal"],
        brand="SOLEIL", control_share=0.0,
    )  # fmt: skip
    campaigns.set_message(
        session, campaign=c, channel="postal", language="fr",
        body_text="{{ civility | default('Madame, Monsieur') }},\n\nNos soldes chez {{ brand }}.",
    )  # fmt: skip
    plan(session, c)
    rows = outbox(session, c)
    fallback = world.ids["fallback"]
    assert {fallback, foreign} <= set(rows)
    report = dispatch(factory, settings=make_settings(tmp_path), now=at(NOW))
    rows = outbox(session, c)
    [folder] = report.outputs
    assert folder.parent == tmp_path / "out" / "postal" and folder.name.startswith("lettre-")
    printed = list(postal.read_manifest(folder))
    assert [r.outbox_key for r in printed] == [
        str(rows[cid].id) for cid in sorted(rows) if cid != foreign
    ]
    by_key = {r.outbox_key: r for r in printed}
    letter = by_key[str(rows[fallback].id)]
    assert letter.address_lines == ("FALLBACK MARTIN", "12 RUE DES LILAS", "69003 LYON")
    assert letter.postal_code == "69003" and letter.country == "FR"
    assert (folder / letter.pdf_file).read_bytes()[:5] == b"%PDF-"
    print_file = (folder / postal.PRINT_FILE_NAME).read_text(encoding="utf-8-sig")
    assert f";{rows[fallback].id};FALLBACK MARTIN;" in print_file
    assert rows[fallback].state == "sent" and rows[fallback].provider_id == f"postal/{folder.name}"
    # six lines and the country: seven, one too many for AFNOR
    assert rows[foreign].state == "failed"
    assert "7 lines" in (rows[foreign].error or "") and "BRUXELLES" not in (
        rows[foreign].error or ""
    )
    assert report.sent["postal"] == len(printed) and report.failed["postal"] == 1
    assert {h.customer_id for h in timeline(session, c, "letter_sent")} == {
        int(cid) for cid in rows if cid != foreign
    }
    assert [h.customer_id for h in timeline(session, c, "letter_failed")] == [foreign]
    assert report.finished == ["lettre"]


def test_calls_are_listed_for_the_call_center(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    from tournesol.channels.callcenter import CALL_LIST_COLUMNS

    caller = person(
        session, "Paul", gender="M", phone_mobile="+33612345678", phone_fixed="+33145678901"
    )
    consent(session, caller, "phone", "granted", world.brand)
    session.get(Customer, caller).last_name = "Durand"  # type: ignore[union-attr]
    c = campaigns.create(
        session, code="appel", name="Appel fidélité", segment="everyone", channels=["phone"],
        brand="SOLEIL", control_share=0.0,
    )  # fmt: skip
    campaigns.set_message(
        session, campaign=c, channel="phone", language="fr", body_text="Script : bonjour."
    )
    plan(session, c)
    rows = outbox(session, c)
    assert set(rows) == {caller}
    assert dispatch(factory, settings=make_settings(tmp_path), now=at(NOW)).claimed["phone"] == 0
    report = dispatch(factory, settings=make_settings(tmp_path), now=at(NOW + timedelta(hours=3)))
    [path] = report.outputs
    assert path.parent == tmp_path / "out" / "phone" and path.suffix == ".csv"
    assert not list(path.parent.glob("*.partial"))
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].split(";") == list(CALL_LIST_COLUMNS)
    cells = dict(zip(CALL_LIST_COLUMNS, lines[1].split(";"), strict=True))
    assert cells["outbox_key"] == str(rows[caller].id)
    assert (cells["civility"], cells["first_name"], cells["last_name"]) == (
        "Monsieur", "Paul", "Durand",
    )  # fmt: skip
    assert (cells["phone_1"], cells["phone_2"]) == ("+33612345678", "+33145678901")
    assert cells["phone_1_display"] == "06 12 34 56 78"
    assert cells["campaign"] == "Appel fidélité" and cells["script_reference"] == "appel/fr"
    rows = outbox(session, c)
    assert rows[caller].state == "sent" and report.sent["phone"] == 1
    [listed] = timeline(session, c, "call_listed")
    assert (listed.customer_id, listed.channel, listed.payload) == (
        caller, "phone", {"outbox_id": rows[caller].id},
    )  # fmt: skip


# --- fields and previews ------------------------------------------------------------------------


def test_personal_context_loads_every_field_in_a_few_queries(
    session: Session, world: World
) -> None:
    c = mail_campaign(session, "fields")
    buyer = world.ids["buyer"]
    customer = session.get(Customer, buyer)
    assert customer is not None
    customer.gender, customer.city, customer.postal_code = "F", "Lyon", "69003"
    customer.last_name = "MARTIN"
    session.add(Identifier(customer_id=buyer, kind="loyalty_card", value="2990000000017"))
    session.add(
        CustomerRfm(
            customer_id=buyer, scope="SOLEIL", recency_days=40, frequency=1,
            monetary=Decimal("35.00"), r_score=3, f_score=1, m_score=1, segment="about_to_sleep",
        )
    )  # fmt: skip
    session.flush()
    fields = personal_context(session, [buyer, world.ids["nowhere"], 10**9], campaign=c)
    assert set(fields) == {buyer, world.ids["nowhere"]}
    got = fields[buyer]
    assert set(got) == set(FIELDS)
    assert got | {"customer_id": 0} == {
        "customer_id": 0, "civility": "Madame", "first_name": "Buyer", "last_name": "Martin",
        "email": "buyer@exemple.fr", "city": "Lyon", "postal_code": "69003", "country": "FR",
        "language": None, "brand": "Soleil", "customer_type": "customer",
        "loyalty_card": "2990000000017", "purchase_count": 1, "total_spent": Decimal("35.00"),
        "last_purchase_date": (NOW - timedelta(days=40)).date(),
        "last_purchase_amount": Decimal("35.00"), "rfm_segment": "About to sleep",
    }  # fmt: skip
    empty = fields[world.ids["nowhere"]]
    assert empty["purchase_count"] == 0 and empty["last_purchase_date"] is None


def test_preview_renders_the_message_for_members_of_the_segment(
    session: Session, world: World
) -> None:
    c = mail_campaign(session, "apercu")
    shown = preview(session, c, channel="email", language="fr", limit=2)
    first_two = sorted(world.ids.values())[:2]
    assert [cid for cid, _ in shown] == first_two
    cid, message = shown[0]
    name = session.get(Customer, cid).first_name  # type: ignore[union-attr]
    assert message.subject == f"Bonjour {name}, les soldes !"
    assert message.html is not None and 'href="#"' in message.html
    chosen = preview(
        session, c, channel="email", language="fr", customer_ids=[world.ids["buyer"]],
        links={"unsubscribe_url": "https://x.example/u"},
    )  # fmt: skip
    assert [cid for cid, _ in chosen] == [world.ids["buyer"]]
    assert "https://x.example/u" in chosen[0][1].text
    with pytest.raises(campaigns.CampaignError, match="no sms message"):
        preview(session, c, channel="sms", language="fr")


def test_every_outbox_row_of_a_run_is_accounted_for(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    """limit stops a run after that many rows; the next run carries on."""
    handler, port = smtp
    add_people(session, world.brand, 9, "l")
    c = mail_campaign(session, "limit")
    plan(session, c)
    settings = make_settings(tmp_path, smtp_port=port)
    first = dispatch(factory, settings=settings, now=at(NOW), limit=4, batch=3)
    assert sum(first.claimed.values()) == 4 and first.sent["email"] == 4
    second = dispatch(factory, settings=settings, now=at(NOW))
    rows = outbox(session, c)
    due = [o for o in rows.values() if o.send_after <= NOW]
    assert first.sent["email"] + second.sent["email"] == len(due)
    assert len(received(handler)) == len(due)
    count = session.scalar(select(func.count()).where(Outbox.state == "sending"))
    assert count == 0


def test_an_interrupted_run_puts_back_what_it_had_not_handed_over(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    smtp: tuple[Recorder, int],
    tmp_path: Path,
) -> None:
    handler, port = smtp
    add_people(session, world.brand, 8, "i")
    c = mail_campaign(session, "stop")
    plan(session, c)
    calls: list[int] = []

    def interrupt(done: int) -> None:
        calls.append(done)
        # the first write after the first batch came back: it records that batch and arms
        # the second (rendered meanwhile), which has not gone yet
        if done >= 3:
            raise KeyboardInterrupt

    settings = make_settings(tmp_path, smtp_port=port)
    with pytest.raises(KeyboardInterrupt):
        dispatch(factory, settings=settings, now=at(NOW), batch=3, progress=interrupt)
    rows = outbox(session, c)
    got = received(handler)
    assert {o.state for o in rows.values()} == {"sent", "planned"}
    assert {o.id for o in rows.values() if o.state == "sent"} == set(got)
    assert len(got) == 3
    assert all(
        o.attempts == 0 and o.provider_id is None for o in rows.values() if o.state == "planned"
    )
    dispatch(factory, settings=settings, now=at(NOW))
    assert len(received(handler)) == len([o for o in rows.values() if o.send_after <= NOW])


@dataclass
class TimedRecorder(Recorder):
    """A relay that notes when each message arrived (monotonic time, by outbox id)."""

    arrived: dict[int, float] = field(default_factory=dict)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        key = re.search(rb"X-Tournesol-Outbox: (\d+)", envelope.content)
        assert key is not None
        self.arrived[int(key.group(1))] = time.monotonic()
        return reply


def test_a_window_is_rendered_while_the_one_before_is_sent_and_one_at_most_is_armed(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    start_server: Callable[..., tuple[Controller, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = TimedRecorder()
    _, port = start_server(handler)
    add_people(session, world.brand, 120, "w")
    c = mail_campaign(session, "windows")
    plan(session, c)
    due = sorted(o.id for o in outbox(session, c).values() if o.send_after <= NOW)
    assert len(due) > 100
    rendered: dict[int, float] = {}
    render = dispatch_module._Run._email

    def timed(run: Any, row: Any) -> Any:
        rendered[row.id] = time.monotonic()
        return render(run, row)

    monkeypatch.setattr(dispatch_module._Run, "_email", timed)
    armed: list[int] = []

    def count_armed(done: int) -> None:  # after each write: armed rows without their result
        with factory() as check:
            armed.append(
                check.scalar(
                    select(func.count()).where(
                        Outbox.state == "sending", Outbox.provider_id.is_not(None)
                    )
                )
                or 0
            )

    # 100 a second: windows of 50 messages, each half a second on its way
    settings = make_settings(tmp_path, smtp_port=port, smtp_rate_per_second=100.0)
    report = dispatch(factory, settings=settings, now=at(NOW), progress=count_armed)
    assert report.sent["email"] == len(due) and sorted(received(handler)) == due
    assert max(armed) == 50
    first, second = due[:50], due[50:100]
    # the second window was rendered while the first was on its way
    assert min(rendered[oid] for oid in second) < max(handler.arrived[oid] for oid in first)
    # and left only once the first was back
    assert min(handler.arrived[oid] for oid in second) > max(handler.arrived[oid] for oid in first)


def test_a_relay_that_dies_mid_run_loses_nothing_and_sends_nothing_twice(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    start_server: Callable[..., tuple[Controller, int]],
    tmp_path: Path,
) -> None:
    handler = Recorder()
    controller, port = start_server(handler)
    add_people(session, world.brand, 150, "d")
    c = mail_campaign(session, "dies")
    plan(session, c)
    due = {o.id for o in outbox(session, c).values() if o.send_after <= NOW}

    def stop_relay_midway(done: int) -> None:
        if done >= 40 and controller.loop.is_running():
            controller.stop()  # connections drop, new ones are refused

    settings = make_settings(tmp_path, smtp_port=port)
    with pytest.raises(DispatchStopped, match="planned again"):
        dispatch(factory, settings=settings, now=at(NOW), batch=20, progress=stop_relay_midway)
    got = received(handler)  # never twice
    rows = {o.id: o for o in outbox(session, c).values() if o.id in due}
    states = Counter(o.state for o in rows.values())
    assert set(states) <= {"sent", "planned", "in_doubt"} and states["sent"] >= 40
    sent = {oid for oid, o in rows.items() if o.state == "sent"}
    doubtful = {oid for oid, o in rows.items() if o.state == "in_doubt"}
    assert sent <= set(got) <= sent | doubtful
    assert len(doubtful) <= 2  # cut off during DATA, one per connection at most
    assert all(o.provider_id is None for o in rows.values() if o.state == "planned")


def take_over_first(factory: sessionmaker[Session]) -> Callable[[int], None]:
    """A progress callback that, at its first call, hands one of the run's rows to another
    dispatcher (as recover would if the run looked dead)."""
    done: list[int] = []

    def take(_: int) -> None:
        if done:
            return
        with unit_of_work(factory) as other:
            row = other.scalars(select(Outbox).where(Outbox.state == "sending")).first()
            assert row is not None
            row.claimed_by = "elsewhere:1:beef"
            done.append(row.id)

    take.done = done  # type: ignore[attr-defined]
    return take


def test_a_print_run_leaves_out_letters_another_dispatcher_took_over(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    from tournesol.channels import postal

    people = [person(session, name, **ADDRESS) for name in ("Alice", "Bruno", "Chloe")]
    c = campaigns.create(
        session, code="relais", name="Relais", segment="everyone", channels=["postal"],
        brand="SOLEIL", control_share=0.0,
    )  # fmt: skip
    campaigns.set_message(session, campaign=c, channel="postal", language="fr", body_text="Bonjour")
    plan(session, c)
    take = take_over_first(factory)
    report = dispatch(
        factory, settings=make_settings(tmp_path), now=at(NOW), batch=1, progress=take
    )
    [taken] = take.done  # type: ignore[attr-defined]
    [folder] = report.outputs
    lines = (folder / postal.PRINT_FILE_NAME).read_text(encoding="utf-8-sig").splitlines()
    printed = {int(line.split(";")[1]) for line in lines[1:]}
    rows = outbox(session, c)
    assert taken not in printed
    assert printed == {o.id for o in rows.values() if o.state == "sent"}
    assert rows[next(cid for cid, o in rows.items() if o.id == taken)].state == "sending"
    assert set(people) <= set(rows)


def test_a_call_list_leaves_out_calls_another_dispatcher_took_over(
    session: Session, factory: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    for i, name in enumerate(("Paul", "Pierre", "Jacques")):
        cid = person(session, name, phone_mobile=f"+3361234567{i}")
        consent(session, cid, "phone", "granted", world.brand)
    c = campaigns.create(
        session, code="relais-tel", name="Relais", segment="everyone", channels=["phone"],
        brand="SOLEIL", control_share=0.0,
    )  # fmt: skip
    campaigns.set_message(session, campaign=c, channel="phone", language="fr", body_text="Script")
    plan(session, c)
    take = take_over_first(factory)
    later = at(NOW + timedelta(hours=3))
    report = dispatch(factory, settings=make_settings(tmp_path), now=later, batch=1, progress=take)
    [taken] = take.done  # type: ignore[attr-defined]
    [path] = report.outputs
    listed = {
        int(line.split(";")[0]) for line in path.read_text(encoding="utf-8-sig").splitlines()[1:]
    }
    rows = outbox(session, c)
    assert len(listed) == 2 and taken not in listed
    assert listed == {o.id for o in rows.values() if o.state == "sent"}


def test_a_message_cut_off_after_it_went_out_is_left_in_doubt_not_retried(
    session: Session,
    factory: sessionmaker[Session],
    world: World,
    twilio: tuple[FakeTwilio, str],
    tmp_path: Path,
) -> None:
    state, base_url = twilio
    slow = person(session, "Slow", phone_mobile=SLOW)  # the provider answers after 1 s
    consent(session, slow, "sms", "granted", world.brand)
    c = campaigns.create(
        session, code="lent", name="Lent", segment="everyone", channels=["sms"], brand="SOLEIL",
        control_share=0.0,
    )  # fmt: skip
    campaigns.set_message(session, campaign=c, channel="sms", language="fr", body_text="Soldes")
    plan(session, c)
    with SmsSender(sms_settings(base_url, timeout=0.3)) as sender:
        report = dispatch(factory, settings=make_settings(tmp_path), now=at(NOW), sms=sender)
    row = outbox(session, c)[slow]
    assert report.in_doubt == Counter({"sms": 1}) and report.retried == Counter()
    assert row.state == "in_doubt" and row.provider_id == "sms:pending"
    assert row.error == (
        "in doubt: the SMS provider timed out; it may have accepted the message; not sent again"
    )
    assert len(state.requests) == 1
    assert (
        dispatch(
            factory, settings=make_settings(tmp_path), now=at(NOW + timedelta(hours=1)), sms=sender
        ).claimed
        == Counter()
    )
