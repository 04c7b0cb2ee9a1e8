"""Optional ONNX person detector: counts people instead of moving blobs. Counting only, never identification.

The model contract (checked when the model is loaded; a model that does not fit is refused with a message
that says what differs):

- one input, float32, shape ``[1, 3, H, W]`` (the batch may be symbolic; ``H`` and ``W`` must be fixed
  numbers): the frame resized to W x H, **RGB**, values **0..1**, channels first. The conventional input
  name is ``images``; any name is accepted.
- its first output, float32, shape ``[1, 1, h, w]`` (``h``, ``w`` fixed or symbolic): a person heat-map
  over the whole frame, values in 0..1: how likely each cell is to be part of a person.

Cells at or above ``detector_threshold`` are people; connected groups of such cells covering at least
``min_blob_fraction`` of the map are one person each, reported as a box with the peak score. Cells under
a privacy mask are cleared whatever the model says (a blanked region is black, which a model could read
as a dark figure). No crop, embedding or any other output of the model is kept or returned.

onnxruntime runs with one thread (the camera's analysis thread is the only one it gets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import onnxruntime as ort

from edge.onnxrt import ORT_ERRORS
from edge.sources.camera.audience import Detection, components
from edge.sources.camera.masks import MaskSet

INPUT_CHANNELS: Final = 3
# The model input is at most this big: a "person heat-map" model fed more than a few hundred pixels a
# side at count_fps on a Pi core is a configuration mistake better refused at load than found as lag.
MAX_INPUT_SIDE: Final = 1024


class DetectorModelError(ValueError):
    """The model file cannot be used: unreadable, or not the documented contract."""


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxPersonDetector:
    """A person heat-map model (see the module docstring for the contract) as a ``PersonSource``."""

    def __init__(
        self,
        model: Path | str,
        threshold: float,
        min_fraction: float,
        masks: MaskSet | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            msg = f"threshold must be in (0, 1), got {threshold}"
            raise ValueError(msg)
        self.path = Path(model)
        self.threshold = threshold
        self.min_fraction = min_fraction
        self.masks = masks
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # warnings about the model are not the gateway's log
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except ORT_ERRORS as exc:
            msg = f"{self.path}: not a loadable ONNX model ({exc})"
            raise DetectorModelError(msg) from exc
        self._input, self.input_size = self._check_input()
        self._output = self._check_output()
        self._check_run()

    # ----- the contract ----------------------------------------------------------------------------------
    def _refuse(self, what: str) -> DetectorModelError:
        return DetectorModelError(f"{self.path}: {what} (expected by the person detector: see {__name__})")

    def _check_input(self) -> tuple[str, tuple[int, int]]:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise self._refuse(f"{len(inputs)} inputs; the contract is one float32 input [1, 3, H, W]")
        spec = inputs[0]
        shape = list(spec.shape)
        if spec.type != "tensor(float)":
            raise self._refuse(f"input {spec.name!r} is {spec.type}; the contract is tensor(float)")
        if len(shape) != 4:
            raise self._refuse(f"input {spec.name!r} has shape {shape}; the contract is [1, 3, H, W]")
        batch, channels, height, width = shape
        if isinstance(batch, int) and batch != 1:
            raise self._refuse(f"input {spec.name!r} has batch {batch}; the contract is 1")
        if channels != INPUT_CHANNELS:
            raise self._refuse(f"input {spec.name!r} has {channels} channels; the contract is 3 (RGB)")
        h, w = _fixed(height), _fixed(width)
        if h is None or w is None:
            raise self._refuse(
                f"input {spec.name!r} has size {height} x {width}; the contract is a fixed H x W"
            )
        if max(h, w) > MAX_INPUT_SIDE:
            raise self._refuse(f"input {spec.name!r} is {h} x {w}; at most {MAX_INPUT_SIDE} a side")
        return spec.name, (h, w)

    def _check_output(self) -> str:
        outputs = self._session.get_outputs()
        if not outputs:
            raise self._refuse("no output; the contract is a float32 heat-map [1, 1, h, w]")
        spec = outputs[0]
        shape = list(spec.shape)
        if spec.type != "tensor(float)":
            raise self._refuse(f"output {spec.name!r} is {spec.type}; the contract is tensor(float)")
        if len(shape) != 4 or any(isinstance(dim, int) and dim != 1 for dim in shape[:2]):
            raise self._refuse(f"output {spec.name!r} has shape {shape}; the contract is [1, 1, h, w]")
        return str(spec.name)

    def _check_run(self) -> None:
        """One run on a grey frame: the shape the model really gives must fit too."""
        h, w = self.input_size
        try:
            heat = self._heat(np.full((h, w, 3), 128, np.uint8))
        except ORT_ERRORS as exc:
            msg = f"{self.path}: the model fails on a {w}x{h} frame ({exc})"
            raise DetectorModelError(msg) from exc
        if not np.isfinite(heat).all():
            raise self._refuse("the heat-map of a grey frame has non-finite values")

    # ----- running ---------------------------------------------------------------------------------------
    def _heat(self, frame: np.ndarray) -> np.ndarray:
        h, w = self.input_size
        interpolation = cv2.INTER_AREA if frame.shape[1] > w else cv2.INTER_LINEAR
        rgb = cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=interpolation), cv2.COLOR_BGR2RGB)
        tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)
        tensor *= 1.0 / 255.0
        result = self._session.run([self._output], {self._input: tensor})[0]
        heat = np.asarray(result)
        if heat.ndim != 4 or heat.shape[:2] != (1, 1) or heat.shape[2] < 1 or heat.shape[3] < 1:
            raise self._refuse(f"the output has shape {list(heat.shape)}; the contract is [1, 1, h, w]")
        return np.ascontiguousarray(heat[0, 0], dtype=np.float32)

    def detect(self, frame: np.ndarray, now_mono: float) -> list[Detection] | None:  # noqa: ARG002
        """People in a BGR uint8 ``frame`` (any size): one detection per group of hot cells."""
        heat = self._heat(frame)
        if self.masks:
            heat = self.masks.apply(heat)
        hot = (heat >= self.threshold).astype(np.uint8)
        return components(hot, self.min_fraction, scores=heat)

    def reset(self) -> None:
        """Nothing to forget: the model has no state between frames."""
