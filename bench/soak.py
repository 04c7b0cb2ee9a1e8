"""Soak: the real gateway process under a steady mixed load on a real mosquitto, for as long as asked.

``python -m bench.soak --seconds N [--rate 200] [--out bench/out/soak.json]`` (docs/soak.md).

Everything here is a separate MQTT client, as in a store: the app back-end publishing check-ins, ESPresense
nodes, POS tills, and one client per screen that subscribes to its content topic, announces itself
``online`` (retained, with an ``offline`` LWT) and acks every manifest it shows. Of the total rate:

- 30% app check-ins (a fresh signed token each, shoppers from the seed file, a random zone)
- 30% ESPresense reports (90% anonymous devices, 10% the store's own beacons)
- 30% display acks: reactive, one per manifest, and each check-in produces one manifest
- 10% POS transactions (30% of them with the shopper's token)
- plus each screen's retained ``online`` every 30 s (a fraction of a percent)

The paced part (check-ins, BLE, POS: 70% of the rate) is scheduled on the monotonic clock: event n is
due at start + n / rate, so a late wake-up is caught up instead of drifting. Measured: check-in ->
manifest latency, the gateway's RSS and CPU every second, its retained ``gateway/health`` (drops,
rejections, queues), check-ins that never got a manifest, and the achieved rate. Nothing is asserted
here on performance; ``Report.problems()`` lists functional failures only (tests/soak/test_soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt

from edge.clock import iso_utc
from edge.identity import generate_keypair, sign_token
from tests.support.broker import Mosquitto

REPO: Final = Path(__file__).resolve().parents[1]
OUT: Final = REPO / "bench" / "out" / "soak.json"
STORE: Final = "soak"
ROOT: Final = f"store/{STORE}"
# The catalog's zones plus four it does not target (those screens get context-only decisions).
ZONES: Final = (
    "cafe",
    "entrance",
    "fitting-rooms",
    "electronics",
    "grocery",
    "home",
    "kids",
    "sports",
)
LANES: Final = ("1", "2", "3", "4")
SKUS: Final = (("FLAT-WHITE", 3.5), ("4006381333931", 1.25), ("JEANS-32", 59.9), ("SERUM-30", 24.0))
BEACON_UUID: Final = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
# One slot of the paced schedule each: 3 check-ins, 3 BLE reports, 1 POS sale per 7 (acks come on top).
PATTERN: Final = ("checkin", "ble", "checkin", "ble", "checkin", "ble", "pos")
PACED_SHARE: Final = 0.7
SHARES: Final = {"checkin": 0.30, "ble": 0.30, "ack": 0.30, "pos": 0.10}
ANONYMOUS_SHARE: Final = 0.9
POS_WITH_TOKEN: Final = 0.3
AVAILABILITY_EVERY_S: Final = 30.0
TOKEN_LIFETIME_S: Final = 300
SHOPPERS: Final = 1000
NODELAY: Final = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
READY_TIMEOUT_S: Final = 20.0
DRAIN_TIMEOUT_S: Final = 10.0
EXIT_TIMEOUT_S: Final = 15.0


@dataclass
class Options:
    seconds: float
    rate: float = 200.0
    workdir: Path | None = None  # default: a temporary directory, removed afterwards
    pin_core: int | None = None  # taskset the gateway to one core (default: unpinned)
    health_interval_s: float = 2.0
    render_ms: tuple[float, float] = (50.0, 250.0)  # a screen acks this long after a manifest
    seed: int = 1
    # The gateway's command and the wall clock the load dates tokens and payloads with: `edge-gateway` on the
    # machine's clock for `make soak`; tests/soak passes the test timeline's (docs/testing.md).
    gateway: tuple[str, ...] = (sys.executable, "-m", "edge")
    wall: Callable[[], float] = time.time


@dataclass
class Screen:
    """A simulated display: its check-ins waiting for a manifest, and what it shows."""

    id: str
    zone: str
    waiting: deque[float] = field(default_factory=deque)  # monotonic send times, in order
    shown_version: int = 0


@dataclass
class Load:
    """What the clients sent and saw; shared by every task of one run (one event loop)."""

    sent: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (load time s, latency ms)
    acked_decisions: int = 0
    stale_manifests: int = 0
    unexpected_manifests: int = 0
    max_lag_ms: float = 0.0
    loaded_events: int = 0  # everything sent while the load ran (acks and availability included)
    without_manifest: int = 0  # check-ins still waiting for their manifest after the drain
    healths: list[dict[str, Any]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # (monotonic s, RSS MB, CPU s)
    started: float = 0.0  # monotonic time the load started


# ----- the store ------------------------------------------------------------------------------------------
@dataclass
class Store:
    config: Path
    private_pem: bytes
    shoppers: list[str]
    beacons: list[tuple[str, str]]  # (ESPresense id, its zone)


def _shoppers(rng: random.Random, count: int, wall: Callable[[], float]) -> list[dict[str, Any]]:
    at = iso_utc(wall() - 86_400)
    categories = ("apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports")
    found = []
    for index in range(count):
        draw = rng.random()
        consents = {  # 70% both, 15% personalization only, 15% measurement only
            "personalization": draw < 0.85,
            "measurement": draw < 0.7 or draw >= 0.85,
            "camera_checkin": draw < 0.5,
        }
        affinity = {name: round(rng.random(), 2) for name in rng.sample(categories, 3)}
        found.append(
            {
                "id": f"p-soak{index:05d}",
                "at": at,
                "consents": consents,
                "profile": {"affinity": affinity, "visits": rng.randint(0, 40)},
            }
        )
    return found


def make_store(
    workdir: Path,
    port: int,
    rng: random.Random,
    health_interval_s: float,
    wall: Callable[[], float] = time.time,
) -> Store:
    """Keys, 1,000 seeded shoppers, 8 zones with one screen and one beacon each, ESPresense on."""
    workdir.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    (workdir / "token-public.pem").write_bytes(public_pem)
    shoppers = _shoppers(rng, SHOPPERS, wall)
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": shoppers}))
    rooms = ", ".join(f'"room-{zone}" = "{zone}"' for zone in ZONES)
    beacons = [(f"iBeacon:{BEACON_UUID}-100-{index}", zone) for index, zone in enumerate(ZONES)]
    beacon_tables = "".join(
        f'[[ble.beacons]]\nname = "beacon-{zone}"\nkind = "ibeacon"\nzone = "{zone}"\n'
        f'uuid = "{BEACON_UUID}"\nmajor = 100\nminor = {index}\n\n'
        for index, zone in enumerate(ZONES)
    )
    zones = "".join(
        f'[[zones]]\nid = "{zone}"\n\n[[displays]]\nid = "screen-{zone}"\nzone = "{zone}"\n'
        f'min_display_s = 0\nfallback = {{ template = "loop", data = {{ playlist = "{zone}" }} }}\n\n'
        for zone in ZONES
    )
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "{STORE}"\n\n[mqtt]\nport = {port}\n\n'
        '[identity]\npublic_key_files = ["token-public.pem"]\nconsents_file = "shoppers.json"\n\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\n'
        f'offers_file = "{REPO / "config/offers.example.toml"}"\n\n'
        f'[ledger]\npath = "ledger.sqlite"\n\n[control]\nstate_dir = "state"\n\n'
        f"[health]\ninterval_s = {health_interval_s}\n\n"
        '[logging]\nlevel = "WARNING"\n\n'
        f"[ble.espresense]\nenabled = true\nrooms = {{ {rooms} }}\n\n" + beacon_tables + zones
    )
    return Store(config, private_pem, [s["id"] for s in shoppers], beacons)


# ----- the gateway process -----------------------------------------------------------------------------
def _pinned(cmd: list[str], core: int | None) -> list[str]:
    taskset = shutil.which("taskset")
    if core is None or taskset is None or (os.cpu_count() or 1) < 2:
        return cmd
    return [taskset, "-c", str(core), *cmd]


def read_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of /proc/<pid>/stat, after the command name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ready(notify: socket.socket) -> None:
    notify.settimeout(READY_TIMEOUT_S)
    while not notify.recv(4096).startswith(b"READY=1"):
        pass


# ----- clients ------------------------------------------------------------------------------------------
def _client(port: int, name: str, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", port, identifier=f"soak-{name}-{uuid.uuid4().hex[:6]}", socket_options=NODELAY, will=will
    )


async def _watch(port: int, load: Load, connected: asyncio.Event) -> None:
    """The gateway's retained status and health, as an operator's dashboard would see them."""
    async with _client(port, "watch") as client:
        await client.subscribe(f"{ROOT}/gateway/health", qos=1)
        await client.subscribe(f"{ROOT}/gateway/status", qos=1)
        connected.set()
        async for message in client.messages:
            body = json.loads(message.payload)
            if message.topic.value.endswith("/status"):
                load.status.append(str(body.get("state")))
            else:
                load.healths.append(body)


async def _screen(
    port: int,
    screen: Screen,
    load: Load,
    ready: asyncio.Event,
    render_ms: tuple[float, float],
    seed: int,
    wall: Callable[[], float],
) -> None:
    """A display: LWT offline, online (retained, every 30 s), and an ack for every manifest it shows.

    A player acks "once the content is actually on the screen" (docs/mqtt.md): after a render time drawn
    from ``render_ms``, while the next manifests keep arriving.
    """
    base = f"{ROOT}/display/{screen.id}"
    will = aiomqtt.Will(f"{base}/availability", b"offline", qos=1, retain=True)
    rng = random.Random(seed)
    acking: set[asyncio.Task[None]] = set()
    async with _client(port, screen.id, will) as client:
        await client.subscribe(f"{base}/content", qos=1)

        async def available() -> None:
            while True:
                await client.publish(f"{base}/availability", b"online", qos=1, retain=True)
                load.sent["availability"] += 1
                ready.set()
                await asyncio.sleep(AVAILABILITY_EVERY_S)

        async def ack(version: int, decision_id: str | None) -> None:
            await asyncio.sleep(rng.uniform(*render_ms) / 1000)
            shown = iso_utc(wall())
            body = {"v": 1, "ts": shown, "version": version, "decision_id": decision_id}
            body.update(status="shown", shown_at=shown)
            await client.publish(f"{base}/ack", json.dumps(body).encode(), qos=1)
            load.sent["ack"] += 1
            if decision_id is not None:
                load.acked_decisions += 1

        heartbeat = asyncio.create_task(available())
        try:
            async for message in client.messages:
                arrived = time.monotonic()
                manifest = json.loads(message.payload)
                version = int(manifest["version"])
                if version <= screen.shown_version:
                    load.stale_manifests += 1  # the contract: ignore what is not newer than what is shown
                    continue
                screen.shown_version = version
                decision_id = manifest.get("decision_id")
                if decision_id is not None and not message.retain:
                    if screen.waiting:
                        sent = screen.waiting.popleft()
                        load.latencies.append((sent - load.started, (arrived - sent) * 1000))
                    else:
                        load.unexpected_manifests += 1
                task = asyncio.create_task(ack(version, decision_id))
                acking.add(task)
                task.add_done_callback(acking.discard)
        finally:
            for task in [heartbeat, *acking]:
                task.cancel()


class Generator:
    """Builds one payload of each kind; the tokens are fresh (unique jti), signed by the store's cloud key."""

    def __init__(
        self, store: Store, screens: dict[str, Screen], rng: random.Random, wall: Callable[[], float]
    ) -> None:
        self.store = store
        self.wall = wall
        self.screens = screens
        self.rng = rng
        self.anonymous = self._anonymous_ids(2000)
        self.txn = 0

    def _anonymous_ids(self, count: int) -> list[str]:
        rng = self.rng
        kinds = [
            lambda: rng.randbytes(6).hex(),  # a random MAC
            lambda: f"apple:1005:{rng.randint(1, 20)}-{rng.randint(1, 40)}",
            lambda: f"md:{rng.randint(0, 0xFFFF):04x}:{rng.randint(1, 30)}",
            lambda: f"msft:cdp:{rng.randbytes(2).hex()}",
            lambda: f"name:phone-{rng.randbytes(3).hex()}",
            lambda: f"iBeacon:{uuid.UUID(bytes=rng.randbytes(16))}-{rng.randint(0, 9)}-{rng.randint(0, 9)}",
        ]
        return [rng.choice(kinds)() for _ in range(count)]

    def token(self, shopper: str) -> str:
        now = int(self.wall())
        claims = {
            "sub": shopper,
            "aud": STORE,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        return sign_token(self.store.private_pem, claims)

    def checkin(self) -> tuple[str, bytes, Screen]:
        zone = self.rng.choice(ZONES)
        body = {
            "v": 1,
            "ts": iso_utc(self.wall()),
            "token": self.token(self.rng.choice(self.store.shoppers)),
            "zone": zone,
            "source": "app",
        }
        return f"{ROOT}/checkin", json.dumps(body).encode(), self.screens[zone]

    def ble(self) -> tuple[str, bytes]:
        rng = self.rng
        if rng.random() < ANONYMOUS_SHARE:
            device, room = rng.choice(self.anonymous), f"room-{rng.choice(ZONES)}"
        else:
            device, zone = rng.choice(self.store.beacons)
            room = f"room-{zone if rng.random() < 0.7 else rng.choice(ZONES)}"
        rssi = rng.randint(-97, -45)
        body = {
            "id": device,
            "idType": 5,
            "rssi@1m": -65,
            "rssi": rssi,
            "raw": round(10 ** ((-65 - rssi) / 20), 2),
            "distance": round(10 ** ((-65 - rssi) / 25), 2),
            "speed": 0.0,
            "interval": rng.choice([100, 200, 1000]),
        }
        return f"espresense/devices/{device}/{room}", json.dumps(body).encode()

    def pos(self) -> tuple[str, bytes]:
        rng = self.rng
        self.txn += 1
        lane = rng.choice(LANES)
        items = [
            {"sku": sku, "qty": rng.randint(1, 3), "price": price}
            for sku, price in rng.sample(SKUS, rng.randint(1, len(SKUS)))
        ]
        body: dict[str, Any] = {
            "v": 1,
            "ts": iso_utc(self.wall()),
            "txn_id": f"{lane}-{self.txn:09d}",
            "items": items,
            "currency": "EUR",
        }
        if rng.random() < POS_WITH_TOKEN:
            body["token"] = self.token(rng.choice(self.store.shoppers))
        return f"{ROOT}/pos/{lane}/transaction", json.dumps(body).encode()


async def _generate(port: int, gen: Generator, load: Load, rate: float, seconds: float) -> None:
    """The paced part of the load: event n is due at start + n / rate on the monotonic clock."""
    interval = 1 / rate
    async with _client(port, "load") as client:
        start = load.started = time.monotonic()
        end = start + seconds
        index = 0
        while (due := start + index * interval) < end:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                load.max_lag_ms = max(load.max_lag_ms, -delay * 1000)
            kind = PATTERN[index % len(PATTERN)]
            if kind == "checkin":
                topic, payload, screen = gen.checkin()
                screen.waiting.append(time.monotonic())
            elif kind == "ble":
                topic, payload = gen.ble()
            else:
                topic, payload = gen.pos()
            await client.publish(topic, payload, qos=1)
            load.sent[kind] += 1
            index += 1


async def _sample(pid: int, load: Load) -> None:
    """The gateway's RSS and CPU time, every second (monotonic time; made relative to the load's start later)."""
    while True:
        with contextlib.suppress(OSError, IndexError, ValueError):
            load.samples.append((time.monotonic(), read_rss_mb(pid), read_cpu_s(pid)))
        await asyncio.sleep(1.0)


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# ----- the report ---------------------------------------------------------------------------------------
def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.999999) - 1))]


