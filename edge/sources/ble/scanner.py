"""The local BLE scanner: one long-lived bleak scanner on a BlueZ adapter, watched and restarted, never raising.

Adverts become ``Advert`` events on a bounded queue that drops the oldest; ``stats()`` is what health reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Final, Self

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError

from edge.clock import Clock
from edge.config.ble import BleScannerSettings
from edge.events import Advert
from edge.sources.ble.bluez import IN_PROGRESS, NOT_READY, RETRYABLE, AdapterWatch

LOG = logging.getLogger(__name__)

# The monitor patterns: what store beacons and shoppers' apps send. iBeacon is Apple's company id (0x004C,
# little endian) then type 0x02 length 0x15; Eddystone is service data for the 16-bit UUID 0xFEAA.
IBEACON_PATTERN: Final = OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\x4c\x00\x02\x15")
EDDYSTONE_PATTERN: Final = OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\xaa\xfe")
OR_PATTERNS: Final = (IBEACON_PATTERN, EDDYSTONE_PATTERN)


class ScannerState(StrEnum):
    STARTING = "starting"
    SCANNING = "scanning"
    RESTARTING = "restarting"
    RESETTING_ADAPTER = "resetting_adapter"
    WAITING_FOR_ADAPTER = "waiting_for_adapter"
    STOPPED = "stopped"


@dataclass(slots=True, frozen=True)
class BleScannerStats:
    """A snapshot for gateway/health. Counters only grow; ``errors`` is keyed by kind."""

    state: ScannerState
    mode: str  # the mode actually in use: "active" after a passive fallback
    adverts: int
    drops: int
    queue_depth: int
    starts: int
    restarts: int
    adapter_resets: int
    bluez_restarts: int
    passive_fallbacks: int
    errors: Mapping[str, int]
    last_advert_age_s: float | None
    last_error: str | None


def error_kind(exc: BaseException) -> str:
    """in_progress | not_ready | adapter_missing | dbus_error | bus_lost | timeout | os_error."""
    if isinstance(exc, BleakDBusError):
        return {IN_PROGRESS: "in_progress", NOT_READY: "not_ready"}.get(exc.dbus_error, "dbus_error")
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, EOFError):
        return "bus_lost"
    if isinstance(exc, OSError):
        return "os_error"
    if "not found" in str(exc) and "adapter" in str(exc):  # bleak: "adapter 'hci0' not found"
        return "adapter_missing"
    return "dbus_error"


class BleScanner:
    """One continuous bleak scanner on ``settings.adapter``; ``run()`` until cancelled, or ``async with``.

    Adverts go to ``adverts`` (bounded, drops the oldest: the newest signal is what presence needs).
    """

    def __init__(self, settings: BleScannerSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._name = f"local:{settings.adapter}"
        self.adverts: asyncio.Queue[Advert] = asyncio.Queue(maxsize=settings.queue_max)
        self._watch = AdapterWatch(settings.adapter, settings.dbus_timeout_s, self._on_loss)
        self._scanner: BleakScanner | None = None
        self._scan_epoch = -1
        self._state = ScannerState.STOPPED
        self._mode: str = settings.mode
        self._errors: Counter[str] = Counter()
        self._last_error: str | None = None
        self._adverts = self._drops = self._starts = self._restarts = self._resets = 0
        self._bluez_restarts = self._fallbacks = 0
        self._last_advert: float | None = None
        self._armed_at = 0.0  # when the current scanning session started: silence is measured from here
        self._silent_restarts = 0  # restarts in a row that brought no advert
        self._silent_resets = 0  # power cycles in a row that brought no advert
        self._passive_refused: int | None = None  # the watch epoch in which passive scanning failed us
        self._task: asyncio.Task[None] | None = None
        # Silence checks made so far: whoever moves the clock (a test, a replayed trace) waits for the next
        # check instead of sleeping through watchdog ticks; not health, so not in stats().
        self.silence_checks = 0

    @property
    def state(self) -> ScannerState:
        return self._state

    def stats(self) -> BleScannerStats:
        last = self._last_advert
        return BleScannerStats(
            state=self._state,
            mode=self._mode,
            adverts=self._adverts,
            drops=self._drops,
            queue_depth=self.adverts.qsize(),
            starts=self._starts,
            restarts=self._restarts,
            adapter_resets=self._resets,
            bluez_restarts=self._bluez_restarts,
            passive_fallbacks=self._fallbacks,
            errors=dict(self._errors),
            last_advert_age_s=None if last is None else self._clock.monotonic() - last,
            last_error=self._last_error,
        )

    async def __aenter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"ble-scanner-{self._name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Scan until cancelled; every failure is counted, backed off and retried, never raised."""
        failures = 0
        self._state = ScannerState.STARTING
        try:
            while True:
                try:
                    if self._watch.bus is None:
                        await self._watch.connect()
                    if not self._watch.ready:
                        await self._wait_for_adapter()
                        continue
                    await self._start()
                    failures = 0
                    await self._supervise()
                except RETRYABLE as exc:
                    failures += 1
                    await self._failed(exc, failures)
        finally:
            await self._stop(expected=True)
            await self._watch.close()
            self._state = ScannerState.STOPPED

    # --- the detection callback: convert and enqueue, nothing else ----------------------------------
    def _on_detection(self, device: BLEDevice, adv: AdvertisementData) -> None:
        now = self._clock.monotonic()
        self._last_advert = now
        self._adverts += 1
        advert = Advert(
            self._name, device.address, adv.rssi, now, adv.manufacturer_data, adv.service_data, adv.tx_power
        )
        try:
            self.adverts.put_nowait(advert)
        except asyncio.QueueFull:
            self.adverts.get_nowait()
            self._drops += 1
            self.adverts.put_nowait(advert)

    # --- lifecycle ------------------------------------------------------------------------------------
    def _on_loss(self, kind: str) -> None:
        if kind == "bluez_restarted":
            self._bluez_restarts += 1
        else:
            self._errors[kind] += 1
        LOG.warning("BLE scanning on %s interrupted: %s", self._settings.adapter, kind.replace("_", " "))

    async def _failed(self, exc: BaseException, failures: int) -> None:
        kind = error_kind(exc)
        self._errors[kind] += 1
        self._last_error = f"{kind}: {exc}"
        level = logging.DEBUG if kind in {"in_progress", "not_ready"} else logging.WARNING
        LOG.log(
            level, "BLE scanner on %s failed (%s), retry %d: %s", self._settings.adapter, kind, failures, exc
        )
        await self._stop(expected=False)
        if kind == "not_ready" and self._watch.adapter is not None and not self._watch.adapter.get("Powered"):
            # NotReady is BlueZ's answer while the adapter is off; a scanning gateway wants it on
            with contextlib.suppress(*RETRYABLE):
                await self._watch.set_powered(True)
        if self._state is ScannerState.SCANNING:
            self._state = ScannerState.STARTING
        # at least half the step: InProgress means bluetoothd is busy, an immediate retry meets it again
        step = min(
            self._settings.backoff_cap_s, self._settings.backoff_initial_s * 2 ** min(failures - 1, 16)
        )
        await asyncio.sleep(random.uniform(step / 2, step))

    async def _wait_for_adapter(self) -> None:
        self._watch.changed.clear()
        if self._watch.ready or self._watch.bus is None:
            return
        if self._state is not ScannerState.WAITING_FOR_ADAPTER:
            self._state = ScannerState.WAITING_FOR_ADAPTER
            LOG.info("waiting for BLE adapter %s", self._settings.adapter)
        await self._watch.changed.wait()

    async def _start(self) -> None:
        mode = self._settings.mode
        if mode == "passive" and (
            self._passive_refused == self._watch.epoch or not await self._watch.passive_supported()
        ):
            if self._mode != "active":
                self._fallbacks += 1
                LOG.warning("no passive scanning on %s: scanning actively", self._settings.adapter)
            mode = "active"
        self._mode = mode
        bluez = BlueZScannerArgs(adapter=self._settings.adapter)
        if mode == "passive":
            bluez["or_patterns"] = list(OR_PATTERNS)
        scanner = BleakScanner(self._on_detection, scanning_mode=mode, bluez=bluez)
        epoch = self._watch.epoch
        try:
            await asyncio.wait_for(scanner.start(), self._settings.dbus_timeout_s)
        except BleakError as exc:
            if mode == "passive" and "passive scanning" in str(exc):
                # bleak's word for RegisterMonitor being unknown although the interface was listed
                self._passive_refused = epoch
            raise
        self._scanner, self._scan_epoch = scanner, epoch
        self._armed_at = self._clock.monotonic()
        self._starts += 1
        self._state = ScannerState.SCANNING

    async def _stop(self, *, expected: bool) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is None:
            return
        try:
            await asyncio.wait_for(scanner.stop(), self._settings.dbus_timeout_s)
        except RETRYABLE as exc:
            # after the adapter or bluetoothd went away the session is gone with it: failing to stop is normal
            if self._scan_epoch == self._watch.epoch and not expected:
                self._errors[error_kind(exc)] += 1
            LOG.debug("stopping the BLE scanner failed: %s", exc)

    async def _supervise(self) -> None:
        """Return when the session is lost (adapter gone, bluetoothd restarted); climb the silence ladder."""
        interval = self._settings.watchdog_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watch.changed.wait(), interval)
            self._watch.changed.clear()
            if self._scan_epoch != self._watch.epoch:
                await self._stop(expected=True)
                self._state = ScannerState.WAITING_FOR_ADAPTER
                return
            await self._check_silence()

    async def _check_silence(self) -> None:
        settings = self._settings
        now = self._clock.monotonic()
        self.silence_checks += 1  # no await until the step below is decided: a check counted has acted
        last = self._last_advert
        if last is not None and last >= self._armed_at:
            self._silent_restarts = self._silent_resets = 0  # the last step helped: back to the bottom rung
        quiet_since = self._armed_at if last is None else max(last, self._armed_at)
        allowed = min(settings.silence_cap_s, settings.silence_restart_s * 2**self._silent_resets)
        if now - quiet_since < allowed:
            return
        if self._silent_restarts < settings.silence_escalate_after:
            self._silent_restarts += 1
            self._restarts += 1
            self._state = ScannerState.RESTARTING
            LOG.warning(
                "no BLE advert for %.0f s on %s: restarting the scanner", now - quiet_since, settings.adapter
            )
            await self._stop(expected=False)
        else:
            self._silent_restarts = 0
            self._silent_resets += 1
            self._resets += 1
            self._state = ScannerState.RESETTING_ADAPTER
            LOG.warning("BLE adapter %s still silent after restarts: power cycling it", settings.adapter)
            if self._mode == "passive":
                # monitors registered but never fire (old kernel, no controller support): listen actively
                # until the adapter or bluetoothd changes
                self._passive_refused = self._watch.epoch
            await self._stop(expected=False)
            await self._watch.set_powered(False)
            await asyncio.sleep(settings.power_off_hold_s)
            await self._watch.set_powered(True)
        await self._start()
