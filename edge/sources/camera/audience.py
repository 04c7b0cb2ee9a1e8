"""Anonymous audience: how many people are in front of the screen and for how long, from positions only.

A frame is scaled to ``count_width``, masked, and turned into person detections by a swappable source:
moving blobs (background subtraction, the default) or an ONNX person detector (``detector.py``). A
nearest-centroid tracker turns detections into short-lived numbered tracks with a dwell time. Nothing
describes what anyone looks like: a track is a position, a first and a last sighting; its number is a
counter, not an identity, and is gone when the track ends. Frames are never kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import cv2
import numpy as np

from edge.sources.camera.masks import MaskSet

if TYPE_CHECKING:
    from edge.clock import Clock
    from edge.config.camera import CameraSettings

# --- background subtraction -------------------------------------------------------------------------------
# A person standing still in front of a screen must stay foreground while they watch, yet a new still
# object (a trolley, a moved stand) must fade into the background eventually. MOG2 absorbs a still object
# once the old background's weight decays below its background ratio (0.9): after t = tau * ln(1/0.9) =
# 0.105 tau. A minute covers nearly every real dwell at a screen (typically 2-30 s) and bounds how long a
# left-behind object is counted. The rate is per second, not per frame, so it holds at any count_fps.
STILL_ABSORB_S: Final = 60.0
BACKGROUND_TAU_S: Final = STILL_ABSORB_S / math.log(1 / 0.9)
# The first frames after a start (or a reset) learn the background as a running mean; no one is counted
# until then (people already standing there at start are taken as background until they move).
WARMUP_FRAMES: Final = 10
# MOG2's distance threshold (squared Mahalanobis): 16 = 4 sigma of the learned pixel noise (OpenCV's
# default, which keeps sensor noise out without losing dark clothes on a dark floor).
VAR_THRESHOLD: Final = 16.0
# Global lighting (lights switched, camera auto-exposure) is measured as the frame's brightness gain
# against the background: the median of pixel ratios on a small grey copy (people cover a minority of the
# pixels, so they do not move the median; clipped and near-black pixels carry no ratio and are left out).
# Under 3% it is sensor noise. Up to 10% (exposure drift) the frame is divided by the gain. Beyond, the
# background is learned again at once, as the new light shows it, except where people were last seen:
# there the old background times the gain stands in, so a person who stood through the change stays
# counted (relearning from the frame alone would make them background until they move).
GAIN_TOLERANCE: Final = 0.03
RELIGHT_GAIN: Final = 0.10
GAIN_GRID: Final = (80, 60)  # a median of 4,800 ratios is plenty, and costs ~50 us
GAIN_DARK: Final = 16.0
GAIN_CLIPPED: Final = 250.0
# Boxes of the people last seen grow by this share of their size on each side when the old background is
# put back behind them (they may have moved a little since).
RELIGHT_MARGIN: Final = 0.25
# A local lighting change (half the lights, a sun patch, a screen's glow) makes a blob that is the same
# scene, brighter or darker: inside it the frame still correlates with the background (the texture stays,
# only gain and offset change), where a person hides the texture behind them. A blob whose zero-mean
# correlation with the background is at least LIGHT_NCC is light, not a person: the background takes it
# over at once. The test needs texture to compare: a blob over a background flatter than LIGHT_TEXTURE
# (grey-level standard deviation) stays a blob (a person in front of a plain wall looks like a light
# change there too); on a plain wall, such a change is absorbed like any still object (STILL_ABSORB_S).
LIGHT_NCC: Final = 0.8
LIGHT_TEXTURE: Final = 6.0
# A change that is neither a global gain nor explained blob by blob floods the foreground: when over
# this share of the frame is foreground for FLOOD_UPDATES updates running, the background is learned again
# from the current frame (people standing still then become background until they move). Bounded recovery.
FLOOD_FRACTION: Final = 0.5
FLOOD_UPDATES: Final = 2
# A frame whose (scaled) size differs from the model's is skipped as garbage, unless the new size lasts
# this many updates: then the source changed resolution and the model starts again at the new size.
SHAPE_ADOPT_UPDATES: Final = 3
# Morphology kernels as a share of the counting width (3 px and 9 px at 320): opening removes sensor
# speckle; closing joins a person's head, body and legs split by clothes close to the background colour.
OPEN_SHARE: Final = 3 / 320
CLOSE_SHARE: Final = 9 / 320

# --- tracking -------------------------------------------------------------------------------------------
# A detection continues a track whose centre is within MATCH_BASE + MATCH_SPEED * (time since the track was
# last seen) of it, in frame widths, at most MATCH_MAX: a brisk walk crosses a frame in ~2 s (0.5 width/s),
# doubled for margin; the base covers one update's jitter of a blob's centre.
MATCH_BASE: Final = 0.1
MATCH_SPEED: Final = 1.0
MATCH_MAX: Final = 0.4
# A track counts as a person from its second sighting: a one-update blob is noise, not a shopper.
CONFIRM_HITS: Final = 2


@dataclass(frozen=True, slots=True)
class Detection:
    """One person candidate: box centre and size in normalised frame coordinates (0..1), and a score."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0


