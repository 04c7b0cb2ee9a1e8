"""The one MQTT connection: reconnect with backoff, LWT and status, retained state, outbox, manual acks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import aiomqtt

from edge.clock import Clock, iso_utc
from edge.config.model import MqttSettings
from edge.retry import backoff_delay
from edge.throttle import LogThrottle
from edge.transport.client import QOS, SEND_WINDOW, TopicRedactor, make_client, redact_in_client_logs
from edge.transport.topics import Topics, topic_matches

log = logging.getLogger(__name__)

# First retry after ~0.25 s, doubling: a restarted broker is back within a second or two on a Pi.
# How long a graceful stop waits for the outbox to reach the broker before giving up.
DRAIN_DEADLINE_S: Final = 2.0
# A broker answers CONNECT within milliseconds on a LAN; past this the attempt is retried with backoff.
CONNECT_TIMEOUT_S: Final = 5.0
# Oversized payloads are logged once per subscription, then at most once per this many seconds with the
# number held back; each one is counted in gateway/health (mqtt.oversized) anyway.
OVERSIZED_LOG_EVERY_S: Final = 60.0
# A full outbox during a long outage would log every message; one line per this many drops is enough.
LOG_EVERY_DROPS: Final = 1000


class LinkState(StrEnum):
    IDLE = "idle"  # built, not run yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # the connection failed or was lost: waiting before the next attempt
    STOPPED = "stopped"


@dataclass(slots=True, frozen=True)
class LinkStats:
    """A snapshot for gateway/health. ``counters`` holds only the events that happened (received,
    published, deferred, oversized, handler_errors, outbox_dropped, connect_failures, disconnects)."""

    state: LinkState
    outbox: int  # messages waiting for the broker
    counters: Mapping[str, int]


@dataclass(slots=True, frozen=True)
class Inbound:
    """One received message as the stages see it: no client, no socket."""

    topic: str
    payload: bytes
    retain: bool
    received_mono: float
    # The broker's DUP flag: it sends a message again because we had not acked it (a crash, a lost
    # connection). Set by the broker alone (a publisher's DUP is not passed on), so it cannot be forged.
    redelivered: bool = False


class RetryLater(Exception):  # noqa: N818 - a signal, not an error condition
    """Raised by a handler whose effect could not be made durable: the message is not acknowledged."""


Handler = Callable[[Inbound], Awaitable[None]]


@dataclass(slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    retain: bool


def status_payload(state: str, *, version: str, started_wall: float, now_wall: float) -> bytes:
    body = {
        "v": 1,
        "ts": iso_utc(now_wall),
        "state": state,
        "version": version,
        "started_at": iso_utc(started_wall),
    }
    return json.dumps(body, separators=(",", ":")).encode()


class MqttLink:
    """Owns the broker connection; the rest of the gateway publishes and registers handlers through it."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        client_id: str,
        topics: Topics,
        password: str | None,
        clock: Clock,
        version: str,
        started_wall: float,
        rng: random.Random | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._client_id = client_id
        self._topics = topics
        self._password = password
        self._clock = clock
        self._version = version
        self._started_wall = started_wall
        self._rng = rng or random.Random()
        self._handlers: list[tuple[str, Handler]] = []
        # Routing without a scan of every subscription: a filter without wildcards (a device's own state
        # topic: hundreds of them) is looked up; only the few wildcard filters are matched in turn. The
        # first registered match wins, as in a scan (indexes into ``_handlers``).
        self._exact: dict[str, int] = {}
        self._wild: list[int] = []
        self._limits: dict[str, int] = {}
        self._log_topics: dict[str, TopicRedactor] = {}
        self._oversized_log = LogThrottle(clock, OVERSIZED_LOG_EVERY_S)
        self._retained: dict[str, bytes] = {}
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._inflight = asyncio.Semaphore(settings.inflight_max)
        self._handler_tasks: set[asyncio.Task[None]] = set()
        # Called after each (re)connect, once retained state is queued for republishing (the health).
        self._on_connect = on_connect
        self._generation = 0
        self._client: aiomqtt.Client | None = None
        self._redelivered_mids: set[int] = set()
        self._stop = asyncio.Event()
        self._final = True
        self.connected = asyncio.Event()
        self.state = LinkState.IDLE
        self.counters: Counter[str] = Counter()

    # ----- wiring (before run) -----
    def on(
        self,
        pattern: str,
        handler: Handler,
        *,
        max_payload_bytes: int | None = None,
        log_topic: TopicRedactor | None = None,
    ) -> None:
        """Subscribe ``pattern`` (QoS 1) on every connect and route its messages to ``handler``.

        ``max_payload_bytes`` overrides the link's inbound size limit for this pattern (config pushes);
        ``log_topic`` is what the link's log lines show of a topic (ESPresense: without the device).
        """
        if "+" in pattern or "#" in pattern:
            self._wild.append(len(self._handlers))
        else:
            self._exact.setdefault(pattern, len(self._handlers))
        self._handlers.append((pattern, handler))
        if max_payload_bytes is not None:
            self._limits[pattern] = max_payload_bytes
        if log_topic is not None:
            self._log_topics[pattern] = log_topic
            redact_in_client_logs(pattern, log_topic)

    # ----- publishing (never blocks, never raises) -----
    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Queue a message; while disconnected it waits in the bounded outbox (oldest dropped, counted)."""
        if retain:
            self._retained[topic] = payload
            if not self.connected.is_set():
                return  # retained state is republished from the registry on connect
        if len(self._outbox) >= self._settings.outbox_max:
            dropped = self._outbox.popleft()
            self.counters["outbox_dropped"] += 1
            if self.counters["outbox_dropped"] % LOG_EVERY_DROPS == 1:
                log.warning(
                    "MQTT outbox full (%d); dropping oldest messages (first: %s), %d dropped so far",
                    self._settings.outbox_max,
                    dropped.topic,
                    self.counters["outbox_dropped"],
                )
        self._outbox.append(_Outgoing(topic, payload, retain))
        self._outbox_ready.set()

    def clear_retained(self, topic: str) -> None:
        """Clear ``topic`` on the broker: an empty retained payload, held in the retained registry like any
        state, so it is sent on the next connect if the link is down now (a rebuild's removed displays)."""
        self.publish(topic, b"", retain=True)

    @property
    def outbox_depth(self) -> int:
        return len(self._outbox)

    def stats(self) -> LinkStats:
        return LinkStats(self.state, len(self._outbox), dict(self.counters))

    # ----- lifecycle -----
    def request_stop(self, *, final: bool = True) -> None:
        """Drain and leave. ``final=False`` (a rebuild, another link follows at once): no 'stopped' status."""
        self._final = final
        self._stop.set()

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff, until ``request_stop``; then publish 'stopped' and leave."""
        attempt = 0
        while not self._stop.is_set():
            self.state = LinkState.CONNECTING
            client, dropped = self._make_client()
            try:
                if not await self._connect(client, dropped):
                    break
                try:
                    attempt = 0
                    await self._serve(client)
                finally:
                    with contextlib.suppress(aiomqtt.MqttError):
                        await client.__aexit__(None, None, None)
                break
            except aiomqtt.MqttError as exc:
                self.counters["connect_failures" if not self.connected.is_set() else "disconnects"] += 1
                log.warning(
                    "MQTT connection to %s:%d lost or refused: %s",
                    self._settings.host,
                    self._settings.port,
                    exc,
                )
            finally:
                self.connected.clear()
                self._client = None
                # Retained copies are superseded by the registry, republished first on the next connect.
                self._outbox = deque(item for item in self._outbox if not item.retain)
            self.state = LinkState.BACKOFF
            delay = backoff_delay(attempt, self._settings.reconnect_max_s, self._rng)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
        self.state = LinkState.STOPPED

    async def _connect(self, client: aiomqtt.Client, dropped: asyncio.Event) -> bool:
        """Open the session; False if a stop came first. Raises MqttError on refusal, drop or timeout."""
        entering = asyncio.ensure_future(client.__aenter__())
        watchers = {asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(dropped.wait())}
        try:
            done, _ = await asyncio.wait(
                {entering, *watchers}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for watcher in watchers:
                watcher.cancel()
        if entering in done:
            entering.result()  # raises MqttError on a refused CONNACK
            return True
        # aiomqtt waits for a CONNACK that will never come when the broker drops the socket first
        # (a rejected client certificate, TLS spoken to a plain port): give up on this attempt now.
        entering.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await entering
        client._client._sock_close()  # the abandoned attempt's socket, if still open
        if self._stop.is_set():
            return False
        reason = (
            "connection closed before CONNACK"
            if dropped.is_set()
            else f"no CONNACK within {CONNECT_TIMEOUT_S} s"
        )
        raise aiomqtt.MqttError(reason)

    async def wait_handlers(self, timeout: float) -> None:
        """Let in-flight handlers finish (graceful drain)."""
        if self._handler_tasks:
            await asyncio.wait(set(self._handler_tasks), timeout=timeout)

    def _make_client(self) -> tuple[aiomqtt.Client, asyncio.Event]:
        offline = status_payload(
            "offline", version=self._version, started_wall=self._started_wall, now_wall=self._clock.wall()
        )
        will = aiomqtt.Will(self._topics.status, offline, qos=QOS, retain=True)
        client, dropped = make_client(
            self._settings, client_id=self._client_id, password=self._password, will=will
        )
        # aiomqtt's Message drops paho's DUP flag: note the ids of redelivered messages on the way in.
        self._redelivered_mids = redelivered = set[int]()
        paho = client._client
        deliver = paho.on_message

        def on_message(paho_client: Any, userdata: Any, message: Any) -> None:
            if message.dup:
                redelivered.add(message.mid)
            if deliver is not None:
                deliver(paho_client, userdata, message)

        paho.on_message = on_message
        return client, dropped

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._generation += 1
        self._client = client
        for pattern, _ in self._handlers:
            await client.subscribe(pattern, qos=QOS)
        self.state = LinkState.CONNECTED
        if self._on_connect is not None:
            self._on_connect()
        self._queue_connect_state()
        self.connected.set()
        log.info("MQTT connected to %s:%d as %s", self._settings.host, self._settings.port, self._client_id)
        try:
            async with asyncio.TaskGroup() as group:
                receiver = group.create_task(self._receive(client), name="mqtt-receive")
                sender = group.create_task(self._send(client), name="mqtt-send")
                await self._stop.wait()
                await self._drain(client)
                receiver.cancel()
                sender.cancel()
        except* aiomqtt.MqttError as lost:
            # One lost connection surfaces in both loops; the caller reconnects on the first.
            raise lost.exceptions[0] from None

    def _queue_connect_state(self) -> None:
        """Status online and every retained state go first; queued retained copies are superseded."""
        rest = [item for item in self._outbox if not item.retain]
        online = status_payload(
            "online", version=self._version, started_wall=self._started_wall, now_wall=self._clock.wall()
        )
        self._retained[self._topics.status] = online
        self._outbox = deque(_Outgoing(topic, payload, True) for topic, payload in self._retained.items())
        self._outbox.extend(rest)
        self._outbox_ready.set()

    async def _send(self, client: aiomqtt.Client) -> None:
        while True:
            if not self._outbox:
                self._outbox_empty.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            # Pipelined: paho writes them in order and the broker acks them together, so one round trip
            # per window instead of per message. Removed only once the broker has them: messages in
            # flight when the link drops are sent again (at least once; every payload is idempotent).
            window = list(itertools.islice(self._outbox, SEND_WINDOW))
            await asyncio.gather(
                *(client.publish(item.topic, item.payload, qos=QOS, retain=item.retain) for item in window)
            )
            sent = {id(item) for item in window}
            while self._outbox and id(self._outbox[0]) in sent:
                self._outbox.popleft()
            self.counters["published"] += len(window)

    async def _drain(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_DEADLINE_S
        # Handlers first: what they publish belongs in the drain too.
        await self.wait_handlers(DRAIN_DEADLINE_S / 2)
        if self._outbox:
            self._outbox_empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_empty.wait(), max(0.0, deadline - loop.time()))
        if not self._final:
            return
        stopped = status_payload(
            "stopped", version=self._version, started_wall=self._started_wall, now_wall=self._clock.wall()
        )
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            await client.publish(self._topics.status, stopped, qos=QOS, retain=True, timeout=DRAIN_DEADLINE_S)

    async def _receive(self, client: aiomqtt.Client) -> None:
        generation = self._generation
        async for message in client.messages:
            self.counters["received"] += 1
            redelivered = message.mid in self._redelivered_mids
            self._redelivered_mids.discard(message.mid)
            topic = message.topic.value
            raw = message.payload
            # paho hands bytes; aiomqtt's type also allows str/int/float/None for outgoing payloads.
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
            pattern, handler, limit = self._route(topic)
            if handler is None or len(payload) > limit:
                if handler is not None:
                    self._oversized(pattern, topic, len(payload), limit)
                self._ack(client, generation, message.mid, message.qos)
                continue
            inbound = Inbound(
                topic, bytes(payload), bool(message.retain), self._clock.monotonic(), redelivered
            )
            await self._inflight.acquire()
            task = asyncio.create_task(
                self._handle(handler, inbound, client, generation, message.mid, message.qos)
            )
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)

    def _route(self, topic: str) -> tuple[str, Handler | None, int]:
        """The first registered filter that matches ``topic``: its pattern, handler and payload limit."""
        exact = self._exact.get(topic)
        found = exact
        for index in self._wild:
            if exact is not None and index > exact:
                break
            if topic_matches(self._handlers[index][0], topic):
                found = index
                break
        if found is None:
            return "", None, 0
        pattern, handler = self._handlers[found]
        return pattern, handler, self._limits.get(pattern, self._settings.max_payload_bytes)

    def _loggable(self, topic: str) -> str:
        for pattern, redact in self._log_topics.items():
            if topic_matches(pattern, topic):
                return redact(topic)
        return topic

    def _oversized(self, pattern: str, topic: str, size: int, limit: int) -> None:
        self.counters["oversized"] += 1
        held = self._oversized_log.admit(pattern)
        if held is not None:
            # The pattern is our own subscription, never a sender's data; the topic is shown redacted.
            log.warning(
                "dropped oversized payload (%d bytes, limit %d) on %s; %s",
                size,
                limit,
                self._loggable(topic),
                f"{held} more on {pattern} since the last line"
                if held
                else f"more on {pattern} are logged at most every {OVERSIZED_LOG_EVERY_S:.0f} s",
            )

    async def _handle(
        self, handler: Handler, inbound: Inbound, client: aiomqtt.Client, generation: int, mid: int, qos: int
    ) -> None:
        try:
            await handler(inbound)
        except RetryLater:
            # Not acknowledged: the broker redelivers it on our next session.
            self.counters["deferred"] += 1
            return
        except Exception:
            # The edge of the system: one bad message must never take the gateway down.
            self.counters["handler_errors"] += 1
            log.exception("handler for %s failed; message dropped", self._loggable(inbound.topic))
        finally:
            self._inflight.release()
        self._ack(client, generation, mid, qos)

    def _ack(self, client: aiomqtt.Client, generation: int, mid: int, qos: int) -> None:
        # A message id belongs to one connection: acking it on a newer one could ack someone else's message.
        if qos > 0 and generation == self._generation and self._client is client:
            client._client.ack(mid, qos)
