"""Rebuilding the replica after a cursor reset: mark what the cloud's full state holds, sweep the rest.

A reset (``410 cursor_reset``) means the cloud's database is not the one our cursor came from. Pulling from
the beginning only upserts, so what the new cloud no longer has would survive. Instead: ``begin`` drops the
cursor and opens a rebuild (durably), every page of it marks the keys it carries, and its last page sweeps
every replica row not marked, in that page's transaction. A crash in between resumes the rebuild from the
page cursor, marks intact. See docs/sync.md "Cursor reset" for what is kept and why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from edge.events import Purpose
from edge.ledger.eventcodec import KIND_CODES, row_data
from edge.ledger.writer import Tx
from edge.sync.wire import Change, ChangeKind, EventClass

REBUILD_KEY: Final = "rebuild"
SEED_SOURCE: Final = "seed"  # edge.identity.consent.SEED_SOURCE (the ledger does not import identity)
CURSOR_KEY: Final = "cursor"

# Seed rows are the operator's file, applied again at every start: sweeping them would last until the next.
_SWEPT_CONSENT: Final = (
    "source != ? AND (shopper_id, purpose) NOT IN (SELECT id, sub FROM rebuild_seen WHERE kind = 'consent')"
)
# (table, key column, the change kind that carries it)
_TABLES: Final = (
    ("profiles", "shopper_id", ChangeKind.PROFILE),
    ("eid_keys", "shopper_id", ChangeKind.EID_KEY),
    ("token_keys", "kid", ChangeKind.TOKEN_KEY),
    ("offers", "offer_id", ChangeKind.OFFER),
    ("inventory", "offer_id", ChangeKind.INVENTORY),
    ("pickup_orders", "order_id", ChangeKind.ORDER),
    ("campaign_exposures", "exposure_id", ChangeKind.CAMPAIGN_EXPOSURE),
)


@dataclass(slots=True, frozen=True)
class Swept:
    """What the end of a rebuild removed because the cloud's full state no longer has it."""

    profiles: tuple[str, ...] = ()
    eid_keys: tuple[str, ...] = ()
    token_keys: tuple[str, ...] = ()
    offers: tuple[str, ...] = ()
    inventory: tuple[str, ...] = ()
    consents: tuple[tuple[str, Purpose], ...] = ()
    orders: tuple[str, ...] = ()
    campaign_exposures: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        return {
            "profiles": len(self.profiles),
            "eid_keys": len(self.eid_keys),
            "token_keys": len(self.token_keys),
            "offers": len(self.offers),
            "inventory": len(self.inventory),
            "consents": len(self.consents),
            "orders": len(self.orders),
            "campaign_exposures": len(self.campaign_exposures),
        }


def begin(tx: Tx) -> None:
    """Forget the cursor and open a rebuild with nothing seen yet (a reset during a rebuild starts over)."""
    tx.execute("DELETE FROM sync_state WHERE key = ?", (CURSOR_KEY,))
    tx.execute("DELETE FROM rebuild_seen")
    _mark_queued_consents(tx)
    tx.execute(
        "INSERT INTO sync_state (key, value) VALUES (?, '1') ON CONFLICT (key) DO NOTHING", (REBUILD_KEY,)
    )


def _mark_queued_consents(tx: Tx) -> None:
    """The store's own consent changes whose events wait in the outbox: the new cloud cannot have heard of
    them yet. They are marked seen when the rebuild begins (so one delivered during the rebuild still counts)
    and again at the sweep (one made during the rebuild); the cloud has them once it has the event."""
    _mark_keys(
        tx, [[ChangeKind.CONSENT.value, shopper_id, purpose] for shopper_id, purpose in queued_consents(tx)]
    )


def queued_consents(tx: Tx) -> list[tuple[str, str]]:
    """(shopper, purpose) of every queued consent event that names its shopper (a rebuild keeps those)."""
    rows = tx.fetch(
        "SELECT shopper_id, at_ms, data FROM outbox WHERE class = ? AND kind = ? AND shopper_id IS NOT NULL",
        (int(EventClass.PRIVACY), KIND_CODES["consent"]),
    )
    found = []
    for shopper_id, at_ms, data in rows:
        event_data = row_data(data, at_ms)
        purpose = event_data.get("purpose") if isinstance(event_data, dict) else None
        if isinstance(purpose, str):
            found.append((str(shopper_id), purpose))
    return found


def rebuilding(tx: Tx) -> bool:
    return bool(tx.fetch("SELECT 1 FROM sync_state WHERE key = ?", (REBUILD_KEY,)))


def mark(tx: Tx, changes: Sequence[Change]) -> None:
    """Record the keys a page of the rebuild carries (one statement for the page)."""
    keys = [
        [
            change.kind.value,
            change.id,
            str(change.data["purpose"]) if change.kind is ChangeKind.CONSENT else "",
        ]
        for change in changes
        if change.kind is not ChangeKind.ERASURE
        and not (change.kind is ChangeKind.CONSENT and change.op != "upsert")
    ]
    _mark_keys(tx, keys)


def _mark_keys(tx: Tx, keys: list[list[str]]) -> None:
    """Mark (kind, id, sub) keys seen, in one statement."""
    if keys:
        tx.execute(
            "INSERT OR IGNORE INTO rebuild_seen (kind, id, sub) "
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') "
            "FROM json_each(?)",
            (json.dumps(keys),),
        )


def sweep(tx: Tx) -> Swept:
    """Remove every replica row the rebuild did not see, and close the rebuild."""
    _mark_queued_consents(tx)
    removed: dict[str, tuple[str, ...]] = {}
    for table, column, kind in _TABLES:
        rows = tx.returning(
            f"DELETE FROM {table} WHERE {column} NOT IN "  # noqa: S608 - constant names
            f"(SELECT id FROM rebuild_seen WHERE kind = ?) RETURNING {column}",
            (kind.value,),
        )
        removed[table] = tuple(sorted(str(row[0]) for row in rows))
    consents = tx.returning(
        f"DELETE FROM consents WHERE {_SWEPT_CONSENT} RETURNING shopper_id, purpose",  # noqa: S608
        (SEED_SOURCE,),
    )
    tx.execute("DELETE FROM rebuild_seen")
    tx.execute("DELETE FROM sync_state WHERE key = ?", (REBUILD_KEY,))
    return Swept(
        profiles=removed["profiles"],
        eid_keys=removed["eid_keys"],
        token_keys=removed["token_keys"],
        offers=removed["offers"],
        inventory=removed["inventory"],
        orders=removed["pickup_orders"],
        campaign_exposures=removed["campaign_exposures"],
        consents=tuple(
            sorted((str(shopper), Purpose(purpose)) for shopper, purpose in consents if purpose in _PURPOSES)
        ),
    )


_PURPOSES: Final = frozenset(purpose.value for purpose in Purpose)
