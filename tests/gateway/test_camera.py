"""A camera above the cafe screen, for real: a video the test makes, OpenCV, the real gateway and mosquitto.

A shopper holds up their QR code: one check-in, a decision, a manifest on the cafe screen. People walk by:
anonymous counts in presence/cafe. And no frame, crop or image leaves the process: every MQTT message the
gateway publishes, every file it writes, every log line are checked.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.camera.scenes import Walker, place, qr_image, walker_frames
from tests.camera.videos import write_video
from tests.support.broker import Mosquitto
from tests.support.gateway import running_gateway
from tests.support.launch import child_env
from tests.support.mqtt import Probe
from tests.support.store import REPO, ROOT, StoreKit, make_store

CONTENT = f"{ROOT}/display/screen-cafe/content"
PRESENCE = f"{ROOT}/presence/cafe"
FPS = 20
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"\x00\x00\x00\x0cjP")

_watching: list[tuple[str, str]] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    # Every open() the Python side makes for writing, while a test watches (audit hooks cannot be removed).
    if _watching is not None and event == "open" and len(args) >= 2:
        path, mode = args[0], args[1]
        if isinstance(mode, str) and any(flag in mode for flag in "wax+"):
            _watching.append((str(path), mode))


sys.addaudithook(_audit)


@pytest.fixture
def writes() -> Iterator[list[tuple[str, str]]]:
    global _watching  # noqa: PLW0603 - the hook is process-wide by nature
    _watching = []
    try:
        yield _watching
    finally:
        _watching = None


def _files(*roots: Path) -> dict[str, int]:
    """Every file under ``roots`` with its size (byte-compiled Python and the venv aside)."""
    found = {}
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = [
                d for d in dirs if d not in {".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache"}
            ]
            for name in names:
                path = Path(dirpath) / name
                try:
                    found[str(path)] = path.stat().st_size
                except OSError:
                    continue
    return found


def _scene(token: str, seconds: float = 4.0) -> list[np.ndarray]:
    """640x480: two people walk in and stand; one holds a QR code up to the camera for a second."""
    frames = []
    code = qr_image(token, module_px=4)
    walkers = [
        Walker(enter=0, stand_at=0.3, stand=60),
        Walker(enter=10, stand_at=0.7, stand=40, from_left=False),
    ]
    for index, (scene, _truth) in enumerate(walker_frames(walkers, int(seconds * FPS), shape=(480, 640))):
        shown = 20 <= index < 40  # held up, moving a little, for a second
        frames.append(place(scene, code, center=(320 + 2 * (index - 20), 240), angle=5.0) if shown else scene)
    return frames


def _camera_store(tmp_path: Path, mosquitto: Mosquitto) -> tuple[StoreKit, str]:
    store = make_store(tmp_path / "store", mosquitto.port)
    token = store.token("p-full")  # p-full granted camera_checkin in the seed
    write_video(store.workdir / "cafe-camera.avi", _scene(token), FPS)
    with store.config_path.open("a") as config:
        config.write(
            '\n[[cameras]]\nid = "cam-cafe"\nsource = "cafe-camera.avi"\nzone = "cafe"\nqr_fps = 10\ncount_fps = 10\n'
        )
    return store, token


async def test_a_qr_code_shown_to_the_camera_checks_in_and_nothing_visual_leaves(
    tmp_path: Path,
    mosquitto: Mosquitto,
    writes: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, token = _camera_store(tmp_path, mosquitto)
    # The gateway's temp dir and working dir are private to this test, so that what other processes on the
    # machine write meanwhile is not mistaken for the gateway's; Python-level writes anywhere are caught
    # by the audit hook below whatever the folder.
    private_tmp, workdir = tmp_path / "tmp", tmp_path / "cwd"
    private_tmp.mkdir()
    workdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    monkeypatch.chdir(workdir)
    writes.clear()  # the test's own set-up (config, keys, video) is not the gateway's doing
    roots = (store.workdir, private_tmp, workdir)
    before = _files(*roots)
    caplog.set_level(logging.DEBUG)
    async with Probe(mosquitto.port, "#") as everything:
        async with running_gateway(store.settings()) as gateway:
            assert gateway.generation is not None
            flow = gateway.generation
            camera = gateway.generation.cameras[0]
            await everything.wait_for(lambda: camera.counters["qr_checkins"] == 1, timeout=15)
            await everything.wait_for(
                lambda: any(m.get("decision_id") for m in everything.json_on(CONTENT)), timeout=5
            )
            manifest = [m for m in everything.json_on(CONTENT) if m.get("decision_id")][-1]
            decision = await gateway.ledger.decision(manifest["decision_id"])  # type: ignore[union-attr]
            assert decision is not None
            assert decision["shopper_id"] == "p-full"
            assert decision["zone"] == "cafe"
            # the same code in the following frames: counted as repeats, never a second check-in
            await everything.wait_for(lambda: camera.counters["qr_repeats"] >= 3, timeout=10)
            assert flow.stats.checkins == 1
            assert camera.counters["qr_checkins"] == 1
            # people were counted, anonymously
            await everything.wait_for(
                lambda: any(m.get("people", 0) >= 1 for m in everything.json_on(PRESENCE))
            )
            health = await _health(everything)
            assert health["cameras"]["cam-cafe"]["capture"]["frames"] > 0
            assert health["cameras"]["cam-cafe"]["capture"]["state"] in ("streaming", "ended")
    after = _files(*roots)

    # Nothing visual was published: every message is small JSON (or a short status word), no image bytes.
    for topic, payload, _retain in everything.messages:
        if topic.startswith(f"{ROOT}/checkin"):
            continue
        assert len(payload) < 16_384, topic
        assert not payload.startswith(IMAGE_MAGIC), topic
        assert token.encode() not in payload, topic
    # Nothing written but the ledger: no frame, snapshot or clip anywhere we can see.
    new = {path for path in after if path not in before}
    # Allowed: the ledger, and the model store's copy of the offer model (docs/models.md) with its bookkeeping.
    allowed = {
        str(store.workdir / name) for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm")
    }
    models = store.workdir / "state" / "models"
    version = json.loads((REPO / "models" / "offers.json").read_text())["version"]
    allowed |= {str(models / name) for name in (".lock", "current", "history.json")}
    allowed |= {str(models / version / name) for name in ("model.onnx", "manifest.json", "installed.json")}
    assert (models / version / "model.onnx").read_bytes() == (REPO / "models" / "offers.onnx").read_bytes()
    assert new <= allowed, sorted(new - allowed)
    python_writes = {
        path for path, _mode in writes if not path.startswith(("/proc", "/dev")) and "__pycache__" not in path
    }
    # The model store writes through temp files it renames: those are its own, under its folder.
    temp = {path for path in python_writes if Path(path).parent.is_relative_to(models) and ".tmp" in path}
    assert python_writes - temp <= allowed, sorted(python_writes - temp - allowed)
    # And no log line carries the token or anything image-sized.
    for record in caplog.records:
        text = record.getMessage()
        assert token not in text
        assert len(text) < 2_000


async def _health(probe: Probe) -> dict:
    topic = f"{ROOT}/gateway/health"
    await probe.wait_for(lambda: probe.json_on(topic), timeout=5)
    return json.loads(probe.on(topic)[-1])


def test_a_gateway_without_a_camera_never_loads_opencv(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A store without cameras runs the whole gateway without paying for OpenCV (~40 MB of RSS)."""
    store = make_store(tmp_path / "store", mosquitto.port)
    code = (
        "import asyncio, sys\nfrom pathlib import Path\n"
        "from edge.config import load_settings\n"
        "from tests.support.clock import pin_process\n"
        "from tests.support.gateway import running_gateway\n"
        "pin_process()\n"
        "async def main():\n"
        "    async with running_gateway(load_settings(Path(sys.argv[1]))) as gateway:\n"
        "        assert gateway.generation.cameras == ()\n"
        "asyncio.run(main())\n"
        "loaded = sorted(name for name in sys.modules if name == 'cv2' or name.startswith('cv2.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(store.config_path)], check=True, timeout=60, env=child_env()
    )
