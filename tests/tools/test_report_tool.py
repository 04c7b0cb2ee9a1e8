"""`edge-gateway report`: a real ledger file read beside the gateway, summary.json and report.html written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bench import bench_report
from edge import cli
from edge.clock import ManualClock, iso_utc
from edge.events import Decision
from edge.ledger import Ledger
from edge.ledger.conversions import Conversion, SaleLine
from edge.measure.render import INSTALL_HINT
from edge.tools.report import MAX_PERIOD_DAYS, parse_period
from tests.measure.report_sample import assert_self_contained
from tests.support import clock
from tests.support.launch import child_env
from tests.support.store import StoreKit, make_store

REPO = Path(__file__).resolve().parents[2]
OFFER = (
    "coffee-loyalty-pastry"  # config/offers.example.toml: a coffee offer, "Free pastry with your 5th coffee"
)
TITLE = "Free pastry with your 5th coffee"


def _day(offset_days: int = 0) -> str:
    """A date of the test's timeline (the example store's time zone is UTC)."""
    return (datetime.fromtimestamp(clock.now(), tz=UTC) + timedelta(days=offset_days)).date().isoformat()


def _decision(n: int, at: float, shopper: str, *, holdout: bool) -> Decision:
    return Decision(
        decision_id=f"d-{n:04d}",
        display_id="screen-cafe",
        zone="cafe",
        at_wall=at,
        shopper_id=shopper,
        offer_id=None if holdout else OFFER,
        template="loop" if holdout else "offer",
        data={},
        model_version="test-model",
        propensity=1.0,
        explored=False,
        holdout=holdout,
        personalized=True,
        counterfactual_offer_id=OFFER if holdout else None,
    )


async def _month(store: StoreKit) -> None:
    """Forty shoppers shown the offer (half of them buy coffee), ten held out (two buy): real ledger writes."""
    now = clock.now()
    ledger_clock = ManualClock(wall=now - 3 * 86_400)
    async with Ledger(store.settings().ledger.path, ledger_clock) as ledger:
        for n in range(50):
            holdout = n >= 40
            at = now - 3 * 86_400 + 60 * n
            decision = _decision(n, at, f"p-{n:03d}", holdout=holdout)
            await ledger.record_decisions([(decision, True)])
            await ledger.record_exposure(
                decision_id=decision.decision_id,
                display_id="screen-cafe",
                version=n + 1,
                shown_at_wall=at + 0.1,
                acked_at_wall=at + 0.2,
            )
            if (not holdout and n % 2 == 0) or n in (40, 41):
                sale_at = at + 3_600
                sale = Conversion(
                    event_id=f"sale-{n:04d}",
                    at_wall=sale_at,
                    received_wall=sale_at + 1.0,
                    lane="lane-1",
                    shopper_id=f"p-{n:03d}",
                    total=4.5,
                    currency="EUR",
                    lines=(SaleLine("flat-white", 1.0, 4.5, "coffee"),),
                )
                await ledger.record_conversion(sale, None)


def _report(store: StoreKit, out: Path, *extra: str) -> int:
    config = str(store.config_path)
    return cli.main(
        ["report", "--config", config, "--since", _day(-7), "--until", _day(0), "--out", str(out), *extra]
    )


async def test_a_report_of_the_store_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "store", 1883)
    await _month(store)
    out = tmp_path / "report"
    assert _report(store, out) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'report.html'} and {out / 'summary.json'}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["v"] == 1 and summary["store"] == "s1"
    assert summary["counts"]["decisions"] == 50
    assert summary["counts"]["exposures"] == 50
    overall = summary["holdout"]["overall"]
    assert (overall["treated"]["shoppers"], overall["treated"]["converted"]) == (40, 20)
    assert (overall["holdout"]["shoppers"], overall["holdout"]["converted"]) == (10, 2)
    (offer,) = summary["holdout"]["offers"]
    assert offer["offer_id"] == OFFER and offer["title"] == TITLE
    assert summary["ope"] is None
    page = assert_self_contained((out / "report.html").read_text())
    assert page.row("table-arms", TITLE)[1:5] == ["treated", "40", "20", "50.00 %"]
    assert page.row("table-uplift", TITLE)[1] == "+30.00 pp"
    assert page.svgs >= 3  # arms, uplift, heat map (and touchpoints, when any)


async def test_without_matplotlib_the_report_has_its_tables(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store", 1883)
    await _month(store)
    out = tmp_path / "report"
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from tests.support.clock import pin_process; pin_process()\n"
        "from edge.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    args = ["report", "--config", str(store.config_path), "--since", _day(-7), "--until", _day(0)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args, "--out", str(out)],
        cwd=REPO,
        env={**os.environ, **child_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert INSTALL_HINT in done.stderr
    page = assert_self_contained((out / "report.html").read_text())
    assert page.svgs == 0 and "plots-missing" in page.ids
    assert page.row("table-arms", TITLE)[4] == "50.00 %"
    assert json.loads((out / "summary.json").read_text())["counts"]["exposures"] == 50


def test_dates_are_days_in_the_store_time_zone_or_instants() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    period = parse_period("2026-11-01", "2026-11-30", "Europe/Berlin")
    assert period.since == datetime(2026, 11, 1, tzinfo=berlin).timestamp()
    assert period.until == datetime(2026, 12, 1, tzinfo=berlin).timestamp()  # the last day included
    period = parse_period("2026-11-01T09:00:00Z", "2026-11-01T11:00:00+01:00", "Europe/Berlin")
    assert iso_utc(period.since) == "2026-11-01T09:00:00.000Z"
    assert iso_utc(period.until) == "2026-11-01T10:00:00.000Z"  # an instant: excluded, as given
    # A time without an offset is the store's local time
    local = parse_period("2026-11-01T09:00", "2026-11-01T10:00", "Europe/Berlin")
    assert local.since == datetime(2026, 11, 1, 9, tzinfo=berlin).timestamp()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-11-31", "--until", "2026-12-01"], "--since: '2026-11-31' is neither a date"),
        (["--since", "last week", "--until", "2026-12-01"], "--since: 'last week' is neither a date"),
        (["--since", "9999-12-30", "--until", "9999-12-31"], "--until: '9999-12-31' is neither a date"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "--until (2026-11-01) must be after --since"),
        (["--since", "2026-11-02T10:00Z", "--until", "2026-11-02T10:00Z"], "must be after --since"),
        (["--since", "2020-01-01", "--until", "2026-01-01"], f"longer than {MAX_PERIOD_DAYS} days"),
        (["--since", "2026-11-01", "--until", "2026-11-02", "--candidate", "nope.onnx"], "no model file"),
    ],
)
def test_bad_arguments_are_named_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    store = make_store(tmp_path / "store", 1883)
    assert cli.main(["report", "--config", str(store.config_path), "--out", str(tmp_path / "r"), *args]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("report: ")]
    assert message in line
    assert not (tmp_path / "r").exists()


def test_an_out_path_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "store", 1883)
    (tmp_path / "file").write_text("")
    assert _report(store, tmp_path / "file") == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_missing_ledger_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "store", 1883)
    assert _report(store, tmp_path / "r") == 1
    assert "no ledger at" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.html").exists()


async def test_a_candidate_model_is_evaluated_against_the_running_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Decisions logged without their context (as before issue 16): the evaluation names why none counts.
    store = make_store(tmp_path / "store", 1883)
    await _month(store)
    out = tmp_path / "report"
    assert _report(store, out, "--candidate", str(REPO / "models" / "offers.onnx")) == 0, (
        capsys.readouterr().err
    )
    ope = json.loads((out / "summary.json").read_text())["ope"]
    assert set(ope) == {"candidate", "running"}
    assert ope["candidate"]["n"] == 0 and sum(ope["candidate"]["skipped"].values()) == 50
    page = assert_self_contained((out / "report.html").read_text())
    assert page.row("table-ope", "candidate")[1] == ope["candidate"]["model_version"]
    assert "ope-none" not in page.ids


async def test_a_candidate_that_is_no_model_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "store", 1883)
    await _month(store)
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    assert _report(store, tmp_path / "r", "--candidate", str(bogus)) == 2
    # (an earlier test's logging handler may add its own noise to stderr: look for the line)
    assert any(line.startswith("report: --candidate: ") for line in capsys.readouterr().err.splitlines())
    assert not (tmp_path / "r" / "report.html").exists()


def test_the_benchmark_ledger_reports(tmp_path: Path) -> None:
    # `make bench`'s report benchmark at a thousandth of its size: its ledger is the real schema (a column
    # added without a default would break it here, not in a benchmark run) and the report reads it whole.
    config = bench_report.write_config(tmp_path)
    rows = bench_report.build_ledger(tmp_path / "ledger.sqlite", decisions=1_000, conversions=200)
    assert rows["decisions"] == rows["exposures"] == 1_000 and rows["conversions"] == 200
    seconds, rss_mb = bench_report.run_report(config, tmp_path / "report")
    assert seconds > 0 and rss_mb > 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["counts"]["decisions"] == summary["counts"]["exposures"] == 1_000
    assert summary["holdout"]["overall"]["holdout"]["shoppers"] > 0  # the policy's own hash held some out


def test_a_file_that_is_not_a_ledger_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "store", 1883)
    store.settings().ledger.path.write_bytes(b"not a database, just some bytes" * 100)
    assert _report(store, tmp_path / "r") == 1
    assert "(file is not a database)" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.html").exists()
