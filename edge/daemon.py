"""The supervisor: opens the ledger, builds one generation of parts (edge/generation.py) and runs it in one
TaskGroup until a stop or a rebuild; the control plane and model reloads run beside it in the gateway's
own TaskGroup. A stop drains within one deadline.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import random
import tomllib
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from edge.clock import Clock, SystemClock
from edge.config import GatewaySettings
from edge.control import health, health_json
from edge.control.dashboard_view import RecentDecisions
from edge.control.live import LEDGER_SECTIONS, LiveApplier, changed_sections, live_possible, sections
from edge.control.metrics import Metrics, MetricsServer
from edge.control.remote import ApplyError, RemoteConfig
from edge.control.systemd import Notifier
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError
from edge.events import Decision
from edge.generation import Carry, Generation, build
from edge.identity import load_public_keys
from edge.identity.wallclock import WallClockWatch
from edge.ledger import WRITE_ERRORS, Ledger
from edge.ledger.retention import Retention
from edge.transport.topics import Topics

if TYPE_CHECKING:
    from edge.control.dashboard import DashboardServer
    from edge.sync.stats import SyncStats

log = logging.getLogger(__name__)

# Presence timeouts, content expiry and pending requests are checked this often; 100 ms is below
# what a person notices on a screen and costs nothing measurable on a Pi.
TICK_S: Final = 0.1
# SIGTERM to exit must fit systemd's default stop timeout with a wide margin (issue: within 5 s).
SHUTDOWN_DEADLINE_S: Final = 4.0
# Retention is applied this often (docs/ledger.md "Retention"): every bound is in hours or days, and a
# purge takes the single writer for one transaction and then its bounded steps (eviction, vacuum).
PURGE_EVERY_S: Final = 3600.0
# Shoppers' seen marks (edge/ledger/seen.py) are written this often: one statement for a few hundred marks at
# a busy store's rate, and the memory they wait in stays small.
SEEN_FLUSH_S: Final = 10.0

Outcome = Literal["stop", "reload"]


def _settle_heap() -> None:
    """Collect once, then move what start-up built (libraries, the model, the configuration's parts: about
    100,000 objects) out of the cyclic collector's reach (``gc.freeze``).

    Without it every full collection walks all of them while the store is busy: 3 pauses of up to 75 ms in
    10 s of 200 check-ins/s on the EPYC VM, each holding every message behind it (bench/checkin_device.py,
    docs/benchmarks.md "Issue 14's device path"). Frozen objects are still freed by reference counting; only a
    cycle among them would wait for the next rebuild, which unfreezes them first.
    """
    gc.collect()
    gc.freeze()


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
        observers: Sequence[Callable[[Decision], None]] = (),
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
        # Stage latencies survive rebuilds (a histogram is cumulative); the endpoint is per generation.
        self.metrics = Metrics()
        self.metrics_error: str | None = None
        self.metrics_server: MetricsServer | None = None
        # The wall clock's high-water mark (durable in the ledger; edge/identity/wallclock.py).
        self.wall_watch = WallClockWatch(
            self.clock, high_water_wall=float("-inf"), tolerance_s=settings.identity.leeway_s
        )
        self.models = _open_models(settings)
        self.control = self._make_control() if settings.control.enabled else None
        self._observers = tuple(observers)
        # The store dashboard (docs/dashboard.md): its last decisions as anonymous rows, kept across rebuilds.
        self.dashboard: DashboardServer | None = None
        self.recent_decisions: RecentDecisions | None = None
        if settings.dashboard.enabled:
            self.recent_decisions = RecentDecisions(settings.dashboard.decisions_shown)
            self._observers = (*self._observers, self._dashboard_observe)
        self._live = LiveApplier(models=self.models, clock=self.clock, rng=self.rng)
        self.generation: Generation | None = None
        self.sync_health: SyncStats | None = None
        # A rebuild asked for by apply(): the run loop builds the new settings and answers on the future.
        self._reload = asyncio.Event()
        self._reload_done: asyncio.Future[None] | None = None
        self._previous: GatewaySettings | None = None
        self._group: asyncio.TaskGroup | None = None

    # ----- what others read -----
    @property
    def ledger(self) -> Ledger | None:
        return self.generation.ledger if self.generation is not None else None

    @property
    def model_version(self) -> str:
        """The version of the model decisions run on now."""
        return self.generation.decider.engine.model_version if self.generation is not None else ""

    @property
    def config_version(self) -> str:
        """The pushed version running, or the file's own version when no push is applied."""
        if self.control is not None and self.control.state.current:
            return str(self.control.state.current)
        return self._file_version

    def health(self) -> health.HealthReport:
        return health.build_report(self)

    def problems(self) -> list[str]:
        """Health problems as 'component: detail'; empty when the broker is connected and all is well."""
        return health.problems(self)

    # ----- lifecycle -----
    def request_stop(self) -> None:
        self.stop_event.set()

    def request_model_reload(self) -> None:
        """SIGHUP (``systemctl reload``): run the model the store's pointer names (after ``model rollback``)."""
        if self._group is None or self.generation is None:
            log.warning("model reload asked for, but the gateway is not running")
            return
        self._group.create_task(self._live.reload_pointer(self.generation), name="model-reload")

    async def run(self) -> None:
        if self.control is not None:
            self.settings = self.control.startup(self.settings)
        # The dashboard's settings are the store's file's alone (no push changes them): one server per run.
        self.dashboard = await self._start_dashboard()
        try:
            await self._run()
        finally:
            dashboard, self.dashboard = self.dashboard, None
            if dashboard is not None:
                await dashboard.stop()

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                control = group.create_task(self.control.run(), name="control") if self.control else None
                try:
                    await self._supervise()
                finally:
                    self._group = None
                    if control is not None:
                        control.cancel()
        except BaseExceptionGroup as errors:
            # One failure (a configuration that cannot start, a model onnxruntime refuses) reaches the
            # caller as itself, as it did before the TaskGroup: `edge-gateway run` reports it and exits 2.
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None
            raise

    async def _supervise(self) -> None:
        while True:
            settings = self.settings
            async with self._open_ledger(settings) as ledger:
                while True:
                    if await self._generation(ledger) == "stop":
                        return
                    if sections(settings, LEDGER_SECTIONS) != sections(self.settings, LEDGER_SECTIONS):
                        break  # the new settings want the ledger opened differently

    def _open_ledger(self, settings: GatewaySettings) -> Ledger:
        return Ledger(
            settings.ledger.path,
            self.clock,
            batch_max=settings.ledger.batch_max,
            batch_window_s=settings.ledger.batch_window_ms / 1000,
            # The same names, bounds checked by the schema (edge/config/ledger.py).
            retention=Retention(**settings.ledger.retention.model_dump()),
            corrupt_keep_days=settings.ledger.corrupt_keep_days,
            # Without a cloud nothing is queued for it (the outbox would only fill up).
            outbox_max_bytes=int(settings.sync.outbox_max_mb * 1_000_000) if settings.sync.enabled else None,
            metrics=self.metrics,
        )

    def _carry(self) -> Carry:
        return Carry(
            clock=self.clock,
            topics=self.topics,
            rng=self.rng,
            metrics=self.metrics,
            started_wall=self.started_wall,
            wall_watch=self.wall_watch,
            models=self.models,
            on_connect=self._publish_health,
            observers=self._observers,
        )

    async def _generation(self, ledger: Ledger) -> Outcome:
        """Build the parts for the current settings and serve until a stop or a rebuild."""
        # What the previous generation left becomes collectable again (see _settle_heap).
        gc.unfreeze()
        try:
            generation = await build(self.settings, ledger, self._carry(), self.generation)
        except Exception as exc:
            done, previous = self._reload_done, self._previous
            if done is None or previous is None:
                raise  # the first start: a broken configuration fails loudly
            # A rebuild for new settings failed: the previous settings run again, the push is refused.
            log.exception("rebuilding for the new configuration failed; restoring the previous one")
            self.settings = previous
            self._reload_done = self._previous = None
            if not done.done():
                done.set_exception(ApplyError(f"rebuild failed: {exc}"))
            generation = await build(self.settings, ledger, self._carry(), self.generation)
        else:
            if self._reload_done is not None and not self._reload_done.done():
                self._reload_done.set_result(None)
            self._reload_done = self._previous = None
        self.generation = generation
        _settle_heap()
        if self.control is not None:
            limit = (
                4 * self.settings.control.max_payload_bytes
            )  # larger than the push limit: refused, reported
            link = generation.link
            self.control.attach(
                self,
                lambda topic, handler: link.on(topic, handler, max_payload_bytes=limit),
                lambda topic, payload: link.publish(topic, payload, retain=True),
                self.topics.config_desired,
            )
        try:
            return await self._serve(generation)
        finally:
            generation.close()

    async def _serve(self, generation: Generation) -> Outcome:
        self.metrics_server = server = await self._start_metrics()
        try:
            async with asyncio.TaskGroup() as group:
                link_task = group.create_task(generation.link.run(), name="mqtt-link")
                loops = [
                    group.create_task(self._ticker(generation), name="tick"),
                    group.create_task(self._health_loop(generation), name="health"),
                    group.create_task(self._watchdog_loop(), name="watchdog"),
                    group.create_task(self._purge_loop(), name="purge"),
                    *_source_tasks(group, generation),
                ]
                if not self.ready.is_set():
                    self.notifier.ready(f"store {self.settings.store.id}")
                    self.ready.set()
                log.info("gateway for store %s ready", self.settings.store.id)
                outcome = await self._until_stop_or_reload()
                await self._drain(generation, outcome, link_task, loops)
            return outcome
        finally:
            self.metrics_server = None
            if server is not None:
                await server.stop()

    async def _drain(
        self,
        generation: Generation,
        outcome: Outcome,
        link_task: asyncio.Task[None],
        loops: list[asyncio.Task[None]],
    ) -> None:
        """One deadline for the whole drain: handlers, the MQTT outbox, the final status; then the loops go."""
        if outcome == "stop":
            log.info("stopping: draining for at most %.1f s", SHUTDOWN_DEADLINE_S)
            self.notifier.stopping()
            self._publish_health()
            # Nobody counts the zones while we are down: their retained counts say so (docs/mqtt.md).
            generation.floor.counts.publish_unknown()
        else:
            log.info("rebuilding for a new configuration")
        generation.link.request_stop(final=outcome == "stop")
        with suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_DEADLINE_S):
                await asyncio.wait({link_task})
        for task in [link_task, *loops]:
            task.cancel()

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

    async def _start_dashboard(self) -> DashboardServer | None:
        if not self.settings.dashboard.enabled or self.recent_decisions is None:
            return None
        from edge.config.load import read_dashboard_password  # noqa: PLC0415 - only with a dashboard
        from edge.control.dashboard import DashboardServer  # noqa: PLC0415
        from edge.control.dashboard_view import snapshot  # noqa: PLC0415

        recent = self.recent_decisions
        server = DashboardServer(
            self.settings.dashboard,
            password=read_dashboard_password(self.settings),
            snapshot=lambda: snapshot(self, recent),
            clock=self.clock,
        )
        try:
            await server.start()
        except OSError as exc:
            # Like the metrics endpoint: a busy port must not keep the store from serving shoppers.
            log.error(  # noqa: TRY400 - errno says it
                "dashboard is off: %s:%d: %s", server.host, server.port, exc.strerror or exc
            )
            return None
        return server

    def _dashboard_observe(self, decision: Decision) -> None:
        if self.recent_decisions is not None:
            self.recent_decisions.observe(decision)
        if self.dashboard is not None:
            self.dashboard.changed()

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

    # ----- configuration -----
    async def apply(self, settings: GatewaySettings) -> str:
        """Run ``settings`` from now on: live where the change allows it, else by rebuilding the parts.

        Raises ApplyError if a part refuses them; the running settings then stay in place.
        """
        if not changed_sections(self.settings, settings):
            self.settings = settings
            return "none"
        generation = self.generation
        if generation is None:
            msg = "the gateway is not running"
            raise ApplyError(msg)
        if live_possible(self.settings, settings, syncing=generation.sync is not None):
            await self._live.apply(generation, self.settings, settings)
            self.settings = settings
            return "live"
        loop = asyncio.get_running_loop()
        self._previous, self.settings = self.settings, settings
        self._reload_done = done = loop.create_future()
        self._reload.set()
        await done
        return "reload"

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

    # ----- the generation's loops -----
    async def _ticker(self, generation: Generation) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            generation.checkins.prune()
            await generation.floor.tick()
            if generation.ble is not None:
                await generation.ble.tick()
            if generation.devices is not None:
                generation.devices.tick()
            generation.pickup.tick()

    async def _health_loop(self, generation: Generation) -> None:
        while True:
            try:
                await generation.ledger.mark_wall(self.wall_watch.observe())
            except WRITE_ERRORS:
                log.warning("could not store the wall clock's mark; trying again with the next health")
            if generation.sync is not None:
                self.sync_health = await generation.sync.stats()
            self._publish_health()
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
        """Seen marks written every ``SEEN_FLUSH_S``, retention applied every ``PURGE_EVERY_S``."""
        flushes_per_purge = round(PURGE_EVERY_S / SEEN_FLUSH_S)
        for flush in itertools.count(1):
            await asyncio.sleep(SEEN_FLUSH_S)
            generation = self.generation
            if generation is None:
                continue
            if flush % flushes_per_purge:
                try:
                    await generation.ledger.seen.flush()
                except WRITE_ERRORS as exc:
                    # The marks wait for the next flush; a full disk is flagged in health already.
                    log.debug("seen marks not written (%s); kept for the next try", exc)
                continue
            try:
                await self.purge()
            except WRITE_ERRORS:
                # A full disk (flagged in health) must not take the gateway down; the next purge tries again.
                log.exception("ledger purge failed; trying again in %.0f s", PURGE_EVERY_S)

    async def purge(self) -> dict[str, int]:
        """One purge (docs/ledger.md "Retention"): ended token claims (never while the clock is behind the last
        one), each table's rows past its retention, evicted profiles (memory lets them go too); the replay
        guard and the clock watch take the ledger's new marks. Returns rows deleted per table."""
        generation = self.generation
        assert generation is not None, "purge() while the gateway is not running"
        purged = await generation.ledger.purge(self.clock.wall())
        for shopper_id in purged.evicted:
            # A later visit fetches the profile again (edge/sync/profiles.py): the cache holds it no more.
            generation.profiles.forget(shopper_id)
        marks = await generation.ledger.clock_marks()
        generation.replay.raise_floor(marks.jti_forgotten_through_wall)
        self.wall_watch.raise_to(marks.high_water_wall)
        log.info(
            "ledger purge: %s; %d profiles evicted; %d pages given back",
            purged.removed,
            len(purged.evicted),
            purged.vacuumed_pages,
        )
        return purged.removed

    def _publish_health(self) -> None:
        generation = self.generation
        if generation is None:
            return
        generation.link.publish(self.topics.health, health_json.encode(self.health()), retain=True)


def _open_models(settings: GatewaySettings) -> ModelStore | None:
    try:
        return ModelStore.open(settings.control.state_dir)
    except ModelError as exc:
        # Development and tests without a writable state dir: the configured model runs, unmanaged.
        log.warning("model store unavailable (%s); running the configured model only", exc)
        return None


def _source_tasks(group: asyncio.TaskGroup, generation: Generation) -> list[asyncio.Task[None]]:
    """The long-lived loops of the parts this configuration has: BLE, cameras, cloud sync, devices."""
    tasks = []
    if generation.scanner is not None and generation.ble is not None:
        tasks.append(group.create_task(generation.scanner.run(), name="ble-scanner"))
        tasks.append(group.create_task(generation.ble.consume(generation.scanner.adverts), name="ble-ingest"))
    for camera in generation.cameras:
        tasks.append(group.create_task(camera.run(), name=f"camera-{camera.settings.id}"))
    if generation.sync is not None:
        tasks.append(group.create_task(generation.sync.run(), name="sync"))
    tasks.append(group.create_task(generation.context.run(), name="context"))
    if generation.devices is not None:
        tasks.append(group.create_task(generation.devices.run(), name="devices"))
    return tasks
