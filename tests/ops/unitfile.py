"""A small reader of systemd unit files: keys may repeat (SystemCallFilter=, DeviceAllow=), so each key
maps to the list of its values in order."""

from __future__ import annotations

from pathlib import Path


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: a setting before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a setting: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections
