"""BLE presence replayed from synthetic traces with a manual clock; assertions on public state and events only."""

from __future__ import annotations

import tracemalloc
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge.clock import ManualClock
from edge.config.ble import BlePresenceSettings
from edge.events import PresenceChanged, Sighting
from edge.presence.ble import BlePresence
from tests.presence.traces import (
    QUIET,
    TICK_S,
    Heard,
    advance_to,
    kinds,
    merged,
    replay,
    route,
    stand,
    steady,
    trace,
)

# Aisle geometry: neighbouring zones as in a real shop. Zone A's scanner at 0 m, zone B's two at 8 m and
# 12 m, zone C's further on. Half-way between A and B both read about -73 dBm: above the enter level, so
# only the filter, the margin and the hold stand between a shopper pausing there and a flap.
AISLE = {"a1": 0.0, "b1": 8.0, "b2": 12.0, "c1": 30.0}
# 20 s at A, to the boundary, 15 s looking at a shelf there, on to B, 90 s at B (long enough to dwell).
A_TO_B = route((0.0, 20.0), (4.0, 15.0), (8.0, 90.0))
ZONES = {"a1": "A", "b1": "B", "b2": "B", "c1": "C"}
SETTINGS = BlePresenceSettings()


def make(
    scanner_zones: dict[str, str] | None = None, /, **overrides: object
) -> tuple[BlePresence, ManualClock]:
    clock = ManualClock()
    # Validated, unlike model_copy(update=...): a test cannot run on settings the loader would refuse.
    settings = BlePresenceSettings.model_validate({**SETTINGS.model_dump(), **overrides})
    return BlePresence(ZONES if scanner_zones is None else scanner_zones, settings, clock), clock


def see(
    presence: BlePresence, clock: ManualClock, shopper: str, scanner: str, rssi: int
) -> list[PresenceChanged]:
    return presence.observe(Sighting(shopper, scanner, rssi, clock.monotonic()))


def assert_no_ghost(presence: BlePresence, shopper: str) -> None:
    assert presence.zone_of(shopper) is None
    assert all(presence.present(zone) == [] for zone in ("A", "B", "C"))
    assert len(presence) == 0
    assert presence.stats().tracked == 0


# --- walking and standing ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(50))
def test_walk_a_to_b_gives_one_enter_and_one_leave_per_zone(seed: int) -> None:
    presence, clock = make()
    heard = trace(identity="s1", scanners=AISLE, position=A_TO_B, duration_s=140.0, seed=seed)
    changes = replay(presence, clock, heard, until_s=170.0)  # the phone is silent for the last 30 s
    assert kinds(changes) == [("enter", "A"), ("leave", "A"), ("enter", "B"), ("dwell", "B"), ("leave", "B")]
    enter_a, leave_a, enter_b, dwell_b, leave_b = (c.at_mono - 1000.0 for c in changes)
    assert enter_a < 3.0  # three samples at A and the enter hold
    assert 20.0 < leave_a == enter_b < 55.0  # somewhere past the boundary (at 26-41 s), plus the hold
    assert dwell_b - enter_b >= SETTINGS.dwell_s
    last_heard = heard[-1].t
    assert (
        last_heard + SETTINGS.leave_after_s <= leave_b <= last_heard + SETTINGS.leave_after_s + TICK_S + 1e-6
    )
    assert {c.shopper_id for c in changes} == {"s1"}
    assert_no_ghost(presence, "s1")
    stats = presence.stats()
    assert (
        stats.counts["enters"],
        stats.counts["leaves"],
        stats.counts["switches"],
        stats.counts["dwells"],
    ) == (2, 2, 1, 1)


@pytest.mark.parametrize("seed", range(20))
def test_standing_at_the_boundary_for_ten_minutes_does_not_flap(seed: int) -> None:
    scanners = {"a1": 0.0, "b1": 8.0}
    presence, clock = make()
    heard = trace(identity="s1", scanners=scanners, position=stand(4.0), duration_s=600.0, seed=seed)
    changes = replay(presence, clock, heard, until_s=600.0)
    assert [c.kind for c in changes] in (["enter"], ["enter", "dwell"])
    assert presence.stats().counts["switches"] == 0
    # The noise did make the other zone win by the margin now and then; the hold kept it from switching.
    assert presence.stats().counts["suppressed_flaps"] > 0


def test_the_boundary_trace_does_flap_a_naive_tracker() -> None:
    # What the anchors do (strongest raw sample wins, no margin, no hold): proves the trace above has teeth.
    naive = {
        "window": 1,
        "min_samples": 1,
        "enter_rssi_dbm": -75.0,
        "exit_rssi_dbm": -75.5,
        "switch_margin_db": 0.0,
        "switch_hold_s": 0.0,
    }
    presence, clock = make(**naive)
    heard = trace(
        identity="s1", scanners={"a1": 0.0, "b1": 8.0}, position=stand(4.0), duration_s=600.0, seed=0
    )
    replay(presence, clock, heard, until_s=600.0)
    assert presence.stats().counts["switches"] > 100


def test_walk_with_quiet_signal_switches_once_after_the_hold() -> None:
    presence, clock = make()
    heard = trace(
        identity="s1",
        scanners=AISLE,
        position=route((0.0, 5.0), (8.0, 30.0)),
        duration_s=40.0,
        seed=1,
        noise=QUIET,
    )
    changes = replay(presence, clock, heard, until_s=40.0)
    assert kinds(changes) == [("enter", "A"), ("leave", "A"), ("enter", "B")]
    assert presence.stats().counts["suppressed_flaps"] == 0


# --- switching rule, exact timing --------------------------------------------------------------------


def test_switch_needs_the_margin_for_the_whole_hold() -> None:
    presence, clock = make()
    # A stays at -60 throughout. B beats it by 10 dB for 2.5 s (not enough), falls back, then for 6 s.
    a = steady("s1", "a1", -60, start_s=0.0, duration_s=20.0)
    b = [
        *steady("s1", "b1", -90, start_s=0.05, duration_s=5.0),
        *steady("s1", "b1", -50, start_s=5.05, duration_s=2.5),
        *steady("s1", "b1", -90, start_s=7.55, duration_s=2.5),
        *steady("s1", "b1", -50, start_s=10.05, duration_s=6.0),
    ]
    changes = replay(presence, clock, merged(a, b), until_s=16.0)
    assert kinds(changes) == [("enter", "A"), ("leave", "A"), ("enter", "B")]
    assert presence.stats().counts["suppressed_flaps"] == 1
    # B's filter (mean of the middle 3 of 7) clears the margin at its 5th strong sample (10.45 s); the
    # switch comes 3 s later, not before. The 2.5 s episode cleared it from 5.45 s to 7.75 s only.
    switched = changes[1].at_mono - 1000.0
    assert 10.45 + SETTINGS.switch_hold_s - 1e-6 <= switched <= 10.45 + SETTINGS.switch_hold_s + 0.1


def test_a_pending_switch_matures_on_tick_without_further_sightings() -> None:
    presence, clock = make()
    a = steady("s1", "a1", -60, start_s=0.0, duration_s=3.0)
    b = steady("s1", "b1", -50, start_s=2.0, duration_s=1.0)
    changes = replay(presence, clock, merged(a, b), until_s=3.0)
    assert kinds(changes) == [("enter", "A")]
    # B has a level from its 3rd sample (2.2 s) and wins from then on; after 3.0 s nobody hears anything.
    due = 1000.0 + 2.2 + SETTINGS.switch_hold_s
    changes = replay(presence, clock, [], until_s=due - clock.monotonic() - 0.05)
    assert changes == []
    changes = replay(presence, clock, [], until_s=0.1)
    assert kinds(changes) == [("leave", "A"), ("enter", "B")]
    assert changes[0].at_mono == pytest.approx(due, abs=TICK_S)
    assert presence.zone_of("s1") == "B"


