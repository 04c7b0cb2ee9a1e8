"""The real gateway process, SIGKILLed again and again while shoppers check in and screens ack: every decision
and exposure in its ledger reaches the cloud exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path

from tests.gateway.test_process import start_gateway, wait_state
from tests.support.broker import Mosquitto
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, make_store, sync_section

STATUS = f"{ROOT}/gateway/status"
CONTENT = f"{ROOT}/display/+/content"
KILLS = 8


def _rows(db: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


async def test_sigkilled_gateway_pushes_each_decision_and_exposure_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    rng = random.Random(4)
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(workdir, mosquitto.port, sync=sync_section(cloud.base_url, token, workdir))
        db = workdir / "ledger.sqlite"
        async with Probe(mosquitto.port, STATUS, CONTENT, identifier="test-screens") as screens:
            acked: set[str] = set()
            for kill in range(KILLS):
                await cloud.put_shopper(f"p-cloud{kill}", {"visits": kill})
                proc = start_gateway(store)
                try:
                    await wait_state(screens, "online")
                    screens.messages.clear()
                    for index in range(rng.randint(3, 8)):
                        zone = rng.choice(["cafe", "entrance"])
                        shopper = rng.choice(["p-full", "p-nomeasure", "p-anon", f"p-walk{kill}-{index}"])
                        await screens.publish(f"{ROOT}/checkin", store.checkin(shopper, zone=zone))
                        await asyncio.sleep(rng.uniform(0.0, 0.05))
                        for topic, payload, _retain in list(screens.messages):
                            if not topic.endswith("/content"):
                                continue
                            manifest = _json(payload)
                            if manifest.get("decision_id") and manifest["decision_id"] not in acked:
                                acked.add(manifest["decision_id"])
                                ack = {
                                    "v": 1,
                                    "version": manifest["version"],
                                    "decision_id": manifest["decision_id"],
                                    "status": "shown",
                                }
                                await screens.publish(f"{ROOT}/display/{manifest['display']}/ack", ack)
                    await asyncio.sleep(rng.uniform(0.0, 0.3))
                finally:
                    proc.kill()  # SIGKILL: mid-push, mid-pull, mid-check-in, wherever it lands
                    proc.wait(5)
                await wait_state(screens, "offline")
                screens.messages.clear()

            # Up once more, until the outbox is empty and the cloud has everything.
            proc = start_gateway(store)
            try:
                await wait_state(screens, "online")

                async def settled() -> bool:
                    # Redelivered check-ins may still be deciding: empty twice, half a second apart, unchanged.
                    before = _rows(db, "select count(*), (select count(*) from outbox) from decisions")[0]
                    await asyncio.sleep(0.5)
                    after = _rows(db, "select count(*), (select count(*) from outbox) from decisions")[0]
                    return before == after and after[1] == 0

                deadline = asyncio.get_running_loop().time() + 30
                while not await settled():
                    assert asyncio.get_running_loop().time() < deadline, "the outbox never drained"
                    await asyncio.sleep(0.1)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)

        decisions = {row[0] for row in _rows(db, "select decision_id from decisions")}
        exposures = {(r[0], r[1]) for r in _rows(db, "select decision_id, display_id from exposures")}
        events = await cloud.events(STORE)
        pushed_decisions = Counter(e["data"]["decision_id"] for e in events if e["kind"] == "decision")
        pushed_exposures = Counter(
            (e["data"]["decision_id"], e["data"]["display_id"]) for e in events if e["kind"] == "exposure"
        )
        assert len(decisions) >= KILLS  # real traffic crossed the kills
        assert exposures
        # zero lost and zero double-counted, for every row the ledger holds
        assert set(pushed_decisions) == decisions
        assert set(pushed_exposures) == exposures
        assert max(pushed_decisions.values()) == 1
        assert max(pushed_exposures.values()) == 1
        # and the cloud's profiles reached the store through the kills
        profiles = {row[0] for row in _rows(db, "select shopper_id from profiles")}
        assert {f"p-cloud{kill}" for kill in range(KILLS)} <= profiles


def _json(payload: bytes) -> dict:
    import json  # noqa: PLC0415

    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
