"""BLE into the gateway's flow: local adverts and ESPresense reports -> presence -> screens.

Enter events ask the zone's screens for service exactly like a check-in; leave events release them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from edge.events import Advert, PresenceChanged, Purpose
from edge.flow.floor import Floor
from edge.identity import ConsentStore
from edge.presence.ingest import BleIngest, IngestStats
from edge.sources.espresense import Anonymous, loggable_topic, parse_report
from edge.sources.payloads import RejectCounter, Rejected
from edge.sources.rejections import Kind
from edge.transport.mqtt import Inbound, MqttLink

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class BleFlowStats:
    ingest: IngestStats
    events: Mapping[str, int]  # presence changes into the flow (enter, leave, ...) and unmapped rooms


class BleFlow:
    """Feeds the floor from BLE; owns the consumption of the scanner's advert queue."""

    def __init__(
        self,
        ingest: BleIngest,
        *,
        floor: Floor,
        consents: ConsentStore,
        rejects: RejectCounter,
        espresense_prefix: str = "espresense",
        espresense_rooms: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        seen: Callable[[str], None] | None = None,
    ) -> None:
        self.ingest = ingest
        self._floor = floor
        self._rejects = rejects
        self._prefix = espresense_prefix
        self._rooms = dict(espresense_rooms or {})
        self.counters: Counter[str] = Counter()
        # The ble_advert stage (one advert through parse -> resolve -> presence); None costs one check each.
        self._metrics = metrics
        # Told of every enter: a visit, the clock of the profile eviction (edge/ledger/seen.py).
        self._seen = seen
        consents.subscribe(self._consent_changed)

    def stats(self) -> BleFlowStats:
        return BleFlowStats(self.ingest.stats(), dict(self.counters))

    def register_espresense(self, link: MqttLink) -> None:
        # A device id in these topics can be a phone's address: the link's own log lines redact it too.
        link.on(f"{self._prefix}/devices/+/+", self.on_espresense, log_topic=self._loggable)

    def _loggable(self, topic: str) -> str:
        return loggable_topic(topic, self._prefix, self._rooms)

    async def consume(self, adverts: asyncio.Queue[Advert]) -> None:
        """The long-lived task draining the local scanner's queue."""
        ingest = self.ingest.advert
        while True:
            advert = await adverts.get()
            metrics = self._metrics
            if metrics is None:
                changes = ingest(advert)
            else:
                started = perf_counter()
                changes = ingest(advert)
                metrics.ble_advert.observe(perf_counter() - started)
            if changes:
                await self.apply(changes)

    async def on_espresense(self, message: Inbound) -> None:
        report = parse_report(message.topic, message.payload, self._prefix)
        if isinstance(report, Anonymous):
            self.ingest.counters["anonymous"] += 1  # somebody's phone: counted, never kept
            return
        if isinstance(report, Rejected):
            self._rejects.reject(Kind.ESPRESENSE, report.reason, self._loggable(message.topic))
            return
        if report.room not in self._rooms:
            self.counters["unmapped_room"] += 1
            return
        metrics = self._metrics
        started = perf_counter() if metrics is not None else 0.0
        changes = self.ingest.remote(report, f"espresense:{report.room}", message.received_mono)
        if metrics is not None:
            metrics.ble_advert.observe(perf_counter() - started)
        if changes:
            await self.apply(changes)

    async def tick(self) -> None:
        """Timer-driven leaves and dwells; EID table roll-over."""
        self.ingest.resolver.refresh()
        changes = self.ingest.presence.tick()
        if changes:
            await self.apply(changes)

    async def apply(self, changes: list[PresenceChanged]) -> None:
        self._floor.changed(changes)
        for change in changes:
            self.counters[change.kind] += 1
            if change.kind == "enter":
                if self._seen is not None:
                    self._seen(change.shopper_id)
                await self._floor.serve(change.zone, change.shopper_id)

    def scanner_zones(self, local_scanner: str | None, local_zone: str | None) -> dict[str, str]:
        zones = {f"espresense:{room}": zone for room, zone in self._rooms.items()}
        if local_scanner is not None and local_zone is not None:
            zones[local_scanner] = local_zone
        return zones

    def _consent_changed(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:
        if purpose is Purpose.PRESENCE_BLE and not granted:
            # The resolver dropped their EIDs already; their presence ends now, not at the timeout.
            self._floor.changed(self.ingest.presence.forget(shopper_id))
