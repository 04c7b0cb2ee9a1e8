"""Memory and start-up footprint: check-config, the gateway's imports one by one, a running gateway by mapping.

Usage: python -m bench.footprint [--repeats 3] [--seconds 5]   (prints JSON; ``make bench`` runs it too)
Targets: DESIGN.md's steady RSS <= 80 MB with the camera off; issue 13: ``check-config`` loads neither
numpy nor onnxruntime. Every figure comes from a fresh child process, so one measurement cannot warm another.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

from bench import e2e
from tests.support.example import trial_example

REPO = Path(__file__).resolve().parents[1]
# Seconds of further load during which the pages the gateway really uses are recorded (smaps "Referenced").
REFERENCED_S: Final = 3.0
# Top-level packages worth naming when they are (or are not) loaded.
HEAVY = (
    "numpy",
    "onnxruntime",
    "cv2",
    "aiohttp",
    "bleak",
    "dbus_fast",
    "amqtt",
    "asyncpg",
    "cryptography",
    "jwt",
    "aiomqtt",
    "paho",
    "aiosqlite",
    "pydantic",
    "prometheus_client",
)
# What the gateway imports, library by library, then its own modules; each step's RSS is measured after
# the ones above it in one process, so a step's delta is what it adds to everything before it.
IMPORT_STEPS = (
    ("pydantic", "import pydantic"),
    ("numpy", "import numpy"),
    ("onnxruntime", "import onnxruntime"),
    (
        "cryptography (Ed25519, AES)",
        "import cryptography.hazmat.primitives.asymmetric.ed25519, cryptography.hazmat.primitives.ciphers",
    ),
    ("PyJWT", "import jwt"),
    ("aiomqtt + paho", "import aiomqtt"),
    ("aiosqlite + sqlite3", "import aiosqlite"),
    ("aiohttp (metrics endpoint, sync)", "import aiohttp.web"),
    ("edge.config", "import edge.config"),
    ("edge.daemon (every gateway module)", "import edge.daemon"),
)
# The same modules, each alone in a fresh interpreter (what one costs when nothing else is loaded).
ALONE = (
    *IMPORT_STEPS[:-2],
    ("edge.config", "import edge.config"),
    ("edge.cli (check-config's imports)", "import edge.cli, edge.control.preflight"),
    ("edge.daemon (every gateway module)", "import edge.daemon"),
)
_STATUS = """
def _status():
    fields = {}
    for line in open('/proc/self/status'):
        key, _, value = line.partition(':')
        if key in ('VmRSS', 'RssAnon', 'RssFile'):
            fields[key] = int(value.split()[0])
    return fields
"""


def _spread(values: list[float]) -> list[float]:
    return [round(min(values), 1), round(statistics.median(values), 1), round(max(values), 1)]


def _child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


# Runs the command as its own child and reports that child's exit code, wall time and peak RSS. A child's
# ru_maxrss counts the pages it had when it was forked, before exec: forked from `make bench`, which has
# grown to hundreds of MB by the time this runs, every child "peaked" at the parent's size. Forked from this
# small interpreter (~10 MB), it peaks at its own.
_TRAMPOLINE = """
import os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), time.perf_counter() - started, usage.ru_maxrss / 1024)
"""


def _timed_child(argv: list[str]) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (MB) of one child process, from its own rusage."""
    done = subprocess.run(
        [sys.executable, "-c", _TRAMPOLINE, *argv],
        cwd=REPO,
        env=_child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    code, wall, peak = done.stdout.split()
    return int(code), float(wall), float(peak)


def _imported(argv: list[str]) -> tuple[list[str], float]:
    """Modules one run imports (``-X importtime``) and the sum of their own import times (ms)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=REPO,
        env=_child_env(),
        capture_output=True,
        text=True,
        check=False,  # check-config's verdict is read from its exit code elsewhere
    )
    modules, self_us = [], 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        modules.append(name.strip())
        self_us += int(own)
    return modules, self_us / 1000


def check_config(repeats: int) -> dict[str, Any]:
    """``edge-gateway check-config`` on the example configuration: peak RSS, wall time, what it loads."""
    with tempfile.TemporaryDirectory(prefix="edge-footprint-") as tmp:
        argv = ["-m", "edge", "check-config", str(trial_example(Path(tmp)))]
        runs = [_timed_child([sys.executable, *argv]) for _ in range(repeats)]
        modules, import_ms = _imported(argv)
    if any(code != 0 for code, _, _ in runs):
        raise RuntimeError(
            f"check-config refused the example configuration: exit codes {[r[0] for r in runs]}"
        )
    loaded = {name.split(".")[0] for name in modules}
    return {
        "peak_rss_mb_min_med_max": _spread([rss for _, _, rss in runs]),
        "peak_rss_mb": round(statistics.median(rss for _, _, rss in runs), 1),
        "wall_ms_min_med_max": _spread([wall * 1000 for _, wall, _ in runs]),
        "import_ms_self_sum": round(import_ms, 1),
        "modules": len(modules),
        "heavy_loaded": sorted(loaded.intersection(HEAVY)),
    }


def imports() -> dict[str, Any]:
    """RSS after each import step in the gateway's order (one child), and of each step alone (one child each)."""
    chain = "import json\n" + _STATUS + "out = [('python', _status())]\n"
    for name, code in IMPORT_STEPS:
        chain += f"{code}\nout.append(({name!r}, _status()))\n"
    chain += "print(json.dumps(out))\n"
    steps = json.loads(
        subprocess.run(
            [sys.executable, "-c", chain], env=_child_env(), capture_output=True, text=True, check=True
        ).stdout
    )
    cumulative, previous = [], steps[0][1]["VmRSS"]
    for name, status in steps:
        cumulative.append(
            {
                "step": name,
                "rss_mb": round(status["VmRSS"] / 1024, 1),
                "delta_mb": round((status["VmRSS"] - previous) / 1024, 1),
            }
        )
        previous = status["VmRSS"]
    alone = {}
    for name, code in ALONE:
        script = (
            "import json\n"
            + _STATUS
            + f"before = _status()['VmRSS']\n{code}\nprint(_status()['VmRSS'] - before)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], env=_child_env(), capture_output=True, text=True, check=True
        )
        alone[name] = round(int(done.stdout) / 1024, 1)
    return {"cumulative": cumulative, "alone_mb": alone}


def _group(path: str) -> str:
    """A mapping's owner: the site-packages distribution, the interpreter, a system library, or the heap."""
    if not path:
        return "[anonymous: malloc arenas, Python objects, native buffers]"
    if path.startswith("["):
        return "[heap]" if path == "[heap]" else "[stack, vdso, ...]"
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0]
        return top.removesuffix(".libs").split("-")[0].split(".")[0] + " (site-packages)"
    if "/lib-dynload/" in path or "/python3" in path or "libpython" in path:
        return "python (interpreter, stdlib extensions)"
    return (
        "system libraries ("
        + ("libcrypto/libssl" if "libcrypto" in path or "libssl" in path else "libc, libm, ...")
        + ")"
    )


