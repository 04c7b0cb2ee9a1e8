"""What every screen shows: versioned retained manifests, arbitration, minimum display time, expiry.

Arbitration (docs/displays.md): one shopper per screen; the newest request wins, but content that is up
stays at least ``min_display_s``; a request arriving earlier waits in the screen's single pending slot
(a newer request replaces it, counted as superseded) and is decided when the time is up, if the shopper
is still in the zone. Personal content lasts ``content_ttl_s``: then, if its shopper is still in the zone,
the screen is decided for them again (a renewal, within the offer caps); otherwise it goes back to the
fallback. It is released soon after the shopper leaves.

A manifest that carries a decision is published only after ``commit`` made that decision durable
(docs/displays.md "Durable before shown"): a screen can ack anything it was sent, and the ack must find
its decision in the ledger, even after a power cut.

Nothing here scans every screen on a check-in or a tick: screens are indexed by zone, and each screen's
next timer (its pending request, release or expiry) sits in a heap, so a tick looks only at the screens
that have something due (docs/displays.md "Cost").
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from edge.clock import Clock, iso_utc
from edge.config.model import DisplaySettings
from edge.deadlines import Deadlines
from edge.events import Decision
from edge.transport.topics import Topics

log = logging.getLogger(__name__)

# Decisions remembered per display to match acks; a screen acks within seconds, 64 covers hours of churn.
ACKABLE_PER_DISPLAY: Final = 64
# A tick also looks at screens due this little after now: a due time is a sum (shown + minimum time) that
# can round a hair above the instant the rule's own subtraction accepts; the rule decides, as it always did.
DUE_SLACK_S: Final = 1e-6

DecideFn = Callable[[str, str, str | None], Awaitable[Decision]]
# Makes the decisions durable (with whatever else must commit with them, such as a check-in's jti claim);
# False: they must not be shown (the claim was refused). Raising leaves the screens as they were.
CommitFn = Callable[[list[Decision]], Awaitable[bool]]
PublishFn = Callable[[str, bytes, bool], None]
PresentFn = Callable[[str, str], bool]


def _free_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass(slots=True)
class _Screen:
    settings: DisplaySettings
    version: int = 0
    decision: Decision | None = None  # None: idle fallback (or ``content``)
    # Content that is not a decision (a collection-point screen's list of ready orders): template and data.
    content: tuple[str, dict[str, Any]] | None = None
    shopper_id: str | None = None
    shown_mono: float = float("-inf")
    expires_mono: float | None = None
    expires_wall: float | None = None
    pending: str | None = None
    release_asked: bool = False
    online: bool = True
    # The shopper whose decision is being made and committed for this screen; the screen takes no other
    # request meanwhile (it goes to ``pending``), so two concurrent check-ins never race for one screen.
    reserved_for: str | None = None
    # Set while the screen is not reserved: a request that finds it reserved waits for it (a commit takes
    # milliseconds), then is arbitrated as usual, so requests are taken in arrival order, not lost to a race.
    free: asyncio.Event = field(default_factory=_free_event)
    ackable: OrderedDict[str, tuple[int, Decision]] = field(default_factory=OrderedDict)


@dataclass(slots=True, frozen=True)
class DisplayStats:
    """One display as gateway/health shows it."""

    version: int  # of its current manifest
    offer_id: str | None  # None: the fallback (or an empty decision) is shown
    online: bool  # as the display's own availability message says
    pending: bool  # a request waits for its minimum display time


class DisplayBoard:
    """Owns the state of every configured display and publishes their manifests."""

    def __init__(
        self,
        displays: list[DisplaySettings],
        *,
        topics: Topics,
        publish: PublishFn,
        decide: DecideFn,
        is_present: PresentFn,
        clock: Clock,
        version_floor_wall: Callable[[], float] | None = None,
        ui_for: Callable[[str], Mapping[str, object]] | None = None,
    ) -> None:
        self._topics = topics
        self._publish = publish
        self._decide = decide
        self._is_present = is_present
        self._clock = clock
        # The highest wall time the gateway has seen: versions stay above what screens hold even when the
        # clock restarts behind it (a Pi without a real-time clock), or players would ignore new content.
        self._version_floor_wall = version_floor_wall or clock.wall
        # A kiosk's personal manifest carries the shopper's ui preferences (docs/displays.md "Kiosks").
        self._ui_for = ui_for
        self._screens = {display.id: _Screen(display) for display in displays}
        # Configuration order: the order the tick serves screens due together, as when it scanned them all.
        self._order = {display.id: index for index, display in enumerate(displays)}
        self._by_zone: dict[str, list[str]] = {}
        for display in displays:
            if not display.pickup:  # a collection-point screen serves no offers (docs/pickup.md)
                self._by_zone.setdefault(display.zone, []).append(display.id)
        # Each screen's next timer (monotonic): when the tick must look at it; a screen with none is absent.
        self._due: Deadlines[str] = Deadlines()
        # "tick_screens": screens a tick looked at, the measure of its cost (tests/act: only those due).
        self.counters: Counter[str] = Counter()

    # ----- queries -----
    def displays_in(self, zone: str) -> list[str]:
        return list(self._by_zone.get(zone, ()))

    def knows(self, display_id: str) -> bool:
        return display_id in self._screens

    def current(self, display_id: str) -> Decision | None:
        return self._screens[display_id].decision

    def version(self, display_id: str) -> int:
        return self._screens[display_id].version

    def showing(self, display_id: str) -> tuple[str, bool, float | None]:
        """(template, whether it is the fallback, expiry wall time) of what ``display_id`` shows: never who,
        never the data (a kiosk's ``my-data`` content is the shopper's own). For the store dashboard."""
        screen = self._screens[display_id]
        if screen.content is not None:
            return screen.content[0], False, screen.expires_wall
        decision = screen.decision
        if decision is None or decision.offer_id is None:
            return screen.settings.fallback.template, True, screen.expires_wall
        return decision.template, False, screen.expires_wall

    def stats(self) -> dict[str, DisplayStats]:
        """Each display's state for gateway/health, by display id."""
        return {
            sid: DisplayStats(
                version=screen.version,
                offer_id=screen.decision.offer_id if screen.decision else None,
                online=screen.online,
                pending=screen.pending is not None,
            )
            for sid, screen in self._screens.items()
        }

    # ----- inputs -----
    def publish_idle(self, *, keep: frozenset[str] = frozenset()) -> None:
        """Publish every display's fallback at start-up so screens never show stale content from before.

        Displays in ``keep`` (taken over from a previous board) republish what they show instead.
        """
        now_wall = self._clock.wall()
        for screen in self._screens.values():
            if screen.settings.id in keep:
                manifest = self._manifest(screen, now_wall)
                self._publish(self._topics.display_content(screen.settings.id), manifest, True)
            else:
                self._show(screen, None)

    def adopt(self, previous: DisplayBoard) -> frozenset[str]:
        """Take over what the displays of a replaced board show (a rebuild): same id, same zone.

        Their content, version, pending shopper and ackable decisions carry over with the new settings, so a
        rebuild is invisible on those screens. Returns the ids taken over.
        """
        kept = []
        for display_id, screen in self._screens.items():
            old = previous._screens.get(display_id)
            if old is None or old.settings.zone != screen.settings.zone:
                continue
            self._screens[display_id] = replace(
                old, settings=screen.settings, reserved_for=None, free=_free_event()
            )
            kept.append(display_id)
        self._due = Deadlines()
        for screen in self._screens.values():
            self._schedule(screen)
        return frozenset(kept)

    def display_ids(self) -> frozenset[str]:
        return frozenset(self._screens)

    def settings_of(self, display_id: str) -> DisplaySettings:
        return self._screens[display_id].settings

    def pickup_displays(self) -> list[str]:
        """The collection-point screens, in configuration order."""
        return [sid for sid, screen in self._screens.items() if screen.settings.pickup]

    def show_content(
        self, display_id: str, template: str, data: dict[str, Any] | None, expires_at_mono: float | None
    ) -> None:
        """Show content that is not a decision (no ``decision_id``: nothing to record, nothing measured);
        ``data`` None: back to the fallback (nothing is published if the screen is idle already)."""
        screen = self._screens[display_id]
        if data is None:
            if screen.content is not None:
                self._show(screen, None)
            return
        self._show(screen, None, content=(template, data), expires_at_mono=expires_at_mono)

    async def request(
        self, zone: str, shopper_id: str, commit: CommitFn, *, only: str | None = None
    ) -> list[Decision]:
        """A shopper asks for service in ``zone``: decide for every free screen, ``commit``, then show.

        ``commit`` runs even when no screen is free (a check-in's claim commits on its own then). Returns
        the decisions shown; none if ``commit`` refused them. ``only``: that one screen (a paired kiosk).
        """
        screens = self._in_zone(zone)
        if only is not None:
            screens = [screen for screen in screens if screen.settings.id == only]
        while (busy := next((s for s in screens if s.reserved_for is not None), None)) is not None:
            await busy.free.wait()
        # From here to the reservations below nothing awaits: the arbitration sees one state.
        reserved = []
        for screen in screens:
            if not screen.online:
                self.counters["skipped_offline"] += 1
                continue
            if self._can_replace(screen):
                self._reserve(screen, shopper_id)
                reserved.append(screen)
            else:
                if screen.pending is not None and screen.pending != shopper_id:
                    self.counters["superseded"] += 1
                screen.pending = shopper_id
                self._schedule(screen)
        return await self._serve(reserved, shopper_id, commit)

    async def tick(self, commit: CommitFn) -> list[Decision]:
        """Timer work: serve pending requests (decided, committed, then shown), release screens of shoppers
        who left, expire content. Returns the decisions shown."""
        now = self._clock.monotonic()
        served: list[tuple[_Screen, str]] = []
        for screen in self._take_due(now):
            self._tick_screen(screen, now, served)
            self._schedule(screen)
        if not served:
            return []
        # Together, not one after another: every reserved screen would otherwise wait for all before it,
        # and a busy moment (a burst after a restart) would keep screens reserved for many commits.
        outcomes = await asyncio.gather(
            *(self._serve([screen], shopper, commit) for screen, shopper in served), return_exceptions=True
        )
        made, failure = [], None
        for (screen, shopper), outcome in zip(served, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # Not shown: asked again at the next tick, unless a newer request took the slot meanwhile.
                screen.pending = screen.pending or shopper
                self._schedule(screen)
                failure = outcome
            else:
                made += outcome
        if failure is not None:
            raise failure
        return made

    def shopper_left(self, zone: str, shopper_id: str) -> None:
        for screen in self._in_zone(zone):
            if screen.pending == shopper_id:
                screen.pending = None
            if screen.shopper_id == shopper_id:
                screen.release_asked = True
            self._schedule(screen)

    def forget_shopper(self, shopper_id: str) -> None:
        """Withdrawn consent or erasure: their content leaves every screen now, not after min display."""
        # Every screen: rare (an erasure, a withdrawn consent), and a shopper may be on any of them.
        for screen in self._screens.values():
            if screen.pending == shopper_id:
                screen.pending = None
                self._schedule(screen)
            if screen.reserved_for == shopper_id:
                self._release(screen)  # its decision, once committed, is not shown
            if screen.shopper_id == shopper_id:
                self._show(screen, None)

    def set_online(self, display_id: str, online: bool) -> None:
        screen = self._screens[display_id]
        if screen.online != online:
            log.info("display %s is %s", display_id, "online" if online else "offline")
        screen.online = online

    def lookup_ack(self, display_id: str, decision_id: str) -> tuple[int, Decision] | None:
        screen = self._screens.get(display_id)
        if screen is None:
            return None
        return screen.ackable.get(decision_id)

    # ----- internals -----
    def _in_zone(self, zone: str) -> list[_Screen]:
        return [self._screens[display_id] for display_id in self._by_zone.get(zone, ())]

    def _tick_screen(self, screen: _Screen, now: float, served: list[tuple[_Screen, str]]) -> None:
        """The timer rules for one screen: serve its pending request, release it, or expire its content."""
        if screen.pending is not None and self._can_replace(screen):
            shopper, screen.pending = screen.pending, None
            if self._is_present(shopper, screen.settings.zone) and screen.online:
                self._reserve(screen, shopper)
                served.append((screen, shopper))
                return
        if (screen.decision is None and screen.content is None) or screen.reserved_for is not None:
            return
        elapsed = now - screen.shown_mono
        if screen.release_asked and elapsed >= screen.settings.min_display_s:
            self.counters["released"] += 1
            self._show(screen, None)
        elif screen.expires_mono is not None and now >= screen.expires_mono:
            owner = screen.shopper_id
            if owner is not None and screen.online and self._is_present(owner, screen.settings.zone):
                # Still standing there: decided again (caps and cooldowns hold; nothing eligible is the
                # fallback), recorded, then shown, like any request (docs/displays.md, arbitration rule 5).
                self.counters["renewed"] += 1
                self._reserve(screen, owner)
                served.append((screen, owner))
                return
            self.counters["expired"] += 1
            self._show(screen, None)

    # ----- timers -----
    @staticmethod
    def _next_due(screen: _Screen) -> float | None:
        """When the timer rules (``_tick_screen``) may next act on ``screen``; None: only an input can."""
        if screen.reserved_for is not None:
            return None  # scheduled again when the reservation is released
        times = []
        if screen.pending is not None:
            # Served as soon as the content that is up has had its minimum time (idle: at once).
            times.append(
                float("-inf")
                if screen.decision is None
                else screen.shown_mono + screen.settings.min_display_s
            )
        if screen.decision is not None and screen.release_asked:
            times.append(screen.shown_mono + screen.settings.min_display_s)
        if (screen.decision is not None or screen.content is not None) and screen.expires_mono is not None:
            times.append(screen.expires_mono)
        return min(times, default=None)

    def _schedule(self, screen: _Screen) -> None:
        """After any change to what ``screen`` shows or awaits: its next timer."""
        self._due.set(screen.settings.id, self._next_due(screen))

    def _take_due(self, now: float) -> list[_Screen]:
        """The screens whose next timer is due at ``now``, in configuration order."""
        taken = self._due.take(lambda at: at <= now + DUE_SLACK_S)
        self.counters["tick_screens"] += len(taken)
        return [self._screens[display_id] for display_id in sorted(taken, key=self._order.__getitem__)]

    def _can_replace(self, screen: _Screen) -> bool:
        if screen.reserved_for is not None:
            return False
        if screen.decision is None:
            return True
        return self._clock.monotonic() - screen.shown_mono >= screen.settings.min_display_s

    async def _serve(self, screens: list[_Screen], shopper_id: str, commit: CommitFn) -> list[Decision]:
        """Decide for the reserved ``screens``, commit, and show what is still reserved for ``shopper_id``."""
        decisions: list[Decision] = []
        shown: list[Decision] = []
        try:
            # Still reserved: an erasure may have let go between the reservation and this task's start.
            screens = [screen for screen in screens if screen.reserved_for == shopper_id]
            for screen in screens:
                decisions.append(await self._decide(screen.settings.id, screen.settings.zone, shopper_id))
            if not await commit(decisions):
                return []
            for screen, decision in zip(screens, decisions, strict=True):
                # A withdrawal or erasure while committing took the reservation back: not shown.
                if screen.reserved_for == shopper_id:
                    self._release(screen)
                    self._show(screen, decision)
                    shown.append(decision)
        finally:
            for screen in screens:
                if screen.reserved_for == shopper_id:
                    self._release(screen)
        return shown

    def _reserve(self, screen: _Screen, shopper_id: str) -> None:
        screen.reserved_for = shopper_id
        screen.free.clear()
        self._schedule(screen)

    def _release(self, screen: _Screen) -> None:
        screen.reserved_for = None
        screen.free.set()
        self._schedule(screen)

    def _show(
        self,
        screen: _Screen,
        decision: Decision | None,
        *,
        content: tuple[str, dict[str, Any]] | None = None,
        expires_at_mono: float | None = None,
    ) -> None:
        now_wall = self._clock.wall()
        # Monotonic across restarts without storage: never below the wall clock's high-water mark in ms.
        floor = max(now_wall, self._version_floor_wall())
        screen.version = max(screen.version + 1, int(floor * 1000))
        screen.decision = decision
        screen.content = content
        screen.shopper_id = decision.shopper_id if decision is not None else None
        screen.release_asked = False
        screen.shown_mono = self._clock.monotonic() if decision is not None else float("-inf")
        if decision is not None:
            ttl = screen.settings.content_ttl_s
            screen.expires_mono = self._clock.monotonic() + ttl
            screen.expires_wall = now_wall + ttl
            screen.ackable[decision.decision_id] = (screen.version, decision)
            while len(screen.ackable) > ACKABLE_PER_DISPLAY:
                screen.ackable.popitem(last=False)
        elif content is not None and expires_at_mono is not None:
            screen.expires_mono = expires_at_mono
            screen.expires_wall = now_wall + (expires_at_mono - self._clock.monotonic())
        else:
            screen.expires_mono = screen.expires_wall = None
        self._schedule(screen)
        self._publish(
            self._topics.display_content(screen.settings.id), self._manifest(screen, now_wall), True
        )
        self.counters["manifests"] += 1

    def _manifest(self, screen: _Screen, now_wall: float) -> bytes:
        decision = screen.decision
        fallback = screen.settings.fallback
        if screen.content is not None:
            template, data = screen.content
            body: dict[str, Any] = {
                "decision_id": None,
                "offer_id": None,
                "template": template,
                "data": data,
                "fallback": False,
            }
        elif decision is None:
            body = {
                "decision_id": None,
                "offer_id": None,
                "template": fallback.template,
                "data": fallback.data,
                "fallback": True,
            }
        else:
            is_fallback = decision.offer_id is None
            body = {
                "decision_id": decision.decision_id,
                "offer_id": decision.offer_id,
                "template": fallback.template if is_fallback else decision.template,
                "data": fallback.data if is_fallback else decision.data,
                "fallback": is_fallback,
            }
        if screen.settings.ui and screen.shopper_id is not None and self._ui_for is not None:
            ui = self._ui_for(screen.shopper_id)
            if ui:
                body["ui"] = dict(ui)
        manifest = {
            "v": 1,
            "ts": iso_utc(now_wall),
            "display": screen.settings.id,
            "version": screen.version,
            **body,
            "issued_at": iso_utc(now_wall),
            "expires_at": iso_utc(screen.expires_wall) if screen.expires_wall is not None else None,
        }
        return json.dumps(manifest, separators=(",", ":")).encode()
