"""Model inputs: the fixed feature list and the builder that turns a context plus a catalog into a matrix.

One row per offer; the offer columns are computed once per catalog, the context columns per decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, get_args
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from storecontract.offers import Category

if TYPE_CHECKING:
    from edge.decide.catalog import Catalog, Offer
    from edge.events import DecisionContext

# Order matters: it is the order of the one-hot columns the shipped model was trained on (the contract's).
CATEGORIES: Final[tuple[str, ...]] = get_args(Category)

# Context columns first (one value broadcast to every row), then per-offer columns, then the one-hot block.
_CONTEXT_NAMES: Final = ("hour_sin", "hour_cos", "weekend", "audience_log", "personalized", "visits_log")
_OFFER_NAMES: Final = ("affinity", "offer_value_log", "offer_discount")
FEATURE_NAMES: Final[tuple[str, ...]] = (
    *_CONTEXT_NAMES,
    *_OFFER_NAMES,
    *(f"cat_{category}" for category in CATEGORIES),
)
N_FEATURES: Final = len(FEATURE_NAMES)
_N_CONTEXT: Final = len(_CONTEXT_NAMES)
_AFFINITY: Final = FEATURE_NAMES.index("affinity")
_VALUE: Final = FEATURE_NAMES.index("offer_value_log")
_DISCOUNT: Final = FEATURE_NAMES.index("offer_discount")
_ONE_HOT: Final = FEATURE_NAMES.index(f"cat_{CATEGORIES[0]}")
_CATEGORY_INDEX: Final[dict[str, int]] = {category: i for i, category in enumerate(CATEGORIES)}
_ZEROS: Final = (0.0,) * len(CATEGORIES)
_SMALL: Final = 256  # counts below this (audiences, visits) take log1p from a table
_LOG1P_SMALL: Final = [
    math.log1p(i) for i in range(_SMALL)
]  # default affinity of a category the profile does not mention

# Profiles come from the cloud and may be stale or odd; these bounds keep every feature finite and in the
# range the model saw in training instead of trusting the payload.
_MAX_VISITS: Final = 1_000_000.0  # more visits than any shopper makes in a lifetime
_MAX_AUDIENCE: Final = 10_000.0  # more people than fit in front of one screen
_MINUTES_PER_DAY: Final = 1440
_WEEKEND_FROM: Final = 5  # Saturday, with Monday = 0 as in datetime.weekday()

FloatMatrix = npt.NDArray[np.float32]

# Time of day on the unit circle, per minute of the local day (23:59 sits next to 00:00).
_HOUR_SIN: Final = [math.sin(2.0 * math.pi * m / _MINUTES_PER_DAY) for m in range(_MINUTES_PER_DAY)]
_HOUR_COS: Final = [math.cos(2.0 * math.pi * m / _MINUTES_PER_DAY) for m in range(_MINUTES_PER_DAY)]


@dataclass(slots=True, frozen=True)
class LocalTime:
    """A wall-clock instant seen in the store's time zone, at minute resolution."""

    weekday: int  # Monday = 0
    minute: int  # minute of the local day, 0..1439
    day: int  # proleptic Gregorian ordinal of the local date: changes at local midnight


class LocalTimeResolver:
    """Unix seconds -> store-local time, remembering the last minute (decisions cluster in time)."""

    __slots__ = ("_last", "_last_key", "tz")

    def __init__(self, tz: str | ZoneInfo = "UTC") -> None:
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        self._last_key: int | None = None
        self._last: LocalTime | None = None

    def resolve(self, at_wall: float) -> LocalTime:
        """Raise ValueError/OverflowError/OSError for instants datetime cannot represent."""
        # Zone offsets change on whole minutes, so one UTC minute maps to one local minute. Rounded to the
        # microsecond first, as datetime does, so 59.9999999 s falls in the same minute both ways.
        key = math.floor(round(at_wall, 6) / 60.0)
        if key == self._last_key and self._last is not None:
            return self._last
        stamp = datetime.fromtimestamp(key * 60.0, tz=self.tz)
        local = LocalTime(stamp.weekday(), stamp.hour * 60 + stamp.minute, stamp.toordinal())
        self._last_key = key
        self._last = local
        return local


