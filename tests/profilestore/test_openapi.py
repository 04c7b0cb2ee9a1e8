"""docs/sync-openapi.yaml is a valid OpenAPI document, agrees with the code, and the running server keeps it
(schemathesis over real HTTP: no 5xx, documented status codes, content types and response schemas)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from profilestore import const, cross_api, models
from profilestore.server import create_app
from storecontract.offers import Offer
from storecontract.purposes import Purpose
from storecontract.sync import ChangeKind, EventClass
from tests.profilestore.spec import SPEC_PATH, spec, spec_text
from tests.support.profilestore import running_profile_store


def test_the_document_is_valid_openapi() -> None:
    document = spec()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_agrees_with_the_code() -> None:
    schemas = spec()["components"]["schemas"]
    assert schemas["Purpose"]["enum"] == [purpose.value for purpose in Purpose]
    assert schemas["StoreId"]["pattern"] == models.STORE_ID_PATTERN
    assert schemas["ShopperId"]["pattern"] == models.SHOPPER_ID_PATTERN
    assert schemas["OfferId"]["pattern"] == models.OFFER_ID_PATTERN
    assert schemas["Kid"]["pattern"] == models.KID_PATTERN
    assert schemas["OrderId"]["pattern"] == models.ORDER_ID_PATTERN
    assert schemas["OrderReference"]["maxLength"] == const.MAX_ORDER_REFERENCE_CHARS
    assert schemas["OrderCounter"]["maxLength"] == const.MAX_ORDER_COUNTER_CHARS
    order_put = models.OrderPut.model_json_schema()
    assert set(schemas["OrderPut"]["properties"]) == set(order_put["properties"])
    assert set(schemas["OrderPut"]["required"]) == set(order_put["required"])
    assert schemas["Label"]["pattern"] == models.LABEL_PATTERN
    # Online and offline together: the posted bodies are the server's models, field for field.
    for name, model in (
        ("SalePost", cross_api.SalePost),
        ("CampaignExposurePost", cross_api.CampaignExposurePost),
    ):
        fields = model.model_json_schema()
        assert set(schemas[name]["properties"]) == set(fields["properties"])
        assert set(schemas[name]["required"]) == set(fields["required"])
    assert schemas["SaleId"]["pattern"] == cross_api.SALE_ID_PATTERN
    assert schemas["Category"]["enum"] == catalog_categories()
    assert schemas["Cursor"]["pattern"].replace("(", "(?:") == models.CURSOR_PATTERN
    catalog = Offer.model_json_schema()
    assert set(schemas["Offer"]["properties"]) == set(catalog["properties"])
    assert set(schemas["Offer"]["required"]) == set(catalog["required"])
    assert schemas["Offer"]["properties"]["category"]["enum"] == catalog["properties"]["category"]["enum"]
    window = catalog["$defs"]["TimeWindow"]
    assert set(schemas["TimeWindow"]["properties"]) == set(window["properties"])
    # The names both sides share (storecontract): the gateway reads and the cloud writes exactly these.
    kinds = schemas["Change"]["discriminator"]["mapping"]
    assert set(kinds) == {kind.value for kind in ChangeKind}
    for kind, ref in kinds.items():
        assert schemas[ref.rsplit("/", 1)[-1]]["properties"]["kind"]["const"] == kind
    wire_classes = [event_class.wire for event_class in EventClass]
    assert sorted(schemas["Event"]["properties"]["class"]["enum"]) == sorted(wire_classes)
    assert sorted(get_args(models.EventIn.model_fields["event_class"].annotation)) == sorted(wire_classes)


def catalog_categories() -> list[str]:
    return list(Offer.model_json_schema()["properties"]["category"]["enum"])


def test_every_route_of_the_server_is_documented() -> None:
    app = create_app(object(), admin_token="x")  # type: ignore[arg-type] - routes only, never served
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and isinstance(route.resource, web.Resource)
    }
    documented = {(method, path) for path, item in spec()["paths"].items() for method in item}
    assert served == documented


@dataclass(frozen=True)
class LiveStore:
    base_url: str
    admin_token: str
    store_token: str
    session: requests.Session


@pytest.fixture(scope="module")
def live_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStore]:
    """A real server on its own thread and loop: schemathesis calls it synchronously over HTTP."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="profile-store", daemon=True)
    thread.start()
    stack = AsyncExitStack()

    async def start() -> LiveStore:
        kit = await stack.enter_async_context(running_profile_store(tmp_path_factory.mktemp("live")))
        token = await kit.add_store("s1")
        await kit.put_shopper("p1", {"visits": 1})
        await kit.put_consent("p1", "measurement", True)
        return LiveStore(kit.base_url, kit.admin_token, token, requests.Session())

    try:
        live = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        with live.session:
            yield live
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


schema = schemathesis.openapi.from_path(SPEC_PATH)
# The coverage phase (boundary and invalid values of every parameter) runs too; one unexpected method per
# path is enough to see a JSON 405, and keeps the whole run to a few seconds.
schema.config.phases.coverage.unexpected_methods = {"PATCH"}


# CI: a few examples per operation plus the coverage phase; EDGE_FUZZ_EXAMPLES=500 for a long run by hand.
FUZZ_EXAMPLES = int(os.environ.get("EDGE_FUZZ_EXAMPLES", "12"))


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_keeps_the_contract(case: Any, live_store: LiveStore) -> None:
    if case.path.startswith("/v1/"):
        # Mostly the registered store (so requests get past auth); sometimes whatever was generated (403).
        if not case.path_parameters["store_id"].startswith(("0", "1", "2")):
            case.path_parameters["store_id"] = "s1"
        token = live_store.store_token
    else:
        token = live_store.admin_token
    case.call_and_validate(
        base_url=live_store.base_url,
        session=live_store.session,
        headers={"Authorization": f"Bearer {token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=10,
    )


def test_spec_path_exists() -> None:
    assert Path(SPEC_PATH).is_file()


async def test_the_server_serves_its_own_document(tmp_path: Path) -> None:
    """What an integrator fetches from a running server is docs/sync-openapi.yaml, byte for byte, and as JSON."""
    document = spec_text()
    async with running_profile_store(tmp_path) as kit:
        status, served = await kit.get_text("/openapi.yaml")
        assert status == 200
        assert served == document
        status, as_json = await kit.get_text("/openapi.json")
        assert status == 200
        assert json.loads(as_json) == spec()
