"""The staff pages on SQLite and PostgreSQL: who may open each, the customer search (phone typed
in any format, audited without the text), the 360 page (provenance, audit of each read, the
merged-customer redirect, the timeline filter and its cursor, the advisor's forms, undoing a
merge), the review queue's decisions, the quality report without personal data for the
analyst, and the administration pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.integration.test_import import write_cp1252
from tests.web_support import signed_in as sign_in_as
from tournesol.auth import rules
from tournesol.auth import service as auth_service
from tournesol.auth.models import ApiKey, AuditLog, User
from tournesol.consent.models import Consent
from tournesol.customers.models import Customer
from tournesol.db import unit_of_work
from tournesol.identity import merges
from tournesol.identity.models import IdentityRun, MatchReview, MergeEvent
from tournesol.identity.service import refresh_profiles
from tournesol.ingest.importer import import_file
from tournesol.ingest.models import SourceRecord
from tournesol.ingest.schemas import parse_mapping
from tournesol.interactions.models import Interaction
from tournesol.quality.flags import all_flags
from tournesol.web.i18n import translations

LOYALTY = {
    "source": {"name": "loyalty", "kind": "loyalty", "brand": "SOLEIL", "trust_rank": 2},
    "entity": "customer",
    "key": "carte",
    "fields": {
        "loyalty_card": "carte",
        "civility": {"column": "civ", "values": {"M": "M.", "MME": "Mme"}},
        "first_name": "prenom",
        "last_name": "nom",
        "email": "email",
        "phone_mobile": "mobile",
        "address_street": "rue",
        "postal_code": "cp",
        "city": "ville",
    },
    "required": ["last_name"],
    "identifiers": {
        "loyalty_card": "loyalty_card",
        "email": "email",
        "phone_mobile": "phone_mobile",
    },
    "consents": [{"channel": "email", "column": "optin"}],
}
ROWS = [
    "carte;civ;prenom;nom;email;mobile;rue;cp;ville;optin",
    "C00001;MME;Hélène;Lefèvre;helene.lefevre@exemple.fr;06 12 34 56 78;3 rue de la Paix;75011;Paris;O",
    "C00002;MME;Hélène;Lefèvre;h.lefevre@autre.fr;06 98 76 54 32;3 rue de la Paix;75011;Paris;N",
    "C00003;M;Marc;Durand;marc.durand@exemple.fr;0611223344;8 place Bellecour;69002;Lyon;O",
]
# What must never reach a page that holds no personal data (names, e-mails, phones in the
# forms a page could print them).
PERSONAL = (
    "Lefèvre",
    "LEFEVRE",
    "Hélène",
    "Durand",
    "helene.lefevre@exemple.fr",
    "h.lefevre@autre.fr",
    "marc.durand@exemple.fr",
    "+33612345678",
    "06 12 34 56 78",
    "0612345678",
    "+33698765432",
    "+33611223344",
    "rue de la Paix",
    "C00001",
)


@dataclass(frozen=True)
class Base:
    """Customers a and b (two cards of Hélène Lefèvre) and c (Marc Durand); their records."""

    a: int
    b: int
    c: int
    rec: dict[str, int]


@pytest.fixture
def base(tmp_path: Path, factory: sessionmaker[Session]) -> Base:
    report = import_file(
        factory, write_cp1252(tmp_path / "cartes.csv", ROWS), parse_mapping(LOYALTY)
    )
    assert report.rejected == 0, report
    refresh_profiles(factory)  # match profiles, and the identifiers search looks up
    with unit_of_work(factory) as session:
        found = {
            key: (rid, int(cid or 0))
            for key, rid, cid in session.execute(
                select(SourceRecord.source_key, SourceRecord.id, SourceRecord.customer_id)
            )
        }
    return Base(
        a=found["C00001"][1],
        b=found["C00002"][1],
        c=found["C00003"][1],
        rec={"a": found["C00001"][0], "b": found["C00002"][0], "c": found["C00003"][0]},
    )


def merge(factory: sessionmaker[Session], survivor: int, absorbed: int) -> int:
    """Merge ``absorbed`` into ``survivor``; returns the merge event."""
    with unit_of_work(factory) as session:
        run = IdentityRun(mode="manual", stats={})
        session.add(run)
        session.flush()
        plan = merges.MergePlan(
            survivor=survivor, absorbed=[absorbed], rule="manual", score=0.97, reason="test"
        )
        merges.merge(session, [plan], run_id=run.id, actor="tester")
        return int(
            session.scalars(
                select(MergeEvent.id).where(
                    MergeEvent.absorbed_id == absorbed, MergeEvent.unmerged_at.is_(None)
                )
            ).one()
        )


def audit_rows(factory: sessionmaker[Session], action: str) -> list[AuditLog]:
    with unit_of_work(factory) as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        ).all()
        session.expunge_all()
        return list(rows)


def signed_in(
    app: FastAPI, factory: sessionmaker[Session], role: str, *, language: str = "en"
) -> TestClient:
    """A signed-in client carrying its new session's CSRF token."""
    return sign_in_as(app, factory, role, language=language)


