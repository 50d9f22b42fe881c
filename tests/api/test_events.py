"""Event subscriptions and the bounded outbound buffer (sysadmd.api._hub).

The hub and the buffer are tested with fakes; then, over loopback, through a
twisted.web ``Site`` and Autobahn's ``WebSocketResource`` as in the daemon,
plain and TLS, with and without a ``ProtocolWrapper`` (the daemon's connection
caps) in front: that the buffer can be registered as the producer of a
taken-over transport, and that a client that stops reading is closed while a
fast one gets every event, in order.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import pytest
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import async_test
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IProtocolFactory,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site
from wsclient import WsClient, connect
from zope.interface import implementer
from zope.interface.verify import verifyObject

from sysadmd.api._hub import (
    TOO_SLOW_CODE,
    TOO_SLOW_REASON,
    EventHub,
    Outbound,
    attach,
    close_too_slow,
    encode_event,
)


class _Reactor(IReactorTCP, IReactorTime):
    """Only for typing: the global reactor provides both interfaces."""


reactor = cast(_Reactor, _global_reactor)

TIMEOUT: Final = 5.0  # seconds for any one wait on the network
EVENT: Final = "dispatcher"


# --------------------------------------------------------------------------------------------
# Fakes


class Recorder:
    """A subscriber that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def deliver(self, data: bytes) -> None:
        self.got.append(data)

    def events(self) -> list[Any]:
        return [json.loads(d) for d in self.got]


@dataclass(eq=True)
class EqualRecorder:
    """A subscriber that compares equal to another and is not hashable: kept apart anyway."""

    got: list[bytes] = field(default_factory=list)

    def deliver(self, data: bytes) -> None:
        self.got.append(data)


class Failing:
    """A subscriber whose connection is broken."""

    def __init__(self) -> None:
        self.calls = 0

    def deliver(self, data: bytes) -> None:
        self.calls += 1
        raise ConnectionError("gone")


class Watcher:
    """Counts on_first/on_last calls, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def first(self) -> None:
        self.calls.append("first")

    def last(self) -> None:
        self.calls.append("last")


class Wire:
    """What an Outbound sends and how often it gave up."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.give_ups = 0

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def give_up(self) -> None:
        self.give_ups += 1


# --------------------------------------------------------------------------------------------
# EventHub


def test_subscribe_skips_unknown_names_and_returns_the_known_in_order() -> None:
    hub = EventHub(["dispatcher", "life-preserver", "system-state"])
    sub = Recorder()
    assert hub.subscribe(sub, ["nope", "system-state", "dispatcher", "x"]) == [
        "system-state",
        "dispatcher",
    ]
    assert hub.subscriptions(sub) == ["dispatcher", "system-state"]
    assert hub.count("dispatcher") == 1
    assert hub.count("life-preserver") == 0
    assert hub.count("nope") == 0
    assert hub.subscribe(sub, ["nope"]) == []
    # Subscribing twice is harmless; one event still arrives once.
    assert hub.subscribe(sub, ["dispatcher"]) == ["dispatcher"]
    assert hub.count("dispatcher") == 1
    assert hub.publish("dispatcher", {}) == 1
    assert len(sub.got) == 1


def test_a_plain_string_is_one_name() -> None:
    """sysadm's client sends ``"args": "dispatcher"``; it is not split into letters."""
    hub = EventHub(["dispatcher", "guests"])
    sub = Recorder()
    assert hub.subscribe(sub, "dispatcher") == ["dispatcher"]
    assert hub.subscribe(sub, "d") == []
    assert hub.unsubscribe(sub, "dispatcher") == ["dispatcher"]
    assert hub.count("dispatcher") == 0


