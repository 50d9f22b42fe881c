"""The corridor every request takes, whichever transport it came by.

A transport turns bytes into an :class:`ApiRequest` (the class, action and arguments, the
:class:`~sysadmd.api._calls.Connection` it came on and the credentials it presented), awaits
:meth:`Api.dispatch`, and turns the :class:`Reply` back into bytes. Everything between
happens here, once, in this order:

1. the action is looked up in the registry (once per request: the hooks receive it);
2. on a connection that carries many requests, a request waits for a login running
   before it (so it runs as the user that login gives, and its reply follows the login's);
   the registry's declaration says which actions are logins (``login=True``);
3. the credentials are authenticated (:meth:`Gate.authenticate`; a request that presents
   none of its own is whoever its connection is logged in as, :meth:`Gate.caller`);
4. an unknown class or action is refused (404, 400), then a caller without the role
   (401, 403), before the arguments are looked at;
5. the arguments are validated; an action declared ``websocket_only`` (one that acts on the
   connection itself: its event subscriptions) is refused with 400 on a connection that
   does not last (:attr:`~sysadmd.api._calls.Connection.lasting` false: a REST request, an
   in-process call); then the handler is called;
6. an action that changes something is audited, whatever its outcome;
7. anything but an :class:`ApiError` becomes a 500 that reveals nothing, and
   :attr:`Api.on_call` hears of the answered request (the daemon counts it in its metrics).

A handler's result belongs to the corridor once returned, and is never changed
afterwards: a transport's :class:`~sysadmd.api._envelope.ResultEncoder` reuses the bytes of an
action's last result while the very same object comes back (the guest list, within its
refresh window).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sysadmd.api._calls import CONNECTION_SESSION, Authentication, Call, Connection, Identity
from sysadmd.api._errors import ApiError
from sysadmd.api._registry import ENVELOPE_KEYS, ActionSpec, Handler, Registry, wrap_result
from sysadmd.api._roles import Role
from sysadmd.shared import settled

#: The refusal of a ``websocket_only`` action on a connection that does not last. The only
#: such actions are the event subscriptions, so it speaks of events.
NOT_LASTING: Final = "events are delivered over WebSocket connections only"


class Gate(Protocol):
    """Says who is calling, and records what they did."""

    def caller(self, connection: Connection) -> Identity | None:
        """The user ``connection`` is logged in as now, or None."""
        ...

    async def authenticate(
        self, credentials: Authentication, connection: Connection
    ) -> Identity | None:
        """The user ``credentials`` log in on ``connection``, None for nobody; raises
        :class:`ApiError` (401, 429) for credentials that do not log in."""
        ...

    def audit(self, spec: ActionSpec, call: Call, outcome: str) -> None:
        """Record a call of an action that changes something."""
        ...


@dataclass(slots=True)
class ApiRequest:
    """One request, as a transport hands it to :meth:`Api.dispatch`.

    ``args`` are the request's arguments; with ``args_in_body`` they are a REST body
    instead: its ``args`` member if it has one, otherwise the body less the WebSocket
    envelope's keys (``namespace``, ``name``, ``id``), except those the action takes as
    arguments (``sysadm/iohyve``'s guest ``name``): over REST the path names the class.
    Nothing changes a request once made (it is not frozen only because frozen instances
    cost more to make, on every request).
    """

    namespace: str
    name: str
    args: Any
    connection: Connection
    credentials: Authentication = CONNECTION_SESSION
    id: str = ""
    args_in_body: bool = False


class Unresolved(enum.Enum):
    """What a request named, when it is no action of this server."""

    #: No API class of that namespace and name.
    CLASS = "class"
    #: A class of this server, but no action of it (or no ``action`` at all).
    ACTION = "action"


@dataclass(slots=True)
class Answer:
    """A request's answer: the result its handler returned for ``spec``."""

    request: ApiRequest
    spec: ActionSpec
    value: Any

    @property
    def result(self) -> Any:
        """The reply's ``args``: the handler's result, under its action's key if wrapped."""
        return wrap_result(self.spec, self.value)


@dataclass(slots=True)
class Refusal:
    """A request's answer: the error to tell the client; ``spec`` is the action the request
    resolved to, None when it named none of this server's."""

    request: ApiRequest
    spec: ActionSpec | None
    error: ApiError


#: What :meth:`Api.dispatch` answers.
Reply = Answer | Refusal


#: Told of every request once answered: the request, the action it resolved to, the code
#: (200 or the error's) and the seconds taken.
CallHook = Callable[[ApiRequest, "ActionSpec | Unresolved", int, float], object]


class Api:
    """The dispatch: routes requests through the registry to their handlers, if the
    caller may."""

    log = Logger()

    def __init__(self, registry: Registry, gate: Gate) -> None:
        self.registry = registry
        self._gate = gate
        #: Told of every answered request (see :data:`CallHook`); the daemon's metrics
        #: count calls through it.
        self.on_call: CallHook | None = None

    def caller(self, connection: Connection) -> Identity | None:
        """The user ``connection`` is logged in as now, or None."""
        return self._gate.caller(connection)

    async def dispatch(
        self, request: ApiRequest, respond: Callable[[Reply], object] | None = None
    ) -> Reply:
        """Answer one request: its result, or the :class:`ApiError` to tell the client.

        ``respond``, if given, is handed the reply as soon as it is ready, and a login's
        reply before any request that waited for the login runs on: a transport that
        sends replies through it keeps a pipelined login's reply ahead of the replies
        to the requests behind it.

        Never raises: any exception but an :class:`ApiError` is a bug, logged with its
        traceback and answered as a 500 that reveals nothing of the server's internals.
        """
        try:
            found: tuple[ActionSpec, Handler, Any] | ApiError = self._find(request)
        except ApiError as e:
            found = e
        connection = request.connection
        earlier = connection.login_done
        this_login: Deferred[None] | None = None
        if not isinstance(found, ApiError) and found[0].login:
            # A login: the requests that arrive while it runs wait for it.
            this_login = connection.login_done = Deferred()
        try:
            if earlier is not None:
                await settled(earlier)
            reply = await self._answer(request, found)
            if respond is not None:
                respond(reply)
            return reply
        finally:
            if this_login is not None:
                if connection.login_done is this_login:
                    connection.login_done = None
                this_login.callback(None)

    async def call(self, namespace: str, name: str, args: Any, connection: Connection) -> Any:
        """Run one request as the caller ``connection`` is logged in as, in process;
        return the reply's ``args`` or raise its :class:`ApiError`."""
        reply = await self.dispatch(ApiRequest(namespace, name, args, connection))
        if isinstance(reply, Refusal):
            raise reply.error
        return reply.result

    def _find(self, request: ApiRequest) -> tuple[ActionSpec, Handler, Any]:
        args = request.args
        if not request.args_in_body:
            return self.registry.find(request.namespace, request.name, args)
        if "args" in args:
            return self.registry.find(request.namespace, request.name, args["args"])
        spec, handler, _ = self.registry.find(request.namespace, request.name, args)
        taken = spec.arg_names
        return (
            spec,
            handler,
            {k: v for k, v in args.items() if k not in ENVELOPE_KEYS or k in taken},
        )

    async def _answer(
        self, request: ApiRequest, found: tuple[ActionSpec, Handler, Any] | ApiError
    ) -> Reply:
        started = perf_counter()
        spec = None if isinstance(found, ApiError) else found[0]
        code = 200
        try:
            connection = request.connection
            # Credentials first: a client that presents wrong ones hears so, whatever it
            # asked. A request presenting none is whoever its connection is logged in as.
            credentials = request.credentials
            if credentials is CONNECTION_SESSION:
                caller = self._gate.caller(connection)
            else:
                caller = await self._gate.authenticate(credentials, connection)
            if isinstance(found, ApiError):
                raise found
            spec, handler, raw = found
            # Who may call it next: a caller without the role learns nothing of the arguments.
            _authorize(spec, caller)
            args = spec.parse_args(raw)
            if caller is not None:
                args = _own_account(spec, args, caller)
            if spec.websocket_only and not connection.lasting:
                raise ApiError(400, NOT_LASTING)
            call = Call(args, connection, caller)
            if spec.role is not Role.ADMIN:
                return Answer(request, spec, await handler(call))
            return Answer(request, spec, await _audited_call(self._gate, spec, handler, call))
        except ApiError as e:
            code = e.code
            # The error is the answer, not a fault: drop its traceback, whose frames (this one
            # included) would hold the error in a reference cycle after every refusal.
            return Refusal(request, spec, e.with_traceback(None))
        except Exception:
            code = 500
            self.log.failure(
                "Unexpected error in {namespace}/{name}",
                namespace=request.namespace,
                name=request.name,
            )
            error = ApiError(500, "internal error; the server log has the details")
            return Refusal(request, spec, error)
        finally:
            if self.on_call is not None:
                resolved: ActionSpec | Unresolved
                if isinstance(found, ApiError):
                    resolved = Unresolved.CLASS if found.code == 404 else Unresolved.ACTION
                else:
                    resolved = found[0]
                self.on_call(request, resolved, code, perf_counter() - started)


async def _audited_call(gate: Gate, spec: ActionSpec, handler: Handler, call: Call) -> Any:
    """Call an action that changes something, and audit it whatever its outcome."""
    outcome = "500"
    try:
        value = await handler(call)
        outcome = "ok"
    except ApiError as e:
        outcome = str(e.code)
        raise
    finally:
        gate.audit(spec, call, outcome)
    return value


def _authorize(spec: ActionSpec, caller: Identity | None) -> None:
    if spec.role is Role.PUBLIC:
        return
    if caller is None:
        raise ApiError(401, "log in first (rpc/auth, rpc/auth_token or rpc/auth_ssl)")
    if not caller.role.allows(spec.entry_role):
        raise ApiError(403, f"the {caller.role} role may not call {spec.title}")


def _own_account(spec: ActionSpec, args: dict[str, Any], caller: Identity) -> dict[str, Any]:
    """The arguments of a call the caller may make only for its own account."""
    if spec.own_account is None or caller.role.allows(spec.role):
        return args
    if args.get("user", caller.user) != caller.user:
        raise ApiError(
            403, f"the {caller.role} role may call {spec.title} for its own account only"
        )
    return {**args, "user": caller.user}
