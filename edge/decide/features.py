"""Model inputs: the fixed feature list and the builder that turns a context plus a catalog into a matrix.

One row per offer; the offer columns are computed once per catalog, the context columns per decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from edge.decide.basket import CATEGORY_PREFIX, EMPTY_RULES, SKU_PREFIX, BasketRules
from edge.decide.catalog import CATEGORIES
from edge.decide.manifest import CONTEXT_NAMES, FEATURE_NAMES, N_FEATURES

if TYPE_CHECKING:
    from edge.decide.catalog import Catalog, Offer
    from edge.events import DecisionContext, Weather

_N_CONTEXT: Final = len(CONTEXT_NAMES)
_AFFINITY: Final = FEATURE_NAMES.index("affinity")
_BASKET: Final = FEATURE_NAMES.index("basket_complement")
_TREND: Final = FEATURE_NAMES.index("trend_share")
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
# Temperature: clamped to what a store's weather can be, then centred and scaled to about -3.5..2.5.
_TEMP_MIN: Final = -20.0
_TEMP_MAX: Final = 40.0
_TEMP_CENTRE: Final = 15.0
_TEMP_SCALE: Final = 10.0
_NO_WEATHER: Final = (0.0, 0.0, 0.0)  # weather_known, temp_scaled, precipitation
# A store without trends (no sales yet, none computed): every category the same share, so the column says
# "nothing stands out" (0 would say "this category does not sell here", which the data did not say).
UNIFORM_SHARE: Final = 1.0 / len(CATEGORIES)
MAX_BASKET: Final = 64  # basket SKUs looked at per decision (the context bounds the cart anyway)

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


def weather_columns(weather: Weather | None) -> tuple[float, float, float]:
    """(weather_known, temp_scaled, precipitation); unknown weather (None, or a non-finite temperature) is
    (0, 0, 0), never an older value."""
    if weather is None:
        return _NO_WEATHER
    raw: object = getattr(weather, "temp_c", None)  # not a Weather at all: unknown
    if isinstance(raw, float):
        temp = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        try:
            temp = float(raw)
        except OverflowError:
            return _NO_WEATHER
    else:
        return _NO_WEATHER
    if not math.isfinite(temp):
        return _NO_WEATHER
    temp = min(max(temp, _TEMP_MIN), _TEMP_MAX)
    wet = getattr(weather, "precipitation", False) is True
    return (1.0, (temp - _TEMP_CENTRE) / _TEMP_SCALE, 1.0 if wet else 0.0)


def trend_values(trends: Mapping[str, float] | None) -> tuple[float, ...]:
    """Per category (CATEGORIES order) the share in [0, 1]; no trends (None or empty) -> the uniform share.

    A category the mapping does not name sold nothing (0); an ill-typed or non-finite share counts as 0.
    """
    if trends is None or not (trends.__class__ is dict or isinstance(trends, Mapping)) or not trends:
        return (UNIFORM_SHARE,) * len(CATEGORIES)
    try:
        raw = [trends.get(category, 0.0) for category in CATEGORIES]
    except Exception:  # noqa: BLE001 - a hostile Mapping explains nothing; the decision goes on
        return (UNIFORM_SHARE,) * len(CATEGORIES)
    return tuple(v if v.__class__ is float and 0.0 <= v <= 1.0 else _unit(v) for v in raw)


Complements = Mapping[str, FloatMatrix]  # basket SKU -> its [N] basket_complement column


def compile_complements(rules: BasketRules, offers: Sequence[Offer]) -> dict[str, FloatMatrix]:
    """Per basket SKU, the [N] ``basket_complement`` column it alone gives (rows = ``offers``).

    A row's value is the best confidence of a rule whose antecedent is the SKU (``sku:S``) or its category
    (``cat:C``; the category from the rules' SKU table, else from a catalog offer listing the SKU) and whose
    consequent is what the offer promotes: one of its ``skus`` when some rule names one of them, else its
    category. SKUs whose column would be all 0 are left out, so an unknown SKU costs one dict miss.
    """
    category_of: dict[str, str] = {}
    for offer in offers:
        for sku in offer.skus:
            category_of.setdefault(sku, offer.category)
    category_of.update(rules.skus)
    consequents = {rule.consequent for rule in rules.rules}
    targets: list[frozenset[str]] = []
    for offer in offers:
        by_sku = frozenset(SKU_PREFIX + sku for sku in offer.skus) & consequents
        targets.append(by_sku or frozenset({CATEGORY_PREFIX + offer.category}))
    by_antecedent: dict[str, npt.NDArray[np.float32]] = {}
    for rule in rules.rules:
        column = by_antecedent.get(rule.antecedent)
        if column is None:
            column = by_antecedent[rule.antecedent] = np.zeros(len(offers), dtype=np.float32)
        for row, wanted in enumerate(targets):
            if rule.consequent in wanted and rule.confidence > column[row]:
                column[row] = rule.confidence
    compiled: dict[str, npt.NDArray[np.float32]] = {}
    for sku in {*category_of, *(a[len(SKU_PREFIX) :] for a in by_antecedent if a.startswith(SKU_PREFIX))}:
        parts = [
            part
            for part in (
                by_antecedent.get(SKU_PREFIX + sku),
                by_antecedent.get(CATEGORY_PREFIX + category_of[sku]) if sku in category_of else None,
            )
            if part is not None
        ]
        if parts:
            column = np.maximum.reduce(parts) if len(parts) > 1 else parts[0].copy()
            if column.any():
                column.flags.writeable = False
                compiled[sku] = column
    return compiled


class FeatureBuilder:
    """Builds the [N, F] float32 matrix for a fixed sequence of offers.

    ``fill`` writes into one reusable buffer (the engine is thread-confined and consumes it at once);
    ``build`` returns a fresh copy for everyone else. ``rules`` are the basket rules ``build`` and ``fill``
    use unless ``fill`` is given other compiled ones (the engine passes its model's: ``compile``).
    """

    __slots__ = (
        "_buf",
        "_category_of_row",
        "_complements",
        "_last_had_affinity",
        "_last_had_basket",
        "_offers",
        "_trends",
        "_trends_src",
        "_weather",
        "_weather_src",
        "offer_ids",
        "resolver",
    )

    def __init__(
        self,
        offers: Catalog | Sequence[Offer],
        tz: str | ZoneInfo = "UTC",
        rules: BasketRules = EMPTY_RULES,
    ) -> None:
        rows = list(offers) if isinstance(offers, Sequence) else list(offers.offers)
        self._offers = tuple(rows)
        self.offer_ids: tuple[str, ...] = tuple(offer.id for offer in rows)
        self.resolver = LocalTimeResolver(tz)
        self._category_of_row = np.array([_CATEGORY_INDEX[offer.category] for offer in rows], dtype=np.intp)
        buf = np.zeros((len(rows), N_FEATURES), dtype=np.float32)
        buf[:, _VALUE] = [math.log1p(offer.value) for offer in rows]
        buf[:, _DISCOUNT] = [offer.discount for offer in rows]
        buf[:, _TREND] = UNIFORM_SHARE
        buf[np.arange(len(rows)), _ONE_HOT + self._category_of_row] = 1.0
        self._buf = buf
        self._last_had_affinity = False
        self._last_had_basket = False
        self._trends: tuple[float, ...] = (UNIFORM_SHARE,) * len(CATEGORIES)
        self._trends_src: object = None  # the last read-only trends mapping (its shares are self._trends)
        self._weather: tuple[float, float, float] = _NO_WEATHER
        self._weather_src: object = None  # the last Weather (frozen: the same object, the same columns)
        self._complements = self.compile(rules)

    def __len__(self) -> int:
        return len(self.offer_ids)

    @property
    def buffer(self) -> FloatMatrix:
        """The [N, F] matrix ``fill`` writes into (C-contiguous, lives as long as the builder)."""
        return self._buf

    def compile(self, rules: BasketRules) -> Complements:
        """``rules`` against this builder's offers, for ``fill(..., complements=)`` (a few ms; once per model)."""
        return compile_complements(rules, self._offers)

    def fill(
        self,
        profile: object,
        audience: object,
        when: LocalTime,
        weather: Weather | None = None,
        basket: Sequence[str] = (),
        trends: Mapping[str, float] | None = None,
        complements: Complements | None = None,
    ) -> FloatMatrix:
        """Write the context columns into the shared buffer and return it (valid until the next call).

        ``basket`` is used as given: the caller passes it only where the shopper's consent allows.
        """
        buf = self._buf
        # The store's trends change a few times a day, the weather every few minutes: usually the same
        # objects as last time. A read-only mapping (the context service's) is trusted by identity.
        if trends is not self._trends_src or trends is None or trends.__class__ is not MappingProxyType:
            shares = trend_values(trends)
            if shares != self._trends:
                buf[:, _TREND] = np.array(shares, dtype=np.float32).take(self._category_of_row)
                self._trends = shares
            self._trends_src = trends
        if basket:
            self._fill_basket(basket, self._complements if complements is None else complements)
        elif self._last_had_basket:
            buf[:, _BASKET] = 0.0
            self._last_had_basket = False
        minute = when.minute
        weekend = 1.0 if when.weekday >= _WEEKEND_FROM else 0.0
        if weather is not self._weather_src:
            self._weather = weather_columns(weather)
            self._weather_src = weather
        known, temp, wet = self._weather
        if not (profile.__class__ is dict or isinstance(profile, Mapping)):
            buf[:, :_N_CONTEXT] = (
                _HOUR_SIN[minute],
                _HOUR_COS[minute],
                weekend,
                _log1p(audience, _MAX_AUDIENCE),
                0.0,
                0.0,
                known,
                temp,
                wet,
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
            known,
            temp,
            wet,
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

    def _fill_basket(self, basket: object, complements: Complements) -> None:
        if not (basket.__class__ is tuple or isinstance(basket, Sequence)):
            basket = ()  # an odd context: no basket rather than a failed decision
        get = complements.get
        found = [
            column for sku in basket[:MAX_BASKET] if sku.__class__ is str and (column := get(sku)) is not None
        ]
        if found:
            self._buf[:, _BASKET] = found[0] if len(found) == 1 else np.maximum.reduce(found)
            self._last_had_basket = True
        elif self._last_had_basket:
            self._buf[:, _BASKET] = 0.0
            self._last_had_basket = False

    def build(self, ctx: DecisionContext, when: LocalTime | None = None) -> FloatMatrix:
        """A fresh matrix for ``ctx`` (its profile and basket used as given; consent is the caller's business)."""
        if when is None:
            when = self.resolver.resolve(ctx.at_wall)
        return self.fill(ctx.profile, ctx.audience, when, ctx.weather, ctx.basket, ctx.trends).copy()


def build_features(
    offers: Catalog | Sequence[Offer],
    ctx: DecisionContext,
    tz: str | ZoneInfo = "UTC",
    rules: BasketRules = EMPTY_RULES,
) -> FloatMatrix:
    """Pure one-shot form of ``FeatureBuilder(offers, tz, rules).build(ctx)``: [len(offers), N_FEATURES]."""
    return FeatureBuilder(offers, tz, rules).build(ctx)
