"""The profile store's tables as ordered migrations, one text for both databases (types filled per dialect).

Each migration runs once, in a transaction, and the schema version is stored with it; a database at a
newer version than this code knows is refused rather than guessed at.
"""

from __future__ import annotations

from typing import Final, Literal

Dialect = Literal["sqlite", "postgresql"]

_TYPES: Final[dict[Dialect, dict[str, str]]] = {
    # SQLite's INTEGER is 64-bit; booleans are 0/1.
    "sqlite": {"INT": "INTEGER", "BOOL": "INTEGER", "BLOB": "BLOB", "UUID": "TEXT", "REAL": "REAL"},
    "postgresql": {
        "INT": "BIGINT",
        "BOOL": "BOOLEAN",
        "BLOB": "BYTEA",
        "UUID": "UUID",
        "REAL": "DOUBLE PRECISION",
    },
}

# Version 1. Times are integer microseconds since the epoch (UTC); JSON documents are stored as text, so a
# document reads back byte for byte as it was written.
_V1: Final = (
    # instance: the random id cursors carry, to detect a cursor from another database.
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # The last change seq and event receive number handed out (never reused, even after compaction).
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value {INT} NOT NULL)",
    "INSERT INTO counters (name, value) VALUES ('changes', 0), ('events', 0)",
    "CREATE TABLE stores (store_id TEXT PRIMARY KEY, token_sha256 {BLOB} NOT NULL UNIQUE,"
    " created_us {INT} NOT NULL, updated_us {INT} NOT NULL)",
    # The change log: compact_key names what a change is about (a newer change of the same key replaces
    # it); shopper_id lets an erasure remove the shopper's history.
    "CREATE TABLE changes (seq {INT} PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL,"
    " at_us {INT} NOT NULL, data TEXT NOT NULL, compact_key TEXT NOT NULL, shopper_id TEXT)",
    "CREATE INDEX changes_compact_key ON changes (compact_key)",
    "CREATE INDEX changes_shopper ON changes (shopper_id)",
    "CREATE TABLE profiles (shopper_id TEXT PRIMARY KEY, profile TEXT NOT NULL, updated_us {INT} NOT NULL)",
    "CREATE TABLE consents (shopper_id TEXT NOT NULL, purpose TEXT NOT NULL, granted {BOOL} NOT NULL,"
    " at_us {INT} NOT NULL, source TEXT NOT NULL, PRIMARY KEY (shopper_id, purpose))",
    "CREATE TABLE eid_keys (shopper_id TEXT PRIMARY KEY, identity_key {BLOB} NOT NULL,"
    " rotation_exponent {INT} NOT NULL, clock_offset_s {INT} NOT NULL, updated_us {INT} NOT NULL)",
    "CREATE TABLE token_keys (kid TEXT PRIMARY KEY, public_key_pem TEXT NOT NULL, updated_us {INT} NOT NULL)",
    "CREATE TABLE offers (offer_id TEXT PRIMARY KEY, offer TEXT NOT NULL, updated_us {INT} NOT NULL)",
    "CREATE TABLE inventory (offer_id TEXT PRIMARY KEY, available {BOOL} NOT NULL, quantity {INT},"
    " updated_us {INT} NOT NULL)",
    # One row per erased shopper: when, and the seq of the erasure change.
    "CREATE TABLE erasures (shopper_id TEXT PRIMARY KEY, erased_us {INT} NOT NULL, seq {INT} NOT NULL)",
    # Pushed events, once each by id; recv_seq is the receive order (admin reads page by it).
    "CREATE TABLE events (id {UUID} PRIMARY KEY, recv_seq {INT} NOT NULL UNIQUE, store_id TEXT NOT NULL,"
    " kind TEXT NOT NULL, event_class TEXT NOT NULL, at_us {INT} NOT NULL, shopper_id TEXT,"
    " data TEXT NOT NULL, received_us {INT} NOT NULL)",
    "CREATE INDEX events_store ON events (store_id, recv_seq)",
    "CREATE INDEX events_shopper ON events (shopper_id)",
)

# Version 2: changes for one store only, and pickup orders.
_V2: Final = (
    # The store a change is for; NULL: every store sees it (as every change of version 1).
    "ALTER TABLE changes ADD COLUMN store_id TEXT",
    "CREATE INDEX changes_store ON changes (store_id, seq)",
    # Online orders ready for pickup at one store (only that store pulls them).
    "CREATE TABLE orders (order_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, shopper_id TEXT NOT NULL,"
    " reference TEXT NOT NULL, counter TEXT NOT NULL, ready_us {INT} NOT NULL, updated_us {INT} NOT NULL)",
    "CREATE INDEX orders_store ON orders (store_id)",
    "CREATE INDEX orders_shopper ON orders (shopper_id)",
)

