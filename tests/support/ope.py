"""Small real ONNX offer models and a catalog for the off-policy evaluation tests (tests/measure/test_ope*.py).

A model is ``sigmoid(features @ w + b)`` built with onnx.helper (Gemm -> Sigmoid), its basket rules in the
metadata property the gateway reads, and a manifest for this code's features: it loads through the real
``load_model`` and scores through onnxruntime, whatever columns ``FEATURE_NAMES`` has today.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge.decide.basket import RULES_KEY
from edge.decide.catalog import CATEGORIES, Catalog, Offer
from edge.decide.manifest import FEATURE_NAMES, INPUT_NAME
from tests.support.onnxgraphs import gemm_model

F = len(FEATURE_NAMES)
BASKET_SKUS = ("shoe-run-42", "mug-01", "cable-usb")
# "bought running shoes, also bought sports", "a mug, then coffee": so a basket moves the features.
RULES = {
    "v": 1,
    "skus": {"shoe-run-42": "sports", "mug-01": "home", "cable-usb": "electronics"},
    "rules": [
        {
            "antecedent": "sku:shoe-run-42",
            "consequent": "cat:sports",
            "support": 0.1,
            "confidence": 0.6,
            "lift": 3.0,
        },
        {
            "antecedent": "cat:home",
            "consequent": "cat:coffee",
            "support": 0.05,
            "confidence": 0.4,
            "lift": 2.0,
        },
    ],
}


def weights(**named: float) -> npt.NDArray[np.float32]:
    """A weight vector over FEATURE_NAMES: the named columns as given, every other 0."""
    w = np.zeros(F, dtype=np.float32)
    for name, value in named.items():
        w[FEATURE_NAMES.index(name)] = value
    return w


def logistic_model(
    folder: Path, w: npt.NDArray[np.float32], bias: float, version: str, *, nan: bool = False
) -> tuple[Path, Path]:
    """``folder/<version>.onnx`` and its manifest; ``nan``: the graph adds NaN to every score (a broken model)."""
    blob = gemm_model(
        w.reshape(F, 1),
        bias,
        input_name=INPUT_NAME,
        nan=nan,
        props={RULES_KEY: json.dumps(RULES)},
        name="ope-test",
    )
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path, manifest_path = folder / f"{version}.onnx", folder / f"{version}.json"
    onnx_path.write_bytes(blob)
    manifest = {
        "name": "offers",
        "version": version,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "inputs": {INPUT_NAME: list(FEATURE_NAMES)},
        "output": "score",
        "categories": list(CATEGORIES),
        "trained_on": {"seed": 0, "rows": 1, "holdout_auc": 0.5},
    }
    manifest_path.write_text(json.dumps(manifest))
    return onnx_path, manifest_path


def offer(offer_id: str, category: str, value: float, **extra: object) -> Offer:
    body: Mapping[str, object] = {
        "id": offer_id,
        "title": offer_id.replace("-", " "),
        "template": "offer",
        "category": category,
        "value": value,
        **extra,
    }
    return Offer.model_validate(body)


def catalog() -> Catalog:
    """Six offers over six categories, one only in the cafe, one personal, one capped at one a day."""
    return Catalog(
        offers=(
            offer("o-coffee", "coffee", 2.0, zones=["cafe", "entrance"]),
            offer("o-sports", "sports", 6.0, skus=["socks-run"]),
            offer("o-home", "home", 4.0),
            offer("o-beauty", "beauty", 3.0, personal=True),
            offer("o-kids", "kids", 5.0, daily_cap_per_shopper=1),
            offer("o-electronics", "electronics", 8.0, zones=["entrance", "electronics"]),
        )
    )
