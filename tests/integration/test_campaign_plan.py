"""Planning campaigns on a small base whose every customer tests one rule: consent regimes,
fallback channels, suppressions, restricted sources, contact windows, control group,
pressure and arbitration between two campaigns. On SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.conftest import FreshDatabase
from tournesol.campaigns import rules
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.models import Campaign, CampaignTarget, Outbox
from tournesol.consent import service as consent_service
from tournesol.consent.models import Preference, Suppression
from tournesol.consent.rules import contact_hash
from tournesol.customers.models import Brand, Customer, Organisation, OrganisationContact
from tournesol.db import Dialect, make_engine, make_session_factory
from tournesol.ingest.models import ImportBatch, Source, SourceRecord
from tournesol.interactions.models import INTERNAL, Interaction, Transaction
from tournesol.reporting import holdouts
from tournesol.segments.models import Segment

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Paris
ADDRESS = {"address_line4": "12 RUE DES LILAS", "address_line6": "69003 LYON"}


@dataclass
class World:
    brand: int
    ids: dict[str, int]


def person(session: Session, name: str, **values: object) -> int:
    row = Customer(first_name=name, last_name="Test", country="FR", **values)
    session.add(row)
    session.flush()
    return row.id


def consent(
    session: Session, customer_id: int, channel: str, status: str, brand: int | None
) -> None:
    consent_service.set_consent(
        session, customer_id=customer_id, channel=channel, purpose="marketing", brand_id=brand,
        status=status, proof_source="web form", proof_text_version="v3",
        collected_at=NOW - timedelta(days=30), actor="test",
    )  # fmt: skip


@pytest.fixture
def world(session: Session) -> World:
    return build_world(session)


def build_world(session: Session) -> World:
    brand = Brand(code="SOLEIL", name="Soleil")
    session.add(brand)
    session.flush()
    b = brand.id
    ids = {
        # e-mail opt-in with Soleil
        "optin": person(session, "Optin", email="optin@exemple.fr"),
        # no e-mail consent: falls back to postal mail (opt-out regime)
        "fallback": person(session, "Fallback", email="fallback@exemple.fr", **ADDRESS),
        # opted in, but the address bounced hard; no postal address
        "bounced": person(session, "Bounced", email="bounced@exemple.fr"),
        # withdrew the e-mail consent, no address
        "withdrawn": person(session, "Withdrawn", email="withdrawn@exemple.fr"),
        # bought from Soleil: soft opt-in for e-mail
        "buyer": person(session, "Buyer", email="buyer@exemple.fr"),
        # a company contact: B2B e-mail is opt-out
        "pro": person(session, "Pro", email="pro@entreprise.fr"),
        # known only from a rented list
        "rented": person(session, "Rented", email="rented@exemple.fr", **ADDRESS),
        # wants e-mails on Saturdays only
        "weekend": person(session, "Weekend", email="weekend@exemple.fr"),
        # three marketing contacts in the last week already
        "pressed": person(session, "Pressed", email="pressed@exemple.fr"),
        # nothing to reach
        "nowhere": person(session, "Nowhere"),
    }
    for who in ("optin", "bounced", "weekend", "pressed", "rented"):
        consent(session, ids[who], "email", "granted", b)
    consent(session, ids["withdrawn"], "email", "granted", b)
    session.flush()
    consent_service.set_consent(
        session, customer_id=ids["withdrawn"], channel="email", purpose="marketing", brand_id=None,
        status="withdrawn", proof_source="unsubscribe link", proof_text_version="v3",
        collected_at=NOW - timedelta(days=2), actor="test",
    )  # fmt: skip
    session.add(
        Suppression(
            channel="email", value_hash=contact_hash("email", "Bounced@exemple.fr"),
            reason="hard_bounce", source="test",
        )
    )  # fmt: skip
    till = Source(name="till", kind="pos", restrictions=[])
    session.add(till)
    session.flush()
    session.add(
        Transaction(
            source_id=till.id, external_id="t1",
            customer_id=ids["buyer"], occurred_at=NOW - timedelta(days=40), kind="ticket",
            channel="store", brand_id=b, total_amount=Decimal("35.00"),
        )
    )  # fmt: skip
    org = Organisation(siret="12345678900017", name="ACME")
    session.add(org)
    session.flush()
    session.add(OrganisationContact(organisation_id=org.id, customer_id=ids["pro"]))
    rented = Source(name="rented-2026", kind="rented", restrictions=["rented_list"])
    session.add(rented)
    session.flush()
    batch = ImportBatch(
        source_id=rented.id, entity="customer", file_name="rented.csv", file_sha256="0" * 64,
        mapping_sha256="0" * 64, file_format="csv",
    )  # fmt: skip
    session.add(batch)
    session.flush()
    session.add(
        SourceRecord(
            source_id=rented.id,
            entity="customer",
            source_key="r1",
            raw={},
            normalized={},
            record_hash="0" * 32,
            line_no=2,
            first_batch_id=batch.id,
            last_batch_id=batch.id,
            customer_id=ids["rented"],
        )
    )
    session.add(Preference(customer_id=ids["weekend"], channel="email", days="sat"))
    for days_ago in (1, 3, 5):
        session.add(
            Outbox(
                key=f"old:{days_ago}", customer_id=ids["pressed"], channel="email",
                language="fr", state="sent", send_after=NOW - timedelta(days=days_ago),
                planned_at=NOW - timedelta(days=days_ago),
            )
        )  # fmt: skip
    session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
    session.flush()
    return World(b, ids)


def new_campaign(session: Session, code: str, *, priority: int, control: float = 0.0) -> Campaign:
    c = campaigns.create(
        session, code=code, name=code.title(), segment="everyone", channels=["email", "postal"],
        brand="SOLEIL", priority=priority, control_share=control, expected_value=Decimal("2.5"),
    )  # fmt: skip
    campaigns.set_message(
        session, campaign=c, channel="email", language="fr", subject="Bonjour {{ first_name }}",
        body_text="Nos offres", body_html="<p>Nos offres</p>",
    )  # fmt: skip
    campaigns.set_message(session, campaign=c, channel="postal", language="fr", body_text="Lettre")
    return c


def drawn_unit(session: Session, customer_id: int, *, household: bool) -> str:
    """The randomization unit a plan draws this customer by (their household for a campaign
    that may write letters, else their e-mail address, else themselves)."""
    c = session.get(Customer, customer_id)
    assert c is not None
    lines = [getattr(c, f"address_line{i}") for i in range(1, 7)]
    address = holdouts.address_of(lines)
    return campaigns.randomization_unit(customer_id, c.email, address, household=household)


def targets(session: Session, campaign: Campaign) -> dict[int, CampaignTarget]:
    rows = session.scalars(select(CampaignTarget).where(CampaignTarget.campaign_id == campaign.id))
    return {t.customer_id: t for t in rows}


@pytest.mark.parametrize("chunk", [campaigns.CHUNK, 3])
def test_every_customer_gets_the_rule_that_decides(
    session: Session, world: World, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # in chunks of 3 too: reads by id range and by list, the staging table reused
    monkeypatch.setattr(campaigns, "CHUNK", chunk)
    spring = new_campaign(session, "spring", priority=50)
    [report] = campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())
    check_spring(session, world, spring, report)
    with pytest.raises(campaigns.CampaignError, match="only a draft or scheduled"):
        campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())


def test_on_postgresql_chunks_are_read_ahead_on_a_second_connection(
    fresh_databases: FreshDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session on an engine, whose transaction has written nothing yet: the chunks are read
    by a second connection on the plan's snapshot, the inserts run in a thread; same
    outcomes."""
    engine = make_engine(fresh_databases.url("postgresql"))
    factory = make_session_factory(engine)
    try:
        with factory() as s:
            world = build_world(s)
            spring_id = new_campaign(s, "spring", priority=50).id
            s.commit()
        readers: list[object] = []
        start = campaigns._Reader.start

        def spy(cls: type, session: Session) -> object:
            reader = start(session)
            readers.append(reader)
            return reader

        monkeypatch.setattr(campaigns._Reader, "start", classmethod(spy))
        monkeypatch.setattr(campaigns, "CHUNK", 3)
        with factory() as s:
            spring = s.get(Campaign, spring_id)
            assert spring is not None
            [report] = campaigns.plan(s, campaigns=[spring], now=NOW, policies=campaigns.Policies())
            s.commit()
            assert len(readers) == 1 and readers[0] is not None
            check_spring(s, world, spring, report)
    finally:
        engine.dispose()


