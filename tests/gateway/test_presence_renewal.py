"""A shopper still standing at a screen after ``content_ttl_s``: decided again, within the caps (real mosquitto).

The gateway runs on a manual clock: its timers see time move only when the test moves it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
from collections import Counter
from pathlib import Path

from edge.clock import ManualClock
from edge.identity.eid import compute_eid
from tests.gateway.test_ble_walk import ROOT as ROOT_BLE
from tests.gateway.test_ble_walk import WALKER_KEY
from tests.gateway.test_ble_walk import _config as ble_store
from tests.gateway.test_ble_walk import running as running_ble
from tests.support import clock as timeline
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT, make_store

CONTENT = f"{ROOT}/display/screen-cafe/content"
TTL_S = 45.0


async def test_a_present_shopper_is_served_again_after_the_ttl_within_the_caps(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = make_store(tmp_path / "store", mosquitto.port, min_display_s=8, ttl_s=TTL_S)
    manual = ManualClock(wall=timeline.now())
    async with (
        running_gateway(store.settings(), clock=manual) as gateway,
        Probe(mosquitto.port, CONTENT) as screen,
    ):
        board = gateway.generation.board

        def manifests() -> list[dict[str, object]]:
            return screen.json_on(CONTENT)

        await screen.wait_for(lambda: manifests() and manifests()[-1]["fallback"] is True)
        await screen.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await screen.wait_for(lambda: manifests()[-1]["fallback"] is False)
        shown = [manifests()[-1]]
        # Still checked in (checkin_timeout_s is 600 s): every 45 s the screen is decided for them again.
        for _ in range(8):
            before = len(manifests())
            manual.advance(TTL_S)
            await screen.wait_for(lambda n=before: len(manifests()) > n)
            shown.append(manifests()[-1])
        assert board.counters["renewed"] >= 1
        personal = [m for m in shown if m["decision_id"]]
        assert len({m["decision_id"] for m in personal}) == len(personal)  # each renewal is a new decision
        offers = Counter(m["offer_id"] for m in personal if m["offer_id"] is not None)
        assert len(offers) >= 2  # the display cooldown (300 s) rotates the offers
        # ... and no offer more often than its daily cap per shopper (config/offers.example.toml: at most 3)
        assert max(offers.values()) <= 3
        for earlier, later in itertools.pairwise(shown):
            assert later["version"] > earlier["version"]
        db = Path(store.settings().ledger.path)
    # Each renewal that was shown was recorded first (durable before shown).
    with contextlib.closing(sqlite3.connect(db)) as conn:
        recorded = {row[0] for row in conn.execute("select decision_id from decisions")}
    assert {m["decision_id"] for m in personal} <= recorded


async def test_a_shopper_who_left_is_not_renewed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = make_store(tmp_path / "store", mosquitto.port, min_display_s=8, ttl_s=TTL_S)
    manual = ManualClock(wall=timeline.now())
    async with (
        running_gateway(store.settings(), clock=manual) as gateway,
        Probe(mosquitto.port, CONTENT) as screen,
    ):
        await screen.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await screen.wait_for(
            lambda: screen.json_on(CONTENT) and screen.json_on(CONTENT)[-1]["fallback"] is False
        )
        # Checked in elsewhere: no longer in the cafe, so the cafe's screen goes back to its fallback.
        await screen.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="entrance"))
        await screen.wait_for(lambda: gateway.generation.presence.zone_of("p-full") == "entrance")
        manual.advance(TTL_S)
        await screen.wait_for(lambda: screen.json_on(CONTENT)[-1]["fallback"] is True)
        assert len([m for m in screen.json_on(CONTENT) if m["decision_id"]]) == 1  # not decided again


async def test_a_shopper_present_over_espresense_is_renewed_too(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # The walk's store (an opted-in EID, two ESPresense rooms), with the cafe screen's ttl at 45 s.
    config = ble_store(tmp_path / "store", mosquitto.port)
    config.write_text(config.read_text().replace("content_ttl_s = 600", f"content_ttl_s = {TTL_S}"))
    manual = ManualClock(wall=1_800_000_000.0)
    async with running_ble(config, manual) as gateway, Probe(mosquitto.port, f"{ROOT_BLE}/#") as probe:
        ble = gateway.generation.ble
        assert ble is not None
        screen = f"{ROOT_BLE}/display/screen-a/content"

        def personal() -> list[dict[str, object]]:
            return [m for m in probe.json_on(screen) if m["decision_id"]]

        for second in range(70):  # one report a second from the cafe's node, as ESPresense sends them
            manual.advance(1.0)
            eid = compute_eid(WALKER_KEY, 10, int(manual.wall())).hex()
            body = {"id": f"eid:{eid}", "rssi": -55}
            await probe.publish(f"espresense/devices/eid:{eid}/room-a", json.dumps(body).encode())
            await probe.wait_for(lambda s=second: ble.ingest.counters["identified"] >= s + 1)
            await ble.tick()
        await probe.wait_for(lambda: len(personal()) >= 2)
        assert ble.ingest.presence.zone_of("p-walker") == "cafe"  # never left
        assert gateway.generation.board.counters["renewed"] >= 1
        assert len({m["decision_id"] for m in personal()}) == len(personal())
