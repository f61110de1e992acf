"""The verified-token cache of auth/tokens.py: a token's signature is checked once, its time claims on every
use, and the cache forgets a token once it has expired; a token is cached per secret and issuer."""

from __future__ import annotations

import time

import jwt
import pytest

from portside.auth import tokens
from portside.errors import Kind, Unauthorized

SECRET = "0123456789abcdef0123456789abcdef"


def _token(exp_in: float, secret: str = SECRET) -> str:
    now = int(time.time())
    claims = {"sub": "u1", "iss": "portside", "iat": now, "nbf": now, "exp": now + exp_in, "auth_version": 1}
    return jwt.encode(claims, secret, algorithm="HS256")


def test_a_cached_token_is_forgotten_once_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token(60)
    assert tokens.decode(token, secret=SECRET, issuer="portside")["sub"] == "u1"
    assert (token, SECRET, "portside") in tokens._verified  # verified once, then served from the cache
    verify_calls: list[str] = []
    real_verify = tokens._verify
    monkeypatch.setattr(tokens, "_verify", lambda *a: verify_calls.append("x") or real_verify(*a))
    assert tokens.decode(token, secret=SECRET, issuer="portside")["sub"] == "u1"
    assert verify_calls == []
    later = time.time() + 60 + tokens.LEEWAY + 1
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(Unauthorized) as caught:
        tokens.decode(token, secret=SECRET, issuer="portside")
    assert caught.value.kind is Kind.TOKEN_EXPIRED
    assert (token, SECRET, "portside") not in tokens._verified


def test_a_token_is_cached_per_secret_and_issuer() -> None:
    token = _token(60)
    assert tokens.decode(token, secret=SECRET, issuer="portside")["sub"] == "u1"
    with pytest.raises(Unauthorized):  # the signing secret changed: the cached verification does not count
        tokens.decode(token, secret="another-secret-of-32-characters!", issuer="portside")
    with pytest.raises(Unauthorized):
        tokens.decode(token, secret=SECRET, issuer="somebody-else")
    with pytest.raises(Unauthorized):
        tokens.decode(_token(60, secret="another-secret-of-32-characters!"), secret=SECRET, issuer="portside")