def check_spring(
    session: Session, world: World, spring: Campaign, report: campaigns.PlanReport
) -> None:
    ids = world.ids
    got = {who: targets(session, spring)[cid] for who, cid in ids.items()}
    expected = {
        "optin": ("target", "email", None),
        "fallback": ("target", "postal", None),
        "bounced": ("excluded", None, "suppressed_hard_bounce"),
        "withdrawn": ("excluded", None, "opted_out"),
        "buyer": ("target", "email", None),
        "pro": ("target", "email", None),
        "rented": ("excluded", None, "restricted_source"),
        "weekend": ("target", "email", None),
        "pressed": ("excluded", "email", "pressure_cap"),
        "nowhere": ("excluded", None, "no_contact_point"),
    }
    assert {w: (t.group, t.channel, t.reason) for w, t in got.items()} == expected
    # the Saturday-only customer is planned for Saturday 28 November, 00:00 in Paris
    assert got["weekend"].send_at == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    assert got["optin"].send_at == NOW
    outbox = {
        o.customer_id: o
        for o in session.scalars(select(Outbox).where(Outbox.campaign_id == spring.id))
    }
    assert set(outbox) == {ids[w] for w, e in expected.items() if e[0] == "target"}
    assert outbox[ids["optin"]].address == "optin@exemple.fr"
    assert outbox[ids["fallback"]].address.endswith("|12 RUE DES LILAS||69003 LYON")
    assert {o.state for o in outbox.values()} == {"planned"}
    # the timeline of each customer says what happened and why
    history = session.execute(
        select(Interaction.customer_id, Interaction.type, Interaction.outcome).where(
            Interaction.campaign_code == "spring", Interaction.direction == INTERNAL
        )
    ).all()
    assert len(history) == len(ids)
    assert (ids["withdrawn"], "campaign_excluded", "opted_out") in history
    assert (ids["optin"], "campaign_planned", None) in history
    payloads = dict(
        session.execute(
            select(Interaction.customer_id, Interaction.payload).where(
                Interaction.campaign_code == "spring"
            )
        ).all()
    )
    assert payloads[ids["optin"]] == {"group": "target", "send_at": NOW.isoformat()}
    assert payloads[ids["withdrawn"]] == {"group": "excluded"}
    assert report.planned == 5 and report.control == 0
    assert report.excluded == {
        "suppressed_hard_bounce": 1, "opted_out": 1, "restricted_source": 1,
        "pressure_cap": 1, "no_contact_point": 1,
    }  # fmt: skip
    assert report.funnel == [
        ("audience", 10), ("channel", 6), ("language", 6), ("contact_window", 6),
        ("control", 6), ("pressure", 5),
    ]  # fmt: skip
    assert session.get(Campaign, spring.id).status == "running"


