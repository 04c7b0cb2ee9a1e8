"""Everything checkable before start-up: schema, referenced files, keys, catalog, model, seed file.

``edge-gateway check-config`` and ``edge-gateway run`` use the same checks, so the daemon refuses to
start with exactly the messages an installer saw.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.config import ConfigError, GatewaySettings, load_settings, missing_files
from edge.config.dashboard import is_loopback_bind
from edge.config.load import read_dashboard_password
from edge.decide.catalog import CatalogError, load_catalog
from edge.decide.manifest import ModelError, verify_model
from edge.identity import ConsentFileError, KeyLoadError, load_public_keys, parse_seed
from edge.identity.eid import EidKeyFileError, load_eid_keys


def check_settings(settings: GatewaySettings) -> list[str]:
    """Problems with what the settings point at, each as 'key.path: message'."""
    problems = missing_files(settings)
    if problems:
        return problems
    try:
        load_public_keys(settings.identity.public_key_files, settings.identity.public_key_env)
    except KeyLoadError as exc:
        problems.append(f"identity.public_key_files: {exc}")
    try:
        load_catalog(settings.decisions.offers_file)
    except CatalogError as exc:
        problems += [f"decisions.offers_file: {error}" for error in exc.errors]
    try:
        verify_model(settings.decisions.model, settings.decisions.manifest_path)
    except ModelError as exc:
        problems.append(f"decisions.model: {exc}")
    keys = settings.ble.eid_keys_file
    if keys is not None:
        try:
            load_eid_keys(keys)
        except EidKeyFileError as exc:
            problems.append(f"ble.eid_keys_file: {exc}")
    seed = settings.identity.consents_file
    if seed is not None:
        try:
            parse_seed(json.loads(seed.read_bytes()), str(seed))
        except (ValueError, RecursionError) as exc:
            problems.append(f"identity.consents_file: not valid JSON ({exc})")
        except ConsentFileError as exc:
            problems.append(f"identity.consents_file: {exc}")
    problems += _dashboard_problems(settings)
    return problems


def _dashboard_problems(settings: GatewaySettings) -> list[str]:
    """A dashboard off loopback whose password file or variable is empty (the schema saw only its name)."""
    dashboard = settings.dashboard
    if not dashboard.enabled or is_loopback_bind(dashboard.bind):
        return []
    try:
        password = read_dashboard_password(settings)
    except (OSError, UnicodeDecodeError) as exc:
        return [f"dashboard.password_file: cannot read ({exc.__class__.__name__})"]
    if password:
        return []
    key = "dashboard.password_env" if dashboard.password_env else "dashboard.password_file"
    return [f"{key}: empty; a dashboard on {dashboard.bind!r} needs a password"]


def warnings_for(settings: GatewaySettings) -> list[str]:
    """Things that work but look unintended; printed by check-config, logged at start."""
    try:
        catalog = load_catalog(settings.decisions.offers_file)
    except CatalogError:
        return []  # already a problem
    zones = {zone.id for zone in settings.zones}
    warnings = []
    for offer in catalog.offers:
        # A chain-wide catalog may target zones this store lacks: such offers simply never show here.
        unknown = sorted(set(offer.zones) - zones)
        if unknown and not set(offer.zones) & zones:
            warnings.append(
                f"decisions.offers_file: offer '{offer.id}' targets only zones this store lacks {unknown}"
            )
    warnings += _sync_warnings(settings)
    return warnings


def _sync_warnings(settings: GatewaySettings) -> list[str]:
    sync = settings.sync
    if not sync.enabled:
        return []
    # Plain http to another machine is refused by the schema (edge/config/model.py), not warned about.
    warnings = []
    if sync.profile_timeout_s > 1.0:
        warnings.append(
            f"sync.profile_timeout_s: {sync.profile_timeout_s} s is how long an unknown shopper's screen may wait"
        )
    return warnings


def load_checked(path: Path) -> GatewaySettings:
    """Load and check a configuration file; raises ConfigError listing every problem."""
    settings = load_settings(path, check_files=False)
    problems = check_settings(settings)
    if problems:
        raise ConfigError(str(path), problems)
    return settings
