"""Identity resolution, end to end: profiles, model, scored pairs, decisions, clusters, merges,
review queue. The face (CLI, web) calls :func:`resolve`, :func:`decide_review`,
:func:`unmerge_event` and :func:`explain`; each commits its own work.

Full mode re-trains the model (EM on the data, saved as a new version) and scores every
blocked pair of the base. Incremental mode scores only the records not yet resolved (new, or
changed since) against the base and among themselves, with the latest model, and attaches,
merges or creates customers accordingly; existing customers are never split (only an unmerge
does that).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Text, cast, delete, func, insert, literal, select, true
from sqlalchemy.orm import Session, sessionmaker

from tournesol.customers.models import Customer, Identifier
from tournesol.db import Dialect, UtcDateTime, chunked, unit_of_work, utcnow
from tournesol.identity import decisions, features
from tournesol.identity.clustering import Link, cluster
from tournesol.identity.engine import RECORD_COLUMNS, SPLINK_VERSION, Engine, records_table
from tournesol.identity.merges import MergePlan, merge, unmerged_record_pairs
from tournesol.identity.models import IdentityModel, IdentityRun, MatchProfile, MatchReview
from tournesol.identity.splink_settings import LOWER_THRESHOLD, UPPER_THRESHOLD
from tournesol.ingest.models import SourceRecord

Progress = Callable[[str], None]
ACTOR = "identity resolve"
PROFILE_CHUNK = 20_000


@dataclass
class ResolveReport:
    mode: str
    run_id: int
    model_version: int
    records: int = 0  # customer records in the base
    pending: int = 0  # records resolved by this run (all of them in full mode)
    profiles_refreshed: int = 0
    pairs_scored: int = 0
    candidate_pairs: int = 0
    links: int = 0
    refused: int = 0
    merges: int = 0
    reviews: int = 0
    customers_before: int = 0
    customers_after: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        return (
            f"{self.mode} resolution (model v{self.model_version}): {self.records:,} records, "
            f"{self.pending:,} resolved, {self.pairs_scored:,} pairs scored, "
            f"{self.links:,} links ({self.refused:,} refused by the guards), "
            f"{self.merges:,} merges, {self.reviews:,} pairs to review; "
            f"customers {self.customers_before:,} -> {self.customers_after:,} ({steps})"
        )


class _Profiles(Mapping[int, dict[str, Any]]):
    """Profiles by record id, kept as tuples and turned into dicts on first use."""

    def __init__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.rows = {row[0]: row for row in rows}
        self.cache: dict[int, dict[str, Any]] = {}

    def __getitem__(self, key: int) -> dict[str, Any]:
        found = self.cache.get(key)
        if found is None:
            found = self.cache[key] = dict(zip(RECORD_COLUMNS, self.rows[key], strict=True))
        return found

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def customer(self, key: int) -> int:
        return int(self.rows[key][1])

    def release(self) -> None:
        self.rows.clear()
        self.cache.clear()


# --- profiles ---------------------------------------------------------------------------
def refresh_profiles(factory: sessionmaker[Session], *, progress: Progress | None = None) -> int:
    """Build the profiles and identifiers of customer records that have none or whose record
    changed since; commits per chunk (derived data: a rerun finishes the job). Returns how many
    records were (re)profiled."""
    done = 0
    after = 0  # keyset pagination: each chunk starts after the last record seen
    while True:
        with unit_of_work(factory) as session:
            rows = session.execute(
                select(
                    SourceRecord.id,
                    SourceRecord.source_id,
                    SourceRecord.record_hash,
                    SourceRecord.customer_id,
                    cast(SourceRecord.normalized, Text),
                    MatchProfile.record_id,
                )
                .outerjoin(MatchProfile, MatchProfile.record_id == SourceRecord.id)
                .where(
                    SourceRecord.id > after,
                    SourceRecord.entity == "customer",
                    SourceRecord.customer_id.is_not(None),
                    (MatchProfile.record_id.is_(None))
                    | (MatchProfile.record_hash != SourceRecord.record_hash),
                )
                .order_by(SourceRecord.id)
                .limit(PROFILE_CHUNK)
            ).all()
            if not rows:
                return done
            _write_profiles(session, rows)
            done += len(rows)
            after = rows[-1][0]
            if progress:
                progress(f"profiled {done:,} records")


def _profile_values(texts: Sequence[str]) -> list[tuple[Any, ...]]:
    """Profile values (PROFILE_COLUMNS order) of records' normalized JSON texts; about 16 µs
    a record, so a process pool would cost more than it saves."""
    return [tuple(features.profile(orjson.loads(text)).values()) for text in texts]


def _write_profiles(session: Session, rows: Sequence[Any]) -> None:
    """Profiles built in Python; identifiers copied by the database itself from the records'
    ``identifiers`` object (one INSERT ... SELECT: two or three per record add up)."""
    dialect = Dialect.of(session)
    stale = [r[0] for r in rows if r[5] is not None]
    for part in chunked(stale, dialect.max_params - 10):
        session.execute(delete(MatchProfile).where(dialect.one_of(MatchProfile.record_id, part)))
        session.execute(delete(Identifier).where(dialect.one_of(Identifier.source_record_id, part)))
    built = _profile_values([r[4] for r in rows])
    profiles = [(r[0], r[1], r[2], *values) for r, values in zip(rows, built, strict=True)]
    dialect.copy_rows(
        session.connection(),
        MatchProfile.__table__,  # type: ignore[arg-type]
        ["record_id", "source_id", "record_hash", *features.PROFILE_COLUMNS],
        profiles,
    )
    entries = dialect.json_entries(SourceRecord.normalized, "identifiers")
    now = literal(utcnow(), UtcDateTime())
    for part in chunked([r[0] for r in rows], dialect.max_params - 10):
        found = (
            select(
                SourceRecord.customer_id,
                entries.c.key,
                func.substr(entries.c.value, 1, 320),
                SourceRecord.id,
                now,
            )
            .select_from(SourceRecord)
            .join(entries, true())
            .where(
                dialect.among(SourceRecord.id, part),
                entries.c.value.is_not(None),
                entries.c.value != "",
            )
        )
        session.execute(
            insert(Identifier).from_select(
                ["customer_id", "kind", "value", "source_record_id", "created_at"], found
            )
        )


def _load_profiles(session: Session) -> list[tuple[Any, ...]]:
    """Every customer record's profile, as tuples in RECORD_COLUMNS order."""
    cols = [getattr(MatchProfile, c) for c in features.PROFILE_COLUMNS]
    query = (
        select(MatchProfile.record_id, SourceRecord.customer_id, *cols)
        .join(SourceRecord, SourceRecord.id == MatchProfile.record_id)
        .where(SourceRecord.customer_id.is_not(None))
        .order_by(MatchProfile.record_id)
    )
    # Plain integers and strings: the driver's own tuples, without SQLAlchemy's row objects
    # (twice as fast at a million rows).
    conn = session.connection()
    sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return cursor.fetchall()  # type: ignore[no-any-return]
    finally:
        cursor.close()


