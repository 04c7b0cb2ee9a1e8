"""The pickup parts that need no broker: the order book, the collection-point list, a screen's content."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given
from hypothesis import strategies as st

from edge.act.displays import DisplayBoard
from edge.act.pickup import MAX_LISTED, Order, OrderBook, PickupList
from edge.clock import ManualClock
from edge.config.model import DisplaySettings
from edge.transport.topics import Topics


def _order(order_id: str, shopper: str = "p-a", ready: float = 0.0) -> Order:
    return Order(order_id, shopper, f"R-{order_id}", "Desk 1", ready)


def test_the_book_indexes_orders_by_shopper_and_forgets_them() -> None:
    book = OrderBook()
    book.put(_order("o-2", ready=20.0))
    book.put(_order("o-1", ready=10.0))
    book.put(_order("o-3", shopper="p-b"))
    assert [o.order_id for o in book.of("p-a")] == ["o-1", "o-2"]  # the oldest ready first
    # An update may move an order to another shopper: never listed under both.
    book.put(_order("o-2", shopper="p-b"))
    assert [o.order_id for o in book.of("p-a")] == ["o-1"]
    assert book.forget_shopper("p-b") == ["o-3", "o-2"]
    assert len(book) == 1 and book.remove("o-1") is not None and book.of("p-a") == []
    assert book.remove("o-1") is None


def test_the_list_shows_the_newest_first_and_expires_each_entry() -> None:
    listed = PickupList(max_listed=2)
    assert listed.add([_order("o-1")], until=100.0)
    assert listed.add([_order("o-2", "p-b")], until=150.0)
    assert listed.add([_order("o-3", "p-c")], until=120.0)
    assert [e["reference"] for e in listed.entries()] == ["R-o-3", "R-o-2"]  # at most two, newest first
    assert listed.next_due() == 100.0 and listed.last_until() == 150.0
    assert listed.expire(100.0) and len(listed) == 2
    assert not listed.expire(110.0)
    # Checking in again puts the order back on top with a new time.
    listed.add([_order("o-2", "p-b")], until=300.0)
    assert [e["reference"] for e in listed.entries()] == ["R-o-2", "R-o-3"]
    assert listed.forget_shopper("p-b") and not listed.forget_shopper("p-b")
    assert listed.remove(["o-3"]) and listed.entries() == [] and listed.last_until() is None


@given(
    st.lists(st.tuples(st.sampled_from("abcdefghij"), st.floats(0, 1000)), max_size=40), st.floats(0, 1000)
)
def test_the_list_never_shows_an_expired_entry_or_more_than_its_bound(
    adds: list[tuple[str, float]], now: float
) -> None:
    listed = PickupList()
    for name, until in adds:
        listed.add([_order(f"o-{name}", f"p-{name}")], until)
    listed.expire(now)
    latest = dict(adds)
    assert len(listed.entries()) <= MAX_LISTED
    assert {e["reference"] for e in listed.entries()} <= {f"R-o-{n}" for n, u in latest.items() if u > now}
    assert len(listed) == sum(1 for u in latest.values() if u > now)


def test_a_pickup_screen_gets_content_without_a_decision_and_falls_back_when_it_expires() -> None:
    clock = ManualClock(wall=1_800_000_000.0)
    sent: list[dict[str, object]] = []

    async def decide(*_: object) -> object:
        raise AssertionError("a pickup screen is never decided for")

    board = DisplayBoard(
        [
            DisplaySettings(id="desk", zone="pickup", pickup=True, content_ttl_s=600),
            DisplaySettings(id="cafe-1", zone="pickup"),
        ],
        topics=Topics("retail/s1"),
        publish=lambda _topic, payload, _retain: sent.append(json.loads(payload)),
        decide=decide,  # type: ignore[arg-type]
        is_present=lambda *_: True,
        clock=clock,
    )
    assert board.pickup_displays() == ["desk"]
    assert board.displays_in("pickup") == ["cafe-1"]  # offers in the zone go to the other screen only
    board.show_content("desk", "pickup", None, None)
    assert sent == []  # idle already: nothing to publish
    board.show_content(
        "desk", "pickup", {"orders": [{"reference": "A-1", "counter": "Desk"}]}, clock.monotonic() + 30
    )
    manifest = sent[-1]
    assert (manifest["template"], manifest["decision_id"], manifest["fallback"]) == ("pickup", None, False)
    assert manifest["expires_at"] == "2027-01-15T08:00:30.000Z"
    clock.advance(29.0)
    assert board.counters["expired"] == 0
    clock.advance(1.0)

    async def tick() -> None:
        async def commit(_: object) -> bool:
            return True

        await board.tick(commit)  # type: ignore[arg-type]

    asyncio.run(tick())
    assert sent[-1]["fallback"] is True and board.counters["expired"] == 1
