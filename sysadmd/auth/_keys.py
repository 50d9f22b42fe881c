"""sysadm's public-key login (``rpc/auth_ssl``) and the registered keys behind it.

The login has two stages. In the first the client asks for a challenge and gets a random test
string of 245 characters (:meth:`Challenges.issue`) that is live for 30 seconds, for the
address that asked. In the second it sends that string "encrypted" with its RSA private key
the way sysadm's client does it: OpenSSL's ``RSA_private_encrypt`` with PKCS#1 v1.5 padding,
which is a raw PKCS#1 v1.5 type-1 signature of the bytes themselves (no hash, no DigestInfo),
base64-encoded. The server undoes that with the registered public keys (:func:`recover`, run
in a worker thread); a key that recovers a test string live for the client's address logs the
client in as the user who registered the key.

:class:`KeyStore` keeps the registered keys (``rpc/settings`` ``register_ssl_cert``,
``list_ssl_certs`` and ``revoke_ssl_cert``) in a JSON file that only its owner may read or
write. :func:`sysadmd.client.signing.sign_challenge` is the client side of the second stage; the
server never uses it.

:class:`SSLAuthError` messages are one line and safe to send to a client: they never repeat the
key material they are about. :class:`KeyStoreError` is the daemon's own problem (the file cannot
be read, parsed or written) and names the file, so it is for the log, not for clients.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet.interfaces import IReactorTime

from sysadmd.shared import FileStore, json_document

__all__ = [
    "CHALLENGE_LIFETIME",
    "KEYS_FILE",
    "MAX_CHALLENGES_PER_ADDRESS",
    "MAX_KEY_BITS",
    "MAX_LIVE_CHALLENGES",
    "MAX_TEXT_LENGTH",
    "MIN_KEY_BITS",
    "TEST_STRING_LENGTH",
    "Challenges",
    "ChallengesFull",
    "KeyStore",
    "KeyStoreError",
    "SSLAuthError",
    "recover",
]

KEYS_FILE: Final = "ssl_keys.json"
"""The key store's file name in the daemon's state directory."""

MIN_KEY_BITS: Final = 2048
"""The smallest RSA key that can be registered: a smaller one cannot sign a test string of
:data:`TEST_STRING_LENGTH` characters."""

MAX_KEY_BITS: Final = 8192
"""The largest RSA key that can be registered (bounds the cost of a login attempt)."""

MAX_TEXT_LENGTH: Final = 128
"""The longest nickname or email address a key may carry."""

MAX_KEYS_PER_USER: Final = 100
"""Default bound on the keys one user may register: every login attempt tries every key."""

CHALLENGE_LIFETIME: Final = 30.0
"""Seconds a test string stays live, as in sysadm."""

MAX_LIVE_CHALLENGES: Final = 1000
"""Default bound on test strings live at once; past it, no more are issued until some expire."""

MAX_CHALLENGES_PER_ADDRESS: Final = 4
"""Default bound on test strings live at once for one address; past it, its oldest goes."""

TEST_STRING_LENGTH: Final = 245
"""Characters in a test string: the most a 2048-bit key signs with PKCS#1 v1.5 (256 - 11).

sysadm's Qt client makes its signature in a buffer twice the test string's length, and the
signature of its 2048-bit key is 256 bytes: a test string shorter than 128 characters
overflows that buffer. 245 characters leave room for keys of up to 3920 bits in that client,
and every key that may be registered (2048 bits or more) can sign them.
"""

_STORE_VERSION: Final = 1
_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700
_MAX_KEY_INPUT: Final = 16384  # characters; an 8192-bit key's base64 PEM is about 2000
_MAX_SIGNATURE_INPUT: Final = 4096  # characters; an 8192-bit signature's base64 is 1368
_CHALLENGE_BYTES: Final = 184  # token_urlsafe(184) is 246 characters


class SSLAuthError(ValueError):
    """A key or its details cannot be registered; the message is one line, safe for clients."""


class KeyStoreError(Exception):
    """The key store's file cannot be read, parsed or written; the message names the file."""


# --------------------------------------------------------------------------------------------
# Public keys


