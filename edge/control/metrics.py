"""Prometheus metrics on a local port: per-stage latency histograms and the gateway's health at scrape time.

Two halves with opposite budgets (docs/metrics.md):

* the hot path: ``Histogram.observe`` is a bisect over a tuple and two in-place adds, no lock, no string,
  no allocation beyond the float the caller measured. Each histogram has one writer (the event loop, or the
  decision thread for ``decision``), so no lock is needed; a scrape copies the bucket list in one step and
  derives ``_count`` from the copy, so a scrape is always self-consistent.
* the scrape: the health dict (``Gateway.health()``, the same one published on ``gateway/health``) is turned
  into gauges and counters only when Prometheus asks, so nothing on the hot path pays for it.

The text exposition (format 0.0.4) is written here rather than with ``prometheus_client``, whose
``Histogram.observe`` takes a lock per bucket increment (~0.8 us on a fast x86, several on a Pi) and keeps a
process-global registry; this module measures ~0.2 us per observation and owns no global state.
"""

from __future__ import annotations

import json
import logging
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

# The stages timed on the hot path; docs/metrics.md says where each one starts and ends.
STAGES: Final = ("checkin", "decision", "ledger_batch", "ble_advert", "sync_push")
# Upper bounds in seconds, 50 us .. 1 s: a decision is ~25 us, a check-in ~3 ms, a cloud push ~100 ms.
BUCKETS_S: Final = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
STAGE_FAMILY: Final = "edge_stage_latency_seconds"

Health = Callable[[], Mapping[str, Any]]


class Histogram:
    """A cumulative-bucket latency histogram in seconds; ``observe`` is the only hot-path call."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float] = BUCKETS_S) -> None:
        values = tuple(float(bound) for bound in bounds)
        if (
            not values
            or any(not math.isfinite(b) or b <= 0 for b in values)
            or list(values) != sorted(values)
        ):
            raise ValueError("bucket bounds must be finite, positive and increasing")
        if len(set(values)) != len(values):
            raise ValueError("bucket bounds must be distinct")
        self.bounds = values
        # counts[i] holds observations in (bounds[i-1], bounds[i]]; the last slot is above every bound (+Inf).
        self.counts = [0] * (len(values) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def snapshot(self) -> tuple[list[int], int, float]:
        """(cumulative count per bound and +Inf, total count, sum); consistent with itself."""
        counts = self.counts.copy()  # one C call: atomic with respect to the writer thread
        total = self.sum
        cumulative = []
        running = 0
        for count in counts:
            running += count
            cumulative.append(running)
        return cumulative, running, total


class Metrics:
    """One per gateway: a latency histogram per stage, handed to the components that time a stage.

    Components hold it as ``metrics: Metrics | None`` and call ``metrics.<stage>.observe(seconds)``.
    """

    __slots__ = ("_bounds", "ble_advert", "checkin", "decision", "ledger_batch", "stages", "sync_push")

    def __init__(self, buckets: Iterable[float] = BUCKETS_S) -> None:
        self._bounds = tuple(buckets)
        self.checkin = Histogram(self._bounds)
        self.decision = Histogram(self._bounds)
        self.ledger_batch = Histogram(self._bounds)
        self.ble_advert = Histogram(self._bounds)
        self.sync_push = Histogram(self._bounds)
        self.stages: dict[str, Histogram] = {
            "checkin": self.checkin,
            "decision": self.decision,
            "ledger_batch": self.ledger_batch,
            "ble_advert": self.ble_advert,
            "sync_push": self.sync_push,
        }

    def observe(self, stage: str, seconds: float) -> None:
        """By name (one dict lookup more than ``metrics.<stage>.observe``); KeyError for an unknown stage."""
        self.stages[stage].observe(seconds)

    def stage(self, name: str) -> Histogram:
        """The histogram of ``name``, created on first use (for stages beyond the built-in ones)."""
        histogram = self.stages.get(name)
        if histogram is None:
            histogram = self.stages[name] = Histogram(self._bounds)
        return histogram


# ----- the text exposition -----------------------------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Exposition:
    """Samples grouped by family (HELP and TYPE once each), rendered as text format 0.0.4."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(
        self,
        name: str,
        kind: str,
        help_text: str,
        value: float | None,
        labels: Mapping[str, str] | None = None,
        *,
        suffix: str = "",
    ) -> None:
        """One sample of family ``name``; a None value is left out (unknown is absent, not zero)."""
        if value is None:
            return
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = (kind, help_text, [])
        if labels:
            rendered = ",".join(f'{key}="{_escape_label(str(val))}"' for key, val in labels.items())
            family[2].append(f"{name}{suffix}{{{rendered}}} {format_value(value)}")
        else:
            family[2].append(f"{name}{suffix} {format_value(value)}")

    def add_each(self, name: str, kind: str, help_text: str, values: Mapping[Any, Any], label: str) -> None:
        """One sample per entry of ``values`` (a health counter by reason, kind...), labelled by its key."""
        for key, value in values.items():
            self.add(name, kind, help_text, _num(value), {label: str(key)})

    def histogram(self, name: str, help_text: str, histogram: Histogram, labels: Mapping[str, str]) -> None:
        cumulative, count, total = histogram.snapshot()
        for bound, running in zip((*histogram.bounds, math.inf), cumulative, strict=True):
            self.add(
                name, "histogram", help_text, running, {**labels, "le": format_value(bound)}, suffix="_bucket"
            )
        self.add(name, "histogram", help_text, total, labels, suffix="_sum")
        self.add(name, "histogram", help_text, count, labels, suffix="_count")

    def text(self) -> str:
        lines = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def collect_stages(metrics: Metrics, out: Exposition) -> None:
    for stage, histogram in metrics.stages.items():
        out.histogram(
            STAGE_FAMILY,
            "Latency of one pass through a stage of the gateway, by stage (docs/metrics.md).",
            histogram,
            {"stage": stage},
        )


