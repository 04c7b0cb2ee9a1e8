"""Installer and integrator tools behind the edge-gateway command."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from edge.config import ConfigError, GatewaySettings, load_settings


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