def test_the_first_enter_waits_for_the_hold_and_follows_the_best_zone() -> None:
    presence, clock = make()
    a = steady("s1", "a1", -70, start_s=0.0, duration_s=3.0)
    changes = replay(presence, clock, a, until_s=3.0)
    assert kinds(changes) == [("enter", "A")]
    assert changes[0].at_mono == pytest.approx(1000.0 + 0.2 + SETTINGS.enter_hold_s)
    # A scanner that filled its window first loses the first enter to a louder one heard during the hold.
    presence, clock = make()
    b = steady("s1", "b1", -60, start_s=0.45, duration_s=2.55)
    changes = replay(presence, clock, merged(a, b), until_s=3.0)
    assert kinds(changes) == [("enter", "B")]
    assert changes[0].at_mono == pytest.approx(1000.0 + 0.65 + SETTINGS.enter_hold_s)


def test_a_weak_winner_is_not_entered() -> None:
    # B beats A by far more than the margin, but B itself is below the enter level: no switch.
    presence, clock = make()
    a = steady("s1", "a1", -84, start_s=0.0, duration_s=15.0)
    a[:20] = steady("s1", "a1", -70, start_s=0.0, duration_s=2.0)
    b = steady("s1", "b1", -76, start_s=0.05, duration_s=15.0)
    changes = replay(presence, clock, merged(a, b), until_s=15.0)
    assert kinds(changes) == [("enter", "A")]


# --- timers: leave, no ghost, dwell ------------------------------------------------------------------


def test_leave_on_timeout_is_driven_by_tick_alone_and_leaves_no_ghost() -> None:
    presence, clock = make()
    changes = replay(presence, clock, steady("s1", "a1", -60, start_s=0.0, duration_s=2.0), until_s=2.0)
    assert kinds(changes) == [("enter", "A")]
    last = 1000.0 + 1.9
    while clock.monotonic() < last + SETTINGS.leave_after_s - 0.05:
        assert presence.tick() == []
        assert presence.zone_of("s1") == "A"
        assert presence.present("A") == ["s1"]
        clock.advance(TICK_S)
    advance_to(clock, last + SETTINGS.leave_after_s)
    changes = presence.tick()
    assert kinds(changes) == [("leave", "A")]
    assert changes[0].at_mono == clock.monotonic()
    assert_no_ghost(presence, "s1")
    clock.advance(3600.0)
    assert presence.tick() == []


def test_weak_sightings_do_not_hold_a_shopper_in_the_zone() -> None:
    # Still heard, but below the exit level: that is not presence, so the leave comes on time.
    presence, clock = make()
    strong = steady("s1", "a1", -60, start_s=0.0, duration_s=1.0)
    weak = steady("s1", "a1", -95, start_s=1.0, duration_s=40.0)
    changes = replay(presence, clock, merged(strong, weak), until_s=40.0)
    assert kinds(changes) == [("enter", "A"), ("leave", "A")]
    # The last qualifying moment: with 4 weak samples of 7 the middle 3 still average -83 (1.3 s).
    last_ok = 1.3
    left = changes[1].at_mono - 1000.0
    assert last_ok + SETTINGS.leave_after_s - 1e-6 <= left <= last_ok + SETTINGS.leave_after_s + TICK_S


def test_hysteresis_keeps_a_shopper_between_exit_and_enter() -> None:
    presence, clock = make()
    strong = steady("s1", "a1", -70, start_s=0.0, duration_s=1.0)
    middling = steady("s1", "a1", -82, start_s=1.0, duration_s=120.0)
    changes = replay(presence, clock, merged(strong, middling), until_s=121.0)
    assert kinds(changes) == [("enter", "A"), ("dwell", "A")]
    # The same middling signal from the start never enters.
    presence, clock = make()
    assert replay(presence, clock, middling, until_s=121.0) == []


