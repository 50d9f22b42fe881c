"""The recorded conversation of sysadm's Qt client with sysadmd, replayed against the daemon.

``tests/fixtures/qt-gui-conversation.jsonl`` is what trueos/sysadm-ui-qt's ``gui_client`` and
sysadmd said to each other through the whole bhyve page, one frame a line: ``c`` the
connection, ``d`` the direction (``C>`` client, ``S>`` server), ``msg`` the JSON message,
``event`` an accepted or closed connection, ``close`` a close frame, ``t`` the time. It has the
connect wizard, password and key logins, the setup screen, the guest list, start and stop, the
ISO list, fetches with progress events, rename, remove, a session that expired, daemon restarts
and an operator.

The test starts the real daemon in simulate mode (``twistd``, TLS on loopback), opens one
WebSocket per recorded connection, sends every ``C>`` message in the recorded order and
compares every reply with the recorded ``S>`` message after :func:`normalise` (tokens, times,
challenges, task ids, byte counts and rates of running downloads are left aside). What the
recording needs that a replay cannot have is reproduced in an equivalent way, never skipped:

* **Passwords** were removed from the recording (``<admin-password>``): the daemon's initial
  admin password and an operator account made for the test stand in for them.
* **The GUI's key**: its private key is not in the recording. A new 2048-bit key stands in for
  it everywhere the recording shows the GUI's public key, and the second stage of ``auth_ssl``
  signs the live challenge with it as the GUI does (``sysadmd.client.signing.sign_challenge``).
* **The download hosts** (``127.0.0.1:8765`` and ``:8766``) are two local HTTP servers with
  files of the recorded sizes. The download that failed in the recording (its host announced
  no size and then cut it short) is served without ``Content-Length`` and cut short when the
  recording shows it failing.
* **Daemon restarts**: a server close 1001 "the server is stopping" stops the daemon (SIGTERM);
  the next accepted connection starts it again on the same state directory.
* **The expired session**: a run whose recorded logins were granted less than the default 900
  seconds runs with a short ``auth.session_lifetime``; before a message the recording sent
  after its session's end, the replay waits for the live session's end.
* **Guests made on the host** (not through the GUI) show up in a recorded ``listvms``: they
  are made with the simulator just before that request.

Events (``dispatcher``) arrive asynchronously: they are matched by task and kind (pending,
running, finished), not by position, and each fetch's final event is compared whole.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from authkit import FAST_HASHER
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from daemon import Daemon
from httpserver import HTTPServer
from support import async_test
from test_e2e import run_simulator, seed
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from wsclient import WsClient, connect, settle

from sysadmd.api import Role
from sysadmd.auth._accounts import ACCOUNTS_FILE, LocalAccounts
from sysadmd.client.signing import sign_challenge
from sysadmd.services import EVENT_NAMES

pytestmark = pytest.mark.e2e

RECORDING = Path(__file__).parent / "fixtures" / "qt-gui-conversation.jsonl"

#: The operator account the recording's last connection logs in with.
OPERATOR = ("oper", "oper-password-for-the-replay")

#: What a login was granted unless ``auth.session_lifetime`` was shortened (``session_idle``).
DEFAULT_SESSION_SECONDS = 900

#: ``auth.session_lifetime`` of a run whose recorded sessions were shorter than the default.
SHORT_SESSION = 2

#: How long one reply, event or state may take to arrive.
WAIT = 30.0

#: sizes of the files the recorded downloads fetched, by host and name.
SOURCES = {
    "8765": {"FreeBSD-11.0-RELEASE-amd64-bootonly.iso": 52_428_800},
    "8766": {
        "FreeBSD-12.0-RELEASE-amd64-disc1.iso": 12_582_912,
        "OpenBSD-6.0-install60.iso": 8_388_608,
    },
}
#: Downloads whose source announced no size and failed half way in the recording.
CUT_SHORT = {"FreeBSD-12.0-RELEASE-amd64-disc1.iso"}

_DATE = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d [A-Z]{2,5} \d{4}")
_REGISTERED = re.compile(r"(Date Registered: ).*")
_RATES = ("rate", "download_rate")
_PROGRESS = ("bytes_done", "percent", "percent_done", *_RATES)


def normalise(message: dict[str, Any]) -> dict[str, Any]:
    """The message with what legitimately differs between two runs replaced by placeholders.

    * ``rpc/auth`` and ``rpc/auth_ssl`` replies ``[token, seconds]``: ``["<token>", "<seconds>"]``
      (the seconds are checked against the run's configuration by the replay itself);
    * ``auth_ssl``'s challenge ``test_string``: ``"<challenge>"`` (its length is the daemon's
      choice);
    * ``fetchiso``'s ``queueid`` and a dispatcher event's ``process_details.process_id``:
      ``"<task>"``;
    * guest descriptions in ``date(1)``'s format (iohyve writes the creation time):
      ``"<date>"``;
    * ``list_ssl_certs``' ``Date Registered``: ``"<time>"``;
    * dispatcher events: ``time_started``/``time_finished`` are ``"<time>"`` and the command's
      output ``"<output>"`` (fetch(1)'s sizes and rates); the rates (``rate``,
      ``download_rate``) are ``"<progress>"``, and so are, in events that are not final, the
      other progress measures (``bytes_done``, ``percent``, ``percent_done``) when present.
      An empty ``percent_done`` with a null ``percent`` (what sysadmd sent when the size was
      unknown when the recording was made) counts as absent: such events now leave both out.
    """
    message = json.loads(json.dumps(message))
    args = message.get("args")
    if message.get("namespace") == "events" and message.get("name") == "dispatcher":
        assert isinstance(args, dict), message
        _normalise_event(args)
        return message
    if (
        message.get("name") == "response"
        and isinstance(args, list)
        and len(args) == 2
        and isinstance(args[0], str)
        and isinstance(args[1], int)
    ):
        message["args"] = ["<token>", "<seconds>"]
    elif isinstance(args, dict):
        if isinstance(args.get("test_string"), str):
            args["test_string"] = "<challenge>"
        fetch = args.get("fetchiso")
        if isinstance(fetch, dict) and "queueid" in fetch:
            fetch["queueid"] = "<task>"
        guests = args.get("listvms")
        if isinstance(guests, dict):
            for guest in guests.values():
                if _DATE.fullmatch(guest.get("description", "")):
                    guest["description"] = "<date>"
        if message.get("id") == "client_ssl_page_list":
            for keys in args.values():
                for key, text in keys.items():
                    keys[key] = _REGISTERED.sub(r"\1<time>", text)
    return message


def _normalise_event(args: dict[str, Any]) -> None:
    if args.get("percent_done") == "" and args.get("percent") is None:
        args.pop("percent_done", None)
        args.pop("percent", None)
    for key in _PROGRESS if args.get("state") != "finished" else _RATES:
        if key in args:
            args[key] = "<progress>"
    details = args["process_details"]
    details["process_id"] = "<task>"
    for key in ("time_started", "time_finished"):
        if key in details:
            details[key] = "<time>"
    for command in details["cmd_list"]:
        if command in details:
            details[command] = "<output>"


def _seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _is_event(message: dict[str, Any]) -> bool:
    return message.get("namespace") == "events" and message.get("id") == ""


def _substitute(value: Any, replacements: dict[str, str]) -> Any:
    """``value`` with every string's occurrences of each key replaced by its value."""
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_substitute(item, replacements) for item in value]
    if isinstance(value, dict):
        return {
            _substitute(key, replacements): _substitute(item, replacements)
            for key, item in value.items()
        }
    return value


