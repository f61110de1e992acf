"""ACME (RFC 8555) issuance with HTTP-01, on certbot's `acme` library, run in a worker thread.

`issue()` blocks (network round trips and polling): callers run it with `asyncio.to_thread`. The
HTTP-01 key authorizations it publishes go through a `Publisher` to the challenge store in the database
(`challenge_store.py`), which every node's HTTP edge serves at `/.well-known/acme-challenge/{token}`: each
is committed before the CA is told to validate, and removed when the order ends, whatever its outcome.
TLS to the CA is always verified: against the system store, or `ca_file` (a test CA such as Pebble's).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from portside import log
from portside.certs import x509 as certx

logger = log.get("certs")

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
ORDER_TIMEOUT = 90  # seconds for validation + finalization
STORE_TIMEOUT = 30  # seconds for one write of the challenge store


class AcmeError(Exception):
    """The CA refused or the order could not be completed (message safe to show an administrator)."""


class ChallengeStore(Protocol):
    async def put(self, token: str, key_authorization: str) -> None: ...

    async def drop(self, token: str) -> None: ...


class Publisher:
    """The challenge store as the blocking worker thread uses it: each call runs on the event loop and is
    waited for, so a challenge is committed before the CA hears of it."""

    def __init__(self, store: ChallengeStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop

    def _run(self, coro: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            future.result(STORE_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise

    def put(self, token: str, validation: str) -> None:
        try:
            self._run(self.store.put(token, validation))
        except ValueError:
            raise AcmeError("the CA sent a malformed HTTP-01 challenge token") from None
        except Exception:
            logger.exception("storing an ACME challenge failed")
            raise AcmeError("the ACME challenge could not be stored in the database") from None

    def drop(self, token: str) -> None:
        try:
            self._run(self.store.drop(token))
        except Exception:  # the order's outcome stands; the row expires on its own
            logger.warning("withdrawing an ACME challenge failed; it stays until it expires", exc_info=True)


@dataclass(frozen=True)
class AcmeConfig:
    directory_url: str
    ca_file: str  # "" = system trust store
    account_key_pem: str
    email: str = ""


def _check(cfg: AcmeConfig) -> None:
    if urlsplit(cfg.directory_url).scheme != "https":
        raise AcmeError("acme.directory_url must be an https:// URL")
    if cfg.ca_file and not os.path.isfile(cfg.ca_file):
        raise AcmeError("acme.ca_file is not a readable file")


def _network(cfg: AcmeConfig, key: JWKRSA) -> client.ClientNetwork:
    verify: Any = cfg.ca_file or True  # requests' `verify`: True or a CA bundle path; never False
    return client.ClientNetwork(key, verify_ssl=cast(bool, verify), user_agent="portside", timeout=30)


def _account(acme: client.ClientV2, email: str) -> None:
    reg = messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
    try:
        acme.new_account(reg)
    except errors.ConflictError as exc:  # this key already has an account: use it
        regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        acme.query_registration(regr)


def issue(cfg: AcmeConfig, hostname: str, store: Publisher) -> certx.Material:
    """Order a certificate for `hostname` (normalized), answer HTTP-01, return leaf, chain and key."""
    _check(cfg)
    account_key = certx.load_key(cfg.account_key_pem)
    if not isinstance(account_key, rsa.RSAPrivateKey):
        raise AcmeError("ACME account key must be RSA")
    jwk = JWKRSA(key=account_key)
    published: list[str] = []
    try:
        net = _network(cfg, jwk)
        acme = client.ClientV2(client.ClientV2.get_directory(cfg.directory_url, net), net)
        _account(acme, cfg.email)
        key_pem = certx.key_to_pem(certx.new_key())
        order = acme.new_order(crypto_util.make_csr(key_pem.encode("ascii"), [hostname]))
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            chall = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
            if chall is None:
                raise AcmeError(f"the CA offers no HTTP-01 challenge for {hostname}")
            response, validation = chall.response_and_validation(jwk)
            token = chall.chall.encode("token")
            published.append(token)  # before the write: a write that fails late is still withdrawn
            store.put(token, validation)
            acme.answer_challenge(chall, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT)
        done = acme.poll_and_finalize(order, deadline)
    except errors.ValidationError as exc:
        details = "; ".join(str(a.body.challenges[0].error or "") for a in exc.failed_authzrs)
        raise AcmeError(f"the CA could not validate {hostname}: {details or 'validation failed'}") from None
    except (errors.Error, messages.Error) as exc:
        raise AcmeError(f"ACME error: {exc}") from None
    except OSError as exc:  # requests' ConnectionError, SSLError and timeouts are OSErrors
        raise AcmeError(f"cannot reach the ACME server: {type(exc).__name__}") from None
    finally:
        for token in published:
            store.drop(token)
    certs = certx.split_chain(done.fullchain_pem)
    if not certs:
        raise AcmeError("the CA returned no certificate")
    return certx.material(hostname, certs[0], "".join(certs[1:]), key_pem)


__all__ = ["LETS_ENCRYPT", "AcmeConfig", "AcmeError", "ChallengeStore", "Publisher", "issue"]