def latency_summary(samples: list[tuple[float, float]], seconds: float, windows: int = 10) -> dict[str, Any]:
    values = sorted(latency for _, latency in samples)
    if not values:
        return {"n": 0}
    summary: dict[str, Any] = {
        "n": len(values),
        "p50_ms": round(_rank(values, 0.50), 3),
        "p95_ms": round(_rank(values, 0.95), 3),
        "p99_ms": round(_rank(values, 0.99), 3),
        "max_ms": round(values[-1], 3),
        "mean_ms": round(statistics.fmean(values), 3),
    }
    width = seconds / windows
    by_window = []
    for window in range(windows):
        part = sorted(lat for t, lat in samples if window * width <= t < (window + 1) * width)
        if part:
            by_window.append(
                {
                    "from_s": round(window * width, 1),
                    "n": len(part),
                    "p50_ms": round(_rank(part, 0.5), 3),
                    "p99_ms": round(_rank(part, 0.99), 3),
                    "max_ms": round(part[-1], 3),
                }
            )
    summary["by_window"] = by_window
    return summary


def _window(samples: list[tuple[float, float]], start_s: float, end_s: float) -> dict[str, Any]:
    part = sorted(lat for t, lat in samples if start_s <= t < end_s)
    if not part:
        return {"from_s": round(start_s, 1), "to_s": round(end_s, 1), "n": 0}
    return {
        "from_s": round(start_s, 1),
        "to_s": round(end_s, 1),
        "n": len(part),
        "p50_ms": round(_rank(part, 0.5), 3),
        "p99_ms": round(_rank(part, 0.99), 3),
    }