# --- models -----------------------------------------------------------------------------
def latest_model(session: Session) -> IdentityModel | None:
    return session.scalars(select(IdentityModel).order_by(IdentityModel.version.desc())).first()


def _save_model(session: Session, settings: dict[str, Any], records: int) -> IdentityModel:
    previous = latest_model(session)
    model = IdentityModel(
        version=(previous.version + 1) if previous else 1,
        splink_version=SPLINK_VERSION,
        settings=settings,
        records=records,
        trained_at=utcnow(),
    )
    session.add(model)
    session.flush()
    return model


# --- resolution -------------------------------------------------------------------------
def _last_run(session: Session) -> IdentityRun | None:
    return session.scalars(
        select(IdentityRun)
        .where(IdentityRun.finished_at.is_not(None), IdentityRun.mode.in_(("full", "incremental")))
        .order_by(IdentityRun.id.desc())
    ).first()


def _pending(session: Session, last: IdentityRun | None) -> set[int]:
    """Customer records not resolved yet: new or changed since the last run began."""
    query = select(SourceRecord.id).where(
        SourceRecord.entity == "customer", SourceRecord.customer_id.is_not(None)
    )
    if last is not None:
        query = query.where(SourceRecord.updated_at >= last.started_at)
    return set(session.scalars(query))


