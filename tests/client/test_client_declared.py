"""The client library and the ``sysadm`` CLI, checked against the registry's declarations.

The client imports nothing from the daemon, so its methods and the CLI's commands are
written by hand; this test imports both sides and keeps them together. Each declared
action is reached by the client methods and CLI commands listed below, or listed as
deliberately absent with the reason. Every request they send goes through the daemon's
own look-up and argument check (:meth:`Registry.find`, :meth:`ActionSpec.parse_args`), and
together they must send every declared argument; every public method of the client and
every CLI command must be listed. A renamed, added or removed argument or action on either
side therefore fails here. The daemon's end of the WebSocket is in memory and answers with
replies that fit each action's declared reply schema.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import click
import jsonschema
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sysadmd.api import ApiError, Call, Role
from sysadmd.api._registry import ActionSpec, Registry, wrap_result
from sysadmd.catalog._classes import all_specs
from sysadmd.client import blocking
from sysadmd.client import cli as cli_module
from sysadmd.client.blocking import BlockingClient, BlockingTask
from sysadmd.client.client import _LOGIN_CALLS, Client, _Wire
from sysadmd.client.errors import ApiError as ClientApiError

SPECS: dict[str, ActionSpec] = {spec.title: spec for spec in all_specs()}
TASK_ID = "{0f6c4a52-5d55-4e0c-9f7e-1c2b3d4e5f60}"
OTHER_TASK_ID = "{7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

#: The replies that are not the request's arguments echoed (see :func:`_reply`).
_REPLIES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "events/subscribe": lambda args: {"subscribe": args["events"][-1]},
    "events/unsubscribe": lambda args: {"unsubscribe": args["events"][-1]},
    "rpc/auth": lambda args: ["token", 900],
    "rpc/auth_token": lambda args: ["token", 900],
    "rpc/auth_ssl": lambda args: (
        ["token", 900] if "encrypted_string" in args else {"test_string": "challenge"}
    ),
    "rpc/identify": lambda args: {"type": "server", "hostname": "vmhost"},
    "rpc/query": lambda args: {"sysadm/iohyve": "read/write"},
    "rpc/dispatcher list": lambda args: {
        "jobs": {
            "no_queue": {
                task_id: {"commands": ["fetch"], "state": "running", "status": "running"}
                for task_id in (TASK_ID, OTHER_TASK_ID)
            }
        }
    },
    "rpc/dispatcher kill": lambda args: {
        "killed": {"jobs": [args["job_id"]] if isinstance(args["job_id"], str) else args["job_id"]}
    },
    "sysadm/iohyve listvms": lambda args: {
        "web": {"description": "a guest", "rcboot": "NO", "running": "YES", "vmm": "YES"}
    },
    "sysadm/iohyve listisos": lambda args: ["test.iso"],
    "sysadm/iohyve isolibrary": lambda args: {"test.iso": {"size": 2048}},
    "sysadm/iohyve fetchiso": lambda args: {
        "command": "fetch",
        "comment": "Task Queued",
        "queueid": TASK_ID,
    },
    "sysadm/iohyve listdisks": lambda args: {"disk0": "10G"},
    "sysadm/iohyve adddisk": lambda args: {"disk1": {"size": args["size"]}},
    "sysadm/iohyve getprops": lambda args: {args["name"]: {"ram": "1G"}},
    "sysadm/iohyve setprop": lambda args: {args["name"]: dict(args["extra"])},
    "sysadm/iohyve version": lambda args: {"version": "iohyve v0.7.9", "backend": "iohyve"},
    "sysadm/iohyve issetup": lambda args: {"setup": "true"},
}


def _reply(spec: ActionSpec, args: Mapping[str, Any]) -> Any:
    """What the daemon answers: from the table, or the arguments its reply schema names."""
    if spec.title in _REPLIES:
        return _REPLIES[spec.title](args)
    return {key: args[key] for key in spec.reply.get("properties", {}) if key in args}


async def _never_called(call: Call) -> Any:
    raise AssertionError("the in-memory daemon only checks requests")


class InMemoryDaemon:
    """The daemon's end of a client's WebSocket: each request is looked up and its
    arguments checked by the registry, recorded, and answered at once."""

    def __init__(self) -> None:
        self.registry = Registry()
        for spec in all_specs():
            self.registry.add(spec, _never_called)
        #: Each request that passed: its action and the arguments sent.
        self.requests: list[tuple[ActionSpec, Any]] = []
        #: Each request the daemon would refuse, with its error.
        self.refused: list[str] = []
        self.client: Client | None = None

    def connect(self) -> Client:
        self.client = Client(
            cast(Any, self), _Wire(), "vmhost:12150", fingerprint=None, timeout=5, clock=Clock()
        )
        return self.client

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:
        assert self.client is not None and not isBinary
        message = json.loads(payload)
        namespace, name, raw = message["namespace"], message["name"], message["args"]
        try:
            spec, _, raw = self.registry.find(namespace, name, raw)
            args = spec.parse_args(raw)
        except ApiError as e:
            self.refused.append(f"{namespace}/{name} {raw!r}: {e.message}")
            reply: dict[str, Any] = {"namespace": "rpc", "name": "error"}
            reply["args"] = {"code": e.code, "message": e.message}
        else:
            self.requests.append((spec, raw))
            result = wrap_result(spec, _reply(spec, args))
            jsonschema.validate(result, spec.reply_schema())
            reply = {"namespace": "rpc", "name": "response", "args": result}
        reply["id"] = message["id"]
        self.client._received(json.dumps(reply).encode())

    def sendClose(self, code: int, reason: str) -> None:
        assert self.client is not None
        self.client._closed(code, reason)

    def dropConnection(self, abort: bool = False) -> None:
        raise AssertionError("the client closes cleanly")

    def sent_keys(self, spec: ActionSpec) -> set[str]:
        """The argument names sent to ``spec`` (its extra pairs as ``extra``)."""
        keys: set[str] = set()
        for sent_spec, raw in self.requests:
            if sent_spec is spec and isinstance(raw, Mapping):
                named = {key for key in raw if key != "action"}
                keys |= named & spec.arg_names
                if named - spec.arg_names:
                    keys.add("extra")
        return keys


def _declared_keys(spec: ActionSpec) -> set[str]:
    return set(spec.arg_names) | ({"extra"} if spec.extra is not None else set())


def _run_now(work: Callable[[], Any]) -> Any:
    """Run a coroutine that never waits (the in-memory daemon answers at once)."""
    done = ensureDeferred(work())
    results: list[Any] = []
    done.addBoth(results.append)
    assert results, "the call waited for something"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


# --------------------------------------------------------------------------------------------
# The asynchronous client


#: How the client reaches each action: method name, positional and keyword arguments.
CLIENT_CALLS: dict[str, list[tuple[str, tuple[Any, ...], dict[str, Any]]]] = {
    "events/subscribe": [("subscribe", ("guests", lambda args: None), {})],
    "rpc/auth": [("login", ("admin", "secret"), {})],
    "rpc/auth_clear": [("logout", (), {})],
    "rpc/auth_ssl": [("login_key", (KEY,), {})],
    "rpc/auth_token": [("login_token", ("token",), {})],
    "rpc/dispatcher kill": [("kill", (TASK_ID,), {}), ("kill", (TASK_ID, OTHER_TASK_ID), {})],
    "rpc/dispatcher list": [("tasks", (), {}), ("task", (TASK_ID,), {})],
    "rpc/identify": [("identify", (), {})],
    "rpc/query": [("query", (), {})],
    "sysadm/iohyve adddisk": [
        ("add_disk", ("web", "10G"), {}),
        ("add_disk", ("web", "10G", "tank"), {}),
    ],
    "sysadm/iohyve create": [("create", ("web", "10G"), {})],
    "sysadm/iohyve delete": [("delete", ("web",), {})],
    "sysadm/iohyve deletedisk": [("delete_disk", ("web", "disk1"), {})],
    "sysadm/iohyve fetchiso": [
        ("fetch_iso", ("http://127.0.0.1:9/test.iso",), {}),
        ("fetch_iso", ("http://127.0.0.1:9/test.iso",), {"checksum": "sha256:" + "a" * 64}),
        (
            "fetch_iso",
            ("http://127.0.0.1:9/test.iso",),
            {"checksum_url": "http://127.0.0.1:9/CHECKSUM.SHA256"},
        ),
        ("fetch_iso", ("http://127.0.0.1:9/test.iso",), {"verify": "auto"}),
    ],
    "sysadm/iohyve isodigests": [("iso_digests", (), {})],
    "sysadm/iohyve isolibrary": [("iso_library", (), {})],
    "sysadm/iohyve getprops": [("get_props", ("web",), {})],
    "sysadm/iohyve install": [("install", ("web", "test.iso"), {})],
    "sysadm/iohyve issetup": [("is_setup", (), {})],
    "sysadm/iohyve listdisks": [("list_disks", ("web",), {})],
    "sysadm/iohyve listisos": [("list_isos", (), {})],
    "sysadm/iohyve listvms": [("list_vms", (), {})],
    "sysadm/iohyve renameiso": [("rename_iso", ("test.iso", "new.iso"), {})],
    "sysadm/iohyve resizedisk": [("resize_disk", ("web", "disk0", "20G"), {})],
    "sysadm/iohyve rmiso": [("remove_iso", ("test.iso",), {})],
    "sysadm/iohyve setprop": [("set_props", ("web", {"ram": "2G", "cpu": "2"}), {})],
    "sysadm/iohyve setup": [("setup", ("tank", "em0"), {})],
    "sysadm/iohyve start": [("start", ("web",), {})],
    "sysadm/iohyve stop": [("stop", ("web",), {}), ("stop", ("web",), {"force": True})],
    "sysadm/iohyve version": [("version", (), {})],
}

#: Actions the client has no method of its own for, and why; ``call`` reaches them all.
CLIENT_ABSENT: dict[str, str] = {
    "events/unsubscribe": "reached by unsubscribe(), which sends it only when the last "
    "subscription to an event ends (checked in test_unsubscribe_sends_the_declared_action)",
    "rpc/settings list_ssl_certs": "the library has no methods for managing login keys "
    "yet (sysadm's own client manages them); call() reaches it",
    "rpc/settings register_ssl_cert": "as list_ssl_certs",
    "rpc/settings revoke_ssl_cert": "as list_ssl_certs",
    "sysadm/network list-devices": "a host fact for sysadm's setup page; call() reaches it",
    "sysadm/zfs list_pools": "a host fact for sysadm's setup page; call() reaches it",
    "sysadm/isoupload": "no WebSocket call: upload_iso() sends PUT /iso/<name>, whose "
    "route dispatches it (end to end in tests/client/test_cli_upload.py)",
    "sysadm/console consolelog": "call() reaches it; the console itself shows the history",
    "sysadm/console consolerelease": "for an admin on the host; call() reaches it",
    "sysadm/consoleview attach": "the console WebSocket's own login "
    "(sysadmd.client.console connects to /console/<guest>)",
    "sysadm/consoleview take": "a control message on the console WebSocket",
    "sysadm/consoleview release": "a control message on the console WebSocket "
    "(sent by `vm console --read-only`)",
}

#: Public coroutine methods of the client that are not one action each.
CLIENT_GENERIC: dict[str, str] = {
    "connect": "opens the connection",
    "close": "closes the connection",
    "call": "any request",
    "iohyve": "any sysadm/iohyve action",
    "unsubscribe": "see CLIENT_ABSENT['events/unsubscribe']",
}


def _public_coroutine_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }


def test_every_action_has_a_client_method_or_a_reason() -> None:
    """Each declared action is either reached by a listed method or listed as absent."""
    assert set(CLIENT_CALLS).isdisjoint(CLIENT_ABSENT)
    assert set(CLIENT_CALLS) | set(CLIENT_ABSENT) == set(SPECS)


def test_every_client_method_is_checked() -> None:
    """A new public method of the client must be added to the lists above."""
    listed = {method for calls in CLIENT_CALLS.values() for method, _, _ in calls}
    assert _public_coroutine_methods(Client) == listed | set(CLIENT_GENERIC)


@pytest.mark.parametrize("title", sorted(CLIENT_CALLS))
def test_client_methods_send_what_the_action_declares(title: str) -> None:
    """Each method's requests pass the daemon's check, and together they can send each
    declared argument (an optional one too)."""
    spec = SPECS[title]
    daemon = InMemoryDaemon()
    client = daemon.connect()
    for method, args, kwargs in CLIENT_CALLS[title]:
        _run_now(functools.partial(getattr(client, method), *args, **kwargs))
    assert daemon.refused == []
    assert spec in [sent for sent, _ in daemon.requests]
    if not spec.whole:
        assert daemon.sent_keys(spec) == _declared_keys(spec)


def test_unsubscribe_sends_the_declared_action() -> None:
    """events/unsubscribe goes out, checked, when the last subscription ends."""
    daemon = InMemoryDaemon()
    client = daemon.connect()
    subscription = _run_now(lambda: client.subscribe("guests", lambda args: None))
    _run_now(lambda: client.unsubscribe(subscription))
    assert daemon.refused == []
    assert [spec.title for spec, _ in daemon.requests] == ["events/subscribe", "events/unsubscribe"]


def test_the_in_memory_daemon_refuses_what_the_daemon_refuses() -> None:
    """The check above can fail: a misspelt argument is refused with the daemon's message."""
    daemon = InMemoryDaemon()
    client = daemon.connect()
    with pytest.raises(ClientApiError, match="does not take the key 'nmae'"):
        _run_now(lambda: client.call("sysadm", "iohyve", {"action": "start", "nmae": "web"}))
    assert daemon.refused and "nmae" in daemon.refused[0]


