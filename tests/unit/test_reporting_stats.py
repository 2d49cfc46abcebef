"""The statistics of measurement, against hand arithmetic, the libraries on raw data, and a
seeded simulation with a known true effect (coverage of the 95% intervals)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from statsmodels.stats import proportion as smp
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from tournesol.reporting.stats import (
    ArmTotals,
    ConversionDifference,
    Difference,
    MeanDifference,
    NotEnoughData,
    benjamini_hochberg,
    bootstrap_difference,
    conversion_difference,
    cuped_difference,
    incremental_return_on_spend,
    incremental_totals,
    minimum_detectable_effect,
    minimum_detectable_effect_mean,
    needs_bootstrap,
    revenue_difference,
    roi,
    sample_ratio_mismatch,
    underpowered,
)

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def arm(
    values: Sequence[float], pre: Sequence[float] | None = None, converted: int | None = None
) -> ArmTotals:
    """What SQL would sum for one arm, from each assigned customer's revenue (and pre-period)."""
    y = np.asarray(values, dtype=float)
    sums: dict[str, float] = {}
    if pre is not None:
        x = np.asarray(pre, dtype=float)
        sums = {
            "pre_sum": float(x.sum()),
            "pre_sumsq": float((x * x).sum()),
            "cross_sum": float((x * y).sum()),
        }
    return ArmTotals(
        assigned=y.size,
        converted=int((y > 0).sum()) if converted is None else converted,
        revenue_sum=float(y.sum()),
        revenue_sumsq=float((y * y).sum()),
        **sums,
    )


def counts(assigned: int, converted: int) -> ArmTotals:
    return ArmTotals(assigned=assigned, converted=converted, revenue_sum=0.0, revenue_sumsq=0.0)


def assert_no_nan(result: object) -> None:
    assert dataclasses.is_dataclass(result)
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, float):
            assert math.isfinite(value), f"{field.name} = {value}"
        if dataclasses.is_dataclass(value):
            assert_no_nan(value)


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    # Wilson score interval, written out: centre (p + z²/2n) / (1 + z²/n),
    # half-width z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²).
    p = x / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# ----------------------------------------------------------------------------- conversion


def test_conversion_difference_by_hand_and_against_statsmodels() -> None:
    # Treatment 60 / 1000 = 0.06, control 50 / 1000 = 0.05: d = 0.01, relative lift 0.01/0.05 = 0.2.
    r = conversion_difference(counts(1000, 60), counts(1000, 50))
    assert r.estimate == pytest.approx(0.01, abs=1e-15)
    assert (r.treatment_rate, r.control_rate) == (0.06, 0.05)
    assert r.relative_lift == pytest.approx(0.2)
    # Newcombe: with Wilson intervals (l1, u1) for 0.06 and (l2, u2) for 0.05,
    # low = d - sqrt((0.06 - l1)² + (u2 - 0.05)²), high = d + sqrt((u1 - 0.06)² + (0.05 - l2)²).
    # Wilson(60, 1000): z²/n = 3.841459/1000, centre (0.06 + 0.0019207) / 1.0038415 = 0.0616838,
    # half 1.959964 * sqrt(0.0000564 + 0.00000096) / 1.0038415 = 0.0147873 -> (0.046896, 0.076471).
    # Wilson(50, 1000): centre 0.0517220, half 0.0135918 -> (0.038130, 0.065314).
    l1, u1 = wilson(60, 1000)
    l2, u2 = wilson(50, 1000)
    assert (l1, u1) == pytest.approx((0.046896, 0.076471), abs=1e-6)
    assert (l2, u2) == pytest.approx((0.038130, 0.065314), abs=1e-6)
    low = 0.01 - math.hypot(0.06 - l1, u2 - 0.05)
    high = 0.01 + math.hypot(u1 - 0.06, 0.05 - l2)
    assert (r.low, r.high) == pytest.approx((low, high), abs=1e-12)
    # low = 0.01 - sqrt(0.013104² + 0.015314²) = 0.01 - 0.020155 = -0.010155,
    # high = 0.01 + sqrt(0.016471² + 0.011870²) = 0.01 + 0.020302 = 0.030302.
    assert (r.low, r.high) == pytest.approx((-0.010155, 0.030302), abs=1e-6)
    direct = smp.confint_proportions_2indep(60, 1000, 50, 1000, method="newcomb", compare="diff")
    assert (r.low, r.high) == pytest.approx(tuple(map(float, direct)), abs=1e-12)
    # Pooled z-test: p = 110 / 2000 = 0.055, se = sqrt(0.055 * 0.945 * (1/1000 + 1/1000))
    # = sqrt(0.00010395) = 0.0101956, z = 0.01 / 0.0101956 = 0.98082, p-value = 2 * (1 - Φ(z)).
    z = 0.01 / math.sqrt(0.055 * 0.945 * 0.002)
    assert z == pytest.approx(0.98082, abs=1e-5)
    assert r.p_value == pytest.approx(2 * sps.norm.sf(z), rel=1e-12)
    assert r.p_value == pytest.approx(0.32669, abs=1e-5)
    score = smp.test_proportions_2indep(60, 1000, 50, 1000, method="score", correction=False)
    assert r.p_value == pytest.approx(score.pvalue, rel=1e-9)
    assert r.p_value == pytest.approx(smp.proportions_ztest([60, 50], [1000, 1000])[1], rel=1e-9)
    assert not r.shows_effect and r.level == 0.95