def _recording() -> list[dict[str, Any]]:
    lines = RECORDING.read_text().splitlines()
    records = [json.loads(line) | {"line": number} for number, line in enumerate(lines, 1)]
    return [r for r in records if "opcode" not in r and "http" not in r]


@dataclass
class Task:
    """One recorded fetch: its recorded events, and what the live daemon made of it."""

    filename: str
    host: str
    start: int  # the line of its fetchiso request
    end: int = 0  # the line of its finished event
    recorded: list[dict[str, Any]] = field(default_factory=list)
    live_id: str | None = None


def _tasks(records: list[dict[str, Any]]) -> dict[str, Task]:
    """The recorded fetch tasks by recorded task id."""
    tasks: dict[str, Task] = {}
    requests: dict[int, dict[str, Any]] = {}
    for record in records:
        msg = record.get("msg")
        if msg is None:
            continue
        args = msg["args"]
        if record["d"] == "C>" and isinstance(args, dict) and args.get("action") == "fetchiso":
            requests[record["c"]] = record
        elif (
            record["d"] == "S>" and isinstance(args, dict) and "queueid" in args.get("fetchiso", {})
        ):
            request = requests[record["c"]]
            url = request["msg"]["args"]["url"]
            host = url.split("/")[2].rsplit(":", 1)[1]
            tasks[args["fetchiso"]["queueid"]] = Task(url.rsplit("/", 1)[1], host, request["line"])
    for record in records:
        msg = record.get("msg")
        if msg is not None and _is_event(msg) and msg["name"] == "dispatcher":
            task = tasks[msg["args"]["process_details"]["process_id"]]
            task.recorded.append(msg)
            if msg["args"]["state"] == "finished":
                task.end = record["line"]
    return tasks


