"""One presence change in a zone with 20 identified people and 50 devices: resolve, plan, encode (issue 14).

In-process and pure (no broker): for each of the zone's 50 devices (Zigbee2MQTT lights and thermostats,
Tasmota lights, generic kiosks; two to four capabilities each, numbers and choices, some with needs), the
people's preferences are merged, the plan decides what changes and the adapter encodes the command. Every
change differs from the last (people come and go), and no device's ``min_interval_s`` holds a command back
(the manual clock moves 10 s per change), so each change pays for everything. 2,000 changes per run after
200 warm-up ones, 5 runs; p50 and p99 of the time per change, median over runs.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from edge.act.devices import adapter_for
from edge.config.devices import DeviceSettings
from edge.decide.devices.plan import DevicePlan, SharedResolutions
from edge.decide.devices.resolve import Person, arrival_order

PEOPLE = 20
DEVICES = 50
CHANGES = 2000
WARMUP = 200

_CAPABILITIES: list[dict[str, Any]] = [
    {
        "temperature": {"default": 21, "min": 18, "max": 25, "step": 0.5},
        "mode": {"type": "choice", "default": "heat", "values": ["heat", "off"]},
    },
    {
        "brightness": {"default": 80, "min": 10, "max": 100, "step": 5},
        "color_temp": {"default": 4000, "min": 2700, "max": 6500, "step": 100, "merge": "mean"},
    },
    {
        "text_scale": {"default": 1.0, "min": 1.0, "max": 2.0, "step": 0.1, "need": "higher"},
        "language": {
            "type": "choice",
            "default": "en",
            "values": ["en", "de", "fr", "pt"],
            "merge": "majority",
        },
        "contrast": {"type": "choice", "default": "normal", "values": ["normal", "high"], "needs": ["high"]},
        "volume": {"default": 30, "min": 0, "max": 60, "step": 5, "need": "lower"},
    },
]
_ADAPTERS = ["zigbee2mqtt", "zigbee2mqtt", "generic"]


def devices() -> list[DeviceSettings]:
    found = []
    for index in range(DEVICES):
        kind = index % len(_CAPABILITIES)
        found.append(
            DeviceSettings.model_validate(
                {
                    "id": f"dev-{index}",
                    "zone": "fitting-rooms",
                    "kind": "device",
                    "adapter": _ADAPTERS[kind],
                    "address": f"device {index}",
                    "capabilities": _CAPABILITIES[kind],
                    "min_interval_s": 5,
                }
            )
        )
    return found


def crowd(rng: random.Random, size: int) -> list[Person]:
    people = []
    for index in range(size):
        preferences = {
            "temperature": round(rng.uniform(17, 27), 1),
            "brightness": float(rng.randint(0, 100)),
            "color_temp": float(rng.randint(2500, 6600)),
            "text_scale": round(rng.uniform(1, 1.6), 1),
            "language": rng.choice(["en", "de", "fr", "pt"]),
            "volume": float(rng.randint(0, 60)),
        }
        needs: dict[str, Any] = {"text_scale": 1.8, "contrast": "high"} if rng.random() < 0.1 else {}
        people.append(Person(f"p-{rng.getrandbits(32):08x}", float(index), preferences, needs))
    return people


def _one_run(seed: int) -> list[float]:
    rng = random.Random(seed)
    settings = devices()
    plans = [DevicePlan(device) for device in settings]
    adapters = [adapter_for(device) for device in settings]
    present = crowd(rng, PEOPLE)
    now = 0.0
    timings = []
    for change in range(WARMUP + CHANGES):
        # One person leaves, another comes in; a camera's stranger count moves between 0 and 3.
        present[rng.randrange(PEOPLE)] = crowd(rng, 1)[0]
        strangers = rng.randint(0, 3)
        now += 10.0
        started = time.perf_counter()
        # As DeviceFlow does: one zone change sorts its people once, and its devices share resolutions.
        ordered = arrival_order(present)
        shared: SharedResolutions = {}
        for plan, adapter in zip(plans, adapters, strict=True):
            command = plan.set_people(ordered, strangers, now, shared=shared, in_order=True)
            if command is not None:
                adapter.commands(command.values)
        elapsed = time.perf_counter() - started
        if change >= WARMUP:
            timings.append(elapsed * 1e6)
    return timings


def run(repeats: int = 5) -> dict[str, Any]:
    p50s, p99s = [], []
    for repeat in range(repeats):
        ordered = sorted(_one_run(repeat))
        p50s.append(statistics.median(ordered))
        p99s.append(ordered[int(len(ordered) * 0.99)])
    return {
        "p50_us": round(statistics.median(p50s), 1),
        "p99_us": round(statistics.median(p99s), 1),
        "p50_us_min_med_max": [round(v, 1) for v in (min(p50s), statistics.median(p50s), max(p50s))],
        "p99_us_min_med_max": [round(v, 1) for v in (min(p99s), statistics.median(p99s), max(p99s))],
        "people": PEOPLE,
        "devices": DEVICES,
        "changes_per_run": CHANGES,
        "runs": repeats,
    }


if __name__ == "__main__":
    print(run())
