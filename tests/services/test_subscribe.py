"""events/subscribe and events/unsubscribe through the Api core: replies for known and
unknown names."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from probe import OpenGate
from support import async_test

from sysadmd.api import Api, ApiError, Connection, EventHub, Registry, Role
from sysadmd.auth._authenticator import Account
from sysadmd.services import EVENT_NAMES, EventActions


class Subscriber:
    def deliver(self, data: bytes) -> None:
        pass


class Lasting(Connection):
    """A connection that carries many requests, as a WebSocket's does."""

    lasting = True


class Events:
    def __init__(self) -> None:
        self.hub = EventHub(EVENT_NAMES)
        self.registry = Registry()
        self.registry.register(EventActions(self.hub))
        self.api = Api(self.registry, OpenGate(Account("alice", Role.OPERATOR)))
        self.subscriber = Subscriber()
        self.connection = Lasting("192.0.2.1", "websocket", subscriber=self.subscriber)

    async def call(self, name: str, names: Any) -> Any:
        reply = await self.api.call("events", name, names, self.connection)
        spec, _, _ = self.registry.find("events", name, names)
        jsonschema.validate(reply, spec.reply_schema())
        return reply


@async_test
async def test_known_names_get_sysadms_reply() -> None:
    events = Events()
    assert await events.call("subscribe", "dispatcher") == {"subscribe": "dispatcher"}
    assert await events.call("subscribe", ["dispatcher", "guests"]) == {"subscribe": "guests"}
    assert events.hub.subscriptions(events.subscriber) == ["dispatcher", "guests"]
    assert await events.call("unsubscribe", "guests") == {"unsubscribe": "guests"}


@async_test
async def test_unknown_names_are_skipped_and_named_in_the_reply() -> None:
    events = Events()
    reply = await events.call("subscribe", ["system-state", "dispatcher", "gests", "system-state"])
    assert reply == {"subscribe": "dispatcher", "unknown": ["system-state", "gests"]}
    assert events.hub.subscriptions(events.subscriber) == ["dispatcher"]
    reply = await events.call("unsubscribe", ["dispatcher", "nope"])
    assert reply == {"unsubscribe": "dispatcher", "unknown": ["nope"]}
    assert events.hub.subscriptions(events.subscriber) == []


@pytest.mark.parametrize("name", ["subscribe", "unsubscribe"])
@async_test
async def test_nothing_known_is_no_error(name: str) -> None:
    """sysadm's own client subscribes to system-state and must not get an error for it."""
    events = Events()
    assert await events.call(name, "system-state") == {"unknown": ["system-state"]}
    assert events.hub.subscriptions(events.subscriber) == []


@async_test
async def test_a_connection_that_does_not_last_cannot_subscribe() -> None:
    """A connection of one request (REST, an in-process call) is refused before the handler
    runs, even if it names a subscriber: the dispatch refuses every websocket_only action."""
    events = Events()
    short = Connection("192.0.2.1", "rest", subscriber=events.subscriber)
    for name in ("subscribe", "unsubscribe"):
        with pytest.raises(ApiError) as caught:
            await events.api.call("events", name, "dispatcher", short)
        assert (caught.value.code, caught.value.message) == (
            400,
            "events are delivered over WebSocket connections only",
        )
    assert events.hub.subscriptions(events.subscriber) == []
