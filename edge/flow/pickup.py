"""Order online, collect in store (docs/pickup.md): ready orders on the collection-point screens, collections.

A shopper with a ready order (the cloud's ``order`` changes, ``OrderBook``) who checks in is listed on every
screen configured with ``pickup = true``: the order's reference and counter, never who, for the longest
``content_ttl_s`` of those screens. A POS sale naming the order (``collected_orders``) or a staff answer
``collected`` to the shopper's notice hands it over: durable first (the order marked collected with its
``order_collected`` event for the cloud, one transaction), then it leaves the screens and memory. The
cloud then deletes the order, and the store pulls that delete.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from edge.act.displays import DisplayBoard
from edge.act.pickup import Order, OrderBook, PickupList
from edge.clock import Clock
from edge.ledger import Ledger

log = logging.getLogger(__name__)

TEMPLATE = "pickup"


@dataclass(frozen=True, slots=True)
class PickupStats:
    open_orders: int  # ready for pickup here, not collected
    listed: int  # on the collection-point screens now
    shown: int  # check-ins that put orders on the screens
    collected: dict[str, int]  # by how: "pos", "staff"


class PickupFlow:
    def __init__(self, *, board: DisplayBoard, orders: OrderBook, ledger: Ledger, clock: Clock) -> None:
        self._board = board
        self._orders = orders
        self._ledger = ledger
        self._clock = clock
        self._displays = board.pickup_displays()
        self._show_s = max(
            (board.settings_of(display).content_ttl_s for display in self._displays), default=0.0
        )
        self._list = PickupList()
        self._shown = 0
        self._collected: Counter[str] = Counter()

    @property
    def orders(self) -> OrderBook:
        return self._orders

    def checked_in(self, shopper_id: str, zone: str) -> None:  # noqa: ARG002 - every check-in counts
        """A check-in was committed: the shopper's ready orders go on the collection-point screens."""
        orders = self._orders.of(shopper_id)
        if not orders or not self._displays:
            return
        self._shown += 1
        if self._list.add(orders, self._clock.monotonic() + self._show_s):
            self._publish()

    async def collect(self, order_ids: Sequence[str], via: str) -> list[str]:
        """Hand orders over: durable with their events first (raises the ledger's errors), then off the
        screens. Returns the ids that were open."""
        collected = await self._ledger.collect_orders(order_ids, via)
        for order_id in collected:
            self._orders.remove(order_id)
        self._collected[via] += len(collected)
        if self._list.remove(collected):
            self._publish()
        return collected

    def order_changed(self, order_id: str, order: Order | None) -> None:
        """The cloud's word on an order: gone (collected elsewhere, cancelled) leaves the screens at once."""
        if order is None and self._list.remove([order_id]):
            self._publish()

    def forget_shopper(self, shopper_id: str) -> None:
        """An erasure: the shopper's orders leave memory and the screens now."""
        self._orders.forget_shopper(shopper_id)
        if self._list.forget_shopper(shopper_id):
            self._publish()

    def tick(self) -> None:
        if self._list.expire(self._clock.monotonic()):
            self._publish()

    def stats(self) -> PickupStats:
        return PickupStats(len(self._orders), len(self._list), self._shown, dict(self._collected))

    def _publish(self) -> None:
        entries = self._list.entries()
        data = {"orders": entries} if entries else None
        for display_id in self._displays:
            self._board.show_content(display_id, TEMPLATE, data, self._list.last_until())
