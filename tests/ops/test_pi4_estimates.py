"""The Pi 4 column of ``make bench`` (issue 19): every targeted figure has an estimate, in the right direction.

The estimates are published per-core ratios (bench/pi4.py), not measurements; what can be wrong in code is a
figure without a kind (printed as "?"), a rate multiplied instead of divided, or factors that no longer follow
from the published scores they cite.
"""

from __future__ import annotations

import pytest

from bench import pi4
from bench.__main__ import ALSO_SHOWN, TARGETS, table


def test_every_figure_make_bench_prints_has_an_estimate() -> None:
    printed = [(name, key) for name, checks in TARGETS.items() for key, _, _ in checks]
    unknown = [pair for pair in printed if pair not in pi4.KINDS]
    assert unknown == []
    # The extra figures shown beside a benchmark's targets: the ones a benchmark can return.
    also = [(name, key) for (name, key) in pi4.KINDS if key in ALSO_SHOWN]
    assert all(pi4.estimate(name, key, 1.0) != "?" for name, key in also)


def test_times_grow_and_rates_shrink_by_the_factor() -> None:
    low, high = pi4.PYTHON.low, pi4.PYTHON.high
    assert pi4.estimate("decision_50_offers", "p50_us", 10.0) == f"{10 * low:.3g}…{10 * high:.3g}"
    assert pi4.estimate("ble_ingest", "adverts_per_s", 540_000.0) == (
        f"{540_000 / high:,.0f}…{540_000 / low:,.0f}"
    )
    fps_low, fps_high = (float(x) for x in pi4.estimate("camera_qr", "fps", 73.0).split("…"))
    assert fps_low == pytest.approx(73 / pi4.NATIVE.high, rel=1e-2)
    assert fps_high == pytest.approx(73 / pi4.NATIVE.low, rel=1e-2)
    assert pi4.estimate("footprint", "rss_mb", 115.0) == "~115"
    assert pi4.estimate("outbox_disk", "peek_ack_500_ms_p50", 16.2).startswith("board")


def test_the_factors_follow_from_the_published_scores() -> None:
    # Geekbench 6 (column 0) and phpbench (1) of the Pi 4 at 1.8 and 1.5 GHz against the host's place on
    # each scale; a slower Pi (1.5 GHz) is always the high end, and an interpreter loses less than the mix.
    for factor, column in ((pi4.NATIVE, 0), (pi4.PYTHON, 1)):
        host = pi4.host_score(column)
        assert factor.low == pytest.approx(host / pi4.PI4_1800MHZ[column], abs=0.05)
        assert factor.high == pytest.approx(host / pi4.PI4_1500MHZ[column], abs=0.05)
        assert 1 < factor.low < factor.high
    assert pi4.PYTHON.high < pi4.NATIVE.low


def test_the_table_make_bench_prints_has_the_column_on_every_line() -> None:
    # A results.json as `make bench` writes it, every figure 2.0 (and the extras shown beside them).
    results: dict[str, object] = {
        name: {key: 2.0 for key, _, _ in checks}
        | {key: 2.0 for key in ALSO_SHOWN if (name, key) in pi4.KINDS}
        for name, checks in TARGETS.items()
    }
    lines = table(results).splitlines()
    assert lines[0].endswith("Pi 4 estimate")
    figures = sum(len(checks) for checks in TARGETS.values())
    extras = sum(1 for name in TARGETS for key in ALSO_SHOWN if (name, key) in pi4.KINDS)
    assert len(lines) == 1 + figures + extras
    decision = next(line for line in lines if line.startswith("decision_50_offers") and " p50_us " in line)
    assert decision.endswith(f"{2 * pi4.PYTHON.low:.3g}…{2 * pi4.PYTHON.high:.3g}")
    assert "<= 100.0 ok" in decision
    assert not any(line.rstrip().endswith("?") for line in lines)
