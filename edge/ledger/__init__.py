"""The ledger: the gateway's durable SQLite record of decisions, exposures, consents and token claims."""

from edge.ledger.errors import LedgerError
from edge.ledger.ops import ConsentRow
from edge.ledger.store import Ledger

__all__ = ["ConsentRow", "Ledger", "LedgerError"]
