"""Verifying a configuration push, the pure part: every kind of bad push gets its reason; merge rules."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.control.desired import DesiredConfig, PushReason, PushRejected, merge, verify_push
from edge.identity.keys import generate_keypair, key_id, parse_public_keys, sign_token

STORE = "s1"
MAX = 65_536
PRIVATE, PUBLIC = generate_keypair()
KEYS = dict(parse_public_keys(PUBLIC.decode(), "test"))
OTHER_PRIVATE, _ = generate_keypair()


def _push(claims: dict, key: bytes = PRIVATE, kid: str | None = None) -> bytes:
    return sign_token(key, claims, kid=kid).encode()


def _verify(payload: bytes) -> DesiredConfig | PushRejected:
    return verify_push(payload, KEYS, STORE, max_bytes=MAX)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_good_push() -> None:
    result = _verify(_push({"aud": STORE, "version": 3, "config": {"logging": {"level": "DEBUG"}}, "iat": 1}))
    assert result == DesiredConfig(3, {"logging": {"level": "DEBUG"}}, 1.0)


def test_a_fleet_push_names_several_stores_and_a_known_kid_is_used() -> None:
    kid = key_id(load_pem_public_key(PUBLIC))  # type: ignore[arg-type]
    result = _verify(_push({"aud": ["s0", STORE], "version": 1, "config": {}}, kid=kid))
    assert isinstance(result, DesiredConfig)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (MAX + 1), PushReason.TOO_LARGE),
        ("é.é.é".encode(), PushReason.NOT_TEXT),
        (b"\xff\xfe", PushReason.NOT_TEXT),
        (b"", PushReason.MALFORMED),
        (b"not a jws", PushReason.MALFORMED),
        (b"a.b", PushReason.MALFORMED),
        (b"a.b.c.d", PushReason.MALFORMED),
        (b"!!!.???.***", PushReason.MALFORMED),
        (f"{_b64(b'[1]')}.{_b64(b'{}')}.".encode(), PushReason.MALFORMED),
    ],
)
def test_what_is_not_a_jws(payload: bytes, reason: PushReason) -> None:
    result = _verify(payload)
    assert isinstance(result, PushRejected) and result.reason is reason, result


def test_unsigned_and_other_algorithms_are_refused() -> None:
    claims = {"aud": STORE, "version": 1, "config": {}}
    unsigned = jwt.encode(claims, None, algorithm="none").encode()
    hmac = jwt.encode(claims, "k" * 32, algorithm="HS256").encode()
    for payload in (unsigned, hmac):
        result = _verify(payload)
        assert isinstance(result, PushRejected) and result.reason is PushReason.BAD_ALGORITHM


def test_signatures() -> None:
    good = _push({"aud": STORE, "version": 1, "config": {}}).decode()
    header, body, signature = good.split(".")
    evil_body = _b64(
        json.dumps({"aud": STORE, "version": 99, "config": {"logging": {"level": "DEBUG"}}}).encode()
    )
    cases = {
        "other key": _push({"aud": STORE, "version": 1, "config": {}}, key=OTHER_PRIVATE),
        "body swapped": f"{header}.{evil_body}.{signature}".encode(),
        "signature cut": f"{header}.{body}.".encode(),
        "signature flipped": f"{header}.{body}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}".encode(),
    }
    for name, payload in cases.items():
        result = _verify(payload)
        assert isinstance(result, PushRejected) and result.reason is PushReason.BAD_SIGNATURE, name
    unknown = _verify(_push({"aud": STORE, "version": 1, "config": {}}, kid="someone-else"))
    assert isinstance(unknown, PushRejected) and unknown.reason is PushReason.UNKNOWN_KEY


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "s2", "version": 1, "config": {}}, PushReason.WRONG_STORE),
        ({"aud": ["s2", "s3"], "version": 1, "config": {}}, PushReason.WRONG_STORE),
        ({"version": 1, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": 1}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": 0, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": -4, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": "7", "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": 1.5, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": True, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": 2**64, "config": {}}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": 1, "config": []}, PushReason.BAD_CLAIMS),
        ({"aud": STORE, "version": 1, "config": "zones=[]"}, PushReason.BAD_CLAIMS),
        (
            {
                "aud": STORE,
                "version": 1,
                "config": {
                    "a": {
                        "b": {
                            "c": {
                                "d": {
                                    "e": {
                                        "f": {
                                            "g": {
                                                "h": {
                                                    "i": {
                                                        "j": {
                                                            "k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            },
            PushReason.BAD_CLAIMS,
        ),
    ],
)
def test_claims(claims: dict, reason: PushReason) -> None:
    result = _verify(_push(claims))
    assert isinstance(result, PushRejected) and result.reason is reason, result


def test_expiry_is_honoured_when_the_cloud_sets_one() -> None:
    result = _verify(_push({"aud": STORE, "version": 1, "config": {}, "exp": 1}))
    assert isinstance(result, PushRejected) and result.reason is PushReason.MALFORMED


UNSIGNED_REASONS = {
    PushReason.TOO_LARGE,
    PushReason.NOT_TEXT,
    PushReason.MALFORMED,
    PushReason.BAD_ALGORITHM,
    PushReason.UNKNOWN_KEY,
    PushReason.BAD_SIGNATURE,
}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_are_refused_never_raised(payload: bytes) -> None:
    result = _verify(payload)
    assert isinstance(result, PushRejected)
    # refused before anything in it is believed: a reason about the claims needs a valid signature first
    assert result.reason in UNSIGNED_REASONS, result


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=30,
    ),
    st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=False)),
)
def test_any_signed_claims_give_a_verdict_never_an_exception(config: object, version: object) -> None:
    result = _verify(_push({"aud": STORE, "version": version, "config": config}))
    if isinstance(result, DesiredConfig):
        assert isinstance(result.overlay, dict) and isinstance(version, int) and version >= 1
    else:
        # What an overlay may contain is the allow-list's (tests/config/test_push_rules.py), not the envelope's.
        assert result.reason is PushReason.BAD_CLAIMS


def test_merge_tables_key_by_key_and_replace_everything_else() -> None:
    base = {
        "mqtt": {"host": "a", "port": 1},
        "zones": [{"id": "x"}, {"id": "y"}],
        "health": {"interval_s": 5},
    }
    overlay = {"mqtt": {"port": 2}, "zones": [{"id": "z"}], "logging": {"level": "DEBUG"}}
    merged = merge(base, overlay)
    assert merged == {
        "mqtt": {"host": "a", "port": 2},
        "zones": [{"id": "z"}],
        "health": {"interval_s": 5},
        "logging": {"level": "DEBUG"},
    }
    assert base["mqtt"] == {"host": "a", "port": 1}  # copies: the base is never changed
