"""The host's own Ed25519 key, with which it authenticates to the router (WAMP-cryptosign).

The key is made on the first start that needs it, in the state directory, readable by the
daemon's user alone (0600), and reused afterwards: the router's configuration lists its
public key (``sysadmd-admin fleet key`` prints it). The file holds the 32-byte private seed
as hexadecimal, the form Crossbar and Autobahn use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: The key's file in the state directory.
HOST_KEY_FILE: Final = "fleet-host.key"

_MODE: Final = 0o600


class HostKeyError(Exception):
    """The host key cannot be read or made; the message names the file and why."""


@dataclass(frozen=True)
class HostKey:
    """An Ed25519 key: signs the router's challenges, and names itself by its public key."""

    private: Ed25519PrivateKey

    @property
    def public_hex(self) -> str:
        """The public key as 64 hexadecimal digits (a Crossbar ``authorized_keys`` entry)."""
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def sign_challenge(self, challenge_hex: str) -> str:
        """The reply to a cryptosign challenge: the signature, then the challenge, in hex.

        Raises :class:`ValueError` for a challenge that is not 32 bytes of hexadecimal.
        """
        if not re.fullmatch(r"[0-9a-fA-F]{64}", challenge_hex):
            raise ValueError("the router's cryptosign challenge is not 32 bytes of hex")
        challenge = bytes.fromhex(challenge_hex)
        return (self.private.sign(challenge) + challenge).hex()


def _read(path: Path) -> HostKey:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise HostKeyError(f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise HostKeyError(f"{path}: is not an Ed25519 seed (64 lower-case hex digits)")
    if path.stat().st_mode & 0o077:
        raise HostKeyError(f"{path}: others may read it; make it mode 0600 (chmod 600)")
    return HostKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text)))


def load_host_key(state_dir: Path) -> HostKey:
    """The host key in ``state_dir``; raises :class:`HostKeyError` if there is none."""
    path = state_dir / HOST_KEY_FILE
    if not path.exists():
        raise HostKeyError(f"{path}: no host key yet; the daemon makes it on its first start")
    return _read(path)


def ensure_host_key(state_dir: Path) -> tuple[HostKey, bool]:
    """The host key in ``state_dir``, made now (mode 0600; the directory 0700 if missing too)
    if missing; and whether it was made."""
    path = state_dir / HOST_KEY_FILE
    if path.exists():
        return _read(path), False
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise HostKeyError(f"{state_dir}: cannot be created: {e.strerror}") from None
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw().hex()
    try:
        # O_EXCL: never overwrite a key another start made meanwhile; 0600 from birth.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE)
    except FileExistsError:
        return _read(path), False
    except OSError as e:
        raise HostKeyError(f"{path}: cannot be created: {e.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(seed + "\n")
    return HostKey(private), True