def _cannot_link(session: Session) -> set[tuple[int, int]]:
    rejected = session.execute(
        select(MatchReview.record_a_id, MatchReview.record_b_id).where(
            MatchReview.status == "rejected"
        )
    )
    pairs = {(a, b) for a, b in rejected}
    return pairs | unmerged_record_pairs(session)


def _count_customers(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(Customer).where(Customer.status == "active")
        )
        or 0
    )


def resolve(
    factory: sessionmaker[Session],
    *,
    full: bool = False,
    progress: Progress | None = None,
    upper: float = UPPER_THRESHOLD,
    lower: float = LOWER_THRESHOLD,
) -> ResolveReport:
    """Resolve the base (``full``) or the records not resolved yet (incremental; the first
    run is always full). Matching and merging happen in one transaction."""
    say = progress or (lambda _msg: None)
    timer = _Timer()
    refreshed = refresh_profiles(factory, progress=say)
    timer.lap("profiles")
    engine = Engine()
    try:
        with unit_of_work(factory) as session:
            last = _last_run(session)
            stored = latest_model(session)
            mode = "full" if full or last is None or stored is None else "incremental"
            run = IdentityRun(mode=mode, started_at=utcnow(), stats={})
            session.add(run)
            session.flush()
            report = ResolveReport(mode=mode, run_id=run.id, model_version=0)
            report.profiles_refreshed = refreshed
            report.customers_before = _count_customers(session)
            pending = set() if mode == "full" else _pending(session, last)
            say("loading profiles")
            rows = _load_profiles(session)
            profiles = _Profiles(rows)
            report.records = len(rows)
            report.pending = len(rows) if mode == "full" else len(pending & profiles.rows.keys())
            engine.load("records", records_table(rows))
            engine.drop_shared_identifiers("records")
            del rows  # the profiles keep the tuples; the list is not needed any more
            timer.lap("load")
            if mode == "full":
                say(f"training the model on {report.records:,} records (EM)")
                model = _save_model(session, engine.train("records"), report.records)
                timer.lap("train")
                say("scoring pairs")
                pairs = engine.predict_all(model.settings, "records")
            else:
                assert stored is not None
                model = stored
                if not report.pending:
                    pairs = ""
                else:
                    engine.run(
                        "CREATE OR REPLACE TABLE new_ids AS SELECT unnest(?::BIGINT[]) AS id",
                        [sorted(pending)],
                    )
                    engine.run(
                        "CREATE OR REPLACE TABLE new_records AS SELECT * FROM records "
                        "WHERE unique_id IN (SELECT id FROM new_ids)"
                    )
                    engine.run(
                        "CREATE OR REPLACE TABLE base_records AS SELECT * FROM records "
                        "WHERE unique_id NOT IN (SELECT id FROM new_ids)"
                    )
                    say(f"scoring {report.pending:,} new records against the base")
                    pairs = engine.predict_new(
                        model.settings, "base_records", "new_records", "records"
                    )
            run.model_id = model.id
            report.model_version = model.version
            timer.lap("score")
            if pairs:
                report.pairs_scored = engine.count(pairs)
                _match(
                    session, engine, pairs, profiles, report, run, upper=upper, lower=lower, say=say
                )
            timer.lap("merge")
            report.customers_after = _count_customers(session)
            report.seconds = timer.laps
            run.records = report.pending
            run.pairs = report.pairs_scored
            run.links = report.links
            run.merges = report.merges
            run.reviews = report.reviews
            run.stats = {"refused": report.refused, "seconds": report.seconds}
            run.finished_at = utcnow()
    finally:
        engine.close()
    return report


