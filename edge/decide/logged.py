"""The decision's logged context (``decisions.context``): what the model saw apart from the catalog, as bytes.

Enough to rebuild, with a catalog, the feature matrix of any offer through ``FeatureBuilder.build``: an
off-policy evaluation of a candidate model (``edge/measure/ope.py``) scores every logged decision again. The
encoding holds the ``DecisionContext`` fields, not feature columns, so it does not change when the features do.

Layout (little-endian), version 1::

    version u8 | flags u8 | audience | [weather] | [trends] | [visits | affinity] | [basket]

- a count (audience, visits) is ``u16`` when it is an ``int`` in 0..65535 (flag ``*_WIDE`` off), else ``f64``;
- weather: ``temp_c f64``, ``forecast_max_c f64`` when known (flag); precipitation is a flag;
- trends (every category, or none for an empty mapping) and affinity: a ``u8`` mask over ``CATEGORIES``, then
  one ``f64`` per set bit, in category order;
- basket: ``u8`` count, then per SKU ``u8`` length and its UTF-8 bytes (at most ``MAX_BASKET`` SKUs of at most
  255 bytes; a longer basket is cut and flagged ``BASKET_CUT``: its features cannot be rebuilt exactly).

Values keep what the feature code reads (``f64``, so a band edge or a float32 cast lands where it did); a value
the feature code would read as 0 (a bool, a string, None) is stored as NaN, which it also reads as 0. A
profile is logged only when the decision used it (``personalized``), like the features themselves.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from edge.decide.catalog import CATEGORIES
from edge.events import DecisionContext, Weather

VERSION: Final = 1
# Bits of the flags byte.
PERSONAL: Final = 0x01  # the profile (visits, affinity) was used and follows
WEATHER: Final = 0x02
PRECIPITATION: Final = 0x04
FORECAST: Final = 0x08
TRENDS: Final = 0x10
BASKET_CUT: Final = 0x20  # the basket was longer than MAX_BASKET (or a SKU longer than 255 bytes)
AUDIENCE_WIDE: Final = 0x40
VISITS_WIDE: Final = 0x80

# A basket is a shopper's cart or their sale earlier in the visit: a few to a few tens of SKUs. 64 is what a
# basket may hold (`[context] cart_max_items` is at most 64) and what the features look at (features.MAX_BASKET).
MAX_BASKET: Final = 64
_MAX_SKU_BYTES: Final = 255  # a u8 length; POS SKUs are at most 64 characters
_U16_MAX: Final = 0xFFFF
_ALL_CATEGORIES: Final = (1 << len(CATEGORIES)) - 1
_MASKS: Final = tuple(bytes((mask,)) for mask in range(256))  # every byte value, also a u8 length
_NONE: Final = _MASKS[0]  # an empty mask, an empty basket
_CATEGORY_BITS: Final = tuple((1 << i, category) for i, category in enumerate(CATEGORIES))
if len(CATEGORIES) > 8:
    raise RuntimeError("a category mask is one byte: more than 8 categories need another layout version")

_HEAD: Final = struct.Struct("<BB")
_HEADS: Final = tuple(_HEAD.pack(VERSION, flags) for flags in range(256))
_U16: Final = struct.Struct("<H")
_F64: Final = struct.Struct("<d")
_F64X2: Final = struct.Struct("<dd")
_F64S: Final = tuple(struct.Struct(f"<{n}d") for n in range(len(CATEGORIES) + 1))  # k values in one pack
_NAN: Final = float("nan")
_DEFAULT_VISITS: Final = 0


class ContextError(ValueError):
    """A logged context that cannot be decoded (truncated, another version, trailing bytes)."""


@dataclass(slots=True, frozen=True)
class LoggedContext:
    """A decoded context: the ``DecisionContext`` to rebuild features from, and whether that is exact."""

    context: DecisionContext
    personalized: bool
    complete: bool  # False: the basket was cut when logged, so basket features may differ


def _number(value: object) -> float:
    """What the feature code reads of a JSON-ish number, as a float: non-numbers (bools too) become NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _NAN
    try:
        return float(value)
    except OverflowError:
        return _NAN


def _categories(values: Mapping[Any, Any]) -> bytes:
    """A category mask and the value of each category ``values`` names, in category order."""
    mask = 0
    numbers = []
    get = values.get
    for bit, category in _CATEGORY_BITS:
        value = get(category)
        if value is not None:
            mask |= bit
            # The usual float inline; _number for everything else.
            numbers.append(value if value.__class__ is float else _number(value))
    return _MASKS[mask] + _F64S[len(numbers)].pack(*numbers)


