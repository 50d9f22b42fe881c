"""Tests for sysadmd.transport._tls: the daemon's own key and certificate and the ssl: listener
strings."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import VerificationError
from support import async_test
from twisted.internet import endpoints, protocol
from twisted.internet import reactor as _global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ISystemHandle,
    ITransport,
)
from twisted.internet.ssl import Certificate, CertificateOptions, TLSVersion, optionsForClientTLS
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from sysadmd.transport._tls import (
    CERT_FILE,
    KEY_FILE,
    TLSError,
    TLSFiles,
    certificate_fingerprint,
    ensure_certificate,
    needs_default_certificate,
    split_tls_endpoint,
    with_default_certificate,
)

HOSTNAME = "sysadmd.test"
TIMEOUT = 5.0  # seconds for any one live connection


class _Reactor(IReactorTCP, IReactorTime):
    """Only for typing: the global reactor provides both interfaces."""


reactor = cast(_Reactor, _global_reactor)


# --------------------------------------------------------------------------------------------
# Helpers and fixtures


@dataclass(frozen=True)
class Pair:
    """A generated key and certificate kept aside, to be copied into test directories."""

    files: TLSFiles
    key_pem: bytes
    cert_pem: bytes

    def install(self, directory: Path, *, key: bool = True, cert: bool = True) -> None:
        """Copy this pair (or one half of it) into ``directory`` with the daemon's modes."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if key:
            (directory / KEY_FILE).write_bytes(self.key_pem)
            (directory / KEY_FILE).chmod(0o600)
        if cert:
            (directory / CERT_FILE).write_bytes(self.cert_pem)
            (directory / CERT_FILE).chmod(0o644)


def _make_pair(directory: Path) -> Pair:
    files = ensure_certificate(directory, HOSTNAME)
    return Pair(files, files.key_path.read_bytes(), files.cert_path.read_bytes())


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """One pair for the whole module: RSA generation is the slow part of these tests."""
    return _make_pair(tmp_path_factory.mktemp("pair") / "tls")


