"""The store's context in a real ledger file: the newest weather survives a restart whichever source wrote
it, and the local trends are this store's share of sale lines per category over the last 7 days."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.clock import ManualClock
from edge.config.context import ContextSettings
from edge.context.service import StoreContext
from edge.context.trends import Trends, shares
from edge.events import Weather
from edge.identity import ConsentStore
from edge.ledger import Ledger
from edge.ledger.context import StoredContext
from edge.ledger.conversions import Conversion, SaleLine
from edge.sources.payloads import RejectCounter
from edge.sync.wire import Change, ChangeKind
from edge.transport.topics import Topics

DAY = 86_400.0
HOUR = 3_600.0


def weather_change(seq: int, observed_wall: float, temp_c: float) -> Change:
    data = {"temp_c": temp_c, "precipitation": True, "forecast_max_c": None, "observed_wall": observed_wall}
    return Change(seq, ChangeKind.WEATHER, "store-1", "upsert", observed_wall, data)


async def test_the_newest_reading_is_kept_whatever_its_source_and_survives_a_restart(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "ledger.db"
    now = clock.wall()
    async with Ledger(path, clock) as ledger:
        assert await ledger.context.weather() is None
        result = await ledger.replica.apply_page([weather_change(1, now - 600, 10.0)], "c-1")
        assert result.applied == {"weather": 1}
        assert await ledger.context.put_weather("sensor", now - 60, {"temp_c": 12.0})
        # The cloud's older reading, pulled late, does not replace the sensor's newer one.
        late = await ledger.replica.apply_page([weather_change(2, now - 300, 99.0)], "c-2")
        assert late.stale == {"weather": 1}
        assert not await ledger.context.put_weather("sensor", now - 60, {"temp_c": 98.0})
        # Nor does one dated beyond the skew ahead of the gateway's clock.
        ahead = await ledger.replica.apply_page([weather_change(3, now + 301, 50.0)], "c-3")
        assert ahead.stale == {"weather": 1}
    async with Ledger(path, clock) as reopened:
        assert await reopened.context.weather() == StoredContext("sensor", now - 60, {"temp_c": 12.0})


async def sale(ledger: Ledger, sale_id: str, at_wall: float, *lines: tuple[str, str | None]) -> None:
    conversion = Conversion(
        sale_id,
        at_wall,
        at_wall,
        "lane-1",
        None,
        float(len(lines)),
        "EUR",
        tuple(SaleLine(sku, 1, 1.0, category) for sku, category in lines),
    )
    assert await ledger.record_conversion(conversion, None)


async def test_trends_are_the_weeks_share_of_lines_per_category(tmp_path: Path, clock: ManualClock) -> None:
    now = clock.wall()
    catalog = {"latte": "coffee", "socks": "sports"}  # the offers' SKUs
    async with Ledger(tmp_path / "ledger.db", clock) as ledger:
        trends = Trends(clock, ledger.context.sales_by_sku, lambda: catalog)
        assert await trends.refresh() is None  # no sales yet: unknown, not zero
        await sale(ledger, "s-1", now - DAY, ("latte", None), ("latte", None), ("mug", "home"))
        await sale(ledger, "s-2", now - 6 * DAY, ("socks", None), ("shoe", "sports"), ("gum", None))
        await sale(ledger, "s-old", now - 7 * DAY - 1, ("tv", "electronics"))  # older than the week
        await sale(ledger, "s-3", now - 3_600, ("latte", "grocery"))  # the POS's category wins
        current = await trends.refresh()
    assert current == {"coffee": 2 / 6, "sports": 2 / 6, "grocery": 1 / 6, "home": 1 / 6}
    assert list(current) == ["coffee", "sports", "grocery", "home"]  # largest share first, then by name
    with pytest.raises(TypeError):
        current["coffee"] = 1.0  # type: ignore[index]  # decisions share it: immutable
    stats = trends.stats()
    assert (stats.known, stats.lines, stats.uncategorised, stats.categories, stats.refreshes) == (
        True,
        6,
        1,  # "gum": no category, no offer lists it
        4,
        2,
    )
    clock.advance(90)
    assert trends.stats().age_s == 90.0


def test_shares_of_nothing_known_are_none() -> None:
    assert shares([("gum", None, 3)], {}) == (None, 0, 3)
    assert shares([], {}) == (None, 0, 0)


async def test_a_restarted_gateway_decides_with_the_kept_reading_until_it_is_stale(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = tmp_path / "ledger.db"
    now = clock.wall()
    data = {"temp_c": 12.0, "precipitation": True, "forecast_max_c": 15.5}
    async with Ledger(path, clock) as ledger:
        assert await ledger.context.put_weather("sensor", now - 60, data)
    async with Ledger(path, clock) as reopened:
        context = StoreContext(
            ContextSettings(weather_stale_s=HOUR),
            ledger=reopened,
            clock=clock,
            topics=Topics("store/s1"),
            rejects=RejectCounter(),
            consents=ConsentStore(reopened, clock),
            in_store=lambda _shopper: False,
            sku_categories=dict,
        )
        await context.load()
    weather, basket, trends = context.decision_inputs("p-1", personal=True, now_wall=now)
    assert weather == Weather(12.0, True, 15.5, now - 60, "sensor")
    assert (basket, trends) == ((), None)
    assert context.decision_inputs(None, personal=False, now_wall=now + HOUR - 59)[0] is None
