from hypothesis import given
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.events import CheckinReceived
from edge.presence.zones import ZonePresence


def _checkin(clock: ManualClock, shopper: str, zone: str) -> CheckinReceived:
    return CheckinReceived(shopper, zone, "app", f"j-{clock.monotonic()}", clock.wall(), clock.monotonic())


def test_enter_refresh_move_and_timeout() -> None:
    clock = ManualClock()
    presence = ZonePresence(["a", "b"], timeout_s=60, clock=clock)
    changes = presence.checkin(_checkin(clock, "s1", "a"))
    assert [(c.kind, c.zone) for c in changes] == [("enter", "a")]
    clock.advance(50)
    assert presence.checkin(_checkin(clock, "s1", "a")) == []  # refresh, no new enter
    clock.advance(50)
    assert presence.expire() == []  # refreshed 50 s ago
    changes = presence.checkin(_checkin(clock, "s1", "b"))
    assert [(c.kind, c.zone) for c in changes] == [("leave", "a"), ("enter", "b")]
    assert presence.count("a").people == 0
    assert presence.count("b").people == 1
    clock.advance(59.9)
    assert presence.expire() == []
    clock.advance(0.1)
    changes = presence.expire()
    assert [(c.kind, c.zone, c.shopper_id) for c in changes] == [("leave", "b", "s1")]
    assert len(presence) == 0
    assert presence.zone_of("s1") is None


def test_present_orders_newest_first_and_counts() -> None:
    clock = ManualClock()
    presence = ZonePresence(["a"], timeout_s=600, clock=clock)
    for shopper in ("s1", "s2", "s3"):
        presence.checkin(_checkin(clock, shopper, "a"))
        clock.advance(1)
    assert presence.present("a") == ["s3", "s2", "s1"]
    count = presence.count("a")
    assert (count.people, count.identified) == (3, 3)
    assert presence.forget("s2")[0].kind == "leave"
    assert presence.present("a") == ["s3", "s1"]
    assert not presence.knows_zone("nowhere")


# A shopper checks in (zone index) after some seconds, or only time passes (None) and the timer runs.
_steps = st.lists(
    st.tuples(
        st.integers(0, 7), st.one_of(st.none(), st.integers(0, 2)), st.sampled_from([0.0, 0.5, 7.0, 30.0])
    ),
    max_size=60,
)


@given(_steps)
def test_presence_matches_the_rule_on_any_sequence(steps: list[tuple[int, int | None, float]]) -> None:
    """Against the rule written plainly (every stay scanned): who is where, the counts, and who leaves when."""
    clock = ManualClock()
    zones = ["a", "b", "c"]
    presence = ZonePresence(zones, timeout_s=60, clock=clock)
    model: dict[str, tuple[str, float]] = {}  # shopper -> (zone, last seen)
    for shopper_index, zone_index, seconds in steps:
        clock.advance(seconds)
        now = clock.monotonic()
        gone = sorted(s for s, (_, seen) in model.items() if now - seen >= 60)
        left = presence.expire()
        assert sorted(c.shopper_id for c in left) == gone
        assert all(c.kind == "leave" and c.zone == model[c.shopper_id][0] for c in left)
        for shopper in gone:
            del model[shopper]
        if zone_index is not None:
            shopper = f"s{shopper_index}"
            presence.checkin(_checkin(clock, shopper, zones[zone_index]))
            model[shopper] = (zones[zone_index], now)
        for zone in zones:
            expected = {s for s, (z, _) in model.items() if z == zone}
            assert set(presence.present(zone)) == expected
            assert presence.count(zone).people == len(expected)
        assert len(presence) == len(model)


def test_a_shopper_refreshed_many_times_leaves_once_at_the_latest_deadline() -> None:
    clock = ManualClock()
    presence = ZonePresence(["a"], timeout_s=60, clock=clock)
    for _ in range(5000):  # a kiosk scanning the same shopper every 10 ms
        presence.checkin(_checkin(clock, "s1", "a"))
        clock.advance(0.01)
    clock.advance(59.98)
    assert presence.expire() == []  # 59.99 s since the last check-in
    clock.advance(0.01)
    assert [(c.kind, c.shopper_id) for c in presence.expire()] == [("leave", "s1")]
    assert presence.expire() == []
    assert presence.present("a") == []


def test_adopted_stays_keep_their_deadlines_and_zone_order() -> None:
    clock = ManualClock()
    old = ZonePresence(["a", "b"], timeout_s=60, clock=clock)
    old.checkin(_checkin(clock, "s1", "a"))
    clock.advance(30)
    old.checkin(_checkin(clock, "s2", "a"))
    old.checkin(_checkin(clock, "s3", "b"))
    new = ZonePresence(["a"], timeout_s=60, clock=clock)  # zone b is gone
    new.adopt(old)
    assert new.present("a") == ["s2", "s1"]
    assert not new.knows_zone("b")
    clock.advance(30)
    assert [c.shopper_id for c in new.expire()] == ["s1"]
    clock.advance(30)
    assert [c.shopper_id for c in new.expire()] == ["s2"]
