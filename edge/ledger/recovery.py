"""Opening the ledger's SQLite file: connection pragmas, integrity check, and moving a corrupt file aside."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import aiosqlite

from edge.clock import Clock
from edge.ledger import tombstones
from edge.ledger.errors import LedgerError
from edge.ledger.migrations import migrate

_LOGGER = logging.getLogger(__name__)

# Only external readers (the sqlite3 shell, a backup) can hold the lock against our single connection;
# 5 s rides over a backup step instead of failing acknowledged writes with SQLITE_BUSY.
BUSY_TIMEOUT_MS: Final = 5_000
# After a checkpoint the WAL is truncated back to this size, so one burst does not leave a large file on
# the SD card forever; 16 MiB is many thousands of batches, so it does not force extra checkpoints.
JOURNAL_SIZE_LIMIT_BYTES: Final = 16 * 1024 * 1024
# Primary result codes that mean "the bytes on disk are not a sound database". Everything else (locked,
# cannot open, I/O error, a bug in a migration) must never move a possibly healthy database aside.
_CORRUPTION_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
# SQLite extended result codes carry the primary code in their low byte.
_PRIMARY_CODE_MASK: Final = 0xFF
_SIDE_FILES: Final = ("-wal", "-shm")
# PRAGMA auto_vacuum: freed pages stay free until ``PRAGMA incremental_vacuum`` gives them back, which the
# purge does in bounded steps (edge/ledger/retention.py). FULL would move pages at every commit, on the path
# of every check-in; NONE never gives anything back.
AUTO_VACUUM_INCREMENTAL: Final = 2


class _CorruptDatabaseError(Exception):
    """quick_check found damage; carries its first finding."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """True if the error says the file itself is damaged (not busy, not missing, not a bad statement)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & _PRIMARY_CODE_MASK) in _CORRUPTION_CODES


async def open_database(path: Path, clock: Clock) -> tuple[aiosqlite.Connection, Path | None]:
    """Open, check and migrate the database; a corrupt file is moved aside and a fresh one started.

    Returns the connection and where a corrupt file was moved (None when the file was sound).
    """
    await asyncio.to_thread(_prepare_location, path)
    try:
        return await _open_checked(path), None
    except _CorruptDatabaseError as exc:
        reason = str(exc)
    except sqlite3.Error as exc:
        if not is_corruption(exc):
            raise LedgerError(f"cannot open ledger database {path}: {exc}") from exc
        reason = str(exc)
    moved_to = await asyncio.to_thread(move_aside, path, clock)
    _LOGGER.error(
        "ledger database %s is corrupt (%s): moved it aside to %s and started a fresh one",
        path,
        reason,
        moved_to,
    )
    try:
        return await _open_checked(path), moved_to
    except (sqlite3.Error, _CorruptDatabaseError) as exc:
        raise LedgerError(f"cannot start a fresh ledger database at {path}: {exc}") from exc


