"""QR check-in codes read from generated frames: large, moving, small, rotated, tilted, two at once, garbage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge.clock import ManualClock
from edge.sources.camera import qr
from edge.sources.camera.masks import MaskSet
from edge.sources.camera.qr import QrDeduper, QrReader
from tests.camera.scenes import RENDER_PX, VGA, background, noisy, place, qr_image, qr_modules, token_text

TOKEN = token_text(7)
CODE = qr_image(TOKEN)
CENTRE = (320.0, 240.0)


def px(module_px: float) -> float:
    """The ``place`` scale that draws CODE with modules of ``module_px`` pixels."""
    return module_px / RENDER_PX


@pytest.fixture
def reader() -> QrReader:
    return QrReader()


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return background(VGA, seed=3)


def frame_with(scene: np.ndarray, seed: int = 0, **kwargs: object) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return noisy(place(scene, CODE, **kwargs), 3.0, rng)  # type: ignore[arg-type]


def test_the_token_is_check_in_sized() -> None:
    assert 300 <= len(TOKEN) <= 400
    assert TOKEN.count(".") == 2
    assert qr_modules(TOKEN) >= 73  # version 14+: the hard case for a camera


def test_a_large_code_is_read(reader: QrReader, scene: np.ndarray) -> None:
    # 77 modules x 5 px: the code nearly fills the frame's height.
    assert reader.read(frame_with(scene, center=CENTRE, scale=px(5.0))) == [TOKEN]
    assert reader.read(frame_with(scene, center=CENTRE, scale=px(4.0))) == [TOKEN]
    assert reader.errors == 0


def test_a_moving_code_is_read_in_every_frame(reader: QrReader, scene: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    for step in range(12):
        x = 200.0 + step * 20.0
        y = 220.0 + 3.0 * step
        frame = noisy(place(scene, CODE, (x, y), px(3.0), angle=step * 4.0), 3.0, rng)
        assert reader.read(frame) == [TOKEN], f"step {step}"


@pytest.mark.parametrize("module_px", [2.0, 2.2, 2.5, 3.0])
def test_a_small_code_is_read(reader: QrReader, scene: np.ndarray, module_px: float) -> None:
    # 2 px per module (a 154 px code at 640x480) is the smallest read reliably; the bare library call
    # reads these sizes only from ~3.5 px (bench/camera_qr.py measures both).
    rng = np.random.default_rng(int(module_px * 10))
    for attempt in range(4):
        centre = (rng.uniform(200, 440), rng.uniform(170, 310))
        frame = noisy(place(scene, CODE, centre, px(module_px), angle=rng.uniform(0, 360)), 3.0, rng)
        assert reader.read(frame) == [TOKEN], f"attempt {attempt}"


@pytest.mark.parametrize("angle", [30.0, 90.0, 170.0])
@pytest.mark.parametrize("module_px", [2.5, 4.0])
def test_a_rotated_code_is_read(reader: QrReader, scene: np.ndarray, angle: float, module_px: float) -> None:
    assert reader.read(frame_with(scene, center=CENTRE, scale=px(module_px), angle=angle)) == [TOKEN]


@pytest.mark.parametrize(
    ("yaw", "pitch", "angle"), [(35.0, 0.0, 0.0), (-40.0, 0.0, 10.0), (0.0, 35.0, -15.0), (25.0, 25.0, 45.0)]
)
def test_a_tilted_code_is_read(
    reader: QrReader, scene: np.ndarray, yaw: float, pitch: float, angle: float
) -> None:
    frame = frame_with(scene, center=CENTRE, scale=px(4.0), angle=angle, perspective=(yaw, pitch))
    assert reader.read(frame) == [TOKEN]


def test_two_codes_at_once_are_both_read(reader: QrReader, scene: np.ndarray) -> None:
    other = token_text(8)
    frame = place(scene, CODE, (165.0, 240.0), px(3.2), angle=8.0)
    frame = place(frame, qr_image(other), (478.0, 235.0), px(3.0), angle=-12.0, perspective=(20.0, 0.0))
    frame = noisy(frame, 3.0, np.random.default_rng(2))
    assert sorted(reader.read(frame)) == sorted([TOKEN, other])


def test_a_short_text_and_a_grey_frame(reader: QrReader, scene: np.ndarray) -> None:
    url = "https://example.com/p/42"
    frame = place(scene, qr_image(url), CENTRE, px(6.0), angle=20.0)
    assert reader.read(frame) == [url]
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert reader.read(grey) == [url]
    assert reader.read(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)) == [url]


def test_a_masked_code_is_not_read(reader: QrReader, scene: np.ndarray) -> None:
    frame = frame_with(scene, center=(160.0, 240.0), scale=px(3.0))
    masks = MaskSet([[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]])
    assert reader.read(frame.copy()) == [TOKEN]
    assert reader.read(masks.apply(frame)) == []


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(np.full((480, 640, 3), 200, np.uint8), id="blank"),
        pytest.param(np.zeros((480, 640), np.uint8), id="grey-black"),
        pytest.param(np.zeros((1, 1, 3), np.uint8), id="1x1"),
        pytest.param(np.zeros((0, 0, 3), np.uint8), id="empty"),
        pytest.param(np.zeros((480, 640, 3), np.float32), id="float32"),
        pytest.param(np.zeros((480, 640, 3), np.uint16), id="uint16"),
        pytest.param(np.zeros((480, 640, 2), np.uint8), id="two-channels"),
        pytest.param(np.zeros((2, 48, 64, 3), np.uint8), id="4d"),
        pytest.param(np.zeros(640, np.uint8), id="1d"),
    ],
)
def test_frames_without_a_code_give_nothing(reader: QrReader, frame: np.ndarray) -> None:
    assert reader.read(frame) == []
    assert reader.errors == 0


def test_noise_and_a_plain_scene_give_nothing(reader: QrReader, scene: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    for _ in range(3):
        assert reader.read(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []
    assert reader.read(noisy(scene, 3.0, rng)) == []
    assert reader.read(None) == []  # type: ignore[arg-type]
    assert reader.read("not a frame") == []  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40),
    )
)
def test_any_array_is_survived(reader: QrReader, frame: np.ndarray) -> None:
    assert reader.read(frame) == []


def test_an_opencv_failure_is_counted_not_raised(reader: QrReader, scene: np.ndarray) -> None:
    class Broken:
        def detectMulti(self, image: np.ndarray) -> tuple[bool, np.ndarray]:  # noqa: N802 - cv2's name
            raise cv2.error("simulated")

    reader._fine = Broken()  # type: ignore[assignment]
    # The fast pass reads this code by itself; without it, the OpenCV pass is the one that fails.
    reader._read_fast = lambda gray: []  # type: ignore[method-assign]
    assert reader.read(frame_with(scene, center=CENTRE, scale=px(4.0))) == []
    assert reader.errors == 1


def test_a_fast_pass_failure_is_counted_and_opencv_still_reads(
    reader: QrReader, scene: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("simulated")

    monkeypatch.setattr(qr.zxingcpp, "read_barcodes", broken)
    assert reader.read(frame_with(scene, center=CENTRE, scale=px(4.0))) == [TOKEN]
    assert (reader.errors, reader.fast_reads) == (1, 0)


def test_the_fast_pass_reads_alone_and_opencv_checks_every_nth_frame(
    reader: QrReader, scene: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = frame_with(scene, center=CENTRE, scale=px(4.0))
    full_passes = 0
    slow = reader._read

    def counted(gray: np.ndarray, texts: list[str]) -> None:
        nonlocal full_passes
        full_passes += 1
        slow(gray, texts)

    monkeypatch.setattr(reader, "_read", counted)
    for _ in range(2 * qr.FULL_PASS_EVERY):
        assert reader.read(frame) == [TOKEN]
    assert full_passes == 2
    assert reader.fast_reads == 2 * qr.FULL_PASS_EVERY - 2
    # A frame the fast pass reads nothing in goes to OpenCV at once.
    assert reader.read(scene) == []
    assert full_passes == 3


# ----- one check-in per code in view -------------------------------------------------------------------
def test_consecutive_sightings_are_one_check_in() -> None:
    clock = ManualClock()
    dedupe = QrDeduper(hold_s=10.0, clock=clock)
    fresh = []
    for _ in range(50):  # 10 s of frames at 5 fps, the code held up all along
        fresh.append(dedupe.fresh(TOKEN))
        clock.advance(0.2)
    assert fresh == [True] + [False] * 49


def test_fresh_again_after_the_hold() -> None:
    clock = ManualClock()
    dedupe = QrDeduper(hold_s=10.0, clock=clock)
    assert dedupe.fresh(TOKEN)
    clock.advance(9.9)
    assert not dedupe.fresh(TOKEN)  # and the hold restarts from this sighting
    clock.advance(9.9)
    assert not dedupe.fresh(TOKEN)
    clock.advance(10.1)
    assert dedupe.fresh(TOKEN)
    assert dedupe.fresh("another code")


def test_forget_lets_the_next_sighting_count() -> None:
    clock = ManualClock()
    dedupe = QrDeduper(hold_s=10.0, clock=clock)
    assert dedupe.fresh(TOKEN)
    dedupe.forget(TOKEN)
    assert dedupe.fresh(TOKEN)
    dedupe.forget("never seen")


def test_memory_is_bounded() -> None:
    clock = ManualClock()
    dedupe = QrDeduper(hold_s=10.0, clock=clock, max_entries=100)
    for n in range(1000):
        assert dedupe.fresh(f"code-{n}")
    assert len(dedupe) == 100
    clock.advance(11.0)
    assert dedupe.fresh("late")
    assert len(dedupe) == 1  # everything older than the hold went


def test_a_deduper_needs_a_hold() -> None:
    with pytest.raises(ValueError, match="hold_s"):
        QrDeduper(hold_s=0.0, clock=ManualClock())
