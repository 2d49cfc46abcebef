"""Campaigns at scale on PostgreSQL: planning a 1,000,000-recipient campaign against a
competing one (consent, suppression, contact points, language, contact windows, control group,
pressure and arbitration, then campaign_target, outbox and timeline rows), and sending email
from the outbox to a local SMTP server with the dispatcher's memory sampled during the send.

    .venv/bin/python bench/campaigns.py [--database tournesol_segments_bench] [--send 30000]
        [--server-url URL] [--today DATE] [--keep-plan] [--json PATH]
        [--customers 1000000 --transactions 10000000 --interactions 2000000] [--drop]
        [--together-only]

1. The base: the database of ``bench/segments.py`` (1,000,000 customers of three brands with
   identifiers, consents and their current state, preferences, 10,000,000 transactions, 2,000,000
   interactions). It is loaded by that script when missing (``--reuse``: an existing load is
   used as it is), about 15 minutes here.
2. Earlier bench campaigns are removed (their outbox, targets, timeline rows, messages,
   segments), then two campaigns are created:
   ``bench-newsletter`` of brand SOLEIL: every active customer (the audience is the whole
   base), email then SMS then postal mail as fallback, 10 % control group, priority 50;
   ``bench-flash``, SOLEIL too: the RFM champions and loyal customers, SMS then email, no
   control group, priority 80 (it wins the customers both want when the pressure policy
   allows only one).
   The base gets the lists a real one has, removed at the end: suppression entries (1 email
   in 40 unsubscribed, 1 in 150 hard-bounced, 1 in 400 a complaint, 1 mobile in 12 on the
   telephone opposition list) and the contest source restricted to no SMS.
   The pressure policy is the default one (docs/campaigns.md): 3 marketing contacts a week,
   1 SMS a week, 48 hours between two contacts.
3. ``campaigns.service.plan`` plans ``bench-newsletter`` alone (the 1,000,000-recipient
   campaign of the target; skipped with ``--together-only``), then, the bench campaigns made
   again, both together in one transaction (arbitration between them); each timed from the
   call to the end of the COMMIT (the segments are evaluated inside, as in production).
4. The send: an aiosmtpd server in another process accepts and discards the messages;
   ``campaigns.dispatch.dispatch`` sends ``--send`` emails of ``bench-newsletter`` (rendered
   per recipient, links rewritten, pixel, List-Unsubscribe) and records each result; a thread
   samples the resident memory of this process every 0.25 s. Printed: messages a second, and
   memory at the start, its peak and at the end of the send.
5. Unless ``--keep-plan``, the bench campaigns and everything they wrote are removed.

Figures are printed last. Targets (issue 7): plan under 60 s; at least 500 emails a second
with memory flat during the send.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime
from datetime import time as clock_time
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

BENCH = Path(__file__).resolve().parent
console = Console(stderr=True)

NEWSLETTER = "bench-newsletter"
FLASH = "bench-flash"
EVERYONE: dict[str, Any] = {"all": []}
CHAMPIONS = {"rfm": {"scope": "all", "segment": ["champions", "loyal"]}}
HTML = """<!doctype html><html lang="fr"><head><meta charset="utf-8">
<title>{{ brand }}</title></head><body><h1>Bonjour {{ first_name | default("") }},</h1>
<p>Nos nouveautés de saison vous attendent :
<a href="https://shop.example.fr/nouveautes?utm_campaign=newsletter">découvrir</a>.</p>
<p><a href="https://shop.example.fr/magasins">Trouver un magasin</a></p>
<p style="font-size:12px"><a href="{{ preferences_url }}">Gérer mes préférences</a> ·
<a href="{{ unsubscribe_url }}">Se désabonner</a></p></body></html>"""
TEXT = """Bonjour {{ first_name | default("") }},

Nos nouveautés de saison vous attendent : https://shop.example.fr/nouveautes

