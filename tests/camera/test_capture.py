"""The capture adapter with the real OpenCV on videos the tests write; only the camera sensor is simulated."""

from __future__ import annotations

import functools
import http.server
import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.clock import Clock, ManualClock, SystemClock
from edge.config.camera import CameraSettings
from edge.sources.camera.capture import CameraCapture, CameraStats, Frame, Pause
from edge.sources.camera.source import Opener, VideoSource
from tests.camera.videos import corrupt_copy, frame_number, numbered_frames, write_video
from tests.support.wait import until_blocking

# Generous against a loaded CI machine; every wait returns as soon as its condition holds.
WAIT_S = 5.0
PROMPT_S = 1.0  # what "stop() returns promptly" means
CAMERA_ID = "capture-test"


def camera(source: str | Path, **overrides: object) -> CameraSettings:
    values: dict[str, object] = {"id": CAMERA_ID, "zone": "cafe", "source": str(source), "reopen_max_s": 0.1}
    values.update(overrides)
    return CameraSettings.model_validate(values)


def capture_threads() -> list[threading.Thread]:
    """Live capture threads of this module's cameras (exact name: an analysis executor's differs)."""
    return [thread for thread in threading.enumerate() if thread.name == f"camera-{CAMERA_ID}"]


def stopped_promptly(capture: CameraCapture) -> float:
    """Stop ``capture``; return how long it took, after checking its thread is gone."""
    began = time.monotonic()
    assert capture.stop(timeout=PROMPT_S)
    took = time.monotonic() - began
    assert capture.stats().state == "stopped"
    assert not capture_threads()
    return took


@pytest.fixture
def make_capture() -> Iterator[Callable[..., CameraCapture]]:
    """Started captures, stopped at the end of the test whatever happens."""
    made: list[CameraCapture] = []

    def make(
        settings: CameraSettings,
        clock: Clock | None = None,
        opener: Opener | None = None,
        pause: Pause | None = None,
        *,
        start: bool = True,
    ) -> CameraCapture:
        extra = {} if pause is None else {"pause": pause}
        capture = CameraCapture(
            settings, clock or SystemClock(), opener=opener, rng=random.Random(7), **extra
        )
        made.append(capture)
        if start:
            capture.start()
        return capture

    yield make
    for capture in made:
        capture.stop(timeout=PROMPT_S)
    assert not capture_threads(), "a capture thread outlived its test"


@pytest.fixture
def clip(tmp_path: Path) -> Callable[..., Path]:
    """``clip(frames, fps)``: a numbered MJPG/AVI test video of ``frames`` frames at 160x120."""

    def make(frames: int, fps: float, name: str = "clip.avi") -> Path:
        return write_video(tmp_path / name, numbered_frames(frames), fps)

    return make


class Sensor:
    """A simulated camera sensor: frames come from a real ``cv2.VideoCapture`` on a real file, as fast as read;
    the faults of a physical camera are scripted by read number (1-based)."""

    def __init__(
        self,
        path: Path,
        *,
        die_after: int | None = None,
        raise_at: int | None = None,
        bad: dict[int, tuple[bool, object]] | None = None,
    ) -> None:
        self._capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        self._die_after = die_after
        self._raise_at = raise_at
        self._bad = bad or {}
        self.reads = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._capture.isOpened()

    def read(self) -> tuple[bool, object]:
        self.reads += 1
        if self.reads == self._raise_at:
            raise cv2.error("the sensor fell off the bus")
        if self.reads in self._bad:
            return self._bad[self.reads]
        if self._die_after is not None and self.reads > self._die_after:
            return False, None
        return self._capture.read()

    def get(self, prop_id: int, /) -> float:
        return self._capture.get(prop_id)

    def set(self, prop_id: int, value: float, /) -> bool:
        return self._capture.set(prop_id, value)

    def release(self) -> None:
        self.released = True
        self._capture.release()


