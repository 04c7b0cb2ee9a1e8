"""What each shopper has in hand this visit (the SKUs of their POS sale, an app's scan-and-go cart), in memory
only, for decisions; held only for a shopper with `personalization` consent, gone when they leave, after
``basket_ttl_s``, or at once on a withdrawal or an erasure."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge.clock import Clock
from edge.events import Purpose
from edge.sources.payloads import TransactionItem


@dataclass(slots=True)
class _Basket:
    skus: tuple[str, ...]  # distinct, oldest first
    until_mono: float


@dataclass(slots=True, frozen=True)
class BasketStats:
    shoppers: int  # baskets held now
    added: int  # carts and sales added
    skus_dropped: int  # SKUs past `cart_max_items` (the oldest of a basket go first)
    evicted: int  # baskets dropped for room (`basket_max_shoppers`)
    expired: int  # baskets past `basket_ttl_s`
    left: int  # baskets gone with their shopper (left every zone, withdrew, erased)
    refused: int  # a cart or sale of a shopper without personalization consent: not held


class Baskets:
    """Per-shopper baskets, bounded: at most ``max_shoppers`` of at most ``max_skus`` distinct SKUs each.

    Memory bound: 2,000 shoppers x 50 SKUs of at most 64 characters is under 10 MB at the schema's defaults,
    and the maxima (50,000 x 200) are the operator's explicit choice. Insertion order is age order (an
    update moves a basket to the end), so eviction and expiry look at the front only.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        ttl_s: float,
        max_skus: int,
        max_shoppers: int,
        allowed: Callable[[str], bool],
    ) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_skus = max_skus
        self._max_shoppers = max_shoppers
        # Whether the shopper has personalization consent now: nothing is held for anyone else.
        self._allowed = allowed
        self._baskets: dict[str, _Basket] = {}
        self._counts = {"added": 0, "skus_dropped": 0, "evicted": 0, "expired": 0, "left": 0, "refused": 0}

    def add(self, shopper_id: str, skus: Iterable[str]) -> None:
        """The shopper holds ``skus`` too (a cart, a sale's lines); the newest ``max_skus`` distinct ones stay."""
        if not self._allowed(shopper_id):
            self._counts["refused"] += 1
            return
        self._counts["added"] += 1
        held = self._baskets.pop(shopper_id, None)
        merged = dict.fromkeys(held.skus) if held is not None else {}
        for sku in skus:
            merged.pop(sku, None)  # again: now among the newest
            merged[sku] = None
        kept = tuple(merged)
        if len(kept) > self._max_skus:
            self._counts["skus_dropped"] += len(kept) - self._max_skus
            kept = kept[-self._max_skus :]
        self._baskets[shopper_id] = _Basket(kept, self._clock.monotonic() + self._ttl_s)
        while len(self._baskets) > self._max_shoppers:
            del self._baskets[next(iter(self._baskets))]
            self._counts["evicted"] += 1

    def sale(self, shopper_id: str, items: tuple[TransactionItem, ...]) -> None:
        """``PosFlow``'s hook: a sale of the shopper's, with a valid fresh token, this visit: its lines' SKUs."""
        self.add(shopper_id, (item.sku for item in items))

    def get(self, shopper_id: str) -> tuple[str, ...]:
        """The shopper's basket now (empty when none, or expired); one dictionary lookup."""
        basket = self._baskets.get(shopper_id)
        if basket is None:
            return ()
        if basket.until_mono <= self._clock.monotonic():
            del self._baskets[shopper_id]
            self._counts["expired"] += 1
            return ()
        return basket.skus

    def forget(self, shopper_id: str) -> None:
        """The visit ended (left every zone), or the shopper withdrew or was erased: the basket goes now."""
        if self._baskets.pop(shopper_id, None) is not None:
            self._counts["left"] += 1

    def consent_changed(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:
        """A ``ConsentStore`` listener: a personalization withdrawal (or an erasure) empties the basket."""
        if not granted and purpose is Purpose.PERSONALIZATION:
            self.forget(shopper_id)

    def expire(self) -> int:
        """Timer work: drop the baskets past their time (the oldest are at the front); how many."""
        now, dropped = self._clock.monotonic(), 0
        while self._baskets:
            shopper_id = next(iter(self._baskets))
            if self._baskets[shopper_id].until_mono > now:
                break
            del self._baskets[shopper_id]
            dropped += 1
        self._counts["expired"] += dropped
        return dropped

    def stats(self) -> BasketStats:
        return BasketStats(shoppers=len(self._baskets), **self._counts)
