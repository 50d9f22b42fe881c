"""The one exception type that becomes an error reply on every transport."""

from __future__ import annotations

from typing import Final

#: The status codes the API uses, with the word sysadm clients know them by.
CODES: Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


class ApiError(Exception):
    """A request failed in a way the client should be told about.

    ``code`` is the HTTP-style status (it is sent as a string in WebSocket error
    envelopes and as the status line over REST); ``message`` says what is wrong in
    words a user can act on. Messages never echo raw client input that failed
    validation, so they are safe to log.
    """

    def __init__(self, code: int, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown API error code {code}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.message!r})"


def bad_request(message: str) -> ApiError:
    """A malformed request, an unknown action or an invalid argument (400)."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    """An unknown namespace/name, or an ISO or guest that does not exist (404)."""
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    """A target that already exists or a resource that is busy (409)."""
    return ApiError(409, message)
