"""Which zone each identified shopper is in, from BLE sightings: filtered RSSI, hysteresis, held switches, timers.

A pure state machine: no I/O, no asyncio. The BLE stage calls ``observe`` per sighting and ``tick`` on a timer.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from edge.clock import Clock
from edge.config.ble import RSSI_MAX_DBM, RSSI_MIN_DBM, BlePresenceSettings, BleSourceTiming
from edge.events import PresenceChanged, Sighting
from edge.presence.rssi import RssiWindow

_log = logging.getLogger(__name__)

# What a zone with no usable sample weighs: any heard zone beats it by any margin.
_NO_SIGNAL: Final = -math.inf
# Timer heap entries of dropped shoppers and abandoned switches are skipped lazily; once the heap holds
# this many more entries than two per tracked shopper (one idle timer, one pending switch), it is rebuilt,
# so its size stays proportional to max_tracked whatever the churn.
_HEAP_SLACK: Final = 1024


@dataclass(slots=True, eq=False)
class _Shopper:
    last_seen: float
    windows: dict[str, RssiWindow] = field(default_factory=dict)
    zone: str | None = None
    arrived: float = 0.0
    last_ok: float = 0.0  # last sighting after which the current zone was at or above the exit level
    dwelt: bool = False
    pending: str | None = None  # the zone waiting out its hold (to be entered, or switched to)
    pending_due: float = 0.0
    pending_token: int = 0


# (due, sequence, shopper id, state, token): token 0 is the shopper's idle timer (leave, or drop when not
# in a zone), otherwise the pending switch it was armed for. The unique sequence keeps tuples comparable.
_Timer = tuple[float, int, str, _Shopper, int]


@dataclass(slots=True, frozen=True)
class _ZoneRules:
    """A zone's holds, margin and leave timer: the slowest of the sources whose scanners are in it."""

    enter_hold_s: float
    switch_margin_db: float
    switch_hold_s: float
    leave_after_s: float

    @staticmethod
    def of(timing: BlePresenceSettings | BleSourceTiming) -> _ZoneRules:
        return _ZoneRules(
            timing.enter_hold_s, timing.switch_margin_db, timing.switch_hold_s, timing.leave_after_s
        )

    def slowest(self, other: _ZoneRules) -> _ZoneRules:
        return _ZoneRules(
            max(self.enter_hold_s, other.enter_hold_s),
            max(self.switch_margin_db, other.switch_margin_db),
            max(self.switch_hold_s, other.switch_hold_s),
            max(self.leave_after_s, other.leave_after_s),
        )


@dataclass(slots=True, frozen=True)
class BlePresenceStats:
    """Shoppers tracked now, and the filter's events and refusals by kind (only those that happened)."""

    tracked: int
    counts: Mapping[str, int]


