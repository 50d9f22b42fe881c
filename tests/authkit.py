"""A real Authenticator for tests: local accounts with a fast hash, files in a temp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from twisted.internet import reactor

from sysadmd.api import Role
from sysadmd.auth import AuditLog, Authenticator, Challenges, KeyStore, Lockout, Sessions
from sysadmd.auth._accounts import LocalAccounts

#: Users every kit has, with their passwords.
USERS = {"alice": ("alice-secret-1", Role.ADMIN), "oscar": ("oscar-secret-1", Role.OPERATOR)}

#: Argon2 at its cheapest, so tests stay fast; the daemon uses argon2's defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def make_authenticator(directory: Path, clock: Any = reactor) -> Authenticator:
    """An Authenticator on ``directory`` whose sessions and lockout run on ``clock``."""
    accounts = LocalAccounts(directory / "accounts.json", reactor, hasher=FAST_HASHER)
    for name, (password, role) in USERS.items():
        accounts.add(name, role, password)
    return Authenticator(
        accounts,
        sessions=Sessions(clock),
        lockout=Lockout(clock),
        audit=AuditLog(directory / "audit.log", clock),
        keys=KeyStore(directory / "ssl_keys.json", clock),
        challenges=Challenges(clock),
    )