def test_unsubscribe_and_drop() -> None:
    hub = EventHub(["dispatcher", "guests"])
    a, b = Recorder(), Recorder()
    hub.subscribe(a, ["dispatcher", "guests"])
    hub.subscribe(b, ["dispatcher", "guests"])
    assert hub.unsubscribe(a, ["guests", "nope", "guests"]) == ["guests", "guests"]
    assert hub.subscriptions(a) == ["dispatcher"]
    assert hub.publish("guests", {"n": 1}) == 1
    assert (len(a.got), len(b.got)) == (0, 1)
    # Unsubscribing from what one never subscribed to is harmless.
    assert hub.unsubscribe(a, ["guests"]) == ["guests"]
    hub.drop(b)
    assert hub.subscriptions(b) == []
    assert (hub.count("dispatcher"), hub.count("guests")) == (1, 0)
    assert hub.publish("dispatcher", {"n": 2}) == 1
    assert (len(a.got), len(b.got)) == (1, 1)
    hub.drop(b)  # twice is harmless
    hub.drop(a)
    assert hub.publish("dispatcher", {"n": 3}) == 0


def test_subscribers_are_told_apart_by_identity() -> None:
    hub = EventHub(["dispatcher"])
    a, b = EqualRecorder(), EqualRecorder()
    assert a == b
    hub.subscribe(a, ["dispatcher"])
    hub.subscribe(b, ["dispatcher"])
    assert hub.count("dispatcher") == 2
    hub.drop(a)
    assert hub.count("dispatcher") == 1
    hub.publish("dispatcher", {})
    assert (len(a.got), len(b.got)) == (0, 1)


def test_publish_encodes_once_and_delivers_the_same_bytes_to_all() -> None:
    hub = EventHub(["dispatcher", "guests"])
    subs = [Recorder() for _ in range(3)]
    other = Recorder()
    for sub in subs:
        hub.subscribe(sub, ["dispatcher"])
    hub.subscribe(other, ["guests"])
    assert hub.publish("dispatcher", {"state": "running", "process_id": "p1"}) == 3
    first = subs[0].got[0]
    assert all(sub.got[0] is first for sub in subs)
    assert other.got == []


def test_envelope_bytes() -> None:
    """Compact JSON with sorted keys, UTF-8 and not \\u-escaped, ``id`` empty: as sysadm sent."""
    hub = EventHub(["dispatcher"])
    sub = Recorder()
    hub.subscribe(sub, ["dispatcher"])
    hub.publish("dispatcher", {"z": 1, "a": {"é": "ü", "b": [1, None, True]}})
    assert sub.got == [
        '{"args":{"a":{"b":[1,null,true],"é":"ü"},"z":1},"id":"","name":"dispatcher",'
        '"namespace":"events"}'.encode()
    ]
    assert list(json.loads(sub.got[0])) == ["args", "id", "name", "namespace"]
    assert encode_event("dispatcher", {}) == (
        b'{"args":{},"id":"","name":"dispatcher","namespace":"events"}'
    )


def test_publish_of_an_unknown_event_is_a_bug() -> None:
    hub = EventHub(["dispatcher"])
    with pytest.raises(ValueError, match="no such event"):
        hub.publish("guests", {})


def test_a_failing_subscriber_is_dropped_and_logged_and_the_others_still_get_the_event() -> None:
    hub = EventHub(["dispatcher", "guests"])
    before, failing, after = Recorder(), Failing(), Recorder()
    for sub in (before, failing, after):
        hub.subscribe(sub, ["dispatcher", "guests"])
    with capturedLogs() as events:
        assert hub.publish("dispatcher", {"n": 1}) == 2
    assert len(before.got) == len(after.got) == 1
    assert failing.calls == 1
    assert hub.subscriptions(failing) == []
    assert hub.count("guests") == 2
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_level"] == LogLevel.error
    assert failures[0]["event"] == "dispatcher"
    assert isinstance(failures[0]["log_failure"].value, ConnectionError)
    # Dropped means dropped: no second attempt.
    assert hub.publish("dispatcher", {"n": 2}) == 2
    assert failing.calls == 1


def test_a_delivery_that_drops_a_later_subscriber() -> None:
    """A subscriber dropped during a publish does not get that event."""
    hub = EventHub(["dispatcher"])
    later = Recorder()

    class Dropper(Recorder):
        def deliver(self, data: bytes) -> None:
            super().deliver(data)
            hub.drop(later)
            hub.subscribe(Recorder(), ["dispatcher"])

    first = Dropper()
    hub.subscribe(first, ["dispatcher"])
    hub.subscribe(later, ["dispatcher"])
    assert hub.publish("dispatcher", {}) == 1
    assert (len(first.got), len(later.got)) == (1, 0)


