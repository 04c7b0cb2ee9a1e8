"""Child process of the durability test: writes exposures and prints each one the ledger acknowledged.

Run as ``python durability_child.py DB_PATH``; it writes until it is killed.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from edge.events import Decision
from edge.ledger import Ledger
from tests.support.clock import PinnedClock

WRITERS = 8  # concurrent producers, so a batch is always being committed when the kill lands


async def _produce(ledger: Ledger, numbers: itertools.count[int]) -> None:
    for number in numbers:
        acked = await ledger.record_exposure(
            decision_id="d",
            display_id=f"screen-{number}",
            version=number,
            shown_at_wall=1.0,
            acked_at_wall=2.0,
        )
        if acked:
            sys.stdout.write(f"{number}\n")
            sys.stdout.flush()


async def main(path: Path) -> None:
    async with Ledger(path, PinnedClock()) as ledger:
        decision = Decision(
            decision_id="d",
            display_id="screen",
            zone="z",
            at_wall=1.0,
            shopper_id=None,
            offer_id=None,
            template="fallback",
            data={},
            model_version="m",
            propensity=1.0,
            explored=False,
            holdout=False,
            personalized=False,
        )
        await ledger.record_decision(decision, keep_shopper=False)
        numbers = itertools.count()
        await asyncio.gather(*(_produce(ledger, numbers) for _ in range(WRITERS)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
