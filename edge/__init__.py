"""Store edge gateway: physical signals in, personal service out, privacy first."""

import os

# Before anything imports onnxruntime: on Linux it opens ~/.cache/Microsoft/DeveloperTools/.onnxruntime/
# (``deviceid`` and an ``onnxruntime.db`` event store) at import unless its telemetry is off. The gateway
# writes no file outside its state directory (docs/camera.md); an operator's own value is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
