"""onnxruntime writes no file of its own (issue 18): with HOME and XDG_CACHE_HOME pointed at an empty
directory, loading the offer model, scoring, and running the camera's person detector create nothing there."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run_in_empty_home(tmp_path: Path, script: str) -> list[Path]:
    home = tmp_path / "home"
    home.mkdir()
    # A store's unit has no CI variables, and onnxruntime turns its telemetry off by itself when it sees
    # one (GITHUB_ACTIONS, JENKINS_URL, TF_BUILD and others are named in its binary): the child starts from
    # an environment with nothing inherited but PATH, as a systemd unit does, so both tests hold in CI too.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "PYTHONPATH": str(REPO),
    }
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=tmp_path, check=True, timeout=120
    )
    return sorted(home.rglob("*"))


def test_the_scorer_leaves_no_file_in_home(tmp_path: Path) -> None:
    created = _run_in_empty_home(
        tmp_path,
        f"""
        import numpy as np
        from edge.decide.manifest import N_FEATURES
        from edge.decide.scorer import load_model
        scorer = load_model({str(REPO / "models" / "offers.onnx")!r}, {str(REPO / "models" / "offers.json")!r})
        assert scorer.score(np.zeros((3, N_FEATURES), np.float32)).shape[0] == 3
        import edge.sources.camera.detector
        """,
    )
    assert created == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    """Without the gateway's setting, onnxruntime does write there: the test above would see it."""
    created = _run_in_empty_home(
        tmp_path,
        """
        import os
        os.environ["ORT_DISABLE_TELEMETRY"] = "0"
        import edge
        import onnxruntime
        """,
    )
    assert any(path.name == "onnxruntime.db" for path in created), created