class PersonSource(Protocol):
    """Turns a scaled, masked BGR frame into person detections (moving blobs, an ONNX detector, ...)."""

    def detect(self, frame: np.ndarray, now_mono: float) -> list[Detection] | None:
        """Detections in ``frame``; None when the source cannot tell yet (warming up, relearning)."""
        ...

    def reset(self) -> None:
        """Forget what was learned (the frame size changed)."""
        ...


@dataclass(frozen=True, slots=True)
class AudienceState:
    """The audience after one update. Counts and dwell times only: no image, no appearance."""

    people: int  # tracks seen in the latest observed frame
    tracks: tuple[tuple[int, float], ...]  # (track number, dwell s) of those people
    boxes: tuple[tuple[float, float, float, float], ...]  # their (x, y, w, h), normalised, same order
    entered: int  # people counted in since start
    left: int  # people whose track ended since start
    mean_dwell_s: float  # mean dwell of the tracks that ended (0.0 before the first one ends)


class MotionBlobs:
    """Moving blobs: MOG2 background subtraction, lighting compensation, morphology, connected components."""

    def __init__(self, min_blob_fraction: float) -> None:
        self.min_blob_fraction = min_blob_fraction
        self.relit = 0  # lighting changes (global or local) taken into the background at once
        self.relearned = 0  # floods that made the background start again from a frame
        self._mog = self._model()
        self._frames = 0
        self._last_mono: float | None = None
        self._reference: np.ndarray | None = None  # small grey background, for the gain
        self._floods = 0
        self._last: list[Detection] = []

    @staticmethod
    def _model() -> cv2.BackgroundSubtractorMOG2:
        return cv2.createBackgroundSubtractorMOG2(varThreshold=VAR_THRESHOLD, detectShadows=False)

    def reset(self) -> None:
        self._mog = self._model()
        self._frames = 0
        self._last_mono = None
        self._reference = None
        self._floods = 0
        self._last = []

    def _rate(self, now_mono: float) -> float:
        if self._frames < WARMUP_FRAMES:
            return 1.0 / (self._frames + 1)
        dt = 0.0 if self._last_mono is None else max(0.0, now_mono - self._last_mono)
        return 1.0 - math.exp(-dt / BACKGROUND_TAU_S)

    def _gain(self, small: np.ndarray) -> float | None:
        """The brightness of ``small`` over the reference's (median pixel ratio); None if it cannot tell."""
        reference = self._reference
        if reference is None:
            return None
        usable = (reference > GAIN_DARK) & (reference < GAIN_CLIPPED) & (small < GAIN_CLIPPED)
        usable &= small > 0  # masked pixels
        if np.count_nonzero(usable) < small.size // 4:
            return None
        gain = float(np.median(small[usable] / reference[usable]))
        return gain if gain > 0.05 else None

    def _relight(self, frame: np.ndarray, gain: float) -> None:
        """Learn the background again from ``frame``, keeping the old one (times ``gain``) behind people."""
        background = frame.copy()
        old = self._mog.getBackgroundImage()
        h, w = frame.shape[:2]
        if old is not None and old.shape == frame.shape:
            for det in self._last:
                half_w, half_h = det.w * (0.5 + RELIGHT_MARGIN), det.h * (0.5 + RELIGHT_MARGIN)
                x0, x1 = max(0, int((det.x - half_w) * w)), min(w, math.ceil((det.x + half_w) * w))
                y0, y1 = max(0, int((det.y - half_h) * h)), min(h, math.ceil((det.y + half_h) * h))
                background[y0:y1, x0:x1] = cv2.convertScaleAbs(old[y0:y1, x0:x1], alpha=gain)
        self._mog.apply(background, learningRate=1.0)
        self.relit += 1

    def detect(self, frame: np.ndarray, now_mono: float) -> list[Detection] | None:
        rate = self._rate(now_mono)
        self._last_mono = now_mono
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, GAIN_GRID, interpolation=cv2.INTER_AREA).astype(np.float32)
        gain = self._gain(small) if self._frames >= WARMUP_FRAMES else None
        if gain is not None and abs(gain - 1.0) > RELIGHT_GAIN:
            self._relight(frame, gain)
            self._reference = small
        else:
            if gain is not None and abs(gain - 1.0) > GAIN_TOLERANCE:
                frame = cv2.convertScaleAbs(frame, alpha=1.0 / gain)
                small *= 1.0 / gain
            if self._reference is None:
                self._reference = small
            else:
                cv2.accumulateWeighted(small, self._reference, rate)
        foreground = self._mog.apply(frame, learningRate=rate)
        self._frames += 1
        if self._frames <= WARMUP_FRAMES:
            return None
        h, w = foreground.shape[:2]
        if cv2.countNonZero(foreground) > FLOOD_FRACTION * h * w:
            self._floods += 1
            if self._floods >= FLOOD_UPDATES:
                self._mog.apply(frame, learningRate=1.0)  # start again from this very frame
                self._reference = small
                self._floods = 0
                self._last = []
                self.relearned += 1
            return None
        self._floods = 0
        mask = self._clean(foreground)
        blobs = components(mask, self.min_blob_fraction)
        if blobs:
            blobs = self._without_light(frame, gray, mask, blobs)
        self._last = blobs
        return blobs

    def _without_light(
        self, frame: np.ndarray, gray: np.ndarray, mask: np.ndarray, blobs: list[Detection]
    ) -> list[Detection]:
        """``blobs`` less those that are a lighting change; the background takes those regions over."""
        old = self._mog.getBackgroundImage()
        if old is None or old.shape != frame.shape:
            return blobs
        old_gray = cv2.cvtColor(old, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        people: list[Detection] = []
        lit = 0
        for det in blobs:
            x0, x1 = max(0, int((det.x - det.w / 2) * w)), min(w, math.ceil((det.x + det.w / 2) * w))
            y0, y1 = max(0, int((det.y - det.h / 2) * h)), min(h, math.ceil((det.y + det.h / 2) * h))
            inside = mask[y0:y1, x0:x1] > 0
            now = gray[y0:y1, x0:x1][inside].astype(np.float32)
            before = old_gray[y0:y1, x0:x1][inside].astype(np.float32)
            if before.size < 16 or float(before.std()) < LIGHT_TEXTURE or float(now.std()) < 1.0:
                people.append(det)
                continue
            ncc = float(np.mean((now - now.mean()) * (before - before.mean())) / (now.std() * before.std()))
            if ncc < LIGHT_NCC:
                people.append(det)
                continue
            # Light, not a person: the current frame stands in for the background under this blob.
            old[y0:y1, x0:x1][inside] = frame[y0:y1, x0:x1][inside]
            lit += 1
        if lit:
            self._mog.apply(old, learningRate=1.0)
            self.relit += 1
        return people

    @staticmethod
    def _clean(foreground: np.ndarray) -> np.ndarray:
        w = foreground.shape[1]
        open_px = max(3, round(OPEN_SHARE * w) | 1)
        close_px = max(3, round(CLOSE_SHARE * w) | 1)
        mask = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((open_px, open_px), np.uint8))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close_px, close_px))
        closed: np.ndarray = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        return closed


