"""The control plane's durable state: applied configurations (the last N) and where the store stands.

On disk, under ``<state_dir>/config/``::

    state.json                      {"current": 41, "pending": 42, "highest_seen": 42}
    applied-00000000000000000041.json   {"version": 41, "overlay": {...}, "applied_at": ...}

``current`` is the version the store runs (0: the file alone). ``pending`` is set, durably, before a push
is applied and cleared once it passed its health check or was rolled back: a gateway that finds it set at
start died during a health check and goes back to ``current`` (a push that crashes the process must not
crash it again on every restart). ``highest_seen`` makes versions monotonic: a push at or below it is not
newer. Every write is ``edge/fsutil.py``'s atomic replace (temp file, fsync, rename, fsync of the folder): a
power cut leaves the old file or the new one, never half of one. Blocking I/O: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from edge.fsutil import write_atomic

STATE_FILE: Final = "state.json"
_SNAPSHOT = re.compile(r"^applied-(\d{20})\.json$")


class StateWriteError(OSError):
    """The state could not be made durable (disk full, read-only, permissions); nothing was changed."""


@dataclass(frozen=True, slots=True)
class ControlState:
    current: int = 0
    pending: int | None = None
    highest_seen: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    overlay: dict[str, Any]
    applied_at: float


class ConfigSnapshots:
    """Applied configurations by version, the last ``keep`` of them, and the ``ControlState``."""

    def __init__(self, state_dir: Path, keep: int = 10) -> None:
        self.folder = state_dir / "config"
        self.keep = keep

    # ----- state -----
    def state(self) -> ControlState:
        """The stored state; a missing or unreadable file is a fresh start (the file alone)."""
        try:
            data = json.loads((self.folder / STATE_FILE).read_text())
            return ControlState(
                current=int(data["current"]),
                pending=None if data.get("pending") is None else int(data["pending"]),
                highest_seen=int(data["highest_seen"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return ControlState()

    def write_state(self, state: ControlState) -> None:
        self._write(self.folder / STATE_FILE, asdict(state))

    # ----- snapshots -----
    def save(self, snapshot: Snapshot) -> None:
        self._write(self.folder / _name(snapshot.version), asdict(snapshot))

    def load(self, version: int) -> Snapshot | None:
        """The snapshot of ``version``; None if it is gone or unreadable (then the caller falls back)."""
        try:
            data = json.loads((self.folder / _name(version)).read_text())
            overlay = data["overlay"]
            if not isinstance(overlay, dict):
                return None
            return Snapshot(int(data["version"]), overlay, float(data["applied_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def versions(self) -> list[int]:
        """Kept snapshot versions, oldest first."""
        try:
            names = [path.name for path in self.folder.iterdir()]
        except OSError:
            return []
        return sorted(int(match[1]) for name in names if (match := _SNAPSHOT.match(name)))

    def prune(self, protect: set[int]) -> list[int]:
        """Delete all but the newest ``keep`` snapshots, never one in ``protect``; the versions removed."""
        versions = self.versions()
        removed = []
        for version in versions[: max(0, len(versions) - self.keep)]:
            if version in protect:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.folder / _name(version)).unlink()
                removed.append(version)
        return removed

    # ----- durability -----
    def _write(self, path: Path, data: dict[str, Any]) -> None:
        text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, text, mode=0o600)
        except OSError as exc:
            raise StateWriteError(exc.errno, f"cannot write {path.name}: {exc.strerror}") from exc


def _name(version: int) -> str:
    return f"applied-{version:020d}.json"