def test_a_dry_run_reports_the_same_and_writes_nothing(session: Session, world: World) -> None:
    spring = new_campaign(session, "spring", priority=50)
    [dry] = campaigns.plan(
        session, campaigns=[spring], now=NOW, policies=campaigns.Policies(), dry_run=True
    )
    assert session.scalar(select(func.count()).select_from(CampaignTarget)) == 0
    assert session.scalar(select(func.count()).where(Outbox.campaign_id == spring.id)) == 0
    assert spring.status == "draft"
    [real] = campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())
    assert (dry.funnel, dry.excluded, dry.planned) == (real.funnel, real.excluded, real.planned)


def test_competing_campaigns_respect_the_caps_and_the_priority(
    session: Session, world: World
) -> None:
    low = new_campaign(session, "low", priority=10)
    high = new_campaign(session, "high", priority=90)
    reports = campaigns.plan(session, campaigns=[low, high], now=NOW, policies=campaigns.Policies())
    by_code = {r.code: r for r in reports}
    assert by_code["high"].planned == 5
    # 48 hours between two contacts: the low-priority campaign loses everyone the high one won
    assert by_code["low"].planned == 0
    assert by_code["low"].excluded["lost_arbitration"] == 5
    lost = targets(session, low)[world.ids["optin"]]
    assert (lost.reason, lost.detail) == ("lost_arbitration", f"campaign {high.id} (min_gap: 2d)")
    policy = rules.DEFAULT_PRESSURE
    for customer_id in world.ids.values():
        sent = session.execute(
            select(Outbox.send_after, Outbox.channel, Outbox.brand_id, Outbox.purpose).where(
                Outbox.customer_id == customer_id
            )
        ).all()
        contacts = [rules.Contact(*row) for row in sorted(sent)]
        for i, contact in enumerate(contacts):
            assert rules.check_pressure(policy, contacts[:i], contact) is None, customer_id


def test_the_control_group_gets_no_message(session: Session, world: World) -> None:
    spring = new_campaign(session, "spring", priority=50, control=0.5)
    [report] = campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())
    planned = targets(session, spring)
    held = {cid for cid, t in planned.items() if t.group == "control"}
    # drawn by household (the campaign may write letters), else by e-mail address
    expected = {
        cid for cid, t in planned.items()
        if t.group != "excluded"
        and rules.in_control(drawn_unit(session, cid, household=True), spring.control_salt, 0.5)
    }  # fmt: skip
    assert held == expected and report.control == len(held)
    assert all(planned[cid].send_at is not None for cid in held)  # would have been sent
    sent_to = set(
        session.scalars(select(Outbox.customer_id).where(Outbox.campaign_id == spring.id))
    )
    assert not held & sent_to


def test_a_campaign_without_a_message_for_a_channel_is_refused(
    session: Session, world: World
) -> None:
    c = campaigns.create(
        session, code="nomsg", name="No message", segment="everyone", channels=["sms"]
    )
    with pytest.raises(campaigns.CampaignError, match="no message for sms"):
        campaigns.plan(session, campaigns=[c], now=NOW, policies=campaigns.Policies())


