"""`make demo` stays true: the demo runs the real gateway through an embedded broker and ends with acked exposures.

The reference cloud runs as the demo runs it, a child process, started on the test's timeline
(tests/support/launch.py) instead of the machine's clock.
"""

import io
import json
import sys
from pathlib import Path

import pytest

from edge.cli import main
from edge.decide.catalog import load_catalog
from edge.demo import cloud as demo_cloud
from edge.demo.run import run_demo
from tests.measure.report_sample import assert_self_contained
from tests.support.launch import child_env, cloud_command

EXAMPLE_OFFERS = Path(__file__).resolve().parents[1] / "config" / "offers.example.toml"


@pytest.fixture
def pinned_cloud(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``profile-store`` on the test's timeline, as the demo's cloud (``edge-gateway demo`` included)."""
    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])
    command = cloud_command()
    monkeypatch.setattr(demo_cloud, "CLOUD_COMMAND", tuple(command))
    return command


async def test_demo_round_trip_on_the_embedded_broker(pinned_cloud: list[str], tmp_path: Path) -> None:
    out = io.StringIO()
    report_dir = tmp_path / "report"
    summary = await run_demo(
        3.0, out=out, rate_per_s=6.0, seed=3, cloud_command=pinned_cloud, report_dir=report_dir
    )
    text = out.getvalue()
    assert summary.checkins_sent > 5
    assert summary.decisions > 0
    assert summary.exposure_rows > 0
    assert summary.replays_sent == 0 or summary.rejected >= summary.replays_sent
    assert text.count("decision ") == summary.decisions
    assert text.strip().splitlines()[-2].startswith("summary: ")
    assert f"acked exposures {summary.exposure_rows}" in text
    # It ends with the run's report: where it is, self-contained, the run's numbers in it.
    assert text.strip().splitlines()[-1] == f"report: {report_dir / 'report.html'} (summary.json beside it)"
    assert summary.report == report_dir / "report.html"
    page = assert_self_contained(summary.report.read_text())
    assert page.svgs >= 1
    report = json.loads((report_dir / "summary.json").read_text())
    assert report["store"] == "demo-store"
    assert 0 < report["counts"]["exposures"] <= summary.exposures_acked
    assert 0 < report["counts"]["decisions"] <= summary.decisions
    assert summary.sales_sent >= 1 and report["counts"]["conversions"] >= 1
    assert page.row("table-glance", "Acked exposures (an offer seen on a screen)")[1] == str(
        report["counts"]["exposures"]
    )
    # Shoppers, profiles and consents came from the reference cloud, and the events went back up.
    assert summary.cloud_changes >= 12 * 2
    assert summary.cloud_events >= summary.decisions
    assert "cloud profile store on http://127.0.0.1:" in text
    # The browser pages, served while it runs (docs/player.md): the kiosk and the fitting team's tablet
    assert "demo: kiosk on http://127.0.0.1:" in text and "/player/kiosk.html?display=kiosk-cafe&" in text
    # ...and the player, with a picture for every image the demo's catalog names (tests/browser/test_player.py)
    named = {offer.data["image"] for offer in load_catalog(EXAMPLE_OFFERS).offers if offer.data.get("image")}
    assert f"({len(named)} catalog pictures drawn for it)" in text
    assert "demo: staff tablet on http://127.0.0.1:" in text and "/player/staff.html?team=fitting&" in text
    assert "demo: store dashboard on http://127.0.0.1:" in text
    # The fitting room: its devices follow the couple, the fitting team hears about Ana (never her id).
    devices = [line for line in text.splitlines() if line.startswith("device fitting room")]
    assert len(devices) == summary.device_commands >= 4  # the couple, then each leaving (thermostat, light)
    # Ana alone (20 °C) or, if her change waited for the thermostat's min_interval_s, the couple (22 °C).
    assert any(f'"current_heating_setpoint":{value}' in line for line in devices for value in ("20", "22"))
    staff = [line for line in text.splitlines() if line.startswith("staff fitting:")]
    assert summary.staff_notices == summary.staff_answers >= 1
    assert any("open notice in fitting-rooms" in line and "'display_name': 'Ana'" in line for line in staff)
    assert not [line for line in staff if "p-demo" in line]
    # Ana's online order: on the collection-point screen when she checks in, in her notice, handed over by staff.
    pickup = [line for line in text.splitlines() if line.startswith("pickup screen:")]
    assert summary.pickup_listed >= 1 and summary.pickup_collected == 1
    # One shopper's export (answered to the cloud, explained here) and one erasure at the till
    assert summary.privacy_exports == 1 and summary.privacy_erasures == 1
    (export,) = [line for line in text.splitlines() if line.startswith("privacy: p-demo-ana's export:")]
    assert "consents granted" in export and "why the latest offer:" in export
    assert any(line.endswith("asked to be forgotten at the till") for line in text.splitlines())
    assert pickup[0] == "pickup screen: A-1042 at Click & collect desk, entrance" and pickup[-1].endswith(
        "idle"
    )
    assert any("'pickup': [{'reference': 'A-1042'" in line for line in staff)


def test_demo_against_a_given_broker(mosquitto, capsys, pinned_cloud, tmp_path) -> None:
    broker = f"127.0.0.1:{mosquitto.port}"
    assert main(["demo", "--duration", "2", "--broker", broker, "--report-dir", str(tmp_path)]) == 0
    *_, last, report = capsys.readouterr().out.strip().splitlines()
    assert last.startswith("summary: ")
    assert "acked exposures 0" not in last
    assert report.startswith(f"report: {tmp_path / 'report.html'}")
    assert (tmp_path / "report.html").is_file() and (tmp_path / "summary.json").is_file()


def test_without_the_demo_extra_or_the_cloud_it_says_what_to_install(monkeypatch, capsys) -> None:
    # As on a store's Pi: neither the demo extra (amqtt) nor the reference cloud is installed.
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)
    assert main(["demo", "--duration", "1"]) == 2
    assert "pip install -e '.[demo]'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "profilestore", None)
    assert main(["demo", "--duration", "1", "--broker", "127.0.0.1:1"]) == 2
    assert "pip install -e contract -e cloud" in capsys.readouterr().err
