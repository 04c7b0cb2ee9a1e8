"""What integrators were told matches what happens (issue 12, item 7): the real gateway, a real mosquitto.

Start-up with hundreds of displays, the first health message, failed acks in health and /metrics, the ack's
bounds, a cleared availability, and logs that never name an anonymous device.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from edge.clock import ManualClock
from edge.config import load_settings
from edge.control.health_json import health_json
from tests.control.test_metrics import scrape
from tests.support.broker import Mosquitto, free_port
from tests.support.clock import now
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, StoreKit, make_store

CONTENT = f"{ROOT}/display/screen-cafe/content"
HEALTH = f"{ROOT}/gateway/health"
DISPLAYS = 304  # the store that logged 228 "pending publish calls" lines at start


@pytest.fixture
def store(tmp_path: Path, mosquitto: Mosquitto) -> StoreKit:
    return make_store(tmp_path / "store", mosquitto.port)


def _append(store: StoreKit, text: str) -> None:
    with store.config_path.open("a") as config:
        config.write(text)


async def test_start_with_304_displays_is_quiet_and_every_manifest_is_retained(
    store: StoreKit, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    _append(
        store,
        "".join(
            f'\n[[displays]]\nid = "wall-{index:03d}"\nzone = "{("cafe", "entrance")[index % 2]}"\n'
            'fallback = { template = "loop", data = { playlist = "wall" } }\n'
            for index in range(DISPLAYS - 2)  # the store has two already
        ),
    )
    with caplog.at_level(logging.INFO):
        async with (
            running_gateway(store.settings()) as gateway,
            Probe(mosquitto.port, f"{ROOT}/display/+/content") as screens,
        ):
            await screens.wait_for(lambda: len({topic for topic, _, _ in screens.messages}) == DISPLAYS, 15)
            assert gateway.generation.link is not None
            assert gateway.generation.link.counters["handler_errors"] == 0
    manifests = {topic: json.loads(payload) for topic, payload, _ in screens.messages}
    assert all(m["fallback"] is True and m["display"] in topic for topic, m in manifests.items())
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [line for line in noisy if "pending publish calls" in line], noisy[:3]


async def test_the_first_health_message_tells_the_truth_about_the_broker(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    async with Probe(mosquitto.port, HEALTH) as watcher:  # subscribed before the gateway exists
        async with running_gateway(store.settings()):
            await watcher.wait_for(lambda: watcher.json_on(HEALTH))
            first = watcher.json_on(HEALTH)[0]
            assert first["mqtt"]["state"] == "connected", first["mqtt"]
            # and every retained copy after a broker restart says so too
            mosquitto.kill()
            mosquitto.start()
            async with Probe(mosquitto.port, HEALTH) as late:
                await late.wait_for(lambda: late.json_on(HEALTH), 10)
                assert all(h["mqtt"]["state"] == "connected" for h in late.json_on(HEALTH))


async def test_clearing_a_retained_availability_is_a_removal_not_a_bad_state(
    store: StoreKit, mosquitto: Mosquitto
) -> None:
    availability = f"{ROOT}/display/screen-cafe/availability"
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port) as installer:
        flow = gateway.generation
        assert flow is not None

        def online() -> bool:
            return bool(flow.board.stats()["screen-cafe"].online)

        await installer.publish(availability, "offline", retain=True)
        await installer.wait_for(lambda: not online())
        await installer.publish(availability, "online", retain=True)
        await installer.wait_for(online)
        await installer.publish(availability, b"", retain=True)  # mosquitto_pub -r -n: the screen is removed
        await installer.wait_for(lambda: not online())
        # a display no longer configured may be cleared the same way
        await installer.publish(f"{ROOT}/display/gone/availability", b"", retain=True)
        await installer.publish(availability, "sideways")  # a marker: a real bad state, counted
        await installer.wait_for(lambda: flow.rejects.counts[("availability", "bad_state")] == 1)
        assert flow.rejects.as_dict() == {"availability.bad_state": 1}
        assert gateway.health().rejected == {"availability.bad_state": 1}


async def test_failed_acks_and_ack_bounds_show_in_health_and_metrics(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = make_store(tmp_path / "store", mosquitto.port)
    port = free_port()
    store.config_path.write_text(
        store.config_path.read_text().replace("metrics_port = 0", f"metrics_port = {port}")
    )
    ack_topic = f"{ROOT}/display/screen-cafe/ack"
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, CONTENT) as screen:
        flow = gateway.generation
        assert flow is not None and gateway.generation.link is not None

        def personal() -> list[dict[str, object]]:
            return [m for m in screen.json_on(CONTENT) if m.get("decision_id")]

        await screen.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await screen.wait_for(personal)
        manifest = personal()[-1]
        ack = {"v": 1, "version": manifest["version"], "decision_id": manifest["decision_id"]}
        await screen.publish(ack_topic, {**ack, "status": "failed"})
        await screen.publish(ack_topic, {**ack, "status": "failed"})
        # a version no SQLite INTEGER holds: refused and counted, no handler error
        await screen.publish(ack_topic, {**ack, "version": 2**66, "status": "shown"})
        # a display whose clock says 9999: the exposure counts, dated by the gateway
        await screen.publish(ack_topic, {**ack, "status": "shown", "shown_at": "9999-12-31T23:59:59Z"})
        await screen.wait_for(lambda: flow.stats.exposures == 1 and flow.stats.acks_failed == 2)
        await screen.wait_for(lambda: flow.rejects.counts[("ack", "bad_version")] == 1)
        assert gateway.generation.link.counters["handler_errors"] == 0
        health = health_json(gateway.health())  # as display makers read it: the contract
        assert health["acks"] == {"failed": 2, "shown_at_replaced": 1}
        assert health["displays"]["screen-cafe"]["acks_failed"] == 2
        assert health["displays"]["screen-entrance"]["acks_failed"] == 0
        assert health["drops"]["rejected"] == {"ack.bad_version": 1}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            result = await scrape(session)
        assert result.value("edge_acks_failed_total") == 2
        assert result.value("edge_display_acks_failed_total", display="screen-cafe") == 2
        assert result.value("edge_display_acks_failed_total", display="screen-entrance") == 0
        assert result.value("edge_exposures_shown_at_replaced_total") == 1
        assert result.value("edge_rejected_total", kind="ack", reason="bad_version") == 1
        assert result.types["edge_acks_failed_total"] == "counter"
    with sqlite3.connect(store.workdir / "ledger.sqlite") as db:
        rows = db.execute("select shown_at_wall, acked_at_wall from exposures").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == rows[0][1]  # shown_at replaced by the gateway's own time of the ack


MACS = ("a4:83:e7:1c:22:9f", "f0d4e2aa0b17", "7C-2E-0D-11-9A-44")


async def test_no_log_line_names_an_anonymous_device_and_warnings_are_bounded(
    store: StoreKit, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    _append(store, '\n[ble.espresense]\nenabled = true\nrooms = { "room-a" = "cafe" }\n')
    clock = ManualClock(wall=now())
    settings = load_settings(store.config_path)
    oversized = b'{"rssi": -60, "pad": "' + b"x" * 20_000 + b'"}'
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="mqtt"):
        async with running_gateway(settings, clock=clock) as gateway, Probe(mosquitto.port) as node:
            flow, link, ble = gateway.generation, gateway.generation.link, gateway.generation.ble
            assert flow is not None and link is not None and ble is not None
            for round_ in range(2):
                for mac in MACS:
                    for room in ("room-a", "room-b", mac):  # a MAC even where the room should be
                        topic = f"espresense/devices/{mac}/{room}"
                        await node.publish(topic, {"id": mac, "rssi": -60, "distance": 1.2})  # anonymous
                        await node.publish(topic, b"{not json")
                        await node.publish(topic, {"id": mac, "rssi": "loud"})
                        for _ in range(5):
                            await node.publish(topic, oversized)
                expected = (round_ + 1) * len(MACS) * 3
                await node.wait_for(lambda n=expected: link.counters["oversized"] == 5 * n, 15)
                await node.wait_for(lambda n=expected: sum(flow.rejects.counts.values()) == 2 * n, 15)
                clock.advance(61)  # the oversized summary's minute passes
            assert ble.ingest.counters["anonymous"] >= len(MACS) * 2  # configured room: counted
    lines = [record.getMessage() for record in caplog.records]
    lines += [record.exc_text or "" for record in caplog.records]
    pattern = re.compile("|".join(re.escape(mac) for mac in MACS), re.IGNORECASE)
    leaked = [line for line in lines if pattern.search(line)]
    assert not leaked, leaked[:3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # one per kind of rejection, and the oversized ones: the first, then one line for the next minute
    assert len([w for w in warnings if "rejected espresense" in w]) == 1
    oversized_lines = [w for w in warnings if "dropped oversized" in w]
    assert len(oversized_lines) == 2, oversized_lines
    assert f"{5 * len(MACS) * 3 - 1} more" in oversized_lines[1]
    assert len(warnings) <= 4, warnings
