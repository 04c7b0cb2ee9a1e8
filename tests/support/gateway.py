"""Run the real gateway in-process for a test: ready, connected, and stopped gracefully afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from edge.clock import Clock
from edge.config import GatewaySettings
from edge.daemon import Gateway
from edge.events import Decision
from tests.support.clock import PinnedClock

# The gateway's random source (exploration, reconnect jitter), seeded so a run can be repeated.
SEED = 12


@contextlib.asynccontextmanager
async def running_gateway(
    settings: GatewaySettings,
    *,
    clock: Clock | None = None,
    config_path: Path | None = None,
    rng: random.Random | None = None,
    observers: Sequence[Callable[[Decision], None]] = (),
) -> AsyncIterator[Gateway]:
    """``clock`` defaults to the test's timeline (tests/support/clock.py), ``rng`` to one seeded with SEED."""
    gateway = Gateway(
        settings,
        clock=clock if clock is not None else PinnedClock(),
        config_version="test",
        config_path=config_path,
        rng=rng if rng is not None else random.Random(SEED),
        observers=observers,
    )
    task = asyncio.create_task(gateway.run())
    try:
        await asyncio.wait_for(gateway.ready.wait(), 10)
        assert gateway.generation.link is not None
        await asyncio.wait_for(gateway.generation.link.connected.wait(), 10)
        yield gateway
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 10)
