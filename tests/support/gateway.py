"""Run the real gateway in-process for a test: ready, connected, and stopped gracefully afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from edge.clock import Clock
from edge.config import GatewaySettings
from edge.daemon import Gateway


@contextlib.asynccontextmanager
async def running_gateway(
    settings: GatewaySettings, *, clock: Clock | None = None, config_path: Path | None = None
) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings, clock=clock, config_version="test", config_path=config_path)
    task = asyncio.create_task(gateway.run())
    try:
        await asyncio.wait_for(gateway.ready.wait(), 10)
        assert gateway.link is not None
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        yield gateway
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 10)
