"""Tombstones that do not keep the erased shopper's id: an HMAC of it under the ledger's own random key.

A tombstone must outlive the shopper (nothing older than their erasure may come back from a late sync page),
but it must not be a list of erased ids in clear on the SD card. The key is drawn once per ledger file
(schema 9, ``ledger_secrets``) and the SQL function ``edge_tombstone(id)`` gives the row's key inside
statements, so every query asks by shopper id and only the keyed hash is stored. Someone who has the file
and a candidate id can still test it (the key is in the same file); nobody can list who was erased.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from typing import Final

KEY_NAME: Final = "tombstone_key"
SQL_FUNCTION: Final = "edge_tombstone"


def tombstone_key(key: bytes, shopper_id: str) -> str:
    """The stored key of ``shopper_id``'s tombstone: HMAC-SHA256 under the ledger's key, hex."""
    return hmac.new(key, shopper_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def keyed_tombstones(conn: sqlite3.Connection) -> None:
    """Schema step 9: draw the key, and rewrite the tombstones of shoppers by their keyed hash."""
    key = secrets.token_bytes(32)
    conn.execute("CREATE TABLE ledger_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    conn.execute("INSERT INTO ledger_secrets (name, value) VALUES (?, ?)", (KEY_NAME, key))
    rows = conn.execute("SELECT shopper_id, erased_wall FROM tombstones").fetchall()
    conn.execute("DROP TABLE tombstones")
    conn.execute(
        "CREATE TABLE tombstones (shopper_key TEXT PRIMARY KEY, erased_wall REAL NOT NULL) WITHOUT ROWID"
    )
    conn.executemany(
        "INSERT INTO tombstones (shopper_key, erased_wall) VALUES (?, ?)",
        [(tombstone_key(key, str(shopper)), float(wall)) for shopper, wall in rows],
    )


def read_key(conn: sqlite3.Connection) -> bytes:
    row = conn.execute("SELECT value FROM ledger_secrets WHERE name = ?", (KEY_NAME,)).fetchone()
    if row is None:
        raise sqlite3.DatabaseError("the ledger has no tombstone key (schema 9)")
    return bytes(row[0])


def install(conn: sqlite3.Connection) -> bytes:
    """Register ``edge_tombstone(id)`` on the connection; returns the key (for lookups in memory)."""
    key = read_key(conn)
    conn.create_function(
        SQL_FUNCTION, 1, lambda shopper: tombstone_key(key, str(shopper)), deterministic=True
    )
    return key
