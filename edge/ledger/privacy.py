"""What the ledger holds about one shopper, read in one transaction, and the audit of every such export.

The right of access (docs/privacy.md): ``read_shopper`` gathers every row that names the shopper, from every
table that can, as plain values; ``record_export`` writes the audit row (and, for the cloud's request, queues
the answer in the same transaction, once per request id). The export's shape and wording are
``edge/privacy/``'s; nothing here decides what a shopper is shown.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edge.ledger import tombstones
from edge.ledger.eventcodec import unpack_kind
from edge.ledger.ops import DECISION_COLUMNS
from edge.ledger.outbox import NewEvent, insert_event
from edge.ledger.writer import Op, Tx

# Rows per table an export carries at most (newest first); past that the export says how many more there are.
MAX_ROWS: Final = 5_000
# A decision as the export lists it: every column but the id it is listed under and the candidates' scores.
_DECISION_FIELDS: Final = tuple(c for c in DECISION_COLUMNS if c not in ("shopper_id", "candidates"))
# A tool writing its audit row beside the running gateway waits this long for the writer's lock.
_BUSY_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class ShopperRows:
    """Every row of the ledger that names one shopper (plain values; ``features`` float32 bytes or None)."""

    shopper_id: str
    erased_wall: float | None
    seen_wall: float | None  # the last visit this store noted (a profile unseen for long is evicted)
    consents: list[dict[str, Any]]
    profile: dict[str, Any] | None
    profile_at_wall: float | None
    eid_key: dict[str, Any] | None
    decisions: list[dict[str, Any]]
    exposures: list[dict[str, Any]]
    device_settings: list[dict[str, Any]]
    staff_interactions: list[dict[str, Any]]
    pickup_orders: list[dict[str, Any]]
    queued_events: list[dict[str, Any]]
    refused_events: list[dict[str, Any]]
    exports: list[dict[str, Any]]
    truncated: dict[str, int]
    # Their POS sales kept for measurement (edge/ledger/conversions.py), newest first, each with its lines.
    conversions: list[dict[str, Any]] = field(default_factory=list)
    # Online campaigns the cloud says they saw (only with `measurement`), newest first.
    campaign_exposures: list[dict[str, Any]] = field(default_factory=list)


def read_shopper(tx: Tx, shopper_id: str) -> ShopperRows:
    """Every row about ``shopper_id``; runs inside the writer's transaction (or a tool's, see ``beside``)."""
    truncated: dict[str, int] = {}

    def rows(table: str, sql: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        found = tx.fetch(sql + f" LIMIT {MAX_ROWS + 1}", (shopper_id,))
        if len(found) > MAX_ROWS:
            count = tx.fetch(f"SELECT count(*) FROM ({sql})", (shopper_id,))  # noqa: S608 - constant SQL
            truncated[table] = int(count[0][0]) - MAX_ROWS
            found = found[:MAX_ROWS]
        return [dict(zip(columns, tuple(row), strict=True)) for row in found]

    erased = tx.fetch(
        "SELECT erased_wall FROM tombstones WHERE shopper_key = edge_tombstone(?)", (shopper_id,)
    )
    seen = tx.fetch("SELECT seen_wall FROM shopper_seen WHERE shopper_id = ?", (shopper_id,))
    consents = rows(
        "consents",
        "SELECT purpose, granted, at_wall, source FROM consents WHERE shopper_id = ? ORDER BY purpose",
        ("purpose", "granted", "at_wall", "source"),
    )
    for row in consents:
        row["granted"] = bool(row["granted"])
    profile_rows = tx.fetch("SELECT profile, at_wall FROM profiles WHERE shopper_id = ?", (shopper_id,))
    profile: dict[str, Any] | None = None
    profile_at: float | None = None
    if profile_rows:
        loaded = json.loads(profile_rows[0][0])
        profile = loaded if isinstance(loaded, dict) else {}
        profile_at = float(profile_rows[0][1])
    key_rows = tx.fetch("SELECT rotation_exponent FROM eid_keys WHERE shopper_id = ?", (shopper_id,))
    decisions = rows(
        "decisions",
        f"SELECT {', '.join(_DECISION_FIELDS)} FROM decisions WHERE shopper_id = ? ORDER BY at_wall DESC",  # noqa: S608
        _DECISION_FIELDS,
    )
    for row in decisions:
        for flag in ("explored", "holdout", "personalized"):
            row[flag] = bool(row[flag])
    return ShopperRows(
        shopper_id=shopper_id,
        erased_wall=float(erased[0][0]) if erased else None,
        seen_wall=float(seen[0][0]) if seen else None,
        consents=consents,
        profile=profile,
        profile_at_wall=profile_at,
        # Never the key itself: it is a credential of the shopper's phone, and the cloud that issued it has it.
        eid_key={"rotation_exponent": int(key_rows[0][0])} if key_rows else None,
        decisions=decisions,
        exposures=rows(
            "exposures",
            "SELECT e.decision_id, e.display_id, e.shown_at_wall, e.acked_at_wall, d.offer_id FROM exposures e "
            "LEFT JOIN decisions d USING (decision_id) WHERE e.shopper_id = ? ORDER BY e.shown_at_wall DESC",
            ("decision_id", "display_id", "shown_at_wall", "acked_at_wall", "offer_id"),
        ),
        device_settings=rows(
            "device_settings",
            "SELECT s.device_id, s.at_wall, s.reason, s.applied FROM device_settings s "
            "JOIN device_setting_shoppers p ON p.setting_id = s.id WHERE p.shopper_id = ? ORDER BY s.at_wall DESC",
            ("device_id", "at_wall", "reason", "applied"),
        ),
        staff_interactions=rows(
            "staff_interactions",
            "SELECT action, team, zone, at_wall FROM staff_interactions WHERE shopper_id = ? ORDER BY at_wall DESC",
            ("action", "team", "zone", "at_wall"),
        ),
        pickup_orders=rows(
            "pickup_orders",
            "SELECT order_id, reference, counter, ready_wall, collected_wall FROM pickup_orders "
            "WHERE shopper_id = ? ORDER BY ready_wall DESC",
            ("order_id", "reference", "counter", "ready_wall", "collected_wall"),
        ),
        queued_events=[
            {**row, "kind": unpack_kind(row["kind"]), "at_wall": row["at_wall"] / 1000.0}
            for row in rows(
                "queued_events",
                "SELECT kind, class, at_ms FROM outbox WHERE shopper_id = ? ORDER BY seq DESC",
                ("kind", "class", "at_wall"),
            )
        ],
        refused_events=rows(
            "refused_events",
            "SELECT kind, reason, at_wall, given_up_wall FROM dead_letter WHERE shopper_id = ? ORDER BY seq DESC",
            ("kind", "reason", "at_wall", "given_up_wall"),
        ),
        exports=rows(
            "exports",
            "SELECT at_wall, action, via, request_id FROM privacy_audit WHERE shopper_key = edge_tombstone(?) "
            "ORDER BY id DESC",
            ("at_wall", "action", "via", "request_id"),
        ),
        truncated=truncated,
        conversions=_conversions(tx, shopper_id, rows),
        campaign_exposures=rows(
            "campaign_exposures",
            "SELECT exposure_id, campaign_id, at_wall, skus, category FROM campaign_exposures "
            "WHERE shopper_id = ? ORDER BY at_wall DESC, exposure_id",
            ("exposure_id", "campaign_id", "at_wall", "skus", "category"),
        ),
    )


def _conversions(
    tx: Tx, shopper_id: str, rows: Callable[[str, str, Sequence[str]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The shopper's kept sales (at most ``MAX_ROWS``, newest first), each with its lines in till order."""
    sales = rows(
        "conversions",
        "SELECT event_id, at_wall, received_wall, lane, total, currency FROM conversions "
        "WHERE shopper_id = ? ORDER BY at_wall DESC, event_id",
        ("event_id", "at_wall", "received_wall", "lane", "total", "currency"),
    )
    by_id = {sale["event_id"]: {**sale, "items": []} for sale in sales}
    for event_id, sku, category, qty, price in tx.fetch(
        "SELECT i.event_id, i.sku, i.category, i.qty, i.price FROM conversion_items i "
        "JOIN conversions c ON c.event_id = i.event_id WHERE c.shopper_id = ? ORDER BY i.event_id, i.line",
        (shopper_id,),
    ):
        sale = by_id.get(event_id)
        if sale is not None:
            sale["items"].append({"sku": sku, "category": category, "qty": qty, "price": price})
    return list(by_id.values())


