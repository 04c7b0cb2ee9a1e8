"""The whole gateway with its own adapter: real bleak over dbusmock's BlueZ, real broker, real ledger."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.clock import iso_utc
from edge.config import load_settings
from edge.daemon import Gateway
from edge.identity import generate_keypair
from edge.identity.eid import compute_eid
from tests.support import clock
from tests.support.bluez import AsyncBlueZ, async_bluez
from tests.support.broker import Mosquitto
from tests.support.mqtt import Probe
from tests.support.store import REPO

STORE = "s-local"
ROOT = f"store/{STORE}"
KEY = bytes(range(16, 32))
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"


@pytest.fixture
async def bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncBlueZ]:
    async with async_bluez(tmp_path, monkeypatch) as mock:
        yield mock


def _config(workdir: Path, port: int) -> Path:
    _, public_pem = generate_keypair()
    (workdir / "token.pem").write_bytes(public_pem)
    shoppers = [{"id": "p-near", "at": iso_utc(clock.now() - 3600), "consents": {"presence_ble": True}}]
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": shoppers}))
    keys = [{"shopper_id": "p-near", "identity_key": KEY.hex(), "rotation_exponent": 10, "clock_offset_s": 0}]
    (workdir / "eid.json").write_text(json.dumps({"keys": keys}))
    (workdir / "eid.json").chmod(0o600)
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "{STORE}"\n[mqtt]\nport = {port}\n'
        '[identity]\npublic_key_files = ["token.pem"]\nconsents_file = "shoppers.json"\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\noffers_file = "{REPO / "config/offers.example.toml"}"\n'
        '[ledger]\npath = "ledger.sqlite"\n[control]\nstate_dir = "state"\n[health]\ninterval_s = 0.5\nmetrics_port = 0\n'
        '[ble]\nenabled = true\nzone = "cafe"\neid_keys_file = "eid.json"\n'
        "[ble.scanner]\nbackoff_initial_s = 0.02\nwatchdog_interval_s = 0.05\n"
        f'[[ble.beacons]]\nname = "cafe-ceiling"\nkind = "ibeacon"\nzone = "cafe"\nuuid = "{UUID}"\nmajor = 1\nminor = 2\n'
        '[[zones]]\nid = "cafe"\n'
        '[[displays]]\nid = "screen-cafe"\nzone = "cafe"\nmin_display_s = 0\n'
    )
    return config


async def test_an_opted_in_phone_near_the_gateway_gets_the_screen(
    bluez: AsyncBlueZ, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    workdir = tmp_path / "store"
    workdir.mkdir()
    settings = load_settings(_config(workdir, mosquitto.port))
    gateway = Gateway(settings, clock=clock.PinnedClock(), config_version="test", rng=random.Random(3))
    task = asyncio.create_task(gateway.run())
    try:
        async with Probe(mosquitto.port, f"{ROOT}/#") as probe:
            await asyncio.wait_for(gateway.ready.wait(), 10)
            scanner = gateway.generation.scanner
            assert scanner is not None
            await probe.wait_for(lambda: scanner.stats().state == "scanning")
            eid = compute_eid(KEY, 10, int(clock.now()))
            ibeacon = (
                bytes.fromhex("0215") + bytes.fromhex(UUID.replace("-", "")) + bytes.fromhex("00010002c5")
            )
            await bluez.add_device("C0:00:00:00:00:01", rssi=-65, manufacturer_data={0x004C: ibeacon})
            await bluez.add_device(
                "C0:00:00:00:00:02", rssi=-60, service_data={EDDYSTONE: bytes.fromhex("30ee") + eid}
            )
            for rssi in (-61, -59, -60, -62, -58, -60, -61):
                await asyncio.sleep(0.05)
                await bluez.advertise("C0:00:00:00:00:02", rssi=rssi)
                await bluez.advertise("C0:00:00:00:00:01", rssi=rssi - 5)
            content = f"{ROOT}/display/screen-cafe/content"
            await probe.wait_for(lambda: any(m["decision_id"] for m in probe.json_on(content)), timeout=10)

            def beacon_seen() -> bool:
                health = probe.json_on(f"{ROOT}/gateway/health")
                return (
                    bool(health)
                    and health[-1]["ble"]["beacons"][0]["last_seen_age_s"] is not None
                    and health[-1]["ble"]["events"].get("enter") == 1
                )

            await probe.wait_for(beacon_seen, timeout=5)
            health = probe.json_on(f"{ROOT}/gateway/health")[-1]
            assert health["ble"]["scanner"]["state"] == "scanning"
            assert health["ble"]["events"]["enter"] == 1
            assert health["ble"]["missing_beacons"] == []
            assert "C0:00:00:00:00:02" not in json.dumps(health)
    finally:
        gateway.request_stop()
        await asyncio.wait_for(task, 10)
