"""Order online, collect in store, for real: the reference cloud, the gateway, mosquitto.

An order ready at this store is pulled (and another store's is not), listed on the collection-point screen
when its shopper checks in (reference and counter, never who), named in the staff notice, collected by a
staff answer or a POS sale (durable, one `order_collected` event each, the cloud deletes the order and the
store pulls that delete); an erasure takes the shopper's order off the screen; bad collections are counted.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.daemon import Gateway
from edge.events import Purpose
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section
from tests.support.wait import until

PICKUP = f"{ROOT}/display/screen-pickup/content"
NOTICES = f"{ROOT}/staff/notice/fitting"
ZONES = ("cafe", "fitting-rooms", "pickup")


@contextlib.asynccontextmanager
async def _store(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[tuple[Any, StoreKit, Gateway]]:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        await cloud.add_store("store-002")
        for shopper, consents in (
            ("p-ana", ("clienteling", "measurement", "personalization")),
            ("p-ben", ("personalization",)),
            ("p-cy", ("clienteling",)),
        ):
            await cloud.put_shopper(shopper, {"staff_display_name": shopper[2:].title(), "visits": 2})
            for purpose in consents:
                await cloud.put_consent(shopper, purpose, True, source="app")
        await cloud.put_order("o-ana", STORE, "p-ana", "A-1042", "Click & collect desk")
        await cloud.put_order("o-ben", STORE, "p-ben", "B-2001", "Click & collect desk")
        await cloud.put_order("o-elsewhere", "store-002", "p-ana", "Z-9999", "Another store's desk")
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(
            workdir,
            mosquitto.port,
            seed=False,
            zones=ZONES,
            sync=sync_section(cloud.base_url, token, workdir, pull_interval_s=0.2),
        )
        config = store.config_path.read_text()
        pickup_display = 'id = "screen-pickup"\nzone = "pickup"\n'
        assert pickup_display in config
        config = config.replace(pickup_display, pickup_display + "pickup = true\n")
        config = config.replace(
            'id = "screen-pickup"\nzone = "pickup"\npickup = true\nmin_display_s = 0.0\ncontent_ttl_s = 30.0',
            'id = "screen-pickup"\nzone = "pickup"\npickup = true\nmin_display_s = 0.0\ncontent_ttl_s = 600',
        )
        config += '\n[staff]\nteams = { fitting = ["fitting-rooms"] }\n'
        store.config_path.write_text(config)
        async with running_gateway(store.settings()) as gateway:
            yield cloud, store, gateway


def _rows(workdir: Path) -> dict[str, float | None]:
    with contextlib.closing(sqlite3.connect(workdir / "ledger.sqlite")) as conn:
        return dict(conn.execute("SELECT order_id, collected_wall FROM pickup_orders").fetchall())


async def test_orders_are_listed_at_check_in_named_to_staff_and_collected_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        _store(tmp_path, mosquitto) as (cloud, store, gateway),
        Probe(mosquitto.port, f"{ROOT}/#") as probe,
    ):
        generation = gateway.generation
        assert generation is not None
        pickup = generation.pickup
        await until(lambda: len(pickup.orders) == 2)
        # Only this store's orders: the other store's order for the same shopper never arrives.
        assert {o.order_id for o in pickup.orders.of("p-ana")} == {"o-ana"}
        await until(lambda: generation.consents.has("p-ana", Purpose.CLIENTELING))

        def pickup_screen() -> list[dict[str, Any]]:
            return probe.json_on(PICKUP)

        # Ana checks in at the fitting rooms: the pickup screen lists her order, the team's notice names it.
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-ana", zone="fitting-rooms"))
        await until(lambda: any(m["template"] == "pickup" for m in pickup_screen()))
        listed = pickup_screen()[-1]
        assert {k: listed[k] for k in ("decision_id", "offer_id", "template", "data", "fallback")} == {
            "decision_id": None,
            "offer_id": None,
            "template": "pickup",
            "data": {"orders": [{"reference": "A-1042", "counter": "Click & collect desk"}]},
            "fallback": False,
        }
        assert listed["expires_at"] is not None
        await until(lambda: bool(probe.json_on(NOTICES)))
        notice = probe.json_on(NOTICES)[0]
        assert notice["pickup"] == [{"reference": "A-1042", "counter": "Click & collect desk"}]
        # Ben checks in at the pickup zone itself: listed on top; the pickup screen never shows an offer.
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-ben", zone="pickup"))
        await until(lambda: len(pickup_screen()[-1]["data"].get("orders", [])) == 2)
        assert [o["reference"] for o in pickup_screen()[-1]["data"]["orders"]] == ["B-2001", "A-1042"]
        assert all(m["offer_id"] is None for m in pickup_screen())
        for message in pickup_screen() + probe.json_on(NOTICES):
            text = str(message)
            assert "p-ana" not in text and "p-ben" not in text and "o-ana" not in text

        # Staff hand Ana's order over from her notice: collected once, off the screen, the cloud told.
        ack = f"{ROOT}/staff/fitting/ack"
        for _ in range(2):
            await probe.publish(ack, {"v": 1, "notice_id": notice["notice_id"], "action": "collected"})
        await until(lambda: pickup.stats().collected.get("staff") == 1)
        # The second finds nothing open: counted, nothing collected twice.
        await until(lambda: generation.rejects.as_dict().get("staff_ack.no_order") == 1)
        await until(lambda: [o["reference"] for o in pickup_screen()[-1]["data"]["orders"]] == ["B-2001"])
        # Ben's sale at the till names his order: collected by the POS.
        sale = {"v": 1, "txn_id": "t-1", "items": [{"sku": "tee", "qty": 1, "price": 9.5}]}
        await probe.publish(f"{ROOT}/pos/lane-1/transaction", {**sale, "collected_orders": ["o-ben"]})
        await until(lambda: pickup.stats().collected.get("pos") == 1)
        await until(lambda: pickup_screen()[-1]["fallback"] is True)

        async def cloud_events() -> list[dict[str, Any]]:
            return [e for e in await cloud.events(STORE) if e["kind"] == "order_collected"]

        async def both_collected_in_the_cloud() -> bool:
            return len(await cloud_events()) == 2

        await until(both_collected_in_the_cloud)
        events = await cloud_events()
        assert sorted((e["data"]["order_id"], e["data"]["via"], e["class"]) for e in events) == [
            ("o-ana", "staff", "conversion"),
            ("o-ben", "pos", "conversion"),
        ]
        assert all(e["shopper_id"] is None for e in events)
        # The cloud deleted both orders; the store pulls the deletes and its replica empties.
        await until(lambda: _rows(store.workdir) == {})
        assert len(pickup.orders) == 0

        # Bad collections: nothing open for Cy's notice, a malformed list at the till. Counted, no effect.
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-cy", zone="fitting-rooms"))
        await until(lambda: len(probe.json_on(NOTICES)) == 2)
        cy = probe.json_on(NOTICES)[1]
        assert "pickup" not in cy
        await probe.publish(ack, {"v": 1, "notice_id": cy["notice_id"], "action": "collected"})
        await probe.publish(f"{ROOT}/pos/lane-1/transaction", {**sale, "collected_orders": "o-ben"})
        await probe.publish(
            f"{ROOT}/pos/lane-1/transaction", {**sale, "txn_id": "t-2", "collected_orders": ["../x"] * 2}
        )
        rejects = generation.rejects
        await until(lambda: rejects.as_dict().get("pos.bad_collected_orders") == 2)
        await until(lambda: rejects.as_dict().get("staff_ack.no_order") == 2)
        assert pickup.stats().collected == {"staff": 1, "pos": 1}


async def test_an_erased_shopper_leaves_the_pickup_screen_and_the_replica(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        _store(tmp_path, mosquitto) as (cloud, store, gateway),
        Probe(mosquitto.port, f"{ROOT}/display/screen-pickup/#") as probe,
    ):
        generation = gateway.generation
        assert generation is not None
        await until(lambda: len(generation.pickup.orders) == 2)
        await probe.publish(f"{ROOT}/checkin", store.checkin("p-ana", zone="cafe"))
        await until(lambda: any(m["template"] == "pickup" for m in probe.json_on(PICKUP)))
        await cloud.erase("p-ana")
        await until(lambda: probe.json_on(PICKUP)[-1]["fallback"] is True)
        await until(lambda: "o-ana" not in _rows(store.workdir))
        assert generation.pickup.orders.of("p-ana") == []
        assert set(_rows(store.workdir)) == {"o-ben"}
        # Cancelled at the cloud: gone from the store too.
        await cloud.delete_order("o-ben")
        await until(lambda: _rows(store.workdir) == {})
