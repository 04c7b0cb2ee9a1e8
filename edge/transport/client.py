"""Building the aiomqtt client of the broker link: session, TLS, socket options, LWT, manual acks, drop
detection; and keeping topics that identify somebody out of the MQTT library's own log lines."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final

import aiomqtt

from edge.config.model import MqttSettings
from edge.transport.topics import topic_matches

# QoS 1 everywhere: at-least-once; every payload is idempotent (versions, ids) so duplicates are harmless.
QOS: Final = 1
# Messages published before waiting for their acks; below paho's default of 20 in flight.
SEND_WINDOW: Final = 16
# aiomqtt warns ("There are N pending publish calls") past 10 calls awaiting their acks, which the send
# window exceeds by design: 304 displays at start gave 228 such lines. The window plus the final 'stopped'
# status is the most the link ever has pending, so a warning past that still means calls pile up.
PENDING_CALLS_WARNING: Final = SEND_WINDOW + 1
# aiomqtt hands this logger to paho, which logs every packet's topic at DEBUG.
CLIENT_LOGGER: Final = "mqtt"

# What a log line may show of a topic; identity unless a topic segment can identify somebody.
TopicRedactor = Callable[[str], str]


class _RedactTopics(logging.Filter):
    """Rewrites topic arguments of paho's log records ("Received PUBLISH ... 'espresense/devices/<mac>/hall'")
    through the redactor of the subscription they match, before any handler formats them."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: dict[str, TopicRedactor] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactors and isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True

    def _redact(self, arg: object) -> object:
        # paho passes a received topic as str and a sent one as bytes.
        if isinstance(arg, bytes | bytearray):
            text = bytes(arg).decode("utf-8", "replace")
        elif isinstance(arg, str):
            text = arg
        else:
            return arg
        for pattern, redact in self.redactors.items():
            if topic_matches(pattern, text):
                return redact(text)
        return arg


_CLIENT_LOG_FILTER: Final = _RedactTopics()
logging.getLogger(CLIENT_LOGGER).addFilter(_CLIENT_LOG_FILTER)


def redact_in_client_logs(pattern: str, redact: TopicRedactor) -> None:
    """Topics under ``pattern`` appear in the MQTT library's log lines only as ``redact`` makes them.

    Process-wide (the library logs to one logger for every client); one entry per subscription pattern.
    """
    _CLIENT_LOG_FILTER.redactors[pattern] = redact


def make_client(
    settings: MqttSettings, *, client_id: str, password: str | None, will: aiomqtt.Will
) -> tuple[aiomqtt.Client, asyncio.Event]:
    """A client for one connection attempt, and an event set when paho sees the socket drop."""
    socket_options: list[tuple[int, int, int]] = []
    if settings.tcp_nodelay:
        socket_options.append((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
    tls_params = None
    if settings.tls.enabled:
        tls_params = aiomqtt.TLSParameters(
            ca_certs=str(settings.tls.ca_file) if settings.tls.ca_file else None,
            certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
            keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=client_id,
        username=settings.username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V311,
        # A persistent session: acks published by displays while we restart are queued by the broker.
        clean_session=False,
        keepalive=settings.keepalive_s,
        will=will,
        tls_params=tls_params,
        tls_insecure=settings.tls.insecure if settings.tls.enabled else None,
        socket_options=socket_options,
        timeout=10,
        logger=logging.getLogger(CLIENT_LOGGER),
    )
    client.pending_calls_threshold = PENDING_CALLS_WARNING
    # aiomqtt exposes neither paho's manual acks nor a drop before CONNACK: both go through paho.
    paho = client._client
    # Inbound QoS 1 messages are acknowledged only once their effect is durable (MqttLink._handle).
    paho.manual_ack_set(True)
    dropped = asyncio.Event()
    loop = asyncio.get_running_loop()
    chained = paho.on_disconnect

    def on_disconnect(*args: Any) -> None:
        loop.call_soon_threadsafe(dropped.set)
        if chained is not None:
            chained(*args)

    paho.on_disconnect = on_disconnect
    return client, dropped
