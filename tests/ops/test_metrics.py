"""/metrics: counters moved by REST and WebSocket calls, access by address or login."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from authkit import make_authenticator
from daemon import Daemon
from probe import OpenGate, Probe
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support import async_fixture, async_test
from test_health import Client, basic, serve
from twisted.internet import reactor
from wsclient import connect

from sysadmd.api import Api, ApiRequest, Connection, Registry
from sysadmd.app import build_site
from sysadmd.ops import Guard, Metrics, MetricsResource
from sysadmd.tasks import FetchQueue
from sysadmd.transport import ConnectionCounter

JSON = {"Content-Type": "application/json"}


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str
) -> float:
    return scrape.get((metric, frozenset(labels.items())), 0.0)


@dataclass
class Setup:
    client: Client
    guard: Guard
    fetches: FetchQueue


@async_fixture()
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    """The probe API with metrics; 127.0.0.1 is not an allowed address."""
    auth = make_authenticator(tmp_path)
    registry = Registry()
    registry.register(Probe())
    api = Api(registry, auth)
    metrics = Metrics()
    api.on_call = metrics.call_answered
    auth.on_failed_login = metrics.login_failed
    fetches = FetchQueue(cast(Any, None), reactor, max_queued=4)
    fetches.on_bytes = metrics.bytes_fetched
    guard = Guard(auth, [ipaddress.ip_network("192.0.2.0/24")])
    site = build_site(api, reactor, operations={b"metrics": MetricsResource(metrics, guard)})
    counter = ConnectionCounter(total=10, per_address=10)
    metrics.watch(fetches, counter)
    client, port = await serve(counter.wrap(site))
    yield Setup(client, guard, fetches)
    stopped = port.stopListening()
    if stopped is not None:
        await stopped


async def scrape(client: Client, **headers: str) -> tuple[int, str]:
    response = await client.get("/metrics", headers=headers)
    return response.code, (await response.content()).decode()


@async_test
async def test_counters_and_labels(setup: Setup) -> None:
    """Calls are counted by class, action and code; made-up names fold into 'unknown'."""
    client = setup.client
    for body in (b'{"action": "echo", "word": "a"}', b'{"action": "echo", "word": "b"}'):
        assert (await client.put("/test/probe", data=body, headers=JSON)).code == 200
    assert (await client.put("/test/probe", data=b'{"action": "taken"}', headers=JSON)).code == 409
    assert (await client.put("/test/probe", data=b'{"action": "zzz"}', headers=JSON)).code == 400
    assert (await client.put("/made/up", data=b'{"action": "x"}', headers=JSON)).code == 404
    wrong = await client.put(
        "/test/probe", data=b'{"action": "secret"}', headers={**JSON, **basic("alice", "nope")}
    )
    assert wrong.code == 401
    setup.fetches.submit("http://192.0.2.1/a.iso", "a.iso")
    setup.fetches.on_bytes(1234)  # type: ignore[misc]

    code, text = await scrape(client, **basic("oscar"))
    assert code == 200
    got = samples(text)
    probe = {"namespace": "test", "name": "probe"}
    assert value(got, "sysadmd_requests_total", **probe, action="echo", code="200") == 2
    assert value(got, "sysadmd_requests_total", **probe, action="taken", code="409") == 1
    assert value(got, "sysadmd_requests_total", **probe, action="unknown", code="400") == 1
    unknown = {"namespace": "unknown", "name": "unknown", "action": ""}
    assert value(got, "sysadmd_requests_total", **unknown, code="404") == 1
    assert value(got, "sysadmd_request_duration_seconds_count", **probe, action="echo") == 2
    assert value(got, "sysadmd_failed_logins_total", method="basic") == 1
    assert value(got, "sysadmd_fetch_tasks", state="queued") == 1
    assert value(got, "sysadmd_fetch_tasks", state="running") == 0
    assert value(got, "sysadmd_fetched_bytes_total") == 1234
    assert value(got, "sysadmd_open_connections") >= 1
    assert "made" not in text and "zzz" not in text


@async_test
async def test_access(setup: Setup) -> None:
    """Not an allowed address: 401 without a login, 401 with a wrong one, 200 with one."""
    code, text = await scrape(setup.client)
    assert code == 401
    response = await setup.client.get("/metrics")
    assert response.headers.getRawHeaders("WWW-Authenticate") == [
        'Basic realm="sysadmd", Bearer realm="sysadmd"'
    ]
    assert response.headers.getRawHeaders("Server") is None
    assert (await scrape(setup.client, **basic("alice", "wrong")))[0] == 401
    assert (await scrape(setup.client, Authorization="Bearer not-a-token"))[0] == 401
    assert (await scrape(setup.client, **basic("alice")))[0] == 200
    setup.guard.allow = (ipaddress.ip_network("127.0.0.0/8"),)
    code, text = await scrape(setup.client)
    assert code == 200
    assert "sysadmd_requests_total" in text


# The real daemon, over TLS: the peer address the allow list sees is the TCP peer's.


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("metrics")
    config = base / "sysadmd.toml"
    config.write_text('[metrics]\nallow = ["127.0.0.1"]\n')
    running = Daemon(base / "state", f"--config={config}")
    yield running
    assert running.stop()


def https(
    daemon: Daemon,
    method: str,
    path: str,
    *,
    source: str = "127.0.0.1",
    auth: tuple[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request from ``source`` (any 127/8 address reaches the loopback listener)."""
    context = ssl.create_default_context(cafile=str(daemon.state_dir / "tls" / "cert.pem"))
    context.check_hostname = False
    connection = http.client.HTTPSConnection(
        "127.0.0.1", daemon.ports[1], context=context, source_address=(source, 0), timeout=20
    )
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        connection.request(
            method, path, body=json.dumps(body).encode() if body else None, headers=headers
        )
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@async_test
async def test_daemon_metrics_over_rest_and_websocket(daemon: Daemon) -> None:
    admin = ("admin", daemon.password)
    status, _, _ = https(daemon, "PUT", "/sysadm/iohyve", auth=admin, body={"action": "listvms"})
    assert status == 200
    client = await connect("localhost", daemon.ports[0], tls=daemon.tls())  # type: ignore[arg-type]
    client.send(
        {
            "namespace": "rpc",
            "name": "auth",
            "id": "1",
            "args": {"username": "admin", "password": daemon.password},
        }
    )
    assert (await client.next())["name"] == "response"
    client.send({"namespace": "sysadm", "name": "iohyve", "id": "2", "args": {"action": "listvms"}})
    assert (await client.next())["name"] == "response"

    status, headers, _ = https(daemon, "GET", "/metrics", source="127.0.0.2")
    assert status == 401
    assert "WWW-Authenticate" in headers
    status, _, body = https(daemon, "GET", "/metrics", source="127.0.0.2", auth=admin)
    assert status == 200
    status, headers, body = https(daemon, "GET", "/metrics")
    assert status == 200
    assert "Server" not in headers
    got = samples(body.decode())
    listvms = {"namespace": "sysadm", "name": "iohyve", "action": "listvms", "code": "200"}
    assert value(got, "sysadmd_requests_total", **listvms) == 2
    login = {"namespace": "rpc", "name": "auth", "action": "", "code": "200"}
    assert value(got, "sysadmd_requests_total", **login) == 1
    assert value(got, "sysadmd_open_connections") >= 2
    await client.close()

    status, headers, body = https(daemon, "GET", "/livez", source="127.0.0.2")
    assert (status, body) == (200, b"ok\n")
    assert "Server" not in headers
    status, _, body = https(daemon, "GET", "/readyz", source="127.0.0.2")
    assert (status, body) == (200, b"ok\n")
    status, _, body = https(daemon, "GET", "/readyz", source="127.0.0.2", auth=admin)
    assert status == 200
    assert body.decode().splitlines()[1:] == [
        "iohyve: ok",
        "state_dir: ok",
        "journal: ok",
        "fetch_queue: ok",
    ]
    assert daemon.password not in daemon.log_text()


