"""The repository's three distributions keep apart (docs/architecture.md, "Three distributions"): the gateway
(edge/) imports nothing of the reference cloud (cloud/profilestore) nor its database driver, the cloud
nothing of the gateway, and both only the contract (contract/storecontract) in between.

Read from the sources, lazy imports inside functions included; tests/ops/test_install.py shows the same on a
real install (a store's venv has no asyncpg and no amqtt).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
GATEWAY = REPO / "edge"
CLOUD = REPO / "cloud" / "profilestore"
CONTRACT = REPO / "contract" / "storecontract"


def imports(package: Path) -> Iterator[tuple[str, str]]:
    """(module file, top-level name) for every import statement under ``package``."""
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                yield str(path.relative_to(REPO)), name.partition(".")[0]


def importers(package: Path, *names: str) -> set[str]:
    return {where for where, name in imports(package) if name in names}


def test_the_gateway_imports_nothing_of_the_cloud() -> None:
    assert importers(GATEWAY, "profilestore", "asyncpg") == set()
    # The demo's embedded broker is the `demo` extra's, imported only when the demo starts it.
    assert importers(GATEWAY, "amqtt") == {"edge/demo/broker.py"}


def test_the_cloud_imports_nothing_of_the_gateway() -> None:
    assert importers(CLOUD, "edge") == set()


def test_the_contract_is_small() -> None:
    # The standard library's lightest parts (collections.abc's types, importlib.resources for the OpenAPI
    # document shipped as package data) and pydantic: nothing a gateway or a cloud server would not have.
    allowed = {"__future__", "collections", "enum", "importlib", "typing", "pydantic"}
    assert {name for _, name in imports(CONTRACT)} <= allowed
    assert importers(GATEWAY, "storecontract")  # and both sides use it
    assert importers(CLOUD, "storecontract")


def dependencies(pyproject: Path, extra: str | None = None) -> set[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {Requirement(requirement).name for requirement in listed}


def test_a_store_installs_neither_the_cloud_driver_nor_the_demo_broker() -> None:
    gateway = dependencies(REPO / "pyproject.toml")
    assert "edge-store-contract" in gateway
    assert not {"asyncpg", "amqtt", "edge-profile-store"} & gateway
    assert dependencies(REPO / "pyproject.toml", "demo") == {"amqtt", "matplotlib"}
    # The report's plots are an extra too (a Pi need not install matplotlib), imported by one module only.
    assert "matplotlib" not in gateway
    assert dependencies(REPO / "pyproject.toml", "report") == {"matplotlib"}
    assert importers(GATEWAY, "matplotlib") == {"edge/measure/plots.py"}
    assert {"asyncpg", "edge-store-contract"} <= dependencies(REPO / "cloud" / "pyproject.toml")
    assert dependencies(REPO / "contract" / "pyproject.toml") == {"pydantic"}


def test_the_installed_packages_are_this_checkout() -> None:
    # One checkout, three distributions: a stale install of another would test the wrong code.
    for module in ("edge", "profilestore", "storecontract"):
        __import__(module)
        assert Path(sys.modules[module].__file__ or "").is_relative_to(REPO), module
