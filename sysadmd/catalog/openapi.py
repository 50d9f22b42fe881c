"""The OpenAPI 3.1 document of the REST interface, derived from the registry.

Every path, request body and reply schema comes from the ``@action`` declarations the
daemon validates with (:meth:`~sysadmd.api.ActionSpec.args_schema` and
:meth:`~sysadmd.api.ActionSpec.reply_schema`), and every error response from
:data:`sysadmd.api.CODES`, so the document cannot drift from the code.

``python -m sysadmd.catalog.openapi`` prints it, ``--update docs/openapi.json`` rewrites that
file and ``--check docs/openapi.json`` exits 1 if the file is not current. The daemon
serves the same document at ``GET /openapi.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sysadmd import __version__
from sysadmd.api import CODES, ENVELOPE_KEYS, ActionSpec, Role
from sysadmd.catalog._classes import all_specs

#: The path the daemon serves this document at.
DOCUMENT_PATH: Final = "/openapi.json"
#: The methods REST calls are made with (sysadmd.transport._rest.CALL_METHODS, without importing
#: the transport, so the document can be built without Twisted's web stack).
CALL_METHODS: Final = ("put", "post")

#: When each error code is returned over REST.
_WHEN: Final[dict[int, str]] = {
    400: "The body is not a JSON object of arguments (or has duplicate keys, NaN, too deep "
    "nesting), the action is unknown, or an argument is missing, unknown or invalid.",
    401: "Not logged in, a failed login, a session that has ended, or an Authorization "
    "header that is neither valid Basic nor a live Bearer token.",
    403: "The caller's role may not call the action.",
    404: "The ISO, guest or registered key named does not exist.",
    405: "A method other than the ones documented.",
    408: "The request did not arrive within the deadline; the connection is closed.",
    409: "The target exists already, or a queued or running fetch owns the name.",
    413: "The body is larger than allowed; the connection is closed.",
    415: "The body is not declared as application/json.",
    429: "Too many failed logins from this address or for this user; wait and retry.",
    500: "iohyve (or another host tool) failed, with its own message, or an internal error.",
    503: "The fetch queue is full.",
    507: "The ISO store has not enough free space for the size the download announces.",
}

_BASIC: Final = "basic"
_BEARER: Final = "bearer"
_LOGIN: Final[list[dict[str, list[str]]]] = [{_BASIC: []}, {_BEARER: []}]


def _key(*parts: str) -> str:
    """A component name: the parts joined with dots (``sysadm.iohyve.listvms.args``)."""
    return ".".join(parts)


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _action_key(spec: ActionSpec) -> str:
    return (
        _key(spec.namespace, spec.name, spec.action) if spec.action else spec.path.replace("/", ".")
    )


def _bare_body(spec: ActionSpec) -> dict[str, Any]:
    """The schema of a body that is the arguments itself.

    Besides the arguments it may hold the WebSocket envelope's keys (``namespace``,
    ``name``, ``id``) that the action does not take as arguments; REST ignores them.
    """
    schema = spec.args_schema()
    declared = {"enum": sorted(schema["properties"])}
    properties = dict(schema["properties"])
    for key in sorted(ENVELOPE_KEYS - properties.keys()):
        properties[key] = {"description": "a WebSocket envelope key; ignored over REST"}
    schema["properties"] = properties
    if "propertyNames" in schema:  # the names of an action's extra pairs, or these
        names = schema["propertyNames"]["anyOf"]
        schema["propertyNames"] = {
            "anyOf": [{"enum": sorted(properties)} if n == declared else n for n in names]
        }
    return schema


def _example(spec: ActionSpec) -> dict[str, Any]:
    """A valid body for ``spec``, from its argument types' examples."""
    body: dict[str, Any] = {"action": spec.action} if spec.action else {}
    for arg in spec.args:
        body[arg.name] = arg.type.example
    if spec.extra is not None:
        key, value = spec.extra.example
        body[key] = value
    return body


def _error_schema(codes: Iterable[int]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "args": {
                "type": "object",
                "properties": {
                    "code": {"enum": [str(code) for code in codes]},
                    "message": {"type": "string", "description": "what is wrong, in words"},
                },
                "required": ["code", "message"],
                "additionalProperties": False,
            }
        },
        "required": ["args"],
        "additionalProperties": False,
    }