def _finite(value: Any) -> float:
    """A JSON-ish value as a finite float; anything else (str, None, bool, nan, huge int) counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    try:
        number = float(value)
    except OverflowError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _log1p(value: object, ceiling: float) -> float:
    """log1p of a count clamped to [0, ceiling]; small ints (the usual audience and visits) from a table."""
    if value.__class__ is int and 0 <= value < _SMALL:
        return _LOG1P_SMALL[value]
    return math.log1p(min(max(_finite(value), 0.0), ceiling))


def _unit(value: Any) -> float:
    """An affinity clamped to [0, 1]; missing or ill-typed -> 0."""
    return min(max(_finite(value), 0.0), 1.0)


class FeatureBuilder:
    """Builds the [N, F] float32 matrix for a fixed sequence of offers.

    ``fill`` writes into one reusable buffer (the engine is thread-confined and consumes it at once);
    ``build`` returns a fresh copy for everyone else.
    """

    __slots__ = ("_buf", "_category_of_row", "_last_had_affinity", "offer_ids", "resolver")

    def __init__(self, offers: Catalog | Sequence[Offer], tz: str | ZoneInfo = "UTC") -> None:
        rows = list(offers) if isinstance(offers, Sequence) else list(offers.offers)
        self.offer_ids: tuple[str, ...] = tuple(offer.id for offer in rows)
        self.resolver = LocalTimeResolver(tz)
        self._category_of_row = np.array([_CATEGORY_INDEX[offer.category] for offer in rows], dtype=np.intp)
        buf = np.zeros((len(rows), N_FEATURES), dtype=np.float32)
        buf[:, _VALUE] = [math.log1p(offer.value) for offer in rows]
        buf[:, _DISCOUNT] = [offer.discount for offer in rows]
        buf[np.arange(len(rows)), _ONE_HOT + self._category_of_row] = 1.0
        self._buf = buf
        self._last_had_affinity = False

    def __len__(self) -> int:
        return len(self.offer_ids)

    @property
    def buffer(self) -> FloatMatrix:
        """The [N, F] matrix ``fill`` writes into (C-contiguous, lives as long as the builder)."""
        return self._buf

    def fill(self, profile: object, audience: object, when: LocalTime) -> FloatMatrix:
        """Write the context columns into the shared buffer and return it (valid until the next call)."""
        minute = when.minute
        weekend = 1.0 if when.weekday >= _WEEKEND_FROM else 0.0
        buf = self._buf
        if not (profile.__class__ is dict or isinstance(profile, Mapping)):
            buf[:, :_N_CONTEXT] = (
                _HOUR_SIN[minute],
                _HOUR_COS[minute],
                weekend,
                _log1p(audience, _MAX_AUDIENCE),
                0.0,
                0.0,
            )
            if self._last_had_affinity:
                buf[:, _AFFINITY] = 0.0
                self._last_had_affinity = False
            return buf
        visits = _log1p(profile.get("visits", 0), _MAX_VISITS)
        buf[:, :_N_CONTEXT] = (
            _HOUR_SIN[minute],
            _HOUR_COS[minute],
            weekend,
            _log1p(audience, _MAX_AUDIENCE),
            1.0,
            visits,
        )
        affinity = profile.get("affinity")
        if (affinity.__class__ is dict or isinstance(affinity, Mapping)) and affinity:
            # The common case (a float already in [0, 1]) inline; _unit handles everything else.
            raw = map(affinity.get, CATEGORIES, _ZEROS)
            values = [v if v.__class__ is float and 0.0 <= v <= 1.0 else _unit(v) for v in raw]
            buf[:, _AFFINITY] = np.array(values, dtype=np.float32).take(self._category_of_row)
            self._last_had_affinity = True
        elif self._last_had_affinity:
            buf[:, _AFFINITY] = 0.0
            self._last_had_affinity = False
        return buf

    def build(self, ctx: DecisionContext, when: LocalTime | None = None) -> FloatMatrix:
        """A fresh matrix for ``ctx`` (its profile used as given; consent is the caller's business)."""
        if when is None:
            when = self.resolver.resolve(ctx.at_wall)
        return self.fill(ctx.profile, ctx.audience, when).copy()


def build_features(
    offers: Catalog | Sequence[Offer], ctx: DecisionContext, tz: str | ZoneInfo = "UTC"
) -> FloatMatrix:
    """Pure one-shot form of ``FeatureBuilder(offers, tz).build(ctx)``: [len(offers), N_FEATURES] float32."""
    return FeatureBuilder(offers, tz).build(ctx)
