"""The policy through public decisions: holdout, exploration and propensities, one model run, robustness."""

import hashlib
import math
import random
import uuid
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog
from edge.decide.features import build_features
from edge.decide.policy import DecisionEngine, Fallback, holdout_bucket, is_holdout
from edge.decide.scorer import OnnxScorer
from edge.events import Candidate, DecisionContext
from tests.decide.conftest import PERSONAL, EngineFactory, context, offer
from tests.decide.strategies import json_scalars, profiles

SHOPPERS = [f"shopper-{i}" for i in range(10_000)]


class CountingSession:
    """A real onnxruntime session that counts how often the model is run."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.runs = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self._session.run(*args, **kwargs)

    def run_with_iobinding(self, *args: Any, **kwargs: Any) -> Any:
        self.runs += 1
        return self._session.run_with_iobinding(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


# ----- holdout -----
def test_holdout_share_is_close_to_the_setting() -> None:
    held = sum(is_holdout(s, "edge-holdout-v1", 5.0) for s in SHOPPERS)
    # Binomial(10,000, 5%): sd 22, so 4 sd either side.
    assert 412 <= held <= 588
    assert sum(is_holdout(s, "edge-holdout-v1", 20.0) for s in SHOPPERS) in range(1_900, 2_100)
    assert not any(is_holdout(s, "edge-holdout-v1", 0.0) for s in SHOPPERS)


def test_holdout_hash_is_stable_and_salted() -> None:
    # Pinned: changing the hash would silently move shoppers between groups mid-experiment.
    assert holdout_bucket("shopper-1", "edge-holdout-v1") == holdout_bucket("shopper-1", "edge-holdout-v1")
    bucket = int.from_bytes(hashlib.sha256(b"edge-holdout-v1:shopper-1").digest()[:8], "big")
    assert holdout_bucket("shopper-1", "edge-holdout-v1") == bucket % 10_000
    first = {s for s in SHOPPERS if is_holdout(s, "a", 5.0)}
    second = {s for s in SHOPPERS if is_holdout(s, "b", 5.0)}
    assert len(first & second) < 100  # independent draws overlap by about 5% of 500


def test_holdout_shoppers_get_the_fallback(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("o")], holdout_percent=50.0)
    held = next(s for s in SHOPPERS if is_holdout(s, "edge-holdout-v1", 50.0))
    kept = next(s for s in SHOPPERS if not is_holdout(s, "edge-holdout-v1", 50.0))
    fallback = Fallback(template="loop", data={"playlist": 3})
    for _ in range(3):  # stable: the same shopper is held out every time
        decision = engine.decide(context(clock, shopper=held), PERSONAL, fallback)
        assert decision.holdout
        assert decision.offer_id is None
        assert (decision.template, decision.data) == ("loop", {"playlist": 3})
        assert decision.propensity == 1.0
        assert [c.offer_id for c in decision.candidates] == ["o"]  # scored and logged all the same
    assert engine.shopper_counts(held) == {}  # nothing shown, nothing counted
    shown = engine.decide(context(clock, shopper=kept), PERSONAL, fallback)
    assert (shown.offer_id, shown.holdout) == ("o", False)


def test_a_held_out_shopper_is_recorded_with_the_offer_they_would_have_been_shown(
    make_engine: EngineFactory, clock: ManualClock
) -> None:
    offers = [offer("cheap", value=1.0), offer("dear", value=50.0), offer("mid", value=10.0)]
    # The same draws: an engine holding everybody out records what one holding nobody out shows, exploration
    # included (distinct shoppers and screens, so no cap or cooldown tells the two apart).
    held = make_engine(offers, seed=3, epsilon=0.5, holdout_percent=50.0)
    shown = make_engine(offers, seed=3, epsilon=0.5, holdout_percent=0.0)
    shoppers = [s for s in SHOPPERS if is_holdout(s, "edge-holdout-v1", 50.0)][:40]
    would, did = [], []
    for i, shopper in enumerate(shoppers):
        h = held.decide(context(clock, shopper=shopper, display=f"d{i}"), PERSONAL)
        d = shown.decide(context(clock, shopper=shopper, display=f"d{i}"), PERSONAL)
        assert (h.holdout, h.offer_id, d.counterfactual_offer_id) == (True, None, None)
        would.append(h.counterfactual_offer_id)
        did.append(d.offer_id)
    assert would == did
    assert {"cheap", "mid"} & set(did) and "dear" in did  # exploration drew others too
    assert held.shopper_counts(shoppers[0]) == {}  # a counterfactual is never counted against caps
    # Nothing eligible (an offer for another zone): no counterfactual either
    nowhere = make_engine([offer("o", zones=("elsewhere",))], holdout_percent=50.0)
    decision = nowhere.decide(context(clock, shopper=shoppers[0]), PERSONAL)
    assert (decision.holdout, decision.counterfactual_offer_id) == (True, None)


def test_anonymous_shoppers_are_never_held_out(make_engine: EngineFactory, clock: ManualClock) -> None:
    # A salt under which an empty or placeholder id would be held out, so only the rule can keep them in.
    salt = next(
        f"s{i}" for i in range(1_000) if is_holdout("", f"s{i}", 50) and is_holdout("None", f"s{i}", 50)
    )
    engine = make_engine([offer("o")], holdout_percent=50.0, holdout_salt=salt)
    decisions = [engine.decide(context(clock, shopper=None), PERSONAL) for _ in range(50)]
    assert not any(d.holdout for d in decisions)
    assert all(d.offer_id == "o" for d in decisions)


# ----- greedy choice -----
def test_greedy_picks_the_highest_expected_value(make_engine: EngineFactory, clock: ManualClock) -> None:
    offers = [offer("cheap", value=1.0), offer("dear", value=50.0), offer("mid", value=10.0)]
    decision = make_engine(offers).decide(context(clock), PERSONAL)
    by_id = {c.offer_id: c.score for c in decision.candidates}
    expected = max(by_id, key=lambda o: by_id[o] * (1 + {"cheap": 1, "dear": 50, "mid": 10}[o]))
    assert decision.offer_id == expected == "dear"
    assert decision.propensity == 1.0
    assert not decision.explored


def test_ties_break_by_priority_then_id(make_engine: EngineFactory, clock: ManualClock) -> None:
    same = {"category": "home", "value": 3.0}
    assert (
        make_engine([offer("b", **same), offer("a", **same)]).decide(context(clock), PERSONAL).offer_id == "a"
    )
    prioritised = [offer("a", **same), offer("b", priority=2, **same), offer("c", priority=1, **same)]
    assert make_engine(prioritised).decide(context(clock), PERSONAL).offer_id == "b"


def test_nothing_eligible_gives_the_callers_fallback(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("o", zones=["elsewhere"])])
    decision = engine.decide(context(clock), PERSONAL, Fallback("idle", {"x": 1}))
    assert decision.offer_id is None
    assert (decision.template, decision.data, decision.propensity) == ("idle", {"x": 1}, 1.0)
    assert not decision.holdout
    default = engine.decide(context(clock), PERSONAL)
    assert (default.template, default.data) == ("fallback", {})


def test_chosen_offer_brings_its_template_and_data(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("o", template="coupon", data={"headline": "hi", "n": [1, 2]})])
    decision = engine.decide(context(clock, display="screen-7", zone="cafe"), PERSONAL)
    assert (decision.template, decision.data) == ("coupon", {"headline": "hi", "n": [1, 2]})
    assert (decision.display_id, decision.zone, decision.shopper_id) == ("screen-7", "cafe", "s1")
    assert decision.at_wall == clock.wall()
    assert decision.model_version == "2026.12.1"


# ----- exploration -----
def test_exploration_frequencies_match_logged_propensities(
    make_engine: EngineFactory, clock: ManualClock
) -> None:
    epsilon, runs = 0.3, 20_000
    offers = [
        offer(f"o{i}", value=float(v), category=c)
        for i, (v, c) in enumerate([(40, "coffee"), (5, "home"), (1, "kids"), (0, "beauty")])
    ]
    engine = make_engine(offers, seed=20261122, epsilon=epsilon)
    chosen: Counter[str] = Counter()
    propensity: dict[str, float] = {}
    explored = 0
    for _ in range(runs):
        decision = engine.decide(context(clock, shopper=None), PERSONAL)
        assert decision.offer_id is not None
        chosen[decision.offer_id] += 1
        # The same offer in the same context always logs the same propensity.
        assert propensity.setdefault(decision.offer_id, decision.propensity) == decision.propensity
        explored += decision.explored
    assert set(chosen) == {"o0", "o1", "o2", "o3"}
    assert math.isclose(sum(propensity.values()), 1.0, rel_tol=1e-9)
    assert propensity["o0"] == pytest.approx((1 - epsilon) + epsilon / 4)
    for offer_id in ("o1", "o2", "o3"):
        assert propensity[offer_id] == pytest.approx(epsilon / 4)
    for offer_id, count in chosen.items():
        p = propensity[offer_id]
        assert abs(count / runs - p) < 4 * math.sqrt(p * (1 - p) / runs), offer_id
    assert abs(explored / runs - epsilon) < 4 * math.sqrt(epsilon * (1 - epsilon) / runs)


def test_exploration_only_among_eligible(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = make_engine([offer("here"), offer("there", zones=["elsewhere"])], epsilon=1.0)
    decisions = [engine.decide(context(clock, shopper=None), PERSONAL) for _ in range(200)]
    assert {d.offer_id for d in decisions} == {"here"}
    assert all(d.explored and d.propensity == 1.0 for d in decisions)


def test_seeded_rng_replays_the_same_choices(make_engine: EngineFactory, clock: ManualClock) -> None:
    offers = [offer(f"o{i}", value=float(i)) for i in range(6)]

    def replay() -> list[str | None]:
        engine = make_engine(offers, seed=5, epsilon=0.5)
        return [engine.decide(context(clock, shopper=None), PERSONAL).offer_id for _ in range(100)]

    assert replay() == replay()


# ----- one model run, scores -----
def test_one_model_run_per_decision(scorer: OnnxScorer, clock: ManualClock) -> None:
    session = CountingSession(scorer.session)
    counted = OnnxScorer(session, scorer.manifest)
    offers = tuple(
        offer(f"o{i}", category=["coffee", "home", "kids"][i % 3], value=float(i)) for i in range(50)
    )
    engine = DecisionEngine(Catalog(offers=offers), counted, PolicySettings(), clock, random.Random(1))
    before = session.runs
    for i in range(20):
        engine.decide(context(clock, shopper=f"s{i}" if i % 2 else None), PERSONAL)
    assert session.runs - before == 20
    counted.score(np.zeros((7, len(scorer.manifest.inputs["features"])), dtype=np.float32))
    assert session.runs - before == 21


def test_candidate_scores_are_the_models_scores(
    scorer: OnnxScorer, make_engine: EngineFactory, clock: ManualClock
) -> None:
    offers = [
        offer(f"o{i}", category=c, value=float(i), discount=i / 10)
        for i, c in enumerate(["coffee", "home", "kids", "sports"])
    ]
    engine = make_engine(offers, tz="Europe/Berlin")
    profile = {"affinity": {"coffee": 0.7, "kids": 0.4}, "visits": 9}
    ctx = context(clock, profile=profile)
    decision = engine.decide(ctx, PERSONAL)
    by_id = {offer.id: offer for offer in offers}
    ordered = [by_id[c.offer_id] for c in decision.candidates]
    expected = scorer.score(build_features(ordered, ctx, "Europe/Berlin"))
    assert np.allclose([c.score for c in decision.candidates], expected, atol=1e-6)
    for candidate in decision.candidates:
        assert type(candidate) is Candidate
        assert candidate == Candidate(
            candidate.offer_id, candidate.eligible, candidate.score, candidate.reason
        )
        assert hash(candidate) == hash(
            (candidate.offer_id, candidate.eligible, candidate.score, candidate.reason)
        )


def test_decision_ids_are_unique_uuid7_and_sort_by_time(
    make_engine: EngineFactory, clock: ManualClock
) -> None:
    engine = make_engine([offer("o")])
    started = clock.wall()
    ids = []
    for _ in range(500):
        ids.append(engine.decide(context(clock, shopper=None), PERSONAL).decision_id)
        clock.advance(0.0004)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    parsed = uuid.UUID(ids[0])
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert int(ids[0][:12], 16) == int(started * 1000)  # the first 48 bits are unix milliseconds


def test_fallback_helper(make_engine: EngineFactory, clock: ManualClock) -> None:
    decision = make_engine([offer("o")]).fallback("d9", "cafe", "loop", {"k": 1})
    assert (decision.display_id, decision.zone, decision.template, decision.data) == (
        "d9",
        "cafe",
        "loop",
        {"k": 1},
    )
    assert decision.offer_id is None
    assert decision.propensity == 1.0
    assert len(decision.candidates) == 0
    assert decision.at_wall == clock.wall()


# ----- robustness -----
@settings(max_examples=200, deadline=None)
@given(
    profile=profiles,
    audience=json_scalars,
    at_wall=st.one_of(
        st.floats(min_value=1.7e9, max_value=1.9e9),
        st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300]),
    ),
)
def test_decide_never_raises(scorer: OnnxScorer, profile: Any, audience: Any, at_wall: float) -> None:
    clock = ManualClock(wall=1.8e9)
    catalog = Catalog(
        offers=(offer("a", personal=True), offer("b", category="apparel"), offer("c", zones=["x"]))
    )
    engine = DecisionEngine(catalog, scorer, PolicySettings(holdout_percent=20.0), clock, random.Random(0))
    ctx = DecisionContext("d", "cafe", at_wall, audience, "s1", profile)
    decision = engine.decide(ctx, PERSONAL)
    assert len(decision.candidates) == 3
    assert all(math.isfinite(c.score) and 0.0 <= c.score <= 1.0 for c in decision.candidates)
    assert math.isfinite(decision.at_wall)
    assert 0.0 < decision.propensity <= 1.0
