"""A ledger filled through its real API for the measurement tests: decisions, acked exposures, staff answers,
device commands and POS sales, each at the time the test says (the manual clock is moved forward to it, so
write in time order); and the report's summary read beside it, as ``edge-gateway report`` does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.clock import ManualClock
from edge.config.measurement import MeasurementSettings
from edge.decide.catalog import Offer
from edge.events import Decision
from edge.ledger import Ledger
from edge.ledger.conversions import Conversion, SaleLine
from edge.ledger.readonly import read_only
from edge.measure.summary import build_summary

DAY = 86_400.0
HOUR = 3_600.0


def offer(offer_id: str, category: str, *skus: str, title: str | None = None) -> Offer:
    return Offer(id=offer_id, title=title or offer_id.title(), category=category, skus=skus, value=1.0)  # type: ignore[arg-type]


class World:
    """One store's ledger and the clock it is written on."""

    def __init__(self, ledger: Ledger, clock: ManualClock, path: Path) -> None:
        self.ledger = ledger
        self.clock = clock
        self.path = path
        self._n = 0

    def _at(self, wall: float) -> None:
        """Rows with their own times may come in any order; the clock only moves forward."""
        self.clock.advance(max(0.0, wall - self.clock.wall()))

    def _now(self, wall: float) -> None:
        """A row the ledger stamps with its clock (staff answers, device commands): written in time order."""
        if wall < self.clock.wall():
            raise AssertionError("write staff answers and device commands in time order")
        self._at(wall)

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:05d}"

    async def decision(
        self,
        shopper: str | None,
        offer_id: str | None,
        at: float,
        *,
        holdout: bool = False,
        counterfactual: str | None = None,
        zone: str = "entrance",
        keep_shopper: bool = True,
    ) -> str:
        self._at(at)
        decision_id = self._id("d")
        await self.ledger.record_decision(
            Decision(
                decision_id=decision_id,
                display_id="screen-1",
                zone=zone,
                at_wall=at,
                shopper_id=shopper,
                offer_id=offer_id,
                template="hero",
                data={},
                model_version="m-1",
                propensity=0.9 if offer_id else 1.0,
                explored=False,
                holdout=holdout,
                personalized=False,
                counterfactual_offer_id=counterfactual,
            ),
            keep_shopper=keep_shopper,
        )
        return decision_id

    async def exposure(self, shopper: str | None, offer_id: str, at: float, **kwargs: Any) -> str:
        """A decision for ``offer_id`` at ``at``, shown and acked a second later."""
        decision_id = await self.decision(shopper, offer_id, at, **kwargs)
        self._at(at + 1)
        assert await self.ledger.record_exposure(
            decision_id=decision_id,
            display_id="screen-1",
            version=1,
            shown_at_wall=at + 1,
            acked_at_wall=at + 1,
        )
        return decision_id

    async def holdout(self, shopper: str, would_show: str | None, at: float) -> str:
        """A held-out shopper's decision (the fallback shown, acked) with its counterfactual offer."""
        decision_id = await self.decision(shopper, None, at, holdout=True, counterfactual=would_show)
        self._at(at + 1)
        await self.ledger.record_exposure(
            decision_id=decision_id,
            display_id="screen-1",
            version=1,
            shown_at_wall=at + 1,
            acked_at_wall=at + 1,
        )
        return decision_id

    async def sale(
        self,
        shopper: str | None,
        at: float,
        lines: Sequence[tuple[str, str | None, float]],
        *,
        heard: float | None = None,
        currency: str | None = "EUR",
    ) -> str:
        """A sale stamped ``at`` by the POS, heard by the gateway at ``heard`` (default: then); lines are
        (sku, category, price), one of each."""
        heard = at if heard is None else heard
        self._at(heard)
        event_id = self._id("sale")
        items = tuple(
            SaleLine(sku=sku, qty=1, price=price, category=category) for sku, category, price in lines
        )
        await self.ledger.record_conversion(
            Conversion(event_id, at, heard, "lane-1", shopper, sum(i.price for i in items), currency, items),
            None,
        )
        return event_id

    async def staff(self, shopper: str | None, team: str, at: float, action: str = "assisting") -> None:
        self._now(at)
        await self.ledger.record_staff_interaction(self._id("notice"), action, team, "entrance", shopper)

    async def device(self, shoppers: Sequence[str], device: str, at: float) -> None:
        self._now(at)
        await self.ledger.record_device_setting(device, "presence", {"on": True}, list(shoppers))

    def summary(self, offers: Sequence[Offer], since: float, until: float, **settings: Any) -> dict[str, Any]:
        """``build_summary`` over the ledger file, read-only beside the open ledger."""
        with read_only(self.path) as conn:
            return build_summary(
                conn,
                store="store-1",
                since=since,
                until=until,
                offers=offers,
                settings=MeasurementSettings(**settings),
                generated_at=self.clock.wall(),
            )
