"""The parts of a check-in that see the whole store, in-process: display board and check-in presence.

What the flow does with them per check-in (presence enter, the zone's people counted twice: for its
``presence/{zone}`` message and for the decision's audience; the zone's screens requested, decided,
committed and shown) and per 100 ms tick (presence timeouts, board timers), on a simulated clock at 200
check-ins/s, at 4 / 100 / 300 / 1,000 displays (one zone each). The store grows with its zones: each zone
holds ``PEOPLE_PER_ZONE`` checked-in shoppers (20,000 at 1,000 zones) who keep checking in again, so the
people a check-in counts stay the same at every size and only the store around them grows. CPU time of
this process (``time.process_time``), so other load on the machine moves the figures far less than the
e2e's latencies. The 4-display run is the baseline.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from edge.act.displays import DisplayBoard
from edge.clock import ManualClock
from edge.config.model import DisplaySettings
from edge.events import CheckinReceived, Decision
from edge.presence.zones import ZonePresence
from edge.transport.topics import Topics

SIZES = (4, 100, 300, 1000)
RATE_PER_S = 200
TICK_S = 0.1
# A busy zone in front of a screen; the store's stays are this many per zone, none timing out (600 s).
PEOPLE_PER_ZONE = 20
TIMEOUT_S = 600.0


def _decision(display_id: str, zone: str, shopper_id: str | None, at_wall: float) -> Decision:
    return Decision(
        decision_id=f"{display_id}-{shopper_id}",
        display_id=display_id,
        zone=zone,
        at_wall=at_wall,
        shopper_id=shopper_id,
        offer_id="offer",
        template="card",
        data={},
        model_version="m",
        propensity=1.0,
        explored=False,
        holdout=False,
        personalized=True,
    )


async def _store(size: int, seconds: float) -> dict[str, float]:
    clock = ManualClock()
    zones = [f"z{i}" for i in range(size)]
    presence = ZonePresence(zones, timeout_s=TIMEOUT_S, clock=clock)

    async def decide(display_id: str, zone: str, shopper_id: str | None) -> Decision:
        return _decision(display_id, zone, shopper_id, clock.wall())

    async def commit(decisions: list[Decision]) -> bool:
        return True

    board = DisplayBoard(
        [DisplaySettings(id=f"d{i}", zone=zone, min_display_s=0) for i, zone in enumerate(zones)],
        topics=Topics("store/bench"),
        publish=lambda topic, payload, retain: None,
        decide=decide,
        is_present=lambda shopper, zone: presence.zone_of(shopper) == zone,
        clock=clock,
    )
    board.publish_idle()

    stays = PEOPLE_PER_ZONE * size

    def checkin(index: int) -> tuple[str, str]:
        # Shopper k always checks in at zone k mod size: the same people, again and again.
        shopper, zone = f"p{index % stays}", zones[index % size]
        presence.checkin(CheckinReceived(shopper, zone, "app", shopper, clock.wall(), clock.monotonic()))
        return shopper, zone

    for index in range(stays):
        checkin(index)
    count = int(seconds * RATE_PER_S)
    per_tick = int(TICK_S * RATE_PER_S)
    started = time.process_time()
    tick_cpu = 0.0
    for index in range(count):
        shopper, zone = checkin(index)
        for _ in range(2):
            len(set(presence.present(zone)))
        await board.request(zone, shopper, commit)
        clock.advance(1 / RATE_PER_S)
        if index % per_tick == per_tick - 1:
            tick_started = time.process_time()
            presence.expire()
            await board.tick(commit)
            tick_cpu += time.process_time() - tick_started
    total = time.process_time() - started
    ticks = count // per_tick
    return {"us_per_checkin": 1e6 * total / count, "us_per_tick": 1e6 * tick_cpu / ticks}


def run(repeats: int = 5, seconds: float = 10.0, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    for repeat in range(repeats):
        for size in sizes[repeat % len(sizes) :] + sizes[: repeat % len(sizes)]:
            runs[size].append(asyncio.run(_store(size, seconds)))
    table: dict[str, Any] = {}
    for size, results in runs.items():
        figures: dict[str, Any] = {}
        for name in ("us_per_checkin", "us_per_tick"):
            values = sorted(round(r[name], 2) for r in results)
            figures[name] = statistics.median(values)
            figures[f"{name}_min_med_max"] = [values[0], statistics.median(values), values[-1]]
        table[str(size)] = figures
    smallest, largest = str(min(sizes)), str(max(sizes))
    return {
        "sizes": table,
        "ratio_checkin_largest_vs_smallest": round(
            table[largest]["us_per_checkin"] / table[smallest]["us_per_checkin"], 2
        ),
        "people_per_zone": PEOPLE_PER_ZONE,
        "repeats": repeats,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
