"""The single writer: batching, per-op failure isolation, backpressure, and flushing at close."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from edge.clock import ManualClock
from edge.ledger import Ledger, LedgerError


async def test_concurrent_writes_share_few_transactions(ledger: Ledger, clock: ManualClock) -> None:
    before = ledger.stats()
    exp = clock.wall() + 600
    results = await asyncio.gather(*(ledger.claim_jti(f"j{i}", exp) for i in range(1000)))
    assert results == [True] * 1000
    stats = ledger.stats()
    batches = int(stats.batches_committed) - int(before.batches_committed)
    # 1000 ops at batch_max=256 need at least 4 transactions; one each would be 1000.
    assert 4 <= batches <= 20
    assert stats.largest_batch == 256
    assert int(stats.ops_committed) - int(before.ops_committed) == 1000
    assert int(stats.rows_written) - int(before.rows_written) == 1000
    assert stats.queue_depth == 0
    assert (await ledger.table_counts())["jti"] == 1000


async def test_a_failing_op_fails_only_itself(ledger: Ledger, make_decision, clock: ManualClock) -> None:
    good = [ledger.record_decision(make_decision(f"ok{i}"), keep_shopper=True) for i in range(20)]
    # propensity outside [0, 1] violates a CHECK constraint inside the shared transaction.
    bad = ledger.record_decision(make_decision("bad", propensity=2.0), keep_shopper=True)
    claims = [ledger.claim_jti(f"j{i}", clock.wall() + 60) for i in range(20)]
    results = await asyncio.gather(*good[:10], bad, *good[10:], *claims, return_exceptions=True)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], sqlite3.IntegrityError)
    assert results[10] is errors[0]
    assert results[21:] == [True] * 20
    stats = ledger.stats()
    assert stats.batches_split == 1
    assert stats.ops_failed == 1
    assert await ledger.table_counts() == {"decisions": 20, "exposures": 0, "consents": 0, "jti": 20}
    assert await ledger.decision("bad") is None
    # The writer is still healthy afterwards.
    assert await ledger.claim_jti("after", clock.wall() + 60)


async def test_full_queue_makes_callers_wait_not_drop(db_path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock, queue_max=2, batch_max=1) as ledger:
        results = await asyncio.gather(*(ledger.claim_jti(f"j{i}", clock.wall() + 60) for i in range(50)))
        assert results == [True] * 50
        stats = ledger.stats()
        assert int(stats.backpressure_waits) > 0
        assert stats.batches_committed == 50
        assert stats.dropped == 0
        assert (await ledger.table_counts())["jti"] == 50


async def test_close_commits_everything_queued(db_path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock, batch_max=16) as ledger:
        tasks = [asyncio.create_task(ledger.claim_jti(f"j{i}", clock.wall() + 60)) for i in range(300)]
        await asyncio.sleep(0)  # let every task queue its write, then close with them all pending
        assert int(ledger.stats().queue_depth) > 0
    assert [task.result() for task in tasks] == [True] * 300
    async with Ledger(db_path, clock) as ledger:
        assert (await ledger.table_counts())["jti"] == 300


async def test_close_is_bounded_and_never_leaves_a_caller_hanging(db_path, clock: ManualClock) -> None:
    async with Ledger(db_path, clock, batch_max=1, close_timeout_s=0.0) as ledger:
        tasks = [asyncio.create_task(ledger.claim_jti(f"j{i}", clock.wall() + 60)) for i in range(200)]
        await asyncio.sleep(0)
    await asyncio.wait(tasks, timeout=5)
    assert all(task.done() for task in tasks)
    claimed = {f"j{i}" for i, task in enumerate(tasks) if not task.exception() and task.result()}
    failed = [task.exception() for task in tasks if task.exception()]
    assert failed
    assert all(isinstance(exc, LedgerError) for exc in failed)
    async with Ledger(db_path, clock) as ledger:
        # Every write acknowledged as claimed is really there (a replay now).
        for jti in claimed:
            assert await ledger.claim_jti(jti, clock.wall() + 60) is False


async def test_use_outside_the_context_raises(db_path, clock: ManualClock) -> None:
    ledger = Ledger(db_path, clock)
    with pytest.raises(LedgerError, match="not open"):
        await ledger.claim_jti("j", 1.0)
    async with ledger:
        pass
    with pytest.raises(LedgerError, match="not open"):
        await ledger.table_counts()
