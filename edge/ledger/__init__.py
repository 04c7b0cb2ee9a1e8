"""The ledger: the gateway's durable SQLite record of decisions, exposures, consents and token claims,
its outbox to the cloud, and its local replica of the cloud."""

from edge.ledger.deadletter import DeadLetters, Refusal
from edge.ledger.errors import WRITE_ERRORS, LedgerError
from edge.ledger.ops import ConsentRow
from edge.ledger.outbox import Outbox, OutboxEntry
from edge.ledger.rebuild import Swept
from edge.ledger.replica import ApplyResult, Replica, ReplicaSnapshot
from edge.ledger.retention import Purged, Retention
from edge.ledger.store import Ledger

__all__ = [
    "WRITE_ERRORS",
    "ApplyResult",
    "ConsentRow",
    "DeadLetters",
    "Ledger",
    "LedgerError",
    "Outbox",
    "OutboxEntry",
    "Purged",
    "Refusal",
    "Replica",
    "ReplicaSnapshot",
    "Retention",
    "Swept",
]
