"""A private system D-Bus with python-dbusmock's bluez5 template on it, and the faults a store's BlueZ shows.

Devices are added with ``Mock.AddObject`` + ``InterfacesAdded`` instead of the template's ``AddDevice``,
which types ManufacturerData as ``aa{qv}`` (bleak expects ``a{qv}``); adverts are ``Mock.UpdateProperties``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import dbus
import dbus.bus
import pytest
from bleak.backends.bluezdbus import manager as bleak_manager

from tests.support.wait import until_blocking

BLUEZ = "org.bluez"
MOCK_IFACE = "org.freedesktop.DBus.Mock"
BLUEZ_MOCK_IFACE = "org.bluez.Mock"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
MONITOR_MANAGER_IFACE = "org.bluez.AdvertisementMonitorManager1"
IN_PROGRESS = "org.bluez.Error.InProgress"
NOT_READY = "org.bluez.Error.NotReady"

# Everything starts in well under a second here; 10 s only bounds a wedged child so a test fails, not hangs.
START_TIMEOUT_S = 10.0
POLL_S = 0.02

# The bus of a test: anyone may own any name and talk to anyone, like a permissive system bus.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""

# Runs inside the mock for a method the test wants to fail: the first calls raise the queued D-Bus errors,
# later ones do what the template does. State lives on the mock object under a key unique to the injection.
FAULT_CODE = """
import dbus
import dbusmock.templates.bluez5 as template
left = self.__dict__.setdefault({key!r}, {errors!r})
if left:
    raise dbus.exceptions.DBusException("injected by the test", name=left.pop(0))
{call}
"""
# What the template's own implementation of each method is, called once the injected faults are used up.
TEMPLATE_CALLS = {
    (ADAPTER_IFACE, "StartDiscovery", ""): "template.StartDiscovery(self)",
    (ADAPTER_IFACE, "StopDiscovery", ""): "template.StopDiscovery(self)",
    (ADAPTER_IFACE, "SetDiscoveryFilter", "a{sv}"): "template.SetDiscoveryFilter(self, args[0])",
    (MONITOR_MANAGER_IFACE, "RegisterMonitor", "o"): "template.RegisterMonitor(self, args[0])",
    (MONITOR_MANAGER_IFACE, "UnregisterMonitor", "o"): "template.UnregisterMonitor(self, args[0])",
}

T = TypeVar("T")


def _stop_process(proc: subprocess.Popen[bytes] | None, *, kill: bool = False) -> None:
    if proc is None or proc.poll() is not None:
        return
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PrivateSystemBus:
    """A ``dbus-daemon`` playing the system bus on a unix socket under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
        if not Path(binary).exists():
            msg = "dbus-daemon is not installed (make test installs the dbus package)"
            raise RuntimeError(msg)
        self.binary = binary
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "system_bus_socket"
        self.config = workdir / "system-bus.conf"
        self.config.write_text(BUS_CONFIG.format(socket=self.socket))
        self.address = f"unix:path={self.socket}"
        self.log_path = workdir / "dbus-daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--nofork", "--nopidfile", f"--config-file={self.config}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def accepting() -> bool:
            if proc.poll() is not None:
                err = self.log_path.read_text(errors="replace")[-2000:]
                msg = f"dbus-daemon exited with {proc.returncode}: {err}"
                raise RuntimeError(msg)
            return self._accepting()

        until_blocking(accepting, START_TIMEOUT_S, what="dbus-daemon to accept connections", every=POLL_S)

    def _accepting(self) -> bool:
        # the socket file appears at bind(), before listen(): only a connection says it is ready
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        _stop_process(self.proc)
        self.proc = None

    def connect(self) -> dbus.bus.BusConnection:
        """A new blocking client connection (no main loop: calls only, no signal handlers)."""
        return dbus.bus.BusConnection(self.address)


@dataclass(slots=True)
class MockDevice:
    """What the mock advertises for one device; kept so a restarted bluetoothd can 're-discover' it."""

    address: str
    adapter: str
    rssi: int
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    tx_power: int = 0
    name: str = ""

    @property
    def path(self) -> str:
        return f"/org/bluez/{self.adapter}/dev_{self.address.replace(':', '_').upper()}"


def manufacturer_variant(data: dict[int, bytes]) -> dbus.Dictionary:
    """ManufacturerData as BlueZ types it, ``a{qv}`` of ``ay`` (the template's AddDevice gets this wrong)."""
    return dbus.Dictionary(
        {dbus.UInt16(k): dbus.Array(list(v), signature="y") for k, v in data.items()}, signature="qv"
    )