def _decode_key_text(pub_key: str) -> bytes:
    """Return the PEM bytes in ``pub_key``, given as PEM text or as the base64 of PEM text."""
    if "-----BEGIN" in pub_key:
        text = pub_key
    else:
        try:
            decoded = base64.b64decode("".join(pub_key.split()), validate=True)
            text = decoded.decode("ascii")
        except (binascii.Error, ValueError):
            text = ""
        if "-----BEGIN" not in text:
            raise SSLAuthError(
                "pub_key is neither a PEM public key nor the base64 of one"
            ) from None
    try:
        pem = text.strip().encode("ascii")
    except UnicodeEncodeError:
        raise SSLAuthError("pub_key is not a PEM public key") from None
    if pem.count(b"-----BEGIN") != 1:
        raise SSLAuthError("pub_key must hold exactly one PEM block")
    if b"PRIVATE KEY" in pem:
        raise SSLAuthError("pub_key is a private key; register the public key only")
    return pem


def _parse_key(pub_key: object, *, check_size: bool) -> rsa.RSAPublicKey:
    """Load ``pub_key`` (PEM text or its base64) as an RSA public key, or raise SSLAuthError.

    ``check_size`` applies the 2048..8192-bit rule of new registrations; a key that is already
    stored is looked up without it.
    """
    if not isinstance(pub_key, str) or not pub_key.strip():
        raise SSLAuthError("pub_key must be a non-empty string")
    if len(pub_key) > _MAX_KEY_INPUT:
        raise SSLAuthError(f"pub_key is too long (at most {_MAX_KEY_INPUT} characters)")
    pem = _decode_key_text(pub_key)
    try:
        key = serialization.load_pem_public_key(pem)
    except UnsupportedAlgorithm:
        raise SSLAuthError("pub_key uses an unsupported algorithm; only RSA keys work") from None
    except ValueError:
        raise SSLAuthError(
            "pub_key is not a PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SSLAuthError("only RSA public keys can be registered")
    if check_size and key.key_size < MIN_KEY_BITS:
        raise SSLAuthError(
            f"the RSA key has {key.key_size} bits; keys must have at least {MIN_KEY_BITS} "
            f"bits (a smaller key cannot sign the {TEST_STRING_LENGTH}-character test string)"
        )
    if check_size and key.key_size > MAX_KEY_BITS:
        raise SSLAuthError(
            f"the RSA key has {key.key_size} bits; keys may have at most {MAX_KEY_BITS} bits"
        )
    exponent = key.public_numbers().e
    if exponent < 3 or exponent % 2 == 0:
        raise SSLAuthError("the RSA key has an invalid public exponent")
    return key


def _canonical_pem(key: rsa.RSAPublicKey) -> str:
    """The form a key is stored and compared in: SubjectPublicKeyInfo PEM text."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _listed_form(pem: str) -> str:
    """How ``list_ssl_certs`` shows a key, as sysadm did: the base64 of its PEM text."""
    return base64.b64encode(pem.encode("ascii")).decode("ascii")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH or not value.isprintable():
        raise SSLAuthError(f"{what} must be printable text of at most {MAX_TEXT_LENGTH} characters")
    return value


def _check_user(user: object) -> str:
    if not isinstance(user, str) or not user or not user.isprintable():
        raise SSLAuthError("the user name must be a non-empty printable string")
    return user


# --------------------------------------------------------------------------------------------
# Key store


@dataclass(frozen=True)
class _Entry:
    """One registered key: who registered it, its canonical PEM, and what the user said."""

    user: str
    pem: str
    key: rsa.RSAPublicKey
    nickname: str
    email: str
    registered: str

    def to_json(self) -> dict[str, str]:
        return {
            "user": self.user,
            "public_key": self.pem,
            "nickname": self.nickname,
            "email": self.email,
            "registered": self.registered,
        }

    def description(self) -> str:
        return f"Nickname: {self.nickname}\nEmail: {self.email}\nDate Registered: {self.registered}"


class KeyStore:
    """Registered public keys per user, in a JSON file kept by a :class:`FileStore`.

    The file is read when the store is made and again whenever it has changed on disk since
    (another process, such as an administration tool, may have written it), so every method
    sees the current keys. A file that is missing is an empty store; a file that cannot be
    read or parsed, or that is writable by group or others, raises :class:`KeyStoreError`
    from every method and is never overwritten. Every change reads the file and replaces it
    (mode 0600, atomically) under the exclusive lock every process takes on
    ``<file>.lock``, so two processes that change the store at once both keep their change.
    """

    def __init__(
        self,
        path: Path,
        clock: IReactorTime | None = None,
        *,
        max_keys_per_user: int = MAX_KEYS_PER_USER,
    ) -> None:
        if max_keys_per_user < 1:
            raise ValueError("max_keys_per_user must be at least 1")
        self._path = Path(path)
        self._clock = clock
        self._max_keys_per_user = max_keys_per_user
        self._file = FileStore(
            self._path,
            parse=self._parse,
            serialize=_serialize,
            empty=tuple,
            invalid=KeyStoreError,
            check=self._trusted,
            mode=_FILE_MODE,
            directory_mode=_DIR_MODE,
        )
        self._current()

    @property
    def path(self) -> Path:
        """The JSON file the keys are kept in."""
        return self._path

    # Queries

    def list(self, user: str | None = None) -> dict[str, dict[str, str]]:
        """The keys in sysadm's ``list_ssl_certs`` shape, of every user or only of ``user``.

        ``{"<user>": {"<base64 of the PEM>": "Nickname: …\\nEmail: …\\nDate Registered: …"}}``;
        users without keys do not appear.
        """
        listing: dict[str, dict[str, str]] = {}
        for entry in sorted(self._current(), key=lambda e: (e.user, e.pem)):
            if user is None or entry.user == user:
                listing.setdefault(entry.user, {})[_listed_form(entry.pem)] = entry.description()
        return listing

    def keys(self) -> builtins.list[tuple[str, rsa.RSAPublicKey]]:
        """Every registered key with the user it logs in as, for :meth:`Challenges.verify`."""
        return [(entry.user, entry.key) for entry in self._current()]

    def users_with_keys(self) -> set[str]:
        """The users who have at least one registered key."""
        return {entry.user for entry in self._current()}

    # Changes

    def register(self, user: str, pub_key: str, nickname: str = "", email: str = "") -> None:
        """Register ``pub_key`` for ``user``, or update its nickname and email if it already is.

        ``pub_key`` is PEM text (``BEGIN PUBLIC KEY`` or ``BEGIN RSA PUBLIC KEY``) or the
        base64 of PEM text, as sysadm's clients send it; both forms of one key are one entry.
        Only RSA keys of 2048 to 8192 bits are accepted. A key that another user registered
        is refused, as a login with it could not tell the two users apart. Re-registering
        also renews the registration date, as sysadm's overwrite did.

        Raises :class:`SSLAuthError` when the request is refused and :class:`KeyStoreError`
        when the file cannot be read or written (the store is then unchanged).
        """
        user = _check_user(user)
        key = _parse_key(pub_key, check_size=True)
        nickname = _check_text(nickname, "nickname")
        email = _check_text(email, "email")
        pem = _canonical_pem(key)
        with self._changing():
            self._register(_Entry(user, pem, key, nickname, email, self._now()))

    def _register(self, new: _Entry) -> None:
        user, pem = new.user, new.pem
        entries = list(self._current())
        for index, entry in enumerate(entries):
            if entry.pem != pem:
                continue
            if entry.user != user:
                raise SSLAuthError("this key is already registered by another user")
            entries[index] = replace(
                entry, nickname=new.nickname, email=new.email, registered=new.registered
            )
            break
        else:
            if sum(1 for entry in entries if entry.user == user) >= self._max_keys_per_user:
                raise SSLAuthError(
                    f"{user} already has {self._max_keys_per_user} registered keys; "
                    "revoke one first"
                )
            entries.append(new)
        self._save(entries)

    def revoke(self, pub_key: str, user: str | None = None) -> bool:
        """Remove ``pub_key`` (of ``user`` only, if given); say whether a key was removed.

        ``pub_key`` may be in any form :meth:`register` takes, including the base64 form
        :meth:`list` shows. Input that is no RSA public key matches nothing and gives
        ``False``. Raises :class:`KeyStoreError` when the file cannot be read or written.
        """
        try:
            pem = _canonical_pem(_parse_key(pub_key, check_size=False))
        except SSLAuthError:
            return False
        with self._changing():
            entries = self._current()
            kept = [e for e in entries if not (e.pem == pem and (user is None or e.user == user))]
            if len(kept) == len(entries):
                return False
            self._save(kept)
            return True

    def remove_user(self, user: str) -> int:
        """Remove every key of ``user`` (whose account is gone); how many there were.

        Raises :class:`KeyStoreError` when the file cannot be read or written.
        """
        with self._changing():
            entries = self._current()
            kept = [e for e in entries if e.user != user]
            if len(kept) != len(entries):
                self._save(kept)
            return len(entries) - len(kept)

    # The file

    def _now(self) -> str:
        now = self._clock.seconds() if self._clock is not None else time.time()
        moment = datetime.fromtimestamp(now, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _current(self) -> tuple[_Entry, ...]:
        """The entries as the file holds them now, reading it again only if it changed."""
        try:
            return self._file.read()
        except OSError as e:
            raise KeyStoreError(f"{self._path}: {_one_line(e)}") from e

    def _changing(self) -> contextlib.AbstractContextManager[None]:
        """Hold the store's lock for a read-modify-write."""
        return self._file.locked(
            lambda e: KeyStoreError(f"{self._path}: cannot lock: {_one_line(e)}")
        )

    def _trusted(self, status: os.stat_result) -> None:
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyStoreError(
                f"{self._path}: writable by group or others; refusing to trust its keys"
            )

    def _parse(self, data: bytes) -> tuple[_Entry, ...]:
        try:
            document = json_document(data, kind="key store", version=_STORE_VERSION)
        except ValueError as e:
            raise KeyStoreError(f"{self._path}: {e}") from None
        if not isinstance(document.get("keys"), list):
            raise KeyStoreError(f"{self._path}: not a sysadmd key store: 'keys' must be a list")
        entries: list[_Entry] = []
        seen: set[str] = set()
        for number, item in enumerate(document["keys"], start=1):
            entry = self._parse_entry(item, number)
            if entry.pem in seen:
                raise KeyStoreError(f"{self._path}: key {number} is listed twice")
            seen.add(entry.pem)
            entries.append(entry)
        return tuple(entries)

    def _parse_entry(self, item: Any, number: int) -> _Entry:
        fields = ("user", "public_key", "nickname", "email", "registered")
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in fields):
            raise KeyStoreError(f"{self._path}: key {number} is malformed")
        try:
            user = _check_user(item["user"])
            key = _parse_key(item["public_key"], check_size=False)
        except SSLAuthError as e:
            raise KeyStoreError(f"{self._path}: key {number}: {e}") from None
        return _Entry(
            user=user,
            pem=_canonical_pem(key),
            key=key,
            nickname=item["nickname"],
            email=item["email"],
            registered=item["registered"],
        )

    def _save(self, entries: Iterable[_Entry]) -> None:
        """Replace the file with ``entries`` (inside :meth:`_changing`)."""
        try:
            self._file.write(tuple(entries))
        except OSError as e:
            raise KeyStoreError(f"{self._path}: cannot write: {_one_line(e)}") from e


