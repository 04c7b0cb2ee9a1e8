"""The e2e benchmark as the store grows: 4, 100, 300 and 1,000 displays, one zone each, 200 check-ins/s.

Each size is the check-in -> manifest run of ``bench/e2e.py`` (the gateway as its own process on one core,
a real mosquitto, check-ins round-robin over every zone), with the raw two-hop echo as the baseline in the
same run, on the same broker. The sizes of a repeat run in a rotated order, so a slow moment of the
machine does not always fall on the same size. DESIGN.md's target: p99 at 1,000 displays within 1.5x of
p99 at 4 (nothing on the check-in path may cost O(displays) or O(zones)).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import e2e

SIZES = (4, 100, 300, 1000)


def run(repeats: int = 3, seconds: float = 10.0, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    count = int(e2e.RATE_PER_S * seconds)
    baselines: list[dict[str, Any]] = []
    by_size: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for repeat in range(repeats):
        order = sizes[repeat % len(sizes) :] + sizes[: repeat % len(sizes)]
        with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
            broker = e2e.Broker(Path(tmp))
            try:
                baselines.append(e2e.baseline(broker.port, count))
                for size in order:
                    by_size[size].append(e2e.measure(broker.port, count, size))
            finally:
                broker.stop()
    table = {str(size): e2e.gateway_summary(runs) for size, runs in by_size.items()}
    smallest, largest = str(min(sizes)), str(max(sizes))
    return {
        "sizes": table,
        "ratio_p99_largest_vs_smallest": round(table[largest]["p99_ms"] / table[smallest]["p99_ms"], 2),
        "p99_ms_smallest": table[smallest]["p99_ms"],
        "p99_ms_largest": table[largest]["p99_ms"],
        "baseline_p50_ms": statistics.median(b["p50_ms"] for b in baselines),
        "baseline_p99_ms": statistics.median(b["p99_ms"] for b in baselines),
        "rate_per_s": e2e.RATE_PER_S,
        "sent_per_run": count,
        "repeats": repeats,
        "runs": {"baseline": baselines, **{str(size): runs for size, runs in by_size.items()}},
    }


def table(results: dict[str, Any]) -> str:
    """The per-size table of docs/benchmarks.md: median (min … max) over the repeats."""

    def cell(figures: dict[str, Any], name: str) -> str:
        low, mid, high = figures[f"{name}_min_med_max"]
        return f"{mid:g} ({low:g} … {high:g})"

    lines = [
        "| displays | p50 ms | p99 ms | CPU ms / check-in | idle CPU % | start → all manifests s |",
        "|---|---|---|---|---|---|",
    ]
    for size, figures in results["sizes"].items():
        cells = [
            cell(figures, name)
            for name in ("p50_ms", "p99_ms", "cpu_ms_per_checkin", "idle_cpu_percent", "start_to_manifests_s")
        ]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nbaseline (raw two hops) p50 / p99: {results['baseline_p50_ms']:g} / {results['baseline_p99_ms']:g} ms;"
        f" p99 ratio largest / smallest: {results['ratio_p99_largest_vs_smallest']:g}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    results = run(args.repeats, args.seconds, tuple(int(size) for size in args.sizes.split(",")))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
