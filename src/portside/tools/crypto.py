"""Daptin-compatible secrets: AES-CFB for `encrypted` columns, bcrypt and md5 for password-like columns.

Encryption format (spec §9.3): ``base64url_with_padding(iv[16] || aes_cfb(key, iv, utf8(plaintext)))``.
CFB is full-block CFB (128-bit segments), the same as Go's ``cipher.NewCFBEncrypter``.

Key derivation: the key is the UTF-8 bytes of the secret when that is 16, 24 or 32 bytes long
(AES-128/192/256, exactly what Daptin does). Go's AES would refuse any other length; rather than fail,
Portside derives a 32-byte key with SHA-256 of the secret bytes. Values encrypted under such a secret are
therefore not readable by Daptin, which could not have produced them in the first place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

import bcrypt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 43 keeps CFB under "decrepit"; the old location is removed in 49
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

IV_SIZE = 16
AES_KEY_SIZES = (16, 24, 32)
BCRYPT_MAX_BYTES = 72
DEFAULT_ROUNDS = 11


def derive_key(secret: str) -> bytes:
    """AES key for a secret: its UTF-8 bytes if 16/24/32 long, else SHA-256 of them (32 bytes)."""
    raw = secret.encode("utf-8")
    if len(raw) in AES_KEY_SIZES:
        return raw
    return hashlib.sha256(raw).digest()


def encrypt(secret: str, plaintext: str) -> str:
    """Encrypt text with a fresh random IV; returns URL-safe base64 with padding."""
    iv = os.urandom(IV_SIZE)
    enc = Cipher(algorithms.AES(derive_key(secret)), CFB(iv)).encryptor()
    body = enc.update(plaintext.encode("utf-8")) + enc.finalize()
    return base64.urlsafe_b64encode(iv + body).decode("ascii")


def _b64decode(token: str) -> bytes:
    text = token.strip()
    # accept tokens whose padding was stripped in transit
    text += "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise ValueError("encrypted value is not valid base64") from exc


def decrypt(secret: str, token: str) -> str:
    """Inverse of encrypt(); ValueError when the token is malformed or does not decode to UTF-8 text."""
    if not isinstance(token, str):
        raise ValueError("encrypted value must be a string")
    raw = _b64decode(token)
    if len(raw) < IV_SIZE:
        raise ValueError("encrypted value is too short")
    iv, body = raw[:IV_SIZE], raw[IV_SIZE:]
    dec = Cipher(algorithms.AES(derive_key(secret)), CFB(iv)).decryptor()
    plain = dec.update(body) + dec.finalize()
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("encrypted value did not decrypt to text (wrong secret?)") from exc


def hash_password(plain: str, rounds: int = DEFAULT_ROUNDS) -> str:
    """bcrypt hash (``$2b$`` prefix; Daptin's ``$2a$`` hashes verify the same way).

    Raises ValueError when the password is longer than 72 bytes: bcrypt ignores everything after that, and
    silently truncating would let different passwords collide (Go's bcrypt refuses them too).
    """
    raw = plain.encode("utf-8")
    if len(raw) > BCRYPT_MAX_BYTES:
        raise ValueError(f"password longer than {BCRYPT_MAX_BYTES} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds)).decode("ascii")


def check_password(plain: str, hashed: str) -> bool:
    """True when `plain` matches the bcrypt hash; False for mismatches and for malformed hashes."""
    if not isinstance(plain, str) or not isinstance(hashed, str) or not hashed:
        return False
    try:
        raw = plain.encode("utf-8")
        if len(raw) > BCRYPT_MAX_BYTES:
            return False
        return bcrypt.checkpw(raw, hashed.encode("utf-8"))
    except (ValueError, TypeError, UnicodeEncodeError):
        return False


def md5_hex(s: str) -> str:
    """Lower-case hex md5 of the UTF-8 bytes (not for security: Daptin's `md5` column type)."""
    return hashlib.md5(s.encode("utf-8"), usedforsecurity=False).hexdigest()


__all__ = ["check_password", "decrypt", "derive_key", "encrypt", "hash_password", "md5_hex"]
