"""The test kit itself: the fault switch's every mode, and stop/start on the same port and database."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.support.profilestore import ProfileStoreKit, running_profile_store
from tests.support.wait import until


async def get(kit: ProfileStoreKit, token: str, path: str = "/v1/stores/s1/changes") -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(kit.base_url + path, headers={"Authorization": f"Bearer {token}"}) as response:
            return response.status, await response.read()


async def test_faults_answer_badly_then_recover(kit: ProfileStoreKit) -> None:
    token = await kit.add_store("s1")
    kit.faults.set("http500", times=2)
    assert (await get(kit, token))[0] == 500
    assert (await get(kit, token))[0] == 500
    assert (await get(kit, token))[0] == 200
    kit.faults.set("bad_json")
    status, body = await get(kit, token)
    assert status == 200
    with pytest.raises(ValueError):
        __import__("json").loads(body)
    kit.faults.set("truncated")
    with pytest.raises(aiohttp.ClientPayloadError):
        await get(kit, token)
    kit.faults.set("close")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(kit, token)
    kit.faults.set("slow", delay_s=0.3)
    started = time.monotonic()
    assert (await get(kit, token))[0] == 200
    assert time.monotonic() - started >= 0.3
    # The admin API is never faulty unless asked for: the helpers keep working.
    kit.faults.set("http500")
    assert (await kit.stats())["stores"] == 1
    assert kit.faults.hits >= 6
    kit.faults.reset()
    assert (await get(kit, token))[0] == 200


async def test_a_fault_after_processing_loses_only_the_answer(kit: ProfileStoreKit) -> None:
    token = await kit.add_store("s1")
    event = {
        "id": str(uuid.uuid4()),
        "kind": "exposure",
        "class": "conversion",
        "at": "2026-11-01T10:00:00Z",
        "data": {},
    }
    kit.faults.set("close", when="after", times=1)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await session.post(
                kit.base_url + "/v1/stores/s1/events",
                json={"events": [event]},
                headers={"Authorization": f"Bearer {token}"},
            )
    assert len(await kit.events("s1")) == 1  # stored, though the gateway never heard
    status, answer = await kit.store_call("POST", "/v1/stores/s1/events", token, {"events": [event]})
    assert (status, answer["duplicates"]) == (200, 1)


async def test_stop_and_start_keep_the_port_and_the_data(kit: ProfileStoreKit) -> None:
    token = await kit.add_store("s1")
    await kit.put_shopper("p1", {"visits": 1})
    base_url = kit.base_url
    await kit.stop()
    assert not kit.running
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(kit, token)
    await kit.start()
    assert kit.base_url == base_url
    status, body = await get(kit, token)
    assert status == 200
    assert b'"id":"p1"' in body


async def test_a_slow_answer_does_not_hold_up_stopping_for_long(kit: ProfileStoreKit) -> None:
    token = await kit.add_store("s1")
    kit.faults.set("slow", delay_s=30)
    request = asyncio.ensure_future(get(kit, token))
    await until(lambda: kit.faults.hits == 1)  # the request is in the slow answer
    started = time.monotonic()
    await kit.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(aiohttp.ClientError):
        await request


async def test_the_store_runs_on_postgresql_too(tmp_path: Path, pg_url: str) -> None:
    async with running_profile_store(tmp_path, db_url=pg_url) as kit:
        token = await kit.add_store("s1")
        await kit.put_consent("p1", "measurement", True, "2026-11-01T10:00:00Z")
        await kit.stop()
        await kit.start()
        status, body = await get(kit, token, "/v1/stores/s1/profiles/p1")
        assert status == 200
        assert b'"measurement"' in body
