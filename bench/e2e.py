"""Check-in published -> display manifest received, through a real mosquitto, vs a raw two-hop echo.

The gateway runs as its own process (``edge-gateway run``) pinned to one core; the load generator and
the receiver share another. The baseline is an echo client (subscribe, republish) in its own process on
the same core as the gateway, with the same socket options (TCP_NODELAY) and the same broker config.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from edge.identity import generate_keypair, sign_token

REPO = Path(__file__).resolve().parents[1]
RATE_PER_S = 200
ZONES = 20  # round-robin: each zone sees one check-in per 100 ms, far above the latency measured
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
STORE = "bench"
# CPU of the gateway with nothing to do but its timers, measured before the load (10 ms clock ticks).
IDLE_WINDOW_S = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(cmd: list[str], core: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *cmd] if taskset and (os.cpu_count() or 1) > 1 else cmd


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(_pinned([binary, "-c", str(conf)], 1), stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {port}")


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "n": len(ordered),
    }


async def _drive(
    port: int, send_topic: Any, recv_filter: str, payloads: list[tuple[str, bytes]], key_of: Any
) -> list[float]:
    """Publish payloads at RATE_PER_S; latency = arrival of the reply keyed like the request.

    Replies of one key come back in the order of their requests (one topic, QoS 1; a display shows its
    requests in turn), so each reply is matched to the oldest unanswered request of its key: with few keys
    a slow reply is then not matched to a later request, which would understate the latency.
    """
    sent_at: dict[str, deque[float]] = defaultdict(deque)
    latencies: list[float] = []
    async with (
        aiomqtt.Client(
            "127.0.0.1", port, socket_options=NODELAY, identifier=f"bench-rx-{uuid.uuid4().hex[:6]}"
        ) as rx,
        aiomqtt.Client(
            "127.0.0.1", port, socket_options=NODELAY, identifier=f"bench-tx-{uuid.uuid4().hex[:6]}"
        ) as tx,
    ):
        await rx.subscribe(recv_filter, qos=1)

        async def receive() -> None:
            async for message in rx.messages:
                if message.retain:
                    continue
                key = key_of(message.topic.value, message.payload)
                waiting = sent_at.get(key) if key is not None else None
                if waiting:
                    latencies.append((time.perf_counter() - waiting.popleft()) * 1000)

        receiver = asyncio.create_task(receive())
        await asyncio.sleep(0.3)
        interval = 1 / RATE_PER_S
        next_at = time.perf_counter()
        for key, payload in payloads:
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[key].append(time.perf_counter())
            await tx.publish(send_topic(key), payload, qos=1)
        await asyncio.sleep(0.5)
        receiver.cancel()
    return latencies


ECHO = """
import asyncio, socket, sys, aiomqtt
async def main(port):
    opts = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    async with aiomqtt.Client("127.0.0.1", port, socket_options=opts, identifier="bench-echo") as c:
        await c.subscribe("bench/ping/+", qos=1)
        print("ready", flush=True)
        async for m in c.messages:
            await c.publish("bench/pong/" + m.topic.value.rsplit("/", 1)[1], m.payload, qos=1)
