"""The gateway's local replica of the cloud: pulled change pages applied atomically with their cursor.

Profiles, consents, EID keys, token keys, offers, inventory, pickup orders, campaign exposures and erasures
(tombstones). See docs/ledger.md "Replica" and docs/sync.md for the wire contract.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from edge.clock import Clock
from edge.events import Purpose
from edge.ledger import rebuild, tombstones
from edge.ledger.context import WEATHER_AHEAD_S, store_weather
from edge.ledger.ops import ConsentRow, erase_shopper, store_consent
from edge.ledger.rebuild import CURSOR_KEY, SEED_SOURCE, Swept, queued_consents
from edge.ledger.writer import Op, Read, Submit, Tx
from edge.sync.wire import Change, ChangeKind

# (shopper_id, identity_key (16 bytes), rotation_exponent, clock_offset_s)
EidKeyRow = tuple[str, bytes, int, int]
# (order_id, shopper_id, reference, counter, ready_wall): an open pickup order
OrderRow = tuple[str, str, str, str, float]


@dataclass(slots=True, frozen=True)
class ApplyResult:
    """What one committed page did.

    ``applied`` counts, per kind, the changes that changed (or confirmed) local state; ``stale`` those
    refused because local state was newer (a consent that lost the order, anything older than a tombstone,
    a profile older than the stored one). ``consents`` are the consent rows stored, ``erased`` the shoppers
    erased (with the erasure time), so the caller can update what it keeps in memory. ``swept`` is set when
    the page ended a rebuild after a cursor reset: what the cloud's full state no longer holds.
    """

    cursor: str
    applied: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    consents: tuple[ConsentRow, ...] = ()
    erased: tuple[tuple[str, float], ...] = ()
    # (shopper, purpose) of consents the cloud no longer sends this store (its membership lapsed)
    dropped: tuple[tuple[str, Purpose], ...] = ()
    outbox_anonymised: int = 0
    swept: Swept | None = None


@dataclass(slots=True, frozen=True)
class ReplicaSnapshot:
    """Everything the replica holds, for start-up (consents come from ``Ledger.load_consents``)."""

    profiles: dict[str, dict[str, Any]]
    eid_keys: tuple[EidKeyRow, ...]
    token_keys: dict[str, str]
    offers: dict[str, dict[str, Any]]
    inventory: dict[str, tuple[bool, int | None]]
    tombstones: dict[str, float]  # by keyed hash (``Replica.tombstone`` asks by id)
    cursor: str | None
    revoked_keys: frozenset[str] = frozenset()
    orders: tuple[OrderRow, ...] = ()  # not collected here yet


@dataclass(slots=True)
class _Page:
    """Mutable tally while a page's op runs; frozen into an ``ApplyResult`` after the commit."""

    applied: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    consents: list[ConsentRow] = field(default_factory=list)
    erased: list[tuple[str, float]] = field(default_factory=list)
    dropped: list[tuple[str, Purpose]] = field(default_factory=list)
    outbox_anonymised: int = 0
    swept: Swept | None = None

    def count(self, kind: ChangeKind, *, took: bool) -> None:
        tally = self.applied if took else self.stale
        tally[kind.value] = tally.get(kind.value, 0) + 1


# An upsert of a shopper's data is refused when the shopper was erased at or after the change.
_NOT_ERASED: Final = (
    "NOT EXISTS (SELECT 1 FROM tombstones WHERE shopper_key = edge_tombstone(?) AND erased_wall >= ?)"
)


def _drop_consent(tx: Tx, change: Change) -> bool:
    """The cloud no longer sends this store the shopper (docs/sync.md "Which shoppers a store pulls"): their
    consent row goes, unless it is newer than the delete, the operator's seed, or the store's own change
    still waiting for the cloud (the rebuild sweep's rule). Not the shopper's choice: nothing is pushed."""
    purpose = change.data["purpose"]
    if (change.id, purpose.value) in set(queued_consents(tx)):
        return False
    return bool(
        tx.returning(
            "DELETE FROM consents WHERE shopper_id = ? AND purpose = ? AND at_wall <= ? AND source != ? "
            "RETURNING 1",
            (change.id, purpose.value, change.at_wall, SEED_SOURCE),
        )
    )


