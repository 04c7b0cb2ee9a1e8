"""The one exception type the ledger raises to its callers."""

from __future__ import annotations


class LedgerError(Exception):
    """The ledger cannot do what was asked: closed, schema too new, or the database cannot be opened."""