def _error_response(code: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": f"{CODES[code]}: {_WHEN[code]}",
        "content": {"application/json": {"schema": _error_schema([code])}},
    }
    if code == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "the schemes to log in with",
                "required": True,
                "schema": {"type": "string"},
            }
        }
    return response


def _class_schema(specs: Sequence[ActionSpec], suffix: str) -> dict[str, Any]:
    """One class's ``suffix`` schemas: the one schema of a plain class, or for a class of
    actions a ``oneOf`` discriminated by ``action``."""
    if specs[0].action is None:
        return _ref("schemas", _key(_action_key(specs[0]), suffix))
    mapping = {
        str(spec.action): f"#/components/schemas/{_key(_action_key(spec), suffix)}"
        for spec in specs
    }
    return {
        "oneOf": [{"$ref": target} for target in mapping.values()],
        "discriminator": {"propertyName": "action", "mapping": mapping},
    }


def _wrapped_args(specs: Sequence[ActionSpec]) -> dict[str, Any]:
    """The value of ``args`` in a ``{"args": ...}`` body.

    A plain class without required arguments also takes a non-object (sysadm's clients
    send ``""``), which means no arguments.
    """
    schema = _class_schema(specs, "args")
    spec = specs[0]
    if spec.action is None and not any(arg.required for arg in spec.args):
        return {"anyOf": [schema, {"not": {"type": "object"}}]}
    return schema


def _request_body(specs: Sequence[ActionSpec]) -> dict[str, Any]:
    """The body of a call of the class of ``specs``: the arguments, or ``{"args": ...}``."""
    return {
        "description": "The arguments as the JSON object, or wrapped as {'args': ...}.",
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        _class_schema(specs, "body"),
                        {
                            "type": "object",
                            "description": "the arguments wrapped as {'args': ...}; "
                            "other keys are ignored",
                            "properties": {"args": _wrapped_args(specs)},
                            "required": ["args"],
                        },
                    ]
                },
                "examples": {
                    _action_key(spec): {"summary": spec.title, "value": _example(spec)}
                    for spec in specs
                },
            }
        },
    }


def _reply(specs: Sequence[ActionSpec]) -> dict[str, Any]:
    """The 200 reply of the class of ``specs``: ``{"args": <the action's result>}``."""
    replies = [_ref("schemas", _key(_action_key(spec), "reply")) for spec in specs]
    return {
        "description": "The reply: its `args` is the action's result.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"args": replies[0] if len(replies) == 1 else {"anyOf": replies}},
                    "required": ["args"],
                    "additionalProperties": False,
                }
            }
        },
    }


def _operation(method: str, specs: Sequence[ActionSpec], key: str) -> dict[str, Any]:
    """One method of one class; its body and 200 reply are the components named ``key``."""
    first = specs[0]
    roles = {spec.role for spec in specs}
    words = ", ".join(f"{spec.action}" for spec in specs if spec.action)
    codes = [400, 401, 408, 413, 415, 429, 500]
    if roles != {Role.PUBLIC}:
        codes += [404, 409]
    if Role.ADMIN in roles:
        codes.append(403)
    if any(spec.queued for spec in specs):
        codes.append(503)
    operation: dict[str, Any] = {
        "operationId": f"{method}_{first.namespace}_{first.name}".replace("-", "_"),
        "tags": [first.namespace],
        "summary": first.summary if first.action is None else f"{first.path}: {words}",
        "description": "\n\n".join(
            f"**{spec.title}** ({spec.role}{', queued' if spec.queued else ''}): {spec.summary}"
            for spec in specs
        ),
        "requestBody": _ref("requestBodies", key),
        "responses": {
            "200": _ref("responses", key),
            **{str(code): _ref("responses", f"E{code}") for code in sorted(codes)},
        },
    }
    if roles == {Role.PUBLIC}:
        operation["security"] = []
    elif Role.PUBLIC in roles:
        operation["security"] = [{}, *_LOGIN]
    return operation


def _websocket_only_note(titles: Sequence[str]) -> str:
    if not titles:
        return ""
    named = ", ".join(f"`{title}`" for title in titles)
    return f"{named} act on a WebSocket's event subscriptions and answer 400 over REST. "


