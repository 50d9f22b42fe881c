"""A control character in any string argument of any action is a 400, and nothing runs.

The arguments come from the registry's declarations (every action the daemon serves,
every declared argument whose values are strings, and every name and value of an
action's extra pairs such as setprop's properties), so a new action or argument is
covered without touching this file. Hypothesis puts a control character (C0 such as
newline, carriage return, tab and NUL; DEL; C1, U+0080 to U+009F) at the start, inside
or at the end of a valid value and sends the request over REST and over a WebSocket,
through the daemon's real Site, handlers and process runner: the reply must be a 400
that names the argument, and the runner must never have started a process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted
from authkit import make_authenticator
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import async_test
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from wsclient import WsClient, connect

from sysadmd.api import ActionSpec, Api, EventHub, Role
from sysadmd.app import build_site
from sysadmd.backends import HostTools, Iohyve, ProcessRunner
from sysadmd.catalog._classes import all_specs, build_registry
from sysadmd.console import ConsoleService
from sysadmd.services import (
    EVENT_NAMES,
    ConsoleActions,
    DispatcherActions,
    EventActions,
    HostActions,
    IohyveActions,
    Rpc,
)
from sysadmd.tasks import FetchQueue

#: Every control character: C0, DEL and C1.
CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]


@dataclass(frozen=True)
class Case:
    """One string argument of one action: how to build a request with a given value."""

    spec: ActionSpec
    #: What the case changes: an argument, a property's value or a property's name.
    target: str
    example: str
    build: Callable[[str], Any]
    #: Words the 400's message must hold: it names what is wrong.
    words: str

    @property
    def id(self) -> str:
        return f"{self.spec.title}:{self.target}"


def _base(spec: ActionSpec) -> dict[str, Any]:
    args: dict[str, Any] = {"action": spec.action} if spec.action else {}
    for arg in spec.args:
        if arg.required:
            args[arg.name] = arg.type.example
    if spec.extra is not None:
        key, value = spec.extra.example
        args[key] = value
    return args


def _string_example(example: Any) -> str | None:
    if isinstance(example, str):
        return example
    if isinstance(example, list) and example and isinstance(example[0], str):
        return str(example[0])
    return None


def _cases() -> Iterator[Case]:
    """Every string argument of every declared action."""
    for spec in all_specs():
        for arg in spec.args:
            text = _string_example(arg.type.example)
            if text is None:
                continue
            as_list = isinstance(arg.type.example, list)

            def value_of(value: str, as_list: bool = as_list) -> Any:
                return [value] if as_list else value

            if spec.whole:
                build: Callable[[str], Any] = value_of
                words = "the arguments"
            else:

                def build(value: str, spec: ActionSpec = spec, name: str = arg.name) -> Any:
                    return {**_base(spec), name: value_of(value)}

                words = arg.label
            yield Case(spec, arg.name, text, build, words)
        if spec.extra is not None:
            extra = spec.extra
            named = [*extra.names.items(), *((n.example, n.type) for n in extra.patterns)]
            others = {k: v for k, v in _base(spec).items() if extra.value_type(k) is None}
            for key, value_type in named:
                text = _string_example(value_type.example)
                assert text is not None, key

                def build_value(value: str, others: Any = others, key: str = key) -> Any:
                    return {**others, key: value}

                def build_key(name: str, others: Any = others, text: str = text) -> Any:
                    return {**others, name: text}

                yield Case(spec, f"{key}=", text, build_value, f"{extra.noun} '{key}'")
                yield Case(spec, f"{key}(name)", key, build_key, "keys")


CASES = list(_cases())


class World:
    """The daemon's Site with every action class, on a real process runner."""

    def __init__(self, directory: Path) -> None:
        self.auth = make_authenticator(directory)
        self.runner = ProcessRunner(reactor, kill_grace=0.5)
        command = [sys.executable, "-m", "sysadmd.simulator", "--root", str(directory / "sim")]
        iohyve = Iohyve(self.runner, command, rc_conf=directory / "rc.conf")
        fetches = FetchQueue(iohyve, reactor)
        hub = EventHub(EVENT_NAMES)
        host = HostTools(self.runner, [*command, "zpool"], [*command, "ifconfig"])
        registry = build_registry(
            Rpc(self.auth, "testhost"),
            DispatcherActions(fetches),
            EventActions(hub),
            IohyveActions(iohyve, fetches, [directory], host=host),
            HostActions(host),
            ConsoleActions(ConsoleService(iohyve, reactor, directory / "console")),
        )
        self.site = build_site(Api(registry, self.auth), reactor, hub=hub)
        self.treq: Any = StubTreq(self.site.resource)
        self.token, _ = self.auth.sessions.create("alice", Role.ADMIN)
        self.port: IListeningPort = reactor.listenTCP(
            0, cast(Any, self.site), interface="127.0.0.1"
        )
        self.ws: WsClient = self.wait(connect("127.0.0.1", self.port.getHost().port))  # type: ignore[attr-defined]
        self.ws.send(
            {"namespace": "rpc", "name": "auth_token", "id": "login", "args": {"token": self.token}}
        )
        assert self.wait(self.ws.next())["name"] == "response"

    @staticmethod
    def wait(coroutine: Any) -> Any:
        return pytest_twisted.blockon(Deferred.fromCoroutine(coroutine))

    async def _rest(self, spec: ActionSpec, args: Any) -> tuple[int, str]:
        response = await self.treq.put(
            f"http://sysadmd.test/{spec.namespace}/{spec.name}",
            data=json.dumps({"args": args}).encode(),
            headers={
                "Content-Type": ["application/json"],
                "Authorization": [f"Bearer {self.token}"],
            },
        )
        body = json.loads(await response.content())
        return response.code, str(body["args"].get("message", ""))

    async def _websocket(self, spec: ActionSpec, args: Any) -> tuple[int, str]:
        self.ws.send({"namespace": spec.namespace, "name": spec.name, "id": "t", "args": args})
        reply = await self.ws.next()
        if reply["name"] != "error":
            return 200, ""
        return int(reply["args"]["code"]), str(reply["args"]["message"])

    async def replies(self, spec: ActionSpec, args: Any) -> list[tuple[int, str]]:
        """The code and message over REST, then over the WebSocket."""
        return [await self._rest(spec, args), await self._websocket(spec, args)]

    def close(self) -> None:
        self.wait(self.ws.close())
        pytest_twisted.blockon(self.port.stopListening())
        pytest_twisted.blockon(self.runner.stop_all())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    running = World(tmp_path_factory.mktemp("control"))
    yield running
    running.close()


