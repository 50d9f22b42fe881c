"""The dashboard's built files, served at ``/ui/`` by the daemon's own Site.

The files are read once, when the daemon starts, from the package's ``static``
directory (written by ``web/build.mjs``). Only the files found there are served: a
request path is looked up in that table, never joined to a file-system path, so no
request can reach another file. Precompressed ``.br`` and ``.gz`` siblings written by
the build are sent to clients that accept them.

With a fleet router configured (``[fleet] router``), the page learns it from
``/ui/fleet.json`` (``{"router": URL, "realm": REALM}``; ``{"router": null}`` without
one), and the Content-Security-Policy's ``connect-src`` admits that router's origin, and
no other, beside the daemon's own.
"""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

#: Where the build writes the dashboard, inside the package.
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"

#: The page runs only its own scripts and talks only to its own origin (the WebSocket
#: included). Styles allow 'unsafe-inline' because the terminal's renderer sets its
#: theme through a style element; no script, frame, form target or plugin is allowed.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

#: What the page reads at start to learn the fleet's router (generated, not built).
FLEET_JSON: Final = "fleet.json"


def router_origin(router: str) -> str:
    """The origin (``wss://host:port``) of a ``ws://`` or ``wss://`` router URL, as a
    Content-Security-Policy source; ValueError if it is not one."""
    parts = urlsplit(router)
    if (
        parts.scheme not in ("ws", "wss")
        or not parts.hostname
        or not re.fullmatch(r"[A-Za-z0-9._:-]+", parts.netloc)
        or "@" in parts.netloc
    ):
        raise ValueError(f"{router!r} is not a ws:// or wss:// router URL")
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(router: str = "") -> str:
    """The page's policy: :data:`CONTENT_SECURITY_POLICY`, whose ``connect-src`` also admits
    the origin of ``router`` when one is given."""
    if not router:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self';", f"connect-src 'self' {router_origin(router)};"
    )


#: Assets whose names carry their content hash never change: cache them for a year.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
#: The page itself names the current assets: ask again each time.
REVALIDATE: Final = "no-cache"

_HASHED: Final = re.compile(r"assets/[A-Za-z0-9_.-]+-[A-Z0-9]{8,}\.[a-z0-9]+")
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
NOT_BUILT: Final = (
    b"The dashboard is not built: run 'npm ci && npm run build' in web/ "
    b"(./dev/serve and ./dev/test do it), then restart the daemon.\n"
)


@dataclass(frozen=True)
class Asset:
    """One file of the dashboard and its compressed forms."""

    body: bytes
    content_type: str
    cache: str
    gzip: bytes | None = None
    brotli: bytes | None = None


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every file below ``directory`` by its relative path (``index.html``, ``assets/…``)."""
    assets: dict[str, Asset] = {}
    if not directory.is_dir():
        return assets
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or path.suffix in (".gz", ".br") or path.is_symlink():
            continue
        name = path.relative_to(directory).as_posix()
        content_type = _TYPES.get(path.suffix) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        gz, br = path.with_name(path.name + ".gz"), path.with_name(path.name + ".br")
        assets[name] = Asset(
            body=path.read_bytes(),
            content_type=content_type,
            cache=IMMUTABLE if _HASHED.fullmatch(name) else REVALIDATE,
            gzip=gz.read_bytes() if gz.is_file() else None,
            brotli=br.read_bytes() if br.is_file() else None,
        )
    return assets


def _accepts(request: IRequest, coding: bytes) -> bool:
    for header in request.requestHeaders.getRawHeaders(b"accept-encoding", []):
        for part in header.split(b","):
            token, _, params = part.strip().partition(b";")
            if token.strip().lower() != coding:
                continue
            quality = params.replace(b" ", b"").lower()
            return quality not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


class Dashboard(Resource):
    """``/ui/``: the dashboard's page and its assets, with strict headers.

    ``/ui`` without the slash is redirected to ``ui/`` (a relative address, so the
    page works behind a reverse proxy that serves the daemon under a sub-path).
    """

    isLeaf = True

    def __init__(
        self, assets: dict[str, Asset] | None = None, *, router: str = "", realm: str = ""
    ) -> None:
        super().__init__()
        self._assets = load_assets() if assets is None else assets
        self._policy = content_security_policy(router).encode()
        self._fleet = json.dumps({"router": router, "realm": realm} if router else {"router": None})

    @property
    def built(self) -> bool:
        """Whether the dashboard's page was found."""
        return "index.html" in self._assets

    def render(self, request: IRequest) -> bytes:
        headers = request.responseHeaders
        headers.setRawHeaders(b"X-Content-Type-Options", [b"nosniff"])
        headers.setRawHeaders(b"Content-Security-Policy", [self._policy])
        headers.setRawHeaders(b"Referrer-Policy", [b"no-referrer"])
        headers.setRawHeaders(b"X-Frame-Options", [b"DENY"])
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            headers.setRawHeaders(b"Allow", [b"GET, HEAD"])
            return self._text(request, b"the dashboard answers GET and HEAD only\n")
        postpath = list(request.postpath or [])
        if not postpath:
            # /ui: send the browser to /ui/ relative to where it is.
            request.setResponseCode(301)
            last = (request.prepath or [b"ui"])[-1]
            headers.setRawHeaders(b"Location", [last + b"/"])
            return self._text(request, b"moved to ui/\n")
        name = "/".join(p.decode("utf-8", "replace") for p in postpath) or "index.html"
        if name == FLEET_JSON:
            headers.setRawHeaders(b"Content-Type", [b"application/json"])
            headers.setRawHeaders(b"Cache-Control", [REVALIDATE.encode()])
            return self._fleet.encode()
        asset = self._assets.get(name)
        if asset is None:
            if not self.built:
                request.setResponseCode(503)
                return self._text(request, NOT_BUILT)
            request.setResponseCode(404)
            return self._text(request, f"no such file in the dashboard: {name}\n".encode())
        headers.setRawHeaders(b"Content-Type", [asset.content_type.encode()])
        headers.setRawHeaders(b"Cache-Control", [asset.cache.encode()])
        headers.setRawHeaders(b"Vary", [b"Accept-Encoding"])
        body = asset.body
        if asset.brotli is not None and _accepts(request, b"br"):
            headers.setRawHeaders(b"Content-Encoding", [b"br"])
            body = asset.brotli
        elif asset.gzip is not None and _accepts(request, b"gzip"):
            headers.setRawHeaders(b"Content-Encoding", [b"gzip"])
            body = asset.gzip
        return body

    @staticmethod
    def _text(request: IRequest, text: bytes) -> bytes:
        request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
        request.responseHeaders.setRawHeaders(b"Cache-Control", [b"no-store"])
        return text


class WithDashboard(Resource):
    """Serves the dashboard at ``/ui``; hands every other path to ``inner`` untouched."""

    def __init__(self, inner: IResource, dashboard: Dashboard) -> None:
        super().__init__()
        self._inner = inner
        self._dashboard = dashboard

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        if path == b"ui":
            return self._dashboard
        # Undo the step Site took, so the inner resource sees the path exactly as before.
        request.postpath.insert(0, request.prepath.pop())
        return self._inner

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._inner.render(request)
        return result
