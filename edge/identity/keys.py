"""Ed25519 token keys: loading the cloud's public keys by kid; key generation and signing for the demo and tests."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.identity.tokens import ALGORITHM

# A PEM public key is ~113 bytes; a file of a few rotated keys with comments stays far below this, and a
# misconfigured path (a log, a database) is refused before it is read into memory.
MAX_KEY_FILE_BYTES: Final = 64 * 1024
# Hex characters of sha256(raw public key) in a derived kid: 64 bits, collision-free for any key set in use.
DERIVED_KID_CHARS: Final = 16
# A kid is matched against the JWT header; ids beyond this length are configuration mistakes.
MAX_KID_CHARS: Final = 128

# RFC 7468 blocks; text between blocks is allowed, and a "kid: <id>" line there names the next key.
_PEM_BLOCK: Final = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
_KID_LINE: Final = re.compile(r"^[ \t]*kid[ \t]*[:=][ \t]*([!-~]+)[ \t]*$", re.MULTILINE | re.IGNORECASE)


class KeyLoadError(Exception):
    """A configured key is unusable; the message names the file or variable, never the key material."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """The derived ``kid``: the first 16 hex chars of sha256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:DERIVED_KID_CHARS]


def parse_public_keys(text: str, source: str) -> list[tuple[str, Ed25519PublicKey]]:
    """Every ``PUBLIC KEY`` block of ``text`` with its kid; ``source`` names the origin in errors."""
    keys: list[tuple[str, Ed25519PublicKey]] = []
    position = 0
    for block in _PEM_BLOCK.finditer(text):
        kid_lines = _KID_LINE.findall(text, position, block.start())
        position = block.end()
        label = block.group(1)
        if label != "PUBLIC KEY":
            # A private key in the gateway's configuration is a leak waiting to happen: refuse it loudly.
            kind = "a private key" if "PRIVATE" in label else f"a {label} block"
            raise KeyLoadError(f"{source}: key {len(keys) + 1} is {kind}; only PUBLIC KEY blocks belong here")
        try:
            key = serialization.load_pem_public_key(block.group(0).encode("ascii"))
        except (ValueError, UnsupportedAlgorithm):
            # from None: the parser's message may quote the input.
            raise KeyLoadError(f"{source}: key {len(keys) + 1} is not a valid PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyLoadError(f"{source}: key {len(keys) + 1} is not Ed25519 (tokens are signed with EdDSA)")
        kid = kid_lines[-1] if kid_lines else key_id(key)
        if len(kid) > MAX_KID_CHARS:
            raise KeyLoadError(f"{source}: key {len(keys) + 1} has a kid longer than {MAX_KID_CHARS} chars")
        keys.append((kid, key))
    if not keys:
        raise KeyLoadError(f"{source}: no -----BEGIN PUBLIC KEY----- block found")
    return keys


def load_public_keys(
    files: Sequence[Path], env_var: str | None, *, environ: Mapping[str, str] | None = None
) -> dict[str, Ed25519PublicKey]:
    """The cloud's token keys by kid, from PEM files and/or one environment variable; at least one."""
    sources: list[tuple[str, str]] = []
    for path in files:
        sources.append((str(path), _read_key_file(Path(path))))
    if env_var:
        env = os.environ if environ is None else environ
        text = env.get(env_var)
        if not text:
            raise KeyLoadError(f"${env_var}: environment variable is not set or empty")
        sources.append((f"${env_var}", text))
    keys: dict[str, Ed25519PublicKey] = {}
    for source, text in sources:
        for kid, key in parse_public_keys(text, source):
            known = keys.get(kid)
            if known is not None and known != key:
                # Silently keeping either would make tokens of the other key fail as forged.
                raise KeyLoadError(f"{source}: kid {kid} is already used by a different key")
            keys[kid] = key
    if not keys:
        raise KeyLoadError("no token public key configured (public_key_files or public_key_env)")
    return keys


def _read_key_file(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_KEY_FILE_BYTES:
            raise KeyLoadError(
                f"{path}: {size} bytes is too large for a key file (limit {MAX_KEY_FILE_BYTES})"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyLoadError(f"{path}: not PEM text (non-ASCII bytes)") from None


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM): the cloud's side."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def sign_token(private_pem: bytes, claims: Mapping[str, Any], kid: str | None = None) -> str:
    """A compact EdDSA JWT over ``claims``, with ``kid`` in the header when given (demo and tests only)."""
    try:
        private = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyLoadError("signing key: not an unencrypted PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyLoadError("signing key: not Ed25519")
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(dict(claims), private, algorithm=ALGORITHM, headers=headers)
