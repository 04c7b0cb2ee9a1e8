"""The store's weather: one reading's fields checked (the cloud's `weather` change and the local sensor's
``…/context/weather`` alike), the sensor's payload parsed, and the newest reading held for decisions, judged
stale by its own observed time against the injected clock (stale: no weather, never an old value)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from edge.clock import Clock
from edge.events import Weather
from edge.ledger.context import WEATHER_AHEAD_S
from edge.sources.payloads import Rejected, has_bad_ts, json_envelope, parse_utc
from edge.sources.rejections import WeatherReject

# Beyond the coldest (-89 °C) and hottest (57 °C) air ever measured, by a margin: a value outside is a unit
# mistake (Fahrenheit, Kelvin) or junk, not weather.
MIN_TEMP_C: Final = -90.0
MAX_TEMP_C: Final = 60.0
# How far ahead of the gateway's clock an observation may be dated: store devices without NTP drift by
# seconds a day, the cloud's clock is NTP's; minutes ahead is a wrong clock, and a reading from the future
# would outrank every true one until that time came.
MAX_AHEAD_S: Final = WEATHER_AHEAD_S


class WeatherSource(StrEnum):
    CLOUD = "cloud"
    SENSOR = "sensor"


@dataclass(slots=True, frozen=True)
class Reading:
    """A reading's fields as checked: what `store_context` keeps and `Weather` is made of."""

    temp_c: float
    precipitation: bool
    forecast_max_c: float | None
    observed_wall: float

    def weather(self, source: WeatherSource) -> Weather:
        return Weather(self.temp_c, self.precipitation, self.forecast_max_c, self.observed_wall, source.value)

    def data(self) -> dict[str, Any]:
        """The JSON kept in `store_context.data` (the observed time has its own column)."""
        return {
            "temp_c": self.temp_c,
            "precipitation": self.precipitation,
            "forecast_max_c": self.forecast_max_c,
        }


def _temperature(value: object) -> float | None:
    """A finite JSON number (a bool is not one) in MIN_TEMP_C..MAX_TEMP_C, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compared before any float conversion: a huge JSON integer must not overflow it. NaN fails too.
    if not MIN_TEMP_C <= value <= MAX_TEMP_C:
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def read_fields(body: dict[str, Any]) -> Reading | WeatherReject:
    """``temp_c``, ``precipitation``, ``forecast_max_c`` (optional) and ``observed_at`` checked, or why not."""
    temp = _temperature(body.get("temp_c"))
    if temp is None:
        return WeatherReject.BAD_TEMP
    precipitation = body.get("precipitation")
    if not isinstance(precipitation, bool):
        return WeatherReject.BAD_PRECIPITATION
    forecast: float | None = None
    if body.get("forecast_max_c") is not None:
        forecast = _temperature(body["forecast_max_c"])
        if forecast is None:
            return WeatherReject.BAD_FORECAST
    observed = parse_utc(body.get("observed_at"))
    if observed is None:
        return WeatherReject.BAD_OBSERVED_AT
    return Reading(temp, precipitation, forecast, observed)


def parse_sensor(payload: bytes) -> Reading | Rejected:
    """A local sensor's ``…/context/weather`` (docs/mqtt.md): ``v`` exactly 1, the reading's fields."""
    body = json_envelope(payload)
    if isinstance(body, Rejected):
        return body
    if has_bad_ts(body):
        return Rejected(WeatherReject.BAD_TS)
    fields = read_fields(body)
    return Rejected(fields) if isinstance(fields, WeatherReject) else fields


@dataclass(slots=True, frozen=True)
class WeatherStats:
    known: bool  # a reading fresh enough for decisions now
    source: str | None  # of the newest reading held, fresh or not
    age_s: float | None  # since it was observed
    readings: dict[str, int]  # taken, by source
    superseded: int  # older than (or as old as) the reading held: ignored
    future: int  # dated beyond MAX_AHEAD_S ahead of the gateway's clock: refused


class WeatherBoard:
    """The newest reading, whatever its source; ``now`` gives it only while fresh. Memory; the caller persists."""

    def __init__(self, clock: Clock, stale_s: float) -> None:
        self._clock = clock
        self._stale_s = stale_s
        self._latest: Weather | None = None
        self._readings = dict.fromkeys((source.value for source in WeatherSource), 0)
        self._superseded = 0
        self._future = 0

    def is_newer(self, reading: Reading) -> bool:
        latest = self._latest
        return latest is None or reading.observed_wall > latest.observed_wall

    def too_far_ahead(self, reading: Reading) -> bool:
        """Dated beyond the allowed skew ahead of the clock: refused (counted)."""
        if reading.observed_wall > self._clock.wall() + MAX_AHEAD_S:
            self._future += 1
            return True
        return False

    def offer(self, reading: Reading, source: WeatherSource) -> bool:
        """Hold ``reading`` if it is newer than what is held (ties keep the held one); True if it was."""
        if not self.is_newer(reading):
            self._superseded += 1
            return False
        self._latest = reading.weather(source)
        self._readings[source.value] += 1
        return True

    def now(self, now_wall: float) -> Weather | None:
        """The weather a decision at ``now_wall`` sees: the newest reading, or None once it is stale (or
        dated ahead of a clock that stepped back since)."""
        latest = self._latest
        if latest is None:
            return None
        age = now_wall - latest.observed_wall
        return latest if -MAX_AHEAD_S <= age <= self._stale_s else None

    def stats(self) -> WeatherStats:
        latest, now = self._latest, self._clock.wall()
        return WeatherStats(
            known=self.now(now) is not None,
            source=None if latest is None else latest.source,
            age_s=None if latest is None else round(now - latest.observed_wall, 1),
            readings=dict(sorted(self._readings.items())),
            superseded=self._superseded,
            future=self._future,
        )
