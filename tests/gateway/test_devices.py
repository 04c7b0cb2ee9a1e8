"""Smart devices follow the opted-in people of their zone, through the real gateway and a real broker.

The couple in the fitting room (issue 14): A alone, B joins, a camera counts a stranger, A withdraws consent
inside, a staff override wins and ends, everybody leaves and the room goes back to the store's defaults; a
device that is offline meanwhile gets the whole state when it is back; one that ignores its commands raises
an alert. Devices are simulated on the broker in their makers' own conventions (tests/support/devices.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.clock import iso_utc
from edge.control.health import build_report
from edge.events import Purpose
from edge.flow.devices import override_payload
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.devices import TasmotaLight, Z2mDevice, device_bench
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import CONSENTED_BEFORE_S, ROOT, StoreKit, make_store
from tests.support.wait import until

DEVICES = """
[[devices]]
id = "fitting-trv"
zone = "fitting-rooms"
kind = "climate"
adapter = "zigbee2mqtt"
address = "fitting trv"
min_interval_s = 0.5
revert_after_s = 0.5
[devices.capabilities]
temperature = { default = 21, min = 18, max = 25, step = 0.5 }

[[devices]]
id = "fitting-light"
zone = "fitting-rooms"
kind = "light"
adapter = "zigbee2mqtt"
address = "fitting light"
min_interval_s = 0.5
revert_after_s = 0.5
[devices.capabilities]
color_temp = { default = 4000, min = 2700, max = 6500, step = 100 }

[[devices]]
id = "fitting-lamp"
zone = "fitting-rooms"
kind = "light"
adapter = "tasmota"
address = "tasmota_FIT01"
min_interval_s = 0.5
[devices.capabilities]
color_temp = { default = 4000, min = 2700, max = 6500, step = 100 }

