"""Installer and integrator tools behind the edge-gateway command."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from edge.config import ConfigError, GatewaySettings, load_settings
from edge.decide.catalog import Catalog, load_catalog, merged_catalog
from edge.ledger.privacy import cloud_offer_bodies
from edge.ledger.writer import Tx


def settings_for_tool(config: Path, err: TextIO) -> GatewaySettings | None:
    """The configuration read without the start-up checks (a tool must work when a referenced file is the
    broken part), or None after printing every problem to ``err``."""
    try:
        return load_settings(config, check_files=False)
    except ConfigError as exc:
        print(f"{config}: {len(exc.problems)} problem(s)", file=err)
        for problem in exc.problems:
            print(f"  {problem}", file=err)
        return None


def store_catalog(conn: Any, offers_file: Path) -> Catalog:
    """The store's offers as its gateway decides with them: the offers file with the cloud's offers (the
    ledger's replica, read on ``conn``, a read-only connection) over it. Raises CatalogError for a bad file."""
    cloud: dict[str, Mapping[str, Any]] = {}
    for offer_id, body in cloud_offer_bodies(Tx(conn)):
        try:
            parsed = json.loads(body)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            cloud[offer_id] = parsed
    return merged_catalog(load_catalog(offers_file), cloud, ())
