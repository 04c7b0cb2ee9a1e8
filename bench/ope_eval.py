"""Off-policy evaluation at scale: ``edge.measure.ope.evaluate`` over N logged decisions of a real ledger.

The decisions come from the real engine (six offers, the running model of tests/support/ope.py) with their
logged contexts, written through the ledger's own ``record_decisions``; their rewards come from the report's
attribution query. Each repeat evaluates a candidate against the running model in a fresh child process:
wall seconds, decisions per second and the child's peak RSS. Also the logged context's size per decision.

Run: ``.venv/bin/python -m bench.ope_eval [--decisions N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.clock import ManualClock
from edge.config.decisions import PolicySettings
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import load_model
from edge.events import DecisionContext, Purpose, Weather
from edge.ledger import Ledger
from tests.support.ope import BASKET_SKUS, catalog, logistic_model, weights

DECISIONS = 100_000
START = 1_803_400_000.0
POLICY = PolicySettings(epsilon=0.2, holdout_percent=5.0, tz="UTC")
CONSENTS = frozenset({Purpose.PERSONALIZATION, Purpose.MEASUREMENT})
TRENDS = {"coffee": 0.3, "sports": 0.2, "home": 0.2, "kids": 0.1, "electronics": 0.2}


def build(folder: Path, n: int) -> Path:
    running = load_model(*logistic_model(folder, weights(affinity=1.0, cat_sports=0.5), -2.0, "running-1"))
    logistic_model(folder, weights(affinity=2.0, basket_complement=1.0, temp_scaled=0.5), -2.5, "candidate-2")
    clock = ManualClock(wall=START)
    engine = DecisionEngine(catalog(), running, POLICY, clock, random.Random(1))
    rng = np.random.default_rng(1)
    path = folder / "ledger.db"

    async def fill() -> None:
        async with Ledger(path, clock, outbox_max_bytes=None, retention_days=365) as ledger:
            batch = []
            for i in range(n):
                clock.advance(float(rng.uniform(1.0, 30.0)))
                profile = {"visits": int(rng.integers(0, 50)), "affinity": {"coffee": float(rng.random())}}
                ctx = DecisionContext(
                    f"display-{i % 20}",
                    ("entrance", "cafe", "electronics", "floor")[i % 4],
                    clock.wall(),
                    int(rng.integers(0, 5)),
                    f"shopper-{int(rng.integers(0, 20_000))}",
                    profile,
                    Weather(float(rng.normal(18, 8)), bool(rng.random() < 0.3), None, clock.wall(), "cloud"),
                    tuple(
                        str(s) for s in rng.choice(BASKET_SKUS, size=int(rng.integers(0, 3)), replace=False)
                    ),
                    TRENDS,
                )
                batch.append((engine.decide(ctx, CONSENTS), True))
                if len(batch) == 1_000:
                    await ledger.record_decisions(batch)
                    batch = []
            if batch:
                await ledger.record_decisions(batch)

    asyncio.run(fill())
    return path


def child(folder: Path) -> dict[str, Any]:
    from edge.ledger.measure import decision_rewards  # noqa: PLC0415
    from edge.measure.ope import evaluate  # noqa: PLC0415

    candidate = load_model(folder / "candidate-2.onnx", folder / "candidate-2.json")
    running = load_model(folder / "running-1.onnx", folder / "running-1.json")
    offers = catalog()
    started = time.perf_counter()
    with sqlite3.connect(f"{(folder / 'ledger.db').resolve().as_uri()}?mode=ro", uri=True) as conn:
        result = evaluate(
            conn,
            candidate=candidate,
            running=running,
            catalog=offers,
            policy=POLICY,
            since=START,
            until=START + 400 * 86_400,
            window_s=14 * 86_400,
            rewards=decision_rewards,
        )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "n": result.candidate.n,
        "skipped": dict(result.candidate.skipped),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(decisions: int = DECISIONS, repeats: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = build(folder, decisions)
        with sqlite3.connect(path) as conn:
            sizes = [row[0] for row in conn.execute("SELECT length(context) FROM decisions")]
        runs = []
        for _ in range(repeats):
            done = subprocess.run(
                [sys.executable, "-m", "bench.ope_eval", "--child", str(folder)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(done.stdout))
    seconds = [r["seconds"] for r in runs]
    return {
        "decisions": decisions,
        "evaluated": runs[0]["n"],
        "seconds": {"min": min(seconds), "median": statistics.median(seconds), "max": max(seconds)},
        "decisions_per_s": round(decisions / statistics.median(seconds)),
        "rss_mb": {
            "median": statistics.median(r["rss_mb"] for r in runs),
            "max": max(r["rss_mb"] for r in runs),
        },
        "context_bytes": {"mean": statistics.fmean(sizes), "max": max(sizes)},
        "command": f"python -m bench.ope_eval --decisions {decisions} --repeats {repeats}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="off-policy evaluation at scale")
    parser.add_argument("--decisions", type=int, default=DECISIONS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
    else:
        print(json.dumps(run(args.decisions, args.repeats), indent=2))
