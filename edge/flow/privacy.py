"""The shopper's rights in the running gateway (docs/privacy.md).

- ``privacy/action``: a consent given or withdrawn, or an erasure asked for, at a kiosk, the staff tablet or a
  till, authenticated by the shopper's own single-use token. Applied here at once (a withdrawal in memory
  before it is durable, as every withdrawal), stored, and pushed to the cloud as the privacy event it is; the
  cloud applies it and every other store pulls it. Answered on ``privacy/result/{reply_to}``.
- ``privacy/request``: the cloud's signed request for a shopper's export. Answered once per request id through
  the sync outbox as ``privacy_export`` events (class privacy: never dropped), in parts that fit a push.
- A kiosk check-in with ``"request": "my_data"``: a summary of what the store holds, on that kiosk only, for
  a short while, and cleared when the shopper leaves the zone.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from edge.act.displays import DisplayBoard
from edge.clock import Clock, iso_utc
from edge.identity import Claim, ConsentStore, Rejection, ReplayGuard, TokenVerifier
from edge.identity.tokens import RejectReason as TokenReason
from edge.ledger import WRITE_ERRORS, Ledger
from edge.ledger.outbox import NewEvent, encode_event, event_id_for
from edge.privacy.export import summary
from edge.privacy.request import RequestRefused, verify_request
from edge.sources.payloads import RejectCounter, Rejected
from edge.sources.privacy import PrivacyAction, parse_privacy_action, reply_to_of
from edge.sources.rejections import Kind, PrivacyReject
from edge.sync.wire import EventClass
from edge.transport.mqtt import Inbound, MqttLink, RetryLater
from edge.transport.topics import Topics

log = logging.getLogger(__name__)

EXPORT_KIND: Final = "privacy_export"
MY_DATA_TEMPLATE: Final = "my-data"
# One privacy_export event's JSON at most: a push request carries up to 1 MiB (docs/sync-openapi.yaml).
PART_MAX_BYTES: Final = 128 * 1024


class BuildExport(Protocol):
    """The running gateway's export of one shopper (``edge.privacy.sources.LiveExport``)."""

    def __call__(self, shopper_id: str, *, explain: bool = True) -> Awaitable[dict[str, Any]]: ...


@dataclass(slots=True)
class PrivacyCounters:
    """What the privacy flow did since start (``gateway/health`` ``privacy``, ``edge_privacy_*`` metrics)."""

    consents: int = 0
    erasures: int = 0
    exports_answered: int = 0
    export_duplicates: int = 0
    my_data_shown: int = 0
    my_data_refused: int = 0


def export_parts(
    request_id: str, doc: Mapping[str, Any], max_bytes: int = PART_MAX_BYTES
) -> list[dict[str, Any]]:
    """The export split into event data of at most ``max_bytes`` of JSON each: part 1 holds every field but
    the long lists' overflow; each further part holds one list's next items. Joined, the parts are ``doc``."""
    head: dict[str, Any] = {}
    rest: list[tuple[str, list[Any]]] = []
    for key, value in doc.items():
        if isinstance(value, list) and _size(value) > max_bytes // 4:
            head[key] = []
            rest.append((key, value))
        else:
            head[key] = value
    # Many medium lists can still overflow the first part: the largest move out until it fits.
    while _size(head) > max_bytes - 1024:
        movable = [(key, value) for key, value in head.items() if isinstance(value, list) and value]
        if not movable:
            break
        key, value = max(movable, key=lambda kv: _size(kv[1]))
        head[key] = []
        rest.append((key, value))
    chunks: list[dict[str, Any]] = [{"export": head}]
    for key, items in rest:
        current: list[Any] = []
        size = 0
        for item in items:
            item_size = _size(item) + 1
            if current and size + item_size > max_bytes - 1024:
                chunks.append({"export": {key: current}})
                current, size = [], 0
            current.append(item)
            size += item_size
        if current:
            chunks.append({"export": {key: current}})
    total = len(chunks)
    return [
        {"request_id": request_id, "part": i, "parts": total, **chunk} for i, chunk in enumerate(chunks, 1)
    ]