def test_the_client_knows_which_calls_are_logins() -> None:
    """A 401 from these is a failed login, not an ended session: they are the daemon's
    public rpc actions."""
    public = {spec.name for spec in SPECS.values() if spec.role is Role.PUBLIC}
    assert all(spec.namespace == "rpc" for spec in SPECS.values() if spec.role is Role.PUBLIC)
    assert public == _LOGIN_CALLS


# --------------------------------------------------------------------------------------------
# The blocking client


#: Public methods of the asynchronous client the blocking one does not have, and why.
BLOCKING_ABSENT: dict[str, str] = {
    "iohyve": "its **args would take a 'self' keyword; call() does the same",
}


def test_the_blocking_client_has_every_method_of_the_client() -> None:
    """Same names; each derived method's parameters are the asynchronous method's."""
    methods = _public_coroutine_methods(Client) - set(BLOCKING_ABSENT)
    for name in methods:
        proxy = getattr(BlockingClient, name)
        assert callable(proxy), name
        if name in ("connect", "kill"):
            # Written out: connect starts the reactor thread (so it takes no reactor);
            # kill also takes BlockingTasks.
            wanted = inspect.signature(getattr(Client, name)).parameters
            given = inspect.signature(proxy).parameters
            assert [p for p in wanted if p != "reactor"] == list(given), name
            for parameter in given:
                assert given[parameter].kind == wanted[parameter].kind, (name, parameter)
                assert given[parameter].default == wanted[parameter].default, (name, parameter)
        else:
            assert proxy.__wrapped__ is getattr(Client, name), name
            assert proxy.__doc__ == getattr(Client, name).__doc__


