"""The public routes reached from messages, through the web app on SQLite and PostgreSQL: the
open pixel, click redirects (and forged tokens), the unsubscribe page and RFC 8058 one-click,
the preference center, and the SMS provider's signed callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.integration import test_campaign_plan
from tests.integration.test_campaign_plan import NOW, World, new_campaign
from tournesol.campaigns import service as campaigns
from tournesol.campaigns import setup
from tournesol.campaigns.models import Campaign, Outbox
from tournesol.channels.links import LinkSigner, Subscription
from tournesol.consent.models import Consent, ConsentState, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Customer
from tournesol.interactions.models import Interaction

world = test_campaign_plan.world  # the fixture: a brand, ten customers, a saved segment
PUBLIC = "https://t.soleil.example"
TOKEN = "twilio-auth-token"
MOBILE = "+33612345678"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def public(app: FastAPI) -> tuple[TestClient, LinkSigner]:
    """A client of the app configured for campaigns, and the signer of its links."""
    app.state.settings = app.state.settings.model_copy(
        update={"link_secret": "l" * 40, "sms_auth_token": TOKEN, "public_url": PUBLIC}
    )
    return TestClient(app, raise_server_exceptions=True), setup.link_signer(app.state.settings)


@pytest.fixture
def spring(session: Session, world: World) -> Campaign:
    """The world's campaign planned and sent; committed so that the app's sessions see it."""
    campaign = new_campaign(session, "spring", priority=50)
    campaigns.plan(session, campaigns=[campaign], now=NOW, policies=campaigns.Policies())
    for row in session.scalars(select(Outbox).where(Outbox.campaign_id == campaign.id)):
        row.state, row.sent_at = "sent", NOW
    session.commit()
    return campaign


def message(session: Session, campaign: Campaign, customer_id: int) -> Outbox:
    session.expire_all()
    return session.scalars(
        select(Outbox).where(Outbox.campaign_id == campaign.id, Outbox.customer_id == customer_id)
    ).one()


def status(session: Session, customer_id: int, channel: str) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            select(ConsentState.status).where(
                ConsentState.customer_id == customer_id, ConsentState.channel == channel
            )
        )
    )


def count(session: Session, model: type) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


def twilio_signature(url: str, form: dict[str, str]) -> str:
    data = url + "".join(f"{k}{form[k]}" for k in sorted(form))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def private(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["cache-control"] == "no-store, private"
    assert "set-cookie" not in headers


# --- opens and clicks ------------------------------------------------------------------------


def test_the_pixel_records_the_first_open_and_is_always_a_gif(
    session: Session, world: World, spring: Campaign, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    mail = message(session, spring, world.ids["optin"])
    good = client.get(f"/t/o/{signer.make_open(mail.id)}.gif")
    assert good.status_code == 200 and good.headers["content-type"] == "image/gif"
    assert len(good.content) == 43 and good.content.startswith(b"GIF89a")
    private(good)
    assert message(session, spring, world.ids["optin"]).opened_at is not None
    client.get(f"/t/o/{signer.make_open(mail.id)}.gif")
    assert count(session, Interaction) - 10 == 1  # the plan wrote 10 rows; one open since
    # forged (another key), altered, or nonsense: the same image, nothing recorded
    other = message(session, spring, world.ids["buyer"])
    for token in (
        LinkSigner("x" * 40).make_open(other.id),
        signer.make_open(other.id)[:-2] + "AA",
        "not-a-token",
    ):
        answer = client.get(f"/t/o/{token}.gif")
        assert answer.status_code == 200 and answer.content == good.content
    assert message(session, spring, world.ids["buyer"]).opened_at is None


def test_a_click_redirects_to_the_signed_url_only(
    session: Session, world: World, spring: Campaign, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    mail = message(session, spring, world.ids["buyer"])
    url = "https://shop.soleil.example/soldes?utm_campaign=spring"
    answer = client.get(f"/t/c/{signer.make_click(mail.id, 0, url)}", follow_redirects=False)
    assert answer.status_code == 302 and answer.headers["location"] == url
    clicked = message(session, spring, world.ids["buyer"])
    assert clicked.clicked_at is not None and clicked.opened_at is not None
    # a token to another site signed with another key: refused, no redirect
    forged = LinkSigner("x" * 40).make_click(mail.id, 0, "https://evil.example/")
    refused = client.get(
        f"/t/c/{forged}", follow_redirects=False, headers={"accept-language": "en"}
    )
    assert refused.status_code == 400 and "location" not in refused.headers
    assert "This link is damaged" in refused.text
    french = client.get(f"/t/c/{forged}x", headers={"accept-language": "fr-FR"})
    assert french.status_code == 400 and "Ce lien est endommagé" in french.text


# --- unsubscribe -----------------------------------------------------------------------------


def test_following_the_unsubscribe_link_changes_nothing(
    session: Session, world: World, spring: Campaign, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    optin = world.ids["optin"]
    token = signer.make_unsubscribe(Subscription(optin, "email", world.brand, spring.id))
    consents = count(session, Consent)
    page = client.get(f"/u/{token}", headers={"accept-language": "en"})
    assert page.status_code == 200
    private(page)
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "Unsubscribe from Soleil emails?" in page.text
    assert "o•••@exemple.fr" in page.text and "optin@exemple.fr" not in page.text
    assert 'method="post"' in page.text and "/p/" in page.text
    assert count(session, Consent) == consents
    assert message(session, spring, optin).unsubscribed_at is None
    assert status(session, optin, "email") == ["granted"]


def test_one_click_unsubscribes_without_a_form_token(
    session: Session, world: World, spring: Campaign, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    optin = world.ids["optin"]
    token = signer.make_unsubscribe(Subscription(optin, "email", world.brand, spring.id))
    answer = client.post(
        f"/u/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded", "user-agent": "GMail"},
    )
    assert answer.status_code == 200 and answer.text == "unsubscribed\n"
    private(answer)
    assert status(session, optin, "email") == ["withdrawn"]
    row = session.scalars(select(Consent).where(Consent.status == "withdrawn")).all()[-1]
    assert row.proof["source"] == "unsubscribe:one_click" and row.proof["user_agent"] == "GMail"
    assert "testclient" not in str(row.proof) and len(row.proof["ip_hash"]) == 64
    hashes = session.scalars(select(Suppression.value_hash)).all()
    assert contact_hash("email", "optin@exemple.fr") in hashes
    assert message(session, spring, optin).unsubscribed_at is not None
    # again (mail clients retry): same answer, nothing more
    before = count(session, Consent), count(session, Suppression), count(session, Interaction)
    again = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert (count(session, Consent), count(session, Suppression), count(session, Interaction)) == (
        before
    )


def test_the_page_form_unsubscribes_with_its_form_token(
    session: Session, world: World, spring: Campaign, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    buyer = world.ids["buyer"]
    token = signer.make_unsubscribe(Subscription(buyer, "email", world.brand, spring.id))
    page = client.get(f"/u/{token}", headers={"accept-language": "fr"})
    assert "Ne plus recevoir les e-mails de Soleil ?" in page.text
    form_token = _CSRF.search(page.text)
    assert form_token is not None
    for bad in ({}, {"csrf_token": "forged"}):
        refused = client.post(f"/u/{token}", data=bad, headers={"accept-language": "en"})
        assert refused.status_code == 403 and "This form has expired" in refused.text
    assert status(session, buyer, "email") == []  # a soft opt-in buyer: no consent row yet
    done = client.post(
        f"/u/{token}", data={"csrf_token": form_token.group(1)}, headers={"accept-language": "fr"}
    )
    assert done.status_code == 200
    assert "Votre désabonnement est enregistré" in done.text
    link = re.search(r'href="(/p/[^"]+)"', done.text)
    assert link is not None
    assert status(session, buyer, "email") == ["withdrawn"]
    session.expire_all()
    [event] = session.scalars(select(Interaction).where(Interaction.type == "email_unsubscribed"))
    assert (event.customer_id, event.outcome, event.campaign_code) == (buyer, "link", "spring")
    # the confirmation leads to the preference center, which shows the withdrawal
    center = client.get(link.group(1), headers={"accept-language": "en"})
    assert (
        center.status_code == 200
        and 'id="email-no" name="channel_email" value="no" checked' in center.text
    )


def test_damaged_and_dead_links(
    session: Session, world: World, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    english = {"accept-language": "en"}
    for path in ("/u/abc.def", "/p/abc.def"):
        assert client.get(path, headers=english).status_code == 400
        assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 400
    # a token of another purpose is refused too
    sub = Subscription(world.ids["optin"], "email", world.brand, None)
    assert client.get(f"/u/{signer.make_preferences(sub)}").status_code == 400
    gone = Subscription(999_999_999, "email", world.brand, None)
    page = client.get(f"/p/{signer.make_preferences(gone)}", headers=english)
    assert page.status_code == 410 and "This link no longer works" in page.text
    one_click = client.post(
        f"/u/{signer.make_unsubscribe(gone)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200


# --- preference center -----------------------------------------------------------------------


def test_the_preference_center_changes_consents_at_once(
    session: Session, world: World, public: tuple[TestClient, LinkSigner]
) -> None:
    client, signer = public
    who = world.ids["fallback"]
    customer = session.get(Customer, who)
    customer.phone_mobile = MOBILE
    session.commit()
    token = signer.make_preferences(Subscription(who, "email", world.brand, None))
    page = client.get(f"/p/{token}", headers={"accept-language": "fr-FR,fr;q=0.9"})
    assert page.status_code == 200 and "Vos préférences" in page.text
    private(page)
    text = page.text
    assert "Bonjour Fallback," in text and "Fallback Test" not in text
    assert "f•••@exemple.fr" in text and "+33 6 •• •• •• 78" in text and "69••• LYON" in text
    assert "fallback@exemple.fr" not in text and MOBILE not in text and "LILAS" not in text
    assert text.count("<fieldset") == 5 and text.count("<legend>") == 5
    assert '<label for="email-yes">' in text and 'for="max_per_week"' in text
    assert "checked" not in text  # nothing decided yet: no choice made for the customer
    form_token = _CSRF.search(text)
    assert form_token is not None
    saved = client.post(
        f"/p/{token}",
        data={
            "csrf_token": form_token.group(1),
            "channel_email": "yes",
            "channel_sms": "no",
            "language": "en",
            "max_per_week": "3",
        },
    )
    assert saved.status_code == 200
    # the page answers in the language just chosen, with what changed
    assert "Your choices are saved." in saved.text and 'role="status"' in saved.text
    assert "Emails: yes" in saved.text and "Text messages (SMS): no" in saved.text
    assert status(session, who, "email") == ["granted"]
    assert status(session, who, "sms") == ["withdrawn"]
    assert status(session, who, "postal") == []  # left alone: no choice was sent for it
    # a second visit shows the choices
    again = client.get(f"/p/{token}")
    assert 'id="email-yes" name="channel_email" value="yes" checked' in again.text
    assert 'id="sms-no" name="channel_sms" value="no" checked' in again.text
    assert (
        '<option value="3" selected>' in again.text and '<option value="en" selected>' in again.text
    )
    # the planner sees the consent now
    autumn = new_campaign(session, "autumn", priority=50)
    campaigns.plan(
        session, campaigns=[autumn], now=NOW + timedelta(days=1), policies=campaigns.Policies()
    )
    row = session.scalars(
        select(Outbox).where(Outbox.campaign_id == autumn.id, Outbox.customer_id == who)
    ).one()
    assert row.channel == "email"
    # a forged form token changes nothing
    refused = client.post(f"/p/{token}", data={"csrf_token": "x", "channel_email": "no"})
    assert refused.status_code == 403 and status(session, who, "email") == ["granted"]
    bad = client.post(
        f"/p/{token}", data={"csrf_token": form_token.group(1), "max_per_week": "lots"}
    )
    assert bad.status_code == 400 and 'role="alert"' in bad.text


# --- SMS callbacks ---------------------------------------------------------------------------


def test_sms_status_callbacks_need_the_providers_signature(
    session: Session, world: World, public: tuple[TestClient, LinkSigner]
) -> None:
    client, _signer = public
    texto = campaigns.create(
        session, code="texto", name="Texto", segment="everyone", channels=["sms"], brand="SOLEIL"
    )
    row = Outbox(
        key="texto:1", campaign_id=texto.id, customer_id=world.ids["optin"], brand_id=world.brand,
        channel="sms", language="fr", address=MOBILE, state="sent", send_after=NOW,
        planned_at=NOW, sent_at=NOW, provider_id="SM42",
    )  # fmt: skip
    session.add(row)
    session.commit()
    form = {"MessageSid": "SM42", "MessageStatus": "delivered", "AccountSid": "AC1"}
    url = f"{PUBLIC}/t/sms/status"
    wrong = client.post("/t/sms/status", data=form, headers={"X-Twilio-Signature": "bm9wZQ=="})
    assert wrong.status_code == 403
    assert client.post("/t/sms/status", data=form).status_code == 403
    other_url = twilio_signature(f"{PUBLIC}/t/sms/inbound", form)
    assert (
        client.post(
            "/t/sms/status", data=form, headers={"X-Twilio-Signature": other_url}
        ).status_code
        == 403
    )
    assert message(session, texto, world.ids["optin"]).state == "sent"
    good = client.post(
        "/t/sms/status", data=form, headers={"X-Twilio-Signature": twilio_signature(url, form)}
    )
    assert good.status_code == 204
    delivered = message(session, texto, world.ids["optin"])
    assert delivered.state == "delivered" and delivered.delivered_at is not None
    odd = {"MessageSid": "SM42", "MessageStatus": "teleported"}
    answer = client.post(
        "/t/sms/status", data=odd, headers={"X-Twilio-Signature": twilio_signature(url, odd)}
    )
    assert answer.status_code == 400


def test_a_stop_reply_through_the_inbound_webhook(
    session: Session, world: World, public: tuple[TestClient, LinkSigner]
) -> None:
    client, _signer = public
    who = world.ids["optin"]
    session.get(Customer, who).phone_mobile = MOBILE
    session.commit()
    form = {"From": MOBILE, "To": "+33700000000", "Body": "STOP", "MessageSid": "SM9"}
    url = f"{PUBLIC}/t/sms/inbound"
    forged = client.post("/t/sms/inbound", data=form, headers={"X-Twilio-Signature": "AAAA"})
    assert forged.status_code == 403 and status(session, who, "sms") == []
    answer = client.post(
        "/t/sms/inbound", data=form, headers={"X-Twilio-Signature": twilio_signature(url, form)}
    )
    assert answer.status_code == 200 and answer.text.endswith("<Response/>")
    assert answer.headers["content-type"].startswith("application/xml")
    assert status(session, who, "sms") == ["withdrawn"]
    hashes = session.scalars(select(Suppression.value_hash).where(Suppression.channel == "sms"))
    assert list(hashes) == [contact_hash("sms", MOBILE)]