def test_watch_fires_on_zero_to_one_and_one_to_zero_only() -> None:
    hub = EventHub(["dispatcher", "guests"])
    watcher = Watcher()
    hub.watch("guests", watcher.first, watcher.last)
    a, b = Recorder(), Recorder()
    hub.subscribe(a, ["dispatcher"])
    assert watcher.calls == []
    hub.subscribe(a, ["guests"])
    assert watcher.calls == ["first"]
    hub.subscribe(b, ["guests"])
    hub.subscribe(a, ["guests"])
    hub.unsubscribe(a, ["guests"])
    assert watcher.calls == ["first"]
    hub.unsubscribe(a, ["guests"])
    hub.drop(b)
    assert watcher.calls == ["first", "last"]
    hub.drop(b)
    assert watcher.calls == ["first", "last"]
    # Again, and a failing subscriber dropped by publish counts as leaving.
    failing = Failing()
    hub.subscribe(failing, ["guests"])
    with capturedLogs():
        assert hub.publish("guests", {}) == 0
    assert watcher.calls == ["first", "last", "first", "last"]


def test_watch_of_a_name_that_already_has_subscribers() -> None:
    """The calls alternate, starting with on_first."""
    hub = EventHub(["guests"])
    a = Recorder()
    hub.subscribe(a, ["guests"])
    watcher = Watcher()
    hub.watch("guests", watcher.first, watcher.last)
    assert watcher.calls == ["first"]
    hub.drop(a)
    assert watcher.calls == ["first", "last"]
    with pytest.raises(ValueError, match="no such event"):
        hub.watch("nope", watcher.first, watcher.last)


def test_a_failing_watcher_is_logged_and_the_subscription_stands() -> None:
    hub = EventHub(["guests"])
    other = Watcher()

    def broken() -> None:
        raise RuntimeError("poller would not start")

    hub.watch("guests", broken, broken)
    hub.watch("guests", other.first, other.last)
    sub = Recorder()
    with capturedLogs() as events:
        assert hub.subscribe(sub, ["guests"]) == ["guests"]
        hub.drop(sub)
    assert other.calls == ["first", "last"]
    assert [e["event"] for e in events if "log_failure" in e] == ["guests", "guests"]


# --------------------------------------------------------------------------------------------
# Outbound


def test_outbound_is_a_push_producer() -> None:
    wire = Wire()
    assert verifyObject(IPushProducer, Outbound(wire.send, wire.give_up))


def test_outbound_sends_at_once_while_not_paused() -> None:
    wire = Wire()
    out = Outbound(wire.send, wire.give_up)
    out.deliver(b"1")
    out.deliver(b"2")
    assert wire.sent == [b"1", b"2"]
    assert out.queued_messages == 0


def test_outbound_queues_while_paused_and_flushes_in_order() -> None:
    wire = Wire()
    out = Outbound(wire.send, wire.give_up)
    out.deliver(b"a")
    out.pauseProducing()
    assert out.paused
    for data in (b"b", b"cc", b"ddd"):
        out.deliver(data)
    assert wire.sent == [b"a"]
    assert (out.queued_messages, out.queued_bytes) == (3, 6)
    out.resumeProducing()
    assert wire.sent == [b"a", b"b", b"cc", b"ddd"]
    assert (out.queued_messages, out.queued_bytes) == (0, 0)
    out.deliver(b"e")
    assert wire.sent[-1] == b"e"
    assert wire.give_ups == 0


def test_outbound_stops_flushing_when_paused_again_and_keeps_the_order() -> None:
    """The transport may pause the producer from inside a write, as Twisted's do."""
    sent: list[bytes] = []
    out: Outbound

    def send(data: bytes) -> None:
        sent.append(data)
        if data == b"2":
            out.pauseProducing()
            out.deliver(b"late")  # arrives while paused: behind the rest

    out = Outbound(send, lambda: None)
    out.pauseProducing()
    for data in (b"1", b"2", b"3"):
        out.deliver(data)
    out.resumeProducing()
    assert sent == [b"1", b"2"]
    assert out.queued_messages == 2
    out.resumeProducing()
    assert sent == [b"1", b"2", b"3", b"late"]


