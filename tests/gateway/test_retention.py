"""Profile eviction through the real gateway, cloud and broker: a shopper not seen for
``ledger.retention.profiles_unseen_days`` loses their profile (disk and memory) and keeps their consents;
their next visit fetches it again and is personal again. A check-in and a POS sale are visits."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from edge.daemon import Gateway
from edge.events import Purpose
from tests.support.broker import Mosquitto
from tests.support.clock import PinnedClock
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section
from tests.support.wait import until

CONTENT = f"{ROOT}/display/screen-cafe/content"
DAY = 86_400.0


def _checkin(store: StoreKit, clock: PinnedClock, shopper: str) -> bytes:
    """A check-in whose token is fresh by the gateway's clock (which the test moves ahead of the cloud's)."""
    now = int(clock.wall())
    return store.checkin(shopper, zone="cafe", iat=now, exp=now + 300)


async def _personal(gateway: Gateway, display: Probe, count: int) -> dict[str, Any]:
    """The ``count``-th personal manifest on the cafe screen, as the ledger recorded its decision."""
    await display.wait_for(
        lambda: len([m for m in display.json_on(CONTENT) if m.get("decision_id")]) >= count
    )
    manifest = [m for m in display.json_on(CONTENT) if m.get("decision_id")][count - 1]
    assert gateway.ledger is not None
    record = await gateway.ledger.decision(manifest["decision_id"])
    assert record is not None
    return record


async def test_an_unseen_profile_is_evicted_and_a_later_visit_fetches_it_again(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    clock = PinnedClock()
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        for shopper in ("p-regular", "p-visitor", "p-away"):
            await cloud.put_shopper(shopper, {"affinity": {"coffee": 0.9}, "visits": 3})
            await cloud.put_consent(shopper, "personalization", True, source="app")
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(
            workdir,
            mosquitto.port,
            seed=False,
            sync=sync_section(cloud.base_url, token, workdir, pull_interval_s=3600, profile_timeout_s=3.0),
        )
        text = store.config_path.read_text()
        store.config_path.write_text(
            text.replace(
                '[ledger]\npath = "ledger.sqlite"\n',
                '[ledger]\npath = "ledger.sqlite"\n[ledger.retention]\nprofiles_unseen_days = 2\n',
            )
        )
        async with (
            running_gateway(store.settings(), clock=clock) as gateway,
            Probe(mosquitto.port, f"{ROOT}/#") as display,
        ):
            assert gateway.generation is not None and gateway.ledger is not None
            flow, ledger = gateway.generation, gateway.ledger
            await until(lambda: all(s in flow.profiles for s in ("p-regular", "p-visitor", "p-away")))

            await display.publish(f"{ROOT}/checkin", _checkin(store, clock, "p-away"))
            assert (await _personal(gateway, display, 1))["personalized"]
            # A day later the regular shops (a POS sale with their token) and the visitor checks in; three
            # days on, the purge.
            clock.offset += DAY
            await display.publish(f"{ROOT}/checkin", _checkin(store, clock, "p-visitor"))
            await _personal(gateway, display, 2)
            now = int(clock.wall())
            sale = {"v": 1, "txn_id": "t-1", "items": [{"sku": "A", "qty": 1, "price": 2.0}]}
            sale["token"] = store.token("p-regular", iat=now, exp=now + 300)
            await display.publish(f"{ROOT}/pos/lane-1/transaction", sale)
            await until(
                lambda: gateway.generation is not None and gateway.generation.pos.counters.transactions == 1
            )
            clock.offset += 2 * DAY - 60
            removed = await gateway.purge()

            assert removed["profiles"] == 1 and removed["shopper_seen"] == 1
            assert "p-away" not in flow.profiles
            assert "p-regular" in flow.profiles and "p-visitor" in flow.profiles
            # their choices stay: a withdrawal or a grant is what the store must act on lawfully
            assert flow.consents.has("p-away", Purpose.PERSONALIZATION)

            # The next visit fetches the profile again: personal, not "unknown" for ever.
            await display.publish(f"{ROOT}/checkin", _checkin(store, clock, "p-away"))
            assert (await _personal(gateway, display, 3))["personalized"]
            assert gateway.generation.sync is not None
            assert gateway.generation.sync.fetcher.outcomes["fetched"] == 1
            assert "p-away" in flow.profiles
            await ledger.seen.flush()
            seen_at = await ledger.seen.last_seen("p-away")
            assert seen_at is not None and seen_at >= clock.wall() - 60
            assert gateway.health().ledger.purge.removed["profiles"] == 1

    with contextlib.closing(sqlite3.connect(workdir / "ledger.sqlite")) as db:
        # the fetched profile lives in memory only; the pulled row of the evicted shopper is gone
        assert db.execute("SELECT shopper_id FROM profiles ORDER BY 1").fetchall() == [
            ("p-regular",),
            ("p-visitor",),
        ]
        assert db.execute("SELECT count(*) FROM consents WHERE shopper_id = 'p-away'").fetchone() == (1,)