def _cpu_between(cpu: list[tuple[float, float, float]], start_s: float, end_s: float) -> float | None:
    inside = [s for s in cpu if start_s <= s[0] <= end_s]
    return inside[-1][2] - inside[0][2] if len(inside) >= 2 else None


def creep_summary(
    latencies: list[tuple[float, float]], cpu: list[tuple[float, float, float]], seconds: float, rate: float
) -> dict[str, Any]:
    """Minutes 5-15 against the last 10 minutes of an hour (the same fractions of any other length):
    p50, p99 and the gateway's CPU per event in each, and late/early - 1 (issue 13's bound: within 10%)."""
    windows = {
        "early": (seconds * 5 / 60, seconds * 15 / 60),
        "late": (seconds * 50 / 60, seconds),
    }
    found: dict[str, Any] = {}
    for name, (start, end) in windows.items():
        figures = _window(latencies, start, end)
        cpu_s = _cpu_between(cpu, start, end)
        span = end - start
        figures["cpu_ms_per_event"] = round(1000 * cpu_s / (rate * span), 4) if cpu_s is not None else None
        found[name] = figures
    early, late = found["early"], found["late"]
    for key in ("p50_ms", "p99_ms", "cpu_ms_per_event"):
        if early.get(key) and late.get(key) is not None:
            found[f"{key.removesuffix('_ms')}_change"] = round(late[key] / early[key] - 1, 4)
    found["by_minute"] = [
        _window(latencies, start, min(start + 60.0, seconds)) for start in range(0, math.ceil(seconds), 60)
    ]
    return found


