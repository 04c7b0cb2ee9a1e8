"""Check-in published -> the Zigbee2MQTT light of its zone receives its command, through a real mosquitto,
against the raw two-hop echo on the same broker (issue 14: p99 <= 10 ms, ratio <= 3 at 200 check-ins/s).

The gateway runs as its own process pinned to core 0, as in bench/e2e.py, with 400 zones, each with one
screen and one Zigbee2MQTT light (`brightness`). Every check-in is a new shopper with `device_preferences`
who stays (the default 600 s timeout: no leaves during the run); each zone gets one every 2 s, and its k-th
shopper wants 10 k + 10 %, so every arrival moves the zone's median and changes its light once, and no
light's `min_interval_s` (0.5 s) holds a command back. Latency: from the check-in's publish to the arrival of the
light's `…/set` at a subscriber (matched per light, in order). 3 runs of 10 s; medians.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.e2e import (
    NODELAY,
    RATE_PER_S,
    REPO,
    STORE,
    Broker,
    _drive,
    _percentiles,
    _pinned,
    baseline,
    checkins,
)
from edge.clock import iso_utc
from edge.identity import generate_keypair

ZONES = 400


def _config(workdir: Path, port: int, shoppers: int) -> Path:
    private_pem, public_pem = generate_keypair()
    (workdir / "pub.pem").write_bytes(public_pem)
    (workdir / "private.pem").write_bytes(private_pem)
    at = iso_utc(time.time() - 86_400)
    seed = [
        {
            "id": f"p-bench{index}",
            "at": at,
            "consents": {"device_preferences": True, "measurement": True},
            # The k-th shopper of a zone wants 10 k + 10 %: each arrival moves the zone's median (never by
            # less than 5 %), so every check-in changes its light once.
            "profile": {"device_preferences": {"brightness": 10 + 10 * (index // ZONES)}},
        }
        for index in range(shoppers)
    ]
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": seed}))
    tables = "".join(
        f'[[zones]]\nid = "z{i}"\n\n[[displays]]\nid = "d{i}"\nzone = "z{i}"\nmin_display_s = 0\n\n'
        f'[[devices]]\nid = "light-{i}"\nzone = "z{i}"\nkind = "light"\nadapter = "zigbee2mqtt"\n'
        f'address = "light-z{i}"\nmin_interval_s = 0.5\nrevert_after_s = 3600\n'
        "capabilities = { brightness = { default = 100, min = 10, max = 100, step = 1 } }\n\n"
        for i in range(ZONES)
    )
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "{STORE}"\n\n[mqtt]\nport = {port}\n\n'
        '[identity]\npublic_key_files = ["pub.pem"]\nconsents_file = "shoppers.json"\n\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\noffers_file = "{REPO / "config/offers.example.toml"}"\n\n'
        '[ledger]\npath = "ledger.sqlite"\n\n[control]\nstate_dir = "state"\n\n[health]\ninterval_s = 60\n\n'
        f'[logging]\nlevel = "WARNING"\n\n{tables}'
    )
    return config


def _light_key(topic: str, _payload: Any) -> str | None:
    """``zigbee2mqtt/light-z12/set`` -> ``z12`` (the zone whose check-in it answers)."""
    return topic.split("/")[1].removeprefix("light-")


async def _wait_lights(port: int) -> None:
    """Until every light got its start-up command (the store's default)."""
    seen: set[str] = set()
    async with asyncio.timeout(60):
        async with aiomqtt.Client("127.0.0.1", port, socket_options=NODELAY) as probe:
            await probe.subscribe("zigbee2mqtt/+/set", qos=1)
            async for message in probe.messages:
                seen.add(message.topic.value)
                if len(seen) >= ZONES:
                    return


async def _gateway(workdir: Path, port: int, count: int) -> list[float]:
    config = _config(workdir, port, count)
    payloads = [
        (f"z{index % ZONES}", body)
        for index, (_, body) in enumerate(checkins((workdir / "private.pem").read_bytes(), count, ZONES))
    ]
    waiting = asyncio.create_task(_wait_lights(port))
    await asyncio.sleep(0.2)  # subscribed before the gateway starts
    proc = subprocess.Popen(
        _pinned([sys.executable, "-m", "edge", "run", "--config", str(config)], 0),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    try:
        await waiting
        return await _drive(
            port, lambda _key: f"store/{STORE}/checkin", "zigbee2mqtt/+/set", payloads, _light_key
        )
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(repeats: int = 3, seconds: float = 10.0) -> dict[str, Any]:
    count = int(RATE_PER_S * seconds)
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
            broker = Broker(Path(tmp))
            try:
                base = baseline(broker.port, count)
                gateway = _percentiles(asyncio.run(_gateway(Path(tmp), broker.port, count)))
            finally:
                broker.stop()
        runs.append({"gateway": gateway, "baseline": base})
    p99 = statistics.median(r["gateway"]["p99_ms"] for r in runs)
    base_p99 = statistics.median(r["baseline"]["p99_ms"] for r in runs)
    return {
        "p50_ms": statistics.median(r["gateway"]["p50_ms"] for r in runs),
        "p99_ms": p99,
        "baseline_p99_ms": base_p99,
        "ratio_p99": round(p99 / base_p99, 2) if base_p99 > 0 else None,
        "p99_ms_min_med_max": sorted(r["gateway"]["p99_ms"] for r in runs),
        "received": [r["gateway"]["n"] for r in runs],
        "sent_per_run": count,
        "zones": ZONES,
        "runs": repeats,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
