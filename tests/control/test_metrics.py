"""The Prometheus endpoint for real: an aiohttp server on a free loopback port, scraped over HTTP and parsed.

Stage histograms (buckets, counts, sums), the health dict as gauges and counters, /healthz 200/503, and the
hooks of the real gateway (check-in, decision, ledger batch, BLE advert, cloud push) feeding the histograms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import pytest

from edge import __version__
from edge.control.health import DEAD_LETTER_ALERT_S, refused_alerts
from edge.control.metrics import BUCKETS_S, CONTENT_TYPE, Histogram, Metrics, MetricsServer
from edge.ledger.writer import BatchWriter, Tx, WriterCounters
from tests.support.broker import Mosquitto, free_port
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section

CONTENT = f"{ROOT}/display/screen-cafe/content"
STAGE = "edge_stage_latency_seconds"

# ----- a small parser of the text format 0.0.4 ---------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_SUFFIXES = ("_bucket", "_sum", "_count")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Scrape:
    """Samples by (name, labels) and family types; refuses anything malformed as it parses."""

    def __init__(self, text: str) -> None:
        self.samples: Samples = {}
        self.types: dict[str, str] = {}
        helps: set[str] = set()
        finished: set[str] = set()
        current = ""
        assert text.endswith("\n")
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name = line.split(" ", 3)[2]
                assert name not in helps, f"HELP twice for {name}"
                helps.add(name)
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                assert name not in self.types, f"TYPE twice for {name}"
                assert kind in {"counter", "gauge", "histogram"}
                self.types[name] = kind
                if current:
                    finished.add(current)
                current = name
                continue
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, raw_labels, raw_value = match.groups()
            family = self._family(name)
            assert family == current and family not in finished, f"{name} outside its family's block"
            labels: dict[str, str] = {}
            if raw_labels:
                consumed = "".join(m.group(0) for m in _LABEL.finditer(raw_labels))
                assert consumed == raw_labels, f"bad labels: {raw_labels!r}"
                labels = {m.group(1): m.group(2) for m in _LABEL.finditer(raw_labels)}
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, f"duplicate sample {line!r}"
            self.samples[key] = float(raw_value)
        assert helps == set(self.types)

    def _family(self, name: str) -> str:
        for suffix in _SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and self.types.get(base) == "histogram":
                return base
        return name

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        found = self.get(name, **labels)
        assert found is not None, f"no sample {name} {labels}"
        return found

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (sample, labels) in self.samples if sample == name]

    def buckets(self, stage: str) -> dict[float, float]:
        return {
            float(labels["le"]): value
            for labels in self.series(f"{STAGE}_bucket")
            if labels["stage"] == stage
            for value in [self.value(f"{STAGE}_bucket", **labels)]
        }


@contextlib.asynccontextmanager
async def serving(
    metrics: Metrics, health: Callable[[], Mapping[str, Any]]
) -> AsyncIterator[tuple[MetricsServer, aiohttp.ClientSession]]:
    server = MetricsServer(metrics, health, "127.0.0.1", 0)
    await server.start()
    try:
        assert server.port > 0
        async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as session:
            yield server, session
    finally:
        await server.stop()


async def scrape(session: aiohttp.ClientSession) -> Scrape:
    async with session.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        return Scrape(await response.text())


async def healthz(session: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    async with session.get("/healthz") as response:
        return response.status, json.loads(await response.text())


async def eventually(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def count(histogram: Histogram) -> int:
    return histogram.snapshot()[1]


# ----- a health dict shaped like Gateway.health() -----------------------------------------------------------


def health_dict(*, state: str = "connected", alerts: list[str] | None = None) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-11-22T10:00:00.000Z",
        "version": "0.1.0",
        "uptime_s": 120.5,
        "config_version": "abc123def456",
        "model_version": "offers-7",
        "mqtt": {
            "state": state,
            "outbox": 3,
            "received": 40,
            "published": 90,
            "disconnects": 2,
            "connect_failures": 1,
            "outbox_dropped": 0,
        },
        "ledger": {
            "queue_depth": 5,
            "queue_max": 10000,
            "batches_committed": 17,
            "batches_split": 0,
            "ops_committed": 33,
            "ops_failed": 1,
            "rows_written": 44,
            "largest_batch": 6,
            "last_commit_ms": 1.5,
            "backpressure_waits": 0,
            "dropped": 0,
            "decision_duplicates": 2,
            "exposure_duplicates": 0,
            "exposure_unknown_decision": 0,
            "jti_replays": 1,
            "consent_stale": 0,
            "corrupt_recovered": 0,
            "corrupted_moved_to": None,
        },
        "queues": {"mqtt_outbox": 3, "ledger": 5},
        "drops": {"mqtt_outbox": 0, "rejected": {"checkin.bad_json": 4, "ack.unknown_display": 1}},
        "checkins": 12,
        "decisions": 20,
        "exposures": 9,
        "pos": {"transactions": 5, "identified": 2, "anonymous": 3},
        "last_checkin_age_s": 2.5,
        "tokens": {"accepted": 12, "rejected": {"expired": 3, "bad_signature": 1}},
        "displays": {"screen-cafe": {"version": 7, "offer_id": "o1", "online": True, "pending": False}},
        "sync_backlog": 42,
        "sync": {
            "cloud_down": False,
            "outbox": {
                "events": 42,
                "bytes": 8400,
                "max_bytes": 400_000_000,
                "over_bound": False,
                "dropped": 0,
                "oldest_age_s": 3.25,
                "by_class": {"telemetry": {"events": 40, "bytes": 8000, "dropped": 0}},
            },
            "push": {
                "batches": 4,
                "events": 100,
                "accepted": 98,
                "duplicates": 2,
                "rejected": 1,
                "given_up": 1,
                "parked": 0,
                "failures": {"http": 3},
                "retry_after": 2,
                "last_success_age_s": 0.5,
            },
            "parked": {
                "events": 1,
                "by_class": {"telemetry": 0, "conversion": 1, "privacy": 0},
                "oldest_age_s": 60.0,
            },
            "dead_letter": {"events": 1, "given_up": 1, "evicted": 0, "last_age_s": 5.0},
            "pull": {
                "pages": 2,
                "changes": 30,
                "rejected": {},
                "failures": {},
                "cursor": 30,
                "resets": 0,
                "last_success_age_s": None,
            },
            "profiles": {"inflight": 0, "unknown_cached": 1, "fetched": 5},
        },
        "ble": {
            "scanner": {
                "state": "scanning",
                "mode": "passive",
                "adverts": 1000,
                "drops": 7,
                "queue_depth": 2,
                "starts": 1,
                "restarts": 0,
                "adapter_resets": 0,
                "bluez_restarts": 0,
                "passive_fallbacks": 0,
                "errors": {"timeout": 1},
                "last_advert_age_s": 0.25,
                "last_error": None,
            },
            "adverts": {"anonymous": 990, "identified": 10},
            "frames_rejected": {"short": 2},
            "presence": {"tracked": 1, "invalid_rssi": 0},
            "eid": {
                "keys": 3,
                "active": 2,
                "table": 6,
                "refreshes": 1,
                "resolved": 10,
                "unresolved": 5,
                "collisions": 0,
            },
            "beacons": [
                {
                    "name": "door",
                    "zone": "entrance",
                    "last_seen_age_s": 1.5,
                    "missing": False,
                    "rssi": -60,
                    "scanner": "local:hci0",
                    "battery_mv": 2950,
                    "temperature_c": 21.5,
                }
            ],
            "missing_beacons": [],
            "events": {"enter": 3, "leave": 2},
        },
        "cameras": {
            "front": {
                "zone": "cafe",
                "capture": {
                    "state": "streaming",
                    "fps": 14.8,
                    "frames": 5000,
                    "skipped": 12,
                    "corrupt": 0,
                    "read_failures": 1,
                    "errors": 0,
                    "reopens": 0,
                    "last_frame_age_s": 0.07,
                    "width": 640,
                    "height": 480,
                },
                "people": 2,
                "entered": 10,
                "left": 8,
                "mean_dwell_s": 12.5,
                "qr_checkins": 1,
            }
        },
        "alerts": list(alerts or []),
    }


# ----- the histogram itself ----------------------------------------------------------------------------------


def test_histogram_buckets_are_upper_bounds_inclusive() -> None:
    histogram = Histogram((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5, 2.0):
        histogram.observe(seconds)
    cumulative, total, summed = histogram.snapshot()
    assert cumulative == [2, 4, 4, 6]  # le=0.001 holds 0.001 itself; +Inf holds everything
    assert total == 6
    assert summed == pytest.approx(2.5135)
    with pytest.raises(ValueError, match="increasing"):
        Histogram((0.1, 0.01))
    with pytest.raises(ValueError, match="distinct"):
        Histogram((0.1, 0.1))


# ----- the endpoint ------------------------------------------------------------------------------------------


async def test_scrape_has_stage_histograms_and_health_gauges() -> None:
    metrics = Metrics()
    for seconds in (0.0002, 0.0012, 0.0012, 0.004):
        metrics.observe("checkin", seconds)
    metrics.decision.observe(0.00003)
    metrics.ledger_batch.observe(3.0)  # past every bound: +Inf only
    metrics.stage("camera_qr").observe(0.02)
    health = health_dict()
    async with serving(metrics, lambda: health) as (_, session):
        result = await scrape(session)

    assert result.types[STAGE] == "histogram"
    checkin = result.buckets("checkin")
    assert sorted(checkin) == [*BUCKETS_S, math.inf]
    assert checkin[0.00025] == 1
    assert checkin[0.001] == 1
    assert checkin[0.0025] == 3
    assert checkin[0.005] == 4
    assert checkin[math.inf] == 4
    assert list(checkin.values()) == sorted(checkin.values())  # cumulative
    assert result.value(f"{STAGE}_count", stage="checkin") == 4
    assert result.value(f"{STAGE}_sum", stage="checkin") == pytest.approx(0.0066)
    assert result.buckets("decision")[0.00005] == 1
    ledger = result.buckets("ledger_batch")
    assert ledger[1.0] == 0 and ledger[math.inf] == 1
    assert result.value(f"{STAGE}_sum", stage="ledger_batch") == 3.0
    for stage in ("ble_advert", "sync_push"):
        assert result.value(f"{STAGE}_count", stage=stage) == 0
    assert result.value(f"{STAGE}_count", stage="camera_qr") == 1

    assert result.value("edge_health_collected") == 1
    assert result.value("edge_healthy") == 1
    assert (
        result.value(
            "edge_gateway_info", version="0.1.0", config_version="abc123def456", model_version="offers-7"
        )
        == 1
    )
    assert result.value("edge_uptime_seconds") == 120.5
    assert result.value("edge_mqtt_connected") == 1
    assert result.value("edge_mqtt_events_total", event="disconnects") == 2
    assert result.get("edge_mqtt_events_total", event="state") is None
    assert result.value("edge_queue_depth", queue="mqtt_outbox") == 3
    assert result.value("edge_queue_depth", queue="ledger") == 5
    assert result.value("edge_queue_depth", queue="ble_adverts") == 2
    assert result.value("edge_queue_capacity", queue="ledger") == 10000
    assert result.value("edge_dropped_total", queue="mqtt_outbox") == 0
    assert result.value("edge_dropped_total", queue="ble_adverts") == 7
    assert result.value("edge_rejected_total", kind="checkin", reason="bad_json") == 4
    assert result.value("edge_checkins_total") == 12
    assert result.value("edge_decisions_total") == 20
    assert result.value("edge_exposures_total") == 9
    assert result.value("edge_pos_transactions_total", identified="false") == 3
    assert result.value("edge_tokens_rejected_total", reason="expired") == 3
    assert result.value("edge_ledger_batches_committed_total") == 17
    assert result.value("edge_ledger_last_commit_seconds") == 0.0015
    assert result.value("edge_ledger_outcomes_total", outcome="jti_replays") == 1
    assert result.value("edge_last_signal_age_seconds", signal="checkin") == 2.5
    assert result.value("edge_last_signal_age_seconds", signal="ble_advert") == 0.25
    assert result.value("edge_last_signal_age_seconds", signal="sync_push") == 0.5
    assert result.value("edge_last_signal_age_seconds", signal="camera:front") == 0.07
    assert result.get("edge_last_signal_age_seconds", signal="sync_pull") is None  # never: absent, not 0
    assert result.value("edge_sync_backlog_events") == 42
    assert result.value("edge_sync_outbox_oldest_age_seconds") == 3.25
    assert result.value("edge_sync_outbox_events", **{"class": "telemetry"}) == 40
    assert result.value("edge_sync_failures_total", direction="push", kind="http") == 3
    assert result.value("edge_sync_push_results_total", result="duplicates") == 2
    assert result.value("edge_sync_push_results_total", result="given_up") == 1
    assert result.value("edge_sync_parked_events", **{"class": "conversion"}) == 1
    assert result.value("edge_sync_dead_letter_events") == 1
    assert result.value("edge_sync_dead_letter_total") == 1
    assert result.value("edge_sync_retry_after_total") == 2
    assert result.value("edge_sync_profile_fetches_total", outcome="fetched") == 5
    assert result.value("edge_display_online", display="screen-cafe") == 1
    assert result.value("edge_ble_adverts_total", outcome="identified") == 10
    assert result.value("edge_ble_beacon_battery_volts", beacon="door", zone="entrance") == 2.95
    assert result.value("edge_ble_scanner_errors_total", kind="timeout") == 1
    assert result.value("edge_camera_fps", camera="front") == 14.8
    assert result.value("edge_camera_frames_skipped_total", camera="front") == 12
    assert result.value("edge_camera_events_total", camera="front", event="qr_checkins") == 1
    assert result.value("edge_alerts") == 0
    for name, kind in result.types.items():
        assert name.startswith("edge_")
        assert name.endswith("_total") == (kind == "counter"), name


async def test_healthz_follows_alerts_and_the_broker() -> None:
    health = health_dict()
    async with serving(Metrics(), lambda: health) as (_, session):
        assert await healthz(session) == (200, {"status": "ok"})

        health = health_dict(alerts=["mqtt_outbox_dropped: 12 messages", "beacons_missing: door"])
        status, body = await healthz(session)
        assert status == 503
        assert body == {"status": "unhealthy", "reasons": ["mqtt_outbox_dropped", "beacons_missing"]}
        result = await scrape(session)
        assert result.value("edge_healthy") == 0
        assert result.value("edge_alerts") == 2
        assert result.value("edge_alert", alert="beacons_missing") == 1

        health = health_dict(state="backoff")
        assert await healthz(session) == (503, {"status": "unhealthy", "reasons": ["mqtt_backoff"]})
        result = await scrape(session)
        assert result.value("edge_mqtt_connected") == 0
        assert result.value("edge_mqtt_state", state="backoff") == 1

        health = health_dict()
        assert (await healthz(session))[0] == 200


async def test_unreadable_health_still_scrapes_and_fails_healthz() -> None:
    metrics = Metrics()
    metrics.checkin.observe(0.001)

    def broken() -> Mapping[str, Any]:
        raise RuntimeError("health() before the gateway was built")

    async with serving(metrics, broken) as (_, session):
        result = await scrape(session)
        assert result.value("edge_health_collected") == 0
        assert result.value(f"{STAGE}_count", stage="checkin") == 1
        assert result.get("edge_healthy") is None
        assert await healthz(session) == (503, {"status": "unhealthy", "reasons": ["health_unreadable"]})
        async with session.get("/nothing") as response:
            assert response.status == 404


async def test_label_values_are_escaped() -> None:
    health = health_dict()
    health["displays"] = {'screen "a"\\b\nc': {"version": 1, "online": False, "pending": True}}
    async with serving(Metrics(), lambda: health) as (_, session):
        result = await scrape(session)
    assert result.value("edge_display_pending", display='screen \\"a\\"\\\\b\\nc') == 1


async def test_a_taken_port_fails_start_and_stop_is_idempotent() -> None:
    async with serving(Metrics(), health_dict) as (server, _):
        clash = MetricsServer(Metrics(), health_dict, "127.0.0.1", server.port)
        with pytest.raises(OSError):
            await clash.start()
        await clash.stop()
    await server.stop()


# ----- the hooks in the real components ----------------------------------------------------------------------


async def test_ledger_writer_observes_each_committed_batch(tmp_path: Path) -> None:
    metrics = Metrics()
    async with aiosqlite.connect(tmp_path / "w.sqlite", isolation_level=None) as db:
        await db.execute("CREATE TABLE t (x INTEGER)")
        writer = BatchWriter(
            db,
            asyncio.Lock(),
            WriterCounters(),
            batch_max=64,
            batch_window_s=0,
            queue_max=100,
            metrics=metrics,
        )
        writer.start()

        def insert(tx: Tx) -> int:
            return tx.execute("INSERT INTO t VALUES (1)")

        assert await asyncio.gather(*(writer.submit(insert, durable=True) for _ in range(10))) == [1] * 10
        assert await writer.submit(insert, durable=False) == 1
        await writer.close(5.0)
        committed = writer.counters.batches_committed
    assert committed >= 2
    assert count(metrics.ledger_batch) == committed
    assert metrics.ledger_batch.sum > 0


def _with_espresense(store: StoreKit) -> StoreKit:
    with store.config_path.open("a") as config:
        config.write('\n[ble.espresense]\nenabled = true\nrooms = { "room-a" = "cafe" }\n')
    return store


async def test_gateway_stages_and_health_through_the_endpoint(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The daemon wires every stage and serves its own endpoint on the configured port."""
    store = _with_espresense(make_store(tmp_path / "store", mosquitto.port))
    port = free_port()
    store.config_path.write_text(
        store.config_path.read_text().replace("metrics_port = 0", f"metrics_port = {port}")
    )
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, f"{ROOT}/#") as display:
        flow, ble_flow, ledger = gateway.generation, gateway.generation.ble, gateway.ledger
        assert flow is not None and ble_flow is not None and ledger is not None
        metrics = gateway.metrics
        assert gateway.metrics_server is not None and gateway.metrics_server.port == port

        await display.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
        await display.publish(f"{ROOT}/checkin", b"not json")  # refused: counted, not timed
        await display.publish("espresense/devices/eid:0badc0ffee0ddf00/room-a", {"rssi": -60})
        await eventually(lambda: count(metrics.checkin) == 1 and count(metrics.ble_advert) == 1)
        await eventually(lambda: any(kind == "checkin" for kind, _ in flow.rejects.counts))

        assert count(metrics.decision) >= 1
        assert count(metrics.ledger_batch) >= 1
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            result = await scrape(session)
            status, body = await healthz(session)

    assert (status, body) == (200, {"status": "ok"})
    assert result.value("edge_health_collected") == 1
    assert result.value("edge_checkins_total") == 1
    assert result.value("edge_decisions_total") == count(metrics.decision)
    assert result.value(f"{STAGE}_count", stage="checkin") == 1
    assert result.value(f"{STAGE}_count", stage="ble_advert") == 1
    assert result.value("edge_mqtt_connected") == 1
    info = {"version": __version__, "config_version": "test", "model_version": gateway.model_version}
    assert result.value("edge_gateway_info", **info) == 1
    assert result.value("edge_tokens_accepted_total") == 1
    assert (
        sum(result.value("edge_rejected_total", **labels) for labels in result.series("edge_rejected_total"))
        >= 1
    )
    assert result.value("edge_ble_adverts_total", outcome="anonymous") == 1
    assert result.value("edge_display_online", display="screen-cafe") == 1
    assert result.value("edge_last_signal_age_seconds", signal="checkin") >= 0


