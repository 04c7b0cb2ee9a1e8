"""The offer model at run time: one onnxruntime session over verified bytes, one ``run`` per decision."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge.decide.basket import EMPTY_RULES, RULES_KEY, BasketRules, parse_rules
from edge.decide.manifest import INPUT_NAME, N_FEATURES, ModelError, ModelManifest, check_fit, read_model
from edge.onnxrt import ORT_ERRORS

log = logging.getLogger(__name__)


ScoreFn = Callable[[], npt.NDArray[np.float32]]


class Scorer(Protocol):
    """What the decision engine needs from a model."""

    @property
    def version(self) -> str: ...

    @property
    def basket_rules(self) -> BasketRules: ...

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...

    def bind(self, features: npt.NDArray[np.float32]) -> ScoreFn: ...


class OnnxScorer:
    """Scores every candidate row in one ``session.run``.

    ``score`` may be called from any thread (onnxruntime sessions allow concurrent runs: the model
    lifecycle shadow-scores the running model beside the engine); a ``bind`` result is confined to the
    engine's thread, like the buffers it binds.
    """

    __slots__ = ("_feeds_name", "_outputs", "basket_rules", "manifest", "session")

    def __init__(
        self, session: Any, manifest: ModelManifest, basket_rules: BasketRules = EMPTY_RULES
    ) -> None:
        self.session = session
        self.manifest = manifest
        self.basket_rules = basket_rules  # shipped inside the .onnx: the model's sha256 covers them
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


def load_model(onnx_path: str | Path, manifest_path: str | Path) -> OnnxScorer:
    """Check the file against its manifest and this code's features, then open one session on those bytes."""
    onnx_path = Path(onnx_path)
    blob, _, manifest = read_model(onnx_path, manifest_path)
    check_fit(manifest)
    try:
        session = ort.InferenceSession(
            blob, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except ORT_ERRORS as exc:
        raise ModelError(f"onnxruntime cannot load {onnx_path}: {exc}") from exc
    _check_graph(session, manifest, onnx_path)
    try:
        metadata = session.get_modelmeta().custom_metadata_map
    except ORT_ERRORS as exc:
        raise ModelError(f"onnxruntime cannot read the metadata of {onnx_path}: {exc}") from exc
    rules = _basket_rules(metadata.get(RULES_KEY), manifest, onnx_path)
    log.info(
        "loaded model %s version %s (%d features, %d basket rules)",
        manifest.name,
        manifest.version,
        N_FEATURES,
        len(rules.rules),
    )
    return OnnxScorer(session, manifest, rules)


def _basket_rules(text: str | None, manifest: ModelManifest, onnx_path: Path) -> BasketRules:
    """The rules inside the model (their count checked against the manifest's); a model without any uses no
    basket rules (its basket column stays 0), logged when its manifest promised some."""
    expected = manifest.trained_on.basket_rules
    if text is None:
        if expected:
            log.warning("model %s carries no basket rules, its manifest says %d", onnx_path, expected)
        return EMPTY_RULES
    rules = parse_rules(text, str(onnx_path))
    if expected is not None and len(rules.rules) != expected:
        raise ModelError(
            f"model {onnx_path} carries {len(rules.rules)} basket rules, its manifest says {expected}"
        )
    return rules


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
