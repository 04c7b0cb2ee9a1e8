"""The gateway as a real process: sd_notify, SIGTERM drain, SIGKILL with LWT and no acknowledged exposure lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.launch import child_env, gateway_command
from tests.support.mqtt import Probe
from tests.support.store import ROOT, StoreKit, make_store
from tests.support.wait import until

STATUS = f"{ROOT}/gateway/status"
CONTENT = f"{ROOT}/display/screen-cafe/content"


@contextlib.contextmanager
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


def start_gateway(store: StoreKit, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``edge-gateway run`` as its own process, on the test's timeline (tests/support/launch.py)."""
    return subprocess.Popen(
        gateway_command("run", "--config", str(store.config_path)),
        cwd=store.workdir,
        env=child_env(**(env or {})),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def received(sock: socket.socket) -> list[str]:
    lines = []
    with contextlib.suppress(BlockingIOError):
        while True:
            lines.append(sock.recv(4096).decode())
    return lines


async def wait_state(probe: Probe, state: str, timeout: float = 10) -> None:
    await probe.wait_for(lambda: any(m["state"] == state for m in probe.json_on(STATUS)), timeout)


@pytest.fixture
def store(tmp_path: Path, mosquitto: Mosquitto) -> StoreKit:
    return make_store(tmp_path / "store", mosquitto.port, min_display_s=0)


async def test_sd_notify_and_graceful_sigterm(store: StoreKit, mosquitto: Mosquitto, tmp_path: Path) -> None:
    lines: list[str] = []
    with notify_socket(tmp_path) as (sock, path):

        def watchdog_pings() -> int:
            lines.extend(received(sock))
            return lines.count("WATCHDOG=1")

        async with Probe(mosquitto.port, STATUS) as probe:
            proc = start_gateway(store, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
            try:
                await wait_state(probe, "online")
                await until(lambda: watchdog_pings() >= 2)  # every 0.1 s: half of WATCHDOG_USEC
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(proc.wait, 10)
                elapsed = time.monotonic() - started
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
            assert elapsed < 5.0
            await wait_state(probe, "stopped")
            assert probe.json_on(STATUS)[-1]["state"] == "stopped"
        lines.extend(received(sock))
    assert any(line.startswith("READY=1") for line in lines)
    assert lines.count("WATCHDOG=1") >= 2
    assert lines[-1] == "STOPPING=1"


async def test_sigkill_loses_no_acknowledged_exposure(store: StoreKit, mosquitto: Mosquitto) -> None:
    count = 15
    async with Probe(mosquitto.port, STATUS, CONTENT, identifier="test-display") as display:
        proc = start_gateway(store)
        try:
            await wait_state(display, "online")
            for index in range(count):
                await display.publish(f"{ROOT}/checkin", store.checkin(f"p-walkin{index}", zone="cafe"))
                await display.wait_for(
                    lambda i=index: len([m for m in display.json_on(CONTENT) if m["decision_id"]]) == i + 1
                )
            manifests = [m for m in display.json_on(CONTENT) if m["decision_id"]]
            for manifest in manifests:
                ack = {
                    "v": 1,
                    "version": manifest["version"],
                    "decision_id": manifest["decision_id"],
                    "status": "shown",
                }
                await display.publish(f"{ROOT}/display/screen-cafe/ack", ack)  # PUBACKed by the broker
            proc.kill()  # SIGKILL right after the acks were accepted by the broker
            proc.wait(5)
            await wait_state(display, "offline")  # the LWT
        finally:
            if proc.poll() is None:
                proc.kill()
        # Back up: whatever the dead process had not made durable is redelivered by the broker.
        proc = start_gateway(store)
        try:
            db = store.workdir / "ledger.sqlite"

            def exposures() -> int:
                with contextlib.closing(sqlite3.connect(db)) as conn:
                    return int(conn.execute("select count(*) from exposures").fetchone()[0])

            await display.wait_for(lambda: exposures() == count, timeout=15)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    assert exposures() == count
    with contextlib.closing(sqlite3.connect(db)) as conn:
        ids = {row[0] for row in conn.execute("select decision_id from exposures")}
    assert ids == {m["decision_id"] for m in manifests}