def _match(
    session: Session,
    engine: Engine,
    pairs: str,
    profiles: _Profiles,
    report: ResolveReport,
    run: IdentityRun,
    *,
    upper: float,
    lower: float,
    say: Progress,
) -> None:
    say("deciding on candidate pairs")
    banned = _cannot_link(session)
    links: list[Link] = []
    grey: list[tuple[int, int, float, float, str]] = []
    for pair in engine.candidate_pairs(pairs, "records", lower=lower):
        report.candidate_pairs += 1
        if (pair.a, pair.b) in banned or profiles.customer(pair.a) == profiles.customer(pair.b):
            continue
        verdict = decisions.decide(
            profiles[pair.a], profiles[pair.b], pair.probability, upper=upper, lower=lower
        )
        if verdict.kind == "link":
            links.append(Link(pair.a, pair.b, pair.probability, verdict.rule, verdict.reason))
        elif verdict.kind == "review":
            grey.append((pair.a, pair.b, pair.probability, pair.weight, verdict.reason))
    weight_of = {(a, b): w for a, b, _, w, _ in grey}
    # Records of the customers these links touch, grouped as they stand.
    touched = {r for link in links for r in (link.a, link.b)}
    customers = {profiles.customer(r) for r in touched}
    members: dict[int, list[int]] = {}
    for rid, row in profiles.rows.items():
        if row[1] in customers:
            members.setdefault(int(row[1]), []).append(rid)
    nodes = [r for group in members.values() for r in group]
    component_of = _components(nodes, links, members.values())
    low = engine.low_pairs_within(pairs, component_of, below=decisions.DIFFERENT_BELOW)

    def conflict_of(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
        verdict = features.conflict(a, b)
        if verdict.conflict:
            return verdict.reason
        x, y = a["unique_id"], b["unique_id"]
        if ((x, y) if x < y else (y, x)) in low:
            return "the model scores two of these records as different persons"
        return None

    say(f"clustering {len(links):,} links")
    result = cluster(
        nodes,
        links,
        profiles,
        preset=[g for g in members.values() if len(g) > 1],
        cannot_link=banned,
        conflict_of=conflict_of,
    )
    report.links = len(result.accepted)
    report.refused = len(result.refused)
    plans = _plans(result.groups, result.accepted, profiles)
    # The profiles and the model's database are not needed any more: free them before the
    # merges, whose golden-record pool forks this process.
    profiles.release()
    engine.close()
    if plans:
        merge(session, plans, run_id=run.id, actor=ACTOR, progress=say)
    report.merges = sum(len(p.absorbed) for p in plans)
    group_of = {r: i for i, g in enumerate(result.groups) for r in g}
    for refusal in result.refused:
        link = refusal.link
        grey.append((link.a, link.b, link.score, weight_of.get(link.pair, 0.0), refusal.reason))
    say("queueing pairs for review")
    report.reviews = _queue_reviews(session, grey, group_of, run.id)


def _components(nodes: Sequence[int], links: Sequence[Link], groups: Any) -> dict[int, int]:
    """Record -> component over links and existing customers, for components of 3 records or
    more (where chaining can happen)."""
    parent = {n: n for n in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        for other in group[1:]:
            parent[find(other)] = find(group[0])
    for link in links:
        parent[find(link.a)] = find(link.b)
    roots = {n: find(n) for n in nodes}
    sizes: dict[int, int] = {}
    for root in roots.values():
        sizes[root] = sizes.get(root, 0) + 1
    return {n: root for n, root in roots.items() if sizes[root] >= 3}


def _plans(groups: list[list[int]], accepted: list[Link], profiles: _Profiles) -> list[MergePlan]:
    """One plan per group spanning several customers: the oldest customer survives."""
    best: dict[tuple[int, int], Link] = {}
    for link in accepted:
        ca, cb = profiles.customer(link.a), profiles.customer(link.b)
        if ca == cb:
            continue
        for key in ((ca, cb), (cb, ca)):
            if key not in best or link.score > best[key].score:
                best[key] = link
    plans: list[MergePlan] = []
    for group in groups:
        customers = sorted({profiles.customer(r) for r in group})
        if len(customers) < 2:
            continue
        survivor, absorbed = customers[0], customers[1:]
        evidence: dict[int, dict[str, Any]] = {}
        for cid in absorbed:
            via = next((best[(cid, other)] for other in customers if (cid, other) in best), None)
            if via is not None:
                evidence[cid] = {
                    "rule": via.rule,
                    "score": round(via.score, 6),
                    "reason": via.reason,
                    "records": [via.a, via.b],
                }
        first = evidence.get(absorbed[0], {})
        plans.append(
            MergePlan(
                survivor=survivor,
                absorbed=absorbed,
                rule=first.get("rule", "probabilistic"),
                score=first.get("score"),
                reason=first.get("reason", "linked through other records of the group"),
                evidence=evidence,
            )
        )
    return plans


def _queue_reviews(
    session: Session,
    grey: list[tuple[int, int, float, float, str]],
    group_of: Mapping[int, int],
    run_id: int,
) -> int:
    """Add grey-zone and held-back pairs to the review queue, once per pair ever."""
    wanted: dict[tuple[int, int], tuple[float, float, str]] = {}
    for a, b, p, w, reason in grey:
        if a in group_of and b in group_of and group_of[a] == group_of[b]:
            continue  # joined anyway through stronger links
        if (a, b) not in wanted or p > wanted[(a, b)][0]:
            wanted[(a, b)] = (p, w, reason)
    if not wanted:
        return 0
    dialect = Dialect.of(session)
    known: set[tuple[int, int]] = set()
    lefts = sorted({a for a, _ in wanted})
    for part in chunked(lefts, dialect.max_params - 10):
        known.update(
            (a, b)
            for a, b in session.execute(
                select(MatchReview.record_a_id, MatchReview.record_b_id).where(
                    dialect.one_of(MatchReview.record_a_id, part)
                )
            )
        )
    now = utcnow()
    rows = [
        {
            "record_a_id": a,
            "record_b_id": b,
            "score": p,
            "match_weight": w,
            "reason": reason,
            "evidence": {},
            "status": "pending",
            "run_id": run_id,
            "created_at": now,
        }
        for (a, b), (p, w, reason) in sorted(wanted.items())
        if (a, b) not in known
    ]
    for part in chunked(rows, 5_000):
        session.execute(insert(MatchReview), list(part))
    return len(rows)


class _Timer:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self.last, 2)
        self.last = now


# --- records, reviews, unmerges, explanations ----------------------------------------------
class IdentityError(Exception):
    """A request identity resolution cannot serve; the message says why and what to do."""


def record_id(session: Session, ref: str) -> int:
    """A customer source record named by its id (``1234``) or ``source:key``."""
    from tournesol.ingest.models import Source

    text = ref.strip()
    if text.isdigit():
        found = session.get(SourceRecord, int(text))
        if found is None or found.entity != "customer":
            raise IdentityError(f"there is no customer record {text}")
        return found.id
    source, sep, key = text.partition(":")
    if not sep:
        raise IdentityError(
            f"{ref!r} is neither a record id nor source:key (e.g. loyalty:2990105257431)"
        )
    rid = session.scalar(
        select(SourceRecord.id)
        .join(Source, Source.id == SourceRecord.source_id)
        .where(
            Source.name == source, SourceRecord.source_key == key, SourceRecord.entity == "customer"
        )
    )
    if rid is None:
        raise IdentityError(f"source {source!r} has no customer record with key {key!r}")
    return int(rid)


def profile_of(session: Session, rid: int) -> dict[str, Any]:
    """A record's profile with its customer and source, for display and scoring."""
    from tournesol.ingest.models import Source

    row = session.execute(
        select(MatchProfile, SourceRecord.customer_id, SourceRecord.source_key, Source.name)
        .join(SourceRecord, SourceRecord.id == MatchProfile.record_id)
        .join(Source, Source.id == SourceRecord.source_id)
        .where(MatchProfile.record_id == rid)
    ).first()
    if row is None:
        raise IdentityError(
            f"record {rid} has no match profile yet: run `tournesol identity resolve` first"
        )
    prof, customer_id, key, source = row
    out: dict[str, Any] = {"unique_id": rid, "customer_id": customer_id}
    out.update({c: getattr(prof, c) for c in features.PROFILE_COLUMNS})
    out["source"] = source
    out["source_key"] = key
    return out


@dataclass
class Explanation:
    left: dict[str, Any]
    right: dict[str, Any]
    probability: float | None
    match_weight: float | None
    comparisons: list[tuple[str, str, float]]  # (comparison, level, match weight)
    deterministic: str | None
    conflict: str | None
    decision: decisions.Decision | None
    model_version: int | None


def explain(session: Session, a: str, b: str) -> Explanation:
    """Why two records are, or are not, one person: the model's weight per comparison, the
    deterministic rule, the conflict guard, and the decision they lead to."""
    left = profile_of(session, record_id(session, a))
    right = profile_of(session, record_id(session, b))
    model = latest_model(session)
    determ = features.deterministic(left, right)
    verdict = features.conflict(left, right)
    out = Explanation(
        left,
        right,
        None,
        None,
        [],
        determ,
        verdict.reason if verdict.conflict else None,
        None,
        None,
    )
    if model is None:
        return out
    out.model_version = model.version
    tf = _term_frequencies(session, left, right)
    engine = Engine()
    try:
        scored = engine.explain(
            model.settings, {**_splink_record(left), **tf[0]}, {**_splink_record(right), **tf[1]}
        )
    finally:
        engine.close()
    out.probability = float(scored["match_probability"])
    out.match_weight = float(scored["match_weight"])
    for comparison in model.settings["comparisons"]:
        name = comparison["output_column_name"]
        gamma = scored.get(f"gamma_{name}")
        level = _level(comparison["comparison_levels"], gamma)
        weight = scored.get(f"mw_{name}") or 0.0
        tf_adj = scored.get(f"mw_tf_adj_{name}") or 0.0
        out.comparisons.append(
            (name, str(level.get("label_for_charts", gamma)), float(weight) + float(tf_adj))
        )
    out.decision = decisions.decide(left, right, out.probability)
    return out


def _level(levels: list[dict[str, Any]], gamma: Any) -> dict[str, Any]:
    """The comparison level a comparison vector value stands for: -1 is the null level, the
    others count down from the first non-null level to 0 (the else level)."""
    real = [lv for lv in levels if not lv.get("is_null_level")]
    if gamma is None or int(gamma) < 0:
        return next((lv for lv in levels if lv.get("is_null_level")), {"label_for_charts": "null"})
    index = len(real) - 1 - int(gamma)
    return real[index] if 0 <= index < len(real) else {}


def _splink_record(prof: Mapping[str, Any]) -> dict[str, Any]:
    return {c: prof.get(c) for c in RECORD_COLUMNS}


def _term_frequencies(
    session: Session, *records: Mapping[str, Any]
) -> list[dict[str, float | None]]:
    """How common each record's first name, last name and e-mail are in the base."""
    from tournesol.identity.engine import TF_COLUMNS

    total = session.scalar(select(func.count()).select_from(MatchProfile)) or 1
    out: list[dict[str, float | None]] = []
    for rec in records:
        tfs: dict[str, float | None] = {}
        for column in TF_COLUMNS:
            value = rec.get(column)
            if value is None:
                tfs[f"tf_{column}"] = None
                continue
            n = session.scalar(
                select(func.count())
                .select_from(MatchProfile)
                .where(getattr(MatchProfile, column) == value)
            )
            tfs[f"tf_{column}"] = max(int(n or 0), 1) / total
        out.append(tfs)
    return out


@dataclass
class ReviewItem:
    review: MatchReview
    left: dict[str, Any]
    right: dict[str, Any]


def review_queue(session: Session, *, limit: int = 20, status: str = "pending") -> list[ReviewItem]:
    """Pairs waiting for a decision, the most likely matches first."""
    reviews = session.scalars(
        select(MatchReview)
        .where(MatchReview.status == status)
        .order_by(MatchReview.score.desc(), MatchReview.id)
        .limit(limit)
    ).all()
    return [
        ReviewItem(r, profile_of(session, r.record_a_id), profile_of(session, r.record_b_id))
        for r in reviews
    ]


def count_reviews(session: Session, *, status: str = "pending") -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(MatchReview).where(MatchReview.status == status)
        )
        or 0
    )