def _by_owner(pid: int, field: str) -> dict[str, float]:
    """One ``/proc/PID/smaps`` field (``Rss:``, ``Referenced:``) summed per mapping owner, MB, largest first."""
    groups: dict[str, int] = defaultdict(int)
    owner = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":"):
            owner = _group(fields[5] if len(fields) > 5 else "")
        elif fields and fields[0] == field:
            groups[owner] += int(fields[1])
    ordered = sorted(groups.items(), key=lambda item: -item[1])
    return {name: round(kb / 1024, 1) for name, kb in ordered if kb >= 256}


def _smaps(pid: int) -> dict[str, Any]:
    """RSS of a running process by mapping owner (``/proc/PID/smaps``) and in total (``smaps_rollup``)."""
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0])
    return {
        "rss_mb": round(rollup["Rss"] / 1024, 1),
        "pss_mb": round(rollup["Pss"] / 1024, 1),
        "anonymous_mb": round(rollup["Anonymous"] / 1024, 1),
        "file_mb": round((rollup["Rss"] - rollup["Anonymous"]) / 1024, 1),
        "by_owner_mb": _by_owner(pid, "Rss:"),
    }


def _clear_refs(pid: int) -> None:
    """Reset the accessed bits of every page of ``pid`` (proc(5) ``clear_refs``; needs the same user or root)."""
    Path(f"/proc/{pid}/clear_refs").write_text("1")


async def _probe(workdir: Path, port: int, probe: dict[str, Any], pid: int) -> None:
    """After the load: RSS by owner; then which of those pages a further REFERENCED_S of load touches at all
    (``clear_refs`` resets the accessed bits): resident pages outside that set are start-up leftovers."""
    probe.update(_smaps(pid))
    if not probe["loaded"]:
        return
    _clear_refs(pid)
    private_pem = (workdir / "private.pem").read_bytes()
    count = int(e2e.RATE_PER_S * REFERENCED_S)
    await e2e.drive_checkins(port, e2e.checkins(private_pem, count, first=1_000_000))
    probe["referenced_mb"] = round(sum(_by_owner(pid, "Referenced:").values()), 1)
    probe["referenced_by_owner_mb"] = _by_owner(pid, "Referenced:")


