"""The shipped model uses the decision context: it beats the context-free model on fresh held-out data, and it
learned the planted effects (hot days -> cold drinks, running shoes -> socks, a trending category)."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edge.decide.features import build_features
from edge.decide.scorer import OnnxScorer
from edge.events import DecisionContext, Weather
from tests.decide.conftest import MANIFEST, REPO, offer, wall

FRESH_SEED = 4242  # not the build's seed: rows the model never saw, from the same generator
FRESH_VISITS = 500


def _build_model_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_model", REPO / "scripts" / "build_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_model", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fresh(scorer: OnnxScorer) -> dict[str, float]:
    """Both shipped models scored with onnxruntime on freshly generated held-out visits (the rules the shipped
    model carries build the basket column, as on a gateway)."""
    build_model: Any = _build_model_module()
    data = build_model.synthetic_data(np.random.default_rng(FRESH_SEED), scorer.basket_rules, FRESH_VISITS)
    baseline = ort.InferenceSession(
        str(REPO / "models" / "offers.context-free.onnx"), providers=["CPUExecutionProvider"]
    )
    contextual = scorer.score(data.features).astype(np.float64)
    context_free = baseline.run(["score"], {"features": data.features})[0].reshape(-1).astype(np.float64)
    result: dict[str, float] = build_model.evaluate(contextual, context_free, data)
    return result


def test_the_build_says_the_contextual_model_wins() -> None:
    trained_on = json.loads(MANIFEST.read_text())["trained_on"]
    assert trained_on["holdout_auc"] > trained_on["context_free_auc"]
    assert trained_on["top_choice_conversion"] > trained_on["context_free_top_choice_conversion"]
    assert trained_on["uplift"] == pytest.approx(
        trained_on["top_choice_conversion"] - trained_on["context_free_top_choice_conversion"], abs=1e-3
    )
    assert trained_on["basket_rules"] > 0


def test_contextual_model_beats_context_free_on_fresh_held_out_rows(fresh: dict[str, float]) -> None:
    assert fresh["holdout_auc"] > fresh["context_free_auc"] + 0.003
    assert fresh["uplift"] > 0.005  # conversion of the top offer per visit, absolute


def test_the_build_numbers_hold_on_fresh_rows(fresh: dict[str, float]) -> None:
    trained_on = json.loads(MANIFEST.read_text())["trained_on"]
    for key in ("holdout_auc", "context_free_auc"):
        assert fresh[key] == pytest.approx(trained_on[key], abs=0.03), key
    assert fresh["uplift"] == pytest.approx(trained_on["uplift"], abs=0.02)


def test_the_context_free_model_ignores_the_context(scorer: OnnxScorer) -> None:
    baseline = ort.InferenceSession(
        str(REPO / "models" / "offers.context-free.onnx"), providers=["CPUExecutionProvider"]
    )
    offers = [offer(c, category=c, skus=s) for c, s in (("grocery", ["GRO-COLD-DRINK"]), ("apparel", []))]
    plain = build_features(offers, context())
    rich = build_features(
        offers,
        context(weather=hot(), basket=("SPT-RUN-SHOE",), trends={"apparel": 0.6}),
        rules=scorer.basket_rules,
    )
    assert not np.array_equal(plain, rich)
    assert np.array_equal(
        baseline.run(["score"], {"features": plain})[0], baseline.run(["score"], {"features": rich})[0]
    )


# ----- the planted effects -----
def context(
    weather: Weather | None = None, basket: tuple[str, ...] = (), trends: dict[str, float] | None = None
) -> DecisionContext:
    at = wall("UTC", 2026, 7, 7, 15, 0)  # a Tuesday afternoon
    profile = {"affinity": {}, "visits": 5}
    return DecisionContext("d", "cafe", at, 1, "s", profile, weather, basket, trends)


def hot(temp_c: float = 32.0) -> Weather:
    return Weather(temp_c, False, None, 0.0, "cloud")


def score(scorer: OnnxScorer, item: Any, ctx: DecisionContext) -> float:
    return float(scorer.score(build_features([item], ctx, rules=scorer.basket_rules))[0])


def test_hot_days_sell_cold_drinks(scorer: OnnxScorer) -> None:
    drinks = offer("drinks", category="grocery", skus=["GRO-COLD-DRINK"], value=3.0)
    assert score(scorer, drinks, context(hot(32.0))) > 1.5 * score(scorer, drinks, context(hot(8.0)))


def test_running_shoes_in_the_basket_sell_socks(scorer: OnnxScorer) -> None:
    socks = offer("socks", category="apparel", skus=["APP-RUN-SOCKS"], value=9.0)
    with_shoes = score(scorer, socks, context(basket=("SPT-RUN-SHOE",)))
    assert with_shoes > 1.5 * score(scorer, socks, context(basket=()))
    assert with_shoes > 1.5 * score(scorer, socks, context(basket=("HOM-CANDLE",)))


def test_a_trending_category_gets_a_lift(scorer: OnnxScorer) -> None:
    kids = offer("kids", category="kids", value=10.0)
    trending = {"kids": 0.45, "apparel": 0.2, "coffee": 0.35}
    quiet = {"kids": 0.02, "apparel": 0.5, "coffee": 0.48}
    assert score(scorer, kids, context(trends=trending)) > 1.3 * score(scorer, kids, context(trends=quiet))
