"""The web page for people at `/`, and its files under `/ui/`: plain HTML, CSS and JavaScript
modules from the package (no build step, no CDN), served with a strict Content-Security-Policy.

The page is public, as a file; everything it does goes through the key-authenticated API with
the key the person pastes, so it adds no new way in.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from aiohttp import web

from convertd.api.routes import Route

# Only this page's own files: scripts, styles and fetches from this origin; previews from
# signed links (self) and blob:/data: URLs; never framed, never inline script or style.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
# A file name the page may ask for: letters, digits, `-`, `_`, one dot and a known suffix.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(html|css|js|png|svg)$")


@functools.lru_cache(maxsize=64)  # bounded: names that match NAME but are no file
def _contents(name: str) -> bytes | None:
    """A file of the page, read once (the package's files do not change while it runs)."""
    path = resources.files("convertd").joinpath("web", name)
    return path.read_bytes() if path.is_file() else None


def _file(name: str) -> web.Response:
    if not NAME.match(name) or (body := _contents(name)) is None:
        raise web.HTTPNotFound()
    suffix = name[name.rindex(".") :]
    return web.Response(body=body, content_type=TYPES[suffix], charset="utf-8", headers=HEADERS)


async def index(request: web.Request) -> web.Response:
    return _file("index.html")


async def static(request: web.Request) -> web.Response:
    return _file(request.match_info["name"])


ROUTES = [
    Route("GET", "/", index, "The web page: drop files, convert, download", public=True),
    Route("GET", "/ui/{name}", static, "The web page's scripts and styles", public=True),
]
