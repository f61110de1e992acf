"""Certificates as data: host-name checks, self-signed generation, PEM parsing and TLS contexts.

Pure functions (no database, no event loop); the service in `certs.service` decides when to call them.

Self-signed certificates are leaf certificates (CA:false, unlike Daptin's CA=true): EC P-256, valid
for SELF_SIGNED_DAYS, subject CN and one SAN for the host name (an IP SAN for an IPv4 literal),
serverAuth only. Private keys are written as PKCS#8; PKCS#1, SEC1 and Daptin's PKCS#1-labelled-as-PKCS#8
keys are all read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import re
import secrets
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from portside.core.validation import HOSTNAME_RE

SELF_SIGNED_DAYS = 90
MAX_PEM_CHARS = 64 * 1024  # a chain of a few certificates; anything bigger is not a certificate row
# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are all strong and stay OpenSSL's default)
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS:!RSA+AES:!3DES"
_PEM_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")


class CertError(ValueError):
    """A certificate, key or host name that cannot be used."""


@dataclass(frozen=True)
class Material:
    """A usable certificate: leaf PEM, issuer chain PEM (may be empty), private key PEM (PKCS#8)."""

    hostname: str
    cert_pem: str
    chain_pem: str
    key_pem: str

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode("ascii"))

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc


def normalize_hostname(raw: object) -> str:
    """The canonical (lower-case ASCII) form of a certificate host name, or CertError.

    One name per row, exact match (no wildcards): RFC 1123 labels, or an IPv4 literal. Paths, look-alike
    Unicode, spaces, wildcards, ports and empty labels are refused.
    """
    if not isinstance(raw, str):
        raise CertError("hostname must be text")
    name = raw.strip().lower()
    if not name or len(name) > 100 or not HOSTNAME_RE.fullmatch(name):
        raise CertError("hostname must be a host name of at most 100 letters, digits, hyphens and dots")
    return name


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def self_signed(hostname: str, days: int = SELF_SIGNED_DAYS) -> Material:
    """A fresh self-signed leaf for `hostname` (already normalized)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, hostname), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portside")]
    )
    san: x509.GeneralName = (
        x509.IPAddress(ipaddress.ip_address(hostname)) if _is_ip(hostname) else x509.DNSName(hostname)
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return Material(hostname, cert_pem, cert_pem, key_to_pem(key))


def new_key() -> rsa.RSAPrivateKey:
    """Key for an ACME-issued certificate (RSA 2048: accepted by every CA and client)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_to_pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def load_key(pem: str) -> CertificateIssuerPrivateKeyTypes:
    """Read a PEM private key: PKCS#8, PKCS#1, SEC1, and Daptin's PKCS#1 body under a PKCS#8 label."""
    if not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS:
        raise CertError("private key missing or too large")
    raw = pem.encode("ascii", "replace")
    key: PrivateKeyTypes
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError):
        body = re.sub(r"-----[A-Z ]+-----|\s", "", pem)
        try:
            key = serialization.load_der_private_key(base64.b64decode(body, validate=True), password=None)
        except (ValueError, TypeError, binascii.Error):
            raise CertError("private key is not a readable PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertError("private key must be RSA or EC")
    return key


def public_key_pem(cert_pem: str) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    return (
        cert.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def split_chain(pem: str) -> list[str]:
    """The PEM CERTIFICATE blocks of `pem`, in order, each re-encoded (nothing else passes through)."""
    if not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS:
        raise CertError("certificate missing or too large")
    out: list[str] = []
    for block in _PEM_CERT_RE.findall(pem):
        try:
            cert = x509.load_pem_x509_certificate(block.encode("ascii"))
        except ValueError:
            raise CertError("certificate PEM is not a readable certificate") from None
        out.append(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return out


def material(hostname: str, cert_pem: str, chain_pem: str, key_pem: str) -> Material:
    """Check a stored row: a readable leaf, a readable key that belongs to it; chain copies of the leaf
    (self-signed rows keep the leaf as their `root_certificate`) are dropped."""
    leaf = split_chain(cert_pem)
    if not leaf:
        raise CertError("no certificate")
    chain = [c for c in split_chain(chain_pem or "") if c not in leaf]
    key = load_key(key_pem)
    cert = x509.load_pem_x509_certificate(leaf[0].encode("ascii"))
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, pub) != key.public_key().public_bytes(der, pub):
        raise CertError("private key does not belong to the certificate")
    return Material(hostname, leaf[0], "".join(leaf[1:] + chain), key_to_pem(key))


def fingerprint(cert_pem: str) -> str:
    return hashlib.sha256(cert_pem.encode("ascii", "replace")).hexdigest()


def needs_renewal(not_after: dt.datetime, now: dt.datetime, renew_before_days: int) -> bool:
    """Renew when fewer than `renew_before_days` remain (or the certificate already expired)."""
    return not_after - now < dt.timedelta(days=max(0, renew_before_days))


def base_context() -> ssl.SSLContext:
    """Server context with the TLS policy: TLS 1.2 minimum, forward-secret AEAD suites, no compression."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def context_for(m: Material) -> ssl.SSLContext:
    """A server context holding `m`. `load_cert_chain` reads files only: the key goes to a private
    temporary file encrypted under a one-time password, and the file is removed at once."""
    ctx = base_context()
    password = secrets.token_bytes(32)
    key = load_key(m.key_pem)
    enc = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(password)
    )
    fd, path = tempfile.mkstemp(prefix="portside-tls-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write((m.cert_pem + m.chain_pem).encode("ascii") + enc)
        try:
            ctx.load_cert_chain(path, path, password=password)
        except ssl.SSLError as exc:
            raise CertError(f"certificate and key cannot be used for TLS: {exc.reason}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return ctx
