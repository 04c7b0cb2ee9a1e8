"""Resolution of one capability from the people present (pure): merges, bounds, needs, strangers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.devices import ChoiceCapability, NumberCapability
from edge.decide.devices.resolve import Person, Resolved, on_grid, preferences_of, resolve
from tests.decide.devices.rooms import fitting_room, person

ROOM = fitting_room()
TEMPERATURE = ROOM.capabilities["temperature"]
COLOR = ROOM.capabilities["color_temp"]
VOLUME = ROOM.capabilities["volume"]
TEXT = ROOM.capabilities["text_scale"]
CONTRAST = ROOM.capabilities["contrast"]
LANGUAGE = ROOM.capabilities["language"]
assert isinstance(TEMPERATURE, NumberCapability)
assert isinstance(LANGUAGE, ChoiceCapability)


def value(name: str, people: list[Person], strangers: int = 0) -> object:
    resolved = resolve(name, ROOM.capabilities[name], people, strangers=strangers, others_weight=1.0)
    assert resolved is not None
    return resolved.value


def test_nobody_opted_in_resolves_to_nothing_so_the_revert_timer_decides() -> None:
    assert resolve("temperature", TEMPERATURE, []) is None


def test_one_person_gets_their_preference_on_the_grid_and_inside_the_bounds() -> None:
    assert value("temperature", [person("a", 1, temperature=20.2)]) == 20.0
    assert value("temperature", [person("a", 1, temperature=20.25)]) == 20.5  # half up
    assert value("temperature", [person("a", 1, temperature=31.0)]) == 25.0
    assert value("temperature", [person("a", 1, temperature=-5.0)]) == 18.0
    assert value("color_temp", [person("a", 1, color_temp=2700.0)]) == 2700.0


def test_the_couple_merges_by_median_and_a_stranger_pulls_toward_the_default() -> None:
    a = person("a", 1, temperature=20.0, color_temp=2700.0)
    b = person("b", 2, temperature=24.0, color_temp=4000.0)
    assert (value("temperature", [a, b]), value("color_temp", [a, b])) == (22.0, 3400.0)
    # One unknown person: (2 x 22 + 21) / 3 = 21.67 -> 21.5; (2 x 3350 + 4000) / 3 = 3567 -> 3600.
    assert (value("temperature", [a, b], 1), value("color_temp", [a, b], 1)) == (21.5, 3600.0)
    resolved = resolve("temperature", TEMPERATURE, [a, b])
    assert resolved == Resolved(22.0, ("a", "b"), need=False)


def test_each_preference_is_clamped_before_the_merge() -> None:
    # B asks for 40 °C: counted as 25, not as a pull that drags the median above what A wants.
    assert value("temperature", [person("a", 1, temperature=20.0), person("b", 2, temperature=40.0)]) == 22.5


@pytest.mark.parametrize(
    ("merge", "expected"),
    [("median", 21.0), ("mean", 21.5), ("min", 19.0), ("max", 25.0), ("first_in", 25.0)],
)
def test_every_number_merge(merge: str, expected: float) -> None:
    capability = NumberCapability(default=21, min=18, max=25, step=0.5, merge=merge)  # type: ignore[arg-type]
    people = [
        person("late", 3, temperature=19.0),
        person("early", 1, temperature=25.0),
        person("mid", 2, temperature=21.0),
    ]
    resolved = resolve("temperature", capability, people)
    assert resolved is not None
    assert resolved.value == expected


def test_people_without_a_preference_have_no_say_and_no_one_with_one_means_the_default() -> None:
    assert value("temperature", [person("a", 1), person("b", 2, temperature=24.0)]) == 24.0
    assert value("temperature", [person("a", 1, color_temp=3000.0)]) == 21.0
    assert resolve("temperature", TEMPERATURE, [person("a", 1)]) == Resolved(21.0, (), need=False)


def test_accessibility_needs_win_over_comfort_and_over_strangers() -> None:
    quiet = person("q", 2, needs={"volume": 0.0, "text_scale": 1.6, "contrast": "high"}, volume=40.0)
    loud = person("l", 1, volume=60.0, text_scale=1.0, contrast="normal")
    assert value("volume", [loud, quiet], strangers=5) == 0.0
    assert value("text_scale", [loud, quiet], strangers=5) == 1.6
    assert value("contrast", [loud, quiet], strangers=5) == "high"
    # Two needs: the larger text, the lower volume.
    bigger = person("b", 3, needs={"text_scale": 1.8, "volume": 10.0})
    assert value("text_scale", [quiet, bigger]) == 1.8
    assert value("volume", [quiet, bigger]) == 0.0
    resolved = resolve("text_scale", TEXT, [quiet, bigger, loud])
    assert resolved == Resolved(1.8, ("b",), need=True)


def test_a_need_on_a_comfort_capability_is_only_a_preference() -> None:
    # temperature has no `need` direction: a "need" there is ignored, the preference counts.
    assert value("temperature", [person("a", 1, needs={"temperature": 25.0}, temperature=19.0)]) == 19.0


def test_choices_first_in_majority_priority_and_strangers() -> None:
    people = [person("a", 1, language="fr"), person("b", 2, language="de"), person("c", 3, language="de")]
    assert value("language", people) == "de"  # majority
    assert value("language", people[:2]) == "fr"  # a tie goes to who came in first
    assert value("language", people, strangers=2) == "de"  # 2 strangers weigh less than 3 people
    assert value("language", people, strangers=3) == "en"  # as much: the default
    priority = ChoiceCapability(
        type="choice", default="en", values=["en", "de", "fr"], merge="priority", priority=["fr", "de"]
    )  # type: ignore[arg-type]
    resolved = resolve("language", priority, [*people[1:], person("d", 9, language="fr")])
    assert resolved == Resolved("fr", ("d",), need=False)
    assert value("language", [person("a", 1, language="klingon")]) == "en"  # not a value the device takes


def test_profiles_give_numbers_and_short_strings_only() -> None:
    profile = {
        "device_preferences": {
            "temperature": 21,
            "color_temp": 10**400,
            "language": "de",
            "bad": [1],
            "nan": float("nan"),
        },
        "accessibility": {"reduced_motion": True, "text_scale": 1.5, "contrast": "x" * 65},
    }
    preferences, needs, ignored = preferences_of(profile)
    assert preferences == {"temperature": 21.0, "language": "de"}
    assert needs == {"reduced_motion": "on", "text_scale": 1.5}
    assert ignored == 4
    assert preferences_of({"device_preferences": "warm"}) == ({}, {}, 1)
    assert preferences_of({}) == ({}, {}, 0)


# --- properties -------------------------------------------------------------------------------------------
numbers = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
crowds = st.lists(
    st.tuples(
        st.one_of(st.none(), numbers),  # temperature preference
        st.one_of(st.none(), st.floats(min_value=-10, max_value=10, allow_nan=False)),  # text_scale need
        st.one_of(st.none(), st.sampled_from(["en", "de", "fr", "es"])),
    ),
    min_size=1,
    max_size=12,
)


def _people(crowd: list[tuple[float | None, float | None, str | None]]) -> list[Person]:
    found = []
    for index, (temperature, text, language) in enumerate(crowd):
        preferences = {
            k: v for k, v in {"temperature": temperature, "language": language}.items() if v is not None
        }
        needs = {"text_scale": text} if text is not None else {}
        found.append(Person(f"p{index}", float(index), preferences, needs))
    return found


@given(crowds, st.integers(min_value=0, max_value=20), st.floats(min_value=0, max_value=10))
def test_never_outside_the_bounds_and_always_on_the_grid(crowd, strangers: int, weight: float) -> None:
    people = _people(crowd)
    for name in ("temperature", "text_scale", "color_temp", "volume"):
        capability = ROOM.capabilities[name]
        assert isinstance(capability, NumberCapability)
        resolved = resolve(name, capability, people, strangers=strangers, others_weight=weight)
        assert resolved is not None
        assert isinstance(resolved.value, float)
        assert capability.min <= resolved.value <= capability.max
        assert on_grid(capability, resolved.value) == resolved.value
    language = resolve("language", LANGUAGE, people, strangers=strangers, others_weight=weight)
    assert language is not None
    assert language.value in LANGUAGE.values


@given(crowds, st.integers(min_value=0, max_value=5))
def test_the_median_does_not_depend_on_the_order_people_came_in(crowd, strangers: int) -> None:
    people = _people(crowd)[:6]
    results = set()
    for order in itertools.islice(itertools.permutations(range(len(people))), 24):
        reordered = [
            Person(people[i].shopper_id, float(rank), people[i].preferences, people[i].needs)
            for rank, i in enumerate(order)
        ]
        resolved = resolve("temperature", TEMPERATURE, reordered, strangers=strangers)
        assert resolved is not None
        results.add(resolved.value)
    assert len(results) == 1


@given(crowds)
def test_a_need_is_always_applied(crowd) -> None:
    people = _people(crowd)
    needed = [p.needs["text_scale"] for p in people if "text_scale" in p.needs]
    resolved = resolve("text_scale", TEXT, people, strangers=3)
    assert resolved is not None
    if needed:
        assert resolved.need
        assert resolved.value == on_grid(TEXT, max(needed))  # type: ignore[arg-type]
    else:
        assert not resolved.need