class ContextEncoder:
    """Encodes decision contexts; remembers the last weather and trends (the store's, shared by decisions).

    Thread-confined like the engine that owns it.
    """

    __slots__ = ("_trends", "_trends_bytes", "_weather", "_weather_bytes", "_weather_flags")

    def __init__(self) -> None:
        self._weather: Weather | None = None
        self._weather_bytes = b""
        self._weather_flags = 0
        self._trends: Mapping[str, float] | None = None
        self._trends_bytes = b""

    def encode(self, ctx: DecisionContext, *, personalized: bool) -> bytes:
        """The context as the model saw it: the profile and the basket only when ``personalized`` (the decision
        used them; the engine passes neither otherwise)."""
        # On the decision's path: the common forms (small int counts, float affinities) inline, one join.
        audience = ctx.audience
        if type(audience) is int and 0 <= audience <= _U16_MAX:
            flags = 0
            parts = [_U16.pack(audience)]
        else:
            flags = AUDIENCE_WIDE
            parts = [_F64.pack(_number(audience))]
        weather = ctx.weather
        if weather is not None:
            if weather is not self._weather:
                self._weather_bytes, self._weather_flags = _weather(weather)
                self._weather = weather
            flags |= self._weather_flags
            parts.append(self._weather_bytes)
        trends = ctx.trends
        if trends is not None:
            flags |= TRENDS
            if trends is not self._trends:
                self._trends_bytes = _trends(trends)
                self._trends = trends
            parts.append(self._trends_bytes)
        profile = ctx.profile
        if personalized and (profile.__class__ is dict or isinstance(profile, Mapping)):
            flags |= PERSONAL
            visits = profile.get("visits", _DEFAULT_VISITS)
            if type(visits) is int and 0 <= visits <= _U16_MAX:
                parts.append(_U16.pack(visits))
            else:
                flags |= VISITS_WIDE
                parts.append(_F64.pack(_number(visits)))
            affinity = profile.get("affinity")
            if (affinity.__class__ is dict or isinstance(affinity, Mapping)) and affinity:
                parts.append(_categories(affinity))
            else:
                parts.append(_NONE)
            basket = ctx.basket
            if basket:
                encoded, cut = _basket(basket)
                parts.append(encoded)
                if cut:
                    flags |= BASKET_CUT
            else:
                parts.append(_NONE)
        else:
            parts.append(_NONE)
        return _HEADS[flags] + b"".join(parts)


def encode_context(ctx: DecisionContext, *, personalized: bool) -> bytes:
    """One-shot ``ContextEncoder().encode``."""
    return ContextEncoder().encode(ctx, personalized=personalized)


def _weather(weather: Weather) -> tuple[bytes, int]:
    flags = WEATHER
    if weather.precipitation is True:  # as the feature code reads it: only True is rain
        flags |= PRECIPITATION
    if weather.forecast_max_c is None:
        return _F64.pack(_number(weather.temp_c)), flags
    return _F64X2.pack(_number(weather.temp_c), _number(weather.forecast_max_c)), flags | FORECAST


def _trends(trends: Mapping[str, float]) -> bytes:
    """Every category's share (a missing one as 0.0, as the feature code reads it) unless the mapping is
    empty: a mapping naming no known category still differs from no trends (all 0, not the uniform share)."""
    if not isinstance(trends, Mapping) or not trends:
        return _NONE
    return _MASKS[_ALL_CATEGORIES] + _F64S[len(CATEGORIES)].pack(
        *(_number(trends.get(category, 0.0)) for category in CATEGORIES)
    )


def _basket(basket: tuple[str, ...]) -> tuple[bytes, bool]:
    """The basket's bytes, and whether it had to be cut."""
    kept = [
        encoded
        for sku in basket[:MAX_BASKET]
        if sku.__class__ is str and len(encoded := sku.encode()) <= _MAX_SKU_BYTES
    ]
    # _MASKS doubles as the table of one-byte lengths.
    return _MASKS[len(kept)] + b"".join([_MASKS[len(sku)] + sku for sku in kept]), len(kept) != len(basket)


def without_personal(blob: bytes | None) -> bytes | None:
    """The context without its shopper's parts (profile, basket): for a decision whose shopper is not kept.

    Only the store's parts remain (audience, weather, trends), with ``PERSONAL`` off and an empty basket; a
    blob that does not decode is dropped (None) rather than kept with personal data in it.
    """
    if blob is None:
        return None
    try:
        reader = _Reader(blob)
        flags = reader.flags
        reader.skip_store_part()
        store_end = reader.pos
        if not flags & PERSONAL and reader.byte() == 0:
            return blob  # nothing personal in it
    except ContextError:
        return None
    head = _HEAD.pack(VERSION, flags & ~(PERSONAL | VISITS_WIDE | BASKET_CUT))
    return head + blob[_HEAD.size : store_end] + b"\x00"


