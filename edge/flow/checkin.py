"""Check-ins, from the app, a kiosk or a QR code: verify -> replay -> consent -> presence -> decide -> record
-> show -> answer.

Every refusal is counted under its reason (docs/mqtt.md "Rejections") and answered on
``checkin/result/{reply_to}`` when the app asked. The handler returns (and the MQTT message is acked) only
once the jti claim and the decisions are durable, in one transaction, committed before any manifest is
published: a crash leaves a check-in done or undone, never half (docs/ledger.md "Check-ins").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from edge.clock import Clock, iso_utc
from edge.events import CheckinReceived, Decision, Purpose
from edge.flow.floor import Floor
from edge.flow.pairing import KioskPairing
from edge.flow.stats import FlowStats
from edge.identity import Claim, ConsentStore, Rejection, RejectReason, ReplayGuard, TokenVerifier
from edge.ledger import WRITE_ERRORS
from edge.sources.payloads import RejectCounter, Rejected, checkin_reply_to, parse_checkin
from edge.sources.rejections import CheckinReject, Kind
from edge.transport.mqtt import Inbound, MqttLink, RetryLater
from edge.transport.topics import Topics

if TYPE_CHECKING:
    from edge.control.metrics import Metrics

log = logging.getLogger(__name__)

# Check-in sources and the consent purpose each needs before the signal may identify anyone.
SOURCE_PURPOSE: Final = {"qr": Purpose.CAMERA_CHECKIN}

# Makes an unknown shopper's profile and consents local (the cloud's profile fetch), bounded in time.
EnsureProfile = Callable[[str], Awaitable[object]]


@dataclass(slots=True, frozen=True)
class Accepted:
    """A check-in that was (or, redelivered, had already been) committed."""


ACCEPTED: Final = Accepted()


@dataclass(slots=True, frozen=True)
class Refused:
    """A check-in refused, with the reason it is counted under (docs/mqtt.md "Rejections")."""

    reason: str


class CheckinFlow:
    """Handles ``checkin`` messages and QR check-ins seen by cameras."""

    def __init__(
        self,
        *,
        topics: Topics,
        link: MqttLink,
        clock: Clock,
        verifier: TokenVerifier,
        replay: ReplayGuard,
        consents: ConsentStore,
        floor: Floor,
        rejects: RejectCounter,
        stats: FlowStats,
        metrics: Metrics | None = None,
        ensure_profile: EnsureProfile | None = None,
        erased_at: Callable[[str], float | None] | None = None,
        on_cart: Callable[[str, tuple[str, ...]], None] | None = None,
    ) -> None:
        self._topics = topics
        self._link = link
        self._clock = clock
        self._verifier = verifier
        self._replay = replay
        self._consents = consents
        self._floor = floor
        self._rejects = rejects
        self._stats = stats
        # The check-in stage's latency (received -> durable); None costs one check per check-in.
        self._metrics = metrics
        self._ensure_profile = ensure_profile
        # An erased shopper's token may still be valid for minutes: refused until the cloud says otherwise.
        self._erased_at = erased_at
        # An app check-in's cart, handed over before its decision (the basket, docs/context.md).
        self._on_cart = on_cart
        # jti -> outcome of a check-in whose claim is committing (True: committed).
        self._committing: dict[str, asyncio.Future[bool]] = {}
        # Told (shopper, zone) of every check-in once it is committed (not of redeliveries): pickup.
        self.committed_listeners: list[Callable[[str, str], None]] = []
        # A kiosk check-in asking "my_data": (shopper, display, zone) once committed (edge/flow/privacy.py).
        self.my_data: Callable[[str, str | None, str], Awaitable[bool]] | None = None
        # The kiosks' pairing codes (edge/flow/pairing.py): a token naming a kiosk serves that kiosk only.
        self.pairing: KioskPairing | None = None

    def register(self) -> None:
        self._link.on(self._topics.checkin, self.on_checkin)

    def prune(self) -> None:
        """Timer work: forget claims whose tokens can no longer verify (the ledger's purge does it on disk);
        rotate the kiosks' pairing codes that are due."""
        self._replay.prune(self._clock.wall())
        if self.pairing is not None:
            self.pairing.tick()

    async def on_checkin(self, message: Inbound) -> None:
        parsed = parse_checkin(message.payload)
        if isinstance(parsed, Rejected):
            self._rejects.reject(Kind.CHECKIN, parsed.reason, message.topic)
            self._reply(checkin_reply_to(message.payload), Refused(parsed.reason))
            return
        asked: list[str] = []
        outcome = await self.checkin(
            parsed.token,
            parsed.zone,
            parsed.source,
            message.received_mono,
            message.topic,
            redelivered=message.redelivered,
            committed=asked.append if parsed.request is not None else None,
            cart=parsed.cart,
            display=parsed.display,
        )
        self._reply(parsed.reply_to, outcome)
        if asked and self.my_data is not None:
            await self.my_data(asked[0], parsed.display, parsed.zone)
        metrics = self._metrics
        if outcome is ACCEPTED and metrics is not None:
            # Received (before waiting for a handler slot) -> jti claim and decisions durable.
            metrics.checkin.observe(self._clock.monotonic() - message.received_mono)

    def _reply(self, reply_to: str | None, outcome: Accepted | Refused) -> None:
        """The app's answer on ``checkin/result/{reply_to}``: accepted, or refused with the reason (docs/mqtt.md).

        Not retained, and nothing about the shopper: only the app that chose ``reply_to`` waits for it.
        """
        if reply_to is None:
            return
        body: dict[str, object] = {"v": 1, "ts": iso_utc(self._clock.wall())}
        if isinstance(outcome, Refused):
            body.update(status="refused", reason=str(outcome.reason))
        else:
            body["status"] = "accepted"
        self._link.publish(
            self._topics.checkin_result(reply_to), json.dumps(body, separators=(",", ":")).encode()
        )

    async def checkin(
        self,
        token: str,
        zone: str,
        source: str,
        received_mono: float,
        origin: str,
        *,
        redelivered: bool = False,
        committed: Callable[[str], None] | None = None,
        cart: tuple[str, ...] = (),
        display: str | None = None,
    ) -> Accepted | Refused:
        """One check-in from any source (app/kiosk over MQTT, a QR code seen by a camera): verify, replay,
        consent, presence, decide, record, show. Every refusal is counted under ``origin``.

        Returns only once the jti claim and the decisions are durable (one transaction, committed before
        any manifest is published); raises RetryLater if the ledger fails. ``redelivered``: the broker's
        second delivery of a message (MQTT DUP): if the first was committed, it is accepted again, counted
        as redelivered, and changes nothing. A token with a ``display`` claim is a kiosk pairing: accepted
        only with that kiosk's current code (``pairing`` claim), and served on that kiosk alone; ``display``,
        the message's own field (a ``my_data`` request), must then name the same kiosk.
        """
        if not self._floor.presence.knows_zone(zone):
            return self._refuse(CheckinReject.UNKNOWN_ZONE, origin)
        verified = self._verifier.verify(token)
        if isinstance(verified, Rejection):
            return self._refuse(verified.reason, origin)
        if self._ensure_profile is not None:
            # A shopper new to this store: their profile and consents from the cloud, within a short wait.
            await self._ensure_profile(verified.sub)
        erased = self._erased_at(verified.sub) if self._erased_at is not None else None
        if erased is not None and not self._consents.granted_after(verified.sub, erased):
            # Erased here, and nothing granted since (a newer grant from the cloud: they came back).
            return self._refuse(CheckinReject.ERASED, origin)
        needed = SOURCE_PURPOSE.get(source)
        if needed is not None and not self._consents.has(verified.sub, needed):
            return self._refuse(CheckinReject.NO_CONSENT, origin)
        now = self._clock.wall()
        claim = self._replay.claim(verified.jti, verified.replay_until, now)
        if claim is not Claim.NEW:
            return await self._not_new(claim, verified.jti, redelivered, origin)
        # After the claim (a redelivery of a paired check-in finds its jti, not its used code), and with no
        # await between the check and the use: one code, one check-in.
        paired = self._paired_kiosk(verified.claims, zone, display)
        if paired is False:
            self._replay.release(verified.jti)
            return self._refuse(CheckinReject.BAD_PAIRING, origin)
        # Claimed in memory until its durable commit settles; a redelivery meanwhile waits for the outcome.
        settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._committing[verified.jti] = settled
        try:
            event = CheckinReceived(verified.sub, zone, source, verified.jti, now, received_mono)
            self._stats.checkins += 1
            self._stats.last_checkin_wall = now
            self._floor.changed(self._floor.presence.checkin(event))
            if cart and self._on_cart is not None:
                self._on_cart(event.shopper_id, cart)

            fresh = True

            async def commit(decisions: list[Decision]) -> bool:
                # The jti claim and the decisions commit in one transaction, before any manifest is sent:
                # a crash leaves the check-in either done or undone (then redelivered and redone).
                nonlocal fresh
                fresh = await self._floor.recorder.record_checkin(
                    verified.jti, verified.replay_until, decisions
                )
                return fresh

            try:
                await self._floor.board.request(
                    event.zone, event.shopper_id, commit, only=paired if isinstance(paired, str) else None
                )
            except WRITE_ERRORS as exc:
                self._replay.release(verified.jti)
                settled.set_result(False)
                raise RetryLater(str(exc)) from exc
            except BaseException:
                self._replay.release(verified.jti)
                settled.set_result(False)
                raise
            settled.set_result(True)
        finally:
            del self._committing[verified.jti]
        if fresh:
            for listener in tuple(self.committed_listeners):
                listener(event.shopper_id, event.zone)
            if committed is not None:
                committed(event.shopper_id)
            return ACCEPTED
        # Memory and disk disagree (memory lost it: a clock jump); the disk is the authority.
        if redelivered:
            self._stats.redelivered += 1
            return ACCEPTED
        return self._refuse(CheckinReject.REPLAYED_ON_DISK, origin)

    def _paired_kiosk(self, claims: dict[str, object], zone: str, display: str | None) -> str | bool:
        """The kiosk a token pairs with (its code used now); True: no pairing; False: a pairing that fails."""
        if "display" not in claims and "pairing" not in claims:
            return True
        kiosk = claims.get("display")
        if self.pairing is None or self.pairing.check(kiosk, claims.get("pairing"), zone) is not None:
            return False
        assert isinstance(kiosk, str)  # check() refuses anything else
        if display is not None and display != kiosk:
            return False
        self.pairing.use(kiosk)
        return kiosk

    async def _not_new(self, claim: Claim, jti: str, redelivered: bool, origin: str) -> Accepted | Refused:
        """A check-in whose jti is claimed already (or may have been, before the clock stepped back)."""
        if claim is Claim.CLOCK_BEHIND:
            return self._refuse(CheckinReject.CLOCK_BEHIND, origin)
        if not redelivered:
            return self._refuse(RejectReason.REPLAYED, origin)
        # The broker sent this message again (its DUP flag: a publisher cannot set it for us), because we
        # did not ack it before a crash or a lost connection. Not an attack: if its first delivery was
        # committed, it is done; if that commit is still running, its outcome decides.
        pending = self._committing.get(jti)
        if pending is not None and not await asyncio.shield(pending):
            raise RetryLater("the first delivery of this check-in failed to commit")
        self._stats.redelivered += 1
        return ACCEPTED

    def _refuse(self, reason: StrEnum, origin: str) -> Refused:
        self._rejects.reject(Kind.CHECKIN, reason, origin)
        return Refused(reason)
