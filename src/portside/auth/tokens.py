"""JWT (HS256) with Daptin's claims."""

from __future__ import annotations

import time
from typing import Any

import jwt

from portside.errors import Kind, Unauthorized
from portside.tools.ids import uuid7_str

MIN_SECRET_CHARS = 16  # an empty or short HS256 key would let anyone forge tokens


def _usable(secret: str) -> str:
    if len(secret) < MIN_SECRET_CHARS:
        raise Unauthorized("tokens are disabled: the signing secret is missing or too short")
    return secret


def issue(*, secret: str, issuer: str, life_hours: int, ref: str, email: str, name: str, auth_version: int) -> str:
    _usable(secret)
    now = int(time.time())
    claims = {
        "email": email,
        "name": name,
        "sub": ref,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + life_hours * 3600,
        "jti": uuid7_str(),
        "auth_version": auth_version,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


_verified: dict[tuple[str, str, str], dict[str, Any]] = {}
MAX_VERIFIED = 10_000


def decode(token: str, *, secret: str, issuer: str) -> dict[str, Any]:
    """Verified claims, or Unauthorized naming what is wrong (never the secret).

    A token whose signature was verified before is not verified again; its time claims always are.
    """
    if len(token) > 4096:
        raise Unauthorized("token too long")
    _usable(secret)
    key = (token, secret, issuer)
    known = _verified.get(key)
    if known is not None:
        now = time.time()
        if now > known["exp"] + LEEWAY:
            _verified.pop(key, None)
            raise Unauthorized("token expired", kind=Kind.TOKEN_EXPIRED)
        return known
    claims = _verify(token, secret, issuer)
    if len(_verified) >= MAX_VERIFIED:
        _verified.clear()
    _verified[key] = claims
    return claims


LEEWAY = 5


def _verify(token: str, secret: str, issuer: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "iss"]},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", kind=Kind.TOKEN_EXPIRED) from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"invalid token: {type(exc).__name__}") from None
    return claims
