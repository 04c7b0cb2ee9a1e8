"""The offer model at run time: manifest checks, one onnxruntime session, one ``run`` per decision."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.decide.features import CATEGORIES, FEATURE_NAMES, N_FEATURES
from edge.onnxrt import ORT_ERRORS

log = logging.getLogger(__name__)

INPUT_NAME: Final = "features"


class ModelError(ValueError):
    """The model file or its manifest is missing, tampered with, or does not fit this code."""


class TrainedOn(BaseModel):
    """Provenance of the shipped weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(description="Seed of the synthetic data generator.")
    rows: int = Field(ge=1, description="Training rows (offer impressions).")
    holdout_auc: float = Field(ge=0, le=1, description="ROC AUC on the held-out synthetic rows.")


class ModelManifest(BaseModel):
    """``models/<name>.json``: what the ONNX file is and how to feed it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Model name; the file is models/<name>.onnx.")
    version: str = Field(min_length=1, description="Model version, logged with every decision.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the .onnx bytes (lower-case hex).")
    inputs: dict[str, list[str]] = Field(
        description="Input tensor name -> its feature names in column order."
    )
    output: str = Field(min_length=1, description="Output tensor: one score in [0, 1] per input row.")
    categories: list[str] = Field(description="Offer categories of the one-hot columns, in order.")
    trained_on: TrainedOn = Field(description="Where the weights came from.")


ScoreFn = Callable[[], npt.NDArray[np.float32]]


class Scorer(Protocol):
    """What the decision engine needs from a model."""

    @property
    def version(self) -> str: ...

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def bind(self, features: npt.NDArray[np.float32]) -> ScoreFn: ...


class OnnxScorer:
    """Scores every candidate row in one ``session.run``.

    ``score`` may be called from any thread (onnxruntime sessions allow concurrent runs: the model
    lifecycle shadow-scores the running model beside the engine); a ``bind`` result is confined to the
    engine's thread, like the buffers it binds.
    """

    __slots__ = ("_feeds_name", "_outputs", "manifest", "session")

    def __init__(self, session: Any, manifest: ModelManifest) -> None:
        self.session = session
        self.manifest = manifest
        self._feeds_name = INPUT_NAME
        self._outputs = [manifest.output]

    @property
    def version(self) -> str:
        return self.manifest.version

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """[N, F] float32 -> [N] scores in [0, 1]."""
        result: npt.NDArray[np.float32] = self.session.run(self._outputs, {self._feeds_name: features})[0]
        return result.reshape(-1)

    def bind(self, features: npt.NDArray[np.float32]) -> ScoreFn:
        """Bind a persistent [N, F] buffer once; each call of the result is one run on its current contents.

        Returns the [N] scores in an output buffer that the next call overwrites. Input and output stay
        bound to the same memory (onnxruntime IOBinding), which saves the per-call conversion of
        ``session.run``: about a third of a 50-row run (docs/decisions.md).
        """
        if features.dtype != np.float32 or features.ndim != 2 or features.shape[1] != N_FEATURES:
            raise ValueError(
                f"expected a float32 [N, {N_FEATURES}] buffer, got {features.dtype}{features.shape}"
            )
        if not features.flags.c_contiguous:
            raise ValueError("the bound buffer must be C-contiguous (it is shared with onnxruntime)")
        out = np.zeros((features.shape[0], 1), dtype=np.float32)
        return _BoundRun(self.session, self.manifest.output, features, out)


class _BoundRun:
    """One session run over buffers bound once; returns the [N] view of the output buffer."""

    __slots__ = ("_binding", "_keep", "_run", "_scores")

    def __init__(
        self, session: Any, output: str, features: npt.NDArray[np.float32], out: npt.NDArray[np.float32]
    ) -> None:
        in_value = ort.OrtValue.ortvalue_from_numpy(features)
        out_value = ort.OrtValue.ortvalue_from_numpy(out)
        self._binding = session.io_binding()
        self._binding.bind_ortvalue_input(INPUT_NAME, in_value)
        self._binding.bind_ortvalue_output(output, out_value)
        self._run = session.run_with_iobinding
        self._scores = out.reshape(-1)
        # The OrtValues only borrow the numpy memory: keep arrays and values alive as long as the binding.
        self._keep = (features, out, in_value, out_value)

    def __call__(self) -> npt.NDArray[np.float32]:
        self._run(self._binding)
        return self._scores


def session_options() -> Any:
    """One thread, no inter-op pool: a decision is ~50 rows, where thread hand-offs cost more than they save."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def parse_manifest(data: bytes, source: str | Path) -> ModelManifest:
    """A manifest from its JSON bytes (read once by the caller, who may keep them); ``source`` names it."""
    try:
        return ModelManifest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
            for item in exc.errors(include_url=False)
        )
        raise ModelError(f"invalid model manifest {source}: {problems}") from exc


