"""The ``events`` namespace, and the guest state event.

``events/subscribe`` and ``events/unsubscribe`` take an event name or a list of
them, as sysadm's clients send them. Unknown names are skipped, as sysadm does, and
the reply names them under ``unknown`` (a key sysadm never sends, so a reply for known
names only is sysadm's, and sysadm's own client, which subscribes to ``system-state``
and ignores the reply, is unaffected; never an error, for the same reason). Events
reach WebSocket connections only.

The ``guests`` event is sysadmd's: while at least one connection listens, the
daemon runs ``iohyve list`` every ``interval`` seconds and, when the list changed,
sends ``{"event_system": "sysadm/iohyve", "guests": <what listvms returns>,
"added": [...], "removed": [...], "changed": [...]}``, so clients need not poll.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sysadmd.api import NAMES, Arg, Call, EventHub, Role, action
from sysadmd.backends import GuestSummary, VMBackend

#: Every event the daemon sends.
EVENT_NAMES: Final = ("dispatcher", "guests")

_REPLY_UNKNOWN: Final = {
    "type": "array",
    "items": {"type": "string"},
    "description": "the names given that are not events of this daemon, in the order given",
}


class EventActions:
    """Handlers of ``events/subscribe`` and ``events/unsubscribe``."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub

    def _reply(self, key: str, given: str | list[str], known: list[str]) -> dict[str, Any]:
        """sysadm's reply (the last known name, or nothing), plus the unknown names if any."""
        reply: dict[str, Any] = {key: known[-1]} if known else {}
        names = [given] if isinstance(given, str) else given
        unknown = [n for n in dict.fromkeys(names) if n not in self._hub.names]
        if unknown:
            reply["unknown"] = unknown
        return reply

    @action(
        "events",
        "subscribe",
        None,
        summary=(
            "Receive events on this WebSocket: 'dispatcher' (fetch tasks) and 'guests' "
            "(changes of the guest list). Replies with the last known name subscribed, "
            "or {} if none was known; names that are not events of this daemon are "
            "skipped and listed under 'unknown'."
        ),
        role=Role.OPERATOR,
        whole=True,
        websocket_only=True,
        args=[Arg("events", NAMES, "an event name or a list of them")],
        reply={
            "type": "object",
            "properties": {"subscribe": {"type": "string"}, "unknown": _REPLY_UNKNOWN},
        },
    )
    async def subscribe(self, call: Call) -> Any:
        given = call.args["events"]
        known = self._hub.subscribe(call.connection.subscriber, given)
        return self._reply("subscribe", given, known)

    @action(
        "events",
        "unsubscribe",
        None,
        summary=(
            "Stop receiving the events named. Replies like subscribe, with the names that "
            "are not events of this daemon under 'unknown'."
        ),
        role=Role.OPERATOR,
        whole=True,
        websocket_only=True,
        args=[Arg("events", NAMES, "an event name or a list of them")],
        reply={
            "type": "object",
            "properties": {"unsubscribe": {"type": "string"}, "unknown": _REPLY_UNKNOWN},
        },
    )
    async def unsubscribe(self, call: Call) -> Any:
        given = call.args["events"]
        known = self._hub.unsubscribe(call.connection.subscriber, given)
        return self._reply("unsubscribe", given, known)


class GuestWatcher:
    """Polls ``iohyve list`` while someone listens to ``guests``, and reports changes."""

    log = Logger()

    def __init__(
        self, iohyve: VMBackend, hub: EventHub, clock: IReactorTime, *, interval: float = 3.0
    ) -> None:
        self._iohyve = iohyve
        self._hub = hub
        self._interval = interval
        self._last: dict[str, GuestSummary] | None = None
        self._loop = LoopingCall(self._poll)
        self._loop.clock = clock
        self._clock = clock
        self._starting: IDelayedCall | None = None
        hub.watch("guests", self.start, self.stop)

    def start(self) -> None:
        """Begin polling (the first subscriber arrived). The first poll runs on the next
        turn of the reactor: a guest list another caller already holds is ready at once,
        and its event must not overtake the reply to the subscribe that started it."""
        if not self._loop.running and self._starting is None:
            self._starting = self._clock.callLater(0, self._begin)

    def _begin(self) -> None:
        self._starting = None
        if not self._loop.running:
            self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        """Stop polling (the last subscriber left); the next start reports afresh."""
        if self._starting is not None:
            if self._starting.active():
                self._starting.cancel()
            self._starting = None
        if self._loop.running:
            self._loop.stop()
        self._last = None

    def _poll(self) -> Any:
        return ensureDeferred(self._check()).addErrback(
            lambda f: self.log.failure("Could not list the guests for the guests event", f)
        )

    async def _check(self) -> None:
        guests = await self._iohyve.list_vms()
        last = self._last if self._last is not None else {}
        if self._last is not None and guests == last:
            return
        self._last = guests
        self._hub.publish(
            "guests",
            {
                "event_system": "sysadm/iohyve",
                "guests": guests,
                "added": sorted(set(guests) - set(last)),
                "removed": sorted(set(last) - set(guests)),
                "changed": sorted(n for n in guests if n in last and guests[n] != last[n]),
            },
        )
