"""The statistics of incremental impact: treatment arm minus randomized control, with confidence.

Pure functions over plain data, no database. The SQL side sums each arm (and each cut) into an
:class:`ArmTotals`: customers assigned, customers converted, the sum and the sum of squares of
revenue per assigned customer and, for CUPED, the same for the pre-period value and the sum of
the products pre x post. Everything is intention-to-treat: every customer *assigned* to an arm
counts in it, whether or not a message reached them, and a customer who bought nothing counts
as a conversion of 0 and a revenue of 0.

Notation used in the docstrings, per arm: ``n`` customers assigned, ``x`` converted, ``S``
the revenue sum, ``Q`` the revenue sum of squares. From them the mean is ``S / n`` and the
sample variance ``(Q - S^2 / n) / (n - 1)``. Sums of squares lose precision when the mean is
large compared with the spread; revenue per assigned customer (mostly zeros) is far from that
case, but the SQL should sum in double precision or NUMERIC, never in single precision.

Every figure is "treatment minus control". Intervals are two-sided at ``level`` (0.95 by
default) and p-values are two-sided, for the hypothesis "no difference". Impossible input
(more converted than assigned, negative counts) raises ``ValueError``; input that is possible
but cannot support a figure (nobody assigned to an arm) raises :class:`NotEnoughData`, a
``ValueError`` too, so a report can print "not enough data" instead of a number. No result
ever holds NaN.

statsmodels and scipy take more than a second to import, so they are imported inside the
functions that use them; quantiles of the normal distribution come from the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_LEVEL = 0.95
BOOTSTRAP_MIN_CONVERTERS = 30
SRM_THRESHOLD = 0.001
# Cells of the resampling index matrix drawn at once by the bootstrap (80 MB of int64 at most).
_BOOTSTRAP_CHUNK_CELLS = 10_000_000
# Relative size under which a centred sum of squares is taken as rounding noise (sums of
# squares of constant values do not cancel exactly in floating point).
_ROUNDING = 1e-12


class NotEnoughData(ValueError):
    """Input is possible but cannot support the figure asked for (e.g. nobody assigned)."""


# --------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ArmTotals:
    """What SQL sums for one arm (and one cut): counts, sums and sums of squares.

    ``revenue_sum`` and ``revenue_sumsq`` run over every customer assigned (non-buyers add 0).
    ``pre_sum``, ``pre_sumsq`` and ``cross_sum`` (sum of pre x post revenue per customer) are
    the pre-period figures CUPED needs: give all three or none.

    >>> ArmTotals(assigned=4, converted=2, revenue_sum=30.0, revenue_sumsq=500.0).revenue_mean
    7.5
    """

    assigned: int
    converted: int
    revenue_sum: float
    revenue_sumsq: float
    pre_sum: float | None = None
    pre_sumsq: float | None = None
    cross_sum: float | None = None

    def __post_init__(self) -> None:
        if self.assigned < 0 or self.converted < 0:
            raise ValueError(
                f"counts cannot be negative (assigned={self.assigned}, converted={self.converted})"
            )
        if self.converted > self.assigned:
            raise ValueError(
                f"more customers converted ({self.converted}) than assigned ({self.assigned})"
            )
        pre = (self.pre_sum, self.pre_sumsq, self.cross_sum)
        if any(v is None for v in pre) and any(v is not None for v in pre):
            raise ValueError("give pre_sum, pre_sumsq and cross_sum together, or none of them")
        _check_sums("revenue", self.assigned, self.revenue_sum, self.revenue_sumsq)
        if self.pre_sum is not None and self.pre_sumsq is not None:
            _check_sums("pre-period", self.assigned, self.pre_sum, self.pre_sumsq)
            cross = self.cross_sum
            assert cross is not None
            if not math.isfinite(cross):
                raise ValueError("cross_sum must be a finite number")
            # Cauchy-Schwarz: (sum of x*y)^2 <= (sum of x^2)(sum of y^2).
            if cross * cross > self.pre_sumsq * self.revenue_sumsq * (1 + 1e-9) + 1e-12:
                raise ValueError("cross_sum is larger than the sums of squares allow")

    @property
    def has_pre_period(self) -> bool:
        return self.cross_sum is not None

    @property
    def conversion_rate(self) -> float:
        """Converted / assigned (0 when nobody is assigned)."""
        return self.converted / self.assigned if self.assigned else 0.0

    @property
    def revenue_mean(self) -> float:
        """Revenue per assigned customer (0 when nobody is assigned)."""
        return self.revenue_sum / self.assigned if self.assigned else 0.0


def _check_sums(name: str, n: int, total: float, sumsq: float) -> None:
    if not (math.isfinite(total) and math.isfinite(sumsq)):
        raise ValueError(f"{name} sums must be finite numbers")
    if sumsq < 0:
        raise ValueError(f"{name} sum of squares cannot be negative ({sumsq})")
    if n == 0 and (total != 0 or sumsq != 0):
        raise ValueError(f"{name} sums must be 0 when nobody is assigned")
    # Cauchy-Schwarz: S^2 <= n * Q, with room for rounding in the SQL sums.
    if total * total > n * sumsq * (1 + 1e-9) + 1e-12:
        raise ValueError(
            f"{name} sum of squares ({sumsq}) is too small for the sum ({total}) over {n} "
            "customers: were the columns swapped?"
        )


# -------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Difference:
    """Treatment minus control: estimate, interval (low, high) at ``level``, two-sided p-value."""

    estimate: float
    low: float
    high: float
    level: float
    p_value: float
    method: str

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)

    @property
    def shows_effect(self) -> bool:
        """True when the interval excludes zero: an effect is shown at this level."""
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class ConversionDifference(Difference):
    """Difference of conversion rates; ``relative_lift`` is None when the control rate is 0."""

    treatment_rate: float
    control_rate: float
    relative_lift: float | None
    n_treatment: int
    n_control: int


@dataclass(frozen=True)
class MeanDifference(Difference):
    """Difference of means per assigned customer, with the Welch standard error and df."""

    treatment_mean: float
    control_mean: float
    treatment_sd: float
    control_sd: float
    standard_error: float
    df: float
    n_treatment: int
    n_control: int


@dataclass(frozen=True)
class CupedDifference(MeanDifference):
    """A MeanDifference on CUPED-adjusted values (means and sds are the adjusted ones)."""

    theta: float
    variance_reduction: float
    unadjusted: MeanDifference


@dataclass(frozen=True)
class BootstrapDifference(Difference):
    """Difference of means with a percentile bootstrap interval."""

    treatment_mean: float
    control_mean: float
    n_treatment: int
    n_control: int
    resamples: int
    seed: int


@dataclass(frozen=True)
class ReturnOnSpend:
    """A return on a known cost, with the interval of the incremental amount carried through.

    No p-value: whether there is any effect at all is the p-value of the incremental amount.
    """

    estimate: float
    low: float
    high: float
    level: float
    cost: float
    method: str

    @property
    def interval(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class SampleRatioCheck:
    """Chi-square goodness of fit of the observed arm sizes to the planned shares."""

    observed: tuple[int, ...]
    expected: tuple[float, ...]
    statistic: float
    p_value: float
    threshold: float
    mismatch: bool


@dataclass(frozen=True)
class PowerCheck:
    """Minimum detectable effect, and whether the interval is too wide for ``effect``."""

    mde: float
    effect: float
    interval_width: float
    underpowered: bool


@dataclass(frozen=True)
class MultipleComparison:
    """Benjamini-Hochberg adjusted p-values and rejections, in the order of the input."""

    p_values: tuple[float, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]
    alpha: float


# ---------------------------------------------------------------------------- comparisons


def conversion_difference(
    treatment: ArmTotals, control: ArmTotals, level: float = DEFAULT_LEVEL
) -> ConversionDifference:
    """Difference of conversion rates, treatment minus control, over everyone assigned.

    Interval: Newcombe's hybrid score interval (statsmodels ``confint_proportions_2indep``,
    ``method="newcomb"``), built from the two Wilson intervals; it behaves at rates near 0
    and with small arms, where the textbook Wald interval does not.

    p-value: the pooled two-proportion z-test, ``z = d / sqrt(p * (1 - p) * (1/n_t + 1/n_c))``
    with ``p`` the rate of both arms together (the same as statsmodels'
    ``test_proportions_2indep(method="score", correction=False)``). When nobody or everybody
    converted in both arms the rates are equal and the p-value is 1.

    Relative lift: ``d / control rate``, a point figure only (None when the control rate is 0).

    >>> r = conversion_difference(ArmTotals(1000, 60, 0.0, 0.0), ArmTotals(1000, 50, 0.0, 0.0))
    >>> round(r.estimate, 3), round(r.relative_lift or 0, 2), r.shows_effect
    (0.01, 0.2, False)
    """
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
    )

    _check_level(level)
    _require_assigned(treatment, control, minimum=1, figure="a conversion rate")
    n_t, n_c = treatment.assigned, control.assigned
    p_t, p_c = treatment.conversion_rate, control.conversion_rate
    d = p_t - p_c
    # statsmodels also computes a ratio and an odds ratio, which divide by zero at rate 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = confint_proportions_2indep(
            treatment.converted,
            n_t,
            control.converted,
            n_c,
            method="newcomb",
            compare="diff",
            alpha=1 - level,
        )
    pooled = (treatment.converted + control.converted) / (n_t + n_c)
    variance = pooled * (1 - pooled) * (1 / n_t + 1 / n_c)
    p_value = _normal_p_value(d / math.sqrt(variance)) if variance > 0 else 1.0
    return ConversionDifference(
        estimate=d,
        # Wilson bounds can stray from the estimate by one rounding step at rates 0 and 1.
        low=min(float(low), d),
        high=max(float(high), d),
        level=level,
        p_value=p_value,
        method="newcombe hybrid score; pooled z-test",
        treatment_rate=p_t,
        control_rate=p_c,
        relative_lift=d / p_c if p_c > 0 else None,
        n_treatment=n_t,
        n_control=n_c,
    )


def revenue_difference(
    treatment: ArmTotals, control: ArmTotals, level: float = DEFAULT_LEVEL
) -> MeanDifference:
    """Difference of revenue per assigned customer with Welch's interval and t-test.

    From the sums: ``mean = S / n``, ``var = (Q - S^2 / n) / (n - 1)``,
    ``se = sqrt(var_t / n_t + var_c / n_c)``, Welch-Satterthwaite degrees of freedom
    ``df = se^4 / ((var_t/n_t)^2 / (n_t - 1) + (var_c/n_c)^2 / (n_c - 1))``,
    interval ``d -/+ t(df, (1 + level) / 2) * se`` and p-value ``2 * P(T_df > |d / se|)``:
    the same figures as ``scipy.stats.ttest_ind(equal_var=False)`` on the raw values.
    Needs two customers in each arm; when every value is the same in both arms (``se = 0``)
    the interval is the point ``(d, d)`` and the p-value is 1 if ``d = 0`` else 0.

    >>> r = revenue_difference(ArmTotals(4, 2, 30.0, 500.0), ArmTotals(4, 1, 10.0, 100.0))
    >>> r.estimate, round(r.standard_error, 4)
    (5.0, 5.4006)
    """
    _check_level(level)
    _require_assigned(treatment, control, minimum=2, figure="a variance")
    mean_t, var_t = _moments(treatment.assigned, treatment.revenue_sum, treatment.revenue_sumsq)
    mean_c, var_c = _moments(control.assigned, control.revenue_sum, control.revenue_sumsq)
    return _welch(mean_t, var_t, treatment.assigned, mean_c, var_c, control.assigned, level)


def needs_bootstrap(
    treatment: ArmTotals, control: ArmTotals, min_converters: int = BOOTSTRAP_MIN_CONVERTERS
) -> bool:
    """True when an arm has fewer than ``min_converters`` converters.

    Revenue per assigned customer is then a few purchases among many zeros, too skewed for
    Welch's normal approximation: use :func:`bootstrap_difference` on the raw values.

    >>> needs_bootstrap(ArmTotals(500, 12, 600.0, 40000.0), ArmTotals(500, 40, 2000.0, 1e5))
    True
    """
    return min(treatment.converted, control.converted) < min_converters


def bootstrap_difference(
    treatment_values: ArrayLike,
    control_values: ArrayLike,
    level: float = DEFAULT_LEVEL,
    resamples: int = 10_000,
    seed: int = 20240901,
) -> BootstrapDifference:
    """Percentile bootstrap of the difference of means, for small or very skewed samples.

    Takes the raw value of every customer assigned (0 for non-buyers). Each resample draws
    each arm with replacement at its own size (numpy ``default_rng(seed)``: the same input and
    seed always give the same result); the interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the resampled differences. The p-value is the smallest
    ``1 - level`` at which that interval would exclude 0: ``2 * min(share of resampled
    differences <= 0, share >= 0)``, capped at 1.

    >>> r = bootstrap_difference([0, 0, 10, 20], [0, 0, 0, 10], resamples=2000, seed=1)
    >>> r.estimate, r.low <= r.estimate <= r.high
    (5.0, True)
    """
    _check_level(level)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1 (got {resamples})")
    t = _values(treatment_values, "treatment")
    c = _values(control_values, "control")
    rng = np.random.default_rng(seed)
    diffs = _resampled_means(t, resamples, rng) - _resampled_means(c, resamples, rng)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    d = float(t.mean() - c.mean())
    p_value = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    return BootstrapDifference(
        estimate=d,
        low=float(low),
        high=float(high),
        level=level,
        p_value=p_value,
        method="percentile bootstrap",
        treatment_mean=float(t.mean()),
        control_mean=float(c.mean()),
        n_treatment=t.size,
        n_control=c.size,
        resamples=resamples,
        seed=seed,
    )


def cuped_difference(
    treatment: ArmTotals, control: ArmTotals, level: float = DEFAULT_LEVEL
) -> CupedDifference:
    """Revenue difference adjusted by CUPED with the pre-period revenue, Welch on the result.

    Each customer's revenue ``y`` is replaced by ``y' = y - theta * (x - mean_x)``, with ``x``
    their pre-period revenue and ``mean_x`` the pre-period mean over both arms. Randomization
    makes ``x`` independent of the arm, so ``y'`` has the same expected difference and a
    smaller variance when ``x`` predicts ``y``. All from the sums, per arm (``X``, ``XX``,
    ``XY`` the pre sum, pre sum of squares and cross sum):

    - centred sums ``Syy = Q - S^2/n``, ``Sxx = XX - X^2/n``, ``Sxy = XY - X*S/n``;
    - ``theta = (Sxy_t + Sxy_c) / (Sxx_t + Sxx_c)``: cov(pre, post) / var(pre) pooled within
      the arms (so the treatment effect on ``y`` does not leak into it); 0 when the
      pre-period has no variance, which leaves the plain Welch result;
    - adjusted mean ``S/n - theta * (X/n - mean_x)``;
    - adjusted variance ``(Syy - 2 * theta * Sxy + theta^2 * Sxx) / (n - 1)``;
    - then Welch, as :func:`revenue_difference`, on the adjusted means and variances.

    ``variance_reduction`` is ``1 - se_adjusted^2 / se_unadjusted^2``; ``unadjusted`` holds
    the plain Welch result for comparison.
    """
    _check_level(level)
    if not (treatment.has_pre_period and control.has_pre_period):
        raise ValueError("CUPED needs pre_sum, pre_sumsq and cross_sum in both arms")
    unadjusted = revenue_difference(treatment, control, level)
    arms = [_centred(arm) for arm in (treatment, control)]
    sxx = arms[0].sxx + arms[1].sxx
    theta = (arms[0].sxy + arms[1].sxy) / sxx if sxx > 0 else 0.0
    pre_total = (treatment.pre_sum or 0.0) + (control.pre_sum or 0.0)
    mean_x = pre_total / (treatment.assigned + control.assigned)
    means = [a.mean_y - theta * (a.mean_x - mean_x) for a in arms]
    variances = [
        _above_noise(
            a.syy - 2 * theta * a.sxy + theta * theta * a.sxx, a.syy + theta * theta * a.sxx
        )
        / (a.n - 1)
        for a in arms
    ]
    adjusted = _welch(means[0], variances[0], arms[0].n, means[1], variances[1], arms[1].n, level)
    se0 = unadjusted.standard_error
    reduction = 1 - (adjusted.standard_error / se0) ** 2 if se0 > 0 else 0.0
    return CupedDifference(
        estimate=adjusted.estimate,
        low=adjusted.low,
        high=adjusted.high,
        level=level,
        p_value=adjusted.p_value,
        method="cuped (pre-period revenue); welch",
        treatment_mean=adjusted.treatment_mean,
        control_mean=adjusted.control_mean,
        treatment_sd=adjusted.treatment_sd,
        control_sd=adjusted.control_sd,
        standard_error=adjusted.standard_error,
        df=adjusted.df,
        n_treatment=adjusted.n_treatment,
        n_control=adjusted.n_control,
        theta=theta,
        variance_reduction=reduction,
        unadjusted=unadjusted,
    )


# ------------------------------------------------------------------ totals and return on spend


def incremental_totals(result: Difference, treatment_assigned: int) -> Difference:
    """Incremental conversions or revenue: a per-customer difference x customers treated.

    ``estimate``, ``low`` and ``high`` are multiplied by ``treatment_assigned`` (a known count,
    so the interval keeps its level and the p-value does not change). Pass a conversion
    difference for incremental conversions, a revenue difference for incremental revenue.

    >>> d = Difference(0.01, 0.002, 0.018, 0.95, 0.01, "welch")
    >>> incremental_totals(d, 5000).interval
    (10.0, 90.0)
    """
    if treatment_assigned < 0:
        raise ValueError(f"treatment_assigned cannot be negative ({treatment_assigned})")
    n = treatment_assigned
    return Difference(
        estimate=result.estimate * n,
        low=result.low * n,
        high=result.high * n,
        level=result.level,
        p_value=result.p_value,
        method=f"{result.method}; x {n} assigned to treatment",
    )


def roi(incremental_margin: Difference, cost: float) -> ReturnOnSpend:
    """Return on investment: ``(incremental margin - cost) / cost``.

    ``cost`` is a known amount, so the function is increasing in the margin and the interval
    is the same transformation of the margin's bounds, at the same level:
    ``((low - cost) / cost, (high - cost) / cost)``. A ROI of 0 means the campaign paid for
    itself; -1 that it brought nothing.

    >>> m = Difference(3000.0, 1000.0, 5000.0, 0.95, 0.003, "welch")
    >>> roi(m, 2000.0).interval
    (-0.5, 1.5)
    """
    _check_cost(cost)
    return ReturnOnSpend(
        estimate=(incremental_margin.estimate - cost) / cost,
        low=(incremental_margin.low - cost) / cost,
        high=(incremental_margin.high - cost) / cost,
        level=incremental_margin.level,
        cost=cost,
        method="(incremental margin - cost) / cost",
    )


def incremental_return_on_spend(incremental_revenue: Difference, cost: float) -> ReturnOnSpend:
    """Incremental revenue per unit spent: ``incremental revenue / cost``.

    The interval is the ratio of the revenue's bounds to the known cost.

    >>> r = Difference(8000.0, 2000.0, 14000.0, 0.95, 0.01, "welch")
    >>> incremental_return_on_spend(r, 2000.0).interval
    (1.0, 7.0)
    """
    _check_cost(cost)
    return ReturnOnSpend(
        estimate=incremental_revenue.estimate / cost,
        low=incremental_revenue.low / cost,
        high=incremental_revenue.high / cost,
        level=incremental_revenue.level,
        cost=cost,
        method="incremental revenue / cost",
    )


# ----------------------------------------------------------------------- checks and power


def sample_ratio_mismatch(
    observed_counts: Sequence[int],
    expected_shares: Sequence[float],
    threshold: float = SRM_THRESHOLD,
) -> SampleRatioCheck:
    """Chi-square goodness of fit of the arm sizes to the planned split (scipy ``chisquare``).

    ``expected_shares`` are normalised (``(95, 5)`` and ``(0.95, 0.05)`` are the same).
    ``mismatch`` is True when the p-value is below ``threshold`` (0.001 by default, the usual
    choice: with a correct assignment a false alarm happens once in a thousand checks). A
    mismatch means the assignment or the data is broken; no effect should be read until it is
    explained. With no customers at all there is nothing to check: p-value 1.

    >>> sample_ratio_mismatch([9400, 600], [0.95, 0.05]).mismatch
    True
    """
    from scipy.stats import chisquare

    if len(observed_counts) != len(expected_shares) or len(observed_counts) < 2:
        raise ValueError("give one expected share per arm, and at least two arms")
    if any(c < 0 for c in observed_counts):
        raise ValueError(f"counts cannot be negative ({list(observed_counts)})")
    if any(not (math.isfinite(s) and s > 0) for s in expected_shares):
        raise ValueError(f"expected shares must be positive ({list(expected_shares)})")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1 (got {threshold})")
    total = sum(observed_counts)
    share_total = sum(expected_shares)
    expected = tuple(total * s / share_total for s in expected_shares)
    if total == 0:
        statistic, p_value = 0.0, 1.0
    else:
        result = chisquare(list(observed_counts), list(expected))
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return SampleRatioCheck(
        observed=tuple(int(c) for c in observed_counts),
        expected=expected,
        statistic=statistic,
        p_value=p_value,
        threshold=threshold,
        mismatch=p_value < threshold,
    )


def minimum_detectable_effect(
    control_rate: float,
    n_treatment: int,
    n_control: int,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest difference of conversion rates a two-sided test would detect with ``power``.

    Normal approximation with the control rate's variance in both arms:
    ``mde = (z(1 - alpha/2) + z(power)) * sqrt(p * (1 - p) * (1/n_t + 1/n_c))``.
    A rate of 0 or 1 leaves no variance to base it on and raises :class:`NotEnoughData`.

    >>> round(minimum_detectable_effect(0.1, 1000, 1000), 4)
    0.0376
    """
    if not 0 < control_rate < 1:
        raise NotEnoughData(
            f"a control rate of {control_rate} has no variance: the minimum detectable effect "
            "needs a rate strictly between 0 and 1 (use an expected rate when planning)"
        )
    return minimum_detectable_effect_mean(
        math.sqrt(control_rate * (1 - control_rate)), n_treatment, n_control, alpha, power
    )


