"""Opening a camera source: V4L2 for devices, FFmpeg for URLs and files; what the capture needs of one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import cv2

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
    elif settings.is_file:
        if not Path(settings.source).is_file():
            return cv2.VideoCapture()  # not opened; spares OpenCV's warning on every retry
        capture = cv2.VideoCapture(settings.source, cv2.CAP_FFMPEG)
    else:
        capture = cv2.VideoCapture(settings.source, cv2.CAP_V4L2)
    if capture.isOpened():
        # only V4L2 honours it; elsewhere the set is refused, which is fine: the slot drops old frames anyway
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture


__all__ = ["STREAM_OPEN_TIMEOUT_S", "Opener", "VideoSource", "open_source"]
