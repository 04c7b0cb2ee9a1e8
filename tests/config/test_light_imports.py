"""The configuration and ``check-config`` stay light: neither loads numpy or onnxruntime (issue 13).

An installer checks a file on a small box, and every tool, test and part that validates settings imports
``edge.config``; the model's runtime is the gateway's business only. Each check runs in a fresh
interpreter, because this test process has long imported both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.example import trial_example
from tests.support.launch import child_env

HEAVY = ("numpy", "onnxruntime")

_LOADED = (
    "import json, sys\n{code}\nprint(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}})))\n"
)


def _loaded_by(code: str) -> set[str]:
    """Top-level packages loaded after running ``code`` in a fresh interpreter (stdout's last line)."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED.format(code=code)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_configuration_loads_no_model_runtime() -> None:
    loaded = _loaded_by("import edge.config")
    assert "pydantic" in loaded  # the probe sees what was imported
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))


def test_check_config_on_the_example_loads_no_model_runtime(tmp_path: Path) -> None:
    example = trial_example(tmp_path)
    # The launcher is edge-gateway on the test's timeline; its exit code is kept for the assertion.
    code = f"from tests.support.launch import main\nsys.argv[1:] = ['check-config', {str(example)!r}]\ncode = main()"
    loaded = _loaded_by(code + "\nassert code == 0, code")
    assert {"cryptography", "pydantic"} <= loaded  # keys and the catalog were really checked
    assert loaded.isdisjoint(HEAVY), sorted(loaded.intersection(HEAVY))
