"""The README's "Try it by hand" path, run as written, one process per command, with HOME and TMPDIR in
temporary folders: it needs no edit of the example (the broker's port aside: the README's broker is the
machine's 1883, the test's is its own), serves a check-in end to end, and writes nothing outside its trial
folder (no /var/lib/edge-gateway, nothing in the checkout's config/ or models/, nothing of its own in HOME). Two
gateways on one machine, from the same steps, both start and serve; the second finds the metrics port taken,
runs on without it and says so in gateway/health.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.support.broker import Mosquitto, free_port
from tests.support.mqtt import Probe

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = Path("/var/lib/edge-gateway")  # where the hand run used to write (issue 12)
ONNXRUNTIME_CACHE = Path(".cache/Microsoft/DeveloperTools/.onnxruntime")
EDGE = f"{shlex.quote(sys.executable)} -m edge"


def readme_steps(trial: str = "trial") -> list[str]:
    """The README's hand-run commands up to (not including) starting the gateway, for this interpreter."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Try it by hand") :]
    block = section[
        section.index("```sh\n") + len("```sh\n") : section.index("```\n", section.index("```sh\n") + 1)
    ]
    steps = []
    for line in block.splitlines():
        command = line.split("  #", 1)[0].strip()
        if " run --config " in command:
            break
        if command:
            command = command.replace(".venv/bin/edge-gateway", EDGE)
            steps.append(re.sub(r"\btrial(?=/|\s|$)", trial, command))
    return steps


@contextlib.contextmanager
def checkout(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A folder laid out like the checkout (its config/ and models/ are the repository's own) and the
    environment of a user with a fresh HOME; afterwards, nothing may have been written outside ``tmp_path``."""
    root, home, temp = tmp_path / "checkout", tmp_path / "home", tmp_path / "tmp"
    for folder in (root, home, temp):
        folder.mkdir()
    for shared in ("config", "models"):
        (root / shared).symlink_to(REPO / shared)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(temp), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("STATE_DIRECTORY", None)
    watched = [REPO / "config", REPO / "models", STATE_ROOT]
    before = {folder: _listing(folder) for folder in watched}
    yield root, env
    for folder in watched:
        assert _listing(folder) == before[folder], f"{folder} was written to"
    # HOME: only onnxruntime's own device-id cache (the library writes it under XDG_CACHE_HOME on every
    # session; nothing of the gateway's)
    written = {path.relative_to(home) for path in home.rglob("*") if path.is_file()}
    assert {path for path in written if not path.is_relative_to(ONNXRUNTIME_CACHE)} == set(), written


def _listing(folder: Path) -> dict[str, tuple[int, int]] | None:
    if not folder.exists():
        return None
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")}


def set_up(root: Path, env: dict[str, str], trial: str, broker_port: int, **edits: str) -> Path:
    """Run the README's steps for ``trial``; then only the edits the test needs (the broker's port...)."""
    for step in readme_steps(trial):
        result = subprocess.run(
            step, shell=True, cwd=root, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (step, result.stdout, result.stderr)
        if "check-config" in step:
            assert result.stdout.strip().endswith("OK"), result.stdout
    config = root / trial / "gateway.toml"
    text = config.read_text().replace("port = 1883\n", f"port = {broker_port}\n", 1)
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text)
    return config


def start(root: Path, env: dict[str, str], config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--config", str(config.relative_to(root))],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM (a graceful drain) and the process's output; it must exit cleanly."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, output
    return output


def checkin(root: Path, env: dict[str, str], trial: str, store: str) -> bytes:
    command = [sys.executable, "-m", "edge", "token", "checkin", "--key", f"{trial}/keys/token-private.pem"]
    command += ["--store", store, "--shopper", "p-7f3a9c01", "--zone", "cafe"]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, check=True).stdout.strip()


def decisions(probe: Probe, topic: str) -> list[dict]:
    return [m for m in probe.json_on(topic) if m.get("decision_id")]


def exposures(ledger: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        return int(db.execute("select count(*) from exposures").fetchone()[0])


async def test_the_readme_hand_run_works_as_written_and_writes_only_its_trial_folder(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    assert any("keygen" in step for step in readme_steps()), "the README lost its hand-run steps"
    status, content = "store/store-001/gateway/status", "store/store-001/display/screen-cafe-1/content"
    with checkout(tmp_path) as (root, env):
        config = set_up(root, env, "trial", mosquitto.port)
        async with Probe(mosquitto.port, status, content) as screen:
            proc = start(root, env, config)
            try:
                await screen.wait_for(lambda: any(m["state"] == "online" for m in screen.json_on(status)), 20)
                await screen.publish("store/store-001/checkin", checkin(root, env, "trial", "store-001"))
                await screen.wait_for(lambda: decisions(screen, content), 10)
                shown = decisions(screen, content)[-1]
                ack = {
                    "v": 1,
                    "version": shown["version"],
                    "decision_id": shown["decision_id"],
                    "status": "shown",
                }
                await screen.publish("store/store-001/display/screen-cafe-1/ack", ack)
                ledger = root / "trial" / "state" / "ledger.sqlite"
                await screen.wait_for(lambda: ledger.exists() and exposures(ledger) == 1, 10)
            finally:
                stop(proc)
        # what the gateway wrote is under trial/state: the ledger, the model store
        assert (root / "trial" / "state" / "models" / "current").is_file()


async def test_two_gateways_on_one_machine_both_start_and_serve(tmp_path: Path, mosquitto: Mosquitto) -> None:
    metrics_port = free_port()  # both ask for the same port, as two copies of the example ask for 9108
    port_line = "metrics_port = 9108"
    with checkout(tmp_path) as (root, env):
        first = set_up(root, env, "trial", mosquitto.port, **{port_line: f"metrics_port = {metrics_port}"})
        second = set_up(
            root,
            env,
            "trial-2",
            mosquitto.port,
            **{'id = "store-001"': 'id = "store-002"', port_line: f"metrics_port = {metrics_port}"},
        )
        topics = [
            f"store/{store}/{leaf}"
            for store in ("store-001", "store-002")
            for leaf in ("gateway/#", "display/screen-cafe-1/content")
        ]
        async with Probe(mosquitto.port, *topics) as probe:
            procs = []
            try:
                for store, config in (("store-001", first), ("store-002", second)):
                    procs.append(start(root, env, config))
                    online = f"store/{store}/gateway/status"
                    await probe.wait_for(
                        lambda t=online: any(m["state"] == "online" for m in probe.json_on(t)), 20
                    )
                for store, trial in (("store-001", "trial"), ("store-002", "trial-2")):
                    await probe.publish(f"store/{store}/checkin", checkin(root, env, trial, store))
                    content = f"store/{store}/display/screen-cafe-1/content"
                    await probe.wait_for(lambda t=content: decisions(probe, t), 10)
                # the first holds the metrics port; the second runs without it and says so in its health
                health = "store/store-002/gateway/health"
                await probe.wait_for(lambda: probe.json_on(health), 10)
                alerts = probe.json_on(health)[-1]["alerts"]
                assert any(
                    re.match(rf"metrics_off: 127\.0\.0\.1:{metrics_port}: ", alert) for alert in alerts
                ), alerts
                first_health = probe.json_on("store/store-001/gateway/health")[-1]
                assert not any(alert.startswith("metrics_off") for alert in first_health["alerts"])
                url = f"http://127.0.0.1:{metrics_port}/metrics"
                body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
                assert f'config_version="{first_health["config_version"]}"' in body  # the first one's
            finally:
                outputs = [stop(proc) for proc in procs]
        assert "metrics endpoint is off" in outputs[1]
