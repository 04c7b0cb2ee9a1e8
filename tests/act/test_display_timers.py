"""The board's timers: a tick looks only at the screens with something due, and does what scanning every
screen did (docs/displays.md "Cost")."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.act.displays import DisplayBoard, _Screen
from edge.config.model import DisplaySettings
from tests.act.harness import Harness


def _one_zone_each(count: int, min_display_s: float, content_ttl_s: float) -> list[DisplaySettings]:
    return [
        DisplaySettings(id=f"d{i}", zone=f"z{i}", min_display_s=min_display_s, content_ttl_s=content_ttl_s)
        for i in range(count)
    ]


async def test_a_tick_over_1000_screens_looks_only_at_those_with_something_due() -> None:
    store = Harness(displays=_one_zone_each(1000, min_display_s=8, content_ttl_s=45))
    board = store.board
    board.publish_idle()
    for _ in range(50):
        assert await board.tick(store.commit) == []
    assert board.counters["tick_screens"] == 0  # 1,000 idle screens: nothing to look at
    store.where.update(s1="z1", s2="z2", s3="z3", s4="z1")
    for shopper in ("s1", "s2", "s3"):
        await board.request(store.where[shopper], shopper, store.commit)
    store.clock.advance(2)
    assert await board.request("z1", "s4", store.commit) == []  # pending until s1's 8 s are up
    for _ in range(50):
        await board.tick(store.commit)
    assert board.counters["tick_screens"] == 0  # content up, none of it due yet
    store.clock.advance(6)
    assert [d.shopper_id for d in await board.tick(store.commit)] == ["s4"]
    assert board.counters["tick_screens"] == 1  # only d1, whose pending request was due
    store.where.clear()  # all gone, their leaves not known yet: the content expires rather than renews
    store.clock.advance(37)
    await board.tick(store.commit)
    assert board.counters["expired"] == 2  # d2 and d3, shown 45 s ago; d1's s4 has 8 s to go
    assert board.counters["tick_screens"] == 3
    store.clock.advance(8)
    await board.tick(store.commit)
    assert board.counters["expired"] == 3
    assert board.counters["tick_screens"] == 4
    for _ in range(50):
        await board.tick(store.commit)
    assert board.counters["tick_screens"] == 4  # all idle again


class ScanningBoard(DisplayBoard):
    """The board as it was: every tick looks at every screen, in configuration order."""

    def _take_due(self, now: float) -> list[_Screen]:
        super()._take_due(now)  # the timers kept as the real board keeps them; their answer is not used
        return list(self._screens.values())


# Two zones, one with two screens of different minimum times; steps: a request (its commit done, refused or
# failed), a leave, an erasure, a display going offline or online, time passing, a tick (its commit done or
# failed).
_COMMITS = st.sampled_from(["commit", "refuse", "fail"])
_DISPLAYS = [
    DisplaySettings(id="a1", zone="a", min_display_s=8, content_ttl_s=30),
    DisplaySettings(id="a2", zone="a", min_display_s=0, content_ttl_s=12),
    DisplaySettings(id="b1", zone="b", min_display_s=3, content_ttl_s=20),
]
_step = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(["a", "b"]), st.sampled_from(["s1", "s2", "s3"]), _COMMITS),
    st.tuples(st.just("leave"), st.sampled_from(["s1", "s2", "s3"])),
    st.tuples(st.just("forget"), st.sampled_from(["s1", "s2", "s3"])),
    st.tuples(st.just("online"), st.sampled_from(["a1", "a2", "b1"]), st.booleans()),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 2.0, 3.0, 8.0, 12.0, 30.0])),
    st.tuples(st.just("tick"), st.sampled_from(["commit", "fail"])),
)


async def _play(store: Harness, steps: list[tuple[object, ...]]) -> list[dict[str, object]]:
    board, states = store.board, []
    board.publish_idle()
    for step in steps:
        match step:
            case ("request", str(zone), str(shopper), str(commit)):
                previous = store.where.get(shopper)
                if previous is not None and previous != zone:
                    board.shopper_left(previous, shopper)
                store.where[shopper] = zone
                with contextlib.suppress(OSError):
                    await board.request(zone, shopper, getattr(store, commit))
            case ("leave", str(shopper)):
                zone = store.where.pop(shopper, None)
                if zone is not None:
                    board.shopper_left(zone, shopper)
            case ("forget", str(shopper)):
                store.where.pop(shopper, None)
                board.forget_shopper(shopper)
            case ("online", str(display), bool(online)):
                board.set_online(display, online)
            case ("advance", float(seconds)):
                store.clock.advance(seconds)
            case ("tick", str(commit)):
                with contextlib.suppress(OSError):
                    await board.tick(getattr(store, commit))
        states.append(store.shown())
    return states


@settings(max_examples=300)
@given(st.lists(_step, max_size=40))
# A refused or failed commit leaves the screen with what it showed, which must still expire on time.
@example(
    [
        ("request", "a", "s1", "commit"),
        ("request", "a", "s2", "refuse"),
        ("advance", 12.0),
        ("tick", "commit"),
    ]
)
@example(
    [("request", "b", "s1", "commit"), ("advance", 3.0), ("request", "b", "s2", "fail"), ("advance", 30.0)]
)
def test_the_timers_do_what_scanning_every_screen_did(steps: list[tuple[object, ...]]) -> None:
    real = Harness(displays=_DISPLAYS)
    scanning = Harness(displays=_DISPLAYS, board=ScanningBoard)
    assert asyncio.run(_play(real, steps)) == asyncio.run(_play(scanning, steps))
    for name in ("released", "expired", "superseded", "skipped_offline", "manifests"):
        assert real.board.counters[name] == scanning.board.counters[name]
