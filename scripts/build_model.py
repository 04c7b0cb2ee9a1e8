"""Build the shipped offer model reproducibly: synthetic impressions -> numpy MLP -> ONNX + manifest.

Usage: python scripts/build_model.py --out models/

Same seed, same code -> the same bytes (weights are rounded before they are written, so a different BLAS
summation order cannot change a bit of the file).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from collections import Counter
from collections.abc import Sequence
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

from edge.decide.basket import CATEGORY_PREFIX, RULES_KEY, SKU_PREFIX, BasketRules  # noqa: E402
from edge.decide.catalog import CATEGORIES, Offer  # noqa: E402
from edge.decide.features import UNIFORM_SHARE, FeatureBuilder, LocalTime  # noqa: E402
from edge.decide.manifest import DECISION_CONTEXT_NAMES, FEATURE_NAMES, N_FEATURES  # noqa: E402
from edge.events import Weather  # noqa: E402

NAME: Final = "offers"
VERSION: Final = "2026.12.1"
SEED: Final = 20261122
CONTEXT_FREE: Final = "context-free"  # models/<name>.context-free.onnx: the evaluation's baseline, never run
# 1,600 shopper visits x 40 offers: enough for a 16-unit MLP to find the per-category time, weather and
# trend effects and the basket's complements.
VISITS: Final = 1600
OFFERS_PER_VISIT: Final = 40
# Association rules: mined from RULE_BASKETS synthetic till receipts, kept when support, confidence and lift
# pass these floors, at most MAX_RULES_SHIPPED of them (highest lift first).
RULE_BASKETS: Final = 20_000
MIN_SUPPORT: Final = 0.002
MIN_CONFIDENCE: Final = 0.05
MIN_LIFT: Final = 1.3
MAX_RULES_SHIPPED: Final = 200
RULE_DECIMALS: Final = 4
# Shares of the synthetic world: weather known, trends known, an identified visit with a basket.
WEATHER_KNOWN: Final = 0.85
TRENDS_KNOWN: Final = 0.9
BASKET_SHARE: Final = 0.5
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


# The synthetic store's SKUs (the demo catalog, config/offers.example.toml, uses some of them).
SKUS: Final[dict[str, str]] = {
    "SPT-RUN-SHOE": "sports",
    "SPT-YOGA-MAT": "sports",
    "SPT-BOTTLE": "sports",
    "SPT-BALL": "sports",
    "APP-RUN-SOCKS": "apparel",
    "APP-TSHIRT": "apparel",
    "APP-JEANS": "apparel",
    "APP-RAIN-JACKET": "apparel",
    "COF-BEANS": "coffee",
    "COF-FLAT-WHITE": "coffee",
    "COF-ICED-LATTE": "coffee",
    "GRO-COLD-DRINK": "grocery",
    "GRO-WATER": "grocery",
    "GRO-MILK": "grocery",
    "GRO-ICE-CREAM": "grocery",
    "GRO-CAKE": "grocery",
    "ELE-PHONE": "electronics",
    "ELE-PHONE-CASE": "electronics",
    "ELE-CHARGER": "electronics",
    "ELE-HEADPHONES": "electronics",
    "BEA-SUNSCREEN": "beauty",
    "BEA-SERUM": "beauty",
    "BEA-SHAMPOO": "beauty",
    "HOM-UMBRELLA": "home",
    "HOM-SMART-BULB": "home",
    "HOM-CANDLE": "home",
    "KID-TOY": "kids",
    "KID-CRAFT-KIT": "kids",
    "KID-RAINCOAT": "kids",
}
# Planted complements: (in the basket, then this sells better, strength 0..1). Receipts hold both more often,
# and an offer promoting the second converts better when the first is in the basket.
PAIRS: Final = (
    ("SPT-RUN-SHOE", "APP-RUN-SOCKS", 1.0),
    ("ELE-PHONE", "ELE-PHONE-CASE", 0.8),
    ("ELE-PHONE", "ELE-CHARGER", 0.5),
    ("COF-BEANS", "GRO-MILK", 0.6),
    ("SPT-YOGA-MAT", "SPT-BOTTLE", 0.6),
    ("KID-TOY", "KID-CRAFT-KIT", 0.5),
    ("APP-JEANS", "APP-TSHIRT", 0.4),
)
_SKU_LIST: Final = tuple(SKUS)
_PAIRS_FROM: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    first: tuple((then, strength) for a, then, strength in PAIRS if a == first) for first, _, _ in PAIRS
}
CATEGORY_COMPLEMENT: Final = 0.4  # a category offer gets this share of its category's planted complement


@dataclass(frozen=True)
class Latent:
    """Per row, the world as it was (the model's inputs may not know it: unknown weather or trends)."""

    temp_c: Array
    wet: Array
    share: Array  # the offer's category's true share of the store's sales
    complement: Array  # planted complement strength of the basket for this offer


@dataclass(frozen=True)
class Dataset:
    features: npt.NDArray[np.float32]
    labels: Array
    truth: Array  # the true conversion probability of each row
    visits: int  # rows are visits x OFFERS_PER_VISIT, visit by visit


def _bump(hour: Array, centre: float, width: float) -> Array:
    result: Array = np.exp(-0.5 * ((hour - centre) / width) ** 2)
    return result


def _sigmoid(x: Array) -> Array:
    result: Array = 1.0 / (1.0 + np.exp(-x))
    return result


def true_logit(features: npt.NDArray[np.float32], latent: Latent) -> Array:
    """The hidden ground truth: affinity to the offer's category, discount, time of day per category, crowd;
    hot days -> cold drinks (grocery) and sun cream, cold days -> hot coffee, rain -> umbrellas and kids'
    raincoats; the basket's complements ("running shoes -> socks"); the categories trending in the store."""
    x = features.astype(np.float64)
    col = {name: x[:, i] for i, name in enumerate(FEATURE_NAMES)}
    hour = (np.arctan2(col["hour_sin"], col["hour_cos"]) % (2 * np.pi)) * 24 / (2 * np.pi)
    weekend = col["weekend"]
    hot = _sigmoid((latent.temp_c - 24.0) / 2.0)
    cold = _sigmoid((6.0 - latent.temp_c) / 3.0)
    wet = latent.wet
    by_category = {
        "coffee": 1.6 * _bump(hour, 8.5, 1.5) - 0.6 * hot + 0.7 * cold,
        "grocery": 1.0 * _bump(hour, 18.0, 1.5) + 1.6 * hot,
        "electronics": 0.9 * _bump(hour, 20.0, 2.0) + 0.4 * weekend,
        "beauty": 0.7 * _bump(hour, 13.0, 2.0) + 0.6 * hot,
        "sports": 0.6 * _bump(hour, 7.5, 1.5) + 0.5 * weekend - 0.5 * wet,
        "apparel": 0.9 * weekend,
        "kids": 1.1 * weekend + 0.3 * wet,
        "home": 0.6 * weekend + 0.8 * wet,
    }
    logit = (
        -3.0
        + 3.2 * col["affinity"]
        + 2.5 * col["offer_discount"]
        - 0.35 * col["audience_log"]
        + 0.15 * col["visits_log"]
        - 0.3 * col["offer_value_log"]
        + 4.0 * (latent.share - UNIFORM_SHARE)
        + 2.2 * latent.complement
    )
    for category, effect in by_category.items():
        logit = logit + col[f"cat_{category}"] * effect
    result: Array = logit
    return result


def synthetic_basket(rng: np.random.Generator) -> list[str]:
    """One till receipt: 1-5 random SKUs, each pulling in its planted complements now and then."""
    size = 1 + min(int(rng.poisson(1.0)), 4)
    basket = [_SKU_LIST[int(i)] for i in rng.choice(len(_SKU_LIST), size=size, replace=False)]
    for sku in list(basket):
        for then, strength in _PAIRS_FROM.get(sku, ()):
            if then not in basket and rng.random() < 0.6 * strength:
                basket.append(then)
    return basket


def mine_rules(baskets: Sequence[Sequence[str]]) -> BasketRules:
    """Association rules between SKUs and between categories (support, confidence, lift), bounded."""
    n = len(baskets)
    singles: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for basket in baskets:
        skus = sorted({SKU_PREFIX + sku for sku in basket})
        categories = sorted({CATEGORY_PREFIX + SKUS[sku] for sku in basket})
        singles.update(skus)
        singles.update(categories)
        pairs.update(itertools.permutations(skus, 2))
        pairs.update(itertools.permutations(categories, 2))
    rules = []
    for (first, then), both in pairs.items():
        support = both / n
        confidence = both / singles[first]
        lift = confidence / (singles[then] / n)
        if support >= MIN_SUPPORT and confidence >= MIN_CONFIDENCE and lift >= MIN_LIFT:
            rules.append((first, then, support, confidence, lift))
    rules.sort(key=lambda r: (-r[4], -r[3], r[0], r[1]))
    return BasketRules.model_validate(
        {
            "skus": dict(sorted(SKUS.items())),
            "rules": [
                {
                    "antecedent": first,
                    "consequent": then,
                    "support": round(support, RULE_DECIMALS),
                    "confidence": round(confidence, RULE_DECIMALS),
                    "lift": round(lift, RULE_DECIMALS),
                }
                for first, then, support, confidence, lift in rules[:MAX_RULES_SHIPPED]
            ],
        }
    )


def synthetic_offers(rng: np.random.Generator) -> list[Offer]:
    offers = []
    for i in range(OFFERS_PER_VISIT * 4):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        own = [sku for sku, of in SKUS.items() if of == category]
        skus: list[str] = []
        if rng.random() < 0.6:  # the rest promote their whole category
            skus = sorted({own[int(j)] for j in rng.integers(len(own), size=int(rng.integers(1, 3)))})
        offers.append(
            Offer(
                id=f"synthetic-{i}",
                title=f"synthetic {i}",
                category=category,
                skus=tuple(skus),
                value=float(np.clip(rng.lognormal(1.5, 0.8), 0.0, 200.0)),
                discount=float(rng.choice([0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5])),
            )
        )
    return offers


def planted_complement(basket: Sequence[str], offer: Offer) -> float:
    """The true pull of ``basket`` on ``offer``: its SKUs' planted strength, a share of it for a category."""
    best = 0.0
    for sku in basket:
        for then, strength in _PAIRS_FROM.get(sku, ()):
            if then in offer.skus:
                best = max(best, strength)
            elif not offer.skus and SKUS[then] == offer.category:
                best = max(best, CATEGORY_COMPLEMENT * strength)
    return best


def synthetic_trends(rng: np.random.Generator) -> dict[str, float]:
    """A store-week's category shares of sales: some spread, and half the time one category trending."""
    shares = rng.dirichlet(np.full(len(CATEGORIES), 4.0))
    if rng.random() < 0.5:
        shares[int(rng.integers(len(CATEGORIES)))] += 0.3
        shares = shares / shares.sum()
    return {category: round(float(v), 4) for category, v in zip(CATEGORIES, shares, strict=True)}


def synthetic_data(rng: np.random.Generator, rules: BasketRules, visits: int = VISITS) -> Dataset:
    """Impressions built through the gateway's own FeatureBuilder, so training and serving cannot drift."""
    pool = synthetic_offers(rng)
    builder = FeatureBuilder(pool, rules=rules)  # the whole pool once; each visit takes its rows
    blocks = []
    latents: list[list[float]] = []
    for _ in range(visits):
        chosen = rng.choice(len(pool), size=OFFERS_PER_VISIT, replace=False)
        when = LocalTime(weekday=int(rng.integers(7)), minute=int(rng.integers(7 * 60, 22 * 60)), day=739_000)
        profile = None
        basket: list[str] = []
        if rng.random() < 0.6:
            profile = {
                "affinity": dict(
                    zip(CATEGORIES, rng.beta(0.6, 1.5, size=len(CATEGORIES)).tolist(), strict=True)
                ),
                "visits": int(rng.geometric(0.1)) - 1,
            }
            if rng.random() < BASKET_SHARE:
                basket = synthetic_basket(rng)
        temp_c = float(np.clip(rng.normal(13.0, 9.0), -15.0, 38.0))
        wet = bool(rng.random() < (0.35 if temp_c < 20.0 else 0.15))
        weather = Weather(temp_c, wet, None, 0.0, "cloud") if rng.random() < WEATHER_KNOWN else None
        trends = synthetic_trends(rng)
        seen = trends if rng.random() < TRENDS_KNOWN else None
        matrix = builder.fill(profile, int(rng.poisson(2.0)), when, weather, tuple(basket), seen)
        blocks.append(matrix[chosen])
        for index in chosen:
            offer = pool[int(index)]
            latents.append([temp_c, float(wet), trends[offer.category], planted_complement(basket, offer)])
    features = np.concatenate(blocks)
    world = np.asarray(latents, dtype=np.float64)
    latent = Latent(world[:, 0], world[:, 1], world[:, 2], world[:, 3])
    truth = _sigmoid(true_logit(features, latent))
    labels = (rng.random(len(features)) < truth).astype(np.float64)
    return Dataset(features, labels, truth, visits)


_NEUTRAL: Final = {name: UNIFORM_SHARE if name == "trend_share" else 0.0 for name in DECISION_CONTEXT_NAMES}
CONTEXT_COLUMNS: Final = tuple(FEATURE_NAMES.index(name) for name in DECISION_CONTEXT_NAMES)


def without_context(features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The rows as the context-free model sees them: weather, basket and trends at their neutral values."""
    neutral = features.copy()
    for name, value in _NEUTRAL.items():
        neutral[:, FEATURE_NAMES.index(name)] = value
    return neutral


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


def top_choice_conversion(scores: Array, truth: Array) -> float:
    """Mean true conversion probability of the highest-scored offer of each visit (rows grouped by visit)."""
    by_visit = scores.reshape(-1, OFFERS_PER_VISIT)
    best = by_visit.argmax(axis=1)
    return float(truth.reshape(-1, OFFERS_PER_VISIT)[np.arange(len(best)), best].mean())


def evaluate(contextual: Array, context_free: Array, data: Dataset) -> dict[str, float]:
    """Held-out AUC of both models and the expected conversion of each one's top choice per visit."""
    top = top_choice_conversion(contextual, data.truth)
    top_free = top_choice_conversion(context_free, data.truth)
    return {
        "holdout_auc": round(auc(data.labels, contextual), 3),
        "context_free_auc": round(auc(data.labels, context_free), 3),
        "top_choice_conversion": round(top, 4),
        "context_free_top_choice_conversion": round(top_free, 4),
        "uplift": round(top - top_free, 4),
    }


def onnx_model(
    weights: list[npt.NDArray[np.float32]], rules: BasketRules | None, *, context_free: bool = False
) -> onnx.ModelProto:
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
    what = "context-free baseline (evaluation only, never run)" if context_free else "synthetic data"
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=VERSION,
        doc_string=f"{NAME} {VERSION}, {what} seed {SEED}",
    )
    model.ir_version = IR_VERSION
    model.model_version = int(VERSION.replace(".", ""))
    if rules is not None:  # inside the file, so the model's sha256 pins its rules (edge/decide/basket.py)
        rules_json = json.dumps(rules.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        helper.set_model_props(model, {RULES_KEY: rules_json})
    onnx.checker.check_model(model, full_check=True)
    return model


def fit(
    x: Array, labels: Array, train_idx: npt.NDArray[np.intp], rng: np.random.Generator, *, context_free: bool
) -> list[npt.NDArray[np.float32]]:
    """Train on the rows ``train_idx`` of ``x``; the rounded, standardisation-folded float32 weights.

    The context-free model sees the context columns constant (neutral), so after standardisation they are 0
    and never move the output; their first-layer weights are then zeroed, so the shipped baseline ignores
    those columns whatever it is fed.
    """
    mean = x[train_idx].mean(axis=0)
    std = x[train_idx].std(axis=0)
    std[std == 0] = 1.0
    model = train((x[train_idx] - mean) / std, labels[train_idx], rng)
    if context_free:
        model.w1[list(CONTEXT_COLUMNS), :] = 0.0
    return fold_and_round(model, mean, std)


def build(out_dir: Path) -> dict[str, object]:
    rng = np.random.default_rng(SEED)
    rules = mine_rules([synthetic_basket(rng) for _ in range(RULE_BASKETS)])
    data = synthetic_data(rng, rules)
    x = data.features.astype(np.float64)
    x_free = without_context(data.features).astype(np.float64)
    # Whole visits are held out, so each held-out visit still has its OFFERS_PER_VISIT candidates.
    visits = rng.permutation(data.visits)
    n_holdout = int(data.visits * HOLDOUT_SHARE)
    rows = np.arange(len(x)).reshape(data.visits, OFFERS_PER_VISIT)
    test_idx = np.sort(rows[visits[:n_holdout]].reshape(-1))
    train_idx = rows[visits[n_holdout:]].reshape(-1)
    weights = fit(x, data.labels, train_idx, rng, context_free=False)
    weights_free = fit(x_free, data.labels, train_idx, rng, context_free=True)
    held_out = Dataset(data.features[test_idx], data.labels[test_idx], data.truth[test_idx], n_holdout)
    evaluation = evaluate(
        Mlp(*(w.astype(np.float64) for w in weights)).forward(x[test_idx])[1],
        Mlp(*(w.astype(np.float64) for w in weights_free)).forward(x_free[test_idx])[1],
        held_out,
    )

    blob = onnx_model(weights, rules).SerializeToString()
    blob_free = onnx_model(weights_free, None, context_free=True).SerializeToString()
    manifest: dict[str, object] = {
        "name": NAME,
        "version": VERSION,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "inputs": {"features": list(FEATURE_NAMES)},
        "output": "score",
        "categories": list(CATEGORIES),
        "trained_on": {
            "seed": SEED,
            "rows": len(train_idx),
            **evaluation,
            "basket_rules": len(rules.rules),
            "context_free_sha256": hashlib.sha256(blob_free).hexdigest(),
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{NAME}.onnx").write_bytes(blob)
    (out_dir / f"{NAME}.{CONTEXT_FREE}.onnx").write_bytes(blob_free)
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
