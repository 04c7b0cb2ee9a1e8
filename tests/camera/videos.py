"""Test videos made on the spot: write frames to a file OpenCV reads back, damage a copy, number frames.

The API, shared by every camera test:

- ``write_video(path, frames, fps)``: Motion-JPEG in an AVI container (``path`` must end in ``.avi``), the
  codec every opencv-python-headless wheel can both write and read (its bundled FFmpeg). The file appears
  whole at once (written aside, then renamed), so a capture polling for it never opens half a file.
- ``corrupt_copy(src, dst, ...)``: a copy with runs of bytes overwritten in the middle of the file, so some
  frames fail to decode (``read()`` answers False for them) while the container stays readable.
- ``numbered_frames(count, ...)`` and ``frame_number(image)``: frames that carry their index in a band of
  black/white 16x16 blocks (8 bits, robust to JPEG), over a gradient with a moving square.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

BIT_BLOCK = 16  # pixels per side of one bit of the frame number
BITS = 8  # frame numbers 0..255, then they wrap


def write_video(path: Path, frames: Iterable[Image], fps: float) -> Path:
    """Write BGR uint8 frames (all the same size) as MJPG/AVI at ``fps``; return ``path``."""
    if path.suffix.lower() != ".avi":
        msg = f"{path}: MJPG test videos go in an .avi container"
        raise ValueError(msg)
    partial = path.with_name(f".{path.stem}.partial.avi")
    writer: cv2.VideoWriter | None = None
    size = (0, 0)  # of the first frame
    count = 0
    try:
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                msg = f"frame {count}: expected BGR uint8, got {frame.dtype} {frame.shape}"
                raise ValueError(msg)
            height, width = frame.shape[:2]
            if writer is None:
                size = (width, height)
                writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
                if not writer.isOpened():
                    msg = "this OpenCV cannot write MJPG/AVI"
                    raise RuntimeError(msg)
            elif (width, height) != size:
                msg = f"frame {count}: {width}x{height}, the video is {size[0]}x{size[1]}"
                raise ValueError(msg)
            writer.write(frame)
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        partial.unlink(missing_ok=True)
        msg = "a video needs at least one frame"
        raise ValueError(msg)
    partial.replace(path)
    return path


def corrupt_copy(
    src: Path,
    dst: Path,
    *,
    every_n_bytes: int = 512,
    run_bytes: int = 16,
    start: float = 0.3,
    stop: float = 0.7,
    fill: int = 0xFF,
) -> Path:
    """Copy ``src`` to ``dst`` with ``run_bytes`` of ``fill`` every ``every_n_bytes`` between the fractions
    ``start`` and ``stop`` of the file; the header (start) and the AVI index (end) stay intact.

    With the defaults and the 160x120 frames of ``numbered_frames`` (~1.5 kB each), about one frame in six
    of the damaged stretch fails to decode, the others decode with artefacts or cleanly.
    """
    if not 0.0 < start < stop < 1.0 or every_n_bytes <= run_bytes or run_bytes <= 0:
        msg = "need 0 < start < stop < 1 and 0 < run_bytes < every_n_bytes"
        raise ValueError(msg)
    data = bytearray(src.read_bytes())
    for offset in range(int(len(data) * start), int(len(data) * stop), every_n_bytes):
        data[offset : offset + run_bytes] = bytes([fill]) * run_bytes
    dst.write_bytes(bytes(data))
    return dst


def numbered_frames(count: int, width: int = 160, height: int = 120) -> list[Image]:
    """``count`` frames whose index (mod 256) ``frame_number`` reads back; at least 128x48 pixels."""
    if width < BITS * BIT_BLOCK or height < 3 * BIT_BLOCK:
        msg = f"numbered frames need at least {BITS * BIT_BLOCK}x{3 * BIT_BLOCK} pixels"
        raise ValueError(msg)
    ys, xs = np.mgrid[0:height, 0:width]
    frames = []
    side = height // 3
    for index in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = xs * 255 // width
        frame[..., 1] = ys * 255 // height
        frame[..., 2] = (index * 7) % 256
        x = (index * 5) % (width - side)
        frame[side : 2 * side, x : x + side] = 255
        for bit in range(BITS):
            frame[:BIT_BLOCK, bit * BIT_BLOCK : (bit + 1) * BIT_BLOCK] = 255 if (index >> bit) & 1 else 0
        frames.append(frame)
    return frames


def frame_number(image: Image) -> int:
    """The index ``numbered_frames`` drew into ``image`` (mod 256), read from the centres of its bit blocks."""
    middle = BIT_BLOCK // 2
    number = 0
    for bit in range(BITS):
        if image[middle, bit * BIT_BLOCK + middle].mean() > 127:
            number |= 1 << bit
    return number
