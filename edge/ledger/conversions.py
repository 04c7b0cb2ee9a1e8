"""Sales kept at the store for measurement (docs/measurement.md "Attribution"): ledger step 12's
``conversions`` and ``conversion_items``.

A POS sale is one row, written in the same transaction as its ``conversion`` event for the cloud and with
the same id, so a redelivered sale stays one row and queues nothing new. The row is kept also when no cloud
is configured (the event is then not queued). The shopper's id is the event's: only with ``measurement``.
An erasure deletes the shopper's rows (``ops.erase_shopper``); retention deletes old ones
(edge/ledger/retention.py, ``conversions_days``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from edge.ledger.outbox import NewEvent, insert_event
from edge.ledger.writer import Op, Tx

_INSERT_CONVERSION: Final = (
    "INSERT INTO conversions (event_id, at_wall, received_wall, lane, shopper_id, total, currency) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING 1"
)
_INSERT_ITEM: Final = (
    "INSERT INTO conversion_items (event_id, line, sku, category, qty, price) VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclass(slots=True, frozen=True)
class SaleLine:
    sku: str
    qty: float
    price: float
    category: str | None = None


@dataclass(slots=True, frozen=True)
class Conversion:
    """One accepted POS sale as the ledger keeps it.

    ``at_wall`` is the sale's own time (the POS's ``ts``, else when it was heard), ``received_wall`` when the
    gateway heard it (its own clock): the report compares the two to find a POS clock that is off.
    """

    event_id: str
    at_wall: float
    received_wall: float
    lane: str
    shopper_id: str | None
    total: float
    currency: str | None
    lines: tuple[SaleLine, ...]

    def row(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.at_wall,
            self.received_wall,
            self.lane,
            self.shopper_id,
            self.total,
            self.currency,
        )


def insert_conversion(
    conversion: Conversion, event: NewEvent | None, *, outbox_max_bytes: int | None
) -> Op[bool]:
    """The sale's row and lines, and its event (if given) in the same transaction; False: already recorded
    (a redelivered sale: nothing is written or queued again)."""
    if event is not None and event.event_id != conversion.event_id:
        raise ValueError("a conversion and its event share one id")
    lines = [
        (conversion.event_id, index, line.sku, line.category, line.qty, line.price)
        for index, line in enumerate(conversion.lines)
    ]
    row = conversion.row()

    def run(tx: Tx) -> bool:
        if not tx.returning(_INSERT_CONVERSION, row):
            return False
        for line in lines:
            tx.execute(_INSERT_ITEM, line)
        if event is not None:
            insert_event(tx, event, outbox_max_bytes)
        return True

    return run
