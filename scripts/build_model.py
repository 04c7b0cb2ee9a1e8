"""Build the shipped offer model reproducibly: synthetic impressions -> numpy MLP -> ONNX + manifest.

Usage: python scripts/build_model.py --out models/

Same seed, same code -> the same bytes (weights are rounded before they are written, so a different BLAS
summation order cannot change a bit of the file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

# Runnable from a plain checkout (make model) as well as from an installed tree.
REPO_ROOT: Final = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from edge.decide.catalog import CATEGORIES, Offer  # noqa: E402
from edge.decide.features import FeatureBuilder, LocalTime  # noqa: E402
from edge.decide.manifest import FEATURE_NAMES, N_FEATURES  # noqa: E402

NAME: Final = "offers"
VERSION: Final = "2026.11.1"
SEED: Final = 20261122
# 1,200 shopper visits x 40 offers: enough for a 16-unit MLP to find the per-category time effects.
VISITS: Final = 1200
OFFERS_PER_VISIT: Final = 40
HIDDEN: Final = 16  # small enough that one 50-row run costs a few microseconds
ITERATIONS: Final = 600  # full-batch Adam converges well before this on ~50k rows
LEARNING_RATE: Final = 0.05
L2: Final = 1e-4
HOLDOUT_SHARE: Final = 0.2
# Rounding the weights to 1e-5 makes the file independent of float summation order (BLAS, CPU) while
# changing scores by far less than anything the policy can notice.
WEIGHT_DECIMALS: Final = 5
OPSET: Final = 17  # supported by onnxruntime >= 1.14 and by the Pi wheels
IR_VERSION: Final = 8  # the IR version that goes with opset 17
PRODUCER: Final = "edge-gateway scripts/build_model.py"

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Dataset:
    features: npt.NDArray[np.float32]
    labels: Array


def _bump(hour: Array, centre: float, width: float) -> Array:
    result: Array = np.exp(-0.5 * ((hour - centre) / width) ** 2)
    return result


def true_logit(features: npt.NDArray[np.float32]) -> Array:
    """The hidden ground truth: affinity to the offer's category, discount, time of day per category, crowd."""
    x = features.astype(np.float64)
    col = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    hour = (np.arctan2(col["hour_sin"], col["hour_cos"]) % (2 * np.pi)) * 24 / (2 * np.pi)
    weekend = col["weekend"]
    by_category = {
        "coffee": 1.6 * _bump(hour, 8.5, 1.5),
        "grocery": 1.0 * _bump(hour, 18.0, 1.5),
        "electronics": 0.9 * _bump(hour, 20.0, 2.0) + 0.4 * weekend,
        "beauty": 0.7 * _bump(hour, 13.0, 2.0),
        "sports": 0.6 * _bump(hour, 7.5, 1.5) + 0.5 * weekend,
        "apparel": 0.9 * weekend,
        "kids": 1.1 * weekend,
        "home": 0.6 * weekend,
    }
    logit = (
        -3.0
        + 3.2 * col["affinity"]
        + 2.5 * col["offer_discount"]
        - 0.35 * col["audience_log"]
        + 0.15 * col["visits_log"]
        - 0.3 * col["offer_value_log"]
    )
    for category, effect in by_category.items():
        logit = logit + col[f"cat_{category}"] * effect
    result: Array = logit
    return result


def synthetic_offers(rng: np.random.Generator) -> list[Offer]:
    offers = []
    for i in range(OFFERS_PER_VISIT * 4):
        offers.append(
            Offer(
                id=f"synthetic-{i}",
                title=f"synthetic {i}",
                category=CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                value=float(np.clip(rng.lognormal(1.5, 0.8), 0.0, 200.0)),
                discount=float(rng.choice([0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5])),
            )
        )
    return offers


def synthetic_data(rng: np.random.Generator) -> Dataset:
    """Impressions built through the gateway's own FeatureBuilder, so training and serving cannot drift."""
    pool = synthetic_offers(rng)
    blocks = []
    for _ in range(VISITS):
        chosen = rng.choice(len(pool), size=OFFERS_PER_VISIT, replace=False)
        builder = FeatureBuilder([pool[int(i)] for i in chosen])
        when = LocalTime(weekday=int(rng.integers(7)), minute=int(rng.integers(7 * 60, 22 * 60)), day=739_000)
        profile = None
        if rng.random() < 0.6:
            profile = {
                "affinity": dict(
                    zip(CATEGORIES, rng.beta(0.6, 1.5, size=len(CATEGORIES)).tolist(), strict=True)
                ),
                "visits": int(rng.geometric(0.1)) - 1,
            }
        blocks.append(builder.fill(profile, int(rng.poisson(2.0)), when).copy())
    features = np.concatenate(blocks)
    labels = (rng.random(len(features)) < 1.0 / (1.0 + np.exp(-true_logit(features)))).astype(np.float64)
    return Dataset(features, labels)


