"""The admin routes of online and offline together (issue 16): online sales and campaign exposures as a web shop
and a campaign tool would post them, and the cross-channel report. Every handler checks the admin token first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from profilestore.admin_api import body_of
from profilestore.auth import AdminAuth
from profilestore.clock import Clock
from profilestore.const import (
    DEFAULT_ATTRIBUTION_DAYS,
    MAX_AMOUNT,
    MAX_ATTRIBUTION_DAYS,
    MAX_CAMPAIGN_SKUS,
    MAX_POSTED_AHEAD_S,
    MAX_SALE_LINES,
    MAX_SKU_CHARS,
)
from profilestore.http import ApiError, json_response, query_int, query_value
from profilestore.models import ShopperId, Timestamp, micros_of, parse_timestamp
from profilestore.report import build_report, parse_bound, window_us
from profilestore.sqlcross import ONLINE
from profilestore.storage import CampaignExposureRecord, SaleLine, SaleRecord, Storage
from storecontract.offers import Category

# A sale's, a campaign's and a campaign exposure's id: a path-safe label, as an order id.
SALE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"


def _printable(text: str) -> str:
    if not text.isprintable():
        raise ValueError("printable characters only")
    return text


Sku = Annotated[StrictStr, Field(min_length=1, max_length=MAX_SKU_CHARS), AfterValidator(_printable)]
Amount = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)]
Label = Annotated[StrictStr, Field(pattern=SALE_ID_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SaleItem(_Strict):
    sku: Sku
    qty: Annotated[StrictInt, Field(ge=1, le=1_000_000)]
    price: Amount
    category: Category | None = None


class SalePost(_Strict):
    """An online order as the web shop posts it once it is placed (docs/sync-openapi.yaml, ``SalePost``)."""

    id: Label
    shopper_id: ShopperId | None = None
    at: Timestamp
    channel: Literal["online"]
    items: Annotated[list[SaleItem], Field(min_length=1, max_length=MAX_SALE_LINES)]
    total: Amount
    currency: Annotated[StrictStr, Field(pattern=CURRENCY_PATTERN)] | None = None


class CampaignExposurePost(_Strict):
    """An online campaign a shopper saw (an e-mail opened, an ad clicked), with what it promoted."""

    id: Label
    shopper_id: ShopperId
    campaign_id: Label
    at: Timestamp
    skus: Annotated[list[Sku], Field(max_length=MAX_CAMPAIGN_SKUS)] = Field(default_factory=list)
    category: Category | None = None

    @model_validator(mode="after")
    def _promotes_something(self) -> Self:
        if not self.skus and self.category is None:
            raise ValueError("skus or category: a campaign exposure that promotes nothing matches no sale")
        return self


class CrossChannelApi:
    """Handlers of ``/admin/v1/sales``, ``/admin/v1/campaign-exposures`` and ``/admin/v1/reports/cross-channel``."""

    def __init__(self, storage: Storage, auth: AdminAuth, clock: Clock) -> None:
        self._storage = storage
        self._auth = auth
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/admin/v1/sales", self.post_sale),
            web.post("/admin/v1/campaign-exposures", self.post_campaign_exposure),
            web.get("/admin/v1/reports/cross-channel", self.report),
        ]

    def _now(self) -> int:
        return micros_of(self._clock.wall())

    @staticmethod
    def _at(text: str, now_us: int) -> int:
        at_us = parse_timestamp(text)
        if at_us > now_us + round(MAX_POSTED_AHEAD_S * 1_000_000):
            raise ApiError(
                400, "invalid", f"at: more than {MAX_POSTED_AHEAD_S:.0f} s ahead of the server's clock"
            )
        return at_us

    async def post_sale(self, request: web.Request) -> web.Response:
        self._auth.check(request)
        body = await body_of(request, SalePost)
        now = self._now()
        sale = SaleRecord(
            sale_id=body.id,
            channel=ONLINE,
            store_id=None,
            shopper_id=body.shopper_id,
            at_us=self._at(body.at, now),
            total=body.total,
            currency=body.currency,
            lines=tuple(SaleLine(item.sku, item.qty, item.price, item.category) for item in body.items),
        )
        outcome = await self._storage.post_sale(sale, now)
        return json_response({"id": body.id, "duplicate": outcome.duplicate, "anonymous": outcome.anonymous})

    async def post_campaign_exposure(self, request: web.Request) -> web.Response:
        self._auth.check(request)
        body = await body_of(request, CampaignExposurePost)
        now = self._now()
        exposure = CampaignExposureRecord(
            exposure_id=body.id,
            shopper_id=body.shopper_id,
            campaign_id=body.campaign_id,
            at_us=self._at(body.at, now),
            skus=tuple(dict.fromkeys(body.skus)),
            category=body.category,
        )
        outcome = await self._storage.post_campaign_exposure(exposure, now)
        answer: dict[str, Any] = {
            "id": body.id,
            "duplicate": outcome.duplicate,
            "anonymous": outcome.anonymous,
            "stores": outcome.stores,
        }
        return json_response(answer)

    async def report(self, request: web.Request) -> web.Response:
        self._auth.check(request)
        since, until = query_value(request, "since"), query_value(request, "until")
        if not since or not until:
            raise ApiError(400, "bad_request", "since and until: a date (UTC) or an RFC 3339 date-time each")
        days = query_int(request, "attribution_days", DEFAULT_ATTRIBUTION_DAYS, 1, MAX_ATTRIBUTION_DAYS)
        try:
            since_us, until_us = parse_bound(since, end=False), parse_bound(until, end=True)
        except ValueError as exc:
            raise ApiError(400, "bad_request", f"since/until: {exc}") from exc
        if until_us <= since_us:
            raise ApiError(400, "bad_request", "until must be after since")
        rows, totals = await self._storage.cross_channel(since_us, until_us, window_us(days))
        document = build_report(
            rows,
            totals,
            since_us=since_us,
            until_us=until_us,
            attribution_days=days,
            generated_us=self._now(),
        )
        return json_response(document)
