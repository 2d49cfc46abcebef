"""What comes back from messages, on SQLite and PostgreSQL: opens, clicks, unsubscribes and
what the planner makes of them, the preference center, bounces and complaints, SMS delivery
reports and STOP replies, call outcomes. Every import and callback is replayed to prove it
changes nothing the second time."""

from __future__ import annotations

import json
import mailbox
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tests.integration import test_campaign_plan
from tests.integration.test_campaign_plan import NOW, World, consent, new_campaign, targets
from tournesol.campaigns import feedback
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Campaign, Outbox
from tournesol.channels.email import parse_bounce
from tournesol.channels.links import Subscription
from tournesol.consent import service as consent_service
from tournesol.consent.models import Consent, ConsentState, Preference, Suppression
from tournesol.consent.rules import ConsentRuleError, contact_hash
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.interactions.models import Interaction

world = test_campaign_plan.world  # the fixture: a brand, ten customers, a saved segment
LATER = NOW + timedelta(hours=5)
MOBILE = "+33612345678"


# --- helpers ---------------------------------------------------------------------------------


def planned_and_sent(session: Session, code: str = "spring", *, now: datetime = NOW) -> Campaign:
    """Plan a campaign on the world and mark every message sent, as the dispatcher would."""
    campaign = new_campaign(session, code, priority=50)
    campaigns.plan(session, campaigns=[campaign], now=now, policies=campaigns.Policies())
    for row in session.scalars(select(Outbox).where(Outbox.campaign_id == campaign.id)):
        row.state, row.sent_at, row.provider_id = "sent", now, f"<tournesol.{row.id}.x@ex.fr>"
    session.flush()
    return campaign


def message_of(session: Session, campaign: Campaign, customer_id: int) -> Outbox:
    return session.scalars(
        select(Outbox).where(Outbox.campaign_id == campaign.id, Outbox.customer_id == customer_id)
    ).one()


def hand_made(
    session: Session,
    world: World,
    who: int,
    *,
    channel: str,
    address: str,
    state: str = "sent",
    provider_id: str | None = None,
    code: str = "texto",
) -> Outbox:
    """An outbox row of a campaign on ``channel``, written by hand."""
    campaign = session.scalar(select(Campaign).where(Campaign.code == code))
    if campaign is None:
        campaign = campaigns.create(
            session, code=code, name=code.title(), segment="everyone", channels=[channel],
            brand="SOLEIL",
        )  # fmt: skip
    row = Outbox(
        key=f"{code}:{who}:{channel}", campaign_id=campaign.id, customer_id=who,
        brand_id=world.brand, channel=channel, language="fr", address=address, state=state,
        send_after=NOW, planned_at=NOW, sent_at=NOW if state == "sent" else None,
        provider_id=provider_id,
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row


def events(session: Session, kind: str, customer_id: int | None = None) -> list[Interaction]:
    query = select(Interaction).where(Interaction.type == kind).order_by(Interaction.id)
    if customer_id is not None:
        query = query.where(Interaction.customer_id == customer_id)
    return list(session.scalars(query))


def counts(session: Session) -> tuple[int, ...]:
    """Rows of every table the feedback writes, to prove a replay writes nothing."""
    return tuple(
        session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Consent, Suppression, Interaction, Preference)
    )


def outbox_states(session: Session) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in session.execute(
            select(
                Outbox.id, Outbox.state, Outbox.opened_at, Outbox.clicked_at,
                Outbox.unsubscribed_at, Outbox.bounced_at, Outbox.delivered_at,
            ).order_by(Outbox.id)
        )
    ]  # fmt: skip


def current(session: Session, customer_id: int, channel: str, brand: int | None) -> str | None:
    s = ConsentState
    return session.scalar(
        select(s.status).where(
            s.customer_id == customer_id, s.channel == channel, s.purpose == "marketing",
            s.brand_id.is_(None) if brand is None else s.brand_id == brand,
        )
    )  # fmt: skip


def replan(session: Session, code: str, now: datetime) -> dict[int, tuple[str, str | None]]:
    campaign = new_campaign(session, code, priority=50)
    campaigns.plan(session, campaigns=[campaign], now=now, policies=campaigns.Policies())
    return {cid: (t.group, t.reason) for cid, t in targets(session, campaign).items()}


# --- opens and clicks ------------------------------------------------------------------------


