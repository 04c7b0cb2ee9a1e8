"""The reference store's access log names no shopper (issue 15: no shopper id in any access log)."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from profilestore.server import serve

ADMIN = "admin-token-for-the-access-log-test"
SHOPPER = "p-logged-9c2e51"


async def test_the_access_log_keeps_method_route_and_status_but_no_shopper(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    url = f"sqlite://{tmp_path / 'store.db'}"
    async with serve(url, admin_token=ADMIN, access_log=True) as base, aiohttp.ClientSession(base) as http:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        store = {"Authorization": "Bearer store-token-0123456789abcdef"}
        async with http.put(
            "/admin/v1/stores/s1", json={"token": "store-token-0123456789abcdef"}, headers=admin
        ):
            pass
        async with http.put(
            f"/admin/v1/shoppers/{SHOPPER}", json={"profile": {"visits": 1}}, headers=admin
        ) as r:
            assert r.status == 200
        async with http.get(f"/v1/stores/s1/profiles/{SHOPPER}?x={SHOPPER}", headers=store) as r:
            assert r.status == 200
        async with http.delete(f"/admin/v1/shoppers/{SHOPPER}", headers=admin) as r:
            assert r.status == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert len(lines) == 4
    assert all(SHOPPER not in line for line in lines)
    assert lines[1].startswith("PUT /admin/v1/shoppers/{shopper} 200 ")
    assert lines[2].startswith("GET /v1/stores/s1/profiles/{shopper} 200 ")
