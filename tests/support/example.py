"""``config/gateway.example.toml`` as the README's trial runs it: its files beside it and a trial key pair."""

from __future__ import annotations

import shutil
from pathlib import Path

from edge.identity import generate_keypair

REPO = Path(__file__).resolve().parents[2]


def trial_example(folder: Path) -> Path:
    """A copy of the example configuration under ``folder`` that ``check-config`` accepts as it is."""
    config = folder / "config"
    config.mkdir()
    for name in ("gateway.example.toml", "offers.example.toml", "shoppers.example.json"):
        shutil.copy(REPO / "config" / name, config / name)
    (config / "keys").mkdir()
    (config / "keys" / "token-public.pem").write_bytes(generate_keypair()[1])
    (folder / "models").symlink_to(REPO / "models")  # the example's model is "../models/offers.onnx"
    return config / "gateway.example.toml"
