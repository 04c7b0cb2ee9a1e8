"""Which offers may be shown right now, and why not: static rules cached per situation, caps and cooldowns.

The static rules (active, zone, window, consent) depend only on (zone, minute of the week, personalized),
so their outcome is computed once per distinct situation and shared; the dynamic rules (a shopper's daily
caps, a display's cooldowns) touch the few offers recently chosen and are patched on top.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from edge.decide.catalog import Offer
from edge.decide.features import LocalTime

log = logging.getLogger(__name__)

# Rule order = precedence of the reason reported for an ineligible offer.
REASONS: Final = ("inactive", "zone", "window", "consent", "cap", "cooldown")
MINUTES_PER_DAY: Final = 1440

# Bounds on the in-memory state so an unexpected flood of ids cannot grow it without limit.
MAX_SHOPPERS: Final = 100_000  # far more shoppers than one store sees in a day; oldest evicted past it
MAX_DISPLAYS: Final = 4_096  # a store has tens of screens
MAX_ZONES: Final = 1_024  # zones come from config; unknown zone names are evaluated but not cached
# Distinct (zone, window pattern, personalized) situations: zones x a handful of window patterns x 2.
MAX_SITUATIONS: Final = 4_096

Penalty = npt.NDArray[np.float32]


@dataclass(slots=True)
class Verdict:
    """Eligibility of every offer (in engine order) at one moment. Shared between decisions: read only.

    (Not frozen: a frozen dataclass costs a microsecond to build, and one is built per decision.)
    """

    eligible: list[bool]
    reasons: list[str]  # "" when eligible, else the first rule failed
    penalty: Penalty  # 0 where the static rules pass, -inf elsewhere: added to expected values
    n_eligible: int
    blocked: list[int] = field(default_factory=list)  # also ineligible (cap, cooldown): not in penalty

    def indices(self) -> list[int]:
        return [i for i, ok in enumerate(self.eligible) if ok]


@dataclass(slots=True)
class _ShopperDay:
    day: int  # local day the counts belong to
    counts: dict[int, int] = field(default_factory=dict)  # offer index -> times chosen that day
    capped: list[int] = field(default_factory=list)  # offer indices whose count reached the cap


class Eligibility:
    """Eligibility of a fixed, ordered list of offers; thread-confined like the engine that owns it."""

    def __init__(self, offers: Sequence[Offer]) -> None:
        self.offer_ids: tuple[str, ...] = tuple(offer.id for offer in offers)
        self._index = {offer_id: i for i, offer_id in enumerate(self.offer_ids)}
        self._active = np.array([o.active for o in offers], dtype=bool)
        self._personal = np.array([o.personal for o in offers], dtype=bool)
        self._zones = [frozenset(o.zones) for o in offers]
        self._caps = [o.daily_cap_per_shopper for o in offers]
        self._cooldowns = [o.display_cooldown_s for o in offers]
        self._window_rows, self._window_row_of = _week_table(offers)
        self._zone_ok: dict[str, npt.NDArray[np.bool_]] = {}
        self._situations: dict[tuple[str, int, bool], Verdict] = {}
        self._shoppers: dict[str, _ShopperDay] = {}
        self._cooling: dict[str, dict[int, float]] = {}  # display -> offer index -> monotonic "until"
        self._latest_day: int | None = None
        self._warned_full = False

    # ----- the verdict -----
    def verdict(
        self,
        zone: str,
        when: LocalTime,
        *,
        personalized: bool,
        shopper_id: str | None,
        display_id: str,
        now: float,
    ) -> Verdict:
        row = self._window_row_of[when.weekday * MINUTES_PER_DAY + when.minute]
        base = self._situations.get((zone, row, personalized))
        if base is None:
            base = self._situation(zone, row, personalized=personalized)
        capped: list[int] = []
        if shopper_id is not None:
            self._roll_day(when.day)
            entry = self._shoppers.get(shopper_id)
            if entry is not None and entry.day == when.day:
                capped = entry.capped
        cooling = self._cooling.get(display_id)
        cool: list[int] = []
        if cooling:
            expired = [i for i, until in cooling.items() if until <= now]
            for i in expired:
                del cooling[i]
            cool = list(cooling)
        if not capped and not cool:
            return base
        return _patched(base, capped, cool)

    def _situation(self, zone: str, row: int, *, personalized: bool) -> Verdict:
        zone_ok = self._zone_ok.get(zone)
        if zone_ok is None:
            zone_ok = np.array([not zones or zone in zones for zones in self._zones], dtype=bool)
            if len(self._zone_ok) < MAX_ZONES:
                self._zone_ok[zone] = zone_ok
        window_ok = self._window_rows[row]
        consent_ok = np.ones_like(self._active) if personalized else ~self._personal
        # Reason = the first failed rule, so test the rules from last to first and let earlier ones win.
        reasons = np.full(len(self.offer_ids), "", dtype=object)
        for rule, ok in (("consent", consent_ok), ("window", window_ok), ("zone", zone_ok)):
            reasons[~ok] = rule
        reasons[~self._active] = "inactive"
        eligible = self._active & zone_ok & window_ok & consent_ok
        verdict = Verdict(
            eligible=eligible.tolist(),
            reasons=reasons.tolist(),
            penalty=np.where(eligible, 0.0, -np.inf).astype(np.float32),
            n_eligible=int(eligible.sum()),
        )
        if len(self._situations) >= MAX_SITUATIONS:
            self._situations.clear()
        self._situations[(zone, row, personalized)] = verdict
        return verdict

    # ----- counters -----
    def record(self, index: int, shopper_id: str | None, display_id: str, day: int, now: float) -> None:
        """Offer ``index`` was chosen: count it for the shopper's day and start its display cooldown."""
        if shopper_id is not None:
            entry = self._shopper_entry(shopper_id, day)
            self._set_count(entry, index, entry.counts.get(index, 0) + 1)
        cooldown = self._cooldowns[index]
        if cooldown > 0:
            cooling = self._cooling.get(display_id)
            if cooling is None:
                if len(self._cooling) >= MAX_DISPLAYS:
                    self._cooling.pop(next(iter(self._cooling)))
                cooling = self._cooling[display_id] = {}
            cooling[index] = now + cooldown

    def seed_counts(self, rows: Iterable[tuple[str, str, int]], day: int) -> int:
        """Restore today's per-shopper counts after a restart (keeps the larger count); returns rows used."""
        used = 0
        for shopper_id, offer_id, count in rows:
            index = self._index.get(offer_id)
            if index is None:
                log.debug("seed count for unknown offer %s ignored", offer_id)
                continue
            entry = self._shopper_entry(shopper_id, day)
            self._set_count(entry, index, max(entry.counts.get(index, 0), int(count)))
            used += 1
        return used

    def forget_shopper(self, shopper_id: str) -> bool:
        return self._shoppers.pop(shopper_id, None) is not None

    def shopper_counts(self, shopper_id: str) -> dict[str, int]:
        """What the engine holds about one shopper (for export): times chosen per offer on their last day."""
        entry = self._shoppers.get(shopper_id)
        if entry is None:
            return {}
        return {self.offer_ids[i]: count for i, count in sorted(entry.counts.items())}

    def _set_count(self, entry: _ShopperDay, index: int, count: int) -> None:
        entry.counts[index] = count
        if count >= self._caps[index] and index not in entry.capped:
            entry.capped.append(index)

    def _shopper_entry(self, shopper_id: str, day: int) -> _ShopperDay:
        self._roll_day(day)
        entry = self._shoppers.get(shopper_id)
        if entry is None:
            if len(self._shoppers) >= MAX_SHOPPERS:
                del self._shoppers[next(iter(self._shoppers))]
                if not self._warned_full:
                    log.warning("more than %d shoppers tracked today; forgetting the oldest", MAX_SHOPPERS)
                    self._warned_full = True
            entry = self._shoppers[shopper_id] = _ShopperDay(day)
        elif entry.day != day:
            entry.day = day
            entry.counts.clear()
            entry.capped.clear()
        return entry

    def _roll_day(self, day: int) -> None:
        """At the first decision of a new local day, drop older counters (caps are per local day)."""
        if self._latest_day is None or day > self._latest_day:
            if self._latest_day is not None:
                stale = [sid for sid, entry in self._shoppers.items() if entry.day < day]
                for sid in stale:
                    del self._shoppers[sid]
            self._latest_day = day


