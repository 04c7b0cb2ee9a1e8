"""Token verification: every refusal has its reason, nothing raises, and every call is counted once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.identity import Rejection, RejectReason, TokenVerifier, VerifiedToken, fingerprint, sign_token
from tests.identity.conftest import (
    LEEWAY_S,
    MAX_LIFETIME_S,
    STORE,
    KeyPair,
    b64,
    make_claims,
    new_keypair,
)


def reason_of(result: VerifiedToken | Rejection) -> RejectReason:
    assert isinstance(result, Rejection), result
    return result.reason


def test_a_valid_token_is_accepted_and_counted(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    claims = make_claims(clock, sub="p-42", jti="j-1", extra="kept")
    result = verifier.verify(sign_token(keypair.private_pem, claims))
    assert result == VerifiedToken(
        sub="p-42",
        jti="j-1",
        exp_wall=claims["exp"],
        aud=STORE,
        claims=claims,
        replay_until=claims["exp"] + 30,
    )
    assert verifier.accepted == 1
    assert sum(verifier.rejections.values()) == 0


def test_kid_selects_the_key_and_an_unknown_kid_is_refused(keypair: KeyPair, clock, verifier) -> None:
    assert isinstance(
        verifier.verify(sign_token(keypair.private_pem, make_claims(clock), kid=keypair.kid)), VerifiedToken
    )
    token = sign_token(keypair.private_pem, make_claims(clock), kid="rotated-away")
    assert reason_of(verifier.verify(token)) is RejectReason.UNKNOWN_KEY


def test_without_kid_every_key_is_tried(clock: ManualClock) -> None:
    old, new = new_keypair(), new_keypair()
    verifier = TokenVerifier({**old.keys, **new.keys}, STORE, clock)
    assert isinstance(verifier.verify(sign_token(new.private_pem, make_claims(clock))), VerifiedToken)
    assert isinstance(verifier.verify(sign_token(old.private_pem, make_claims(clock))), VerifiedToken)
    # A kid names exactly one key: the other key's signature is then not tried.
    token = sign_token(new.private_pem, make_claims(clock), kid=old.kid)
    assert reason_of(verifier.verify(token)) is RejectReason.BAD_SIGNATURE


def test_no_keys_at_all_means_unknown_key(clock: ManualClock, keypair: KeyPair) -> None:
    verifier = TokenVerifier({}, STORE, clock)
    assert (
        reason_of(verifier.verify(sign_token(keypair.private_pem, make_claims(clock))))
        is RejectReason.UNKNOWN_KEY
    )


def test_expiry_follows_the_injected_clock_with_leeway(
    keypair: KeyPair, clock: ManualClock, verifier
) -> None:
    token = sign_token(keypair.private_pem, make_claims(clock))  # exp = now + 300
    clock.advance(300 + LEEWAY_S - 1)
    assert isinstance(verifier.verify(token), VerifiedToken)
    clock.advance(1)
    assert reason_of(verifier.verify(token)) is RejectReason.EXPIRED


def test_not_yet_valid(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    now = int(clock.wall())
    early = sign_token(keypair.private_pem, make_claims(clock, nbf=now + 120))
    assert reason_of(verifier.verify(early)) is RejectReason.NOT_YET_VALID
    issued_in_future = sign_token(keypair.private_pem, make_claims(clock, iat=now + 120, exp=now + 300))
    assert reason_of(verifier.verify(issued_in_future)) is RejectReason.NOT_YET_VALID
    within_skew = sign_token(keypair.private_pem, make_claims(clock, nbf=now + LEEWAY_S))
    assert isinstance(verifier.verify(within_skew), VerifiedToken)
    clock.advance(120)
    assert isinstance(verifier.verify(early), VerifiedToken)


def test_audience(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    def verify(aud: object) -> VerifiedToken | Rejection:
        return verifier.verify(sign_token(keypair.private_pem, make_claims(clock, aud=aud)))

    assert reason_of(verify("store-8")) is RejectReason.WRONG_AUDIENCE
    assert reason_of(verify("store")) is RejectReason.WRONG_AUDIENCE  # a prefix of ours is not ours
    assert reason_of(verify(["store-8", "store-9"])) is RejectReason.WRONG_AUDIENCE
    assert reason_of(verify(["store-8", 7])) is RejectReason.WRONG_AUDIENCE
    assert reason_of(verify([])) is RejectReason.MISSING_CLAIM
    shared = verify(["store-8", "stores"])
    assert isinstance(shared, VerifiedToken)
    assert shared.aud == "stores"
    assert isinstance(verify("stores"), VerifiedToken)
    ours = verify(["stores", STORE])
    assert isinstance(ours, VerifiedToken)
    assert ours.aud == STORE


def test_forged_with_another_key(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    forger = new_keypair()
    assert (
        reason_of(verifier.verify(sign_token(forger.private_pem, make_claims(clock))))
        is RejectReason.BAD_SIGNATURE
    )


def test_alg_none_is_refused(clock: ManualClock, verifier) -> None:
    unsigned = jwt.encode(make_claims(clock), None, algorithm="none")
    assert reason_of(verifier.verify(unsigned)) is RejectReason.BAD_SIGNATURE
    # Also with a kid that names a real key.
    header = b64({"alg": "none", "typ": "JWT"})
    assert reason_of(verifier.verify(f"{header}.{b64(make_claims(clock))}.")) is RejectReason.BAD_SIGNATURE


def test_hs256_keyed_with_the_public_key_is_refused(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    # The classic confusion: an attacker who knows the public key MACs a token with it as an HMAC secret.
    for secret in (keypair.public_pem, keypair.public_key.public_bytes_raw()):
        signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(make_claims(clock))}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert reason_of(verifier.verify(f"{signing_input}.{b64(mac)}")) is RejectReason.BAD_SIGNATURE


def test_rs256_is_refused(clock: ManualClock, verifier) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = jwt.encode(make_claims(clock), pem, algorithm="RS256")
    assert reason_of(verifier.verify(token)) is RejectReason.BAD_SIGNATURE


def test_tampered_payload(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    header, _, signature = sign_token(keypair.private_pem, make_claims(clock, sub="p-1")).split(".")
    forged = b64(make_claims(clock, sub="p-admin"))
    assert reason_of(verifier.verify(f"{header}.{forged}.{signature}")) is RejectReason.BAD_SIGNATURE
    # A different header under the old signature is a forgery too.
    other_header = b64({"alg": "EdDSA", "typ": "JWT", "x": 1})
    _, payload, _ = sign_token(keypair.private_pem, make_claims(clock)).split(".")
    assert reason_of(verifier.verify(f"{other_header}.{payload}.{signature}")) is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize("claim", ["sub", "exp", "jti", "aud"])
def test_each_required_claim(keypair: KeyPair, clock: ManualClock, verifier, claim: str) -> None:
    token = sign_token(keypair.private_pem, make_claims(clock, **{claim: None}))
    assert reason_of(verifier.verify(token)) is RejectReason.MISSING_CLAIM


def test_too_long_lived(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    now = int(clock.wall())

    def verify(**claims: object) -> VerifiedToken | Rejection:
        return verifier.verify(sign_token(keypair.private_pem, make_claims(clock, **claims)))

    assert isinstance(verify(exp=now + MAX_LIFETIME_S), VerifiedToken)
    assert reason_of(verify(exp=now + MAX_LIFETIME_S + 1)) is RejectReason.TOO_LONG_LIVED
    # Backdating iat does not stretch the limit: exp - iat counts.
    assert reason_of(verify(iat=now - 600, exp=now + 600)) is RejectReason.TOO_LONG_LIVED
    # Without iat the gateway's clock measures it, with the skew allowance.
    assert isinstance(verify(iat=None, exp=now + MAX_LIFETIME_S + LEEWAY_S), VerifiedToken)
    assert reason_of(verify(iat=None, exp=now + 7200)) is RejectReason.TOO_LONG_LIVED


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": ""},
        {"sub": "x" * 129},
        {"sub": 7},
        {"jti": ""},
        {"jti": "j" * 129},
        {"jti": ["a"]},
        {"exp": "soon"},
        {"exp": True},
        {"exp": 10**400},
        {"nbf": "now"},
        {"iat": {"t": 1}},
    ],
)
def test_claims_of_the_wrong_shape_are_malformed(
    keypair: KeyPair, clock: ManualClock, verifier, claims
) -> None:
    token = sign_token(keypair.private_pem, make_claims(clock, **claims))
    assert reason_of(verifier.verify(token)) is RejectReason.MALFORMED


def test_ids_at_the_length_limit_are_fine(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    token = sign_token(keypair.private_pem, make_claims(clock, sub="s" * 128, jti="j" * 128))
    assert isinstance(verifier.verify(token), VerifiedToken)


def test_oversized(keypair: KeyPair, clock: ManualClock) -> None:
    verifier = TokenVerifier(keypair.keys, STORE, clock, max_token_bytes=300)
    token = sign_token(keypair.private_pem, make_claims(clock, padding="x" * 300))
    assert reason_of(verifier.verify(token)) is RejectReason.OVERSIZED
    assert reason_of(verifier.verify("a." * 10_000_000)) is RejectReason.OVERSIZED


@pytest.mark.parametrize(
    "junk",
    [
        None,
        42,
        b"a.b.c",
        ["a.b.c"],
        "",
        "abc",
        "a.b",
        "a.b.c",
        "..",
        "é.é.é",
        "\ud800",
        "a.b.c.d",
        "!!!.@@@.###",
    ],
)
def test_junk_is_malformed(verifier, junk: object) -> None:
    assert reason_of(verifier.verify(junk)) is RejectReason.MALFORMED


@pytest.mark.parametrize(
    "header",
    [
        b64(b"[" * 1500),  # deeper than the JSON parser's recursion limit
        b64(b"\xff\xfe"),
        b64([1, 2]),
        b64({"typ": "JWT"}),  # no alg
        b64({"alg": 5}),
        b64({"alg": "EdDSA", "kid": 5}),
        b64({"alg": "EdDSA", "b64": False}),
        b64({"alg": "EdDSA", "crit": ["exp"]}),
    ],
)
def test_odd_headers_are_malformed(clock: ManualClock, verifier, header: str) -> None:
    assert (
        reason_of(verifier.verify(f"{header}.{b64(make_claims(clock))}.{b64(b'x' * 64)}"))
        is RejectReason.MALFORMED
    )


def test_a_correctly_signed_non_object_payload_is_malformed(keypair: KeyPair, verifier) -> None:
    token = jwt.api_jws.encode(
        b"[1, 2]", serialization.load_pem_private_key(keypair.private_pem, None), "EdDSA"
    )
    assert reason_of(verifier.verify(token)) is RejectReason.MALFORMED


def test_rejections_are_logged_by_reason_never_with_the_token(
    keypair: KeyPair, clock: ManualClock, verifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edge.identity")
    token = sign_token(new_keypair().private_pem, make_claims(clock, sub="p-secret"))
    verifier.verify(token)
    text = caplog.text
    assert "bad_signature" in text
    assert fingerprint(token) in text
    for part in token.split("."):
        assert part not in text
    assert "p-secret" not in text


def test_counters_count_each_reason(keypair: KeyPair, clock: ManualClock, verifier) -> None:
    verifier.verify("nope")
    verifier.verify("nope")
    verifier.verify(sign_token(keypair.private_pem, make_claims(clock, aud="elsewhere")))
    verifier.verify(sign_token(keypair.private_pem, make_claims(clock)))
    assert verifier.rejections == {RejectReason.MALFORMED: 2, RejectReason.WRONG_AUDIENCE: 1}
    assert verifier.accepted == 1


def test_invalid_settings_are_refused(keypair: KeyPair, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="audience"):
        TokenVerifier(keypair.keys, "", clock)
    with pytest.raises(ValueError, match="leeway"):
        TokenVerifier(keypair.keys, STORE, clock, leeway_s=-1)


# ----- properties -----
KEYPAIR = new_keypair()
_texts = st.one_of(
    st.text(max_size=600),
    st.binary(max_size=600).map(lambda raw: raw.decode("latin-1")),
    st.lists(st.text(alphabet="ABCxyz019-_=", max_size=200), min_size=1, max_size=5).map(".".join),
)


def _fresh_verifier() -> TokenVerifier:
    return TokenVerifier(KEYPAIR.keys, STORE, ManualClock(), max_token_bytes=512)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_texts)
def test_arbitrary_text_never_raises_and_counts_once(text: str) -> None:
    verifier = _fresh_verifier()
    result = verifier.verify(text)
    assert isinstance(result, Rejection)
    assert verifier.rejections[result.reason] == 1
    assert sum(verifier.rejections.values()) == 1
    assert verifier.accepted == 0


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "b64", "x"]), _json_values, max_size=4
    ),
    payload=st.dictionaries(
        st.sampled_from(["sub", "exp", "jti", "aud", "iat", "nbf", "x"]), _json_values, max_size=7
    ),
    signature=st.binary(max_size=80),
)
def test_well_formed_segments_with_arbitrary_content_never_raise(header, payload, signature) -> None:
    verifier = _fresh_verifier()
    token = f"{b64(header)}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    result = verifier.verify(token)
    assert isinstance(result, Rejection)  # nobody but KEYPAIR can sign, and the signature is random
    assert verifier.rejections[result.reason] == 1  # counted once, under the reason it gave
    assert sum(verifier.rejections.values()) == 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.dictionaries(
        st.sampled_from(["sub", "exp", "jti", "aud", "iat", "nbf", "x"]),
        _json_values | st.sampled_from([STORE, "stores", 1_800_000_100, 1_800_000_000.5]),
        max_size=7,
    )
)
def test_arbitrary_signed_claims_never_raise_and_count_once(payload) -> None:
    verifier = _fresh_verifier()
    result = verifier.verify(sign_token(KEYPAIR.private_pem, payload))
    assert verifier.accepted + sum(verifier.rejections.values()) == 1
    if isinstance(result, VerifiedToken):
        assert result.claims == payload
        assert result.aud in (STORE, "stores")
    else:
        assert isinstance(result, Rejection)
        assert verifier.rejections[result.reason] == 1
