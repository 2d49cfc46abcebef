"""The demo's planted campaign effect (demo/behaviour.py): the chances of one customer, the
responses drawn from them (rates within tolerance on many draws, the same basket in both
arms) and the truth computed from them, the one the bench and the demo compare with."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tournesol.demo import behaviour as bh

FIRST_DAY = date(2026, 10, 13)
FIRST_DAY_AT = datetime(2026, 10, 20, 15, 0)
SHOPPER = bh.Shopper(bh.build_catalogue(random.Random(1)))


def traits(
    rate: float = 4.0, *, churn: date | None = None, channels: tuple[str, ...] = ("store", "web")
) -> bh.Traits:
    start = date(2023, 1, 1)
    return bh.Traits(
        purchase_rate=rate,
        avg_basket=40.0,
        start=start,
        starts=dict.fromkeys(channels, start),
        churn_date=churn,
        preferred_channel=channels[0] if channels else "store",
        web_share=0.3 if len(channels) > 1 else float(channels == ("web",)),
        responsiveness=0.3,
        store="M001",
        favourites=(1.0,) * len(bh.CONSUMER_CATEGORIES),
    )


def chances(t: bh.Traits | None, **kwargs: object) -> bh.Chances:
    values: dict[str, object] = {"window_days": 30, "effect": 0.04, "first_day": FIRST_DAY}
    values.update(kwargs)
    return bh.campaign_chances(t, **values)  # type: ignore[arg-type]


def test_the_chance_without_the_campaign_comes_from_the_purchase_rate() -> None:
    found = chances(traits(4.0))
    assert found.untreated == pytest.approx(1 - math.exp(-4.0 * 30 / 365))
    assert found.treated == pytest.approx(found.untreated + 0.04)
    assert found.effect == pytest.approx(0.04)


def test_the_treated_chance_is_capped_at_one() -> None:
    found = chances(traits(200.0))  # buys about every other day
    assert found.untreated > 0.99
    assert found.treated == 1.0
    assert found.effect == pytest.approx(1 - found.untreated) and found.effect < 0.04


def test_a_customer_who_bought_already_within_the_window_has_nothing_to_gain() -> None:
    assert chances(traits(), bought_already=True) == bh.Chances(1.0, 1.0)


def test_churned_customers_buy_only_because_of_the_campaign() -> None:
    found = chances(traits(churn=FIRST_DAY - timedelta(days=1)))
    assert found == bh.Chances(0.0, 0.04)
    still_active = chances(traits(churn=FIRST_DAY + timedelta(days=1)))
    assert still_active.untreated > 0


def test_a_customer_the_model_does_not_know_never_buys() -> None:
    assert chances(None) == bh.NO_CHANCE
    assert chances(traits(channels=())) == bh.NO_CHANCE  # no card, no account: nowhere to buy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"effect": -0.1}, "effect"), ({"effect": 1.5}, "effect"), ({"window_days": 1}, "window")],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chances(traits(), **kwargs)


@given(
    rate=st.floats(0, 500),
    days=st.integers(2, 365),
    effect=st.floats(0, 1),
    already=st.booleans(),
)
def test_chances_are_probabilities_and_the_effect_is_the_planted_one_below_the_cap(
    rate: float, days: int, effect: float, already: bool
) -> None:
    found = chances(traits(rate), window_days=days, effect=effect, bought_already=already)
    assert 0 <= found.untreated <= found.treated <= 1
    assert found.effect == pytest.approx(min(effect, 1 - found.untreated), abs=1e-12)


def draw(seed: int, t: bh.Traits, *, treated: bool, **kwargs: object) -> bh.CampaignResponse:
    values: dict[str, object] = {"window_days": 30, "effect": 0.04, "first_day": FIRST_DAY}
    values.update(kwargs)
    return bh.campaign_response(
        random.Random(seed), t, treated=treated, shopper=SHOPPER, campaign_code="test",
        **values,  # type: ignore[arg-type]
    )  # fmt: skip


def within(observed: int, n: int, p: float) -> bool:
    """Within 4.5 standard deviations of a binomial's mean (a flake once in 150,000 runs)."""
    return abs(observed - n * p) <= 4.5 * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("rate", [0.5, 4.0, 20.0])
