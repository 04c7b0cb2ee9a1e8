"""One device's state machine: the couple in the fitting room, reverts, intervals, overrides, feedback."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from edge.config.devices import NumberCapability
from edge.decide.devices.plan import Command, DevicePlan, Reason
from edge.decide.devices.resolve import on_grid
from tests.decide.devices.rooms import fitting_room, person

A = person("a", 1, temperature=20.0, color_temp=2700.0)
B = person("b", 2, temperature=26.0, color_temp=4000.0)  # 26 °C: above the room's 25


def online(plan: DevicePlan, now: float = 0.0) -> Command:
    command = plan.set_people([], 0, now)  # the gateway starts: the store's defaults
    assert command is not None
    assert plan.set_available(True, now) is None  # its availability comes in: nothing more to send
    plan.report(command.values)  # a device that follows its commands
    return command


def followed(command: Command | None, plan: DevicePlan) -> Command:
    """The command, which the device carried out (it reports the new state)."""
    assert command is not None
    plan.report(command.values)
    return command


def test_a_device_starts_with_the_store_defaults() -> None:
    plan = DevicePlan(fitting_room())
    command = online(plan)
    assert command.reason is Reason.DEFAULT
    assert command.values == {
        "temperature": 21.0,
        "color_temp": 4000.0,
        "volume": 30.0,
        "text_scale": 1.0,
        "contrast": "normal",
        "language": "en",
    }
    assert command.contributors == ()


def test_the_couple_in_the_fitting_room() -> None:
    plan = DevicePlan(fitting_room())
    online(plan, 0.0)
    # A alone: her values.
    command = followed(plan.set_people([A], 0, 10.0), plan)
    assert (command.values, command.reason, command.contributors) == (
        {"temperature": 20.0, "color_temp": 2700.0},
        Reason.PEOPLE,
        ("a",),
    )
    # B joins: merged (median of 20 and 25, B's 26 clamped first; of 2700 and 4000).
    command = followed(plan.set_people([A, B], 0, 20.0), plan)
    assert command.values == {"temperature": 22.5, "color_temp": 3400.0}
    assert command.contributors == ("a", "b")
    # A camera counts a third person nobody knows: toward the default (21 °C, 4000 K).
    command = followed(plan.set_people([A, B], 1, 30.0), plan)
    assert command.values == {"temperature": 22.0, "color_temp": 3600.0}
    # A leaves: B's values, clamped to the bounds.
    command = followed(plan.set_people([B], 0, 40.0), plan)
    assert command.values == {"temperature": 25.0, "color_temp": 4000.0}
    # Both gone: nothing for revert_after_s (60 s), then the defaults.
    assert plan.set_people([], 0, 50.0) is None
    assert plan.next_due() == 110.0
    assert plan.tick(109.9) is None
    command = plan.tick(110.0)
    assert command is not None
    assert (command.values, command.reason, command.contributors) == (
        {"temperature": 21.0},
        Reason.DEFAULT,
        (),
    )
    assert plan.next_due() == 120.0  # only the confirmation deadline is left


def test_stepping_out_for_ten_seconds_does_not_make_the_room_flicker() -> None:
    plan = DevicePlan(fitting_room())
    online(plan, 0.0)
    assert plan.set_people([A], 0, 10.0) is not None
    assert plan.set_people([], 0, 20.0) is None
    assert plan.set_people([A], 0, 30.0) is None  # nothing changed for the device
    assert plan.tick(200.0) is None
    assert plan.stats().commands == 2


def test_a_withdrawal_inside_the_room_recomputes_at_once() -> None:
    plan = DevicePlan(fitting_room())
    online(plan, 0.0)
    plan.set_people([A, B], 0, 10.0)
    command = plan.set_people([B], 0, 20.0, at_once=True)  # A withdrew device_preferences
    assert command is not None
    assert command.contributors == ("b",)
    command = plan.set_people([], 0, 30.0, at_once=True)  # B was erased: no revert delay
    assert command is not None
    assert command.reason is Reason.DEFAULT
    assert command.values == {"temperature": 21.0}  # B's 4000 K is the default already


def test_at_most_one_command_per_interval_and_the_latest_value_wins() -> None:
    plan = DevicePlan(fitting_room(min_interval_s=30))
    online(plan, 0.0)
    assert plan.set_people([A], 0, 10.0) is None  # 10 s after the last command: held back
    assert plan.set_people([A, B], 0, 20.0) is None
    assert plan.next_due() == 30.0
    command = plan.tick(30.0)
    assert command is not None
    assert command.values == {"temperature": 22.5, "color_temp": 3400.0}  # A and B, not A alone
    assert plan.stats().deferred == 1
    # A change that is undone before the interval ends is never sent.
    assert plan.set_people([A], 0, 40.0) is None
    assert plan.set_people([A, B], 0, 45.0) is None
    assert plan.tick(60.0) is None


def test_a_staff_override_wins_until_it_expires() -> None:
    plan = DevicePlan(fitting_room())
    online(plan, 0.0)
    plan.set_people([A], 0, 10.0)
    command = followed(plan.set_override({"temperature": 24.0}, until=100.0, now=20.0), plan)
    assert (command.values, command.reason) == ({"temperature": 24.0}, Reason.OVERRIDE)
    command = plan.set_people([A, B], 0, 30.0)
    assert command == Command("fitting-1", {"color_temp": 3400.0}, Reason.OVERRIDE, ("a", "b"), ())
    assert plan.next_due() == 40.0  # the confirmation of the last command comes first
    followed(command, plan)
    assert plan.next_due() == 100.0
    command = plan.tick(100.0)
    assert command is not None
    assert (command.values, command.reason) == ({"temperature": 22.5}, Reason.PEOPLE)


def test_an_offline_device_is_skipped_and_brought_to_the_resolved_state_when_it_is_back() -> None:
    plan = DevicePlan(fitting_room())
    online(plan, 0.0)
    assert plan.set_available(False, 10.0) is None
    assert plan.set_people([A], 0, 20.0) is None
    command = plan.set_available(True, 30.0)
    assert command is not None
    assert len(command.values) == 6  # everything: it may have reset while away
    assert (command.values["temperature"], command.contributors) == (20.0, ("a",))


def test_a_device_that_does_not_reach_the_commanded_state_counts_a_mismatch() -> None:
    plan = DevicePlan(fitting_room())
    online(plan, 0.0)
    plan.report({"temperature": 21.0, "color_temp": 4000.0, "volume": 30.0, "text_scale": 1.0})
    plan.report({"contrast": "normal", "language": "en"})
    assert plan.tick(10.0) is None
    assert plan.stats().mismatches == 0
    plan.set_people([A], 0, 20.0)
    plan.report({"temperature": 21.0, "color_temp": 2700.0})  # the setpoint was not taken
    assert plan.tick(30.0) is None
    assert plan.stats().mismatches == 1
    assert plan.tick(40.0) is None
    assert plan.stats().mismatches == 1  # once per command


# --- properties -------------------------------------------------------------------------------------------
events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=20.0),  # seconds since the previous event
        st.sampled_from(["people", "tick", "override", "offline", "online", "withdraw"]),
        st.lists(st.floats(min_value=-50, max_value=80), max_size=4),  # temperatures of who is present
        st.integers(min_value=0, max_value=3),
    ),
    max_size=40,
)


@given(events, st.floats(min_value=0.5, max_value=15.0))
def test_never_two_commands_within_the_interval_and_never_outside_the_bounds(steps, interval: float) -> None:
    settings = fitting_room(min_interval_s=interval, revert_after_s=10)
    plan = DevicePlan(settings)
    now, sent = 0.0, []
    for gap, kind, temperatures, strangers in steps:
        now += gap
        people = [person(f"p{i}", float(i), temperature=t) for i, t in enumerate(temperatures)]
        if kind == "people":
            command = plan.set_people(people, strangers, now)
        elif kind == "withdraw":
            command = plan.set_people(people[:1], strangers, now, at_once=True)
        elif kind == "override":
            command = plan.set_override({"temperature": 24.0}, now + 5, now)
        elif kind in ("offline", "online"):
            command = plan.set_available(kind == "online", now)
        else:
            command = plan.tick(now)
        if command is not None:
            sent.append((now, command))
    for (earlier, _), (later, _) in itertools.pairwise(sent):
        assert later - earlier >= interval
    for _, command in sent:
        for name, value in command.values.items():
            capability = settings.capabilities[name]
            if isinstance(capability, NumberCapability):
                assert isinstance(value, float)
                assert capability.min <= value <= capability.max
                assert on_grid(capability, value) == value
