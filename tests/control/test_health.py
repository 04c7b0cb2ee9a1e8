"""The typed health report: its alerts and problems read typed fields, and its JSON at the MQTT edge keeps the
byte form of docs/mqtt.md (compact, keys in order, flags as 0/1 where they always were, counters merged)."""

from __future__ import annotations

import json
from dataclasses import replace

from edge.control.health_json import encode
from edge.identity.wallclock import ClockStats
from edge.sources.ble.scanner import ScannerState
from edge.sources.camera.capture import CameraState
from edge.transport.mqtt import LinkState
from tests.control.test_metrics import health_report


def test_the_payload_keeps_its_byte_form() -> None:
    payload = encode(health_report())
    assert payload.startswith(b'{"v":1,"ts":"')
    for fragment in (
        b'"mqtt":{"state":"connected","outbox":3,"received":40,"published":90,',
        b'"last_commit_ms":1.5,"backpressure_waits":0,"disk_full":0,"disk_full_errors":0,"dropped":0,',
        b'"consent_stale":0,"corrupt_recovered":0,"corrupted_moved_to":null,"purge":{"runs":2,"last_age_s":600.0,',
        b'"decisions":40,"device_settings":0,',
        b'"corrupt_files":0},"vacuumed_pages":96}},"queues":{"mqtt_outbox":3,"ledger":5}',
        b'"drops":{"mqtt_outbox":0,"rejected":{"checkin.bad_json":4,"ack.unknown_display":1}}',
        b'"pos":{"transactions":5,"identified":2,"anonymous":3,"redelivered":0}',
        b'"tokens":{"accepted":12,"rejected":{"expired":3,"bad_signature":1}}',
        b'"screen-cafe":{"version":7,"offer_id":"o1","online":true,"pending":false,"acks_failed":0}',
        b'"profiles":{"inflight":0,"unknown_cached":1,"fetched":5}},"ble":{"scanner":{"state":"scanning",',
        b'"presence":{"tracked":1,"invalid_rssi":0}',
        b'"capture":{"state":"streaming","fps":14.8,',
        b'"mean_dwell_s":12.5,"qr_checkins":1}},"control":{"current":0,"pending":null,"highest_seen":0,"kept":[],',
        b'"alerts":[]}',
    ):
        assert fragment in payload, fragment
    assert list(json.loads(payload))[-8:] == [
        "cameras",
        "control",
        "devices",
        "staff",
        "pickup",
        "privacy",
        "context",
        "alerts",
    ]


def test_alerts_and_problems_read_the_typed_report() -> None:
    healthy = health_report()
    assert healthy.alerts == [] and healthy.problems() == [] and healthy.unhealthy_reasons() == []
    ledger = replace(healthy.ledger, corrupted_moved_to="/state/ledger.sqlite.corrupt-1", disk_full=True)
    sick = replace(
        healthy,
        mqtt=replace(healthy.mqtt, state=LinkState.BACKOFF),
        ledger=ledger,
        clock=ClockStats(healthy.now_wall + 3600, 3600.0, behind=True),
        metrics_error="127.0.0.1:9108: address in use",
        cameras=(
            replace(
                healthy.cameras[0],
                capture=replace(healthy.cameras[0].capture, state=CameraState.RECONNECTING),
            ),
        ),
    )
    assert healthy.ble is not None and healthy.ble.scanner is not None
    sick = replace(
        sick, ble=replace(healthy.ble, scanner=replace(healthy.ble.scanner, state=ScannerState.RESTARTING))
    )
    kinds = [alert.split(":")[0] for alert in sick.alerts]
    assert kinds == ["ledger_corrupt", "ledger_disk_full", "cameras_silent", "clock_behind", "metrics_off"]
    assert sick.unhealthy_reasons() == ["mqtt_backoff", *kinds]
    assert sick.problems() == [
        "mqtt: backoff",
        *sick.alerts,
        "camera front: reconnecting",
        "ble scanner: restarting",
    ]
    assert json.loads(encode(sick))["ledger"]["corrupt_recovered"] == 1
