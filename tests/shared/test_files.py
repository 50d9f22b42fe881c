"""The one file store: read when changed, changed under one lock, never half-written."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import argon2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import sysadmd.shared._files
from sysadmd.api import Role
from sysadmd.auth._accounts import AccountError, LocalAccounts
from sysadmd.auth._keys import KeyStore, KeyStoreError
from sysadmd.client.cli import SavedSession, Settings
from sysadmd.client.errors import ClientError
from sysadmd.client.profiles import Profiles, RouterProfile
from sysadmd.client.tls import KnownHosts
from sysadmd.shared._files import FileStore, NotRegularFile, json_document

FINGERPRINT = ":".join(["AB"] * 32)


def json_store(path: Path, opened: list[int] | None = None) -> FileStore[dict[str, int]]:
    def parse(data: bytes) -> dict[str, int]:
        if opened is not None:
            opened.append(1)
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("version") != 1:
            raise ValueError(f"{path}: not version 1")
        return dict(document["counts"])

    def serialize(counts: dict[str, int]) -> bytes:
        return json.dumps({"version": 1, "counts": counts}).encode()

    return FileStore(path, parse=parse, serialize=serialize, empty=dict)


def test_missing_file_is_empty_and_first_write_creates_it_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "store.json"
    store = json_store(path)
    assert store.read() == {}
    with store.locked():
        store.write({"a": 1})
    assert json_store(path).read() == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert sorted(os.listdir(path.parent)) == ["store.json", "store.json.lock"]


def test_reads_again_only_when_the_file_changed(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    opened: list[int] = []
    store = json_store(path, opened)
    other = json_store(path)
    with other.locked():
        other.write({"a": 1})
    assert store.read() == {"a": 1}
    assert store.read() == {"a": 1}
    assert len(opened) == 1
    with other.locked():
        other.write({"a": 2})
    assert store.read() == {"a": 2}
    assert len(opened) == 2
    os.chmod(path, 0o640)  # a chmod is a change too
    assert store.snapshot().mode == 0o640
    assert len(opened) == 3


def test_bad_content_is_raised_until_the_file_changes_and_never_overwritten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.json"
    path.write_text('{"version": 2}')
    store = json_store(path)
    with pytest.raises(ValueError, match="not version 1"):
        store.read()
    snapshot = store.snapshot()
    assert snapshot.value is None and isinstance(snapshot.error, ValueError)
    assert not snapshot.fresh
    with pytest.raises(ValueError, match="not version 1"), store.locked():
        store.write({**store.read(), "a": 1})
    assert path.read_text() == '{"version": 2}'


def test_a_change_needs_the_lock(tmp_path: Path) -> None:
    store = json_store(tmp_path / "store.json")
    with pytest.raises(RuntimeError, match="without holding its lock"):
        store.write({"a": 1})
    with pytest.raises(RuntimeError, match="without holding its lock"):
        store.remove()
    assert not (tmp_path / "store.json").exists()


class Refused(Exception):
    pass


def test_a_lock_that_cannot_be_taken_is_raised_as_the_owner_says(tmp_path: Path) -> None:
    """Only the failure to take the lock is translated; an error inside the block is not."""
    store = json_store(tmp_path / "store.json")
    store.lock_path.mkdir()  # the lock file cannot be opened
    with pytest.raises(IsADirectoryError), store.locked():
        pass
    with (
        pytest.raises(Refused, match=r"store\.json: cannot lock: Is a directory$") as caught,
        store.locked(lambda e: Refused(f"{store.path}: cannot lock: {e.strerror}")),
    ):
        pass
    assert isinstance(caught.value.__cause__, IsADirectoryError)
    store.lock_path.rmdir()
    with pytest.raises(PermissionError), store.locked(lambda e: Refused(str(e))):
        raise PermissionError("inside")
    with store.locked(lambda e: Refused(str(e))):  # the lock was let go
        store.write({"a": 1})
    assert store.read() == {"a": 1}


@pytest.mark.parametrize("kind", ["keys", "known hosts"])
def test_stores_name_their_file_when_the_lock_cannot_be_taken(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "store.json"
    Path(f"{path}.lock").mkdir()
    error: type[Exception] = KeyStoreError if kind == "keys" else ClientError
    change = _keys(path) if kind == "keys" else _known_hosts(path)
    message = f"^{re.escape(str(path))}: cannot (lock|write): Is a directory$"
    with pytest.raises(error, match=message):
        change()


def test_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "store.json").mkdir()
    with pytest.raises(NotRegularFile, match="not a regular file"):
        json_store(tmp_path / "store.json").read()
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotRegularFile):  # and opening the FIFO does not hang
        json_store(tmp_path / "fifo").read()


def test_concurrent_read_modify_writes_lose_nothing(tmp_path: Path) -> None:
    """Threads with stores of their own (as separate processes have) all keep their change."""
    path = tmp_path / "store.json"
    start = threading.Barrier(8)

    def bump(name: str) -> None:
        store = json_store(path)
        start.wait()
        for _ in range(10):
            with store.locked():
                counts = dict(store.read())
                counts[name] = counts.get(name, 0) + 1
                store.write(counts)

    threads = [threading.Thread(target=bump, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert json_store(path).read() == {f"t{i}": 10 for i in range(8)}


def test_the_store_module_needs_only_the_standard_library() -> None:
    """The client may import it without importing the daemon."""
    tree = ast.parse(Path(sysadmd.shared._files.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


# Every store of the project changes its file under the store's lock.


def _public_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _accounts(path: Path) -> Callable[[], object]:
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return lambda: LocalAccounts(path, hasher=hasher).add("alice", Role.ADMIN, "secret")


def _keys(path: Path) -> Callable[[], object]:
    pem = _public_key_pem()
    return lambda: KeyStore(path).register("alice", pem)


def _known_hosts(path: Path) -> Callable[[], object]:
    return lambda: KnownHosts(path).add("localhost:12150", FINGERPRINT)


def _session(path: Path) -> Callable[[], object]:
    settings = Settings(config_dir=path.parent, known_hosts_file=None, timeout=1)
    return lambda: settings.save_session(SavedSession("localhost", 12150, "alice", "t"))


def _router_profiles(path: Path) -> Callable[[], object]:
    profile = RouterProfile(router="wss://router.example/ws", realm="sysadmd", router_user="o")
    return lambda: Profiles(path.parent).save("lab", profile)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("accounts.json", _accounts),
        ("ssl_keys.json", _keys),
        ("known_hosts", _known_hosts),
        ("session.json", _session),
        ("routers.json", _router_profiles),
    ],
)
def test_every_store_writes_under_its_lock(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    make: Callable[[Path], Callable[[], object]],
) -> None:
    path = tmp_path / name
    change = make(path)
    held: list[bool] = []
    replace = os.replace

    def checking_replace(source: Any, destination: Any) -> None:
        if Path(destination) == path:
            fd = os.open(path.with_name(name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                held.append(False)
            finally:
                os.close(fd)
        replace(source, destination)

    monkeypatch.setattr(os, "replace", checking_replace)
    change()
    assert held == [True]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b'"text"', "not a sysadmd thing$"),
        (b'{"version": 2}', r"not a sysadmd thing of version 1 \(its version is 2\)"),
        (b'{"version": true}', r"of version 1 \(its version is True\)"),
        (b"{}", r"its version is None"),
    ],
)
def test_json_document_names_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        json_document(data, kind="thing", version=1)
    assert json_document(b'{"version": 1, "x": 2}', kind="thing", version=1)["x"] == 2


@pytest.mark.parametrize("name", ["accounts.json", "ssl_keys.json"])
def test_a_version_of_true_is_not_version_1(tmp_path: Path, name: str) -> None:
    """JSON's true equals 1 in Python; the stores' version check does not take it for 1."""
    path = tmp_path / name
    body = '"users": {}' if name == "accounts.json" else '"keys": []'
    path.write_text(f'{{"version": true, {body}}}')
    path.chmod(0o600)
    with pytest.raises((AccountError, KeyStoreError), match="its version is True"):
        if name == "accounts.json":
            LocalAccounts(path).users()
        else:
            KeyStore(path)
