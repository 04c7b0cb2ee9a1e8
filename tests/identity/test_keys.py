"""Public key loading: kids derived or given, several keys per source, and errors that name only the source."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edge.identity import KeyLoadError, generate_keypair, key_id, load_public_keys, sign_token
from tests.identity.conftest import new_keypair


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_a_file_key_gets_the_derived_kid(tmp_path: Path) -> None:
    pair = new_keypair()
    keys = load_public_keys([write(tmp_path / "cloud.pem", pair.public_pem)], None)
    assert list(keys) == [pair.kid]
    assert len(pair.kid) == 16
    assert keys[pair.kid] == pair.public_key


def test_several_keys_and_given_kids(tmp_path: Path) -> None:
    first, second, third = new_keypair(), new_keypair(), new_keypair()
    text = (
        "# rotated 2026-11\nkid: cloud-2026-11\n"
        + first.public_pem.decode()
        + "\n"
        + second.public_pem.decode()  # no kid line of its own: derived
        + "kid = cloud-2026-12\n"
        + third.public_pem.decode()
    )
    keys = load_public_keys([write(tmp_path / "keys.pem", text)], None)
    assert keys == {
        "cloud-2026-11": first.public_key,
        second.kid: second.public_key,
        "cloud-2026-12": third.public_key,
    }


def test_env_var_and_files_together(tmp_path: Path) -> None:
    from_file, from_env = new_keypair(), new_keypair()
    keys = load_public_keys(
        [write(tmp_path / "a.pem", from_file.public_pem)],
        "TOKEN_KEY",
        environ={"TOKEN_KEY": from_env.public_pem.decode()},
    )
    assert keys == {from_file.kid: from_file.public_key, from_env.kid: from_env.public_key}


def test_the_real_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = new_keypair()
    monkeypatch.setenv("EDGE_TEST_TOKEN_KEY", pair.public_pem.decode())
    assert load_public_keys([], "EDGE_TEST_TOKEN_KEY") == pair.keys


def test_the_same_key_twice_is_one_key(tmp_path: Path) -> None:
    pair = new_keypair()
    files = [write(tmp_path / "a.pem", pair.public_pem), write(tmp_path / "b.pem", pair.public_pem)]
    assert load_public_keys(files, None) == pair.keys


def test_one_kid_for_two_keys_is_refused(tmp_path: Path) -> None:
    first, second = new_keypair(), new_keypair()
    text = f"kid: k1\n{first.public_pem.decode()}kid: k1\n{second.public_pem.decode()}"
    with pytest.raises(KeyLoadError, match="kid k1 is already used"):
        load_public_keys([write(tmp_path / "keys.pem", text)], None)


def _ec_public_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


SECRET_LOOKING = "c2VjcmV0LWtleS1tYXRlcmlhbA"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            f"-----BEGIN PUBLIC KEY-----\n{SECRET_LOOKING}\n-----END PUBLIC KEY-----\n",
            "not a valid PEM public key",
        ),
        (_ec_public_pem(), "not Ed25519"),
        (generate_keypair()[0], "is a private key"),
        ("just some text\n", "no -----BEGIN PUBLIC KEY----- block"),
        ("", "no -----BEGIN PUBLIC KEY----- block"),
        (b"\xff\xfe-----BEGIN PUBLIC KEY-----", "not PEM text"),
        (b"x" * (64 * 1024 + 1), "too large"),
    ],
)
def test_bad_files_name_the_file_never_the_content(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = write(tmp_path / "cloud-token.pem", content)
    with pytest.raises(KeyLoadError, match=message) as caught:
        load_public_keys([path], None)
    assert "cloud-token.pem" in str(caught.value)
    assert SECRET_LOOKING not in str(caught.value)
    assert "PRIVATE KEY-----" not in str(caught.value)
    # No chained parser error either: its message could quote the input.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_missing_file_and_unset_variable(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match=r"missing\.pem: cannot read"):
        load_public_keys([tmp_path / "missing.pem"], None)
    with pytest.raises(KeyLoadError, match=r"\$TOKEN_KEY: environment variable is not set"):
        load_public_keys([], "TOKEN_KEY", environ={})
    with pytest.raises(KeyLoadError, match=r"\$TOKEN_KEY: no -----BEGIN"):
        load_public_keys([], "TOKEN_KEY", environ={"TOKEN_KEY": "garbage"})


def test_no_source_at_all_is_refused() -> None:
    with pytest.raises(KeyLoadError, match="no token public key configured"):
        load_public_keys([], None)


def test_sign_token_needs_an_ed25519_private_key() -> None:
    pair = new_keypair()
    with pytest.raises(KeyLoadError, match="not an unencrypted PEM private key"):
        sign_token(pair.public_pem, {"sub": "p"})
    ec_private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyLoadError, match="not Ed25519"):
        sign_token(ec_private, {"sub": "p"})


def test_key_id_is_stable_over_encodings() -> None:
    pair = new_keypair()
    der = pair.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    reloaded = serialization.load_der_public_key(der)
    assert key_id(reloaded) == pair.kid  # type: ignore[arg-type]