# --- files: order, rate, pacing, loop, end ------------------------------------------------------------
def test_a_file_plays_in_order_at_its_own_fps_then_ends(make_capture, clip) -> None:
    video = clip(20, fps=20.0)
    began = time.monotonic()
    capture = make_capture(camera(video))
    taken: list[Frame] = []
    while (frame := capture.wait(taken[-1].seq if taken else None, timeout=WAIT_S)) is not None:
        taken.append(frame)
    elapsed = time.monotonic() - began

    stats = capture.stats()
    assert stats.state == "ended"
    assert stats.frames == 20
    assert (stats.width, stats.height) == (160, 120)
    assert stats.corrupt == stats.read_failures == stats.errors == stats.reopens == 0
    assert 17.0 <= stats.fps <= 21.0  # measured over the whole clip: 19 intervals in ~0.95 s
    assert elapsed >= 0.9  # paced: a file never plays faster than real time
    seqs = [frame.seq for frame in taken]
    assert seqs == sorted(set(seqs))
    assert taken[-1].seq == 20
    numbers = [frame_number(frame.image) for frame in taken]
    assert numbers == sorted(set(numbers))
    assert numbers[-1] == 19
    assert len(taken) + stats.skipped == 20
    assert all(frame.image.shape == (120, 160, 3) and frame.image.dtype == np.uint8 for frame in taken)
    assert not taken[0].image.flags.writeable  # shared by every consumer: read-only
    assert all(b.mono > a.mono for a, b in itertools.pairwise(taken))
    until_blocking(lambda: not capture_threads(), what="the thread of an ended file to finish")
    assert capture.wait(taken[-1].seq, timeout=WAIT_S) is None  # ended: no waiting for what never comes


def test_a_slow_consumer_gets_the_newest_frame_and_the_rest_are_counted_as_skipped(
    make_capture, clip
) -> None:
    capture = make_capture(camera(clip(30, fps=30.0), loop=True))
    first = capture.wait(None, timeout=WAIT_S)
    assert first is not None
    # the analysis is busy while the camera captures 9 more frames
    until_blocking(lambda: capture.stats().frames >= first.seq + 9)
    newest = capture.latest(first.seq)
    stats = capture.stats()
    assert newest is not None
    assert newest.seq - first.seq >= 5
    assert newest.seq >= stats.frames - 1  # the newest, not the next in a queue
    assert stats.skipped >= newest.seq - 2  # every frame before it but ``first`` was never taken
    # nothing queued up behind it: the next frame is a fresh one, not newest.seq + 1 from a backlog
    until_blocking(lambda: capture.stats().frames >= newest.seq + 9)
    later = capture.latest(newest.seq)
    assert later is not None
    assert later.seq >= capture.stats().frames - 1
    assert later.seq - newest.seq >= 5


def test_latest_never_returns_the_same_frame_twice_for_its_seq(make_capture, clip) -> None:
    capture = make_capture(camera(clip(10, fps=30.0)))
    frame = capture.wait(None, timeout=WAIT_S)
    assert frame is not None
    again = capture.latest(frame.seq)
    assert again is None or again.seq > frame.seq
    assert capture.latest(None) is not None  # None: whatever is newest


def test_a_looping_file_plays_again_past_its_length(make_capture, clip) -> None:
    capture = make_capture(camera(clip(15, fps=30.0), loop=True))  # 0.5 s
    numbers: list[int] = []
    seq: int | None = None
    while len(numbers) < 40:
        frame = capture.wait(seq, timeout=WAIT_S)
        assert frame is not None
        seq = frame.seq
        numbers.append(frame_number(frame.image))
    stats = capture.stats()
    assert stats.state == "streaming"
    assert stats.frames >= 40
    assert stats.reopens == stats.errors == stats.read_failures == 0
    wraps = sum(1 for a, b in itertools.pairwise(numbers) if b < a)
    assert wraps >= 2


# --- bad data -----------------------------------------------------------------------------------------
def test_a_corrupted_file_still_plays_and_its_bad_frames_are_counted(make_capture, clip, tmp_path) -> None:
    damaged = corrupt_copy(clip(30, fps=30.0), tmp_path / "damaged.avi")
    capture = make_capture(camera(damaged))
    until_blocking(lambda: capture.stats().state == "ended", what="the damaged file to end")
    stats = capture.stats()
    assert stats.frames >= 15  # before, between and after the damage
    assert stats.read_failures + stats.corrupt >= 1
    # each read consumes at least one of the 30 frames: the end of the file is not counted as failures
    assert stats.frames + stats.read_failures + stats.corrupt <= 30
    assert stats.errors == stats.reopens == 0


