"""What the gateway reports about itself: one typed ``HealthReport`` built from the running parts' ``stats()``,
its alerts, the problems a configuration push is judged by, and why ``/healthz`` fails (docs/mqtt.md,
docs/remote-config.md, docs/metrics.md). JSON is made only where it is published (edge/control/health_json.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge import __version__

if TYPE_CHECKING:
    from edge.act.displays import DisplayStats
    from edge.context.service import ContextStats
    from edge.control.remote import ControlStats
    from edge.daemon import Gateway
    from edge.flow.ble import BleFlowStats
    from edge.flow.camera import CameraFlowStats
    from edge.flow.decider import DeciderStats
    from edge.flow.devices import DevicesStats
    from edge.flow.pickup import PickupStats
    from edge.flow.pos import PosStats
    from edge.flow.privacy import PrivacyCounters
    from edge.flow.staff import StaffStats
    from edge.flow.stats import FlowCounts
    from edge.identity.tokens import TokenStats
    from edge.identity.wallclock import ClockStats
    from edge.ledger.store import LedgerStats
    from edge.sources.ble.scanner import BleScannerStats
    from edge.sync.stats import SyncStats
    from edge.transport.mqtt import LinkStats

# A telemetry event given up raises sync_dead_letter for a day: someone sees it, and it clears by itself.
DEAD_LETTER_ALERT_S: Final = 86_400.0
# The scanner states in which BLE presence works or is about to.
_SCANNER_FINE: Final = frozenset({"scanning", "starting"})


@dataclass(slots=True, frozen=True)
class BleReport:
    """BLE presence: the local scanner (None with ESPresense only) and the ingest and flow behind it."""

    scanner: BleScannerStats | None
    flow: BleFlowStats

    @property
    def missing_beacons(self) -> list[str]:
        return self.flow.ingest.missing_beacons


@dataclass(slots=True, frozen=True)
class HealthReport:
    """The gateway's health at ``now_wall``: every part's snapshot, as ``gateway/health`` and ``/metrics``
    show it. Optional parts are None (or empty) when this configuration does not have them."""

    now_wall: float
    version: str
    uptime_s: float
    config_version: str
    model_version: str
    mqtt: LinkStats
    ledger: LedgerStats
    rejected: Mapping[str, int]  # inbound messages refused, by "<kind>.<reason>"
    flow: FlowCounts
    decider: DeciderStats
    clock: ClockStats | None
    pos: PosStats
    tokens: TokenStats
    displays: Mapping[str, DisplayStats]
    sync: SyncStats | None  # the health loop's latest reading (the outbox is read from SQLite)
    ble: BleReport | None
    cameras: tuple[CameraFlowStats, ...]
    control: ControlStats | None
    devices: DevicesStats | None
    staff: StaffStats | None
    pickup: PickupStats
    privacy: PrivacyCounters
    metrics_error: str | None  # why the metrics endpoint is off
    context: ContextStats | None = None  # weather, baskets, trends (docs/context.md)

    @property
    def last_checkin_age_s(self) -> float | None:
        last = self.flow.last_checkin_wall
        return None if last is None else round(self.now_wall - last, 1)

    @property
    def signal_ages(self) -> dict[str, float | None]:
        """Seconds since the last signal of each source this gateway has (None: none yet)."""
        ages: dict[str, float | None] = {"checkin": self.last_checkin_age_s}
        if self.ble is not None and self.ble.scanner is not None:
            ages["ble_advert"] = self.ble.scanner.last_advert_age_s
        for camera in self.cameras:
            ages[f"camera:{camera.id}"] = camera.capture.last_frame_age_s
        return {name: None if age is None else round(age, 2) for name, age in ages.items()}

    @property
    def alerts(self) -> list[str]:
        return alerts(self)

    def problems(self) -> list[str]:
        """Health problems as 'component: detail'; empty when the broker is connected and all is well."""
        found = [] if self.mqtt.state == "connected" else [f"mqtt: {self.mqtt.state}"]
        found += self.alerts
        for camera in self.cameras:
            if camera.capture.state == "reconnecting":
                found.append(f"camera {camera.id}: {camera.capture.state}")
        scanner = self.ble.scanner if self.ble is not None else None
        if scanner is not None and scanner.state not in _SCANNER_FINE:
            found.append(f"ble scanner: {scanner.state}")
        return found

    def unhealthy_reasons(self) -> list[str]:
        """Why /healthz answers 503: the broker not connected, and every alert by kind; empty when healthy."""
        reasons = [] if self.mqtt.state == "connected" else [f"mqtt_{self.mqtt.state}"]
        return reasons + [alert_name(alert) for alert in self.alerts]


def build_report(gateway: Gateway) -> HealthReport:
    """The report of the running gateway and its current generation (read-only, no I/O)."""
    g = gateway.generation
    if g is None:
        msg = "health() before the gateway was built"
        raise RuntimeError(msg)
    now = gateway.clock.wall()
    decider = g.decider.stats()
    return HealthReport(
        now_wall=now,
        version=__version__,
        uptime_s=round(now - gateway.started_wall, 1),
        config_version=gateway.config_version,
        model_version=decider.model_version,
        mqtt=g.link.stats(),
        ledger=g.ledger.stats(),
        rejected=g.rejects.as_dict(),
        flow=g.stats.stats(),
        decider=decider,
        clock=gateway.wall_watch.stats(),
        pos=g.pos.stats(),
        tokens=g.verifier.stats(),
        displays=g.board.stats(),
        sync=gateway.sync_health,
        ble=None if g.ble is None else BleReport(g.scanner.stats() if g.scanner else None, g.ble.stats()),
        cameras=tuple(camera.stats() for camera in g.cameras),
        control=gateway.control.stats() if gateway.control is not None else None,
        devices=None if g.devices is None else g.devices.stats(),
        staff=None if g.staff is None else g.staff.stats(),
        pickup=g.pickup.stats(),
        privacy=g.privacy.stats(),
        metrics_error=gateway.metrics_error,
        context=g.context.stats(),
    )


def alert_name(alert: str) -> str:
    """The alert's kind: the text before the first colon ("mqtt_outbox_dropped: 3 messages")."""
    return alert.split(":", 1)[0].strip() or "alert"