def _profile(tx: Tx, change: Change, encoded: str | None, arrived_wall: float) -> bool:
    if change.op == "delete":
        # Ordered by time too, so re-applying an older page never removes a newer profile.
        tx.execute("DELETE FROM profiles WHERE shopper_id = ? AND at_wall <= ?", (change.id, change.at_wall))
        return True
    rows = tx.returning(
        f"INSERT INTO profiles (shopper_id, profile, at_wall) SELECT ?, ?, ? WHERE {_NOT_ERASED} "
        "ON CONFLICT (shopper_id) DO UPDATE SET profile = excluded.profile, at_wall = excluded.at_wall "
        "WHERE excluded.at_wall >= profiles.at_wall RETURNING 1",
        (change.id, encoded, change.at_wall, change.id, change.at_wall),
    )
    if rows:
        # A profile of a shopper never seen here counts from its arrival (docs/ledger.md "Retention"); a
        # later update does not: the cloud changing a profile is no visit to this store.
        tx.execute(
            "INSERT INTO shopper_seen (shopper_id, seen_wall) VALUES (?, ?) ON CONFLICT (shopper_id) DO NOTHING",
            (change.id, arrived_wall),
        )
    return bool(rows)


def _eid_key(tx: Tx, change: Change) -> bool:
    if change.op == "delete":
        tx.execute("DELETE FROM eid_keys WHERE shopper_id = ?", (change.id,))
        return True
    data = change.data
    rows = tx.returning(
        "INSERT INTO eid_keys (shopper_id, identity_key, rotation_exponent, clock_offset_s) "
        f"SELECT ?, ?, ?, ? WHERE {_NOT_ERASED} ON CONFLICT (shopper_id) DO UPDATE SET "
        "identity_key = excluded.identity_key, rotation_exponent = excluded.rotation_exponent, "
        "clock_offset_s = excluded.clock_offset_s RETURNING 1",
        (
            change.id,
            bytes(data["identity_key"]),
            int(data["rotation_exponent"]),
            int(data["clock_offset_s"]),
            change.id,
            change.at_wall,
        ),
    )
    return bool(rows)


def _token_key(tx: Tx, change: Change) -> bool:
    if change.op == "delete":
        # A revocation outlives the key row: it must also beat a key file naming the kid, at every start.
        tx.execute("DELETE FROM token_keys WHERE kid = ?", (change.id,))
        tx.execute(
            "INSERT INTO revoked_keys (kid, revoked_wall) VALUES (?, ?) ON CONFLICT (kid) "
            "DO UPDATE SET revoked_wall = excluded.revoked_wall",
            (change.id, change.at_wall),
        )
    else:
        tx.execute(
            "INSERT INTO token_keys (kid, public_key_pem) VALUES (?, ?) ON CONFLICT (kid) "
            "DO UPDATE SET public_key_pem = excluded.public_key_pem",
            (change.id, str(change.data["public_key_pem"])),
        )
        # The cloud trusts the kid again (pages come in the cloud's order, so this is the later word).
        tx.execute("DELETE FROM revoked_keys WHERE kid = ?", (change.id,))
    return True


def _offer(tx: Tx, change: Change, encoded: str | None) -> bool:
    if change.op == "delete":
        tx.execute("DELETE FROM offers WHERE offer_id = ?", (change.id,))
    else:
        tx.execute(
            "INSERT INTO offers (offer_id, body) VALUES (?, ?) ON CONFLICT (offer_id) "
            "DO UPDATE SET body = excluded.body",
            (change.id, encoded),
        )
    return True


def _inventory(tx: Tx, change: Change) -> bool:
    if change.op == "delete":
        tx.execute("DELETE FROM inventory WHERE offer_id = ?", (change.id,))
        return True
    quantity = change.data.get("quantity")
    tx.execute(
        "INSERT INTO inventory (offer_id, available, quantity) VALUES (?, ?, ?) ON CONFLICT (offer_id) "
        "DO UPDATE SET available = excluded.available, quantity = excluded.quantity",
        (change.id, int(bool(change.data["available"])), None if quantity is None else int(quantity)),
    )
    return True


