"""What the decision's context costs (issue 16, section 1): no target of its own, it must stay small next to the
decision's p99 of 300 us.

- ``inputs``: ``StoreContext.decision_inputs`` for a personalised decision (the weather's freshness, a basket
  lookup, the trends mapping), the only work the context adds on the decision path. 200,000 calls after 20,000
  warm-up, on a store holding 2,000 baskets of 50 SKUs; p50 and p99 in ns over 1,000-call batches.
- ``trends``: one refresh of the local trends over a week of 50,000 sales of 4 lines each (200,000 lines,
  2,000 SKUs, a quarter without a POS category), in a real ledger file: the read on the ledger's thread and
  the fold into categories, in ms.

``python -m bench.context_inputs [--runs N]``: the median and the spread (min..max) over N runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.clock import ManualClock
from edge.config.context import ContextSettings
from edge.context.service import StoreContext
from edge.context.weather import Reading, WeatherSource
from edge.events import Purpose
from edge.ledger import Ledger
from edge.ledger.conversions import Conversion, SaleLine
from edge.sources.payloads import RejectCounter
from edge.transport.topics import Topics

CALLS = 200_000
WARMUP = 20_000
BATCH = 1_000
BASKETS = 2_000
SALES = 50_000
LINES = 4
SKUS = 2_000
CATEGORIES = ("apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports")
DAY = 86_400.0
FILL_STEP = 256  # the ledger's default batch


class _Granted:
    """Every shopper has personalization (the basket is read on every call)."""

    def has(self, _shopper: str, purpose: Purpose) -> bool:
        return purpose is Purpose.PERSONALIZATION

    def subscribe(self, _callback: object) -> None:
        return None


async def _context(ledger: Ledger, clock: ManualClock) -> StoreContext:
    context = StoreContext(
        ContextSettings(),
        ledger=ledger,
        clock=clock,
        topics=Topics("store/bench"),
        rejects=RejectCounter(),
        consents=_Granted(),  # type: ignore[arg-type]
        in_store=lambda _shopper: True,
        sku_categories=lambda: {f"sku-{i}": CATEGORIES[i % len(CATEGORIES)] for i in range(0, SKUS, 4)},
    )
    context.weather.offer(Reading(24.0, False, 27.0, clock.wall() - 600), WeatherSource.CLOUD)
    for shopper in range(BASKETS):
        context.baskets.add(f"p-{shopper}", [f"sku-{(shopper + i) % SKUS}" for i in range(50)])
    return context


def _inputs(context: StoreContext, clock: ManualClock) -> dict[str, float]:
    shoppers = [f"p-{i % BASKETS}" for i in range(CALLS + WARMUP)]
    now = clock.wall()
    decide = context.decision_inputs
    for shopper in shoppers[:WARMUP]:
        decide(shopper, personal=True, now_wall=now)
    per_call: list[float] = []
    for start in range(WARMUP, WARMUP + CALLS, BATCH):
        batch = shoppers[start : start + BATCH]
        began = time.perf_counter_ns()
        for shopper in batch:
            decide(shopper, personal=True, now_wall=now)
        per_call.append((time.perf_counter_ns() - began) / BATCH)
    cuts = statistics.quantiles(per_call, n=100)
    return {"p50_ns": round(cuts[49], 1), "p99_ns": round(cuts[98], 1)}


async def _fill(ledger: Ledger, clock: ManualClock, rng: random.Random) -> None:
    """The sales, 256 at a time: the ledger batches concurrent writes into one commit."""
    now = clock.wall()
    pending = []
    for sale in range(SALES):
        at = now - rng.uniform(0, 8 * DAY)  # an eighth of them older than the week
        lines = tuple(
            SaleLine(
                f"sku-{(sku := rng.randrange(SKUS))}",
                1,
                2.5,
                None if sku % 4 == 0 else CATEGORIES[sku % len(CATEGORIES)],
            )
            for _ in range(LINES)
        )
        conversion = Conversion(f"s-{sale}", at, at, "lane-1", None, 10.0, "EUR", lines)
        pending.append(ledger.record_conversion(conversion, None))
        if len(pending) == FILL_STEP:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def run_once(folder: Path, seed: int) -> dict[str, Any]:
    clock = ManualClock(wall=1_800_000_000.0)
    async with Ledger(folder / f"ledger-{seed}.db", clock) as ledger:
        await _fill(ledger, clock, random.Random(seed))
        context = await _context(ledger, clock)
        began = time.perf_counter()
        trends = await context.trends.refresh()
        refresh_ms = (time.perf_counter() - began) * 1000
        assert trends is not None
        return {**_inputs(context, clock), "trends_refresh_ms": round(refresh_ms, 1)}


async def main(runs: int) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(runs):
            results.append(await run_once(Path(folder), seed))
    summary: dict[str, Any] = {}
    for key in results[0]:
        values = [result[key] for result in results]
        summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    print(json.dumps(asyncio.run(main(parser.parse_args().runs)), indent=1))
