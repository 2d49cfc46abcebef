"""The segment pages and API on SQLite and PostgreSQL: the builder and its htmx parts (live
count for a form state, conditions added, removed and changed of kind, the JSON/YAML editor),
an invalid definition answered with its node's path, saving, the list with sizes and trends,
a segment's page, its profile, the overlap page; who may do what; and roles without personal
data (analyst, agency) who get counts and profiles but no names in the preview or the CSV."""

from __future__ import annotations

import csv
import html as html_module
import io
import json
import re
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.test_segment_service import Base, seed
from tests.web_support import make_api_key, signed_in
from tournesol.auth import rules
from tournesol.auth.models import AuditLog
from tournesol.db import unit_of_work
from tournesol.segments import service
from tournesol.segments.models import Segment

HTMX = {"HX-Request": "true"}
# What a page without personal data must never show (names, e-mails, phones of the base).
PERSONAL = ("Premier", "Second", "Quatrieme", "Huitieme", "c1@example.org", "c2@example.org",
            "+33611111111", "Alice")  # fmt: skip
WOMEN_FORM = {"combine": "all", "c0.kind": "attribute", "c0.attribute": "gender",
              "c0.op": "eq", "c0.value": "F"}  # fmt: skip


@pytest.fixture
def base(factory: sessionmaker[Session]) -> Base:
    with unit_of_work(factory) as session:
        return seed(session)


def saved(factory: sessionmaker[Session], code: str, definition: dict[str, object]) -> None:
    with unit_of_work(factory) as session:
        segment = service.create(session, code=code, name=code.title(), definition=definition)
        service.refresh(session, segment, now=datetime.now(UTC))