def _dump(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _size(value: object) -> int:
    return len(_dump(value).encode("utf-8", "surrogatepass"))


class PrivacyFlow:
    def __init__(
        self,
        *,
        topics: Topics,
        link: MqttLink,
        clock: Clock,
        store_id: str,
        verifier: TokenVerifier,
        replay: ReplayGuard,
        consents: ConsentStore,
        ledger: Ledger,
        rejects: RejectCounter,
        erase: Callable[[str], None],
        build_export: BuildExport,
        board: DisplayBoard,
        my_data_ttl_s: float = 60.0,
    ) -> None:
        self._topics = topics
        self._link = link
        self._clock = clock
        self._store_id = store_id
        self._verifier = verifier
        self._replay = replay
        self._consents = consents
        self._ledger = ledger
        self._rejects = rejects
        self._erase = erase
        self.build_export = build_export
        self._board = board
        self._my_data_ttl_s = my_data_ttl_s
        self._kiosks = frozenset(d for d in board.display_ids() if board.settings_of(d).ui)
        # display -> the shopper whose summary it shows (cleared when they leave its zone)
        self._showing: dict[str, str] = {}
        self.counters = PrivacyCounters()

    def register(self) -> None:
        self._link.on(self._topics.privacy_action, self.on_action)
        self._link.on(self._topics.privacy_request, self.on_request)

    # ----- privacy/action -----------------------------------------------------------------------------------
    async def on_action(self, message: Inbound) -> None:
        parsed = parse_privacy_action(message.payload)
        if isinstance(parsed, Rejected):
            self._refuse(parsed.reason, message.topic, reply_to_of(message.payload))
            return
        verified = self._verifier.verify(parsed.token)
        if isinstance(verified, Rejection):
            self._refuse(verified.reason, message.topic, parsed.reply_to)
            return
        now = self._clock.wall()
        claim = self._replay.claim(verified.jti, verified.replay_until, now)
        if claim is not Claim.NEW:
            if claim is Claim.SEEN and message.redelivered:
                self._answer(parsed, "accepted")  # the broker's second delivery of an action applied
            elif claim is Claim.CLOCK_BEHIND:
                self._refuse(PrivacyReject.CLOCK_BEHIND, message.topic, parsed.reply_to)
            else:
                self._refuse(TokenReason.REPLAYED, message.topic, parsed.reply_to)
            return
        try:
            # The action and its token's claim commit in one transaction: exactly once. A crash before
            # the commit redelivers the message and nothing was done; after it, the redelivery finds the
            # claim on disk and changes nothing.
            await self._apply(parsed, verified.sub, now, (verified.jti, verified.replay_until))
        except WRITE_ERRORS as exc:
            self._replay.release(verified.jti)
            raise RetryLater(str(exc)) from exc
        self._answer(parsed, "accepted")

    async def _apply(
        self, action: PrivacyAction, shopper_id: str, now: float, claim: tuple[str, float]
    ) -> None:
        if action.action == "erase":
            if await self._ledger.forget_shopper(shopper_id, report=True, claim=claim):
                self._erase(shopper_id)
                self.counters.erasures += 1
                log.info("erasure asked at a %s: applied here and queued for the cloud", action.source)
            return
        assert action.purpose is not None
        assert action.granted is not None
        values = (shopper_id, action.purpose, action.granted, now, action.source)
        if self._consents.would_change(*values):
            await self._consents.apply(*values, claim=claim)
        else:
            await self._ledger.claim_jti(
                *claim
            )  # nothing to change (a newer choice is held): the token is spent
        self.counters.consents += 1

    def _refuse(self, reason: str, topic: str, reply_to: str | None) -> None:
        self._rejects.reject(Kind.PRIVACY, reason, topic)
        if reply_to is not None:
            self._publish_result(reply_to, {"status": "refused", "reason": str(reason)})

    def _answer(self, action: PrivacyAction, status: str) -> None:
        if action.reply_to is not None:
            self._publish_result(action.reply_to, {"status": status, "action": action.action})

    def _publish_result(self, reply_to: str, body: dict[str, Any]) -> None:
        payload = {"v": 1, "ts": iso_utc(self._clock.wall()), **body}
        self._link.publish(self._topics.privacy_result(reply_to), _dump(payload).encode())

    # ----- privacy/request ----------------------------------------------------------------------------------
    async def on_request(self, message: Inbound) -> None:
        now = self._clock.wall()
        request = verify_request(message.payload, self._verifier.keys_for, self._store_id, now)
        if isinstance(request, RequestRefused):
            self._rejects.reject(Kind.PRIVACY_REQUEST, request.reason, message.topic)
            return
        request_id, shopper_id = request.request_id, request.shopper_id
        try:
            if await self._ledger.privacy_answered(request_id):
                self.counters.export_duplicates += 1
                return
            doc = await self.build_export(shopper_id)
            events = self.export_events(request_id, shopper_id, doc, now)
            detail = _dump({"parts": len(events)})
            written = await self._ledger.record_privacy_export(
                shopper_id, now, "cloud", detail, request_id=request_id, answer=events
            )
        except WRITE_ERRORS as exc:
            raise RetryLater(str(exc)) from exc
        if written:
            self.counters.exports_answered += 1
            log.info("privacy export %s answered through the outbox in %d part(s)", request_id, len(events))
        else:
            self.counters.export_duplicates += 1

    @staticmethod
    def export_events(request_id: str, shopper_id: str, doc: Mapping[str, Any], now: float) -> list[NewEvent]:
        return [
            encode_event(
                EXPORT_KIND,
                EventClass.PRIVACY,
                part,
                at_wall=now,
                shopper_id=shopper_id,
                event_id=event_id_for(now, f"{EXPORT_KIND}:{request_id}:{part['part']}"),
            )
            for part in export_parts(request_id, doc)
        ]

    # ----- a kiosk's "what do you hold about me?" -----------------------------------------------------------
    async def show_my_data(self, shopper_id: str, display_id: str | None, zone: str) -> bool:
        """After a committed kiosk check-in asking ``my_data``: the summary on that kiosk only."""
        if (
            display_id is None
            or display_id not in self._kiosks
            or self._board.settings_of(display_id).zone != zone
        ):
            self.counters.my_data_refused += 1
            return False
        doc = await self.build_export(shopper_id, explain=False)  # counts only: no model runs
        data = summary(doc)
        self._showing[display_id] = shopper_id
        self._board.show_content(
            display_id, MY_DATA_TEMPLATE, data, self._clock.monotonic() + self._my_data_ttl_s
        )
        self.counters.my_data_shown += 1
        return True

    def left(self, shopper_id: str, zone: str) -> None:
        """A presence change: a shopper who left the kiosk's zone takes their summary with them."""
        for display_id, showing in tuple(self._showing.items()):
            if showing == shopper_id and self._board.settings_of(display_id).zone == zone:
                del self._showing[display_id]
                self._board.show_content(display_id, MY_DATA_TEMPLATE, None, None)

    def forget_shopper(self, shopper_id: str) -> None:
        for display_id, showing in tuple(self._showing.items()):
            if showing == shopper_id:
                del self._showing[display_id]
                self._board.show_content(display_id, MY_DATA_TEMPLATE, None, None)

    def stats(self) -> PrivacyCounters:
        """A copy of the counters (health and metrics read it while the flow goes on)."""
        return dataclasses.replace(self.counters)