def components(mask: np.ndarray, min_fraction: float, scores: np.ndarray | None = None) -> list[Detection]:
    """Connected components of a binary (0/non-zero uint8) mask with at least ``min_fraction`` of its area.

    With ``scores`` (an image of the mask's size), a component's score is its peak score.
    """
    h, w = mask.shape[:2]
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = min_fraction * h * w
    found = []
    for label in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        score = 1.0
        if scores is not None:
            score = float(scores[y : y + bh, x : x + bw][labels[y : y + bh, x : x + bw] == label].max())
        cx, cy = centroids[label]
        found.append(Detection(float(cx) / w, float(cy) / h, bw / w, bh / h, score))
    return found


@dataclass(slots=True)
class _Track:
    number: int
    x: float
    y: float
    box: tuple[float, float, float, float]
    first_seen: float
    last_seen: float
    hits: int = 1

    @property
    def dwell_s(self) -> float:
        return self.last_seen - self.first_seen


class Tracker:
    """Nearest-centroid tracking: detections -> numbered tracks; a track ends ``timeout_s`` after its last
    sighting. Distances are in frame widths (y scaled by the frame's aspect), so they mean the same at any
    resolution.
    """

    def __init__(self, timeout_s: float, aspect: float = 4 / 3) -> None:
        self.timeout_s = timeout_s
        self.aspect = aspect  # width / height of the frames the detections come from
        self.entered = 0
        self.left = 0
        self.dwell_total_s = 0.0
        self._tracks: list[_Track] = []
        self._next = 1
        self._observed: float | None = None  # when the latest observation was made

    def observe(self, detections: list[Detection], now: float) -> None:
        """Match ``detections`` (seen at ``now``) to the tracks; unmatched ones start tracks."""
        self.expire(now)
        pairs = []
        for ti, track in enumerate(self._tracks):
            reach = min(MATCH_MAX, MATCH_BASE + MATCH_SPEED * max(0.0, now - track.last_seen))
            for di, det in enumerate(detections):
                distance = math.hypot(det.x - track.x, (det.y - track.y) / self.aspect)
                if distance <= reach:
                    pairs.append((distance, ti, di))
        pairs.sort()
        used_tracks: set[int] = set()
        used_detections: set[int] = set()
        for _, ti, di in pairs:
            if ti in used_tracks or di in used_detections:
                continue
            used_tracks.add(ti)
            used_detections.add(di)
            track, det = self._tracks[ti], detections[di]
            track.x, track.y, track.box = det.x, det.y, (det.x, det.y, det.w, det.h)
            track.last_seen = now
            track.hits += 1
            if track.hits == CONFIRM_HITS:
                self.entered += 1
        # A candidate seen once and not again is dropped at once: noise, not a person who left.
        self._tracks = [
            track for ti, track in enumerate(self._tracks) if ti in used_tracks or track.hits >= CONFIRM_HITS
        ]
        for di, det in enumerate(detections):
            if di not in used_detections:
                box = (det.x, det.y, det.w, det.h)
                self._tracks.append(_Track(self._next, det.x, det.y, box, now, now))
                self._next += 1
        self._observed = now

    def expire(self, now: float) -> None:
        """End the tracks not seen for ``timeout_s``."""
        alive = []
        for track in self._tracks:
            if now - track.last_seen <= self.timeout_s:
                alive.append(track)
            elif track.hits >= CONFIRM_HITS:
                self.left += 1
                self.dwell_total_s += track.dwell_s
        self._tracks = alive

    def state(self) -> AudienceState:
        seen = [
            track
            for track in self._tracks
            if track.hits >= CONFIRM_HITS and track.last_seen == self._observed
        ]
        return AudienceState(
            people=len(seen),
            tracks=tuple((track.number, track.dwell_s) for track in seen),
            boxes=tuple(track.box for track in seen),
            entered=self.entered,
            left=self.left,
            mean_dwell_s=self.dwell_total_s / self.left if self.left else 0.0,
        )