def test_only_the_first_open_counts(session: Session, world: World) -> None:
    spring = planned_and_sent(session)
    mail = message_of(session, spring, world.ids["optin"])
    assert feedback.record_open(session, outbox_id=mail.id, at=LATER) is True
    assert feedback.record_open(session, outbox_id=mail.id, at=LATER + timedelta(1)) is False
    assert feedback.record_open(session, outbox_id=999_999_999, at=LATER) is False
    letter = message_of(session, spring, world.ids["fallback"])
    assert feedback.record_open(session, outbox_id=letter.id, at=LATER) is False
    session.expire_all()
    assert session.get(Outbox, mail.id).opened_at == LATER
    assert session.get(Outbox, letter.id).opened_at is None
    [opened] = events(session, "email_opened")
    assert (opened.customer_id, opened.direction, opened.channel) == (
        world.ids["optin"], "inbound", "email",
    )  # fmt: skip
    assert (opened.campaign_code, opened.brand_id, opened.occurred_at) == (
        "spring",
        world.brand,
        LATER,
    )
    assert opened.payload == {"outbox_id": mail.id}


def test_a_click_per_link_and_a_click_implies_an_open(session: Session, world: World) -> None:
    spring = planned_and_sent(session)
    mail = message_of(session, spring, world.ids["buyer"])
    url = "https://shop.example.fr/soldes?utm_source=mail"
    assert feedback.record_click(session, outbox_id=mail.id, index=0, url=url, at=LATER)
    again = LATER + timedelta(minutes=3)
    assert not feedback.record_click(session, outbox_id=mail.id, index=0, url=url, at=again)
    assert feedback.record_click(session, outbox_id=mail.id, index=1, url="https://b.fr/", at=again)
    # the pixel loads after the click (images shown later): the open is already known
    assert not feedback.record_open(session, outbox_id=mail.id, at=again)
    assert not feedback.record_click(session, outbox_id=424242424, index=0, url=url, at=LATER)
    session.expire_all()
    row = session.get(Outbox, mail.id)
    assert (row.clicked_at, row.opened_at) == (LATER, LATER)
    clicks = events(session, "email_clicked")
    assert [(c.payload["index"], c.payload["url"]) for c in clicks] == [
        (0, url),
        (1, "https://b.fr/"),
    ]
    assert {c.campaign_code for c in clicks} == {"spring"}
    [opened] = events(session, "email_opened")
    assert opened.payload == {"outbox_id": mail.id, "implied_by": "click"}


# --- unsubscribe -----------------------------------------------------------------------------


def test_unsubscribe_withdraws_suppresses_cancels_and_is_idempotent(
    session: Session, world: World
) -> None:
    optin = world.ids["optin"]
    spring = planned_and_sent(session)
    mail = message_of(session, spring, optin)
    # a later campaign already planned a message for the customer: the opt-out stops it
    summer = new_campaign(session, "summer", priority=50)
    campaigns.plan(
        session, campaigns=[summer], now=NOW + timedelta(days=3), policies=campaigns.Policies()
    )
    waiting = message_of(session, summer, optin)
    assert waiting.state == "planned"
    sub = Subscription(optin, "email", world.brand, spring.id)
    proof = {"user_agent": "Thunderbird/128", "ip": "203.0.113.9"}
    assert feedback.unsubscribe(session, sub, at=LATER, method="one_click", proof=proof)
    before = counts(session)
    states = outbox_states(session)
    assert not feedback.unsubscribe(session, sub, at=LATER + timedelta(1), method="link", proof={})
    assert counts(session) == before and outbox_states(session) == states

    [row] = session.scalars(
        select(Consent).where(Consent.customer_id == optin, Consent.status == "withdrawn")
    ).all()
    assert (row.channel, row.purpose, row.brand_id, row.collected_at) == (
        "email", "marketing", world.brand, LATER,
    )  # fmt: skip
    assert row.proof["source"] == "unsubscribe:one_click"
    assert row.proof["text_version"] == "v1" and row.proof["actor"] == "customer"
    assert row.proof["outbox_id"] == mail.id and row.proof["user_agent"] == "Thunderbird/128"
    assert "203.0.113.9" not in json.dumps(row.proof) and len(row.proof["ip_hash"]) == 64
    assert current(session, optin, "email", world.brand) == "withdrawn"
    [sup] = session.scalars(select(Suppression).where(Suppression.reason == "unsubscribe")).all()
    assert (sup.channel, sup.brand_id) == ("email", world.brand)
    assert sup.value_hash == contact_hash("email", "optin@exemple.fr")
    assert sup.source == f"outbox {mail.id} (one_click)"
    session.expire_all()
    assert session.get(Outbox, mail.id).unsubscribed_at == LATER
    assert session.get(Outbox, waiting.id).state == "cancelled"
    [event] = events(session, "email_unsubscribed")
    assert (event.customer_id, event.direction, event.campaign_code, event.outcome) == (
        optin, "inbound", "spring", "one_click",
    )  # fmt: skip
    assert event.payload == {"method": "one_click", "status": "withdrawn", "outbox_id": mail.id}

    # the next plan leaves the customer out: the withdrawal decides first...
    assert replan(session, "autumn", NOW + timedelta(days=10))[optin] == ("excluded", "opted_out")
    # ...and were the consent given again elsewhere, the suppression (same hash) still holds
    consent_service.set_consent(
        session, customer_id=optin, channel="email", purpose="marketing", brand_id=world.brand,
        status="granted", proof_source="shop form", proof_text_version="v4",
        collected_at=NOW + timedelta(days=11), actor="staff",
    )  # fmt: skip
    got = replan(session, "winter", NOW + timedelta(days=12))
    assert got[optin] == ("excluded", "suppressed_unsubscribe")
    # the preference center says what the planner does: nothing goes out on email
    center = feedback.preference_view(session, sub)
    assert center.choice("email") == feedback.ChannelChoice(
        "email", "withdrawn", "o•••@exemple.fr", True, None
    )


