"""Integrator tools playing the cloud's part: a token key pair and signed check-in payloads for trials.

A real store gets its public key from the retailer's cloud; these exist so a signage or POS integrator
can try the gateway by hand (``mosquitto_pub``) without a cloud.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from edge.clock import iso_utc
from edge.identity import generate_keypair, sign_token

# Trial tokens live as long as a real check-in token would (minutes).
TRIAL_TOKEN_TTL_S = 300


def keygen(out_dir: Path) -> tuple[Path, Path]:
    """Write ``token-private.pem`` (mode 0600, keep it off gateways) and ``token-public.pem``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = generate_keypair()
    private_path, public_path = out_dir / "token-private.pem", out_dir / "token-public.pem"
    private_path.touch(mode=0o600)
    private_path.write_bytes(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def checkin_payload(private_key: Path, *, store: str, shopper: str, zone: str, source: str = "app") -> str:
    """A check-in message body with a freshly signed token, ready for ``mosquitto_pub -m``."""
    now = int(time.time())
    claims = {
        "sub": shopper,
        "aud": store,
        "iat": now,
        "exp": now + TRIAL_TOKEN_TTL_S,
        "jti": uuid.uuid4().hex,
    }
    token = sign_token(private_key.read_bytes(), claims)
    return json.dumps({"v": 1, "ts": iso_utc(now), "token": token, "zone": zone, "source": source})
