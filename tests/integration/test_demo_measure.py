"""The demo's measured campaign (demo/measure.py) on a small demo base: a past postal campaign
planned by the real planner, printed by the real dispatcher, the purchases of its window drawn
with a planted effect and imported through the import pipeline, then measured. The measured
conversion interval covers the planted truth, and the naive attributed figure is many times
the true incremental one. And the uplift bench's core (bench/uplift_coverage.py), tiny.

The demo step on SQLite and PostgreSQL (a fresh migrated database each); the bench on SQLite,
which is what it runs on."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FreshDatabase
from tournesol.campaigns.models import Campaign, CampaignTarget, Outbox
from tournesol.db import make_engine, make_session_factory
from tournesol.demo import measure as demo_measure
from tournesol.demo.generator import DemoManifest, generate
from tournesol.identity import service as identity_service
from tournesol.ingest.importer import import_file
from tournesol.ingest.models import ImportBatch
from tournesol.ingest.schemas import load_mapping
from tournesol.interactions.models import Transaction
from tournesol.reporting.models import HoldoutAssignment, HoldoutGroup

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
AT = demo_measure.past_instant(NOW)
PERSONS = 1200
SEED = 5

Demo = tuple[sessionmaker[Session], DemoManifest, demo_measure.Measured]


def load_base(factory: sessionmaker[Session], manifest: DemoManifest) -> None:
    for item in manifest.files:
        import_file(factory, item.path, load_mapping(item.mapping))
    identity_service.resolve(factory, full=True)


@pytest.fixture(scope="module")
def demo(
    backend: str, fresh_databases: FreshDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """A small demo imported and resolved, then the demo's measure step."""
    manifest = generate(tmp_path_factory.mktemp("measure-demo"), seed=SEED, persons=PERSONS)
    engine = make_engine(fresh_databases.url(backend))
    factory = make_session_factory(engine)
    load_base(factory, manifest)
    measured = demo_measure.measure(
        factory, Console(file=io.StringIO()), manifest=manifest, now=NOW
    )
    assert measured is not None
    yield factory, manifest, measured
    engine.dispose()


def test_the_past_campaign_goes_through_the_planner_the_dispatcher_and_the_importer(
    demo: Demo,
) -> None:
    factory, manifest, measured = demo
    with factory() as session:
        campaign = session.scalars(select(Campaign).where(Campaign.code == "relance-automne")).one()
        assert campaign.status == "done" and campaign.planned_at == AT
        assert campaign.control_share == 0.2 and campaign.channels == ["postal"]
        targets = session.execute(
            select(CampaignTarget.customer_id, CampaignTarget.group, CampaignTarget.reason).where(
                CampaignTarget.campaign_id == campaign.id
            )
        ).all()
        groups = {(g, r) for _, g, r in targets}
        assert ("target", None) in groups and ("control", "control_group") in groups
        letters = session.execute(
            select(Outbox.state, Outbox.sent_at).where(Outbox.campaign_id == campaign.id)
        ).all()
        treated = sum(g == "target" for _, g, _r in targets)
        assert measured.letters == len(letters) == treated > 0
        assert {state for state, _ in letters} == {"sent"}
        assert {sent for _, sent in letters} == {AT}
        # the global holdout was drawn before the plan: its members are control rows
        group = session.scalars(select(HoldoutGroup)).one()
        held = set(
            session.scalars(
                select(HoldoutAssignment.customer_id).where(
                    HoldoutAssignment.group_id == group.id, HoldoutAssignment.held_out.is_(True)
                )
            )
        )
        assert group.share == pytest.approx(0.05) and held
        in_audience = {c for c, g, _ in targets if g != "excluded"}
        holdout_rows = {c for c, g, r in targets if r == "global_holdout"}
        assert holdout_rows == in_audience & held
        # the purchases of the window: imported from two files of the demo's formats
        batches = session.execute(
            select(ImportBatch.id, ImportBatch.file_name, ImportBatch.rejected).where(
                ImportBatch.file_name.in_(
                    ["tickets_caisse_relance.csv", "eshop_commandes_relance.json"]
                )
            )
        ).all()
        assert len(batches) == 2 and all(rejected == 0 for *_, rejected in batches)
        windows = {a.customer_id: a for a in demo_measure.assigned(session, campaign)}
        new = session.execute(
            select(Transaction.customer_id, Transaction.occurred_at).where(
                Transaction.external_id.like("RA%") | Transaction.external_id.like("%-R%")
            )
        ).all()
    assert len(new) == measured.purchases > 0
    for customer_id, at in new:
        window = windows[customer_id]  # only the campaign's customers bought in it
        assert window.start < at <= window.start + timedelta(days=window.days)
    letters_dir = manifest.truth_path.parent / "campaign-output" / "postal"
    assert [p.name.startswith("relance-automne-") for p in letters_dir.iterdir()] == [True]
    truth = json.loads(measured.truth_path.read_text(encoding="utf-8"))
    assert truth["true_conversion_effect"] == pytest.approx(measured.truth.conversion, abs=1e-6)
    assert truth["planted_effect"] == demo_measure.EFFECT