@pytest.fixture(scope="module")
def other_pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """A second, unrelated pair, for mismatch tests."""
    return _make_pair(tmp_path_factory.mktemp("other") / "tls")


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _load(files: TLSFiles) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(files.key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(files.cert_path.read_bytes())


def _matches(files: TLSFiles) -> bool:
    key, cert = _load(files)
    return (
        key.public_key().public_numbers()
        == cast(rsa.RSAPublicKey, cert.public_key()).public_numbers()
    )


# --------------------------------------------------------------------------------------------
# ensure_certificate: creation


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_first_call_creates_files_with_exact_modes(tmp_path: Path, umask: int) -> None:
    directory = tmp_path / "state" / "tls"  # the parent is missing too

    with _umask(umask):
        files = ensure_certificate(directory, HOSTNAME)

    assert files.created is True
    assert files.reason is not None and "do not exist" in files.reason
    assert files.key_path == directory / "key.pem"
    assert files.cert_path == directory / "cert.pem"
    assert _mode(directory) == 0o700
    assert _mode(files.key_path) == 0o600
    assert _mode(files.cert_path) == 0o644
    assert sorted(p.name for p in directory.iterdir()) == ["cert.pem", "key.pem"]  # no temp files
    assert files.key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert _matches(files)


def test_key_is_never_written_while_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte of the key goes to a temp file in the same directory that is already 0600."""
    real_write = os.write
    writes: list[tuple[Path, int]] = []

    def recording_write(fd: int, data: Any) -> int:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        writes.append((target, stat.S_IMODE(os.fstat(fd).st_mode)))
        return real_write(fd, data)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to map descriptors to file names")
    monkeypatch.setattr(os, "write", recording_write)
    with _umask(0):
        files = ensure_certificate(tmp_path / "tls", HOSTNAME)
    monkeypatch.undo()

    key_writes = [(p, m) for p, m in writes if p.name.startswith(".key.pem.")]
    cert_writes = [(p, m) for p, m in writes if p.name.startswith(".cert.pem.")]
    assert key_writes and cert_writes
    assert len(writes) == len(key_writes) + len(cert_writes)  # nothing written in place
    assert {p.parent for p, _ in writes} == {files.key_path.parent}
    assert {m for _, m in key_writes} == {0o600}
    assert {m for _, m in cert_writes} == {0o644}


def test_certificate_contents(tmp_path: Path) -> None:
    now = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    files = ensure_certificate(tmp_path / "tls", "Box.Example.org", now=now)
    key, cert = _load(files)

    assert key.key_size == 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "box.example.org"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "sysadmd"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)  # self-signed with its own key
    assert cert.not_valid_before_utc == now - timedelta(hours=1)
    assert cert.not_valid_after_utc == now + timedelta(days=3650) == files.not_after
    assert cert.serial_number > 2**64  # random, not a counter

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["box.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]

    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is False

    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment
    assert not (usage.key_cert_sign or usage.crl_sign or usage.content_commitment)

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]

    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def test_ip_address_hostname_goes_into_an_ip_san(tmp_path: Path) -> None:
    files = ensure_certificate(tmp_path / "tls", "192.0.2.7")
    _, cert = _load(files)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.7"),
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_fingerprint_format(pair: Pair) -> None:
    der = x509.load_pem_x509_certificate(pair.cert_pem).public_bytes(serialization.Encoding.DER)
    hexdigest = hashlib.sha256(der).hexdigest().upper()
    expected = ":".join(hexdigest[i : i + 2] for i in range(0, 64, 2))

    assert pair.files.fingerprint == expected
    assert certificate_fingerprint(pair.cert_pem) == expected
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", expected)


def test_certificate_fingerprint_rejects_non_certificates(pair: Pair) -> None:
    with pytest.raises(ValueError):
        certificate_fingerprint(pair.key_pem)


# --------------------------------------------------------------------------------------------
# ensure_certificate: reuse and replacement


def test_later_calls_reuse_the_same_bytes(tmp_path: Path, pair: Pair) -> None:
    directory = tmp_path / "tls"
    pair.install(directory)
    inodes = {p: p.stat().st_ino for p in directory.iterdir()}

    first = ensure_certificate(directory, HOSTNAME)
    second = ensure_certificate(directory, "another-name.test")  # the name alone changes nothing

    for files in (first, second):
        assert files.created is False
        assert files.reason is None
        assert files.fingerprint == pair.files.fingerprint
        assert files.not_after == pair.files.not_after
    assert (directory / KEY_FILE).read_bytes() == pair.key_pem
    assert (directory / CERT_FILE).read_bytes() == pair.cert_pem
    assert {p: p.stat().st_ino for p in directory.iterdir()} == inodes  # not even rewritten


def _assert_replaced(files: TLSFiles, pair: Pair, reason: str) -> None:
    assert files.created is True
    assert files.reason is not None and reason in files.reason, files.reason
    assert files.fingerprint != pair.files.fingerprint
    assert files.key_path.read_bytes() != pair.key_pem
    assert certificate_fingerprint(files.cert_path.read_bytes()) == files.fingerprint
    assert _mode(files.key_path) == 0o600
    assert _matches(files)


def test_expired_certificate_is_replaced(tmp_path: Path, pair: Pair) -> None:
    directory = tmp_path / "tls"
    pair.install(directory)
    later = pair.files.not_after + timedelta(days=365)

    files = ensure_certificate(directory, HOSTNAME, now=later)

    _assert_replaced(files, pair, "expired")
    assert str(directory / CERT_FILE) in (files.reason or "")
    assert files.not_after == (later + timedelta(days=3650)).replace(microsecond=0)


def test_certificate_expiring_within_seven_days_is_replaced(tmp_path: Path, pair: Pair) -> None:
    directory = tmp_path / "tls"
    pair.install(directory)

    kept = ensure_certificate(directory, HOSTNAME, now=pair.files.not_after - timedelta(days=8))
    assert kept.created is False

    files = ensure_certificate(directory, HOSTNAME, now=pair.files.not_after - timedelta(days=6))
    _assert_replaced(files, pair, "within 7 days")


def test_certificate_not_yet_valid_is_replaced(tmp_path: Path, pair: Pair) -> None:
    directory = tmp_path / "tls"
    pair.install(directory)
    earlier = pair.files.not_after - timedelta(days=3650 + 30)

    files = ensure_certificate(directory, HOSTNAME, now=earlier)

    _assert_replaced(files, pair, "not valid until")


def test_certificate_of_another_key_is_replaced(
    tmp_path: Path, pair: Pair, other_pair: Pair
) -> None:
    directory = tmp_path / "tls"
    pair.install(directory, cert=False)
    other_pair.install(directory, key=False)

    files = ensure_certificate(directory, HOSTNAME)

    _assert_replaced(files, pair, "does not match the private key")
    assert files.fingerprint != other_pair.files.fingerprint


@pytest.mark.parametrize("missing", [KEY_FILE, CERT_FILE])
def test_missing_half_is_replaced_with_a_new_pair(tmp_path: Path, pair: Pair, missing: str) -> None:
    directory = tmp_path / "tls"
    pair.install(directory, key=missing != KEY_FILE, cert=missing != CERT_FILE)

    files = ensure_certificate(directory, HOSTNAME)

    _assert_replaced(files, pair, f"{directory / missing} does not exist")


# --------------------------------------------------------------------------------------------
# ensure_certificate: files that cannot be used


def _encrypted_key(pair: Pair) -> bytes:
    key = serialization.load_pem_private_key(pair.key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _damage_key(directory: Path, pair: Pair, how: str) -> None:
    key_path = directory / KEY_FILE
    if how == "directory":  # unreadable even for root, unlike chmod 000
        key_path.unlink()
        key_path.mkdir()
    elif how == "garbage":
        key_path.write_bytes(b"this is not a key\n")
    elif how == "empty":
        key_path.write_bytes(b"")
    elif how == "certificate":
        key_path.write_bytes(pair.cert_pem)
    elif how == "encrypted":
        key_path.write_bytes(_encrypted_key(pair))
    elif how == "dangling-link":
        key_path.unlink()
        key_path.symlink_to(directory / "nowhere.pem")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("directory", "cannot read private key: Is a directory"),
        ("garbage", "not a PEM-encoded private key"),
        ("empty", "not a PEM-encoded private key"),
        ("certificate", "not a PEM-encoded private key"),
        ("encrypted", "the private key is encrypted"),
        ("dangling-link", "cannot read private key: dangling symbolic link"),
    ],
)
def test_unusable_key_raises_naming_the_file(
    tmp_path: Path, pair: Pair, how: str, message: str
) -> None:
    directory = tmp_path / "tls"
    pair.install(directory)
    _damage_key(directory, pair, how)

    with pytest.raises(TLSError) as caught:
        ensure_certificate(directory, HOSTNAME)

    text = str(caught.value)
    assert text.startswith(f"{directory / KEY_FILE}: {message}"), text
    assert "\n" not in text
    assert (directory / CERT_FILE).read_bytes() == pair.cert_pem  # nothing was replaced


def test_unusable_key_raises_even_when_the_certificate_is_missing(
    tmp_path: Path, pair: Pair
) -> None:
    directory = tmp_path / "tls"
    pair.install(directory, cert=False)
    (directory / KEY_FILE).write_bytes(b"garbage")

    with pytest.raises(TLSError, match=r"key\.pem: not a PEM-encoded private key"):
        ensure_certificate(directory, HOSTNAME)
    assert (directory / KEY_FILE).read_bytes() == b"garbage"
    assert not (directory / CERT_FILE).exists()


def test_corrupt_certificate_raises_naming_the_file(tmp_path: Path, pair: Pair) -> None:
    directory = tmp_path / "tls"
    pair.install(directory)
    (directory / CERT_FILE).write_bytes(pair.cert_pem[:200])

    with pytest.raises(TLSError) as caught:
        ensure_certificate(directory, HOSTNAME)

    assert str(caught.value) == f"{directory / CERT_FILE}: not a PEM-encoded X.509 certificate"
    assert (directory / KEY_FILE).read_bytes() == pair.key_pem


def test_directory_that_is_a_file_raises(tmp_path: Path) -> None:
    (tmp_path / "tls").write_text("")
    with pytest.raises(TLSError) as caught:
        ensure_certificate(tmp_path / "tls", HOSTNAME)
    assert str(caught.value) == f"{tmp_path / 'tls'}: exists but is not a directory"
    assert (tmp_path / "tls").read_text() == ""


def test_directory_under_a_file_raises_naming_it(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    directory = tmp_path / "state" / "tls"
    with pytest.raises(TLSError, match=f"^{re.escape(str(directory))}: cannot create directory: "):
        ensure_certificate(directory, HOSTNAME)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_an_existing_directory_keeps_its_mode(tmp_path: Path, umask: int) -> None:
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with _umask(umask):
        ensure_certificate(directory, HOSTNAME)
    assert _mode(directory) == 0o755


# --------------------------------------------------------------------------------------------
# Endpoint strings


def _files_at(directory: Path) -> TLSFiles:
    """A TLSFiles for paths only; the string functions never touch the files."""
    return TLSFiles(
        key_path=directory / KEY_FILE,
        cert_path=directory / CERT_FILE,
        fingerprint="00",
        created=False,
        reason=None,
        not_after=datetime(2036, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    "description",
    ["ssl:12150", "ssl:port=12150:interface=127.0.0.1", "ssl:12150:interface=privateKey"],
)
def test_ssl_without_key_gets_the_default_certificate(description: str) -> None:
    files = _files_at(Path("/var/db/sysadmd/tls"))

    rewritten = with_default_certificate(description, files)

    assert rewritten == (
        f"{description}:privateKey=/var/db/sysadmd/tls/key.pem:certKey=/var/db/sysadmd/tls/cert.pem"
    )
    assert needs_default_certificate([description])


@pytest.mark.parametrize(
    "description",
    [
        "ssl:12150:privateKey=/etc/ssl/sysadmd.key:certKey=/etc/ssl/sysadmd.crt",
        "ssl:12150:privateKey=/etc/ssl/combined.pem",  # certKey defaults to privateKey
        "ssl:12150:/etc/ssl/combined.pem",  # privateKey given by position
        "tcp:0",
        "tcp:8080:interface=127.0.0.1",
        "unix:/var/run/sysadmd.sock",
        "unix:address=/tmp/ssl\\:12150",
        "tcp6:port=8443:interface=\\:\\:1",
        "ssl\\:12150",  # the type is "ssl:12150", not "ssl"
        "",
    ],
)
def test_other_descriptions_are_unchanged(description: str) -> None:
    files = _files_at(Path("/var/db/sysadmd/tls"))

    assert with_default_certificate(description, files) == description
    assert not needs_default_certificate([description])


def test_needs_default_certificate_over_several_listeners() -> None:
    assert not needs_default_certificate([])
    assert not needs_default_certificate(["tcp:8080", "unix:/run/s"])
    assert needs_default_certificate(["tcp:8080", "ssl:12150:interface=127.0.0.1"])
    assert not needs_default_certificate(["tcp:8080", "ssl:12150:privateKey=/k.pem"])


@pytest.mark.parametrize("description", ["ssl:12150:certKey=/c.pem", "ssl:12150:x=\\"])
def test_malformed_ssl_descriptions_raise(description: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(description))):
        with_default_certificate(description, _files_at(Path("/d")))
    with pytest.raises(ValueError, match=re.escape(repr(description))):
        needs_default_certificate(["tcp:0", description])


def test_colons_and_backslashes_in_paths_are_escaped() -> None:
    files = _files_at(Path("/srv/a:b\\c"))

    rewritten = with_default_certificate("ssl:12150", files)

    assert rewritten == (
        "ssl:12150:privateKey=/srv/a\\:b\\\\c/key.pem:certKey=/srv/a\\:b\\\\c/cert.pem"
    )


# --------------------------------------------------------------------------------------------
# Live TLS listeners


class _Greeter(protocol.Protocol):
    """Server side: greets and keeps a Deferred that fires when the connection is gone."""

    def __init__(self) -> None:
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"sysadmd\n")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed.callback(None)


class _Server:
    """A listener started from an endpoint string, and every connection it accepted."""

    def __init__(self) -> None:
        self.protocols: list[_Greeter] = []
        self.port: IListeningPort | None = None

    def _build(self) -> _Greeter:
        greeter = _Greeter()
        self.protocols.append(greeter)
        return greeter

    async def listen(self, description: str) -> int:
        """Listen as the daemon does: TLS applied by sysadmd over a plain TCP endpoint."""
        factory: IProtocolFactory = protocol.Factory.forProtocol(self._build)
        split = split_tls_endpoint(description)
        if split is not None:
            description, options = split
            factory = TLSMemoryBIOFactory(options, False, factory)
        endpoint = _server_from_string(reactor, description)
        self.port = await endpoint.listen(factory)
        address = self.port.getHost()
        assert isinstance(address, IPv4Address)
        return address.port

    async def close(self) -> None:
        if self.port is not None:
            stopped = self.port.stopListening()
            if stopped is not None:
                await stopped
        await DeferredList([p.closed for p in self.protocols])


@implementer(IHandshakeListener)
class _Client(protocol.Protocol):
    """Client side: waits for the greeting and notes the server's certificate."""

    def __init__(self) -> None:
        self.greeting: Deferred[bytes] = Deferred()
        self.peer_fingerprint: str | None = None
        self.version: str | None = None
        self._buffer = b""

    def handshakeCompleted(self) -> None:
        transport = cast(ISSLTransport, self.transport)
        peer = cast(X509, transport.getPeerCertificate())
        pem = peer.to_cryptography().public_bytes(serialization.Encoding.PEM)
        self.peer_fingerprint = certificate_fingerprint(pem)
        connection = cast(ISystemHandle, self.transport).getHandle()
        assert isinstance(connection, SSL.Connection)
        self.version = connection.get_protocol_version_name()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if self._buffer.endswith(b"\n") and not self.greeting.called:
            self.greeting.callback(self._buffer)
            cast(ITransport, self.transport).loseConnection()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        if not self.greeting.called:
            self.greeting.errback(reason)


# Twisted leaves these two unannotated; give them the types these tests rely on.
_server_from_string: Callable[[object, str], IStreamServerEndpoint] = endpoints.serverFromString
_connect_protocol: Callable[[IStreamClientEndpoint, _Client], Deferred[_Client]] = (
    endpoints.connectProtocol
)


async def _talk(port: int, creator: IOpenSSLClientConnectionCreator) -> _Client:
    """Connect over TLS to 127.0.0.1:port and return the client once it has been greeted."""
    endpoint = endpoints.wrapClientTLS(
        creator, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=TIMEOUT)
    )
    client = await _connect_protocol(endpoint, _Client())
    client.greeting.addTimeout(TIMEOUT, reactor)
    assert await client.greeting == b"sysadmd\n"
    return client