def audit_rows(factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with unit_of_work(factory) as session:
        rows = list(session.scalars(select(AuditLog).where(AuditLog.action == action)))
        session.expunge_all()
        return rows


def size_shown(html: str) -> int:
    found = re.search(r'class="count-size"><b>([\d\u202f,]+)</b>', html)
    assert found, html[:500]
    return int(re.sub(r"\D", "", found.group(1)))


# --- the builder ---------------------------------------------------------------------------


def test_the_builder_renders_with_a_live_count_region(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    page = client.get("/segments/new")
    assert page.status_code == 200
    html = page.text
    assert 'id="live-count" role="status" aria-live="polite"' in html
    assert 'hx-post="/segments/count"' in html and "change delay:400ms" in html
    assert 'name="c0.kind"' in html and "<legend>Condition 1</legend>" in html
    assert 'name="combine" value="all"' in html and 'name="c0.not"' in html
    # one condition waiting for its value: left out of the count (everybody), and said so
    assert size_shown(html) == 7
    assert "Condition 1: waiting for a value, not counted yet." in html


def test_live_count_follows_the_form_state(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "analyst")
    women = client.post("/segments/count", data=WOMEN_FORM, headers=HTMX)
    assert women.status_code == 200
    assert size_shown(women.text) == 4
    assert "<html" not in women.text  # a fragment
    both = client.post(
        "/segments/count",
        data={**WOMEN_FORM, "c1.kind": "reachable", "c1.channel": "email"},
        headers=HTMX,
    )
    assert size_shown(both.text) == 3
    either = client.post(
        "/segments/count",
        data={**WOMEN_FORM, "combine": "any", "c1.kind": "reachable", "c1.channel": "email"},
        headers=HTMX,
    )
    assert size_shown(either.text) == 5
    negated = client.post("/segments/count", data={**WOMEN_FORM, "c0.not": "1"}, headers=HTMX)
    assert size_shown(negated.text) == 3
    aged = client.post(
        "/segments/count",
        data={
            "c0.kind": "attribute",
            "c0.attribute": "age",
            "c0.op": "between",
            "c0.value": "25",
            "c0.value2": "45",
        },
        headers=HTMX,
    )
    assert size_shown(aged.text) == 3  # c1 26, c2 35, c8 41
    raw = client.post(
        "/segments/count",
        data={"mode": "raw", "raw": "any:\n  - reachable: sms\n  - not: {reachable: email}\n"},
        headers=HTMX,
    )
    assert size_shown(raw.text) == 4  # c1 (sms), c3, c4, c6


def test_an_invalid_definition_shows_the_error_and_its_node_path(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    bad = client.post(
        "/segments/count",
        data={
            **WOMEN_FORM,
            "c1.kind": "attribute",
            "c1.attribute": "age",
            "c1.op": "gt",
            "c1.value": "old",
        },
        headers=HTMX,
    )
    assert bad.status_code == 200
    assert "The definition cannot be counted" in bad.text
    assert "$.all[1].value" in bad.text and "Condition 2" in bad.text
    assert "whole number" in bad.text
    raw = client.post("/segments/count", data={"mode": "raw", "raw": "all: [\n"}, headers=HTMX)
    assert "not valid JSON or YAML" in raw.text
    deep = client.post(
        "/segments/count",
        data={"mode": "raw", "raw": json.dumps({"all": [{"behaviour": {"of": "purchases"}}]})},
        headers=HTMX,
    )
    assert "$.all[0].behaviour" in deep.text
    # the whole page (no htmx) marks the faulty condition
    page = client.post(
        "/segments/count",
        data={
            **WOMEN_FORM,
            "c1.kind": "attribute",
            "c1.attribute": "age",
            "c1.op": "gt",
            "c1.value": "old",
        },
    )
    assert page.status_code == 200 and "<html" in page.text
    assert 'class="condition has-error" id="c1"' in page.text


def test_the_value_field_suggests_values_for_its_attribute(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "analyst")
    regions = client.get("/segments/suggest?row=2&c2.attribute=region", headers=HTMX)
    assert regions.status_code == 200
    assert regions.text.strip().startswith('<datalist id="c2-values">')
    assert '<option value="11">Île-de-France</option>' in regions.text
    gender = client.get("/segments/suggest?row=0&c0.attribute=gender", headers=HTMX)
    assert '<option value="F">women</option>' in gender.text
    assert "<option" not in client.get("/segments/suggest?row=0&c0.attribute=city").text
    page = client.get("/segments/new")
    assert 'list="c0-values"' in page.text and '<datalist id="c0-values">' in page.text


def test_conditions_are_added_removed_and_change_kind_through_htmx(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    added = client.post("/segments/builder", data={**WOMEN_FORM, "action": "add"}, headers=HTMX)
    assert added.status_code == 200
    assert 'id="editor"' in added.text and 'name="c1.kind"' in added.text
    assert 'hx-swap-oob="innerHTML"' in added.text  # the count comes along
    assert 'value="F"' in added.text  # the first row kept its value
    behaviour = client.post(
        "/segments/builder",
        data={**WOMEN_FORM, "c0.kind": "behaviour", "action": "kind:0"},
        headers=HTMX,
    )
    assert 'name="c0.measure"' in behaviour.text and 'name="c0.window"' in behaviour.text
    assert 'value="F"' not in behaviour.text  # the attribute's fields are gone
    removed = client.post(
        "/segments/builder",
        data={**WOMEN_FORM, "c1.kind": "reachable", "c1.channel": "sms", "action": "remove:0"},
        headers=HTMX,
    )
    assert 'name="c0.channel"' in removed.text and 'name="c1.kind"' not in removed.text
    assert size_shown(removed.text) == 2  # sms only: c1, c3
    # the text editor holds the form's definition, and comes back to the form
    to_raw = client.post(
        "/segments/builder",
        data={**WOMEN_FORM, "mode": "raw", "shown_mode": "form"},
        headers=HTMX,
    )
    assert "<textarea" in to_raw.text and "&#34;attribute&#34;: &#34;gender&#34;" in to_raw.text
    back = client.post(
        "/segments/builder",
        data={
            "mode": "form",
            "shown_mode": "raw",
            "raw": '{"any": [{"not": {"reachable": "email"}}, {"segment": "x"}]}',
        },
        headers=HTMX,
    )
    assert 'name="c0.not" value="1" checked' in back.text
    assert 'name="combine" value="any" checked' in back.text
    nested = client.post(
        "/segments/builder",
        data={
            "mode": "form",
            "shown_mode": "raw",
            "raw": '{"all": [{"any": [{"reachable": "sms"}, {"reachable": "email"}]}]}',
        },
        headers=HTMX,
    )
    assert "<textarea" in nested.text and "deeper than the form" in nested.text
    # without JavaScript the same buttons post the form to its page, which shows it again
    plain = client.post(
        "/segments/new", data={**WOMEN_FORM, "code": "kept", "name": "Kept", "action": "add"}
    )
    assert plain.status_code == 200 and "<html" in plain.text
    assert 'name="c1.kind"' in plain.text and 'value="Kept"' in plain.text
    with unit_of_work(factory) as session:
        assert service.get_by_code(session, code="kept") is None


# --- saving, the list, a segment's page ----------------------------------------------------


def test_a_marketer_saves_a_segment_and_finds_it_in_the_list(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "marketer")
    response = client.post(
        "/segments/new",
        data={**WOMEN_FORM, "code": "women", "name": "Women", "description": "test"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text[:500]
    assert response.headers["location"] == "/segments/women?notice=saved"
    listing = client.get("/segments")
    assert listing.status_code == 200
    assert ">Women</a>" in listing.text and ">women<" in listing.text
    with unit_of_work(factory) as session:
        segment = service.get_by_code(session, code="women")
        assert segment is not None and segment.last_size == 4
        service.refresh(session, segment)
        segment.definition = {"all": [{"attribute": "gender", "op": "eq", "value": "M"}]}
        service.refresh(session, segment)
    listing = client.get("/segments")
    assert '<svg class="sparkline"' in listing.text
    assert '<span class="down">−2</span>' in listing.text  # 4 -> 2
    page = client.get("/segments/women")
    assert page.status_code == 200 and "History" in page.text
    assert "Premier" not in page.text  # c1 is a woman: not in the segment now
    edit = client.get("/segments/women/edit")
    assert 'value="M"' in edit.text and 'name="code" value="women"' in edit.text
    # the same code again is refused, with the form kept
    again = client.post("/segments/new", data={**WOMEN_FORM, "code": "women", "name": "Again"})
    assert again.status_code == 400 and "is taken" in again.text and 'value="Again"' in again.text
    reserved = client.post("/segments/new", data={**WOMEN_FORM, "code": "new", "name": "New"})
    assert reserved.status_code == 400
    changed = client.post(
        "/segments/women/edit",
        data={**WOMEN_FORM, "code": "women", "name": "Women again"},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    refreshed = client.post("/segments/women/refresh", follow_redirects=False)
    assert refreshed.status_code == 303
    assert {a.details["segment"] for a in audit_rows(factory, "segment.update")} == {"women"}
    archived = client.post("/segments/women/archive", follow_redirects=False)
    assert archived.status_code == 303
    assert ">Women again</a>" not in client.get("/segments").text


def test_the_preview_names_members_only_for_customers_read(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    saved(factory, "women", {"attribute": "gender", "op": "eq", "value": "F"})
    marketer = signed_in(app, factory, "marketer").get("/segments/women?reason=check")
    assert "Premier" in marketer.text and "c1@example.org" in marketer.text
    assert f'href="/customers/{base["c1"]}"' in marketer.text
    [audit] = audit_rows(factory, "segment.preview")
    assert audit.details == {"segment": "women", "count": 4} and audit.reason == "check"
    for role in ("analyst", "agency"):
        page = signed_in(app, factory, role).get("/segments/women")
        assert page.status_code == 200
        assert not [p for p in PERSONAL if p in page.text], role
        assert f">{base['c1']}</th>" in page.text  # ids and non-personal fields only
        assert "25-34" in page.text
        assert 'href="/customers/' not in page.text
    assert len(audit_rows(factory, "segment.preview")) == 1


def test_the_profile_page_compares_the_segment_with_the_base(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    saved(factory, "women", {"attribute": "gender", "op": "eq", "value": "F"})
    client = signed_in(app, factory, "analyst")
    page = client.get("/segments/women/profile")
    assert page.status_code == 200
    html = page.text
    for title in ("Age band", "Gender", "Region", "RFM segment (all brands)", "Reachable by"):
        assert f">{title}</h2>" in html
    assert "Île-de-France" in html and "La Réunion" in html and "Champions" in html
    assert '<span class="pbar seg">' in html and "<table" in html
    assert "57.1" in html  # women: 4 of the 7 active customers
    assert not [p for p in PERSONAL if p in html]
    unsaved = client.post("/segments/profile", data=WOMEN_FORM)
    assert unsaved.status_code == 200 and "unsaved definition" in unsaved.text
    french = signed_in(app, factory, "analyst", language="fr").get("/segments/women/profile")
    assert "Tranche d'âge" in html_module.unescape(french.text)


def test_the_overlap_page(app: FastAPI, factory: sessionmaker[Session], base: Base) -> None:
    saved(factory, "women", {"attribute": "gender", "op": "eq", "value": "F"})
    saved(factory, "email", {"reachable": "email"})
    client = signed_in(app, factory, "agency")
    page = client.get("/segments/overlap?codes=women&codes=email")
    assert page.status_code == 200
    assert "<b>3</b>" in page.text and "75.0" in page.text
    assert client.get("/segments/overlap?codes=women").status_code == 400


def test_who_may_do_what(app: FastAPI, factory: sessionmaker[Session], base: Base) -> None:
    saved(factory, "women", {"attribute": "gender", "op": "eq", "value": "F"})
    analyst = signed_in(app, factory, "analyst")
    assert analyst.get("/segments").status_code == 200
    assert analyst.get("/segments/new").status_code == 200
    assert "Save the segment" not in analyst.get("/segments/new").text
    for path in ("/segments/new", "/segments/women/refresh", "/segments/women/archive"):
        assert analyst.post(path, data=WOMEN_FORM).status_code == 403, path
    assert analyst.get("/segments/women/edit").status_code == 403
    advisor = signed_in(app, factory, "advisor")
    assert advisor.get("/segments").status_code == 403
    agency = signed_in(app, factory, "agency")
    created = agency.post(
        "/segments/new",
        data={**WOMEN_FORM, "code": "agency-women", "name": "By the agency"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    assert TestClient(app).get("/segments", follow_redirects=False).status_code == 303


# --- the API -------------------------------------------------------------------------------


def test_the_api_counts_saves_refreshes_and_profiles(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    secret = make_api_key(factory, [rules.AGGREGATES_READ, rules.CAMPAIGNS_DESIGN])
    api = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
    women = {"attribute": "gender", "op": "eq", "value": "F"}
    counted = api.post("/api/v1/segments/count", json={"definition": women})
    assert counted.status_code == 200
    assert counted.json()["size"] == 4 and counted.json()["path"] == "features"
    wrong = api.post(
        "/api/v1/segments/count", json={"definition": {"all": [{"attribute": "shoe_size"}]}}
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["path"].startswith("$.all[0]")
    created = api.post(
        "/api/v1/segments", json={"code": "women", "name": "Women", "definition": women}
    )
    assert created.status_code == 201, created.text
    assert created.json()["last_size"] == 4 and created.json()["history"][0]["entered"] == 4
    assert (
        api.post(
            "/api/v1/segments", json={"code": "women", "name": "Again", "definition": women}
        ).status_code
        == 409
    )
    assert [s["code"] for s in api.get("/api/v1/segments").json()] == ["women"]
    assert api.get("/api/v1/segments/women").json()["definition"] == women
    assert api.get("/api/v1/segments/nope").status_code == 404
    refreshed = api.post("/api/v1/segments/women/refresh").json()
    assert (refreshed["size"], refreshed["entered"], refreshed["left"]) == (4, 0, 0)
    profile = api.get("/api/v1/segments/women/profile").json()
    assert (profile["size"], profile["base"]) == (4, 7)
    gender = next(d for d in profile["distributions"] if d["name"] == "gender")
    assert gender["buckets"][0] == {
        "key": "F", "segment": 4, "base": 4, "segment_share": 1.0, "base_share": 0.571429,
    }  # fmt: skip
    reader = TestClient(
        app, headers={"Authorization": f"Bearer {make_api_key(factory, [rules.AGGREGATES_READ])}"}
    )
    assert reader.post("/api/v1/segments/women/refresh").status_code == 403
    assert TestClient(app).get("/api/v1/segments").status_code == 401


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_respects_roles_and_is_audited(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    saved(factory, "women", {"attribute": "gender", "op": "eq", "value": "F"})
    for role in ("analyst", "agency"):
        response = signed_in(app, factory, role).get("/api/v1/segments/women/export")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = _csv(response.text)
        assert [int(r["customer_id"]) for r in rows] == sorted(
            base[n] for n in ("c1", "c2", "c4", "c8")
        )
        assert set(rows[0]) == set(service.NON_PERSONAL_COLUMNS) | {"score_churn"}
        assert not [p for p in PERSONAL if p in response.text], role
        assert rows[0]["region"] == "11" and rows[0]["age_band"] == "25-34"
    marketer = signed_in(app, factory, "marketer").get(
        "/api/v1/segments/women/export?reason=mailing"
    )
    rows = _csv(marketer.text)
    assert rows[0]["email"] == "c1@example.org" and rows[0]["last_name"] == "Premier"
    exports = audit_rows(factory, "segment.export")
    assert [(a.details["personal"], a.reason) for a in exports] == [
        (False, None),
        (False, None),
        (True, "mailing"),
    ]
    assert (
        signed_in(app, factory, "advisor").get("/api/v1/segments/women/export").status_code == 403
    )
    with unit_of_work(factory) as session:
        assert session.scalar(select(Segment.last_size).where(Segment.code == "women")) == 4