def test_a_corrupted_file_loops(make_capture, clip, tmp_path) -> None:
    damaged = corrupt_copy(clip(30, fps=30.0), tmp_path / "damaged.avi")
    capture = make_capture(camera(damaged, loop=True))
    until_blocking(lambda: capture.stats().frames > 30, what="frames past the file's length")
    stats = capture.stats()
    assert stats.state == "streaming"
    assert stats.read_failures + stats.corrupt >= 2  # once per pass
    assert stats.errors == stats.reopens == 0


def test_a_sensor_handing_out_unusable_images_is_counted_and_skipped(make_capture, clip) -> None:
    video = clip(30, fps=30.0)
    bad: dict[int, tuple[bool, object]] = {
        2: (True, None),
        4: (True, np.empty((0, 0, 3), np.uint8)),
        6: (True, np.zeros((120, 160, 3), np.float32)),
        8: (True, np.zeros((120, 160), np.uint8)),
        10: (False, None),
    }
    opened: list[Sensor] = []

    def opener(settings: CameraSettings) -> VideoSource:
        opened.append(Sensor(video, bad=bad))
        return opened[-1]

    capture = make_capture(camera("0", silence_s=30.0), opener=opener)
    until_blocking(lambda: capture.stats().frames == 30, what="the file's 30 good frames")
    stats = capture.stats()
    assert stats.corrupt == 4
    assert stats.read_failures >= 1
    assert stats.errors == stats.reopens == 0
    assert stats.state == "streaming"
    assert len(opened) == 1


def test_an_exception_in_the_thread_is_counted_and_the_source_reopened(make_capture, clip) -> None:
    video = clip(30, fps=30.0)
    opened: list[Sensor] = []
    faults = [OSError("open refused"), None, None]

    def opener(settings: CameraSettings) -> VideoSource:
        fault = faults.pop(0) if faults else None
        if isinstance(fault, OSError):
            raise fault
        sensor = Sensor(video, raise_at=4 if len(opened) == 0 else None)
        opened.append(sensor)
        return sensor

    capture = make_capture(camera("0", silence_s=30.0), opener=opener)
    until_blocking(lambda: capture.stats().frames == 33, what="3 frames, the fault, then the whole file")
    stats = capture.stats()
    assert stats.errors == 2  # the opener's and the read's
    assert stats.reopens == 2
    assert stats.state == "streaming"
    assert len(opened) == 2
    assert opened[0].released  # the faulty source was let go before the next one was opened


# --- sources that go away and come back ---------------------------------------------------------------
class LateFile:
    """A file that appears ``after_s`` into the capture's life, on its manual clock: the capture's backoff
    moves that clock instead of waiting, and the pause that gets there writes the file (a camera's recording
    landing in place) after noting the capture's stats just before."""

    def __init__(self, path: Path, clock: ManualClock, after_s: float) -> None:
        self.path = path
        self.clock = clock
        self.appears_at = clock.monotonic() + after_s
        self.pauses: list[float] = []
        self.stats_before: CameraStats | None = None
        self.capture: CameraCapture | None = None

    def pause(self, stopping: threading.Event, seconds: float) -> bool:
        self.pauses.append(seconds)
        self.clock.advance(seconds)
        if self.stats_before is None and self.clock.monotonic() >= self.appears_at:
            assert self.capture is not None
            self.stats_before = self.capture.stats()
            write_video(self.path, numbered_frames(15), fps=30.0)
        return stopping.is_set()