# ----- the health dict -> gauges and counters (scrape time only) ----------------------------------------------


def _num(value: object) -> float | None:
    """A number from the health dict (bools as 0/1); anything else (None, text, containers) is None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    return None


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def alert_name(alert: str) -> str:
    """The alert's kind: the text before the first colon ("mqtt_outbox_dropped: 3 messages")."""
    return alert.split(":", 1)[0].strip() or "alert"


def unhealthy_reasons(health: Mapping[str, Any]) -> list[str]:
    """Why /healthz answers 503: the broker not connected, and every alert by kind; empty when healthy."""
    reasons = []
    state = _dict(health.get("mqtt")).get("state")
    if state != "connected":
        reasons.append(f"mqtt_{state or 'unknown'}")
    alerts = health.get("alerts")
    if isinstance(alerts, list):
        reasons.extend(alert_name(str(alert)) for alert in alerts)
    return reasons


_MQTT_SKIP: Final = frozenset({"state", "outbox"})
_LEDGER_COUNTERS: Final = {
    "batches_committed": ("edge_ledger_batches_committed_total", "Ledger transactions committed."),
    "batches_split": (
        "edge_ledger_batches_split_total",
        "Ledger batches that failed and were retried op by op.",
    ),
    "ops_committed": ("edge_ledger_ops_committed_total", "Ledger write operations committed."),
    "ops_failed": ("edge_ledger_ops_failed_total", "Ledger write operations that failed."),
    "rows_written": ("edge_ledger_rows_written_total", "Rows the ledger's writes changed."),
    "backpressure_waits": (
        "edge_ledger_backpressure_waits_total",
        "Writes that waited for room in the full ledger queue.",
    ),
}
_ACK_COUNTERS: Final = {
    "failed": (
        "edge_acks_failed_total",
        'Display acks with status "failed" (the content could not be shown).',
    ),
    "shown_at_replaced": (
        "edge_exposures_shown_at_replaced_total",
        "Exposures dated by the ack's arrival: the display's shown_at could not be true (its clock).",
    ),
}
_LEDGER_OUTCOMES: Final = (
    "decision_duplicates",
    "exposure_duplicates",
    "exposure_unknown_decision",
    "jti_replays",
    "consent_stale",
)
_SIGNAL = (
    "edge_last_signal_age_seconds",
    "gauge",
    "Seconds since the last signal of each kind was received.",
)
_DROPPED = ("edge_dropped_total", "counter", "Items a bounded queue dropped, by queue.")
_DEPTH = ("edge_queue_depth", "gauge", "Items waiting in a bounded queue, by queue.")


