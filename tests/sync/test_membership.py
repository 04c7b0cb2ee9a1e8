"""A store holds only its own shoppers, end to end: the reference cloud (its clock moved by hand), a gateway,
mosquitto. Another store's shopper is never pulled; walking in (a cache miss) makes them this store's, with
their consents, profile and EID key; a month without a visit and the cloud takes them back: the store forgets
their consents, profile and key, and tells the cloud nothing (it is not the shopper's choice)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from edge.clock import ManualClock
from edge.events import Purpose
from tests.support import clock as timeline
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, synced_store
from tests.support.wait import until

EID_KEY = bytes(range(100, 116))
DAY = 86_400.0


async def test_a_shopper_is_pulled_while_they_are_this_stores_and_forgotten_after(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cloud_clock = ManualClock(wall=timeline.now(), monotonic=0.0)
    async with running_profile_store(tmp_path, clock=cloud_clock) as cloud:
        token = await cloud.add_store(STORE)
        await cloud.add_store("store-002")
        await cloud.add_shopper("p-home", {"visits": 9}, ("personalization",))  # store-001's own
        purposes = ("personalization", "presence_ble", "measurement")
        await cloud.add_shopper(
            "p-far", {"visits": 3, "language": "fr"}, purposes, EID_KEY, home_store="store-002"
        )
        store = synced_store(
            tmp_path, mosquitto.port, cloud.base_url, token, "\n[ble.espresense]\nenabled = true\n"
        )
        async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, f"{ROOT}/#") as probe:
            generation = gateway.generation
            assert generation is not None and generation.sync is not None
            await until(lambda: generation.consents.has("p-home", Purpose.PERSONALIZATION))
            # The home store's own shopper came; the other store's did not (consents, profile, key)
            assert not generation.consents.granted("p-far")
            assert generation.profiles.get("p-far") is None

            # p-far walks in: the cache miss makes them this store's, and the next pull brings the rest
            await probe.publish(f"{ROOT}/checkin", store.checkin("p-far", zone="cafe"))
            await until(lambda: generation.consents.has("p-far", Purpose.PRESENCE_BLE))
            await until(lambda: _rows(store.workdir, "eid_keys") == 1)  # granted presence_ble: the key too
            assert generation.profiles.get("p-far") is not None

            # A month without a visit: the cloud takes them back at this store's next pull
            cloud_clock.advance(31 * DAY)
            await until(lambda: not generation.consents.granted("p-far"), timeout=15)
            await until(lambda: generation.profiles.get("p-far") is None)
            assert generation.consents.has("p-home", Purpose.PERSONALIZATION)  # home is home
            await generation.sync.pusher.drain()
            pushed = [e for e in await cloud.events(STORE) if e["kind"] == "consent"]
            assert pushed == []  # the store's forgetting is not the shopper's choice: nothing told
    for table in ("consents", "profiles", "eid_keys"):
        assert _rows(store.workdir, table) == 0, table


def _rows(workdir: Path, table: str) -> int:
    """p-far's rows in one of the ledger's tables (read beside the running gateway)."""
    with contextlib.closing(sqlite3.connect(workdir / "ledger.sqlite")) as db:
        return int(db.execute(f"SELECT count(*) FROM {table} WHERE shopper_id = 'p-far'").fetchone()[0])
