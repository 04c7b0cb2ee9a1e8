"""The ledger's single writer: a bounded queue of write ops, committed in batches by one task."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import aiosqlite

from edge.ledger.errors import LedgerError

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")


class Tx:
    """The open transaction a write op runs in (on the connection's own thread); counts the rows it changes.

    Ops are plain functions: a whole batch (BEGIN, every op, COMMIT) runs in one call on the database
    thread, so a commit costs one thread hop, not one per statement (docs/ledger.md "Batching").
    """

    __slots__ = ("_conn", "changed")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.changed = 0

    def returning(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Run a write with a RETURNING clause; each returned row is a changed row."""
        rows = self._conn.execute(sql, params).fetchall()
        self.changed += len(rows)
        return rows

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a write and return how many rows it changed."""
        cursor = self._conn.execute(sql, params)
        try:
            count = max(cursor.rowcount, 0)
        finally:
            cursor.close()
        self.changed += count
        return count

    def fetch(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Read inside the transaction (sees this batch's own uncommitted writes)."""
        return self._conn.execute(sql, params).fetchall()


# A write op: runs inside the batch's transaction on the database thread; must not block on anything else.
Op = Callable[[Tx], T]
Rows = list[tuple[Any, ...]]


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL, or the OS saying there is no room (ENOSPC, a quota, a file size limit)."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Submit(Protocol):
    """How the ledger's facades queue a write op: ``Ledger._submit`` (commits before it returns)."""

    def __call__(self, run: Op[T], *, durable: bool = True) -> Awaitable[T]: ...


class Read(Protocol):
    """How the ledger's facades read committed state: ``Ledger._read`` (under the writer's lock)."""

    def __call__(self, sql: str, params: Sequence[object] = ()) -> Awaitable[Rows]: ...


@dataclass(slots=True)
class WriterCounters:
    """Monotonic counters of the writer, read by ``Ledger.stats``."""

    batches_committed: int = 0
    batches_split: int = 0  # batches that failed and were retried op by op
    ops_committed: int = 0
    ops_failed: int = 0
    rows_written: int = 0
    largest_batch: int = 0
    last_commit_ms: float = 0.0
    backpressure_waits: int = 0
    disk_full: bool = False  # the last write failed for want of space; cleared by the next commit
    disk_full_errors: int = 0


@dataclass(slots=True)
class _Queued:
    run: Op[Any]
    future: asyncio.Future[Any]
    durable: bool
    settled: bool = False


class BatchWriter:
    """Owns the write side of the connection: every write goes through ``submit``.

    The lock is shared with the readers, so a read never sees a batch that is not yet committed.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        lock: asyncio.Lock,
        counters: WriterCounters,
        *,
        batch_max: int,
        batch_window_s: float,
        queue_max: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._lock = lock
        self.counters = counters
        self._batch_max = batch_max
        self._batch_window_s = batch_window_s
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(maxsize=queue_max)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._full_sync: bool | None = None  # unknown until the first batch sets it
        # The ledger_batch stage (one transaction, lock wait to COMMIT); None costs one check per batch.
        self.metrics = metrics

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def submit(self, run: Op[T], *, durable: bool) -> T:
        """Queue a write op and return its result once its transaction has committed.

        A full queue makes the caller wait (backpressure): these are acknowledged events, never dropped.
        Once queued, an op is written even if the caller is cancelled while waiting for the commit.
        """
        if self._closing or self._task is None or self._task.done():
            raise LedgerError("ledger is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        item = _Queued(run, future, durable)
        if self._queue.full():
            self.counters.backpressure_waits += 1
            await self._queue.put(item)
        else:
            self._queue.put_nowait(item)
        return await future

    async def close(self, timeout_s: float) -> None:
        """Commit everything queued (at most ``timeout_s``), then stop the task; anything left fails."""
        self._closing = True
        if self._task is None:
            return
        flush = asyncio.create_task(self._queue.join(), name="ledger-flush")
        done, _ = await asyncio.wait([flush], timeout=timeout_s)
        if not done:
            flush.cancel()
            await asyncio.wait([flush])
            _LOGGER.error(
                "ledger writer did not flush within %s s; %s writes fail", timeout_s, self.queue_depth
            )
        self._task.cancel()
        await asyncio.wait([self._task])
        if not self._task.cancelled() and (crash := self._task.exception()) is not None:
            _LOGGER.error("ledger writer had stopped on an unexpected error: %r", crash)
        self._fail_queued(LedgerError("ledger closed before this write was committed"))

    async def _run(self) -> None:
        batch: list[_Queued] = []
        try:
            while True:
                batch = [await self._queue.get()]
                await self._fill(batch)
                await self._commit(batch)
                batch = []
        finally:
            # Reached only by cancellation at close (or a bug): nobody may wait forever on a future.
            error = LedgerError("ledger writer stopped before this write was committed")
            for item in batch:
                if not item.settled:
                    self._finish(item, error=error)
            self._fail_queued(error)

    async def _fill(self, batch: list[_Queued]) -> None:
        """Take what is queued, up to batch_max, waiting at most the batch window for more."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_window_s
        while len(batch) < self._batch_max:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                return

    async def _commit(self, batch: list[_Queued]) -> None:
        try:
            results = await self._transaction(batch)
        except Exception as exc:  # noqa: BLE001 - any op's error: split the batch, each op meets its own
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            self.counters.batches_split += 1
            _LOGGER.warning("ledger batch of %s failed (%s); retrying each write alone", len(batch), exc)
            for item in batch:
                await self._commit_alone(item)
            return
        for item, result in zip(batch, results, strict=True):
            self._finish(item, result=result)

    async def _commit_alone(self, item: _Queued) -> None:
        try:
            (result,) = await self._transaction([item])
        except Exception as exc:  # noqa: BLE001 - forwarded to the one caller whose write failed
            self._fail(item, exc)
            return
        self._finish(item, result=result)

    def _fail(self, item: _Queued, exc: Exception) -> None:
        self.counters.ops_failed += 1
        if is_disk_full(exc):
            if not self.counters.disk_full:
                _LOGGER.error("ledger: the disk is full; writes fail until space is freed (%s)", exc)
            self.counters.disk_full = True
            self.counters.disk_full_errors += 1
        self._finish(item, error=exc)

    def _finish(self, item: _Queued, *, result: object = None, error: BaseException | None = None) -> None:
        item.settled = True
        self._queue.task_done()
        # The caller may have been cancelled meanwhile; its write still stands, there is just nobody to tell.
        if item.future.done():
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    async def _transaction(self, items: list[_Queued]) -> list[Any]:
        """Run the ops in one transaction and commit; results are only meaningful after COMMIT returned."""
        started = time.perf_counter()  # a metric, not a decision: the injected clock does not apply
        full = any(item.durable for item in items)
        async with self._lock:
            # One hop to the database thread for the whole batch (aiosqlite runs calls there in order).
            batch = await self._db._execute(  # type: ignore[no-untyped-call]
                self._run_batch, [item.run for item in items], full
            )
        results, changed = cast(tuple[list[Any], int], batch)
        counters = self.counters
        counters.disk_full = False
        counters.batches_committed += 1
        counters.ops_committed += len(items)
        counters.rows_written += changed
        counters.largest_batch = max(counters.largest_batch, len(items))
        elapsed = time.perf_counter() - started
        counters.last_commit_ms = elapsed * 1000.0
        if self.metrics is not None:
            self.metrics.ledger_batch.observe(elapsed)
        return results

    def _run_batch(self, ops: list[Op[Any]], full: bool) -> tuple[list[Any], int]:
        """On the database thread: synchronous level, BEGIN IMMEDIATE, every op, COMMIT (or ROLLBACK)."""
        conn: sqlite3.Connection = self._db._conn
        # synchronous cannot change inside a transaction, so it is set per batch, and only when it changes.
        if full != self._full_sync:
            conn.execute("PRAGMA synchronous = FULL" if full else "PRAGMA synchronous = NORMAL")
            self._full_sync = full
        tx = Tx(conn)
        # IMMEDIATE takes the write lock up front, so busy_timeout applies here, not mid-batch.
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [op(tx) for op in ops]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return results, tx.changed

    def _fail_queued(self, error: LedgerError) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._finish(item, error=error)
