"""Privacy masks: polygons (normalised 0..1 coordinates) whose pixels are blanked before any analysis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import cv2
import numpy as np

# Polygon vertices are drawn with 4 bits of sub-pixel precision: a mask edge lands within 1/16 px of
# where the normalised coordinate puts it, at every frame size.
_SHIFT: Final = 4
# Frame sizes whose pixel polygons are kept: a camera has one or two (capture and counting); a source
# that keeps changing size must not grow the cache without bound.
MAX_CACHED_SHAPES: Final = 8


class MaskSet:
    """Blanks (sets to 0) every pixel inside any of ``polygons``, in place, at any frame size.

    Pixel polygons are computed once per frame size (h, w) and kept; ``apply`` is a ``cv2.fillPoly`` per
    polygon: its cost is the masked area (~10 us for a quarter of a 320x240 frame), nothing without masks.
    """

    def __init__(
        self, polygons: Sequence[Sequence[tuple[float, float]]], shape: tuple[int, int] | None = None
    ) -> None:
        for index, polygon in enumerate(polygons):
            if len(polygon) < 3:
                msg = f"mask {index}: a polygon needs at least 3 points"
                raise ValueError(msg)
        self._polygons = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2) for polygon in polygons]
        self._pixels: dict[tuple[int, int], list[np.ndarray]] = {}
        if shape is not None:
            self.pixels(shape)

    def __bool__(self) -> bool:
        return bool(self._polygons)

    def pixels(self, shape: tuple[int, int]) -> list[np.ndarray]:
        """The polygons in fixed-point pixel coordinates (``_SHIFT`` fractional bits) for a (h, w) frame."""
        h, w = shape
        cached = self._pixels.get((h, w))
        if cached is not None:
            return cached
        scale = np.array([w, h], dtype=np.float64) * (1 << _SHIFT)
        # Pixel centres are at integer coordinates: the normalised edge 0 is the left edge of pixel 0 (-0.5).
        offset = 0.5 * (1 << _SHIFT)
        pixels = [np.round(polygon * scale - offset).astype(np.int32) for polygon in self._polygons]
        if len(self._pixels) >= MAX_CACHED_SHAPES:
            self._pixels.pop(next(iter(self._pixels)))
        self._pixels[(h, w)] = pixels
        return pixels

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Blank the masked pixels of ``frame`` and return it.

        In place when ``frame`` is a writable contiguous array (the usual case); otherwise on a copy,
        which is returned: always use the returned array.
        """
        if frame.ndim not in (2, 3):
            msg = f"not an image: an array of shape {frame.shape}"
            raise ValueError(msg)
        if not self._polygons or frame.size == 0:
            return frame
        if not (frame.flags.c_contiguous and frame.flags.writeable):
            frame = frame.copy()
        h, w = frame.shape[:2]
        # One call per polygon: a single fillPoly of several polygons fills by parity, so where two masks
        # overlap it would leave a hole.
        for polygon in self.pixels((h, w)):
            cv2.fillPoly(frame, [polygon], 0, lineType=cv2.LINE_8, shift=_SHIFT)
        return frame

    def covered(self, shape: tuple[int, int]) -> np.ndarray:
        """A boolean (h, w) image, True where the masks blank (for tests and installer tools)."""
        blanked: np.ndarray = self.apply(np.ones(shape, dtype=np.uint8)) == 0
        return blanked
