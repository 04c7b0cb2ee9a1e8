"""One decision over 50 offers vs a bare ``session.run`` on the same 50-row matrix, measured in the same run.

Usage: python bench/bench_decision.py [--repeats 5]   (prints JSON)
Target (DESIGN.md): p50 <= 100 us, p99 <= 300 us, p99 ratio to the bare run <= 4.

Every decision carries the store's weather and 7-day trends; a third of the shoppers hold a basket of SKUs the
shipped model's basket rules know (running shoes, a phone, ...), with SKUs on some offers (issue 16).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnxruntime as ort

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from edge.clock import ManualClock  # noqa: E402
from edge.config.decisions import PolicySettings  # noqa: E402
from edge.decide.catalog import CATEGORIES, Catalog, Offer  # noqa: E402
from edge.decide.features import FeatureBuilder  # noqa: E402
from edge.decide.policy import DecisionEngine  # noqa: E402
from edge.decide.record import candidates_of  # noqa: E402
from edge.decide.scorer import load_model  # noqa: E402
from edge.events import DecisionContext, Purpose, Weather  # noqa: E402

OFFERS = 50
WARMUP = 500
DECISIONS = 2000
ZONES = ("entrance", "fitting-rooms", "cafe", "electronics")
DISPLAYS = tuple((f"display-{i}", ZONES[i % len(ZONES)]) for i in range(8))
SHOPPERS = 400
STEP_S = 7.0  # clock moves between decisions so windows, days, caps and cooldowns all change
CONSENTS = frozenset({Purpose.PERSONALIZATION, Purpose.MEASUREMENT})
# SKUs of the shipped model's synthetic store (scripts/build_model.py): offers promote some, baskets hold some.
OFFER_SKUS = ("APP-RUN-SOCKS", "ELE-PHONE-CASE", "GRO-MILK", "SPT-BOTTLE", "GRO-COLD-DRINK")
BASKETS = (("SPT-RUN-SHOE",), ("ELE-PHONE", "NOT-A-SKU"), ("COF-BEANS", "KID-TOY", "APP-JEANS"))
WEATHER = Weather(temp_c=27.5, precipitation=False, forecast_max_c=30.0, observed_wall=0.0, source="cloud")
# Read-only, as the context service hands its trends out (edge/context/trends.py).
TRENDS = MappingProxyType(
    {"apparel": 0.22, "beauty": 0.08, "coffee": 0.18, "electronics": 0.1, "grocery": 0.2, "home": 0.07}
)


def bench_catalog() -> Catalog:
    offers = []
    for i in range(OFFERS):
        windows: list[dict[str, Any]] = []
        if i % 5 == 1:
            windows = [{"start": "07:00", "end": "22:00"}]
        elif i % 5 == 2:
            windows = [{"days": [0, 1, 2, 3, 4], "start": "06:00", "end": "01:00"}]
        offers.append(
            Offer.model_validate(
                {
                    "id": f"offer-{i:02d}",
                    "title": f"Offer {i}",
                    "category": CATEGORIES[i % len(CATEGORIES)],
                    "skus": [OFFER_SKUS[i % len(OFFER_SKUS)]] if i % 3 == 1 else [],
                    "value": float(1 + (i * 7) % 40),
                    "discount": (i % 6) * 0.05,
                    "zones": [] if i % 4 == 0 else [ZONES[i % len(ZONES)], ZONES[(i + 1) % len(ZONES)]],
                    "windows": windows,
                    "personal": i % 3 == 0,
                    "daily_cap_per_shopper": 3,
                    "display_cooldown_s": 120.0,
                    "priority": i % 3,
                    "data": {"headline": f"Offer {i}"},
                }
            )
        )
    return Catalog(offers=tuple(offers))


def profile(i: int) -> dict[str, Any]:
    rng = random.Random(i)
    return {
        "affinity": {category: round(rng.random(), 2) for category in CATEGORIES if rng.random() < 0.6},
        "visits": rng.randrange(60),
        "segment": rng.choice(["new", "regular", "vip"]),
    }


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    values = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def one_repeat(model_dir: Path, seed: int) -> dict[str, float]:
    catalog = bench_catalog()
    scorer = load_model(model_dir / "offers.onnx", model_dir / "offers.json")
    clock = ManualClock(wall=1_800_000_000.0)
    engine = DecisionEngine(catalog, scorer, PolicySettings(tz="Europe/Berlin"), clock, random.Random(seed))
    profiles = [profile(i) for i in range(SHOPPERS)]
    contexts = []
    for i in range(WARMUP + DECISIONS):
        display, zone = DISPLAYS[i % len(DISPLAYS)]
        shopper = i % SHOPPERS
        basket = BASKETS[shopper % len(BASKETS)] if shopper % 3 == 0 else ()
        contexts.append((display, zone, f"shopper-{shopper}", profiles[shopper], 1 + i % 4, basket))
    first = DecisionContext(
        "display-0", "cafe", clock.wall(), 2, "shopper-0", profiles[0], WEATHER, BASKETS[0], TRENDS
    )
    matrix = FeatureBuilder(catalog, "Europe/Berlin", scorer.basket_rules).build(first)
    session = scorer.session
    feeds = {"features": matrix}
    outputs = ["score"]
    bound = scorer.bind(matrix.copy())  # how the engine runs the model: IOBinding on a fixed buffer
    decision_ns: list[int] = []
    baseline_ns: list[int] = []
    bound_ns: list[int] = []
    offers_shown = 0
    for i, (display, zone, shopper, prof, audience, basket) in enumerate(contexts):
        clock.advance(STEP_S)
        ctx = DecisionContext(display, zone, clock.wall(), audience, shopper, prof, WEATHER, basket, TRENDS)
        # Interleaved, so a noisy moment on the machine hits both series alike.
        t0 = time.perf_counter_ns()
        decision = engine.decide(ctx, CONSENTS)
        t1 = time.perf_counter_ns()
        session.run(outputs, feeds)
        t2 = time.perf_counter_ns()
        bound()
        t3 = time.perf_counter_ns()
        if i >= WARMUP:
            decision_ns.append(t1 - t0)
            baseline_ns.append(t2 - t1)
            bound_ns.append(t3 - t2)
            offers_shown += decision.offer_id is not None
        # Freed here, not inside the next timing: in the gateway the record outlives the decision call.
        del decision
    p50, p99 = percentiles(decision_ns)
    b50, b99 = percentiles(baseline_ns)
    i50, i99 = percentiles(bound_ns)
    c50, c99 = candidates_cost()
    return {
        "p50_us": round(p50, 2),
        "p99_us": round(p99, 2),
        "baseline_p50_us": round(b50, 2),
        "baseline_p99_us": round(b99, 2),
        "ratio_p99": round(p99 / b99, 2),
        "bound_run_p50_us": round(i50, 2),
        "bound_run_p99_us": round(i99, 2),
        "candidates_p50_us": round(c50, 2),
        "candidates_p99_us": round(c99, 2),
        "offer_share": round(offers_shown / DECISIONS, 3),
    }


def candidates_cost() -> tuple[float, float]:
    """What building the record's 50 Candidate objects costs alone (part of every decision)."""
    ids = tuple(f"offer-{i:02d}" for i in range(OFFERS))
    eligible = [i % 3 != 0 for i in range(OFFERS)]
    scores = np.random.default_rng(0).random(OFFERS).tolist()
    reasons = ["" if ok else "zone" for ok in eligible]
    samples = []
    for i in range(WARMUP + DECISIONS):
        t0 = time.perf_counter_ns()
        candidates_of(ids, eligible, scores, reasons)
        t1 = time.perf_counter_ns()
        if i >= WARMUP:
            samples.append(t1 - t0)
    return percentiles(samples)


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
    }


def run(repeats: int = 5, model_dir: Path | None = None) -> dict[str, Any]:
    model_dir = model_dir or REPO_ROOT / "models"
    runs = [one_repeat(model_dir, seed) for seed in range(repeats)]
    result: dict[str, Any] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    result.update(
        {
            "p50_spread": spread([r["p50_us"] for r in runs]),
            "p99_spread": spread([r["p99_us"] for r in runs]),
            "ratio_p99_spread": spread([r["ratio_p99"] for r in runs]),
            "runs": runs,
            "offers": OFFERS,
            "decisions_per_repeat": DECISIONS,
            "machine": machine(),
            "command": "python bench/bench_decision.py --repeats " + str(repeats),
            "targets": {"p50_us": 100, "p99_us": 300, "ratio_p99": 4},
        }
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="decision latency benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    print(json.dumps(run(parser.parse_args().repeats), indent=2))
