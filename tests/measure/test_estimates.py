"""The report's statistics: published values, and coverage on seeded simulations with a planted effect."""

from __future__ import annotations

import numpy as np
import pytest

from edge.measure.estimates import (
    Moments,
    mean_difference,
    minimum_detectable_effect,
    off_policy,
    proportion_difference,
    wilson,
)

SEEDS = range(20)


def test_wilson_and_newcombe_give_the_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873-890: 56/70 vs 48/80, method 10 gives 0.0524 to 0.3339.
    difference = proportion_difference(56, 70, 48, 80)
    assert difference.estimate == pytest.approx(0.2)
    assert (difference.low, difference.high) == pytest.approx((0.0524, 0.3339), abs=5e-4)
    # Wilson (1927) at 95 %: 0/10 -> 0 to 0.2775; 5/10 -> 0.2366 to 0.7634
    assert (wilson(0, 10).low, wilson(0, 10).high) == pytest.approx((0.0, 0.2775), abs=5e-4)
    assert (wilson(5, 10).low, wilson(5, 10).high) == pytest.approx((0.2366, 0.7634), abs=5e-4)


def test_a_planted_uplift_is_covered_and_found_and_a_null_one_is_not_claimed() -> None:
    n, holdout_rate, planted = 6_000, 0.06, 0.02
    covered = found = null_covered = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        treated = int(rng.binomial(n, holdout_rate + planted))
        control = int(rng.binomial(n, holdout_rate))
        interval = proportion_difference(treated, n, control, n)
        covered += interval.contains(planted)
        found += interval.excludes_zero
        null = proportion_difference(
            int(rng.binomial(n, holdout_rate)), n, int(rng.binomial(n, holdout_rate)), n
        )
        null_covered += null.contains(0.0)
    assert covered >= 18
    assert found >= 15  # power ~0.98 at this size: "excludes zero in most"
    assert null_covered >= 18


def test_revenue_per_shopper_difference_covers_the_planted_effect() -> None:
    covered = 0
    for seed in SEEDS:
        rng = np.random.default_rng(100 + seed)
        # Most exposed shoppers buy nothing; buyers spend an exponential amount: a realistic skewed revenue.
        treated = rng.binomial(1, 0.10, 5_000) * rng.exponential(40.0, 5_000)
        control = rng.binomial(1, 0.08, 5_000) * rng.exponential(40.0, 5_000)
        arms = [Moments(len(x), float(x.sum()), float((x * x).sum())) for x in (treated, control)]
        covered += mean_difference(*arms).contains(0.10 * 40.0 - 0.08 * 40.0)
    assert covered >= 18


def test_the_minimum_detectable_effect_is_detected_about_as_often_as_its_power() -> None:
    n, baseline = 3_000, 0.05
    mde = minimum_detectable_effect(baseline, n, n)
    rng = np.random.default_rng(7)
    detected = sum(
        proportion_difference(int(rng.binomial(n, baseline + mde)), n, int(rng.binomial(n, baseline)), n).low
        > 0
        for _ in range(400)
    )
    assert 0.70 <= detected / 400 <= 0.90  # power 0.8 by construction


@pytest.mark.parametrize("baseline", [0.0, 1.0])
def test_a_holdout_that_never_or_always_converted_still_has_a_detectable_effect_above_zero(
    baseline: float,
) -> None:
    # With the baseline's variance only, both gave 0 ("any effect is detectable"). At p = 0 the effect
    # solves d = k * sqrt(d (1 - d) / n), d = k^2 / (n + k^2), with k = 1.96 + 0.8416.
    k = 1.959964 + 0.841621
    mde = minimum_detectable_effect(baseline, 500, 500)
    assert mde == pytest.approx(k * k / (500 + k * k), rel=1e-4)


def test_an_effect_no_sample_this_small_can_detect_is_the_largest_possible() -> None:
    assert minimum_detectable_effect(0.5, 2, 2) == pytest.approx(0.5)


def test_off_policy_estimates_recover_a_known_candidates_value() -> None:
    contexts, actions, n, epsilon = 4, 5, 20_000, 0.3
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for seed in SEEDS:
        rng = np.random.default_rng(1_000 + seed)
        means = rng.uniform(0.02, 0.3, (contexts, actions))
        greedy = rng.integers(0, actions, contexts)  # the running policy's choice per context
        candidate = means.argmax(axis=1)  # a better candidate: the best action per context
        truth = float(means[np.arange(contexts), candidate].mean())  # contexts are uniform
        x = rng.integers(0, contexts, n)
        explore = rng.random(n) < epsilon
        a = np.where(explore, rng.integers(0, actions, n), greedy[x])
        logged = (1 - epsilon) * (a == greedy[x]) + epsilon / actions
        reward = rng.binomial(1, means[x, a]).astype(np.float64)
        chosen = (a == candidate[x]).astype(np.float64)
        # A reward model learned on half the data would be imperfect; here its estimate is the logged mean
        model = np.zeros((contexts, actions))
        for c in range(contexts):
            for k in range(actions):
                hits = (x == c) & (a == k)
                model[c, k] = reward[hits].mean() if hits.any() else 0.0
        result = off_policy(
            reward, logged, chosen, predicted_logged=model[x, a], predicted_candidate=model[x, candidate[x]]
        )
        covered["ips"] += result.ips.contains(truth)
        covered["snips"] += result.snips.contains(truth)
        covered["dr"] += result.dr.contains(truth)
        assert 0 < result.effective_sample_size <= n
        assert result.dr.high - result.dr.low < result.ips.high - result.ips.low  # the model's help
    assert covered["ips"] >= 17 and covered["snips"] >= 17 and covered["dr"] >= 17, covered


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson(11, 10)
    with pytest.raises(ValueError, match="propensities"):
        off_policy([1.0], [0.0], [1.0])
    with pytest.raises(ValueError, match="same"):
        off_policy([1.0, 0.0], [0.5], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        proportion_difference(1, 2, 1, 2, confidence=1.0)
