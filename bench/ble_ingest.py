"""BLE ingest without radio: parse -> resolve EID -> RSSI filter -> zone state, per advert.

2,000 devices heard by 4 scanners: 90% unknown (Apple "nearby", Microsoft CDP, unknown EIDs, foreign
iBeacons, random addresses), 10% opted-in shoppers advertising Eddystone-EID. A manual clock moves
1 ms every 10 adverts (10k adverts/s of simulated air time) and the timers run every 100 ms of it.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Any

from edge.clock import ManualClock
from edge.config.ble import BlePresenceSettings
from edge.events import Advert, Purpose
from edge.identity.eid import EidKey, EidResolver, compute_eid
from edge.presence.beacons import BeaconRegistry
from edge.presence.ble import BlePresence
from edge.presence.ingest import BleIngest
from edge.sources.ble.frames import EDDYSTONE_SERVICE_UUID

DEVICES = 2000
OPTED_IN = 200
SCANNERS = ("local:hci0", "espresense:a", "espresense:b", "espresense:c")
ADVERTS = 200_000


class _Granted:
    def has(self, shopper_id: str, purpose: Purpose) -> bool:
        return True

    def subscribe(self, callback: Any) -> Any:
        return lambda: None


def _unknown(rng: random.Random, index: int) -> tuple[dict[int, bytes], dict[str, bytes]]:
    kind = index % 5
    if kind == 0:  # Apple "nearby"/continuity: every iPhone
        return {0x004C: bytes([0x10, 0x05]) + rng.randbytes(5)}, {}
    if kind == 1:  # Microsoft CDP
        return {0x0006: bytes([0x01, 0x09, 0x20]) + rng.randbytes(24)}, {}
    if kind == 2:  # somebody else's EID (not opted in here)
        return {}, {EDDYSTONE_SERVICE_UUID: bytes([0x30, 0xEE]) + rng.randbytes(8)}
    if kind == 3:  # a foreign iBeacon
        return {0x004C: bytes([0x02, 0x15]) + rng.randbytes(16) + rng.randbytes(4) + b"\xc5"}, {}
    return {0xFFFF: rng.randbytes(8)}, {}


def build(seed: int) -> tuple[BleIngest, list[Advert], ManualClock]:
    rng = random.Random(seed)
    clock = ManualClock(wall=1_800_000_000.0, monotonic=1000.0)
    resolver = EidResolver(clock, consents=_Granted())
    keys = [EidKey(f"p-{i:04d}", rng.randbytes(16), 10, 0) for i in range(OPTED_IN)]
    resolver.load(keys)
    presence = BlePresence(
        {scanner: f"zone-{n}" for n, scanner in enumerate(SCANNERS)}, BlePresenceSettings(), clock
    )
    ingest = BleIngest(resolver, BeaconRegistry([], clock), presence)
    devices = []
    for index in range(DEVICES):
        address = ":".join(f"{b:02X}" for b in rng.randbytes(6))
        if index < OPTED_IN:
            key = keys[index]
            eid = compute_eid(key.identity_key, key.rotation_exponent, key.counter_at(clock.wall()))
            devices.append((address, {}, {EDDYSTONE_SERVICE_UUID: bytes([0x30, 0xEE]) + eid}))
        else:
            manufacturer, service = _unknown(rng, index)
            devices.append((address, manufacturer, service))
    adverts = []
    for n in range(ADVERTS):
        address, manufacturer, service = devices[rng.randrange(DEVICES)]
        scanner = SCANNERS[rng.randrange(len(SCANNERS))]
        # The stamp the scanner callback would set: the clock below moves 1 ms every 10 adverts.
        at_mono = clock.monotonic() + (n // 10 + 1) * 0.001
        adverts.append(Advert(scanner, address, rng.randint(-95, -55), at_mono, manufacturer, service))
    return ingest, adverts, clock


def one_run(seed: int) -> float:
    ingest, adverts, clock = build(seed)
    advert_fn, tick, refresh = ingest.advert, ingest.presence.tick, ingest.resolver.refresh
    started = time.perf_counter()
    for n, advert in enumerate(adverts):
        if n % 10 == 0:
            clock.advance(0.001)
            if n % 1000 == 0:
                tick()
                refresh()
        advert_fn(advert)
    elapsed = time.perf_counter() - started
    assert ingest.counters["identified"] > 0
    return len(adverts) / elapsed


def run(repeats: int = 5) -> dict[str, Any]:
    rates = [one_run(seed) for seed in range(repeats)]
    return {
        "adverts_per_s": round(statistics.median(rates)),
        "adverts_per_s_min_med_max": [round(min(rates)), round(statistics.median(rates)), round(max(rates))],
        "devices": DEVICES,
        "opted_in_share": OPTED_IN / DEVICES,
        "adverts_per_run": ADVERTS,
        "runs": repeats,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
