"""Per-shopper, per-purpose consent in memory, written through to the ledger; the seed file; the profile cache."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from edge.clock import Clock, iso_utc, parse_iso_utc
from edge.events import Purpose
from storecontract.profiles import PROFILE_FIELDS as PROFILE_FIELDS  # noqa: PLC0414 - re-exported
from storecontract.profiles import minimal_profile as minimal_profile  # noqa: PLC0414

_LOGGER = logging.getLogger(__name__)

# The source recorded for consents read from the seed file.
SEED_SOURCE: Final = "seed"
# Under "latest wins" a grant dated in the future would outrank every withdrawal until that time, so grants
# dated further ahead of our clock than NTP-level skew (the token leeway's upper bound) are refused.
MAX_GRANT_AHEAD_S: Final = 300.0
# Profiles are small JSON objects (~1 KB); 50k of them stay within the gateway's memory budget and cover
# the shoppers of a large store for a season. Least recently used ones go first.
PROFILE_CACHE_MAX: Final = 50_000

ConsentListener = Callable[[str, Purpose, bool], None]
RowFactory = Callable[[str, Purpose, bool, float, str], Any]


class ConsentView(Protocol):
    """What the store reads from a stored consent row (``edge.ledger.ConsentRow`` has exactly this shape)."""

    @property
    def shopper_id(self) -> str: ...
    @property
    def purpose(self) -> Purpose: ...
    @property
    def granted(self) -> bool: ...
    @property
    def at_wall(self) -> float: ...
    @property
    def source(self) -> str: ...


class ConsentSink(Protocol):
    """Where consents become durable: ``edge.ledger.Ledger`` (this module does not import it)."""

    async def set_consent(self, row: Any, *, claim: tuple[str, float] | None = None) -> None:
        """Upsert ``row`` (made by the store's row factory); durable when it returns. ``claim``: a token id
        and until when, claimed in the same transaction (nothing is written if it was claimed before)."""
        ...

    async def load_consents(self) -> Sequence[ConsentView]: ...


@dataclass(slots=True, frozen=True)
class ConsentRecord:
    """One consent state; the default row handed to the sink (same fields as ``edge.ledger.ConsentRow``)."""

    shopper_id: str
    purpose: Purpose
    granted: bool
    at_wall: float
    source: str


class ConsentFileError(Exception):
    """The seed file is unusable; the message names the file, the shopper index and the key."""


@dataclass(slots=True, frozen=True)
class SeedShopper:
    """One validated entry of the seed file."""

    shopper_id: str
    at_wall: float
    consents: Mapping[Purpose, bool]
    profile: dict[str, Any] | None


def _rank(record: ConsentView) -> tuple[float, bool, str]:
    # The ledger keeps the maximum of the same total order, so memory and disk agree whatever order updates
    # arrive in: latest time first, then a withdrawal over a grant, then the larger source string.
    return (record.at_wall, not record.granted, record.source)


_NOTHING: Final[frozenset[Purpose]] = frozenset()


class ConsentStore:
    """The consents every stage reads (synchronously, from memory); every change is written to ``sink``."""

    def __init__(self, sink: ConsentSink, clock: Clock, *, row_factory: RowFactory = ConsentRecord) -> None:
        self._sink = sink
        self._clock = clock
        self._row_factory = row_factory
        self._records: dict[str, dict[Purpose, ConsentView]] = {}
        # Derived from _records on every change: granted() is on the path of every decision.
        self._granted: dict[str, frozenset[Purpose]] = {}
        # Withdrawals already in effect in memory whose durable write failed or was cancelled.
        self._unsynced: dict[tuple[str, Purpose], ConsentRecord] = {}
        self._listeners: list[ConsentListener] = []

    # ----- reads -----
    def granted(self, shopper_id: str) -> frozenset[Purpose]:
        """The purposes ``shopper_id`` has granted now (empty for an unknown shopper)."""
        return self._granted.get(shopper_id, _NOTHING)

    def has(self, shopper_id: str, purpose: Purpose) -> bool:
        return purpose in self._granted.get(shopper_id, _NOTHING)

    def granted_after(self, shopper_id: str, wall: float) -> bool:
        """Whether the shopper holds a grant given after ``wall`` (after their erasure: they came back)."""
        records = self._records.get(shopper_id, {})
        return any(record.granted and record.at_wall > wall for record in records.values())

    def would_change(
        self, shopper_id: str, purpose: Purpose, granted: bool, at_wall: float, source: str
    ) -> bool:
        """Whether ``apply`` with these values would store anything (it outranks what is held)."""
        return self._outranks(ConsentRecord(shopper_id, Purpose(purpose), granted, float(at_wall), source))

    def stats(self) -> dict[str, int]:
        records = sum(len(purposes) for purposes in self._records.values())
        return {"shoppers": len(self._records), "records": records, "unsynced": len(self._unsynced)}

    # ----- listeners -----
    def subscribe(self, callback: ConsentListener) -> Callable[[], None]:
        """Call ``callback(shopper_id, purpose, granted)`` on every change; returns the unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    # ----- changes -----
    async def load(self) -> int:
        """Merge the sink's stored consents into memory (at start); returns the number of rows read."""
        rows = await self._sink.load_consents()
        for row in rows:
            if self._outranks(row):
                self._remember(row)
        return len(rows)

    async def apply(
        self,
        shopper_id: str,
        purpose: Purpose,
        granted: bool,
        at_wall: float,
        source: str,
        *,
        claim: tuple[str, float] | None = None,
    ) -> bool:
        """Apply one consent change (latest wins, a withdrawal wins a tie); True if the grant state changed.

        A change that wins but does not flip the state (a newer grant of a granted purpose) is still stored.
        Raises ValueError on a non-finite time or a grant dated ahead of our clock, and whatever the sink
        raises (the change is then not acknowledged and its source sends it again).
        """
        record = ConsentRecord(shopper_id, Purpose(purpose), granted, float(at_wall), source)
        self._validate(record)
        key = (shopper_id, record.purpose)
        # A resend of a withdrawal whose write failed is written again rather than dropped as "not newer".
        resend = self._unsynced.get(key) == record
        if not resend and not self._outranks(record):
            return False
        if not granted:
            # A withdrawal counts in memory at once, before the durable write returns: from here on no stage
            # may act on the old grant, however slow the disk. Acting on a withdrawal early is always safe.
            changed = self._remember(record)
            self._unsynced[key] = record
            try:
                if changed:
                    self._notify(record)
            finally:
                await self._write_withdrawal(key, record, claim)
            return changed
        # A grant counts only once durable: no stage ever acts on a consent that a crash could lose.
        await self._write(record, claim)
        if not self._outranks(record):
            return False  # a newer change (say a withdrawal) landed while we waited; the ledger kept it too
        changed = self._remember(record)
        if changed:
            self._notify(record)
        return changed

    def absorb(self, rows: Iterable[ConsentView]) -> int:
        """Merge rows another writer already made durable (a cloud page); returns how many changed a grant.

        No write here: the rows are on disk already, committed with the sync cursor.
        """
        changed = 0
        for row in rows:
            if self._outranks(row) and self._remember(row):
                changed += 1
                self._notify(row)
        return changed

    def forget_shopper(self, shopper_id: str) -> bool:
        """Drop every consent of an erased shopper from memory (the ledger deleted the rows already).

        Listeners hear a withdrawal of each purpose that was granted, so every stage lets go at once.
        """
        records = self._records.pop(shopper_id, None)
        granted = self._granted.pop(shopper_id, _NOTHING)
        for key in [key for key in self._unsynced if key[0] == shopper_id]:
            del self._unsynced[key]
        for purpose in sorted(granted):
            for listener in tuple(self._listeners):
                listener(shopper_id, purpose, False)
        return records is not None

    def drop(self, shopper_id: str, purpose: Purpose) -> bool:
        """Forget one purpose's state (the ledger removed its row: the cloud no longer holds it).

        No state means not granted, so listeners hear a withdrawal if it was granted. A withdrawal whose
        write has not landed yet is kept: acting on a withdrawal is always safe.
        """
        records = self._records.get(shopper_id)
        if records is None or purpose not in records or (shopper_id, purpose) in self._unsynced:
            return False
        was_granted = records.pop(purpose).granted
        if not records:
            del self._records[shopper_id]
        granted = self._granted.get(shopper_id, _NOTHING) - {purpose}
        if granted or shopper_id in self._records:
            self._granted[shopper_id] = granted
        else:
            self._granted.pop(shopper_id, None)
        if was_granted:
            for listener in tuple(self._listeners):
                listener(shopper_id, purpose, False)
        return True

    async def seed_from_file(self, path: Path, profiles: ProfileCache | None = None) -> ProfileCache:
        """Apply a seed file's consents (source "seed") and cache its profiles in ``profiles`` (or a new cache).

        Seeding again at every start is harmless: a later change made in the store outranks the seed.
        """
        try:
            raw = await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise ConsentFileError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ConsentFileError(f"{path}: not valid JSON ({exc})") from None
        shoppers = parse_seed(document, str(path))
        latest = self._clock.wall() + MAX_GRANT_AHEAD_S
        for index, shopper in enumerate(shoppers):
            if shopper.at_wall > latest and any(shopper.consents.values()):
                raise ConsentFileError(
                    f"{path}: shoppers[{index}].at: {iso_utc(shopper.at_wall)} is ahead of this gateway's "
                    f"clock ({iso_utc(self._clock.wall())}); is the clock set?"
                )
        cache = ProfileCache() if profiles is None else profiles
        for shopper in shoppers:
            if shopper.profile is not None:
                cache.put(shopper.shopper_id, shopper.profile)
        # Concurrently, so the ledger commits them in a few batches instead of one fsync per consent.
        await asyncio.gather(
            *(
                self.apply(shopper.shopper_id, purpose, granted, shopper.at_wall, SEED_SOURCE)
                for shopper in shoppers
                for purpose, granted in shopper.consents.items()
            )
        )
        _LOGGER.info("seeded consents of %d shoppers from %s", len(shoppers), path)
        return cache

    # ----- internals -----
    def _validate(self, record: ConsentRecord) -> None:
        if not record.shopper_id:
            raise ValueError("a consent needs a shopper id")
        if not math.isfinite(record.at_wall):
            raise ValueError("a consent time must be a finite unix time")
        if record.granted and record.at_wall > self._clock.wall() + MAX_GRANT_AHEAD_S:
            raise ValueError("a grant dated ahead of the gateway's clock would outrank later withdrawals")

    def _outranks(self, record: ConsentView) -> bool:
        current = self._records.get(record.shopper_id, {}).get(record.purpose)
        return current is None or _rank(record) > _rank(current)

    async def _write(self, record: ConsentRecord, claim: tuple[str, float] | None) -> None:
        if claim is None:
            await self._sink.set_consent(self._row(record))
        else:
            await self._sink.set_consent(self._row(record), claim=claim)

    async def _write_withdrawal(
        self, key: tuple[str, Purpose], record: ConsentRecord, claim: tuple[str, float] | None = None
    ) -> None:
        # Until this write returns the withdrawal stays unsynced (also when it raises or is cancelled).
        await self._write(record, claim)
        if self._unsynced.get(key) == record:
            del self._unsynced[key]

    def _remember(self, record: ConsentView) -> bool:
        purposes = self._records.setdefault(record.shopper_id, {})
        purposes[record.purpose] = record
        # Whatever was unsynced for this purpose is outranked now; the ledger will keep the newer row.
        self._unsynced.pop((record.shopper_id, record.purpose), None)
        before = self._granted.get(record.shopper_id, _NOTHING)
        after = frozenset(purpose for purpose, held in purposes.items() if held.granted)
        self._granted[record.shopper_id] = after
        return before != after

    def _notify(self, record: ConsentView) -> None:
        # A copy: a listener may unsubscribe itself while being called.
        for listener in tuple(self._listeners):
            listener(record.shopper_id, record.purpose, record.granted)

    def _row(self, record: ConsentRecord) -> Any:
        return self._row_factory(
            record.shopper_id, record.purpose, record.granted, record.at_wall, record.source
        )


class ProfileCache:
    """Profiles by shopper id (seed file today, the cloud later); read only with personalization consent."""

    def __init__(self, max_entries: int = PROFILE_CACHE_MAX) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._profiles: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.evicted = 0

    def get(self, shopper_id: str) -> dict[str, Any] | None:
        """The cached profile (shared, not a copy: read it, do not change it), or None."""
        profile = self._profiles.get(shopper_id)
        if profile is not None:
            self._profiles.move_to_end(shopper_id)
        return profile

    def put(self, shopper_id: str, profile: Mapping[str, Any]) -> None:
        self._profiles[shopper_id] = minimal_profile(profile)
        self._profiles.move_to_end(shopper_id)
        while len(self._profiles) > self._max:
            self._profiles.popitem(last=False)
            self.evicted += 1

    def forget(self, shopper_id: str) -> bool:
        """Drop the shopper's profile; True if there was one."""
        return self._profiles.pop(shopper_id, None) is not None

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, shopper_id: object) -> bool:
        return shopper_id in self._profiles