def warmup_s(seconds: float) -> float:
    """The first 10% of the run, but at least 10 s when the run is long enough (half of it otherwise)."""
    return max(0.1 * seconds, min(10.0, 0.5 * seconds))


def rss_summary(samples: list[tuple[float, float, float]], seconds: float) -> dict[str, Any]:
    during = [s for s in samples if 0 <= s[0] <= seconds + 1]
    if not during:
        return {"samples": 0}
    before = [s for s in samples if s[0] < 0]
    warm = warmup_s(seconds)
    after_warm = next((s for s in during if s[0] >= warm), during[-1])
    second_half = [s for s in during if s[0] >= seconds / 2]
    slope = None
    if len(second_half) >= 3:
        fit = statistics.linear_regression([s[0] / 3600 for s in second_half], [s[1] for s in second_half])
        slope = round(fit.slope, 2)
    cpu_s = during[-1][2] - during[0][2]
    span = during[-1][0] - during[0][0]
    return {
        "samples": len(during),
        "at_ready_mb": round(before[-1][1], 1) if before else None,
        "warmup_s": round(warm, 1),
        "after_warmup_mb": round(after_warm[1], 1),
        "end_mb": round(during[-1][1], 1),
        "max_mb": round(max(s[1] for s in during), 1),
        "growth_mb": round(during[-1][1] - after_warm[1], 1),
        "slope_mb_per_h_second_half": slope,
        "cpu_s_during_load": round(cpu_s, 2),
        "cpu_percent_of_one_core": round(100 * cpu_s / span, 1) if span > 0 else None,
        "series": [[round(t, 1), round(rss, 2), round(cpu, 2)] for t, rss, cpu in samples],
    }


