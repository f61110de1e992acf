from __future__ import annotations

import base64
import contextlib
import hashlib
import os

import bcrypt
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from portside.tools import crypto

SECRET32 = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("secret", [SECRET32, "0123456789abcdef", "x" * 24, "short", "ünïcødé secret", ""])
@pytest.mark.parametrize("plain", ["hello", "", "ünïcødé ✓", "x" * 1000])
def test_encrypt_round_trip(secret: str, plain: str) -> None:
    token = crypto.encrypt(secret, plain)
    assert crypto.decrypt(secret, token) == plain


def test_token_is_urlsafe_base64_with_padding_and_iv_prefix() -> None:
    token = crypto.encrypt(SECRET32, "hello world!")
    assert len(token) % 4 == 0
    assert "+" not in token and "/" not in token
    raw = base64.urlsafe_b64decode(token)
    assert len(raw) == 16 + len(b"hello world!")


def test_fresh_iv_every_time() -> None:
    assert crypto.encrypt(SECRET32, "same") != crypto.encrypt(SECRET32, "same")


def test_full_block_cfb_matches_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    iv = bytes(range(16))
    monkeypatch.setattr(os, "urandom", lambda n: iv)
    plain = b"0123456789abcdefXYZ"  # one full block + 3 bytes
    raw = base64.urlsafe_b64decode(crypto.encrypt(SECRET32, plain.decode()))
    assert raw[:16] == iv
    # CFB-128: C1 = P1 xor E(K, IV); C2 = P2 xor E(K, C1) -- built from raw AES-ECB, not the CFB mode
    ecb = Cipher(algorithms.AES(SECRET32.encode()), modes.ECB()).encryptor()
    k1 = ecb.update(iv)
    c1 = bytes(a ^ b for a, b in zip(plain[:16], k1, strict=True))
    k2 = ecb.update(c1)
    c2 = bytes(a ^ b for a, b in zip(plain[16:], k2[:3], strict=True))
    assert raw[16:] == c1 + c2


def test_key_derivation() -> None:
    assert crypto.derive_key(SECRET32) == SECRET32.encode()
    assert crypto.derive_key("0123456789abcdef") == b"0123456789abcdef"
    assert crypto.derive_key("short") == hashlib.sha256(b"short").digest()


def test_decrypt_accepts_unpadded_token() -> None:
    token = crypto.encrypt(SECRET32, "abcd")
    assert crypto.decrypt(SECRET32, token.rstrip("=")) == "abcd"


@pytest.mark.parametrize("garbage", ["not base64 !!!", "AAAA", "", "ü", "%%%%"])
def test_decrypt_garbage_raises_value_error(garbage: str) -> None:
    with pytest.raises(ValueError):
        crypto.decrypt(SECRET32, garbage)


def test_decrypt_with_wrong_secret_does_not_return_plaintext() -> None:
    token = crypto.encrypt(SECRET32, "top secret value")
    with contextlib.suppress(ValueError):
        assert crypto.decrypt("another secret that is 32 bytes!", token) != "top secret value"


def test_password_hash_and_check() -> None:
    hashed = crypto.hash_password("s3cret!", rounds=4)
    assert hashed.startswith("$2b$04$")
    assert crypto.check_password("s3cret!", hashed)
    assert not crypto.check_password("s3cret", hashed)
    assert not crypto.check_password("", hashed)


def test_default_cost_is_11() -> None:
    assert crypto.hash_password("pw").startswith("$2b$11$")


def test_check_accepts_daptin_2a_hashes() -> None:
    hashed = bcrypt.hashpw(b"daptin", bcrypt.gensalt(4, prefix=b"2a")).decode()
    assert hashed.startswith("$2a$")
    assert crypto.check_password("daptin", hashed)
    assert not crypto.check_password("other", hashed)


@pytest.mark.parametrize("bad", ["", "garbage", "$2b$04$short", "$2b$99$" + "a" * 53, "ü" * 60])
def test_check_never_raises_on_malformed_hash(bad: str) -> None:
    assert crypto.check_password("pw", bad) is False


def test_check_rejects_non_strings_and_overlong() -> None:
    hashed = crypto.hash_password("pw", rounds=4)
    assert crypto.check_password(None, hashed) is False  # type: ignore[arg-type]
    assert crypto.check_password("pw", None) is False  # type: ignore[arg-type]
    assert crypto.check_password("p" * 100, hashed) is False


def test_hash_password_refuses_more_than_72_bytes() -> None:
    with pytest.raises(ValueError, match="72 bytes"):
        crypto.hash_password("é" * 40, rounds=4)


def test_md5_hex() -> None:
    assert crypto.md5_hex("abc") == "900150983cd24fb0d6963f7d28e17f72"
    assert crypto.md5_hex("") == "d41d8cd98f00b204e9800998ecf8427e"