def minimum_detectable_effect_mean(
    sd: float, n_treatment: int, n_control: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest difference of means a two-sided test would detect with ``power``.

    Normal approximation, same standard deviation ``sd`` in both arms:
    ``mde = (z(1 - alpha/2) + z(power)) * sd * sqrt(1/n_t + 1/n_c)``.

    >>> round(minimum_detectable_effect_mean(50.0, 2000, 2000), 3)
    4.43
    """
    if n_treatment < 1 or n_control < 1:
        raise NotEnoughData("the minimum detectable effect needs customers in both arms")
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"sd must be a non-negative number (got {sd})")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must be between 0 and 1 (got {alpha}, {power})")
    z = NormalDist().inv_cdf
    return (z(1 - alpha / 2) + z(power)) * sd * math.sqrt(1 / n_treatment + 1 / n_control)


def underpowered(
    result: ConversionDifference | MeanDifference, effect: float, power: float = 0.8
) -> PowerCheck:
    """Minimum detectable effect of a finished comparison, and whether it was too small.

    The MDE uses the control arm (its rate, or its standard deviation: the adjusted one for a
    CUPED result) and the arm sizes, at ``alpha = 1 - result.level``. ``underpowered`` is True
    when the observed interval is wider than ``effect``, the smallest effect that would matter
    to the business: such an interval cannot tell that effect from none.

    >>> r = conversion_difference(ArmTotals(400, 24, 0.0, 0.0), ArmTotals(400, 20, 0.0, 0.0))
    >>> check = underpowered(r, effect=0.01)
    >>> round(check.mde, 3), check.underpowered
    (0.043, True)
    """
    if not (math.isfinite(effect) and effect > 0):
        raise ValueError(f"effect must be a positive number (got {effect})")
    alpha = 1 - result.level
    if isinstance(result, ConversionDifference):
        mde = minimum_detectable_effect(
            result.control_rate, result.n_treatment, result.n_control, alpha, power
        )
    else:
        mde = minimum_detectable_effect_mean(
            result.control_sd, result.n_treatment, result.n_control, alpha, power
        )
    width = result.high - result.low
    return PowerCheck(mde=mde, effect=effect, interval_width=width, underpowered=width > effect)


def benjamini_hochberg(p_values: Sequence[float], alpha: float = 0.05) -> MultipleComparison:
    """Benjamini-Hochberg adjustment when many variants or segments are compared at once.

    statsmodels ``multipletests(method="fdr_bh")``: with ``m`` p-values sorted ascending,
    the adjusted value of the ``i``-th is ``min over j >= i of (m * p_j / j)``, capped at 1;
    those at or below ``alpha`` are rejected, which keeps the expected share of false
    discoveries among them under ``alpha``. Results are in the order of the input.

    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.2]).rejected
    (True, False, False, False)
    """
    from statsmodels.stats.multitest import multipletests

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (got {alpha})")
    if any(not (math.isfinite(p) and 0 <= p <= 1) for p in p_values):
        raise ValueError(f"p-values must lie between 0 and 1 ({list(p_values)})")
    if not p_values:
        return MultipleComparison(p_values=(), adjusted=(), rejected=(), alpha=alpha)
    rejected, adjusted, _, _ = multipletests(list(p_values), alpha=alpha, method="fdr_bh")
    return MultipleComparison(
        p_values=tuple(float(p) for p in p_values),
        adjusted=tuple(float(p) for p in adjusted),
        rejected=tuple(bool(r) for r in rejected),
        alpha=alpha,
    )


# ------------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class _Centred:
    n: int
    mean_y: float
    mean_x: float
    syy: float
    sxx: float
    sxy: float


def _centred(arm: ArmTotals) -> _Centred:
    n, s = arm.assigned, arm.revenue_sum
    x, xx, xy = arm.pre_sum or 0.0, arm.pre_sumsq or 0.0, arm.cross_sum or 0.0
    return _Centred(
        n=n,
        mean_y=s / n,
        mean_x=x / n,
        syy=_centred_sumsq(n, s, arm.revenue_sumsq),
        sxx=_centred_sumsq(n, x, xx),
        sxy=xy - x * s / n,
    )


def _moments(n: int, total: float, sumsq: float) -> tuple[float, float]:
    """Mean and sample variance from a count, a sum and a sum of squares."""
    return total / n, _centred_sumsq(n, total, sumsq) / (n - 1)


def _centred_sumsq(n: int, total: float, sumsq: float) -> float:
    """``Q - S^2 / n``; 0 when it is rounding noise (constant values), never negative."""
    return _above_noise(sumsq - total * total / n, sumsq)


def _above_noise(value: float, scale: float) -> float:
    return value if value > _ROUNDING * scale else 0.0


def _welch(
    mean_t: float,
    var_t: float,
    n_t: int,
    mean_c: float,
    var_c: float,
    n_c: int,
    level: float,
) -> MeanDifference:
    from scipy.stats import t as student_t

    d = mean_t - mean_c
    a, b = var_t / n_t, var_c / n_c
    se = math.sqrt(a + b)
    if se > 0:
        df = (a + b) ** 2 / (a * a / (n_t - 1) + b * b / (n_c - 1))
        half = float(student_t.ppf((1 + level) / 2, df)) * se
        p_value = float(2 * student_t.sf(abs(d) / se, df))
    else:
        df, half = float(n_t + n_c - 2), 0.0
        # Constant values everywhere: the means are equal (up to rounding) or surely differ.
        p_value = 1.0 if math.isclose(mean_t, mean_c, rel_tol=_ROUNDING) else 0.0
    return MeanDifference(
        estimate=d,
        low=d - half,
        high=d + half,
        level=level,
        p_value=min(1.0, p_value),
        method="welch",
        treatment_mean=mean_t,
        control_mean=mean_c,
        treatment_sd=math.sqrt(var_t),
        control_sd=math.sqrt(var_c),
        standard_error=se,
        df=df,
        n_treatment=n_t,
        n_control=n_c,
    )


def _normal_p_value(z: float) -> float:
    """Two-sided p-value of a standard normal statistic: ``2 * P(Z > |z|)``."""
    return math.erfc(abs(z) / math.sqrt(2))


def _resampled_means(
    values: NDArray[np.float64], resamples: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    n = values.size
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[picks].mean(axis=1)
    return means


def _values(values: ArrayLike, arm: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{arm} values must be a flat list of numbers")
    if array.size == 0:
        raise NotEnoughData(f"nobody is assigned to the {arm} arm: nothing to resample")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{arm} values must be finite numbers")
    return array


def _require_assigned(
    treatment: ArmTotals, control: ArmTotals, *, minimum: int, figure: str
) -> None:
    for name, arm in (("treatment", treatment), ("control", control)):
        if arm.assigned < minimum:
            raise NotEnoughData(
                f"the {name} arm has {arm.assigned} customer(s) assigned; {figure} needs "
                f"at least {minimum}"
            )


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, e.g. 0.95 (got {level})")


def _check_cost(cost: float) -> None:
    if not (math.isfinite(cost) and cost > 0):
        raise ValueError(f"cost must be a positive amount (got {cost})")