def test_conversion_difference_other_levels_and_unequal_arms_match_statsmodels() -> None:
    for level in (0.8, 0.9, 0.99):
        r = conversion_difference(counts(950, 131), counts(48, 2), level=level)
        low, high = smp.confint_proportions_2indep(
            131, 950, 2, 48, method="newcomb", compare="diff", alpha=1 - level
        )
        assert (r.low, r.high) == pytest.approx((float(low), float(high)), abs=1e-12)
        score = smp.test_proportions_2indep(131, 950, 2, 48, method="score", correction=False)
        assert r.p_value == pytest.approx(score.pvalue, rel=1e-9)


def test_a_clear_conversion_effect_is_shown() -> None:
    # 0.08 vs 0.04 on 5000 each: z = 0.04 / sqrt(0.06 * 0.94 * 0.0004) = 0.04 / 0.00475 = 8.42.
    r = conversion_difference(counts(5000, 400), counts(5000, 200))
    assert r.shows_effect and r.low > 0
    assert r.p_value < 1e-15
    assert r.relative_lift == pytest.approx(1.0)


# -------------------------------------------------------------------------------- revenue

TREATMENT = [0.0, 0.0, 10.0, 20.0]  # S = 30, Q = 100 + 400 = 500
CONTROL = [0.0, 0.0, 0.0, 10.0]  # S = 10, Q = 100


def test_revenue_difference_by_hand() -> None:
    r = revenue_difference(arm(TREATMENT), arm(CONTROL))
    # Means 30/4 = 7.5 and 10/4 = 2.5: d = 5.
    assert (r.treatment_mean, r.control_mean, r.estimate) == (7.5, 2.5, 5.0)
    # Variances (500 - 30²/4) / 3 = 275/3 = 91.667 and (100 - 10²/4) / 3 = 25.
    assert r.treatment_sd**2 == pytest.approx(275 / 3)
    assert r.control_sd**2 == pytest.approx(25.0)
    # se = sqrt(91.667/4 + 25/4) = sqrt(29.1667) = 5.40062.
    assert r.standard_error == pytest.approx(math.sqrt(350 / 12))
    # df = 29.1667² / ((22.9167² / 3) + (6.25² / 3)) = 850.694 / 188.079 = 4.5231.
    assert r.df == pytest.approx(29.166666**2 / (22.916666**2 / 3 + 6.25**2 / 3), rel=1e-6)
    assert r.df == pytest.approx(4.5231, abs=1e-4)
    # Interval 5 -/+ t(4.5231, 0.975) * 5.40062; p-value 2 * P(T > 5 / 5.40062 = 0.92582).
    q = sps.t.ppf(0.975, r.df)
    assert (r.low, r.high) == pytest.approx((5 - q * r.standard_error, 5 + q * r.standard_error))
    assert r.p_value == pytest.approx(2 * sps.t.sf(5 / math.sqrt(350 / 12), r.df))
    assert r.method == "welch"


