"""Synthetic BLE RSSI traces (log-distance path loss, heavy-tailed noise, lost adverts) and their replay."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from edge.clock import ManualClock
from edge.events import PresenceChanged, Sighting
from edge.presence.ble import BlePresence

# Typical phone advertising: 1 m reference level and an indoor path-loss exponent (2 in free space, 2-3
# in a shop between shelves); scanners sit on the ceiling, so the distance never falls below this height.
RSSI_AT_1M_DBM = -59.0
PATH_LOSS_EXPONENT = 2.2
SCANNER_HEIGHT_M = 1.5
# The daemon drives tick() on this cadence.
TICK_S = 0.1


@dataclass(frozen=True, slots=True)
class Heard:
    """One advert as one scanner heard it, ``t`` seconds into the trace."""

    t: float
    identity: str
    scanner: str
    rssi: int


@dataclass(frozen=True, slots=True)
class Noise:
    """Indoor BLE noise: Gaussian jitter plus heavy tails (fades, reflections) and lost adverts."""

    sigma_db: float = 4.0
    fade_p: float = 0.06  # multipath null or body shadowing: 10-20 dB low
    spike_p: float = 0.01  # a lucky reflection: 10-25 dB high
    loss_p: float = 0.2  # the scanner missed the advert (channel hopping, collisions)

    def apply(self, rng: random.Random, rssi: float) -> int | None:
        if rng.random() < self.loss_p:
            return None
        value = rssi + rng.gauss(0.0, self.sigma_db)
        draw = rng.random()
        if draw < self.fade_p:
            value -= rng.uniform(10.0, 20.0)
        elif draw < self.fade_p + self.spike_p:
            value += rng.uniform(10.0, 25.0)
        return max(-127, min(20, round(value)))


QUIET = Noise(sigma_db=0.0, fade_p=0.0, spike_p=0.0, loss_p=0.0)


def path_loss_rssi(distance_m: float) -> float:
    """Mean RSSI at a horizontal distance from a ceiling scanner (log-distance model)."""
    distance = math.hypot(distance_m, SCANNER_HEIGHT_M)
    return RSSI_AT_1M_DBM - 10.0 * PATH_LOSS_EXPONENT * math.log10(distance)


def trace(
    *,
    identity: str,
    scanners: Mapping[str, float],
    position: Callable[[float], float],
    duration_s: float,
    seed: int,
    noise: Noise = Noise(),
    advert_hz: float = 5.0,
    start_s: float = 0.0,
) -> list[Heard]:
    """Adverts of one phone at ``position(t)`` (metres along an aisle) heard by scanners at fixed positions."""
    rng = random.Random(seed)
    period = 1.0 / advert_hz
    heard: list[Heard] = []
    t = start_s
    while t < start_s + duration_s:
        where = position(t - start_s)
        for scanner, at in scanners.items():
            rssi = noise.apply(rng, path_loss_rssi(where - at))
            if rssi is not None:
                heard.append(Heard(t, identity, scanner, rssi))
        # BLE adds a random 0-10 ms advDelay to every advertising interval.
        t += period + rng.uniform(0.0, 0.010)
    return heard


def route(*stops: tuple[float, float], speed_mps: float = 0.7) -> Callable[[float], float]:
    """A shopper's position over time: (position_m, stay_s) stops, walking between them at ``speed_mps``."""
    legs: list[tuple[float, float, float]] = []  # (start time, start position, end position)
    t = 0.0
    for (here, stay), (there, _) in itertools.pairwise(stops):
        t += stay
        legs.append((t, here, there))
        t += abs(there - here) / speed_mps
    last, _ = stops[-1]

    def position(at: float) -> float:
        for start, here, there in legs:
            travel = abs(there - here) / speed_mps
            if at < start:
                return here
            if at < start + travel:
                return here + (there - here) * (at - start) / travel
        return last

    return position


def stand(at_m: float) -> Callable[[float], float]:
    return lambda _t: at_m


def steady(
    identity: str, scanner: str, rssi: int, *, start_s: float, duration_s: float, hz: float = 10.0
) -> list[Heard]:
    """A noise-free run of identical samples (for exact timing assertions)."""
    count = round(duration_s * hz)
    return [Heard(start_s + i / hz, identity, scanner, rssi) for i in range(count)]


def merged(*traces: Iterable[Heard]) -> list[Heard]:
    return sorted((h for one in traces for h in one), key=lambda h: h.t)


def advance_to(clock: ManualClock, at: float) -> None:
    clock.advance(max(0.0, at - clock.monotonic()))


def replay(
    presence: BlePresence,
    clock: ManualClock,
    heard: Iterable[Heard],
    *,
    until_s: float,
    tick_s: float = TICK_S,
) -> list[PresenceChanged]:
    """Feed a trace as the daemon would: sightings at their times, ``tick()`` every ``tick_s``, up to ``until_s``.

    Times in the trace are relative to the clock's monotonic time when the replay starts.
    """
    start = clock.monotonic()
    changes: list[PresenceChanged] = []
    ticks = 1
    for one in heard:
        at = start + one.t
        while start + ticks * tick_s <= at:
            advance_to(clock, start + ticks * tick_s)
            changes += presence.tick()
            ticks += 1
        advance_to(clock, at)
        changes += presence.observe(Sighting(one.identity, one.scanner, one.rssi, clock.monotonic()))
    while start + ticks * tick_s <= start + until_s:
        advance_to(clock, start + ticks * tick_s)
        changes += presence.tick()
        ticks += 1
    return changes


def kinds(changes: Iterable[PresenceChanged]) -> list[tuple[str, str]]:
    return [(change.kind, change.zone) for change in changes]
