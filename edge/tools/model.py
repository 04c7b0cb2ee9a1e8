"""``edge-gateway model list`` / ``model rollback``: the installed offer models of a gateway (docs/models.md).

Both work on ``[control] state_dir`` of the given configuration, beside a running daemon: the store's lock
keeps them from racing it. ``rollback`` only moves the pointer (after loading and checking the model it
points to); the running daemon switches to it on ``systemctl reload edge-gateway`` (SIGHUP).
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from edge.clock import iso_utc
from edge.decide.lifecycle import ModelStore
from edge.decide.manifest import ModelError
from edge.tools import settings_for_tool

SHA_SHOWN = 12  # hex digits of the sha256 shown: enough to tell versions apart and to match a manifest


def list_models(state_dir: Path, out: TextIO) -> int:
    """Print every installed version (current marked, install time, sha256 prefix) and the rollback target."""
    store = ModelStore.at(state_dir)
    models = store.versions()
    if not models:
        print(f"no models installed in {store.root}", file=out)
        return 0
    target = store.rollback_target()
    history = store.history()
    print(f"models in {store.root} (* = current)", file=out)
    print(f"  {'version':<24} {'installed':<24} {'sha256':<{SHA_SHOWN}}  note", file=out)
    for model in models:
        mark = "*" if model.current else " "
        installed = iso_utc(model.installed_at) if model.installed_at is not None else "?"
        note = "rollback target" if model.version == target else ""
        if not model.current and model.version not in history:
            note = "not in the history (pruned at the next activation)"
        line = f"{mark} {model.version:<24} {installed:<24} {model.sha256[:SHA_SHOWN]:<{SHA_SHOWN}}  {note}"
        print(line.rstrip(), file=out)
    if store.current_version() is None:
        print("no current model: the gateway runs its configured model", file=out)
    return 0


def rollback(state_dir: Path, out: TextIO, err: TextIO) -> int:
    """Move the pointer back one version after verifying that version loads; 0 on success."""
    try:
        store = ModelStore.open(state_dir)
        result = store.rollback()
    except ModelError as exc:
        print(f"rollback refused: {exc}", file=err)
        print("nothing changed", file=err)
        return 1
    print(f"current model is now {result.version} (was {result.previous})", file=out)
    print(
        "the running gateway switches on reload: systemctl reload edge-gateway (SIGHUP); "
        "a restart also starts with it",
        file=out,
    )
    return 0


def run(config: Path, tool: str, out: TextIO, err: TextIO) -> int:
    """``edge-gateway model <tool> --config F``: only ``[control] state_dir`` is needed, so the file is read
    without the start-up checks (a rollback must work when the configured model is the broken part)."""
    settings = settings_for_tool(config, err)
    if settings is None:
        return 1
    state_dir = settings.control.state_dir
    if tool == "list":
        return list_models(state_dir, out)
    return rollback(state_dir, out, err)
