"""The shipped model is exactly what scripts/build_model.py makes, and it learned the intended effects."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.decide.catalog import CATEGORIES
from edge.decide.features import build_features
from edge.decide.scorer import OnnxScorer
from edge.events import DecisionContext
from tests.decide.conftest import MANIFEST, MODEL, REPO, offer, wall


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_model.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def test_rebuilt_manifest_equals_the_shipped_one(rebuilt: Path) -> None:
    shipped = json.loads(MANIFEST.read_text())
    again = json.loads((rebuilt / "offers.json").read_text())
    assert again == shipped
    assert set(shipped) == {"name", "version", "sha256", "inputs", "output", "categories", "trained_on"}


def test_rebuilt_model_is_byte_identical(rebuilt: Path) -> None:
    assert (rebuilt / "offers.onnx").read_bytes() == MODEL.read_bytes()
    baseline = REPO / "models" / "offers.context-free.onnx"
    assert (rebuilt / "offers.context-free.onnx").read_bytes() == baseline.read_bytes()
    shipped = json.loads(MANIFEST.read_text())["trained_on"]
    assert hashlib.sha256(baseline.read_bytes()).hexdigest() == shipped["context_free_sha256"]


def test_holdout_auc_beats_chance() -> None:
    assert json.loads(MANIFEST.read_text())["trained_on"]["holdout_auc"] > 0.7


def ctx(hour: int, affinity: dict[str, float], weekday_day: int = 6) -> DecisionContext:
    # January 2026: the 6th is a Tuesday, the 10th a Saturday.
    at = wall("UTC", 2026, 1, weekday_day, hour, 0)
    return DecisionContext("d", "cafe", at, 1, "s", {"affinity": affinity, "visits": 5})


def scores(scorer: OnnxScorer, context: DecisionContext, categories: list[str]) -> dict[str, float]:
    offers = [offer(c, category=c, value=5.0, discount=0.2) for c in categories]
    return dict(zip(categories, scorer.score(build_features(offers, context)).tolist(), strict=True))


def test_affinity_to_the_category_ranks_first(scorer: OnnxScorer) -> None:
    coffee_lover = scores(scorer, ctx(15, {"coffee": 0.95, "apparel": 0.0}), ["coffee", "apparel"])
    fashion_lover = scores(scorer, ctx(15, {"coffee": 0.0, "apparel": 0.95}), ["coffee", "apparel"])
    assert coffee_lover["coffee"] > coffee_lover["apparel"]
    assert fashion_lover["apparel"] > fashion_lover["coffee"]


def test_coffee_sells_in_the_morning(scorer: OnnxScorer) -> None:
    morning = scores(scorer, ctx(8, {}), ["coffee"])["coffee"]
    evening = scores(scorer, ctx(20, {}), ["coffee"])["coffee"]
    assert morning > 1.5 * evening


def test_discount_helps(scorer: OnnxScorer) -> None:
    context = ctx(12, dict.fromkeys(CATEGORIES, 0.5))
    plain, discounted = (offer(f"x{d}", category="home", value=5.0, discount=d) for d in (0.0, 0.5))
    low, high = scorer.score(build_features([plain, discounted], context))
    assert high > low
    assert np.all(np.isfinite([low, high]))
