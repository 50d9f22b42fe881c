"""The exceptions of the sysadm client library.

Every exception the library raises on purpose is a :class:`ClientError`; its message is one
line, fit to show a user as it is, and never contains a password or a token.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ApiError",
    "ClientError",
    "ConnectionFailed",
    "FingerprintMismatch",
    "SessionExpired",
    "TLSVerificationFailed",
    "TaskFailed",
    "UnknownHost",
]


class ClientError(Exception):
    """Anything the client library reports; ``str()`` is one line for the user."""


class ApiError(ClientError):
    """The daemon answered with an error envelope: ``code`` (e.g. 404) and its ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"error {code}: {message}")
        self.code = code
        self.message = message


class SessionExpired(ApiError):
    """The saved token or the connection's session is no longer valid (a 401)."""

    def __init__(self, message: str = "session expired or revoked") -> None:
        super().__init__(401, message)

    def __str__(self) -> str:
        return self.message


class ConnectionFailed(ClientError):
    """The daemon could not be reached, or the connection ended before an answer."""


class TLSVerificationFailed(ConnectionFailed):
    """The TLS handshake failed: the certificate is not trusted for that host name."""


class UnknownHost(TLSVerificationFailed):
    """No fingerprint is pinned for ``host:port`` and the caller did not accept one.

    ``fingerprint`` is the SHA-256 fingerprint the server presented (``AA:BB:...``); nothing
    but the TLS handshake was sent to it.
    """

    def __init__(self, address: str, fingerprint: str) -> None:
        super().__init__(
            f"{address} is not a known host; its certificate's SHA-256 fingerprint is {fingerprint}"
        )
        self.address = address
        self.fingerprint = fingerprint


class FingerprintMismatch(TLSVerificationFailed):
    """The server's certificate is not the one pinned for ``host:port``: refused."""

    def __init__(self, address: str, pinned: str, presented: str, known_hosts: Path) -> None:
        super().__init__(
            f"the certificate of {address} has CHANGED: pinned {pinned}, presented {presented}; "
            f"refusing to connect. If the change is expected, remove the old pin with "
            f"`sysadm known-hosts remove {address}` (or delete its line from {known_hosts})"
        )
        self.address = address
        self.pinned = pinned
        self.presented = presented
        self.known_hosts = known_hosts


class TaskFailed(ClientError):
    """A fetch task ended without success: ``status`` is failed, cancelled or interrupted."""

    def __init__(self, task_id: str, status: str, message: str | None) -> None:
        detail = f": {message}" if message else ""
        super().__init__(f"task {task_id} {status}{detail}")
        self.task_id = task_id
        self.status = status
        self.message = message
