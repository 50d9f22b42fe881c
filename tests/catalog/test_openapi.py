"""The OpenAPI document: derived from the registry, current, served, and true of the daemon.

The last tests hold the live daemon (simulate mode, loopback TLS) to the document with
schemathesis: every response to generated requests, valid and invalid, must be a
documented status with a body matching its schema, and never a 5xx.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from daemon import Daemon
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sysadmd import __version__
from sysadmd.api import CODES, ActionSpec, Role
from sysadmd.catalog import openapi
from sysadmd.catalog.reference import all_specs
from sysadmd.simulator.cli import main as simulator

DOC = Path(__file__).parents[2] / "docs" / "openapi.json"
#: The fetches generated data may ask for go to the discard port of the loopback
#: address, never to another host: the simulator's downloads are real.
LOOPBACK = "127.0.0.1:9"
NETWORK_SCHEMES = ("http", "https", "ftp")
#: Generated requests per operation and mode; the run stays well under a minute.
MAX_EXAMPLES = 5


def _document() -> dict[str, Any]:
    return openapi.document(all_specs())


def _rest_specs() -> list[ActionSpec]:
    return [spec for spec in all_specs() if not spec.websocket_only]


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, kind, name = node["$ref"].rsplit("/", 2)
        node = doc["components"][kind][name]
    return node


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve in ``doc``."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def test_document_is_current() -> None:
    """When this fails, refresh: `python -m sysadmd.catalog.openapi --update docs/openapi.json`."""
    assert DOC.read_bytes() == openapi.generated()
    assert openapi.main(["--check", str(DOC)]) == 0


def test_cli_update_and_check(tmp_path: Path) -> None:
    """--update writes the document; --check fails on a stale copy and passes on a fresh one."""
    path = tmp_path / "openapi.json"
    path.write_text("{}\n")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert openapi.main(["--check", str(path)]) == 1
    assert "--update" in out.getvalue()
    assert openapi.main(["--update", str(path)]) == 0
    assert path.read_bytes() == openapi.generated()
    assert openapi.main(["--check", str(path)]) == 0


def test_document_is_valid_openapi_3_1() -> None:
    doc = json.loads(openapi.generated())
    assert doc["openapi"].startswith("3.1.")
    validate(doc)
    assert doc["info"]["version"] == __version__
    assert doc["servers"] == [{"url": "/", "description": "the listener this document came from"}]
    schemes = doc["components"]["securitySchemes"]
    assert {(s["type"], s["scheme"]) for s in schemes.values()} == {
        ("http", "basic"),
        ("http", "bearer"),
    }
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []


def test_every_rest_action_appears_with_its_schemas() -> None:
    """One path per class REST serves, each action's args and reply schema as declared."""
    doc = _document()
    schemas = doc["components"]["schemas"]
    classes = {spec.path for spec in _rest_specs()}
    assert set(doc["paths"]) == {f"/{path}" for path in classes} | {"/openapi.json"}
    websocket_only = {spec.path for spec in all_specs() if spec.websocket_only}
    assert websocket_only == {"events/subscribe", "events/unsubscribe", "sysadm/consoleview"}
    assert not any(f"/{path}" in doc["paths"] for path in websocket_only)
    for spec in _rest_specs():
        key = spec.path.replace("/", ".") + (f".{spec.action}" if spec.action else "")
        assert schemas[f"{key}.args"] == spec.args_schema()
        assert schemas[f"{key}.reply"] == spec.reply_schema()
        for method in ("put", "post"):
            operation = doc["paths"][f"/{spec.path}"][method]
            body = _resolve(doc, operation["requestBody"])["content"]["application/json"]
            bare = body["schema"]["anyOf"][0]
            if spec.action is not None:
                mapping = bare["discriminator"]["mapping"]
                assert bare["discriminator"]["propertyName"] == "action"
                assert mapping[spec.action] == f"#/components/schemas/{key}.body"
                assert {"$ref": mapping[spec.action]} in bare["oneOf"]
            else:
                assert bare == {"$ref": f"#/components/schemas/{key}.body"}
            # The declared example is a valid body, bare and wrapped.
            example = body["examples"][key]["value"]
            _validator(doc, body["schema"]).validate(example)
            _validator(doc, body["schema"]).validate({"args": example})
            reply = _resolve(doc, operation["responses"]["200"])
            args = reply["content"]["application/json"]["schema"]["properties"]["args"]
            assert {"$ref": f"#/components/schemas/{key}.reply"} in args.get("anyOf", [args])
            if spec.role is Role.PUBLIC:
                assert operation["security"] == []
            else:
                assert "security" not in operation  # the document's: Basic or Bearer
            if spec.role is Role.ADMIN:
                assert "403" in operation["responses"]
            if spec.queued:
                assert "503" in operation["responses"]


