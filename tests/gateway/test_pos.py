"""POS sales through the real broker, the in-process gateway and the reference cloud: conversion events."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.daemon import Gateway
from edge.flow.pos import PosFlow, PosStats, sale_event_id
from edge.generation import Generation
from edge.identity import fingerprint, generate_keypair
from edge.ledger import Ledger
from edge.ledger.readonly import read_only
from edge.transport.topics import Topics
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import ProfileStoreKit, running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section
from tests.support.wait import until

CONTENT = f"{ROOT}/display/screen-cafe/content"


def lane_topic(lane: str) -> str:
    return f"{ROOT}/pos/{lane}/transaction"


def sale(txn_id: str, token: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "txn_id": txn_id,
        "items": [
            {"sku": "FLAT-WHITE", "qty": 2, "price": 3.5},
            {"sku": "4006381333931", "qty": 1, "price": 1.25},
        ],
    }
    if token is not None:
        body["token"] = token
    body.update(fields)
    return body


@contextlib.asynccontextmanager
async def store_with_cloud(
    tmp_path: Path, mosquitto: Mosquitto
) -> AsyncIterator[tuple[ProfileStoreKit, StoreKit, Gateway]]:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        workdir = tmp_path / "store"
        workdir.mkdir()
        # Seeded shoppers: p-full (measurement granted), p-nomeasure (measurement withdrawn).
        store = make_store(workdir, mosquitto.port, sync=sync_section(cloud.base_url, token, workdir))
        async with running_gateway(store.settings()) as gateway:
            yield cloud, store, gateway


def parts(gateway: Gateway) -> tuple[Generation, PosFlow, Ledger]:
    assert gateway.generation is not None
    assert gateway.generation.pos is not None
    assert gateway.ledger is not None
    return gateway.generation, gateway.generation.pos, gateway.ledger


async def conversions(cloud: ProfileStoreKit) -> list[dict[str, Any]]:
    return [event for event in await cloud.events(STORE) if event["kind"] == "conversion"]


async def no_conversion_queued(ledger: Ledger) -> bool:
    """Whether the outbox holds no conversion event: none made, or all acknowledged by the cloud."""
    stats = await ledger.outbox.stats()
    conversion = stats.by_class.get("conversion")
    return conversion is None or conversion.events == 0


def by_txn(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        found.setdefault(event["data"]["txn_id"], []).append(event)
    return found


async def test_sales_become_conversion_events_with_consented_shopper_ids_only(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with store_with_cloud(tmp_path, mosquitto) as (cloud, store, gateway), Probe(mosquitto.port) as pos:
        flow, pos_flow, ledger = parts(gateway)
        other_key, _ = generate_keypair()
        full_token = store.token("p-full")
        tokens = {
            "T-full": full_token,
            "T-nomeasure": store.token("p-nomeasure"),
            "T-forged": store.token("p-full", key=other_key),
            "T-garbage": "not-a-jwt",
        }
        for txn_id, token in tokens.items():
            await pos.publish(lane_topic("3"), sale(txn_id, token))
        await pos.publish(lane_topic("3"), sale("T-anon"))
        await pos.publish(
            lane_topic("lane-7"),
            sale("T-given", total=7.99, currency="EUR", ts="2026-11-22T10:15:03.120Z"),
        )
        # The same messages again (a redelivery, a POS retrying): nothing new is recorded.
        await pos.publish(lane_topic("3"), sale("T-full", full_token))
        await pos.publish(lane_topic("3"), sale("T-anon"))
        await pos.publish(
            lane_topic("lane-7"),
            sale("T-given", total=7.99, currency="EUR", ts="2026-11-22T10:15:03.120Z"),
        )
        # The same txn_id on another lane is another sale.
        await pos.publish(lane_topic("4"), sale("T-anon"))

        # Each sale is counted once its event is durable in the outbox, which the cloud empties: once it is
        # empty, every event the gateway made has arrived and nothing more can (no waiting for a duplicate).
        await until(lambda: pos_flow.counters.transactions == 10)
        await until(lambda: no_conversion_queued(ledger), what="the outbox's conversions to reach the cloud")
        events = await conversions(cloud)
        assert len(events) == 7
        assert len({event["id"] for event in events}) == 7
        found = by_txn(events)
        assert sorted(e["data"]["lane"] for e in found["T-anon"]) == ["3", "4"]
        for txn_id in ("T-full", "T-nomeasure", "T-forged", "T-garbage", "T-given"):
            assert len(found[txn_id]) == 1, txn_id

        full = found["T-full"][0]
        assert full["class"] == "conversion"
        assert full["shopper_id"] == "p-full"
        assert full["data"] == {
            "txn_id": "T-full",
            "lane": "3",
            "items": [
                {"sku": "FLAT-WHITE", "qty": 2, "price": 3.5},
                {"sku": "4006381333931", "qty": 1, "price": 1.25},
            ],
            "total": 8.25,
        }
        # Measurement withdrawn, no token, a forged or garbage token: the sale counts, anonymously.
        for txn_id in ("T-nomeasure", "T-forged", "T-garbage", "T-anon"):
            assert all(e["shopper_id"] is None for e in found[txn_id]), txn_id
            assert found[txn_id][0]["data"]["total"] == 8.25
        given = found["T-given"][0]
        assert given["data"]["total"] == 7.99  # the POS's own total (discounts) wins
        assert given["data"]["currency"] == "EUR"
        assert given["at"].startswith("2026-11-22T10:15:03.12")  # dated by the sale's ts
        assert given["id"] == sale_event_id(ROOT, "lane-7", "T-given", 1795342503.12, 0.0)
        # Never a token, nor its fingerprint, in what leaves the store.
        dumped = json.dumps(events)
        for token in tokens.values():
            assert token not in dumped
            assert fingerprint(token) not in dumped

        rejected = flow.rejects.as_dict()
        assert rejected["pos.bad_token"] == 2
        assert rejected["pos.replayed_token"] == 1  # the redelivered T-full: its first delivery stands
        assert gateway.health().pos == PosStats(transactions=10, identified=1, anonymous=9, redelivered=0)


JUNK: list[tuple[str, bytes, str]] = [
    (lane_topic("1"), b"not json at all", "not_json"),
    (lane_topic("1"), b"\xff\xfe\x00", "not_utf8"),
    (lane_topic("1"), json.dumps(sale("J1", items=[])).encode(), "bad_items"),
    (lane_topic("1"), json.dumps(sale("J2", items=[{"sku": "A", "qty": 1}])).encode(), "bad_price"),
    (lane_topic("1"), json.dumps(sale("J3", items="A")).encode(), "bad_items"),
    (lane_topic("1"), b'{"v":1,"txn_id":"J4","items":[{"sku":"A","qty":1,"price":NaN}]}', "bad_price"),
    (lane_topic("1"), b'{"v":1,"txn_id":"J5","items":[{"sku":"A","qty":1,"price":Infinity}]}', "bad_price"),
    (
        lane_topic("1"),
        json.dumps(sale("J6", items=[{"sku": "A", "qty": "2", "price": 1}])).encode(),
        "bad_qty",
    ),
    (
        lane_topic("1"),
        json.dumps(sale("J7", items=[{"sku": "A", "qty": 2.5, "price": 1}])).encode(),
        "bad_qty",
    ),
    (
        lane_topic("1"),
        json.dumps(sale("J8", items=[{"sku": "A", "qty": True, "price": 1}])).encode(),
        "bad_qty",
    ),
    (
        lane_topic("1"),
        json.dumps(sale("J9", items=[{"sku": "A", "qty": 10**30, "price": 1}])).encode(),
        "bad_qty",
    ),
    # An integer literal too long for Python's int parser.
    (
        lane_topic("1"),
        b'{"txn_id":"J10","items":[{"sku":"A","qty":' + b"9" * 5000 + b',"price":1}]}',
        "not_json",
    ),
    (
        lane_topic("1"),
        json.dumps(sale("J11", items=[{"sku": "A", "qty": 1, "price": 10**400}])).encode(),
        "bad_price",
    ),
    (lane_topic("1"), json.dumps(sale("J12", token=12345)).encode(), "malformed_token"),
    (lane_topic("1"), json.dumps(sale("../etc")).encode(), "bad_txn_id"),
    (lane_topic("1"), json.dumps(sale("J13", currency="euro")).encode(), "bad_currency"),
    (lane_topic("1"), json.dumps(sale("J14", total=-5)).encode(), "bad_total"),
    (lane_topic("lane 1"), json.dumps(sale("J15")).encode(), "bad_lane"),
    (lane_topic("x" * 65), json.dumps(sale("J16")).encode(), "bad_lane"),
]


async def test_junk_is_counted_queues_nothing_and_check_ins_go_on(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        store_with_cloud(tmp_path, mosquitto) as (cloud, store, gateway),
        Probe(mosquitto.port, f"{ROOT}/display/#") as display,
    ):
        flow, pos_flow, ledger = parts(gateway)
        for topic, payload, _reason in JUNK:
            await display.publish(topic, payload)

        def pos_rejections() -> dict[str, int]:
            return {k: v for k, v in flow.rejects.as_dict().items() if k.startswith("pos.")}

        expected: dict[str, int] = {}
        for _topic, _payload, reason in JUNK:
            expected[f"pos.{reason}"] = expected.get(f"pos.{reason}", 0) + 1
        await until(lambda: pos_rejections() == expected)
        assert pos_flow.counters.transactions == 0
        assert await no_conversion_queued(ledger)

        # A good sale after the junk is the only conversion that reaches the cloud.
        await display.publish(lane_topic("1"), sale("GOOD-1", store.token("p-full")))

        async def arrived() -> bool:
            return bool(await conversions(cloud))

        await until(arrived)
        events = await conversions(cloud)
        assert [event["data"]["txn_id"] for event in events] == ["GOOD-1"]
        assert events[0]["shopper_id"] == "p-full"

        # The gateway still serves check-ins.
        await display.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await display.wait_for(lambda: [m for m in display.json_on(CONTENT) if m.get("decision_id")])
        assert flow.stats.checkins == 1
        assert gateway.generation.link is not None
        assert gateway.generation.link.counters["handler_errors"] == 0


async def test_without_cloud_sync_sales_are_counted_and_nothing_is_queued(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = make_store(tmp_path / "store", mosquitto.port)
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port) as pos:
        _flow, pos_flow, ledger = parts(gateway)
        assert ledger.outbox.max_bytes is None
        await pos.publish(lane_topic("2"), sale("T-offline", store.token("p-full")))
        await until(lambda: pos_flow.counters.transactions == 1)
        assert (await ledger.outbox.stats()).events == 0
        assert gateway.health().pos == PosStats(transactions=1, identified=1, anonymous=0, redelivered=0)


async def test_every_sale_is_kept_for_measurement_once_and_its_verified_shopper_handed_to_the_basket(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = make_store(tmp_path / "store", mosquitto.port)  # no cloud: the sales are kept all the same
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port) as pos:
        flow, pos_flow, ledger = parts(gateway)
        heard: list[tuple[str, list[str]]] = []
        pos_flow.on_sale = lambda shopper, items: heard.append((shopper, [item.sku for item in items]))
        lines = [
            {"sku": "SOCK-1", "qty": 2, "price": 5, "category": "sports"},
            {"sku": "GADGET", "qty": 1, "price": 2.5, "category": "spaceships"},  # not a category: dropped
            {"sku": "BREAD", "qty": 1, "price": 1.5},
        ]
        full = store.token("p-full")
        await pos.publish(lane_topic("2"), sale("T-full", full, items=lines))
        await until(lambda: pos_flow.counters.transactions == 1)
        # The same sale again (its token now replayed): the same id, still one row, still p-full's
        await pos.publish(lane_topic("2"), sale("T-full", full, items=lines))
        await pos.publish(lane_topic("2"), sale("T-nomeasure", store.token("p-nomeasure")))
        await pos.publish(lane_topic("2"), sale("T-anon"))
        await until(lambda: pos_flow.counters.transactions == 4)

        with read_only(store.config_path.parent / "ledger.sqlite") as db:
            sales = db.execute(
                "SELECT lane, shopper_id, total FROM conversions ORDER BY total DESC, shopper_id"
            ).fetchall()
            items = db.execute(
                "SELECT i.sku, i.category, i.qty, i.price FROM conversion_items i "
                "JOIN conversions c USING (event_id) WHERE c.shopper_id = 'p-full' ORDER BY i.line"
            ).fetchall()
        assert sales == [("2", "p-full", 14.0), ("2", None, 8.25), ("2", None, 8.25)]
        assert items == [
            ("SOCK-1", "sports", 2.0, 5.0),
            ("GADGET", None, 1.0, 2.5),
            ("BREAD", None, 1.0, 1.5),
        ]
        # every fresh verified token, whatever the consent; not a replay, not an anonymous sale
        assert heard == [
            ("p-full", ["SOCK-1", "GADGET", "BREAD"]),
            ("p-nomeasure", ["FLAT-WHITE", "4006381333931"]),
        ]
        assert flow.rejects.as_dict()["pos.bad_category"] == 2  # once per message that named one
        assert ledger.outbox.max_bytes is None


def test_lane_of_and_filter() -> None:
    topics = Topics("store/s1")
    assert topics.pos_transaction_filter == "store/s1/pos/+/transaction"
    assert topics.lane_of("store/s1/pos/3/transaction") == "3"
    assert topics.lane_of("store/s1/pos/lane-7/transaction") == "lane-7"
    assert topics.lane_of("store/s1/pos//transaction") is None
    assert topics.lane_of("store/s1/pos/3/refund") is None
    assert topics.lane_of("store/s1/pos/3/transaction/x") is None
    assert topics.lane_of("store/s2/pos/3/transaction") is None
    assert topics.lane_of("store/s1/checkin") is None


def test_sale_event_id_is_the_sale_not_the_moment_it_was_heard() -> None:
    day = 1795305600.0  # 2026-11-22T00:00:00Z
    # Without ts: the same id all day long, whenever the message is (re)delivered.
    first = sale_event_id("store/s1", "3", "T1", None, day + 10.0)
    assert sale_event_id("store/s1", "3", "T1", None, day + 80_000.0) == first
    assert sale_event_id("store/s1", "3", "T1", None, day + 86_400.0) != first  # tomorrow's T1 is new
    # With ts: the sale's own time, whenever it is heard.
    stamped = sale_event_id("store/s1", "3", "T1", day + 5.0, day + 10.0)
    assert sale_event_id("store/s1", "3", "T1", day + 5.0, day + 999.0) == stamped
    # Another lane, another store, another txn: another event (ids are unique across stores at the cloud).
    others = {
        sale_event_id("store/s1", "4", "T1", None, day),
        sale_event_id("store/s2", "3", "T1", None, day),
        sale_event_id("store/s1", "3", "T2", None, day),
    }
    assert first not in others
    assert len(others) == 3
