"""The tests' timeline itself (tests/support/clock.py, docs/testing.md): every test starts at the pinned instant,
in this process, in the gateway under test and in child processes alike."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge import __version__
from edge.clock import SystemClock, parse_iso_utc
from profilestore import __version__ as cloud_version
from profilestore.clock import SystemClock as CloudSystemClock
from tests.support import clock as timeline
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.launch import child_env, cloud_command, gateway_command
from tests.support.mqtt import Probe
from tests.support.store import ROOT, make_store

# A test takes well under this long; a wall clock off the timeline is months or years away from it.
SLACK_S = 60.0


def on_timeline(wall: float) -> bool:
    instant = timeline.chosen_instant()
    return instant <= wall < instant + SLACK_S


def test_a_test_starts_at_the_pinned_instant(test_timeline: timeline.PinnedClock) -> None:
    assert on_timeline(timeline.now())
    assert on_timeline(SystemClock().wall())  # what a gateway built without a clock reads
    assert on_timeline(CloudSystemClock().wall())  # and the reference cloud
    assert on_timeline(test_timeline.wall())
    assert abs(SystemClock().wall() - timeline.now()) < 1.0


def test_the_instant_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timeline.INSTANT_VAR, raising=False)
    assert timeline.chosen_instant() == parse_iso_utc(timeline.DEFAULT_INSTANT)
    assert timeline.describe(timeline.chosen_instant()).endswith("(Monday)")  # a weekday morning
    monkeypatch.setenv(timeline.INSTANT_VAR, "2027-03-07T22:30:00+01:00")
    assert timeline.chosen_instant() == parse_iso_utc("2027-03-07T21:30:00Z")
    assert timeline.describe(timeline.chosen_instant()) == "2027-03-07T21:30:00.000Z (Sunday)"


@pytest.mark.parametrize("text", ["2027-03-01T09:00:00", "next monday", ""])
def test_an_instant_must_be_a_date_time_with_its_zone(text: str) -> None:
    # A zoneless instant would mean different things in different time zones.
    with pytest.raises(ValueError, match="EDGE_TEST_INSTANT"):
        timeline.parse_instant(text)


def test_outside_a_test_there_is_no_timeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(timeline.OFFSET_VAR)
    with pytest.raises(RuntimeError, match=timeline.OFFSET_VAR):
        timeline.now()
    with pytest.raises(RuntimeError, match=timeline.OFFSET_VAR):
        child_env()


def test_the_process_time_zone_is_the_one_asked_for() -> None:
    # make pytest-anyday runs in a zone far from UTC; libc would fall back to UTC for a zone it cannot find.
    name = os.environ.get("TZ")
    if name:
        expected = datetime.fromtimestamp(timeline.now(), ZoneInfo(name)).utcoffset()
        local = time.localtime(timeline.now())  # noqa: TID251 - what libc makes of TZ is the point here
        assert expected is not None and local.tm_gmtoff == expected.total_seconds(), (name, local.tm_zone)


def test_a_child_process_reads_the_same_now() -> None:
    code = (
        "from tests.support.clock import pin_process\n"
        "pin_process()\n"
        "from edge.clock import SystemClock\n"
        "from profilestore.clock import SystemClock as CloudSystemClock\n"
        "print(repr(SystemClock().wall()), repr(CloudSystemClock().wall()))\n"
    )
    before = timeline.now()
    out = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), cwd="/", check=True, capture_output=True, text=True
    ).stdout
    gateway, cloud = map(float, out.split())
    assert before <= gateway <= cloud <= timeline.now()


def test_the_launcher_is_the_real_command(tmp_path: Path) -> None:
    result = subprocess.run(
        gateway_command("--version"),
        env=child_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"edge-gateway {__version__}")
    result = subprocess.run(
        cloud_command("--version"), env=child_env(), cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"profile-store {cloud_version}")


async def test_the_gateway_under_test_decides_on_the_timeline(tmp_path: Path, mosquitto: Mosquitto) -> None:
    store = make_store(tmp_path / "store", mosquitto.port)
    content = f"{ROOT}/display/screen-cafe/content"
    async with running_gateway(store.settings()) as gateway, Probe(mosquitto.port, content) as screen:
        assert on_timeline(gateway.clock.wall())
        await screen.publish(f"{ROOT}/checkin", store.checkin("p-full"))  # signed on the timeline
        await screen.wait_for(lambda: any(m.get("decision_id") for m in screen.json_on(content)))
        manifest = [m for m in screen.json_on(content) if m.get("decision_id")][-1]
        assert on_timeline(parse_iso_utc(manifest["issued_at"]))