def _order(tx: Tx, change: Change) -> bool:
    if change.op == "delete":
        tx.execute("DELETE FROM pickup_orders WHERE order_id = ?", (change.id,))
        return True
    data = change.data
    shopper = str(data["shopper_id"])
    # A collection here stands until the cloud deletes the order: an update never reopens it.
    rows = tx.returning(
        "INSERT INTO pickup_orders (order_id, shopper_id, reference, counter, ready_wall) "
        f"SELECT ?, ?, ?, ?, ? WHERE {_NOT_ERASED} ON CONFLICT (order_id) DO UPDATE SET "
        "shopper_id = excluded.shopper_id, reference = excluded.reference, counter = excluded.counter, "
        "ready_wall = excluded.ready_wall RETURNING 1",
        (
            change.id,
            shopper,
            str(data["reference"]),
            str(data["counter"]),
            float(data["ready_wall"]),
            shopper,
            change.at_wall,
        ),
    )
    return bool(rows)


def _campaign_exposure(tx: Tx, change: Change) -> bool:
    """Kept only while the shopper's ``measurement`` consent here is a grant (a withdrawal at the store may
    be ahead of the cloud) and they were not erased since; a delete (withdrawal, lapse) removes it."""
    if change.op == "delete":
        tx.execute("DELETE FROM campaign_exposures WHERE exposure_id = ?", (change.id,))
        return True
    data = change.data
    shopper = str(data["shopper_id"])
    rows = tx.returning(
        "INSERT INTO campaign_exposures (exposure_id, shopper_id, campaign_id, at_wall, skus, category) "  # noqa: S608
        f"SELECT ?, ?, ?, ?, ?, ? WHERE {_NOT_ERASED} AND EXISTS (SELECT 1 FROM consents "
        "WHERE shopper_id = ? AND purpose = ? AND granted = 1) ON CONFLICT (exposure_id) DO UPDATE SET "
        "shopper_id = excluded.shopper_id, campaign_id = excluded.campaign_id, at_wall = excluded.at_wall, "
        "skus = excluded.skus, category = excluded.category RETURNING 1",
        (
            change.id,
            shopper,
            str(data["campaign_id"]),
            float(data["at_wall"]),
            json.dumps(list(data["skus"]), separators=(",", ":"), ensure_ascii=False),
            data["category"],
            shopper,
            change.at_wall,
            shopper,
            Purpose.MEASUREMENT.value,
        ),
    )
    return bool(rows)


def _weather(tx: Tx, change: Change, arrived_wall: float) -> bool:
    """The store's weather from the cloud: kept if newer than the one kept (the sensor's too), and not dated
    beyond the skew ahead of the gateway's clock (it would outrank every true reading until then)."""
    data = change.data
    observed = float(data["observed_wall"])
    if observed > arrived_wall + WEATHER_AHEAD_S:
        return False
    reading = {key: data[key] for key in ("temp_c", "precipitation", "forecast_max_c")}
    return store_weather(tx, "cloud", observed, reading)


def _consent_row(change: Change) -> ConsentRow:
    data = change.data
    return ConsentRow(
        change.id,
        Purpose(data["purpose"]),
        bool(data["granted"]),
        float(data["at_wall"]),
        str(data["source"]),
    )


