"""BLE adverts through the stages in order: parse -> resolve (consenting shoppers only) -> presence.

Unknown devices stop at the first step that cannot name them and leave nothing behind: no address,
no RSSI, no count per device; only the number of anonymous adverts is kept.
"""

from __future__ import annotations

from collections import Counter

from edge.events import Advert, PresenceChanged, Sighting
from edge.identity.eid import EidResolver
from edge.presence.beacons import BeaconRegistry
from edge.presence.ble import BlePresence
from edge.sources.ble.frames import (
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    FrameCounter,
    IBeacon,
    parse_advert,
)
from edge.sources.espresense import RemoteBeacon, RemoteEid


class BleIngest:
    """Owns no state of its own beyond counters; each stage keeps what it is allowed to keep."""

    def __init__(self, resolver: EidResolver, beacons: BeaconRegistry, presence: BlePresence) -> None:
        self.resolver = resolver
        self.beacons = beacons
        self.presence = presence
        self.counters: Counter[str] = Counter()
        self.frame_counter = FrameCounter()  # malformed frames by reason

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
