"""metrics_scrape: what one ``/metrics`` scrape costs the gateway, and what one latency observation costs.

Scrape: a real gateway in this process (BLE beacons and ESPresense, a camera, cloud sync against the
reference profile store in its own process; no broker, so its link backs off) is asked for ``/metrics``
through the endpoint's own handler, without the HTTP round trip: the health read, the exposition, the
encoding. The baseline in the same run is ``/healthz`` through its handler: the same health read and a short
JSON answer, so the difference is the exposition's own cost.

Observe: the gateway's lock-free ``Histogram.observe`` against ``prometheus_client.Histogram.observe`` (in a
private registry, the same buckets) in the same run.

    python -m bench.metrics_scrape
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.sync_drain import _free_port, _register, _server
from edge.config import load_settings
from edge.control.metrics import BUCKETS_S, Histogram
from edge.daemon import Gateway
from edge.identity import generate_keypair

REPO = Path(__file__).resolve().parents[1]
SCRAPES = 200  # per repeat: a scrape is ~1 ms, so a repeat is well under a second
OBSERVATIONS = 200_000  # per repeat


def _config(workdir: Path, cloud: str, token: str) -> Path:
    _, public_pem = generate_keypair()
    (workdir / "token.pem").write_bytes(public_pem)
    (workdir / "cloud-token").write_text(token)
    writer = cv2.VideoWriter(str(workdir / "cam.avi"), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
    for index in range(20):
        writer.write(np.full((240, 320, 3), 10 * index, dtype=np.uint8))
    writer.release()
    uuid = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
    beacons = "".join(
        f'[[ble.beacons]]\nname = "b{n}"\nkind = "ibeacon"\nzone = "cafe"\nuuid = "{uuid}"\nmajor = 1\nminor = {n}\n'
        for n in range(4)
    )
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "bench-store"\n[mqtt]\nport = {_free_port()}\nreconnect_max_s = 5\n'
        '[identity]\npublic_key_files = ["token.pem"]\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\n'
        f'offers_file = "{REPO / "config/offers.example.toml"}"\n'
        f'[sync]\nenabled = true\nurl = "{cloud}"\ntoken_file = "cloud-token"\n'
        '[ledger]\npath = "ledger.sqlite"\n[control]\nstate_dir = "state"\n'
        f"[health]\ninterval_s = 0.5\nmetrics_port = {_free_port()}\n"
        '[ble.espresense]\nenabled = true\nrooms = { "room-a" = "cafe" }\n'
        + beacons
        + '[[zones]]\nid = "cafe"\n[[zones]]\nid = "entrance"\n'
        + "".join(f'[[displays]]\nid = "screen-{n}"\nzone = "cafe"\n' for n in range(4))
        + '[[cameras]]\nid = "cam"\nsource = "cam.avi"\nzone = "cafe"\nloop = true\n'
    )
    return config


def _spread(samples: list[float], unit: str, digits: int = 1) -> dict[str, float]:
    return {
        f"median_{unit}": round(statistics.median(samples), digits),
        f"min_{unit}": round(min(samples), digits),
        f"max_{unit}": round(max(samples), digits),
    }


async def _time(call: Callable[[], Awaitable[Any]], count: int) -> float:
    """Microseconds per call, one batch of ``count`` calls."""
    gc.collect()
    started = time.perf_counter()
    for _ in range(count):
        await call()
    return (time.perf_counter() - started) / count * 1e6


async def _scrapes(workdir: Path, cloud: str, token: str, repeats: int) -> dict[str, Any]:
    settings = load_settings(_config(workdir, cloud, token))
    gateway = Gateway(settings, config_version="bench")
    task = asyncio.create_task(gateway.run())
    try:
        await asyncio.wait_for(gateway.ready.wait(), 15)
        deadline = time.monotonic() + 15
        while gateway.sync_health is None or gateway.metrics_server is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway's sync health never came")
            await asyncio.sleep(0.05)
        server = gateway.metrics_server
        # The handlers take no part of the request: the endpoint's work without the HTTP round trip.
        metrics = server._metrics
        healthz = server._healthz
        body = (await metrics(None)).body  # type: ignore[arg-type]
        scrape_us, healthz_us = [], []
        for _ in range(repeats):
            scrape_us.append(await _time(lambda: metrics(None), SCRAPES))  # type: ignore[arg-type]
            healthz_us.append(await _time(lambda: healthz(None), SCRAPES))  # type: ignore[arg-type]
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 15)
    return {
        "scrape": _spread(scrape_us, "us"),
        "healthz_baseline": _spread(healthz_us, "us"),
        "scrape_median_us": round(statistics.median(scrape_us), 1),
        "exposition_us": round(statistics.median(scrape_us) - statistics.median(healthz_us), 1),
        "scrape_bytes": len(body),
        "samples": sum(1 for line in body.decode().splitlines() if line and not line.startswith("#")),
    }


def _observe_ns(observe: Callable[[float], None]) -> float:
    values = [0.00002 * (i % 500) for i in range(1000)]
    gc.collect()
    started = time.perf_counter()
    for _ in range(OBSERVATIONS // len(values)):
        for value in values:
            observe(value)
    return (time.perf_counter() - started) / OBSERVATIONS * 1e9


def _observes(repeats: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry  # noqa: PLC0415 - only this benchmark needs it
    from prometheus_client import Histogram as ClientHistogram  # noqa: PLC0415

    ours = Histogram(BUCKETS_S)
    theirs = ClientHistogram("bench_seconds", "bench", buckets=BUCKETS_S, registry=CollectorRegistry())
    ours_ns, theirs_ns = [], []
    for _ in range(repeats):
        ours_ns.append(_observe_ns(ours.observe))
        theirs_ns.append(_observe_ns(theirs.observe))
    # The loop around the call is in both figures alike (~20 ns): the difference is the observation's.
    return {
        "lock_free": _spread(ours_ns, "ns", 0),
        "prometheus_client": _spread(theirs_ns, "ns", 0),
        "observe_lock_free_ns": round(statistics.median(ours_ns)),
        "observe_client_ns": round(statistics.median(theirs_ns)),
    }


def run(repeats: int = 5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp, _server(Path(tmp)) as (cloud, admin):
        workdir = Path(tmp) / "store"
        workdir.mkdir()
        token = asyncio.run(_register(cloud, admin))
        scrapes = asyncio.run(_scrapes(workdir, cloud, token, repeats))
    observes = _observes(repeats)
    return {
        **scrapes,
        "observe": observes,
        "observe_lock_free_ns": observes.pop("observe_lock_free_ns"),
        "observe_client_ns": observes.pop("observe_client_ns"),
        "repeats": repeats,
    }


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(run(), indent=2))