def _prepare_location(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_file():
        # Checked up front for a clear message (and because a failed aiosqlite connect leaves its worker
        # thread to finish on its own).
        raise LedgerError(f"cannot open ledger database {path}: not a regular file")


async def _open_checked(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves so one transaction holds exactly one batch.
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await _configure(db)
        await _quick_check(db)
        await migrate(db)
        await _incremental_vacuum_mode(db, path)
        await db._execute(tombstones.install, db._conn)  # type: ignore[no-untyped-call]
    except BaseException:
        await db.close()
        raise
    return db


async def _configure(db: aiosqlite.Connection) -> None:
    # Before anything writes the header: a new file takes the mode with its first table (an existing file
    # keeps its own until the VACUUM of _incremental_vacuum_mode). It reads the header, so a non-database
    # fails here.
    await db.execute_fetchall(f"PRAGMA auto_vacuum = {AUTO_VACUUM_INCREMENTAL:d}")
    mode = list(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
    if str(mode[0][0]).lower() != "wal":
        raise LedgerError(f"ledger database refused WAL mode (got {mode[0][0]!r})")
    # NORMAL is the connection default (telemetry-like rows); the writer raises it to FULL around every
    # batch holding an acknowledged event. See docs/ledger.md "Durability".
    await db.execute_fetchall("PRAGMA synchronous = NORMAL")
    await db.execute_fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    await db.execute_fetchall("PRAGMA foreign_keys = ON")
    await db.execute_fetchall(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES:d}")
    # Deleted rows are overwritten with zeros, whatever the SQLite build's default (an erasure must not
    # leave the shopper's bytes in free pages; docs/ledger.md "Erasure").
    secure = list(await db.execute_fetchall("PRAGMA secure_delete = ON"))
    if int(secure[0][0]) != 1:
        raise LedgerError("this SQLite refused secure_delete")


async def _incremental_vacuum_mode(db: aiosqlite.Connection, path: Path) -> None:
    """A ledger created before ``auto_vacuum = INCREMENTAL`` changes mode once, by a VACUUM (outside any
    transaction: it rewrites the whole file, through the WAL, which is then truncated).

    A failure (a disk too full for the copy) is logged and the ledger opens as it is: the purge then cannot
    give space back (its pages stay free for SQLite to reuse) and the next start tries again.
    """
    if await _pragma_int(db, "auto_vacuum") == AUTO_VACUUM_INCREMENTAL:
        return
    size = await _pragma_int(db, "page_count") * await _pragma_int(db, "page_size")
    _LOGGER.warning(
        "ledger %s predates incremental vacuum: rewriting it once (VACUUM, %.1f MB) so that purges can "
        "give space back",
        path,
        size / 1e6,
    )
    started = time.perf_counter()  # a log figure, not a decision: the injected clock does not apply
    try:
        await db.execute_fetchall(f"PRAGMA auto_vacuum = {AUTO_VACUUM_INCREMENTAL:d}")
        await db.execute_fetchall("VACUUM")
        await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        if is_corruption(exc):
            raise
        _LOGGER.exception("ledger %s: VACUUM failed; purges cannot give space back until it succeeds", path)
        return
    _LOGGER.warning(
        "ledger %s: incremental vacuum on (auto_vacuum %s) after %.1f s",
        path,
        await _pragma_int(db, "auto_vacuum"),
        time.perf_counter() - started,
    )


async def _pragma_int(db: aiosqlite.Connection, name: str) -> int:
    rows = list(await db.execute_fetchall(f"PRAGMA {name}"))
    return int(rows[0][0])


async def _quick_check(db: aiosqlite.Connection) -> None:
    # quick_check is O(size) but skips index-content verification: fast enough for a start-up check on a
    # Pi, and it catches torn or truncated pages, which is what a power cut on an SD card produces.
    rows = [str(row[0]) for row in await db.execute_fetchall("PRAGMA quick_check")]
    if rows != ["ok"]:
        raise _CorruptDatabaseError("; ".join(rows[:3]) or "quick_check returned nothing")


def move_aside(path: Path, clock: Clock) -> Path:
    """Rename the database and its -wal/-shm to ``<name>.corrupt-<UTC timestamp>``; return the new path.

    The side files go too: a stale WAL next to a fresh database would be replayed into it.
    """
    stamp = datetime.fromtimestamp(clock.wall(), tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.corrupt-{stamp}"
    target = path.with_name(base)
    attempt = 1
    while _any_exists(target):
        target = path.with_name(f"{base}-{attempt}")
        attempt += 1
    for suffix in ("", *_SIDE_FILES):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.replace(target.with_name(target.name + suffix))
    return target


def drop_corrupt(path: Path, clock: Clock, keep_days: float | None) -> list[Path]:
    """Delete the files ``move_aside`` left beside ``path`` that are older than ``keep_days`` (by the time in
    their name, the injected clock's); ``None``: all of them (an erasure: they cannot be edited, and may hold
    the shopper). Returns the files deleted."""
    prefix = f"{path.name}.corrupt-"
    cutoff = None if keep_days is None else clock.wall() - keep_days * 86_400
    dropped = []
    for candidate in sorted(path.parent.glob(prefix + "*")):
        stamp = candidate.name[len(prefix) : len(prefix) + 16]
        try:
            moved = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue  # not one of ours
        if cutoff is None or moved < cutoff:
            candidate.unlink(missing_ok=True)
            dropped.append(candidate)
    if dropped:
        _LOGGER.warning("deleted %d file(s) of ledgers moved aside as corrupt", len(dropped))
    return dropped


def _any_exists(target: Path) -> bool:
    return any(target.with_name(target.name + suffix).exists() for suffix in ("", *_SIDE_FILES))
