"""Reading the TOML file: every problem reported with its key path, secrets read from env/files."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge.config.model import GatewaySettings


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists each one as 'key.path: message'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))
        self.source = source
        self.problems = problems


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def problems_from_validation(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{_key_path(tuple(item['loc']))}: {message}")
    return problems


def parse_settings(data: dict[str, Any], *, base_dir: Path, source: str = "config") -> GatewaySettings:
    """Validate a parsed document; relative paths are taken from ``base_dir`` (the file's folder)."""
    try:
        settings = GatewaySettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems_from_validation(exc)) from None
    return _resolve_paths(settings, base_dir)


def load_settings(path: Path, *, check_files: bool = True) -> GatewaySettings:
    """Read, validate and (by default) check that every referenced file exists."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["(file): not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"(file): TOML syntax: {exc}"]) from None
    settings = parse_settings(data, base_dir=path.resolve().parent, source=str(path))
    if check_files:
        problems = missing_files(settings)
        if problems:
            raise ConfigError(str(path), problems)
    return settings


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None or value.is_absolute():
        return value
    return base / value


def _resolve_paths(settings: GatewaySettings, base: Path) -> GatewaySettings:
    tls = settings.mqtt.tls.model_copy(
        update={
            "ca_file": _resolve(base, settings.mqtt.tls.ca_file),
            "cert_file": _resolve(base, settings.mqtt.tls.cert_file),
            "key_file": _resolve(base, settings.mqtt.tls.key_file),
        }
    )
    mqtt = settings.mqtt.model_copy(
        update={"tls": tls, "password_file": _resolve(base, settings.mqtt.password_file)}
    )
    identity = settings.identity.model_copy(
        update={
            "public_key_files": [_resolve(base, key) for key in settings.identity.public_key_files],
            "consents_file": _resolve(base, settings.identity.consents_file),
        }
    )
    decisions = settings.decisions.model_copy(
        update={
            "model": _resolve(base, settings.decisions.model),
            "manifest": _resolve(base, settings.decisions.manifest),
            "offers_file": _resolve(base, settings.decisions.offers_file),
        }
    )
    ledger = settings.ledger.model_copy(update={"path": _resolve(base, settings.ledger.path)})
    ble = settings.ble.model_copy(update={"eid_keys_file": _resolve(base, settings.ble.eid_keys_file)})
    sync = settings.sync.model_copy(update={"token_file": _resolve(base, settings.sync.token_file)})
    control = settings.control.model_copy(
        update={
            "public_key_files": [_resolve(base, key) for key in settings.control.public_key_files],
            "state_dir": _resolve(base, settings.control.state_dir),
            "files_dir": _resolve(base, settings.control.files_dir),
        }
    )
    dashboard = settings.dashboard.model_copy(
        update={"password_file": _resolve(base, settings.dashboard.password_file)}
    )
    cameras = [
        camera.model_copy(
            update={
                "detector_model": _resolve(base, camera.detector_model),
                # A video file (tests, demos) is relative to the config like every other file.
                "source": str(_resolve(base, Path(camera.source))) if camera.is_file else camera.source,
            }
        )
        for camera in settings.cameras
    ]
    return settings.model_copy(
        update={
            "mqtt": mqtt,
            "identity": identity,
            "decisions": decisions,
            "ledger": ledger,
            "ble": ble,
            "sync": sync,
            "cameras": cameras,
            "control": control,
            "dashboard": dashboard,
        }
    )


def missing_files(settings: GatewaySettings, *, show_paths: bool = True) -> list[str]:
    """Every referenced input file that does not exist, as 'key.path: message' (with its path if asked)."""
    wanted: list[tuple[str, Path | None]] = [
        ("mqtt.tls.ca_file", settings.mqtt.tls.ca_file),
        ("mqtt.tls.cert_file", settings.mqtt.tls.cert_file),
        ("mqtt.tls.key_file", settings.mqtt.tls.key_file),
        ("mqtt.password_file", settings.mqtt.password_file),
        ("identity.consents_file", settings.identity.consents_file),
        ("decisions.model", settings.decisions.model),
        ("decisions.manifest", settings.decisions.manifest_path),
        ("decisions.offers_file", settings.decisions.offers_file),
        ("ble.eid_keys_file", settings.ble.eid_keys_file),
        ("sync.token_file", settings.sync.token_file if settings.sync.enabled else None),
        ("dashboard.password_file", settings.dashboard.password_file if settings.dashboard.enabled else None),
    ]
    wanted += [
        (f"cameras.{index}.detector_model", camera.detector_model)
        for index, camera in enumerate(settings.cameras)
    ]
    wanted += [
        (f"control.public_key_files.{index}", key)
        for index, key in enumerate(settings.control.public_key_files)
    ]
    wanted += [
        (f"identity.public_key_files.{index}", key)
        for index, key in enumerate(settings.identity.public_key_files)
    ]
    problems = [
        f"{key}: file not found" + (f": {path}" if show_paths else "")
        for key, path in wanted
        if path is not None and not path.is_file()
    ]
    if settings.mqtt.password_env and settings.mqtt.password_env not in os.environ:
        problems.append(f"mqtt.password_env: environment variable {settings.mqtt.password_env} is not set")
    if settings.identity.public_key_env and settings.identity.public_key_env not in os.environ:
        problems.append(
            f"identity.public_key_env: environment variable {settings.identity.public_key_env} is not set"
        )
    if settings.sync.enabled and settings.sync.token_env and settings.sync.token_env not in os.environ:
        problems.append(f"sync.token_env: environment variable {settings.sync.token_env} is not set")
    dashboard = settings.dashboard
    if dashboard.enabled and dashboard.password_env and dashboard.password_env not in os.environ:
        problems.append(f"dashboard.password_env: environment variable {dashboard.password_env} is not set")
    no_keys = not settings.identity.public_key_files and not settings.identity.public_key_env
    if no_keys and not settings.sync.enabled:
        problems.append(
            "identity: no token public key configured (public_key_files or public_key_env, or sync to get them)"
        )
    return problems


def read_sync_token(settings: GatewaySettings) -> str | None:
    """The store's bearer token for the cloud, from the environment or a file; never from the TOML."""
    if settings.sync.token_env:
        return os.environ.get(settings.sync.token_env)
    if settings.sync.token_file:
        return settings.sync.token_file.read_text(encoding="utf-8").strip()
    return None


def read_mqtt_password(settings: GatewaySettings) -> str | None:
    """The broker password from the environment or a file; never from the TOML."""
    if settings.mqtt.password_env:
        return os.environ.get(settings.mqtt.password_env)
    if settings.mqtt.password_file:
        return settings.mqtt.password_file.read_text(encoding="utf-8").strip()
    return None


def read_dashboard_password(settings: GatewaySettings) -> str | None:
    """The dashboard's password from the environment or a file; never from the TOML. None: none configured."""
    dashboard = settings.dashboard
    if dashboard.password_env:
        return os.environ.get(dashboard.password_env) or None
    if dashboard.password_file:
        return dashboard.password_file.read_text(encoding="utf-8").strip() or None
    return None
