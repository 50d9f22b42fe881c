"""Events pushed to subscribed WebSocket connections, and the bound on what a slow one may hold.

sysadm's clients subscribe a connection to event names with
``{"namespace":"events","name":"subscribe","args":"dispatcher" | [...]}``; from
then on every event of those names is pushed to that connection as
``{"args":{...},"id":"","name":"<event name>","namespace":"events"}``.

:class:`EventHub` keeps who listens to what. :meth:`EventHub.publish` encodes an
event's envelope once and hands the same bytes to every subscriber.

:class:`Outbound` is what a connection subscribes with. It is an
:class:`~twisted.internet.interfaces.IPushProducer` registered with the
connection's transport: while the transport's write buffer has room, events go
straight out; once the transport pauses it, events wait in a queue, and a
connection that lets that queue grow past its bound (1 MiB or 1000 events by
default) is given up on, i.e. closed with 1008 "too slow" (:func:`close_too_slow`),
instead of holding memory or anybody else up. Replies to requests never go
through it: the client asked for them, and the in-flight cap already bounds them.

Registering the producer needs care, see :func:`attach`: when the WebSocket is
served by twisted.web (Autobahn's ``WebSocketResource``), the HTTP channel
that took the connection in is still registered as the transport's producer,
so a plain ``transport.registerProducer`` raises ``RuntimeError``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol, cast

from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from sysadmd.api import envelope

log = Logger()

#: The namespace and id sysadm put on every event it pushed.
NAMESPACE: Final = "events"
EVENT_ID: Final = ""

#: How a connection that fell too far behind is closed: 1008, "policy violation".
TOO_SLOW_CODE: Final = 1008
TOO_SLOW_REASON: Final = "too slow"


class Subscriber(Protocol):
    """Anything that takes encoded events: in the daemon, a connection's :class:`Outbound`."""

    def deliver(self, data: bytes) -> None:
        """Take one encoded event envelope (UTF-8 JSON)."""


def encode_event(name: str, args: Mapping[str, object]) -> bytes:
    """The envelope sysadm pushed for one event: compact JSON, sorted keys, UTF-8."""
    return envelope.dumps({"args": args, "id": EVENT_ID, "name": name, "namespace": NAMESPACE})


def _names_of(names: Iterable[str]) -> list[str]:
    # sysadm accepts one name as a plain string; never split it into characters.
    return [names] if isinstance(names, str) else list(names)


