"""Attribution, the holdout comparison and the summary's counts on a real ledger file written through the
ledger's API (tests/measure/world.py): what is credited, to which touchpoint, and what is never counted."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.clock import ManualClock
from edge.config.measurement import MeasurementSettings
from edge.ledger import Ledger
from edge.ledger.measure import decision_rewards
from edge.ledger.readonly import read_only
from edge.measure.summary import build_summary
from tests.measure.world import DAY, HOUR, World, offer

SOCKS = offer("socks", "sports", "sock-1", "sock-2")
LAMP = offer("lamp", "home", "lamp-1")
CATALOG = (SOCKS, LAMP)


@pytest.fixture
async def world(tmp_path: Path, clock: ManualClock) -> AsyncIterator[World]:
    path = tmp_path / "ledger.db"
    async with Ledger(path, clock) as ledger:
        yield World(ledger, clock, path)


def rows(summary: dict[str, Any], which: str) -> dict[tuple[str, str], tuple[int, float]]:
    return {
        (row["touchpoint"], row["id"]): (row["conversions"], row["revenue"])
        for row in summary["attribution"][which]
    }


async def test_an_offer_is_credited_with_the_matching_lines_of_its_shoppers_sales_in_the_window(
    world: World,
) -> None:
    t0 = world.clock.wall()
    await world.exposure("ann", "socks", t0 + HOUR)  # shown at t0 + HOUR + 1
    await world.exposure("bob", "socks", t0 + HOUR)
    await world.exposure("cat", "socks", t0 + HOUR)
    await world.exposure("dan", "lamp", t0 + HOUR)
    # ann: an SKU of the offer (and bread, which is not the offer's): the sock line's revenue only
    await world.sale("ann", t0 + 2 * DAY, [("sock-1", None, 5.0), ("bread", "grocery", 3.0)])
    # bob: another sports article: the offer's category
    await world.sale("bob", t0 + 3 * DAY, [("racket", "sports", 40.0)])
    # cat: nothing the offer promotes; dan: the lamp's SKU, after the window
    await world.sale("cat", t0 + 3 * DAY, [("bread", "grocery", 3.0)])
    await world.sale("dan", t0 + HOUR + 1 + 14 * DAY + 1, [("lamp-1", "home", 30.0)])
    # anonymous, and a shopper never touched: nobody to credit
    await world.sale(None, t0 + 3 * DAY, [("sock-1", "sports", 5.0)])
    await world.sale("eve", t0 + 3 * DAY, [("sock-2", "sports", 5.0)])

    summary = world.summary(CATALOG, t0, t0 + 30 * DAY)

    assert summary["attribution"]["last_touch"] == [
        {"touchpoint": "offer", "id": "socks", "conversions": 2, "revenue": 45.0}
    ]
    assert summary["attribution"]["any_touch"] == summary["attribution"]["last_touch"]
    assert summary["counts"] == {
        "decisions": 4,
        "exposures": 4,
        "conversions": 6,
        "identified_conversions": 5,
        "skipped": {},
    }
    assert summary["currency"] == "EUR"


async def test_last_touch_goes_to_the_latest_qualifying_touch_any_touch_to_each(world: World) -> None:
    t0 = world.clock.wall()
    await world.exposure("ann", "socks", t0)
    await world.staff("ann", "floor", t0 + HOUR)
    await world.device(["ann"], "fitting-1", t0 + 2 * HOUR)
    await world.exposure("ann", "lamp", t0 + 2 * HOUR + 60)  # the latest, but ann buys no lamp
    # within the visit: staff and device are credited with the whole sale, socks with its sports line
    await world.sale("ann", t0 + 3 * HOUR, [("racket", "sports", 40.0), ("bread", "grocery", 2.0)])
    # a day later: only the offer's window is still open
    await world.sale("ann", t0 + DAY, [("sock-1", "sports", 5.0)])
    # staff that dismissed the notice is no touch
    await world.staff("bob", "floor", t0 + DAY + HOUR, action="dismissed")
    await world.sale("bob", t0 + DAY + 2 * HOUR, [("racket", "sports", 40.0)])

    summary = world.summary(CATALOG, t0, t0 + 30 * DAY)

    assert rows(summary, "last_touch") == {("device", "fitting-1"): (1, 42.0), ("offer", "socks"): (1, 5.0)}
    assert rows(summary, "any_touch") == {
        ("offer", "socks"): (2, 45.0),
        ("staff", "floor"): (1, 42.0),
        ("device", "fitting-1"): (1, 42.0),
    }
    assert summary["touchpoints"] == {
        "staff": {"assisting": 1, "dismissed": 1},
        "devices": {"settings": 1, "for_shoppers": 1},
    }


async def test_the_window_is_inclusive_and_a_sale_before_its_touch_never_counts(world: World) -> None:
    t0 = world.clock.wall()
    # The POS clock a little behind: stamped 10 s before the screen showed the offer (counted, not credited)
    await world.exposure("ann", "socks", t0 + 100)  # shown at t0 + 101
    await world.sale("ann", t0 + 91, [("sock-1", "sports", 5.0)], heard=t0 + 200)
    await world.sale("bob", t0 + 100, [("sock-1", "sports", 5.0)])
    await world.exposure("bob", "socks", t0 + 200)  # 101 s after bob's sale: no near miss either
    # the window's last second counts, the next one does not
    await world.exposure("cat", "socks", t0 + DAY)
    await world.sale("cat", t0 + DAY + 1 + 14 * DAY, [("sock-1", "sports", 5.0)])
    await world.exposure("dan", "socks", t0 + DAY)
    await world.sale("dan", t0 + DAY + 1 + 14 * DAY + 1, [("sock-1", "sports", 5.0)])

    summary = world.summary(CATALOG, t0, t0 + 30 * DAY)

    assert rows(summary, "any_touch") == {("offer", "socks"): (1, 5.0)}
    assert summary["counts"]["skipped"] == {"sale_just_before_touch": 1}


async def test_a_pos_clock_off_is_counted_and_its_sales_never_attributed(world: World) -> None:
    t0 = world.clock.wall()
    await world.exposure("ann", "socks", t0)
    # stamped an hour after the exposure, heard 90 minutes later: the POS clock is off
    await world.sale("ann", t0 + HOUR, [("sock-1", "sports", 5.0)], heard=t0 + 2.5 * HOUR)
    # stamped hours ahead of when it was heard
    await world.sale("ann", t0 + 9 * HOUR, [("sock-1", "sports", 5.0)], heard=t0 + 5 * HOUR)
    # five minutes late is within the tolerance (600 s)
    await world.sale("ann", t0 + 6 * HOUR, [("sock-2", "sports", 7.0)], heard=t0 + 6 * HOUR + 300)

    summary = world.summary(CATALOG, t0, t0 + 30 * DAY)

    assert rows(summary, "any_touch") == {("offer", "socks"): (1, 7.0)}
    assert summary["counts"]["skipped"] == {"pos_clock_skew": 2}
    tolerant = world.summary(CATALOG, t0, t0 + 30 * DAY, pos_clock_tolerance_s=2 * HOUR)
    assert rows(tolerant, "any_touch") == {("offer", "socks"): (2, 12.0)}
    assert tolerant["counts"]["skipped"] == {"pos_clock_skew": 1}


async def test_holdout_arms_per_offer_and_overall(world: World) -> None:
    t0 = world.clock.wall()
    # treated: ann converts on socks (from her first exposure), bob does not, cat on the lamp
    await world.exposure("ann", "socks", t0)
    await world.exposure("ann", "socks", t0 + DAY)
    await world.exposure("bob", "socks", t0)
    await world.exposure("cat", "lamp", t0)
    # held out: hal would have seen socks and converts, ivy would have seen socks and does not,
    # joe would have seen the lamp, kim had no eligible offer (no counterfactual: no arm)
    await world.holdout("hal", "socks", t0)
    await world.holdout("ivy", "socks", t0)
    await world.holdout("joe", "lamp", t0)
    await world.holdout("kim", None, t0)
    # max: in both arms (the holdout's share changed): in neither, counted
    await world.exposure("max", "socks", t0)
    await world.holdout("max", "socks", t0 + HOUR)
    await world.sale("ann", t0 + 2 * DAY, [("sock-1", "sports", 10.0), ("bread", "grocery", 2.0)])
    await world.sale("cat", t0 + 2 * DAY, [("lamp-1", "home", 30.0)])
    await world.sale("hal", t0 + 2 * DAY, [("sock-2", "sports", 6.0)])
    await world.sale("kim", t0 + 2 * DAY, [("sock-2", "sports", 6.0)])
    await world.sale("max", t0 + 2 * DAY, [("sock-2", "sports", 6.0)])
    await world.sale("bob", t0 + 20 * DAY, [("sock-1", "sports", 10.0)])  # after the window

    summary = world.summary(CATALOG, t0, t0 + 30 * DAY)
    holdout = summary["holdout"]
    by_offer = {row["offer_id"]: row for row in holdout["offers"]}

    socks = by_offer["socks"]
    assert socks["title"] == "Socks"
    assert socks["treated"]["shoppers"] == 2 and socks["treated"]["converted"] == 1
    assert socks["holdout"]["shoppers"] == 2 and socks["holdout"]["converted"] == 1
    assert socks["treated"]["revenue_per_shopper"] == pytest.approx(5.0)  # (10 + 0) / 2, the sock line only
    assert socks["holdout"]["revenue_per_shopper"] == pytest.approx(3.0)
    assert socks["rate_diff"] == pytest.approx(0.0)
    low, high = socks["rate_diff_ci"]
    assert low < 0 < high
    assert socks["revenue_diff"] == pytest.approx(2.0)
    # two shoppers an arm detect nothing: the MDE is the largest effect a 50 % baseline allows (to 100 %)
    assert socks["mde_rate"] == pytest.approx(0.5)
    lamp = by_offer["lamp"]
    assert (lamp["treated"]["converted"], lamp["holdout"]["converted"]) == (1, 0)
    # overall: every sale of the shopper in the window from their first touch, its whole total
    overall = holdout["overall"]
    assert (overall["treated"]["shoppers"], overall["treated"]["converted"]) == (3, 2)
    assert overall["treated"]["revenue_per_shopper"] == pytest.approx((12.0 + 30.0) / 3)
    assert (overall["holdout"]["shoppers"], overall["holdout"]["converted"]) == (3, 1)
    assert summary["counts"]["skipped"] == {"shopper_in_both_arms": 1}
    json.dumps(summary, allow_nan=False)


async def test_an_arm_without_shoppers_has_no_rates(world: World) -> None:
    t0 = world.clock.wall()
    await world.exposure("ann", "socks", t0)
    summary = world.summary(CATALOG, t0, t0 + DAY)
    (socks,) = summary["holdout"]["offers"]
    assert socks["holdout"] == {
        "shoppers": 0,
        "converted": 0,
        "rate": None,
        "rate_ci": None,
        "revenue_per_shopper": None,
        "revenue_ci": None,
    }
    assert socks["treated"]["rate"] == 0.0
    assert (socks["rate_diff"], socks["rate_diff_ci"], socks["mde_rate"]) == (None, None, None)
    json.dumps(summary, allow_nan=False)


async def test_exposures_of_unknown_offers_or_without_decision_are_counted_never_credited(
    world: World,
) -> None:
    t0 = world.clock.wall()
    await world.exposure("ann", "gone", t0)  # an offer no longer in the catalog
    await world.sale("ann", t0 + HOUR, [("sock-1", "sports", 5.0)])
    # A damaged file: an exposure whose decision is missing (the foreign key would refuse it)
    with closing(sqlite3.connect(world.path)) as db:
        db.execute(
            "INSERT INTO exposures (decision_id, display_id, version, shown_at_wall, acked_at_wall, shopper_id) "
            "VALUES ('nowhere', 'screen-1', 1, ?, ?, 'ann')",
            (t0 + 10, t0 + 10),
        )
        db.commit()

    summary = world.summary(CATALOG, t0, t0 + DAY)

    assert summary["attribution"] == {"last_touch": [], "any_touch": []}
    assert summary["counts"]["skipped"] == {
        "exposure_offer_not_in_catalog": 1,
        "exposure_without_decision": 1,
    }
    assert summary["holdout"]["offers"] == []


async def test_campaign_exposures_from_the_cloud_are_touches(world: World) -> None:
    t0 = world.clock.wall()
    await world.sale("ann", t0 + 10, [("bread", "grocery", 2.0)])  # opens nothing; the clock moves on
    with closing(sqlite3.connect(world.path)) as db:
        db.executemany(
            "INSERT INTO campaign_exposures (exposure_id, shopper_id, campaign_id, at_wall, skus, category) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("x1", "ann", "spring", t0 + 100, '["sock-9"]', None),
                ("x2", "bob", "spring", t0 + 100, '["sock-9"]', None),
                ("x3", "cat", "broken", t0 + 100, "not json", "home"),
            ],
        )
        db.commit()
    await world.sale("ann", t0 + HOUR, [("sock-9", None, 9.0)])
    await world.sale("bob", t0 + HOUR, [("sock-1", "sports", 9.0)])  # not the campaign's
    await world.sale("cat", t0 + HOUR, [("lamp-7", "home", 20.0)])  # bad SKU list: its category still

    summary = world.summary(CATALOG, t0, t0 + DAY)

    assert rows(summary, "last_touch") == {
        ("campaign", "spring"): (1, 9.0),
        ("campaign", "broken"): (1, 20.0),
    }


async def test_exposures_per_hour_are_in_the_store_time_zone(world: World) -> None:
    t0 = world.clock.wall()
    day = datetime.fromtimestamp(t0, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + DAY
    await world.exposure("ann", "socks", day + 9 * HOUR + 30 * 60, zone="shoes")  # 09:30 UTC
    await world.exposure(None, "socks", day + 9 * HOUR + 40 * 60, zone="shoes")  # anonymous: counted
    await world.exposure("bob", "lamp", day + 23 * HOUR + 59 * 60, zone="home")
    await world.holdout("hal", "socks", day + 10 * HOUR)  # the fallback: no offer shown
    with read_only(world.path) as conn:
        summary = build_summary(
            conn,
            store="store-1",
            since=t0,
            until=t0 + 3 * DAY,
            offers=CATALOG,
            settings=MeasurementSettings(),
            generated_at=t0,
            tz="Asia/Kolkata",  # UTC+05:30: 09:30 UTC is 15:00, 23:59 UTC is 05:29 the next day
        )
    heat = summary["exposures_by_hour_zone"]
    assert heat["zones"] == ["home", "shoes"]
    assert heat["hours"] == list(range(24))
    home, shoes = heat["counts"]
    assert {hour: n for hour, n in enumerate(shoes) if n} == {15: 2}
    assert {hour: n for hour, n in enumerate(home) if n} == {5: 1}


async def test_decision_rewards_for_off_policy_evaluation(world: World) -> None:
    t0 = world.clock.wall()
    converted = await world.exposure("ann", "socks", t0)
    missed = await world.exposure("bob", "socks", t0 + 1)
    fallback = await world.decision("cat", None, t0 + 2)
    held = await world.holdout("dan", "socks", t0 + 3)
    unknown = await world.exposure("eve", "gone", t0 + 4)
    await world.exposure(None, "socks", t0 + 5)  # anonymous: not listed
    late = await world.decision("fay", "lamp", t0 + DAY + 1)  # not in the period
    await world.sale("ann", t0 + HOUR, [("sock-1", "sports", 5.0), ("sock-2", "sports", 2.0)])
    await world.sale("ann", t0 + 2 * HOUR, [("sock-1", "sports", 1.0)])
    for who in ("bob", "cat", "dan", "eve"):
        await world.sale(who, t0 + 2 * DAY, [("sock-1", "sports", 5.0)])

    with read_only(world.path) as conn:
        found = list(decision_rewards(conn, t0, t0 + DAY, 14 * DAY, CATALOG))

    assert found == [
        (converted, 1, 8.0),
        (missed, 1, 5.0),
        (fallback, 0, 0.0),
        (held, 0, 0.0),
        (unknown, 0, 0.0),
    ]
    assert late not in {row[0] for row in found}
    with read_only(world.path) as conn:
        short = list(decision_rewards(conn, t0, t0 + DAY, DAY, CATALOG))
    assert short[1] == (missed, 0, 0.0)
