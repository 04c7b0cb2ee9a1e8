"""A test store: keys generated per test, a config file, shoppers with consents, and signed check-ins."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.clock import iso_utc
from edge.config import GatewaySettings, load_settings
from edge.identity import generate_keypair, sign_token
from tests.support import clock

REPO = Path(__file__).resolve().parents[2]
STORE = "s1"
ROOT = f"store/{STORE}"

# Consents are dated a day before the test's instant (a gateway refuses grants dated ahead of its clock).
CONSENTED_BEFORE_S = 86_400.0
SHOPPERS: list[dict[str, Any]] = [
    {  # everything granted
        "id": "p-full",
        "consents": {"personalization": True, "measurement": True, "camera_checkin": True},
        "profile": {"affinity": {"coffee": 0.95}, "visits": 10},
    },
    {  # personal offers, but nothing stored under their id
        "id": "p-nomeasure",
        "consents": {"personalization": True, "measurement": False},
        "profile": {"affinity": {"electronics": 0.9}, "visits": 2},
    },
    {  # context-only decisions
        "id": "p-anon",
        "consents": {"personalization": False, "measurement": True},
        "profile": {"affinity": {"beauty": 0.9}},
    },
]


@dataclass
class StoreKit:
    workdir: Path
    port: int
    private_pem: bytes
    config_path: Path

    def settings(self) -> GatewaySettings:
        return load_settings(self.config_path)

    def token(self, sub: str, *, key: bytes | None = None, **overrides: Any) -> str:
        """A signed token issued now (the test's timeline); an override of None removes that claim."""
        now = int(clock.now())
        claims: dict[str, Any] = {
            "sub": sub,
            "aud": STORE,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return sign_token(key or self.private_pem, {k: v for k, v in claims.items() if v is not None})

    def checkin(self, sub: str, zone: str = "cafe", source: str = "app", **claims: Any) -> bytes:
        body = {
            "v": 1,
            "ts": iso_utc(clock.now()),
            "token": self.token(sub, **claims),
            "zone": zone,
            "source": source,
        }
        return json.dumps(body).encode()


def sync_section(url: str, token: str, workdir: Path, **overrides: object) -> str:
    """A [sync] table for a test store: the token in a file, fast retries and polls."""
    (workdir / "cloud-token").write_text(token)
    options: dict[str, object] = {
        "pull_interval_s": 0.2,
        "push_interval_s": 0.05,
        "retry_max_s": 0.2,
        "request_timeout_s": 2.0,
        **overrides,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return (
        '[sync]\nenabled = true\nurl = "'
        + url
        + '"\ntoken_file = "cloud-token"\n'
        + "\n".join(lines)
        + "\n\n"
    )


def synced_store(tmp_path: Path, port: int, base_url: str, token: str, extra_config: str = "") -> StoreKit:
    """A store in ``tmp_path/store`` that syncs with the cloud at ``base_url`` (no seed file), with
    ``extra_config`` appended to its configuration."""
    workdir = tmp_path / "store"
    workdir.mkdir()
    store = make_store(workdir, port, seed=False, sync=sync_section(base_url, token, workdir))
    with store.config_path.open("a") as config:
        config.write(extra_config)
    return store


def make_store(
    workdir: Path,
    port: int,
    *,
    min_display_s: float = 0.0,
    ttl_s: float = 30.0,
    keepalive_s: int = 5,
    sync: str = "",
    seed: bool = True,
    control: str = "",
    zones: tuple[str, ...] = ("cafe", "entrance"),
) -> StoreKit:
    """A store with one display per zone (``screen-{zone}``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    (workdir / "token-public.pem").write_bytes(public_pem)
    consented_at = iso_utc(clock.now() - CONSENTED_BEFORE_S)
    shoppers = [{**shopper, "at": consented_at} for shopper in SHOPPERS]
    (workdir / "shoppers.json").write_text(json.dumps({"shoppers": shoppers}))
    config = workdir / "gateway.toml"
    displays = "".join(
        f'[[displays]]\nid = "screen-{zone}"\nzone = "{zone}"\nmin_display_s = {min_display_s}\ncontent_ttl_s = {ttl_s}\n'
        f'fallback = {{ template = "loop", data = {{ playlist = "{zone}" }} }}\n\n'
        for zone in zones
    )
    config.write_text(
        f'[store]\nid = "{STORE}"\n\n'
        f"[mqtt]\nport = {port}\nkeepalive_s = {keepalive_s}\nreconnect_max_s = 0.5\n\n"
        '[identity]\npublic_key_files = ["token-public.pem"]\n'
        + ('consents_file = "shoppers.json"\n\n' if seed else "\n")
        + sync
        + f'[decisions]\nmodel = "{REPO / "models/offers.onnx"}"\noffers_file = "{REPO / "config/offers.example.toml"}"\n\n'
        + "[decisions.policy]\nepsilon = 0.0\nholdout_percent = 0\n\n"
        + '[ledger]\npath = "ledger.sqlite"\n\n[health]\ninterval_s = 1\nmetrics_port = 0\n\n'
        # The store's own state dir (models, config snapshots), never the machine's /var/lib/edge-gateway.
        + f'[control]\nstate_dir = "state"\n{control}\n'
        + "".join(f'[[zones]]\nid = "{zone}"\n\n' for zone in zones)
        + displays
    )
    return StoreKit(workdir, port, private_pem, config)