def _insert(value: str, control: str, where: str, index: int) -> str:
    if where == "start":
        return control + value
    if where == "end":
        return value + control
    at = 1 + index % max(len(value) - 1, 1)
    return value[:at] + control + value[at:]


def test_every_action_with_string_arguments_is_covered() -> None:
    """The cases come from the declarations and include the ones the issue names."""
    ids = {case.id for case in CASES}
    assert {"sysadm/iohyve create:name", "sysadm/iohyve renameiso:target"} <= ids
    assert {"sysadm/iohyve setprop:loader=", "sysadm/iohyve setprop:bargs="} <= ids
    assert {"sysadm/iohyve fetchiso:url", "sysadm/iohyve create:size"} <= ids
    assert {"rpc/auth:password", "events/subscribe:events"} <= ids
    for case in CASES:
        # The value without a control character passes the argument checks, so the
        # 400 below is the control character's.
        case.spec.parse_args(case.build(case.example))


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(
    control=st.sampled_from(CONTROLS),
    where=st.sampled_from(["start", "inside", "end"]),
    index=st.integers(min_value=0, max_value=1000),
)
@example(control="\n", where="end", index=0)
@example(control="\r", where="end", index=0)
@example(control="\t", where="inside", index=0)
@example(control="\x00", where="start", index=0)
@example(control="\x7f", where="end", index=0)
@example(control="\x85", where="inside", index=3)
@async_test
async def test_control_character_is_refused(
    world: World, control: str, where: str, index: int
) -> None:
    """For every case: 400 naming the argument, over REST and WebSocket; no process ran."""
    for case in CASES:
        value = _insert(case.example, control, where, index)
        for code, message in await world.replies(case.spec, case.build(value)):
            assert code == 400, (case.id, repr(value), code, message)
            assert case.words in message, (case.id, message)
    assert world.runner.spawned == 0
