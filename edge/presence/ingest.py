"""BLE adverts through the stages in order: parse -> resolve (consenting shoppers only) -> presence.

Unknown devices stop at the first step that cannot name them and leave nothing behind: no address,
no RSSI, no count per device; only the number of anonymous adverts is kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from edge.events import Advert, PresenceChanged, Sighting
from edge.identity.eid import EidResolver, EidStats
from edge.presence.beacons import BeaconRegistry, BeaconStats
from edge.presence.ble import BlePresence, BlePresenceStats
from edge.sources.ble.frames import (
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    FrameCounter,
    IBeacon,
    parse_advert,
)
from edge.sources.espresense import RemoteBeacon, RemoteEid


@dataclass(slots=True, frozen=True)
class IngestStats:
    """Adverts by outcome (identified, store_beacon, anonymous), malformed frames by reason, and each stage's
    own snapshot."""

    adverts: Mapping[str, int]
    frames_rejected: Mapping[str, int]
    presence: BlePresenceStats
    eid: EidStats
    beacons: tuple[BeaconStats, ...]

    @property
    def missing_beacons(self) -> list[str]:
        return [beacon.name for beacon in self.beacons if beacon.missing]


class BleIngest:
    """Owns no state of its own beyond counters; each stage keeps what it is allowed to keep."""

    def __init__(self, resolver: EidResolver, beacons: BeaconRegistry, presence: BlePresence) -> None:
        self.resolver = resolver
        self.beacons = beacons
        self.presence = presence
        self.counters: Counter[str] = Counter()
        self.frame_counter = FrameCounter()  # malformed frames by reason

    def stats(self) -> IngestStats:
        return IngestStats(
            adverts=dict(self.counters),
            frames_rejected=dict(self.frame_counter),
            presence=self.presence.stats(),
            eid=self.resolver.stats(),
            beacons=self.beacons.stats(),
        )

    def advert(self, advert: Advert) -> list[PresenceChanged]:
        """One local advert; returns the presence changes it causes (usually none)."""
        frame = parse_advert(advert, self.frame_counter)
        if isinstance(frame, EddystoneEid):
            shopper = self.resolver.resolve(frame.eid)
            if shopper is None:
                self.counters["anonymous"] += 1
                return []
            self.counters["identified"] += 1
            return self.presence.observe(Sighting(shopper, advert.scanner, advert.rssi, advert.at_mono))
        if isinstance(frame, IBeacon | EddystoneUid):
            known = self.beacons.seen(frame.key, advert.address, advert.scanner, advert.rssi, advert.at_mono)
            self.counters["store_beacon" if known else "anonymous"] += 1
        elif isinstance(frame, EddystoneTlm):
            known = self.beacons.telemetry(advert.address, frame.battery_mv, frame.temperature_c)
            self.counters["store_beacon" if known else "anonymous"] += 1
        else:
            self.counters["anonymous"] += 1
        return []

    def remote(self, report: RemoteBeacon | RemoteEid, scanner: str, at_mono: float) -> list[PresenceChanged]:
        """One ESPresense report, already parsed; ``scanner`` is "espresense:<room>"."""
        if isinstance(report, RemoteEid):
            shopper = self.resolver.resolve(report.eid)
            if shopper is None:
                self.counters["anonymous"] += 1
                return []
            self.counters["identified"] += 1
            return self.presence.observe(Sighting(shopper, scanner, report.rssi, at_mono))
        known = self.beacons.seen(report.key, None, scanner, report.rssi, at_mono)
        self.counters["store_beacon" if known else "anonymous"] += 1
        return []
