"""The errors a backend raises, and the one place they become API errors.

A backend says what went wrong in its own terms: a guest, disk or ISO that is not
there (:class:`NotFound`), a name that is taken or a guest in the wrong state
(:class:`Conflict`), something its tool cannot do (:class:`Unsupported`), or a tool
that ran and did not do what was asked (:class:`BackendFailed`, with the tool's own
message). :func:`maps_backend_errors` turns them into the API's codes (404, 409, 400,
500) for every action of a handler class, so that no handler maps them by hand.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sysadmd.api import ApiError, declared_actions
from sysadmd.backends._runner import ProcessResult

C = TypeVar("C", bound=type)


class BackendError(Exception):
    """Something a backend could not do; ``message`` is fit for a reply and a log line."""

    #: The API status the handlers answer with.
    code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(BackendError):
    """A guest, disk, ISO or pool that does not exist."""

    code = 404


class Conflict(BackendError):
    """A name that is taken, or a guest or ISO in a state that forbids the change."""

    code = 409


class Unsupported(BackendError):
    """A request this backend's tool cannot carry out (an option it does not have)."""

    code = 400


class BackendFailed(BackendError):
    """A tool ran and did not do what was asked: ``<command> failed: <detail>``.

    ``command`` names the tool and its subcommand as a user knows them
    (``iohyve create``, ``zpool list``, ``ifconfig``); ``detail`` is the tool's own
    message where it had one; ``result`` is the run, when there was one.
    """

    def __init__(self, command: str, detail: str, result: ProcessResult | None = None) -> None:
        super().__init__(f"{command} failed: {detail}")
        self.command = command
        self.detail = detail
        self.result = result


def api_error(error: BackendError) -> ApiError:
    """The API error a backend error is answered with."""
    return ApiError(error.code, error.message)


def maps_backend_errors(cls: C) -> C:
    """Make every action declared on ``cls`` answer backend errors with their API code."""
    for method_name, _ in declared_actions(cls):
        method = getattr(cls, method_name)
        setattr(cls, method_name, _mapping(method))
    return cls


def _mapping(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    # functools.wraps copies the function's attributes, the action's declaration with them.
    @functools.wraps(method)
    async def mapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except BackendError as e:
            raise api_error(e) from None

    return mapped