def _serialize(entries: tuple[_Entry, ...]) -> bytes:
    document = {"version": _STORE_VERSION, "keys": [e.to_json() for e in entries]}
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")


def _one_line(error: OSError) -> str:
    return error.strerror or str(error).replace("\n", " ")


# --------------------------------------------------------------------------------------------
# Challenges


class ChallengesFull(Exception):
    """No test string can be issued now: the table of live ones is full.

    ``seconds`` is when the oldest of them expires (for ``Retry-After``).
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no room for another test string for {seconds:.0f} seconds")
        self.seconds = seconds


def _new_test_string() -> str:
    """:data:`TEST_STRING_LENGTH` random URL-safe characters (six random bits each)."""
    return secrets.token_urlsafe(_CHALLENGE_BYTES)[:TEST_STRING_LENGTH]


class Challenges:
    """The live test strings of ``rpc/auth_ssl``, each bound to the address it was issued to.

    A test string is live for ``lifetime`` seconds after :meth:`issue` and can log in once,
    from the address that asked for it. One address holds at most ``per_address`` live
    strings: asking for another drops its own oldest. All addresses together hold at most
    ``max_live``; when that many are live, :meth:`issue` refuses (:class:`ChallengesFull`)
    rather than drop a string someone else is about to use, so a flood of first stages costs
    bounded memory and can delay, but never fail, another client's login.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        lifetime: float = CHALLENGE_LIFETIME,
        max_live: int = MAX_LIVE_CHALLENGES,
        per_address: int = MAX_CHALLENGES_PER_ADDRESS,
    ) -> None:
        if not lifetime > 0:
            raise ValueError("lifetime must be positive")
        if max_live < 1 or per_address < 1:
            raise ValueError("max_live and per_address must be at least 1")
        self._clock = clock
        self._lifetime = lifetime
        self._max_live = max_live
        self._per_address = per_address
        # test string -> (address, moment it expires), oldest first
        self._live: dict[str, tuple[str, float]] = {}
        # address -> its live test strings, oldest first
        self._by_address: dict[str, list[str]] = {}

    def __len__(self) -> int:
        """How many test strings are live now."""
        self._purge()
        return len(self._live)

    def issue(self, address: str) -> str:
        """A new test string for ``address``, live for ``lifetime`` seconds.

        :raises ChallengesFull: ``max_live`` strings of other addresses are live.
        """
        self._purge()
        own = self._by_address.get(address, [])
        if len(own) >= self._per_address:
            self._drop(own[0])
        elif len(self._live) >= self._max_live:
            _, expires = next(iter(self._live.values()))
            raise ChallengesFull(expires - self._clock.seconds())
        test_string = _new_test_string()
        while test_string in self._live:  # pragma: no cover - 1470 random bits
            test_string = _new_test_string()
        self._live[test_string] = (address, self._clock.seconds() + self._lifetime)
        self._by_address.setdefault(address, []).append(test_string)
        return test_string

    def live(self, address: str) -> frozenset[str]:
        """The test strings ``address`` may sign now."""
        self._purge()
        return frozenset(self._by_address.get(address, ()))

    def consume(self, address: str, test_string: str) -> bool:
        """Use up ``test_string`` if it is live and was issued to ``address``."""
        self._purge()
        entry = self._live.get(test_string)
        if entry is None or entry[0] != address:
            return False
        self._drop(test_string)
        return True

    def verify(
        self, address: str, encrypted_b64: str, keys: Iterable[tuple[str, rsa.RSAPublicKey]]
    ) -> str | None:
        """The user whose key signed a test string live for ``address``, or ``None``.

        :func:`recover` and :meth:`consume` in one call, on the calling thread; the daemon
        runs :func:`recover` in its thread pool instead.
        """
        found = recover(encrypted_b64, keys, self.live(address))
        if found is None or not self.consume(address, found[1]):
            return None
        return found[0]

    def _drop(self, test_string: str) -> None:
        address, _ = self._live.pop(test_string)
        own = self._by_address[address]
        own.remove(test_string)
        if not own:
            del self._by_address[address]

    def _purge(self) -> None:
        now = self._clock.seconds()
        while self._live:
            test_string, (_, expires) = next(iter(self._live.items()))
            if expires > now:
                break
            self._drop(test_string)


