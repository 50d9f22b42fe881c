"""TLS to the router: verified against a CA file, the system's trust store, or a pinned
certificate fingerprint. Never unverified."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from zope.interface import implementer


class FleetTLSError(Exception):
    """The TLS settings cannot be used; the message names the key."""


@implementer(IOpenSSLClientConnectionCreator)
class PinnedRouter:
    """Accepts exactly the router certificate whose SHA-256 digest is ``fingerprint``.

    The digest is checked by OpenSSL's verify callback on the depth-0 certificate, during
    the handshake: a router that does not match never receives the host's first byte.
    """

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = bytes.fromhex(fingerprint)

    def _verify(self, connection: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
        if depth != 0:
            return True  # the chain does not matter: the leaf is pinned
        der = cert.to_cryptography().public_bytes(Encoding.DER)
        return hmac.compare_digest(hashlib.sha256(der).digest(), self._fingerprint)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        connection = SSL.Connection(context, None)
        connection.set_app_data(tlsProtocol)
        return connection


def router_tls(
    host: str, ca_file: Path | None, fingerprint: str
) -> IOpenSSLClientConnectionCreator:
    """How a ``wss://`` router at ``host`` is verified: the pinned ``fingerprint`` if any,
    else a chain to ``ca_file``'s certificates (or the system's) valid for ``host``."""
    if fingerprint:
        return PinnedRouter(fingerprint)
    if ca_file is None:
        return optionsForClientTLS(host, trustRoot=platformTrust())
    try:
        pem = ca_file.read_bytes()
    except OSError as e:
        raise FleetTLSError(f"fleet.ca_file: {ca_file} cannot be read: {e.strerror}") from None
    certificates = []
    for block in pem.split(b"-----END CERTIFICATE-----")[:-1]:
        try:
            certificates.append(Certificate.loadPEM(block + b"-----END CERTIFICATE-----\n"))
        except (SSL.Error, crypto.Error, ValueError):
            raise FleetTLSError(
                f"fleet.ca_file: {ca_file} holds a certificate that cannot be read"
            ) from None
    if not certificates:
        raise FleetTLSError(f"fleet.ca_file: {ca_file} holds no PEM certificate")
    return optionsForClientTLS(host, trustRoot=trustRootFromCertificates(certificates))