def collect_health(health: Mapping[str, Any], out: Exposition) -> None:
    """Turn ``Gateway.health()`` into samples; missing or None parts are left out, never guessed."""
    out.add(
        "edge_gateway_info",
        "gauge",
        "The gateway's software, configuration and model versions (always 1).",
        1,
        {
            "version": str(health.get("version") or ""),
            "config_version": str(health.get("config_version") or ""),
            "model_version": str(health.get("model_version") or ""),
        },
    )
    out.add(
        "edge_uptime_seconds", "gauge", "Seconds since the gateway started.", _num(health.get("uptime_s"))
    )
    reasons = unhealthy_reasons(health)
    out.add(
        "edge_healthy", "gauge", "1 when /healthz answers 200 (broker connected, no alert).", int(not reasons)
    )
    alerts = health.get("alerts")
    alerts = alerts if isinstance(alerts, list) else []
    out.add(
        "edge_alerts", "gauge", "Conditions an operator must look at (gateway/health alerts).", len(alerts)
    )
    for name in sorted({alert_name(str(alert)) for alert in alerts}):
        out.add("edge_alert", "gauge", "1 for each kind of alert that is raised now.", 1, {"alert": name})
    _collect_mqtt(_dict(health.get("mqtt")), out)
    _collect_ledger(_dict(health.get("ledger")), out)
    for queue, depth in _dict(health.get("queues")).items():
        out.add(*_DEPTH, _num(depth), {"queue": str(queue)})
    drops = _dict(health.get("drops"))
    out.add(*_DROPPED, _num(drops.get("mqtt_outbox")), {"queue": "mqtt_outbox"})
    for key, count in _dict(drops.get("rejected")).items():
        kind, _, reason = str(key).partition(".")
        out.add(
            "edge_rejected_total",
            "counter",
            "Inbound messages refused, by kind of message and reason.",
            _num(count),
            {"kind": kind, "reason": reason},
        )
    out.add("edge_checkins_total", "counter", "Check-ins accepted.", _num(health.get("checkins")))
    out.add(
        "edge_checkins_redelivered_total",
        "counter",
        "Check-ins the broker delivered again after a crash or a lost connection (MQTT DUP), already done.",
        _num(health.get("checkins_redelivered")),
    )
    out.add("edge_decisions_total", "counter", "Decisions made.", _num(health.get("decisions")))
    out.add(
        "edge_decisions_unrecorded_total",
        "counter",
        "Presence-driven or pending decisions the ledger could not record (not shown).",
        _num(health.get("decisions_unrecorded")),
    )
    out.add(
        "edge_clock_behind_seconds",
        "gauge",
        "How far the wall clock is behind the highest time this gateway has seen.",
        _num(_dict(health.get("clock")).get("behind_s")),
    )
    out.add(
        "edge_exposures_total",
        "counter",
        "Exposures acknowledged by displays.",
        _num(health.get("exposures")),
    )
    acks = _dict(health.get("acks"))
    for key, (name, help_text) in _ACK_COUNTERS.items():
        out.add(name, "counter", help_text, _num(acks.get(key)))
    pos = _dict(health.get("pos"))
    for identified, key in (("true", "identified"), ("false", "anonymous")):
        out.add(
            "edge_pos_transactions_total",
            "counter",
            "POS sales recorded, by whether the shopper is identified.",
            _num(pos.get(key)),
            {"identified": identified},
        )
    out.add(*_SIGNAL, _num(health.get("last_checkin_age_s")), {"signal": "checkin"})
    tokens = _dict(health.get("tokens"))
    out.add(
        "edge_tokens_accepted_total", "counter", "Check-in tokens verified.", _num(tokens.get("accepted"))
    )
    out.add_each(
        "edge_tokens_rejected_total",
        "counter",
        "Check-in tokens refused, by reason.",
        _dict(tokens.get("rejected")),
        "reason",
    )
    for display, shown in _dict(health.get("displays")).items():
        screen = _dict(shown)
        labels = {"display": str(display)}
        out.add(
            "edge_display_online",
            "gauge",
            "1 when the display reports itself online.",
            _num(screen.get("online")),
            labels,
        )
        out.add(
            "edge_display_version",
            "gauge",
            "The version of the display's current manifest.",
            _num(screen.get("version")),
            labels,
        )
        out.add(
            "edge_display_pending",
            "gauge",
            "1 when a request waits for the display's minimum time.",
            _num(screen.get("pending")),
            labels,
        )
        out.add(
            "edge_display_acks_failed_total",
            "counter",
            'Acks with status "failed" from the display.',
            _num(screen.get("acks_failed")),
            labels,
        )
    out.add(
        "edge_sync_backlog_events",
        "gauge",
        "Events in the cloud outbox not yet acknowledged by the cloud.",
        _num(health.get("sync_backlog")),
    )
    _collect_sync(_dict(health.get("sync")), out)
    _collect_ble(_dict(health.get("ble")), out)
    for camera, stats in _dict(health.get("cameras")).items():
        _collect_camera(str(camera), _dict(stats), out)


