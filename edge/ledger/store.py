"""``Ledger``: the gateway's one SQLite writer and reader (decisions, exposures, consents, token replay).

The outbox to the cloud, the events the cloud refused, the local replica of the cloud and the shoppers' seen
marks are facades over the same writer and lock: ``ledger.outbox`` (edge/ledger/outbox.py),
``ledger.dead_letters`` (edge/ledger/deadletter.py), ``ledger.replica`` (edge/ledger/replica.py) and
``ledger.seen`` (edge/ledger/seen.py). Retention is edge/ledger/retention.py's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeVar

import aiosqlite

from edge.clock import Clock
from edge.events import Decision, Purpose
from edge.ledger import ops, privacy, retention
from edge.ledger.context import ContextStore
from edge.ledger.conversions import Conversion, insert_conversion
from edge.ledger.deadletter import DeadLetters
from edge.ledger.errors import WRITE_ERRORS, LedgerError
from edge.ledger.ops import DECISION_COLUMNS, DECISION_FLAGS, EXPOSURE_COLUMNS, ConsentRow
from edge.ledger.outbox import NewEvent, Outbox, encode_event
from edge.ledger.privacy import ShopperRows
from edge.ledger.recovery import drop_corrupt, open_database
from edge.ledger.replica import Replica
from edge.ledger.retention import FileSpace, Purged, Purger, PurgeStats, Retention
from edge.ledger.seen import SeenMarks
from edge.ledger.writer import BatchWriter, Op, Rows, WriterCounters
from edge.sync.wire import EventClass

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

# A shutdown must finish before systemd's stop timeout (90 s default); a full queue of 10k writes commits
# in well under a second on a Pi, so 10 s only runs out when the disk itself is stuck.
DEFAULT_CLOSE_TIMEOUT_S: Final = 10.0
# A day of a busy store's telemetry at ~10 events/s is ~305 MB of events, ~125 MB on disk (docs/benchmarks.md);
# 64 MiB keeps an SD card safe and still holds a few hours of outage, and privacy/conversion events are kept
# beyond it.
DEFAULT_OUTBOX_MAX_BYTES: Final = 64 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class ClockMarks:
    high_water_wall: float
    jti_forgotten_through_wall: float


@dataclass(slots=True, frozen=True)
class LedgerStats:
    """A snapshot for gateway/health: the write queue, the writer's counters, what writes found, and whether
    a corrupt file was moved aside at start (and where)."""

    queue_depth: int
    queue_max: int
    batches_committed: int
    batches_split: int
    ops_committed: int
    ops_failed: int
    rows_written: int
    largest_batch: int
    last_commit_ms: float
    backpressure_waits: int
    disk_full: bool  # the last write failed for want of space
    disk_full_errors: int
    # Acknowledged events are never dropped (callers wait instead); kept so every queue reports drops.
    dropped: int
    decision_duplicates: int
    exposure_duplicates: int
    exposure_unknown_decision: int
    jti_replays: int
    consent_stale: int
    corrupted_moved_to: str | None
    purge: PurgeStats

    @property
    def corrupt_recovered(self) -> bool:
        return self.corrupted_moved_to is not None


@dataclass(slots=True)
class _Outcomes:
    """Counters of what writes found (not errors: normal redelivery and replay)."""

    decision_duplicates: int = 0
    exposure_duplicates: int = 0
    exposure_unknown_decision: int = 0
    jti_replays: int = 0
    consent_stale: int = 0


class Ledger:
    """Async context manager over one SQLite file; writes return only once committed (durable, see docs)."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        *,
        batch_max: int = 256,
        batch_window_s: float = 0.002,
        queue_max: int = 10_000,
        retention_days: int = 90,
        retention: Retention | None = None,
        corrupt_keep_days: float = 7.0,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        outbox_max_bytes: int | None = DEFAULT_OUTBOX_MAX_BYTES,
        metrics: Metrics | None = None,
    ) -> None:
        if batch_max < 1 or queue_max < 1:
            raise ValueError("batch_max and queue_max must be at least 1")
        if batch_window_s < 0 or close_timeout_s < 0:
            raise ValueError("batch_window_s and close_timeout_s must not be negative")
        if retention_days < 1:
            raise ValueError("retention_days must be at least 1")
        if outbox_max_bytes is not None and outbox_max_bytes < 1:
            raise ValueError("outbox_max_bytes must be at least 1 (or None: no cloud, no outbox)")
        self._path = path
        self._clock = clock
        # A ledger moved aside as corrupt is kept this long for a post-mortem (docs/ledger.md "Erasure").
        self._corrupt_keep_days = corrupt_keep_days
        self._batch_max = batch_max
        self._batch_window_s = batch_window_s
        self._queue_max = queue_max
        self._claims = 0
        self._close_timeout_s = close_timeout_s
        self._db: aiosqlite.Connection | None = None
        self._writer: BatchWriter | None = None
        self._lock: asyncio.Lock | None = None
        self._counters = WriterCounters()
        self._outcomes = _Outcomes()
        self.corrupted_moved_to: Path | None = None
        # Batch commit latencies (the ledger_batch stage), handed to each writer; None: not measured.
        self._metrics = metrics
        self.outbox = Outbox(self._submit, self._read, clock, max_bytes=outbox_max_bytes)
        self.replica = Replica(self._submit, self._read, clock, after_scrub=self._drop_all_corrupt)
        self.dead_letters = DeadLetters(self._submit, self._read)
        self.seen = SeenMarks(self._submit, self._read, clock)
        self.context = ContextStore(self._submit, self._read, path)
        self._purger = Purger(
            self._submit,
            self._read,
            clock,
            self.seen,
            # ``retention_days`` alone: the history tables it always covered (edge/config/ledger.py).
            retention if retention is not None else Retention.history(retention_days),
            drop_corrupt=self._drop_old_corrupt,
        )

    async def __aenter__(self) -> Ledger:
        if self._db is not None:
            raise LedgerError("ledger is already open")
        db, moved_to = await open_database(self._path, self._clock)
        self.corrupted_moved_to = moved_to
        await asyncio.to_thread(drop_corrupt, self._path, self._clock, self._corrupt_keep_days)
        self._db = db
        # Created per open: a Lock belongs to the event loop that first uses it.
        self._lock = asyncio.Lock()
        self._writer = BatchWriter(
            db,
            self._lock,
            self._counters,
            batch_max=self._batch_max,
            batch_window_s=self._batch_window_s,
            queue_max=self._queue_max,
            metrics=self._metrics,
        )
        self._writer.start()
        await self.replica.reload()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        db, writer = self._db, self._writer
        self._db = self._writer = None
        if db is None or writer is None:
            return
        try:
            await self._flush_seen_at_close(writer)
            await writer.close(self._close_timeout_s)
        finally:
            await db.close()

    # --- writes -----------------------------------------------------------------------------------------

    async def record_decision(self, decision: Decision, *, keep_shopper: bool) -> None:
        """Store a decision and queue its telemetry event; the shopper id only when ``keep_shopper``."""
        await self.record_decisions([(decision, keep_shopper)])

    async def record_exposure(
        self, *, decision_id: str, display_id: str, version: int, shown_at_wall: float, acked_at_wall: float
    ) -> bool:
        """Store an acked exposure and queue its event; False (and counted) if already recorded or unknown."""
        outcome = await self._submit(
            ops.insert_exposure(
                decision_id=decision_id,
                display_id=display_id,
                version=version,
                shown_at_wall=shown_at_wall,
                acked_at_wall=acked_at_wall,
                outbox_max_bytes=self.outbox.max_bytes,
            )
        )
        if outcome == "duplicate":
            self._outcomes.exposure_duplicates += 1
        elif outcome == "unknown_decision":
            self._outcomes.exposure_unknown_decision += 1
            _LOGGER.debug("exposure for unknown decision %s on display %s", decision_id, display_id)
        return outcome == "new"

    async def record_decisions(self, decisions: Sequence[tuple[Decision, bool]]) -> None:
        """Store decisions (each with its keep_shopper) in one transaction, before any of them is shown."""
        op = ops.insert_decisions(decisions, outbox_max_bytes=self.outbox.max_bytes)
        self._outcomes.decision_duplicates += len(decisions) - await self._submit(op)

    async def claim_jti(self, jti: str, until_wall: float) -> bool:
        """Claim a token id until ``until_wall``: True if newly claimed (durable), False if it is a replay."""
        op = ops.claim_jti(jti, until_wall, self._clock.wall(), forget=self._forget_now())
        claimed = await self._submit(op)
        if not claimed:
            self._outcomes.jti_replays += 1
        return claimed

    async def record_checkin(
        self, jti: str, until_wall: float, decisions: Sequence[tuple[Decision, bool]]
    ) -> bool:
        """A check-in's jti claim and its decisions (each with keep_shopper), in one durable transaction.

        False, with nothing written, if the jti is claimed already. A crash leaves all of it or none.
        """
        op = ops.record_checkin(
            jti,
            until_wall,
            self._clock.wall(),
            decisions,
            outbox_max_bytes=self.outbox.max_bytes,
            forget=self._forget_now(),
        )
        claimed = await self._submit(op)
        if not claimed:
            self._outcomes.jti_replays += 1
        return claimed

    def _forget_now(self) -> bool:
        """Whether this claim also forgets ended ones (every ``FORGET_EVERY_CLAIMS``-th claim)."""
        self._claims += 1
        return self._claims % ops.FORGET_EVERY_CLAIMS == 0

    async def mark_wall(self, now_wall: float) -> float:
        """Raise the durable high-water mark of the wall clock; returns the mark."""
        # Not forced to disk: losing the last few marks to a power cut only makes the mark a little older.
        return await self._submit(ops.mark_wall(now_wall), durable=False)

    async def set_consent(self, row: ConsentRow, *, claim: tuple[str, float] | None = None) -> None:
        """Upsert one consent: the latest ``at_wall`` wins; on a tie a withdrawal beats a grant.

        Remaining ties (same time, same choice) go to the larger ``source`` string, so the stored state is
        the maximum of a total order and does not depend on the order updates arrive in (local vs. cloud).
        A consent at or before the shopper's erasure (tombstone) is refused too. A stored change whose
        source is not ``"cloud"`` queues a privacy event for the cloud.
        """
        op = ops.upsert_consent(row, outbox_max_bytes=self.outbox.max_bytes)
        if claim is None:
            stored = await self._submit(op)
        else:
            # A shopper's own action (privacy/action): its token's claim in the same transaction.
            stored = await self._submit(ops.claimed(op, *claim, self._clock.wall())) is not False
        if not stored:
            self._outcomes.consent_stale += 1

    async def forget_shopper(
        self, shopper_id: str, *, report: bool = True, claim: tuple[str, float] | None = None
    ) -> bool:
        """Erase the shopper locally: consents, profile, EID key, queued non-privacy events; unlink their id
        from decisions and exposures; leave a tombstone. ``report`` queues an erasure event for the cloud.
        False (nothing done) only when ``claim``'s token was claimed before: that erasure was done then.
        """
        erased_wall = self._clock.wall()
        self.seen.forget(shopper_id)
        event = (
            encode_event("erasure", EventClass.PRIVACY, {}, at_wall=erased_wall, shopper_id=shopper_id)
            if report
            else None
        )
        op = ops.forget_shopper(shopper_id, erased_wall, report=event, outbox_max_bytes=self.outbox.max_bytes)
        if claim is not None:
            # A shopper's own action (privacy/action): its token's claim in the same transaction; None when
            # that token was claimed before (the erasure was done then).
            if await self._submit(ops.claimed(op, *claim, erased_wall)) is None:
                return False
        else:
            await self._submit(op)
        self.replica.remember_tombstone(shopper_id, erased_wall)
        await self.replica.scrub()
        return True

    async def privacy_rows(self, shopper_id: str) -> ShopperRows:
        """Every row about the shopper, read in one transaction (the right of access, edge/privacy/)."""
        return await self._submit(privacy.read_shopper_op(shopper_id), durable=False)

    async def cloud_offer_bodies(self) -> list[tuple[str, str]]:
        """The cloud's offers in the replica (id, JSON body)."""
        return [(str(r[0]), str(r[1])) for r in await self._read("SELECT offer_id, body FROM offers")]

    async def privacy_answered(self, request_id: str) -> bool:
        """Whether the cloud's privacy request ``request_id`` was answered here already."""
        return bool(await self._read("SELECT 1 FROM privacy_audit WHERE request_id = ?", (request_id,)))

    async def record_privacy_export(
        self,
        shopper_id: str,
        at_wall: float,
        via: str,
        detail: str,
        *,
        request_id: str | None = None,
        answer: Sequence[NewEvent] = (),
    ) -> bool:
        """The audit row of an export and its answer's events, in one durable transaction; False when
        ``request_id`` was answered already (nothing written)."""
        op = privacy.record_export(
            shopper_id,
            at_wall,
            via,
            detail,
            request_id=request_id,
            answer=answer,
            outbox_max_bytes=self.outbox.max_bytes,
        )
        return await self._submit(op)

    async def record_device_setting(
        self, device_id: str, reason: str, applied: Mapping[str, object], shoppers: Sequence[str]
    ) -> int:
        """A command a device was sent, with the shoppers behind it (only those with ``measurement``: the
        caller decides). Not forced to disk: a power cut may lose the last few, never a shopper's data."""
        op = ops.record_device_setting(device_id, self._clock.wall(), reason, applied, shoppers)
        return await self._submit(op, durable=False)

    async def record_staff_interaction(
        self, notice_id: str, action: str, team: str, zone: str, shopper_id: str | None
    ) -> bool:
        """A staff answer (durable; its event queued for the cloud); False if this answer was stored before."""
        op = ops.record_staff_interaction(
            notice_id,
            action,
            team,
            zone,
            self._clock.wall(),
            shopper_id,
            outbox_max_bytes=self.outbox.max_bytes,
        )
        return await self._submit(op)

    async def record_conversion(self, conversion: Conversion, event: NewEvent | None) -> bool:
        """A POS sale kept for measurement, durable with its ``conversion`` event (None, or no cloud configured:
        the row alone); False if this sale (its event id) was recorded before: nothing written or queued."""
        op = insert_conversion(conversion, event, outbox_max_bytes=self.outbox.max_bytes)
        return await self._submit(op)

    async def collect_orders(self, order_ids: Sequence[str], via: str) -> list[str]:
        """Open orders handed over (``via`` "pos" or "staff"), durable with their events; the ids that were
        open (an unknown or already collected one changes nothing)."""
        op = ops.collect_orders(order_ids, via, self._clock.wall(), outbox_max_bytes=self.outbox.max_bytes)
        return await self._submit(op)

    async def staff_interactions(self) -> list[tuple[str, str, str, str, float, str | None]]:
        """(notice, action, team, zone, at, shopper or None), oldest first."""
        rows = await self._read(
            "SELECT notice_id, action, team, zone, at_wall, shopper_id FROM staff_interactions ORDER BY at_wall"
        )
        return [(str(n), str(a), str(t), str(z), float(w), s) for n, a, t, z, w, s in rows]

    async def device_settings(self, since_wall: float = 0.0) -> list[tuple[str, float, str, str, list[str]]]:
        """(device, at, reason, values JSON, shoppers) since ``since_wall``, oldest first."""
        rows = await self._read(
            "SELECT s.device_id, s.at_wall, s.reason, s.applied, "
            "(SELECT json_group_array(shopper_id) FROM device_setting_shoppers WHERE setting_id = s.id) "
            "FROM device_settings s WHERE s.at_wall >= ? ORDER BY s.id",
            (since_wall,),
        )
        return [(str(d), float(at), str(r), str(v), list(json.loads(who))) for d, at, r, v, who in rows]

    async def purge(self, now_wall: float) -> Purged:
        """Apply retention by ``now_wall`` (the injected clock's); see ``retention.Purger.purge``."""
        return await self._purger.purge(now_wall)

    async def file_space(self) -> FileSpace:
        """The file's page size, pages and free pages (what a purge can give back)."""
        return await self._purger.file_space()

    async def _drop_old_corrupt(self) -> int:
        """Ledgers moved aside as corrupt, past ``corrupt_keep_days``, deleted; returns how many files."""
        return len(await asyncio.to_thread(drop_corrupt, self._path, self._clock, self._corrupt_keep_days))

    async def _flush_seen_at_close(self, writer: BatchWriter) -> None:
        """A clean stop writes the pending seen marks (a failure is only logged: they are not durable)."""
        marks = self.seen.take()
        if not marks:
            return
        try:
            await writer.submit(retention.record_seen(marks), durable=False)
        except WRITE_ERRORS as exc:
            _LOGGER.warning("ledger: %d seen marks not written at close: %s", len(marks), exc)

    async def _drop_all_corrupt(self) -> None:
        """After an erasure: ledgers moved aside as corrupt cannot be edited, so they go whole."""
        await asyncio.to_thread(drop_corrupt, self._path, self._clock, None)

    # --- reads --------------------------------------------------------------------------------------------

    async def load_consents(self) -> list[ConsentRow]:
        rows = await self._read(
            "SELECT shopper_id, purpose, granted, at_wall, source FROM consents ORDER BY shopper_id, purpose"
        )
        consents: list[ConsentRow] = []
        for shopper_id, purpose, granted, at_wall, source in rows:
            try:
                known = Purpose(purpose)
            except ValueError:
                # Written by a newer gateway (downgrade): keep the row, but this code cannot act on it.
                _LOGGER.warning("ignoring consent with unknown purpose %s", purpose)
                continue
            consents.append(ConsentRow(shopper_id, known, bool(granted), float(at_wall), source))
        return consents

    async def offer_counts_since(self, since_wall: float) -> list[tuple[str, str, int]]:
        """(shopper_id, offer_id, n) over decisions since ``since_wall`` with a kept shopper and an offer."""
        rows = await self._read(
            "SELECT shopper_id, offer_id, COUNT(*) FROM decisions WHERE at_wall >= ? "
            "AND shopper_id IS NOT NULL AND offer_id IS NOT NULL "
            "GROUP BY shopper_id, offer_id ORDER BY shopper_id, offer_id",
            (since_wall,),
        )
        return [(str(shopper), str(offer), int(count)) for shopper, offer, count in rows]

    async def active_jtis(self, now_wall: float) -> list[tuple[str, float]]:
        """Token claims still in force, (jti, until_wall) (to rebuild the in-memory replay guard)."""
        rows = await self._read("SELECT jti, until_wall FROM jti WHERE until_wall > ?", (now_wall,))
        return [(str(jti), float(until)) for jti, until in rows]

    async def clock_marks(self) -> ClockMarks:
        """The durable marks of the wall clock (see ``retention.purge``); -inf where none was written yet."""
        rows: dict[str, float] = dict(await self._read("SELECT mark, wall FROM clock_marks"))
        return ClockMarks(
            high_water_wall=float(rows.get(ops.MARK_HIGH_WATER, float("-inf"))),
            jti_forgotten_through_wall=float(rows.get(ops.MARK_FORGOTTEN, float("-inf"))),
        )

    async def decision(self, decision_id: str) -> dict[str, object] | None:
        rows = await self._read(
            f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions WHERE decision_id = ?",  # noqa: S608
            (decision_id,),
        )
        if not rows:
            return None
        record: dict[str, object] = dict(zip(DECISION_COLUMNS, rows[0], strict=True))
        for flag in DECISION_FLAGS:
            record[flag] = bool(record[flag])
        record["candidates"] = json.loads(str(record["candidates"]))
        return record

    async def exposures(self, *, limit: int = 100) -> list[dict[str, object]]:
        """The most recently written exposures first."""
        rows = await self._read(
            f"SELECT {', '.join(EXPOSURE_COLUMNS)} FROM exposures ORDER BY rowid DESC LIMIT ?",  # noqa: S608
            (limit,),
        )
        return [dict(zip(EXPOSURE_COLUMNS, row, strict=True)) for row in rows]

    async def table_counts(self) -> dict[str, int]:
        rows = await self._read(
            "SELECT (SELECT COUNT(*) FROM decisions), (SELECT COUNT(*) FROM exposures), "
            "(SELECT COUNT(*) FROM consents), (SELECT COUNT(*) FROM jti)"
        )
        decisions, exposures, consents, jti = rows[0]
        return {"decisions": decisions, "exposures": exposures, "consents": consents, "jti": jti}

    def stats(self) -> LedgerStats:
        """Health figures: queue, batches, rows, outcome counters, and whether a corrupt file was replaced."""
        writer, counters, outcomes = self._writer, self._counters, self._outcomes
        return LedgerStats(
            queue_depth=writer.queue_depth if writer is not None else 0,
            queue_max=self._queue_max,
            batches_committed=counters.batches_committed,
            batches_split=counters.batches_split,
            ops_committed=counters.ops_committed,
            ops_failed=counters.ops_failed,
            rows_written=counters.rows_written,
            largest_batch=counters.largest_batch,
            last_commit_ms=counters.last_commit_ms,
            backpressure_waits=counters.backpressure_waits,
            disk_full=counters.disk_full,
            disk_full_errors=counters.disk_full_errors,
            dropped=0,
            decision_duplicates=outcomes.decision_duplicates,
            exposure_duplicates=outcomes.exposure_duplicates,
            exposure_unknown_decision=outcomes.exposure_unknown_decision,
            jti_replays=outcomes.jti_replays,
            consent_stale=outcomes.consent_stale,
            corrupted_moved_to=None if self.corrupted_moved_to is None else str(self.corrupted_moved_to),
            purge=self._purger.stats(),
        )

    # --- plumbing -----------------------------------------------------------------------------------------

    async def _submit(self, run: Op[T], *, durable: bool = True) -> T:
        if self._writer is None:
            raise LedgerError("ledger is not open")
        return await self._writer.submit(run, durable=durable)

    async def _read(self, sql: str, params: Sequence[object] = ()) -> Rows:
        if self._db is None or self._lock is None:
            raise LedgerError("ledger is not open")
        # The writer holds the same lock for a whole batch, so reads see only committed state.
        async with self._lock:
            rows = await self._db.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]