def service_variant(data: dict[str, bytes]) -> dbus.Dictionary:
    """ServiceData as BlueZ types it, ``a{sv}`` of ``ay``."""
    return dbus.Dictionary(
        {dbus.String(k): dbus.Array(list(v), signature="y") for k, v in data.items()}, signature="sv"
    )


def device_properties(device: MockDevice) -> dbus.Dictionary:
    """The org.bluez.Device1 properties bleak reads, typed the way bluetoothd sends them."""
    return dbus.Dictionary(
        {
            "Address": dbus.String(device.address),
            "AddressType": dbus.String("random"),
            "Name": dbus.String(device.name or device.address),
            "Alias": dbus.String(device.name or device.address),
            "Adapter": dbus.ObjectPath(f"/org/bluez/{device.adapter}"),
            "Paired": dbus.Boolean(False),
            "Connected": dbus.Boolean(False),
            "Trusted": dbus.Boolean(False),
            "Blocked": dbus.Boolean(False),
            "LegacyPairing": dbus.Boolean(False),
            "ServicesResolved": dbus.Boolean(False),
            "UUIDs": dbus.Array([], signature="s"),
            "RSSI": dbus.Int16(device.rssi),
            "TxPower": dbus.Int16(device.tx_power),
            "ManufacturerData": manufacturer_variant(device.manufacturer_data),
            "ServiceData": service_variant(device.service_data),
        },
        signature="sv",
    )