class Audience:
    """Frames in, anonymous counts out. One per camera, called from its analysis thread (not thread-safe).

    ``update(frame, now_mono)``: the frame (BGR, BGRA or grey uint8, any size) is scaled to
    ``settings.count_width`` (aspect kept), masked with ``settings.masks``, and given to the person source:
    ``source`` if passed, else the ONNX detector when ``settings.detector_model`` is set, else moving
    blobs. A frame that is not an image, or of a passing odd size, is skipped (``rejected``): tracks then
    age by time as if nothing was seen.
    """

    def __init__(self, settings: CameraSettings, clock: Clock, *, source: PersonSource | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.width = settings.count_width
        self.masks = MaskSet(settings.masks)
        if source is None:
            if settings.detector_model is not None:
                # onnxruntime is loaded only by cameras that use a model.
                from edge.sources.camera.detector import OnnxPersonDetector  # noqa: PLC0415

                source = OnnxPersonDetector(
                    settings.detector_model,
                    settings.detector_threshold,
                    settings.min_blob_fraction,
                    masks=self.masks,
                )
            else:
                source = MotionBlobs(settings.min_blob_fraction)
        self.source = source
        self.tracker = Tracker(settings.track_timeout_s)
        self.rejected = 0
        self.resets = 0
        self._shape: tuple[int, int] | None = None
        self._odd_shape: tuple[int, int] | None = None
        self._odd_count = 0

    def update(self, frame: np.ndarray, now_mono: float | None = None) -> AudienceState:
        """Count the people in ``frame`` seen at ``now_mono`` (the clock's monotonic time by default)."""
        now = self.clock.monotonic() if now_mono is None else now_mono
        image = self._prepare(frame)
        detections = None
        if image is not None and self._accept_shape(image.shape[:2]):
            detections = self.source.detect(image, now)
        if detections is None:
            self.tracker.expire(now)
        else:
            self.tracker.observe(detections, now)
        return self.tracker.state()

    def _prepare(self, frame: object) -> np.ndarray | None:
        """The frame scaled to the counting width and masked, as 3-channel BGR; None if not an image."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.size == 0:
            self.rejected += 1
            return None
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.ndim == 3 and frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        elif frame.ndim != 3 or frame.shape[2] != 3:
            self.rejected += 1
            return None
        h, w = frame.shape[:2]
        height = max(1, round(h * self.width / w))
        if (h, w) != (height, self.width):
            # Area averaging when shrinking: it also averages sensor noise away.
            interpolation = cv2.INTER_AREA if w > self.width else cv2.INTER_LINEAR
            frame = cv2.resize(frame, (self.width, height), interpolation=interpolation)
        elif self.masks:
            frame = frame.copy()  # never blank the caller's pixels behind its back
        return self.masks.apply(frame)

    def _accept_shape(self, shape: tuple[int, int]) -> bool:
        if self._shape is None or shape == self._shape:
            self._shape = shape
            self._odd_shape, self._odd_count = None, 0
            self.tracker.aspect = shape[1] / shape[0]
            return True
        if shape != self._odd_shape:
            self._odd_shape, self._odd_count = shape, 0
        self._odd_count += 1
        if self._odd_count < SHAPE_ADOPT_UPDATES:
            self.rejected += 1
            return False
        self.source.reset()  # the source changed resolution: learn it again; tracks carry on
        self.resets += 1
        self._shape = shape
        self._odd_shape, self._odd_count = None, 0
        self.tracker.aspect = shape[1] / shape[0]
        return True
