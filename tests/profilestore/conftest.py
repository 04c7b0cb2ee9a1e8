"""Databases for the profile store tests: a SQLite file per test, and a fresh PostgreSQL database per run.

PostgreSQL: ``EDGE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) is used only to
create a database with a random name for this run, dropped at the end; each test gets its own schema in it.
If the server cannot be reached, the PostgreSQL tests are skipped with the reason, or fail when
``EDGE_TEST_REQUIRE_PG`` is set (CI sets it: its machines run one).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.profilestore import (
    PG_ADMIN_URL,
    ProfileStoreKit,
    create_database,
    database_url,
    drop_database,
    running_profile_store,
)

T = TypeVar("T")


def _run_apart(coro: Coroutine[Any, Any, T]) -> T:
    # Its own thread and loop: never touches the loop pytest-asyncio gives the tests.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """The URL of a database created for this test run (dropped after it)."""
    try:
        name = _run_apart(create_database())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL unreachable at {PG_ADMIN_URL} ({exc}); set EDGE_TEST_PG_URL to run these tests"
        if os.environ.get("EDGE_TEST_REQUIRE_PG"):
            pytest.fail(reason)  # CI has a server: not testing against it would be a silent gap
        pytest.skip(reason)
    try:
        yield database_url(PG_ADMIN_URL, name)
    finally:
        _run_apart(drop_database(name))


@pytest.fixture
async def pg_url(pg_database: str) -> AsyncIterator[str]:
    """A URL whose tables live in a schema of their own (one per test)."""
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    yield database_url(pg_database, urlsplit(pg_database).path.lstrip("/"), f"search_path={schema}")
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def kit(tmp_path: Path) -> AsyncIterator[ProfileStoreKit]:
    """A reference store on SQLite in ``tmp_path``, on a free loopback port."""
    async with running_profile_store(tmp_path) as running:
        yield running


@pytest.fixture
async def token(kit: ProfileStoreKit) -> str:
    """Store ``s1``'s bearer token."""
    return await kit.add_store("s1")
