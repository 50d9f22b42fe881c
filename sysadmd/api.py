"""The transport-neutral core: a request in, a result or an :class:`ApiError` out.

The WebSocket protocol and the REST resource only translate bytes into calls of
:meth:`Api.call` (or :meth:`Api.handle_message`) and results back into bytes; the
look-up, validation, handler call and error mapping happen here, once.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from sysadmd import envelope
from sysadmd.errors import ApiError
from sysadmd.registry import Registry, wrap_result


class Api:
    """Routes requests through the registry to their handlers."""

    log = Logger()

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def call(self, namespace: str, name: str, args: Any) -> Any:
        """Run one request and return the reply's ``args``.

        Raises :class:`ApiError` for anything the client should hear about; any
        other exception is a bug, logged with its traceback and reported as a 500
        that reveals nothing of the server's internals.
        """
        spec, handler, values = self.registry.resolve(namespace, name, args)
        try:
            result = await handler(values)
        except ApiError:
            raise
        except Exception:
            self.log.failure(
                "Unexpected error in {path} {action}", path=spec.path, action=spec.action
            )
            raise ApiError(500, "internal error; the server log has the details") from None
        return wrap_result(spec, result)

    async def handle_message(self, data: bytes | str) -> bytes:
        """Answer one WebSocket message with the bytes of its reply or error envelope."""
        try:
            request = envelope.parse_request(data)
        except envelope.EnvelopeError as e:
            return envelope.error_reply(e.request_id, e)
        try:
            result = await self.call(request.namespace, request.name, request.args)
        except ApiError as e:
            return envelope.error_reply(request.id, e)
        return envelope.reply(request, result)
