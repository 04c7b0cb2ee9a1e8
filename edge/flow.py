"""The gateway's flow, stage to stage: check-in -> identity -> presence -> decide -> display -> ledger.

Every inbound handler validates, counts what it refuses, and returns only once its effect is durable
(the MQTT link acknowledges the message after that).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from time import perf_counter
from typing import TYPE_CHECKING, Final, Protocol

from edge.act.displays import DisplayBoard
from edge.clock import Clock, iso_utc
from edge.decide.catalog import Catalog
from edge.decide.policy import DecisionEngine, FallbackSource
from edge.events import CheckinReceived, Decision, DecisionContext, PresenceChanged, Purpose
from edge.identity import (
    Claim,
    ConsentStore,
    ProfileCache,
    Rejection,
    RejectReason,
    ReplayGuard,
    TokenVerifier,
)
from edge.ledger import WRITE_ERRORS, Ledger
from edge.presence.zones import ZonePresence
from edge.sources.payloads import (
    Availability,
    RejectCounter,
    Rejected,
    checkin_reply_to,
    exposure_time,
    parse_ack,
    parse_availability,
    parse_checkin,
)
from edge.sources.rejections import AckReject, CheckinReject, Kind
from edge.transport.mqtt import Inbound, MqttLink, RetryLater
from edge.transport.topics import Topics

if TYPE_CHECKING:
    from edge.control.metrics import Histogram, Metrics

log = logging.getLogger(__name__)

# Check-in sources and the consent purpose each needs before the signal may identify anyone.
SOURCE_PURPOSE = {"qr": Purpose.CAMERA_CHECKIN}


@dataclass(slots=True)
class FlowStats:
    checkins: int = 0
    decisions: int = 0
    exposures: int = 0
    acks_failed: int = 0
    # Presence-driven and pending decisions the ledger could not record (not shown; pending ones retried).
    unrecorded: int = 0
    # Check-ins the broker delivered again (MQTT DUP) whose first delivery was already committed.
    redelivered: int = 0
    acks_failed_by_display: Counter[str] = field(default_factory=Counter)
    # Exposures dated by the ack's arrival because the display's shown_at could not be true (its clock).
    shown_at_replaced: int = 0
    last_checkin_wall: float | None = None
    decisions_by_kind: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True, frozen=True)
class Accepted:
    """A check-in that was (or, redelivered, had already been) committed."""


ACCEPTED: Final = Accepted()


@dataclass(slots=True, frozen=True)
class Refused:
    """A check-in refused, with the reason it is counted under (docs/mqtt.md "Rejections")."""

    reason: str


class AudienceSource(Protocol):
    def audience(self, zone: str) -> tuple[int, float | None] | None:
        """(people in view, their mean dwell so far) for ``zone``, or None if this source does not see it."""
        ...


class PresenceSource(Protocol):
    def present(self, zone: str) -> list[str]: ...


def _timed_decide(
    histogram: Histogram,
    decide: Callable[[DecisionContext, frozenset[Purpose], FallbackSource | None], Decision],
    context: DecisionContext,
    consents: frozenset[Purpose],
    fallback: FallbackSource | None,
) -> Decision:
    """The engine's decide call, timed in the decision thread (the histogram's only writer)."""
    started = perf_counter()
    decision = decide(context, consents, fallback)
    histogram.observe(perf_counter() - started)
    return decision


class GatewayFlow:
    """Handlers for every inbound topic and the timer work, over injected stages."""

    def __init__(
        self,
        *,
        topics: Topics,
        link: MqttLink,
        clock: Clock,
        verifier: TokenVerifier,
        replay: ReplayGuard,
        consents: ConsentStore,
        profiles: ProfileCache,
        presence: ZonePresence,
        engine: DecisionEngine,
        ledger: Ledger,
        zones: list[str],
        fallbacks: Mapping[str, FallbackSource] | None = None,
    ) -> None:
        self.topics = topics
        self.link = link
        self.clock = clock
        self.verifier = verifier
        self.replay = replay
        self.consents = consents
        self.profiles = profiles
        self.presence = presence
        self.engine = engine
        self.ledger = ledger
        self.zones = zones
        self._fallbacks = dict(fallbacks or {})
        self.rejects = RejectCounter()
        self.stats = FlowStats()
        # The model and its counters are confined to one thread: no locks, and the event loop never waits on it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decide")
        self._board: DisplayBoard | None = None
        # jti -> outcome of a check-in whose claim is committing (True: committed).
        self._committing: dict[str, asyncio.Future[bool]] = {}
        # Other presence sources (BLE) whose shoppers count in zone totals.
        self.presence_sources: list[PresenceSource] = []
        self.audience_sources: list[AudienceSource] = []
        self._last_counts: dict[str, tuple[int, float]] = {}
        # Observers of every decision (the demo prints them; metrics later).
        self.on_decision: list[Callable[[Decision], None]] = []
        # Set by the sync service: makes an unknown shopper's profile local, bounded in time.
        self.ensure_profile: Callable[[str], Awaitable[object]] | None = None
        # Stage latencies (checkin, decision); None costs one check per check-in and per decision.
        self.metrics: Metrics | None = None
        consents.subscribe(self._consent_changed)

    def attach_board(self, board: DisplayBoard) -> None:
        self._board = board

    @property
    def board(self) -> DisplayBoard:
        assert self._board is not None, "attach_board() first"
        return self._board

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)

    # ----- wiring -----
    def register(self) -> None:
        self.link.on(self.topics.checkin, self.on_checkin)
        self.link.on(self.topics.display_ack_filter, self.on_ack)
        self.link.on(self.topics.display_availability_filter, self.on_availability)

    def publish_initial_state(self, *, keep: frozenset[str] = frozenset()) -> None:
        """Every display's manifest (fallbacks, or what ``keep`` displays show) and every zone's presence."""
        self.board.publish_idle(keep=keep)
        for zone in self.zones:
            self._publish_presence(zone)

    def adopt(self, previous: GatewayFlow) -> frozenset[str]:
        """Take over the screens and check-in presence of the flow this one replaces (an in-process rebuild).

        Displays and zones that are gone have their retained topics cleared. Returns the displays kept.
        """
        self.presence.adopt(previous.presence)
        kept = self.board.adopt(previous.board)
        for display_id in previous.board.display_ids() - self.board.display_ids():
            self.link.clear_retained(self.topics.display_content(display_id))
        for zone in set(previous.zones) - set(self.zones):
            self.link.clear_retained(self.topics.presence(zone))
        return kept

    # ----- check-ins -----
    async def on_checkin(self, message: Inbound) -> None:
        parsed = parse_checkin(message.payload)
        if isinstance(parsed, Rejected):
            self.rejects.reject(Kind.CHECKIN, parsed.reason, message.topic)
            self._reply(checkin_reply_to(message.payload), Refused(parsed.reason))
            return
        outcome = await self.checkin(
            parsed.token,
            parsed.zone,
            parsed.source,
            message.received_mono,
            message.topic,
            redelivered=message.redelivered,
        )
        self._reply(parsed.reply_to, outcome)
        metrics = self.metrics
        if outcome is ACCEPTED and metrics is not None:
            # Received (before waiting for a handler slot) -> jti claim and decisions durable.
            metrics.checkin.observe(self.clock.monotonic() - message.received_mono)

    def _reply(self, reply_to: str | None, outcome: Accepted | Refused) -> None:
        """The app's answer on ``checkin/result/{reply_to}``: accepted, or refused with the reason (docs/mqtt.md).

        Not retained, and nothing about the shopper: only the app that chose ``reply_to`` waits for it.
        """
        if reply_to is None:
            return
        body: dict[str, object] = {"v": 1, "ts": iso_utc(self.clock.wall())}
        if isinstance(outcome, Refused):
            body.update(status="refused", reason=str(outcome.reason))
        else:
            body["status"] = "accepted"
        self.link.publish(
            self.topics.checkin_result(reply_to), json.dumps(body, separators=(",", ":")).encode()
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
    ) -> Accepted | Refused:
        """One check-in from any source (app/kiosk over MQTT, a QR code seen by a camera): verify, replay,
        consent, presence, decide, record, show. Every refusal is counted under ``origin``.

        Returns only once the jti claim and the decisions are durable (one transaction, committed before
        any manifest is published); raises RetryLater if the ledger fails. ``redelivered``: the broker's
        second delivery of a message (MQTT DUP): if the first was committed, it is accepted again, counted
        as redelivered, and changes nothing.
        """
        if not self.presence.knows_zone(zone):
            return self._refuse(CheckinReject.UNKNOWN_ZONE, origin)
        verified = self.verifier.verify(token)
        if isinstance(verified, Rejection):
            return self._refuse(verified.reason, origin)
        if self.ensure_profile is not None:
            # A shopper new to this store: their profile and consents from the cloud, within a short wait.
            await self.ensure_profile(verified.sub)
        needed = SOURCE_PURPOSE.get(source)
        if needed is not None and not self.consents.has(verified.sub, needed):
            return self._refuse(CheckinReject.NO_CONSENT, origin)
        now = self.clock.wall()
        claim = self.replay.claim(verified.jti, verified.replay_until, now)
        if claim is not Claim.NEW:
            return await self._not_new(claim, verified.jti, redelivered, origin)
        # Claimed in memory until its durable commit settles; a redelivery meanwhile waits for the outcome.
        settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._committing[verified.jti] = settled
        try:
            event = CheckinReceived(verified.sub, zone, source, verified.jti, now, received_mono)
            self.stats.checkins += 1
            self.stats.last_checkin_wall = now
            self._presence_changed(self.presence.checkin(event))

            fresh = True

            async def commit(decisions: list[Decision]) -> bool:
                # The jti claim and the decisions commit in one transaction, before any manifest is sent:
                # a crash leaves the check-in either done or undone (then redelivered and redone).
                nonlocal fresh
                fresh = await self.ledger.record_checkin(
                    verified.jti, verified.replay_until, [(d, self._keep_shopper(d)) for d in decisions]
                )
                return fresh

            try:
                await self.board.request(event.zone, event.shopper_id, commit)
            except WRITE_ERRORS as exc:
                self.replay.release(verified.jti)
                settled.set_result(False)
                raise RetryLater(str(exc)) from exc
            except BaseException:
                self.replay.release(verified.jti)
                settled.set_result(False)
                raise
            settled.set_result(True)
        finally:
            del self._committing[verified.jti]
        if fresh:
            return ACCEPTED
        # Memory and disk disagree (memory lost it: a clock jump); the disk is the authority.
        if redelivered:
            self.stats.redelivered += 1
            return ACCEPTED
        return self._refuse(CheckinReject.REPLAYED_ON_DISK, origin)

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
        self.stats.redelivered += 1
        return ACCEPTED

    def _refuse(self, reason: StrEnum, origin: str) -> Refused:
        self.rejects.reject(Kind.CHECKIN, reason, origin)
        return Refused(reason)

    def _keep_shopper(self, decision: Decision) -> bool:
        return decision.shopper_id is not None and self.consents.has(decision.shopper_id, Purpose.MEASUREMENT)

    # ----- display acks and availability -----
    def _known_display(self, message: Inbound, kind: str) -> str | None:
        display_id = self.topics.display_of(message.topic)
        if display_id is None or not self.board.knows(display_id):
            # The same reason under either kind (AckReject / AvailabilityReject.UNKNOWN_DISPLAY).
            self.rejects.reject(kind, AckReject.UNKNOWN_DISPLAY, message.topic)
            return None
        return display_id

    async def on_ack(self, message: Inbound) -> None:
        display_id = self._known_display(message, Kind.ACK)
        if display_id is None:
            return
        ack = parse_ack(message.payload)
        if isinstance(ack, Rejected):
            self.rejects.reject(Kind.ACK, ack.reason, message.topic)
            return
        if ack.status == "failed":
            self.stats.acks_failed += 1
            self.stats.acks_failed_by_display[display_id] += 1
            if self.stats.acks_failed_by_display[display_id] == 1:  # a broken screen would fill the log
                log.info(
                    "display %s failed to show version %d (further failures are counted in gateway/health)",
                    display_id,
                    ack.version,
                )
            return
        if ack.decision_id is None:
            return  # an idle fallback shown: nothing was decided, nothing to measure
        known = self.board.lookup_ack(display_id, ack.decision_id)
        if known is not None and known[0] != ack.version:
            self.rejects.reject(Kind.ACK, AckReject.VERSION_MISMATCH, message.topic)
            return
        if known is None:
            stored = await self.ledger.decision(ack.decision_id)
            if stored is None or stored.get("display_id") != display_id:
                self.rejects.reject(Kind.ACK, AckReject.UNKNOWN_DECISION, message.topic)
                return
            at_wall = stored.get("at_wall")
        else:
            at_wall = known[1].at_wall
        now = self.clock.wall()
        decided_wall = float(at_wall) if isinstance(at_wall, int | float) else now
        shown_wall, replaced = exposure_time(ack.shown_at_wall, decided_wall, now)
        try:
            new = await self.ledger.record_exposure(
                decision_id=ack.decision_id,
                display_id=display_id,
                version=ack.version,
                shown_at_wall=shown_wall,
                acked_at_wall=now,
            )
        except WRITE_ERRORS as exc:
            raise RetryLater(str(exc)) from exc
        if new:
            self.stats.exposures += 1
            self.stats.shown_at_replaced += replaced
        else:
            self.rejects.reject(Kind.ACK, AckReject.DUPLICATE, message.topic)

    async def on_availability(self, message: Inbound) -> None:
        state = parse_availability(message.payload)
        if state is Availability.CLEARED:
            # Someone cleared the retained availability: the display was removed (its config entry may be
            # gone already). Not an error: it is offline from now on, until it says otherwise.
            display_id = self.topics.display_of(message.topic)
            if display_id is not None and self.board.knows(display_id):
                self.board.set_online(display_id, False)
            return
        display_id = self._known_display(message, Kind.AVAILABILITY)
        if display_id is None:
            return
        if isinstance(state, Rejected):
            self.rejects.reject(Kind.AVAILABILITY, state.reason, message.topic)
            return
        self.board.set_online(display_id, state is Availability.ONLINE)

    # ----- timers -----
    async def tick(self) -> None:
        self.replay.prune(self.clock.wall())
        self._presence_changed(self.presence.expire())
        try:
            await self.board.tick(self._record)
        except RetryLater as exc:
            self._unrecorded(exc)

    # ----- decisions -----
    async def decide(self, display_id: str, zone: str, shopper_id: str | None) -> Decision:
        consents = self.consents.granted(shopper_id) if shopper_id else frozenset()
        profile = None
        if shopper_id is not None and Purpose.PERSONALIZATION in consents:
            profile = self.profiles.get(shopper_id)
        context = DecisionContext(
            display_id=display_id,
            zone=zone,
            at_wall=self.clock.wall(),
            audience=self._audience(zone)[0],
            shopper_id=shopper_id,
            profile=profile,
        )
        loop = asyncio.get_running_loop()
        fallback = self._fallbacks.get(display_id)
        metrics = self.metrics
        if metrics is None:
            decision = await loop.run_in_executor(
                self._executor, self.engine.decide, context, consents, fallback
            )
        else:
            decision = await loop.run_in_executor(
                self._executor,
                _timed_decide,
                metrics.decision,
                self.engine.decide,
                context,
                consents,
                fallback,
            )
        self.stats.decisions += 1
        kind = "holdout" if decision.holdout else "fallback" if decision.offer_id is None else "offer"
        self.stats.decisions_by_kind[kind] += 1
        for listener in self.on_decision:
            listener(decision)
        return decision

    async def _record(self, decisions: list[Decision]) -> bool:
        """The board's commit for decisions that are not a check-in's: durable before they are shown."""
        if decisions:
            try:
                await self.ledger.record_decisions([(d, self._keep_shopper(d)) for d in decisions])
            except WRITE_ERRORS as exc:
                raise RetryLater(str(exc)) from exc
        return True

    # ----- presence -----
    async def serve(self, zone: str, shopper_id: str) -> None:
        """A shopper (from any source) asks for service in ``zone``: decide, record, show.

        If the decisions cannot be recorded (the ledger fails) the screens stay as they are: counted and
        logged, never raised into the timer or the BLE loop that asked.
        """
        try:
            await self.board.request(zone, shopper_id, self._record)
        except RetryLater as exc:
            self._unrecorded(exc)

    def _unrecorded(self, exc: RetryLater) -> None:
        self.stats.unrecorded += 1
        log.warning("decisions not recorded, screens left as they are: %s", exc)

    def presence_changed(self, changes: list[PresenceChanged]) -> None:
        """Publish counts of the zones ``changes`` touch and release screens of shoppers who left."""
        self._presence_changed(changes)

    def _presence_changed(self, changes: list[PresenceChanged]) -> None:
        zones = set()
        for change in changes:
            zones.add(change.zone)
            if change.kind == "leave":
                self.board.shopper_left(change.zone, change.shopper_id)
        for zone in zones:
            self._publish_presence(zone)

    def _people(self, zone: str) -> set[str]:
        """Identified shoppers in ``zone`` from every presence source (check-ins, BLE), each once."""
        people = set(self.presence.present(zone))
        for source in self.presence_sources:
            people.update(source.present(zone))
        return people

    def _audience(self, zone: str) -> tuple[int, int, float | None]:
        """(people, identified, mean dwell of those seen by a camera) in ``zone``.

        A camera sees everyone in front of it without knowing who they are; identified shoppers are a subset
        of them, so the zone holds at least the larger of the two counts.
        """
        identified = len(self._people(zone))
        seen, dwell = 0, None
        for source in self.audience_sources:
            count = source.audience(zone)
            if count is not None and count[0] >= seen:
                seen, dwell = count
        return max(identified, seen), identified, dwell

    def audience_changed(self, zone: str) -> None:
        """A camera's count for ``zone`` changed: republish its presence."""
        self._publish_presence(zone)

    def _publish_presence(self, zone: str) -> None:
        people, identified, dwell = self._audience(zone)
        now = self.clock.wall()
        if self._last_counts.get(zone, (-1, 0.0))[0] != people:
            self._last_counts[zone] = (people, now)
        body: dict[str, object] = {
            "v": 1,
            "ts": iso_utc(now),
            "people": people,
            "identified": identified,
            "since": iso_utc(self._last_counts[zone][1]),
        }
        if dwell is not None:
            body["dwell_s"] = round(dwell, 1)
        self.link.publish(
            self.topics.presence(zone), json.dumps(body, separators=(",", ":")).encode(), retain=True
        )

    async def replace_catalog(self, catalog: Catalog, day_counts: list[tuple[str, str, int]]) -> None:
        """Decide with ``catalog`` from the next decision on (cloud offers and inventory, live)."""
        await self._install_engine(lambda: self.engine.with_catalog(catalog), day_counts)
        log.info("offer catalog replaced: %d offers", len(catalog.offers))

    async def replace_engine(self, engine: DecisionEngine, day_counts: list[tuple[str, str, int]]) -> None:
        """Decide with ``engine`` (a new model, catalog or policy) from the next decision on."""
        await self._install_engine(lambda: engine, day_counts)
        log.info(
            "decision engine replaced: model %s, %d offers", engine.model_version, len(engine.catalog.offers)
        )

    async def _install_engine(
        self, make: Callable[[], DecisionEngine], day_counts: list[tuple[str, str, int]]
    ) -> None:
        def build() -> DecisionEngine:
            engine = make()
            engine.seed_counts(day_counts)
            return engine

        # Built in the engine's own thread, in order with the decisions queued before it.
        engine = await asyncio.get_running_loop().run_in_executor(self._executor, build)
        if engine.scorer is not self.engine.scorer:
            engine.swap_scorer(self.engine.scorer)  # a model swap landed on the old engine meanwhile
        self.engine = engine

    def forget_shopper(self, shopper_id: str) -> None:
        """An erased shopper: screens, check-in presence and the day's caps let go of them now."""
        self.board.forget_shopper(shopper_id)
        self._presence_changed(self.presence.forget(shopper_id))
        # The engine belongs to its worker thread; its caps are forgotten there, in order with decisions.
        self._executor.submit(self.engine.forget_shopper, shopper_id)

    def _consent_changed(self, shopper_id: str, purpose: Purpose, granted: bool) -> None:
        if granted:
            return
        if purpose is Purpose.PERSONALIZATION:
            # Withdrawal takes effect at once: personal content leaves the screens now.
            self.board.forget_shopper(shopper_id)
