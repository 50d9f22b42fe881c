"""Tests for sysadmd.auth._keys: the rpc/auth_ssl challenge and the registered key store."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from twisted.internet.task import Clock

from sysadmd.auth._keys import (
    CHALLENGE_LIFETIME,
    TEST_STRING_LENGTH,
    Challenges,
    ChallengesFull,
    KeyStore,
    KeyStoreError,
    SSLAuthError,
)
from sysadmd.client.signing import sign_challenge

IP = "192.0.2.7"
OTHER = "2001:db8::7"
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
NOW_ISO = "2023-11-14T22:13:20Z"


# --------------------------------------------------------------------------------------------
# Keys, made once per module: RSA key generation is slow.


@pytest.fixture(scope="module")
def alice_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def bob_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def small_key() -> rsa.RSAPrivateKey:
    # Too small on purpose: the store must refuse it.
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505


def spki_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def pkcs1_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
        .decode()
    )


def b64(text: str) -> str:
    """The form sysadm's clients send a key in, and list_ssl_certs shows it in."""
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(NOW)
    return clock


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ssl-keys.json"


@pytest.fixture
def store(store_path: Path, clock: Clock) -> KeyStore:
    return KeyStore(store_path, clock)


def assert_client_safe(error: SSLAuthError) -> None:
    """One line, short, and no key material (every PEM body starts with "MII")."""
    message = str(error)
    assert message
    assert "\n" not in message
    assert len(message) < 200
    assert "MII" not in message
    assert "BEGIN" not in message or "BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY" in message


# --------------------------------------------------------------------------------------------
# Registering and listing


