"""What onnxruntime raises for a model it cannot load or run, for every module that runs one.

Its exceptions all derive from ``Exception`` only, so they are named here once: the offer scorer and the
camera's person detector catch exactly these, and anything else is a bug that should surface.
"""

from __future__ import annotations

from typing import Final

from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

ORT_ERRORS: Final = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.NotImplemented,
    ort_errors.RuntimeException,
)
