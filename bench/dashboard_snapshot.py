"""The store dashboard's snapshot (docs/dashboard.md): build and encode it for a store of 20 zones, 20 screens
and 20 recent decisions, on the real gateway over a real mosquitto (issue 17).

What an update costs the event loop: one build per update for every open page. 200 warm-up builds, then 2,000
timed; p10, p50, p90 and p99 in microseconds, and the document's size. ``python -m bench.dashboard_snapshot``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.config import load_settings
from edge.control.dashboard_view import snapshot
from tests.support import clock as timeline
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, make_store
from tests.support.wait import until

ZONES = 20
BUILDS = 2000
WARMUP = 200


async def _measure(workdir: Path) -> dict[str, Any]:
    broker = Mosquitto(workdir / "broker")
    broker.start()
    try:
        zones = tuple(f"zone-{index}" for index in range(ZONES))
        store = make_store(workdir / "store", broker.port, zones=zones)
        store.config_path.write_text(
            store.config_path.read_text() + "\n[dashboard]\nenabled = true\nport = 0\n"
        )
        async with (
            Probe(broker.port, f"{ROOT}/display/#") as probe,
            running_gateway(load_settings(store.config_path)) as gateway,
        ):
            recent = gateway.recent_decisions
            assert recent is not None
            for zone in zones:
                await probe.publish(f"{ROOT}/checkin", store.checkin("p-full", zone=zone))
            await until(lambda: recent.seen >= ZONES)
            times: list[float] = []
            body = b""
            for index in range(WARMUP + BUILDS):
                started = time.perf_counter()
                body = json.dumps(snapshot(gateway, recent), separators=(",", ":"), default=str).encode()
                if index >= WARMUP:
                    times.append((time.perf_counter() - started) * 1e6)
    finally:
        broker.stop()
    times.sort()
    return {
        "zones": ZONES,
        "screens": ZONES,
        "decisions": len(recent.rows()),
        "p10_us": round(times[len(times) // 10], 1),
        "p50_us": round(statistics.median(times), 1),
        "p90_us": round(times[len(times) * 9 // 10], 1),
        "p99_us": round(times[len(times) * 99 // 100], 1),
        "bytes": len(body),
    }


def run() -> dict[str, Any]:
    # The gateway runs on the test timeline (its tokens and consents are dated on it), as in the tests.
    os.environ.setdefault(timeline.OFFSET_VAR, str(timeline.start_timeline()))
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        return asyncio.run(_measure(Path(tmp)))


if __name__ == "__main__":
    print(json.dumps(run()))
