"""What the screens say back: acks (an exposure counts only when acked) and their availability."""

from __future__ import annotations

import logging

from edge.act.displays import DisplayBoard
from edge.clock import Clock
from edge.flow.stats import FlowStats
from edge.ledger import WRITE_ERRORS, Ledger
from edge.sources.payloads import (
    Availability,
    RejectCounter,
    Rejected,
    exposure_time,
    parse_ack,
    parse_availability,
)
from edge.sources.rejections import AckReject, Kind
from edge.transport.mqtt import Inbound, MqttLink, RetryLater
from edge.transport.topics import Topics

log = logging.getLogger(__name__)


class AckFlow:
    """``display/{id}/ack`` -> one exposure row (durable before the ack is acknowledged); availability."""

    def __init__(
        self,
        *,
        topics: Topics,
        board: DisplayBoard,
        ledger: Ledger,
        clock: Clock,
        rejects: RejectCounter,
        stats: FlowStats,
    ) -> None:
        self._topics = topics
        self._board = board
        self._ledger = ledger
        self._clock = clock
        self._rejects = rejects
        self._stats = stats

    def register(self, link: MqttLink) -> None:
        link.on(self._topics.display_ack_filter, self.on_ack)
        link.on(self._topics.display_availability_filter, self.on_availability)

    def _known_display(self, message: Inbound, kind: str) -> str | None:
        display_id = self._topics.display_of(message.topic)
        if display_id is None or not self._board.knows(display_id):
            # The same reason under either kind (AckReject / AvailabilityReject.UNKNOWN_DISPLAY).
            self._rejects.reject(kind, AckReject.UNKNOWN_DISPLAY, message.topic)
            return None
        return display_id

    async def on_ack(self, message: Inbound) -> None:
        display_id = self._known_display(message, Kind.ACK)
        if display_id is None:
            return
        ack = parse_ack(message.payload)
        if isinstance(ack, Rejected):
            self._rejects.reject(Kind.ACK, ack.reason, message.topic)
            return
        stats = self._stats
        if ack.status == "failed":
            stats.acks_failed += 1
            stats.acks_failed_by_display[display_id] += 1
            if stats.acks_failed_by_display[display_id] == 1:  # a broken screen would fill the log
                log.info(
                    "display %s failed to show version %d (further failures are counted in gateway/health)",
                    display_id,
                    ack.version,
                )
            return
        if ack.decision_id is None:
            return  # an idle fallback shown: nothing was decided, nothing to measure
        known = self._board.lookup_ack(display_id, ack.decision_id)
        if known is not None and known[0] != ack.version:
            self._rejects.reject(Kind.ACK, AckReject.VERSION_MISMATCH, message.topic)
            return
        if known is None:
            # Sent before a restart (or more than the board remembers): the ledger holds every decision
            # that was ever published (committed before its manifest).
            stored = await self._ledger.decision(ack.decision_id)
            if stored is None or stored.get("display_id") != display_id:
                self._rejects.reject(Kind.ACK, AckReject.UNKNOWN_DECISION, message.topic)
                return
            at_wall = stored.get("at_wall")
        else:
            at_wall = known[1].at_wall
        now = self._clock.wall()
        decided_wall = float(at_wall) if isinstance(at_wall, int | float) else now
        shown_wall, replaced = exposure_time(ack.shown_at_wall, decided_wall, now)
        try:
            new = await self._ledger.record_exposure(
                decision_id=ack.decision_id,
                display_id=display_id,
                version=ack.version,
                shown_at_wall=shown_wall,
                acked_at_wall=now,
            )
        except WRITE_ERRORS as exc:
            raise RetryLater(str(exc)) from exc
        if new:
            stats.exposures += 1
            stats.shown_at_replaced += replaced
        else:
            self._rejects.reject(Kind.ACK, AckReject.DUPLICATE, message.topic)

    async def on_availability(self, message: Inbound) -> None:
        state = parse_availability(message.payload)
        if state is Availability.CLEARED:
            # Someone cleared the retained availability: the display was removed (its config entry may be
            # gone already). Not an error: it is offline from now on, until it says otherwise.
            display_id = self._topics.display_of(message.topic)
            if display_id is not None and self._board.knows(display_id):
                self._board.set_online(display_id, False)
            return
        display_id = self._known_display(message, Kind.AVAILABILITY)
        if display_id is None:
            return
        if isinstance(state, Rejected):
            self._rejects.reject(Kind.AVAILABILITY, state.reason, message.topic)
            return
        self._board.set_online(display_id, state is Availability.ONLINE)