@dataclass
class Report:
    data: dict[str, Any]

    def problems(self) -> list[str]:
        """Functional failures only (never a latency or memory figure)."""
        d = self.data
        found = []
        if d["gateway"]["exit_code"] != 0:
            found.append(f"gateway exited {d['gateway']['exit_code']}")
        drops = d["drops"]
        if drops["checkins_without_manifest"]:
            found.append(f"{drops['checkins_without_manifest']} check-ins got no manifest")
        if drops["unexpected_manifests"]:
            found.append(f"{drops['unexpected_manifests']} manifests matched no check-in")
        if drops["mqtt_outbox_dropped"]:
            found.append(f"{drops['mqtt_outbox_dropped']} MQTT outbox drops")
        if drops["rejected"]:
            found.append(f"rejections: {drops['rejected']}")
        if drops["tokens_rejected"]:
            found.append(f"token rejections: {drops['tokens_rejected']}")
        if drops["exposure_unknown_decision"]:
            found.append(
                f"{drops['exposure_unknown_decision']} acked exposures lost (decision not yet stored)"
            )
        if drops["ledger_ops_failed"]:
            found.append(f"{drops['ledger_ops_failed']} ledger writes failed")
        if drops["handler_errors"]:
            found.append(f"{drops['handler_errors']} handler errors")
        counted = d["gateway_counts"]
        if counted["checkins"] != d["sent"]["checkin"]:
            found.append(f"gateway counted {counted['checkins']} check-ins of {d['sent']['checkin']}")
        if counted["exposures"] != d["acked_decisions"]:
            found.append(f"gateway counted {counted['exposures']} exposures of {d['acked_decisions']} acks")
        if counted["pos_transactions"] != d["sent"]["pos"]:
            found.append(f"gateway counted {counted['pos_transactions']} sales of {d['sent']['pos']}")
        if not d["rss_mb"].get("samples"):
            found.append("no RSS samples")
        return found

    def summary(self) -> str:
        d = self.data
        lat, rss, rate, drops = d["latency_ms"], d["rss_mb"], d["rate"], d["drops"]
        sent = d["sent"]
        lines = [
            f"soak: {d['options']['seconds']:.0f} s at {rate['target_per_s']:.0f} events/s "
            f"({d['machine']['cores']} cores, {d['machine']['cpu']})",
            f"  achieved       {rate['achieved_per_s']:.1f} events/s "
            f"(check-ins {sent['checkin']}, BLE {sent['ble']}, acks {sent['ack']}, POS {sent['pos']}, "
            f"availability {sent['availability']}); generator max lag {rate['generator_max_lag_ms']:.1f} ms",
        ]
        if lat.get("n"):
            lines.append(
                f"  check-in->manifest  p50 {lat['p50_ms']:.2f}  p95 {lat['p95_ms']:.2f}  "
                f"p99 {lat['p99_ms']:.2f}  max {lat['max_ms']:.2f} ms  (n={lat['n']})"
            )
        if rss.get("samples"):
            slope = rss["slope_mb_per_h_second_half"]
            lines.append(
                f"  RSS            ready {rss['at_ready_mb']} MB, after warm-up ({rss['warmup_s']} s) "
                f"{rss['after_warmup_mb']} MB, end {rss['end_mb']} MB, max {rss['max_mb']} MB"
            )
            lines.append(
                f"                 growth {rss['growth_mb']:+.1f} MB, second-half slope "
                f"{'n/a' if slope is None else f'{slope:+.2f}'} MB/h ({rss['samples']} samples)"
            )
            lines.append(
                f"  CPU            {rss['cpu_s_during_load']} s during the load = "
                f"{rss['cpu_percent_of_one_core']}% of one core"
            )
        creep = d.get("creep", {})
        early, late = creep.get("early", {}), creep.get("late", {})
        if early.get("n") and late.get("n"):
            lines.append(
                f"  creep          min 5-15 p50 {early['p50_ms']:.2f} p99 {early['p99_ms']:.2f} ms, "
                f"last 10 min p50 {late['p50_ms']:.2f} p99 {late['p99_ms']:.2f} ms "
                f"({creep['p50_change']:+.1%} / {creep['p99_change']:+.1%}); CPU per event "
                f"{_change(creep.get('cpu_ms_per_event_change'))}"
            )
        lines.append(
            f"  drops          mqtt outbox {drops['mqtt_outbox_dropped']}, rejected {drops['rejected'] or 0}, "
            f"check-ins without manifest {drops['checkins_without_manifest']}, "
            f"ledger queue max {drops['ledger_queue_depth_max']}, backpressure waits "
            f"{drops['ledger_backpressure_waits']}"
        )
        lines.append(
            f"  gateway        exit {d['gateway']['exit_code']}, ready in {d['gateway']['start_to_ready_s']} s, "
            f"exposures {d['gateway_counts']['exposures']}, BLE anonymous {d['gateway_counts']['ble_anonymous']}"
        )
        problems = self.problems()
        lines.append("  functional     " + ("ok" if not problems else "FAILED: " + "; ".join(problems)))
        return "\n".join(lines)


