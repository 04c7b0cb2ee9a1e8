"""A huge RSSI on the ESPresense topic, through mosquitto and the running gateway (issue 18).

A 401-digit ``rssi`` once raised OverflowError inside the handler: a handler error with a full traceback per
message. Now it is one counted ``espresense.bad_rssi`` rejection, no handler error, nothing logged with a
traceback, and the node's next good report still counts.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.config import load_settings
from edge.identity import generate_keypair
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import REPO

STORE = "s-numbers"
UUID = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"


def _config(workdir: Path, port: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    _, public_pem = generate_keypair()
    (workdir / "token.pem").write_bytes(public_pem)
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": []}))
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "{STORE}"\n[mqtt]\nport = {port}\nreconnect_max_s = 0.5\n'
        '[identity]\npublic_key_files = ["token.pem"]\nconsents_file = "shoppers.json"\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\n'
        f'offers_file = "{REPO / "config/offers.example.toml"}"\n'
        '[ledger]\npath = "ledger.sqlite"\n[control]\nstate_dir = "state"\n[health]\nmetrics_port = 0\n'
        '[ble.espresense]\nenabled = true\nrooms = { "room-a" = "cafe" }\n'
        '[[zones]]\nid = "cafe"\n'
    )
    return config


async def test_a_huge_rssi_is_a_counted_rejection(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(wall=1_800_000_000.0)
    settings = load_settings(_config(tmp_path / "store", mosquitto.port))
    caplog.set_level(logging.DEBUG)
    async with running_gateway(settings, clock=clock) as gateway, Probe(mosquitto.port, "none/#") as probe:
        generation = gateway.generation
        ble = generation.ble
        assert ble is not None
        topic = "espresense/devices/eid:0011223344556677/room-a"
        huge = b'{"id": "eid:0011223344556677", "rssi": ' + b"9" * 401 + b', "distance": 1.9}'
        await probe.publish(topic, huge)
        await probe.publish(topic, huge.replace(b'"rssi": ', b'"rssi": -'))
        await probe.wait_for(lambda: generation.rejects.as_dict().get("espresense.bad_rssi") == 2)
        # A good report from the same node afterwards is still heard (a store beacon: recognised, no shopper).
        beacon = f"espresense/devices/iBeacon:{UUID}-1-2/room-a"
        await probe.publish(beacon, json.dumps({"id": f"iBeacon:{UUID}-1-2", "rssi": -60}).encode())
        await probe.wait_for(lambda: ble.ingest.counters.total() >= 1)
        assert generation.link.counters["handler_errors"] == 0
        assert {k: v for k, v in generation.rejects.as_dict().items() if k.startswith("espresense.")} == {
            "espresense.bad_rssi": 2
        }
    assert [r.getMessage() for r in caplog.records if r.exc_info is not None] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "Traceback" not in caplog.text
    assert "OverflowError" not in caplog.text
