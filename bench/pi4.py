"""Raspberry Pi 4 estimates beside the x86 figures (issue 19): ESTIMATES from published per-core ratios.

These are not measurements. No Pi was used, and QEMU's emulated timings say nothing about a Pi's speed
(docs/operations.md). Each x86 figure of ``make bench`` is scaled by how much slower one Pi 4 core is than
one core of the machine the benchmarks ran on. Derivation and sources: docs/benchmarks.md, "Pi 4 estimates".

- The published per-core scores are Jeff Geerling's sbc-reviews (``web/data/results.yml``):
  - Raspberry Pi 4 model B (Cortex-A72 at 1.8 GHz): Geekbench 6 single-core 289, Phoronix ``phpbench``
    187,221;
  - Raspberry Pi Compute Module 4 (the same core at 1.5 GHz): 256 and 166,730;
  - Framework Desktop (Ryzen AI Max+ 395, Zen 5, 5.1 GHz boost): 3,030 and 1,381,266.
- The x86 machine of the figures is a Zen 4 EPYC VM whose core runs at 3.65 GHz: a chain of dependent
  adds (one per cycle on Zen 4) ran at 3.59-3.66 G/s of thread CPU time. It is placed on those scales by
  clock (3.65 / 5.1) and by Zen 5's IPC over Zen 4. That IPC gain is an assumption: 1.10 for an
  interpreter, AMD's stated average of 1.16 for Geekbench's mix.
- Two factors follow:
  - ``PYTHON``: CPython's interpreter loop, and the gateway's own code is mostly that. phpbench is another
    interpreter's loop. 898,700 / 187,221 = 4.8 (Pi 4 at 1.8 GHz) to / 166,730 = 5.4 (1.5 GHz).
  - ``NATIVE``: compiled, vectorised libraries (onnxruntime, OpenCV, SQLite). Geekbench 6's mix:
    1,869 / 289 = 6.5 to / 256 = 7.3. 128-bit NEON against AVX-512 can make single kernels worse still.
"""

from __future__ import annotations

import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Published single-core scores (Jeff Geerling, sbc-reviews, web/data/results.yml): (Geekbench 6, phpbench).
PI4_1800MHZ: Final = (289, 187_221)  # Raspberry Pi 4 model B
PI4_1500MHZ: Final = (256, 166_730)  # Raspberry Pi Compute Module 4: the same Cortex-A72 at 1.5 GHz
ZEN5_5100MHZ: Final = (3_030, 1_381_266)  # Framework Desktop, Ryzen AI Max+ 395
ZEN5_GHZ: Final = 5.1
# The benchmark host: a Zen 4 EPYC VM, its core measured at 3.65 GHz (a dependent-add chain; docs).
HOST_GHZ: Final = 3.65
# Zen 5's IPC over Zen 4, assumed: AMD's stated average for a benchmark mix, less for an interpreter loop.
ZEN5_IPC_GAIN: Final = (1.16, 1.10)


@dataclass(frozen=True)
class Factor:
    """How many times slower one Pi 4 core is than one core of the benchmark host: low..high."""

    name: str
    low: float  # Pi 4 at 1.8 GHz (the Pi 4 B's clock since 2020 firmware; Pi 400)
    high: float  # Pi 4 at 1.5 GHz (early Pi 4 B boards, CM4)


def host_score(column: int) -> float:
    """The benchmark host on a published scale: the Zen 5 score at the host's clock, less Zen 5's IPC gain."""
    return ZEN5_5100MHZ[column] * (HOST_GHZ / ZEN5_GHZ) / ZEN5_IPC_GAIN[column]


def factor(name: str, column: int) -> Factor:
    host = host_score(column)
    return Factor(name, round(host / PI4_1800MHZ[column], 1), round(host / PI4_1500MHZ[column], 1))


NATIVE: Final = factor("native", 0)  # Geekbench 6: 6.5 … 7.3
PYTHON: Final = factor("python", 1)  # phpbench: 4.8 … 5.4