def test_unsubscribe_from_an_unknown_or_erased_customer_writes_nothing(
    session: Session, world: World
) -> None:
    before = counts(session)
    ghost = Subscription(987654321, "email", world.brand, None)
    assert not feedback.unsubscribe(session, ghost, at=LATER, method="link", proof={})
    erased = session.get(Customer, world.ids["optin"])
    erased.status = "erased"
    session.flush()
    sub = Subscription(erased.id, "email", world.brand, None)
    assert not feedback.unsubscribe(session, sub, at=LATER, method="link", proof={})
    assert counts(session) == before
    with pytest.raises(ValueError, match="method"):
        feedback.unsubscribe(session, sub, at=LATER, method="carrier pigeon", proof={})
    with pytest.raises(feedback.UnknownSubscriber):
        feedback.preference_view(session, sub)


def test_a_merged_customers_link_acts_on_the_survivor(session: Session, world: World) -> None:
    survivor, absorbed = world.ids["optin"], world.ids["weekend"]
    gone = session.get(Customer, absorbed)
    gone.status, gone.merged_into_id = "merged", survivor
    session.flush()
    sub = Subscription(absorbed, "email", world.brand, None)
    assert feedback.preference_view(session, sub).customer_id == survivor
    assert feedback.unsubscribe(session, sub, at=LATER, method="link", proof={})
    assert current(session, survivor, "email", world.brand) == "withdrawn"
    assert current(session, absorbed, "email", world.brand) == "granted"


# --- preference center -----------------------------------------------------------------------


