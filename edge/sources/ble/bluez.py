"""BlueZ as seen over our own small D-Bus connection: the adapter's presence and power, bluetoothd restarts.

bleak does not notice a restarted bluetoothd (its scan session just dies), so the scanner watches the
``org.bluez`` name owner, the adapter's object path and its properties here; no device traffic passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from bleak.exc import BleakDBusError, BleakError
from dbus_fast import BusType, Message, MessageType, Variant, unpack_variants
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, InvalidAddressError

LOG = logging.getLogger(__name__)

BLUEZ: Final = "org.bluez"
DBUS: Final = "org.freedesktop.DBus"
ADAPTER_IFACE: Final = "org.bluez.Adapter1"
MONITOR_MANAGER_IFACE: Final = "org.bluez.AdvertisementMonitorManager1"
IN_PROGRESS: Final = "org.bluez.Error.InProgress"
NOT_READY: Final = "org.bluez.Error.NotReady"
# Passive scanning needs BlueZ's advertisement monitors (BlueZ >= 5.56 started with --experimental).
PASSIVE_UNSUPPORTED_ERRORS: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownProperty",
        "org.bluez.Adapter1.UnknownInterface",  # what dbusmock answers instead of the standard name
    }
)
# What ends an attempt and is retried (each counted by kind); anything else is a bug and should surface.
# dbus-fast fails the calls pending when the bus drops with the reader's error (EOFError, OSError), and
# refuses a bus it cannot authenticate to or address (a misconfigured DBUS_SYSTEM_BUS_ADDRESS).
RETRYABLE: Final = (BleakError, AuthError, InvalidAddressError, OSError, EOFError, TimeoutError)


class AdapterWatch:
    """Our own view of bluetoothd and the adapter (bleak has none): owner changes, removal, Powered, monitors.

    ``epoch`` moves whenever whatever scanning session exists has been lost with it: the adapter went away,
    bluetoothd changed owner (restart), or our bus connection died.
    """

    def __init__(self, adapter: str, timeout: float, on_loss: Callable[[str], None]) -> None:
        self.path = f"/org/bluez/{adapter}"
        self._timeout = timeout
        self._on_loss = on_loss
        self.bus: MessageBus | None = None
        self.owner: str | None = None
        self.adapter: dict[str, Any] | None = None  # its org.bluez.Adapter1 properties while it exists
        self.epoch = 0
        self.changed = asyncio.Event()
        self._seq = 0  # moves on every appearance/disappearance signal: a read older than that is stale
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        return self.bus is not None and self.owner is not None and self.adapter is not None

    async def connect(self) -> None:
        bus = MessageBus(bus_type=BusType.SYSTEM)
        try:
            await asyncio.wait_for(bus.connect(), self._timeout)
        except BaseException:
            bus.disconnect()  # the constructor opened the socket: a failed connect must still close it
            raise
        self.bus = bus
        bus.add_message_handler(self._on_message)
        try:
            for rule in (
                f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg0='{BLUEZ}'",
                f"type='signal',interface='org.freedesktop.DBus.ObjectManager',arg0path='{self.path}'",
                f"type='signal',interface='org.freedesktop.DBus.Properties',path='{self.path}'",
            ):
                await self._call(DBUS, "/org/freedesktop/DBus", DBUS, "AddMatch", "s", [rule])
            try:
                reply = await self._call(DBUS, "/org/freedesktop/DBus", DBUS, "GetNameOwner", "s", [BLUEZ])
                self.owner = str(reply[0])
            except BleakDBusError as exc:
                if exc.dbus_error != "org.freedesktop.DBus.Error.NameHasNoOwner":
                    raise
            if self.owner is not None:
                await self.refresh()
        except BaseException:
            await self.close()  # half set up is not connected: the next attempt starts clean
            raise
        self._spawn(self._watch_disconnect(bus))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.bus is not None:
            self.bus.disconnect()
        self.bus, self.owner, self.adapter = None, None, None

    async def refresh(self) -> None:
        """Read the adapter's properties afresh (GetManagedObjects), as after bluetoothd (re)appears."""
        seq = self._seq
        reply = await self._call(
            BLUEZ, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", "", []
        )
        if seq != self._seq:
            return  # a signal came while the reply waited to be read: it is newer, and if needed re-reads
        interfaces = reply[0].get(self.path, {})
        self.adapter = unpack_variants(interfaces[ADAPTER_IFACE]) if ADAPTER_IFACE in interfaces else None
        self.changed.set()

    async def passive_supported(self) -> bool:
        try:
            reply = await self._call(
                BLUEZ, self.path, "org.freedesktop.DBus.Properties", "GetAll", "s", [MONITOR_MANAGER_IFACE]
            )
        except BleakDBusError as exc:
            if exc.dbus_error in PASSIVE_UNSUPPORTED_ERRORS:
                return False
            raise
        types = reply[0].get("SupportedMonitorTypes")
        return types is not None and "or_patterns" in types.value

    async def set_powered(self, on: bool) -> None:
        await self._call(
            BLUEZ,
            self.path,
            "org.freedesktop.DBus.Properties",
            "Set",
            "ssv",
            [ADAPTER_IFACE, "Powered", Variant("b", on)],
        )

    async def _call(
        self, dest: str, path: str, iface: str, member: str, sig: str, body: list[Any]
    ) -> list[Any]:
        if self.bus is None:
            raise BleakError("not connected to the system bus")
        message = Message(
            destination=dest, path=path, interface=iface, member=member, signature=sig, body=body
        )
        reply = await asyncio.wait_for(self.bus.call(message), self._timeout)
        if reply is None or reply.message_type == MessageType.ERROR:
            raise BleakDBusError(
                reply.error_name if reply and reply.error_name else "no reply", reply.body if reply else []
            )
        return list(reply.body)

    def _lose(self, kind: str) -> None:
        self._seq += 1
        self._on_loss(kind)
        self.adapter = None
        self.epoch += 1
        self.changed.set()

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "NameOwnerChanged" and msg.sender == DBUS and msg.body[0] == BLUEZ:
            old, new = msg.body[1], msg.body[2]
            if old:
                self._lose("bluez_restarted")
            self.owner = new or None
            if new:
                self._seq += 1
                self._spawn(self._refresh_quietly())
        elif msg.sender != self.owner:
            return  # only bluetoothd speaks for the adapter
        elif msg.path == "/" and msg.body and msg.body[0] == self.path:
            if msg.member == "InterfacesAdded" and ADAPTER_IFACE in msg.body[1]:
                # re-read: the signal need not carry every interface (dbusmock sends Adapter1 alone)
                self._seq += 1
                self._spawn(self._refresh_quietly())
            elif msg.member == "InterfacesRemoved" and ADAPTER_IFACE in msg.body[1]:
                self._lose("adapter_missing")
        elif (
            msg.member == "PropertiesChanged"
            and msg.path == self.path
            and msg.body[0] == ADAPTER_IFACE
            and self.adapter is not None
        ):
            self.adapter.update(unpack_variants(msg.body[1]))
            self.changed.set()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except RETRYABLE as exc:  # the next (re)appearance or the scanner's retry reads it again
            LOG.debug("reading the adapter failed: %s", exc)

    async def _watch_disconnect(self, bus: MessageBus) -> None:
        with contextlib.suppress(Exception):  # however the bus ended, the reaction is the same
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # dbus-fast leaves it unannotated
        if self.bus is bus:
            self.bus = None
            self._lose("bus_lost")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
