"""Installer tools: ``edge-gateway ble scan`` (what the gateway hears) and ``ble calibrate`` (thresholds).

Both run beside a live gateway: they open their own scanner (BlueZ allows several discovery clients)
and read consents from the ledger read-only. A device is named only if it is a configured store beacon
or a shopper whose ``presence_ble`` consent is on record; everything else prints as "anonymous", with
no address.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TextIO

from edge.clock import Clock, SystemClock
from edge.config import GatewaySettings
from edge.events import Advert, Purpose
from edge.identity.eid import EidResolver, load_eid_keys
from edge.ledger.readonly import granted
from edge.sources.ble.frames import (
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    Frame,
    IBeacon,
    parse_advert,
)
from edge.sources.ble.scanner import BleScanner

# Calibration needs enough samples for a stable median; a phone advertises every 100-1000 ms.
MIN_CALIBRATION_SAMPLES: Final = 10
# The exit threshold sits at least this far below enter: BLE RSSI at one spot wanders by several dB.
MIN_HYSTERESIS_DB: Final = 6


@dataclass(slots=True, frozen=True)
class Seen:
    kind: str
    identity: str
    rssi: int
    zone: str


class _ReadOnlyConsents:
    def __init__(self, granted: frozenset[str]) -> None:
        self._granted = granted

    def has(self, shopper_id: str, purpose: Purpose) -> bool:
        return purpose is Purpose.PRESENCE_BLE and shopper_id in self._granted

    def subscribe(self, callback: Callable[[str, Purpose, bool], None]) -> Callable[[], None]:  # noqa: ARG002
        # A snapshot for a tool run of a few seconds: changes are not followed.
        return lambda: None


class Namer:
    """Names what may be named; all else is anonymous."""

    def __init__(self, settings: GatewaySettings, clock: Clock) -> None:
        ble = settings.ble
        self._zone = ble.zone or "?"
        self._beacons = {beacon.key: beacon.name for beacon in ble.beacons}
        consents = _ReadOnlyConsents(granted(settings.ledger.path, Purpose.PRESENCE_BLE))
        self.resolver = EidResolver(clock, neighbours=ble.eid_neighbours, consents=consents)
        if ble.eid_keys_file is not None:
            self.resolver.load(load_eid_keys(ble.eid_keys_file))

    def name(self, advert: Advert) -> Seen | None:
        frame = parse_advert(advert)
        if frame is None:
            return None
        kind, identity = self._describe(frame)
        return Seen(kind, identity, advert.rssi, self._zone)

    def _describe(self, frame: Frame) -> tuple[str, str]:
        if isinstance(frame, EddystoneEid):
            shopper = self.resolver.resolve(frame.eid)
            return "eddystone-eid", f"shopper {shopper}" if shopper else "anonymous"
        if isinstance(frame, IBeacon | EddystoneUid):
            name = self._beacons.get(frame.key)
            kind = "ibeacon" if isinstance(frame, IBeacon) else "eddystone-uid"
            return kind, f"store beacon {name}" if name else "anonymous"
        if isinstance(frame, EddystoneTlm):
            return "eddystone-tlm", "anonymous"
        if isinstance(frame, EddystoneUrl):
            return "eddystone-url", "anonymous"
        return "eddystone-tlm (encrypted)", "anonymous"


async def _adverts(
    settings: GatewaySettings, clock: Clock, seconds: float, on_advert: Callable[[Advert], None]
) -> int:
    scanner = BleScanner(settings.ble.scanner, clock)
    count = 0
    async with scanner:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                advert = await asyncio.wait_for(scanner.adverts.get(), remaining)
            except TimeoutError:
                break
            count += 1
            on_advert(advert)
    return count


async def scan(settings: GatewaySettings, seconds: float, out: TextIO, clock: Clock | None = None) -> int:
    """Print one line per recognisable advert for ``seconds``; returns the number of lines."""
    clock = clock or SystemClock()
    namer = Namer(settings, clock)
    lines = 0
    print(f"{'type':<26} {'identity':<34} {'rssi':>5}  zone", file=out, flush=True)

    def show(advert: Advert) -> None:
        nonlocal lines
        seen = namer.name(advert)
        if seen is not None:
            lines += 1
            print(f"{seen.kind:<26} {seen.identity:<34} {seen.rssi:>5}  {seen.zone}", file=out, flush=True)

    await _adverts(settings, clock, seconds, show)
    return lines


@dataclass(slots=True, frozen=True)
class Calibration:
    source: str
    samples: int
    median_dbm: float
    p10_dbm: float
    p90_dbm: float
    enter_rssi_dbm: int
    exit_rssi_dbm: int


def thresholds(source: str, samples: list[int]) -> Calibration:
    """Enter at the median heard at the zone's edge; exit below it by the spread (at least 6 dB)."""
    ordered = sorted(samples)
    median = statistics.median(ordered)
    p10 = ordered[max(0, int(len(ordered) * 0.1))]
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    enter = round(median)
    exit_ = enter - max(MIN_HYSTERESIS_DB, round(median - p10) + 2)
    return Calibration(source, len(ordered), float(median), float(p10), float(p90), enter, exit_)


async def calibrate(
    settings: GatewaySettings,
    zone: str,
    seconds: float,
    out: TextIO,
    *,
    beacon: str | None = None,
    clock: Clock | None = None,
) -> Calibration | None:
    """Record a reference device held at the zone's edge; print the thresholds to configure."""
    if settings.ble.zone != zone:
        print(
            f"this gateway's adapter is in zone {settings.ble.zone!r}, not {zone!r}: run it on that zone's gateway",
            file=out,
        )
        return None
    clock = clock or SystemClock()
    namer = Namer(settings, clock)
    samples: dict[str, list[int]] = {}

    def record(advert: Advert) -> None:
        seen = namer.name(advert)
        if seen is None or seen.identity == "anonymous":
            return
        if beacon is not None and seen.identity != f"store beacon {beacon}":
            return
        samples.setdefault(seen.identity, []).append(seen.rssi)

    print(
        f"hold the reference device at the edge of zone {zone} for {seconds:.0f} s ...", file=out, flush=True
    )
    await _adverts(settings, clock, seconds, record)
    if not samples:
        print("heard no store beacon or opted-in shopper device; nothing to calibrate", file=out)
        return None
    source, values = max(samples.items(), key=lambda item: len(item[1]))
    if len(values) < MIN_CALIBRATION_SAMPLES:
        print(f"only {len(values)} samples from {source}; hold it still longer", file=out)
        return None
    result = thresholds(source, values)
    print(
        f"{result.source}: {result.samples} samples, median {result.median_dbm:.1f} dBm "
        f"(p10 {result.p10_dbm:.0f}, p90 {result.p90_dbm:.0f})\n"
        f"put in the config:\n[ble.presence]\nenter_rssi_dbm = {result.enter_rssi_dbm}\n"
        f"exit_rssi_dbm = {result.exit_rssi_dbm}",
        file=out,
        flush=True,
    )
    return result
