"""Online orders waiting at this store, and what its collection-point screens list (pure; docs/pickup.md).

``OrderBook`` holds the open orders the cloud sent for this store (``order`` changes), by order and by shopper.
``PickupList`` is what a collection-point screen lists: when a shopper with a ready order checks in, the
order's reference and counter for ``show_s``, the newest first, at most ``max_listed``; an entry leaves when
the order is collected, when its shopper is erased, or when its time is up. References only: a pickup screen
hangs in a public place and never shows who.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# How many references a collection-point screen lists at most (a queue at the desk, not a database).
MAX_LISTED: Final = 8


@dataclass(frozen=True, slots=True)
class Order:
    """An online order ready for pickup at this store."""

    order_id: str
    shopper_id: str
    reference: str  # what the shopper and the screen show, e.g. "A-1042"
    counter: str  # where to collect it, e.g. "Click & collect, ground floor"
    ready_wall: float

    def entry(self) -> dict[str, str]:
        """The order as a pickup screen or a staff notice shows it: never the shopper, never the order id."""
        return {"reference": self.reference, "counter": self.counter}


class OrderBook:
    """The open orders of this store, in memory (the ledger's ``pickup_orders`` is the durable copy)."""

    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self._by_shopper: dict[str, dict[str, Order]] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def put(self, order: Order) -> None:
        self.remove(order.order_id)
        self._orders[order.order_id] = order
        self._by_shopper.setdefault(order.shopper_id, {})[order.order_id] = order

    def remove(self, order_id: str) -> Order | None:
        order = self._orders.pop(order_id, None)
        if order is not None:
            mine = self._by_shopper[order.shopper_id]
            del mine[order_id]
            if not mine:
                del self._by_shopper[order.shopper_id]
        return order

    def of(self, shopper_id: str) -> list[Order]:
        """The shopper's open orders, the oldest ready first."""
        return sorted(self._by_shopper.get(shopper_id, {}).values(), key=lambda o: (o.ready_wall, o.order_id))

    def forget_shopper(self, shopper_id: str) -> list[str]:
        """An erasure: the shopper's orders leave memory; returns their ids."""
        gone = list(self._by_shopper.get(shopper_id, {}))
        for order_id in gone:
            self.remove(order_id)
        return gone


@dataclass(slots=True)
class _Listed:
    order: Order
    until: float  # monotonic


class PickupList:
    """The entries a collection-point screen shows; every change reports whether the list changed."""

    def __init__(self, *, max_listed: int = MAX_LISTED) -> None:
        self._max = max_listed
        self._listed: dict[str, _Listed] = {}  # insertion order: the newest last

    def __len__(self) -> int:
        return len(self._listed)

    def add(self, orders: Iterable[Order], until: float) -> bool:
        """A shopper with ready orders checked in: listed (again, on top) until ``until``."""
        changed = False
        for order in orders:
            self._listed.pop(order.order_id, None)
            self._listed[order.order_id] = _Listed(order, until)
            changed = True
        return changed

    def remove(self, order_ids: Iterable[str]) -> bool:
        """Collected or withdrawn orders leave the list."""
        return sum(self._listed.pop(order_id, None) is not None for order_id in order_ids) > 0

    def forget_shopper(self, shopper_id: str) -> bool:
        return self.remove([oid for oid, item in self._listed.items() if item.order.shopper_id == shopper_id])

    def expire(self, now: float) -> bool:
        return self.remove([oid for oid, item in self._listed.items() if item.until <= now])

    def next_due(self) -> float | None:
        return min((item.until for item in self._listed.values()), default=None)

    def entries(self) -> list[dict[str, str]]:
        """What the screen lists: the newest first, at most ``max_listed``."""
        newest = list(self._listed.values())[::-1][: self._max]
        return [item.order.entry() for item in newest]

    def last_until(self) -> float | None:
        """When the last entry leaves (the manifest's expiry: the screen falls back by itself then)."""
        return max((item.until for item in self._listed.values()), default=None)
