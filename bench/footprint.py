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
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import e2e
from tests.support.example import trial_example

REPO = Path(__file__).resolve().parents[1]
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


def _timed_child(argv: list[str]) -> tuple[int, float, float]:
    """Exit code, wall seconds and peak RSS (MB) of one child process, from its own rusage."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=REPO, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024


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


def _smaps(pid: int) -> dict[str, Any]:
    """RSS of a running process by mapping owner (``/proc/PID/smaps``) and in total (``smaps_rollup``)."""
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0])
    groups: dict[str, int] = defaultdict(int)
    owner = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].endswith(":"):
            owner = _group(fields[5] if len(fields) > 5 else "")
        elif fields and fields[0] == "Rss:":
            groups[owner] += int(fields[1])
    by_owner = {
        name: round(kb / 1024, 1)
        for name, kb in sorted(groups.items(), key=lambda item: -item[1])
        if kb >= 256
    }
    return {
        "rss_mb": round(rollup["Rss"] / 1024, 1),
        "pss_mb": round(rollup["Pss"] / 1024, 1),
        "anonymous_mb": round(rollup["Anonymous"] / 1024, 1),
        "file_mb": round((rollup["Rss"] - rollup["Anonymous"]) / 1024, 1),
        "by_owner_mb": by_owner,
    }


def _read_into(probe: dict[str, Any], pid: int) -> None:
    probe.update(_smaps(pid))


def gateway(repeats: int, seconds: float) -> dict[str, Any]:
    """The e2e benchmark's gateway (camera, BLE and sync off) after ``seconds`` of 200 check-ins/s."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="edge-footprint-") as tmp:
            workdir = Path(tmp)
            broker = e2e.Broker(workdir)
            probe: dict[str, Any] = {}
            extra: dict[str, float] = {}
            try:
                count = int(e2e.RATE_PER_S * seconds)
                asyncio.run(
                    e2e._gateway_run(workdir, broker.port, count, extra, functools.partial(_read_into, probe))
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
    return {
        key: round(value / 2**20, 1)
        for key, value in sorted(sizes.items(), key=lambda item: -item[1])
        if value >= 2**18
    }


def run(repeats: int = 3, seconds: float = 5.0) -> dict[str, Any]:
    gateway_figures = gateway(repeats, seconds)
    return {
        "rss_mb": gateway_figures["rss_mb"],
        "check_config": check_config(repeats),
        "imports": imports(),
        "python_heap_after_import_mb": python_heap(),
        "gateway": gateway_figures,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(run(args.repeats, args.seconds), indent=2))
