"""sysadm's JSON envelope: strict decoding of requests, encoding of replies.

A WebSocket request is ``{"namespace", "name", "id", "args"}``; when ``args`` is
absent the rest of the object is the arguments. A reply is
``{"args", "id", "name": "response", "namespace"}`` and an error is
``{"args": {"code", "message"}, "id", "name": "error", "namespace": "error"}``,
both compact with sorted keys, as sysadm's server wrote them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sysadmd.api._errors import ApiError
from sysadmd.api._registry import ENVELOPE_KEYS, ActionSpec, wrap_result

MAX_ID_LENGTH: Final = 128


class EnvelopeError(ApiError):
    """A message that could not be read as a request; ``id`` is what could be salvaged."""

    def __init__(self, message: str, request_id: str = "") -> None:
        super().__init__(400, message)
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    """One decoded request, whichever transport it came by."""

    namespace: str
    name: str
    id: str
    args: Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("an object has the same key twice")
    return result


#: One decoder for every message: building one per call costs more than small messages do.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_constant=_reject_constant
)
#: The same for replies: compact, sorted keys.
_ENCODER: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(data: bytes | str) -> Any:
    """Decode JSON strictly: UTF-8 only, no duplicate keys, no NaN or Infinity.

    Raises a 400 :class:`EnvelopeError` for anything else, including nesting too
    deep for the decoder, so that no malformed input ever becomes a 500.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return _DECODER.decode(text)
    except UnicodeDecodeError:
        raise EnvelopeError("the message is not valid UTF-8") from None
    except RecursionError:
        raise EnvelopeError("the message nests too deeply") from None
    except ValueError as e:
        # json's own messages give a position, never the input, so they are safe to return.
        raise EnvelopeError(f"the message is not valid JSON: {e}") from None


def dumps(value: Any) -> bytes:
    """Encode compactly with sorted keys, as sysadm's server did."""
    return _ENCODER.encode(value).encode()


def args_of(message: Mapping[str, Any]) -> Any:
    """The arguments of a request object: its ``args``, or the object minus the envelope."""
    if "args" in message:
        return message["args"]
    return {k: v for k, v in message.items() if k not in ENVELOPE_KEYS}


def parse_request(data: bytes | str) -> Request:
    """Decode one WebSocket message into a :class:`Request`."""
    message = loads(data)
    if not isinstance(message, dict):
        raise EnvelopeError("a request must be a JSON object")
    request_id = message.get("id", "")
    if not isinstance(request_id, str):
        raise EnvelopeError("the request 'id' must be a string")
    if len(request_id) > MAX_ID_LENGTH:
        raise EnvelopeError(f"the request 'id' must be at most {MAX_ID_LENGTH} characters")
    fields = {}
    for key in ("namespace", "name"):
        value = message.get(key)
        if not isinstance(value, str) or not value:
            raise EnvelopeError(f"the request needs a non-empty '{key}' string", request_id)
        fields[key] = value
    return Request(fields["namespace"], fields["name"], request_id, args_of(message))


def reply(request: Request, result: Any, encoded_result: bytes | None = None) -> bytes:
    """The success envelope for ``request``; ``encoded_result`` is ``result`` already
    encoded (by a :class:`ResultEncoder`), if it was.

    As in sysadm, a request without an id gets its own ``name`` back instead of
    ``"response"``.
    """
    rest = dumps(
        {
            "id": request.id,
            "name": "response" if request.id else request.name,
            "namespace": request.namespace,
        }
    )
    # "args" sorts first: the same bytes as dumps() of the whole envelope.
    encoded = dumps(result) if encoded_result is None else encoded_result
    return b'{"args":' + encoded + b"," + rest[1:]


class ResultEncoder:
    """One transport's encoding of results, which reuses the bytes of each action's last
    result while the very same object comes back.

    Clients poll ``listvms``, and the adapter hands every caller within its refresh window
    the same guest list: encoding it once per window, rather than once per request, saves
    most of what a cached call costs. Reuse by identity is sound because a handler's result
    is never changed once returned (see :mod:`sysadmd.api._dispatch`), and because the encoder holds
    the objects it keyed on, so no other object can take their identities. One entry per action
    keeps polls of different actions from evicting each other.
    """

    def __init__(self, encode: Callable[[Any], bytes]) -> None:
        self._encode = encode
        #: By the identity of the action: the action, its last result, the encoding. Both
        #: objects are held, so neither identity can pass to another object.
        self._last: dict[int, tuple[ActionSpec, Any, bytes]] = {}

    def encode(self, spec: ActionSpec, value: Any) -> bytes:
        """The encoding of ``spec``'s reply ``args`` for the handler's result ``value``."""
        last = self._last.get(id(spec))
        if last is not None and last[1] is value and last[0] is spec:
            return last[2]
        encoded = self._encode(wrap_result(spec, value))
        self._last[id(spec)] = (spec, value, encoded)
        return encoded


def error_body(error: ApiError) -> dict[str, str]:
    """The ``args`` of an error reply: the code as a string, and the message."""
    return {"code": str(error.code), "message": error.message}


def error_reply(request_id: str, error: ApiError) -> bytes:
    """The error envelope; ``name`` and ``namespace`` are both ``"error"``."""
    return dumps(
        {"args": error_body(error), "id": request_id, "name": "error", "namespace": "error"}
    )