# How each figure of bench/__main__.TARGETS moves on a Pi 4:
# "time" grows with the factor, "rate" shrinks with it, "same" does not depend on the CPU's speed (bytes,
# a ratio of two figures that both scale), "board" depends on a part only a board has (the SD card's fsync),
# "screen" runs on the screen's own device, not on the gateway.
KINDS: Final[dict[tuple[str, str], tuple[str, Factor | None]]] = {
    ("e2e_checkin_to_display", "p50_ms"): ("time", PYTHON),
    ("e2e_checkin_to_display", "p99_ms"): ("time", PYTHON),
    ("e2e_checkin_to_display", "ratio_p99"): ("same", None),
    ("e2e_checkin_to_display", "baseline_p99_ms"): ("time", PYTHON),
    ("e2e_display_scaling", "ratio_p99_largest_vs_smallest"): ("same", None),
    ("board_scaling", "ratio_checkin_largest_vs_smallest"): ("same", None),
    ("decision_50_offers", "p50_us"): ("time", PYTHON),
    ("decision_50_offers", "p99_us"): ("time", PYTHON),
    ("decision_50_offers", "ratio_p99"): ("same", None),
    ("decision_50_offers", "baseline_p99_us"): ("time", NATIVE),
    ("ble_ingest", "adverts_per_s"): ("rate", PYTHON),
    ("ble_dbus", "adverts_per_s"): ("same", None),  # offered at a fixed 5,000/s: what arrives, not a speed
    ("ble_dbus", "cpu_percent"): ("time", PYTHON),
    ("outbox_disk", "bytes_per_event"): ("same", None),
    ("outbox_disk", "outage_24h_10eps_mb"): ("same", None),
    ("outbox_disk", "peek_ack_500_ms_p50"): ("board", None),
    ("sync_drain", "events_per_s"): ("rate", PYTHON),
    ("camera_qr", "fps"): ("rate", NATIVE),
    ("camera_qr", "baseline_fps"): ("rate", NATIVE),
    ("camera_count", "fps"): ("rate", NATIVE),
    ("camera_count", "baseline_fps"): ("rate", NATIVE),
    ("metrics_scrape", "scrape_median_us"): ("time", PYTHON),
    ("metrics_scrape", "observe_lock_free_ns"): ("time", PYTHON),
    ("metrics_scrape", "observe_client_ns"): ("time", PYTHON),
    ("checkin_to_device", "p99_ms"): ("time", PYTHON),
    ("checkin_to_device", "ratio_p99"): ("same", None),
    ("checkin_to_device", "baseline_p99_ms"): ("time", PYTHON),
    ("device_resolve", "p99_us"): ("time", PYTHON),
    ("fleet", "rows_per_pull_ratio"): ("same", None),
    ("fleet", "pull_p50_ratio"): ("same", None),
    ("fleet", "accepted_events_per_s"): ("same", None),  # the cloud's, not a Pi's
    ("footprint", "rss_mb"): ("same", None),
    ("footprint", "rss_mb_metrics_off"): ("same", None),
    ("footprint", "check_config_peak_rss_mb"): ("same", None),
    ("report", "seconds"): ("time", NATIVE),  # SQLite's aggregation, then matplotlib
    ("report", "rss_mb"): ("same", None),
    ("player_render", "p95_ms"): ("screen", None),
    ("player_render", "baseline_p95_ms"): ("screen", None),
    ("player_render", "heap_growth_mb"): ("same", None),
}


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def estimate(benchmark: str, figure: str, value: float) -> str:
    """The Pi 4 estimate of one x86 figure, as printed beside it (a range: Pi 4 at 1.8 GHz … 1.5 GHz)."""
    kind, factor = KINDS.get((benchmark, figure), ("unknown", None))
    if kind == "same":
        return f"~{_number(value)}"
    if kind == "board":
        return "board (SD fsync)"
    if kind == "screen":
        return "screen's device"
    if factor is None:
        return "?"
    if kind == "time":
        low, high = value * factor.low, value * factor.high
    else:
        low, high = value / factor.high, value / factor.low
    return f"{_number(low)}…{_number(high)}"


# A chain of dependent 64-bit adds (x86-64): one cycle each on Zen 4 (and on every x86 core of the last
# decade), so adds per second of thread CPU time is the core's clock, turbo included, wherever it runs.
_CLOCK_C: Final = r"""
#include <stdio.h>
#include <stdint.h>
#include <time.h>
int main(void) {
    for (int run = 0; run < 5; run++) {
        struct timespec a, b;
        uint64_t x = (uint64_t)run, n = 1000000000ULL;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        for (uint64_t i = 0; i < n; i += 8)
            __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                             "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
                             : "+r"(x) : "r"(i));
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        printf("%.4f %llu\n", (double)n / s / 1e9, (unsigned long long)(x & 1));
    }
    return 0;
}
"""


def host_clock_ghz() -> list[float]:
    """The clock of this machine's core, five runs (x86-64 and gcc only)."""
    if platform.machine() != "x86_64" or shutil.which("gcc") is None:
        raise RuntimeError("the clock probe needs x86-64 and gcc")
    with tempfile.TemporaryDirectory() as folder:
        source, binary = Path(folder) / "clock.c", Path(folder) / "clock"
        source.write_text(_CLOCK_C)
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
        out = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout
    return [float(line.split()[0]) for line in out.splitlines()]


def main() -> int:
    """``python -m bench.pi4``: the factors, and whether this machine is the host they were derived for."""
    print(f"Pi 4 per-core factors (estimates): python {PYTHON.low} … {PYTHON.high}, "
          f"native {NATIVE.low} … {NATIVE.high}; host assumed at {HOST_GHZ} GHz (Zen 4)")  # fmt: skip
    clocks = host_clock_ghz()
    median = statistics.median(clocks)
    print(f"this machine's core: {median:.2f} GHz median ({min(clocks):.2f} … {max(clocks):.2f}) over 5 runs")
    if abs(median - HOST_GHZ) / HOST_GHZ > 0.05:
        print("another clock than the factors assume: scale them by the ratio, and by IPC if not Zen 4")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