def test_pem_and_base64_pem_are_one_entry(
    store: KeyStore, clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    pem = spki_pem(alice_key)
    store.register("alice", pem, "laptop", "alice@example.org")
    clock.advance(60)
    store.register("alice", b64(pem), "desk", "a@example.org")
    assert store.list() == {
        "alice": {
            b64(pem): "Nickname: desk\nEmail: a@example.org\nDate Registered: 2023-11-14T22:14:20Z"
        }
    }


def test_pkcs1_pem_is_the_same_key_as_spki(store: KeyStore, alice_key: rsa.RSAPrivateKey) -> None:
    store.register("alice", pkcs1_pem(alice_key), "old format")
    store.register("alice", b64(spki_pem(alice_key)), "new format")
    listing = store.list()
    # Stored and shown in the canonical SubjectPublicKeyInfo form whatever form came in.
    assert list(listing["alice"]) == [b64(spki_pem(alice_key))]
    assert listing["alice"][b64(spki_pem(alice_key))].startswith("Nickname: new format\n")


def test_pem_with_surrounding_and_embedded_whitespace(
    store: KeyStore, alice_key: rsa.RSAPrivateKey
) -> None:
    wrapped = b64(spki_pem(alice_key))
    lines = "\n".join(wrapped[i : i + 64] for i in range(0, len(wrapped), 64))
    store.register("alice", "\n  " + lines + "\n")
    store.register("alice", "\r\n" + spki_pem(alice_key) + "  \n")
    assert list(store.list()["alice"]) == [wrapped]


def test_list_shape_and_text(
    store: KeyStore, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    store.register("bob", spki_pem(bob_key))
    store.register("alice", b64(spki_pem(alice_key)), "Alice's laptop", "alice@example.org")
    assert store.list() == {
        "alice": {
            b64(spki_pem(alice_key)): (
                f"Nickname: Alice's laptop\nEmail: alice@example.org\nDate Registered: {NOW_ISO}"
            )
        },
        "bob": {b64(spki_pem(bob_key)): f"Nickname: \nEmail: \nDate Registered: {NOW_ISO}"},
    }
    assert store.list("bob") == {"bob": store.list()["bob"]}
    assert store.list("carol") == {}
    assert store.users_with_keys() == {"alice", "bob"}
    registered = store.keys()
    assert sorted(user for user, _ in registered) == ["alice", "bob"]
    assert {spki_pem_of(key) for _, key in registered} == {
        spki_pem(alice_key),
        spki_pem(bob_key),
    }


def spki_pem_of(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def test_several_keys_per_user_and_their_bound(
    store_path: Path, clock: Clock, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    store = KeyStore(store_path, clock, max_keys_per_user=1)
    store.register("alice", spki_pem(alice_key))
    with pytest.raises(SSLAuthError, match="already has 1 registered keys") as raised:
        store.register("alice", spki_pem(bob_key))
    assert_client_safe(raised.value)
    # Updating a key the user already has is not a new key.
    store.register("alice", spki_pem(alice_key), "renamed")
    store.register("bob", spki_pem(bob_key))
    assert store.users_with_keys() == {"alice", "bob"}


# --------------------------------------------------------------------------------------------
# Refusals


def test_refuses_a_key_another_user_registered(
    store: KeyStore, alice_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", spki_pem(alice_key))
    with pytest.raises(SSLAuthError, match="already registered by another user") as raised:
        store.register("bob", b64(pkcs1_pem(alice_key)))
    assert_client_safe(raised.value)
    assert store.users_with_keys() == {"alice"}


def test_refuses_an_ec_key(store: KeyStore) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    for form in (pem, b64(pem)):
        with pytest.raises(SSLAuthError, match="only RSA") as raised:
            store.register("alice", form)
        assert_client_safe(raised.value)
    assert store.list() == {}


def test_refuses_a_1024_bit_key(store: KeyStore, small_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SSLAuthError, match="has 1024 bits; keys must have at least 2048") as raised:
        store.register("alice", spki_pem(small_key))
    assert_client_safe(raised.value)


def test_refuses_a_key_above_8192_bits(store: KeyStore) -> None:
    # Generating such a key takes seconds; a public key needs only an odd modulus.
    modulus = (1 << 8199) | (1 << 4000) | 1
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    pem = spki_pem_of(key)
    with pytest.raises(SSLAuthError, match="has 8200 bits") as raised:
        store.register("alice", pem)
    assert_client_safe(raised.value)


@pytest.mark.parametrize(
    ("pub_key", "message"),
    [
        ("", "non-empty string"),
        ("   \n", "non-empty string"),
        ("not a key at all", "neither a PEM public key nor the base64 of one"),
        (b64("just some text"), "neither a PEM public key nor the base64 of one"),
        (
            "-----BEGIN PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
        ),
        ("-----BEGIN PUBLIC KEY-----\nnot base64\n", "not a PEM public key"),
        ("-----BEGIN PUBLIC KEY-----\n\u00e9\n-----END PUBLIC KEY-----\n", "not a PEM public key"),
        ("x" * 20000, "too long"),
    ],
)
def test_refuses_garbage(store: KeyStore, pub_key: str, message: str) -> None:
    with pytest.raises(SSLAuthError, match=message) as raised:
        store.register("alice", pub_key)
    assert_client_safe(raised.value)
    assert not store.path.exists()


def test_refuses_a_private_key_without_echoing_it(
    store: KeyStore, alice_key: rsa.RSAPrivateKey
) -> None:
    pem = alice_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    for form in (pem, b64(pem)):
        with pytest.raises(SSLAuthError, match="is a private key") as raised:
            store.register("alice", form)
        assert_client_safe(raised.value)
    assert not store.path.exists()


def test_refuses_two_pem_blocks(
    store: KeyStore, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(SSLAuthError, match="exactly one PEM block"):
        store.register("alice", spki_pem(alice_key) + spki_pem(bob_key))


def test_refuses_a_key_that_is_not_a_string(store: KeyStore) -> None:
    with pytest.raises(SSLAuthError, match="non-empty string"):
        store.register("alice", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nickname", "email", "message"),
    [
        ("two\nlines", "", "nickname"),
        ("n" * 129, "", "nickname"),
        ("", "tab\there", "email"),
        ("", "e" * 129, "email"),
        ("", None, "email"),
    ],
)
def test_refuses_bad_nickname_or_email(
    store: KeyStore, alice_key: rsa.RSAPrivateKey, nickname: str, email: object, message: str
) -> None:
    with pytest.raises(SSLAuthError, match=message) as raised:
        store.register("alice", spki_pem(alice_key), nickname, email)  # type: ignore[arg-type]
    assert_client_safe(raised.value)
    assert store.list() == {}


def test_accepts_the_longest_nickname_and_email(
    store: KeyStore, alice_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", spki_pem(alice_key), "n" * 128, "ü" * 128)
    (text,) = store.list()["alice"].values()
    assert text.startswith("Nickname: " + "n" * 128 + "\nEmail: " + "ü" * 128 + "\n")


def test_refuses_an_empty_user(store: KeyStore, alice_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SSLAuthError, match="user name"):
        store.register("", spki_pem(alice_key))


# --------------------------------------------------------------------------------------------
# Revoking


def test_revoke_by_either_form_with_or_without_user(
    store: KeyStore, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    alice, bob = spki_pem(alice_key), spki_pem(bob_key)
    store.register("alice", alice)
    store.register("bob", bob)

    assert store.revoke(b64(alice), "bob") is False  # not bob's key
    assert store.revoke(b64(alice), "alice") is True  # the listed form
    assert store.revoke(alice, "alice") is False  # already gone
    assert store.list() == {"bob": store.list("bob")["bob"]}

    assert store.revoke(pkcs1_pem(bob_key)) is True  # PEM, any format, any user
    assert store.list() == {}
    assert store.users_with_keys() == set()
    assert store.keys() == []


def test_revoke_of_unknown_or_garbage_is_false(
    store: KeyStore, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", spki_pem(alice_key))
    assert store.revoke(spki_pem(bob_key)) is False
    assert store.revoke("garbage") is False
    assert store.revoke("") is False
    assert store.revoke(None) is False  # type: ignore[arg-type]
    assert store.users_with_keys() == {"alice"}


def test_revoke_works_for_a_key_the_size_rule_would_refuse(
    store_path: Path, clock: Clock, small_key: rsa.RSAPrivateKey
) -> None:
    # A store written under another policy (or by hand) must stay manageable.
    write_store(store_path, [entry("alice", spki_pem(small_key))])
    store = KeyStore(store_path, clock)
    assert store.users_with_keys() == {"alice"}
    assert store.revoke(b64(spki_pem(small_key)), "alice") is True
    assert store.list() == {}


# --------------------------------------------------------------------------------------------
# The file


def entry(user: str, pem: str) -> dict[str, str]:
    return {"user": user, "public_key": pem, "nickname": "", "email": "", "registered": NOW_ISO}


def write_store(path: Path, keys: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": 1, "keys": keys}))
    path.chmod(0o600)


def test_file_mode_and_contents(
    store: KeyStore, store_path: Path, alice_key: rsa.RSAPrivateKey
) -> None:
    assert not store_path.exists()  # nothing is written until there is something to keep
    store.register("alice", b64(pkcs1_pem(alice_key)), "laptop", "alice@example.org")
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert json.loads(store_path.read_text()) == {
        "version": 1,
        "keys": [
            {
                "user": "alice",
                "public_key": spki_pem(alice_key),
                "nickname": "laptop",
                "email": "alice@example.org",
                "registered": NOW_ISO,
            }
        ],
    }
    # No temporary files left; the lock file every change takes stays.
    assert sorted(os.listdir(store_path.parent)) == [store_path.name, store_path.name + ".lock"]
    assert store.revoke(spki_pem(alice_key))
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert json.loads(store_path.read_text()) == {"version": 1, "keys": []}


def test_file_mode_ignores_the_umask(
    store: KeyStore, store_path: Path, alice_key: rsa.RSAPrivateKey
) -> None:
    old = os.umask(0)
    try:
        store.register("alice", spki_pem(alice_key))
    finally:
        os.umask(old)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600


def test_another_store_on_the_same_file_sees_the_keys(
    store: KeyStore, store_path: Path, clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", spki_pem(alice_key), "laptop")
    other = KeyStore(store_path, clock)
    assert other.list() == store.list()
    # A change made through one (say, an admin tool) is seen by the other at once.
    assert other.revoke(spki_pem(alice_key))
    assert store.list() == {}
    assert store.keys() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('"a string"', "not a sysadmd key store"),
        ('{"version": 2, "keys": []}', "not a sysadmd key store"),
        ('{"version": 1, "keys": [42]}', "key 1 is malformed"),
        ('{"version": 1, "keys": [{"user": "alice"}]}', "key 1 is malformed"),
    ],
)
def test_damaged_file_is_refused_and_kept(
    store_path: Path, clock: Clock, content: str, message: str
) -> None:
    store_path.parent.mkdir()
    store_path.write_text(content)
    store_path.chmod(0o600)
    with pytest.raises(KeyStoreError, match=message):
        KeyStore(store_path, clock)
    assert store_path.read_text() == content


def test_damaged_key_and_duplicate_key_are_refused(
    store_path: Path, clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    write_store(store_path, [entry("alice", "garbage")])
    with pytest.raises(KeyStoreError, match="key 1: pub_key is neither"):
        KeyStore(store_path, clock)
    write_store(
        store_path, [entry("alice", spki_pem(alice_key)), entry("bob", pkcs1_pem(alice_key))]
    )
    with pytest.raises(KeyStoreError, match="key 2 is listed twice"):
        KeyStore(store_path, clock)


def test_file_damaged_later_fails_closed(
    store: KeyStore, store_path: Path, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", spki_pem(alice_key))
    store_path.write_text("{")
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        store.keys()
    with pytest.raises(KeyStoreError, match="not valid JSON"):
        store.register("bob", spki_pem(bob_key))
    assert store_path.read_text() == "{"


def test_group_writable_file_is_not_trusted(
    store: KeyStore, store_path: Path, clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", spki_pem(alice_key))
    store_path.chmod(0o620)
    with pytest.raises(KeyStoreError, match="writable by group or others"):
        KeyStore(store_path, clock)
    # A store already in use notices the change of mode too.
    with pytest.raises(KeyStoreError, match="writable by group or others"):
        store.keys()
    store_path.chmod(0o644)
    assert store.users_with_keys() == {"alice"}


def test_a_directory_is_not_a_store(tmp_path: Path, clock: Clock) -> None:
    with pytest.raises(KeyStoreError, match="not a regular file"):
        KeyStore(tmp_path, clock)


def test_failed_write_changes_nothing(
    store: KeyStore,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    alice_key: rsa.RSAPrivateKey,
    bob_key: rsa.RSAPrivateKey,
) -> None:
    store.register("alice", spki_pem(alice_key))
    before = store_path.read_bytes()

    def fail(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyStoreError, match="cannot write: No space left on device"):
        store.register("bob", spki_pem(bob_key))
    with pytest.raises(KeyStoreError, match="cannot write"):
        store.revoke(spki_pem(alice_key))
    assert store.users_with_keys() == {"alice"}
    assert store_path.read_bytes() == before
    assert sorted(os.listdir(store_path.parent)) == [store_path.name, store_path.name + ".lock"]


# --------------------------------------------------------------------------------------------
# Challenges


def test_issue_gives_fresh_url_safe_strings(clock: Clock) -> None:
    """245 characters: sysadm's Qt client overflows its buffer below 128, and a 2048-bit
    key signs at most 245 bytes."""
    challenges = Challenges(clock, per_address=50)
    strings = {challenges.issue(IP) for _ in range(50)}
    assert len(strings) == 50
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert all(len(s) == TEST_STRING_LENGTH == 245 and set(s) <= alphabet for s in strings)
    assert len(challenges) == 50


def test_round_trip_logs_in_the_owner_of_the_key(
    clock: Clock, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    challenges = Challenges(clock)
    keys = [("alice", alice_key.public_key()), ("bob", bob_key.public_key())]
    test_string = challenges.issue(IP)
    assert challenges.verify(IP, sign_challenge(bob_key, test_string), keys) == "bob"
    assert len(challenges) == 0


def test_round_trip_through_the_store(
    store: KeyStore, clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    store.register("alice", b64(spki_pem(alice_key)))
    challenges = Challenges(clock)
    assert (
        challenges.verify(IP, sign_challenge(alice_key, challenges.issue(IP)), store.keys())
        == "alice"
    )
    store.revoke(spki_pem(alice_key))
    assert (
        challenges.verify(IP, sign_challenge(alice_key, challenges.issue(IP)), store.keys()) is None
    )


def test_wrong_key_is_refused_and_the_string_stays_live(
    clock: Clock, alice_key: rsa.RSAPrivateKey, bob_key: rsa.RSAPrivateKey
) -> None:
    challenges = Challenges(clock)
    test_string = challenges.issue(IP)
    signed_by_bob = sign_challenge(bob_key, test_string)
    assert challenges.verify(IP, signed_by_bob, [("alice", alice_key.public_key())]) is None
    assert challenges.verify(IP, signed_by_bob, []) is None
    assert len(challenges) == 1
    assert challenges.verify(IP, signed_by_bob, [("bob", bob_key.public_key())]) == "bob"


def test_expired_string_is_refused(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    challenges = Challenges(clock)
    keys = [("alice", alice_key.public_key())]
    early, late = challenges.issue(IP), challenges.issue(IP)
    clock.advance(29.9)
    assert challenges.verify(IP, sign_challenge(alice_key, early), keys) == "alice"
    clock.advance(0.2)
    assert challenges.verify(IP, sign_challenge(alice_key, late), keys) is None
    assert len(challenges) == 0


def test_custom_lifetime(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    challenges = Challenges(clock, lifetime=5)
    keys = [("alice", alice_key.public_key())]
    test_string = challenges.issue(IP)
    clock.advance(5)
    assert challenges.verify(IP, sign_challenge(alice_key, test_string), keys) is None


def test_a_signature_works_once(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    challenges = Challenges(clock)
    keys = [("alice", alice_key.public_key())]
    signed = sign_challenge(alice_key, challenges.issue(IP))
    challenges.issue(IP)  # another live string must not make the replay work
    assert challenges.verify(IP, signed, keys) == "alice"
    assert challenges.verify(IP, signed, keys) is None


def test_a_string_never_issued_is_refused(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    challenges = Challenges(clock)
    keys = [("alice", alice_key.public_key())]
    challenges.issue(IP)
    assert challenges.verify(IP, sign_challenge(alice_key, "x" * 32), keys) is None
    assert challenges.verify(IP, sign_challenge(alice_key, ""), keys) is None


def test_nothing_issued_means_nothing_verifies(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    challenges = Challenges(clock)
    signed = sign_challenge(alice_key, "anything")
    assert challenges.verify(IP, signed, [("alice", alice_key.public_key())]) is None


@pytest.mark.parametrize(
    "encrypted",
    [
        "",
        "!!!!",
        "QUJD",  # valid base64 of the wrong length for any key
        "QUJDRA",  # missing padding
        "QUJD\u00e9",
        "-_-_",  # URL-safe alphabet is not what sysadm's client sends
        "A" * 5000,
        None,
        42,
    ],
)
def test_bad_input_gives_none(
    clock: Clock, alice_key: rsa.RSAPrivateKey, encrypted: object
) -> None:
    challenges = Challenges(clock)
    challenges.issue(IP)
    keys = [("alice", alice_key.public_key())]
    assert challenges.verify(IP, encrypted, keys) is None  # type: ignore[arg-type]
    assert len(challenges) == 1


def test_garbage_of_the_right_length_gives_none(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    challenges = Challenges(clock)
    challenges.issue(IP)
    keys = [("alice", alice_key.public_key())]
    for blob in (b"\x00" * 256, b"\x01" * 256, b"\xff" * 256):
        assert challenges.verify(IP, base64.b64encode(blob).decode(), keys) is None


def test_signature_with_line_breaks_is_accepted(clock: Clock, alice_key: rsa.RSAPrivateKey) -> None:
    # `openssl base64` wraps its output at 64 characters.
    challenges = Challenges(clock)
    signed = sign_challenge(alice_key, challenges.issue(IP))
    wrapped = "\n".join(signed[i : i + 64] for i in range(0, len(signed), 64)) + "\n"
    assert challenges.verify(IP, wrapped, [("alice", alice_key.public_key())]) == "alice"


def test_per_address_bound_drops_that_address_s_oldest(
    clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    challenges = Challenges(clock, per_address=3)
    keys = [("alice", alice_key.public_key())]
    other = challenges.issue(OTHER)
    issued = [challenges.issue(IP) for _ in range(5)]
    assert len(challenges) == 4
    assert challenges.verify(IP, sign_challenge(alice_key, issued[0]), keys) is None
    assert challenges.verify(IP, sign_challenge(alice_key, issued[1]), keys) is None
    assert challenges.verify(IP, sign_challenge(alice_key, issued[4]), keys) == "alice"
    assert challenges.verify(IP, sign_challenge(alice_key, issued[2]), keys) == "alice"
    assert challenges.verify(OTHER, sign_challenge(alice_key, other), keys) == "alice"


def test_a_flood_of_challenges_fails_nobody_else_s_login(
    clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    """When the table is full, new first stages are refused; live strings stay live."""
    challenges = Challenges(clock, max_live=10, per_address=2)
    keys = [("alice", alice_key.public_key())]
    victim = challenges.issue(OTHER)
    clock.advance(5)
    flooded = 0
    for n in range(100):
        try:
            challenges.issue(f"198.51.100.{n}")
        except ChallengesFull as e:
            assert e.seconds == pytest.approx(CHALLENGE_LIFETIME - 5)
            continue
        flooded += 1
    assert flooded == 9
    assert challenges.verify(OTHER, sign_challenge(alice_key, victim), keys) == "alice"


def test_a_string_is_good_only_from_the_address_it_was_issued_to(
    clock: Clock, alice_key: rsa.RSAPrivateKey
) -> None:
    challenges = Challenges(clock)
    keys = [("alice", alice_key.public_key())]
    signed = sign_challenge(alice_key, challenges.issue(IP))
    assert challenges.verify(OTHER, signed, keys) is None
    assert challenges.verify(IP, signed, keys) == "alice"


def test_expired_strings_do_not_count_against_max_live(clock: Clock) -> None:
    challenges = Challenges(clock, max_live=2)
    challenges.issue(IP)
    challenges.issue(IP)
    clock.advance(31)
    assert len(challenges) == 0
    challenges.issue(IP)
    assert len(challenges) == 1


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="lifetime"):
        Challenges(Clock(), lifetime=0)
    with pytest.raises(ValueError, match="max_live"):
        Challenges(Clock(), max_live=0)
    with pytest.raises(ValueError, match="per_address"):
        Challenges(Clock(), per_address=0)


# --------------------------------------------------------------------------------------------
# The client side


def test_sign_challenge_is_what_openssl_rsa_private_encrypt_makes(
    tmp_path: Path, alice_key: rsa.RSAPrivateKey
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not on PATH")
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        alice_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    test_string = "Q3xa9LrT0bYh2kP7mWcZ-_"
    # No -digest: pkeyutl pads the raw input as PKCS#1 v1.5 type 1, as RSA_private_encrypt.
    result = subprocess.run(
        [
            openssl,
            "pkeyutl",
            "-sign",
            "-inkey",
            str(key_file),
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
        ],
        input=test_string.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    # Type-1 padding is deterministic, so the two must agree byte for byte.
    assert base64.b64decode(sign_challenge(alice_key, test_string)) == result.stdout
    recovered = alice_key.public_key().recover_data_from_signature(
        result.stdout, padding.PKCS1v15(), None
    )
    assert recovered == test_string.encode()


def test_sign_challenge_shape_and_limits(alice_key: rsa.RSAPrivateKey) -> None:
    signed = base64.b64decode(sign_challenge(alice_key, "abc"), validate=True)
    assert len(signed) == 256
    public = alice_key.public_key().public_numbers()
    block = pow(int.from_bytes(signed, "big"), public.e, public.n).to_bytes(256, "big")
    assert block == b"\x00\x01" + b"\xff" * 250 + b"\x00abc"
    assert sign_challenge(alice_key, "x" * 245)  # k - 11 bytes is the most that fits
    with pytest.raises(ValueError, match="at most 245"):
        sign_challenge(alice_key, "x" * 246)
    with pytest.raises(TypeError, match="RSA private key"):
        sign_challenge(ec.generate_private_key(ec.SECP256R1()), "abc")  # type: ignore[arg-type]
