"""Staff notices: a shopper who asked for personal service (``clienteling``) comes in (docs/staff.md).

On every change of a watched zone's people (``ZoneCounts``: check-ins, BLE, QR), the team that looks after
the zone gets one notice per visit on ``…/staff/notice/{team}`` (not retained): a random notice id, the zone,
and from the profile only what serves the shopper: the display name they chose to share with staff, their
language, sizes, interests and accessibility needs. Never their id, never their token. When they leave the
team's zones (or withdraw the consent, or are erased), the same topic gets the notice's withdrawal.

Staff answer on ``…/staff/{team}/ack`` with ``{"v":1,"notice_id","action":"assisting"|"dismissed"}``: stored in
the ledger with its event for the cloud (the shopper's id only with ``measurement``) before the message is
acknowledged. A notice says when the shopper has online orders ready for pickup (``pickup``: reference and
counter); ``"action":"collected"`` hands them over (docs/pickup.md). Anything else is counted as
``staff_ack.<reason>`` and changes nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from edge.act.staff import Notice, StaffBoard
from edge.clock import iso_utc
from edge.config.staff import StaffSettings
from edge.decide.devices.resolve import preferences_of
from edge.events import Purpose
from edge.flow.parts import FloorParts
from edge.flow.pickup import PickupFlow
from edge.ledger import WRITE_ERRORS
from edge.sources.payloads import Rejected, is_id, json_envelope
from edge.sources.rejections import Kind, StaffAckReject
from edge.transport.mqtt import Inbound, RetryLater

log = logging.getLogger(__name__)

ACTIONS: Final = frozenset({"assisting", "dismissed"})
COLLECTED: Final = "collected"  # the shopper's pickup orders were handed over
# What a notice may carry from a profile, at most: short texts, a few of them.
TEXT_MAX: Final = 64
ITEMS_MAX: Final = 10


@dataclass(frozen=True, slots=True)
class StaffStats:
    notices: int
    withdrawn: int
    open: int
    answers: Mapping[str, int]  # stored answers by action
    answers_repeated: int


class StaffFlow:
    def __init__(
        self,
        settings: StaffSettings,
        parts: FloorParts,
        pickup: PickupFlow | None = None,
    ) -> None:
        self._parts = parts
        self._pickup = pickup
        self._teams = frozenset(settings.teams)
        self._board = StaffBoard(settings.teams, new_id=lambda: uuid.uuid4().hex)
        self._notices = 0
        self._withdrawn = 0
        self._answers: Counter[str] = Counter()
        self._repeated = 0
        parts.counts.subscribe(self.zone_changed)
        parts.consents.subscribe(self._consent_changed)

    def register(self) -> None:
        self._parts.link.on(self._parts.topics.staff_ack_filter, self.on_ack)

    def zone_changed(self, zone: str) -> None:
        if not self._board.watches(zone):
            return
        opened, withdrawn = self._board.zone_changed(zone, self._clienteling_in)
        for notice in opened:
            self._notices += 1
            self._publish(notice, {"status": "open", "zone": notice.zone, **self._about(notice.shopper_id)})
        for notice in withdrawn:
            self._withdrawn += 1
            self._publish(notice, {"status": "withdrawn", "zone": notice.zone})

    async def on_ack(self, message: Inbound) -> None:
        team = self._parts.topics.team_of(message.topic)
        if team is None or team not in self._teams:
            self._parts.rejects.reject(Kind.STAFF_ACK, StaffAckReject.UNKNOWN_TEAM, message.topic)
            return
        body = json_envelope(message.payload)
        if isinstance(body, Rejected):
            self._parts.rejects.reject(Kind.STAFF_ACK, body.reason, message.topic)
            return
        fields = read_ack(body)
        if isinstance(fields, StaffAckReject):
            self._parts.rejects.reject(Kind.STAFF_ACK, fields, message.topic)
            return
        notice_id, action = fields
        notice = self._board.notice(notice_id)
        if notice is None or notice.team != team:
            self._parts.rejects.reject(Kind.STAFF_ACK, StaffAckReject.UNKNOWN_NOTICE, message.topic)
            return
        if action == COLLECTED:
            await self._collected(notice, message.topic)
            return
        kept = notice.shopper_id if self._parts.consents.has(notice.shopper_id, Purpose.MEASUREMENT) else None
        try:
            stored = await self._parts.ledger.record_staff_interaction(
                notice.notice_id, str(action), team, notice.zone, kept
            )
        except WRITE_ERRORS as exc:
            raise RetryLater(str(exc)) from exc  # not acked: the broker delivers it again
        if stored:
            self._answers[str(action)] += 1
        else:
            self._repeated += 1

    async def _collected(self, notice: Notice, topic: str) -> None:
        orders = self._pickup.orders.of(notice.shopper_id) if self._pickup is not None else []
        if self._pickup is None or not orders:
            self._parts.rejects.reject(Kind.STAFF_ACK, StaffAckReject.NO_ORDER, topic)
            return
        try:
            # Counted by the pickup flow (``pickup.collected.staff``), not as an answer to the notice.
            await self._pickup.collect([order.order_id for order in orders], "staff")
        except WRITE_ERRORS as exc:
            raise RetryLater(str(exc)) from exc  # not acked: the broker delivers it again

    def stats(self) -> StaffStats:
        return StaffStats(
            notices=self._notices,
            withdrawn=self._withdrawn,
            open=self._board.open_notices(),
            answers=dict(self._answers),
            answers_repeated=self._repeated,
        )

    def _clienteling_in(self, zone: str) -> list[str]:
        return [s for s in self._parts.counts.who(zone) if self._parts.consents.has(s, Purpose.CLIENTELING)]

    def _publish(self, notice: Notice, fields: dict[str, Any]) -> None:
        body = {"v": 1, "ts": iso_utc(self._parts.clock.wall()), "notice_id": notice.notice_id, **fields}
        self._parts.link.publish(
            self._parts.topics.staff_notice(notice.team), json.dumps(body, separators=(",", ":")).encode()
        )

    def _about(self, shopper_id: str) -> dict[str, Any]:
        """What serves the shopper, from their profile: never their id."""
        profile = self._parts.profiles.get(shopper_id) or {}
        found: dict[str, Any] = {}
        name = _text(profile.get("staff_display_name"))
        if name is not None:
            found["display_name"] = name
        preferences, needs, _ = preferences_of(profile)
        language = _text(profile.get("language")) or _text(preferences.get("language"))
        if language is not None:
            found["language"] = language
        sizes = profile.get("sizes")
        if isinstance(sizes, Mapping):
            kept = {
                str(k)[:TEXT_MAX]: v for k, v in list(sizes.items())[:ITEMS_MAX] if _text(v) or _number(v)
            }
            if kept:
                found["sizes"] = kept
        interests = profile.get("interests")
        if isinstance(interests, list):
            texts = [t for t in (_text(i) for i in interests[:ITEMS_MAX]) if t is not None]
            if texts:
                found["interests"] = texts
        if needs:
            found["needs"] = needs
        orders = self._pickup.orders.of(shopper_id) if self._pickup is not None else []
        if orders:
            found["pickup"] = [order.entry() for order in orders[:ITEMS_MAX]]
        return found

    def _consent_changed(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:  # noqa: ARG002
        # Granted or withdrawn alike: the zones they are in are looked at again (a notice opens or goes).
        if purpose is not Purpose.CLIENTELING:
            return
        for zone in self._parts.counts.zones:
            if shopper_id in self._parts.counts.who(zone):
                self.zone_changed(zone)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= TEXT_MAX else None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e6


def read_ack(body: dict[str, Any]) -> tuple[str, str] | StaffAckReject:
    """An answer's ``notice_id`` and ``action`` (one of ``ACTIONS`` or ``COLLECTED``), or why it is refused.

    Pure: a number, a list or an object in either field is refused, never looked up (a set lookup would
    hash it: a list is unhashable)."""
    notice_id, action = body.get("notice_id"), body.get("action")
    if not is_id(notice_id):
        return StaffAckReject.BAD_NOTICE_ID
    if not isinstance(action, str) or (action not in ACTIONS and action != COLLECTED):
        return StaffAckReject.BAD_ACTION
    assert isinstance(notice_id, str)
    return notice_id, action
