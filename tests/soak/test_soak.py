"""A short soak (bench/soak.py, docs/soak.md): the real gateway process, a real mosquitto, 8 s of mixed load.

Functional outcomes only; the latency, RSS and CPU figures it reports are never asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import Options, soak
from tests.support import clock
from tests.support.launch import child_env, gateway_command


async def test_short_soak_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gateway process and the load on the test's timeline, like every test (docs/testing.md).
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    options = Options(seconds=8, rate=200, workdir=tmp_path, gateway=tuple(gateway_command()), wall=clock.now)
    report = await soak(options)
    data = report.data
    sent, drops, counted = data["sent"], data["drops"], data["gateway_counts"]
    assert data["gateway"]["exit_code"] == 0, data["gateway"]["log_tail"]
    assert sent["checkin"] > 0 and sent["ble"] > 0 and sent["pos"] > 0
    # Every check-in got its manifest, and every manifest's ack became an exposure.
    assert drops["checkins_without_manifest"] == 0
    assert drops["unexpected_manifests"] == 0
    assert data["latency_ms"]["n"] == sent["checkin"]
    assert counted["checkins"] == sent["checkin"]
    assert counted["exposures"] == data["acked_decisions"] == sent["checkin"]
    assert drops["exposure_unknown_decision"] == 0
    assert counted["pos_transactions"] == sent["pos"]
    # Nothing dropped or refused: the load sends only valid messages.
    assert drops["mqtt_outbox_dropped"] == 0
    assert drops["rejected"] == {}
    assert drops["tokens_rejected"] == {}
    assert counted["ble_anonymous"] > 0
    assert counted["missing_beacons"] == []
    assert data["rss_mb"]["samples"] > 0
    assert report.problems() == []