def test_the_measured_conversion_interval_covers_the_planted_truth(demo: Demo) -> None:
    _, _, measured = demo
    conversion, truth = measured.incremental.conversion, measured.truth
    assert conversion is not None
    assert 0 < truth.conversion <= demo_measure.EFFECT
    assert conversion.low <= truth.conversion <= conversion.high


def test_the_attributed_figure_overstates_the_incremental_one(demo: Demo) -> None:
    _, _, measured = demo
    main = measured.incremental.main
    assert main is not None and main.incremental_conversions is not None
    treated = measured.incremental.arms["treatment"].assigned
    true_buyers = measured.truth.conversion * treated
    estimated = max(0.0, main.incremental_conversions.estimate)
    # the treatment group's buyers after the letter: mostly customers who would have bought
    # anyway (the untreated chance alone is most of the conversion)
    assert measured.truth.untreated_conversion > 5 * measured.truth.conversion
    assert measured.attributed.purchasers > 5 * true_buyers
    assert measured.attributed.purchasers > 2 * estimated
    assert float(measured.attributed.revenue) > 5 * measured.truth.revenue * treated


def test_a_second_run_changes_nothing(demo: Demo) -> None:
    factory, manifest, _ = demo
    with factory() as session:
        before = session.scalar(select(func.count()).select_from(Transaction))
    again = demo_measure.measure(factory, Console(file=io.StringIO()), manifest=manifest, now=NOW)
    assert again is None
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Transaction)) == before


# --- the bench's core ------------------------------------------------------------------------


def bench_module() -> ModuleType:
    name = "uplift_coverage_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "uplift_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_bench_repeats_the_campaign_without_leaving_anything_behind(
    fresh_databases: FreshDatabase, tmp_path: Path
) -> None:
    bench = bench_module()
    engine = make_engine(fresh_databases.url("sqlite"))
    factory = make_session_factory(engine)
    try:
        manifest = bench.build_base(factory, tmp_path / "demo", persons=PERSONS, seed=SEED)
        with factory() as session:
            transactions = session.scalar(select(func.count()).select_from(Transaction))
        done: list[Any] = bench.run(
            factory, manifest, repetitions=5, seed=SEED, effect=0.04, now=NOW
        )
        with factory() as session:
            # each repetition was rolled back
            assert session.scalar(select(func.count()).select_from(Campaign)) == 0
            assert session.scalar(select(func.count()).select_from(Transaction)) == transactions
    finally:
        engine.dispose()
    assert [r.code for r in done] == [f"relance-automne-r00{k}" for k in range(1, 6)]
    for r in done:
        assert r.treatment > r.control > 0
        assert 0 < r.true_conversion <= 0.04
        assert r.conversion_low <= r.conversion <= r.conversion_high
        assert r.attributed_purchasers > r.true_buyers
    # a new control salt each time: the arms differ
    assert len({(r.treatment, r.control, r.conversion) for r in done}) > 1
    found = bench.figures(done)
    assert found["repetitions"] == 5
    assert 0 <= found["conversion_covered"] <= 5 and 0 <= found["revenue_covered"] <= 5
    assert found["overstated_buyers"] > 1
    lines = bench.report_lines(found, persons=PERSONS, seed=SEED, effect=0.04)
    assert "covers the true effect in" in lines[1] and lines[-1].startswith("target:")