class _SameThreadReactor:
    """Runs what is handed to the reactor thread at once, in the caller's thread."""

    def callFromThread(self, f: Callable[..., object], *args: object, **kw: object) -> None:
        f(*args, **kw)


def test_blocking_methods_return_the_results_and_raise_the_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The derived methods pass arguments through, return results, wrap tasks, raise."""
    monkeypatch.setattr(blocking, "_reactor", _SameThreadReactor())
    daemon = InMemoryDaemon()
    client = BlockingClient(daemon.connect())
    isos: list[str] = client.list_isos()
    assert isos == ["test.iso"]
    assert client.stop("web", force=True) == {"name": "web"}
    assert daemon.requests[-1][1] == {"action": "stop", "name": "web", "force": "true"}
    task = client.fetch_iso("http://127.0.0.1:9/test.iso")
    assert isinstance(task, BlockingTask) and task.id == TASK_ID
    assert client.kill(task, OTHER_TASK_ID) == [TASK_ID, OTHER_TASK_ID]
    with pytest.raises(ClientApiError, match="does not take"):
        client.call("sysadm", "iohyve", {"action": "start", "nmae": "web"})
    assert BlockingClient.list_isos.__name__ == "list_isos"
    assert BlockingClient.list_isos.__qualname__ == "BlockingClient.list_isos"
    client.close()


# --------------------------------------------------------------------------------------------
# The CLI


#: How the CLI reaches each action: the command lines that send it.
CLI_COMMANDS: dict[str, list[list[str]]] = {
    "rpc/auth": [["login", "127.0.0.1", "-u", "admin", "--trust-on-first-use"]],
    "rpc/auth_clear": [["logout"]],
    "rpc/auth_token": [["vm", "list"]],
    "rpc/dispatcher kill": [["kill", TASK_ID], ["kill", "0f6", "7a1"]],
    "rpc/dispatcher list": [["tasks"]],
    "sysadm/iohyve adddisk": [
        ["vm", "add-disk", "web", "10G"],
        ["vm", "add-disk", "web", "10G", "--pool", "tank"],
    ],
    "sysadm/iohyve create": [["vm", "create", "web", "10G"]],
    "sysadm/iohyve delete": [["vm", "delete", "web", "--yes"]],
    "sysadm/iohyve deletedisk": [["vm", "remove-disk", "web", "disk1"]],
    "sysadm/iohyve fetchiso": [
        ["iso", "fetch", "http://127.0.0.1:9/test.iso"],
        ["iso", "fetch", "http://127.0.0.1:9/test.iso", "--checksum", "sha512:" + "b" * 128],
        [
            "iso",
            "fetch",
            "http://127.0.0.1:9/test.iso",
            "--checksum-url",
            "http://127.0.0.1:9/CHECKSUM.SHA512",
        ],
        ["iso", "fetch", "http://127.0.0.1:9/test.iso", "--verify", "auto"],
    ],
    "sysadm/iohyve isodigests": [["iso", "digests"], ["iso", "digests", "--json"]],
    "sysadm/iohyve isolibrary": [["iso", "list", "--sizes"], ["iso", "list", "-l", "--json"]],
    "sysadm/iohyve getprops": [["vm", "props", "web"], ["vm", "props", "web", "--json"]],
    "sysadm/iohyve install": [["vm", "install", "web", "test.iso"]],
    "sysadm/iohyve listdisks": [["vm", "disks", "web"]],
    "sysadm/iohyve listisos": [["iso", "list"], ["iso", "list", "--json"]],
    "sysadm/iohyve listvms": [["vm", "list"], ["vm", "list", "--json"]],
    "sysadm/iohyve renameiso": [["iso", "rename", "test.iso", "new.iso"]],
    "sysadm/iohyve resizedisk": [["vm", "resize-disk", "web", "disk0", "20G"]],
    "sysadm/iohyve rmiso": [["iso", "rm", "test.iso"]],
    "sysadm/iohyve setprop": [["vm", "set", "web", "ram=2G", "cpu=2"]],
    "sysadm/iohyve start": [["vm", "start", "web"]],
    "sysadm/iohyve stop": [["vm", "stop", "web"], ["vm", "stop", "web", "--force"]],
}

#: Actions without a CLI command of their own, and why; `sysadm call` reaches them all.
CLI_ABSENT: dict[str, str] = {
    "events/subscribe": "the CLI follows events inside `tasks --watch` and `iso fetch --wait`",
    "events/unsubscribe": "as events/subscribe",
    "rpc/auth_ssl": "the CLI logs in with a password and keeps the session's token",
    "rpc/identify": "`sysadm call rpc identify` shows it",
    "rpc/query": "`sysadm call rpc query` shows it",
    "rpc/settings list_ssl_certs": "no commands for managing login keys yet; "
    "`sysadm call rpc settings` reaches it",
    "rpc/settings register_ssl_cert": "as list_ssl_certs",
    "rpc/settings revoke_ssl_cert": "as list_ssl_certs",
    "sysadm/iohyve issetup": "setting iohyve up is done once per host; `sysadm call` reaches it",
    "sysadm/iohyve setup": "as issetup",
    "sysadm/iohyve version": '`sysadm call sysadm iohyve \'{"action": "version"}\'` shows it',
    "sysadm/network list-devices": "a host fact for the setup of iohyve, as issetup",
    "sysadm/zfs list_pools": "as list-devices",
    "sysadm/isoupload": "`iso upload` sends PUT /iso/<name>, not a call (see CLI_GENERIC)",
    "sysadm/console consolelog": "`vm console` shows the history first; `sysadm call` reaches it",
    "sysadm/console consolerelease": "for an admin on the host; `sysadm call` reaches it",
    "sysadm/consoleview attach": "`vm console` logs in on the console WebSocket",
    "sysadm/consoleview take": "as attach: a control message on the console WebSocket",
    "sysadm/consoleview release": "as attach (`vm console --read-only` sends it)",
}

#: Commands that send no action of their own, and why.
CLI_GENERIC: dict[str, str] = {
    "call": "any request",
    "iso upload": "PUT /iso/<name> over HTTPS with the session's token, which the daemon "
    "dispatches as sysadm/isoupload (end to end in tests/client/test_cli_upload.py)",
    "vm console": "a WebSocket at /console/<guest>, not a request (tests/console)",
    "fleet hosts": "asks the router (its session list), then each host's fleet.info",
    "known-hosts list": "reads the local known_hosts file",
    "known-hosts remove": "edits the local known_hosts file",
    "router save": "writes the local routers.json (tests/client/test_cli_profiles.py)",
    "router list": "reads the local routers.json",
    "router forget": "edits the local routers.json",
}


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name))


class _Reactor:
    def addSystemEventTrigger(self, *args: object) -> None:
        pass


def _react_now(main: Callable[[Any], Any]) -> None:
    """The CLI's ``react``, for work that never waits."""
    _run_now(lambda: main(_Reactor()))