def _collect_mqtt(mqtt: Mapping[str, Any], out: Exposition) -> None:
    state = mqtt.get("state")
    if state is None:
        return
    out.add("edge_mqtt_connected", "gauge", "1 while the broker connection is up.", int(state == "connected"))
    out.add(
        "edge_mqtt_state",
        "gauge",
        "The broker link's state (1 for the current one).",
        1,
        {"state": str(state)},
    )
    for key, count in mqtt.items():
        if key not in _MQTT_SKIP:
            out.add(
                "edge_mqtt_events_total",
                "counter",
                "Broker link events: received, published, deferred, oversized, handler_errors, "
                "outbox_dropped, connect_failures, disconnects (reconnects).",
                _num(count),
                {"event": str(key)},
            )


def _collect_ledger(ledger: Mapping[str, Any], out: Exposition) -> None:
    for key, (name, help_text) in _LEDGER_COUNTERS.items():
        out.add(name, "counter", help_text, _num(ledger.get(key)))
    out.add(
        "edge_queue_capacity",
        "gauge",
        "The bound of a queue, by queue.",
        _num(ledger.get("queue_max")),
        {"queue": "ledger"},
    )
    out.add(
        "edge_ledger_largest_batch",
        "gauge",
        "The largest batch committed so far.",
        _num(ledger.get("largest_batch")),
    )
    last_ms = _num(ledger.get("last_commit_ms"))
    out.add(
        "edge_ledger_last_commit_seconds",
        "gauge",
        "How long the last ledger transaction took.",
        None if last_ms is None else last_ms / 1000.0,
    )
    for outcome in _LEDGER_OUTCOMES:
        out.add(
            "edge_ledger_outcomes_total",
            "counter",
            "Writes the ledger absorbed without effect, by outcome (duplicates, replays, stale consents).",
            _num(ledger.get(outcome)),
            {"outcome": outcome},
        )
    out.add(
        "edge_ledger_corrupt_recovered",
        "gauge",
        "1 when a corrupt database was moved aside at start.",
        _num(ledger.get("corrupt_recovered")),
    )