def read_model(onnx_path: str | Path, manifest_path: str | Path) -> tuple[bytes, bytes, ModelManifest]:
    """The model's bytes, its manifest's bytes and the parsed manifest, each read once; the sha256 of those
    very bytes checked against the manifest (so a file swapped after the check cannot be the one used)."""
    onnx_path, manifest_path = Path(onnx_path), Path(manifest_path)
    try:
        manifest_bytes = manifest_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model manifest {manifest_path}: {exc.strerror or exc}") from exc
    manifest = parse_manifest(manifest_bytes, manifest_path)
    try:
        blob = onnx_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {onnx_path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.sha256:
        raise ModelError(f"model {onnx_path} has sha256 {digest}, its manifest says {manifest.sha256}")
    return blob, manifest_bytes, manifest


def load_model(onnx_path: str | Path, manifest_path: str | Path) -> OnnxScorer:
    """Check the file against its manifest and this code's features, then open one session on those bytes."""
    onnx_path = Path(onnx_path)
    blob, _, manifest = read_model(onnx_path, manifest_path)
    expected_inputs = {INPUT_NAME: list(FEATURE_NAMES)}
    if manifest.inputs != expected_inputs:
        raise ModelError(
            f"manifest inputs {json.dumps(manifest.inputs)} differ from this gateway's features "
            f"{json.dumps(expected_inputs)}; rebuild the model (scripts/build_model.py)"
        )
    if manifest.categories != list(CATEGORIES):
        raise ModelError(f"manifest categories {manifest.categories} differ from {list(CATEGORIES)}")
    try:
        session = ort.InferenceSession(
            blob, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except ORT_ERRORS as exc:
        raise ModelError(f"onnxruntime cannot load {onnx_path}: {exc}") from exc
    _check_graph(session, manifest, onnx_path)
    log.info("loaded model %s version %s (%d features)", manifest.name, manifest.version, N_FEATURES)
    return OnnxScorer(session, manifest)


def _check_graph(session: Any, manifest: ModelManifest, onnx_path: Path) -> None:
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    if [item.name for item in inputs] != [INPUT_NAME]:
        raise ModelError(f"model {onnx_path} inputs {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    if [item.name for item in outputs] != [manifest.output]:
        raise ModelError(
            f"model {onnx_path} outputs {[o.name for o in outputs]}, expected ['{manifest.output}']"
        )
    in_shape, out_shape = inputs[0].shape, outputs[0].shape
    if len(in_shape) != 2 or in_shape[1] != N_FEATURES or inputs[0].type != "tensor(float)":
        raise ModelError(
            f"model {onnx_path} input is {inputs[0].type}{in_shape}, expected float [N, {N_FEATURES}]"
        )
    if len(out_shape) != 2 or out_shape[1] != 1 or outputs[0].type != "tensor(float)":
        raise ModelError(f"model {onnx_path} output is {outputs[0].type}{out_shape}, expected float [N, 1]")