def decide_review(
    session: Session, review_id: int, *, accept: bool, actor: str, note: str | None = None
) -> str:
    """Accept (merge the two records' customers now) or reject (they are two persons, for
    good) a pair of the queue; returns what was done."""
    review = session.get(MatchReview, review_id)
    if review is None:
        raise IdentityError(
            f"there is no review {review_id}: `tournesol identity review` lists them"
        )
    if review.status != "pending":
        raise IdentityError(f"review {review_id} was already decided ({review.status})")
    a = session.get(SourceRecord, review.record_a_id)
    b = session.get(SourceRecord, review.record_b_id)
    assert a is not None and b is not None and a.customer_id and b.customer_id
    review.decided_at = utcnow()
    review.decided_by = actor
    review.note = note
    if not accept:
        review.status = "rejected"
        if a.customer_id == b.customer_id:
            return (
                f"rejected; records {a.id} and {b.id} are already one customer "
                f"({a.customer_id}) through other links: `tournesol identity history "
                f"{a.customer_id}` shows the merges to undo"
            )
        return f"rejected: records {a.id} and {b.id} will never be merged"
    review.status = "accepted"
    if a.customer_id == b.customer_id:
        return f"accepted; records {a.id} and {b.id} were already one customer ({a.customer_id})"
    run = IdentityRun(mode="review", started_at=utcnow(), stats={"review_id": review_id})
    session.add(run)
    session.flush()
    survivor, absorbed = sorted((a.customer_id, b.customer_id))
    plan = MergePlan(
        survivor=survivor,
        absorbed=[absorbed],
        rule="review",
        score=review.score,
        reason=f"accepted by {actor} (review {review_id})" + (f": {note}" if note else ""),
        evidence={
            absorbed: {
                "rule": "review",
                "score": review.score,
                "records": [a.id, b.id],
                "reason": f"review {review_id} accepted by {actor}",
            }
        },
    )
    merge(session, [plan], run_id=run.id, actor=actor)
    run.merges = 1
    run.finished_at = utcnow()
    return f"accepted: customer {absorbed} merged into customer {survivor}"


def unmerge_event(session: Session, event_id: int, *, actor: str, reason: str | None) -> str:
    from tournesol.identity.merges import MergeError, unmerge

    try:
        event = unmerge(session, event_id, actor=actor, reason=reason)
    except MergeError as exc:
        raise IdentityError(str(exc)) from exc
    return (
        f"merge {event_id} undone: customer {event.absorbed_id} is separate from customer "
        f"{event.survivor_id} again, and they will not be merged again automatically"
    )


def history(session: Session, customer_id: int) -> list[Any]:
    """The merge events of a customer (as survivor or absorbed), oldest first."""
    from tournesol.identity.merges import active_events_of

    if session.get(Customer, customer_id) is None:
        raise IdentityError(f"there is no customer {customer_id}")
    return active_events_of(session, customer_id)
