"""The check of ``make pi-check`` itself: it must fail on the real failure it exists for (issue 19).

onnxruntime 1.21.0's arm64 wheel dies at import with "Illegal instruction" on the Raspberry Pi 4's
Cortex-A72 (microsoft/onnxruntime#23957, #24112). With that version in the emulated root, under
QEMU_CPU=cortex-a72, scripts/pi_check.py must exit non-zero naming the step, onnxruntime and the CPU.

Marked ``pi``: needs root, QEMU and minutes (the root is built or taken from .pi-root/); the default run
deselects it, ``pytest -m pi`` runs it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BAD_ONNXRUNTIME = "1.21.0"

pytestmark = pytest.mark.pi


@pytest.mark.skipif(os.geteuid() != 0, reason="pi-check needs root: debootstrap, mount, chroot")
@pytest.mark.skipif(platform.machine() == "aarch64", reason="on arm64 the suite runs on the real CPU")
def test_pi_check_fails_on_onnxruntime_illegal_instruction() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "pi_check.py"),
            "--cpu",
            "cortex-a72",
            "--onnxruntime",
            BAD_ONNXRUNTIME,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    failure = next(line for line in output.splitlines() if line.startswith("pi-check FAILED"))
    assert "imports [QEMU_CPU=cortex-a72]" in failure, output
    assert "Illegal instruction" in failure, output
    assert "onnxruntime" in failure, output
