"""The transport-neutral core: a request in, a result or an :class:`ApiError` out.

The WebSocket protocol and the REST resource only translate bytes into calls of
:meth:`Api.call` (or :meth:`Api.handle_message`) and results back into bytes; the
look-up, validation, handler call and error mapping happen here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sysadmd import envelope
from sysadmd.calls import Call, Connection, Identity
from sysadmd.errors import ApiError
from sysadmd.observer import settled
from sysadmd.registry import ActionSpec, Registry, wrap_result
from sysadmd.roles import Role


class Gate(Protocol):
    """Says who is behind a connection, and records what they did."""

    def caller(self, connection: Connection) -> Identity | None:
        """The logged-in user of ``connection``, or None."""
        ...

    def audit(self, spec: ActionSpec, call: Call, outcome: str) -> None:
        """Record a call of an action that changes something."""
        ...


class Api:
    """Routes requests through the registry to their handlers, if the caller may."""

    log = Logger()

    def __init__(self, registry: Registry, gate: Gate) -> None:
        self.registry = registry
        self._gate = gate
        self._last_shared = envelope.LastShared(envelope.dumps)
        #: Told of every call once answered: namespace, name, args, code (200 or the
        #: error's), seconds taken. The daemon's metrics count calls through it.
        self.on_call: Callable[[str, str, Any, int, float], object] | None = None

    def caller(self, connection: Connection) -> Identity | None:
        """The logged-in user of ``connection``, or None."""
        return self._gate.caller(connection)

    def refuse(self, data: bytes | str, error: ApiError) -> bytes:
        """An error envelope for a message that will not be run, with its id if readable."""
        try:
            request_id = envelope.parse_request(data).id
        except envelope.EnvelopeError as e:
            request_id = e.request_id
        return envelope.error_reply(request_id, error)

    def _authorize(self, spec: ActionSpec, connection: Connection) -> Identity | None:
        caller = self._gate.caller(connection)
        if spec.role is Role.PUBLIC:
            return caller
        if caller is None:
            raise ApiError(401, "log in first (rpc/auth, rpc/auth_token or rpc/auth_ssl)")
        if not caller.role.allows(spec.entry_role):
            raise ApiError(403, f"the {caller.role} role may not call {spec.title}")
        return caller

    @staticmethod
    def _own_account(spec: ActionSpec, args: dict[str, Any], caller: Identity) -> dict[str, Any]:
        """The arguments of a call the caller may make only for its own account."""
        if spec.own_account is None or caller.role.allows(spec.role):
            return args
        if args.get("user", caller.user) != caller.user:
            raise ApiError(
                403, f"the {caller.role} role may call {spec.title} for its own account only"
            )
        return {**args, "user": caller.user}

    async def call(self, namespace: str, name: str, args: Any, connection: Connection) -> Any:
        """Run one request and return the reply's ``args``.

        Raises :class:`ApiError` for anything the client should hear about; any
        other exception is a bug, logged with its traceback and reported as a 500
        that reveals nothing of the server's internals.
        """
        started = perf_counter()
        code = 200
        try:
            return await self._call(namespace, name, args, connection)
        except ApiError as e:
            code = e.code
            raise
        except Exception:
            code = 500
            self.log.failure(
                "Unexpected error in {namespace}/{name}", namespace=namespace, name=name
            )
            raise ApiError(500, "internal error; the server log has the details") from None
        finally:
            if self.on_call is not None:
                self.on_call(namespace, name, args, code, perf_counter() - started)

    async def _call(self, namespace: str, name: str, args: Any, connection: Connection) -> Any:
        spec, handler, raw = self.registry.find(namespace, name, args)
        # Who may call it first: a caller without the role learns nothing of the arguments.
        identity = self._authorize(spec, connection)
        args = spec.parse_args(raw)
        if identity is not None:
            args = self._own_account(spec, args, identity)
        call = Call(args, connection, identity)
        if spec.role is not Role.ADMIN:
            return wrap_result(spec, await handler(call))
        # Calls that change something are audited, whatever their outcome.
        outcome = "500"
        try:
            result = await handler(call)
            outcome = "ok"
        except ApiError as e:
            outcome = str(e.code)
            raise
        finally:
            self._gate.audit(spec, call, outcome)
        return wrap_result(spec, result)

    async def handle_message(
        self, data: bytes | str, connection: Connection, send: Callable[[bytes], object]
    ) -> None:
        """Answer one WebSocket message: hand its reply or error envelope to ``send``.

        Requests that arrive while a login runs wait for it, and a login's reply is
        sent before any of theirs: a client that pipelines its login and a request
        reads the replies in the order it asked.
        """
        try:
            request = envelope.parse_request(data)
        except envelope.EnvelopeError as e:
            send(envelope.error_reply(e.request_id, e))
            return
        earlier_login = connection.login_done
        is_login = request.namespace == "rpc" and request.name.startswith("auth")
        if is_login:
            this_login: Deferred[None] = Deferred()
            connection.login_done = this_login
        try:
            try:
                if earlier_login is not None:
                    await settled(earlier_login)
                result = await self.call(request.namespace, request.name, request.args, connection)
                reply = envelope.reply(request, result, self._last_shared.encode(result))
            except ApiError as e:
                reply = envelope.error_reply(request.id, e)
            send(reply)
        finally:
            if is_login:
                if connection.login_done is this_login:
                    connection.login_done = None
                this_login.callback(None)
