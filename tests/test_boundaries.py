"""The boundaries docs/architecture.md claims, checked over the source of ``edge/``.

SQL and SQLite only in the ledger (and the cloud's reference server, which is not part of a store); settings
schemas only under ``edge/config/``; network and bus clients only in the adapters that own a connection.
Each check reads the syntax tree (imports, string literals, class bases), never comments.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EDGE = REPO / "edge"

SQL_HOMES = ("edge/ledger/",)
SQLITE_MODULES = frozenset({"sqlite3", "aiosqlite", "asyncpg"})
# A string literal that starts like a statement: upper-case keywords, as every query in the tree is written.
SQL_TEXT = re.compile(
    r"^\s*(SELECT\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|CREATE\s+(TABLE|INDEX)\s|"
    r"DROP\s+TABLE\s|PRAGMA\s|BEGIN(\s|$)|COMMIT$)"
)
# Who may open a connection, and to what (docs/architecture.md "Boundaries").
NETWORK_MODULES = frozenset({"socket", "ssl", "aiohttp", "aiomqtt", "paho", "bleak", "dbus_fast", "amqtt"})
NETWORK_HOMES = (
    "edge/transport/",  # the broker
    "edge/sync/client.py",  # the cloud profile store (HTTPS)
    "edge/control/metrics.py",  # the /metrics endpoint
    "edge/control/dashboard.py",  # the store dashboard (HTTP, server-sent events)
    "edge/control/http.py",  # binds those two endpoints' listening sockets
    "edge/control/systemd.py",  # sd_notify's datagram socket
    "edge/sources/ble/",  # BlueZ over D-Bus
    "edge/demo/",  # the demo's own broker, screens and cloud calls around the gateway
)


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(EDGE.rglob("*.py")):
        yield path.relative_to(REPO).as_posix(), ast.parse(path.read_text(), str(path))


def _imported(tree: ast.Module) -> set[str]:
    """Top-level names of every module imported anywhere in the file (lazy imports included)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _sql_literals(tree: ast.Module) -> list[str]:
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.match(node.value)
    ]


def test_the_probes_see_what_they_look_for() -> None:
    ledger = dict(_modules())["edge/ledger/store.py"]
    assert "aiosqlite" in _imported(ledger)
    assert _sql_literals(ast.parse('q = "SELECT shopper_id FROM consents WHERE purpose = ?"'))
    assert _sql_literals(ast.parse('q = "INSERT OR IGNORE INTO jti (jti) VALUES (?)"'))
    assert not _sql_literals(ast.parse('doc = "Select the best offer; update the screen."'))


def test_only_the_ledger_touches_sqlite() -> None:
    found = {}
    for name, tree in _modules():
        if name.startswith(SQL_HOMES):
            continue
        modules = _imported(tree) & SQLITE_MODULES
        queries = _sql_literals(tree)
        if modules or queries:
            found[name] = sorted(modules) + queries
    assert found == {}


def test_settings_schemas_live_under_config() -> None:
    found = []
    for name, tree in _modules():
        if name.startswith("edge/config/"):
            continue
        found += [
            f"{name}: {node.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.name.endswith("Settings") and node.bases
        ]
    assert found == []


def test_only_adapters_open_connections() -> None:
    found = {}
    for name, tree in _modules():
        if name.startswith(NETWORK_HOMES):
            continue
        if modules := _imported(tree) & NETWORK_MODULES:
            found[name] = sorted(modules)
    assert found == {}
