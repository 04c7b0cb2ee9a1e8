import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.decide.manifest import FEATURE_NAMES, ModelError
from edge.decide.scorer import OnnxScorer, load_model
from tests.decide.conftest import MANIFEST, MODEL

F = len(FEATURE_NAMES)


@pytest.fixture
def model_copy(tmp_path: Path) -> tuple[Path, Path]:
    onnx_path, manifest_path = tmp_path / "offers.onnx", tmp_path / "offers.json"
    shutil.copyfile(MODEL, onnx_path)
    shutil.copyfile(MANIFEST, manifest_path)
    return onnx_path, manifest_path


def edit_manifest(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def tiny_model(width: int, output: str = "score") -> bytes:
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], [output]),
        ],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 1])],
        [
            numpy_helper.from_array(np.ones((width, 1), dtype=np.float32), "w"),
            numpy_helper.from_array(np.zeros(1, dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def install(onnx_path: Path, manifest_path: Path, blob: bytes) -> None:
    onnx_path.write_bytes(blob)
    edit_manifest(manifest_path, sha256=hashlib.sha256(blob).hexdigest())


def test_loads_the_shipped_model(scorer: OnnxScorer) -> None:
    assert scorer.version == "2026.12.1"
    scores = scorer.score(np.zeros((5, F), dtype=np.float32))
    assert scores.shape == (5,)
    assert ((scores > 0) & (scores < 1)).all()
    assert scorer.score(np.zeros((0, F), dtype=np.float32)).shape == (0,)


def test_bound_buffer_scores_what_it_holds(scorer: OnnxScorer) -> None:
    rng = np.random.default_rng(1)
    buffer = np.zeros((9, F), dtype=np.float32)
    run = scorer.bind(buffer)
    for _ in range(3):
        buffer[:] = rng.random((9, F), dtype=np.float32)
        assert np.allclose(run(), scorer.score(buffer.copy()), atol=1e-7)
    with pytest.raises(ValueError, match="float32"):
        scorer.bind(np.zeros((9, F), dtype=np.float64))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="contiguous"):
        scorer.bind(np.zeros((F, 9), dtype=np.float32).T)


def test_rejects_a_tampered_file(model_copy: tuple[Path, Path]) -> None:
    onnx_path, manifest_path = model_copy
    blob = bytearray(onnx_path.read_bytes())
    blob[-5] ^= 0x01  # a bit in the last weights
    onnx_path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="sha256"):
        load_model(onnx_path, manifest_path)


def test_rejects_feature_names_that_differ(model_copy: tuple[Path, Path]) -> None:
    onnx_path, manifest_path = model_copy
    swapped = list(FEATURE_NAMES)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    edit_manifest(manifest_path, inputs={"features": swapped})
    with pytest.raises(ModelError, match="differ from this gateway's features"):
        load_model(onnx_path, manifest_path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"sha256": "abc"}, "sha256: String should match pattern"),
        ({"trained_on": {"seed": 1, "rows": 0, "holdout_auc": 0.5}}, "trained_on.rows"),
        ({"categories": ["coffee"]}, "categories"),
    ],
)
def test_rejects_a_wrong_manifest(
    model_copy: tuple[Path, Path], changes: dict[str, Any], message: str
) -> None:
    onnx_path, manifest_path = model_copy
    edit_manifest(manifest_path, **changes)
    with pytest.raises(ModelError, match=message):
        load_model(onnx_path, manifest_path)


def test_rejects_missing_and_unparseable_files(model_copy: tuple[Path, Path], tmp_path: Path) -> None:
    onnx_path, manifest_path = model_copy
    with pytest.raises(ModelError, match="cannot read model manifest"):
        load_model(onnx_path, tmp_path / "nope.json")
    with pytest.raises(ModelError, match="cannot read model"):
        load_model(tmp_path / "nope.onnx", manifest_path)
    manifest_path.write_text("{not json")
    with pytest.raises(ModelError, match="invalid model manifest"):
        load_model(onnx_path, manifest_path)


def test_rejects_a_graph_that_does_not_fit(model_copy: tuple[Path, Path]) -> None:
    onnx_path, manifest_path = model_copy
    install(onnx_path, manifest_path, tiny_model(F + 1))
    with pytest.raises(ModelError, match=rf"expected float \[N, {F}\]"):
        load_model(onnx_path, manifest_path)
    install(onnx_path, manifest_path, tiny_model(F, output="probability"))
    with pytest.raises(ModelError, match="outputs"):
        load_model(onnx_path, manifest_path)
    install(onnx_path, manifest_path, b"not a model at all")
    with pytest.raises(ModelError, match="onnxruntime cannot load"):
        load_model(onnx_path, manifest_path)
    install(onnx_path, manifest_path, tiny_model(F))
    assert load_model(onnx_path, manifest_path).score(np.zeros((2, F), dtype=np.float32)).shape == (2,)


def test_shipped_graph_is_valid_onnx() -> None:
    model = onnx.load(str(MODEL))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == ["score"]
    assert {op.op_type for op in model.graph.node}.isdisjoint({"ZipMap"})
