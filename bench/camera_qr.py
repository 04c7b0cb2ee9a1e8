"""Camera QR check-in at 640x480 on one core: ``QrReader.read`` vs the bare library call, same frames.

A shopper holds a check-in token (~375 characters, a version-15 code) up to the camera: 60 frames of it
moving, turning (0-360 degrees), tilting (up to 35 degrees) and at 2-5 px per module, over a store scene
with sensor noise. The baseline is what a plain integration would do: ``cv2.cvtColor`` +
``QRCodeDetectorAruco().detectAndDecodeMulti`` on the full frame. Both read the same frames in the same
process, pinned to CPU 0 with OpenCV on one thread; each reports fps and the share of frames in which it
read the token (a faster reader that reads less would not be a win). Frames without a code (the common
case between check-ins) are timed too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np

from edge.sources.camera.qr import QrReader
from tests.camera.scenes import RENDER_PX, VGA, background, noisy, place, qr_image, token_text

FRAMES = 60
EMPTY_FRAMES = 20


def scenes(seed: int = 0) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """The token, frames with it in view, and frames of the same store without a code."""
    rng = np.random.default_rng(seed)
    token = token_text(seed)
    code = qr_image(token)
    store = background(VGA, seed)
    frames = []
    side = code.shape[0] / RENDER_PX  # modules, quiet zone included
    for index in range(FRAMES):
        module_px = 2.0 + 3.0 * (index % 12) / 11  # 2 .. 5 px per module
        # The shopper shows the whole code: a big one can only be turned so far and stay in the frame.
        for _ in range(100):
            angle = float(rng.uniform(0, 360))
            turn = math.radians(angle)
            half = 0.5 * side * module_px * (abs(math.cos(turn)) + abs(math.sin(turn)))
            if half <= 235:
                break
        else:
            angle, half = 0.0, 0.5 * side * module_px
        centre = (rng.uniform(half, 640 - half), rng.uniform(half, 480 - half))
        tilt = (rng.uniform(-35, 35), rng.uniform(-20, 20)) if index % 3 == 0 else None
        frame = place(store, code, centre, module_px / RENDER_PX, angle, tilt)
        frames.append(noisy(frame, 3.0, rng))
    empty = [noisy(store, 3.0, rng) for _ in range(EMPTY_FRAMES)]
    return token, frames, empty


def baseline_reader() -> Callable[[np.ndarray], list[str]]:
    detector = cv2.QRCodeDetectorAruco()

    def read(frame: np.ndarray) -> list[str]:
        ok, texts, _, _ = detector.detectAndDecodeMulti(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        return [text for text in texts if text] if ok else []

    return read


def passes(reader: QrReader) -> tuple[Callable[[np.ndarray], list[str]], Callable[[np.ndarray], list[str]]]:
    """The reader's two passes on their own (docs/camera.md "QR reading"): zxing-cpp's, and OpenCV's."""

    def fast(frame: np.ndarray) -> list[str]:
        return reader._read_fast(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))

    def opencv(frame: np.ndarray) -> list[str]:
        texts: list[str] = []
        reader._read(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), texts)
        return texts

    return fast, opencv


def read_share(read: Callable[[np.ndarray], list[str]], frames: list[np.ndarray], token: str) -> float:
    """The share of ``frames`` in which ``token`` was read (also warms caches up)."""
    return sum(token in read(frame) for frame in frames) / len(frames)


def fps(read: Callable[[np.ndarray], list[str]], frames: list[np.ndarray]) -> float:
    started = time.perf_counter()
    for frame in frames:
        read(frame)
    return len(frames) / (time.perf_counter() - started)


@contextmanager
def one_core() -> Iterator[None]:
    """CPU 0 only and one OpenCV thread for the block; the caller's settings are put back after."""
    affinity = os.sched_getaffinity(0)
    threads = cv2.getNumThreads()
    os.sched_setaffinity(0, {0})
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)
        os.sched_setaffinity(0, affinity)


def spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


def run(repeats: int = 5) -> dict[str, Any]:
    token, frames, empty = scenes()
    reader = QrReader()
    baseline = baseline_reader()
    fast, opencv = passes(QrReader())
    runs: list[dict[str, float]] = []
    with one_core():
        share = read_share(reader.read, frames, token)
        base_share = read_share(baseline, frames, token)
        shares = {
            "fast_pass": read_share(fast, frames, token),
            "opencv_pass": read_share(opencv, frames, token),
        }
        for _ in range(repeats):
            runs.append(
                {
                    "fps": fps(reader.read, frames),
                    "baseline_fps": fps(baseline, frames),
                    "no_code_fps": fps(reader.read, empty),
                    "baseline_no_code_fps": fps(baseline, empty),
                    "fast_pass_fps": fps(fast, frames),
                    "opencv_pass_fps": fps(opencv, frames),
                    "fast_pass_no_code_fps": fps(fast, empty),
                    "opencv_pass_no_code_fps": fps(opencv, empty),
                }
            )
    rates = [r["fps"] for r in runs]
    base = [r["baseline_fps"] for r in runs]
    return {
        "fps": round(statistics.median(rates), 1),
        "min": round(min(rates), 1),
        "max": round(max(rates), 1),
        "read_share": round(share, 3),
        "baseline_fps": round(statistics.median(base), 1),
        "baseline_fps_spread": spread(base),
        "baseline_read_share": round(base_share, 3),
        "ratio_fps": round(statistics.median(rates) / statistics.median(base), 2),
        "no_code_fps": spread([r["no_code_fps"] for r in runs]),
        "baseline_no_code_fps": spread([r["baseline_no_code_fps"] for r in runs]),
        # Each pass of the reader alone, same frames: what the fast pass saves and what it misses.
        "passes": {
            name: {
                "fps": spread([r[f"{name}_fps"] for r in runs]),
                "no_code_fps": spread([r[f"{name}_no_code_fps"] for r in runs]),
                "read_share": round(shares[name], 3),
            }
            for name in ("fast_pass", "opencv_pass")
        },
        "frames": FRAMES,
        "frame_size": "640x480",
        "token_chars": len(token),
        "module_px": "2-5",
        "runs": repeats,
        "pinned": "CPU 0, cv2.setNumThreads(1)",
        "command": f"python -m bench.camera_qr --repeats {repeats}",
        "targets": {"fps": 30},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="camera QR check-in benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    print(json.dumps(run(parser.parse_args().repeats), indent=2))
