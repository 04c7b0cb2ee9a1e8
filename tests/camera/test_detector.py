"""The ONNX person-detector plugin with tiny models built here: counts walkers, refuses misfits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.clock import ManualClock
from edge.config.camera import CameraSettings
from edge.sources.camera.audience import Audience, AudienceState
from edge.sources.camera.detector import DetectorModelError, OnnxPersonDetector
from edge.sources.camera.masks import MaskSet
from tests.camera.scenes import QVGA, Walker, background, walker_frames

DT = 0.2
IN_H, IN_W = 120, 160
POOL = 4


def darkness_model(
    path: Path,
    *,
    input_shape: list[int | str | None] | None = None,
    channels_out: bool = False,
    output_shape: list[int | str | None] | None = None,
    input_type: int = TensorProto.FLOAT,
    two_inputs: bool = False,
    rank3: bool = False,
) -> Path:
    """A stand-in "person detector": grey = mean(RGB), heat = AveragePool(1 - grey) over 4x4 cells.

    Dark things on a bright wall light up: good enough to stand for a real model in the tests. The
    keyword arguments break the contract in one way each.
    """
    shape = input_shape if input_shape is not None else [1, 3, IN_H, IN_W]
    inputs = [helper.make_tensor_value_info("images", input_type, shape)]
    nodes = []
    source = "images"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["images"], ["as_float"], to=TensorProto.FLOAT))
        source = "as_float"
    if rank3:  # a [3, H, W] input, made 4D inside
        inputs = [helper.make_tensor_value_info("images", input_type, [3, IN_H, IN_W])]
        nodes.append(helper.make_node("Unsqueeze", ["images", "axis0"], ["batched"]))
        source = "batched"
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    if channels_out:
        grey = source  # keeps 3 channels: a [1, 3, h, w] output
    else:
        nodes.append(helper.make_node("ReduceMean", [source], ["grey"], axes=[1], keepdims=1))
        grey = "grey"
    nodes.append(helper.make_node("Sub", ["one", grey], ["dark"]))
    nodes.append(
        helper.make_node("AveragePool", ["dark"], ["heat"], kernel_shape=[POOL, POOL], strides=[POOL, POOL])
    )
    out_shape = output_shape if output_shape is not None else [1, 1, IN_H // POOL, IN_W // POOL]
    graph = helper.make_graph(
        nodes,
        "darkness",
        inputs,
        [helper.make_tensor_value_info("heat", TensorProto.FLOAT, out_shape)],
        initializer=[
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return darkness_model(tmp_path / "darkness.onnx")


def camera(model: Path, **overrides: object) -> CameraSettings:
    values: dict[str, object] = {
        "id": "cam-1",
        "source": "scene.mp4",
        "zone": "cafe",
        "detector_model": model,
        "track_timeout_s": 0.6,
    }
    values.update(overrides)
    return CameraSettings.model_validate(values)


def counts(audience: Audience, clock: ManualClock, frames: object) -> list[tuple[int, AudienceState]]:
    out = []
    for frame, truth in frames:  # type: ignore[attr-defined]
        clock.advance(DT)
        out.append((truth, audience.update(frame, clock.monotonic())))
    return out


def test_the_detector_counts_walkers_instead_of_blobs(model: Path) -> None:
    walkers = [
        Walker(enter=0, stand_at=0.65, stand=25),  # there from the first frame: no warm-up needed
        Walker(enter=20, stand_at=0.25, stand=20, shade=(90, 30, 30)),  # follows, never overlaps
    ]
    clock = ManualClock()
    audience = Audience(camera(model), clock)
    assert isinstance(audience.source, OnnxPersonDetector)
    results = counts(audience, clock, walker_frames(walkers, 100, plain=True, seed=1))
    lagging = []
    for index, (truth, state) in enumerate(results):
        settled = all(results[j][0] == truth for j in range(max(0, index - 2), index + 1))
        if settled and state.people != truth:
            lagging.append((index, truth, state.people))
    assert lagging == []
    final = results[-1][1]
    assert (final.people, final.entered, final.left) == (0, 2, 2)
    assert final.mean_dwell_s > 0


def test_a_masked_person_is_not_counted_even_if_the_model_sees_black(model: Path) -> None:
    # Blanked pixels are black, which this model reads as "dark = person": the plugin clears them.
    standing = Walker(enter=0, stand_at=0.2, stand=1000)
    clock = ManualClock()
    settings = camera(model, masks=[[(0.0, 0.0), (0.45, 0.0), (0.45, 1.0), (0.0, 1.0)]])
    audience = Audience(settings, clock)
    results = counts(audience, clock, walker_frames([standing], 20, plain=True, seed=2))
    assert all(state.people == 0 for _, state in results)


def test_small_dark_things_are_not_people(model: Path) -> None:
    detector = OnnxPersonDetector(model, threshold=0.5, min_fraction=0.01)
    frame = background(QVGA, seed=3, plain=True)
    frame[100:106, 150:156] = 0  # a 6x6 px dark dot: under 1% of the heat-map
    assert detector.detect(frame, 0.0) == []
    frame[40:200, 140:180] = 20  # a person-sized dark shape
    found = detector.detect(frame, 0.0)
    assert found is not None
    assert len(found) == 1
    assert found[0].score > 0.5
    assert found[0].x == pytest.approx(0.5, abs=0.05)


def test_the_heat_map_is_masked_at_its_own_resolution(model: Path) -> None:
    masks = MaskSet([[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]])
    detector = OnnxPersonDetector(model, threshold=0.5, min_fraction=0.01, masks=masks)
    frame = np.full((240, 320, 3), 220, np.uint8)
    frame[40:200, 220:260] = 10  # only in the masked half
    assert detector.detect(frame, 0.0) == []


def test_one_thread(model: Path) -> None:
    detector = OnnxPersonDetector(model, threshold=0.5, min_fraction=0.01)
    options = detector._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert detector.input_size == (IN_H, IN_W)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": [1, 1, IN_H, IN_W], "channels_out": True}, "1 channels"),
        ({"input_shape": [1, 3, "height", "width"]}, "fixed H x W"),
        ({"rank3": True}, r"has shape \[3, 120, 160\]; the contract is \[1, 3, H, W\]"),
        ({"input_shape": [2, 3, IN_H, IN_W]}, "batch 2"),
        ({"input_type": TensorProto.UINT8}, "tensor\\(uint8\\)"),
        ({"two_inputs": True}, "2 inputs"),
        # Declared as the contract says, but the heat-map it really gives has 3 channels: the trial run
        # at load finds it.
        ({"channels_out": True}, r"output has shape \[1, 3, 30, 40\]; the contract is \[1, 1, h, w\]"),
        ({"channels_out": True, "output_shape": [None, None, None, None]}, r"shape \[1, 3, 30, 40\]"),
    ],
)
def test_a_model_off_the_contract_is_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    path = darkness_model(tmp_path / "bad.onnx", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DetectorModelError, match=message):
        OnnxPersonDetector(path, threshold=0.5, min_fraction=0.01)


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(DetectorModelError, match="not a loadable ONNX model"):
        OnnxPersonDetector(junk, threshold=0.5, min_fraction=0.01)
    with pytest.raises(DetectorModelError, match="not a loadable ONNX model"):
        OnnxPersonDetector(tmp_path / "missing.onnx", threshold=0.5, min_fraction=0.01)


def test_the_audience_refuses_a_misfit_model_at_construction(tmp_path: Path) -> None:
    path = darkness_model(tmp_path / "bad.onnx", input_shape=[1, 3, "h", "w"])
    with pytest.raises(DetectorModelError, match=str(path.name)):
        Audience(camera(path), ManualClock())