def _sysadm(config: Path, argv: list[str]) -> click.testing.Result:
    return CliRunner().invoke(
        cli_module.cli,
        ["--config-dir", str(config), *argv],
        env={"SYSADM_PASSWORD": "secret"},
    )


@pytest.fixture
def on_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[InMemoryDaemon]:
    """The CLI, connected to an in-memory daemon, with a saved session."""
    daemon = InMemoryDaemon()

    async def connect(cls: type[Client], *args: Any, **kwargs: Any) -> Client:
        return daemon.connect()

    monkeypatch.setattr(Client, "connect", classmethod(connect))
    monkeypatch.setattr(cli_module, "react", _react_now)
    session = {"host": "127.0.0.1", "port": 12150, "user": "admin", "token": "token"}
    (tmp_path / "session.json").write_text(json.dumps(session))
    yield daemon


def test_every_action_has_a_cli_command_or_a_reason() -> None:
    """Each declared action is either reached by a listed command or listed as absent."""
    assert set(CLI_COMMANDS).isdisjoint(CLI_ABSENT)
    assert set(CLI_COMMANDS) | set(CLI_ABSENT) == set(SPECS)


def _command_of(argv: list[str]) -> str:
    """The command an argument list names (``vm stop`` for ``vm stop web --force``)."""
    command: click.Command = cli_module.cli
    path: list[str] = []
    for word in argv:
        sub = command.commands.get(word) if isinstance(command, click.Group) else None
        if sub is None:
            break
        path.append(word)
        command = sub
    return " ".join(path)


