"""Credentials: the verified-credential cache and its invalidation."""

from __future__ import annotations

import asyncio

import pytest
from nicupdate_server import auth
from nicupdate_server.auth import Authenticator, hash_password, token_digest
from nicupdate_server.dyndns import Credentials
from nicupdate_server.state import HostEntry, State, UserEntry, parse_digest


@pytest.fixture
def state() -> State:
    state = State()
    state.users["alice"] = UserEntry(1, "alice", hash_password("right-password"))
    state.hosts["home.example.test"] = HostEntry(
        7, "home.example.test", 1, parse_digest(token_digest("tok"))
    )
    return state


def authenticate(authenticator: Authenticator, user: str, password: str) -> object:
    return asyncio.run(authenticator.authenticate(Credentials(user, password)))


def test_repeated_correct_password_pays_the_hash_once(state: State, hashes: list[str]) -> None:
    authenticator = Authenticator(state)
    for _ in range(5):
        principal = authenticate(authenticator, "alice", "right-password")
        assert principal is not None
    assert len(hashes) == 1


def test_simultaneous_requests_with_one_password_share_one_hash(
    state: State, hashes: list[str]
) -> None:
    # 64 routers coming back at once with the same account: one hash, not 64.
    async def together() -> list[object]:
        authenticator = Authenticator(state)
        right = [Credentials("alice", "right-password")] * 32
        wrong = [Credentials("alice", "wrong")] * 32
        return await asyncio.gather(*(authenticator.authenticate(c) for c in right + wrong))

    principals = asyncio.run(together())
    assert all(p is not None for p in principals[:32])
    assert all(p is None for p in principals[32:])
    assert sorted(hashes) == ["right-password", "wrong"]


def test_password_change_invalidates_the_cache(state: State, hashes: list[str]) -> None:
    authenticator = Authenticator(state)
    assert authenticate(authenticator, "alice", "right-password") is not None
    state.users["alice"] = UserEntry(1, "alice", hash_password("new-password"))
    assert authenticate(authenticator, "alice", "right-password") is None
    assert authenticate(authenticator, "alice", "new-password") is not None


def test_wrong_password_is_remembered_until_the_hash_changes(
    state: State, hashes: list[str]
) -> None:
    authenticator = Authenticator(state)
    for _ in range(3):
        assert authenticate(authenticator, "alice", "wrong") is None
    assert len(hashes) == 1
    state.users["alice"] = UserEntry(1, "alice", hash_password("wrong"))
    assert authenticate(authenticator, "alice", "wrong") is not None


def test_unknown_user_pays_a_hash_too(state: State, hashes: list[str]) -> None:
    assert authenticate(Authenticator(state), "nobody", "whatever") is None
    assert hashes == ["whatever"]


def test_host_token_binds_to_its_host(state: State, hashes: list[str]) -> None:
    principal = authenticate(Authenticator(state), "HOME.example.test.", "tok")
    assert principal == auth.Principal("home.example.test", host_id=7)
    assert authenticate(Authenticator(state), "home.example.test", "nope") is None
    assert hashes == ["nope"]  # tokens are checked by digest, never by the slow hash


def test_password_hashes_are_argon2id_on_one_thread() -> None:
    assert hash_password("x" * 100).startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_hashes_of_earlier_versions_still_verify() -> None:
    earlier = "$argon2id$v=19$m=65536,t=3,p=4$"  # RFC 9106's low-memory choice
    from argon2 import PasswordHasher

    old_hash = PasswordHasher().hash("the-old-password")
    assert old_hash.startswith(earlier)
    assert auth.verify_password("the-old-password", old_hash)
    assert not auth.verify_password("another", old_hash)
