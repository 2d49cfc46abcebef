"""The campaign pages on SQLite and PostgreSQL: the list, the editor (errors next to their field,
template errors with their part and line, message fields following the channels through htmx),
editing, the dry run (funnel, exclusions, nothing written; alone and with the other scheduled
campaigns), planning, cancelling, previews with and without personal data, the results page,
who may do what, the audit rows, and French."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.web_support import signed_in
from tournesol.auth.models import AuditLog
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import (
    Campaign,
    CampaignAttribution,
    CampaignMessage,
    CampaignTarget,
    Outbox,
)
from tournesol.consent import service as consent_service
from tournesol.customers.models import Brand, Customer
from tournesol.db import unit_of_work
from tournesol.segments.models import Segment

HTMX = {"HX-Request": "true"}
NAMES = ("Amandine", "Bertrand", "Chloé", "Damien", "Élodie", "Fabrice")
EMAIL_TEXT = "Bonjour {{ first_name }}, nos offres. Se désinscrire : {{ unsubscribe_url }}"
EMAIL_HTML = '<p>Bonjour {{ first_name }}</p><a href="{{ unsubscribe_url }}">stop</a>'


@dataclass
class Base:
    brand: int
    ids: list[int]


@pytest.fixture
def base(factory: sessionmaker[Session]) -> Base:
    """Six customers of the Soleil brand: four with an e-mail consent, two reachable by post
    only; a segment of them all."""
    with unit_of_work(factory) as session:
        brand = Brand(code="SOLEIL", name="Soleil")
        session.add(brand)
        session.flush()
        ids = []
        for i, name in enumerate(NAMES):
            values: dict[str, object] = {"email": f"{name.lower()}@exemple.fr"}
            if i >= 4:
                values = {"address_line4": f"{i} RUE DES LILAS", "address_line6": "69003 LYON"}
            customer = Customer(first_name=name, last_name="Martin", country="FR", **values)
            session.add(customer)
            session.flush()
            ids.append(customer.id)
            if i < 4:
                consent_service.set_consent(
                    session, customer_id=customer.id, channel="email", purpose="marketing",
                    brand_id=brand.id, status="granted", proof_source="web form",
                    proof_text_version="v1", collected_at=datetime.now(UTC) - timedelta(days=9),
                    actor="test",
                )  # fmt: skip
        session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
        return Base(brand.id, ids)


def form(**overrides: str) -> dict[str, str]:
    data = {
        "code": "spring", "name": "Spring sale", "brand": "SOLEIL", "objective": "Sell more",
        "segment": "everyone", "channel_1": "email", "channel_2": "postal", "purpose": "marketing",
        "starts_at": "", "ends_at": "", "priority": "60", "expected_value": "2,50",
        "fixed_cost": "100", "cost.email": "0.01", "cost.postal": "0,90",
        "control_percent": "0", "attribution_days": "15", "default_language": "fr",
        "languages": "", "status": "draft",
        "m.email.fr.subject": "Le printemps, {{ first_name }}", "m.email.fr.text": EMAIL_TEXT,
        "m.email.fr.html": EMAIL_HTML, "m.postal.fr.text": "Cher {{ first_name }}, une lettre.",
    }  # fmt: skip
    data.update(overrides)
    return data


def audit(factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with unit_of_work(factory) as session:
        rows = list(session.scalars(select(AuditLog).where(AuditLog.action == action)))
        session.expunge_all()
        return rows


def count(factory: sessionmaker[Session], model: object, *where: object) -> int:
    with unit_of_work(factory) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]


def saved_campaign(factory: sessionmaker[Session], code: str) -> Campaign:
    with unit_of_work(factory) as session:
        found = campaigns.get_by_code(session, code=code)
        assert found is not None
        session.expunge(found)
        return found


def make(factory: sessionmaker[Session], code: str, *, status: str = "draft") -> None:
    with unit_of_work(factory) as session:
        c = campaigns.create(
            session, code=code, name=code.title(), segment="everyone", channels=["email"],
            brand="SOLEIL", control_share=0.0,
        )  # fmt: skip
        campaigns.set_message(
            session, campaign=c, channel="email", language="fr", subject="Hi",
            body_text=EMAIL_TEXT,
        )  # fmt: skip
        c.status = status


def test_the_editor_saves_a_campaign_with_its_messages(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    assert "No campaign yet" in client.get("/campaigns").text
    page = client.get("/campaigns/new")
    assert page.status_code == 200
    html = page.text
    assert 'name="channel_1"' in html and 'name="m.email.fr.subject"' in html
    assert 'hx-post="/campaigns/editor"' in html and '<option value="everyone"' in html
    assert "{{ first_name }}" in html  # the fields reference

    created = client.post("/campaigns/new", data=form(), follow_redirects=False)
    assert created.status_code == 303, created.text[:2000]
    assert created.headers["location"] == "/campaigns/spring?notice=saved"
    c = saved_campaign(factory, "spring")
    assert (c.channels, c.priority, c.expected_value, c.fixed_cost) == (
        ["email", "postal"], 60, Decimal("2.50"), Decimal("100.00"),
    )  # fmt: skip
    assert c.unit_costs == {"email": "0.01", "postal": "0.9"}
    assert (c.control_share, c.attribution_days, c.created_by) == (0.0, 15, c.created_by)
    assert c.created_by and c.created_by.startswith("marketer-")
    assert count(factory, CampaignMessage, CampaignMessage.campaign_id == c.id) == 2
    [row] = audit(factory, "campaign.create")
    assert row.details["campaign"] == "spring" and row.details["messages"] == 2

    page = client.get("/campaigns/spring?notice=saved")
    assert page.status_code == 200
    assert "Spring sale" in page.text and "Campaign saved." in page.text
    assert "e-mail → post" in page.text and "0,01" not in page.text  # English page: 0.01
    listing = client.get("/campaigns").text
    assert 'href="/campaigns/spring"' in listing and "Everyone" in listing and "Soleil" in listing


def test_errors_show_next_to_their_field_with_the_template_line(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    bad = form(
        code="new", control_percent="60", attribution_days="0", expected_value="lots",
        **{"m.email.fr.text": "Bonjour\n{{ first_nam }}\n{{ unsubscribe_url }}"},
    )  # fmt: skip
    page = client.post("/campaigns/new", data=bad)
    assert page.status_code == 400
    html = page.text
    assert 'id="c-code-error"' in html and "names a page of the application" in html
    assert 'aria-invalid="true" aria-describedby="c-control-error"' in html
    assert "A percentage from 0 to 50." in html and "A number of days from 1 to 365." in html
    assert 'value="lots"' in html  # what was typed stays
    # the settings are wrong: the messages are checked once they are right
    page = client.post("/campaigns/new", data=form(**{"m.email.fr.text": bad["m.email.fr.text"]}))
    assert page.status_code == 400
    error = re.search(r'<p class="field-error" id="m-email-fr-text-error">(.*?)</p>', page.text)
    assert error, page.text[:3000]
    assert "Line 2:" in error.group(1) and "first_nam" in error.group(1)
    assert 'aria-describedby="m-email-fr-text-error"' in page.text
    # a marketing e-mail without an unsubscribe link
    page = client.post(
        "/campaigns/new", data=form(**{"m.email.fr.text": "Hi", "m.email.fr.html": "<p>Hi</p>"})
    )
    assert page.status_code == 400 and "unsubscribe link" in page.text
    assert count(factory, Campaign) == 0


def test_the_editor_keeps_the_measurement_settings(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    page = client.get("/campaigns/new").text
    assert 'name="window.email"' in page and 'name="postal_delay_days"' in page
    assert 'name="margin_percent"' in page
    data = form(**{"window.postal": "45", "postal_delay_days": "4", "margin_percent": "35"})
    created = client.post("/campaigns/new", data=data, follow_redirects=False)
    assert created.status_code == 303, created.text[:2000]
    c = saved_campaign(factory, "spring")
    assert (c.attribution_windows, c.postal_delay_days, c.margin_rate) == ({"postal": 45}, 4, 0.35)
    edit = client.get("/campaigns/spring/edit").text
    assert 'name="window.postal" type="number" min="1" max="365" step="1" value="45"' in edit
    # emptied: the campaign's window for every channel, no margin
    changed = client.post(
        "/campaigns/spring/edit",
        data=form(**{"window.postal": "", "postal_delay_days": "2", "margin_percent": ""}),
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text[:2000]
    c = saved_campaign(factory, "spring")
    assert (c.attribution_windows, c.postal_delay_days, c.margin_rate) == ({}, 2, None)
    bad = client.post(
        "/campaigns/spring/edit",
        data=form(**{"window.email": "0", "postal_delay_days": "31", "margin_percent": "150"}),
    )
    assert bad.status_code == 400
    for message in (
        "A number of days from 1 to 365.", "A number of days from 0 to 30.",
        "A percentage above 0, at most 100.",
    ):  # fmt: skip
        assert message in bad.text


def test_the_message_fields_follow_the_channels_and_languages(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "agency")
    fragment = client.post(
        "/campaigns/editor",
        data=form(channel_1="sms", channel_2="email", languages="en", **{"m.sms.fr.text": "Promo"}),
        headers=HTMX,
    )
    assert fragment.status_code == 200
    html = fragment.text
    assert "<html" not in html and html.strip().startswith('<div id="messages"')
    assert 'name="m.sms.fr.text"' in html and 'name="m.sms.en.text"' in html
    assert 'name="m.email.en.subject"' in html and 'name="m.postal.fr.text"' not in html
    assert ">Promo</textarea>" in html  # what was typed is kept
    assert "sms.fr.subject" not in html  # an SMS has no subject
    # without JavaScript: the same, through the form's own button
    page = client.post("/campaigns/new", data=form(channel_2="sms", action="refresh"))
    assert page.status_code == 200 and 'name="m.sms.fr.text"' in page.text
    assert count(factory, Campaign) == 0


def test_editing_changes_settings_and_messages_until_the_campaign_is_planned(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    make(factory, "autumn")
    page = client.get("/campaigns/autumn/edit")
    assert page.status_code == 200
    assert 'value="autumn" readonly' in page.text and "Hi" in page.text
    changed = client.post(
        "/campaigns/autumn/edit",
        data=form(code="ignored", name="Autumn sale", channel_2="", status="scheduled",
                  starts_at="2030-03-01T09:30", ends_at="2030-03-31T18:00"),
        follow_redirects=False,
    )  # fmt: skip
    assert changed.status_code == 303, changed.text[:2000]
    c = saved_campaign(factory, "autumn")
    assert (c.name, c.status, c.channels, c.priority) == ("Autumn sale", "scheduled", ["email"], 60)
    assert c.starts_at == datetime(2030, 3, 1, 8, 30, tzinfo=UTC)  # 09:30 in Paris
    assert c.unit_costs == {"email": "0.01"}  # the post is no longer used
    with unit_of_work(factory) as session:
        [message] = session.scalars(
            select(CampaignMessage).where(CampaignMessage.campaign_id == c.id)
        )
        assert message.subject == "Le printemps, {{ first_name }}"
    assert audit(factory, "campaign.update")
    page = client.get("/campaigns/autumn/edit")
    assert 'value="2030-03-01T09:30"' in page.text and 'value="scheduled" checked' in page.text
    with unit_of_work(factory) as session:
        campaigns.get_by_code(session, code="autumn").status = "running"  # type: ignore[union-attr]
    assert client.get("/campaigns/autumn/edit").status_code == 409
    assert client.post("/campaigns/autumn/edit", data=form()).status_code == 409


def test_a_dry_run_shows_the_funnel_and_writes_nothing(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    assert client.post("/campaigns/new", data=form(), follow_redirects=False).status_code == 303
    make(factory, "rival", status="scheduled")
    page = client.post("/campaigns/spring/dry-run", data={})
    assert page.status_code == 200, page.text[:2000]
    html = page.text
    assert "The campaign alone" in html and "With the other scheduled campaigns" not in html
    funnel = re.findall(r'<th scope="row">([^<]+)</th><td class="num">(\d+)</td>', html)
    assert ("Segment audience", "6") in funnel and ("Within the pressure rules", "6") in funnel
    assert 'style="width: 100.0%"' in html  # a bar per stage
    assert count(factory, CampaignTarget) == 0 and count(factory, Outbox) == 0
    assert saved_campaign(factory, "spring").status == "draft"
    [row] = audit(factory, "campaign.dry_run")
    assert row.details == {"campaign": "spring", "with": [], "planned": 6}

    together = client.post("/campaigns/spring/dry-run", data={"with_scheduled": "1"}).text
    assert "With the other scheduled campaigns" in together
    assert 'href="/campaigns/rival">rival</a>' in together
    # the rival has the lower priority: it loses the four e-mail customers to spring (48 h gap)
    rival = re.search(r"rival</a></th>(.*?)</tr>", together, re.S)
    assert rival and re.findall(r'"num">(\d+)<', rival.group(1)) == ["6", "0", "0", "4"]
    assert "Lost to a higher-ranked campaign" in together
    assert count(factory, CampaignTarget) == 0

    with unit_of_work(factory) as session:
        campaigns.create(session, code="mute", name="Mute", segment="everyone", channels=["sms"])
    broken = client.post("/campaigns/mute/dry-run", data={})
    assert broken.status_code == 400 and "no message for sms" in broken.text


def test_planning_cancelling_and_the_results_page(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    assert client.post("/campaigns/new", data=form(), follow_redirects=False).status_code == 303
    make(factory, "rival", status="scheduled")
    planned = client.post(
        "/campaigns/spring/plan", data={"with_scheduled": "1"}, follow_redirects=False
    )
    assert planned.status_code == 303
    assert planned.headers["location"] == "/campaigns/spring?notice=planned"
    spring, rival = saved_campaign(factory, "spring"), saved_campaign(factory, "rival")
    assert (spring.status, rival.status) == ("running", "running")
    assert count(factory, Outbox, Outbox.campaign_id == spring.id) == 6
    [row] = audit(factory, "campaign.plan")
    assert row.details["campaigns"]["spring"] == {"planned": 6, "control": 0}
    # the messages go out and a customer buys
    with unit_of_work(factory) as session:
        sent_at = datetime.now(UTC) - timedelta(days=2)
        for o in session.scalars(select(Outbox).where(Outbox.campaign_id == spring.id)):
            o.state, o.sent_at = "sent", sent_at
            if o.customer_id == base.ids[0]:
                o.opened_at = o.clicked_at = sent_at + timedelta(hours=1)
        session.add(
            CampaignAttribution(
                campaign_id=spring.id, customer_id=base.ids[0], outbox_id=1, transaction_id=1,
                amount=Decimal("80.00"), purchased_at=sent_at + timedelta(days=1),
                contacted_at=sent_at, clicked=True,
            )
        )  # fmt: skip
    page = client.get("/campaigns/spring?notice=planned")
    html = page.text
    assert page.status_code == 200 and "Campaign planned" in html
    assert '<h2 id="results-title">Results</h2>' in html
    assert re.search(r"Messages sent<b>6</b>", html) and "80.00" in html
    assert "Provisional: purchases made until" in html
    assert "Without a control group, uplift and ROI cannot be measured." in html
    assert "Cancel the campaign" in html and "/campaigns/spring/edit" not in html
    # 100 fixed + 4 e-mails x 0.01 + 2 letters x 0.90
    assert "101.84" in html
    attributed = client.post("/campaigns/spring/attribute", follow_redirects=False)
    assert attributed.status_code == 303 and audit(factory, "campaign.attribute")
    # planning again is refused; cancelling stops what is still planned
    assert client.post("/campaigns/rival/plan", data={}).status_code == 409
    with unit_of_work(factory) as session:
        left = session.scalars(select(Outbox).where(Outbox.campaign_id == rival.id)).all()
        assert {o.state for o in left} <= {"planned"}
    cancelled = client.post("/campaigns/rival/cancel", follow_redirects=False)
    assert cancelled.status_code == 303
    assert saved_campaign(factory, "rival").status == "cancelled"
    assert count(factory, Outbox, Outbox.campaign_id == rival.id, Outbox.state != "cancelled") == 0
    [row] = audit(factory, "campaign.cancel")
    assert row.details == {"campaign": "rival", "messages_cancelled": len(left)}
    assert client.post("/campaigns/rival/cancel").status_code == 409


def test_previews_name_customers_only_for_roles_with_personal_data(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    make(factory, "winter")
    with unit_of_work(factory) as session:
        c = campaigns.get_by_code(session, code="winter")
        assert c is not None
        campaigns.set_message(
            session, campaign=c, channel="email", language="fr", subject="Pour {{ first_name }}",
            body_text=EMAIL_TEXT, body_html=EMAIL_HTML,
        )  # fmt: skip
    url = "/campaigns/winter/preview?channel=email&language=fr"
    marketer = signed_in(app, factory, "marketer")
    shown = marketer.get(url, headers=HTMX)
    assert shown.status_code == 200
    assert "Pour Amandine" in shown.text and "For customer" in shown.text
    assert 'sandbox=""' in shown.text and "&lt;p&gt;Bonjour Amandine" in shown.text
    [row] = audit(factory, "campaign.preview")
    assert row.details["campaign"] == "winter" and row.details["count"] == 3

    agency = signed_in(app, factory, "agency")
    shown = agency.get(url, headers=HTMX)
    assert shown.status_code == 200
    assert "Pour [first_name]" in shown.text and "First name, in display case" in shown.text
    assert not any(name in shown.text for name in NAMES) and "exemple.fr" not in shown.text
    assert len(audit(factory, "campaign.preview")) == 1
    assert agency.get("/campaigns/winter/preview?channel=sms&language=fr").status_code == 404


def test_who_may_see_and_do_what(app: FastAPI, factory: sessionmaker[Session], base: Base) -> None:
    make(factory, "summer")
    analyst = signed_in(app, factory, "analyst")
    assert analyst.get("/campaigns").status_code == 200
    page = analyst.get("/campaigns/summer")
    assert page.status_code == 200 and "/campaigns/summer/edit" not in page.text
    assert "Dry run" not in page.text and "New campaign" not in analyst.get("/campaigns").text
    for path in ("/campaigns/new", "/campaigns/summer/edit"):
        assert analyst.get(path).status_code == 403
    for path in ("/campaigns/summer/plan", "/campaigns/summer/dry-run", "/campaigns/summer/cancel"):
        assert analyst.post(path, data={}).status_code == 403
    advisor = signed_in(app, factory, "advisor")
    assert advisor.get("/campaigns").status_code == 403
    agency = signed_in(app, factory, "agency")
    assert "/campaigns/summer/edit" in agency.get("/campaigns/summer").text
    assert agency.get("/campaigns/nothing").status_code == 404
    # CSRF: a form without the session's token is refused
    agency.headers.pop("X-CSRF-Token")
    assert agency.post("/campaigns/summer/cancel").status_code == 403
    assert saved_campaign(factory, "summer").status == "draft"


def test_the_pages_speak_french(app: FastAPI, factory: sessionmaker[Session], base: Base) -> None:
    make(factory, "hiver")
    client = signed_in(app, factory, "marketer", language="fr")
    listing = client.get("/campaigns").text
    assert "Nouvelle campagne" in listing and "brouillon" in listing
    editor = client.get("/campaigns/hiver/edit").text
    assert "Canaux, par ordre de repli" in editor and "Prénom" in editor
    dry = client.post("/campaigns/hiver/dry-run", data={}).text
    assert "Audience du segment" in dry and "Rien n&#39;a été écrit" in dry
    bad = client.post("/campaigns/new", data=form(control_percent="70")).text
    assert "Un pourcentage de 0 à 50." in bad
