"""The store API a gateway uses (docs/sync.md): pull changes, push events, fetch one profile."""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web
from pydantic import ValidationError

from profilestore.auth import check_store
from profilestore.clock import Clock
from profilestore.const import (
    DEFAULT_MEMBER_DAYS,
    DEFAULT_PAGE,
    LAPSES_PER_PULL,
    MAX_EVENTS,
    MAX_PAGE,
    PAGE_BUDGET_BYTES,
)
from profilestore.http import ApiError, json_response, path_value, query_int, query_value, read_json
from profilestore.jsonbody import json_problem
from profilestore.models import (
    LABEL_PATTERN,
    ORDER_ID_PATTERN,
    PURPOSES,
    SHOPPER_ID_PATTERN,
    STORE_ID_PATTERN,
    EventIn,
    consent_at,
    cursor_ahead,
    decode_cursor,
    describe,
    encode_cursor,
    micros_of,
    parse_timestamp,
    render_timestamp,
)
from profilestore.served import consent_wire, eid_key_wire, served_key, served_profile
from profilestore.sqlscope import FETCHED, SEEN
from profilestore.storage import ChangeRecord, EventRecord, Sighting, Storage

# An id is echoed in a rejection only when it is short printable ASCII (it may be anything at all).
_ECHO_ID: Final = re.compile(r"^[!-~]{1,64}$")
_MAX_REASON_CHARS: Final = 300
# The event a store pushes when it hands an order over (docs/sync-openapi.yaml, "Events").
ORDER_COLLECTED: Final = "order_collected"
# Privacy events a store pushes that the cloud applies to its own state (docs/sync-openapi.yaml, "Events").
CONSENT: Final = "consent"
ERASURE: Final = "erasure"
_DAY_S: Final = 86_400


def change_wire(change: ChangeRecord) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "kind": change.kind,
        "id": change.id,
        "op": change.op,
        "at": render_timestamp(change.at_us),
        "data": change.data,
    }


def collected_order(event: EventRecord) -> str | None:
    """The order id of an ``order_collected`` event (data ``{"order_id": ..., "via": ...}``); None if it is
    not one, or its data is not that shape (such an event is still stored, it just collects nothing)."""
    if event.kind != ORDER_COLLECTED:
        return None
    order_id = event.data.get("order_id")
    if isinstance(order_id, str) and re.fullmatch(ORDER_ID_PATTERN, order_id) is not None:
        return order_id
    return None


def _pushed_consent(data: dict[str, Any], now_us: int) -> tuple[str, bool, int, str] | None:
    """(purpose, granted, at, source) of a pushed ``consent`` event's data, or None when it is not that shape
    (the event is still stored; it just changes nothing)."""
    purpose, granted, at, source = (
        data.get("purpose"),
        data.get("granted"),
        data.get("at"),
        data.get("source"),
    )
    if purpose not in PURPOSES or not isinstance(granted, bool) or not isinstance(at, str):
        return None
    if not isinstance(source, str) or re.fullmatch(LABEL_PATTERN, source) is None:
        return None
    try:
        at_us = consent_at(at, now_us)
    except ValueError:
        return None
    return str(purpose), granted, at_us, source


def _echo_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and _ECHO_ID.fullmatch(value) else None


def _rejection(index: int, item: Any, reason: str) -> dict[str, Any]:
    # A gateway acts only on a rejection with a reason (docs/sync-openapi.yaml), so there always is one.
    return {"index": index, "id": _echo_id(item), "reason": reason[:_MAX_REASON_CHARS] or "invalid"}


def _event_record(item: Any) -> EventRecord:
    """The validated event, or ValueError with the reason it is rejected."""
    problem = json_problem(item)
    if problem is not None:
        raise ValueError(problem)
    try:
        event = EventIn.model_validate(item)
    except ValidationError as exc:
        raise ValueError(describe(exc)) from exc
    return EventRecord(
        id=event.id.lower(),
        kind=event.kind,
        event_class=event.event_class,
        at_us=parse_timestamp(event.at),
        shopper_id=event.shopper_id,
        data=event.data,
    )