def alerts(report: HealthReport) -> list[str]:
    """Conditions an operator must look at; empty when all is well."""
    found = []
    ledger = report.ledger
    if ledger.corrupted_moved_to is not None:
        found.append(f"ledger_corrupt: the database was moved aside to {ledger.corrupted_moved_to}")
    if ledger.disk_full:
        found.append("ledger_disk_full: writes fail for want of space; check-ins wait until space is freed")
    missing = report.ble.missing_beacons if report.ble is not None else []
    if missing:
        found.append(f"beacons_missing: {', '.join(missing)}")
    silent = [camera.id for camera in report.cameras if camera.silent]
    if silent:
        found.append(f"cameras_silent: {', '.join(silent)}")
    if report.sync is not None:
        outbox = report.sync.outbox
        if outbox.dropped:
            found.append(f"sync_outbox_dropped: telemetry dropped at the disk bound ({outbox.dropped})")
        if outbox.over_bound:
            found.append("sync_outbox_over_bound: privacy and conversion events exceed the outbox bound")
        found += refused_alerts(report.sync)
    dropped = report.mqtt.counters.get("outbox_dropped", 0)
    if dropped:
        found.append(f"mqtt_outbox_dropped: {dropped} messages")
    if report.control is not None:
        found += [f"{flag}: see control in gateway/health" for flag in report.control.flags]
    clock = report.clock
    if clock is not None and clock.behind:
        found.append(
            f"clock_behind: the wall clock is {clock.behind_s:.0f} s behind the latest time this gateway "
            "has seen; tokens whose replay protection may have ended are refused"
        )
    if report.devices is not None:
        if report.devices.offline:
            found.append(f"devices_offline: {', '.join(report.devices.offline)}")
        if report.devices.mismatched:
            found.append(
                f"devices_mismatch: {', '.join(report.devices.mismatched)} did not report the commanded state"
            )
    if report.metrics_error is not None:
        found.append(f"metrics_off: {report.metrics_error}")
    return found


def refused_alerts(sync: SyncStats) -> list[str]:
    """Events the cloud refused: parked ones wait (privacy and conversions are never given up), and telemetry
    given up recently (a day: long enough for someone to look, then it clears; the table keeps them)."""
    found = []
    parked = sync.parked
    if parked.events:
        classes = ", ".join(f"{cls} {n}" for cls, n in parked.by_class.items() if n)
        found.append(
            f"sync_events_parked: {parked.events} events the cloud refused are kept and retried ({classes}); "
            "edge-gateway dead-letter list --parked"
        )
    dead = sync.dead_letter
    if dead.last_age_s is not None and dead.last_age_s < DEAD_LETTER_ALERT_S:
        found.append(
            f"sync_dead_letter: {dead.events} telemetry events the cloud refused by name are held "
            "in the dead letters; edge-gateway dead-letter export"
        )
    return found


def problems(gateway: Gateway) -> list[str]:
    """The running gateway's problems (``HealthReport.problems``); the remote-config health window reads it."""
    if gateway.generation is None:
        return ["gateway: not running"]
    return build_report(gateway).problems()
