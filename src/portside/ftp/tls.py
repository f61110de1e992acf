"""pyOpenSSL contexts for FTPS, from the certificate service's material, chosen by SNI.

pyftpdlib speaks TLS through pyOpenSSL, so the stdlib contexts of `CertificateService.server_context()`
cannot be handed over; the same certificates (the rows, kept current by the service) are loaded into
pyOpenSSL contexts here instead, rebuilt whenever the service's material for a name changes. Every context
shares one session id context and keeps a server session cache, so a client may resume the control
connection's TLS session on its data connections (what vsftpd's `require_ssl_reuse` clients do).
"""

from __future__ import annotations

import threading

from cryptography import x509
from OpenSSL import SSL

from portside.certs import x509 as certx
from portside.certs.service import CertificateService

SESSION_ID = b"portside-ftp"


def _context(m: certx.Material) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.set_cipher_list(certx.TLS12_CIPHERS.encode())
    ctx.use_certificate(m.leaf)  # type: ignore[arg-type]  # the stubs predate cryptography objects
    for cert in x509.load_pem_x509_certificates(m.chain_pem.encode()) if m.chain_pem.strip() else ():
        if cert != m.leaf:
            ctx.add_extra_chain_cert(cert)  # type: ignore[arg-type]
    ctx.use_privatekey(certx.load_key(m.key_pem))  # type: ignore[arg-type]
    ctx.check_privatekey()
    ctx.set_session_id(SESSION_ID)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    return ctx


class FtpTls:
    """The FTPS context: the certificate of `hostname` by default, another row's when SNI names it."""

    def __init__(self, certs: CertificateService, hostname: str):
        self.certs, self.hostname = certs, hostname
        self._built: dict[str, tuple[certx.Material, SSL.Context]] = {}
        self._lock = threading.Lock()

    def context_for(self, name: str) -> SSL.Context | None:
        m = self.certs.material(name)
        if m is None:
            return None
        with self._lock:
            built = self._built.get(name)
            if built is None or built[0] is not m:
                ctx = _context(m)
                ctx.set_tlsext_servername_callback(self._sni)  # before first use: pyOpenSSL freezes it then
                built = (m, ctx)
                self._built[name] = built
            return built[1]

    def context(self) -> SSL.Context:
        """The context a connection starts with (raises LookupError without a certificate)."""
        base = self.context_for(self.hostname)
        if base is None:
            raise LookupError(f"no certificate for {self.hostname}")
        return base

    def _sni(self, conn: SSL.Connection) -> None:
        raw = conn.get_servername()
        name = raw.decode("ascii", "replace").lower().rstrip(".") if raw else ""
        chosen = self.context_for(name) if name and name != self.hostname else None
        if chosen is not None:
            conn.set_context(chosen)