def parse_seed(document: Any, origin: str) -> list[SeedShopper]:
    """Validate a parsed seed document; every problem names ``origin``, the shopper's index and the key."""
    shoppers = document.get("shoppers") if isinstance(document, dict) else None
    if not isinstance(shoppers, list):
        raise ConsentFileError(f'{origin}: expected an object with a "shoppers" list')
    parsed: list[SeedShopper] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(shoppers):
        where = f"{origin}: shoppers[{index}]"
        if not isinstance(item, dict):
            raise ConsentFileError(f"{where}: expected an object")
        shopper_id = item.get("id")
        if not isinstance(shopper_id, str) or not shopper_id:
            raise ConsentFileError(f"{where}.id: expected a non-empty string")
        if shopper_id in first_index:
            raise ConsentFileError(
                f"{where}.id: {shopper_id} is already at shoppers[{first_index[shopper_id]}]"
            )
        first_index[shopper_id] = index
        at_text = item.get("at")
        # Required: a seed re-applied at every start with "now" as its time would undo in-store withdrawals.
        if not isinstance(at_text, str):
            raise ConsentFileError(f'{where}.at: expected an ISO-8601 time such as "2026-11-01T10:00:00Z"')
        try:
            at_wall = parse_iso_utc(at_text)
        except ValueError:
            raise ConsentFileError(f"{where}.at: not an ISO-8601 time") from None
        consents = item.get("consents")
        if not isinstance(consents, dict):
            raise ConsentFileError(f"{where}.consents: expected an object of purpose: true/false")
        choices: dict[Purpose, bool] = {}
        for key, value in consents.items():
            try:
                purpose = Purpose(key)
            except ValueError:
                known = ", ".join(p.value for p in Purpose)
                raise ConsentFileError(f"{where}.consents.{key}: unknown purpose (known: {known})") from None
            if not isinstance(value, bool):
                raise ConsentFileError(f"{where}.consents.{key}: expected true or false")
            choices[purpose] = value
        profile = item.get("profile")
        if profile is not None and not isinstance(profile, dict):
            raise ConsentFileError(f"{where}.profile: expected an object")
        parsed.append(SeedShopper(shopper_id, at_wall, choices, profile))
    return parsed
