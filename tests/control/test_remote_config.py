"""Signed configuration pushes through a real mosquitto into the real gateway.

Applied live, applied by rebuilding the parts (the ledger stays open), rolled back when the broker is lost,
rolled back at start after a crash mid-trial, the same version twice does nothing, an older one is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import cli
from edge.config import load_settings
from edge.control.snapshots import ConfigSnapshots, ControlState, Snapshot
from tests.control.conftest import DESIRED, REPORTED, ControlKit, make_control_store
from tests.decide.test_lifecycle import retrained, write_model
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.mqtt import Probe
from tests.support.store import ROOT
from tests.support.wait import until

CONTENT = f"{ROOT}/display/screen-cafe/content"


async def _report(probe: Probe, count: int, timeout: float = 10.0) -> dict:
    await probe.wait_for(lambda: len(probe.json_on(REPORTED)) >= count, timeout=timeout)
    return probe.json_on(REPORTED)[count - 1]


async def test_a_good_push_is_applied_live_without_touching_the_broker_connection(
    control: ControlKit,
) -> None:
    store = control.store
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        link, ledger = gateway.generation.link, gateway.ledger
        assert gateway.generation is not None
        engine = gateway.generation.decider.engine
        overlay = {
            "decisions": {"policy": {"epsilon": 0.2, "holdout_percent": 5}},
            "presence": {"checkin_timeout_s": 42},
            "logging": {"level": "ERROR"},
        }
        await reports.publish(DESIRED, control.push(7, overlay), retain=True)
        report = await _report(reports, 1)
        assert report["status"] == "applied", report
        assert report["version"] == 7 and report["current"] == 7
        # live: same broker connection, same ledger, a new engine with the new policy
        assert gateway.generation.link is link and gateway.ledger is ledger
        assert link.counters["connect_failures"] == 0 and link.counters["disconnects"] == 0
        assert gateway.settings.decisions.policy.epsilon == 0.2
        assert gateway.generation.decider.engine is not engine
        assert gateway.generation.presence._timeout_s == 42
        assert logging.getLogger().level == logging.ERROR
        assert gateway.config_version == "7"
        # durable: the snapshot and the state are on disk
        state = ConfigSnapshots(control.state_dir).state()
        assert state == ControlState(current=7, pending=None, highest_seen=7)
        # a check-in is still served, by the new engine
        await reports.publish(f"{ROOT}/checkin", {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
        await reports.wait_for(
            lambda: gateway.generation is not None and gateway.generation.decider.decisions >= 1
        )
        health = gateway.health()
        assert health.control is not None
        assert health.control.current == 7 and health.control.counters["applied"] == 1
        assert health.config_version == "7" and health.model_version == gateway.model_version
        assert health.signal_ages["checkin"] is not None
    logging.getLogger().setLevel(logging.WARNING)


async def test_zones_and_displays_are_rebuilt_in_process_and_the_ledger_stays(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A new zone and display, one display and zone removed: rebuilt in the same process; the ledger stays,
    the cafe screen keeps showing the shopper's offer (same version), the shopper stays checked in, and the
    removed display's and zone's retained topics are cleared."""
    # A rebuild reconnects to the broker: the window leaves a loaded CI machine time for that.
    control = make_control_store(tmp_path / "store", mosquitto.port, deadline_s=3.0)
    store = control.store
    deli, entrance = f"{ROOT}/display/screen-deli/content", f"{ROOT}/display/screen-entrance/content"
    async with (
        Probe(store.port, REPORTED, CONTENT, deli, entrance, f"{ROOT}/presence/+") as probe,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        ledger = gateway.ledger
        await probe.publish(f"{ROOT}/checkin", {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
        await probe.wait_for(lambda: any(m.get("decision_id") for m in probe.json_on(CONTENT)))
        showing = [m for m in probe.json_on(CONTENT) if m.get("decision_id")][-1]
        zones = [{"id": "cafe"}, {"id": "deli"}]
        displays = [
            {"id": "screen-cafe", "zone": "cafe", "min_display_s": 5},
            {
                "id": "screen-deli",
                "zone": "deli",
                "fallback": {"template": "loop", "data": {"playlist": "deli"}},
            },
        ]
        cafe_before = len(probe.on(CONTENT))
        await probe.publish(DESIRED, control.push(1, {"zones": zones, "displays": displays}), retain=True)
        report = await _report(probe, 1)
        assert report["status"] == "applied", report
        # the new display got its fallback; the removed display's retained content and zone were cleared
        await probe.wait_for(lambda: probe.json_on(deli) and probe.on(entrance)[-1] == b"")
        await probe.wait_for(lambda: probe.on(f"{ROOT}/presence/entrance")[-1] == b"")
        assert probe.json_on(deli)[-1]["template"] == "loop"
        # the cafe screen: what it showed, at the same version (a screen ignores it), with the new settings
        republished = [json.loads(m) for m in probe.on(CONTENT)[cafe_before:] if m]
        assert republished and all(m["version"] == showing["version"] for m in republished)
        assert all(m["decision_id"] == showing["decision_id"] for m in republished)
        assert gateway.generation is not None and gateway.generation.board.current("screen-cafe") is not None
        assert gateway.generation.presence.zone_of("p-full") == "cafe"  # still checked in
        assert gateway.generation.presence.knows_zone("deli") and not gateway.generation.presence.knows_zone(
            "entrance"
        )
        # same ledger (same file, never recreated) with the old decision; the broker link is back
        assert gateway.ledger is ledger and ledger is not None
        # (which offer it is depends on the hour and the weekday; that it is the one shown does not)
        assert showing["offer_id"] is not None
        assert await ledger.offer_counts_since(0.0) == [("p-full", showing["offer_id"], 1)]
        assert gateway.generation.link is not None and gateway.generation.link.state == "connected"
        # the screen's ack of the carried-over decision still counts as an exposure
        ack = {
            "v": 1,
            "version": showing["version"],
            "decision_id": showing["decision_id"],
            "status": "shown",
        }
        await probe.publish(f"{ROOT}/display/screen-cafe/ack", ack)
        await probe.wait_for(
            lambda: gateway.generation is not None and gateway.generation.stats.exposures == 1
        )


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps retained messages across a restart: it runs as this user, so it can write its
    persistence file under pytest's private folder (as root it would become 'mosquitto' and could not)."""
    broker = Mosquitto(tmp_path / "broker", run_as=pwd.getpwuid(os.getuid()).pw_name)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_push_that_loses_the_broker_is_rolled_back(tmp_path: Path, own_broker: Mosquitto) -> None:
    """The broker goes away during the health window: the push is rolled back and reported once it is back.

    (A push cannot move the broker itself any more: where the gateway connects is the store's file's,
    tests/control/test_push_cannot_steal.py. Losing the broker for any other reason still rolls back.)
    """
    control = make_control_store(tmp_path / "store", own_broker.port, deadline_s=1.0)
    store = control.store
    async with running_gateway(store.settings(), config_path=store.config_path) as gateway:
        assert gateway.control is not None
        displays_before = gateway.settings.displays
        # a rebuild (new displays): the rollback rebuilds too, and its fresh link subscribes again
        displays = [{"id": "screen-cafe", "zone": "cafe", "min_display_s": 3}]
        async with Probe(store.port) as pusher:
            await pusher.publish(DESIRED, control.push(3, {"displays": displays}), retain=True)
            await pusher.wait_for(lambda: gateway.control is not None and gateway.control.state.pending == 3)
        own_broker.stop()
        # the health window ends with the broker away: the previous configuration comes back
        await until(lambda: gateway.control is not None and gateway.control.state.pending is None, 15)
        assert gateway.settings.displays == displays_before
        own_broker.start()
        async with Probe(store.port, REPORTED) as reports:
            report = await _report(reports, 1, timeout=15)  # retained, sent once the link is back
            assert report["status"] == "rolled_back", report
            assert report["version"] == 3 and report["current"] == 0
            assert "mqtt" in report["error"]
            assert ConfigSnapshots(control.state_dir).state() == ControlState(
                current=0, pending=None, highest_seen=3
            )
            # the retained push comes back on the reconnect: never applied again, and its outcome stays
            # the last word on config/reported
            await reports.wait_for(
                lambda: gateway.control is not None and gateway.control.counters["repeated"] >= 1
            )
            assert reports.json_on(REPORTED)[-1]["status"] == "rolled_back"
            assert gateway.settings.displays == displays_before
            # and the gateway serves
            await reports.publish(f"{ROOT}/checkin", {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
            await reports.wait_for(
                lambda: gateway.generation is not None and gateway.generation.decider.decisions >= 1
            )


async def test_the_same_version_twice_does_nothing_and_an_older_one_is_refused(control: ControlKit) -> None:
    store = control.store
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        push = control.push(5, {"presence": {"checkin_timeout_s": 30}})
        await reports.publish(DESIRED, push, retain=True)
        assert (await _report(reports, 1))["status"] == "applied"
        assert gateway.control is not None
        await reports.publish(DESIRED, push, retain=True)
        await reports.wait_for(
            lambda: gateway.control is not None and gateway.control.counters["same_version"] == 1
        )
        await reports.publish(DESIRED, control.push(4, {"presence": {"checkin_timeout_s": 99}}), retain=True)
        report = await _report(reports, 2)
        assert report["status"] == "rejected" and report["error"].startswith("not_newer")
        assert report["current"] == 5
        assert gateway.settings.presence.checkin_timeout_s == 30
        assert len(reports.json_on(REPORTED)) == 2  # the repeat of version 5 reported nothing


async def test_a_restart_keeps_the_applied_version_and_a_crash_mid_trial_rolls_back(
    control: ControlKit,
) -> None:
    store = control.store
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(store.settings(), config_path=store.config_path),
    ):
        await reports.publish(DESIRED, control.push(2, {"presence": {"checkin_timeout_s": 77}}), retain=True)
        assert (await _report(reports, 1))["status"] == "applied"
    # A restart: the applied version runs from the snapshot even before the broker says anything.
    async with running_gateway(store.settings(), config_path=store.config_path) as gateway:
        assert gateway.settings.presence.checkin_timeout_s == 77
        assert gateway.config_version == "2"
    # A crash while version 3 was on trial: the next start goes back to 2 and says so.
    snapshots = ConfigSnapshots(control.state_dir)
    snapshots.save(Snapshot(3, {"presence": {"checkin_timeout_s": 5}}, 0.0))
    snapshots.write_state(ControlState(current=2, pending=3, highest_seen=3))
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        await reports.wait_for(lambda: any(r.get("version") == 3 for r in reports.json_on(REPORTED)))
        report = [r for r in reports.json_on(REPORTED) if r.get("version") == 3][-1]
        assert report["status"] == "rolled_back" and "restarted" in report["error"]
        assert gateway.settings.presence.checkin_timeout_s == 77
    assert ConfigSnapshots(control.state_dir).state() == ControlState(current=2, pending=None, highest_seen=3)


async def test_a_model_whose_file_does_not_match_its_hash_is_refused(control: ControlKit) -> None:
    store = control.store
    settings = load_settings(store.config_path)
    model = settings.decisions.model
    manifest = json.loads(settings.decisions.manifest_path.read_text())
    tampered = control.files_dir / "tampered.onnx"
    tampered.write_bytes(model.read_bytes() + b"\0")
    # the old sha256: the file no longer matches its manifest (the push pins the bytes it means)
    (control.files_dir / "tampered.json").write_text(json.dumps(manifest))
    pin = hashlib.sha256(tampered.read_bytes()).hexdigest()
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(settings, config_path=store.config_path) as gateway,
    ):
        version_before = gateway.model_version
        push = {"decisions": {"model": tampered.name, "model_sha256": pin}}
        await reports.publish(DESIRED, control.push(1, push), retain=True)
        report = await _report(reports, 1)
        assert report["status"] == "rejected", report
        assert report["error"].startswith("apply_failed"), report
        assert "sha256" in report["error"]
        # which file, not where: the store's folders are not the cloud's business
        assert str(control.files_dir) not in report["error"] and "<control.files_dir>" in report["error"]
        assert gateway.model_version == version_before
        assert gateway.settings.decisions.model == model


async def test_model_pushes_swap_live_a_broken_graph_never_runs_and_rollback_goes_back(
    control: ControlKit, tmp_path: Path
) -> None:
    """A retrained model by push (pinned by sha256), a broken one refused, then `model rollback` + SIGHUP."""
    store = control.store
    good_model, good_manifest = write_model(control.files_dir, retrained(w1=1.1), "2027.1.1")
    broken_model, broken_manifest = write_model(control.files_dir, b"\x08\x07 not a graph", "2027.1.2")
    pin = hashlib.sha256(good_model.read_bytes()).hexdigest()
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        assert gateway.models is not None and gateway.generation is not None
        shipped = gateway.model_version
        push = {"decisions": {"model": good_model.name, "manifest": good_manifest.name, "model_sha256": pin}}
        await reports.publish(DESIRED, control.push(1, push), retain=True)
        assert (await _report(reports, 1))["status"] == "applied"
        assert gateway.model_version == "2027.1.1"
        assert [model.version for model in gateway.models.versions()] == [shipped, "2027.1.1"]

        broken_pin = hashlib.sha256(broken_model.read_bytes()).hexdigest()
        broken = {
            "decisions": {
                "model": broken_model.name,
                "manifest": broken_manifest.name,
                "model_sha256": broken_pin,
            }
        }
        await reports.publish(DESIRED, control.push(2, broken), retain=True)
        report = await _report(reports, 2)
        assert report["status"] == "rejected" and report["error"].startswith("apply_failed"), report
        assert (
            gateway.model_version == "2027.1.1"
        )  # a model that fails to load never replaces the running one

        # the installer's `edge-gateway model rollback`, then `systemctl reload` (SIGHUP)
        assert cli.main(["model", "rollback", "--config", str(store.config_path)]) == 0
        gateway.request_model_reload()
        await reports.wait_for(lambda: gateway.model_version == shipped)
        await reports.publish(f"{ROOT}/checkin", {"v": 1, "token": store.token("p-full"), "zone": "cafe"})
        await reports.wait_for(
            lambda: gateway.generation is not None and gateway.generation.decider.decisions >= 1
        )


async def test_a_push_that_makes_a_component_unhealthy_is_rolled_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A camera whose source cannot be opened: the broker is fine, the camera is not; the push goes."""
    control = make_control_store(tmp_path / "store", mosquitto.port, deadline_s=1.0)
    store = control.store
    # A V4L2 index no machine here has (a push may name only an index or a LAN URL, never a file).
    camera = {"id": "cam-cafe", "source": "63", "zone": "cafe"}
    async with (
        Probe(store.port, REPORTED) as reports,
        running_gateway(store.settings(), config_path=store.config_path) as gateway,
    ):
        await reports.publish(DESIRED, control.push(9, {"cameras": [camera]}), retain=True)
        report = await _report(reports, 1, timeout=15)
        assert report["status"] == "rolled_back", report
        assert "camera cam-cafe: reconnecting" in report["error"]
        assert gateway.settings.cameras == [] and gateway.generation.cameras == ()
        assert gateway.generation.link is not None and gateway.generation.link.state == "connected"
        assert gateway.control is not None and gateway.control.state.current == 0
