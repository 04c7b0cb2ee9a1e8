"""Pickup orders: scoped to one store in the change log, collected by that store's push, gone with an erasure.

On SQLite and on PostgreSQL, through the Storage interface and over real HTTP; and the migration of a
version-1 database (every change for every store, no orders) to version 2.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock
from profilestore.const import PAGE_BUDGET_BYTES
from profilestore.schema import SCHEMA_VERSION
from profilestore.storage import (
    OrderStoreError,
    Storage,
    UnknownStoreError,
    open_storage,
)
from tests.profilestore.olddb import make_database, schema_version
from tests.profilestore.spec import check
from tests.support.profilestore import ProfileStoreKit, running_profile_store

US = 1_000_000
T0 = 1_800_000_000 * US
DESK = "Click & collect desk, ground floor"


async def pulled(storage: Storage, store_id: str | None, after: int = 0) -> list[tuple[str, str, str]]:
    page = await storage.changes(after, 1000, PAGE_BUDGET_BYTES, store_id=store_id)
    assert not page.more
    return [(change.kind, change.id, change.op) for change in page.changes]


async def two_stores(storage: Storage) -> None:
    await storage.put_store("sa", b"a" * 32, T0)
    await storage.put_store("sb", b"b" * 32, T0)


# ----- storage -----
async def test_an_order_is_pulled_by_its_store_only_and_the_others_cursor_passes_it(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await two_stores(storage)
        await storage.put_offer("o1", {"id": "o1"}, T0)  # seq 1, every store
        seq = await storage.put_order("web-1", "sa", "p1", "A-1042", DESK, T0 - US, T0)  # seq 2, sa only
        await storage.put_offer("o2", {"id": "o2"}, T0)  # seq 3
        await storage.put_order("web-2", "sa", "p2", "A-1043", DESK, T0, T0)  # seq 4
        assert seq == 2

        mine = await storage.changes(0, 1000, PAGE_BUDGET_BYTES, store_id="sa")
        assert [(c.seq, c.kind, c.id) for c in mine.changes] == [
            (1, "offer", "o1"),
            (2, "order", "web-1"),
            (3, "offer", "o2"),
            (4, "order", "web-2"),
        ]
        assert mine.changes[1].op == "upsert"
        assert mine.changes[1].data == {
            "shopper_id": "p1",
            "reference": "A-1042",
            "counter": DESK,
            "ready_at": "2027-01-15T07:59:59.000Z",
        }
        assert (mine.more, mine.through, mine.last_seq) == (False, 4, 4)

        # Store B pages through the same log: the orders are not in its pages, its cursor passes them.
        first = await storage.changes(0, 1, PAGE_BUDGET_BYTES, store_id="sb")
        assert [c.id for c in first.changes] == ["o1"]
        assert (first.more, first.through) == (True, 1)
        second = await storage.changes(first.through, 1, PAGE_BUDGET_BYTES, store_id="sb")
        assert [c.id for c in second.changes] == ["o2"]
        assert (second.more, second.through) == (False, 4)  # past web-2, which is not B's
        empty = await storage.changes(second.through, 1, PAGE_BUDGET_BYTES, store_id="sb")
        assert (empty.changes, empty.more, empty.through) == ([], False, 4)
        # A's page of one stops at its order and says more is ready.
        one = await storage.changes(1, 1, PAGE_BUDGET_BYTES, store_id="sa")
        assert ([c.id for c in one.changes], one.more, one.through) == (["web-1"], True, 2)
        # A page cut by its byte budget still says more, whatever store asks.
        tiny = await storage.changes(0, 10, 1, store_id="sb")
        assert ([c.id for c in tiny.changes], tiny.more, tiny.through) == (["o1"], True, 1)
        # The whole log (no store) holds everything.
        assert len(await pulled(storage, None)) == 4
        assert (await storage.stats())["orders"] == 2


async def test_a_replaced_order_keeps_one_entry_and_a_delete_reaches_only_its_store(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await two_stores(storage)
        await storage.put_order("web-1", "sa", "p1", "A-1042", DESK, T0, T0)
        await storage.put_order("web-1", "sa", "p1", "A-1042", "Desk 2", T0, T0 + 1)
        assert await pulled(storage, "sa") == [("order", "web-1", "upsert")]
        page = await storage.changes(0, 10, PAGE_BUDGET_BYTES, store_id="sa")
        assert page.changes[0].data["counter"] == "Desk 2"

        outcome = await storage.delete_order("web-1", T0 + 2)
        assert outcome is not None
        assert outcome.existed
        assert await pulled(storage, "sa") == [("order", "web-1", "delete")]
        last = await storage.changes(0, 10, PAGE_BUDGET_BYTES, store_id="sa")
        assert (last.changes[0].seq, last.changes[0].data) == (outcome.seq, {})
        assert await pulled(storage, "sb") == []
        assert (await storage.stats())["orders"] == 0
        # No such order any more: nothing appended.
        before = (await storage.stats())["last_seq"]
        assert await storage.delete_order("web-1", T0 + 3) is None
        assert await storage.delete_order("never", T0 + 3) is None
        assert (await storage.stats())["last_seq"] == before


async def test_an_order_keeps_its_store_and_needs_a_registered_one(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await two_stores(storage)
        await storage.put_order("web-1", "sa", "p1", "A-1042", DESK, T0, T0)
        with pytest.raises(OrderStoreError):
            await storage.put_order("web-1", "sb", "p1", "A-1042", DESK, T0, T0)
        with pytest.raises(UnknownStoreError):
            await storage.put_order("web-2", "nowhere", "p1", "A-1042", DESK, T0, T0)
        assert await pulled(storage, "sa") == [("order", "web-1", "upsert")]
        assert await pulled(storage, "sb") == []
        assert (await storage.stats())["orders"] == 1

        # Deleted and made again at the other store: the first store still pulls its delete.
        await storage.delete_order("web-1", T0)
        await storage.put_order("web-1", "sb", "p1", "B-7", DESK, T0, T0)
        assert await pulled(storage, "sa") == [("order", "web-1", "delete")]
        assert await pulled(storage, "sb") == [("order", "web-1", "upsert")]


async def test_a_store_collects_only_its_own_orders(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await two_stores(storage)
        await storage.put_order("web-1", "sa", "p1", "A-1", DESK, T0, T0)
        await storage.put_order("web-2", "sa", "p2", "A-2", DESK, T0, T0)
        await storage.put_order("web-3", "sb", "p1", "B-1", DESK, T0, T0)

        assert await storage.collect_orders("sa", ["web-1", "web-3", "unknown", "web-1"], T0 + US) == 1
        assert await storage.collect_orders("sa", [], T0 + US) == 0
        assert await pulled(storage, "sa") == [("order", "web-2", "upsert"), ("order", "web-1", "delete")]
        assert await pulled(storage, "sb") == [("order", "web-3", "upsert")]
        assert await storage.collect_orders("sa", ["web-1"], T0 + 2 * US) == 0  # already gone
        assert (await storage.stats())["orders"] == 2


async def test_erasure_removes_the_shoppers_orders_and_their_history(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        await two_stores(storage)
        await storage.put_order("web-1", "sa", "p1", "A-1", DESK, T0, T0)
        await storage.put_order("web-2", "sb", "p1", "B-1", DESK, T0, T0)
        await storage.put_order("web-3", "sa", "p2", "A-2", DESK, T0, T0)

        outcome = await storage.erase_shopper("p1", T0 + US)

        assert outcome.orders == 2
        assert (await storage.stats())["orders"] == 1
        # The upserts (which named p1) are gone; each store that may hold one pulls its delete, then the erasure.
        assert await pulled(storage, "sa") == [
            ("order", "web-3", "upsert"),
            ("order", "web-1", "delete"),
            ("erasure", "p1", "upsert"),
        ]
        assert await pulled(storage, "sb") == [("order", "web-2", "delete"), ("erasure", "p1", "upsert")]
        page = await storage.changes(0, 100, PAGE_BUDGET_BYTES, store_id=None)
        assert all("p1" not in str(change.data) for change in page.changes)
        assert await storage.delete_order("web-1", T0 + US) is None
        # An order made after the erasure is a new one.
        await storage.put_order("web-4", "sa", "p1", "A-3", DESK, T0 + 2 * US, T0 + 2 * US)
        assert ("order", "web-4", "upsert") in await pulled(storage, "sa")


async def _make_version_1(url: str) -> None:
    """A database as version 1 of the schema left it, with a profile and its change."""
    await make_database(
        url,
        1,
        [
            "INSERT INTO meta (name, value) VALUES ('instance', '0123456789abcdef')",
            "INSERT INTO profiles (shopper_id, profile, updated_us) VALUES ('p1', '{\"visits\":1}', 5)",
            "INSERT INTO changes (seq, kind, id, op, at_us, data, compact_key, shopper_id)"
            " VALUES (1, 'profile', 'p1', 'upsert', 5, '{\"profile\":{\"visits\":1}}', 'profile:p1', 'p1')",
            "UPDATE counters SET value = 1 WHERE name = 'changes'",
        ],
    )


async def test_a_version_1_database_is_migrated_and_keeps_its_data(db_url: str) -> None:
    await _make_version_1(db_url)
    assert await schema_version(db_url) == 1
    async with open_storage(db_url) as storage:
        assert storage.instance == "0123456789abcdef"
        assert await schema_version(db_url) == SCHEMA_VERSION == 4
        shopper = await storage.shopper("p1")
        assert shopper is not None
        assert shopper.profile == {"visits": 1}
        # The old change is for every store.
        await two_stores(storage)
        for store in ("sa", "sb", None):
            assert await pulled(storage, store) == [("profile", "p1", "upsert")]
        assert await storage.put_order("web-1", "sa", "p1", "A-1", DESK, T0, T0) == 2
        assert await pulled(storage, "sb") == [("profile", "p1", "upsert")]
        assert (await storage.stats())["orders"] == 1
    async with open_storage(db_url) as storage:  # reopened: nothing to migrate
        assert await pulled(storage, "sa") == [("profile", "p1", "upsert"), ("order", "web-1", "upsert")]


# ----- over HTTP -----
@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[ProfileStoreKit]:
    """A running store on either database, its clock at 2027-01-15T08:00:00Z."""
    clock = ManualClock(wall=1_800_000_000.0)
    async with running_profile_store(tmp_path, db_url=db_url, clock=clock) as kit:
        yield kit


def order_body(store_id: str = "sa", **overrides: Any) -> dict[str, Any]:
    return {"store_id": store_id, "shopper_id": "p1", "reference": "A-1042", "counter": DESK, **overrides}


async def put_order(kit: ProfileStoreKit, order_id: str, body: dict[str, Any], expect: int = 200) -> Any:
    return await kit.admin("PUT", f"/admin/v1/orders/{order_id}", body, expect=expect)


async def pull(kit: ProfileStoreKit, store: str, token: str, since: str = "") -> tuple[list[Any], str]:
    """Every change for ``store`` after ``since``: the changes and the final cursor."""
    changes: list[Any] = []
    while True:
        status, page = await kit.store_call("GET", f"/v1/stores/{store}/changes?since={since}&limit=2", token)
        assert status == 200, page
        check("ChangePage", page)
        changes += page["changes"]
        since = page["cursor"]
        if not page["more"]:
            return changes, since


def collected(order_id: Any, *, event_id: str | None = None, via: str = "staff") -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "kind": "order_collected",
        "class": "conversion",
        "at": "2027-01-15T07:59:00Z",
        "shopper_id": None,
        "data": {"order_id": order_id, "via": via},
    }


async def push(kit: ProfileStoreKit, store: str, token: str, events: list[dict[str, Any]]) -> Any:
    status, result = await kit.store_call("POST", f"/v1/stores/{store}/events", token, {"events": events})
    assert status == 200, result
    return check("PushResult", result)


async def test_orders_over_http_reach_only_their_store(cloud: ProfileStoreKit) -> None:
    a, b = await cloud.add_store("sa"), await cloud.add_store("sb")
    await cloud.put_shopper("p9", {"visits": 1})  # sa's shopper (the kit's first store)
    check("SeqResult", await put_order(cloud, "web-1", order_body(ready_at="2027-01-15T09:30:00+01:00")))
    check("SeqResult", await put_order(cloud, "web-2", order_body(reference="A-2")))  # ready now

    mine, a_cursor = await pull(cloud, "sa", a)
    assert [(c["kind"], c["id"], c["op"]) for c in mine] == [
        ("profile", "p9", "upsert"),
        ("order", "web-1", "upsert"),
        ("order", "web-2", "upsert"),
    ]
    assert mine[1]["data"] == {
        "shopper_id": "p1",
        "reference": "A-1042",
        "counter": DESK,
        "ready_at": "2027-01-15T08:30:00.000Z",
    }
    assert mine[2]["data"]["ready_at"] == "2027-01-15T08:00:00.000Z"
    theirs, b_cursor = await pull(cloud, "sb", b)
    assert theirs == []  # neither sa's shopper nor its orders
    assert b_cursor == a_cursor  # past the changes it does not see
    assert (await pull(cloud, "sb", b, b_cursor)) == ([], b_cursor)

    deleted = check("DeleteResult", await cloud.admin("DELETE", "/admin/v1/orders/web-1"))
    assert deleted["existed"]
    more, a_cursor = await pull(cloud, "sa", a, a_cursor)
    assert [(c["kind"], c["id"], c["op"], c["data"]) for c in more] == [("order", "web-1", "delete", {})]
    assert await pull(cloud, "sb", b, b_cursor) == ([], a_cursor)
    gone = await cloud.admin("DELETE", "/admin/v1/orders/web-1", expect=404)
    assert gone["error"] == "not_found"
    stats = check("Stats", await cloud.stats())
    assert stats["orders"] == 1


async def test_a_pushed_collection_removes_the_order_of_that_store_only(cloud: ProfileStoreKit) -> None:
    a, b = await cloud.add_store("sa"), await cloud.add_store("sb")
    await put_order(cloud, "web-1", order_body())
    await put_order(cloud, "web-2", order_body())
    _, a_cursor = await pull(cloud, "sa", a)

    # Another store's collection of A's order is stored, and changes nothing.
    assert (await push(cloud, "sb", b, [collected("web-1")]))["accepted"] == 1
    assert (await cloud.stats())["orders"] == 2
    assert (await pull(cloud, "sa", a, a_cursor))[0] == []
    # A malformed collection is stored too, and collects nothing.
    odd = [collected(5), {**collected("web-2"), "data": {"order": "web-2"}}, collected("../web-2")]
    assert (await push(cloud, "sa", a, odd))["accepted"] == 3
    assert (await cloud.stats())["orders"] == 2

    result = await push(cloud, "sa", a, [collected("web-1", via="pos")])
    assert result == {"accepted": 1, "duplicates": 0, "rejected": []}
    changes, a_cursor = await pull(cloud, "sa", a, a_cursor)
    assert [(c["kind"], c["id"], c["op"], c["data"]) for c in changes] == [("order", "web-1", "delete", {})]
    assert (await cloud.stats())["orders"] == 1
    kinds = [event["kind"] for event in await cloud.events("sa")]
    assert kinds == ["order_collected"] * 4

    # A collection stored before the order came (a resent batch): its duplicate collects it.
    early = collected("web-3")
    await push(cloud, "sa", a, [early])
    await put_order(cloud, "web-3", order_body())
    assert (await push(cloud, "sa", a, [early]))["duplicates"] == 1
    changes, _ = await pull(cloud, "sa", a, a_cursor)
    assert [(c["id"], c["op"]) for c in changes] == [("web-3", "delete")]
    # An event id another store already used is rejected, and collects nothing.
    await put_order(cloud, "web-4", order_body())
    theirs = collected("elsewhere")
    await push(cloud, "sb", b, [theirs])
    foreign = await push(cloud, "sa", a, [collected("web-4", event_id=theirs["id"])])
    assert foreign["rejected"][0]["reason"].startswith("id: already used")
    assert (await cloud.stats())["orders"] == 2


async def test_an_order_needs_its_store_and_keeps_it(cloud: ProfileStoreKit) -> None:
    await cloud.add_store("sa")
    await cloud.add_store("sb")
    unknown = await put_order(cloud, "web-1", order_body("nowhere"), expect=404)
    assert unknown["error"] == "not_found"
    await put_order(cloud, "web-1", order_body())
    conflict = await put_order(cloud, "web-1", order_body("sb"), expect=409)
    assert conflict["error"] == "conflict"
    assert "delete it" in conflict["detail"]
    assert (await cloud.stats())["orders"] == 1


@pytest.mark.parametrize(
    "body",
    [
        order_body(extra=1),
        order_body(reference="A" * 33),
        order_body(reference=""),
        order_body(counter="Desk\n2"),
        order_body(counter="Desk\u200b2"),  # a format character: not printable
        order_body(counter="C" * 65),
        order_body(store_id="bad/store"),
        order_body(shopper_id=""),
        order_body(ready_at="tomorrow"),
        order_body(reference=1042),
        {"store_id": "sa", "shopper_id": "p1", "reference": "A-1"},
    ],
)
async def test_bad_order_bodies_are_invalid(cloud: ProfileStoreKit, body: dict[str, Any]) -> None:
    await cloud.add_store("sa")
    answer = await put_order(cloud, "web-1", body, expect=400)
    assert answer["error"] == "invalid"
    assert (await cloud.stats())["orders"] == 0


async def test_order_ids_are_checked_and_the_longest_texts_are_kept(cloud: ProfileStoreKit) -> None:
    token = await cloud.add_store("sa")
    for bad in ("-web", "w" * 65, "web%20one"):
        answer = await put_order(cloud, bad, order_body(), expect=400)
        assert answer["error"] == "bad_request"
    longest = order_body(reference="R" * 32, counter="Ça, ici: desk #2 " + "c" * 47)
    order_id = "W" + secrets.token_hex(31) + "."
    assert len(order_id) == 64
    await put_order(cloud, order_id, longest)
    changes, _ = await pull(cloud, "sa", token)
    assert changes[-1]["id"] == order_id
    assert (changes[-1]["data"]["reference"], changes[-1]["data"]["counter"]) == (
        longest["reference"],
        longest["counter"],
    )


async def test_erasure_over_http_takes_the_orders_with_it(cloud: ProfileStoreKit) -> None:
    a = await cloud.add_store("sa")
    await put_order(cloud, "web-1", order_body())
    await put_order(cloud, "web-2", order_body(shopper_id="p2"))
    _, cursor = await pull(cloud, "sa", a)

    erased = check("ErasureResult", await cloud.erase("p1"))

    assert erased["removed"]["orders"] == 1
    after, _ = await pull(cloud, "sa", a, cursor)
    assert [(c["kind"], c["id"], c["op"]) for c in after] == [
        ("order", "web-1", "delete"),
        ("erasure", "p1", "upsert"),
    ]
    everything, _ = await pull(cloud, "sa", a)
    assert [(c["id"], c["op"]) for c in everything] == [
        ("web-2", "upsert"),
        ("web-1", "delete"),
        ("p1", "upsert"),
    ]
    assert (await cloud.stats())["orders"] == 1
