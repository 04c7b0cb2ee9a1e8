"""The disk fills up under a running gateway (a real, tiny tmpfs): it survives, says so, and recovers.

The ledger and the control state live on a 4 MB tmpfs that the test fills to the last byte. Check-ins
are then deferred (not acknowledged, so the broker keeps them), a config push is refused because its
snapshot cannot be made durable, ``gateway/health`` carries both alerts, and the broker link and the
health loop carry on. Once space is freed the next write clears the alert.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control.conftest import DESIRED, REPORTED, ControlKit, make_control_store
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT

HEALTH = f"{ROOT}/gateway/health"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write until the file system says ENOSPC; the filler file is returned for freeing later."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65_536, 512):  # big chunks, then the last partial one
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def _on_disk(control: ControlKit, disk: Path) -> None:
    config = control.store.config_path
    text = config.read_text()
    text = text.replace('path = "ledger.sqlite"', f'path = "{disk / "ledger.sqlite"}"')
    text = text.replace('state_dir = "state"', f'state_dir = "{disk / "state"}"')
    config.write_text(text)


def _alerts(probe: Probe) -> list[str]:
    health = probe.json_on(HEALTH)
    return health[-1]["alerts"] if health else []


async def test_a_full_disk_is_survived_with_a_health_flag(
    tmp_path: Path, mosquitto: Mosquitto, small_disk: Path
) -> None:
    control = make_control_store(tmp_path / "store", mosquitto.port)
    _on_disk(control, small_disk)
    store = control.store
    checkin = f"{ROOT}/checkin"
    async with (
        Probe(store.port, REPORTED, HEALTH) as probe,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        assert gateway.generation is not None and gateway.generation.link is not None
        flow, link = gateway.generation, gateway.generation.link
        await probe.publish(checkin, {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
        await probe.wait_for(lambda: flow.decider.decisions >= 1)

        filler = _fill(small_disk)
        await probe.publish(checkin, {"v": 1, "token": store.token("p-full"), "zone": "entrance"})
        await probe.wait_for(lambda: link.counters["deferred"] >= 1, timeout=10)
        await probe.wait_for(
            lambda: any(a.startswith("ledger_disk_full") for a in _alerts(probe)), timeout=10
        )
        await probe.publish(DESIRED, control.push(1, {"presence": {"checkin_timeout_s": 30}}), retain=True)
        await probe.wait_for(lambda: probe.json_on(REPORTED), timeout=10)
        report = probe.json_on(REPORTED)[-1]
        assert report["status"] == "rejected" and report["error"].startswith("state_write_failed"), report
        await probe.wait_for(lambda: any(a.startswith("control_state_write_failed") for a in _alerts(probe)))
        assert gateway.settings.presence.checkin_timeout_s != 30
        # alive: still connected, health still published
        assert link.state == "connected"
        seen = len(probe.json_on(HEALTH))
        await probe.wait_for(lambda: len(probe.json_on(HEALTH)) > seen, timeout=5)

        filler.unlink()
        decisions = flow.decider.decisions
        await probe.publish(checkin, {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
        await probe.wait_for(lambda: flow.decider.decisions > decisions, timeout=10)
        await probe.wait_for(
            lambda: not any(a.startswith("ledger_disk_full") for a in _alerts(probe)), timeout=10
        )
        # a push now goes through, and its durable write clears the control flag
        await probe.publish(DESIRED, control.push(2, {"presence": {"checkin_timeout_s": 30}}), retain=True)
        await probe.wait_for(lambda: probe.json_on(REPORTED)[-1].get("version") == 2, timeout=10)
        assert probe.json_on(REPORTED)[-1]["status"] == "applied"
        assert gateway.control is not None and "control_state_write_failed" not in gateway.control.flags
