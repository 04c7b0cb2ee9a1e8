"""The store's own fixed beacons: which zone each anchors, when it was last heard, its TLM health."""

from __future__ import annotations

from dataclasses import dataclass

from edge.clock import Clock
from edge.config.ble import BeaconSettings


@dataclass(slots=True)
class _Heard:
    settings: BeaconSettings
    last_mono: float | None = None
    rssi: int | None = None
    scanner: str | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None


@dataclass(slots=True, frozen=True)
class BeaconStats:
    """One store beacon as gateway/health shows it: where it is, when it was last heard, its battery."""

    name: str
    zone: str
    last_seen_age_s: float | None  # None: never heard since the start
    missing: bool
    rssi: int | None
    scanner: str | None
    battery_mv: int | None  # Eddystone TLM only
    temperature_c: float | None


class BeaconRegistry:
    """Known store beacons only; anything else is not a store beacon and is never remembered here."""

    def __init__(self, beacons: list[BeaconSettings], clock: Clock) -> None:
        self._clock = clock
        self._by_key = {beacon.key: _Heard(beacon) for beacon in beacons}
        # A store beacon's address is the store's own hardware, so keeping it is fine; it links a TLM
        # frame (which carries no id) to the UID frame sent from the same address.
        self._by_address: dict[str, _Heard] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def zone_of(self, key: str) -> str | None:
        heard = self._by_key.get(key)
        return heard.settings.zone if heard else None

    def seen(self, key: str, address: str | None, scanner: str, rssi: int, at_mono: float) -> bool:
        """Record a sighting of ``key``; False (and nothing kept) if it is not one of the store's beacons."""
        heard = self._by_key.get(key)
        if heard is None:
            return False
        heard.last_mono, heard.rssi, heard.scanner = at_mono, rssi, scanner
        if address is not None:  # remote scanners report ids, not addresses
            self._by_address[address] = heard
        return True

    def telemetry(self, address: str, battery_mv: int | None, temperature_c: float | None) -> bool:
        """TLM from a known beacon's address; False if the address is not a known store beacon."""
        heard = self._by_address.get(address)
        if heard is None:
            return False
        heard.battery_mv, heard.temperature_c = battery_mv, temperature_c
        return True

    def missing(self) -> list[str]:
        now = self._clock.monotonic()
        return [
            heard.settings.name
            for heard in self._by_key.values()
            if heard.last_mono is None or now - heard.last_mono > heard.settings.missing_after_s
        ]

    def stats(self) -> tuple[BeaconStats, ...]:
        now = self._clock.monotonic()
        return tuple(
            BeaconStats(
                name=heard.settings.name,
                zone=heard.settings.zone,
                last_seen_age_s=None if heard.last_mono is None else round(now - heard.last_mono, 1),
                missing=heard.last_mono is None or now - heard.last_mono > heard.settings.missing_after_s,
                rssi=heard.rssi,
                scanner=heard.scanner,
                battery_mv=heard.battery_mv,
                temperature_c=heard.temperature_c,
            )
            for heard in self._by_key.values()
        )
