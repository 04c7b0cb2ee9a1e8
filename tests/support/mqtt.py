"""A test-side MQTT client that records what it sees and waits for a condition (real broker, real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt

from edge.clock import SystemClock
from edge.config.model import MqttSettings
from edge.transport.mqtt import MqttLink
from edge.transport.topics import Topics
from tests.support.wait import until


class Probe:
    """Subscribes to filters and keeps every message; ``wait_for`` waits for a condition (tests/support/wait.py)."""

    def __init__(
        self,
        port: int,
        *filters: str,
        identifier: str | None = None,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        tls_ca: Path | None = None,
        clean_session: bool | None = None,
    ) -> None:
        """``identifier`` with ``clean_session=False``: a persistent session, whose subscriptions and QoS 1
        messages the broker keeps while the probe is away (and across a graceful broker restart)."""
        self.port = port
        self.filters = filters
        self.identifier = identifier
        self.username = username
        self.password = password
        self.host = host
        self.tls_ca = tls_ca
        self.clean_session = clean_session
        self.messages: list[tuple[str, bytes, bool]] = []
        self._arrived = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Probe:
        self._client = await self._stack.enter_async_context(
            aiomqtt.Client(
                self.host,
                self.port,
                username=self.username,
                password=self.password,
                identifier=self.identifier,
                tls_params=None if self.tls_ca is None else aiomqtt.TLSParameters(ca_certs=str(self.tls_ca)),
                clean_session=self.clean_session,
                timeout=5,
            )
        )
        for pattern in self.filters:
            await self._client.subscribe(pattern, qos=1)
        self._task = asyncio.create_task(self._collect())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._task
        with contextlib.suppress(aiomqtt.MqttError):
            await self._stack.aclose()

    async def _collect(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.messages.append((message.topic.value, payload, bool(message.retain)))
            self._arrived.set()

    async def publish(
        self, topic: str, payload: bytes | str | dict[str, Any], *, retain: bool = False
    ) -> None:
        assert self._client is not None
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        await self._client.publish(topic, payload, qos=1, retain=retain)

    def on(self, topic: str) -> list[bytes]:
        return [payload for name, payload, _ in self.messages if name == topic]

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(payload) for payload in self.on(topic) if payload]

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        """``until(predicate)``, saying on failure what this probe had seen."""
        await until(predicate, timeout, detail=lambda: f"seen {len(self.messages)} messages")


def make_link(
    port: int, *, root: str = "store/t1", password: str | None = None, **overrides: Any
) -> MqttLink:
    """A gateway MQTT link with short timings for tests (fixed client id: a persistent session)."""
    settings = MqttSettings(port=port, reconnect_max_s=0.5, keepalive_s=5, **overrides)
    return MqttLink(
        settings,
        client_id="gw-test",
        topics=Topics(root),
        password=password,
        clock=SystemClock(),
        version="test",
        started_wall=SystemClock().wall(),
        rng=random.Random(1),
    )
