"""consent_state holds, per customer, channel, purpose and brand, the consent row that holds
now, and follows every way consents change: a consent entered by staff, an import, a merge
and its undoing. On both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tournesol.consent import service
from tournesol.consent.models import Consent, ConsentState
from tournesol.customers.models import Brand, Customer
from tournesol.identity import merges
from tournesol.identity.models import IdentityRun, MergeEvent


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def states(session: Session, customer_id: int) -> set[tuple[Any, ...]]:
    rows = session.execute(
        select(
            ConsentState.channel,
            ConsentState.purpose,
            ConsentState.brand_id,
            ConsentState.status,
            ConsentState.provable,
        ).where(ConsentState.customer_id == customer_id)
    )
    return {tuple(r) for r in rows}


def customer(session: Session) -> int:
    row = Customer(first_name="Ana", last_name="Test")
    session.add(row)
    session.flush()
    return row.id


def given(session: Session, customer_id: int, **values: Any) -> Consent:
    return service.set_consent(
        session,
        customer_id=customer_id,
        proof_source="call",
        proof_text_version="v1",
        actor="tester",
        **values,
    )


def test_the_latest_decision_per_key_holds(session: Session) -> None:
    brand = Brand(code="SUN", name="Sun")
    session.add(brand)
    session.flush()
    a = customer(session)
    given(
        session,
        a,
        channel="email",
        purpose="marketing",
        brand_id=None,
        status="granted",
        collected_at=at(1),
    )
    given(
        session,
        a,
        channel="email",
        purpose="marketing",
        brand_id=None,
        status="withdrawn",
        collected_at=at(5),
    )
    # entered later but collected earlier: the withdrawal still holds
    given(
        session,
        a,
        channel="email",
        purpose="marketing",
        brand_id=None,
        status="granted",
        collected_at=at(3),
    )
    given(
        session,
        a,
        channel="email",
        purpose="marketing",
        brand_id=brand.id,
        status="granted",
        collected_at=at(2),
    )
    given(
        session,
        a,
        channel="sms",
        purpose="marketing",
        brand_id=None,
        status="denied",
        collected_at=at(2),
    )
    assert states(session, a) == {
        ("email", "marketing", None, "withdrawn", True),
        ("email", "marketing", brand.id, "granted", True),
        ("sms", "marketing", None, "denied", True),
    }
    latest = {
        (c.channel, c.brand_id): c.id for c in service.current_consents(session, customer_id=a)
    }
    ids = dict(
        session.execute(
            select(ConsentState.channel, ConsentState.consent_id).where(
                ConsentState.customer_id == a, ConsentState.brand_id.is_(None)
            )
        ).all()
    )
    assert ids == {"email": latest[("email", None)], "sms": latest[("sms", None)]}


def test_a_tie_goes_to_the_later_entry_and_a_bare_row_is_not_provable(session: Session) -> None:
    a = customer(session)
    for status in ("granted", "denied"):
        session.add(
            Consent(
                customer_id=a,
                channel="phone",
                purpose="marketing",
                status=status,
                collected_at=at(4),
            )
        )
        session.flush()
    service.refresh_state(session, customers=[a])
    assert states(session, a) == {("phone", "marketing", None, "denied", False)}


def test_a_full_rebuild_matches_the_per_customer_refresh(session: Session) -> None:
    a, b = customer(session), customer(session)
    given(
        session,
        a,
        channel="postal",
        purpose="marketing",
        brand_id=None,
        status="granted",
        collected_at=at(1),
    )
    given(
        session,
        b,
        channel="postal",
        purpose="marketing",
        brand_id=None,
        status="denied",
        collected_at=at(1),
    )
    before = (states(session, a), states(session, b))
    service.refresh_state(session, customers=None)
    assert (states(session, a), states(session, b)) == before


def test_a_merge_carries_the_states_and_an_unmerge_brings_them_back(session: Session) -> None:
    a, b = customer(session), customer(session)
    given(
        session,
        a,
        channel="email",
        purpose="marketing",
        brand_id=None,
        status="granted",
        collected_at=at(1),
    )
    given(
        session,
        b,
        channel="email",
        purpose="marketing",
        brand_id=None,
        status="withdrawn",
        collected_at=at(6),
    )
    given(
        session,
        b,
        channel="sms",
        purpose="marketing",
        brand_id=None,
        status="granted",
        collected_at=at(6),
    )
    run = IdentityRun(mode="manual", stats={})
    session.add(run)
    session.flush()
    plan = merges.MergePlan(survivor=a, absorbed=[b], rule="manual", score=None, reason="test")
    merges.merge(session, [plan], run_id=run.id, actor="tester")
    # the absorbed customer's later withdrawal now holds for the survivor
    assert states(session, a) == {
        ("email", "marketing", None, "withdrawn", True),
        ("sms", "marketing", None, "granted", True),
    }
    assert states(session, b) == set()
    event_id = session.scalars(select(MergeEvent.id).where(MergeEvent.absorbed_id == b)).one()
    merges.unmerge(session, event_id, actor="tester")
    assert states(session, a) == {("email", "marketing", None, "granted", True)}
    assert states(session, b) == {
        ("email", "marketing", None, "withdrawn", True),
        ("sms", "marketing", None, "granted", True),
    }
