"""The reference shapes of what the gateway reports: ``gateway/health`` as key paths with value types, and
``/metrics`` as families with their types and label names, both from one fully equipped gateway.

The gateway (``equipped_gateway``) has everything a store can turn on: app check-ins and acks, POS sales,
a local BLE adapter (real bleak over dbusmock's BlueZ) with store beacons and an opted-in phone, ESPresense,
a camera reading a video made here (a QR check-in and people walking by), cloud sync against the real
reference profile store, signed remote configuration, and alerts (a store beacon never heard). Every source
gets one good input and, where a counter of refusals exists, one bad one.

The shapes are compared, not the values (``tests/control/test_reference.py``): ``health_shape.json`` and
``metric_families.json`` next to this file. Regenerate them deliberately, after listing each change in
docs/mqtt.md or docs/metrics.md::

    EDGE_WRITE_REFERENCE=1 python -m pytest tests/control/test_reference.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.clock import iso_utc
from edge.daemon import Gateway
from edge.identity.eid import compute_eid
from tests.camera.scenes import Walker, place, qr_image, walker_frames
from tests.camera.videos import write_video
from tests.control.conftest import make_control_store
from tests.support import clock
from tests.support.bluez import IN_PROGRESS, AsyncBlueZ, async_bluez
from tests.support.broker import Mosquitto, free_port
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, sync_section

HERE = Path(__file__).resolve().parent
HEALTH_SHAPE = HERE / "health_shape.json"
METRIC_FAMILIES = HERE / "metric_families.json"
WRITE_VAR = "EDGE_WRITE_REFERENCE"

HEALTH = f"{ROOT}/gateway/health"
CONTENT = f"{ROOT}/display/screen-cafe/content"
EID_KEY = bytes(range(16, 32))
EDDYSTONE = "0000feaa-0000-1000-8000-00805f9b34fb"
IBEACON_UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
PHONE, BEACON, BROKEN = "C0:00:00:00:00:02", "C0:00:00:00:00:01", "C0:00:00:00:00:03"
FPS = 20

# Maps whose keys are data (a reason, a kind, an outcome), not part of the contract: their entries are shown
# as one ``<path>.*`` entry of the value type, after the fixed keys the map always has (listed here).
COUNTER_MAPS: Mapping[str, frozenset[str]] = {
    "mqtt": frozenset({"state", "outbox"}),
    "drops.rejected": frozenset(),
    "tokens.rejected": frozenset(),
    "sync.push.failures": frozenset(),
    "sync.pull.failures": frozenset(),
    "sync.pull.rejected": frozenset(),
    "sync.pull.swept": frozenset(),
    "sync.profiles": frozenset({"inflight", "unknown_cached"}),
    "ble.scanner.errors": frozenset(),
    "ble.adverts": frozenset(),
    "ble.frames_rejected": frozenset(),
    "ble.presence": frozenset({"tracked"}),
    "ble.events": frozenset(),
    "cameras.cam-cafe": frozenset({"zone", "capture", "people", "entered", "left", "mean_dwell_s"}),
    "control": frozenset({"current", "pending", "highest_seen", "kept", "rejected", "flags"}),
    "control.rejected": frozenset(),
    "devices.by_device.cafe-light.values": frozenset(),
    "staff.answers": frozenset(),
}
# Values that are null or of one type depending on what happened last (a screen shows an offer or the
# fallback): both are in the contract, so the shape says both whichever this run saw.
NULLABLE: Mapping[str, str] = {
    "ledger.purge.last_age_s": "float",
    "displays.screen-cafe.offer_id": "str",
    "displays.screen-entrance.offer_id": "str",
    "devices.by_device.cafe-light.available": "bool",
    "devices.by_device.cafe-light.override_left_s": "float",
}


# ----- shapes -----------------------------------------------------------------------------------------------


def _type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def json_shape(document: object) -> list[str]:
    """``"path: type"`` for every key path of a JSON document, in document order; list items merged as
    ``path[]``, several types of one path as ``a|b``, counter maps (``COUNTER_MAPS``) as ``path.*``."""
    types: dict[str, set[str]] = {}

    def walk(value: object, path: str) -> None:
        types.setdefault(path, set()).add(_type(value))
        if isinstance(value, dict):
            fixed = COUNTER_MAPS.get(path)
            for key, child in value.items():
                if fixed is not None and key not in fixed:
                    continue
                walk(child, f"{path}.{key}" if path else key)
            if fixed is not None:
                extra = [child for key, child in value.items() if key not in fixed]
                star = types.setdefault(f"{path}.*", set())
                star.update(_type(child) for child in extra)
                if any(isinstance(child, dict | list) for child in extra):
                    raise TypeError(f"{path}: a counter map holds numbers only")
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    walk(document, "")
    for path, kind in NULLABLE.items():
        if path in types:
            types[path] |= {"null", kind}
    # A counter map with no entries in this run says nothing about its values: counters are integers.
    return [f"{path or '.'}: {'|'.join(sorted(kinds)) or 'int'}" for path, kinds in types.items()]


def metric_families(text: str) -> dict[str, dict[str, Any]]:
    """Each family of an exposition (by its TYPE line's name), parsed by prometheus_client: its type, sample
    names and label names; families without samples are left out, as the gateway leaves out unknown values."""
    families: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if not family.samples:
            continue
        # The exposition's own name: a counter's family is named without ``_total`` by the parser, which
        # would make the counter ``edge_camera_people_total`` and the gauge ``edge_camera_people`` one key.
        name = f"{family.name}_total" if family.type == "counter" else family.name
        families[name] = {
            "type": family.type,
            "samples": sorted({sample.name for sample in family.samples}),
            "labels": sorted({name for sample in family.samples for name in sample.labels} - {"le"}),
        }
    return dict(sorted(families.items()))


# ----- the gateway ------------------------------------------------------------------------------------------


@dataclass
class Equipped:
    gateway: Gateway
    store: StoreKit
    probe: Probe
    metrics_port: int

    def last_health(self) -> dict[str, Any]:
        return json.loads(self.probe.on(HEALTH)[-1])

    async def scrape(self) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response,
        ):
            assert response.status == 200
            return await response.text()


def _scene(token: str, seconds: float = 3.0) -> list[np.ndarray]:
    """640x480: two people walk in and stand; one holds a QR code up for a second."""
    code = qr_image(token, module_px=4)
    walkers = [
        Walker(enter=0, stand_at=0.3, stand=50),
        Walker(enter=8, stand_at=0.7, stand=40, from_left=False),
    ]
    frames = []
    for index, (scene, _truth) in enumerate(walker_frames(walkers, int(seconds * FPS), shape=(480, 640))):
        shown = 15 <= index < 35
        frames.append(place(scene, code, center=(320 + 2 * (index - 15), 240), angle=5.0) if shown else scene)
    return frames


def _equip(store: StoreKit, metrics_port: int) -> None:
    """BLE (local adapter, beacons, EID keys, ESPresense), a camera and the metrics port on a test store."""
    workdir = store.workdir
    seed = json.loads((workdir / "shoppers.json").read_text())
    at = iso_utc(clock.now() - 3600)
    seed["shoppers"].append({"id": "p-near", "at": at, "consents": {"presence_ble": True}})
    (workdir / "shoppers.json").write_text(json.dumps(seed))
    keys = [
        {"shopper_id": "p-near", "identity_key": EID_KEY.hex(), "rotation_exponent": 10, "clock_offset_s": 0}
    ]
    (workdir / "eid.json").write_text(json.dumps({"keys": keys}))
    (workdir / "eid.json").chmod(0o600)
    write_video(workdir / "cafe-camera.avi", _scene(store.token("p-full")), FPS)
    text = store.config_path.read_text().replace("metrics_port = 0", f"metrics_port = {metrics_port}")
    store.config_path.write_text(
        text
        + '\n[ble]\nenabled = true\nzone = "cafe"\neid_keys_file = "eid.json"\n'
        + "[ble.scanner]\nbackoff_initial_s = 0.02\nwatchdog_interval_s = 0.05\n"
        + '[ble.espresense]\nenabled = true\nrooms = { "room-a" = "cafe" }\n'
        + f'[[ble.beacons]]\nname = "cafe-ceiling"\nkind = "ibeacon"\nzone = "cafe"\nuuid = "{IBEACON_UUID}"\n'
        + "major = 1\nminor = 2\n"
        + f'[[ble.beacons]]\nname = "door"\nkind = "ibeacon"\nzone = "entrance"\nuuid = "{IBEACON_UUID}"\n'
        + "major = 1\nminor = 3\n"
        + '\n[[cameras]]\nid = "cam-cafe"\nsource = "cafe-camera.avi"\nzone = "cafe"\nqr_fps = 10\ncount_fps = 10\n'
        + '\n[[devices]]\nid = "cafe-light"\nzone = "cafe"\nkind = "light"\nadapter = "zigbee2mqtt"\n'
        + 'address = "cafe light"\n[devices.capabilities]\n'
        + "brightness = { default = 80, min = 10, max = 100, step = 5 }\n"
        + "color_temp = { default = 4000, min = 2700, max = 6500, step = 100 }\n"
        + '\n[staff]\nteams = { floor = ["cafe", "entrance"] }\n'
    )


async def _until(predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def _bluetooth(bluez: AsyncBlueZ) -> None:
    """A store beacon, an opted-in phone near the gateway, and a malformed iBeacon frame."""
    eid = compute_eid(EID_KEY, 10, int(clock.now()))
    ibeacon = (
        bytes.fromhex("0215") + bytes.fromhex(IBEACON_UUID.replace("-", "")) + bytes.fromhex("00010002c5")
    )
    await bluez.add_device(BEACON, rssi=-65, manufacturer_data={0x004C: ibeacon})
    await bluez.add_device(PHONE, rssi=-60, service_data={EDDYSTONE: bytes.fromhex("30ee") + eid})
    await bluez.add_device(BROKEN, rssi=-70, manufacturer_data={0x004C: bytes.fromhex("0215") + b"\x01\x02"})
    for rssi in (-61, -59, -60, -62, -58, -60, -61):
        await asyncio.sleep(0.05)
        await bluez.advertise(PHONE, rssi=rssi)
        await bluez.advertise(BEACON, rssi=rssi - 5)


def _sale(txn_id: str, token: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "txn_id": txn_id,
        "items": [{"sku": "FLAT-WHITE", "qty": 2, "price": 3.5}],
    }
    if token is not None:
        body["token"] = token
    return body


async def _drive(kit: Equipped) -> None:
    """One good input from every source, and one bad one where refusals are counted."""
    gateway, store, probe = kit.gateway, kit.store, kit.probe
    generation = gateway.generation
    assert generation is not None and generation.ble is not None and generation.scanner is not None
    await probe.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
    await _until(
        lambda: any(m.get("decision_id") for m in probe.json_on(CONTENT)), "a manifest on screen-cafe"
    )
    manifest = [m for m in probe.json_on(CONTENT) if m.get("decision_id")][-1]
    ack = {"v": 1, "version": manifest["version"], "decision_id": manifest["decision_id"], "status": "shown"}
    await probe.publish(f"{ROOT}/display/screen-cafe/ack", ack)
    await probe.publish(f"{ROOT}/checkin", b"not json")
    await probe.publish(f"{ROOT}/checkin", store.checkin("p-full", exp=int(clock.now()) - 600))
    await probe.publish(f"{ROOT}/checkin", store.checkin("p-stranger", zone="entrance"))  # a cache miss
    await probe.publish(f"{ROOT}/pos/1/transaction", _sale("T1", store.token("p-full")))
    await probe.publish(f"{ROOT}/pos/1/transaction", _sale("T2"))
    await probe.publish("espresense/devices/eid:0badc0ffee0ddf00/room-a", {"rssi": -60})
    weather = {"v": 1, "temp_c": 18.5, "precipitation": False, "observed_at": iso_utc(clock.now() - 60)}
    await probe.publish(f"{ROOT}/context/weather", weather)
    stats, pos, ble = generation.stats, generation.pos, generation.ble
    await _until(lambda: generation.context.weather.stats().known, "a local weather reading")
    await _until(lambda: generation.context.trends.stats().refreshes, "the local trends read")
    await _until(lambda: stats.exposures >= 1 and pos.counters.transactions >= 2, "an exposure and two sales")
    await _until(lambda: ble.counters["enter"] >= 1, "the phone entering the cafe")
    await _until(lambda: generation.verifier.rejections, "an expired token refused")
    camera = generation.cameras[0]
    await _until(lambda: camera.counters["qr_checkins"] >= 1, "a QR check-in", timeout=30)
    await _until(lambda: ble.ingest.frame_counter, "a malformed BLE frame")
    await _devices(kit)
    await _until(
        lambda: gateway.sync_health is not None and gateway.sync_health.push.batches >= 1,
        "a push the cloud answered, in the health",
    )
    await _until(lambda: gateway.sync_health and gateway.sync_health.push.failures, "a push failure")


async def _devices(kit: Equipped) -> None:
    """The cafe's light: online, its state, a staff override, a malformed state and an unknown device."""
    devices, probe = kit.gateway.generation.devices if kit.gateway.generation else None, kit.probe
    assert devices is not None
    light = "zigbee2mqtt/cafe light"
    await probe.publish(f"{light}/availability", b'{"state":"online"}')
    await probe.publish(light, {"state": "ON", "brightness": 203, "color_temp": 250})
    await probe.publish(light, b"not json")
    await probe.publish(
        f"{ROOT}/device/cafe-light/override", {"v": 1, "values": {"brightness": 50}, "for_s": 600}
    )
    await probe.publish(f"{ROOT}/device/no-such-light/override", {"v": 1, "values": {}, "for_s": 0})
    await _until(lambda: devices.stats().devices[0].override_left_s, "the staff override in force")
    await _until(
        lambda: (
            kit.gateway.generation and kit.gateway.generation.rejects.counts[("override", "unknown_device")]
        ),
        "an override refused",
    )
    await _until(lambda: devices.stats().devices[0].bad_messages, "a malformed device state")


@asynccontextmanager
async def equipped_gateway(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Equipped]:
    """The fully equipped gateway, driven by every source, with a fresh ``gateway/health`` published."""
    (tmp_path / "cloud").mkdir()
    async with (
        running_profile_store(tmp_path / "cloud") as cloud,
        async_bluez(tmp_path / "bluez", monkeypatch) as bluez,
    ):
        token = await cloud.add_store(STORE)
        workdir = tmp_path / "store"
        workdir.mkdir()
        control = make_control_store(
            workdir, mosquitto.port, sync=sync_section(cloud.base_url, token, workdir)
        )
        store, port = control.store, free_port()
        _equip(store, port)
        # The first passive scan (monitor registration) fails once: a scanner fault; the retry works.
        await bluez.fail_next("RegisterMonitor", [IN_PROGRESS])
        async with (
            Probe(mosquitto.port, f"{ROOT}/#") as probe,
            running_gateway(store.settings(), config_path=store.config_path) as gateway,
        ):
            kit = Equipped(gateway, store, probe, port)
            scanner = gateway.generation.scanner if gateway.generation is not None else None
            assert scanner is not None
            await _until(lambda: scanner.stats().state == "scanning", "the scanner scanning")
            await _bluetooth(bluez)
            cloud.faults.set(
                "http500", times=1, prefix=f"/v1/stores/{STORE}/events"
            )  # one push fails, the retry passes
            await _drive(kit)
            seen = len(probe.on(HEALTH))
            await _until(lambda: len(probe.on(HEALTH)) > seen, "a fresh gateway/health")
            yield kit


def write_or_compare(path: Path, current: object) -> object:
    """The committed reference at ``path``; with ``EDGE_WRITE_REFERENCE=1``, ``current`` is written first."""
    if os.environ.get(WRITE_VAR) == "1":
        path.write_text(json.dumps(current, indent=1) + "\n")
    return json.loads(path.read_text())