class BlePresence:
    """Presence of identified shoppers in zones; memory bounded by max_tracked x max_scanners_per_identity."""

    def __init__(
        self,
        scanner_zones: Mapping[str, str],
        settings: BlePresenceSettings,
        clock: Clock,
        *,
        sources: Mapping[str, BleSourceTiming] | None = None,
    ) -> None:
        """``sources``: the filter and timers of scanners named ``{source}:...`` (``espresense``), whose
        report rate differs from the local adapter's; every other scanner uses ``settings``'s own."""
        self._settings = settings
        self._clock = clock
        self._sources: dict[str, BleSourceTiming] = dict(sources or {})
        self._default_rules = _ZoneRules.of(settings)
        # An idle shopper is dropped once every sample has aged out: the longest window of any source.
        self._idle_s = max([settings.window_s, *(t.window_s for t in self._sources.values())])
        self._zones: dict[str, str] = {}
        self._rules: dict[str, _ZoneRules] = {}
        self._uniform: _ZoneRules | None = None
        self.set_scanner_zones(scanner_zones)
        self._shoppers: OrderedDict[str, _Shopper] = OrderedDict()  # least recently seen first
        self._present: dict[str, dict[str, None]] = {}  # zone -> shoppers in order of entering
        self._timers: list[_Timer] = []
        self._heap_limit = 2 * settings.max_tracked + _HEAP_SLACK
        self._sequence = 0
        self._warned_full = False
        self._warned_unknown = False
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "evicted",
                "unknown_scanner",
                "invalid_rssi",
                "scanners_dropped",
                "enters",
                "leaves",
                "dwells",
                "switches",
                "suppressed_flaps",
            ),
            0,
        )

    # --- inputs -------------------------------------------------------------------------------------

    def observe(self, sighting: Sighting) -> list[PresenceChanged]:
        """One sighting of an identified shopper; returns the presence changes it causes (usually none)."""
        scanner = sighting.scanner
        if scanner not in self._zones:
            self._unknown_scanner(scanner)
            return []
        rssi = sighting.rssi
        if not RSSI_MIN_DBM <= rssi <= RSSI_MAX_DBM:
            self._counts["invalid_rssi"] += 1
            return []
        changes: list[PresenceChanged] = []
        shopper_id = sighting.identity
        now = sighting.at_mono
        state = self._shoppers.get(shopper_id)
        if state is None:
            if len(self._shoppers) >= self._settings.max_tracked:
                self._evict_one(now, changes)
            state = _Shopper(last_seen=now)
            self._shoppers[shopper_id] = state
            self._arm(now + self._idle_s, shopper_id, state, 0)
        else:
            self._shoppers.move_to_end(shopper_id)
            # Queues and remote scanners can deliver slightly out of order; each shopper's timeline
            # must not go back, or the windows' front-is-oldest rule would break.
            now = max(now, state.last_seen)
            state.last_seen = now
        window = state.windows.get(scanner)
        if window is None:
            window = self._new_window(state, now, scanner)
            state.windows[scanner] = window
        window.add(rssi, now)
        self._evaluate(shopper_id, state, now, True, changes)
        return changes

    def tick(self) -> list[PresenceChanged]:
        """Timer work due now: leaves after silence, pending switches that held, dropping idle state."""
        now = self._clock.monotonic()
        changes: list[PresenceChanged] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, shopper_id, state, token = heapq.heappop(timers)
            if self._shoppers.get(shopper_id) is not state:
                continue  # forgotten, evicted or left since the timer was armed
            if token:
                if token == state.pending_token and state.pending is not None:
                    self._evaluate(shopper_id, state, now, False, changes)
                continue
            if state.zone is not None:
                due = state.last_ok + self._rules_of(state.zone).leave_after_s
                if due <= now:
                    self._leave(shopper_id, state, now, changes)
                    self._drop(shopper_id)
                    continue
            else:
                due = state.last_seen + self._idle_s
                if due <= now:
                    self._drop(shopper_id)  # every sample has aged out: nothing left worth keeping
                    continue
            self._arm(due, shopper_id, state, 0)
        return changes

    def forget(self, shopper_id: str) -> list[PresenceChanged]:
        """Consent withdrawn: a leave now if the shopper was in a zone, and every trace of them dropped."""
        state = self._shoppers.get(shopper_id)
        if state is None:
            return []
        changes: list[PresenceChanged] = []
        if state.zone is not None:
            self._leave(shopper_id, state, self._clock.monotonic(), changes)
        self._drop(shopper_id)
        return changes

    def set_scanner_zones(self, mapping: Mapping[str, str]) -> None:
        """Replace the scanner -> zone map (remote scanners added at run time); removed scanners stop counting."""
        self._zones = dict(mapping)
        rules: dict[str, _ZoneRules] = {}
        for scanner, zone in self._zones.items():
            own = _ZoneRules.of(self._timing(scanner))
            rules[zone] = own if zone not in rules else rules[zone].slowest(own)
        self._rules = rules
        # One kind of scanner (the usual store): every zone has the same rules, looked up once, not per advert.
        kinds = set(rules.values())
        self._uniform = kinds.pop() if len(kinds) == 1 else None

    # --- queries ------------------------------------------------------------------------------------

    def zone_of(self, shopper_id: str) -> str | None:
        state = self._shoppers.get(shopper_id)
        return None if state is None else state.zone

    def present(self, zone: str) -> list[str]:
        """Shoppers in ``zone``, most recent arrival first."""
        return list(reversed(self._present.get(zone, {})))

    def filtered_rssi(self, shopper_id: str, scanner: str) -> float | None:
        """The filter's current level for one pair (calibration and ``ble scan``); None if not enough samples."""
        state = self._shoppers.get(shopper_id)
        window = None if state is None else state.windows.get(scanner)
        return None if window is None else window.value(self._clock.monotonic())

    def stats(self) -> BlePresenceStats:
        return BlePresenceStats(len(self._shoppers), dict(self._counts))

    def __len__(self) -> int:
        return len(self._shoppers)

    # --- the state machine --------------------------------------------------------------------------

    def _evaluate(
        self, shopper_id: str, state: _Shopper, now: float, fresh: bool, changes: list[PresenceChanged]
    ) -> None:
        """Apply the rules to one shopper; ``fresh`` when a sighting just arrived (only that proves presence)."""
        settings = self._settings
        zones = self._zones
        current = state.zone
        current_level = _NO_SIGNAL
        best_zone: str | None = None
        best_level = _NO_SIGNAL
        stale: list[str] | None = None
        for scanner, window in state.windows.items():
            zone = zones.get(scanner)
            if zone is None or window.last_at <= now - window.span_s:
                stale = [scanner] if stale is None else [*stale, scanner]
                continue
            # The window's cache check, inlined: this loop runs for every scanner on every advert.
            level = window.level if now < window.valid_until else window.value(now)
            if level is None:
                continue
            if zone == current:
                if level > current_level:  # noqa: PLR1730 (a compare costs a third of a max() call here)
                    current_level = level
            elif level > best_level:
                best_level = level
                best_zone = zone
        if stale is not None:
            for scanner in stale:
                del state.windows[scanner]

        if current is None:
            if best_zone is not None and best_level >= settings.enter_rssi_dbm:
                # The first enter is decided on the least data: whichever scanner filled its window first
                # would win it. Holding a moment lets the other scanners be heard.
                hold = self._rules_of(best_zone).enter_hold_s
                if self._held(shopper_id, state, best_zone, now, hold):
                    self._enter(shopper_id, state, best_zone, now, changes)
            else:
                state.pending = None
            return
        if fresh and current_level >= settings.exit_rssi_dbm:
            state.last_ok = now
            if not state.dwelt and now - state.arrived >= settings.dwell_s:
                state.dwelt = True
                self._counts["dwells"] += 1
                changes.append(self._event(shopper_id, current, "dwell", now))
        takes_over, hold = False, 0.0
        if best_zone is not None and best_level >= settings.enter_rssi_dbm:
            uniform = self._uniform
            if uniform is not None:
                margin, hold = uniform.switch_margin_db, uniform.switch_hold_s
            else:
                # A switch between zones of different sources needs the margin and hold of the slower one.
                here, there = self._rules_of(current), self._rules_of(best_zone)
                margin = max(here.switch_margin_db, there.switch_margin_db)
                hold = max(here.switch_hold_s, there.switch_hold_s)
            takes_over = best_level - current_level >= margin
        if takes_over and best_zone is not None:
            if self._held(shopper_id, state, best_zone, now, hold):
                self._counts["switches"] += 1
                self._leave(shopper_id, state, now, changes)
                self._enter(shopper_id, state, best_zone, now, changes)
        elif state.pending is not None:
            # The other zone stopped winning before the hold ran out: a flap that did not happen.
            state.pending = None
            self._counts["suppressed_flaps"] += 1

    def _held(self, shopper_id: str, state: _Shopper, zone: str, now: float, hold_s: float) -> bool:
        """True once ``zone`` has won without a break for ``hold_s``; a timer lets tick() finish the wait."""
        if state.pending != zone:
            if state.pending is not None and state.zone is not None:
                self._counts["suppressed_flaps"] += 1  # one candidate zone gave way to another
            self._sequence += 1
            state.pending = zone
            state.pending_due = now + hold_s
            state.pending_token = self._sequence
            if hold_s > 0:
                self._arm(state.pending_due, shopper_id, state, self._sequence)
        return now >= state.pending_due

    def _enter(
        self, shopper_id: str, state: _Shopper, zone: str, now: float, changes: list[PresenceChanged]
    ) -> None:
        state.zone = zone
        state.arrived = now
        state.last_ok = now
        state.dwelt = False
        state.pending = None
        self._present.setdefault(zone, {})[shopper_id] = None
        self._counts["enters"] += 1
        changes.append(self._event(shopper_id, zone, "enter", now))

    def _leave(self, shopper_id: str, state: _Shopper, now: float, changes: list[PresenceChanged]) -> None:
        zone = state.zone
        if zone is None:
            return
        state.zone = None
        state.pending = None
        members = self._present.get(zone)
        if members is not None:
            members.pop(shopper_id, None)
            if not members:
                del self._present[zone]
        self._counts["leaves"] += 1
        changes.append(self._event(shopper_id, zone, "leave", now))

    def _event(self, shopper_id: str, zone: str, kind: str, at_mono: float) -> PresenceChanged:
        # The wall time at which the deciding sample was heard, not when the queue got round to it.
        lag = max(0.0, self._clock.monotonic() - at_mono)
        return PresenceChanged(shopper_id, zone, kind, self._clock.wall() - lag, at_mono)

    # --- bounds -------------------------------------------------------------------------------------

    def _drop(self, shopper_id: str) -> None:
        state = self._shoppers.pop(shopper_id, None)
        if state is not None:
            # Stale timers still point at the state until they fire or the heap is compacted: keep it small.
            state.windows.clear()

    def _evict_one(self, now: float, changes: list[PresenceChanged]) -> None:
        shopper_id, state = self._shoppers.popitem(last=False)
        state.windows.clear()
        self._counts["evicted"] += 1
        if state.zone is not None:
            self._leave(shopper_id, state, now, changes)
        if not self._warned_full:
            self._warned_full = True
            _log.warning(
                "BLE presence holds max_tracked=%d shoppers; evicting the least recently seen (counted)",
                self._settings.max_tracked,
            )

    def _timing(self, scanner: str) -> BlePresenceSettings | BleSourceTiming:
        source, colon, _ = scanner.partition(":")
        return self._sources.get(source, self._settings) if colon else self._settings

    def _rules_of(self, zone: str) -> _ZoneRules:
        return self._rules.get(zone, self._default_rules)

    def _new_window(self, state: _Shopper, now: float, scanner: str) -> RssiWindow:
        settings = self._settings
        windows = state.windows
        if len(windows) >= settings.max_scanners_per_identity:
            for name in [
                s for s, w in windows.items() if w.last_at <= now - w.span_s or s not in self._zones
            ]:
                del windows[name]
            if len(windows) >= settings.max_scanners_per_identity:
                oldest = min(windows, key=lambda s: windows[s].last_at)
                del windows[oldest]
                self._counts["scanners_dropped"] += 1
        timing = self._timing(scanner)
        return RssiWindow(timing.window, timing.window_s, timing.min_samples)

    def _arm(self, due: float, shopper_id: str, state: _Shopper, token: int) -> None:
        self._sequence += 1
        heapq.heappush(self._timers, (due, self._sequence, shopper_id, state, token))
        if len(self._timers) > self._heap_limit:
            self._compact_timers()

    def _compact_timers(self) -> None:
        shoppers = self._shoppers
        live = [
            timer
            for timer in self._timers
            if shoppers.get(timer[2]) is timer[3]
            and (timer[4] == 0 or (timer[4] == timer[3].pending_token and timer[3].pending is not None))
        ]
        heapq.heapify(live)
        self._timers = live
        self._heap_limit = 2 * max(len(live), self._settings.max_tracked) + _HEAP_SLACK

    def _unknown_scanner(self, scanner: str) -> None:
        self._counts["unknown_scanner"] += 1
        if not self._warned_unknown:
            self._warned_unknown = True
            _log.warning("sighting from scanner %r, which maps to no zone; ignored and counted", scanner)