def pushed(health: Mapping[str, Any]) -> int:
    return int(((health.get("sync") or {}).get("push") or {}).get("batches", 0))


async def test_cloud_push_batches_are_observed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        workdir = tmp_path / "store"
        workdir.mkdir()
        store = make_store(workdir, mosquitto.port, sync=sync_section(cloud.base_url, token, workdir))
        async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, CONTENT) as display:
            assert gateway.generation.sync is not None and gateway.generation is not None
            metrics = gateway.metrics  # wired by the daemon
            await display.publish(f"{ROOT}/checkin", store.checkin("p-full", zone="cafe"))
            await eventually(lambda: count(metrics.sync_push) >= 1)
            # gateway/health refreshes the cloud's figures every health.interval_s (1 s here)
            await eventually(lambda: pushed(gateway.health()) >= 1)
            async with serving(metrics, gateway.health) as (_, session):
                result = await scrape(session)
    assert metrics.sync_push.sum > 0
    assert result.value(f"{STAGE}_count", stage="sync_push") >= 1
    assert result.value("edge_sync_push_batches_total") >= 1
    assert result.get("edge_sync_backlog_events") is not None


def test_events_the_cloud_refused_raise_alerts() -> None:
    assert refused_alerts({}) == []
    quiet = {
        "parked": {"events": 0, "by_class": {}},
        "dead_letter": {"events": 3, "last_age_s": DEAD_LETTER_ALERT_S},
    }
    assert refused_alerts(quiet) == []  # given up more than a day ago: the table keeps them, the alert is off
    loud = {
        "parked": {"events": 2, "by_class": {"telemetry": 0, "conversion": 1, "privacy": 1}},
        "dead_letter": {"events": 3, "last_age_s": 10.0},
    }
    parked, dead = refused_alerts(loud)
    assert parked.startswith("sync_events_parked: 2 events") and "conversion 1, privacy 1" in parked
    assert dead.startswith("sync_dead_letter: 3 telemetry events")
