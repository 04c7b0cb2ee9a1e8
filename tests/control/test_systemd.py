"""sd_notify over a real datagram socket: what systemd receives, and a record of it that stays bounded."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

from edge.control.systemd import Notifier

# Months of WatchdogSec=20 would be millions; a thousand pings already show whether the record grows.
PINGS = 1000


def test_every_notification_reaches_the_socket_and_the_record_is_a_count_per_kind(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
        assert notifier.enabled
        assert notifier.watchdog_interval_s == 10.0
        notifier.ready("store s1")
        received = [systemd.recv(4096).decode()]
        for _ in range(PINGS):
            notifier.watchdog()
            # Read as we go: a datagram socket's queue is short, and a full one would block the sender.
            received.append(systemd.recv(4096).decode())
        notifier.stopping()
        received.append(systemd.recv(4096).decode())
    assert received == ["READY=1\nSTATUS=store s1", *["WATCHDOG=1"] * PINGS, "STOPPING=1"]
    assert notifier.sent == Counter({"READY": 1, "WATCHDOG": PINGS, "STOPPING": 1})


def test_without_a_socket_nothing_is_sent_or_counted() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready()
    notifier.watchdog()
    assert notifier.notify("STOPPING=1") is False
    assert notifier.sent == Counter()


def test_a_failed_send_is_not_counted(tmp_path: Path) -> None:
    # Nobody listens on the path: the send fails with an OSError, logged and not counted as sent.
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.notify("WATCHDOG=1") is False
    assert notifier.sent == Counter()
