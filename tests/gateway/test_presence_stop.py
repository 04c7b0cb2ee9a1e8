"""A clean stop leaves every zone's retained ``presence/{zone}`` unknown, not the last count (real mosquitto)."""

from __future__ import annotations

from pathlib import Path

from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, make_store

PRESENCE = f"{ROOT}/presence/+"


async def test_a_clean_stop_publishes_every_zone_as_unknown(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = make_store(tmp_path / "store", mosquitto.port)
    async with running_gateway(store.settings()), Probe(mosquitto.port, PRESENCE) as probe:
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await probe.wait_for(lambda: probe.json_on(f"{ROOT}/presence/cafe")[-1]["people"] == 1)
        assert "stale" not in probe.json_on(f"{ROOT}/presence/cafe")[-1]
    # What a dashboard that connects while the gateway is down is handed: the retained messages.
    async with Probe(mosquitto.port, PRESENCE) as late:
        await late.wait_for(lambda: all(late.json_on(f"{ROOT}/presence/{z}") for z in ("cafe", "entrance")))
        for zone in ("cafe", "entrance"):
            retained = late.json_on(f"{ROOT}/presence/{zone}")[-1]
            assert retained["people"] is None
            assert retained["identified"] is None
            assert retained["stale"] is True
            assert retained["v"] == 1
            assert retained["since"] == retained["ts"]
    # Back up: every zone is counted again (nobody is checked in after a restart), no longer stale.
    async with running_gateway(store.settings()), Probe(mosquitto.port, PRESENCE) as again:
        await again.wait_for(
            lambda: all(
                (m := again.json_on(f"{ROOT}/presence/{z}")) and m[-1]["people"] == 0
                for z in ("cafe", "entrance")
            )
        )
        assert all("stale" not in again.json_on(f"{ROOT}/presence/{z}")[-1] for z in ("cafe", "entrance"))