def htmx(target: str | None = None) -> dict[str, str]:
    return {"HX-Request": "true", **({"HX-Target": target} if target else {})}


# --- who may open what ---------------------------------------------------------------------
PAGES: dict[str, str] = {
    "/customers": rules.CUSTOMERS_READ,
    "/customers/{a}": rules.CUSTOMERS_READ,
    "/identity/review": rules.IDENTITY_REVIEW,
    "/quality": rules.QUALITY_READ,
    "/admin/users": rules.USERS_ADMIN,
    "/admin/api-keys": rules.USERS_ADMIN,
    "/admin/audit": rules.AUDIT_READ,
}


def test_each_page_opens_for_the_roles_allowed_and_is_refused_in_the_layout_to_others(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    stranger = TestClient(app)
    for path in PAGES:
        response = stranger.get(path.format(a=base.a), follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=/")
    for role in rules.ROLES:
        client = signed_in(app, factory, role)
        for path, permission in PAGES.items():
            response = client.get(path.format(a=base.a))
            if rules.permissions_of(role) >= {permission}:
                assert response.status_code == 200, (role, path, response.text[:300])
                assert "<main" in response.text and "<h1" in response.text
            else:
                assert response.status_code == 403, (role, path)
                # the error page, in the layout, the menu and the user's language
                assert "<main" in response.text and 'role="alert"' in response.text
                assert "Not allowed" in response.text and "Sign out" in response.text


def test_pages_are_in_french_by_default(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "admin", language="fr")
    assert "Trouver un client" in client.get("/customers").text
    page = client.get(f"/customers/{base.a}").text
    assert "Historique des fusions" in page and "de loyalty, enregistrement C00001" in page
    assert "Qualité des données" in client.get("/quality").text
    assert "File de revue" in client.get("/identity/review").text
    assert "Nouvel utilisateur" in client.get("/admin/users").text


def test_every_quality_flag_and_role_description_has_its_french() -> None:
    french = translations("fr")
    untranslated = [
        c for c, f in all_flags().items() if french.gettext(f.description) == f.description
    ]
    assert not untranslated, "add their descriptions to locales/fr/quality.po"
    roles = [r for r, d in rules.ROLE_DESCRIPTIONS.items() if french.gettext(d) == d]
    assert not roles, "add their descriptions to locales/fr/admin.po"


# --- search --------------------------------------------------------------------------------
def test_a_phone_typed_in_another_format_finds_the_customer_and_the_search_is_audited_blind(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "advisor")
    page = client.get("/customers", params={"q": "+33 6 12 34 56 78"})
    assert page.status_code == 200
    assert f'href="/customers/{base.a}"' in page.text and "Hélène" in page.text
    assert f'href="/customers/{base.b}"' not in page.text
    assert 'aria-live="polite"' in page.text and 'hx-get="/customers"' in page.text
    # what htmx asks for while one types: the results fragment only
    fragment = client.get("/customers", params={"q": "0612345678"}, headers=htmx("results"))
    assert f'href="/customers/{base.a}"' in fragment.text
    assert "<html" not in fragment.text and "<h1" not in fragment.text
    searches = audit_rows(factory, "customer.search")
    assert [r.details["count"] for r in searches] == [1, 1]
    assert all(r.details["kind"] == "phone" for r in searches)
    for row in searches:  # the text typed is personal data: never in the log
        kept = f"{row.details} {row.reason} {row.customer_id}"
        assert "612345678" not in kept and "34 56" not in kept


def test_the_search_says_what_to_type_and_when_nobody_is_found(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "advisor")
    assert "Type a name, an e-mail, a phone number" in client.get("/customers").text
    nobody = client.get("/customers", params={"q": "Zyxwvutsr"}, headers=htmx("results"))
    assert "No customer found" in nobody.text
    by_name = client.get("/customers", params={"q": "lefevre 75011", "reason": "call"}).text
    assert f'href="/customers/{base.a}?reason=call"' in by_name
    assert f'href="/customers/{base.b}?reason=call"' in by_name
    assert not audit_rows(factory, "customer.search")[0].details.get("q")


# --- the 360 page --------------------------------------------------------------------------
def test_the_customer_page_shows_the_golden_record_with_its_provenance_and_is_audited(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    merge(factory, base.a, base.b)
    client = signed_in(app, factory, "advisor")
    page = client.get(f"/customers/{base.a}", params={"reason": "customer called"})
    assert page.status_code == 200
    text = page.text
    assert "Hélène" in text and "helene.lefevre@exemple.fr" in text
    # provenance: as a tooltip and as text a keyboard or a screen reader reaches
    assert re.search(r'title="from loyalty record C0000[12], rule [a-z_ ]+"', text)
    assert re.search(r"<details class=\"provenance\">.*?from loyalty record C0000", text, re.S)
    assert "C00002" in text  # both source records are listed
    assert 'class="badge ok"' in text and "granted" in text  # the e-mail consent, in words too
    reads = audit_rows(factory, "customer.read")
    assert [(r.customer_id, r.reason, r.channel) for r in reads] == [
        (base.a, "customer called", "web")
    ]


def test_a_merged_customer_sends_to_its_survivor_and_an_unknown_one_is_a_404_page(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    merge(factory, base.a, base.b)
    client = signed_in(app, factory, "advisor")
    moved = client.get(f"/customers/{base.b}", params={"reason": "x"}, follow_redirects=False)
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/customers/{base.a}?merged_from={base.b}&reason=x"
    landed = client.get(moved.headers["location"])
    assert f"Customer {base.b} was merged into this customer ({base.a})" in landed.text
    missing = client.get("/customers/987654321")
    assert missing.status_code == 404 and "Not found" in missing.text
    assert 'href="/customers"' in missing.text  # in the layout, with the navigation


def test_the_timeline_filters_as_a_fragment_and_pages_with_its_cursor(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with unit_of_work(factory) as session:
        for i in range(25):
            session.add(
                Interaction(
                    customer_id=base.a,
                    occurred_at=start + timedelta(days=i),
                    channel="phone",
                    direction="inbound",
                    type="call",
                    subject=f"call number {i:02d}",
                )
            )
        session.add(
            Interaction(
                customer_id=base.a,
                occurred_at=start,
                channel="email",
                direction="outbound",
                type="email_sent",
                subject="spring newsletter",
            )
        )
    client = signed_in(app, factory, "advisor")
    page = client.get(f"/customers/{base.a}").text
    assert "call number 24" in page and 'hx-get="/customers/' in page
    only_mail = client.get(
        f"/customers/{base.a}/timeline", params={"channel": "email"}, headers=htmx()
    )
    assert only_mail.status_code == 200
    assert "spring newsletter" in only_mail.text and "call number" not in only_mail.text
    assert "<html" not in only_mail.text and 'id="timeline-list"' in only_mail.text
    period = client.get(
        f"/customers/{base.a}/timeline",
        params={"channel": "phone", "since": "2026-01-10", "until": "2026-01-11"},
        headers=htmx(),
    ).text
    assert re.findall(r"call number (\d\d)", period) == ["06", "05"]
    # paging: the first 20 calls, then the 5 older ones through the "more" link
    first = client.get(
        f"/customers/{base.a}/timeline", params={"channel": "phone"}, headers=htmx()
    ).text
    seen = re.findall(r"call number (\d\d)", first)
    more = re.search(r'hx-get="(/customers/\d+/timeline\?[^"]+)"', first)
    assert len(seen) == 20 and more
    rest = client.get(more.group(1).replace("&amp;", "&"), headers=htmx()).text
    older = re.findall(r"call number (\d\d)", rest)
    assert older == ["04", "03", "02", "01", "00"]
    assert 'id="timeline-list"' not in rest and "Older entries" not in rest  # last page
    assert len(audit_rows(factory, "customer.timeline")) == 4  # every read of the history
    # without JavaScript the fragment's address leads to the page with the same filters
    plain = client.get(
        f"/customers/{base.a}/timeline", params={"channel": "email"}, follow_redirects=False
    )
    assert plain.headers["location"] == f"/customers/{base.a}?channel=email#timeline"


def test_an_advisor_records_a_consent_and_logs_a_contact_and_both_are_audited(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "advisor")
    refused = client.post(
        f"/customers/{base.c}/consents", data={"channel": "sms", "status": "granted"}
    )
    assert refused.status_code == 400 and "proof.source" in refused.text
    done = client.post(
        f"/customers/{base.c}/consents",
        data={
            "channel": "sms",
            "status": "withdrawn",
            "proof_source": "phone call",
            "text_version": "CGV-2026-01",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303 and "notice=consent" in done.headers["location"]
    logged = client.post(
        f"/customers/{base.c}/interactions",
        data={
            "channel": "phone",
            "direction": "inbound",
            "type": "complaint",
            "subject": "late delivery",
        },
    )
    assert logged.status_code == 200 and "late delivery" in logged.text
    with unit_of_work(factory) as session:
        sms = session.scalars(
            select(Consent).where(Consent.customer_id == base.c, Consent.channel == "sms")
        ).one()
        assert sms.status == "withdrawn" and sms.proof["text_version"] == "CGV-2026-01"
        assert sms.proof["actor"].startswith("web:advisor-")
        call = session.scalars(select(Interaction).where(Interaction.customer_id == base.c)).one()
        assert (call.type, call.channel, call.direction) == ("complaint", "phone", "inbound")
    assert [r.customer_id for r in audit_rows(factory, "customer.consent")] == [base.c]
    assert [r.customer_id for r in audit_rows(factory, "customer.interaction")] == [base.c]
    analyst = signed_in(app, factory, "analyst")
    assert analyst.post(f"/customers/{base.c}/interactions", data={}).status_code == 403


def test_undoing_a_merge_through_the_page_separates_the_customers_and_is_audited(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    event = merge(factory, base.a, base.b)
    advisor = signed_in(app, factory, "advisor")
    assert "Undo this merge" not in advisor.get(f"/customers/{base.a}").text
    assert (
        advisor.post(
            f"/customers/{base.a}/merges/{event}/undo", data={"reason": "not her"}
        ).status_code
        == 403
    )
    marketer = signed_in(app, factory, "marketer")
    page = marketer.get(f"/customers/{base.a}").text
    assert "Undo this merge" in page and f"/merges/{event}/undo" in page
    del marketer.headers["X-CSRF-Token"]  # a form from elsewhere is refused
    forged = marketer.post(f"/customers/{base.a}/merges/{event}/undo", data={"reason": "x"})
    assert forged.status_code == 403
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    undone = marketer.post(
        f"/customers/{base.a}/merges/{event}/undo",
        data={"reason": "two sisters", "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert undone.status_code == 303
    assert undone.headers["location"].startswith(f"/customers/{base.a}?notice=unmerged")
    with unit_of_work(factory) as session:
        absorbed = session.get_one(Customer, base.b, populate_existing=True)
        assert absorbed.status == "active" and absorbed.merged_into_id is None
        owner = session.scalar(
            select(SourceRecord.customer_id).where(SourceRecord.id == base.rec["b"])
        )
        assert owner == base.b
        row = session.get_one(MergeEvent, event, populate_existing=True)
        assert row.unmerged_at is not None and row.unmerge_reason == "two sisters"
        assert row.unmerged_by is not None and row.unmerged_by.startswith("web:marketer-")
    audited = audit_rows(factory, "customer.unmerge")
    assert [(r.customer_id, r.reason, r.details["event_id"]) for r in audited] == [
        (base.a, "two sisters", event)
    ]
    again = marketer.post(
        f"/customers/{base.a}/merges/{event}/undo",
        data={"reason": "twice", "csrf_token": token.group(1)},
    )
    assert again.status_code == 409 and "already undone" in again.text


# --- the review queue ----------------------------------------------------------------------
def _reviews(factory: sessionmaker[Session], base: Base) -> tuple[int, int]:
    with unit_of_work(factory) as session:
        same = MatchReview(
            record_a_id=base.rec["a"],
            record_b_id=base.rec["b"],
            score=0.91,
            match_weight=3.3,
            reason="match probability 0.910",
            evidence={},
            status="pending",
        )
        other = MatchReview(
            record_a_id=base.rec["a"],
            record_b_id=base.rec["c"],
            score=0.42,
            match_weight=-1.2,
            reason="match probability 0.420",
            evidence={},
            status="pending",
        )
        session.add_all([same, other])
        session.flush()
        return same.id, other.id


def test_review_pairs_are_shown_side_by_side_and_accepted_or_rejected(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    accept_id, reject_id = _reviews(factory, base)
    client = signed_in(app, factory, "marketer")
    page = client.get("/identity/review").text
    assert 'Pairs waiting for a decision: <span id="review-count">2</span>' in page
    assert f'id="review-{accept_id}"' in page and f'id="review-{reject_id}"' in page
    assert "helene.lefevre@exemple.fr" in page and "h.lefevre@autre.fr" in page
    assert "different" in page and "same" in page  # in words, not by colour alone
    assert {r.customer_id for r in audit_rows(factory, "review.read")} == {base.a, base.b, base.c}
    evidence = client.get(f"/identity/review/{accept_id}/evidence", headers=htmx()).text
    assert "Deterministic rule" in evidence and "<html" not in evidence
    accepted = client.post(
        f"/identity/review/{accept_id}", data={"decision": "accept"}, headers=htmx()
    )
    assert accepted.status_code == 200 and "accepted" in accepted.text
    assert f'id="review-{accept_id}"' in accepted.text and "<html" not in accepted.text
    assert '<span id="review-count" hx-swap-oob="innerHTML">1</span>' in accepted.text
    rejected = client.post(
        f"/identity/review/{reject_id}",
        data={"decision": "reject", "note": "not the same man"},
        follow_redirects=False,
    )
    assert rejected.status_code == 303 and rejected.headers["location"].endswith("done=reject")
    with unit_of_work(factory) as session:
        owners = dict(
            session.execute(
                select(SourceRecord.id, SourceRecord.customer_id).where(
                    SourceRecord.id.in_(base.rec.values())
                )
            ).all()
        )
        assert owners[base.rec["a"]] == owners[base.rec["b"]] == base.a
        assert owners[base.rec["c"]] == base.c
        statuses = dict(session.execute(select(MatchReview.id, MatchReview.status)).all())
        assert statuses == {accept_id: "accepted", reject_id: "rejected"}
    assert [r.details["review_id"] for r in audit_rows(factory, "review.accept")] == [accept_id]
    assert [r.reason for r in audit_rows(factory, "review.reject")] == ["not the same man"]
    assert "Nothing to review" in client.get("/identity/review").text
    twice = client.post(f"/identity/review/{accept_id}", data={"decision": "reject"})
    assert twice.status_code == 409
    advisor = signed_in(app, factory, "advisor")
    assert (
        advisor.post(f"/identity/review/{reject_id}", data={"decision": "accept"}).status_code
        == 403
    )


# --- quality -------------------------------------------------------------------------------
def test_the_analysts_quality_page_holds_no_personal_data(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    analyst = signed_in(app, factory, "analyst")
    page = analyst.get("/quality")
    assert page.status_code == 200
    assert "loyalty" in page.text and "Fill rate" in page.text
    for value in PERSONAL:
        assert value not in page.text, value
    one = analyst.get("/quality", params={"source": "loyalty"})
    assert one.status_code == 200 and "Fields of loyalty" in one.text
    assert analyst.get("/quality", params={"source": "nowhere"}).status_code == 404
    # and the analyst reaches no customer data at all
    assert analyst.get("/customers", params={"q": "Lefèvre"}).status_code == 403
    assert analyst.get(f"/customers/{base.a}").status_code == 403


# --- administration ------------------------------------------------------------------------
def test_an_admin_creates_a_user_and_a_key_shown_once_then_revokes_it(
    app: FastAPI, factory: sessionmaker[Session]
) -> None:
    admin = signed_in(app, factory, "admin")
    bad = admin.post(
        "/admin/users",
        data={"email": "x@y.fr", "name": "X", "role": "advisor", "password": "short"},
    )
    assert bad.status_code == 400 and "at least 10" in bad.text
    made = admin.post(
        "/admin/users",
        data={
            "email": "New.Advisor@Shop.example",
            "name": "Nina",
            "role": "advisor",
            "language": "en",
            "password": "a long enough password",
        },
    )
    assert made.status_code == 200 and "new.advisor@shop.example created" in made.text
    key_page = admin.post(
        "/admin/api-keys",
        data={"name": "shop events", "scopes": ["events:write"], "source_name": "shop"},
    )
    assert key_page.status_code == 201 and key_page.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(tsk_[^"]+)"', key_page.text)
    assert secret
    assert secret.group(1) not in admin.get("/admin/api-keys").text  # shown once only
    with unit_of_work(factory) as session:
        user = session.scalars(select(User).where(User.email == "new.advisor@shop.example")).one()
        assert user.role == "advisor" and user.language == "en"
        key = auth_service.verify_api_key(session, secret=secret.group(1))
        assert key is not None and key.scopes == ["events:write"] and key.source_name == "shop"
        key_id = key.id
    revoked = admin.post(f"/admin/api-keys/{key_id}/revoke")
    assert revoked.status_code == 200 and "is revoked" in revoked.text
    with unit_of_work(factory) as session:
        assert auth_service.verify_api_key(session, secret=secret.group(1)) is None
        assert session.get_one(ApiKey, key_id).revoked_at is not None
    log = admin.get("/admin/audit", params={"action": "api_key.create"}).text
    assert "api_key.create" in log and "api_key.revoke" not in log.split("<tbody>")[1]
    assert [r.details["user_id"] for r in audit_rows(factory, "user.create")] == [user.id]


def test_the_audit_log_filters_and_pages_back_with_older_links(
    app: FastAPI, factory: sessionmaker[Session], base: Base
) -> None:
    client = signed_in(app, factory, "advisor")
    for _ in range(55):
        client.get(f"/customers/{base.c}")
    client.get(f"/customers/{base.a}", params={"reason": "letter received"})
    admin = signed_in(app, factory, "admin")
    newest = admin.get("/admin/audit", params={"customer_id": str(base.c)}).text
    assert newest.count("<td><code>customer.read</code>") == 50
    older = re.search(r'href="(/admin/audit\?[^"]*before=\d+)"', newest)
    assert older
    rest = admin.get(older.group(1).replace("&amp;", "&")).text
    assert rest.count("<td><code>customer.read</code>") == 5 and "before=" not in rest
    by_reason = admin.get("/admin/audit", params={"customer_id": str(base.a)}).text
    assert "letter received" in by_reason
    with unit_of_work(factory) as session:
        advisor_email = session.scalars(select(User.email).where(User.role == "advisor")).one()
        total = session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "customer.read")
        )
        assert total == 56
    mine = admin.get("/admin/audit", params={"actor": advisor_email, "action": "login"}).text
    assert mine.count("<td><code>login</code>") == 1
    assert (
        "A customer id is a number" in admin.get("/admin/audit", params={"customer_id": "x"}).text
    )
