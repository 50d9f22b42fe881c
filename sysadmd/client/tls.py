"""TLS for the client: certificate pinning (ssh-style known hosts) or CA verification.

Two modes, and neither ever accepts a certificate silently:

* :class:`PinnedTLS`: the server's certificate must have the SHA-256 fingerprint pinned for
  ``host:port`` in a known-hosts file (default ``~/.config/sysadm/known_hosts``). The pin is
  checked by the OpenSSL verify callback on the depth-0 certificate, inside the handshake, so
  a peer that does not match never sees a byte of the WebSocket upgrade, let alone a password
  or token. A host without a pin is refused with :class:`~sysadmd.client.errors.UnknownHost`
  (which carries the presented fingerprint) unless the caller accepts a given fingerprint or
  opted in to trust on first use; the pin is then saved. A pin that does not match is refused
  with :class:`~sysadmd.client.errors.FingerprintMismatch` and is never replaced automatically.
* :class:`CATLS`: the certificate must chain to a CA in a PEM bundle (or the platform's trust
  store) and be valid for the host name, checked by service-identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from zope.interface import implementer

from sysadmd.client.errors import (
    ClientError,
    FingerprintMismatch,
    TLSVerificationFailed,
    UnknownHost,
)
from sysadmd.shared import FileStore

__all__ = [
    "CATLS",
    "KnownHosts",
    "PinnedTLS",
    "TLSMode",
    "default_config_dir",
    "fingerprint_of_der",
    "format_address",
    "normalize_fingerprint",
]

_FINGERPRINT: Final = re.compile(r"[0-9A-F]{64}")
_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700


def default_config_dir() -> Path:
    """``$SYSADM_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/sysadm``, else ``~/.config/sysadm``."""
    explicit = os.environ.get("SYSADM_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "sysadm"


def format_address(host: str, port: int) -> str:
    """``host:port`` as known-hosts keys and messages write it (``[::1]:12150`` for IPv6)."""
    host = host.strip().lower().strip("[]")
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def fingerprint_of_der(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, ``AA:BB:...`` as the daemon logs it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    """``AA:BB:...`` from a fingerprint written with or without colons, in any case.

    A leading ``SHA256:`` or ``sha256=`` (as some tools print it) is allowed. Raises
    :class:`ClientError` for anything that is not 32 hexadecimal bytes.
    """
    value = text.strip()
    for prefix in ("sha256:", "sha256=", "sha-256:", "sha-256="):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    digits = value.replace(":", "").replace(" ", "").upper()
    if not _FINGERPRINT.fullmatch(digits):
        raise ClientError(
            f"not a SHA-256 fingerprint: {text.strip()!r} (expected 32 hex bytes, AA:BB:...)"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2))


class KnownHosts:
    """A known-hosts file: one ``host:port FINGERPRINT`` line per pinned server.

    Lines starting with ``#`` and blank lines are ignored. The file is kept by a
    :class:`~sysadmd.shared.FileStore`: it is re-read only when it changed, every change holds
    the exclusive lock on ``known_hosts.lock`` beside it (so two clients pinning at once both
    keep their pin), and the file and its directory are created on the first pin, with
    modes 0600 and 0700.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = FileStore(
            path,
            parse=self._parse,
            serialize=_serialize_pins,
            empty=dict,
            invalid=ClientError,
            mode=_FILE_MODE,
            directory_mode=_DIR_MODE,
        )

    @classmethod
    def default(cls) -> KnownHosts:
        """The known-hosts file in :func:`default_config_dir`."""
        return cls(default_config_dir() / "known_hosts")

    def entries(self) -> dict[str, str]:
        """Every pin, address to fingerprint, in file order."""
        try:
            return dict(self._file.read())
        except OSError as e:
            raise ClientError(f"{self.path}: cannot read: {e.strerror}") from None

    def _parse(self, data: bytes) -> dict[str, str]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(f"{self.path}: not UTF-8 text") from None
        pins: dict[str, str] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ClientError(f"{self.path}:{number}: expected 'host:port FINGERPRINT'")
            pins[parts[0].lower()] = normalize_fingerprint(parts[1])
        return pins

    def get(self, address: str) -> str | None:
        """The fingerprint pinned for ``address`` (``host:port``), or None."""
        return self.entries().get(address.lower())

    def add(self, address: str, fingerprint: str) -> None:
        """Pin ``fingerprint`` for ``address``; refuses to replace a different pin."""
        fingerprint = normalize_fingerprint(fingerprint)
        with self._changing():
            pins = self.entries()
            pinned = pins.get(address.lower())
            if pinned is not None and pinned != fingerprint:
                raise FingerprintMismatch(address, pinned, fingerprint, self.path)
            pins[address.lower()] = fingerprint
            self._write(pins)

    def remove(self, address: str) -> bool:
        """Forget the pin of ``address``; whether there was one."""
        with self._changing():
            pins = self.entries()
            if pins.pop(address.lower(), None) is None:
                return False
            self._write(pins)
            return True

    def _changing(self) -> contextlib.AbstractContextManager[None]:
        return self._file.locked(lambda e: ClientError(f"{self.path}: cannot write: {e.strerror}"))

    def _write(self, pins: dict[str, str]) -> None:
        try:
            self._file.write(pins)
        except OSError as e:
            raise ClientError(f"{self.path}: cannot write: {e.strerror}") from None


