"""The ``gateway/health`` payload: a ``HealthReport`` as the JSON of docs/mqtt.md, key for key and in order.

The only place the report becomes JSON (the MQTT edge, and tests reading what was published). The shape is
a contract with display makers and dashboards: tests/control/test_reference.py compares it with the
reference of a fully equipped gateway, so a change here shows up there.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edge.clock import iso_utc

if TYPE_CHECKING:
    from edge.control.health import BleReport, HealthReport
    from edge.control.remote import ControlStats
    from edge.flow.camera import CameraFlowStats
    from edge.flow.devices import DevicesStats
    from edge.ledger.store import LedgerStats
    from edge.sync.stats import SyncStats

JSON = dict[str, Any]


def encode(report: HealthReport) -> bytes:
    """The retained ``gateway/health`` message: compact UTF-8 JSON."""
    return json.dumps(health_json(report), separators=(",", ":"), default=str).encode()


def health_json(report: HealthReport) -> JSON:
    mqtt, flow = report.mqtt, report.flow
    return {
        "v": 1,
        "ts": iso_utc(report.now_wall),
        "version": report.version,
        "uptime_s": report.uptime_s,
        "config_version": report.config_version,
        "model_version": report.model_version,
        "mqtt": {"state": mqtt.state, "outbox": mqtt.outbox, **mqtt.counters},
        "ledger": _ledger(report.ledger),
        "queues": {"mqtt_outbox": mqtt.outbox, "ledger": report.ledger.queue_depth},
        "drops": {"mqtt_outbox": mqtt.counters.get("outbox_dropped", 0), "rejected": dict(report.rejected)},
        "checkins": flow.checkins,
        "checkins_redelivered": flow.redelivered,
        "decisions": report.decider.decisions,
        "decisions_unrecorded": flow.unrecorded,
        "clock": None
        if report.clock is None
        else {
            "high_water": iso_utc(report.clock.high_water_wall),
            "behind_s": round(report.clock.behind_s, 1),
        },
        "exposures": flow.exposures,
        "acks": {"failed": flow.acks_failed, "shown_at_replaced": flow.shown_at_replaced},
        "pos": asdict(report.pos),
        "last_checkin_age_s": report.last_checkin_age_s,
        "last_signal_age_s": report.signal_ages,
        "tokens": {
            "accepted": report.tokens.accepted,
            "rejected": {str(reason): count for reason, count in report.tokens.rejected.items()},
        },
        "displays": {
            display: {**asdict(shown), "acks_failed": flow.acks_failed_by_display.get(display, 0)}
            for display, shown in report.displays.items()
        },
        "sync_backlog": None if report.sync is None else report.sync.backlog,
        "sync": None if report.sync is None else _sync(report.sync),
        "ble": None if report.ble is None else _ble(report.ble),
        "cameras": {camera.id: _camera(camera) for camera in report.cameras} or None,
        "control": None if report.control is None else _control(report.control),
        "devices": None if report.devices is None else _devices(report.devices),
        "staff": None
        if report.staff is None
        else {**asdict(report.staff), "answers": dict(report.staff.answers)},
        "pickup": asdict(report.pickup),
        "privacy": asdict(report.privacy),
        "context": None if report.context is None else asdict(report.context),
        "alerts": report.alerts,
    }


def _ledger(ledger: LedgerStats) -> JSON:
    figures = asdict(ledger)
    moved = figures.pop("corrupted_moved_to")
    purge = figures.pop("purge")
    # Flags as 0/1, as they always were on the wire.
    figures["disk_full"] = int(ledger.disk_full)
    return {
        **figures,
        "corrupt_recovered": int(ledger.corrupt_recovered),
        "corrupted_moved_to": moved,
        "purge": purge,
    }


def _sync(sync: SyncStats) -> JSON:
    figures = asdict(sync)
    profiles = figures.pop("profiles")
    outcomes = profiles.pop("outcomes")
    return {**figures, "profiles": {**profiles, **outcomes}}


def _ble(ble: BleReport) -> JSON:
    ingest = ble.flow.ingest
    return {
        "scanner": None if ble.scanner is None else asdict(ble.scanner),
        "adverts": dict(ingest.adverts),
        "frames_rejected": dict(ingest.frames_rejected),
        "presence": {"tracked": ingest.presence.tracked, **ingest.presence.counts},
        "eid": asdict(ingest.eid),
        "beacons": [asdict(beacon) for beacon in ingest.beacons],
        "missing_beacons": ingest.missing_beacons,
        "events": dict(ble.flow.events),
    }


def _camera(camera: CameraFlowStats) -> JSON:
    return {
        "zone": camera.zone,
        "capture": camera.capture.as_dict(),
        "people": camera.people,
        "entered": camera.entered,
        "left": camera.left,
        "mean_dwell_s": camera.mean_dwell_s,
        **camera.counters,
    }


def _devices(devices: DevicesStats) -> JSON:
    return {
        "commands": devices.commands,
        "records_dropped": devices.journal_dropped,
        "records_failed": devices.journal_failed,
        "preferences_ignored": devices.preferences_ignored,
        "by_device": {
            device.id: {
                "zone": device.zone,
                "kind": device.kind,
                "adapter": device.adapter,
                "available": device.plan.available,
                "personal": device.plan.personal,
                "commands": device.plan.commands,
                "deferred": device.plan.deferred,
                "mismatches": device.plan.mismatches,
                "mismatched": device.plan.mismatched,
                "bad_messages": device.bad_messages,
                "override_left_s": device.override_left_s,
                "values": dict(device.values),
            }
            for device in devices.devices
        },
    }


def _control(control: ControlStats) -> JSON:
    return {
        "current": control.current,
        "pending": control.pending,
        "highest_seen": control.highest_seen,
        "kept": list(control.kept),
        **control.counters,
        "rejected": dict(control.rejected),
        "flags": list(control.flags),
    }
