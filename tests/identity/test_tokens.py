import base64
import json
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import ManualClock
from edge.identity import (
    Rejection,
    RejectReason,
    TokenVerifier,
    VerifiedToken,
    generate_keypair,
    key_id,
    load_public_keys,
    sign_token,
)
from edge.identity.keys import KeyLoadError, parse_public_key

STORE = "store-7"


@pytest.fixture
def keys(tmp_path):
    private_pem, public_pem = generate_keypair()
    path = tmp_path / "pub.pem"
    path.write_bytes(public_pem)
    return private_pem, public_pem, load_public_keys([path], None)


@pytest.fixture
def clock():
    return ManualClock(wall=1_800_000_000.0)


def claims(clock, **overrides):
    now = int(clock.wall())
    base = {"sub": "p-1", "aud": STORE, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def verifier(keys, clock, **kwargs):
    return TokenVerifier(keys[2], STORE, clock, leeway_s=30, max_lifetime_s=900, **kwargs)


def reason(result):
    assert isinstance(result, Rejection), result
    return result.reason


def test_valid_token(keys, clock) -> None:
    v = verifier(keys, clock)
    result = v.verify(sign_token(keys[0], claims(clock, sub="p-42")))
    assert isinstance(result, VerifiedToken)
    assert result.sub == "p-42"
    assert result.aud == (STORE,)
    assert v.accepted == 1
    assert not v.rejections


def test_any_store_audience_and_lists(keys, clock) -> None:
    v = verifier(keys, clock)
    assert isinstance(v.verify(sign_token(keys[0], claims(clock, aud="stores"))), VerifiedToken)
    assert isinstance(v.verify(sign_token(keys[0], claims(clock, aud=["other", STORE]))), VerifiedToken)
    assert (
        reason(v.verify(sign_token(keys[0], claims(clock, aud=["other", "x"]))))
        is RejectReason.WRONG_AUDIENCE
    )


def test_expiry_uses_the_injected_clock_with_leeway(keys, clock) -> None:
    v = verifier(keys, clock)
    token = sign_token(keys[0], claims(clock))
    clock.advance(300 + 29)
    assert isinstance(v.verify(token), VerifiedToken)
    clock.advance(1)
    assert reason(v.verify(token)) is RejectReason.EXPIRED


def test_not_yet_valid(keys, clock) -> None:
    v = verifier(keys, clock)
    now = int(clock.wall())
    assert reason(v.verify(sign_token(keys[0], claims(clock, nbf=now + 120)))) is RejectReason.NOT_YET_VALID
    assert reason(v.verify(sign_token(keys[0], claims(clock, iat=now + 120)))) is RejectReason.NOT_YET_VALID


def test_forged_and_algorithm_confusion(keys, clock) -> None:
    v = verifier(keys, clock)
    other_private, _ = generate_keypair()
    assert reason(v.verify(sign_token(other_private, claims(clock)))) is RejectReason.BAD_SIGNATURE
    unsigned = jwt.encode(claims(clock), None, algorithm="none")
    assert reason(v.verify(unsigned)) is RejectReason.BAD_SIGNATURE
    # HS256 keyed with the public key's bytes: the classic confusion attack
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims(clock)).encode()).rstrip(b"=")
    import hashlib
    import hmac

    signing_input = header + b"." + payload
    mac = base64.urlsafe_b64encode(hmac.new(keys[1], signing_input, hashlib.sha256).digest()).rstrip(b"=")
    assert reason(v.verify((signing_input + b"." + mac).decode())) is RejectReason.BAD_SIGNATURE


def test_tampered_payload(keys, clock) -> None:
    v = verifier(keys, clock)
    head, _, sig = sign_token(keys[0], claims(clock, sub="p-1")).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(claims(clock, sub="p-admin")).encode()).rstrip(b"=").decode()
    assert reason(v.verify(f"{head}.{forged}.{sig}")) is RejectReason.BAD_SIGNATURE


def test_kid_selects_the_key(keys, clock) -> None:
    v = verifier(keys, clock)
    kid = next(iter(keys[2]))
    assert kid == key_id(parse_public_key(keys[1], "t"))
    assert isinstance(v.verify(sign_token(keys[0], claims(clock), kid=kid)), VerifiedToken)
    assert reason(v.verify(sign_token(keys[0], claims(clock), kid="nope"))) is RejectReason.UNKNOWN_KEY


@pytest.mark.parametrize("missing", ["sub", "exp", "jti", "aud"])
def test_missing_claims(keys, clock, missing) -> None:
    v = verifier(keys, clock)
    assert (
        reason(v.verify(sign_token(keys[0], claims(clock, **{missing: None})))) is RejectReason.MISSING_CLAIM
    )


def test_lifetime_size_and_claim_types(keys, clock) -> None:
    v = verifier(keys, clock)
    now = int(clock.wall())
    assert reason(v.verify(sign_token(keys[0], claims(clock, exp=now + 7200)))) is RejectReason.TOO_LONG_LIVED
    assert reason(v.verify(sign_token(keys[0], claims(clock, sub="x" * 200)))) is RejectReason.MALFORMED
    assert reason(v.verify(sign_token(keys[0], claims(clock, exp="soon")))) is RejectReason.MALFORMED
    assert reason(v.verify(sign_token(keys[0], claims(clock, jti=7)))) is RejectReason.MALFORMED
    assert reason(v.verify("a" * 5000)) is RejectReason.OVERSIZED
    assert reason(v.verify(None)) is RejectReason.MALFORMED
    assert v.accepted == 0
    assert sum(v.rejections.values()) == 6


def test_key_loading_errors(tmp_path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyLoadError, match="bad.pem: not a PEM public key"):
        load_public_keys([bad], None)
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    bad.write_bytes(ec_pem)
    with pytest.raises(KeyLoadError, match="not an Ed25519 key"):
        load_public_keys([bad], None)
    with pytest.raises(KeyLoadError, match="cannot read"):
        load_public_keys([tmp_path / "missing.pem"], None)
    with pytest.raises(KeyLoadError, match="TOKEN_KEY is not set"):
        load_public_keys([], "TOKEN_KEY", environ={})
    _, public_pem = generate_keypair()
    assert len(load_public_keys([], "TOKEN_KEY", environ={"TOKEN_KEY": public_pem.decode()})) == 1


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=600), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_arbitrary_strings_never_raise_and_count_once(text) -> None:
    private_pem, public_pem = KEYPAIR
    v = TokenVerifier({"k": parse_public_key(public_pem, "t")}, STORE, ManualClock())
    result = v.verify(text)
    assert isinstance(result, Rejection)
    assert sum(v.rejections.values()) == 1


@given(
    st.dictionaries(
        st.sampled_from(["sub", "exp", "jti", "aud", "iat", "nbf", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=10),
            st.lists(st.text(max_size=5), max_size=3),
        ),
    )
)
def test_arbitrary_signed_claims_never_raise(body) -> None:
    private_pem, public_pem = KEYPAIR
    v = TokenVerifier({"k": parse_public_key(public_pem, "t")}, STORE, ManualClock())
    try:
        token = sign_token(private_pem, body)
    except (TypeError, ValueError):
        return  # not even encodable as JSON (nan etc.): nothing to verify
    v.verify(token)
    assert v.accepted + sum(v.rejections.values()) == 1


KEYPAIR = generate_keypair()