def test_the_responses_buy_at_the_planted_rates(rate: float) -> None:
    t, n = traits(rate), 20_000
    expected = chances(t)
    untreated = [draw(seed, t, treated=False) for seed in range(n)]
    treated = [draw(seed, t, treated=True) for seed in range(n)]
    assert within(sum(r.bought for r in untreated), n, expected.untreated)
    assert within(sum(r.bought for r in treated), n, expected.treated)
    caused = sum(bool(r.purchase and r.purchase.campaign_code) for r in treated)
    assert within(caused, n, expected.effect)
    assert not any(r.purchase and r.purchase.campaign_code for r in untreated)


def test_each_customer_has_one_basket_whatever_the_arm_and_buys_more_when_treated() -> None:
    t = traits(6.0)
    for seed in range(300):
        a, b = draw(seed, t, treated=False), draw(seed, t, treated=True)
        assert a.basket is not None and b.basket is not None
        assert (a.basket.at, a.basket.channel, a.basket.lines) == (
            b.basket.at, b.basket.channel, b.basket.lines,
        )  # fmt: skip
        assert b.bought >= a.bought  # whoever buys untreated buys treated
        assert FIRST_DAY < a.basket.at.date() < FIRST_DAY + timedelta(days=30)
        assert a.basket_euros > 0
        if a.basket.channel == "store":
            assert a.basket.store


def test_the_channel_follows_the_customer_s_cards_and_accounts() -> None:
    web_only = [draw(seed, traits(channels=("web",)), treated=True) for seed in range(50)]
    store_only = [draw(seed, traits(channels=("store",)), treated=True) for seed in range(50)]
    assert {r.basket.channel for r in web_only if r.basket} == {"web"}
    assert {r.basket.channel for r in store_only if r.basket} == {"store"}


def test_no_purchase_is_drawn_for_who_bought_already_or_is_unknown() -> None:
    unknown = bh.campaign_response(
        random.Random(1), None, treated=True, window_days=30, effect=0.04, first_day=FIRST_DAY,
        shopper=SHOPPER,
    )  # fmt: skip
    for response in (draw(1, traits(), treated=True, bought_already=True), unknown):
        assert response.basket is None and not response.bought and response.basket_euros == 0


def test_the_truth_is_the_mean_difference_of_chances_and_of_expected_revenue() -> None:
    lines = [bh.Line("SOL-01011", 1, 2000)]
    basket = bh.Purchase("P1", "store", FIRST_DAY_AT, "M001", lines)
    responses = [
        bh.CampaignResponse(bh.Chances(0.2, 0.24), True, basket, True),  # 20 EUR basket
        bh.CampaignResponse(bh.Chances(0.98, 1.0), False, basket, False),
        bh.CampaignResponse(bh.Chances(1.0, 1.0), True, None, False),  # bought already
        bh.CampaignResponse(bh.Chances(0.0, 0.0), False, None, False),  # unknown
    ]
    truth = bh.true_effect(responses)
    assert truth.customers == 4
    assert truth.conversion == pytest.approx((0.04 + 0.02) / 4)
    assert truth.revenue == pytest.approx((0.04 * 20 + 0.02 * 20) / 4)
    assert truth.untreated_conversion == pytest.approx((0.2 + 0.98 + 1.0) / 4)
    with pytest.raises(ValueError, match="empty"):
        bh.true_effect([])


def test_the_truth_is_what_the_arms_differ_by_on_average() -> None:
    """Over many draws, everyone treated minus everyone untreated converges to the truth."""
    audience = [traits(rate) for rate in (0.3, 1.0, 3.0, 8.0, 40.0)]
    n = 4_000
    bought = revenue = 0.0
    truths = []
    for seed in range(n):
        for k, t in enumerate(audience):
            a = draw(seed * 10 + k, t, treated=False)
            b = draw(seed * 10 + k, t, treated=True)
            bought += b.bought - a.bought
            revenue += b.basket_euros * b.bought - a.basket_euros * a.bought
            truths.append(b)
    truth = bh.true_effect(truths)
    customers = n * len(audience)
    assert bought / customers == pytest.approx(truth.conversion, abs=0.004)
    assert revenue / customers == pytest.approx(truth.revenue, rel=0.1)