def _serialize_pins(pins: dict[str, str]) -> bytes:
    lines = ["# sysadm known hosts: host:port SHA-256-fingerprint\n"]
    lines += [f"{address} {fp}\n" for address, fp in pins.items()]
    return "".join(lines).encode("utf-8")


@dataclass(frozen=True)
class PinnedTLS:
    """Pin the server's certificate by fingerprint, in ``known_hosts``.

    ``accept``: a fingerprint the caller checked out of band; a host without a pin is
    accepted (and pinned) if it presents exactly this one. ``trust_on_first_use``: a host
    without a pin is accepted (and pinned) whatever it presents. Neither ever overrides an
    existing pin.
    """

    known_hosts: KnownHosts = field(default_factory=KnownHosts.default)
    accept: str | None = None
    trust_on_first_use: bool = False


@dataclass(frozen=True)
class CATLS:
    """Verify the certificate chain against ``ca_file`` (PEM, one or more certificates; None:
    the platform's trust store) and check that it is valid for the host name."""

    ca_file: Path | None = None


TLSMode = PinnedTLS | CATLS


@implementer(IOpenSSLClientConnectionCreator)
class PinCheck:
    """The TLS connection creator of one pinned connection, and what its handshake saw.

    The verify callback accepts the handshake only if the depth-0 certificate's fingerprint
    is ``expected`` (or anything when ``expected`` is None and ``accept_any`` is set). It
    records the fingerprint presented, so that a refused handshake can be explained.
    """

    def __init__(self, hostname: str, expected: str | None, *, accept_any: bool) -> None:
        self.expected = expected
        self.accept_any = accept_any
        self.presented: str | None = None
        self.refused = False
        self._hostname = hostname
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        self._context = context

    def _verify(self, connection: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
        # OpenSSL's own verdict (a self-signed certificate fails it) is not used: the pin is
        # the trust decision. Certificates above the leaf are not looked at.
        if depth != 0:
            return True
        der = cert.to_cryptography().public_bytes(serialization.Encoding.DER)
        self.presented = fingerprint_of_der(der)
        if self.expected is None:
            accepted = self.accept_any
        else:
            accepted = hmac.compare_digest(self.presented, self.expected)
        if not accepted:
            self.refused = True
        return accepted

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not _is_ip(self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("idna"))
        return connection

    def explain(self, address: str, known_hosts: KnownHosts) -> ClientError | None:
        """The error for a handshake this check refused, or None if it did not refuse."""
        if not self.refused or self.presented is None:
            return None
        if self.expected is None:
            return UnknownHost(address, self.presented)
        pinned = known_hosts.get(address)
        if pinned is not None:
            return FingerprintMismatch(address, pinned, self.presented, known_hosts.path)
        return TLSVerificationFailed(
            f"{address} presented the certificate {self.presented}, not the one accepted "
            f"({self.expected}); refusing to connect"
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def ca_options(hostname: str, ca_file: Path | None) -> IOpenSSLClientConnectionCreator:
    """TLS options that verify the chain against ``ca_file`` (or the platform) and the name."""
    if ca_file is None:
        return optionsForClientTLS(hostname.strip("[]"), trustRoot=platformTrust())
    try:
        data = ca_file.read_bytes()
    except OSError as e:
        raise ClientError(f"{ca_file}: cannot read the CA bundle: {e.strerror}") from None
    try:
        certificates = [
            Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM))
            for c in x509.load_pem_x509_certificates(data)
        ]
    except ValueError:
        raise ClientError(f"{ca_file}: not a PEM certificate bundle") from None
    trust = trustRootFromCertificates(certificates)
    return optionsForClientTLS(hostname.strip("[]"), trustRoot=trust)