asyncio.run(main(int(sys.argv[1])))
"""


async def _baseline(port: int, count: int) -> list[float]:
    proc = subprocess.Popen(_pinned([sys.executable, "-c", ECHO, str(port)], 0), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    try:
        payloads = [(str(index % ZONES), b"x" * 600) for index in range(count)]
        return await _drive(
            port,
            lambda key: f"bench/ping/{key}",
            "bench/pong/+",
            [(k, p) for k, p in payloads],
            lambda topic, _: topic.rsplit("/", 1)[1],
        )
    finally:
        proc.terminate()
        proc.wait(5)


def _gateway_config(workdir: Path, port: int, zones: int, health: str = "interval_s = 60") -> Path:
    private_pem, public_pem = generate_keypair()
    (workdir / "pub.pem").write_bytes(public_pem)
    (workdir / "private.pem").write_bytes(private_pem)
    tables = "".join(
        f'[[zones]]\nid = "z{i}"\n\n[[displays]]\nid = "d{i}"\nzone = "z{i}"\nmin_display_s = 0\n\n'
        for i in range(zones)
    )
    config = workdir / "gateway.toml"
    config.write_text(
        f'[store]\nid = "{STORE}"\n\n[mqtt]\nport = {port}\n\n[identity]\npublic_key_files = ["pub.pem"]\n\n'
        f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\noffers_file = "{REPO / "config/offers.example.toml"}"\n\n'
        f'[ledger]\npath = "ledger.sqlite"\n\n[control]\nstate_dir = "state"\n\n[health]\n{health}\n\n[logging]\nlevel = "WARNING"\n\n{tables}'
    )
    return config


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _cpu_s(pid: int) -> float:
    """CPU time the process's threads have used so far, in ns resolution (the scheduler's own account;
    /proc/PID/stat counts 10 ms ticks, too coarse for the idle timers). Exited threads are not counted:
    the gateway's threads (loop, decisions, SQLite) live as long as it does."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total_ns += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended while we read
    return total_ns / 1e9


async def _wait_started(port: int, displays: int) -> None:
    """Until the gateway is online and every display's start-up manifest reached a subscriber."""
    seen: set[str] = set()
    online = False
    async with aiomqtt.Client("127.0.0.1", port, socket_options=NODELAY) as probe:
        await probe.subscribe(f"store/{STORE}/gateway/status", qos=1)
        await probe.subscribe(f"store/{STORE}/display/+/content", qos=1)
        async for message in probe.messages:
            if message.topic.matches(f"store/{STORE}/gateway/status"):
                online = isinstance(message.payload, bytes) and b'"online"' in message.payload
            else:
                seen.add(message.topic.value)
            if online and len(seen) >= displays:
                return


def checkins(private_pem: bytes, count: int, zones: int = ZONES, first: int = 0) -> list[tuple[str, bytes]]:
    """``count`` signed check-ins of distinct shoppers (``first`` on), round-robin over the zones, keyed by
    display."""
    now = int(time.time())
    payloads = []
    for index in range(first, first + count):
        claims = {
            "sub": f"p-bench{index}",
            "aud": STORE,
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }
        body = {
            "v": 1,
            "token": sign_token(private_pem, claims),
            "zone": f"z{index % zones}",
            "source": "app",
        }
        payloads.append((f"d{index % zones}", json.dumps(body).encode()))
    return payloads


def _manifest_key(topic: str, payload: Any) -> str | None:
    """The display of a manifest that answers a check-in; None for a fallback (an expiry, not an answer)."""
    return None if b'"decision_id":null' in payload else topic.split("/")[3]


async def drive_checkins(port: int, payloads: list[tuple[str, bytes]]) -> list[float]:
    """Publish the check-ins at RATE_PER_S; latency = the manifest of that display answering it."""
    return await _drive(
        port,
        lambda _key: f"store/{STORE}/checkin",
        f"store/{STORE}/display/+/content",
        payloads,
        _manifest_key,
    )