def _patched(base: Verdict, capped: list[int], cooling: list[int]) -> Verdict:
    """``base`` with the dynamic rules applied; cap is checked before cooldown, both after the static rules."""
    eligible = base.eligible.copy()
    reasons = base.reasons.copy()
    blocked = []
    for rule, indices in (("cap", capped), ("cooldown", cooling)):
        for i in indices:
            if eligible[i]:
                eligible[i] = False
                reasons[i] = rule
                blocked.append(i)
    return Verdict(eligible, reasons, base.penalty, base.n_eligible - len(blocked), blocked)


def _week_table(offers: Sequence[Offer]) -> tuple[list[npt.NDArray[np.bool_]], list[int]]:
    """Window-open masks for every minute of the week, as the few distinct masks plus one index per minute.

    Precomputed once per catalog so a decision looks its window mask up instead of evaluating windows.
    """
    minute_of_week = np.arange(7 * MINUTES_PER_DAY)
    weekday, minute = np.divmod(minute_of_week, MINUTES_PER_DAY)
    is_open = np.zeros((len(minute_of_week), len(offers)), dtype=bool)
    for column, offer in enumerate(offers):
        if not offer.windows:
            is_open[:, column] = True
            continue
        for window in offer.windows:
            days = np.zeros(7, dtype=bool)
            days[list(window.days)] = True
            today, yesterday = days[weekday], days[(weekday - 1) % 7]
            start, end = window.start_minute, window.end_minute
            if end > start:
                is_open[:, column] |= today & (minute >= start) & (minute < end)
            else:
                # An end at or before the start runs past midnight into the next day.
                is_open[:, column] |= (today & (minute >= start)) | (yesterday & (minute < end))
    rows, row_of = np.unique(is_open, axis=0, return_inverse=True)
    return [np.ascontiguousarray(row) for row in rows], row_of.reshape(-1).tolist()