def test_dwell_once_per_stay_and_only_with_evidence() -> None:
    presence, clock = make()
    stay = trace(identity="s1", scanners=AISLE, position=stand(0.0), duration_s=200.0, seed=7)
    changes = replay(presence, clock, stay, until_s=230.0)
    assert kinds(changes) == [("enter", "A"), ("dwell", "A"), ("leave", "A")]
    assert changes[1].at_mono - changes[0].at_mono >= SETTINGS.dwell_s
    # A second visit is a new stay with its own dwell.
    changes = replay(presence, clock, stay, until_s=230.0)
    assert kinds(changes) == [("enter", "A"), ("dwell", "A"), ("leave", "A")]
    # Gone (silent) after 50 s: the leave comes at 70 s and no dwell is claimed at 60 s.
    short = trace(identity="s2", scanners=AISLE, position=stand(0.0), duration_s=50.0, seed=8)
    changes = replay(presence, clock, short, until_s=90.0)
    assert kinds(changes) == [("enter", "A"), ("leave", "A")]


def test_single_outliers_neither_enter_nor_leave() -> None:
    presence, clock = make()
    far = steady("s1", "a1", -90, start_s=0.0, duration_s=10.0)
    far[50] = Heard(far[50].t, "s1", "a1", -40)
    assert replay(presence, clock, far, until_s=10.0) == []
    # A first-ever sample, however strong, is one sample: no enter until the filter has company.
    presence, clock = make()
    assert see(presence, clock, "s2", "a1", -40) == []
    assert presence.zone_of("s2") is None
    # In the zone: one deep fade, and one spike from another zone's scanner, change nothing.
    presence, clock = make()
    near = steady("s3", "a1", -62, start_s=0.0, duration_s=30.0)
    near[100] = Heard(near[100].t, "s3", "a1", -100)
    spike = [Heard(near[150].t + 0.05, "s3", "b1", -40)]
    changes = replay(presence, clock, merged(near, spike), until_s=30.0)
    assert kinds(changes) == [("enter", "A")]
    assert presence.stats().counts["suppressed_flaps"] == 0


# --- caps, consent, configuration ---------------------------------------------------------------------


def test_tracked_shoppers_are_capped_and_evictions_counted() -> None:
    presence, clock = make(max_tracked=1000, enter_hold_s=0.0)
    evicted_leaves = 0
    for n in range(10_000):
        for _ in range(3):
            changes = see(presence, clock, f"s{n}", "a1", -60)
            evicted_leaves += sum(1 for c in changes if c.kind == "leave")
            assert len(presence) <= 1000
        clock.advance(0.001)
    stats = presence.stats()
    assert stats.counts["evicted"] == 9000
    assert evicted_leaves == 9000
    assert stats.tracked == len(presence) == 1000
    assert len(presence.present("A")) == stats.counts["enters"] - stats.counts["leaves"] == 1000
    assert presence.zone_of("s0") is None
    assert presence.zone_of("s9999") == "A"


def test_scanners_per_shopper_are_capped() -> None:
    zones = {f"n{i}": "A" for i in range(100)}
    presence, clock = make(zones, max_scanners_per_identity=4, min_samples=1)
    for i in range(100):
        see(presence, clock, "s1", f"n{i}", -60)
        clock.advance(0.01)
    assert presence.filtered_rssi("s1", "n99") == -60.0
    assert presence.filtered_rssi("s1", "n0") is None
    assert presence.stats().counts["scanners_dropped"] == 96


def test_stale_scanners_are_pruned_so_they_never_count() -> None:
    presence, clock = make()
    replay(presence, clock, steady("s1", "b1", -60, start_s=0.0, duration_s=2.0), until_s=2.0)
    assert presence.zone_of("s1") == "B"
    replay(presence, clock, steady("s1", "a1", -70, start_s=0.0, duration_s=15.0), until_s=15.0)
    # B's samples aged out: A wins without anyone hearing B again.
    assert presence.zone_of("s1") == "A"
    assert presence.filtered_rssi("s1", "b1") is None


