"""The composition root: builds every part from validated settings and runs them in one TaskGroup."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tomllib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge import __version__
from edge.act.displays import DisplayBoard
from edge.clock import Clock, SystemClock
from edge.config import GatewaySettings, read_mqtt_password, read_sync_token
from edge.config.decisions import DecisionSettings
from edge.control import health
from edge.control.logs import set_level
from edge.control.metrics import Metrics, MetricsServer
from edge.control.remote import ApplyError, RemoteConfig
from edge.control.systemd import Notifier
from edge.decide.catalog import load_catalog
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import Scorer, load_model
from edge.flow import GatewayFlow
from edge.flow_ble import BleFlow
from edge.flow_pos import PosFlow
from edge.identity import ConsentStore, ProfileCache, ReplayGuard, TokenVerifier, load_public_keys
from edge.identity.eid import EidResolver, load_eid_keys
from edge.identity.wallclock import WallClockWatch
from edge.ledger import WRITE_ERRORS, Ledger
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
# Sections a configuration change can take without rebuilding the gateway's parts (docs/remote-config.md).
LIVE_SECTIONS: Final = frozenset({"logging", "presence", "decisions", "health"})
# Rebuilding keeps the ledger open unless one of these changed (then it is closed and opened again).
LEDGER_SECTIONS: Final = ("ledger", "sync")

Outcome = Literal["stop", "reload"]


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
        config_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self._file_version = config_version
        self.notifier = notifier or Notifier()
        self.rng = rng or random.Random()
        self.topics = Topics(settings.topic_root)
        self.started_wall = self.clock.wall()
        self.stop_event = asyncio.Event()
        self.ready = asyncio.Event()
        self.flow: GatewayFlow | None = None
        self.link: MqttLink | None = None
        self.ledger: Ledger | None = None
        self.models: ModelStore | None = None
        self.ble_flow: BleFlow | None = None
        self.pos_flow: PosFlow | None = None
        self.cameras: list[CameraFlow] = []
        self.scanner: BleScanner | None = None
        self.sync: SyncService | None = None
        self.sync_health: dict[str, Any] | None = None
        self.control: RemoteConfig | None = None
        # Stage latencies survive rebuilds (a histogram is cumulative); the endpoint is per generation.
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.metrics_error: str | None = None
        # The wall clock's high-water mark (durable in the ledger); set by the first build.
        self.wall_watch: WallClockWatch | None = None
        # A rebuild asked for by apply(): the run loop builds the new settings and answers on the future.
        self._reload = asyncio.Event()
        self._reload_done: asyncio.Future[None] | None = None
        self._previous: GatewaySettings | None = None

    @property
    def model_version(self) -> str:
        """The version of the model decisions run on now."""
        return self.flow.engine.model_version if self.flow is not None else ""

    @property
    def config_version(self) -> str:
        """The pushed version running, or the file's own version when no push is applied."""
        if self.control is not None and self.control.state.current:
            return str(self.control.state.current)
        return self._file_version

    def request_stop(self) -> None:
        self.stop_event.set()

    async def run(self) -> None:
        control_task = None
        if self.settings.control.enabled:
            self.control = self._make_control()
            self.settings = self.control.startup(self.settings)
            control_task = asyncio.create_task(self.control.run(), name="control")
        self.models = self._open_models()
        try:
            while True:
                settings = self.settings
                ledger = self._open_ledger(settings)
                ledger.metrics = self.metrics
                async with ledger:
                    self.ledger = ledger
                    while True:
                        if await self._generation(ledger) == "stop":
                            return
                        if _sections(settings, LEDGER_SECTIONS) != _sections(self.settings, LEDGER_SECTIONS):
                            break  # the new settings want the ledger opened differently
        finally:
            if control_task is not None:
                control_task.cancel()
                await asyncio.gather(control_task, return_exceptions=True)

    def _open_ledger(self, settings: GatewaySettings) -> Ledger:
        return Ledger(
            settings.ledger.path,
            self.clock,
            batch_max=settings.ledger.batch_max,
            batch_window_s=settings.ledger.batch_window_ms / 1000,
            retention_days=settings.ledger.retention_days,
            # Without a cloud nothing is queued for it (the outbox would only fill up).
            outbox_max_bytes=int(settings.sync.outbox_max_mb * 1_000_000) if settings.sync.enabled else None,
        )

    async def _start_model(self, settings: GatewaySettings) -> Scorer:
        decisions = settings.decisions
        if self.models is None:
            return load_model(decisions.model, decisions.manifest_path)
        # The store's pointer wins over the file unless the configured model is new (docs/models.md).
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.models.start, decisions.model, decisions.manifest_path)

    def _open_models(self) -> ModelStore | None:
        try:
            return ModelStore.open(self.settings.control.state_dir)
        except ModelError as exc:
            # Development and tests without a writable state dir: the configured model runs, unmanaged.
            log.warning("model store unavailable (%s); running the configured model only", exc)
            return None

    def request_model_reload(self) -> None:
        """SIGHUP (``systemctl reload``): run the model the store's pointer names (after ``model rollback``)."""
        task = asyncio.get_running_loop().create_task(self._reload_model(), name="model-reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload_model(self) -> None:
        models, flow = self.models, self.flow
        if models is None or flow is None:
            log.warning("model reload asked for, but there is no model store or the gateway is not running")
            return
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, models.reload_pointer, flow.engine
            )
        except ModelError:
            log.exception("model reload refused; the running model stays")
            return
        if result is None:
            log.info("model reload: %s is already running", flow.engine.model_version)

    def _make_control(self) -> RemoteConfig:
        if self.config_path is None:
            msg = "control.enabled needs the configuration file's path (the base pushes are merged over)"
            raise RuntimeError(msg)
        settings = self.settings
        return RemoteConfig(
            settings.control,
            keys=load_public_keys(settings.control.public_key_files, None),
            store_id=settings.store.id,
            base=tomllib.loads(self.config_path.read_text(encoding="utf-8")),
            base_dir=self.config_path.resolve().parent,
            report_topic=self.topics.config_reported,
            clock=self.clock,
        )

    async def _generation(self, ledger: Ledger) -> Outcome:
        """Build the parts for the current settings and serve until a stop or a rebuild."""
        try:
            flow = await self._build(ledger)
        except Exception as exc:
            done, previous = self._reload_done, self._previous
            if done is None or previous is None:
                raise  # the first start: a broken configuration fails loudly, as before
            # A rebuild for new settings failed: the previous settings run again, the push is refused.
            log.exception("rebuilding for the new configuration failed; restoring the previous one")
            self.settings = previous
            self._reload_done = self._previous = None
            if not done.done():
                done.set_exception(ApplyError(f"rebuild failed: {exc}"))
            flow = await self._build(ledger)
        else:
            if self._reload_done is not None and not self._reload_done.done():
                self._reload_done.set_result(None)
            self._reload_done = self._previous = None
        try:
            return await self._serve(flow)
        finally:
            flow.close()

    async def apply(self, settings: GatewaySettings) -> str:
        """Run ``settings`` from now on: live where the change allows it, else by rebuilding the parts.

        Raises ApplyError if a part refuses them; the running settings then stay in place.
        """
        changed = _changed_sections(self.settings, settings)
        if not changed:
            self.settings = settings
            return "none"
        if changed <= LIVE_SECTIONS and self._live_possible(settings):
            await self._apply_live(settings)
            return "live"
        loop = asyncio.get_running_loop()
        self._previous, self.settings = self.settings, settings
        self._reload_done = done = loop.create_future()
        self._reload.set()
        await done
        return "reload"

    async def _apply_decisions(
        self, flow: GatewayFlow, ledger: Ledger, old: DecisionSettings, new: DecisionSettings
    ) -> None:
        """A new model, catalog or policy, all or nothing: whatever can fail is loaded before any swap."""
        loop = asyncio.get_running_loop()
        model_moved = (old.model, old.manifest_path, old.model_sha256) != (
            new.model,
            new.manifest_path,
            new.model_sha256,
        )
        engine_moved = (old.offers_file, old.policy) != (new.offers_file, new.policy)
        try:
            catalog = (
                await loop.run_in_executor(None, load_catalog, new.offers_file) if engine_moved else None
            )
            if model_moved:
                await self._activate_model(flow, new)
        except Exception as exc:  # any refusal of a part is an ApplyError; nothing has changed
            raise ApplyError(f"decisions: {exc}") from exc
        if catalog is not None:
            counts = await ledger.offer_counts_since(self._local_midnight())
            engine = DecisionEngine(catalog, flow.engine.scorer, new.policy, self.clock, self.rng)
            await flow.replace_engine(engine, counts)

    async def _activate_model(self, flow: GatewayFlow, decisions: DecisionSettings) -> None:
        """Verify (sha256, pin), load, shadow-score and swap the configured model; raises if refused."""
        loop = asyncio.get_running_loop()
        if self.models is not None:
            await loop.run_in_executor(
                None,
                self.models.install_and_activate,
                flow.engine,
                decisions.model,
                decisions.manifest_path,
                decisions.model_sha256,
            )
            return
        scorer = await loop.run_in_executor(None, load_model, decisions.model, decisions.manifest_path)
        if decisions.model_sha256 is not None and scorer.manifest.sha256 != decisions.model_sha256:
            msg = f"model sha256 {scorer.manifest.sha256[:12]}… is not the pinned {decisions.model_sha256[:12]}…"
            raise ModelError(msg)
        flow.engine.swap_scorer(scorer)

    def _live_possible(self, settings: GatewaySettings) -> bool:
        old = self.settings
        # The metrics endpoint is a socket: a new address is a rebuild. Cloud offers are merged over the
        # file's catalog by the sync side, which holds the file's catalog: a new file is a rebuild there.
        same_metrics = (old.health.metrics_host, old.health.metrics_port) == (
            settings.health.metrics_host,
            settings.health.metrics_port,
        )
        offers_moved = old.decisions.offers_file != settings.decisions.offers_file
        return same_metrics and not (offers_moved and self.sync is not None)

    async def _apply_live(self, settings: GatewaySettings) -> None:
        flow, ledger, old = self.flow, self.ledger, self.settings
        if flow is None or ledger is None:
            msg = "the gateway is not running"
            raise ApplyError(msg)
        if old.decisions != settings.decisions:
            await self._apply_decisions(flow, ledger, old.decisions, settings.decisions)
        if old.presence != settings.presence:
            flow.presence.set_timeout(settings.presence.checkin_timeout_s)
        if old.logging != settings.logging:
            set_level(settings.logging.level)
        self.settings = settings
        log.info("configuration applied live: %s", ", ".join(sorted(_changed_sections(old, settings))))

    async def _build(self, ledger: Ledger) -> GatewayFlow:
        settings = self.settings
        self.ble_flow, self.pos_flow, self.cameras = None, None, []
        self.scanner, self.sync, self.sync_health = None, None, None
        keys = await self._token_keys(ledger)
        verifier = TokenVerifier(
            keys,
            settings.store.id,
            self.clock,
            leeway_s=settings.identity.leeway_s,
            max_lifetime_s=settings.identity.max_token_lifetime_s,
        )
        marks = await ledger.clock_marks()
        replay = ReplayGuard(floor_wall=marks.jti_forgotten_through_wall)
        replay.load(await ledger.active_jtis(self.clock.wall()))
        if self.wall_watch is None:
            self.wall_watch = WallClockWatch(
                self.clock, high_water_wall=marks.high_water_wall, tolerance_s=settings.identity.leeway_s
            )
        watch = self.wall_watch
        watch.raise_to(marks.high_water_wall)
        if watch.is_behind():
            log.error(
                "the wall clock is %.0f s behind the latest time this gateway has seen; tokens that may have "
                "been used already are refused until it catches up (clock_behind)",
                watch.behind_s(),
            )
        consents = ConsentStore(ledger, self.clock)
        await consents.load()
        profiles = ProfileCache()
        if settings.identity.consents_file is not None:
            await consents.seed_from_file(settings.identity.consents_file, profiles)
        catalog = load_catalog(settings.decisions.offers_file)
        scorer = await self._start_model(settings)
        engine = DecisionEngine(catalog, scorer, settings.decisions.policy, self.clock, self.rng)
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
            version_floor_wall=lambda: watch.high_water_wall,
        )
        flow.attach_board(board)
        flow.metrics = self.metrics
        flow.register()
        # The retained health is refreshed on every connect: the one the health loop left in the retained
        # registry while connecting would otherwise say "connecting" until the next interval.
        link.add_connect_hook(lambda: self._publish_health(flow))
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
                file_keys=keys,
            )
            self.sync.pusher.metrics = self.metrics
        if self.control is not None:
            limit = 4 * settings.control.max_payload_bytes  # larger than the push limit: refused and reported
            self.control.attach(
                self,
                lambda topic, handler: link.on(topic, handler, max_payload_bytes=limit),
                lambda topic, payload: link.publish(topic, payload, retain=True),
                self.topics.config_desired,
            )
        # A rebuild (new configuration): the screens and check-ins of the previous parts carry over.
        kept = flow.adopt(self.flow) if self.flow is not None else frozenset()
        flow.publish_initial_state(keep=kept)
        self.flow, self.link = flow, link
        if ledger.corrupted_moved_to is not None:
            log.error("ledger was corrupt and has been moved aside to %s", ledger.corrupted_moved_to)
        return flow

    async def _token_keys(self, ledger: Ledger) -> dict[str, Ed25519PublicKey]:
        """The key files' token keys, less every kid the cloud revoked (durable in the ledger): a revocation
        wins over the files at every start and rebuild, until the cloud trusts the kid again."""
        identity = self.settings.identity
        keys = load_public_keys(identity.public_key_files, identity.public_key_env)
        revoked = await ledger.replica.revoked_keys()
        for kid in sorted(revoked & keys.keys()):
            log.warning("token key %s of the key files is revoked by the cloud; its tokens are refused", kid)
        return {kid: key for kid, key in keys.items() if kid not in revoked}

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
        ble_flow.metrics = self.metrics
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

    async def _serve(self, flow: GatewayFlow) -> Outcome:
        self.metrics_server = await self._start_metrics()
        try:
            return await self._serve_parts(flow)
        finally:
            if self.metrics_server is not None:
                await self.metrics_server.stop()
                self.metrics_server = None

    async def _start_metrics(self) -> MetricsServer | None:
        endpoint = self.settings.health
        if not endpoint.metrics_port:
            return None
        server = MetricsServer(self.metrics, self.health, endpoint.metrics_host, endpoint.metrics_port)
        try:
            await server.start()
        except OSError as exc:
            # A busy port must not keep the store from serving shoppers: the endpoint is off, loudly.
            self.metrics_error = f"{endpoint.metrics_host}:{endpoint.metrics_port}: {exc.strerror or exc}"
            log.error("metrics endpoint is off: %s", self.metrics_error)  # noqa: TRY400 - errno says it
            return None
        self.metrics_error = None
        return server

    async def _serve_parts(self, flow: GatewayFlow) -> Outcome:
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
            if not self.ready.is_set():
                self.notifier.ready(f"store {self.settings.store.id}")
                self.ready.set()
            log.info("gateway for store %s ready", self.settings.store.id)
            outcome = await self._until_stop_or_reload()
            if outcome == "stop":
                log.info("stopping: draining for at most %.1f s", SHUTDOWN_DEADLINE_S)
                self.notifier.stopping()
                self._publish_health(flow)
            else:
                log.info("rebuilding for a new configuration")
            link.request_stop(final=outcome == "stop")
            _, pending = await asyncio.wait({link_task}, timeout=SHUTDOWN_DEADLINE_S)
            for task in [*pending, *helpers]:
                task.cancel()
        return outcome

    async def _until_stop_or_reload(self) -> Outcome:
        stop = asyncio.ensure_future(self.stop_event.wait())
        reload = asyncio.ensure_future(self._reload.wait())
        try:
            await asyncio.wait({stop, reload}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            reload.cancel()
        if self.stop_event.is_set():
            return "stop"
        self._reload.clear()
        return "reload"

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
        assert self.ledger is not None
        while True:
            if self.wall_watch is not None:
                try:
                    await self.ledger.mark_wall(self.wall_watch.observe())
                except WRITE_ERRORS:
                    log.warning("could not store the wall clock's mark; trying again with the next health")
            if self.sync is not None:
                self.sync_health = await self.sync.stats()
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
        while True:
            await asyncio.sleep(PURGE_EVERY_S)
            try:
                await self.purge()
            except WRITE_ERRORS:
                # A full disk (flagged in health) must not take the gateway down; the next purge tries again.
                log.exception("ledger purge failed; trying again in %.0f s", PURGE_EVERY_S)

    async def purge(self) -> dict[str, int]:
        """One purge: ended token claims (never while the clock is behind the last one), rows past retention;
        the replay guard and the clock watch take the ledger's new marks. Returns rows deleted per table."""
        assert self.ledger is not None
        removed = await self.ledger.purge(self.clock.wall())
        marks = await self.ledger.clock_marks()
        if self.flow is not None:
            self.flow.replay.raise_floor(marks.jti_forgotten_through_wall)
        if self.wall_watch is not None:
            self.wall_watch.raise_to(marks.high_water_wall)
        log.info("ledger purge: %s", removed)
        return removed

    def health(self) -> dict[str, Any]:
        return health.health_report(self)

    def problems(self) -> list[str]:
        """Health problems as 'component: detail'; empty when the broker is connected and all is well."""
        return health.problems(self)

    def _publish_health(self, flow: GatewayFlow) -> None:
        payload = json.dumps(self.health(), separators=(",", ":"), default=str).encode()
        flow.link.publish(self.topics.health, payload, retain=True)


def _sections(settings: GatewaySettings, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(settings, name) for name in names)


def _changed_sections(old: GatewaySettings, new: GatewaySettings) -> set[str]:
    return {name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)}
