"""TLS to the router: the host verifies a wss:// router against a CA file or a pinned
fingerprint, during the handshake, and refuses any other certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import async_test
from twisted.internet import reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from sysadmd.fleet import FleetTLSError, router_tls
from sysadmd.transport import tls


class _Greeter(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"hello")


class _Reader(Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.ended: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.ended = reason


async def _exchange(server: tls.TLSFiles, creator: object) -> bytes:
    """Bytes a client using ``creator`` reads from a TLS server with ``server``'s pair."""
    split = tls.split_tls_endpoint(
        f"ssl:0:interface=127.0.0.1:privateKey={server.key_path}:certKey={server.cert_path}"
    )
    assert split is not None
    options = split[1]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        TLSMemoryBIOFactory(options, False, Factory.forProtocol(_Greeter))
    )
    try:
        reader = _Reader()
        endpoint = wrapClientTLS(
            creator,  # type: ignore[arg-type]
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
        )
        protocol = await endpoint.connect(Factory.forProtocol(lambda: reader))
        for _ in range(100):
            if reader.received or reader.ended is not None:
                break
            await deferLater(reactor, 0.02)
        protocol.transport.loseConnection()  # type: ignore[attr-defined]
        return reader.received
    finally:
        await port.stopListening()


@async_test
async def test_a_pinned_router_must_present_exactly_that_certificate(tmp_path: Path) -> None:
    router = tls.ensure_certificate(tmp_path / "router", "localhost")
    other = tls.ensure_certificate(tmp_path / "other", "localhost")
    pinned = router.fingerprint.replace(":", "").lower()
    assert await _exchange(router, router_tls("localhost", None, pinned)) == b"hello"
    assert await _exchange(other, router_tls("localhost", None, pinned)) == b""


@async_test
async def test_a_router_is_verified_against_the_ca_file(tmp_path: Path) -> None:
    router = tls.ensure_certificate(tmp_path / "router", "localhost")
    other = tls.ensure_certificate(tmp_path / "other", "localhost")
    trusted = router_tls("localhost", router.cert_path, "")
    assert await _exchange(router, trusted) == b"hello"
    assert await _exchange(other, router_tls("localhost", router.cert_path, "")) == b""
    # The name matters too: the router's certificate is not valid for another host name.
    assert await _exchange(router, router_tls("router.example", router.cert_path, "")) == b""


def test_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FleetTLSError, match=r"fleet\.ca_file: .* cannot be read"):
        router_tls("localhost", tmp_path / "missing.pem", "")
    (tmp_path / "empty.pem").write_text("nothing\n")
    with pytest.raises(FleetTLSError, match="holds no PEM certificate"):
        router_tls("localhost", tmp_path / "empty.pem", "")
