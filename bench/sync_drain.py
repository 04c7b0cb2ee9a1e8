"""sync_drain: a backlog in the outbox -> the reference profile store, events per second (target >= 5k/s).

The reference store runs as its own process (``profile-store``, SQLite), as in a pilot. The
baseline, in the same run, POSTs the very same batches straight from memory with a bare aiohttp client:
what the server alone allows. The gap between the two is the gateway's own cost (peek, encode, ack).

    python -m bench.sync_drain
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from edge.clock import SystemClock
from edge.ledger import Ledger
from edge.sync.client import CloudClient
from edge.sync.push import Pusher
from edge.sync.wire import EventClass

STORE = "bench-store"
BATCH = 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(workdir: Path) -> Iterator[tuple[str, str]]:
    port = _free_port()
    admin = secrets.token_urlsafe(24)
    env = {**os.environ, "BENCH_ADMIN_TOKEN": admin}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "profilestore",
            "--db",
            f"sqlite:///{workdir / 'cloud.db'}",
            "--listen",
            f"127.0.0.1:{port}",
            "--admin-token-env",
            "BENCH_ADMIN_TOKEN",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the profile store did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", admin
    finally:
        process.terminate()
        process.wait(10)


async def _register(base: str, admin: str) -> str:
    token = secrets.token_urlsafe(24)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as session,
        session.put(f"{base}/admin/v1/stores/{STORE}", json={"token": token}) as response,
    ):
        response.raise_for_status()
    return token


def _exposure(index: int) -> dict[str, object]:
    return {
        "decision_id": f"0193a1b2-0000-7000-8000-{index:012d}",
        "display_id": "screen-cafe",
        "version": 1_800_000_000_000 + index,
        "shown_at": "2026-11-22T10:00:00Z",
        "acked_at": "2026-11-22T10:00:00Z",
    }


async def _filled(workdir: Path, events: int) -> Ledger:
    ledger = Ledger(workdir / f"ledger-{secrets.token_hex(4)}.sqlite", SystemClock())
    await ledger.__aenter__()
    await asyncio.gather(
        *(ledger.outbox.enqueue("exposure", EventClass.TELEMETRY, _exposure(i)) for i in range(events))
    )
    return ledger


async def _drain_once(base: str, token: str, workdir: Path, events: int) -> float:
    """The gateway's path: peek a batch from SQLite, POST it, ack (delete) it, until empty."""
    ledger = await _filled(workdir, events)
    try:
        async with CloudClient(base, STORE, token) as client:
            pusher = Pusher(
                ledger.outbox,
                ledger.dead_letters,
                client,
                SystemClock(),
                batch_events=BATCH,
                batch_bytes=512 * 1024,
            )
            started = time.perf_counter()
            drained = await pusher.drain()
            seconds = time.perf_counter() - started
    finally:
        await ledger.__aexit__(None, None, None)
    if drained != events:
        raise RuntimeError(f"drained {drained} of {events}")
    return events / seconds


async def _baseline_once(base: str, token: str, workdir: Path, events: int) -> float:
    """The same events, read out of an outbox beforehand, POSTed from memory: the server's own limit."""
    ledger = await _filled(workdir, events)
    try:
        entries = await ledger.outbox.peek(events, 1 << 40)
        bodies = [entry.body for entry in entries]
        ids = [entry.event_id for entry in entries]
    finally:
        await ledger.__aexit__(None, None, None)
    async with CloudClient(base, STORE, token) as client:
        started = time.perf_counter()
        for start in range(0, events, BATCH):
            await client.push(bodies[start : start + BATCH], ids[start : start + BATCH])
        seconds = time.perf_counter() - started
    return events / seconds


def run(*, repeats: int = 3, events: int = 20_000) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with _server(workdir) as (base, admin):

            async def measure() -> tuple[list[float], list[float]]:
                token = await _register(base, admin)
                drains, baselines = [], []
                for _ in range(repeats):
                    baselines.append(await _baseline_once(base, token, workdir, events))
                    drains.append(await _drain_once(base, token, workdir, events))
                return drains, baselines

            drains, baselines = asyncio.run(measure())
    median = statistics.median(drains)
    return {
        "events_per_s": round(median),
        "min": round(min(drains)),
        "max": round(max(drains)),
        "baseline_events_per_s": round(statistics.median(baselines)),
        "ratio_to_baseline": round(median / statistics.median(baselines), 2),
        "events": events,
        "batch": BATCH,
        "repeats": repeats,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
