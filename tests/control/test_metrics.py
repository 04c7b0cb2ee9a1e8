"""The Prometheus endpoint for real: an aiohttp server on a free loopback port, scraped over HTTP and parsed
by prometheus_client's own parser.

Stage histograms (buckets, counts, sums), a ``HealthReport`` as gauges and counters, /healthz 200/503, and the
hooks of the real gateway (check-in, decision, ledger batch, BLE advert, cloud push) feeding the histograms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge import __version__
from edge.act.displays import DisplayStats
from edge.control.health import DEAD_LETTER_ALERT_S, BleReport, HealthReport, refused_alerts
from edge.control.metrics import BUCKETS_S, CONTENT_TYPE, Histogram, Metrics, MetricsServer
from edge.control.remote import ControlStats
from edge.decide.devices.plan import PlanStats
from edge.flow.ble import BleFlowStats
from edge.flow.camera import CameraFlowStats
from edge.flow.decider import DeciderStats
from edge.flow.devices import DevicesStats, DeviceStats
from edge.flow.pickup import PickupStats
from edge.flow.pos import PosStats
from edge.flow.privacy import PrivacyCounters
from edge.flow.staff import StaffStats
from edge.flow.stats import FlowCounts
from edge.identity.eid import EidStats
from edge.identity.tokens import RejectReason, TokenStats
from edge.identity.wallclock import ClockStats
from edge.ledger.deadletter import DeadLetterStats, ParkedStats
from edge.ledger.outbox import ClassStats, OutboxStats
from edge.ledger.retention import REMOVED_KEYS, PurgeStats
from edge.ledger.store import LedgerStats
from edge.ledger.writer import BatchWriter, Tx, WriterCounters
from edge.presence.beacons import BeaconStats
from edge.presence.ble import BlePresenceStats
from edge.presence.ingest import IngestStats
from edge.sources.ble.scanner import BleScannerStats, ScannerState
from edge.sources.camera.capture import CameraState, CameraStats
from edge.sync.profiles import ProfileStats
from edge.sync.stats import PullHealth, PushHealth, SyncStats
from edge.transport.mqtt import LinkState, LinkStats
from tests.support.broker import Mosquitto, free_port
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.profilestore import running_profile_store
from tests.support.store import ROOT, STORE, StoreKit, make_store, sync_section

CONTENT = f"{ROOT}/display/screen-cafe/content"
STAGE = "edge_stage_latency_seconds"


class Scrape:
    """An exposition parsed by prometheus_client: samples by (name, labels), and each family's type by the
    name its TYPE line gives (a counter's with ``_total``)."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            name = f"{family.name}_total" if family.type == "counter" else family.name
            assert name not in self.types, f"{name} twice"
            self.types[name] = family.type
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"duplicate sample {key}"
                self.samples[key] = sample.value

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
    metrics: Metrics, health: Callable[[], HealthReport]
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


# ----- a report of a gateway with everything on --------------------------------------------------------------


def health_report(*, state: LinkState = LinkState.CONNECTED, alerts: bool = False) -> HealthReport:
    """A HealthReport with every part present; ``alerts`` raises mqtt_outbox_dropped and beacons_missing."""
    beacon = BeaconStats("door", "entrance", 1.5, alerts, -60, "local:hci0", 2950, 21.5)
    capture = CameraStats(CameraState.STREAMING, 14.8, 5000, 12, 0, 1, 0, 0, 0.07, 640, 480)
    return HealthReport(
        now_wall=1_800_000_000.0,
        version="0.1.0",
        uptime_s=120.5,
        config_version="abc123def456",
        model_version="offers-7",
        mqtt=LinkStats(
            state,
            3,
            {
                "received": 40,
                "published": 90,
                "disconnects": 2,
                "connect_failures": 1,
                "outbox_dropped": 12 if alerts else 0,
            },
        ),
        ledger=LedgerStats(
            5,
            10000,
            17,
            0,
            33,
            1,
            44,
            6,
            1.5,
            0,
            False,
            0,
            0,
            2,
            0,
            0,
            1,
            0,
            None,
            PurgeStats(2, 600.0, {**dict.fromkeys(REMOVED_KEYS, 0), "decisions": 40, "shopper_seen": 3}, 96),
        ),
        rejected={"checkin.bad_json": 4, "ack.unknown_display": 1},
        flow=FlowCounts(12, 9, 0, 0, 0, {}, 0, 1_800_000_000.0 - 2.5),
        decider=DeciderStats(20, "offers-7"),
        clock=ClockStats(1_800_000_000.0, 0.0, behind=False),
        pos=PosStats(transactions=5, identified=2, anonymous=3, redelivered=0),
        tokens=TokenStats(12, {RejectReason.EXPIRED: 3, RejectReason.BAD_SIGNATURE: 1}),
        displays={"screen-cafe": DisplayStats(version=7, offer_id="o1", online=True, pending=False)},
        sync=SyncStats(
            cloud_down=False,
            outbox=OutboxStats(42, 8400, 400_000_000, False, 0, 3.25, {"telemetry": ClassStats(40, 8000, 0)}),
            push=PushHealth(4, 100, 98, 2, 1, 1, 0, 0, {"http": 3}, 2, 0.5, 0.5),
            parked=ParkedStats(0, {"telemetry": 0, "conversion": 0, "privacy": 0}, None),
            # given up more than a day ago: held, counted, no longer an alert
            dead_letter=DeadLetterStats(1, 1, 0, DEAD_LETTER_ALERT_S + 60),
            pull=PullHealth(2, 30, {}, {}, "30", 0, 0, {}, None),
            profiles=ProfileStats(0, 1, {"fetched": 5}),
        ),
        ble=BleReport(
            BleScannerStats(
                ScannerState.SCANNING, "passive", 1000, 7, 2, 1, 0, 0, 0, 0, {"timeout": 1}, 0.25, None
            ),
            BleFlowStats(
                IngestStats(
                    adverts={"anonymous": 990, "identified": 10},
                    frames_rejected={"short": 2},
                    presence=BlePresenceStats(1, {"invalid_rssi": 0}),
                    eid=EidStats(3, 2, 6, 1, 10, 5, 0),
                    beacons=(beacon,),
                ),
                {"enter": 3, "leave": 2},
            ),
        ),
        cameras=(CameraFlowStats("front", "cafe", capture, 2, 10, 8, 12.5, {"qr_checkins": 1}),),
        control=ControlStats(0, None, 0, (), {}, {}, ()),
        devices=DevicesStats(
            (
                DeviceStats(
                    "fitting-1",
                    "fitting-rooms",
                    "climate",
                    "zigbee2mqtt",
                    PlanStats(4, 1, 0, False, True, None, True),
                    0,
                    None,
                    {"temperature": 22.5},
                ),
            ),
            4,
            0,
            0,
            0,
        ),
        staff=StaffStats(notices=3, withdrawn=2, open=1, answers={"assisting": 1}, answers_repeated=0),
        pickup=PickupStats(open_orders=2, listed=1, shown=3, collected={"staff": 1}),
        privacy=PrivacyCounters(consents=2, erasures=1, exports_answered=1, my_data_shown=1),
        metrics_error=None,
    )


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
    async with serving(metrics, health_report) as (_, session):
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
    assert result.value("edge_ledger_purges_total") == 2
    assert result.value("edge_privacy_actions_total", action="consent") == 2
    assert result.value("edge_privacy_actions_total", action="erase") == 1
    assert result.value("edge_privacy_exports_total") == 1
    assert result.value("edge_privacy_my_data_total", outcome="refused") == 0
    assert result.value("edge_ledger_purged_rows_total", table="decisions") == 40
    assert result.value("edge_ledger_purged_rows_total", table="privacy_audit") == 0
    assert result.value("edge_ledger_vacuumed_pages_total") == 96
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
    assert result.value("edge_sync_parked_events", **{"class": "conversion"}) == 0
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
    health = health_report()
    async with serving(Metrics(), lambda: health) as (_, session):
        assert await healthz(session) == (200, {"status": "ok"})

        health = health_report(alerts=True)
        assert health.alerts == ["beacons_missing: door", "mqtt_outbox_dropped: 12 messages"]
        status, body = await healthz(session)
        assert status == 503
        assert body == {"status": "unhealthy", "reasons": ["beacons_missing", "mqtt_outbox_dropped"]}
        result = await scrape(session)
        assert result.value("edge_healthy") == 0
        assert result.value("edge_alerts") == 2
        assert result.value("edge_alert", alert="beacons_missing") == 1

        health = health_report(state=LinkState.BACKOFF)
        assert await healthz(session) == (503, {"status": "unhealthy", "reasons": ["mqtt_backoff"]})
        result = await scrape(session)
        assert result.value("edge_mqtt_connected") == 0
        assert result.value("edge_mqtt_state", state="backoff") == 1

        health = health_report()
        assert (await healthz(session))[0] == 200


async def test_unreadable_health_still_scrapes_and_fails_healthz() -> None:
    metrics = Metrics()
    metrics.checkin.observe(0.001)

    def broken() -> HealthReport:
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
    odd = DisplayStats(version=1, offer_id=None, online=False, pending=True)
    health = replace(health_report(), displays={'screen "a"\\b\nc': odd})
    async with serving(Metrics(), lambda: health) as (_, session), session.get("/metrics") as response:
        text = await response.text()
    result = Scrape(text)
    # escaped on the wire, read back whole by prometheus_client's parser
    assert 'display="screen \\"a\\"\\\\b\\nc"' in text
    assert result.value("edge_display_pending", display='screen "a"\\b\nc') == 1


async def test_a_taken_port_fails_start_and_stop_is_idempotent() -> None:
    async with serving(Metrics(), health_report) as (server, _):
        clash = MetricsServer(Metrics(), health_report, "127.0.0.1", server.port)
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


def pushed(health: HealthReport) -> int:
    return 0 if health.sync is None else health.sync.push.batches


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
    sync = health_report().sync
    assert sync is not None
    assert refused_alerts(sync) == []  # given up more than a day ago: the table keeps them, the alert is off
    loud = replace(
        sync,
        parked=ParkedStats(2, {"telemetry": 0, "conversion": 1, "privacy": 1}, 30.0),
        dead_letter=DeadLetterStats(3, 3, 0, 10.0),
    )
    parked, dead = refused_alerts(loud)
    assert parked.startswith("sync_events_parked: 2 events") and "conversion 1, privacy 1" in parked
    assert dead.startswith("sync_dead_letter: 3 telemetry events")
