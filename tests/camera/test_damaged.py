"""Damaged video (issue 18): frames FFmpeg decodes with errors are caught, counted as ``corrupt`` and never
analysed; FFmpeg's own log lines stay off stderr; a source that did not open says why.

Every video is written by the test (MJPG/AVI, real OpenCV) and damaged by ``corrupt_copy``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.clock import ManualClock, SystemClock
from edge.config.camera import CameraSettings
from edge.sources.camera.audience import Audience
from edge.sources.camera.capture import CameraCapture, not_opened_reason
from edge.sources.camera.source import JpegPackets, jpeg_damaged, open_source
from tests.camera.scenes import walker_frames
from tests.camera.test_audience import WALKERS
from tests.camera.videos import corrupt_copy, frame_number, numbered_frames, write_video
from tests.support.wait import until_blocking

CLEAN_DIFF = 5.0  # mean |pixel difference| of a clean JPEG round trip is ~1.4; an error-decoded frame's 14-90


def camera(source: Path, **overrides: object) -> CameraSettings:
    values: dict[str, object] = {"id": "damaged-test", "zone": "cafe", "source": str(source)}
    values.update(overrides)
    return CameraSettings.model_validate(values)


def jpeg(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.reshape(-1)


def damaged(packet: np.ndarray, at: float, run: int = 16, fill: int = 0xFF) -> np.ndarray:
    out = packet.copy()
    start = int(out.size * at)
    out[start : start + run] = fill
    return out


# --- the packet check (a parser: tested first) -----------------------------------------------------------
def test_a_whole_jpeg_passes() -> None:
    for seed in range(5):
        assert not jpeg_damaged(jpeg(seed))


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda p: p[: p.size // 2], id="truncated"),
        pytest.param(lambda p: p[:-2], id="no-end-marker"),
        pytest.param(lambda p: p[2:], id="no-start-marker"),
        pytest.param(lambda p: p[:0], id="empty"),
        pytest.param(lambda p: np.full(200, 0xFF, np.uint8), id="all-fill"),
        pytest.param(lambda p: np.concatenate([p[:2], np.zeros(4, np.uint8), p[6:]]), id="header-zeroed"),
        pytest.param(lambda p: damaged(p, 0.6), id="run-of-ff-in-the-scan"),
        pytest.param(lambda p: np.concatenate([p[:-2], p]), id="two-frames-glued"),
    ],
)
def test_a_broken_jpeg_is_caught(broken) -> None:
    assert jpeg_damaged(broken(jpeg()))


def test_ff_runs_in_the_scan_are_caught_unless_they_happen_to_form_a_valid_escape() -> None:
    packet = jpeg(3)
    caught = sum(jpeg_damaged(damaged(packet, at / 100)) for at in range(30, 95))
    assert caught >= 60  # of 65: a run followed by 00 or D0-D7 reads as stuffing; FFmpeg decodes it too


# --- through the real opener and the capture --------------------------------------------------------------
def test_an_mjpeg_file_is_read_as_checked_packets(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", numbered_frames(5), 30.0)
    source = open_source(camera(video))
    try:
        assert isinstance(source, JpegPackets)
        ok, image = source.read()
        assert ok
        assert frame_number(image) == 0
    finally:
        source.release()


def test_frames_decoded_with_errors_never_reach_the_consumer_and_are_counted_corrupt(tmp_path: Path) -> None:
    originals = numbered_frames(60)
    video = write_video(tmp_path / "clip.avi", originals, 60.0)
    broken = corrupt_copy(video, tmp_path / "damaged.avi")
    capture = CameraCapture(camera(broken), SystemClock())
    seen: list[float] = []
    capture.start()
    try:
        last = None
        while capture.stats().state != "ended" or capture.latest(last) is not None:
            frame = capture.wait(last, 0.5)
            if frame is None:
                continue
            last = frame.seq
            number = frame_number(frame.image)
            original = originals[number] if number < len(originals) else np.zeros_like(frame.image)
            seen.append(float(np.abs(frame.image.astype(int) - original.astype(int)).mean()))
    finally:
        capture.stop()
    stats = capture.stats()
    assert seen, "no frame at all"
    assert max(seen) < CLEAN_DIFF, f"a frame decoded with errors was delivered: {max(seen):.1f}"
    assert stats.corrupt >= 15  # the damaged 40 % of 60 frames: every one of them is hit
    assert stats.frames + stats.corrupt + stats.read_failures <= 60


def test_counts_on_a_damaged_video_never_exceed_the_scene(tmp_path: Path) -> None:
    scene = list(walker_frames(WALKERS, 190, seed=1))
    truth = max(count for _, count in scene)
    video = write_video(tmp_path / "walkers.avi", (frame for frame, _ in scene), 5.0)
    broken = corrupt_copy(video, tmp_path / "damaged.avi", every_n_bytes=2048, start=0.2, stop=0.8)
    settings = camera(broken, track_timeout_s=0.6)
    clock = ManualClock()
    audience = Audience(settings, clock)
    source = open_source(settings)
    people, corrupt = [], 0
    try:
        for _ in range(len(scene)):
            ok, image = source.read()
            if not ok or image is None:
                corrupt += 1
                continue
            clock.advance(0.2)
            people.append(audience.update(image, clock.monotonic()).people)  # type: ignore[arg-type]
    finally:
        source.release()
    assert corrupt >= 50  # the damaged stretch, 60 % of the file
    assert max(people) <= truth  # without the check: 4 where the scene has 2 (stale halves of earlier frames)
    assert max(people) >= 1  # the clean parts are still counted


def test_ffmpeg_and_libjpeg_say_nothing_on_stderr(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", numbered_frames(60), 30.0)
    broken = corrupt_copy(video, tmp_path / "damaged.avi")
    script = textwrap.dedent(
        f"""
        from edge.config.camera import CameraSettings
        from edge.sources.camera.source import open_source
        source = open_source(CameraSettings(id="c", zone="z", source={str(broken)!r}))
        reads = [source.read()[1] is None for _ in range(60)]
        print(sum(reads))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout) >= 15
    assert "mjpeg" not in done.stderr
    assert "Corrupt JPEG" not in done.stderr
    assert done.stderr == ""


