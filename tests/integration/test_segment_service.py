"""Segment operations on SQLite and PostgreSQL: count and preview a definition, profile it
against the whole base (checked against numbers worked out by hand below), the overlap of
saved segments, saving and refreshing them (who entered and left, and when, over several
refreshes; set-based: the number of statements does not grow with the members), and the CSV
rows of an export with and without personal columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from tournesol.customers.models import Customer
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore
from tournesol.segments import service
from tournesol.segments.compiler import DefinitionError
from tournesol.segments.models import SegmentMembership, SegmentSnapshot

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
WOMEN = {"attribute": "gender", "op": "eq", "value": "F"}
EMAIL = {"reachable": "email"}
SENIORS = {"attribute": "age", "op": "gte", "value": 60}


@dataclass
class Base:
    """The small hand-made base; ``ids`` by the names used below (c7 is merged)."""

    ids: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.ids[name]


def add_customer(session: Session, **values: Any) -> Customer:
    customer = Customer(customer_type=values.pop("customer_type", "customer"), **values)
    session.add(customer)
    session.flush()
    return customer


def seed(session: Session) -> Base:
    """Eight customers (one merged) with features, RFM (scope all) and a score. Postal
    reachability needs line 4 or 5 and line 6."""
    people: dict[str, dict[str, Any]] = {
        # F, 26 -> 25-34, Paris (11), e-mail, mobile, full address
        "c1": dict(
            gender="F",
            birth_date=date(2000, 1, 1),
            postal_code="75011",
            country="FR",
            email="c1@example.org",
            phone_mobile="+33611111111",
            address_line4="3 RUE DE LA PAIX",
            address_line6="75011 PARIS",
            first_name="Alice",
            last_name="Premier",
            quality_score=80,
        ),
        # F, 35 the day before her birthday -> 35-44, Lyon (84), e-mail, line 5 + 6
        "c2": dict(
            gender="F",
            birth_date=date(1990, 6, 16),
            postal_code="69001",
            email="c2@example.org",
            address_line5="LIEU DIT LES VIGNES",
            address_line6="69001 LYON",
            last_name="Second",
            quality_score=60,
        ),
        # M, 66 -> 65-74, Corse-du-Sud (94), mobile; a street but no line 6: not postal
        "c3": dict(
            gender="M",
            birth_date=date(1960, 3, 1),
            postal_code="20167",
            phone_mobile="+33633333333",
            address_line4="1 CHEMIN",
            last_name="Troisieme",
            quality_score=40,
        ),
        # F, no birth date, La Réunion (04), landline only
        "c4": dict(
            gender="F",
            postal_code="97411",
            phone_fixed="+262262444444",
            last_name="Quatrieme",
            quality_score=90,
        ),
        # M, 16 -> <25, abroad, e-mail
        "c5": dict(
            gender="M",
            birth_date=date(2010, 1, 1),
            postal_code="1000",
            country="BE",
            email="c5@example.org",
            last_name="Cinquieme",
        ),
        # gender unknown, 76 -> 75+, no postal code
        "c6": dict(birth_date=date(1950, 1, 1), last_name="Sixieme"),
        # merged: never in a segment nor in the base
        "c7": dict(gender="F", status="merged", email="c7@example.org", last_name="Fusion"),
        # F, 41 -> 35-44, Saint-Barthélemy (977: no region), e-mail
        "c8": dict(
            gender="F",
            birth_date=date(1985, 5, 1),
            postal_code="97133",
            email="c8@example.org",
            last_name="Huitieme",
        ),
    }
    ids = {name: add_customer(session, **values).id for name, values in people.items()}
    amounts = {"c1": 100, "c2": 50, "c4": 0, "c5": 20, "c6": 0}
    for name, amount in amounts.items():
        session.add(
            CustomerFeature(
                customer_id=ids[name],
                computed_at=NOW - timedelta(hours=2),
                purchase_amount_365=Decimal(amount),
            )
        )
    for name, segment in (
        ("c1", "champions"),
        ("c2", "loyal"),
        ("c4", "lost"),
        ("c6", "champions"),
    ):
        session.add(
            CustomerRfm(
                customer_id=ids[name],
                scope="all",
                recency_days=10,
                frequency=3,
                monetary=Decimal(100),
                r_score=5,
                f_score=4,
                m_score=4,
                segment=segment,
            )
        )
    session.add(CustomerScore(customer_id=ids["c1"], model="churn", version="1", value=0.25))
    session.flush()
    return Base(ids)


def test_count_and_preview_hold_the_active_members(session: Session) -> None:
    base = seed(session)
    result = service.count(session, {"all": [WOMEN]}, now=NOW)
    assert result.size == 4  # c1, c2, c4, c8 (c7 is merged)
    assert result.path in ("features", "raw", "mixed")
    assert result.duration_ms >= 0
    assert service.count(session, {"all": []}, now=NOW).size == 7
    assert service.count(session, {"all": [WOMEN, EMAIL]}, now=NOW).size == 3
    assert service.count(session, {"not": WOMEN}, now=NOW).size == 3

    first = service.preview(session, {"all": [WOMEN]}, limit=3, now=NOW)
    assert [c.id for c in first] == sorted([base["c1"], base["c2"], base["c4"], base["c8"]])[:3]
    assert all(c.status == "active" for c in first)

    with pytest.raises(DefinitionError) as error:
        service.count(session, {"all": [{"attribute": "age", "op": "gt", "value": "old"}]})
    assert error.value.path.startswith("$.all[0]")


def _shares(profile: service.Profile, name: str) -> dict[str, tuple[int, int]]:
    return {b.key: (b.segment, b.base) for b in profile.distribution(name).buckets}


def test_profile_matches_the_numbers_worked_out_by_hand(session: Session) -> None:
    seed(session)
    found = service.profile(session, {"all": [WOMEN]}, now=NOW)
    assert (found.size, found.base) == (4, 7)
    assert _shares(found, "age_band") == {
        "<25": (0, 1),
        "25-34": (1, 1),
        "35-44": (2, 2),
        "65-74": (0, 1),
        "75+": (0, 1),
        "unknown": (1, 1),
    }
    assert list(_shares(found, "age_band"))[-1] == "unknown"
    assert _shares(found, "gender") == {"F": (4, 4), "M": (0, 2), "unknown": (0, 1)}
    assert _shares(found, "region") == {
        "11": (1, 1),
        "84": (1, 1),
        "04": (1, 1),
        "94": (0, 1),
        "other": (1, 1),
        "abroad": (0, 1),
        "unknown": (0, 1),
    }
    assert _shares(found, "rfm_segment") == {
        "champions": (1, 2),
        "loyal": (1, 1),
        "lost": (1, 1),
        "unknown": (1, 3),
    }
    assert _shares(found, "reachability") == {
        "email": (3, 4),
        "sms": (1, 2),
        "phone": (2, 3),
        "postal": (2, 2),
    }
    women = found.distribution("gender").bucket("F")
    assert women is not None
    assert women.segment_share == 1.0 and women.base_share == pytest.approx(4 / 7)
    assert women.index == pytest.approx(175.0)
    # purchase_amount_365: women 100 + 50 + 0 + (none: 0) over 4; base 170 over 7
    assert found.average_value == pytest.approx(37.5)
    assert found.base_average_value == pytest.approx(170 / 7)
    assert found.features_as_of == NOW - timedelta(hours=2)


def test_profile_without_features_has_no_average_value(session: Session) -> None:
    add_customer(session, gender="F", last_name="Seule")
    found = service.profile(session, {"all": []}, now=NOW)
    assert (found.size, found.base) == (1, 1)
    assert found.average_value is None and found.features_as_of is None


def test_overlap_of_saved_segments(session: Session) -> None:
    seed(session)
    for code, definition in (("women", WOMEN), ("email", EMAIL), ("seniors", SENIORS)):
        service.create(session, code=code, name=code.title(), definition=definition)
    found = service.overlap(session, ["women", "email", "seniors"], now=NOW)
    assert found.codes == ("women", "email", "seniors")
    assert found.matrix == ((4, 3, 0), (3, 4, 0), (0, 0, 2))
    assert found.union == 7
    assert found.share(0, 1) == pytest.approx(0.75)
    with pytest.raises(service.SegmentError):
        service.overlap(session, ["women", "nope"])


def test_saved_segments_record_who_entered_and_left_and_when(session: Session) -> None:
    base = seed(session)
    rich = {"attribute": "quality_score", "op": "gte", "value": 50}
    segment = service.create(session, code="quality", name="Good data", definition=rich)
    assert segment.last_size is None

    t1, t2, t3, t4 = (NOW + timedelta(days=d) for d in (0, 1, 2, 3))
    first = service.refresh(session, segment, now=t1)
    assert (first.size, first.entered, first.left) == (3, 3, 0)  # c1 80, c2 60, c4 90

    # c2 drops below, c3 rises above, c4 is merged away, a new customer arrives
    session.get(Customer, base["c2"]).quality_score = 30  # type: ignore[union-attr]
    session.get(Customer, base["c3"]).quality_score = 70  # type: ignore[union-attr]
    session.get(Customer, base["c4"]).status = "merged"  # type: ignore[union-attr]
    newcomer = add_customer(session, gender="F", quality_score=55, last_name="Neuve").id
    second = service.refresh(session, segment, now=t2)
    assert (second.size, second.entered, second.left) == (3, 2, 2)

    # c2 comes back: a second stay
    session.get(Customer, base["c2"]).quality_score = 95  # type: ignore[union-attr]
    third = service.refresh(session, segment, now=t3)
    assert (third.size, third.entered, third.left) == (4, 1, 0)
    fourth = service.refresh(session, segment, now=t4)
    assert (fourth.size, fourth.entered, fourth.left) == (4, 0, 0)

    stays = {
        (m.customer_id, m.entered_at, m.left_at)
        for m in service.memberships(session, segment=segment)
    }
    assert stays == {
        (base["c1"], t1, None),
        (base["c2"], t1, t2),
        (base["c4"], t1, t2),
        (base["c3"], t2, None),
        (newcomer, t2, None),
        (base["c2"], t3, None),
    }
    assert segment.last_size == 4 and segment.last_computed_at == t4
    history = service.snapshots(session, segment_ids=[segment.id])[segment.id]
    assert [(s.computed_at, s.size, s.entered, s.left) for s in history] == [
        (t1, 3, 3, 0),
        (t2, 3, 2, 2),
        (t3, 4, 1, 0),
        (t4, 4, 0, 0),
    ]
    assert all(s.path for s in history)
    now_in = {m.code for m in service.segments_of(session, base["c2"])}
    assert now_in == {"quality"}
    assert service.segments_of(session, base["c4"]) == []


def test_refresh_is_set_based_whatever_the_size(session: Session) -> None:
    """The statements a refresh sends do not grow with the number of members."""
    segment = service.create(session, code="everybody", name="Everybody", definition={"all": []})
    counts = []
    for batch in (3, 40):
        for i in range(batch):
            add_customer(session, last_name=f"N{batch}-{i}")
        statements: list[str] = []

        def count_it(*args: Any, sent: list[str] = statements) -> None:
            sent.append(args[2])

        connection = session.connection()
        event.listen(connection, "before_cursor_execute", count_it)
        try:
            snapshot = service.refresh(session, segment, now=NOW + timedelta(minutes=batch))
        finally:
            event.remove(connection, "before_cursor_execute", count_it)
        assert snapshot.entered == batch
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 8, counts
    members = session.scalars(
        select(SegmentMembership.customer_id).where(SegmentMembership.segment_id == segment.id)
    ).all()
    assert len(members) == 43


def test_saving_checks_the_code_the_name_and_the_definition(session: Session) -> None:
    seed(session)
    service.create(session, code="women", name="Women", definition=WOMEN)
    with pytest.raises(service.SegmentTaken):
        service.create(session, code="women", name="Again", definition=WOMEN)
    with pytest.raises(service.SegmentError) as bad_code:
        service.create(session, code="Bad Code!", name="x", definition=WOMEN)
    assert bad_code.value.field == "code"
    with pytest.raises(service.SegmentError) as no_name:
        service.create(session, code="noname", name="  ", definition=WOMEN)
    assert no_name.value.field == "name"
    with pytest.raises(DefinitionError):
        service.create(session, code="loop", name="Loop", definition={"segment": "loop"})
    # a definition naming a saved segment: that segment's members, always fresh
    service.create(
        session,
        code="women-email",
        name="Women by e-mail",
        definition={"all": [{"segment": "women"}, EMAIL]},
    )
    assert service.count(session, {"segment": "women-email"}, now=NOW).size == 3
    women = service.get_by_code(session, code="women")
    assert women is not None
    with pytest.raises(DefinitionError):  # women -> women-email -> women
        service.update(session, segment=women, definition={"segment": "women-email"})
    service.archive(session, segment=women)
    assert [s.code for s in service.list_segments(session)] == ["women-email"]
    assert {s.code for s in service.list_segments(session, include_archived=True)} == {
        "women",
        "women-email",
    }


def test_export_rows_without_and_with_personal_columns(session: Session) -> None:
    base = seed(session)
    segment = service.create(session, code="women", name="Women", definition=WOMEN)
    service.refresh(session, segment, now=NOW)

    rows = list(service.export_rows(session, segment, personal=False, now=NOW))
    columns = service.export_columns(session, personal=False)
    assert columns == (*service.NON_PERSONAL_COLUMNS, "score_churn")
    assert [r["customer_id"] for r in rows] == sorted(base[n] for n in ("c1", "c2", "c4", "c8"))
    first = rows[0]
    assert set(first) == set(columns)
    assert first == {
        "customer_id": base["c1"],
        "customer_type": "customer",
        "gender": "F",
        "age_band": "25-34",
        "department": "75",
        "region": "11",
        "rfm_segment": "champions",
        "score_churn": 0.25,
    }
    text = repr(rows)
    for secret in ("c1@example.org", "Premier", "+33611111111", "3 RUE DE LA PAIX"):
        assert secret not in text

    personal = list(service.export_rows(session, segment, personal=True, now=NOW))
    assert set(personal[0]) == set(service.export_columns(session, personal=True))
    assert personal[0]["email"] == "c1@example.org"
    assert personal[0]["last_name"] == "Premier"
    assert personal[0]["birth_date"] == date(2000, 1, 1)
    by_id = {r["customer_id"]: r for r in personal}
    assert by_id[base["c4"]]["region"] == "04" and by_id[base["c4"]]["age_band"] is None
    assert by_id[base["c8"]]["department"] == "977" and by_id[base["c8"]]["region"] is None
    assert session.scalar(select(SegmentSnapshot.size)) == 4
