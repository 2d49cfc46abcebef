"""Customer features, RFM and predictive scores on SQLite and PostgreSQL: features of a small
hand-built history against hand-computed values, RFM in SQL against the pure rules, the two
models trained on the demo against the recency-only baseline, and the commands."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tests.integration.test_identity import import_sources
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work
from tournesol.demo.generator import DemoManifest, generate
from tournesol.ingest.models import Source
from tournesol.interactions.models import Interaction, Transaction
from tournesol.scoring import features, training
from tournesol.scoring.models import CustomerFeature, CustomerRfm, CustomerScore, ScoreModel
from tournesol.scoring.rules import RfmRow, score_rfm
from tournesol.scoring.service import ScoringError, refresh_rfm

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass
class History:
    session: Session
    source_id: int
    brands: dict[str, int]
    serial: int = 0

    def customer(self, status: str = "active") -> int:
        c = Customer(first_name="x", status=status)
        self.session.add(c)
        self.session.flush()
        return c.id

    def buy(
        self,
        customer_id: int,
        days_ago: float,
        amount: str,
        *,
        kind: str = "ticket",
        channel: str = "store",
        brand: str = "SOLEIL",
    ) -> None:
        self.serial += 1
        self.session.add(
            Transaction(
                source_id=self.source_id,
                external_id=f"t{self.serial}",
                customer_id=customer_id,
                kind=kind,
                channel=channel,
                brand_id=self.brands[brand],
                occurred_at=NOW - timedelta(days=days_ago),
                total_amount=Decimal(amount),
            )
        )

    def contact(self, customer_id: int, days_ago: float, direction: str) -> None:
        self.session.add(
            Interaction(
                customer_id=customer_id,
                occurred_at=NOW - timedelta(days=days_ago),
                channel="phone",
                direction=direction,
                type="call",
            )
        )


@pytest.fixture
def history(session: Session) -> History:
    brands = {code: Brand(code=code, name=code.title()) for code in ("SOLEIL", "LUNE")}
    source = Source(name="scoring-test", kind="pos")
    session.add_all([*brands.values(), source])
    session.flush()
    return History(session, source.id, {code: b.id for code, b in brands.items()})


def feature_row(session: Session, customer_id: int) -> dict[str, Any]:
    row = session.execute(
        select(CustomerFeature.__table__).where(CustomerFeature.customer_id == customer_id)
    ).one()
    return dict(row._mapping)


def test_features_refresh_gives_the_hand_computed_values(history: History) -> None:
    h = history
    a, b, quiet, merged = h.customer(), h.customer(), h.customer(), h.customer("merged")
    h.buy(a, 10, "20.50")  # in every window
    h.buy(a, 30, "4.00")  # exactly 30 days ago: windows are (now - N days, now]: not in 30
    h.buy(a, 100, "30.00", channel="web", brand="LUNE")  # 180 and 365
    h.buy(a, 400, "5.00")  # all time only
    h.buy(a, 5, "7.00", kind="return")  # a return: not a purchase, counted as a return
    h.buy(a, -3, "99.00")  # after now: not yet
    h.buy(b, 200, "100.00", kind="order", channel="web")
    h.buy(merged, 1, "1.00")
    h.contact(a, 3, "inbound")
    h.contact(a, 200, "outbound")
    h.contact(a, 500, "inbound")
    h.session.flush()

    written = features.refresh(h.session, now=NOW, chunk_ids=2)  # ranges of 2 ids
    assert written == 3  # the active customers; the merged one has no row

    got = feature_row(h.session, a)
    assert got["computed_at"] == NOW
    assert (got["purchase_count"], got["purchase_amount"]) == (4, Decimal("59.50"))
    assert got["first_purchase_at"] == NOW - timedelta(days=400)
    assert got["last_purchase_at"] == NOW - timedelta(days=10)
    assert (got["purchase_count_30"], got["purchase_amount_30"]) == (1, Decimal("20.50"))
    assert (got["purchase_count_90"], got["purchase_amount_90"]) == (2, Decimal("24.50"))
    assert (got["purchase_count_180"], got["purchase_amount_180"]) == (3, Decimal("54.50"))
    assert (got["purchase_count_365"], got["purchase_amount_365"]) == (3, Decimal("54.50"))
    assert (got["store_purchase_count_365"], got["web_purchase_count_365"]) == (2, 1)
    assert got["return_count_365"] == 1
    assert (got["interaction_count_90"], got["interaction_count_365"]) == (1, 2)
    assert got["inbound_count_365"] == 1
    assert got["last_interaction_at"] == NOW - timedelta(days=3)
    assert got["last_inbound_at"] == NOW - timedelta(days=3)

    got = feature_row(h.session, b)
    assert (got["purchase_count"], got["purchase_count_180"], got["purchase_count_365"]) == (
        1,
        0,
        1,
    )
    assert (got["web_purchase_count_365"], got["store_purchase_count_365"]) == (1, 0)

    got = feature_row(h.session, quiet)
    assert got["purchase_count"] == 0 and got["purchase_amount"] == Decimal(0)
    assert got["first_purchase_at"] is None and got["last_interaction_at"] is None
    assert got["interaction_count_365"] == 0

    # One statement over the whole base gives the same rows.
    before = {r.customer_id: r for r in h.session.scalars(select(CustomerFeature))}
    snapshot = {cid: feature_row(h.session, cid) for cid in before}
    assert features.refresh(h.session, now=NOW, chunk_ids=None) == 3
    assert {cid: feature_row(h.session, cid) for cid in before} == snapshot


def test_features_of_some_customers_only(history: History) -> None:
    h = history
    a, b = h.customer(), h.customer()
    h.buy(a, 10, "10.00")
    h.buy(b, 10, "10.00")
    h.session.flush()
    features.refresh(h.session, now=NOW)
    later = NOW + timedelta(days=1)
    h.buy(a, 0, "5.00")
    h.buy(b, 0, "5.00")
    h.session.flush()
    assert features.refresh(h.session, now=later, customer_ids=[a]) == 1
    got_a, got_b = feature_row(h.session, a), feature_row(h.session, b)
    assert (got_a["purchase_count"], got_a["computed_at"]) == (2, later)
    assert (got_b["purchase_count"], got_b["computed_at"]) == (1, NOW)
    # a customer merged since loses its row
    h.session.get(Customer, b).status = "merged"  # type: ignore[union-attr]
    h.session.flush()
    assert features.refresh(h.session, now=later, customer_ids=[b]) == 0
    assert h.session.get(CustomerFeature, b) is None


def random_history(h: History, customers: int = 150, seed: int = 3) -> None:
    """Few distinct days and amounts, so that many values tie."""
    rng = random.Random(seed)
    for _ in range(customers):
        cid = h.customer()
        for _ in range(rng.choice((0, 1, 1, 2, 3, 5, 8))):
            h.buy(
                cid,
                rng.choice((1, 3, 3, 10, 45, 120, 300, 700)) + rng.choice((0, 0.25, 0.5)),
                rng.choice(("9.90", "20.00", "20.00", "35.50", "120.00")),
                brand=rng.choice(("SOLEIL", "SOLEIL", "LUNE")),
                kind=rng.choice(("ticket", "order", "ticket", "ticket", "return")),
            )
    h.session.flush()


def expected_rfm(session: Session, scope: str) -> dict[int, tuple[Any, ...]]:
    """The pure rules on the same data, aggregated in Python."""
    query = select(Transaction.customer_id, Transaction.occurred_at, Transaction.total_amount)
    query = query.where(Transaction.kind != "return")
    if scope != "all":
        query = query.join(Brand, Brand.id == Transaction.brand_id).where(Brand.code == scope)
    per: dict[int, list[Any]] = defaultdict(list)
    for cid, at, amount in session.execute(query):
        per[cid].append((at, amount))
    rows = [
        RfmRow(
            cid,
            int((NOW - max(at for at, _ in items)).total_seconds() // 86400),
            len(items),
            sum((amount for _, amount in items), Decimal(0)),
        )
        for cid, items in per.items()
    ]
    return {
        s.customer_id: (row.recency_days, row.frequency, row.monetary, s.r, s.f, s.m, s.segment)
        for row, s in zip(rows, score_rfm(rows), strict=True)
    }


def stored_rfm(session: Session, scope: str) -> dict[int, tuple[Any, ...]]:
    r = CustomerRfm
    query = select(
        r.customer_id, r.recency_days, r.frequency, r.monetary, r.r_score, r.f_score, r.m_score
    )
    query = query.add_columns(r.segment).where(r.scope == scope)
    return {row[0]: tuple(row[1:]) for row in session.execute(query)}


def test_rfm_in_sql_equals_the_pure_rules(history: History) -> None:
    random_history(history)
    session = history.session
    features.refresh(session, now=NOW)
    counts = refresh_rfm(session, now=NOW)
    assert [c.scope for c in counts] == ["all", "LUNE", "SOLEIL"]
    assert [c.read for c in counts] == ["features", "transactions", "transactions"]
    for c in counts:
        expected = expected_rfm(session, c.scope)
        assert stored_rfm(session, c.scope) == expected, c.scope
        assert c.customers == len(expected) == sum(c.segments.values())
    all_from_features = stored_rfm(session, "all")
    # scope all from the transactions gives the same rows as from the features
    (again,) = refresh_rfm(session, now=NOW, scope="all", use_features=False)
    assert again.read == "transactions"
    assert stored_rfm(session, "all") == all_from_features
    # one brand alone replaces its rows only
    (lune,) = refresh_rfm(session, now=NOW, scope="LUNE")
    assert stored_rfm(session, "LUNE") == expected_rfm(session, "LUNE")
    assert session.scalar(select(func.count()).select_from(CustomerRfm)) == sum(
        c.customers for c in counts
    )
    assert lune.customers == counts[1].customers


def test_rfm_of_an_unknown_brand_and_of_an_empty_base(history: History) -> None:
    with pytest.raises(ScoringError, match="no brand 'NOPE'"):
        refresh_rfm(history.session, now=NOW, scope="NOPE")
    counts = refresh_rfm(history.session, now=NOW)
    assert [(c.scope, c.customers) for c in counts] == [("all", 0)]


# --- predictive scores on the demo ----------------------------------------------------------

DEMO_SOURCES = ("loyalty", "ecommerce", "contest", "callcenter", "tickets", "orders", "web_events")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("demo"), seed=11, persons=3000)


def test_models_beat_the_recency_baseline_on_the_demo(
    factory: sessionmaker[Session], demo: DemoManifest
) -> None:
    import_sources(factory, demo, DEMO_SOURCES)
    reports = {}
    with unit_of_work(factory) as session:
        for name in training.MODELS:
            reports[name] = training.train(session, name=name)
    for name, report in reports.items():
        m = report.metrics
        assert m["auc"] > m["baseline_auc"], (name, m["auc"], m["baseline_auc"])
        assert m["validation_rows"] > 500 and m["train_rows"] > 500
        assert m["validation_cutoff"] > m["train_cutoff"]
        assert m["train_labels_until"] == m["validation_cutoff"]
        assert 0 < m["brier"] < m["brier_base_rate"]
        assert sum(b["customers"] for b in m["calibration"]) == m["validation_rows"]
        assert report.version == "v1"
    with unit_of_work(factory) as session:
        # training again makes v2 the active version
        again = training.train(session, name="churn")
        assert again.version == "v2"
        active = session.scalars(select(ScoreModel.version).where(ScoreModel.active)).all()
        assert sorted(active) == ["v1", "v2"]  # purchase_90d v1, churn v2

        now = datetime.combine(demo.today, time(6), tzinfo=UTC)
        applied = {r.name: r for r in training.apply(session, now=now)}
        active_customers = session.scalar(select(func.count()).where(Customer.status == "active"))
        assert applied["purchase_90d"].scored == active_customers
        assert 0 < applied["churn"].scored < active_customers
        stored = session.execute(
            select(CustomerScore.model, CustomerScore.version, func.count())
            .group_by(CustomerScore.model, CustomerScore.version)
            .order_by(CustomerScore.model)
        ).all()
        assert [tuple(r) for r in stored] == [
            ("churn", "v2", applied["churn"].scored),
            ("purchase_90d", "v1", active_customers),
        ]
        values = session.scalars(select(CustomerScore.value)).all()
        assert all(0.0 <= v <= 1.0 for v in values)


def test_training_without_transactions_says_what_to_do(session: Session) -> None:
    with pytest.raises(ScoringError, match="no transactions: import some first"):
        training.train(session, name="purchase_90d")
    with pytest.raises(ScoringError, match="run tournesol scores train"):
        training.apply(session, now=NOW)


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture
def cli_database(backend: str, fresh_databases: FreshDatabase) -> Iterator[str]:
    yield fresh_databases.url(backend)


def tournesol(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOURNESOL_DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "tournesol", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parent,
        timeout=120,
    )


def test_the_commands(cli_database: str) -> None:
    empty = tournesol(cli_database, "rfm", "refresh")
    assert empty.returncode == 1
    assert "no purchases" in empty.stderr and "import transactions first" in empty.stderr
    no_model = tournesol(cli_database, "scores", "apply")
    assert no_model.returncode == 1 and "run `tournesol scores train` first" in no_model.stderr

    engine = make_engine(cli_database)
    with unit_of_work(make_session_factory(engine)) as session:
        source = Source(name="cli-test", kind="pos")
        brand = Brand(code="SOLEIL", name="Soleil")
        session.add_all([source, brand])
        session.flush()
        h = History(session, source.id, {"SOLEIL": brand.id})
        for i in range(12):
            cid = h.customer()
            for j in range(i % 4 + 1):
                h.buy(cid, 3 + 40 * i + j, f"{10 + i}.00")
    engine.dispose()

    done = tournesol(cli_database, "features", "refresh")
    assert done.returncode == 0, done.stderr
    assert "Features of 12 customers rebuilt" in done.stdout
    done = tournesol(cli_database, "rfm", "refresh", "--brand", "SOLEIL")
    assert done.returncode == 0, done.stderr
    assert "RFM segments" in done.stdout and "SOLEIL" in done.stdout and "Time:" in done.stdout
    unknown = tournesol(cli_database, "rfm", "refresh", "--brand", "NOPE")
    assert unknown.returncode == 1 and "no brand 'NOPE'" in unknown.stderr