def test_the_preference_center_shows_and_changes_consents(session: Session, world: World) -> None:
    who = world.ids["fallback"]  # an email and a postal address, no consent given
    session.add(
        Preference(customer_id=who, channel="any", days="mon,tue", hours="09:00-12:00",
                   language="fr", max_per_week=None)
    )  # fmt: skip
    session.flush()
    sub = Subscription(who, "email", world.brand, None)
    view = feedback.preference_view(session, sub)
    assert (view.first_name, view.brand_name, view.language, view.max_per_week) == (
        "Fallback", "Soleil", "fr", None,
    )  # fmt: skip
    shown = {c.channel: (c.status, c.contact, c.changeable, c.blocked) for c in view.channels}
    assert shown == {
        "email": ("none", "f•••@exemple.fr", True, None),
        "sms": ("none", None, False, "no_contact_point"),
        "phone": ("none", None, False, "no_contact_point"),
        "postal": ("none", "69••• LYON", True, None),
    }
    proof = {"user_agent": "Firefox", "ip_hash": "ab" * 32}
    changes = feedback.update_preferences(
        session, sub, channels={"email": True, "postal": False, "sms": True}, language="en",
        max_per_week=2, at=LATER, proof=proof,
    )  # fmt: skip
    assert changes == ["email:granted", "postal:withdrawn", "language", "max_per_week"]
    before = counts(session)
    again = feedback.update_preferences(
        session, sub, channels={"email": True, "postal": False}, language="en", max_per_week=2,
        at=LATER + timedelta(1), proof=proof,
    )  # fmt: skip
    assert again == [] and counts(session) == before
    view = feedback.preference_view(session, sub)
    assert {c.channel: c.status for c in view.channels} == {
        "email": "granted", "sms": "none", "phone": "none", "postal": "withdrawn",
    }  # fmt: skip
    assert (view.language, view.max_per_week) == ("en", 2)
    pref = session.scalars(
        select(Preference).where(Preference.customer_id == who, Preference.channel == "any")
    ).one()
    assert (pref.days, pref.hours, pref.language, pref.max_per_week) == (
        "mon,tue", "09:00-12:00", "en", 2,
    )  # fmt: skip
    granted = session.scalars(
        select(Consent).where(Consent.customer_id == who, Consent.status == "granted")
    ).one()
    assert (
        granted.proof["source"] == "preference_center" and granted.proof["user_agent"] == "Firefox"
    )
    [changed] = events(session, "preferences_changed", who)
    assert changed.payload["changes"] == changes and changed.channel == "web"
    # the withdrawal of letters is an unsubscribe too: the address is suppressed
    assert (
        session.scalar(select(Suppression.reason).where(Suppression.channel == "postal"))
        == "unsubscribe"
    )
    # effective at once: the next plan sends an email (consent) rather than a letter
    assert replan(session, "autumn", NOW + timedelta(days=10))[who] == ("target", None)
    with pytest.raises(ConsentRuleError, match="max_per_week"):
        feedback.update_preferences(
            session, sub, channels={}, language=None, max_per_week=99, at=LATER, proof={}
        )


def test_granting_again_lifts_an_unsubscribe_but_never_a_hard_bounce(
    session: Session, world: World
) -> None:
    optin, bounced = world.ids["optin"], world.ids["bounced"]
    sub = Subscription(optin, "email", world.brand, None)
    feedback.unsubscribe(session, sub, at=LATER, method="link", proof={})
    assert replan(session, "summer", NOW + timedelta(days=3))[optin] == ("excluded", "opted_out")
    at = NOW + timedelta(days=4)
    changes = feedback.update_preferences(
        session, sub, channels={"email": True}, language=None, max_per_week=None, at=at, proof={}
    )
    assert changes == ["email:granted"]
    assert session.scalar(select(func.count()).where(Suppression.reason == "unsubscribe")) == 0
    assert replan(session, "autumn", NOW + timedelta(days=10))[optin] == ("target", None)

    hard = Subscription(bounced, "email", world.brand, None)
    [email] = [c for c in feedback.preference_view(session, hard).channels if c.channel == "email"]
    assert (email.status, email.changeable, email.blocked) == ("granted", True, "hard_bounce")
    feedback.update_preferences(
        session, hard, channels={"email": False}, language=None, max_per_week=None, at=at, proof={}
    )
    [email] = [c for c in feedback.preference_view(session, hard).channels if c.channel == "email"]
    assert (email.status, email.changeable) == ("withdrawn", False)
    assert not feedback.update_preferences(
        session, hard, channels={"email": True}, language=None, max_per_week=None,
        at=at + timedelta(1), proof={},
    )  # fmt: skip
    reasons = session.scalars(
        select(Suppression.reason).where(
            Suppression.value_hash == contact_hash("email", "bounced@exemple.fr")
        )
    ).all()
    assert sorted(reasons) == ["hard_bounce", "unsubscribe"]


def test_masks_never_show_the_whole_contact_point() -> None:
    assert feedback.mask("email", "Ana.Dupont@Example.fr") == "A•••@Example.fr"
    assert feedback.mask("sms", "+33612345678") == "+33 6 •• •• •• 78"
    assert feedback.mask("phone", "+32470123456") == "+32 ••• 56"
    assert feedback.mask("postal", "M DUPONT||BAT 2|12 RUE DES LILAS||69003 LYON") == "69••• LYON"
    assert feedback.mask("postal", "X||||Y|LONDON SW1") == "•••"
    assert feedback.mask("email", "nonsense") == "•••"


# --- bounces and complaints ------------------------------------------------------------------