def read_shopper_op(shopper_id: str) -> Op[ShopperRows]:
    def run(tx: Tx) -> ShopperRows:
        return read_shopper(tx, shopper_id)

    return run


def record_export(
    shopper_id: str,
    at_wall: float,
    via: str,
    detail: str,
    *,
    request_id: str | None = None,
    answer: Sequence[NewEvent] = (),
    outbox_max_bytes: int | None = None,
) -> Op[bool]:
    """The audit row of one export, and the answer's events if any, in one transaction; False (nothing
    written) when ``request_id`` was answered already."""

    def run(tx: Tx) -> bool:
        written = tx.returning(
            "INSERT INTO privacy_audit (at_wall, shopper_key, action, via, request_id, detail) "
            "VALUES (?, edge_tombstone(?), 'export', ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (at_wall, shopper_id, via, request_id, detail),
        )
        if not written:
            return False
        for event in answer:
            insert_event(tx, event, outbox_max_bytes)
        return True

    return run


def cloud_offer_bodies(tx: Tx) -> list[tuple[str, str]]:
    """The cloud's offers in the replica (id, JSON body): their titles name what a decision chose."""
    return [(str(row[0]), str(row[1])) for row in tx.fetch("SELECT offer_id, body FROM offers")]


def answered(tx: Tx, request_id: str) -> bool:
    return bool(tx.fetch("SELECT 1 FROM privacy_audit WHERE request_id = ?", (request_id,)))


def answered_op(request_id: str) -> Op[bool]:
    def run(tx: Tx) -> bool:
        return answered(tx, request_id)

    return run


@contextmanager
def beside(path: Path) -> Iterator[Tx]:
    """One write transaction on the ledger at ``path`` while its gateway may be running (an operator's tool):
    WAL lets it in between the writer's batches; the busy timeout waits for the writer's lock."""
    if not path.exists():
        raise FileNotFoundError(f"no ledger at {path}")
    with closing(sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)) as conn:
        conn.execute("PRAGMA secure_delete = ON")
        tombstones.install(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield Tx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