def _collect_sync(sync: Mapping[str, Any], out: Exposition) -> None:
    if not sync:
        return
    out.add(
        "edge_sync_cloud_down", "gauge", "1 while the cloud is unreachable.", _num(sync.get("cloud_down"))
    )
    outbox = _dict(sync.get("outbox"))
    out.add(
        "edge_sync_outbox_bytes", "gauge", "Bytes of events in the cloud outbox.", _num(outbox.get("bytes"))
    )
    out.add(
        "edge_sync_outbox_max_bytes", "gauge", "The cloud outbox's byte bound.", _num(outbox.get("max_bytes"))
    )
    out.add(
        "edge_sync_outbox_over_bound",
        "gauge",
        "1 when never-dropped events alone exceed the outbox bound.",
        _num(outbox.get("over_bound")),
    )
    out.add(
        "edge_sync_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest event waiting for the cloud.",
        _num(outbox.get("oldest_age_s")),
    )
    for cls, by_class in _dict(outbox.get("by_class")).items():
        figures = _dict(by_class)
        labels = {"class": str(cls)}
        out.add(
            "edge_sync_outbox_events",
            "gauge",
            "Events in the cloud outbox, by class.",
            _num(figures.get("events")),
            labels,
        )
        out.add(
            "edge_sync_outbox_dropped_total",
            "counter",
            "Events the cloud outbox dropped at its byte bound, by class.",
            _num(figures.get("dropped")),
            labels,
        )
    for direction in ("push", "pull"):
        part = _dict(sync.get(direction))
        for kind, count in _dict(part.get("failures")).items():
            out.add(
                "edge_sync_failures_total",
                "counter",
                "Failed cloud requests, by direction and kind.",
                _num(count),
                {"direction": direction, "kind": str(kind)},
            )
        out.add(*_SIGNAL, _num(part.get("last_success_age_s")), {"signal": f"sync_{direction}"})
    push = _dict(sync.get("push"))
    out.add(
        "edge_sync_push_batches_total",
        "counter",
        "Batches the cloud answered for.",
        _num(push.get("batches")),
    )
    out.add("edge_sync_push_events_total", "counter", "Events sent to the cloud.", _num(push.get("events")))
    for result in ("accepted", "duplicates", "rejected", "given_up", "parked"):
        out.add(
            "edge_sync_push_results_total",
            "counter",
            "Pushed events by the cloud's answer.",
            _num(push.get(result)),
            {"result": result},
        )
    _collect_refused(sync, out)
    pull = _dict(sync.get("pull"))
    out.add("edge_sync_pull_pages_total", "counter", "Change pages applied.", _num(pull.get("pages")))
    out.add("edge_sync_pull_changes_total", "counter", "Cloud changes applied.", _num(pull.get("changes")))
    out.add(
        "edge_sync_pull_resets_total", "counter", "Cursor resets (full resyncs).", _num(pull.get("resets"))
    )
    out.add("edge_sync_pull_cursor", "gauge", "The change cursor reached.", _num(pull.get("cursor")))
    out.add_each(
        "edge_sync_pull_rejected_total",
        "counter",
        "Cloud changes skipped as malformed, by reason.",
        _dict(pull.get("rejected")),
        "reason",
    )
    profiles = _dict(sync.get("profiles"))
    out.add(
        "edge_sync_profile_fetches_inflight",
        "gauge",
        "Profile fetches in flight.",
        _num(profiles.get("inflight")),
    )
    out.add(
        "edge_sync_profiles_unknown_cached",
        "gauge",
        "Shoppers the cloud does not know, remembered for a while.",
        _num(profiles.get("unknown_cached")),
    )
    for outcome, count in profiles.items():
        if outcome not in {"inflight", "unknown_cached"}:
            out.add(
                "edge_sync_profile_fetches_total",
                "counter",
                "Profile fetches on cache misses, by outcome.",
                _num(count),
                {"outcome": str(outcome)},
            )


def _collect_refused(sync: Mapping[str, Any], out: Exposition) -> None:
    """Events the cloud refused by name or failing alone: parked (kept, retried) and dead letters."""
    parked = _dict(sync.get("parked"))
    out.add_each(
        "edge_sync_parked_events",
        "gauge",
        "Events the cloud refused, kept in the outbox and retried alone, by class.",
        _dict(parked.get("by_class")),
        "class",
    )
    dead = _dict(sync.get("dead_letter"))
    out.add(
        "edge_sync_dead_letter_events",
        "gauge",
        "Telemetry events given up (refused by name) held in the dead-letter table.",
        _num(dead.get("events")),
    )
    out.add(
        "edge_sync_dead_letter_total",
        "counter",
        "Telemetry events ever given up for a refusal by name.",
        _num(dead.get("given_up")),
    )
    push = _dict(sync.get("push"))
    out.add(
        "edge_sync_retry_after_total",
        "counter",
        "Push retries whose wait a Retry-After header set.",
        _num(push.get("retry_after")),
    )


