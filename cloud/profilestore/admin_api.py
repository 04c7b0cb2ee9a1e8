"""The admin API of the reference server (``/admin/v1/...``): stores, shoppers, keys, offers, inventory, pickup
orders, and reading what the stores pushed. Every handler checks the admin token first."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from profilestore.auth import AdminAuth, token_digest
from profilestore.clock import Clock
from profilestore.const import (
    DEFAULT_PAGE,
    MAX_CONSENT_AHEAD_S,
    MAX_DOCUMENT_BYTES,
    MAX_PAGE,
    PAGE_BUDGET_BYTES,
)
from profilestore.http import ApiError, json_response, path_value, query_int, query_value, read_json
from profilestore.jsonbody import dumps, json_problem
from profilestore.models import (
    KID_PATTERN,
    OFFER_ID_PATTERN,
    ORDER_ID_PATTERN,
    PURPOSES,
    SHOPPER_ID_PATTERN,
    STORE_ID_PATTERN,
    ConsentPut,
    EidKeyPut,
    InventoryPut,
    OrderPut,
    ProfilePut,
    StorePut,
    TokenKeyPut,
    WeatherPut,
    check_profile,
    consent_at,
    cursor_ahead,
    decode_cursor,
    describe,
    encode_cursor,
    micros_of,
    parse_timestamp,
    render_timestamp,
)
from profilestore.served import consent_wire
from profilestore.storage import (
    KEEP,
    DeleteOutcome,
    EidKeyState,
    OrderStoreError,
    ShopperWrite,
    Storage,
    StoredEvent,
    TokenInUseError,
    UnknownStoreError,
)
from storecontract.offers import Offer

Model = TypeVar("Model", bound=BaseModel)


def _invalid(detail: str) -> ApiError:
    return ApiError(400, "invalid", detail)


async def body_of(request: web.Request, model: type[Model]) -> Model:
    """The request's JSON body validated by ``model``; 400 ``bad_json`` or ``invalid`` with the reason."""
    document = await read_json(request)
    problem = json_problem(document)
    if problem is not None:
        raise ApiError(400, "bad_json", problem)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise _invalid(describe(exc)) from exc


def _deleted(outcome: DeleteOutcome) -> web.Response:
    return json_response({"seq": outcome.seq, "existed": outcome.existed})


def _shopper_written(outcome: ShopperWrite, **more: Any) -> web.Response:
    # seq is null when no store holds the shopper: nothing was appended (only the cloud's state changed).
    return json_response({"seq": outcome.seq, "stores": outcome.stores, **more})


def _stored_event_wire(stored: StoredEvent) -> dict[str, Any]:
    event = stored.event
    return {
        "id": event.id,
        "store_id": stored.store_id,
        "kind": event.kind,
        "class": event.event_class,
        "at": render_timestamp(event.at_us),
        "shopper_id": event.shopper_id,
        "data": event.data,
        "received_at": render_timestamp(stored.received_us),
    }


