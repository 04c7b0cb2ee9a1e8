"""The tests' one timeline: every test runs at a pinned instant, never at the machine's date (docs/testing.md).

The decision model reads the hour and the weekday, offers have time windows and caps reset at local midnight,
so a test on the machine's clock passes or fails with the day. Every test therefore starts at one instant,
``EDGE_TEST_INSTANT`` (ISO 8601 with a zone, default ``DEFAULT_INSTANT``), and its wall clock runs on from
there at the machine's pace (timeouts, token lifetimes and backoffs still work):

- in the pytest process, the autouse ``test_timeline`` fixture (tests/conftest.py) pins ``SystemClock.wall``
  (the gateway's and the reference cloud's) to this timeline for the test and exports the offset as ``EDGE_TEST_WALL_OFFSET``;
- a child process (a gateway started as ``python -m tests.support.launch run ...``, a test's helper script)
  calls ``pin_process()``, which reads that offset, so parent and child share one "now";
- tests sign tokens and date payloads with ``now()``, never ``time.time()``.

The gateway itself has no such switch: it lives only here, under tests/, so no setting or variable can pin a
store's clock in production. Monotonic time is the machine's everywhere.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Final

from edge.clock import SystemClock, iso_utc
from profilestore.clock import SystemClock as CloudSystemClock

INSTANT_VAR: Final = "EDGE_TEST_INSTANT"
OFFSET_VAR: Final = "EDGE_TEST_WALL_OFFSET"
# A Monday morning, UTC. Test data with fixed dates (consents, profiles in the reference store) is dated
# before 2027, so any instant from 2027 on works; a gateway refuses consents dated ahead of its clock.
DEFAULT_INSTANT: Final = "2027-03-01T09:00:00Z"


def parse_instant(text: str) -> float:
    """Unix seconds of an ISO-8601 instant; it must name its zone (``Z`` or ``+hh:mm``), as TZ must not count."""
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        msg = f"{INSTANT_VAR}={text!r} is not an ISO-8601 date-time (e.g. {DEFAULT_INSTANT})"
        raise ValueError(msg) from exc
    if stamp.tzinfo is None:
        msg = f"{INSTANT_VAR}={text!r} has no zone; add Z or an offset (e.g. {DEFAULT_INSTANT})"
        raise ValueError(msg)
    return stamp.astimezone(UTC).timestamp()


def chosen_instant() -> float:
    """The instant every test starts at: ``EDGE_TEST_INSTANT``, else ``DEFAULT_INSTANT``."""
    return parse_instant(os.environ.get(INSTANT_VAR) or DEFAULT_INSTANT)


def describe(instant: float) -> str:
    """``2026-03-02T09:00:00.000Z (Monday)``, for the pytest header and failure messages."""
    return f"{iso_utc(instant)} ({datetime.fromtimestamp(instant, tz=UTC):%A})"


def wall_offset() -> float:
    """Seconds between the test timeline and the machine's wall clock, as the fixture or parent exported it."""
    raw = os.environ.get(OFFSET_VAR)
    if raw is None:
        msg = (
            f"{OFFSET_VAR} is not set: tests/conftest.py sets it for every test, and child processes inherit "
            "it; start children with os.environ (or a copy of it)"
        )
        raise RuntimeError(msg)
    return float(raw)


def machine_wall() -> float:
    """The machine's own wall clock: only the timeline itself is built on it."""
    return time.time()  # noqa: TID251 - the one reading the test timeline is built on


def start_timeline() -> float:
    """The offset that puts the chosen instant at this moment (a test's start)."""
    return chosen_instant() - machine_wall()


def now() -> float:
    """The test's wall clock (unix seconds): what the gateway under test reads too."""
    return machine_wall() + wall_offset()


class PinnedClock:
    """A ``Clock`` on the test timeline: the wall clock from the pinned instant on, the machine's monotonic."""

    def __init__(self, offset: float | None = None) -> None:
        self.offset = wall_offset() if offset is None else offset

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return machine_wall() + self.offset


SYSTEM_CLOCKS: Final = (SystemClock, CloudSystemClock)  # the gateway's and the reference cloud's


def pin_system_clock(offset: float) -> None:
    """Every ``SystemClock`` of this process reads the timeline ``offset`` seconds from the machine's."""

    def wall(_: object) -> float:
        return machine_wall() + offset

    for system_clock in SYSTEM_CLOCKS:
        system_clock.wall = wall  # type: ignore[method-assign]


def pin_process() -> float:
    """In a child process: put every ``SystemClock`` on the parent test's timeline; returns the offset."""
    offset = wall_offset()
    pin_system_clock(offset)
    return offset