def test_memory_stays_flat_under_churn() -> None:
    presence, clock = make(max_tracked=200)

    def churn(start: int, count: int) -> None:
        for n in range(start, start + count):
            for scanner in ("a1", "b1", "a1", "b1"):
                see(presence, clock, f"s{n}", scanner, -60)
            clock.advance(0.0005)
            if n % 100 == 0:
                presence.tick()

    tracemalloc.start()
    try:
        churn(0, 5_000)  # fills the table and the timer heap to their working size
        before = tracemalloc.get_traced_memory()[0]
        churn(5_000, 25_000)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(presence) == 200
    assert after - before < 256 * 1024


def test_forget_leaves_at_once_and_drops_everything() -> None:
    presence, clock = make()
    replay(presence, clock, steady("s1", "a1", -60, start_s=0.0, duration_s=2.0), until_s=2.0)
    changes = presence.forget("s1")
    assert kinds(changes) == [("leave", "A")]
    assert changes[0].at_mono == clock.monotonic()
    assert_no_ghost(presence, "s1")
    assert presence.filtered_rssi("s1", "a1") is None
    clock.advance(60.0)
    assert presence.tick() == []  # no second, timer-driven leave
    assert presence.forget("s1") == []
    assert presence.forget("never-seen") == []


def test_unknown_scanners_are_counted_and_ignored_until_mapped() -> None:
    presence, clock = make(enter_hold_s=0.0)
    for _ in range(5):
        assert see(presence, clock, "s1", "espresense:kitchen", -50) == []
    assert presence.stats().counts["unknown_scanner"] == 5
    assert len(presence) == 0
    presence.set_scanner_zones({**ZONES, "espresense:kitchen": "K"})
    changes = [c for _ in range(3) for c in see(presence, clock, "s1", "espresense:kitchen", -50)]
    assert kinds(changes) == [("enter", "K")]
    assert presence.present("K") == ["s1"]


def test_out_of_range_rssi_is_counted_and_ignored() -> None:
    presence, clock = make()
    for rssi in (127, 21, -128):
        assert see(presence, clock, "s1", "a1", rssi) == []
    assert presence.stats().counts["invalid_rssi"] == 3
    assert len(presence) == 0


def test_event_wall_time_is_when_the_sample_was_heard() -> None:
    presence, clock = make(min_samples=1, enter_hold_s=0.0)
    heard_at = clock.monotonic()
    clock.advance(0.25)  # the sighting waited in a queue
    changes = presence.observe(Sighting("s1", "a1", -60, heard_at))
    assert changes[0].at_mono == heard_at
    assert changes[0].at_wall == pytest.approx(clock.wall() - 0.25)