def test_a_missing_file_is_retried_with_backoff_until_it_appears(make_capture, tmp_path) -> None:
    clock = ManualClock()
    world = LateFile(tmp_path / "late.avi", clock, after_s=0.6)
    capture = make_capture(
        camera(world.path, loop=True, reopen_max_s=0.1), clock, pause=world.pause, start=False
    )
    world.capture = capture
    capture.start()
    frame = capture.wait(None, timeout=WAIT_S)
    assert frame is not None
    before = world.stats_before
    assert before is not None
    assert (before.state, before.frames, before.last_frame_age_s) == ("reconnecting", 0, None)
    # backoff of 50..100 ms (half to all of reopen_max_s): 6..12 attempts in 0.6 s, neither a storm nor stuck
    assert all(0.05 <= pause <= 0.1 for pause in world.pauses)
    assert 6 <= len(world.pauses) <= 12
    assert before.reopens == len(world.pauses) - 1  # each pause is followed by a reopen
    # counted from the file's first frame: nothing while it was missing (frames of the first pass only)
    assert frame.seq == frame_number(frame.image) + 1
    # the file loops: no more reopens once frames flow
    until_blocking(lambda: capture.stats().frames > 15, what="a second pass through the file")
    stats = capture.stats()
    assert stats.state == "streaming"
    assert stats.reopens == len(world.pauses)


def test_a_sensor_that_goes_silent_is_reopened_by_the_watchdog_on_the_clock(make_capture, clip) -> None:
    video = clip(30, fps=30.0)
    clock = ManualClock()
    opened: list[Sensor] = []

    def opener(settings: CameraSettings) -> VideoSource:
        opened.append(Sensor(video, die_after=5 if not opened else None))
        return opened[-1]

    def reads_on_the_clock_as_it_is() -> None:
        """Until the capture reads on after a silence check on the clock as the test left it: of the reads
        counted from now, the first may have read the clock before the test moved it, the second read it
        after, and a third means that check let the source be."""
        failures = capture.stats().read_failures
        until_blocking(lambda: capture.stats().read_failures >= failures + 3)

    capture = make_capture(camera("0", silence_s=2.0), clock=clock, opener=opener)
    until_blocking(lambda: capture.stats().read_failures >= 5, what="the sensor to die after its 5 frames")
    reads_on_the_clock_as_it_is()
    stats = capture.stats()
    assert stats.frames == 5
    assert stats.reopens == 0  # silent, but not for silence_s on the capture's clock yet
    assert len(opened) == 1
    clock.advance(1.9)
    reads_on_the_clock_as_it_is()
    assert capture.stats().reopens == 0
    clock.advance(0.2)  # 2.1 s without a frame
    until_blocking(lambda: capture.stats().reopens == 1, what="the watchdog to reopen the source")
    until_blocking(lambda: capture.stats().frames == 35, what="frames from the reopened source")
    stats = capture.stats()
    assert stats.state == "streaming"
    assert len(opened) == 2
    assert opened[0].released
    assert stats.last_frame_age_s == 0.0  # the manual clock has not moved since


