"""QR codes in a frame -> their texts (``QrReader``), and one check-in per code in view (``QrDeduper``).

Pure analysis: a frame in, texts out; no threads, no I/O. The frame is never kept, copied out or logged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

import cv2
import numpy as np
import zxingcpp

from edge.clock import Clock

# A version-1 code is 21 modules wide: a frame with a smaller side cannot hold one.
MIN_SIDE_PX: Final = 21
# The fast pass: zxing-cpp (the C++ port of ZXing, Apache-2.0, wheels for x86-64 and arm64) reads a
# check-in token in a 640x480 frame in ~1 ms where the OpenCV path below takes ~16 ms, and reads 58 of the
# 60 frames of bench/camera_qr.py where that path reads 60 (docs/camera.md, "QR reading"). So it goes
# first; the OpenCV path runs when it reads nothing (every frame without a code, and the hard codes: small
# modules, steep tilts), and on every FULL_PASS_EVERY-th frame whatever it read, so that a second code in
# view that only OpenCV reads is read within that many frames even while an easy one stays in front.
FULL_PASS_EVERY: Final = 8
_QR: Final = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
# Where the time goes: the decoder's cost grows with the area of the image it is given (~50 ns/px here),
# detection costs ~6 ms at 640x480 with a code in view and ~2 ms without. So: detect once at full
# resolution, and decode each code on a crop around it, never on the whole frame.
#
# Detection thresholds at two window sizes instead of the library's three (3, 13, 23): 3 px keeps the
# finder patterns of small codes turned ~45 degrees, 13 px those of 2-5 px modules; bigger codes are
# caught by the coarse pass below. Measured on 90 frames of 1.8-3.2 px codes at random angles: windows
# (3, 13) find 89 (as many as the three), in 7.4 ms instead of 9.5; 13 alone finds 83 in 5.1 ms.
FINE_WINDOWS_PX: Final = (3, 13)
# Finder patterns of one code may differ in rotation and size: a code tilted 30-40 degrees away from the
# camera and turned in the image plane shows its three finders turned ~20-30 degrees apart and up to ~2x
# apart in size. The library's defaults (15 degrees, 1.75x) lose those; these find them, with no false
# codes on store scenes or noise.
MAX_FINDER_ROTATION_RAD: Final = 0.6
MAX_MODULE_SIZE_MISMATCH: Final = 2.5
# A code is cut out with this margin (the decoder wants some quiet zone around the corners).
CROP_MARGIN_PX: Final = 8
# A crop that does not decode as it is gets scaled up (bicubic) to this side, at most x4: the decoder
# samples module centres and wants ~6 px per module; a check-in token (~375-400 characters, versions
# 15-16, 77-81 modules + quiet zone) then reads from 2 px per module in the frame (59 of 60 frames at
# random angles; 1.8 px: 52 of 60). Measured on tilted and rotated codes of 1.3-4 px per module: a 480 px
# side reads 53 of 61 detected codes, 640 px 59 of 61, for ~2.5 ms more per hard frame.
CROP_TARGET_PX: Final = 640
CROP_MAX_SCALE: Final = 4.0
# Nothing read at full resolution: the frame is searched again at half resolution with the library's
# defaults, where a code with big modules (held close to the camera, > ~5 px per module) is found and read
# cheaply. It costs ~1.5 ms at 640x480 without a code; below this side the half frame is too small.
COARSE_MIN_SIDE_PX: Final = 240


def _gray(frame: object) -> np.ndarray | None:
    """The grey image of a BGR / BGRA / grey uint8 frame; None for anything that is not one."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        return None
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or min(frame.shape[:2]) < MIN_SIDE_PX:
        return None
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    return None


def _detector() -> cv2.QRCodeDetectorAruco:
    params = cv2.QRCodeDetectorAruco.Params()
    params.maxRotation = MAX_FINDER_ROTATION_RAD
    params.maxModuleSizeMismatch = MAX_MODULE_SIZE_MISMATCH
    return cv2.QRCodeDetectorAruco(params)


def _texts(ok: bool, decoded: Sequence[bytes] | None) -> list[str]:
    if not ok or decoded is None:
        return []
    texts = []
    for raw in decoded:
        if raw:
            # A code that is not UTF-8 is still reported (the caller counts it as "not a token").
            texts.append(bytes(raw).decode("utf-8", errors="replace"))
    return texts