async def _gateway_run(
    workdir: Path,
    port: int,
    count: int,
    extra: dict[str, float],
    *,
    zones: int = ZONES,
    after_load: Callable[[int], Awaitable[None]] | None = None,
    health: str = "interval_s = 60",
) -> list[float]:
    """The gateway with ``zones`` zones of one display each, ``count`` check-ins at RATE_PER_S.

    ``extra`` receives: start to READY, start to every start-up manifest received, CPU while idle (the
    timers alone), CPU per check-in under load and RSS after the load. ``after_load(pid)`` runs while the
    gateway still runs (bench/footprint.py reads its memory there); ``health`` is its ``[health]`` section.
    """
    config = _gateway_config(workdir, port, zones, health)
    payloads = checkins((workdir / "private.pem").read_bytes(), count, zones)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(workdir / "notify.sock"))
    started = time.perf_counter()
    proc = subprocess.Popen(
        _pinned([sys.executable, "-m", "edge", "run", "--config", str(config)], 0),
        cwd=workdir,
        stdout=subprocess.DEVNULL,  # the daemon's log lines
        stderr=subprocess.PIPE,
        env={**os.environ, "NOTIFY_SOCKET": str(workdir / "notify.sock")},
    )
    try:
        notify.settimeout(10)
        while not notify.recv(4096).startswith(b"READY=1"):
            pass
        extra["start_to_ready_s"] = round(time.perf_counter() - started, 3)
        notify.close()
        await _wait_started(port, zones)
        extra["start_to_manifests_s"] = round(time.perf_counter() - started, 3)
        idle_cpu, idle_from = _cpu_s(proc.pid), time.perf_counter()
        await asyncio.sleep(IDLE_WINDOW_S)
        idle_s = time.perf_counter() - idle_from
        extra["idle_cpu_percent"] = round(100 * (_cpu_s(proc.pid) - idle_cpu) / idle_s, 2)
        load_cpu = _cpu_s(proc.pid)
        latencies = await drive_checkins(port, payloads)
        # An idle run (bench/footprint.py's, no check-ins) has no CPU per check-in.
        used = _cpu_s(proc.pid) - load_cpu
        extra["cpu_ms_per_checkin"] = round(1000 * used / count, 3) if count else float("nan")
        extra["rss_mb_after_load"] = _rss_mb(proc.pid)
        if after_load is not None:
            await after_load(proc.pid)
        return latencies
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _spread(values: list[float]) -> list[float]:
    return [min(values), statistics.median(values), max(values)]


# Figures of one gateway run reported as min/median/max over the repeats.
SPREAD_FIGURES = (
    "p50_ms",
    "p99_ms",
    "start_to_ready_s",
    "start_to_manifests_s",
    "idle_cpu_percent",
    "cpu_ms_per_checkin",
    "rss_mb_after_load",
)


def gateway_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the gateway's figures over ``runs`` (each ``{figure: value}``), with min/median/max."""
    summary: dict[str, Any] = {
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
    }
    for figure in SPREAD_FIGURES:
        summary[f"{figure}_min_med_max"] = _spread([r[figure] for r in runs])
    summary["received"] = [r["n"] for r in runs]
    return summary


def measure(port: int, count: int, zones: int) -> dict[str, Any]:
    """One gateway run against the broker on ``port``: latency percentiles and the ``extra`` figures."""
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        extra: dict[str, float] = {}
        gateway = _percentiles(asyncio.run(_gateway_run(Path(tmp), port, count, extra, zones=zones)))
    return {**gateway, **extra}


def baseline(port: int, count: int) -> dict[str, Any]:
    """The raw two-hop echo against the broker on ``port``."""
    return _percentiles(asyncio.run(_baseline(port, count)))


def run(repeats: int = 3, seconds: float = 10.0) -> dict[str, Any]:
    count = int(RATE_PER_S * seconds)
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
            broker = Broker(Path(tmp))
            try:
                base = baseline(broker.port, count)
                gateway = measure(broker.port, count, ZONES)
            finally:
                broker.stop()
        runs.append({"gateway": gateway, "baseline": base})
    summary = gateway_summary([r["gateway"] for r in runs])
    base99 = statistics.median(r["baseline"]["p99_ms"] for r in runs)
    return {
        **summary,
        "baseline_p50_ms": statistics.median(r["baseline"]["p50_ms"] for r in runs),
        "baseline_p99_ms": base99,
        "ratio_p99": round(summary["p99_ms"] / base99, 2),
        "rate_per_s": RATE_PER_S,
        "sent_per_run": count,
        "runs": runs,
    }


if __name__ == "__main__":
    print(json.dumps(run(repeats=1, seconds=5), indent=2))
