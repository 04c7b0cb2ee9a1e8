"""Identity: whose signal it is (verified check-in tokens) and what they allowed (consent), nothing more."""

from edge.identity.consent import (
    ConsentFileError,
    ConsentRecord,
    ConsentSink,
    ConsentStore,
    ConsentView,
    ProfileCache,
    SeedShopper,
    parse_seed,
)
from edge.identity.keys import (
    KeyLoadError,
    generate_keypair,
    key_id,
    load_public_keys,
    parse_public_keys,
    sign_token,
)
from edge.identity.replay import Claim, ReplayGuard
from edge.identity.tokens import Rejection, RejectReason, TokenVerifier, VerifiedToken, fingerprint

__all__ = [
    "Claim",
    "ConsentFileError",
    "ConsentRecord",
    "ConsentSink",
    "ConsentStore",
    "ConsentView",
    "KeyLoadError",
    "ProfileCache",
    "RejectReason",
    "Rejection",
    "ReplayGuard",
    "SeedShopper",
    "TokenVerifier",
    "VerifiedToken",
    "fingerprint",
    "generate_keypair",
    "key_id",
    "load_public_keys",
    "parse_public_keys",
    "parse_seed",
    "sign_token",
]