# Version 3: each store holds only its own shoppers (issue 15; docs/profile-store.md, "Which store holds
# which shopper"). Shopper changes written since are per store (changes.store_id set); those of versions 1
# and 2 stay for every store until the shopper's next write (profilestore.sqlscope.scope_legacy).
_V3: Final = (
    # A store holds a shopper while `home`, or until `until_us` (its pushes named them, or it fetched them);
    # `member`: its share of the change log carries the shopper now. `reason`: home, seen or fetched.
    # Rows stay after a lapse (member false) until the shopper is erased: an erasure reaches those stores.
    "CREATE TABLE store_shoppers (store_id TEXT NOT NULL, shopper_id TEXT NOT NULL, reason TEXT NOT NULL,"
    " until_us {INT} NOT NULL, home {BOOL} NOT NULL, member {BOOL} NOT NULL,"
    " PRIMARY KEY (store_id, shopper_id))",
    "CREATE INDEX store_shoppers_shopper ON store_shoppers (shopper_id)",
    "CREATE UNIQUE INDEX store_shoppers_home ON store_shoppers (shopper_id) WHERE home",
    # What a pull looks for before it reads: the store's memberships that ran out.
    "CREATE INDEX store_shoppers_due ON store_shoppers (store_id, until_us) WHERE member AND NOT home",
    # Order keys name (store, order) with a "/" that neither id may hold ("order:a:b:c" could name two).
    "UPDATE changes SET compact_key = 'order:' || store_id || '/' || id WHERE kind = 'order'",
)

# Version 4: online and offline together (issue 16; docs/profile-store.md, "Online and offline together").
# Sales of both channels (online orders the web shop posts, store sales the gateways push as `conversion`
# events) and touches (offers shown in a store, online campaigns seen) are kept in plain columns, one row per
# sale line and per match key, so the cross-channel report is one SQL aggregation over indexed columns.
_V4: Final = (
    # channel: online (posted: sale_id is the shop's id) or store (pushed: the conversion event's id).
    # shopper_id NULL: anonymous, or erased since (the sale still counts in the totals, never attributed).
    "CREATE TABLE sales (channel TEXT NOT NULL, sale_id TEXT NOT NULL, store_id TEXT, shopper_id TEXT,"
    " at_us {INT} NOT NULL, total {REAL} NOT NULL, currency TEXT, received_us {INT} NOT NULL,"
    " PRIMARY KEY (channel, sale_id))",
    "CREATE INDEX sales_at ON sales (at_us)",
    "CREATE INDEX sales_shopper ON sales (shopper_id, at_us)",
    "CREATE TABLE sale_lines (channel TEXT NOT NULL, sale_id TEXT NOT NULL, line {INT} NOT NULL,"
    " sku TEXT NOT NULL, category TEXT, qty {INT} NOT NULL, price {REAL} NOT NULL,"
    " PRIMARY KEY (channel, sale_id, line))",
    # A touch: something a shopper was shown that a later sale may be attributed to. channel store: an
    # offer's acked exposure (touch_id the exposure event's id, ref_id the offer); online: a campaign
    # exposure (touch_id its id, ref_id the campaign). Only identified shoppers' touches are kept.
    "CREATE TABLE touches (channel TEXT NOT NULL, touch_id TEXT NOT NULL, touchpoint TEXT NOT NULL,"
    " ref_id TEXT NOT NULL, store_id TEXT, shopper_id TEXT NOT NULL, at_us {INT} NOT NULL,"
    " PRIMARY KEY (channel, touch_id))",
    "CREATE INDEX touches_shopper ON touches (shopper_id, at_us)",
    "CREATE INDEX touches_at ON touches (at_us)",
    # What a touch promoted, as it was when shown: 'sku:<sku>' and 'category:<category>'.
    "CREATE TABLE touch_keys (channel TEXT NOT NULL, touch_id TEXT NOT NULL, key TEXT NOT NULL,"
    " PRIMARY KEY (channel, touch_id, key))",
    # Posted campaign exposures, as posted (skus: a JSON list): what the stores holding the shopper are
    # sent while their measurement consent is granted. shopper_id NULL: dated before the shopper's erasure.
    "CREATE TABLE campaign_exposures (exposure_id TEXT PRIMARY KEY, shopper_id TEXT, campaign_id TEXT NOT NULL,"
    " at_us {INT} NOT NULL, skus TEXT NOT NULL, category TEXT, received_us {INT} NOT NULL)",
    "CREATE INDEX campaign_exposures_shopper ON campaign_exposures (shopper_id, at_us)",
    # The offer of each identified decision a store pushed, so its exposure (which names only the decision)
    # finds what was shown.
    "CREATE TABLE store_decisions (store_id TEXT NOT NULL, decision_id TEXT NOT NULL, offer_id TEXT,"
    " at_us {INT} NOT NULL, PRIMARY KEY (store_id, decision_id))",
    # Pushed events the join could not use, by reason (docs/profile-store.md): counted in the report.
    "CREATE TABLE crosschannel_skipped (event_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, reason TEXT NOT NULL,"
    " at_us {INT} NOT NULL)",
    "CREATE INDEX crosschannel_skipped_at ON crosschannel_skipped (at_us)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def statements(version: int, dialect: Dialect) -> list[str]:
    """The statements that bring a database from ``version - 1`` to ``version`` (1-based)."""
    types = _TYPES[dialect]
    return [statement.format(**types) for statement in MIGRATIONS[version - 1]]


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer version of this server."""

    @classmethod
    def check(cls, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise cls(f"schema version {version} is newer than this server's {SCHEMA_VERSION}")