class AdminApi:
    """Handlers of ``/admin/v1/...``."""

    def __init__(self, storage: Storage, auth: AdminAuth, clock: Clock) -> None:
        self._storage = storage
        self._auth = auth
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put("/admin/v1/stores/{store_id}", self.put_store),
            web.put("/admin/v1/stores/{store_id}/weather", self.put_weather),
            web.put("/admin/v1/shoppers/{shopper_id}", self.put_shopper),
            web.delete("/admin/v1/shoppers/{shopper_id}", self.erase_shopper),
            web.put("/admin/v1/shoppers/{shopper_id}/consents/{purpose}", self.put_consent),
            web.put("/admin/v1/shoppers/{shopper_id}/eid-key", self.put_eid_key),
            web.delete("/admin/v1/shoppers/{shopper_id}/eid-key", self.delete_eid_key),
            web.put("/admin/v1/token-keys/{kid}", self.put_token_key),
            web.delete("/admin/v1/token-keys/{kid}", self.delete_token_key),
            web.put("/admin/v1/offers/{offer_id}", self.put_offer),
            web.delete("/admin/v1/offers/{offer_id}", self.delete_offer),
            web.put("/admin/v1/inventory/{offer_id}", self.put_inventory),
            web.delete("/admin/v1/inventory/{offer_id}", self.delete_inventory),
            web.put("/admin/v1/orders/{order_id}", self.put_order),
            web.delete("/admin/v1/orders/{order_id}", self.delete_order),
            web.get("/admin/v1/events", self.list_events),
            web.get("/admin/v1/stats", self.stats),
        ]

    def _now(self) -> int:
        return micros_of(self._clock.wall())

    def _path(self, request: web.Request, name: str, pattern: str) -> str:
        self._auth.check(request)
        return path_value(request, name, pattern)

    # ----- stores -----
    async def put_store(self, request: web.Request) -> web.Response:
        store_id = self._path(request, "store_id", STORE_ID_PATTERN)
        body = await body_of(request, StorePut)
        try:
            created = await self._storage.put_store(store_id, token_digest(body.token), self._now())
        except TokenInUseError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        return json_response({"store_id": store_id, "created": created})

    async def put_weather(self, request: web.Request) -> web.Response:
        store_id = self._path(request, "store_id", STORE_ID_PATTERN)
        body = await body_of(request, WeatherPut)
        now = self._now()
        observed_us = now if body.observed_at is None else parse_timestamp(body.observed_at)
        # The allowance a consent's `at` has: a reading from the future would outrank every true one at the
        # store until that time came (the gateway refuses it too, docs/context.md).
        if observed_us > now + round(MAX_CONSENT_AHEAD_S * 1_000_000):
            raise _invalid(f"observed_at: more than {MAX_CONSENT_AHEAD_S:.0f} s in the future")
        weather = {
            "temp_c": body.temp_c,
            "precipitation": body.precipitation,
            "forecast_max_c": body.forecast_max_c,
            "observed_at": render_timestamp(observed_us),
        }
        try:
            seq = await self._storage.put_weather(store_id, weather, now)
        except UnknownStoreError as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        return json_response({"seq": seq})

    # ----- shoppers -----
    async def put_shopper(self, request: web.Request) -> web.Response:
        shopper_id = self._path(request, "shopper_id", SHOPPER_ID_PATTERN)
        body = await body_of(request, ProfilePut)
        try:
            check_profile(body.profile)
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
        home = body.home_store if body.home_given else KEEP
        try:
            outcome = await self._storage.put_profile(shopper_id, body.profile, self._now(), home_store=home)
        except UnknownStoreError as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        return _shopper_written(outcome, home_store=outcome.home_store)

    async def erase_shopper(self, request: web.Request) -> web.Response:
        shopper_id = self._path(request, "shopper_id", SHOPPER_ID_PATTERN)
        outcome = await self._storage.erase_shopper(shopper_id, self._now())
        removed = {
            "profile": outcome.profile,
            "consents": outcome.consents,
            "eid_key": outcome.eid_key,
            "events": outcome.events,
            "orders": outcome.orders,
            "campaign_exposures": outcome.campaign_exposures,
        }
        return json_response({"seq": outcome.seq, "removed": removed, "stores": outcome.stores})

    async def put_consent(self, request: web.Request) -> web.Response:
        shopper_id = self._path(request, "shopper_id", SHOPPER_ID_PATTERN)
        purpose = request.match_info["purpose"]
        if purpose not in PURPOSES:
            raise ApiError(400, "bad_request", f"purpose: one of {', '.join(PURPOSES)}")
        body = await body_of(request, ConsentPut)
        now = self._now()
        try:
            at_us = consent_at(body.at, now)
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
        outcome = await self._storage.put_consent(shopper_id, purpose, body.granted, at_us, body.source, now)
        current = None if outcome.current is None else consent_wire(outcome.current)
        return json_response(
            {"applied": outcome.applied, "seq": outcome.seq, "consent": current, "stores": outcome.stores}
        )

    async def put_eid_key(self, request: web.Request) -> web.Response:
        shopper_id = self._path(request, "shopper_id", SHOPPER_ID_PATTERN)
        body = await body_of(request, EidKeyPut)
        try:
            key = EidKeyState(body.key_bytes(), body.rotation_exponent, body.clock_offset_s)
        except ValueError as exc:
            raise _invalid(str(exc)) from exc
        return _shopper_written(await self._storage.put_eid_key(shopper_id, key, self._now()))

    async def delete_eid_key(self, request: web.Request) -> web.Response:
        shopper_id = self._path(request, "shopper_id", SHOPPER_ID_PATTERN)
        outcome = await self._storage.delete_eid_key(shopper_id, self._now())
        return _shopper_written(outcome, existed=outcome.existed)

    # ----- token keys -----
    async def put_token_key(self, request: web.Request) -> web.Response:
        kid = self._path(request, "kid", KID_PATTERN)
        body = await body_of(request, TokenKeyPut)
        try:
            pem = body.checked_pem()
        except (ValueError, TypeError) as exc:
            raise _invalid(str(exc)) from exc
        return json_response({"seq": await self._storage.put_token_key(kid, pem, self._now())})

    async def delete_token_key(self, request: web.Request) -> web.Response:
        kid = self._path(request, "kid", KID_PATTERN)
        return _deleted(await self._storage.delete_token_key(kid, self._now()))

    # ----- offers and inventory -----
    async def put_offer(self, request: web.Request) -> web.Response:
        offer_id = self._path(request, "offer_id", OFFER_ID_PATTERN)
        offer = await body_of(request, Offer)
        if offer.id != offer_id:
            raise _invalid(f"id: {offer.id!r} differs from the path's offer id")
        document = offer.model_dump(mode="json")
        if len(dumps(document).encode("utf-8")) > MAX_DOCUMENT_BYTES:
            raise _invalid(f"the offer is larger than {MAX_DOCUMENT_BYTES} bytes encoded")
        return json_response({"seq": await self._storage.put_offer(offer_id, document, self._now())})

    async def delete_offer(self, request: web.Request) -> web.Response:
        offer_id = self._path(request, "offer_id", OFFER_ID_PATTERN)
        return _deleted(await self._storage.delete_offer(offer_id, self._now()))

    async def put_inventory(self, request: web.Request) -> web.Response:
        offer_id = self._path(request, "offer_id", OFFER_ID_PATTERN)
        body = await body_of(request, InventoryPut)
        seq = await self._storage.put_inventory(offer_id, body.available, body.quantity, self._now())
        return json_response({"seq": seq})

    async def delete_inventory(self, request: web.Request) -> web.Response:
        offer_id = self._path(request, "offer_id", OFFER_ID_PATTERN)
        return _deleted(await self._storage.delete_inventory(offer_id, self._now()))

    # ----- pickup orders -----
    async def put_order(self, request: web.Request) -> web.Response:
        order_id = self._path(request, "order_id", ORDER_ID_PATTERN)
        body = await body_of(request, OrderPut)
        now = self._now()
        ready_us = now if body.ready_at is None else parse_timestamp(body.ready_at)
        try:
            seq = await self._storage.put_order(
                order_id, body.store_id, body.shopper_id, body.reference, body.counter, ready_us, now
            )
        except UnknownStoreError as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        except OrderStoreError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        return json_response({"seq": seq})

    async def delete_order(self, request: web.Request) -> web.Response:
        order_id = self._path(request, "order_id", ORDER_ID_PATTERN)
        outcome = await self._storage.delete_order(order_id, self._now())
        if outcome is None:
            raise ApiError(404, "not_found", "no such order (unknown, collected or deleted)")
        return _deleted(outcome)

    # ----- reading what arrived -----
    async def list_events(self, request: web.Request) -> web.Response:
        self._auth.check(request)
        store_id = query_value(request, "store_id")
        if store_id is not None and not store_id:
            store_id = None
        if store_id is not None and re.fullmatch(STORE_ID_PATTERN, store_id) is None:
            raise ApiError(400, "bad_request", f"store_id: does not match {STORE_ID_PATTERN}")
        after = decode_cursor(query_value(request, "after"), self._storage.instance)
        limit = query_int(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        page = await self._storage.events(store_id, after, limit, PAGE_BUDGET_BYTES)
        if after > page.last_recv_seq:
            raise cursor_ahead()
        last = page.events[-1].recv_seq if page.events else after
        return json_response(
            {
                "events": [_stored_event_wire(stored) for stored in page.events],
                "cursor": encode_cursor(self._storage.instance, last),
                "more": page.more,
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        self._auth.check(request)
        return json_response(await self._storage.stats())
