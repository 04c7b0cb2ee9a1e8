"""How long each table keeps its rows, the purge that applies it by the injected clock, and the space it returns.

Every table of the schema is either history, deleted here by age (``Retention``), or state with a rule of
its own; docs/ledger.md "Retention" lists them all. The purge runs in one transaction of the single writer;
the pages it frees go back to the file system in small steps afterwards (``vacuum_step``), so a check-in
queued behind them waits for one step, never for the whole return.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge.clock import Clock
from edge.ledger.ops import MARK_HIGH_WATER, forget_ended_claims, raise_mark
from edge.ledger.writer import Op, Read, Submit, Tx

if TYPE_CHECKING:
    from edge.ledger.seen import SeenMarks

DAY_S: Final = 86_400.0
# Pages one vacuum step moves and truncates: 1 MiB at the default 4 KiB page, a few ms of the writer here and
# tens on an SD card (docs/ledger.md "Space returned"), so a check-in behind a step barely notices it.
VACUUM_STEP_PAGES: Final = 256
# A purge returns at most this many pages (64 MiB); what is left stays free for SQLite to reuse, and the next
# purge returns more. Bounds the hour's extra writes after a purge of a long outage's backlog.
VACUUM_MAX_PAGES: Final = 16_384
# Shoppers one eviction step takes (their seen marks and profiles deleted in one writer op): ~5 ms here, so
# the purge that follows a fresh store's first month (tens of thousands never seen) never holds the writer
# for a quarter second, as one transaction did (docs/ledger.md "Retention").
EVICT_STEP: Final = 1_000
# Seen marks one write takes: each is checked against the tombstones (an HMAC per mark), ~5 us here, so a
# step holds the writer ~1-2 ms whatever a soak of new shoppers leaves pending.
SEEN_WRITE_STEP: Final = 256
# A shopper's seen marks and the shopper ids they name: (shopper_id, seen_wall).
SeenMark = tuple[str, float]
# The keys of ``Purged.removed``: the tables a purge deletes from (``collected_orders``: pickup_orders,
# ``dead_letters``: dead_letter, ``profiles``/``shopper_seen``: the eviction), and the corrupt files.
REMOVED_KEYS: Final = (
    "jti",
    "exposures",
    "decisions",
    "device_settings",
    "staff_interactions",
    "privacy_audit",
    "dead_letters",
    "collected_orders",
    "conversions",
    "campaign_exposures",
    "profiles",
    "shopper_seen",
    "corrupt_files",
)


@dataclass(slots=True, frozen=True)
class Retention:
    """Days each history table keeps a row (``[ledger.retention]``, edge/config/ledger.py, holds the bounds)."""

    decisions_days: float = 90.0
    exposures_days: float = 90.0
    device_settings_days: float = 90.0
    staff_interactions_days: float = 90.0
    privacy_audit_days: float = 365.0
    dead_letters_days: float = 30.0
    collected_orders_days: float = 30.0
    conversions_days: float = 90.0
    campaign_exposures_days: float = 30.0
    profiles_unseen_days: float = 30.0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if not getattr(self, name) > 0:
                raise ValueError(f"retention {name} must be positive")

    @classmethod
    def history(cls, days: float) -> Retention:
        """Decisions, exposures, device settings and staff answers kept ``days`` (``ledger.retention_days``)."""
        return cls(
            decisions_days=days, exposures_days=days, device_settings_days=days, staff_interactions_days=days
        )


@dataclass(slots=True, frozen=True)
class Purged:
    """What one purge removed: rows per table, the shoppers whose profile was evicted (memory must let them
    go too), and the pages given back to the file system."""

    removed: dict[str, int]
    evicted: tuple[str, ...] = ()
    vacuumed_pages: int = 0

    @property
    def any_removed(self) -> bool:
        return any(self.removed.values())


# (key in Purged.removed, the statement, the cutoffs it takes). Exposures first: they go with their decision
# too, and are counted here rather than by a silent cascade.
_BY_AGE: Final = (
    (
        "exposures",
        "DELETE FROM exposures WHERE acked_at_wall < ? "
        "OR decision_id IN (SELECT decision_id FROM decisions WHERE at_wall < ?)",
        ("exposures", "decisions"),
    ),
    ("decisions", "DELETE FROM decisions WHERE at_wall < ?", ("decisions",)),
    # Their shoppers' links go by the foreign key's cascade.
    ("device_settings", "DELETE FROM device_settings WHERE at_wall < ?", ("device_settings",)),
    ("staff_interactions", "DELETE FROM staff_interactions WHERE at_wall < ?", ("staff_interactions",)),
    ("privacy_audit", "DELETE FROM privacy_audit WHERE at_wall < ?", ("privacy_audit",)),
    # Counted by dead_letter_totals.evicted as well (its trigger counts every row that leaves).
    ("dead_letters", "DELETE FROM dead_letter WHERE given_up_wall < ?", ("dead_letters",)),
    (
        "collected_orders",
        "DELETE FROM pickup_orders WHERE collected_wall IS NOT NULL AND collected_wall < ?",
        ("collected_orders",),
    ),
    # POS sales kept for measurement, by when the gateway heard them; their lines go by the cascade.
    ("conversions", "DELETE FROM conversions WHERE received_wall < ?", ("conversions",)),
    # Campaign exposures, by when the shopper saw the campaign (the cloud deletes them on a withdrawal too).
    (
        "campaign_exposures",
        "DELETE FROM campaign_exposures WHERE at_wall < ?",
        ("campaign_exposures",),
    ),
)

# A seen mark of a shopper erased at or after it is never written (an erasure leaves nothing behind).
_WRITE_SEEN: Final = (
    "INSERT INTO shopper_seen (shopper_id, seen_wall) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?) WHERE NOT EXISTS "
    "(SELECT 1 FROM tombstones WHERE shopper_key = edge_tombstone(json_extract(value, '$[0]')) "
    "AND erased_wall >= json_extract(value, '$[1]')) "
    "ON CONFLICT (shopper_id) DO UPDATE SET seen_wall = excluded.seen_wall"
)


def write_seen(tx: Tx, marks: Sequence[SeenMark]) -> int:
    """Store the marks (the latest written wins: marks are written in the order they were noted)."""
    if not marks:
        return 0
    return tx.execute(_WRITE_SEEN, (json.dumps([[shopper, wall] for shopper, wall in marks]),))


def record_seen(marks: Sequence[SeenMark]) -> Op[int]:
    def run(tx: Tx) -> int:
        return write_seen(tx, marks)

    return run


def purge(now_wall: float, retention: Retention, seen: Sequence[SeenMark] = ()) -> Op[dict[str, int]]:
    """One transaction: the seen marks noted since the last write (so nobody just seen is evicted), ended
    token claims (never while the clock is behind the last purge, edge/identity/replay.py), every history
    table by its own cutoff. The eviction follows in steps (``evict_unseen``)."""
    cutoffs = {
        "decisions": retention.decisions_days,
        "exposures": retention.exposures_days,
        "device_settings": retention.device_settings_days,
        "staff_interactions": retention.staff_interactions_days,
        "privacy_audit": retention.privacy_audit_days,
        "dead_letters": retention.dead_letters_days,
        "collected_orders": retention.collected_orders_days,
        "conversions": retention.conversions_days,
        "campaign_exposures": retention.campaign_exposures_days,
    }
    cutoff = {name: now_wall - days * DAY_S for name, days in cutoffs.items()}

    def run(tx: Tx) -> dict[str, int]:
        write_seen(tx, seen)
        removed = {"jti": forget_ended_claims(tx, now_wall, at_most=None)}
        raise_mark(tx, MARK_HIGH_WATER, now_wall)
        for name, sql, uses in _BY_AGE:
            removed[name] = tx.execute(sql, [cutoff[use] for use in uses])
        return removed

    return run


def evict_unseen(cutoff_wall: float, at_most: int) -> Op[tuple[tuple[str, ...], int]]:
    """Up to ``at_most`` shoppers not seen since ``cutoff_wall`` (the longest unseen first) lose their seen
    mark and their profile: (their ids, profile rows deleted). Consents, EID keys and every other row of
    theirs stay (docs/ledger.md "Retention"); memory lets the profiles go after the commit."""

    def run(tx: Tx) -> tuple[tuple[str, ...], int]:
        evicted = tuple(
            str(row[0])
            for row in tx.returning(
                "DELETE FROM shopper_seen WHERE shopper_id IN (SELECT shopper_id FROM shopper_seen "
                "WHERE seen_wall < ? ORDER BY seen_wall LIMIT ?) RETURNING shopper_id",
                (cutoff_wall, at_most),
            )
        )
        if not evicted:
            return (), 0
        profiles = tx.execute(
            "DELETE FROM profiles WHERE shopper_id IN (SELECT value FROM json_each(?))",
            (json.dumps(evicted),),
        )
        return evicted, profiles

    return run


def vacuum_step(pages: int) -> Op[tuple[int, int]]:
    """Give up to ``pages`` free pages back to the file system: (pages given back, free pages left).

    ``PRAGMA incremental_vacuum(N)`` frees one page per step of its statement, and Python's ``execute`` takes
    one step of a statement that returns no columns: so one page per call, as many calls as pages. Without
    ``auto_vacuum = INCREMENTAL`` (a file whose conversion failed, edge/ledger/recovery.py) it does nothing,
    and the op says so by giving back 0.
    """

    def run(tx: Tx) -> tuple[int, int]:
        free = int(tx.fetch("PRAGMA freelist_count")[0][0])
        for _ in range(min(pages, free)):
            tx.fetch("PRAGMA incremental_vacuum(1)")
        left = int(tx.fetch("PRAGMA freelist_count")[0][0])
        return free - left, left

    return run


@dataclass(slots=True, frozen=True)
class FileSpace:
    """The database file's pages (``PRAGMA page_size``, ``page_count``, ``freelist_count``)."""

    page_size: int
    pages: int
    free_pages: int


