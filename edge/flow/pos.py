"""POS sales: ``pos/{lane}/transaction`` -> one ``conversions`` row and its ``conversion`` event in the outbox.

A sale is never lost for want of a shopper: a missing, refused or replayed token makes it anonymous, and the
shopper's id is attached only with their ``measurement`` consent. Neither the token nor anything derived
from it ever reaches the event. The sale is kept in the ledger for measurement (edge/ledger/conversions.py)
in the same transaction as its event, also when no cloud is configured. The handler returns (and the message
is acknowledged) only once both are durable; the row's and the event's id is derived from the sale itself,
so a redelivered message writes and queues nothing new.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from edge.clock import Clock
from edge.events import Purpose
from edge.flow.checkin import EnsureProfile
from edge.identity import Claim, ConsentStore, Rejection, ReplayGuard, TokenVerifier
from edge.ledger import WRITE_ERRORS, Ledger
from edge.ledger.conversions import Conversion, SaleLine
from edge.ledger.outbox import encode_event, event_id_for
from edge.sources.payloads import (
    RejectCounter,
    Rejected,
    TransactionItem,
    TransactionMessage,
    is_id,
    parse_transaction,
)
from edge.sources.rejections import Kind, PosReject
from edge.sync.wire import EventClass
from edge.transport.mqtt import Inbound, MqttLink, RetryLater
from edge.transport.topics import Topics

log = logging.getLogger(__name__)

KIND: Final = Kind.POS  # the rejection counter's kind: drops.rejected["pos.<reason>"]
EVENT_KIND: Final = "conversion"
_DAY_S: Final = 86_400.0

# Called after a sale is durable with the verified shopper and the sale's lines: every sale whose token
# verified and was fresh, whatever the shopper's consents (the decision context's basket, docs/context.md).
OnSale = Callable[[str, tuple[TransactionItem, ...]], None]


@dataclass(slots=True)
class PosCounters:
    """Accepted sales (parsed, on a well-formed lane), split by whether a shopper id was attached."""

    transactions: int = 0
    identified: int = 0
    # Sales the broker delivered again (MQTT DUP) after their token was claimed: the first delivery stands.
    redelivered: int = 0


@dataclass(slots=True, frozen=True)
class PosStats:
    """A snapshot of ``PosCounters`` for gateway/health (``pos``)."""

    transactions: int
    identified: int
    anonymous: int
    redelivered: int


def sale_event_id(root: str, lane: str, txn_id: str, ts_wall: float | None, received_wall: float) -> str:
    """The sale's outbox event id: the same sale always gives the same id (``event_id_for``).

    ``event_id_for`` puts the time in the id's first 48 bits, so that time must come from the sale, not from
    when it was heard: the POS's ``ts`` when given, else the UTC day it was received (a resend within the
    day is then still the same sale). The key holds the topic root, because event ids are unique across
    every store at the cloud and POS transaction ids are usually only unique per store and lane.
    """
    id_wall = ts_wall if ts_wall is not None else math.floor(received_wall / _DAY_S) * _DAY_S
    return event_id_for(id_wall, f"pos:{root}:{lane}:{txn_id}")


class PosFlow:
    """Handles POS transactions with the check-ins' verifier, replay guard and consents."""

    def __init__(
        self,
        *,
        topics: Topics,
        clock: Clock,
        verifier: TokenVerifier,
        replay: ReplayGuard,
        consents: ConsentStore,
        ledger: Ledger,
        rejects: RejectCounter,
        ensure_profile: EnsureProfile | None = None,
        collect: Callable[[Sequence[str], str], Awaitable[list[str]]] | None = None,
        on_sale: OnSale | None = None,
    ) -> None:
        self.topics = topics
        self.clock = clock
        self.verifier = verifier
        self.replay = replay
        self.consents = consents
        self.ledger = ledger
        self.rejects = rejects
        self.ensure_profile = ensure_profile
        # Hands over the pickup orders a sale names (``collected_orders``, docs/pickup.md).
        self.collect = collect
        # The basket's hook (``OnSale``); its failure is logged, never the sale's.
        self.on_sale = on_sale
        self.counters = PosCounters()

    def stats(self) -> PosStats:
        counters = self.counters
        return PosStats(
            transactions=counters.transactions,
            identified=counters.identified,
            anonymous=counters.transactions - counters.identified,
            redelivered=counters.redelivered,
        )

    def register(self, link: MqttLink) -> None:
        link.on(self.topics.pos_transaction_filter, self.on_transaction)

    async def on_transaction(self, message: Inbound) -> None:
        lane = self.topics.lane_of(message.topic)
        if lane is None or not is_id(lane):
            self.rejects.reject(KIND, PosReject.BAD_LANE, message.topic)
            return
        sale = parse_transaction(message.payload)
        if isinstance(sale, Rejected):
            self.rejects.reject(KIND, sale.reason, message.topic)
            return
        if sale.bad_categories:
            # Kept, those lines without a category: counted once per sale.
            self.rejects.reject(KIND, PosReject.BAD_CATEGORY, message.topic)
        now = self.clock.wall()
        shopper_id, verified, jti = await self._shopper(
            sale, message.topic, now, redelivered=message.redelivered
        )
        event_id = sale_event_id(self.topics.root, lane, sale.txn_id, sale.ts_wall, now)
        at_wall = sale.ts_wall if sale.ts_wall is not None else now
        outbox = self.ledger.outbox
        event = None
        if outbox.max_bytes is not None:  # None: no cloud sync configured, nothing to queue for it
            event = encode_event(
                EVENT_KIND,
                EventClass.CONVERSION,
                self._data(sale, lane),
                at_wall=at_wall,
                shopper_id=shopper_id,
                event_id=event_id,
            )
        conversion = Conversion(
            event_id=event_id,
            at_wall=at_wall,
            received_wall=now,
            lane=lane,
            shopper_id=shopper_id,
            total=sale.amount,
            currency=sale.currency,
            lines=tuple(
                SaleLine(sku=item.sku, qty=item.qty, price=item.price, category=item.category)
                for item in sale.items
            ),
        )
        try:
            await self.ledger.record_conversion(conversion, event)
            if sale.collected_orders and self.collect is not None:
                # After the sale is durable and before the token's claim: a redelivery collects again,
                # harmlessly (an order is collected once).
                await self.collect(sale.collected_orders, "pos")
            # The token's jti is claimed on disk only after the sale is durable: a crash in between
            # redelivers a message whose token is still fresh, and the event id makes the retry a no-op.
            fresh = True if jti is None else await self.ledger.claim_jti(*jti)
        except WRITE_ERRORS as exc:
            if jti is not None:
                self.replay.release(jti[0])
            raise RetryLater(str(exc)) from exc
        self.counters.transactions += 1
        if shopper_id is not None:
            self.counters.identified += 1
        if not fresh:
            # Only if memory and disk disagree (a clock jump); the disk is the authority, and it is counted.
            self.rejects.reject(KIND, PosReject.REPLAYED_ON_DISK, message.topic)
        elif verified is not None and self.on_sale is not None:
            try:
                self.on_sale(verified, sale.items)
            except Exception:  # a hook's bug must not fail a durable sale (the message would be redelivered)
                log.exception("the POS sale hook failed (the sale is recorded)")

    async def _shopper(
        self, sale: TransactionMessage, topic: str, now: float, *, redelivered: bool
    ) -> tuple[str | None, str | None, tuple[str, float] | None]:
        """The shopper id the event may carry, the verified shopper of a fresh token (whatever their
        consents), and the (jti, exp) claimed in memory for it, if any."""
        if sale.token is None:
            return None, None, None
        verified = self.verifier.verify(sale.token)
        if isinstance(verified, Rejection):
            # A bad token never costs the store its sale: recorded anonymously, the token counted.
            self.rejects.reject(KIND, PosReject.BAD_TOKEN, topic)
            return None, None, None
        if self.ensure_profile is not None:
            # A shopper new to this store: their consents from the cloud, within a short wait.
            await self.ensure_profile(verified.sub)
        # A visit: the clock of the profile eviction (edge/ledger/seen.py).
        self.ledger.seen.note(verified.sub)
        # Tokens are single-use (docs/identity.md): a replayed one identifies nobody. A redelivered message
        # lands here too, harmlessly: its event id is the first delivery's, so the first one stands.
        claim = self.replay.claim(verified.jti, verified.replay_until, now)
        if claim is not Claim.NEW:
            if claim is Claim.SEEN and redelivered:
                self.counters.redelivered += 1  # the broker's second delivery (MQTT DUP): not an attack
            elif claim is Claim.CLOCK_BEHIND:
                self.rejects.reject(KIND, PosReject.CLOCK_BEHIND, topic)
            else:
                self.rejects.reject(KIND, PosReject.REPLAYED_TOKEN, topic)
            return None, None, None
        jti = (verified.jti, verified.replay_until)
        if not self.consents.has(verified.sub, Purpose.MEASUREMENT):
            return None, verified.sub, jti
        return verified.sub, verified.sub, jti

    @staticmethod
    def _data(sale: TransactionMessage, lane: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "txn_id": sale.txn_id,
            "lane": lane,
            "items": [{"sku": item.sku, "qty": item.qty, "price": item.price} for item in sale.items],
            "total": sale.amount,
        }
        if sale.currency is not None:
            data["currency"] = sale.currency
        return data
