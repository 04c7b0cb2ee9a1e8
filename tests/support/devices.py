"""Simulated smart devices on a real broker, each following its maker's documented topics and payloads.

- ``Z2mDevice``: a Zigbee2MQTT device (a light, a thermostatic radiator valve): it takes JSON on
  ``zigbee2mqtt/{name}/set``, applies it after a delay and republishes its whole state on
  ``zigbee2mqtt/{name}``; availability on ``zigbee2mqtt/{name}/availability`` as JSON ``{"state": ...}``,
  retained, as Zigbee2MQTT 2.x does. ``ignore = True`` makes it a device that never applies anything.
- ``TasmotaLight``: ``cmnd/{topic}/Dimmer|CT|Power`` -> ``stat/{topic}/RESULT`` with the changed keys, and the
  retained LWT ``tele/{topic}/LWT`` (``Online``/``Offline``).

Only the radio behind them is missing; what they say on MQTT is what the real ones say.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass
class Z2mDevice:
    name: str
    state: dict[str, Any]
    delay_s: float = 0.02
    ignore: bool = False
    base: str = "zigbee2mqtt"
    commands: list[dict[str, Any]] = field(default_factory=list)

    @property
    def topic(self) -> str:
        return f"{self.base}/{self.name}"


@dataclass
class TasmotaLight:
    topic: str
    state: dict[str, Any]
    delay_s: float = 0.02
    commands: list[tuple[str, str]] = field(default_factory=list)


class DeviceBench:
    """Runs the devices on one MQTT connection; ``set_online`` flips a device's availability."""

    def __init__(self, port: int, z2m: list[Z2mDevice], tasmota: list[TasmotaLight]) -> None:
        self._port = port
        self.z2m = {device.topic: device for device in z2m}
        self.tasmota = {device.topic: device for device in tasmota}
        self.raw: list[tuple[str, bytes]] = []  # every command the gateway sent, as sent
        self._client: aiomqtt.Client | None = None

    async def set_online(self, device: Z2mDevice | TasmotaLight, online: bool) -> None:
        assert self._client is not None
        if isinstance(device, Z2mDevice):
            state = json.dumps({"state": "online" if online else "offline"})
            await self._client.publish(f"{device.topic}/availability", state, qos=1, retain=True)
        else:
            await self._client.publish(
                f"tele/{device.topic}/LWT", "Online" if online else "Offline", qos=1, retain=True
            )

    async def _serve(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic, payload = str(message.topic), bytes(message.payload)  # type: ignore[arg-type]
            self.raw.append((topic, payload))
            if topic.endswith("/set") and topic[: -len("/set")] in self.z2m:
                await self._z2m(client, self.z2m[topic[: -len("/set")]], json.loads(payload))
            elif topic.startswith("cmnd/"):
                _, name, command = topic.split("/")
                await self._tasmota(client, self.tasmota[name], command, payload.decode())

    async def _z2m(self, client: aiomqtt.Client, device: Z2mDevice, command: dict[str, Any]) -> None:
        device.commands.append(command)
        if device.ignore:
            return
        await asyncio.sleep(device.delay_s)
        device.state.update(command)
        await client.publish(device.topic, json.dumps(device.state), qos=1)

    async def _tasmota(self, client: aiomqtt.Client, device: TasmotaLight, command: str, value: str) -> None:
        device.commands.append((command, value))
        await asyncio.sleep(device.delay_s)
        key = {"Dimmer": "Dimmer", "CT": "CT", "Power": "POWER"}[command]
        device.state[key] = value if key == "POWER" else int(value)
        await client.publish(f"stat/{device.topic}/RESULT", json.dumps({key: device.state[key]}), qos=1)


@contextlib.asynccontextmanager
async def device_bench(
    port: int, z2m: list[Z2mDevice], tasmota: list[TasmotaLight] | None = None
) -> AsyncIterator[DeviceBench]:
    bench = DeviceBench(port, z2m, tasmota or [])
    async with aiomqtt.Client("127.0.0.1", port, identifier="device-bench") as client:
        bench._client = client
        for device in bench.z2m.values():
            await client.subscribe(f"{device.topic}/set", qos=1)
            await bench.set_online(device, True)
        for light in bench.tasmota.values():
            await client.subscribe(f"cmnd/{light.topic}/+", qos=1)
            await bench.set_online(light, True)
        task = asyncio.create_task(bench._serve(client))
        try:
            yield bench
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
