"""The ledger file read beside a running gateway, for the installer tools: read-only connections only.

WAL lets a reader in without blocking the gateway's writer; nothing here writes, creates or migrates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Final

from edge.events import Purpose

# What reading a ledger file can fail with (locked past the timeout, not a database, unreadable): a tool
# reports it and exits instead of printing a traceback.
READ_ERRORS: Final = (sqlite3.Error, OSError)
# A tool waits this long for the gateway's writer to let go of a lock, then reports it.
_BUSY_TIMEOUT_S: Final = 2.0


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the ledger at ``path``; ``FileNotFoundError`` if there is none."""
    if not path.exists():
        raise FileNotFoundError(f"no ledger at {path}")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=_BUSY_TIMEOUT_S)) as db:
        yield db


def granted(path: Path, purpose: Purpose) -> frozenset[str]:
    """Shoppers whose ``purpose`` consent is on record as granted; none without a ledger or its consents yet."""
    try:
        with read_only(path) as db:
            rows = db.execute(
                "SELECT shopper_id FROM consents WHERE purpose = ? AND granted = 1", (purpose.value,)
            ).fetchall()
    except FileNotFoundError:
        return frozenset()
    except sqlite3.DatabaseError:
        return frozenset()  # not a ledger yet (created, not migrated): nobody has consented in it
    return frozenset(str(row[0]) for row in rows)
