"""Off-policy evaluation (edge/measure/ope.py) on logged decisions whose truth is known by construction.

Decisions come from the real engine (real ONNX models built by tests/support/ope.py) and are written to a real
ledger file; a known conversion probability per (context, offer) draws each reward, so the value a candidate
policy would have had on the same contexts is computed exactly and compared with the estimate's interval.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import CATEGORIES, Catalog, Offer
from edge.decide.features import FeatureBuilder
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import OnnxScorer, load_model
from edge.events import Decision, DecisionContext, Purpose, Weather
from edge.ledger.store import Ledger
from edge.measure.ope import Comparison, Skip, Verdict, evaluate
from tests.support.ope import BASKET_SKUS, catalog, logistic_model, weights

START = 1_803_400_000.0  # a Tuesday, 04:26 UTC: the day's hours all pass during a simulation
ZONES = ("entrance", "cafe", "electronics", "floor")
TRENDS = {"coffee": 0.3, "sports": 0.2, "home": 0.1, "kids": 0.1, "electronics": 0.2, "beauty": 0.1}
PERSONAL = frozenset({Purpose.PERSONALIZATION, Purpose.MEASUREMENT})
MEASURED = frozenset({Purpose.MEASUREMENT})
EPSILON = 0.3
SEEDS = range(20)
DECISIONS = 1_500

# The truth: what makes a shopper buy the offer shown (affinity, basket, heat, the offer's category).
TRUTH_W = weights(
    affinity=3.0, basket_complement=2.5, temp_scaled=0.6, trend_share=2.0, cat_coffee=0.8, cat_kids=-0.5
)
TRUTH_B = -2.6
# The running model knows less: only the category and a little of the affinity.
RUNNING_W = weights(affinity=0.8, cat_sports=0.6, cat_home=0.3, cat_electronics=-0.4)
RUNNING_B = -2.0


@dataclass
class Simulated:
    ledger: Path
    rewards: list[tuple[str, int, float]]  # in the order decision_rewards yields them
    decisions: list[Decision]
    truth: float  # the candidate (truth) policy's expected conversion per identified decision
    observed: float  # the running policy's mean reward per identified decision


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, OnnxScorer]:
    folder = tmp_path_factory.mktemp("models")
    built = {
        "truth": logistic_model(folder, TRUTH_W, TRUTH_B, "truth-1"),
        "running": logistic_model(folder, RUNNING_W, RUNNING_B, "running-1"),
        "broken": logistic_model(folder, RUNNING_W, RUNNING_B, "broken-1", nan=True),
    }
    return {name: load_model(*paths) for name, paths in built.items()}


def policy() -> PolicySettings:
    return PolicySettings(epsilon=EPSILON, holdout_percent=10.0, tz="UTC")


def engine_order(offers: Catalog) -> list[Offer]:
    return sorted(offers.offers, key=lambda offer: (-offer.priority, offer.id))


def sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-z))


def context(rng: np.random.Generator, clock: ManualClock, i: int, *, shopper: str | None) -> DecisionContext:
    chosen = rng.choice(len(CATEGORIES), size=3, replace=False)
    profile = {
        "visits": int(rng.integers(0, 60)),
        "affinity": {CATEGORIES[c]: float(rng.random()) for c in chosen},
    }
    weather = None
    if rng.random() < 0.8:
        weather = Weather(float(rng.normal(18, 9)), bool(rng.random() < 0.3), None, clock.wall(), "cloud")
    basket = tuple(str(s) for s in rng.choice(BASKET_SKUS, size=int(rng.integers(0, 3)), replace=False))
    return DecisionContext(
        display_id=f"display-{i % 6}",
        zone=ZONES[i % len(ZONES)],
        at_wall=clock.wall(),
        audience=int(rng.integers(0, 6)),
        shopper_id=shopper,
        profile=profile,
        weather=weather,
        basket=basket,
        trends=TRENDS if rng.random() < 0.9 else None,
    )


async def simulate(
    path: Path, models: dict[str, OnnxScorer], seed: int, n: int = DECISIONS, *, anonymous_share: float = 0.0
) -> Simulated:
    """``n`` decisions by the running model, written to a ledger at ``path``, with rewards drawn from the truth."""
    rng = np.random.default_rng(seed)
    clock = ManualClock(wall=START)
    offers = catalog()
    engine = DecisionEngine(offers, models["running"], policy(), clock, random.Random(seed))
    order = engine_order(offers)
    truth_features = FeatureBuilder(order, "UTC", models["truth"].basket_rules)
    value_weight = np.array([1.0 + offer.value for offer in order])
    decisions: list[Decision] = []
    rewards: dict[str, int] = {}
    candidate_values, logged_rewards = [], []
    for i in range(n):
        clock.advance(float(rng.uniform(10.0, 120.0)))
        anonymous = rng.random() < anonymous_share
        shopper = None if anonymous else f"shopper-{int(rng.integers(0, 400))}"
        ctx = context(rng, clock, i, shopper=shopper)
        decision = engine.decide(ctx, MEASURED if rng.random() < 0.3 else PERSONAL)
        decisions.append(decision)
        if anonymous:
            continue
        # What the model saw: the profile and the basket only when the decision used them.
        seen = replace(
            ctx,
            profile=ctx.profile if decision.personalized else None,
            basket=ctx.basket if decision.personalized else (),
        )
        p = sigmoid(truth_features.build(seen).astype(np.float64) @ TRUTH_W.astype(np.float64) + TRUTH_B)
        eligible = np.array(decision.candidates.eligible)
        reward = 0
        if decision.offer_id is not None:
            reward = int(rng.random() < p[engine.offer_ids.index(decision.offer_id)])
        rewards[decision.decision_id] = reward
        logged_rewards.append(reward)
        if decision.holdout or not eligible.any():
            candidate_values.append(0.0)  # the fallback: nothing shown, nothing to buy
            continue
        # The truth model is the candidate: its greedy offer by expected value, first on a tie.
        score = models["truth"].score(truth_features.build(seen)).astype(np.float32)
        value = np.where(eligible, score * value_weight.astype(np.float32), -np.inf)
        greedy = int(value.argmax())
        candidate_values.append((1 - EPSILON) * p[greedy] + EPSILON * p[eligible].mean())
    async with Ledger(path, clock, outbox_max_bytes=None) as ledger:
        for start in range(0, n, 250):
            await ledger.record_decisions(
                [(d, d.shopper_id is not None) for d in decisions[start : start + 250]]
            )
    return Simulated(
        ledger=path,
        # decision_rewards's order: by time, then id.
        rewards=[
            (d.decision_id, rewards[d.decision_id], 0.0)
            for d in sorted(decisions, key=lambda d: (d.at_wall, d.decision_id))
            if d.decision_id in rewards
        ],
        decisions=decisions,
        truth=float(np.mean(candidate_values)),
        observed=float(np.mean(logged_rewards)),
    )


def given(rows: list[tuple[str, int, float]]):  # type: ignore[no-untyped-def]
    """A reward source yielding ``rows`` (edge.ledger.measure.decision_rewards's shape and order)."""

    def source(
        conn: sqlite3.Connection,
        since: float,
        until: float,
        window_s: float,
        offers: Iterable[Offer],
        *,
        pos_clock_tolerance_s: float = 600.0,
    ) -> Iterator[tuple[str, int, float]]:
        return iter(rows)

    return source


def run_ope(
    sim: Simulated, candidate: OnnxScorer, running: OnnxScorer, offers: Catalog | None = None
) -> Comparison:
    with sqlite3.connect(f"{sim.ledger.resolve().as_uri()}?mode=ro", uri=True) as conn:
        return evaluate(
            conn,
            candidate=candidate,
            running=running,
            catalog=offers or catalog(),
            policy=policy(),
            since=START,
            until=START + 10 * 86_400,
            window_s=14 * 86_400,
            rewards=given(sim.rewards),
        )


async def test_the_interval_contains_a_known_candidates_value_in_at_least_90_percent_of_seeds(
    tmp_path: Path, models: dict[str, OnnxScorer]
) -> None:
    covered = {"ips": 0, "snips": 0, "dr": 0}
    better = 0
    for seed in SEEDS:
        sim = await simulate(tmp_path / f"ledger-{seed}.db", models, seed)
        result = run_ope(sim, models["truth"], models["running"])
        estimate = result.candidate.result
        assert estimate is not None
        assert estimate.n == len(sim.rewards) - sum(result.candidate.skipped.values())
        covered["ips"] += estimate.ips.contains(sim.truth)
        covered["snips"] += estimate.snips.contains(sim.truth)
        covered["dr"] += estimate.dr.contains(sim.truth)
        assert 0 < estimate.effective_sample_size < estimate.n
        better += result.verdict is Verdict.BETTER
    assert min(covered.values()) >= 0.9 * len(SEEDS), covered
    assert better >= 0.5 * len(SEEDS)  # the truth does beat a running model that knows less


async def test_a_candidate_identical_to_the_running_model_recovers_the_observed_value(
    tmp_path: Path, models: dict[str, OnnxScorer]
) -> None:
    sim = await simulate(tmp_path / "ledger.db", models, seed=7)
    result = run_ope(sim, models["running"], models["running"])
    for estimate in (result.candidate, result.running):
        assert estimate.result is not None
        assert estimate.skipped == {}
        # Every rebuilt propensity equals the logged one: weight 1, so each estimate is the mean reward.
        assert estimate.result.effective_sample_size == pytest.approx(estimate.n)
        assert estimate.result.ips.estimate == pytest.approx(sim.observed, abs=1e-12)
        assert estimate.result.snips.estimate == pytest.approx(sim.observed, abs=1e-12)
        # DR adds the reward model's correction, zero on average, not on every sample: within the interval.
        assert estimate.result.dr.contains(sim.observed)
        assert estimate.result.dr.estimate == pytest.approx(sim.observed, abs=0.01)
    assert result.difference is not None and result.difference.estimate == 0.0
    assert result.verdict is Verdict.NOT_DISTINGUISHABLE
    part = result.summary_part()
    assert part["candidate"]["n"] == len(sim.rewards)
    assert part["candidate"]["ips"][0] == pytest.approx(sim.observed, abs=1e-6)
    assert set(part["running"]) == {"model_version", "n", "ess", "ips", "snips", "dr", "skipped"}


async def test_what_cannot_be_evaluated_is_skipped_and_counted(
    tmp_path: Path, models: dict[str, OnnxScorer]
) -> None:
    sim = await simulate(tmp_path / "ledger.db", models, seed=3, n=400, anonymous_share=0.2)
    chosen = [d for d in sim.decisions if d.shopper_id is not None and d.offer_id is not None]
    gone, no_context, zero, bad = chosen[0], chosen[1], chosen[2], chosen[3]
    with sqlite3.connect(sim.ledger) as conn:
        conn.execute("UPDATE decisions SET context = NULL WHERE decision_id = ?", (no_context.decision_id,))
        conn.execute("UPDATE decisions SET propensity = 0 WHERE decision_id = ?", (zero.decision_id,))
        conn.execute("UPDATE decisions SET candidates = '[{' WHERE decision_id = ?", (bad.decision_id,))
    # An offer that was eligible in the first decision is no longer in the catalog.
    dropped = next(c.offer_id for c in gone.candidates if c.eligible)
    smaller = Catalog(offers=tuple(o for o in catalog().offers if o.id != dropped))
    result = run_ope(sim, models["truth"], models["running"], smaller)
    skipped = result.candidate.skipped
    anonymous = sum(d.shopper_id is None for d in sim.decisions)
    assert skipped[Skip.ANONYMOUS] == anonymous > 0
    assert skipped[Skip.NO_CONTEXT] == 1
    assert skipped[Skip.PROPENSITY_ZERO] == 1
    assert skipped[Skip.BAD_CANDIDATES] == 1
    gone_count = sum(1 for d in chosen[4:] if any(c.offer_id == dropped and c.eligible for c in d.candidates))
    assert skipped[Skip.OFFER_GONE] == 1 + gone_count
    evaluated = len(sim.rewards) - sum(v for k, v in skipped.items() if k != Skip.ANONYMOUS)
    assert result.candidate.n == result.running.n == evaluated
    # A model that answers NaN is counted, never a crash, and leaves nothing to estimate.
    broken = run_ope(sim, models["broken"], models["running"])
    policy_choices = (
        sum(1 for d in sim.decisions if d.shopper_id is not None and d.offer_id is not None) - 3
    )  # the three broken rows above are skipped before any model runs
    assert broken.candidate.skipped[Skip.CANDIDATE_ERROR] == policy_choices


async def test_rewards_missing_from_the_stream_are_counted(
    tmp_path: Path, models: dict[str, OnnxScorer]
) -> None:
    sim = await simulate(tmp_path / "ledger.db", models, seed=5, n=200)
    partial = replace(sim, rewards=sim.rewards[::2])
    result = run_ope(partial, models["truth"], models["running"])
    assert result.candidate.skipped[Skip.NO_REWARD] == len(sim.rewards) - len(sim.rewards[::2])
    assert result.candidate.n == len(sim.rewards[::2])