def names_shopper(blob: bytes | None) -> bool:
    """Whether a logged context holds a shopper's own data (their profile or basket): for their export."""
    if blob is None:
        return False
    try:
        reader = _Reader(blob)
        reader.skip_store_part()
        return bool(reader.flags & PERSONAL) or reader.byte() != 0
    except ContextError:
        return True  # unreadable: list it rather than hide it


class _Reader:
    __slots__ = ("blob", "flags", "pos")

    def __init__(self, blob: bytes) -> None:
        if len(blob) < _HEAD.size:
            raise ContextError("logged context is truncated")
        version, self.flags = _HEAD.unpack_from(blob)
        if version != VERSION:
            raise ContextError(f"logged context version {version}, expected {VERSION}")
        self.blob = blob
        self.pos = _HEAD.size

    def take(self, fmt: struct.Struct) -> tuple[Any, ...]:
        end = self.pos + fmt.size
        if end > len(self.blob):
            raise ContextError("logged context is truncated")
        values = fmt.unpack_from(self.blob, self.pos)
        self.pos = end
        return values

    def byte(self) -> int:
        if self.pos >= len(self.blob):
            raise ContextError("logged context is truncated")
        value = self.blob[self.pos]
        self.pos += 1
        return value

    def count(self, wide: bool) -> float | int:
        value: float | int = self.take(_F64 if wide else _U16)[0]
        return value

    def per_category(self) -> dict[str, float]:
        mask = self.byte()
        if mask == _ALL_CATEGORIES:  # trends: every category
            return dict(zip(CATEGORIES, self.take(_F64S[len(CATEGORIES)]), strict=True))
        named = [category for bit, category in _CATEGORY_BITS if mask & bit]
        return dict(zip(named, self.take(_F64S[len(named)]), strict=True))

    def skip_store_part(self) -> None:
        """Move past the store's part (audience, weather, trends), to the profile or the basket."""
        flags = self.flags
        self.count(bool(flags & AUDIENCE_WIDE))
        if flags & WEATHER:
            self.take(_F64X2 if flags & FORECAST else _F64)
        if flags & TRENDS:
            self.per_category()


def decode_context(blob: bytes, *, display_id: str, zone: str, at_wall: float) -> LoggedContext:
    """The logged context as a ``DecisionContext`` (with the decision row's display, zone and time).

    The profile holds only what the model reads (``visits``, ``affinity``); the weather's observation time
    and source are not logged (staleness was judged before the decision) and come back as ``at_wall`` and
    ``"logged"``. Raises ``ContextError`` for a blob that does not decode.
    """
    reader = _Reader(blob)
    flags = reader.flags
    audience = reader.count(bool(flags & AUDIENCE_WIDE))
    weather = None
    if flags & WEATHER:
        if flags & FORECAST:
            temp_c, forecast = reader.take(_F64X2)
        else:
            (temp_c,), forecast = reader.take(_F64), None
        weather = Weather(temp_c, bool(flags & PRECIPITATION), forecast, at_wall, "logged")
    trends = reader.per_category() if flags & TRENDS else None
    profile: dict[str, Any] | None = None
    if flags & PERSONAL:
        profile = {"visits": reader.count(bool(flags & VISITS_WIDE))}
        affinity = reader.per_category()
        if affinity:
            profile["affinity"] = affinity
    basket = []
    for _ in range(reader.byte()):
        size = reader.byte()
        end = reader.pos + size
        if end > len(blob):
            raise ContextError("logged context is truncated")
        try:
            basket.append(blob[reader.pos : end].decode())
        except UnicodeDecodeError as exc:
            raise ContextError("logged basket SKU is not UTF-8") from exc
        reader.pos = end
    if reader.pos != len(blob):
        raise ContextError("logged context has trailing bytes")
    ctx = DecisionContext(
        display_id=display_id,
        zone=zone,
        at_wall=at_wall,
        audience=audience,  # type: ignore[arg-type] # a wide count is a float, as the model read it
        profile=profile,
        weather=weather,
        basket=tuple(basket),
        trends=trends,
    )
    return LoggedContext(ctx, personalized=bool(flags & PERSONAL), complete=not flags & BASKET_CUT)


def personal_parts(blob: bytes | None) -> dict[str, Any] | None:
    """What a logged context says about its shopper (for their export), JSON-ready; None when it names them
    in nothing (no profile used, empty basket) or cannot be read."""
    if not names_shopper(blob) or blob is None:
        return None
    try:
        logged = decode_context(blob, display_id="", zone="", at_wall=0.0)
    except ContextError:
        return None
    profile = logged.context.profile or {}
    return {
        "visits": _json_number(profile.get("visits")),
        "affinity": {k: _json_number(v) for k, v in profile.get("affinity", {}).items()},
        "basket": list(logged.context.basket),
    }


def _json_number(value: Any) -> float | int | None:
    """NaN (a value the model read as 0) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value  # type: ignore[no-any-return]