def gateway(repeats: int, seconds: float, health: str = "interval_s = 60") -> dict[str, Any]:
    """The e2e benchmark's gateway (camera, BLE and sync off) after ``seconds`` of 200 check-ins/s (0: idle,
    read half a second after it is online); ``health`` is its ``[health]`` section."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="edge-footprint-") as tmp:
            workdir = Path(tmp)
            broker = e2e.Broker(workdir)
            probe: dict[str, Any] = {"loaded": seconds > 0}
            extra: dict[str, float] = {}
            try:
                count = int(e2e.RATE_PER_S * seconds)
                asyncio.run(
                    e2e._gateway_run(
                        workdir,
                        broker.port,
                        count,
                        extra,
                        after_load=functools.partial(_probe, workdir, broker.port, probe),
                        health=health,
                    )
                )
            finally:
                broker.stop()
            runs.append({**probe, "start_to_ready_s": extra["start_to_ready_s"]})
    middle = sorted(runs, key=lambda run: run["rss_mb"])[len(runs) // 2]
    return {
        "rss_mb": middle["rss_mb"],
        "rss_mb_min_med_max": _spread([run["rss_mb"] for run in runs]),
        "anonymous_mb_min_med_max": _spread([run["anonymous_mb"] for run in runs]),
        "file_mb_min_med_max": _spread([run["file_mb"] for run in runs]),
        "start_to_ready_s_min_med_max": _spread([run["start_to_ready_s"] for run in runs]),
        "by_owner_mb_median_run": middle["by_owner_mb"],
        "referenced_mb_median_run": middle.get("referenced_mb"),
        "referenced_by_owner_mb_median_run": middle.get("referenced_by_owner_mb"),
        "runs": runs,
    }


_PYTHON_HEAP = """
import json, sys, tracemalloc
from collections import defaultdict
tracemalloc.start()
import edge.daemon
sizes = defaultdict(int)
for stat in tracemalloc.take_snapshot().statistics('filename'):
    name = stat.traceback[0].filename
    if 'site-packages/' in name:
        key = name.split('site-packages/', 1)[1].split('/', 1)[0]
    elif '/edge/' in name:
        key = 'edge'
    elif name.startswith('<frozen'):
        key = 'import machinery (code objects)'
    else:
        key = 'stdlib'
    sizes[key] += stat.size
print(json.dumps(sizes))
"""


def python_heap() -> dict[str, float]:
    """Python objects that importing the gateway leaves behind, by the package that allocated them (tracemalloc)."""
    done = subprocess.run(
        [sys.executable, "-c", _PYTHON_HEAP], env=_child_env(), capture_output=True, text=True, check=True
    )
    sizes = json.loads(done.stdout)
    # Code objects, module dicts and functions are allocated by the import machinery ("<frozen importlib>"),
    # whichever package they belong to: that share is the price of the number of modules loaded.
    top = {key: round(value / 2**20, 1) for key, value in sorted(sizes.items(), key=lambda item: -item[1])}
    return {
        "total": round(sum(sizes.values()) / 2**20, 1),
        **{key: mb for key, mb in top.items() if mb >= 0.3},
    }


_SESSION = (
    """
import json, sys
import numpy as np
import onnxruntime as ort
from edge.decide.scorer import session_options
"""
    + _STATUS
    + """
before = _status()
options = session_options()
variant = sys.argv[1]
if variant == "no_arena":
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
elif variant == "no_graph_optimisation":
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
session = ort.InferenceSession(sys.argv[2], sess_options=options, providers=["CPUExecutionProvider"])
opened = _status()
features = np.full((50, session.get_inputs()[0].shape[1]), 0.5, dtype=np.float32)
for _ in range(2000):
    session.run(None, {"features": features})
ran = _status()
print(json.dumps({"session": opened["VmRSS"] - before["VmRSS"], "after_2000_runs": ran["VmRSS"] - before["VmRSS"]}))
"""
)
# The scorer's options (one thread, full graph optimisation, the default arena), then without the arena and
# memory patterns, then without graph optimisation.
SESSION_VARIANTS: Final = ("as_shipped", "no_arena", "no_graph_optimisation")


def onnx_session() -> dict[str, dict[str, float]]:
    """RSS an onnxruntime session of the shipped model adds (MB), opened and after 2,000 runs of 50 rows."""
    figures = {}
    for variant in SESSION_VARIANTS:
        argv = [sys.executable, "-c", _SESSION, variant, str(REPO / "models" / "offers.onnx")]
        done = subprocess.run(argv, env=_child_env(), capture_output=True, text=True, check=True)
        figures[variant] = {key: round(kb / 1024, 1) for key, kb in json.loads(done.stdout).items()}
    return figures


# The gateway as the e2e benchmark runs it (the metrics endpoint on, as by default), the same without the
# endpoint (aiohttp never loaded), and idle at start (what the load adds).
GATEWAY_VARIANTS: Final = {
    "loaded": (True, "interval_s = 60"),
    "loaded_metrics_off": (True, "interval_s = 60\nmetrics_port = 0"),
    "idle_at_start": (False, "interval_s = 60"),
}


def run(repeats: int = 3, seconds: float = 5.0) -> dict[str, Any]:
    gateways = {
        name: gateway(repeats, seconds if loaded else 0.0, health)
        for name, (loaded, health) in GATEWAY_VARIANTS.items()
    }
    return {
        "rss_mb": gateways["loaded"]["rss_mb"],
        "rss_mb_metrics_off": gateways["loaded_metrics_off"]["rss_mb"],
        "check_config_peak_rss_mb": (check := check_config(repeats))["peak_rss_mb"],
        "check_config": check,
        "imports": imports(),
        "python_heap_after_import_mb": python_heap(),
        "onnx_session_mb": onnx_session(),
        "gateway": gateways,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(run(args.repeats, args.seconds), indent=2))
