"""Databases as an older version of the schema left them, for the migration tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing

import asyncpg

from profilestore.schema import statements
from profilestore.storage import database_kind


async def make_database(url: str, version: int, rows: Sequence[str]) -> None:
    """The database at ``url`` at schema ``version`` (its migrations, as that version ran them), then ``rows``
    (SQL statements that fill it)."""
    kind, target = database_kind(url)
    if kind == "sqlite":
        with closing(sqlite3.connect(target)) as conn, conn:
            for step in range(1, version + 1):
                for statement in statements(step, "sqlite"):
                    conn.execute(statement)
            for statement in rows:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
        return
    pg = await asyncpg.connect(target)
    try:
        async with pg.transaction():
            await pg.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for step in range(1, version + 1):
                for statement in statements(step, "postgresql"):
                    await pg.execute(statement)
                await pg.execute("INSERT INTO schema_version (version) VALUES ($1)", step)
            for statement in rows:
                await pg.execute(statement)
    finally:
        await pg.close()


async def schema_version(url: str) -> int:
    kind, target = database_kind(url)
    if kind == "sqlite":
        with closing(sqlite3.connect(target)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    pg = await asyncpg.connect(target)
    try:
        return int(await pg.fetchval("SELECT MAX(version) FROM schema_version"))
    finally:
        await pg.close()
