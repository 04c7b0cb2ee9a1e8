"""Cameras into the flow: a QR code shown to the camera is a check-in; moving people are anonymous counts.

Frames stay in this process, in memory, for the few milliseconds their analysis takes: nothing here writes,
publishes or logs a frame, a crop or an image. What leaves is a decoded token (verified exactly like an app
check-in, with ``source: "qr"``) and counts. One worker thread per camera does the analysis; the event loop
only hands results to the flow.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from edge.clock import Clock
from edge.config.camera import CameraSettings
from edge.flow.checkin import ACCEPTED, Accepted, Refused
from edge.flow.zones import ZoneCounts
from edge.sources.camera.audience import Audience, AudienceState
from edge.sources.camera.capture import CameraCapture, CameraStats, Frame
from edge.sources.camera.masks import MaskSet
from edge.sources.camera.qr import QrDeduper, QrReader
from edge.transport.mqtt import RetryLater

log = logging.getLogger(__name__)

# A compact JWS: three base64url parts. Anything else decoded from a code is not a check-in.
_JWT: Final = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
MAX_TOKEN_CHARS: Final = 4096
# How long the worker waits for a newer frame before handing control back (so a stop is prompt).
FRAME_WAIT_S: Final = 0.5


@dataclass(slots=True, frozen=True)
class CameraFlowStats:
    """One camera for gateway/health: its capture, the anonymous audience, and the analysis events by kind
    (QR check-ins, refusals, repeats, ...: only those that happened)."""

    id: str
    zone: str
    capture: CameraStats
    people: int | None  # None before the first count
    entered: int
    left: int
    mean_dwell_s: float | None
    counters: Mapping[str, int]
    silence_s: float = 5.0  # the camera's silence_s: no frame for this long and it is in health's alerts

    @property
    def silent(self) -> bool:
        """Down: reconnecting, or no frame for ``silence_s``; a file that ended or a stopped capture is not."""
        capture = self.capture
        if capture.state in ("ended", "stopped"):
            return False
        if capture.state == "reconnecting":
            return True
        age = capture.last_frame_age_s
        return age is not None and age >= self.silence_s


@dataclass(slots=True, frozen=True)
class Analysis:
    """What one frame gave: decoded texts (if QR ran) and the audience (if counting ran)."""

    seq: int
    mono: float
    texts: tuple[str, ...] | None
    audience: AudienceState | None


# (token, zone, source, seen at (monotonic), origin) -> the check-in's outcome: CheckinFlow.checkin.
CheckinFn = Callable[[str, str, str, float, str], Awaitable[Accepted | Refused]]


class CameraFlow:
    """One camera: capture thread -> analysis thread -> check-ins and counts on the event loop."""

    def __init__(
        self,
        settings: CameraSettings,
        clock: Clock,
        capture: CameraCapture,
        *,
        checkin: CheckinFn,
        counts: ZoneCounts,
    ) -> None:
        self._checkin = checkin
        self._counts = counts
        self.settings = settings
        self.clock = clock
        self.capture = capture
        self._masks = MaskSet(settings.masks)
        self._qr = QrReader()
        self._dedupe = QrDeduper(settings.qr_hold_s, clock)
        self._audience = Audience(settings, clock)
        self._qr_every = 1.0 / settings.qr_fps
        self._count_every = 1.0 / settings.count_fps
        self._last_qr = self._last_count = -1e9
        self._last_seq: int | None = None
        self._state: AudienceState | None = None
        self.counters: Counter[str] = Counter()

    # ----- what health reads -----
    def stats(self) -> CameraFlowStats:
        state = self._state
        return CameraFlowStats(
            id=self.settings.id,
            zone=self.settings.zone,
            capture=self.capture.stats(),
            people=state.people if state is not None else None,
            entered=state.entered if state is not None else 0,
            left=state.left if state is not None else 0,
            mean_dwell_s=round(state.mean_dwell_s, 1) if state is not None else None,
            counters=dict(self.counters),
            silence_s=self.settings.silence_s,
        )

    # ----- the loop -----
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"camera-{self.settings.id}")
        self.capture.start()
        try:
            while True:
                analysis = await loop.run_in_executor(executor, self._analyse_next)
                if analysis is not None:
                    await self._deliver(analysis)
        finally:
            self.capture.stop()
            executor.shutdown(wait=True, cancel_futures=True)

    def _analyse_next(self) -> Analysis | None:
        """Worker thread: wait for a newer frame, mask it, run whatever analysis is due."""
        frame = self.capture.wait(self._last_seq, FRAME_WAIT_S)
        if frame is None:
            return None
        self._last_seq = frame.seq
        now = self.clock.monotonic()
        run_qr = now - self._last_qr >= self._qr_every
        run_count = now - self._last_count >= self._count_every
        if not (run_qr or run_count):
            return None
        try:
            return self._analyse(frame, now, run_qr=run_qr, run_count=run_count)
        except Exception:
            self.counters["analysis_errors"] += 1
            if self.counters["analysis_errors"] == 1:
                log.exception(
                    "camera %s: analysis failed (further failures are only counted)", self.settings.id
                )
            return None

    def _analyse(self, frame: Frame, now: float, *, run_qr: bool, run_count: bool) -> Analysis:
        # Masks first: a masked pixel is never looked at, by any analysis.
        image = self._masks.apply(frame.image)
        texts = None
        if run_qr:
            self._last_qr = now
            texts = tuple(self._qr.read(image))
        audience = None
        if run_count:
            self._last_count = now
            audience = self._audience.update(image, now)
        self.counters["frames_analysed"] += 1
        return Analysis(frame.seq, frame.mono, texts, audience)

    async def _deliver(self, analysis: Analysis) -> None:
        if analysis.audience is not None:
            self._state = state = analysis.audience
            self._counts.camera(self.settings.id, self.settings.zone, state.people, _mean_dwell(state))
        for text in analysis.texts or ():
            await self._qr_text(text, analysis.mono)

    async def _qr_text(self, text: str, seen_mono: float) -> None:
        self.counters["qr_decoded"] += 1  # per frame: every decode of every code
        # From here on every counter counts showings: the same text in consecutive frames is one showing.
        if not self._dedupe.fresh(text):
            self.counters["qr_repeats"] += 1
            return
        if not looks_like_token(text):
            # Some other code in view (a product, a poster): counted, never logged (it could be anything).
            self.counters["qr_not_a_token"] += 1
            return
        origin = f"camera/{self.settings.id}"
        try:
            outcome = await self._checkin(text, self.settings.zone, "qr", seen_mono, origin)
        except RetryLater:
            # The ledger could not make it durable: let the next sighting of the code try again.
            self._dedupe.forget(text)
            self.counters["qr_retry"] += 1
            return
        self.counters["qr_checkins" if outcome is ACCEPTED else "qr_refused"] += 1


def looks_like_token(text: str) -> bool:
    """A compact JWS of a sane size: worth verifying. Anything else decoded from a code is not a check-in."""
    return len(text) <= MAX_TOKEN_CHARS and _JWT.match(text) is not None


def _mean_dwell(state: AudienceState) -> float | None:
    if not state.tracks:
        return None
    return sum(dwell for _, dwell in state.tracks) / len(state.tracks)