def _encoded(change: Change) -> str | None:
    """The JSON text a profile or offer upsert stores (compact), or None for other changes."""
    if change.op != "upsert":
        return None
    if change.kind is ChangeKind.PROFILE:
        value = change.data["profile"]
    elif change.kind is ChangeKind.OFFER:
        value = change.data["offer"]
    else:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def apply_page_op(
    changes: Sequence[Change], cursor: str, *, arrived_wall: float, complete: bool = False
) -> Op[_Page]:
    """One op for a whole page: every change in order, then the cursor; any failure rolls back all of it.
    ``arrived_wall``: now (a new profile's eviction counts from it).

    During a rebuild (``rebuild.begin``) the page also marks its keys, and a ``complete`` page (the cloud
    has nothing more) ends the rebuild with the sweep, in the same transaction.
    """
    # Decoded and encoded here, in the caller's context: a malformed change fails before it reaches a batch.
    prepared: list[tuple[ChangeKind, Change, str | None, ConsentRow | None]] = []
    for change in changes:
        kind = ChangeKind(change.kind)
        if change.op not in ("upsert", "delete"):
            raise ValueError(f"change {change.seq}: unknown op {change.op!r}")
        consent = _consent_row(change) if kind is ChangeKind.CONSENT and change.op == "upsert" else None
        prepared.append((kind, change, _encoded(change), consent))

    def run(tx: Tx) -> _Page:
        page = _Page()
        for kind, change, encoded, consent in prepared:
            took = True
            if kind is ChangeKind.PROFILE:
                took = _profile(tx, change, encoded, arrived_wall)
            elif kind is ChangeKind.CONSENT:
                if consent is not None:
                    took = store_consent(tx, consent)
                    if took:
                        page.consents.append(consent)
                else:
                    took = _drop_consent(tx, change)
                    if took:
                        page.dropped.append((change.id, change.data["purpose"]))
            elif kind is ChangeKind.EID_KEY:
                took = _eid_key(tx, change)
            elif kind is ChangeKind.TOKEN_KEY:
                took = _token_key(tx, change)
            elif kind is ChangeKind.OFFER:
                took = _offer(tx, change, encoded)
            elif kind is ChangeKind.INVENTORY:
                took = _inventory(tx, change)
            elif kind is ChangeKind.ORDER:
                took = _order(tx, change)
            elif kind is ChangeKind.WEATHER:
                took = _weather(tx, change, arrived_wall)
            elif kind is ChangeKind.CAMPAIGN_EXPOSURE:
                took = _campaign_exposure(tx, change)
            elif kind is ChangeKind.ERASURE:
                if change.op == "upsert":
                    # No erasure event: the cloud is where this one came from.
                    page.outbox_anonymised += erase_shopper(tx, change.id, change.at_wall)
                    page.erased.append((change.id, change.at_wall))
            else:  # pragma: no cover - ChangeKind is closed; a new kind needs code here first
                raise ValueError(f"change {change.seq}: unknown kind {kind!r}")
            page.count(kind, took=took)
        tx.execute(
            "INSERT INTO sync_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (CURSOR_KEY, cursor),
        )
        if rebuild.rebuilding(tx):
            rebuild.mark(tx, changes)
            if complete:
                page.swept = rebuild.sweep(tx)
        return page

    return run


