"""Opening a camera source: V4L2 for devices, FFmpeg for URLs and files; what the capture needs of one.

Motion-JPEG through FFmpeg (files, ``http://`` cameras) is read as packets and each packet's JPEG structure is
checked before it is decoded: FFmpeg decodes a damaged JPEG "with errors" into a frame whose lower part is a
stale earlier frame, and OpenCV gives no sign of it. A packet that fails the check is handed to the capture as
an unusable image, so it is counted as ``corrupt`` and never analysed (docs/camera.md).

FFmpeg's own log lines (``[mjpeg @ 0x…] overread 8``, hundreds a minute from a flaky stream) go straight to
the process's stderr, past any Python logger; unless the operator sets ``OPENCV_FFMPEG_LOGLEVEL``, they are
switched off here, and the capture reports what they were about as counters and throttled log lines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

# before the first capture initialises OpenCV's FFmpeg backend; -8 is AV_LOG_QUIET
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # after the environment it reads

from edge.config.camera import CameraSettings

# ffmpeg's own defaults are ~30 s for an RTSP open and unbounded for a read; the worker must get back to the
# watchdog and to stop() sooner than that. The read timeout is the camera's silence_s.
STREAM_OPEN_TIMEOUT_S: Final = 10.0


class VideoSource(Protocol):
    """What the capture needs of a ``cv2.VideoCapture``; an opener may wrap one (tests simulate a sensor)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, object]: ...

    def get(self, prop_id: int, /) -> float: ...

    def set(self, prop_id: int, value: float, /) -> bool: ...

    def release(self) -> None: ...


Opener = Callable[[CameraSettings], VideoSource]

_MJPG: Final = int.from_bytes(b"MJPG", "little")
_SOS: Final = 0xDA


def jpeg_damaged(packet: npt.NDArray[np.uint8]) -> bool:
    """Whether one JPEG's bytes are structurally broken: not SOI ... EOI, a header segment that does not chain
    to the scan, or a byte 0xFF inside the entropy-coded data that is neither stuffed (FF 00), a restart marker
    (FF D0-D7) nor fill (FF FF). Vectorised: ~25 us for a 160x120 frame, ~35 us for a 100 kB 640x480 one (its decode: ~2.6 ms).
    """
    data = packet.reshape(-1)
    size = data.size
    if size < 8 or data[0] != 0xFF or data[1] != 0xD8 or data[-2] != 0xFF or data[-1] != 0xD9:
        return True
    at = 2
    while True:  # the header segments, each FF <marker> <length>, up to the start of scan
        if at + 4 > size or data[at] != 0xFF:
            return True
        marker = int(data[at + 1])
        if marker == 0xFF:  # fill before a marker
            at += 1
            continue
        length = (int(data[at + 2]) << 8) | int(data[at + 3])
        if length < 2:
            return True
        at += 2 + length
        if marker == _SOS:
            break
    entropy = data[at:-2]
    if entropy.size == 0:
        return True
    after = entropy[1:][entropy[:-1] == 0xFF]
    allowed = (after == 0) | ((after >= 0xD0) & (after <= 0xD7)) | (after == 0xFF)
    return not bool(allowed.all()) or entropy[-1] == 0xFF


class JpegPackets:
    """A Motion-JPEG capture read as packets: each checked by ``jpeg_damaged``, then decoded by OpenCV.

    ``read()`` answers ``(True, None)`` for a damaged or undecodable packet: a read that worked without a
    usable image, which the capture counts as ``corrupt`` and skips.
    """

    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return bool(self._capture.isOpened())

    def read(self) -> tuple[bool, object]:
        ok, packet = self._capture.read()
        if not ok or packet is None:
            return False, None
        raw = np.asarray(packet, dtype=np.uint8)
        if jpeg_damaged(raw):
            return True, None
        return True, cv2.imdecode(raw, cv2.IMREAD_COLOR)

    def get(self, prop_id: int, /) -> float:
        return float(self._capture.get(prop_id))

    def set(self, prop_id: int, value: float, /) -> bool:
        return bool(self._capture.set(prop_id, value))

    def release(self) -> None:
        self._capture.release()


def _packets_if_mjpeg(capture: cv2.VideoCapture) -> VideoSource:
    """An FFmpeg capture of Motion-JPEG, switched to packets and checked; any other codec as it is."""
    if int(capture.get(cv2.CAP_PROP_FOURCC)) == _MJPG and capture.set(cv2.CAP_PROP_FORMAT, -1):
        return JpegPackets(capture)
    return capture


def open_source(settings: CameraSettings) -> VideoSource:
    """The default opener: V4L2 for devices, FFmpeg for URLs and files, a one-frame buffer where supported."""
    index = settings.device_index
    if index is not None:
        capture = cv2.VideoCapture(index, cv2.CAP_V4L2)
    elif settings.is_stream:
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(STREAM_OPEN_TIMEOUT_S * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            max(1, int(settings.silence_s * 1000)),
        ]
        capture = cv2.VideoCapture(settings.source, cv2.CAP_FFMPEG, timeouts)
        return _packets_if_mjpeg(capture) if capture.isOpened() else capture
    elif settings.is_file:
        if not Path(settings.source).is_file():
            return cv2.VideoCapture()  # not opened; spares OpenCV's warning on every retry
        capture = cv2.VideoCapture(settings.source, cv2.CAP_FFMPEG)
        return _packets_if_mjpeg(capture) if capture.isOpened() else capture
    else:
        capture = cv2.VideoCapture(settings.source, cv2.CAP_V4L2)
    if capture.isOpened():
        # only V4L2 honours it; elsewhere the set is refused, which is fine: the slot drops old frames anyway
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture


__all__ = ["STREAM_OPEN_TIMEOUT_S", "JpegPackets", "Opener", "VideoSource", "jpeg_damaged", "open_source"]
