"""A model built for other features (the 17 inputs before issue 16) is refused with a clear message: by
``check-config``'s ``verify_model``, by the model store at start, and by a rollback to it."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError, verify_model
from tests.decide.conftest import MANIFEST, MODEL

OLD_VERSION = "2026.11.1"
OLD_FEATURES = [
    "hour_sin",
    "hour_cos",
    "weekend",
    "audience_log",
    "personalized",
    "visits_log",
    "affinity",
    "offer_value_log",
    "offer_discount",
    *(
        f"cat_{c}"
        for c in ("apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports")
    ),
]


def old_model(folder: Path) -> tuple[Path, Path, str]:
    """A model and manifest as the previous release shipped them: 17 inputs, no basket rules."""
    folder.mkdir(parents=True, exist_ok=True)
    width = len(OLD_FEATURES)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["features", "w", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["score"]),
        ],
        "offers",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        [
            numpy_helper.from_array(np.full((width, 1), 0.1, dtype=np.float32), "w"),
            numpy_helper.from_array(np.zeros(1, dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    blob = model.SerializeToString()
    digest = hashlib.sha256(blob).hexdigest()
    manifest = {
        "name": "offers",
        "version": OLD_VERSION,
        "sha256": digest,
        "inputs": {"features": OLD_FEATURES},
        "output": "score",
        "categories": ["apparel", "beauty", "coffee", "electronics", "grocery", "home", "kids", "sports"],
        "trained_on": {"seed": 20261122, "rows": 38400, "holdout_auc": 0.786},
    }
    onnx_path, manifest_path = folder / "offers.onnx", folder / "offers.json"
    onnx_path.write_bytes(blob)
    manifest_path.write_text(json.dumps(manifest))
    onnx.checker.check_model(model)
    return onnx_path, manifest_path, digest


def old_store(state: Path, tmp_path: Path) -> str:
    """A state directory as the previous release left it: the old model installed, current and configured."""
    onnx_path, manifest_path, digest = old_model(tmp_path / "old")
    folder = state / "models" / OLD_VERSION
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(onnx_path.read_bytes())
    (folder / "manifest.json").write_bytes(manifest_path.read_bytes())
    (folder / "installed.json").write_text(
        json.dumps({"installed_at": 1, "source": str(onnx_path), "sha256": digest})
    )
    (state / "models" / "current").write_text(OLD_VERSION)
    (state / "models" / "history.json").write_text(
        json.dumps({"stack": [OLD_VERSION], "configured_sha256": digest, "updated_at": 1})
    )
    return digest


def test_check_config_names_what_does_not_fit(tmp_path: Path) -> None:
    onnx_path, manifest_path, _ = old_model(tmp_path)
    with pytest.raises(ModelError) as caught:
        verify_model(onnx_path, manifest_path)
    message = str(caught.value)
    assert f"model offers {OLD_VERSION}: its inputs differ from this gateway's features" in message
    assert (
        "missing ['weather_known', 'temp_scaled', 'precipitation', 'basket_complement', 'trend_share']"
        in message
    )
    assert "scripts/build_model.py" in message
    verify_model(MODEL, MANIFEST)  # the shipped one fits


def test_an_upgrade_installs_the_new_model_over_an_old_store(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old_store(state, tmp_path)
    store = ModelStore.open(state)
    scorer = store.start(MODEL, MANIFEST)  # the configuration names the new model: another sha256
    shipped = json.loads(MANIFEST.read_text())["version"]
    assert scorer.version == store.current_version() == shipped
    assert store.history() == [OLD_VERSION, shipped]
    # A rollback to the old model is refused, and nothing changes.
    with pytest.raises(ModelError, match="its inputs differ from this gateway's features"):
        store.rollback()
    assert store.current_version() == shipped
    # A restart keeps the new model.
    assert ModelStore.open(state).start(MODEL, MANIFEST).version == shipped


def test_a_pointer_to_an_old_model_falls_back_to_the_configured_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    old_store(state, tmp_path)
    store = ModelStore.open(state)
    store.start(MODEL, MANIFEST)
    # An operator moved the pointer back by hand: the next start logs why and runs the configured model.
    (state / "models" / "current").write_text(OLD_VERSION)
    caplog.set_level(logging.ERROR)
    scorer = ModelStore.open(state).start(MODEL, MANIFEST)
    assert scorer.version == json.loads(MANIFEST.read_text())["version"]
    assert f"current model {OLD_VERSION} cannot be loaded" in caplog.text
    assert "its inputs differ from this gateway's features" in caplog.text


def test_an_old_model_configured_alone_cannot_start(tmp_path: Path) -> None:
    onnx_path, manifest_path, _ = old_model(tmp_path / "cfg")
    with pytest.raises(ModelError, match="its inputs differ from this gateway's features"):
        ModelStore.open(tmp_path / "state").start(onnx_path, manifest_path)