class BlueZMock:
    """dbusmock's bluez5 template as a process on a PrivateSystemBus: bluetoothd as far as bleak can tell.

    Blocking calls; async tests use ``AsyncBlueZ``. ``restart`` kills and respawns the process (a crashed
    and restarted bluetoothd: the bus name changes owner) and re-adds the adapters and devices it had.
    """

    def __init__(self, bus: PrivateSystemBus, workdir: Path, *, monitor_api: bool = True) -> None:
        self.bus = bus
        self.workdir = workdir
        self.monitor_api = monitor_api
        self.log_path = workdir / "dbusmock.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.adapters: list[str] = []
        self.devices: dict[str, MockDevice] = {}
        self._conn: dbus.bus.BusConnection | None = None

    # --- process -------------------------------------------------------------------------------------
    def start(self) -> None:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        parameters = json.dumps({"enable_monitor_api": self.monitor_api})
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5", "-p", parameters],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def claimed() -> bool:
            if proc.poll() is not None:
                msg = f"dbusmock exited with {proc.returncode}: {self.log()}"
                raise RuntimeError(msg)
            return bool(self.conn.name_has_owner(BLUEZ))

        until_blocking(
            claimed, START_TIMEOUT_S, what=f"dbusmock to claim {BLUEZ}", detail=self.log, every=POLL_S
        )

    def stop(self, *, kill: bool = False) -> None:
        _stop_process(self.proc, kill=kill)
        self.proc = None
        conn = self._conn
        if conn is not None:
            until_blocking(
                lambda: not conn.name_has_owner(BLUEZ), START_TIMEOUT_S, what=f"{BLUEZ} to be released"
            )

    def restart(self) -> None:
        """bluetoothd crashes (SIGKILL: no InterfacesRemoved) and comes back with its adapters and devices."""
        adapters, devices = list(self.adapters), list(self.devices.values())
        self.stop(kill=True)
        self.adapters, self.devices = [], {}
        self.start()
        for name in adapters:
            self.add_adapter(name)
        for device in devices:
            self._add_device(device)

    def restart_bus(self) -> None:
        """The system bus itself restarts (dbus-daemon crash or upgrade): every client is cut off."""
        adapters, devices = list(self.adapters), list(self.devices.values())
        self.stop(kill=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.bus.stop()
        self.bus.socket.unlink(missing_ok=True)
        self.bus.start()
        self.adapters, self.devices = [], {}
        self.start()
        for name in adapters:
            self.add_adapter(name)
        for device in devices:
            self._add_device(device)

    def close(self) -> None:
        self.stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log(self) -> str:
        """The end of the mock's log, for failure messages."""
        return self.log_text()[-3000:]

    @property
    def conn(self) -> dbus.bus.BusConnection:
        if self._conn is None:
            self._conn = self.bus.connect()
        return self._conn

    def _iface(self, path: str, interface: str) -> dbus.Interface:
        return dbus.Interface(self.conn.get_object(BLUEZ, path, introspect=False), interface)

    # --- adapters ------------------------------------------------------------------------------------
    def add_adapter(self, name: str = "hci0") -> None:
        self._iface("/", BLUEZ_MOCK_IFACE).AddAdapter(name, f"store-gateway-{name}")
        self.adapters.append(name)

    def remove_adapter(self, name: str = "hci0") -> None:
        """The adapter disappears (USB unplugged, hci reset): InterfacesRemoved for it and its devices."""
        self._iface("/", BLUEZ_MOCK_IFACE).RemoveAdapterWithDevices(name)
        self.adapters.remove(name)
        self.devices = {k: d for k, d in self.devices.items() if d.adapter != name}

    def powered(self, adapter: str = "hci0") -> bool:
        props = self._iface(f"/org/bluez/{adapter}", dbus.PROPERTIES_IFACE)
        return bool(props.Get(ADAPTER_IFACE, "Powered"))

    def power_changes(self, adapter: str = "hci0") -> list[bool]:
        """Every Powered value clients set on the adapter, in order (from the mock's log)."""
        marker = f"Set /org/bluez/{adapter} {ADAPTER_IFACE}.Powered "
        return [line.rsplit(" ", 1)[1] == "True" for line in self.log_text().splitlines() if marker in line]

    def fail_next(self, method: str, errors: list[str], adapter: str = "hci0") -> None:
        """The next ``len(errors)`` calls of ``method`` on the adapter raise these D-Bus errors, in order."""
        matches = [key for key in TEMPLATE_CALLS if key[1] == method]
        if not matches:
            msg = f"no fault injection for {method}"
            raise ValueError(msg)
        interface, _, in_sig = matches[0]
        code = FAULT_CODE.format(
            key=f"fault-{uuid.uuid4().hex}", errors=errors, call=TEMPLATE_CALLS[matches[0]]
        )
        self._iface(f"/org/bluez/{adapter}", MOCK_IFACE).AddMethod(
            interface, method, in_sig, "", code, signature="sssss"
        )

    def calls(self, method: str, adapter: str = "hci0") -> int:
        """How many times bleak called ``method`` on the adapter (including failed calls)."""
        return len(self._iface(f"/org/bluez/{adapter}", MOCK_IFACE).GetMethodCalls(method))

    # --- devices -------------------------------------------------------------------------------------
    def add_device(
        self,
        address: str,
        *,
        rssi: int = -60,
        manufacturer_data: dict[int, bytes] | None = None,
        service_data: dict[str, bytes] | None = None,
        tx_power: int = 0,
        adapter: str = "hci0",
    ) -> str:
        """A device appears (bluetoothd's InterfacesAdded); bleak reports its first advert from it."""
        device = MockDevice(address, adapter, rssi, manufacturer_data or {}, service_data or {}, tx_power)
        self._add_device(device)
        return device.path

    def _add_device(self, device: MockDevice) -> None:
        props = device_properties(device)
        mock = self._iface("/", MOCK_IFACE)
        mock.AddObject(
            device.path, DEVICE_IFACE, props, dbus.Array([], signature="(ssss)"), signature="ssa{sv}a(ssss)"
        )
        added = [dbus.ObjectPath(device.path), dbus.Dictionary({DEVICE_IFACE: props}, signature="sa{sv}")]
        mock.EmitSignal(
            OBJECT_MANAGER_IFACE,
            "InterfacesAdded",
            "oa{sa{sv}}",
            dbus.Array(added, signature="v"),
            signature="sssav",
        )
        self.devices[device.address] = device

    def advertise(
        self,
        address: str,
        *,
        rssi: int | None = None,
        manufacturer_data: dict[int, bytes] | None = None,
        service_data: dict[str, bytes] | None = None,
    ) -> None:
        """A new advert from a known device: PropertiesChanged on its Device1 with what changed."""
        device = self.devices[address]
        changed: dict[str, Any] = {}
        if rssi is not None:
            device.rssi = rssi
            changed["RSSI"] = dbus.Int16(rssi)
        if manufacturer_data is not None:
            device.manufacturer_data = manufacturer_data
            changed["ManufacturerData"] = manufacturer_variant(manufacturer_data)
        if service_data is not None:
            device.service_data = service_data
            changed["ServiceData"] = service_variant(service_data)
        self._iface(device.path, MOCK_IFACE).UpdateProperties(
            DEVICE_IFACE, dbus.Dictionary(changed, signature="sv"), signature="sa{sv}"
        )


class AsyncBlueZ:
    """``BlueZMock`` for async tests: every blocking D-Bus call runs on one worker thread, off the loop."""

    def __init__(self, mock: BlueZMock) -> None:
        self.mock = mock
        # one thread: the dbus-python connection is only ever used from it
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bluez-mock")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def add_adapter(self, name: str = "hci0") -> None:
        await self._run(self.mock.add_adapter, name)

    async def remove_adapter(self, name: str = "hci0") -> None:
        await self._run(self.mock.remove_adapter, name)

    async def restart(self) -> None:
        await self._run(self.mock.restart)

    async def restart_bus(self) -> None:
        await self._run(self.mock.restart_bus)

    async def powered(self, adapter: str = "hci0") -> bool:
        return await self._run(self.mock.powered, adapter)

    async def fail_next(self, method: str, errors: list[str], adapter: str = "hci0") -> None:
        await self._run(self.mock.fail_next, method, errors, adapter)

    async def calls(self, method: str, adapter: str = "hci0") -> int:
        return await self._run(self.mock.calls, method, adapter)

    async def add_device(self, address: str, **kwargs: Any) -> str:
        return await self._run(self.mock.add_device, address, **kwargs)

    async def advertise(self, address: str, **kwargs: Any) -> None:
        await self._run(self.mock.advertise, address, **kwargs)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


@contextlib.contextmanager
def bluez_stack(workdir: Path, *, monitor_api: bool = True, adapter: str | None = "hci0") -> Any:
    """Start a private bus and the mock bluetoothd (with ``adapter``); stop both however the block ends."""
    bus = PrivateSystemBus(workdir / "bus")
    mock = BlueZMock(bus, workdir, monitor_api=monitor_api)
    try:
        bus.start()
        mock.start()
        if adapter is not None:
            mock.add_adapter(adapter)
        yield mock
    finally:
        mock.close()
        bus.stop()


@contextlib.asynccontextmanager
async def async_bluez(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, *, monitor_api: bool = True
) -> AsyncIterator[AsyncBlueZ]:
    """The stack for one test, with ``DBUS_SYSTEM_BUS_ADDRESS`` pointing bleak at it for that test only."""
    with bluez_stack(workdir, monitor_api=monitor_api) as mock:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", mock.bus.address)
        bluez = AsyncBlueZ(mock)
        try:
            yield bluez
        finally:
            bluez.close()
            await release_bleak_bus()


def collect_dead_connections() -> None:
    """Collect a test's dead D-Bus connections at a known point: call it after the test's loop closed.

    dbus-fast drops the futures of writes that failed when a bus died; once collected, asyncio logs
    them ("Future exception was never retrieved") with a formatted traceback, which calls ``ast.parse``.
    If that collection lands inside another ``ast.parse`` (pytest importing a module), CPython <= 3.11.7
    raises "AST constructor recursion depth mismatch" (gh-106905, fixed in 3.11.8).
    """
    gc.collect()


async def release_bleak_bus() -> None:
    """Close the D-Bus connection bleak keeps per event loop, while the test's loop still runs.

    bleak holds it for the life of the process (right for the daemon). A test's loop ends first; left
    open, the connection dies with the bus later and its futures are finalized with an unretrieved
    error, running logging code inside whatever the interpreter is doing then (CPython 3.11.7 aborts an
    ``ast.parse`` it interrupts that way: "AST constructor recursion depth mismatch").
    """
    manager = bleak_manager._global_instances.pop(asyncio.get_running_loop(), None)
    if manager is None or manager._bus is None:
        return
    bus = manager._bus
    bus.disconnect()
    watcher = getattr(manager, "_bus_watcher_task", None)  # bleak >= 3.1 watches its bus
    if watcher is not None:
        await asyncio.wait({watcher}, timeout=START_TIMEOUT_S)
    else:
        with contextlib.suppress(OSError, EOFError, TimeoutError):  # however it ends, it has ended
            await asyncio.wait_for(bus.wait_for_disconnect(), START_TIMEOUT_S)


__all__ = [
    "IN_PROGRESS",
    "NOT_READY",
    "AsyncBlueZ",
    "BlueZMock",
    "PrivateSystemBus",
    "async_bluez",
    "bluez_stack",
]
