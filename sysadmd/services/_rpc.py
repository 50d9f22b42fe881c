"""The ``rpc`` namespace: identify, the logins, and the registered keys of ``rpc/settings``."""

from __future__ import annotations

from typing import Any, Final

from sysadmd.api import KEY, NAME, TEXT, ApiError, Arg, Call, Identity, Registry, Role, action
from sysadmd.auth import Authenticator

_LOGIN_REPLY: Final = {
    "type": "array",
    "prefixItems": [{"type": "string"}, {"type": "integer", "minimum": 0}],
    "minItems": 2,
    "maxItems": 2,
}


def _caller(call: Call) -> Identity:
    """The logged-in caller of an action that needs a login (the registry made sure)."""
    if call.caller is None:
        raise ApiError(401, "log in first")
    return call.caller


class Rpc:
    """Handlers of ``rpc/identify``, ``rpc/auth*`` and ``rpc/settings``."""

    def __init__(self, auth: Authenticator, hostname: str) -> None:
        self._auth = auth
        self._hostname = hostname

    @action(
        "rpc",
        "identify",
        None,
        summary="Say what this server is; needs no login. sysadm's clients ask first.",
        role=Role.PUBLIC,
        reply={
            "type": "object",
            "properties": {"type": {"const": "server"}, "hostname": {"type": "string"}},
            "required": ["type", "hostname"],
            "additionalProperties": False,
        },
    )
    async def identify(self, call: Call) -> Any:
        return {"type": "server", "hostname": self._hostname}

    @action(
        "rpc",
        "auth",
        None,
        summary=(
            "Log in with a user name and password; replies [token, seconds_valid]. The "
            "connection is then logged in; the token also works with rpc/auth_token on "
            "another connection and as a REST Bearer token."
        ),
        role=Role.PUBLIC,
        args=[
            Arg("username", TEXT, "the user name"),
            Arg("password", TEXT, "the password"),
        ],
        reply=_LOGIN_REPLY,
        login=True,
    )
    async def auth(self, call: Call) -> Any:
        return await self._auth.password_login(
            call.connection, call.args["username"], call.args["password"]
        )

    @action(
        "rpc",
        "auth_token",
        None,
        summary="Log this connection in with the token of a live session.",
        role=Role.PUBLIC,
        args=[Arg("token", TEXT, "a token from rpc/auth")],
        reply=_LOGIN_REPLY,
        login=True,
    )
    async def auth_token(self, call: Call) -> Any:
        return self._auth.token_login(call.connection, call.args["token"])

    @action(
        "rpc",
        "auth_ssl",
        None,
        summary=(
            "Log in with a registered RSA key, in two stages: without arguments it replies "
            "{test_string}, valid 30 s; with encrypted_string (the test string encrypted with "
            "the private key, PKCS#1 v1.5, base64) it replies [token, seconds_valid]."
        ),
        role=Role.PUBLIC,
        args=[
            Arg(
                "encrypted_string",
                TEXT,
                "stage 2: the signed test string, base64",
                required=False,
            )
        ],
        reply={
            "oneOf": [
                _LOGIN_REPLY,
                {
                    "type": "object",
                    "properties": {"test_string": {"type": "string"}},
                    "required": ["test_string"],
                    "additionalProperties": False,
                },
            ]
        },
        login=True,
    )
    async def auth_ssl(self, call: Call) -> Any:
        encrypted = call.args.get("encrypted_string")
        if encrypted is None:
            return self._auth.ssl_challenge(call.connection)
        return await self._auth.ssl_login(call.connection, encrypted)

    @action(
        "rpc",
        "auth_clear",
        None,
        summary="End this connection's session, on every connection that uses its token.",
        role=Role.PUBLIC,
        reply={"type": "object", "additionalProperties": False},
        login=True,
    )
    async def auth_clear(self, call: Call) -> Any:
        self._auth.logout(call.connection)
        return {}

    @action(
        "rpc",
        "settings",
        "register_ssl_cert",
        summary=(
            "Register an RSA public key (2048 to 8192 bits) for rpc/auth_ssl logins, for "
            "yourself or, as an admin, with 'user', for another existing account."
        ),
        role=Role.ADMIN,
        own_account=Role.OPERATOR,
        wrapped=False,
        args=[
            Arg("pub_key", KEY, "the public key: PEM text, or the base64 of it"),
            Arg("nickname", TEXT, "a name for the key", required=False),
            Arg("email", TEXT, "a contact address", required=False),
            Arg("user", NAME, "the account the key logs in as (default: yourself)", required=False),
        ],
        reply={"type": "object", "additionalProperties": False},
    )
    async def register_ssl_cert(self, call: Call) -> Any:
        await self._auth.register_key(
            call.args.get("user", _caller(call).user),
            call.args["pub_key"],
            call.args.get("nickname", ""),
            call.args.get("email", ""),
        )
        return {}

    @action(
        "rpc",
        "settings",
        "list_ssl_certs",
        summary="The registered keys: all of them for an admin, your own for an operator.",
        role=Role.OPERATOR,
        wrapped=False,
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
    )
    async def list_ssl_certs(self, call: Call) -> Any:
        caller = _caller(call)
        if caller.role is Role.ADMIN:
            return self._auth.keys.list()
        return self._auth.keys.list(caller.user)

    @action(
        "rpc",
        "settings",
        "revoke_ssl_cert",
        summary=(
            "Remove a registered key: your own, or, as an admin, that of 'user' or of "
            "whoever registered it."
        ),
        role=Role.ADMIN,
        own_account=Role.OPERATOR,
        wrapped=False,
        args=[
            Arg("pub_key", KEY, "the key, as list_ssl_certs shows it or as PEM"),
            Arg("user", NAME, "only this account's key", required=False),
        ],
        reply={"type": "object", "additionalProperties": False},
    )
    async def revoke_ssl_cert(self, call: Call) -> Any:
        if not self._auth.keys.revoke(call.args["pub_key"], call.args.get("user")):
            raise ApiError(404, "no such registered key")
        return {}


class QueryActions:
    """``rpc/query``: which classes the caller may use, as sysadm's clients read it."""

    def __init__(self, registry: Registry, backend: str | None = None) -> None:
        """``backend`` names the VM manager that answers the ``sysadm/iohyve`` class."""
        self._registry = registry
        self._backend = backend

    @action(
        "rpc",
        "query",
        None,
        summary=(
            "The API classes this server has and what the caller may do with each: "
            '{"sysadm/iohyve": "read/write", ...}; an operator gets "read" where only the '
            "read-only actions are open to it. The extra key 'backend' (not a class: it has "
            "no '/') names the VM manager that answers: 'iohyve' or 'vm-bhyve'."
        ),
        role=Role.OPERATOR,
        reply={
            "type": "object",
            "properties": {"backend": {"type": "string"}},
            "additionalProperties": {"enum": ["read", "read/write"]},
        },
    )
    async def query(self, call: Call) -> Any:
        reply: dict[str, str] = dict(self._registry.access(_caller(call).role))
        if self._backend is not None:
            reply["backend"] = self._backend
        return reply