def _collect_ble(ble: Mapping[str, Any], out: Exposition) -> None:
    if not ble:
        return
    scanner = _dict(ble.get("scanner"))
    if scanner:
        out.add(
            "edge_ble_scanner_state",
            "gauge",
            "The local scanner's state (1 for the current one).",
            1,
            {"state": str(scanner.get("state"))},
        )
        out.add(
            "edge_ble_scanner_adverts_total",
            "counter",
            "Adverts the local scanner heard.",
            _num(scanner.get("adverts")),
        )
        out.add(*_DEPTH, _num(scanner.get("queue_depth")), {"queue": "ble_adverts"})
        out.add(*_DROPPED, _num(scanner.get("drops")), {"queue": "ble_adverts"})
        for event in ("starts", "restarts", "adapter_resets", "bluez_restarts", "passive_fallbacks"):
            out.add(
                "edge_ble_scanner_events_total",
                "counter",
                "Scanner lifecycle events: starts, restarts, adapter power cycles, bluetoothd restarts.",
                _num(scanner.get(event)),
                {"event": event},
            )
        out.add_each(
            "edge_ble_scanner_errors_total",
            "counter",
            "Scanner faults, by kind.",
            _dict(scanner.get("errors")),
            "kind",
        )
        out.add(*_SIGNAL, _num(scanner.get("last_advert_age_s")), {"signal": "ble_advert"})
    out.add_each(
        "edge_ble_adverts_total",
        "counter",
        "Adverts through ingest: identified, store_beacon, anonymous.",
        _dict(ble.get("adverts")),
        "outcome",
    )
    out.add_each(
        "edge_ble_frames_rejected_total",
        "counter",
        "Malformed BLE frames, by reason.",
        _dict(ble.get("frames_rejected")),
        "reason",
    )
    presence = _dict(ble.get("presence"))
    out.add(
        "edge_ble_tracked_shoppers",
        "gauge",
        "Consenting shoppers BLE presence tracks now.",
        _num(presence.get("tracked")),
    )
    for event, count in presence.items():
        if event != "tracked":
            out.add(
                "edge_ble_presence_events_total",
                "counter",
                "BLE presence events and refusals, by kind.",
                _num(count),
                {"event": str(event)},
            )
    eid = _dict(ble.get("eid"))
    for key in ("keys", "active", "table"):
        out.add(
            "edge_ble_eid_entries",
            "gauge",
            "EID resolver sizes: keys, active shoppers, table entries.",
            _num(eid.get(key)),
            {"kind": key},
        )
    for key in ("refreshes", "resolved", "unresolved", "collisions"):
        out.add(
            "edge_ble_eid_events_total", "counter", "EID resolver events.", _num(eid.get(key)), {"event": key}
        )
    beacons = ble.get("beacons")
    for heard in beacons if isinstance(beacons, list) else []:
        beacon = _dict(heard)
        labels = {"beacon": str(beacon.get("name")), "zone": str(beacon.get("zone"))}
        out.add(
            "edge_ble_beacon_last_seen_age_seconds",
            "gauge",
            "Seconds since the store beacon was last heard.",
            _num(beacon.get("last_seen_age_s")),
            labels,
        )
        out.add(
            "edge_ble_beacon_missing",
            "gauge",
            "1 when the store beacon is missing.",
            _num(beacon.get("missing")),
            labels,
        )
        battery = _num(beacon.get("battery_mv"))
        out.add(
            "edge_ble_beacon_battery_volts",
            "gauge",
            "The store beacon's battery (Eddystone TLM).",
            None if battery is None else battery / 1000.0,
            labels,
        )
    out.add_each(
        "edge_ble_flow_events_total",
        "counter",
        "BLE presence changes into the flow (enter, leave, ...).",
        _dict(ble.get("events")),
        "event",
    )