def _runs(records: list[dict[str, Any]]) -> list[int]:
    """For each daemon run (they end at a server close 1001), the session seconds its
    recorded logins were granted (the smallest)."""
    runs = [DEFAULT_SESSION_SECONDS]
    stopping = False
    for record in records:
        if record.get("d") == "S>" and record.get("close") == 1001:
            stopping = True
        elif record.get("event") == "accept" and stopping:
            runs.append(DEFAULT_SESSION_SECONDS)
            stopping = False
        msg = record.get("msg")
        if msg and msg["name"] == "response" and isinstance(msg["args"], list):
            runs[-1] = min(runs[-1], msg["args"][1])
    return runs


@dataclass
class Connection:
    """One live WebSocket standing in for a recorded connection."""

    client: WsClient
    replies: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    challenge: str | None = None
    recorded_expiry: float | None = None
    live_expiry: float | None = None

    def pump(self) -> None:
        """Move what arrived into ``replies`` and ``events``."""
        while self.client.received.pending:
            message, binary = self.client.received.pending.pop(0)
            assert not binary, "the daemon answers in text frames"
            (self.events if _is_event(message) else self.replies).append(message)

    @property
    def closed(self) -> tuple[bool, int | None, str | None] | None:
        """How the daemon closed it, once it did."""
        done = self.client.closed
        if not done.called:
            return None
        result: tuple[bool, int | None, str | None] = getattr(done, "result")  # noqa: B009
        return result

    async def until(self, what: str, found: Any) -> Any:
        """Wait until ``found()`` gives something (pumping meanwhile) and return it."""
        deadline = reactor.seconds() + WAIT
        while True:
            self.pump()
            result = found()
            if result is not None:
                return result
            if self.closed is not None:
                return None
            assert reactor.seconds() < deadline, f"no {what} within {WAIT} s"
            await settle(0.02)