@async_test
async def test_made_up_names_never_grow_the_table_of_series() -> None:
    """Calls to made-up classes and actions are counted as 'unknown': the series name only
    the actions the dispatch resolved requests to."""
    registry = Registry()
    registry.register(Probe())
    api = Api(registry, OpenGate())
    metrics = Metrics()
    api.on_call = metrics.call_answered
    connection = Connection("192.0.2.1", "test")
    for i in range(200):
        await api.dispatch(ApiRequest("test", "probe", {"action": f"made-up-{i}"}, connection))
        await api.dispatch(ApiRequest(f"ns{i}", "x", {"action": "echo"}, connection))
    for word in ("a", "b"):
        await api.call("test", "probe", {"action": "echo", "word": word}, connection)
    got = samples(generate_latest(metrics.registry).decode())
    probe = {"namespace": "test", "name": "probe"}
    assert value(got, "sysadmd_requests_total", **probe, action="unknown", code="400") == 200
    assert value(got, "sysadmd_requests_total", **probe, action="echo", code="200") == 2
    unknown = {"namespace": "unknown", "name": "unknown", "action": ""}
    assert value(got, "sysadmd_requests_total", **unknown, code="404") == 200
    assert len([k for k in got if k[0] == "sysadmd_requests_total"]) == 3


def test_latency_buckets_are_cumulative_and_bounded_inclusively() -> None:
    registry = Registry()
    registry.register(Probe())
    metrics = Metrics()
    spec, _, _ = registry.find("test", "probe", {"action": "echo"})
    request = ApiRequest("test", "probe", {"action": "echo"}, Connection("192.0.2.1", "test"))
    for seconds in (0.005, 0.02, 0.02, 200.0):
        metrics.call_answered(request, spec, 200, seconds)
    got = samples(generate_latest(metrics.registry).decode())
    echo = {"namespace": "test", "name": "probe", "action": "echo"}
    bucket = "sysadmd_request_duration_seconds_bucket"
    assert value(got, bucket, **echo, le="0.005") == 1  # a bound holds what equals it
    assert value(got, bucket, **echo, le="0.01") == 1
    assert value(got, bucket, **echo, le="0.025") == 3
    assert value(got, bucket, **echo, le="120.0") == 3
    assert value(got, bucket, **echo, le="+Inf") == 4
    assert value(got, "sysadmd_request_duration_seconds_count", **echo) == 4
    assert value(got, "sysadmd_request_duration_seconds_sum", **echo) == pytest.approx(200.045)
