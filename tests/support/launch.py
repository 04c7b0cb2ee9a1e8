"""``python -m tests.support.launch ARGS``: ``edge-gateway ARGS`` on the test's timeline (docs/testing.md);
``python -m tests.support.launch --cloud ARGS``: ``profile-store ARGS`` (the reference cloud) on it.

A test that starts the gateway as a real process starts it through here (``gateway_command``, with
``child_env``): the same ``edge.cli.main``, with every ``SystemClock`` of the process first pinned to the
parent test's timeline (``EDGE_TEST_WALL_OFFSET``), so the child reads the same "now" as the test that signs
its tokens. Nothing else differs from the real command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edge.cli import main as edge_gateway
from profilestore.cli import main as profile_store
from tests.support.clock import OFFSET_VAR, pin_process

REPO = Path(__file__).resolve().parents[2]
CLOUD = "--cloud"


def gateway_command(*args: str) -> list[str]:
    """The argv of ``edge-gateway ARGS`` on the test's timeline."""
    return [sys.executable, "-m", "tests.support.launch", *args]


def cloud_command(*args: str) -> list[str]:
    """The argv of ``profile-store ARGS`` on the test's timeline (start it with ``child_env``)."""
    return [sys.executable, "-m", "tests.support.launch", CLOUD, *args]


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment (its timeline included) with this checkout importable, plus ``extra``."""
    if OFFSET_VAR not in os.environ:
        msg = f"{OFFSET_VAR} is not set: only a test (tests/conftest.py) starts a pinned child"
        raise RuntimeError(msg)
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def main() -> int:
    pin_process()
    if sys.argv[1:2] == [CLOUD]:
        return profile_store(sys.argv[2:])
    return edge_gateway(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
