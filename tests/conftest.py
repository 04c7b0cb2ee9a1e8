"""Shared fixtures: a real mosquitto per test on a free loopback port; every test on a pinned timeline, and
the one manual ``clock`` for tests that move time themselves.

No test may depend on the wall clock, the weekday, the time zone or unseeded randomness (docs/testing.md):
``test_timeline`` starts every test at ``EDGE_TEST_INSTANT`` (tests/support/clock.py), and Hypothesis
draws the same examples on every run unless ``HYPOTHESIS_PROFILE=explore`` asks for fresh ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from edge.clock import ManualClock
from tests.support import clock as timeline
from tests.support.broker import Mosquitto

# The browser tests' fixtures (`chromium`, `page`) and the hook that screenshots a failing page.
pytest_plugins = ("tests.support.browser",)

# Derandomized: a failure found once is found again on the next run and in CI; `explore` hunts wider by hand.
settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=2000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


def pytest_report_header() -> list[str]:
    instant = timeline.chosen_instant()
    zone = os.environ.get("TZ", "(unset)")
    profile = os.environ.get("HYPOTHESIS_PROFILE", "deterministic")
    return [f"test instant: {timeline.describe(instant)}; TZ={zone}; hypothesis profile: {profile}"]


@pytest.fixture(autouse=True)
def test_timeline(monkeypatch: pytest.MonkeyPatch) -> timeline.PinnedClock:
    """Start this test at the pinned instant: SystemClock (the gateway's and the cloud's), ``timeline.now()``
    and child processes agree."""
    offset = timeline.start_timeline()
    clock = timeline.PinnedClock(offset)
    monkeypatch.setenv(timeline.OFFSET_VAR, repr(offset))
    for system_clock in timeline.SYSTEM_CLOCKS:
        monkeypatch.setattr(system_clock, "wall", lambda _self: clock.wall())
    return clock


@pytest.fixture
def clock_start() -> float:
    """Where ``clock`` starts: the test instant. A package whose tests need a particular hour or weekday (the
    decision tests' time windows) overrides this in its conftest.py, never ``clock`` itself."""
    return timeline.chosen_instant()


@pytest.fixture
def clock(clock_start: float) -> ManualClock:
    """The tests' one manual clock: at ``clock_start`` on the timeline, moving only when the test says."""
    return ManualClock(wall=clock_start)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
