"""Small real ONNX graphs for tests: ``Gemm -> Sigmoid`` (or another last op), optionally poisoned with NaN."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper


def gemm_model(
    w: npt.NDArray[np.float32],
    bias: float,
    *,
    input_name: str = "features",
    last: str = "Sigmoid",
    nan: bool = False,
    props: Mapping[str, str] | None = None,
    name: str = "test",
) -> bytes:
    """``last(features @ w + bias)`` as a checked ONNX model (opset 17, IR 8); ``nan`` adds NaN to every score;
    ``props`` are metadata properties (the gateway reads a model's basket rules from one)."""
    width = int(w.shape[0])
    nodes = [helper.make_node("Gemm", [input_name, "w", "b"], ["z"]), helper.make_node(last, ["z"], ["p"])]
    initializers = [
        numpy_helper.from_array(w.reshape(width, 1).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([bias], dtype=np.float32), "b"),
    ]
    if nan:
        nodes.append(helper.make_node("Add", ["p", "nan"], ["score"]))
        initializers.append(numpy_helper.from_array(np.array([np.nan], dtype=np.float32), "nan"))
    else:
        nodes.append(helper.make_node("Identity", ["p"], ["score"]))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if props:
        helper.set_model_props(model, dict(props))
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())
