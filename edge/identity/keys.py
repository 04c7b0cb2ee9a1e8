"""Ed25519 keys: loading the cloud's public token keys; generating and signing for the demo and tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyLoadError(Exception):
    """A configured key is unusable; the message names its source, never its content."""


def key_id(key: Ed25519PublicKey) -> str:
    """The default ``kid``: 16 hex chars of sha256 over the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def parse_public_key(pem: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyLoadError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyLoadError(f"{source}: not an Ed25519 key (tokens are signed with EdDSA/Ed25519)")
    return key


def load_public_keys(
    files: Sequence[Path], env_var: str | None, environ: Mapping[str, str] | None = None
) -> dict[str, Ed25519PublicKey]:
    """Every configured public key by ``kid``; at least one is required."""
    env = os.environ if environ is None else environ
    keys: dict[str, Ed25519PublicKey] = {}
    for path in files:
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise KeyLoadError(f"{path}: cannot read ({exc.strerror})") from None
        key = parse_public_key(pem, str(path))
        keys[key_id(key)] = key
    if env_var:
        text = env.get(env_var)
        if not text:
            raise KeyLoadError(f"environment variable {env_var} is not set")
        key = parse_public_key(text.encode(), f"${env_var}")
        keys[key_id(key)] = key
    if not keys:
        raise KeyLoadError("no token public key configured")
    return keys


def generate_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a fresh Ed25519 key: the cloud side, for the demo and tests only."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def sign_token(private_pem: bytes, claims: Mapping[str, Any], kid: str | None = None) -> str:
    """A compact EdDSA JWT over ``claims`` (the cloud's job; the gateway never holds a private key)."""
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyLoadError("signing key is not Ed25519")
    headers = {"kid": kid} if kid else None
    return jwt.encode(dict(claims), private, algorithm="EdDSA", headers=headers)