_CAMERA_FAULTS: Final = ("corrupt", "read_failures", "errors", "reopens")
_CAMERA_KNOWN: Final = frozenset({"zone", "capture", "people", "entered", "left", "mean_dwell_s"})


def _collect_camera(camera: str, stats: Mapping[str, Any], out: Exposition) -> None:
    labels = {"camera": camera}
    capture = _dict(stats.get("capture"))
    out.add(
        "edge_camera_fps", "gauge", "Good frames per second, recent window.", _num(capture.get("fps")), labels
    )
    out.add(
        "edge_camera_frames_total", "counter", "Good frames captured.", _num(capture.get("frames")), labels
    )
    out.add(
        "edge_camera_frames_skipped_total",
        "counter",
        "Frames replaced before analysis took them (analysis slower than the camera).",
        _num(capture.get("skipped")),
        labels,
    )
    for fault in _CAMERA_FAULTS:
        out.add(
            "edge_camera_faults_total",
            "counter",
            "Camera faults, by kind.",
            _num(capture.get(fault)),
            {**labels, "fault": fault},
        )
    if "state" in capture:
        out.add(
            "edge_camera_state",
            "gauge",
            "The capture's state (1 for the current one).",
            1,
            {**labels, "state": str(capture["state"])},
        )
    out.add(*_SIGNAL, _num(capture.get("last_frame_age_s")), {"signal": f"camera:{camera}"})
    out.add(
        "edge_camera_people", "gauge", "People in view (anonymous count).", _num(stats.get("people")), labels
    )
    for direction in ("entered", "left"):
        out.add(
            "edge_camera_people_total",
            "counter",
            "People who entered or left the view.",
            _num(stats.get(direction)),
            {**labels, "direction": direction},
        )
    out.add(
        "edge_camera_mean_dwell_seconds",
        "gauge",
        "Mean dwell of people in view.",
        _num(stats.get("mean_dwell_s")),
        labels,
    )
    for event, count in stats.items():
        if event not in _CAMERA_KNOWN:
            out.add(
                "edge_camera_events_total",
                "counter",
                "Camera analysis events (QR check-ins, refusals, ...), by kind.",
                _num(count),
                {**labels, "event": str(event)},
            )


def render(metrics: Metrics, health: Mapping[str, Any] | None) -> str:
    """The whole exposition: stage histograms, then the health (left out if it could not be read)."""
    out = Exposition()
    collect_stages(metrics, out)
    out.add(
        "edge_health_collected",
        "gauge",
        "1 when the gateway's health could be read for this scrape.",
        int(health is not None),
    )
    if health is not None:
        collect_health(health, out)
    return out.text()


# ----- the HTTP endpoint -------------------------------------------------------------------------------------


class MetricsServer:
    """GET /metrics (Prometheus text 0.0.4) and GET /healthz on ``host:port`` (port 0: any free port).

    aiohttp is imported at ``start``: a gateway with the endpoint off (``metrics_port = 0``) never loads it.
    """

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        self.metrics = metrics
        self._health = health
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from aiohttp import web  # noqa: PLC0415 - loaded only when the endpoint is on

        if self._runner is not None:
            raise RuntimeError("metrics server already started")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        # No access log: a scrape every 15 s would be most of the journal.
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _read_health(self) -> Mapping[str, Any] | None:
        try:
            return self._health()
        except Exception:  # a scrape must answer; the failure shows in the metrics and the log
            log.warning("metrics: the gateway's health could not be read", exc_info=True)
            return None

    async def _metrics(self, _request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - already loaded by start()

        body = render(self.metrics, self._read_health()).encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, _request: web.Request) -> web.Response:
        from aiohttp import web  # noqa: PLC0415 - already loaded by start()

        health = self._read_health()
        reasons = ["health_unreadable"] if health is None else unhealthy_reasons(health)
        body: dict[str, Any] = (
            {"status": "ok"} if not reasons else {"status": "unhealthy", "reasons": reasons}
        )
        return web.Response(
            text=json.dumps(body), status=200 if not reasons else 503, content_type="application/json"
        )