def test_the_customers_own_weekly_cap_and_language_are_honoured(
    session: Session, world: World
) -> None:
    """What a customer chose in the preference center: at most N marketing contacts a week
    (on top of the policy), and the language of their messages."""
    session.add(Preference(customer_id=world.ids["optin"], channel="any", max_per_week=1))
    session.add(
        Outbox(
            key="old:optin", customer_id=world.ids["optin"], channel="postal", language="fr",
            state="sent", send_after=NOW - timedelta(days=4), planned_at=NOW - timedelta(days=4),
        )
    )  # fmt: skip
    session.add(Preference(customer_id=world.ids["buyer"], channel="any", language="en"))
    session.flush()
    spring = new_campaign(session, "spring", priority=50)
    campaigns.set_message(
        session, campaign=spring, channel="email", language="en", subject="Hello",
        body_text="Our offers",
    )  # fmt: skip
    campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())
    planned = targets(session, spring)
    capped = planned[world.ids["optin"]]
    # the policy alone allows it (one contact 4 days ago: under 3 a week, more than 48 h ago)
    assert (capped.group, capped.reason) == ("excluded", "pressure_cap")
    assert capped.detail == "customer_weekly: at most 1 in 7d"
    english = planned[world.ids["buyer"]]
    assert (english.group, english.language) == ("target", "en")
    assert planned[world.ids["weekend"]].language == "fr"


def test_chunk_reads_take_the_range_or_the_list(session: Session, world: World) -> None:
    dialect = Dialect.of(session)
    ids = sorted(world.ids.values())
    dense, sparse = ids[2:6], [ids[0], ids[-1]]
    for wanted in (dense, sparse):
        got = session.scalars(select(Customer.id).where(dialect.around(Customer.id, wanted)))
        assert sorted(got) == wanted


def test_suppressions_are_found_on_every_channel(session: Session, world: World) -> None:
    """SMS and letters too: a STOP on the mobile, a returned letter on the address (the
    in-memory list and the per-chunk lookup give the same)."""
    stopped = person(session, "Stopped", phone_mobile="+33612345678")
    moved = person(session, "Moved", **ADDRESS)
    consent(session, stopped, "sms", "granted", world.brand)
    lines = ["", "", "", ADDRESS["address_line4"], "", ADDRESS["address_line6"]]
    session.add_all(
        [
            Suppression(
                channel="sms", value_hash=contact_hash("sms", "+33612345678"),
                reason="unsubscribe", source="test",
            ),
            Suppression(
                channel="postal", value_hash=contact_hash("postal", "|".join(lines).lower()),
                reason="hard_bounce", source="test",
            ),
        ]
    )  # fmt: skip
    session.flush()
    for in_memory in (True, False):
        c = campaigns.create(
            session, code="sms-memory" if in_memory else "sms-lookup", name="Sms",
            segment="everyone", channels=["sms", "postal"], brand="SOLEIL", priority=50,
            control_share=0.0,
        )  # fmt: skip
        campaigns.set_message(session, campaign=c, channel="sms", language="fr", body_text="Hi")
        campaigns.set_message(session, campaign=c, channel="postal", language="fr", body_text="L")
        limit = campaigns.SUPPRESSIONS_IN_MEMORY if in_memory else 0
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(campaigns, "SUPPRESSIONS_IN_MEMORY", limit)
            campaigns.plan(
                session, campaigns=[c], now=NOW, policies=campaigns.Policies(), dry_run=False
            )
        got = targets(session, c)
        assert (got[stopped].group, got[stopped].reason) == ("excluded", "suppressed_unsubscribe")
        assert (got[moved].group, got[moved].reason) == ("excluded", "suppressed_hard_bounce")
        # the list holds an address, not a person: whoever lives there is left out
        assert got[world.ids["fallback"]].reason == "suppressed_hard_bounce"
        assert got[world.ids["optin"]].reason == "no_contact_point"


def test_a_large_plan_brings_the_statistics_up_to_date(
    session: Session, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL, so that the dispatcher's claim query is planned on the outbox as it now
    is (with the statistics of an empty table, it nested over every row)."""
    if Dialect.of(session).name != "postgresql":
        pytest.skip("statistics are PostgreSQL's")
    monkeypatch.setattr(campaigns, "ANALYZE_AFTER", 1)
    spring = new_campaign(session, "spring", priority=50)
    campaigns.plan(session, campaigns=[spring], now=NOW, policies=campaigns.Policies())
    known = session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('outbox')")
    ).scalar()
    assert known == session.scalar(select(func.count()).select_from(Outbox))
