"""One deadline per key: what is taken, in which order, and that moved deadlines leave no trace."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.deadlines import HEAP_MIN_COMPACT, Deadlines

# (key, deadline or None) settings, then the instant the due keys are taken at.
_settings = st.lists(st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 50))), max_size=80)


@given(_settings, st.integers(-1, 60))
def test_take_returns_exactly_the_current_deadlines_that_are_due_soonest_first(
    settings: list[tuple[int, int | None]], now: int
) -> None:
    deadlines: Deadlines[int] = Deadlines()
    current: dict[int, int] = {}
    for key, at in settings:
        deadlines.set(key, at)
        if at is None:
            current.pop(key, None)
        else:
            current[key] = at
    taken = deadlines.take(lambda at: at <= now)
    assert sorted(taken) == sorted(key for key, at in current.items() if at <= now)
    assert [current[key] for key in taken] == sorted(current[key] for key in taken)
    assert len(deadlines) == len(current) - len(taken)
    assert all(deadlines.get(key) == (None if key in taken else at) for key, at in current.items())
    assert deadlines.take(lambda at: at <= now) == []  # nothing is taken twice


def test_a_deadline_moved_many_times_is_taken_once_at_its_last_value_and_the_heap_is_compacted() -> None:
    deadlines: Deadlines[str] = Deadlines()
    for at in range(10 * HEAP_MIN_COMPACT):
        deadlines.set("screen", float(at))
    deadlines.set("other", 5.0)
    assert deadlines.take(lambda at: at < 10 * HEAP_MIN_COMPACT - 1) == ["other"]
    assert deadlines.take(lambda at: at <= 10 * HEAP_MIN_COMPACT - 1) == ["screen"]
    assert len(deadlines._heap) <= HEAP_MIN_COMPACT  # the moved deadlines did not pile up


def test_ties_leave_in_the_order_they_were_set() -> None:
    deadlines: Deadlines[str] = Deadlines()
    for key in ("c", "a", "b"):
        deadlines.set(key, 1.0)
    assert deadlines.take(lambda at: at <= 1.0) == ["c", "a", "b"]