@implementer(IOpenSSLClientConnectionCreator)
class _RawClientTLS:
    """A client made straight from a pyOpenSSL context, for versions Twisted will not offer."""

    def __init__(self, context: SSL.Context) -> None:
        self._context = context

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        connection.set_connect_state()
        return connection


def _legacy_context(maximum: int) -> SSL.Context:
    """A client context offering TLS 1.1 (up to ``maximum``), with OpenSSL's floor lowered."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_1_VERSION)
    context.set_max_proto_version(maximum)
    # Security level 0: OpenSSL 3+ otherwise refuses to offer TLS < 1.2 at all.
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return context


@async_test
async def test_ssl_listener_serves_the_default_certificate(tmp_path: Path, pair: Pair) -> None:
    pair.install(tmp_path / "tls")
    files = ensure_certificate(tmp_path / "tls", HOSTNAME)
    root = Certificate.loadPEM(files.cert_path.read_bytes())
    server = _Server()
    port = await server.listen(with_default_certificate("ssl:0:interface=127.0.0.1", files))
    try:
        for name in ("localhost", "127.0.0.1", HOSTNAME):
            client = await _talk(port, optionsForClientTLS(name, trustRoot=root))
            assert client.peer_fingerprint == files.fingerprint

        client = await _talk(port, optionsForClientTLS("localhost", trustRoot=root))
        assert client.version == "TLSv1.3"

        with pytest.raises(VerificationError):
            await _talk(port, optionsForClientTLS("example.org", trustRoot=root))
        with pytest.raises(SSL.Error, match="certificate verify failed"):
            await _talk(port, optionsForClientTLS("localhost"))  # not in the system store
    finally:
        await server.close()


@async_test
async def test_path_with_colon_and_backslash_is_loadable(tmp_path: Path, pair: Pair) -> None:
    directory = tmp_path / "odd:dir\\name"
    pair.install(directory)
    files = ensure_certificate(directory, HOSTNAME)
    description = with_default_certificate("ssl:port=0:interface=127.0.0.1", files)
    assert "odd\\:dir\\\\name" in description
    server = _Server()
    port = await server.listen(description)  # serverFromString reads the files here
    try:
        root = Certificate.loadPEM(files.cert_path.read_bytes())
        client = await _talk(port, optionsForClientTLS("localhost", trustRoot=root))
        assert client.peer_fingerprint == pair.files.fingerprint
    finally:
        await server.close()


@async_test
async def test_ssl_listener_refuses_tls_1_1(tmp_path: Path, pair: Pair) -> None:
    pair.install(tmp_path / "tls")
    files = ensure_certificate(tmp_path / "tls", HOSTNAME)
    server = _Server()
    port = await server.listen(with_default_certificate("ssl:0:interface=127.0.0.1", files))
    try:
        # Twisted's own client limited to TLS 1.1. With OpenSSL 3+ at its default security
        # level the client refuses locally ("no protocols available") before sending anything,
        # so this alone does not prove the server's minimum; the raw clients below do.
        twisted_tls11 = CertificateOptions(
            insecurelyLowerMinimumTo=TLSVersion.TLSv1_1,
            lowerMaximumSecurityTo=TLSVersion.TLSv1_1,
        )
        with pytest.raises(SSL.Error):
            await _talk(port, twisted_tls11)

        # Control: the hand-made context completes a handshake when TLS 1.2 is allowed...
        client = await _talk(port, _RawClientTLS(_legacy_context(SSL.TLS1_2_VERSION)))
        assert client.version == "TLSv1.2"

        # ...and offering only TLS 1.1, it gets the server's protocol_version alert.
        with pytest.raises(SSL.Error) as caught:
            await _talk(port, _RawClientTLS(_legacy_context(SSL.TLS1_1_VERSION)))
        if "no protocols available" in str(caught.value):
            pytest.skip("this OpenSSL will not offer TLS 1.1 even at security level 0")
        assert "alert protocol version" in str(caught.value)
    finally:
        await server.close()


# --------------------------------------------------------------------------------------------
# Cipher suites

#: What TLS 1.2 may negotiate: ECDHE key exchange and AEAD ciphers only, as Mozilla's
#: "intermediate" profile without its DHE suites (the daemon configures no DH parameters).
FORWARD_SECRET_AEAD = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
)


def _offerable_tls12_suites() -> list[str]:
    """Every TLS 1.2 suite this OpenSSL can put in a ClientHello on its own.

    Suites the client refuses locally (those that need a pre-shared key or an SRP password,
    ciphers this OpenSSL build does not provide) are left out: they prove nothing about
    the server.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_cipher_list(b"ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    names = SSL.Connection(context, None).get_cipher_list()
    return [n for n in names if not n.startswith("TLS_") and _client_hello_offers(n)]


def _client_hello_offers(suite: str) -> bool:
    """Whether a client limited to ``suite`` writes a ClientHello (no local refusal)."""
    connection = SSL.Connection(_one_suite_context(suite), None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        return True
    except SSL.Error:
        return False
    return True  # pragma: no cover - a handshake cannot finish without a server


def _one_suite_context(suite: str) -> SSL.Context:
    """A TLS 1.2-only client context that offers ``suite`` and nothing else."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(f"{suite}:@SECLEVEL=0".encode())
    return context


def _ecdsa_pair(directory: Path) -> tuple[Path, Path]:
    """A P-256 key and a self-signed certificate for localhost, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = directory / "ec-key.pem", directory / "ec-cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.mark.parametrize("key_type", ["RSA", "ECDSA"])
@async_test
async def test_tls_1_2_negotiates_only_forward_secret_aead_suites(
    tmp_path: Path, pair: Pair, key_type: str
) -> None:
    """A TLS 1.2 client offering one suite at a time: every suite outside the ECDHE +
    AES-GCM/CHACHA20-POLY1305 set fails the handshake (static RSA, CBC, SHA-1, DHE,
    anonymous, NULL...), and every suite of that set that the key can sign succeeds."""
    if key_type == "RSA":
        pair.install(tmp_path / "tls")
        files = ensure_certificate(tmp_path / "tls", HOSTNAME)
        description = with_default_certificate("ssl:0:interface=127.0.0.1", files)
    else:
        key_path, cert_path = _ecdsa_pair(tmp_path / "ec")
        description = f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}"
    suites = _offerable_tls12_suites()
    assert set(suites) >= FORWARD_SECRET_AEAD
    assert {"AES128-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"} <= set(suites)
    server = _Server()
    port = await server.listen(description)
    accepted: set[str] = set()
    try:
        for suite in suites:
            try:
                client = await _talk(port, _RawClientTLS(_one_suite_context(suite)))
            except SSL.Error as e:
                assert "handshake failure" in str(e) or "no shared cipher" in str(e), (suite, e)
                continue
            assert client.version == "TLSv1.2"
            accepted.add(suite)
    finally:
        await server.close()
    assert accepted == {s for s in FORWARD_SECRET_AEAD if (f"-{key_type}-" in s)}


@async_test
async def test_tls_1_3_still_works(tmp_path: Path, pair: Pair) -> None:
    """TLS 1.3 suites (all AEAD) are left as OpenSSL offers them."""
    pair.install(tmp_path / "tls")
    files = ensure_certificate(tmp_path / "tls", HOSTNAME)
    server = _Server()
    port = await server.listen(with_default_certificate("ssl:0:interface=127.0.0.1", files))
    try:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_3_VERSION)
        client = await _talk(port, _RawClientTLS(context))
        assert client.version == "TLSv1.3"
    finally:
        await server.close()


