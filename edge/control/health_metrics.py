"""A ``HealthReport`` as Prometheus metric families, name for name as docs/metrics.md lists them: the
counterpart of edge/control/health_json.py for ``/metrics``, collected at scrape time (edge/control/prometheus.py).

A value the report does not have (no sync, no BLE, a signal never received) is left out, not zero, and a
family with no value at all is not exposed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edge.control.health import alert_name

if TYPE_CHECKING:
    from edge.context.service import ContextStats
    from edge.control.health import BleReport, HealthReport
    from edge.flow.camera import CameraFlowStats
    from edge.flow.devices import DevicesStats
    from edge.ledger.store import LedgerStats
    from edge.sync.stats import SyncStats

_SIGNAL: Final = ("edge_last_signal_age_seconds", "Seconds since the last signal of each kind was received.")
_DROPPED: Final = ("edge_dropped_total", "Items a bounded queue dropped, by queue.")
_DEPTH: Final = ("edge_queue_depth", "Items waiting in a bounded queue, by queue.")
_LEDGER_OUTCOMES: Final = (
    "decision_duplicates",
    "exposure_duplicates",
    "exposure_unknown_decision",
    "jti_replays",
    "consent_stale",
)
_PUSH_RESULTS: Final = ("accepted", "duplicates", "rejected", "given_up", "parked")
_SCANNER_EVENTS: Final = ("starts", "restarts", "adapter_resets", "bluez_restarts", "passive_fallbacks")
_EID_SIZES: Final = ("keys", "active", "table")
_EID_EVENTS: Final = ("refreshes", "resolved", "unresolved", "collisions")
_CAMERA_FAULTS: Final = ("corrupt", "read_failures", "errors", "reopens")

Labels = Mapping[str, str]


class Families:
    """Families by exposed name, created at their first value; a None value is left out."""

    def __init__(self) -> None:
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        # A family's label names, fixed by its first sample: prometheus_client takes later values by position.
        self._label_names: dict[str, tuple[str, ...]] = {}

    def gauge(self, name: str, help_text: str, value: float | None, labels: Labels | None = None) -> None:
        self._add(GaugeMetricFamily, name, help_text, value, labels)

    def counter(self, name: str, help_text: str, value: float | None, labels: Labels | None = None) -> None:
        self._add(CounterMetricFamily, name, help_text, value, labels)

    def counters(self, name: str, help_text: str, values: Mapping[str, int], label: str) -> None:
        """One sample per entry of a counter map (by reason, kind...), labelled by its key."""
        for key, value in values.items():
            self.counter(name, help_text, value, {label: str(key)})

    def _add(
        self,
        kind: type[GaugeMetricFamily | CounterMetricFamily],
        name: str,
        help_text: str,
        value: float | None,
        labels: Labels | None,
    ) -> None:
        if value is None:
            return
        labels = labels or {}
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = kind(name, help_text, labels=list(labels))
            self._label_names[name] = tuple(labels)
        elif tuple(labels) != self._label_names[name]:
            msg = f"{name}: labels {tuple(labels)} differ from {self._label_names[name]}"
            raise ValueError(msg)
        family.add_metric(list(labels.values()), float(value))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


def health_families(report: HealthReport) -> Iterator[Metric]:
    out = Families()
    info = {"version": report.version, "config_version": report.config_version}
    info["model_version"] = report.model_version
    out.gauge(
        "edge_gateway_info", "The gateway's software, configuration and model versions (always 1).", 1, info
    )
    out.gauge("edge_uptime_seconds", "Seconds since the gateway started.", report.uptime_s)
    reasons, alerts = report.unhealthy_reasons(), report.alerts
    out.gauge("edge_healthy", "1 when /healthz answers 200 (broker connected, no alert).", int(not reasons))
    out.gauge("edge_alerts", "Conditions an operator must look at (gateway/health alerts).", len(alerts))
    for name in sorted({alert_name(alert) for alert in alerts}):
        out.gauge("edge_alert", "1 for each kind of alert that is raised now.", 1, {"alert": name})
    mqtt = report.mqtt
    out.gauge("edge_mqtt_connected", "1 while the broker connection is up.", int(mqtt.state == "connected"))
    out.gauge("edge_mqtt_state", "The broker link's state (1 for the current one).", 1, {"state": mqtt.state})
    out.counters(
        "edge_mqtt_events_total",
        "Broker link events: received, published, deferred, oversized, handler_errors, "
        "outbox_dropped, connect_failures, disconnects (reconnects).",
        mqtt.counters,
        "event",
    )
    _ledger(report.ledger, out)
    out.gauge(*_DEPTH, mqtt.outbox, {"queue": "mqtt_outbox"})
    out.gauge(*_DEPTH, report.ledger.queue_depth, {"queue": "ledger"})
    out.counter(*_DROPPED, mqtt.counters.get("outbox_dropped", 0), {"queue": "mqtt_outbox"})
    for key, count in report.rejected.items():
        kind, _, reason = key.partition(".")
        help_text = "Inbound messages refused, by kind of message and reason."
        out.counter("edge_rejected_total", help_text, count, {"kind": kind, "reason": reason})
    _flow(report, out)
    if report.sync is not None:
        _sync(report.sync, out)
    if report.ble is not None:
        _ble(report.ble, out)
    for camera in report.cameras:
        _camera(camera, out)
    if report.devices is not None:
        _devices(report.devices, out)
    if report.staff is not None:
        staff = report.staff
        out.counter("edge_staff_notices_total", "Staff notices sent (one per visit).", staff.notices)
        out.counter("edge_staff_notices_withdrawn_total", "Staff notices withdrawn.", staff.withdrawn)
        out.gauge("edge_staff_notices_open", "Staff notices open now.", staff.open)
        for action in ("assisting", "dismissed"):
            help_text = "Staff answers to notices, stored."
            out.counter(
                "edge_staff_answers_total", help_text, staff.answers.get(action, 0), {"action": action}
            )
    _pickup(report, out)
    _privacy(report, out)
    if report.context is not None:
        _context(report.context, out)
    return iter(out)


def _privacy(report: HealthReport, out: Families) -> None:
    privacy = report.privacy
    for action, count in (("consent", privacy.consents), ("erase", privacy.erasures)):
        out.counter(
            "edge_privacy_actions_total",
            "Shoppers' privacy actions applied at a touchpoint.",
            count,
            {"action": action},
        )
    out.counter(
        "edge_privacy_exports_total",
        "The cloud's export requests answered through the outbox.",
        privacy.exports_answered,
    )
    out.counter(
        "edge_privacy_export_duplicates_total",
        "Export requests delivered again after they were answered (nothing sent twice).",
        privacy.export_duplicates,
    )
    for outcome, count in (("shown", privacy.my_data_shown), ("refused", privacy.my_data_refused)):
        out.counter(
            "edge_privacy_my_data_total",
            "Kiosk my-data summaries, shown or refused.",
            count,
            {"outcome": outcome},
        )


def _context(context: ContextStats, out: Families) -> None:
    weather, basket, trends = context.weather, context.basket, context.trends
    out.gauge(
        "edge_context_weather_known",
        "1 while the store's weather is fresh enough to decide with.",
        int(weather.known),
    )
    if weather.age_s is not None:
        out.gauge(
            "edge_context_weather_age_seconds", "Age of the newest weather reading held.", weather.age_s
        )
    for source in ("cloud", "sensor"):
        out.counter(
            "edge_context_weather_readings_total",
            "Weather readings taken (newer than the one held), by source.",
            weather.readings.get(source, 0),
            {"source": source},
        )
    out.gauge("edge_context_baskets", "Shoppers whose basket (sale, cart) is held now.", basket.shoppers)
    out.counter("edge_context_basket_skus_dropped_total", "SKUs past a basket's bound.", basket.skus_dropped)
    out.counter("edge_context_baskets_evicted_total", "Baskets dropped for room.", basket.evicted)
    if trends.age_s is not None:
        out.gauge("edge_context_trends_age_seconds", "Since the local trends were last read.", trends.age_s)


def _pickup(report: HealthReport, out: Families) -> None:
    pickup = report.pickup
    out.gauge(
        "edge_pickup_orders_open", "Online orders ready for pickup here, not collected.", pickup.open_orders
    )
    out.gauge("edge_pickup_listed", "Orders on the collection-point screens now.", pickup.listed)
    out.counter(
        "edge_pickup_shown_total",
        "Check-ins that put ready orders on the collection-point screens.",
        pickup.shown,
    )
    for via in ("pos", "staff"):
        out.counter(
            "edge_pickup_collected_total",
            "Orders handed over, by how.",
            pickup.collected.get(via, 0),
            {"via": via},
        )


def _flow(report: HealthReport, out: Families) -> None:
    flow = report.flow
    out.counter("edge_checkins_total", "Check-ins accepted.", flow.checkins)
    out.counter(
        "edge_checkins_redelivered_total",
        "Check-ins the broker delivered again after a crash or a lost connection (MQTT DUP), already done.",
        flow.redelivered,
    )
    out.counter("edge_decisions_total", "Decisions made.", report.decider.decisions)
    out.counter(
        "edge_decisions_unrecorded_total",
        "Presence-driven or pending decisions the ledger could not record (not shown).",
        flow.unrecorded,
    )
    behind = None if report.clock is None else report.clock.behind_s
    out.gauge(
        "edge_clock_behind_seconds",
        "How far the wall clock is behind the highest time this gateway has seen.",
        behind,
    )
    out.counter("edge_exposures_total", "Exposures acknowledged by displays.", flow.exposures)
    out.counter(
        "edge_acks_failed_total",
        'Display acks with status "failed" (the content could not be shown).',
        flow.acks_failed,
    )
    out.counter(
        "edge_exposures_shown_at_replaced_total",
        "Exposures dated by the ack's arrival: the display's shown_at could not be true (its clock).",
        flow.shown_at_replaced,
    )
    pos_help = "POS sales recorded, by whether the shopper is identified."
    out.counter("edge_pos_transactions_total", pos_help, report.pos.identified, {"identified": "true"})
    out.counter("edge_pos_transactions_total", pos_help, report.pos.anonymous, {"identified": "false"})
    out.gauge(*_SIGNAL, report.last_checkin_age_s, {"signal": "checkin"})
    out.counter("edge_tokens_accepted_total", "Check-in tokens verified.", report.tokens.accepted)
    rejected = {str(reason): count for reason, count in report.tokens.rejected.items()}
    out.counters("edge_tokens_rejected_total", "Check-in tokens refused, by reason.", rejected, "reason")
    for display, shown in report.displays.items():
        labels = {"display": display}
        out.gauge(
            "edge_display_online", "1 when the display reports itself online.", int(shown.online), labels
        )
        out.gauge(
            "edge_display_version", "The version of the display's current manifest.", shown.version, labels
        )
        out.gauge(
            "edge_display_pending",
            "1 when a request waits for the display's minimum time.",
            int(shown.pending),
            labels,
        )
        out.counter(
            "edge_display_acks_failed_total",
            'Acks with status "failed" from the display.',
            flow.acks_failed_by_display.get(display, 0),
            labels,
        )


def _ledger(ledger: LedgerStats, out: Families) -> None:
    out.counter(
        "edge_ledger_batches_committed_total", "Ledger transactions committed.", ledger.batches_committed
    )
    out.counter(
        "edge_ledger_batches_split_total",
        "Ledger batches that failed and were retried op by op.",
        ledger.batches_split,
    )
    out.counter("edge_ledger_ops_committed_total", "Ledger write operations committed.", ledger.ops_committed)
    out.counter("edge_ledger_ops_failed_total", "Ledger write operations that failed.", ledger.ops_failed)
    out.counter("edge_ledger_rows_written_total", "Rows the ledger's writes changed.", ledger.rows_written)
    out.counter(
        "edge_ledger_backpressure_waits_total",
        "Writes that waited for room in the full ledger queue.",
        ledger.backpressure_waits,
    )
    out.gauge("edge_queue_capacity", "The bound of a queue, by queue.", ledger.queue_max, {"queue": "ledger"})
    out.gauge("edge_ledger_largest_batch", "The largest batch committed so far.", ledger.largest_batch)
    out.gauge(
        "edge_ledger_last_commit_seconds",
        "How long the last ledger transaction took.",
        ledger.last_commit_ms / 1000.0,
    )
    for outcome in _LEDGER_OUTCOMES:
        out.counter(
            "edge_ledger_outcomes_total",
            "Writes the ledger absorbed without effect, by outcome (duplicates, replays, stale consents).",
            getattr(ledger, outcome),
            {"outcome": outcome},
        )
    out.gauge(
        "edge_ledger_corrupt_recovered",
        "1 when a corrupt database was moved aside at start.",
        int(ledger.corrupt_recovered),
    )
    purge = ledger.purge
    out.counter("edge_ledger_purges_total", 'Retention purges run (docs/ledger.md "Retention").', purge.runs)
    for table, rows in purge.removed.items():
        out.counter(
            "edge_ledger_purged_rows_total",
            "Rows retention deleted, by table (profiles, shopper_seen: evicted; corrupt_files: files).",
            rows,
            {"table": table},
        )
    out.counter(
        "edge_ledger_vacuumed_pages_total",
        "Free pages the purges gave back to the file system (incremental vacuum).",
        purge.vacuumed_pages,
    )


def _sync(sync: SyncStats, out: Families) -> None:
    outbox, push, pull = sync.outbox, sync.push, sync.pull
    out.gauge(
        "edge_sync_backlog_events",
        "Events in the cloud outbox not yet acknowledged by the cloud.",
        sync.backlog,
    )
    out.gauge("edge_sync_cloud_down", "1 while the cloud is unreachable.", int(sync.cloud_down))
    out.gauge("edge_sync_outbox_bytes", "Bytes of events in the cloud outbox.", outbox.bytes)
    out.gauge("edge_sync_outbox_max_bytes", "The cloud outbox's byte bound.", outbox.max_bytes)
    out.gauge(
        "edge_sync_outbox_over_bound",
        "1 when never-dropped events alone exceed the outbox bound.",
        int(outbox.over_bound),
    )
    out.gauge(
        "edge_sync_outbox_oldest_age_seconds",
        "Age of the oldest event waiting for the cloud.",
        outbox.oldest_age_s,
    )
    for cls, figures in outbox.by_class.items():
        labels = {"class": cls}
        out.gauge("edge_sync_outbox_events", "Events in the cloud outbox, by class.", figures.events, labels)
        out.counter(
            "edge_sync_outbox_dropped_total",
            "Events the cloud outbox dropped at its byte bound, by class.",
            figures.dropped,
            labels,
        )
    for direction, failures, age in (
        ("push", push.failures, push.last_success_age_s),
        ("pull", pull.failures, pull.last_success_age_s),
    ):
        for kind, count in failures.items():
            out.counter(
                "edge_sync_failures_total",
                "Failed cloud requests, by direction and kind.",
                count,
                {"direction": direction, "kind": kind},
            )
        out.gauge(*_SIGNAL, age, {"signal": f"sync_{direction}"})
    out.counter("edge_sync_push_batches_total", "Batches the cloud answered for.", push.batches)
    out.counter("edge_sync_push_events_total", "Events sent to the cloud.", push.events)
    for result in _PUSH_RESULTS:
        help_text = "Pushed events by the cloud's answer."
        out.counter("edge_sync_push_results_total", help_text, getattr(push, result), {"result": result})
    for cls, count in sync.parked.by_class.items():
        out.gauge(
            "edge_sync_parked_events",
            "Events the cloud refused, kept in the outbox and retried alone, by class.",
            count,
            {"class": cls},
        )
    out.gauge(
        "edge_sync_dead_letter_events",
        "Telemetry events given up (refused by name) held in the dead-letter table.",
        sync.dead_letter.events,
    )
    out.counter(
        "edge_sync_dead_letter_total",
        "Telemetry events ever given up for a refusal by name.",
        sync.dead_letter.given_up,
    )
    out.counter(
        "edge_sync_retry_after_total", "Push retries whose wait a Retry-After header set.", push.retry_after
    )
    out.counter("edge_sync_pull_pages_total", "Change pages applied.", pull.pages)
    out.counter("edge_sync_pull_changes_total", "Cloud changes applied.", pull.changes)
    out.counter("edge_sync_pull_resets_total", "Cursor resets (full resyncs).", pull.resets)
    out.counters(
        "edge_sync_pull_rejected_total",
        "Cloud changes skipped as malformed, by reason.",
        pull.rejected,
        "reason",
    )
    profiles = sync.profiles
    out.gauge("edge_sync_profile_fetches_inflight", "Profile fetches in flight.", profiles.inflight)
    out.gauge(
        "edge_sync_profiles_unknown_cached",
        "Shoppers the cloud does not know, remembered for a while.",
        profiles.unknown_cached,
    )
    out.counters(
        "edge_sync_profile_fetches_total",
        "Profile fetches on cache misses, by outcome.",
        profiles.outcomes,
        "outcome",
    )


def _ble(ble: BleReport, out: Families) -> None:
    scanner, ingest = ble.scanner, ble.flow.ingest
    if scanner is not None:
        out.gauge(
            "edge_ble_scanner_state",
            "The local scanner's state (1 for the current one).",
            1,
            {"state": scanner.state},
        )
        out.counter("edge_ble_scanner_adverts_total", "Adverts the local scanner heard.", scanner.adverts)
        out.gauge(*_DEPTH, scanner.queue_depth, {"queue": "ble_adverts"})
        out.counter(*_DROPPED, scanner.drops, {"queue": "ble_adverts"})
        for event in _SCANNER_EVENTS:
            out.counter(
                "edge_ble_scanner_events_total",
                "Scanner lifecycle events: starts, restarts, adapter power cycles, bluetoothd restarts.",
                getattr(scanner, event),
                {"event": event},
            )
        out.counters("edge_ble_scanner_errors_total", "Scanner faults, by kind.", scanner.errors, "kind")
        out.gauge(*_SIGNAL, scanner.last_advert_age_s, {"signal": "ble_advert"})
    out.counters(
        "edge_ble_adverts_total",
        "Adverts through ingest: identified, store_beacon, anonymous.",
        ingest.adverts,
        "outcome",
    )
    out.counters(
        "edge_ble_frames_rejected_total", "Malformed BLE frames, by reason.", ingest.frames_rejected, "reason"
    )
    presence = ingest.presence
    out.gauge("edge_ble_tracked_shoppers", "Consenting shoppers BLE presence tracks now.", presence.tracked)
    out.counters(
        "edge_ble_presence_events_total",
        "BLE presence events and refusals, by kind.",
        presence.counts,
        "event",
    )
    for key in _EID_SIZES:
        out.gauge(
            "edge_ble_eid_entries",
            "EID resolver sizes: keys, active shoppers, table entries.",
            getattr(ingest.eid, key),
            {"kind": key},
        )
    for key in _EID_EVENTS:
        out.counter(
            "edge_ble_eid_events_total", "EID resolver events.", getattr(ingest.eid, key), {"event": key}
        )
    for beacon in ingest.beacons:
        labels = {"beacon": beacon.name, "zone": beacon.zone}
        out.gauge(
            "edge_ble_beacon_last_seen_age_seconds",
            "Seconds since the store beacon was last heard.",
            beacon.last_seen_age_s,
            labels,
        )
        out.gauge(
            "edge_ble_beacon_missing", "1 when the store beacon is missing.", int(beacon.missing), labels
        )
        volts = None if beacon.battery_mv is None else beacon.battery_mv / 1000.0
        out.gauge(
            "edge_ble_beacon_battery_volts", "The store beacon's battery (Eddystone TLM).", volts, labels
        )
    out.counters(
        "edge_ble_flow_events_total",
        "BLE presence changes into the flow (enter, leave, ...).",
        ble.flow.events,
        "event",
    )


def _devices(devices: DevicesStats, out: Families) -> None:
    for device in devices.devices:
        labels, plan = {"device": device.id}, device.plan
        out.counter("edge_device_commands_total", "Commands sent to a smart device.", plan.commands, labels)
        out.counter(
            "edge_device_deferred_total",
            "Changes held back by the device's min_interval_s (sent when it ended).",
            plan.deferred,
            labels,
        )
        out.counter(
            "edge_device_mismatches_total",
            "Commands whose state the device did not report within confirm_s.",
            plan.mismatches,
            labels,
        )
        out.counter(
            "edge_device_bad_messages_total",
            "State or availability messages of the device that could not be read.",
            device.bad_messages,
            labels,
        )
        if plan.available is not None:
            out.gauge(
                "edge_device_available", "1 if the device says it is online.", int(plan.available), labels
            )
        out.gauge(
            "edge_device_personal",
            "1 while the device holds the preferences of people in its zone.",
            int(plan.personal),
            labels,
        )


def _camera(camera: CameraFlowStats, out: Families) -> None:
    labels, capture = {"camera": camera.id}, camera.capture
    out.gauge("edge_camera_fps", "Good frames per second, recent window.", capture.fps, labels)
    out.counter("edge_camera_frames_total", "Good frames captured.", capture.frames, labels)
    out.counter(
        "edge_camera_frames_skipped_total",
        "Frames replaced before analysis took them (analysis slower than the camera).",
        capture.skipped,
        labels,
    )
    for fault in _CAMERA_FAULTS:
        help_text = "Camera faults, by kind."
        out.counter(
            "edge_camera_faults_total", help_text, getattr(capture, fault), {**labels, "fault": fault}
        )
    out.gauge(
        "edge_camera_state",
        "The capture's state (1 for the current one).",
        1,
        {**labels, "state": capture.state},
    )
    out.gauge(*_SIGNAL, capture.last_frame_age_s, {"signal": f"camera:{camera.id}"})
    out.gauge("edge_camera_people", "People in view (anonymous count).", camera.people, labels)
    for direction, count in (("entered", camera.entered), ("left", camera.left)):
        out.counter(
            "edge_camera_people_total",
            "People who entered or left the view.",
            count,
            {**labels, "direction": direction},
        )
    out.gauge("edge_camera_mean_dwell_seconds", "Mean dwell of people in view.", camera.mean_dwell_s, labels)
    for event, count in camera.counters.items():
        out.counter(
            "edge_camera_events_total",
            "Camera analysis events (QR check-ins, refusals, ...), by kind.",
            count,
            {**labels, "event": event},
        )
