"""Child process of the outbox durability test: enqueues and acks until it is killed, printing each commit.

Run as ``python outbox_durability_child.py DB_PATH MAX_BYTES TAG``. It prints ``ready`` once open, then
``E <class> <event_id>`` after each enqueue returned, ``T <seq>:<event_id> ...`` before each ack and
``A <seq>:<event_id> ...`` after it returned.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
from pathlib import Path

from edge.ledger import Ledger
from edge.sync.wire import EventClass
from tests.support.clock import PinnedClock

PRODUCERS = 6  # concurrent producers, so a batch is always being committed when the kill lands
CLASSES = (EventClass.TELEMETRY, EventClass.TELEMETRY, EventClass.CONVERSION, EventClass.PRIVACY)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _produce(ledger: Ledger, tag: str, numbers: itertools.count[int]) -> None:
    for number in numbers:
        cls = CLASSES[number % len(CLASSES)]
        event_id = f"{tag}-{number}"
        await ledger.outbox.enqueue("k", cls, {"n": number, "pad": "x" * (number % 97)}, event_id=event_id)
        _say(f"E {int(cls)} {event_id}")


async def _ack(ledger: Ledger, tag: str) -> None:
    rng = random.Random(tag)  # seeded: the same run acks the same way; the kill point is the variable
    while True:
        entries = await ledger.outbox.peek(rng.randint(1, 10), 1 << 20)
        chosen = [entry for entry in entries if rng.random() < 0.7]
        if chosen:
            pairs = " ".join(f"{entry.seq}:{entry.event_id}" for entry in chosen)
            # Said before the ack too: a kill between its commit and the "A" line leaves these gone.
            _say("T " + pairs)
            await ledger.outbox.ack([entry.seq for entry in chosen])
            _say("A " + pairs)
        # Slower than the producers, so the queue reaches its bound and telemetry is dropped too.
        await asyncio.sleep(0.01)


async def main(path: Path, max_bytes: int, tag: str) -> None:
    async with Ledger(path, PinnedClock(), outbox_max_bytes=max_bytes) as ledger:
        _say("ready")
        numbers = itertools.count()
        await asyncio.gather(_ack(ledger, tag), *(_produce(ledger, tag, numbers) for _ in range(PRODUCERS)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