class _OneClip(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_network_stream_that_ends_is_reopened_after_silence(make_capture, clip) -> None:
    video = clip(30, fps=30.0)
    handler = functools.partial(_OneClip, directory=str(video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
        capture = make_capture(camera(url, silence_s=0.3))
        until_blocking(lambda: capture.stats().frames >= 30, what="the stream's frames")
        until_blocking(lambda: capture.stats().reopens >= 1, what="a reopen after the stream went quiet")
        until_blocking(lambda: capture.stats().frames >= 60, what="the stream again after the reopen")
        stats = capture.stats()
        assert stats.errors == 0
        assert stats.read_failures >= 1  # the stream's end reads as failures: a stream has no end
        assert stopped_promptly(capture) < PROMPT_S
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_url_and_an_absent_device_keep_being_retried(make_capture) -> None:
    for source in ("rtsp://127.0.0.1:9/refused", "http://127.0.0.1:9/refused.mjpg", "7", "/dev/video-none"):
        capture = make_capture(camera(source, reopen_max_s=0.05))
        until_blocking(lambda c=capture: c.stats().reopens >= 2, what=f"retries of {source}")
        stats = capture.stats()
        assert stats.state == "reconnecting"
        assert stats.errors == 0
        assert stopped_promptly(capture) < PROMPT_S


# --- stop ---------------------------------------------------------------------------------------------
def test_stop_before_start_and_twice() -> None:
    capture = CameraCapture(camera("0"), SystemClock())
    assert capture.stats().state == "stopped"
    assert capture.stop()
    assert capture.stop()
    with pytest.raises(RuntimeError):
        capture.start()


def test_stop_is_prompt_while_opening(make_capture, clip) -> None:
    video = clip(5, fps=30.0)
    capture = make_capture(camera("0", silence_s=30.0), opener=lambda settings: Sensor(video, die_after=0))
    until_blocking(lambda: capture.stats().read_failures >= 3, what="reads that bring nothing")
    assert capture.stats().state == "opening"
    assert stopped_promptly(capture) < PROMPT_S


def test_stop_is_prompt_while_streaming_and_wakes_a_waiting_consumer(make_capture, clip) -> None:
    capture = make_capture(camera(clip(30, fps=2.0), loop=True))  # a frame every 0.5 s
    first = capture.wait(None, timeout=WAIT_S)
    assert first is not None
    woken: list[Frame | None] = []
    consumer = threading.Thread(target=lambda: woken.append(capture.wait(first.seq + 100, timeout=WAIT_S)))
    consumer.start()
    time.sleep(0.05)
    assert stopped_promptly(capture) < 0.3  # inside a 0.5 s pacing wait
    consumer.join(PROMPT_S)
    assert woken == [None]


def test_stop_is_prompt_while_backing_off(make_capture, tmp_path) -> None:
    capture = make_capture(camera(tmp_path / "never.avi", reopen_max_s=30.0))
    # backoff 0.125..0.25 s, then 0.25..0.5 s: the third attempt waits 0.5..1 s
    until_blocking(lambda: capture.stats().reopens >= 2, what="two retries")
    assert capture.stats().state == "reconnecting"
    assert stopped_promptly(capture) < 0.3


def test_stop_after_a_file_ended(make_capture, clip) -> None:
    capture = make_capture(camera(clip(5, fps=30.0)))
    until_blocking(lambda: capture.stats().state == "ended", what="the end of the file")
    assert stopped_promptly(capture) < PROMPT_S


def test_the_context_manager_starts_and_stops(clip) -> None:
    with CameraCapture(camera(clip(10, fps=30.0), loop=True), SystemClock()) as capture:
        assert capture.wait(None, timeout=WAIT_S) is not None
    assert capture.stats().state == "stopped"
    assert not capture_threads()


# --- stats and imports --------------------------------------------------------------------------------
def test_stats_before_any_frame() -> None:
    stats = CameraCapture(camera("0"), ManualClock()).stats()
    assert stats == CameraStats(
        state="stopped",
        fps=0.0,
        frames=0,
        skipped=0,
        corrupt=0,
        read_failures=0,
        errors=0,
        reopens=0,
        last_frame_age_s=None,
        width=None,
        height=None,
    )


def test_reading_camera_settings_does_not_import_opencv() -> None:
    code = "import sys, edge.config.camera; assert 'cv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_stats_as_dict_for_health(make_capture, clip) -> None:
    capture = make_capture(camera(clip(10, fps=30.0)))
    until_blocking(lambda: capture.stats().state == "ended", what="the end of the file")
    health = capture.stats().as_dict()
    assert health["state"] == "ended"
    assert health["frames"] == 10
    assert (health["width"], health["height"]) == (160, 120)
    assert isinstance(health["fps"], float)
    assert 25.0 <= health["fps"] <= 31.0
    assert set(health) == set(CameraStats.__dataclass_fields__)


def test_logs_name_the_camera_never_its_source(make_capture, caplog) -> None:
    caplog.set_level("INFO", logger="edge.sources.camera.capture")
    capture = make_capture(camera("rtsp://shop:hunter2@127.0.0.1:9/stream", reopen_max_s=0.05))
    until_blocking(lambda: capture.stats().reopens >= 2, what="retries of a refused stream")
    capture.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert any(CAMERA_ID in message for message in messages)
    assert not any("hunter2" in message or "127.0.0.1" in message for message in messages)