# --------------------------------------------------------------------------------------------
# Certificate chains


def _chain_certificate(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def test_extra_cert_chain_holds_every_certificate_of_the_file(tmp_path: Path) -> None:
    files = ensure_certificate(tmp_path, HOSTNAME)
    chain = tmp_path / "chain.pem"
    names = ["Intermediate CA", "Root CA"]
    chain.write_bytes(
        b"a comment before the first certificate\r\n"
        + b"".join(_chain_certificate(n).public_bytes(serialization.Encoding.PEM) for n in names)
    )
    split = split_tls_endpoint(
        f"ssl:0:privateKey={files.key_path}:certKey={files.cert_path}:extraCertChain={chain}"
    )
    assert split is not None
    extra = split[1].extraCertChain
    subjects = [c.to_cryptography().subject.rfc4514_string() for c in extra]
    assert subjects == [f"CN={name}" for name in names]


def test_a_chain_file_without_a_certificate_is_refused(tmp_path: Path) -> None:
    """A chain file that holds no certificate is an error naming it, not an empty chain."""
    files = ensure_certificate(tmp_path, HOSTNAME)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(files.key_path.read_bytes())  # a key, no certificate
    with pytest.raises(TLSError, match=f"{re.escape(str(chain))}: not a PEM certificate chain"):
        split_tls_endpoint(
            f"ssl:0:privateKey={files.key_path}:certKey={files.cert_path}:extraCertChain={chain}"
        )
