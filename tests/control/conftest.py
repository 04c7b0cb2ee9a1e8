"""A store whose gateway takes signed configuration pushes: its own config signing key, a state dir, and the
folder a push may take model and catalog files from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge.identity.keys import generate_keypair, sign_token
from tests.support import clock
from tests.support.broker import Mosquitto
from tests.support.store import ROOT, STORE, StoreKit, make_store

DESIRED = f"{ROOT}/config/desired"
REPORTED = f"{ROOT}/config/reported"


@dataclass
class ControlKit:
    store: StoreKit
    config_key: bytes  # the cloud's configuration signing key (private PEM)
    state_dir: Path
    files_dir: Path  # control.files_dir: a push names files in it by their plain names

    def push(
        self, version: Any, config: Any, *, key: bytes | None = None, aud: Any = STORE, **claims: Any
    ) -> bytes:
        body = {"aud": aud, "version": version, "config": config, "iat": int(clock.now()), **claims}
        return sign_token(key or self.config_key, {k: v for k, v in body.items() if v is not None}).encode()


def make_control_store(workdir: Path, port: int, *, deadline_s: float = 0.3, sync: str = "") -> ControlKit:
    private_pem, public_pem = generate_keypair()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config-public.pem").write_bytes(public_pem)
    control = (
        f'enabled = true\npublic_key_files = ["config-public.pem"]\nhealth_deadline_s = {deadline_s}\n'
        'files_dir = "incoming"\n'
    )
    store = make_store(workdir, port, control=control, sync=sync)
    (workdir / "incoming").mkdir()
    return ControlKit(store, private_pem, workdir / "state", workdir / "incoming")


@pytest.fixture
def control(tmp_path: Path, mosquitto: Mosquitto) -> ControlKit:
    return make_control_store(tmp_path / "store", mosquitto.port)