def test_present_lists_most_recent_arrival_first() -> None:
    presence, clock = make(min_samples=1, enter_hold_s=0.0)
    for shopper in ("s1", "s2", "s3"):
        see(presence, clock, shopper, "a1", -60)
        clock.advance(1.0)
    assert presence.present("A") == ["s3", "s2", "s1"]
    assert presence.present("nowhere") == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"enter_rssi_dbm": -80.0, "exit_rssi_dbm": -80.0}, "must be below enter_rssi_dbm"),
        ({"enter_rssi_dbm": -80.0, "exit_rssi_dbm": -70.0}, "must be below enter_rssi_dbm"),
        ({"window": 3, "min_samples": 4}, "cannot exceed window"),
        ({"max_tracked": 0}, "greater than or equal to 1"),
        ({"leave_after_s": 0}, "greater than 0"),
        ({"enter_rssi_dbm": 30}, "less than or equal to 20"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_settings_are_validated(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BlePresenceSettings.model_validate(overrides)


def test_settings_are_frozen_and_described() -> None:
    with pytest.raises(ValidationError):
        SETTINGS.window = 3
    assert all(info.description for info in BlePresenceSettings.model_fields.values())


# --- arbitrary input ----------------------------------------------------------------------------------

SCANNERS = ["a1", "b1", "b2", "c1", "rogue"]
SHOPPERS = ["s1", "s2", "s3", "s4"]
# (op, shopper, scanner, rssi, count, seconds): one shape for every op keeps the replay loop simple.
_burst = st.tuples(
    st.just("burst"),
    st.sampled_from(SHOPPERS),
    st.sampled_from(SCANNERS),
    # Anything a radio can report, and often the levels around the thresholds, where the rules act.
    st.one_of(st.integers(-127, 20), st.sampled_from([-60, -70, -74, -76, -80, -86, -95])),
    st.integers(1, 6),  # adverts 0.2 s apart
    st.one_of(st.just(0.0), st.floats(0.0, 3.0)),  # delivered late: out of order with other sightings
)
_advance = st.tuples(
    st.just("advance"),
    st.just(""),
    st.just(""),
    st.just(0),
    st.just(0),
    st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 30.0)),
)
_tick = st.tuples(st.just("tick"), st.just(""), st.just(""), st.just(0), st.just(0), st.just(0.0))
_forget = st.tuples(
    st.just("forget"), st.sampled_from(SHOPPERS), st.just(""), st.just(0), st.just(0), st.just(0.0)
)
_OPS = st.lists(st.one_of(_burst, _burst, _burst, _advance, _tick, _forget), min_size=20, max_size=200)
HYPOTHESIS_SETTINGS = {
    "max_tracked": 3,
    "max_scanners_per_identity": 2,
    "window": 3,
    "min_samples": 2,
    "window_s": 5.0,
    "enter_hold_s": 0.4,
    "switch_hold_s": 1.0,
    "dwell_s": 6.0,
    "leave_after_s": 8.0,
}


@settings(max_examples=400, deadline=None)
@given(_OPS)
def test_arbitrary_sightings_never_raise_and_keep_the_invariants(
    ops: list[tuple[str, str, str, int, int, float]],
) -> None:
    presence, clock = make(**HYPOTHESIS_SETTINGS)
    inside: dict[str, tuple[str, float]] = {}  # from the events alone: zone and time of entering
    dwelt: set[str] = set()
    for op, shopper, scanner, rssi, count, seconds in ops:
        changes: list[PresenceChanged] = []
        if op == "burst":
            for _ in range(count):
                changes += presence.observe(Sighting(shopper, scanner, rssi, clock.monotonic() - seconds))
                clock.advance(0.2)
        elif op == "advance":
            clock.advance(seconds)
        elif op == "tick":
            changes = presence.tick()
        else:
            changes = presence.forget(shopper)
            assert presence.zone_of(shopper) is None
        for change in changes:
            if change.kind == "enter":
                assert change.shopper_id not in inside
                inside[change.shopper_id] = (change.zone, change.at_mono)
                dwelt.discard(change.shopper_id)
            elif change.kind == "dwell":
                zone, since = inside[change.shopper_id]
                assert zone == change.zone
                assert change.at_mono - since >= HYPOTHESIS_SETTINGS["dwell_s"]
                assert change.shopper_id not in dwelt
                dwelt.add(change.shopper_id)
            else:
                assert inside.pop(change.shopper_id)[0] == change.zone
        present = Counter(sid for zone in ("A", "B", "C") for sid in presence.present(zone))
        assert all(n == 1 for n in present.values())  # at most one zone each
        assert {sid: zone for sid, (zone, _) in inside.items()} == {
            sid: presence.zone_of(sid) for sid in present
        }
        assert all(presence.zone_of(sid) is None for sid in SHOPPERS if sid not in inside)
        stats = presence.stats()
        assert stats.counts["enters"] - stats.counts["leaves"] == len(present)
        assert stats.tracked == len(presence) <= 3
