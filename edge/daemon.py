"""The composition root: builds every part from validated settings and runs them in one TaskGroup."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

from edge import __version__
from edge.act.displays import DisplayBoard
from edge.clock import Clock, SystemClock, iso_utc
from edge.config import GatewaySettings, read_mqtt_password, read_sync_token
from edge.control.systemd import Notifier
from edge.decide import DecisionEngine, load_catalog, load_model
from edge.flow import GatewayFlow
from edge.flow_ble import BleFlow
from edge.flow_pos import PosFlow
from edge.identity import ConsentStore, ProfileCache, ReplayGuard, TokenVerifier, load_public_keys
from edge.identity.eid import EidResolver, load_eid_keys
from edge.ledger import Ledger
from edge.presence.beacons import BeaconRegistry
from edge.presence.ble import BlePresence
from edge.presence.ingest import BleIngest
from edge.presence.zones import ZonePresence
from edge.transport.mqtt import MqttLink
from edge.transport.topics import Topics

if TYPE_CHECKING:
    from edge.flow_camera import CameraFlow
    from edge.sources.ble.scanner import BleScanner
    from edge.sync.service import SyncService

log = logging.getLogger(__name__)

# Presence timeouts, content expiry and pending requests are checked this often; 100 ms is below
# what a person notices on a screen and costs nothing measurable on a Pi.
TICK_S: Final = 0.1
# SIGTERM to exit must fit systemd's default stop timeout with a wide margin (issue: within 5 s).
SHUTDOWN_DEADLINE_S: Final = 4.0
# Expired jtis and old rows are purged this often.
PURGE_EVERY_S: Final = 3600.0


class Gateway:
    """One store's gateway; ``run`` returns after a graceful stop."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Clock | None = None,
        config_version: str = "file",
        notifier: Notifier | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.config_version = config_version
        self.notifier = notifier or Notifier()
        self.rng = rng or random.Random()
        self.topics = Topics(settings.topic_root)
        self.started_wall = self.clock.wall()
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self.flow: GatewayFlow | None = None
        self.link: MqttLink | None = None
        self.ledger: Ledger | None = None
        self.model_version = ""
        self.ble_flow: BleFlow | None = None
        self.pos_flow: PosFlow | None = None
        self.cameras: list[CameraFlow] = []
        self.scanner: BleScanner | None = None
        self.sync: SyncService | None = None
        self._sync_health: dict[str, Any] | None = None

    def request_stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> None:
        settings = self.settings
        ledger = Ledger(
            settings.ledger.path,
            self.clock,
            batch_max=settings.ledger.batch_max,
            batch_window_s=settings.ledger.batch_window_ms / 1000,
            retention_days=settings.ledger.retention_days,
            # Without a cloud nothing is queued for it (the outbox would only fill up).
            outbox_max_bytes=int(settings.sync.outbox_max_mb * 1_000_000) if settings.sync.enabled else None,
        )
        async with ledger:
            self.ledger = ledger
            flow = await self._build(ledger)
            try:
                await self._serve(flow)
            finally:
                flow.close()

    async def _build(self, ledger: Ledger) -> GatewayFlow:
        settings = self.settings
        keys = load_public_keys(settings.identity.public_key_files, settings.identity.public_key_env)
        verifier = TokenVerifier(
            keys,
            settings.store.id,
            self.clock,
            leeway_s=settings.identity.leeway_s,
            max_lifetime_s=settings.identity.max_token_lifetime_s,
        )
        replay = ReplayGuard()
        replay.load(await ledger.active_jtis(self.clock.wall()))
        consents = ConsentStore(ledger, self.clock)
        await consents.load()
        profiles = ProfileCache()
        if settings.identity.consents_file is not None:
            await consents.seed_from_file(settings.identity.consents_file, profiles)
        catalog = load_catalog(settings.decisions.offers_file)
        scorer = load_model(settings.decisions.model, settings.decisions.manifest_path)
        engine = DecisionEngine(catalog, scorer, settings.decisions.policy, self.clock, self.rng)
        self.model_version = scorer.version
        engine.seed_counts(await ledger.offer_counts_since(self._local_midnight()))
        link = MqttLink(
            settings.mqtt,
            client_id=settings.client_id,
            topics=self.topics,
            password=read_mqtt_password(settings),
            clock=self.clock,
            version=__version__,
            started_wall=self.started_wall,
            rng=self.rng,
        )
        zones = [zone.id for zone in settings.zones]
        presence = ZonePresence(zones, timeout_s=settings.presence.checkin_timeout_s, clock=self.clock)
        flow = GatewayFlow(
            topics=self.topics,
            link=link,
            clock=self.clock,
            verifier=verifier,
            replay=replay,
            consents=consents,
            profiles=profiles,
            presence=presence,
            engine=engine,
            ledger=ledger,
            zones=zones,
            fallbacks={display.id: display.fallback for display in settings.displays},
        )
        board = DisplayBoard(
            settings.displays,
            topics=self.topics,
            publish=lambda topic, payload, retain: link.publish(topic, payload, retain=retain),
            decide=flow.decide,
            is_present=lambda shopper, zone: presence.zone_of(shopper) == zone,
            clock=self.clock,
        )
        flow.attach_board(board)
        flow.register()
        self.pos_flow = PosFlow(flow)
        self.pos_flow.register()
        resolver = None
        if settings.ble.active:
            resolver = EidResolver(self.clock, neighbours=settings.ble.eid_neighbours, consents=consents)
            self.ble_flow = self._build_ble(flow, resolver)
        if settings.cameras:
            self.cameras = self._build_cameras(flow)
        if settings.sync.enabled:
            # aiohttp and the sync parts are loaded only by gateways that sync (~9 MB not paid otherwise).
            from edge.sync.service import build_sync  # noqa: PLC0415

            self.sync = await build_sync(
                settings.sync,
                store_id=settings.store.id,
                token=read_sync_token(settings) or "",
                ledger=ledger,
                consents=consents,
                profiles=profiles,
                verifier=verifier,
                eid=resolver,
                flow=flow,
                clock=self.clock,
                day_start=self._local_midnight,
            )
        flow.publish_initial_state()
        self.flow, self.link = flow, link
        if ledger.corrupted_moved_to is not None:
            log.error("ledger was corrupt and has been moved aside to %s", ledger.corrupted_moved_to)
        return flow

    def _build_ble(self, flow: GatewayFlow, resolver: EidResolver) -> BleFlow:
        ble = self.settings.ble
        if ble.eid_keys_file is not None:
            resolver.load(load_eid_keys(ble.eid_keys_file))
        beacons = BeaconRegistry(ble.beacons, self.clock)
        presence = BlePresence({}, ble.presence, self.clock)
        ble_flow = BleFlow(
            flow,
            BleIngest(resolver, beacons, presence),
            espresense_prefix=ble.espresense.topic_prefix,
            espresense_rooms=ble.espresense.rooms if ble.espresense.enabled else {},
        )
        local = None
        if ble.enabled:
            # bleak and dbus-fast are loaded only by gateways that scan (~15 MB not paid otherwise).
            from edge.sources.ble.scanner import BleScanner  # noqa: PLC0415

            self.scanner = BleScanner(ble.scanner, self.clock)
            local = f"local:{ble.scanner.adapter}"
        presence.set_scanner_zones(ble_flow.scanner_zones(local, ble.zone))
        if ble.espresense.enabled:
            ble_flow.register_espresense()
        return ble_flow

    def _build_cameras(self, flow: GatewayFlow) -> list[CameraFlow]:
        # OpenCV is loaded only by gateways with a camera (~40 MB not paid otherwise).
        from edge.flow_camera import CameraFlow  # noqa: PLC0415
        from edge.sources.camera.capture import CameraCapture  # noqa: PLC0415

        cameras = []
        for camera in self.settings.cameras:
            camera_flow = CameraFlow(flow, camera, self.clock, CameraCapture(camera, self.clock))
            flow.audience_sources.append(camera_flow)
            cameras.append(camera_flow)
        return cameras

    def _local_midnight(self) -> float:
        zone = ZoneInfo(self.settings.decisions.policy.tz)
        now = datetime.fromtimestamp(self.clock.wall(), tz=zone)
        return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    async def _serve(self, flow: GatewayFlow) -> None:
        link = flow.link
        async with asyncio.TaskGroup() as group:
            link_task = group.create_task(link.run(), name="mqtt-link")
            helpers = [
                group.create_task(self._ticker(flow), name="tick"),
                *self._ble_tasks(group),
                *[
                    group.create_task(camera.run(), name=f"camera-{camera.settings.id}")
                    for camera in self.cameras
                ],
                *([group.create_task(self.sync.run(), name="sync")] if self.sync is not None else []),
                group.create_task(self._health_loop(flow), name="health"),
                group.create_task(self._watchdog_loop(), name="watchdog"),
                group.create_task(self._purge_loop(), name="purge"),
            ]
            self.notifier.ready(f"store {self.settings.store.id}")
            self.ready.set()
            log.info("gateway for store %s ready", self.settings.store.id)
            await self.stop_event.wait()
            log.info("stopping: draining for at most %.1f s", SHUTDOWN_DEADLINE_S)
            self.notifier.stopping()
            self._publish_health(flow)
            link.request_stop()
            _, pending = await asyncio.wait({link_task}, timeout=SHUTDOWN_DEADLINE_S)
            for task in [*pending, *helpers]:
                task.cancel()

    def _ble_tasks(self, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        if self.scanner is None or self.ble_flow is None:
            return []
        return [
            group.create_task(self.scanner.run(), name="ble-scanner"),
            group.create_task(self.ble_flow.consume(self.scanner.adverts), name="ble-ingest"),
        ]

    async def _ticker(self, flow: GatewayFlow) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await flow.tick()
            if self.ble_flow is not None:
                await self.ble_flow.tick()

    async def _health_loop(self, flow: GatewayFlow) -> None:
        while True:
            if self.sync is not None:
                self._sync_health = await self.sync.stats()
            self._publish_health(flow)
            await asyncio.sleep(self.settings.health.interval_s)

    async def _watchdog_loop(self) -> None:
        interval = self.settings.health.watchdog_s or self.notifier.watchdog_interval_s
        if not interval:
            return
        while True:
            # Runs on the event loop: a blocked loop stops the pings and systemd restarts us.
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _purge_loop(self) -> None:
        assert self.ledger is not None
        while True:
            await asyncio.sleep(PURGE_EVERY_S)
            removed = await self.ledger.purge(self.clock.wall())
            log.info("ledger purge: %s", removed)

    def health(self) -> dict[str, Any]:
        flow, link, ledger = self.flow, self.link, self.ledger
        if flow is None or link is None or ledger is None:
            msg = "health() before the gateway was built"
            raise RuntimeError(msg)
        now = self.clock.wall()
        ledger_stats = ledger.stats()
        last = flow.stats.last_checkin_wall
        return {
            "v": 1,
            "ts": iso_utc(now),
            "version": __version__,
            "uptime_s": round(now - self.started_wall, 1),
            "config_version": self.config_version,
            "model_version": self.model_version,
            "mqtt": {"state": link.state, "outbox": link.outbox_depth, **dict(link.counters)},
            "ledger": {**ledger_stats, "corrupted_moved_to": str(ledger.corrupted_moved_to or "") or None},
            "queues": {"mqtt_outbox": link.outbox_depth, "ledger": ledger_stats.get("queue_depth", 0)},
            "drops": {"mqtt_outbox": link.counters["outbox_dropped"], "rejected": flow.rejects.as_dict()},
            "checkins": flow.stats.checkins,
            "decisions": flow.stats.decisions,
            "exposures": flow.stats.exposures,
            "pos": self.pos_flow.stats.as_dict() if self.pos_flow is not None else None,
            "last_checkin_age_s": None if last is None else round(now - last, 1),
            "tokens": {
                "accepted": flow.verifier.accepted,
                "rejected": {str(k): v for k, v in flow.verifier.rejections.items()},
            },
            "displays": flow.board.snapshot(),
            "sync_backlog": self._sync_backlog(),
            "sync": self._sync_health,
            "ble": self._ble_health(),
            "cameras": {camera.settings.id: camera.stats() for camera in self.cameras} or None,
            "alerts": self._alerts(link, ledger),
        }

    def _sync_backlog(self) -> int | None:
        if self._sync_health is None:
            return None
        return int(self._sync_health["outbox"].get("events", 0))

    def _ble_health(self) -> dict[str, Any] | None:
        ble_flow = self.ble_flow
        if ble_flow is None:
            return None
        ingest = ble_flow.ingest
        return {
            "scanner": asdict(self.scanner.stats()) if self.scanner is not None else None,
            "adverts": dict(ingest.counters),
            "frames_rejected": dict(ingest.frame_counter),
            "presence": ingest.presence.stats(),
            "eid": ingest.resolver.stats(),
            "beacons": ingest.beacons.health(),
            "missing_beacons": ingest.beacons.missing(),
            "events": dict(ble_flow.counters),
        }

    def _alerts(self, link: MqttLink, ledger: Ledger) -> list[str]:
        """Conditions an operator must look at; empty when all is well."""
        alerts = []
        if ledger.corrupted_moved_to is not None:
            alerts.append(f"ledger_corrupt: the database was moved aside to {ledger.corrupted_moved_to}")
        if self.ble_flow is not None and self.ble_flow.ingest.beacons.missing():
            alerts.append(f"beacons_missing: {', '.join(self.ble_flow.ingest.beacons.missing())}")
        outbox = (self._sync_health or {}).get("outbox", {})
        if outbox.get("dropped_total") or outbox.get("dropped"):
            alerts.append(
                f"sync_outbox_dropped: telemetry dropped at the disk bound ({outbox.get('dropped')})"
            )
        if outbox.get("over_bound"):
            alerts.append("sync_outbox_over_bound: privacy and conversion events exceed the outbox bound")
        if link.counters["outbox_dropped"]:
            alerts.append(f"mqtt_outbox_dropped: {link.counters['outbox_dropped']} messages")
        return alerts

    def _publish_health(self, flow: GatewayFlow) -> None:
        payload = json.dumps(self.health(), separators=(",", ":"), default=str).encode()
        flow.link.publish(self.topics.health, payload, retain=True)