@pytest.mark.parametrize(
    ("max_bytes", "max_messages", "sizes", "gives_up_at"),
    [
        # Up to the bound is fine; one byte or one message past it is not.
        (10, 100, [4, 4, 2, 1], 3),
        (10, 100, [11], 0),
        (1000, 3, [1, 1, 1, 1], 3),
        (0, 0, [1], 0),
    ],
)
def test_outbound_gives_up_once_past_the_bound(
    max_bytes: int, max_messages: int, sizes: list[int], gives_up_at: int
) -> None:
    wire = Wire()
    out = Outbound(wire.send, wire.give_up, max_bytes=max_bytes, max_messages=max_messages)
    out.pauseProducing()
    with capturedLogs() as events:
        for i, size in enumerate(sizes):
            out.deliver(b"x" * size)
            assert wire.give_ups == (1 if i >= gives_up_at else 0)
        assert out.gave_up
        assert out.closed
        assert (out.queued_messages, out.queued_bytes) == (0, 0)
        # Nothing more is sent or queued, and give_up is not called again.
        for _ in range(5):
            out.deliver(b"y")
        out.resumeProducing()
    assert wire.sent == []
    assert wire.give_ups == 1
    assert out.queued_messages == 0
    assert [e["log_level"] for e in events] == [LogLevel.warn]


def test_outbound_default_bound_is_one_mebibyte_or_a_thousand_events() -> None:
    wire = Wire()
    out = Outbound(wire.send, wire.give_up)
    out.pauseProducing()
    with capturedLogs():
        for _ in range(1000):
            out.deliver(b"")
        assert wire.give_ups == 0
        out.deliver(b"")
        assert wire.give_ups == 1
    wire = Wire()
    out = Outbound(wire.send, wire.give_up)
    out.pauseProducing()
    with capturedLogs():
        out.deliver(b"x" * (1024 * 1024))
        assert wire.give_ups == 0
        out.deliver(b"x")
        assert wire.give_ups == 1


def test_outbound_give_up_may_reenter() -> None:
    """give_up closing the connection at once (stopProducing, deliver) is harmless."""
    calls: list[str] = []
    out: Outbound

    def give_up() -> None:
        calls.append("give_up")
        out.deliver(b"again")
        out.stopProducing()

    out = Outbound(lambda data: calls.append("send"), give_up, max_messages=1)
    out.pauseProducing()
    with capturedLogs():
        out.deliver(b"1")
        out.deliver(b"2")
    assert calls == ["give_up"]


def test_outbound_stop_producing_drops_everything() -> None:
    wire = Wire()
    out = Outbound(wire.send, wire.give_up)
    out.pauseProducing()
    out.deliver(b"1")
    out.stopProducing()
    assert out.closed
    assert not out.gave_up
    assert out.queued_messages == 0
    out.resumeProducing()
    out.deliver(b"2")
    assert wire.sent == []
    assert wire.give_ups == 0


def test_outbound_send_failing_while_flushing_is_logged_and_stops() -> None:
    sent: list[bytes] = []

    def send(data: bytes) -> None:
        if data == b"2":
            raise ConnectionError("gone")
        sent.append(data)

    out = Outbound(send, lambda: None)
    out.pauseProducing()
    for data in (b"1", b"2", b"3"):
        out.deliver(data)
    with capturedLogs() as events:
        out.resumeProducing()
    assert sent == [b"1"]
    assert out.closed
    assert len([e for e in events if "log_failure" in e]) == 1


def test_outbound_send_failing_at_once_propagates_to_the_hub() -> None:
    hub = EventHub(["dispatcher"])

    def send(data: bytes) -> None:
        raise ConnectionError("gone")

    out = Outbound(send, lambda: None)
    hub.subscribe(out, ["dispatcher"])
    with capturedLogs():
        assert hub.publish("dispatcher", {}) == 0
    assert hub.count("dispatcher") == 0


def test_outbound_refuses_negative_bounds() -> None:
    with pytest.raises(ValueError, match="negative"):
        Outbound(lambda data: None, lambda: None, max_bytes=-1)


# --------------------------------------------------------------------------------------------
# attach and close_too_slow, without a network


def test_attach_needs_a_transport() -> None:
    class NoTransport:
        transport = None

    with pytest.raises(TypeError, match="no transport"):
        attach(NoTransport(), Outbound(lambda data: None, lambda: None))