class Replay:
    """The recording, played against the daemon; one instance per test."""

    def __init__(self, base: Path, hosts: dict[str, HTTPServer]) -> None:
        self.base = base
        self.state = base / "state"
        self.records = _recording()
        self.tasks = _tasks(self.records)
        self.runs = _runs(self.records)
        self.hosts = hosts
        self.daemon: Daemon | None = None
        self.run = -1
        self.connections: dict[int, Connection] = {}
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.guests: set[str] = set()
        self.replacements: dict[str, str] = {}
        self.session_seconds = DEFAULT_SESSION_SECONDS
        self.pairs = self._pair_replies()
        #: Recorded replies compared, and those a daemon-closed socket could not receive.
        self.compared = 0
        self.unreceived = 0
        self.finished: list[str] = []

    def _pair_replies(self) -> dict[int, dict[str, Any]]:
        """Each request's line → its recorded reply (the next ``S>`` on that connection with
        the same id)."""
        waiting: dict[tuple[int, str], list[int]] = {}
        pairs: dict[int, dict[str, Any]] = {}
        for record in self.records:
            msg = record.get("msg")
            if msg is None or (record["d"] == "S>" and _is_event(msg)):
                continue
            key = (record["c"], msg["id"])
            if record["d"] == "C>":
                waiting.setdefault(key, []).append(record["line"])
            elif waiting.get(key):
                pairs[waiting[key].pop(0)] = record
        return pairs

    # -- the daemon ---------------------------------------------------------------------------

    def _config(self) -> Path:
        lines = [
            '[daemon]\nhostname = "vm"',
            "[iohyve]\nlist_cache = 0",
            # sysadm never resumed a download: the recorded cut-short fetch fails, as it did.
            "[fetch]\ngrace = 1\nretries = 0",
        ]
        if self.runs[self.run] < DEFAULT_SESSION_SECONDS:
            lines.append(f"[auth]\nsession_lifetime = {SHORT_SESSION}")
        path = self.base / f"sysadmd-{self.run}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def start(self) -> None:
        self.run += 1
        first = self.run == 0
        if first:
            seed(self.state, self.base)
            self.guests = {"testguest"}
        config = self._config()
        self.daemon = await deferToThread(
            Daemon, self.state, "--config", str(config), log_name=f"run-{self.run}.log"
        )
        self.session_seconds = (
            SHORT_SESSION
            if self.runs[self.run] < DEFAULT_SESSION_SECONDS
            else DEFAULT_SESSION_SECONDS
        )
        if first:
            accounts = LocalAccounts(self.state / ACCOUNTS_FILE, reactor, hasher=FAST_HASHER)
            accounts.add(OPERATOR[0], Role.OPERATOR, OPERATOR[1])
            self._replacements()

    def _replacements(self) -> None:
        assert self.daemon is not None
        recorded_key = next(
            r["msg"]["args"]["pub_key"]
            for r in self.records
            if r.get("msg") and isinstance(r["msg"]["args"], dict) and "pub_key" in r["msg"]["args"]
        )
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.replacements = {
            "<admin-password>": self.daemon.password,
            "<oper-password>": OPERATOR[1],
            recorded_key: base64.b64encode(pem).decode("ascii"),
            **{f"http://127.0.0.1:{port}/": server.url("") for port, server in self.hosts.items()},
        }

    async def stop(self) -> None:
        assert self.daemon is not None
        daemon, self.daemon = self.daemon, None
        assert await deferToThread(daemon.stop), daemon.log_text()

    # -- one line of the recording ------------------------------------------------------------

    async def play(self, record: dict[str, Any]) -> None:
        number = record["c"]
        if record.get("event") == "accept":
            if self.daemon is None:
                await self.start()
            assert self.daemon is not None
            client = await connect(
                "localhost",
                self.daemon.ports[0],
                tls=self.daemon.tls(),  # type: ignore[arg-type]
                headers={"Origin": "sysadm-client"},
            )
            self.connections[number] = Connection(client)
            return
        connection = self.connections[number]
        if record.get("event") == "closed":
            await self._closed(connection)
        elif "close" in record:
            await self._close(record, connection)
        elif "msg" in record and record["d"] == "C>":
            await self._send(record, connection)
        elif "msg" in record:
            await self._receive(record, connection)

    async def _send(self, record: dict[str, Any], connection: Connection) -> None:
        message = _substitute(record["msg"], self.replacements)
        args = message["args"]
        if isinstance(args, dict) and "encrypted_string" in args:
            assert connection.challenge is not None, "a signature without a challenge"
            args["encrypted_string"] = sign_challenge(self.key, connection.challenge)
        if isinstance(args, dict) and args.get("action") == "listvms":
            self._make_guests_the_host_made(self.pairs[record["line"]])
        await self._wait_for_session_end(record, connection)
        if connection.closed is None:
            connection.client.send(message)

    def _make_guests_the_host_made(self, reply: dict[str, Any]) -> None:
        listed = reply["msg"]["args"].get("listvms", {})
        for name in sorted(set(listed) - self.guests):
            run_simulator(self.state / "simulator", "create", name, "8G")
            if listed[name]["running"] == "YES":
                run_simulator(self.state / "simulator", "start", name)
            self.guests.add(name)

    async def _wait_for_session_end(self, record: dict[str, Any], connection: Connection) -> None:
        if connection.recorded_expiry is None or connection.live_expiry is None:
            return
        if _seconds(record["t"]) <= connection.recorded_expiry:
            return
        delay = connection.live_expiry + 0.5 - reactor.seconds()
        if delay > 0:
            await settle(delay)

    async def _receive(self, record: dict[str, Any], connection: Connection) -> None:
        recorded = _substitute(record["msg"], self.replacements)
        if _is_event(recorded):
            if recorded["args"]["state"] == "finished":
                task = self.tasks[record["msg"]["args"]["process_details"]["process_id"]]
                await self._finished(task, connection)
            return
        live = await connection.until(
            f"reply to {recorded['id']} (line {record['line']})",
            lambda: next((m for m in connection.replies if m["id"] == recorded["id"]), None),
        )
        if live is None:
            # The daemon closed the socket: only a session's end may do that (4xxx), and only
            # after the point where the recorded session had ended (the recording then shows
            # the socket's calls answered, those that need a login with 401).
            closed = connection.closed
            assert closed is not None and closed[1] is not None and 4000 <= closed[1] < 5000, (
                record,
                closed,
            )
            assert connection.recorded_expiry is not None, record
            assert _seconds(record["t"]) > connection.recorded_expiry, record
            self.unreceived += 1
            return
        connection.replies.remove(live)
        self._check_reply(record, recorded, live, connection)

    def _check_reply(
        self,
        record: dict[str, Any],
        recorded: dict[str, Any],
        live: dict[str, Any],
        connection: Connection,
    ) -> None:
        args = live["args"]
        if isinstance(args, dict) and isinstance(args.get("test_string"), str):
            assert args["test_string"], live
            connection.challenge = args["test_string"]
        if recorded["name"] == "response" and isinstance(recorded["args"], list):
            # A login: the session lasts what this run's configuration says.
            assert args[1] == self.session_seconds, live
            connection.recorded_expiry = _seconds(record["t"]) + recorded["args"][1]
            connection.live_expiry = reactor.seconds() + args[1]
        fetch = args.get("fetchiso") if isinstance(args, dict) else None
        if isinstance(fetch, dict) and "queueid" in fetch:
            self.tasks[record["msg"]["args"]["fetchiso"]["queueid"]].live_id = fetch["queueid"]
        expected = normalise(recorded)
        if isinstance(args, dict) and "listisos" in args:
            expected, live = self._without_isos_in_flight(record, expected, live)
        expected = self._deliberate(record, expected, live)
        assert normalise(live) == expected, f"line {record['line']}"
        self.compared += 1

    def _without_isos_in_flight(
        self, record: dict[str, Any], expected: dict[str, Any], live: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """An ISO whose fetch is running is listed or not depending on how far its download
        got (its dataset appears when the download starts and goes if it fails): it is left
        out of both lists. Whether it arrived is checked by the task's final event and by
        the next list taken after it finished."""
        running = {t.filename for t in self.tasks.values() if t.start < record["line"] < t.end}
        expected = {
            **expected,
            "args": {"listisos": [i for i in expected["args"]["listisos"] if i not in running]},
        }
        live = {
            **live,
            "args": {"listisos": [i for i in live["args"]["listisos"] if i not in running]},
        }
        return expected, live

    def _deliberate(
        self, record: dict[str, Any], expected: dict[str, Any], live: dict[str, Any]
    ) -> dict[str, Any]:
        """The recorded reply as sysadmd now answers on purpose where it answered otherwise
        when the recording was made, each difference checked here.

        * ``sysadm/network list-devices`` left every description empty (the GUI showed
          ``em0 ()``); now an interface is described by ifconfig or its driver.
        * The operator's ``register_ssl_cert`` for itself was refused (403); now any user may
          register its own key, as sysadm let it, so ``rpc/query`` shows ``rpc/settings`` as
          ``read/write`` for the operator. This GUI runs on the machine whose key the admin
          registered earlier in the recording, and a key logs in one account only: the
          operator's registration of that same key is refused with 400 saying so.
        * Subscribing to event names sysadmd does not have (the GUI asks for sysadm's
          ``system-state`` and ``life-preserver``) succeeded silently; the reply now names
          them under ``unknown``.
        * ``rpc/query`` and ``version`` replies carry the extra field ``backend``, the VM
          manager that answers (iohyve here).
        * ``rpc/query`` also lists the classes sysadmd added since (the guest console,
          the console WebSocket's own actions and ISO uploads), which the GUI ignores.
        """
        args = live["args"]
        if isinstance(expected["args"], dict) and "rpc/query" in expected["args"]:
            added = {"sysadm/console", "sysadm/consoleview", "sysadm/isoupload"}
            assert isinstance(args, dict) and "sysadm/console" in args, live
            expected = {
                **expected,
                "args": {**expected["args"], **{n: args[n] for n in added if n in args}},
            }
        if (
            isinstance(args, dict)
            and isinstance(expected["args"], dict)
            and "backend" in args
            and "backend" not in expected["args"]
        ):
            assert args["backend"] == "iohyve", live
            expected = {**expected, "args": {**expected["args"], "backend": "iohyve"}}
        if record["msg"]["id"] == "client_page_iohyve_setup_options_nic":
            for name, device in args.items():
                assert device["description"], f"{name} has no description"
            return {
                **expected,
                "args": {
                    n: {**d, "description": args[n]["description"]}
                    for n, d in expected["args"].items()
                },
            }
        if (
            record["msg"]["id"] == "sysadm-auto-cert-register"
            and expected["args"].get("code") == "403"
        ):
            return {
                **expected,
                "args": {
                    "code": "400",
                    "message": "this key is already registered by another user",
                },
            }
        if expected["namespace"] == "events" and expected["args"] == {} and args:
            # The recorded reply named nothing: every name the GUI asked for was unknown.
            unknown = args.get("unknown")
            assert list(args) == ["unknown"] and unknown, live
            assert not set(unknown) & set(EVENT_NAMES), live
            return {**expected, "args": {"unknown": unknown}}
        if isinstance(expected["args"], dict) and expected["args"].get("rpc/settings") == "read":
            return {**expected, "args": {**expected["args"], "rpc/settings": "read/write"}}
        return expected

    async def _finished(self, task: Task, connection: Connection) -> None:
        """The recorded task finished here: the live one must finish too, with the same final
        event, after the same kinds of events."""
        assert task.live_id is not None, "the fetchiso reply came after the task finished"
        if task.filename in CUT_SHORT:
            assert self.hosts[task.host].files.stalled, "the download was not held"
            self.hosts[task.host].files.release()

        def events() -> list[dict[str, Any]]:
            return [
                e
                for e in connection.events
                if e["name"] == "dispatcher"
                and e["args"]["process_details"]["process_id"] == task.live_id
            ]

        live = await connection.until(
            f"end of {task.filename}",
            lambda: events() if events() and events()[-1]["args"]["state"] == "finished" else None,
        )
        assert live is not None, "the connection closed during a fetch"
        recorded = [_substitute(event, self.replacements) for event in task.recorded]
        kinds = [e["args"]["state"] for e in live]
        order = ["pending", "running", "finished"]
        assert kinds[0] == "pending" and kinds == sorted(kinds, key=order.index), kinds
        assert set(kinds) == {e["args"]["state"] for e in recorded}, kinds
        for event in live:
            args = event["args"]
            # A percentage exactly when the size is known; bytes and rate always.
            known = args["bytes_total"] is not None
            assert ("percent" in args) == ("percent_done" in args) == known, args
            assert "bytes_done" in args and "rate" in args, args
            same_kind = [e for e in recorded if e["args"]["state"] == args["state"]]
            assert any(_keys(event) == _keys(other) for other in same_kind), (event, same_kind)
        assert normalise(live[-1]) == normalise(recorded[-1]), task.filename
        self.finished.append(task.filename)

    async def _close(self, record: dict[str, Any], connection: Connection) -> None:
        if record["d"] == "C>":
            if connection.closed is None:
                connection.client.sendClose(record["close"], record["reason"])
            await connection.until("close", lambda: connection.closed)
            return
        # The server closed: the daemon stopped (1001); stop it if this is the first.
        assert (record["close"], record["reason"]) == (1001, "the server is stopping"), record
        if self.daemon is not None:
            await self.stop()
        closed = await connection.until("close", lambda: connection.closed)
        assert closed is not None
        code = closed[1]
        assert code == 1001 or (code is not None and 4000 <= code < 5000), closed

    async def _closed(self, connection: Connection) -> None:
        if connection.closed is None:
            transport = connection.client.transport
            assert transport is not None
            transport.abortConnection()
            await connection.until("close", lambda: connection.closed)
        connection.pump()
        assert connection.replies == [], f"replies nobody asked for: {connection.replies}"

    async def everything(self) -> None:
        for record in self.records:
            await self.play(record)
        if self.daemon is not None:
            await self.stop()


def _keys(event: dict[str, Any]) -> set[str]:
    """An event's keys but the percentage, which depends on whether the size was known yet."""
    return set(normalise(event)["args"]) - {"percent", "percent_done"}


@pytest.fixture
def hosts() -> Iterator[dict[str, HTTPServer]]:
    """The two download hosts of the recording, with files of the recorded sizes."""
    servers = {port: HTTPServer() for port in SOURCES}
    for port, files in SOURCES.items():
        for name, size in files.items():
            servers[port].files.files[name] = bytes(size)
    for name in CUT_SHORT:
        for port, files in SOURCES.items():
            if name in files:
                servers[port].files.chunked.add(name)
                servers[port].files.stall.add(name)
    yield servers
    for server in servers.values():
        server.stop()


@async_test
async def test_the_recorded_gui_conversation_replays(
    tmp_path: Path, hosts: dict[str, HTTPServer]
) -> None:
    """The recorded GUI conversation replays against the daemon in simulate mode with the
    same replies (tokens and times aside)."""
    replay = Replay(tmp_path, hosts)
    try:
        await replay.everything()
        replies = [
            r
            for r in replay.records
            if r.get("d") == "S>" and "msg" in r and not _is_event(r["msg"])
        ]
        assert replay.compared + replay.unreceived == len(replies)
        assert replay.finished == [t.filename for t in replay.tasks.values()]
        assert replay.run == len(replay.runs) - 1 == 3
    finally:
        for connection in replay.connections.values():
            if connection.closed is None and connection.client.transport is not None:
                connection.client.transport.abortConnection()
        if replay.daemon is not None:
            await deferToThread(replay.daemon.stop)


def test_normalise_keeps_what_must_match() -> None:
    """Only the documented values are replaced: a changed action result, id or error code
    still shows."""
    reply = {
        "args": {
            "listvms": {"g": {"description": "Fri Dec  4 05:29:22 UTC 2026", "running": "NO"}}
        },
        "id": "x",
        "name": "response",
        "namespace": "sysadm",
    }
    assert normalise(reply)["args"]["listvms"]["g"] == {"description": "<date>", "running": "NO"}
    other = json.loads(json.dumps(reply))
    other["args"]["listvms"]["g"]["running"] = "YES"
    assert normalise(other) != normalise(reply)
    assert normalise({**reply, "id": "y"}) != normalise(reply)
    login = {"args": ["abc", 900], "id": "a", "name": "response", "namespace": "rpc"}
    assert normalise(login)["args"] == ["<token>", "<seconds>"]
    error = {
        "args": {"code": "401", "message": "m"},
        "id": "a",
        "name": "error",
        "namespace": "error",
    }
    assert normalise(error) == error