def document(specs: Iterable[ActionSpec]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the REST calls of ``specs``."""
    classes: dict[str, list[ActionSpec]] = {}
    websocket_only: list[str] = []
    for spec in sorted(specs, key=lambda s: (s.namespace, s.name, s.action or "")):
        # Actions on the calling connection (its event subscriptions) need a WebSocket:
        # over REST there is no such connection, so they are not REST paths.
        if spec.websocket_only:
            websocket_only.append(spec.title)
        else:
            classes.setdefault(spec.path, []).append(spec)
    schemas: dict[str, Any] = {"Error": _error_schema(CODES)}
    for class_specs in classes.values():
        for spec in class_specs:
            key = _action_key(spec)
            schemas[_key(key, "args")] = spec.args_schema()
            schemas[_key(key, "body")] = _bare_body(spec)
            schemas[_key(key, "reply")] = spec.reply_schema()
    keys = {path: path.replace("/", ".") for path in classes}
    paths: dict[str, Any] = {
        f"/{path}": {method: _operation(method, specs_, keys[path]) for method in CALL_METHODS}
        for path, specs_ in classes.items()
    }
    paths[DOCUMENT_PATH] = {
        "get": {
            "operationId": "get_openapi_document",
            "tags": ["meta"],
            "summary": "This document; needs no login.",
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document of the REST interface.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sysadmd REST API",
            "version": __version__,
            "summary": "TrueOS sysadm's JSON API for iohyve/bhyve guests, over REST.",
            "description": (
                "`PUT` or `POST` `/<namespace>/<name>` with the arguments as the JSON body, "
                'or wrapped as `{"args": ...}`; the reply is `{"args": ...}`. An error '
                'answers with the HTTP status equal to its code and `{"args": {"code", '
                '"message"}}`. Log in with HTTP Basic (checked on every request) or with a '
                "session token from `rpc/auth` as `Authorization: Bearer <token>`. Other "
                "methods get 405, other paths 404, both with the same error body. "
                + _websocket_only_note(websocket_only)
                + "See docs/api.md for the WebSocket API."
            ),
            "license": {"name": "BSD-2-Clause", "identifier": "BSD-2-Clause"},
        },
        "servers": [{"url": "/", "description": "the listener this document came from"}],
        "security": _LOGIN,
        "tags": [
            {"name": namespace}
            for namespace in sorted({specs_[0].namespace for specs_ in classes.values()})
        ]
        + [{"name": "meta", "description": "about the API itself"}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                _BASIC: {
                    "type": "http",
                    "scheme": "basic",
                    "description": "a user name and password, checked on every request",
                },
                _BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the token of a live session, from rpc/auth",
                },
            },
            "schemas": schemas,
            "requestBodies": {keys[path]: _request_body(s) for path, s in classes.items()},
            "responses": {
                **{keys[path]: _reply(s) for path, s in classes.items()},
                **{f"E{code}": _error_response(code) for code in CODES},
            },
        },
    }


def encode(doc: Mapping[str, Any]) -> bytes:
    """The document as docs/openapi.json holds it and the daemon serves it."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def generated() -> bytes:
    """The document of every action the daemon serves, encoded."""
    return encode(document(all_specs()))


def main(argv: list[str] | None = None) -> int:
    """Print the document; ``--update FILE`` writes it, ``--check FILE`` compares."""
    parser = argparse.ArgumentParser(
        prog="python -m sysadmd.catalog.openapi",
        description="The OpenAPI document of the REST API.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--update", metavar="FILE", type=Path, help="write the document to FILE")
    where.add_argument("--check", metavar="FILE", type=Path, help="exit 1 unless FILE is current")
    args = parser.parse_args(argv)
    if args.update is not None:
        args.update.write_bytes(generated())
    elif args.check is not None:
        if not args.check.exists() or args.check.read_bytes() != generated():
            command = f"python -m sysadmd.catalog.openapi --update {args.check}"
            print(f"{args.check} is not current; run: {command}")
            return 1
    else:
        sys.stdout.buffer.write(generated())
    return 0


if __name__ == "__main__":
    sys.exit(main())