def test_autobahn_refuses_1008_from_send_close() -> None:
    """Why close_too_slow exists: ``sendClose(1008, ...)`` raises before sending anything."""
    with pytest.raises(Exception, match="invalid close code 1008"):
        WebSocketServerProtocol().sendClose(TOO_SLOW_CODE, TOO_SLOW_REASON)


def test_close_too_slow_sends_a_1008_close_frame() -> None:
    calls: list[dict[str, object]] = []

    class Fake:
        def sendCloseFrame(self, **kwargs: object) -> None:
            calls.append(kwargs)

    close_too_slow(Fake())
    assert calls == [{"code": 1008, "reasonUtf8": b"too slow", "isReply": False}]


# --------------------------------------------------------------------------------------------
# Over loopback: a Site with WebSocketResource, as in the daemon


@implementer(IPushProducer)
class Placeholder:
    """A producer that does nothing; used to see whether the transport takes one."""

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class EventServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """Subscribes every connection to EVENT through an attached Outbound."""

    factory: EventServerFactory

    def __init__(self) -> None:
        super().__init__()
        self.outbound: Outbound | None = None
        self.plain_register_error: Exception | None = None
        self.closed: Deferred[tuple[bool, int | None, str | None]] = Deferred()

    def onOpen(self) -> None:
        try:
            # What the daemon's protocol would have done without attach().
            self.transport.registerProducer(Placeholder(), True)
        except RuntimeError as e:
            self.plain_register_error = e
        self.outbound = outbound = Outbound(
            self._send,
            lambda: self._give_up(outbound),
            max_bytes=self.factory.max_bytes,
            max_messages=self.factory.max_messages,
        )
        attach(self, outbound)
        self.factory.hub.subscribe(outbound, [EVENT])
        self.factory.opened.put(self)

    def _send(self, data: bytes) -> None:
        self.sendMessage(data, isBinary=False)

    def _give_up(self, outbound: Outbound) -> None:
        self.factory.hub.drop(outbound)
        close_too_slow(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.outbound is not None:
            self.factory.hub.drop(self.outbound)
            self.outbound.stopProducing()
        self.closed.callback((wasClean, code, reason))


class EventServerFactory(WebSocketServerFactory):  # type: ignore[misc]
    """Holds the hub, and hands the test each server-side connection as it opens."""

    protocol = EventServerProtocol

    def __init__(self, hub: EventHub, max_bytes: int, max_messages: int) -> None:
        super().__init__()
        self.hub = hub
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.opened: DeferredQueue[EventServerProtocol] = DeferredQueue()
        self.setProtocolOptions(
            perMessageCompressionAccept=lambda offers: None,
            closeHandshakeTimeout=0.5,
        )


@dataclass(frozen=True)
class Server:
    """A listening Site and what a test needs to talk to it."""

    port: int
    hub: EventHub
    factory: EventServerFactory
    tls: IOpenSSLClientConnectionCreator | None

    async def connect(self) -> tuple[WsClient, EventServerProtocol]:
        """A client, and the server's side of its connection."""
        client = await connect("127.0.0.1", self.port, tls=self.tls)
        server_side: EventServerProtocol = await within(self.factory.opened.get())
        return client, server_side


async def within(d: Deferred[Any], seconds: float = TIMEOUT) -> Any:
    """``await d``, cancelled after ``seconds``."""
    timer = reactor.callLater(seconds, d.cancel)
    try:
        return await d
    finally:
        if timer.active():
            timer.cancel()


@dataclass(frozen=True)
class Keys:
    """A self-signed certificate for ``localhost`` and its key, in PEM."""

    cert: bytes
    key: bytes


@pytest.fixture(scope="module")
def keys() -> Keys:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Keys(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


STACKS: Final = ["tcp", "tcp+wrapper", "tls", "tls+wrapper"]


def listen(
    stack: str, keys: Keys, *, max_bytes: int = 1024 * 1024, max_messages: int = 1000
) -> tuple[Server, IListeningPort]:
    """Listen on loopback as the daemon does: ``[wrapper ->] [TLS ->] Site -> WebSocketResource``.

    The wrapper stands for the daemon's connection caps (a ``WrappingFactory``).
    """
    hub = EventHub([EVENT, "guests"])
    factory = EventServerFactory(hub, max_bytes, max_messages)
    site: IProtocolFactory = Site(WebSocketResource(factory))
    tls = None
    if stack.startswith("tls"):
        # pyOpenSSL deprecates its own X509 and PKey in favour of cryptography's
        # objects; Twisted's annotations still name the old ones.
        options = CertificateOptions(
            privateKey=cast(Any, serialization.load_pem_private_key(keys.key, None)),
            certificate=cast(Any, x509.load_pem_x509_certificate(keys.cert)),
        )
        site = TLSMemoryBIOFactory(options, False, site)
        tls = optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(keys.cert))
    if stack.endswith("+wrapper"):
        site = WrappingFactory(site)
    port = reactor.listenTCP(0, cast(Any, site), interface="127.0.0.1")
    return Server(port.getHost().port, hub, factory, tls), port  # type: ignore[attr-defined]


@pytest.fixture(params=STACKS)
def server(request: pytest.FixtureRequest, keys: Keys) -> Iterator[Server]:
    server, port = listen(request.param, keys)
    yield server
    port.stopListening()


def event(seq: int, pad: str) -> dict[str, Any]:
    """The envelope a client receives for ``publish(EVENT, {"seq": seq, "pad": pad})``."""
    return {"args": {"pad": pad, "seq": seq}, "id": "", "name": EVENT, "namespace": "events"}


@async_test
async def test_the_outbound_drives_the_taken_over_transport(server: Server) -> None:
    """The HTTP channel is still the transport's producer; attach() replaces it, and it works.

    A burst bigger than the transport's write buffer pauses the Outbound (so the
    transport does call it), and the transport resumes it as the client reads, so
    that every event arrives, in order.
    """
    client, side = await server.connect()
    assert side.outbound is not None
    # Without attach(), registering raises: the HTTPChannel that read the upgrade
    # request registered itself in connectionMade and was never unregistered.
    assert side.plain_register_error is not None
    # (over TLS the channel is wrapped in the TLS transport's producer membrane)
    assert "was never unregistered" in str(side.plain_register_error)
    out = side.outbound
    pad = "p" * 8192
    for seq in range(100):
        server.hub.publish(EVENT, {"seq": seq, "pad": pad})
    paused, queued = out.paused, out.queued_messages
    assert paused
    assert 0 < queued < 100
    for seq in range(100):
        assert await client.next() == event(seq, pad)
    assert (out.paused, out.queued_messages) == (False, 0)
    await client.close()
    await within(side.closed)
    assert side.outbound.closed
    assert server.hub.count(EVENT) == 0


@async_test
async def test_a_client_that_stops_reading_is_closed_and_the_others_get_every_event(
    server: Server,
) -> None:
    slow, slow_side = await server.connect()
    fast, fast_side = await server.connect()
    assert slow_side.outbound is not None
    assert fast_side.outbound is not None
    assert server.hub.count(EVENT) == 2
    slow.transport.pauseProducing()  # the slow client reads nothing from now on
    pad = "x" * 4096
    batch = 50  # ~200 KiB: well under the bound, so a client that reads keeps up
    gave_up_after = None
    for start in range(0, 2000, batch):
        for seq in range(start, start + batch):
            server.hub.publish(EVENT, {"seq": seq, "pad": pad})
            if gave_up_after is None and slow_side.outbound.gave_up:
                gave_up_after = seq
        for seq in range(start, start + batch):
            assert await fast.next() == event(seq, pad)
    # The kernel's and the transport's buffers took some; then the queue filled.
    assert gave_up_after is not None
    assert not fast_side.outbound.gave_up
    assert server.hub.count(EVENT) == 1
    # The close frame waits behind what the slow client never read; with no answer,
    # Autobahn drops the connection after the close handshake timeout.
    was_clean, _, _ = await within(slow_side.closed)
    assert not was_clean
    assert slow_side.localCloseCode == TOO_SLOW_CODE
    assert slow_side.wasCloseHandshakeTimeout
    assert fast_side.state == fast_side.STATE_OPEN
    slow.transport.abortConnection()
    await within(slow.closed)
    await fast.close()
