"""Who is calling and what they may do.

Private modules: ``_authenticator`` and its ``_sessions``, ``_lockout``, ``_audit`` (the audit
log), ``_accounts`` (local accounts), ``_credentials`` and ``_sources`` (what checks a password:
local, PAM via ``_pam``), ``_keys`` (SSL key logins) and ``_control`` (the control socket).
Other packages use only the names below.

One module stays public: :mod:`sysadmd.auth.admin`, the ``sysadmd-admin`` command line (its
console script and ``python -m sysadmd.auth.admin``); this ``__init__`` does not import it.

May import: ``sysadmd.tasks``, ``sysadmd.backends``, ``sysadmd.api``, ``sysadmd.config``,
``sysadmd.shared``.
"""

from sysadmd.auth._audit import AuditLog
from sysadmd.auth._authenticator import (
    CHALLENGE_HEADER,
    Authenticator,
    RetryLater,
    credentials_from_header,
)
from sysadmd.auth._control import CONTROL_SOCKET, ControlService
from sysadmd.auth._keys import KEYS_FILE, Challenges, KeyStore
from sysadmd.auth._lockout import Lockout
from sysadmd.auth._sessions import Ended, Sessions
from sysadmd.auth._sources import WATCH_INTERVAL, AccountWatcher, build

__all__ = [
    "CHALLENGE_HEADER",
    "CONTROL_SOCKET",
    "KEYS_FILE",
    "WATCH_INTERVAL",
    "AccountWatcher",
    "AuditLog",
    "Authenticator",
    "Challenges",
    "ControlService",
    "Ended",
    "KeyStore",
    "Lockout",
    "RetryLater",
    "Sessions",
    "build",
    "credentials_from_header",
]