class Replica:
    """``ledger.replica``: apply pulled pages, read the cursor and the whole replica, check tombstones.

    Shares the ledger's single writer and read lock. Tombstones are also kept in memory (loaded at open,
    updated after each commit that adds one) so the hot path can ask without a query.
    """

    def __init__(
        self,
        submit: Submit,
        read: Read,
        clock: Clock,
        *,
        after_scrub: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._submit = submit
        self._read = read
        self._clock = clock
        self._after_scrub = after_scrub
        # By keyed hash, as on disk (edge/ledger/tombstones.py): memory holds no erased id either.
        self._tombstones: dict[str, float] = {}
        self._key = b""
        self.scrubs = 0  # erasures made to leave the WAL (tests wait for it)

    async def reload(self) -> None:
        """Refill the in-memory tombstones from the database (the ledger calls this when it opens)."""
        (key,) = await self._read("SELECT value FROM ledger_secrets WHERE name = ?", (tombstones.KEY_NAME,))
        self._key = bytes(key[0])
        rows = await self._read("SELECT shopper_key, erased_wall FROM tombstones")
        self._tombstones = {str(hashed): float(wall) for hashed, wall in rows}

    async def apply_page(
        self, changes: Sequence[Change], cursor: str, *, complete: bool = False
    ) -> ApplyResult:
        """Apply a page and store its cursor in one durable transaction: all of it, or (raising) none.

        Re-applying a page is harmless: every change is an idempotent upsert/delete or ordered by time.
        ``complete``: the cloud said there is no more now; it ends a rebuild (``ApplyResult.swept``).
        """
        op = apply_page_op(changes, cursor, arrived_wall=self._clock.wall(), complete=complete)
        page = await self._submit(op)
        for shopper_id, erased_wall in page.erased:
            self.remember_tombstone(shopper_id, erased_wall)
        return ApplyResult(
            cursor=cursor,
            applied=page.applied,
            stale=page.stale,
            consents=tuple(page.consents),
            erased=tuple(page.erased),
            dropped=tuple(page.dropped),
            outbox_anonymised=page.outbox_anonymised,
            swept=page.swept,
        )

    async def begin_rebuild(self) -> None:
        """After a cursor reset: drop the cursor and start a rebuild (durable; see edge/ledger/rebuild.py)."""
        await self._submit(rebuild.begin)

    async def rebuilding(self) -> bool:
        rows = await self._read("SELECT 1 FROM sync_state WHERE key = ?", (rebuild.REBUILD_KEY,))
        return bool(rows)

    async def revoked_keys(self) -> frozenset[str]:
        """Token key ids the cloud revoked: refused whatever the key files say."""
        return frozenset(str(kid) for (kid,) in await self._read("SELECT kid FROM revoked_keys"))

    async def cursor(self) -> str | None:
        rows = await self._read("SELECT value FROM sync_state WHERE key = ?", (CURSOR_KEY,))
        return str(rows[0][0]) if rows else None

    def tombstone(self, shopper_id: str) -> float | None:
        """When the shopper was erased (unix seconds), or None: from memory, no query."""
        return self._tombstones.get(tombstones.tombstone_key(self._key, shopper_id))

    def remember_tombstone(self, shopper_id: str, erased_wall: float) -> None:
        """Record a committed erasure in memory (the later time wins, as in the table)."""
        hashed = tombstones.tombstone_key(self._key, shopper_id)
        known = self._tombstones.get(hashed)
        if known is None or erased_wall > known:
            self._tombstones[hashed] = erased_wall

    async def scrub(self) -> None:
        """After an erasure: the WAL checkpointed into the file and truncated, so the shopper's old rows live
        neither in the WAL's frames nor (``secure_delete``) in the file's free pages."""
        await self._read("PRAGMA wal_checkpoint(TRUNCATE)")
        if self._after_scrub is not None:
            await self._after_scrub()
        self.scrubs += 1

    async def load(self) -> ReplicaSnapshot:
        """The whole replica, for start-up (each table is read on its own: call it before sync runs)."""
        read = self._read
        profiles = {str(s): json.loads(p) for s, p in await read("SELECT shopper_id, profile FROM profiles")}
        eid_keys = tuple(
            (str(s), bytes(k), int(e), int(o))
            for s, k, e, o in await read(
                "SELECT shopper_id, identity_key, rotation_exponent, clock_offset_s FROM eid_keys "
                "ORDER BY shopper_id"
            )
        )
        token_keys = {str(k): str(p) for k, p in await read("SELECT kid, public_key_pem FROM token_keys")}
        offers = {str(o): json.loads(b) for o, b in await read("SELECT offer_id, body FROM offers")}
        inventory = {
            str(o): (bool(a), None if q is None else int(q))
            for o, a, q in await read("SELECT offer_id, available, quantity FROM inventory")
        }
        erased = {str(s): float(w) for s, w in await read("SELECT shopper_key, erased_wall FROM tombstones")}
        orders = tuple(
            (str(o), str(s), str(r), str(c), float(w))
            for o, s, r, c, w in await read(
                "SELECT order_id, shopper_id, reference, counter, ready_wall FROM pickup_orders "
                "WHERE collected_wall IS NULL ORDER BY order_id"
            )
        )
        return ReplicaSnapshot(
            profiles=profiles,
            eid_keys=eid_keys,
            token_keys=token_keys,
            offers=offers,
            inventory=inventory,
            tombstones=erased,
            cursor=await self.cursor(),
            revoked_keys=await self.revoked_keys(),
            orders=orders,
        )