def _change(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def _report(
    options: Options, load: Load, exit_code: int | None, ready_s: float, log_tail: str, loaded_s: float
) -> Report:
    health = load.healths[-1] if load.healths else {}
    drops = health.get("drops", {})
    mqtt = health.get("mqtt", {})
    ble = health.get("ble") or {}
    sent = {kind: load.sent[kind] for kind in ("checkin", "ble", "ack", "pos", "availability")}
    loaded = load.loaded_events
    samples = [(t - load.started, rss, cpu) for t, rss, cpu in load.samples]
    data: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _machine(),
        "options": {
            "seconds": options.seconds,
            "rate": options.rate,
            "pin_core": options.pin_core,
            "render_ms": list(options.render_ms),
            "health_interval_s": options.health_interval_s,
        },
        "mix": {"shares": SHARES, "paced_pattern": list(PATTERN), "zones": len(ZONES), "shoppers": SHOPPERS},
        "sent": sent,
        "acked_decisions": load.acked_decisions,
        "rate": {
            "target_per_s": options.rate,
            "achieved_per_s": round(loaded / loaded_s, 1) if loaded_s > 0 else 0.0,
            "load_seconds": round(loaded_s, 2),
            "generator_max_lag_ms": round(load.max_lag_ms, 2),
        },
        "latency_ms": latency_summary(load.latencies, options.seconds),
        "rss_mb": rss_summary(samples, options.seconds),
        "creep": creep_summary(load.latencies, samples, options.seconds, options.rate),
        "drops": {
            "mqtt_outbox_dropped": drops.get("mqtt_outbox", 0),
            "rejected": drops.get("rejected", {}),
            "tokens_rejected": health.get("tokens", {}).get("rejected", {}),
            "checkins_without_manifest": load.without_manifest,
            "unexpected_manifests": load.unexpected_manifests,
            "stale_manifests": load.stale_manifests,
            "mqtt_oversized": mqtt.get("oversized", 0),
            "handler_errors": mqtt.get("handler_errors", 0),
            "mqtt_deferred": mqtt.get("deferred", 0),
            "ledger_queue_depth_max": max(
                (h.get("ledger", {}).get("queue_depth", 0) for h in load.healths), default=0
            ),
            "ledger_backpressure_waits": health.get("ledger", {}).get("backpressure_waits", 0),
            "ledger_ops_failed": health.get("ledger", {}).get("ops_failed", 0),
            # Acks the ledger could not match to a stored decision: the exposure is lost (and the gateway
            # counts the ack as rejected "ack.duplicate").
            "exposure_unknown_decision": health.get("ledger", {}).get("exposure_unknown_decision", 0),
        },
        "gateway_counts": {
            "checkins": health.get("checkins", 0),
            "decisions": health.get("decisions", 0),
            "exposures": health.get("exposures", 0),
            "pos_transactions": (health.get("pos") or {}).get("transactions", 0),
            "pos_identified": (health.get("pos") or {}).get("identified", 0),
            "ble_anonymous": (ble.get("adverts") or {}).get("anonymous", 0),
            "ble_adverts": ble.get("adverts", {}),
            "missing_beacons": ble.get("missing_beacons", []),
            "alerts": health.get("alerts", []),
        },
        "gateway": {
            "exit_code": exit_code,
            "start_to_ready_s": round(ready_s, 3),
            "status_seen": load.status,
            "healths_received": len(load.healths),
            "log_tail": log_tail,
            "final_health": health,
        },
    }
    return Report(data)


