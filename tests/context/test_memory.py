"""The weather board and the baskets, on a manual clock: newest wins, stale is unknown, baskets are bounded
and held only with personalization consent."""

from __future__ import annotations

import pytest

from edge.clock import ManualClock
from edge.context.basket import Baskets
from edge.context.weather import MAX_AHEAD_S, Reading, WeatherBoard, WeatherSource
from edge.events import Purpose, Weather

STALE_S = 3 * 3_600.0


def reading(clock: ManualClock, ago_s: float, temp_c: float = 20.0) -> Reading:
    return Reading(temp_c, False, None, clock.wall() - ago_s)


def test_the_newest_reading_wins_whatever_its_source(clock: ManualClock) -> None:
    board = WeatherBoard(clock, STALE_S)
    assert board.now(clock.wall()) is None
    assert board.offer(reading(clock, 600, temp_c=10), WeatherSource.CLOUD)
    assert board.offer(reading(clock, 60, temp_c=12), WeatherSource.SENSOR)
    # An older cloud reading arriving late does not undo the sensor's newer one; nor does one as old.
    assert not board.offer(reading(clock, 300, temp_c=99), WeatherSource.CLOUD)
    assert not board.offer(reading(clock, 60, temp_c=98), WeatherSource.CLOUD)
    assert board.now(clock.wall()) == Weather(12.0, False, None, clock.wall() - 60, "sensor")
    stats = board.stats()
    assert (stats.known, stats.source, stats.readings, stats.superseded) == (
        True,
        "sensor",
        {"cloud": 1, "sensor": 1},
        2,
    )


def test_stale_weather_is_unknown_never_an_old_value(clock: ManualClock) -> None:
    board = WeatherBoard(clock, STALE_S)
    board.offer(reading(clock, 0), WeatherSource.CLOUD)
    clock.advance(STALE_S)
    assert board.now(clock.wall()) is not None  # exactly at the bound: still fresh
    clock.advance(1)
    assert board.now(clock.wall()) is None
    assert not board.stats().known
    # A newer reading brings it back.
    board.offer(reading(clock, 5), WeatherSource.SENSOR)
    assert board.now(clock.wall()) is not None


def test_a_reading_from_the_future_is_refused(clock: ManualClock) -> None:
    board = WeatherBoard(clock, STALE_S)
    assert not board.too_far_ahead(reading(clock, -MAX_AHEAD_S))  # within the skew
    assert board.too_far_ahead(reading(clock, -MAX_AHEAD_S - 1))
    assert board.stats().future == 1


class Consent:
    def __init__(self, *shoppers: str) -> None:
        self.granted = set(shoppers)

    def __call__(self, shopper_id: str) -> bool:
        return shopper_id in self.granted


def baskets(clock: ManualClock, consent: Consent, **bounds: int) -> Baskets:
    return Baskets(
        clock,
        ttl_s=3_600.0,
        max_skus=bounds.get("max_skus", 4),
        max_shoppers=bounds.get("max_shoppers", 3),
        allowed=consent,
    )


def test_a_basket_is_held_only_with_personalization_consent(clock: ManualClock) -> None:
    held = baskets(clock, Consent("p-yes"))
    held.add("p-yes", ["a", "b"])
    held.add("p-no", ["a"])
    assert held.get("p-yes") == ("a", "b")
    assert held.get("p-no") == ()
    assert held.stats().refused == 1


def test_a_basket_keeps_the_newest_distinct_skus(clock: ManualClock) -> None:
    held = baskets(clock, Consent("p"), max_skus=3)
    held.add("p", ["a", "b", "a"])
    held.add("p", ["c", "b", "d"])
    assert held.get("p") == ("c", "b", "d")  # "a" was the oldest; "b" came again
    assert held.stats().skus_dropped == 1


def test_baskets_are_bounded_by_shoppers_oldest_first(clock: ManualClock) -> None:
    held = baskets(clock, Consent("p1", "p2", "p3", "p4"), max_shoppers=3)
    for shopper in ("p1", "p2", "p3"):
        held.add(shopper, ["x"])
    held.add("p1", ["y"])  # p1 is the newest now
    held.add("p4", ["z"])
    assert [held.get(shopper) for shopper in ("p1", "p2", "p3", "p4")] == [("x", "y"), (), ("x",), ("z",)]
    assert held.stats().evicted == 1


def test_a_basket_expires_and_goes_with_its_shopper(clock: ManualClock) -> None:
    consent = Consent("p1", "p2", "p3")
    held = baskets(clock, consent)
    held.add("p1", ["a"])
    clock.advance(1_800)
    held.add("p2", ["b"])
    held.add("p3", ["c"])
    clock.advance(1_800)
    assert held.get("p1") == ()  # an hour after it was last added to
    assert held.get("p2") == ("b",)
    clock.advance(1_800)
    assert held.expire() == 2
    assert held.stats().shoppers == 0

    held.add("p1", ["a"])
    held.forget("p1")  # left every zone
    assert held.get("p1") == ()
    held.add("p2", ["b"])
    held.consent_changed("p2", Purpose.MEASUREMENT, False)
    assert held.get("p2") == ("b",)
    held.consent_changed("p2", Purpose.PERSONALIZATION, False)  # withdrawn: gone at once
    assert held.get("p2") == ()


@pytest.mark.parametrize("skus", [[], ["only"]])
def test_an_empty_addition_still_keeps_the_visit(clock: ManualClock, skus: list[str]) -> None:
    held = baskets(clock, Consent("p"))
    held.add("p", skus)
    assert held.get("p") == tuple(skus)