class StoreApi:
    """Handlers of ``/v1/stores/{store_id}/...``; every one checks the store's own token.

    A store holds its home shoppers and those it saw (its pushes name them) or fetched within
    ``member_days`` (docs/profile-store.md, "Which store holds which shopper").
    """

    def __init__(self, storage: Storage, clock: Clock, *, member_days: float = DEFAULT_MEMBER_DAYS) -> None:
        if member_days <= 0:
            raise ValueError("member_days must be positive")
        self._storage = storage
        self._clock = clock
        self._window_us = round(member_days * _DAY_S * 1_000_000)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/stores/{store_id}/changes", self.pull),
            web.post("/v1/stores/{store_id}/events", self.push),
            web.get("/v1/stores/{store_id}/profiles/{shopper_id}", self.profile),
        ]

    async def _store(self, request: web.Request) -> str:
        store_id = path_value(request, "store_id", STORE_ID_PATTERN)
        await check_store(self._storage, request, store_id)
        return store_id

    async def pull(self, request: web.Request) -> web.Response:
        store_id = await self._store(request)
        after = decode_cursor(query_value(request, "since"), self._storage.instance)
        limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        # The shoppers the store no longer holds get their deletes first, so this page carries them.
        await self._storage.expire(store_id, micros_of(self._clock.wall()), LAPSES_PER_PULL)
        page = await self._storage.changes(after, limit, PAGE_BUDGET_BYTES, store_id=store_id)
        if after > page.last_seq:
            raise cursor_ahead()
        return json_response(
            {
                "changes": [change_wire(change) for change in page.changes],
                "cursor": encode_cursor(self._storage.instance, page.through),
                "more": page.more,
            }
        )

    async def push(self, request: web.Request) -> web.Response:
        store_id = await self._store(request)
        body = await read_json(request)
        problem = json_problem(body, shallow=True)
        if problem is not None:
            raise ApiError(400, "bad_json", problem)
        if not isinstance(body, dict) or set(body) != {"events"}:
            raise ApiError(400, "invalid", 'expected an object with exactly one field, "events"')
        items = body["events"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_EVENTS:
            raise ApiError(400, "invalid", f"events: a list of 1..{MAX_EVENTS} events")
        records: list[EventRecord] = []
        positions: list[int] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            try:
                records.append(_event_record(item))
            except ValueError as exc:
                rejected.append(_rejection(index, item, str(exc)))
            else:
                positions.append(index)
        now = micros_of(self._clock.wall())
        outcome = await self._storage.push_events(store_id, records, now)
        for position in outcome.foreign:
            index = positions[position]
            rejected.append(_rejection(index, items[index], "id: already used by an event of another store"))
        # Orders handed over at this store: stored (now or before) and so answered, they leave the cloud, and
        # the store pulls their deletes. After the events, so that a push answered is a collection done: a
        # resent batch (duplicates) collects again, which changes nothing the second time.
        foreign = {records[position].id for position in outcome.foreign}
        collected = [
            order_id
            for record in records
            if record.id not in foreign and (order_id := collected_order(record)) is not None
        ]
        if collected:
            await self._storage.collect_orders(store_id, collected, now)
        # A consent given or withdrawn in the store, or an erasure asked for there, counts everywhere: applied
        # once (fresh events only: a resent erasure must not erase consents given since), and every store
        # pulls the result (docs/sync-openapi.yaml "Events").
        for position in outcome.fresh:
            await self._apply_privacy(records[position], now)
        # Every shopper an event names is the store's for the window (fresh events only: a resent batch is
        # not a new visit); an erased one named from before the erasure gets the store the erasure.
        fresh = [records[position] for position in outcome.fresh]
        seen = [Sighting(event.shopper_id, event.at_us) for event in fresh if event.shopper_id is not None]
        await self._storage.enrol(store_id, seen, reason=SEEN, window_us=self._window_us, now_us=now)
        rejected.sort(key=lambda entry: int(entry["index"]))
        return json_response(
            {"accepted": outcome.accepted, "duplicates": outcome.duplicates, "rejected": rejected}
        )

    async def _apply_privacy(self, record: EventRecord, now_us: int) -> None:
        shopper = record.shopper_id
        if shopper is None:
            return
        if record.kind == ERASURE:
            await self._storage.erase_shopper(shopper, now_us)
            return
        consent = _pushed_consent(record.data, now_us) if record.kind == CONSENT else None
        if consent is not None:
            purpose, granted, at_us, source = consent
            await self._storage.put_consent(shopper, purpose, granted, at_us, source, now_us)

    async def profile(self, request: web.Request) -> web.Response:
        store_id = await self._store(request)
        shopper_id = path_value(request, "shopper_id", SHOPPER_ID_PATTERN)
        state = await self._storage.shopper(shopper_id)
        if state is None:
            raise ApiError(404, "not_found", "no such shopper (unknown or erased)")
        # A cache miss: the shopper walked into this store, which now holds them (and pulls their changes).
        now = micros_of(self._clock.wall())
        sighting = [Sighting(shopper_id, now)]
        await self._storage.enrol(store_id, sighting, reason=FETCHED, window_us=self._window_us, now_us=now)
        eid_key = served_key(state)
        return json_response(
            {
                "shopper_id": state.shopper_id,
                "profile": served_profile(state.profile),
                "consents": {
                    purpose: {key: value for key, value in consent_wire(consent).items() if key != "purpose"}
                    for purpose, consent in state.consents.items()
                },
                "eid_key": None if eid_key is None else eid_key_wire(eid_key),
            }
        )
