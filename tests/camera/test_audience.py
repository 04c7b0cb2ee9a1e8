"""Anonymous audience counts on generated scenes: walkers, dwell, masks, lighting, garbage frames."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from edge.clock import ManualClock
from edge.config.camera import CameraSettings
from edge.sources.camera.audience import (
    WARMUP_FRAMES,
    Audience,
    AudienceState,
    Detection,
    MotionBlobs,
)
from tests.camera.scenes import QVGA, VGA, Walker, background, noisy, walker_frames

DT = 0.2  # count_fps = 5, the default
LAG = 3  # frames a count may trail the truth (a track is confirmed on its second sighting)


def camera(**overrides: object) -> CameraSettings:
    values: dict[str, object] = {"id": "cam-1", "source": "scene.mp4", "zone": "cafe"}
    values.update(overrides)
    return CameraSettings.model_validate(values)


def run(
    audience: Audience, clock: ManualClock, frames: Iterable[tuple[np.ndarray, int]]
) -> list[tuple[int, AudienceState]]:
    """Feed ``frames`` at 5 fps; the truth and the state after each."""
    out = []
    for frame, truth in frames:
        clock.advance(DT)
        out.append((truth, audience.update(frame, clock.monotonic())))
    return out


def mismatches(results: list[tuple[int, AudienceState]], lag: int = LAG) -> list[tuple[int, int, int]]:
    """Frames whose count differs from the truth, not counting the ``lag`` frames after a change."""
    bad = []
    last_change = -(10**9)
    for index, (truth, state) in enumerate(results):
        if index and truth != results[index - 1][0]:
            last_change = index
        if state.people != truth and index - last_change > lag:
            bad.append((index, truth, state.people))
    return bad


# Walkers that never pass each other (blob counting cannot split two people who overlap in the image):
# the second walks in behind the first, who leaves ahead of them; the third comes alone from the right.
WALKERS = [
    Walker(enter=15, stand_at=0.65, stand=30),
    Walker(enter=35, stand_at=0.25, stand=30, shade=(110, 40, 40)),
    Walker(enter=125, stand_at=0.5, stand=10, from_left=False, speed=0.06, shade=(30, 90, 40)),
]


def test_walkers_entering_and_leaving_are_counted() -> None:
    clock = ManualClock()
    audience = Audience(camera(track_timeout_s=0.6), clock)
    results = run(audience, clock, walker_frames(WALKERS, 190, seed=1))
    assert max(truth for truth, _ in results) == 2
    assert mismatches(results) == []
    final = results[-1][1]
    assert final.people == 0
    assert final.entered == len(WALKERS)
    assert final.left == len(WALKERS)
    assert audience.rejected == 0


def test_counts_at_any_input_resolution() -> None:
    # 640x480 frames are scaled to count_width (320) first: the same counts.
    clock = ManualClock()
    audience = Audience(camera(track_timeout_s=0.6), clock)
    results = run(audience, clock, walker_frames(WALKERS[:2], 110, shape=VGA, seed=2))
    assert mismatches(results) == []
    assert results[-1][1].entered == 2


def test_dwell_grows_while_standing_and_is_reported_on_leaving() -> None:
    clock = ManualClock()
    audience = Audience(camera(track_timeout_s=1.0), clock)
    walker = Walker(enter=12, stand_at=0.5, stand=150)  # 30 s standing still
    results = run(audience, clock, walker_frames([walker], 220, seed=3))
    assert mismatches(results) == []
    dwell = [state.tracks[0][1] for _, state in results if state.tracks]
    assert all(later >= earlier for earlier, later in itertools.pairwise(dwell))
    in_view = sum(truth for truth, _ in results) * DT
    assert abs(max(dwell) - in_view) <= 3 * DT
    final = results[-1][1]
    assert (final.left, final.people) == (1, 0)
    assert final.mean_dwell_s == pytest.approx(max(dwell), abs=1e-9)
    assert final.mean_dwell_s >= 30.0


def test_a_person_in_a_masked_region_is_never_counted() -> None:
    # The right 40% of the frame is masked; one person stands there all along, another walks by unmasked.
    masked = Walker(enter=12, stand_at=0.82, stand=1000, from_left=False)
    visible = Walker(enter=40, stand_at=0.3, stand=20, shade=(110, 40, 40))
    clock = ManualClock()
    settings = camera(masks=[[(0.6, 0.0), (1.0, 0.0), (1.0, 1.0), (0.6, 1.0)]], track_timeout_s=0.6)
    audience = Audience(settings, clock)
    results = []
    for index, (frame, _) in enumerate(walker_frames([masked, visible], 130, seed=4)):
        clock.advance(DT)
        state = audience.update(frame, clock.monotonic())
        x = visible.x_at(index, 4 / 3)
        results.append((int(x is not None and 0.0 <= x < 0.6), state))  # in view and not masked
        assert all(box[0] < 0.6 for box in state.boxes)
    assert max(state.people for _, state in results) == 1
    assert mismatches(results) == []
    assert audience.tracker.entered == 1


def test_the_masked_pixels_are_blanked_on_a_copy() -> None:
    clock = ManualClock()
    audience = Audience(camera(masks=[[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0)]]), clock)
    frame = np.full((240, 320, 3), 200, np.uint8)
    audience.update(frame, clock.monotonic())
    assert (frame == 200).all()  # the caller's frame is untouched


def test_a_still_background_counts_no_one() -> None:
    clock = ManualClock()
    audience = Audience(camera(), clock)
    results = run(audience, clock, walker_frames([], 120, seed=5, noise=3.0))
    assert all(state.people == 0 for _, state in results)
    assert results[-1][1].entered == 0


def test_no_one_is_counted_during_warm_up() -> None:
    clock = ManualClock()
    audience = Audience(camera(), clock)
    # Someone walks through from the first frame: the background is still being learned.
    results = run(
        audience, clock, walker_frames([Walker(enter=0, speed=0.08, stand=0)], WARMUP_FRAMES, seed=6)
    )
    assert all(state.people == 0 for _, state in results)


@pytest.mark.parametrize("gain", [1.5, 0.6, 1.07, 2.0])
def test_a_lighting_step_does_not_make_a_crowd(gain: float) -> None:
    # One person stands through a global brightness step (lights, auto-exposure) at frame 50.
    walker = Walker(enter=12, stand_at=0.4, stand=200)
    clock = ManualClock()
    audience = Audience(camera(), clock)
    frames = walker_frames([walker], 110, seed=7, light=lambda i: gain if i >= 50 else 1.0)
    results = run(audience, clock, frames)
    assert mismatches(results[:50]) == []
    after = [state.people for _, state in results[50:]]
    settle = 4
    assert after[settle:] == [1] * (len(after) - settle), after
    assert max(after) <= 2
    assert results[-1][1].entered == 1


def test_a_partial_lighting_change_settles_within_bounded_frames() -> None:
    # Half the store's lights come on: not a global gain. Nobody there: back to 0 within a few frames.
    clock = ManualClock()
    audience = Audience(camera(), clock)
    scene = background(QVGA, seed=8)
    rng = np.random.default_rng(8)
    counts = []
    for index in range(60):
        frame = scene.astype(np.float32)
        if index >= 30:
            frame[:, 160:] *= 1.6
        clock.advance(DT)
        state = audience.update(noisy(np.clip(frame, 0, 255).astype(np.uint8), 2.0, rng), clock.monotonic())
        counts.append(state.people)
    assert counts[:30] == [0] * 30
    assert counts[36:] == [0] * 24
    assert isinstance(audience.source, MotionBlobs)
    assert audience.source.relearned + audience.source.relit >= 1


def test_garbage_frames_are_survived() -> None:
    clock = ManualClock()
    audience = Audience(camera(track_timeout_s=1.0), clock)
    walker = Walker(enter=12, stand_at=0.5, stand=60)
    # Every other frame is garbage for a while (a run longer than track_timeout_s would end the track).
    garbage: dict[int, object] = {
        30: np.zeros((0, 0, 3), np.uint8),
        32: np.zeros((100, 37, 3), np.uint8),  # one frame of another size
        34: None,
        36: np.zeros((240, 320, 3), np.float32),
        38: np.zeros((240, 320, 5), np.uint8),
        40: "not a frame",
        42: np.zeros((240, 320, 3, 2), np.uint8),
        44: np.zeros((1, 1, 3), np.uint8),
    }
    results = []
    for index, (frame, truth) in enumerate(walker_frames([walker], 100, seed=9)):
        clock.advance(DT)
        state = audience.update(garbage.get(index, frame), clock.monotonic())  # type: ignore[arg-type]
        results.append((truth, state))
    assert audience.rejected == len(garbage)
    # Garbage is not an observation: the person standing there is still counted through it.
    assert mismatches(results) == []
    assert results[-1][1].entered == 1


def test_a_lasting_change_of_resolution_is_adopted() -> None:
    clock = ManualClock()
    audience = Audience(camera(track_timeout_s=1.0), clock)
    walker = Walker(enter=5, stand_at=0.5, stand=500)
    wide = iter(walker_frames([walker], 200, shape=(180, 320), seed=10))
    results = run(audience, clock, walker_frames([], 20, seed=10))  # 4:3, no one
    results += run(audience, clock, (next(wide) for _ in range(60)))  # then 16:9 for good
    assert audience.resets == 1
    assert results[-1][1].people == 1


def test_grey_and_bgra_frames_are_counted() -> None:
    import cv2  # noqa: PLC0415 - only this test converts

    walker = Walker(enter=12, stand_at=0.5, stand=30)
    for convert in (cv2.COLOR_BGR2GRAY, cv2.COLOR_BGR2BGRA):
        clock = ManualClock()
        audience = Audience(camera(), clock)
        frames = ((cv2.cvtColor(f, convert), t) for f, t in walker_frames([walker], 40, seed=11))
        results = run(audience, clock, frames)
        assert mismatches(results) == []


# ----- the tracker, through a scripted person source (the swappable step) --------------------------------
class Scripted:
    """A PersonSource that reports what the test says: detections per update."""

    def __init__(self, script: Callable[[int], list[Detection] | None]) -> None:
        self.script = script
        self.calls = 0
        self.resets = 0

    def detect(self, frame: np.ndarray, now_mono: float) -> list[Detection] | None:
        self.calls += 1
        return self.script(self.calls - 1)

    def reset(self) -> None:
        self.resets += 1


def test_tracks_keep_their_number_and_end_after_the_timeout() -> None:
    def script(step: int) -> list[Detection]:
        people = [Detection(0.2 + 0.01 * step, 0.5, 0.1, 0.5)]
        if step < 10:
            people.append(Detection(0.8 - 0.02 * step, 0.5, 0.1, 0.5))
        if step in (4, 5):  # the first person unseen for 2 updates: shorter than the timeout
            people.pop(0)
        return people

    clock = ManualClock()
    audience = Audience(camera(track_timeout_s=1.0), clock, source=Scripted(script))
    frame = np.zeros((240, 320, 3), np.uint8)
    states = []
    for _ in range(30):
        clock.advance(DT)
        states.append(audience.update(frame, clock.monotonic()))
    numbers = {number for state in states for number, _ in state.tracks}
    assert numbers == {1, 2}  # the first person kept their number through the gap
    assert states[4].people == 1
    assert states[8].people == 2
    assert states[-1].people == 1
    assert (states[-1].entered, states[-1].left) == (2, 1)
    assert states[-1].mean_dwell_s == pytest.approx(9 * DT)


def test_a_one_update_blob_is_noise_not_a_person() -> None:
    blips = {3: [Detection(0.5, 0.5, 0.1, 0.3)], 9: [Detection(0.1, 0.5, 0.1, 0.3)]}
    clock = ManualClock()
    audience = Audience(camera(), clock, source=Scripted(lambda step: blips.get(step, [])))
    frame = np.zeros((240, 320, 3), np.uint8)
    for _ in range(20):
        clock.advance(DT)
        state = audience.update(frame, clock.monotonic())
        assert state.people == 0
    assert (state.entered, state.left) == (0, 0)


def test_a_far_jump_is_another_person() -> None:
    positions = [0.1, 0.12, 0.14, 0.9, 0.9]
    clock = ManualClock()
    source = Scripted(lambda step: [Detection(positions[min(step, 4)], 0.5, 0.1, 0.4)])
    audience = Audience(camera(track_timeout_s=0.5), clock, source=source)
    frame = np.zeros((240, 320, 3), np.uint8)
    for _ in range(10):
        clock.advance(DT)
        state = audience.update(frame, clock.monotonic())
    assert state.entered == 2
    assert state.left == 1


def test_the_state_holds_numbers_only() -> None:
    """Privacy by construction: nothing in a result can carry an image or describe anyone."""
    clock = ManualClock()
    audience = Audience(camera(), clock)
    results = run(audience, clock, walker_frames(WALKERS[:1], 40, seed=12))
    state = results[-1][1]
    assert state.people == 1

    def numbers_only(value: object) -> bool:
        if isinstance(value, tuple):
            return all(numbers_only(item) for item in value)
        return isinstance(value, int | float) and not isinstance(value, bool)

    for item in dataclasses.fields(state):
        assert numbers_only(getattr(state, item.name)), item.name
