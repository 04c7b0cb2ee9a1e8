""" "Why did I see this offer?" names the decision's context: the weather, the basket, the store's trends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.decide.features import build_features
from edge.decide.scorer import load_model
from edge.events import DecisionContext, Weather
from edge.privacy.explain import GROUPS, contributions
from storecontract.offers import Offer

REPO = Path(__file__).resolve().parents[2]
SOCKS = Offer(id="socks", title="socks", category="apparel", skus=("APP-RUN-SOCKS",), value=9.0)
HOT = Weather(32.0, False, None, 0.0, "cloud")
RAINY_COLD = Weather(2.0, True, None, 0.0, "cloud")


def explain(ctx: DecisionContext) -> dict[str, tuple[str, float]]:
    scorer = load_model(REPO / "models/offers.onnx", REPO / "models/offers.json")
    row = build_features([SOCKS], ctx, rules=scorer.basket_rules)[0]

    def score(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return scorer.score(np.ascontiguousarray(batch))

    found = contributions(score, row.tobytes())
    assert found is not None and len(found) == len(GROUPS)
    return {c.feature: (c.label, c.logit) for c in found}


def context(
    weather: Weather | None, basket: tuple[str, ...], trends: dict[str, float] | None
) -> DecisionContext:
    return DecisionContext("d", "entrance", 1_783_000_000.0, 1, "s", {"visits": 2}, weather, basket, trends)


def test_the_context_is_named_and_weighed() -> None:
    why = explain(context(HOT, ("SPT-RUN-SHOE",), {"apparel": 0.5, "coffee": 0.5}))
    assert why["basket"][0] == "an item in your basket that goes with this offer"
    assert why["basket"][1] > 0.5  # running shoes made the socks much more likely
    assert why["weather"][0] == "the weather (it was hot)"
    assert why["trends"][0] == "that it sells well in this store this week"
    assert why["trends"][1] > 0


def test_without_context_the_labels_say_so_and_weigh_little() -> None:
    why = explain(context(None, (), None))
    assert why["weather"][0] == "that the weather was unknown"
    assert why["basket"] == ("what is in your basket", 0.0)
    assert why["trends"] == ("what sells in this store this week", 0.0)  # the uniform share is neutral
    cold = explain(context(RAINY_COLD, (), {"apparel": 0.01}))
    assert cold["weather"][0] == "the weather (it was cold and raining)"
    assert cold["trends"][0] == "that it sells little in this store this week"
