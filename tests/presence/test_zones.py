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
