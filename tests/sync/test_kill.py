"""SIGKILL during pushes and pulls, many times: zero lost, zero double-counted, cursor consistent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

from tests.support.profilestore import running_profile_store
from tests.support.store import REPO

STORE = "s-kill"
# CI runs 30 kills with one seed; EDGE_KILL_SEED and EDGE_KILLS repeat it wider by hand.
KILLS = int(os.environ.get("EDGE_KILLS", "30"))
SEED = int(os.environ.get("EDGE_KILL_SEED", "20261201"))


async def _start(mode: str, db: Path, base_url: str, token: str, tag: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sync.sync_child",
        mode,
        "--db",
        str(db),
        "--url",
        base_url,
        # One form: a token that starts with "-" (about one in 64) would be read as an option.
        f"--token={token}",
        "--store",
        STORE,
        "--tag",
        tag,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        # Kept for a child that dies before READY; a killed child's last words are never read (and are few).
        stderr=asyncio.subprocess.PIPE,
    )


async def _read_until_killed(process: asyncio.subprocess.Process, kill_after_s: float) -> list[str]:
    """Collect the ids the child reported durable, SIGKILL it after ``kill_after_s``, then drain its pipe."""
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 20)
    if first.strip() != b"READY":
        assert process.stderr is not None
        errors = await process.stderr.read()
        raise AssertionError(f"child exited {await process.wait()} before READY: {errors.decode()[-2000:]}")
    await asyncio.sleep(kill_after_s)
    process.send_signal(signal.SIGKILL)
    rest = await process.stdout.read()
    await process.wait()
    ids = []
    for line in rest.decode().splitlines():
        if line.startswith("E ") and len(line) > 30:
            ids.append(line[2:].strip())
    return ids


async def test_sigkill_during_push_and_pull_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    db = tmp_path / "ledger.sqlite"
    async with running_profile_store(tmp_path) as cloud:
        token = await cloud.add_store(STORE)
        reported: list[str] = []
        for kill in range(KILLS):
            # The cloud changes between and during runs, so every run has pages to pull.
            for n in range(rng.randint(2, 6)):
                shopper = f"p-{rng.randint(0, 40)}"
                action = rng.random()
                if action < 0.5:
                    await cloud.put_shopper(shopper, {"visits": kill * 10 + n})
                elif action < 0.85:
                    await cloud.put_consent(shopper, "measurement", rng.random() < 0.5)
                else:
                    await cloud.erase(shopper)
            process = await _start("run", db, cloud.base_url, token, f"k{kill}")
            reported += await _read_until_killed(process, rng.uniform(0.05, 0.5))

        drain = await _start("drain", db, cloud.base_url, token, "drain")
        out, _ = await asyncio.wait_for(drain.communicate(), 60)
        assert drain.returncode == 0
        cursor = out.decode().split("CURSOR ", 1)[1].strip()

        events = await cloud.events(STORE)
        received = [event["id"] for event in events]
        # zero double-counted: the store holds each event once, whatever was resent after a kill
        assert len(received) == len(set(received))
        # zero lost: every event the child reported durable reached the cloud
        missing = set(reported) - set(received)
        assert not missing, f"{len(missing)} of {len(reported)} durable events never arrived"
        assert len(reported) > KILLS * 5  # the kills landed among real traffic
        print(f"{KILLS} kills: {len(reported)} durable events reported, {len(received)} received, each once")
        # the order of each run's events is kept
        position = {event_id: index for index, event_id in enumerate(received)}
        assert [position[i] for i in reported] == sorted(position[i] for i in reported)

        # cursor consistent: the killed gateway ends exactly where one that never died does
        fresh_db = tmp_path / "fresh.sqlite"
        fresh = await _start("drain", fresh_db, cloud.base_url, token, "fresh")
        fresh_out, _ = await asyncio.wait_for(fresh.communicate(), 60)
        assert fresh.returncode == 0
        assert cursor == fresh_out.decode().split("CURSOR ", 1)[1].strip()
        assert _replica(db) == _replica(fresh_db)
        assert _replica(db)["profiles"]  # the comparison is not between two empty sets


def _replica(db: Path) -> dict[str, object]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {
            "profiles": sorted(conn.execute("select shopper_id, profile from profiles")),
            "consents": sorted(
                conn.execute("select shopper_id, purpose, granted, at_wall, source from consents")
            ),
            # Keyed by an HMAC under each ledger's own key (edge/ledger/tombstones.py): compared by time.
            "tombstones": sorted(conn.execute("select erased_wall from tombstones")),
        }
