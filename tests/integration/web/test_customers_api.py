"""The customer REST API (/api/v1/customers...) on SQLite and PostgreSQL, over the small base
of tests/integration/test_customer_search.py: search, the 360 detail, the timeline, the
writes, the audit trail, the answers for merged and unknown customers, and who may call it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.test_customer_search import Small, build_small_base
from tests.web_support import make_api_key, signed_in
from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.models import AuditLog
from tournesol.consent.models import Consent
from tournesol.customers import schemas, search, view360
from tournesol.db import unit_of_work

READ = [rules.CUSTOMERS_READ]
READ_WRITE = [rules.CUSTOMERS_READ, rules.CUSTOMERS_WRITE]


@pytest.fixture
def small(tmp_path: Path, factory: sessionmaker[Session]) -> Small:
    return build_small_base(tmp_path, factory)


def api(app: FastAPI, factory: sessionmaker[Session], scopes: list[str]) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {make_api_key(factory, scopes)}"
    return client


def audit_rows(factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with unit_of_work(factory) as session:
        return list(
            session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))
        )


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["customer_id"] for item in response.json()["items"]]


# --- search ---------------------------------------------------------------------------------


def test_search_reads_one_box_or_explicit_criteria(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ)
    jean = small.ids["C001"]
    found = client.get("/api/v1/customers", params={"q": "dupond"})
    body = found.json()
    assert body["query_kind"] == "name" and body["count"] == len(body["items"]) >= 3
    assert (body["items"][0]["first_name"], body["items"][0]["last_name"]) == ("Paul", "Dupond")
    assert {"score", "matched_on", "birth_date", "city", "customer_type"} <= set(body["items"][0])
    assert ids(client.get("/api/v1/customers", params={"q": "0033 6-12-34-56-78"})) == [jean]
    assert ids(client.get("/api/v1/customers", params={"phone": "06 12 34 56 78"})) == [jean]
    assert ids(client.get("/api/v1/customers", params={"q": "JEAN.DUPONT@EXEMPLE.FR"})) == [jean]
    assert ids(client.get("/api/v1/customers", params={"email": "Jean.Dupont@Exemple.fr"})) == [
        jean
    ]
    assert ids(client.get("/api/v1/customers", params={"card": "C001"})) == [jean]
    narrowed = client.get("/api/v1/customers", params={"q": "dupont 75011", "limit": 1})
    assert ids(narrowed) == [jean] and narrowed.json()["items"][0]["matched_on"] == (
        "name+postal_code"
    )
    assert ids(client.get("/api/v1/customers", params={"q": "nobody@nowhere.fr"})) == []
    empty = client.get("/api/v1/customers")
    assert empty.status_code == 422 and empty.json()["error"]["details"][0]["field"] == "q"
    too_many = client.get("/api/v1/customers", params={"q": "dupont", "limit": 1000})
    assert too_many.status_code == 422 and "limit" in too_many.json()["error"]["message"]
    # searches are audited with the ids shown, never the text searched
    rows = audit_rows(factory, "customer.search")
    assert len(rows) == 8 and all(r.channel == "api" for r in rows)
    assert rows[1].details == {"query_kind": "phone", "customer_ids": [jean]}
    assert all("dupon" not in str(r.details).lower() for r in rows)


# --- detail ---------------------------------------------------------------------------------


def test_detail_is_the_360_view_and_every_read_is_audited_with_its_reason(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ)
    jean = small.ids["C001"]
    response = client.get(f"/api/v1/customers/{jean}", params={"reason": "customer called"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customer_id"] == jean and body["status"] == "active"
    assert body["golden"]["last_name"] == "Dupont" and body["golden"]["email"]
    assert body["provenance"]["email"] == {
        "record_id": body["records"][0]["id"],
        "source": "loyalty",
        "rule": "single record",
    }
    assert {(i["kind"], i["value"]) for i in body["identifiers"]} >= {
        ("loyalty_card", "C001"),
        ("phone_mobile", "+33612345678"),
    }
    assert body["transactions"]["count"] == 7 and body["transactions"]["total_amount"] == "170.00"
    assert body["consents"][0]["channel"] == "email" and body["consent_history"]
    assert body["segments"] == [] and body["scores"] == [] and body["merges"] == []
    client.get(f"/api/v1/customers/{jean}", headers={"X-Audit-Reason": "complaint follow-up"})
    client.get(f"/api/v1/customers/{small.ids['C002']}")
    rows = audit_rows(factory, "customer.read")
    assert [(r.customer_id, r.reason, r.channel) for r in rows] == [
        (jean, "customer called", "api"),
        (jean, "complaint follow-up", "api"),
        (small.ids["C002"], None, "api"),
    ]
    assert rows[0].actor.startswith("api_key:") and rows[0].details == {"view": "360"}


def test_a_merged_customer_redirects_to_its_survivor_and_an_unknown_one_is_404(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ_WRITE)
    moved = client.get(
        f"/api/v1/customers/{small.absorbed}", params={"reason": "x"}, follow_redirects=False
    )
    assert moved.status_code == 308
    assert moved.headers["location"] == f"/api/v1/customers/{small.survivor}?reason=x"
    assert moved.json()["error"]["survivor_id"] == small.survivor
    followed = client.get(f"/api/v1/customers/{small.absorbed}")
    assert followed.status_code == 200 and followed.json()["customer_id"] == small.survivor
    merges = followed.json()["merges"]
    assert merges[0]["absorbed_id"] == small.absorbed and merges[0]["can_undo"] is True
    timeline = client.get(
        f"/api/v1/customers/{small.absorbed}/timeline",
        params={"channel": "phone"},
        follow_redirects=False,
    )
    assert timeline.status_code == 308
    assert timeline.headers["location"] == (
        f"/api/v1/customers/{small.survivor}/timeline?channel=phone"
    )
    write = client.post(
        f"/api/v1/customers/{small.absorbed}/interactions",
        json={"channel": "phone", "direction": "inbound", "type": "call"},
    )
    assert write.status_code == 409 and write.json()["error"]["survivor_id"] == small.survivor
    missing = client.get("/api/v1/customers/999999")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"status": 404, "message": "there is no customer 999999"}}
    assert client.get("/api/v1/customers/999999/timeline").status_code == 404
    assert client.get("/api/v1/customers/abc").status_code == 422
    # only the survivor's read was audited: the redirect itself showed nothing
    assert [r.customer_id for r in audit_rows(factory, "customer.read")] == [small.survivor]


def test_answers_are_exactly_what_the_documented_models_would_write(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    # The routes serialize the services' dataclasses with orjson (no model per answer): the
    # bytes must be those of the OpenAPI description's models.
    client = api(app, factory, READ)
    jean = small.ids["C001"]
    with unit_of_work(factory) as session:
        view = view360.customer_360(session, customer_id=small.survivor)
        page = view360.timeline(session, customer_id=jean, limit=200)
        hits = search.search(session, q="dupond")
    detail = client.get(f"/api/v1/customers/{small.survivor}")
    assert detail.headers["content-type"] == "application/json"
    assert detail.content == schemas.CustomerOut.model_validate(view).model_dump_json().encode()
    assert view is not None and view.merges and view.consents and view.records
    timeline = client.get(f"/api/v1/customers/{jean}/timeline", params={"limit": 200})
    expected = schemas.TimelineOut(
        items=[schemas.TimelineItemOut.model_validate(i) for i in page.items], next_cursor=None
    )
    assert timeline.content == expected.model_dump_json().encode()
    assert {i["kind"] for i in timeline.json()["items"]} == {"interaction", "purchase"}
    found = client.get("/api/v1/customers", params={"q": "dupond"})
    expected_hits = schemas.SearchOut(
        query_kind="name",
        count=len(hits),
        items=[schemas.SearchHitOut.model_validate(h) for h in hits],
    )
    assert found.content == expected_hits.model_dump_json().encode()


def test_a_revoked_key_stops_working_once_its_few_seconds_in_the_cache_are_over(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    now = [100.0]
    app.state.api_keys = auth_service.KeyCache(ttl=5, clock=lambda: now[0])
    client = api(app, factory, READ)
    jean = small.ids["C001"]
    assert client.get(f"/api/v1/customers/{jean}").status_code == 200
    with unit_of_work(factory) as session:
        (key,) = [k for k in auth_service.list_api_keys(session) if k.revoked_at is None]
        auth_service.revoke_api_key(session, key_id=key.id)
    assert client.get(f"/api/v1/customers/{jean}").status_code == 200  # trusted 5 s
    now[0] += 6
    refused = client.get(f"/api/v1/customers/{jean}")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    # every read the cache let through is audited all the same
    assert len(audit_rows(factory, "customer.read")) == 2
    # a key the database does not know is refused, and not looked up again within the TTL
    stranger = TestClient(app, raise_server_exceptions=False)
    forged = {"Authorization": "Bearer tsk_00000000_forged"}
    assert stranger.get(f"/api/v1/customers/{jean}", headers=forged).status_code == 401


# --- timeline -------------------------------------------------------------------------------


def test_timeline_filters_and_pages_through_the_api(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ)
    jean = small.ids["C001"]
    url = f"/api/v1/customers/{jean}/timeline"
    whole = client.get(url, params={"limit": 200}).json()
    assert len(whole["items"]) == small.jean_items and whole["next_cursor"] is None
    seen: list[tuple[str, int]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, params=params)
        assert page.status_code == 200, page.text
        seen.extend((i["kind"], i["id"]) for i in page.json()["items"])
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [(i["kind"], i["id"]) for i in whole["items"]] and pages == 6
    calls = client.get(url, params={"channel": "phone", "limit": 200}).json()["items"]
    assert len(calls) == 9 and {i["kind"] for i in calls} == {"interaction"}
    both = client.get(url, params=[("type", "purchase"), ("type", "call"), ("limit", "200")])
    assert len(both.json()["items"]) == small.jean_items
    ticket = client.get(url, params={"type": "purchase", "limit": 1}).json()["items"][0]
    assert ticket["kind"] == "purchase" and ticket["amount"] == "24.00"
    assert ticket["store_code"] == "M01" and ticket["lines"] == 2
    window = client.get(
        url, params={"since": "2026-02-03T00:00:00Z", "until": "2026-02-04T09:00:00+00:00"}
    )
    assert len(window.json()["items"]) == 5
    naive = client.get(url, params={"since": "2026-02-07T00:00:00"})  # read as UTC
    assert len(naive.json()["items"]) == 2
    bad = client.get(url, params={"cursor": "garbage"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "cursor"
    reads = audit_rows(factory, "customer.read")
    assert len(reads) == 1 + 6 + 5 and all(r.details == {"view": "timeline"} for r in reads)


# --- writes ---------------------------------------------------------------------------------


def test_a_logged_interaction_is_created_and_appears_in_the_timeline(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ_WRITE)
    jean = small.ids["C001"]
    created = client.post(
        f"/api/v1/customers/{jean}/interactions",
        json={
            "channel": "phone",
            "direction": "outbound",
            "type": "call",
            "occurred_at": "2026-06-01T09:30:00+02:00",
            "subject": "delivery date",
            "outcome": "reached",
            "payload": {"duration_s": 95},
        },
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["kind"] == "interaction" and item["occurred_at"].startswith("2026-06-01T07:30")
    assert item["payload"]["logged_by"].startswith("api_key:")
    top = client.get(f"/api/v1/customers/{jean}/timeline", params={"limit": 1}).json()
    assert top["items"][0]["id"] == item["id"] and top["items"][0]["subject"] == "delivery date"
    bad = client.post(
        f"/api/v1/customers/{jean}/interactions",
        json={"channel": "telepathy", "direction": "inbound", "type": "call"},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == [
        {"field": "channel", "message": bad.json()["error"]["details"][0]["message"]}
    ]
    naive = client.post(
        f"/api/v1/customers/{jean}/interactions",
        json={
            "channel": "phone",
            "direction": "inbound",
            "type": "call",
            "occurred_at": "2026-06-01T09:30:00",
        },
    )
    assert naive.status_code == 422 and "occurred_at" in naive.json()["error"]["message"]
    unknown = client.post(
        f"/api/v1/customers/{jean}/interactions",
        json={"channel": "phone", "direction": "inbound", "type": "call", "mood": "good"},
    )
    assert unknown.status_code == 422 and "mood" in unknown.json()["error"]["message"]
    [row] = audit_rows(factory, "interaction.create")
    assert row.customer_id == jean and row.details == {"interaction_id": item["id"]}


def test_a_consent_is_a_new_row_with_proof_and_becomes_the_current_state(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ_WRITE)
    jean = small.ids["C001"]
    with unit_of_work(factory) as session:
        before = session.scalar(select(func.count()).select_from(Consent))
    body = {
        "channel": "email",
        "brand": "SOLEIL",
        "status": "withdrawn",
        "proof": {
            "source": "call center",
            "text_version": "optin-2026-01",
            "collected_at": "2099-03-01T10:00:00+01:00",
        },
    }
    created = client.post(f"/api/v1/customers/{jean}/consents", json=body)
    assert created.status_code == 201, created.text
    consent = created.json()
    assert consent["status"] == "withdrawn" and consent["brand"] == "SOLEIL"
    assert consent["proof"]["source"] == "call center"
    assert consent["proof"]["text_version"] == "optin-2026-01"
    assert consent["proof"]["timestamp"] == "2099-03-01T09:00:00+00:00"
    assert consent["proof"]["actor"].startswith("api_key:")
    with unit_of_work(factory) as session:
        assert session.scalar(select(func.count()).select_from(Consent)) == before + 1
    detail = client.get(f"/api/v1/customers/{jean}").json()
    assert [(c["channel"], c["brand"], c["status"]) for c in detail["consents"]] == [
        ("email", "SOLEIL", "withdrawn")
    ]
    assert [c["status"] for c in detail["consent_history"]] == ["withdrawn", "granted"]
    no_proof = client.post(
        f"/api/v1/customers/{jean}/consents", json={"channel": "sms", "status": "granted"}
    )
    assert no_proof.status_code == 422
    assert no_proof.json()["error"]["details"][0]["field"] == "proof"
    partial = dict(body, proof={"source": "web", "collected_at": "2026-01-01T00:00:00Z"})
    missing_version = client.post(f"/api/v1/customers/{jean}/consents", json=partial)
    assert missing_version.status_code == 422
    assert missing_version.json()["error"]["details"][0]["field"] == "proof.text_version"
    for field, change in (
        ("status", {"status": "perhaps"}),
        ("channel", {"channel": "fax"}),
        ("brand", {"brand": "NOPE"}),
    ):
        refused = client.post(f"/api/v1/customers/{jean}/consents", json=dict(body, **change))
        assert refused.status_code == 422, field
        assert refused.json()["error"]["details"][0]["field"] == field
        assert refused.json()["error"]["message"].startswith(f"{field}: ")
    [row] = audit_rows(factory, "consent.set")
    assert row.customer_id == jean and row.details["status"] == "withdrawn"


def test_preferences_are_set_per_channel_and_bad_values_are_422_naming_the_field(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    client = api(app, factory, READ_WRITE)
    jean = small.ids["C001"]
    url = f"/api/v1/customers/{jean}/preferences/phone"
    done = client.put(
        url,
        json={
            "preferred": True,
            "days": "fri,mon",
            "hours": "14:00-18:00, 09:00-12:00",
            "language": "fr",
            "max_per_week": 2,
        },
    )
    assert done.status_code == 200, done.text
    assert done.json() | {"updated_at": None} == {
        "channel": "phone",
        "preferred": True,
        "days": "mon,fri",
        "hours": "09:00-12:00,14:00-18:00",
        "language": "fr",
        "max_per_week": 2,
        "updated_at": None,
    }
    assert client.put(url, json={"days": "sat"}).json()["days"] == "sat"
    detail = client.get(f"/api/v1/customers/{jean}").json()
    assert [(p["channel"], p["days"], p["preferred"]) for p in detail["preferences"]] == [
        ("phone", "sat", False)
    ]
    for field, body in (
        ("days", {"days": "monday"}),
        ("hours", {"hours": "9h-12h"}),
        ("hours", {"hours": "12:00-09:00"}),
        ("language", {"language": "francais"}),
        ("max_per_week", {"max_per_week": -1}),
        ("max_per_week", {"max_per_week": "often"}),
    ):
        refused = client.put(url, json=body)
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["error"]["details"][0]["field"] == field, refused.text
    pigeon = client.put(f"/api/v1/customers/{jean}/preferences/pigeon", json={})
    assert pigeon.status_code == 422
    assert pigeon.json()["error"]["details"][0]["field"] == "channel"
    assert len(audit_rows(factory, "preference.set")) == 2


# --- who may call it ------------------------------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/customers?q=dupont", None),
    ("GET", "/api/v1/customers/{id}", None),
    ("GET", "/api/v1/customers/{id}/timeline", None),
    (
        "POST",
        "/api/v1/customers/{id}/interactions",
        {"channel": "phone", "direction": "inbound", "type": "call"},
    ),
    (
        "POST",
        "/api/v1/customers/{id}/consents",
        {
            "channel": "sms",
            "status": "granted",
            "proof": {
                "source": "web",
                "text_version": "v1",
                "collected_at": "2026-01-01T00:00:00Z",
            },
        },
    ),
    ("PUT", "/api/v1/customers/{id}/preferences/sms", {"days": "mon"}),
]


@pytest.mark.parametrize("role", ["analyst", "agency"])
def test_roles_without_personal_data_get_403_on_every_route(
    app: FastAPI, factory: sessionmaker[Session], small: Small, role: str
) -> None:
    jean = small.ids["C001"]
    key = api(app, factory, sorted(rules.ROLES[role]))
    user = signed_in(app, factory, role)
    for client in (key, user):
        for method, path, body in ROUTES:
            response = client.request(method, path.format(id=jean), json=body)
            assert response.status_code == 403, (role, method, path, response.text)
            assert "customers:" in response.json()["error"]["message"]
    assert audit_rows(factory, "customer.read") == []
    # a read-only key may not write
    reader = api(app, factory, READ)
    for method, path, body in ROUTES[3:]:
        assert reader.request(method, path.format(id=jean), json=body).status_code == 403


def test_strangers_get_401_and_signed_in_advisors_use_the_api_with_their_session(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    jean = small.ids["C001"]
    stranger = TestClient(app, raise_server_exceptions=False)
    for method, path, body in ROUTES:
        assert stranger.request(method, path.format(id=jean), json=body).status_code == 401
    advisor = signed_in(app, factory, "advisor")
    for method, path, body in ROUTES:
        response = advisor.request(method, path.format(id=jean), json=body)
        assert response.status_code in (200, 201), (method, path, response.text)
    assert audit_rows(factory, "customer.read")[0].actor.startswith("user:")
    del advisor.headers["X-CSRF-Token"]
    forged = advisor.put(f"/api/v1/customers/{jean}/preferences/sms", json={"days": "tue"})
    assert forged.status_code == 403


def test_the_openapi_description_documents_every_customer_route(app: FastAPI) -> None:
    spec = TestClient(app).get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/api/v1/customers", "get"): "SearchOut",
        ("/api/v1/customers/{customer_id}", "get"): "CustomerOut",
        ("/api/v1/customers/{customer_id}/timeline", "get"): "TimelineOut",
        ("/api/v1/customers/{customer_id}/interactions", "post"): "TimelineItemOut",
        ("/api/v1/customers/{customer_id}/consents", "post"): "ConsentOut",
        ("/api/v1/customers/{customer_id}/preferences/{channel}", "put"): "PreferenceOut",
    }
    for (path, method), model in expected.items():
        operation = paths[path][method]
        ok = "201" if method == "post" else "200"
        schema = operation["responses"][ok]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(f"/{model}"), (path, schema)
        assert operation["summary"] and operation["description"]
        assert "403" in operation["responses"] and "404" in operation["responses"]
    assert "308" in paths["/api/v1/customers/{customer_id}"]["get"]["responses"]
    assert "409" in paths["/api/v1/customers/{customer_id}/consents"]["post"]["responses"]


# --- segments, RFM and scores -----------------------------------------------------------------


def test_the_360_shows_segments_rfm_and_scores(
    app: FastAPI, factory: sessionmaker[Session], small: Small
) -> None:
    from tournesol.db import utcnow
    from tournesol.scoring import features
    from tournesol.scoring.models import CustomerScore
    from tournesol.scoring.service import refresh_rfm
    from tournesol.segments import service as segments

    jean = small.ids["C001"]
    client = api(app, factory, READ)
    before = client.get(f"/api/v1/customers/{jean}").json()
    assert (before["segments"], before["rfm"], before["scores"]) == ([], [], [])
    with unit_of_work(factory) as session:
        now = utcnow()
        features.refresh(session, now=now)
        refresh_rfm(session, now=now)
        session.add(CustomerScore(customer_id=jean, model="churn", version="v7", value=0.25))
        mine = segments.create(session, code="jeans", name="Prénom Jean", definition={"all": []})
        segments.refresh(session, mine)
        gone = segments.create(session, code="gone", name="Archived", definition={"all": []})
        segments.refresh(session, gone)
        segments.archive(session, segment=gone)
    body = client.get(f"/api/v1/customers/{jean}").json()
    assert [(s["code"], s["name"]) for s in body["segments"]] == [("jeans", "Prénom Jean")]
    assert body["scores"] == [
        {
            "model": "churn",
            "version": "v7",
            "value": 0.25,
            "computed_at": body["scores"][0]["computed_at"],
        }
    ]
    assert body["rfm"] and body["rfm"][0]["scope"] == "all"
    assert {"segment", "r_score", "f_score", "m_score"} <= set(body["rfm"][0])
    page = signed_in(app, factory, role="advisor").get(f"/customers/{jean}")
    assert page.status_code == 200
    assert "Segments and scores" in page.text and "Prénom Jean" in page.text
    assert "Churn risk" in page.text and "25" in page.text
