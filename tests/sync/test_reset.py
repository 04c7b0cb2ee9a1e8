"""A cursor reset rebuilds the mirrored state exactly: the gateway is switched from one reference store to a
fresh one (another database on the same address); what the new cloud lacks leaves the ledger and memory,
what it has replaces the old, and the store's own queued events (a local consent among them) are kept and
delivered to the new cloud."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from edge.events import Purpose
from edge.identity import generate_keypair
from edge.identity.eid import EidKey, EidResolver, compute_eid
from edge.sync.wire import EventClass
from tests.support.broker import Mosquitto
from tests.support.clock import now
from tests.support.gateway import running_gateway
from tests.support.profilestore import ProfileStoreKit, running_profile_store
from tests.support.store import STORE, make_store, sync_section
from tests.support.wait import until

GONE_KEY, NEW_KEY = bytes(range(16)), bytes(range(16, 32))
ROTATION = 10


def _offer(offer_id: str) -> dict[str, object]:
    return {"id": offer_id, "title": offer_id, "category": "coffee", "value": 2.0, "zones": ["cafe"]}


def _sees(resolver: EidResolver, shopper_id: str, key: bytes) -> bool:
    """Whether the resolver tells ``shopper_id`` from the EID their phone advertises now."""
    counter = EidKey(shopper_id, key, ROTATION).counter_at(now())
    return resolver.resolve(compute_eid(key, ROTATION, counter)) == shopper_id


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return sorted(conn.execute(sql).fetchall())


async def test_a_cursor_reset_rebuilds_the_mirror_exactly_and_keeps_local_events(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    _, old_pem = generate_keypair()
    _, new_pem = generate_keypair()
    async with running_profile_store(tmp_path) as old:
        token = await old.add_store(STORE)
        for shopper in ("p-gone", "p-both"):
            await old.put_shopper(shopper, {"visits": 1})
            for purpose in ("personalization", "presence_ble"):
                await old.put_consent(shopper, purpose, True, source="app")
        await old.put_eid_key("p-gone", GONE_KEY, ROTATION)
        await old.put_token_key("kid-old", old_pem.decode())
        await old.put_offer(_offer("offer-old"))
        await old.put_inventory("offer-old", False, 0)
        await old.put_order("order-old", STORE, "p-both", "A-1", "Desk")
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(
            workdir, mosquitto.port, seed=False, sync=sync_section(old.base_url, token, workdir)
        )
        with store.config_path.open("a") as config:
            config.write("\n[ble.espresense]\nenabled = true\n")  # an EID resolver, without a radio
        async with running_gateway(store.settings()) as gateway:
            assert (
                gateway.generation is not None
                and gateway.generation.sync is not None
                and gateway.generation.ble is not None
            )
            flow, sync, ledger = gateway.generation, gateway.generation.sync, gateway.ledger
            assert ledger is not None
            resolver = gateway.generation.ble.ingest.resolver
            await until(
                lambda: (
                    "offer-old" in flow.decider.engine.offer_ids
                    and _sees(resolver, "p-gone", GONE_KEY)
                    and flow.pickup.orders.get("order-old") is not None
                )
            )
            assert "kid-old" in flow.verifier.key_ids and flow.consents.has("p-gone", Purpose.PERSONALIZATION)
            file_kids = flow.verifier.key_ids - {"kid-old"}

            # A consent given in the store that reached the old cloud, then one given while it was away.
            now_wall = now()
            await flow.consents.apply("p-delivered", Purpose.MEASUREMENT, True, now_wall, "kiosk")
            await until(lambda: _drained(ledger))
            await old.stop()
            await flow.consents.apply("p-local", Purpose.MEASUREMENT, True, now_wall, "kiosk")
            local = [
                await ledger.outbox.enqueue("presence", EventClass.TELEMETRY, {"n": n}) for n in range(20)
            ]

            # The new cloud: another database at the same address, which knows p-both (changed) and p-new.
            new = ProfileStoreKit(f"sqlite://{tmp_path / 'new.db'}", old.admin_token)
            new.port = old.port
            # The gateway is kept out until the new cloud is filled; then pushes wait until the reset is
            # noticed, so p-local's consent is still queued when it is (one that reached the new cloud first
            # would count as delivered, like p-delivered: docs/sync.md "Cursor reset").
            new.faults.set("http500", prefix="/v1/")
            await new.start()
            try:
                await new.admin("PUT", f"/admin/v1/stores/{STORE}", {"token": token})
                await new.put_shopper("p-both", {"visits": 2})
                await new.put_consent("p-both", "personalization", True, source="app")
                await new.put_shopper("p-new", {"visits": 3})
                await new.put_consent("p-new", "presence_ble", True, source="app")
                await new.put_eid_key("p-new", NEW_KEY, ROTATION)
                await new.put_token_key("kid-new", new_pem.decode())
                await new.put_offer(_offer("offer-new"))
                new.faults.set("http500", prefix=f"/v1/stores/{STORE}/events")

                await until(lambda: sync.puller.stats.resets == 1, timeout=20)
                new.faults.reset()
                await until(lambda: sync.puller.stats.rebuilds == 1, timeout=20)
                assert sync.puller.stats.resets == 1

                # Memory: exactly the new cloud's state, plus what the store itself holds.
                assert "p-gone" not in flow.profiles and flow.profiles.get("p-both") == {"visits": 2}
                assert flow.profiles.get("p-new") == {"visits": 3}
                assert not flow.consents.granted("p-gone")
                assert flow.consents.granted("p-both") == {Purpose.PERSONALIZATION}  # presence_ble gone
                assert flow.consents.has("p-local", Purpose.MEASUREMENT)  # still on its way to the cloud
                assert not flow.consents.has("p-delivered", Purpose.MEASUREMENT)  # the new cloud lacks it
                assert not _sees(resolver, "p-gone", GONE_KEY) and _sees(resolver, "p-new", NEW_KEY)
                assert resolver.stats().keys == 1
                assert len(flow.pickup.orders) == 0  # the new cloud has no order
                assert flow.verifier.key_ids == file_kids | {"kid-new"}
                await until(lambda: "offer-new" in flow.decider.engine.offer_ids)
                assert "offer-old" not in flow.decider.engine.offer_ids

                # The local events, the queued consent among them, reach the new cloud once each.
                await until(lambda: _drained(ledger))
                received = [event["id"] for event in await new.events(STORE)]
                assert set(local) <= set(received) and len(received) == len(set(received))
                assert any(
                    e["kind"] == "consent" and e["shopper_id"] == "p-local" for e in await new.events(STORE)
                )
                swept = dict(sync.puller.stats.swept)
            finally:
                await new.close()
        # Disk: the same.
        db = workdir / "ledger.sqlite"
        assert _rows(db, "SELECT shopper_id FROM profiles") == [("p-both",), ("p-new",)]
        assert _rows(db, "SELECT shopper_id FROM eid_keys") == [("p-new",)]
        assert _rows(db, "SELECT kid FROM token_keys") == [("kid-new",)]
        assert _rows(db, "SELECT offer_id FROM offers") == [("offer-new",)]
        assert _rows(db, "SELECT offer_id FROM inventory") == []
        assert _rows(db, "SELECT shopper_id, purpose FROM consents") == [
            ("p-both", "personalization"),
            ("p-local", "measurement"),
            ("p-new", "presence_ble"),
        ]
        assert swept == {
            "profiles": 1,
            "eid_keys": 1,
            "token_keys": 1,
            "offers": 1,
            "inventory": 1,
            "consents": 4,  # p-gone x2, p-both presence_ble, p-delivered
            "orders": 1,
            "campaign_exposures": 0,
        }


async def _drained(ledger: object) -> bool:
    from edge.ledger import Ledger  # noqa: PLC0415

    assert isinstance(ledger, Ledger)
    return (await ledger.outbox.stats()).events == 0
