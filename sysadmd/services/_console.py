"""Guest consoles as API actions.

``sysadm/console`` has ``consolelog`` (the last bytes a guest printed, over both
transports) and ``consolerelease`` (let the device go for a while, so that someone on the
host can run ``cu``). ``sysadm/consoleview`` is what the console transport asks on behalf
of its connection: ``attach`` (log in and start watching), ``take`` and ``release``
(become, or stop being, the one writer). Those three act on the calling connection itself,
so they are ``websocket_only`` and refused on any connection that is not a console's.
"""

from __future__ import annotations

from typing import Any, Final

from sysadmd.api import NAME, Arg, ArgType, Call, Role, action, bad_request
from sysadmd.backends import maps_backend_errors
from sysadmd.console import ConsoleService, GuestConsole, Viewer

#: Largest ``consolelog`` reply, and the default.
MAX_LOG_BYTES: Final = 1024 * 1024
DEFAULT_LOG_BYTES: Final = 64 * 1024
#: Longest ``consolerelease``, and the default, in seconds.
MAX_RELEASE: Final = 3600
DEFAULT_RELEASE: Final = 60


def _bounded_int(low: int, high: int) -> Any:
    def check(value: Any, label: str) -> int:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad_request(f"{label} must be a whole number from {low} to {high}")
        return value

    return check


LOG_BYTES: Final = ArgType(
    {"type": "integer", "minimum": 1, "maximum": MAX_LOG_BYTES},
    _bounded_int(1, MAX_LOG_BYTES),
    4096,
)
SECONDS: Final = ArgType(
    {"type": "integer", "minimum": 1, "maximum": MAX_RELEASE},
    _bounded_int(1, MAX_RELEASE),
    60,
)

_STATUS: Final = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "guest": {"type": "string"},
        "state": {"type": "string"},
        "writer": {"type": "boolean"},
        "viewers": {"type": "integer"},
    },
}


def viewer_of(call: Call) -> Viewer:
    """The console viewer a call came from; 400 for any other connection."""
    viewer: Viewer | None = getattr(call.connection, "console_viewer", None)
    if viewer is None:
        raise bad_request("this action belongs to console connections (/console/<guest>)")
    return viewer


def attached(call: Call) -> GuestConsole:
    console: GuestConsole | None = getattr(call.connection, "console", None)
    if console is None or console.name != call.args["name"]:
        raise bad_request(f"this connection does not watch the console of '{call.args['name']}'")
    return console


@maps_backend_errors
class ConsoleActions:
    """Handlers of the console actions."""

    def __init__(self, consoles: ConsoleService) -> None:
        self._consoles = consoles

    @action(
        "sysadm",
        "console",
        "consolelog",
        summary=(
            "The last bytes guest 'name' printed on its serial console (at most 'bytes', "
            f"default {DEFAULT_LOG_BYTES}), kept while nobody watched and across restarts. "
            "'log' is the output as UTF-8 text, invalid sequences replaced."
        ),
        role=Role.OPERATOR,
        args=[
            Arg("name", NAME, "the guest"),
            Arg("bytes", LOG_BYTES, f"at most this many bytes (up to {MAX_LOG_BYTES})", False),
        ],
        reply={
            "type": "object",
            "properties": {"name": {"type": "string"}, "log": {"type": "string"}},
        },
    )
    async def consolelog(self, call: Call) -> Any:
        name = call.args["name"]
        data = await self._consoles.history(name, call.args.get("bytes", DEFAULT_LOG_BYTES))
        return {"name": name, "log": data.decode("utf-8", errors="replace")}

    @action(
        "sysadm",
        "console",
        "consolerelease",
        summary=(
            "Close guest 'name''s console device for 'seconds' (default "
            f"{DEFAULT_RELEASE}, at most {MAX_RELEASE}) so that cu(1) on the host can open "
            "it; the daemon opens it again afterwards. 'until' is when, in seconds since "
            "the epoch."
        ),
        role=Role.ADMIN,
        args=[
            Arg("name", NAME, "the guest"),
            Arg("seconds", SECONDS, "how long to let the device go", False),
        ],
        reply={
            "type": "object",
            "properties": {"name": {"type": "string"}, "until": {"type": "number"}},
        },
    )
    async def consolerelease(self, call: Call) -> Any:
        name = call.args["name"]
        until = await self._consoles.let_go(name, call.args.get("seconds", DEFAULT_RELEASE))
        return {"name": name, "until": until}

    @action(
        "sysadm",
        "consoleview",
        "attach",
        summary="Watch guest 'name''s console on this console connection.",
        role=Role.OPERATOR,
        websocket_only=True,
        args=[Arg("name", NAME, "the guest")],
        reply=_STATUS,
    )
    async def attach(self, call: Call) -> Any:
        viewer = viewer_of(call)
        console = await self._consoles.attach(call.args["name"], viewer)
        return console.status(viewer)

    @action(
        "sysadm",
        "consoleview",
        "take",
        summary="Become the one writer of the console this connection watches.",
        role=Role.ADMIN,
        websocket_only=True,
        args=[Arg("name", NAME, "the guest")],
        reply=_STATUS,
    )
    async def take(self, call: Call) -> Any:
        viewer = viewer_of(call)
        console = attached(call)
        self._consoles.take(console, viewer)
        return console.status(viewer)

    @action(
        "sysadm",
        "consoleview",
        "release",
        summary="Stop being the writer of the console this connection watches.",
        role=Role.OPERATOR,
        websocket_only=True,
        args=[Arg("name", NAME, "the guest")],
        reply=_STATUS,
    )
    async def release(self, call: Call) -> Any:
        viewer = viewer_of(call)
        console = attached(call)
        self._consoles.release(console, viewer)
        return console.status(viewer)
