"""Bad input of every kind gets a 4xx JSON error, never a 5xx; gzip both ways, with a cap."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from profilestore.const import MAX_BODY_BYTES
from tests.profilestore.conftest import PG_ADMIN_URL
from tests.support.profilestore import ProfileStoreKit, running_profile_store


def event() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "kind": "exposure",
        "class": "conversion",
        "at": "2026-11-01T10:00:00Z",
        "data": {},
    }


async def send(
    kit: ProfileStoreKit,
    method: str,
    path: str,
    *,
    token: str | None = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    decompress: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update({"Authorization": f"Bearer {token or kit.admin_token}"})
    all_headers.update(headers or {})
    async with aiohttp.ClientSession(auto_decompress=decompress) as session:
        body = io.BytesIO(data) if data is not None else None  # aiohttp streams a file-like body in chunks
        async with session.request(method, kit.base_url + path, data=body, headers=all_headers) as response:
            return response.status, dict(response.headers), await response.read()


def error_of(status: int, body: bytes) -> str:
    assert 400 <= status < 500, (status, body)
    document = json.loads(body)
    assert set(document) == {"error", "detail"}
    return str(document["error"])


EVENTS = "/v1/stores/s1/events"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "bad_json"),
        (b"not json", "bad_json"),
        (b'{"events": [', "bad_json"),
        (b"\xff\xfe{}", "bad_encoding"),
        (b'{"events": "all of them"}', "invalid"),
        (b'{"events": []}', "invalid"),
        (b"[]", "invalid"),
        (b'{"events": [], "more": 1}', "invalid"),
        (b'{"events": [1], "events": [2]}', "bad_json"),
        (b"[" * 100_000 + b"]" * 100_000, "bad_json"),
        (b'{"events": [' + b"1," * 1000 + b"1]}", "invalid"),  # 1001 events
        (json.dumps({"events": [1]}).encode("utf-16"), "bad_encoding"),
    ],
)
async def test_a_broken_envelope_is_a_400(kit: ProfileStoreKit, token: str, data: bytes, error: str) -> None:
    status, _, body = await send(kit, "POST", EVENTS, token=token, data=data)
    assert status == 400
    assert error_of(status, body) == error


async def test_bodies_past_the_cap_are_413_and_the_server_carries_on(
    kit: ProfileStoreKit, token: str
) -> None:
    padding = "x" * (MAX_BODY_BYTES + 10)
    big = json.dumps({"events": [{**event(), "data": {"pad": padding}}]}).encode()
    status, _, body = await send(kit, "POST", EVENTS, token=token, data=big)
    assert error_of(status, body) == "payload_too_large"
    status, _, body = await send(kit, "POST", EVENTS, token=token, data=b" " * (4 * MAX_BODY_BYTES))
    assert error_of(status, body) == "payload_too_large"
    ok = json.dumps({"events": [event()]}).encode()
    assert (await send(kit, "POST", EVENTS, token=token, data=ok))[0] == 200


async def test_a_gzip_bomb_is_refused_without_inflating_it(kit: ProfileStoreKit, token: str) -> None:
    # 32 MiB of spaces inflate from 32 KiB; the cap stops the inflation at 1 MiB.
    bomb = gzip.compress(b"{" + b" " * (32 * MAX_BODY_BYTES) + b"}", compresslevel=9)
    assert len(bomb) < MAX_BODY_BYTES
    status, _, body = await send(
        kit, "POST", EVENTS, token=token, data=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert error_of(status, body) == "payload_too_large"
    assert (await kit.stats())["events"] == 0


@pytest.mark.parametrize(
    ("data", "headers", "error"),
    [
        (b"not gzip at all", {"Content-Encoding": "gzip"}, "bad_gzip"),
        (gzip.compress(b'{"events": []}')[:-6], {"Content-Encoding": "gzip"}, "bad_gzip"),
        (gzip.compress(b"{}") + b"trailing", {"Content-Encoding": "gzip"}, "bad_gzip"),
        (b"{}", {"Content-Encoding": "br"}, "unsupported_media_type"),
        (b"{}", {"Content-Type": "text/plain"}, "unsupported_media_type"),
        (b"{}", {"Content-Type": "application/json; charset=latin-1"}, "unsupported_media_type"),
    ],
)
async def test_bad_encodings_are_refused(
    kit: ProfileStoreKit, token: str, data: bytes, headers: dict[str, str], error: str
) -> None:
    status, _, body = await send(kit, "POST", EVENTS, token=token, data=data, headers=headers)
    assert error_of(status, body) == error


async def test_gzip_both_ways(kit: ProfileStoreKit, token: str) -> None:
    batch = json.dumps({"events": [event() for _ in range(20)]}).encode()
    status, headers, body = await send(
        kit,
        "POST",
        EVENTS,
        token=token,
        data=gzip.compress(batch),
        headers={"Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
        decompress=False,
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in headers["Vary"]
    assert json.loads(gzip.decompress(body))["accepted"] == 20
    # Two gzip members are one body (RFC 1952).
    halves = gzip.compress(b'{"events": [') + gzip.compress(json.dumps(event()).encode() + b"]}")
    status, _, body = await send(
        kit, "POST", EVENTS, token=token, data=halves, headers={"Content-Encoding": "gzip"}
    )
    assert (status, json.loads(body)["accepted"]) == (200, 1)
    for refused in ("identity", "gzip;q=0", "*;q=0", "br"):
        _, headers, body = await send(
            kit,
            "GET",
            "/v1/stores/s1/changes",
            token=token,
            headers={"Accept-Encoding": refused},
            decompress=False,
        )
        assert "Content-Encoding" not in headers
        assert json.loads(body)["more"] is False
    _, headers, _ = await send(
        kit, "GET", "/admin/v1/stats", headers={"Accept-Encoding": "deflate, *;q=0.5"}, decompress=False
    )
    assert headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/admin/v1/stores/s2", {"token": "short"}),
        ("PUT", "/admin/v1/stores/s2", {"token": "has spaces in the token"}),
        ("PUT", "/admin/v1/stores/s2", {"token": 12345678901234567}),
        ("PUT", "/admin/v1/stores/bad%20id", {"token": "a-long-enough-token"}),
        ("PUT", "/admin/v1/stores/" + "s" * 65, {"token": "a-long-enough-token"}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": "not an object"}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": {"affinity": {"coffee": 2}}}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": {"affinity": {"coffee": True}}}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": {"visits": -1}}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": {"bio": "x" * 70_000}}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": {}, "extra": 1}),
        ("PUT", "/admin/v1/shoppers/p1", {"profile": {"k\u0000": 1}}),
        ("PUT", "/admin/v1/shoppers/" + "p" * 129, {"profile": {}}),
        ("PUT", "/admin/v1/shoppers/-p1", {"profile": {}}),
        ("DELETE", "/admin/v1/shoppers/p%00", None),
        ("PUT", "/admin/v1/shoppers/p1/consents/personalization", {"granted": "yes"}),
        ("PUT", "/admin/v1/shoppers/p1/consents/personalization", {"granted": 1}),
        (
            "PUT",
            "/admin/v1/shoppers/p1/consents/personalization",
            {"granted": True, "at": "2026-02-30T00:00:00Z"},
        ),
        (
            "PUT",
            "/admin/v1/shoppers/p1/consents/personalization",
            {"granted": True, "at": "2026-01-01T23:59:60Z"},
        ),
        (
            "PUT",
            "/admin/v1/shoppers/p1/consents/personalization",
            {"granted": True, "at": "1969-12-31T23:59:59Z"},
        ),
        ("PUT", "/admin/v1/shoppers/p1/consents/personalization", {"granted": True, "at": 1_700_000_000}),
        ("PUT", "/admin/v1/shoppers/p1/consents/personalization", {"granted": True, "source": ""}),
        ("PUT", "/admin/v1/shoppers/p1/consents/PERSONALIZATION", {"granted": True}),
        ("PUT", "/admin/v1/shoppers/p1/eid-key", {"identity_key": "AAAA", "rotation_exponent": 1}),
        ("PUT", "/admin/v1/shoppers/p1/eid-key", {"identity_key": "!!!!", "rotation_exponent": 1}),
        (
            "PUT",
            "/admin/v1/shoppers/p1/eid-key",
            {"identity_key": "AAECAwQFBgcICQoLDA0ODw==", "rotation_exponent": 16},
        ),
        (
            "PUT",
            "/admin/v1/shoppers/p1/eid-key",
            {"identity_key": "AAECAwQFBgcICQoLDA0ODw==", "rotation_exponent": 1, "clock_offset_s": 2**40},
        ),
        (
            "PUT",
            "/admin/v1/token-keys/k1",
            {"public_key_pem": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"},
        ),
        ("PUT", "/admin/v1/token-keys/k1", {"public_key_pem": "\u00e9"}),
        ("PUT", "/admin/v1/token-keys/k%2F1", {"public_key_pem": "x"}),
        ("PUT", "/admin/v1/offers/o1", {"id": "o2", "title": "t", "category": "coffee", "value": 1}),
        ("PUT", "/admin/v1/offers/o1", {"id": "o1", "title": "t", "category": "cars", "value": 1}),
        ("PUT", "/admin/v1/offers/o1", {"id": "o1", "title": "t", "category": "coffee", "value": -1}),
        ("PUT", "/admin/v1/offers/o1", {"id": "o1", "title": "t", "category": "coffee", "value": 1, "x": 1}),
        ("PUT", "/admin/v1/inventory/o1", {"available": "true"}),
        ("PUT", "/admin/v1/inventory/o1", {"available": True, "quantity": -3}),
        ("PUT", "/admin/v1/inventory/o1", {"available": True, "quantity": 1.5}),
        ("GET", "/admin/v1/events?after=nonsense", None),
        ("GET", "/admin/v1/events?store_id=a/b", None),
        ("GET", "/admin/v1/events?limit=100000", None),
        ("GET", "/v1/stores/s1/profiles/" + "p" * 200, None),
        ("GET", "/v1/stores/s%201/changes", None),
        ("GET", "/v1/stores/s1%0A/changes", None),
        ("PUT", "/admin/v1/shoppers/p1%0A", {"profile": {}}),
        ("GET", "/admin/v1/events?store_id=s1%0A", None),
        ("GET", "/v1/stores/s1/changes?since=0123456789abcdef.0%0A", None),
    ],
)
async def test_bad_values_get_a_400(
    kit: ProfileStoreKit, token: str, method: str, path: str, body: Any
) -> None:
    data = None if body is None else json.dumps(body).encode()
    status, _, answer = await send(
        kit, method, path, token=token if path.startswith("/v1/") else None, data=data
    )
    assert status == 400, answer
    error_of(status, answer)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"profile": {"x": NaN}}',
        b'{"profile": {"x": -Infinity}}',
        b'{"profile": {"x": 1e999}}',
        b'{"profile": {"x": 123456789012345678901234567890}}',
        b'{"profile": {"x": "\\ud800"}}',
        b'{"profile": {"a": 1, "a": 2}}',
    ],
)
async def test_unstorable_json_gets_a_400(kit: ProfileStoreKit, raw: bytes) -> None:
    status, _, answer = await send(kit, "PUT", "/admin/v1/shoppers/p1", data=raw)
    assert error_of(status, answer) == "bad_json"


async def test_unknown_paths_and_methods_get_json_errors(kit: ProfileStoreKit) -> None:
    status, _, body = await send(kit, "GET", "/nothing/here")
    assert error_of(status, body) == "not_found"
    status, headers, body = await send(kit, "PATCH", "/admin/v1/stats")
    assert error_of(status, body) == "method_not_allowed"
    assert "GET" in headers["Allow"]


async def test_an_unreachable_database_is_a_503_then_heals(tmp_path: Path, pg_url: str) -> None:
    database = urlsplit(pg_url).path.lstrip("/")
    admin = await asyncpg.connect(PG_ADMIN_URL)
    async with running_profile_store(tmp_path, db_url=pg_url) as kit:
        token = await kit.add_store("s1")
        try:
            # A database that refuses connections, and every pooled connection gone (a restart, a failover).
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
            )
            for _ in range(2):
                status, headers, body = await send(kit, "GET", "/v1/stores/s1/changes", token=token)
                assert (status, json.loads(body)["error"], headers["Retry-After"]) == (
                    503,
                    "unavailable",
                    "1",
                )
            status, _, body = await send(kit, "GET", "/healthz")
            assert status == 503
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await admin.close()
        status, _, _ = await send(kit, "GET", "/v1/stores/s1/changes", token=token)
        assert status == 200
