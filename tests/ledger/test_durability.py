"""An acknowledged write survives the writer process being SIGKILLed mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from edge.clock import ManualClock
from edge.ledger import Ledger

CHILD = Path(__file__).with_name("durability_child.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
ACKS_BEFORE_KILL = 400


async def test_every_acknowledged_exposure_survives_sigkill(db_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(db_path), stdout=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        async with asyncio.timeout(60):
            while len(printed) < ACKS_BEFORE_KILL:
                line = await proc.stdout.readline()
                assert line, "child exited before it was killed"
                printed.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
    # Whatever the child printed before dying is still in the pipe.
    rest = await proc.stdout.read()
    printed += [int(line) for line in rest.split()]
    assert await proc.wait() == -signal.SIGKILL

    async with Ledger(db_path, ManualClock()) as ledger:
        assert ledger.corrupted_moved_to is None
        stored = {row["display_id"] for row in await ledger.exposures(limit=1_000_000)}
    missing = {f"screen-{n}" for n in printed} - stored
    assert not missing, f"{len(missing)} acknowledged exposures lost, e.g. {sorted(missing)[:5]}"
    assert len(printed) >= ACKS_BEFORE_KILL