@dataclass
class Mlp:
    w1: Array
    b1: Array
    w2: Array
    b2: Array

    def forward(self, x: Array) -> tuple[Array, Array]:
        hidden: Array = np.tanh(x @ self.w1 + self.b1)
        out: Array = 1.0 / (1.0 + np.exp(-(hidden @ self.w2 + self.b2)))
        return hidden, out[:, 0]


def train(x: Array, y: Array, rng: np.random.Generator) -> Mlp:
    """Full-batch Adam on binary cross-entropy; fixed iterations, so the result depends only on the seed."""
    model = Mlp(
        w1=rng.normal(0.0, 1.0 / np.sqrt(x.shape[1]), size=(x.shape[1], HIDDEN)),
        b1=np.zeros(HIDDEN),
        w2=rng.normal(0.0, 1.0 / np.sqrt(HIDDEN), size=(HIDDEN, 1)),
        b2=np.zeros(1),
    )
    params = [model.w1, model.b1, model.w2, model.b2]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    n = len(x)
    for step in range(1, ITERATIONS + 1):
        hidden, out = model.forward(x)
        d_logit = ((out - y) / n)[:, None]
        d_hidden = (d_logit @ model.w2.T) * (1.0 - hidden**2)
        grads = [
            x.T @ d_hidden + L2 * model.w1,
            d_hidden.sum(axis=0),
            hidden.T @ d_logit + L2 * model.w2,
            d_logit.sum(axis=0),
        ]
        for i, grad in enumerate(grads):
            first[i] = beta1 * first[i] + (1 - beta1) * grad
            second[i] = beta2 * second[i] + (1 - beta2) * grad**2
            step_size = (first[i] / (1 - beta1**step)) / (np.sqrt(second[i] / (1 - beta2**step)) + eps)
            params[i] -= LEARNING_RATE * step_size  # in place: the model holds these arrays
    return model


def auc(labels: Array, scores: Array) -> float:
    """ROC AUC by the rank-sum formula (ties share their mean rank)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mean_ranks = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_ranks, counts)
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fold_and_round(model: Mlp, mean: Array, std: Array) -> list[npt.NDArray[np.float32]]:
    """Fold the input standardisation into the first layer, round, cast: [w1, b1, w2, b2] as float32."""
    w1 = model.w1 / std[:, None]
    b1 = model.b1 - (mean / std) @ model.w1
    return [np.round(p, WEIGHT_DECIMALS).astype(np.float32) for p in (w1, b1, model.w2, model.b2)]


def onnx_model(weights: list[npt.NDArray[np.float32]]) -> onnx.ModelProto:
    w1, b1, w2, b2 = weights
    initializers = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["features", "w1", "b1"], ["hidden_linear"], name="hidden_gemm"),
        helper.make_node("Tanh", ["hidden_linear"], ["hidden"], name="hidden_tanh"),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logit"], name="output_gemm"),
        helper.make_node("Sigmoid", ["logit"], ["score"], name="output_sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        NAME,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        initializers,
        doc_string="P(conversion) of one offer shown in one context; one row per candidate offer.",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=VERSION,
        doc_string=f"{NAME} {VERSION}, synthetic data seed {SEED}",
    )
    model.ir_version = IR_VERSION
    model.model_version = int(VERSION.replace(".", ""))
    onnx.checker.check_model(model, full_check=True)
    return model


def build(out_dir: Path) -> dict[str, object]:
    rng = np.random.default_rng(SEED)
    data = synthetic_data(rng)
    x = data.features.astype(np.float64)
    split = rng.permutation(len(x))
    n_holdout = int(len(x) * HOLDOUT_SHARE)
    test_idx, train_idx = split[:n_holdout], split[n_holdout:]
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    std[std == 0] = 1.0
    model = train((x[train_idx] - mean) / std, data.labels[train_idx], rng)
    weights = fold_and_round(model, mean, std)
    final = Mlp(*(w.astype(np.float64) for w in weights))
    holdout_auc = auc(data.labels[test_idx], final.forward(x[test_idx])[1])

    blob = onnx_model(weights).SerializeToString()
    manifest: dict[str, object] = {
        "name": NAME,
        "version": VERSION,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "inputs": {"features": list(FEATURE_NAMES)},
        "output": "score",
        "categories": list(CATEGORIES),
        "trained_on": {"seed": SEED, "rows": len(train_idx), "holdout_auc": round(holdout_auc, 3)},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{NAME}.onnx").write_bytes(blob)
    (out_dir / f"{NAME}.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models", help="output directory")
    args = parser.parse_args(argv)
    manifest = build(args.out)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
