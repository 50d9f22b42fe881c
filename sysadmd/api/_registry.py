"""The registry: the single declaration of every API action.

An action is declared once, on the method that handles it, with the :func:`action`
decorator: its namespace, class name and action word, its arguments (name, type,
required or not, meaning), the JSON Schema of its reply and a summary. Argument
validation, error messages, documentation and schema documents are all derived
from these declarations, so they cannot drift apart.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sysadmd.api._calls import Call
from sysadmd.api._errors import ApiError, bad_request, not_found
from sysadmd.api._roles import Role
from sysadmd.api._validate import (
    MAX_URL_LENGTH,
    NAME_PATTERN,
    NO_CONTROL_PATTERN,
    URL_TEXT_PATTERN,
    check_name,
    check_url_text,
    has_control,
    schema_pattern,
)

JSON = Any
Handler = Callable[[Call], Awaitable[JSON]]

#: Keys of the request envelope. When a request carries no ``args`` the whole object
#: is its arguments (sysadm's rule); these keys are then part of the envelope, not
#: arguments.
ENVELOPE_KEYS: Final = frozenset({"namespace", "name", "id"})


@dataclass(frozen=True)
class ArgType:
    """How one kind of argument is checked and described.

    ``check(value, label)`` returns the value to hand to the handler or raises a 400
    whose message starts with ``label``; ``schema`` is the JSON Schema of the value;
    ``example`` is a valid value, for documentation and tests.
    """

    schema: Mapping[str, Any]
    check: Callable[[Any, str], Any]
    example: Any


def _string(value: Any, label: str) -> str:
    if not isinstance(value, str):
        raise bad_request(f"{label} must be a string")
    return value


def _name(value: Any, label: str) -> str:
    return check_name(_string(value, label), label)


#: A guest or ISO name (see :mod:`sysadmd.api._validate`).
NAME: Final = ArgType(
    {"type": "string", "pattern": schema_pattern(NAME_PATTERN), "maxLength": 128},
    _name,
    "test.iso",
)


def _text(value: Any, label: str) -> str:
    text = _string(value, label)
    if len(text) > 1024 or has_control(text):
        raise bad_request(f"{label} must be at most 1024 characters, without control characters")
    return text


#: Free text such as a password or a token: a string of at most 1024 characters,
#: without control characters (C0 such as tab, newline and NUL, DEL, C1).
TEXT: Final = ArgType(
    {"type": "string", "maxLength": 1024, "pattern": schema_pattern(NO_CONTROL_PATTERN)},
    _text,
    "text",
)


def _names(value: Any, label: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise bad_request(f"{label} must be a string or a list of strings")
    if len(items) > 64 or any(len(v) > 64 for v in items):
        raise bad_request(f"{label} must name at most 64 items of at most 64 characters")
    if any(has_control(v) for v in items):
        raise bad_request(f"{label} must not hold control characters")
    return items


_NAMES_ITEM: Final = {
    "type": "string",
    "maxLength": 64,
    "pattern": schema_pattern(NO_CONTROL_PATTERN),
}
#: One name or a list of names, such as the events of ``events/subscribe``.
NAMES: Final = ArgType(
    {"oneOf": [_NAMES_ITEM, {"type": "array", "items": _NAMES_ITEM, "maxItems": 64}]},
    _names,
    ["dispatcher"],
)


def _url(value: Any, label: str) -> str:
    return check_url_text(_string(value, label), label)


#: A URL to fetch; the handler validates it further (scheme, file name, local files).
URL: Final = ArgType(
    {
        "type": "string",
        "format": "uri",
        "maxLength": MAX_URL_LENGTH,
        "pattern": schema_pattern(URL_TEXT_PATTERN),
    },
    _url,
    "http://127.0.0.1:9/test.iso",
)

#: An RSA public key: PEM text (a BEGIN line, base64 lines of at most 76 characters and
#: an END line, each ended by a newline, the last one optionally), or the base64 of PEM
#: text on one line. Newlines are allowed only as the PEM text's line ends.
KEY_PATTERN: Final = (
    r"[A-Za-z0-9+/]+={0,2}"
    r"|-----BEGIN (?:RSA )?PUBLIC KEY-----\n(?:[A-Za-z0-9+/=]{1,76}\n)+"
    r"-----END (?:RSA )?PUBLIC KEY-----\n?"
)
_KEY_RE: Final = re.compile(KEY_PATTERN)
MAX_KEY_LENGTH: Final = 16384


def _key(value: Any, label: str) -> str:
    text = _string(value, label)
    if len(text) > MAX_KEY_LENGTH or not _KEY_RE.fullmatch(text):
        raise bad_request(
            f"{label} must be a PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY, "
            "lines ended by a newline) or the base64 of one, on one line"
        )
    return text


#: A public key for ``rpc/settings``; :mod:`sysadmd.auth._keys` checks that it is one.
KEY: Final = ArgType(
    {"type": "string", "maxLength": MAX_KEY_LENGTH, "pattern": schema_pattern(KEY_PATTERN)},
    _key,
    "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K",
)


@dataclass(frozen=True)
class NamePattern:
    """Extra names that match ``pattern`` in full (such as ``mac_tap[0-9]{1,4}``)."""

    pattern: str
    #: How documentation and messages show these names (``mac_tap<N>``).
    shown: str
    #: One such name, for documentation and tests.
    example: str
    type: ArgType


@dataclass(frozen=True)
class Extra:
    """The named pairs an action takes besides its arguments (``setprop``'s properties).

    Each name has its own value type: ``names`` maps fixed names to theirs, ``patterns``
    maps name patterns (full-matched, such as ``mac_tap[0-9]{1,3}``) to theirs. Requests
    are checked and the JSON Schema (``properties`` and ``patternProperties``) is built
    from these same declarations. ``noun`` is how messages call a name ("property").
    """

    noun: str
    names: Mapping[str, ArgType]
    patterns: tuple[NamePattern, ...] = ()

    def value_type(self, key: str) -> ArgType | None:
        """The type of ``key``'s value, or None if ``key`` is not one of these names."""
        if key in self.names:
            return self.names[key]
        for named in self.patterns:
            if re.fullmatch(named.pattern, key, re.ASCII):
                return named.type
        return None

    def check(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check each pair; a 400 names the first unknown name or invalid value."""
        types = {key: self.value_type(key) for key in values}
        unknown = sorted(key for key, value_type in types.items() if value_type is None)
        if unknown:
            described = _describe_keys(unknown)
            verb = "is" if described.startswith("the key ") else "are"
            known = ", ".join([*sorted(self.names), *(named.shown for named in self.patterns)])
            raise bad_request(f"{described} {verb} not a settable {self.noun}; these are: {known}")
        return {
            key: value_type.check(values[key], f"{self.noun} '{key}'")
            for key, value_type in types.items()
            if value_type is not None
        }

    def schema(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The JSON Schema ``properties`` and ``patternProperties`` of these pairs."""
        properties = {key: dict(value_type.schema) for key, value_type in self.names.items()}
        patterned = {
            schema_pattern(named.pattern): dict(named.type.schema) for named in self.patterns
        }
        return properties, patterned

    @property
    def example(self) -> tuple[str, Any]:
        """A valid name and value, for documentation and tests."""
        key, value_type = next(iter(self.names.items()))
        return key, value_type.example


@dataclass(frozen=True)
class Arg:
    """One argument of an action."""

    name: str
    type: ArgType
    description: str
    required: bool = True

    @property
    def label(self) -> str:
        """How error messages refer to this argument."""
        return f"argument '{self.name}'"


@dataclass(frozen=True)
class ActionSpec:
    """The declaration of one action, independent of any handler instance."""

    namespace: str
    name: str
    action: str | None
    summary: str
    args: tuple[Arg, ...]
    reply: Mapping[str, Any]
    role: Role
    queued: bool = False
    wrapped: bool = True
    whole: bool = False
    #: For actions that take named pairs besides their arguments (``setprop``): the
    #: names they may take and how each one's value is checked.
    extra: Extra | None = None
    #: For actions on an account named by the ``user`` argument (a registered key): the
    #: role that may call it for its own account, ``user`` absent or naming the caller.
    own_account: Role | None = None
    #: For actions that act on the calling connection itself (its event subscriptions):
    #: they need a connection that lasts between calls, a WebSocket. The dispatch refuses
    #: them (400) on any other connection, and REST does not offer them (they are not
    #: paths of the OpenAPI document).
    websocket_only: bool = False
    #: A login or logout: it changes who the connection it runs on is. On a connection
    #: that carries many requests, the requests after it wait until it has answered.
    login: bool = False
    #: The names of ``args``, and the keys a request may carry besides them.
    arg_names: frozenset[str] = field(init=False, repr=False, compare=False)
    _ignored: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arg_names", frozenset(arg.name for arg in self.args))
        ignored = frozenset({"action"} if self.action is not None else ())
        object.__setattr__(self, "_ignored", ignored)

    @property
    def entry_role(self) -> Role:
        """The least role that may call this action at all (for its own account, maybe)."""
        return self.own_account if self.own_account is not None else self.role

    @property
    def path(self) -> str:
        """``namespace/name``, the class this action belongs to."""
        return f"{self.namespace}/{self.name}"

    def parse_args(self, raw: Any) -> dict[str, Any]:
        """Check ``raw`` against the declared arguments and return the clean values.

        Unknown keys are refused so that a misspelt argument is reported rather than
        silently ignored. An action declared ``whole`` takes the request's whole
        ``args`` value (a string or a list, as ``events/subscribe`` does) as its one
        argument; for other plain classes a non-object ``args`` (sysadm's clients send
        ``""``) means no arguments.
        """
        if self.whole:
            (arg,) = self.args
            return {arg.name: arg.type.check(raw, "the arguments")}
        if not isinstance(raw, Mapping):
            raw = {}
        known, ignored = self.arg_names, self._ignored
        unknown = sorted(key for key in raw if key not in known and key not in ignored)
        if unknown and self.extra is not None:
            values = self.extra.check({key: raw[key] for key in unknown})
            return {**self._declared(raw), "extra": values}
        if unknown:
            expected = ", ".join(f"'{a.name}'" for a in self.args) or "none"
            raise bad_request(
                f"{self._what} does not take {_describe_keys(unknown)}; its arguments: {expected}"
            )
        return self._declared(raw)

    def _declared(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for arg in self.args:
            if arg.name in raw:
                values[arg.name] = arg.type.check(raw[arg.name], arg.label)
            elif arg.required:
                raise bad_request(f"{self._what} needs {arg.label}")
        return values

    @property
    def title(self) -> str:
        """``namespace/name action``, as messages and docs name the action."""
        return self.path if self.action is None else f"{self.path} {self.action}"

    @property
    def _what(self) -> str:
        if self.action is None:
            return self.path
        return f"action '{self.action}' of {self.path}"

    def args_schema(self) -> dict[str, Any]:
        """The JSON Schema of this action's arguments."""
        if self.whole:
            (arg,) = self.args
            return {**arg.type.schema, "description": arg.description}
        properties: dict[str, Any] = {}
        if self.action is not None:
            properties["action"] = {"const": self.action}
        for arg in self.args:
            properties[arg.name] = {**arg.type.schema, "description": arg.description}
        required = (["action"] if self.action is not None else []) + [
            a.name for a in self.args if a.required
        ]
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        if self.extra is not None:
            named, patterned = self.extra.schema()
            schema["properties"] = {**named, **properties}
            if patterned:
                schema["patternProperties"] = patterned
        return schema

    def reply_schema(self) -> dict[str, Any]:
        """The JSON Schema of the reply's ``args``: the result, under the action's key
        for the classes that wrap it (``sysadm/iohyve``)."""
        if self.action is None or not self.wrapped:
            return dict(self.reply)
        return {
            "type": "object",
            "properties": {self.action: self.reply},
            "required": [self.action],
            "additionalProperties": False,
        }


def _describe_keys(keys: Sequence[str]) -> str:
    shown = [k for k in keys if len(k) <= 64 and k.isprintable()]
    if len(shown) != len(keys) or not shown:
        return "some of the given keys"
    return "the key" + ("s " if len(shown) > 1 else " ") + ", ".join(f"'{k}'" for k in shown)


_SPEC_ATTRIBUTE: Final = "__sysadmd_action__"


def action(
    namespace: str,
    name: str,
    action: str | None,
    *,
    summary: str,
    reply: Mapping[str, Any],
    role: Role,
    args: Sequence[Arg] = (),
    queued: bool = False,
    wrapped: bool = True,
    whole: bool = False,
    extra: Extra | None = None,
    own_account: Role | None = None,
    websocket_only: bool = False,
    login: bool = False,
) -> Callable[[Callable[..., Awaitable[JSON]]], Callable[..., Awaitable[JSON]]]:
    """Declare the decorated method as the handler of one API action.

    ``role`` is the role a caller needs: :attr:`Role.PUBLIC` for actions anyone may
    call (the logins), :attr:`Role.OPERATOR` for read-only actions, :attr:`Role.ADMIN`
    for everything else. ``own_account`` is a lower role that may call the action for its
    own account: the ``user`` argument absent or the caller's name (the handler then finds
    ``user`` set to the caller); for another account it gets 403. ``websocket_only`` marks
    an action on the calling connection itself, which REST does not offer. ``login`` marks
    an action that logs the connection in or out (see :attr:`ActionSpec.login`). The method
    receives a
    :class:`~sysadmd.api._calls.Call` with the validated arguments and returns the result, which
    the registry places under the action's key in the reply unless ``wrapped`` is false.
    """
    if whole and (action is not None or len(args) != 1):
        raise ValueError("a 'whole' action is a plain class with exactly one argument")
    if own_account is not None and (
        "user" not in {a.name for a in args} or own_account is Role.PUBLIC or own_account is role
    ):
        raise ValueError("own_account needs a 'user' argument and a role below the action's")
    spec = ActionSpec(
        namespace,
        name,
        action,
        summary,
        tuple(args),
        reply,
        role,
        queued,
        wrapped,
        whole,
        extra,
        own_account,
        websocket_only,
        login,
    )

    def decorate(
        method: Callable[..., Awaitable[JSON]],
    ) -> Callable[..., Awaitable[JSON]]:
        setattr(method, _SPEC_ATTRIBUTE, spec)
        return method

    return decorate


def declared_actions(cls: type) -> Iterator[tuple[str, ActionSpec]]:
    """Every action declared on ``cls``: the method's name and its declaration."""
    for method_name, member in inspect.getmembers(cls, inspect.isfunction):
        spec = getattr(member, _SPEC_ATTRIBUTE, None)
        if isinstance(spec, ActionSpec):
            yield method_name, spec


@dataclass
class _ApiClass:
    actions: dict[str | None, tuple[ActionSpec, Handler]] = field(default_factory=dict)


class Registry:
    """Every action the daemon serves, looked up by namespace, name and action."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, str], _ApiClass] = {}

    def register(self, provider: object) -> None:
        """Register every action declared on ``provider``'s methods."""
        declared = list(declared_actions(type(provider)))
        for method_name, spec in declared:
            self.add(spec, getattr(provider, method_name))
        if not declared:
            raise ValueError(f"{provider!r} declares no actions")

    def add(self, spec: ActionSpec, handler: Handler) -> None:
        """Register one action; the same namespace/name/action twice is an error."""
        api_class = self._classes.setdefault((spec.namespace, spec.name), _ApiClass())
        if spec.action in api_class.actions:
            raise ValueError(f"{spec.path} action {spec.action!r} is registered twice")
        if None in api_class.actions or (spec.action is None and api_class.actions):
            raise ValueError(f"{spec.path} mixes a plain handler with actions")
        api_class.actions[spec.action] = (spec, handler)

    def access(self, role: Role) -> dict[str, str]:
        """sysadm's ``rpc/query`` map: each class ``role`` may use, ``read`` or ``read/write``.

        A class whose every action the role may call is ``read/write``; one where it may
        call only some (the read-only ones) is ``read``; public-only classes (the logins)
        are not listed.
        """
        access: dict[str, str] = {}
        for (namespace, name), api_class in sorted(self._classes.items()):
            needed = [spec.entry_role for spec, _ in api_class.actions.values()]
            if all(r is Role.PUBLIC for r in needed):
                continue
            allowed = [role.allows(r) for r in needed]
            if all(allowed):
                access[f"{namespace}/{name}"] = "read/write"
            elif any(allowed):
                access[f"{namespace}/{name}"] = "read"
        return access

    def specs(self) -> list[ActionSpec]:
        """All registered declarations, sorted by namespace, name and action."""
        return sorted(
            (spec for c in self._classes.values() for spec, _ in c.actions.values()),
            key=lambda s: (s.namespace, s.name, s.action or ""),
        )

    def find(self, namespace: str, name: str, args: Any) -> tuple[ActionSpec, Handler, Any]:
        """Find the action a request names.

        Returns the declaration, the handler and the arguments still to validate
        with :meth:`ActionSpec.parse_args` (after the caller has been authorized).
        Raises 404 for an unknown namespace/name and 400 for a missing or unknown
        action.
        """
        api_class = self._classes.get((namespace, name))
        if api_class is None:
            known = ", ".join(sorted(f"{ns}/{n}" for ns, n in self._classes))
            raise not_found(f"no API class of that namespace and name; this server has: {known}")
        if None in api_class.actions:
            spec, handler = api_class.actions[None]
            return spec, handler, args
        if not isinstance(args, Mapping):
            raise bad_request(f"{namespace}/{name} needs an object of arguments with an 'action'")
        word = args.get("action")
        if not isinstance(word, str):
            raise bad_request(f"{namespace}/{name} needs an 'action' string")
        entry = api_class.actions.get(word)
        if entry is None:
            known = ", ".join(sorted(str(a) for a in api_class.actions))
            raise bad_request(f"{namespace}/{name} has no such action; its actions: {known}")
        spec, handler = entry
        return spec, handler, args


def wrap_result(spec: ActionSpec, result: JSON) -> JSON:
    """Place an action's result under its key, as sysadm's iohyve replies do."""
    if spec.action is None or not spec.wrapped:
        return result
    return {spec.action: result}


__all__ = [
    "KEY",
    "NAME",
    "TEXT",
    "URL",
    "ActionSpec",
    "ApiError",
    "Arg",
    "ArgType",
    "Extra",
    "NamePattern",
    "Registry",
    "action",
    "declared_actions",
    "wrap_result",
]
