"""The shop floor: who is where, what the screens show for them, and what is recorded before it is shown.

Every source of presence (check-ins, BLE, the timers) ends here: leaving releases a shopper's screens,
entering asks them for service (decided, recorded, then shown: docs/displays.md "Durable before shown"),
and the zones' counts are republished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from edge.act.displays import DisplayBoard
from edge.events import Decision, PresenceChanged, Purpose
from edge.flow.decider import Decider
from edge.flow.stats import FlowStats
from edge.flow.zones import ZoneCounts
from edge.identity import ConsentStore
from edge.ledger import WRITE_ERRORS, Ledger
from edge.presence.zones import ZonePresence
from edge.transport.mqtt import MqttLink, RetryLater
from edge.transport.topics import Topics

log = logging.getLogger(__name__)


class Recorder:
    """Makes decisions durable before they are shown; a shopper's id is kept only with ``measurement``."""

    def __init__(self, ledger: Ledger, consents: ConsentStore) -> None:
        self._ledger = ledger
        self._consents = consents

    def kept(self, decisions: Sequence[Decision]) -> list[tuple[Decision, bool]]:
        return [
            (d, d.shopper_id is not None and self._consents.has(d.shopper_id, Purpose.MEASUREMENT))
            for d in decisions
        ]

    async def record(self, decisions: list[Decision]) -> bool:
        """The board's commit for decisions that are not a check-in's; raises RetryLater if the ledger fails."""
        if decisions:
            try:
                await self._ledger.record_decisions(self.kept(decisions))
            except WRITE_ERRORS as exc:
                raise RetryLater(str(exc)) from exc
        return True

    async def record_checkin(self, jti: str, until_wall: float, decisions: list[Decision]) -> bool:
        """A check-in's claim and its decisions in one transaction; False if the jti was claimed already."""
        return await self._ledger.record_checkin(jti, until_wall, self.kept(decisions))


class Floor:
    """Presence changes -> screens and counts; service requests -> decided, recorded, shown."""

    def __init__(
        self,
        *,
        presence: ZonePresence,
        counts: ZoneCounts,
        board: DisplayBoard,
        decider: Decider,
        recorder: Recorder,
        consents: ConsentStore,
        link: MqttLink,
        topics: Topics,
        stats: FlowStats,
    ) -> None:
        self.presence = presence
        self.counts = counts
        self.board = board
        self._decider = decider
        self.recorder = recorder
        self._link = link
        self._topics = topics
        self._stats = stats
        # Told (shopper, zone) of every leave: a kiosk's my-data summary goes with its shopper.
        self.leave_listeners: list[Callable[[str, str], None]] = []
        consents.subscribe(self._consent_changed)

    def changed(self, changes: Sequence[PresenceChanged]) -> None:
        """Release the screens of shoppers who left and republish the counts of the zones ``changes`` touch."""
        zones = set()
        for change in changes:
            zones.add(change.zone)
            if change.kind == "leave":
                self.board.shopper_left(change.zone, change.shopper_id)
                for listener in tuple(self.leave_listeners):
                    listener(change.shopper_id, change.zone)
        for zone in zones:
            self.counts.publish(zone)

    async def serve(self, zone: str, shopper_id: str) -> None:
        """A shopper (from any source) asks for service in ``zone``: decide, record, show.

        If the decisions cannot be recorded (the ledger fails) the screens stay as they are: counted and
        logged, never raised into the timer or the BLE loop that asked.
        """
        try:
            await self.board.request(zone, shopper_id, self.recorder.record)
        except RetryLater as exc:
            self._unrecorded(exc)

    async def tick(self) -> None:
        """Timer work: presence timeouts, pending requests, expiry and release of screens."""
        self.changed(self.presence.expire())
        try:
            await self.board.tick(self.recorder.record)
        except RetryLater as exc:
            self._unrecorded(exc)

    def _unrecorded(self, exc: RetryLater) -> None:
        self._stats.unrecorded += 1
        log.warning("decisions not recorded, screens left as they are: %s", exc)

    def forget_shopper(self, shopper_id: str) -> None:
        """An erased shopper: screens, check-in presence and the day's caps let go of them now."""
        self.board.forget_shopper(shopper_id)
        self.changed(self.presence.forget(shopper_id))
        self._decider.forget_shopper(shopper_id)

    def _consent_changed(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:
        if not granted and purpose is Purpose.PERSONALIZATION:
            # Withdrawal takes effect at once: personal content leaves the screens now.
            self.board.forget_shopper(shopper_id)

    def publish_initial_state(self, *, keep: frozenset[str] = frozenset()) -> None:
        """Every display's manifest (fallbacks, or what ``keep`` displays show) and every zone's presence."""
        self.board.publish_idle(keep=keep)
        self.counts.publish_all()

    def adopt(self, previous: Floor) -> frozenset[str]:
        """Take over the screens and check-in presence of the floor this one replaces (an in-process rebuild).

        Displays and zones that are gone have their retained topics cleared. Returns the displays kept.
        """
        self.presence.adopt(previous.presence)
        kept = self.board.adopt(previous.board)
        for display_id in previous.board.display_ids() - self.board.display_ids():
            self._link.clear_retained(self._topics.display_content(display_id))
        for zone in set(previous.counts.zones) - set(self.counts.zones):
            self._link.clear_retained(self._topics.presence(zone))
        return kept