def dsn(outbox_id: int, address: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    return f"""\
Return-Path: <>
From: MAILER-DAEMON@mail.example.fr (Mail Delivery System)
To: news@soleil.example.fr
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"

--BOUND
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--BOUND
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.fr

Final-Recipient: rfc822; {address}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} <{address}>: user unknown

--BOUND
Content-Type: text/rfc822-headers

From: news@soleil.example.fr
To: {address}
Subject: Nos offres
Message-ID: <tournesol.{outbox_id}.0123456789abcdef@soleil.example.fr>
X-Tournesol-Outbox: {outbox_id}

--BOUND--
""".replace("\n", "\r\n").encode()


def arf(outbox_id: int, address: str) -> bytes:
    return f"""\
From: <fbl@hotmail.example>
To: <fbl@soleil.example.fr>
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"

--ARF
Content-Type: text/plain

This is an abuse report.

--ARF
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Hotmail FBL/1.0
Version: 1
Original-Rcpt-To: <{address}>

--ARF
Content-Type: message/rfc822

From: news@soleil.example.fr
To: {address}
Subject: Promo
X-Tournesol-Outbox: {outbox_id}

Promo
--ARF--
""".encode()


def test_bounces_and_complaints_are_recorded_once(session: Session, world: World) -> None:
    spring = planned_and_sent(session)
    ids = world.ids
    hard = message_of(session, spring, ids["optin"])
    soft = message_of(session, spring, ids["weekend"])
    spam = message_of(session, spring, ids["buyer"])
    mail = [
        dsn(hard.id, "optin@exemple.fr"),
        dsn(soft.id, "weekend@exemple.fr", action="delayed", status="4.2.2"),
        arf(spam.id, "buyer@exemple.fr"),
        dsn(999_999_999, "ghost@exemple.fr"),
        b"From: someone@example.fr\r\nSubject: Out of office\r\n\r\nBack Monday.",
        b"\xff\xfe not even mail",
    ]
    report = feedback.import_bounces(session, mail, at=LATER)
    assert report == feedback.BounceReport(
        read=6, bounces_hard=1, bounces_soft=1, complaints=1, unknown=1, rejected=2,
        already_known=0,
    )  # fmt: skip
    session.expire_all()
    row = session.get(Outbox, hard.id)
    assert (row.state, row.bounced_at, row.error) == ("bounced", LATER, "hard bounce 5.1.1")
    assert session.get(Outbox, soft.id).state == "sent"
    assert session.get(Outbox, spam.id).unsubscribed_at == LATER
    bounced = {(e.customer_id, e.outcome) for e in events(session, "email_bounced")}
    assert bounced == {(ids["optin"], "5.1.1"), (ids["weekend"], "soft")}
    [complaint] = events(session, "email_complaint")
    assert (complaint.customer_id, complaint.outcome, complaint.campaign_code) == (
        ids["buyer"], "abuse", "spring",
    )  # fmt: skip
    assert [e.outcome for e in events(session, "email_unsubscribed")] == ["complaint"]
    suppressed = {
        (s.reason, s.value_hash, s.brand_id) for s in session.scalars(select(Suppression))
    }
    assert ("hard_bounce", contact_hash("email", "optin@exemple.fr"), None) in suppressed
    assert ("complaint", contact_hash("email", "buyer@exemple.fr"), None) in suppressed
    assert ("unsubscribe", contact_hash("email", "buyer@exemple.fr"), world.brand) in suppressed

    before, states = counts(session), outbox_states(session)
    replay = feedback.import_bounces(session, mail, at=LATER + timedelta(days=1))
    assert (replay.already_known, replay.unknown, replay.rejected) == (3, 1, 2)
    assert counts(session) == before and outbox_states(session) == states

    got = replan(session, "summer", NOW + timedelta(days=10))
    assert got[ids["optin"]] == ("excluded", "suppressed_hard_bounce")
    assert got[ids["buyer"]] == ("excluded", "opted_out")  # was a soft opt-in buyer
    assert got[ids["weekend"]][0] == "target"


def test_mailboxes_of_every_shape_are_read(tmp_path: Path) -> None:
    messages = [dsn(n, f"c{n}@exemple.fr") for n in (1, 2, 3)]
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for raw in messages:
        box.add(raw)
    box.close()
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for raw in messages:
        maildir.add(raw)
    folder = tmp_path / "eml"
    (folder / "sub").mkdir(parents=True)
    for n, raw in enumerate(messages):
        (folder / ("sub" if n else "") / f"{n}.eml").write_bytes(raw)
    single = folder / "0.eml"

    def keys(path: Path) -> list[str]:
        found = []
        for raw in feedback.read_mailbox(path):
            bounce = parse_bounce(raw)
            assert bounce is not None
            found.append(str(bounce.outbox_key))
        return sorted(found)

    assert keys(tmp_path / "bounces.mbox") == ["1", "2", "3"]
    assert keys(tmp_path / "Maildir") == ["1", "2", "3"]
    assert keys(folder) == ["1", "2", "3"]
    assert keys(single) == ["1"]
    with pytest.raises(FileNotFoundError):
        list(feedback.read_mailbox(tmp_path / "nowhere"))


# --- SMS -------------------------------------------------------------------------------------


def test_sms_delivery_reports_never_move_a_message_backwards(
    session: Session, world: World
) -> None:
    first = hand_made(session, world, world.ids["optin"], channel="sms", address=MOBILE,
                      provider_id="SM0001")  # fmt: skip
    second = hand_made(session, world, world.ids["buyer"], channel="sms", address=MOBILE,
                       provider_id="SM0002")  # fmt: skip
    assert not feedback.sms_status(session, sid="SM0001", state="sent", at=NOW)
    assert feedback.sms_status(session, sid="SM0001", state="delivered", at=LATER)
    assert not feedback.sms_status(session, sid="SM0001", state="failed", at=LATER)
    assert not feedback.sms_status(session, sid="SM0001", state="delivered", at=LATER)
    assert feedback.sms_status(session, sid="SM0002", state="bounced", at=LATER)
    assert not feedback.sms_status(session, sid="SM0002", state="delivered", at=LATER)
    assert not feedback.sms_status(session, sid="SM9999", state="delivered", at=LATER)
    session.expire_all()
    one, two = session.get(Outbox, first.id), session.get(Outbox, second.id)
    assert (one.state, one.delivered_at) == ("delivered", LATER)
    assert (two.state, two.delivered_at, two.error) == (
        "failed",
        None,
        "SMS bounced (delivery report)",
    )
    assert [e.customer_id for e in events(session, "sms_delivered")] == [world.ids["optin"]]
    [undelivered] = events(session, "sms_undelivered")
    assert (undelivered.customer_id, undelivered.campaign_code) == (world.ids["buyer"], "texto")


def test_a_stop_reply_unsubscribes_every_brand_and_the_number(
    session: Session, world: World
) -> None:
    who = world.ids["optin"]
    session.get(Customer, who).phone_mobile = MOBILE
    consent(session, who, "sms", "granted", world.brand)
    sent = hand_made(session, world, who, channel="sms", address=MOBILE, provider_id="SM1")
    waiting = hand_made(session, world, who, channel="sms", address=MOBILE, state="planned",
                        code="later")  # fmt: skip
    untouched = counts(session)
    assert feedback.sms_inbound(session, from_number=MOBILE, body="Merci !", at=LATER) == 0
    assert counts(session) == untouched
    assert (
        feedback.sms_inbound(session, from_number="+33 6 12 34 56 78", body="STOP", at=LATER) == 1
    )
    before = counts(session)
    assert feedback.sms_inbound(session, from_number=MOBILE, body="arrêt", at=LATER) == 0
    assert counts(session) == before
    assert current(session, who, "sms", None) == "withdrawn"
    [sup] = session.scalars(select(Suppression).where(Suppression.channel == "sms")).all()
    assert (sup.channel, sup.reason, sup.brand_id) == ("sms", "unsubscribe", None)
    assert sup.value_hash == contact_hash("sms", MOBILE)
    session.expire_all()
    assert session.get(Outbox, sent.id).unsubscribed_at == LATER
    assert session.get(Outbox, waiting.id).state == "cancelled"
    [stop] = events(session, "sms_stop")
    assert (stop.customer_id, stop.campaign_code, stop.outcome) == (who, "texto", "sms_stop")
    # a number nobody has any more is suppressed all the same
    assert feedback.sms_inbound(session, from_number="+33799999999", body="stop", at=LATER) == 0
    hashes = set(session.scalars(select(Suppression.value_hash)))
    assert contact_hash("sms", "+33799999999") in hashes


# --- call outcomes ---------------------------------------------------------------------------


def test_call_outcomes_are_recorded_once(session: Session, world: World) -> None:
    ids = world.ids
    reached = hand_made(session, world, ids["optin"], channel="phone", address=MOBILE, code="calls")
    refused = hand_made(session, world, ids["buyer"], channel="phone", address="+33478000000",
                        code="calls")  # fmt: skip
    email = planned_and_sent(session)
    not_a_call = message_of(session, email, ids["pro"])
    data = (
        "outbox_key;outcome;called_at;agent;note\r\n"
        f"{reached.id};intéressé;23/11/2026 10:30;Zoé;rappeler mardi\r\n"
        f"{refused.id};ne plus appeler;23/11/2026 11:00;Zoé;\r\n"
        f"{refused.id};no_answer;22/11/2026 16:00;Zoé;\r\n"
        f"999999999;busy;23/11/2026 12:00;Zoé;\r\n"
        f"{not_a_call.id};busy;23/11/2026 12:00;Zoé;\r\n"
        f"{reached.id};lunch;23/11/2026 12:00;Zoé;\r\n"
    ).encode()
    report = feedback.import_call_outcomes(session, data, at=LATER)
    assert (report.read, report.recorded, report.unknown, report.already_recorded) == (6, 3, 2, 0)
    assert [line for line, _ in report.rejects] == [5, 6, 7]
    assert report.rejects[2][1].startswith("bad_outcome")
    session.expire_all()
    paris_10_30 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    one, two = session.get(Outbox, reached.id), session.get(Outbox, refused.id)
    assert (one.state, one.delivered_at) == ("delivered", paris_10_30)
    assert two.state == "delivered"
    calls = events(session, "call")
    assert sorted((c.customer_id, c.outcome) for c in calls) == sorted(
        [(ids["optin"], "reached_interested"), (ids["buyer"], "do_not_call"),
         (ids["buyer"], "no_answer")]
    )  # fmt: skip
    first = next(c for c in calls if c.outcome == "reached_interested")
    assert (first.channel, first.direction, first.subject, first.occurred_at) == (
        "phone", "outbound", "Calls", paris_10_30,
    )  # fmt: skip
    assert first.payload["agent"] == "Zoé" and first.payload["outbox_id"] == reached.id
    assert current(session, ids["buyer"], "phone", world.brand) == "withdrawn"
    assert (
        session.scalar(select(Suppression.channel).where(Suppression.reason == "unsubscribe"))
        == "phone"
    )

    before, states = counts(session), outbox_states(session)
    replay = feedback.import_call_outcomes(session, data, at=LATER + timedelta(days=1))
    assert (replay.recorded, replay.already_recorded, replay.unknown) == (0, 3, 2)
    assert counts(session) == before and outbox_states(session) == states


# --- at the same time ------------------------------------------------------------------------


def test_the_same_return_arriving_twice_at_once_is_recorded_once(
    backend: str, fresh_databases: FreshDatabase
) -> None:
    """A mail client's one-click POST and the customer's own click, or two image loads, at the
    same moment: each in its own transaction, committed; one of them records, the other
    finds it done."""
    engine = make_engine(fresh_databases.url(backend))
    factory = make_session_factory(engine)
    try:
        with unit_of_work(factory) as session:
            brand = Brand(code="SOLEIL", name="Soleil")
            customer = Customer(first_name="Ana", email="ana@exemple.fr", country="FR")
            session.add_all([brand, customer])
            session.flush()
            mail = Outbox(
                key="race:1", customer_id=customer.id, brand_id=brand.id, channel="email",
                language="fr", address="ana@exemple.fr", state="sent", send_after=NOW,
                planned_at=NOW, sent_at=NOW,
            )  # fmt: skip
            session.add(mail)
            session.flush()
            sub = Subscription(customer.id, "email", brand.id, None)
            outbox_id = mail.id
        workers = 4
        start = threading.Barrier(workers)
        results: list[tuple[bool, bool]] = []

        def work() -> None:
            start.wait()
            with unit_of_work(factory) as session:
                gone = feedback.unsubscribe(session, sub, at=LATER, method="one_click", proof={})
                opened = feedback.record_open(session, outbox_id=outbox_id, at=LATER)
            results.append((opened, gone))

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == [(False, False)] * (workers - 1) + [(True, True)]
        with unit_of_work(factory) as session:
            assert counts(session) == (1, 1, 2, 0)  # one withdrawal, suppression, open, opt-out
    finally:
        engine.dispose()