class EventHub:
    """Who listens to which event, and the delivery of each event to its listeners.

    Subscriptions belong to a subscriber (one per connection). Subscribers are
    told apart by identity, and kept in the order they subscribed, which is the
    order an event reaches them in.
    """

    def __init__(self, names: Iterable[str]) -> None:
        """Serve the event ``names`` the daemon has; any other name is unknown."""
        # Keyed by id(): subscribers need not be hashable, and equal ones stay distinct.
        self._subscribers: dict[str, dict[int, Subscriber]] = {n: {} for n in _names_of(names)}
        self._watchers: dict[str, list[tuple[Callable[[], None], Callable[[], None]]]] = {
            n: [] for n in self._subscribers
        }

    @property
    def names(self) -> tuple[str, ...]:
        """The event names this hub knows."""
        return tuple(self._subscribers)

    def subscribe(self, subscriber: Subscriber, names: Iterable[str]) -> list[str]:
        """Subscribe to each known name among ``names``; unknown ones are skipped.

        Returns the known names, in the order given (what sysadm's reply is made
        from: it names the last of them). Subscribing again to a name is harmless.
        """
        known = [n for n in _names_of(names) if n in self._subscribers]
        for name in known:
            listeners = self._subscribers[name]
            if id(subscriber) not in listeners:
                listeners[id(subscriber)] = subscriber
                if len(listeners) == 1:
                    self._notify(name, first=True)
        return known

    def unsubscribe(self, subscriber: Subscriber, names: Iterable[str]) -> list[str]:
        """Unsubscribe from each known name among ``names``; returns those names, in order."""
        known = [n for n in _names_of(names) if n in self._subscribers]
        for name in known:
            self._remove(name, subscriber)
        return known

    def drop(self, subscriber: Subscriber) -> None:
        """Forget ``subscriber`` for every name (its connection has closed)."""
        for name in self._subscribers:
            self._remove(name, subscriber)

    def subscriptions(self, subscriber: Subscriber) -> list[str]:
        """The names ``subscriber`` listens to, in the hub's order."""
        return [n for n, listeners in self._subscribers.items() if id(subscriber) in listeners]

    def count(self, name: str) -> int:
        """How many subscribers ``name`` has (0 for an unknown name)."""
        return len(self._subscribers.get(name, ()))

    def publish(self, name: str, args: Mapping[str, object]) -> int:
        """Push one event to every subscriber of ``name``; returns how many took it.

        The envelope is encoded once, and every subscriber is handed the very
        same bytes. A subscriber whose ``deliver`` raises is logged and dropped
        (from every name); the others still get the event.

        :raises ValueError: ``name`` is not one of the hub's names (a bug in the caller).
        """
        listeners = self._subscribers.get(name)
        if listeners is None:
            raise ValueError(f"no such event: {name!r}")
        if not listeners:
            return 0
        data = encode_event(name, args)
        delivered = 0
        # A delivery may drop or add subscribers; each one still subscribed when its
        # turn comes gets the event, and nobody who subscribes meanwhile does.
        for key, subscriber in list(listeners.items()):
            if listeners.get(key) is not subscriber:
                continue
            try:
                subscriber.deliver(data)
            except Exception:
                log.failure(
                    "Could not deliver a {event} event; dropping that subscriber",
                    event=name,
                    level=LogLevel.error,
                )
                self.drop(subscriber)
            else:
                delivered += 1
        return delivered

    def watch(self, name: str, on_first: Callable[[], None], on_last: Callable[[], None]) -> None:
        """Call ``on_first`` when ``name`` goes from 0 to 1 subscribers, ``on_last`` back at 0.

        The daemon polls iohyve only while somebody listens. If ``name`` already
        has subscribers, ``on_first`` is called at once, so that the two calls
        always alternate, starting with ``on_first``. A callback that raises is
        logged; it never fails the (un)subscription that set it off.

        :raises ValueError: ``name`` is not one of the hub's names.
        """
        watchers = self._watchers.get(name)
        if watchers is None:
            raise ValueError(f"no such event: {name!r}")
        watchers.append((on_first, on_last))
        if self._subscribers[name]:
            self._call(name, on_first)

    def _remove(self, name: str, subscriber: Subscriber) -> None:
        listeners = self._subscribers[name]
        if listeners.pop(id(subscriber), None) is not None and not listeners:
            self._notify(name, first=False)

    def _notify(self, name: str, *, first: bool) -> None:
        for on_first, on_last in list(self._watchers[name]):
            self._call(name, on_first if first else on_last)

    @staticmethod
    def _call(name: str, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.failure("A watcher of {event} events failed", event=name, level=LogLevel.error)


@implementer(IPushProducer)
class Outbound:
    """Per-connection outbound buffer with a bound: an IPushProducer-driven gate.

    Register it with the connection's transport (see :func:`attach`). While the
    transport has not paused it, :meth:`deliver` sends at once; while paused,
    events queue up and :meth:`resumeProducing` sends them, in order. If the
    queue grows past ``max_bytes`` or ``max_messages``, the queue is dropped,
    ``give_up`` is called (once) to close the connection, and every later
    event is ignored. After :meth:`stopProducing` everything is ignored too.
    """

    def __init__(
        self,
        send: Callable[[bytes], None],
        give_up: Callable[[], None],
        *,
        max_bytes: int = 1024 * 1024,
        max_messages: int = 1000,
    ) -> None:
        """``send`` writes one message now; ``give_up`` closes the connection as too slow."""
        if max_bytes < 0 or max_messages < 0:
            raise ValueError("the bounds of an outbound queue cannot be negative")
        self._send = send
        self._give_up = give_up
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._paused = False
        self._done = False
        self._gave_up = False

    @property
    def paused(self) -> bool:
        """Whether the transport has asked this producer to wait."""
        return self._paused

    @property
    def closed(self) -> bool:
        """Whether this buffer has given up or been stopped; it then ignores every event."""
        return self._done

    @property
    def gave_up(self) -> bool:
        """Whether the connection fell too far behind and ``give_up`` was called."""
        return self._gave_up

    @property
    def queued_messages(self) -> int:
        """Events waiting for the transport."""
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes of the events waiting for the transport."""
        return self._queued_bytes

    def deliver(self, data: bytes) -> None:
        """Send ``data`` now, or queue it while paused; past the bound, give up on the connection.

        An exception from ``send`` propagates (the hub then drops this subscriber).
        """
        if self._done:
            return
        if not self._paused and not self._queue:
            self._send(data)
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        if len(self._queue) > self.max_messages or self._queued_bytes > self.max_bytes:
            log.warn(
                "A connection fell {messages} events ({size} bytes) behind; closing it",
                messages=len(self._queue),
                size=self._queued_bytes,
            )
            self._gave_up = True
            self._close()
            self._give_up()

    def pauseProducing(self) -> None:
        """The transport's write buffer is full: queue events from now on."""
        self._paused = True

    def resumeProducing(self) -> None:
        """The transport has room again: send the queued events, in order, until paused again."""
        self._paused = False
        while self._queue and not self._paused and not self._done:
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            try:
                self._send(data)
            except Exception:
                # Called by the transport, which has no use for the error: log it, stop.
                log.failure(
                    "Could not send a queued event; dropping the rest", level=LogLevel.error
                )
                self._close()

    def stopProducing(self) -> None:
        """The connection is gone: drop the queue and ignore every later event.

        The callbacks are let go too: they belong to the connection, which holds this buffer,
        and keeping them would leave the two in a reference cycle once the connection is
        closed (freed only by the cyclic collector, which then walks every open connection).
        """
        self._close()
        self._send = _ignore_message
        self._give_up = _ignore

    def _close(self) -> None:
        self._done = True
        self._queue.clear()
        self._queued_bytes = 0


def _ignore_message(data: bytes) -> None:
    """What a stopped :class:`Outbound` sends with: nothing."""


def _ignore() -> None:
    """What a stopped :class:`Outbound` gives up with: nothing."""


def attach(protocol: object, outbound: Outbound) -> None:
    """Register ``outbound`` as the producer of ``protocol``'s transport.

    Call it once the WebSocket is open. ``protocol.transport`` is a TCP
    connection, a TLS transport (``TLSMemoryBIOProtocol``) or a
    ``ProtocolWrapper`` around either; all of them forward pause and resume to
    the registered producer.

    A WebSocket served through twisted.web's ``Site`` and Autobahn's
    ``WebSocketResource`` takes its transport over from the ``HTTPChannel``
    that read the upgrade request. That channel registered itself as the
    transport's streaming producer when the connection was made (over TLS,
    wrapped in the TLS transport's producer membrane), and the takeover does
    not unregister it, so registering another producer raises
    ``RuntimeError``. The channel no longer has any part in the connection,
    so it is unregistered here and ``outbound`` registered in its place. A
    transport that was never an HTTP channel's (a plain
    ``WebSocketServerFactory`` listener) registers at once.

    Autobahn's ``dropConnection`` unregisters the producer without stopping it,
    so the protocol's ``onClose`` should call ``outbound.stopProducing()`` (and
    drop it from the hub) itself. If the connection is already gone, the
    transport stops ``outbound`` at once.

    :raises TypeError: ``protocol`` has no transport that takes producers.
    """
    transport = getattr(protocol, "transport", None)
    if not (
        callable(getattr(transport, "registerProducer", None))
        and callable(getattr(transport, "unregisterProducer", None))
    ):
        raise TypeError(f"{protocol!r} has no transport that can take a producer")
    consumer = cast(IConsumer, transport)
    try:
        consumer.registerProducer(outbound, True)
    except RuntimeError:
        # The HTTP channel's registration, left behind by WebSocketResource.
        consumer.unregisterProducer()
        consumer.registerProducer(outbound, True)


def close_too_slow(protocol: object) -> None:
    """Start closing an Autobahn WebSocket with 1008 "too slow": an :class:`Outbound`'s ``give_up``.

    Autobahn's ``sendClose`` refuses 1008 (it lets an application send only 1000
    and 3000-4999, and raises for anything else), so this sends the close frame
    with ``sendCloseFrame``, the method Autobahn itself closes with on protocol
    errors. The frame queues behind what the transport still holds; a client
    that reads nothing never answers it, and Autobahn drops the connection once
    its ``closeHandshakeTimeout`` (1 s by default) runs out. A connection that
    is already closing is left alone.
    """
    send_close_frame = getattr(protocol, "sendCloseFrame")  # noqa: B009 (Autobahn is untyped)
    send_close_frame(code=TOO_SLOW_CODE, reasonUtf8=TOO_SLOW_REASON.encode("utf-8"), isReply=False)


__all__ = [
    "EVENT_ID",
    "NAMESPACE",
    "TOO_SLOW_CODE",
    "TOO_SLOW_REASON",
    "EventHub",
    "Outbound",
    "Subscriber",
    "attach",
    "close_too_slow",
    "encode_event",
]