class QrReader:
    """Every QR code in a frame, several at once, rotated and perspective-warped ones included.

    zxing-cpp first (``FULL_PASS_EVERY``); then, when it read nothing or every that many frames, OpenCV's:
    detection at full resolution, then each code is read on a crop around it: as it is, else scaled up
    (small codes: from 2 px per module at 640x480), else found again on the scaled-up crop. When
    nothing is read, a second search at half resolution catches codes too big for the first one.

    ``read`` never raises: a frame that is not an image gives ``[]`` (counted in ``rejected``), an OpenCV
    failure gives what was read so far (counted in ``errors``). Measured (bench/camera_qr.py, one x86
    core): ~290 fps with a token in view at 2-5 px per module, all of them read (~57 fps with the OpenCV
    path alone), where the bare library call reads two thirds at ~63 fps; ~210 fps on frames without a
    code.
    """

    def __init__(self) -> None:
        self._coarse = _detector()
        self._fine = _detector()
        params = self._fine.getArucoParameters()
        params.adaptiveThreshWinSizeMin = FINE_WINDOWS_PX[0]
        params.adaptiveThreshWinSizeMax = FINE_WINDOWS_PX[-1]
        params.adaptiveThreshWinSizeStep = FINE_WINDOWS_PX[-1] - FINE_WINDOWS_PX[0]
        self._fine.setArucoParameters(params)
        self._crop = _detector()
        self._frames = 0
        self.errors = 0
        self.rejected = 0
        self.fast_reads = 0  # frames whose codes the fast pass alone read

    def read(self, frame: np.ndarray) -> list[str]:
        """The non-empty texts of the codes in ``frame`` (BGR, BGRA or grey uint8), in no set order."""
        texts: list[str] = []
        try:
            gray = _gray(frame)
            if gray is None:
                self.rejected += 1
                return []
            self._frames += 1
            texts.extend(self._read_fast(gray))
            if texts and self._frames % FULL_PASS_EVERY:
                self.fast_reads += 1
                return list(dict.fromkeys(texts))
            self._read(gray, texts)
        except cv2.error:
            self.errors += 1
        return list(dict.fromkeys(texts))

    def _read_fast(self, gray: np.ndarray) -> list[str]:
        """zxing-cpp's reading of the whole frame; [] (counted in ``errors``) when it fails."""
        try:
            found = zxingcpp.read_barcodes(np.ascontiguousarray(gray), formats=_QR)
        except (RuntimeError, ValueError, TypeError):
            self.errors += 1
            return []
        return [code.bytes.decode("utf-8", errors="replace") for code in found if code.valid and code.bytes]

    def _read(self, gray: np.ndarray, texts: list[str]) -> None:
        found, quads = self._fine.detectMulti(gray)
        if found and quads is not None:
            for quad in np.asarray(quads, np.float32).reshape(-1, 4, 2):
                try:
                    texts.extend(self._read_at(gray, quad))
                except cv2.error:
                    self.errors += 1  # this code is lost for this frame, the others are still read
        if not texts and min(gray.shape) >= COARSE_MIN_SIDE_PX:
            half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
            ok, decoded, _, _ = self._coarse.detectAndDecodeBytesMulti(half)
            texts.extend(_texts(ok, decoded))

    def _read_at(self, gray: np.ndarray, quad: np.ndarray) -> list[str]:
        """Read the code at ``quad``: on a crop around it, then on that crop scaled up."""
        h, w = gray.shape
        x0, y0 = np.floor(quad.min(axis=0)).astype(int) - CROP_MARGIN_PX
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + CROP_MARGIN_PX
        x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)
        if x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
            return []
        crop = gray[y0:y1, x0:x1]
        local = (quad - np.array([x0, y0], np.float32))[None]
        ok, decoded, _ = self._crop.decodeBytesMulti(crop, local)
        texts = _texts(ok, decoded)
        if texts:
            return texts
        scale = min(CROP_MAX_SCALE, CROP_TARGET_PX / max(x1 - x0, y1 - y0))
        if scale <= 1.0:
            return []
        big = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        # Pixel centres: x_big = (x + 0.5) * scale - 0.5.
        ok, decoded, _ = self._crop.decodeBytesMulti(big, (local + 0.5) * scale - 0.5)
        texts = _texts(ok, decoded)
        if texts:
            return texts
        # Last try: corners found again on the bigger picture (a small code's corners can be a pixel off,
        # which is a module). Measured on 1.4-3 px modules: 45 of 57 read without this step, 55 with it.
        found, quads = self._fine.detectMulti(big)
        if not found or quads is None:
            return []
        ok, decoded, _ = self._crop.decodeBytesMulti(big, quads)
        return _texts(ok, decoded)


class QrDeduper:
    """One check-in per code in view: a text seen again within ``hold_s`` of its last sighting is not fresh.

    Each sighting extends the hold (a code held up for a minute is one check-in, not one per ``hold_s``).
    Memory is bounded: entries older than ``hold_s`` are dropped as new ones arrive, and at most
    ``max_entries`` are kept (the oldest sighting goes first).
    """

    def __init__(self, hold_s: float, clock: Clock, max_entries: int = 1024) -> None:
        if hold_s <= 0 or max_entries < 1:
            msg = "hold_s must be > 0 and max_entries >= 1"
            raise ValueError(msg)
        self.hold_s = hold_s
        self.clock = clock
        self.max_entries = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # text -> last sighting, oldest first

    def fresh(self, text: str) -> bool:
        """True when ``text`` was not seen within ``hold_s``; records the sighting either way."""
        now = self.clock.monotonic()
        self._evict(now)
        last = self._seen.pop(text, None)
        self._seen[text] = now
        if len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return last is None or now - last > self.hold_s

    def forget(self, text: str) -> None:
        """Let the next sighting of ``text`` count as fresh (its check-in could not be recorded)."""
        self._seen.pop(text, None)

    def __len__(self) -> int:
        return len(self._seen)

    def _evict(self, now: float) -> None:
        while self._seen:
            text, last = next(iter(self._seen.items()))
            if now - last <= self.hold_s:
                return
            del self._seen[text]
