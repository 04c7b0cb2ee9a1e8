"""The statistics behind the measurement report (docs/measurement.md), pure and without SciPy.

- ``proportion_difference``: treated minus holdout conversion rate with **Newcombe's hybrid score interval**
  (method 10 of Newcombe 1998: each arm's Wilson score interval, combined). It keeps its coverage with few
  conversions and rates near 0, where the textbook Wald interval does not.
- ``mean_difference``: revenue per exposed shopper, treated minus holdout, from each arm's count, sum and sum
  of squares (what SQL aggregates give), with Welch's standard error and a normal interval (large samples).
- ``minimum_detectable_effect``: the smallest difference in conversion rate the current sample would detect
  with the given power, two-sided, at the holdout's rate.
- ``off_policy``: a candidate policy's value from logged decisions and their propensities: inverse propensity
  scoring (IPS), self-normalised IPS (SNIPS) and doubly robust (DR), each with a normal interval, and the
  effective sample size of the importance weights.

Intervals are two-sided at ``confidence`` (default 95 %). Quantiles come from ``statistics.NormalDist``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

import numpy as np
import numpy.typing as npt

_STANDARD: Final = NormalDist()


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        return not self.contains(0.0)


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be between 0 and 1")
    return _STANDARD.inv_cdf(0.5 + confidence / 2.0)


def wilson(successes: int, trials: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for one proportion."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError("need 0 <= successes <= trials and trials > 0")
    z = _z(confidence)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def proportion_difference(
    treated: int, treated_n: int, holdout: int, holdout_n: int, confidence: float = 0.95
) -> Interval:
    """Conversion rate treated minus holdout, with Newcombe's hybrid score interval."""
    a = wilson(treated, treated_n, confidence)
    b = wilson(holdout, holdout_n, confidence)
    difference = a.estimate - b.estimate
    low = difference - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = difference + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(difference, low, high)


@dataclass(frozen=True, slots=True)
class Moments:
    """One arm's per-shopper values as SQL aggregates them: count, sum, sum of squares."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        """The sample variance (n - 1); 0 for a single shopper."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


def mean_difference(treated: Moments, holdout: Moments, confidence: float = 0.95) -> Interval:
    """Mean per shopper treated minus holdout, Welch's standard error, normal interval."""
    if treated.n < 1 or holdout.n < 1:
        raise ValueError("each arm needs at least one shopper")
    difference = treated.mean - holdout.mean
    se = math.sqrt(treated.variance / treated.n + holdout.variance / holdout.n)
    half = _z(confidence) * se
    return Interval(difference, difference - half, difference + half)


def minimum_detectable_effect(
    baseline: float, treated_n: int, holdout_n: int, confidence: float = 0.95, power: float = 0.8
) -> float:
    """The smallest absolute difference in rate detectable at ``power`` (two-sided test at ``confidence``).

    The variance is each arm's own at the alternative (the holdout at ``baseline``, the treated arm at
    ``baseline + effect``), so the effect is the root of ``effect = k * se(effect)``, found by bisection. With
    the variance at the baseline only, a holdout that never (or always) converted would give 0: "any effect
    is detectable", the opposite of the truth. A baseline above one half is mirrored (a fall is as
    detectable as the same rise from the complement). When even the largest possible effect is not
    detectable, that largest effect is returned: the sample cannot tell anything.
    """
    if treated_n <= 0 or holdout_n <= 0 or not 0.0 <= baseline <= 1.0:
        raise ValueError("need positive arms and a baseline rate in 0..1")
    if not 0.0 < power < 1.0:
        raise ValueError("power must be between 0 and 1")
    k = _z(confidence) + _STANDARD.inv_cdf(power)
    p = min(baseline, 1.0 - baseline)
    fixed = p * (1.0 - p) / holdout_n

    def short(effect: float) -> float:  # > 0 once the effect is detectable
        q = p + effect
        return effect - k * math.sqrt(fixed + q * (1.0 - q) / treated_n)

    low, high = 0.0, 1.0 - p
    if short(high) <= 0.0:
        return high
    for _ in range(60):  # 2**-60 of the range: far below any rate a report prints
        middle = (low + high) / 2.0
        if short(middle) > 0.0:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True, slots=True)
class OffPolicy:
    ips: Interval
    snips: Interval
    dr: Interval
    effective_sample_size: float
    n: int


FloatArray = npt.NDArray[np.float64]


def off_policy(
    rewards: Sequence[float] | FloatArray,
    logged_propensity: Sequence[float] | FloatArray,
    candidate_propensity: Sequence[float] | FloatArray,
    *,
    predicted_logged: Sequence[float] | FloatArray | None = None,
    predicted_candidate: Sequence[float] | FloatArray | None = None,
    confidence: float = 0.95,
) -> OffPolicy:
    """A candidate policy's value from logged decisions.

    Per logged decision i: ``rewards[i]`` (converted: 1/0, or revenue), ``logged_propensity[i]`` (the
    probability the running policy gave the action it took, as the ledger keeps it), ``candidate_propensity[i]``
    (the probability the candidate gives that same action in that context). For DR, a reward model's
    prediction for the logged action (``predicted_logged``) and its expectation under the candidate's action
    distribution (``predicted_candidate``); without them DR equals IPS.
    """
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(logged_propensity, dtype=np.float64)
    q = np.asarray(candidate_propensity, dtype=np.float64)
    n = r.shape[0]
    if n == 0 or p.shape != (n,) or q.shape != (n,):
        raise ValueError("rewards and propensities need the same, non-zero length")
    if np.any(p <= 0) or np.any(p > 1) or np.any(q < 0) or np.any(q > 1):
        raise ValueError("propensities must be in (0, 1] (logged) and [0, 1] (candidate)")
    z = _z(confidence)
    w = q / p
    terms = w * r
    ips = float(terms.mean())
    ips_se = float(terms.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    weight_sum = float(w.sum())
    if weight_sum > 0:
        snips = float(terms.sum() / weight_sum)
        # Delta method: the ratio's linearised terms w_i (r_i - snips) / mean(w)
        linear = w * (r - snips) / (weight_sum / n)
        snips_se = float(linear.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    else:
        snips, snips_se = 0.0, 0.0
    if predicted_logged is None or predicted_candidate is None:
        dr_terms = terms
    else:
        m_logged = np.asarray(predicted_logged, dtype=np.float64)
        m_candidate = np.asarray(predicted_candidate, dtype=np.float64)
        if m_logged.shape != (n,) or m_candidate.shape != (n,):
            raise ValueError("reward predictions need the same length as the rewards")
        dr_terms = m_candidate + w * (r - m_logged)
    dr = float(dr_terms.mean())
    dr_se = float(dr_terms.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    squares = float((w * w).sum())
    ess = weight_sum * weight_sum / squares if squares > 0 else 0.0
    return OffPolicy(
        ips=Interval(ips, ips - z * ips_se, ips + z * ips_se),
        snips=Interval(snips, snips - z * snips_se, snips + z * snips_se),
        dr=Interval(dr, dr - z * dr_se, dr + z * dr_se),
        effective_sample_size=ess,
        n=n,
    )