Gérer mes préférences : {{ preferences_url }}
Se désabonner : {{ unsubscribe_url }}
"""


def _segments_bench() -> ModuleType:
    name = "segments_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / "segments.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def prepare_base(args: argparse.Namespace) -> tuple[str, date]:
    """The URL of the loaded base and the day after its history; RFM refreshed (scope all)
    when the base has none (the champions segment reads it)."""
    seg = _segments_bench()
    api = seg._api_load()
    marker = api._marker(args.server_url, args.database)
    today = args.today
    if today is None and marker and "sizes" in marker:
        today = date.fromisoformat(marker["sizes"]["today"])
    sizes = seg.LoadSizes(
        args.customers, args.transactions, args.interactions, 7, 365, today or date.today()
    )
    load_args = argparse.Namespace(database=args.database, server_url=args.server_url, reuse=True)
    url, _marker, _report = seg.prepare_postgres(load_args, sizes)
    from sqlalchemy import func, select

    from tournesol.db import make_engine, make_session_factory, unit_of_work
    from tournesol.scoring import service as scoring
    from tournesol.scoring.models import CustomerRfm

    engine = make_engine(url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            if not session.scalar(select(func.count()).select_from(CustomerRfm)):
                now = datetime.combine(sizes.today, clock_time(6), UTC)
                with console.status("RFM refresh (scope all), once for this base"):
                    scoring.refresh_rfm(session, now=now, scope="all")
    finally:
        engine.dispose()
    return url, sizes.today


def remove_bench_campaigns(factory: Any) -> None:
    """Everything earlier runs of this bench wrote."""
    from sqlalchemy import delete, select, update

    from tournesol.campaigns.models import (
        Campaign,
        CampaignAttribution,
        CampaignMessage,
        CampaignTarget,
        Outbox,
    )
    from tournesol.consent.models import Suppression
    from tournesol.db import unit_of_work
    from tournesol.ingest.models import Source
    from tournesol.interactions.models import Interaction
    from tournesol.segments.models import Segment

    with unit_of_work(factory) as session:
        ids = list(session.scalars(select(Campaign.id).where(Campaign.code.like("bench-%"))))
        if ids:
            for model in (CampaignTarget, Outbox, CampaignMessage, CampaignAttribution):
                session.execute(delete(model).where(model.campaign_id.in_(ids)))
            session.execute(
                delete(Interaction).where(Interaction.campaign_code.in_([NEWSLETTER, FLASH]))
            )
            session.execute(delete(Campaign).where(Campaign.id.in_(ids)))
        session.execute(delete(Segment).where(Segment.code.like("bench_campaign_%")))
        session.execute(delete(Suppression).where(Suppression.source == BENCH_LISTS))
        session.execute(update(Source).where(Source.name == "contest").values(restrictions=[]))


BENCH_LISTS = "bench-campaigns"


def add_lists(factory: Any, *, now: datetime) -> dict[str, int]:
    """What a real base carries and the planner must look up: suppression entries (1 email
    in 40 unsubscribed, 1 in 150 hard-bounced, 1 in 400 a complaint; 1 mobile in 12 on the
    telephone opposition list, for SMS too) and a source whose data may not be used for SMS
    (the contest's). Returns the entries by reason."""
    from sqlalchemy import select, update

    from tournesol.consent.models import Suppression
    from tournesol.consent.rules import contact_hash
    from tournesol.customers.models import Customer
    from tournesol.db import unit_of_work
    from tournesol.ingest.models import Source

    counts: dict[str, int] = {}
    with unit_of_work(factory) as session:
        session.execute(
            update(Source).where(Source.name == "contest").values(restrictions=["no_sms"])
        )
        rows = session.execute(
            select(Customer.id, Customer.email, Customer.phone_mobile).order_by(Customer.id)
        )
        entries = []
        for customer_id, email, mobile in rows:
            found = []
            if email and customer_id % 40 == 0:
                found.append(("email", email, "unsubscribe"))
            elif email and customer_id % 150 == 1:
                found.append(("email", email, "hard_bounce"))
            elif email and customer_id % 400 == 2:
                found.append(("email", email, "complaint"))
            if mobile and customer_id % 12 == 3:
                found.append(("sms", mobile, "opposition"))
            for channel, value, reason in found:
                counts[reason] = counts.get(reason, 0) + 1
                entries.append(
                    Suppression(
                        channel=channel, value_hash=contact_hash(channel, value), reason=reason,
                        source=BENCH_LISTS, created_at=now,
                    )
                )  # fmt: skip
        session.add_all(entries)
    return counts


def create_campaigns(factory: Any, *, now: datetime) -> None:
    from tournesol.campaigns import service
    from tournesol.db import unit_of_work
    from tournesol.segments import service as segments

    with unit_of_work(factory) as session:
        segments.create(
            session, code="bench_campaign_everyone", name="Everyone", definition=EVERYONE
        )
        segments.create(
            session, code="bench_campaign_champions", name="Champions", definition=CHAMPIONS
        )
        newsletter = service.create(
            session,
            code=NEWSLETTER,
            name="Newsletter de saison",
            brand="SOLEIL",
            segment="bench_campaign_everyone",
            channels=["email", "sms", "postal"],
            priority=50,
            expected_value=Decimal("2.50"),
            control_share=0.1,
            created_by="bench",
        )
        flash = service.create(
            session,
            code=FLASH,
            name="Vente flash champions",
            brand="SOLEIL",
            segment="bench_campaign_champions",
            channels=["sms", "email"],
            priority=80,
            expected_value=Decimal("6.00"),
            control_share=0.0,
            created_by="bench",
        )
        for campaign in (newsletter, flash):
            for language in ("fr", "en"):
                service.set_message(
                    session,
                    campaign=campaign,
                    channel="email",
                    language=language,
                    subject="{{ first_name | default('') }}, nos nouveautés",
                    body_text=TEXT,
                    body_html=HTML,
                )
                service.set_message(
                    session,
                    campaign=campaign,
                    channel="sms",
                    language=language,
                    body_text="{{ brand }} : -20 % ce week-end en magasin.",
                )
            if "postal" in campaign.channels:
                service.set_message(
                    session,
                    campaign=campaign,
                    channel="postal",
                    language="fr",
                    body_text="Madame, Monsieur,\n\nNos nouveautés de saison vous attendent.",
                )


def time_plan(factory: Any, *, now: datetime, codes: tuple[str, ...] = ()) -> dict[str, Any]:
    from sqlalchemy import select

    from tournesol.campaigns import service
    from tournesol.campaigns.models import Campaign

    started = time.perf_counter()
    with Progress(
        TextColumn("plan"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("plan", total=None)
        with factory() as session:
            campaigns = list(
                session.scalars(
                    select(Campaign)
                    .where(Campaign.code.in_(codes or (NEWSLETTER, FLASH)))
                    .order_by(Campaign.code)
                )
            )
            reports = service.plan(
                session,
                campaigns=campaigns,
                now=now,
                policies=service.Policies(),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            session.commit()
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"seconds": round(seconds, 1), "campaigns": {}}
    for report in reports:
        out["campaigns"][report.code] = {
            "funnel": report.funnel,
            "excluded": dict(report.excluded.most_common()),
            "channels": dict(report.channels),
            "control": report.control,
            "planned": report.planned,
        }
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SMTP_SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def time_send(
    url: str, factory: Any, count: int, code: str = NEWSLETTER, *, now: datetime | None = None
) -> dict[str, Any]:
    """Send ``count`` emails of campaign ``code``; the dispatcher's clock is the real one, but
    never before ``now`` (the plan's time: the messages are due from then)."""
    from sqlalchemy import select

    from tournesol.campaigns import dispatch
    from tournesol.campaigns.models import Campaign
    from tournesol.config import Settings

    port = _free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SMTP_SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        settings = Settings(
            database_url=url,
            smtp_host="127.0.0.1",
            smtp_port=port,
            mail_from="nouveautes@soleil.example.fr",
            mail_from_name="Soleil",
            public_url="https://t.soleil.example.fr",
            link_secret="bench-link-secret-" + "x" * 32,
        )
        with factory() as session:
            newsletter = session.scalar(select(Campaign.id).where(Campaign.code == code))
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.perf_counter()
            while not stop.is_set():
                samples.append((time.perf_counter() - start, _rss_mb()))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        rss_before = _rss_mb()
        sampler.start()
        started = time.perf_counter()
        with Progress(
            TextColumn("send"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), console=console,
        ) as bar:  # fmt: skip
            task = bar.add_task("send", total=count)
            report = dispatch.dispatch(
                factory,
                settings=settings,
                channels=["email"],
                campaign_ids=[newsletter],
                limit=count,
                progress=lambda done: bar.update(task, completed=done),
                now=lambda: max(datetime.now(UTC), now or datetime.now(UTC)),
            )
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
    finally:
        if sink.stdin is not None:
            sink.stdin.close()
        sink.wait(timeout=10)
    sent = sum(report.sent.values()) if hasattr(report, "sent") else count
    memory = [mb for _, mb in samples]
    tenth = max(1, len(memory) // 10)
    return {
        "messages": sent,
        "seconds": round(seconds, 1),
        "per_second": round(sent / seconds, 1) if seconds else None,
        "rss_before_mb": round(rss_before, 1),
        "rss_first_tenth_mb": round(max(memory[:tenth]), 1) if memory else None,
        "rss_last_tenth_mb": round(max(memory[-tenth:]), 1) if memory else None,
        "rss_peak_mb": round(max(memory), 1) if memory else None,
        "report": str(report),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/")
    parser.add_argument("--database", default="tournesol_segments_bench")
    parser.add_argument("--send", type=int, default=30_000, help="emails to send (0: none)")
    parser.add_argument("--today", type=date.fromisoformat, help="the day after the history")
    parser.add_argument("--keep-plan", action="store_true", help="keep the bench campaigns")
    parser.add_argument("--customers", type=int, default=1_000_000, help="size of the base")
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument(
        "--reuse-plan",
        action="store_true",
        help="no plan: send from the bench campaigns an earlier --keep-plan run left planned",
    )
    parser.add_argument(
        "--send-campaign",
        default=NEWSLETTER,
        choices=[NEWSLETTER, FLASH],
        help="the campaign whose emails are sent",
    )
    parser.add_argument(
        "--together-only",
        action="store_true",
        help="skip the plan of the newsletter alone (plan the two campaigns together only)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    from tournesol.db import make_engine, make_session_factory

    url, today = prepare_base(args)
    now = datetime.combine(today, clock_time(6), UTC)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    figures: dict[str, Any] = {"database": args.database, "now": now.isoformat()}
    try:
        if not args.reuse_plan:
            if not args.together_only:
                remove_bench_campaigns(factory)
                create_campaigns(factory, now=now)
                add_lists(factory, now=now)
                figures["plan_alone"] = time_plan(factory, now=now, codes=(NEWSLETTER,))
            remove_bench_campaigns(factory)
            create_campaigns(factory, now=now)
            figures["lists"] = add_lists(factory, now=now)
            figures["plan"] = time_plan(factory, now=now)
        if args.send:
            figures["send"] = time_send(url, factory, args.send, args.send_campaign, now=now)
    finally:
        if not (args.keep_plan or args.reuse_plan):
            remove_bench_campaigns(factory)
        engine.dispose()
        if args.drop:
            _segments_bench().drop_postgres(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    print_figures(figures)


def print_figures(figures: dict[str, Any]) -> None:
    plan = figures.get("plan") or {"seconds": None, "campaigns": {}}
    print(f"\nCampaigns bench on PostgreSQL ({figures['database']}), now = {figures['now']}")
    if figures.get("lists"):
        print(
            "lists: suppression entries "
            + ", ".join(f"{k} {v:,}" for k, v in figures["lists"].items())
            + "; contest source restricted (no_sms)"
        )
    alone = figures.get("plan_alone")
    if alone:
        report = alone["campaigns"].get(NEWSLETTER, {})
        print(
            f"plan of {NEWSLETTER} alone, one transaction, commit included: {alone['seconds']} s"
            f" (audience {report.get('funnel', [('audience', 0)])[0][1]:,}, planned "
            f"{report.get('planned', 0):,})"
        )
    if plan["seconds"] is not None:
        print(f"plan of both campaigns, one transaction, commit included: {plan['seconds']} s")
    for code, report in plan["campaigns"].items():
        print(f"  {code}:")
        print(
            "    funnel: " + " -> ".join(f"{stage} {count:,}" for stage, count in report["funnel"])
        )
        print(
            f"    planned {report['planned']:,} {report['channels']}, control {report['control']:,}"
        )
        print("    excluded: " + ", ".join(f"{k} {v:,}" for k, v in report["excluded"].items()))
    send = figures.get("send")
    if send:
        print(
            f"send: {send['messages']:,} emails in {send['seconds']} s = {send['per_second']}/s; "
            f"memory {send['rss_before_mb']} MB before, {send['rss_first_tenth_mb']} MB (first "
            f"tenth), {send['rss_last_tenth_mb']} MB (last tenth), peak {send['rss_peak_mb']} MB"
        )
    audience = plan["campaigns"].get(NEWSLETTER, {}).get("funnel", [("audience", 0)])[0][1]
    if alone:
        met = alone["seconds"] < 60 and audience >= 1_000_000
        print(
            f"target: plan of a 1,000,000-recipient campaign under 60 s, alone: "
            f"{alone['seconds']} s, {'met' if met else 'NOT met'}"
        )
    if plan["seconds"] is not None:
        met = plan["seconds"] < 60 and audience >= 1_000_000
        print(
            f"target: the same planned together with a competing campaign under 60 s: "
            f"{plan['seconds']} s, audience {audience:,}, {'met' if met else 'NOT met'}"
        )
    if send:
        print(f"target: at least 500 emails/s: {'met' if send['per_second'] >= 500 else 'NOT met'}")


if __name__ == "__main__":
    main()
