"""The camera capture adapter: one OpenCV source read by one worker thread into a latest-frame slot.

Modelled on Frigate's capture (a watchdog that reopens a silent source, frames dropped and counted when the
analysis is slower than the camera), without its snapshots: a frame leaves this module only through
``latest()`` / ``wait()``; it is never written, encoded, logged or published.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import Enum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeGuard

import cv2
import numpy as np
import numpy.typing as npt

from edge.clock import Clock
from edge.config.camera import CameraSettings
from edge.retry import backoff_delay
from edge.sources.camera.source import Opener, VideoSource, open_source

LOG = logging.getLogger(__name__)

# The fps in stats is measured over this window: long enough to smooth a camera's jitter, short enough that
# health shows a drop within one report.
FPS_WINDOW_S: Final = 5.0
# A video file plays at its own rate, within these bounds: a missing or absurd CAP_PROP_FPS must neither
# stall a demo nor turn the reader into a busy loop.
FILE_FPS_MIN: Final = 1.0
FILE_FPS_MAX: Final = 120.0
FILE_FPS_DEFAULT: Final = 25.0  # when the container does not say (raw MJPEG streams saved to disk)
# The fps window keeps at most this many timestamps: FPS_WINDOW_S at FILE_FPS_MAX; faster cameras shorten the
# window, which keeps the estimate right (it divides by the span actually held).
FPS_SAMPLES_MAX: Final = int(FPS_WINDOW_S * FILE_FPS_MAX)
# ffmpeg answers one undecodable packet with one failed read and goes on; this many failures in a row means
# the rest of the file cannot be read (seen with damaged AVI files): the pass is over.
FILE_END_FAILURES: Final = 25
# A live source whose read failed is asked again after this pause: a V4L2 device that was unplugged answers
# at once, so without it the thread would spin until the silence watchdog fires.
READ_RETRY_S: Final = 0.02
# A fault that repeats (a missing file, a refused URL) is logged at most this often, with a count.
LOG_EVERY_S: Final = 60.0
STOP_TIMEOUT_S: Final = 2.0


# How a backoff is waited out: ``pause(stopping, seconds)`` returns True if stopping was set meanwhile. Real
# time by default; a test passes one that moves its manual clock instead, so the retry schedule is checked on
# the injected clock, without sleeping through it.
Pause = Callable[[threading.Event, float], bool]


def _wait(stopping: threading.Event, seconds: float) -> bool:
    return stopping.wait(seconds)


class CameraState(StrEnum):
    OPENING = "opening"  # started, no frame and no failure yet
    STREAMING = "streaming"  # good frames arrive
    RECONNECTING = "reconnecting"  # the source failed to open, went silent or raised: retried with backoff
    ENDED = "ended"  # a video file without loop played to its end
    STOPPED = "stopped"  # not started, or stopped


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One captured frame. ``image`` is BGR uint8 and read-only: every consumer sees the same pixels."""

    image: npt.NDArray[np.uint8]
    seq: int  # 1, 2, 3, ... per camera, across reopens and loops; equals ``stats().frames`` when newest
    mono: float  # capture time on the injected clock's monotonic scale


@dataclass(frozen=True, slots=True)
class CameraStats:
    """A snapshot for gateway/health. Counters only grow."""

    state: CameraState
    fps: float  # good frames per second over the last FPS_WINDOW_S, by the clock
    frames: int  # good frames captured
    skipped: int  # frames replaced in the slot before anyone took them (analysis slower than the camera)
    corrupt: int  # frames decoded with errors (a damaged JPEG) or without a usable BGR image: skipped
    read_failures: int  # reads that failed (an undecodable packet, a device gone), file ends excepted
    errors: int  # exceptions from OpenCV or the opener, each followed by a reopen
    reopens: int  # open attempts after a failure (retries, watchdog); a looping file's rewind is not one
    last_frame_age_s: float | None  # None before the first frame
    width: int | None
    height: int | None

    def as_dict(self) -> dict[str, str | int | float | None]:
        """For gateway/health: the fields by name, times and rates rounded to what a person reads."""
        values = asdict(self)
        values["fps"] = round(self.fps, 1)
        if self.last_frame_age_s is not None:
            values["last_frame_age_s"] = round(self.last_frame_age_s, 2)
        return values


