"""Predictive scores: ``purchase_90d`` (buys in the next 90 days) and ``churn`` (an active buyer
who stops buying for the next 180 days), trained with scikit-learn on features computed in SQL
as of a cut-off date, validated on a later cut-off (time-based holdout), stored in score_model
with their metrics, and applied to every customer as of now (customer_score).

Definitions (docs/scoring.md):

- *purchase*: a transaction whose kind is not ``return``;
- ``purchase_90d``: population = the customers known at the cut-off (a purchase, an interaction
  or a consent on or before it); label 1 when the customer makes a purchase in the 90 days
  after the cut-off;
- ``churn``: population = the active buyers at the cut-off (a purchase in the 365 days up to
  it); label 1 when the customer makes no purchase in the 180 days after the cut-off.

Time-based split: with T the latest purchase in the base and h the horizon, the model is fitted
on the features as of ``T - 2h`` with labels from ``(T - 2h, T - h]``, and validated on the
features as of ``T - h`` with labels from ``(T - h, T]``: every feature is computed from history
up to its cut-off only, every label from after it. The stored model is the fitted one, so the
metrics reported are those of the artifact that ``scores apply`` runs.

scikit-learn is imported inside the functions that use it (``tournesol --help`` stays fast).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Float, Integer, Table, and_, case, delete, func, literal, select, update
from sqlalchemy.orm import Session

from tournesol.consent.models import Consent
from tournesol.customers.models import Customer
from tournesol.db import Dialect, UtcDateTime, utcnow
from tournesol.interactions.models import Interaction, Transaction
from tournesol.scoring.features import refresh_statistics
from tournesol.scoring.models import CustomerScore, ScoreModel
from tournesol.scoring.service import ScoringError, active_model, epoch_seconds

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

DAY = 86_400.0
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    horizon_days: int
    population: str  # "known" (any history) or "active_buyers" (a purchase in 365 days)
    description: str

    def label(self, future_purchases: FloatArray) -> FloatArray:
        """1 when the event the model predicts happens in the horizon."""
        bought = (future_purchases > 0).astype(float)
        return 1.0 - bought if self.name == "churn" else bought

    def baseline(self, recency_days: FloatArray) -> FloatArray:
        """The recency-only score the model must beat: the more recent the last purchase, the
        likelier a purchase and the less likely churn."""
        return recency_days if self.name == "churn" else -recency_days


MODELS: dict[str, ModelSpec] = {
    "purchase_90d": ModelSpec("purchase_90d", 90, "known", "makes a purchase in the next 90 days"),
    "churn": ModelSpec(
        "churn",
        180,
        "active_buyers",
        "an active buyer (a purchase in the last 365 days) who makes no purchase in the "
        "next 180 days",
    ),
}

# Features, in the order of the model's input; docs/scoring.md describes each.
FEATURES: tuple[str, ...] = (
    "recency_days",
    "tenure_days",
    "frequency",
    "monetary",
    "average_basket",
    "purchases_30",
    "purchases_90",
    "purchases_180",
    "purchases_365",
    "purchases_prev_365",
    "amount_90",
    "amount_365",
    "amount_prev_365",
    "web_share_365",
    "returns_365",
    "interactions_90",
    "interactions_365",
    "inbound_365",
    "outbound_365",
    "web_events_90",
    "days_since_interaction",
    "email_optin",
    "sms_optin",
    "has_email",
    "has_mobile",
    "has_postal_address",
    "age",
    "female",
)
NO_PURCHASE_DAYS = 3650.0  # recency of a customer who never bought, for the baseline only
ALGORITHM = "LogisticRegression (log scale, standardised, L2 C=0.3)"


@dataclass
class Dataset:
    """Features (one row per customer) as of a cut-off, and the labels when asked for."""

    as_of: datetime
    customer_ids: Any  # numpy int64 array
    X: Any  # numpy float array, columns in FEATURES order (NaN = unknown)
    known: Any  # numpy bool array: a purchase, an interaction or a consent by the cut-off
    future_purchases: Any | None = None  # purchases after the cut-off, when labelled


@dataclass
class TrainReport:
    """What ``scores train`` measured for one model."""

    name: str
    version: str
    algorithm: str
    metrics: dict[str, Any] = field(default_factory=dict)


def _at(value: datetime) -> Any:
    return literal(value, UtcDateTime())


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _amount(condition: Any) -> Any:
    value = func.coalesce(Transaction.total_amount, 0)
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0).cast(Float)


def _history_query(as_of: datetime, label_end: datetime | None) -> Any:
    """One row per active customer: the aggregates of its history up to ``as_of`` (and its
    purchases in ``(as_of, label_end]`` when ``label_end`` is given). Every window bound is a
    bound parameter; dates come back as epoch seconds."""
    t = Transaction
    purchase = t.kind != "return"
    start = {d: _at(as_of - timedelta(days=d)) for d in (30, 90, 180, 365, 730)}
    past = (
        select(
            t.customer_id.label("customer_id"),
            _count(purchase).label("frequency"),
            _amount(purchase).label("monetary"),
            func.min(case((purchase, epoch_seconds(t.occurred_at)))).label("first_purchase"),
            func.max(case((purchase, epoch_seconds(t.occurred_at)))).label("last_purchase"),
            *(
                _count(and_(purchase, t.occurred_at > start[d])).label(f"purchases_{d}")
                for d in (30, 90, 180, 365)
            ),
            _count(and_(purchase, t.occurred_at > start[730], t.occurred_at <= start[365])).label(
                "purchases_prev_365"
            ),
            _amount(and_(purchase, t.occurred_at > start[90])).label("amount_90"),
            _amount(and_(purchase, t.occurred_at > start[365])).label("amount_365"),
            _amount(and_(purchase, t.occurred_at > start[730], t.occurred_at <= start[365])).label(
                "amount_prev_365"
            ),
            _count(and_(purchase, t.occurred_at > start[365], t.channel == "web")).label("web_365"),
            _count(and_(t.kind == "return", t.occurred_at > start[365])).label("returns_365"),
        )
        .where(t.customer_id.is_not(None), t.occurred_at <= _at(as_of))
        .group_by(t.customer_id)
        .subquery("past")
    )
    i = Interaction
    contacts = (
        select(
            i.customer_id.label("customer_id"),
            func.count().label("interactions"),
            _count(i.occurred_at > start[90]).label("interactions_90"),
            _count(i.occurred_at > start[365]).label("interactions_365"),
            _count(and_(i.direction == "inbound", i.occurred_at > start[365])).label("inbound_365"),
            _count(and_(i.direction == "outbound", i.occurred_at > start[365])).label(
                "outbound_365"
            ),
            _count(and_(i.channel == "web", i.occurred_at > start[90])).label("web_events_90"),
            func.max(epoch_seconds(i.occurred_at)).label("last_interaction"),
        )
        .where(i.customer_id.is_not(None), i.occurred_at <= _at(as_of))
        .group_by(i.customer_id)
        .subquery("contacts")
    )
    c = Consent
    granted = c.status == "granted"

    def latest(channel: str, when: Any) -> Any:
        return func.max(case((and_(c.channel == channel, when), c.collected_at)))

    consents = (
        select(
            c.customer_id.label("customer_id"),
            func.count().label("consents"),
            latest("email", granted).label("email_granted"),
            latest("email", ~granted).label("email_refused"),
            latest("sms", granted).label("sms_granted"),
            latest("sms", ~granted).label("sms_refused"),
        )
        .where(c.purpose == "marketing", c.collected_at <= _at(as_of))
        .group_by(c.customer_id)
        .subquery("consents")
    )

    def optin(channel: str) -> Any:
        yes, no = consents.c[f"{channel}_granted"], consents.c[f"{channel}_refused"]
        return case((and_(yes.is_not(None), (no.is_(None)) | (yes > no)), 1), else_=0)

    def zero(column: Any) -> Any:
        return func.coalesce(column, 0)

    columns: list[Any] = [
        Customer.id,
        zero(past.c.frequency),
        zero(past.c.monetary),
        past.c.first_purchase,
        past.c.last_purchase,
        *(zero(past.c[f"purchases_{d}"]) for d in (30, 90, 180, 365)),
        zero(past.c.purchases_prev_365),
        zero(past.c.amount_90),
        zero(past.c.amount_365),
        zero(past.c.amount_prev_365),
        zero(past.c.web_365),
        zero(past.c.returns_365),
        zero(contacts.c.interactions),
        zero(contacts.c.interactions_90),
        zero(contacts.c.interactions_365),
        zero(contacts.c.inbound_365),
        zero(contacts.c.outbound_365),
        zero(contacts.c.web_events_90),
        contacts.c.last_interaction,
        zero(consents.c.consents),
        optin("email"),
        optin("sms"),
        case((Customer.email.is_not(None), 1), else_=0),
        case((Customer.phone_mobile.is_not(None), 1), else_=0),
        case((Customer.address_line6.is_not(None), 1), else_=0),
        Customer.birth_date,
        case((Customer.gender == "F", 1), else_=0),
    ]
    query = (
        select(*columns)
        .select_from(Customer)
        .outerjoin(past, past.c.customer_id == Customer.id)
        .outerjoin(contacts, contacts.c.customer_id == Customer.id)
        .outerjoin(consents, consents.c.customer_id == Customer.id)
        .where(Customer.status == "active")
        .order_by(Customer.id)
    )
    if label_end is not None:
        future = (
            select(t.customer_id.label("customer_id"), func.count().label("n"))
            .where(
                t.customer_id.is_not(None),
                purchase,
                t.occurred_at > _at(as_of),
                t.occurred_at <= _at(label_end),
            )
            .group_by(t.customer_id)
            .subquery("future")
        )
        query = query.outerjoin(future, future.c.customer_id == Customer.id).add_columns(
            zero(future.c.n).cast(Integer)
        )
    return query


def _age(birth: date | None, as_of: date) -> float:
    if birth is None:
        return float("nan")
    years = as_of.year - birth.year - ((as_of.month, as_of.day) < (birth.month, birth.day))
    return float(years) if 0 <= years < 120 else float("nan")


def history_features(
    session: Session, *, as_of: datetime, label_end: datetime | None = None
) -> Dataset:
    """The features of every active customer as of ``as_of`` (and, with ``label_end``, its
    purchases in ``(as_of, label_end]``)."""
    import numpy as np

    refresh_statistics(session)
    rows = session.execute(_history_query(as_of, label_end)).all()
    n = len(rows)
    raw = np.array(
        [[float("nan") if v is None else float(v) for v in row[1:25]] for row in rows],
        dtype=np.float64,
    ).reshape(n, 24)
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    (
        frequency, monetary, first, last, p30, p90, p180, p365, prev365, a90, a365, aprev,
        web365, returns365, interactions, i90, i365, in365, out365, web90, last_contact,
        consents, email_optin, sms_optin,
    ) = raw.T  # fmt: skip
    now_s = as_of.timestamp()
    with np.errstate(invalid="ignore", divide="ignore"):
        X = np.column_stack(
            [
                (now_s - last) / DAY,
                (now_s - first) / DAY,
                frequency,
                monetary,
                np.where(frequency > 0, monetary / np.maximum(frequency, 1), np.nan),
                p30,
                p90,
                p180,
                p365,
                prev365,
                a90,
                a365,
                aprev,
                np.where(p365 > 0, web365 / np.maximum(p365, 1), np.nan),
                returns365,
                i90,
                i365,
                in365,
                out365,
                web90,
                (now_s - last_contact) / DAY,
                email_optin,
                sms_optin,
                np.array([float(row[25]) for row in rows]),
                np.array([float(row[26]) for row in rows]),
                np.array([float(row[27]) for row in rows]),
                np.array([_age(row[28], as_of.date()) for row in rows]),
                np.array([float(row[29]) for row in rows]),
            ]
        ).reshape(n, len(FEATURES))
    known = (frequency > 0) | (interactions > 0) | (consents > 0)
    future = np.array([row[30] for row in rows], dtype=np.float64) if label_end else None
    return Dataset(as_of, ids, X, known, future)


def population(spec: ModelSpec, data: Dataset, *, training: bool) -> Any:
    """Which rows of ``data`` the model is for: churn, the active buyers; purchase_90d, the
    customers known at the cut-off when training, everybody when applying."""
    import numpy as np

    if spec.population == "active_buyers":
        return data.X[:, FEATURES.index("purchases_365")] > 0
    if training:
        return data.known
    return np.ones(len(data.customer_ids), dtype=bool)


def latest_purchase(session: Session) -> datetime | None:
    """T: the date-time of the latest purchase in the base."""
    t = Transaction
    return session.scalar(
        select(func.max(t.occurred_at)).where(t.kind != "return", t.customer_id.is_not(None))
    )


def signed_log1p(X: FloatArray) -> FloatArray:
    """``sign(x) * log(1 + |x|)``: counts, amounts and days on a log scale, so that ratios
    (purchases per day of tenure, amount per purchase) become sums a linear model can weigh."""
    import numpy as np

    return cast("FloatArray", np.sign(X) * np.log1p(np.abs(X)))


def make_estimator() -> Any:
    """Logistic regression on the features put on a log scale and standardised; missing values
    (no purchase yet, no contact, no birth date) replaced by the median with a 0/1 indicator
    beside. It beat gradient-boosted trees (HistGradientBoostingClassifier) on the demo's
    holdout for both models, and a few thousand customers are enough to fit it."""
    from sklearn.impute import SimpleImputer  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import (  # type: ignore[import-untyped]
        FunctionTransformer,
        StandardScaler,
    )

    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        FunctionTransformer(signed_log1p),
        StandardScaler(),
        LogisticRegression(C=0.3, max_iter=5000),
    )


def calibration(y: FloatArray, p: FloatArray, bins: int = 10) -> list[dict[str, Any]]:
    """Predicted against observed rates, in ``bins`` equal-width bins of predicted
    probability (empty bins left out)."""
    import numpy as np

    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "customers": int(mask.sum()),
                    "predicted": round(float(p[mask].mean()), 4),
                    "observed": round(float(y[mask].mean()), 4),
                }
            )
    return out


def _next_version(session: Session, name: str) -> str:
    versions = session.scalars(select(ScoreModel.version).where(ScoreModel.name == name))
    numbers = [int(v[1:]) for v in versions if v.startswith("v") and v[1:].isdigit()]
    return f"v{max(numbers, default=0) + 1}"


def _split(name: str, data: Dataset, spec: ModelSpec) -> tuple[Any, Any, Any]:
    import numpy as np

    rows = population(spec, data, training=True)
    X = data.X[rows]
    assert data.future_purchases is not None
    y = spec.label(data.future_purchases[rows])
    if len(y) < 50 or y.min() == y.max():
        raise ScoringError(
            f"{name}: {len(y)} customers at the cut-off {data.as_of:%Y-%m-%d}"
            f"{'' if len(y) < 50 else ', all with the same outcome'}: too little history to "
            f"train on (import more transactions: at least {2 * spec.horizon_days} days)"
        )
    recency = np.nan_to_num(X[:, 0], nan=NO_PURCHASE_DAYS)
    return X, y, recency


def train(
    session: Session,
    *,
    name: str,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> TrainReport:
    """Fit model ``name`` on the cut-off ``T - 2h``, validate it on ``T - h``, store it in
    score_model as the active version of that name (previous versions deactivated) and return
    its metrics: AUC of the model and of the recency-only baseline on the holdout, Brier
    score, calibration bins, row counts, dates.

    >>> train(session, name="churn").metrics["auc"]  # doctest: +SKIP
    0.83
    """
    import joblib  # type: ignore[import-untyped]
    import numpy as np
    import sklearn  # type: ignore[import-untyped]
    from sklearn.metrics import brier_score_loss, roc_auc_score  # type: ignore[import-untyped]

    say = progress or (lambda _msg: None)
    spec = MODELS.get(name)
    if spec is None:
        raise ScoringError(f"no model {name!r} (models: {', '.join(MODELS)})")
    last = latest_purchase(session)
    if last is None:
        raise ScoringError("no transactions: import some first")
    h = timedelta(days=spec.horizon_days)
    train_cut, valid_cut = last - 2 * h, last - h
    say(f"{name}: features as of {train_cut:%Y-%m-%d} (training)")
    fit_data = history_features(session, as_of=train_cut, label_end=valid_cut)
    X_fit, y_fit, _ = _split(name, fit_data, spec)
    say(f"{name}: features as of {valid_cut:%Y-%m-%d} (holdout)")
    holdout = history_features(session, as_of=valid_cut, label_end=last)
    X_val, y_val, recency_val = _split(name, holdout, spec)
    say(f"{name}: fitting on {len(y_fit):,} customers")
    estimator = make_estimator().fit(X_fit, y_fit)
    p_val = estimator.predict_proba(X_val)[:, 1]
    metrics: dict[str, Any] = {
        "definition": spec.description,
        "horizon_days": spec.horizon_days,
        "latest_purchase": last.isoformat(),
        "train_cutoff": train_cut.isoformat(),
        "train_labels_until": valid_cut.isoformat(),
        "validation_cutoff": valid_cut.isoformat(),
        "validation_labels_until": last.isoformat(),
        "train_rows": len(y_fit),
        "train_positive_rate": round(float(y_fit.mean()), 4),
        "validation_rows": len(y_val),
        "validation_positive_rate": round(float(y_val.mean()), 4),
        "auc": round(float(roc_auc_score(y_val, p_val)), 4),
        "baseline": "recency only: "
        + ("days since" if name == "churn" else "minus days since")
        + " the last purchase",
        "baseline_auc": round(float(roc_auc_score(y_val, spec.baseline(recency_val))), 4),
        "brier": round(float(brier_score_loss(y_val, p_val)), 4),
        "brier_base_rate": round(float(np.mean((y_val - y_val.mean()) ** 2)), 4),
        "calibration": calibration(y_val, p_val),
        "sklearn": sklearn.__version__,
    }
    buffer = io.BytesIO()
    joblib.dump({"estimator": estimator, "features": list(FEATURES), "name": name}, buffer)
    session.execute(
        update(ScoreModel)
        .where(ScoreModel.name == name, ScoreModel.active.is_(True))
        .values(active=False)
    )
    version = _next_version(session, name)
    session.add(
        ScoreModel(
            name=name,
            version=version,
            trained_at=now or utcnow(),
            algorithm=ALGORITHM,
            features=list(FEATURES),
            metrics=metrics,
            artifact=buffer.getvalue(),
            active=True,
        )
    )
    session.flush()
    return TrainReport(name, version, ALGORITHM, metrics)


def load_estimator(model: ScoreModel) -> Any:
    """The fitted estimator stored with ``model`` (a joblib file written by :func:`train`:
    load artifacts from your own database only)."""
    import joblib

    payload = joblib.load(io.BytesIO(model.artifact))
    if list(payload.get("features", [])) != list(FEATURES):
        raise ScoringError(
            f"model {model.name} {model.version} was trained on other features: "
            f"run `tournesol scores train --model {model.name}` again"
        )
    return payload["estimator"]


@dataclass(frozen=True)
class ApplyReport:
    name: str
    version: str
    scored: int
    mean_score: float


def apply(
    session: Session,
    *,
    now: datetime,
    names: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> list[ApplyReport]:
    """Score the active customers with the active model of each name, features as of
    ``now``; replaces that model's rows in customer_score. ``purchase_90d`` scores every
    active customer, ``churn`` the active buyers only (the others are outside its
    definition and get no churn score)."""
    import numpy as np

    say = progress or (lambda _msg: None)
    wanted = list(names or MODELS)
    models = [(n, active_model(session, n)) for n in wanted]
    missing = [n for n, m in models if m is None]
    if len(missing) == len(models):
        raise ScoringError(f"no trained model ({', '.join(missing)}): run tournesol scores train")
    say(f"features as of {now:%Y-%m-%d %H:%M}")
    data = history_features(session, as_of=now)
    table = cast(Table, CustomerScore.__table__)
    dialect = Dialect.of(session)
    conn = session.connection()
    reports = []
    for name, model in models:
        if model is None:
            continue
        spec = MODELS[name]
        say(f"{name} {model.version}: scoring")
        rows = population(spec, data, training=False)
        values = (
            load_estimator(model).predict_proba(data.X[rows])[:, 1] if rows.any() else np.zeros(0)
        )
        session.execute(delete(table).where(table.c.model == name))
        ids = data.customer_ids[rows]
        dialect.copy_rows(
            conn,
            table,
            ("customer_id", "model", "version", "value", "computed_at"),
            [
                (int(cid), name, model.version, float(v), now)
                for cid, v in zip(ids, values, strict=True)
            ],
        )
        mean = float(values.mean()) if len(values) else 0.0
        reports.append(ApplyReport(name, model.version, len(values), mean))
    return reports
