"""The dashboard's files as the daemon serves them at /ui/: headers, compression, caching,
what is and is not served, and the WebSocket's same-origin check (no browser needed)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, cast

from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyChannel, DummyRequest

from sysadmd.transport import ApiServerFactory, OriginCheckedResource
from sysadmd.web import Dashboard
from sysadmd.web._static import (
    CONTENT_SECURITY_POLICY,
    STATIC_DIR,
    content_security_policy,
    load_assets,
)

ROOT = Path(__file__).resolve().parents[2]


def built(tmp_path: Path) -> Path:
    static = tmp_path / "static"
    (static / "assets").mkdir(parents=True)
    (static / "index.html").write_text(
        '<script type="module" src="assets/main-ABCDEFGH.js"></script>'
    )
    script = b"console.log('dashboard');" * 40
    (static / "assets" / "main-ABCDEFGH.js").write_bytes(script)
    (static / "assets" / "main-ABCDEFGH.js.gz").write_bytes(gzip.compress(script))
    (static / "assets" / "main-ABCDEFGH.js.br").write_bytes(b"brotli bytes")
    return static


def get(
    dashboard: Dashboard, *path: bytes, encoding: bytes | None = None, method: bytes = b"GET"
) -> DummyRequest:
    request = DummyRequest(list(path))
    request.method = method
    request.prepath = [b"ui"]
    if encoding is not None:
        request.requestHeaders.setRawHeaders(b"accept-encoding", [encoding])
    body = dashboard.render(cast(Any, request))
    request.write(body)
    return request


def status(request: DummyRequest) -> int:
    code: int = cast(Any, request).responseCode
    return code


def header(request: DummyRequest, name: bytes) -> str | None:
    values = request.responseHeaders.getRawHeaders(name)
    return values[0].decode() if values else None


def test_every_answer_carries_the_strict_headers(tmp_path: Path) -> None:
    dashboard = Dashboard(load_assets(built(tmp_path)))
    for path in ([b""], [b"assets", b"main-ABCDEFGH.js"], [b"nothing-here"]):
        request = get(dashboard, *path)
        assert header(request, b"content-security-policy") == CONTENT_SECURITY_POLICY
        assert header(request, b"x-content-type-options") == "nosniff"
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "connect-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY


def connect_sources(policy: str) -> list[str]:
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    return directives["connect-src"].split()


def test_connect_src_admits_the_configured_router_origin_only(tmp_path: Path) -> None:
    assets = load_assets(built(tmp_path))
    dashboard = Dashboard(assets, router="wss://router.example:8443/ws", realm="lab")
    for path in ([b""], [b"assets", b"main-ABCDEFGH.js"], [b"fleet.json"]):
        policy = header(get(dashboard, *path), b"content-security-policy") or ""
        assert connect_sources(policy) == ["'self'", "wss://router.example:8443"], path
        # Only connect-src changes: no script, frame or other source is added.
        assert policy.replace(" wss://router.example:8443", "") == CONTENT_SECURITY_POLICY
    # Without a router, the page may talk to its own origin only.
    plain = header(get(Dashboard(assets), b""), b"content-security-policy")
    assert plain is not None and connect_sources(plain) == ["'self'"]
    # The origin is the router's scheme, host and port, never its path.
    assert connect_sources(content_security_policy("ws://127.0.0.1:9000/ws")) == [
        "'self'",
        "ws://127.0.0.1:9000",
    ]


def test_fleet_json_tells_the_page_its_router(tmp_path: Path) -> None:
    assets = load_assets(built(tmp_path))
    answer = get(Dashboard(assets, router="ws://r:1/ws", realm="lab"), b"fleet.json")
    assert status(answer) in (None, 200)  # None: the request's default, 200
    assert header(answer, b"content-type") == "application/json"
    assert header(answer, b"cache-control") == "no-cache"
    assert json.loads(b"".join(answer.written)) == {"router": "ws://r:1/ws", "realm": "lab"}
    without = get(Dashboard(assets), b"fleet.json")
    assert json.loads(b"".join(without.written)) == {"router": None}


def test_the_page_is_revalidated_and_hashed_assets_are_cached_for_a_year(tmp_path: Path) -> None:
    dashboard = Dashboard(load_assets(built(tmp_path)))
    page = get(dashboard, b"")
    assert b"".join(page.written).startswith(b"<script")
    assert header(page, b"content-type") == "text/html; charset=utf-8"
    assert header(page, b"cache-control") == "no-cache"
    asset = get(dashboard, b"assets", b"main-ABCDEFGH.js")
    assert header(asset, b"cache-control") == "public, max-age=31536000, immutable"
    assert header(asset, b"content-type") == "text/javascript; charset=utf-8"


def test_compressed_forms_go_to_clients_that_accept_them(tmp_path: Path) -> None:
    dashboard = Dashboard(load_assets(built(tmp_path)))
    plain = get(dashboard, b"assets", b"main-ABCDEFGH.js")
    assert header(plain, b"content-encoding") is None
    zipped = get(dashboard, b"assets", b"main-ABCDEFGH.js", encoding=b"gzip, deflate")
    assert header(zipped, b"content-encoding") == "gzip"
    assert gzip.decompress(b"".join(zipped.written)) == b"".join(plain.written)
    assert header(zipped, b"vary") == "Accept-Encoding"
    brotli = get(dashboard, b"assets", b"main-ABCDEFGH.js", encoding=b"gzip, br")
    assert header(brotli, b"content-encoding") == "br"
    refused = get(dashboard, b"assets", b"main-ABCDEFGH.js", encoding=b"br;q=0, gzip;q=0")
    assert header(refused, b"content-encoding") is None


def test_only_the_built_files_are_served(tmp_path: Path) -> None:
    dashboard = Dashboard(load_assets(built(tmp_path)))
    (tmp_path / "secret").write_text("not for the web")
    for path in (
        [b"..", b"secret"],
        [b"assets", b"..", b"..", b"secret"],
        [b"assets"],
        [b"%2e%2e"],
    ):
        request = get(dashboard, *path)
        assert status(request) == 404, path
        assert b"not for the web" not in b"".join(request.written)
    assert status(get(dashboard, b"", method=b"POST")) == 405


def test_ui_without_its_slash_moves_relatively(tmp_path: Path) -> None:
    request = get(Dashboard(load_assets(built(tmp_path))))
    assert status(request) == 301
    # Relative, so it holds behind a proxy that serves the daemon under /some/prefix/.
    assert header(request, b"location") == "ui/"


def test_an_unbuilt_dashboard_says_how_to_build_it(tmp_path: Path) -> None:
    dashboard = Dashboard(load_assets(tmp_path / "missing"))
    request = get(dashboard, b"")
    assert status(request) == 503
    assert b"npm run build" in b"".join(request.written)


def test_the_package_data_takes_the_built_files() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"sysadmd.web" = ["static/*", "static/assets/*"]' in pyproject
    assert STATIC_DIR == ROOT / "sysadmd" / "web" / "static"


def _origin_request(origin: bytes, host: bytes, secure: bool) -> Request:
    request = Request(DummyChannel())
    request.requestHeaders.setRawHeaders(b"origin", [origin])
    request.requestHeaders.setRawHeaders(b"host", [host])
    request.isSecure = lambda: secure  # type: ignore[method-assign]
    return request


def test_the_websocket_lets_in_the_daemons_own_page_only() -> None:
    # Not an upgrade request: past the Origin check the answer is 426, before it 403.
    websocket = OriginCheckedResource(cast(Any, object.__new__(ApiServerFactory)))

    def status(origin: bytes, host: bytes, secure: bool) -> int:
        request = _origin_request(origin, host, secure)
        websocket.render(request)
        code: int = cast(Any, request).code
        return code

    assert status(b"https://h:12150", b"h:12150", True) == 426
    assert status(b"https://host.example:12150", b"Host.Example:12150", True) == 426
    assert status(b"http://h:12150", b"h:12150", True) == 403
    assert status(b"https://evil.example:12150", b"h:12150", True) == 403
    assert status(b"https://h:12150", b"h:12150", False) == 403
