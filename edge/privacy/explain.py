"""Why an offer was chosen: each input's contribution to the model's score for the offer it chose.

Model-agnostic occlusion on the logit: a feature group's contribution is ``logit(score(x)) -
logit(score(x with the group set to its neutral value))``: 0 for most inputs (no audience, no visits, no
affinity, no discount, unknown weather, nothing complementary in the basket; the time of day's sine and cosine
together), and the uniform share for the store's trends (so a category contributes when it sells more, or less,
than an average one). The weather, basket and trends labels say what the row held ("it was hot", "it was
raining"). One ``session.run`` of one row per group
explains a decision; the shipped model is small, so an export of thousands of decisions takes well under a
second. The values are in log-odds: positive made the offer more likely, negative less.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from edge.decide.features import UNIFORM_SHARE
from edge.decide.manifest import FEATURE_NAMES, N_FEATURES, ModelError
from edge.onnxrt import ORT_ERRORS

log = logging.getLogger(__name__)

# Feature groups as a shopper would name them; the category one-hot is one group.
GROUPS: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("time_of_day", "the time of day", ("hour_sin", "hour_cos")),
    ("weekend", "whether it was the weekend", ("weekend",)),
    ("audience", "how many people were near the screen", ("audience_log",)),
    ("personalized", "that you allowed personal offers", ("personalized",)),
    ("visits", "how often you visit this store", ("visits_log",)),
    ("weather", "the weather", ("weather_known", "temp_scaled", "precipitation")),
    ("affinity", "your interest in the offer's category", ("affinity",)),
    ("basket", "what is in your basket", ("basket_complement",)),
    ("trends", "what sells in this store this week", ("trend_share",)),
    ("offer_value", "the offer's value", ("offer_value_log",)),
    ("discount", "the offer's discount", ("offer_discount",)),
    ("category", "the offer's category", tuple(name for name in FEATURE_NAMES if name.startswith("cat_"))),
)
_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}
# Each input's neutral value for the occlusion; 0 unless named here.
BASELINE: Final[dict[str, float]] = {"trend_share": UNIFORM_SHARE}
_EPS: Final = 1e-6
_HOT_SCALED: Final = 1.0  # temp_scaled >= 1.0: 25 C or more
_COLD_SCALED: Final = -1.0  # temp_scaled <= -1.0: 5 C or less


def _label(key: str, label: str, row: npt.NDArray[np.float32]) -> str:
    """The group's label, told from the row where that says more ("it was hot" rather than "the weather")."""
    if key == "weather":
        if row[_INDEX["weather_known"]] < 0.5:
            return "that the weather was unknown"
        parts = []
        temp = float(row[_INDEX["temp_scaled"]])
        if temp >= _HOT_SCALED:
            parts.append("it was hot")
        elif temp <= _COLD_SCALED:
            parts.append("it was cold")
        if row[_INDEX["precipitation"]] >= 0.5:
            parts.append("raining")
        return f"the weather ({' and '.join(parts)})" if parts else label
    if key == "basket" and row[_INDEX["basket_complement"]] > 0:
        return "an item in your basket that goes with this offer"
    if key == "trends":
        share = float(row[_INDEX["trend_share"]])
        if share > UNIFORM_SHARE * 1.5:
            return "that it sells well in this store this week"
        if share < UNIFORM_SHARE / 1.5:
            return "that it sells little in this store this week"
    return label


@dataclass(frozen=True, slots=True)
class Contribution:
    feature: str
    label: str
    logit: float  # the change in log-odds this input made


ScoreFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def contributions(score: ScoreFn, features: bytes) -> list[Contribution] | None:
    """Each group's contribution, largest effect first; None if the row or the model's answer is unusable."""
    row = np.frombuffer(features, dtype=np.float32)
    if row.shape != (N_FEATURES,) or not np.all(np.isfinite(row)):
        return None
    batch = np.repeat(row[np.newaxis, :], len(GROUPS) + 1, axis=0)
    for i, (_, _, names) in enumerate(GROUPS, start=1):
        for name in names:
            batch[i, _INDEX[name]] = BASELINE.get(name, 0.0)
    try:
        scores = np.asarray(score(batch), dtype=np.float64).reshape(-1)
    except (
        *ORT_ERRORS,
        ValueError,
    ):  # a model that cannot score this row explains nothing; the export goes on
        log.warning("a model could not score a decision's features for its explanation", exc_info=True)
        return None
    if scores.shape != (len(GROUPS) + 1,) or not np.all(np.isfinite(scores)):
        return None
    full = _logit(float(scores[0]))
    found = [
        Contribution(key, _label(key, label, row), round(full - _logit(float(scores[i])), 4))
        for i, (key, label, _) in enumerate(GROUPS, start=1)
    ]
    found.sort(key=lambda c: -abs(c.logit))
    return found


class Explainer:
    """Contributions per decision, with the model version the decision was made with (loaded once each)."""

    def __init__(self, load: Callable[[str], ScoreFn | None]) -> None:
        self._load = load
        self._models: dict[str, ScoreFn | None] = {}

    def explain(self, model_version: str, features: bytes | None) -> list[Contribution] | None:
        if features is None:
            return None
        if model_version not in self._models:
            try:
                self._models[model_version] = self._load(model_version)
            except (*ORT_ERRORS, ModelError, OSError):  # a version that cannot load explains nothing; logged
                log.warning("model %s could not be loaded to explain decisions", model_version, exc_info=True)
                self._models[model_version] = None
        score = self._models[model_version]
        return None if score is None else contributions(score, features)
