"""The BLE scanner with the real bleak.BleakScanner against dbusmock's BlueZ on a private system bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from edge.clock import ManualClock, SystemClock
from edge.config.ble import BleScannerSettings
from edge.events import Advert
from edge.sources.ble.scanner import BleScanner, BleScannerStats
from tests.support.bluez import IN_PROGRESS, NOT_READY, AsyncBlueZ, async_bluez, collect_dead_connections
from tests.support.wait import until

IBEACON = bytes.fromhex("0215") + bytes(range(16)) + bytes.fromhex("0001000ac5")  # uuid, major 1, minor 10
EDDYSTONE_UUID = "0000feaa-0000-1000-8000-00805f9b34fb"
EDDYSTONE_EID = bytes.fromhex("30ee") + bytes.fromhex("0102030405060708")
BEACON = "C0:00:00:00:00:01"
PHONE = "C0:00:00:00:00:02"

# Generous against a loaded CI machine; every wait returns as soon as its condition holds.
WAIT_S = 4.0


def fast(**overrides: object) -> BleScannerSettings:
    """Settings with short timings, so recovery paths run in milliseconds."""
    values: dict[str, object] = {
        "backoff_initial_s": 0.02,
        "backoff_cap_s": 0.1,
        "watchdog_interval_s": 0.02,
        "power_off_hold_s": 0.02,
        "dbus_timeout_s": 2.0,
        "silence_restart_s": 3600.0,  # off unless a test is about silence
    }
    values.update(overrides)
    return BleScannerSettings.model_validate(values)


async def next_advert(scanner: BleScanner, address: str | None = None, rssi: int | None = None) -> Advert:
    """The next advert (from ``address``, with ``rssi``), skipping others: a restarted bluetoothd re-reports."""
    async with asyncio.timeout(WAIT_S):
        while True:
            advert = await scanner.adverts.get()
            if address in (None, advert.address) and rssi in (None, advert.rssi):
                return advert


async def silence_checked(scanner: BleScanner) -> None:
    """Until the watchdog has checked for silence on the clock as the test left it (no tick-long sleeps)."""
    before = scanner.silence_checks
    await until(lambda: scanner.silence_checks > before, what="the next silence check")


def scanning(scanner: BleScanner, starts: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        stats = scanner.stats()
        return stats.state == "scanning" and stats.starts >= starts

    return check


@pytest.fixture(autouse=True)
def _collect_dead_connections(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # autouse: torn down after the test's event loop is closed. The captured records go first: pytest
    # keeps them on the test item, and their exception arguments hold the dead buses' frames.
    yield
    for when in ("setup", "call"):
        caplog.get_records(when).clear()
    caplog.clear()
    collect_dead_connections()


@pytest.fixture
async def bluez(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncBlueZ]:
    async with async_bluez(tmp_path, monkeypatch) as mock:
        yield mock


@pytest.mark.parametrize("mode", ["passive", "active"])
async def test_beacon_and_eddystone_adverts_arrive_with_their_bytes(bluez: AsyncBlueZ, mode: str) -> None:
    clock = ManualClock()
    async with BleScanner(fast(mode=mode), clock) as scanner:
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, rssi=-58, manufacturer_data={0x004C: IBEACON}, tx_power=-59)
        advert = await next_advert(scanner)
        assert advert == Advert("local:hci0", BEACON, -58, clock.monotonic(), {0x004C: IBEACON}, {}, -59)

        await bluez.add_device(PHONE, rssi=-71, service_data={EDDYSTONE_UUID: EDDYSTONE_EID})
        advert = await next_advert(scanner)
        assert (advert.address, advert.rssi, advert.service_data) == (
            PHONE,
            -71,
            {EDDYSTONE_UUID: EDDYSTONE_EID},
        )
        assert advert.manufacturer_data == {}

        stats = scanner.stats()
        assert (stats.mode, stats.adverts, stats.drops, stats.passive_fallbacks) == (mode, 2, 0, 0)
        assert stats.last_advert_age_s == 0.0
    assert scanner.stats().state == "stopped"
    # passive scanning really went through BlueZ's advertisement monitor API, active through discovery
    assert await bluez.calls("RegisterMonitor") == (1 if mode == "passive" else 0)
    assert await bluez.calls("StartDiscovery") == (0 if mode == "passive" else 1)


async def test_rssi_updates_arrive_as_new_adverts(bluez: AsyncBlueZ) -> None:
    async with BleScanner(fast(), SystemClock()) as scanner:
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, rssi=-60, manufacturer_data={0x004C: IBEACON})
        assert (await next_advert(scanner)).rssi == -60
        for rssi in (-61, -75, -52):
            await bluez.advertise(BEACON, rssi=rssi)
            advert = await next_advert(scanner)
            # each is a full advert: the unchanged manufacturer data comes along with the new RSSI
            assert (advert.rssi, advert.manufacturer_data) == (rssi, {0x004C: IBEACON})
        await bluez.advertise(BEACON, service_data={EDDYSTONE_UUID: EDDYSTONE_EID})
        assert (await next_advert(scanner)).service_data == {EDDYSTONE_UUID: EDDYSTONE_EID}
        assert scanner.stats().adverts == 5


async def test_passive_falls_back_to_active_without_advertisement_monitors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with async_bluez(tmp_path, monkeypatch, monitor_api=False) as bluez:
        async with BleScanner(fast(mode="passive"), SystemClock()) as scanner:
            await until(scanning(scanner), what="scanning")
            await bluez.add_device(BEACON, manufacturer_data={0x004C: IBEACON})
            assert (await next_advert(scanner)).manufacturer_data == {0x004C: IBEACON}
            stats = scanner.stats()
            assert (stats.mode, stats.passive_fallbacks) == ("active", 1)
            assert stats.errors == {}
        assert await bluez.calls("StartDiscovery") == 1


@pytest.mark.parametrize(
    ("mode", "method", "error", "kind"),
    [
        ("active", "StartDiscovery", IN_PROGRESS, "in_progress"),
        ("passive", "RegisterMonitor", IN_PROGRESS, "in_progress"),
        ("active", "StartDiscovery", NOT_READY, "not_ready"),
    ],
)
async def test_busy_or_not_ready_bluez_is_retried_until_scanning(
    bluez: AsyncBlueZ, mode: str, method: str, error: str, kind: str
) -> None:
    await bluez.fail_next(method, [error, error])
    async with BleScanner(fast(mode=mode), SystemClock()) as scanner:
        await until(scanning(scanner), what="scanning after the injected errors")
        assert scanner.stats().errors == {kind: 2}
        assert await bluez.calls(method) == 3
        await bluez.add_device(BEACON, manufacturer_data={0x004C: IBEACON})
        assert (await next_advert(scanner)).address == BEACON


async def test_adapter_removed_then_back_resumes_scanning(bluez: AsyncBlueZ) -> None:
    async with BleScanner(fast(), SystemClock()) as scanner:
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, manufacturer_data={0x004C: IBEACON})
        await next_advert(scanner)

        await bluez.remove_adapter()
        await until(lambda: scanner.stats().state == "waiting_for_adapter", what="waiting for the adapter")
        assert scanner.stats().errors["adapter_missing"] == 1

        await bluez.add_adapter()
        await until(scanning(scanner, starts=2), what="scanning again")
        await bluez.add_device(PHONE, service_data={EDDYSTONE_UUID: EDDYSTONE_EID})
        assert (await next_advert(scanner, PHONE)).service_data == {EDDYSTONE_UUID: EDDYSTONE_EID}


async def test_scanning_waits_for_an_adapter_that_is_not_there_yet(bluez: AsyncBlueZ) -> None:
    await bluez.remove_adapter()
    async with BleScanner(fast(), SystemClock()) as scanner:
        await until(lambda: scanner.stats().state == "waiting_for_adapter", what="waiting for the adapter")
        await bluez.add_adapter()
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, manufacturer_data={0x004C: IBEACON})
        await next_advert(scanner)


@pytest.mark.parametrize("mode", ["passive", "active"])
async def test_bluetoothd_restart_resumes_scanning(bluez: AsyncBlueZ, mode: str) -> None:
    async with BleScanner(fast(mode=mode), SystemClock()) as scanner:
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, rssi=-60, manufacturer_data={0x004C: IBEACON})
        await next_advert(scanner)

        await bluez.restart()  # SIGKILL, then a new process owns org.bluez with the adapter and device
        await until(lambda: scanner.stats().bluez_restarts == 1, what="the restart to be noticed")
        await until(scanning(scanner, starts=2), what="scanning on the new bluetoothd")
        await bluez.advertise(BEACON, rssi=-44)
        advert = await next_advert(scanner, BEACON, rssi=-44)
        assert advert.manufacturer_data == {0x004C: IBEACON}
        # the new bluetoothd got a scan session of its own
        method = "RegisterMonitor" if mode == "passive" else "StartDiscovery"
        assert await bluez.calls(method) == 1
        assert scanner.stats().state == "scanning"


async def test_silence_restarts_then_power_cycles_the_adapter(bluez: AsyncBlueZ) -> None:
    clock = ManualClock()
    settings = fast(silence_restart_s=30.0, silence_escalate_after=2)

    def steps() -> tuple[int, int]:
        stats = scanner.stats()
        return stats.restarts, stats.adapter_resets

    async with BleScanner(settings, clock) as scanner:
        await until(scanning(scanner), what="scanning")
        clock.advance(29.0)
        await silence_checked(scanner)
        assert steps() == (0, 0)  # not yet silent for long enough

        clock.advance(1.0)
        await until(lambda: steps() == (1, 0) and scanner.stats().state == "scanning", what="first restart")
        clock.advance(30.0)
        await until(lambda: steps() == (2, 0) and scanner.stats().state == "scanning", what="second restart")
        clock.advance(30.0)
        await until(lambda: steps() == (2, 1) and scanner.stats().state == "scanning", what="power cycle")
        assert await bluez.powered()
        assert bluez.mock.power_changes() == [False, True]
        # passive monitors that heard nothing through the ladder are not trusted: active from now on
        assert (scanner.stats().mode, scanner.stats().passive_fallbacks) == ("active", 1)

        # a power cycle that brought nothing doubles the silence allowed before the next step
        clock.advance(30.0)
        await silence_checked(scanner)
        assert steps() == (2, 1)
        clock.advance(30.0)
        await until(lambda: steps() == (3, 1) and scanner.stats().state == "scanning", what="restart, later")

        # an advert puts the ladder back at the bottom rung
        await bluez.add_device(BEACON, manufacturer_data={0x004C: IBEACON})
        await next_advert(scanner)
        clock.advance(30.0)
        await until(lambda: steps() == (4, 1) and scanner.stats().state == "scanning", what="restart again")
        assert scanner.stats().starts == 1 + 4 + 1  # the first, four restarts, one power cycle
        assert scanner.stats().errors == {}


async def test_full_queue_drops_the_oldest_and_counts_it(bluez: AsyncBlueZ) -> None:
    async with BleScanner(fast(queue_max=3), SystemClock()) as scanner:
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, rssi=-50, manufacturer_data={0x004C: IBEACON})
        for rssi in (-51, -52, -53, -54):
            await bluez.advertise(BEACON, rssi=rssi)
        await until(lambda: scanner.stats().adverts == 5, what="all five adverts")
        stats: BleScannerStats = scanner.stats()
        assert (stats.drops, stats.queue_depth) == (2, 3)
        assert [scanner.adverts.get_nowait().rssi for _ in range(3)] == [-52, -53, -54]


async def test_settings_are_strict() -> None:
    with pytest.raises(ValueError, match="extra"):
        BleScannerSettings.model_validate({"adapter": "hci0", "scan_mode": "passive"})
    with pytest.raises(ValueError, match="mode"):
        BleScannerSettings.model_validate({"mode": "aggressive"})
    with pytest.raises(ValueError, match="adapter"):
        BleScannerSettings.model_validate({"adapter": "../hci0"})
    assert BleScannerSettings().model_dump()["mode"] == "passive"


async def test_system_bus_restart_resumes_scanning(bluez: AsyncBlueZ) -> None:
    async with BleScanner(fast(), SystemClock()) as scanner:
        await until(scanning(scanner), what="scanning")
        await bluez.add_device(BEACON, rssi=-60, manufacturer_data={0x004C: IBEACON})
        await next_advert(scanner)

        await bluez.restart_bus()  # dbus-daemon and bluetoothd both gone, then back on the same socket
        await until(scanning(scanner, starts=2), what="scanning on the new bus")
        await bluez.advertise(BEACON, rssi=-41)
        assert (await next_advert(scanner, BEACON, rssi=-41)).manufacturer_data == {0x004C: IBEACON}
        assert scanner.stats().errors.get("bus_lost", 0) >= 1