def test_corrupt_frames_are_logged_by_the_gateway_at_a_bounded_rate(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.camera.capture")
    video = write_video(tmp_path / "clip.avi", numbered_frames(60), 120.0)
    broken = corrupt_copy(video, tmp_path / "damaged.avi")
    # a clock that stands still: the throttle's minute never ends, so one line however long the run takes
    capture = CameraCapture(camera(broken, loop=True), ManualClock())
    with capture:
        until_blocking(lambda: capture.stats().corrupt >= 40, what="two passes of damage")
    lines = [r.getMessage() for r in caplog.records if "decoded with errors" in r.getMessage()]
    assert len(lines) == 1  # one a minute, with the counts
    assert "damaged-test" in lines[0]
    assert str(broken) not in lines[0]


# --- did not open: which kind ------------------------------------------------------------------------------
def test_a_missing_file_and_an_undecodable_one_are_told_apart(tmp_path: Path, caplog) -> None:
    missing = tmp_path / "missing.avi"
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(bytes(range(256)) * 64)
    assert not_opened_reason(camera(missing)) == "the video file is missing"
    assert "could not open" in not_opened_reason(camera(garbage))
    assert not_opened_reason(camera(tmp_path)) == "the video file's path is not a regular file"
    caplog.set_level(logging.WARNING, logger="edge.sources.camera.capture")
    for path in (missing, garbage):
        capture = CameraCapture(camera(path, reopen_max_s=0.05), SystemClock())
        with capture:
            until_blocking(lambda c=capture: c.stats().reopens >= 1, what="a retry")
    messages = [r.getMessage() for r in caplog.records]
    assert any("the video file is missing" in m for m in messages)
    assert any("FFmpeg could not open it" in m for m in messages)
    assert not any(str(tmp_path) in m for m in messages)
