"""`ble scan` and `ble calibrate` with the real bleak scanner against dbusmock's BlueZ."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.config import GatewaySettings, parse_settings
from edge.events import Purpose
from edge.identity import generate_keypair
from edge.identity.eid import EidKey, compute_eid
from edge.ledger import ConsentRow, Ledger
from edge.tools.ble import calibrate, scan
from tests.support import clock
from tests.support.bluez import AsyncBlueZ, async_bluez
from tests.support.store import REPO

UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
IBEACON = bytes.fromhex("0215") + bytes.fromhex(UUID.replace("-", "")) + bytes.fromhex("00010002c5")
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
KEY = bytes(range(16))
BEACON, PHONE, STRANGER = "C0:00:00:00:00:01", "C0:00:00:00:00:02", "DE:AD:BE:EF:00:01"


@pytest.fixture
async def bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncBlueZ]:
    async with async_bluez(tmp_path, monkeypatch) as mock:
        yield mock


async def settings_for(tmp_path: Path) -> GatewaySettings:
    _, public_pem = generate_keypair()
    (tmp_path / "token.pem").write_bytes(public_pem)
    keys = [{"shopper_id": "p-1", "identity_key": KEY.hex(), "rotation_exponent": 10, "clock_offset_s": 0}]
    (tmp_path / "eid.json").write_text(json.dumps({"keys": keys}))
    (tmp_path / "eid.json").chmod(0o600)
    async with Ledger(tmp_path / "ledger.sqlite", clock.PinnedClock()) as ledger:
        await ledger.set_consent(ConsentRow("p-1", Purpose.PRESENCE_BLE, True, clock.now() - 10, "test"))
    document = {
        "store": {"id": "s"},
        "identity": {"public_key_files": [str(tmp_path / "token.pem")]},
        "decisions": {
            "model": str(REPO / "models/offers.onnx"),
            "offers_file": str(REPO / "config/offers.example.toml"),
        },
        "ledger": {"path": str(tmp_path / "ledger.sqlite")},
        "zones": [{"id": "cafe"}],
        "ble": {
            "enabled": True,
            "zone": "cafe",
            "eid_keys_file": str(tmp_path / "eid.json"),
            "scanner": {"backoff_initial_s": 0.02, "watchdog_interval_s": 0.05},
            "beacons": [
                {
                    "name": "cafe-ceiling",
                    "kind": "ibeacon",
                    "zone": "cafe",
                    "uuid": UUID,
                    "major": 1,
                    "minor": 2,
                }
            ],
        },
    }
    return parse_settings(document, base_dir=tmp_path)


async def _keep_advertising(bluez: AsyncBlueZ, rssis: list[int]) -> None:
    eid = compute_eid(KEY, 10, EidKey("p-1", KEY, 10, 0).counter_at(clock.now()))
    await bluez.add_device(BEACON, rssi=-70, manufacturer_data={0x004C: IBEACON})
    await bluez.add_device(PHONE, rssi=-60, service_data={EDDYSTONE: bytes.fromhex("30ee") + eid})
    await bluez.add_device(STRANGER, rssi=-50, service_data={EDDYSTONE: bytes.fromhex("30ee") + bytes(8)})
    for rssi in rssis:
        await asyncio.sleep(0.05)
        await bluez.advertise(BEACON, rssi=rssi)
        await bluez.advertise(PHONE, rssi=rssi + 5)
        await bluez.advertise(STRANGER, rssi=rssi + 9)


async def test_scan_names_only_what_may_be_named(bluez: AsyncBlueZ, tmp_path: Path) -> None:
    settings = await settings_for(tmp_path)
    out = io.StringIO()
    traffic = asyncio.create_task(_keep_advertising(bluez, [-70, -71, -69, -72, -70] * 3))
    lines = await scan(settings, 2.0, out)
    await traffic
    text = out.getvalue()
    assert lines > 3
    assert "store beacon cafe-ceiling" in text
    assert "shopper p-1" in text
    assert "eddystone-eid" in text
    assert "anonymous" in text  # the stranger's EID
    for address in (BEACON, PHONE, STRANGER):
        assert address not in text


async def test_calibrate_prints_thresholds_from_the_reference_beacon(
    bluez: AsyncBlueZ, tmp_path: Path
) -> None:
    settings = await settings_for(tmp_path)
    out = io.StringIO()
    traffic = asyncio.create_task(_keep_advertising(bluez, [-70, -71, -69, -70, -72, -68] * 4))
    result = await calibrate(settings, "cafe", 2.0, out, beacon="cafe-ceiling")
    await traffic
    assert result is not None, out.getvalue()
    assert result.source == "store beacon cafe-ceiling"
    assert result.enter_rssi_dbm in (-71, -70, -69)
    assert result.exit_rssi_dbm <= result.enter_rssi_dbm - 6
    assert f"enter_rssi_dbm = {result.enter_rssi_dbm}" in out.getvalue()
    wrong_zone = io.StringIO()
    assert await calibrate(settings, "entrance", 0.1, wrong_zone) is None
    assert "not 'entrance'" in wrong_zone.getvalue()
