"""The ledger's exceptions: ``LedgerError`` for what the ledger itself refuses, and ``WRITE_ERRORS``, everything
a write can fail with (a write op's own SQLite error, a full disk, an I/O error are forwarded as they are)."""

from __future__ import annotations

import sqlite3
from typing import Final


class LedgerError(Exception):
    """The ledger cannot do what was asked: closed, schema too new, or the database cannot be opened."""


# What a ledger write can fail with: the ledger's own errors, and the storage's (a full disk, an I/O error)
# which the writer forwards as they are. A caller that defers work on failure catches all of them.
WRITE_ERRORS: Final = (LedgerError, sqlite3.Error, OSError)