def recover(
    encrypted_b64: object,
    keys: Iterable[tuple[str, rsa.RSAPublicKey]],
    live: frozenset[str],
) -> tuple[str, str] | None:
    """Which registered key signed one of the ``live`` test strings: ``(user, test_string)``.

    ``encrypted_b64`` is the base64 (standard alphabet, padded; line breaks and other white
    space are ignored) of a PKCS#1 v1.5 type-1 "private encryption" of a test string. The
    signature carries no key id, so each key that could have made it (a modulus of the
    signature's length and larger than the signature) is tried with one public-key operation;
    the first that recovers a string in ``live`` wins. Anything else, including input that is
    not a string or not base64, gives ``None``; this never raises for bad input.

    It reads nothing but its arguments, so it may run in a worker thread.
    """
    if not live or not isinstance(encrypted_b64, str):
        return None
    if len(encrypted_b64) > _MAX_SIGNATURE_INPUT:
        return None
    try:
        signature = base64.b64decode("".join(encrypted_b64.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not signature:
        return None
    value = int.from_bytes(signature, "big")
    for user, key in keys:
        if not isinstance(key, rsa.RSAPublicKey) or (key.key_size + 7) // 8 != len(signature):
            continue
        if value >= key.public_numbers().n:
            continue
        try:
            recovered = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
            test_string = recovered.decode("ascii")
        except (InvalidSignature, ValueError):
            continue
        if test_string in live:
            return user, test_string
    return None


# --------------------------------------------------------------------------------------------
# Client side
