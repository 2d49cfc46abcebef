"""Kill -9 a dispatcher in the middle of a campaign, run it again: every message ends ``sent``
or ``in_doubt``, no message reaches the relay twice, every row marked sent was received, and
what is in doubt is at most one window of messages. Real processes, a real SMTP server
(aiosmtpd in this process), real databases (fresh ones: commits are real here)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select

from tests.conftest import FreshDatabase
from tests.integration.test_smtp_sender import Recorder, free_port
from tournesol.campaigns import service as campaigns
from tournesol.campaigns.dispatch import FLUSH_SECONDS, IN_DOUBT_ERROR
from tournesol.campaigns.models import Outbox
from tournesol.consent import service as consent_service
from tournesol.consent.models import Consent
from tournesol.customers.models import Brand, Customer
from tournesol.db import make_engine, make_session_factory, unit_of_work, utcnow
from tournesol.segments.models import Segment

MESSAGES = 300
RATE = 100.0  # e-mails a second: the run takes 3 s, long enough to be killed in the middle
WINDOW = math.ceil(RATE * FLUSH_SECONDS)  # the most messages that can be in doubt

CHILD = """
import json, sys
from tournesol.campaigns.dispatch import dispatch
from tournesol.config import Settings
from tournesol.db import make_engine, make_session_factory

settings = Settings(_env_file=None, **json.loads(sys.argv[1]))
report = dispatch(make_session_factory(make_engine(settings.database_url)), settings=settings)
print(json.dumps({name: dict(getattr(report, name)) for name in ("claimed", "sent", "in_doubt")}
                 | {"released": report.released}))
"""


def populate(url: str) -> None:
    """A brand, MESSAGES opted-in customers, a planned campaign due now."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    now = utcnow()
    with unit_of_work(factory) as session:
        brand = Brand(code="SOLEIL", name="Soleil")
        session.add(brand)
        session.add(Segment(code="everyone", name="Everyone", definition={"all": []}))
        session.flush()
        people = [
            Customer(first_name=f"Client{i}", last_name="Martin", email=f"c{i}@exemple.fr")
            for i in range(MESSAGES)
        ]
        session.add_all(people)
        session.flush()
        proof = {"kind": "manual", "source": "web form", "text_version": "v1", "actor": "test"}
        session.add_all(
            Consent(
                customer_id=p.id, channel="email", purpose="marketing", brand_id=brand.id,
                status="granted", collected_at=now, proof=proof,
            )
            for p in people
        )  # fmt: skip
        session.flush()
        consent_service.refresh_state(session, customers=[p.id for p in people])
        c = campaigns.create(
            session, code="crash", name="Crash", segment="everyone", channels=["email"],
            brand="SOLEIL", control_share=0.0,
        )  # fmt: skip
        campaigns.set_message(
            session, campaign=c, channel="email", language="fr", subject="Bonjour {{ first_name }}",
            body_text="Les soldes. {{ unsubscribe_url }}",
            body_html='<p>Les soldes</p><a href="https://shop.example/">Voir</a>',
        )  # fmt: skip
        [report] = campaigns.plan(session, campaigns=[c], now=now, policies=campaigns.Policies())
        assert report.planned == MESSAGES
    engine.dispose()


def run_child(settings: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(settings)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_dispatcher_killed_mid_run_never_sends_twice_and_loses_nothing(
    backend: str, fresh_databases: FreshDatabase, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    url = fresh_databases.url(backend)
    populate(url)
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings = {
        "database_url": url,
        "public_url": "https://t.soleil.example",
        "link_secret": "k" * 40,
        "secrets_dir": str(tmp_path / "secrets"),
        "campaign_output_dir": str(tmp_path / "out"),
        "mail_from": "news@soleil.example",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_rate_per_second": RATE,
    }
    try:
        first = run_child(settings)
        deadline = time.monotonic() + 60
        while len(handler.received) < 123:  # mid-window (windows of 50)
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the dispatcher sent nothing"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = len(handler.received)
        assert killed_at < MESSAGES, "the kill must land mid-run"

        second = run_child(settings)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
    finally:
        controller.stop()

    keys = Counter(int(got.message["X-Tournesol-Outbox"]) for got in handler.received)
    assert keys and max(keys.values()) == 1, "a message reached the relay twice"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Outbox.id, Outbox.state, Outbox.error)).all()
    finally:
        engine.dispose()
    states = Counter(state for _, state, _ in rows)
    assert set(states) <= {"sent", "in_doubt"}, states
    assert len(rows) == MESSAGES
    sent = {oid for oid, state, _ in rows if state == "sent"}
    doubtful = {oid for oid, state, _ in rows if state == "in_doubt"}
    assert sent <= set(keys), "a row marked sent never reached the relay"
    assert set(keys) <= sent | doubtful
    assert len(doubtful) <= WINDOW, f"{len(doubtful)} in doubt, more than a window ({WINDOW})"
    assert all(error == IN_DOUBT_ERROR for oid, _, error in rows if oid in doubtful)
    # the second run took back what the first had claimed and not handed over
    assert summary["in_doubt"].get("email", 0) == len(doubtful)
    assert len(sent) + len(doubtful) == MESSAGES
    recorded_by_first = len(sent) - summary["sent"]["email"]
    assert 0 < recorded_by_first <= killed_at