# ----- the run ------------------------------------------------------------------------------------------
async def soak(options: Options) -> Report:
    """One soak run; the gateway is stopped with SIGTERM at the end and its exit code reported."""
    if options.workdir is not None:
        return await _soak_in(options, options.workdir)
    with tempfile.TemporaryDirectory(prefix="edge-soak-") as tmp:
        return await _soak_in(options, Path(tmp))


async def _soak_in(options: Options, workdir: Path) -> Report:
    rng = random.Random(options.seed)
    broker = Mosquitto(workdir / "broker")
    broker.start()
    try:
        store = make_store(workdir / "store", broker.port, rng, options.health_interval_s, options.wall)
        return await _with_gateway(options, broker.port, store, rng)
    finally:
        broker.stop()


async def _with_gateway(options: Options, port: int, store: Store, rng: random.Random) -> Report:
    workdir = store.config.parent
    log_path = workdir / "gateway.log"
    notify_path = workdir / "notify.sock"
    load = Load()
    screens = {zone: Screen(f"screen-{zone}", zone) for zone in ZONES}
    tasks: list[asyncio.Task[None]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, log_path.open("wb") as log:
        notify.bind(str(notify_path))
        started = time.monotonic()
        proc = subprocess.Popen(
            _pinned([*options.gateway, "run", "--config", str(store.config)], options.pin_core),
            cwd=workdir,
            stdout=log,  # the daemon's log lines
            stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        )
        exit_code: int | None = None
        loaded_s = ready_s = 0.0
        try:
            await asyncio.to_thread(_wait_ready, notify)
            ready_s = time.monotonic() - started
            watching = asyncio.Event()
            tasks.append(asyncio.create_task(_watch(port, load, watching)))
            tasks.append(asyncio.create_task(_sample(proc.pid, load)))
            await asyncio.wait_for(watching.wait(), 10)
            if not await _until(lambda: "online" in load.status, 10):
                raise RuntimeError("the gateway never said online")
            for screen in screens.values():
                ready = asyncio.Event()
                player = _screen(
                    port, screen, load, ready, options.render_ms, options.seed + len(tasks), options.wall
                )
                tasks.append(asyncio.create_task(player))
                await asyncio.wait_for(ready.wait(), 10)
            await asyncio.sleep(1.0)  # a sample or so before the load (RSS at ready)
            gen = Generator(store, screens, rng, options.wall)
            await _generate(port, gen, load, options.rate * PACED_SHARE, options.seconds)
            loaded_s = time.monotonic() - load.started
            load.loaded_events = sum(load.sent.values())
            # Drain: every check-in's manifest, then the gateway's own counters caught up with what was sent.
            await _until(lambda: not any(screen.waiting for screen in screens.values()), DRAIN_TIMEOUT_S)
            await _until(lambda: _caught_up(load), 3 * options.health_interval_s + 5)
        finally:
            if proc.poll() is None:
                healths_before = len(load.healths)
                proc.send_signal(signal.SIGTERM)
                try:
                    exit_code = await asyncio.to_thread(proc.wait, EXIT_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                # The gateway publishes a last health on its way out.
                await _until(lambda: len(load.healths) > healths_before, 3)
            else:
                exit_code = proc.returncode
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task
    load.without_manifest = sum(len(screen.waiting) for screen in screens.values())
    log_tail = log_path.read_text(errors="replace")[-3000:]
    return _report(options, load, exit_code, ready_s, log_tail, loaded_s)


def _caught_up(load: Load) -> bool:
    if not load.healths:
        return False
    health = load.healths[-1]
    return (
        health.get("checkins") == load.sent["checkin"]
        and health.get("exposures") == load.acked_decisions
        and (health.get("pos") or {}).get("transactions") == load.sent["pos"]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, required=True, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second, acks included")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON report (default bench/out/soak.json)")
    parser.add_argument("--pin-core", type=int, default=None, help="taskset the gateway to this core")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the store, ledger and logs here")
    parser.add_argument(
        "--render-ms",
        type=float,
        nargs=2,
        default=(50.0, 250.0),
        metavar=("MIN", "MAX"),
        help="a screen acks a manifest this long after receiving it (uniform; default 50 250)",
    )
    args = parser.parse_args(argv)
    options = Options(
        seconds=args.seconds,
        rate=args.rate,
        workdir=args.workdir,
        pin_core=args.pin_core,
        render_ms=(args.render_ms[0], args.render_ms[1]),
    )
    report = asyncio.run(soak(options))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report.data, indent=2) + "\n")
    print(report.summary())
    print(f"  report         {args.out}")
    return 1 if report.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