def test_websocket_only_is_read_from_the_declaration() -> None:
    """An action declared websocket_only is no REST path, whatever class it belongs to;
    the same action without the flag is one."""
    stand = next(spec for spec in all_specs() if spec.title == "sysadm/iohyve listvms")
    marked = dataclasses.replace(stand, websocket_only=True)
    doc = openapi.document([marked])
    assert set(doc["paths"]) == {"/openapi.json"}
    assert "`sysadm/iohyve listvms` act on a WebSocket's" in doc["info"]["description"]
    assert "/sysadm/iohyve" in openapi.document([stand])["paths"]
    assert "act on a WebSocket's" not in openapi.document([stand])["info"]["description"]


def test_every_error_code_is_documented_with_its_body() -> None:
    doc = _document()
    responses = doc["components"]["responses"]
    for code in CODES:
        schema = responses[f"E{code}"]["content"]["application/json"]["schema"]
        body = {"args": {"code": str(code), "message": "what is wrong"}}
        jsonschema.validate(body, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"args": {"code": "999", "message": "x"}}, schema)
    assert responses["E401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_bodies_are_told_apart() -> None:
    """Invalid bodies fail the document's schema: a missing action, an unknown argument."""
    doc = _document()
    body = _resolve(doc, doc["paths"]["/sysadm/iohyve"]["put"]["requestBody"])
    validator = _validator(doc, body["content"]["application/json"]["schema"])
    assert validator.is_valid({"action": "listvms", "id": "x"})
    assert validator.is_valid({"action": "create", "name": "guest1", "size": "10G"})
    assert validator.is_valid({"args": {"action": "listvms"}, "id": "x"})
    for bad in (
        {},
        {"action": "nope"},
        {"action": "listvms", "extra": 1},
        {"action": "create", "name": "guest1"},
        {"args": {"action": "listvms", "id": "x"}},
        {"args": ""},
    ):
        assert not validator.is_valid(bad), bad


# The live daemon


def _run_simulator(root: Path, *args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert simulator(["--root", str(root), *args]) == 0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon with a guest and the ISOs the examples name, and a lockout that
    generated bad logins cannot trip within one run."""
    base = tmp_path_factory.mktemp("openapi")
    state = base / "state"
    root = state / "simulator"
    _run_simulator(root, "create", "guest1", "8G")
    for name in ("test.iso", "other.iso"):
        (base / name).write_bytes(f"bytes of {name}".encode())
        _run_simulator(root, "fetch", f"file://{base / name}")
    config = base / "sysadmd.toml"
    config.write_text("[auth]\nlockout_failures = 1000\n\n[fetch]\nqueue_size = 1000\n")
    running = Daemon(state, f"--config={config}")
    yield running
    assert running.stop()


def _base_url(daemon: Daemon) -> str:
    return f"https://localhost:{daemon.ports[1]}"


def _verify(daemon: Daemon) -> str:
    return str(daemon.state_dir / "tls" / "cert.pem")


@pytest.mark.e2e
def test_daemon_serves_the_document(daemon: Daemon) -> None:
    """GET /openapi.json needs no login and gives the same document; other methods 405."""
    url = f"{_base_url(daemon)}/openapi.json"
    response = requests.get(url, verify=_verify(daemon), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == openapi.generated()
    response = requests.get(url, verify=_verify(daemon), timeout=30, auth=("nobody", "wrong"))
    assert response.status_code == 200
    response = requests.put(url, verify=_verify(daemon), timeout=30, json={})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert response.json()["args"]["code"] == "405"


def _local(value: Any) -> Any:
    """``value`` with every network URL in it pointed at the loopback discard port."""
    if isinstance(value, dict):
        return {k: _local(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_local(v) for v in value]
    if isinstance(value, str) and "://" in value:
        try:
            parts = urllib.parse.urlsplit(value)
        except ValueError:
            return value
        if parts.scheme.lower() in NETWORK_SCHEMES:
            return urllib.parse.urlunsplit(("http", LOOPBACK, *parts[2:]))
    return value


def _network_urls(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _network_urls(v)
    elif isinstance(value, list):
        for v in value:
            yield from _network_urls(v)
    elif isinstance(value, str) and "://" in value:
        with contextlib.suppress(ValueError):
            if urllib.parse.urlsplit(value).scheme.lower() in NETWORK_SCHEMES:
                yield value


#: The codes with which the daemon refuses a request the document calls invalid: the
#: usual client errors, and 413 for a body over limits.message_size, which the daemon
#: refuses before it reads the JSON (a generated public key can be that long).
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]

#: The document loaded by schemathesis: deterministic, valid and invalid data, no
#: coverage or stateful phases (bounded run time). The daemon serves this same document
#: (test_daemon_serves_the_document).
SCHEMA = schemathesis.openapi.from_dict(
    json.loads(openapi.generated()),
    config=schemathesis.Config.from_dict(
        {
            "seed": 20260127,
            "generation": {"deterministic": True, "database": "none"},
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        }
    ),
)


@SCHEMA.hook("map_body")
def loopback_only(context: Any, body: Any) -> Any:
    """Generate fetch URLs for the loopback discard port only."""
    return _local(body)


RESULTS = list(SCHEMA.get_all_operations())
OPERATIONS = [result.ok() for result in RESULTS if isinstance(result, Ok)]
assert len(OPERATIONS) == len(RESULTS), "schemathesis could not read every operation"


def no_server_errors(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx at all: whatever the generated request, the daemon refuses it or does it."""
    if response.status_code >= 500:
        message = json.loads(response.content)["args"]["message"]
        raise AssertionError(f"{response.status_code}: {message}")


CHECKS = [
    no_server_errors,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Invalid data (as the document says) must be refused: the document is no looser
    # than the daemon.
    negative_data_rejection,
]


def _call_and_validate(case: Any, daemon: Daemon) -> None:
    if case.body is not None and not isinstance(case.body, bytes):
        case.body = _local(case.body)
        assert all(LOOPBACK in url for url in _network_urls(case.body)), case.body
    basic = base64.b64encode(f"admin:{daemon.password}".encode()).decode()
    case.call_and_validate(
        base_url=_base_url(daemon),
        headers={"Authorization": f"Basic {basic}"},
        verify=_verify(daemon),
        timeout=60,
        checks=CHECKS,
    )


def _run(strategy: Any, daemon: Daemon, max_examples: int) -> None:
    @settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        _call_and_validate(case, daemon)

    run()


@pytest.mark.e2e
@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_daemon_conforms_to_the_document(operation: Any, daemon: Daemon) -> None:
    """The documented examples, then generated requests, valid and invalid: no 5xx, and
    every response a documented status with a body and headers as documented."""
    for example in operation.get_strategies_from_examples():
        _run(example, daemon, 1)
    _run(operation.as_strategy(GenerationMode.POSITIVE), daemon, MAX_EXAMPLES)
    if operation.method != "get":  # GET /openapi.json takes nothing to make invalid
        _run(operation.as_strategy(GenerationMode.NEGATIVE), daemon, MAX_EXAMPLES)


@pytest.mark.e2e
def test_daemon_logged_no_internal_error(daemon: Daemon) -> None:
    """After all the generated requests, the daemon never hit an unexpected exception."""
    log = daemon.log_text()
    assert "Unexpected error" not in log
    assert "Traceback" not in log


@pytest.mark.e2e
@pytest.mark.parametrize("wrapped", [False, True])
def test_a_guest_name_in_a_rest_body_is_an_argument(daemon: Daemon, wrapped: bool) -> None:
    """Over REST, `name` in a bare body is the guest's name, as the document (and
    docs/iohyve.rst) say, not the WebSocket envelope's class name; `id` is still ignored."""
    body = {"action": "getprops", "name": "nosuchguest", "id": "x"}
    response = requests.put(
        f"{_base_url(daemon)}/sysadm/iohyve",
        json={"args": {k: v for k, v in body.items() if k != "id"}} if wrapped else body,
        auth=("admin", daemon.password),
        verify=_verify(daemon),
        timeout=60,
    )
    assert response.status_code == 404, response.text
    assert response.json()["args"]["message"] == "guest 'nosuchguest' does not exist"
