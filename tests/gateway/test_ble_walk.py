"""A shopper with an opted-in EID walks from zone A to zone B past ESPresense nodes, on a real broker.

Replayed with an injected clock: A's screen, then B's; exactly one enter and one leave per zone; and
nothing about the unknown devices heard alongside is kept anywhere.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.config import load_settings
from edge.daemon import Gateway
from edge.identity import generate_keypair
from edge.identity.eid import compute_eid
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import REPO

STORE = "s-ble"
ROOT = f"store/{STORE}"
WALKER_KEY = bytes.fromhex("0102030405060708090a0b0c0d0e0f10")
NOPE_KEY = bytes.fromhex("f0e0d0c0b0a090807060504030201000")
UNKNOWN_IDS = [
    "aa:bb:cc:00:11:22",
    "name:janes-phone",
    "apple:1005:9-26",
    "md:0075:12",
    "msft:cdp:0a0b",
    "tile:dd:ee:ff:00:11:22",
    "eid:0badc0ffee0ddf00",
    "iBeacon:11111111-2222-3333-4444-555555555555-7-8",
    "ad:0000180f",
]


def _config(workdir: Path, port: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    _, public_pem = generate_keypair()
    (workdir / "token.pem").write_bytes(public_pem)
    shoppers = [
        {
            "id": "p-walker",
            "at": "2026-11-01T10:00:00Z",
            "consents": {"presence_ble": True, "personalization": True},
        },
        {"id": "p-nope", "at": "2026-11-01T10:00:00Z", "consents": {"presence_ble": False}},
    ]
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": shoppers}))
    keys = [
        {
            "shopper_id": "p-walker",
            "identity_key": WALKER_KEY.hex(),
            "rotation_exponent": 10,
            "clock_offset_s": 0,
        },
        {
            "shopper_id": "p-nope",
            "identity_key": NOPE_KEY.hex(),
            "rotation_exponent": 10,
            "clock_offset_s": 0,
        },
    ]
    (workdir / "eid-keys.json").write_text(json.dumps({"keys": keys}))
    (workdir / "eid-keys.json").chmod(0o600)
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "{STORE}"\n[mqtt]\nport = {port}\nreconnect_max_s = 0.5\n'
        '[identity]\npublic_key_files = ["token.pem"]\nconsents_file = "shoppers.json"\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\noffers_file = "{REPO / "config/offers.example.toml"}"\n'
        "[decisions.policy]\nepsilon = 0.0\nholdout_percent = 0\n"
        '[ledger]\npath = "ledger.sqlite"\n[control]\nstate_dir = "state"\n[health]\ninterval_s = 1\nmetrics_port = 0\n'
        '[ble]\neid_keys_file = "eid-keys.json"\n'
        "[ble.espresense.presence]\nleave_after_s = 20\n"
        '[ble.espresense]\nenabled = true\nrooms = { "room-a" = "cafe", "room-b" = "entrance" }\n'
        '[[zones]]\nid = "cafe"\n[[zones]]\nid = "entrance"\n'
        '[[displays]]\nid = "screen-a"\nzone = "cafe"\nmin_display_s = 0\ncontent_ttl_s = 600\n'
        '[[displays]]\nid = "screen-b"\nzone = "entrance"\nmin_display_s = 0\ncontent_ttl_s = 600\n'
    )
    return config


def running(config: Path, clock: ManualClock) -> contextlib.AbstractAsyncContextManager[Gateway]:
    return running_gateway(load_settings(config), clock=clock)


def _walk_rssi(step: int, steps: int, rng: random.Random) -> tuple[int, int]:
    """Near A at the start, near B at the end, heavy-tailed noise on both."""
    progress = step / (steps - 1)

    def noisy(level: float) -> int:
        spike = rng.choice([0] * 12 + [-15, -12, 8])  # multipath drops, the odd reflection
        return round(level + rng.gauss(0, 2.5) + spike)

    return noisy(-58 - 37 * progress), noisy(-95 + 37 * progress)


@pytest.mark.parametrize("seed", [7, 11, 23])
async def test_walk_from_a_to_b(tmp_path: Path, mosquitto: Mosquitto, seed: int) -> None:
    clock = ManualClock(wall=1_800_000_000.0)
    config = _config(tmp_path / "store", mosquitto.port)
    rng = random.Random(seed)
    steps = 120  # 60 s of reports, 2 per second per node
    async with running(config, clock) as gateway, Probe(mosquitto.port, f"{ROOT}/#") as probe:
        ble = gateway.generation.ble
        assert ble is not None

        async def report(device_id: str, room: str, rssi: int) -> None:
            body = {"id": device_id, "rssi": rssi, "distance": 2.0}
            await probe.publish(f"espresense/devices/{device_id}/{room}", json.dumps(body).encode())

        for step in range(steps):
            clock.advance(0.5)
            walker = compute_eid(WALKER_KEY, 10, int(clock.wall()))
            nope = compute_eid(NOPE_KEY, 10, int(clock.wall()))
            rssi_a, rssi_b = _walk_rssi(step, steps, rng)
            await report(f"eid:{walker.hex()}", "room-a", rssi_a)
            await report(f"eid:{walker.hex()}", "room-b", rssi_b)
            await report(f"eid:{nope.hex()}", "room-a", -50)  # opted out: never recognised
            for device_id in UNKNOWN_IDS:
                await report(device_id, rng.choice(["room-a", "room-b"]), rng.randint(-90, -50))
            await probe.wait_for(
                lambda s=step: ble.ingest.counters.total() >= (s + 1) * (3 + len(UNKNOWN_IDS))
            )
            await ble.tick()
        # Gone: no more reports; the timer alone ends the stay.
        for _ in range(50):
            clock.advance(0.5)
            await ble.tick()
        await probe.wait_for(lambda: ble.counters["leave"] == 2)

        def offers(display: str) -> list[dict[str, object]]:
            return [m for m in probe.json_on(f"{ROOT}/display/{display}/content") if m["decision_id"]]

        await probe.wait_for(lambda: offers("screen-a") and offers("screen-b"))
        assert ble.counters["enter"] == 2
        assert ble.counters["leave"] == 2
        # each enter is a visit of the walker (the profile eviction's clock); the opted-out phone is none
        assert gateway.ledger is not None and gateway.ledger.seen.stats().noted == 2
        assert len(offers("screen-a")) == 1
        assert len(offers("screen-b")) == 1
        # A's screen came first
        assert offers("screen-a")[0]["version"] <= offers("screen-b")[0]["version"]
        assert len(ble.ingest.presence) == 0  # no ghost
        assert ble.ingest.counters["identified"] == 2 * steps
        await probe.wait_for(lambda: len(probe.json_on(f"{ROOT}/gateway/health")) >= 2)
        health_text = json.dumps(probe.json_on(f"{ROOT}/gateway/health")[-1])
    # Nothing about the unknown devices (nor the opted-out shopper's EIDs) was written anywhere.
    ledger_bytes = b"".join(path.read_bytes() for path in (tmp_path / "store").glob("ledger.sqlite*"))
    for device_id in UNKNOWN_IDS:
        assert device_id.encode() not in ledger_bytes
        assert device_id not in health_text
    # The opted-out shopper exists only as their consent record, never as a sighting or decision.
    with contextlib.closing(sqlite3.connect(tmp_path / "store" / "ledger.sqlite")) as conn:
        assert conn.execute("select count(*) from decisions where shopper_id = 'p-nope'").fetchone() == (0,)
        assert conn.execute("select count(*) from decisions").fetchone() == (2,)
    assert nope.hex().encode() not in ledger_bytes
    assert "p-nope" not in health_text
    presence_payloads = json.dumps(
        [probe.json_on(t) for t in (f"{ROOT}/presence/cafe", f"{ROOT}/presence/entrance")]
    )
    assert "p-walker" not in presence_payloads
