"""sd_notify over the NOTIFY_SOCKET datagram socket (READY, WATCHDOG, STOPPING), without libsystemd; a count of
what was sent, per kind."""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to systemd when run under ``Type=notify``; a no-op otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading '@' names a socket in the abstract namespace (NUL byte on the wire).
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        applies = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s: float | None = int(usec) / 2_000_000 if applies else None
        # What was sent, by kind ("READY", "WATCHDOG", ...): a count, not a log of every line, since the
        # watchdog alone sends one every WatchdogSec/2 (8,640 a day at WatchdogSec=20) for months.
        self.sent: Counter[str] = Counter()

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> bool:
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(state.encode(), self._address)
        except OSError as exc:
            log.warning("sd_notify %r failed: %s", state, exc)
            return False
        self.sent[state.split("=", 1)[0]] += 1
        return True

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
