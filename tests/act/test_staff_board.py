"""Which staff notices are open: one per visit to a team's zones, withdrawn only when the visit ends."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from edge.act.staff import StaffBoard

TEAMS = {"fitting": ["rooms", "lounge"], "floor": ["cafe", "rooms"]}


def board() -> StaffBoard:
    ids = itertools.count(1)
    return StaffBoard(TEAMS, new_id=lambda: f"n{next(ids)}")


def test_a_visit_opens_once_per_team_and_ends_when_the_shopper_is_in_none_of_its_zones() -> None:
    staff = board()
    where: dict[str, list[str]] = {"rooms": ["a"], "lounge": [], "cafe": []}
    opened, withdrawn = staff.zone_changed("rooms", lambda z: where[z])
    # rooms belongs to both teams: each gets its own notice.
    assert sorted((n.team, n.zone, n.shopper_id) for n in opened) == [
        ("fitting", "rooms", "a"),
        ("floor", "rooms", "a"),
    ]
    assert withdrawn == []
    # a moves to the lounge: the leave of rooms is seen first, with a already in the lounge (live state).
    where = {"rooms": [], "lounge": ["a"], "cafe": []}
    opened, withdrawn = staff.zone_changed("rooms", lambda z: where[z])
    assert opened == []
    assert [(n.team, n.shopper_id) for n in withdrawn] == [("floor", "a")]  # the floor team has no lounge
    opened, withdrawn = staff.zone_changed("lounge", lambda z: where[z])
    assert (opened, withdrawn) == ([], [])  # still the fitting team's same visit
    where = {"rooms": [], "lounge": [], "cafe": []}
    opened, withdrawn = staff.zone_changed("lounge", lambda z: where[z])
    assert [(n.team, n.zone) for n in withdrawn] == [("fitting", "rooms")]
    assert staff.open_notices() == 0
    assert staff.notice("n1") is None


def test_unwatched_zones_and_unknown_notices() -> None:
    staff = board()
    assert not staff.watches("stockroom")
    assert staff.zone_changed("stockroom", lambda z: ["a"]) == ([], [])
    assert staff.notice("nope") is None


@given(
    st.lists(
        st.tuples(st.sampled_from(["rooms", "lounge", "cafe"]), st.sets(st.sampled_from("abc"))), max_size=30
    )
)
def test_open_notices_are_exactly_the_team_visits_in_progress(steps) -> None:
    staff = board()
    where: dict[str, set[str]] = {"rooms": set(), "lounge": set(), "cafe": set()}
    for zone, people in steps:
        where[zone] = people
        staff.zone_changed(zone, lambda z: sorted(where[z]))
    expected = {(team, s) for team, zones in TEAMS.items() for z in zones for s in where[z]}
    assert staff.open_notices() == len(expected)
