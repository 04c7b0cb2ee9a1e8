"""Each adapter's messages, as the device's own documentation gives them, both ways; bad payloads refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.act.devices import adapter_for
from edge.act.devices.base import DeviceMessageError, Heard, Outgoing
from tests.decide.devices.rooms import fitting_room

LIGHT = {
    "brightness": {"default": 80, "min": 10, "max": 100, "step": 5},
    "color_temp": {"default": 4000, "min": 2700, "max": 6500, "step": 100},
}


def test_zigbee2mqtt_light_and_thermostat() -> None:
    light = adapter_for(fitting_room(kind="light", address="fitting/light 1", capabilities=LIGHT))
    assert light.subscriptions() == (
        "zigbee2mqtt/fitting/light 1",
        "zigbee2mqtt/fitting/light 1/availability",
    )
    [command] = light.commands({"brightness": 50.0, "color_temp": 2700.0})
    assert command.topic == "zigbee2mqtt/fitting/light 1/set"
    assert json.loads(command.payload) == {"state": "ON", "brightness": 127, "color_temp": 370}
    heard = light.hear(
        "zigbee2mqtt/fitting/light 1", b'{"state":"ON","brightness":127,"color_temp":370,"linkquality":80}'
    )
    assert heard is not None
    assert heard.state == pytest.approx({"brightness": 50.0, "color_temp": 2702.7}, abs=0.1)
    assert light.hear("zigbee2mqtt/fitting/light 1/availability", b'{"state":"offline"}') == Heard(
        available=False
    )
    assert light.hear("zigbee2mqtt/fitting/light 1/availability", b"online") == Heard(available=True)
    assert light.hear("zigbee2mqtt/other", b"{}") is None

    trv = adapter_for(
        fitting_room(
            address="trv",
            capabilities={"temperature": {"default": 21, "min": 18, "max": 25, "step": 0.5}},
            zigbee2mqtt={"setpoint": "occupied_heating_setpoint", "base_topic": "z2m"},
        )
    )
    assert trv.commands({"temperature": 22.5}) == [
        Outgoing("z2m/trv/set", b'{"occupied_heating_setpoint":22.5}')
    ]
    heard = trv.hear("z2m/trv", b'{"occupied_heating_setpoint":22.5,"local_temperature":19.1}')
    assert heard == Heard(state={"temperature": 22.5})


def test_tasmota_light() -> None:
    light = adapter_for(
        fitting_room(
            adapter="tasmota",
            address="tasmota_5C1A2B",
            capabilities={**LIGHT, "power": {"type": "choice", "default": "on", "values": ["on", "off"]}},
        )
    )
    assert light.subscriptions() == (
        "stat/tasmota_5C1A2B/RESULT",
        "tele/tasmota_5C1A2B/STATE",
        "tele/tasmota_5C1A2B/LWT",
    )
    assert light.commands({"power": "on", "brightness": 40.0, "color_temp": 6500.0}) == [
        Outgoing("cmnd/tasmota_5C1A2B/Power", b"ON"),
        Outgoing("cmnd/tasmota_5C1A2B/Dimmer", b"40"),
        Outgoing("cmnd/tasmota_5C1A2B/CT", b"154"),
    ]
    heard = light.hear("stat/tasmota_5C1A2B/RESULT", b'{"POWER":"ON","Dimmer":40,"Color":"0000FF","CT":154}')
    assert heard is not None
    assert heard.state == pytest.approx({"power": "on", "brightness": 40.0, "color_temp": 6493.5}, abs=0.1)
    assert light.hear("tele/tasmota_5C1A2B/LWT", b"Offline") == Heard(available=False)
    assert light.hear("tele/tasmota_5C1A2B/STATE", b'{"Uptime":"0T01:00:00"}') is None  # nothing we set


def test_tasmota_takes_only_light_capabilities() -> None:
    with pytest.raises(ValueError, match="Tasmota light takes only"):
        fitting_room(adapter="tasmota")


def test_generic_json_with_a_field_map() -> None:
    kiosk = adapter_for(
        fitting_room(
            adapter="generic",
            kind="kiosk",
            address="kiosk-7",
            capabilities={
                "text_scale": {"default": 1.0, "min": 1.0, "max": 2.0, "step": 0.1, "need": "higher"},
                "language": {"type": "choice", "default": "en", "values": ["en", "de"]},
            },
            generic={"command_topic": "kiosks/{address}/prefs", "fields": {"text_scale": "fontScale"}},
        )
    )
    assert kiosk.commands({"text_scale": 1.4, "language": "de"}) == [
        Outgoing("kiosks/kiosk-7/prefs", b'{"fontScale":1.4,"language":"de"}')
    ]
    assert kiosk.hear("devices/kiosk-7/state", b'{"fontScale":1.4,"language":"de"}') == Heard(
        state={"text_scale": 1.4, "language": "de"}
    )


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        ("zigbee2mqtt/fitting room 1", b"not json", "not JSON"),
        ("zigbee2mqtt/fitting room 1", b"[1, 2]", "JSON object"),
        ("zigbee2mqtt/fitting room 1", b'{"current_heating_setpoint": "warm"}', "not a number"),
        ("zigbee2mqtt/fitting room 1", b'{"current_heating_setpoint": true}', "not a number"),
        ("zigbee2mqtt/fitting room 1", b'{"current_heating_setpoint": 1' + b"0" * 400 + b"}", "out of range"),
        ("zigbee2mqtt/fitting room 1", b'{"color_temp": 0}', "mired"),
        ("zigbee2mqtt/fitting room 1", b"[" * 100_000, "bytes"),
        ("zigbee2mqtt/fitting room 1/availability", b"maybe", "availability"),
        ("zigbee2mqtt/fitting room 1/availability", b'{"state": 1}', "availability"),
    ],
)
def test_bad_device_messages_are_refused_with_a_reason(topic: str, payload: bytes, why: str) -> None:
    adapter = adapter_for(fitting_room())
    with pytest.raises(DeviceMessageError, match=why):
        adapter.hear(topic, payload)


@given(st.binary(max_size=300))
def test_no_payload_raises_anything_but_a_bad_device_message(payload: bytes) -> None:
    for settings in (
        fitting_room(),
        fitting_room(adapter="tasmota", capabilities=LIGHT),
        fitting_room(adapter="generic"),
    ):
        adapter = adapter_for(settings)
        for topic in adapter.subscriptions():
            try:
                heard = adapter.hear(topic, payload)
            except DeviceMessageError:
                continue
            assert heard is None or isinstance(heard, Heard)
