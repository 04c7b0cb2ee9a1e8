"""``StoreContext``: the weather, baskets and trends one generation decides with, fed by the cloud's `weather`
changes, the local sensor's ``…/context/weather``, app carts, POS sales and the ledger's week of sales."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from edge.clock import Clock
from edge.config.context import ContextSettings
from edge.context.basket import Baskets, BasketStats
from edge.context.trends import Trends, TrendsStats
from edge.context.weather import Reading, WeatherBoard, WeatherSource, WeatherStats, parse_sensor
from edge.events import Purpose, Weather
from edge.identity import ConsentStore
from edge.ledger import WRITE_ERRORS, Ledger
from edge.sources.payloads import RejectCounter, Rejected
from edge.sources.rejections import Kind, WeatherReject
from edge.sync.wire import Change
from edge.transport.mqtt import Inbound, MqttLink, RetryLater
from edge.transport.topics import Topics

log = logging.getLogger(__name__)

# How often the context loop looks at the clock: baskets past their time go within a minute (a lookup of an
# expired basket finds it gone at once anyway), and a trends refresh is late by at most this much.
TICK_S: Final = 60.0
# A failed trends read is tried again this soon rather than after a whole refresh period.
RETRY_S: Final = 60.0


@dataclass(slots=True, frozen=True)
class ContextStats:
    weather: WeatherStats
    basket: BasketStats
    trends: TrendsStats


class StoreContext:
    """What a decision knows of the store and of the shopper's hands besides their profile."""

    def __init__(
        self,
        settings: ContextSettings,
        *,
        ledger: Ledger,
        clock: Clock,
        topics: Topics,
        rejects: RejectCounter,
        consents: ConsentStore,
        in_store: Callable[[str], bool],
        sku_categories: Callable[[], Mapping[str, str]],
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock
        self._topics = topics
        self._rejects = rejects
        # Whether a shopper is still in some zone (a leave of one zone on the way to another is no visit's end).
        self._in_store = in_store
        self.weather = WeatherBoard(clock, settings.weather_stale_s)
        self.baskets = Baskets(
            clock,
            ttl_s=settings.basket_ttl_s,
            max_skus=settings.cart_max_items,
            max_shoppers=settings.basket_max_shoppers,
            allowed=lambda shopper_id: consents.has(shopper_id, Purpose.PERSONALIZATION),
        )
        consents.subscribe(self.baskets.consent_changed)
        self.trends = Trends(clock, ledger.context.sales_by_sku, sku_categories)

    async def load(self) -> None:
        """Start-up: the reading the ledger kept (a restart keeps the weather; staleness judges it as ever)."""
        stored = await self._ledger.context.weather()
        if stored is None:
            return
        data = stored.data
        try:
            reading = Reading(
                float(data["temp_c"]),
                bool(data["precipitation"]),
                None if data.get("forecast_max_c") is None else float(data["forecast_max_c"]),
                stored.observed_wall,
            )
            source = WeatherSource(stored.source)
        except (KeyError, TypeError, ValueError):
            log.warning(
                "the stored weather reading does not decode; the weather is unknown until the next one"
            )
            return
        self.weather.offer(reading, source)

    def register(self, link: MqttLink) -> None:
        link.on(self._topics.context_weather, self.on_sensor)

    # ----- weather -----
    async def on_sensor(self, message: Inbound) -> None:
        """A local sensor's reading: parsed strictly, durable if newest, then decisions see it."""
        if not message.payload:
            return  # the retained reading was cleared: nothing new (the held one goes stale by itself)
        parsed = parse_sensor(message.payload)
        if isinstance(parsed, Rejected):
            self._rejects.reject(Kind.WEATHER, parsed.reason, message.topic)
            return
        if self.weather.too_far_ahead(parsed):
            self._rejects.reject(Kind.WEATHER, WeatherReject.FUTURE, message.topic)
            return
        if self.weather.is_newer(parsed):
            try:
                await self._ledger.context.put_weather(
                    WeatherSource.SENSOR.value, parsed.observed_wall, parsed.data()
                )
            except WRITE_ERRORS as exc:
                raise RetryLater(str(exc)) from exc
        self.weather.offer(parsed, WeatherSource.SENSOR)

    def cloud_weather(self, change: Change) -> None:
        """The mirror's listener: a pulled `weather` change, after the ledger kept it if it was newer."""
        data = change.data
        reading = Reading(
            float(data["temp_c"]),
            bool(data["precipitation"]),
            None if data["forecast_max_c"] is None else float(data["forecast_max_c"]),
            float(data["observed_wall"]),
        )
        if not self.weather.too_far_ahead(reading):
            self.weather.offer(reading, WeatherSource.CLOUD)

    # ----- baskets -----
    def cart(self, shopper_id: str, skus: tuple[str, ...]) -> None:
        """An app check-in's scan-and-go cart (before its decision)."""
        self.baskets.add(shopper_id, skus)

    def left(self, shopper_id: str, _zone: str) -> None:
        """A floor leave listener: the visit ends when the shopper is in no zone any more."""
        if not self._in_store(shopper_id):
            self.baskets.forget(shopper_id)

    # ----- for each decision -----
    def decision_inputs(
        self, shopper_id: str | None, *, personal: bool, now_wall: float
    ) -> tuple[Weather | None, tuple[str, ...], Mapping[str, float] | None]:
        """(weather, basket, trends) of a decision at ``now_wall``: no I/O, a few lookups. The basket only
        when ``personal`` (the shopper's personalization consent, checked by the caller)."""
        basket = self.baskets.get(shopper_id) if personal and shopper_id is not None else ()
        return self.weather.now(now_wall), basket, self.trends.current

    # ----- the loop -----
    async def run(self) -> None:
        """Baskets past their time go; the trends are read now and every ``trends_refresh_s``."""
        due = self._clock.monotonic()
        while True:
            if self._clock.monotonic() >= due:
                try:
                    await self.trends.refresh()
                    due = self._clock.monotonic() + self._settings.trends_refresh_s
                except WRITE_ERRORS as exc:  # the read failed (a disk error): the last result stands
                    log.warning("local trends not refreshed: %s", exc)
                    due = self._clock.monotonic() + RETRY_S
            self.baskets.expire()
            await asyncio.sleep(TICK_S)

    def stats(self) -> ContextStats:
        return ContextStats(self.weather.stats(), self.baskets.stats(), self.trends.stats())