[[devices]]
id = "cafe-stubborn"
zone = "cafe"
kind = "light"
adapter = "zigbee2mqtt"
address = "cafe stubborn"
confirm_s = 0.3
[devices.capabilities]
brightness = { default = 80, min = 10, max = 100, step = 5 }
"""


def _shopper(shopper_id: str, *, measurement: bool, device: bool, **preferences: float) -> dict[str, object]:
    return {
        "id": shopper_id,
        "at": iso_utc(clock.now() - CONSENTED_BEFORE_S),
        "consents": {"personalization": True, "measurement": measurement, "device_preferences": device},
        "profile": {"device_preferences": preferences},
    }


def _store(workdir: Path, port: int) -> StoreKit:
    store = make_store(workdir, port, zones=("cafe", "fitting-rooms"))
    seed = json.loads((workdir / "shoppers.json").read_text())
    seed["shoppers"] += [
        _shopper("p-a", measurement=True, device=True, temperature=20, color_temp=2700),
        _shopper("p-b", measurement=False, device=True, temperature=26, color_temp=4000),
        _shopper("p-c", measurement=True, device=False, temperature=25, color_temp=6500),  # not opted in
    ]
    (workdir / "shoppers.json").write_text(json.dumps(seed))
    store.config_path.write_text(store.config_path.read_text() + DEVICES)
    return store


async def test_the_couple_in_the_fitting_room(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = _store(tmp_path, mosquitto.port)
    trv = Z2mDevice("fitting trv", {"current_heating_setpoint": 19.0, "local_temperature": 18.2})
    light = Z2mDevice("fitting light", {"state": "ON", "brightness": 254, "color_temp": 153})
    stubborn = Z2mDevice("cafe stubborn", {"state": "ON", "brightness": 10}, ignore=True)
    lamp = TasmotaLight("tasmota_FIT01", {"POWER": "ON", "Dimmer": 100, "CT": 153})

    def setpoint() -> object:
        return trv.state["current_heating_setpoint"]

    async with (
        device_bench(mosquitto.port, [trv, light, stubborn], [lamp]) as bench,
        Probe(mosquitto.port, f"{ROOT}/gateway/health") as probe,
        running_gateway(store.settings()) as gateway,
    ):
        generation = gateway.generation
        assert generation is not None and generation.devices is not None
        devices = generation.devices
        # Start: the store's defaults everywhere (4000 K = 250 mired).
        await until(
            lambda: setpoint() == 21.0 and light.state["color_temp"] == 250 and lamp.state["CT"] == 250
        )
        await bench.set_online(lamp, False)
        await until(lambda: "devices_offline: fitting-lamp" in build_report(gateway).alerts)
        sent_to_lamp = len(lamp.commands)

        # A alone: 20 °C, 2700 K. C is there too, without device_preferences: no say.
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-c", zone="fitting-rooms"))
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-a", zone="fitting-rooms"))
        await until(lambda: setpoint() == 20.0 and light.state["color_temp"] == 370)
        # B joins: the median of 20 and 25 (B's 26 clamped first); of 2700 and 4000 K (3350 -> 3400 K).
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-b", zone="fitting-rooms"))
        await until(lambda: setpoint() == 22.5 and light.state["color_temp"] == 294)
        # The lamp was offline all along: nothing was sent; back online it gets the whole state at once.
        assert len(lamp.commands) == sent_to_lamp
        await bench.set_online(lamp, True)
        await until(lambda: lamp.state["CT"] == 294)

        # A camera counts four people in the room, three of them identified: one stranger pulls toward
        # the default, (2 x 22.5 + 21) / 3 = 22 °C and (2 x 3350 + 4000) / 3 -> 3600 K (278 mired).
        generation.floor.counts.camera("cam-fit", "fitting-rooms", 4, None)
        await until(lambda: setpoint() == 22.0 and light.state["color_temp"] == 278)

        # A withdraws device_preferences inside the room: recomputed at once, B and the stranger are left.
        await generation.consents.apply("p-a", Purpose.DEVICE_PREFERENCES, False, clock.now(), "app")
        await until(lambda: setpoint() == 23.0)  # (25 + 21) / 2
        generation.floor.counts.camera("cam-fit", "fitting-rooms", 0, None)
        await until(lambda: setpoint() == 25.0)  # B alone, clamped to the room's 25

        # A staff override wins, and ends by itself.
        await probe.publish(
            f"{ROOT}/device/fitting-trv/override", override_payload({"temperature": 23.5}, 0.8)
        )
        await until(lambda: setpoint() == 23.5)
        await until(lambda: setpoint() == 25.0)

        # Everybody leaves (they check in at the cafe): the defaults come back after revert_after_s.
        for shopper in ("p-a", "p-b", "p-c"):
            await probe.publish(f"{ROOT}/checkin", store.checkin(shopper, zone="cafe"))
        await until(lambda: setpoint() == 21.0 and light.state["color_temp"] == 250)

        # The stubborn light never reports what it was told: an alert, and on /metrics a mismatch.
        await until(lambda: "devices_mismatch" in " ".join(build_report(gateway).alerts))
        stats = {device.id: device for device in devices.stats().devices}
        assert stats["cafe-stubborn"].plan.mismatches >= 1
        assert stats["fitting-trv"].plan.mismatches == 0

        # Commands carry values only: no shopper id in anything a device was sent.
        assert bench.raw and not [payload for _, payload in bench.raw if b"p-" in payload]

        # The ledger has every command; the shoppers behind one only with `measurement` (A, never B).
        async def trv_rows() -> list[tuple[str, float, str, str, list[str]]]:
            return [row for row in await generation.ledger.device_settings() if row[0] == "fitting-trv"]

        await until(lambda: len(trv.commands) == 9)

        async def nine_recorded() -> bool:
            return len(await trv_rows()) >= 9

        await until(nine_recorded, what="nine settings of the TRV in the ledger")
        rows = await trv_rows()
        assert [json.loads(values)["temperature"] for _, _, _, values, _ in rows] == [
            21.0,
            20.0,
            22.5,
            22.0,
            23.0,
            25.0,
            23.5,
            25.0,
            21.0,
        ]
        assert [who for *_, who in rows] == [[], ["p-a"], ["p-a"], ["p-a"], [], [], [], [], []]
        assert [reason for _, _, reason, _, _ in rows][-3:] == ["override", "people", "default"]


EXPECTED = {
    "device.not_json": 1,
    "device.not_object": 1,
    "device.bad_value": 1,
    "device.bad_availability": 1,
    "override.out_of_bounds": 1,
    "override.unknown_capability": 1,
    "override.bad_duration": 1,
    "override.missing_version": 1,
    "override.unknown_device": 1,
}


async def test_bad_device_input_is_counted_and_never_acted_on(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = _store(tmp_path, mosquitto.port)
    trv = Z2mDevice("fitting trv", {"current_heating_setpoint": 21.0})
    async with (
        device_bench(mosquitto.port, [trv]),
        Probe(mosquitto.port, f"{ROOT}/#") as probe,
        running_gateway(store.settings()) as gateway,
    ):
        generation = gateway.generation
        assert generation is not None and generation.devices is not None
        await until(lambda: trv.commands)
        before = len(trv.commands)
        bad = {
            "zigbee2mqtt/fitting trv": [b"not json", b"[1]", b'{"current_heating_setpoint": "hot"}'],
            "zigbee2mqtt/fitting trv/availability": [b"maybe"],
            f"{ROOT}/device/fitting-trv/override": [
                override_payload({"temperature": 30.0}, 60),  # above the room's bounds
                override_payload({"humidity": 40.0}, 60),  # not a capability of the device
                override_payload({"temperature": 22.0}, 86_400),  # longer than 4 h
                b'{"values": {"temperature": 22}, "for_s": 60}',  # no "v"
            ],
            f"{ROOT}/device/no-such-device/override": [override_payload({}, 0)],
        }
        for topic, payloads in bad.items():
            for payload in payloads:
                await probe.publish(topic, payload)
        rejects = generation.rejects
        await until(lambda: sum(n for (kind, _), n in rejects.counts.items() if kind == "override") == 5)
        await until(lambda: sum(n for (kind, _), n in rejects.counts.items() if kind == "device") == 4)
        counted = rejects.as_dict()
        assert {key: counted.get(key) for key in EXPECTED} == EXPECTED
        # A good override after all that is applied: the bad ones changed nothing.
        assert len(trv.commands) == before
        await probe.publish(
            f"{ROOT}/device/fitting-trv/override", override_payload({"temperature": 22.0}, 60)
        )
        await until(lambda: trv.state["current_heating_setpoint"] == 22.0)


async def test_a_kiosk_gets_the_ui_preferences_of_a_shopper_who_opted_in(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = make_store(tmp_path, mosquitto.port, zones=("cafe", "kiosks"))
    seed = json.loads((tmp_path / "shoppers.json").read_text())
    profile = {
        "device_preferences": {"language": "de", "text_scale": 1.2, "temperature": 20},
        "accessibility": {"text_scale": 1.5, "reduced_motion": True},
    }
    seed["shoppers"] += [
        {**_shopper("p-ui", measurement=True, device=True), "profile": profile},
        {**_shopper("p-noui", measurement=True, device=False), "profile": profile},
    ]
    (tmp_path / "shoppers.json").write_text(json.dumps(seed))
    text = store.config_path.read_text().replace(
        'id = "screen-kiosks"\n', 'id = "screen-kiosks"\nui = true\n'
    )
    store.config_path.write_text(text)
    content = f"{ROOT}/display/screen-kiosks/content"
    async with Probe(mosquitto.port, content) as probe, running_gateway(store.settings()):
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-ui", zone="kiosks"))
        await until(lambda: any(m.get("decision_id") for m in probe.json_on(content)))
        personal = [m for m in probe.json_on(content) if m.get("decision_id")]
        # The need (1.5) over the comfort preference (1.2); only the ui keys, nothing else of the profile.
        assert personal[-1]["ui"] == {"language": "de", "text_scale": 1.5, "reduced_motion": "on"}
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-noui", zone="kiosks"))
        await until(lambda: len([m for m in probe.json_on(content) if m.get("decision_id")]) == 2)
        assert "ui" not in [m for m in probe.json_on(content) if m.get("decision_id")][-1]
        assert all("ui" not in m for m in probe.json_on(content) if not m.get("decision_id"))