class _Outcome(Enum):
    STOPPED = "stopped"
    ENDED = "ended"  # a file without loop reached its end
    REWIND = "rewind"  # a looping file whose backend cannot seek: open it again at once
    FAILED = "failed"  # did not open, went silent, raised, or a file gave no frame: back off and reopen


def _usable(image: object) -> TypeGuard[npt.NDArray[np.uint8]]:
    return (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
        and image.size > 0
    )


class _Throttle:
    """At most one log line per key every LOG_EVERY_S; says how many were held back meanwhile."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None to stay quiet, else the number of lines held back since the last one."""
        now = self._clock.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < LOG_EVERY_S:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


def not_opened_reason(settings: CameraSettings) -> str:
    """Why a source did not open, as far as can be told without naming it (a URL may carry a password)."""
    if settings.is_file:
        if not Path(settings.source).exists():
            return "the video file is missing"
        if not Path(settings.source).is_file():
            return "the video file's path is not a regular file"
        return "the video file is there but FFmpeg could not open it (not a video, damaged or still being written)"
    if settings.is_stream:
        return "the stream did not open (unreachable, refused, or not a video)"
    return "the device did not open (absent, busy, or no permission)"


class CameraCapture:
    """One camera source, read by one daemon thread; the newest frame waits in a one-frame slot.

    ``start()`` once, ``stop()`` once (or ``with``). ``latest()`` and ``stats()`` never block;
    ``wait()`` does, so call it from an executor thread, never on the event loop.

    A source that does not open, raises, or brings no good frame for ``silence_s`` (on the injected clock)
    is released and opened again after a capped, jittered backoff, forever. A video file plays at its own
    fps; at its end it is rewound when ``loop`` is set, otherwise the capture is ``ended`` and its thread
    finishes (no reopen: the file has been played). A file that opens but yields no frame at all (empty,
    still being written) counts as a failure and is retried with backoff like a missing one.
    """

    def __init__(
        self,
        settings: CameraSettings,
        clock: Clock,
        *,
        opener: Opener | None = None,
        rng: random.Random | None = None,
        pause: Pause = _wait,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._opener: Opener = opener or open_source
        self._rng = rng or random.Random()
        self._pause = pause
        self._stopping = threading.Event()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._throttle = _Throttle(clock)  # the worker's only
        self._attempt = 0  # failures since frames last flowed; the worker's only
        # under _cond:
        self._state = CameraState.STOPPED
        self._finished = False
        self._slot: Frame | None = None
        self._taken = False
        self._times: deque[float] = deque(maxlen=FPS_SAMPLES_MAX)
        self._frames = self._skipped = self._corrupt = self._read_failures = 0
        self._errors = self._reopens = 0
        self._width: int | None = None
        self._height: int | None = None

    # --- the consumer's side --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None or self._stopping.is_set():
            msg = "a camera capture starts once, before stop()"
            raise RuntimeError(msg)
        with self._cond:
            self._state = CameraState.OPENING
        self._thread = threading.Thread(target=self._run, name=f"camera-{self._settings.id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the thread; True once it has ended and released the source.

        False if it is still inside an OpenCV call (a stalled stream open): it releases the source and ends
        by itself when that call returns; being a daemon thread, it never holds the process up.
        """
        self._stopping.set()
        with self._cond:
            self._state = CameraState.STOPPED
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            LOG.warning(
                "camera %s: the capture thread is still in an OpenCV call after stop", self._settings.id
            )
            return False
        return True

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def latest(self, after_seq: int | None = None) -> Frame | None:
        """The newest frame if it is newer than ``after_seq`` (any frame for None); never blocks."""
        with self._cond:
            return self._take(after_seq)

    def wait(self, after_seq: int | None, timeout: float) -> Frame | None:
        """Like ``latest()``, but waits up to ``timeout`` for such a frame; None at once once stopped or ended."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._newer(after_seq) or self._finished or self._stopping.is_set(), timeout
            )
            return self._take(after_seq)

    def stats(self) -> CameraStats:
        now = self._clock.monotonic()
        with self._cond:
            times = self._times
            while times and now - times[0] > FPS_WINDOW_S:
                times.popleft()
            span = times[-1] - times[0] if times else 0.0
            slot = self._slot  # always the newest frame
            return CameraStats(
                state=self._state,
                fps=(len(times) - 1) / span if span > 0 else 0.0,
                frames=self._frames,
                skipped=self._skipped,
                corrupt=self._corrupt,
                read_failures=self._read_failures,
                errors=self._errors,
                reopens=self._reopens,
                last_frame_age_s=None if slot is None else max(0.0, now - slot.mono),
                width=self._width,
                height=self._height,
            )

    def _newer(self, after_seq: int | None) -> bool:
        return self._slot is not None and (after_seq is None or self._slot.seq > after_seq)

    def _take(self, after_seq: int | None) -> Frame | None:
        if not self._newer(after_seq):
            return None
        self._taken = True
        return self._slot

    # --- the worker thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        """Open, stream, reopen with backoff, until stopped or a file without loop ends. Never raises."""
        settings = self._settings
        try:
            first = True
            while not self._stopping.is_set():
                if not first:
                    with self._cond:
                        self._reopens += 1
                first = False
                outcome = self._session()
                if outcome is _Outcome.STOPPED:
                    return
                if outcome is _Outcome.ENDED:
                    self._set_state(CameraState.ENDED)
                    LOG.info("camera %s: the video file ended (%d frames)", settings.id, self._frames)
                    return
                if outcome is _Outcome.REWIND:
                    first = True  # a rewind by reopening is no failure: not counted, no backoff
                    continue
                self._set_state(CameraState.RECONNECTING)
                delay = backoff_delay(self._attempt, settings.reopen_max_s, self._rng)
                self._attempt += 1
                if self._pause(self._stopping, delay):
                    return
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _session(self) -> _Outcome:
        """One source from open to release."""
        try:
            source = self._opener(self._settings)
        except Exception as exc:  # noqa: BLE001 - any opener fault is retried; counted and logged in _fault
            self._fault("opening", exc)
            return _Outcome.FAILED
        try:
            if not source.isOpened():
                held = self._throttle.allow("open")
                if held is not None:
                    LOG.warning(
                        "camera %s: %s (attempt %d, %d such lines held back); retrying",
                        self._settings.id,
                        not_opened_reason(self._settings),
                        self._attempt + 1,
                        held,
                    )
                return _Outcome.FAILED
            return self._stream(source)
        except Exception as exc:  # noqa: BLE001 - the thread must outlive any OpenCV fault: counted, reopened
            self._fault("reading", exc)
            return _Outcome.FAILED
        finally:
            try:
                source.release()
            except Exception as exc:  # noqa: BLE001 - a failed release must not end the thread
                self._fault("releasing", exc)

    def _stream(self, source: VideoSource) -> _Outcome:
        settings = self._settings
        is_file = settings.is_file
        period = self._file_period(source) if is_file else 0.0
        opened_at = self._clock.monotonic()
        last_good: float | None = None
        pass_frames = pass_reads = failures_in_row = 0  # this pass through a file
        # pacing waits are real waits, so they are timed on the real monotonic clock, not the injected one
        due = time.monotonic()
        while True:
            pause = due - time.monotonic()
            stopped = self._stopping.wait(pause) if is_file and pause > 0 else self._stopping.is_set()
            if stopped:
                return _Outcome.STOPPED
            ok, image = source.read()
            pass_reads += 1
            now = self._clock.monotonic()
            if ok and _usable(image):
                pass_frames += 1
                failures_in_row = 0
                last_good = now
                self._publish(image, now)
                due = max(due + period, time.monotonic())  # never a burst to catch up after a stall
                continue
            if is_file and not ok:
                failures_in_row += 1
                at_end = self._file_at_end(source, pass_reads)
                if not at_end:
                    self._count_failure(ok=ok)
                if at_end or failures_in_row >= FILE_END_FAILURES:
                    if pass_frames == 0:
                        return _Outcome.FAILED  # an empty or unreadable file (still being written?)
                    if not settings.loop:
                        return _Outcome.ENDED
                    if not source.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        return _Outcome.REWIND
                    pass_frames = pass_reads = failures_in_row = 0
                    due = time.monotonic()
                    continue
            else:
                self._count_failure(ok=ok)
            quiet_s = now - (opened_at if last_good is None else last_good)
            if quiet_s >= settings.silence_s:
                held = self._throttle.allow("silence")
                if held is not None:
                    LOG.warning(
                        "camera %s: no frame for %.1f s; reopening the source (reopens %d, %d such lines "
                        "held back)",
                        settings.id,
                        quiet_s,
                        self._reopens + 1,
                        held,
                    )
                return _Outcome.FAILED
            if not ok and not is_file and self._stopping.wait(READ_RETRY_S):
                return _Outcome.STOPPED

    @staticmethod
    def _file_period(source: VideoSource) -> float:
        fps = source.get(cv2.CAP_PROP_FPS)
        if not math.isfinite(fps) or fps <= 0:
            fps = FILE_FPS_DEFAULT
        return 1.0 / min(FILE_FPS_MAX, max(FILE_FPS_MIN, fps))

    @staticmethod
    def _file_at_end(source: VideoSource, reads: int) -> bool:
        """Whether a failed read is the file's end rather than a frame that would not decode.

        FFmpeg's POS_FRAMES counts decoded frames only, so a damaged file never gets there; but every read
        consumes at least one packet, so as many reads as the file has frames is the end as well.
        """
        count = source.get(cv2.CAP_PROP_FRAME_COUNT)
        if not math.isfinite(count) or count <= 0:
            return False  # unknown length: FILE_END_FAILURES decides
        return reads >= count or source.get(cv2.CAP_PROP_POS_FRAMES) >= count

    def _publish(self, image: npt.NDArray[np.uint8], now: float) -> None:
        image.flags.writeable = False  # consumers share it: a privacy mask must copy, not paint in place
        height, width = image.shape[:2]
        with self._cond:
            self._frames += 1
            if self._slot is not None and not self._taken:
                self._skipped += 1
            self._slot = Frame(image, self._frames, now)
            self._taken = False
            self._times.append(now)
            self._width, self._height = width, height
            resumed = self._state is not CameraState.STREAMING and not self._stopping.is_set()
            if resumed:
                self._state = CameraState.STREAMING
            self._cond.notify_all()
        if resumed:
            self._attempt = 0
            LOG.info("camera %s: streaming %dx%d", self._settings.id, width, height)

    def _count_failure(self, *, ok: bool) -> None:
        with self._cond:
            if ok:
                self._corrupt += 1
            else:
                self._read_failures += 1
            corrupt, failures = self._corrupt, self._read_failures
        # what FFmpeg would have printed line by line on stderr, said here at most once a minute
        held = self._throttle.allow("corrupt" if ok else "read")
        if held is not None:
            LOG.warning(
                "camera %s: %s (corrupt %d, failed reads %d, %d such lines held back)",
                self._settings.id,
                "a frame decoded with errors was skipped" if ok else "a frame could not be read",
                corrupt,
                failures,
                held,
            )

    def _fault(self, doing: str, exc: Exception) -> None:
        with self._cond:
            self._errors += 1
            errors = self._errors
        held = self._throttle.allow(f"fault:{doing}")
        if held is not None:
            # the type only: an OpenCV message may carry the source, and a stream URL may carry a password
            LOG.warning(
                "camera %s: %s while %s the source (errors %d, %d such lines held back); reopening",
                self._settings.id,
                type(exc).__name__,
                doing,
                errors,
                held,
            )
        LOG.debug("camera %s: fault while %s the source", self._settings.id, doing, exc_info=exc)

    def _set_state(self, state: CameraState) -> None:
        with self._cond:
            if not self._stopping.is_set():
                self._state = state
            self._cond.notify_all()
