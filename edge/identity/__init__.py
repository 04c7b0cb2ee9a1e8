"""Identity: who a signal belongs to (verified tokens) and what they allowed (consent), nothing more."""

from edge.identity.consent import ConsentFileError, ConsentStore, ProfileCache, parse_seed
from edge.identity.keys import KeyLoadError, generate_keypair, key_id, load_public_keys, sign_token
from edge.identity.tokens import Rejection, RejectReason, TokenVerifier, VerifiedToken, fingerprint

__all__ = [
    "ConsentFileError",
    "ConsentStore",
    "KeyLoadError",
    "ProfileCache",
    "RejectReason",
    "Rejection",
    "TokenVerifier",
    "VerifiedToken",
    "fingerprint",
    "generate_keypair",
    "key_id",
    "load_public_keys",
    "parse_seed",
    "sign_token",
]