def test_every_cli_command_is_checked() -> None:
    """A new command must be added to the lists above."""
    listed = {_command_of(argv) for argvs in CLI_COMMANDS.values() for argv in argvs}
    assert set(_commands(cli_module.cli)) == listed | set(CLI_GENERIC)


@pytest.mark.parametrize("title", sorted(CLI_COMMANDS))
def test_cli_commands_send_what_the_action_declares(
    title: str, on_daemon: InMemoryDaemon, tmp_path: Path
) -> None:
    """Each command's requests pass the daemon's check, and together they can send each
    declared argument (an optional one too)."""
    spec = SPECS[title]
    for argv in CLI_COMMANDS[title]:
        result = _sysadm(tmp_path, argv)
        assert result.exit_code == 0, (argv, result.output)
    assert on_daemon.refused == []
    assert spec in [sent for sent, _ in on_daemon.requests]
    assert on_daemon.sent_keys(spec) == _declared_keys(spec)


def test_the_cli_check_can_fail(on_daemon: InMemoryDaemon, tmp_path: Path) -> None:
    """A request the daemon refuses shows as refused and as a failed command."""
    result = _sysadm(tmp_path, ["call", "sysadm", "iohyve", '{"action": "strat"}'])
    assert result.exit_code != 0
    assert on_daemon.refused and "has no such action" in on_daemon.refused[0]
