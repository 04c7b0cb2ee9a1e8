"""An embedded MQTT 3.1.1 broker (amqtt) so the demo runs on a machine with no broker installed."""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokerUnavailableError(RuntimeError):
    """amqtt is not installed (it is the gateway's ``demo`` extra, not a store's dependency)."""


class EmbeddedBroker:
    """amqtt on a free loopback port, anonymous, for the demo only (production uses mosquitto); MQTT over
    WebSockets on ``ws_port`` for the browser pages (player/)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.ws_port = free_loopback_port()
        self._broker: Any = None

    async def __aenter__(self) -> EmbeddedBroker:
        try:
            from amqtt.broker import Broker  # noqa: PLC0415 - only the demo needs it
        except ImportError as exc:
            msg = (
                "the embedded broker is amqtt, the gateway's demo extra: pip install -e '.[demo]' "
                "(make demo does), or give a broker with --broker host:port"
            )
            raise BrokerUnavailableError(msg) from exc

        # amqtt logs every connection at INFO; keep the demo's output about the store.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {
                "default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"},
                "ws": {"type": "ws", "bind": f"127.0.0.1:{self.ws_port}"},
            },
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info("embedded broker listening on 127.0.0.1:%d", self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
