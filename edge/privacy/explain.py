"""Why an offer was chosen: each input's contribution to the model's score for the offer it chose.

Model-agnostic occlusion on the logit: a feature group's contribution is ``logit(score(x)) -
logit(score(x with the group set to 0))``, 0 being each input's neutral value (no audience, no visits, no
affinity, no discount; the time of day's sine and cosine together). One ``session.run`` of one row per group
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
    ("affinity", "your interest in the offer's category", ("affinity",)),
    ("offer_value", "the offer's value", ("offer_value_log",)),
    ("discount", "the offer's discount", ("offer_discount",)),
    ("category", "the offer's category", tuple(name for name in FEATURE_NAMES if name.startswith("cat_"))),
)
_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}
_EPS: Final = 1e-6


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
        batch[i, [_INDEX[name] for name in names]] = 0.0
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
        Contribution(key, label, round(full - _logit(float(scores[i])), 4))
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