@dataclass(slots=True, frozen=True)
class PurgeStats:
    """What the purges since start removed, per table, and the space they gave back (``LedgerStats.purge``)."""

    runs: int
    last_age_s: float | None  # since the last purge, by the injected clock; None before the first
    removed: dict[str, int]  # every key of ``REMOVED_KEYS``
    vacuumed_pages: int


class Purger:
    """The ledger's purge (``Ledger.purge``): the purge op, then the eviction and the space returned in steps
    of their own, each a writer op, so a check-in queued meanwhile waits for one step, never for all."""

    def __init__(
        self,
        submit: Submit,
        read: Read,
        clock: Clock,
        seen: SeenMarks,
        retention: Retention,
        *,
        drop_corrupt: Callable[[], Awaitable[int]],
    ) -> None:
        self._submit = submit
        self._read = read
        self._clock = clock
        self._seen = seen
        self._retention = retention
        self._drop_corrupt = drop_corrupt
        self._runs = 0
        self._last_wall: float | None = None
        self._removed = dict.fromkeys(REMOVED_KEYS, 0)
        self._vacuumed_pages = 0

    async def purge(self, now_wall: float) -> Purged:
        """Seen marks written, ended token claims forgotten (not while the clock is behind the last purge),
        every history table cut at its own age, shoppers not seen for ``profiles_unseen_days`` evicted,
        corrupt files past their days deleted; then, if rows went, free pages given back."""
        seen = self._seen
        await seen.flush()
        marks = seen.take()  # noted since: written in the purge's own transaction
        try:
            # Not durable: a purge lost to a power cut is simply done again by the next one.
            removed = await self._submit(purge(now_wall, self._retention, marks), durable=False)
        except BaseException:
            seen.restore(marks)
            raise
        seen.written(len(marks))
        evicted, profiles = await self._evict(now_wall - self._retention.profiles_unseen_days * DAY_S)
        removed.update(profiles=profiles, shopper_seen=len(evicted))
        pages = await self._return_space() if any(removed.values()) else 0
        removed["corrupt_files"] = await self._drop_corrupt()
        self._runs += 1
        self._last_wall = now_wall
        for table, count in removed.items():
            self._removed[table] = self._removed.get(table, 0) + count
        self._vacuumed_pages += pages
        return Purged(removed, evicted, pages)

    async def _evict(self, cutoff_wall: float) -> tuple[tuple[str, ...], int]:
        """Shoppers not seen since ``cutoff_wall`` lose their profile, ``EVICT_STEP`` per writer op."""
        evicted: list[str] = []
        profiles = 0
        while True:
            step, rows = await self._submit(evict_unseen(cutoff_wall, EVICT_STEP), durable=False)
            evicted.extend(step)
            profiles += rows
            if len(step) < EVICT_STEP:
                return tuple(evicted), profiles

    async def _return_space(self) -> int:
        """Free pages back to the file system, ``VACUUM_STEP_PAGES`` per writer op, at most
        ``VACUUM_MAX_PAGES`` a purge; then the WAL is checkpointed, which is when the file is truncated."""
        returned = 0
        while returned < VACUUM_MAX_PAGES:
            given, left = await self._submit(
                vacuum_step(min(VACUUM_STEP_PAGES, VACUUM_MAX_PAGES - returned)), durable=False
            )
            returned += given
            if not given or not left:
                break
        if returned:
            await self._read("PRAGMA wal_checkpoint(TRUNCATE)")
        return returned

    async def file_space(self) -> FileSpace:
        rows = await self._read(
            "SELECT page_size, page_count, freelist_count FROM pragma_page_size, pragma_page_count, "
            "pragma_freelist_count"
        )
        page_size, pages, free = rows[0]
        return FileSpace(int(page_size), int(pages), int(free))

    def stats(self) -> PurgeStats:
        last = self._last_wall
        return PurgeStats(
            runs=self._runs,
            last_age_s=None if last is None else self._clock.wall() - last,
            removed=dict(self._removed),
            vacuumed_pages=self._vacuumed_pages,
        )