def assert_matches_scipy(r: MeanDifference, t: np.ndarray, c: np.ndarray, level: float) -> None:
    ref = sps.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(confidence_level=level)
    assert r.estimate == pytest.approx(t.mean() - c.mean(), rel=1e-9, abs=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
    assert r.df == pytest.approx(ref.df, rel=1e-9)
    assert r.estimate / r.standard_error == pytest.approx(ref.statistic, rel=1e-9)
    assert (r.low, r.high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)


def test_welch_from_sums_equals_scipy_on_raw_values() -> None:
    t, c = np.array(TREATMENT), np.array(CONTROL)
    assert_matches_scipy(revenue_difference(arm(t), arm(c)), t, c, 0.95)
    rng = np.random.default_rng(7)
    for level in (0.9, 0.95, 0.99):
        # Zero-inflated revenue: 8% buyers, gamma order values; arms of different sizes.
        t = np.where(rng.random(3000) < 0.08, rng.gamma(2.0, 45.0, 3000), 0.0)
        c = np.where(rng.random(700) < 0.06, rng.gamma(2.0, 40.0, 700), 0.0)
        assert_matches_scipy(revenue_difference(arm(t), arm(c), level), t, c, level)


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    t, c = [0.0] * 20 + [35.0, 80.0, 120.0], [0.0] * 22 + [60.0]
    first = bootstrap_difference(t, c, resamples=2000, seed=3)
    assert first == bootstrap_difference(t, c, resamples=2000, seed=3)
    assert first != bootstrap_difference(t, c, resamples=2000, seed=4)
    # Means 235/23 = 10.217 and 60/23 = 2.609: d = 175/23 = 7.609.
    assert first.estimate == pytest.approx(175 / 23)
    assert first.low <= first.estimate <= first.high
    assert (first.n_treatment, first.n_control, first.resamples) == (23, 23, 2000)
    assert 0 <= first.p_value <= 1
    assert_no_nan(first)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(11)
    t = np.where(rng.random(300) < 0.1, rng.gamma(2.0, 50.0, 300), 0.0)
    c = np.where(rng.random(300) < 0.07, rng.gamma(2.0, 50.0, 300), 0.0)
    r = bootstrap_difference(t, c, resamples=10_000, seed=5)
    ref = sps.bootstrap(
        (t, c),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        method="percentile",
        n_resamples=10_000,
        rng=np.random.default_rng(6),
    ).confidence_interval
    # Different random draws: the bounds agree to a few percent of the interval width.
    width = ref.high - ref.low
    assert r.low == pytest.approx(ref.low, abs=0.05 * width)
    assert r.high == pytest.approx(ref.high, abs=0.05 * width)


def test_bootstrap_of_identical_constant_arms_is_a_point_at_zero() -> None:
    r = bootstrap_difference([5.0] * 10, [5.0] * 7, resamples=500)
    assert (r.estimate, r.low, r.high, r.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_p_value_is_small_for_a_clear_difference() -> None:
    # Every resampled difference is > 0, so the share <= 0 is 0 and the p-value 0.
    r = bootstrap_difference([10.0, 11.0, 12.0, 13.0], [0.0, 1.0, 2.0], resamples=1000)
    assert r.p_value == 0.0 and r.low > 0


def test_needs_bootstrap_below_thirty_converters_in_either_arm() -> None:
    assert needs_bootstrap(counts(10_000, 29), counts(10_000, 500))
    assert needs_bootstrap(counts(10_000, 500), counts(10_000, 0))
    assert not needs_bootstrap(counts(10_000, 30), counts(10_000, 30))
    assert needs_bootstrap(counts(10_000, 30), counts(10_000, 40), min_converters=50)


def test_bootstrap_refuses_empty_or_bad_values() -> None:
    with pytest.raises(NotEnoughData, match="control"):
        bootstrap_difference([1.0, 2.0], [])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_difference([1.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_difference([1.0], [1.0], resamples=0)


# ---------------------------------------------------------------------------------- CUPED


def test_cuped_by_hand() -> None:
    # Treatment pre x = (1, 2, 3), post y = (2, 4, 7); control x = (1, 2, 3), y = (1, 3, 5).
    t, c = arm([2, 4, 7], pre=[1, 2, 3]), arm([1, 3, 5], pre=[1, 2, 3])
    r = cuped_difference(t, c)
    # Sxx = 14 - 6²/3 = 2 in each arm; Sxy_t = 31 - 6*13/3 = 5, Sxy_c = 22 - 6*9/3 = 4;
    # theta = (5 + 4) / (2 + 2) = 2.25.
    assert r.theta == pytest.approx(2.25)
    # Pre means are 2 in both arms and overall: adjusted means are the raw 13/3 and 3, d = 4/3.
    assert r.estimate == pytest.approx(4 / 3)
    # Syy_t = 69 - 13²/3 = 38/3, Syy_c = 35 - 9²/3 = 8.
    # Adjusted var_t = (38/3 - 2*2.25*5 + 2.25²*2) / 2 = (12.6667 - 22.5 + 10.125) / 2 = 7/48,
    # adjusted var_c = (8 - 2*2.25*4 + 10.125) / 2 = 0.0625; se = sqrt((7/48 + 1/16) / 3) = 0.26352.
    assert r.treatment_sd**2 == pytest.approx(7 / 48)
    assert r.control_sd**2 == pytest.approx(0.0625)
    assert r.standard_error == pytest.approx(math.sqrt((7 / 48 + 1 / 16) / 3))
    # Unadjusted: var_t = 19/3, var_c = 4, se = sqrt((19/3 + 4) / 3) = 1.8559.
    assert r.unadjusted.standard_error == pytest.approx(math.sqrt((19 / 3 + 4) / 3))
    # Variance reduction 1 - (0.069444 / 3.444444) = 0.97984.
    assert r.variance_reduction == pytest.approx(1 - (10 / 48 / 3) / (31 / 9))
    assert r.high - r.low < r.unadjusted.high - r.unadjusted.low


def test_cuped_equals_welch_on_adjusted_raw_values() -> None:
    rng = np.random.default_rng(21)
    xt, xc = rng.gamma(1.5, 60.0, 800), rng.gamma(1.5, 60.0, 600)
    yt = 0.7 * xt + rng.normal(0, 30, 800) + 8.0
    yc = 0.7 * xc + rng.normal(0, 30, 600)
    r = cuped_difference(arm(yt, pre=xt), arm(yc, pre=xc))
    # theta from raw values: within-arm covariances and variances pooled.
    sxy = ((xt - xt.mean()) * (yt - yt.mean())).sum() + ((xc - xc.mean()) * (yc - yc.mean())).sum()
    sxx = ((xt - xt.mean()) ** 2).sum() + ((xc - xc.mean()) ** 2).sum()
    theta = sxy / sxx
    assert r.theta == pytest.approx(theta, rel=1e-9)
    mean_x = np.concatenate([xt, xc]).mean()
    at, ac = yt - theta * (xt - mean_x), yc - theta * (xc - mean_x)
    assert_matches_scipy(r, at, ac, 0.95)
    assert r.unadjusted == revenue_difference(arm(yt, pre=xt), arm(yc, pre=xc))


def test_cuped_is_unbiased_and_narrower_with_a_correlated_pre_period() -> None:
    # 300 seeded experiments, true effect +5 per customer, pre-period explains most of y.
    rng = np.random.default_rng(2024)
    effect, estimates, ratios, covered = 5.0, [], [], 0
    for _ in range(300):
        xt, xc = rng.gamma(2.0, 50.0, 1000), rng.gamma(2.0, 50.0, 1000)
        yt = 0.8 * xt + rng.normal(0, 25, 1000) + effect
        yc = 0.8 * xc + rng.normal(0, 25, 1000)
        r = cuped_difference(arm(yt, pre=xt), arm(yc, pre=xc))
        estimates.append(r.estimate)
        ratios.append((r.high - r.low) / (r.unadjusted.high - r.unadjusted.low))
        covered += r.low <= effect <= r.high
    mean, spread = float(np.mean(estimates)), float(np.std(estimates, ddof=1))
    # Unbiased: the average estimate is within 3 standard errors of the mean of the truth.
    assert abs(mean - effect) < 3 * spread / math.sqrt(300)
    # Narrower: y has sd sqrt(0.64 * 5000 + 625) = 61.8, the residual 25, so width ratio ≈ 0.40.
    assert max(ratios) < 1 and float(np.mean(ratios)) == pytest.approx(0.40, abs=0.03)
    assert 0.92 <= covered / 300 <= 0.98


def test_cuped_without_pre_period_variance_is_plain_welch() -> None:
    t, c = arm([0, 5, 9], pre=[0, 0, 0]), arm([1, 2, 2], pre=[0, 0, 0])
    r = cuped_difference(t, c)
    plain = revenue_difference(t, c)
    assert r.theta == 0.0 and r.variance_reduction == pytest.approx(0.0, abs=1e-12)
    assert (r.estimate, r.low, r.high, r.p_value) == pytest.approx(
        (plain.estimate, plain.low, plain.high, plain.p_value)
    )


def test_cuped_needs_the_pre_period_in_both_arms() -> None:
    with pytest.raises(ValueError, match="CUPED needs"):
        cuped_difference(arm([1, 2], pre=[1, 2]), arm([1, 2]))


# -------------------------------------------------------------- incremental totals and ROI


def test_incremental_totals_scale_the_difference_by_treated_customers() -> None:
    # Conversion d = 0.01 in (-0.010155, 0.030302) x 20 000 customers = 200 in (-203.1, 606.0).
    r = conversion_difference(counts(1000, 60), counts(1000, 50))
    total = incremental_totals(r, 20_000)
    assert total.estimate == pytest.approx(200.0)
    assert (total.low, total.high) == pytest.approx((r.low * 20_000, r.high * 20_000))
    assert (total.level, total.p_value) == (r.level, r.p_value)
    # Revenue d = 5 x 1000 = 5000.
    assert (
        incremental_totals(revenue_difference(arm(TREATMENT), arm(CONTROL)), 1000).estimate == 5000
    )
    with pytest.raises(ValueError):
        incremental_totals(r, -1)


def test_roi_and_return_on_spend_carry_the_interval_through() -> None:
    margin = Difference(3000.0, 1000.0, 5000.0, 0.95, 0.003, "welch")
    # ROI = (3000 - 2000) / 2000 = 0.5, interval ((1000 - 2000)/2000, (5000 - 2000)/2000).
    r = roi(margin, 2000.0)
    assert (r.estimate, r.low, r.high, r.cost, r.level) == (0.5, -0.5, 1.5, 2000.0, 0.95)
    revenue = Difference(8000.0, 2000.0, 14000.0, 0.95, 0.01, "welch")
    # Incremental revenue per unit spent: 8000 / 2000 = 4 in (1, 7).
    s = incremental_return_on_spend(revenue, 2000.0)
    assert (s.estimate, s.interval) == (4.0, (1.0, 7.0))
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match="cost"):
            roi(margin, bad)


# ------------------------------------------------------------------------------------ SRM


def test_sample_ratio_mismatch_by_hand_and_against_scipy() -> None:
    # 9400 / 600 planned 95% / 5%: expected 9500 / 500,
    # chi² = 100²/9500 + 100²/500 = 1.0526 + 20 = 21.0526, p = P(chi²(1) > 21.05) = 4.5e-6.
    check = sample_ratio_mismatch([9400, 600], [0.95, 0.05])
    assert check.expected == pytest.approx((9500.0, 500.0))
    assert check.statistic == pytest.approx(10_000 / 9500 + 20)
    assert check.p_value == pytest.approx(sps.chi2.sf(10_000 / 9500 + 20, 1))
    assert check.p_value == pytest.approx(4.47e-6, rel=0.01)
    assert check.mismatch
    # 9520 / 480: chi² = 400/9500 + 400/500 = 0.8421, p = 0.3588: no mismatch.
    fine = sample_ratio_mismatch([9520, 480], [95, 5])
    assert fine.statistic == pytest.approx(400 / 9500 + 0.8)
    assert not fine.mismatch and fine.p_value == pytest.approx(0.3588, abs=1e-4)
    ref = sps.chisquare([3300, 3400, 3100], [9800 / 3] * 3)
    three = sample_ratio_mismatch([3300, 3400, 3100], [1, 1, 1])
    assert (three.statistic, three.p_value) == pytest.approx((ref.statistic, ref.pvalue))


def test_sample_ratio_threshold_is_a_parameter_and_guards_hold() -> None:
    assert sample_ratio_mismatch([9520, 480], [95, 5], threshold=0.5).mismatch
    empty = sample_ratio_mismatch([0, 0], [0.5, 0.5])
    assert (empty.statistic, empty.p_value, empty.mismatch) == (0.0, 1.0, False)
    with pytest.raises(ValueError):
        sample_ratio_mismatch([10, 10], [1.0])
    with pytest.raises(ValueError):
        sample_ratio_mismatch([10, -1], [0.5, 0.5])
    with pytest.raises(ValueError):
        sample_ratio_mismatch([10, 10], [1.0, 0.0])


# ----------------------------------------------------------------------------------- power


def test_minimum_detectable_effect_by_hand_and_against_statsmodels() -> None:
    # z(0.975) + z(0.8) = 1.959964 + 0.841621 = 2.801585.
    # Proportion 0.1, 1000 per arm: 2.801585 * sqrt(0.1 * 0.9 * (1/1000 + 1/1000)) = 0.037581.
    assert minimum_detectable_effect(0.1, 1000, 1000) == pytest.approx(
        2.801585 * math.sqrt(0.09 * 0.002), rel=1e-6
    )
    # Mean, sd 50, 2000 per arm: 2.801585 * 50 * sqrt(0.001) = 4.42970.
    assert minimum_detectable_effect_mean(50.0, 2000, 2000) == pytest.approx(4.42970, abs=1e-5)
    # statsmodels solves for the standardized effect (it also counts the far tail: tiny).
    ref = NormalIndPower().solve_power(nobs1=2000, alpha=0.05, power=0.8, ratio=1.0)
    assert minimum_detectable_effect_mean(1.0, 2000, 2000) == pytest.approx(ref, rel=1e-4)
    # Unequal arms and other alpha / power: (z(0.995) + z(0.9)) * sd * sqrt(1/9500 + 1/500).
    z = 2.575829 + 1.281552
    assert minimum_detectable_effect_mean(10.0, 9500, 500, alpha=0.01, power=0.9) == (
        pytest.approx(z * 10 * math.sqrt(1 / 9500 + 1 / 500), rel=1e-6)
    )


def test_minimum_detectable_effect_guards() -> None:
    for rate in (0.0, 1.0):
        with pytest.raises(NotEnoughData, match="strictly between 0 and 1"):
            minimum_detectable_effect(rate, 100, 100)
    with pytest.raises(NotEnoughData):
        minimum_detectable_effect_mean(1.0, 0, 100)
    with pytest.raises(ValueError):
        minimum_detectable_effect_mean(1.0, 10, 10, power=1.0)


def test_underpowered_compares_the_interval_with_the_effect_that_matters() -> None:
    # 24/400 vs 20/400: MDE = 2.801585 * sqrt(0.05 * 0.95 * 2/400) = 0.043173; the interval is
    # about 6 points wide, wider than a 1-point effect but not than a 10-point one.
    small = conversion_difference(counts(400, 24), counts(400, 20))
    check = underpowered(small, effect=0.01)
    assert check.mde == pytest.approx(2.801585 * math.sqrt(0.05 * 0.95 * 2 / 400), rel=1e-6)
    assert check.interval_width == pytest.approx(small.high - small.low)
    assert check.underpowered
    assert not underpowered(small, effect=0.10).underpowered
    # Means: the MDE uses the control sd (25 here, see test_revenue_difference_by_hand).
    revenue = revenue_difference(arm(TREATMENT), arm(CONTROL))
    assert underpowered(revenue, effect=1.0).mde == pytest.approx(
        2.801585 * 5.0 * math.sqrt(0.5), rel=1e-6
    )
    with pytest.raises(ValueError):
        underpowered(small, effect=0.0)


# -------------------------------------------------------------------- multiple comparisons


def test_benjamini_hochberg_by_hand_and_against_statsmodels() -> None:
    # Sorted: 0.01 (1), 0.03 (2), 0.04 (3), 0.2 (4); m * p / rank = 0.04, 0.06, 0.0533, 0.2;
    # running minimum from the top: 0.04, 0.0533, 0.0533, 0.2. Back in input order:
    p = [0.01, 0.04, 0.03, 0.2]
    r = benjamini_hochberg(p)
    assert r.adjusted == pytest.approx((0.04, 0.16 / 3, 0.16 / 3, 0.2))
    assert r.rejected == (True, False, False, False)
    assert r.p_values == tuple(p)
    rejected, adjusted, _, _ = multipletests(p, alpha=0.05, method="fdr_bh")
    assert r.adjusted == pytest.approx(tuple(adjusted))
    assert r.rejected == tuple(rejected)
    assert benjamini_hochberg(p, alpha=0.06).rejected == (True, True, True, False)
    assert benjamini_hochberg([]).adjusted == ()
    with pytest.raises(ValueError):
        benjamini_hochberg([0.5, 1.5])


# ---------------------------------------------------------------------------- guard rails


def test_impossible_totals_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match=r"more customers converted \(11\) than assigned \(10\)"):
        counts(10, 11)
    with pytest.raises(ValueError, match="negative"):
        counts(-1, 0)
    with pytest.raises(ValueError, match="negative"):
        counts(10, -2)
    with pytest.raises(ValueError, match="swapped"):
        ArmTotals(assigned=4, converted=2, revenue_sum=500.0, revenue_sumsq=30.0)
    with pytest.raises(ValueError, match="together"):
        ArmTotals(assigned=4, converted=2, revenue_sum=3.0, revenue_sumsq=5.0, pre_sum=1.0)
    with pytest.raises(ValueError, match="nobody is assigned"):
        ArmTotals(assigned=0, converted=0, revenue_sum=1.0, revenue_sumsq=1.0)
    with pytest.raises(ValueError, match="level"):
        conversion_difference(counts(10, 1), counts(10, 1), level=95)


def test_zero_assigned_is_not_enough_data() -> None:
    with pytest.raises(NotEnoughData, match="control arm has 0 customer"):
        conversion_difference(counts(100, 3), counts(0, 0))
    with pytest.raises(NotEnoughData, match="treatment arm has 1 customer"):
        revenue_difference(arm([5.0]), arm([1.0, 2.0]))
    assert issubclass(NotEnoughData, ValueError)


def test_zero_conversions_give_finite_figures() -> None:
    r = conversion_difference(counts(500, 0), counts(500, 0))
    assert r.estimate == 0 and r.p_value == 1.0 and r.relative_lift is None
    assert r.low < 0 < r.high  # Wilson intervals at 0 still have width
    assert_no_nan(r)
    lift = conversion_difference(counts(500, 4), counts(500, 0))
    assert lift.relative_lift is None and lift.estimate == pytest.approx(0.008)
    assert_no_nan(lift)
    everyone = conversion_difference(counts(50, 50), counts(80, 80))
    assert everyone.p_value == 1.0 and everyone.estimate == 0
    assert_no_nan(everyone)
    zero_revenue = revenue_difference(arm([0.0] * 50), arm([0.0] * 60))
    assert (zero_revenue.estimate, zero_revenue.low, zero_revenue.high) == (0.0, 0.0, 0.0)
    assert zero_revenue.p_value == 1.0
    assert_no_nan(zero_revenue)


def test_identical_arms_show_no_effect() -> None:
    values = [0.0] * 90 + [25.0, 40.0, 40.0, 90.0, 130.0] * 2
    r = revenue_difference(arm(values), arm(values))
    assert r.estimate == 0.0 and r.p_value == pytest.approx(1.0)
    assert r.low == pytest.approx(-r.high)
    c = conversion_difference(counts(800, 40), counts(800, 40))
    assert c.estimate == 0 and c.p_value == 1.0 and c.low == pytest.approx(-c.high)
    cuped = cuped_difference(arm(values, pre=values[::-1]), arm(values, pre=values[::-1]))
    assert cuped.estimate == pytest.approx(0.0, abs=1e-12) and cuped.p_value == pytest.approx(1)
    # Constant but different values: no variance and a sure difference.
    sure = revenue_difference(arm([3.0] * 5), arm([1.0] * 5))
    assert (sure.estimate, sure.low, sure.high, sure.p_value) == (2.0, 2.0, 2.0, 0.0)
    for result in (r, c, cuped, sure):
        assert_no_nan(result)


# ------------------------------------------------------------------- coverage simulation


def test_95_percent_intervals_cover_the_true_difference_in_93_to_97_percent() -> None:
    # 500 seeded experiments, 2000 customers per arm; conversion 6% vs 5% (true d = 0.01),
    # order values gamma(shape 2, scale 40), mean 80 in both arms: true revenue per assigned
    # customer d = 0.06 * 80 - 0.05 * 80 = 0.8.
    rng = np.random.default_rng(9)
    n, rate_t, rate_c, shape, scale = 2000, 0.06, 0.05, 2.0, 40.0
    true_conversion, true_revenue = rate_t - rate_c, (rate_t - rate_c) * shape * scale

    def simulate(rate: float) -> ArmTotals:
        buyers = int(rng.binomial(n, rate))
        orders = rng.gamma(shape, scale, buyers)
        return ArmTotals(n, buyers, float(orders.sum()), float((orders * orders).sum()))

    conversion_hits = revenue_hits = 0
    for _ in range(500):
        t, c = simulate(rate_t), simulate(rate_c)
        conversion = conversion_difference(t, c)
        revenue = revenue_difference(t, c)
        conversion_hits += conversion.low <= true_conversion <= conversion.high
        revenue_hits += revenue.low <= true_revenue <= revenue.high
    # Measured with seed 9: conversion 0.958, revenue 0.942.
    assert 0.93 <= conversion_hits / 500 <= 0.97
    assert 0.93 <= revenue_hits / 500 <= 0.97


# ------------------------------------------------------------------------------ properties

levels = st.sampled_from([0.8, 0.9, 0.95, 0.99])


@st.composite
def count_arms(draw: st.DrawFn) -> ArmTotals:
    assigned = draw(st.integers(1, 5000))
    return counts(assigned, draw(st.integers(0, assigned)))


revenues = st.lists(st.integers(0, 100_000).map(lambda cents: cents / 100), min_size=2, max_size=40)


def mirrored(a: Difference, b: Difference) -> None:
    scale = max(1.0, abs(a.low), abs(a.high))
    assert b.estimate == pytest.approx(-a.estimate, abs=1e-12 * scale)
    assert (b.low, b.high) == pytest.approx((-a.high, -a.low), abs=1e-9 * scale)
    assert b.p_value == pytest.approx(a.p_value, abs=1e-9)


@given(count_arms(), count_arms(), levels)
def test_conversion_interval_contains_the_estimate_and_mirrors(
    t: ArmTotals, c: ArmTotals, level: float
) -> None:
    r = conversion_difference(t, c, level)
    assert r.low <= r.estimate <= r.high
    assert 0 <= r.p_value <= 1
    assert_no_nan(r)
    mirrored(r, conversion_difference(c, t, level))


@given(revenues, revenues, levels)
def test_welch_interval_contains_the_estimate_and_mirrors(
    t: list[float], c: list[float], level: float
) -> None:
    r = revenue_difference(arm(t), arm(c), level)
    assert r.low <= r.estimate <= r.high
    assert 0 <= r.p_value <= 1
    assert_no_nan(r)
    mirrored(r, revenue_difference(arm(c), arm(t), level))


@given(revenues, revenues, st.floats(0.01, 1000.0))
def test_scaling_revenues_scales_the_estimate_and_interval(
    t: list[float], c: list[float], factor: float
) -> None:
    r = revenue_difference(arm(t), arm(c))
    scaled = revenue_difference(arm([v * factor for v in t]), arm([v * factor for v in c]))
    tolerance = 1e-9 * factor * max([1.0, *t, *c])
    assert scaled.estimate == pytest.approx(r.estimate * factor, rel=1e-9, abs=tolerance)
    assert scaled.low == pytest.approx(r.low * factor, rel=1e-6, abs=tolerance)
    assert scaled.high == pytest.approx(r.high * factor, rel=1e-6, abs=tolerance)
    if r.standard_error > 1e-6 * max([1.0, *t, *c]):
        assert scaled.p_value == pytest.approx(r.p_value, abs=1e-6)


@given(revenues, revenues, revenues, revenues)
@settings(max_examples=50)
def test_cuped_interval_contains_the_estimate(
    yt: list[float], xt: list[float], yc: list[float], xc: list[float]
) -> None:
    size_t, size_c = min(len(yt), len(xt)), min(len(yc), len(xc))
    r = cuped_difference(arm(yt[:size_t], pre=xt[:size_t]), arm(yc[:size_c], pre=xc[:size_c]))
    assert r.low <= r.estimate <= r.high
    assert_no_nan(r)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_benjamini_hochberg_is_monotone_and_never_below_raw(p_values: list[float]) -> None:
    r = benjamini_hochberg(p_values)
    assert len(r.adjusted) == len(p_values)
    for raw, adjusted in zip(p_values, r.adjusted, strict=True):
        assert raw - 1e-15 <= adjusted <= 1.0
    for i, p_i in enumerate(p_values):
        for j, p_j in enumerate(p_values):
            if p_i <= p_j:
                assert r.adjusted[i] <= r.adjusted[j] + 1e-15
    assert all(rej == (adj <= 0.05) for rej, adj in zip(r.rejected, r.adjusted, strict=True))


def test_result_types() -> None:
    assert isinstance(conversion_difference(counts(10, 1), counts(10, 2)), ConversionDifference)
    assert isinstance(revenue_difference(arm([1, 2]), arm([3, 4])), MeanDifference)
