"""Sign-in limits hold across a cluster: two nodes on one PostgreSQL database, joined by Redis, count each
other's password attempts (auth/throttle.py `share`/`remote`, wired by the runtime to a Redis channel)."""

from __future__ import annotations

import time

import httpx

from support import PASSWORD, Server, new_user

SIGNIN = "/action/user_account/signin"


def client_from(server: Server, address: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, transport=httpx.HTTPTransport(local_address=address))


def attempt(c: httpx.Client, email: str, password: str = "wrong-password") -> int:
    return c.post(SIGNIN, json={"attributes": {"email": email, "password": password}}).status_code


def settle() -> None:
    time.sleep(0.5)  # a note crosses Redis in milliseconds; leave ample room on a loaded machine


def test_failures_on_one_node_limit_the_same_address_on_the_other(cluster: tuple[str, Server, Server]) -> None:
    _, a, b = cluster
    victim, _ = new_user(a, "victim")
    with client_from(a, "127.0.0.40") as on_a:
        assert [attempt(on_a, victim) for _ in range(10)] == [401] * 10
    settle()
    with client_from(b, "127.0.0.40") as on_b:
        assert attempt(on_b, victim) == 429  # the guesser moved to the other node: it still waits
        assert attempt(on_b, victim, PASSWORD) == 429
    with client_from(b, "127.0.0.41") as owner:  # nobody else is locked out, on either node
        assert attempt(owner, victim, PASSWORD) == 200
    with client_from(a, "127.0.0.41") as owner:
        assert attempt(owner, victim, PASSWORD) == 200


def test_a_correct_password_on_one_node_clears_the_pair_on_the_other(cluster: tuple[str, Server, Server]) -> None:
    _, a, b = cluster
    user, _ = new_user(a, "forgetful")
    with client_from(a, "127.0.0.42") as on_a:
        assert [attempt(on_a, user) for _ in range(9)] == [401] * 9
        assert attempt(on_a, user, PASSWORD) == 200
    settle()
    with client_from(b, "127.0.0.42") as on_b:
        assert attempt(on_b, user) == 401  # the pair's 10th failure, had the success not cleared it on b
        time.sleep(1.2)  # the account's backoff (10 failures: 1 s after this address's last) runs out
        assert attempt(on_b, user, PASSWORD) == 200
