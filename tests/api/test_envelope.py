"""sysadm's envelope: strict decoding and the exact reply bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sysadmd.api import ActionSpec, ApiError, Role, envelope
from sysadmd.api._envelope import ResultEncoder


def test_request_with_args() -> None:
    """The documented form: namespace, name, id and args."""
    request = envelope.parse_request(
        b'{"namespace":"sysadm","args":{"action":"listvms"},"name":"iohyve","id":"fooid"}'
    )
    assert request == envelope.Request("sysadm", "iohyve", "fooid", {"action": "listvms"})


def test_request_without_args_uses_the_rest_of_the_object() -> None:
    """Without ``args`` the object minus the envelope keys is the arguments."""
    request = envelope.parse_request(
        '{"namespace":"sysadm","name":"iohyve","id":"x","action":"rmiso","target":"a.iso"}'
    )
    assert request.args == {"action": "rmiso", "target": "a.iso"}


def test_reply_bytes_are_compact_and_sorted() -> None:
    """The reply is byte for byte what sysadm's server wrote."""
    request = envelope.Request("sysadm", "iohyve", "fooid", {})
    assert envelope.reply(request, {"rmiso": {"target": "a.iso"}}) == (
        b'{"args":{"rmiso":{"target":"a.iso"}},"id":"fooid","name":"response","namespace":"sysadm"}'
    )


def test_reply_without_id_echoes_the_name() -> None:
    """sysadm answers a request without an id with the request's own name."""
    request = envelope.Request("sysadm", "iohyve", "", {})
    assert json.loads(envelope.reply(request, {}))["name"] == "iohyve"


def test_error_envelope() -> None:
    """Errors carry the code as a string and 'error' as name and namespace."""
    assert envelope.error_reply("fooid", ApiError(404, "ISO 'a.iso' does not exist")) == (
        b'{"args":{"code":"404","message":"ISO \'a.iso\' does not exist"},"id":"fooid",'
        b'"name":"error","namespace":"error"}'
    )


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a":1,"a":2}', "same key"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":Infinity}', "Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b'{"a":' + b"1" * 5000 + b"}", "not valid JSON"),
    ],
)
def test_loads_is_strict(data: bytes, words: str) -> None:
    """Malformed JSON becomes a 400 naming the problem, never another exception."""
    with pytest.raises(envelope.EnvelopeError) as raised:
        envelope.loads(data)
    assert raised.value.code == 400
    assert words in raised.value.message


@pytest.mark.parametrize(
    ("data", "request_id", "words"),
    [
        (b"[]", "", "JSON object"),
        (b'{"namespace":"sysadm","name":"iohyve","id":7}', "", "'id' must be a string"),
        (b'{"namespace":"sysadm","name":"iohyve","id":"' + b"x" * 129 + b'"}', "", "at most"),
        (b'{"name":"iohyve","id":"abc"}', "abc", "'namespace'"),
        (b'{"namespace":"sysadm","name":"","id":"abc"}', "abc", "'name'"),
    ],
)
def test_bad_envelopes(data: bytes, request_id: str, words: str) -> None:
    """A bad envelope is a 400 that still carries whatever id could be read."""
    with pytest.raises(envelope.EnvelopeError) as raised:
        envelope.parse_request(data)
    assert raised.value.request_id == request_id
    assert words in raised.value.message


def _spec(action: str | None) -> ActionSpec:
    return ActionSpec("sysadm", "iohyve", action, "a test action", (), {}, Role.OPERATOR)


def test_a_result_is_encoded_once_while_the_same_object_comes_back() -> None:
    """The guest list one refresh window hands everyone is encoded once; a new list is
    encoded again; each action keeps its own last result, wrapped under its key."""
    encoder = ResultEncoder(lambda result: envelope.dumps({"args": result}))
    listvms, isolist = _spec("listvms"), _spec("isolist")
    guests = {"web": {"running": "NO"}}
    first = encoder.encode(listvms, guests)
    assert json.loads(first) == {"args": {"listvms": {"web": {"running": "NO"}}}}
    assert encoder.encode(listvms, guests) is first
    # Another action's result in between does not evict the guest list's encoding.
    assert json.loads(encoder.encode(isolist, ["a.iso"])) == {"args": {"isolist": ["a.iso"]}}
    assert encoder.encode(listvms, guests) is first
    # The same object under another action is that action's reply.
    assert json.loads(encoder.encode(isolist, guests))["args"] == {"isolist": guests}
    fresh = encoder.encode(listvms, {"web": {"running": "YES"}})
    assert json.loads(fresh)["args"]["listvms"]["web"]["running"] == "YES"
    # An equal but distinct object is encoded afresh: only identity is trusted.
    assert encoder.encode(listvms, {"web": {"running": "YES"}}) is not fresh
    assert json.loads(encoder.encode(_spec(None), {"x": 1})) == {"args": {"x": 1}}


@pytest.mark.parametrize("request_id", ["fooid", ""])
@pytest.mark.parametrize("result", [{"g": {"d": "ü"}}, {"listvms": {}}, [1, "x"], None])
def test_reply_is_the_whole_envelope_encoded(request_id: str, result: Any) -> None:
    """A reply, with its result encoded apart or not, is the bytes of the whole envelope."""
    request = envelope.Request("sysadm", "iohyve", request_id, {})
    whole = envelope.dumps(
        {
            "args": result,
            "id": request_id,
            "name": "response" if request_id else "iohyve",
            "namespace": "sysadm",
        }
    )
    assert envelope.reply(request, result) == whole
    assert envelope.reply(request, result, envelope.dumps(result)) == whole
