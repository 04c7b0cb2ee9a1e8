"""Anonymous people counting at 320x240 on one core: ``Audience.update`` vs a bare MOG2 ``apply``.

300 frames of a store scene where five people walk in, stand and walk out (never more than two at once,
never overlapping), with sensor noise and a privacy mask over a quarter of the frame. ``Audience.update``
does everything the camera flow asks of it: masks, lighting gain, MOG2, morphology, blobs, tracking. The
baseline in the same run is the bare ``BackgroundSubtractorMOG2.apply`` on the same frames (the step no
counting by background subtraction can skip). Also timed: the same scene given at 640x480 (scaling to
count_width included). Pinned to CPU 0 with OpenCV on one thread. ``agreement`` is the share of frames
whose count equals the truth (a count may trail the truth by the 1-2 frames a track takes to confirm).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import cv2
import numpy as np

from bench.camera_qr import one_core, spread
from edge.clock import ManualClock
from edge.config.camera import CameraSettings
from edge.sources.camera.audience import Audience
from tests.camera.scenes import QVGA, VGA, Walker, walker_frames

FRAMES = 300
DT = 0.2  # count_fps = 5
WALKERS = [
    Walker(enter=12, stand_at=0.35, stand=40),
    Walker(enter=40, stand_at=0.15, stand=30, shade=(110, 40, 40)),
    Walker(enter=120, stand_at=0.5, stand=20, from_left=False, shade=(30, 90, 40)),
    Walker(enter=190, stand_at=0.6, stand=25, speed=0.05),
    Walker(enter=215, stand_at=0.2, stand=15, shade=(120, 120, 40)),
]
# The top-right quarter (a till, say) is masked.
MASKS = [[(0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (0.5, 0.5)]]


def settings() -> CameraSettings:
    return CameraSettings(id="bench", source="scene.mp4", zone="cafe", masks=MASKS, track_timeout_s=0.6)


def one_pass(frames: list[np.ndarray], truth: list[int]) -> tuple[float, float]:
    """(updates per second, share of frames whose count is the truth) for a fresh Audience."""
    clock = ManualClock()
    audience = Audience(settings(), clock)
    counts = []
    started = time.perf_counter()
    for frame in frames:
        clock.advance(DT)
        counts.append(audience.update(frame, clock.monotonic()).people)
    elapsed = time.perf_counter() - started
    agreement = sum(count == true for count, true in zip(counts, truth, strict=True)) / len(truth)
    return len(frames) / elapsed, agreement


def bare_mog2(frames: list[np.ndarray]) -> float:
    subtractor = cv2.createBackgroundSubtractorMOG2(detectShadows=False)
    started = time.perf_counter()
    for frame in frames:
        subtractor.apply(frame, learningRate=0.001)
    return len(frames) / (time.perf_counter() - started)


def run(repeats: int = 5) -> dict[str, Any]:
    scene = list(walker_frames(WALKERS, FRAMES, shape=QVGA, seed=1))
    frames, truth = [frame for frame, _ in scene], [count for _, count in scene]
    large = [frame for frame, _ in walker_frames(WALKERS, FRAMES, shape=VGA, seed=1)]
    runs = []
    with one_core():
        for _ in range(repeats):
            rate, agreement = one_pass(frames, truth)
            large_rate, _ = one_pass(large, truth)
            runs.append(
                {"fps": rate, "agreement": agreement, "fps_640": large_rate, "baseline": bare_mog2(frames)}
            )
    rates = [r["fps"] for r in runs]
    base = [r["baseline"] for r in runs]
    return {
        "fps": round(statistics.median(rates), 1),
        "min": round(min(rates), 1),
        "max": round(max(rates), 1),
        "baseline_fps": round(statistics.median(base), 1),
        "baseline_fps_spread": spread(base),
        "ratio_fps": round(statistics.median(rates) / statistics.median(base), 2),
        "fps_from_640x480": spread([r["fps_640"] for r in runs]),
        "agreement": round(runs[0]["agreement"], 3),
        "frames": FRAMES,
        "people": len(WALKERS),
        "frame_size": "320x240",
        "masks": len(MASKS),
        "runs": repeats,
        "pinned": "CPU 0, cv2.setNumThreads(1)",
        "command": f"python -m bench.camera_count --repeats {repeats}",
        "targets": {"fps": 100},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="camera people-count benchmark")
    parser.add_argument("--repeats", type=int, default=5)
    print(json.dumps(run(parser.parse_args().repeats), indent=2))
